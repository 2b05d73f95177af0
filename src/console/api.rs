//! The console's data as JSON, for its page and for scripts: the overview
//! (routes, backends with their health, login and directory, the charts'
//! series) and the recent calls with their traces. Every text that may
//! hold the caller is masked here unless the config lets the console show
//! it, and every detail is redacted once more against the config's secrets;
//! no session value, token or secret is ever read into it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Map, Value};
use tokio::time::Instant;

use super::call::{Call, Step};
use super::mask::{self, Masker};
use super::stats::{History, Slot};
use super::window::{slot, Outcomes, OUTCOMES, STEP, STEPS};
use super::{trace, Console};
use crate::backend::request::redacted;
use crate::backend::Backend;
use crate::outcome::NoneReason;
use crate::route::Router;

/// What the console shows besides its own records: the generation being
/// served.
#[derive(Debug)]
pub struct Served<'a> {
    /// Its routes.
    pub router: &'a Router,
    /// Its backends.
    pub backends: &'a BTreeMap<Box<str>, Arc<Backend>>,
    /// Its number.
    pub generation: u64,
}

impl Served<'_> {
    /// The secrets its templates and logins read, to hide in any text.
    pub fn secrets(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .router
            .templates()
            .secret_values()
            .filter(|s| s.len() >= 4)
            .map(str::to_owned)
            .collect();
        for backend in self.backends.values() {
            if let Some(login) = &backend.login {
                out.extend(
                    login
                        .templates()
                        .secret_values()
                        .filter(|s| s.len() >= 4)
                        .map(str::to_owned),
                );
            }
        }
        out
    }
}

/// One route's or backend's figures, copied out of the lock.
struct Figures {
    recent: Slot,
    since_start: Outcomes<u64>,
    last_error: Option<(Instant, NoneReason, Box<str>)>,
}

fn figures(histories: &[History], name: &str, tick: u64) -> Figures {
    match histories.iter().find(|h| &*h.name == name) {
        Some(h) => Figures {
            recent: h.recent(tick),
            since_start: h.since_start,
            last_error: h.last_error.clone(),
        },
        None => Figures {
            recent: Slot::default(),
            since_start: [0; OUTCOMES],
            last_error: None,
        },
    }
}

