//! `gridfed simulate market`: the microgrid market run on the federation's forecasts.
//!
//! Every site of a fleet becomes an agent. Forecast sources are built for the held-out days of
//! each site's net load (load minus PV, derived where the site meters them separately):
//! persistence, seasonal naive, a local-only MLP, the federated MLP (trained over loopback
//! gRPC, SecAgg+ by default) and the federated model fine-tuned by each site's daemon (with its
//! seasonal guard); perfect foresight is added by the market. The federated forecasts are the
//! in-process evaluation path, which `models/tests/serving.rs` shows equal to what the
//! coordinator's Forecast service serves.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, ensure};
use clap::{Args, Subcommand};
use coordinator::Protection;
use datasets::synth::{FleetConfig, Profile, generate_fleet};
use datasets::{Resolution, SampleSet, SiteMetadata, Target};
use market::{
    AgentSeries, ClearingMode, DayForecast, ForecastSource, MarketConfig, MarketInputs,
    MarketReport, MeteredDay, Scenario, simulate,
};
use models::{ForecasterConfig, QuantileForecast, Season, persistence, seasonal_naive};
use rayon::prelude::*;

use super::federated::{FederatedPlan, federated_forecasts, round_progress};
use super::fleet::{GriddedFleet, from_synthetic, load_dir};
use super::market_plots;
use super::market_report::{render, render_scenarios};
use super::train::{Format, prepared_sets, split_spec};

#[derive(Subcommand)]
pub enum SimulateCommand {
    /// Agent-based microgrid market on the forecasts of every source; prints the comparison
    /// table and writes plots.
    Market(MarketArgs),
}

#[derive(Args)]
pub struct MarketArgs {
    /// Fleet directory (sites.json + Parquet); the demo's synthetic fleet when omitted.
    #[arg(long)]
    pub fleet: Option<PathBuf>,
    /// Held-out days to simulate (the first ones of the test period).
    #[arg(long, default_value_t = 30)]
    pub days: usize,
    /// Clear every day through secure aggregation of the bids (checked against plain clearing).
    #[arg(long)]
    pub private: bool,
    /// Stress scenario: none, cloud-front, heat-wave, forecast-outage, rogue-bidder, or `all`
    /// (every scenario on the same forecasts, with a summary table).
    #[arg(long, default_value = "none", value_parser = parse_scenarios)]
    pub scenario: Scenarios,
    /// Market configuration (TOML); the built-in microgrid when omitted.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Federated rounds.
    #[arg(long, default_value_t = 120)]
    pub rounds: usize,
    /// Sites of the synthetic fleet (without --fleet).
    #[arg(long, default_value_t = 10)]
    pub sites: usize,
    /// Days of history per site of the synthetic fleet (the last 20% are held out).
    #[arg(long, default_value_t = 365)]
    pub fleet_days: usize,
    /// Profile of the synthetic fleet: `clean` or `realistic`.
    #[arg(long, default_value = "clean")]
    pub profile: Profile,
    /// Seed of the synthetic fleet and of the models (the market's own seed is in --config).
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Where the plots go (SVG and PNG).
    #[arg(long, default_value = "market-report")]
    pub out: PathBuf,
    /// `table` (comparison tables and plot paths) or `json` (one report per scenario).
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
}

/// The scenarios of one run.
#[derive(Clone, Debug)]
pub struct Scenarios(pub Vec<Scenario>);

fn parse_scenarios(name: &str) -> Result<Scenarios, String> {
    if name == "all" {
        return Ok(Scenarios(Scenario::ALL.to_vec()));
    }
    let one = Scenario::from_name(name).ok_or_else(|| {
        let names: Vec<&str> = Scenario::ALL.iter().map(|s| s.name()).collect();
        format!(
            "unknown scenario `{name}` (expected one of {} or all)",
            names.join(", ")
        )
    })?;
    Ok(Scenarios(vec![one]))
}

pub fn run(cmd: SimulateCommand) -> Result<()> {
    match cmd {
        SimulateCommand::Market(args) => run_market(&args),
    }
}

