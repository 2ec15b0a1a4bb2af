//! The key-value contract, run against both engines (PostgreSQL when
//! `GRIDFED_TEST_POSTGRES` is set; see [`super::test_postgres_url`]).

use std::sync::Arc;

use super::*;
use crate::store::{FederationRecord, InFlightRound, ModelVersion, StateStore, VersionEvaluation};

/// A fresh PostgreSQL storage in its own schema.
fn postgres(test: &str) -> Option<Storage> {
    let url = test_postgres_url(test)?;
    let schema = format!("unit_{test}");
    PgPool::drop_schema(&url, &schema).unwrap();
    let config = StorageConfig::Postgres {
        url,
        schema,
        max_connections: 8,
    };
    Some(Storage::open(&config, Path::new("/nonexistent")).unwrap())
}

/// Every engine under test, with what keeps its files alive.
fn engines(test: &str) -> Vec<(&'static str, Kv, Option<tempfile::TempDir>)> {
    let dir = tempfile::tempdir().unwrap();
    let redb = Storage::open(&StorageConfig::Redb, dir.path())
        .unwrap()
        .kv(StoreFile::State)
        .unwrap();
    let mut out = vec![("redb", redb, Some(dir))];
    if let Some(pg) = postgres(test) {
        out.push(("postgres", pg.kv(StoreFile::State).unwrap(), None));
    }
    out
}

#[test]
fn get_scan_put_delete_in_key_order() {
    for (engine, kv, _dir) in engines("kv_contract") {
        let keys = [
            "f/00000000000000000010",
            "f/00000000000000000002",
            "f/a",
            "fa",
            "g/é",
        ];
        for (i, key) in keys.iter().enumerate() {
            kv.write(&[(Table::Versions, key, vec![i as u8])], &[])
                .unwrap();
        }
        let scanned: Vec<String> = kv
            .engine
            .scan(Table::Versions, "f/")
            .unwrap()
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(
            scanned,
            ["f/00000000000000000002", "f/00000000000000000010", "f/a"],
            "{engine}: prefix scan is bytewise ordered and stops at the prefix"
        );
        assert_eq!(kv.engine.scan(Table::Versions, "").unwrap().len(), 5);
        assert!(
            kv.engine.scan(Table::Rounds, "").unwrap().is_empty(),
            "{engine}"
        );
        assert_eq!(
            kv.engine.get(Table::Versions, "g/é").unwrap(),
            Some(vec![4])
        );
        kv.write(
            &[(Table::Versions, "fa", vec![9])],
            &[(Table::Versions, "f/a")],
        )
        .unwrap();
        assert_eq!(kv.engine.get(Table::Versions, "fa").unwrap(), Some(vec![9]));
        assert_eq!(
            kv.engine.get(Table::Versions, "f/a").unwrap(),
            None,
            "{engine}"
        );
    }
}

#[test]
fn a_failed_transaction_writes_nothing_and_returns_its_own_error() {
    for (engine, kv, _dir) in engines("kv_rollback") {
        let result: Result<(), CoordinatorError> = kv.transact(|txn| {
            txn.put_bytes(Table::Rounds, "f", b"{}")?;
            Err(CoordinatorError::Invalid("refused".into()))
        });
        assert!(
            matches!(result, Err(CoordinatorError::Invalid(ref m)) if m == "refused"),
            "{engine}: {result:?}"
        );
        assert_eq!(kv.engine.get(Table::Rounds, "f").unwrap(), None, "{engine}");
    }
}

#[test]
fn a_value_that_does_not_parse_names_its_table_and_key() {
    for (engine, kv, _dir) in engines("kv_corrupt") {
        kv.write(&[(Table::Federations, "f", b"not json".to_vec())], &[])
            .unwrap();
        let err = kv
            .get::<FederationRecord>(Table::Federations, "f")
            .unwrap_err()
            .to_string();
        assert!(err.contains("federations/f"), "{engine}: {err}");
    }
}

fn federation(next_round: u64, latest_version: u64) -> FederationRecord {
    FederationRecord {
        name: "f".into(),
        latest_version,
        next_round,
        velocity_sha256: None,
        privacy_spent: None,
    }
}

/// Version `n` of federation `f` (shared by the store tests).
pub(crate) fn version(n: u64) -> ModelVersion {
    ModelVersion {
        federation: "f".into(),
        version: n,
        round: n,
        parent: n.checked_sub(1),
        length: 3,
        sha256: "00".repeat(32),
        participants: 2,
        protection: crate::Protection::Masked,
        created_unix_ms: 1,
        evaluation: VersionEvaluation::NotRequested,
        dp: None,
    }
}

fn in_flight(round: u64) -> InFlightRound {
    InFlightRound {
        round,
        phase: "collecting".into(),
        selected: vec![],
        started_unix_ms: 0,
    }
}

