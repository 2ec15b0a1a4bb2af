//! One module per subcommand.

pub mod bench;
pub mod bench_fleet;
pub mod bench_forecast;
pub mod bench_market;
pub mod bench_replicas;
pub mod datasets;
pub mod demo;
pub mod demo_privacy;
pub mod federated;
pub mod federation;
pub mod fleet;
pub mod forecast;
pub mod market;
pub mod market_plots;
pub mod market_report;
pub mod models;
mod models_view;
pub mod report;
pub mod runtime;
pub mod train;
