//! Where the coordinator keeps its state: one key-value contract, two engines.
//!
//! Everything the coordinator keeps (enrollments, federations and their in-flight rounds, model
//! versions, published models, signed manifests, aliases, the forecast board) is a JSON value
//! under a string key in one of a few [`Table`]s, read by key or by key prefix in key order, and
//! changed in transactions ([`Kv::transact`]) so that a multi-record change is all or nothing.
//! Weights are content-addressed blobs ([`crate::artifacts::ArtifactStore`]).
//!
//! - [`StorageConfig::Redb`] (default): embedded redb files under the data directory; one
//!   process owns them. The right choice for a pilot microgrid.
//! - [`StorageConfig::Postgres`]: an existing PostgreSQL, shared by several coordinator and
//!   forecast-service processes. Transactions run at SERIALIZABLE isolation and are retried on
//!   serialization failures, so a read-check-write (a round's commit, a board publish) is a
//!   compare-and-set across processes: two coordinators never both commit the same round.
//!
//! The stores built on this ([`crate::store::StateStore`], the registry's and the board's)
//! hold their logic once; the engines only move bytes.

pub mod lease;
pub mod postgres;
mod raw;
mod redb;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::CoordinatorError;
use crate::artifacts::{ArtifactStore, LocalArtifacts};

pub use self::postgres::{PgArtifacts, PgPool};

/// The coordinator's tables. Keys within a table are ordered bytewise.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Table {
    Participants,
    Federations,
    Versions,
    Rounds,
    Models,
    Manifests,
    Aliases,
    SiteForecasts,
    /// Versions whose weight artifact failed its digest check (registry integrity).
    Damage,
}

impl Table {
    pub const ALL: [Table; 9] = [
        Table::Participants,
        Table::Federations,
        Table::Versions,
        Table::Rounds,
        Table::Models,
        Table::Manifests,
        Table::Aliases,
        Table::SiteForecasts,
        Table::Damage,
    ];

    /// The table's name in either engine (redb table name, PostgreSQL `records.tbl`).
    pub fn name(self) -> &'static str {
        match self {
            Table::Participants => "participants",
            Table::Federations => "federations",
            Table::Versions => "versions",
            Table::Rounds => "rounds",
            Table::Models => "models",
            Table::Manifests => "manifests",
            Table::Aliases => "aliases",
            Table::SiteForecasts => "site_forecasts",
            Table::Damage => "damage",
        }
    }
}

/// `[storage]` of the coordinator config.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "backend", rename_all = "snake_case", deny_unknown_fields)]
pub enum StorageConfig {
    /// redb files under the data directory (`state.redb`, `registry.redb`, `board.redb`) and
    /// weights as files under `artifacts/`.
    #[default]
    Redb,
    /// One PostgreSQL database for state and weights.
    Postgres {
        /// libpq-style URL or key-value string, e.g.
        /// `postgres://gridfed:secret@127.0.0.1:5432/gridfed`.
        url: String,
        /// Schema holding gridfed's tables (several deployments can share a database).
        #[serde(default = "default_schema")]
        schema: String,
        /// Most connections this process opens.
        #[serde(default = "default_pool")]
        max_connections: usize,
    },
}

fn default_schema() -> String {
    "gridfed".into()
}

fn default_pool() -> usize {
    8
}

/// Environment variable naming the PostgreSQL URL of the tests (and of in-process runs under
/// [`TEST_STORAGE_ENV`]` = postgres`).
pub const TEST_POSTGRES_ENV: &str = "GRIDFED_TEST_POSTGRES";

/// Environment variable choosing the engine of in-process configs
/// ([`crate::CoordinatorConfig::new`]: tests, the demo, benchmarks): `redb` (default) or
/// `postgres` (at [`TEST_POSTGRES_ENV`]). CI runs the suite once with each.
pub const TEST_STORAGE_ENV: &str = "GRIDFED_TEST_STORAGE";

