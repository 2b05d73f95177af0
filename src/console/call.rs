//! One recorded call, as the console keeps it: what was decided and the
//! steps that led there, in compact form. Every text in it is cut to a
//! bound, so a call's size is bounded whatever the CRM or the payload
//! sends ([`Call::heap_bytes`] ≤ [`CONSOLE_CALL_MAX_BYTES`]). What is
//! stored is what the gateway saw; secrets are redacted as the steps are
//! taken, the caller is masked when the call is shown.

use std::time::Duration;

use tokio::time::Instant;

use crate::backend::login::Source;
use crate::contract::Event;
use crate::outcome::NoneReason;
use crate::request_id::RequestId;

use super::record::{MAX_BACKENDS, MAX_STEPS};
use crate::constants::{
    CONSOLE_CALL_MAX_BYTES, CONSOLE_NAME_BYTES, CONSOLE_TEXT_BYTES, CONSOLE_TRACE_BYTES,
};

/// The most a call can hold, from the bounds of its parts: its own size in
/// its `Arc`, its steps and backends lists at their caps, the trace's text
/// (backend names included), its three long texts (detail, url, title)
/// and three names (caller, route, backend).
const WORST: usize = std::mem::size_of::<Call>()
    + 2 * std::mem::size_of::<usize>()
    + MAX_STEPS * std::mem::size_of::<Step>()
    + MAX_BACKENDS * std::mem::size_of::<Box<str>>()
    + CONSOLE_TRACE_BYTES
    + 3 * CONSOLE_TEXT_BYTES
    + 3 * CONSOLE_NAME_BYTES;

const _: () = assert!(WORST <= CONSOLE_CALL_MAX_BYTES);

/// A call the console recorded.
#[derive(Debug)]
pub struct Call {
    /// Its place in the order of recorded calls, from 1.
    pub seq: u64,
    /// When its request arrived.
    pub at: Instant,
    /// Its request id, as in its log line.
    pub id: RequestId,
    /// The route that answered; `None` when none matched.
    pub route: Option<Box<str>>,
    /// Why it got `none`, or when it opened, why the backend before the
    /// one (or the screen-pop) that opened failed.
    pub reason: Option<NoneReason>,
    /// The failure's detail (for an `open`, the failure a fallback
    /// followed); empty when there was none.
    pub detail: Box<str>,
    /// The backend that opened, or the last that failed.
    pub backend: Option<Box<str>>,
    /// Arrival to reply.
    pub latency: Duration,
    /// The caller as sent (cut); masked whenever shown, unless the config
    /// says the console may show it.
    pub caller: Box<str>,
    /// What the agent got, when it opened.
    pub opened: Option<Opened>,
    /// The backends the steps name, in the order they were first seen.
    pub backends: Vec<Box<str>>,
    /// What happened, in order.
    pub steps: Vec<Step>,
    /// Whether later steps were left out to keep the trace in its bound.
    pub truncated: bool,
    /// [`Call::heap_bytes`], counted once when it is recorded.
    pub bytes: usize,
}

/// The `open` reply a call got.
#[derive(Debug)]
pub struct Opened {
    /// The event the tab opens on.
    pub event: Event,
    /// The tab's url (cut); `None` when it is the completion wrapper's
    /// link, which is not shown.
    pub url: Option<Box<str>>,
    /// The tab's title (cut).
    pub title: Box<str>,
    /// Whether the agent is paused while the tab is open.
    pub autopause: bool,
}

/// A short time (since a request arrived, or a step's length) in 4 bytes:
/// microseconds, up to 71 minutes (longer reads as 71 minutes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Micros(u32);

impl Micros {
    /// `d`, saturated.
    pub fn of(d: Duration) -> Self {
        Self(u32::try_from(d.as_micros()).unwrap_or(u32::MAX))
    }

    /// As a duration.
    pub fn get(self) -> Duration {
        Duration::from_micros(u64::from(self.0))
    }
}

