//! `gridfed participant check`: validates the config and the site's data and states exactly
//! what the daemon would share -- shapes and modes, never values.

use std::fmt;

use serde::Serialize;

use crate::ParticipantError;
use crate::config::ParticipantConfig;

/// What the daemon would share, derived from the config and data only.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckReport {
    pub site_id: String,
    pub target: String,
    pub coordinator: String,
    pub federation_tag: String,
    pub train_samples: usize,
    pub test_samples: usize,
    pub n_features: usize,
    pub context: usize,
    pub horizon: usize,
    /// Parameters of the default quantile MLP for this layout (the federation's spec decides).
    pub default_model_parameters: usize,
    /// The differential privacy this site requires of a federation before it joins.
    pub privacy: String,
    /// One line per message kind the daemon sends.
    pub shared: Vec<String>,
    pub never_shared: Vec<String>,
}

/// Validates `config` and the site's data and builds the report (no network access).
pub fn check(config: &ParticipantConfig) -> Result<CheckReport, ParticipantError> {
    // Validates the config and reads the CA certificate the daemon will trust.
    config.endpoint()?;
    let prepared = crate::site::load_site(&config.data)?;
    let train = &prepared.train;
    let model = models::ForecasterConfig::new(train.n_features, train.horizon);
    model.validate()?;
    let d = model.num_params();
    Ok(CheckReport {
        site_id: config.data.site_id.clone(),
        target: config.data.target.clone(),
        coordinator: config.coordinator.clone(),
        federation_tag: config.federation_tag.clone(),
        train_samples: train.len(),
        test_samples: prepared.test.len(),
        n_features: train.n_features,
        context: train.context,
        horizon: train.horizon,
        default_model_parameters: d,
        privacy: match config.limits.max_epsilon {
            Some(max) => format!(
                "joins only a federation with site-level differential privacy and an epsilon budget <= {max} (limits.max_epsilon); in its rounds the update is clipped to the round's L2 bound and carries this site's share of discrete Gaussian noise"
            ),
            None => "no minimum: joins a federation with or without differential privacy (set limits.max_epsilon to require it)".into(),
        },
        shared: vec![
            "Enroll: operator token, Ed25519 public key (32 bytes), site label".into(),
            "Join / GetTask / DownloadWeights: federation tag or name, signed request envelope"
                .into(),
            format!(
                "masked mode: per round 2 X25519 public keys, Shamir shares encrypted to each neighbour, and one masked vector of {} u32 words (the clipped update (local - global) x weight, plus the weight) that is uniform noise without the other participants' masks; then the shares the unmasking needs",
                d + 1
            ),
            format!(
                "encrypted mode: per round, as a committee member, a signed commitment, an X25519 key, a public key share and one Shamir fragment per member sealed to that member; then one ciphertext of the same {} words (weighted update plus weight, about 3 limbs of 12 bytes per word) under the collective key; as a decryptor, one partial decryption of the aggregate (about 3 x 5 bytes per word)",
                d + 1
            ),
            format!(
                "plain mode (explicit test opt-in): the clipped update of {d} f32 values and its sample count (capped)"
            ),
            format!(
                "evaluation rounds (registered models): instead of an update, {} holdout scores (site-relative nMAE, nMSE, pinball, p10-p90 coverage, persistence nMAE, clamp flag, abstention flag; each in [0, {}]) weighted by the holdout windows (capped at {}), under the round's protection; a site that cannot score sends an abstention (weight 1)",
                models::holdout::SCORE_SLOTS,
                models::holdout::SCORE_CLIP,
                models::holdout::MAX_SCORE_WEIGHT
            ),
        ],
        never_shared: vec![
            "telemetry (load_kw, pv_kw, weather covariates) and timestamps".into(),
            "training and holdout samples, normalization statistics, site metadata".into(),
            "the local model itself, except as its protected update".into(),
        ],
    })
}

impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "site {} ({}) -> federation tag `{}` at {}",
            self.site_id, self.target, self.federation_tag, self.coordinator
        )?;
        writeln!(
            f,
            "data OK: {} training and {} test samples, {} features (context {}, horizon {})",
            self.train_samples, self.test_samples, self.n_features, self.context, self.horizon
        )?;
        writeln!(
            f,
            "model: {} parameters with the default MLP for this layout",
            self.default_model_parameters
        )?;
        writeln!(f, "privacy: {}", self.privacy)?;
        writeln!(f, "shared with the coordinator:")?;
        for line in &self.shared {
            writeln!(f, "  - {line}")?;
        }
        writeln!(f, "never shared:")?;
        for line in &self.never_shared {
            writeln!(f, "  - {line}")?;
        }
        Ok(())
    }
}
