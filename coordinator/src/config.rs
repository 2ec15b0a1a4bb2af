//! Coordinator configuration (`coordinator.toml`).
//!
//! ```toml
//! data_dir = "/var/lib/gridfed"
//! listen = "0.0.0.0:7400"
//! metrics_listen = "127.0.0.1:9400"
//! enrollment_tokens = ["change-me"]
//!
//! # From `gridfed coordinator init-tls`; without it, `insecure_plaintext = true` is required.
//! [tls]
//! cert = "tls/server.pem"
//! key = "tls/server.key"
//!
//! [[federation]]
//! name = "residential-load"
//! tag = "residential-load"
//! protection = "masked"
//! rounds = 20
//! min_participants = 3
//! participants_per_round = 10
//! model_spec_json = '{"n_features": 220, "horizon": 24}'
//! initial_weights = { zeros = 1000 }
//! ```

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::CoordinatorError;
use crate::storage::StorageConfig;
use crate::tls::{ServerIdentity, Transport};

/// How updates are protected in a federation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protection {
    /// Plaintext updates: for tests only, logged as a warning at every round.
    Plain,
    /// Dropout-tolerant masked secure aggregation.
    #[default]
    Masked,
    /// Packed RLWE encryption under a per-round collective key, threshold decryption.
    Encrypted,
}

impl Protection {
    pub fn name(self) -> &'static str {
        match self {
            Protection::Plain => "plain",
            Protection::Masked => "masked",
            Protection::Encrypted => "encrypted",
        }
    }
}

/// Where a federation's version 0 comes from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InitialWeights {
    /// `n` zeros (benchmarks, linear models).
    Zeros(u64),
    /// A file of little-endian f32 values.
    File(PathBuf),
    /// Values given in-process (the demo builds them with the models crate).
    #[serde(skip)]
    Values(Vec<f32>),
}

/// One federation: a model spec and sector, with its round rules.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FederationSpec {
    pub name: String,
    /// Participants join by this tag, e.g. `residential-load`.
    pub tag: String,
    #[serde(default)]
    pub protection: Protection,
    /// Rounds to run; the federation is done after version `rounds`.
    pub rounds: u64,
    /// A round fails (and is retried) with fewer contributions than this.
    #[serde(default = "defaults::min_participants")]
    pub min_participants: usize,
    /// Contributions wanted per round; 0 takes every available member.
    #[serde(default)]
    pub participants_per_round: usize,
    /// Extra fraction selected to absorb dropouts (0.2 selects 20% more than wanted).
    #[serde(default = "defaults::over_selection")]
    pub over_selection: f64,
    /// JSON model spec handed to participants (for the MLP: `models::ForecasterConfig`).
    #[serde(default)]
    pub model_spec_json: String,
    pub initial_weights: InitialWeights,
    #[serde(default = "defaults::local_epochs")]
    pub local_epochs: u32,
    #[serde(default = "defaults::learning_rate")]
    pub learning_rate: f32,
    /// The last round's local learning rate as a fraction of `learning_rate`: the rate decays
    /// geometrically over the versions (each round restarts the sites' optimizers, so a
    /// constant rate keeps the global model from settling). 1 keeps it constant.
    #[serde(default = "defaults::learning_rate_decay")]
    pub learning_rate_decay: f64,
    /// Update coordinates are clipped to `[-clip, clip]` before encoding.
    #[serde(default = "defaults::clip")]
    pub clip: f32,
    #[serde(default)]
    pub fedprox_mu: f32,
    /// Server momentum (FedAvgM) on the aggregate, in [0, 1); 0 is plain FedAvg.
    #[serde(default)]
    pub server_momentum: f32,
    /// Server learning rate applied to the (momentum) aggregate; 1 is plain FedAvg.
    #[serde(default = "defaults::server_learning_rate")]
    pub server_learning_rate: f32,
    /// Largest FedAvg weight (sample count) a participant may claim; bounds fixed-point precision.
    #[serde(default = "defaults::max_weight")]
    pub max_weight: u32,
    /// SecAgg+ neighbours per participant; 0 picks from the roster size.
    #[serde(default)]
    pub neighbours: u32,
    /// Shamir threshold; 0 picks a majority of the neighbourhood.
    #[serde(default)]
    pub threshold: u32,
    /// How long a round waits for enough available members before starting anyway.
    #[serde(default = "defaults::selection_ms")]
    pub selection_timeout_ms: u64,
    #[serde(default = "defaults::keys_ms")]
    pub keys_timeout_ms: u64,
    /// Covers local training and the upload.
    #[serde(default = "defaults::upload_ms")]
    pub upload_timeout_ms: u64,
    #[serde(default = "defaults::unmask_ms")]
    pub unmask_timeout_ms: u64,
    /// Federated evaluation: after each training round, an evaluation round (same protection)
    /// in which participants score the new version on their own holdout.
    #[serde(default)]
    pub evaluate: bool,
    /// Differential privacy of every version (site-level, distributed noise); `None` trains
    /// without DP noise.
    #[serde(default)]
    pub dp: Option<DpSpec>,
    /// Hierarchical secure aggregation along the grid (`[federation.hierarchy]`); `None`
    /// runs one flat SecAgg+ group over all selected sites.
    #[serde(default)]
    pub hierarchy: Option<HierarchySpec>,
}

