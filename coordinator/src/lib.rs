//! The gridfed federation coordinator.
//!
//! - [`hub::Hub`]: the synchronous core. Enrollment, signed-call verification, federations and
//!   their rounds ([`round`]: plan -> collecting -> (unmasking) -> aggregated, as types),
//!   FedAvg weighted by sample counts, versions committed atomically.
//! - [`store::StateStore`] and [`artifacts::ArtifactStore`] (weights as content-addressed
//!   blobs) on [`storage`]: embedded redb under the data directory, or a shared PostgreSQL. A
//!   coordinator killed at any moment restarts, aborts the interrupted round cleanly and loses
//!   no completed version.
//! - [`board`]: the forecast board (participants' published site forecasts, sector totals),
//!   served by the forecast service.
//! - [`grpc`]: the thin tonic service; [`metrics`]: Prometheus text, served with the
//!   operators' [`dashboard`] by [`http`].
//! - [`serve`]: mini-redis style entry point taking a bound listener and a shutdown future;
//!   gRPC runs over TLS ([`tls`]) unless the config explicitly asks for plaintext.

pub mod artifacts;
pub mod auth;
pub mod board;
pub mod clock;
pub mod config;
pub mod dashboard;
pub mod error;
pub use proto::faults;
pub mod forecast;
pub mod grpc;
pub mod http;
pub mod hub;
pub mod identity;
pub mod limits;
pub mod metrics;
pub mod registry;
pub mod replica;
pub mod round;
mod routes;
pub mod server_momentum;
pub mod storage;
pub mod store;
pub mod tls;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{info, warn};

pub use config::{
    CoordinatorConfig, FederationSpec, HierarchySpec, InitialWeights, Protection, TlsFiles,
};
pub use error::CoordinatorError;
pub use hub::Hub;
pub use metrics::Metrics;
pub use store::{ModelVersion, VersionEvaluation};

/// The latest committed version of `federation` in the state of a stopped coordinator that ran
/// on `data_dir` with its in-process storage ([`storage::StorageConfig::for_in_process`]): the
/// demo and tests read results this way.
pub fn load_latest(
    data_dir: &std::path::Path,
    federation: &str,
) -> Result<(ModelVersion, Vec<f32>), CoordinatorError> {
    let storage =
        storage::Storage::open(&storage::StorageConfig::for_in_process(data_dir), data_dir)?;
    let store = store::StateStore::in_storage(&storage)?;
    let record = store
        .federation(federation)?
        .ok_or_else(|| CoordinatorError::UnknownFederation(federation.into()))?;
    let version = store
        .version(federation, record.latest_version)?
        .ok_or_else(|| CoordinatorError::UnknownVersion {
            federation: federation.into(),
            version: record.latest_version,
        })?;
    let bytes = storage.artifacts()?.get(&version.sha256)?;
    Ok((version, proto::chunk::bytes_to_f32(&bytes)?))
}

/// Every committed version of `federation` under `data_dir`, oldest first.
pub fn load_versions(
    data_dir: &std::path::Path,
    federation: &str,
) -> Result<Vec<ModelVersion>, CoordinatorError> {
    let storage =
        storage::Storage::open(&storage::StorageConfig::for_in_process(data_dir), data_dir)?;
    store::StateStore::in_storage(&storage)?.versions(federation)
}

/// How often deadlines are checked when no request arrives.
const TICK: Duration = Duration::from_millis(50);

/// Runs the coordinator on `listener` (gRPC, over TLS unless the config sets
/// `insecure_plaintext`) until `shutdown` resolves. If the config names a metrics address, the
/// Prometheus endpoint is bound there. With PostgreSQL storage it first waits for the
/// round-driver lease of its schema ([`storage::lease`]).
pub async fn serve(
    listener: TcpListener,
    config: CoordinatorConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), CoordinatorError> {
    let metrics_listener = bind_metrics(&config).await?;
    serve_with(
        listener,
        metrics_listener,
        config,
        Arc::new(Metrics::default()),
        shutdown,
    )
    .await
}

/// [`serve`] with an explicit metrics listener and metrics registry (tests, benchmarks).
pub async fn serve_with(
    listener: TcpListener,
    metrics_listener: Option<TcpListener>,
    config: CoordinatorConfig,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), CoordinatorError> {
    let Some((lease, stop)) = checked_lease(&config, shutdown).await? else {
        return Ok(());
    };
    run(listener, metrics_listener, config, metrics, lease, stop).await
}

