//! `gridfed coordinator`, `gridfed participant` and `gridfed bench round`: the federation
//! services from the command line, and a benchmark of whole rounds over loopback gRPC
//! (`gridfed bench forecast` lives in `bench_forecast`).
//!
//! Glue only: configs are parsed by the `coordinator` and `participant` crates, which do the
//! work; each entry point builds its own tokio runtime.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use clap::{Args, Subcommand, ValueEnum};
use coordinator::{CoordinatorConfig, FederationSpec, InitialWeights, Metrics, Protection};
use participant::{Daemon, DaemonSettings, FixedUpdate, Limits, ParticipantConfig, SiteIdentity};
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use super::runtime::{BenchTransport, loopback_transport, runtime};
use super::train::Format;

/// `gridfed coordinator ...`
#[derive(Subcommand, Debug)]
pub enum CoordinatorCommand {
    /// Run the coordinator service until Ctrl-C or SIGTERM.
    Serve {
        /// coordinator.toml (relative paths in it are relative to the file).
        #[arg(long)]
        config: PathBuf,
    },
    /// Run a read-only forecast replica on the coordinator's PostgreSQL until Ctrl-C or SIGTERM
    /// (forecasts and board queries of signed versions; see replica.toml in the README).
    Replica {
        /// replica.toml (relative paths in it are relative to the file).
        #[arg(long)]
        config: PathBuf,
    },
    /// Print the coordinator's public key (hex), creating the key in the data directory if
    /// it has none yet: forecast replicas verify manifests under it.
    PublicKey {
        /// coordinator.toml.
        #[arg(long)]
        config: PathBuf,
    },
    /// Write a new CA certificate (ca.pem, for participants' `ca_cert`) and a server
    /// certificate and key signed by it (server.pem, server.key: the `[tls]` section).
    InitTls {
        /// Directory for the three files (created if missing).
        #[arg(long)]
        dir: PathBuf,
        /// Host names or IP addresses participants use to reach the coordinator; repeatable.
        /// Default: 127.0.0.1 and localhost.
        #[arg(long = "host")]
        hosts: Vec<String>,
        /// Replace existing files (participants must then trust the new ca.pem).
        #[arg(long)]
        force: bool,
    },
}

