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
    #[error("tag `{tag}` is already used by federation `{by}`; set another `tag` in the spec")]
    TagTaken { tag: String, by: String },
    #[error(
        "a federation named `{0}` already runs on this coordinator (from its config); publish the \
         model under another `name`"
    )]
    NameTaken(String),
    #[error("no model `{0}`")]
    UnknownModel(String),
    #[error("model `{model}` has no version `{version}`")]
    UnknownVersion { model: String, version: String },
    #[error("model `{model}` has no alias `{alias}`{}", id_hint(alias))]
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

/// A short hex string was probably meant as a version id: say how long ids must be.
fn id_hint(alias: &str) -> &'static str {
    if !alias.is_empty() && alias.len() < 8 && alias.bytes().all(|b| b.is_ascii_hexdigit()) {
        " (a version id prefix needs at least 8 hex characters)"
    } else {
        ""
    }
}
