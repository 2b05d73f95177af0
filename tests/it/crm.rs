//! Test CRMs: real HTTP and HTTPS servers on 127.0.0.1:0 that record exactly
//! what they receive and answer as a test tells them, including badly
//! (hang, reset, garbage, huge bodies, redirects).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::support::TestCa;

/// A request as the CRM received it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub version: http::Version,
    pub method: Method,
    /// Path and query.
    pub target: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// How the CRM answers one request.
pub enum Answer {
    /// Status, content type, body.
    Reply(u16, &'static str, String),
    /// An HTML page with extra headers (e.g. framing rules).
    Page(Vec<(&'static str, &'static str)>),
    /// A redirect to a location.
    Redirect(u16, String),
    /// Never answers.
    Hang,
    /// Answers like `Reply`, after a delay.
    Slow(Duration, u16, &'static str, String),
    /// A chunked body of this many bytes, with no length announced.
    Stream(usize),
    /// Like `Reply`, with extra headers (`WWW-Authenticate`, rate limits).
    Headed(u16, &'static str, Vec<(&'static str, String)>, String),
}

type Handler = dyn Fn(&Seen) -> Answer + Send + Sync;

/// A running test CRM; dropping it stops it.
pub struct Crm {
    pub addr: SocketAddr,
    pub tls: bool,
    seen: Arc<Mutex<Vec<Seen>>>,
    connections: Arc<std::sync::atomic::AtomicUsize>,
    task: JoinHandle<()>,
}

impl Drop for Crm {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Crm {
    /// A plain-HTTP CRM.
    pub async fn start(handler: impl Fn(&Seen) -> Answer + Send + Sync + 'static) -> Self {
        Self::serve(None, Arc::new(handler)).await
    }

    /// An HTTPS CRM with a certificate from `ca` (HTTP/1.1 and h2 by ALPN).
    pub async fn start_tls(
        ca: &TestCa,
        handler: impl Fn(&Seen) -> Answer + Send + Sync + 'static,
    ) -> Self {
        Self::start_tls_with(ca, None, handler).await
    }

    /// Like [`Crm::start_tls`], and when `clients` is given, a client
    /// certificate signed by that CA is required.
    pub async fn start_tls_with(
        ca: &TestCa,
        clients: Option<&TestCa>,
        handler: impl Fn(&Seen) -> Answer + Send + Sync + 'static,
    ) -> Self {
        use rustls::pki_types::pem::PemObject;
        let chain = rustls::pki_types::CertificateDer::pem_slice_iter(ca.cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(ca.key_pem.as_bytes()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .unwrap();
        let builder = match clients {
            None => builder.with_no_client_auth(),
            Some(client_ca) => {
                let mut roots = rustls::RootCertStore::empty();
                roots.add(client_ca.ca_der.clone()).unwrap();
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider,
                )
                .build()
                .unwrap();
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config = builder.with_single_cert(chain, key).unwrap();
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        Self::serve(Some(acceptor), Arc::new(handler)).await
    }

    async fn serve(tls: Option<tokio_rustls::TlsAcceptor>, handler: Arc<Handler>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = Arc::clone(&seen);
        let is_tls = tls.is_some();
        let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let accepted = Arc::clone(&connections);
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                accepted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let handler = Arc::clone(&handler);
                let record = Arc::clone(&record);
                let tls = tls.clone();
                conns.spawn(async move {
                    let service = service_fn(move |req| {
                        respond(req, Arc::clone(&handler), Arc::clone(&record))
                    });
                    let builder =
                        hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    match tls {
                        Some(acceptor) => {
                            if let Ok(stream) = acceptor.accept(tcp).await {
                                let _ = builder
                                    .serve_connection(TokioIo::new(stream), service)
                                    .await;
                            }
                        }
                        None => {
                            let _ = builder.serve_connection(TokioIo::new(tcp), service).await;
                        }
                    }
                });
            }
        });
        Self {
            addr,
            tls: is_tls,
            seen,
            connections,
            task,
        }
    }

