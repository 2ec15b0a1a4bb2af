//! Shared harness: a real coordinator on 127.0.0.1:0 and participant daemons as tokio tasks.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use coordinator::{CoordinatorConfig, FederationSpec, Metrics};
use participant::client::CoordinatorEndpoint;
use participant::{Daemon, DaemonSettings, FixedUpdate, LocalTrainer, RunSummary, SiteIdentity};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const TOKEN: &str = "operator-token-123";
/// The registry's operator token of [`RunningCoordinator::start_registry`].
pub const OPERATOR: &str = "operator-secret-token-42";

/// The board reader token of [`RunningCoordinator::start_registry`] (a market engine's).
pub const BOARD_READER: &str = "market-engine-board-reader";

/// A forecast client that sends `authorization: Bearer <token>` with every call.
pub fn forecast_client_with(
    channel: tonic::transport::Channel,
    token: &str,
) -> proto::forecast::forecast_client::ForecastClient<
    tonic::service::interceptor::InterceptedService<
        tonic::transport::Channel,
        impl tonic::service::Interceptor,
    >,
> {
    let value: tonic::metadata::MetadataValue<_> = format!("Bearer {token}").parse().unwrap();
    proto::forecast::forecast_client::ForecastClient::with_interceptor(
        channel,
        move |mut request: tonic::Request<()>| {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
            Ok(request)
        },
    )
}

/// `message` with `authorization: Bearer <token>` (registry calls).
pub fn authed<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

pub struct RunningCoordinator {
    pub addr: SocketAddr,
    /// The HTTP listener: `/metrics` and the operators' dashboard.
    pub http_addr: SocketAddr,
    pub metrics: Arc<Metrics>,
    tls: bool,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), coordinator::CoordinatorError>>,
}

impl RunningCoordinator {
    pub async fn start(dir: &Path, federations: Vec<FederationSpec>) -> Self {
        Self::start_on("127.0.0.1:0", dir, federations).await
    }

    /// A plaintext coordinator (these tests are about the protocol, `tls.rs` about transport).
    pub async fn start_on(addr: &str, dir: &Path, federations: Vec<FederationSpec>) -> Self {
        let mut config = CoordinatorConfig::new(dir, TOKEN, federations);
        config.insecure_plaintext = true;
        Self::start_with(addr, config).await
    }

    /// A plaintext coordinator with no configured federations whose registry accepts
    /// [`OPERATOR`].
    pub async fn start_registry(dir: &Path) -> Self {
        let mut config = CoordinatorConfig::new(dir, TOKEN, vec![]);
        config.insecure_plaintext = true;
        config.operator_tokens = vec![OPERATOR.into()];
        config.board_reader_tokens = vec![BOARD_READER.into()];
        Self::start_with("127.0.0.1:0", config).await
    }

    /// Publishes `spec_toml` to the registry and runs its federation to the end with
    /// `daemons` fixed-update participants (a plain spec, so no training is needed to get
    /// signed versions; each version's evaluation round gets [`fixed_scores`]); returns the
    /// model's signed manifests, oldest first.
    pub async fn fixed_versions(
        &self,
        spec_toml: &str,
        daemons: usize,
    ) -> Vec<coordinator::registry::VersionManifest> {
        use proto::registry as pb;
        let model = self.run_fixed(spec_toml, daemons).await;
        let channel = participant::client::open_channel(&self.endpoint())
            .await
            .unwrap();
        let listed = pb::registry_client::RegistryClient::new(channel)
            .list_versions(authed(pb::ListVersionsRequest { model }, OPERATOR))
            .await
            .unwrap()
            .into_inner();
        listed
            .versions
            .iter()
            .map(|v| serde_json::from_str(&v.manifest_json).unwrap())
            .collect()
    }

    /// Publishes a model spec through the registry (operator token [`OPERATOR`]).
    pub async fn publish(&self, spec_toml: &str) -> proto::registry::PublishSpecResponse {
        use proto::registry as pb;
        let channel = participant::client::open_channel(&self.endpoint())
            .await
            .unwrap();
        pb::registry_client::RegistryClient::new(channel)
            .publish_spec(authed(
                pb::PublishSpecRequest {
                    spec_toml: spec_toml.into(),
                },
                OPERATOR,
            ))
            .await
            .unwrap()
            .into_inner()
    }

