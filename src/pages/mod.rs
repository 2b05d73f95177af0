//! The gateway's own pages (completion wrapper, demo agent and CRM, error
//! pages, the ops console): static minijinja templates compiled once per process, with HTML
//! auto-escaping, so no value from a URL or a CRM can inject markup. Scripts
//! and styles are separate static files (no `style=` attribute either), so
//! every page can carry a CSP that forbids inline script and style.

use std::sync::OnceLock;

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, X_CONTENT_TYPE_OPTIONS};
use http::{HeaderValue, Response, StatusCode};
use http_body_util::Full;
use minijinja::Environment;

/// XucMgt's side of the integration, linked from the gateway's status page.
const XIVO_THIRD_PARTY_DOCS: &str = "https://gitlab.com/xivo.solutions/xivo-solutions-doc/-/blob/b03ed4f26a7016786acbad8c4bbe093ae6f84a2b/source/api_sdk/third_party/index.rst";

/// The CSP of the plain pages (errors, status, trust): their stylesheet only.
const PLAIN_CSP: &str = "default-src 'none'; style-src 'self'; base-uri 'none'; form-action 'none'";

/// Where the plain pages' stylesheet is served, on the gateway and the demo.
pub const PAGE_CSS: &str = "/page.css";

/// Static files: path, content type, body.
const ASSETS: [(&str, &str, &str); 9] = [
    (
        PAGE_CSS,
        "text/css; charset=utf-8",
        include_str!("page.css"),
    ),
    (
        "/wrap.js",
        "text/javascript; charset=utf-8",
        include_str!("wrap.js"),
    ),
    (
        "/wrap.css",
        "text/css; charset=utf-8",
        include_str!("wrap.css"),
    ),
    (
        "/demo/agent.js",
        "text/javascript; charset=utf-8",
        include_str!("agent.js"),
    ),
    (
        "/demo/agent.css",
        "text/css; charset=utf-8",
        include_str!("agent.css"),
    ),
    (
        "/demo/crm/card.css",
        "text/css; charset=utf-8",
        include_str!("card.css"),
    ),
    (
        "/demo/crm/card.js",
        "text/javascript; charset=utf-8",
        include_str!("card.js"),
    ),
    (
        "/console.js",
        "text/javascript; charset=utf-8",
        include_str!("console.js"),
    ),
    (
        "/console.css",
        "text/css; charset=utf-8",
        include_str!("console.css"),
    ),
];

fn env() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        for (name, source) in [
            ("wrap.html", include_str!("wrap.html")),
            ("error.html", include_str!("error.html")),
            ("agent.html", include_str!("agent.html")),
            ("card.html", include_str!("card.html")),
            ("trust.html", include_str!("trust.html")),
            ("status.html", include_str!("status.html")),
            ("console.html", include_str!("console.html")),
        ] {
            // The templates are part of the binary and tested: a failure here
            // is a build defect, reported on first use rather than at start.
            if let Err(err) = env.add_template(name, source) {
                tracing::error!(template = name, error = %err, "built-in page does not compile");
            }
        }
        env
    })
}

/// Renders a built-in page as an HTML response with the given CSP.
pub fn html(
    status: StatusCode,
    template: &str,
    ctx: minijinja::Value,
    csp: &str,
) -> Response<Full<Bytes>> {
    let body = env()
        .get_template(template)
        .and_then(|t| t.render(ctx))
        .unwrap_or_else(|err| {
            tracing::error!(template, error = %err, "built-in page failed to render");
            "<!doctype html><title>error</title><p>internal error</p>".to_owned()
        });
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    if let Ok(value) = HeaderValue::from_str(csp) {
        headers.insert(CONTENT_SECURITY_POLICY, value);
    }
    response
}

/// A plain error page (400, 404...). `message` is shown as a sentence:
/// its first letter is made a capital (error texts start lowercase).
pub fn error(status: StatusCode, heading: &str, message: &str) -> Response<Full<Bytes>> {
    let message = sentence(message);
    html(
        status,
        "error.html",
        minijinja::context! { heading, message },
        PLAIN_CSP,
    )
}

/// The demo's certificate-trust page: the browser reached it over TLS, so
/// it now accepts the certificate; it links back to the agent page.
pub fn trust(agent_url: &str) -> Response<Full<Bytes>> {
    html(
        StatusCode::OK,
        "trust.html",
        minijinja::context! { agent_url },
        PLAIN_CSP,
    )
}

/// What a browser sees on a route's path, which only XucMgt's POST serves:
/// name, version, and where to read on. A 405 all the same (with `Allow`),
/// so the status does not depend on who asks.
pub fn status(status: StatusCode) -> Response<Full<Bytes>> {
    html(
        status,
        "status.html",
        minijinja::context! {
            name => env!("CARGO_PKG_NAME"),
            version => env!("CARGO_PKG_VERSION"),
            docs => XIVO_THIRD_PARTY_DOCS,
            packaged => packaged_docs(),
        },
        PLAIN_CSP,
    )
}

/// Whether the package's documentation folder is on this host: the status
/// page sends readers there only when it is (not when run from source).
fn packaged_docs() -> bool {
    static PACKAGED: std::sync::LazyLock<bool> = std::sync::LazyLock::new(|| {
        std::path::Path::new(concat!(
            "/usr/share/doc/",
            env!("CARGO_PKG_NAME"),
            "/README.md"
        ))
        .is_file()
    });
    *PACKAGED
}

/// `text` with its first letter a capital.
fn sentence(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// A static script or stylesheet, if `path` names one.
pub fn asset(path: &str) -> Option<Response<Full<Bytes>>> {
    let (_, content_type, body) = ASSETS.iter().find(|(p, _, _)| *p == path)?;
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("max-age=3600"));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    Some(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_built_in_page_compiles() {
        for name in [
            "wrap.html",
            "error.html",
            "agent.html",
            "card.html",
            "trust.html",
            "status.html",
            "console.html",
        ] {
            assert!(env().get_template(name).is_ok(), "{name}");
        }
    }

    /// Every page's CSP forbids inline style, so a `style=` attribute would
    /// be dropped by the browser (and logged as a CSP error).
    #[test]
    fn no_page_has_a_style_attribute() {
        let pages = [
            include_str!("wrap.html"),
            include_str!("error.html"),
            include_str!("agent.html"),
            include_str!("card.html"),
            include_str!("trust.html"),
            include_str!("status.html"),
            include_str!("console.html"),
        ];
        for page in pages {
            assert!(!page.contains("style="), "{page}");
        }
    }

    #[test]
    fn error_messages_read_as_sentences() {
        let body = futures_body(error(
            StatusCode::BAD_REQUEST,
            "Bad",
            "the link has expired",
        ));
        assert!(body.contains("<p>The link has expired</p>"), "{body}");
        assert_eq!(sentence(""), "");
        assert_eq!(sentence("état"), "État");
    }

    #[test]
    fn values_are_html_escaped() {
        let r = error(
            StatusCode::BAD_REQUEST,
            "<b>x</b>",
            "\"><script>alert(1)</script>",
        );
        let body = futures_body(r);
        assert!(body.contains("&lt;b&gt;x&lt;&#x2f;b&gt;"), "{body}");
        assert!(!body.contains("<script>"), "{body}");
    }

    fn futures_body(r: Response<Full<Bytes>>) -> String {
        use http_body_util::BodyExt;
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let bytes = rt.block_on(r.into_body().collect()).unwrap().to_bytes();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}
