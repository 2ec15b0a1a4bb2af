//! Mini-batch Adam training of the quantile MLP: centralized with early stopping, and the
//! local-epochs step that federated rounds run on each participant.

use std::time::Instant;

use burn::optim::decay::WeightDecayConfig;
use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Tensor, TensorData};
use datasets::SampleSet;
use rand::Rng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::ModelError;
use crate::config::ForecasterConfig;
use crate::flat::{from_flat, load_flat, to_flat};
use crate::forecaster::{QuantileForecaster, training_device};
use crate::loss::{ProximalAnchor, pinball_loss, quantile_levels};
use crate::metrics::mean_pinball;
use crate::network::{QuantileMlp, seeded_rng, stream};
use crate::samples::{check_samples, chronological_split, gather_rows};

/// What a training run did, for lineage and reports.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainingReport {
    pub epochs_run: usize,
    /// Epoch (1-based) whose weights were kept.
    pub best_epoch: usize,
    /// Mean pinball loss on the validation split, normalized units.
    pub best_validation_loss: f32,
    /// Samples trained on while selecting the epoch count (with `refit`, the final model then
    /// saw `fit_samples + validation_samples` and the purged samples in between).
    pub fit_samples: usize,
    pub validation_samples: usize,
    /// Mean training loss of each epoch.
    pub train_loss: Vec<f32>,
    /// Validation loss after each epoch.
    pub validation_loss: Vec<f32>,
    pub seconds: f64,
}

/// A trained network with the record of its training.
#[derive(Clone, Debug)]
pub struct TrainedForecaster {
    pub forecaster: QuantileForecaster,
    pub report: TrainingReport,
}

/// Result of local training in a federated round: what a participant sends (after
/// protection) and the weight FedAvg gives it.
#[derive(Clone, Debug, PartialEq)]
pub struct LocalUpdate {
    pub params: Vec<f32>,
    pub samples: usize,
    /// Mean training loss of the last local epoch (normalized units, without the proximal term).
    pub final_loss: f32,
}

/// Trains a fresh network of `config` on `data`: Adam on shuffled mini-batches, early stopping
/// on the latest `validation_fraction` of origins (see `chronological_split`), the learning
/// rate multiplied by `plateau_decay` after each epoch without improvement, best weights
/// restored (or, with `refit`, retrained on all samples for the best epoch count). The same
/// config and data give bit-identical weights.
pub fn train(config: &ForecasterConfig, data: &SampleSet) -> Result<TrainedForecaster, ModelError> {
    let device = training_device();
    let model = config.init(&device)?;
    train_from(config, data, model, &device, false)
}

/// Personalisation: [`train`] starting from the flat parameters `initial` (a federated global
/// model) instead of a fresh initialisation, with the same early stopping on the site's own
/// validation split, so a site keeps the global model unless its own data improve on it.
pub fn fine_tune(
    config: &ForecasterConfig,
    initial: &[f32],
    data: &SampleSet,
) -> Result<TrainedForecaster, ModelError> {
    let device = training_device();
    let model = from_flat(config, initial, &device)?;
    train_from(config, data, model, &device, true)
}

