//! Federated evaluation over real gRPC on 127.0.0.1: after each training round the participants
//! score the new version on their holdout and the coordinator records the fleet's scores,
//! aggregated under the round's protection. Each site reports known scores, so the recorded
//! result is checked against the window-weighted mean computed here in the clear; a site that
//! cannot score abstains without stalling the round.

mod common;

use std::time::Duration;

use common::*;
use coordinator::{FederationSpec, Protection, VersionEvaluation};
use models::holdout::SCORE_CLIP;
use models::{FleetScores, HoldoutScores};
use participant::FixedUpdate;

/// Known holdout scores of site `i`; site 3's nMSE is beyond the clip (a poor model there).
fn site_scores(i: usize) -> HoldoutScores {
    let x = i as f64;
    HoldoutScores {
        windows: [30, 12, 75, 20, 44][i],
        nmae: 0.08 + 0.03 * x,
        nmse: if i == 3 { 9.5 } else { 0.01 + 0.004 * x },
        npinball: 0.035 + 0.01 * x,
        coverage: 0.7 + 0.05 * x,
        persistence_nmae: 0.3 + 0.02 * x,
    }
}

/// What the coordinator should find: window-weighted means, site 3's nMSE clamped.
fn expected(n: usize) -> FleetScores {
    let sites: Vec<HoldoutScores> = (0..n).map(site_scores).collect();
    let total: f64 = sites.iter().map(|s| f64::from(s.windows)).sum();
    let mean = |f: &dyn Fn(&HoldoutScores) -> f64| {
        sites
            .iter()
            .map(|s| f64::from(s.windows) * f(s))
            .sum::<f64>()
            / total
    };
    let clip = f64::from(SCORE_CLIP);
    let nmae = mean(&|s| s.nmae);
    let persistence_nmae = mean(&|s| s.persistence_nmae);
    FleetScores {
        sites: n as u64,
        windows: total as u64,
        abstained: 0,
        nmae,
        nrmse: mean(&|s| s.nmse.min(clip)).sqrt(),
        npinball: mean(&|s| s.npinball),
        coverage: mean(&|s| s.coverage),
        skill: Some(1.0 - nmae / persistence_nmae),
        persistence_nmae,
        saturated_share: mean(&|s| f64::from(u8::from(s.nmse > clip))),
    }
}

fn assert_close(got: &FleetScores, want: &FleetScores) {
    assert_eq!(
        (got.sites, got.windows, got.abstained),
        (want.sites, want.windows, want.abstained)
    );
    // Fixed point over [-8, 8] with 5 sites and weights up to 1000: ~1e-5 per slot.
    let pairs = [
        ("nmae", got.nmae, want.nmae),
        ("nrmse", got.nrmse, want.nrmse),
        ("npinball", got.npinball, want.npinball),
        ("coverage", got.coverage, want.coverage),
        (
            "persistence_nmae",
            got.persistence_nmae,
            want.persistence_nmae,
        ),
        ("skill", got.skill.unwrap(), want.skill.unwrap()),
        ("saturated_share", got.saturated_share, want.saturated_share),
    ];
    for (name, g, w) in pairs {
        assert!((g - w).abs() < 1e-4, "{name}: recorded {g}, expected {w}");
    }
}

