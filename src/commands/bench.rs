//! `gridfed bench ...`: the benchmarks of the running system, each with its baseline measured
//! in the same run.

use anyhow::Result;
use clap::Subcommand;

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// Real federated rounds over loopback gRPC, training excluded; prints JSON.
    Round(super::federation::BenchRoundArgs),
    /// The Forecast service under concurrent clients over loopback gRPC, beside the bare
    /// inference of the same model; prints JSON.
    Forecast(super::bench_forecast::BenchForecastArgs),
    /// Clearing a day of the microgrid market, plain and with private bids (SecAgg+), in one
    /// process; prints JSON.
    Market(super::bench_market::BenchMarketArgs),
    /// One hierarchical secure-aggregation round over a simulated fleet (feeder aggregators
    /// running SecAgg+, a root adding their sums), beside plain sums and a flat round; prints
    /// JSON.
    Fleet(super::bench_fleet::BenchFleetArgs),
    /// Forecast throughput of read-only replicas on PostgreSQL (1, 2, 4) against one
    /// coordinator on redb, and registry operations per second on each engine; prints JSON.
    Replicas(super::bench_replicas::BenchReplicasArgs),
    /// A local TLS federation (separate processes) trained while the coordinator and the
    /// sites are killed with SIGKILL on a seeded schedule; checks every version arrived once
    /// and verifies; prints JSON (with --baseline, the slowdown against no faults).
    Chaos(super::bench_chaos::BenchChaosArgs),
}

pub fn run(cmd: BenchCommand) -> Result<()> {
    match cmd {
        BenchCommand::Round(args) => super::federation::run_bench_round(args),
        BenchCommand::Forecast(args) => super::bench_forecast::run(args),
        BenchCommand::Market(args) => super::bench_market::run(args),
        BenchCommand::Fleet(args) => super::bench_fleet::run(args),
        BenchCommand::Replicas(args) => super::bench_replicas::run(args),
        BenchCommand::Chaos(args) => super::bench_chaos::run(args),
    }
}
