//! The model registry as a library: spec validation, content-addressed signed manifests,
//! tamper detection, aliases with history, references, persistence across restarts.

use std::path::Path;
use std::sync::Arc;

use coordinator::registry::{
    AliasAction, ModelRef, ModelSpec, Registry, RegistryError, Selector, VersionManifest,
};
use coordinator::storage::Storage;
use coordinator::{CoordinatorConfig, Hub, Metrics, ModelVersion, Protection, VersionEvaluation};
use models::FleetScores;

const SPEC: &str = r#"
name = "res-load"
target = "load"
sector = "residential"
context = 24
horizon = 6
protection = "plain"
rounds = 3

[architecture]
hidden = [8]

[training]
min_participants = 2
"#;

fn hub(dir: &Path) -> Hub {
    let config = CoordinatorConfig::new(dir, "enroll-token-1", vec![]);
    Hub::open(config, 1_000, Arc::new(Metrics::default())).unwrap()
}

fn spec_error(text: &str) -> String {
    match ModelSpec::from_toml(text) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("spec accepted:\n{text}"),
    }
}

#[test]
fn spec_errors_name_the_field() {
    let spec = ModelSpec::from_toml(SPEC).unwrap();
    assert_eq!(spec.tag(), "residential-load");
    assert_eq!(spec.forecaster_config().hidden, vec![8]);
    assert_eq!(spec.forecaster_config().quantiles, vec![0.1, 0.5, 0.9]);
    // Registry federations have their own deadlines: two minutes for an upload by default,
    // not ten; `[deadlines]` sets them and bad values name the field.
    let federation = spec.federation().unwrap();
    assert_eq!(federation.upload_timeout_ms, 120_000);
    assert!(
        !serde_json::to_string(&spec).unwrap().contains("deadlines"),
        "absent from the signed spec unless set"
    );
    let custom = ModelSpec::from_toml(&format!("{SPEC}\n[deadlines]\nupload_s = 30\n")).unwrap();
    assert_eq!(custom.federation().unwrap().upload_timeout_ms, 30_000);
    assert_eq!(custom.federation().unwrap().keys_timeout_ms, 30_000);
    assert!(
        spec_error(&format!("{SPEC}\n[deadlines]\nupload_s = 0\n"))
            .contains("`deadlines.upload_s`")
    );

    let cases: &[(&str, &str, &str)] = &[
        ("name = \"res-load\"", "name = \"Res Load\"", "`name`"),
        ("target = \"load\"", "target = \"wind\"", "wind"),
        ("context = 24", "context = 0", "`context`"),
        ("horizon = 6", "horizon = 100000", "`horizon`"),
        ("rounds = 3", "rounds = 0", "`rounds`"),
        ("hidden = [8]", "hidden = [8, 0]", "`architecture`"),
        (
            "hidden = [8]",
            "hidden = [8]\nquantiles = [0.25, 0.5, 0.75]",
            "`architecture.quantiles`",
        ),
        ("hidden = [8]", "hidden = [8]\nwidth = 3", "width"),
        (
            "min_participants = 2",
            "min_participants = 2\nlearning_rate = -1.0",
            "`training.learning_rate`",
        ),
        (
            "min_participants = 2",
            "min_participants = 2\nlearning_rate_decay = 0.0",
            "`training.learning_rate_decay`",
        ),
        (
            "min_participants = 2",
            "min_participants = 2\nserver_momentum = 1.0",
            "`training.server_momentum`",
        ),
        (
            "protection = \"plain\"",
            "protection = \"masked\"",
            "`training.min_participants`",
        ),
        (
            "rounds = 3",
            "rounds = 3\nfeatures = [\"ghi_forecast_w_m2\", \"humidity\"]",
            "unknown feature `humidity`",
        ),
        (
            "rounds = 3",
            "rounds = 3\nfeatures = [\"ghi_forecast_w_m2\", \"ghi_forecast_w_m2\"]",
            "`features`",
        ),
        (
            "min_participants = 2",
            "min_participants = 2\n[privacy]\nnoise_multiplier = -1.1",
            "`privacy.noise_multiplier`",
        ),
        (
            "min_participants = 2",
            "min_participants = 2\n[privacy]\nepsilon = 4.0",
            "`privacy.noise_multiplier`",
        ),
        (
            "min_participants = 2",
            "min_participants = 2\n[privacy]\nnoise_multiplier = 1.1\ndelta = 0.5",
            "`privacy.delta`",
        ),
        ("rounds = 3", "rounds = 3\ncolour = 1", "colour"),
    ];
    for (from, to, needle) in cases {
        assert!(SPEC.contains(from), "{from}");
        let message = spec_error(&SPEC.replace(from, to));
        assert!(
            message.contains(needle),
            "`{to}`: error `{message}` does not name {needle}"
        );
    }
    // A subset of the covariates is a valid feature set; the serving spec carries it.
    let ghi_only = SPEC.replace(
        "rounds = 3",
        "rounds = 3\nfeatures = [\"ghi_forecast_w_m2\"]",
    );
    let spec = ModelSpec::from_toml(&ghi_only).unwrap();
    assert_eq!(
        spec.serving_spec().unwrap().covariates,
        vec![models::serving::Covariate::GhiForecast]
    );
    // A TOML syntax error names the line.
    assert!(spec_error("name = ").contains("line 1"));
}

