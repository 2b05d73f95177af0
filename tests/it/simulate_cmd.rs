//! `thirdparty-gateway simulate`: the route chosen and why, the backend
//! request with secrets redacted, the raw reply and the normalized one.

use crate::crm::{Answer, Crm};
use crate::support::*;

/// `simulate` on `config` and `files` with the seed call.
async fn run_simulate(config: &str, files: &[(&str, &str)], extra: &[&str]) -> String {
    simulate_cli(config, SEED, files, extra).await
}

async fn simulate(crm: &Crm, extra: &[&str]) -> String {
    let config = format!(
        r#"{TLS_HEAD}
[cors]
allow_origins = ["*"]

[backends.crm]
url = "{}/lookup"
encoding = "form"
body = {{ phone = "{{{{ caller }}}}" }}
auth = {{ type = "bearer", token_file = "token" }}
reply = {{ format = "json", extract = {{ url = "/card", title = "/name" }} }}

[[routes]]
name = "direct"
when = 'queue is not defined'
[routes.open]
event = "EventRinging"
url = "https://crm.example.org/direct"

[[routes]]
name = "sim-route"
when = 'queue.name == "trucks"'
backend = "crm"
"#,
        crm.url()
    );
    let text = run_simulate(&config, &[("token", "TOP-SECRET\n")], extra).await;
    assert!(!text.contains("TOP-SECRET"), "{text}");
    text
}

#[tokio::test]
async fn simulate_shows_route_request_raw_reply_and_normalized_reply() {
    let crm = Crm::start(|_| {
        Answer::Reply(
            200,
            "application/json",
            r#"{"card":"https://crm.example.org/c/9","name":"ACME"}"#.into(),
        )
    })
    .await;
    let text = simulate(&crm, &[]).await;
    for want in [
        "route \"direct\": when `queue is not defined` is false: skipped",
        "route \"sim-route\": when `queue.name == \"trucks\"` holds: chosen",
        &format!("POST {}/lookup", crm.url()),
        "authorization: [redacted]",
        "content-type: application/x-www-form-urlencoded",
        "phone=1001",
        "replied in",
        "HTTP 200 OK",
        r#"{"card":"https://crm.example.org/c/9","name":"ACME"}"#,
        r#"reply: {"action":"open","event":"EventRinging","url":"https://crm.example.org/c/9","autopause":false,"title":"ACME"}"#,
    ] {
        assert!(text.contains(want), "want {want:?} in:\n{text}");
    }
    assert_eq!(crm.seen().len(), 1);
}

#[tokio::test]
async fn simulate_dry_run_sends_nothing_and_failures_say_why() {
    let crm = Crm::start(|_| Answer::Reply(503, "text/plain", "down".into())).await;
    let text = simulate(&crm, &["--dry-run"]).await;
    assert!(text.contains("(dry run: not sent)"), "{text}");
    assert!(text.contains("phone=1001"), "{text}");
    assert!(crm.seen().is_empty());

    let text = simulate(&crm, &[]).await;
    assert!(text.contains(r#"reply: {"action":"none"}"#), "{text}");
    assert!(
        text.contains("reason: status (HTTP 503 Service Unavailable) from backend \"crm\""),
        "{text}"
    );
}

#[tokio::test]
async fn simulate_shows_the_wrapper_link_xucmgt_gets() {
    let config = format!(
        r#"{TLS_HEAD}
[cors]
allow_origins = ["*"]
[wrap]
secret_file = "wrap-secret"
public_url = "https://gw.example.org:8443/"
[[routes]]
name = "wrapped"
wrap = true
[routes.open]
event = "EventRinging"
url = "https://crm.example.org/?n={{{{ caller }}}}"
"#
    );
    let secret = ("wrap-secret", "0123456789abcdef0123456789abcdef\n");
    let text = run_simulate(&config, &[secret], &[]).await;
    assert!(
        text.contains(r#"reply: {"action":"open","event":"EventRinging","url":"https://crm.example.org/?n=1001""#),
        "{text}"
    );
    assert!(
        text.contains(r#"wrapped for XucMgt: {"action":"open","event":"EventRinging","url":"https://gw.example.org:8443/wrap?t="#),
        "{text}"
    );
}

#[test]
fn simulate_exits_2_when_it_cannot_simulate_and_shows_checks_warnings() {
    let dir = tempfile::TempDir::new().unwrap();
    TestCa::new().write(dir.path());
    std::fs::write(dir.path().join("call.json"), SEED).unwrap();
    let run = |config: &str| {
        std::fs::write(dir.path().join("config.toml"), config).unwrap();
        std::process::Command::new(binary())
            .current_dir(dir.path())
            .args(["simulate", "--config", "config.toml", "call.json"])
            .output()
            .unwrap()
    };
    let out = run("[routes\nbroken");
    assert_eq!(out.status.code(), Some(2), "{}", printed(&out));
    // A config with a warning: simulated all the same, the warning shown.
    let warned = format!(
        "{TLS_HEAD}[cors]\nallow_origins = [\"*\"]\n[[routes]]\n[routes.open]\nevent = \"EventRinging\"\n\
         url = \"https://crm.example.org/?a={{{{ user.fullname }}}}\"\n"
    );
    let out = run(&warned);
    let text = printed(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("warning: config.toml:")
            && text.contains("unknown field \"fullname\" of user"),
        "{text}"
    );
}
