//! The demo's pictures, per target: the federated evaluation of each round's version against
//! the baselines, every site's error per method (the fleet at a glance), and a week of one
//! site's forecast band against what it measured.

use std::path::{Path, PathBuf};

use anyhow::Result;
use datasets::{SampleSet, Target};
use models::{EvaluationRow, FleetScores, QuantileForecast};

use super::plots::{LineChart, Stroke, palette, write_svg_and_png};

/// A site's forecast band and what it measured, on one time axis (hours from the first step).
#[derive(Clone, Debug, PartialEq)]
pub struct SiteFan {
    pub site: String,
    pub hours: Vec<f64>,
    pub p10: Vec<f64>,
    pub p50: Vec<f64>,
    pub p90: Vec<f64>,
    pub actual: Vec<f64>,
}

impl SiteFan {
    /// Up to `days` of back-to-back day-ahead forecasts of the site in `test` (one site's
    /// windows): each window whose first step follows the previous one's horizon, in kW.
    pub fn of(test: &SampleSet, forecast: &QuantileForecast, days: usize) -> Result<Option<Self>> {
        let kw = forecast.to_kw(test)?;
        let level = |wanted: f32| {
            (0..kw.quantiles.len()).min_by(|&a, &b| {
                (kw.quantiles[a] - wanted)
                    .abs()
                    .total_cmp(&(kw.quantiles[b] - wanted).abs())
            })
        };
        let (Some(lo), Some(mid), Some(hi)) = (level(0.1), level(0.5), level(0.9)) else {
            return Ok(None);
        };
        let Some(&first) = test.origins.first() else {
            return Ok(None);
        };
        let step = test.step_seconds.max(1);
        let window = test.horizon as i64 * step;
        let mut fan = SiteFan {
            site: test.site_ids.first().cloned().unwrap_or_default(),
            hours: Vec::new(),
            p10: Vec::new(),
            p50: Vec::new(),
            p90: Vec::new(),
            actual: Vec::new(),
        };
        let mut next = first;
        for (sample, &origin) in test.origins.iter().enumerate() {
            if origin < next || origin >= first + days as i64 * 86_400 {
                continue;
            }
            next = origin + window;
            let norm = test.normalizations[test.sites[sample] as usize];
            for h in 0..test.horizon {
                fan.hours
                    .push((origin + h as i64 * step - first) as f64 / 3600.0);
                fan.p10.push(f64::from(kw.value(sample, lo, h)));
                fan.p50.push(f64::from(kw.value(sample, mid, h)));
                fan.p90.push(f64::from(kw.value(sample, hi, h)));
                let y = test.y[sample * test.horizon + h];
                fan.actual.push(f64::from(norm.denormalize(y)));
            }
        }
        Ok((!fan.hours.is_empty()).then_some(fan))
    }

    /// nMAE of the p50 against the measured steps (those with a reading).
    pub fn nmae(&self) -> f64 {
        let (abs_error, total) = self
            .p50
            .iter()
            .zip(&self.actual)
            .filter(|(_, a)| a.is_finite())
            .fold((0.0, 0.0), |(e, s), (p, a)| {
                (e + (p - a).abs(), s + a.abs())
            });
        if total > 0.0 {
            abs_error / total
        } else {
            f64::NAN
        }
    }

    /// The p10-p90 band, the p50 and the meter (steps without a reading left out).
    pub fn chart(&self, title: String) -> LineChart {
        let zip = |values: &[f64]| -> Vec<(f64, f64)> {
            self.hours
                .iter()
                .copied()
                .zip(values.iter().copied())
                .filter(|p| p.1.is_finite())
                .collect()
        };
        LineChart::new(title, "hours from the first forecast step", "kW")
            .band("p10-p90", palette(3), zip(&self.p10), zip(&self.p90))
            .line("p50", palette(3), Stroke::Solid, zip(&self.p50))
            .line(
                "measured",
                plotters::prelude::BLACK,
                Stroke::Solid,
                zip(&self.actual),
            )
    }
}

/// What the demo learned about one target, in the shape its pictures need.
pub struct TargetPictures<'a> {
    pub target: Target,
    pub protection: &'a str,
    /// The federated evaluation of each version (one per round).
    pub evaluations: &'a std::collections::BTreeMap<u64, FleetScores>,
    /// Baselines as the same statistic (holdout-window-weighted site nMAE).
    pub references: Vec<(String, f64)>,
    /// Each method's per-site rows.
    pub methods: Vec<(String, Vec<&'a EvaluationRow>)>,
    pub fan: Option<SiteFan>,
}

fn name(target: Target) -> &'static str {
    target.as_str()
}

