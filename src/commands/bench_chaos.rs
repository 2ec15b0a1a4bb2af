//! `gridfed bench chaos`: a local TLS federation (as `gridfed init local` writes it and `gridfed
//! up` runs it: separate processes over loopback) trained while the coordinator and the
//! participant daemons are killed with SIGKILL (`kill -9`: no drain, no flush) on a seeded
//! schedule and restarted after a pause. It reports what was injected, that every version
//! arrived exactly once, in order, and that each exports with a verified signature and weight
//! digest, and with `--baseline` how much longer the federation took than the same one without
//! faults in the same invocation. The suite's fault tests are the short, asserted version of
//! this; the driver is for longer runs.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use clap::Args;
use serde::Serialize;

use super::init::{LocalArgs, ModelChoice};
use super::up::{Daemon, listen_address, operator_command, wait_for_port};

#[derive(Args, Debug)]
pub struct BenchChaosArgs {
    /// Sites, one participant daemon each (masked aggregation needs at least 3).
    #[arg(long, default_value_t = 4)]
    pub sites: usize,
    /// Versions the federation must reach.
    #[arg(long, default_value_t = 60)]
    pub rounds: u64,
    /// Days of synthetic telemetry per site (more days: longer local training per round).
    #[arg(long, default_value_t = 365)]
    pub days: usize,
    /// Mean seconds between two kills (uniform between half and one and a half times this).
    #[arg(long, default_value_t = 2.0)]
    pub kill_every_s: f64,
    /// Share of the kills aimed at the coordinator; the others hit a random unfinished site.
    #[arg(long, default_value_t = 0.3)]
    pub coordinator_share: f64,
    /// Seconds a killed process stays down before it is restarted.
    #[arg(long, default_value_t = 1.0)]
    pub down_s: f64,
    /// Give up (and fail) after this many seconds of one run.
    #[arg(long, default_value_t = 900)]
    pub limit_s: u64,
    /// First run the same federation without faults and report the slowdown against it.
    #[arg(long)]
    pub baseline: bool,
    /// Seed of the kill schedule (the same seed kills in the same order).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Keep the projects (logs, data, exports) under this directory instead of a temporary one.
    #[arg(long)]
    pub keep: Option<PathBuf>,
}

/// One federation's run.
#[derive(Debug, Serialize)]
pub struct ChaosRun {
    pub faults: bool,
    pub seconds: f64,
    pub coordinator_kills: u64,
    pub participant_kills: u64,
    /// Daemons that exited with an error by themselves (restarted as well).
    pub participant_failures: u64,
    /// Version numbers the registry lists, in its order.
    pub versions: Vec<u64>,
    /// Versions exported with their signature and weight digest verified.
    pub versions_verified: usize,
}

#[derive(Debug, Serialize)]
pub struct ChaosReport {
    pub sites: usize,
    pub rounds: u64,
    pub seed: u64,
    pub kill_every_s: f64,
    pub chaos: ChaosRun,
    pub baseline: Option<ChaosRun>,
    /// Chaos run seconds over baseline seconds.
    pub slowdown: Option<f64>,
}

/// splitmix64: a seeded schedule without a dependency.
struct Schedule(u64);

impl Schedule {
    fn next_unit(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }
}

pub fn run(args: BenchChaosArgs) -> Result<()> {
    ensure!(
        args.sites >= 3,
        "--sites: masked aggregation needs at least 3"
    );
    ensure!(args.kill_every_s > 0.0, "--kill-every-s must be positive");
    ensure!(
        (0.0..=1.0).contains(&args.coordinator_share),
        "--coordinator-share is a share in [0, 1]"
    );
    let temp;
    let root = match &args.keep {
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            dir.clone()
        }
        None => {
            temp = tempfile::tempdir().context("creating a temporary directory")?;
            temp.path().to_path_buf()
        }
    };
    let baseline = if args.baseline {
        Some(run_once(&args, &root.join("baseline"), false)?)
    } else {
        None
    };
    let chaos = run_once(&args, &root.join("chaos"), true)?;
    let slowdown = baseline
        .as_ref()
        .map(|b| chaos.seconds / b.seconds.max(1e-9));
    let expected: Vec<u64> = (1..=args.rounds).collect();
    let report = ChaosReport {
        sites: args.sites,
        rounds: args.rounds,
        seed: args.seed,
        kill_every_s: args.kill_every_s,
        chaos,
        baseline,
        slowdown,
    };
    println!("{}", serde_json::to_string_pretty(&report)?);
    ensure!(
        report.chaos.versions == expected && report.chaos.versions_verified == expected.len(),
        "versions {:?} ({} verified); expected exactly {:?}",
        report.chaos.versions,
        report.chaos.versions_verified,
        expected
    );
    Ok(())
}

