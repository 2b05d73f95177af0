//! A recorded call's decision trace, in the form `simulate` prints it:
//! which route was chosen and why, each backend's directory answer, login,
//! request (written as `simulate` writes it, through `backend::shown`) and
//! reply (summarized: status, size, time), the candidates when gathered,
//! each attempt's end, and the reply with its reason (or that the call was
//! dropped before it). Written when a page asks, not on the request path,
//! from the call alone: the route's explanation is the one of the config
//! the call ran under. The config's secrets are redacted once
//! more, and the caller is masked unless the config lets the console show
//! it.

use std::fmt::Write as _;
use std::time::Duration;

use super::call::{Call, Step};
use super::mask::Masker;
use crate::backend::login::Source;
use crate::backend::request::redacted;
use crate::backend::shown::{self, Headers, Parts};
use crate::constants::{CONSOLE_BODY_BYTES, CONSOLE_TRACE_BYTES};

/// The trace of `call`; `secrets` are the values to hide wherever they
/// appear.
pub fn render(call: &Call, secrets: &[String], show_caller: bool) -> String {
    let mut out = String::with_capacity(1024);
    explain_route(&mut out, call);
    let mut sent: Option<Duration> = None;
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
                sent = Some(call.since(*at));
                let _ = writeln!(out, "\nbackend {name:?} request:");
                out.push_str(call.text(*text));
            }
            Step::Sent {
                backend, at, body, ..
            } => {
                sent = Some(call.since(*at));
                let _ = writeln!(out, "\nbackend {name:?} request:");
                let (method, url) = call.request_line(step).unwrap_or(("", ""));
                let parsed = url::Url::parse(url).ok();
                let body = call.texts.bytes(*body);
                let parts = Parts {
                    method,
                    url,
                    query: parsed.as_ref().and_then(url::Url::query),
                    headers: Headers::Written(call.headers(*backend).unwrap_or("")),
                    body,
                    body_len: body.len(),
                    form: call.form(*backend),
                };
                shown::write(&mut out, &parts, CONSOLE_BODY_BYTES);
            }
            Step::Reply {
                at,
                status,
                bytes,
                url,
                ..
            } => {
                let at = call.since(*at);
                let took = at.saturating_sub(sent.unwrap_or(at));
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
                    let _ = writeln!(out, "\nbackend {name:?}: opened ({:.1} ms)", millis(*took));
                }
                Some((reason, detail)) => {
                    let _ = writeln!(
                        out,
                        "\nbackend {name:?}: no screen-pop: {reason} ({}) ({:.1} ms)",
                        call.text(*detail),
                        millis(*took)
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
/// condition did not hold), then the chosen one and why, from the config
/// the call ran under.
fn explain_route(out: &mut String, call: &Call) {
    match &call.card {
        Some(card) => card.explain.write(out),
        None => match call.cancelled {
            Some(_) => {
                let _ = writeln!(out, "no route chosen yet");
            }
            None => {
                let _ = writeln!(out, "no route matched");
            }
        },
    }
}

/// The reply line, and the reason of a `none` (or the failure a fallback
/// followed), as `simulate` ends its report.
fn answer(out: &mut String, call: &Call) {
    if let Some(cancelled) = call.cancelled {
        let _ = writeln!(
            out,
            "\nno reply: cancelled ({}): {}",
            cancelled.as_str(),
            cancelled.detail()
        );
        return;
    }
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