    /// The base URL, e.g. `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.addr.port())
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Every request received so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

async fn respond(
    req: Request<Incoming>,
    handler: Arc<Handler>,
    record: Arc<Mutex<Vec<Seen>>>,
) -> Result<Response<BoxBody<Bytes, Infallible>>, Infallible> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let seen = Seen {
        version: parts.version,
        method: parts.method,
        target: parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_default(),
        headers: parts.headers,
        body,
    };
    record.lock().unwrap().push(seen.clone());
    let full = |s: String| Full::new(Bytes::from(s)).boxed();
    Ok(match handler(&seen) {
        Answer::Reply(status, ct, body) => Response::builder()
            .status(status)
            .header("content-type", ct)
            .body(full(body))
            .unwrap(),
        Answer::Headed(status, ct, headers, body) => {
            let mut builder = Response::builder()
                .status(status)
                .header("content-type", ct);
            for (name, value) in headers {
                builder = builder.header(name, value);
            }
            builder.body(full(body)).unwrap()
        }
        Answer::Page(headers) => {
            let mut builder = Response::builder().header("content-type", "text/html");
            for (name, value) in headers {
                builder = builder.header(name, value);
            }
            builder.body(full("<p>crm page</p>".into())).unwrap()
        }
        Answer::Redirect(status, location) => Response::builder()
            .status(status)
            .header("location", location)
            .body(full(String::new()))
            .unwrap(),
        Answer::Slow(delay, status, ct, body) => {
            tokio::time::sleep(delay).await;
            Response::builder()
                .status(status)
                .header("content-type", ct)
                .body(full(body))
                .unwrap()
        }
        Answer::Hang => {
            tokio::time::sleep(Duration::from_secs(60)).await;
            Response::new(full(String::new()))
        }
        Answer::Stream(total) => {
            let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
            let frames = (0..total.div_ceil(chunk.len()))
                .map(move |_| Ok::<_, Infallible>(Frame::data(chunk.clone())));
            let body = StreamBody::new(tokio_stream::iter(frames));
            Response::builder()
                .status(StatusCode::OK)
                .header("content-type", "application/json")
                .body(BodyExt::boxed(body))
                .unwrap()
        }
    })
}

/// How a raw TCP server misbehaves.
#[derive(Clone, Copy)]
pub enum Raw {
    /// Reads the request, then resets the connection.
    Reset,
    /// Reads the request, then sends bytes that are not HTTP and closes.
    Garbage,
    /// Answers one request with a keep-alive JSON reply (`url` set), then
    /// closes the connection, as a CRM closing idle connections does.
    OneThenClose,
}

/// A raw TCP server that misbehaves on every connection; returns its URL.
pub async fn raw_server(behaviour: Raw) -> (String, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut tcp, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = tcp.read(&mut buf).await;
                match behaviour {
                    Raw::Reset => {
                        // Linger zero makes close send RST at once; nothing blocks.
                        #[allow(deprecated)]
                        let _ = tcp.set_linger(Some(Duration::ZERO));
                        drop(tcp);
                    }
                    Raw::Garbage => {
                        let _ = tcp.write_all(b"\x00\xff\xfeNOT HTTP AT ALL\r\n\r\n").await;
                        let _ = tcp.shutdown().await;
                    }
                    Raw::OneThenClose => {
                        let body = r#"{"url":"https://crm.example.org/c/1"}"#;
                        let reply = format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        let _ = tcp.write_all(reply.as_bytes()).await;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        let _ = tcp.shutdown().await;
                    }
                }
            });
        }
    });
    (format!("http://127.0.0.1:{}", addr.port()), task)
}

/// A URL on which nothing listens (the port was bound, then released).
pub async fn refused_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    format!("http://127.0.0.1:{port}")
}
