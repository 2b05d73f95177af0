//! The wrapper in real headless Chromium: a stand-in for XucMgt (plain HTTP,
//! its own origin) frames the wrapper page (the gateway, TLS), which frames a
//! CRM page (HTTPS, a third origin) that ends the work the way XucMgt's
//! documentation tells CRM pages to: `parent.window.postMessage(
//! "closeThirdParty", "*")`. XucMgt must get exactly that message, relayed by
//! the wrapper, and nothing the wrapper receives from any other window.

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::browser::dump_dom;
use crate::crm::{Answer, Crm};
use crate::headless::chromium;
use crate::support::*;

/// A CRM page that says something else first, then ends the work, after a
/// moment as a user would.
const CRM_PAGE: &str = r#"<!doctype html><html><body><p>customer card</p><script>
setTimeout(function () {
  parent.window.postMessage("hello", "*");
  parent.window.postMessage("closeThirdParty", "*");
}, 300);
</script></body></html>"#;

/// XucMgt's stand-in: frames the wrapper, posts `closeThirdParty` to it
/// itself (a window other than the CRM frame: must not come back), and
/// writes down every message the wrapper sends it.
fn xuc_page(wrapper: &str) -> String {
    format!(
        r#"<!doctype html><html><body><pre id="out">pending</pre>
<iframe id="w" src="{wrapper}"></iframe>
<script>
var seen = [];
var w = document.getElementById("w");
window.addEventListener("message", function (e) {{
  if (e.source === w.contentWindow) seen.push(e.data);
}});
w.addEventListener("load", function () {{
  w.contentWindow.postMessage("closeThirdParty", "*");
  setTimeout(function () {{
    document.getElementById("out").textContent = "DONE " + JSON.stringify(seen);
  }}, 3000);
}});
</script></body></html>"#
    )
}

/// Serves one HTML page on a bound listener.
fn serve_page(listener: TcpListener, html: String) -> tokio::task::JoinHandle<()> {
    let html = Bytes::from(html);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let html = html.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |_req| {
                    let mut r = http::Response::new(Full::new(html.clone()));
                    r.headers_mut()
                        .insert("content-type", "text/html; charset=utf-8".parse().unwrap());
                    async move { Ok::<_, Infallible>(r) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    })
}

/// Every frame in one renderer, so virtual time runs the three pages'
/// timers and messages in one order.
const ONE_RENDERER: [&str; 3] = [
    "--disable-site-isolation-trials",
    "--disable-features=IsolateOrigins,site-per-process",
    "--virtual-time-budget=15000",
];

#[tokio::test]
#[test_tools::needs("chromium")]
async fn the_wrapper_relays_close_third_party_from_its_crm_frame_only() {
    let Some(browser) = chromium() else { return };
    let crm = Crm::start_tls(&TestCa::new(), |_| {
        Answer::Reply(200, "text/html; charset=utf-8", CRM_PAGE.into())
    })
    .await;
    let xuc = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let xuc_origin = format!("http://{}", xuc.local_addr().unwrap());
    std::env::set_var("TPGW_TEST_WRAP_SECRET", "0123456789abcdef0123456789abcdef");
    let gw = start_gateway(&format!(
        r#"{TLS_HEAD}
[cors]
allow_origins = ["{xuc_origin}"]

[wrap]
secret_env = "TPGW_TEST_WRAP_SECRET"

[[routes]]
name = "wrap_relay"
wrap = true
[routes.open]
event = "EventRinging"
url = "{}/card?n={{{{ caller }}}}"
title = "Card"
autopause = true
"#,
        crm.url()
    ))
    .await;
    let reply = gw.client().post(gw.addr, Some(&xuc_origin), SEED).await;
    let link = url::Url::parse(reply.json()["url"].as_str().unwrap()).unwrap();
    assert_eq!(link.path(), "/wrap");
    let wrapper = gw.url(&format!("/wrap?{}", link.query().unwrap()));
    let _page = serve_page(xuc, xuc_page(&wrapper));

    let dom = dump_dom(&browser, &format!("{xuc_origin}/"), &ONE_RENDERER).await;
    let start = dom.find("<pre id=\"out\">").map(|i| i + 14).unwrap_or(0);
    let end = dom[start..]
        .find("</pre>")
        .map(|i| start + i)
        .unwrap_or(dom.len());
    let verdict = dom[start..end].replace("&quot;", "\"");
    assert_eq!(verdict, r#"DONE ["closeThirdParty"]"#, "{dom}");
    assert!(
        crm.seen().iter().any(|s| s.target.starts_with("/card")),
        "the browser loaded the CRM page in the wrapper"
    );
}
