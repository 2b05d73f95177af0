//! A browser the tests drive through WebDriver: Debian's chromium and
//! chromedriver, started headless with a profile of their own, ended with
//! everything they started when the test ends or fails ([`Reaper`]).

use std::process::Stdio;
use std::time::Duration;

use fantoccini::error::CmdError;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::process::{Child, Command};

use crate::headless::{chromium, Reaper};
use crate::support::require_tool;

/// How long a test waits for an element or a session.
pub(crate) const WAIT: Duration = Duration::from_secs(15);

/// chromedriver and a browser session; `None` (skipped loudly) without them.
/// Dropping it (a test that ends or panics) ends chromedriver, the browser
/// and all its processes.
pub(crate) struct Browser {
    pub(crate) client: Client,
    // Field order is drop order: the processes end before their profile
    // folder is removed.
    _reaper: Reaper,
    _driver: Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    pub(crate) async fn start() -> Option<Self> {
        let browser = chromium()?;
        let driver_path = require_tool("chromedriver", "apt-get install chromium-driver")?;
        let port = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let profile = tempfile::TempDir::new().unwrap();
        let (driver, reaper) = Reaper::spawn(
            Command::new(driver_path)
                .arg(format!("--port={port}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
            profile.path(),
        );
        let mut caps = serde_json::Map::new();
        caps.insert("acceptInsecureCerts".into(), json!(true));
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": browser,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--ignore-certificate-errors", "--window-size=1280,800",
                    "--force-device-scale-factor=1", "--hide-scrollbars",
                    format!("--user-data-dir={}", profile.path().display()),
                ]
            }),
        );
        let url = format!("http://127.0.0.1:{port}");
        let mut last = None;
        for _ in 0..100 {
            let mut builder = ClientBuilder::new(HttpConnector::new());
            builder.capabilities(caps.clone());
            let connect = builder.connect(&url);
            match tokio::time::timeout(WAIT, connect).await {
                Ok(Ok(client)) => {
                    return Some(Self {
                        client,
                        _reaper: reaper,
                        _driver: driver,
                        _profile: profile,
                    })
                }
                Ok(Err(e)) => last = Some(e.to_string()),
                Err(_) => last = Some("no session within 15 s".into()),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("chromedriver did not start: {last:?}");
    }

    /// Sizes the window so the page's viewport is `width`×`height` CSS
    /// pixels (the window's frame, if any, is measured and added).
    pub(crate) async fn viewport(&self, width: u32, height: u32) {
        self.client.set_window_size(width, height).await.unwrap();
        let inner = self
            .client
            .execute("return [innerWidth, innerHeight];", vec![])
            .await
            .unwrap();
        let (w, h) = (inner[0].as_u64().unwrap(), inner[1].as_u64().unwrap());
        let frame_w = u64::from(width).saturating_sub(w);
        let frame_h = u64::from(height).saturating_sub(h);
        if frame_w > 0 || frame_h > 0 {
            self.client
                .set_window_size(
                    width + u32::try_from(frame_w).unwrap(),
                    height + u32::try_from(frame_h).unwrap(),
                )
                .await
                .unwrap();
        }
    }

    pub(crate) async fn click(&self, id: &str) {
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

    /// Clicks `#id` in a frame that the click itself closes (the card's
    /// Close, the wrapper's Done): chromedriver may answer the click with
    /// "target frame detached" when the page removed the frame before the
    /// command returned. That answer is the click's effect, not a failure;
    /// the caller asserts the closed state next. Any other error fails.
    pub(crate) async fn click_closing_frame(&self, id: &str) {
        let element = self
            .client
            .wait()
            .at_most(WAIT)
            .for_element(Locator::Id(id))
            .await
            .unwrap_or_else(|e| panic!("no #{id}: {e}"));
        match element.click().await {
            Ok(_) => {}
            Err(e) if frame_gone(&e) => {}
            Err(e) => panic!("clicking #{id}: {e}"),
        }
    }

    pub(crate) async fn wait_for(&self, css: &str) {
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

    /// Enters the frame `#frame` and waits for `css` in it. A frame whose
    /// page was just set is still navigating, and chromedriver refuses a
    /// command in a frame that navigated away under it ("target frame
    /// detached", "no such frame"): the switch is tried again from the
    /// top, a bounded number of times within [`WAIT`]; any other error, or
    /// `css` never shown, fails.
    pub(crate) async fn wait_in_frame(&self, frame: &str, css: &str) {
        let until = tokio::time::Instant::now() + WAIT;
        let mut tries = 0;
        loop {
            tries += 1;
            match self.try_in_frame(frame, css).await {
                Ok(()) => return,
                Err(e) if frame_gone(&e) && tries < 50 && tokio::time::Instant::now() < until => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => {
                    let source = self.client.source().await.unwrap_or_default();
                    panic!("{css} never appeared in #{frame} ({e}, try {tries}):\n{source}");
                }
            }
        }
    }

    async fn try_in_frame(&self, frame: &str, css: &str) -> Result<(), CmdError> {
        // Switching to the window is switching to its top-level page,
        // wherever the last command left off.
        let window = self.client.window().await?;
        self.client.switch_to_window(window).await?;
        self.client
            .find(Locator::Id(frame))
            .await?
            .enter_frame()
            .await?;
        self.client
            .wait()
            .at_most(WAIT)
            .for_element(Locator::Css(css))
            .await?;
        Ok(())
    }

    pub(crate) async fn attr(&self, id: &str, name: &str) -> Option<String> {
        let element = self.client.find(Locator::Id(id)).await.unwrap();
        element.attr(name).await.unwrap()
    }

    pub(crate) async fn text(&self, id: &str) -> String {
        self.client
            .find(Locator::Id(id))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }
}

/// Whether chromedriver refused a command because the frame it ran in went
/// away (it navigated, or was replaced).
fn frame_gone(e: &CmdError) -> bool {
    let text = e.to_string();
    text.contains("frame detached") || text.contains("no such frame")
}
