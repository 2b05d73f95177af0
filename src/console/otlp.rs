//! Each recorded call exported as an OpenTelemetry trace, for sites that
//! already run Jaeger, Tempo or an OpenTelemetry collector
//! (`[ops] otlp_endpoint`): a `call` span, its `route` span, and under it a
//! `login` span for each login a look-up waited for and a `backend` span
//! for each request sent, with the same masking and redaction as the page.
//!
//! Off the request path: the handler hands the recorded call over through
//! a bounded queue (full: the call is not exported, and counted), and a
//! thread of its own builds the spans and sends them, a batch at a time,
//! with `opentelemetry-otlp`'s OTLP/HTTP protobuf exporter over a small
//! hyper client. Without `otlp_endpoint` none of this exists.

use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_http::{HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanExporter as _, SpanLinks};
use opentelemetry_sdk::Resource;

use super::call::{Call, Step};
use super::mask::{self, Masker};
use crate::backend::login::Source;
use crate::constants::{OTLP_BATCH, OTLP_QUEUE, OTLP_TIMEOUT};
use crate::outcome::NoneReason;

/// How long the export thread gathers calls before sending a batch.
const LINGER: Duration = Duration::from_millis(200);

/// A collector's reply is read up to this size.
const MAX_REPLY_BYTES: usize = 64 * 1024;

/// What the handler sends the export thread.
enum Message {
    /// A call (a copy of the ring's) and the wall-clock time its request
    /// arrived.
    Call(Box<Call>, SystemTime),
    /// Send what is gathered, then say so.
    Flush(mpsc::Sender<()>),
}

/// The handle on the export thread.
#[derive(Debug)]
pub struct Export {
    queue: SyncSender<Message>,
    dropped: Arc<AtomicU64>,
}

impl Export {
    /// Starts the export thread for `endpoint` (the collector's OTLP/HTTP
    /// traces url). Callers are shown whole when `show_caller`.
    pub fn start(endpoint: &url::Url, show_caller: bool) -> Self {
        let (queue, calls) = mpsc::sync_channel(OTLP_QUEUE);
        let dropped = Arc::new(AtomicU64::new(0));
        let endpoint = endpoint.clone();
        let spawned = std::thread::Builder::new()
            .name("otlp-export".into())
            .spawn(move || run(&endpoint, &calls, show_caller));
        if let Err(err) = spawned {
            tracing::error!(error = %err, "cannot start the OTLP export thread: calls are not exported");
        }
        Self { queue, dropped }
    }

