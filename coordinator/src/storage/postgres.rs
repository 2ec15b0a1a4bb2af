//! The shared engine: PostgreSQL through the synchronous `postgres` client.
//!
//! Schema (versioned migrations, applied under an advisory lock so that processes starting
//! together do not race): `records(tbl, key, value)` with keys in the "C" collation so key order
//! is byte order as in redb, `blobs(digest, bytes)` for content-addressed weights, and
//! `schema_migrations`. Every transaction runs at SERIALIZABLE isolation; a serialization
//! failure or deadlock reruns the transaction body, so a body's read-check-write is a
//! compare-and-set against every other process on the database.
//!
//! The client blocks on its own small runtime: call it from plain threads or
//! `spawn_blocking`, as the coordinator's synchronous core already is.

use std::str::FromStr;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use postgres::error::SqlState;
use postgres::{Client, IsolationLevel, NoTls, Statement};

use super::{KvEngine, KvTxn, StorageError, Table};
use crate::CoordinatorError;
use crate::artifacts::{ArtifactStore, check_digest};

/// Schema migrations, in order. Never edit a released one: add the next.
const MIGRATIONS: &[(i32, &str)] = &[(
    1,
    "CREATE TABLE records (
         tbl   text COLLATE \"C\" NOT NULL,
         key   text COLLATE \"C\" NOT NULL,
         value bytea NOT NULL,
         PRIMARY KEY (tbl, key)
     );
     CREATE TABLE blobs (
         digest     text PRIMARY KEY,
         bytes      bytea NOT NULL,
         created_at timestamptz NOT NULL DEFAULT now()
     );",
)];

/// The newest schema this build knows.
pub const SCHEMA_VERSION: i32 = MIGRATIONS[MIGRATIONS.len() - 1].0;

/// Advisory lock key taken while migrating ("gridfed" in ASCII).
const MIGRATION_LOCK: i64 = 0x0067_7269_6466_6564;

/// Attempts of a transaction that keeps meeting concurrent writers.
const MAX_ATTEMPTS: u32 = 64;

/// Above every character a key can hold: `prefix || KEY_END` bounds a prefix scan.
const KEY_END: char = '\u{10FFFF}';

pub(super) fn check_schema_name(schema: &str) -> Result<(), CoordinatorError> {
    let ok = !schema.is_empty()
        && schema.len() <= 63
        && schema
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b == b'_')
        && schema
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(CoordinatorError::Config(format!(
            "storage.schema `{schema}`: use 1 to 63 lowercase letters, digits and `_`, not \
             starting with a digit"
        )))
    }
}

fn pg_err(context: &str) -> impl Fn(postgres::Error) -> StorageError + '_ {
    move |e| {
        let retriable = e.code().is_some_and(|c| {
            *c == SqlState::T_R_SERIALIZATION_FAILURE || *c == SqlState::T_R_DEADLOCK_DETECTED
        });
        if retriable {
            StorageError::Conflict
        } else {
            StorageError::Engine(format!("postgres {context}: {}", error_text(&e)))
        }
    }
}

/// The server's message where there is one (the client's `Display` says only "db error").
fn error_text(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => e.to_string(),
    }
}

/// One connection with its prepared statements.
struct PgConn {
    client: Client,
    get: Statement,
    scan: Statement,
    put: Statement,
    delete: Statement,
}

impl PgConn {
    fn open(config: &postgres::Config, schema: &str) -> Result<Self, StorageError> {
        let mut client = config.connect(NoTls).map_err(pg_err("connect"))?;
        client
            .batch_execute(&format!("SET search_path TO \"{schema}\""))
            .map_err(pg_err("search_path"))?;
        let get = client
            .prepare("SELECT value FROM records WHERE tbl = $1 AND key = $2")
            .map_err(pg_err("prepare"))?;
        let scan = client
            .prepare(
                "SELECT key, value FROM records WHERE tbl = $1 AND key >= $2 AND key < $3 \
                 ORDER BY key",
            )
            .map_err(pg_err("prepare"))?;
        let put = client
            .prepare(
                "INSERT INTO records (tbl, key, value) VALUES ($1, $2, $3) \
                 ON CONFLICT (tbl, key) DO UPDATE SET value = EXCLUDED.value",
            )
            .map_err(pg_err("prepare"))?;
        let delete = client
            .prepare("DELETE FROM records WHERE tbl = $1 AND key = $2")
            .map_err(pg_err("prepare"))?;
        Ok(Self {
            client,
            get,
            scan,
            put,
            delete,
        })
    }
}

