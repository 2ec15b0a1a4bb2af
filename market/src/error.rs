//! Errors of the market: bad configuration names its field, bad books name the agent and hour.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum MarketError {
    /// A market configuration value that cannot work; `field` is its dotted path.
    #[error("market config field `{field}`: {reason}")]
    Config { field: String, reason: String },
    /// A market configuration file that is not valid TOML or has unknown fields.
    #[error("market config: {0}")]
    ConfigSyntax(String),
    /// An order or bid curve that the book cannot take.
    #[error("bid of agent {agent} for hour {hour}: {reason}")]
    InvalidBid {
        agent: usize,
        hour: usize,
        reason: String,
    },
    /// Inputs of a simulation that do not line up (days, hours, agents).
    #[error("market inputs: {0}")]
    Inputs(String),
    /// A settled step whose energy does not add up: a bug, never silently accepted.
    #[error("energy balance of agent {agent} at hour {hour} is off by {gap_kwh:.9} kWh")]
    EnergyBalance {
        agent: usize,
        hour: usize,
        gap_kwh: f64,
    },
    /// A battery schedule outside the battery's limits: a bug, never silently accepted.
    #[error("battery of agent {agent} at hour {hour}: {reason}")]
    BatteryLimit {
        agent: usize,
        hour: usize,
        reason: String,
    },
    /// The secure-aggregation round behind private clearing failed.
    #[error("private clearing: {0}")]
    Private(#[from] crypto::CryptoError),
}

pub(crate) fn config_error(field: &str, reason: impl Into<String>) -> MarketError {
    MarketError::Config {
        field: field.to_string(),
        reason: reason.into(),
    }
}
