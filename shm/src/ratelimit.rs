//! [`LogLimit`]: at most one log line per interval, with a count of the
//! ones held back, shared by every process when it lives in shm
//! ([`log_oom`] keeps one in the segment header for shm exhaustion).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// A log rate limiter: plain atomics, so it works from a process-local
/// `static` or from shm (then server-wide).
#[derive(Debug, Default)]
pub struct LogLimit {
    /// Unix seconds of the last line let through (0: none yet).
    last: AtomicU64,
    /// Lines held back since then.
    held: AtomicU64,
}

// SAFETY: two atomics, no pointers, no Drop.
unsafe impl crate::ShmSafe for LogLimit {}

impl LogLimit {
    /// A limiter that has let nothing through yet.
    pub const fn new() -> Self {
        LogLimit {
            last: AtomicU64::new(0),
            held: AtomicU64::new(0),
        }
    }

    /// Whether a line may be logged now, at most once per `every_secs`
    /// seconds: `Some(n)` with `n` the lines held back since the previous
    /// one (mention them), `None` to stay quiet (counted).
    pub fn allow(&self, every_secs: u64) -> Option<u64> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
            .max(1);
        self.allow_at(now, every_secs)
    }

    fn allow_at(&self, now: u64, every_secs: u64) -> Option<u64> {
        let last = self.last.load(Ordering::Relaxed);
        if (last == 0 || now >= last.saturating_add(every_secs))
            && self
                .last
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            return Some(self.held.swap(0, Ordering::Relaxed));
        }
        self.held.fetch_add(1, Ordering::Relaxed);
        None
    }
}

/// How often [`log_oom`] lets a line through.
pub const OOM_LOG_EVERY_SECS: u64 = 5;

/// Process-local fallback before [`crate::init`] (tests, tools).
static LOCAL: LogLimit = LogLimit::new();

/// Logs that `what` (e.g. `"tm: new transaction"`) failed for lack of shared
/// memory — at most one line per [`OOM_LOG_EVERY_SECS`] server-wide, with
/// how many were held back, so a flood against a full segment does not
/// also flood the log. The caller still answers (500) or drops as usual.
pub fn log_oom(what: &str, err: &crate::ShmError) {
    let limit = crate::segment::global()
        .map(|h| h.oom_log())
        .unwrap_or(&LOCAL);
    if let Some(held) = limit.allow(OOM_LOG_EVERY_SECS) {
        let stats = crate::stats();
        if held > 0 {
            log::error!(
                "{what}: {err} (free {} of {} bytes, largest block {}); \
                 {held} more such failures in the last {OOM_LOG_EVERY_SECS}+ s not logged",
                stats.free,
                stats.total,
                stats.largest_free
            );
        } else {
            log::error!(
                "{what}: {err} (free {} of {} bytes, largest block {})",
                stats.free,
                stats.total,
                stats.largest_free
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_with_the_held_back_count() {
        let l = LogLimit::new();
        assert_eq!(l.allow_at(100, 5), Some(0));
        assert_eq!(l.allow_at(101, 5), None);
        assert_eq!(l.allow_at(104, 5), None);
        assert_eq!(l.allow_at(105, 5), Some(2));
        assert_eq!(l.allow_at(105, 5), None);
        assert_eq!(l.allow_at(200, 5), Some(1));
        assert!(l.allow(5).is_some());
    }
}
