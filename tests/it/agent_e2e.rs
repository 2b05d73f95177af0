//! The whole agent flow in real headless Chromium driven by chromedriver
//! (WebDriver): the demo agent page on origin A (the demo listener, plain
//! HTTP), the gateway on origin B (TLS), the demo CRM as backend, all with
//! the shipped `config.toml`. Clicks are real clicks; frames are entered as
//! a user's browser would show them. Everything is checked through the DOM
//! (state, text, element boxes), never through pixels, which vary with the
//! Chromium build and the fonts.
//!
//! The README's picture, `docs/demo-agent.png`, is refreshed only on demand:
//! `UPDATE_SCREENSHOTS=1 cargo test --test it readme_picture -- --ignored`
//! (it uses the demo's own ports, 8443 and 8444, so the picture shows what
//! a user's demo shows).

use std::path::{Path, PathBuf};

use fantoccini::Locator;
use tokio::net::TcpListener;

use crate::support::*;
use crate::webdriver::Browser;

/// The README's picture of the demo agent page.
const PICTURE: &str = "docs/demo-agent.png";

/// The demo: the shipped config (ports and certificates swapped for the
/// test's), the gateway, and the demo listener.
struct Demo {
    gateway: TestGateway,
    agent_url: String,
    _pages: tokio::task::JoinHandle<()>,
}

impl Drop for Demo {
    fn drop(&mut self) {
        self._pages.abort();
    }
}

async fn start_demo(allow_origins: &str) -> Demo {
    let gateway = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let pages = TcpListener::bind("127.0.0.1:0").await.unwrap();
    start_demo_on(gateway, pages, allow_origins).await
}

async fn start_demo_on(gateway: TcpListener, pages: TcpListener, allow_origins: &str) -> Demo {
    let demo_addr = pages.local_addr().unwrap();
    let shipped =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config.toml")).unwrap();
    let config = shipped
        .replace("127.0.0.1:8444", &demo_addr.to_string())
        .replace("certs/dev-cert.pem", "cert.pem")
        .replace("certs/dev-key.pem", "key.pem")
        .replace(
            "self_signed_if_missing = true",
            "self_signed_if_missing = false",
        )
        .replace(
            r#"allow_origins = ["*"]"#,
            &format!("allow_origins = {allow_origins}"),
        );
    let gateway = start_gateway_on(gateway, &config, &[]).await;
    let gateway_url =
        url::Url::parse(&format!("https://127.0.0.1:{}/", gateway.addr.port())).unwrap();
    let task = tokio::spawn(thirdparty_gateway::demo::run(
        pages,
        gateway_url,
        std::future::pending(),
    ));
    Demo {
        gateway,
        agent_url: format!("http://{demo_addr}/demo/agent"),
        _pages: task,
    }
}

impl Browser {
    async fn set_payload(&self, payload: &str) {
        // The textarea is the agent's to edit: replace it as a user would.
        let area = self.client.find(Locator::Id("payload")).await.unwrap();
        area.clear().await.unwrap();
        area.send_keys(payload).await.unwrap();
    }

    /// The agent page's layout holds in the current viewport: the reply
    /// (box and text) ends above the Events heading, and nothing is wider
    /// than its column or the window. Read from element boxes in the DOM.
    async fn assert_layout_holds(&self, when: &str) {
        let m = self
            .client
            .execute(
                r#"
                const reply = document.getElementById("reply");
                const text = document.createRange();
                text.selectNodeContents(reply);
                const call = document.getElementById("call");
                const page = document.scrollingElement;
                return {
                  viewport: [innerWidth, innerHeight],
                  reply_box_bottom: reply.getBoundingClientRect().bottom,
                  reply_text_bottom: text.getBoundingClientRect().bottom,
                  events_top: document.getElementById("events-heading").getBoundingClientRect().top,
                  call_width: [call.scrollWidth, call.clientWidth],
                  page_width: [page.scrollWidth, page.clientWidth],
                };"#,
                vec![],
            )
            .await
            .unwrap();
        let f = |k: &str| m[k].as_f64().unwrap();
        let pair = |k: &str| (m[k][0].as_f64().unwrap(), m[k][1].as_f64().unwrap());
        let (vw, vh) = pair("viewport");
        assert!(
            vw <= 1024.0 && vh <= 700.0,
            "{when}: viewport {vw}x{vh}: {m}"
        );
        assert!(
            f("reply_box_bottom") <= f("events_top") && f("reply_text_bottom") <= f("events_top"),
            "{when}: the reply overlaps the Events heading: {m}"
        );
        let (scroll, client) = pair("call_width");
        assert!(
            scroll <= client,
            "{when}: the call column scrolls sideways: {m}"
        );
        let (scroll, client) = pair("page_width");
        assert!(scroll <= client, "{when}: the page scrolls sideways: {m}");
    }
}

