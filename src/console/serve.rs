//! The console's requests on the ops listener: the page (`/`, when the
//! client prefers HTML), its script and stylesheet, and the JSON under
//! `/api/`. Every one of them passes the same door first: the credentials
//! when the config names a secret; without one (a loopback console), a
//! `Host` that names this host, so a web page a browser of this host opens
//! cannot read the console by pointing a name of its own at 127.0.0.1
//! (DNS rebinding). `/api/calls` waits for the next call (a long poll,
//! bounded in time and in how many wait at once), so the page updates as
//! soon as a call is answered without asking again and again.

use std::time::Duration;

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONNECTION, CONTENT_TYPE, HOST, X_CONTENT_TYPE_OPTIONS};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::Full;

use super::api::{self, Served};
use super::{auth, Console};
use crate::constants::CONSOLE_MAX_WAIT;

/// The console page's CSP: its own script, stylesheet and API only; no
/// inline script or style, no frame may embed it.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// Calls one answer lists at most.
const MAX_LISTED: usize = 200;

/// The console's answer to `req`, or `None` when the path is not the
/// console's.
pub async fn answer<B>(
    console: &Console,
    served: &Served<'_>,
    req: &Request<B>,
) -> Option<Response<Full<Bytes>>> {
    let path = req.uri().path();
    let ours = matches!(path, "/" | "/console.js" | "/console.css") || path.starts_with("/api/");
    if !ours {
        return None;
    }
    let credentials = console.settings().auth.as_ref();
    if credentials.is_none() && !local_host(req.headers()) {
        return Some(json(
            StatusCode::MISDIRECTED_REQUEST,
            r#"{"error":"the console answers requests for this host only (127.0.0.1, [::1] or localhost)"}"#.into(),
        ));
    }
    if !auth::allowed(credentials, req.headers()) {
        let mut response = json(
            StatusCode::UNAUTHORIZED,
            r#"{"error":"the console needs the user and secret of [ops] console_secret_env or console_secret_file"}"#.into(),
        );
        response
            .headers_mut()
            .insert(auth::CHALLENGE_HEADER, auth::CHALLENGE);
        return Some(response);
    }
    Some(match path {
        "/" if crate::accept::prefers_html(req.headers().get(http::header::ACCEPT)) => page(),
        "/" => json(
            StatusCode::OK,
            serde_json::json!({
                "console": "/ (in a browser)",
                "api": ["/api/overview", "/api/calls?after=SEQ&wait_ms=MS", "/api/calls/SEQ"],
                "also": ["/healthz", "/metrics"],
            })
            .to_string(),
        ),
        "/console.js" | "/console.css" => crate::pages::asset(path)?,
        "/api/overview" => json(
            StatusCode::OK,
            api::overview(console, served).to_string(),
        ),
        "/api/calls" => {
            let (after, wait) = calls_query(req.uri().query());
            let (last, calls) = console.calls_after(after, MAX_LISTED, wait).await;
            let mut response = json(
                StatusCode::OK,
                api::calls(console, last, &calls, &served.secrets()).to_string(),
            );
            if !wait.is_zero() {
                // A long poll gets a connection of its own each time, so the
                // listener's connection life never cuts one short.
                response
                    .headers_mut()
                    .insert(CONNECTION, HeaderValue::from_static("close"));
            }
            response
        }
        _ => match path.strip_prefix("/api/calls/").map(str::parse::<u64>) {
            Some(Ok(seq)) => match console.call(seq) {
                Some(call) => json(StatusCode::OK, api::call(console, &call, served).to_string()),
                None => json(
                    StatusCode::NOT_FOUND,
                    r#"{"error":"no such call: it was never recorded, or newer calls pushed it out"}"#.into(),
                ),
            },
            _ => json(
                StatusCode::NOT_FOUND,
                r#"{"error":"not found: try /api/overview, /api/calls or /api/calls/SEQ"}"#.into(),
            ),
        },
    })
}

/// `after` and `wait_ms` of `/api/calls`; the wait is bounded.
fn calls_query(query: Option<&str>) -> (u64, Duration) {
    let (mut after, mut wait) = (0, Duration::ZERO);
    for (key, value) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match &*key {
            "after" => after = value.parse().unwrap_or(0),
            "wait_ms" => {
                wait = Duration::from_millis(value.parse().unwrap_or(0)).min(CONSOLE_MAX_WAIT);
            }
            _ => {}
        }
    }
    (after, wait)
}

/// Whether `Host` names this host by a loopback address or `localhost`.
fn local_host(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(HOST).and_then(|h| h.to_str().ok()) else {
        return false;
    };
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn page() -> Response<Full<Bytes>> {
    crate::pages::html(
        StatusCode::OK,
        "console.html",
        minijinja::context! {
            name => env!("CARGO_PKG_NAME"),
            version => env!("CARGO_PKG_VERSION"),
        },
        CSP,
    )
}

fn json(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_this_hosts_names_pass_without_credentials() {
        let with = |host: &str| {
            let mut h = HeaderMap::new();
            h.insert(HOST, HeaderValue::from_str(host).unwrap());
            local_host(&h)
        };
        for host in [
            "127.0.0.1:9090",
            "localhost:9090",
            "LOCALHOST",
            "[::1]:9090",
            "127.0.0.2",
        ] {
            assert!(with(host), "{host}");
        }
        for host in [
            "evil.example:9090",
            "192.0.2.1:9090",
            "[2001:db8::1]:9090",
            "localhost.evil",
        ] {
            assert!(!with(host), "{host}");
        }
        assert!(!local_host(&HeaderMap::new()));
    }

    #[test]
    fn the_wait_is_bounded() {
        assert_eq!(calls_query(None), (0, Duration::ZERO));
        assert_eq!(
            calls_query(Some("after=12&wait_ms=999999999")),
            (12, CONSOLE_MAX_WAIT)
        );
        assert_eq!(calls_query(Some("after=x&wait_ms=-1")), (0, Duration::ZERO));
    }
}
