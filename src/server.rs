//! The accept loop: bounded connections, TLS handshake under a timeout,
//! HTTP/1.1 or HTTP/2 chosen by ALPN, idle and header timeouts, and a
//! graceful stop that drains clients away and lets in-flight requests finish. Each connection takes the
//! current generation for its handshake; each request takes it again, so a
//! reload reaches keep-alive connections at their next request.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::CONNECTION;
use http::Response;
use http::{HeaderValue, Request, Version};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tokio_util::either::Either;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::constants::{CLOSE_GRACE, PARK_AFTER};
use crate::gateway::Live;
use crate::handler;
use crate::idle::{Activity, Counting, Quiet, Tracked};
use crate::on_wake::OnWake;
use crate::park::{self, Prefixed};

/// Pause after a failed `accept` (e.g. out of file descriptors) before retrying.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(100);

/// A drain ends once no connection has been open for this long: a stop
/// with nothing in flight takes about this, not `server.drain_ms`, while a
/// client that opens a connection right after another's reply (one that
/// has not seen the 503 yet) is still served.
const DRAIN_QUIET: Duration = Duration::from_millis(500);

/// How often the drain looks at the open connections.
const QUIET_CHECK: Duration = Duration::from_millis(50);

const CLOSE: HeaderValue = HeaderValue::from_static("close");

/// Serves `listener` until `shutdown` completes, then drains: for
/// `server.drain` it keeps serving and accepting while `/healthz` answers
/// 503, tells HTTP/1.1 clients to leave with their next reply
/// (`Connection: close`) and HTTP/2 clients with a GOAWAY; the drain ends
/// sooner once no connection has been open for [`DRAIN_QUIET`]. Then it
/// stops accepting, closes idle connections and waits up to
/// `server.shutdown_grace` for the requests still running.
pub async fn run(listener: TcpListener, live: Arc<Live>, shutdown: impl Future<Output = ()>) {
    let max_connections = live.current().config.server.max_connections;
    let limit = Arc::new(Semaphore::new(max_connections));
    let tracker = TaskTracker::new();
    let stopping = Stopping::default();
    let accepting = Accepting {
        listener: &listener,
        limit: &limit,
        tracker: &tracker,
        live: &live,
        stopping: &stopping,
    };
    accepting.until(shutdown).await;
    live.start_draining();
    stopping.drain.cancel();
    let drain = live.current().config.server.drain;
    tracing::info!(
        open = tracker.len(),
        drain_ms = drain.as_millis() as u64,
        "draining: still serving while /healthz answers 503; clients are told to leave after their reply"
    );
    // `sleep`, not `sleep_until`: it saturates on a huge `drain_ms`.
    accepting
        .until(async {
            tokio::select! {
                () = tokio::time::sleep(drain) => {}
                () = quiet(&tracker) => {}
            }
        })
        .await;
    drop(listener);
    tracing::info!(
        open = tracker.len(),
        "shutting down: no longer accepting, closing idle connections"
    );
    stopping.stop.cancel();
    tracker.close();
    let grace = live.current().config.server.shutdown_grace;
    if tokio::time::timeout(grace, tracker.wait()).await.is_err() {
        live.give_up();
        tracing::warn!(
            open = tracker.len(),
            "shutdown grace period over: closing remaining connections"
        );
    }
}

/// Completes once no connection has been open for [`DRAIN_QUIET`]: nobody
/// is left to tell to leave, and a balancer has had time to look elsewhere.
async fn quiet(tracker: &TaskTracker) {
    let mut empty_since: Option<Instant> = None;
    loop {
        if tracker.is_empty() {
            let since = *empty_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= DRAIN_QUIET {
                return;
            }
        } else {
            empty_since = None;
        }
        tokio::time::sleep(QUIET_CHECK).await;
    }
}

/// The two steps of a stop, as each connection sees them.
#[derive(Clone, Default)]
struct Stopping {
    /// The drain began: clients are asked to leave.
    drain: CancellationToken,
    /// The drain ended: idle connections close, busy ones after their reply.
    stop: CancellationToken,
}

/// What the accept loop needs, borrowed for both of its runs.
struct Accepting<'a> {
    listener: &'a TcpListener,
    limit: &'a Arc<Semaphore>,
    tracker: &'a TaskTracker,
    live: &'a Arc<Live>,
    stopping: &'a Stopping,
}

