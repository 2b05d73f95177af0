//! The completion wrapper over real TLS: a wrapped route hands out a signed
//! link to the gateway's page; the page frames the CRM or, when the CRM
//! refuses framing (real test servers sending `X-Frame-Options` or CSP
//! `frame-ancestors`), links it; tampered and expired links get a clear 400.

use std::time::Duration;

use crate::crm::{Answer, Crm};
use crate::support::*;

async fn gateway(crm: &Crm, ttl_s: u64) -> TestGateway {
    let config = format!(
        r#"{TLS_HEAD}
[cors]
allow_origins = ["https://xuc.example.org"]

[wrap]
secret_env = "TPGW_TEST_WRAP_SECRET"
ttl_s = {ttl_s}

[[routes]]
name = "wrapped"
wrap = true
[routes.open]
event = "EventRinging"
url = "{}{{{{ userData.PAGE | safe }}}}?n={{{{ caller }}}}"
title = "{{{{ userData.TITLE }}}}"
autopause = true
"#,
        crm.url()
    );
    std::env::set_var("TPGW_TEST_WRAP_SECRET", "0123456789abcdef0123456789abcdef");
    start_gateway(&config).await
}

fn payload(page: &str, title: &str) -> String {
    serde_json::json!({
        "user": {"userId": 1}, "caller": "06 12", "callee": "1",
        "userData": {"PAGE": page, "TITLE": title}
    })
    .to_string()
}

/// POSTs a call, follows the wrapper link it gets, returns (link, page).
async fn open_wrapped(gw: &TestGateway, page: &str, title: &str) -> (String, Reply) {
    let reply = gw
        .client()
        .post(
            gw.addr,
            Some("https://xuc.example.org"),
            &payload(page, title),
        )
        .await;
    let json = reply.json();
    let link = json["url"].as_str().unwrap().to_owned();
    assert_eq!(json["autopause"], true);
    (link.clone(), get(gw, &link).await)
}

async fn get(gw: &TestGateway, link: &str) -> Reply {
    let url = url::Url::parse(link).unwrap();
    let target = match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_owned(),
    };
    let req = http::Request::get(target)
        .header("host", format!("127.0.0.1:{}", gw.addr.port()))
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    gw.client().send(gw.addr, req).await
}

fn crm() -> impl Fn(&crate::crm::Seen) -> Answer + Send + Sync + 'static {
    |seen| match seen.target.split('?').next().unwrap() {
        "/xfo" => Answer::Page(vec![("x-frame-options", "SAMEORIGIN")]),
        "/csp" => Answer::Page(vec![(
            "content-security-policy",
            "default-src 'self'; frame-ancestors 'self' https://intranet.example.org",
        )]),
        "/open-csp" => Answer::Page(vec![("content-security-policy", "frame-ancestors *")]),
        _ => Answer::Page(vec![]),
    }
}

#[tokio::test]
async fn wrapped_reply_points_at_a_page_that_frames_the_crm_with_a_done_button() {
    let crm = Crm::start(crm()).await;
    let gw = gateway(&crm, 3600).await;
    let (link, page) = open_wrapped(&gw, "/ok", "Card").await;
    // The link names the gateway as the browser reached it (its Host header).
    assert!(link.starts_with("https://localhost/wrap?t="), "{link}");
    assert_eq!(page.status, 200);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    let csp = page.header("content-security-policy").unwrap();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert!(csp.contains(&format!("frame-src {}", crm.url())), "{csp}");
    assert!(
        csp.contains("frame-ancestors https://xuc.example.org"),
        "{csp}"
    );
    let html = page.text();
    assert!(html.contains("<iframe id=\"crm\""), "{html}");
    assert!(html.contains("<button id=\"done\""), "{html}");
    assert!(!html.contains("<script>"), "no inline script: {html}");
    // The Done button's script is the gateway's own static file.
    let js = get(
        &gw,
        &format!("https://127.0.0.1:{}/wrap.js", gw.addr.port()),
    )
    .await;
    assert!(js
        .text()
        .contains(r#"parent.window.postMessage("closeThirdParty", "*")"#));

    for (path, framable) in [("/xfo", false), ("/csp", false), ("/open-csp", true)] {
        let (_, page) = open_wrapped(&gw, path, "Card").await;
        let html = page.text();
        assert_eq!(html.contains("<iframe"), framable, "{path}: {html}");
        assert_eq!(
            html.contains("refuses to be framed"),
            !framable,
            "{path}: {html}"
        );
        assert!(html.contains("Open in a new window"), "{path}");
    }
}

#[tokio::test]
async fn framing_verdicts_are_cached() {
    let crm = Crm::start(crm()).await;
    let gw = gateway(&crm, 3600).await;
    for _ in 0..3 {
        open_wrapped(&gw, "/xfo", "Card").await;
    }
    let checks = crm
        .seen()
        .iter()
        .filter(|s| s.target.starts_with("/xfo"))
        .count();
    assert_eq!(checks, 1, "one framing check for three page views");
}

#[tokio::test]
async fn hostile_titles_and_urls_are_escaped() {
    let crm = Crm::start(crm()).await;
    let gw = gateway(&crm, 3600).await;
    let title = r#""><script>alert(1)</script><img src=x onerror=alert(2)>"#;
    let (_, page) = open_wrapped(&gw, "/ok\"onload=\"alert(3)", title).await;
    let html = page.text();
    assert!(!html.contains("<script>alert"), "{html}");
    assert!(!html.contains("<img"), "{html}");
    assert!(!html.contains("\"onload=\""), "{html}");
    assert!(html.contains("&lt;script&gt;"), "{html}");
}

#[tokio::test]
async fn tampered_and_expired_links_get_a_clear_400() {
    let crm = Crm::start(crm()).await;
    let gw = gateway(&crm, 1).await;
    let reply = gw
        .client()
        .post(gw.addr, None, &payload("/ok", "Card"))
        .await;
    let link = reply.json()["url"].as_str().unwrap().to_owned();
    // Swap one character of the signed payload.
    let i = link.find("t=").unwrap() + 5;
    let mut tampered = link.clone().into_bytes();
    tampered[i] = if tampered[i] == b'A' { b'B' } else { b'A' };
    let page = get(&gw, &String::from_utf8(tampered).unwrap()).await;
    assert_eq!(page.status, 400);
    assert!(page.text().contains("not valid"), "{}", page.text());
    let page = get(&gw, &format!("https://127.0.0.1:{}/wrap", gw.addr.port())).await;
    assert_eq!(page.status, 400);

    tokio::time::sleep(Duration::from_millis(2100)).await;
    let page = get(&gw, &link).await;
    assert_eq!(page.status, 400);
    assert!(page.text().contains("expired"), "{}", page.text());
}
