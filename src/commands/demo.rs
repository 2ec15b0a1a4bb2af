//! `gridfed demo`: the README's main command.
//!
//! Builds a synthetic DER fleet (or reads a real one), then for load and for PV trains and
//! scores local-only, centralized and federated forecasters against the baselines and prints
//! one accuracy table per target.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use coordinator::Protection;
use datasets::synth::{FleetConfig, Profile, generate_fleet};
use datasets::{Resolution, SampleSet, Target};
use models::evaluation::score_forecasts;
use models::{
    EvaluationReport, EvaluationRow, ForecasterConfig, GuardDecision, ModelKind, QuantileForecast,
    TrainingMode, persistence,
};
use serde::Serialize;

use super::federated::{FederatedOutcome, FederatedPlan, federated_forecasts, round_progress};
use super::fleet::{GriddedFleet, from_synthetic, load_dir};
use super::report::render_comparison;
use super::train::{Format, evaluate, prepared_sets, split_spec};

#[derive(Args)]
pub struct DemoArgs {
    /// Sites in the synthetic fleet (one participant daemon each).
    #[arg(long, default_value_t = 10)]
    pub participants: usize,
    /// Federated rounds per target.
    #[arg(long, default_value_t = 120)]
    pub rounds: usize,
    /// Local epochs per round (few local steps and many rounds limit client drift).
    #[arg(long, default_value_t = 1)]
    pub local_epochs: usize,
    /// FedAvgM server momentum (0: plain FedAvg). Speeds up the global model; plain FedAvg
    /// fine-tunes better per site on the demo fleet (see README).
    #[arg(long, default_value_t = 0.0)]
    pub server_momentum: f32,
    /// Protection of the updates on the wire.
    #[arg(long, value_enum, default_value = "masked")]
    pub mode: DemoMode,
    /// Days of synthetic history per site.
    #[arg(long, default_value_t = 365)]
    pub days: usize,
    /// Seed of the synthetic fleet and of training.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Profile of the synthetic fleet: `clean` or `realistic` (appliance-driven homes, no
    /// weather, daylight-only inverters, outages; see `gridfed datasets synth`).
    #[arg(long, default_value = "clean")]
    pub profile: Profile,
    /// Use a real fleet directory (sites.json + Parquet) instead of the synthetic one.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// `table` for people, `json` for scripts.
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
    /// Also train the federated MLP under site-level differential privacy at these epsilons
    /// (comma-separated; `inf` is the non-private run), with delta `--dp-delta`.
    #[arg(long, value_delimiter = ',')]
    pub epsilon: Vec<f64>,
    /// Differential privacy delta of the --epsilon runs.
    #[arg(long, default_value_t = 1e-5)]
    pub dp_delta: f64,
    /// L2 bound of each site's update in the private runs.
    #[arg(long, default_value_t = 1.0)]
    pub dp_clip: f32,
    /// Where the pictures go (SVG and PNG per target: accuracy per round, every site's
    /// error per method, a week of one site's forecast band against its meter).
    #[arg(long, default_value = "gridfed-demo-plots")]
    pub plots: PathBuf,
    /// Draw nothing.
    #[arg(long)]
    pub no_plots: bool,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum DemoMode {
    /// SecAgg+ masked updates (the default protection).
    Masked,
    /// Plaintext updates: for testing only.
    Plain,
    /// Threshold RLWE encryption under a per-round collective key (crypto::he).
    Encrypted,
}

/// Pooled accuracy of one method on one target.
#[derive(Serialize)]
struct DemoRow {
    target: Target,
    method: String,
    row: EvaluationRow,
}

/// Per-site comparison of the private options: what a typical site gains by joining.
#[derive(Serialize)]
struct MedianSite {
    target: Target,
    local_mlp_nmae: f64,
    federated_mlp_nmae: f64,
    federated_fine_tuned_nmae: f64,
    seasonal_naive_day_nmae: f64,
    seasonal_naive_week_nmae: f64,
    /// `1 - fine-tuned / best seasonal naive` on the median site.
    fine_tuned_gain_over_best_naive: f64,
    /// The pooled gradient-boosted-tree reference (non-private).
    pooled_gbt_nmae: f64,
    /// Sites where the fine-tuned federated model beats the site's local-only model.
    fine_tuned_wins: usize,
    /// Sites whose fine-tuned model lost to seasonal naive on their validation days and
    /// that forecast with seasonal naive instead (the seasonal guard).
    guard_fallbacks: usize,
    sites: usize,
    /// Sites left out of this target, with the reason.
    skipped_sites: Vec<datasets::SkippedSite>,
}

/// The final version's federated evaluation, next to the same statistic computed in the clear
/// (possible here only because the demo holds every site's data).
#[derive(Serialize)]
struct FederatedEvaluationRow {
    target: Target,
    version: u64,
    scores: models::FleetScores,
    nmae_in_the_clear: f64,
}

#[derive(Serialize)]
struct DemoReport {
    accuracy: Vec<DemoRow>,
    median_site: Vec<MedianSite>,
    federated_evaluation: Vec<FederatedEvaluationRow>,
    /// `--epsilon`: the federated MLP under site-level differential privacy.
    differential_privacy: Vec<super::demo_privacy::PrivacyRow>,
    /// Targets whose stage failed; the others are reported in full.
    failed_targets: Vec<FailedTarget>,
    /// Pictures written (SVG and PNG).
    plots: Vec<PathBuf>,
}

#[derive(Clone, Debug, Serialize)]
struct FailedTarget {
    target: Target,
    reason: String,
}

/// The statistic a federated evaluation reports, from per-site rows: the nMAE of each site
/// (daylight for PV) weighted by its holdout windows.
fn window_weighted_nmae(sites: &[EvaluationRow], test: &[SampleSet]) -> f64 {
    let (mut sum, mut windows) = (0.0, 0.0);
    for set in test {
        let row = sites
            .iter()
            .find(|r| r.site.as_deref() == set.site_ids.first().map(String::as_str));
        if let Some(row) = row {
            let w = set
                .origins
                .len()
                .min(models::holdout::MAX_SCORE_WEIGHT as usize) as f64;
            sum += w * site_nmae(row);
            windows += w;
        }
    }
    sum / windows
}

fn pooled(report: &EvaluationReport, model: ModelKind) -> Result<EvaluationRow> {
    report
        .overall(model)
        .cloned()
        .with_context(|| format!("report lacks a pooled {} row", model.name()))
}

/// Pooled and per-site accuracy of one federated variant.
pub(super) struct Scored {
    pub(super) pooled: EvaluationRow,
    pub(super) sites: Vec<EvaluationRow>,
    /// Per-site seasonal guard decisions, where the variant applies the guard.
    guard: Vec<GuardDecision>,
}

/// Scores `forecasts` (one per site) like the other models.
pub(super) fn score(
    kind: ModelKind,
    target: Target,
    test: &[SampleSet],
    forecasts: &[QuantileForecast],
) -> Result<Scored> {
    let reference = test
        .iter()
        .map(persistence)
        .collect::<Result<Vec<_>, _>>()?;
    let rows = score_forecasts(kind, target, test, forecasts, &reference)?;
    let (sites, pooled): (Vec<_>, Vec<_>) = rows.into_iter().partition(|r| r.site.is_some());
    let pooled = pooled.into_iter().next().context("no pooled row")?;
    Ok(Scored {
        pooled,
        sites,
        guard: Vec::new(),
    })
}

/// Trains the federated MLP over loopback gRPC and scores the global model, then lets every
/// site fine-tune it on its own training data (early stopping on its own validation days; a
/// site keeps the global model when its data do not improve on it) and scores that too.
fn federated(
    fleet: &GriddedFleet,
    target: Target,
    split: datasets::SplitSpec,
    args: &DemoArgs,
    protection: Protection,
) -> Result<FederatedStage> {
    let (prepared, _, test) = prepared_sets(fleet, target, split)?;
    let first = &prepared[0].train;
    let config =
        ForecasterConfig::day_ahead(target, first.n_features, first.horizon).with_seed(args.seed);
    let plan = demo_plan(args, target, protection);
    let progress = round_progress(format!("{target:?}"));
    let forecasts = federated_forecasts(&prepared, &test, &config, &plan, progress)?;
    let global = score(ModelKind::FederatedMlp, target, &test, &forecasts.global)?;
    let mut tuned = score(
        ModelKind::FederatedFineTuned,
        target,
        &test,
        &forecasts.tuned,
    )?;
    tuned.guard = forecasts.guard;
    let outcome = forecasts.outcome;
    let evaluation = outcome
        .evaluations
        .last_key_value()
        .map(|(&version, scores)| FederatedEvaluationRow {
            target,
            version,
            scores: scores.clone(),
            nmae_in_the_clear: window_weighted_nmae(&global.sites, &test),
        });
    // The pictured site: the median one by fine-tuned error.
    let mut by_error: Vec<usize> = (0..tuned.sites.len().min(test.len())).collect();
    by_error.sort_by(|&a, &b| site_nmae(&tuned.sites[a]).total_cmp(&site_nmae(&tuned.sites[b])));
    let fan = match by_error.get(by_error.len() / 2) {
        Some(&i) => super::demo_plots::SiteFan::of(&test[i], &forecasts.tuned[i], 7)?,
        None => None,
    };
    Ok(FederatedStage {
        global,
        tuned,
        outcome,
        evaluation,
        test,
        fan,
    })
}

/// What the federated stage of one target produced.
struct FederatedStage {
    global: Scored,
    tuned: Scored,
    outcome: FederatedOutcome,
    evaluation: Option<FederatedEvaluationRow>,
    /// The held-out windows, one set per site (in fleet order).
    test: Vec<SampleSet>,
    fan: Option<super::demo_plots::SiteFan>,
}

/// Why a target cannot be federated under `protection` (masking needs neighbours, the
/// encrypted committee a quorum): fewer than 3 sites measure it.
fn too_few_to_protect(
    fleet: &GriddedFleet,
    target: Target,
    split: datasets::SplitSpec,
    protection: Protection,
) -> Result<Option<String>> {
    if protection == Protection::Plain {
        return Ok(None);
    }
    let sites = datasets::prepare_fleet(&fleet.sites, &fleet.series, target, split)?.len();
    Ok((sites < 3).then(|| {
        format!(
            "{sites} site(s) can train `{}`; {} aggregation needs at least 3 (use more --participants)",
            target.column(),
            protection.name()
        )
    }))
}

/// The demo's federation for `target`: personalized, evaluated after every round, no DP.
pub(super) fn demo_plan(args: &DemoArgs, target: Target, protection: Protection) -> FederatedPlan {
    FederatedPlan {
        rounds: args.rounds,
        local_epochs: args.local_epochs,
        protection,
        server_momentum: args.server_momentum,
        personalize: Some(target),
        evaluate: Some(target),
        dp: None,
    }
}

/// Sites whose row in `rows` beats the same site's row in `others` (lower nMAE).
pub(super) fn wins_over(rows: &[EvaluationRow], others: &[&EvaluationRow]) -> usize {
    rows.iter()
        .filter(|t| {
            others
                .iter()
                .find(|l| l.site == t.site)
                .is_some_and(|l| site_nmae(t) < site_nmae(l))
        })
        .count()
}

/// The score a site is compared on: nMAE, on daylight steps for PV.
pub(super) fn site_nmae(row: &EvaluationRow) -> f64 {
    row.daylight.unwrap_or(row.metrics).nmae
}

/// Median over sites of the nMAE (daylight nMAE for PV) of `model`'s per-site rows.
pub(super) fn median_site_nmae<'a>(rows: impl Iterator<Item = &'a EvaluationRow>) -> f64 {
    let mut values: Vec<f64> = rows.filter(|r| r.site.is_some()).map(site_nmae).collect();
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => 0.5 * (values[n / 2 - 1] + values[n / 2]),
    }
}

