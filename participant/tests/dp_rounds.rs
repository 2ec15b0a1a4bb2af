//! Differential privacy through real rounds over gRPC on 127.0.0.1: masked and encrypted rounds
//! carry the distributed noise (the committed model is the exact mean plus noise of the
//! accounted standard deviation), every version records what it spent, and the budget stops
//! training.

mod common;

use std::time::Duration;

use common::*;
use coordinator::config::DpSpec;
use coordinator::{FederationSpec, Protection};
use crypto::dp::RdpAccountant;

const N: usize = 5;
const MIN: usize = 4;

fn dp_spec(
    name: &str,
    d: usize,
    rounds: u64,
    protection: Protection,
    dp: DpSpec,
) -> FederationSpec {
    FederationSpec {
        min_participants: MIN,
        participants_per_round: N,
        dp: Some(dp),
        ..FederationSpec::vector(name, d as u64, protection, rounds)
    }
}

/// The unweighted mean of the five fixed updates (DP rounds weigh every site the same; the
/// updates' L2 norms, about 73, are below the clip, so nothing is clipped).
fn plain_mean(d: usize) -> Vec<f32> {
    let mut mean = vec![0f32; d];
    for i in 0..N {
        for (m, v) in mean.iter_mut().zip(delta(i, d)) {
            *m += v / N as f32;
        }
    }
    mean
}

