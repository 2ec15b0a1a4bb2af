//! The one error type of the `models` crate.

use std::path::PathBuf;

/// Everything that can go wrong while fitting, training, evaluating or persisting a forecaster.
///
/// Bad input (a config that cannot build a network, a sample set with inconsistent lengths, a
/// tampered artifact) is reported here and never panics.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ModelError {
    #[error("invalid forecaster config: {0}")]
    InvalidConfig(String),
    #[error("invalid sample set: {0}")]
    InvalidSamples(String),
    #[error("{method} needs a context of at least {needed} steps, the samples have {context}")]
    ContextTooShort {
        method: &'static str,
        needed: usize,
        context: usize,
    },
    #[error("sample layout mismatch: {0}")]
    LayoutMismatch(String),
    #[error("flat parameter vector has {actual} values, the architecture needs {expected}")]
    ParameterCount { expected: usize, actual: usize },
    #[error("site `{0}` was not in the training data")]
    UnknownSite(String),
    #[error("ridge normal equations are not positive definite (lambda {lambda})")]
    NotPositiveDefinite { lambda: f64 },
    #[error("training diverged: non-finite loss in epoch {epoch}")]
    Diverged { epoch: usize },
    #[error("tensor data: {0}")]
    TensorData(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: malformed manifest: {source}")]
    Manifest {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{path}: weights sha256 is {actual}, the manifest expects {expected}")]
    HashMismatch {
        path: PathBuf,
        expected: String,
        actual: String,
    },
    #[error("artifact spec mismatch: {0}")]
    SpecMismatch(String),
    #[error("{path}: unreadable safetensors weights: {reason}")]
    Weights { path: PathBuf, reason: String },
    #[error(transparent)]
    Dataset(#[from] datasets::DatasetError),
}

impl ModelError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ModelError::Io {
            path: path.into(),
            source,
        }
    }
}
