//! The built-in demo (`[demo] enabled = true`), on a listener of its own so
//! the browser sees two origins, as with a real XucMgt:
//!
//! - `/demo/agent`: emulates the XucMgt agent page (payload, call events,
//!   the contract reply, the third-party tab, pause/ready, `closeThirdParty`);
//! - `/demo/crm/...`: a tiny CRM: a JSON lookup API, a customer card page
//!   with a close button, and a "legacy" card that refuses to be framed.
//!
//! The shipped `config.toml` routes calls to this CRM, so the whole round
//! trip works with no external system.

use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, LOCATION, X_FRAME_OPTIONS};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use serde::Deserialize;
use tokio::net::TcpListener;
use url::Url;

use crate::pages;
use crate::plain_http;

/// The sample call the agent page starts with.
const SAMPLE: &str = include_str!("../tests/fixtures/seed-queue-call.json");

/// The demo CRM's customers: phone digits, id, name, contract.
const CUSTOMERS: [(&str, u32, &str, &str); 3] = [
    ("1001", 7, "ACME Trucks", "C-1001"),
    ("0298765432", 12, "Dupont & Fils", "C-1234"),
    ("0612345678", 31, "Martin Transport", "C-0612"),
];

/// Serves the demo pages until `shutdown`. `gateway_url` is the URL the
/// agent page POSTs to (its THIRD_PARTY_URL).
pub async fn run(listener: TcpListener, gateway_url: Url, shutdown: impl Future<Output = ()>) {
    let gateway_url = Arc::new(gateway_url);
    let handler = move |req: Request<Incoming>| {
        let gateway_url = Arc::clone(&gateway_url);
        async move { answer(req, &gateway_url).await }
    };
    plain_http::serve(listener, handler, shutdown).await;
}

async fn answer(req: Request<Incoming>, gateway_url: &Url) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    match (req.method(), path.as_str()) {
        (&Method::GET, "/") => {
            let mut r = Response::new(Full::default());
            *r.status_mut() = StatusCode::FOUND;
            r.headers_mut()
                .insert(LOCATION, HeaderValue::from_static("/demo/agent"));
            r
        }
        (&Method::GET, "/demo/agent") => agent_page(gateway_url),
        (&Method::GET, "/demo/crm/card") => card(&query, false),
        (&Method::GET, "/demo/crm/legacy") => card(&query, true),
        (&Method::GET | &Method::POST, "/demo/crm/api/lookup") => lookup(req, &query).await,
        (&Method::GET, p) => pages::asset(p).unwrap_or_else(not_found),
        _ => not_found(),
    }
}

fn not_found() -> Response<Full<Bytes>> {
    pages::error(
        StatusCode::NOT_FOUND,
        "Not found",
        "The demo serves /demo/agent and /demo/crm/.",
    )
}

fn agent_page(gateway_url: &Url) -> Response<Full<Bytes>> {
    let payload = serde_json::from_str::<serde_json::Value>(SAMPLE)
        .and_then(|v| serde_json::to_string_pretty(&v))
        .unwrap_or_else(|_| SAMPLE.to_owned());
    let csp = format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src {}; \
         frame-src http: https:; base-uri 'none'; form-action 'none'",
        gateway_url.origin().ascii_serialization()
    );
    // Until the browser accepts the gateway's certificate every call fails:
    // the page links where accepting it is one click.
    let trust_url = gateway_url.join("/demo/trust").ok().map(String::from);
    pages::html(
        StatusCode::OK,
        "agent.html",
        minijinja::context! { gateway_url => gateway_url.as_str(), payload, trust_url },
        &csp,
    )
}

fn param(query: &str, name: &str) -> Option<String> {
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

fn find(
    phone: Option<&str>,
    id: Option<&str>,
) -> Option<(&'static str, u32, &'static str, &'static str)> {
    let digits: Option<String> = phone.map(|p| p.chars().filter(char::is_ascii_digit).collect());
    CUSTOMERS.iter().copied().find(|(p, i, _, _)| {
        digits.as_deref() == Some(*p) || id.is_some_and(|id| id == i.to_string())
    })
}

/// A customer card; the legacy one refuses to be framed, as many CRMs do.
fn card(query: &str, legacy: bool) -> Response<Full<Bytes>> {
    let phone = param(query, "phone");
    let id = param(query, "id");
    let (phone, id, name, contract) = match find(phone.as_deref(), id.as_deref()) {
        Some((p, i, n, c)) => (p.to_owned(), i.to_string(), n, c),
        None => (phone.unwrap_or_default(), "-".into(), "Unknown caller", "-"),
    };
    let mut response = pages::html(
        StatusCode::OK,
        "card.html",
        minijinja::context! { phone, id, name, contract, legacy },
        "default-src 'none'; script-src 'self'; style-src 'self'",
    );
    if legacy {
        response
            .headers_mut()
            .insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    }
    response
}

#[derive(Deserialize)]
struct Lookup {
    phone: String,
}

/// `{"phone": ...}` (POST) or `?phone=` (GET) → the customer, with a
/// relative card URL as many CRMs answer.
async fn lookup(req: Request<Incoming>, query: &str) -> Response<Full<Bytes>> {
    let phone = if req.method() == Method::POST {
        let body = Limited::new(req.into_body(), 16 * 1024).collect().await;
        body.ok()
            .and_then(|b| serde_json::from_slice::<Lookup>(&b.to_bytes()).ok())
            .map(|l| l.phone)
    } else {
        param(query, "phone")
    };
    let body = match find(phone.as_deref(), None) {
        Some((p, id, name, contract)) => serde_json::json!({
            "found": true,
            "customer": { "id": id, "name": name, "phone": p, "contract": contract,
                          "card": format!("/demo/crm/card?id={id}") }
        }),
        None => serde_json::json!({ "found": false }),
    };
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}
