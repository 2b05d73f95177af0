//! The whole agent flow in real headless Chromium driven by chromedriver
//! (WebDriver): the demo agent page on origin A (the demo listener, plain
//! HTTP), the gateway on origin B (TLS), the demo CRM as backend, all with
//! the shipped `config.toml`. Clicks are real clicks; frames are entered as
//! a user's browser would show them.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::process::{Child, Command};

use crate::support::*;

/// The README's picture of the demo agent page.
const PICTURE: &str = "docs/demo-agent.png";
/// Share of 8x8 blocks allowed to differ from the picture (times, ports).
const PICTURE_TOLERANCE: f64 = 0.04;
/// A block differs when a colour channel's average moves more than this.
const BLOCK_THRESHOLD: u8 = 10;
const WAIT: Duration = Duration::from_secs(15);

/// The demo: the shipped config (ports and certificates swapped for the
/// test's), the gateway, and the demo listener.
struct Demo {
    gateway: TestGateway,
    agent_url: String,
    _pages: tokio::task::JoinHandle<()>,
}

async fn start_demo(allow_origins: &str) -> Demo {
    let pages = TcpListener::bind("127.0.0.1:0").await.unwrap();
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
    let gateway = start_gateway(&config).await;
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

/// chromedriver and a browser session; `None` (skipped loudly) without them.
struct Browser {
    client: Client,
    _driver: Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    async fn start() -> Option<Self> {
        crate::headless::chromium()?;
        let driver_path = require_tool("chromedriver", "apt-get install chromium-driver")?;
        let port = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver = Command::new(driver_path)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let profile = tempfile::TempDir::new().unwrap();
        let mut caps = serde_json::Map::new();
        caps.insert("acceptInsecureCerts".into(), json!(true));
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--ignore-certificate-errors", "--window-size=1280,800",
                    "--force-device-scale-factor=1", "--hide-scrollbars",
                    "--font-render-hinting=none",
                    format!("--user-data-dir={}", profile.path().display()),
                ]
            }),
        );
        let url = format!("http://127.0.0.1:{port}");
        let mut last = None;
        for _ in 0..100 {
            match ClientBuilder::new(HttpConnector::new())
                .capabilities(caps.clone())
                .connect(&url)
                .await
            {
                Ok(client) => {
                    return Some(Self {
                        client,
                        _driver: driver,
                        _profile: profile,
                    })
                }
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("chromedriver did not start: {last:?}");
    }

    async fn click(&self, id: &str) {
        self.client
            .wait()
            .at_most(WAIT)
            .for_element(Locator::Id(id))
            .await
            .unwrap_or_else(|e| panic!("no #{id}: {e}"))
            .click()
            .await
            .unwrap();
    }

    async fn wait_for(&self, css: &str) {
        if let Err(e) = self
            .client
            .wait()
            .at_most(WAIT)
            .for_element(Locator::Css(css))
            .await
        {
            let source = self.client.source().await.unwrap_or_default();
            panic!("{css} never appeared ({e}):\n{source}");
        }
    }

    async fn attr(&self, id: &str, name: &str) -> Option<String> {
        let element = self.client.find(Locator::Id(id)).await.unwrap();
        element.attr(name).await.unwrap()
    }

    async fn enter_tab(&self) {
        let tab = self.client.find(Locator::Id("tab")).await.unwrap();
        tab.enter_frame().await.unwrap();
    }

    async fn text(&self, id: &str) -> String {
        self.client
            .find(Locator::Id(id))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    async fn set_payload(&self, payload: &str) {
        // The textarea is the agent's to edit: replace it as a user would.
        let area = self.client.find(Locator::Id("payload")).await.unwrap();
        area.clear().await.unwrap();
        area.send_keys(payload).await.unwrap();
    }
}

#[tokio::test]
async fn agent_page_pops_the_crm_card_and_the_wrapper_and_sees_close() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let demo = start_demo(r#"["*"]"#).await;
    let b = &browser;
    b.client.goto(&demo.agent_url).await.unwrap();

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

    check_picture(&b.client.screenshot().await.unwrap());

    // The card's own Close button posts closeThirdParty to the agent page.
    b.enter_tab().await;
    b.click("close").await;
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
    b.enter_tab().await;
    b.wait_for("#refused a#open").await;
    b.click("done").await;
    b.client.enter_parent_frame().await.unwrap();
    b.wait_for("body[data-tab='closed']").await;
    assert_eq!(b.text("state").await, "Ready");
    browser.client.close().await.unwrap();
}

#[tokio::test]
async fn agent_page_on_a_disallowed_origin_fails_visibly() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let demo = start_demo(r#"["https://xuc.example.org"]"#).await;
    browser.client.goto(&demo.agent_url).await.unwrap();
    browser.click("ringing").await;
    browser.wait_for("body[data-reply='failed']").await;
    assert!(browser.text("reply").await.contains("request failed"));
    assert_eq!(browser.text("state").await, "Ready");
    browser.client.close().await.unwrap();
}

/// Compares a screenshot with the README's picture; `UPDATE_SCREENSHOTS=1`
/// rewrites the picture instead.
fn check_picture(png_bytes: &[u8]) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(PICTURE);
    if std::env::var_os("UPDATE_SCREENSHOTS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, png_bytes).unwrap();
        eprintln!("wrote {}", path.display());
        return;
    }
    let (w1, h1, now) = decode(png_bytes);
    let picture = std::fs::read(&path).unwrap_or_else(|e| {
        panic!("{PICTURE}: {e}: UPDATE_SCREENSHOTS=1 cargo test agent_e2e to create it")
    });
    let (w2, h2, pic) = decode(&picture);
    assert_eq!(
        (w1, h1),
        (w2, h2),
        "screenshot size changed: UPDATE_SCREENSHOTS=1 cargo test to refresh {PICTURE}"
    );
    // Compared as 8x8-pixel blocks of average colour: layout and colours
    // count, glyph rasterization (which varies across Chromium builds) not.
    let (a, b) = (blocks(&now, w1, h1), blocks(&pic, w1, h1));
    let differing = a
        .iter()
        .zip(b.iter())
        .filter(|(x, y)| {
            x.iter()
                .zip(y.iter())
                .any(|(p, q)| p.abs_diff(*q) > BLOCK_THRESHOLD)
        })
        .count();
    let share = differing as f64 / a.len() as f64;
    assert!(
        share <= PICTURE_TOLERANCE,
        "{:.1}% of the page differs from {PICTURE}: the page changed; UPDATE_SCREENSHOTS=1 cargo test to refresh it",
        share * 100.0
    );
}

/// Average RGB of each 8x8 block of an RGBA image.
fn blocks(rgba: &[u8], w: usize, h: usize) -> Vec<[u8; 3]> {
    const B: usize = 8;
    let mut out = Vec::with_capacity((w / B) * (h / B));
    for by in 0..h / B {
        for bx in 0..w / B {
            let mut sum = [0u32; 3];
            for y in by * B..(by + 1) * B {
                for x in bx * B..(bx + 1) * B {
                    let i = (y * w + x) * 4;
                    for (c, s) in sum.iter_mut().enumerate() {
                        *s += u32::from(rgba[i + c]);
                    }
                }
            }
            out.push(sum.map(|s| (s / (B * B) as u32) as u8));
        }
    }
    out
}

fn decode(bytes: &[u8]) -> (usize, usize, Vec<u8>) {
    let mut decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::ALPHA);
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    buf.truncate(info.buffer_size());
    (info.width as usize, info.height as usize, buf)
}
