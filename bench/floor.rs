//! The floor of the gateway's stack, for `bench/run`: the gateway's own TLS
//! listener setup (tokio-rustls, hyper HTTP/1.1 keep-alive, one
//! single-threaded event loop) and its own pooled backend client, with none
//! of the gateway's work: no CORS check (an OPTIONS gets a fixed 204 with
//! the benchmark's CORS headers), no payload parsing, no templates, no
//! reply normalization. A POST is forwarded as is to the backend and its
//! reply body returned. Given LOG_FILE, each request writes one short line
//! there through the gateway's log output (batched per event-loop turn, see
//! `log_output`), so the floor pays for its log what the gateway pays for
//! the transport of its own lines, not for their content. What this serves
//! per second bounds what the gateway can serve on the same core; the
//! benchmark prints it beside nginx and the gateway.
//!
//!     floor LISTEN CERT KEY BACKEND_URL [LOG_FILE]
//!
//! It runs until SIGTERM.

use std::convert::Infallible;
use std::fs::File;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{
    ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN,
    ACCESS_CONTROL_MAX_AGE, CONTENT_TYPE, ORIGIN, VARY,
};
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use thirdparty_gateway::backend::client::Client;
use thirdparty_gateway::backend::request::BackendRequest;
use thirdparty_gateway::log_output::Output;
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};
use tracing_subscriber::fmt::MakeWriter;

/// The gateway's allocator, so the floor differs from it only by its work.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let (listen, cert, key, backend, log) = match args.as_slice() {
        [_, listen, cert, key, backend] => (listen, cert, key, backend, None),
        [_, listen, cert, key, backend, log] => (listen, cert, key, backend, Some(log)),
        _ => return Err("usage: floor LISTEN CERT KEY BACKEND_URL [LOG_FILE]".into()),
    };
    let log: Option<&'static Output<File>> = match log {
        Some(path) => Some(Box::leak(Box::new(Output::new(
            File::options().create(true).append(true).open(path)?,
        )))),
        None => None,
    };
    let certs = CertificateDer::pem_file_iter(cert)?.collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_file(key)?;
    let mut tls = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(certs, key)?;
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let backend = url::Url::parse(backend)?;
    let client_tls = thirdparty_gateway::tls::client_config(None, None)?;
    let client = Client::new(client_tls, Duration::from_secs(1), 0, 1 << 20);
    let _batching = log.map(Output::batching);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .on_thread_park(move || log.iter().for_each(|log| log.flush()))
        .build()?;
    if let Some(log) = log {
        runtime.spawn(log.latest());
    }
    runtime.block_on(async move {
        let listener = TcpListener::bind(listen.as_str()).await?;
        // Stopped by SIGTERM it exits rather than dies: bench/pgo's instrumented build writes its profile
        // at exit.
        let mut stop = signal(SignalKind::terminate())?;
        loop {
            let (stream, _) = tokio::select! {
                accepted = listener.accept() => accepted?,
                _ = stop.recv() => return Ok(()),
            };
            let _ = stream.set_nodelay(true);
            let (acceptor, client, backend) = (acceptor.clone(), client.clone(), backend.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(stream).await else {
                    return;
                };
                let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                    let (client, backend) = (client.clone(), backend.clone());
                    Box::pin(async move {
                        let start = Instant::now();
                        let method = req.method().clone();
                        let response = if method == Method::OPTIONS {
                            preflight(&req)
                        } else {
                            forward(req, &client, backend).await
                        };
                        if let Some(log) = log {
                            let line = format!(
                                "{:?} {method} / {} {:.2}ms\n",
                                std::time::SystemTime::now(),
                                response.status().as_u16(),
                                start.elapsed().as_secs_f64() * 1000.0
                            );
                            let _ = log.make_writer().write_all(line.as_bytes());
                        }
                        Ok::<_, Infallible>(response)
                    })
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    })
}

/// The 204 nginx and the gateway answer in the benchmark, without checking.
fn preflight(req: &Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::default());
    *response.status_mut() = StatusCode::NO_CONTENT;
    let headers = response.headers_mut();
    if let Some(origin) = req.headers().get(ORIGIN) {
        headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
    }
    headers.insert(
        VARY,
        HeaderValue::from_static(
            "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
        ),
    );
    headers.insert(
        ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("POST, OPTIONS"),
    );
    headers.insert(
        ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("Origin, X-Requested-With, Content-Type, Accept"),
    );
    headers.insert(ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
    response
}

async fn forward(
    req: Request<hyper::body::Incoming>,
    client: &Client,
    url: url::Url,
) -> Response<Full<Bytes>> {
    let mut headers = HeaderMap::new();
    if let Some(ct) = req.headers().get(CONTENT_TYPE) {
        headers.insert(CONTENT_TYPE, ct.clone());
    }
    let Ok(body) = req.into_body().collect().await else {
        return Response::new(Full::default());
    };
    let out = BackendRequest {
        method: Method::POST,
        url,
        headers,
        body: body.to_bytes(),
        carries_token: false,
        confidential: false,
        follows_redirects: true,
        hidden: Vec::new(),
        url_hidden: false,
    };
    match client.send(out).await {
        Ok(reply) => Response::new(Full::new(reply.body)),
        Err(_) => Response::new(Full::default()),
    }
}
