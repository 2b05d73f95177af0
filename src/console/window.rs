//! Counts over the last minutes, in fixed time buckets: a bucket is reused
//! when its time comes round again, so recording is an index and an add,
//! and memory does not grow with the call rate. Latencies are kept as a
//! histogram whose buckets grow by a factor of √2, so a percentile read from
//! it is within ±19% of the true value.

use std::time::Duration;

use crate::outcome::NoneReason;

/// One bucket's span.
pub const STEP: Duration = Duration::from_secs(5);

/// Buckets in a window: 5 minutes of them.
pub const STEPS: usize = 60;

/// `open`, then each `none` reason, as the metrics count them.
pub const OUTCOMES: usize = 1 + NoneReason::ALL.len();

/// Calls by outcome: `[0]` opened, `[1 + reason.index()]` got `none`.
pub type Outcomes<T> = [T; OUTCOMES];

/// The slot of an outcome in [`Outcomes`].
pub fn slot(none: Option<NoneReason>) -> usize {
    none.map_or(0, |r| (1 + r.index()).min(OUTCOMES - 1))
}

/// A time bucket: its tick (time since the console started, in steps)
/// and its place in a window, found once for the windows a call is
/// counted in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tick {
    /// The tick.
    pub n: u64,
    place: usize,
}

impl Tick {
    /// Tick `n`.
    pub fn of(n: u64) -> Self {
        Self {
            n,
            place: (n % STEPS as u64) as usize,
        }
    }
}

/// The last [`STEPS`] buckets of `T`, each [`STEP`] long; a bucket is
/// known by its tick.
#[derive(Debug)]
pub struct Window<T> {
    slots: Box<[(u64, T)]>,
}

impl<T: Default + Clone> Default for Window<T> {
    fn default() -> Self {
        Self {
            slots: vec![(u64::MAX, T::default()); STEPS].into_boxed_slice(),
        }
    }
}

impl<T: Default> Window<T> {
    /// The bucket of `tick`, emptied first if it last held an older tick.
    pub fn at(&mut self, tick: Tick) -> &mut T {
        let slot = &mut self.slots[tick.place];
        if slot.0 != tick.n {
            *slot = (tick.n, T::default());
        }
        &mut slot.1
    }

    /// The buckets of the window that ends at `now`, oldest first; a tick
    /// without calls has no bucket.
    pub fn recent(&self, now: u64) -> impl Iterator<Item = (u64, &T)> {
        let first = now.saturating_sub(STEPS as u64 - 1);
        let mut live: Vec<(u64, &T)> = self
            .slots
            .iter()
            .filter(|(tick, _)| *tick != u64::MAX && (first..=now).contains(tick))
            .map(|(tick, value)| (*tick, value))
            .collect();
        live.sort_unstable_by_key(|(tick, _)| *tick);
        live.into_iter()
    }
}

/// Histogram buckets: bucket `i` holds latencies up to `100 µs × √2^i`;
/// the last one everything longer (over 6.5 s).
const LATENCY_BUCKETS: usize = 34;

/// Latencies as a histogram of √2 steps from 100 µs.
#[derive(Debug, Clone)]
pub struct Latencies {
    counts: [u32; LATENCY_BUCKETS],
}

impl Default for Latencies {
    fn default() -> Self {
        Self {
            counts: [0; LATENCY_BUCKETS],
        }
    }
}

impl Latencies {
    /// Counts one latency.
    pub fn add(&mut self, took: Duration) {
        self.add_to(bucket(took));
    }

    /// Counts one latency of bucket `i` ([`bucket`]: found once for the
    /// windows a call is counted in). A window's bucket spans seconds, so
    /// no count comes near 2³².
    pub fn add_to(&mut self, i: usize) {
        if let Some(n) = self.counts.get_mut(i) {
            *n = n.wrapping_add(1);
        }
    }

    /// Adds another histogram's counts.
    pub fn merge(&mut self, other: &Latencies) {
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *mine = mine.saturating_add(*theirs);
        }
    }

    /// How many latencies it holds.
    pub fn count(&self) -> u64 {
        self.counts.iter().map(|&c| u64::from(c)).sum()
    }

    /// The latency under which a fraction `q` of them lie (the upper bound
    /// of the bucket it falls in); `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let rank = ((total as f64) * q.clamp(0.0, 1.0)).ceil().max(1.0) as u64;
        let mut seen = 0u64;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += u64::from(c);
            if seen >= rank {
                return Some(upper(i));
            }
        }
        Some(upper(LATENCY_BUCKETS - 1))
    }
}

