//! The coordinator's Prometheus endpoint, scraped over HTTP after real masked rounds, checked
//! against the exposition format's conventions as `promtool check metrics` applies them: every
//! family has HELP and TYPE, counters end in `_total`, durations are histograms in seconds with
//! cumulative buckets ending at `+Inf`, no milliseconds anywhere, labels of bounded
//! cardinality only.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use coordinator::{CoordinatorConfig, FederationSpec, Metrics, Protection};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

type Labels = BTreeMap<String, String>;

/// One sample line: metric name, labels, value.
type Sample = (String, Labels, f64);

/// A histogram's buckets (upper bound, cumulative count) by family and labels without `le`.
type Buckets = BTreeMap<(String, Labels), Vec<(f64, f64)>>;

fn parse_sample(line: &str) -> Sample {
    let (series, value) = line.rsplit_once(' ').expect("`name value`");
    let value: f64 = match value {
        "+Inf" => f64::INFINITY,
        v => v.parse().unwrap_or_else(|_| panic!("value of `{line}`")),
    };
    let (name, labels) = match series.split_once('{') {
        Some((name, rest)) => {
            let body = rest.strip_suffix('}').expect("closing brace");
            let labels = body
                .split(',')
                .map(|pair| {
                    let (k, v) = pair.split_once('=').expect("label=value");
                    let v = v.strip_prefix('"').and_then(|v| v.strip_suffix('"'));
                    (k.to_string(), v.expect("quoted label value").to_string())
                })
                .collect();
            (name.to_string(), labels)
        }
        None => (series.to_string(), BTreeMap::new()),
    };
    (name, labels, value)
}