/// The PostgreSQL URL that storage tests run against ([`TEST_POSTGRES_ENV`]). Unset, a test
/// skips with a loud message, except under CI (`CI` set), where the database is required and
/// its absence fails the test.
pub fn test_postgres_url(test: &str) -> Option<String> {
    match std::env::var(TEST_POSTGRES_ENV) {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var_os("CI").is_none(),
                "{test}: {TEST_POSTGRES_ENV} is unset under CI; .ci/run starts PostgreSQL and sets it"
            );
            eprintln!(
                "SKIPPED {test}: set {TEST_POSTGRES_ENV}=postgres://... to run it against PostgreSQL"
            );
            None
        }
    }
}

impl StorageConfig {
    /// A PostgreSQL config with default schema and pool size.
    pub fn postgres(url: impl Into<String>) -> Self {
        StorageConfig::Postgres {
            url: url.into(),
            schema: default_schema(),
            max_connections: default_pool(),
        }
    }

    /// The storage for an in-process coordinator under `data_dir`: redb, or, when
    /// [`TEST_STORAGE_ENV`] is `postgres`, PostgreSQL at [`TEST_POSTGRES_ENV`] in a schema
    /// named after `data_dir` (so a restarted coordinator on the same directory finds its
    /// state, and parallel tests with their own temporary directories never meet).
    pub fn for_in_process(data_dir: &Path) -> Self {
        if std::env::var(TEST_STORAGE_ENV).as_deref() != Ok("postgres") {
            return StorageConfig::Redb;
        }
        let digest = proto::chunk::sha256(data_dir.to_string_lossy().as_bytes());
        StorageConfig::Postgres {
            // Empty when unset: opening then fails naming `storage.url`.
            url: std::env::var(TEST_POSTGRES_ENV).unwrap_or_default(),
            schema: format!("t_{}", hex::encode(&digest[..10])),
            max_connections: 4,
        }
    }

    pub fn validate(&self) -> Result<(), CoordinatorError> {
        match self {
            StorageConfig::Redb => Ok(()),
            StorageConfig::Postgres {
                url,
                schema,
                max_connections,
            } => {
                if url.trim().is_empty() {
                    return Err(CoordinatorError::Config(format!(
                        "storage.url is empty (in-process runs take it from {TEST_POSTGRES_ENV})"
                    )));
                }
                if *max_connections == 0 || *max_connections > 256 {
                    return Err(CoordinatorError::Config(format!(
                        "storage.max_connections = {max_connections}: must be 1..=256"
                    )));
                }
                postgres::check_schema_name(schema)
            }
        }
    }

    pub fn backend_name(&self) -> &'static str {
        match self {
            StorageConfig::Redb => "redb",
            StorageConfig::Postgres { .. } => "postgres",
        }
    }
}

/// Why a storage call failed.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("{0}")]
    Engine(String),
    #[error("stored value under `{table}/{key}` does not parse: {reason}")]
    Corrupt {
        table: &'static str,
        key: String,
        reason: String,
    },
    /// Another process's transaction conflicted with this one (PostgreSQL serialization
    /// failure); retried inside the engine, surfaced only when retries run out.
    #[error("transaction kept conflicting with concurrent writers")]
    Conflict,
    /// A transaction's closure refused to go on (its own error is returned to the caller).
    #[error("transaction aborted")]
    Aborted,
}

impl From<StorageError> for CoordinatorError {
    fn from(e: StorageError) -> Self {
        CoordinatorError::Store(e.to_string())
    }
}