/// A bounded pool of connections to one schema; also the [`KvEngine`] of every store.
pub struct PgPool {
    config: postgres::Config,
    schema: String,
    max: usize,
    idle: Mutex<PoolState>,
    freed: Condvar,
}

struct PoolState {
    idle: Vec<PgConn>,
    open: usize,
}

impl std::fmt::Debug for PgPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgPool")
            .field("schema", &self.schema)
            .field("max", &self.max)
            .finish_non_exhaustive()
    }
}

impl PgPool {
    /// Connects, creates the schema if missing and applies pending migrations.
    pub fn connect(url: &str, schema: &str, max: usize) -> Result<Self, CoordinatorError> {
        check_schema_name(schema)?;
        let config = postgres::Config::from_str(url)
            .map_err(|e| CoordinatorError::Config(format!("storage.url: {e}")))?;
        let pool = Self {
            config,
            schema: schema.to_string(),
            max: max.max(1),
            idle: Mutex::new(PoolState {
                idle: Vec::new(),
                open: 0,
            }),
            freed: Condvar::new(),
        };
        off_runtime(|| pool.migrate())?;
        Ok(pool)
    }

    /// Drops `schema` and everything in it (tests and tools that start from nothing).
    pub fn drop_schema(url: &str, schema: &str) -> Result<(), CoordinatorError> {
        check_schema_name(schema)?;
        let config = postgres::Config::from_str(url)
            .map_err(|e| CoordinatorError::Config(format!("storage.url: {e}")))?;
        off_runtime(|| {
            let mut client = config
                .connect(NoTls)
                .map_err(|e| CoordinatorError::Store(error_text(&e)))?;
            client
                .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
                .map_err(|e| CoordinatorError::Store(error_text(&e)))
        })
    }

    pub fn schema(&self) -> &str {
        &self.schema
    }

    fn migrate(&self) -> Result<(), CoordinatorError> {
        let mut client = self.config.connect(NoTls).map_err(|e| {
            CoordinatorError::Config(format!(
                "storage: cannot connect to PostgreSQL: {}",
                error_text(&e)
            ))
        })?;
        let schema = &self.schema;
        let mut tx = client.transaction().map_err(pg_err("migrate"))?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .map_err(pg_err("migration lock"))?;
        tx.batch_execute(&format!(
            "CREATE SCHEMA IF NOT EXISTS \"{schema}\";
             SET LOCAL search_path TO \"{schema}\";
             CREATE TABLE IF NOT EXISTS schema_migrations (
                 version    integer PRIMARY KEY,
                 applied_at timestamptz NOT NULL DEFAULT now()
             );"
        ))
        .map_err(pg_err("schema"))?;
        let current: i32 = tx
            .query_one(
                "SELECT coalesce(max(version), 0) FROM schema_migrations",
                &[],
            )
            .map_err(pg_err("schema version"))?
            .get(0);
        if current > SCHEMA_VERSION {
            return Err(CoordinatorError::Config(format!(
                "storage: schema `{schema}` is at version {current}, newer than this gridfed \
                 knows ({SCHEMA_VERSION}); upgrade gridfed"
            )));
        }
        for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > current) {
            tx.batch_execute(sql).map_err(pg_err("migration"))?;
            tx.execute(
                "INSERT INTO schema_migrations (version) VALUES ($1)",
                &[version],
            )
            .map_err(pg_err("migration"))?;
        }
        tx.commit().map_err(pg_err("migration commit"))?;
        Ok(())
    }

    fn take(&self) -> Result<PgConn, StorageError> {
        let mut state = self
            .idle
            .lock()
            .map_err(|_| StorageError::Engine("connection pool poisoned".into()))?;
        loop {
            if let Some(conn) = state.idle.pop() {
                return Ok(conn);
            }
            if state.open < self.max {
                state.open += 1;
                drop(state);
                return PgConn::open(&self.config, &self.schema).inspect_err(|_| {
                    if let Ok(mut s) = self.idle.lock() {
                        s.open -= 1;
                    }
                });
            }
            state = self
                .freed
                .wait(state)
                .map_err(|_| StorageError::Engine("connection pool poisoned".into()))?;
        }
    }

    /// Returns a connection to the pool (a closed one is dropped and its slot freed).
    fn give(&self, conn: PgConn) {
        if let Ok(mut state) = self.idle.lock() {
            if conn.client.is_closed() {
                state.open -= 1;
            } else {
                state.idle.push(conn);
            }
        }
        self.freed.notify_one();
    }

    /// Runs `f` on a pooled connection.
    fn with<R: Send>(
        &self,
        f: impl FnOnce(&mut PgConn) -> Result<R, StorageError> + Send,
    ) -> Result<R, StorageError> {
        off_runtime(|| self.with_here(f))
    }

    fn with_here<R>(
        &self,
        f: impl FnOnce(&mut PgConn) -> Result<R, StorageError>,
    ) -> Result<R, StorageError> {
        let mut conn = self.take()?;
        let result = f(&mut conn);
        self.give(conn);
        result
    }

    /// Runs `f` on a pooled connection's raw client (leases, tools).
    pub fn with_client<R: Send>(
        &self,
        f: impl FnOnce(&mut Client) -> Result<R, postgres::Error> + Send,
    ) -> Result<R, CoordinatorError> {
        Ok(self.with(|conn| f(&mut conn.client).map_err(pg_err("query")))?)
    }
}