    /// [`Self::fixed_versions`] without asking the registry anything afterwards; returns the
    /// model's name.
    pub async fn run_fixed(&self, spec_toml: &str, daemons: usize) -> String {
        let published = self.publish(spec_toml).await;
        let d = published.parameters as usize;
        let handles = (0..daemons)
            .map(|i| {
                let label = format!("{}-{i}", published.model);
                let trainer = ScoredFixed(
                    FixedUpdate {
                        delta: delta(i, d),
                        samples: SAMPLES[i],
                    },
                    fixed_scores(i),
                );
                spawn_daemon(&self.url(), &label, &published.tag, Arc::new(trainer))
            })
            .collect();
        join_all(handles, Duration::from_secs(120)).await;
        published.model
    }

    pub async fn start_with(addr: &str, mut config: CoordinatorConfig) -> Self {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let listener = TcpListener::bind(addr).await.expect("bind");
        let addr = listener.local_addr().unwrap();
        let http = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let http_addr = http.local_addr().unwrap();
        let tls = !config.insecure_plaintext;
        config.long_poll_ms = 2_000;
        let metrics = Arc::new(Metrics::default());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(coordinator::serve_with(
            listener,
            Some(http),
            config,
            metrics.clone(),
            async move {
                let _ = stopped.await;
            },
        ));
        Self {
            addr,
            http_addr,
            metrics,
            tls,
            stop: Some(stop),
            task,
        }
    }

    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// The endpoint of a plaintext coordinator.
    pub fn endpoint(&self) -> CoordinatorEndpoint {
        CoordinatorEndpoint::insecure_plaintext(&self.url()).unwrap()
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task
            .await
            .expect("coordinator task")
            .expect("coordinator result");
    }
}

pub fn settings(url: &str, label: &str, tag: &str) -> DaemonSettings {
    settings_at(
        CoordinatorEndpoint::insecure_plaintext(url).unwrap(),
        label,
        tag,
    )
}

pub fn settings_at(coordinator: CoordinatorEndpoint, label: &str, tag: &str) -> DaemonSettings {
    DaemonSettings {
        coordinator,
        enrollment_token: TOKEN.into(),
        site_label: label.into(),
        federation_tag: tag.into(),
        limits: participant::Limits {
            long_poll_ms: 2_000,
            backoff_initial_ms: 50,
            backoff_max_ms: 500,
            ..Default::default()
        },
    }
}

pub fn spawn_daemon(
    url: &str,
    label: &str,
    tag: &str,
    trainer: Arc<dyn LocalTrainer>,
) -> JoinHandle<Result<RunSummary, participant::ParticipantError>> {
    spawn_daemon_at(
        CoordinatorEndpoint::insecure_plaintext(url).unwrap(),
        label,
        tag,
        trainer,
    )
}

pub fn spawn_daemon_at(
    endpoint: CoordinatorEndpoint,
    label: &str,
    tag: &str,
    trainer: Arc<dyn LocalTrainer>,
) -> JoinHandle<Result<RunSummary, participant::ParticipantError>> {
    let identity = Arc::new(SiteIdentity::generate().unwrap());
    let daemon = Daemon::new(settings_at(endpoint, label, tag), identity, trainer).unwrap();
    tokio::spawn(daemon.run(std::future::pending()))
}

/// FedAvg weights (sample counts) of the fixed-update participants `site-0`, `site-1`, ...
pub const SAMPLES: [u64; 6] = [120, 80, 200, 50, 170, 90];

/// Daemons `site-0..n` on `tag`, each sending `delta(i, d)` with weight `SAMPLES[i]`.
pub fn spawn_fixed(
    url: &str,
    tag: &str,
    n: usize,
    d: usize,
) -> Vec<JoinHandle<Result<RunSummary, participant::ParticipantError>>> {
    (0..n)
        .map(|i| spawn_daemon(url, &format!("site-{i}"), tag, fixed(i, d, SAMPLES[i])))
        .collect()
}

/// The plaintext FedAvg of what [`spawn_fixed`]'s first `n` daemons send.
pub fn fixed_fedavg(n: usize, d: usize) -> Vec<f32> {
    fedavg(
        &(0..n)
            .map(|i| (delta(i, d), SAMPLES[i]))
            .collect::<Vec<_>>(),
    )
}

/// A deterministic update for participant `i`, inside the clip range [-1, 1].
pub fn delta(i: usize, d: usize) -> Vec<f32> {
    (0..d)
        .map(|j| (((i * 7919 + j * 104_729) % 2001) as f32 / 1000.0 - 1.0) * 0.9)
        .collect()
}

pub fn fixed(i: usize, d: usize, samples: u64) -> Arc<dyn LocalTrainer> {
    Arc::new(FixedUpdate {
        delta: delta(i, d),
        samples,
    })
}

