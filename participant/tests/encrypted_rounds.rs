//! Encrypted rounds (threshold RLWE, `crypto::he`) over real gRPC on 127.0.0.1: the result equals
//! the plaintext FedAvg, a decryptor dying after its upload still lets the round finish with `t`
//! members, and tampered ciphertexts and partial decryptions are refused.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::*;
use coordinator::{FederationSpec, Protection};
use participant::client::{FederationLink, WireTap, connect};
use participant::encrypted::EncryptedSession;
use participant::{Daemon, ParticipantError, SiteIdentity};
use prost::Message;
use proto::v1::{self as pb, round_task};

/// Participants of every test here (weights `SAMPLES[..N]`).
const N: usize = 5;

fn spec(name: &str, d: usize, rounds: u64, threshold: u32) -> FederationSpec {
    FederationSpec {
        min_participants: 4,
        // Wait for all five: a round may otherwise start before the last one has enrolled.
        participants_per_round: N,
        threshold,
        ..FederationSpec::vector(name, d as u64, Protection::Encrypted, rounds)
    }
}

fn expected(d: usize, rounds: f32) -> Vec<f32> {
    fixed_fedavg(N, d).iter().map(|v| rounds * v).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encrypted_rounds_equal_plaintext_fedavg() {
    let dir = tempfile::tempdir().unwrap();
    let (n, d) = (N, 3_000);
    let coord = RunningCoordinator::start(dir.path(), vec![spec("pv", d, 2, 0)]).await;
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
        (2, n as u64, Protection::Encrypted)
    );
    // Limbs carry the masked mode's 32-bit words exactly: the same fixed-point bound.
    let err = max_abs_diff(&weights, &expected(d, 2.0));
    assert!(
        err < 1e-4,
        "encrypted result differs from plaintext FedAvg by {err}"
    );
}

/// Kills the first daemon (of those sharing it) that starts decrypting: it panics when that
/// daemon asks for the aggregate, i.e. after its ciphertext upload and before any partial.
struct DieBeforeDecrypting(Arc<AtomicBool>);