async fn scrape(addr: std::net::SocketAddr) -> (String, String) {
    let mut socket = TcpStream::connect(addr).await.unwrap();
    socket
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    socket.read_to_string(&mut response).await.unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("HTTP response");
    (head.to_string(), body.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_follow_the_prometheus_conventions() {
    let dir = tempfile::tempdir().unwrap();
    let (n, d) = (3, 500);
    let spec = FederationSpec::vector("load", d as u64, Protection::Masked, 2);
    let mut config = CoordinatorConfig::new(dir.path(), TOKEN, vec![spec]);
    config.insecure_plaintext = true;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let metrics_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (addr, metrics_addr) = (
        listener.local_addr().unwrap(),
        metrics_listener.local_addr().unwrap(),
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(coordinator::serve_with(
        listener,
        Some(metrics_listener),
        config,
        Arc::new(Metrics::default()),
        async move {
            let _ = stopped.await;
        },
    ));
    let handles = spawn_fixed(&format!("http://{addr}"), "load", n, d);
    join_all(handles, Duration::from_secs(60)).await;
    let (head, body) = scrape(metrics_addr).await;
    let _ = stop.send(());
    server.await.unwrap().unwrap();

    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("text/plain; version=0.0.4"), "{head}");

    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut helps: BTreeSet<String> = BTreeSet::new();
    let mut samples: Vec<Sample> = Vec::new();
    for line in body.lines().filter(|l| !l.is_empty()) {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').expect("HELP text");
            assert!(!help.trim().is_empty(), "{name}: empty HELP");
            assert!(helps.insert(name.to_string()), "{name}: HELP twice");
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE kind");
            assert!(
                ["counter", "gauge", "histogram"].contains(&kind),
                "{name}: {kind}"
            );
            assert!(
                types.insert(name.to_string(), kind.to_string()).is_none(),
                "{name}: TYPE twice"
            );
        } else {
            assert!(!line.starts_with('#'), "unknown comment `{line}`");
            samples.push(parse_sample(line));
        }
    }
    assert_eq!(
        helps,
        types.keys().cloned().collect::<BTreeSet<_>>(),
        "every family has HELP and TYPE"
    );
    for (family, kind) in &types {
        assert!(
            family
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
                && family.starts_with("gridfed_"),
            "{family}: name"
        );
        assert!(
            !family.contains("_ms") && !family.contains("millis"),
            "{family}: base units only"
        );
        match kind.as_str() {
            "counter" => assert!(family.ends_with("_total"), "{family}: counter suffix"),
            "histogram" => assert!(
                family.ends_with("_seconds"),
                "{family}: durations in seconds"
            ),
            _ => assert!(!family.ends_with("_total"), "{family}: `_total` on a gauge"),
        }
    }
    // Every sample belongs to a declared family; histograms only by their three series.
    let family_of = |name: &str| -> String {
        for suffix in ["_bucket", "_sum", "_count"] {
            if let Some(base) = name.strip_suffix(suffix)
                && types.get(base).map(String::as_str) == Some("histogram")
            {
                return base.to_string();
            }
        }
        name.to_string()
    };
    let allowed: BTreeSet<&str> = ["federation", "phase", "le"].into();
    for (name, labels, value) in &samples {
        let family = family_of(name);
        assert!(types.contains_key(&family), "{name}: no TYPE");
        assert!(value.is_finite() && *value >= 0.0, "{name}: {value}");
        for key in labels.keys() {
            assert!(allowed.contains(key.as_str()), "{name}: label `{key}`");
        }
        if name.ends_with("_bucket") {
            assert!(labels.contains_key("le"), "{name}: bucket without le");
        } else {
            assert!(!labels.contains_key("le"), "{name}: le outside a bucket");
        }
    }
    // Histograms: cumulative, non-decreasing, `+Inf` equal to `_count`.
    let mut series: Buckets = BTreeMap::new();
    for (name, labels, value) in &samples {
        if let Some(base) = name.strip_suffix("_bucket") {
            let mut key = labels.clone();
            let le = key.remove("le").unwrap();
            let le: f64 = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().unwrap()
            };
            series
                .entry((base.to_string(), key))
                .or_default()
                .push((le, *value));
        }
    }
    assert!(!series.is_empty(), "no histogram observed");
    let value = |name: &str, labels: &BTreeMap<String, String>| {
        samples
            .iter()
            .find(|(n, l, _)| n == name && l == labels)
            .map(|s| s.2)
            .unwrap_or_else(|| panic!("{name}{labels:?} missing"))
    };
    for ((base, labels), buckets) in &series {
        assert!(
            buckets
                .windows(2)
                .all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1),
            "{base}{labels:?}: buckets not cumulative: {buckets:?}"
        );
        let (le, inf) = *buckets.last().unwrap();
        assert!(le.is_infinite(), "{base}{labels:?}: no +Inf bucket");
        assert_eq!(inf, value(&format!("{base}_count"), labels));
        value(&format!("{base}_sum"), labels);
    }

    // And the numbers say what happened: two masked rounds of the federation, all phases.
    let load: BTreeMap<String, String> = [("federation".to_string(), "load".to_string())].into();
    assert_eq!(value("gridfed_rounds_completed_total", &load), 2.0);
    assert_eq!(value("gridfed_round_duration_seconds_count", &load), 2.0);
    assert_eq!(
        value("gridfed_participants_selected_total", &load),
        2.0 * n as f64
    );
    assert_eq!(
        value("gridfed_participants_enrolled", &BTreeMap::new()),
        n as f64
    );
    for phase in [
        "advertise_keys",
        "share_keys",
        "masked_input",
        "unmask",
        "commit",
    ] {
        let mut labels = load.clone();
        labels.insert("phase".into(), phase.into());
        assert_eq!(
            value("gridfed_round_phase_duration_seconds_count", &labels),
            2.0,
            "{phase}"
        );
    }
    let duration = value("gridfed_round_duration_seconds_sum", &load);
    assert!(duration > 0.0 && duration < 60.0, "{duration} s");

    // The example dashboard queries only series this endpoint exposes.
    let dashboard = include_str!("../../docs/grafana-dashboard.json");
    let exposed: BTreeSet<&str> = samples.iter().map(|(n, _, _)| n.as_str()).collect();
    let mut queried = 0;
    for (start, _) in dashboard.match_indices("gridfed_") {
        let name: String = dashboard[start..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        assert!(
            exposed.contains(name.as_str()),
            "dashboard queries `{name}`"
        );
        queried += 1;
    }
    assert!(queried >= 10, "{queried} queries");
}