/// Runs one DP round and checks the noise in the committed model: mean 0 and standard
/// deviation `z * clip * sqrt(N / MIN) / N` (each of N shares carries 1/MIN of the variance),
/// within 5% (20,000 coordinates: the estimate's standard error is 0.5%; a false failure
/// needs a 10-sigma deviation).
async fn noise_of_one_round(protection: Protection) {
    let dir = tempfile::tempdir().unwrap();
    let d = 20_000;
    let (z, clip) = (0.5, 200.0f32);
    let dp = DpSpec {
        noise_multiplier: z,
        clip_l2: clip,
        delta: 1e-5,
        max_epsilon: None,
    };
    let coord =
        RunningCoordinator::start(dir.path(), vec![dp_spec("load", d, 1, protection, dp)]).await;
    let summaries = join_all(
        spawn_fixed(&coord.url(), "load", N, d),
        Duration::from_secs(180),
    )
    .await;
    assert!(
        summaries.iter().all(|s| s.final_version == Some(1)),
        "{summaries:?}"
    );
    coord.stop().await;
    let (version, weights) = coordinator::load_latest(dir.path(), "load").unwrap();
    assert_eq!(version.participants, N as u64);
    let residual: Vec<f64> = weights
        .iter()
        .zip(plain_mean(d))
        .map(|(w, m)| f64::from(w - m))
        .collect();
    let mean = residual.iter().sum::<f64>() / d as f64;
    let std = (residual.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / d as f64).sqrt();
    let expected = z * f64::from(clip) * (N as f64 / MIN as f64).sqrt() / N as f64;
    assert!(
        (std / expected - 1.0).abs() < 0.05,
        "noise std {std}, expected {expected}"
    );
    assert!(
        mean.abs() < 5.0 * expected / (d as f64).sqrt(),
        "noise mean {mean}"
    );
    // The version records what it spent: one Gaussian release at multiplier z.
    let dp = version.dp.expect("a DP version records its accounting");
    let mut accountant = RdpAccountant::default();
    accountant.compose(1.0, z, 1);
    assert_eq!(dp.rounds, 1);
    assert!((dp.epsilon - accountant.epsilon(1e-5).0).abs() < 1e-12);
    assert_eq!(
        (dp.noise_multiplier, dp.clip_l2, dp.sampling_rate),
        (z, clip, 1.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn masked_rounds_carry_the_distributed_noise() {
    noise_of_one_round(Protection::Masked).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encrypted_rounds_carry_the_distributed_noise() {
    noise_of_one_round(Protection::Encrypted).await;
}

/// A budget that fits two rounds stops a five-round federation after two, and the spent
/// budget survives a restart of the coordinator.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_budget_stops_training_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let d = 2_000;
    let z = 2.0;
    let epsilon_after = |rounds: u64| {
        let mut a = RdpAccountant::default();
        a.compose(1.0, z, rounds);
        a.epsilon(1e-5).0
    };
    let budget = 0.5 * (epsilon_after(2) + epsilon_after(3));
    let dp = DpSpec {
        noise_multiplier: z,
        clip_l2: 100.0,
        delta: 1e-5,
        max_epsilon: Some(budget),
    };
    let spec = dp_spec("load", d, 5, Protection::Masked, dp);
    let coord = RunningCoordinator::start(dir.path(), vec![spec.clone()]).await;
    let summaries = join_all(
        spawn_fixed(&coord.url(), "load", N, d),
        Duration::from_secs(120),
    )
    .await;
    assert!(
        summaries.iter().all(|s| s.final_version == Some(2)),
        "{summaries:?}"
    );
    coord.stop().await;
    let (version, _) = coordinator::load_latest(dir.path(), "load").unwrap();
    assert_eq!(version.version, 2);
    let spent = version.dp.unwrap();
    assert!(spent.epsilon <= budget && (spent.epsilon - epsilon_after(2)).abs() < 1e-12);
    // Restarted with daemons ready to train, the federation stays done.
    let coord = RunningCoordinator::start(dir.path(), vec![spec]).await;
    let handles = spawn_fixed(&coord.url(), "load", N, d);
    tokio::time::sleep(Duration::from_secs(3)).await;
    coord.stop().await;
    for h in handles {
        h.abort();
    }
    let (version, _) = coordinator::load_latest(dir.path(), "load").unwrap();
    assert_eq!(
        version.version, 2,
        "no round beyond the budget after a restart"
    );
}

/// A site with `limits.max_epsilon` joins only a federation whose budget is at or below it,
/// and stops with a clear error (not a retry loop) otherwise.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_site_refuses_a_federation_weaker_than_its_max_epsilon() {
    use std::sync::Arc;

    use participant::{Daemon, SiteIdentity};
    let dir = tempfile::tempdir().unwrap();
    let d = 500;
    let budgeted = |name: &str, max_epsilon: Option<f64>| {
        dp_spec(
            name,
            d,
            1,
            Protection::Masked,
            DpSpec {
                noise_multiplier: 4.0,
                clip_l2: 100.0,
                delta: 1e-5,
                max_epsilon,
            },
        )
    };
    let plain = FederationSpec {
        min_participants: 3,
        ..FederationSpec::vector("open", d as u64, Protection::Masked, 1)
    };
    let coord = RunningCoordinator::start(
        dir.path(),
        vec![
            budgeted("strict", Some(2.0)),
            budgeted("loose", Some(20.0)),
            budgeted("unbounded", None),
            plain,
        ],
    )
    .await;
    let run = |tag: &str| {
        let mut settings = settings_at(
            participant::client::CoordinatorEndpoint::insecure_plaintext(&coord.url()).unwrap(),
            "careful-site",
            tag,
        );
        settings.limits.max_epsilon = Some(4.0);
        let daemon = Daemon::new(
            settings,
            Arc::new(SiteIdentity::generate().unwrap()),
            fixed(0, d, 10),
        )
        .unwrap();
        tokio::spawn(daemon.run(std::future::pending()))
    };
    for (tag, needle) in [
        ("loose", "allows epsilon up to 20"),
        ("unbounded", "no differential-privacy budget"),
        ("open", "no differential-privacy budget"),
    ] {
        let outcome = tokio::time::timeout(Duration::from_secs(20), run(tag))
            .await
            .unwrap()
            .unwrap();
        let err = outcome.expect_err("the site must refuse").to_string();
        assert!(
            err.contains(needle) && err.contains("max_epsilon"),
            "{tag}: {err}"
        );
    }
    // A federation within the limit is joined: the daemon is still running a while later.
    let strict = run("strict");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        !strict.is_finished(),
        "the site stays in a federation within its limit"
    );
    strict.abort();
    coord.stop().await;
}

/// A registry spec with `[privacy]` noise and budget: every signed manifest records what its
/// version spent, and the federation stops at the budget before its `rounds`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registered_versions_sign_their_epsilon_and_respect_the_budget() {
    let dir = tempfile::tempdir().unwrap();
    let coord = RunningCoordinator::start_registry(dir.path()).await;
    let z = 3.0;
    let epsilon_after = |rounds: u64| {
        let mut a = RdpAccountant::default();
        a.compose(1.0, z, rounds);
        a.epsilon(1e-5).0
    };
    let budget = 0.5 * (epsilon_after(2) + epsilon_after(3));
    let spec = format!(
        r#"
name = "dp-load"
target = "load"
sector = "residential"
context = 24
horizon = 24
protection = "masked"
rounds = 6

[architecture]
hidden = [4]

[training]
min_participants = 3

[privacy]
clip = 50.0
noise_multiplier = {z}
epsilon = {budget}
"#
    );
    let model = coord.run_fixed(&spec, 3).await;
    coord.stop().await;
    let registry = coordinator::registry::Registry::open(dir.path()).unwrap();
    let manifests = registry.versions(&model).unwrap();
    assert_eq!(manifests.len(), 2, "the budget allows two rounds of six");
    for (i, m) in manifests.iter().enumerate() {
        m.verify(&registry.public_key()).unwrap();
        let dp = m
            .content
            .lineage
            .privacy
            .differential_privacy
            .as_ref()
            .unwrap();
        assert_eq!(dp.rounds, i as u64 + 1);
        assert!((dp.epsilon - epsilon_after(i as u64 + 1)).abs() < 1e-12);
        assert_eq!((dp.noise_multiplier, dp.clip_l2, dp.delta), (z, 50.0, 1e-5));
        assert!(dp.epsilon <= budget);
    }
}
