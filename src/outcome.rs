//! Why a request ended as it did. A `none` reason is a small enum so that log
//! lines, metrics labels and tests all name it the same way.

use std::fmt;

/// Why the gateway answered `{"action":"none"}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NoneReason {
    /// No route's `when` matched the payload.
    NoRoute,
    /// A template or condition failed to render against this payload.
    Template,
    /// The reply was refused (e.g. relative or `javascript:` url, bad event).
    InvalidReply,
    /// The backend could not be connected to (refused, unreachable, TLS).
    Connect,
    /// The connection failed mid-exchange (reset, closed early).
    Io,
    /// The backend did not answer within its `timeout_ms`.
    Timeout,
    /// The request's `deadline_ms` ran out.
    Deadline,
    /// The backend answered a status the config does not accept.
    Status,
    /// The backend redirected and `follow_redirects` did not allow it.
    Redirect,
    /// The reply was over `max_response_bytes`.
    TooLarge,
    /// The reply could not be parsed in its declared format.
    BadReply,
    /// The backend was reached and said no (no url, `open_when` false, `none`).
    Declined,
    /// The backend's `max_concurrency` calls were already in flight.
    Busy,
    /// The agent's xuc token is missing, invalid, or could not be checked.
    Token,
    /// The backend's login (or OAuth2 token request) failed, timed out, or
    /// is in its backoff after a failure.
    Login,
    /// The CRM's candidates hold no record with the caller's phone number
    /// (`records`/`phones`), or the caller is not a number to compare.
    NoMatch,
}

impl NoneReason {
    /// Every reason, in declaration order ([`NoneReason::index`]).
    pub const ALL: [NoneReason; 16] = [
        NoneReason::NoRoute,
        NoneReason::Template,
        NoneReason::InvalidReply,
        NoneReason::Connect,
        NoneReason::Io,
        NoneReason::Timeout,
        NoneReason::Deadline,
        NoneReason::Status,
        NoneReason::Redirect,
        NoneReason::TooLarge,
        NoneReason::BadReply,
        NoneReason::Declined,
        NoneReason::Busy,
        NoneReason::Token,
        NoneReason::Login,
        NoneReason::NoMatch,
    ];

    /// Its position in [`NoneReason::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// The label used in logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            NoneReason::NoRoute => "no_route",
            NoneReason::Template => "template",
            NoneReason::InvalidReply => "invalid_reply",
            NoneReason::Connect => "connect",
            NoneReason::Io => "io",
            NoneReason::Timeout => "timeout",
            NoneReason::Deadline => "deadline",
            NoneReason::Status => "status",
            NoneReason::Redirect => "redirect",
            NoneReason::TooLarge => "too_large",
            NoneReason::BadReply => "bad_reply",
            NoneReason::Declined => "declined",
            NoneReason::Busy => "busy",
            NoneReason::Token => "token",
            NoneReason::Login => "login",
            NoneReason::NoMatch => "no_match",
        }
    }
}

impl fmt::Display for NoneReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_lists_each_reason_at_its_index() {
        for (i, reason) in NoneReason::ALL.iter().enumerate() {
            assert_eq!(reason.index(), i, "{reason}");
        }
    }
}