/// The reads and writes of one transaction.
pub trait KvTxn {
    fn get(&mut self, table: Table, key: &str) -> Result<Option<Vec<u8>>, StorageError>;
    /// Entries whose key starts with `prefix`, in key order.
    fn scan(&mut self, table: Table, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StorageError>;
    fn put(&mut self, table: Table, key: &str, value: &[u8]) -> Result<(), StorageError>;
    fn delete(&mut self, table: Table, key: &str) -> Result<(), StorageError>;
}

/// A storage engine.
pub trait KvEngine: Send + Sync {
    fn get(&self, table: Table, key: &str) -> Result<Option<Vec<u8>>, StorageError>;
    fn scan(&self, table: Table, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StorageError>;
    /// Runs `body` in a transaction and commits it if `body` returns `Ok`. The engine may run
    /// `body` again on a conflict with another process (PostgreSQL), so `body` must not have
    /// effects outside the transaction other than through its captured outputs.
    fn transact(
        &self,
        body: &mut (dyn FnMut(&mut dyn KvTxn) -> Result<(), StorageError> + Send),
    ) -> Result<(), StorageError>;
}

/// Typed JSON access to an engine: what the stores use.
#[derive(Clone)]
pub struct Kv {
    engine: Arc<dyn KvEngine>,
}

fn decode<T: DeserializeOwned>(table: Table, key: &str, bytes: &[u8]) -> Result<T, StorageError> {
    serde_json::from_slice(bytes).map_err(|e| StorageError::Corrupt {
        table: table.name(),
        key: key.to_string(),
        reason: e.to_string(),
    })
}

/// Encodes a value for storage (serializing plain data to JSON cannot fail for our types;
/// the error is still reported rather than unwrapped).
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, StorageError> {
    serde_json::to_vec(value).map_err(|e| StorageError::Engine(format!("encoding: {e}")))
}

impl Kv {
    pub fn new(engine: Arc<dyn KvEngine>) -> Self {
        Self { engine }
    }

    pub fn get<T: DeserializeOwned>(
        &self,
        table: Table,
        key: &str,
    ) -> Result<Option<T>, StorageError> {
        match self.engine.get(table, key)? {
            Some(bytes) => Ok(Some(decode(table, key, &bytes)?)),
            None => Ok(None),
        }
    }

    pub fn scan<T: DeserializeOwned>(
        &self,
        table: Table,
        prefix: &str,
    ) -> Result<Vec<T>, StorageError> {
        self.engine
            .scan(table, prefix)?
            .iter()
            .map(|(key, bytes)| decode(table, key, bytes))
            .collect()
    }

    /// Runs `body` as one transaction and returns its result; an `Err` from `body` rolls the
    /// transaction back and is returned as is. `body` may run more than once (see
    /// [`KvEngine::transact`]).
    pub fn transact<R, E>(
        &self,
        mut body: impl FnMut(&mut Txn<'_>) -> Result<R, E> + Send,
    ) -> Result<R, E>
    where
        R: Send,
        E: From<StorageError> + Send,
    {
        let mut outcome: Option<Result<R, E>> = None;
        let engine_result = self.engine.transact(&mut |txn| {
            let mut txn = Txn { inner: txn };
            match body(&mut txn) {
                Ok(r) => {
                    outcome = Some(Ok(r));
                    Ok(())
                }
                Err(e) => {
                    outcome = Some(Err(e));
                    Err(StorageError::Aborted)
                }
            }
        });
        match (engine_result, outcome) {
            (Ok(()), Some(result)) => result,
            (Err(StorageError::Aborted), Some(Err(e))) => Err(e),
            (Err(e), _) => Err(e.into()),
            (Ok(()), None) => Err(StorageError::Engine("transaction did not run".into()).into()),
        }
    }

    /// Writes `puts` and removes `deletes` in one transaction.
    pub fn write(
        &self,
        puts: &[(Table, &str, Vec<u8>)],
        deletes: &[(Table, &str)],
    ) -> Result<(), StorageError> {
        self.transact(|txn| {
            for (table, key, value) in puts {
                txn.put_bytes(*table, key, value)?;
            }
            for (table, key) in deletes {
                txn.delete(*table, key)?;
            }
            Ok::<_, StorageError>(())
        })
    }
}

/// Typed access inside a transaction.
pub struct Txn<'a> {
    inner: &'a mut dyn KvTxn,
}

impl Txn<'_> {
    pub fn get<T: DeserializeOwned>(
        &mut self,
        table: Table,
        key: &str,
    ) -> Result<Option<T>, StorageError> {
        match self.inner.get(table, key)? {
            Some(bytes) => Ok(Some(decode(table, key, &bytes)?)),
            None => Ok(None),
        }
    }

