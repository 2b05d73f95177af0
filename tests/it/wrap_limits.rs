//! The completion wrapper at its limits: a CRM page that accepts the framing
//! check's connection and never answers, CRM urls of several kilobytes, and
//! the request line and metric every `GET /wrap` leaves.

use std::time::Duration;

use tokio::net::TcpListener;

use crate::crm::{Answer, Crm};
use crate::support::*;

/// Far above any framing check here: only a hang reaches it.
const HANG: Duration = Duration::from_secs(30);

async fn gateway(route: &str, frame_check_timeout_ms: u64) -> TestGateway {
    std::env::set_var("TPGW_TEST_WRAP_SECRET", "0123456789abcdef0123456789abcdef");
    start_gateway(&format!(
        r#"{TLS_HEAD}
[cors]
allow_origins = ["https://xuc.example.org"]

[wrap]
secret_env = "TPGW_TEST_WRAP_SECRET"
frame_check_timeout_ms = {frame_check_timeout_ms}

[[routes]]
name = "{route}"
wrap = true
[routes.open]
event = "EventRinging"
url = "{{{{ userData.URL | safe }}}}"
title = "Card"
autopause = true
"#
    ))
    .await
}

/// POSTs a call whose screen-pop is `url`; returns the reply.
async fn call(gw: &TestGateway, url: &str) -> Reply {
    let payload = serde_json::json!({
        "user": {"userId": 1}, "caller": "0612", "callee": "1",
        "userData": {"URL": url}
    });
    gw.client()
        .post(
            gw.addr,
            Some("https://xuc.example.org"),
            &payload.to_string(),
        )
        .await
}

/// GETs a wrapper link as the browser would, failing the test on a hang.
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
    tokio::time::timeout(HANG, gw.client().send(gw.addr, req))
        .await
        .unwrap_or_else(|_| panic!("GET {link} got no answer"))
}

/// The `src` of the page's frame, HTML entities undone.
fn frame_src(html: &str) -> Option<String> {
    let start = html.find("<iframe id=\"crm\" src=\"")? + 22;
    let end = start + html[start..].find('"')?;
    Some(unescape(&html[start..end]))
}

fn unescape(text: &str) -> String {
    text.replace("&#x2f;", "/")
        .replace("&#x27;", "'")
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// The log lines of one request, found by its `X-Request-Id`.
fn lines_of(reply: &Reply) -> Vec<String> {
    let id = reply.header("x-request-id").expect("x-request-id");
    log_lines(&format!("id={id} "))
}

fn metric(gw: &TestGateway, series: &str) -> Option<String> {
    gw.live
        .metrics
        .encode()
        .lines()
        .find(|l| l.starts_with(series))
        .map(|l| l[series.len()..].trim().to_owned())
}

/// A server that accepts connections and never answers (nor closes them).
async fn silent_server() -> (String, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        // Bounded: the test opens one page.
        while held.len() < 64 {
            match listener.accept().await {
                Ok((tcp, _)) => held.push(tcp),
                Err(_) => return,
            }
        }
    });
    (format!("http://127.0.0.1:{port}/card?n=0612"), task)
}

#[tokio::test]
async fn a_crm_page_that_never_answers_the_framing_check_gets_the_new_window_link() {
    let (url, _server) = silent_server().await;
    let gw = gateway("wrap_silent", 300).await;
    let reply = call(&gw, &url).await;
    let link = reply.json()["url"].as_str().unwrap().to_owned();
    assert!(link.starts_with("https://localhost/wrap?t="), "{link}");
    let page = get(&gw, &link).await;
    assert_eq!(page.status, 200);
    let html = page.text();
    assert!(!html.contains("<iframe"), "{html}");
    assert!(html.contains("did not answer in time"), "{html}");
    let start = html
        .find("<a id=\"open\" href=\"")
        .expect("the new-window link")
        + 19;
    let end = start + html[start..].find('"').unwrap();
    assert_eq!(unescape(&html[start..end]), url);
    let lines = lines_of(&page);
    assert!(
        lines.iter().any(|l| l.contains("wrap=check_timeout")),
        "{lines:?}"
    );
}

