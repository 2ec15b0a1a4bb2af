//! Fault injection against the real binary: the coordinator is crashed (abort, as `kill -9`: no
//! destructors, no flush) at every phase of masked and encrypted training rounds, of their
//! federated-evaluation rounds, just before and after a version commit, while recording
//! evaluation scores and while writing a registry manifest (`GRIDFED_CRASH_AT`, see
//! `coordinator::faults`). After each crash it is restarted on the same address and data; the
//! participant daemons, never restarted, reconnect by themselves, and the federation must
//! finish with every version exactly once, in round order, its weights the exact FedAvg of the
//! fixed updates, every artifact matching its digest and every version scored. A torn store
//! file is refused at start with a message naming it, not a panic. A full disk (a size-limited
//! tmpfs under the data directory) fails the version commit that does not fit, loses nothing,
//! and the federation resumes once there is room.

#[path = "../participant/tests/common/mod.rs"]
mod common;
#[path = "support/process.rs"]
mod process;

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use coordinator::VersionEvaluation;
use participant::FixedUpdate;
use process::{Reaped, free_port};

const PARTICIPANTS: usize = 4;
const LENGTH: usize = 300;
const ROUNDS: u64 = 2;

/// These tests drive the binary on redb (the PostgreSQL pass skips them, saying so).
fn second_pass() -> bool {
    skip_in_postgres_pass("faults")
}

fn spawn(config: &Path, log: &Path, crash_at: Option<&str>) -> Reaped {
    let mut command = Command::new(env!("CARGO_BIN_EXE_gridfed"));
    command
        .args(["coordinator", "serve", "--config"])
        .arg(config)
        .env("RUST_LOG", "info")
        .env_remove(coordinator::faults::CRASH_AT_ENV)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap());
    if let Some(point) = crash_at {
        command.env(coordinator::faults::CRASH_AT_ENV, point);
    }
    Reaped(command.spawn().expect("starting gridfed coordinator serve"))
}

fn config(dir: &Path, port: u16, protection: &str) -> std::path::PathBuf {
    federation_config(dir, port, protection, LENGTH, ROUNDS, true)
}

/// coordinator.toml of one federation `load` of `length` zeros, `rounds` rounds.
fn federation_config(
    dir: &Path,
    port: u16,
    protection: &str,
    length: usize,
    rounds: u64,
    evaluate: bool,
) -> std::path::PathBuf {
    let path = dir.join("coordinator.toml");
    std::fs::write(
        &path,
        format!(
            r#"data_dir = "data"
listen = "127.0.0.1:{port}"
enrollment_tokens = ["{TOKEN}"]
insecure_plaintext = true
long_poll_ms = 1000

[[federation]]
name = "load"
tag = "load"
protection = "{protection}"
rounds = {rounds}
min_participants = {PARTICIPANTS}
evaluate = {evaluate}
keys_timeout_ms = 20000
upload_timeout_ms = 20000
unmask_timeout_ms = 20000
initial_weights = {{ zeros = {length} }}
"#
        ),
    )
    .unwrap();
    path
}