fn train_from(
    config: &ForecasterConfig,
    data: &SampleSet,
    mut model: QuantileMlp,
    device: &Device,
    fine_tuning: bool,
) -> Result<TrainedForecaster, ModelError> {
    let started = Instant::now();
    check_layout(config, data)?;
    let split = chronological_split(data, config.validation_fraction)?;
    let device = device.clone();
    let mut session = Session::new(config, data, &device, None);
    let val_x = gather_rows(&data.x, data.n_features, &split.validation);
    let val_y = gather_rows(&data.y, data.horizon, &split.validation);
    let mut fit = split.fit.clone();
    let mut best_loss = f32::INFINITY;
    if fine_tuning {
        let forecast = QuantileForecaster::new(config.clone(), &model).predict_rows(&val_x)?;
        best_loss = mean_pinball(&forecast, &val_y) as f32;
    }
    let (mut best, mut best_epoch) = (to_flat(&model)?, 0);
    let (mut train_loss, mut validation_loss, mut rates) = (Vec::new(), Vec::new(), Vec::new());
    for epoch in 1..=config.epochs {
        rates.push(session.learning_rate);
        let (next, loss) = session.epoch(model, &mut fit, epoch)?;
        model = next;
        train_loss.push(loss);
        let forecast = QuantileForecaster::new(config.clone(), &model).predict_rows(&val_x)?;
        let val_loss = mean_pinball(&forecast, &val_y) as f32;
        validation_loss.push(val_loss);
        if val_loss < best_loss {
            (best, best_loss, best_epoch) = (to_flat(&model)?, val_loss, epoch);
        } else if epoch - best_epoch >= config.patience {
            break;
        } else {
            session.learning_rate *= config.plateau_decay;
        }
    }
    if best_epoch == 0 && !fine_tuning {
        // Only a NaN validation loss never improves on infinity.
        return Err(ModelError::Diverged { epoch: 1 });
    }
    let model = if config.refit && !fine_tuning {
        refit(config, data, &device, &rates[..best_epoch])?
    } else {
        load_flat(model, &best)?
    };
    Ok(TrainedForecaster {
        forecaster: QuantileForecaster::new(config.clone(), &model),
        report: TrainingReport {
            epochs_run: train_loss.len(),
            best_epoch,
            best_validation_loss: best_loss,
            fit_samples: split.fit.len(),
            validation_samples: split.validation.len(),
            train_loss,
            validation_loss,
            seconds: started.elapsed().as_secs_f64(),
        },
    })
}

/// Retrains from the seed on every sample, one epoch per entry of `rates` at that learning rate.
fn refit(
    config: &ForecasterConfig,
    data: &SampleSet,
    device: &Device,
    rates: &[f64],
) -> Result<QuantileMlp, ModelError> {
    let mut model = config.init(device)?;
    let mut session = Session::new(config, data, device, None);
    let mut all: Vec<usize> = (0..data.origins.len()).collect();
    for (epoch, &rate) in rates.iter().enumerate() {
        session.learning_rate = rate;
        model = session.epoch(model, &mut all, epoch + 1)?.0;
    }
    Ok(model)
}

/// Runs `epochs` local epochs on all of `data`, starting from the flat global parameters
/// `global`, with a fresh Adam state; with `config.proximal_mu > 0` the loss gets the FedProx
/// term `mu / 2 * ||w - global||^2`. Shuffling and dropout follow `config.seed`, so a
/// participant should derive a per-round seed (e.g. from the round number) for variety.
pub fn train_local(
    config: &ForecasterConfig,
    global: &[f32],
    data: &SampleSet,
    epochs: usize,
) -> Result<LocalUpdate, ModelError> {
    check_layout(config, data)?;
    if epochs == 0 {
        return Err(ModelError::InvalidConfig(
            "local training needs at least one epoch".into(),
        ));
    }
    let device = training_device();
    let mut model = from_flat(config, global, &device)?;
    let anchor = (config.proximal_mu > 0.0)
        .then(|| ProximalAnchor::new(global, &config.parameter_specs(), &device));
    let mut session = Session::new(config, data, &device, anchor);
    let mut indices: Vec<usize> = (0..data.origins.len()).collect();
    let mut final_loss = f32::NAN;
    for epoch in 1..=epochs {
        let (next, loss) = session.epoch(model, &mut indices, epoch)?;
        model = next;
        final_loss = loss;
    }
    Ok(LocalUpdate {
        params: to_flat(&model)?,
        samples: indices.len(),
        final_loss,
    })
}

