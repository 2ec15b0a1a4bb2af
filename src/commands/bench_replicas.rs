//! `gridfed bench replicas`: forecast throughput of read-only replicas on PostgreSQL against
//! one coordinator on embedded redb (the baseline, measured in the same run), and registry
//! operations per second on each engine.
//!
//! Both coordinators train and promote the same model ([`super::bench_forecast`]'s workload);
//! then C clients send the same day-ahead request by bare model name, spread over the redb
//! coordinator, the PostgreSQL coordinator, or R replicas (in this process, each with its own
//! listener and connection pool). Every replica resolves the alias in PostgreSQL on every
//! request, so the cost measured is the real one of stateless replicas. All processes share
//! this machine's cores: on 2 cores expect no speed-up, only the overhead per replica.

use std::time::Instant;

use anyhow::{Context, Result, ensure};
use clap::Args;
use coordinator::CoordinatorConfig;
use coordinator::registry::{ModelRef, ModelSpec, Registry};
use coordinator::replica::{ReplicaConfig, serve_forecast_replica};
use coordinator::storage::{PgPool, Storage, StorageConfig, TEST_POSTGRES_ENV};
use participant::MlpTrainer;
use participant::client::CoordinatorEndpoint;
use proto::forecast::ForecastRequest;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use super::bench_forecast::{
    ENROLLMENT, LoadResult, OPERATOR, ServedWorkload, drive_clients, served_workload,
    start_coordinator, summarize, train_and_promote,
};
use super::runtime::runtime;

#[derive(Args, Debug, Clone)]
pub struct BenchReplicasArgs {
    /// PostgreSQL URL (default: $GRIDFED_TEST_POSTGRES). The benchmark works in a schema of
    /// its own and drops it at the end.
    #[arg(long)]
    pub postgres: Option<String>,
    /// Replica counts to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,2,4")]
    pub replicas: Vec<usize>,
    /// Concurrent gRPC clients (each with its own connection).
    #[arg(long, default_value_t = 8)]
    pub clients: usize,
    /// How long the clients send requests, per configuration.
    #[arg(long, default_value_t = 4.0)]
    pub seconds: f64,
    /// Registry reads (alias resolutions) timed per engine; promotions are a tenth of it.
    #[arg(long, default_value_t = 2_000)]
    pub registry_ops: usize,
}

