//! The registry's store (`registry.redb` beside `state.redb`, or the shared PostgreSQL):
//! published models, version manifests and aliases. Values are JSON. Manifests are derived deterministically
//! from committed versions, so a crash between a version commit and its manifest is repaired
//! by the next sync, never by guessing.

use serde::{Deserialize, Serialize};

use super::{ModelSpec, RegistryError, VersionManifest};
use crate::CoordinatorError;
use crate::storage::{Kv, Table, encode};

/// A published model: its spec as validated and when it was published.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PublishedModel {
    pub spec: ModelSpec,
    pub published_unix_ms: u64,
}

/// One change of an alias.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AliasEvent {
    pub action: AliasAction,
    pub version: u64,
    pub at_unix_ms: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AliasAction {
    Promote,
    Rollback,
}

/// An alias (`production`, `staging`, ...) of a model.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AliasRecord {
    pub alias: String,
    pub version: u64,
    /// Versions it pointed at before, oldest first: a rollback pops the last.
    pub previous: Vec<u64>,
    /// Every change, oldest first.
    pub history: Vec<AliasEvent>,
}

/// A version whose weight artifact failed its digest check (or was missing) when read: it is
/// refused with `DATA_LOSS` until repaired (`Registry::repair`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionDamage {
    pub version: u64,
    /// The SHA-256 the version's weights must have.
    pub digest: String,
    pub reason: String,
    pub detected_unix_ms: u64,
}

pub(crate) struct RegistryStore {
    kv: Kv,
}

fn manifest_key(model: &str, version: u64) -> String {
    format!("{model}/{version:020}")
}

fn alias_key(model: &str, alias: &str) -> String {
    format!("{model}/{alias}")
}

impl RegistryStore {
    pub fn new(kv: Kv) -> Self {
        Self { kv }
    }

    pub fn model(&self, name: &str) -> Result<Option<PublishedModel>, RegistryError> {
        Ok(self
            .kv
            .get(Table::Models, name)
            .map_err(CoordinatorError::from)?)
    }

    pub fn models(&self) -> Result<Vec<PublishedModel>, RegistryError> {
        Ok(self
            .kv
            .scan(Table::Models, "")
            .map_err(CoordinatorError::from)?)
    }

    /// Stores a newly published model unless the name is taken (checked in the same
    /// transaction, so two processes cannot both publish one name).
    pub fn insert_model(&self, model: &PublishedModel) -> Result<(), RegistryError> {
        let name = &model.spec.name;
        self.kv.transact(|txn| {
            if txn
                .get::<PublishedModel>(Table::Models, name)
                .map_err(CoordinatorError::from)?
                .is_some()
            {
                return Err(RegistryError::AlreadyPublished(name.clone()));
            }
            txn.put(Table::Models, name, model)
                .map_err(CoordinatorError::from)?;
            Ok(())
        })
    }

    pub fn manifest(
        &self,
        model: &str,
        version: u64,
    ) -> Result<Option<VersionManifest>, RegistryError> {
        Ok(self
            .kv
            .get(Table::Manifests, &manifest_key(model, version))
            .map_err(CoordinatorError::from)?)
    }

    /// Manifests of `model`, oldest first.
    pub fn manifests(&self, model: &str) -> Result<Vec<VersionManifest>, RegistryError> {
        Ok(self
            .kv
            .scan(Table::Manifests, &format!("{model}/"))
            .map_err(CoordinatorError::from)?)
    }

    pub fn put_manifest(&self, manifest: &VersionManifest) -> Result<(), RegistryError> {
        let c = &manifest.content;
        self.put(
            Table::Manifests,
            &manifest_key(&c.model, c.version),
            manifest,
        )
    }

    pub fn alias(&self, model: &str, alias: &str) -> Result<Option<AliasRecord>, RegistryError> {
        Ok(self
            .kv
            .get(Table::Aliases, &alias_key(model, alias))
            .map_err(CoordinatorError::from)?)
    }

    pub fn aliases(&self, model: &str) -> Result<Vec<AliasRecord>, RegistryError> {
        Ok(self
            .kv
            .scan(Table::Aliases, &format!("{model}/"))
            .map_err(CoordinatorError::from)?)
    }

    /// Moves an alias: `change` sees the stored record (if any) and returns the new one, in
    /// one transaction, so concurrent promotes from two processes serialize and neither's
    /// history entry is lost.
    pub fn update_alias(
        &self,
        model: &str,
        alias: &str,
        mut change: impl FnMut(Option<AliasRecord>) -> Result<AliasRecord, RegistryError> + Send,
    ) -> Result<AliasRecord, RegistryError> {
        let key = alias_key(model, alias);
        self.kv.transact(|txn| {
            let stored = txn
                .get::<AliasRecord>(Table::Aliases, &key)
                .map_err(CoordinatorError::from)?;
            let record = change(stored)?;
            txn.put(Table::Aliases, &key, &record)
                .map_err(CoordinatorError::from)?;
            Ok(record)
        })
    }

    pub fn damage(&self, model: &str) -> Result<Vec<VersionDamage>, RegistryError> {
        Ok(self
            .kv
            .scan(Table::Damage, &format!("{model}/"))
            .map_err(CoordinatorError::from)?)
    }

    pub fn put_damage(&self, model: &str, damage: &VersionDamage) -> Result<(), RegistryError> {
        self.put(Table::Damage, &manifest_key(model, damage.version), damage)
    }

    pub fn clear_damage(&self, model: &str, version: u64) -> Result<(), RegistryError> {
        self.kv
            .write(&[], &[(Table::Damage, &manifest_key(model, version))])
            .map_err(CoordinatorError::from)?;
        Ok(())
    }

    fn put<T: Serialize>(&self, table: Table, key: &str, value: &T) -> Result<(), RegistryError> {
        let bytes = encode(value).map_err(CoordinatorError::from)?;
        self.kv
            .write(&[(table, key, bytes)], &[])
            .map_err(CoordinatorError::from)?;
        Ok(())
    }
}
