//! One recorded call, as the console keeps it: what was decided and the
//! steps that led there, in compact form. All of a call's own texts
//! (caller, requests' urls and bodies, details) are one buffer, which its
//! steps point into; what the config says of its route (name, why chosen,
//! backends' names and header lines) is the route's [`Card`], shared by
//! the route's calls, not copied. Times are kept as the clock gave them
//! and turned into durations when the call is shown. So recording a call
//! copies only what the call itself brought, and converts nothing. Every
//! text is cut to a bound, so a call's size is bounded whatever the CRM or
//! the payload sends ([`Call::heap_bytes`] ≤ [`CONSOLE_CALL_MAX_BYTES`],
//! checked when compiled). What is stored is what the gateway saw; secrets
//! are redacted as the steps are taken, the caller is masked when the call
//! is shown.

use std::sync::Arc;
use std::time::Duration;

use http::Method;
use smallvec::SmallVec;
use tokio::time::Instant;

use super::record::MAX_STEPS;
use crate::backend::login::Source;
use crate::constants::{
    CONSOLE_CALL_MAX_BYTES, CONSOLE_NAME_BYTES, CONSOLE_TEXT_BYTES, CONSOLE_TRACE_BYTES,
};
use crate::contract::Event;
use crate::outcome::NoneReason;
use crate::request_id::RequestId;
use crate::route::Card;

/// Room a call's texts may keep beyond their length (the string is sized
/// once for a common call, not to the byte).
pub const SLACK: usize = 512;

/// The most a call can hold, from the bounds of its parts: itself, its
/// steps at their cap, its texts at theirs (the trace's, three
/// long ones: detail, url, title; the caller) with their slack. Its
/// route's card is the config's, counted once per route, not per call.
const WORST: usize = std::mem::size_of::<Call>()
    + MAX_STEPS * std::mem::size_of::<Step>()
    + CONSOLE_TRACE_BYTES
    + 3 * CONSOLE_TEXT_BYTES
    + CONSOLE_NAME_BYTES
    + SLACK;

const _: () = assert!(WORST <= CONSOLE_CALL_MAX_BYTES);

/// The methods a request kept in parts may have (HTTP's own): a step
/// keeps the place of its method here rather than a copy of its name.
pub const METHODS: [Method; 9] = [
    Method::POST,
    Method::GET,
    Method::PUT,
    Method::PATCH,
    Method::DELETE,
    Method::HEAD,
    Method::OPTIONS,
    Method::CONNECT,
    Method::TRACE,
];

/// A backend none of the route's: named "?".
pub const NO_BACKEND: u8 = u8::MAX;

/// A backend's place on its route's card as a step keeps it;
/// [`NO_BACKEND`] when it has none (or one past what a byte counts).
pub fn place(index: Option<usize>) -> u8 {
    index
        .and_then(|i| u8::try_from(i).ok())
        .filter(|&i| i != NO_BACKEND)
        .unwrap_or(NO_BACKEND)
}

/// A piece of a call's texts: where it is in [`Texts`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Text {
    from: u16,
    to: u16,
}

impl Text {
    /// Whether it is empty.
    pub fn is_empty(self) -> bool {
        self.from == self.to
    }
}

// A piece's ends are 16 bits: all of a call's texts (its trace's, the
// detail, url and title, the caller, each within its bound) fit.
const _: () =
    assert!(CONSOLE_TRACE_BYTES + 3 * CONSOLE_TEXT_BYTES + CONSOLE_NAME_BYTES <= u16::MAX as usize);

/// A call's texts, one after the other. Bytes, not a `str`: a request's
/// body is kept as it was sent, without checking it is UTF-8 on the
/// request path; every other text is copied from a `str` (and cut on a
/// character boundary), and each is read back as text when shown.
#[derive(Debug, Default, Clone)]
pub struct Texts(Vec<u8>);

impl Texts {
    /// Room for `bytes` of text.
    pub fn with_capacity(bytes: usize) -> Self {
        Self(Vec::with_capacity(bytes))
    }

