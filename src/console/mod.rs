//! The ops console: each recent call's decision and how the routes and CRMs
//! are doing, served on the ops listener (a page, and the same data as JSON
//! under `/api/`), and optionally exported as OpenTelemetry traces.
//!
//! Recording is on the request path and made to cost little: the handler's
//! [`Recorder`] copies what it sees, the call goes into a ring of fixed
//! capacity whose entries are bounded in size ([`ring`], [`call`]), and the
//! health windows are arrays of counters ([`window`], [`stats`]). The trace
//! text, the masking of the caller and the JSON are written only when a page
//! asks ([`trace`], [`api`]). One lock guards the ring and the counters; it
//! is held for a push and a few adds.
//!
//! What it may touch: the backend types it observes through
//! `answer::Observer` (read only), `backend::shown` to write a request as
//! `simulate` does, `outcome`. It never imports `config`, which builds its
//! [`ConsoleSettings`]; `gateway::Live` holds the one [`Console`], which
//! lives across reloads as the metrics do.

pub mod api;
pub mod auth;
pub mod call;
pub mod mask;
pub mod otlp;
pub mod record;
pub mod refused;
pub mod ring;
pub mod serve;
pub mod stats;
pub mod trace;
pub mod window;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::{Notify, Semaphore};
use tokio::time::Instant;

use crate::backend::Failure;
use crate::constants::{CONSOLE_MAX_WAITERS, CONSOLE_TEXT_BYTES};
use crate::contract::Reply;
use crate::request_id::RequestId;
pub use call::Cancelled;
use call::{Call, Opened, Step, Text};
pub use record::Recorder;
use ring::Ring;
use stats::Stats;
use window::Tick;

/// `[ops]`'s console keys, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleSettings {
    /// Whether the page and its API are served (the ops listener is on
    /// and `console` is not `false`).
    pub page: bool,
    /// Recent calls kept.
    pub calls: usize,
    /// Whether callers are shown whole.
    pub show_caller: bool,
    /// Whether to gather the candidates a reply offered (a read of every
    /// stored number on each call of a backend with `records`).
    pub candidates: bool,
    /// Who may see the console, when it asks.
    pub auth: Option<auth::Credentials>,
    /// Where calls are exported as OpenTelemetry traces.
    pub otlp: Option<url::Url>,
}

/// What the console knows: the recent calls, the counters, and who waits
/// for the next call.
pub struct Console {
    settings: ConsoleSettings,
    /// The console's start, on both clocks: ticks and wall times are
    /// counted from it without reading the wall clock per call.
    started: (Instant, SystemTime),
    state: Mutex<State>,
    /// Requests refused before a route took them, apart from the calls.
    refused: Mutex<refused::Refused>,
    /// Pages waiting for the next call.
    waiting: AtomicUsize,
    next_call: Notify,
    waiters: Arc<Semaphore>,
    export: Option<otlp::Export>,
}

impl std::fmt::Debug for Console {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Console")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// The recent calls and the counters.
#[derive(Debug)]
pub struct State {
    /// The recent calls.
    pub ring: Ring,
    /// Routes' and backends' histories.
    pub stats: Stats,
    /// The time bucket calls are ending in.
    current: Current,
}

/// The time bucket last counted in and when it begins and ends: a call
/// ending within it is counted there after two comparisons, not a
/// subtraction and a division of clock readings.
#[derive(Debug)]
struct Current {
    tick: Tick,
    from: Instant,
    to: Instant,
}

impl Current {
    /// The bucket of `at`.
    fn tick(&mut self, at: Instant, console: &Console) -> Tick {
        if self.from <= at && at < self.to {
            return self.tick;
        }
        let n = console.tick(at);
        *self = Current {
            tick: Tick::of(n),
            from: console.tick_start(n),
            to: console.tick_start(n.saturating_add(1)),
        };
        self.tick
    }
}

/// How a recorded call ended, from the handler, which keeps (and frees)
/// what it lends.
#[derive(Debug)]
pub struct Ending<'a> {
    /// Whether it was dropped before its reply, and why (the reply is
    /// then `none`, never sent).
    pub cancelled: Option<Cancelled>,
    /// What the agent got.
    pub reply: &'a Reply,
    /// Whether an `open` reply is the completion wrapper's link.
    pub wrapped: bool,
    /// The backend that opened or last failed.
    pub backend: Option<&'a str>,
    /// Why not `open`, or what a fallback followed.
    pub failure: Option<&'a Failure>,
    /// When the reply was ready (the handler reads the clock for its log
    /// line's latency anyway): the call's latency from its arrival, and
    /// the time bucket it is counted in.
    pub ended: Instant,
}

