//! The handler's observer when the console is on: it keeps each step of a
//! call as [`Step`]s while the call is answered. It runs on the request
//! path, so it copies and does not format: a request's text is written
//! once with `push_str` (as `simulate` shows it, secrets redacted), a
//! reply is kept as its status and size, a cached session as its age.

use std::time::Duration;

use tokio::time::Instant;

use super::call::{boxed, cut, Micros, Step};
use super::mask;
use crate::answer::Observer;
use crate::backend::login::{Session, Source};
use crate::backend::reply::Candidate;
use crate::backend::{shown, Backend, BackendRequest, Failure, RawReply};
use crate::constants::{
    CONSOLE_BODY_BYTES, CONSOLE_NAME_BYTES, CONSOLE_TEXT_BYTES, CONSOLE_TRACE_BYTES,
};

/// Steps a trace keeps at most (a route of several backends, each with a
/// login and a retry, stays under it). A power of two, so the list's
/// doubling growth ends at it.
pub const MAX_STEPS: usize = 32;

/// Backends one trace names at most (a power of two, as above).
pub const MAX_BACKENDS: usize = 8;

/// One call's steps, gathered while it is answered.
#[derive(Debug)]
pub struct Recorder {
    /// When the request arrived: steps are timed from it.
    pub(super) start: Instant,
    /// The caller as sent, cut.
    pub(super) caller: Box<str>,
    /// The agent's token, when the route forwards it: hidden in requests.
    token: Option<String>,
    /// Whether to gather the candidates a reply offered.
    candidates: bool,
    /// Whether stored numbers may be shown as they are.
    show_numbers: bool,
    pub(super) backends: Vec<Box<str>>,
    pub(super) steps: Vec<Step>,
    text: usize,
    pub(super) truncated: bool,
    /// The last request's url as shown, and whether it was hidden: a reply
    /// from elsewhere (a redirect) names where it came from.
    last_url: (usize, usize, bool),
}

impl Recorder {
    /// A recorder for a call from `caller` that arrived at `start`.
    pub(super) fn new(start: Instant, caller: &str, candidates: bool, show_numbers: bool) -> Self {
        Self {
            start,
            caller: boxed(caller, CONSOLE_NAME_BYTES),
            token: None,
            candidates,
            show_numbers,
            backends: Vec::new(),
            steps: Vec::new(),
            text: 0,
            truncated: false,
            last_url: (0, 0, false),
        }
    }

    /// The route forwards the agent's token to its backends: it is hidden
    /// wherever a request shows it.
    pub fn forwards_token(&mut self, token: Option<&str>) {
        self.token = token.filter(|t| !t.is_empty()).map(str::to_owned);
    }

    /// The index of a backend's name (counted in the trace's bytes);
    /// past the bounds, one that names no backend.
    fn backend(&mut self, name: &str) -> u8 {
        let i = match self.backends.iter().position(|b| &**b == name) {
            Some(i) => i,
            None => {
                let name = cut(name, CONSOLE_NAME_BYTES);
                if self.backends.len() < MAX_BACKENDS && self.fits(name.len()) {
                    self.text += name.len();
                    self.backends.push(name.into());
                    self.backends.len() - 1
                } else {
                    MAX_BACKENDS
                }
            }
        };
        u8::try_from(i).unwrap_or(u8::MAX)
    }

    fn fits(&self, bytes: usize) -> bool {
        self.text + bytes <= CONSOLE_TRACE_BYTES
    }

    /// A text cut to at most `max` bytes and to what the trace has left.
    fn text(&self, text: &str, max: usize) -> Box<str> {
        boxed(text, self.room(max))
    }

    /// [`Recorder::text`] for a text already owned: kept, not copied, when
    /// it fits.
    fn owned_text(&self, text: String, max: usize) -> Box<str> {
        if text.len() <= self.room(max) {
            text.into_boxed_str()
        } else {
            self.text(&text, max)
        }
    }

    fn room(&self, max: usize) -> usize {
        max.min(CONSOLE_TRACE_BYTES.saturating_sub(self.text))
    }

    fn push(&mut self, step: Step) {
        let size = step.text_bytes();
        if self.steps.len() >= MAX_STEPS || !self.fits(size) {
            self.truncated = true;
            return;
        }
        self.text += size;
        self.steps.push(step);
    }

    fn now(&self) -> Micros {
        Micros::of(self.start.elapsed())
    }
}