    /// Queues a call for export; a full queue drops it (counted).
    pub fn send(&self, call: Box<Call>, started: SystemTime) {
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) =
            self.queue.try_send(Message::Call(call, started))
        {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Sends what is queued, waiting at most `within`.
    pub fn flush(&self, within: Duration) {
        let (done, wait) = mpsc::channel();
        if self.queue.try_send(Message::Flush(done)).is_ok() {
            let _ = wait.recv_timeout(within);
        }
    }

    /// Calls not exported because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// The export thread: gathers calls, turns them into spans, sends them.
fn run(endpoint: &url::Url, calls: &Receiver<Message>, show_caller: bool) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            tracing::error!(error = %err, "cannot start the OTLP export: calls are not exported");
            return;
        }
    };
    let tls = (endpoint.scheme() == "https")
        .then(|| crate::tls::client_config(None, None))
        .transpose();
    let tls = match tls {
        Ok(tls) => tls.map(|c| tokio_rustls::TlsConnector::from(Arc::new(c))),
        Err(err) => {
            tracing::error!(error = %err, "cannot set up TLS for the OTLP export: calls are not exported");
            return;
        }
    };
    let built = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(endpoint.as_str())
        .with_protocol(Protocol::HttpBinary)
        .with_timeout(OTLP_TIMEOUT)
        .with_http_client(Client { tls })
        .build();
    let mut exporter = match built {
        Ok(exporter) => exporter,
        Err(err) => {
            tracing::error!(error = %err, "cannot build the OTLP exporter: calls are not exported");
            return;
        }
    };
    exporter.set_resource(
        &Resource::builder_empty()
            .with_service_name(env!("CARGO_PKG_NAME"))
            .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
            .build(),
    );
    let scope = InstrumentationScope::builder(env!("CARGO_PKG_NAME"))
        .with_version(env!("CARGO_PKG_VERSION"))
        .build();
    let mut ids = Ids::new();
    let mut warned: Option<std::time::Instant> = None;
    while let Ok(first) = calls.recv() {
        let mut batch = Vec::new();
        let mut flushed = Vec::new();
        let until = std::time::Instant::now() + LINGER;
        let mut next = Some(first);
        while let Some(message) = next.take() {
            match message {
                Message::Call(call, started) => {
                    spans(&call, started, show_caller, &scope, &mut ids, &mut batch);
                }
                Message::Flush(done) => flushed.push(done),
            }
            if batch.len() >= OTLP_BATCH * 4 || !flushed.is_empty() {
                break;
            }
            let left = until.saturating_duration_since(std::time::Instant::now());
            next = calls.recv_timeout(left).ok();
        }
        if !batch.is_empty() {
            if let Err(err) = runtime.block_on(exporter.export(batch)) {
                // Said at most once a minute: a collector that is down
                // must not flood the log.
                if warned.is_none_or(|at| at.elapsed() >= Duration::from_secs(60)) {
                    warned = Some(std::time::Instant::now());
                    tracing::warn!(error = %err, endpoint = %endpoint, "OTLP export failed (said at most once a minute)");
                }
            }
        }
        for done in flushed {
            let _ = done.send(());
        }
    }
}

/// Random trace and span ids.
struct Ids(ring::rand::SystemRandom);

impl Ids {
    fn new() -> Self {
        Self(ring::rand::SystemRandom::new())
    }

    fn bytes<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        if ring::rand::SecureRandom::fill(&self.0, &mut out).is_err() || out == [0u8; N] {
            out[N - 1] = 1;
        }
        out
    }

    fn trace(&mut self) -> TraceId {
        TraceId::from_bytes(self.bytes())
    }

    fn span(&mut self) -> SpanId {
        SpanId::from_bytes(self.bytes())
    }
}

/// One span, in the trace of `trace`.
struct Span {
    name: String,
    kind: SpanKind,
    parent: SpanId,
    id: SpanId,
    start: SystemTime,
    end: SystemTime,
    attributes: Vec<KeyValue>,
    status: Status,
}

/// A request whose span is not finished yet.
struct Pending {
    name: String,
    from: Duration,
    replied: Option<Duration>,
    attributes: Vec<KeyValue>,
    id: SpanId,
}

