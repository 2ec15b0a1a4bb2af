//! The coordinator's two clocks.
//!
//! Rounds are timed by [`round_ms`]: the wall clock read once, at the first call, plus the
//! monotonic time elapsed since. A wall clock that is stepped while the coordinator runs (NTP
//! correcting a machine that booted with a wrong clock, an operator setting the time, a VM
//! resumed from a snapshot) therefore neither expires every deadline at once (a step forward)
//! nor holds a round for the size of a step back; a restart picks up the corrected time.
//! What is stamped for people and other systems (board forecasts, alias history, damage
//! reports, the dashboard) reads the wall clock itself: [`wall_ms`].

use std::sync::OnceLock;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// A step injected into the wall clock this process sees (fault injection, see
/// [`inject_wall_clock_step`]); zero in every deployment.
static WALL_STEP_MS: AtomicI64 = AtomicI64::new(0);

/// Milliseconds since the Unix epoch on the wall clock.
pub fn wall_ms() -> u64 {
    let real = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    real.saturating_add_signed(WALL_STEP_MS.load(Ordering::Relaxed))
}

/// Milliseconds on the round clock: Unix time at the first call, then monotonic.
pub fn round_ms() -> u64 {
    static ANCHOR: OnceLock<(u64, Instant)> = OnceLock::new();
    let (wall, at) = ANCHOR.get_or_init(|| (wall_ms(), Instant::now()));
    wall.saturating_add(at.elapsed().as_millis() as u64)
}

/// Steps the wall clock this process sees by `delta_ms` (negative: back), as NTP or an
/// operator would: the clock-jump fault tests drive a running coordinator through it.
#[doc(hidden)]
pub fn inject_wall_clock_step(delta_ms: i64) {
    WALL_STEP_MS.fetch_add(delta_ms, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_round_clock_starts_at_wall_time_and_never_goes_back() {
        let first = round_ms();
        assert!(first.abs_diff(wall_ms()) < 60_000);
        let mut last = first;
        for _ in 0..1000 {
            let now = round_ms();
            assert!(now >= last);
            last = now;
        }
    }
}
