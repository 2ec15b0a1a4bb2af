//! A trained quantile MLP ready for inference on a plain (non-autodiff) CPU device.

use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};
use datasets::SampleSet;

use crate::ModelError;
use crate::config::ForecasterConfig;
use crate::flat::{from_flat, to_flat};
use crate::forecast::QuantileForecast;
use crate::network::QuantileMlp;
use crate::samples::check_samples;

/// Rows per forward pass when predicting a whole set: bounds memory, keeps matmuls efficient.
const PREDICT_CHUNK: usize = 4096;

/// The device models train on: ndarray CPU backend with autodiff.
// burn 0.22 deprecates ndarray in favour of `flex`; issue 2 specifies ndarray, and switching
// is one line here once the workspace enables the `flex` feature.
#[allow(deprecated)]
pub fn training_device() -> Device {
    Device::ndarray().autodiff()
}

/// The device models predict on: ndarray CPU backend, no gradient bookkeeping.
#[allow(deprecated)]
pub fn inference_device() -> Device {
    Device::ndarray()
}

/// A quantile MLP with its config, for prediction.
#[derive(Debug, Clone)]
pub struct QuantileForecaster {
    config: ForecasterConfig,
    model: QuantileMlp,
}

impl QuantileForecaster {
    /// Wraps a (possibly still autodiff) trained network; keeps a gradient-free snapshot.
    pub fn new(config: ForecasterConfig, model: &QuantileMlp) -> Self {
        Self {
            config,
            model: model.valid(),
        }
    }

    /// Rebuilds a forecaster from flat parameters (e.g. a federated global model).
    pub fn from_flat(config: ForecasterConfig, flat: &[f32]) -> Result<Self, ModelError> {
        let model = from_flat(&config, flat, &inference_device())?;
        Ok(Self { config, model })
    }

    pub fn config(&self) -> &ForecasterConfig {
        &self.config
    }

    pub fn model(&self) -> &QuantileMlp {
        &self.model
    }

    pub fn to_flat(&self) -> Result<Vec<f32>, ModelError> {
        to_flat(&self.model)
    }

    /// Forecasts every sample of `data` (normalized units; see `QuantileForecast::to_kw`).
    pub fn predict(&self, data: &SampleSet) -> Result<QuantileForecast, ModelError> {
        check_samples(data)?;
        if data.horizon != self.config.horizon {
            return Err(ModelError::LayoutMismatch(format!(
                "model predicts {} steps, samples have horizon {}",
                self.config.horizon, data.horizon
            )));
        }
        self.predict_rows(&data.x)
    }

    /// Forecasts raw feature rows `[n, n_features]` laid out as in `datasets::SampleSet::x`.
    pub fn predict_rows(&self, x: &[f32]) -> Result<QuantileForecast, ModelError> {
        let width = self.config.n_features;
        if !x.len().is_multiple_of(width) {
            return Err(ModelError::LayoutMismatch(format!(
                "{} input values are not a whole number of {width}-feature rows",
                x.len()
            )));
        }
        if let Some(i) = x.iter().position(|v| !v.is_finite()) {
            return Err(ModelError::InvalidSamples(format!(
                "non-finite input feature at {i}"
            )));
        }
        let device = inference_device();
        let mut values =
            Vec::with_capacity(x.len() / width * self.config.quantiles.len() * self.config.horizon);
        for chunk in x.chunks(PREDICT_CHUNK * width) {
            let rows = chunk.len() / width;
            let input =
                Tensor::<2>::from_data(TensorData::new(chunk.to_vec(), [rows, width]), &device);
            let output = self.model.forward(input).into_data();
            let output = output
                .try_into_vec::<f32>()
                .map_err(|e| ModelError::TensorData(format!("{e:?}")))?;
            values.extend_from_slice(&output);
        }
        Ok(QuantileForecast {
            quantiles: self.config.quantiles.clone(),
            horizon: self.config.horizon,
            values,
        })
    }
}
