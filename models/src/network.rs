//! The multi-horizon quantile MLP: `[batch, n_features] -> [batch, quantiles, horizon]`.

use burn::module::{Module, Param};
use burn::nn::Linear;
use burn::tensor::activation::{gelu, relu, softplus};
use burn::tensor::{Device, Tensor, TensorData};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::ModelError;
use crate::config::{Activation, ForecasterConfig};

/// Random streams drawn from one seed, kept apart so that, e.g., changing the dropout rate
/// does not change the initial weights.
pub(crate) mod stream {
    pub const INIT: u64 = 0;
    pub const SHUFFLE: u64 = 1;
    pub const DROPOUT: u64 = 2;
}

pub(crate) fn seeded_rng(seed: u64, stream: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream);
    rng
}

/// A feed-forward network whose head emits, per horizon step, one anchor quantile (the level
/// closest to the median) and softplus-positive gaps to the levels below and above it, so the
/// predicted quantiles are non-decreasing by construction, for any weights.
#[derive(Module, Debug)]
pub struct QuantileMlp {
    pub(crate) hidden: Vec<Linear>,
    pub(crate) head: Linear,
    #[module(skip)]
    activation: Activation,
    #[module(skip)]
    horizon: usize,
    #[module(skip)]
    quantiles: usize,
    #[module(skip)]
    anchor: usize,
}

impl ForecasterConfig {
    /// Builds the network on `device`, weights drawn from `seed` (uniform in +-1/sqrt(fan_in),
    /// the PyTorch default for linear layers). Use an autodiff device to train it.
    pub fn init(&self, device: &Device) -> Result<QuantileMlp, ModelError> {
        self.validate()?;
        let mut rng = seeded_rng(self.seed, stream::INIT);
        let mut layer = |fan_in: usize, fan_out: usize| {
            let bound = 1.0 / (fan_in as f32).sqrt();
            let mut draw = |n: usize| -> Vec<f32> {
                (0..n).map(|_| rng.random_range(-bound..bound)).collect()
            };
            let weight = draw(fan_in * fan_out);
            let bias = draw(fan_out);
            Linear {
                weight: Param::from_data(TensorData::new(weight, [fan_in, fan_out]), device),
                bias: Some(Param::from_data(TensorData::new(bias, [fan_out]), device)),
            }
        };
        let mut fan_in = self.n_features;
        let mut hidden = Vec::with_capacity(self.hidden.len());
        for &width in &self.hidden {
            hidden.push(layer(fan_in, width));
            fan_in = width;
        }
        let head = layer(fan_in, self.quantiles.len() * self.horizon);
        Ok(QuantileMlp {
            hidden,
            head,
            activation: self.activation,
            horizon: self.horizon,
            quantiles: self.quantiles.len(),
            anchor: self.anchor_quantile(),
        })
    }
}

impl QuantileMlp {
    /// `[batch, n_features]` -> `[batch, quantiles, horizon]`, non-decreasing along dim 1.
    pub fn forward(&self, x: Tensor<2>) -> Tensor<3> {
        self.forward_with_dropout(x, &[])
    }

    /// Forward pass multiplying hidden layer `i`'s activations by `dropout[i]` when given
    /// (masks are drawn by the training loop from the seed, which keeps training reproducible).
    pub(crate) fn forward_with_dropout(&self, x: Tensor<2>, dropout: &[Tensor<2>]) -> Tensor<3> {
        let mut h = x;
        for (i, layer) in self.hidden.iter().enumerate() {
            h = layer.forward(h);
            h = match self.activation {
                Activation::Relu => relu(h),
                Activation::Gelu => gelu(h),
            };
            if let Some(mask) = dropout.get(i) {
                h = h * mask.clone();
            }
        }
        let [batch, _] = h.dims();
        let raw: Tensor<3> = self
            .head
            .forward(h)
            .reshape([batch, self.quantiles, self.horizon]);
        ordered_quantiles(raw, self.anchor)
    }

    pub fn horizon(&self) -> usize {
        self.horizon
    }

    pub fn quantile_count(&self) -> usize {
        self.quantiles
    }
}

/// Turns raw head outputs `[b, q, h]` into ordered quantiles: level `anchor` as is, each level
/// below it the next one up minus softplus(raw), each level above it the next one down plus
/// softplus(raw).
fn ordered_quantiles(raw: Tensor<3>, anchor: usize) -> Tensor<3> {
    let [b, q, h] = raw.dims();
    let level = |k: usize| raw.clone().slice([0..b, k..k + 1, 0..h]);
    let gap = |k: usize| softplus(level(k), 1.0);
    let mut parts = Vec::with_capacity(q);
    let mut current = level(anchor);
    for k in (0..anchor).rev() {
        current = current - gap(k);
        parts.push(current.clone());
    }
    parts.reverse();
    parts.push(level(anchor));
    let mut current = level(anchor);
    for k in anchor + 1..q {
        current = current + gap(k);
        parts.push(current.clone());
    }
    Tensor::cat(parts, 1)
}
