//! `gridfed init`: scaffolds that run, the way `flwr new` starts a project.
//!
//! - `init local [DIR] --sites N`: a whole federation on this machine (TLS, coordinator.toml
//!   with fresh tokens, a registry model spec, site telemetry, one participant.toml per site),
//!   which `gridfed up` runs.
//! - `init coordinator DIR --host NAME`: the coordinator's side for a real deployment: TLS
//!   material for the names participants reach it by, tokens, coordinator.toml, the model spec.
//! - `init participant DIR --coordinator URL --token T --ca-cert ca.pem --data FLEET`: one
//!   site's daemon, checked against its telemetry before anything is written.

mod files;
mod local;
mod machines;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Subcommand};

pub use local::{LocalArgs, scaffold};
pub use machines::{CoordinatorArgs, ParticipantArgs};

/// Where `init local` and `up` put and find a project when no directory is named.
pub const DEFAULT_LOCAL_DIR: &str = "gridfed-local";

#[derive(Subcommand)]
pub enum InitCommand {
    /// A whole federation on this machine, run by `gridfed up`: TLS, coordinator.toml with
    /// fresh tokens, a model spec, site telemetry and one participant.toml per site.
    Local(LocalArgs),
    /// The coordinator of a multi-machine deployment: TLS for its host names, enrollment,
    /// operator and board reader tokens, coordinator.toml and a model spec.
    Coordinator(CoordinatorArgs),
    /// One site's participant daemon: participant.toml and the coordinator's CA, checked
    /// against the site's telemetry.
    Participant(ParticipantArgs),
}

/// The model settings every scaffold shares.
#[derive(Args, Clone)]
pub struct ModelChoice {
    /// Forecast target: load, pv or net_load.
    #[arg(long, default_value = "load")]
    pub target: String,
    /// Federated rounds of the model spec.
    #[arg(long, default_value_t = 20)]
    pub rounds: u64,
}

impl ModelChoice {
    fn target(&self) -> Result<datasets::Target> {
        self.target
            .parse()
            .map_err(|e| anyhow::anyhow!("--target: {e}"))
    }

    /// The registry name and federation tag of the scaffolded model.
    fn federation_tag(target: datasets::Target) -> String {
        format!("fleet-{}", target.as_str())
    }
}

pub fn run(command: InitCommand) -> Result<()> {
    match command {
        InitCommand::Local(args) => local::run(args),
        InitCommand::Coordinator(args) => machines::run_coordinator(args),
        InitCommand::Participant(args) => machines::run_participant(args),
    }
}

/// `DIR` or the default project directory.
fn project_dir(dir: Option<PathBuf>) -> PathBuf {
    dir.unwrap_or_else(|| PathBuf::from(DEFAULT_LOCAL_DIR))
}
