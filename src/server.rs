//! The accept loop: bounded connections, TLS handshake under a timeout,
//! HTTP/1.1 or HTTP/2 chosen by ALPN, idle and header timeouts, and graceful
//! shutdown that lets in-flight requests finish.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::gateway::Gateway;
use crate::handler;
use crate::idle::{Activity, Tracked};

/// Pause after a failed `accept` (e.g. out of file descriptors) before retrying.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(100);

/// Serves `listener` until `shutdown` completes, then stops accepting and
/// waits up to `server.shutdown_grace` for open connections to finish.
pub async fn run(listener: TcpListener, gateway: Arc<Gateway>, shutdown: impl Future<Output = ()>) {
    let settings = gateway.config.server.clone();
    let limit = Arc::new(Semaphore::new(settings.max_connections));
    let tracker = TaskTracker::new();
    let stop = CancellationToken::new();
    let http = Arc::new(http_builder(&gateway));
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
        let (gateway, http, stop) = (Arc::clone(&gateway), Arc::clone(&http), stop.clone());
        tracker.spawn(async move {
            connection(stream, peer, gateway, http, stop).await;
            drop(permit);
        });
    }
    drop(listener);
    tracing::info!(
        open = tracker.len(),
        "shutting down: no longer accepting, draining connections"
    );
    stop.cancel();
    tracker.close();
    if tokio::time::timeout(settings.shutdown_grace, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            open = tracker.len(),
            "shutdown grace period over: closing remaining connections"
        );
    }
}

fn http_builder(gateway: &Gateway) -> auto::Builder<TokioExecutor> {
    let s = &gateway.config.server;
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(s.header_read_timeout)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(s.h2_max_concurrent_streams);
    builder
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    gateway: Arc<Gateway>,
    http: Arc<auto::Builder<TokioExecutor>>,
    stop: CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    let Some(acceptor) = gateway.tls.clone() else {
        return serve(stream, peer, gateway, &http, stop).await;
    };
    let timeout = gateway.config.server.tls_handshake_timeout;
    match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => serve(tls, peer, gateway, &http, stop).await,
        Ok(Err(err)) => tracing::debug!(%peer, error = %err, "TLS handshake failed"),
        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
    }
}

async fn serve<S>(
    stream: S,
    peer: SocketAddr,
    gateway: Arc<Gateway>,
    http: &auto::Builder<TokioExecutor>,
    stop: CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let idle_timeout = gateway.config.server.idle_timeout;
    let activity = Activity::new();
    let io = TokioIo::new(Tracked::new(stream, Arc::clone(&activity)));
    let service = {
        let activity = Arc::clone(&activity);
        service_fn(move |req| {
            let gateway = Arc::clone(&gateway);
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
            () = activity.idle_for(idle_timeout), if !closing => {
                tracing::debug!(%peer, "idle timeout: closing connection");
                conn.as_mut().graceful_shutdown();
                closing = true;
            }
        }
    }
}
