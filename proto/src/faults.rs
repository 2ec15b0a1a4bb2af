//! Crash points for fault-injection tests: `GRIDFED_CRASH_AT=<point>[@<n>]` makes the process
//! abort (like `kill -9`: no destructors, no flush) the `n`-th time (default the first) it
//! reaches `point`. Unset (every deployment), a crash point is one relaxed load.
//!
//! It lives here because the wire crate is the one both services share; the points are named
//! where state is about to move:
//! - coordinator: every round phase a federation enters (`enter:<phase>`), just before and just
//!   after a version is committed (`commit:before`, `commit:after`), an evaluation round's
//!   scores being recorded (`evaluation:record`), a registry manifest write
//!   (`registry:manifest`);
//! - participant: before each message of a round it would send (`participant:<phase>`, the
//!   phase as in [`crate::v1::SecAggPhase`] in snake case: `advertise_keys`, `share_keys`,
//!   `masked_input`, `unmask`, `he_commit`, `he_reveal`, `he_deal`, `he_input`, `he_decrypt`;
//!   `plain_input` before a plain update), and in the middle of an upload stream, as it is read
//!   past its header (`participant:upload`).

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// The environment variable naming the crash point.
pub const CRASH_AT_ENV: &str = "GRIDFED_CRASH_AT";

struct Armed {
    point: String,
    hit: u64,
    seen: AtomicU64,
}

fn armed() -> Option<&'static Armed> {
    static ARMED: OnceLock<Option<Armed>> = OnceLock::new();
    ARMED
        .get_or_init(|| {
            let spec = std::env::var(CRASH_AT_ENV).ok()?;
            let (point, hit) = match spec.split_once('@') {
                Some((point, n)) => (point.to_string(), n.parse().unwrap_or(1)),
                None => (spec, 1),
            };
            Some(Armed {
                point,
                hit,
                seen: AtomicU64::new(0),
            })
        })
        .as_ref()
}

/// Aborts the process if the armed crash point is `point` and this is its `n`-th hit.
pub fn crash_point(point: &str) {
    if let Some(armed) = armed()
        && armed.point == point
        && armed.seen.fetch_add(1, Ordering::Relaxed) + 1 == armed.hit
    {
        eprintln!("{CRASH_AT_ENV}: crashing at {point}");
        std::process::abort();
    }
}