pub fn run(args: DemoArgs) -> Result<()> {
    let protection = match args.mode {
        DemoMode::Masked => Protection::Masked,
        DemoMode::Plain => Protection::Plain,
        DemoMode::Encrypted => Protection::Encrypted,
    };
    let started = Instant::now();
    let fleet: GriddedFleet = match &args.data {
        Some(dir) => load_dir(dir, Resolution::Hour)?,
        None => {
            let config = FleetConfig {
                sites: args.participants,
                days: args.days,
                resolution: Resolution::Hour,
                seed: args.seed,
                profile: args.profile,
                ..FleetConfig::default()
            };
            from_synthetic(generate_fleet(&config))
        }
    };
    let table = args.format == Format::Table;
    if table {
        println!(
            "fleet: {} sites, {} ({:.1} s)",
            fleet.sites.len(),
            args.data
                .as_ref()
                .map_or("synthetic".to_string(), |d| d.display().to_string()),
            started.elapsed().as_secs_f64()
        );
    }
    let split = split_spec(fleet.resolution, None, None, 0.2);
    let mut rows = Vec::new();
    let mut medians = Vec::new();
    let mut evaluations = Vec::new();
    let mut privacy = Vec::new();
    let mut plots = Vec::new();
    // One target failing (a stage error on a real fleet) must not lose the others: each is
    // reported as it finishes, a failure is reported and the run goes on.
    let mut failed_targets = Vec::new();
    let mut run_target = |target: Target| -> Result<()> {
        // Net load only where a fleet has net meters (the realistic profile, real fleets).
        let measured = fleet
            .series
            .iter()
            .any(|s| target.values(&s.telemetry).is_some());
        if !measured {
            return Ok(());
        }
        if let Some(why) = too_few_to_protect(&fleet, target, split, protection)? {
            eprintln!("{target:?}: skipped: {why}");
            return Ok(());
        }
        let step = Instant::now();
        let centralized = evaluate(
            &fleet,
            target,
            TrainingMode::Centralized,
            split,
            None,
            args.seed,
        )?;
        let local = evaluate(&fleet, target, TrainingMode::Local, split, None, args.seed)?;
        let FederatedStage {
            global,
            tuned,
            outcome,
            evaluation,
            test,
            fan,
        } = federated(&fleet, target, split, &args, protection)?;
        let local_sites: Vec<&EvaluationRow> = local
            .rows
            .iter()
            .filter(|r| r.model == ModelKind::Mlp && r.site.is_some())
            .collect();
        let fine_tuned_wins = wins_over(&tuned.sites, &local_sites);
        let naive_median =
            |kind: ModelKind| median_site_nmae(centralized.rows.iter().filter(|r| r.model == kind));
        let (naive_day, naive_week) = (
            naive_median(ModelKind::SeasonalNaiveDay),
            naive_median(ModelKind::SeasonalNaiveWeek),
        );
        let best_naive = naive_day.min(naive_week);
        let fine_tuned = median_site_nmae(tuned.sites.iter());
        let gbt = naive_median(ModelKind::PooledGbt);
        medians.push(MedianSite {
            target,
            local_mlp_nmae: median_site_nmae(local_sites.iter().copied()),
            federated_mlp_nmae: median_site_nmae(global.sites.iter()),
            federated_fine_tuned_nmae: fine_tuned,
            seasonal_naive_day_nmae: naive_day,
            seasonal_naive_week_nmae: naive_week,
            fine_tuned_gain_over_best_naive: 1.0 - fine_tuned / best_naive,
            pooled_gbt_nmae: gbt,
            fine_tuned_wins,
            guard_fallbacks: tuned.guard.iter().filter(|d| d.fell_back()).count(),
            sites: tuned.sites.len(),
            skipped_sites: centralized.skipped_sites.clone(),
        });
        if !args.no_plots {
            let site_rows = |report: &'_ EvaluationReport, kind: ModelKind| -> Vec<EvaluationRow> {
                report
                    .rows
                    .iter()
                    .filter(|r| r.model == kind && r.site.is_some())
                    .cloned()
                    .collect()
            };
            let naive_day = site_rows(&centralized, ModelKind::SeasonalNaiveDay);
            let naive_week = site_rows(&centralized, ModelKind::SeasonalNaiveWeek);
            let gbt = site_rows(&centralized, ModelKind::PooledGbt);
            let local_rows: Vec<EvaluationRow> = local_sites.iter().map(|r| (*r).clone()).collect();
            let pictures = super::demo_plots::TargetPictures {
                target,
                protection: outcome.protection.name(),
                evaluations: &outcome.evaluations,
                references: vec![
                    (
                        "seasonal naive (day)".into(),
                        window_weighted_nmae(&naive_day, &test),
                    ),
                    (
                        "seasonal naive (week)".into(),
                        window_weighted_nmae(&naive_week, &test),
                    ),
                    (
                        "pooled boosted trees (non-private)".into(),
                        window_weighted_nmae(&gbt, &test),
                    ),
                    (
                        "local-only MLP".into(),
                        window_weighted_nmae(&local_rows, &test),
                    ),
                ],
                methods: vec![
                    ("seasonal naive (day)".into(), naive_day.iter().collect()),
                    ("local-only MLP".into(), local_sites.clone()),
                    ("pooled boosted trees".into(), gbt.iter().collect()),
                    ("federated MLP".into(), global.sites.iter().collect()),
                    ("federated + fine-tune".into(), tuned.sites.iter().collect()),
                ],
                fan,
            };
            let files = super::demo_plots::write(&args.plots, &pictures)?;
            if table {
                println!("  plots: {} files in {}", files.len(), args.plots.display());
            }
            plots.extend(files);
        }
        let reference = (site_nmae(&global.pooled), site_nmae(&tuned.pooled));
        let mut methods = vec![
            (
                "seasonal naive (day)".to_string(),
                pooled(&centralized, ModelKind::SeasonalNaiveDay)?,
            ),
            (
                "seasonal naive (week)".to_string(),
                pooled(&centralized, ModelKind::SeasonalNaiveWeek)?,
            ),
            (
                "local-only MLP".to_string(),
                pooled(&local, ModelKind::Mlp)?,
            ),
            (
                "centralized ridge".to_string(),
                pooled(&centralized, ModelKind::Ridge)?,
            ),
            (
                "centralized MLP".to_string(),
                pooled(&centralized, ModelKind::Mlp)?,
            ),
            (
                "centralized boosted trees".to_string(),
                pooled(&centralized, ModelKind::PooledGbt)?,
            ),
            (
                format!("federated MLP ({})", outcome.protection.name()),
                global.pooled,
            ),
            ("federated MLP + local fine-tune".to_string(), tuned.pooled),
        ];
        if table {
            let labelled: Vec<(String, &EvaluationRow)> = methods
                .iter()
                .map(|(label, row)| (label.clone(), row))
                .collect();
            let title = format!(
                "{target:?}, day-ahead, {} sites, last 20% of days held out ({:.0} s)",
                centralized.sites,
                step.elapsed().as_secs_f64()
            );
            println!("\n{}", render_comparison(&title, &labelled));
            let last = medians.last().context("median row")?;
            println!(
                "  median site nMAE: federated + fine-tune {:.2}% (global {:.2}%) vs local-only {:.2}%; fine-tuned beats local-only on {}/{} sites",
                100.0 * last.federated_fine_tuned_nmae,
                100.0 * last.federated_mlp_nmae,
                100.0 * last.local_mlp_nmae,
                last.fine_tuned_wins,
                last.sites
            );
            println!(
                "  vs seasonal naive (median site): day {:.2}%, week {:.2}%; federated + fine-tune is {:.1}% below the better one; seasonal guard fell back on {}/{} sites",
                100.0 * last.seasonal_naive_day_nmae,
                100.0 * last.seasonal_naive_week_nmae,
                100.0 * last.fine_tuned_gain_over_best_naive,
                last.guard_fallbacks,
                last.sites
            );
            println!(
                "  vs the pooled gradient-boosted trees (non-private reference, median site {:.2}%): federated + fine-tune is {:+.1}%",
                100.0 * last.pooled_gbt_nmae,
                100.0 * (last.federated_fine_tuned_nmae / last.pooled_gbt_nmae - 1.0)
            );
            let mut skipped = String::new();
            super::report::render_skipped_sites(&mut skipped, &last.skipped_sites);
            print!("{skipped}");
            println!(
                "  federation over TLS: {} rounds in {:.0} s, {:.1} MB sent per participant",
                outcome.rounds.len(),
                outcome.seconds,
                outcome.bytes_sent_per_participant as f64 / 1e6
            );
            if let Some(e) = &evaluation {
                println!(
                    "  federated evaluation of version {} ({}; the coordinator saw only the sum): \
                     site nMAE {:.2}% (in the clear: {:.2}%), p10-p90 coverage {:.0}%, skill vs \
                     persistence {:.2}, {} sites",
                    e.version,
                    outcome.protection.name(),
                    100.0 * e.scores.nmae,
                    100.0 * e.nmae_in_the_clear,
                    100.0 * e.scores.coverage,
                    e.scores.skill.unwrap_or(f64::NAN),
                    e.scores.sites
                );
            }
        }
        if args.epsilon.iter().any(|e| e.is_finite()) {
            let rows =
                super::demo_privacy::sweep(&fleet, target, split, &args, protection, &local_sites)?;
            if table {
                let last = medians.last().context("median row")?;
                let reference = (reference.0, reference.1, last.federated_fine_tuned_nmae);
                print!(
                    "{}",
                    super::demo_privacy::render(&rows, reference, last.local_mlp_nmae, args.rounds)
                );
            }
            privacy.extend(rows);
        }
        evaluations.extend(evaluation);
        rows.extend(methods.drain(..).map(|(method, row)| DemoRow {
            target,
            method,
            row,
        }));
        Ok(())
    };
    for target in Target::ALL {
        if let Err(e) = run_target(target) {
            let reason = super::error_report(&e);
            eprintln!("{target:?}: failed, the other targets go on: {reason}");
            failed_targets.push(FailedTarget { target, reason });
        }
    }
    if table {
        println!("total {:.0} s", started.elapsed().as_secs_f64());
    } else {
        let report = DemoReport {
            accuracy: rows,
            median_site: medians,
            federated_evaluation: evaluations,
            differential_privacy: privacy,
            failed_targets: failed_targets.clone(),
            plots,
        };
        println!("{}", serde_json::to_string_pretty(&report)?);
    }
    if !failed_targets.is_empty() {
        let names: Vec<String> = failed_targets
            .iter()
            .map(|f| format!("{:?}", f.target))
            .collect();
        anyhow::bail!(
            "{} failed (reported above; the other targets' results are complete)",
            names.join(", ")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three sites hold one or two PV sites: the demo skips PV with a reason instead of failing
    /// after load has trained.
    #[test]
    fn a_target_with_too_few_sites_is_skipped_with_a_reason() {
        let fleet = from_synthetic(generate_fleet(&FleetConfig {
            sites: 3,
            days: 40,
            resolution: Resolution::Hour,
            ..FleetConfig::default()
        }));
        let split = split_spec(fleet.resolution, None, None, 0.2);
        let why = too_few_to_protect(&fleet, Target::Pv, split, Protection::Masked)
            .unwrap()
            .expect("PV has fewer than 3 sites here");
        assert!(why.contains("pv_kw") && why.contains("at least 3"), "{why}");
        assert!(
            too_few_to_protect(&fleet, Target::Pv, split, Protection::Plain)
                .unwrap()
                .is_none()
        );
    }
}
