//! Hands memory that connections freed back to the OS.
//!
//! A parked HTTP/1.1 connection frees hyper's buffers (24 KiB or more), a
//! connection that ends frees all it held (an idle HTTP/2 one ≈24 KB), but
//! mimalloc keeps freed pages committed until a delay (10 ms) has passed
//! *and* the thread frees or allocates again; each page freed meanwhile
//! extends that delay. A gateway whose connections go quiet or leave
//! together (the agents' browsers between calls, a balancer's switch) then
//! stops touching the allocator, and what it freed stays in its RSS for
//! good: about 1 KB per idle HTTP/1.1 connection in `bench/run --memory`,
//! and 48 MB after 2,000 idle HTTP/2 connections closed
//! (docs/performance.md). So a connection that parks or ends asks mimalloc
//! to collect the thread's heap now, at most once per [`TRIM_EVERY`] per
//! thread: a loaded keep-alive connection never parks and never pays; a
//! burst of parks or ends pays one collection per window, not one each.
//!
//! The price is paid off the loaded path: a few thousand instructions a
//! collection, more with a larger heap (6k each with 300 connections), at
//! most 100 a second per thread, and the page faults of reusing purged
//! pages when the next request comes. A shorter purge delay for the whole
//! process does the same for idle memory, measured 4% slower under load
//! (docs/performance.md).

use std::cell::Cell;
use std::time::{Duration, Instant};

/// The shortest time between two collections on one thread.
pub const TRIM_EVERY: Duration = Duration::from_millis(10);

thread_local! {
    static LAST: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// Called when a connection parked or ended: collects the thread's heap
/// unless it did within [`TRIM_EVERY`].
pub fn released() {
    let now = Instant::now();
    let due = LAST.with(|last| {
        let due = is_due(last.get(), now);
        if due {
            last.set(Some(now));
        }
        due
    });
    if due {
        collect();
    }
}

/// Whether a collection is due at `now`, the last one made at `last`.
fn is_due(last: Option<Instant>, now: Instant) -> bool {
    last.is_none_or(|last| now.saturating_duration_since(last) >= TRIM_EVERY)
}

/// Frees the thread's empty pages and purges what mimalloc was keeping
/// committed (`force`: without it, a purge still waits for its delay).
#[allow(unsafe_code)]
fn collect() {
    // SAFETY: `mi_collect` takes no pointer and may be called on any thread
    // at any time; mimalloc is the global allocator (main.rs), and when it
    // is not (tests), it only collects mimalloc's own, empty, heap.
    unsafe { libmimalloc_sys::mi_collect(true) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_park_collects_then_one_per_window() {
        let start = Instant::now();
        assert!(is_due(None, start));
        assert!(!is_due(Some(start), start));
        assert!(!is_due(Some(start), start + TRIM_EVERY / 2));
        assert!(is_due(Some(start), start + TRIM_EVERY));
    }

    #[test]
    fn a_clock_that_went_back_waits_rather_than_collects() {
        let start = Instant::now();
        let later = start + TRIM_EVERY * 3;
        assert!(!is_due(Some(later), start));
    }

    #[test]
    fn collecting_on_a_thread_that_never_allocated_is_harmless() {
        std::thread::spawn(released).join().expect("released");
        released();
        released();
    }
}
