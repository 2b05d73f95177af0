//! How routes and backends are doing, from the calls themselves: outcomes
//! over the last five minutes and since the start, and for a backend its
//! latencies and last error. Kept by name, so a reload that keeps a name
//! keeps its history; the number of names kept is bounded, the name not
//! seen for longest going first. A history holds the name its calls'
//! route cards share, so on the request path it is found by that pointer;
//! names are compared only for a name the history does not hold yet (a
//! reload's new cards), which then becomes the one it holds.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::call::cut;
use super::window::{bucket, slot, Latencies, Outcomes, Tick, Window, OUTCOMES};
use crate::constants::CONSOLE_TEXT_BYTES;
use crate::outcome::NoneReason;

/// Routes (and backends) with a history at most.
const MAX_NAMES: usize = 64;

/// Calls in one time bucket: by outcome, and their latencies.
#[derive(Debug, Clone, Default)]
pub struct Slot {
    /// Calls by outcome.
    pub outcomes: Outcomes<u32>,
    /// Their latencies.
    pub latencies: Latencies,
}

impl Slot {
    /// Counts a call of outcome slot `outcome` whose latency fell in
    /// histogram bucket `latency`. (A bucket spans seconds: no count in it
    /// comes near 2³², nor one since the start near 2⁶⁴, so counts are
    /// added without a bound.)
    fn add(&mut self, outcome: usize, latency: usize) {
        if let Some(n) = self.outcomes.get_mut(outcome) {
            *n = n.wrapping_add(1);
        }
        self.latencies.add_to(latency);
    }
}

/// One route's or backend's history.
#[derive(Debug)]
pub struct History {
    /// Its name in the config: the one the route cards of the config
    /// last seen share.
    pub name: Arc<str>,
    /// The last five minutes.
    pub window: Window<Slot>,
    /// Calls by outcome since the start.
    pub since_start: Outcomes<u64>,
    /// When it last failed, with the reason and detail (backends).
    pub last_error: Option<(Instant, NoneReason, Box<str>)>,
    /// The tick it was last seen at, to choose which name to forget.
    seen: u64,
}

impl History {
    fn new(name: &Arc<str>) -> Self {
        Self {
            name: Arc::clone(name),
            window: Window::default(),
            since_start: [0; OUTCOMES],
            last_error: None,
            seen: 0,
        }
    }

    fn add(&mut self, tick: Tick, outcome: usize, latency: usize) {
        self.seen = tick.n;
        self.window.at(tick).add(outcome, latency);
        if let Some(n) = self.since_start.get_mut(outcome) {
            *n = n.wrapping_add(1);
        }
    }

    /// The last five minutes' outcomes and latencies, merged.
    pub fn recent(&self, now: u64) -> Slot {
        let mut sum = Slot::default();
        for (_, s) in self.window.recent(now) {
            for (a, b) in sum.outcomes.iter_mut().zip(&s.outcomes) {
                *a = a.saturating_add(*b);
            }
            sum.latencies.merge(&s.latencies);
        }
        sum
    }
}

/// Every route's and backend's history, and all calls'.
#[derive(Debug)]
pub struct Stats {
    /// Per route, by name.
    pub routes: Vec<History>,
    /// Per backend, by name.
    pub backends: Vec<History>,
    /// All calls: the charts.
    pub all: Window<Slot>,
    /// All calls by outcome since the start.
    pub since_start: Outcomes<u64>,
    /// The name of a backend none of its route's ("?").
    unknown: Arc<str>,
}

impl Default for Stats {
    fn default() -> Self {
        Self {
            routes: Vec::new(),
            backends: Vec::new(),
            all: Window::default(),
            since_start: [0; OUTCOMES],
            unknown: Arc::from("?"),
        }
    }
}

impl Stats {
    /// Counts a call that `route` (if any) answered.
    #[inline]
    pub fn call(
        &mut self,
        tick: Tick,
        route: Option<&Arc<str>>,
        none: Option<NoneReason>,
        took: Duration,
    ) {
        let (outcome, latency) = (slot(none), bucket(took));
        self.all.at(tick).add(outcome, latency);
        if let Some(n) = self.since_start.get_mut(outcome) {
            *n = n.wrapping_add(1);
        }
        if let Some(name) = route {
            history(&mut self.routes, name).add(tick, outcome, latency);
        }
    }