/// The most microseconds bucket `i` holds: the largest `m` with
/// `m² <= 100² × 2^i`, so that a bucket is found with one comparison.
const MOST: [u64; LATENCY_BUCKETS] = {
    let mut most = [0; LATENCY_BUCKETS];
    let mut i = 0;
    while i < LATENCY_BUCKETS {
        let square = 10_000u64 << i;
        // The integer square root, by bisection.
        let (mut low, mut high) = (0u64, 1u64 << 32);
        while high - low > 1 {
            let mid = (low + high) / 2;
            if mid * mid <= square {
                low = mid;
            } else {
                high = mid;
            }
        }
        most[i] = low;
        i += 1;
    }
    most
};

/// The bucket of a latency: the smallest `i` with `took <= upper(i)`, in
/// integers (no floating point on the request path). The bucket pair of
/// its octave over 100 µs, then which of the two.
pub fn bucket(took: Duration) -> usize {
    const LAST: usize = LATENCY_BUCKETS - 1;
    // Over 2^32 µs (71 minutes) is the last bucket anyway.
    let secs = took.as_secs();
    if secs >= u64::from(u32::MAX) / 1_000_000 {
        return LAST;
    }
    let micros = secs * 1_000_000 + u64::from(took.subsec_micros());
    // The smallest `j` with `micros <= 100 × 2^j`: bucket `2j`, or `2j - 1`
    // when `micros` is within that one's bound.
    let j = (u64::BITS - (micros.saturating_sub(1) / 100).leading_zeros()) as usize;
    let even = 2 * j;
    if even > LAST {
        return LAST;
    }
    match even.checked_sub(1).and_then(|odd| MOST.get(odd)) {
        Some(&most) if micros <= most => even - 1,
        _ => even,
    }
}

/// The upper bound of bucket `i`.
fn upper(i: usize) -> Duration {
    Duration::from_secs_f64(100e-6 * 2f64.powf(i as f64 / 2.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_is_emptied_when_its_time_comes_round_again() {
        let mut window: Window<u32> = Window::default();
        *window.at(Tick::of(3)) += 2;
        *window.at(Tick::of(4)) += 1;
        assert_eq!(
            window.recent(4).map(|(t, v)| (t, *v)).collect::<Vec<_>>(),
            [(3, 2), (4, 1)]
        );
        // One whole window later, tick 3's bucket is tick 63's.
        *window.at(Tick::of(63)) += 5;
        assert_eq!(
            window.recent(63).map(|(t, v)| (t, *v)).collect::<Vec<_>>(),
            [(4, 1), (63, 5)]
        );
        assert_eq!(window.recent(200).count(), 0);
    }

    #[test]
    fn quantiles_are_within_a_bucket_of_the_truth() {
        let mut h = Latencies::default();
        assert_eq!(h.quantile(0.5), None);
        for ms in 1..=100u64 {
            h.add(Duration::from_millis(ms));
        }
        let p50 = h.quantile(0.5).unwrap().as_secs_f64() * 1000.0;
        let p99 = h.quantile(0.99).unwrap().as_secs_f64() * 1000.0;
        assert!((50.0..=50.0 * 1.42).contains(&p50), "{p50}");
        assert!((99.0..=99.0 * 1.42).contains(&p99), "{p99}");
        h.add(Duration::from_secs(3600));
        assert_eq!(h.quantile(1.0), Some(upper(LATENCY_BUCKETS - 1)));
        assert_eq!(bucket(Duration::ZERO), 0);
        assert_eq!(bucket(Duration::from_micros(200)), 2);
        assert_eq!(bucket(Duration::MAX), LATENCY_BUCKETS - 1);
        assert_eq!(bucket(Duration::from_secs(4294)), LATENCY_BUCKETS - 1);
        assert_eq!(bucket(Duration::from_secs(30)), LATENCY_BUCKETS - 1);
        assert_eq!(bucket(Duration::from_millis(6)), 12);
        assert_eq!(bucket(Duration::from_micros(6401)), 13);
        // The same buckets as `micros² / 100² <= 2^i` gives.
        let by_squares = |micros: u64| {
            let ratio = (micros * micros).div_ceil(100 * 100);
            match ratio <= 1 {
                true => 0,
                false => (64 - (ratio - 1).leading_zeros() as usize).min(LATENCY_BUCKETS - 1),
            }
        };
        let mut micros = 0u64;
        while micros < u64::from(u32::MAX) {
            for m in [micros, micros + 1, micros.saturating_sub(1)] {
                assert_eq!(bucket(Duration::from_micros(m)), by_squares(m), "{m} µs");
            }
            micros = micros * 17 / 16 + 1;
        }
        for m in 0..=20_000 {
            assert_eq!(bucket(Duration::from_micros(m)), by_squares(m), "{m} µs");
        }
        for most in MOST {
            for m in [most, most + 1] {
                assert_eq!(bucket(Duration::from_micros(m)), by_squares(m), "{m} µs");
            }
        }
    }
}
