//! The accept loop: bounded connections, TLS handshake under a timeout,
//! HTTP/1.1 or HTTP/2 chosen by ALPN, idle and header timeouts, and graceful
//! shutdown that lets in-flight requests finish. Each connection takes the
//! current generation for its handshake; each request takes it again, so a
//! reload reaches keep-alive connections at their next request.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::gateway::Live;
use crate::handler;
use crate::idle::{Activity, Quiet, Tracked};

/// Pause after a failed `accept` (e.g. out of file descriptors) before retrying.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(100);

/// Serves `listener` until `shutdown` completes, then stops accepting and
/// waits up to `server.shutdown_grace` for open connections to finish.
pub async fn run(listener: TcpListener, live: Arc<Live>, shutdown: impl Future<Output = ()>) {
    let max_connections = live.current().config.server.max_connections;
    let limit = Arc::new(Semaphore::new(max_connections));
    let tracker = TaskTracker::new();
    let stop = CancellationToken::new();
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = Arc::clone(&limit).acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(err) => {
                    tracing::error!(error = %err, "accept failed");
                    tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let (live, stop) = (Arc::clone(&live), stop.clone());
        tracker.spawn(async move {
            let _open = live.metrics.connection();
            connection(stream, peer, live, stop).await;
            drop(permit);
        });
    }
    drop(listener);
    live.start_draining();
    tracing::info!(
        open = tracker.len(),
        "shutting down: no longer accepting, draining connections"
    );
    stop.cancel();
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

async fn connection(stream: TcpStream, peer: SocketAddr, live: Arc<Live>, stop: CancellationToken) {
    let _ = stream.set_nodelay(true);
    let gateway = live.current();
    let Some(acceptor) = gateway.tls.clone() else {
        return serve(stream, peer, live, stop, Protocol::MaybeHttp2).await;
    };
    let timeout = gateway.config.server.tls_handshake_timeout;
    drop(gateway);
    // Fallible: a failed handshake hands the socket back, so it is counted
    // before the client sees it closed.
    match tokio::time::timeout(timeout, acceptor.accept(stream).into_fallible()).await {
        Ok(Ok(tls)) => {
            let (tls, protocol) = Protocol::of(tls);
            serve(tls, peer, live, stop, protocol).await;
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
    stop: CancellationToken,
    protocol: Protocol,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let gateway = live.current();
    let server = &gateway.config.server;
    let idle = server.idle_timeout;
    // Request heads are timed here only where hyper does not time them.
    let (http, head) = match protocol {
        Protocol::Http1 => (
            &gateway.http.heads_watched,
            Some(server.header_read_timeout),
        ),
        Protocol::MaybeHttp2 => (&gateway.http.heads_timed_by_hyper, None),
    };
    let activity = Activity::new();
    let io = TokioIo::new(Tracked::new(stream, Arc::clone(&activity)));
    let service = {
        let activity = Arc::clone(&activity);
        service_fn(move |req| {
            // The generation current now serves this request to its end.
            let gateway = live.current();
            let in_flight = activity.begin();
            async move {
                let response = handler::handle(req, &gateway).await;
                drop(in_flight);
                Ok::<_, Infallible>(response)
            }
        })
    };
    let conn = http.serve_connection(io, service);
    tokio::pin!(conn);
    let mut closing = false;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(err) = result {
                    tracing::debug!(%peer, error = %err, "connection ended with an error");
                }
                return;
            }
            () = stop.cancelled(), if !closing => {
                conn.as_mut().graceful_shutdown();
                closing = true;
            }
            quiet = activity.quiet(idle, head), if !closing => match quiet {
                Quiet::Idle => {
                    tracing::debug!(%peer, "idle timeout: closing connection");
                    conn.as_mut().graceful_shutdown();
                    closing = true;
                }
                // Dropped, as hyper's own header timeout does: there is no
                // request to answer yet.
                Quiet::SlowHead => {
                    tracing::debug!(%peer, "request head not received within server.header_read_timeout: closing connection");
                    return;
                }
            },
        }
    }
}