    /// Counts one backend attempt (`None`: a backend none of its route's);
    /// a failure becomes its last error, at the time `at` gives.
    #[inline]
    pub fn attempt(
        &mut self,
        tick: Tick,
        backend: Option<&Arc<str>>,
        failed: Option<(NoneReason, &str)>,
        took: Duration,
        at: impl FnOnce() -> Instant,
    ) {
        let name = backend.unwrap_or(&self.unknown);
        let history = history(&mut self.backends, name);
        let outcome = slot(failed.map(|(reason, _)| reason));
        history.add(tick, outcome, bucket(took));
        if let Some((reason, detail)) = failed {
            history.last_error = Some((at(), reason, cut(detail, CONSOLE_TEXT_BYTES).into()));
        }
    }
}

/// The history of `name`: the one holding this very name (one comparison
/// per history, on each call), else [`history_named`].
#[inline]
fn history<'h>(list: &'h mut Vec<History>, name: &Arc<str>) -> &'h mut History {
    match list.iter().position(|h| Arc::ptr_eq(&h.name, name)) {
        Some(i) => &mut list[i],
        None => history_named(list, name),
    }
}

/// The history of the same name, which holds this one from then on (the
/// first call of a reloaded config), else a new one, the longest unseen
/// forgotten when there are too many.
#[cold]
#[inline(never)]
fn history_named<'h>(list: &'h mut Vec<History>, name: &Arc<str>) -> &'h mut History {
    let i = match list.iter().position(|h| h.name == *name) {
        Some(i) => {
            list[i].name = Arc::clone(name);
            i
        }
        None => {
            if list.len() >= MAX_NAMES {
                if let Some(oldest) = (0..list.len()).min_by_key(|&i| list[i].seen) {
                    list.swap_remove(oldest);
                }
            }
            list.push(History::new(name));
            list.len() - 1
        }
    };
    &mut list[i]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_and_backends_count_by_name_and_keep_the_last_error() {
        let mut stats = Stats::default();
        let ms = Duration::from_millis;
        let lookup: Arc<str> = Arc::from("lookup");
        let (one, two) = (Tick::of(1), Tick::of(2));
        stats.call(one, Some(&lookup), None, ms(3));
        // A reload's card: another pointer, the same name, the same history.
        let reloaded: Arc<str> = Arc::from("lookup");
        stats.call(two, Some(&reloaded), Some(NoneReason::Connect), ms(5));
        stats.call(two, None, Some(NoneReason::NoRoute), ms(1));
        let now = Instant::now();
        let crm: Arc<str> = Arc::from("crm");
        let failed = Some((NoneReason::Connect, "refused"));
        stats.attempt(two, Some(&crm), failed, ms(4), || now);
        stats.attempt(two, Some(&crm), None, ms(2), || now);
        stats.attempt(two, None, None, ms(2), || now);
        assert_eq!(stats.routes.len(), 1);
        let lookup = &stats.routes[0];
        assert!(Arc::ptr_eq(&lookup.name, &reloaded));
        assert_eq!(lookup.since_start[0], 1);
        assert_eq!(lookup.since_start[slot(Some(NoneReason::Connect))], 1);
        assert_eq!(lookup.recent(2).latencies.count(), 2);
        // Five minutes later the window is empty; since-start stays.
        assert_eq!(lookup.recent(100).latencies.count(), 0);
        assert_eq!(stats.since_start.iter().sum::<u64>(), 3);
        let crm = &stats.backends[0];
        assert_eq!(crm.since_start[0], 1);
        assert_eq!(
            crm.last_error.as_ref().map(|(_, r, d)| (*r, &**d)),
            Some((NoneReason::Connect, "refused"))
        );
        assert_eq!(&*stats.backends[1].name, "?");
    }

    #[test]
    fn the_number_of_names_kept_is_bounded() {
        let mut stats = Stats::default();
        for i in 0..(MAX_NAMES as u64 + 10) {
            let name: Arc<str> = Arc::from(format!("route-{i}"));
            stats.call(Tick::of(i), Some(&name), None, Duration::ZERO);
        }
        assert_eq!(stats.routes.len(), MAX_NAMES);
        assert!(stats.routes.iter().all(|h| &*h.name != "route-0"));
    }
}
