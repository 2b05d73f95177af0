//! One request, start to finish: CORS decision, method and path, body read
//! under limits, payload parse, route choice, reply, and one log line that
//! says what happened and why.

use tokio::time::Instant;

use bytes::Bytes;
use http::header::{ACCEPT, ALLOW, CONTENT_LENGTH, CONTENT_TYPE, ORIGIN, VARY};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;

use crate::accept;
use crate::answer::{answer, Call, Observer, Quiet};
use crate::backend::Failure;
use crate::console::{Cancelled, Ending, Recorder};
use crate::contract::{Payload, Reply};
use crate::cors::{OriginCheck, ALLOWED_METHODS};
use crate::gateway::Gateway;
use crate::http_error::HttpError;
use crate::outcome::NoneReason;
use crate::pages;
use crate::request_id::{self, RequestId};
use crate::route::Route;
use crate::short_text::Short;
use crate::wrap::PageOutcome;

const JSON: HeaderValue = HeaderValue::from_static("application/json");
const NONE_BODY: &[u8] = br#"{"action":"none"}"#;
/// A 405's body depends on `Accept` (HTML page or JSON), caches must know.
const ACCEPT_VARY: HeaderValue = HeaderValue::from_static("accept");

/// What became of a request, for the reply and the log line.
enum Handled<'g> {
    Preflight,
    /// A plain `OPTIONS` (no preflight headers): lists the methods.
    Options,
    Reply {
        reply: Reply,
        route: Option<&'g Route>,
        backend: Option<Box<str>>,
        failure: Option<Failure>,
    },
}

/// Answers one request. Never fails: every problem becomes a status code.
/// Every log line written for it carries its request id (an `id` field, not
/// a span, which costs more per request), which the reply carries in
/// `X-Request-Id`. Its deadline and logged latency count from `arrived`,
/// when the request's first byte was read: a client waits from then,
/// however busy the workers.
pub async fn handle(
    req: Request<Incoming>,
    gateway: &Gateway,
    arrived: Instant,
) -> Response<Full<Bytes>> {
    let id = RequestId::next();
    let mut response = handle_request(req, gateway, id, arrived).await;
    tag(response.headers_mut(), id);
    response
}

/// Puts the request id in `X-Request-Id`. Some replies start from a header
/// block with the id's slot taken: it is filled or removed.
fn tag(headers: &mut HeaderMap, id: RequestId) {
    match HeaderValue::from_str(id.text().as_str()) {
        Ok(mut value) => {
            // Never indexed by HTTP/2's header compression: a value new on
            // every reply would churn the connection's table, pushing out
            // the CORS headers that repeat on every reply, so those would be
            // sent in full again.
            value.set_sensitive(true);
            headers.insert(request_id::HEADER, value);
        }
        Err(_) => {
            headers.remove(request_id::HEADER);
        }
    }
}

