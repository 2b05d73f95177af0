//! A real headless Chromium: a page on one origin POSTs the seed payload to
//! the gateway on another origin. Proves the browser's own CORS check passes
//! (preflight included), and fails for an origin the config does not allow.

use std::convert::Infallible;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::headless::{chromium, Reaper};
use crate::support::*;

/// Serves one HTML page on an already bound listener (the "XucMgt" origin).
fn serve_page(listener: TcpListener, html: String) {
    let html = Bytes::from(html);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let html = html.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |_req| {
                    let html = html.clone();
                    async move {
                        let mut r = http::Response::new(Full::new(html));
                        r.headers_mut()
                            .insert("content-type", "text/html; charset=utf-8".parse().unwrap());
                        Ok::<_, Infallible>(r)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
}

fn page(gateway_url: &str) -> String {
    format!(
        r#"<!doctype html><html><body><pre id="out">pending</pre><script>
fetch({gateway_url:?}, {{method: "POST", headers: {{"Content-Type": "application/json"}}, body: JSON.stringify({SEED})}})
  .then(r => r.json())
  .then(j => {{ document.getElementById("out").textContent = "OK " + JSON.stringify(j); }})
  .catch(e => {{ document.getElementById("out").textContent = "FAIL " + e; }});
</script></body></html>"#
    )
}

/// Loads `url` in headless Chromium and returns the DOM after scripts ran
/// (`extra`: more flags, the virtual time budget among them).
pub(crate) async fn dump_dom(browser: &Path, url: &str, extra: &[&str]) -> String {
    let profile = tempfile::TempDir::new().unwrap();
    let (child, _reaper) = Reaper::spawn(
        tokio::process::Command::new(browser)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--ignore-certificate-errors",
                "--dump-dom",
            ])
            .args(extra)
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(url)
            .stdout(Stdio::piped())
            .stderr(Stdio::null()),
        profile.path(),
    );
    let out = tokio::time::timeout(Duration::from_secs(90), child.wait_with_output())
        .await
        .expect("chromium did not finish in 90 s")
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

const ROUTE: &str = "[[routes]]\n[routes.open]\nevent = \"EventRinging\"\n\
    url = \"https://crm.example.org/?n={{ caller }}\"\ntitle = \"Call {{ caller }}\"\n";

/// Runs the page on its own origin against a gateway allowing `allowed`
/// (`None`: the page's own origin) and returns the page's verdict line.
async fn browser_posts(browser: &Path, allowed: Option<&str>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let page_origin = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let allowed = allowed.unwrap_or(&page_origin);
    let gw = start_gateway(&format!("{TLS_HEAD}{}{ROUTE}", cors_for(allowed))).await;
    serve_page(listener, page(&gw.url("/")));
    let dom = dump_dom(
        browser,
        &format!("{page_origin}/"),
        &["--virtual-time-budget=10000"],
    )
    .await;
    let start = dom.find("<pre id=\"out\">").map(|i| i + 14).unwrap_or(0);
    let end = dom[start..]
        .find("</pre>")
        .map(|i| start + i)
        .unwrap_or(dom.len());
    dom[start..end].replace("&quot;", "\"")
}

#[tokio::test]
#[test_tools::needs("chromium")]
async fn chromium_cross_origin_post_passes_cors_and_gets_the_reply() {
    let Some(browser) = chromium() else { return };
    let verdict = browser_posts(&browser, None).await;
    assert_eq!(
        verdict,
        r#"OK {"action":"open","event":"EventRinging","url":"https://crm.example.org/?n=1001","autopause":false,"title":"Call 1001"}"#
    );
}

#[tokio::test]
#[test_tools::needs("chromium")]
async fn chromium_post_from_a_disallowed_origin_fails_in_the_browser() {
    let Some(browser) = chromium() else { return };
    let verdict = browser_posts(&browser, Some("https://xuc.example.org")).await;
    assert!(verdict.starts_with("FAIL TypeError"), "{verdict}");
}