impl Accepting<'_> {
    /// Accepts connections, each once a slot is free, until `end` completes.
    async fn until(&self, end: impl Future<Output = ()>) {
        tokio::pin!(end);
        loop {
            let permit = tokio::select! {
                permit = Arc::clone(self.limit).acquire_owned() => match permit {
                    Ok(p) => p,
                    Err(_) => return,
                },
                () = &mut end => return,
            };
            let (stream, peer) = tokio::select! {
                accepted = self.listener.accept() => match accepted {
                    Ok(conn) => conn,
                    Err(err) => {
                        tracing::error!(error = %err, "accept failed");
                        tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                        continue;
                    }
                },
                () = &mut end => return,
            };
            // Held by the connection's future until it ends.
            let held = (self.live.metrics.connection(), permit);
            let (live, stopping) = (Arc::clone(self.live), self.stopping.clone());
            self.tracker
                .spawn(connection(stream, peer, live, stopping, held));
        }
    }
}

/// A connection, from its handshake to its end. Not an `async fn`, whose
/// arguments the task would store twice; and the handshake's future is gone
/// before the connection is served: a task keeps room for every value that
/// lives across an `.await`, and most connections spend their life idle.
fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    live: Arc<Live>,
    stopping: Stopping,
    held: impl Send + 'static,
) -> impl Future<Output = ()> + Send {
    let _ = stream.set_nodelay(true);
    let acceptor = live.current().tls.clone();
    async move {
        match acceptor {
            None => serve(stream, peer, live, stopping, Protocol::MaybeHttp2).await,
            Some(acceptor) => {
                let tls = handshake(stream, peer, &acceptor, &live).await;
                if let Some(tls) = tls {
                    let protocol = Protocol::of(&tls);
                    serve(tls, peer, live, stopping, protocol).await;
                }
            }
        }
        crate::trim::released();
        drop(held);
    }
}

/// The TLS handshake within `server.tls_handshake_timeout`; a failure is
/// counted and logged. The stream comes boxed: it is 1.2 KB, and a task
/// keeps room for a value in each binding it passes through.
async fn handshake(
    stream: TcpStream,
    peer: SocketAddr,
    acceptor: &TlsAcceptor,
    live: &Live,
) -> Option<Box<TlsStream<TcpStream>>> {
    let timeout = live.current().config.server.tls_handshake_timeout;
    // Fallible: a failed handshake hands the socket back, so it is counted
    // before the client sees it closed. Boxed, to be freed once done.
    let accept = Box::pin(acceptor.accept(stream).into_fallible());
    match tokio::time::timeout(timeout, accept).await {
        Ok(Ok(tls)) => Some(Box::new(tls)),
        Ok(Err((err, socket))) => {
            live.metrics.tls_failure();
            tracing::debug!(%peer, error = %err, "TLS handshake failed");
            drop(socket);
            None
        }
        Err(_) => {
            live.metrics.tls_failure();
            tracing::debug!(%peer, "TLS handshake timed out");
            None
        }
    }
}

/// What is known of a connection's protocol before its first bytes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Protocol {
    /// TLS chose HTTP/1.1, or nothing.
    Http1,
    /// TLS chose HTTP/2, or plain HTTP (either).
    MaybeHttp2,
}

impl Protocol {
    /// What ALPN chose.
    fn of(tls: &TlsStream<TcpStream>) -> Self {
        match tls.get_ref().1.alpn_protocol() {
            Some(b"h2") => Self::MaybeHttp2,
            _ => Self::Http1,
        }
    }
}

/// The future that serves a connection, by protocol.
fn serve<S>(
    stream: S,
    peer: SocketAddr,
    live: Arc<Live>,
    stopping: Stopping,
    protocol: Protocol,
) -> impl Future<Output = ()> + Send
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let server = &live.current().config.server;
    let counting = match protocol {
        Protocol::Http1 => Counting::Bytes,
        Protocol::MaybeHttp2 => Counting::Requests,
    };
    let activity = Activity::new(counting);
    let watch = Watch {
        peer,
        stopping,
        activity: Arc::clone(&activity),
        idle: server.idle_timeout,
        head: server.header_read_timeout,
        draining: false,
        closing: false,
        close_by: None,
    };
    let io = Tracked::new(stream, activity);
    match protocol {
        Protocol::Http1 => Either::Left(serve_http1(io, live, watch)),
        Protocol::MaybeHttp2 => Either::Right(serve_sniffed(io, live, watch)),
    }
}

