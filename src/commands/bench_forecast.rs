//! `gridfed bench forecast`: the coordinator's Forecast service under load over loopback gRPC,
//! beside the bare inference of the same model on the same request.
//!
//! The served model is real: a small quantile MLP published as a spec, trained by one
//! participant daemon on a synthetic site (one plain round), signed into the registry and
//! promoted to `production`. C clients, each with its own connection, then send the same
//! day-ahead request by bare model name (alias resolution included) for S seconds.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use clap::Args;
use coordinator::registry::{ModelSpec, Registry};
use coordinator::{CoordinatorConfig, Metrics};
use datasets::synth::{FleetConfig, generate_fleet};
use datasets::{Resolution, SplitSpec, Target, prepare_fleet};
use models::serving::{ServingModel, ServingSpec};
use participant::client::{CoordinatorEndpoint, open_channel};
use participant::{Daemon, DaemonSettings, Limits, MlpTrainer, SiteIdentity};
use proto::forecast::forecast_client::ForecastClient;
use proto::forecast::{ForecastRequest, ForecastResponse};
use proto::registry::registry_client::RegistryClient;
use proto::registry::{PromoteRequest, PublishSpecRequest};
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tonic::transport::Channel;

use super::runtime::{BenchTransport, loopback_transport, runtime};

/// The served model: hourly residential load, one week of context, day-ahead, trained in one
/// plain round by a single site (plain and one participant keep the setup short; serving does
/// not depend on how the version was trained).
const SPEC: &str = r#"
name = "bench-load"
target = "load"
sector = "residential"
context = 168
horizon = 24
protection = "plain"
rounds = 1

[architecture]
hidden = [64, 64]
batch_size = 64

[training]
min_participants = 1
local_epochs = 2
learning_rate = 0.003
"#;

pub const OPERATOR: &str = "bench-operator-token";
pub const ENROLLMENT: &str = "bench-enrollment-token";
/// Days of synthetic telemetry: 4 weeks to normalize load, the context and a test day.
const DAYS: usize = 42;
/// Longest wait for the training round (a busy 2-core machine).
const TRAINING_LIMIT: Duration = Duration::from_secs(600);
/// Time spent timing the bare inference (after a warm-up).
const BARE_DURATION: Duration = Duration::from_secs(2);

