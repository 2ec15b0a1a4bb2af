//! The model spec a modeler publishes (`gridfed models publish spec.toml`).
//!
//! ```toml
//! name = "residential-load"
//! target = "load"                 # load | pv | net_load
//! sector = "residential"          # residential | commercial | industrial
//! resolution = "1h"               # 15min | 30min | 1h
//! context = 168                   # steps of history the model sees
//! horizon = 24                    # steps it forecasts
//! protection = "masked"           # masked | plain (testing only)
//! rounds = 20
//!
//! [architecture]                  # models::ForecasterConfig; every field optional
//! hidden = [128, 128]
//! quantiles = [0.1, 0.5, 0.9]
//!
//! [training]
//! local_epochs = 1
//! learning_rate = 0.001
//! min_participants = 3
//!
//! [privacy]
//! clip = 1.0                      # update coordinates clipped to [-clip, clip]
//! max_weight = 4096               # cap on a participant's FedAvg weight
//! ```
//!
//! Every error names the field. Participants join the federation by `tag` (default
//! `<sector>-<target>`).

use datasets::window::feature_count;
use datasets::{Resolution, Sector, Target};
use models::serving::{Covariate, ServingSpec};
use models::{Activation, ForecasterConfig};
use serde::{Deserialize, Serialize};

use super::RegistryError;
use crate::config::{FederationSpec, InitialWeights, Protection};

/// Quantile levels every registered model must forecast (p10 / p50 / p90).
pub const REQUIRED_QUANTILES: [f32; 3] = [0.1, 0.5, 0.9];

/// Longest context or horizon, in steps (a year of hourly data).
const MAX_STEPS: usize = 8_784;
/// Largest model a spec may ask for, in parameters (the wire carries at most ~10 M).
const MAX_PARAMETERS: usize = 10_000_000;

/// A validated model spec.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    /// Model name: lowercase letters, digits, `-`, `_`, `.` (at most 64).
    pub name: String,
    pub target: Target,
    pub sector: Sector,
    /// Federation tag participants join by; default `<sector>-<target>`.
    #[serde(default)]
    pub tag: Option<String>,
    #[serde(default = "hourly")]
    pub resolution: Resolution,
    pub context: usize,
    pub horizon: usize,
    /// Known-future covariates the model reads, by telemetry column name
    /// (`models::serving::Covariate`): any of `temperature_forecast_c`, `ghi_forecast_w_m2`,
    /// `cloud_cover_forecast`; default all. Forecast requests must carry exactly these.
    #[serde(default = "all_features")]
    pub features: Vec<String>,
    #[serde(default)]
    pub protection: Protection,
    pub rounds: u64,
    #[serde(default)]
    pub architecture: Architecture,
    #[serde(default)]
    pub training: Training,
    #[serde(default)]
    pub privacy: Privacy,
    /// `[hierarchy]`: feeder-level secure aggregation for large fleets (masked rounds; see
    /// [`crate::HierarchySpec`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hierarchy: Option<crate::HierarchySpec>,
    /// `[deadlines]`: how long each round phase waits (seconds); [`Deadlines::default`] when
    /// absent. Left out of the JSON when absent, so manifests signed before it stay the same.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadlines: Option<Deadlines>,
}

/// How long each phase of a round waits for the selected participants before it goes on
/// without those that have not answered (they count as dropouts; the round still commits if
/// enough answered). Seconds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Deadlines {
    /// Selected participants fetch their task.
    pub selection_s: u64,
    /// SecAgg+ key advertisement and share exchange (masked rounds), key phases (encrypted).
    pub keys_s: u64,
    /// Local training and upload: the longest a killed or stalled site can hold a round.
    pub upload_s: u64,
    /// Unmasking or partial decryption.
    pub unmask_s: u64,
}

impl Default for Deadlines {
    /// Sized for the registry's small forecasting MLPs: local training of an epoch on one
    /// site's year of hourly data takes seconds; two minutes leaves room for slow hardware
    /// without a dead site holding the fleet for ten.
    fn default() -> Self {
        Self {
            selection_s: 5,
            keys_s: 30,
            upload_s: 120,
            unmask_s: 30,
        }
    }
}