fn run_market(args: &MarketArgs) -> Result<()> {
    let started = Instant::now();
    let table = args.format == Format::Table;
    let simulated = simulate_market(args, table)?;
    if table {
        for report in &simulated.reports {
            print!("{}", render(report, &simulated.inputs));
        }
        if simulated.reports.len() > 1 {
            print!("{}", render_scenarios(&simulated.reports));
        }
        for path in &simulated.plots {
            println!("  plot: {}", path.display());
        }
        println!("total {:.0} s", started.elapsed().as_secs_f64());
    } else {
        println!("{}", serde_json::to_string_pretty(&simulated.reports)?);
    }
    Ok(())
}

/// A finished simulation: one report per scenario, what they ran on, and the plots written
/// (of the first scenario).
pub struct SimulatedMarket {
    pub reports: Vec<MarketReport>,
    pub inputs: MarketInputs,
    pub plots: Vec<PathBuf>,
}

/// Builds the forecast sources for `args`' fleet, runs the market and writes the plots.
pub fn simulate_market(args: &MarketArgs, progress: bool) -> Result<SimulatedMarket> {
    let config = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading market config {}", path.display()))?;
            MarketConfig::from_toml(&text).with_context(|| format!("in {}", path.display()))?
        }
        None => MarketConfig::default(),
    };
    ensure!(args.days >= 1, "--days must be at least 1");
    let mut fleet = match &args.fleet {
        Some(dir) => load_dir(dir, Resolution::Hour)?,
        None => from_synthetic(generate_fleet(&FleetConfig {
            sites: args.sites,
            days: args.fleet_days,
            resolution: Resolution::Hour,
            seed: args.seed,
            profile: args.profile,
            ..FleetConfig::default()
        })),
    };
    derive_net_load(&mut fleet);
    let inputs = market_inputs(&fleet, args, progress)?;
    let mode = if args.private {
        ClearingMode::Private
    } else {
        ClearingMode::Plain
    };
    let reports = args
        .scenario
        .0
        .iter()
        .map(|&scenario| simulate(&inputs, &config, scenario, mode))
        .collect::<Result<Vec<_>, _>>()?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let first = reports.first().context("no scenario to run")?;
    let plots = market_plots::write_all(&args.out, first, &inputs)?;
    Ok(SimulatedMarket {
        reports,
        inputs,
        plots,
    })
}

/// Net load where a site does not meter it: load minus PV (either absent counts as zero).
fn derive_net_load(fleet: &mut GriddedFleet) {
    for series in &mut fleet.series {
        let t = &mut series.telemetry;
        let n = t.timestamps.len();
        let value = |column: &Option<Vec<Option<f64>>>, i: usize| match column {
            Some(values) => values[i],
            None => Some(0.0),
        };
        let derived: Vec<Option<f64>> = (0..n)
            .map(|i| Some(value(&t.load_kw, i)? - value(&t.pv_kw, i)?))
            .collect();
        match &mut t.net_load_kw {
            Some(measured) => {
                for (m, d) in measured.iter_mut().zip(derived) {
                    if m.is_none() {
                        *m = d;
                    }
                }
            }
            None => t.net_load_kw = Some(derived),
        }
    }
}

/// Forecasts of one source for each site's test set, in kW.
type SiteForecasts = Vec<QuantileForecast>;

