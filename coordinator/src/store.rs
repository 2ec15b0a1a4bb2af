//! Crash-safe coordinator state in redb: participants, federations, model versions and the
//! in-flight round of each federation. Values are JSON; every multi-record change is one
//! transaction, so a crash leaves the previous or the next state, never a mix.

use std::path::Path;

use redb::{Database, ReadableDatabase, TableDefinition};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::CoordinatorError;
use crate::config::Protection;

const PARTICIPANTS: TableDefinition<&str, &[u8]> = TableDefinition::new("participants");
const FEDERATIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("federations");
const VERSIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("versions");
const ROUNDS: TableDefinition<&str, &[u8]> = TableDefinition::new("rounds");

/// An enrolled participant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParticipantRecord {
    pub id: String,
    /// Ed25519 verifying key, hex.
    pub public_key: String,
    pub site_label: String,
    pub enrolled_unix_ms: u64,
    pub revoked: bool,
    /// Federations joined.
    pub federations: Vec<String>,
}

/// A federation's durable progress.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FederationRecord {
    pub name: String,
    pub latest_version: u64,
    /// Number the next round gets (rounds aborted by a restart are not reused).
    pub next_round: u64,
    /// Artifact holding the server-momentum velocity after `latest_version` (FedAvgM only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub velocity_sha256: Option<String>,
    /// Differential privacy spent by the committed versions (DP federations only), committed
    /// with each version so that a restart never forgets it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub privacy_spent: Option<crypto::dp::RdpAccountant>,
}

/// Where a version's federated evaluation stands (the only part of a version that changes
/// after its commit, once).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "status")]
pub enum VersionEvaluation {
    /// The federation does not evaluate its versions (or the version is the initial one).
    #[default]
    NotRequested,
    /// An evaluation round is due; `attempts` rounds failed so far.
    Pending { attempts: u32 },
    /// The fleet's holdout scores, aggregated under `protection` in `round`.
    Scored {
        round: u64,
        protection: Protection,
        scores: models::FleetScores,
    },
    /// Given up after repeated failed rounds.
    Failed { reason: String },
}

impl VersionEvaluation {
    pub fn is_pending(&self) -> bool {
        matches!(self, VersionEvaluation::Pending { .. })
    }
}

/// One completed, immutable model version (its evaluation aside).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelVersion {
    pub federation: String,
    pub version: u64,
    /// Round that produced it (0 for the initial weights).
    pub round: u64,
    pub parent: Option<u64>,
    /// Number of f32 parameters.
    pub length: u64,
    /// SHA-256 (hex) of the little-endian f32 artifact.
    pub sha256: String,
    pub participants: u64,
    pub protection: Protection,
    pub created_unix_ms: u64,
    #[serde(default)]
    pub evaluation: VersionEvaluation,
    /// The differential privacy spent up to and including this version (DP federations).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dp: Option<DpAccounting>,
}

/// What a DP federation has spent when a version is released: the `(epsilon, delta)` of every
/// version up to it together, and the mechanism behind the number.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DpAccounting {
    pub epsilon: f64,
    pub delta: f64,
    pub noise_multiplier: f64,
    /// L2 bound of each site's update.
    pub clip_l2: f32,
    /// DP training rounds composed.
    pub rounds: u64,
    /// Fraction of the sites each round is accounted as sampling (1: no amplification).
    pub sampling_rate: f64,
    /// How the number was computed.
    pub accountant: String,
}

/// Names the accountant of [`DpAccounting`].
pub const DP_ACCOUNTANT: &str = "RDP of the sampled Gaussian (Mironov, Talwar, Zhang 2019), \
     site-level, distributed discrete Gaussian; (eps, delta) by Canonne, Kamath, Steinke 2020";

/// What was running when the coordinator last wrote its state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InFlightRound {
    pub round: u64,
    pub phase: String,
    pub selected: Vec<String>,
    pub started_unix_ms: u64,
}

/// The redb database under the data directory.
pub struct StateStore {
    db: Database,
}

fn version_key(federation: &str, version: u64) -> String {
    format!("{federation}/{version:020}")
}

