//! The accept loop: bounded connections, TLS handshake under a timeout,
//! HTTP/1.1 or HTTP/2 chosen by ALPN, idle and header timeouts, and a
//! graceful stop that drains clients away and lets in-flight requests finish. Each connection takes the
//! current generation for its handshake; each request takes it again, so a
//! reload reaches keep-alive connections at their next request.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::header::CONNECTION;
use http::{HeaderValue, Request, Version};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::constants::CLOSE_GRACE;
use crate::gateway::Live;
use crate::handler;
use crate::idle::{Activity, Counting, Quiet, Tracked};
use crate::on_wake::OnWake;

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
            let (live, stopping) = (Arc::clone(self.live), self.stopping.clone());
            self.tracker.spawn(async move {
                let _open = live.metrics.connection();
                connection(stream, peer, live, stopping).await;
                drop(permit);
            });
        }
    }
}

async fn connection(stream: TcpStream, peer: SocketAddr, live: Arc<Live>, stopping: Stopping) {
    let _ = stream.set_nodelay(true);
    let gateway = live.current();
    let Some(acceptor) = gateway.tls.clone() else {
        return serve(stream, peer, live, stopping, Protocol::MaybeHttp2).await;
    };
    let timeout = gateway.config.server.tls_handshake_timeout;
    drop(gateway);
    // Fallible: a failed handshake hands the socket back, so it is counted
    // before the client sees it closed.
    match tokio::time::timeout(timeout, acceptor.accept(stream).into_fallible()).await {
        Ok(Ok(tls)) => {
            let (tls, protocol) = Protocol::of(tls);
            serve(tls, peer, live, stopping, protocol).await;
        }
        Ok(Err((err, socket))) => {
            live.metrics.tls_failure();
            tracing::debug!(%peer, error = %err, "TLS handshake failed");
            drop(socket);
        }
        Err(_) => {
            live.metrics.tls_failure();
            tracing::debug!(%peer, "TLS handshake timed out");
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
    /// What ALPN chose. It takes the stream and gives it back so that the
    /// async caller never borrows it: a borrowed local keeps its storage in
    /// the connection's future after the move, in every connection.
    fn of(tls: TlsStream<TcpStream>) -> (TlsStream<TcpStream>, Self) {
        let protocol = match tls.get_ref().1.alpn_protocol() {
            Some(b"h2") => Self::MaybeHttp2,
            _ => Self::Http1,
        };
        (tls, protocol)
    }
}

async fn serve<S>(
    stream: S,
    peer: SocketAddr,
    live: Arc<Live>,
    stopping: Stopping,
    protocol: Protocol,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let gateway = live.current();
    let server = &gateway.config.server;
    let (idle, head) = (server.idle_timeout, server.header_read_timeout);
    // HTTP/1 request heads are timed here only where hyper does not time
    // them; HTTP/2 header blocks always are.
    let (http, counting) = match protocol {
        Protocol::Http1 => (&gateway.http.heads_watched, Counting::Bytes),
        Protocol::MaybeHttp2 => (&gateway.http.heads_timed_by_hyper, Counting::Requests),
    };
    let activity = Activity::new(counting);
    let io = TokioIo::new(Tracked::new(stream, Arc::clone(&activity)));
    let service = {
        let activity = Arc::clone(&activity);
        service_fn(move |req: Request<Incoming>| {
            // The generation current now serves this request to its end.
            let gateway = live.current();
            let (in_flight, first_byte) = activity.begin();
            let version = req.version();
            let arrived = if version == Version::HTTP_2 {
                // Streams share the connection's bytes, which are not
                // parsed here: a stream arrives when hyper hands over its
                // decoded HEADERS.
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
                Ok::<_, Infallible>(response)
            }
        })
    };
    let conn = http.serve_connection(io, service);
    tokio::pin!(conn);
    let mut closing = false;
    let mut draining = false;
    // When a connection asked to close is dropped if still open.
    let mut close_by = None;
    loop {
        // What ends or closes a connection besides the client: polled only
        // when one of them woke the task, not at every read, write or
        // backend reply of the connection's requests.
        let (stopping, activity) = (&stopping, &activity);
        let watch = async move {
            tokio::select! {
                // HTTP/1 clients leave with their next reply; idle ones are
                // closed when the drain ends, not now, so that none of them
                // sends a request into a connection closing under it.
                () = stopping.drain.cancelled(), if !draining => Event::Drain,
                () = activity.goaway_wanted(), if !closing => Event::Close,
                () = stopping.stop.cancelled(), if !closing => Event::Close,
                quiet = activity.quiet(idle, head), if !closing => Event::Quiet(quiet),
                () = tokio::time::sleep_until(close_by.unwrap_or_else(Instant::now)), if close_by.is_some() => {
                    Event::Overdue
                }
                else => std::future::pending().await,
            }
        };
        let event = tokio::select! {
            biased;
            result = conn.as_mut() => {
                if let Err(err) = result {
                    tracing::debug!(%peer, error = %err, "connection ended with an error");
                }
                return;
            }
            event = OnWake::new(Box::pin(watch)) => event,
        };
        match event {
            Event::Drain => {
                draining = true;
                if activity.is_http2() && !closing {
                    conn.as_mut().graceful_shutdown();
                    closing = true;
                }
            }
            Event::Close => {
                conn.as_mut().graceful_shutdown();
                closing = true;
            }
            Event::Quiet(Quiet::Idle) => {
                tracing::debug!(%peer, "idle timeout: closing connection");
                conn.as_mut().graceful_shutdown();
                closing = true;
                close_by = Some(Instant::now() + CLOSE_GRACE);
            }
            // Dropped, as hyper's own header timeout does: there is no
            // request to answer yet, or (HTTP/2) none can get through.
            Event::Quiet(Quiet::SlowHead) => {
                tracing::debug!(%peer, "request head not received within server.header_read_timeout: closing connection");
                return;
            }
            Event::Overdue => {
                tracing::debug!(%peer, "idle connection still open after its close: dropped");
                return;
            }
        }
    }
}

/// What the connection's watch saw.
enum Event {
    /// The drain began.
    Drain,
    /// A stop, or a GOAWAY wanted: close gracefully.
    Close,
    /// Idle, or a request head late.
    Quiet(Quiet),
    /// A connection asked to close is still open after its grace.
    Overdue,
}