/// `[federation.hierarchy]`: masked rounds run one SecAgg+ group per feeder, and only feeder
/// sums over at least `min_sites_per_feeder` surviving sites are unmasked and added; a site's
/// feeder is the part of its site label before the first `/` (`"feeder-07/roof-12"` is on
/// `feeder-07`; a label without `/` is on the feeder named by the whole label's absence, `""`).
/// Masking and unmasking cost then grows with the feeder's size, not the fleet's, and the sum
/// the coordinator unmasks never covers fewer sites than the floor.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HierarchySpec {
    /// A feeder whose survivors fall below this contributes nothing to the round (its sites'
    /// updates stay masked). At least 3, the smallest group secure aggregation supports.
    #[serde(default = "defaults::min_sites_per_feeder")]
    pub min_sites_per_feeder: u32,
    /// The round fails unless at least this many feeders contribute.
    #[serde(default = "defaults::min_feeders")]
    pub min_feeders: u32,
}

impl HierarchySpec {
    /// Whether the tree can run a federation of `protection`, with or without DP.
    pub fn check(&self, protection: Protection, dp: bool) -> Result<(), String> {
        if protection != Protection::Masked {
            return Err(
                "hierarchy: feeder aggregation runs on masked rounds (encrypted rounds \
                        are flat for now)"
                    .into(),
            );
        }
        if dp {
            // Distributed noise is calibrated to the whole roster: a feeder's sum would carry
            // only its share of it.
            return Err("hierarchy and dp cannot be combined yet".into());
        }
        if self.min_sites_per_feeder < 3 {
            return Err("hierarchy.min_sites_per_feeder must be at least 3".into());
        }
        if self.min_feeders < 1 {
            return Err("hierarchy.min_feeders must be at least 1".into());
        }
        Ok(())
    }

    /// The feeder of a site label.
    pub fn feeder_of(label: &str) -> &str {
        label.split_once('/').map_or("", |(feeder, _)| feeder)
    }
}

/// `[federation.dp]`: site-level differential privacy with distributed discrete Gaussian noise
/// (`crypto::dp`). In a DP federation every site's whole update is clipped to L2 norm
/// `clip_l2` (which is then also the per-coordinate bound), every site weighs the same, and the
/// aggregate carries noise of standard deviation `noise_multiplier` times the sensitivity as
/// long as at least `min_participants` sites contribute.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DpSpec {
    pub noise_multiplier: f64,
    pub clip_l2: f32,
    #[serde(default = "defaults::dp_delta")]
    pub delta: f64,
    /// The budget: no round starts that would take the federation's epsilon above it.
    #[serde(default)]
    pub max_epsilon: Option<f64>,
}

impl DpSpec {
    pub fn validate(&self) -> Result<(), String> {
        if !(self.noise_multiplier.is_finite() && self.noise_multiplier > 0.0) {
            return Err(format!(
                "dp.noise_multiplier must be positive, got {}",
                self.noise_multiplier
            ));
        }
        if !(self.clip_l2.is_finite() && self.clip_l2 > 0.0) {
            return Err(format!("dp.clip_l2 must be positive, got {}", self.clip_l2));
        }
        if !(self.delta > 0.0 && self.delta < 0.01) {
            return Err(format!("dp.delta must be in (0, 0.01), got {}", self.delta));
        }
        if let Some(e) = self.max_epsilon.filter(|e| !(e.is_finite() && *e > 0.0)) {
            return Err(format!("dp.max_epsilon must be positive, got {e}"));
        }
        Ok(())
    }
}