/// `gridfed participant ...`
#[derive(Subcommand, Debug)]
pub enum ParticipantCommand {
    /// Run the participant daemon until its federation is done or Ctrl-C/SIGTERM.
    Run {
        /// participant.toml (relative paths in it are relative to the file).
        #[arg(long)]
        config: PathBuf,
    },
    /// Validate the config and the site's data and print what the daemon would share.
    Check {
        /// participant.toml (relative paths in it are relative to the file).
        #[arg(long)]
        config: PathBuf,
        /// `table` for people, `json` for scripts.
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Forecast the site with a registered model (fetched and verified under the coordinator
    /// key learned on Join) and publish the forecast to the coordinator's board.
    PublishForecast {
        /// participant.toml (relative paths in it are relative to the file).
        #[arg(long)]
        config: PathBuf,
        /// NAME (its production alias), NAME@VERSION, NAME@ALIAS or NAME@<id prefix>.
        #[arg(long)]
        model: String,
        /// How far ahead: 24h, 90m, 1d (a whole number of the model's steps).
        #[arg(long, default_value = "24h")]
        horizon: String,
        /// First forecast step (RFC 3339 or unix seconds, on the model's grid); default: the
        /// step after the site's last observation.
        #[arg(long)]
        at: Option<String>,
    },
    /// Forecast the site with its own fine-tuned model (`personalized_model_dir`, written
    /// after the federation's last round), honouring its seasonal guard; runs entirely on
    /// the site and sends nothing.
    Forecast(super::participant_forecast::PersonalForecastArgs),
}

/// How the benchmarked rounds protect the updates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BenchMode {
    /// Dropout-tolerant masked secure aggregation.
    Masked,
    /// Plaintext updates (the baseline).
    Plain,
    /// Threshold RLWE encryption under a per-round collective key.
    Encrypted,
}

impl From<BenchMode> for Protection {
    fn from(mode: BenchMode) -> Self {
        match mode {
            BenchMode::Masked => Protection::Masked,
            BenchMode::Plain => Protection::Plain,
            BenchMode::Encrypted => Protection::Encrypted,
        }
    }
}

#[derive(Args, Debug, Clone)]
pub struct BenchRoundArgs {
    /// Participant daemons (tokio tasks, each with its own gRPC connection).
    #[arg(long, default_value_t = 10)]
    pub participants: usize,
    /// Parameters per update.
    #[arg(long, default_value_t = 100_000)]
    pub length: usize,
    /// Protection of the updates: plain, masked or encrypted.
    #[arg(long, value_enum, default_value = "masked")]
    pub mode: BenchMode,
    /// Rounds to run; latencies are averaged over them.
    #[arg(long, default_value_t = 3)]
    pub rounds: u64,
    /// gRPC transport: TLS with an ephemeral CA (as deployed) or plaintext (the baseline).
    #[arg(long, value_enum, default_value = "tls")]
    pub transport: BenchTransport,
}

/// Logs on stderr at `RUST_LOG` (default `info`); colours only on a terminal, so a log file
/// carries no ANSI escape codes.
/// Logs to stderr: human-readable (colours only on a terminal), or one JSON object per line
/// with `GRIDFED_LOG_FORMAT=json` (for log shippers: Loki, Elasticsearch, journald's JSON).
/// `RUST_LOG` filters (default `info`).
fn init_tracing() {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match std::env::var("GRIDFED_LOG_FORMAT").as_deref() {
        Ok("json") => builder.json().with_ansi(false).try_init(),
        _ => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
    };
}

/// Resolves on Ctrl-C (SIGINT) or SIGTERM (what service managers and `kill` send): services
/// then drain, close their state and exit 0 with their summary.
pub(super) async fn ctrl_c() {
    #[cfg(unix)]
    if let Ok(mut terminate) =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
    {
        tokio::select! {
            interrupted = tokio::signal::ctrl_c() => {
                if interrupted.is_err() {
                    terminate.recv().await;
                }
            }
            _ = terminate.recv() => {}
        }
        return;
    }
    if tokio::signal::ctrl_c().await.is_err() {
        // No signal handler available: run until killed.
        std::future::pending::<()>().await;
    }
}

/// `path` as written, or joined to the config file's directory when relative.
fn beside(config: &Path, path: &Path) -> PathBuf {
    match config.parent() {
        Some(dir) if path.is_relative() => dir.join(path),
        _ => path.to_path_buf(),
    }
}

fn read_text(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

/// Reads and validates coordinator.toml, resolving relative paths against its directory.
pub fn load_coordinator_config(path: &Path) -> Result<CoordinatorConfig> {
    let mut config = CoordinatorConfig::from_toml(&read_text(path)?)
        .with_context(|| format!("invalid coordinator config {}", path.display()))?;
    config.data_dir = beside(path, &config.data_dir);
    if let Some(tls) = &mut config.tls {
        tls.cert = beside(path, &tls.cert);
        tls.key = beside(path, &tls.key);
    }
    for federation in &mut config.federations {
        match &mut federation.initial_weights {
            InitialWeights::File(file) => *file = beside(path, file),
            // An MLP from zeros never breaks symmetry: start from the spec's seeded init.
            InitialWeights::Zeros(_) if !federation.model_spec_json.is_empty() => {
                let model =
                    complete_model_spec(&federation.model_spec_json).with_context(|| {
                        format!("federation `{}`: model_spec_json", federation.name)
                    })?;
                let weights = models::to_flat(&model.init(&models::inference_device())?)?;
                federation.model_spec_json = serde_json::to_string(&model)?;
                federation.initial_weights = InitialWeights::Values(weights);
            }
            _ => {}
        }
    }
    Ok(config)
}

/// A forecaster config from a partial JSON object: `n_features` and `horizon` are required,
/// every other field takes its default (`models::ForecasterConfig::new`).
fn complete_model_spec(json: &str) -> Result<models::ForecasterConfig> {
    let given: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(json).context("not a JSON object")?;
    let dimension = |key: &str| {
        given
            .get(key)
            .and_then(serde_json::Value::as_u64)
            .and_then(|v| usize::try_from(v).ok())
            .with_context(|| format!("`{key}` (a positive integer) is required"))
    };
    let defaults = models::ForecasterConfig::new(dimension("n_features")?, dimension("horizon")?);
    let mut merged = match serde_json::to_value(&defaults)? {
        serde_json::Value::Object(map) => map,
        _ => bail!("forecaster config does not serialize to an object"),
    };
    merged.extend(given);
    let model: models::ForecasterConfig =
        serde_json::from_value(merged.into()).context("not a forecaster config")?;
    model.validate()?;
    Ok(model)
}

/// Reads and validates participant.toml, resolving relative paths against its directory.
pub fn load_participant_config(path: &Path) -> Result<ParticipantConfig> {
    let mut config = ParticipantConfig::from_toml(&read_text(path)?)
        .with_context(|| format!("invalid participant config {}", path.display()))?;
    config.key_file = beside(path, &config.key_file);
    config.ca_cert = config.ca_cert.map(|ca| beside(path, &ca));
    config.data.dir = beside(path, &config.data.dir);
    config.personalized_model_dir = config.personalized_model_dir.map(|dir| beside(path, &dir));
    Ok(config)
}

pub fn run_coordinator(cmd: CoordinatorCommand) -> Result<()> {
    let config = match cmd {
        CoordinatorCommand::Serve { config } => config,
        CoordinatorCommand::InitTls { dir, hosts, force } => return init_tls(&dir, &hosts, force),
        CoordinatorCommand::Replica { config } => return run_replica(&config),
        CoordinatorCommand::PublicKey { config } => {
            let config = load_coordinator_config(&config)?;
            std::fs::create_dir_all(&config.data_dir)
                .with_context(|| format!("creating {}", config.data_dir.display()))?;
            let identity =
                coordinator::round::masked::CoordinatorIdentity::load_or_create(&config.data_dir)?;
            println!("{}", hex::encode(identity.verifying_key()));
            return Ok(());
        }
    };
    let config = load_coordinator_config(&config)?;
    // Read the certificate now, so a bad [tls] section fails before the banner.
    let tls = match config.transport()? {
        coordinator::tls::Transport::Tls(_) => "TLS",
        coordinator::tls::Transport::InsecurePlaintext => "INSECURE PLAINTEXT",
    };
    init_tracing();
    raise_open_file_limit(config.limits.max_connections);
    let data_dir = config.data_dir.clone();
    runtime()?.block_on(async move {
        // With PostgreSQL storage a standby waits for the round-driver lease before it binds.
        let listening = |addr| {
            eprintln!(
                "coordinator listening on {addr} over {tls} (data in {})",
                data_dir.display()
            )
        };
        coordinator::serve_config(config, listening, ctrl_c())
            .await
            .context("coordinator stopped with an error")
    })
}

/// Raises the soft open-file limit toward the hard one, so `limits.max_connections` (plus the
/// state files) fit: many distributions start services with a soft limit of 1024.
fn raise_open_file_limit(connections: usize) {
    #[cfg(unix)]
    {
        let wanted = connections as u64 + 256;
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit/setrlimit read and write the one struct passed, nothing else.
        unsafe {
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 || limit.rlim_cur >= wanted {
                return;
            }
            let raised = wanted.min(limit.rlim_max);
            limit.rlim_cur = raised;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 || raised < wanted {
                eprintln!(
                    "warning: the open-file limit ({raised}) is below limits.max_connections \
                     ({connections}) + 256: raise it (ulimit -n, systemd LimitNOFILE) or lower \
                     max_connections"
                );
            }
        }
    }
}

/// `gridfed coordinator replica`.
fn run_replica(path: &Path) -> Result<()> {
    let mut config = coordinator::replica::ReplicaConfig::from_toml(&read_text(path)?)
        .with_context(|| format!("invalid replica config {}", path.display()))?;
    if let Some(tls) = &mut config.tls {
        tls.cert = beside(path, &tls.cert);
        tls.key = beside(path, &tls.key);
    }
    let tls = match config.transport()? {
        coordinator::tls::Transport::Tls(_) => "TLS",
        coordinator::tls::Transport::InsecurePlaintext => "INSECURE PLAINTEXT",
    };
    init_tracing();
    runtime()?.block_on(async move {
        let listener = TcpListener::bind(&config.listen)
            .await
            .with_context(|| format!("binding {}", config.listen))?;
        eprintln!(
            "forecast replica listening on {} over {tls}",
            listener.local_addr()?
        );
        coordinator::replica::serve_forecast_replica(listener, config, ctrl_c())
            .await
            .context("forecast replica stopped with an error")
    })
}

/// `gridfed coordinator init-tls`.
fn init_tls(dir: &Path, hosts: &[String], force: bool) -> Result<()> {
    let generated = coordinator::tls::generate(hosts)?;
    let paths = generated.write(dir, force)?;
    let hosts = if hosts.is_empty() {
        coordinator::tls::DEFAULT_HOSTS.join(", ")
    } else {
        hosts.join(", ")
    };
    println!("certificate for: {hosts}");
    println!(
        "coordinator.toml:\n  [tls]\n  cert = {:?}\n  key = {:?}",
        paths.cert.display().to_string(),
        paths.key.display().to_string()
    );
    println!(
        "participant.toml (copy the CA certificate to each site; it holds no secret):\n  coordinator = \"https://HOST:PORT\"\n  ca_cert = {:?}",
        paths.ca_cert.display().to_string()
    );
    Ok(())
}

pub fn run_participant(cmd: ParticipantCommand) -> Result<()> {
    match cmd {
        ParticipantCommand::Run { config } => {
            let config = load_participant_config(&config)?;
            init_tracing();
            let summary = runtime()?
                .block_on(participant::run(config, ctrl_c()))
                .context("participant daemon failed")?;
            println!(
                "participant {} in federation `{}`: {} rounds uploaded, final version {}, {} reconnects",
                summary.participant_id,
                summary.federation,
                summary.rounds_uploaded,
                summary
                    .final_version
                    .map_or("none (stopped)".to_string(), |v| v.to_string()),
                summary.reconnects
            );
            Ok(())
        }
        ParticipantCommand::PublishForecast {
            config,
            model,
            horizon,
            at,
        } => publish_forecast(&config, &model, &horizon, at.as_deref()),
        ParticipantCommand::Forecast(args) => super::participant_forecast::run(&args),
        ParticipantCommand::Check { config, format } => {
            let config = load_participant_config(&config)?;
            let report = participant::check(&config).context("participant check failed")?;
            match format {
                Format::Table => print!("{report}"),
                Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
            }
            Ok(())
        }
    }
}

/// `gridfed participant publish-forecast`.
fn publish_forecast(path: &Path, model: &str, horizon: &str, at: Option<&str>) -> Result<()> {
    use participant::client::{FederationLink, connect, open_channel};
    use participant::production::{fetch_model, publish_production_forecast};
    // A refusal reads as its code and message (the status would print twice otherwise).
    fn refusal(e: participant::ParticipantError) -> anyhow::Error {
        match e {
            participant::ParticipantError::Status(s) => {
                anyhow::anyhow!("coordinator refused: {:?}: {}", s.code(), s.message())
            }
            other => other.into(),
        }
    }
    let config = load_participant_config(path)?;
    let at_unix_s = at
        .map(|text| super::forecast::parse_instant("--at", text))
        .transpose()?;
    let horizon_s = super::forecast::parse_duration(horizon)?;
    let settings = DaemonSettings::from_config(&config)?;
    let identity = Arc::new(SiteIdentity::load_or_create(&config.key_file)?);
    let out = runtime()?.block_on(async {
        let url = settings.coordinator.url().to_string();
        let client = connect(&settings.coordinator).await?;
        let mut link = FederationLink::enroll(
            client,
            identity,
            &settings.enrollment_token,
            &settings.site_label,
            None,
        )
        .await
        .map_err(refusal)
        .with_context(|| format!("enrolling with {url}"))?;
        // The key manifests are signed with; the site's daemon joins this federation anyway.
        let joined = link
            .join(&settings.federation_tag)
            .await
            .map_err(refusal)
            .with_context(|| {
                format!(
                    "joining `{}` to learn the coordinator key",
                    settings.federation_tag
                )
            })?;
        let key: [u8; 32] = joined
            .coordinator_key
            .as_slice()
            .try_into()
            .context("the coordinator key from Join is not 32 bytes")?;
        let channel = open_channel(&settings.coordinator).await?;
        let fetched = fetch_model(&link, channel.clone(), model, &key)
            .await
            .map_err(refusal)
            .with_context(|| format!("fetching model `{model}`"))?;
        let step_s = fetched.model.spec().resolution.seconds();
        ensure!(
            horizon_s % step_s == 0,
            "--horizon {horizon} is not a whole number of the model's {} steps",
            fetched.model.spec().resolution.as_str()
        );
        let steps = usize::try_from(horizon_s / step_s).context("--horizon too long")?;
        publish_production_forecast(
            &link,
            channel,
            Arc::new(fetched),
            config.data.clone(),
            at_unix_s,
            steps,
        )
        .await
        .map_err(refusal)
        .context("forecasting and publishing the site")
    })?;
    let f = &out.forecast;
    let time = |unix_s: i64| {
        chrono::DateTime::from_timestamp(unix_s, 0)
            .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
            .unwrap_or_else(|| unix_s.to_string())
    };
    let p50_sum: f64 = f.p50_kw.iter().sum();
    println!(
        "published site `{}` (sector {}, {}) as participant {}{}",
        out.entry.site,
        out.entry.sector,
        f.target,
        out.response.participant_id,
        if out.response.replaced {
            ", replacing its earlier forecast"
        } else {
            ""
        }
    );
    println!(
        "model {} (manifest {})",
        out.entry.model, out.entry.version_id
    );
    println!(
        "{} steps of {} s from {}, p50 sum {p50_sum:.3} kW ({:.3} kWh)",
        f.timestamps_unix_s.len(),
        f.step_s,
        f.timestamps_unix_s.first().map_or("-".into(), |&t| time(t)),
        p50_sum * f64::from(f.step_s) / 3600.0
    );
    Ok(())
}

/// What `gridfed bench round` prints.
#[derive(Debug, Serialize)]
pub struct BenchRoundReport {
    /// The protection the benchmarked rounds ran under.
    pub mode: BenchMode,
    pub transport: BenchTransport,
    pub participants: usize,
    pub length: usize,
    pub rounds: u64,
    /// Mean round latency over loopback gRPC: from selection to the committed version
    /// (download of the global weights, protocol phases, uploads, aggregation, commit).
    pub round_ms: f64,
    /// Mean time of each coordinator-side phase per round.
    pub phases_ms: BTreeMap<String, f64>,
    /// Payload bytes one participant sent per round (mean over participants).
    pub bytes_sent_per_participant: u64,
    /// Payload bytes one participant received per round (global weights, protocol messages).
    pub bytes_received_per_participant: u64,
    /// The aggregation of the same vectors in one process, without network or daemons:
    /// masked, the coordinator's unmasking (sum of masked inputs, mask removal) and decoding;
    /// plain, the weighted FedAvg sum; encrypted, verifying and adding the sealed ciphertexts,
    /// `t` partial decryptions (run in parallel on the members in a round), combination and
    /// decoding.
    pub aggregation_only_ms: f64,
    /// Masked: one participant masking its update in-process; encrypted: encoding and
    /// encrypting it.
    pub masking_one_participant_ms: Option<f64>,
    /// Largest deviation of the final weights from the exact plaintext FedAvg.
    pub max_abs_error: f64,
    /// Wall time of the whole run: enrollment, joins and every round.
    pub wall_s: f64,
}

/// A deterministic update for participant `i`, inside the clip range [-1, 1].
fn bench_delta(i: usize, d: usize) -> Vec<f32> {
    let offset = (i * 7919) % 2001;
    (0..d)
        .map(|j| (((offset + j * 104_729) % 2001) as f32 / 1000.0 - 1.0) * 0.9)
        .collect()
}

fn bench_samples(i: usize) -> u64 {
    100 + (i as u64 * 37) % 400
}

pub fn run_bench_round(args: BenchRoundArgs) -> Result<()> {
    let report = bench_round(&args)?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

/// Runs the benchmark and returns its report (see [`BenchRoundReport`]).
pub fn bench_round(args: &BenchRoundArgs) -> Result<BenchRoundReport> {
    let (n, d) = (args.participants, args.length);
    ensure!(args.rounds >= 1, "--rounds must be at least 1");
    ensure!(d >= 1, "--length must be at least 1");
    match args.mode {
        BenchMode::Masked => ensure!(n >= 3, "masked rounds need at least 3 participants"),
        BenchMode::Plain | BenchMode::Encrypted => ensure!(n >= 1, "need at least 1 participant"),
    }
    let deltas: Vec<Arc<Vec<f32>>> = (0..n).map(|i| Arc::new(bench_delta(i, d))).collect();
    let dir = tempfile::tempdir().context("creating a temporary data directory")?;
    let spec = FederationSpec {
        min_participants: n,
        // Generous deadlines: on a busy machine nobody may be dropped from the measured rounds.
        selection_timeout_ms: 60_000,
        keys_timeout_ms: 120_000,
        upload_timeout_ms: 300_000,
        unmask_timeout_ms: 120_000,
        ..FederationSpec::vector("bench", d as u64, args.mode.into(), args.rounds)
    };
    let started = Instant::now();
    let metrics = Arc::new(Metrics::default());
    runtime()?.block_on(run_loopback(
        dir.path(),
        spec,
        args.transport,
        &deltas,
        metrics.clone(),
        Duration::from_secs(600),
    ))?;
    let wall_s = started.elapsed().as_secs_f64();

    let rounds = metrics.rounds_completed();
    ensure!(
        rounds == args.rounds,
        "{rounds} of {} rounds completed",
        args.rounds
    );
    let (_, weights) = coordinator::load_latest(dir.path(), "bench")?;
    let once = fedavg(&deltas, n);
    let max_abs_error = weights
        .iter()
        .zip(&once)
        .map(|(w, e)| (f64::from(*w) - args.rounds as f64 * f64::from(*e)).abs())
        .fold(0.0, f64::max);

    let per_round = |total: u64| total as f64 / rounds as f64;
    let phases_ms = metrics
        .phase_durations()
        .into_iter()
        .map(|(phase, (sum, _))| (phase.to_string(), per_round(sum)))
        .collect();
    let per_participant_round = |total: u64| total / (rounds * n as u64);
    let (aggregation_only_ms, masking_one_participant_ms) = aggregation_only(args.mode, &deltas)?;
    Ok(BenchRoundReport {
        mode: args.mode,
        transport: args.transport,
        participants: n,
        length: d,
        rounds,
        round_ms: per_round(metrics.round_duration_ms_sum()),
        phases_ms,
        bytes_sent_per_participant: per_participant_round(metrics.total_bytes_in()),
        bytes_received_per_participant: per_participant_round(metrics.total_bytes_out()),
        aggregation_only_ms,
        masking_one_participant_ms,
        max_abs_error,
        wall_s,
    })
}

/// Sample-weighted mean of the benchmark deltas.
fn fedavg(deltas: &[Arc<Vec<f32>>], n: usize) -> Vec<f32> {
    let d = deltas.first().map_or(0, |v| v.len());
    let total: f64 = (0..n).map(|i| bench_samples(i) as f64).sum();
    let mut sum = vec![0.0f64; d];
    for (i, delta) in deltas.iter().enumerate() {
        let w = bench_samples(i) as f64;
        for (s, v) in sum.iter_mut().zip(delta.iter()) {
            *s += w * f64::from(*v);
        }
    }
    sum.into_iter().map(|s| (s / total) as f32).collect()
}

/// A coordinator on 127.0.0.1:0 and one `FixedUpdate` daemon per delta, all on this runtime;
/// returns once every daemon saw the federation finish.
async fn run_loopback(
    data_dir: &Path,
    spec: FederationSpec,
    transport: BenchTransport,
    deltas: &[Arc<Vec<f32>>],
    metrics: Arc<Metrics>,
    limit: Duration,
) -> Result<()> {
    let token = "bench-enrollment-token";
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let tag = spec.tag.clone();
    let mut config = CoordinatorConfig::new(data_dir, token, vec![spec]);
    let endpoint = loopback_transport(
        &mut config,
        listener.local_addr()?,
        transport == BenchTransport::Tls,
    )?;
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(coordinator::serve_with(
        listener,
        None,
        config,
        metrics,
        async move {
            let _ = stopped.await;
        },
    ));
    let mut daemons = Vec::with_capacity(deltas.len());
    for (i, delta) in deltas.iter().enumerate() {
        let settings = DaemonSettings {
            coordinator: endpoint.clone(),
            enrollment_token: token.into(),
            site_label: format!("bench-site-{i}"),
            federation_tag: tag.clone(),
            limits: Limits {
                backoff_initial_ms: 50,
                backoff_max_ms: 1_000,
                ..Limits::default()
            },
        };
        let trainer = Arc::new(FixedUpdate {
            delta: delta.as_ref().clone(),
            samples: bench_samples(i),
        });
        let daemon = Daemon::new(settings, Arc::new(SiteIdentity::generate()?), trainer)?;
        daemons.push(tokio::spawn(daemon.run(std::future::pending())));
    }
    let outcome = async {
        for (i, daemon) in daemons.into_iter().enumerate() {
            let summary = tokio::time::timeout(limit, daemon)
                .await
                .with_context(|| format!("participant {i} did not finish in {limit:?}"))?
                .with_context(|| format!("participant {i} panicked"))?
                .with_context(|| format!("participant {i} failed"))?;
            if summary.final_version.is_none() {
                bail!("participant {i} stopped before the federation finished");
            }
        }
        Ok(())
    }
    .await;
    let _ = stop.send(());
    server.await.context("coordinator task")??;
    outcome
}

/// The aggregation of the benchmark's vectors in one process: returns (aggregation ms, masking
/// ms of one participant).
fn aggregation_only(mode: BenchMode, deltas: &[Arc<Vec<f32>>]) -> Result<(f64, Option<f64>)> {
    let n = deltas.len();
    let d = deltas.first().map_or(0, |v| v.len());
    let spec = FederationSpec::vector("bench", d as u64, mode.into(), 1);
    match mode {
        BenchMode::Plain => {
            let plan = coordinator::round::RoundPlan {
                purpose: coordinator::round::RoundPurpose::Train,
                federation: "bench".into(),
                round: 1,
                selected: (0..n).map(|i| format!("p{i:06}")).collect(),
                target: n,
                min_participants: 1,
                global: coordinator::round::WeightsRef {
                    version: 0,
                    length: d as u64,
                    sha256: [0; 32],
                },
                protection: Protection::Plain,
                deadlines: coordinator::round::Deadlines {
                    keys_unix_ms: u64::MAX,
                    upload_unix_ms: u64::MAX,
                    unmask_unix_ms: u64::MAX,
                },
                seed: [0; 32],
                started_unix_ms: 0,
                spec,
            };
            let started = Instant::now();
            let mut collecting = coordinator::round::PlainCollecting::new(plan);
            for (i, delta) in deltas.iter().enumerate() {
                collecting.accept(1, &format!("p{i:06}"), bench_samples(i), delta)?;
            }
            let aggregated = collecting.close()?;
            let ms = started.elapsed().as_secs_f64() * 1e3;
            ensure!(
                aggregated.participants == n,
                "in-process plain sum lost updates"
            );
            Ok((ms, None))
        }
        BenchMode::Masked => {
            use crypto::secagg::SecAggParams;
            use crypto::secagg::simulation::{Dropout, PreparedRound, SimulationConfig};
            let vector_len = u32::try_from(d + 1).context("vector too long")?;
            // The coordinator's parameters for this roster (see coordinator::round::masked).
            let mut params = if n >= 4 {
                SecAggParams::suggested(n, vector_len)?
            } else {
                let k = n as u32 - 1;
                SecAggParams {
                    vector_len,
                    neighbours: k,
                    threshold: k,
                    min_survivors: 0,
                }
            };
            params.min_survivors = params.min_survivors.max(params.threshold + 1).max(n as u32);
            let codec = crypto::FixedPointCodec::weighted(spec.clip, n as u32, spec.max_weight)?;
            let inputs: Vec<Vec<u32>> = deltas
                .iter()
                .enumerate()
                .map(|(i, delta)| codec.encode_weighted(delta, bench_samples(i) as u32))
                .collect::<Result<_, _>>()?;
            let config = SimulationConfig {
                participants: n as u32,
                params,
                dropout: Dropout::default(),
                seed: 7,
                through_bytes: true,
            };
            let masked = PreparedRound::prepare(&config)?.mask(&inputs)?;
            drop(inputs);
            let outcome = masked.unmask();
            let aggregate = outcome.result?;
            let started = Instant::now();
            let mean = codec.decode_weighted_mean(&aggregate.sum, n as u32)?;
            let decode = started.elapsed();
            ensure!(
                mean.mean.len() == d,
                "in-process masked aggregate has the wrong length"
            );
            Ok((
                (outcome.unmasking + decode).as_secs_f64() * 1e3,
                Some(outcome.single_masking.as_secs_f64() * 1e3),
            ))
        }
        BenchMode::Encrypted => encrypted_aggregation_only(&spec, deltas),
    }
}

/// The encrypted round's cryptography in one process, with the coordinator's plan: key
/// generation (untimed), every participant's encryption (the first one timed), then the timed
/// verify-and-add of the sealed ciphertexts, `t` partial decryptions, combination and decoding.
fn encrypted_aggregation_only(
    spec: &FederationSpec,
    deltas: &[Arc<Vec<f32>>],
) -> Result<(f64, Option<f64>)> {
    use coordinator::round::encrypted::{MAX_COMMITTEE_MEMBERS, plan_for};
    use crypto::he::{
        DecryptorSet, EncryptedAggregator, MemberIndex, NoiseSource, PartialDecryption, SigningKey,
        combine, generate_keys_in_process,
    };
    let n = deltas.len();
    let d = deltas.first().map_or(0, |v| v.len());
    let m = n.min(MAX_COMMITTEE_MEMBERS);
    let t = m / 2 + 1;
    let (plan, codec) = plan_for(n, m, t, d, spec.clip, spec.max_weight, 0)?;
    let mut noise = NoiseSource::from_os()?;
    let identities: Vec<SigningKey> = (0..n)
        .map(|i| SigningKey::from_bytes(&[i as u8 + 1; 32]))
        .collect();
    let federation = crypto::secagg::FederationId::from_name("bench");
    let mut keys =
        generate_keys_in_process(federation, 1, plan, identities[..m].to_vec(), &mut noise)?;
    let slots = codec.slots(d);
    let mut sealed = Vec::with_capacity(n);
    let mut one_encryption = None;
    for (i, delta) in deltas.iter().enumerate() {
        let started = Instant::now();
        let words = codec.encode_weighted(delta, bench_samples(i) as u32)?;
        let frame = keys.key.encrypt(&words, &mut noise)?.seal(&identities[i]);
        one_encryption.get_or_insert(started.elapsed().as_secs_f64() * 1e3);
        sealed.push(frame);
    }
    let started = Instant::now();
    let mut aggregator = EncryptedAggregator::new(&keys.key, slots)?;
    for (i, frame) in sealed.iter().enumerate() {
        let id = crypto::secagg::ParticipantId(i as u32 + 1);
        aggregator.add_sealed(id, frame, &identities[i].verifying_key())?;
    }
    let aggregate = aggregator.finish()?;
    let members: Vec<MemberIndex> = (1..=t as u16).map(MemberIndex).collect();
    let set = DecryptorSet::new(&plan, &members)?;
    let partials = keys.members[..t]
        .iter_mut()
        .map(|member| {
            let frame = member.partial_decrypt(&keys.key, &aggregate, &set, &mut noise)?;
            PartialDecryption::open(&frame, &keys.committee, slots)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let words = combine(&keys.key, &aggregate, &partials)?;
    let mean = codec.decode_weighted_mean(&words, n as u32)?;
    let ms = started.elapsed().as_secs_f64() * 1e3;
    ensure!(
        mean.mean.len() == d,
        "in-process encrypted aggregate has the wrong length"
    );
    Ok((ms, one_encryption))
}