impl Console {
    /// A console with an empty ring; starts the OTLP export when set.
    pub fn new(settings: ConsoleSettings) -> Arc<Self> {
        let export = settings
            .otlp
            .as_ref()
            .map(|url| otlp::Export::start(url, settings.show_caller));
        let started = Instant::now();
        Arc::new(Self {
            started: (started, SystemTime::now()),
            state: Mutex::new(State {
                ring: Ring::new(settings.calls),
                stats: Stats::default(),
                // None yet: the first call finds its own.
                current: Current {
                    tick: Tick::of(0),
                    from: started,
                    to: started,
                },
            }),
            refused: Mutex::default(),
            waiting: AtomicUsize::new(0),
            next_call: Notify::new(),
            waiters: Arc::new(Semaphore::new(CONSOLE_MAX_WAITERS)),
            export,
            settings,
        })
    }

    /// Its settings.
    pub fn settings(&self) -> &ConsoleSettings {
        &self.settings
    }

    /// A recorder for call `id` from `caller`, whose request arrived at
    /// `start`.
    pub fn recorder(&self, start: Instant, id: RequestId, caller: &str) -> Recorder {
        Recorder::new(
            start,
            id,
            caller,
            self.settings.candidates,
            self.settings.show_caller,
        )
    }

    /// Keeps a call: in the ring (pushing the oldest out), in the counters,
    /// and in the export queue; wakes the pages waiting for it.
    pub fn record(&self, recorder: Recorder, ending: Ending<'_>) {
        let Recorder { mut call, progress } = recorder;
        let Ending {
            cancelled,
            reply,
            wrapped,
            backend,
            failure,
            ended,
        } = ending;
        // Every field of what the call got is written: a reused call holds
        // the last one's. The backend is named by its place on the route's
        // card: the last attempt's, which is the one the answer names,
        // unless that step was left out.
        call.backend = backend.map(|name| match progress.last_attempt {
            Some(last) => last,
            None => call::place(call.card.as_deref().and_then(|card| card.index_named(name))),
        });
        let texts = &mut call.texts;
        call.detail = failure.map_or(Text::default(), |f| {
            texts.add(&f.detail, CONSOLE_TEXT_BYTES)
        });
        call.reason = failure.map(|f| f.reason);
        call.opened = match reply {
            Reply::Open(open) => Some(Opened {
                event: open.event(),
                url: (!wrapped).then(|| texts.add(open.url(), CONSOLE_TEXT_BYTES)),
                title: texts.add(open.title(), CONSOLE_TEXT_BYTES),
                autopause: open.autopause(),
            }),
            Reply::None => None,
        };
        texts.trim();
        call.cancelled = cancelled;
        call.latency = ended.saturating_duration_since(call.at);
        call.bytes = call.heap_bytes();
        let start = call.at;
        // A copy for the export thread (numbered below): the ring owns the
        // call.
        let mut exported = self.export.as_ref().map(|_| Box::new(Call::clone(&call)));
        let dropped = {
            let mut state = self.lock();
            let State {
                ring,
                stats,
                current,
            } = &mut *state;
            let tick = current.tick(ended, self);
            call.seq = ring.next_seq();
            if let Some(copy) = &mut exported {
                copy.seq = call.seq;
            }
            if call.cancelled.is_none() {
                let route = call.card.as_deref().map(|card| &card.name);
                stats.call(tick, route, call.none(), call.latency);
            }
            for step in &call.steps {
                if let Step::Attempt {
                    backend,
                    at,
                    took,
                    failed,
                } = step
                {
                    let failed = failed.map(|(r, d)| (r, call.text(d)));
                    let name = call.card_backend(*backend).map(|b| &b.name);
                    stats.attempt(tick, name, failed, *took, || *at);
                }
            }
            ring.push(call)
        };
        if let (Some(export), Some(call)) = (&self.export, exported) {
            export.send(call, self.wall(start));
        }
        if self.waiting.load(Ordering::SeqCst) > 0 {
            self.next_call.notify_waiters();
        }
        if let Some(dropped) = dropped {
            record::spare(dropped);
        }
    }