#[tokio::test]
async fn wrap_pages_are_logged_and_counted_like_every_request() {
    let crm = Crm::start(|_| Answer::Page(vec![])).await;
    let gw = gateway("wrap_logged", 2000).await;
    let link = call(&gw, &format!("{}/card", crm.url())).await.json()["url"]
        .as_str()
        .unwrap()
        .to_owned();
    let page = get(&gw, &link).await;
    assert_eq!(page.status, 200);
    let lines = lines_of(&page);
    let line = lines
        .iter()
        .find(|l| l.contains(" request "))
        .unwrap_or_else(|| panic!("no request line for GET /wrap: {lines:?}"));
    for field in [
        "method=GET",
        "path=/wrap",
        "outcome=page",
        "status=200",
        "wrap=framed",
        "latency_ms=",
    ] {
        assert!(line.contains(field), "{field} in {line}");
    }

    let forged = link.replace("?t=", "?t=x");
    let refused = get(&gw, &forged).await;
    assert_eq!(refused.status, 400);
    let lines = lines_of(&refused);
    let line = lines
        .iter()
        .find(|l| l.contains(" request "))
        .unwrap_or_else(|| panic!("no request line for a refused link: {lines:?}"));
    for field in [
        "outcome=error",
        "status=400",
        "wrap=invalid_link",
        "latency_ms=",
    ] {
        assert!(line.contains(field), "{field} in {line}");
    }

    let series =
        |result: &str| format!("thirdparty_gateway_wrap_pages_total{{result=\"{result}\"}}");
    assert_eq!(metric(&gw, &series("framed")).as_deref(), Some("1"));
    assert_eq!(metric(&gw, &series("invalid_link")).as_deref(), Some("1"));
}

/// A CRM url of about 3 KB, as search pages with many fields make.
fn long_url(base: &str) -> String {
    let mut url = format!("{base}/crm/search?caller=0612345678");
    for i in 0..84 {
        url.push_str(&format!("&customer_field_{i:02}=value-of-field-{i:02}"));
    }
    url
}

/// Letters and digits no compressor can shrink much (xorshift, fixed seed).
fn noise(len: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ALPHABET[(x % 64) as usize] as char
        })
        .collect()
}

#[tokio::test]
async fn a_three_kilobyte_crm_url_is_wrapped_and_framed_as_is() {
    let crm = Crm::start(|_| Answer::Page(vec![])).await;
    let gw = gateway("wrap_long", 2000).await;
    let url = long_url(&crm.url());
    assert!(url.len() > 3000, "{}", url.len());
    let reply = call(&gw, &url).await;
    let link = reply.json()["url"].as_str().unwrap().to_owned();
    assert!(link.starts_with("https://localhost/wrap?t="), "{link}");
    assert!(link.len() <= 4096, "{}", link.len());
    let page = get(&gw, &link).await;
    assert_eq!(page.status, 200);
    assert_eq!(frame_src(&page.text()).as_deref(), Some(url.as_str()));
}

#[tokio::test]
async fn a_url_too_long_even_compressed_goes_out_unwrapped_and_the_log_says_why() {
    let gw = gateway("wrap_too_long", 2000).await;
    let url = format!("https://crm.example.org/p?d={}", noise(4050));
    assert!(url.len() <= 4096);
    let reply = call(&gw, &url).await;
    assert_eq!(reply.json()["url"].as_str(), Some(url.as_str()));
    let lines = lines_of(&reply);
    let warning = lines
        .iter()
        .find(|l| l.contains("cannot build the wrapper link"))
        .unwrap_or_else(|| panic!("no warning: {lines:?}"));
    assert!(
        warning.contains("over the 4096-byte url limit even compressed"),
        "{warning}"
    );
    assert!(!warning.contains("public_url"), "{warning}");
}
