//! Multi-output ridge regression `x -> y` (all H steps at once) with quantiles from
//! out-of-sample residuals.

use datasets::SampleSet;
use ndarray::{Array2, ArrayView2};
use serde::{Deserialize, Serialize};

use crate::ModelError;
use crate::forecast::QuantileForecast;
use crate::linalg::{cholesky_solve, empirical_quantile};
use crate::samples::{check_samples, chronological_split};

/// Rows accumulated per matrix product when forming the normal equations.
const CHUNK_ROWS: usize = 2048;

/// Ridge hyperparameters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RidgeConfig {
    /// Candidate penalties per sample (the objective is mean squared error + lambda ||w||^2,
    /// intercept unpenalized); the one with the lowest validation MAE wins.
    pub lambdas: Vec<f64>,
    /// Latest share of origins held out to pick lambda and measure residuals.
    pub validation_fraction: f64,
    /// Levels of the predicted quantiles, strictly increasing in (0, 1).
    pub quantiles: Vec<f32>,
}

impl Default for RidgeConfig {
    fn default() -> Self {
        Self {
            lambdas: vec![1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0],
            validation_fraction: 0.15,
            quantiles: vec![0.1, 0.5, 0.9],
        }
    }
}

/// A fitted ridge forecaster. Each quantile is the least-squares prediction plus the
/// empirical quantile of that horizon step's validation residuals, so levels never cross.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RidgeForecaster {
    n_features: usize,
    horizon: usize,
    lambda: f64,
    quantiles: Vec<f32>,
    /// `[n_features + 1, horizon]`, the last row the intercept.
    weights: Vec<f64>,
    /// `[quantiles, horizon]` offsets added to the least-squares prediction.
    residual_quantiles: Vec<f64>,
}

/// Sums `z z^T` and `z y^T` over rows, with `z = [x, 1]`.
struct NormalEquations {
    gram: Array2<f64>,
    cross: Array2<f64>,
    rows: usize,
}

impl NormalEquations {
    fn accumulate(data: &SampleSet, indices: &[usize]) -> Self {
        let (p, h) = (data.n_features + 1, data.horizon);
        let mut eq = Self {
            gram: Array2::zeros((p, p)),
            cross: Array2::zeros((p, h)),
            rows: indices.len(),
        };
        for chunk in indices.chunks(CHUNK_ROWS) {
            let z = design(data, chunk);
            let y = Array2::from_shape_fn((chunk.len(), h), |(r, c)| {
                f64::from(data.y_row(chunk[r])[c])
            });
            eq.gram += &z.t().dot(&z);
            eq.cross += &z.t().dot(&y);
        }
        eq
    }

    fn add(&self, other: &NormalEquations) -> NormalEquations {
        NormalEquations {
            gram: &self.gram + &other.gram,
            cross: &self.cross + &other.cross,
            rows: self.rows + other.rows,
        }
    }

    /// Weights minimizing `mean ||y - z w||^2 + lambda ||w_features||^2`.
    fn solve(&self, lambda: f64) -> Result<Vec<f64>, ModelError> {
        let (p, h) = self.cross.dim();
        let n = self.rows.max(1) as f64;
        let mut a: Vec<f64> = self.gram.iter().map(|v| v / n).collect();
        for j in 0..p - 1 {
            a[j * p + j] += lambda;
        }
        let mut b: Vec<f64> = self.cross.iter().map(|v| v / n).collect();
        if !cholesky_solve(&mut a, p, &mut b, h) {
            return Err(ModelError::NotPositiveDefinite { lambda });
        }
        Ok(b)
    }
}

/// Design matrix rows `[x, 1]` for the samples `indices`.
fn design(data: &SampleSet, indices: &[usize]) -> Array2<f64> {
    let p = data.n_features + 1;
    Array2::from_shape_fn((indices.len(), p), |(r, c)| {
        if c < data.n_features {
            f64::from(data.x_row(indices[r])[c])
        } else {
            1.0
        }
    })
}

fn predict_rows(
    data: &SampleSet,
    indices: &[usize],
    weights: &[f64],
) -> Result<Array2<f64>, ModelError> {
    let w = ArrayView2::from_shape((data.n_features + 1, data.horizon), weights)
        .map_err(|e| ModelError::LayoutMismatch(e.to_string()))?;
    Ok(design(data, indices).dot(&w))
}