/// Runs `work` here, or, on a thread inside a tokio runtime, on a scoped thread of its own:
/// the client blocks on a runtime of its own, which tokio forbids on its async workers (and a
/// synchronous caller cannot tell whether it is on one). The extra thread costs tens of
/// microseconds against a database round trip of hundreds.
fn off_runtime<R: Send, E: Send + From<StorageError>>(
    work: impl FnOnce() -> Result<R, E> + Send,
) -> Result<R, E> {
    if tokio::runtime::Handle::try_current().is_err() {
        return work();
    }
    std::thread::scope(|s| {
        s.spawn(work)
            .join()
            .unwrap_or_else(|_| Err(StorageError::Engine("storage call panicked".into()).into()))
    })
}

impl Drop for PgPool {
    /// Closing a client blocks on its runtime, which panics on an async worker thread (where
    /// the last handle of a pool may well be dropped): close them on a thread of their own.
    fn drop(&mut self) {
        let idle = match self.idle.get_mut() {
            Ok(state) => std::mem::take(&mut state.idle),
            Err(poisoned) => std::mem::take(&mut poisoned.into_inner().idle),
        };
        if !idle.is_empty() {
            let _ = std::thread::spawn(move || drop(idle)).join();
        }
    }
}

fn scan_end(prefix: &str) -> String {
    let mut end = prefix.to_string();
    end.push(KEY_END);
    end
}

impl KvEngine for PgPool {
    fn get(&self, table: Table, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        self.with(|c| {
            let rows = c
                .client
                .query(&c.get, &[&table.name(), &key])
                .map_err(pg_err("get"))?;
            Ok(rows.first().map(|r| r.get::<_, Vec<u8>>(0)))
        })
    }

