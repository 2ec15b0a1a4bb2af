//! Artifacts: round trip, and clear errors for tampered weights or an inconsistent manifest.

mod common;

use std::collections::BTreeMap;
use std::fs;

use datasets::Target;
use models::artifact::{MANIFEST_FILE, WEIGHTS_FILE};
use models::{ForecasterConfig, ModelArtifact, ModelError, TrainingMode, train};

fn saved_artifact(dir: &std::path::Path) -> (ModelArtifact, datasets::SampleSet) {
    let (train_set, test) = common::site("site-7", 30, 25, 48, 7);
    let config = ForecasterConfig::new(train_set.n_features, 24)
        .with_hidden(vec![16])
        .with_epochs(2);
    let trained = train(&config, &train_set).unwrap();
    let metrics = BTreeMap::from([("test_nmae".to_string(), 0.1)]);
    let artifact = ModelArtifact::from_trained(
        &trained,
        Target::Load,
        &train_set,
        TrainingMode::Centralized,
        metrics,
    )
    .unwrap();
    artifact.save(dir).unwrap();
    (artifact, test)
}

#[test]
fn save_and_load_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let (artifact, test) = saved_artifact(dir.path());
    let loaded = ModelArtifact::load(dir.path()).unwrap();
    assert_eq!(loaded, artifact);
    let m = loaded.manifest();
    assert_eq!(m.spec.context, 48);
    assert_eq!(m.spec.feature_names.len(), m.spec.n_features);
    assert_eq!(m.normalizations[0].site_id, "site-7");
    assert_eq!(m.lineage.epochs_run, 2);
    assert_eq!(m.weights_sha256.len(), 64);
    let before = artifact.forecaster().unwrap().predict(&test).unwrap();
    let after = loaded.forecaster().unwrap().predict(&test).unwrap();
    assert_eq!(before, after);
}

#[test]
fn flipped_weight_byte_is_a_hash_error() {
    let dir = tempfile::tempdir().unwrap();
    saved_artifact(dir.path());
    let path = dir.path().join(WEIGHTS_FILE);
    let mut bytes = fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    fs::write(&path, bytes).unwrap();
    match ModelArtifact::load(dir.path()) {
        Err(ModelError::HashMismatch {
            expected, actual, ..
        }) => assert_ne!(expected, actual),
        other => panic!("expected HashMismatch, got {other:?}"),
    }
}

#[test]
fn edited_shape_in_manifest_is_a_spec_error() {
    let dir = tempfile::tempdir().unwrap();
    saved_artifact(dir.path());
    let path = dir.path().join(MANIFEST_FILE);
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    manifest["spec"]["parameters"][0]["shape"][1] = serde_json::json!(17);
    fs::write(&path, serde_json::to_vec(&manifest).unwrap()).unwrap();
    match ModelArtifact::load(dir.path()) {
        Err(ModelError::SpecMismatch(reason)) => {
            assert!(reason.contains("hidden.0.weight"), "{reason}")
        }
        other => panic!("expected SpecMismatch, got {other:?}"),
    }
}

#[test]
fn inconsistent_layout_and_bad_files_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    saved_artifact(dir.path());
    let path = dir.path().join(MANIFEST_FILE);
    let original = fs::read(&path).unwrap();
    let mut manifest: serde_json::Value = serde_json::from_slice(&original).unwrap();
    manifest["spec"]["context"] = serde_json::json!(24);
    fs::write(&path, serde_json::to_vec(&manifest).unwrap()).unwrap();
    assert!(matches!(
        ModelArtifact::load(dir.path()),
        Err(ModelError::SpecMismatch(_))
    ));

    let mut manifest: serde_json::Value = serde_json::from_slice(&original).unwrap();
    manifest["weights_file"] = serde_json::json!("../elsewhere.safetensors");
    fs::write(&path, serde_json::to_vec(&manifest).unwrap()).unwrap();
    assert!(matches!(
        ModelArtifact::load(dir.path()),
        Err(ModelError::SpecMismatch(_))
    ));

    fs::write(&path, b"{ not json").unwrap();
    assert!(matches!(
        ModelArtifact::load(dir.path()),
        Err(ModelError::Manifest { .. })
    ));
    assert!(matches!(
        ModelArtifact::load(&dir.path().join("missing")),
        Err(ModelError::Io { .. })
    ));
}