    /// Number of keys starting with `prefix`.
    pub fn count(&mut self, table: Table, prefix: &str) -> Result<usize, StorageError> {
        Ok(self.inner.scan(table, prefix)?.len())
    }

    pub fn put<T: Serialize>(
        &mut self,
        table: Table,
        key: &str,
        value: &T,
    ) -> Result<(), StorageError> {
        self.inner.put(table, key, &encode(value)?)
    }

    pub fn put_bytes(&mut self, table: Table, key: &str, value: &[u8]) -> Result<(), StorageError> {
        self.inner.put(table, key, value)
    }

    pub fn delete(&mut self, table: Table, key: &str) -> Result<(), StorageError> {
        self.inner.delete(table, key)
    }
}

/// The redb file of each store under the data directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreFile {
    State,
    Registry,
    Board,
}

impl StoreFile {
    pub fn file_name(self) -> &'static str {
        match self {
            StoreFile::State => "state.redb",
            StoreFile::Registry => "registry.redb",
            StoreFile::Board => "board.redb",
        }
    }

    pub fn tables(self) -> &'static [Table] {
        match self {
            StoreFile::State => &[
                Table::Participants,
                Table::Federations,
                Table::Versions,
                Table::Rounds,
            ],
            StoreFile::Registry => &[
                Table::Models,
                Table::Manifests,
                Table::Aliases,
                Table::Damage,
            ],
            StoreFile::Board => &[Table::SiteForecasts],
        }
    }
}

/// An opened storage: hands out the stores' [`Kv`]s and the artifact store. With PostgreSQL,
/// every store shares one connection pool.
#[derive(Clone)]
pub struct Storage {
    config: StorageConfig,
    data_dir: PathBuf,
    pool: Option<Arc<PgPool>>,
}

impl Storage {
    /// Opens the configured engine (for PostgreSQL: connects and applies pending schema
    /// migrations). `data_dir` holds the redb files and local artifacts, and in every case the
    /// coordinator's key.
    pub fn open(config: &StorageConfig, data_dir: &Path) -> Result<Self, CoordinatorError> {
        config.validate()?;
        let pool = match config {
            StorageConfig::Redb => None,
            StorageConfig::Postgres {
                url,
                schema,
                max_connections,
            } => Some(Arc::new(PgPool::connect(url, schema, *max_connections)?)),
        };
        Ok(Self {
            config: config.clone(),
            data_dir: data_dir.to_path_buf(),
            pool,
        })
    }

    /// The storage of an in-process coordinator on `data_dir`
    /// ([`StorageConfig::for_in_process`]), for reading what it left once stopped.
    pub fn in_process(data_dir: &Path) -> Result<Self, CoordinatorError> {
        Self::open(&StorageConfig::for_in_process(data_dir), data_dir)
    }

    pub fn config(&self) -> &StorageConfig {
        &self.config
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The PostgreSQL pool, if that is the engine.
    pub fn pool(&self) -> Option<&Arc<PgPool>> {
        self.pool.as_ref()
    }

    /// The key-value store of `file` (for redb, the file under the data directory).
    pub fn kv(&self, file: StoreFile) -> Result<Kv, CoordinatorError> {
        let engine: Arc<dyn KvEngine> = match &self.pool {
            Some(pool) => pool.clone(),
            None => Arc::new(redb::RedbEngine::open(
                &self.data_dir.join(file.file_name()),
                file.tables(),
            )?),
        };
        Ok(Kv::new(engine))
    }

    pub fn artifacts(&self) -> Result<Arc<dyn ArtifactStore>, CoordinatorError> {
        Ok(match &self.pool {
            Some(pool) => Arc::new(PgArtifacts::new(pool.clone())),
            None => Arc::new(LocalArtifacts::open(self.data_dir.join("artifacts"))?),
        })
    }
}

/// A redb-backed [`Kv`] of `tables` in the file at `path` (tools that open one store file).
pub fn redb_kv(path: &Path, tables: &[Table]) -> Result<Kv, CoordinatorError> {
    Ok(Kv::new(Arc::new(redb::RedbEngine::open(path, tables)?)))
}

#[cfg(test)]
pub(crate) mod tests;