async fn handle_request(
    req: Request<Incoming>,
    gateway: &Gateway,
    id: RequestId,
    start: Instant,
) -> Response<Full<Bytes>> {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let origin = req.headers().get(ORIGIN).cloned();
    let origin_log = origin.as_ref().and_then(|o| o.to_str().ok()).unwrap_or("-");
    let (method, path) = (method.as_str(), path.as_str());
    let mut unanswered = Unanswered {
        gateway,
        id,
        method,
        path,
        origin: origin_log,
        start,
        record: None,
    };
    // Boxed, and only for GETs: the wrapper page's future (its framing
    // check) is large and rarely needed.
    if req.method() == Method::GET {
        if let Some((page, wrap)) = Box::pin(own_page(&req, gateway, id)).await {
            std::mem::forget(unanswered);
            log_page(&page, wrap, gateway, id, (path, origin_log), start);
            return page;
        }
    }
    let origin_check = gateway.config.cors.check(req.headers());
    // A browser opening the gateway's URL (to try its certificate, say)
    // gets a page on what the URL is for; a program gets JSON.
    let wants_html = matches!(*req.method(), Method::GET | Method::HEAD)
        && accept::prefers_html(req.headers().get(ACCEPT));
    // A call's steps, when the ops console records calls: filled by the
    // call, kept with its outcome after the log line, or by the guard
    // when the call is dropped before.
    let result = match &origin_check {
        OriginCheck::Denied => Err(HttpError::OriginDenied),
        _ => {
            let record = &mut unanswered.record;
            dispatch(req, gateway, &origin_check, (start, id), record).await
        }
    };
    let mut record = unanswered.record.take();
    std::mem::forget(unanswered);
    let ended = Instant::now();
    let (id_text, elapsed) = (id.text(), ended.saturating_duration_since(start));
    let (id_log, latency) = (id_text.as_str(), Short::millis(elapsed));
    let latency_ms = latency.as_str();
    let metrics = &gateway.metrics;
    let mut response = match result {
        Ok((handled, response)) => {
            match handled {
                Handled::Reply {
                    route,
                    backend,
                    failure,
                    reply,
                } => {
                    let opened = matches!(reply, Reply::Open(_));
                    // A `none` always carries its failure; were one missing,
                    // "declined" is what it would mean.
                    let none = (!opened)
                        .then(|| failure.as_ref().map_or(NoneReason::Declined, |f| f.reason));
                    metrics.request(
                        route.map(|r| (&*r.name, &r.metrics)),
                        none,
                        elapsed.as_secs_f64(),
                    );
                    let route_name = route.map_or("-", |r| &*r.name);
                    let reason = failure.as_ref().map_or("-", |f| f.reason.as_str());
                    tracing::info!(
                        id = id_log,
                        method,
                        path,
                        origin = origin_log,
                        route = route_name,
                        backend = backend.as_deref().unwrap_or("-"),
                        outcome = if opened { "open" } else { "none" },
                        reason,
                        detail = failure.as_ref().map_or("-", |f| f.detail.as_str()),
                        latency_ms,
                        "request"
                    );
                    if let (Some(console), Some(record)) = (&gateway.console, record.take()) {
                        let ending = Ending {
                            cancelled: None,
                            wrapped: opened && route.is_some_and(|r| r.wrap),
                            reply: &reply,
                            backend: backend.as_deref(),
                            failure: failure.as_ref(),
                            ended,
                        };
                        console.record(record, ending);
                    }
                }
                Handled::Preflight | Handled::Options => {
                    metrics.preflight();
                    tracing::info!(
                        id = id_log,
                        method,
                        path,
                        origin = origin_log,
                        outcome = "preflight",
                        latency_ms,
                        "request"
                    )
                }
            }
            response
        }
        Err(err) => {
            if err == HttpError::OriginDenied {
                tracing::warn!(
                    id = id_log,
                    method,
                    path,
                    origin = origin_log,
                    "origin not in cors.allow_origins: refused"
                );
            }
            let status = StatusCode::from(&err);
            metrics.error(status.as_u16());
            if let Some(console) = &gateway.console {
                console.refuse(crate::console::refused::Seen {
                    at: start,
                    id,
                    method,
                    path,
                    origin: origin_log,
                    status: status.as_u16(),
                    error: &err.to_string(),
                    payload: matches!(err, HttpError::BadRequest(_)),
                });
            }
            tracing::info!(
                id = id_log, method, path, origin = origin_log, outcome = "error",
                status = status.as_u16(), error = %err, latency_ms, "request"
            );
            if wants_html && err == HttpError::MethodNotAllowed {
                status_page(status)
            } else {
                error_response(&err)
            }
        }
    };
    if let OriginCheck::Allowed(allow) = &origin_check {
        if !response
            .headers()
            .contains_key(http::header::ACCESS_CONTROL_ALLOW_ORIGIN)
        {
            gateway
                .config
                .cors
                .apply_to_reply(allow, response.headers_mut());
        }
    }
    response
}

/// The log line and count of a request whose future is dropped before it
/// has a reply: hyper drops it when the client goes away (an HTTP/1
/// connection closed, an HTTP/2 stream reset), and a stop drops what
/// `server.shutdown_grace` left running. Without it such a request would
/// leave no trace, while the agent's tab may be waiting on exactly it.
/// The console keeps such a call too, with why it was dropped. Forgotten
/// once the request has its reply; by then it holds only borrows (its
/// recorder taken out first), so forgetting it leaks nothing.
struct Unanswered<'a> {
    gateway: &'a Gateway,
    id: RequestId,
    method: &'a str,
    path: &'a str,
    origin: &'a str,
    start: Instant,
    /// The call's recorder, while the call is being answered.
    record: Option<Recorder>,
}

