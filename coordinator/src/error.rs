//! Why a coordinator operation failed, split by fault: the caller's (bad request, failed
//! authentication, wrong phase) or ours (storage). The gRPC shell maps each to one status in
//! `grpc::status_of`.

use std::path::PathBuf;

/// Errors of the coordinator core.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CoordinatorError {
    // --- authentication (the caller cannot prove who it is) ---
    #[error("missing request authentication")]
    Unauthenticated,
    #[error("unknown participant `{0}`")]
    UnknownParticipant(String),
    #[error("participant `{0}` is revoked")]
    Revoked(String),
    #[error("signature does not verify for participant `{0}`")]
    BadSignature(String),
    #[error(
        "nonce {nonce} of participant `{participant}` is not above {floor}: replayed or reordered call"
    )]
    Replay {
        participant: String,
        nonce: u64,
        floor: u64,
    },
    #[error("enrollment token refused")]
    BadToken,

    // --- the caller is known but not allowed ---
    #[error("participant `{participant}` is not a member of federation `{federation}`")]
    NotMember {
        participant: String,
        federation: String,
    },

    // --- malformed or out-of-place requests ---
    #[error("invalid request: {0}")]
    Invalid(String),
    #[error("no federation `{0}`")]
    UnknownFederation(String),
    #[error("no federation with tag `{0}`")]
    UnknownTag(String),
    #[error("no model version {version} in federation `{federation}`")]
    UnknownVersion { federation: String, version: u64 },
    #[error(transparent)]
    Round(#[from] crate::round::RoundError),
    #[error(transparent)]
    Chunk(#[from] proto::chunk::ChunkError),

    // --- ours ---
    #[error("state store: {0}")]
    Store(String),
    #[error("artifact store at {path}: {source}")]
    Artifact {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("artifact {0} is corrupt (digest mismatch)")]
    CorruptArtifact(String),
    #[error("artifact {0} is missing")]
    MissingArtifact(String),
    #[error("configuration: {0}")]
    Config(String),
    /// Another coordinator on the same database moved the state first (see
    /// [`crate::store::StateStore::commit_version`]).
    #[error("conflict: {0}")]
    Conflict(String),
}

impl From<serde_json::Error> for CoordinatorError {
    fn from(e: serde_json::Error) -> Self {
        CoordinatorError::Store(e.to_string())
    }
}
