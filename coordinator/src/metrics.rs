//! Prometheus text-format metrics and a minimal HTTP/1.1 endpoint serving them (`GET /metrics`),
//! without an HTTP framework.
//!
//! Names follow the Prometheus conventions: base units (`_seconds`, `_bytes`), `_total` on
//! counters, durations as histograms (`_bucket{le=...}`, `_sum`, `_count`), and labels of
//! bounded cardinality only (`federation`: the configured and published federations; `phase`:
//! the protocol's fixed phase names). The list is in docs/federation.md ("Metrics").

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Upper bounds, in seconds, of the duration histograms' buckets: round phases take from
/// milliseconds (a commit) to minutes (local training behind an upload deadline).
pub const DURATION_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

/// A cumulative histogram over [`DURATION_BUCKETS`].
#[derive(Clone, Debug, Default)]
struct Histogram {
    /// Observations at most each bound (not cumulative here; summed when rendered).
    buckets: [u64; DURATION_BUCKETS.len()],
    sum_seconds: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        if let Some(i) = DURATION_BUCKETS.iter().position(|&le| seconds <= le) {
            self.buckets[i] += 1;
        }
        self.sum_seconds += seconds;
        self.count += 1;
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        for (le, n) in DURATION_BUCKETS.iter().zip(self.buckets) {
            cumulative += n;
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{le}\"}} {cumulative}");
        }
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {}", self.count);
        let _ = writeln!(out, "{name}_sum{{{labels}}} {}", self.sum_seconds);
        let _ = writeln!(out, "{name}_count{{{labels}}} {}", self.count);
    }
}

/// What one federation's rounds did.
#[derive(Clone, Debug, Default)]
struct FederationMetrics {
    rounds_started: u64,
    rounds_completed: u64,
    rounds_failed: u64,
    rounds_aborted: u64,
    evaluations_completed: u64,
    divergences: u64,
    participants_selected: u64,
    round_duration: Histogram,
    phases: BTreeMap<&'static str, Histogram>,
}

/// The metrics of one coordinator process.
#[derive(Debug, Default)]
pub struct Metrics {
    federations: Mutex<BTreeMap<String, FederationMetrics>>,
    participants_enrolled: AtomicU64,
    updates_received: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    auth_failures: AtomicU64,
    rejected_requests: AtomicU64,
    versions_damaged: AtomicU64,
    connections_refused: AtomicU64,
}

fn seconds(ms: u64) -> f64 {
    ms as f64 / 1e3
}