/// A loopback port whose successor (the dashboard's) is free too, as far as we can tell.
fn free_port_pair() -> Result<u16> {
    for _ in 0..50 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        if port < u16::MAX && std::net::TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
            return Ok(port);
        }
    }
    bail!("no two adjacent free loopback ports")
}

fn coordinator_daemon(config: &Path, logs: &Path) -> Result<Daemon> {
    Daemon::spawn(
        "coordinator",
        &[
            "coordinator".as_ref(),
            "serve".as_ref(),
            "--config".as_ref(),
            config.as_os_str(),
        ],
        logs,
        &[],
    )
}

fn participant_daemon(site: &str, config: &Path, logs: &Path) -> Result<Daemon> {
    Daemon::spawn(
        site,
        &[
            "participant".as_ref(),
            "run".as_ref(),
            "--config".as_ref(),
            config.as_os_str(),
        ],
        logs,
        &[],
    )
}

/// A daemon slot: running, down until an instant (killed), or finished.
enum Slot {
    Up(Daemon),
    Down { until: Instant },
    Finished,
}

fn run_once(args: &BenchChaosArgs, dir: &Path, faults: bool) -> Result<ChaosRun> {
    let port = free_port_pair()?;
    let project = super::init::scaffold(&LocalArgs {
        dir: Some(dir.to_path_buf()),
        sites: args.sites,
        data: None,
        days: args.days,
        model: ModelChoice {
            target: "load".into(),
            rounds: args.rounds,
        },
        port,
    })?;
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs)?;
    let token = std::fs::read_to_string(dir.join("operator-token"))?
        .trim()
        .to_string();
    let address = listen_address(&project.coordinator_config)?;
    let url = format!("https://127.0.0.1:{port}");
    let label = if faults { "chaos" } else { "baseline" };
    let started = Instant::now();
    let mut coordinator = coordinator_daemon(&project.coordinator_config, &logs)?;
    wait_for_port(&address, &mut coordinator, Duration::from_secs(60))?;
    let spec = project.spec.clone();
    let published = operator_command(dir, &url, &token, &["publish".as_ref(), spec.as_os_str()])?;
    ensure!(
        published.status.success(),
        "publishing: {}",
        String::from_utf8_lossy(&published.stderr).trim()
    );
    let sites: Vec<(String, PathBuf)> = project
        .participant_configs
        .iter()
        .map(|config| {
            let site = config
                .parent()
                .and_then(|p| p.file_name())
                .map_or_else(|| "site".to_string(), |n| n.to_string_lossy().into_owned());
            (site, config.clone())
        })
        .collect();
    let mut slots = Vec::new();
    for (site, config) in &sites {
        slots.push(Slot::Up(participant_daemon(site, config, &logs)?));
    }
    let mut coordinator_slot = Slot::Up(coordinator);
    let mut run = ChaosRun {
        faults,
        seconds: 0.0,
        coordinator_kills: 0,
        participant_kills: 0,
        participant_failures: 0,
        versions: Vec::new(),
        versions_verified: 0,
    };
    let mut schedule = Schedule(args.seed);
    let gap = |s: &mut Schedule| Duration::from_secs_f64(args.kill_every_s * (0.5 + s.next_unit()));
    let down = Duration::from_secs_f64(args.down_s);
    let mut next_kill = Instant::now() + gap(&mut schedule);
    let limit = started + Duration::from_secs(args.limit_s);
    let result = (|| -> Result<()> {
        loop {
            std::thread::sleep(Duration::from_millis(100));
            let now = Instant::now();
            ensure!(
                now < limit,
                "{label}: not finished after {} s (logs in {})",
                args.limit_s,
                logs.display()
            );
            // Restarts, exits.
            if let Slot::Down { until } = coordinator_slot
                && now >= until
            {
                coordinator_slot =
                    Slot::Up(coordinator_daemon(&project.coordinator_config, &logs)?);
            }
            if let Slot::Up(daemon) = &mut coordinator_slot
                && let Ok(Some(status)) = daemon.child.try_wait()
            {
                bail!(
                    "{label}: the coordinator exited by itself ({status}): {}",
                    daemon.last_line()
                );
            }
            for (slot, (site, config)) in slots.iter_mut().zip(&sites) {
                match slot {
                    Slot::Down { until } if now >= *until => {
                        *slot = Slot::Up(participant_daemon(site, config, &logs)?);
                    }
                    Slot::Up(daemon) => {
                        if let Ok(Some(status)) = daemon.child.try_wait() {
                            if status.success() {
                                eprintln!(
                                    "{label} t={:6.1}s {site} finished: {}",
                                    started.elapsed().as_secs_f64(),
                                    daemon.last_line()
                                );
                                *slot = Slot::Finished;
                            } else {
                                run.participant_failures += 1;
                                eprintln!(
                                    "{label} t={:6.1}s {site} exited ({status}), restarting: {}",
                                    started.elapsed().as_secs_f64(),
                                    daemon.last_line()
                                );
                                *slot = Slot::Down { until: now + down };
                            }
                        }
                    }
                    _ => {}
                }
            }
            let unfinished: Vec<usize> = slots
                .iter()
                .enumerate()
                .filter(|(_, s)| matches!(s, Slot::Up(_)))
                .map(|(i, _)| i)
                .collect();
            if slots.iter().all(|s| matches!(s, Slot::Finished)) {
                return Ok(());
            }
            if !faults || now < next_kill {
                continue;
            }
            next_kill = now + gap(&mut schedule);
            let aim = schedule.next_unit();
            let victim = if aim < args.coordinator_share || unfinished.is_empty() {
                None
            } else {
                let pick = ((schedule.next_unit() * unfinished.len() as f64) as usize)
                    .min(unfinished.len() - 1);
                Some(unfinished[pick])
            };
            let slot = match victim {
                None => &mut coordinator_slot,
                Some(i) => &mut slots[i],
            };
            if let Slot::Up(daemon) = slot {
                let _ = daemon.child.kill();
                let _ = daemon.child.wait();
                eprintln!(
                    "{label} t={:6.1}s kill -9 {} (back in {:.1} s)",
                    started.elapsed().as_secs_f64(),
                    daemon.name,
                    args.down_s
                );
                match victim {
                    None => run.coordinator_kills += 1,
                    Some(_) => run.participant_kills += 1,
                }
                *slot = Slot::Down { until: now + down };
            }
        }
    })();
    run.seconds = started.elapsed().as_secs_f64();
    for slot in &mut slots {
        if let Slot::Up(daemon) = slot {
            daemon.stop(Duration::from_secs(5));
        }
    }
    if let Slot::Down { .. } = coordinator_slot {
        coordinator_slot = Slot::Up(coordinator_daemon(&project.coordinator_config, &logs)?);
    }
    let Slot::Up(mut coordinator) = coordinator_slot else {
        bail!("{label}: no coordinator to check the registry with");
    };
    let checked = result.and_then(|()| {
        wait_for_port(&address, &mut coordinator, Duration::from_secs(60))?;
        verify_versions(dir, &url, &token, &mut run)
    });
    coordinator.stop(Duration::from_secs(15));
    checked?;
    Ok(run)
}

