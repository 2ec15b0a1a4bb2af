//! Differentiable training objectives: the pinball (quantile) loss and the FedProx term.

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::{Device, Tensor, TensorData};

use crate::config::ParameterSpec;
use crate::network::QuantileMlp;

/// Quantile levels as a `[1, q, 1]` tensor that broadcasts over batch and horizon.
pub(crate) fn quantile_levels(quantiles: &[f32], device: &Device) -> Tensor<3> {
    Tensor::from_data(
        TensorData::new(quantiles.to_vec(), [1, quantiles.len(), 1]),
        device,
    )
}

/// Mean pinball loss of `predicted` `[b, q, h]` against `target` `[b, h]`, averaged over
/// samples, levels and steps: `max(tau * e, (tau - 1) * e)` with `e = target - predicted`.
pub(crate) fn pinball_loss(
    predicted: Tensor<3>,
    target: Tensor<2>,
    levels: &Tensor<3>,
) -> Tensor<1> {
    let [b, q, h] = predicted.dims();
    let target: Tensor<3> = target.unsqueeze_dim::<3>(1).expand([b, q, h]);
    let tau: Tensor<3> = levels.clone().expand([b, q, h]);
    let error = target - predicted;
    let above = error.clone() * tau.clone();
    let below = error * tau.sub_scalar(1.0);
    above.max_pair(below).mean()
}

/// The reference point of the FedProx proximal term: the global parameters, one flattened
/// constant tensor per parameter in flatten order.
pub(crate) struct ProximalAnchor {
    global: Vec<Tensor<1>>,
}

impl ProximalAnchor {
    /// `flat` must have `specs`' total length (checked by the caller).
    pub(crate) fn new(flat: &[f32], specs: &[ParameterSpec], device: &Device) -> Self {
        let mut offset = 0;
        let global = specs
            .iter()
            .map(|spec| {
                let len = spec.len();
                let values = flat[offset..offset + len].to_vec();
                offset += len;
                Tensor::from_data(TensorData::new(values, [len]), device)
            })
            .collect();
        Self { global }
    }

    /// `sum_i ||w_i - w_global_i||^2` over all parameters of `model`, differentiable in `model`.
    pub(crate) fn squared_distance(&self, model: &QuantileMlp) -> Option<Tensor<1>> {
        let mut visitor = Distance {
            global: &self.global,
            index: 0,
            total: None,
        };
        model.visit(&mut visitor);
        visitor.total
    }
}

struct Distance<'a> {
    global: &'a [Tensor<1>],
    index: usize,
    total: Option<Tensor<1>>,
}

impl ModuleVisitor for Distance<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let Some(global) = self.global.get(self.index) else {
            return;
        };
        self.index += 1;
        let value = param.val();
        let len = value.shape().num_elements();
        let term = (value.reshape([len]) - global.clone()).square().sum();
        self.total = Some(match self.total.take() {
            Some(total) => total + term,
            None => term,
        });
    }
}