impl Observer for Recorder {
    fn request(&mut self, backend: &Backend, request: &BackendRequest) {
        let at = self.now();
        let mut text = String::new();
        shown::request(&mut text, request, CONSOLE_BODY_BYTES);
        let mut secrets: Vec<String> = Vec::new();
        secrets.extend(request.hidden.iter().filter(|v| v.len() >= 4).cloned());
        if request.carries_token {
            secrets.extend(self.token.iter().cloned());
        }
        if !secrets.is_empty() {
            text = crate::backend::request::redacted(&text, &secrets);
        }
        // Where the url is in the text: "  METHOD url\n" (compared with the
        // reply's only when shown whole).
        let from = 3 + request.method.as_str().len();
        let to = from + request.url.as_str().len();
        self.last_url = (from, to, request.url_hidden || !secrets.is_empty());
        let backend = self.backend(&backend.name);
        let text = self.owned_text(text, CONSOLE_TRACE_BYTES / 2);
        self.push(Step::Request { backend, at, text });
    }

    fn response(&mut self, backend: &Backend, reply: &RawReply) {
        let at = self.now();
        let (from, to, hidden) = self.last_url;
        let sent = self.steps.iter().rev().find_map(|s| match s {
            Step::Request { text, .. } => text.get(from..to),
            _ => None,
        });
        // A reply from another url (a redirect) says where, without its
        // query; not when the request's url held a secret.
        let url = (!hidden && sent != Some(reply.url.as_str())).then(|| {
            let mut shown = reply.url.clone();
            shown.set_query(None);
            shown.set_fragment(None);
            boxed(shown.as_str(), CONSOLE_NAME_BYTES)
        });
        let backend = self.backend(&backend.name);
        self.push(Step::Reply {
            backend,
            at,
            status: reply.status.as_u16(),
            bytes: reply.body.len(),
            url,
        });
    }

    fn login(&mut self, backend: &Backend, session: &Session, source: Source) {
        let at = self.now();
        let mut lines = String::new();
        if source == Source::Fresh {
            for line in &session.trace {
                lines.push_str(line);
                lines.push('\n');
            }
            for (name, _) in session.string_values() {
                lines.push_str("login.");
                lines.push_str(&name);
                lines.push_str(" = [redacted]\n");
            }
        }
        let shared_from = backend
            .login
            .as_ref()
            .map(|l| l.owner())
            .filter(|owner| *owner != &*backend.name)
            .map(|owner| boxed(owner, CONSOLE_NAME_BYTES));
        let backend = self.backend(&backend.name);
        let lines = self.text(&lines, CONSOLE_TRACE_BYTES / 4);
        self.push(Step::Login {
            backend,
            at,
            source,
            age_s: u32::try_from(session.age().as_secs()).unwrap_or(u32::MAX),
            shared_from,
            lines,
        });
    }

    fn wants_candidates(&self) -> bool {
        self.candidates
    }

    fn candidates(&mut self, backend: &Backend, seen: &[Candidate]) {
        let mut lines = String::new();
        for record in seen {
            let verdict = if record.kept {
                "kept: holds the caller's number"
            } else {
                "dropped: no stored number is the caller's"
            };
            lines.push_str(&format!("record {}: {verdict}\n", record.index));
            for (field, stored, read) in &record.phones {
                let (stored, read) = if self.show_numbers {
                    (stored.clone(), read.clone())
                } else {
                    (mask::caller(stored), read.as_deref().map(mask::caller))
                };
                let read = read.as_deref().unwrap_or("not a phone number");
                lines.push_str(&format!("  {field} = {stored:?} -> {read}\n"));
            }
        }
        let backend = self.backend(&backend.name);
        let lines = self.text(&lines, CONSOLE_TRACE_BYTES / 4);
        self.push(Step::Candidates { backend, lines });
    }

    fn directory(&mut self, backend: &Backend, said: &str) {
        let backend = self.backend(&backend.name);
        let said = self.text(said, CONSOLE_TEXT_BYTES);
        self.push(Step::Directory { backend, said });
    }

    fn attempt(&mut self, backend: &Backend, failure: Option<&Failure>, took: Duration) {
        let at = self.now();
        let backend = self.backend(&backend.name);
        self.push(Step::Attempt {
            backend,
            at,
            took: Micros::of(took),
            failed: failure.map(|f| (f.reason, self.text(&f.detail, CONSOLE_TEXT_BYTES))),
        });
    }
}