impl Drop for Unanswered<'_> {
    fn drop(&mut self) {
        let ended = Instant::now();
        let elapsed = ended.saturating_duration_since(self.start);
        let (id, latency) = (self.id.text(), Short::millis(elapsed));
        let (id, latency_ms) = (id.as_str(), latency.as_str());
        let (method, path, origin) = (self.method, self.path, self.origin);
        let gave_up = self.gateway.stop.gave_up();
        if let (Some(console), Some(record)) = (&self.gateway.console, self.record.take()) {
            let ending = Ending {
                cancelled: Some(match gave_up {
                    true => Cancelled::Shutdown,
                    false => Cancelled::Client,
                }),
                reply: &Reply::None,
                wrapped: false,
                backend: None,
                failure: None,
                ended,
            };
            console.record(record, ending);
        }
        if gave_up {
            self.gateway.metrics.cancelled("shutdown");
            tracing::warn!(
                id,
                method,
                path,
                origin,
                outcome = "cancelled",
                error = "dropped unanswered: server.shutdown_grace ran out",
                latency_ms,
                "request"
            );
        } else {
            self.gateway.metrics.cancelled("client");
            // 499: nginx's status for a request its client gave up on.
            tracing::info!(
                id,
                method,
                path,
                origin,
                outcome = "cancelled",
                status = 499u16,
                error = "the client closed the request before its reply",
                latency_ms,
                "request"
            );
        }
    }
}

async fn dispatch<'g>(
    req: Request<Incoming>,
    gateway: &'g Gateway,
    origin: &OriginCheck,
    (start, id): (Instant, RequestId),
    record: &mut Option<Recorder>,
) -> Result<(Handled<'g>, Response<Full<Bytes>>), HttpError> {
    let config = &gateway.config;
    let Some(routes) = config.router.routes_on(req.uri().path()) else {
        // A preflight is answered all the same, so the browser sends the
        // POST and its page sees the 404 that names the paths, not a
        // "Failed to fetch" with nothing to go on.
        if req.method() == Method::OPTIONS {
            return Ok(options(req.headers(), gateway, origin));
        }
        let paths: Vec<String> = config.router.paths().map(|p| format!("{p:?}")).collect();
        let paths = if paths.is_empty() {
            "(none: the config has no [[routes]])".to_owned()
        } else {
            paths.join(", ")
        };
        if req.method() == Method::POST && unknown_path_warning_due(gateway) {
            tracing::warn!(
                path = req.uri().path(),
                routes = %paths,
                "a call to a path without routes: is XucMgt's THIRD_PARTY_URL right? (said at most once a minute)"
            );
        }
        return Err(HttpError::NotFound(paths));
    };
    match *req.method() {
        Method::OPTIONS => Ok(options(req.headers(), gateway, origin)),
        // Boxed: a call's future is kilobytes (backend exchange, reply
        // reading) and would otherwise be part of every request's future,
        // which hyper moves by value; preflights stay small.
        Method::POST => Box::pin(call(req, gateway, routes, (start, id), record)).await,
        _ => Err(HttpError::MethodNotAllowed),
    }
}