/// Serves a connection that may be HTTP/2 (ALPN `h2`, or plain HTTP):
/// hyper sniffs the protocol and times HTTP/1 request heads; the watch
/// times HTTP/2 header blocks.
async fn serve_sniffed<S>(io: Tracked<S>, live: Arc<Live>, mut watch: Watch)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let gateway = live.current();
    let service = {
        let activity = Arc::clone(&watch.activity);
        // Boxed: hyper spawns each HTTP/2 stream as a task holding this
        // future, and a spawn moves the task whole, several times; a box
        // is one allocation where the moves copied some 2 KiB each
        // (docs/performance.md).
        service_fn(move |req| Box::pin(respond(&live, &activity, req)))
    };
    // Boxed, as HTTP/1 turns are: a task has room for the largest of its
    // states, and hyper's connection is by far the largest.
    let mut conn = Box::pin(
        gateway
            .http
            .sniffed
            .serve_connection(TokioIo::new(io), service),
    );
    watch.drive(conn.as_mut(), false).await;
}

/// Serves an HTTP/1.1 connection in turns: each turn builds hyper's
/// connection once the first bytes of a request came, serves requests until
/// the connection has been quiet for [`PARK_AFTER`], then parks it: hyper's
/// state and buffers go, the TLS session stays, and the next request's
/// first bytes start the next turn.
///
/// Not an `async fn`: its arguments would be stored twice in the task, as
/// the future's captures and as the body's bindings.
#[allow(clippy::manual_async_fn)]
fn serve_http1<S>(
    mut io: Tracked<S>,
    live: Arc<Live>,
    mut watch: Watch,
) -> impl Future<Output = ()> + Send
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    async move {
        let mut service = {
            let (live, activity) = (Arc::clone(&live), Arc::clone(&watch.activity));
            // Boxed: hyper hands a connection back only when the service's
            // future is `Unpin`.
            service_fn(move |req| Box::pin(respond(&live, &activity, req)))
        };
        let mut first = Bytes::new();
        // No value lives in a named binding across an `.await` unless it must:
        // the task keeps room for every such binding, parked or not.
        loop {
            if first.is_empty() {
                first = match watch.parked(&mut io).await {
                    Wake::Bytes(bytes) => bytes,
                    Wake::Close => return close(&mut io).await,
                    Wake::Drop => return,
                };
            }
            // Boxed, so that a parked connection's task does not keep room for
            // hyper's connection; with the settings of the generation current
            // when the turn begins.
            let mut turn = Box::pin(
                live.current()
                    .http
                    .http1
                    .serve_connection(TokioIo::new(Prefixed::new(first, io)), service),
            );
            let outcome = watch.drive(turn.as_mut(), true).await;
            if outcome == Outcome::Dropped {
                return;
            }
            (io, service, first) = take_back(turn);
            if outcome == Outcome::Finished {
                return close(&mut io).await;
            }
            live.metrics.parked();
            crate::trim::released();
        }
    }
}

/// hyper's connection for one turn of an HTTP/1.1 connection.
type Turn<S, T> = http1::Connection<TokioIo<Prefixed<Tracked<S>>>, T>;

/// The stream and service of a turn hyper let go of, and the bytes to read
/// first: what hyper read ahead, then what it never read.
fn take_back<S, T>(turn: Pin<Box<Turn<S, T>>>) -> (Tracked<S>, T, Bytes)
where
    T: hyper::service::HttpService<Incoming>,
    T::ResBody: hyper::body::Body + 'static,
    <T::ResBody as hyper::body::Body>::Error: Into<BoxError>,
    T::Error: Into<BoxError>,
    S: AsyncRead + AsyncWrite + Unpin,
{
    let parts = Pin::into_inner(turn).into_parts();
    let (unread, io) = parts.io.into_inner().into_parts();
    let first = match (unread.is_empty(), parts.read_buf.is_empty()) {
        (_, true) => unread,
        (true, false) => parts.read_buf,
        (false, false) => [parts.read_buf, unread].concat().into(),
    };
    (io, parts.service, first)
}

