//! Why the participant daemon stopped or skipped a round.

/// Errors of the participant daemon.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ParticipantError {
    #[error("configuration: {0}")]
    Config(String),
    /// The coordinator refused this site for good (enrollment token, revoked key, unknown
    /// federation): retrying would not help; the operator must change something.
    #[error("refused by the coordinator: {0}")]
    Refused(String),
    #[error("{path}: {source}")]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("site data: {0}")]
    Data(#[from] datasets::DatasetError),
    #[error("local training: {0}")]
    Model(#[from] models::ModelError),
    #[error("secure aggregation: {0}")]
    Crypto(String),
    #[error("cannot reach the coordinator: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// The TLS handshake failed: an untrusted or mismatched certificate, or a coordinator not
    /// speaking TLS. Not transient: retrying cannot fix the configuration.
    #[error("TLS with the coordinator: {0}")]
    Tls(String),
    #[error("coordinator refused: {0}")]
    Status(#[from] tonic::Status),
    #[error("protocol: {0}")]
    Protocol(String),
    /// A fetched model version failed verification (signature, weights, config): not used.
    #[error("refusing the fetched model: {0}")]
    UntrustedModel(String),
    /// The site's own forecast could not be computed (missing data, origin, horizon).
    #[error("site forecast: {0}")]
    Forecast(String),
    #[error(transparent)]
    Chunk(#[from] proto::chunk::ChunkError),
}

impl ParticipantError {
    /// Worth retrying after a reconnect (the coordinator is down, restarting or busy).
    /// A refusal that no retry can fix (`gridfed participant run` exits with status 3 on it, so
    /// a supervisor can tell it from a crash: systemd `RestartPreventExitStatus=3`).
    pub fn is_permanent_refusal(&self) -> bool {
        match self {
            ParticipantError::Refused(_) | ParticipantError::Config(_) => true,
            ParticipantError::Status(s) => {
                matches!(
                    s.code(),
                    tonic::Code::PermissionDenied | tonic::Code::NotFound
                )
            }
            _ => false,
        }
    }

    /// The nonce floor a coordinator named when it refused a request's nonce as not fresh.
    pub fn nonce_floor(&self) -> Option<u64> {
        match self {
            ParticipantError::Status(s) if s.code() == tonic::Code::Unauthenticated => s
                .metadata()
                .get(proto::auth::NONCE_FLOOR_METADATA)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok()),
            _ => None,
        }
    }

    pub fn is_transient(&self) -> bool {
        match self {
            ParticipantError::Transport(_) => true,
            ParticipantError::Status(s) => matches!(
                s.code(),
                tonic::Code::Unavailable
                    | tonic::Code::Unknown
                    | tonic::Code::DeadlineExceeded
                    | tonic::Code::Aborted
                    | tonic::Code::Cancelled
                    | tonic::Code::Internal
                    | tonic::Code::FailedPrecondition
                    | tonic::Code::Unauthenticated
            ),
            _ => false,
        }
    }
}
