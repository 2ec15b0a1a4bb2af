//! Forecasts as produced by every model here: quantiles per sample and horizon step.

use datasets::SampleSet;
use serde::{Deserialize, Serialize};

use crate::ModelError;

/// Quantile forecasts for the samples of one `SampleSet`, in its normalized units.
///
/// `values` is `[n, quantiles.len(), horizon]` row-major. A point forecast (the baselines) is
/// the special case `quantiles == [0.5]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QuantileForecast {
    pub quantiles: Vec<f32>,
    pub horizon: usize,
    pub values: Vec<f32>,
}

impl QuantileForecast {
    /// A point forecast, `[n, horizon]`.
    pub fn point(horizon: usize, values: Vec<f32>) -> Self {
        Self {
            quantiles: vec![0.5],
            horizon,
            values,
        }
    }

    pub fn len(&self) -> usize {
        let per_sample = self.quantiles.len() * self.horizon;
        self.values.len().checked_div(per_sample).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn is_point(&self) -> bool {
        self.quantiles.len() == 1
    }

    /// Forecast of `sample` at quantile index `level` and horizon step `step`.
    pub fn value(&self, sample: usize, level: usize, step: usize) -> f32 {
        self.values[(sample * self.quantiles.len() + level) * self.horizon + step]
    }

    /// Index of the level used as the point forecast: the one closest to the median.
    pub fn median_level(&self) -> usize {
        let distance = |q: f32| (q - 0.5).abs();
        (0..self.quantiles.len())
            .min_by(|&a, &b| distance(self.quantiles[a]).total_cmp(&distance(self.quantiles[b])))
            .unwrap_or(0)
    }

    /// Checks that this forecast covers exactly the samples of `data`.
    pub fn check_matches(&self, data: &SampleSet) -> Result<(), ModelError> {
        let expected = data.origins.len() * self.quantiles.len() * data.horizon;
        if self.horizon != data.horizon || self.values.len() != expected {
            return Err(ModelError::LayoutMismatch(format!(
                "forecast of {} values with horizon {} for {} samples of horizon {}",
                self.values.len(),
                self.horizon,
                data.origins.len(),
                data.horizon
            )));
        }
        Ok(())
    }

    /// The same forecast in kW, each sample denormalized with its site's normalization.
    pub fn to_kw(&self, data: &SampleSet) -> Result<QuantileForecast, ModelError> {
        self.check_matches(data)?;
        let per_sample = self.quantiles.len() * self.horizon;
        let mut values = Vec::with_capacity(self.values.len());
        for (i, chunk) in self.values.chunks(per_sample.max(1)).enumerate() {
            let norm = data.normalizations[data.sites[i] as usize];
            values.extend(chunk.iter().map(|&v| norm.denormalize(v)));
        }
        Ok(QuantileForecast {
            quantiles: self.quantiles.clone(),
            horizon: self.horizon,
            values,
        })
    }

    /// Raises every value below `min_kw` to it, per sample in its site's units. For PV,
    /// `min_kw = 0` removes impossible negative output; since the floor is the same for all
    /// levels, ordered quantiles stay ordered.
    /// Sets every level to 0 kW where the sun is down at the step (`data.daylight`): PV
    /// generation at night is a known zero, as the served forecasts make it too.
    pub fn zero_at_night(&mut self, data: &SampleSet) -> Result<(), ModelError> {
        self.check_matches(data)?;
        let (levels, horizon) = (self.quantiles.len(), self.horizon);
        for i in 0..data.origins.len() {
            let zero = data.normalizations[data.sites[i] as usize].normalize(0.0);
            for step in (0..horizon).filter(|&h| !data.daylight[i * horizon + h]) {
                for level in 0..levels {
                    self.values[(i * levels + level) * horizon + step] = zero;
                }
            }
        }
        Ok(())
    }

    pub fn clamp_min_kw(&mut self, data: &SampleSet, min_kw: f32) -> Result<(), ModelError> {
        self.check_matches(data)?;
        let per_sample = self.quantiles.len() * self.horizon;
        for (i, chunk) in self.values.chunks_mut(per_sample.max(1)).enumerate() {
            let floor = data.normalizations[data.sites[i] as usize].normalize(min_kw);
            chunk.iter_mut().for_each(|v| *v = v.max(floor));
        }
        Ok(())
    }
}
