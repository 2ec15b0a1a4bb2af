//! The model registry: published specs, signed content-addressed version manifests, aliases.
//!
//! Plain synchronous code. Publishing a [`ModelSpec`] adds a federation to the [`Hub`] (its
//! tag is what participants join); each version the federation commits gets a signed
//! [`VersionManifest`] on the next [`Registry::sync`]. Aliases (`production`, `staging`, ...)
//! point at versions and keep their history, so [`Registry::rollback`] restores the previous
//! target. [`Registry::load_weights`] verifies the signature and the weights' SHA-256 before
//! anything is handed to a forecaster.

mod error;
mod export;
pub mod grpc;
mod integrity;
mod manifest;
mod spec;
mod store;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

pub use error::RegistryError;
pub use export::{VERSION_FILE, write_export};
pub use manifest::{
    Lineage, MANIFEST_DOMAIN, MANIFEST_FORMAT, ManifestContent, ParentRef, PrivacyAccounting,
    SectorEvaluation, VersionManifest, WeightsRef,
};
pub use spec::{
    Architecture, DEFAULT_LEARNING_RATE_DECAY, Deadlines, ModelSpec, Privacy, REQUIRED_QUANTILES,
    Training, check_name,
};
pub use store::{AliasAction, AliasEvent, AliasRecord, PublishedModel, VersionDamage};

use crate::CoordinatorError;
use crate::artifacts::ArtifactStore;
use crate::hub::Hub;
use crate::round::masked::CoordinatorIdentity;
use crate::storage::{Storage, StoreFile};
use crate::store::{ModelVersion, VersionEvaluation};
use store::RegistryStore;

/// The alias a bare model name resolves to.
pub const DEFAULT_ALIAS: &str = "production";

/// A model reference: `name`, `name@<version number>`, `name@<id prefix>` or `name@<alias>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelRef {
    pub model: String,
    pub selector: Selector,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selector {
    Version(u64),
    /// At least 8 hex digits of a manifest id.
    Id(String),
    Alias(String),
}

impl std::str::FromStr for ModelRef {
    type Err = RegistryError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |reason: String| RegistryError::Request {
            field: "model",
            reason,
        };
        let (model, selector) = s.split_once('@').unwrap_or((s, DEFAULT_ALIAS));
        check_name("model", model).map_err(|e| bad(e.to_string()))?;
        let selector = if let Ok(n) = selector.parse::<u64>() {
            Selector::Version(n)
        } else if selector.len() >= 8
            && selector.len() <= 64
            && selector
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        {
            Selector::Id(selector.to_string())
        } else {
            check_name("alias", selector).map_err(|e| bad(e.to_string()))?;
            Selector::Alias(selector.to_string())
        };
        Ok(ModelRef {
            model: model.to_string(),
            selector,
        })
    }
}

/// Registry state under the coordinator's data directory.
pub struct Registry {
    store: RegistryStore,
    artifacts: Arc<dyn ArtifactStore>,
    key: ManifestKey,
    /// Where damage detections are counted, once the server has attached it.
    metrics: std::sync::OnceLock<Arc<crate::Metrics>>,
}

/// The coordinator signs manifests; a forecast replica only verifies them.
enum ManifestKey {
    Signing(ed25519_dalek::SigningKey),
    VerifyOnly(ed25519_dalek::VerifyingKey),
}

impl Registry {
    /// Opens the registry of an in-process coordinator on `data_dir` (its storage is
    /// [`crate::storage::StorageConfig::for_in_process`]: tests, the demo, benchmarks); see
    /// [`Registry::in_storage`].
    pub fn open(data_dir: &Path) -> Result<Self, RegistryError> {
        std::fs::create_dir_all(data_dir).map_err(|source| CoordinatorError::Artifact {
            path: data_dir.to_path_buf(),
            source,
        })?;
        Self::in_storage(&Storage::in_process(data_dir)?)
    }

    /// Opens the registry in `storage`; manifests are signed with the coordinator's key
    /// (`coordinator.key` under the data directory, created on first use).
    pub fn in_storage(storage: &Storage) -> Result<Self, RegistryError> {
        Ok(Self {
            store: RegistryStore::new(storage.kv(StoreFile::Registry)?),
            artifacts: storage.artifacts()?,
            key: ManifestKey::Signing(
                CoordinatorIdentity::load_or_create(storage.data_dir())?.signing_key(),
            ),
            metrics: Default::default(),
        })
    }