/// The overview: totals, the charts' series, routes and backends. The lock
/// is held only to copy the figures out.
pub fn overview(console: &Console, served: &Served<'_>) -> Value {
    let now = Instant::now();
    let tick = console.tick(now);
    let (series, since_start, ring, routes, backends) = {
        let state = console.lock();
        let stats = &state.stats;
        let series: BTreeMap<u64, Slot> = stats
            .all
            .recent(tick)
            .map(|(t, slot)| (t, slot.clone()))
            .collect();
        let ring = json!({
            "calls": state.ring.len(),
            "cap": state.ring.cap(),
            "bytes": state.ring.bytes(),
            "last": state.ring.last(),
        });
        let routes: Vec<Figures> = served
            .router
            .paths()
            .flat_map(|p| served.router.routes_on(p).unwrap_or(&[]))
            .map(|r| figures(&stats.routes, &r.name, tick))
            .collect();
        let backends: Vec<Figures> = served
            .backends
            .keys()
            .map(|name| figures(&stats.backends, name, tick))
            .collect();
        (series, stats.since_start, ring, routes, backends)
    };
    let secrets = served.secrets();
    let mut last_5m = Slot::default();
    // Sixty points whatever the uptime (none before the start); the last
    // bucket is still filling, so it says how long it has run.
    let current = console.tick_start(tick);
    let current_ms = console.unix_ms(current);
    let points: Vec<Value> = (0..STEPS as u64)
        .rev()
        .map(|back| {
            let at = current_ms.saturating_sub(back * STEP.as_secs() * 1000);
            let span = if back == 0 {
                now.saturating_duration_since(current).as_secs_f64().max(0.001)
            } else {
                STEP.as_secs_f64()
            };
            match tick.checked_sub(back) {
                None => json!({"t": at, "span_s": span, "calls": null, "open": null, "p50_ms": null, "p99_ms": null}),
                Some(t) => match series.get(&t) {
                    Some(slot) => {
                        add(&mut last_5m, slot);
                        json!({
                            "t": at,
                            "span_s": span,
                            "calls": slot.outcomes.iter().sum::<u32>(),
                            "open": slot.outcomes[0],
                            "p50_ms": ms(slot.latencies.quantile(0.5)),
                            "p99_ms": ms(slot.latencies.quantile(0.99)),
                        })
                    }
                    None => json!({"t": at, "span_s": span, "calls": 0, "open": 0, "p50_ms": null, "p99_ms": null}),
                },
            }
        })
        .collect();
    let routes: Vec<Value> = served
        .router
        .paths()
        .flat_map(|p| {
            served
                .router
                .routes_on(p)
                .unwrap_or(&[])
                .iter()
                .map(move |r| (p, r))
        })
        .zip(&routes)
        .map(|((path, route), f)| {
            json!({
                "name": &*route.name,
                "path": path,
                "when": route.when_source.as_deref(),
                "backends": route.backends.iter().map(|b| &*b.name).collect::<Vec<_>>(),
                "screen_pop": route.open.is_some(),
                "wrap": route.wrap,
                "last_5m": with_latency(&f.recent),
                "since_start": counts(&f.since_start),
            })
        })
        .collect();
    let backends: Vec<Value> = served
        .backends
        .values()
        .zip(&backends)
        .map(|(b, f)| backend(console, b, f, now, &secrets))
        .collect();
    let (refused, refused_since_start) = console.refused();
    let refused: Vec<Value> = refused
        .iter()
        .map(|r| {
            json!({
                "at_ms": console.unix_ms(r.at),
                "id": r.id.text().as_str(),
                "method": r.method,
                "path": &*r.path,
                "origin": &*r.origin,
                "status": r.status,
                "error": redacted(&r.error, &secrets),
            })
        })
        .collect();
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "generation": served.generation,
        "uptime_s": now.saturating_duration_since(console.started()).as_secs(),
        "now_ms": console.unix_ms(now),
        "show_caller": console.settings().show_caller,
        "ring": ring,
        "export": {
            "otlp": console.settings().otlp.is_some(),
            "dropped": console.export_dropped(),
        },
        "calls": {
            "since_start": counts(&since_start),
            "last_5m": with_latency(&last_5m),
        },
        "series": { "step_s": STEP.as_secs(), "points": points },
        "routes": routes,
        "backends": backends,
        "refused": { "since_start": refused_since_start, "recent": refused },
    })
}

fn add(sum: &mut Slot, slot: &Slot) {
    for (a, b) in sum.outcomes.iter_mut().zip(&slot.outcomes) {
        *a = a.saturating_add(*b);
    }
    sum.latencies.merge(&slot.latencies);
}

fn backend(
    console: &Console,
    backend: &Backend,
    figures: &Figures,
    now: Instant,
    secrets: &[String],
) -> Value {
    let recent = &figures.recent;
    let calls: u32 = recent.outcomes.iter().sum();
    // The CRM answered, whether or not it had the record.
    let answered: u32 = [None, Some(NoneReason::Declined), Some(NoneReason::NoMatch)]
        .into_iter()
        .map(|r| recent.outcomes[slot(r)])
        .sum();
    let last_error = figures.last_error.as_ref().map(|(at, reason, detail)| {
        json!({
            "at_ms": console.unix_ms(*at),
            "ago_s": now.saturating_duration_since(*at).as_secs(),
            "reason": reason.as_str(),
            "detail": redacted(detail, secrets),
        })
    });
    let login = backend.login.as_ref().map(|login| {
        let s = login.status();
        json!({
            "owner": login.owner(),
            "session_age_s": s.session_age.map(|d| d.as_secs()),
            "renews_in_s": s.renews_in.map(|d| d.as_secs()),
            "running": s.running,
            "backoff_left_ms": s.backoff_left.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            "last_failure": s.last_failure.map(|(ago, detail)| json!({
                "ago_s": ago.as_secs(),
                "detail": redacted(&detail, secrets),
            })),
            "logins": s.logins,
            "failures": s.failures,
            "relogins": s.relogins,
        })
    });
    let directory = backend.directory.as_ref().map(|d| {
        let s = d.status();
        let ago = |at: Option<Instant>| at.map(|at| now.saturating_duration_since(at).as_secs());
        json!({
            "entries": s.entries,
            "built_ago_s": ago(s.built),
            "synced_ago_s": ago(s.fresh),
            "last": s.last,
            "failures": s.failures,
        })
    });
    json!({
        "name": &*backend.name,
        "last_5m": with_latency(recent),
        "answered_rate": (calls > 0).then(|| f64::from(answered) / f64::from(calls)),
        "since_start": counts(&figures.since_start),
        "last_error": last_error,
        "login": login,
        "directory": directory,
    })
}

