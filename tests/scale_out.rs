//! Several processes, one PostgreSQL: a standby coordinator takes over when the active one is
//! killed (kill -9, real `gridfed coordinator serve` processes) and finishes the federation
//! with every version present exactly once; three read-only forecast replicas answer the same
//! forecast for an alias right after each promote. Skipped loudly without PostgreSQL
//! (`GRIDFED_TEST_POSTGRES`), except under CI, where they must run.

#[path = "../participant/tests/common/mod.rs"]
mod common;
#[path = "support/process.rs"]
mod process;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use coordinator::replica::{ReplicaConfig, serve_forecast_replica};
use coordinator::storage::{Storage, StorageConfig, postgres::PgPool, test_postgres_url};
use participant::FixedUpdate;
use process::{Reaped, free_port};
use proto::forecast::forecast_client::ForecastClient;
use proto::registry as rpb;
use tokio::net::TcpListener;

/// A schema of its own for each test run (dropped at the end; CI drops leftovers).
fn schema(test: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("it_{test}_{:x}_{nanos:x}", std::process::id())
}

fn postgres(url: &str, schema: &str) -> StorageConfig {
    StorageConfig::Postgres {
        url: url.into(),
        schema: schema.into(),
        max_connections: 4,
    }
}

/// `gridfed coordinator serve --config <config>` with its log in `log`.
fn spawn_coordinator(config: &Path, log: &Path) -> Child {
    let log = std::fs::File::create(log).unwrap();
    Command::new(env!("CARGO_BIN_EXE_gridfed"))
        .args(["coordinator", "serve", "--config"])
        .arg(config)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("starting gridfed coordinator serve")
}

