//! `gridfed up DIR`: runs a project written by `gridfed init` on this machine, the way
//! `flwr run` or `docker compose up` would: the coordinator, the model spec published to its
//! registry, and one participant daemon per site, each a child process with its own log under
//! `DIR/logs/`. Ctrl-C or SIGTERM stops them all (each drains as it does alone).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use clap::Args;

#[derive(Args)]
pub struct UpArgs {
    /// Project directory from `gridfed init local` (default: gridfed-local) or `gridfed init
    /// coordinator` (then only the coordinator runs).
    pub dir: Option<PathBuf>,
    /// Stop everything once every participant has finished its federation (scripts, tests);
    /// by default the coordinator keeps serving forecasts, the registry and the dashboard.
    #[arg(long)]
    pub until_done: bool,
}

/// One child daemon and where its output goes.
pub(super) struct Daemon {
    pub(super) name: String,
    pub(super) child: Child,
    pub(super) log: PathBuf,
}

impl Daemon {
    /// Starts `gridfed ARGS` logging into `LOGS/NAME.log` (appended: a restarted daemon's
    /// earlier output stays).
    pub(super) fn spawn(
        name: &str,
        args: &[&std::ffi::OsStr],
        logs: &Path,
        env: &[(&str, &str)],
    ) -> Result<Self> {
        let log = logs.join(format!("{name}.log"));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .with_context(|| format!("creating {}", log.display()))?;
        let child = Command::new(std::env::current_exe().context("locating the gridfed binary")?)
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        Ok(Self {
            name: name.to_string(),
            child,
            log,
        })
    }

