//! The console page in real headless Chromium (through chromedriver): a
//! call that opens, one that gets `none` from a CRM that is down, one whose
//! login fails. The page shows each as it is answered, with the reason and
//! the masked caller, and its trace one click away (and a request refused
//! before any route, apart, with why): live, from a long poll
//! that a call ends (a poll started before the call comes back with it, not
//! at the end of its wait), without a reload (a mark set on the page's
//! `window` stays); it never shows a secret, the agent's token, a session or the
//! caller's number; its script and stylesheet load under its CSP; and its
//! layout holds at 1024×700 and on a phone, read from element boxes in the
//! DOM, never pixels.

use fantoccini::Locator;
use serde_json::Value;

use crate::console::{assert_holds_none, call, Crms, MASKED};
use crate::support::*;
use crate::webdriver::Browser;

/// A long poll's wait: far longer than any test takes, so a poll that
/// comes back with a call came back because of it.
const LONG_POLL: &str = "wait_ms=25000";

#[tokio::test]
#[test_tools::needs("chromium", "chromedriver")]
async fn console_page_shows_each_call_as_it_is_answered_with_reason_masked_caller_and_trace() {
    let Some(b) = Browser::start().await else {
        return;
    };
    let crms = Crms::start("page").await;
    let gw = start_gateway(&crms.config("page", "")).await;
    let ops = start_ops(&gw.live).await;
    b.viewport(1024, 700).await;
    b.client
        .goto(&format!("http://127.0.0.1:{}/", ops.addr.port()))
        .await
        .unwrap();
    b.wait_for("body[data-loaded='true']").await;
    // A reload would start a new `window` without it.
    b.client
        .execute("window.notReloaded = true; return null;", vec![])
        .await
        .unwrap();

    for (seq, queue, outcome, reason, trace_says) in [
        (1, "sales", "open", "", "backend \"vtiger\": opened ("),
        (2, "down", "none", "connect", "\nreason: connect ("),
        (
            3,
            "badkey",
            "none",
            "login",
            "\nreason: login (login step 2: ",
        ),
    ] {
        // A long poll waiting for the call after the last one: the call
        // ends it, and it brings the call.
        let path = format!("/api/calls?after={}&{LONG_POLL}", seq - 1);
        let addr = ops.addr;
        let poll = tokio::spawn(async move { plain_get(addr, &path, &[]).await });
        gw.client().post(gw.addr, None, &call(queue)).await;
        let polled = poll.await.unwrap().json();
        assert_eq!(polled["calls"][0]["seq"], seq, "{queue}: {polled}");
        let row = format!("#calls tr[data-seq='{seq}']");
        b.wait_for(&row).await;
        let seen = b
            .client
            .execute(
                "const r = document.querySelector(arguments[0]);
                 return {reloaded: window.notReloaded !== true, outcome: r.dataset.outcome,
                         reason: r.dataset.reason, route: r.dataset.route,
                         caller: r.querySelector('td.caller').textContent,
                         first: document.querySelector('#calls tbody tr').dataset.seq};",
                vec![Value::from(row.clone())],
            )
            .await
            .unwrap();
        assert_eq!(
            seen["reloaded"], false,
            "{queue}: the page reloaded: {seen}"
        );
        assert_eq!(
            (
                &seen["outcome"],
                &seen["reason"],
                &seen["route"],
                &seen["caller"]
            ),
            (
                &outcome.into(),
                &reason.into(),
                &queue.into(),
                &MASKED.into()
            ),
            "{seen}"
        );
        assert_eq!(seen["first"], seq.to_string(), "newest first: {seen}");
        // One click on its time shows how it was decided.
        b.client
            .find(Locator::Css(&format!("{row} button.time")))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        b.wait_for(&format!("#trace-panel[data-seq='{seq}']")).await;
        let trace = b.text("trace").await;
        let chosen = format!("route \"{queue}\": when `queue.name == \"{queue}\"` holds: chosen");
        assert!(trace.contains(&chosen), "{trace}");
        assert!(trace.contains(trace_says), "{trace}");
    }
    // A POST to a path without routes (THIRD_PARTY_URL set wrong) is
    // refused before any route: the page shows it apart, with why.
    let wrong = format!("/{}", "wrong-third-party-url-".repeat(4));
    let refused = gw
        .client()
        .post_at(gw.addr, &wrong, None, &call("sales"))
        .await;
    assert_eq!(refused.status, 404);
    b.wait_for("#refused tr[data-status='404']").await;
    let why = b.text("refused").await;
    assert!(
        why.contains("THIRD_PARTY_URL") && why.contains(&format!("POST {wrong}")),
        "{why}"
    );
    // The overview refreshes on its own: the routes' and CRMs' tables fill.
    b.wait_for("#backends tr[data-backend='vtiger_badkey'][data-login-failures='1']")
        .await;
    let login = b
        .client
        .find(Locator::Css(
            "#backends tr[data-backend='vtiger_badkey'] td.login",
        ))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        login.contains("last failure") && login.contains("1 failed"),
        "{login}"
    );

    // Nothing secret in what the browser got or shows.
    let mut secrets = crms.secrets.clone();
    secrets.extend(crms.sessions());
    let source = b.client.source().await.unwrap();
    let shown = b
        .client
        .execute("return document.body.innerText;", vec![])
        .await
        .unwrap();
    assert_holds_none(&source, &secrets, "the page's DOM");
    assert_holds_none(shown.as_str().unwrap(), &secrets, "the page's text");

    // The script and stylesheet loaded under the page's CSP, which
    // blocked nothing.
    let csp = b
        .client
        .execute(
            "return {violations: document.body.dataset.cspViolations || null,
                     rules: Array.from(document.styleSheets).map(s => s.cssRules.length)};",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(csp["violations"], Value::Null, "{csp}");
    assert!(csp["rules"][0].as_u64() > Some(10), "{csp}");

    assert_layout(&b, 1024, 700, false).await;
    assert_layout(&b, 390, 844, true).await;
}

