//! Supervised samples: context window, known-future covariates, horizon targets.

use serde::{Deserialize, Serialize};

use crate::features::{FUTURE_FEATURES, ORIGIN_FEATURES, StepFeatures};
use crate::{DatasetError, RegularSeries, SiteMetadata};

/// What a forecaster predicts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    Load,
    Pv,
    /// A net meter's reading, import minus export (negative while a prosumer feeds in):
    /// normalized, windowed and served like load.
    NetLoad,
}

impl Target {
    pub const ALL: [Target; 3] = [Target::Load, Target::Pv, Target::NetLoad];

    pub fn column(self) -> &'static str {
        match self {
            Target::Load => crate::schema::col::LOAD_KW,
            Target::Pv => crate::schema::col::PV_KW,
            Target::NetLoad => crate::schema::col::NET_LOAD_KW,
        }
    }

    /// The name used in configs, specs and the CLI (`load`, `pv`, `net_load`).
    pub fn as_str(self) -> &'static str {
        match self {
            Target::Load => "load",
            Target::Pv => "pv",
            Target::NetLoad => "net_load",
        }
    }

    /// This target's column slot of `telemetry`, to fill or replace.
    pub fn column_mut(self, telemetry: &mut crate::SiteTelemetry) -> &mut Option<Vec<Option<f64>>> {
        match self {
            Target::Load => &mut telemetry.load_kw,
            Target::Pv => &mut telemetry.pv_kw,
            Target::NetLoad => &mut telemetry.net_load_kw,
        }
    }

    /// This target's column of `telemetry`, if the site measures it.
    pub fn values(self, telemetry: &crate::SiteTelemetry) -> Option<&Vec<Option<f64>>> {
        match self {
            Target::Load => telemetry.load_kw.as_ref(),
            Target::Pv => telemetry.pv_kw.as_ref(),
            Target::NetLoad => telemetry.net_load_kw.as_ref(),
        }
    }
}

impl std::str::FromStr for Target {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "load" => Ok(Target::Load),
            "pv" => Ok(Target::Pv),
            "net_load" | "net-load" => Ok(Target::NetLoad),
            other => Err(format!(
                "unknown target `{other}` (expected `load`, `pv` or `net_load`)"
            )),
        }
    }
}

/// Shape of the supervised problem, in grid steps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowSpec {
    /// Past target steps the model sees (L).
    pub context: usize,
    /// Future steps it predicts (H), directly.
    pub horizon: usize,
    /// Steps between consecutive forecast origins.
    pub stride: usize,
}

/// Per-site affine scaling of the target, computed locally and stored with the model so
/// forecasts come back in kW: `normalized = (kw - offset_kw) / scale_kw`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Normalization {
    pub offset_kw: f32,
    pub scale_kw: f32,
}

impl Normalization {
    pub fn normalize(&self, kw: f32) -> f32 {
        (kw - self.offset_kw) / self.scale_kw
    }
    pub fn denormalize(&self, value: f32) -> f32 {
        value * self.scale_kw + self.offset_kw
    }
}

/// Supervised samples of one or more sites, all with the same feature layout.
///
/// Row `i` of `x` (`n_features` values) holds, normalized:
/// `[context target (L) | per horizon step h: FUTURE_FEATURES (H x F_h) | STATIC_FEATURES]`,
/// see [`feature_names`]. Row `i` of `y` holds the H normalized targets.
/// Windows whose context or horizon has a missing target are left out; nothing is filled.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SampleSet {
    pub n_features: usize,
    pub context: usize,
    pub horizon: usize,
    /// Grid resolution in seconds.
    pub step_seconds: i64,
    /// `[n, n_features]`, row-major.
    pub x: Vec<f32>,
    /// `[n, horizon]`, row-major, normalized target.
    pub y: Vec<f32>,
    /// `[n, horizon]`: true where the sun is up at the target step (always true for load).
    pub daylight: Vec<bool>,
    /// Unix seconds of the first forecast step of each sample.
    pub origins: Vec<i64>,
    /// Index into `site_ids` / `normalizations` of each sample.
    pub sites: Vec<u32>,
    pub site_ids: Vec<String>,
    pub normalizations: Vec<Normalization>,
}