/// `{"calls": N, "open": N, "none": {"reason": N, ...}}`.
fn counts(outcomes: &Outcomes<u64>) -> Value {
    let mut none = Map::new();
    for reason in NoneReason::ALL {
        let n = outcomes[slot(Some(reason))];
        if n > 0 {
            none.insert(reason.as_str().into(), n.into());
        }
    }
    json!({
        "calls": outcomes.iter().sum::<u64>(),
        "open": outcomes[0],
        "none": none,
    })
}

/// [`counts`] with the p50 and p99 latencies.
fn with_latency(slot: &Slot) -> Value {
    let mut value = counts(&slot.outcomes.map(u64::from));
    if let Value::Object(map) = &mut value {
        map.insert("p50_ms".into(), json!(ms(slot.latencies.quantile(0.5))));
        map.insert("p99_ms".into(), json!(ms(slot.latencies.quantile(0.99))));
    }
    value
}

fn ms(d: Option<Duration>) -> Option<f64> {
    d.map(|d| (d.as_secs_f64() * 1e4).round() / 10.0)
}

/// The calls after a number, newest first.
pub fn calls(console: &Console, last: u64, calls: &[Call], secrets: &[String]) -> Value {
    json!({
        "last": last,
        "calls": calls.iter().map(|c| summary(console, c, secrets)).collect::<Vec<_>>(),
    })
}

/// One call, with its trace.
pub fn call(console: &Console, call: &Call, served: &Served<'_>) -> Value {
    let secrets = served.secrets();
    let mut value = summary(console, call, &secrets);
    let trace = trace::render(call, &secrets, console.settings().show_caller);
    if let Value::Object(map) = &mut value {
        map.insert("trace".into(), trace.into());
    }
    value
}

/// A call's line in the list: when, route, backends tried, outcome,
/// reason, latency, the caller (masked).
fn summary(console: &Console, call: &Call, secrets: &[String]) -> Value {
    let show = console.settings().show_caller;
    let masker = Masker::new(call.caller());
    let shown = |text: &str| -> String {
        let text = if secrets.is_empty() {
            text.to_owned()
        } else {
            redacted(text, secrets)
        };
        if show {
            text
        } else {
            masker.mask(&text).into_owned()
        }
    };
    let tried: Vec<Value> = call
        .steps
        .iter()
        .filter_map(|step| match step {
            Step::Attempt {
                backend,
                took,
                failed,
                ..
            } => Some(json!({
                "name": call.backend_name(*backend),
                "result": failed.as_ref().map_or("open", |(r, _)| r.as_str()),
                "ms": ms(Some(*took)),
            })),
            _ => None,
        })
        .collect();
    let none = call.none();
    json!({
        "seq": call.seq,
        "at_ms": console.unix_ms(call.at),
        "id": call.id.text().as_str(),
        "route": call.route(),
        "outcome": match (call.cancelled, none) {
            (Some(_), _) => "cancelled",
            (None, Some(_)) => "none",
            (None, None) => "open",
        },
        "reason": match call.cancelled {
            Some(cancelled) => Some(cancelled.as_str()),
            None => call.reason.map(NoneReason::as_str),
        },
        "detail": match call.cancelled {
            Some(cancelled) => cancelled.detail().to_owned(),
            None => shown(call.detail()),
        },
        "backend": call.backend(),
        "tried": tried,
        "latency_ms": ms(Some(call.latency)),
        "caller": if show { call.caller().to_owned() } else { mask::caller(call.caller()) },
        "title": call.opened.as_ref().map(|o| shown(call.text(o.title))),
        "url": call.opened.as_ref().and_then(|o| o.url).map(|u| shown(call.text(u))),
        "wrapped": call.opened.as_ref().is_some_and(|o| o.url.is_none()),
    })
}
