//! Why a registry or forecast operation failed. The gRPC shells map each variant to one status
//! in `registry::grpc::status_of`.

use crate::CoordinatorError;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    // --- the caller's fault ---
    #[error("operator token refused")]
    BadOperatorToken,
    #[error("no operator token is configured on this coordinator (`operator_tokens`)")]
    NoOperatorToken,
    #[error("model spec: {0}")]
    SpecSyntax(String),
    #[error("model spec field `{field}`: {reason}")]
    Spec { field: String, reason: String },
    #[error("invalid request field `{field}`: {reason}")]
    Request { field: &'static str, reason: String },
    #[error("model `{0}` is already published")]
    AlreadyPublished(String),
    #[error("tag `{0}` is already used by another federation")]
    TagTaken(String),
    #[error("no model `{0}`")]
    UnknownModel(String),
    #[error("model `{model}` has no version `{version}`")]
    UnknownVersion { model: String, version: String },
    #[error("model `{model}` has no alias `{alias}`")]
    UnknownAlias { model: String, alias: String },
    #[error("alias `{alias}` of model `{model}` has no earlier version to roll back to")]
    NothingToRollBack { model: String, alias: String },

    // --- integrity: refuse to use what does not verify ---
    #[error("model `{model}` version {version}: {reason}; refusing to load it")]
    Tampered {
        model: String,
        version: u64,
        reason: String,
    },
    #[error("manifest does not verify: {0}")]
    BadManifest(String),

    // --- ours ---
    #[error("model library: {0}")]
    Model(#[from] models::ModelError),
    #[error(transparent)]
    Coordinator(#[from] CoordinatorError),
}

impl RegistryError {
    pub(crate) fn spec(field: impl Into<String>, reason: impl Into<String>) -> Self {
        RegistryError::Spec {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

macro_rules! via_coordinator {
    ($($t:ty),*) => {$(
        impl From<$t> for RegistryError {
            fn from(e: $t) -> Self {
                CoordinatorError::from(e).into()
            }
        }
    )*};
}
via_coordinator!(crate::storage::StorageError, serde_json::Error);
