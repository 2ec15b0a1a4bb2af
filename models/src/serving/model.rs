//! A model version ready to answer forecast requests.

use datasets::window::input_row;
use datasets::{RegularSeries, SiteTelemetry, Target};
use serde::{Deserialize, Serialize};

use super::ServingError;
use super::request::{ForecastRequest, check_grid, check_values, model_covariates, normalization};
use super::spec::{Covariate, NormalizationRule, ServingSpec};
use crate::{ModelArtifact, QuantileForecaster};

/// Quantile forecasts of one site in kW, one UTC timestamp per step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QuantileForecast {
    /// Start of each forecast step (UTC unix seconds).
    pub timestamps_unix_s: Vec<i64>,
    /// Quantile levels, increasing (every level of the model).
    pub levels: Vec<f32>,
    /// `values_kw[level][step]`, non-decreasing across levels at every step.
    pub values_kw: Vec<Vec<f32>>,
}

/// A trained quantile MLP with the spec that rebuilds its training features from a request.
#[derive(Debug, Clone)]
pub struct ServingModel {
    spec: ServingSpec,
    forecaster: QuantileForecaster,
}

impl ServingModel {
    /// A model from its serving spec and flat parameters (in `ForecasterConfig` flatten order).
    pub fn new(spec: ServingSpec, parameters: &[f32]) -> Result<Self, ServingError> {
        spec.validate()?;
        let forecaster = QuantileForecaster::from_flat(spec.architecture.clone(), parameters)?;
        Ok(Self { spec, forecaster })
    }

    /// A trained forecaster whose config must be the spec's architecture.
    pub fn from_forecaster(
        spec: ServingSpec,
        forecaster: QuantileForecaster,
    ) -> Result<Self, ServingError> {
        spec.validate()?;
        if forecaster.config() != &spec.architecture {
            return Err(ServingError::InvalidSpec(
                "the forecaster's config differs from the spec's architecture".into(),
            ));
        }
        Ok(Self { spec, forecaster })
    }

    /// A saved artifact's model, served with the covariates it was trained with.
    pub fn from_artifact(
        artifact: &ModelArtifact,
        covariates: Vec<Covariate>,
    ) -> Result<Self, ServingError> {
        let spec = ServingSpec::from_model_spec(&artifact.manifest().spec, covariates)?;
        Self::new(spec, artifact.parameters())
    }

    pub fn spec(&self) -> &ServingSpec {
        &self.spec
    }

    /// Forecasts `request.horizon_steps` steps from its origin, every quantile level in kW.
    /// PV is clipped to `[0, capacity_kw]`, and to 0 where the sun is down; the clip is
    /// monotone, so levels stay ordered.
    pub fn forecast(&self, request: &ForecastRequest) -> Result<QuantileForecast, ServingError> {
        let series = self.check(request)?;
        let spec = &self.spec;
        let step = spec.resolution.seconds();
        let history = &request.history.values_kw;
        let trailing = match spec.normalization {
            NormalizationRule::TrailingHistory { steps } => steps,
            NormalizationRule::Capacity => 0,
        };
        let norm = normalization(
            spec,
            request,
            &history[history.len().saturating_sub(trailing)..],
        )?;
        let meta = request.site.metadata()?;
        let x = input_row(
            &series,
            &meta,
            spec.target,
            spec.context,
            spec.horizon,
            norm,
            spec.context,
        )?;
        let raw = self.forecaster.predict_rows(&x)?;
        let (lo, hi) = match spec.target {
            Target::Pv => (0.0, request.site.capacity_kw as f32),
            // Net load is negative while a prosumer feeds in: no floor.
            Target::Load | Target::NetLoad => (f32::NEG_INFINITY, f32::INFINITY),
        };
        let steps = request.horizon_steps;
        // PV is zero where the sun is down at the step, as the evaluation path scores it.
        let step_hi: Vec<f32> = (0..steps as i64)
            .map(|s| {
                let t = request.origin_unix_s + s * step;
                let night = spec.target == Target::Pv
                    && !datasets::solar::is_daylight(meta.latitude, meta.longitude, t, step);
                if night { 0.0 } else { hi }
            })
            .collect();
        let values_kw = (0..raw.quantiles.len())
            .map(|level| {
                (0..steps)
                    .map(|s| {
                        norm.denormalize(raw.value(0, level, s))
                            .clamp(lo, step_hi[s])
                    })
                    .collect()
            })
            .collect();
        Ok(QuantileForecast {
            timestamps_unix_s: (0..steps as i64)
                .map(|s| request.origin_unix_s + s * step)
                .collect(),
            levels: raw.quantiles,
            values_kw,
        })
    }

