//! The registry's redb database (`registry.redb` beside `state.redb`): published models,
//! version manifests and aliases. Values are JSON. Manifests are derived deterministically
//! from committed versions, so a crash between a version commit and its manifest is repaired
//! by the next sync, never by guessing.

use std::path::Path;

use redb::{Database, TableDefinition};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::{ModelSpec, RegistryError, VersionManifest};

const MODELS: TableDefinition<&str, &[u8]> = TableDefinition::new("models");
const MANIFESTS: TableDefinition<&str, &[u8]> = TableDefinition::new("manifests");
const ALIASES: TableDefinition<&str, &[u8]> = TableDefinition::new("aliases");

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

pub(crate) struct RegistryStore {
    db: Database,
}

fn manifest_key(model: &str, version: u64) -> String {
    format!("{model}/{version:020}")
}

fn alias_key(model: &str, alias: &str) -> String {
    format!("{model}/{alias}")
}

impl RegistryStore {
    pub fn open(path: &Path) -> Result<Self, RegistryError> {
        let db = Database::create(path)?;
        let tx = db.begin_write()?;
        for table in [MODELS, MANIFESTS, ALIASES] {
            tx.open_table(table)?;
        }
        tx.commit()?;
        Ok(Self { db })
    }

    fn get<T: DeserializeOwned>(
        &self,
        table: TableDefinition<&str, &[u8]>,
        key: &str,
    ) -> Result<Option<T>, RegistryError> {
        Ok(crate::store::get_json(&self.db, table, key)?)
    }

    fn scan<T: DeserializeOwned>(
        &self,
        table: TableDefinition<&str, &[u8]>,
        prefix: &str,
    ) -> Result<Vec<T>, RegistryError> {
        Ok(crate::store::scan_json(&self.db, table, prefix)?)
    }

    fn put<T: Serialize>(
        &self,
        table: TableDefinition<&str, &[u8]>,
        key: &str,
        value: &T,
    ) -> Result<(), RegistryError> {
        let bytes = serde_json::to_vec(value)?;
        let tx = self.db.begin_write()?;
        tx.open_table(table)?.insert(key, bytes.as_slice())?;
        tx.commit()?;
        Ok(())
    }

    pub fn model(&self, name: &str) -> Result<Option<PublishedModel>, RegistryError> {
        self.get(MODELS, name)
    }

    pub fn models(&self) -> Result<Vec<PublishedModel>, RegistryError> {
        self.scan(MODELS, "")
    }

    pub fn put_model(&self, model: &PublishedModel) -> Result<(), RegistryError> {
        self.put(MODELS, &model.spec.name, model)
    }

    pub fn manifest(
        &self,
        model: &str,
        version: u64,
    ) -> Result<Option<VersionManifest>, RegistryError> {
        self.get(MANIFESTS, &manifest_key(model, version))
    }

    /// Manifests of `model`, oldest first.
    pub fn manifests(&self, model: &str) -> Result<Vec<VersionManifest>, RegistryError> {
        self.scan(MANIFESTS, &format!("{model}/"))
    }

    pub fn put_manifest(&self, manifest: &VersionManifest) -> Result<(), RegistryError> {
        let c = &manifest.content;
        self.put(MANIFESTS, &manifest_key(&c.model, c.version), manifest)
    }

    pub fn alias(&self, model: &str, alias: &str) -> Result<Option<AliasRecord>, RegistryError> {
        self.get(ALIASES, &alias_key(model, alias))
    }

    pub fn aliases(&self, model: &str) -> Result<Vec<AliasRecord>, RegistryError> {
        self.scan(ALIASES, &format!("{model}/"))
    }

    pub fn put_alias(&self, model: &str, record: &AliasRecord) -> Result<(), RegistryError> {
        self.put(ALIASES, &alias_key(model, &record.alias), record)
    }
}