/// Whether to log a call to a path without routes now: at most once a
/// minute, so a misconfigured XucMgt does not flood the log.
fn unknown_path_warning_due(gateway: &Gateway) -> bool {
    use std::sync::atomic::Ordering;
    use std::time::{SystemTime, UNIX_EPOCH};
    let logged = &gateway.unknown_path_logged;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let last = logged.load(Ordering::Relaxed);
    (last == 0 || now >= last + 60)
        && logged
            .compare_exchange(last, now.max(1), Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
}

/// A `POST`: the payload answered by the first matching route.
async fn call<'g>(
    req: Request<Incoming>,
    gateway: &'g Gateway,
    routes: &'g [Route],
    (start, id): (Instant, RequestId),
    record: &mut Option<Recorder>,
) -> Result<(Handled<'g>, Response<Full<Bytes>>), HttpError> {
    let config = &gateway.config;
    check_content_type(req.headers())?;
    let host = requested_host(&req);
    let deadline = start + config.server.work_budget();
    let body = read_body(req, config.server.max_body_bytes, deadline).await?;
    let payload: Payload = parse_payload(&body)?;
    let ctx = payload.context();
    let templates = config.router.templates();
    *record = gateway
        .console
        .as_deref()
        .map(|console| console.recorder(start, id, payload.caller()));
    let chosen = config.router.select(routes, &ctx, id);
    if let (Some(record), Some(route)) = (record.as_mut(), chosen) {
        record.route(&route.card);
    }
    let (reply, route, backend, failure) = match chosen {
        None => (
            Reply::None,
            None,
            None,
            Some(Failure::new(NoneReason::NoRoute, "no route matched")),
        ),
        Some(route) => {
            if let Some(xuc) = &config.xuc {
                if let Err(failure) = Box::pin(xuc.check(payload.token(), deadline)).await {
                    let response = reply_response(&Reply::None);
                    let handled = Handled::Reply {
                        reply: Reply::None,
                        route: Some(route),
                        backend: None,
                        failure: Some(failure),
                    };
                    return Ok((handled, response));
                }
            }
            let mut quiet = Quiet;
            let observer: &mut dyn Observer = match record.as_mut() {
                Some(record) => {
                    if route.forward_token {
                        record.forwards_token(payload.token().map(|t| t.expose()));
                    }
                    record
                }
                None => &mut quiet,
            };
            let call = Call {
                payload: &payload,
                ctx: &ctx,
                deadline,
                id,
            };
            let work = answer(templates, route, call, &gateway.metrics, observer);
            match tokio::time::timeout_at(deadline, work).await {
                Ok(a) => {
                    let reply = if route.wrap {
                        wrapped(a.reply, gateway, host.as_ref(), &route.name, id)
                    } else {
                        a.reply
                    };
                    (reply, Some(route), a.backend, a.failure)
                }
                Err(_) => (
                    Reply::None,
                    Some(route),
                    None,
                    Some(Failure::new(NoneReason::Deadline, "deadline_ms ran out")),
                ),
            }
        }
    };
    // How late a call cut by its budget got its answer sets the margin of
    // the calls after it.
    if failure
        .as_ref()
        .is_some_and(|f| f.reason == NoneReason::Deadline)
    {
        crate::margin::cut(Instant::now().saturating_duration_since(deadline));
    } else {
        crate::margin::in_time();
    }
    let response = reply_response(&reply);
    let handled = Handled::Reply {
        reply,
        route,
        backend,
        failure,
    };
    Ok((handled, response))
}

/// The request line of one of the gateway's own pages, and for `/wrap`
/// its count by what the page showed.
fn log_page(
    page: &Response<Full<Bytes>>,
    wrap: Option<PageOutcome>,
    gateway: &Gateway,
    id: RequestId,
    (path, origin): (&str, &str),
    start: Instant,
) {
    let (id, latency) = (id.text(), Short::millis(start.elapsed()));
    let (id, latency_ms) = (id.as_str(), latency.as_str());
    let status = page.status().as_u16();
    let shown = wrap.map_or("-", PageOutcome::as_str);
    if let Some(outcome) = wrap {
        gateway.metrics.wrap_page(outcome.as_str());
    }
    match wrap {
        Some(PageOutcome::Refused(err)) => tracing::info!(
            id, method = "GET", path, origin, outcome = "error", status, wrap = shown,
            error = %err, latency_ms, "request"
        ),
        _ => tracing::info!(
            id,
            method = "GET",
            path,
            origin,
            outcome = "page",
            status,
            wrap = shown,
            latency_ms,
            "request"
        ),
    }
}