#[tokio::test]
#[test_tools::needs("chromium", "chromedriver")]
async fn agent_page_pops_the_crm_card_and_the_wrapper_and_sees_close() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let demo = start_demo(r#"["*"]"#).await;
    let b = &browser;
    b.viewport(1024, 700).await;
    b.client.goto(&demo.agent_url).await.unwrap();
    b.assert_layout_holds("at load").await;

    // A queue call: the CRM is asked (preflight + POST across origins); its
    // card opens when the agent answers, and the agent is paused.
    b.click("ringing").await;
    b.wait_for("body[data-reply='open']").await;
    let reply: serde_json::Value = serde_json::from_str(&b.text("reply").await).unwrap();
    assert_eq!(reply["event"], "EventEstablished");
    assert_eq!(reply["title"], "ACME Trucks");
    assert_eq!(
        b.client
            .find(Locator::Css("body"))
            .await
            .unwrap()
            .attr("data-tab")
            .await
            .unwrap()
            .as_deref(),
        Some("none")
    );
    b.click("established").await;
    b.wait_for("body[data-tab='open']").await;
    let src = b.attr("tab", "src").await.unwrap();
    assert!(
        src.starts_with("http://127.0.0.1:") && src.contains("/demo/crm/card?id=7"),
        "{src}"
    );
    assert_eq!(b.text("state").await, "Paused");
    assert_eq!(b.text("tabtitle").await, "ACME Trucks");
    b.assert_layout_holds("with the CRM card open").await;

    // The card's own Close button posts closeThirdParty to the agent page.
    b.wait_in_frame("tab", "#name").await;
    assert_eq!(b.text("name").await, "ACME Trucks");
    b.click_closing_frame("close").await;
    b.client.enter_parent_frame().await.unwrap();
    b.wait_for("body[data-tab='closed']").await;
    assert_eq!(b.text("state").await, "Ready");
    assert!(b.text("closed").await.contains("closed"));

    // A direct call: the legacy page refuses framing, so the gateway's
    // wrapper opens at once, links the page, and its Done button closes.
    b.set_payload(NO_QUEUE).await;
    b.click("ringing").await;
    b.wait_for("body[data-tab='open']").await;
    let src = b.attr("tab", "src").await.unwrap();
    assert!(
        src.starts_with(&format!(
            "https://127.0.0.1:{}/wrap?t=",
            demo.gateway.addr.port()
        )),
        "{src}"
    );
    // The long wrapper link is in the reply and the events: both wrap.
    b.assert_layout_holds("after the wrapper call").await;
    b.wait_in_frame("tab", "#refused a#open").await;
    b.click_closing_frame("done").await;
    b.client.enter_parent_frame().await.unwrap();
    b.wait_for("body[data-tab='closed']").await;
    assert_eq!(b.text("state").await, "Ready");
    b.assert_layout_holds("after Done").await;
}