    /// Adds `text`, cut to `max` bytes on a character boundary.
    pub fn add(&mut self, text: &str, max: usize) -> Text {
        self.add_whole(cut(text, max).as_bytes())
    }

    /// Adds `bytes` whole: the caller has bounded them (a request's parts,
    /// within the trace's room).
    pub fn add_whole(&mut self, bytes: &[u8]) -> Text {
        let from = self.0.len();
        self.0.extend_from_slice(bytes);
        self.span(from)
    }

    /// The piece from `from` to the end; its ends fit in 16 bits, as every
    /// text is within its bound (checked when compiled, above).
    fn span(&self, from: usize) -> Text {
        let clamp = |n: usize| u16::try_from(n).unwrap_or(u16::MAX);
        Text {
            from: clamp(from),
            to: clamp(self.0.len()),
        }
    }

    /// The bytes of a piece.
    pub fn bytes(&self, text: Text) -> &[u8] {
        self.0
            .get(usize::from(text.from)..usize::from(text.to))
            .unwrap_or(&[])
    }

    /// The text of a piece (a body that is not UTF-8 reads as empty: it
    /// is shown through [`Texts::bytes`]).
    pub fn get(&self, text: Text) -> &str {
        std::str::from_utf8(self.bytes(text)).unwrap_or("")
    }

    /// Bytes written.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Bytes held.
    pub fn capacity(&self) -> usize {
        self.0.capacity()
    }

    /// Empties it, keeping its room.
    pub fn clear(&mut self) {
        self.0.clear();
    }

    /// Gives back room beyond [`SLACK`].
    pub fn trim(&mut self) {
        if self.0.capacity() > self.0.len() + SLACK {
            self.0.shrink_to_fit();
        }
    }
}

/// A call the console recorded.
#[derive(Debug, Clone)]
pub struct Call {
    /// Its place in the order of recorded calls, from 1.
    pub seq: u64,
    /// When its request arrived.
    pub at: Instant,
    /// Its request id, as in its log line.
    pub id: RequestId,
    /// Every text below.
    pub texts: Texts,
    /// The route that answered, as the config the call ran under says it
    /// (name, why chosen, backends); `None` when none matched.
    pub card: Option<Arc<Card>>,
    /// Whether the call was dropped before its reply, and why.
    pub cancelled: Option<Cancelled>,
    /// Why it got `none`, or when it opened, why the backend before the
    /// one (or the screen-pop) that opened failed.
    pub reason: Option<NoneReason>,
    /// The failure's detail (for an `open`, the failure a fallback
    /// followed); empty when there was none.
    pub detail: Text,
    /// The backend that opened, or the last that failed: its place in
    /// the route's card.
    pub backend: Option<u8>,
    /// Arrival to reply.
    pub latency: Duration,
    /// The caller as sent (cut); masked whenever shown, unless the config
    /// says the console may show it.
    pub caller: Text,
    /// What the agent got, when it opened.
    pub opened: Option<Opened>,
    /// What happened, in order; a call's first steps are kept in it.
    pub steps: Steps,
    /// Whether later steps were left out to keep the trace in its bound.
    pub truncated: bool,
    /// [`Call::heap_bytes`], counted once when it is recorded.
    pub bytes: usize,
}

/// Steps a call holds without allocating: a call to one backend has three
/// (request, reply, end), four with a login.
pub const INLINE_STEPS: usize = 4;

/// A call's steps.
pub type Steps = SmallVec<[Step; INLINE_STEPS]>;

/// Why a call was dropped before its reply, as its log line and
/// `thirdparty_gateway_cancelled_total` say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cancelled {
    /// The agent's browser went away (an HTTP/1 connection closed, an
    /// HTTP/2 stream reset): 499.
    Client,
    /// A stop dropped it when `server.shutdown_grace` ran out.
    Shutdown,
}

impl Cancelled {
    /// Its name in logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Cancelled::Client => "client",
            Cancelled::Shutdown => "shutdown",
        }
    }

    /// What happened, as the log line says it.
    pub fn detail(self) -> &'static str {
        match self {
            Cancelled::Client => "the client closed the request before its reply (499)",
            Cancelled::Shutdown => "dropped unanswered: server.shutdown_grace ran out",
        }
    }
}

