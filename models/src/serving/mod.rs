//! Live forecasts for market engines: one site, one origin, quantiles in kW.
//!
//! A [`ServingModel`] is a trained quantile MLP plus its [`ServingSpec`], the small JSON that
//! a model version carries so that a forecast server, which never sees the training data,
//! rebuilds exactly the features the model was trained on: target, grid, context and horizon,
//! the known-future covariates used, how the target is normalized, and the feature layout.
//! [`ServingModel::forecast`] checks a [`ForecastRequest`] (every refusal a typed
//! [`ServingError`] naming the field and row), lays it out as a regular series, builds the
//! input row with the same `datasets` code as training (`datasets::window::input_row`) and
//! returns a [`QuantileForecast`]. Synchronous and free of I/O; the gRPC service wraps it.

mod error;
mod model;
mod request;
mod spec;

pub use error::ServingError;
pub use model::{QuantileForecast, ServingModel};
pub use request::{
    CovariateSeries, ForecastRequest, FutureCovariates, History, ServedSite, origin_index,
};
pub use spec::{
    Covariate, LOAD_NORMALIZATION_DAYS, NormalizationRule, SERVING_FORMAT_VERSION, ServingSpec,
};