#[derive(Args, Debug, Clone)]
pub struct BenchForecastArgs {
    /// Concurrent gRPC clients (tokio tasks, each with its own connection).
    #[arg(long, default_value_t = 4)]
    pub clients: usize,
    /// How long the clients send requests.
    #[arg(long, default_value_t = 5.0)]
    pub seconds: f64,
    /// gRPC transport: TLS with an ephemeral CA (as deployed) or plaintext (the baseline).
    #[arg(long, value_enum, default_value = "tls")]
    pub transport: BenchTransport,
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Serialize)]
pub struct LatencyMs {
    pub mean: f64,
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

/// `ServingModel::forecast` on the request the clients send, one thread, no gRPC.
#[derive(Debug, Serialize)]
pub struct BareInference {
    pub iterations: u64,
    pub mean_us: f64,
    pub p50_us: f64,
    /// 1 / mean: what one core serves without the service around the model.
    pub single_core_throughput: f64,
}

/// Mean times of the registry work in front of the model cache, in microseconds.
#[derive(Debug, Serialize)]
pub struct RegistryLookupUs {
    /// Resolving the model reference to its signed manifest (every request).
    pub resolve: f64,
    /// Reading the federation's versions and signing new ones (only when the reference does
    /// not resolve yet, or names an id prefix).
    pub sync: f64,
}

/// What `gridfed bench forecast` prints.
#[derive(Debug, Serialize)]
pub struct BenchForecastReport {
    /// `plaintext`: the coordinator's gRPC has no TLS in this build.
    pub transport: BenchTransport,
    pub model: String,
    pub parameters: usize,
    pub clients: usize,
    pub seconds: f64,
    /// Successful forecasts.
    pub requests: u64,
    /// Requests per second over the measured window.
    pub throughput: f64,
    pub latency_ms: LatencyMs,
    pub errors: u64,
    /// Bytes of one encoded request.
    pub request_bytes: usize,
    pub bare_inference: BareInference,
    pub registry_lookup_us: RegistryLookupUs,
    /// throughput / bare_inference.single_core_throughput.
    pub ratio: f64,
    /// Whether the served forecast equals, value for value, `ServingModel::forecast` of the
    /// same version in process: what lets a market engine (`gridfed simulate market`) use the
    /// in-process path for speed.
    pub served_equals_in_process: bool,
}

pub fn run(args: BenchForecastArgs) -> Result<()> {
    let report = bench_forecast(&args)?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

/// The value at quantile `q` of sorted `values` (nearest rank).
fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub fn summarize(mut values: Vec<f64>) -> (f64, f64, f64, f64) {
    values.sort_by(f64::total_cmp);
    let mean = values.iter().sum::<f64>() / values.len().max(1) as f64;
    (
        mean,
        percentile(&values, 0.50),
        percentile(&values, 0.99),
        values.last().copied().unwrap_or(f64::NAN),
    )
}

/// Runs the benchmark and returns its report (see [`BenchForecastReport`]).
pub fn bench_forecast(args: &BenchForecastArgs) -> Result<BenchForecastReport> {
    ensure!(args.clients >= 1, "--clients must be at least 1");
    ensure!(
        args.seconds.is_finite() && args.seconds > 0.0,
        "--seconds must be positive"
    );
    let dir = tempfile::tempdir().context("creating a temporary data directory")?;
    let ServedWorkload {
        spec,
        trainer,
        request,
    } = served_workload()?;
    let request_bytes = prost::Message::encoded_len(&request);

    let load = runtime()?.block_on(serve_and_load(dir.path(), &spec, trainer, &request, args))?;

    // The coordinator has stopped: open its registry and time the same version bare.
    let registry = Registry::open(dir.path())?;
    let manifest = registry.resolve(&spec.name.parse()?)?;
    let weights = registry.load_weights(&manifest)?;
    let model = ServingModel::new(
        ServingSpec::from_json(&manifest.content.serving_spec_json)?,
        &weights,
    )?;
    let bare = bare_inference(&model, &request)?;
    let served_equals_in_process = match &load.served {
        Some(served) => served_matches(served, &model, &request)?,
        None => false,
    };
    let registry_lookup_us = registry_lookup(dir.path(), &registry, &spec.name)?;

    let measured_s = load.elapsed.as_secs_f64();
    let requests = load.latencies_ms.len() as u64;
    let throughput = requests as f64 / measured_s;
    let (mean, p50, p99, max) = summarize(load.latencies_ms);
    Ok(BenchForecastReport {
        transport: args.transport,
        model: format!("{}@{}", manifest.content.model, manifest.content.version),
        parameters: weights.len(),
        clients: args.clients,
        seconds: measured_s,
        requests,
        throughput,
        latency_ms: LatencyMs {
            mean,
            p50,
            p99,
            max,
        },
        errors: load.errors,
        request_bytes,
        ratio: throughput / bare.single_core_throughput,
        bare_inference: bare,
        registry_lookup_us,
        served_equals_in_process,
    })
}

/// The served model's spec, the trainer of its one site, and the request clients send.
pub struct ServedWorkload {
    pub spec: ModelSpec,
    pub trainer: MlpTrainer,
    pub request: ForecastRequest,
}

/// A synthetic site to train [`SPEC`] on, and a day-ahead request for it one day before the
/// end of its series, with the history the model needs and a day of covariates: what a
/// market engine sends.
pub fn served_workload() -> Result<ServedWorkload> {
    let spec = ModelSpec::from_toml(SPEC).context("the benchmark's model spec")?;
    let fleet = generate_fleet(&FleetConfig {
        sites: 2,
        days: DAYS,
        resolution: Resolution::Hour,
        ..FleetConfig::default()
    });
    let series = fleet.regular_series();
    let prepared = prepare_fleet(
        &fleet.sites,
        &series,
        Target::Load,
        SplitSpec::day_ahead(spec.resolution.steps_per_day()),
    )?;
    let site = prepared
        .into_iter()
        .next()
        .context("the synthetic fleet has no load site")?;
    let site_series = series
        .iter()
        .find(|s| s.telemetry.site_id == site.site.site_id)
        .context("the load site has no series")?;
    let history_steps = spec.serving_spec()?.history_steps(false);
    let origin = site_series.telemetry.timestamps.len() - spec.horizon;
    let request = coordinator::forecast::request_from_series(
        &spec.name,
        site_series,
        &site.site,
        Target::Load,
        origin,
        u32::try_from(spec.horizon)?,
        (history_steps, spec.horizon),
    )
    .map_err(anyhow::Error::msg)?;
    Ok(ServedWorkload {
        spec,
        trainer: MlpTrainer::new(site.train).with_holdout(site.test, Target::Load),
        request,
    })
}

/// Whether a gRPC answer carries exactly the in-process forecast of the same request.
fn served_matches(
    served: &ForecastResponse,
    model: &ServingModel,
    request: &ForecastRequest,
) -> Result<bool> {
    let spec = model.spec();
    let domain =
        coordinator::forecast::domain_request(request.clone(), spec.target, spec.resolution)
            .map_err(status)?;
    let local = model.forecast(&domain)?;
    Ok(served.timestamps_unix_s == local.timestamps_unix_s
        && served.quantiles.len() == local.levels.len()
        && served
            .quantiles
            .iter()
            .zip(local.levels.iter().zip(&local.values_kw))
            .all(|(q, (level, values))| q.level == *level && q.values_kw == *values))
}

pub struct LoadResult {
    pub latencies_ms: Vec<f64>,
    pub errors: u64,
    pub elapsed: Duration,
    /// The first answer the service gave.
    pub served: Option<ForecastResponse>,
    /// Whether every client's first answer (one per endpoint at least) equals it.
    pub all_equal: bool,
}

/// Starts the coordinator, trains and promotes the model, drives the Forecast service, stops.
async fn serve_and_load(
    data_dir: &std::path::Path,
    spec: &ModelSpec,
    trainer: MlpTrainer,
    request: &ForecastRequest,
    args: &BenchForecastArgs,
) -> Result<LoadResult> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let mut config = CoordinatorConfig::new(data_dir, ENROLLMENT, vec![]);
    config.operator_tokens = vec![OPERATOR.into()];
    let endpoint = loopback_transport(
        &mut config,
        listener.local_addr()?,
        args.transport == BenchTransport::Tls,
    )?;
    let (stop, server) = start_coordinator(listener, config);
    let outcome = prepare_and_load(&endpoint, spec, trainer, request, args).await;
    let _ = stop.send(());
    server.await.context("coordinator task")??;
    outcome
}

/// A coordinator serving on `listener` until the returned sender fires (or is dropped).
pub fn start_coordinator(
    listener: TcpListener,
    config: CoordinatorConfig,
) -> (
    oneshot::Sender<()>,
    tokio::task::JoinHandle<Result<(), coordinator::CoordinatorError>>,
) {
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(coordinator::serve_with(
        listener,
        None,
        config,
        Arc::new(Metrics::default()),
        async move {
            let _ = stopped.await;
        },
    ));
    (stop, server)
}

fn operator<T>(message: T) -> Result<tonic::Request<T>> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {OPERATOR}").parse()?);
    Ok(request)
}