/// The spans of a call: `call`, `route` under it, and under the route a
/// `login` span per login waited for and a `backend` span per request.
fn spans(
    call: &Call,
    started: SystemTime,
    show_caller: bool,
    scope: &InstrumentationScope,
    ids: &mut Ids,
    out: &mut Vec<SpanData>,
) {
    let masker = Masker::new(call.caller());
    let shown = |text: &str| -> String {
        if show_caller {
            text.to_owned()
        } else {
            masker.mask(text).into_owned()
        }
    };
    let at = |offset: Duration| started.checked_add(offset).unwrap_or(started);
    let end = at(call.latency);
    let trace = ids.trace();
    let root = ids.span();
    let none = call.none();
    let mut attributes = vec![
        KeyValue::new(
            "thirdparty_gateway.request_id",
            call.id.text().as_str().to_owned(),
        ),
        KeyValue::new(
            "thirdparty_gateway.outcome",
            match (call.cancelled, none.is_some()) {
                (Some(_), _) => "cancelled",
                (None, true) => "none",
                (None, false) => "open",
            },
        ),
        KeyValue::new(
            "thirdparty_gateway.caller",
            if show_caller {
                call.caller().to_owned()
            } else {
                mask::caller(call.caller())
            },
        ),
    ];
    if let Some(reason) = call.reason {
        attributes.push(KeyValue::new("thirdparty_gateway.reason", reason.as_str()));
        attributes.push(KeyValue::new(
            "thirdparty_gateway.detail",
            shown(call.detail()),
        ));
    }
    if let Some(cancelled) = call.cancelled {
        attributes.push(KeyValue::new(
            "thirdparty_gateway.cancelled",
            cancelled.as_str(),
        ));
        attributes.push(KeyValue::new(
            "thirdparty_gateway.detail",
            cancelled.detail(),
        ));
    }
    if let Some(route) = call.route() {
        attributes.push(KeyValue::new("thirdparty_gateway.route", route.to_owned()));
    }
    let mut list = vec![Span {
        name: "call".into(),
        kind: SpanKind::Server,
        parent: SpanId::INVALID,
        id: root,
        start: started,
        end,
        attributes,
        status: status(none),
    }];
    let route_id = ids.span();
    list.push(Span {
        name: format!("route {}", call.route().unwrap_or("(none matched)")),
        kind: SpanKind::Internal,
        parent: root,
        id: route_id,
        start: started,
        end,
        attributes: vec![KeyValue::new(
            "thirdparty_gateway.route",
            call.route().unwrap_or("-").to_owned(),
        )],
        status: status(none),
    });
    // An attempt begins where the one before it ended.
    let mut attempt_start = Duration::ZERO;
    // The request sent last, until its attempt ends (or a retry is sent).
    let mut request: Option<Pending> = None;
    let backend_span = |pending: Pending, until: Duration, failed| Span {
        name: format!("backend {}", pending.name),
        kind: SpanKind::Client,
        parent: route_id,
        id: pending.id,
        start: at(pending.from),
        end: at(pending.replied.unwrap_or(until).max(pending.from)),
        attributes: pending.attributes,
        status: status(failed),
    };
    // A login the call waited for, from its attempt's start; one that
    // failed carries why, and an error status.
    let login_span =
        |name: &str, id: SpanId, (from, until): (Duration, Duration), failed: Option<String>| {
            let mut attributes = vec![KeyValue::new("thirdparty_gateway.backend", name.to_owned())];
            let status = match failed {
                Some(detail) => {
                    attributes.push(KeyValue::new("thirdparty_gateway.detail", detail));
                    status(Some(NoneReason::Login))
                }
                None => Status::Unset,
            };
            Span {
                name: format!("login {name}"),
                kind: SpanKind::Client,
                parent: route_id,
                id,
                start: at(from),
                end: at(until.max(from)),
                attributes,
                status,
            }
        };
    for step in &call.steps {
        let name = call.backend_name(step.backend());
        match step {
            Step::Login {
                at: when,
                source: Source::Fresh,
                ..
            } => list.push(login_span(
                name,
                ids.span(),
                (attempt_start, call.since(*when)),
                None,
            )),
            Step::Request { at: when, .. } | Step::Sent { at: when, .. } => {
                if let Some(sent) = request.take() {
                    list.push(backend_span(sent, call.since(*when), None));
                }
                let (method, url) = call.request_line(step).unwrap_or(("", ""));
                request = Some(Pending {
                    name: name.to_owned(),
                    from: call.since(*when),
                    replied: None,
                    attributes: vec![
                        KeyValue::new("thirdparty_gateway.backend", name.to_owned()),
                        KeyValue::new("http.request.method", method.to_owned()),
                        KeyValue::new("url.full", shown(url)),
                    ],
                    id: ids.span(),
                });
            }
            Step::Reply {
                at: when,
                status: code,
                bytes,
                ..
            } => {
                if let Some(sent) = &mut request {
                    sent.replied = Some(call.since(*when));
                    sent.attributes.extend([
                        KeyValue::new("http.response.status_code", i64::from(*code)),
                        KeyValue::new("http.response.body.size", i64::from(*bytes)),
                    ]);
                }
            }
            Step::Attempt {
                at: when, failed, ..
            } => {
                let reason = failed.as_ref().map(|(reason, _)| *reason);
                match request.take() {
                    Some(mut sent) => {
                        sent.attributes.push(KeyValue::new(
                            "thirdparty_gateway.result",
                            reason.map_or("open", NoneReason::as_str),
                        ));
                        list.push(backend_span(sent, call.since(*when), reason));
                    }
                    // A login that failed sent no look-up: its span says why.
                    None => {
                        if let Some((NoneReason::Login, detail)) = failed {
                            let span = (attempt_start, call.since(*when));
                            let failed = Some(shown(call.text(*detail)));
                            list.push(login_span(name, ids.span(), span, failed));
                        }
                    }
                }
                attempt_start = call.since(*when);
            }
            _ => {}
        }
    }
    if let Some(sent) = request.take() {
        list.push(backend_span(sent, call.latency, None));
    }
    for span in list {
        out.push(SpanData {
            span_context: SpanContext::new(
                trace,
                span.id,
                TraceFlags::SAMPLED,
                false,
                TraceState::default(),
            ),
            parent_span_id: span.parent,
            parent_span_is_remote: false,
            span_kind: span.kind,
            name: Cow::Owned(span.name),
            start_time: span.start,
            end_time: span.end,
            attributes: span.attributes,
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status: span.status,
            instrumentation_scope: scope.clone(),
        });
    }
}

