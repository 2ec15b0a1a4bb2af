//! Participant configuration (`participant.toml`).
//!
//! ```toml
//! coordinator = "https://coordinator.example:7400"
//! ca_cert = "/etc/gridfed/ca.pem"   # from `gridfed coordinator init-tls`
//! key_file = "/var/lib/gridfed/site.key"
//! enrollment_token = "issued-by-the-operator"
//! site_label = "feeder-12 substation"
//! federation_tag = "residential-load"
//!
//! [data]
//! dir = "/var/lib/gridfed/telemetry"
//! site_id = "site-007"
//! target = "load"
//! resolution = "1h"
//!
//! [limits]
//! threads = 1
//! max_round_seconds = 600
//! ```

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::ParticipantError;
use crate::client::CoordinatorEndpoint;

/// Where the site's telemetry is and how to cut it into samples.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// A fleet directory (`sites.json` + Parquet files) holding this site's telemetry.
    pub dir: PathBuf,
    pub site_id: String,
    /// `load`, `pv` or `net_load`.
    pub target: String,
    #[serde(default = "defaults::resolution")]
    pub resolution: String,
    /// Context steps; default one week.
    #[serde(default)]
    pub context: Option<usize>,
    /// Horizon steps; default one day.
    #[serde(default)]
    pub horizon: Option<usize>,
    #[serde(default = "defaults::test_fraction")]
    pub test_fraction: f64,
}

/// Resource limits of the daemon.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Threads local training may use.
    #[serde(default = "defaults::threads")]
    pub threads: usize,
    /// A round whose local training takes longer is skipped.
    #[serde(default = "defaults::max_round_seconds")]
    pub max_round_seconds: u64,
    /// How long one GetTask may wait at the coordinator.
    #[serde(default = "defaults::long_poll_ms")]
    pub long_poll_ms: u32,
    /// Reconnect backoff bounds.
    #[serde(default = "defaults::backoff_initial_ms")]
    pub backoff_initial_ms: u64,
    #[serde(default = "defaults::backoff_max_ms")]
    pub backoff_max_ms: u64,
    /// The weakest differential privacy this site accepts: it refuses to join a federation
    /// without a DP budget at or below this epsilon. `None` accepts any federation.
    #[serde(default)]
    pub max_epsilon: Option<f64>,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            threads: defaults::threads(),
            max_round_seconds: defaults::max_round_seconds(),
            long_poll_ms: defaults::long_poll_ms(),
            backoff_initial_ms: defaults::backoff_initial_ms(),
            backoff_max_ms: defaults::backoff_max_ms(),
            max_epsilon: None,
        }
    }
}

mod defaults {
    pub fn resolution() -> String {
        "1h".into()
    }
    pub fn test_fraction() -> f64 {
        0.2
    }
    pub fn threads() -> usize {
        1
    }
    pub fn max_round_seconds() -> u64 {
        600
    }
    pub fn long_poll_ms() -> u32 {
        10_000
    }
    pub fn backoff_initial_ms() -> u64 {
        100
    }
    pub fn backoff_max_ms() -> u64 {
        5_000
    }
}

/// The whole participant configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParticipantConfig {
    /// Coordinator gRPC URL: `https://host:port`; its certificate must name `host`.
    pub coordinator: String,
    /// PEM file of the CA that signed the coordinator's certificate.
    #[serde(default)]
    pub ca_cert: Option<PathBuf>,
    /// Allow an `http://` coordinator (plaintext, unauthenticated server): tests only.
    #[serde(default)]
    pub insecure_plaintext: bool,
    /// The site's Ed25519 secret (32 bytes), created on first start.
    pub key_file: PathBuf,
    pub enrollment_token: String,
    #[serde(default)]
    pub site_label: String,
    /// The federation to join, by tag.
    pub federation_tag: String,
    pub data: DataConfig,
    #[serde(default)]
    pub limits: Limits,
    /// After the last round, fine-tune the final model on this site's data and save it here
    /// (a model artifact: weights.safetensors + manifest.json). Never leaves the site.
    #[serde(default)]
    pub personalized_model_dir: Option<PathBuf>,
}

impl ParticipantConfig {
    pub fn from_toml(text: &str) -> Result<Self, ParticipantError> {
        let config: Self =
            toml::from_str(text).map_err(|e| ParticipantError::Config(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), ParticipantError> {
        let fail = |m: String| Err(ParticipantError::Config(m));
        let url = &self.coordinator;
        if url.starts_with("https://") {
            if self.ca_cert.is_none() {
                return fail(format!(
                    "coordinator `{url}`: ca_cert is required (the CA certificate written by \
                     `gridfed coordinator init-tls`)"
                ));
            }
            if self.insecure_plaintext {
                return fail(format!(
                    "coordinator `{url}` is https:// but insecure_plaintext = true: remove one"
                ));
            }
        } else if url.starts_with("http://") {
            if !self.insecure_plaintext {
                return fail(format!(
                    "coordinator `{url}`: plaintext http:// is refused; use https:// with \
                     ca_cert, or set insecure_plaintext = true (tests only)"
                ));
            }
            if self.ca_cert.is_some() {
                return fail(format!(
                    "coordinator `{url}` is http://, so ca_cert would be ignored: use https://"
                ));
            }
        } else {
            return fail(format!("coordinator `{url}` must be an https:// URL"));
        }
        if self.federation_tag.is_empty() {
            return fail("federation_tag is empty".into());
        }
        if self.limits.threads == 0 || self.limits.max_round_seconds == 0 {
            return fail("limits.threads and limits.max_round_seconds must be positive".into());
        }
        if self.data.target.parse::<datasets::Target>().is_err() {
            return fail(format!(
                "data.target `{}` must be `load`, `pv` or `net_load`",
                self.data.target
            ));
        }
        if self
            .data
            .resolution
            .parse::<datasets::Resolution>()
            .is_err()
        {
            return fail(format!(
                "data.resolution `{}` must be 15min, 30min or 1h",
                self.data.resolution
            ));
        }
        if !(0.0..1.0).contains(&self.data.test_fraction) {
            return fail("data.test_fraction must be in [0, 1)".into());
        }
        Ok(())
    }

    /// The coordinator endpoint, reading and checking `ca_cert` for an https:// URL.
    pub fn endpoint(&self) -> Result<CoordinatorEndpoint, ParticipantError> {
        self.validate()?;
        match &self.ca_cert {
            Some(path) => {
                let label = format!("ca_cert ({})", path.display());
                let pem = std::fs::read(path)
                    .map_err(|e| ParticipantError::Config(format!("{label}: cannot read: {e}")))?;
                CoordinatorEndpoint::tls(&self.coordinator, &pem, &label)
            }
            None => CoordinatorEndpoint::insecure_plaintext(&self.coordinator),
        }
    }
}