impl StateStore {
    pub fn open(path: &Path) -> Result<Self, CoordinatorError> {
        let db = Database::create(path)?;
        let tx = db.begin_write()?;
        for table in [PARTICIPANTS, FEDERATIONS, VERSIONS, ROUNDS] {
            tx.open_table(table)?;
        }
        tx.commit()?;
        Ok(Self { db })
    }

    fn scan<T: DeserializeOwned>(
        &self,
        table: TableDefinition<&str, &[u8]>,
        prefix: &str,
    ) -> Result<Vec<T>, CoordinatorError> {
        scan_json(&self.db, table, prefix)
    }

    fn get<T: DeserializeOwned>(
        &self,
        table: TableDefinition<&str, &[u8]>,
        key: &str,
    ) -> Result<Option<T>, CoordinatorError> {
        get_json(&self.db, table, key)
    }

    /// Applies a batch of puts and deletes in one transaction.
    fn write(&self, batch: &[Write<'_>]) -> Result<(), CoordinatorError> {
        let tx = self.db.begin_write()?;
        for op in batch {
            match op {
                Write::Put(table, key, value) => {
                    tx.open_table(*table)?
                        .insert(key.as_str(), value.as_slice())?;
                }
                Write::Delete(table, key) => {
                    tx.open_table(*table)?.remove(*key)?;
                }
            }
        }
        tx.commit()?;
        Ok(())
    }

    pub fn participants(&self) -> Result<Vec<ParticipantRecord>, CoordinatorError> {
        self.scan(PARTICIPANTS, "")
    }

    pub fn put_participant(&self, p: &ParticipantRecord) -> Result<(), CoordinatorError> {
        self.write(&[Write::Put(
            PARTICIPANTS,
            p.id.clone(),
            serde_json::to_vec(p)?,
        )])
    }

    pub fn federation(&self, name: &str) -> Result<Option<FederationRecord>, CoordinatorError> {
        self.get(FEDERATIONS, name)
    }

    pub fn versions(&self, federation: &str) -> Result<Vec<ModelVersion>, CoordinatorError> {
        self.scan(VERSIONS, &format!("{federation}/"))
    }

    pub fn version(
        &self,
        federation: &str,
        version: u64,
    ) -> Result<Option<ModelVersion>, CoordinatorError> {
        self.get(VERSIONS, &version_key(federation, version))
    }

    pub fn in_flight(&self, federation: &str) -> Result<Option<InFlightRound>, CoordinatorError> {
        self.get(ROUNDS, federation)
    }

    /// Records a federation with its initial version (version 0).
    pub fn create_federation(
        &self,
        record: &FederationRecord,
        v0: &ModelVersion,
    ) -> Result<(), CoordinatorError> {
        self.write(&[
            Write::Put(
                FEDERATIONS,
                record.name.clone(),
                serde_json::to_vec(record)?,
            ),
            Write::Put(
                VERSIONS,
                version_key(&v0.federation, v0.version),
                serde_json::to_vec(v0)?,
            ),
        ])
    }

    /// Marks a round as in flight (and bumps the federation's next round number).
    pub fn begin_round(
        &self,
        record: &FederationRecord,
        round: &InFlightRound,
    ) -> Result<(), CoordinatorError> {
        self.write(&[
            Write::Put(
                FEDERATIONS,
                record.name.clone(),
                serde_json::to_vec(record)?,
            ),
            Write::Put(ROUNDS, record.name.clone(), serde_json::to_vec(round)?),
        ])
    }

    /// Updates the phase of the in-flight round.
    pub fn update_round(
        &self,
        federation: &str,
        round: &InFlightRound,
    ) -> Result<(), CoordinatorError> {
        self.write(&[Write::Put(
            ROUNDS,
            federation.to_string(),
            serde_json::to_vec(round)?,
        )])
    }

    /// Ends the in-flight round without a version (failed or aborted).
    pub fn end_round(&self, federation: &str) -> Result<(), CoordinatorError> {
        self.write(&[Write::Delete(ROUNDS, federation)])
    }

    /// Records a version's evaluation (and ends the evaluation round), atomically.
    pub fn record_evaluation(&self, version: &ModelVersion) -> Result<(), CoordinatorError> {
        self.write(&[
            Write::Put(
                VERSIONS,
                version_key(&version.federation, version.version),
                serde_json::to_vec(version)?,
            ),
            Write::Delete(ROUNDS, &version.federation),
        ])
    }

    /// Commits a completed version and ends its round, atomically. The artifact must already
    /// be stored.
    pub fn commit_version(
        &self,
        record: &FederationRecord,
        version: &ModelVersion,
    ) -> Result<(), CoordinatorError> {
        self.write(&[
            Write::Put(
                VERSIONS,
                version_key(&version.federation, version.version),
                serde_json::to_vec(version)?,
            ),
            Write::Put(
                FEDERATIONS,
                record.name.clone(),
                serde_json::to_vec(record)?,
            ),
            Write::Delete(ROUNDS, &record.name),
        ])
    }
}

/// The JSON values of `table` whose keys start with `prefix`, in key order (shared by the
/// coordinator's and the registry's databases).
pub(crate) fn scan_json<T: DeserializeOwned>(
    db: &Database,
    table: TableDefinition<&str, &[u8]>,
    prefix: &str,
) -> Result<Vec<T>, CoordinatorError> {
    let tx = db.begin_read()?;
    let table = tx.open_table(table)?;
    let mut out = Vec::new();
    for entry in table.range(prefix..)? {
        let (key, value) = entry?;
        if !key.value().starts_with(prefix) {
            break;
        }
        out.push(serde_json::from_slice(value.value())?);
    }
    Ok(out)
}

/// The JSON value at `key` in `table`, if any.
pub(crate) fn get_json<T: DeserializeOwned>(
    db: &Database,
    table: TableDefinition<&str, &[u8]>,
    key: &str,
) -> Result<Option<T>, CoordinatorError> {
    let tx = db.begin_read()?;
    let table = tx.open_table(table)?;
    match table.get(key)? {
        Some(v) => Ok(Some(serde_json::from_slice(v.value())?)),
        None => Ok(None),
    }
}

enum Write<'a> {
    Put(
        TableDefinition<'static, &'static str, &'static [u8]>,
        String,
        Vec<u8>,
    ),
    Delete(
        TableDefinition<'static, &'static str, &'static [u8]>,
        &'a str,
    ),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_survive_reopen_and_commit_is_atomic() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.redb");
        let fed = FederationRecord {
            name: "f".into(),
            latest_version: 0,
            next_round: 1,
            velocity_sha256: None,
            privacy_spent: None,
        };
        let v = |n: u64| ModelVersion {
            federation: "f".into(),
            version: n,
            round: n,
            parent: n.checked_sub(1),
            length: 3,
            sha256: "00".repeat(32),
            participants: 2,
            protection: Protection::Masked,
            created_unix_ms: 1,
            evaluation: VersionEvaluation::NotRequested,
            dp: None,
        };
        {
            let store = StateStore::open(&path).unwrap();
            store.create_federation(&fed, &v(0)).unwrap();
            let round = InFlightRound {
                round: 1,
                phase: "collecting".into(),
                selected: vec![],
                started_unix_ms: 0,
            };
            store
                .begin_round(
                    &FederationRecord {
                        next_round: 2,
                        ..fed.clone()
                    },
                    &round,
                )
                .unwrap();
            assert_eq!(store.in_flight("f").unwrap(), Some(round));
            store
                .commit_version(
                    &FederationRecord {
                        latest_version: 1,
                        next_round: 2,
                        ..fed.clone()
                    },
                    &v(1),
                )
                .unwrap();
        }
        let store = StateStore::open(&path).unwrap();
        assert_eq!(store.versions("f").unwrap(), vec![v(0), v(1)]);
        assert_eq!(store.in_flight("f").unwrap(), None);
        assert_eq!(store.federation("f").unwrap().unwrap().latest_version, 1);
        assert!(store.versions("g").unwrap().is_empty());
    }
}