/// `scoring` sites with known scores plus `abstaining` sites without a holdout.
async fn evaluated_federation(protection: Protection, rounds: u64, abstaining: usize) {
    let dir = tempfile::tempdir().unwrap();
    let (n, d) = (5, 2_000);
    let all = n + abstaining;
    let spec = FederationSpec {
        min_participants: 4,
        participants_per_round: all,
        evaluate: true,
        ..FederationSpec::vector("load", d as u64, protection, rounds)
    };
    let coord = RunningCoordinator::start(dir.path(), vec![spec]).await;
    let mut handles: Vec<_> = (n..all)
        .map(|i| {
            spawn_daemon(
                &coord.url(),
                &format!("site-{i}"),
                "load",
                fixed(i, d, SAMPLES[i]),
            )
        })
        .collect();
    handles.extend((0..n).map(|i| {
        let trainer = ScoredFixed(
            FixedUpdate {
                delta: delta(i, d),
                samples: SAMPLES[i],
            },
            site_scores(i),
        );
        spawn_daemon(
            &coord.url(),
            &format!("site-{i}"),
            "load",
            std::sync::Arc::new(trainer),
        )
    }));
    let summaries = join_all(handles, Duration::from_secs(180)).await;
    // Every round is a training round followed by its evaluation round (abstainers upload
    // their abstention).
    assert!(
        summaries
            .iter()
            .all(|s| s.final_version == Some(rounds) && s.rounds_uploaded == 2 * rounds),
        "{summaries:?}"
    );
    coord.stop().await;

    let versions = coordinator::load_versions(dir.path(), "load").unwrap();
    assert_eq!(versions.len() as u64, rounds + 1);
    assert_eq!(versions[0].evaluation, VersionEvaluation::NotRequested);
    let want = FleetScores {
        abstained: abstaining as u64,
        ..expected(n)
    };
    for v in &versions[1..] {
        match &v.evaluation {
            VersionEvaluation::Scored {
                protection: p,
                scores,
                round,
            } => {
                assert_eq!(*p, protection);
                assert!(*round > v.round, "evaluated after the version's round");
                assert_close(scores, &want);
            }
            other => panic!("version {} not scored: {other:?}", v.version),
        }
    }
    // Evaluation rounds leave the weights alone: still `rounds` FedAvg steps.
    let (_, weights) = coordinator::load_latest(dir.path(), "load").unwrap();
    let once = fixed_fedavg(all, d);
    let expected: Vec<f32> = once.iter().map(|v| rounds as f32 * v).collect();
    assert!(max_abs_diff(&weights, &expected) < 1e-4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn masked_evaluation_records_the_window_weighted_fleet_scores() {
    evaluated_federation(Protection::Masked, 2, 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_site_that_cannot_score_abstains_and_is_taken_out_of_the_means() {
    evaluated_federation(Protection::Masked, 1, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encrypted_evaluation_records_the_window_weighted_fleet_scores() {
    evaluated_federation(Protection::Encrypted, 1, 0).await;
}

/// Scores slowly, so a coordinator restart lands mid-evaluation.
struct SlowScores(ScoredFixed, TrainingStarts);

impl participant::LocalTrainer for SlowScores {
    fn train(
        &self,
        spec: &participant::TrainSpec,
        global: &[f32],
    ) -> Result<participant::LocalResult, participant::ParticipantError> {
        self.0.train(spec, global)
    }

    fn evaluate(
        &self,
        spec: &participant::TrainSpec,
        weights: &[f32],
    ) -> Result<HoldoutScores, participant::ParticipantError> {
        self.1.record();
        std::thread::sleep(Duration::from_millis(2_000));
        self.0.evaluate(spec, weights)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coordinator_restarted_mid_evaluation_reruns_it() {
    let dir = tempfile::tempdir().unwrap();
    let (n, d) = (4, 500);
    let spec = FederationSpec {
        min_participants: n,
        participants_per_round: n,
        evaluate: true,
        ..FederationSpec::vector("load", d as u64, Protection::Masked, 1)
    };
    let coord = RunningCoordinator::start(dir.path(), vec![spec.clone()]).await;
    let (addr, url) = (coord.addr, coord.url());
    let evaluating = TrainingStarts::default();
    let handles: Vec<_> = (0..n)
        .map(|i| {
            let trainer = SlowScores(
                ScoredFixed(
                    FixedUpdate {
                        delta: delta(i, d),
                        samples: SAMPLES[i],
                    },
                    site_scores(i),
                ),
                evaluating.clone(),
            );
            spawn_daemon(
                &url,
                &format!("site-{i}"),
                "load",
                std::sync::Arc::new(trainer),
            )
        })
        .collect();
    // Version 1 is committed and every site is scoring it when the coordinator goes down.
    evaluating.wait_for(n, Duration::from_secs(30)).await;
    coord.stop().await;
    let versions = coordinator::load_versions(dir.path(), "load").unwrap();
    assert_eq!(versions.len(), 2);
    assert!(versions[1].evaluation.is_pending(), "{:?}", versions[1]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let coord = RunningCoordinator::start_on(&addr.to_string(), dir.path(), vec![spec]).await;
    let summaries = join_all(handles, Duration::from_secs(90)).await;
    assert!(
        summaries.iter().all(|s| s.final_version == Some(1)),
        "{summaries:?}"
    );
    coord.stop().await;
    let versions = coordinator::load_versions(dir.path(), "load").unwrap();
    assert_eq!(versions.len(), 2, "the restart adds no version");
    match &versions[1].evaluation {
        // Round 1 trained, round 2 (evaluation) was aborted, round 3 re-ran it.
        VersionEvaluation::Scored { round, scores, .. } => {
            assert_eq!(*round, 3);
            assert_close(scores, &expected(n));
        }
        other => panic!("version 1 not scored after the restart: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sites_without_holdout_fail_evaluation_and_the_federation_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let (n, d) = (3, 100);
    let spec = FederationSpec {
        min_participants: n,
        participants_per_round: n,
        evaluate: true,
        ..FederationSpec::vector("load", d as u64, Protection::Plain, 1)
    };
    let coord = RunningCoordinator::start(dir.path(), vec![spec]).await;
    // `FixedUpdate` has no holdout: every site abstains in each of the 3 evaluation attempts
    // (no round waits for a deadline: the default upload timeout is 10 minutes).
    let handles = spawn_fixed(&coord.url(), "load", n, d);
    let summaries = join_all(handles, Duration::from_secs(60)).await;
    assert!(
        summaries
            .iter()
            .all(|s| s.final_version == Some(1) && s.rounds_uploaded == 4),
        "{summaries:?}"
    );
    coord.stop().await;
    let versions = coordinator::load_versions(dir.path(), "load").unwrap();
    match &versions[1].evaluation {
        VersionEvaluation::Failed { reason } => {
            assert!(
                reason.contains("none of the 3 sites could score"),
                "{reason}"
            )
        }
        other => panic!("expected a failed evaluation, got {other:?}"),
    }
    let (_, weights) = coordinator::load_latest(dir.path(), "load").unwrap();
    assert!(max_abs_diff(&weights, &fixed_fedavg(n, d)) < 1e-6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_are_signed_with_their_scores_as_they_settle() {
    let dir = tempfile::tempdir().unwrap();
    let coord = RunningCoordinator::start_registry(dir.path()).await;
    let spec = r#"
name = "res-load"
target = "load"
sector = "residential"
context = 24
horizon = 24
protection = "plain"
rounds = 2

[architecture]
hidden = [4]

[training]
min_participants = 2
"#;
    let model = coord.run_fixed(spec, 2).await;
    // Nothing asked the registry since publishing: the coordinator signed on its own.
    coord.stop().await;
    let registry = coordinator::registry::Registry::open(dir.path()).unwrap();
    let manifests = registry.versions(&model).unwrap();
    assert_eq!(manifests.len(), 2);
    let key = registry.public_key();
    for m in &manifests {
        m.verify(&key).unwrap();
        let scores = &m.content.federated_evaluation["residential"].scores;
        assert_eq!((scores.sites, scores.windows), (2, 20 + 25));
        let nmae = (20.0 * 0.1 + 25.0 * 0.11) / 45.0;
        assert!((scores.nmae - nmae).abs() < 1e-4, "{}", scores.nmae);
    }
}
