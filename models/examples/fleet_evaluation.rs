//! Evaluates every forecaster on the synthetic fleet of issue 2 (20 sites x 365 days hourly,
//! day-ahead, last 20% of days held out) and prints the pooled accuracy table.
//!
//! `cargo run -p models --release --example fleet_evaluation -- [load|pv] [centralized|local] [json]`

use std::time::Instant;

use datasets::synth::{FleetConfig, generate_fleet};
use datasets::{RegularSeries, Resolution, SplitSpec, Target, prepare_fleet};
use models::{EvaluationReport, ForecasterConfig, TrainingMode, evaluate_fleet};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let target: Target = args.first().map_or("load", String::as_str).parse()?;
    let mode = match args.get(1).map_or("centralized", String::as_str) {
        "local" => TrainingMode::Local,
        _ => TrainingMode::Centralized,
    };
    let started = Instant::now();
    let fleet = generate_fleet(&FleetConfig::default());
    let series = fleet
        .telemetry
        .iter()
        .map(|t| RegularSeries::resample(t, Resolution::Hour, Resolution::Hour))
        .collect::<Result<Vec<_>, _>>()?;
    let prepared = prepare_fleet(&fleet.sites, &series, target, SplitSpec::day_ahead(24))?;
    let (train, test): (Vec<_>, Vec<_>) = prepared.into_iter().map(|p| (p.train, p.test)).unzip();
    eprintln!(
        "{} sites prepared in {:.1} s",
        train.len(),
        started.elapsed().as_secs_f64()
    );
    let config = tuned(ForecasterConfig::day_ahead(
        target,
        train[0].n_features,
        train[0].horizon,
    ));
    let report = evaluate_fleet(target, &train, &test, mode, &config)?;
    if args.get(2).is_some_and(|a| a == "json") {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_table(&report);
    }
    eprintln!("total {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// Hyperparameter overrides from the environment (`MLP_HIDDEN=256,256`, `MLP_LR`, `MLP_EPOCHS`,
/// `MLP_PATIENCE`, `MLP_BATCH`, `MLP_DROPOUT`, `MLP_WD`, `MLP_GELU=1`, `MLP_SEED`), for tuning.
fn tuned(mut c: ForecasterConfig) -> ForecasterConfig {
    let var = |name: &str| std::env::var(name).ok();
    if let Some(h) = var("MLP_HIDDEN") {
        c.hidden = h.split(',').filter_map(|w| w.trim().parse().ok()).collect();
    }
    if let Some(v) = var("MLP_LR").and_then(|v| v.parse().ok()) {
        c.learning_rate = v;
    }
    if let Some(v) = var("MLP_EPOCHS").and_then(|v| v.parse().ok()) {
        c.epochs = v;
    }
    if let Some(v) = var("MLP_PATIENCE").and_then(|v| v.parse().ok()) {
        c.patience = v;
    }
    if let Some(v) = var("MLP_BATCH").and_then(|v| v.parse().ok()) {
        c.batch_size = v;
    }
    if let Some(v) = var("MLP_DROPOUT").and_then(|v| v.parse().ok()) {
        c.dropout = v;
    }
    if let Some(v) = var("MLP_WD").and_then(|v| v.parse().ok()) {
        c.weight_decay = v;
    }
    if let Some(v) = var("MLP_SEED").and_then(|v| v.parse().ok()) {
        c.seed = v;
    }
    if let Some(v) = var("MLP_DECAY").and_then(|v| v.parse().ok()) {
        c.plateau_decay = v;
    }
    if var("MLP_REFIT").is_some() {
        c.refit = true;
    }
    if var("MLP_GELU").is_some() {
        c.activation = models::Activation::Gelu;
    }
    c
}

fn print_table(report: &EvaluationReport) {
    println!(
        "{:?} {:?}: {} sites, {} train / {} test samples",
        report.target, report.mode, report.sites, report.train_samples, report.test_samples
    );
    println!(
        "{:<24} {:>9} {:>7} {:>9} {:>8} {:>7} {:>10} {:>10}",
        "model", "MAE kW", "nMAE", "pinball", "cover", "skill", "day nMAE", "day cover"
    );
    for row in report.rows.iter().filter(|r| r.site.is_none()) {
        let m = &row.metrics;
        println!(
            "{:<24} {:>9.3} {:>7.3} {:>9.3} {:>8} {:>7.3} {:>10} {:>10}",
            row.model.name(),
            m.mae_kw,
            m.nmae,
            m.pinball_kw,
            m.coverage.map_or("-".into(), |c| format!("{c:.3}")),
            row.skill,
            row.daylight
                .map_or("-".into(), |d| format!("{:.3}", d.nmae)),
            row.daylight
                .and_then(|d| d.coverage)
                .map_or("-".into(), |c| format!("{c:.3}")),
        );
    }
    for t in &report.timings {
        println!("fit {:<22} {:>7.1} s", t.model.name(), t.fit_seconds);
    }
    for r in &report.mlp_training {
        println!(
            "mlp: {} epochs (best {}), val loss {:.4}, {} fit samples, {:.1} s",
            r.epochs_run, r.best_epoch, r.best_validation_loss, r.fit_samples, r.seconds
        );
    }
}
