//! The HTTP client one backend uses: pooled keep-alive connections (so the
//! hot path pays no TCP or TLS setup), HTTP/1.1 or HTTP/2 by ALPN, TLS
//! verified by rustls, redirects only when configured, and a bounded read of
//! the reply.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, LOCATION, USER_AGENT};
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use url::Url;

use super::pool::{Lent, Pool, PoolError};
use super::request::{BackendRequest, UA};
use super::Failure;
use crate::outcome::NoneReason;

/// A pooled client for one backend. Cloning shares the pool.
#[derive(Clone)]
pub struct Client {
    pool: Arc<Pool>,
    follow_redirects: u8,
    max_response_bytes: usize,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("follow_redirects", &self.follow_redirects)
            .field("max_response_bytes", &self.max_response_bytes)
            .finish_non_exhaustive()
    }
}

/// What a backend answered, read in full within the size limit.
#[derive(Debug, Clone)]
pub struct RawReply {
    /// The HTTP status.
    pub status: StatusCode,
    /// The reply's headers.
    pub headers: HeaderMap,
    /// The body.
    pub body: Bytes,
    /// The URL that answered (differs from the request's after a redirect).
    pub url: Url,
    /// Whether a redirect was followed to get it (the ops console then
    /// says where the reply came from).
    pub redirected: bool,
}

impl Client {
    /// A client with its own connection pool.
    pub fn new(
        tls: rustls::ClientConfig,
        connect_timeout: Duration,
        follow_redirects: u8,
        max_response_bytes: usize,
    ) -> Self {
        Self {
            pool: Arc::new(Pool::new(tls, connect_timeout)),
            follow_redirects,
            max_response_bytes,
        }
    }

    /// The largest reply it reads; a larger one is refused.
    pub fn max_response_bytes(&self) -> usize {
        self.max_response_bytes
    }

    /// Sends a request, following redirects only as configured. A redirect
    /// that is not followed comes back as the reply, for the caller to judge.
    pub async fn send(&self, mut req: BackendRequest) -> Result<RawReply, Failure> {
        let (response, lent, redirected) = self.exchange(&mut req).await?;
        let (parts, body) = response.into_parts();
        let body = self.read_body(&parts.headers, body).await?;
        self.pool.checkin(lent);
        Ok(RawReply {
            status: parts.status,
            headers: parts.headers,
            body,
            url: req.url,
            redirected,
        })
    }

    /// GETs `url` and returns the final status and headers without reading
    /// the body (for checks that only need headers, e.g. framing rules).
    pub async fn headers_of(&self, url: Url) -> Result<(StatusCode, HeaderMap), Failure> {
        let mut headers = HeaderMap::new();
        headers.insert(USER_AGENT, UA);
        let mut req = BackendRequest {
            method: Method::GET,
            url,
            headers,
            body: Bytes::new(),
            carries_token: false,
            confidential: false,
            follows_redirects: true,
            hidden: Vec::new(),
            url_hidden: false,
        };
        let (response, _closed_unread, _) = self.exchange(&mut req).await?;
        Ok((response.status(), response.headers().clone()))
    }

    /// One request and the redirects it is allowed to follow; `req` ends as
    /// the request that got the final response, and whether it is another
    /// than the first is said.
    async fn exchange(
        &self,
        req: &mut BackendRequest,
    ) -> Result<(http::Response<hyper::body::Incoming>, Lent, bool), Failure> {
        let mut hops = 0;
        let max_hops = if req.follows_redirects {
            self.follow_redirects
        } else {
            0
        };
        // Where the backend's own url is, when a redirect goes to a
        // link-local address (looked up only then).
        let mut first: Option<Url> = None;
        loop {
            // The last hop's request is not needed again: its headers move.
            let last_hop = hops == max_hops;
            let (response, lent) = self
                .pool
                .send(to_hyper(req, last_hop), &req.url)
                .await
                .map_err(classify)?;
            let status = response.status();
            let next = response
                .headers()
                .get(LOCATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| req.url.join(v).ok());
            match next {
                Some(next) if status.is_redirection() && hops < max_hops => {
                    let elsewhere = next.origin() != req.url.origin();
                    let carried = if req.carries_token {
                        Some("the agent's token (forward_token)")
                    } else if req.confidential {
                        Some("a secret or a session value in its url or body")
                    } else {
                        None
                    };
                    if let (true, Some(what)) = (elsewhere, carried) {
                        return Err(Failure::new(
                            NoneReason::Redirect,
                            format!(
                                "redirect to another origin ({}) not followed: the request carries {what}",
                                next.origin().ascii_serialization()
                            ),
                        ));
                    }
                    let first = first.get_or_insert_with(|| req.url.clone());
                    if link_local(&next).await && !link_local(first).await {
                        return Err(Failure::new(
                            NoneReason::Redirect,
                            format!(
                                "redirect to a link-local address ({}) not followed: cloud metadata services live there",
                                next.origin().ascii_serialization()
                            ),
                        ));
                    }
                    hops += 1;
                    redirect(req, status, next);
                }
                _ => return Ok((response, lent, hops > 0)),
            }
        }
    }