#[tokio::test]
#[test_tools::needs("chromium", "chromedriver")]
async fn agent_page_on_a_disallowed_origin_fails_visibly_and_points_at_the_trust_page() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let demo = start_demo(r#"["https://xuc.example.org"]"#).await;
    browser.client.goto(&demo.agent_url).await.unwrap();
    let help = browser
        .client
        .find(Locator::Id("failed-help"))
        .await
        .unwrap();
    assert!(!help.is_displayed().await.unwrap());
    browser.click("ringing").await;
    browser.wait_for("body[data-reply='failed']").await;
    assert!(browser.text("reply").await.starts_with("Request failed: "));
    assert_eq!(browser.text("state").await, "Ready");
    // The help names the certificate as a cause and links the page that
    // makes the browser accept it.
    let help = browser
        .client
        .find(Locator::Id("failed-help"))
        .await
        .unwrap();
    assert!(help.is_displayed().await.unwrap());
    let trust = format!("https://127.0.0.1:{}/demo/trust", demo.gateway.addr.port());
    assert_eq!(
        browser.attr("trust", "href").await.as_deref(),
        Some(&*trust)
    );
    assert_eq!(browser.text("trust").await, trust);

    // The trust page: its stylesheet loads under its CSP (a blocked one
    // would leave no rules), and it links back to the agent page.
    browser.client.goto(&trust).await.unwrap();
    let rules = browser
        .client
        .execute(
            "return Array.from(document.styleSheets).map(s => s.cssRules.length);",
            vec![],
        )
        .await
        .unwrap();
    assert!(
        rules
            .as_array()
            .is_some_and(|r| r.len() == 1 && r[0].as_u64() > Some(0)),
        "{rules}"
    );
    assert_eq!(
        browser.attr("agent", "href").await.as_deref(),
        Some(&*demo.agent_url)
    );
}

/// The picture is refreshed only on demand; checked here for structure only
/// (a PNG that decodes, of a page's size), never for its pixels.
#[test]
fn readme_picture_is_a_png_of_a_page() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(PICTURE);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{PICTURE}: {e}"));
    let (width, height) = png_size(&bytes);
    assert!(
        (800..=4000).contains(&width) && (400..=4000).contains(&height),
        "{PICTURE} is {width}x{height}"
    );
}

/// Refreshes the README's picture: the shipped demo on its own ports (so
/// the picture shows the URLs a user sees), a queue call, the CRM card open.
/// `UPDATE_SCREENSHOTS=1` writes it; without it the picture is only taken.
#[tokio::test]
#[ignore = "refreshes docs/demo-agent.png: UPDATE_SCREENSHOTS=1 cargo test --test it readme_picture -- --ignored"]
async fn readme_picture_is_refreshed_on_demand() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let bind = |addr: &'static str| async move {
        TcpListener::bind(addr)
            .await
            .unwrap_or_else(|e| panic!("{addr} (is the demo running?): {e}"))
    };
    let demo = start_demo_on(
        bind("127.0.0.1:8443").await,
        bind("127.0.0.1:8444").await,
        r#"["*"]"#,
    )
    .await;
    let b = &browser;
    b.viewport(1280, 720).await;
    b.client.goto(&demo.agent_url).await.unwrap();
    b.click("ringing").await;
    b.wait_for("body[data-reply='open']").await;
    b.click("established").await;
    b.wait_for("body[data-tab='open']").await;
    // The card has loaded in its frame before the picture is taken.
    b.wait_in_frame("tab", "#close").await;
    b.client.enter_parent_frame().await.unwrap();
    let png = b.client.screenshot().await.unwrap();
    let (width, height) = png_size(&png);
    let path: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR")).join(PICTURE);
    if std::env::var_os("UPDATE_SCREENSHOTS").is_some() {
        std::fs::write(&path, &png).unwrap();
        eprintln!("wrote {} ({width}x{height})", path.display());
    } else {
        eprintln!("took a {width}x{height} picture; UPDATE_SCREENSHOTS=1 writes it to {PICTURE}");
    }
}

/// Width and height of a PNG, which must decode in full.
fn png_size(bytes: &[u8]) -> (u32, u32) {
    let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    (info.width, info.height)
}
