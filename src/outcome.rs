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
    /// The rendered reply was refused (e.g. relative or `javascript:` url).
    InvalidReply,
}

impl NoneReason {
    /// The label used in logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            NoneReason::NoRoute => "no_route",
            NoneReason::Template => "template",
            NoneReason::InvalidReply => "invalid_reply",
        }
    }
}

impl fmt::Display for NoneReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
