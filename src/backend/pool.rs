//! Keep-alive connections to backends, kept per origin, over hyper's own
//! connection types: TCP (and TLS with ALPN `h2` / `http/1.1`) set up once,
//! then reused request after request.
//!
//! Why not hyper-util's pooled client: it costs noticeably more per request
//! than hyper's connections kept in a plain list (docs/performance.md),
//! mostly a task spawned per request to put the connection back and the
//! request URI rebuilt. Here, as in that list, a
//! connection goes back to the pool when its reply has been read, by the
//! request that used it; the pool is keyed by origin only because redirects
//! and the framing check may reach other hosts.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http::header::HOST;
use http::{HeaderValue, Request, Response, Uri};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio::time::Instant;
use url::{Host, Url};

/// An unused connection is closed after this long.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Unused connections kept per origin; more are closed.
const MAX_IDLE_PER_ORIGIN: usize = 256;

type Body = Full<Bytes>;

/// Where a connection goes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Origin {
    https: bool,
    host: Host<String>,
    port: u16,
}

impl Origin {
    fn of(url: &Url) -> Result<Self, PoolError> {
        let https = match url.scheme() {
            "https" => true,
            "http" => false,
            other => {
                return Err(PoolError::Connect(format!(
                    "scheme {other:?} is not http(s)"
                )))
            }
        };
        let host = url
            .host()
            .ok_or_else(|| PoolError::Connect("URL has no host".into()))?
            .to_owned();
        let port = url
            .port_or_known_default()
            .ok_or_else(|| PoolError::Connect("URL has no port".into()))?;
        Ok(Self { https, host, port })
    }
}

/// A request-sending half of one connection.
enum Sender {
    H1(http1::SendRequest<Body>),
    /// Multiplexed: one kept per origin, cloned for each request.
    H2(http2::SendRequest<Body>),
}

impl Sender {
    fn is_closed(&self) -> bool {
        match self {
            Sender::H1(s) => s.is_closed(),
            Sender::H2(s) => s.is_closed(),
        }
    }
}

struct Idle {
    sender: Sender,
    since: Instant,
}

/// Why a request got no response.
#[derive(Debug)]
pub(super) enum PoolError {
    /// No connection could be made (TCP, DNS, TLS or timeout).
    Connect(String),
    /// The connection failed once the request was on its way.
    Io(hyper::Error),
}

/// A connection lent to one request; [`Pool::checkin`] gives it back once
/// the reply has been read in full.
pub(super) struct Lent {
    origin: Origin,
    sender: Sender,
}

/// The connections of one backend client.
pub(super) struct Pool {
    tls: tokio_rustls::TlsConnector,
    connect_timeout: Duration,
    idle: Mutex<HashMap<Origin, Vec<Idle>>>,
}

impl Pool {
    /// An empty pool; TLS connections offer `h2` and `http/1.1`.
    pub(super) fn new(mut tls: rustls::ClientConfig, connect_timeout: Duration) -> Self {
        tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Self {
            tls: tokio_rustls::TlsConnector::from(Arc::new(tls)),
            connect_timeout,
            idle: Mutex::default(),
        }
    }

    /// Sends `req` to `url`'s origin on a pooled connection, or a new one.
    /// A pooled connection the backend closed before taking the request
    /// is replaced, once, by another; a request it took is never sent twice.
    pub(super) async fn send(
        &self,
        mut req: Request<Body>,
        url: &Url,
    ) -> Result<(Response<Incoming>, Lent), PoolError> {
        let mut origin = Origin::of(url)?;
        let mut reused = true;
        loop {
            let sender = match self.checkout(&origin).await {
                Some(sender) => sender,
                None => {
                    reused = false;
                    // Boxed: connecting is rare and its future large; kept
                    // inline it would be copied with every request's future.
                    Box::pin(self.connect(&origin)).await?
                }
            };
            let mut lent = Lent { origin, sender };
            prepare(&mut req, url, &lent.sender);
            let sent = match &mut lent.sender {
                Sender::H1(s) => s.try_send_request(req).await,
                Sender::H2(s) => s.try_send_request(req).await,
            };
            match sent {
                Ok(response) => return Ok((response, lent)),
                Err(mut err) => match err.take_message() {
                    Some(unsent) if reused => {
                        req = unsent;
                        origin = lent.origin;
                        reused = false;
                    }
                    _ => return Err(PoolError::Io(err.into_error())),
                },
            }
        }
    }

