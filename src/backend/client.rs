//! The HTTP client one backend uses: pooled keep-alive connections (so the
//! hot path pays no TCP or TLS setup), HTTP/1.1 or HTTP/2 by ALPN, TLS
//! verified by rustls, redirects only when configured, and a bounded read of
//! the reply.

use std::time::Duration;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, LOCATION, USER_AGENT};
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use url::Url;

use super::request::{BackendRequest, UA};
use super::Failure;
use crate::outcome::NoneReason;

/// How long an unused pooled connection is kept.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// A pooled client for one backend. Cloning shares the pool.
#[derive(Clone)]
pub struct Client {
    inner: hyper_util::client::legacy::Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
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
}

impl Client {
    /// A client with its own connection pool.
    pub fn new(
        tls: rustls::ClientConfig,
        connect_timeout: Duration,
        follow_redirects: u8,
        max_response_bytes: usize,
    ) -> Self {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(connect_timeout));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);
        let inner = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .build(https);
        Self {
            inner,
            follow_redirects,
            max_response_bytes,
        }
    }

    /// Sends a request, following redirects only as configured. A redirect
    /// that is not followed comes back as the reply, for the caller to judge.
    pub async fn send(&self, mut req: BackendRequest) -> Result<RawReply, Failure> {
        let response = self.exchange(&mut req).await?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = self.read_body(response).await?;
        Ok(RawReply {
            status,
            headers,
            body,
            url: req.url,
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
        };
        let response = self.exchange(&mut req).await?;
        Ok((response.status(), response.headers().clone()))
    }

    /// One request and the redirects it is allowed to follow; `req` ends as
    /// the request that got the final response.
    async fn exchange(
        &self,
        req: &mut BackendRequest,
    ) -> Result<http::Response<hyper::body::Incoming>, Failure> {
        let mut hops = 0;
        loop {
            let response = self
                .inner
                .request(to_hyper(req)?)
                .await
                .map_err(|e| classify(&e))?;
            let status = response.status();
            let next = response
                .headers()
                .get(LOCATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| req.url.join(v).ok());
            match next {
                Some(next) if status.is_redirection() && hops < self.follow_redirects => {
                    hops += 1;
                    redirect(req, status, next);
                }
                _ => return Ok(response),
            }
        }
    }

    async fn read_body(
        &self,
        response: http::Response<hyper::body::Incoming>,
    ) -> Result<Bytes, Failure> {
        let limit = self.max_response_bytes;
        let declared = response
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if let Some(n) = declared.filter(|n| *n > limit as u64) {
            return Err(Failure::new(
                NoneReason::TooLarge,
                format!("reply declares {n} bytes, over max_response_bytes = {limit}"),
            ));
        }
        match Limited::new(response.into_body(), limit).collect().await {
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

/// Rewrites a request to follow a redirect as browsers do: 303, and 301/302
/// after a POST, become a GET without body; credentials never leave the origin.
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

fn to_hyper(req: &BackendRequest) -> Result<Request<Full<Bytes>>, Failure> {
    let mut builder = Request::builder()
        .method(req.method.clone())
        .uri(req.url.as_str());
    if let Some(headers) = builder.headers_mut() {
        headers.extend(req.headers.clone());
    }
    builder.body(Full::new(req.body.clone())).map_err(|e| {
        Failure::new(
            NoneReason::Template,
            format!("cannot build the request: {e}"),
        )
    })
}

/// Names what went wrong talking to the backend, with the whole cause chain.
fn classify(err: &hyper_util::client::legacy::Error) -> Failure {
    let reason = if err.is_connect() {
        NoneReason::Connect
    } else {
        NoneReason::Io
    };
    Failure::new(reason, chain(err))
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