/// The page's layout in a `width`×`height` viewport, from element boxes:
/// nothing wider than the window (the page never scrolls sideways), every
/// section and chart drawn, the text at a readable size; on a phone the
/// tables are cards (no header row), on a wide screen the two charts side
/// by side and above the fold.
async fn assert_layout(b: &Browser, width: u32, height: u32, phone: bool) {
    b.viewport(width, height).await;
    let m = b
        .client
        .execute(
            r##"
            const box = (sel) => {
              const r = document.querySelector(sel).getBoundingClientRect();
              return {left: r.left, right: r.right, top: r.top, bottom: r.bottom, width: r.width, height: r.height};
            };
            const page = document.scrollingElement;
            const visible = Array.from(document.querySelectorAll("td, th, pre, p, h1, h2"))
              .filter((e) => e.getClientRects().length > 0);
            return {
              viewport: [innerWidth, innerHeight],
              page: [page.scrollWidth, page.clientWidth],
              boxes: Object.fromEntries(["header", "#charts", "#chart-rate", "#chart-latency", "#calls",
                "#trace-panel", "#trace", "#routes", "#backends", "#refused"].map((s) => [s, box(s)])),
              rightmost: Math.max(...visible.map((e) => e.getBoundingClientRect().right)),
              smallest_font: Math.min(...visible.map((e) => parseFloat(getComputedStyle(e).fontSize))),
              thead: getComputedStyle(document.querySelector("#calls thead")).display,
              lines: document.querySelectorAll("#chart-rate polyline.line, #chart-latency polyline.line").length,
            };"##,
            vec![],
        )
        .await
        .unwrap();
    let when = format!("{width}x{height}");
    let vw = m["viewport"][0].as_f64().unwrap();
    assert!(vw <= f64::from(width), "{when}: {m}");
    let (scroll, client) = (
        m["page"][0].as_f64().unwrap(),
        m["page"][1].as_f64().unwrap(),
    );
    assert!(scroll <= client, "{when}: the page scrolls sideways: {m}");
    for (name, r) in m["boxes"].as_object().unwrap() {
        let f = |k: &str| r[k].as_f64().unwrap();
        assert!(
            f("width") > 0.0 && f("height") > 0.0 && f("left") >= 0.0 && f("right") <= vw + 0.5,
            "{when}: {name} is not drawn within the window: {m}"
        );
    }
    assert!(
        m["rightmost"].as_f64().unwrap() <= vw + 0.5,
        "{when}: text past the window: {m}"
    );
    assert!(
        m["smallest_font"].as_f64().unwrap() >= 11.0,
        "{when}: text too small: {m}"
    );
    assert_eq!(
        m["lines"], 3,
        "{when}: one line of calls, two of latency: {m}"
    );
    let b_ = |name: &str, k: &str| m["boxes"][name][k].as_f64().unwrap();
    if phone {
        assert_eq!(m["thead"], "none", "{when}: rows are cards: {m}");
        assert!(
            b_("#chart-latency", "top") >= b_("#chart-rate", "bottom"),
            "{when}: charts one above the other: {m}"
        );
    } else {
        assert_ne!(m["thead"], "none", "{when}: {m}");
        assert!(
            b_("#chart-latency", "left") >= b_("#chart-rate", "right"),
            "{when}: charts side by side: {m}"
        );
        assert!(
            b_("#chart-rate", "bottom") <= f64::from(height),
            "{when}: the charts are in the first screen: {m}"
        );
    }
}