    /// Gives a connection back for the next request to that origin.
    pub(super) fn checkin(&self, lent: Lent) {
        if lent.sender.is_closed() || matches!(lent.sender, Sender::H2(_)) {
            return; // an h2 connection never left the pool
        }
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let list = idle.entry(lent.origin).or_default();
        if list.len() < MAX_IDLE_PER_ORIGIN {
            list.push(Idle {
                sender: lent.sender,
                since: Instant::now(),
            });
        }
    }

    /// The most recently used open connection to `origin`, if any.
    async fn checkout(&self, origin: &Origin) -> Option<Sender> {
        loop {
            let found = {
                let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
                let list = idle.get_mut(origin)?;
                let now = Instant::now();
                list.retain(|i| !i.sender.is_closed() && now - i.since < IDLE_TIMEOUT);
                match list.last() {
                    Some(Idle {
                        sender: Sender::H2(s),
                        ..
                    }) => Some(Sender::H2(s.clone())),
                    Some(_) => list.pop().map(|i| i.sender),
                    None => None,
                }
            }?;
            // An h1 connection is ready once its last reply has been read;
            // its task may not have noticed yet.
            let ready = match found {
                Sender::H1(mut s) => s.ready().await.map(|()| Sender::H1(s)),
                Sender::H2(mut s) => s.ready().await.map(|()| Sender::H2(s)),
            };
            if let Ok(sender) = ready {
                return Some(sender);
            }
        }
    }

    async fn connect(&self, origin: &Origin) -> Result<Sender, PoolError> {
        tokio::time::timeout(self.connect_timeout, self.open(origin))
            .await
            .map_err(|_| {
                PoolError::Connect(format!(
                    "no connection within {} ms",
                    self.connect_timeout.as_millis()
                ))
            })?
    }

    async fn open(&self, origin: &Origin) -> Result<Sender, PoolError> {
        let failed = |what: &str, e: &dyn std::fmt::Display| {
            PoolError::Connect(format!("{what} {}:{}: {e}", origin.host, origin.port))
        };
        let tcp = match &origin.host {
            Host::Domain(name) => TcpStream::connect((name.as_str(), origin.port)).await,
            Host::Ipv4(ip) => TcpStream::connect((*ip, origin.port)).await,
            Host::Ipv6(ip) => TcpStream::connect((*ip, origin.port)).await,
        }
        .map_err(|e| failed("cannot connect to", &e))?;
        let _ = tcp.set_nodelay(true);
        if !origin.https {
            return h1(TokioIo::new(tcp)).await;
        }
        let name = match &origin.host {
            Host::Domain(name) => ServerName::try_from(name.clone()),
            Host::Ipv4(ip) => Ok(ServerName::from(std::net::IpAddr::V4(*ip))),
            Host::Ipv6(ip) => Ok(ServerName::from(std::net::IpAddr::V6(*ip))),
        }
        .map_err(|e| failed("invalid TLS name", &e))?;
        let tls = self
            .tls
            .connect(name, tcp)
            .await
            .map_err(|e| failed("TLS handshake failed with", &e))?;
        if tls.get_ref().1.alpn_protocol() == Some(b"h2") {
            let (sender, conn) = http2::Builder::new(TokioExecutor::new())
                .timer(TokioTimer::new())
                .handshake(TokioIo::new(tls))
                .await
                .map_err(|e| failed("HTTP/2 handshake failed with", &e))?;
            tokio::spawn(conn);
            let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
            idle.entry(origin.clone()).or_default().push(Idle {
                sender: Sender::H2(sender.clone()),
                since: Instant::now(),
            });
            return Ok(Sender::H2(sender));
        }
        h1(TokioIo::new(tls)).await
    }
}

async fn h1<T>(io: T) -> Result<Sender, PoolError>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (sender, conn) = http1::handshake(io)
        .await
        .map_err(|e| PoolError::Connect(format!("HTTP/1.1 handshake failed: {e}")))?;
    tokio::spawn(conn);
    Ok(Sender::H1(sender))
}

/// HTTP/1.1 wants the path as the target and a `Host` header; HTTP/2 the
/// full URI, from which hyper makes `:authority`.
fn prepare(req: &mut Request<Body>, url: &Url, sender: &Sender) {
    match sender {
        Sender::H1(_) => {
            let target = &url[url::Position::BeforePath..url::Position::AfterQuery];
            if let Ok(uri) = target.parse::<Uri>() {
                *req.uri_mut() = uri;
            }
            let authority = &url[url::Position::BeforeHost..url::Position::AfterPort];
            if let Ok(host) = HeaderValue::from_str(authority) {
                req.headers_mut().insert(HOST, host);
            }
        }
        Sender::H2(_) => {
            if let Ok(uri) = url.as_str().parse::<Uri>() {
                *req.uri_mut() = uri;
            }
            req.headers_mut().remove(HOST);
        }
    }
}
