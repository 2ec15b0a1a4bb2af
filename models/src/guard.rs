//! The seasonal guard: a site never serves a learned model that loses to "same hour yesterday
//! (or last week)" on its own validation days.
//!
//! A forecast a market engine pays for must beat the free one. Before a site uses a learned
//! model (local, pooled, federated or fine-tuned) it scores it on the latest validation days of
//! its own training data, never the test days, against both seasonal naive forecasts. If the
//! better of the two has the lower MAE there, the site falls back to it, with quantiles taken
//! from that naive forecast's own validation residuals so its intervals stay calibrated. The
//! decision uses only the site's data, so it runs where the data are and sends nothing.

use datasets::SampleSet;
use serde::{Deserialize, Serialize};

use crate::ModelError;
use crate::baselines::{Season, seasonal_naive};
use crate::forecast::QuantileForecast;
use crate::samples::{chronological_split, subset};

/// What a site forecasts with after the guard.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SiteChoice {
    Learned,
    SeasonalNaive(Season),
}

/// One site's guard decision, with the validation scores behind it (normalized units).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GuardDecision {
    pub site_id: String,
    pub choice: SiteChoice,
    /// Validation MAE of the learned model's median.
    pub learned_mae: f64,
    /// Validation MAE of the better seasonal naive forecast.
    pub naive_mae: f64,
    /// Residual offsets per quantile level of the naive fallback (`actual - naive`, empirical
    /// quantiles on the validation days); empty when the learned model is kept.
    pub naive_offsets: Vec<f32>,
    pub validation_samples: usize,
}

impl GuardDecision {
    pub fn fell_back(&self) -> bool {
        self.choice != SiteChoice::Learned
    }
}

/// Mean absolute error of a forecast's median level against `data.y`.
fn median_mae(forecast: &QuantileForecast, data: &SampleSet) -> f64 {
    let level = forecast.median_level();
    let mut sum = 0.0f64;
    for i in 0..data.len() {
        for (h, &y) in data.y_row(i).iter().enumerate() {
            sum += f64::from((forecast.value(i, level, h) - y).abs());
        }
    }
    sum / (data.y.len().max(1)) as f64
}

/// The `q`-quantile of `values` (nearest rank on a sorted copy).
fn empirical_quantile(sorted: &[f32], q: f32) -> f32 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (q * (sorted.len() - 1) as f32).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// Decides for one site: `train` is the site's training set (one site), `quantiles` the
/// levels its learned model predicts, `predict` the learned model. Seasons the context is too
/// short for are not candidates; with neither, the learned model is kept.
pub fn guard_site(
    train: &SampleSet,
    validation_fraction: f64,
    quantiles: &[f32],
    predict: impl Fn(&SampleSet) -> Result<QuantileForecast, ModelError>,
) -> Result<GuardDecision, ModelError> {
    let site_id = train.site_ids.first().cloned().unwrap_or_default();
    let split = chronological_split(train, validation_fraction)?;
    let validation = subset(train, &split.validation);
    let learned_mae = median_mae(&predict(&validation)?, &validation);
    let mut best: Option<(Season, f64, QuantileForecast)> = None;
    for season in [Season::Day, Season::Week] {
        let naive = match seasonal_naive(&validation, season) {
            Ok(naive) => naive,
            Err(ModelError::ContextTooShort { .. }) => continue,
            Err(e) => return Err(e),
        };
        let mae = median_mae(&naive, &validation);
        if best.as_ref().is_none_or(|(_, b, _)| mae < *b) {
            best = Some((season, mae, naive));
        }
    }
    let Some((season, naive_mae, naive)) = best else {
        return Ok(GuardDecision {
            site_id,
            choice: SiteChoice::Learned,
            learned_mae,
            naive_mae: f64::NAN,
            naive_offsets: Vec::new(),
            validation_samples: validation.len(),
        });
    };
    // Ties go to the learned model: it also carries calibrated quantiles.
    if learned_mae <= naive_mae {
        return Ok(GuardDecision {
            site_id,
            choice: SiteChoice::Learned,
            learned_mae,
            naive_mae,
            naive_offsets: Vec::new(),
            validation_samples: validation.len(),
        });
    }
    let mut residuals: Vec<f32> = validation
        .y
        .iter()
        .zip(&naive.values)
        .map(|(y, n)| y - n)
        .collect();
    residuals.sort_by(f32::total_cmp);
    // Offsets relative to the median residual, so the point forecast stays the naive value
    // whose MAE won.
    let median = empirical_quantile(&residuals, 0.5);
    let naive_offsets = quantiles
        .iter()
        .map(|&q| empirical_quantile(&residuals, q) - median)
        .collect();
    Ok(GuardDecision {
        site_id,
        choice: SiteChoice::SeasonalNaive(season),
        learned_mae,
        naive_mae,
        naive_offsets,
        validation_samples: validation.len(),
    })
}

/// The site's forecast of `data` under `decision`: the learned model's, or the seasonal naive
/// one with the decision's residual quantiles around it (levels `quantiles`).
pub fn guarded_forecast(
    decision: &GuardDecision,
    data: &SampleSet,
    quantiles: &[f32],
    predict: impl Fn(&SampleSet) -> Result<QuantileForecast, ModelError>,
) -> Result<QuantileForecast, ModelError> {
    let SiteChoice::SeasonalNaive(season) = decision.choice else {
        return predict(data);
    };
    if decision.naive_offsets.len() != quantiles.len() {
        return Err(ModelError::LayoutMismatch(format!(
            "guard decision of site `{}` has {} quantile offsets for {} levels",
            decision.site_id,
            decision.naive_offsets.len(),
            quantiles.len()
        )));
    }
    let naive = seasonal_naive(data, season)?;
    let horizon = data.horizon;
    let mut values = Vec::with_capacity(naive.values.len() * quantiles.len());
    for point in naive.values.chunks(horizon.max(1)) {
        for offset in &decision.naive_offsets {
            values.extend(point.iter().map(|v| v + offset));
        }
    }
    Ok(QuantileForecast {
        quantiles: quantiles.to_vec(),
        horizon,
        values,
    })
}