fn market_inputs(fleet: &GriddedFleet, args: &MarketArgs, table: bool) -> Result<MarketInputs> {
    let target = Target::NetLoad;
    let split = split_spec(fleet.resolution, None, None, 0.2);
    let (prepared, train, test) = prepared_sets(fleet, target, split)?;
    for skipped in &prepared.skipped {
        eprintln!("  site {} sits out: {}", skipped.site_id, skipped.reason);
    }
    let first = &train[0];
    let model_config =
        ForecasterConfig::day_ahead(target, first.n_features, first.horizon).with_seed(args.seed);
    let step = Instant::now();
    let baseline = |f: &dyn Fn(&SampleSet) -> Result<QuantileForecast, models::ModelError>| {
        test.iter().map(f).collect::<Result<SiteForecasts, _>>()
    };
    let persistence_forecasts = baseline(&persistence)?;
    let naive = baseline(&|t| seasonal_naive(t, Season::Day))?;
    if table {
        eprintln!("  training local-only MLPs on {} sites ...", train.len());
    }
    let local: SiteForecasts = train
        .par_iter()
        .zip(&test)
        .map(|(train_set, test_set)| {
            let trained = models::train(&model_config, train_set)?;
            let predict = |d: &SampleSet| trained.forecaster.predict(d);
            Ok(models::evaluation::guarded_site(&model_config, train_set, test_set, predict)?.0)
        })
        .collect::<Result<_>>()?;
    let plan = FederatedPlan {
        rounds: args.rounds,
        local_epochs: 1,
        protection: Protection::Masked,
        server_momentum: 0.0,
        personalize: Some(target),
        evaluate: None,
        dp: None,
    };
    let progress = round_progress("net load".into());
    let federated = federated_forecasts(&prepared, &test, &model_config, &plan, |d, a| {
        if table {
            progress(d, a);
        }
    })?;
    if table {
        eprintln!("  forecasts ready ({:.0} s)", step.elapsed().as_secs_f64());
    }
    let sources = [
        ("persistence", persistence_forecasts),
        ("seasonal naive (day)", naive),
        ("local-only MLP", local),
        ("federated MLP", federated.global),
        ("federated + fine-tuned", federated.tuned),
    ];
    let days = simulated_days(&test, args.days);
    let agents = test
        .iter()
        .zip(prepared.iter())
        .map(|(set, site)| agent_series(set, fleet, &site.site.site_id, &days))
        .collect::<Result<Vec<_>>>()?;
    let sources = sources
        .into_iter()
        .map(|(name, forecasts)| {
            Ok(ForecastSource {
                name: name.into(),
                forecasts: test
                    .iter()
                    .zip(&forecasts)
                    .zip(prepared.iter())
                    .map(|((set, f), site)| day_forecasts(set, f, &site.site, &days))
                    .collect::<Result<_>>()?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(MarketInputs {
        day_starts: days,
        agents,
        sources,
        fallback: Some(0),
    })
}

/// The first `count` test days (forecast origins) of the fleet, in time order.
fn simulated_days(test: &[SampleSet], count: usize) -> Vec<i64> {
    let mut days: Vec<i64> = test
        .iter()
        .flat_map(|t| t.origins.iter().copied())
        .collect();
    days.sort_unstable();
    days.dedup();
    days.truncate(count);
    days
}

/// Index of the sample of `set` issued at `origin`.
fn sample_at(set: &SampleSet, origin: i64) -> Option<usize> {
    set.origins.iter().position(|&o| o == origin)
}

fn agent_series(
    set: &SampleSet,
    fleet: &GriddedFleet,
    site_id: &str,
    days: &[i64],
) -> Result<AgentSeries> {
    let series = fleet
        .series
        .iter()
        .find(|s| s.telemetry.site_id == site_id)
        .with_context(|| format!("site {site_id} has no telemetry"))?;
    let t = &series.telemetry;
    let step = fleet.resolution.seconds();
    let start = t.timestamps.first().copied().unwrap_or(0);
    let pv_at = |unix: i64| -> f64 {
        let i = usize::try_from((unix - start) / step).ok();
        i.and_then(|i| t.pv_kw.as_ref()?.get(i).copied().flatten())
            .unwrap_or(0.0)
    };
    let days = days
        .iter()
        .map(|&origin| {
            let i = sample_at(set, origin)?;
            let norm = set.normalization_of(i);
            let net: Vec<f64> = set
                .y_row(i)
                .iter()
                .map(|&v| f64::from(norm.denormalize(v)))
                .collect();
            let pv: Vec<f64> = (0..net.len())
                .map(|h| pv_at(origin + h as i64 * step))
                .collect();
            Some(MeteredDay {
                load_kw: net.iter().zip(&pv).map(|(n, p)| n + p).collect(),
                pv_kw: pv,
            })
        })
        .collect();
    Ok(AgentSeries {
        name: site_id.to_string(),
        days,
    })
}

/// What a site's net load can physically be at `unix_s` (one hour): never below minus its PV
/// capacity, and not below zero at night or without PV; never above zero without load.
fn physical_bounds(site: &SiteMetadata, unix_s: i64) -> (f64, f64) {
    let generating = site.kind.has_pv()
        && datasets::solar::is_daylight(site.latitude, site.longitude, unix_s, 3600);
    let lo = if generating {
        -site.export_limit_kw.unwrap_or(site.capacity_kw).max(0.0)
    } else {
        0.0
    };
    let hi = if site.kind.has_load() {
        f64::INFINITY
    } else {
        0.0
    };
    (lo, hi)
}

/// A source's forecasts of one site for the simulated days, in kW, every level clamped to the
/// site's [`physical_bounds`] (the same for every source, so no source gains from it alone).
fn day_forecasts(
    set: &SampleSet,
    forecast: &QuantileForecast,
    site: &SiteMetadata,
    days: &[i64],
) -> Result<Vec<Option<DayForecast>>> {
    forecast.check_matches(set)?;
    Ok(days
        .iter()
        .map(|&origin| {
            let i = sample_at(set, origin)?;
            let norm = set.normalization_of(i);
            let values = (0..forecast.quantiles.len())
                .map(|level| {
                    (0..forecast.horizon)
                        .map(|h| {
                            let (lo, hi) = physical_bounds(site, origin + 3600 * h as i64);
                            f64::from(norm.denormalize(forecast.value(i, level, h))).clamp(lo, hi)
                        })
                        .collect()
                })
                .collect();
            Some(DayForecast {
                quantiles: forecast.quantiles.iter().map(|&q| f64::from(q)).collect(),
                values,
            })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small(out: &std::path::Path) -> MarketArgs {
        MarketArgs {
            fleet: None,
            days: 6,
            private: false,
            scenario: Scenarios(vec![Scenario::None]),
            config: None,
            rounds: 3,
            sites: 6,
            fleet_days: 70,
            profile: Profile::Clean,
            seed: 3,
            out: out.to_path_buf(),
            format: Format::Json,
        }
    }

    /// The whole command on a small synthetic fleet: every source, federated ones included,
    /// goes through the market; private clearing agrees with plain; plots are real files.
    #[test]
    fn simulate_market_compares_every_source_and_draws_the_plots() {
        let dir = tempfile::tempdir().unwrap();
        let mut args = small(dir.path());
        args.private = true;
        let simulated = simulate_market(&args, false).unwrap();
        let report = &simulated.reports[0];
        let names: Vec<&str> = report.sources.iter().map(|s| s.source.as_str()).collect();
        assert_eq!(
            names,
            [
                "persistence",
                "seasonal naive (day)",
                "local-only MLP",
                "federated MLP",
                "federated + fine-tuned",
                "perfect foresight"
            ]
        );
        assert_eq!(report.days, 6);
        assert_eq!(report.agents.len(), 6);
        let private = report.private.as_ref().unwrap();
        assert_eq!((private.rounds, private.mismatches), (6 * 6, 0));
        let perfect = report.sources.last().unwrap();
        for source in &report.sources[..5] {
            assert!(
                source.imbalance_cost > 10.0 * perfect.imbalance_cost,
                "{}",
                source.source
            );
        }
        assert_eq!(simulated.plots.len(), 6);
        for path in &simulated.plots {
            let bytes = std::fs::read(path).unwrap();
            match path.extension().and_then(|e| e.to_str()) {
                Some("svg") => assert!(String::from_utf8_lossy(&bytes).contains("<svg")),
                _ => assert_eq!(&bytes[..4], b"\x89PNG"),
            }
        }
        let table = render(report, &simulated.inputs);
        assert!(
            table.contains("federated + fine-tuned imbalance cost"),
            "{table}"
        );
    }

    #[test]
    fn all_scenarios_run_on_the_same_forecasts_with_a_summary() {
        let dir = tempfile::tempdir().unwrap();
        let mut args = small(dir.path());
        args.scenario = parse_scenarios("all").unwrap();
        let simulated = simulate_market(&args, false).unwrap();
        let names: Vec<Scenario> = simulated.reports.iter().map(|r| r.scenario).collect();
        assert_eq!(names, Scenario::ALL);
        let summary = render_scenarios(&simulated.reports);
        assert!(
            summary.contains("rogue-bidder") && summary.contains("perfect foresight"),
            "{summary}"
        );
        assert!(parse_scenarios("hail").unwrap_err().contains("cloud-front"));
    }

    #[test]
    fn a_malformed_market_config_names_its_file_and_field() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("market.toml");
        std::fs::write(&path, "[ladder]\nlevels = 1\n").unwrap();
        let mut args = small(dir.path());
        args.config = Some(path);
        let err = format!("{:#}", simulate_market(&args, false).err().unwrap());
        assert!(err.contains("market.toml"), "{err}");
        assert!(
            err.contains("tariff") || err.contains("ladder.levels"),
            "{err}"
        );
    }
}