    /// Validates `request` against the spec and lays its last `context` history steps and
    /// first `horizon` future steps out as a regular series, the form training windows from.
    fn check(&self, request: &ForecastRequest) -> Result<RegularSeries, ServingError> {
        let spec = &self.spec;
        if request.target != spec.target {
            return Err(ServingError::TargetMismatch {
                model: spec.target,
                request: request.target,
            });
        }
        let has_target = match spec.target {
            Target::Load | Target::NetLoad => request.site.kind.has_load(),
            Target::Pv => request.site.kind.has_pv(),
        };
        if !has_target {
            return Err(ServingError::SiteLacksTarget {
                kind: request.site.kind,
                target: spec.target,
            });
        }
        if request.resolution != spec.resolution {
            return Err(ServingError::ResolutionMismatch {
                model: spec.resolution,
                request: request.resolution,
            });
        }
        if request.horizon_steps == 0 || request.horizon_steps > spec.horizon {
            return Err(ServingError::HorizonOutOfRange {
                requested: request.horizon_steps,
                max: spec.horizon,
            });
        }
        let (resolution, step, origin) = (
            spec.resolution,
            spec.resolution.seconds(),
            request.origin_unix_s,
        );
        if origin.rem_euclid(step) != 0 {
            return Err(ServingError::OriginOffGrid {
                origin_unix_s: origin,
                resolution,
            });
        }
        let history = &request.history;
        check_grid(
            "history.timestamps_unix_s",
            &history.timestamps_unix_s,
            resolution,
        )?;
        check_values(
            || "history.values_kw".into(),
            &history.values_kw,
            history.timestamps_unix_s.len(),
        )?;
        if let Some(&last) = history.timestamps_unix_s.last()
            && last != origin - step
        {
            return Err(ServingError::HistoryNotAtOrigin {
                last_unix_s: last,
                origin_unix_s: origin,
            });
        }
        let need = spec.history_steps(request.site_normalization.is_some());
        if history.values_kw.len() < need {
            return Err(ServingError::HistoryTooShort {
                have: history.values_kw.len(),
                need,
                hours: (need as i64 * step) as f64 / 3600.0,
                resolution,
            });
        }
        let future = &request.future;
        check_grid(
            "future.timestamps_unix_s",
            &future.timestamps_unix_s,
            resolution,
        )?;
        if let Some(&first) = future.timestamps_unix_s.first()
            && first != origin
        {
            return Err(ServingError::FutureNotAtOrigin {
                first_unix_s: first,
                origin_unix_s: origin,
            });
        }
        let covariates = model_covariates(spec, future, &request.absent_covariates)?;
        // Without a covariate to read (none in the spec, or the site has none of them) the
        // horizon's inputs are calendar and sun position, computed from the grid alone.
        let reads_future = covariates.iter().any(Option::is_some);
        if reads_future && future.timestamps_unix_s.len() < spec.horizon {
            return Err(ServingError::FutureTooShort {
                have: future.timestamps_unix_s.len(),
                need: spec.horizon,
            });
        }
        let (l, h) = (spec.context, spec.horizon);
        let mut t = SiteTelemetry::new("request");
        t.timestamps = (-(l as i64)..h as i64).map(|s| origin + s * step).collect();
        let target: Vec<Option<f64>> = history.values_kw[history.values_kw.len() - l..]
            .iter()
            .map(|&v| Some(v))
            .chain(std::iter::repeat_n(None, h))
            .collect();
        *spec.target.column_mut(&mut t) = Some(target);
        for (&c, values) in spec.covariates.iter().zip(covariates) {
            // An absent feed stays an absent column: 0, as in training.
            let Some(values) = values else { continue };
            *c.column_mut(&mut t) = Some(
                std::iter::repeat_n(None, l)
                    .chain(values[..h].iter().map(|&v| Some(v)))
                    .collect(),
            );
        }
        Ok(RegularSeries {
            resolution,
            telemetry: t,
        })
    }
}