/// Two coordinators' views of one database: the second to begin or commit a round loses.
#[test]
fn round_start_and_commit_are_compare_and_set() {
    for (engine, kv, _dir) in engines("round_cas") {
        let a = StateStore::new(kv.clone());
        let b = StateStore::new(kv);
        assert_eq!(
            a.create_federation(&federation(1, 0), &version(0)).unwrap(),
            None
        );
        // The second creation finds the first's record and writes nothing.
        assert_eq!(
            b.create_federation(&federation(1, 0), &version(0)).unwrap(),
            Some(federation(1, 0))
        );
        a.begin_round(&federation(2, 0), &in_flight(1)).unwrap();
        let taken = b.begin_round(&federation(2, 0), &in_flight(1)).unwrap_err();
        assert!(
            matches!(taken, CoordinatorError::Conflict(_)),
            "{engine}: {taken}"
        );
        a.commit_version(&federation(2, 1), &version(1)).unwrap();
        // A stale driver that still believes round 1 is its own cannot commit it again.
        let again = b
            .commit_version(&federation(2, 1), &version(1))
            .unwrap_err();
        assert!(
            matches!(again, CoordinatorError::Conflict(_)),
            "{engine}: {again}"
        );
        // Round 2 begun by b; a's late commit of a round-2 version it never began is refused.
        b.begin_round(&federation(3, 1), &in_flight(2)).unwrap();
        b.end_round("f").unwrap();
        let ended = a
            .commit_version(&federation(3, 2), &version(2))
            .unwrap_err();
        assert!(
            matches!(ended, CoordinatorError::Conflict(_)),
            "{engine}: {ended}"
        );
        assert_eq!(
            a.versions("f").unwrap(),
            vec![version(0), version(1)],
            "{engine}"
        );
    }
}

/// Concurrent read-modify-write transactions from many threads (separate connections) all
/// land exactly once: SERIALIZABLE plus retries is a compare-and-set.
#[test]
fn concurrent_increments_serialize_on_postgres() {
    let Some(storage) = postgres("concurrent") else {
        return;
    };
    let kv = storage.kv(StoreFile::State).unwrap();
    let threads = 6;
    let each = 25;
    std::thread::scope(|s| {
        for _ in 0..threads {
            let kv = kv.clone();
            s.spawn(move || {
                for _ in 0..each {
                    kv.transact(|txn| {
                        let n: u64 = txn.get(Table::Rounds, "counter")?.unwrap_or(0);
                        txn.put(Table::Rounds, "counter", &(n + 1))?;
                        Ok::<_, StorageError>(())
                    })
                    .unwrap();
                }
            });
        }
    });
    assert_eq!(
        kv.get::<u64>(Table::Rounds, "counter").unwrap(),
        Some(threads * each)
    );
}

#[test]
fn postgres_blobs_verify_their_digest_and_migrations_are_idempotent() {
    let Some(storage) = postgres("blobs") else {
        return;
    };
    let artifacts = storage.artifacts().unwrap();
    let digest = artifacts.put(b"weights").unwrap();
    assert_eq!(artifacts.put(b"weights").unwrap(), digest);
    assert_eq!(artifacts.get(&digest).unwrap(), b"weights");
    let pool: &Arc<PgPool> = storage.pool().unwrap();
    pool.with_client(|c| {
        c.execute(
            "UPDATE blobs SET bytes = 'tampered'::bytea WHERE digest = $1",
            &[&digest],
        )
    })
    .unwrap();
    assert!(matches!(
        artifacts.get(&digest),
        Err(CoordinatorError::CorruptArtifact(_))
    ));
    assert!(matches!(
        artifacts.get("../../etc/passwd"),
        Err(CoordinatorError::Invalid(_))
    ));
    // Opening again applies nothing new; a database from a newer gridfed is refused.
    let config = storage.config().clone();
    Storage::open(&config, Path::new("/nonexistent")).unwrap();
    let applied: i64 = pool
        .with_client(|c| c.query_one("SELECT count(*) FROM schema_migrations", &[]))
        .unwrap()
        .get(0);
    assert_eq!(applied, i64::from(postgres::SCHEMA_VERSION));
    pool.with_client(|c| c.execute("INSERT INTO schema_migrations (version) VALUES (999)", &[]))
        .unwrap();
    let err = Storage::open(&config, Path::new("/nonexistent"))
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("999") && err.contains("upgrade gridfed"),
        "{err}"
    );
}

#[test]
fn bad_storage_configs_name_the_field() {
    let bad_schema = StorageConfig::Postgres {
        url: "postgres://x@127.0.0.1/x".into(),
        schema: "Robert'); DROP".into(),
        max_connections: 2,
    };
    assert!(
        bad_schema
            .validate()
            .unwrap_err()
            .to_string()
            .contains("storage.schema")
    );
    let no_pool = StorageConfig::Postgres {
        url: "postgres://x@127.0.0.1/x".into(),
        schema: "gridfed".into(),
        max_connections: 0,
    };
    assert!(
        no_pool
            .validate()
            .unwrap_err()
            .to_string()
            .contains("storage.max_connections")
    );
    let parsed: Result<crate::CoordinatorConfig, _> = crate::CoordinatorConfig::from_toml(
        "data_dir = \"d\"\nenrollment_tokens = [\"token-123\"]\ninsecure_plaintext = true\n\
         [storage]\nbackend = \"postgres\"\nurl = \"postgres://u@127.0.0.1:1/db\"\nschemaa = \"x\"\n",
    );
    let err = parsed.unwrap_err().to_string();
    assert!(err.contains("schemaa"), "{err}");
    let unreachable = StorageConfig::postgres("postgres://u@127.0.0.1:1/db");
    let err = Storage::open(&unreachable, Path::new("/nonexistent"))
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("cannot connect to PostgreSQL"), "{err}");
}