/// The `open` reply a call got.
#[derive(Debug, Clone, Copy)]
pub struct Opened {
    /// The event the tab opens on.
    pub event: Event,
    /// The tab's url (cut); `None` when it is the completion wrapper's
    /// link, which is not shown.
    pub url: Option<Text>,
    /// The tab's title (cut).
    pub title: Text,
    /// Whether the agent is paused while the tab is open.
    pub autopause: bool,
}

/// One step of a call; `backend` is a backend's place in the route's
/// card ([`NO_BACKEND`] for another), `at` when it happened, as the clock
/// gave it ([`Call::since`] turns it into the time since the request
/// arrived, when shown).
#[derive(Debug, Clone, Copy)]
pub enum Step {
    /// The caller directory's answer.
    Directory {
        /// Which backend's directory.
        backend: u8,
        /// What it said.
        said: Text,
    },
    /// The session a look-up used.
    Login {
        /// The backend that looked up.
        backend: u8,
        /// When the session was there.
        at: Instant,
        /// Cached, or from a login the call waited for.
        source: Source,
        /// How old the session was, in seconds.
        age_s: u32,
        /// The backend whose login it is, when shared.
        shared_from: Option<Text>,
        /// A fresh login's steps (`POST url -> HTTP 200`, no secrets) and
        /// the names of the values it yielded, a line each.
        lines: Text,
    },
    /// A request about to be sent, as `simulate` shows it (credentials
    /// and secrets redacted, body cut).
    Request {
        /// To which backend.
        backend: u8,
        /// When it was built.
        at: Instant,
        /// Method and url, headers, body: a line each.
        text: Text,
    },
    /// A request about to be sent that held no value to hide, kept in
    /// parts (its header lines are its backend's, on the route's card)
    /// and written as `simulate` writes it when its trace is shown.
    Sent {
        /// To which backend.
        backend: u8,
        /// When it was built.
        at: Instant,
        /// Its method, one of [`METHODS`].
        method: u8,
        /// Its url.
        url: Text,
        /// Its whole body, as sent (at most
        /// [`CONSOLE_BODY_BYTES`](crate::constants::CONSOLE_BODY_BYTES)).
        body: Text,
    },
    /// A reply, summarized (its body is not kept).
    Reply {
        /// From which backend.
        backend: u8,
        /// When it was read.
        at: Instant,
        /// Its status.
        status: u16,
        /// Its body's size.
        bytes: u32,
        /// Where it came from, when not the request's url (a redirect).
        url: Option<Text>,
    },
    /// The records a reply offered, which were kept or dropped (only with
    /// `console_candidates`), a line each.
    Candidates {
        /// Which backend's reply.
        backend: u8,
        /// The lines.
        lines: Text,
    },
    /// A backend's attempt ended.
    Attempt {
        /// Which backend.
        backend: u8,
        /// When it ended.
        at: Instant,
        /// How long it took.
        took: Duration,
        /// `None` when it opened.
        failed: Option<(NoneReason, Text)>,
    },
}

impl Step {
    /// Which backend it is about.
    pub fn backend(&self) -> u8 {
        match self {
            Step::Directory { backend, .. }
            | Step::Login { backend, .. }
            | Step::Request { backend, .. }
            | Step::Sent { backend, .. }
            | Step::Reply { backend, .. }
            | Step::Candidates { backend, .. }
            | Step::Attempt { backend, .. } => *backend,
        }
    }
}

impl Call {
    /// A call from `caller` (in `texts`) that arrived at `at`, with no
    /// step yet; what it got is set when it is kept.
    pub fn new(at: Instant, id: RequestId, texts: Texts, caller: Text) -> Self {
        Self {
            seq: 0,
            at,
            id,
            texts,
            card: None,
            cancelled: None,
            reason: None,
            detail: Text::default(),
            backend: None,
            latency: Duration::ZERO,
            caller,
            opened: None,
            steps: Steps::new(),
            truncated: false,
            bytes: 0,
        }
    }

