//! Crash-safe coordinator state: participants, federations, model versions and the in-flight
//! round of each federation, on either storage engine ([`crate::storage`]). Values are JSON;
//! every multi-record change is one transaction, so a crash leaves the previous or the next
//! state, never a mix, and a round's start and commit are compare-and-sets against other
//! coordinators on the same database.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::CoordinatorError;
use crate::config::Protection;
use crate::storage::{Kv, Storage, StoreFile, Table, encode, redb_kv};

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

/// The coordinator's durable state, on either storage engine.
pub struct StateStore {
    kv: Kv,
}

fn version_key(federation: &str, version: u64) -> String {
    format!("{federation}/{version:020}")
}

impl StateStore {
    /// The embedded store: a redb file at `path`.
    pub fn open(path: &Path) -> Result<Self, CoordinatorError> {
        Ok(Self::new(redb_kv(path, StoreFile::State.tables())?))
    }

    /// The state store of an opened [`Storage`].
    pub fn in_storage(storage: &Storage) -> Result<Self, CoordinatorError> {
        Ok(Self::new(storage.kv(StoreFile::State)?))
    }

    pub fn new(kv: Kv) -> Self {
        Self { kv }
    }

    pub fn participants(&self) -> Result<Vec<ParticipantRecord>, CoordinatorError> {
        Ok(self.kv.scan(Table::Participants, "")?)
    }

    pub fn put_participant(&self, p: &ParticipantRecord) -> Result<(), CoordinatorError> {
        Ok(self
            .kv
            .write(&[(Table::Participants, &p.id, encode(p)?)], &[])?)
    }

    pub fn federation(&self, name: &str) -> Result<Option<FederationRecord>, CoordinatorError> {
        Ok(self.kv.get(Table::Federations, name)?)
    }

    pub fn versions(&self, federation: &str) -> Result<Vec<ModelVersion>, CoordinatorError> {
        Ok(self.kv.scan(Table::Versions, &format!("{federation}/"))?)
    }

    pub fn version(
        &self,
        federation: &str,
        version: u64,
    ) -> Result<Option<ModelVersion>, CoordinatorError> {
        Ok(self
            .kv
            .get(Table::Versions, &version_key(federation, version))?)
    }

    pub fn in_flight(&self, federation: &str) -> Result<Option<InFlightRound>, CoordinatorError> {
        Ok(self.kv.get(Table::Rounds, federation)?)
    }

    /// Records a federation with its initial version (version 0), unless another process
    /// recorded it first: then its record is returned and nothing is written.
    pub fn create_federation(
        &self,
        record: &FederationRecord,
        v0: &ModelVersion,
    ) -> Result<Option<FederationRecord>, CoordinatorError> {
        self.kv.transact(|txn| {
            if let Some(existing) = txn.get::<FederationRecord>(Table::Federations, &record.name)? {
                return Ok(Some(existing));
            }
            txn.put(Table::Federations, &record.name, record)?;
            txn.put(
                Table::Versions,
                &version_key(&v0.federation, v0.version),
                v0,
            )?;
            Ok::<_, CoordinatorError>(None)
        })
    }

    /// Marks a round as in flight (and bumps the federation's next round number). Refused with
    /// [`CoordinatorError::Conflict`] when the stored federation already numbered this round or
    /// has one in flight: another coordinator is driving it.
    pub fn begin_round(
        &self,
        record: &FederationRecord,
        round: &InFlightRound,
    ) -> Result<(), CoordinatorError> {
        self.kv.transact(|txn| {
            let stored: Option<FederationRecord> = txn.get(Table::Federations, &record.name)?;
            if let Some(stored) = &stored
                && stored.next_round > round.round
            {
                return Err(conflict(&record.name, round.round, "its number is taken"));
            }
            if let Some(other) = txn.get::<InFlightRound>(Table::Rounds, &record.name)? {
                return Err(conflict(
                    &record.name,
                    round.round,
                    &format!("round {} is in flight", other.round),
                ));
            }
            txn.put(Table::Federations, &record.name, record)?;
            txn.put(Table::Rounds, &record.name, round)?;
            Ok(())
        })
    }

    /// Updates the phase of the in-flight round.
    pub fn update_round(
        &self,
        federation: &str,
        round: &InFlightRound,
    ) -> Result<(), CoordinatorError> {
        Ok(self
            .kv
            .write(&[(Table::Rounds, federation, encode(round)?)], &[])?)
    }

    /// Ends the in-flight round without a version (failed or aborted).
    pub fn end_round(&self, federation: &str) -> Result<(), CoordinatorError> {
        Ok(self.kv.write(&[], &[(Table::Rounds, federation)])?)
    }

    /// Records a version's evaluation (and ends the evaluation round), atomically.
    pub fn record_evaluation(&self, version: &ModelVersion) -> Result<(), CoordinatorError> {
        Ok(self.kv.write(
            &[(
                Table::Versions,
                &version_key(&version.federation, version.version),
                encode(version)?,
            )],
            &[(Table::Rounds, &version.federation)],
        )?)
    }

    /// Commits a completed version and ends its round, atomically, if the round is still the
    /// one in flight and the version number is free (compare-and-set: a coordinator whose
    /// round was taken over never commits over its successor). The artifact must already be
    /// stored.
    pub fn commit_version(
        &self,
        record: &FederationRecord,
        version: &ModelVersion,
    ) -> Result<(), CoordinatorError> {
        let key = version_key(&version.federation, version.version);
        self.kv.transact(|txn| {
            match txn.get::<InFlightRound>(Table::Rounds, &record.name)? {
                Some(flying) if flying.round == version.round => {}
                Some(flying) => {
                    return Err(conflict(
                        &record.name,
                        version.round,
                        &format!("round {} is in flight instead", flying.round),
                    ));
                }
                None => {
                    return Err(conflict(
                        &record.name,
                        version.round,
                        "no round is in flight (ended elsewhere)",
                    ));
                }
            }
            if txn.get::<ModelVersion>(Table::Versions, &key)?.is_some() {
                return Err(conflict(
                    &record.name,
                    version.round,
                    &format!("version {} exists", version.version),
                ));
            }
            txn.put(Table::Versions, &key, version)?;
            txn.put(Table::Federations, &record.name, record)?;
            txn.delete(Table::Rounds, &record.name)?;
            Ok(())
        })
    }
}

fn conflict(federation: &str, round: u64, why: &str) -> CoordinatorError {
    CoordinatorError::Conflict(format!(
        "federation `{federation}` round {round}: {why}; another coordinator is driving it"
    ))
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
        let v = crate::storage::tests::version;
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