impl Normalization {
    /// Fits the scaling from a site's own training-period values, locally: load is z-scored,
    /// PV is divided by nameplate capacity so that night stays exactly zero.
    pub fn fit(
        target: Target,
        capacity_kw: f64,
        values: impl Iterator<Item = f64>,
    ) -> Result<Self, DatasetError> {
        if target == Target::Pv {
            if capacity_kw <= 0.0 {
                return Err(DatasetError::Window(
                    "PV normalization needs capacity_kw > 0".into(),
                ));
            }
            return Ok(Self {
                offset_kw: 0.0,
                scale_kw: capacity_kw as f32,
            });
        }
        let (mut n, mut sum, mut sum_sq) = (0usize, 0.0f64, 0.0f64);
        for v in values {
            n += 1;
            sum += v;
            sum_sq += v * v;
        }
        if n < 2 {
            return Err(DatasetError::Window(
                "too few observed values to normalize load".into(),
            ));
        }
        let mean = sum / n as f64;
        let std = (sum_sq / n as f64 - mean * mean).max(0.0).sqrt();
        // A flat-lined meter would divide by ~0; keep a floor relative to the level.
        let scale = std.max(1e-3 * mean.abs()).max(1e-6);
        Ok(Self {
            offset_kw: mean as f32,
            scale_kw: scale as f32,
        })
    }
}

/// Which forecast origins a window set contains.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OriginRange {
    /// First target step at or after this time (unix s).
    pub from: i64,
    /// Last target step strictly before this time (unix s).
    pub until: i64,
}

impl SampleSet {
    pub fn len(&self) -> usize {
        self.origins.len()
    }

    pub fn is_empty(&self) -> bool {
        self.origins.is_empty()
    }

    pub fn x_row(&self, i: usize) -> &[f32] {
        &self.x[i * self.n_features..(i + 1) * self.n_features]
    }

    pub fn y_row(&self, i: usize) -> &[f32] {
        &self.y[i * self.horizon..(i + 1) * self.horizon]
    }

    /// The normalization of sample `i`'s site.
    pub fn normalization_of(&self, i: usize) -> Normalization {
        self.normalizations[self.sites[i] as usize]
    }

    /// Pools several sets (e.g. one per site) into one; their layouts must agree.
    pub fn concat(parts: &[SampleSet]) -> Result<SampleSet, DatasetError> {
        let Some(first) = parts.first() else {
            return Ok(SampleSet::default());
        };
        let mut out = SampleSet {
            n_features: first.n_features,
            context: first.context,
            horizon: first.horizon,
            step_seconds: first.step_seconds,
            ..SampleSet::default()
        };
        for part in parts {
            let layout = (
                part.n_features,
                part.context,
                part.horizon,
                part.step_seconds,
            );
            if layout != (out.n_features, out.context, out.horizon, out.step_seconds) {
                return Err(DatasetError::Window(format!(
                    "cannot pool sample sets with different layouts: {layout:?} vs {:?}",
                    (out.n_features, out.context, out.horizon, out.step_seconds)
                )));
            }
            let site_offset = out.site_ids.len() as u32;
            out.site_ids.extend(part.site_ids.iter().cloned());
            out.normalizations
                .extend(part.normalizations.iter().copied());
            out.sites.extend(part.sites.iter().map(|s| s + site_offset));
            out.x.extend_from_slice(&part.x);
            out.y.extend_from_slice(&part.y);
            out.daylight.extend_from_slice(&part.daylight);
            out.origins.extend_from_slice(&part.origins);
        }
        Ok(out)
    }
}

/// Number of input features for a context of `context` steps and a horizon of `horizon` steps.
pub fn feature_count(context: usize, horizon: usize) -> usize {
    context + horizon * FUTURE_FEATURES.len() + ORIGIN_FEATURES.len()
}

/// Input feature names in layout order (for manifests and debugging).
pub fn feature_names(context: usize, horizon: usize) -> Vec<String> {
    let mut names: Vec<String> = (0..context)
        .map(|i| format!("target_lag_{}", context - i))
        .collect();
    for h in 0..horizon {
        names.extend(FUTURE_FEATURES.iter().map(|f| format!("{f}_h{h}")));
    }
    names.extend(ORIGIN_FEATURES.iter().map(|f| f.to_string()));
    names
}

