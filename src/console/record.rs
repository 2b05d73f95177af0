//! The handler's observer when the console is on: it keeps each step of a
//! call as [`Step`]s while the call is answered. It runs on the request
//! path, so it copies and does not format or convert: a backend is its
//! place on the route's card, a time is the clock's reading, a reply is
//! kept as its status and size, a cached session as its age. A request is
//! kept as its method, url and body, and written when its trace is shown
//! with its backend's header lines from the card; one that holds a value
//! to hide (a secret, a session, the agent's token) is written at once as
//! `simulate` writes it, with those values redacted, so no such value is
//! kept.

use std::cell::{Cell, RefCell};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::call::{place, Call, Step, Text, Texts, METHODS, NO_BACKEND};
use super::mask;
use crate::answer::Observer;
use crate::backend::login::{Session, Source};
use crate::backend::reply::Candidate;
use crate::backend::{shown, Backend, BackendRequest, Failure, RawReply};
use crate::constants::{
    CONSOLE_BODY_BYTES, CONSOLE_NAME_BYTES, CONSOLE_TEXT_BYTES, CONSOLE_TRACE_BYTES,
};
use crate::request_id::RequestId;
use crate::route::Card;

/// Steps a trace keeps at most (a route of several backends, each with a
/// login and a retry, stays under it). A power of two, so the list's
/// doubling growth ends at it.
pub const MAX_STEPS: usize = 32;

/// The call's texts are sized for this much at first: a call to one
/// backend with a short request needs no more.
const FIRST_CAPACITY: usize = 512;

/// One call's steps, gathered while it is answered, straight into the
/// call the ring will keep: the recorder owns it (a call the ring pushed
/// out, reused, or a new one) and hands it to the ring by its pointer at
/// the end.
#[derive(Debug)]
pub struct Recorder {
    /// The call being recorded.
    pub(super) call: Box<Call>,
    pub(super) progress: Progress,
}

/// What the recorder knows that the kept call does not.
#[derive(Debug)]
pub(super) struct Progress {
    /// The agent's token, when the route forwards it: hidden in requests.
    token: Option<String>,
    /// Whether to gather the candidates a reply offered.
    candidates: bool,
    /// Whether stored numbers may be shown as they are.
    show_numbers: bool,
    /// The trace's bytes so far.
    trace: usize,
    /// Whether the last request's url was shown whole: a reply after a
    /// redirect then names where it came from.
    url_shown: bool,
    /// The backend of the last attempt, when it was kept: the one the
    /// answer names (the last it tried), found without comparing names.
    pub(super) last_attempt: Option<u8>,
    /// The backend last found on the card (its address and place): a
    /// call's steps come a backend at a time.
    backend: (usize, u8),
}

impl Recorder {
    /// A recorder for a call from `caller` that arrived at `start`.
    pub(super) fn new(
        start: Instant,
        id: RequestId,
        caller: &str,
        candidates: bool,
        show_numbers: bool,
    ) -> Self {
        // `try_with`: no spare while the thread's locals are being
        // destroyed (a task dropped at its end), rather than a panic.
        let call = match SPARE.try_with(Cell::take).ok().flatten() {
            Some(mut spare) => {
                spare.reuse(start, id, caller);
                spare
            }
            None => {
                let mut texts = Texts::with_capacity(FIRST_CAPACITY);
                let caller = texts.add(caller, CONSOLE_NAME_BYTES);
                Box::new(Call::new(start, id, texts, caller))
            }
        };
        Self {
            call,
            progress: Progress {
                token: None,
                candidates,
                show_numbers,
                trace: 0,
                url_shown: false,
                last_attempt: None,
                backend: (0, NO_BACKEND),
            },
        }
    }

    /// The route forwards the agent's token to its backends: it is hidden
    /// wherever a request shows it.
    pub fn forwards_token(&mut self, token: Option<&str>) {
        self.progress.token = token.filter(|t| !t.is_empty()).map(str::to_owned);
    }

    /// The route chosen for the call (its card says its name, why it was
    /// chosen and its backends).
    pub fn route(&mut self, card: &Arc<Card>) {
        self.call.card = Some(Arc::clone(card));
    }

