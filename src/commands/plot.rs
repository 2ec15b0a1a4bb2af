//! `gridfed plot ...`: pictures (SVG and PNG) of a running coordinator's models: the
//! federated evaluation of every version (accuracy per round), and a version's day-ahead
//! forecasts for one site against what the site measured.

use std::path::PathBuf;

use anyhow::{Context, Result, ensure};
use clap::{Args, Subcommand};

use super::demo_plots::SiteFan;
use super::forecast::{SiteHistory, SiteInput, forecast_client, parse_instant};
use super::models::{Connection, Remote, list_versions};
use super::plots::{LineChart, Stroke, palette, write_svg_and_png};

#[derive(Subcommand)]
pub enum PlotCommand {
    /// The federated evaluation (site nMAE, p10-p90 coverage) of every version of a model,
    /// next to persistence: accuracy per round. Needs the operator token.
    Versions {
        /// Model name.
        model: String,
        #[command(flatten)]
        connection: Connection,
        /// Directory for the pictures.
        #[arg(long, default_value = ".")]
        out: PathBuf,
    },
    /// A version's back-to-back day-ahead forecasts for one site (p10-p90 band and p50)
    /// against what the site measured: a backtest through the Forecast service.
    Forecast(PlotForecastArgs),
}

#[derive(Args)]
pub struct PlotForecastArgs {
    /// NAME (its production alias), NAME@VERSION or NAME@ALIAS.
    #[arg(long)]
    pub model: String,
    #[command(flatten)]
    pub site: SiteInput,
    /// First forecast step (RFC 3339 or unix seconds); default: `--days` days before the
    /// last observation.
    #[arg(long)]
    pub start: Option<String>,
    /// Days to plot (one day-ahead forecast each).
    #[arg(long, default_value_t = 7)]
    pub days: usize,
    #[command(flatten)]
    pub remote: Remote,
    /// Directory for the pictures.
    #[arg(long, default_value = ".")]
    pub out: PathBuf,
}

pub fn run(cmd: PlotCommand) -> Result<()> {
    let written = match cmd {
        PlotCommand::Versions {
            model,
            connection,
            out,
        } => versions(&model, &connection, &out)?,
        PlotCommand::Forecast(args) => forecast(&args)?,
    };
    for path in written {
        println!("{}", path.display());
    }
    Ok(())
}

