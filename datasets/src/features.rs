//! Per-step model inputs derived from a regular series: the known-future covariates and the
//! static calendar context, computed once per grid step so windowing only copies.

use std::ops::Range;

use crate::calendar::calendar_features;
use crate::solar::{clear_sky_ghi_w_m2, is_daylight};
use crate::{RegularSeries, SiteMetadata};

/// Names of the features known in advance for every horizon step, in layout order.
pub const FUTURE_FEATURES: [&str; 7] = [
    "temperature_forecast",
    "ghi_forecast",
    "cloud_cover_forecast",
    "clear_sky_ghi",
    "hour_sin",
    "hour_cos",
    "workday",
];

/// Names of the features describing the forecast origin, in layout order.
pub const ORIGIN_FEATURES: [&str; 4] = ["doy_sin", "doy_cos", "dow_sin", "dow_cos"];

/// Fixed physical scalings of covariates. They are the same at every site (unlike the target
/// normalization), so federated participants feed identically scaled inputs.
const TEMPERATURE_CENTER_C: f64 = 15.0;
const TEMPERATURE_SCALE_C: f64 = 10.0;
const IRRADIANCE_SCALE_W_M2: f64 = 1000.0;

/// Features of every grid step of one site.
#[derive(Clone, Debug)]
pub(crate) struct StepFeatures {
    /// `[steps, FUTURE_FEATURES.len()]`; NaN where a forecast value is missing.
    pub future: Vec<f32>,
    /// `[steps, ORIGIN_FEATURES.len()]`.
    pub origin: Vec<f32>,
    /// `[steps]`; empty when built by [`StepFeatures::inputs`].
    pub daylight: Vec<bool>,
}

impl StepFeatures {
    pub fn compute(series: &RegularSeries, meta: &SiteMetadata) -> Self {
        Self::compute_range(series, meta, 0..series.telemetry.len(), true)
    }

    /// The model inputs of the grid steps in `steps` only (row 0 is step `steps.start`),
    /// without `daylight`: a live forecast needs its horizon's inputs, not its whole context
    /// nor the daylight flags that only scoring uses (three sun positions per step).
    pub fn inputs(series: &RegularSeries, meta: &SiteMetadata, steps: Range<usize>) -> Self {
        Self::compute_range(series, meta, steps, false)
    }

    fn compute_range(
        series: &RegularSeries,
        meta: &SiteMetadata,
        steps: Range<usize>,
        with_daylight: bool,
    ) -> Self {
        let t = &series.telemetry;
        let tz = meta.tz().unwrap_or(chrono_tz::UTC);
        let step_s = series.resolution.seconds();
        let n = steps.len();
        let mut future = Vec::with_capacity(n * FUTURE_FEATURES.len());
        let mut origin = Vec::with_capacity(n * ORIGIN_FEATURES.len());
        let mut daylight = Vec::with_capacity(n);
        // An absent forecast column contributes a constant 0 (the model learns to ignore it);
        // a present column with a hole makes the step unusable (NaN), never a guessed value.
        let covariate =
            |col: &Option<Vec<Option<f64>>>, i: usize, center: f64, scale: f64| match col {
                None => 0.0,
                Some(values) => values[i].map_or(f32::NAN, |v| ((v - center) / scale) as f32),
            };
        for i in steps {
            let ts = t.timestamps[i];
            // Mid-step values describe the average over the step better than its start.
            let mid = ts + step_s / 2;
            let cal = calendar_features(tz, mid);
            let clear_sky = clear_sky_ghi_w_m2(meta.latitude, meta.longitude, mid);
            future.extend_from_slice(&[
                covariate(
                    &t.temperature_forecast_c,
                    i,
                    TEMPERATURE_CENTER_C,
                    TEMPERATURE_SCALE_C,
                ),
                covariate(&t.ghi_forecast_w_m2, i, 0.0, IRRADIANCE_SCALE_W_M2),
                covariate(&t.cloud_cover_forecast, i, 0.0, 1.0),
                (clear_sky / IRRADIANCE_SCALE_W_M2) as f32,
                cal.hour_sin,
                cal.hour_cos,
                if cal.workday { 1.0 } else { 0.0 },
            ]);
            origin.extend_from_slice(&[cal.doy_sin, cal.doy_cos, cal.dow_sin, cal.dow_cos]);
            if with_daylight {
                daylight.push(is_daylight(meta.latitude, meta.longitude, ts, step_s));
            }
        }
        Self {
            future,
            origin,
            daylight,
        }
    }
}