mod defaults {
    pub fn dp_delta() -> f64 {
        1e-5
    }
    pub fn min_sites_per_feeder() -> u32 {
        5
    }
    pub fn min_feeders() -> u32 {
        1
    }
    pub fn min_participants() -> usize {
        2
    }
    pub fn over_selection() -> f64 {
        0.0
    }
    pub fn local_epochs() -> u32 {
        1
    }
    pub fn server_learning_rate() -> f32 {
        1.0
    }
    pub fn learning_rate() -> f32 {
        1e-3
    }
    pub fn learning_rate_decay() -> f64 {
        1.0
    }
    pub fn clip() -> f32 {
        1.0
    }
    pub fn max_weight() -> u32 {
        4096
    }
    pub fn selection_ms() -> u64 {
        5_000
    }
    pub fn keys_ms() -> u64 {
        30_000
    }
    pub fn upload_ms() -> u64 {
        600_000
    }
    pub fn unmask_ms() -> u64 {
        30_000
    }
}

impl FederationSpec {
    /// A federation over vectors of `length` zeros with default rules, for tests and benches.
    pub fn vector(name: &str, length: u64, protection: Protection, rounds: u64) -> Self {
        Self {
            name: name.into(),
            tag: name.into(),
            protection,
            rounds,
            min_participants: match protection {
                Protection::Masked => 3,
                _ => defaults::min_participants(),
            },
            participants_per_round: 0,
            over_selection: defaults::over_selection(),
            model_spec_json: String::new(),
            initial_weights: InitialWeights::Zeros(length),
            local_epochs: defaults::local_epochs(),
            learning_rate: defaults::learning_rate(),
            learning_rate_decay: defaults::learning_rate_decay(),
            clip: defaults::clip(),
            fedprox_mu: 0.0,
            server_momentum: 0.0,
            server_learning_rate: defaults::server_learning_rate(),
            max_weight: defaults::max_weight(),
            neighbours: 0,
            threshold: 0,
            selection_timeout_ms: defaults::selection_ms(),
            keys_timeout_ms: defaults::keys_ms(),
            upload_timeout_ms: defaults::upload_ms(),
            unmask_timeout_ms: defaults::unmask_ms(),
            evaluate: false,
            dp: None,
            hierarchy: None,
        }
    }

    /// The local learning rate of the round that trains from version `from_version`:
    /// `learning_rate` for the first, `learning_rate * learning_rate_decay` for the last.
    pub fn learning_rate_at(&self, from_version: u64) -> f32 {
        let steps = self.rounds.saturating_sub(1).max(1) as f64;
        let progress = (from_version as f64 / steps).min(1.0);
        (f64::from(self.learning_rate) * self.learning_rate_decay.powf(progress)) as f32
    }

    pub fn validate(&self) -> Result<(), CoordinatorError> {
        let fail = |what: &str| {
            Err(CoordinatorError::Config(format!(
                "federation `{}`: {what}",
                self.name
            )))
        };
        if self.name.is_empty() || self.name.len() > 128 || self.tag.is_empty() {
            return fail("name and tag must be non-empty (name at most 128 bytes)");
        }
        if self.rounds == 0 {
            return fail("rounds must be at least 1");
        }
        if self.min_participants == 0 {
            return fail("min_participants must be at least 1");
        }
        if !(self.clip.is_finite() && self.clip > 0.0) {
            return fail("clip must be finite and positive");
        }
        if !(0.0..=10.0).contains(&self.over_selection) {
            return fail("over_selection must be in [0, 10]");
        }
        if !(0.0..1.0).contains(&self.server_momentum) {
            return fail("server_momentum must be in [0, 1)");
        }
        if !(self.learning_rate_decay > 0.0 && self.learning_rate_decay <= 1.0) {
            return fail("learning_rate_decay must be in (0, 1]");
        }
        if !(self.server_learning_rate > 0.0 && self.server_learning_rate <= 10.0) {
            return fail("server_learning_rate must be in (0, 10]");
        }
        if self.max_weight == 0 {
            return fail("max_weight must be at least 1");
        }
        if let Some(dp) = &self.dp {
            dp.validate().or_else(|why| fail(&why))?;
            if self.protection == Protection::Plain {
                return fail(
                    "dp needs masked or encrypted rounds: plain updates reach the coordinator before any noise",
                );
            }
        }
        // Secure aggregation needs at least two neighbours per participant.
        if self.protection == Protection::Masked && self.min_participants < 3 {
            return fail("masked rounds need min_participants >= 3");
        }
        if let Some(h) = &self.hierarchy {
            h.check(self.protection, self.dp.is_some())
                .or_else(|why| fail(&why))?;
        }
        Ok(())
    }
}