    /// The call and what the recorder knows of it, apart.
    fn parts(&mut self) -> (&mut Call, &mut Progress) {
        (&mut self.call, &mut self.progress)
    }
}

impl Progress {
    /// A backend's place on the call's route card.
    fn place(&mut self, call: &Call, backend: &Backend) -> u8 {
        let address = std::ptr::from_ref(backend) as usize;
        if self.backend.0 != address {
            let found = call.card.as_deref().and_then(|card| card.index_of(backend));
            self.backend = (address, place(found));
        }
        self.backend.1
    }

    /// What the trace has left, at most `max`.
    fn room(&self, max: usize) -> usize {
        max.min(CONSOLE_TRACE_BYTES.saturating_sub(self.trace))
    }

    /// Adds a text of the trace, cut to `max` and to what is left (a
    /// text cut for lack of room marks the trace cut).
    fn text(&mut self, call: &mut Call, text: &str, max: usize) -> Text {
        let room = self.room(max);
        if text.len() > room && room < max {
            call.truncated = true;
        }
        let text = call.texts.add(text, room);
        self.trace += call.texts.bytes(text).len();
        text
    }

    /// A request that holds no value to hide, kept in parts to be written
    /// when its trace is shown: its method by its place in [`METHODS`],
    /// its url and body copied (the body when whole and short, as bytes:
    /// `simulate` shows one that is not UTF-8 as it would have), its
    /// header lines its backend's, on the card (none templated). `None`
    /// when it cannot be (another method, a long body): it is written at
    /// once.
    fn keep(
        &mut self,
        call: &mut Call,
        backend: u8,
        request: &BackendRequest,
        at: Instant,
        room: usize,
    ) -> Option<Step> {
        call.headers(backend)?;
        let method = METHODS.iter().position(|m| *m == request.method)?;
        let body = &request.body[..];
        let url = request.url.as_str();
        let size = url.len() + body.len();
        if body.len() > CONSOLE_BODY_BYTES || size > room {
            return None;
        }
        let method = u8::try_from(method).ok()?;
        let url = call.texts.add_whole(url.as_bytes());
        let body = call.texts.add_whole(body);
        self.trace += size;
        self.url_shown = true;
        Some(Step::Sent {
            backend,
            at,
            method,
            url,
            body,
        })
    }
}