/// Commits `n` fake versions of `model` (weights in the artifact store) and returns them.
fn fake_versions(dir: &Path, model: &str, parameters: usize, n: u64) -> Vec<ModelVersion> {
    let artifacts = Storage::in_process(dir).unwrap().artifacts().unwrap();
    (0..=n)
        .map(|v| {
            let weights: Vec<f32> = (0..parameters)
                .map(|i| (i as f32 + v as f32) * 0.01)
                .collect();
            let sha256 = artifacts
                .put(&proto::chunk::f32_to_bytes(&weights))
                .unwrap();
            ModelVersion {
                federation: model.into(),
                version: v,
                round: v,
                parent: v.checked_sub(1),
                length: parameters as u64,
                sha256,
                participants: 2 + v,
                protection: Protection::Plain,
                created_unix_ms: 1_000 + v,
                evaluation: VersionEvaluation::NotRequested,
                dp: None,
            }
        })
        .collect()
}

#[test]
fn publish_sync_sign_verify_and_tamper() {
    let dir = tempfile::tempdir().unwrap();
    let mut hub = hub(dir.path());
    let registry = Registry::open(dir.path()).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("coordinator.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(
            mode & 0o777,
            0o600,
            "the signing key is private to its owner"
        );
    }
    let spec = ModelSpec::from_toml(SPEC).unwrap();
    let parameters = spec.forecaster_config().num_params();
    registry.publish(spec.clone(), &mut hub, 2_000).unwrap();
    assert!(
        hub.federation_clash("res-load", "residential-load")
            .is_some()
    );
    // The federation starts from the spec's seeded initialization.
    let (v0, weights) = hub.latest("res-load").unwrap();
    assert_eq!((v0.version, weights.len()), (0, parameters));
    assert!(matches!(
        registry.publish(spec, &mut hub, 2_001),
        Err(RegistryError::AlreadyPublished(_))
    ));

    // Version 1 has its federated scores; version 2's evaluation is still running, so its
    // manifest waits (the scores are part of the signed content).
    let scores = FleetScores {
        sites: 4,
        windows: 120,
        abstained: 0,
        nmae: 0.091,
        nrmse: 0.12,
        npinball: 0.033,
        coverage: 0.78,
        skill: Some(0.55),
        persistence_nmae: 0.2,
        saturated_share: 0.0,
    };
    let mut versions = fake_versions(dir.path(), "res-load", parameters, 2);
    versions[1].evaluation = VersionEvaluation::Scored {
        round: 2,
        protection: Protection::Plain,
        scores: scores.clone(),
    };
    versions[2].evaluation = VersionEvaluation::Pending { attempts: 1 };
    assert_eq!(registry.sync("res-load", &versions).unwrap(), 1);
    assert_eq!(registry.versions("res-load").unwrap().len(), 1);
    versions[2].evaluation = VersionEvaluation::Failed {
        reason: "round 4 has 1 contributions, needs 2".into(),
    };
    assert_eq!(registry.sync("res-load", &versions).unwrap(), 1);
    assert_eq!(
        registry.sync("res-load", &versions).unwrap(),
        0,
        "idempotent"
    );
    let manifests = registry.versions("res-load").unwrap();
    assert_eq!(manifests.len(), 2, "version 0 (untrained) gets no manifest");
    let evaluated = &manifests[0].content.federated_evaluation["residential"];
    assert_eq!((evaluated.round, &evaluated.scores), (2, &scores));
    assert_eq!(manifests[0].content.metrics["federated_nmae"], 0.091);
    assert_eq!(manifests[0].content.metrics["federated_skill"], 0.55);
    assert!(manifests[1].content.federated_evaluation.is_empty());
    assert!(!manifests[1].content.metrics.contains_key("federated_nmae"));
    let key = registry.public_key();
    for m in &manifests {
        m.verify(&key).unwrap();
        assert_eq!(m.id, m.content.id().unwrap());
        assert!(m.content.metrics["weights_l2"] > 0.0);
        assert!(m.content.metrics["update_l2"] > 0.0);
        assert_eq!(m.content.lineage.privacy.differential_privacy, None);
    }
    // A manifest verifies after a trip through its JSON (how it travels and is stored).
    for m in &manifests {
        let back: VersionManifest =
            serde_json::from_str(&serde_json::to_string(m).unwrap()).unwrap();
        back.verify(&key).unwrap();
        // What a participant reads from the same JSON (`models::manifest`) agrees with it.
        let signed: models::manifest::SignedManifest =
            serde_json::from_str(&serde_json::to_string(m).unwrap()).unwrap();
        let served = signed.served(&key).unwrap();
        assert_eq!(
            (served.model.as_str(), served.version),
            ("res-load", m.content.version)
        );
        assert_eq!(served.spec.target, m.content.spec.target);
        assert_eq!(served.spec.sector, m.content.spec.sector);
        assert_eq!(served.weights, m.content.weights);
        assert_eq!(served.serving_spec_json, m.content.serving_spec_json);
        assert_eq!(served.forecaster_json, m.content.forecaster_json);
    }
    let (v1, v2) = (&manifests[0], &manifests[1]);
    assert_eq!(v1.content.lineage.participants, 3);
    assert_eq!(v2.content.lineage.parent.as_ref().unwrap().version, 1);
    assert_eq!(
        v2.content.lineage.parent.as_ref().unwrap().id.as_deref(),
        Some(v1.id.as_str()),
        "lineage chains manifest ids"
    );
    assert_ne!(v1.id, v2.id);
    let weights = registry.load_weights(v2).unwrap();
    assert_eq!(weights.len(), parameters);

    // Altered content, a foreign key, a forged signature: all refused.
    let mut altered: VersionManifest = v2.clone();
    altered.content.metrics.insert("weights_l2".into(), 0.0);
    assert!(altered.verify(&key).is_err());
    altered.content_json = String::from_utf8(altered.content.canonical_bytes().unwrap()).unwrap();
    altered.id = altered.content.id().unwrap();
    assert!(
        altered.verify(&key).is_err(),
        "re-hashed content needs a new signature"
    );
    let other = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    assert!(v2.verify(&other.verifying_key().to_bytes()).is_err());
    // The id names the content, not the signer.
    assert_eq!(
        VersionManifest::sign(v2.content.clone(), &other)
            .unwrap()
            .id,
        v2.id
    );
    let resigned = VersionManifest::sign(altered.content.clone(), &other).unwrap();
    resigned.verify(&other.verifying_key().to_bytes()).unwrap();
    assert!(matches!(
        registry.load_weights(&resigned),
        Err(RegistryError::Tampered { .. })
    ));

    // A flipped byte in the stored artifact is refused at load.
    let digest = &v2.content.weights.sha256;
    let storage = Storage::in_process(dir.path()).unwrap();
    let mut bytes = storage.raw_artifact(digest).unwrap();
    bytes[5] ^= 0x40;
    storage.overwrite_artifact(digest, &bytes).unwrap();
    let err = registry.load_weights(v2).unwrap_err();
    assert!(
        matches!(err, RegistryError::Tampered { version: 2, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("sha256"), "{err}");
    storage.remove_artifact(digest).unwrap();
    assert!(
        registry
            .load_weights(v2)
            .unwrap_err()
            .to_string()
            .contains("missing")
    );
}

#[test]
fn aliases_promote_rollback_and_references() {
    let dir = tempfile::tempdir().unwrap();
    let mut hub = hub(dir.path());
    let registry = Registry::open(dir.path()).unwrap();
    let spec = ModelSpec::from_toml(SPEC).unwrap();
    let parameters = spec.forecaster_config().num_params();
    registry.publish(spec, &mut hub, 2_000).unwrap();
    registry
        .sync(
            "res-load",
            &fake_versions(dir.path(), "res-load", parameters, 3),
        )
        .unwrap();
    let r = |s: &str| s.parse::<ModelRef>().unwrap();

    assert_eq!(r("res-load").selector, Selector::Alias("production".into()));
    assert_eq!(r("res-load@2").selector, Selector::Version(2));
    assert!(matches!(
        registry.resolve(&r("res-load")),
        Err(RegistryError::UnknownAlias { .. })
    ));
    assert!(matches!(
        registry.resolve(&r("res-load@9")),
        Err(RegistryError::UnknownVersion { .. })
    ));
    assert!(matches!(
        registry.resolve(&r("nope@1")),
        Err(RegistryError::UnknownModel(_))
    ));
    assert!("Bad Name@1".parse::<ModelRef>().is_err());

    registry
        .promote(&r("res-load@1"), "production", 10)
        .unwrap();
    registry
        .promote(&r("res-load@3"), "production", 11)
        .unwrap();
    let v2_id = registry.resolve(&r("res-load@2")).unwrap().id;
    registry
        .promote(&r(&format!("res-load@{}", &v2_id[..12])), "staging", 12)
        .unwrap();
    assert_eq!(registry.resolve(&r("res-load")).unwrap().content.version, 3);
    assert_eq!(
        registry
            .resolve(&r("res-load@staging"))
            .unwrap()
            .content
            .version,
        2
    );

    let back = registry.rollback("res-load", "production", 13).unwrap();
    assert_eq!(back.version, 1);
    assert_eq!(
        registry
            .resolve(&r("res-load@production"))
            .unwrap()
            .content
            .version,
        1
    );
    let actions: Vec<(AliasAction, u64)> =
        back.history.iter().map(|e| (e.action, e.version)).collect();
    assert_eq!(
        actions,
        vec![
            (AliasAction::Promote, 1),
            (AliasAction::Promote, 3),
            (AliasAction::Rollback, 1)
        ]
    );
    assert!(matches!(
        registry.rollback("res-load", "production", 14),
        Err(RegistryError::NothingToRollBack { .. })
    ));
    assert!(matches!(
        registry.rollback("res-load", "canary", 14),
        Err(RegistryError::UnknownAlias { .. })
    ));

    // Everything survives a restart, and the federation comes back with the registry.
    drop(registry);
    drop(hub);
    let mut hub = self::hub(dir.path());
    assert!(
        hub.federation_clash("res-load", "residential-load")
            .is_none()
    );
    let registry = Registry::open(dir.path()).unwrap();
    registry.restore(&mut hub, 3_000).unwrap();
    assert!(
        hub.federation_clash("res-load", "residential-load")
            .is_some()
    );
    assert_eq!(registry.resolve(&r("res-load")).unwrap().content.version, 1);
    assert_eq!(registry.versions("res-load").unwrap().len(), 3);
    assert_eq!(registry.aliases("res-load").unwrap().len(), 2);
}

#[test]
fn publish_and_reference_errors_say_what_clashes() {
    let dir = tempfile::tempdir().unwrap();
    // A federation from the coordinator config named like the model, and one using its tag.
    let mut config = CoordinatorConfig::new(
        dir.path(),
        "enroll-token-1",
        vec![coordinator::FederationSpec::vector(
            "res-load",
            4,
            Protection::Plain,
            1,
        )],
    );
    config.federations.push(coordinator::FederationSpec {
        tag: "residential-load".into(),
        ..coordinator::FederationSpec::vector("other", 4, Protection::Plain, 1)
    });
    config.federations[0].tag = "config-tag".into();
    let mut hub = Hub::open(config, 1_000, Arc::new(Metrics::default())).unwrap();
    let registry = Registry::open(dir.path()).unwrap();
    let err = registry
        .publish(ModelSpec::from_toml(SPEC).unwrap(), &mut hub, 2_000)
        .unwrap_err();
    assert!(matches!(err, RegistryError::NameTaken(_)), "{err}");
    assert!(err.to_string().contains("another `name`"), "{err}");
    let renamed = SPEC.replace("name = \"res-load\"", "name = \"res-load-2\"");
    let err = registry
        .publish(ModelSpec::from_toml(&renamed).unwrap(), &mut hub, 2_000)
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("tag `residential-load` is already used by federation `other`"),
        "{err}"
    );
    // A retagged spec publishes; a short id prefix is explained, not just "no alias".
    let retagged = format!("tag = \"res-load-2\"\n{renamed}");
    registry
        .publish(ModelSpec::from_toml(&retagged).unwrap(), &mut hub, 2_000)
        .unwrap();
    let err = registry
        .resolve(&"res-load-2@ab12".parse().unwrap())
        .unwrap_err()
        .to_string();
    assert!(err.contains("at least 8 hex characters"), "{err}");
}

