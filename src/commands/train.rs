//! `gridfed train`: train and score forecasters on a fleet directory.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use datasets::{PreparedFleet, Resolution, SampleSet, SplitSpec, Target, prepare_fleet};
use models::gbt::{GbtConfig, GbtForecaster};
use models::{
    EvaluationReport, ForecasterConfig, ModelKind, ModelTiming, TrainingMode, evaluate_fleet,
    score_forecasts,
};

use super::fleet::{GriddedFleet, load_dir};
use super::report::render;

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Mode {
    /// One model per site, trained on that site alone.
    Local,
    /// One model on every site's data pooled (the non-private reference).
    Centralized,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum Format {
    Table,
    Json,
}

#[derive(Args)]
pub struct TrainArgs {
    /// Fleet directory: sites.json + one or more Parquet files.
    #[arg(long)]
    pub data: PathBuf,
    /// What to forecast: load or pv.
    #[arg(long)]
    pub target: Target,
    /// Who trains on what (see the values).
    #[arg(long, value_enum, default_value = "centralized")]
    pub mode: Mode,
    /// Grid to train on (data is averaged onto it; finer data than the grid is required).
    #[arg(long, default_value = "1h")]
    pub resolution: Resolution,
    /// Forecast horizon in grid steps (default: one day).
    #[arg(long)]
    pub horizon: Option<usize>,
    /// Context length in grid steps (default: one week).
    #[arg(long)]
    pub context: Option<usize>,
    /// Fraction of days, the last ones, held out for testing.
    #[arg(long, default_value_t = 0.2)]
    pub test_fraction: f64,
    /// Upper bound on MLP training epochs (early stopping usually ends sooner).
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Seed of initialization and shuffling.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// `table` for people, `json` for scripts.
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
}

/// The split every trainer in gridfed uses unless told otherwise.
pub fn split_spec(
    resolution: Resolution,
    context: Option<usize>,
    horizon: Option<usize>,
    test_fraction: f64,
) -> SplitSpec {
    let mut spec = SplitSpec::day_ahead(resolution.steps_per_day());
    spec.context = context.unwrap_or(spec.context);
    spec.horizon = horizon.unwrap_or(spec.horizon);
    spec.test_fraction = test_fraction;
    spec
}

/// Per-site train and test sets of `target` for every site that measures it and has complete
/// windows (the others are in `PreparedFleet::skipped`, with their reasons).
pub fn prepared_sets(
    fleet: &GriddedFleet,
    target: Target,
    split: SplitSpec,
) -> Result<(PreparedFleet, Vec<SampleSet>, Vec<SampleSet>)> {
    let prepared = prepare_fleet(&fleet.sites, &fleet.series, target, split)?;
    if prepared.is_empty() {
        let reasons: Vec<String> = prepared
            .skipped
            .iter()
            .map(|s| format!("{}: {}", s.site_id, s.reason))
            .collect();
        if reasons.is_empty() {
            bail!("no site in the fleet measures `{}`", target.column());
        }
        bail!(
            "no site can be trained for `{}`:\n  {}",
            target.column(),
            reasons.join("\n  ")
        );
    }
    let train = prepared.iter().map(|p| p.train.clone()).collect();
    let test = prepared.iter().map(|p| p.test.clone()).collect();
    Ok((prepared, train, test))
}

/// Trains and scores every model for `target` on `fleet`.
pub fn evaluate(
    fleet: &GriddedFleet,
    target: Target,
    mode: TrainingMode,
    split: SplitSpec,
    epochs: Option<usize>,
    seed: u64,
) -> Result<EvaluationReport> {
    let (prepared, train, test) = prepared_sets(fleet, target, split)?;
    let first = &train[0];
    let mut config =
        ForecasterConfig::day_ahead(target, first.n_features, first.horizon).with_seed(seed);
    if let Some(epochs) = epochs {
        config = config.with_epochs(epochs);
    }
    let mut report = evaluate_fleet(target, &train, &test, mode, &config)?;
    report.skipped_sites = prepared.skipped;
    if mode == TrainingMode::Centralized {
        add_pooled_gbt(&mut report, target, &train, &test, seed)?;
    }
    Ok(report)
}

/// Fits the pooled gradient-boosted-tree reference and adds its rows to a centralized report:
/// how far every private model is from the best non-private one.
fn add_pooled_gbt(
    report: &mut EvaluationReport,
    target: Target,
    train: &[SampleSet],
    test: &[SampleSet],
    seed: u64,
) -> Result<()> {
    let started = std::time::Instant::now();
    let config = GbtConfig {
        seed,
        ..GbtConfig::for_target(target)
    };
    let trees = GbtForecaster::fit(&config, &SampleSet::concat(train)?)?;
    report.timings.push(ModelTiming {
        model: ModelKind::PooledGbt,
        fit_seconds: started.elapsed().as_secs_f64(),
    });
    let forecasts = test
        .iter()
        .map(|t| trees.predict(t))
        .collect::<Result<Vec<_>, _>>()?;
    let persistence = test
        .iter()
        .map(models::persistence)
        .collect::<Result<Vec<_>, _>>()?;
    report.rows.extend(score_forecasts(
        ModelKind::PooledGbt,
        target,
        test,
        &forecasts,
        &persistence,
    )?);
    Ok(())
}

pub fn run(args: TrainArgs) -> Result<()> {
    let fleet = load_dir(&args.data, args.resolution)?;
    let split = split_spec(
        args.resolution,
        args.context,
        args.horizon,
        args.test_fraction,
    );
    let mode = match args.mode {
        Mode::Local => TrainingMode::Local,
        Mode::Centralized => TrainingMode::Centralized,
    };
    let report = evaluate(&fleet, args.target, mode, split, args.epochs, args.seed)
        .with_context(|| format!("training {:?} models", args.target))?;
    match args.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        Format::Table => print!("{}", render(&report, true)),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use datasets::synth::{FleetConfig, generate_fleet};

    use super::*;
    use crate::commands::fleet::from_synthetic;

    /// One site too short to train must not take the others down, in local mode (which used
    /// to abort the fleet) as well as in the report a user reads.
    #[test]
    fn a_site_without_windows_is_skipped_in_local_training_and_reported() {
        let fleet = generate_fleet(&FleetConfig {
            sites: 4,
            days: 40,
            ..FleetConfig::default()
        });
        let mut fleet = from_synthetic(fleet);
        // Site 1 (a commercial building) keeps only its last five days.
        let t = &mut fleet.series[1].telemetry;
        let keep = t.len() - 5 * 24;
        t.timestamps.drain(..keep);
        if let Some(load) = t.load_kw.as_mut() {
            load.drain(..keep);
        }
        let split = split_spec(Resolution::Hour, None, None, 0.2);
        let report = evaluate(&fleet, Target::Load, TrainingMode::Local, split, Some(2), 1)
            .expect("the other sites train");
        let short = &fleet.sites[1].site_id;
        assert_eq!(report.skipped_sites.len(), 1);
        assert_eq!(&report.skipped_sites[0].site_id, short);
        assert!(report.rows.iter().all(|r| r.site.as_ref() != Some(short)));
        assert_eq!(report.sites, 3);
        assert_eq!(report.guard.len(), 3);
        let table = render(&report, false);
        assert!(table.contains("1 site(s) skipped"), "{table}");
        assert!(table.contains(short.as_str()), "{table}");
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["skipped_sites"][0]["site_id"], short.as_str());
    }
}