/// An `open` reply pointed at the completion wrapper page. When no link
/// can be made (no `wrap.public_url` and no usable Host, or a target too
/// long even compressed) the url goes out unwrapped, with a warning that
/// says why: better a tab without Done than no tab.
fn wrapped(
    reply: Reply,
    gateway: &Gateway,
    host: Option<&HeaderValue>,
    route: &str,
    id: RequestId,
) -> Reply {
    let (Reply::Open(open), Some(wrapper)) = (&reply, &gateway.wrapper) else {
        return reply;
    };
    match wrapper.wrap(open, origin_of(host, gateway).as_deref()) {
        Ok(link) => Reply::Open(link),
        Err(err) => {
            tracing::warn!(%id, route, error = %err, "cannot build the wrapper link: url sent unwrapped (no Done button)");
            reply
        }
    }
}

/// The gateway's own pages: the completion wrapper and its assets, and the
/// demo's certificate-trust page. They are navigations, not API calls, so
/// they bypass CORS (browsers send no `Origin` on a frame's GET).
/// Only asked for GET requests. For `/wrap`, also what the page showed.
async fn own_page(
    req: &Request<Incoming>,
    gateway: &Gateway,
    id: RequestId,
) -> Option<(Response<Full<Bytes>>, Option<PageOutcome>)> {
    match (req.uri().path(), &gateway.wrapper) {
        ("/wrap", Some(wrapper)) => {
            let origin = origin_of(requested_host(req).as_ref(), gateway);
            let (page, outcome) = wrapper.page(req.uri().query(), origin.as_deref(), id).await;
            Some((page, Some(outcome)))
        }
        ("/wrap.js" | "/wrap.css", Some(_)) => {
            pages::asset(req.uri().path()).map(|page| (page, None))
        }
        (pages::PAGE_CSS, _) => pages::asset(pages::PAGE_CSS).map(|page| (page, None)),
        ("/demo/trust", _) => gateway.config.demo.as_ref().map(|demo| {
            let mut agent = demo.listen;
            if agent.ip().is_unspecified() {
                agent.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
            }
            (pages::trust(&format!("http://{agent}/demo/agent")), None)
        }),
        _ => None,
    }
}

/// The host the browser used (`:authority` or `Host`), kept cheaply until
/// an origin is actually needed.
fn requested_host(req: &Request<Incoming>) -> Option<HeaderValue> {
    match req.uri().authority() {
        Some(a) => HeaderValue::from_str(a.as_str()).ok(),
        None => req.headers().get(http::header::HOST).cloned(),
    }
}

/// The gateway's origin as the browser reached it (`https://host:port`).
fn origin_of(host: Option<&HeaderValue>, gateway: &Gateway) -> Option<String> {
    let host = host?.to_str().ok()?;
    let scheme = if gateway.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let origin = url::Url::parse(&format!("{scheme}://{host}/")).ok()?;
    Some(origin.origin().ascii_serialization())
}

/// A preflight gets 204 with the CORS headers; a plain OPTIONS lists methods.
fn options(
    headers: &HeaderMap,
    gateway: &Gateway,
    origin: &OriginCheck,
) -> (Handled<'static>, Response<Full<Bytes>>) {
    let mut response = Response::new(Full::default());
    *response.status_mut() = StatusCode::NO_CONTENT;
    let is_preflight = headers.contains_key(http::header::ACCESS_CONTROL_REQUEST_METHOD);
    match origin {
        OriginCheck::Allowed(allow) if is_preflight => {
            *response.headers_mut() = gateway.config.cors.preflight_headers(allow, headers);
            (Handled::Preflight, response)
        }
        _ => {
            response.headers_mut().insert(ALLOW, ALLOWED_METHODS);
            (Handled::Options, response)
        }
    }
}

fn check_content_type(headers: &HeaderMap) -> Result<(), HttpError> {
    let is_json = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json"));
    if is_json {
        Ok(())
    } else {
        Err(HttpError::UnsupportedMediaType)
    }
}

/// Reads the body, refusing early on a declared length over the limit and
/// late on one that streams past it; the deadline bounds slow senders.
async fn read_body(
    req: Request<Incoming>,
    limit: usize,
    deadline: Instant,
) -> Result<Bytes, HttpError> {
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(HttpError::PayloadTooLarge(limit));
    }
    let collect = Limited::new(req.into_body(), limit).collect();
    match tokio::time::timeout_at(deadline, collect).await {
        Err(_) => Err(HttpError::Timeout),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(err)) if err.downcast_ref::<LengthLimitError>().is_some() => {
            Err(HttpError::PayloadTooLarge(limit))
        }
        Ok(Err(err)) => Err(HttpError::BodyUnread(err.to_string())),
    }
}