/// Writes the target's pictures under `dir`; returns the files.
pub fn write(dir: &Path, pictures: &TargetPictures<'_>) -> Result<Vec<PathBuf>> {
    let target = name(pictures.target);
    let mut written = Vec::new();
    if !pictures.evaluations.is_empty() {
        written.extend(write_svg_and_png(
            dir,
            &format!("{target}_accuracy_per_round"),
            &accuracy_per_round(pictures),
        )?);
    }
    written.extend(write_svg_and_png(
        dir,
        &format!("{target}_fleet_site_nmae"),
        &fleet_scores(pictures),
    )?);
    if let Some(fan) = &pictures.fan {
        written.extend(write_svg_and_png(
            dir,
            &format!("{target}_forecast_vs_actual"),
            &fan_chart(pictures.target, fan),
        )?);
    }
    Ok(written)
}

fn accuracy_per_round(p: &TargetPictures<'_>) -> LineChart {
    let versions: Vec<f64> = p.evaluations.keys().map(|&v| v as f64).collect();
    let (first, last) = (
        versions.first().copied().unwrap_or(0.0),
        versions.last().copied().unwrap_or(1.0),
    );
    let mut chart = LineChart::new(
        format!(
            "{}: federated evaluation per round ({}; the coordinator saw only sums)",
            name(p.target),
            p.protection
        ),
        "round (version)",
        "site nMAE, holdout-window weighted",
    )
    .line(
        "federated MLP",
        palette(3),
        Stroke::Marked,
        p.evaluations
            .iter()
            .map(|(&v, s)| (v as f64, s.nmae))
            .collect(),
    );
    for (i, (label, value)) in p.references.iter().enumerate() {
        chart = chart.line(
            label.clone(),
            palette([0, 1, 5, 6][i % 4]),
            Stroke::Dashed,
            vec![(first, *value), (last, *value)],
        );
    }
    chart.y_from_zero = true;
    chart
}

fn fleet_scores(p: &TargetPictures<'_>) -> LineChart {
    let mut chart = LineChart::new(
        format!(
            "{}: every site's nMAE per method, sites sorted from best to worst",
            name(p.target)
        ),
        "site rank",
        "site nMAE (daylight for PV)",
    );
    for (i, (label, rows)) in p.methods.iter().enumerate() {
        let mut values: Vec<f64> = rows.iter().map(|r| super::demo::site_nmae(r)).collect();
        values.sort_by(f64::total_cmp);
        let points = values
            .into_iter()
            .enumerate()
            .map(|(rank, v)| (rank as f64 + 1.0, v))
            .collect();
        chart = chart.line(label.clone(), palette(i), Stroke::Marked, points);
    }
    chart.y_from_zero = true;
    chart.legend_at = plotters::prelude::SeriesLabelPosition::UpperLeft;
    chart
}

fn fan_chart(target: Target, fan: &SiteFan) -> LineChart {
    fan.chart(format!(
        "{}: day-ahead forecasts of site {} against its meter (held-out days)",
        name(target),
        fan.site
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datasets::window::Normalization;

    const NORM: Normalization = Normalization {
        offset_kw: 1.0,
        scale_kw: 2.0,
    };

    /// Two sites' worth of windows for one site: hourly, horizon 24, an origin every 12 hours.
    fn test_set() -> SampleSet {
        let horizon = 24;
        let origins: Vec<i64> = (0..6).map(|i| 1_700_000_000 + i * 12 * 3600).collect();
        let n = origins.len();
        SampleSet {
            n_features: 1,
            context: 1,
            horizon,
            step_seconds: 3600,
            x: vec![0.0; n],
            y: (0..n * horizon)
                .map(|i| (i % horizon) as f32 / 10.0)
                .collect(),
            daylight: vec![true; n * horizon],
            origins,
            sites: vec![0; n],
            site_ids: vec!["roof-1".into()],
            normalizations: vec![NORM],
        }
    }

    #[test]
    fn a_fan_takes_back_to_back_windows_in_kw() {
        let test = test_set();
        let per_sample = 3 * test.horizon;
        let values: Vec<f32> = (0..test.origins.len() * per_sample)
            .map(|i| {
                let level = (i / test.horizon) % 3;
                level as f32 - 1.0
            })
            .collect();
        let forecast = QuantileForecast {
            quantiles: vec![0.1, 0.5, 0.9],
            horizon: test.horizon,
            values,
        };
        let fan = SiteFan::of(&test, &forecast, 2).unwrap().unwrap();
        // Origins every 12 h with a 24 h horizon: windows 0 and 2 are back to back, 4 starts
        // on day 3 and is past the two days asked for.
        assert_eq!(fan.hours.len(), 48);
        assert_eq!(fan.hours[24], 24.0);
        assert_eq!(fan.site, "roof-1");
        let norm = NORM;
        assert_eq!(fan.p10[0], f64::from(norm.denormalize(-1.0)));
        assert_eq!(fan.p50[0], f64::from(norm.denormalize(0.0)));
        assert_eq!(fan.p90[5], f64::from(norm.denormalize(1.0)));
        assert_eq!(fan.actual[3], f64::from(norm.denormalize(0.3)));
    }
}
