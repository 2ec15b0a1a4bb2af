//! Load and PV forecasters for gridfed, trained on CPU.
//!
//! - Baselines: [`persistence`], [`seasonal_naive`] (previous day or week) and hour-of-week
//!   [`Climatology`].
//! - [`RidgeForecaster`]: multi-output ridge regression with residual quantiles.
//! - [`QuantileMlp`]: a burn multi-horizon MLP predicting non-crossing quantiles, trained with
//!   pinball loss and Adam by [`train`] (centralized, early stopping) or [`train_local`]
//!   (local epochs of a federated round, optional FedProx term).
//! - [`to_flat`] / [`from_flat`]: all parameters as one `Vec<f32>` in a fixed order.
//! - Metrics in kW ([`site_errors`], [`ForecastMetrics`]), [`ModelArtifact`] (safetensors +
//!   JSON manifest with sha256), and [`evaluate_fleet`] comparing everything on a fleet.
//!
//! Inputs are `datasets::SampleSet`s. Everything is synchronous; models name no backend in
//! their types and run on burn's ndarray CPU device (autodiff for training).

pub mod artifact;
pub mod baselines;
pub mod config;
pub mod error;
pub mod evaluation;
pub mod flat;
pub mod forecast;
pub mod forecaster;
#[cfg(feature = "gbt")]
pub mod gbt;
pub mod guard;
pub mod holdout;
mod linalg;
mod loss;
pub mod manifest;
pub mod metrics;
pub mod network;
pub mod ridge;
pub mod samples;
pub mod serving;
pub mod training;

pub use artifact::{Lineage, ModelArtifact, ModelManifest, ModelSpec, SiteNormalization};
pub use baselines::{Climatology, Season, hour_of_week, persistence, seasonal_naive};
pub use config::{Activation, ForecasterConfig, ParameterSpec};
pub use error::ModelError;
pub use evaluation::{
    EvaluationReport, EvaluationRow, ModelKind, ModelTiming, TrainingMode, evaluate_fleet,
    score_forecasts,
};
pub use flat::{NamedParameter, from_flat, load_flat, named_parameters, to_flat};
pub use forecast::QuantileForecast;
pub use forecaster::{QuantileForecaster, inference_device, training_device};
pub use guard::{GuardDecision, SiteChoice, guard_site, guarded_forecast};
pub use holdout::{FleetScores, HoldoutScores};
pub use metrics::{ErrorSums, ForecastMetrics, StepSelection, site_errors};
pub use network::QuantileMlp;
pub use ridge::{RidgeConfig, RidgeForecaster};
pub use samples::{ChronologicalSplit, check_samples, chronological_split};
pub use training::{LocalUpdate, TrainedForecaster, TrainingReport, fine_tune, train, train_local};