/// One served configuration under load.
#[derive(Debug, Serialize)]
pub struct ServedThroughput {
    /// `redb coordinator`, `postgres coordinator` or `postgres replicas`.
    pub setup: String,
    pub replicas: usize,
    pub requests: u64,
    pub errors: u64,
    pub throughput: f64,
    /// throughput / the redb coordinator's.
    pub ratio_vs_redb: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// Registry operations per second on one engine.
#[derive(Debug, Serialize)]
pub struct RegistryOps {
    pub engine: String,
    /// `resolve` of `NAME` (its production alias): what every forecast request does.
    pub resolves_per_s: f64,
    /// `promote`: one alias move with its history, a serializable transaction.
    pub promotes_per_s: f64,
    /// resolves_per_s / redb's.
    pub resolve_ratio_vs_redb: f64,
    /// promotes_per_s / redb's.
    pub promote_ratio_vs_redb: f64,
}

#[derive(Debug, Serialize)]
pub struct BenchReplicasReport {
    pub clients: usize,
    pub seconds: f64,
    pub transport: &'static str,
    pub forecast: Vec<ServedThroughput>,
    pub registry: Vec<RegistryOps>,
    /// Whether every replica answered exactly the coordinator's forecast.
    pub replicas_equal_coordinator: bool,
}

pub fn run(args: BenchReplicasArgs) -> Result<()> {
    let report = bench_replicas(&args)?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

pub fn bench_replicas(args: &BenchReplicasArgs) -> Result<BenchReplicasReport> {
    ensure!(args.clients >= 1, "--clients must be at least 1");
    ensure!(
        args.seconds.is_finite() && args.seconds > 0.0,
        "--seconds must be positive"
    );
    ensure!(
        args.replicas.iter().all(|&r| r >= 1),
        "--replicas: counts must be at least 1"
    );
    let url = match &args.postgres {
        Some(url) => url.clone(),
        None => std::env::var(TEST_POSTGRES_ENV).with_context(|| {
            format!("--postgres URL or {TEST_POSTGRES_ENV} is needed (a PostgreSQL to write to)")
        })?,
    };
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_nanos();
    let schema = format!("bench_replicas_{nanos:x}");
    let postgres = StorageConfig::Postgres {
        url: url.clone(),
        schema: schema.clone(),
        max_connections: 8,
    };
    let outcome = measure(args, &postgres);
    if let Err(e) = PgPool::drop_schema(&url, &schema) {
        eprintln!("warning: dropping schema {schema}: {e}");
    }
    outcome
}

fn measure(args: &BenchReplicasArgs, postgres: &StorageConfig) -> Result<BenchReplicasReport> {
    let ServedWorkload {
        spec,
        trainer,
        request,
    } = served_workload()?;
    // The same model, trained again on the same site for the second coordinator.
    let pg_trainer = served_workload()?.trainer;
    let workload = (&spec, &request);
    let redb_dir = tempfile::tempdir()?;
    let pg_dir = tempfile::tempdir()?;
    let rt = runtime()?;
    let mut forecast = Vec::new();

    eprintln!("redb coordinator: training and serving ...");
    let redb = rt.block_on(with_coordinator(
        redb_dir.path(),
        StorageConfig::Redb,
        (&spec, trainer),
        |endpoint| async move { load(args, workload, &[endpoint]).await },
    ))?;
    let baseline = redb.throughput();
    forecast.push(redb.row("redb coordinator", 0, baseline));

    eprintln!("postgres coordinator and replicas: training and serving ...");
    let key = coordinator::round::masked::CoordinatorIdentity::load_or_create(pg_dir.path())?
        .verifying_key();
    let (rows, equal) = rt.block_on(with_coordinator(
        pg_dir.path(),
        postgres.clone(),
        (&spec, pg_trainer),
        |endpoint| async move {
            let coordinator = load(args, workload, std::slice::from_ref(&endpoint)).await?;
            let mut rows = vec![(0, coordinator)];
            let mut equal = true;
            for &count in &args.replicas {
                eprintln!("  {count} replica(s) ...");
                let replicas = Replicas::start(count, postgres, key).await?;
                let result = load(args, workload, &replicas.endpoints).await;
                replicas.stop().await?;
                let result = result?;
                equal &= result.all_equal && result.served == rows[0].1.served;
                rows.push((count, result));
            }
            Ok((rows, equal))
        },
    ))?;
    for (replicas, result) in rows {
        let setup = if replicas == 0 {
            "postgres coordinator"
        } else {
            "postgres replicas"
        };
        forecast.push(result.row(setup, replicas, baseline));
    }

    eprintln!("registry operations ...");
    let registry = registry_ops(
        &[
            ("redb", StorageConfig::Redb, redb_dir.path()),
            ("postgres", postgres.clone(), pg_dir.path()),
        ],
        &spec.name,
        args.registry_ops,
    )?;
    Ok(BenchReplicasReport {
        clients: args.clients,
        seconds: args.seconds,
        transport: "plaintext",
        forecast,
        registry,
        replicas_equal_coordinator: equal,
    })
}

async fn load(
    args: &BenchReplicasArgs,
    (spec, request): (&ModelSpec, &ForecastRequest),
    endpoints: &[CoordinatorEndpoint],
) -> Result<LoadResult> {
    drive_clients(endpoints, spec, request, args.clients, args.seconds).await
}

impl LoadResult {
    fn throughput(&self) -> f64 {
        self.latencies_ms.len() as f64 / self.elapsed.as_secs_f64()
    }

    fn row(&self, setup: &str, replicas: usize, baseline: f64) -> ServedThroughput {
        let (_, p50, p99, _) = summarize(self.latencies_ms.clone());
        ServedThroughput {
            setup: setup.into(),
            replicas,
            requests: self.latencies_ms.len() as u64,
            errors: self.errors,
            throughput: self.throughput(),
            ratio_vs_redb: self.throughput() / baseline,
            p50_ms: p50,
            p99_ms: p99,
        }
    }
}

/// Runs a plaintext coordinator on `storage` in `data_dir`, trains and promotes the workload's
/// model with `trainer`, runs `body` against it, and stops it.
async fn with_coordinator<F, Fut, T>(
    data_dir: &std::path::Path,
    storage: StorageConfig,
    (spec, trainer): (&ModelSpec, MlpTrainer),
    body: F,
) -> Result<T>
where
    F: FnOnce(CoordinatorEndpoint) -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let endpoint =
        CoordinatorEndpoint::insecure_plaintext(&format!("http://{}", listener.local_addr()?))?;
    let mut config = CoordinatorConfig::new(data_dir, ENROLLMENT, vec![]);
    config.operator_tokens = vec![OPERATOR.into()];
    config.insecure_plaintext = true;
    config.storage = storage;
    let (stop, server) = start_coordinator(listener, config);
    let outcome = async {
        train_and_promote(&endpoint, spec, trainer).await?;
        body(endpoint.clone()).await
    }
    .await;
    let _ = stop.send(());
    server.await.context("coordinator task")??;
    outcome
}

/// A running replica: its stop signal and its serving task.
type RunningReplica = (
    oneshot::Sender<()>,
    tokio::task::JoinHandle<Result<(), coordinator::CoordinatorError>>,
);

/// In-process forecast replicas, each on its own loopback listener.
struct Replicas {
    endpoints: Vec<CoordinatorEndpoint>,
    running: Vec<RunningReplica>,
}

impl Replicas {
    async fn start(count: usize, storage: &StorageConfig, key: [u8; 32]) -> Result<Self> {
        let mut replicas = Self {
            endpoints: Vec::new(),
            running: Vec::new(),
        };
        for _ in 0..count {
            let listener = TcpListener::bind("127.0.0.1:0").await?;
            let addr = listener.local_addr()?;
            let config = ReplicaConfig::insecure_plaintext(&addr.to_string(), key, storage.clone());
            let (stop, stopped) = oneshot::channel::<()>();
            let task = tokio::spawn(serve_forecast_replica(listener, config, async move {
                let _ = stopped.await;
            }));
            replicas
                .endpoints
                .push(CoordinatorEndpoint::insecure_plaintext(&format!(
                    "http://{addr}"
                ))?);
            replicas.running.push((stop, task));
        }
        Ok(replicas)
    }