impl RidgeForecaster {
    pub fn fit(config: &RidgeConfig, data: &SampleSet) -> Result<Self, ModelError> {
        check_samples(data)?;
        if config.lambdas.is_empty() || config.lambdas.iter().any(|l| !(l.is_finite() && *l >= 0.0))
        {
            return Err(ModelError::InvalidConfig(format!(
                "ridge lambdas {:?} must be >= 0",
                config.lambdas
            )));
        }
        let levels_ok = config.quantiles.iter().all(|q| *q > 0.0 && *q < 1.0)
            && config.quantiles.windows(2).all(|w| w[0] < w[1]);
        if config.quantiles.is_empty() || !levels_ok {
            return Err(ModelError::InvalidConfig(format!(
                "ridge quantiles {:?} must be strictly increasing in (0, 1)",
                config.quantiles
            )));
        }
        let split = chronological_split(data, config.validation_fraction)?;
        let h = data.horizon;
        let fit = NormalEquations::accumulate(data, &split.fit);
        let mut best: Option<(f64, f64, Array2<f64>)> = None;
        for &lambda in &config.lambdas {
            let weights = fit.solve(lambda)?;
            let predicted = predict_rows(data, &split.validation, &weights)?;
            let residuals = residuals(data, &split.validation, &predicted);
            let mae =
                residuals.iter().map(|r| r.abs()).sum::<f64>() / residuals.len().max(1) as f64;
            if best.as_ref().is_none_or(|(_, best_mae, _)| mae < *best_mae) {
                best = Some((lambda, mae, residuals));
            }
        }
        let Some((lambda, _, residuals)) = best else {
            return Err(ModelError::InvalidConfig("no ridge lambda to try".into()));
        };
        let mut residual_quantiles = Vec::with_capacity(config.quantiles.len() * h);
        for &level in &config.quantiles {
            for step in 0..h {
                let mut column: Vec<f64> = residuals.column(step).to_vec();
                residual_quantiles.push(empirical_quantile(&mut column, f64::from(level)));
            }
        }
        let mut rest: Vec<bool> = vec![true; data.origins.len()];
        split
            .fit
            .iter()
            .chain(&split.validation)
            .for_each(|&i| rest[i] = false);
        let rest: Vec<usize> = (0..rest.len()).filter(|&i| rest[i]).collect();
        let all = fit
            .add(&NormalEquations::accumulate(data, &split.validation))
            .add(&NormalEquations::accumulate(data, &rest));
        Ok(Self {
            n_features: data.n_features,
            horizon: h,
            lambda,
            quantiles: config.quantiles.clone(),
            weights: all.solve(lambda)?,
            residual_quantiles,
        })
    }

    /// The penalty chosen on the validation split.
    pub fn lambda(&self) -> f64 {
        self.lambda
    }

    pub fn predict(&self, data: &SampleSet) -> Result<QuantileForecast, ModelError> {
        check_samples(data)?;
        if (data.n_features, data.horizon) != (self.n_features, self.horizon) {
            return Err(ModelError::LayoutMismatch(format!(
                "ridge fitted on {} features / horizon {}, samples have {} / {}",
                self.n_features, self.horizon, data.n_features, data.horizon
            )));
        }
        let all: Vec<usize> = (0..data.origins.len()).collect();
        let (q, h) = (self.quantiles.len(), self.horizon);
        let mut values = Vec::with_capacity(all.len() * q * h);
        for chunk in all.chunks(CHUNK_ROWS) {
            let predicted = predict_rows(data, chunk, &self.weights)?;
            for row in predicted.rows() {
                for level in 0..q {
                    let offsets = &self.residual_quantiles[level * h..(level + 1) * h];
                    values.extend(row.iter().zip(offsets).map(|(p, o)| (p + o) as f32));
                }
            }
        }
        Ok(QuantileForecast {
            quantiles: self.quantiles.clone(),
            horizon: h,
            values,
        })
    }
}

/// `y - predicted`, `[rows, horizon]`.
fn residuals(data: &SampleSet, indices: &[usize], predicted: &Array2<f64>) -> Array2<f64> {
    Array2::from_shape_fn(predicted.dim(), |(r, c)| {
        f64::from(data.y_row(indices[r])[c]) - predicted[(r, c)]
    })
}
