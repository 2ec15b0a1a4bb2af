//! The `gridfed` binary as a shell user runs it.

use std::process::{Command, Stdio};

#[path = "support/process.rs"]
#[allow(dead_code)]
mod process;
use process::{free_port, free_port_pair};

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

/// A free loopback port and a coordinator.toml in `dir` serving on it (plaintext, one
/// enrollment token, no federations).
fn coordinator_config(dir: &std::path::Path) -> (std::path::PathBuf, u16) {
    let port = free_port();
    let config = dir.join("coordinator.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = \"data\"\nlisten = \"127.0.0.1:{port}\"\nenrollment_tokens = \
             [\"token-123456\"]\ninsecure_plaintext = true\nfederation = []\n"
        ),
    )
    .unwrap();
    (config, port)
}

/// Starts `gridfed coordinator serve` logging into `log` and waits until it serves.
fn serve(config: &std::path::Path, log: &std::path::Path) -> std::process::Child {
    let child = Command::new(env!("CARGO_BIN_EXE_gridfed"))
        .args(["coordinator", "serve", "--config"])
        .arg(config)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !std::fs::read_to_string(log)
        .unwrap_or_default()
        .contains("coordinator serving")
    {
        assert!(std::time::Instant::now() < deadline, "never served");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child
}

/// SIGTERM (what systemd and `kill` send) stops the coordinator cleanly: state closed, exit 0,
/// nothing left locked for the next start.
#[test]
fn sigterm_stops_the_coordinator_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let (config, _) = coordinator_config(dir.path());
    for start in 0..2 {
        let log = dir.path().join(format!("coordinator-{start}.log"));
        let mut child = serve(&config, &log);
        // SAFETY: kill(2) on our own child's pid has no memory effects.
        let sent = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        assert_eq!(sent, 0);
        let status = child.wait().unwrap();
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(status.success(), "start {start}: {status}\n{text}");
        assert!(text.contains("coordinator stopped"), "{text}");
    }
}

/// A one-site synthetic fleet in `dir/fleet` and a participant.toml for it that enrolls with a
/// token the coordinator on `port` refuses.
fn wrong_token_participant(dir: &std::path::Path, port: u16) -> std::path::PathBuf {
    let synth = Command::new(env!("CARGO_BIN_EXE_gridfed"))
        .args(["datasets", "synth", "--sites", "1", "--days", "30", "--out"])
        .arg(dir.join("fleet"))
        .output()
        .unwrap();
    assert!(synth.status.success(), "{synth:?}");
    let participant = dir.join("participant.toml");
    std::fs::write(
        &participant,
        format!(
            "coordinator = \"http://127.0.0.1:{port}\"\ninsecure_plaintext = true\n\
             key_file = \"site.key\"\nenrollment_token = \"not-the-token\"\n\
             site_label = \"s\"\nfederation_tag = \"load\"\n\n[data]\ndir = \"fleet\"\n\
             site_id = \"site-000\"\ntarget = \"load\"\n"
        ),
    )
    .unwrap();
    participant
}

/// A wrong enrollment token is a permanent refusal: the daemon does not retry forever, it
/// says what to fix and exits with status 3 (systemd `RestartPreventExitStatus=3`).
#[test]
fn a_refused_enrollment_token_exits_with_its_own_status() {
    let dir = tempfile::tempdir().unwrap();
    let (config, port) = coordinator_config(dir.path());
    let mut coordinator = serve(&config, &dir.path().join("coordinator.log"));
    let participant = wrong_token_participant(dir.path(), port);
    let output = Command::new(env!("CARGO_BIN_EXE_gridfed"))
        .args(["participant", "run", "--config"])
        .arg(&participant)
        .output()
        .unwrap();
    let _ = coordinator.kill();
    let _ = coordinator.wait();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("refused by the coordinator: enrollment"),
        "{stderr}"
    );
    assert!(stderr.contains("enrollment_token"), "{stderr}");
}

/// A data error is printed once: library errors that show their source in their message are
/// not followed by the same source again.
#[test]
fn a_participant_data_error_is_printed_once() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("participant.toml");
    std::fs::write(
        &config,
        r#"coordinator = "http://127.0.0.1:9"
insecure_plaintext = true
key_file = "site.key"
enrollment_token = "token-token-token"
site_label = "s"
federation_tag = "load"

[data]
dir = "no-such-fleet"
site_id = "site-000"
target = "load"
"#,
    )
    .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_gridfed"))
        .args(["participant", "check", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("no-such-fleet"), "{stderr}");
    assert_eq!(stderr.matches("os error 2").count(), 1, "{stderr}");
}