    fn scan(&self, table: Table, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StorageError> {
        self.with(|c| {
            let rows = c
                .client
                .query(&c.scan, &[&table.name(), &prefix, &scan_end(prefix)])
                .map_err(pg_err("scan"))?;
            Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
        })
    }

    fn transact(
        &self,
        body: &mut (dyn FnMut(&mut dyn KvTxn) -> Result<(), StorageError> + Send),
    ) -> Result<(), StorageError> {
        self.with(|conn| {
            let mut attempt = 0;
            loop {
                attempt += 1;
                let outcome = run_once(conn, body);
                match outcome {
                    Err(StorageError::Conflict) if attempt < MAX_ATTEMPTS => {
                        std::thread::sleep(backoff(attempt));
                    }
                    other => return other,
                }
            }
        })
    }
}

/// Randomized exponential backoff (up to ~64 ms): contenders that collided once must not
/// collide again in lockstep.
fn backoff(attempt: u32) -> Duration {
    let ceiling_us = 500u64 << attempt.min(7);
    let jitter = getrandom::u64().unwrap_or(u64::from(attempt) * 7919);
    Duration::from_micros(ceiling_us / 2 + jitter % (ceiling_us / 2 + 1))
}

fn run_once(
    conn: &mut PgConn,
    body: &mut (dyn FnMut(&mut dyn KvTxn) -> Result<(), StorageError> + Send),
) -> Result<(), StorageError> {
    let PgConn {
        client,
        get,
        scan,
        put,
        delete,
    } = conn;
    let tx = client
        .build_transaction()
        .isolation_level(IsolationLevel::Serializable)
        .start()
        .map_err(pg_err("begin"))?;
    let mut txn = PgTxn {
        tx,
        get,
        scan,
        put,
        delete,
        conflicted: false,
    };
    // Dropping the transaction on error rolls it back. A body that failed because one of its
    // statements conflicted (whatever error it turned that into) is rerun.
    match body(&mut txn) {
        Ok(()) => txn.tx.commit().map_err(pg_err("commit")),
        Err(_) if txn.conflicted => Err(StorageError::Conflict),
        Err(e) => Err(e),
    }
}

struct PgTxn<'a> {
    tx: postgres::Transaction<'a>,
    get: &'a Statement,
    scan: &'a Statement,
    put: &'a Statement,
    delete: &'a Statement,
    /// A statement failed with a serialization failure: the transaction is doomed.
    conflicted: bool,
}

impl PgTxn<'_> {
    fn note<T>(&mut self, result: Result<T, StorageError>) -> Result<T, StorageError> {
        if matches!(result, Err(StorageError::Conflict)) {
            self.conflicted = true;
        }
        result
    }
}

impl KvTxn for PgTxn<'_> {
    fn get(&mut self, table: Table, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        let rows = self
            .tx
            .query(self.get, &[&table.name(), &key])
            .map_err(pg_err("get"))?;
        Ok(rows.first().map(|r| r.get::<_, Vec<u8>>(0)))
    }

    fn scan(&mut self, table: Table, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StorageError> {
        let rows = self
            .tx
            .query(self.scan, &[&table.name(), &prefix, &scan_end(prefix)]);
        let rows = self.note(rows.map_err(pg_err("scan")))?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    fn put(&mut self, table: Table, key: &str, value: &[u8]) -> Result<(), StorageError> {
        let done = self.tx.execute(self.put, &[&table.name(), &key, &value]);
        self.note(done.map_err(pg_err("put"))).map(drop)
    }

    fn delete(&mut self, table: Table, key: &str) -> Result<(), StorageError> {
        let done = self.tx.execute(self.delete, &[&table.name(), &key]);
        self.note(done.map_err(pg_err("delete"))).map(drop)
    }
}

/// Weights as rows of `blobs`, verified by digest on every read.
pub struct PgArtifacts {
    pool: Arc<PgPool>,
}

impl PgArtifacts {
    pub fn new(pool: Arc<PgPool>) -> Self {
        Self { pool }
    }
}

impl ArtifactStore for PgArtifacts {
    fn put(&self, bytes: &[u8]) -> Result<String, CoordinatorError> {
        let digest = hex::encode(proto::chunk::sha256(bytes));
        self.pool.with_client(|client| {
            client.execute(
                // A stored copy that differs (damaged) is replaced: same digest, the original bytes.
                "INSERT INTO blobs (digest, bytes) VALUES ($1, $2) ON CONFLICT (digest) \
                 DO UPDATE SET bytes = EXCLUDED.bytes WHERE blobs.bytes <> EXCLUDED.bytes",
                &[&digest, &bytes],
            )
        })?;
        Ok(digest)
    }

    fn get(&self, digest: &str) -> Result<Vec<u8>, CoordinatorError> {
        check_digest(digest)?;
        let rows = self.pool.with_client(|client| {
            client.query("SELECT bytes FROM blobs WHERE digest = $1", &[&digest])
        })?;
        let bytes: Vec<u8> = rows
            .first()
            .map(|r| r.get(0))
            .ok_or_else(|| CoordinatorError::MissingArtifact(digest.to_string()))?;
        if hex::encode(proto::chunk::sha256(&bytes)) != digest {
            return Err(CoordinatorError::CorruptArtifact(digest.to_string()));
        }
        Ok(bytes)
    }
}