/// The coordinator of `gridfed coordinator serve`: takes the round-driver lease first (a
/// standby waits here, not bound to any address), then binds `config.listen` (and the metrics
/// address) and serves until `shutdown` resolves. `on_listening` learns the bound address.
pub async fn serve_config(
    config: CoordinatorConfig,
    on_listening: impl FnOnce(std::net::SocketAddr),
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), CoordinatorError> {
    let Some((lease, stop)) = checked_lease(&config, shutdown).await? else {
        return Ok(());
    };
    // A standby that just took over binds the address its predecessor held.
    let listener = TcpListener::bind(&config.listen)
        .await
        .map_err(|e| CoordinatorError::Config(format!("listen address {}: {e}", config.listen)))?;
    if let Ok(addr) = listener.local_addr() {
        on_listening(addr);
    }
    let metrics_listener = bind_metrics(&config).await?;
    run(
        listener,
        metrics_listener,
        config,
        Arc::new(Metrics::default()),
        lease,
        stop,
    )
    .await
}

async fn bind_metrics(config: &CoordinatorConfig) -> Result<Option<TcpListener>, CoordinatorError> {
    match &config.metrics_listen {
        Some(addr) => Ok(Some(TcpListener::bind(addr).await.map_err(|e| {
            CoordinatorError::Config(format!("metrics address {addr}: {e}"))
        })?)),
        None => Ok(None),
    }
}

/// The round-driver lease (none with redb) and the shutdown signal a serving process runs under.
type Driving = (Option<storage::lease::DriverLease>, watch::Receiver<bool>);

/// Checks the configuration (a standby must not wait for a lease it cannot use), then waits for
/// the round-driver lease; `None` when `shutdown` came first.
async fn checked_lease(
    config: &CoordinatorConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<Option<Driving>, CoordinatorError> {
    config.validate()?;
    config.transport()?;
    let stop = shutdown_signal(shutdown);
    Ok(driver_lease(config, stop.clone())
        .await?
        .map(|lease| (lease, stop)))
}

/// `shutdown` as a signal several waits can share.
fn shutdown_signal(shutdown: impl Future<Output = ()> + Send + 'static) -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        tokio::select! {
            () = shutdown => { let _ = tx.send(true); }
            // Everyone listening is gone: nothing to signal.
            () = tx.closed() => {}
        }
    });
    rx
}

/// The round-driver lease for PostgreSQL storage (`Some(None)` for redb, whose files one
/// process owns anyway); `None` when shutdown came first.
async fn driver_lease(
    config: &CoordinatorConfig,
    mut stop: watch::Receiver<bool>,
) -> Result<Option<Option<storage::lease::DriverLease>>, CoordinatorError> {
    let storage::StorageConfig::Postgres { url, schema, .. } = &config.storage else {
        return Ok(Some(None));
    };
    let cancelled = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (tx, rx) = tokio::sync::oneshot::channel();
    {
        let (url, schema, cancelled) = (url.clone(), schema.clone(), cancelled.clone());
        // A plain thread: the client blocks on a runtime of its own.
        std::thread::Builder::new()
            .name("gridfed-lease-wait".into())
            .spawn(move || {
                let report = |pid: Option<i32>| {
                    info!(schema = %schema, holder_backend_pid = ?pid,
                        "standby: another coordinator drives this schema's rounds; waiting for its lease")
                };
                // If nobody waits any more, the lease is dropped with the unsent message.
                let _ = tx.send(storage::lease::DriverLease::acquire(
                    &url, &schema, &cancelled, report,
                ));
            })
            .map_err(|e| CoordinatorError::Store(format!("driver lease thread: {e}")))?;
    }
    tokio::select! {
        acquired = rx => {
            let acquired = acquired
                .map_err(|_| CoordinatorError::Store("driver lease wait failed".into()))??;
            if acquired.is_some() {
                info!(schema = %schema, "holding the round-driver lease");
            }
            Ok(acquired.map(Some))
        }
        _ = stop.wait_for(|s| *s) => {
            cancelled.store(true, std::sync::atomic::Ordering::Relaxed);
            Ok(None)
        }
    }
}

