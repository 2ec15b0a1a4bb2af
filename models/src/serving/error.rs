//! Why a forecast request was refused: one variant per problem, each naming the field.

use datasets::{DatasetError, Resolution, SiteKind, Target};

use crate::ModelError;

/// Everything [`super::ServingModel`] refuses, so the forecast service can answer a bad
/// request with a precise `InvalidArgument` (and a bad model version with an internal error).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServingError {
    /// The serving spec does not describe a model this build can serve.
    #[error("invalid serving spec: {0}")]
    InvalidSpec(String),
    #[error("the model forecasts {model:?}, the request asks for {request:?}")]
    TargetMismatch { model: Target, request: Target },
    #[error("a {kind:?} site has no {target:?} to forecast")]
    SiteLacksTarget { kind: SiteKind, target: Target },
    #[error("site.{field}: {reason}")]
    InvalidSite { field: &'static str, reason: String },
    #[error("the model runs on a {model} grid, the request is on {request}")]
    ResolutionMismatch {
        model: Resolution,
        request: Resolution,
    },
    /// A covariate the model was not trained with: its features would differ from training.
    #[error("covariate `{name}` is not one the model reads (it reads: {expected})")]
    UnknownCovariate { name: String, expected: String },
    #[error(
        "the model reads covariate `{name}`, the request's future covariates lack it (a site \
         with no such feed at all declares it in absent_covariates)"
    )]
    MissingCovariate { name: &'static str },
    #[error("covariate `{name}` is given twice (or given and declared absent)")]
    DuplicateCovariate { name: String },
    #[error(
        "history holds {have} steps, the model needs {need} steps ({hours} h) of {resolution} \
         data ending just before the origin"
    )]
    HistoryTooShort {
        have: usize,
        need: usize,
        hours: f64,
        resolution: Resolution,
    },
    #[error("{field}[{row}] is not finite ({value})")]
    NonFinite {
        field: String,
        row: usize,
        value: f64,
    },
    #[error("{field}[{row}] = {value}: {reason}")]
    Implausible {
        field: String,
        row: usize,
        value: f64,
        reason: String,
    },
    #[error("{field} has {len} values for {expected} timestamps")]
    LengthMismatch {
        field: String,
        len: usize,
        expected: usize,
    },
    #[error("{field}[{row}] = {unix_s} is not on the model's {resolution} grid")]
    OffGrid {
        field: &'static str,
        row: usize,
        unix_s: i64,
        resolution: Resolution,
    },
    #[error("{field}[{row}] = {unix_s} is not after the previous timestamp {previous}")]
    NotIncreasing {
        field: &'static str,
        row: usize,
        unix_s: i64,
        previous: i64,
    },
    /// Gaps would leave context steps or horizon covariates unknown; nothing is filled in.
    #[error("{field}[{row}] = {unix_s}: gap, expected the next {resolution} step {expected}")]
    Gap {
        field: &'static str,
        row: usize,
        unix_s: i64,
        expected: i64,
        resolution: Resolution,
    },
    #[error("origin {origin_unix_s} is not on the model's {resolution} grid")]
    OriginOffGrid {
        origin_unix_s: i64,
        resolution: Resolution,
    },
    #[error(
        "history must end one step before the origin {origin_unix_s}, it ends at {last_unix_s}"
    )]
    HistoryNotAtOrigin {
        last_unix_s: i64,
        origin_unix_s: i64,
    },
    #[error(
        "future covariates must start at the origin {origin_unix_s}, they start at {first_unix_s}"
    )]
    FutureNotAtOrigin {
        first_unix_s: i64,
        origin_unix_s: i64,
    },
    #[error("horizon of {requested} steps requested, the model forecasts 1 to {max} steps")]
    HorizonOutOfRange { requested: usize, max: usize },
    /// The network reads the covariates of every step of its own horizon, even when the
    /// request asks for fewer steps.
    #[error(
        "future covariates cover {have} steps from the origin, the model reads {need} (its full horizon)"
    )]
    FutureTooShort { have: usize, need: usize },
    #[error("site_normalization: {0}")]
    InvalidNormalization(String),
    /// The site's own series cannot make a request (no target column, origin outside it).
    #[error("site series: {0}")]
    Series(String),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Dataset(#[from] DatasetError),
}
