//! Pictures of a market simulation, each as SVG and PNG (plotters): cumulative imbalance cost
//! per forecast source, clearing price and aggregate imbalance over a week, and a forecast fan
//! chart for one agent.

use std::path::{Path, PathBuf};

use anyhow::Result;
use market::{MarketInputs, MarketReport, SourceOutcome};
use plotters::coord::Shift;
use plotters::prelude::*;

use super::plots::{Drawing, FAMILY, SIZE, err, legend, palette, write_svg_and_png};

struct CumulativeCost<'a>(&'a MarketReport);
struct PriceWeek<'a>(&'a MarketReport);
struct Fan<'a> {
    inputs: &'a MarketInputs,
    agent: usize,
    source: usize,
}

impl Drawing for CumulativeCost<'_> {
    fn draw_on<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()> {
        cumulative_cost(root, self.0)
    }
}

impl Drawing for PriceWeek<'_> {
    fn draw_on<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()> {
        price_week(root, self.0)
    }
}

impl Drawing for Fan<'_> {
    fn draw_on<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()> {
        fan_chart(root, self.inputs, self.agent, self.source)
    }
}

/// Writes every plot under `dir`; returns the files written.
pub fn write_all(dir: &Path, report: &MarketReport, inputs: &MarketInputs) -> Result<Vec<PathBuf>> {
    let mut written = write_svg_and_png(dir, "cumulative_imbalance_cost", &CumulativeCost(report))?;
    written.extend(write_svg_and_png(
        dir,
        "price_and_imbalance_week",
        &PriceWeek(report),
    )?);
    if let Some((agent, source)) = fan_subject(report, inputs) {
        written.extend(write_svg_and_png(
            dir,
            "forecast_fan",
            &Fan {
                inputs,
                agent,
                source,
            },
        )?);
    }
    Ok(written)
}

fn cumulative_cost<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    report: &MarketReport,
) -> Result<()> {
    root.fill(&WHITE).map_err(err)?;
    let series: Vec<(&SourceOutcome, Vec<(f64, f64)>)> = report
        .sources
        .iter()
        .map(|s| {
            let mut total = 0.0;
            let points = std::iter::once((0.0, 0.0))
                .chain(s.daily_imbalance_cost.iter().enumerate().map(|(d, c)| {
                    total += c;
                    (d as f64 + 1.0, total)
                }))
                .collect();
            (s, points)
        })
        .collect();
    let top = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|q| q.1))
        .fold(1e-9, f64::max);
    let mut chart = ChartBuilder::on(root)
        .caption(
            format!(
                "Cumulative imbalance cost by forecast source ({} agents, scenario {})",
                report.agents.len(),
                report.scenario.name()
            ),
            (FAMILY, 20),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..report.days as f64, 0.0..top * 1.05)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("day")
        .y_desc("imbalance cost")
        .label_style((FAMILY, 14))
        .draw()
        .map_err(err)?;
    for (i, (source, points)) in series.into_iter().enumerate() {
        let color = palette(i);
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))
            .map_err(err)?
            .label(source.source.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    legend(&mut chart, SeriesLabelPosition::UpperLeft)
}

/// The source the week and fan pictures show: the fine-tuned federated one when present.
fn featured(report: &MarketReport) -> usize {
    report
        .sources
        .iter()
        .position(|s| s.source == "federated + fine-tuned")
        .unwrap_or(0)
}