/// `[tls]`: PEM files of the server certificate chain and its private key.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// How a server is reached: an identity in memory, else the `[tls]` files (read and checked
/// now), else plaintext when explicitly asked for (coordinators and forecast replicas alike).
pub fn transport_of(
    identity: Option<&ServerIdentity>,
    files: Option<&TlsFiles>,
    insecure_plaintext: bool,
) -> Result<Transport, CoordinatorError> {
    if let Some(identity) = identity {
        return Ok(Transport::Tls(identity.clone()));
    }
    match (files, insecure_plaintext) {
        (Some(files), false) => Ok(Transport::Tls(ServerIdentity::load(
            &files.cert,
            &files.key,
        )?)),
        (None, true) => Ok(Transport::InsecurePlaintext),
        (Some(_), true) => Err(CoordinatorError::Config(BOTH_TRANSPORTS.into())),
        (None, false) => Err(CoordinatorError::Config(NO_TRANSPORT.into())),
    }
}

/// The whole coordinator configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CoordinatorConfig {
    /// State database and artifacts live here.
    pub data_dir: PathBuf,
    /// gRPC address (used by the CLI; `serve` takes a bound listener).
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Prometheus endpoint address; none disables it.
    #[serde(default)]
    pub metrics_listen: Option<String>,
    /// Operator-issued tokens that allow enrollment.
    pub enrollment_tokens: Vec<String>,
    /// Participants refused from now on.
    #[serde(default)]
    pub revoked: Vec<String>,
    /// Longest a GetTask call is held when there is nothing to do.
    #[serde(default = "default_long_poll")]
    pub long_poll_ms: u32,
    #[serde(rename = "federation", default)]
    pub federations: Vec<FederationSpec>,
    /// Serve gRPC over TLS with these files (see [`CoordinatorConfig::transport`]).
    #[serde(default)]
    pub tls: Option<TlsFiles>,
    /// Serve plaintext HTTP/2 instead of TLS: tests only, logged as a warning.
    #[serde(default)]
    pub insecure_plaintext: bool,
    /// In-process runs: an identity already in memory (the demo's ephemeral CA); used instead
    /// of `tls`.
    #[serde(skip)]
    pub tls_identity: Option<ServerIdentity>,
    /// Tokens of operators allowed to publish, promote and export models (registry); none
    /// disables those calls. At least 16 characters each.
    #[serde(default)]
    pub operator_tokens: Vec<String>,
    /// Tokens that read every site's forecasts on the board (market engines, the utility;
    /// operator tokens read it too). Participants read only their own sites, by signature;
    /// nobody else reads it. At least 16 characters each.
    #[serde(default)]
    pub board_reader_tokens: Vec<String>,
    /// Where state and weights live (`[storage]`; embedded redb when omitted).
    #[serde(default)]
    pub storage: StorageConfig,
    /// `[limits]`: connections, upload memory, stalled uploads (defaults in
    /// [`crate::limits::ServerLimits`]).
    #[serde(default)]
    pub limits: crate::limits::ServerLimits,
}

/// Reader tokens are bearer secrets like operator tokens: the same minimum length.
pub(crate) fn check_board_reader_tokens(tokens: &[String]) -> Result<(), CoordinatorError> {
    if tokens.iter().any(|t| t.len() < 16) {
        return Err(CoordinatorError::Config(
            "board_reader_tokens must be at least 16 characters each".into(),
        ));
    }
    Ok(())
}

const NO_TRANSPORT: &str = "no [tls] section: set tls.cert and tls.key (see `gridfed coordinator \
     init-tls`), or insecure_plaintext = true to serve without TLS (tests only)";
const BOTH_TRANSPORTS: &str = "insecure_plaintext = true contradicts the [tls] section: keep one";

fn default_listen() -> String {
    "127.0.0.1:7400".into()
}

fn default_long_poll() -> u32 {
    10_000
}

