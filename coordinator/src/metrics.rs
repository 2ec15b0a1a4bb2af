//! Prometheus text-format metrics and a minimal HTTP/1.1 endpoint serving them (`GET /metrics`),
//! without an HTTP framework.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Counters of one coordinator process.
#[derive(Debug, Default)]
pub struct Metrics {
    rounds_started: AtomicU64,
    rounds_completed: AtomicU64,
    rounds_failed: AtomicU64,
    rounds_aborted: AtomicU64,
    evaluations_completed: AtomicU64,
    participants_selected: AtomicU64,
    participants_enrolled: AtomicU64,
    updates_received: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    auth_failures: AtomicU64,
    rejected_requests: AtomicU64,
    round_ms_sum: AtomicU64,
    /// Phase name -> (sum of ms, count).
    phases: Mutex<BTreeMap<&'static str, (u64, u64)>>,
}

impl Metrics {
    pub fn round_started(&self, selected: usize) {
        self.rounds_started.fetch_add(1, Relaxed);
        self.participants_selected
            .fetch_add(selected as u64, Relaxed);
    }
    pub fn round_completed(&self, duration_ms: u64) {
        self.rounds_completed.fetch_add(1, Relaxed);
        self.round_ms_sum.fetch_add(duration_ms, Relaxed);
    }
    /// An evaluation round recorded the fleet's scores of a version.
    pub fn evaluation_completed(&self) {
        self.evaluations_completed.fetch_add(1, Relaxed);
    }
    pub fn round_failed(&self) {
        self.rounds_failed.fetch_add(1, Relaxed);
    }
    pub fn round_aborted(&self) {
        self.rounds_aborted.fetch_add(1, Relaxed);
    }
    pub fn set_participants(&self, n: usize) {
        self.participants_enrolled.store(n as u64, Relaxed);
    }
    pub fn update_received(&self) {
        self.updates_received.fetch_add(1, Relaxed);
    }
    pub fn bytes_in(&self, n: usize) {
        self.bytes_in.fetch_add(n as u64, Relaxed);
    }
    pub fn bytes_out(&self, n: usize) {
        self.bytes_out.fetch_add(n as u64, Relaxed);
    }
    pub fn auth_failure(&self) {
        self.auth_failures.fetch_add(1, Relaxed);
    }
    pub fn rejected(&self) {
        self.rejected_requests.fetch_add(1, Relaxed);
    }
    pub fn observe_phase(&self, phase: &'static str, ms: u64) {
        if let Ok(mut phases) = self.phases.lock() {
            let e = phases.entry(phase).or_default();
            e.0 += ms;
            e.1 += 1;
        }
    }

    pub fn evaluations_completed(&self) -> u64 {
        self.evaluations_completed.load(Relaxed)
    }
    pub fn rounds_completed(&self) -> u64 {
        self.rounds_completed.load(Relaxed)
    }
    pub fn auth_failures(&self) -> u64 {
        self.auth_failures.load(Relaxed)
    }
    pub fn total_bytes_in(&self) -> u64 {
        self.bytes_in.load(Relaxed)
    }
    pub fn total_bytes_out(&self) -> u64 {
        self.bytes_out.load(Relaxed)
    }
    /// Sum of the durations of completed rounds, ms (from selection to the committed version).
    pub fn round_duration_ms_sum(&self) -> u64 {
        self.round_ms_sum.load(Relaxed)
    }
    /// Phase name -> (sum of ms, count), for the phases observed so far.
    pub fn phase_durations(&self) -> BTreeMap<&'static str, (u64, u64)> {
        self.phases.lock().map(|p| p.clone()).unwrap_or_default()
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let counters: [(&str, &str, &AtomicU64); 12] = [
            (
                "gridfed_rounds_started_total",
                "Rounds started",
                &self.rounds_started,
            ),
            (
                "gridfed_rounds_completed_total",
                "Rounds that committed a model version",
                &self.rounds_completed,
            ),
            (
                "gridfed_rounds_failed_total",
                "Rounds that ended without a version",
                &self.rounds_failed,
            ),
            (
                "gridfed_rounds_aborted_total",
                "In-flight rounds aborted by a restart",
                &self.rounds_aborted,
            ),
            (
                "gridfed_evaluations_completed_total",
                "Evaluation rounds that recorded a version's fleet scores",
                &self.evaluations_completed,
            ),
            (
                "gridfed_participants_selected_total",
                "Participant selections",
                &self.participants_selected,
            ),
            (
                "gridfed_updates_received_total",
                "Updates accepted",
                &self.updates_received,
            ),
            (
                "gridfed_bytes_in_total",
                "Payload bytes received",
                &self.bytes_in,
            ),
            (
                "gridfed_bytes_out_total",
                "Payload bytes sent",
                &self.bytes_out,
            ),
            (
                "gridfed_auth_failures_total",
                "Refused authentications",
                &self.auth_failures,
            ),
            (
                "gridfed_rejected_requests_total",
                "Requests refused with an error status",
                &self.rejected_requests,
            ),
            (
                "gridfed_round_duration_ms_sum",
                "Sum of completed round durations",
                &self.round_ms_sum,
            ),
        ];
        for (name, help, value) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                value.load(Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP gridfed_participants_enrolled Enrolled participants\n# TYPE gridfed_participants_enrolled gauge\ngridfed_participants_enrolled {}",
            self.participants_enrolled.load(Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP gridfed_phase_duration_ms Round phase durations\n# TYPE gridfed_phase_duration_ms summary"
        );
        if let Ok(phases) = self.phases.lock() {
            for (phase, (sum, count)) in phases.iter() {
                let _ = writeln!(
                    out,
                    "gridfed_phase_duration_ms_sum{{phase=\"{phase}\"}} {sum}"
                );
                let _ = writeln!(
                    out,
                    "gridfed_phase_duration_ms_count{{phase=\"{phase}\"}} {count}"
                );
            }
        }
        out
    }
}

/// Serves `GET /metrics` on `listener` until `shutdown` resolves.
pub async fn serve_metrics(
    listener: TcpListener,
    metrics: std::sync::Arc<Metrics>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    tokio::pin!(shutdown);
    loop {
        let (mut socket, _) = tokio::select! {
            accepted = listener.accept() => accepted?,
            () = &mut shutdown => return Ok(()),
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let mut head = vec![0u8; 4096];
            let mut len = 0;
            // Read the request head (bounded); we only need its first line.
            while len < head.len() {
                match tokio::time::timeout(
                    std::time::Duration::from_secs(5),
                    socket.read(&mut head[len..]),
                )
                .await
                {
                    Ok(Ok(0)) | Err(_) | Ok(Err(_)) => break,
                    Ok(Ok(n)) => len += n,
                }
                if head[..len].windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
            let first = head[..len]
                .split(|b| *b == b'\n')
                .next()
                .unwrap_or_default();
            let (status, body) = if first.starts_with(b"GET /metrics ") {
                ("200 OK", metrics.render())
            } else {
                ("404 Not Found", "not found\n".to_string())
            };
            let response = format!(
                "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = socket.write_all(response.as_bytes()).await;
            let _ = socket.shutdown().await;
        });
    }
}
