//! What `simulate` prints of a call as it runs: the [`Printer`] that watches
//! `answer` (requests, logins, replies, candidates, failures, the saved
//! replies it hands in), and how a request, its headers and body are shown,
//! redacted, with a query string or form body also decoded.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use tokio::time::Instant;

use super::saved::SavedReply;
use crate::answer::Observer;
use crate::backend::login::{Session, Source};
use crate::backend::reply::Candidate;
use crate::backend::request::redacted;
use crate::backend::{shown, Backend, BackendRequest, Failure, RawReply};

/// Bodies longer than this are cut in the printout.
const SHOW_BODY_BYTES: usize = 8 * 1024;

/// `simulate`'s observer: writes each step of the call as it happens.
pub(super) struct Printer {
    /// What was printed so far.
    pub(super) out: String,
    /// When the last request was sent, for the reply's time.
    pub(super) started: Instant,
    /// Secret values, session tokens and the agent's token, hidden
    /// wherever they appear (a request or a reply that echoes them).
    pub(super) redact: Vec<String>,
    /// The payload's caller, to show how it reads beside the candidates.
    pub(super) caller: String,
    /// Replies read from files instead of asked (`--crm-reply`), by backend.
    pub(super) saved: BTreeMap<Box<str>, SavedReply>,
    /// The backends whose saved reply was read.
    pub(super) read: BTreeSet<Box<str>>,
}

impl Observer for Printer {
    fn request(&mut self, backend: &Backend, request: &BackendRequest, _at: Instant) {
        self.started = Instant::now();
        let mut shown = String::new();
        show_request(&mut shown, backend, request);
        // What templates reading a secret or a session rendered (values
        // derived from a secret are no known secret), hidden too.
        for value in request.hidden.iter().filter(|v| v.len() >= 4) {
            if !self.redact.contains(value) {
                self.redact.push(value.clone());
            }
        }
        self.out.push_str(&redacted(&shown, &self.redact));
    }

    fn login(&mut self, backend: &Backend, session: &Session, source: Source) {
        for (_, value) in session.string_values() {
            if value.len() >= 4 && !value.starts_with("http") {
                self.redact.push(value);
            }
        }
        let out = &mut self.out;
        let shared = match backend.login.as_ref().map(|l| l.owner()) {
            Some(owner) if owner != &*backend.name => format!(" (the login of {owner:?})"),
            _ => String::new(),
        };
        match source {
            Source::Cached => {
                let _ = writeln!(
                    out,
                    "\nbackend {:?} login: cached session ({} s old){shared}",
                    backend.name,
                    session.age().as_secs()
                );
            }
            Source::Fresh => {
                let _ = writeln!(out, "\nbackend {:?} login: logged in{shared}", backend.name);
                for line in &session.trace {
                    let _ = writeln!(out, "  {line}");
                }
            }
        }
        let names: Vec<String> = session
            .string_values()
            .map(|(name, value)| {
                if value.starts_with("http") {
                    format!("login.{name} = {value}")
                } else {
                    format!("login.{name} = [redacted]")
                }
            })
            .collect();
        for name in names {
            let _ = writeln!(out, "  {name}");
        }
    }

    fn directory(&mut self, backend: &Backend, said: &str) {
        let note = if said.starts_with("not built") {
            " (simulate does not sync the directory; a running gateway answers from it once built)"
        } else {
            ""
        };
        let _ = writeln!(
            self.out,
            "\nbackend {:?} directory: {said}{note}",
            backend.name
        );
    }

    fn wants_candidates(&self) -> bool {
        true
    }

    fn failed(&mut self, backend: &Backend, failure: &Failure) {
        let _ = writeln!(
            self.out,
            "\nbackend {:?}: no screen-pop: {} ({})",
            backend.name, failure.reason, failure.detail
        );
    }

    fn saved_reply(&mut self, backend: &Backend) -> Option<RawReply> {
        let saved = self.saved.get(&backend.name)?;
        self.read.insert(backend.name.clone());
        let raw = saved.raw();
        let mut out = String::new();
        let status = if saved.had_head {
            format!("HTTP {} as saved", raw.status.as_u16())
        } else {
            "taken as HTTP 200".to_owned()
        };
        let _ = writeln!(
            out,
            "\nbackend {:?} reply: read from {} ({} bytes, {status}): --crm-reply, so no login and no request to the CRM",
            backend.name,
            saved.file.display(),
            raw.body.len()
        );
        shown::body(&mut out, &raw.body, SHOW_BODY_BYTES);
        self.out.push_str(&redacted(&out, &self.redact));
        Some(raw)
    }

    fn candidates(&mut self, backend: &Backend, seen: &[Candidate]) {
        let Some(c) = &backend.reply.candidates else {
            return;
        };
        let out = &mut self.out;
        let caller = match crate::phone::Number::read_caller(&self.caller, c.caller_region) {
            Some(n) => format!("the caller {:?} reads as {}", self.caller, n.e164()),
            None => format!("the caller {:?} is not a phone number", self.caller),
        };
        let _ = writeln!(
            out,
            "
backend {:?} candidates: {} record(s) compared, {caller}",
            backend.name,
            seen.len()
        );
        for record in seen {
            let verdict = if record.kept {
                "kept: holds the caller's number"
            } else {
                "dropped: no stored number is the caller's"
            };
            let _ = writeln!(out, "  record {}: {verdict}", record.index);
            if record.phones.is_empty() {
                let _ = writeln!(out, "    (no phone field holds a number)");
            }
            for (field, stored, read) in &record.phones {
                let read = read.as_deref().unwrap_or("not a phone number");
                let _ = writeln!(out, "    {field} = {stored:?} -> {read}");
            }
        }
    }

    fn response(&mut self, backend: &Backend, reply: &RawReply) {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "\nbackend {:?} replied in {:.1} ms: HTTP {} ({} bytes) from {}",
            backend.name,
            self.started.elapsed().as_secs_f64() * 1000.0,
            reply.status,
            reply.body.len(),
            reply.url
        );
        shown::headers(&mut out, &reply.headers);
        shown::body(&mut out, &reply.body, SHOW_BODY_BYTES);
        self.out.push_str(&redacted(&out, &self.redact));
    }
}

/// A backend request as `simulate` shows it (the caller redacts it).
pub(super) fn show_request(out: &mut String, backend: &Backend, req: &BackendRequest) {
    let _ = writeln!(out, "\nbackend {:?} request:", backend.name);
    shown::request(out, req, SHOW_BODY_BYTES);
}