fn wait_for_log(log: &Path, needle: &str, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.contains(needle) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "`{needle}` not in {} within {limit:?}:\n{text}",
            log.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standby_finishes_the_federation_after_the_active_coordinator_is_killed() {
    let Some(url) = test_postgres_url("standby takeover") else {
        return;
    };
    let schema = schema("failover");
    let dir = tempfile::tempdir().unwrap();
    let (n, d, rounds) = (4, 2_000, 3);
    let port = free_port();
    let config = dir.path().join("coordinator.toml");
    // Active and standby share the config: the address (a standby binds it once it drives),
    // the database, and the coordinator key in the data directory (a copy in production).
    std::fs::write(
        &config,
        format!(
            r#"data_dir = "data"
listen = "127.0.0.1:{port}"
enrollment_tokens = ["{TOKEN}"]
insecure_plaintext = true
long_poll_ms = 2000

[[federation]]
name = "load"
tag = "load"
protection = "masked"
rounds = {rounds}
min_participants = {n}
initial_weights = {{ zeros = {d} }}

[storage]
backend = "postgres"
url = "{url}"
schema = "{schema}"
"#
        ),
    )
    .unwrap();
    let (log_a, log_b) = (dir.path().join("a.log"), dir.path().join("b.log"));
    let mut active = Reaped(spawn_coordinator(&config, &log_a));
    wait_for_log(&log_a, "coordinator serving", Duration::from_secs(30));
    let standby = Reaped(spawn_coordinator(&config, &log_b));
    wait_for_log(&log_b, "standby", Duration::from_secs(30));

    let url_a = format!("http://127.0.0.1:{port}");
    let training = TrainingStarts::default();
    let handles: Vec<_> = (0..n)
        .map(|i| {
            let trainer = Arc::new(Slow(
                FixedUpdate {
                    delta: delta(i, d),
                    samples: SAMPLES[i],
                },
                Duration::from_millis(1_500),
                training.clone(),
            ));
            spawn_daemon(&url_a, &format!("site-{i}"), "load", trainer)
        })
        .collect();
    // Round 1 is in flight (every participant is training) when the active one is killed.
    training.wait_for(n, Duration::from_secs(60)).await;
    active.0.kill().unwrap();
    active.0.wait().unwrap();

    wait_for_log(
        &log_b,
        "holding the round-driver lease",
        Duration::from_secs(30),
    );
    let summaries = join_all(handles, Duration::from_secs(180)).await;
    assert!(
        summaries.iter().all(|s| s.final_version == Some(rounds)),
        "{summaries:?}"
    );
    drop(standby);

    let storage = Storage::open(&postgres(&url, &schema), &dir.path().join("data")).unwrap();
    let versions = coordinator::store::StateStore::in_storage(&storage)
        .unwrap()
        .versions("load")
        .unwrap();
    // Every version once, in order; the killed round was aborted, not half-committed.
    assert_eq!(
        versions.iter().map(|v| v.version).collect::<Vec<_>>(),
        (0..=rounds).collect::<Vec<_>>()
    );
    let rounds_of: Vec<u64> = versions[1..].iter().map(|v| v.round).collect();
    assert!(rounds_of.windows(2).all(|w| w[0] < w[1]), "{rounds_of:?}");
    assert!(rounds_of[0] >= 2, "round 1 was interrupted: {rounds_of:?}");
    assert!(versions[1..].iter().all(|v| v.participants == n as u64));
    let latest = storage
        .artifacts()
        .unwrap()
        .get(&versions[rounds as usize].sha256)
        .unwrap();
    let weights = proto::chunk::bytes_to_f32(&latest).unwrap();
    let expected: Vec<f32> = fixed_fedavg(n, d)
        .iter()
        .map(|v| rounds as f32 * v)
        .collect();
    assert!(max_abs_diff(&weights, &expected) < 1e-4);
    let takeover = std::fs::read_to_string(&log_b).unwrap();
    assert!(
        takeover.contains("aborting the round interrupted by a restart"),
        "{takeover}"
    );
    drop(storage);
    PgPool::drop_schema(&url, &schema).unwrap();
}

const SPEC: &str = r#"
name = "res-load"
target = "load"
sector = "residential"
context = 24
horizon = 24
features = ["temperature_forecast_c"]
protection = "plain"
rounds = 2

[architecture]
hidden = [4]

[training]
min_participants = 1
"#;

/// Four weeks of hourly load history (what the model normalizes over) before the origin.
fn request() -> proto::forecast::ForecastRequest {
    const STEPS: i64 = 24 * 28;
    let origin = 1_767_225_600; // 2026-01-01T00:00:00Z
    let timestamps: Vec<i64> = (0..STEPS).map(|i| origin - 3_600 * (STEPS - i)).collect();
    let values: Vec<f64> = (0..STEPS)
        .map(|i| 1.0 + 0.5 * ((i % 24) as f64 / 24.0 * std::f64::consts::TAU).sin())
        .collect();
    proto::forecast::ForecastRequest {
        model: "res-load@production".into(),
        horizon_steps: 24,
        site: Some(proto::forecast::Site {
            kind: "building".into(),
            latitude: 48.1,
            longitude: 11.6,
            capacity_kw: 0.0,
            timezone: "Europe/Berlin".into(),
        }),
        origin_unix_s: origin,
        history: Some(proto::forecast::Series {
            timestamps_unix_s: timestamps,
            values_kw: values,
        }),
        future: Some(proto::forecast::Covariates {
            timestamps_unix_s: (0..24).map(|i| origin + 3_600 * i).collect(),
            covariates: vec![proto::forecast::CovariateSeries {
                name: "temperature_forecast_c".into(),
                values: (0..24).map(|i| 5.0 + f64::from(i) / 4.0).collect(),
            }],
        }),
        site_normalization: None,
        absent_covariates: Vec::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_answer_the_promoted_version_at_once() {
    let Some(url) = test_postgres_url("forecast replicas") else {
        return;
    };
    let schema = schema("replicas");
    let dir = tempfile::tempdir().unwrap();
    let mut config = coordinator::CoordinatorConfig::new(dir.path(), TOKEN, vec![]);
    config.insecure_plaintext = true;
    config.operator_tokens = vec![OPERATOR.into()];
    config.storage = postgres(&url, &schema);
    let coord = RunningCoordinator::start_with("127.0.0.1:0", config).await;
    let manifests = coord.fixed_versions(SPEC, 1).await;
    assert_eq!(manifests.len(), 2);
    let key = coordinator::round::masked::CoordinatorIdentity::load_or_create(dir.path())
        .unwrap()
        .verifying_key();

    let mut replicas = Vec::new();
    for _ in 0..3 {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let config =
            ReplicaConfig::insecure_plaintext(&addr.to_string(), key, postgres(&url, &schema));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(serve_forecast_replica(listener, config, async move {
            let _ = stopped.await;
        }));
        replicas.push((format!("http://{addr}"), stop, task));
    }
    let mut clients = Vec::new();
    for (url, _, _) in &replicas {
        let endpoint = participant::client::CoordinatorEndpoint::insecure_plaintext(url).unwrap();
        let channel = participant::client::open_channel(&endpoint).await.unwrap();
        clients.push(ForecastClient::new(channel));
    }
    let channel = participant::client::open_channel(&coord.endpoint())
        .await
        .unwrap();
    let mut registry = rpb::registry_client::RegistryClient::new(channel.clone());
    let mut primary = ForecastClient::new(channel);

    // Nothing promoted yet: every replica says so.
    for client in &mut clients {
        let status = client.forecast(request()).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::NotFound, "{status:?}");
    }
    let mut answers = Vec::new();
    for version in [1u64, 2, 1] {
        registry
            .promote(authed(
                rpb::PromoteRequest {
                    model_ref: format!("res-load@{version}"),
                    alias: "production".into(),
                },
                OPERATOR,
            ))
            .await
            .unwrap();
        // No wait: the first request after the promote already sees it, on every replica.
        let expected = primary.forecast(request()).await.unwrap().into_inner();
        assert_eq!(expected.version, version);
        for client in &mut clients {
            let got = client.forecast(request()).await.unwrap().into_inner();
            assert_eq!(got, expected, "replica differs from the coordinator");
        }
        answers.push(expected);
    }
    assert_eq!(answers[0], answers[2], "rollback serves version 1 again");
    let describe = || proto::forecast::DescribeModelRequest {
        model: "res-load".into(),
    };
    let described = primary
        .describe_model(describe())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(described.version, 1);
    for client in &mut clients {
        let got = client
            .describe_model(describe())
            .await
            .unwrap()
            .into_inner();
        assert_eq!(got, described, "replica describes another version");
    }
    assert_eq!(
        answers[0].version_id, manifests[0].id,
        "the signed version is served"
    );

    // Writes and downloads go to the coordinator.
    let mut board = clients.remove(0);
    let status = board
        .publish_site_forecast(proto::forecast::PublishSiteForecastRequest::default())
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::FailedPrecondition);
    assert!(status.message().contains("read-only forecast replica"));

    // A replica configured with another key serves nothing: manifests fail to verify.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let other = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]).verifying_key();
    let forged = ReplicaConfig::insecure_plaintext(
        &addr.to_string(),
        other.to_bytes(),
        postgres(&url, &schema),
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(serve_forecast_replica(listener, forged, async move {
        let _ = stopped.await;
    }));
    let endpoint =
        participant::client::CoordinatorEndpoint::insecure_plaintext(&format!("http://{addr}"))
            .unwrap();
    let mut wrong =
        ForecastClient::new(participant::client::open_channel(&endpoint).await.unwrap());
    let status = wrong.forecast(request()).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::DataLoss, "{status:?}");
    let _ = stop.send(());
    task.await.unwrap().unwrap();

    for (_, stop, task) in replicas {
        let _ = stop.send(());
        task.await.unwrap().unwrap();
    }
    coord.stop().await;
    PgPool::drop_schema(&url, &schema).unwrap();
}
