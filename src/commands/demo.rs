//! `gridfed demo`: the README's main command.
//!
//! Builds a synthetic DER fleet (or reads a real one), then for load and for PV trains and
//! scores local-only, centralized and federated forecasters against the baselines and prints
//! one accuracy table per target.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use datasets::Resolution;
use datasets::Target;
use datasets::synth::{FleetConfig, generate_fleet};
use models::{EvaluationReport, EvaluationRow, ModelKind, TrainingMode};
use serde::Serialize;

use super::fleet::{GriddedFleet, from_synthetic, load_dir};
use super::report::render_comparison;
use super::train::{Format, evaluate, split_spec};

#[derive(Args)]
pub struct DemoArgs {
    /// Sites in the synthetic fleet (one participant each).
    #[arg(long, default_value_t = 20)]
    pub participants: usize,
    /// Days of synthetic history per site.
    #[arg(long, default_value_t = 365)]
    pub days: usize,
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Use a real fleet directory (sites.json + Parquet) instead of the synthetic one.
    #[arg(long)]
    pub data: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
}

/// Pooled accuracy of one method on one target.
#[derive(Serialize)]
struct DemoRow {
    target: Target,
    method: String,
    row: EvaluationRow,
}

fn pooled(report: &EvaluationReport, model: ModelKind) -> Result<EvaluationRow> {
    report
        .overall(model)
        .cloned()
        .with_context(|| format!("report lacks a pooled {} row", model.name()))
}

pub fn run(args: DemoArgs) -> Result<()> {
    let started = Instant::now();
    let fleet: GriddedFleet = match &args.data {
        Some(dir) => load_dir(dir, Resolution::Hour)?,
        None => {
            let config = FleetConfig {
                sites: args.participants,
                days: args.days,
                resolution: Resolution::Hour,
                seed: args.seed,
                ..FleetConfig::default()
            };
            from_synthetic(generate_fleet(&config), Resolution::Hour)
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
    for target in [Target::Load, Target::Pv] {
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
        }
        rows.extend(methods.drain(..).map(|(method, row)| DemoRow {
            target,
            method,
            row,
        }));
    }
    if table {
        println!("total {:.0} s", started.elapsed().as_secs_f64());
    } else {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    }
    Ok(())
}
