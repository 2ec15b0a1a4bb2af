//! Full federated rounds over real gRPC on 127.0.0.1: plaintext, masked (equal to the plaintext
//! FedAvg), a participant dying mid-round, and the coordinator restarted mid-round.

mod common;

use std::time::Duration;

use common::*;
use coordinator::{FederationSpec, Protection};
use participant::FixedUpdate;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_round_is_sample_weighted_fedavg() {
    let dir = tempfile::tempdir().unwrap();
    let d = 1_000;
    let spec = FederationSpec {
        min_participants: 3,
        ..FederationSpec::vector("load", d as u64, Protection::Plain, 1)
    };
    let coord = RunningCoordinator::start(dir.path(), vec![spec]).await;
    let handles = spawn_fixed(&coord.url(), "load", 3, d);
    let summaries = join_all(handles, Duration::from_secs(60)).await;
    assert!(
        summaries
            .iter()
            .all(|s| s.final_version == Some(1) && s.rounds_uploaded == 1)
    );
    coord.stop().await;
    let (version, weights) = coordinator::load_latest(dir.path(), "load").unwrap();
    assert_eq!((version.version, version.participants), (1, 3));
    let expected = fixed_fedavg(3, d);
    assert!(max_abs_diff(&weights, &expected) < 1e-6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_momentum_accumulates_the_aggregate_across_rounds() {
    let dir = tempfile::tempdir().unwrap();
    let (n, d, beta) = (3, 500, 0.5f32);
    let spec = FederationSpec {
        min_participants: n,
        server_momentum: beta,
        ..FederationSpec::vector("load", d as u64, Protection::Plain, 2)
    };
    let coord = RunningCoordinator::start(dir.path(), vec![spec]).await;
    let handles = spawn_fixed(&coord.url(), "load", n, d);
    let summaries = join_all(handles, Duration::from_secs(60)).await;
    assert!(summaries.iter().all(|s| s.final_version == Some(2)));
    coord.stop().await;
    // v1 = m, w1 = m; v2 = beta * m + m, w2 = w1 + v2 = (2 + beta) * m.
    let mean = fixed_fedavg(n, d);
    let (_, weights) = coordinator::load_latest(dir.path(), "load").unwrap();
    let expected: Vec<f32> = mean.iter().map(|m| (2.0 + beta) * m).collect();
    assert!(max_abs_diff(&weights, &expected) < 1e-5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn masked_rounds_equal_plaintext_fedavg() {
    let dir = tempfile::tempdir().unwrap();
    let (n, d) = (5, 20_000);
    let spec = FederationSpec {
        min_participants: 4,
        // Wait for all five: a round may otherwise start before the last one has enrolled.
        participants_per_round: n,
        ..FederationSpec::vector("pv", d as u64, Protection::Masked, 2)
    };
    let coord = RunningCoordinator::start(dir.path(), vec![spec]).await;
    let handles = spawn_fixed(&coord.url(), "pv", n, d);
    let summaries = join_all(handles, Duration::from_secs(120)).await;
    assert!(
        summaries
            .iter()
            .all(|s| s.final_version == Some(2) && s.rounds_uploaded == 2),
        "{summaries:?}"
    );
    coord.stop().await;
    let (version, weights) = coordinator::load_latest(dir.path(), "pv").unwrap();
    assert_eq!(
        (version.version, version.participants, version.protection),
        (2, n as u64, Protection::Masked)
    );
    // Two rounds of the same deltas: twice the weighted mean, up to the fixed-point bound.
    let once = fixed_fedavg(n, d);
    let expected: Vec<f32> = once.iter().map(|v| 2.0 * v).collect();
    let err = max_abs_diff(&weights, &expected);
    assert!(
        err < 1e-4,
        "masked result differs from plaintext FedAvg by {err}"
    );
    assert_eq!(
        coordinator::load_versions(dir.path(), "pv").unwrap().len(),
        3
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn participant_killed_mid_round_leaves_survivors_sum() {
    let dir = tempfile::tempdir().unwrap();
    let (n, d) = (6, 5_000);
    let spec = FederationSpec {
        min_participants: 4,
        participants_per_round: n,
        // The upload deadline is keys + upload after the round starts: keep the wait short.
        keys_timeout_ms: 3_000,
        upload_timeout_ms: 4_000,
        ..FederationSpec::vector("load", d as u64, Protection::Masked, 1)
    };
    let coord = RunningCoordinator::start(dir.path(), vec![spec]).await;
    let mut handles: Vec<_> = (0..n - 1)
        .map(|i| {
            spawn_daemon(
                &coord.url(),
                &format!("site-{i}"),
                "load",
                fixed(i, d, SAMPLES[i]),
            )
        })
        .collect();
    let victim_training = TrainingStarts::default();
    let victim = spawn_daemon(
        &coord.url(),
        "victim",
        "load",
        std::sync::Arc::new(Stalled(victim_training.clone())),
    );
    // The victim advertises keys and shares them, then dies while "training".
    victim_training.wait_for(1, Duration::from_secs(30)).await;
    victim.abort();
    let summaries = join_all(std::mem::take(&mut handles), Duration::from_secs(60)).await;
    assert!(summaries.iter().all(|s| s.final_version == Some(1)));
    coord.stop().await;
    let (version, weights) = coordinator::load_latest(dir.path(), "load").unwrap();
    assert_eq!(version.participants, (n - 1) as u64);
    let expected = fixed_fedavg(n - 1, d);
    let err = max_abs_diff(&weights, &expected);
    assert!(err < 1e-4, "survivors' FedAvg differs by {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coordinator_restarted_mid_round_aborts_cleanly_and_finishes() {
    let dir = tempfile::tempdir().unwrap();
    let (n, d) = (4, 2_000);
    let spec = FederationSpec {
        min_participants: 4,
        ..FederationSpec::vector("load", d as u64, Protection::Masked, 2)
    };
    let coord = RunningCoordinator::start(dir.path(), vec![spec.clone()]).await;
    let addr = coord.addr;
    let url = coord.url();
    let training = TrainingStarts::default();
    let handles: Vec<_> = (0..n)
        .map(|i| {
            let trainer = std::sync::Arc::new(Slow(
                FixedUpdate {
                    delta: delta(i, d),
                    samples: SAMPLES[i],
                },
                Duration::from_millis(2_500),
                training.clone(),
            ));
            spawn_daemon(&url, &format!("site-{i}"), "load", trainer)
        })
        .collect();
    // Round 1 is in flight (every participant is training) when the coordinator goes down.
    training.wait_for(n, Duration::from_secs(30)).await;
    coord.stop().await;
    assert!(
        coordinator::load_versions(dir.path(), "load")
            .unwrap()
            .len()
            == 1,
        "no version may complete"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let coord = RunningCoordinator::start_on(&addr.to_string(), dir.path(), vec![spec]).await;
    let summaries = join_all(handles, Duration::from_secs(90)).await;
    assert!(
        summaries.iter().all(|s| s.final_version == Some(2)),
        "{summaries:?}"
    );
    assert!(summaries.iter().all(|s| s.reconnects >= 1));
    coord.stop().await;
    let versions = coordinator::load_versions(dir.path(), "load").unwrap();
    assert_eq!(
        versions.iter().map(|v| v.version).collect::<Vec<_>>(),
        vec![0, 1, 2]
    );
    // Round 1 was aborted by the restart: versions 1 and 2 come from rounds 2 and 3.
    assert_eq!(versions[1].round, 2);
    assert_eq!(versions[2].round, 3);
    let (_, weights) = coordinator::load_latest(dir.path(), "load").unwrap();
    let once = fixed_fedavg(n, d);
    let expected: Vec<f32> = once.iter().map(|v| 2.0 * v).collect();
    assert!(max_abs_diff(&weights, &expected) < 1e-4);
}

/// Records the local learning rate each round asks for.
struct RecordsLearningRate(
    FixedUpdate,
    std::sync::Arc<std::sync::Mutex<Vec<(u64, f32)>>>,
);

impl participant::LocalTrainer for RecordsLearningRate {
    fn train(
        &self,
        spec: &participant::TrainSpec,
        global: &[f32],
    ) -> Result<participant::LocalResult, participant::ParticipantError> {
        self.1
            .lock()
            .unwrap()
            .push((spec.from_version, spec.learning_rate));
        self.0.train(spec, global)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn learning_rate_decays_geometrically_over_the_versions() {
    let dir = tempfile::tempdir().unwrap();
    let (n, d) = (2, 100);
    let spec = FederationSpec {
        min_participants: n,
        participants_per_round: n,
        learning_rate: 0.01,
        learning_rate_decay: 0.25,
        ..FederationSpec::vector("load", d as u64, Protection::Plain, 3)
    };
    let coord = RunningCoordinator::start(dir.path(), vec![spec]).await;
    let asked = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let handles = (0..n)
        .map(|i| {
            let trainer = RecordsLearningRate(
                FixedUpdate {
                    delta: delta(i, d),
                    samples: SAMPLES[i],
                },
                asked.clone(),
            );
            spawn_daemon(
                &coord.url(),
                &format!("site-{i}"),
                "load",
                std::sync::Arc::new(trainer),
            )
        })
        .collect();
    join_all(handles, Duration::from_secs(60)).await;
    coord.stop().await;
    let mut asked = asked.lock().unwrap().clone();
    asked.sort_by(|a, b| a.partial_cmp(b).unwrap());
    // From the full rate at version 0 to a quarter of it for the last round (version 2).
    let expected = [
        (0, 0.01),
        (0, 0.01),
        (1, 0.005),
        (1, 0.005),
        (2, 0.0025),
        (2, 0.0025),
    ];
    assert_eq!(asked.len(), expected.len(), "{asked:?}");
    for ((v, lr), (ev, elr)) in asked.iter().zip(expected) {
        assert_eq!(*v, ev);
        assert!((lr - elr).abs() < 1e-9, "version {v}: {lr} vs {elr}");
    }
}

/// `[federation.hierarchy]` on feeders named by the site labels' prefixes.
fn hierarchical(name: &str, d: usize, n: usize, min_feeders: u32) -> FederationSpec {
    FederationSpec {
        min_participants: n,
        participants_per_round: n,
        keys_timeout_ms: 3_000,
        upload_timeout_ms: 4_000,
        hierarchy: Some(coordinator::HierarchySpec {
            min_sites_per_feeder: 3,
            min_feeders,
        }),
        ..FederationSpec::vector(name, d as u64, Protection::Masked, 1)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hierarchical_round_over_two_feeders_equals_flat_fedavg() {
    let dir = tempfile::tempdir().unwrap();
    let (n, d) = (6, 3_000);
    let coord = RunningCoordinator::start(dir.path(), vec![hierarchical("load", d, n, 2)]).await;
    let handles: Vec<_> = (0..n)
        .map(|i| {
            let feeder = if i < 3 { "feeder-a" } else { "feeder-b" };
            let label = format!("{feeder}/site-{i}");
            spawn_daemon(&coord.url(), &label, "load", fixed(i, d, SAMPLES[i]))
        })
        .collect();
    let summaries = join_all(handles, Duration::from_secs(60)).await;
    assert!(summaries.iter().all(|s| s.final_version == Some(1)));
    coord.stop().await;
    let (version, weights) = coordinator::load_latest(dir.path(), "load").unwrap();
    assert_eq!(version.participants, n as u64);
    let err = max_abs_diff(&weights, &fixed_fedavg(n, d));
    assert!(
        err < 1e-4,
        "hierarchical result differs from FedAvg by {err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_feeder_below_its_floor_contributes_nothing_and_dropouts_are_survived() {
    let dir = tempfile::tempdir().unwrap();
    let d = 3_000;
    // feeder-a: 4 sites, one dies mid-round (3 survivors: at the floor, its sum counts);
    // feeder-b: 3 sites, one dies (2 survivors: below the floor, nothing of it is unmasked).
    let sites: Vec<(String, Option<u64>)> = (0..7)
        .map(|i| {
            let feeder = if i < 4 { "feeder-a" } else { "feeder-b" };
            let alive = !(i == 3 || i == 6);
            (
                format!("{feeder}/site-{i}"),
                alive.then_some(100 + 10 * i as u64),
            )
        })
        .collect();
    let coord =
        RunningCoordinator::start(dir.path(), vec![hierarchical("load", d, sites.len(), 1)]).await;
    let victims = TrainingStarts::default();
    let mut handles = Vec::new();
    let mut doomed = Vec::new();
    for (i, (label, samples)) in sites.iter().enumerate() {
        match samples {
            Some(samples) => handles.push(spawn_daemon(
                &coord.url(),
                label,
                "load",
                fixed(i, d, *samples),
            )),
            None => doomed.push(spawn_daemon(
                &coord.url(),
                label,
                "load",
                std::sync::Arc::new(Stalled(victims.clone())),
            )),
        }
    }
    victims.wait_for(2, Duration::from_secs(30)).await;
    doomed.iter().for_each(|h| h.abort());
    let summaries = join_all(handles, Duration::from_secs(60)).await;
    assert!(
        summaries.iter().all(|s| s.final_version == Some(1)),
        "{summaries:?}"
    );
    coord.stop().await;
    let (version, weights) = coordinator::load_latest(dir.path(), "load").unwrap();
    // Only feeder-a's three survivors: FedAvg over exactly them.
    assert_eq!(version.participants, 3);
    let expected = fedavg(
        &(0..3)
            .map(|i| (delta(i, d), sites[i].1.unwrap()))
            .collect::<Vec<_>>(),
    );
    let err = max_abs_diff(&weights, &expected);
    assert!(err < 1e-4, "feeder-a's FedAvg differs by {err}");
}

#[test]
fn hierarchy_config_is_checked() {
    let mut spec = hierarchical("load", 10, 6, 1);
    assert!(spec.validate().is_ok());
    spec.protection = Protection::Encrypted;
    assert!(
        spec.validate()
            .unwrap_err()
            .to_string()
            .contains("hierarchy")
    );
    let mut spec = hierarchical("load", 10, 6, 1);
    spec.hierarchy.as_mut().unwrap().min_sites_per_feeder = 2;
    assert!(
        spec.validate()
            .unwrap_err()
            .to_string()
            .contains("min_sites_per_feeder")
    );
    assert_eq!(
        coordinator::HierarchySpec::feeder_of("feeder-07/roof-12"),
        "feeder-07"
    );
    assert_eq!(coordinator::HierarchySpec::feeder_of("roof-12"), "");
}

/// A federation published through the registry takes its deadlines from the spec's
/// `[deadlines]`: a participant killed mid-round holds the round for `upload_s`, not for the
/// coordinator.toml default of ten minutes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_spec_deadlines_bound_the_wait_for_a_killed_participant() {
    let dir = tempfile::tempdir().unwrap();
    let coord = RunningCoordinator::start_registry(dir.path()).await;
    let spec = r#"
name = "res-load"
target = "load"
sector = "residential"
context = 24
horizon = 24
protection = "masked"
rounds = 1

[architecture]
hidden = [4]

[training]
min_participants = 3

[deadlines]
keys_s = 3
upload_s = 3
"#;
    let published = coord.publish(spec).await;
    let d = published.parameters as usize;
    let started = std::time::Instant::now();
    let handles: Vec<_> = (0..3)
        .map(|i| {
            let trainer = ScoredFixed(
                FixedUpdate {
                    delta: delta(i, d),
                    samples: SAMPLES[i],
                },
                fixed_scores(i),
            );
            spawn_daemon(
                &coord.url(),
                &format!("site-{i}"),
                &published.tag,
                std::sync::Arc::new(trainer),
            )
        })
        .collect();
    let victim_training = TrainingStarts::default();
    let victim = spawn_daemon(
        &coord.url(),
        "victim",
        &published.tag,
        std::sync::Arc::new(Stalled(victim_training.clone())),
    );
    victim_training.wait_for(1, Duration::from_secs(30)).await;
    victim.abort();
    let summaries = join_all(handles, Duration::from_secs(60)).await;
    assert!(summaries.iter().all(|s| s.final_version == Some(1)));
    // Selection + keys + upload deadlines are 11 s; the default upload deadline alone is 120 s.
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "{:?}",
        started.elapsed()
    );
    coord.stop().await;
    let (version, _) = coordinator::load_latest(dir.path(), "res-load").unwrap();
    assert_eq!(version.participants, 3);
}
