//! Transport security over real sockets on 127.0.0.1: a masked round over TLS, a participant
//! trusting another CA or addressing a name the certificate lacks is refused with a clear
//! error, a plaintext client fails while the server keeps serving, and config mistakes name
//! the field.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use coordinator::tls::GeneratedTls;
use coordinator::{CoordinatorConfig, FederationSpec, Protection};
use participant::client::{CoordinatorEndpoint, FederationLink, connect};
use participant::{Daemon, ParticipantConfig, ParticipantError, SiteIdentity};

async fn start_tls(dir: &Path, tls: &GeneratedTls, spec: FederationSpec) -> RunningCoordinator {
    let mut config = CoordinatorConfig::new(dir, TOKEN, vec![spec]);
    config.tls_identity = Some(tls.server.clone());
    RunningCoordinator::start_with("127.0.0.1:0", config).await
}

fn trusting(url: &str, ca: &GeneratedTls) -> CoordinatorEndpoint {
    CoordinatorEndpoint::tls(url, ca.ca_cert_pem.as_bytes(), "test CA").unwrap()
}

async fn enroll(endpoint: &CoordinatorEndpoint) -> Result<FederationLink, ParticipantError> {
    let client = connect(endpoint).await?;
    let identity = Arc::new(SiteIdentity::generate()?);
    FederationLink::enroll(client, identity, TOKEN, "site", None).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn masked_round_over_tls_is_fedavg() {
    let dir = tempfile::tempdir().unwrap();
    let tls = coordinator::tls::generate(&[]).unwrap();
    let d = 1_000;
    let spec = FederationSpec {
        min_participants: 4,
        ..FederationSpec::vector("load", d as u64, Protection::Masked, 1)
    };
    let coord = start_tls(dir.path(), &tls, spec).await;
    assert!(coord.url().starts_with("https://127.0.0.1:"));
    let handles = (0..4)
        .map(|i| {
            spawn_daemon_at(
                trusting(&coord.url(), &tls),
                &format!("site-{i}"),
                "load",
                fixed(i, d, SAMPLES[i]),
            )
        })
        .collect();
    let summaries = join_all(handles, Duration::from_secs(120)).await;
    assert!(summaries.iter().all(|s| s.final_version == Some(1)));
    coord.stop().await;
    let (version, weights) = coordinator::load_latest(dir.path(), "load").unwrap();
    assert_eq!((version.version, version.participants), (1, 4));
    let expected = fixed_fedavg(4, d);
    assert!(max_abs_diff(&weights, &expected) < 1e-3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_participant_trusting_another_ca_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let tls = coordinator::tls::generate(&[]).unwrap();
    let other = coordinator::tls::generate(&[]).unwrap();
    let spec = FederationSpec::vector("load", 10, Protection::Plain, 1);
    let coord = start_tls(dir.path(), &tls, spec).await;

    let err = enroll(&trusting(&coord.url(), &other))
        .await
        .err()
        .expect("an untrusted certificate must be refused");
    let message = err.to_string();
    assert!(matches!(err, ParticipantError::Tls(_)), "{err:?}");
    assert!(!err.is_transient(), "a wrong CA is not worth retrying");
    assert!(
        message.contains("UnknownIssuer") && message.contains("ca_cert"),
        "{message}"
    );

    // The daemon gives up with the same error instead of retrying forever.
    let daemon = Daemon::new(
        settings_at(trusting(&coord.url(), &other), "site", "load"),
        Arc::new(SiteIdentity::generate().unwrap()),
        fixed(0, 10, 1),
    )
    .unwrap();
    let result = tokio::time::timeout(Duration::from_secs(20), daemon.run(std::future::pending()))
        .await
        .expect("daemon must stop");
    assert!(
        matches!(result, Err(ParticipantError::Tls(_))),
        "{result:?}"
    );

    // The right CA still gets in.
    enroll(&trusting(&coord.url(), &tls)).await.unwrap();
    coord.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_for_another_host_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    // Valid CA, but the certificate names only `coordinator.example`, not 127.0.0.1.
    let tls = coordinator::tls::generate(&["coordinator.example".into()]).unwrap();
    let spec = FederationSpec::vector("load", 10, Protection::Plain, 1);
    let coord = start_tls(dir.path(), &tls, spec).await;
    let err = enroll(&trusting(&coord.url(), &tls)).await.err().unwrap();
    let message = err.to_string();
    assert!(matches!(err, ParticipantError::Tls(_)), "{err:?}");
    assert!(message.contains("not valid for name"), "{message}");
    coord.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_clients_fail_and_the_tls_server_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let tls = coordinator::tls::generate(&[]).unwrap();
    let spec = FederationSpec::vector("load", 10, Protection::Plain, 1);
    let coord = start_tls(dir.path(), &tls, spec).await;

    let plaintext =
        CoordinatorEndpoint::insecure_plaintext(&format!("http://{}", coord.addr)).unwrap();
    for _ in 0..3 {
        let result = tokio::time::timeout(Duration::from_secs(15), enroll(&plaintext))
            .await
            .expect("a plaintext client must fail, not hang");
        assert!(result.is_err(), "plaintext gRPC reached a TLS server");
    }
    // A raw socket that sends garbage and hangs up.
    {
        use tokio::io::AsyncWriteExt as _;
        let mut socket = tokio::net::TcpStream::connect(coord.addr).await.unwrap();
        socket.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    }
    let link = enroll(&trusting(&coord.url(), &tls)).await.unwrap();
    assert!(link.participant_id().starts_with('p'));
    coord.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_client_against_a_plaintext_server_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let tls = coordinator::tls::generate(&[]).unwrap();
    let spec = FederationSpec::vector("load", 10, Protection::Plain, 1);
    let coord = RunningCoordinator::start(dir.path(), vec![spec]).await;
    let url = format!("https://{}", coord.addr);
    let err = enroll(&trusting(&url, &tls)).await.err().unwrap();
    assert!(matches!(err, ParticipantError::Tls(_)), "{err:?}");
    assert!(err.to_string().contains("serving TLS"), "{err}");
    coord.stop().await;
}

fn participant_config(dir: &Path, transport: &str) -> Result<ParticipantConfig, ParticipantError> {
    ParticipantConfig::from_toml(&format!(
        r#"
{transport}
key_file = "{key}"
enrollment_token = "{TOKEN}"
federation_tag = "load"
[data]
dir = "{dir}"
site_id = "site-1"
target = "load"
"#,
        key = dir.join("site.key").display(),
        dir = dir.display(),
    ))
}

#[test]
fn participant_config_errors_name_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let err = participant_config(dir.path(), r#"coordinator = "http://127.0.0.1:7400""#)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("http://") && err.contains("insecure_plaintext"),
        "{err}"
    );
    let plain = participant_config(
        dir.path(),
        "coordinator = \"http://127.0.0.1:7400\"\ninsecure_plaintext = true",
    )
    .unwrap();
    assert!(!plain.endpoint().unwrap().is_tls());

    let err = participant_config(dir.path(), r#"coordinator = "https://127.0.0.1:7400""#)
        .unwrap_err()
        .to_string();
    assert!(err.contains("ca_cert is required"), "{err}");

    let missing = dir.path().join("missing-ca.pem");
    let config = participant_config(
        dir.path(),
        &format!(
            "coordinator = \"https://127.0.0.1:7400\"\nca_cert = \"{}\"",
            missing.display()
        ),
    )
    .unwrap();
    let err = config.endpoint().unwrap_err().to_string();
    assert!(
        err.contains("ca_cert") && err.contains("missing-ca.pem") && err.contains("cannot read"),
        "{err}"
    );

    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "not a certificate").unwrap();
    let config = ParticipantConfig {
        ca_cert: Some(junk),
        ..config
    };
    let err = config.endpoint().unwrap_err().to_string();
    assert!(
        err.contains("ca_cert") && err.contains("no CERTIFICATE"),
        "{err}"
    );
    let tls = coordinator::tls::generate(&[]).unwrap();
    let paths = tls.write(&dir.path().join("tls"), false).unwrap();
    let config = ParticipantConfig {
        ca_cert: Some(paths.ca_cert),
        ..config
    };
    assert!(config.endpoint().unwrap().is_tls());
}

#[tokio::test]
async fn coordinator_config_errors_name_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let spec = FederationSpec::vector("load", 10, Protection::Plain, 1);
    // Neither TLS nor the explicit plaintext flag: serving refuses before binding anything.
    let config = CoordinatorConfig::new(dir.path(), TOKEN, vec![spec.clone()]);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let err = coordinator::serve(listener, config, async {})
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("insecure_plaintext"), "{err}");

    let mut config = CoordinatorConfig::new(dir.path(), TOKEN, vec![spec]);
    config.tls = Some(coordinator::TlsFiles {
        cert: dir.path().join("absent.pem"),
        key: dir.path().join("absent.key"),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let err = coordinator::serve(listener, config, async {})
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("tls.cert") && err.contains("absent.pem"),
        "{err}"
    );
}
