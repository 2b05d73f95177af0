//! The agent's token never crosses origins: on a `forward_token` route a
//! redirect to another origin is refused (`none`, reason `redirect`), since
//! any templated header or the re-sent body may hold the token. Two real
//! backends on two ports (two origins); the second must never see the token.

use crate::crm::{Answer, Crm, Seen};
use crate::support::*;

const TOKEN: &str = "eyJhbGciOiJIUzI1NiJ9.eyJsb2dpbiI6Impib25kIn0.c2lnbmF0dXJl";

fn opened(url: &str) -> Answer {
    Answer::Reply(200, "application/json", format!(r#"{{"url":"{url}"}}"#))
}

/// Whether a request holds the token anywhere: target, headers or body.
fn holds_token(seen: &Seen) -> bool {
    seen.target.contains(TOKEN)
        || seen.text().contains(TOKEN)
        || seen
            .headers
            .values()
            .any(|v| String::from_utf8_lossy(v.as_bytes()).contains(TOKEN))
}

#[tokio::test]
async fn a_forward_token_call_never_follows_a_redirect_to_another_origin() {
    let other = Crm::start(|_| opened("https://crm.example.org/other")).await;
    let elsewhere = format!("{}/api", other.url());
    let first = Crm::start(move |seen| match seen.target.as_str() {
        "/cross" => Answer::Redirect(307, elsewhere.clone()),
        "/same" => Answer::Redirect(307, "/final".into()),
        _ => opened("https://crm.example.org/same"),
    })
    .await;
    let backend = |name: &str, path: &str| {
        format!(
            r#"
[backends.{name}]
url = "{}{path}"
encoding = "json"
follow_redirects = 3
headers = {{ X-Agent-Token = "{{{{ user.token }}}}" }}
body = {{ phone = "{{{{ caller }}}}", token = "{{{{ user.token }}}}" }}
reply = {{ format = "json", extract = {{ url = "url" }} }}
"#,
            first.url()
        )
    };
    let config = format!(
        r#"{TLS_HEAD}[cors]
allow_origins = ["*"]
{}{}
[[routes]]
name = "token-cross"
path = "/cross"
backend = "cross"
forward_token = true

[[routes]]
name = "token-same"
path = "/same"
backend = "same"
forward_token = true

[[routes]]
name = "no-token-cross"
path = "/plain"
backend = "cross"
"#,
        backend("cross", "/cross"),
        backend("same", "/same"),
    );
    let gw = start_gateway(&config).await;

    let reply = gw
        .client()
        .post_at(gw.addr, "/cross", None, WITH_TOKEN)
        .await;
    assert_eq!(reply.json(), serde_json::json!({"action": "none"}));
    let id = reply.header("x-request-id").unwrap();
    let lines = log_lines(&format!("id={id} "));
    let line = lines
        .iter()
        .find(|l| l.contains(" request "))
        .unwrap_or_else(|| panic!("no request line: {lines:?}"));
    assert!(line.contains("reason=redirect"), "{line}");
    assert!(line.contains("another origin"), "{line}");
    assert!(!line.contains(TOKEN), "{line}");
    // The first origin got the token (its route forwards it), the other nothing.
    assert!(holds_token(&first.seen()[0]), "{:?}", first.seen()[0]);
    assert!(other.seen().is_empty(), "{:?}", other.seen());

    // Within the origin the redirect is followed, token and all.
    let reply = gw
        .client()
        .post_at(gw.addr, "/same", None, WITH_TOKEN)
        .await;
    assert_eq!(reply.json()["url"], "https://crm.example.org/same");
    let hops: Vec<_> = first.seen().into_iter().skip(1).collect();
    assert_eq!(hops.len(), 2, "{hops:?}");
    assert!(hops.iter().all(holds_token), "{hops:?}");

    // Without forward_token the request holds no token and may move on.
    let reply = gw
        .client()
        .post_at(gw.addr, "/plain", None, WITH_TOKEN)
        .await;
    assert_eq!(reply.json()["url"], "https://crm.example.org/other");
    assert_eq!(other.seen().len(), 1);
    assert!(!holds_token(&other.seen()[0]), "{:?}", other.seen()[0]);
}
