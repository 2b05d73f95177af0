//! Backends: the legacy CRMs behind the gateway. A call to one is three
//! steps, kept apart so `simulate` can show each: build the request from the
//! payload ([`request`]), send it ([`client`]), normalize the reply into the
//! contract ([`reply`]). Every failure is a [`Failure`] naming a `none` reason.

pub mod client;
pub mod login;
mod pool;
pub mod reply;
pub mod request;
pub mod shown;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

use crate::metrics::Handles;
use crate::outcome::NoneReason;

pub use client::{Client, RawReply};
pub use login::Login;
pub use reply::ReplySpec;
pub use request::{BackendRequest, RequestSpec};

/// One `[backends.NAME]`, validated and ready.
#[derive(Debug)]
pub struct Backend {
    /// The name routes refer to it by.
    pub name: Box<str>,
    /// How to build its requests.
    pub request: RequestSpec,
    /// How to read its replies.
    pub reply: ReplySpec,
    /// Its pooled client.
    pub client: Client,
    /// Time allowed for one call, send to reply read; never over the deadline.
    pub timeout: Duration,
    /// Calls in flight at once; over it the agent gets `none` at once rather
    /// than a queue behind a CRM that is already slow.
    pub limit: Option<Arc<Semaphore>>,
    /// Its metric series, found on first use.
    pub metrics: Handles,
    /// The login its look-ups need first, with the cached session.
    pub login: Option<Login>,
    /// Its caller directory: numbers answered from the gateway's own index.
    pub directory: Option<crate::directory::Directory>,
}

/// Why a backend call ended in `none`, with the detail for the log line.
#[derive(Debug, Clone)]
pub struct Failure {
    /// The reason, as logs and metrics name it.
    pub reason: NoneReason,
    /// What exactly happened (never holds secrets).
    pub detail: String,
}

impl Failure {
    /// A failure with a reason and a human detail.
    pub fn new(reason: NoneReason, detail: impl fmt::Display) -> Self {
        Self {
            reason,
            detail: detail.to_string(),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.reason, self.detail)
    }
}
