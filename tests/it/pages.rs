//! The gateway's own plain pages over real TLS: what a browser gets on a
//! route's path (a status page) and what a program gets (JSON), by
//! `Accept`; the demo's trust page and the error pages, styled by a
//! stylesheet their CSP allows, never by `style=` attributes it blocks.

use bytes::Bytes;
use http_body_util::Full;

use crate::support::*;

/// What Chromium sends when the admin types the gateway's URL.
const BROWSER_ACCEPT: &str = "text/html,application/xhtml+xml,application/xml;q=0.9,\
    image/avif,image/webp,image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7";

const CONFIG: &str = r#"
[cors]
allow_origins = ["https://xuc.example.org"]

[demo]
enabled = true
listen = "127.0.0.1:8444"

[wrap]
secret_env = "TPGW_TEST_PAGES_WRAP_SECRET"

[[routes]]
name = "pages"
[routes.open]
event = "EventRinging"
url = "https://crm.example.org/?n={{ caller }}"
"#;

async fn gateway() -> TestGateway {
    std::env::set_var(
        "TPGW_TEST_PAGES_WRAP_SECRET",
        "0123456789abcdef0123456789abcdef",
    );
    start_gateway(&format!("{TLS_HEAD}{CONFIG}")).await
}

async fn get(gw: &TestGateway, target: &str, accept: Option<&str>) -> Reply {
    let mut req =
        http::Request::get(target).header("host", format!("127.0.0.1:{}", gw.addr.port()));
    if let Some(accept) = accept {
        req = req.header("accept", accept);
    }
    gw.client()
        .send(gw.addr, req.body(Full::new(Bytes::new())).unwrap())
        .await
}

/// The page's text, with the slashes minijinja's HTML escaping encodes.
fn unescaped(reply: &Reply) -> String {
    reply.text().replace("&#x2f;", "/")
}

/// A served page that a browser would style: its CSP allows the stylesheet
/// it links, and nothing in it needs inline style.
fn assert_styled_by_its_stylesheet(reply: &Reply) {
    let body = reply.text();
    assert_eq!(
        reply.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert!(!body.contains("style="), "{body}");
    assert!(
        body.contains(r#"<link rel="stylesheet" href="/page.css">"#),
        "{body}"
    );
    let csp = reply.header("content-security-policy").unwrap();
    assert!(csp.contains("style-src 'self'"), "{csp}");
    assert!(!csp.contains("unsafe-inline"), "{csp}");
}

#[tokio::test]
async fn a_browser_get_on_the_route_path_gets_the_status_page() {
    let gw = gateway().await;
    let reply = get(&gw, "/", Some(BROWSER_ACCEPT)).await;
    // Still a 405 with Allow: the status does not depend on who asks.
    assert_eq!(reply.status, 405);
    assert_eq!(reply.header("allow"), Some("POST, OPTIONS"));
    assert_eq!(reply.header("vary"), Some("accept"));
    assert_styled_by_its_stylesheet(&reply);
    let body = unescaped(&reply);
    for expected in [
        concat!(
            "thirdparty-gateway <span id=\"version\">",
            env!("CARGO_PKG_VERSION")
        ),
        "XucMgt must POST here",
        r#"<a id="docs" href="https://"#,
    ] {
        assert!(body.contains(expected), "{expected} not in:\n{body}");
    }
    // Run from source (no package installed here), the page does not send
    // readers to the package's documentation folder.
    if !std::path::Path::new("/usr/share/doc/thirdparty-gateway/README.md").exists() {
        assert!(
            body.contains("in the source tree this gateway was built from")
                && !body.contains("/usr/share/doc/"),
            "{body}"
        );
    }
    // HEAD, as some tools check a URL first, says the same without a body.
    let head = gw
        .client()
        .send(
            gw.addr,
            http::Request::head("/")
                .header("accept", BROWSER_ACCEPT)
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await;
    assert_eq!(head.status, 405);
    assert_eq!(
        head.header("content-type"),
        Some("text/html; charset=utf-8")
    );
}

#[tokio::test]
async fn a_program_get_on_the_route_path_gets_json() {
    let gw = gateway().await;
    for accept in [
        None,
        Some("*/*"),
        Some("application/json"),
        Some("text/html;q=0.5, application/json"),
    ] {
        let reply = get(&gw, "/", accept).await;
        assert_eq!(reply.status, 405, "{accept:?}");
        assert_eq!(reply.header("allow"), Some("POST, OPTIONS"), "{accept:?}");
        assert_eq!(
            reply.header("content-type"),
            Some("application/json"),
            "{accept:?}"
        );
        assert_eq!(
            reply.json(),
            serde_json::json!({"error": "method not allowed: use POST"}),
            "{accept:?}"
        );
    }
}

#[tokio::test]
async fn the_trust_page_links_the_agent_page_and_is_styled_by_its_stylesheet() {
    let gw = gateway().await;
    let reply = get(&gw, "/demo/trust", Some(BROWSER_ACCEPT)).await;
    assert_eq!(reply.status, 200);
    assert_styled_by_its_stylesheet(&reply);
    let body = unescaped(&reply);
    assert!(
        body.contains(r#"<a id="agent" href="http://127.0.0.1:8444/demo/agent">"#),
        "{body}"
    );
    let css = get(&gw, "/page.css", None).await;
    assert_eq!(css.status, 200);
    assert_eq!(css.header("content-type"), Some("text/css; charset=utf-8"));
    assert!(css.text().contains("body {"), "{}", css.text());
}

#[tokio::test]
async fn an_error_page_is_styled_by_its_stylesheet_and_speaks_in_sentences() {
    let gw = gateway().await;
    let reply = get(&gw, "/wrap?t=forged", Some(BROWSER_ACCEPT)).await;
    assert_eq!(reply.status, 400);
    assert_styled_by_its_stylesheet(&reply);
    let body = reply.text();
    assert!(body.contains("<p>The link is not valid"), "{body}");
}
