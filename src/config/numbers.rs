//! Every number in the config checked against the range the gateway can
//! honour, so a value TOML accepts but the runtime cannot (a semaphore
//! larger than tokio allows, a deadline that overflows a clock) is a located
//! `check` error naming the allowed range, never a panic at load or per call.

use std::fmt::Display;
use std::ops::RangeInclusive;
use std::time::Duration;

use super::diag::Diagnostics;

/// Longest duration any `*_ms` or `*_s` setting may hold (24 hours): longer
/// is a typo, and it keeps `Instant + duration` far from overflowing.
pub(super) const MAX_DURATION_MS: u64 = 24 * 3600 * 1000;
/// Largest request body (16 MiB): an XucMgt payload is under 2 KiB.
pub(super) const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;
/// Largest backend reply read (64 MiB), bounding memory per call.
pub(super) const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;
/// Most connections or concurrent backend calls (tokio's semaphore takes
/// far more, but no host serves more than this at once).
pub(super) const MAX_COUNT: usize = 1_000_000;
/// Most worker threads.
pub(super) const MAX_WORKERS: usize = 1024;
/// Most streams per HTTP/2 connection.
pub(super) const MAX_H2_STREAMS: u32 = 10_000;
/// Longest `Access-Control-Max-Age` (a day; browsers cap it lower anyway).
pub(super) const MAX_CORS_MAX_AGE: u32 = 24 * 3600;
/// Longest wrapper link validity (30 days).
pub(super) const MAX_WRAP_TTL_S: u64 = 30 * 24 * 3600;
/// Longest period of a periodic task, in seconds (a day): a directory's
/// incremental syncs, snapshots, `since` overlap.
pub(super) const MAX_PERIOD_S: u64 = 24 * 3600;
/// Longest time between a directory's full syncs (a week).
pub(super) const MAX_DIRECTORY_FULL_EVERY_S: u64 = 7 * 24 * 3600;
/// Longest a directory's index may answer after its last good sync (30
/// days: the CRM down for a long weekend and more).
pub(super) const MAX_DIRECTORY_AGE_S: u64 = 30 * 24 * 3600;
/// Most records per directory page (CRMs cap theirs lower: 100 to 2,000).
pub(super) const MAX_DIRECTORY_PAGE_SIZE: u32 = 10_000;
/// Most directory pages a second (a test CRM's pace; a real one wants a few).
pub(super) const MAX_DIRECTORY_PAGES_PER_SECOND: u32 = 1000;
/// Most pages one directory sync may be allowed.
pub(super) const MAX_DIRECTORY_PAGES: u32 = 1_000_000;

/// `value` if it lies in `range`, else an error at `key` naming the range
/// (and `default`, so validation goes on and finds the other errors).
pub(super) fn within<T: PartialOrd + Display + Copy>(
    value: Option<T>,
    range: RangeInclusive<T>,
    default: T,
    key: &str,
    diags: &mut Diagnostics<'_>,
) -> T {
    match value {
        Some(v) if range.contains(&v) => v,
        Some(v) => {
            diags.value_error(
                key,
                format!(
                    "{v} is out of range: allowed {} to {}",
                    range.start(),
                    range.end()
                ),
            );
            default
        }
        None => default,
    }
}

/// A `*_ms` setting: 1 ms to [`MAX_DURATION_MS`].
pub(super) fn millis(
    value: Option<u64>,
    default: Duration,
    key: &str,
    diags: &mut Diagnostics<'_>,
) -> Duration {
    let default_ms = u64::try_from(default.as_millis()).unwrap_or(MAX_DURATION_MS);
    Duration::from_millis(within(value, 1..=MAX_DURATION_MS, default_ms, key, diags))
}

/// A `*_s` setting from `min` seconds to `max`.
pub(super) fn seconds(
    value: Option<u64>,
    range: RangeInclusive<u64>,
    default: Duration,
    key: &str,
    diags: &mut Diagnostics<'_>,
) -> Duration {
    Duration::from_secs(within(value, range, default.as_secs(), key, diags))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn out_of_range_is_an_error_naming_the_range_and_keeps_the_default() {
        let src = "[backends.crm]\nmax_concurrency = 3000000000000000000\n";
        let mut d = Diagnostics::new(Path::new("c.toml"), src);
        let n = within(
            Some(3_000_000_000_000_000_000usize),
            1..=MAX_COUNT,
            7,
            "backends.crm.max_concurrency",
            &mut d,
        );
        assert_eq!(n, 7);
        assert_eq!(
            d.errors[0].to_string(),
            "c.toml:2:19: backends.crm.max_concurrency: 3000000000000000000 is out of range: allowed 1 to 1000000"
        );
        assert_eq!(
            millis(Some(0), Duration::from_secs(1), "k", &mut d),
            Duration::from_secs(1)
        );
        assert_eq!(
            millis(Some(5), Duration::from_secs(1), "k", &mut d),
            Duration::from_millis(5)
        );
        assert_eq!(d.errors.len(), 2);
    }
}
