//! The `gridfed` binary as a shell user runs it.

use std::process::{Command, Stdio};

/// `gridfed ... | head` must end quietly when the reader goes away, not panic.
#[test]
fn printing_into_a_closed_pipe_ends_quietly() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_gridfed"))
        .args(["bench", "market", "--agents", "8", "--repeat", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Close the read end before the command prints anything.
    drop(child.stdout.take());
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!stderr.contains("Broken pipe"), "{stderr}");
}

/// SIGTERM (what systemd and `kill` send) stops the coordinator cleanly: state closed, exit 0,
/// nothing left locked for the next start.
#[test]
fn sigterm_stops_the_coordinator_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = dir.path().join("coordinator.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = \"data\"\nlisten = \"127.0.0.1:{port}\"\nenrollment_tokens = \
             [\"token-123456\"]\ninsecure_plaintext = true\nfederation = []\n"
        ),
    )
    .unwrap();
    for start in 0..2 {
        let log = dir.path().join(format!("coordinator-{start}.log"));
        let mut child = Command::new(env!("CARGO_BIN_EXE_gridfed"))
            .args(["coordinator", "serve", "--config"])
            .arg(&config)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("coordinator serving")
        {
            assert!(std::time::Instant::now() < deadline, "never served");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        // SAFETY: kill(2) on our own child's pid has no memory effects.
        let sent = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        assert_eq!(sent, 0);
        let status = child.wait().unwrap();
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(status.success(), "start {start}: {status}\n{text}");
        assert!(text.contains("coordinator stopped"), "{text}");
    }
}