    async fn stop(self) -> Result<()> {
        for (stop, task) in self.running {
            let _ = stop.send(());
            task.await.context("replica task")??;
        }
        Ok(())
    }
}

/// Times `resolve` and `promote` on each engine's registry (the coordinators have stopped).
fn registry_ops(
    engines: &[(&str, StorageConfig, &std::path::Path)],
    model: &str,
    reads: usize,
) -> Result<Vec<RegistryOps>> {
    let reads = reads.max(10);
    let writes = (reads / 10).max(1);
    let reference: ModelRef = model.parse()?;
    let mut rows: Vec<RegistryOps> = Vec::new();
    for (engine, config, data_dir) in engines {
        let storage = Storage::open(config, data_dir)?;
        let registry = Registry::in_storage(&storage)?;
        let manifest = registry.resolve(&reference)?;
        let version: ModelRef = format!("{model}@{}", manifest.content.version).parse()?;
        let started = Instant::now();
        for _ in 0..reads {
            std::hint::black_box(registry.resolve(&reference)?);
        }
        let resolves_per_s = reads as f64 / started.elapsed().as_secs_f64();
        let started = Instant::now();
        for i in 0..writes {
            registry.promote(&version, "bench", i as u64)?;
        }
        let promotes_per_s = writes as f64 / started.elapsed().as_secs_f64();
        let (resolve_base, promote_base) =
            rows.first().map_or((resolves_per_s, promotes_per_s), |r| {
                (r.resolves_per_s, r.promotes_per_s)
            });
        rows.push(RegistryOps {
            engine: engine.to_string(),
            resolves_per_s,
            promotes_per_s,
            resolve_ratio_vs_redb: resolves_per_s / resolve_base,
            promote_ratio_vs_redb: promotes_per_s / promote_base,
        });
    }
    Ok(rows)
}