/// File names never take a model reference's `@`.
fn stem(model: &str) -> String {
    model
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn versions(model: &str, connection: &Connection, out: &std::path::Path) -> Result<Vec<PathBuf>> {
    let (manifests, aliases) =
        super::runtime::runtime()?.block_on(list_versions(connection, model))?;
    let mut nmae = LineChart::new(
        format!(
            "{model}: federated evaluation of each version ({})",
            aliases.join(", ")
        ),
        "version (round)",
        "site nMAE, holdout-window weighted",
    );
    let mut coverage = LineChart::new(
        format!("{model}: p10-p90 coverage of each version (0.80 is calibrated)"),
        "version (round)",
        "share of steps inside p10-p90",
    );
    let sectors: std::collections::BTreeSet<&String> = manifests
        .iter()
        .flat_map(|m| m.content.federated_evaluation.keys())
        .collect();
    ensure!(
        !sectors.is_empty(),
        "no version of `{model}` has a federated evaluation yet (the evaluation round follows \
         each committed version)"
    );
    let (first, last) = (
        manifests.first().map_or(0, |m| m.content.version) as f64,
        manifests.last().map_or(1, |m| m.content.version) as f64,
    );
    for (i, sector) in sectors.into_iter().enumerate() {
        let scores: Vec<(f64, &models::FleetScores)> = manifests
            .iter()
            .filter_map(|m| {
                let e = m.content.federated_evaluation.get(sector)?;
                Some((m.content.version as f64, &e.scores))
            })
            .collect();
        let series = |f: fn(&models::FleetScores) -> f64| -> Vec<(f64, f64)> {
            scores.iter().map(|(v, s)| (*v, f(s))).collect()
        };
        let color = palette(3 + i);
        nmae = nmae
            .line(
                format!("{sector}: model"),
                color,
                Stroke::Marked,
                series(|s| s.nmae),
            )
            .line(
                format!("{sector}: persistence"),
                color,
                Stroke::Dashed,
                series(|s| s.persistence_nmae),
            );
        coverage = coverage.line(
            sector.clone(),
            color,
            Stroke::Marked,
            series(|s| s.coverage),
        );
    }
    coverage = coverage.line(
        "target 0.80",
        palette(0),
        Stroke::Dashed,
        vec![(first, 0.8), (last, 0.8)],
    );
    nmae.y_from_zero = true;
    coverage.y_from_zero = true;
    let mut written =
        write_svg_and_png(out, &format!("{}_accuracy_per_version", stem(model)), &nmae)?;
    written.extend(write_svg_and_png(
        out,
        &format!("{}_coverage_per_version", stem(model)),
        &coverage,
    )?);
    Ok(written)
}

/// Day-ahead forecasts of consecutive days from the Forecast service, with what was measured.
fn forecast(args: &PlotForecastArgs) -> Result<Vec<PathBuf>> {
    ensure!(args.days > 0 && args.days <= 62, "--days must be 1 to 62");
    let SiteHistory {
        series,
        site,
        target,
    } = args.site.load()?;
    let t = &series.telemetry;
    let step_s = series.resolution.seconds();
    let per_day = usize::try_from(86_400 / step_s).context("step longer than a day")?;
    let values = target
        .values(t)
        .with_context(|| format!("site `{}` does not measure {}", t.site_id, target.as_str()))?;
    let start_index = match &args.start {
        Some(text) => {
            let at = parse_instant("--start", text)?;
            t.timestamps
                .iter()
                .position(|&ts| ts >= at)
                .with_context(|| format!("--start {text} is after the last row"))?
        }
        None => {
            let last = values
                .iter()
                .rposition(Option::is_some)
                .context("the site has no measurement of the target")?;
            (last + 1)
                .checked_sub(args.days * per_day)
                .context("fewer days in the file than --days")?
        }
    };
    let mut fan = SiteFan {
        site: t.site_id.clone(),
        hours: Vec::new(),
        p10: Vec::new(),
        p50: Vec::new(),
        p90: Vec::new(),
        actual: Vec::new(),
    };
    let mut version = String::new();
    super::runtime::runtime()?.block_on(async {
        let mut client = forecast_client(&args.remote).await?;
        for day in 0..args.days {
            let origin = start_index + day * per_day;
            if origin >= t.timestamps.len() {
                break;
            }
            let request = coordinator::forecast::request_from_series(
                &args.model,
                &series,
                &site,
                target,
                origin,
                per_day as u32,
                (60 * per_day, 7 * per_day),
            )
            .map_err(|e| anyhow::anyhow!("day {} ({}): {e}", day + 1, t.timestamps[origin]))?;
            let response = client
                .forecast(request)
                .await
                .map_err(|e| anyhow::anyhow!("{:?}: {}", e.code(), e.message()))?
                .into_inner();
            version = format!("{}@{}", response.model, response.version);
            let level = |wanted: f32| {
                response
                    .quantiles
                    .iter()
                    .min_by(|a, b| {
                        (a.level - wanted)
                            .abs()
                            .total_cmp(&(b.level - wanted).abs())
                    })
                    .map(|q| q.values_kw.clone())
                    .context("the forecast has no quantiles")
            };
            let (p10, p50, p90) = (level(0.1)?, level(0.5)?, level(0.9)?);
            for (h, &ts) in response.timestamps_unix_s.iter().enumerate() {
                let index = origin + h;
                let (Some(lo), Some(mid), Some(hi)) = (p10.get(h), p50.get(h), p90.get(h)) else {
                    continue;
                };
                fan.hours
                    .push((ts - t.timestamps[start_index]) as f64 / 3600.0);
                fan.p10.push(f64::from(*lo));
                fan.p50.push(f64::from(*mid));
                fan.p90.push(f64::from(*hi));
                fan.actual
                    .push(values.get(index).copied().flatten().unwrap_or(f64::NAN));
            }
        }
        Ok::<_, anyhow::Error>(())
    })?;
    ensure!(!fan.hours.is_empty(), "no forecast step to plot");
    let nmae = fan.nmae();
    let chart = fan.chart(format!(
        "{version}: day-ahead {} of {} over {} days (nMAE {:.1}%)",
        target.as_str(),
        fan.site,
        args.days,
        100.0 * nmae
    ));
    println!(
        "{version}: {} steps, nMAE {:.2}% against the meter",
        fan.hours.len(),
        100.0 * nmae
    );
    write_svg_and_png(
        &args.out,
        &format!(
            "{}_{}_forecast_vs_actual",
            stem(&args.model),
            stem(&fan.site)
        ),
        &chart,
    )
}