/// Label values are federation names (validated identifiers) and fixed phase names; escape
/// anyway, as the exposition format requires.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Metrics {
    fn federation(&self, name: &str, update: impl FnOnce(&mut FederationMetrics)) {
        if let Ok(mut federations) = self.federations.lock() {
            update(federations.entry(name.to_string()).or_default());
        }
    }

    pub fn round_started(&self, federation: &str, selected: usize) {
        self.federation(federation, |f| {
            f.rounds_started += 1;
            f.participants_selected += selected as u64;
        });
    }
    pub fn round_completed(&self, federation: &str, duration_ms: u64) {
        self.federation(federation, |f| {
            f.rounds_completed += 1;
            f.round_duration.observe(seconds(duration_ms));
        });
    }
    /// An evaluation round recorded the fleet's scores of a version.
    pub fn evaluation_completed(&self, federation: &str) {
        self.federation(federation, |f| f.evaluations_completed += 1);
    }
    /// A version scored worse than [`crate::registry::DIVERGENCE_FACTOR`] x the best earlier.
    pub fn divergence(&self, federation: &str) {
        self.federation(federation, |f| f.divergences += 1);
    }
    pub fn round_failed(&self, federation: &str) {
        self.federation(federation, |f| f.rounds_failed += 1);
    }
    pub fn round_aborted(&self, federation: &str) {
        self.federation(federation, |f| f.rounds_aborted += 1);
    }
    pub fn observe_phase(&self, federation: &str, phase: &'static str, ms: u64) {
        self.federation(federation, |f| {
            f.phases.entry(phase).or_default().observe(seconds(ms))
        });
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
    /// A registry version's weight artifact failed its digest check (first detection).
    pub fn version_damaged(&self) {
        self.versions_damaged.fetch_add(1, Relaxed);
    }
    /// A connection was closed at once: `limits.max_connections` were open.
    pub fn connection_refused(&self) {
        self.connections_refused.fetch_add(1, Relaxed);
    }
    pub fn connections_refused(&self) -> u64 {
        self.connections_refused.load(Relaxed)
    }
    pub fn participants_enrolled(&self) -> u64 {
        self.participants_enrolled.load(Relaxed)
    }
    pub fn versions_damaged(&self) -> u64 {
        self.versions_damaged.load(Relaxed)
    }
    pub fn rejected(&self) {
        self.rejected_requests.fetch_add(1, Relaxed);
    }

    fn sum_over_federations(&self, field: impl Fn(&FederationMetrics) -> u64) -> u64 {
        self.federations
            .lock()
            .map(|f| f.values().map(field).sum())
            .unwrap_or(0)
    }
    pub fn evaluations_completed(&self) -> u64 {
        self.sum_over_federations(|f| f.evaluations_completed)
    }
    pub fn rounds_completed(&self) -> u64 {
        self.sum_over_federations(|f| f.rounds_completed)
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
    /// Sum of the durations of completed rounds over every federation, ms (from selection to
    /// the committed version).
    pub fn round_duration_ms_sum(&self) -> u64 {
        self.federations
            .lock()
            .map(|f| {
                f.values()
                    .map(|f| (f.round_duration.sum_seconds * 1e3).round() as u64)
                    .sum()
            })
            .unwrap_or(0)
    }
    /// Phase name -> (sum of ms, count) over every federation, for the phases observed so far.
    pub fn phase_durations(&self) -> BTreeMap<&'static str, (u64, u64)> {
        let mut out: BTreeMap<&'static str, (u64, u64)> = BTreeMap::new();
        if let Ok(federations) = self.federations.lock() {
            for f in federations.values() {
                for (phase, h) in &f.phases {
                    let e = out.entry(phase).or_default();
                    e.0 += (h.sum_seconds * 1e3).round() as u64;
                    e.1 += h.count;
                }
            }
        }
        out
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let header = |out: &mut String, name: &str, kind: &str, help: &str| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        };
        let process: [(&str, &str, &AtomicU64); 7] = [
            (
                "gridfed_updates_received_total",
                "Updates accepted",
                &self.updates_received,
            ),
            (
                "gridfed_received_bytes_total",
                "Payload bytes received",
                &self.bytes_in,
            ),
            (
                "gridfed_sent_bytes_total",
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
                "gridfed_damaged_versions_detected_total",
                "Registry versions whose weight artifact failed its digest check",
                &self.versions_damaged,
            ),
            (
                "gridfed_connections_refused_total",
                "Connections closed on accept: limits.max_connections were open",
                &self.connections_refused,
            ),
        ];
        for (name, help, value) in process {
            header(&mut out, name, "counter", help);
            let _ = writeln!(out, "{name} {}", value.load(Relaxed));
        }
        header(
            &mut out,
            "gridfed_participants_enrolled",
            "gauge",
            "Enrolled participants",
        );
        let _ = writeln!(
            out,
            "gridfed_participants_enrolled {}",
            self.participants_enrolled.load(Relaxed)
        );

        let federations = match self.federations.lock() {
            Ok(f) => f.clone(),
            Err(_) => return out,
        };
        type Field = fn(&FederationMetrics) -> u64;
        let counters: [(&str, &str, Field); 7] = [
            ("gridfed_rounds_started_total", "Rounds started", |f| {
                f.rounds_started
            }),
            (
                "gridfed_rounds_completed_total",
                "Rounds that committed a model version",
                |f| f.rounds_completed,
            ),
            (
                "gridfed_rounds_failed_total",
                "Rounds that ended without a version",
                |f| f.rounds_failed,
            ),
            (
                "gridfed_rounds_aborted_total",
                "In-flight rounds aborted by a restart or takeover",
                |f| f.rounds_aborted,
            ),
            (
                "gridfed_evaluations_completed_total",
                "Evaluation rounds that recorded a version's fleet scores",
                |f| f.evaluations_completed,
            ),
            (
                "gridfed_diverging_versions_total",
                "Versions whose federated nMAE exceeds 1.5x the best earlier version's",
                |f| f.divergences,
            ),
            (
                "gridfed_participants_selected_total",
                "Participant selections",
                |f| f.participants_selected,
            ),
        ];
        for (name, help, field) in counters {
            header(&mut out, name, "counter", help);
            for (federation, f) in &federations {
                let _ = writeln!(
                    out,
                    "{name}{{federation=\"{}\"}} {}",
                    escape(federation),
                    field(f)
                );
            }
        }
        let name = "gridfed_round_duration_seconds";
        header(
            &mut out,
            name,
            "histogram",
            "Completed rounds, from selection to the committed version",
        );
        for (federation, f) in &federations {
            let labels = format!("federation=\"{}\"", escape(federation));
            f.round_duration.render(&mut out, name, &labels);
        }
        let name = "gridfed_round_phase_duration_seconds";
        header(&mut out, name, "histogram", "Round phases");
        for (federation, f) in &federations {
            for (phase, h) in &f.phases {
                let labels = format!(
                    "federation=\"{}\",phase=\"{}\"",
                    escape(federation),
                    escape(phase)
                );
                h.render(&mut out, name, &labels);
            }
        }
        out
    }
}