impl CoordinatorConfig {
    /// A config for tests and in-process runs: embedded redb under `data_dir`, or PostgreSQL
    /// when [`crate::storage::TEST_POSTGRES_ENV`] names one (see
    /// [`StorageConfig::for_in_process`]).
    pub fn new(
        data_dir: impl Into<PathBuf>,
        token: &str,
        federations: Vec<FederationSpec>,
    ) -> Self {
        let data_dir = data_dir.into();
        Self {
            storage: StorageConfig::for_in_process(&data_dir),
            data_dir,
            listen: default_listen(),
            metrics_listen: None,
            enrollment_tokens: vec![token.into()],
            revoked: Vec::new(),
            long_poll_ms: default_long_poll(),
            federations,
            tls: None,
            insecure_plaintext: false,
            tls_identity: None,
            operator_tokens: Vec::new(),
            board_reader_tokens: Vec::new(),
            limits: Default::default(),
        }
    }

    /// Parses and validates a TOML document.
    pub fn from_toml(text: &str) -> Result<Self, CoordinatorError> {
        let config: Self =
            toml::from_str(text).map_err(|e| CoordinatorError::Config(e.to_string()))?;
        config.validate()?;
        if config.tls.is_none() && !config.insecure_plaintext {
            return Err(CoordinatorError::Config(NO_TRANSPORT.into()));
        }
        Ok(config)
    }

    /// How to serve: TLS from `tls_identity` or the `[tls]` files (read and checked now), or
    /// plaintext when `insecure_plaintext` is set.
    pub fn transport(&self) -> Result<Transport, CoordinatorError> {
        transport_of(
            self.tls_identity.as_ref(),
            self.tls.as_ref(),
            self.insecure_plaintext,
        )
    }

    pub fn validate(&self) -> Result<(), CoordinatorError> {
        if self.insecure_plaintext && (self.tls.is_some() || self.tls_identity.is_some()) {
            return Err(CoordinatorError::Config(BOTH_TRANSPORTS.into()));
        }
        if self.enrollment_tokens.iter().any(|t| t.len() < 8) {
            return Err(CoordinatorError::Config(
                "enrollment tokens must be at least 8 characters".into(),
            ));
        }
        if self.operator_tokens.iter().any(|t| t.len() < 16) {
            return Err(CoordinatorError::Config(
                "operator tokens must be at least 16 characters".into(),
            ));
        }
        check_board_reader_tokens(&self.board_reader_tokens)?;
        self.storage.validate()?;
        self.limits.check().map_err(CoordinatorError::Config)?;
        let mut names = std::collections::BTreeSet::new();
        let mut tags = std::collections::BTreeSet::new();
        for f in &self.federations {
            f.validate()?;
            if !names.insert(&f.name) || !tags.insert(&f.tag) {
                return Err(CoordinatorError::Config(format!(
                    "duplicate federation name or tag `{}`",
                    f.name
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
data_dir = "data"
enrollment_tokens = ["operator-token"]
federation = []
"#;

    #[test]
    fn a_config_without_tls_needs_the_explicit_insecure_flag() {
        let err = CoordinatorConfig::from_toml(BASE).unwrap_err().to_string();
        assert!(
            err.contains("no [tls] section") && err.contains("insecure_plaintext"),
            "{err}"
        );
        let plain =
            CoordinatorConfig::from_toml(&format!("insecure_plaintext = true\n{BASE}")).unwrap();
        assert_eq!(plain.transport().unwrap(), Transport::InsecurePlaintext);
        let both = format!("insecure_plaintext = true\n{BASE}\n[tls]\ncert = \"c\"\nkey = \"k\"\n");
        let err = CoordinatorConfig::from_toml(&both).unwrap_err().to_string();
        assert!(err.contains("contradicts the [tls] section"), "{err}");
    }

    #[test]
    fn tls_files_are_read_at_transport_time_and_named_in_errors() {
        let dir = tempfile::tempdir().unwrap();
        let paths = crate::tls::generate(&[])
            .unwrap()
            .write(dir.path(), false)
            .unwrap();
        let text = |cert: &std::path::Path| {
            format!(
                "{BASE}\n[tls]\ncert = {:?}\nkey = {:?}\n",
                cert.display().to_string(),
                paths.key.display().to_string()
            )
        };
        let config = CoordinatorConfig::from_toml(&text(&paths.cert)).unwrap();
        assert!(matches!(config.transport().unwrap(), Transport::Tls(_)));
        let missing = dir.path().join("nope.pem");
        let config = CoordinatorConfig::from_toml(&text(&missing)).unwrap();
        let err = config.transport().unwrap_err().to_string();
        assert!(
            err.contains("tls.cert") && err.contains("nope.pem"),
            "{err}"
        );
        let err = CoordinatorConfig::from_toml(&format!("{BASE}\n[tls]\ncert = \"c\"\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing field `key`"), "{err}");
    }
}