fn status(e: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{:?}: {}", e.code(), e.message())
}

async fn connect(endpoint: &CoordinatorEndpoint) -> Result<Channel> {
    Ok(open_channel(endpoint).await?)
}

async fn prepare_and_load(
    endpoint: &CoordinatorEndpoint,
    spec: &ModelSpec,
    trainer: MlpTrainer,
    request: &ForecastRequest,
    args: &BenchForecastArgs,
) -> Result<LoadResult> {
    train_and_promote(endpoint, spec, trainer).await?;
    drive_clients(
        std::slice::from_ref(endpoint),
        spec,
        request,
        args.clients,
        args.seconds,
    )
    .await
}

/// Publishes [`SPEC`], trains it with one daemon (`trainer`) and promotes the final version to
/// the default alias.
pub async fn train_and_promote(
    endpoint: &CoordinatorEndpoint,
    spec: &ModelSpec,
    trainer: MlpTrainer,
) -> Result<()> {
    let mut registry = RegistryClient::new(connect(endpoint).await?);
    let published = registry
        .publish_spec(operator(PublishSpecRequest {
            spec_toml: SPEC.into(),
        })?)
        .await
        .map_err(status)?
        .into_inner();
    let settings = DaemonSettings {
        coordinator: endpoint.clone(),
        enrollment_token: ENROLLMENT.into(),
        site_label: "bench-site".into(),
        federation_tag: published.tag,
        limits: Limits {
            backoff_initial_ms: 50,
            backoff_max_ms: 500,
            ..Limits::default()
        },
    };
    let daemon = Daemon::new(
        settings,
        Arc::new(SiteIdentity::generate()?),
        Arc::new(trainer),
    )?;
    let summary = tokio::time::timeout(TRAINING_LIMIT, daemon.run(std::future::pending()))
        .await
        .context("training the benchmark model took too long")??;
    ensure!(
        summary.final_version == Some(spec.rounds),
        "the training federation stopped at version {:?}",
        summary.final_version
    );
    registry
        .promote(operator(PromoteRequest {
            model_ref: format!("{}@{}", spec.name, spec.rounds),
            alias: coordinator::registry::DEFAULT_ALIAS.into(),
        })?)
        .await
        .map_err(status)?;
    Ok(())
}