/// Sample-weighted mean of the given (delta, weight) pairs.
pub fn fedavg(updates: &[(Vec<f32>, u64)]) -> Vec<f32> {
    let d = updates[0].0.len();
    let total: f64 = updates.iter().map(|u| u.1 as f64).sum();
    (0..d)
        .map(|j| {
            (updates
                .iter()
                .map(|(v, w)| f64::from(v[j]) * *w as f64)
                .sum::<f64>()
                / total) as f32
        })
        .collect()
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Counts how many local trainings have started, so tests wait for events instead of sleeping.
#[derive(Clone, Default)]
pub struct TrainingStarts(Arc<AtomicUsize>);

impl TrainingStarts {
    pub fn record(&self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }

    /// Waits until at least `n` trainings have started; panics after `limit`.
    pub async fn wait_for(&self, n: usize, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        while self.0.load(Ordering::SeqCst) < n {
            assert!(
                tokio::time::Instant::now() < deadline,
                "only {} of {n} trainings started within {limit:?}",
                self.0.load(Ordering::SeqCst)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A trainer that is too slow to upload in time (a participant that dies mid-round).
pub struct Stalled(pub TrainingStarts);

impl LocalTrainer for Stalled {
    fn train(
        &self,
        _: &participant::TrainSpec,
        _: &[f32],
    ) -> Result<participant::LocalResult, participant::ParticipantError> {
        self.0.record();
        // Longer than the test's key + upload deadlines; short, because dropping the runtime
        // waits for blocking threads.
        std::thread::sleep(Duration::from_secs(8));
        Err(participant::ParticipantError::Protocol("stalled".into()))
    }
}

/// A trainer that takes a while (so a coordinator restart lands mid-round).
pub struct Slow(pub FixedUpdate, pub Duration, pub TrainingStarts);

impl LocalTrainer for Slow {
    fn train(
        &self,
        spec: &participant::TrainSpec,
        global: &[f32],
    ) -> Result<participant::LocalResult, participant::ParticipantError> {
        self.2.record();
        std::thread::sleep(self.1);
        self.0.train(spec, global)
    }
}

/// Plausible holdout scores of fixed-update participant `i`.
pub fn fixed_scores(i: usize) -> models::HoldoutScores {
    let x = i as f64;
    models::HoldoutScores {
        windows: 20 + 5 * i as u32,
        nmae: 0.1 + 0.01 * x,
        nmse: 0.02 + 0.002 * x,
        npinball: 0.04 + 0.003 * x,
        coverage: 0.8,
        persistence_nmae: 0.3,
    }
}

/// A fixed update that also reports fixed holdout scores in evaluation rounds.
pub struct ScoredFixed(pub FixedUpdate, pub models::HoldoutScores);

impl LocalTrainer for ScoredFixed {
    fn train(
        &self,
        spec: &participant::TrainSpec,
        global: &[f32],
    ) -> Result<participant::LocalResult, participant::ParticipantError> {
        self.0.train(spec, global)
    }

    fn evaluate(
        &self,
        _: &participant::TrainSpec,
        _: &[f32],
    ) -> Result<models::HoldoutScores, participant::ParticipantError> {
        Ok(self.1)
    }
}

pub async fn join_all(
    handles: Vec<JoinHandle<Result<RunSummary, participant::ParticipantError>>>,
    limit: Duration,
) -> Vec<RunSummary> {
    let mut out = Vec::new();
    for h in handles {
        let summary = tokio::time::timeout(limit, h)
            .await
            .expect("daemon timed out")
            .expect("daemon panicked")
            .expect("daemon failed");
        out.push(summary);
    }
    out
}

/// The methods of every message a participant sent.
#[derive(Default)]
pub struct Methods(pub std::sync::Mutex<Vec<&'static str>>);

impl participant::client::WireTap for Methods {
    fn outgoing(&self, method: &'static str, _encoded: &[u8]) {
        self.0.lock().unwrap().push(method);
    }
}

/// The CI suite runs twice (redb, then PostgreSQL). Tests of behaviour that does not depend on
/// the storage run in the first pass only: in the second this says so and returns true.
pub fn skip_in_postgres_pass(what: &str) -> bool {
    let second =
        std::env::var(coordinator::storage::TEST_STORAGE_ENV).is_ok_and(|s| s == "postgres");
    if second {
        eprintln!(
            "{what}: storage-independent, run in the redb pass; skipped in the PostgreSQL pass"
        );
    }
    second
}