async fn run(
    listener: TcpListener,
    metrics_listener: Option<TcpListener>,
    config: CoordinatorConfig,
    metrics: Arc<Metrics>,
    lease: Option<storage::lease::DriverLease>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), CoordinatorError> {
    let data_dir = config.data_dir.clone();
    // Certificate problems are configuration errors: report them before opening any state.
    let transport = config.transport()?;
    let limits = config.limits.clone();
    let builder = server_builder(&transport)?
        .max_concurrent_streams(Some(limits.max_streams_per_connection))
        // Dead peers (a site that lost power mid-stream) are noticed and their streams freed.
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(20)));
    let operator_tokens = config.operator_tokens.clone();
    let board_readers: Vec<String> = config
        .board_reader_tokens
        .iter()
        .chain(&config.operator_tokens)
        .cloned()
        .collect();
    let hub = tokio::task::spawn_blocking(move || Hub::open(config, grpc::now_ms(), metrics))
        .await
        .map_err(|e| CoordinatorError::Store(format!("opening state: {e}")))??;
    let (hub, registry) = registry::grpc::attach(hub).await?;
    let storage = hub.storage().clone();
    let board = tokio::task::spawn_blocking(move || board::Board::in_storage(&storage))
        .await
        .map_err(|e| CoordinatorError::Store(format!("opening the board: {e}")))?
        .map_err(|e| CoordinatorError::Store(format!("opening the board: {e}")))?;
    let coordinator_key = hub.coordinator_key();
    let metrics = hub.metrics().clone();
    registry.report_to(metrics.clone());
    let hub = Arc::new(Mutex::new(hub));
    // Versions that settled just before an unclean stop are signed now, not on first lookup.
    sign_settled(&hub, &registry, "at start").await;
    let (changes, _) = watch::channel(0u64);
    let (stop_tx, stop_rx) = watch::channel(false);
    let stop_http = stop_rx.clone();
    let tls = matches!(transport, tls::Transport::Tls(_));
    info!(addr = ?listener.local_addr().ok(), data_dir = %data_dir.display(), tls, "coordinator serving");

    let ticker = tokio::spawn(tick(
        hub.clone(),
        registry.clone(),
        changes.clone(),
        stop_rx.clone(),
    ));
    let service = grpc::FederationService::new(
        hub.clone(),
        changes,
        stop_rx,
        coordinator_key,
        limits::UploadGate::new(&limits),
    );
    let server = proto::v1::federation_server::FederationServer::new(service)
        .max_decoding_message_size(proto::MAX_MESSAGE_BYTES)
        .max_encoding_message_size(proto::MAX_MESSAGE_BYTES);
    // The model registry and the forecast service share the server.
    let registry_service = proto::registry::registry_server::RegistryServer::new(
        registry::grpc::RegistryService::new(hub.clone(), registry.clone(), operator_tokens),
    )
    .max_encoding_message_size(proto::MAX_MESSAGE_BYTES);
    let board = Arc::new(board);
    // The dashboard shows every site's board forecasts: the board's readers may open it.
    let dashboard = (!board_readers.is_empty()).then(|| http::DashboardSource {
        hub: hub.clone(),
        registry: registry.clone(),
        board: board.clone(),
        tokens: Arc::new(board_readers.clone()),
    });
    let metrics_task = metrics_listener.map(|l| {
        let mut stop = stop_http;
        tokio::spawn(http::serve(l, metrics.clone(), dashboard, async move {
            let _ = stop.wait_for(|s| *s).await;
        }))
    });
    let forecast_service = proto::forecast::forecast_server::ForecastServer::new(
        forecast::ForecastService::new(hub.clone(), registry.clone(), board, board_readers),
    )
    .max_decoding_message_size(proto::MAX_MESSAGE_BYTES);
    let server = routes::PathRoute::new(
        registry_service,
        routes::PathRoute::new(forecast_service, server),
    );
    let mut lease_lost = lease.as_ref().map(|l| l.lost_signal());
    let stop_on_shutdown = async move {
        match lease_lost.as_mut() {
            Some(lost) => tokio::select! {
                _ = shutdown.wait_for(|s| *s) => {}
                _ = lost.wait_for(|l| *l) => {}
            },
            None => {
                let _ = shutdown.wait_for(|s| *s).await;
            }
        }
        let _ = stop_tx.send(true);
    };
    // The builder's `tcp_nodelay` is ignored for a given listener: set it on the incoming
    // stream, or Nagle holds each small response frame for the peer's delayed ACK (~40 ms).
    let incoming = tonic::transport::server::TcpIncoming::from(listener)
        .with_nodelay(Some(true))
        .with_keepalive(Some(Duration::from_secs(60)));
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let connections_refused = metrics.clone();
    let incoming = tokio_stream::StreamExt::filter_map(incoming, move |accepted| match accepted {
        Ok(io) => match limits::CappedConnection::admit(io, &slots) {
            Some(connection) => Some(Ok(connection)),
            None => {
                connections_refused.connection_refused();
                None
            }
        },
        Err(e) => Some(Err(e)),
    });
    let result = builder
        .serve_with_incoming_shutdown(server, incoming, stop_on_shutdown)
        .await;
    let _ = ticker.await;
    // A version that settled after the last tick is signed before the state closes.
    sign_settled(&hub, &registry, "at stop").await;
    if let Some(task) = metrics_task {
        let _ = task.await;
    }
    // Wait for blocking calls still holding the state, so the database is closed on return.
    for _ in 0..200 {
        if Arc::strong_count(&hub) == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(hub);
    if lease.as_ref().is_some_and(|l| l.is_lost()) {
        tracing::error!("lost the round-driver lease: stopped so that a standby drives");
        return Err(CoordinatorError::Store(
            "lost the round-driver lease (the database session ended); stopped serving so that \
             a standby drives the rounds"
                .into(),
        ));
    }
    // The lease goes last: a standby opens the state only once this process has closed it.
    drop(lease);
    info!("coordinator stopped");
    result.map_err(|e| CoordinatorError::Config(format!("gRPC server: {e}")))
}