/// `clients` concurrent clients, spread round-robin over `endpoints`, each with its own
/// connection, sending `request` for `seconds`.
pub async fn drive_clients(
    endpoints: &[CoordinatorEndpoint],
    spec: &ModelSpec,
    request: &ForecastRequest,
    clients: usize,
    seconds: f64,
) -> Result<LoadResult> {
    // Warm-up: the first request loads and verifies the version; every client connects.
    let mut connected = Vec::with_capacity(clients);
    let mut served: Option<ForecastResponse> = None;
    let mut all_equal = true;
    for endpoint in endpoints.iter().cycle().take(clients) {
        let mut client = ForecastClient::new(connect(endpoint).await?);
        let response = client
            .forecast(request.clone())
            .await
            .map_err(status)?
            .into_inner();
        check(&response, spec.horizon)?;
        all_equal &= served.as_ref().is_none_or(|first| *first == response);
        served.get_or_insert(response);
        connected.push(client);
    }

    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(seconds);
    let tasks: Vec<_> = connected
        .into_iter()
        .map(|mut client| {
            let request = request.clone();
            tokio::spawn(async move {
                let mut latencies_ms = Vec::new();
                let mut errors = 0u64;
                while Instant::now() < deadline {
                    let sent = Instant::now();
                    match client.forecast(request.clone()).await {
                        Ok(_) => latencies_ms.push(sent.elapsed().as_secs_f64() * 1e3),
                        Err(_) => errors += 1,
                    }
                }
                (latencies_ms, errors)
            })
        })
        .collect();
    let mut result = LoadResult {
        latencies_ms: Vec::new(),
        errors: 0,
        elapsed: Duration::ZERO,
        served,
        all_equal,
    };
    for task in tasks {
        let (latencies, errors) = task.await.context("a client task panicked")?;
        result.latencies_ms.extend(latencies);
        result.errors += errors;
    }
    result.elapsed = started.elapsed();
    Ok(result)
}

