//! The operators' listener, apart from the public one (loopback by default):
//! `/healthz` for load balancers and systemd checks, `/metrics` for
//! Prometheus. Plain HTTP/1.1, GET only, tiny replies.

use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use tokio::net::TcpListener;

use crate::gateway::Live;
use crate::plain_http;

const OPENMETRICS: HeaderValue =
    HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8");
const JSON: HeaderValue = HeaderValue::from_static("application/json");

/// Serves health and metrics until `shutdown` completes.
pub async fn run(listener: TcpListener, live: Arc<Live>, shutdown: impl Future<Output = ()>) {
    let handler = move |req: Request<Incoming>| {
        let response = answer(&req, &live);
        async move { response }
    };
    plain_http::serve(listener, handler, shutdown).await;
}

fn answer(req: &Request<Incoming>, live: &Live) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return reply(
            StatusCode::METHOD_NOT_ALLOWED,
            JSON,
            r#"{"error":"GET only"}"#.into(),
        );
    }
    match req.uri().path() {
        "/healthz" => {
            let generation = live.current().generation;
            let (status, state) = if live.is_draining() {
                (StatusCode::SERVICE_UNAVAILABLE, "draining")
            } else {
                (StatusCode::OK, "serving")
            };
            let body = serde_json::json!({
                "status": state,
                "generation": generation,
                "version": env!("CARGO_PKG_VERSION"),
            });
            reply(status, JSON, body.to_string())
        }
        "/metrics" => reply(StatusCode::OK, OPENMETRICS, live.metrics.encode()),
        _ => reply(
            StatusCode::NOT_FOUND,
            JSON,
            r#"{"error":"not found: try /healthz or /metrics"}"#.into(),
        ),
    }
}

fn reply(status: StatusCode, content_type: HeaderValue, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, content_type);
    response
}