/// Ends a connection that hyper no longer holds: TLS `close_notify`, then
/// the socket's shutdown, within [`CLOSE_GRACE`].
async fn close<S: AsyncWrite + Unpin>(io: &mut S) {
    let _ = tokio::time::timeout(CLOSE_GRACE, io.shutdown()).await;
}

/// One request, served by the generation current when it came.
fn respond(
    live: &Arc<Live>,
    activity: &Arc<Activity>,
    req: Request<Incoming>,
) -> impl Future<Output = Result<Response<Full<Bytes>>, Infallible>> + Send + 'static {
    let gateway = live.current();
    let (in_flight, first_byte) = activity.begin();
    let version = req.version();
    let arrived = if version == Version::HTTP_2 {
        // Streams share the connection's bytes, which are not parsed here:
        // a stream arrives when hyper hands over its decoded HEADERS.
        activity.http2_request(gateway.stop.is_draining());
        Instant::now()
    } else {
        first_byte.unwrap_or_else(Instant::now)
    };
    async move {
        let mut response = handler::handle(req, &gateway, arrived).await;
        drop(in_flight);
        if version != Version::HTTP_2 && gateway.stop.is_draining() {
            // hyper closes the connection once this reply is out.
            response.headers_mut().insert(CONNECTION, CLOSE);
        }
        Ok(response)
    }
}