impl Deadlines {
    fn check(&self) -> Result<(), RegistryError> {
        for (field, s) in [
            ("deadlines.selection_s", self.selection_s),
            ("deadlines.keys_s", self.keys_s),
            ("deadlines.upload_s", self.upload_s),
            ("deadlines.unmask_s", self.unmask_s),
        ] {
            if s == 0 || s > 86_400 {
                return Err(RegistryError::spec(
                    field,
                    format!("{s} seconds; must be 1..=86400"),
                ));
            }
        }
        Ok(())
    }
}

/// The network: `models::ForecasterConfig` without its input and output sizes, which follow
/// from context, horizon and features.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Architecture {
    pub hidden: Vec<usize>,
    pub activation: Activation,
    pub dropout: f64,
    pub quantiles: Vec<f32>,
    pub batch_size: usize,
    pub weight_decay: f32,
    pub seed: u64,
}

impl Default for Architecture {
    /// The defaults of `models::ForecasterConfig` (the one source of them).
    fn default() -> Self {
        let c = ForecasterConfig::new(1, 1);
        Self {
            hidden: c.hidden,
            activation: c.activation,
            dropout: c.dropout,
            quantiles: c.quantiles,
            batch_size: c.batch_size,
            weight_decay: c.weight_decay,
            seed: c.seed,
        }
    }
}

/// The default last-round learning rate as a fraction of the first: each round restarts the
/// sites' Adam, and without decay the global model does not settle (`gridfed demo`, 120
/// rounds, uses the same).
pub const DEFAULT_LEARNING_RATE_DECAY: f64 = 0.05;

/// Round rules and local training.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Training {
    pub local_epochs: u32,
    pub learning_rate: f32,
    /// The last round's learning rate as a fraction of `learning_rate` (geometric decay over
    /// the rounds); 1 keeps it constant.
    pub learning_rate_decay: f64,
    pub fedprox_mu: f32,
    /// FedAvgM momentum on the aggregate, in [0, 1); 0 is plain FedAvg.
    pub server_momentum: f32,
    /// Step size on the (momentum) aggregate; 1 is plain FedAvg.
    pub server_learning_rate: f32,
    pub min_participants: usize,
    /// 0 takes every available member.
    pub participants_per_round: usize,
}

impl Default for Training {
    fn default() -> Self {
        let f = FederationSpec::vector("", 0, Protection::Masked, 1);
        Self {
            local_epochs: f.local_epochs,
            learning_rate: f.learning_rate,
            learning_rate_decay: DEFAULT_LEARNING_RATE_DECAY,
            fedprox_mu: f.fedprox_mu,
            server_momentum: f.server_momentum,
            server_learning_rate: f.server_learning_rate,
            min_participants: f.min_participants,
            participants_per_round: f.participants_per_round,
        }
    }
}

/// What bounds each participant's influence on the aggregate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Privacy {
    /// Per-coordinate bound of an update; with `noise_multiplier`, the L2 bound of the whole
    /// update (site-level differential privacy).
    pub clip: f32,
    pub max_weight: u32,
    /// Differential privacy: the noise standard deviation over the sensitivity. Every version's
    /// manifest then records the `(epsilon, delta)` spent (see `crate::config::DpSpec`).
    pub noise_multiplier: Option<f64>,
    /// DP `delta` (default 1e-5).
    pub delta: Option<f64>,
    /// DP budget: no round starts that would spend more than this epsilon.
    pub epsilon: Option<f64>,
}

impl ModelSpec {
    /// The federation's differential privacy, when the spec asks for it.
    pub fn dp(&self) -> Option<crate::config::DpSpec> {
        let p = &self.privacy;
        Some(crate::config::DpSpec {
            noise_multiplier: p.noise_multiplier?,
            clip_l2: p.clip,
            delta: p.delta.unwrap_or(1e-5),
            max_epsilon: p.epsilon,
        })
    }
}

impl Default for Privacy {
    fn default() -> Self {
        let f = FederationSpec::vector("", 0, Protection::Masked, 1);
        Self {
            clip: f.clip,
            max_weight: f.max_weight,
            noise_multiplier: None,
            delta: None,
            epsilon: None,
        }
    }
}

fn hourly() -> Resolution {
    Resolution::Hour
}

fn all_features() -> Vec<String> {
    Covariate::ALL
        .iter()
        .map(|c| c.name().to_string())
        .collect()
}

/// A name or tag: 1..=64 of `[a-z0-9._-]`, starting with a letter or digit.
pub fn check_name(field: &str, value: &str) -> Result<(), RegistryError> {
    let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c);
    if value.is_empty() || value.len() > 64 {
        return Err(RegistryError::spec(field, "must be 1 to 64 characters"));
    }
    if !value.chars().all(ok_char) || !value.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err(RegistryError::spec(
            field,
            format!(
                "`{value}` may only hold a-z, 0-9, `-`, `_`, `.` and must start with a letter or digit"
            ),
        ));
    }
    Ok(())
}

