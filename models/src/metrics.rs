//! Forecast accuracy in kW: MAE, RMSE, nMAE, NRMSE, pinball loss, interval coverage, skill.
//!
//! Errors are accumulated as sums per site ([`ErrorSums`]) so that pooled fleet metrics are
//! exact merges of per-site ones: pooled nMAE is `sum |error| / sum |actual|` over all target
//! steps of all sites, which weighs large sites more, as a grid operator would.

use datasets::SampleSet;
use serde::{Deserialize, Serialize};

use crate::ModelError;
use crate::forecast::QuantileForecast;

/// Which target steps count.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepSelection {
    All,
    /// Only steps with the sun up (`SampleSet::daylight`): PV at night is trivially zero and
    /// would flatter any model.
    Daylight,
}

/// Accuracy of one forecast over a set of target steps.
///
/// Normalized scores divide by the mean absolute actual value and are NaN (JSON `null`) when
/// there is none. `coverage` is the share of actuals inside the interval spanned by the lowest
/// and highest quantile (p10-p90 by default; nominal coverage is their difference); point
/// forecasts have none. A point forecast's pinball loss is that of its single 0.5 level,
/// i.e. MAE / 2.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ForecastMetrics {
    pub steps: usize,
    pub mae_kw: f64,
    pub rmse_kw: f64,
    pub nmae: f64,
    pub nrmse: f64,
    pub pinball_kw: f64,
    pub coverage: Option<f64>,
}

impl ForecastMetrics {
    /// Skill against a reference (usually persistence) on the same steps: `1 - MAE / MAE_ref`.
    pub fn skill_vs(&self, reference: &ForecastMetrics) -> f64 {
        1.0 - self.mae_kw / reference.mae_kw
    }
}

/// Running sums from which every [`ForecastMetrics`] score follows; merge to pool.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ErrorSums {
    steps: usize,
    abs_error: f64,
    squared_error: f64,
    abs_actual: f64,
    pinball: f64,
    covered: usize,
    interval: bool,
}

impl ErrorSums {
    /// Adds one target step: the actual value and the forecast at each of `levels`, in kW.
    pub fn add(&mut self, actual: f64, forecast: &[f64], levels: &[f32], median_level: usize) {
        let error = actual - forecast[median_level];
        self.steps += 1;
        self.abs_error += error.abs();
        self.squared_error += error * error;
        self.abs_actual += actual.abs();
        let pinball: f64 = levels
            .iter()
            .zip(forecast)
            .map(|(&tau, &q)| pinball(f64::from(tau), actual - q))
            .sum();
        self.pinball += pinball / levels.len() as f64;
        if let (true, Some(lo), Some(hi)) = (levels.len() > 1, forecast.first(), forecast.last()) {
            self.interval = true;
            self.covered += usize::from(*lo <= actual && actual <= *hi);
        }
    }

    pub fn merge(&mut self, other: &ErrorSums) {
        self.steps += other.steps;
        self.abs_error += other.abs_error;
        self.squared_error += other.squared_error;
        self.abs_actual += other.abs_actual;
        self.pinball += other.pinball;
        self.covered += other.covered;
        self.interval |= other.interval;
    }

    pub fn pooled<'a>(parts: impl IntoIterator<Item = &'a ErrorSums>) -> ErrorSums {
        let mut total = ErrorSums::default();
        for part in parts {
            total.merge(part);
        }
        total
    }

    /// Mean absolute actual value in kW, the denominator of the normalized scores.
    pub fn mean_abs_actual(&self) -> f64 {
        self.abs_actual / self.steps as f64
    }

    pub fn metrics(&self) -> ForecastMetrics {
        let n = self.steps as f64;
        let mean_actual = self.mean_abs_actual();
        let mae = self.abs_error / n;
        let rmse = (self.squared_error / n).sqrt();
        let normalized = |v: f64| {
            if mean_actual > 0.0 {
                v / mean_actual
            } else {
                f64::NAN
            }
        };
        ForecastMetrics {
            steps: self.steps,
            mae_kw: mae,
            rmse_kw: rmse,
            nmae: normalized(mae),
            nrmse: normalized(rmse),
            pinball_kw: self.pinball / n,
            coverage: self.interval.then(|| self.covered as f64 / n),
        }
    }
}

/// Pinball loss of one quantile level for `error = actual - forecast`.
pub fn pinball(tau: f64, error: f64) -> f64 {
    (tau * error).max((tau - 1.0) * error)
}

/// Error sums of `forecast` against `data`'s targets in kW, one entry per `data.site_ids`.
pub fn site_errors(
    data: &SampleSet,
    forecast: &QuantileForecast,
    selection: StepSelection,
) -> Result<Vec<ErrorSums>, ModelError> {
    crate::samples::check_samples(data)?;
    forecast.check_matches(data)?;
    let (levels, h) = (&forecast.quantiles, data.horizon);
    let median = forecast.median_level();
    let mut sums = vec![ErrorSums::default(); data.site_ids.len()];
    let mut quantiles = vec![0.0f64; levels.len()];
    for i in 0..data.origins.len() {
        let site = data.sites[i] as usize;
        let norm = data.normalizations[site];
        for step in 0..h {
            if selection == StepSelection::Daylight && !data.daylight[i * h + step] {
                continue;
            }
            for (level, q) in quantiles.iter_mut().enumerate() {
                *q = f64::from(norm.denormalize(forecast.value(i, level, step)));
            }
            let actual = f64::from(norm.denormalize(data.y[i * h + step]));
            sums[site].add(actual, &quantiles, levels, median);
        }
    }
    Ok(sums)
}

/// Mean pinball loss over samples, levels and steps in normalized units, against row-major
/// targets `y` `[n, horizon]` (the early-stopping criterion).
pub fn mean_pinball(forecast: &QuantileForecast, y: &[f32]) -> f64 {
    let (q, h) = (forecast.quantiles.len(), forecast.horizon);
    let mut total = 0.0;
    for (i, targets) in y.chunks(h).enumerate() {
        for (level, &tau) in forecast.quantiles.iter().enumerate() {
            for (step, &actual) in targets.iter().enumerate() {
                total += pinball(
                    f64::from(tau),
                    f64::from(actual - forecast.value(i, level, step)),
                );
            }
        }
    }
    total / (y.len() * q).max(1) as f64
}