/// A thousand idle connections (sites that connected and went quiet, or someone holding
/// sockets open) neither stop the coordinator from serving nor cost it much memory.
#[test]
fn a_thousand_idle_connections_leave_the_coordinator_serving() {
    // This process holds the client ends: make room for them.
    // SAFETY: getrlimit/setrlimit on this process's own limits, one struct each.
    unsafe {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        limit.rlim_cur = limit.rlim_max.min(4096);
        libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
    }
    let dir = tempfile::tempdir().unwrap();
    let (config, port) = coordinator_config(dir.path());
    let mut coordinator = serve(&config, &dir.path().join("coordinator.log"));
    let rss_kb = |pid: u32| -> u64 {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    };
    let before = rss_kb(coordinator.id());
    let idle: Vec<std::net::TcpStream> = (0..1000)
        .map(|_| std::net::TcpStream::connect(("127.0.0.1", port)).unwrap())
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(500));
    let after = rss_kb(coordinator.id());
    // Still serving: a refused enrollment is answered (exit status 3), within seconds.
    let participant = wrong_token_participant(dir.path(), port);
    let started = std::time::Instant::now();
    let output = Command::new(env!("CARGO_BIN_EXE_gridfed"))
        .args(["participant", "run", "--config"])
        .arg(&participant)
        .output()
        .unwrap();
    let answered_in = started.elapsed();
    drop(idle);
    let _ = coordinator.kill();
    let _ = coordinator.wait();
    assert_eq!(
        output.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        answered_in < std::time::Duration::from_secs(20),
        "{answered_in:?}"
    );
    eprintln!(
        "coordinator RSS {before} KiB -> {after} KiB with 1000 idle connections; refused \
         enrollment answered in {answered_in:?}"
    );
    // A few KiB per connection; 64 MiB would be 64 KiB each.
    assert!(
        after.saturating_sub(before) < 64 * 1024,
        "RSS grew {} KiB for 1000 idle connections",
        after - before
    );
}

/// `GRIDFED_LOG_FORMAT=json`: every log line is one JSON object with a level and a message.
#[test]
fn json_logs_are_one_object_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let (config, _) = coordinator_config(dir.path());
    let log = dir.path().join("coordinator.log");
    let child = Command::new(env!("CARGO_BIN_EXE_gridfed"))
        .args(["coordinator", "serve", "--config"])
        .arg(&config)
        .env("RUST_LOG", "info")
        .env("GRIDFED_LOG_FORMAT", "json")
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
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let mut child = child;
    child.wait().unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    let mut served = false;
    for line in text.lines().filter(|l| l.starts_with('{')) {
        let event: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(event["level"].is_string(), "{line}");
        served |= event["fields"]["message"] == "coordinator serving";
    }
    assert!(served, "{text}");
    assert!(!text.contains('\u{1b}'), "no colour codes in JSON logs");
}

/// `gridfed init local NAME` run inside `parent` (a relative directory, as a user types it:
/// the project must not depend on where it ran): 3 sites, 40 days, 2 rounds, on a free port.
fn init_small_project(parent: &std::path::Path, name: &str) -> (std::process::Output, u16) {
    let port = free_port_pair();
    let init = Command::new(env!("CARGO_BIN_EXE_gridfed"))
        .current_dir(parent)
        .args(["init", "local", name])
        .args(["--sites", "3", "--days", "40", "--rounds", "2"])
        .args(["--port", &port.to_string()])
        .output()
        .unwrap();
    (init, port)
}