fn check_layout(config: &ForecasterConfig, data: &SampleSet) -> Result<(), ModelError> {
    config.validate()?;
    let n = check_samples(data)?;
    if n == 0 {
        return Err(ModelError::InvalidSamples("no training samples".into()));
    }
    if (data.n_features, data.horizon) != (config.n_features, config.horizon) {
        return Err(ModelError::LayoutMismatch(format!(
            "config expects {} features and horizon {}, samples have {} and {}",
            config.n_features, config.horizon, data.n_features, data.horizon
        )));
    }
    Ok(())
}

/// Optimizer, random streams and constants shared by the epochs of one training run.
struct Session<'a> {
    config: &'a ForecasterConfig,
    data: &'a SampleSet,
    device: Device,
    optimizer: ModuleOptimizer,
    learning_rate: f64,
    levels: Tensor<3>,
    shuffle: ChaCha8Rng,
    dropout: ChaCha8Rng,
    anchor: Option<ProximalAnchor>,
}

impl<'a> Session<'a> {
    fn new(
        config: &'a ForecasterConfig,
        data: &'a SampleSet,
        device: &Device,
        anchor: Option<ProximalAnchor>,
    ) -> Self {
        let weight_decay =
            (config.weight_decay > 0.0).then(|| WeightDecayConfig::new(config.weight_decay));
        Self {
            config,
            data,
            device: device.clone(),
            optimizer: AdamConfig::new().with_weight_decay(weight_decay).init(),
            learning_rate: config.learning_rate,
            levels: quantile_levels(&config.quantiles, device),
            shuffle: seeded_rng(config.seed, stream::SHUFFLE),
            dropout: seeded_rng(config.seed, stream::DROPOUT),
            anchor,
        }
    }

    /// One pass over `indices` (shuffled in place) in mini-batches; returns the updated model
    /// and the sample-weighted mean pinball loss.
    fn epoch(
        &mut self,
        mut model: QuantileMlp,
        indices: &mut [usize],
        epoch: usize,
    ) -> Result<(QuantileMlp, f32), ModelError> {
        indices.shuffle(&mut self.shuffle);
        let (nf, h) = (self.data.n_features, self.data.horizon);
        let (mut total, mut seen) = (0.0f64, 0usize);
        for batch in indices.chunks(self.config.batch_size) {
            let b = batch.len();
            let x = Tensor::<2>::from_data(
                TensorData::new(gather_rows(&self.data.x, nf, batch), [b, nf]),
                &self.device,
            );
            let y = Tensor::<2>::from_data(
                TensorData::new(gather_rows(&self.data.y, h, batch), [b, h]),
                &self.device,
            );
            let masks = self.dropout_masks(b);
            let fit = pinball_loss(model.forward_with_dropout(x, &masks), y, &self.levels);
            let fit_value: f32 = fit.clone().into_scalar();
            if !fit_value.is_finite() {
                return Err(ModelError::Diverged { epoch });
            }
            let loss = match self
                .anchor
                .as_ref()
                .and_then(|a| a.squared_distance(&model))
            {
                Some(distance) => fit + distance.mul_scalar(self.config.proximal_mu / 2.0),
                None => fit,
            };
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = self.optimizer.step(self.learning_rate, model, grads);
            total += f64::from(fit_value) * b as f64;
            seen += b;
        }
        Ok((model, (total / seen.max(1) as f64) as f32))
    }

    /// Inverted-dropout masks (kept units scaled by 1/(1-p)) drawn from the seeded stream;
    /// burn's `Dropout` would draw from the backend's global RNG instead.
    fn dropout_masks(&mut self, batch: usize) -> Vec<Tensor<2>> {
        let p = self.config.dropout;
        if p == 0.0 {
            return Vec::new();
        }
        let keep = (1.0 / (1.0 - p)) as f32;
        self.config
            .hidden
            .iter()
            .map(|&width| {
                let mask: Vec<f32> = (0..batch * width)
                    .map(|_| {
                        if self.dropout.random::<f64>() < p {
                            0.0
                        } else {
                            keep
                        }
                    })
                    .collect();
                Tensor::from_data(TensorData::new(mask, [batch, width]), &self.device)
            })
            .collect()
    }
}
