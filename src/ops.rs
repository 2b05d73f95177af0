//! The operators' listener, apart from the public one (loopback by default):
//! `/healthz` for load balancers and systemd checks, `/metrics` for
//! Prometheus, and the console (`/`, `/api/...`, see [`crate::console`]).
//! Plain HTTP/1.1, GET only.

use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use tokio::net::TcpListener;

use crate::console::api::Served;
use crate::gateway::Live;
use crate::plain_http;

const OPENMETRICS: HeaderValue =
    HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8");
const JSON: HeaderValue = HeaderValue::from_static("application/json");

/// Serves health, metrics and the console until `shutdown` completes.
pub async fn run(listener: TcpListener, live: Arc<Live>, shutdown: impl Future<Output = ()>) {
    let handler = move |req: Request<Incoming>| {
        let live = Arc::clone(&live);
        async move {
            match answer(&req, &live) {
                Some(response) => response,
                None => console(&req, &live).await,
            }
        }
    };
    plain_http::serve(listener, handler, shutdown).await;
}

/// The console's answer, or a 404 when it is off or the path is not its.
async fn console(req: &Request<Incoming>, live: &Live) -> Response<Full<Bytes>> {
    if let Some(console) = live.console.as_deref().filter(|c| c.settings().page) {
        let gateway = live.current();
        let served = Served {
            router: &gateway.config.router,
            backends: &gateway.config.backends,
            generation: gateway.generation,
        };
        if let Some(response) = crate::console::serve::answer(console, &served, req).await {
            return response;
        }
    }
    reply(
        StatusCode::NOT_FOUND,
        JSON,
        r#"{"error":"not found: try /healthz, /metrics or the console at /"}"#.into(),
    )
}

/// Health and metrics; `None` for the console's paths.
fn answer(req: &Request<Incoming>, live: &Live) -> Option<Response<Full<Bytes>>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return Some(reply(
            StatusCode::METHOD_NOT_ALLOWED,
            JSON,
            r#"{"error":"GET only"}"#.into(),
        ));
    }
    Some(match req.uri().path() {
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
        _ => return None,
    })
}

fn reply(status: StatusCode, content_type: HeaderValue, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, content_type);
    response
}
