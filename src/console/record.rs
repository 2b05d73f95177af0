//! The handler's observer when the console is on: it keeps each step of a
//! call as [`Step`]s while the call is answered. It runs on the request
//! path, so it copies and does not format: every text goes into the call's
//! one string (a request written there as `simulate` writes it, secrets
//! redacted), a reply is kept as its status and size, a cached session as
//! its age.

use std::time::Duration;

use tokio::time::Instant;

use super::call::{Micros, Step, Text, Texts};
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

/// Backends one trace names at most.
pub const MAX_BACKENDS: usize = 8;

/// The call's texts are sized for this much at first: a call to one
/// backend with a short request needs no more.
const FIRST_CAPACITY: usize = 512;

/// One call's steps, gathered while it is answered.
#[derive(Debug)]
pub struct Recorder {
    /// When the request arrived: steps are timed from it.
    pub(super) start: Instant,
    /// Every text of the call.
    pub(super) texts: Texts,
    /// The caller as sent, cut.
    pub(super) caller: Text,
    /// The agent's token, when the route forwards it: hidden in requests.
    token: Option<String>,
    /// Whether to gather the candidates a reply offered.
    candidates: bool,
    /// Whether stored numbers may be shown as they are.
    show_numbers: bool,
    pub(super) backends: [Text; MAX_BACKENDS],
    named: usize,
    pub(super) steps: Vec<Step>,
    /// The trace's bytes so far (steps' texts and backends' names).
    trace: usize,
    pub(super) truncated: bool,
    /// The last request's url, when shown whole: a reply from elsewhere
    /// (a redirect) names where it came from.
    last_url: Option<Text>,
    /// The address of the last step's backend and its index: a backend's
    /// steps come one after the other, and an address compares faster than
    /// a name (it is only compared, never read through).
    last_backend: Option<(usize, u8)>,
}

impl Recorder {
    /// A recorder for a call from `caller` that arrived at `start`.
    pub(super) fn new(start: Instant, caller: &str, candidates: bool, show_numbers: bool) -> Self {
        let mut texts = Texts::with_capacity(FIRST_CAPACITY);
        let caller = texts.add(caller, CONSOLE_NAME_BYTES);
        Self {
            start,
            texts,
            caller,
            token: None,
            candidates,
            show_numbers,
            backends: [Text::default(); MAX_BACKENDS],
            named: 0,
            steps: Vec::new(),
            trace: 0,
            truncated: false,
            last_url: None,
            last_backend: None,
        }
    }

    /// The route forwards the agent's token to its backends: it is hidden
    /// wherever a request shows it.
    pub fn forwards_token(&mut self, token: Option<&str>) {
        self.token = token.filter(|t| !t.is_empty()).map(str::to_owned);
    }

    /// The index of a backend (its name counted in the trace's bytes);
    /// past the bounds, one that names no backend.
    fn backend_of(&mut self, backend: &Backend) -> u8 {
        let address = std::ptr::from_ref(backend) as usize;
        if let Some((last, index)) = self.last_backend {
            if last == address {
                return index;
            }
        }
        let index = self.backend(&backend.name);
        self.last_backend = Some((address, index));
        index
    }

    /// The index of a backend's name (counted in the trace's bytes);
    /// past the bounds, one that names no backend.
    pub(super) fn backend(&mut self, name: &str) -> u8 {
        let known = self.backends[..self.named]
            .iter()
            .position(|b| self.texts.get(*b) == name);
        let i = match known {
            Some(i) => i,
            None if self.named < MAX_BACKENDS && self.room(CONSOLE_NAME_BYTES) > 0 => {
                let text = self.texts.add(name, self.room(CONSOLE_NAME_BYTES));
                self.trace += self.texts.get(text).len();
                self.backends[self.named] = text;
                self.named += 1;
                self.named - 1
            }
            None => MAX_BACKENDS,
        };
        u8::try_from(i).unwrap_or(u8::MAX)
    }

