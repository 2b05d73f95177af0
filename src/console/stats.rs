//! How routes and backends are doing, from the calls themselves: outcomes
//! over the last five minutes and since the start, and for a backend its
//! latencies and last error. Kept by name, so a reload that keeps a name
//! keeps its history; the number of names kept is bounded, the name not
//! seen for longest going first.

use std::time::Duration;

use tokio::time::Instant;

use super::call::cut;
use super::window::{slot, Latencies, Outcomes, Window, OUTCOMES};
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
    fn add(&mut self, none: Option<NoneReason>, took: Duration) {
        let i = slot(none);
        self.outcomes[i] = self.outcomes[i].saturating_add(1);
        self.latencies.add(took);
    }
}

/// One route's or backend's history.
#[derive(Debug)]
pub struct History {
    /// Its name in the config.
    pub name: Box<str>,
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
    fn new(name: &str) -> Self {
        Self {
            name: cut(name, CONSOLE_TEXT_BYTES).into(),
            window: Window::default(),
            since_start: [0; OUTCOMES],
            last_error: None,
            seen: 0,
        }
    }

    fn add(&mut self, tick: u64, none: Option<NoneReason>, took: Duration) {
        self.seen = tick;
        self.window.at(tick).add(none, took);
        let i = slot(none);
        self.since_start[i] = self.since_start[i].saturating_add(1);
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
#[derive(Debug, Default)]
pub struct Stats {
    /// Per route, by name.
    pub routes: Vec<History>,
    /// Per backend, by name.
    pub backends: Vec<History>,
    /// All calls: the charts.
    pub all: Window<Slot>,
    /// All calls by outcome since the start.
    pub since_start: Outcomes<u64>,
}

impl Stats {
    /// Counts a call that `route` (if any) answered.
    pub fn call(
        &mut self,
        tick: u64,
        route: Option<&str>,
        none: Option<NoneReason>,
        took: Duration,
    ) {
        self.all.at(tick).add(none, took);
        let i = slot(none);
        self.since_start[i] = self.since_start[i].saturating_add(1);
        if let Some(name) = route {
            history(&mut self.routes, name).add(tick, none, took);
        }
    }

    /// Counts one backend attempt; a failure becomes its last error.
    pub fn attempt(
        &mut self,
        tick: u64,
        backend: &str,
        failed: Option<(NoneReason, &str)>,
        took: Duration,
        at: Instant,
    ) {
        let history = history(&mut self.backends, backend);
        history.add(tick, failed.map(|(reason, _)| reason), took);
        if let Some((reason, detail)) = failed {
            history.last_error = Some((at, reason, cut(detail, CONSOLE_TEXT_BYTES).into()));
        }
    }
}

/// The history of `name`, made (and the longest unseen forgotten, when
/// there are too many) if new.
fn history<'h>(list: &'h mut Vec<History>, name: &str) -> &'h mut History {
    let found = list.iter().position(|h| &*h.name == name);
    let i = match found {
        Some(i) => i,
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
        stats.call(1, Some("lookup"), None, ms(3));
        stats.call(2, Some("lookup"), Some(NoneReason::Connect), ms(5));
        stats.call(2, None, Some(NoneReason::NoRoute), ms(1));
        let now = Instant::now();
        stats.attempt(2, "crm", Some((NoneReason::Connect, "refused")), ms(4), now);
        stats.attempt(2, "crm", None, ms(2), now);
        let lookup = &stats.routes[0];
        assert_eq!(&*lookup.name, "lookup");
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
    }

    #[test]
    fn the_number_of_names_kept_is_bounded() {
        let mut stats = Stats::default();
        for i in 0..(MAX_NAMES as u64 + 10) {
            stats.call(i, Some(&format!("route-{i}")), None, Duration::ZERO);
        }
        assert_eq!(stats.routes.len(), MAX_NAMES);
        assert!(stats.routes.iter().all(|h| &*h.name != "route-0"));
    }
}
