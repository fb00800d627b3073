//! The data plane's clocks: wall-clock milliseconds for the wire (snapshots, metric periods)
//! and a process-wide monotonic origin so timestamps can live in atomics.

use std::sync::OnceLock;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch.
pub fn epoch_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

/// Milliseconds of `at` since the process-wide origin (0 for instants before it); never 0
/// for an instant after the first call, so 0 can mean "unset" in an atomic.
pub fn monotonic_ms(at: Instant) -> u64 {
    at.saturating_duration_since(origin()).as_millis() as u64 + 1
}
