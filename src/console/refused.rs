//! Requests refused before a route could take them: a POST or a preflight
//! from an origin `cors.allow_origins` does not list, to a path without
//! routes, with the wrong content type, a body too large or a payload that
//! breaks the contract. The agent's tab stays closed and the recent calls
//! show nothing, so the console keeps them apart, in a ring of their own:
//! a flood of them (anyone can send a bad request) never pushes a call
//! out, and what they hold is bounded. What is kept of one is what its
//! log line says (when, method, path, origin, status, the error), each
//! text cut; never the payload. A payload error names the field at fault
//! and may quote its value (`caller: invalid type: integer
//! `0612345678`...`), so its numbers are masked as callers are, unless the
//! config lets the console show callers.

use std::collections::VecDeque;

use tokio::time::Instant;

use super::call::cut;
use crate::constants::{CONSOLE_NAME_BYTES, CONSOLE_TEXT_BYTES};
use crate::request_id::RequestId;

/// Refused requests kept, the newest.
pub const KEPT: usize = 50;

/// One refused request.
#[derive(Debug, Clone)]
pub struct Refusal {
    /// When it arrived.
    pub at: Instant,
    /// Its request id, as in its log line.
    pub id: RequestId,
    /// `POST` or `OPTIONS`.
    pub method: &'static str,
    /// Its path (cut).
    pub path: Box<str>,
    /// Its `Origin` header (cut), `-` when it had none.
    pub origin: Box<str>,
    /// The status it got.
    pub status: u16,
    /// Why, as its log line says it (cut, numbers of a payload masked).
    pub error: Box<str>,
}

/// The last [`KEPT`] refused requests, and how many there were.
#[derive(Debug, Default)]
pub struct Refused {
    kept: VecDeque<Refusal>,
    since_start: u64,
}

impl Refused {
    /// Keeps one, pushing the oldest out when full.
    pub fn push(&mut self, refusal: Refusal) {
        if self.kept.len() == KEPT {
            self.kept.pop_front();
        }
        self.kept.push_back(refusal);
        self.since_start = self.since_start.saturating_add(1);
    }

    /// The kept ones, newest first.
    pub fn newest_first(&self) -> impl Iterator<Item = &Refusal> {
        self.kept.iter().rev()
    }

    /// All refused since the start, kept or not.
    pub fn since_start(&self) -> u64 {
        self.since_start
    }
}

/// What a request's log line says of it, as the console keeps it.
#[derive(Debug, Clone, Copy)]
pub struct Seen<'a> {
    /// When it arrived.
    pub at: Instant,
    /// Its request id.
    pub id: RequestId,
    /// Its method; only `POST` and `OPTIONS` are kept (the others are
    /// not XucMgt's).
    pub method: &'a str,
    /// Its path.
    pub path: &'a str,
    /// Its `Origin` header, `-` when none.
    pub origin: &'a str,
    /// The status it got.
    pub status: u16,
    /// Why.
    pub error: &'a str,
    /// Whether the error is about the payload's content (its numbers are
    /// masked).
    pub payload: bool,
}

impl Seen<'_> {
    /// The refusal to keep, `None` for a method XucMgt does not send.
    pub fn refusal(&self, show_caller: bool) -> Option<Refusal> {
        let method = match self.method {
            "POST" => "POST",
            "OPTIONS" => "OPTIONS",
            _ => return None,
        };
        let error = cut(self.error, CONSOLE_TEXT_BYTES);
        let error = match self.payload && !show_caller {
            true => numbers_masked(error),
            false => error.to_owned(),
        };
        Some(Refusal {
            at: self.at,
            id: self.id,
            method,
            path: cut(self.path, CONSOLE_NAME_BYTES).into(),
            origin: cut(self.origin, CONSOLE_NAME_BYTES).into(),
            status: self.status,
            error: error.into(),
        })
    }
}

/// `text` with every run of three digits or more masked as a caller is,
/// all but its last two digits.
fn numbers_masked(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut run = String::new();
    let flush = |run: &mut String, out: &mut String| {
        if run.len() >= 3 {
            out.push_str(&super::mask::caller(run));
        } else {
            out.push_str(run);
        }
        run.clear();
    };
    for c in text.chars() {
        if c.is_ascii_digit() {
            run.push(c);
        } else {
            flush(&mut run, &mut out);
            out.push(c);
        }
    }
    flush(&mut run, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen<'a>(method: &'a str, error: &'a str, payload: bool) -> Seen<'a> {
        Seen {
            at: Instant::now(),
            id: RequestId::next(),
            method,
            path: "/",
            origin: "https://xuc.example.org",
            status: 400,
            error,
            payload,
        }
    }

    #[test]
    fn a_payload_error_keeps_its_numbers_masked() {
        let error = "invalid payload: caller: invalid type: integer `612345678`, expected a string";
        let kept = seen("POST", error, true).refusal(false).unwrap();
        assert_eq!(
            &*kept.error,
            "invalid payload: caller: invalid type: integer `*******78`, expected a string"
        );
        // Shown whole where the config lets the console show callers, and
        // never masked when not about the payload ("over 65536 bytes").
        let kept = seen("POST", error, true).refusal(true).unwrap();
        assert_eq!(&*kept.error, error);
        let kept = seen("POST", "request body over 65536 bytes", false)
            .refusal(false)
            .unwrap();
        assert_eq!(&*kept.error, "request body over 65536 bytes");
        assert!(seen("GET", error, true).refusal(false).is_none());
    }

    #[test]
    fn the_ring_keeps_the_newest_and_counts_all() {
        let mut refused = Refused::default();
        let long = "é".repeat(10_000);
        for _ in 0..(KEPT + 7) {
            let mut s = seen("OPTIONS", &long, false);
            s.path = &long;
            s.origin = &long;
            refused.push(s.refusal(false).unwrap());
        }
        assert_eq!(refused.since_start(), KEPT as u64 + 7);
        assert_eq!(refused.newest_first().count(), KEPT);
        let first = refused.newest_first().next().unwrap();
        assert!(first.path.len() <= CONSOLE_NAME_BYTES && first.origin.len() <= CONSOLE_NAME_BYTES);
        assert!(first.error.len() <= CONSOLE_TEXT_BYTES);
    }
}