/// Waits for `child` to exit by itself (the crash point) and returns how it ended.
fn wait_exit(child: &mut Reaped, limit: Duration, log: &Path) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "the crash point was never reached:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Crashes the coordinator at `point`, restarts it, and checks the federation's outcome.
async fn crash_and_recover(protection: &str, point: &str) {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = config(dir.path(), port, protection);
    let (crash_log, log) = (dir.path().join("crash.log"), dir.path().join("after.log"));
    let mut crashing = spawn(&config, &crash_log, Some(point));
    let url = format!("http://127.0.0.1:{port}");
    let handles: Vec<_> = (0..PARTICIPANTS)
        .map(|i| {
            let trainer = ScoredFixed(
                FixedUpdate {
                    delta: delta(i, LENGTH),
                    samples: SAMPLES[i],
                },
                fixed_scores(i),
            );
            spawn_daemon(&url, &format!("site-{i}"), "load", Arc::new(trainer))
        })
        .collect();
    let status = tokio::task::block_in_place(|| {
        wait_exit(&mut crashing, Duration::from_secs(90), &crash_log)
    });
    assert!(
        !status.success(),
        "{point}: exited cleanly instead of crashing"
    );
    let crash_text = std::fs::read_to_string(&crash_log).unwrap();
    assert!(
        crash_text.contains(&format!("crashing at {}", point.split('@').next().unwrap())),
        "{point}: {crash_text}"
    );

    let mut restarted = spawn(&config, &log, None);
    let summaries = join_all(handles, Duration::from_secs(120)).await;
    assert!(
        summaries.iter().all(|s| s.final_version == Some(ROUNDS)),
        "{point}: {summaries:?}\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    // SAFETY: kill(2) on our own child's pid has no memory effects.
    unsafe { libc::kill(restarted.0.id() as libc::pid_t, libc::SIGTERM) };
    let stopped = restarted.0.wait().unwrap();
    assert!(
        stopped.success(),
        "{point}: restarted coordinator {stopped}"
    );

    let data = dir.path().join("data");
    let storage = coordinator::storage::Storage::open(&Default::default(), &data).unwrap();
    let versions = coordinator::store::StateStore::in_storage(&storage)
        .unwrap()
        .versions("load")
        .unwrap();
    assert_eq!(
        versions.iter().map(|v| v.version).collect::<Vec<_>>(),
        (0..=ROUNDS).collect::<Vec<_>>(),
        "{point}: every version exactly once"
    );
    let rounds: Vec<u64> = versions[1..].iter().map(|v| v.round).collect();
    assert!(
        rounds.windows(2).all(|w| w[0] < w[1]),
        "{point}: {rounds:?}"
    );
    let artifacts = storage.artifacts().unwrap();
    for v in &versions {
        // `get` verifies the digest.
        let bytes = artifacts.get(&v.sha256).unwrap();
        let weights = proto::chunk::bytes_to_f32(&bytes).unwrap();
        let expected: Vec<f32> = fixed_fedavg(PARTICIPANTS, LENGTH)
            .iter()
            .map(|x| v.version as f32 * x)
            .collect();
        assert!(
            max_abs_diff(&weights, &expected) < 1e-3,
            "{point}: version {} is not {} x FedAvg",
            v.version,
            v.version
        );
        if v.version >= 1 {
            assert!(v.participants == PARTICIPANTS as u64, "{point}: {v:?}");
            assert!(
                matches!(v.evaluation, VersionEvaluation::Scored { .. }),
                "{point}: version {} not scored: {:?}",
                v.version,
                v.evaluation
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn masked_rounds_survive_a_crash_at_every_phase_and_commit() {
    if second_pass() {
        return;
    }
    for point in [
        "enter:advertise_keys",
        "enter:share_keys",
        "enter:masked_input",
        "enter:unmask",
        "commit:before",
        "commit:after",
        // The evaluation round that scores version 1.
        "enter:masked_input@2",
        "evaluation:record",
    ] {
        crash_and_recover("masked", point).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encrypted_rounds_survive_a_crash_at_every_phase() {
    if second_pass() {
        return;
    }
    for point in [
        "enter:he_commit",
        "enter:he_reveal",
        "enter:he_deal",
        "enter:he_input",
        "enter:he_decrypt",
        "enter:he_decrypt@2",
    ] {
        crash_and_recover("encrypted", point).await;
    }
}

/// A store file cut short (a torn write the file system did not protect against) is refused at
/// start with the file named; nothing panics.
#[test]
fn a_torn_state_file_is_refused_with_its_name() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = config(dir.path(), port, "masked");
    let log = dir.path().join("first.log");
    let mut first = spawn(&config, &log, None);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("coordinator serving")
    {
        assert!(Instant::now() < deadline, "never served");
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: kill(2) on our own child's pid has no memory effects.
    unsafe { libc::kill(first.0.id() as libc::pid_t, libc::SIGTERM) };
    assert!(first.0.wait().unwrap().success());
    let state = dir.path().join("data/state.redb");
    let len = std::fs::metadata(&state).unwrap().len();
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&state)
        .unwrap();
    file.set_len(len / 3).unwrap();
    drop(file);
    let output = Command::new(env!("CARGO_BIN_EXE_gridfed"))
        .args(["coordinator", "serve", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(stderr.contains("state.redb"), "{stderr}");
}

/// A tmpfs of a given size mounted for the test, unmounted however the test ends.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    /// `None` where this process may not mount (not root, no CAP_SYS_ADMIN): said loudly.
    fn mount(at: &Path, size: &str) -> Option<Self> {
        std::fs::create_dir_all(at).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .stderr(Stdio::null())
            .status();
        match status {
            Ok(s) if s.success() => Some(Self(at.to_path_buf())),
            _ => {
                eprintln!(
                    "SKIPPED full-disk test: cannot mount a size-limited tmpfs here (needs root)"
                );
                None
            }
        }
    }

    fn resize(&self, size: &str) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,size={size}"), "tmpfs"])
            .arg(&self.0)
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// The data directory's file system fills up mid-federation: the version commit that does
/// not fit fails, is logged, and loses nothing already committed; the coordinator keeps
/// running, and once there is room again the federation finishes with every version exactly
/// once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_fails_the_commit_and_the_federation_resumes_when_there_is_room() {
    if second_pass() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // Room for the stores and version 0 and 1's weights (400 KB each), not for version 2.
    let Some(disk) = Tmpfs::mount(&dir.path().join("data"), "1200k") else {
        return;
    };
    let (length, rounds) = (100_000, 4u64);
    let port = free_port();
    let config = federation_config(dir.path(), port, "masked", length, rounds, false);
    let log = dir.path().join("coordinator.log");
    let mut coordinator = spawn(&config, &log, None);
    let url = format!("http://127.0.0.1:{port}");
    let handles: Vec<_> = (0..PARTICIPANTS)
        .map(|i| {
            let trainer = Arc::new(FixedUpdate {
                delta: delta(i, length),
                samples: SAMPLES[i],
            });
            spawn_daemon(&url, &format!("site-{i}"), "load", trainer)
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("No space left on device") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the disk never filled up:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        coordinator.0.try_wait().unwrap().is_none(),
        "the coordinator stopped on a full disk"
    );
    disk.resize("64m");
    let summaries = join_all(handles, Duration::from_secs(120)).await;
    assert!(
        summaries.iter().all(|s| s.final_version == Some(rounds)),
        "{summaries:?}"
    );
    // SAFETY: kill(2) on our own child's pid has no memory effects.
    unsafe { libc::kill(coordinator.0.id() as libc::pid_t, libc::SIGTERM) };
    assert!(coordinator.0.wait().unwrap().success());
    let storage =
        coordinator::storage::Storage::open(&Default::default(), &dir.path().join("data")).unwrap();
    let versions = coordinator::store::StateStore::in_storage(&storage)
        .unwrap()
        .versions("load")
        .unwrap();
    assert_eq!(
        versions.iter().map(|v| v.version).collect::<Vec<_>>(),
        (0..=rounds).collect::<Vec<_>>()
    );
    let artifacts = storage.artifacts().unwrap();
    for v in &versions {
        let weights = proto::chunk::bytes_to_f32(&artifacts.get(&v.sha256).unwrap()).unwrap();
        let expected: Vec<f32> = fixed_fedavg(PARTICIPANTS, length)
            .iter()
            .map(|x| v.version as f32 * x)
            .collect();
        assert!(
            max_abs_diff(&weights, &expected) < 1e-3,
            "version {}",
            v.version
        );
    }
    // No partial copies left behind by the failed writes.
    let leftovers = std::fs::read_dir(dir.path().join("data/artifacts"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".tmp")
        })
        .count();
    assert_eq!(leftovers, 0);
    drop(storage);
    drop(disk);
}

/// The coordinator crashes (kill -9) while writing a registry manifest: after the restart every
/// version of the published model has exactly one signed manifest that verifies, in version
/// order. Unlike the tests above it runs in both passes: on redb, then on PostgreSQL (the
/// coordinator binary configured with `[storage] backend = "postgres"`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_while_signing_a_registry_manifest_loses_no_manifest() {
    use proto::registry as rpb;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = dir.path().join("coordinator.toml");
    let storage =
        match coordinator::storage::StorageConfig::for_in_process(&dir.path().join("data")) {
            coordinator::storage::StorageConfig::Postgres { url, schema, .. } => {
                format!(
                    "\n[storage]\nbackend = \"postgres\"\nurl = \"{url}\"\nschema = \"{schema}\"\n"
                )
            }
            coordinator::storage::StorageConfig::Redb => String::new(),
        };
    std::fs::write(
        &config,
        format!(
            "data_dir = \"data\"\nlisten = \"127.0.0.1:{port}\"\nenrollment_tokens = \
             [\"{TOKEN}\"]\noperator_tokens = [\"{OPERATOR}\"]\ninsecure_plaintext = true\n\
             long_poll_ms = 1000\nfederation = []\n{storage}"
        ),
    )
    .unwrap();
    let spec = "name = \"res-load\"\ntarget = \"load\"\nsector = \"residential\"\ncontext = 24\n\
                horizon = 24\nprotection = \"plain\"\nrounds = 3\n\n[architecture]\nhidden = [4]\n\n\
                [training]\nmin_participants = 2\n";
    let (crash_log, log) = (dir.path().join("crash.log"), dir.path().join("after.log"));
    // The second manifest write: version 1's is signed, version 2's is being written.
    let mut crashing = spawn(&config, &crash_log, Some("registry:manifest@2"));
    let url = format!("http://127.0.0.1:{port}");
    let registry = |url: String| async move {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match tonic::transport::Endpoint::from_shared(url.clone())
                .unwrap()
                .connect()
                .await
            {
                Ok(channel) => return rpb::registry_client::RegistryClient::new(channel),
                Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await
                }
                Err(e) => panic!("coordinator unreachable: {e}"),
            }
        }
    };
    let published = registry(url.clone())
        .await
        .publish_spec(authed(
            rpb::PublishSpecRequest {
                spec_toml: spec.into(),
            },
            OPERATOR,
        ))
        .await
        .unwrap()
        .into_inner();
    let d = published.parameters as usize;
    let handles: Vec<_> = (0..2)
        .map(|i| {
            let trainer = ScoredFixed(
                FixedUpdate {
                    delta: delta(i, d),
                    samples: SAMPLES[i],
                },
                fixed_scores(i),
            );
            spawn_daemon(
                &url,
                &format!("site-{i}"),
                &published.tag,
                Arc::new(trainer),
            )
        })
        .collect();
    let status = tokio::task::block_in_place(|| {
        wait_exit(&mut crashing, Duration::from_secs(90), &crash_log)
    });
    assert!(!status.success());
    let _restarted = spawn(&config, &log, None);
    let summaries = join_all(handles, Duration::from_secs(120)).await;
    assert!(
        summaries.iter().all(|s| s.final_version == Some(3)),
        "{summaries:?}"
    );
    let listed = registry(url)
        .await
        .list_versions(authed(
            rpb::ListVersionsRequest {
                model: "res-load".into(),
            },
            OPERATOR,
        ))
        .await
        .unwrap()
        .into_inner();
    let key: [u8; 32] = listed.coordinator_key.as_slice().try_into().unwrap();
    let numbers: Vec<u64> = listed
        .versions
        .iter()
        .map(|v| {
            let m: coordinator::registry::VersionManifest =
                serde_json::from_str(&v.manifest_json).unwrap();
            m.verify(&key).unwrap();
            m.content.version
        })
        .collect();
    assert_eq!(numbers, [1, 2, 3]);
}