impl WireTap for DieBeforeDecrypting {
    fn outgoing(&self, method: &'static str, encoded: &[u8]) {
        if method == "DownloadWeights"
            && pb::DownloadRequest::decode(encoded).is_ok_and(|r| r.aggregate_round != 0)
            && !self.0.swap(true, Ordering::SeqCst)
        {
            panic!("decryptor dies before decrypting (test)");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decryptor_dying_after_upload_leaves_threshold_to_finish() {
    let dir = tempfile::tempdir().unwrap();
    let d = 1_000;
    let spec = FederationSpec {
        // The first decryption request waits this long for the dead member, then goes to t
        // members that are alive.
        unmask_timeout_ms: 1_500,
        ..spec("load", d, 1, 3)
    };
    let coord = RunningCoordinator::start(dir.path(), vec![spec]).await;
    let died = Arc::new(AtomicBool::new(false));
    let handles: Vec<_> = (0..N)
        .map(|i| {
            let identity = Arc::new(SiteIdentity::generate().unwrap());
            let daemon = Daemon::new(
                settings(&coord.url(), &format!("site-{i}"), "load"),
                identity,
                fixed(i, d, SAMPLES[i]),
            )
            .unwrap()
            .with_tap(Arc::new(DieBeforeDecrypting(died.clone())));
            tokio::spawn(daemon.run(std::future::pending()))
        })
        .collect();
    let mut finished = 0;
    for handle in handles {
        match tokio::time::timeout(Duration::from_secs(60), handle)
            .await
            .expect("daemon timed out")
        {
            Ok(summary) => {
                assert_eq!(summary.unwrap().final_version, Some(1));
                finished += 1;
            }
            Err(e) => assert!(e.is_panic(), "{e}"),
        }
    }
    assert!(died.load(Ordering::SeqCst), "no decryptor died");
    assert_eq!(finished, N - 1);
    coord.stop().await;
    let (version, weights) = coordinator::load_latest(dir.path(), "load").unwrap();
    // The dead member's ciphertext was in the aggregate before it died.
    assert_eq!((version.version, version.participants), (1, 5));
    let err = max_abs_diff(&weights, &expected(d, 1.0));
    assert!(err < 1e-4, "differs from plaintext FedAvg by {err}");
}

fn refused_as_invalid(result: Result<pb::SubmitReceipt, ParticipantError>, what: &str) {
    match result {
        Err(ParticipantError::Status(status)) => {
            assert_eq!(
                status.code(),
                tonic::Code::InvalidArgument,
                "{what}: {status}"
            )
        }
        other => panic!("{what} was not refused: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_ciphertext_and_partial_decryption_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = 500;
    let last = N - 1;
    // Threshold 5 of 5: the hand-driven participant below is always asked to decrypt.
    let coord = RunningCoordinator::start(dir.path(), vec![spec("grid", d, 1, 5)]).await;
    let handles: Vec<_> = (0..last)
        .map(|i| {
            spawn_daemon(
                &coord.url(),
                &format!("site-{i}"),
                "grid",
                fixed(i, d, SAMPLES[i]),
            )
        })
        .collect();

    // The fifth participant runs the protocol by hand and tampers with its frames first.
    let identity = Arc::new(SiteIdentity::generate().unwrap());
    let client = connect(&coord.endpoint()).await.unwrap();
    let mut link = FederationLink::enroll(client, identity.clone(), TOKEN, "forger", None)
        .await
        .unwrap();
    let joined = link.join("grid").await.unwrap();
    let id = participant::secagg_id(link.participant_id()).unwrap();
    let fed = joined.federation.clone();
    let mut session: Option<EncryptedSession> = None;
    let mut train_task: Option<pb::TrainTask> = None;
    let mut refusals = 0;
    loop {
        let task = link.task(&fed, 2_000).await.unwrap();
        let step = match task.task.unwrap() {
            round_task::Task::Train(train) => {
                let (s, commitment) = EncryptedSession::join(
                    identity.signing_key(),
                    id,
                    &joined.coordinator_key,
                    &train,
                )
                .unwrap();
                session = Some(s);
                train_task = Some(train.clone());
                let phase = pb::SecAggPhase::HeCommit;
                link.submit(&fed, train.round, phase, commitment.unwrap())
                    .await
                    .unwrap();
                continue;
            }
            round_task::Task::Step(step) => step,
            round_task::Task::Idle(_) => continue,
            round_task::Task::Done(_) => break,
        };
        let s = session.as_mut().unwrap();
        let round = step.round;
        match pb::SecAggPhase::try_from(step.phase).unwrap() {
            pb::SecAggPhase::HeReveal => {
                let share = s.reveal(&step.payload).unwrap();
                link.submit(&fed, round, pb::SecAggPhase::HeReveal, share)
                    .await
                    .unwrap();
            }
            pb::SecAggPhase::HeDeal => {
                let fragments = s.deal(&step.payload).unwrap();
                link.submit(&fed, round, pb::SecAggPhase::HeDeal, fragments)
                    .await
                    .unwrap();
            }
            pb::SecAggPhase::HeInput => {
                s.prepare_input(&step.payload).unwrap();
                let sealed = s.encrypt(&delta(last, d), SAMPLES[last] as u32).unwrap();
                let mut tampered = sealed.clone();
                let middle = tampered.len() / 2;
                tampered[middle] ^= 0x10;
                let kind = pb::ElementType::Ciphertext;
                refused_as_invalid(
                    link.upload(&fed, round, kind, 0, tampered).await,
                    "tampered ciphertext",
                );
                // A well-formed ciphertext under the right key, signed by another identity.
                let forger = SiteIdentity::generate().unwrap();
                let train = train_task.as_ref().unwrap();
                let outsider = u32::MAX;
                let (mut forged, _) = EncryptedSession::join(
                    forger.signing_key(),
                    outsider,
                    &joined.coordinator_key,
                    train,
                )
                .unwrap();
                forged.prepare_input(&step.payload).unwrap();
                let forged = forged
                    .encrypt(&delta(last, d), SAMPLES[last] as u32)
                    .unwrap();
                refused_as_invalid(
                    link.upload(&fed, round, kind, 0, forged).await,
                    "ciphertext signed by another key",
                );
                refusals += 1;
                link.upload(&fed, round, kind, 0, sealed).await.unwrap();
            }
            pb::SecAggPhase::HeDecrypt => {
                let request = s.decrypt_request(&step.payload).unwrap();
                let aggregate = link
                    .download_aggregate(&fed, round, &request)
                    .await
                    .unwrap();
                let partial = s.partial_decrypt(&request, &aggregate).unwrap();
                let mut tampered = partial.clone();
                let end = tampered.len() - 100;
                tampered[end] ^= 0x01;
                let kind = pb::ElementType::PartialDecryption;
                refused_as_invalid(
                    link.upload(&fed, round, kind, 0, tampered).await,
                    "tampered partial decryption",
                );
                refusals += 1;
                link.upload(&fed, round, kind, 0, partial).await.unwrap();
            }
            other => panic!("unexpected phase {other:?}"),
        }
    }
    assert_eq!(refusals, 2);
    let summaries = join_all(handles, Duration::from_secs(60)).await;
    assert!(summaries.iter().all(|s| s.final_version == Some(1)));
    coord.stop().await;
    let (version, weights) = coordinator::load_latest(dir.path(), "grid").unwrap();
    assert_eq!((version.version, version.participants), (1, 5));
    let err = max_abs_diff(&weights, &expected(d, 1.0));
    assert!(err < 1e-4, "differs from plaintext FedAvg by {err}");
}