    /// Makes it a new call from `caller` that arrived at `at`, reusing its
    /// texts' and steps' room (a call pushed out of the ring). Only what
    /// the steps add to is emptied: what the call got is written whole
    /// when it is kept ([`Console::record`](super::Console::record)), and
    /// no one sees it before.
    #[inline]
    pub fn reuse(&mut self, at: Instant, id: RequestId, caller: &str) {
        self.texts.clear();
        self.caller = self.texts.add(caller, CONSOLE_NAME_BYTES);
        self.at = at;
        self.id = id;
        self.card = None;
        self.steps.clear();
        self.truncated = false;
    }

    /// The memory it holds: itself (in its `Box`) and everything it owns.
    pub fn heap_bytes(&self) -> usize {
        let steps = match self.steps.spilled() {
            true => self.steps.capacity() * std::mem::size_of::<Step>(),
            false => 0,
        };
        std::mem::size_of::<Self>() + self.texts.capacity() + steps
    }

    /// Time from the request's arrival to `at` (a step's time).
    pub fn since(&self, at: Instant) -> Duration {
        at.saturating_duration_since(self.at)
    }

    /// The text of a piece of it.
    pub fn text(&self, text: Text) -> &str {
        self.texts.get(text)
    }

    /// The caller as sent.
    pub fn caller(&self) -> &str {
        self.text(self.caller)
    }

    /// The route's name.
    pub fn route(&self) -> Option<&str> {
        self.card.as_deref().map(|card| &*card.name)
    }

    /// The failure's detail.
    pub fn detail(&self) -> &str {
        self.text(self.detail)
    }

    /// The backend that opened or last failed.
    pub fn backend(&self) -> Option<&str> {
        self.backend.map(|b| self.backend_name(b))
    }

    /// `None` when it opened, else why not.
    pub fn none(&self) -> Option<NoneReason> {
        match self.opened {
            Some(_) => None,
            None => Some(self.reason.unwrap_or(NoneReason::Declined)),
        }
    }

    /// The route's backend at `index`.
    pub fn card_backend(&self, index: u8) -> Option<&crate::route::BackendCard> {
        self.card.as_deref()?.backends.get(usize::from(index))
    }

    /// The header lines of every request of a backend (as `simulate`
    /// writes them), when they are the same for every request.
    pub fn headers(&self, backend: u8) -> Option<&str> {
        self.card_backend(backend)?.headers.as_deref()
    }

    /// Whether a backend's body is a form.
    pub fn form(&self, backend: u8) -> bool {
        self.card_backend(backend).is_some_and(|b| b.form)
    }

    /// A request step's method and url.
    pub fn request_line(&self, step: &Step) -> Option<(&str, &str)> {
        match step {
            Step::Request { text, .. } => {
                let first = self.text(*text).lines().next().unwrap_or("").trim();
                Some(first.split_once(' ').unwrap_or((first, "")))
            }
            Step::Sent { method, url, .. } => {
                let method = METHODS.get(usize::from(*method)).map_or("", Method::as_str);
                Some((method, self.text(*url)))
            }
            _ => None,
        }
    }

    /// The name of a step's backend.
    pub fn backend_name(&self, index: u8) -> &str {
        self.card_backend(index).map_or("?", |b| &b.name)
    }
}

/// `text` cut to at most `max` bytes, on a character boundary.
pub fn cut(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_are_cut_on_a_character_boundary() {
        assert_eq!(cut("abc", 5), "abc");
        assert_eq!(cut("abc", 2), "ab");
        assert_eq!(cut("éé", 3), "é");
        assert_eq!(cut("éé", 1), "");
        let mut texts = Texts::default();
        let a = texts.add("hello", 3);
        let b = texts.add("é-world", 4);
        assert_eq!((texts.get(a), texts.get(b)), ("hel", "é-w"));
        // A body is kept as sent, UTF-8 or not; read as text, it is empty.
        let c = texts.add_whole(b"\xff\xfe");
        assert_eq!(
            (texts.bytes(c), texts.get(c), texts.len()),
            (&b"\xff\xfe"[..], "", 9)
        );
    }
}
