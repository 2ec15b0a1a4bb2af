//! One flat `Vec<f32>` of all parameters, the currency of federated averaging.
//!
//! Order (fixed, and the same as `ForecasterConfig::parameter_specs`): for each hidden layer
//! `i` in input-to-output order, then the head: `weight` `[fan_in, fan_out]` row-major, then
//! `bias` `[fan_out]`. It is the order in which burn's derived `Module::visit` walks the
//! struct fields (`hidden` as a Vec by index, then `head`; in `Linear`, `weight` then `bias`),
//! and a test pins it against `parameter_specs`.

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::{Device, Tensor, TensorData};

use crate::ModelError;
use crate::config::ForecasterConfig;
use crate::network::QuantileMlp;

/// Copies every parameter into one vector, in the documented order.
pub fn to_flat(model: &QuantileMlp) -> Result<Vec<f32>, ModelError> {
    let mut collector = Collector::default();
    model.visit(&mut collector);
    match collector.error {
        Some(error) => Err(error),
        None => Ok(collector.values),
    }
}

/// One parameter tensor with its dotted module path (e.g. `hidden.0.weight`).
#[derive(Clone, Debug, PartialEq)]
pub struct NamedParameter {
    pub name: String,
    pub shape: Vec<usize>,
    pub values: Vec<f32>,
}

/// Every parameter tensor with its name, in flatten order.
pub fn named_parameters(model: &QuantileMlp) -> Result<Vec<NamedParameter>, ModelError> {
    let mut collector = Collector {
        keep_names: true,
        ..Collector::default()
    };
    model.visit(&mut collector);
    if let Some(error) = collector.error {
        return Err(error);
    }
    let mut out = Vec::with_capacity(collector.named.len());
    let mut offset = 0;
    for (name, shape) in collector.named {
        let len: usize = shape.iter().product();
        out.push(NamedParameter {
            name,
            shape,
            values: collector.values[offset..offset + len].to_vec(),
        });
        offset += len;
    }
    Ok(out)
}

/// Builds the network of `config` on `device` and loads `flat` into it bit-exactly.
pub fn from_flat(
    config: &ForecasterConfig,
    flat: &[f32],
    device: &Device,
) -> Result<QuantileMlp, ModelError> {
    let expected = config.num_params();
    if flat.len() != expected {
        return Err(ModelError::ParameterCount {
            expected,
            actual: flat.len(),
        });
    }
    load_flat(config.init(device)?, flat)
}

/// Overwrites the parameters of `model` with `flat`, keeping parameter ids (so an optimizer's
/// state still applies) and each tensor's gradient tracking.
pub fn load_flat(model: QuantileMlp, flat: &[f32]) -> Result<QuantileMlp, ModelError> {
    let expected = model.num_params();
    if flat.len() != expected {
        return Err(ModelError::ParameterCount {
            expected,
            actual: flat.len(),
        });
    }
    let mut loader = Loader { flat, cursor: 0 };
    Ok(model.map(&mut loader))
}

#[derive(Default)]
struct Collector {
    values: Vec<f32>,
    keep_names: bool,
    path: Vec<String>,
    named: Vec<(String, Vec<usize>)>,
    error: Option<ModelError>,
}

impl ModuleVisitor for Collector {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let tensor = param.val();
        if self.keep_names {
            self.named
                .push((self.path.join("."), tensor.shape().to_vec()));
        }
        match tensor.into_data().try_into_vec::<f32>() {
            Ok(values) => self.values.extend_from_slice(&values),
            Err(e) => {
                self.error
                    .get_or_insert(ModelError::TensorData(format!("{e:?}")));
            }
        }
    }
}

struct Loader<'a> {
    flat: &'a [f32],
    cursor: usize,
}

impl ModuleMapper for Loader<'_> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let shape = param.shape();
        let len = shape.num_elements();
        // Lengths were checked against `num_params` before mapping, so this slice is in range.
        let values = self.flat[self.cursor..self.cursor + len].to_vec();
        self.cursor += len;
        param.map(|tensor| {
            let device = tensor.device();
            let require_grad = tensor.is_require_grad();
            Tensor::from_data(TensorData::new(values, shape), &device)
                .set_require_grad(require_grad)
        })
    }
}
