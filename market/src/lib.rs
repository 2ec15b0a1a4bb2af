//! The market side of gridfed: a microgrid spot market that runs on the federation's forecasts.
//!
//! - [`PriceLadder`], [`HourBids`]: bids are step curves on a public ladder of prices.
//! - [`clearing`]: uniform-price double auction (or pay-as-bid) per hour, with the rule for
//!   ties, rationing and the no-cross case in one place.
//! - [`private`]: the same clearing with bids hidden by secure aggregation (`crypto::secagg`).
//! - [`Agent`], [`battery`]: day-ahead positions from quantile forecasts (median or newsvendor)
//!   and battery schedules within the battery's limits.
//! - [`simulate`]: the agent-based simulation that settles every agent on its actual telemetry
//!   and compares forecast sources on imbalance cost, welfare, local PV use and tail risk,
//!   under stress [`Scenario`]s.
//!
//! Plain, synchronous code with no I/O; the `gridfed simulate market` command feeds it.

pub mod agent;
pub mod battery;
pub mod book;
pub mod clearing;
pub mod config;
mod error;
pub mod forecast;
pub mod inputs;
pub mod ladder;
pub mod outcome;
pub mod private;
pub mod scenario;
pub mod simulation;
pub mod wire;
pub mod workload;

pub use agent::{Agent, DayPlan};
pub use battery::{BatterySchedule, BatterySpec};
pub use book::{HourBids, HourBook, Order, Side};
pub use clearing::{
    AggregateCurves, Allocation, ClearedDay, HourClearing, Pricing, clear_day, clear_hour,
};
pub use config::{BidStrategy, HOURS, MarketConfig};
pub use error::MarketError;
pub use forecast::DayForecast;
pub use inputs::{AgentSeries, ForecastSource, MarketInputs, MeteredDay};
pub use ladder::PriceLadder;
pub use outcome::{SourceOutcome, cvar};
pub use private::{PrivateDay, PrivateRound, clear_day_private};
pub use scenario::Scenario;
pub use simulation::{ClearingMode, MarketReport, PrivateSummary, simulate};
