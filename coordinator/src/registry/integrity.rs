//! Damaged weight artifacts. A version whose stored weights fail their digest (a flipped bit
//! on disk, a truncated blob) or are missing is isolated: it is recorded as damaged, refused
//! with `DATA_LOSS`, listed as such and counted in the metrics, while every other version is
//! still signed and served. An operator repairs it by sending the original bytes (an export or
//! a backup); they are accepted only if they hash to the digest the version committed.

use std::sync::Arc;

use super::store::VersionDamage;
use super::{ManifestKey, Registry, RegistryError};
use crate::CoordinatorError;
use crate::store::ModelVersion;

impl Registry {
    /// Sends damage detections to `metrics` (`gridfed_damaged_versions_detected_total`).
    pub fn report_to(&self, metrics: Arc<crate::Metrics>) {
        let _ = self.metrics.set(metrics);
    }

    /// Versions of `model` currently recorded as damaged, oldest first.
    pub fn damage(&self, model: &str) -> Result<Vec<VersionDamage>, RegistryError> {
        self.store.damage(model)
    }

    /// The weights of a committed version, or `None` when its artifact is damaged or missing
    /// (recorded, logged and counted; the caller skips the version instead of failing).
    pub(super) fn intact_weights(
        &self,
        model: &str,
        v: &ModelVersion,
    ) -> Result<Option<Vec<f32>>, RegistryError> {
        match self.artifacts.get(&v.sha256) {
            Ok(bytes) => Ok(Some(
                proto::chunk::bytes_to_f32(&bytes).map_err(CoordinatorError::from)?,
            )),
            Err(
                e @ (CoordinatorError::CorruptArtifact(_) | CoordinatorError::MissingArtifact(_)),
            ) => {
                self.note_damage(model, v.version, &v.sha256, &e.to_string())?;
                Ok(None)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Records that `version`'s artifact failed its check. Idempotent: a version already
    /// recorded keeps its first detection time and is counted once.
    pub(super) fn note_damage(
        &self,
        model: &str,
        version: u64,
        digest: &str,
        reason: &str,
    ) -> Result<(), RegistryError> {
        tracing::error!(
            model,
            version,
            digest,
            reason,
            "weight artifact damaged: the version is refused until repaired \
             (`gridfed models repair {model}@{version} --from EXPORT_DIR`)"
        );
        // A forecast replica reports but does not write: the coordinator owns the registry.
        if matches!(self.key, ManifestKey::VerifyOnly(_)) {
            return Ok(());
        }
        if self
            .store
            .damage(model)?
            .iter()
            .any(|d| d.version == version)
        {
            return Ok(());
        }
        self.store.put_damage(
            model,
            &VersionDamage {
                version,
                digest: digest.to_string(),
                reason: reason.to_string(),
                detected_unix_ms: crate::clock::wall_ms(),
            },
        )?;
        if let Some(metrics) = self.metrics.get() {
            metrics.version_damaged();
        }
        Ok(())
    }

    /// Restores the artifact of every version of `model` whose committed digest `bytes` hash
    /// to, replacing a stored copy that fails its check, and clears their damage records.
    /// `versions` are the federation's committed versions. Returns the versions restored.
    pub fn repair(
        &self,
        model: &str,
        versions: &[ModelVersion],
        bytes: &[u8],
    ) -> Result<Vec<u64>, RegistryError> {
        self.model(model)?;
        let digest = hex::encode(proto::chunk::sha256(bytes));
        let restored: Vec<u64> = versions
            .iter()
            .filter(|v| v.sha256 == digest)
            .map(|v| v.version)
            .collect();
        if restored.is_empty() {
            return Err(RegistryError::Request {
                field: "weights",
                reason: format!(
                    "sha256 {digest} is not the digest of any version of `{model}`: these are \
                     not the weights it committed"
                ),
            });
        }
        self.artifacts.put(bytes)?;
        // Read back through the verifying path: the repair holds only if this succeeds.
        self.artifacts.get(&digest)?;
        for &version in &restored {
            self.store.clear_damage(model, version)?;
        }
        tracing::info!(model, versions = ?restored, digest, "weight artifact repaired");
        Ok(restored)
    }
}