/// One step of a call; `backend` indexes [`Call::backends`], `at` is the
/// time since the request arrived.
#[derive(Debug)]
pub enum Step {
    /// The caller directory's answer.
    Directory {
        /// Which backend's directory.
        backend: u8,
        /// What it said.
        said: Box<str>,
    },
    /// The session a look-up used.
    Login {
        /// The backend that looked up.
        backend: u8,
        /// When the session was there.
        at: Micros,
        /// Cached, or from a login the call waited for.
        source: Source,
        /// How old the session was, in seconds.
        age_s: u32,
        /// The backend whose login it is, when shared.
        shared_from: Option<Box<str>>,
        /// A fresh login's steps (`POST url -> HTTP 200`, no secrets) and
        /// the names of the values it yielded, a line each.
        lines: Box<str>,
    },
    /// A request about to be sent, as `simulate` shows it (credentials
    /// and secrets redacted, body cut).
    Request {
        /// To which backend.
        backend: u8,
        /// When it was built.
        at: Micros,
        /// Method and url, headers, body: a line each.
        text: Box<str>,
    },
    /// A reply, summarized (its body is not kept).
    Reply {
        /// From which backend.
        backend: u8,
        /// When it was read.
        at: Micros,
        /// Its status.
        status: u16,
        /// Its body's size.
        bytes: usize,
        /// Where it came from, when not the request's url (a redirect).
        url: Option<Box<str>>,
    },
    /// The records a reply offered, which were kept or dropped (only with
    /// `console_candidates`), a line each.
    Candidates {
        /// Which backend's reply.
        backend: u8,
        /// The lines.
        lines: Box<str>,
    },
    /// A backend's attempt ended.
    Attempt {
        /// Which backend.
        backend: u8,
        /// When it ended.
        at: Micros,
        /// How long it took.
        took: Micros,
        /// `None` when it opened.
        failed: Option<(NoneReason, Box<str>)>,
    },
}

impl Step {
    /// The text it holds, counted against the trace's bound.
    pub fn text_bytes(&self) -> usize {
        match self {
            Step::Directory { said, .. } => said.len(),
            Step::Login {
                shared_from, lines, ..
            } => lines.len() + shared_from.as_ref().map_or(0, |s| s.len()),
            Step::Request { text, .. } => text.len(),
            Step::Reply { url, .. } => url.as_ref().map_or(0, |u| u.len()),
            Step::Candidates { lines, .. } => lines.len(),
            Step::Attempt { failed, .. } => failed.as_ref().map_or(0, |(_, d)| d.len()),
        }
    }

    /// Which backend it is about.
    pub fn backend(&self) -> u8 {
        match self {
            Step::Directory { backend, .. }
            | Step::Login { backend, .. }
            | Step::Request { backend, .. }
            | Step::Reply { backend, .. }
            | Step::Candidates { backend, .. }
            | Step::Attempt { backend, .. } => *backend,
        }
    }
}

impl Call {
    /// The memory it holds: itself and everything it owns.
    pub fn heap_bytes(&self) -> usize {
        let opened = self
            .opened
            .as_ref()
            .map_or(0, |o| o.url.as_ref().map_or(0, |u| u.len()) + o.title.len());
        std::mem::size_of::<Self>()
            + self.route.as_ref().map_or(0, |r| r.len())
            + self.detail.len()
            + self.backend.as_ref().map_or(0, |b| b.len())
            + self.caller.len()
            + opened
            + self.backends.capacity() * std::mem::size_of::<Box<str>>()
            + self.backends.iter().map(|b| b.len()).sum::<usize>()
            + self.steps.capacity() * std::mem::size_of::<Step>()
            + self.steps.iter().map(Step::text_bytes).sum::<usize>()
    }

    /// `None` when it opened, else why not.
    pub fn none(&self) -> Option<NoneReason> {
        match self.opened {
            Some(_) => None,
            None => Some(self.reason.unwrap_or(NoneReason::Declined)),
        }
    }

    /// The name of a step's backend.
    pub fn backend_name(&self, index: u8) -> &str {
        self.backends.get(usize::from(index)).map_or("?", |b| b)
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

/// `text` cut to `max` bytes, owned.
pub fn boxed(text: &str, max: usize) -> Box<str> {
    cut(text, max).into()
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
    }
}
