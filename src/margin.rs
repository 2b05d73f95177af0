//! The reply margin: how long before `server.deadline_ms` a call's work is
//! cut, so that its `none` is written before the deadline. A fixed 50 ms
//! suits a quiet machine, but calls cut at the same instant (a burst to a
//! hanging CRM) are woken and written one after another, and the last ones
//! left up to 124 ms late on a busy box. The margin follows what is measured:
//! each call cut by its budget reports how late it got past it, the margin
//! becomes twice the largest recent lateness (within a quarter of the
//! deadline), and it relaxes slowly as calls finish in time. Process-wide,
//! lock-free: one atomic.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::constants::REPLY_MARGIN;

/// Lateness, in microseconds, as it decays: the largest recently seen.
static LATE_US: AtomicU64 = AtomicU64::new(0);

/// The time a call's work may take within `deadline`.
pub fn work_budget(deadline: Duration) -> Duration {
    budget(deadline, LATE_US.load(Ordering::Relaxed))
}

fn budget(deadline: Duration, late_us: u64) -> Duration {
    let base = (deadline / 10).min(REPLY_MARGIN);
    let learned = Duration::from_micros(late_us.saturating_mul(2));
    deadline - base.max(learned).min(deadline / 4)
}

/// A call was cut by its budget and got its answer `late` past it.
pub fn cut(late: Duration) {
    let late = u64::try_from(late.as_micros()).unwrap_or(u64::MAX);
    let _ = LATE_US.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |old| {
        Some(old.max(late))
    });
}

/// A call finished within its budget: the learned lateness relaxes by a
/// thousandth, so a burst's margin fades over a few thousand calls.
pub fn in_time() {
    let old = LATE_US.load(Ordering::Relaxed);
    if old > 0 {
        let _ = LATE_US.compare_exchange(
            old,
            old - old / 1024 - 1,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_margin_is_fixed_when_quiet_and_follows_lateness_within_a_quarter() {
        let d = Duration::from_millis(1500);
        assert_eq!(budget(d, 0), Duration::from_millis(1450));
        // Calls cut 80 ms late: a margin of 160 ms from then on.
        assert_eq!(budget(d, 80_000), Duration::from_millis(1340));
        // Never more than a quarter of the deadline.
        assert_eq!(budget(d, 10_000_000), Duration::from_millis(1125));
        // A short deadline keeps its tenth.
        assert_eq!(
            budget(Duration::from_millis(100), 0),
            Duration::from_millis(90)
        );
    }

    #[test]
    fn lateness_is_the_largest_seen_and_relaxes_as_calls_finish_in_time() {
        // The static is process-wide: this test owns it alone (no other
        // unit test cuts calls).
        LATE_US.store(0, Ordering::Relaxed);
        cut(Duration::from_millis(30));
        cut(Duration::from_millis(10));
        assert_eq!(LATE_US.load(Ordering::Relaxed), 30_000);
        for _ in 0..10_000 {
            in_time();
        }
        assert!(LATE_US.load(Ordering::Relaxed) < 1_000);
        LATE_US.store(0, Ordering::Relaxed);
    }
}