/// Parses the payload; the error names the field at fault.
fn parse_payload(body: &[u8]) -> Result<Payload, HttpError> {
    crate::contract::parse_payload(body).map_err(HttpError::BadRequest)
}

fn reply_response(reply: &Reply) -> Response<Full<Bytes>> {
    let body = match reply {
        Reply::None => Bytes::from_static(NONE_BODY),
        Reply::Open(_) => {
            Bytes::from(serde_json::to_vec(reply).unwrap_or_else(|_| NONE_BODY.to_vec()))
        }
    };
    json_response(StatusCode::OK, body)
}

fn error_response(err: &HttpError) -> Response<Full<Bytes>> {
    let body = serde_json::json!({ "error": err.to_string() }).to_string();
    let mut response = json_response(StatusCode::from(err), Bytes::from(body));
    if *err == HttpError::MethodNotAllowed {
        let headers = response.headers_mut();
        headers.insert(ALLOW, ALLOWED_METHODS);
        headers.insert(VARY, ACCEPT_VARY);
    }
    response
}

/// The 405 a browser gets: the same status and `Allow`, as an HTML page.
fn status_page(status: StatusCode) -> Response<Full<Bytes>> {
    let mut response = pages::status(status);
    let headers = response.headers_mut();
    headers.insert(ALLOW, ALLOWED_METHODS);
    headers.insert(VARY, ACCEPT_VARY);
    response
}

fn json_response(status: StatusCode, body: Bytes) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, JSON);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bad(body: &str) -> String {
        match parse_payload(body.as_bytes()) {
            Err(HttpError::BadRequest(msg)) => msg,
            other => panic!("expected BadRequest, got {other:?}"),
        }
    }

    #[test]
    fn the_request_id_is_never_indexed_by_hpack() {
        let mut headers = HeaderMap::new();
        headers.insert(request_id::HEADER, HeaderValue::from_static(""));
        let id = RequestId::next();
        tag(&mut headers, id);
        let value = &headers[request_id::HEADER];
        assert_eq!(value.to_str().ok(), Some(id.text().as_str()));
        assert!(value.is_sensitive());
        assert_eq!(headers.len(), 1);
    }

    #[test]
    fn payload_errors_name_the_field() {
        assert_eq!(
            bad(r#"{"user":{"userId":1},"callee":"1"}"#),
            "missing field `caller`"
        );
        assert_eq!(
            bad(r#"{"user":{"userId":"x"},"caller":"1","callee":"1"}"#),
            "user.userId: invalid type: string \"x\", expected i64"
        );
        assert_eq!(
            bad(r#"{"user":{},"caller":"1","callee":"1"}"#),
            "user: missing field `userId`"
        );
        assert!(bad("{").starts_with("EOF while parsing"));
        assert!(bad("[1]").starts_with("invalid type: sequence"));
        assert!(bad(r#"[{"userId":1},"1","2"]"#).starts_with("invalid type: sequence"));
        assert_eq!(
            bad(r#"{"user":[1],"caller":"1","callee":"2"}"#),
            "user: invalid type: sequence, expected a JSON object"
        );
        assert_eq!(
            bad(r#"{"user":{"userId":1},"caller":"1","callee":"2","queue":[2]}"#),
            "queue: invalid type: sequence, expected a JSON object"
        );
        assert_eq!(
            bad(r#"{"user":{"userId":1},"caller":"1","callee":"2","userData":[]}"#),
            "userData: invalid type: sequence, expected a map"
        );
        assert_eq!(
            bad(r#"{"user":{"userId":1,"token":5},"caller":"1","callee":"2"}"#),
            "user.token: invalid type: a number, expected a string"
        );
    }

    #[test]
    fn samples_parse() {
        for sample in [
            include_str!("../tests/fixtures/seed-queue-call.json"),
            include_str!("../tests/fixtures/direct-call-no-queue.json"),
            include_str!("../tests/fixtures/newer-with-token.json"),
        ] {
            parse_payload(sample.as_bytes()).unwrap();
        }
    }
}
