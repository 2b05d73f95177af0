//! The floor of the gateway's stack, for `bench/run`: the same TLS listener
//! (tokio-rustls, hyper HTTP/1.1 keep-alive) and the same pooled backend
//! client (hyper-util legacy client), with none of the gateway's work: no
//! CORS, no payload parsing, no templates, no reply normalization, no log.
//! A POST is forwarded as is to the backend and its reply body returned.
//! What this serves per second bounds what the gateway can serve on the same
//! core; the benchmark prints it beside nginx and the gateway.
//!
//!     floor LISTEN CERT KEY BACKEND_URL

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;

type Client = hyper_util::client::legacy::Client<HttpConnector, Full<Bytes>>;

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
    let backend: hyper::Uri = backend.parse()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = TcpListener::bind(listen.as_str()).await?;
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        let client: Client =
            hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build(http);
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
                    async move { Ok::<_, Infallible>(forward(req, &client, backend).await) }
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
    backend: hyper::Uri,
) -> Response<Full<Bytes>> {
    let content_type = req.headers().get(http::header::CONTENT_TYPE).cloned();
    let Ok(body) = req.into_body().collect().await else {
        return Response::new(Full::default());
    };
    let mut out = Request::post(backend)
        .body(Full::new(body.to_bytes()))
        .unwrap_or_default();
    if let Some(ct) = content_type {
        out.headers_mut().insert(http::header::CONTENT_TYPE, ct);
    }
    match client.request(out).await {
        Ok(reply) => match reply.into_body().collect().await {
            Ok(body) => Response::new(Full::new(body.to_bytes())),
            Err(_) => Response::new(Full::default()),
        },
        Err(_) => Response::new(Full::default()),
    }
}