/// A gRPC server builder for `transport` (plaintext is logged as the warning it is).
fn server_builder(
    transport: &tls::Transport,
) -> Result<tonic::transport::Server, CoordinatorError> {
    let builder = tonic::transport::Server::builder();
    match transport {
        tls::Transport::Tls(identity) => builder
            .tls_config(identity.server_tls_config())
            .map_err(|e| CoordinatorError::Config(format!("TLS: {e}"))),
        tls::Transport::InsecurePlaintext => {
            warn!(
                "INSECURE: serving gRPC as plaintext HTTP/2 (insecure_plaintext = true); \
                 federation metadata is visible on the network and the server is not \
                 authenticated. For tests only"
            );
            Ok(builder)
        }
    }
}

/// Signs the manifests of every settled version that has none. A failure (e.g. a damaged
/// artifact) is reported when the version is used; it must not stop the coordinator.
async fn sign_settled(hub: &Arc<Mutex<Hub>>, registry: &Arc<registry::Registry>, when: &str) {
    let (hub, registry) = (hub.clone(), registry.clone());
    let signed =
        tokio::task::spawn_blocking(move || registry::grpc::sync_all(&registry, &hub)).await;
    if let Ok(Err(e)) = signed {
        warn!(error = %e, when, "signing the manifests of settled versions failed");
    }
}

async fn tick(
    hub: Arc<Mutex<Hub>>,
    registry: Arc<registry::Registry>,
    changes: watch::Sender<u64>,
    mut stop: watch::Receiver<bool>,
) {
    let mut interval = tokio::time::interval(TICK);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Versions settled before the first tick were signed at start.
    let mut signed_through = 0;
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let (hub, registry, changes) = (hub.clone(), registry.clone(), changes.clone());
        let last = signed_through;
        signed_through = tokio::task::spawn_blocking(move || {
            let settled = match hub.lock() {
                Ok(mut hub) => {
                    hub.advance(grpc::now_ms());
                    let generation = hub.generation();
                    changes.send_if_modified(|g| std::mem::replace(g, generation) != generation);
                    hub.settled()
                }
                Err(_) => last,
            };
            // Outside the hub's lock: signing reads every new version's weights.
            if settled != last
                && let Err(e) = registry::grpc::sync_all(&registry, &hub)
            {
                warn!(error = %e, "signing new version manifests failed; retried when a version settles");
            }
            settled
        })
        .await
        .unwrap_or(last);
    }
}