impl ModelSpec {
    /// Parses and validates a TOML spec.
    pub fn from_toml(text: &str) -> Result<Self, RegistryError> {
        let spec: Self =
            toml::from_str(text).map_err(|e| RegistryError::SpecSyntax(e.to_string()))?;
        spec.validate()?;
        Ok(spec)
    }

    /// The federation tag participants join by.
    pub fn tag(&self) -> String {
        self.tag
            .clone()
            .unwrap_or_else(|| format!("{}-{}", self.sector.as_str(), self.target.as_str()))
    }

    /// Checks every field; the error names the first bad one.
    pub fn validate(&self) -> Result<(), RegistryError> {
        check_name("name", &self.name)?;
        check_name("tag", &self.tag())?;
        for (field, steps) in [("context", self.context), ("horizon", self.horizon)] {
            if steps == 0 || steps > MAX_STEPS {
                return Err(RegistryError::spec(
                    field,
                    format!("{steps} steps; must be 1..={MAX_STEPS}"),
                ));
            }
        }
        let covariates = self.covariates()?;
        if covariates.len() != self.features.len() {
            return Err(RegistryError::spec("features", "lists a covariate twice"));
        }
        if self.rounds == 0 || self.rounds > 100_000 {
            return Err(RegistryError::spec("rounds", "must be 1..=100000"));
        }
        if let Some(h) = &self.hierarchy {
            h.check(self.protection, self.dp().is_some())
                .map_err(|why| RegistryError::spec("hierarchy", why))?;
        }
        self.deadlines.clone().unwrap_or_default().check()?;
        let arch = &self.architecture;
        for q in REQUIRED_QUANTILES {
            if !arch.quantiles.iter().any(|l| (l - q).abs() < 1e-6) {
                return Err(RegistryError::spec(
                    "architecture.quantiles",
                    format!("{:?} must include 0.1, 0.5 and 0.9", arch.quantiles),
                ));
            }
        }
        let t = &self.training;
        if t.local_epochs == 0 || t.local_epochs > 1000 {
            return Err(RegistryError::spec(
                "training.local_epochs",
                "must be 1..=1000",
            ));
        }
        if !(t.learning_rate.is_finite() && t.learning_rate > 0.0) {
            return Err(RegistryError::spec(
                "training.learning_rate",
                "must be finite and positive",
            ));
        }
        if !(t.fedprox_mu.is_finite() && t.fedprox_mu >= 0.0) {
            return Err(RegistryError::spec(
                "training.fedprox_mu",
                "must be finite and >= 0",
            ));
        }
        if !(t.learning_rate_decay > 0.0 && t.learning_rate_decay <= 1.0) {
            return Err(RegistryError::spec(
                "training.learning_rate_decay",
                "must be in (0, 1]",
            ));
        }
        if !(0.0..1.0).contains(&t.server_momentum) {
            return Err(RegistryError::spec(
                "training.server_momentum",
                "must be in [0, 1)",
            ));
        }
        if !(t.server_learning_rate > 0.0 && t.server_learning_rate <= 10.0) {
            return Err(RegistryError::spec(
                "training.server_learning_rate",
                "must be in (0, 10]",
            ));
        }
        let p = &self.privacy;
        if !(p.clip.is_finite() && p.clip > 0.0) {
            return Err(RegistryError::spec(
                "privacy.clip",
                "must be finite and positive",
            ));
        }
        if p.max_weight == 0 {
            return Err(RegistryError::spec("privacy.max_weight", "must be >= 1"));
        }
        if let Some(dp) = self.dp() {
            dp.validate().map_err(|why| {
                let field = why
                    .split_whitespace()
                    .next()
                    .unwrap_or("dp")
                    .trim_start_matches("dp.");
                let field = match field {
                    "clip_l2" => "clip",
                    "max_epsilon" => "epsilon",
                    other => other,
                };
                RegistryError::spec(format!("privacy.{field}"), why)
            })?;
        } else if p.delta.is_some() || p.epsilon.is_some() {
            return Err(RegistryError::spec(
                "privacy.noise_multiplier",
                "`delta` and `epsilon` need a noise multiplier",
            ));
        }
        let config = self.forecaster_config();
        config
            .validate()
            .map_err(|e| RegistryError::spec("architecture", e.to_string()))?;
        if config.num_params() > MAX_PARAMETERS {
            return Err(RegistryError::spec(
                "architecture.hidden",
                format!(
                    "{} parameters; at most {MAX_PARAMETERS}",
                    config.num_params()
                ),
            ));
        }
        match self.protection {
            Protection::Encrypted => {
                return Err(RegistryError::spec(
                    "protection",
                    "`encrypted` is not available for registry models yet; use `masked`",
                ));
            }
            Protection::Masked if t.min_participants < 3 => {
                return Err(RegistryError::spec(
                    "training.min_participants",
                    format!(
                        "{} is too few: masked rounds need at least 3",
                        t.min_participants
                    ),
                ));
            }
            _ if t.min_participants == 0 => {
                return Err(RegistryError::spec(
                    "training.min_participants",
                    "must be >= 1",
                ));
            }
            _ => {}
        }
        self.serving_spec()?;
        Ok(())
    }