/// Lists the registry's versions and exports each (which verifies its signature and digest).
fn verify_versions(dir: &Path, url: &str, token: &str, run: &mut ChaosRun) -> Result<()> {
    let listed = operator_command(
        dir,
        url,
        token,
        &[
            "list".as_ref(),
            "fleet-load".as_ref(),
            "--format".as_ref(),
            "json".as_ref(),
        ],
    )?;
    ensure!(
        listed.status.success(),
        "models list: {}",
        String::from_utf8_lossy(&listed.stderr).trim()
    );
    let listed: serde_json::Value =
        serde_json::from_slice(&listed.stdout).context("models list output")?;
    run.versions = listed["versions"]
        .as_array()
        .map(|versions| {
            versions
                .iter()
                .filter_map(|v| v["manifest"]["content"]["version"].as_u64())
                .collect()
        })
        .unwrap_or_default();
    run.versions.sort_unstable();
    for version in &run.versions {
        let out = dir.join("exports").join(format!("v{version}"));
        let reference = format!("fleet-load@{version}");
        let exported = operator_command(
            dir,
            url,
            token,
            &[
                "export".as_ref(),
                reference.as_ref(),
                "--out".as_ref(),
                out.as_os_str(),
            ],
        )?;
        if exported.status.success() {
            run.versions_verified += 1;
        } else {
            eprintln!(
                "{reference}: export failed: {}",
                String::from_utf8_lossy(&exported.stderr).trim()
            );
        }
    }
    Ok(())
}