    async fn read_body(
        &self,
        headers: &HeaderMap,
        body: hyper::body::Incoming,
    ) -> Result<Bytes, Failure> {
        let limit = self.max_response_bytes;
        let declared = headers
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if let Some(n) = declared.filter(|n| *n > limit as u64) {
            return Err(Failure::new(
                NoneReason::TooLarge,
                format!("reply declares {n} bytes, over max_response_bytes = {limit}"),
            ));
        }
        match Limited::new(body, limit).collect().await {
            Ok(collected) => Ok(collected.to_bytes()),
            Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => Err(Failure::new(
                NoneReason::TooLarge,
                format!("reply over max_response_bytes = {limit}"),
            )),
            Err(e) => Err(Failure::new(
                NoneReason::Io,
                format!("reading the reply failed: {}", chain(e.as_ref())),
            )),
        }
    }
}

/// Whether `url`'s host is, or resolves to, a link-local address
/// (`169.254.0.0/16`, where cloud metadata services answer, `fe80::/10`):
/// a CRM redirecting there would make the gateway fetch them. A name is
/// looked up (bounded) only here, on a redirect.
async fn link_local(url: &Url) -> bool {
    use std::net::IpAddr;
    let local = |ip: IpAddr| match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => {
            (v6.segments()[0] & 0xffc0) == 0xfe80
                || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_link_local())
        }
    };
    match url.host() {
        Some(url::Host::Ipv4(ip)) => local(IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => local(IpAddr::V6(ip)),
        Some(url::Host::Domain(name)) => {
            let port = url.port_or_known_default().unwrap_or(80);
            let lookup = tokio::net::lookup_host((name, port));
            match tokio::time::timeout(Duration::from_secs(2), lookup).await {
                Ok(Ok(mut addrs)) => addrs.any(|a| local(a.ip())),
                // Unresolvable: the connection will fail on its own.
                _ => false,
            }
        }
        None => false,
    }
}

/// Rewrites a request to follow a redirect as browsers do: 303, and 301/302
/// after a POST, become a GET without body; credentials never leave the
/// origin (a request carrying the agent's token never gets here).
fn redirect(req: &mut BackendRequest, status: StatusCode, next: Url) {
    let to_get = status == StatusCode::SEE_OTHER
        || (matches!(status, StatusCode::MOVED_PERMANENTLY | StatusCode::FOUND)
            && req.method == Method::POST);
    if to_get {
        req.method = Method::GET;
        req.body = Bytes::new();
        req.headers.remove(CONTENT_TYPE);
    }
    if next.origin() != req.url.origin() {
        req.headers.remove(AUTHORIZATION);
        let sensitive: Vec<_> = req
            .headers
            .iter()
            .filter(|(_, v)| v.is_sensitive())
            .map(|(k, _)| k.clone())
            .collect();
        for name in sensitive {
            req.headers.remove(name);
        }
    }
    req.url = next;
}

/// The request as hyper sends it; the pool sets its target and `Host`.
/// `last` moves the headers out instead of copying them: only a redirect
/// needs them again.
fn to_hyper(req: &mut BackendRequest, last: bool) -> Request<Full<Bytes>> {
    let mut out = Request::new(Full::new(req.body.clone()));
    *out.method_mut() = req.method.clone();
    *out.headers_mut() = if last {
        std::mem::take(&mut req.headers)
    } else {
        req.headers.clone()
    };
    out
}

/// Names what went wrong talking to the backend, with the whole cause chain.
fn classify(err: PoolError) -> Failure {
    match err {
        PoolError::Connect(detail) => Failure::new(NoneReason::Connect, detail),
        PoolError::Io(err) => Failure::new(NoneReason::Io, chain(&err)),
    }
}

fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn link_local_addresses_are_known_by_their_literals() {
        for (url, want) in [
            ("http://169.254.169.254/latest/meta-data/", true),
            ("http://169.254.0.1:8080/", true),
            ("http://[fe80::1]/", true),
            ("http://[febf::1]/", true),
            ("http://[::ffff:169.254.169.254]/", true),
            ("http://127.0.0.1/", false),
            ("http://10.0.0.1/", false),
            ("http://[fec0::1]/", false),
            ("http://[::1]/", false),
        ] {
            let url = Url::parse(url).unwrap();
            assert_eq!(link_local(&url).await, want, "{url}");
        }
    }
}