    /// A read-only registry in `storage` that verifies manifests under `coordinator_key` and
    /// signs nothing (forecast replicas: the coordinator signs each version once it settles).
    pub fn reader(storage: &Storage, coordinator_key: [u8; 32]) -> Result<Self, RegistryError> {
        let key = ed25519_dalek::VerifyingKey::from_bytes(&coordinator_key)
            .map_err(|e| RegistryError::BadManifest(format!("coordinator key: {e}")))?;
        Ok(Self {
            store: RegistryStore::new(storage.kv(StoreFile::Registry)?),
            artifacts: storage.artifacts()?,
            key: ManifestKey::VerifyOnly(key),
            metrics: Default::default(),
        })
    }

    /// The key manifests verify under (also sent to participants on `Join`).
    pub fn public_key(&self) -> [u8; 32] {
        match &self.key {
            ManifestKey::Signing(key) => key.verifying_key().to_bytes(),
            ManifestKey::VerifyOnly(key) => key.to_bytes(),
        }
    }

    /// Publishes a spec: its federation starts accepting participants at once.
    pub fn publish(
        &self,
        spec: ModelSpec,
        hub: &mut Hub,
        now_ms: u64,
    ) -> Result<PublishedModel, RegistryError> {
        spec.validate()?;
        if self.store.model(&spec.name)?.is_some() {
            return Err(RegistryError::AlreadyPublished(spec.name));
        }
        match hub.federation_clash(&spec.name, &spec.tag()) {
            Some(crate::hub::FederationClash::Name) => {
                return Err(RegistryError::NameTaken(spec.name));
            }
            Some(crate::hub::FederationClash::Tag(by)) => {
                return Err(RegistryError::TagTaken {
                    tag: spec.tag(),
                    by,
                });
            }
            None => {}
        }
        hub.add_federation(spec.federation()?, now_ms)?;
        let model = PublishedModel {
            spec,
            published_unix_ms: now_ms,
        };
        self.store.insert_model(&model)?;
        Ok(model)
    }

    /// Adds the federations of published models to a freshly opened hub.
    pub fn restore(&self, hub: &mut Hub, now_ms: u64) -> Result<(), RegistryError> {
        for model in self.store.models()? {
            if hub
                .federation_clash(&model.spec.name, &model.spec.tag())
                .is_none()
            {
                hub.add_federation(model.spec.federation()?, now_ms)?;
            }
        }
        Ok(())
    }

    pub fn models(&self) -> Result<Vec<PublishedModel>, RegistryError> {
        self.store.models()
    }

    pub fn model(&self, name: &str) -> Result<PublishedModel, RegistryError> {
        self.store
            .model(name)?
            .ok_or_else(|| RegistryError::UnknownModel(name.to_string()))
    }

    /// Signs a manifest for every committed version (round >= 1) that has none yet and whose
    /// federated evaluation is settled (the scores are part of the signed content).
    /// `versions` are the federation's committed versions, oldest first. A version whose
    /// weight artifact is damaged is recorded as such and skipped (signed once repaired); the
    /// others are signed regardless.
    pub fn sync(&self, name: &str, versions: &[ModelVersion]) -> Result<usize, RegistryError> {
        let model = self.model(name)?;
        let mut added = 0;
        let settled = versions
            .iter()
            .filter(|v| v.version >= 1 && !v.evaluation.is_pending());
        for v in settled {
            if self.store.manifest(name, v.version)?.is_some() {
                continue;
            }
            let Some(weights) = self.intact_weights(name, v)? else {
                continue;
            };
            // The parent only feeds the `update_l2` metric: a damaged parent leaves it out
            // rather than holding back its child.
            let before = match v
                .parent
                .and_then(|p| versions.iter().find(|x| x.version == p))
            {
                Some(parent) => self.intact_weights(name, parent)?,
                None => None,
            };
            let mut manifest_metrics = BTreeMap::new();
            if let Some(ratio) = divergence(v, versions) {
                manifest_metrics.insert("federated_nmae_vs_best_earlier".to_string(), ratio);
            }
            let manifest = self.manifest_for(
                &model.spec,
                v,
                &weights,
                before.as_deref(),
                manifest_metrics,
            )?;
            crate::faults::crash_point("registry:manifest");
            self.store.put_manifest(&manifest)?;
            added += 1;
        }
        Ok(added)
    }

