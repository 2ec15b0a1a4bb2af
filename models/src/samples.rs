//! Checks on incoming sample sets and the chronological split used for model selection.

use datasets::SampleSet;

use crate::ModelError;

/// Verifies that the parts of `data` agree with each other, so that later indexing cannot go
/// out of bounds and no NaN reaches a model. Returns the number of samples.
pub fn check_samples(data: &SampleSet) -> Result<usize, ModelError> {
    let bad = |reason: String| Err(ModelError::InvalidSamples(reason));
    let n = data.origins.len();
    if data.n_features == 0 || data.horizon == 0 || data.step_seconds <= 0 {
        return bad("n_features, horizon and step_seconds must be positive".into());
    }
    if data.context > data.n_features {
        return bad(format!(
            "context {} exceeds n_features {}",
            data.context, data.n_features
        ));
    }
    if data.x.len() != n * data.n_features {
        return bad(format!(
            "x has {} values, expected {n} x {}",
            data.x.len(),
            data.n_features
        ));
    }
    if data.y.len() != n * data.horizon || data.daylight.len() != n * data.horizon {
        return bad(format!(
            "y has {} and daylight {} values, expected {n} x {}",
            data.y.len(),
            data.daylight.len(),
            data.horizon
        ));
    }
    if data.sites.len() != n {
        return bad(format!("{} site indices for {n} samples", data.sites.len()));
    }
    if data.normalizations.len() != data.site_ids.len() {
        return bad(format!(
            "{} normalizations for {} sites",
            data.normalizations.len(),
            data.site_ids.len()
        ));
    }
    if let Some(s) = data
        .sites
        .iter()
        .find(|&&s| s as usize >= data.site_ids.len())
    {
        return bad(format!(
            "site index {s} out of range ({} sites)",
            data.site_ids.len()
        ));
    }
    if let Some(norm) = data
        .normalizations
        .iter()
        .find(|n| !(n.scale_kw.is_finite() && n.scale_kw > 0.0))
    {
        return bad(format!(
            "normalization scale {} must be positive",
            norm.scale_kw
        ));
    }
    if let Some(i) = data.x.iter().position(|v| !v.is_finite()) {
        return bad(format!(
            "non-finite feature {} of sample {}",
            i % data.n_features,
            i / data.n_features
        ));
    }
    if let Some(i) = data.y.iter().position(|v| !v.is_finite()) {
        return bad(format!(
            "non-finite target step {} of sample {}",
            i % data.horizon,
            i / data.horizon
        ));
    }
    Ok(n)
}

/// Checks that two sets share one feature layout (a model fitted on one can predict the other).
pub fn check_same_layout(a: &SampleSet, b: &SampleSet) -> Result<(), ModelError> {
    let layout = |s: &SampleSet| (s.n_features, s.context, s.horizon, s.step_seconds);
    if layout(a) != layout(b) {
        return Err(ModelError::LayoutMismatch(format!(
            "(n_features, context, horizon, step_seconds) {:?} vs {:?}",
            layout(a),
            layout(b)
        )));
    }
    Ok(())
}

/// Sample indices split in time: `validation` holds the samples whose origin is among the
/// latest `fraction` of distinct origins (one cut-off time for all sites), `fit` those whose
/// whole horizon ends before that cut-off, so no fitted target overlaps a validation target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChronologicalSplit {
    pub fit: Vec<usize>,
    pub validation: Vec<usize>,
}

pub fn chronological_split(
    data: &SampleSet,
    fraction: f64,
) -> Result<ChronologicalSplit, ModelError> {
    let mut origins = data.origins.clone();
    origins.sort_unstable();
    origins.dedup();
    let held_out = ((origins.len() as f64) * fraction).round() as usize;
    if held_out == 0 || held_out >= origins.len() {
        return Err(ModelError::InvalidSamples(format!(
            "{} distinct forecast origins are too few to hold out {fraction} for validation",
            origins.len()
        )));
    }
    let cutoff = origins[origins.len() - held_out];
    let span = data.horizon as i64 * data.step_seconds;
    let mut split = ChronologicalSplit {
        fit: Vec::new(),
        validation: Vec::new(),
    };
    for (i, &origin) in data.origins.iter().enumerate() {
        if origin >= cutoff {
            split.validation.push(i);
        } else if origin + span <= cutoff {
            split.fit.push(i);
        }
    }
    if split.fit.is_empty() {
        return Err(ModelError::InvalidSamples(
            "no training sample ends before the validation period".into(),
        ));
    }
    Ok(split)
}

/// Copies the rows `indices` (each `width` values) into a contiguous buffer.
pub(crate) fn gather_rows<T: Copy>(values: &[T], width: usize, indices: &[usize]) -> Vec<T> {
    let mut out = Vec::with_capacity(indices.len() * width);
    for &i in indices {
        out.extend_from_slice(&values[i * width..(i + 1) * width]);
    }
    out
}

/// The samples `indices` of `data` as a set of their own (same layout and sites).
pub(crate) fn subset(data: &SampleSet, indices: &[usize]) -> SampleSet {
    SampleSet {
        x: gather_rows(&data.x, data.n_features, indices),
        y: gather_rows(&data.y, data.horizon, indices),
        daylight: gather_rows(&data.daylight, data.horizon, indices),
        origins: gather_rows(&data.origins, 1, indices),
        sites: gather_rows(&data.sites, 1, indices),
        site_ids: data.site_ids.clone(),
        normalizations: data.normalizations.clone(),
        n_features: data.n_features,
        context: data.context,
        horizon: data.horizon,
        step_seconds: data.step_seconds,
    }
}
