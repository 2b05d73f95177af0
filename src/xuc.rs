//! The agent token check. Newer XucMgt sends the agent's xuc JWT as
//! `user.token`; when `[xuc]` is configured, the gateway asks the xuc server
//! whether the token is valid (`GET /xuc/api/2.0/auth/check` with
//! `Authorization: Bearer`) before any CRM look-up, so only logged-in agents
//! can make the gateway send caller data to a CRM. Valid tokens are
//! remembered for a short while (by hash: the cache never holds a token).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderValue, Method};
use tokio::time::Instant;
use url::Url;

use crate::backend::{BackendRequest, Client, Failure};
use crate::outcome::NoneReason;
use crate::payload::Secret;

/// Tokens remembered at most; expired ones are dropped when it is full.
const CACHE_MAX: usize = 10_000;

/// Checks agent tokens against the xuc server.
pub struct XucCheck {
    url: Url,
    client: Client,
    timeout: Duration,
    ttl: Duration,
    valid_until: Mutex<HashMap<[u8; 32], Instant>>,
}

impl std::fmt::Debug for XucCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XucCheck")
            .field("url", &self.url.as_str())
            .finish_non_exhaustive()
    }
}

impl XucCheck {
    /// A checker asking `url` (base and check path joined).
    pub fn new(url: Url, client: Client, timeout: Duration, ttl: Duration) -> Self {
        Self {
            url,
            client,
            timeout,
            ttl,
            valid_until: Mutex::new(HashMap::new()),
        }
    }

    /// `Ok` when the token is valid; otherwise why the agent gets `none`.
    pub async fn check(&self, token: Option<&Secret>, deadline: Instant) -> Result<(), Failure> {
        let token = token
            .map(Secret::expose)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                Failure::new(
                    NoneReason::Token,
                    "no user.token in the payload ([xuc] requires one)",
                )
            })?;
        let key = digest(token);
        let now = Instant::now();
        if self.cached(&key, now) {
            return Ok(());
        }
        let mut headers = HeaderMap::new();
        let mut bearer = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
            Failure::new(NoneReason::Token, "user.token cannot be sent in a header")
        })?;
        bearer.set_sensitive(true);
        headers.insert(AUTHORIZATION, bearer);
        headers.insert(
            http::header::ACCEPT,
            HeaderValue::from_static("application/json"),
        );
        let request = BackendRequest {
            method: Method::GET,
            url: self.url.clone(),
            headers,
            body: Bytes::new(),
            carries_token: true,
            confidential: true,
            follows_redirects: true,
            hidden: Vec::new(),
            url_hidden: false,
        };
        let budget = self.timeout.min(deadline.saturating_duration_since(now));
        let reply = tokio::time::timeout(budget, self.client.send(request))
            .await
            .map_err(|_| {
                Failure::new(
                    NoneReason::Token,
                    format!(
                        "token check: no answer from xuc within {} ms",
                        budget.as_millis()
                    ),
                )
            })?
            .map_err(|f| Failure::new(NoneReason::Token, format!("token check failed: {f}")))?;
        match reply.status.as_u16() {
            200..=299 => {
                self.remember(key, Instant::now() + self.ttl);
                Ok(())
            }
            401 | 403 => Err(Failure::new(
                NoneReason::Token,
                format!(
                    "xuc refused the agent's token (HTTP {})",
                    reply.status.as_u16()
                ),
            )),
            other => Err(Failure::new(
                NoneReason::Token,
                format!("token check failed: xuc answered HTTP {other}"),
            )),
        }
    }

    fn cached(&self, key: &[u8; 32], now: Instant) -> bool {
        self.valid_until
            .lock()
            .map(|c| c.get(key).is_some_and(|until| *until > now))
            .unwrap_or(false)
    }

    fn remember(&self, key: [u8; 32], until: Instant) {
        if let Ok(mut cache) = self.valid_until.lock() {
            if cache.len() >= CACHE_MAX {
                let now = Instant::now();
                cache.retain(|_, until| *until > now);
                if cache.len() >= CACHE_MAX {
                    cache.clear();
                }
            }
            cache.insert(key, until);
        }
    }
}

fn digest(token: &str) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}
