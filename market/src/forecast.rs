//! What an agent knows of tomorrow: a day-ahead quantile forecast of its net load.

use serde::{Deserialize, Serialize};

use crate::error::MarketError;

/// Net load (kW, positive: consuming) forecast for one day: `values[level][hour]` at the
/// increasing `quantiles`. A point forecast has the single level 0.5.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DayForecast {
    pub quantiles: Vec<f64>,
    pub values: Vec<Vec<f64>>,
}

impl DayForecast {
    pub fn point(values: Vec<f64>) -> Self {
        Self {
            quantiles: vec![0.5],
            values: vec![values],
        }
    }

    /// Checks the shape against `hours` and that every value is finite.
    pub fn validate(&self, hours: usize) -> Result<(), MarketError> {
        if self.quantiles.is_empty() || self.quantiles.len() != self.values.len() {
            return Err(MarketError::Inputs(format!(
                "a forecast with {} quantile levels and {} rows",
                self.quantiles.len(),
                self.values.len()
            )));
        }
        if self.quantiles.windows(2).any(|w| w[0] >= w[1]) {
            return Err(MarketError::Inputs(format!(
                "forecast quantiles {:?} are not increasing",
                self.quantiles
            )));
        }
        if self.values.iter().any(|row| row.len() != hours) {
            return Err(MarketError::Inputs(format!(
                "forecast rows must have {hours} hours"
            )));
        }
        if self.values.iter().flatten().any(|v| !v.is_finite()) {
            return Err(MarketError::Inputs(
                "forecast has a non-finite value".into(),
            ));
        }
        Ok(())
    }

    pub fn hours(&self) -> usize {
        self.values.first().map_or(0, Vec::len)
    }

    /// The forecast at quantile `tau` for `hour`: linear between levels, the outer levels held
    /// beyond them. Levels are sorted per hour first, so crossed quantiles cannot invert it.
    pub fn quantile(&self, tau: f64, hour: usize) -> f64 {
        let mut column: Vec<f64> = self.values.iter().map(|row| row[hour]).collect();
        column.sort_by(f64::total_cmp);
        let q = &self.quantiles;
        if tau <= q[0] {
            return column[0];
        }
        for i in 1..q.len() {
            if tau <= q[i] {
                let w = (tau - q[i - 1]) / (q[i] - q[i - 1]);
                return column[i - 1] + w * (column[i] - column[i - 1]);
            }
        }
        column[column.len() - 1]
    }

    pub fn median(&self, hour: usize) -> f64 {
        self.quantile(0.5, hour)
    }

    /// The same forecast shifted by `delta[hour]` kW at every level.
    pub fn shifted(&self, delta: &[f64]) -> Self {
        Self {
            quantiles: self.quantiles.clone(),
            values: self
                .values
                .iter()
                .map(|row| row.iter().zip(delta).map(|(v, d)| v + d).collect())
                .collect(),
        }
    }
}
