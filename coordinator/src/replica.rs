//! Read-only forecast replicas: stateless processes serving `gridfed.forecast.v1.Forecast`
//! (forecasts and board queries) from the PostgreSQL a coordinator writes, so that market
//! engines querying around the clock never queue behind rounds.
//!
//! A replica holds no state of its own and no signing key: it resolves references in the
//! shared registry tables on every request and serves only versions whose manifest the
//! coordinator signed, verified under the coordinator's public key from its own config (a
//! tampered database cannot make it serve unsigned weights). Reads are not cached across
//! requests except immutable loaded versions (keyed by manifest id), so an alias moved by a
//! promote is served by every replica from the next request that starts after the promote's
//! transaction commits: the staleness bound is zero. A version becomes visible to replicas
//! once the coordinator signs it (within one coordinator tick, 50 ms, of settling).
//! Publishing to the board and model downloads need the coordinator (participants are
//! authenticated there) and are refused here with `FailedPrecondition`.
//!
//! ```toml
//! listen = "0.0.0.0:7500"
//! coordinator_public_key = "…64 hex digits, from `gridfed coordinator public-key`…"
//! [tls]
//! cert = "tls/server.pem"
//! key = "tls/server.key"
//! [storage]
//! backend = "postgres"
//! url = "postgres://gridfed:secret@db.internal:5432/gridfed"
//! ```

use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tracing::info;

use crate::config::{TlsFiles, transport_of};
use crate::registry::Registry;
use crate::storage::{Storage, StorageConfig};
use crate::tls::{ServerIdentity, Transport};
use crate::{CoordinatorError, board, forecast};

/// `gridfed coordinator replica --config replica.toml`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplicaConfig {
    /// gRPC address (used by the CLI; [`serve_forecast_replica`] takes a bound listener).
    #[serde(default = "default_listen")]
    pub listen: String,
    /// The coordinator's Ed25519 public key, hex (`gridfed coordinator public-key`).
    pub coordinator_public_key: String,
    pub tls: Option<TlsFiles>,
    /// Serve plaintext HTTP/2 instead of TLS: tests only, logged as a warning.
    #[serde(default)]
    pub insecure_plaintext: bool,
    /// In-process runs: an identity already in memory; used instead of `tls`.
    #[serde(skip)]
    pub tls_identity: Option<ServerIdentity>,
    /// The coordinator's storage: PostgreSQL (redb files belong to one process).
    pub storage: StorageConfig,
    /// Tokens that read the forecast board here (see the coordinator's `board_reader_tokens`;
    /// participants' signed own-site reads go to the coordinator, which holds their keys).
    #[serde(default)]
    pub board_reader_tokens: Vec<String>,
}

fn default_listen() -> String {
    "127.0.0.1:7500".into()
}

impl ReplicaConfig {
    /// A plaintext replica on `listen` (tests and loopback benchmarks).
    pub fn insecure_plaintext(
        listen: &str,
        coordinator_key: [u8; 32],
        storage: StorageConfig,
    ) -> Self {
        Self {
            listen: listen.into(),
            coordinator_public_key: hex::encode(coordinator_key),
            tls: None,
            insecure_plaintext: true,
            tls_identity: None,
            storage,
            board_reader_tokens: Vec::new(),
        }
    }

    pub fn from_toml(text: &str) -> Result<Self, CoordinatorError> {
        let config: Self =
            toml::from_str(text).map_err(|e| CoordinatorError::Config(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), CoordinatorError> {
        self.coordinator_key()?;
        crate::config::check_board_reader_tokens(&self.board_reader_tokens)?;
        match &self.storage {
            StorageConfig::Postgres { .. } => self.storage.validate(),
            StorageConfig::Redb => Err(CoordinatorError::Config(
                "storage.backend: a forecast replica reads the coordinator's PostgreSQL; redb \
                 files belong to the coordinator process alone (set backend = \"postgres\")"
                    .into(),
            )),
        }
    }

    pub fn coordinator_key(&self) -> Result<[u8; 32], CoordinatorError> {
        let bad = |why: &str| {
            CoordinatorError::Config(format!(
                "coordinator_public_key: {why} (64 hex digits, from `gridfed coordinator \
                 public-key`)"
            ))
        };
        let bytes = hex::decode(self.coordinator_public_key.trim()).map_err(|_| bad("not hex"))?;
        let key: [u8; 32] = bytes.try_into().map_err(|_| bad("not 32 bytes"))?;
        ed25519_dalek::VerifyingKey::from_bytes(&key).map_err(|_| bad("not an Ed25519 key"))?;
        Ok(key)
    }

    pub fn transport(&self) -> Result<Transport, CoordinatorError> {
        transport_of(
            self.tls_identity.as_ref(),
            self.tls.as_ref(),
            self.insecure_plaintext,
        )
    }
}

/// Serves forecasts and board queries on `listener` until `shutdown` resolves.
pub async fn serve_forecast_replica(
    listener: TcpListener,
    config: ReplicaConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), CoordinatorError> {
    config.validate()?;
    let transport = config.transport()?;
    let key = config.coordinator_key()?;
    let storage_config = config.storage.clone();
    let (registry, board) = tokio::task::spawn_blocking(move || {
        // Nothing is read from or written to a data directory with PostgreSQL storage.
        let storage = Storage::open(&storage_config, Path::new("."))?;
        let registry = Registry::reader(&storage, key)
            .map_err(|e| CoordinatorError::Store(format!("opening the registry: {e}")))?;
        let board = board::Board::in_storage(&storage)
            .map_err(|e| CoordinatorError::Store(format!("opening the board: {e}")))?;
        Ok::<_, CoordinatorError>((registry, board))
    })
    .await
    .map_err(|e| CoordinatorError::Store(format!("opening storage: {e}")))??;
    let service =
        proto::forecast::forecast_server::ForecastServer::new(forecast::ForecastService::replica(
            Arc::new(registry),
            Arc::new(board),
            config.board_reader_tokens.clone(),
        ))
        .max_decoding_message_size(proto::MAX_MESSAGE_BYTES);
    info!(addr = ?listener.local_addr().ok(), tls = matches!(transport, Transport::Tls(_)),
        "forecast replica serving");
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    crate::server_builder(&transport)?
        .serve_with_incoming_shutdown(service, incoming, shutdown)
        .await
        .map_err(|e| CoordinatorError::Config(format!("gRPC server: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";

    #[test]
    fn config_needs_postgres_and_a_valid_key() {
        let base = "insecure_plaintext = true\n";
        let ok = format!(
            "{base}coordinator_public_key = \"{KEY}\"\n[storage]\nbackend = \"postgres\"\nurl = \"postgres://u:p@h/db\"\n"
        );
        let config = ReplicaConfig::from_toml(&ok).unwrap();
        assert_eq!(config.listen, "127.0.0.1:7500");
        assert_eq!(config.transport().unwrap(), Transport::InsecurePlaintext);

        let redb =
            format!("{base}coordinator_public_key = \"{KEY}\"\n[storage]\nbackend = \"redb\"\n");
        let err = ReplicaConfig::from_toml(&redb).unwrap_err().to_string();
        assert!(err.contains("storage.backend"), "{err}");

        let short = ok.replace(KEY, "abcd");
        let err = ReplicaConfig::from_toml(&short).unwrap_err().to_string();
        assert!(
            err.contains("coordinator_public_key: not 32 bytes"),
            "{err}"
        );

        let typo = format!("listen_addr = \"x\"\n{ok}");
        assert!(ReplicaConfig::from_toml(&typo).is_err());
    }
}