thread_local! {
    /// A call pushed out of the ring, for the next call recorded on this
    /// thread to reuse: its allocation and its texts' (one a worker
    /// thread, at most a call's bound).
    static SPARE: Cell<Option<Box<Call>>> = const { Cell::new(None) };

    /// Where a request written at once is written before it is copied
    /// into the call (whose texts are bytes), its room kept for the next.
    static WRITTEN: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Keeps `call`, pushed out of the ring, for the next call to reuse.
pub(super) fn spare(call: Box<Call>) {
    let _ = SPARE.try_with(|spare| drop(spare.replace(Some(call))));
}

/// Adds a step, or marks the trace cut when it has all it may keep
/// (`false`).
fn push(call: &mut Call, step: Step) -> bool {
    if call.steps.len() >= MAX_STEPS {
        call.truncated = true;
        return false;
    }
    call.steps.push(step);
    true
}

/// A request as `simulate` writes it, with `secrets` redacted, added to
/// the call's texts (cut to `room`).
fn write_request(
    call: &mut Call,
    request: &BackendRequest,
    secrets: &[String],
    room: usize,
) -> Text {
    let mut add = |out: &mut String| {
        out.clear();
        shown::request(out, request, CONSOLE_BODY_BYTES);
        if secrets.is_empty() {
            call.texts.add(out, room)
        } else {
            let hidden = crate::backend::request::redacted(out, secrets);
            call.texts.add(&hidden, room)
        }
    };
    WRITTEN
        .try_with(|out| match out.try_borrow_mut() {
            Ok(mut out) => add(&mut out),
            Err(_) => add(&mut String::new()),
        })
        .unwrap_or_else(|_| add(&mut String::new()))
}

impl Observer for Recorder {
    fn request(&mut self, backend: &Backend, request: &BackendRequest, at: Instant) {
        let (call, p) = self.parts();
        let backend = p.place(call, backend);
        let room = p.room(CONSOLE_TRACE_BYTES / 2);
        if room == 0 {
            call.truncated = true;
            return;
        }
        let token = p.token.is_some() && request.carries_token;
        let hides = token || request.hidden.iter().any(|v| v.len() >= 4);
        p.url_shown = false;
        if !hides && !request.url_hidden {
            if let Some(step) = p.keep(call, backend, request, at, room) {
                push(call, step);
                return;
            }
        }
        let mut secrets: Vec<String> = Vec::new();
        if hides {
            secrets.extend(request.hidden.iter().filter(|v| v.len() >= 4).cloned());
            secrets.extend(p.token.clone().filter(|_| token));
        }
        let text = write_request(call, request, &secrets, room);
        p.url_shown = !hides && !request.url_hidden;
        p.trace += call.texts.bytes(text).len();
        push(call, Step::Request { backend, at, text });
    }

    fn response(&mut self, backend: &Backend, reply: &RawReply) {
        let (call, p) = self.parts();
        let at = Instant::now();
        let backend = p.place(call, backend);
        // A reply after a redirect says where it came from, without its
        // query; not when the request's url held a secret.
        let url = (reply.redirected && p.url_shown).then(|| {
            let mut shown = reply.url.clone();
            shown.set_query(None);
            shown.set_fragment(None);
            p.text(call, shown.as_str(), CONSOLE_NAME_BYTES)
        });
        push(
            call,
            Step::Reply {
                backend,
                at,
                status: reply.status.as_u16(),
                bytes: u32::try_from(reply.body.len()).unwrap_or(u32::MAX),
                url,
            },
        );
    }

    fn login(&mut self, backend: &Backend, session: &Session, source: Source) {
        let (call, p) = self.parts();
        let at = Instant::now();
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
            .filter(|owner| *owner != &*backend.name);
        let index = p.place(call, backend);
        let shared_from = shared_from.map(|owner| p.text(call, owner, CONSOLE_NAME_BYTES));
        let lines = p.text(call, &lines, CONSOLE_TRACE_BYTES / 4);
        push(
            call,
            Step::Login {
                backend: index,
                at,
                source,
                age_s: u32::try_from(session.age().as_secs()).unwrap_or(u32::MAX),
                shared_from,
                lines,
            },
        );
    }

    fn wants_candidates(&self) -> bool {
        self.progress.candidates
    }

    fn candidates(&mut self, backend: &Backend, seen: &[Candidate]) {
        let (call, p) = self.parts();
        let mut lines = String::new();
        for record in seen {
            let verdict = if record.kept {
                "kept: holds the caller's number"
            } else {
                "dropped: no stored number is the caller's"
            };
            lines.push_str(&format!("record {}: {verdict}\n", record.index));
            for (field, stored, read) in &record.phones {
                let (stored, read) = if p.show_numbers {
                    (stored.clone(), read.clone())
                } else {
                    (mask::caller(stored), read.as_deref().map(mask::caller))
                };
                let read = read.as_deref().unwrap_or("not a phone number");
                lines.push_str(&format!("  {field} = {stored:?} -> {read}\n"));
            }
        }
        let backend = p.place(call, backend);
        let lines = p.text(call, &lines, CONSOLE_TRACE_BYTES / 4);
        push(call, Step::Candidates { backend, lines });
    }

    fn directory(&mut self, backend: &Backend, said: &str) {
        let (call, p) = self.parts();
        let backend = p.place(call, backend);
        let said = p.text(call, said, CONSOLE_TEXT_BYTES);
        push(call, Step::Directory { backend, said });
    }

    fn attempt(
        &mut self,
        backend: &Backend,
        failure: Option<&Failure>,
        took: Duration,
        ended: Instant,
    ) {
        let (call, p) = self.parts();
        let backend = p.place(call, backend);
        let failed = failure.map(|f| (f.reason, p.text(call, &f.detail, CONSOLE_TEXT_BYTES)));
        let step = Step::Attempt {
            backend,
            at: ended,
            took,
            failed,
        };
        p.last_attempt = push(call, step).then_some(backend);
    }
}
