//! Payload values and CRM replies written to move or break what the gateway
//! builds: dot segments in URL paths, reply urls that point at another host
//! or carry credentials, characters XML forbids. Real backends check what
//! they receive; the agent gets `none` with the reason logged.

use serde_json::json;

use crate::crm::{Answer, Crm};
use crate::support::*;

fn config(backends: &str, routes: &str) -> String {
    format!("{TLS_HEAD}[cors]\nallow_origins = [\"*\"]\n{backends}\n{routes}")
}

/// A payload whose caller is `caller` (JSON-escaped here).
fn call_from(caller: &str) -> String {
    json!({"user": {"userId": 4}, "caller": caller, "callee": "1000"}).to_string()
}

/// The latest request log line of `route`: outcome none with `reason`.
fn assert_logged_none(route: &str, reason: &str) {
    let lines = log_lines(&format!("route={route} "));
    let line = lines
        .iter()
        .rev()
        .find(|l| l.contains(" INFO request "))
        .unwrap_or_else(|| panic!("no request log line for {route}: {lines:#?}"));
    assert!(
        line.contains("outcome=none") && line.contains(&format!("reason={reason} ")),
        "{line}"
    );
}

/// Spellings of `.` and `..` that URL parsers (and servers that decode
/// twice) read as dot segments.
const DOT_VALUES: [&str; 8] = [
    "..",
    ".",
    "%2e",
    "%2E%2e",
    ".%2E",
    "%2e.",
    "%252e%252e",
    "%2E",
];

#[tokio::test]
async fn dot_segments_from_values_never_move_a_backend_request() {
    let crm = Crm::start(|seen| {
        Answer::Reply(
            200,
            "application/json",
            json!({"url": format!("https://crm.example.org{}", seen.target)}).to_string(),
        )
    })
    .await;
    let backends = format!(
        "[backends.cards]\nurl = \"{}/api/customers/{{{{ caller }}}}/card\"\nencoding = \"json\"\n\
         reply = {{ format = \"json\", extract = {{ url = \"url\" }} }}\n",
        crm.url()
    );
    let routes = "[[routes]]\nname = \"dots-backend\"\nbackend = \"cards\"\n";
    let gw = start_gateway(&config(&backends, routes)).await;
    let reply = gw.client().post(gw.addr, None, &call_from("0612")).await;
    assert_eq!(
        reply.json()["url"],
        "https://crm.example.org/api/customers/0612/card"
    );
    for value in DOT_VALUES {
        let reply = gw.client().post(gw.addr, None, &call_from(value)).await;
        assert_eq!(reply.json(), json!({"action": "none"}), "{value}");
        assert_logged_none("dots-backend", "template");
    }
    let targets: Vec<String> = crm.seen().into_iter().map(|s| s.target).collect();
    assert_eq!(
        targets,
        ["/api/customers/0612/card"],
        "only the honest call"
    );
}

#[tokio::test]
async fn dot_segments_from_values_never_move_a_screen_pop() {
    let routes = "[[routes]]\nname = \"dots-pop\"\n[routes.open]\nevent = \"EventRinging\"\n\
                  url = \"https://crm.example.org/customers/{{ caller }}/card\"\n";
    let gw = start_gateway(&config("", routes)).await;
    let reply = gw.client().post(gw.addr, None, &call_from("0612")).await;
    assert_eq!(
        reply.json()["url"],
        "https://crm.example.org/customers/0612/card"
    );
    for value in DOT_VALUES {
        let reply = gw.client().post(gw.addr, None, &call_from(value)).await;
        assert_eq!(reply.json(), json!({"action": "none"}), "{value}");
        assert_logged_none("dots-pop", "template");
    }
}

/// Reply urls a CRM (or whoever controls its data) could send to take the
/// agent's browser elsewhere or hand it a credential.
const BAD_REPLY_URLS: [&str; 7] = [
    "http://user:pass@crm.example.org/x",
    "https://xuc.example.org@evil.example/",
    "https://u@crm.example.org/app/x",
    "//evil.example/x",
    "/\\evil.example/x",
    "\\\\evil.example/x",
    "\\/evil.example/x",
];

#[tokio::test]
async fn reply_urls_with_user_info_or_another_host_are_refused() {
    // The CRM answers the url whose index is the caller.
    let crm = Crm::start(|seen| {
        let payload: serde_json::Value = serde_json::from_slice(&seen.body).unwrap();
        let url = match payload["caller"].as_str().unwrap().parse::<usize>() {
            Ok(i) => BAD_REPLY_URLS[i],
            Err(_) => "cards/7",
        };
        Answer::Reply(
            200,
            "application/json",
            json!({"action": "open", "event": "EventRinging", "url": url}).to_string(),
        )
    })
    .await;
    let backends = format!(
        "[backends.crm]\nurl = \"{}/lookup\"\nencoding = \"json\"\n\
         public_base = \"https://crm.example.org/app/\"\nreply = {{ format = \"contract\" }}\n",
        crm.url()
    );
    let routes = "[[routes]]\nname = \"bad-reply-urls\"\nbackend = \"crm\"\n";
    let gw = start_gateway(&config(&backends, routes)).await;
    let reply = gw.client().post(gw.addr, None, &call_from("honest")).await;
    assert_eq!(reply.json()["url"], "https://crm.example.org/app/cards/7");
    for (i, url) in BAD_REPLY_URLS.iter().enumerate() {
        let reply = gw
            .client()
            .post(gw.addr, None, &call_from(&i.to_string()))
            .await;
        assert_eq!(reply.json(), json!({"action": "none"}), "{url}");
        assert_logged_none("bad-reply-urls", "invalid_reply");
    }
    let leaked = log_lines(":pass@");
    assert!(leaked.is_empty(), "the password is not logged: {leaked:#?}");
}

#[tokio::test]
async fn screen_pop_urls_with_user_info_are_refused() {
    let routes = "[[routes]]\nname = \"userinfo-pop\"\n[routes.open]\nevent = \"EventRinging\"\n\
                  url = \"https://xuc.example.org{{ '@' | safe }}crm.example.org/?n={{ caller }}\"\n";
    let gw = start_gateway(&config("", routes)).await;
    let reply = gw.client().post(gw.addr, None, &call_from("0612")).await;
    assert_eq!(reply.json(), json!({"action": "none"}));
    assert_logged_none("userinfo-pop", "invalid_reply");
}