/// `gridfed init` scaffolds a federation that runs as printed: the coordinator serves over TLS,
/// the spec publishes with the written operator token, three participant daemons train it to
/// the end, and the registry lists its signed versions.
#[test]
fn an_initialized_project_runs_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join("project");
    let (init, port) = init_small_project(dir.path(), "project");
    let printed = String::from_utf8_lossy(&init.stdout);
    assert!(
        init.status.success(),
        "{printed}{}",
        String::from_utf8_lossy(&init.stderr)
    );
    assert!(
        printed.contains("gridfed participant run --config"),
        "{printed}"
    );
    // A second init into the same directory refuses instead of overwriting.
    let again = Command::new(env!("CARGO_BIN_EXE_gridfed"))
        .args(["init", "local"])
        .arg(&project)
        .output()
        .unwrap();
    assert!(!again.status.success());

    let mut coordinator = serve(
        &project.join("coordinator.toml"),
        &dir.path().join("coordinator.log"),
    );
    let token = std::fs::read_to_string(project.join("operator-token")).unwrap();
    let url = format!("https://127.0.0.1:{port}");
    let registry = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_gridfed"))
            .arg("models")
            .args(args)
            .args(["--coordinator", &url, "--token", token.trim(), "--ca-cert"])
            .arg(project.join("tls/ca.pem"))
            .output()
            .unwrap()
    };
    let spec = project.join("spec.toml");
    let published = registry(&["publish", spec.to_str().unwrap()]);
    assert!(
        published.status.success(),
        "{}",
        String::from_utf8_lossy(&published.stderr)
    );
    let sites: Vec<std::path::PathBuf> = std::fs::read_dir(project.join("sites"))
        .unwrap()
        .map(|e| e.unwrap().path().join("participant.toml"))
        .collect();
    assert_eq!(sites.len(), 3);
    let daemons: Vec<_> = sites
        .iter()
        .map(|config| {
            Command::new(env!("CARGO_BIN_EXE_gridfed"))
                .args(["participant", "run", "--config"])
                .arg(config)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for daemon in daemons {
        let out = daemon.wait_with_output().unwrap();
        let summary = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && summary.contains("final version 2"),
            "{summary}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Each site forecasts itself with its fine-tuned copy, offline: here its last day (the
    // model reads weather forecasts, which the files hold only up to their last row).
    let fleet = datasets::reader::read_fleet_dir(&project.join("fleet")).unwrap();
    let last = *fleet.telemetry[0].telemetry.timestamps.last().unwrap();
    let at = (last - 23 * 3600).to_string();
    let personal = Command::new(env!("CARGO_BIN_EXE_gridfed"))
        .args(["participant", "forecast", "--format", "json", "--at", &at])
        .arg("--config")
        .arg(&sites[0])
        .output()
        .unwrap();
    assert!(
        personal.status.success(),
        "{}",
        String::from_utf8_lossy(&personal.stderr)
    );
    let personal: serde_json::Value = serde_json::from_slice(&personal.stdout).unwrap();
    assert_eq!(
        personal["steps"].as_array().unwrap().len(),
        24,
        "{personal}"
    );
    assert!(
        personal["steps"][0]["p50_kw"].as_f64().unwrap().is_finite(),
        "{personal}"
    );
    let listed = registry(&["list", "fleet-load", "--format", "json"]);
    // The pictures: accuracy per version from the registry, and a backtest of the production
    // version on one site's own file through the Forecast service.
    let plots = dir.path().join("plots");
    let plot_versions = Command::new(env!("CARGO_BIN_EXE_gridfed"))
        .args(["plot", "versions", "fleet-load", "--coordinator", &url])
        .args(["--token", token.trim(), "--ca-cert"])
        .arg(project.join("tls/ca.pem"))
        .arg("--out")
        .arg(&plots)
        .output()
        .unwrap();
    let site_file = std::fs::read_dir(project.join("fleet"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "parquet"))
        .unwrap();
    let plot_forecast = Command::new(env!("CARGO_BIN_EXE_gridfed"))
        .args(["plot", "forecast", "--model", "fleet-load@2", "--days", "3"])
        .args(["--coordinator", &url, "--ca-cert"])
        .arg(project.join("tls/ca.pem"))
        .arg("--input")
        .arg(&site_file)
        .arg("--out")
        .arg(&plots)
        .output()
        .unwrap();
    let _ = coordinator.kill();
    let _ = coordinator.wait();
    assert!(
        listed.status.success(),
        "{}",
        String::from_utf8_lossy(&listed.stderr)
    );
    let listed: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(listed["versions"].as_array().unwrap().len(), 2, "{listed}");
    for (what, out) in [("versions", &plot_versions), ("forecast", &plot_forecast)] {
        assert!(
            out.status.success(),
            "plot {what}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let stdout = String::from_utf8_lossy(&plot_forecast.stdout);
    assert!(stdout.contains("fleet-load@2: 72 steps, nMAE"), "{stdout}");
    let site = site_file.file_stem().unwrap().to_str().unwrap();
    for stem in [
        "fleet-load_accuracy_per_version".to_string(),
        "fleet-load_coverage_per_version".to_string(),
        format!("fleet-load_2_{site}_forecast_vs_actual"),
    ] {
        let svg = std::fs::read_to_string(plots.join(format!("{stem}.svg"))).unwrap();
        let png = std::fs::metadata(plots.join(format!("{stem}.png"))).unwrap();
        assert!(svg.contains("<svg") && svg.len() > 5_000, "{stem}.svg");
        assert!(
            png.len() > 10_000 && png.len() < 2_000_000,
            "{stem}.png: {}",
            png.len()
        );
    }
    let accuracy =
        std::fs::read_to_string(plots.join("fleet-load_accuracy_per_version.svg")).unwrap();
    assert!(
        accuracy.contains("persistence"),
        "the legend names the baseline"
    );
}

/// `datasets import --dry-run` parses and converts a meter export and shows what it would write
/// (span in UTC and local time, step, each column's range), writing nothing.
#[test]
fn an_import_dry_run_previews_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let synth = Command::new(env!("CARGO_BIN_EXE_gridfed"))
        .args([
            "datasets",
            "synth",
            "--sites",
            "1",
            "--days",
            "10",
            "--local-csv",
            "--out",
        ])
        .arg(dir.path().join("fleet"))
        .output()
        .unwrap();
    assert!(synth.status.success());
    let out = dir.path().join("site.parquet");
    let preview = Command::new(env!("CARGO_BIN_EXE_gridfed"))
        .args(["datasets", "import", "--csv"])
        .arg(dir.path().join("fleet/exports/site-000.csv"))
        .args(["--column", "load_kw", "--value", "load_w", "--unit", "W"])
        .args([
            "--timezone",
            "Europe/Berlin",
            "--site-id",
            "site-000",
            "--dry-run",
            "--out",
        ])
        .arg(&out)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&preview.stdout);
    assert!(
        preview.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&preview.stderr)
    );
    assert!(
        text.contains("dry run: would write 240 rows of site `site-000`"),
        "{text}"
    );
    assert!(
        text.contains("Europe/Berlin") && text.contains("step      3600 s"),
        "{text}"
    );
    assert!(
        text.contains("load_kw") && text.contains("0 missing"),
        "{text}"
    );
    assert!(!out.exists(), "a dry run wrote {}", out.display());
}

/// README's "Must show": `gridfed init local --sites 3 && gridfed up` in an empty directory is
/// a whole local TLS federation from two commands with no hand-written file (here with fewer
/// days and rounds, a free port, and `--until-done` so that it stops once every site is done).
#[test]
fn init_local_then_up_runs_a_local_federation() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port_pair();
    let init = Command::new(env!("CARGO_BIN_EXE_gridfed"))
        .current_dir(dir.path())
        .args([
            "init", "local", "--sites", "3", "--days", "40", "--rounds", "2",
        ])
        .args(["--port", &port.to_string()])
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&init.stdout);
    assert!(
        init.status.success(),
        "{printed}{}",
        String::from_utf8_lossy(&init.stderr)
    );
    assert!(
        printed.contains("run it all at once: gridfed up "),
        "{printed}"
    );
    let project = dir.path().join("gridfed-local");
    let up = Command::new(env!("CARGO_BIN_EXE_gridfed"))
        .current_dir(dir.path())
        .args(["up", "--until-done"])
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&up.stdout);
    assert!(
        up.status.success(),
        "{printed}{}",
        String::from_utf8_lossy(&up.stderr)
    );
    assert!(printed.contains("every participant finished"), "{printed}");
    assert_eq!(printed.matches("finished: ").count(), 3, "{printed}");
    let logs = project.join("logs");
    let coordinator_log = std::fs::read_to_string(logs.join("coordinator.log")).unwrap();
    assert!(
        coordinator_log.contains("coordinator serving"),
        "{coordinator_log}"
    );
    let site_logs: Vec<_> = std::fs::read_dir(&logs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().is_some_and(|n| n != "coordinator.log"))
        .collect();
    assert_eq!(site_logs.len(), 3, "{site_logs:?}");
    for log in site_logs {
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(
            text.contains("final version 2"),
            "{}: {text}",
            log.display()
        );
    }
    // The coordinator was stopped, not left behind: its port is free again.
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
}

