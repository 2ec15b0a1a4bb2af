//! The coordinator's wall clock stepped while a round runs (NTP correcting a machine that
//! booted with a wrong clock, an operator setting the time, a VM resumed from a snapshot).
//! Rounds run on the coordinator's round clock (`coordinator::clock`): a step back an hour
//! must not hold a round with a dead participant for an hour, and a step forward an hour must
//! not expire the deadlines of participants still training. The step is process-wide, so this
//! file is its own test binary, and its other test (a site whose clock is behind) does not
//! read the wall clock the step moves.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use coordinator::{FederationSpec, Protection};
use participant::FixedUpdate;

const HOUR_MS: i64 = 3_600_000;
const LENGTH: usize = 1_000;

/// One masked round of four sites (three suffice) with both deadlines `deadline_ms`.
fn four_site_round(deadline_ms: u64) -> FederationSpec {
    FederationSpec {
        min_participants: 3,
        participants_per_round: 4,
        selection_timeout_ms: 30_000,
        keys_timeout_ms: deadline_ms,
        upload_timeout_ms: deadline_ms,
        ..FederationSpec::vector("load", LENGTH as u64, Protection::Masked, 1)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rounds_keep_their_deadlines_when_the_wall_clock_is_stepped() {
    if skip_in_postgres_pass("clock jumps") {
        return;
    }
    // Back an hour while one of four participants is dead (stalled in training): the upload
    // deadline still closes the round over the three others within seconds.
    let dir = tempfile::tempdir().unwrap();
    let spec = four_site_round(3_000);
    let coord = RunningCoordinator::start(dir.path(), vec![spec]).await;
    let survivors = spawn_fixed(&coord.url(), "load", 3, LENGTH);
    let training = TrainingStarts::default();
    let victim = spawn_daemon(
        &coord.url(),
        "victim",
        "load",
        Arc::new(Stalled(training.clone())),
    );
    training.wait_for(1, Duration::from_secs(30)).await;
    coordinator::clock::inject_wall_clock_step(-HOUR_MS);
    let summaries = join_all(survivors, Duration::from_secs(60)).await;
    coordinator::clock::inject_wall_clock_step(HOUR_MS);
    victim.abort();
    assert!(summaries.iter().all(|s| s.final_version == Some(1)));
    coord.stop().await;
    let (version, weights) = coordinator::load_latest(dir.path(), "load").unwrap();
    assert_eq!(version.participants, 3);
    assert!(max_abs_diff(&weights, &fixed_fedavg(3, LENGTH)) < 1e-4);

    // Forward an hour while all four train (1.5 s each, deadlines 20 s): nobody is cut off.
    let dir = tempfile::tempdir().unwrap();
    let spec = four_site_round(20_000);
    let coord = RunningCoordinator::start(dir.path(), vec![spec]).await;
    let training = TrainingStarts::default();
    let daemons: Vec<_> = (0..4)
        .map(|i| {
            let trainer = Arc::new(Slow(
                FixedUpdate {
                    delta: delta(i, LENGTH),
                    samples: SAMPLES[i],
                },
                Duration::from_millis(1_500),
                training.clone(),
            ));
            spawn_daemon(&coord.url(), &format!("site-{i}"), "load", trainer)
        })
        .collect();
    training.wait_for(4, Duration::from_secs(30)).await;
    coordinator::clock::inject_wall_clock_step(HOUR_MS);
    let summaries = join_all(daemons, Duration::from_secs(60)).await;
    coordinator::clock::inject_wall_clock_step(-HOUR_MS);
    assert!(summaries.iter().all(|s| s.final_version == Some(1)));
    coord.stop().await;
    let (version, weights) = coordinator::load_latest(dir.path(), "load").unwrap();
    assert_eq!(version.participants, 4, "a deadline expired early");
    assert_eq!(version.round, 1);
    assert!(max_abs_diff(&weights, &fixed_fedavg(4, LENGTH)) < 1e-4);
}

/// A site whose clock is two hours behind the coordinator's signs its requests with nonces
/// (unix microseconds) below the coordinator's floor (its start time). It is refused once,
/// told the floor (`proto::auth::NONCE_FLOOR_METADATA`), continues above it and takes part;
/// before, it was refused until its clock caught up. A floor absurdly far ahead is ignored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_site_whose_clock_is_behind_catches_up_with_the_nonce_floor() {
    let dir = tempfile::tempdir().unwrap();
    let spec = FederationSpec {
        min_participants: 3,
        participants_per_round: 3,
        ..FederationSpec::vector("load", LENGTH as u64, Protection::Masked, 1)
    };
    let coord = RunningCoordinator::start(dir.path(), vec![spec]).await;
    let mut daemons = spawn_fixed(&coord.url(), "load", 2, LENGTH);
    let behind = Arc::new(participant::SiteIdentity::generate().unwrap());
    behind.inject_clock_skew(-2 * HOUR_MS * 1_000);
    assert!(
        !behind.raise_nonce_floor(u64::MAX / 2),
        "a floor centuries ahead must not move the counter"
    );
    let daemon = participant::Daemon::new(
        settings(&coord.url(), "site-2", "load"),
        behind,
        fixed(2, LENGTH, SAMPLES[2]),
    )
    .unwrap();
    daemons.push(tokio::spawn(daemon.run(std::future::pending())));
    let summaries = join_all(daemons, Duration::from_secs(60)).await;
    assert!(summaries.iter().all(|s| s.final_version == Some(1)));
    assert!(summaries[2].reconnects >= 1, "{:?}", summaries[2]);
    coord.stop().await;
    let (version, weights) = coordinator::load_latest(dir.path(), "load").unwrap();
    assert_eq!(version.participants, 3);
    assert!(max_abs_diff(&weights, &fixed_fedavg(3, LENGTH)) < 1e-4);
}