    fn manifest_for(
        &self,
        spec: &ModelSpec,
        v: &ModelVersion,
        weights: &[f32],
        before: Option<&[f32]>,
        mut metrics: BTreeMap<String, f64>,
    ) -> Result<VersionManifest, RegistryError> {
        metrics.insert("weights_l2".to_string(), l2(weights.iter().copied()));
        if let Some(before) = before
            && before.len() == weights.len()
        {
            let delta = weights.iter().zip(before).map(|(a, b)| a - b);
            metrics.insert("update_l2".to_string(), l2(delta));
        }
        let mut federated_evaluation = BTreeMap::new();
        if let VersionEvaluation::Scored {
            round,
            protection,
            scores,
        } = &v.evaluation
        {
            let headline = [
                ("federated_nmae", Some(scores.nmae)),
                ("federated_nrmse", Some(scores.nrmse)),
                ("federated_pinball", Some(scores.npinball)),
                ("federated_coverage", Some(scores.coverage)),
                ("federated_skill", scores.skill),
                ("federated_sites", Some(scores.sites as f64)),
            ];
            for (name, value) in headline {
                if let Some(value) = value {
                    metrics.insert(name.to_string(), value);
                }
            }
            federated_evaluation.insert(
                spec.sector.as_str().to_string(),
                SectorEvaluation {
                    round: *round,
                    protection: *protection,
                    scores: scores.clone(),
                },
            );
        }
        let parent = match v.parent {
            Some(p) => Some(ParentRef {
                version: p,
                id: self.store.manifest(&spec.name, p)?.map(|m| m.id),
            }),
            None => None,
        };
        let content = ManifestContent {
            format: MANIFEST_FORMAT,
            model: spec.name.clone(),
            version: v.version,
            spec: spec.clone(),
            forecaster_json: serde_json::to_string(&spec.forecaster_config())?,
            lineage: Lineage {
                round: v.round,
                rounds_completed: v.version,
                participants: v.participants,
                protection: v.protection,
                privacy: PrivacyAccounting {
                    clip: spec.privacy.clip,
                    max_weight: spec.privacy.max_weight,
                    differential_privacy: v.dp.clone(),
                },
                parent,
            },
            metrics,
            federated_evaluation,
            created_unix_ms: v.created_unix_ms,
            weights: WeightsRef {
                sha256: v.sha256.clone(),
                parameters: v.length,
            },
            serving_spec_json: serving_spec_json(spec)?,
        };
        match &self.key {
            ManifestKey::Signing(key) => VersionManifest::sign(content, key),
            ManifestKey::VerifyOnly(_) => Err(CoordinatorError::Config(
                "a read-only registry (forecast replica) signs no manifests".into(),
            )
            .into()),
        }
    }

    /// Manifests of a model, oldest first.
    pub fn versions(&self, name: &str) -> Result<Vec<VersionManifest>, RegistryError> {
        self.model(name)?;
        self.store.manifests(name)
    }

    pub fn aliases(&self, name: &str) -> Result<Vec<AliasRecord>, RegistryError> {
        self.store.aliases(name)
    }

    /// The manifest a reference names.
    pub fn resolve(&self, reference: &ModelRef) -> Result<VersionManifest, RegistryError> {
        let name = &reference.model;
        let unknown = |version: String| RegistryError::UnknownVersion {
            model: name.clone(),
            version,
        };
        // A version or alias is read directly (every forecast request does this, on replicas
        // against PostgreSQL); the model is looked up only to say why nothing was found.
        match &reference.selector {
            Selector::Version(n) => match self.store.manifest(name, *n)? {
                Some(manifest) => Ok(manifest),
                None => {
                    self.model(name)?;
                    Err(unknown(n.to_string()))
                }
            },
            Selector::Id(prefix) => {
                self.model(name)?;
                let mut found = self
                    .store
                    .manifests(name)?
                    .into_iter()
                    .filter(|m| m.id.starts_with(prefix.as_str()));
                match (found.next(), found.next()) {
                    (Some(m), None) => Ok(m),
                    (Some(_), Some(_)) => Err(RegistryError::Request {
                        field: "model",
                        reason: format!("id prefix `{prefix}` is ambiguous"),
                    }),
                    _ => Err(unknown(prefix.clone())),
                }
            }
            Selector::Alias(alias) => match self.store.alias(name, alias)? {
                Some(record) => self
                    .store
                    .manifest(name, record.version)?
                    .ok_or_else(|| unknown(record.version.to_string())),
                None => {
                    self.model(name)?;
                    Err(RegistryError::UnknownAlias {
                        model: name.clone(),
                        alias: alias.clone(),
                    })
                }
            },
        }
    }