/// One flipped bit in a signed version's weights (the parent of the next version) and in a
/// not yet signed version: the registry keeps signing the rest, records both as damaged,
/// refuses them, and the original bytes repair them.
#[test]
fn a_damaged_artifact_is_isolated_and_repaired_from_the_original_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let mut hub = hub(dir.path());
    let registry = Registry::open(dir.path()).unwrap();
    let spec = ModelSpec::from_toml(SPEC).unwrap();
    let parameters = spec.forecaster_config().num_params();
    registry.publish(spec, &mut hub, 2_000).unwrap();
    let versions = fake_versions(dir.path(), "res-load", parameters, 5);
    assert_eq!(registry.sync("res-load", &versions[..3]).unwrap(), 2);

    let storage = Storage::in_process(dir.path()).unwrap();
    let flip = |v: &ModelVersion| {
        let original = storage.raw_artifact(&v.sha256).unwrap();
        let mut bytes = original.clone();
        bytes[7] ^= 0x10;
        storage.overwrite_artifact(&v.sha256, &bytes).unwrap();
        original
    };
    let original_v2 = flip(&versions[2]);
    let original_v5 = flip(&versions[5]);

    // Versions 3 and 4 are signed regardless; 5 waits for its weights; 2 and 5 are recorded.
    assert_eq!(registry.sync("res-load", &versions).unwrap(), 2);
    let manifests = registry.versions("res-load").unwrap();
    let numbers: Vec<u64> = manifests.iter().map(|m| m.content.version).collect();
    assert_eq!(numbers, [1, 2, 3, 4]);
    assert!(
        !manifests[2].content.metrics.contains_key("update_l2"),
        "version 3's parent weights are damaged: no update metric"
    );
    assert!(manifests[3].content.metrics["update_l2"] > 0.0);
    let damaged = |r: &Registry| -> Vec<u64> {
        r.damage("res-load")
            .unwrap()
            .iter()
            .map(|d| d.version)
            .collect()
    };
    assert_eq!(damaged(&registry), [2, 5]);
    assert_eq!(
        registry.damage("res-load").unwrap()[0].digest,
        versions[2].sha256
    );
    // Intact versions load; the damaged one is refused.
    registry.load_weights(&manifests[3]).unwrap();
    assert!(matches!(
        registry.load_weights(&manifests[1]),
        Err(RegistryError::Tampered { version: 2, .. })
    ));
    assert_eq!(damaged(&registry), [2, 5], "noted once");

    // Bytes that are not a version's are refused; the original bytes repair.
    let err = registry
        .repair("res-load", &versions, b"not the weights")
        .unwrap_err();
    assert!(
        err.to_string().contains("not the weights it committed"),
        "{err}"
    );
    assert_eq!(
        registry
            .repair("res-load", &versions, &original_v2)
            .unwrap(),
        [2]
    );
    assert_eq!(damaged(&registry), [5]);
    let weights = registry.load_weights(&manifests[1]).unwrap();
    assert_eq!(proto::chunk::f32_to_bytes(&weights), original_v2);
    assert_eq!(
        registry
            .repair("res-load", &versions, &original_v5)
            .unwrap(),
        [5]
    );
    assert_eq!(registry.sync("res-load", &versions).unwrap(), 1);
    let v5 = registry.versions("res-load").unwrap().pop().unwrap();
    assert_eq!(v5.content.version, 5);
    assert!(v5.content.metrics["update_l2"] > 0.0);
    registry.load_weights(&v5).unwrap();
    assert!(damaged(&registry).is_empty());
}

