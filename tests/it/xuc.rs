//! The agent token check against a mock xuc API: a valid token lets the route
//! answer, an invalid or missing one gives `none`, a slow xuc gives `none`
//! before the deadline, and a checked token is cached.

use std::time::{Duration, Instant};

use crate::crm::{Answer, Crm};
use crate::support::*;

const GOOD: &str = "eyJhbGciOiJIUzI1NiJ9.eyJsb2dpbiI6Impib25kIn0.c2lnbmF0dXJl";

async fn gateway(xuc: &Crm, deadline_ms: u64) -> TestGateway {
    let config = format!(
        r#"{TLS_HEAD}
[server]
deadline_ms = {deadline_ms}
[cors]
allow_origins = ["*"]
[xuc]
url = "{}"
timeout_ms = {deadline_ms}
[[routes]]
name = "checked"
[routes.open]
event = "EventRinging"
url = "https://crm.example.org/?n={{{{ caller }}}}"
"#,
        xuc.url()
    );
    start_gateway(&config).await
}

fn with_token(token: &str) -> String {
    WITH_TOKEN.replace(GOOD, token)
}

fn xuc_api() -> impl Fn(&crate::crm::Seen) -> Answer + Send + Sync + 'static {
    |seen| {
        assert_eq!(seen.target, "/xuc/api/2.0/auth/check");
        match seen.header("authorization") {
            Some(h) if h == format!("Bearer {GOOD}") => {
                Answer::Reply(200, "application/json", r#"{"login":"jbond"}"#.into())
            }
            Some("Bearer slow") => Answer::Hang,
            _ => Answer::Reply(
                401,
                "application/json",
                r#"{"error":"InvalidToken"}"#.into(),
            ),
        }
    }
}

#[tokio::test]
async fn valid_token_passes_and_is_cached() {
    let xuc = Crm::start(xuc_api()).await;
    let gw = gateway(&xuc, 1500).await;
    for _ in 0..3 {
        let reply = gw.client().post(gw.addr, None, WITH_TOKEN).await;
        assert_eq!(reply.json()["action"], "open");
    }
    assert_eq!(xuc.seen().len(), 1, "checked once, then cached");
    assert!(log_lines(GOOD).is_empty(), "the token is never logged");
}

#[tokio::test]
async fn invalid_or_missing_token_gives_none() {
    let xuc = Crm::start(xuc_api()).await;
    let gw = gateway(&xuc, 1500).await;
    let reply = gw
        .client()
        .post(gw.addr, None, &with_token("forged.token.x"))
        .await;
    assert_eq!(reply.text(), r#"{"action":"none"}"#);
    let reply = gw.client().post(gw.addr, None, SEED).await;
    assert_eq!(reply.text(), r#"{"action":"none"}"#);
    let lines = log_lines("route=checked ");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("reason=token") && l.contains("HTTP 401")),
        "{lines:#?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("reason=token") && l.contains("no user.token")),
        "{lines:#?}"
    );
    assert!(log_lines("forged.token.x").is_empty());
    assert_eq!(xuc.seen().len(), 1, "a missing token is not sent to xuc");
}

#[tokio::test]
async fn slow_xuc_gives_none_before_the_deadline() {
    let xuc = Crm::start(xuc_api()).await;
    let gw = gateway(&xuc, 400).await;
    let started = Instant::now();
    let reply = gw.client().post(gw.addr, None, &with_token("slow")).await;
    assert_eq!(reply.text(), r#"{"action":"none"}"#);
    assert!(
        started.elapsed() < Duration::from_millis(400 + 2000),
        "{:?}",
        started.elapsed()
    );
}