    /// Asks the daemon to drain (SIGTERM), then waits up to `grace`, then kills it.
    pub(super) fn stop(&mut self, grace: Duration) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        #[cfg(unix)]
        if let Ok(pid) = i32::try_from(self.child.id()) {
            // SAFETY: kill(2) with a pid we spawned and still own (not yet reaped).
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub(super) fn last_line(&self) -> String {
        std::fs::read_to_string(&self.log)
            .ok()
            .and_then(|text| {
                text.lines()
                    .rev()
                    .find(|l| !l.trim().is_empty())
                    .map(str::to_string)
            })
            .unwrap_or_default()
    }
}

/// `gridfed models ARGS` against the project's coordinator at `url`, as its operator.
pub(super) fn operator_command(
    dir: &Path,
    url: &str,
    token: &str,
    args: &[&std::ffi::OsStr],
) -> Result<std::process::Output> {
    Command::new(std::env::current_exe().context("locating the gridfed binary")?)
        .arg("models")
        .args(args)
        .args(["--coordinator", url, "--ca-cert"])
        .arg(dir.join("tls").join("ca.pem"))
        .env("GRIDFED_OPERATOR_TOKEN", token)
        .output()
        .context("running gridfed models")
}

/// The coordinator's gRPC address from coordinator.toml (`listen`).
pub(super) fn listen_address(config: &Path) -> Result<String> {
    let text =
        std::fs::read_to_string(config).with_context(|| format!("reading {}", config.display()))?;
    let parsed = coordinator::config::CoordinatorConfig::from_toml(&text)
        .with_context(|| format!("invalid {}", config.display()))?;
    Ok(parsed.listen)
}

pub(super) fn wait_for_port(
    address: &str,
    coordinator: &mut Daemon,
    within: Duration,
) -> Result<()> {
    let deadline = Instant::now() + within;
    loop {
        if std::net::TcpStream::connect(address).is_ok() {
            return Ok(());
        }
        if let Ok(Some(status)) = coordinator.child.try_wait() {
            bail!(
                "the coordinator exited ({status}) before serving: {} (log {})",
                coordinator.last_line(),
                coordinator.log.display()
            );
        }
        ensure!(
            Instant::now() < deadline,
            "the coordinator does not answer on {address} after {} s (log {})",
            within.as_secs(),
            coordinator.log.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn run(args: UpArgs) -> Result<()> {
    let dir = &args
        .dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(super::init::DEFAULT_LOCAL_DIR));
    let coordinator_config = dir.join("coordinator.toml");
    ensure!(
        coordinator_config.exists(),
        "{} is not a gridfed project (no coordinator.toml): create one with `gridfed init local {}`",
        dir.display(),
        dir.display()
    );
    // A project from `init coordinator` has no sites: then only the coordinator runs here.
    let mut sites: Vec<(String, PathBuf)> = match std::fs::read_dir(dir.join("sites")) {
        Ok(entries) => entries
            .filter_map(|e| e.ok())
            .map(|e| {
                (
                    e.file_name().to_string_lossy().into_owned(),
                    e.path().join("participant.toml"),
                )
            })
            .filter(|(_, config)| config.exists())
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => {
            return Err(e).with_context(|| format!("reading {}", dir.join("sites").display()));
        }
    };
    sites.sort();
    ensure!(
        !(sites.is_empty() && args.until_done),
        "--until-done: {} has no sites/<site>/participant.toml, so nothing would finish",
        dir.display()
    );
    let token = std::fs::read_to_string(dir.join("operator-token"))
        .context("reading operator-token")?
        .trim()
        .to_string();
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs)?;
    let address = listen_address(&coordinator_config)?;
    let port = address.rsplit(':').next().unwrap_or("7400").to_string();

    // Stops every child on Ctrl-C/SIGTERM, whatever phase we are in.
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
    let runtime = super::runtime::runtime()?;
    runtime.spawn(async move {
        super::federation::ctrl_c().await;
        let _ = stop_tx.send(());
    });

    let mut coordinator = Daemon::spawn(
        "coordinator",
        &[
            "coordinator".as_ref(),
            "serve".as_ref(),
            "--config".as_ref(),
            coordinator_config.as_os_str(),
        ],
        &logs,
        &[],
    )?;
    println!(
        "coordinator on {address} (log {})",
        coordinator.log.display()
    );
    let mut children = Vec::new();
    let result = (|| -> Result<()> {
        wait_for_port(&address, &mut coordinator, Duration::from_secs(60))?;
        let url = format!("https://127.0.0.1:{port}");
        let spec = dir.join("spec.toml");
        let publish = operator_command(dir, &url, &token, &["publish".as_ref(), spec.as_os_str()])
            .context("publishing spec.toml")?;
        let said = String::from_utf8_lossy(&publish.stdout);
        let complaint = String::from_utf8_lossy(&publish.stderr);
        if publish.status.success() {
            print!("{said}");
        } else if complaint.contains("is already published") {
            // A second `up` of the same project: the registry kept the model.
            println!("spec.toml is already published; resuming its federation");
        } else {
            bail!("publishing spec.toml: {}", complaint.trim());
        }
        for (site, config) in &sites {
            let daemon = Daemon::spawn(
                site,
                &[
                    "participant".as_ref(),
                    "run".as_ref(),
                    "--config".as_ref(),
                    config.as_os_str(),
                ],
                &logs,
                &[],
            )?;
            println!("participant {site} (log {})", daemon.log.display());
            children.push(daemon);
        }
        println!(
            "dashboard: http://127.0.0.1:{}/login?token=$(cat {}/operator-token); Ctrl-C stops all",
            port.parse::<u16>().map_or(0, |p| p.wrapping_add(1)),
            dir.display()
        );
        // Watch: participants finish with their federation; the coordinator should not exit.
        let mut reported = vec![false; children.len()];
        let mut failed = 0usize;
        let mut all_finished = false;
        loop {
            if stop_rx.recv_timeout(Duration::from_millis(200)).is_ok() {
                println!("stopping");
                return Ok(());
            }
            if let Ok(Some(status)) = coordinator.child.try_wait() {
                bail!(
                    "the coordinator exited ({status}): {} (log {})",
                    coordinator.last_line(),
                    coordinator.log.display()
                );
            }
            for (daemon, done) in children.iter_mut().zip(reported.iter_mut()) {
                if *done {
                    continue;
                }
                if let Ok(Some(status)) = daemon.child.try_wait() {
                    *done = true;
                    let outcome = if status.success() {
                        "finished"
                    } else {
                        failed += 1;
                        "FAILED"
                    };
                    println!(
                        "participant {} {outcome}: {}",
                        daemon.name,
                        daemon.last_line()
                    );
                }
            }
            if !all_finished && !children.is_empty() && reported.iter().all(|&d| d) {
                all_finished = true;
                ensure!(
                    failed == 0,
                    "{failed} participant(s) failed: see their logs in {}",
                    logs.display()
                );
                if args.until_done {
                    println!("every participant finished; stopping (--until-done)");
                    return Ok(());
                }
                println!(
                    "every participant finished; the coordinator keeps serving (Ctrl-C stops it)"
                );
            }
        }
    })();
    for daemon in children.iter_mut().rev() {
        daemon.stop(Duration::from_secs(10));
    }
    coordinator.stop(Duration::from_secs(15));
    result
}
