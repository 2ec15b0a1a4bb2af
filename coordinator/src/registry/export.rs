//! A version on disk for use outside gridfed: `weights.safetensors` and `manifest.json` (the
//! `models::ModelArtifact` format: named f32 tensors, spec, feature layout, sha256 of the
//! weights) plus `version.json`, the registry's signed manifest.

use std::collections::BTreeMap;
use std::path::Path;

use super::{RegistryError, VersionManifest};

pub const VERSION_FILE: &str = "version.json";

/// Verifies `manifest` under `coordinator_key` and `weights` against it, then writes the
/// export into `dir`.
pub fn write_export(
    manifest: &VersionManifest,
    weights: &[f32],
    coordinator_key: &[u8; 32],
    dir: &Path,
) -> Result<(), RegistryError> {
    manifest.verify(coordinator_key)?;
    manifest.verify_weights(&proto::chunk::f32_to_bytes(weights))?;
    let c = &manifest.content;
    let serving = models::ModelSpec::new(
        c.spec.forecaster_config(),
        c.spec.target,
        c.spec.context,
        c.spec.resolution.seconds(),
    );
    let lineage = models::Lineage {
        mode: models::TrainingMode::Federated,
        seed: serving.architecture.seed,
        epochs_run: c.lineage.rounds_completed as usize * c.spec.training.local_epochs as usize,
        samples: 0,
        rounds: Some(c.lineage.rounds_completed as usize),
        parent: c.lineage.parent.as_ref().and_then(|p| p.id.clone()),
    };
    let metrics: BTreeMap<String, f64> = c.metrics.clone();
    // No per-site normalization travels with a federated model: each site's own statistics
    // normalize its inputs (see the forecast service).
    let artifact =
        models::ModelArtifact::new(serving, Vec::new(), lineage, metrics, weights.to_vec())?;
    artifact.save(dir)?;
    let path = dir.join(VERSION_FILE);
    let text = serde_json::to_vec_pretty(manifest)?;
    std::fs::write(&path, text)
        .map_err(|source| crate::CoordinatorError::Artifact { path, source })?;
    Ok(())
}