/// Cuts one site's regular series into supervised windows.
///
/// A window at origin `t0` sees the target at `[t0 - L, t0)`, the known-future covariates at
/// `[t0, t0 + H)` and predicts the target at `[t0, t0 + H)`. Origins are the grid steps with
/// `t0 % (stride * step) == 0` whose whole horizon lies in `range`. Windows touching a
/// missing target or forecast value are skipped, so no value is ever invented.
pub fn build_samples(
    series: &RegularSeries,
    meta: &SiteMetadata,
    target: Target,
    spec: WindowSpec,
    normalization: Normalization,
    range: OriginRange,
) -> Result<SampleSet, DatasetError> {
    let t = &series.telemetry;
    let values = target.values(t).ok_or_else(|| {
        DatasetError::Window(format!(
            "site `{}` has no `{}` column",
            t.site_id,
            target.column()
        ))
    })?;
    if spec.context == 0 || spec.horizon == 0 || spec.stride == 0 {
        return Err(DatasetError::Window(
            "context, horizon and stride must be positive".into(),
        ));
    }
    let step_s = series.resolution.seconds();
    let features = StepFeatures::compute(series, meta);
    let (l, h, nf) = (spec.context, spec.horizon, FUTURE_FEATURES.len());
    let mut set = SampleSet {
        n_features: feature_count(l, h),
        context: l,
        horizon: h,
        step_seconds: step_s,
        site_ids: vec![t.site_id.clone()],
        normalizations: vec![normalization],
        ..SampleSet::default()
    };
    let period = step_s * spec.stride as i64;
    let normalized: Vec<Option<f32>> = values
        .iter()
        .map(|v| v.map(|kw| normalization.normalize(kw as f32)))
        .collect();
    for o in l..=t.len().saturating_sub(h) {
        let t0 = t.timestamps[o];
        if t0 % period != 0 || t0 < range.from || t0 + (h as i64) * step_s > range.until {
            continue;
        }
        let window = &normalized[o - l..o + h];
        let future = &features.future[o * nf..(o + h) * nf];
        if window.iter().any(Option::is_none) || future.iter().any(|v| v.is_nan()) {
            continue;
        }
        extend_input(
            &mut set.x,
            window[..l].iter().flatten().copied(),
            &features,
            o,
            h,
        );
        set.y.extend(window[l..].iter().flatten());
        if target == Target::Pv {
            set.daylight.extend_from_slice(&features.daylight[o..o + h]);
        } else {
            set.daylight.extend(std::iter::repeat_n(true, h));
        }
        set.origins.push(t0);
        set.sites.push(0);
    }
    Ok(set)
}

/// Appends one input row: the normalized context, then the known-future and origin features
/// of the window starting at grid index `origin`. The single place that fixes the layout
/// shared by [`build_samples`] (training) and [`input_row`] (serving).
fn extend_input(
    x: &mut Vec<f32>,
    context: impl Iterator<Item = f32>,
    features: &StepFeatures,
    origin: usize,
    horizon: usize,
) {
    let (nf, no) = (FUTURE_FEATURES.len(), ORIGIN_FEATURES.len());
    x.extend(context);
    x.extend_from_slice(&features.future[origin * nf..(origin + horizon) * nf]);
    x.extend_from_slice(&features.origin[origin * no..(origin + 1) * no]);
}

/// The model input of one forecast origin, exactly as [`build_samples`] lays out a row of
/// [`SampleSet::x`], but without the future target, which a live forecast does not have.
///
/// `series` must hold at least `context` steps before grid index `origin` (the first forecast
/// step) and `horizon` steps from it; the context target and the known-future covariates over
/// the horizon must all be present. Only those steps are read.
pub fn input_row(
    series: &RegularSeries,
    meta: &SiteMetadata,
    target: Target,
    context: usize,
    horizon: usize,
    normalization: Normalization,
    origin: usize,
) -> Result<Vec<f32>, DatasetError> {
    let t = &series.telemetry;
    let values = target.values(t).ok_or_else(|| {
        DatasetError::Window(format!("series has no `{}` column", target.column()))
    })?;
    if origin < context || origin + horizon > t.len() {
        return Err(DatasetError::Window(format!(
            "origin {origin} needs {context} context and {horizon} horizon steps in a series of {}",
            t.len()
        )));
    }
    let mut context_values = Vec::with_capacity(context);
    for (i, v) in values[origin - context..origin].iter().enumerate() {
        let kw = v.ok_or_else(|| {
            DatasetError::Window(format!(
                "context target missing at step {}",
                origin - context + i
            ))
        })?;
        context_values.push(normalization.normalize(kw as f32));
    }
    let features = StepFeatures::inputs(series, meta, origin..origin + horizon);
    let mut x = Vec::with_capacity(feature_count(context, horizon));
    extend_input(&mut x, context_values.into_iter(), &features, 0, horizon);
    if let Some(i) = x[context..].iter().position(|v| v.is_nan()) {
        return Err(DatasetError::Window(format!(
            "known-future covariate missing at horizon step {}",
            i / FUTURE_FEATURES.len()
        )));
    }
    Ok(x)
}