/// A version scored far worse than the best earlier one (server momentum run away) carries the
/// ratio in its signed manifest, which `models list` marks as DIVERGING.
#[test]
fn a_diverging_version_carries_its_ratio_to_the_best_earlier_one() {
    let dir = tempfile::tempdir().unwrap();
    let mut hub = hub(dir.path());
    let registry = Registry::open(dir.path()).unwrap();
    let spec = ModelSpec::from_toml(SPEC).unwrap();
    let parameters = spec.forecaster_config().num_params();
    registry.publish(spec, &mut hub, 2_000).unwrap();
    let mut versions = fake_versions(dir.path(), "res-load", parameters, 3);
    for (v, nmae) in versions[1..].iter_mut().zip([0.2, 0.1, 0.3]) {
        v.evaluation = VersionEvaluation::Scored {
            round: v.round + 1,
            protection: Protection::Plain,
            scores: FleetScores {
                sites: 4,
                windows: 40,
                abstained: 0,
                nmae,
                nrmse: nmae,
                npinball: nmae / 3.0,
                coverage: 0.8,
                skill: None,
                persistence_nmae: 0.4,
                saturated_share: 0.0,
            },
        };
    }
    assert_eq!(registry.sync("res-load", &versions).unwrap(), 3);
    let ratio = |m: &VersionManifest| {
        m.content
            .metrics
            .get("federated_nmae_vs_best_earlier")
            .copied()
    };
    let manifests = registry.versions("res-load").unwrap();
    assert_eq!(ratio(&manifests[0]), None, "nothing earlier to compare");
    assert!((ratio(&manifests[1]).unwrap() - 0.5).abs() < 1e-12);
    let diverging = ratio(&manifests[2]).unwrap();
    assert!((diverging - 3.0).abs() < 1e-12);
    assert!(diverging > coordinator::registry::DIVERGENCE_FACTOR);
}