/// `gridfed <args>` in `dir`.
fn gridfed_in(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_gridfed"))
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap()
}

/// The separate-machine scaffolds: `init coordinator` on the coordinator's machine, then each
/// site operator's `init participant` with what they were handed (URL, ca.pem, enrollment
/// token, their own fleet directory). `gridfed up` runs the coordinator alone (it has no
/// sites) and publishes the spec; three daemons federate it over TLS to its last version.
/// Wrong input is refused before anything is written.
#[test]
fn coordinator_and_participant_scaffolds_federate_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let port = free_port_pair().to_string();
    let synth = gridfed_in(
        d,
        &[
            "datasets", "synth", "--sites", "3", "--days", "40", "--out", "fleet",
        ],
    );
    assert!(
        synth.status.success(),
        "{}",
        String::from_utf8_lossy(&synth.stderr)
    );
    let init = gridfed_in(
        d,
        &[
            "init",
            "coordinator",
            "coord",
            "--host",
            "127.0.0.1",
            "--port",
            &port,
            "--rounds",
            "2",
        ],
    );
    let printed = String::from_utf8_lossy(&init.stdout);
    assert!(
        init.status.success(),
        "{printed}{}",
        String::from_utf8_lossy(&init.stderr)
    );
    assert!(printed.contains("gridfed init participant"), "{printed}");
    for file in [
        "coordinator.toml",
        "spec.toml",
        "tls/ca.pem",
        "tls/server.key",
        "enrollment-token",
        "operator-token",
        "board-reader-token",
    ] {
        assert!(d.join("coord").join(file).exists(), "{file}");
    }
    let url = format!("https://127.0.0.1:{port}");
    let participant = |name: &str, extra: &[&str]| {
        let mut args = vec![
            "init",
            "participant",
            name,
            "--coordinator",
            &url,
            "--ca-cert",
            "coord/tls/ca.pem",
            "--token-file",
            "coord/enrollment-token",
            "--data",
            "fleet",
        ];
        args.extend_from_slice(extra);
        gridfed_in(d, &args)
    };
    // Refused, naming what is wrong, and nothing written.
    let refusals: [(&[&str], &str); 3] = [
        (&[], "name one with --site"),
        (&["--site", "no-such-site"], "no such site"),
        (&["--site", "site-001", "--target", "pv"], "--target pv"), // a building: no PV
    ];
    for (extra, said) in refusals {
        let out = participant("refused", extra);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && stderr.contains(said),
            "{extra:?}: {stderr}"
        );
        assert!(!d.join("refused").exists(), "{extra:?} wrote a directory");
    }
    let plaintext_ca = gridfed_in(
        d,
        &[
            "init",
            "participant",
            "refused",
            "--coordinator",
            &url,
            "--token",
            "t",
            "--data",
            "fleet",
            "--site",
            "site-000",
        ],
    );
    let stderr = String::from_utf8_lossy(&plaintext_ca.stderr);
    assert!(
        !plaintext_ca.status.success() && stderr.contains("--ca-cert"),
        "{stderr}"
    );

    let fleet = datasets::reader::read_fleet_dir(&d.join("fleet")).unwrap();
    let sites: Vec<String> = fleet
        .telemetry
        .iter()
        .map(|s| s.telemetry.site_id.clone())
        .collect();
    for (i, site) in sites.iter().enumerate() {
        let out = participant(&format!("site-{i}"), &["--site", site]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(d.join(format!("site-{i}/ca.pem")).exists());
    }
    let check = gridfed_in(
        d,
        &[
            "participant",
            "check",
            "--config",
            "site-0/participant.toml",
        ],
    );
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );

    let mut up = Command::new(env!("CARGO_BIN_EXE_gridfed"))
        .current_dir(d)
        .args(["up", "coord"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The daemons start once `up` has published the spec (it then prints the dashboard line).
    let (lines_tx, lines_rx) = std::sync::mpsc::channel::<String>();
    let up_stdout = up.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(up_stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = lines_tx.send(line);
        }
    });
    let mut up_said = String::new();
    while !up_said.contains("Ctrl-C stops all") {
        match lines_rx.recv_timeout(std::time::Duration::from_secs(60)) {
            Ok(line) => up_said.push_str(&(line + "\n")),
            Err(_) => panic!("`gridfed up coord` never got ready: {up_said}"),
        }
    }
    assert!(up_said.contains("published"), "{up_said}");
    let daemons: Vec<_> = (0..sites.len())
        .map(|i| {
            Command::new(env!("CARGO_BIN_EXE_gridfed"))
                .current_dir(d)
                .args(["participant", "run", "--config"])
                .arg(format!("site-{i}/participant.toml"))
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outcomes: Vec<_> = daemons
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    // SAFETY: kill(2) on our own child's pid has no memory effects.
    unsafe { libc::kill(up.id() as libc::pid_t, libc::SIGTERM) };
    let up = up.wait_with_output().unwrap();
    reader.join().unwrap();
    up_said.extend(lines_rx.try_iter().map(|l| l + "\n"));
    for out in outcomes {
        let summary = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && summary.contains("final version 2"),
            "{summary}{}\nup: {up_said}{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&up.stderr)
        );
    }
    assert!(
        up.status.success() && up_said.contains("stopping"),
        "{up_said}{}",
        String::from_utf8_lossy(&up.stderr)
    );
    assert!(std::net::TcpStream::connect(("127.0.0.1", port.parse::<u16>().unwrap())).is_err());
}