/// An error status for a failure; a `none` that is an answer (no record,
/// no route, declined) is not one.
fn status(none: Option<NoneReason>) -> Status {
    match none {
        None | Some(NoneReason::Declined | NoneReason::NoMatch | NoneReason::NoRoute) => {
            Status::Unset
        }
        Some(reason) => Status::error(reason.as_str()),
    }
}

/// The exporter's HTTP client: one HTTP/1.1 connection per batch (TLS for
/// an `https` endpoint, verified against the system's CAs), the reply read
/// up to a size, everything within the export timeout.
#[derive(Clone)]
struct Client {
    tls: Option<tokio_rustls::TlsConnector>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

#[async_trait::async_trait]
impl HttpClient for Client {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        tokio::time::timeout(OTLP_TIMEOUT, self.send(request))
            .await
            .map_err(|_| format!("no reply within {} s", OTLP_TIMEOUT.as_secs()))?
    }
}

impl Client {
    async fn send(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let (mut parts, body) = request.into_parts();
        let host = parts
            .uri
            .host()
            .ok_or("the endpoint has no host")?
            .to_owned();
        let https = parts.uri.scheme_str() == Some("https");
        let port = parts.uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let authority = parts
            .uri
            .authority()
            .map(|a| a.as_str().to_owned())
            .unwrap_or_else(|| host.clone());
        parts.headers.insert(http::header::HOST, authority.parse()?);
        parts.uri = parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .parse()?;
        let request = http::Request::from_parts(parts, Full::new(body));
        let tcp = tokio::net::TcpStream::connect((host.trim_matches(['[', ']']), port)).await?;
        let response = match (&self.tls, https) {
            (Some(tls), true) => {
                let name = rustls::pki_types::ServerName::try_from(
                    host.trim_matches(['[', ']']).to_owned(),
                )?;
                let stream = tls.connect(name, tcp).await?;
                exchange(TokioIo::new(stream), request).await?
            }
            (None, true) => return Err("no TLS set up for an https endpoint".into()),
            _ => exchange(TokioIo::new(tcp), request).await?,
        };
        Ok(response)
    }
}

async fn exchange<IO>(
    io: IO,
    request: http::Request<Full<Bytes>>,
) -> Result<Response<Bytes>, HttpError>
where
    IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io).await?;
    let driver = tokio::spawn(connection);
    let response = sender.send_request(request).await?;
    let (parts, body) = response.into_parts();
    let body = Limited::new(body, MAX_REPLY_BYTES)
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    driver.abort();
    Ok(Response::from_parts(parts, body))
}