/// A connection hyper serves, as the watch drives it.
trait Served {
    /// Polls the connection to its end.
    fn poll_served(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>>;
    /// Closes it gracefully: HTTP/1 after the reply in progress, HTTP/2 by
    /// GOAWAY.
    fn close(self: Pin<&mut Self>);
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl<I, S> Served for auto::Connection<'_, I, S, TokioExecutor>
where
    Self: Future<Output = Result<(), BoxError>>,
    S: hyper::service::HttpService<Incoming>,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    S::ResBody: hyper::body::Body + Send + 'static,
    <S::ResBody as hyper::body::Body>::Error: Into<BoxError>,
    <S::ResBody as hyper::body::Body>::Data: Send,
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    fn poll_served(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Future::poll(self, cx)
    }

    fn close(self: Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

impl<I, S, B> Served for http1::Connection<I, S>
where
    S: hyper::service::HttpService<Incoming, ResBody = B> + Unpin,
    S::Future: Unpin,
    S::Error: Into<BoxError>,
    B: hyper::body::Body + 'static,
    B::Error: Into<BoxError>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin,
{
    /// Ends without shutting the stream down, which `serve_http1` parks or
    /// closes.
    fn poll_served(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Pin::into_inner(self)
            .poll_without_shutdown(cx)
            .map_err(Into::into)
    }

    fn close(self: Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

/// How a connection's turn with hyper ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// hyper is done with it: the client left, or it was closed.
    Finished,
    /// Quiet: hyper let go of it, to be parked.
    Parked,
    /// Dropped as it is, with no goodbye (late head, overdue close).
    Dropped,
}

/// What woke a parked connection.
enum Wake {
    /// The next request's first bytes.
    Bytes(Bytes),
    /// Close it: a stop, or idle for the idle timeout.
    Close,
    /// Drop it: the client left, or a request head is late.
    Drop,
}

/// A connection's watch: what ends or closes it besides the client, and
/// what it has been told so far.
struct Watch {
    peer: SocketAddr,
    stopping: Stopping,
    activity: Arc<Activity>,
    idle: Duration,
    head: Duration,
    /// The drain began.
    draining: bool,
    /// Asked to close.
    closing: bool,
    /// When a connection asked to close is dropped if still open.
    close_by: Option<Instant>,
}

impl Watch {
    /// Serves `conn` until it ends; with `park`, asks it to let go once the
    /// connection has been quiet for [`PARK_AFTER`].
    async fn drive<C: Served + ?Sized>(&mut self, mut conn: Pin<&mut C>, park: bool) -> Outcome {
        let mut parking = false;
        loop {
            // What ends or closes a connection besides the client: polled
            // only when one of them woke the task, not at every read, write
            // or backend reply of the connection's requests.
            let park_after = (park && !parking).then_some(PARK_AFTER);
            let (stopping, activity) = (&self.stopping, &self.activity);
            let (draining, closing, close_by) = (self.draining, self.closing, self.close_by);
            let (idle, head) = (self.idle, self.head);
            // Boxed where it is made: the task keeps no room for it.
            let watch = Box::pin(async move {
                tokio::select! {
                    // HTTP/1 clients leave with their next reply; idle ones
                    // are closed when the drain ends, not now, so that none
                    // of them sends a request into a connection closing
                    // under it.
                    () = stopping.drain.cancelled(), if !draining => Event::Drain,
                    () = activity.goaway_wanted(), if !closing => Event::Close,
                    () = stopping.stop.cancelled(), if !closing => Event::Close,
                    quiet = activity.quiet(idle, head, park_after), if !closing => Event::Quiet(quiet),
                    () = tokio::time::sleep_until(close_by.unwrap_or_else(Instant::now)), if close_by.is_some() => {
                        Event::Overdue
                    }
                    else => std::future::pending().await,
                }
            });
            let event = tokio::select! {
                biased;
                result = std::future::poll_fn(|cx| conn.as_mut().poll_served(cx)) => {
                    if let Err(err) = result {
                        tracing::debug!(peer = %self.peer, error = %err, "connection ended with an error");
                        return Outcome::Finished;
                    }
                    return if parking && !self.closing { Outcome::Parked } else { Outcome::Finished };
                }
                event = OnWake::new(watch) => event,
            };
            match event {
                Event::Drain => {
                    self.draining = true;
                    if self.activity.is_http2() && !self.closing {
                        conn.as_mut().close();
                        self.closing = true;
                    }
                }
                Event::Close => {
                    conn.as_mut().close();
                    self.closing = true;
                }
                Event::Quiet(Quiet::Park) => {
                    conn.as_mut().close();
                    parking = true;
                }
                Event::Quiet(Quiet::Idle) => {
                    tracing::debug!(peer = %self.peer, "idle timeout: closing connection");
                    conn.as_mut().close();
                    self.closing = true;
                    self.close_by = Some(Instant::now() + CLOSE_GRACE);
                }
                // Dropped, as hyper's own header timeout does: there is no
                // request to answer yet, or (HTTP/2) none can get through.
                Event::Quiet(Quiet::SlowHead) => {
                    tracing::debug!(peer = %self.peer, "request head not received within server.header_read_timeout: closing connection");
                    return Outcome::Dropped;
                }
                Event::Overdue => {
                    tracing::debug!(peer = %self.peer, "idle connection still open after its close: dropped");
                    return Outcome::Dropped;
                }
            }
        }
    }

    /// Waits, holding no HTTP state, for a parked connection's next bytes.
    async fn parked<S: AsyncRead + Unpin>(&self, io: &mut S) -> Wake {
        // A drain changes nothing here: an idle HTTP/1 connection is closed
        // when the drain ends (`stop`), and one that sends a request
        // meanwhile is told to leave with its reply.
        tokio::select! {
            read = park::next_bytes(io) => match read {
                Ok(bytes) if !bytes.is_empty() => Wake::Bytes(bytes),
                Ok(_) => Wake::Close,
                Err(err) => {
                    tracing::debug!(peer = %self.peer, error = %err, "connection ended with an error");
                    Wake::Drop
                }
            },
            () = self.stopping.stop.cancelled() => Wake::Close,
            quiet = self.activity.quiet(self.idle, self.head, None) => match quiet {
                Quiet::SlowHead => {
                    tracing::debug!(peer = %self.peer, "request head not received within server.header_read_timeout: closing connection");
                    Wake::Drop
                }
                Quiet::Idle | Quiet::Park => {
                    tracing::debug!(peer = %self.peer, "idle timeout: closing connection");
                    Wake::Close
                }
            },
        }
    }
}

/// What the connection's watch saw.
enum Event {
    /// The drain began.
    Drain,
    /// A stop, or a GOAWAY wanted: close gracefully.
    Close,
    /// Idle, quiet enough to park, or a request head late.
    Quiet(Quiet),
    /// A connection asked to close is still open after its grace.
    Overdue,
}