fn price_week<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    report: &MarketReport,
) -> Result<()> {
    root.fill(&WHITE).map_err(err)?;
    let source = &report.sources[featured(report)];
    let hours = source.hourly_price.len().min(7 * 24);
    let (upper, lower) = root.split_vertically(SIZE.1 / 2);
    let prices: Vec<(f64, f64)> = source.hourly_price[..hours]
        .iter()
        .enumerate()
        .filter_map(|(h, p)| Some((h as f64, (*p)?)))
        .collect();
    let top = prices.iter().map(|p| p.1).fold(0.01, f64::max);
    let mut chart = ChartBuilder::on(&upper)
        .caption(
            format!(
                "Local clearing price and aggregate imbalance, first week ({})",
                source.source
            ),
            (FAMILY, 20),
        )
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..hours as f64, 0.0..top * 1.1)
        .map_err(err)?;
    chart
        .configure_mesh()
        .y_desc("price per kWh")
        .label_style((FAMILY, 13))
        .draw()
        .map_err(err)?;
    chart
        .draw_series(
            prices
                .iter()
                .map(|&(x, y)| Circle::new((x, y), 2, palette(3).filled())),
        )
        .map_err(err)?;
    let imbalance: Vec<(f64, f64)> = source.hourly_imbalance_kwh[..hours]
        .iter()
        .enumerate()
        .map(|(h, v)| (h as f64, *v))
        .collect();
    let span = imbalance.iter().map(|p| p.1.abs()).fold(0.1, f64::max);
    let mut chart = ChartBuilder::on(&lower)
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..hours as f64, -span * 1.1..span * 1.1)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("hour of the week")
        .y_desc("imbalance kWh (+ short)")
        .label_style((FAMILY, 13))
        .draw()
        .map_err(err)?;
    chart
        .draw_series(LineSeries::new(imbalance, palette(5).stroke_width(2)))
        .map_err(err)?;
    chart
        .draw_series(LineSeries::new([(0.0, 0.0), (hours as f64, 0.0)], BLACK))
        .map_err(err)?;
    Ok(())
}

/// The agent with the largest PV (the most interesting fan) and the featured source's index
/// in the inputs (perfect foresight, last in the report, has no input source).
fn fan_subject(report: &MarketReport, inputs: &MarketInputs) -> Option<(usize, usize)> {
    let source = featured(report).min(inputs.sources.len().checked_sub(1)?);
    let agent = (0..inputs.agents.len()).max_by(|&a, &b| {
        let pv = |i: usize| -> f64 {
            inputs.agents[i]
                .days
                .iter()
                .flatten()
                .map(|d| d.pv_kw.iter().sum::<f64>())
                .sum()
        };
        pv(a).total_cmp(&pv(b))
    })?;
    Some((agent, source))
}

fn fan_chart<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    inputs: &MarketInputs,
    agent: usize,
    source: usize,
) -> Result<()> {
    root.fill(&WHITE).map_err(err)?;
    let days = inputs.day_starts.len().min(7);
    let series = &inputs.agents[agent];
    let forecasts = &inputs.sources[source].forecasts[agent];
    let (mut band_hi, mut band_lo, mut median, mut actual) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (d, (forecast, metered)) in forecasts.iter().zip(&series.days).take(days).enumerate() {
        for h in 0..market::HOURS {
            let x = (d * market::HOURS + h) as f64;
            if let Some(f) = forecast {
                band_lo.push((x, f.quantile(0.1, h)));
                band_hi.push((x, f.quantile(0.9, h)));
                median.push((x, f.median(h)));
            }
            if let Some(m) = metered {
                actual.push((x, m.net_kw(h)));
            }
        }
    }
    let values = band_hi.iter().chain(&band_lo).chain(&actual).map(|p| p.1);
    let (lo, hi) = values.fold((0.0f64, 0.0f64), |(l, h), v| (l.min(v), h.max(v)));
    let pad = 0.05 * (hi - lo).max(0.1);
    let mut chart = ChartBuilder::on(root)
        .caption(
            format!(
                "Net load forecast of {} ({}): p10-p90 band, p50 and actual",
                series.name, inputs.sources[source].name
            ),
            (FAMILY, 20),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..(days * market::HOURS) as f64, lo - pad..hi + pad)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("hour")
        .y_desc("kW")
        .label_style((FAMILY, 14))
        .draw()
        .map_err(err)?;
    let band: Vec<(f64, f64)> = band_hi
        .iter()
        .copied()
        .chain(band_lo.iter().rev().copied())
        .collect();
    chart
        .draw_series(std::iter::once(Polygon::new(
            band,
            palette(3).mix(0.25).filled(),
        )))
        .map_err(err)?
        .label("p10-p90")
        .legend(|(x, y)| {
            Rectangle::new([(x, y - 5), (x + 20, y + 5)], palette(3).mix(0.25).filled())
        });
    chart
        .draw_series(LineSeries::new(median, palette(3).stroke_width(2)))
        .map_err(err)?
        .label("p50")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], palette(3).stroke_width(2)));
    chart
        .draw_series(LineSeries::new(actual, BLACK.stroke_width(2)))
        .map_err(err)?
        .label("actual")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK.stroke_width(2)));
    legend(&mut chart, SeriesLabelPosition::UpperRight)
}
