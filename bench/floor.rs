//! The floor of the gateway's stack, for `bench/run`: the gateway's own TLS
//! listener setup (tokio-rustls, hyper HTTP/1.1 keep-alive, one
//! single-threaded event loop) and its own pooled backend client, with none
//! of the gateway's work: no CORS, no payload parsing, no templates, no
//! reply normalization, no log line. A POST is forwarded as is to the
//! backend and its reply body returned. What this serves per second bounds
//! what the gateway can serve on the same core; the benchmark prints it
//! beside nginx and the gateway.
//!
//!     floor LISTEN CERT KEY BACKEND_URL

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderMap, Method};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use thirdparty_gateway::backend::client::Client;
use thirdparty_gateway::backend::request::BackendRequest;
use tokio::net::TcpListener;

/// The gateway's allocator, so the floor differs from it only by its work.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, listen, cert, key, backend] = args.as_slice() else {
        return Err("usage: floor LISTEN CERT KEY BACKEND_URL".into());
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
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = TcpListener::bind(listen.as_str()).await?;
        loop {
            let (stream, _) = listener.accept().await?;
            let _ = stream.set_nodelay(true);
            let (acceptor, client, backend) = (acceptor.clone(), client.clone(), backend.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(stream).await else {
                    return;
                };
                let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                    let (client, backend) = (client.clone(), backend.clone());
                    Box::pin(
                        async move { Ok::<_, Infallible>(forward(req, &client, backend).await) },
                    )
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    })
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
    };
    match client.send(out).await {
        Ok(reply) => Response::new(Full::new(reply.body)),
        Err(_) => Response::new(Full::default()),
    }
}
