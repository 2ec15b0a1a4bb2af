//! Every way telemetry can be wrong, each naming where.

use std::path::PathBuf;

/// An error in a telemetry or metadata file. Each variant names the file and, where it
/// applies, the column and the (0-based) row so an operator can find the culprit.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DatasetError {
    #[error("{path}: cannot read: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a Parquet file: {reason}")]
    NotParquet { path: PathBuf, reason: String },
    #[error("{path}: missing column `{column}`{hint}")]
    MissingColumn {
        path: PathBuf,
        column: String,
        /// e.g. " (found `load_kW`: column names are case-sensitive)"
        hint: String,
    },
    #[error("{path}: unknown column `{column}`{hint}")]
    UnknownColumn {
        path: PathBuf,
        column: String,
        hint: String,
    },
    #[error("{path}: column `{column}` has type {found}, expected {expected}")]
    WrongType {
        path: PathBuf,
        column: String,
        expected: String,
        found: String,
    },
    #[error("{path}: no target column: need `load_kw` and/or `pv_kw`")]
    NoTarget { path: PathBuf },
    #[error("{path}: column `{column}` row {row}: null not allowed")]
    NullValue {
        path: PathBuf,
        column: String,
        row: usize,
    },
    #[error("{path}: column `timestamp` row {row}: site `{site}`: duplicate timestamp {timestamp}")]
    DuplicateTimestamp {
        path: PathBuf,
        site: String,
        row: usize,
        timestamp: String,
    },
    #[error(
        "{path}: column `timestamp` row {row}: site `{site}`: timestamp {timestamp} is earlier than the previous row's {previous}"
    )]
    NonMonotonicTimestamp {
        path: PathBuf,
        site: String,
        row: usize,
        timestamp: String,
        previous: String,
    },
    #[error("{path}: site `{site}`: {reason}")]
    Resolution {
        path: PathBuf,
        site: String,
        reason: String,
    },
    #[error("{path}: column `{column}` row {row}: non-finite value {value}")]
    NonFinite {
        path: PathBuf,
        column: String,
        row: usize,
        value: f64,
    },
    #[error("{path}: column `{column}` row {row}: impossible value {value}: {reason}")]
    Impossible {
        path: PathBuf,
        column: String,
        row: usize,
        value: f64,
        reason: String,
    },
    #[error("{path}: column `site_id` row {row}: site `{site}` has no metadata entry")]
    UnknownSite {
        path: PathBuf,
        site: String,
        row: usize,
    },
    /// A site whose telemetry appears in two files of one fleet directory.
    #[error("{path}: site `{site}` was already read from {first}")]
    DuplicateSite {
        path: PathBuf,
        site: String,
        first: PathBuf,
    },
    /// A CSV import specification that cannot work (unknown target column, W for a non-power column).
    #[error("{path}: import: {reason}")]
    ImportSpec { path: PathBuf, reason: String },
    /// Parts of one site that cannot be joined on their timestamps.
    #[error("merge: {0}")]
    Merge(String),
    #[error("{path}: {reason}")]
    Metadata { path: PathBuf, reason: String },
    #[error("{path}: row {row}: {reason}")]
    Csv {
        path: PathBuf,
        row: usize,
        reason: String,
    },
    #[error("{path}: cannot write: {reason}")]
    Write { path: PathBuf, reason: String },
    #[error("window: {0}")]
    Window(String),
}

impl DatasetError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        DatasetError::Io {
            path: path.into(),
            source,
        }
    }
}