    /// The covariates of `features`, sorted and distinct.
    pub fn covariates(&self) -> Result<Vec<Covariate>, RegistryError> {
        let mut out = Vec::with_capacity(self.features.len());
        for name in &self.features {
            let c = Covariate::from_name(name).ok_or_else(|| {
                RegistryError::spec(
                    "features",
                    format!(
                        "unknown feature `{name}`; known: {}",
                        Covariate::ALL.map(Covariate::name).join(", ")
                    ),
                )
            })?;
            out.push(c);
        }
        out.sort();
        out.dedup();
        Ok(out)
    }

    /// How the forecast service rebuilds this model's inputs (`models::serving::ServingSpec`).
    pub fn serving_spec(&self) -> Result<ServingSpec, RegistryError> {
        ServingSpec::new(
            self.target,
            self.resolution,
            self.context,
            self.forecaster_config(),
            self.covariates()?,
        )
        .map_err(|e| RegistryError::spec("architecture", e.to_string()))
    }

    /// Input width of the network: context lags, per-step covariates, origin calendar.
    pub fn n_features(&self) -> usize {
        feature_count(self.context, self.horizon)
    }

    /// The complete network and training config handed to participants.
    pub fn forecaster_config(&self) -> ForecasterConfig {
        let a = &self.architecture;
        ForecasterConfig::new(self.n_features(), self.horizon)
            .with_hidden(a.hidden.clone())
            .with_activation(a.activation)
            .with_dropout(a.dropout)
            .with_quantiles(a.quantiles.clone())
            .with_batch_size(a.batch_size)
            .with_weight_decay(a.weight_decay)
            .with_seed(a.seed)
            .with_learning_rate(f64::from(self.training.learning_rate))
            .with_proximal_mu(self.training.fedprox_mu)
    }

    /// The federation that trains this model, starting from the spec's seeded initialization.
    pub fn federation(&self) -> Result<FederationSpec, RegistryError> {
        let config = self.forecaster_config();
        let initial = models::to_flat(&config.init(&models::inference_device())?)?;
        let mut f = FederationSpec::vector(&self.name, 0, self.protection, self.rounds);
        f.tag = self.tag();
        f.model_spec_json = serde_json::to_string(&config)?;
        f.initial_weights = InitialWeights::Values(initial);
        f.min_participants = self.training.min_participants;
        f.participants_per_round = self.training.participants_per_round;
        f.local_epochs = self.training.local_epochs;
        f.learning_rate = self.training.learning_rate;
        f.learning_rate_decay = self.training.learning_rate_decay;
        f.fedprox_mu = self.training.fedprox_mu;
        f.server_momentum = self.training.server_momentum;
        f.server_learning_rate = self.training.server_learning_rate;
        f.clip = self.privacy.clip;
        f.max_weight = self.privacy.max_weight;
        f.dp = self.dp();
        f.hierarchy = self.hierarchy.clone();
        let deadlines = self.deadlines.clone().unwrap_or_default();
        f.selection_timeout_ms = deadlines.selection_s * 1000;
        f.keys_timeout_ms = deadlines.keys_s * 1000;
        f.upload_timeout_ms = deadlines.upload_s * 1000;
        f.unmask_timeout_ms = deadlines.unmask_s * 1000;
        // Every registered version gets federated metrics before its manifest is signed.
        f.evaluate = true;
        Ok(f)
    }
}
