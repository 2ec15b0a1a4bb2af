//! The gridfed participant daemon.
//!
//! A site runs one daemon per federation it joins. The daemon reads the site's telemetry
//! ([`site`]), trains locally from the coordinator's global weights ([`trainer`]), clips the
//! update, and shares it only as a chunked upload: plaintext in test federations, masked with
//! the crypto crate's secure aggregation ([`secure`]) or encrypted under the committee's
//! collective key ([`encrypted`]). Raw telemetry never leaves:
//! every outgoing message passes through [`client::FederationLink`], which a [`client::WireTap`]
//! can observe.
//!
//! - [`run`]: the daemon (`gridfed participant run --config participant.toml`).
//! - [`board`]: publishes the site's own forecasts (never raw data) to the forecast board.
//! - [`production`]: fetches and verifies a registered model version, forecasts the site with
//!   it and publishes the result (`gridfed participant publish-forecast`).
//! - [`check`]: validates config and data and reports what would be shared
//!   (`gridfed participant check`).

pub mod board;
pub mod check;
pub mod client;
pub mod config;
pub mod contribution;
pub mod daemon;
pub mod encrypted;
pub mod error;
pub mod identity;
pub mod personal;
pub mod production;
pub mod secure;
pub mod site;
pub mod trainer;

use std::sync::Arc;

pub use check::{CheckReport, check};
pub use config::{DataConfig, Limits, ParticipantConfig};
pub use daemon::{Daemon, DaemonSettings, RunSummary};
pub use error::ParticipantError;
pub use identity::SiteIdentity;
pub use trainer::{FixedUpdate, LocalResult, LocalTrainer, MlpTrainer, TrainSpec};

/// The secure-aggregation id of a participant: the number in its coordinator-assigned id
/// (`p000042` -> 42).
pub fn secagg_id(participant_id: &str) -> Result<u32, ParticipantError> {
    participant_id
        .strip_prefix('p')
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| {
            ParticipantError::Protocol(format!("participant id `{participant_id}` has no number"))
        })
}

impl DaemonSettings {
    /// The settings of `config`; reads its `ca_cert`.
    pub fn from_config(config: &ParticipantConfig) -> Result<Self, ParticipantError> {
        Ok(Self {
            coordinator: config.endpoint()?,
            enrollment_token: config.enrollment_token.clone(),
            site_label: if config.site_label.is_empty() {
                config.data.site_id.clone()
            } else {
                config.site_label.clone()
            },
            federation_tag: config.federation_tag.clone(),
            limits: config.limits.clone(),
        })
    }
}

/// Runs the daemon of `config` until its federation is done or `shutdown` resolves.
pub async fn run(
    config: ParticipantConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<RunSummary, ParticipantError> {
    let settings = DaemonSettings::from_config(&config)?;
    let data = config.data.clone();
    let prepared = tokio::task::spawn_blocking(move || site::load_site(&data))
        .await
        .map_err(|e| ParticipantError::Protocol(format!("loading data: {e}")))??;
    let identity = Arc::new(SiteIdentity::load_or_create(&config.key_file)?);
    let mut trainer =
        MlpTrainer::new(prepared.train).with_holdout(prepared.test, config.data.target()?);
    if let Some(dir) = &config.personalized_model_dir {
        trainer = trainer.with_personalization(dir.clone(), config.data.target()?);
    }
    let trainer = Arc::new(trainer);
    Daemon::new(settings, identity, trainer)?
        .run(shutdown)
        .await
}