/// A day-ahead answer: every step, finite, quantiles not crossing.
fn check(response: &ForecastResponse, horizon: usize) -> Result<()> {
    ensure!(
        response.timestamps_unix_s.len() == horizon,
        "the forecast has {} steps, expected {horizon}",
        response.timestamps_unix_s.len()
    );
    for step in 0..horizon {
        let mut previous = f32::NEG_INFINITY;
        for q in &response.quantiles {
            match q.values_kw.get(step) {
                Some(&v) if v.is_finite() && v >= previous => previous = v,
                other => bail!("step {step}, level {}: bad value {other:?}", q.level),
            }
        }
    }
    Ok(())
}

/// Times `model.forecast` on the request as the service converts it, for [`BARE_DURATION`].
fn bare_inference(model: &ServingModel, request: &ForecastRequest) -> Result<BareInference> {
    let spec = model.spec();
    let domain =
        coordinator::forecast::domain_request(request.clone(), spec.target, spec.resolution)
            .map_err(status)?;
    for _ in 0..50 {
        model.forecast(&domain)?;
    }
    let mut times_us = Vec::new();
    let started = Instant::now();
    while started.elapsed() < BARE_DURATION {
        let t = Instant::now();
        std::hint::black_box(model.forecast(std::hint::black_box(&domain))?);
        times_us.push(t.elapsed().as_secs_f64() * 1e6);
    }
    let iterations = times_us.len() as u64;
    let (mean_us, p50_us, _, _) = summarize(times_us);
    Ok(BareInference {
        iterations,
        mean_us,
        p50_us,
        single_core_throughput: 1e6 / mean_us,
    })
}

/// Times the registry work of the Forecast service per request (see [`RegistryLookupUs`]) on
/// the stopped coordinator's state.
fn registry_lookup(
    data_dir: &std::path::Path,
    registry: &Registry,
    model: &str,
) -> Result<RegistryLookupUs> {
    let store = coordinator::store::StateStore::in_storage(
        &coordinator::storage::Storage::in_process(data_dir)?,
    )?;
    let reference = model.parse()?;
    let mean_us = |work: &mut dyn FnMut() -> Result<()>| -> Result<f64> {
        let mut iterations = 0u32;
        let started = Instant::now();
        while started.elapsed() < BARE_DURATION / 4 {
            work()?;
            iterations += 1;
        }
        Ok(started.elapsed().as_secs_f64() * 1e6 / f64::from(iterations.max(1)))
    };
    Ok(RegistryLookupUs {
        resolve: mean_us(&mut || {
            std::hint::black_box(registry.resolve(&reference)?);
            Ok(())
        })?,
        sync: mean_us(&mut || {
            let versions = store.versions(model)?;
            std::hint::black_box(registry.sync(model, &versions)?);
            Ok(())
        })?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_by_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.5), 50.0);
        assert_eq!(percentile(&v, 0.99), 99.0);
        assert_eq!(percentile(&v, 1.0), 100.0);
        assert_eq!(percentile(&[7.0], 0.99), 7.0);
        assert!(percentile(&[], 0.5).is_nan());
    }

    /// The whole benchmark for about a second with two clients.
    #[test]
    fn smoke_two_clients_one_second() {
        let report = bench_forecast(&BenchForecastArgs {
            clients: 2,
            seconds: 1.0,
            transport: BenchTransport::Tls,
        })
        .unwrap();
        assert!(report.requests > 0, "{report:?}");
        assert_eq!(report.errors, 0, "{report:?}");
        assert!(report.latency_ms.p50 <= report.latency_ms.p99, "{report:?}");
        assert!(report.latency_ms.p99 <= report.latency_ms.max, "{report:?}");
        assert!(report.bare_inference.iterations > 0, "{report:?}");
        assert!(report.throughput > 0.0 && report.ratio > 0.0, "{report:?}");
        assert!(report.served_equals_in_process, "{report:?}");
    }
}