    /// What the trace has left, at most `max`.
    fn room(&self, max: usize) -> usize {
        max.min(CONSOLE_TRACE_BYTES.saturating_sub(self.trace))
    }

    /// Adds a text of the trace, cut to `max` and to what is left (a
    /// text cut for lack of room marks the trace cut).
    fn text(&mut self, text: &str, max: usize) -> Text {
        let room = self.room(max);
        if text.len() > room && room < max {
            self.truncated = true;
        }
        let text = self.texts.add(text, room);
        self.trace += self.texts.get(text).len();
        text
    }

    fn push(&mut self, step: Step) {
        if self.steps.len() >= MAX_STEPS {
            self.truncated = true;
            return;
        }
        self.steps.push(step);
    }

    fn now(&self) -> Micros {
        Micros::of(self.start.elapsed())
    }
}

impl Observer for Recorder {
    fn request(&mut self, backend: &Backend, request: &BackendRequest) {
        let at = self.now();
        let backend = self.backend_of(backend);
        let room = self.room(CONSOLE_TRACE_BYTES / 2);
        if room == 0 {
            self.truncated = true;
            return;
        }
        let mut text = self
            .texts
            .write(room, |out| shown::request(out, request, CONSOLE_BODY_BYTES));
        let mut secrets: Vec<String> = Vec::new();
        secrets.extend(request.hidden.iter().filter(|v| v.len() >= 4).cloned());
        if request.carries_token {
            secrets.extend(self.token.iter().cloned());
        }
        self.last_url = None;
        if secrets.is_empty() {
            if !request.url_hidden {
                // "  METHOD url\n": where the url is, to compare the
                // reply's with.
                let url = request.url.as_str();
                self.last_url = text
                    .part(3 + request.method.as_str().len(), url.len())
                    .filter(|part| self.texts.get(*part) == url);
            }
        } else {
            let hidden = crate::backend::request::redacted(self.texts.get(text), &secrets);
            text = self.texts.replace_last(text, &hidden, room);
        }
        self.trace += self.texts.get(text).len();
        self.push(Step::Request { backend, at, text });
    }

    fn response(&mut self, backend: &Backend, reply: &RawReply) {
        let at = self.now();
        let backend = self.backend_of(backend);
        let sent = self
            .last_url
            .map(|url| self.texts.get(url) == reply.url.as_str());
        // A reply from another url (a redirect) says where, without its
        // query; not when the request's url held a secret (`None`).
        let url = (sent == Some(false)).then(|| {
            let mut shown = reply.url.clone();
            shown.set_query(None);
            shown.set_fragment(None);
            self.text(shown.as_str(), CONSOLE_NAME_BYTES)
        });
        self.push(Step::Reply {
            backend,
            at,
            status: reply.status.as_u16(),
            bytes: u32::try_from(reply.body.len()).unwrap_or(u32::MAX),
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
            .map(str::to_owned);
        let index = self.backend_of(backend);
        let shared_from = shared_from.map(|owner| self.text(&owner, CONSOLE_NAME_BYTES));
        let lines = self.text(&lines, CONSOLE_TRACE_BYTES / 4);
        self.push(Step::Login {
            backend: index,
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
        let backend = self.backend_of(backend);
        let lines = self.text(&lines, CONSOLE_TRACE_BYTES / 4);
        self.push(Step::Candidates { backend, lines });
    }

    fn directory(&mut self, backend: &Backend, said: &str) {
        let backend = self.backend_of(backend);
        let said = self.text(said, CONSOLE_TEXT_BYTES);
        self.push(Step::Directory { backend, said });
    }

    fn attempt(&mut self, backend: &Backend, failure: Option<&Failure>, took: Duration) {
        let at = self.now();
        let backend = self.backend_of(backend);
        let failed = failure.map(|f| (f.reason, self.text(&f.detail, CONSOLE_TEXT_BYTES)));
        self.push(Step::Attempt {
            backend,
            at,
            took: Micros::of(took),
            failed,
        });
    }
}
