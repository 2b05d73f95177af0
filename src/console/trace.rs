//! A recorded call's decision trace, in the form `simulate` prints it:
//! which route was chosen and why, each backend's directory answer, login,
//! request (written as `simulate` writes it, through `backend::shown`) and
//! reply (summarized: status, size, time), the candidates when gathered,
//! each attempt's end, and the reply with its reason. Written when a page
//! asks, not on the request path. The config's secrets are redacted once
//! more, and the caller is masked unless the config lets the console show
//! it.

use std::fmt::Write as _;
use std::time::Duration;

use super::call::{Call, Micros, Step};
use super::mask::Masker;
use crate::backend::login::Source;
use crate::backend::request::redacted;
use crate::constants::CONSOLE_TRACE_BYTES;
use crate::route::Router;

/// The trace of `call`. `routes` is the generation being served (the
/// route's condition and the ones before it are read from it), `secrets`
/// the values to hide wherever they appear.
pub fn render(
    call: &Call,
    routes: Option<&Router>,
    secrets: &[String],
    show_caller: bool,
) -> String {
    let mut out = String::with_capacity(1024);
    explain_route(&mut out, call, routes);
    let mut sent: Option<Micros> = None;
    for step in &call.steps {
        let name = call.backend_name(step.backend());
        match step {
            Step::Directory { said, .. } => {
                let _ = writeln!(out, "\nbackend {name:?} directory: {}", call.text(*said));
            }
            Step::Login {
                source,
                age_s,
                shared_from,
                lines,
                ..
            } => {
                let shared = shared_from
                    .map(|o| format!(" (the login of {:?})", call.text(o)))
                    .unwrap_or_default();
                match source {
                    Source::Cached => {
                        let _ = writeln!(
                            out,
                            "\nbackend {name:?} login: cached session ({age_s} s old){shared}"
                        );
                    }
                    Source::Fresh => {
                        let _ = writeln!(out, "\nbackend {name:?} login: logged in{shared}");
                    }
                }
                for line in call.text(*lines).lines() {
                    let _ = writeln!(out, "  {line}");
                }
            }
            Step::Request { at, text, .. } => {
                sent = Some(*at);
                let _ = writeln!(out, "\nbackend {name:?} request:");
                out.push_str(call.text(*text));
            }
            Step::Reply {
                at,
                status,
                bytes,
                url,
                ..
            } => {
                let took = at.get().saturating_sub(sent.unwrap_or(*at).get());
                let from = url
                    .as_ref()
                    .map(|u| format!(" from {}", call.text(*u)))
                    .unwrap_or_default();
                let _ = writeln!(
                    out,
                    "\nbackend {name:?} replied in {:.1} ms: HTTP {status} ({bytes} bytes){from}",
                    millis(took)
                );
            }
            Step::Candidates { lines, .. } => {
                let _ = writeln!(out, "\nbackend {name:?} candidates:");
                for line in call.text(*lines).lines() {
                    let _ = writeln!(out, "  {line}");
                }
            }
            Step::Attempt { took, failed, .. } => match failed {
                None => {
                    let _ = writeln!(
                        out,
                        "\nbackend {name:?}: opened ({:.1} ms)",
                        millis(took.get())
                    );
                }
                Some((reason, detail)) => {
                    let _ = writeln!(
                        out,
                        "\nbackend {name:?}: no screen-pop: {reason} ({}) ({:.1} ms)",
                        call.text(*detail),
                        millis(took.get())
                    );
                }
            },
        }
    }
    if call.truncated {
        let _ = writeln!(
            out,
            "\n(later steps left out: a trace is kept under {} KiB)",
            CONSOLE_TRACE_BYTES / 1024
        );
    }
    answer(&mut out, call);
    let out = if secrets.is_empty() {
        out
    } else {
        redacted(&out, secrets)
    };
    if show_caller {
        out
    } else {
        Masker::new(call.caller()).mask(&out).into_owned()
    }
}

/// The route lines: the routes before the chosen one on its path (their
/// condition did not hold), then the chosen one and why.
fn explain_route(out: &mut String, call: &Call, routes: Option<&Router>) {
    let Some(name) = call.route() else {
        let _ = writeln!(out, "no route matched");
        return;
    };
    let on_path = routes.and_then(|router| {
        router.paths().find_map(|path| {
            let routes = router.routes_on(path)?;
            let i = routes.iter().position(|r| &*r.name == name)?;
            Some(&routes[..=i])
        })
    });
    let Some((chosen, before)) = on_path.and_then(<[_]>::split_last) else {
        let _ = writeln!(
            out,
            "route {name:?}: chosen (it is no longer in the config: its condition is not shown)"
        );
        return;
    };
    for route in before {
        match &route.when_source {
            Some(src) => {
                let _ = writeln!(
                    out,
                    "route {:?}: when `{src}` did not hold: skipped",
                    route.name
                );
            }
            None => {
                let _ = writeln!(out, "route {:?}: skipped", route.name);
            }
        }
    }
    match &chosen.when_source {
        Some(src) => {
            let _ = writeln!(out, "route {name:?}: when `{src}` holds: chosen");
        }
        None => {
            let _ = writeln!(out, "route {name:?}: no when: matches every call: chosen");
        }
    }
}

/// The reply line, and the reason of a `none` (or the failure a fallback
/// followed), as `simulate` ends its report.
fn answer(out: &mut String, call: &Call) {
    let reply = match &call.opened {
        Some(open) => {
            let url = match open.url {
                Some(url) => json(call.text(url)),
                None => "\"(the completion wrapper's link)\"".to_owned(),
            };
            format!(
                "{{\"action\":\"open\",\"event\":{},\"url\":{url},\"autopause\":{},\"title\":{}}}",
                serde_json::to_string(&open.event).unwrap_or_default(),
                open.autopause,
                json(call.text(open.title))
            )
        }
        None => r#"{"action":"none"}"#.to_owned(),
    };
    let _ = writeln!(out, "\nreply: {reply}");
    let label = match (&call.opened, call.reason) {
        (None, reason) => Some((
            "reason",
            reason
                .unwrap_or(crate::outcome::NoneReason::Declined)
                .as_str(),
        )),
        (Some(_), Some(reason)) => Some(("fallback after", reason.as_str())),
        (Some(_), None) => None,
    };
    if let Some((label, reason)) = label {
        let from = call
            .backend()
            .map(|b| format!(" from backend {b:?}"))
            .unwrap_or_default();
        let _ = writeln!(out, "{label}: {reason} ({}){from}", call.detail());
    }
}

fn json(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_default()
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