    /// Points `alias` of `reference.model` at the version `reference` names.
    pub fn promote(
        &self,
        reference: &ModelRef,
        alias: &str,
        now_ms: u64,
    ) -> Result<AliasRecord, RegistryError> {
        check_name("alias", alias).map_err(|e| RegistryError::Request {
            field: "alias",
            reason: e.to_string(),
        })?;
        let version = self.resolve(reference)?.content.version;
        let event = AliasEvent {
            action: AliasAction::Promote,
            version,
            at_unix_ms: now_ms,
        };
        self.store.update_alias(&reference.model, alias, |stored| {
            Ok(match stored {
                Some(mut r) => {
                    r.previous.push(r.version);
                    r.version = version;
                    r.history.push(event.clone());
                    r
                }
                None => AliasRecord {
                    alias: alias.to_string(),
                    version,
                    previous: Vec::new(),
                    history: vec![event.clone()],
                },
            })
        })
    }

    /// Points `alias` back at the version it named before its last promotion.
    pub fn rollback(
        &self,
        model: &str,
        alias: &str,
        now_ms: u64,
    ) -> Result<AliasRecord, RegistryError> {
        self.model(model)?;
        self.store.update_alias(model, alias, |stored| {
            let mut record = stored.ok_or_else(|| RegistryError::UnknownAlias {
                model: model.to_string(),
                alias: alias.to_string(),
            })?;
            let previous =
                record
                    .previous
                    .pop()
                    .ok_or_else(|| RegistryError::NothingToRollBack {
                        model: model.to_string(),
                        alias: alias.to_string(),
                    })?;
            record.version = previous;
            record.history.push(AliasEvent {
                action: AliasAction::Rollback,
                version: previous,
                at_unix_ms: now_ms,
            });
            Ok(record)
        })
    }

    /// The weights of a manifest, after checking the manifest's signature under this
    /// coordinator's key and the bytes against the signed SHA-256.
    pub fn load_weights(&self, manifest: &VersionManifest) -> Result<Vec<f32>, RegistryError> {
        let c = &manifest.content;
        let tampered = |reason: String| RegistryError::Tampered {
            model: c.model.clone(),
            version: c.version,
            reason,
        };
        manifest
            .verify(&self.public_key())
            .map_err(|e| tampered(e.to_string()))?;
        let reason = match self.artifacts.get(&c.weights.sha256) {
            Ok(bytes) => {
                manifest.verify_weights(&bytes)?;
                return proto::chunk::bytes_to_f32(&bytes)
                    .map_err(|e| tampered(format!("weights do not decode: {e}")));
            }
            Err(CoordinatorError::CorruptArtifact(_)) => {
                "the weight artifact's sha256 differs from the signed manifest's"
            }
            Err(CoordinatorError::MissingArtifact(_)) => "the weight artifact is missing",
            Err(e) => return Err(e.into()),
        };
        self.note_damage(&c.model, c.version, &c.weights.sha256, reason)?;
        Err(tampered(reason.into()))
    }
}

/// A version whose federated nMAE is this many times the best earlier version's is diverging
/// (`models list` marks it; the coordinator warns when the scores arrive).
pub const DIVERGENCE_FACTOR: f64 = 1.5;

/// `v`'s federated nMAE over the best earlier version's, when both are scored.
pub fn divergence(v: &ModelVersion, versions: &[ModelVersion]) -> Option<f64> {
    let nmae = |v: &ModelVersion| match &v.evaluation {
        VersionEvaluation::Scored { scores, .. } if scores.nmae.is_finite() => Some(scores.nmae),
        _ => None,
    };
    let own = nmae(v)?;
    let best = versions
        .iter()
        .filter(|e| e.version >= 1 && e.version < v.version)
        .filter_map(nmae)
        .fold(f64::INFINITY, f64::min);
    (best.is_finite() && best > 0.0).then(|| own / best)
}

fn l2(values: impl Iterator<Item = f32>) -> f64 {
    values
        .map(|v| f64::from(v) * f64::from(v))
        .sum::<f64>()
        .sqrt()
}

/// The serving spec JSON a manifest carries (`models::serving::ServingSpec`).
pub fn serving_spec_json(spec: &ModelSpec) -> Result<String, RegistryError> {
    spec.serving_spec()?
        .to_json()
        .map_err(|e| RegistryError::spec("architecture", e.to_string()))
}
