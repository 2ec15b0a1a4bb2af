//! A participant killed at each phase of a round (issue 15's fault matrix, participant side).
//!
//! The victim is a separate process (this test binary re-run as [`victim_process`]) running a
//! real daemon that aborts, as `kill -9` would, at a crash point of `proto::faults`: before
//! each message of the round it would send, and halfway through its upload. The survivors run
//! in this process against a real coordinator over loopback gRPC. Each case must end with the
//! federation's version committed and the survivors finished, and the aggregate must be the
//! exact FedAvg of whoever the protocol says is in it: the survivors alone when the victim died
//! before its input arrived, everyone when it died after (its input is unmasked or decrypted
//! without it). Encrypted key generation needs every member: a victim lost there fails that
//! round, and the next one, without it, makes the version.

mod common;

use std::time::{Duration, Instant};

use common::*;
use coordinator::{FederationSpec, Protection};

const SURVIVORS: usize = 4;
const VICTIM: usize = SURVIVORS;
const LENGTH: usize = 2_000;
const VICTIM_URL: &str = "GRIDFED_TEST_VICTIM_URL";

/// Not a test of its own: the victim's process (see the module docs). Runs only when the
/// parent test sets [`VICTIM_URL`].
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by the dropout tests as their victim process"]
async fn victim_process() {
    let Ok(url) = std::env::var(VICTIM_URL) else {
        return;
    };
    let daemon = spawn_daemon(
        &url,
        "victim",
        "load",
        fixed(VICTIM, LENGTH, SAMPLES[VICTIM]),
    );
    let outcome = daemon.await;
    panic!("the victim was meant to crash, but its daemon ended: {outcome:?}");
}

/// Runs one round with the victim crashing at `point` and checks the result; `victim_counts`
/// says whether its update must be in the aggregate.
async fn kill_victim_at(protection: Protection, point: &str, victim_counts: bool) {
    // Losing a member in key generation fails that round; the next one must leave the dead
    // member out (it has not polled since), not select it again until its liveness lapses.
    let failed_rounds = u64::from(
        point.ends_with("he_commit") || point.ends_with("he_reveal") || point.ends_with("he_deal"),
    );
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let spec = FederationSpec {
        min_participants: SURVIVORS,
        participants_per_round: SURVIVORS + 1,
        // The first round starts once all five have joined (well inside this); a round after
        // a failed one starts with the four survivors when it runs out.
        selection_timeout_ms: 4_000,
        keys_timeout_ms: 3_000,
        upload_timeout_ms: 4_000,
        unmask_timeout_ms: 3_000,
        ..FederationSpec::vector("load", LENGTH as u64, protection, 1)
    };
    let coord = RunningCoordinator::start(dir.path(), vec![spec]).await;
    // The victim enrolls first, so it is member 1: an encrypted round asks the first
    // `threshold` members to decrypt, and the victim must be among them.
    let mut victim = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["victim_process", "--exact", "--ignored", "--nocapture"])
        .env(VICTIM_URL, coord.url())
        .env(proto::faults::CRASH_AT_ENV, point)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while coord.metrics.participants_enrolled() < 1 {
        assert!(
            Instant::now() < deadline,
            "{point}: the victim never enrolled"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let survivors: Vec<_> = (0..SURVIVORS)
        .map(|i| {
            spawn_daemon(
                &coord.url(),
                &format!("site-{i}"),
                "load",
                fixed(i, LENGTH, SAMPLES[i]),
            )
        })
        .collect();
    let summaries = join_all(survivors, Duration::from_secs(90)).await;
    // The victim died at its crash point (SIGABRT), not of something else.
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = victim.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "{point}: the victim never crashed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut said = String::new();
    std::io::Read::read_to_string(&mut victim.stderr.take().unwrap(), &mut said).unwrap();
    assert!(
        said.contains(&format!("crashing at {point}")),
        "{point}: the victim ended otherwise ({status}): {said}"
    );
    assert!(
        summaries.iter().all(|s| s.final_version == Some(1)),
        "{point}: {summaries:?}"
    );
    coord.stop().await;
    let (version, weights) = coordinator::load_latest(dir.path(), "load").unwrap();
    let counted = if victim_counts {
        SURVIVORS + 1
    } else {
        SURVIVORS
    };
    assert_eq!(version.participants, counted as u64, "{point}");
    assert_eq!(
        version.round,
        1 + failed_rounds,
        "{point}: the version's round"
    );
    let err = max_abs_diff(&weights, &fixed_fedavg(counted, LENGTH));
    assert!(
        err < 1e-4,
        "{point}: the aggregate differs from the FedAvg of {counted} by {err}"
    );
    eprintln!("{point}: {:.1} s", started.elapsed().as_secs_f64());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn masked_rounds_survive_a_participant_killed_at_every_phase() {
    if skip_in_postgres_pass("dropouts") {
        return;
    }
    for (point, counts) in [
        ("participant:advertise_keys", false),
        ("participant:share_keys", false),
        ("participant:masked_input", false),
        ("participant:upload", false),
        ("participant:unmask", true),
    ] {
        kill_victim_at(Protection::Masked, point, counts).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encrypted_rounds_survive_a_participant_killed_at_every_phase() {
    if skip_in_postgres_pass("dropouts") {
        return;
    }
    for (point, counts) in [
        ("participant:he_commit", false),
        ("participant:he_reveal", false),
        ("participant:he_deal", false),
        ("participant:he_input", false),
        ("participant:upload", false),
        ("participant:he_decrypt", true),
    ] {
        kill_victim_at(Protection::Encrypted, point, counts).await;
    }
}