    /// Keeps a request refused before a route took it (a POST or a
    /// preflight; not on the calls' path: only refusals pay for it).
    pub fn refuse(&self, seen: refused::Seen<'_>) {
        if let Some(refusal) = seen.refusal(self.settings.show_caller) {
            self.refused
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(refusal);
        }
    }

    /// The refused requests kept (newest first) and how many there were.
    pub fn refused(&self) -> (Vec<refused::Refusal>, u64) {
        let refused = self.refused.lock().unwrap_or_else(|e| e.into_inner());
        (
            refused.newest_first().cloned().collect(),
            refused.since_start(),
        )
    }

    /// The ring and counters, locked.
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Copies of the calls after `seq`, newest first (at most `max`),
    /// waiting up to `wait` for one when there is none yet. Only so many
    /// pages wait at once; the others get their answer at once.
    pub async fn calls_after(&self, seq: u64, max: usize, wait: Duration) -> (u64, Vec<Call>) {
        let permit = match wait.is_zero() {
            true => None,
            false => Arc::clone(&self.waiters).try_acquire_owned().ok(),
        };
        if permit.is_none() {
            return self.snapshot(seq, max);
        }
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let _waiting = Waiting(&self.waiting);
        let until = Instant::now() + wait;
        loop {
            let notified = self.next_call.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let (last, calls) = self.snapshot(seq, max);
            if !calls.is_empty() || Instant::now() >= until {
                return (last, calls);
            }
            if tokio::time::timeout_at(until, notified).await.is_err() {
                return self.snapshot(seq, max);
            }
        }
    }

    fn snapshot(&self, seq: u64, max: usize) -> (u64, Vec<Call>) {
        let state = self.lock();
        (state.ring.last(), state.ring.after(seq, max))
    }

    /// A copy of the call numbered `seq`, while the ring holds it.
    pub fn call(&self, seq: u64) -> Option<Call> {
        self.lock().ring.get(seq)
    }

    /// The time bucket `at` falls in.
    pub fn tick(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.started.0).as_secs() / window::STEP.as_secs()
    }

    /// When tick `t` began.
    pub fn tick_start(&self, t: u64) -> Instant {
        let since = window::STEP.saturating_mul(u32::try_from(t).unwrap_or(u32::MAX));
        self.started.0.checked_add(since).unwrap_or(self.started.0)
    }

    /// The wall-clock time of `at`.
    pub fn wall(&self, at: Instant) -> SystemTime {
        let (instant, wall) = self.started;
        wall + at.saturating_duration_since(instant)
    }

    /// Milliseconds since the epoch of `at`, for pages.
    pub fn unix_ms(&self, at: Instant) -> u64 {
        unix_ms(self.wall(at))
    }

    /// When the console started.
    pub fn started(&self) -> Instant {
        self.started.0
    }

    /// Sends what the export queue holds, waiting for it at most
    /// `within` (at a stop).
    pub fn flush(&self, within: Duration) {
        if let Some(export) = &self.export {
            export.flush(within);
        }
    }

    /// Calls the export queue could not take (the collector was too slow).
    pub fn export_dropped(&self) -> Option<u64> {
        self.export.as_ref().map(otlp::Export::dropped)
    }
}

/// Milliseconds since the epoch.
pub fn unix_ms(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Counts a waiting page out when its wait ends, however it ends.
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}
