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
    // A literal `@` would be refused at load (every call would be); a
    // dialplan variable brings it in on this call only.
    let routes = "[[routes]]\nname = \"userinfo-pop\"\n[routes.open]\nevent = \"EventRinging\"\n\
                  url = \"https://xuc.example.org{{ userData.AT | safe }}crm.example.org/?n={{ caller }}\"\n";
    let gw = start_gateway(&config("", routes)).await;
    let call =
        json!({"user": {"userId": 4}, "caller": "0612", "callee": "1000", "userData": {"AT": "@"}});
    let reply = gw.client().post(gw.addr, None, &call.to_string()).await;
    assert_eq!(reply.json(), json!({"action": "none"}));
    assert_logged_none("userinfo-pop", "invalid_reply");
}

/// Whether a body is a well-formed XML 1.0 document: every character one
/// XML allows, and quick-xml reads it to the end with matching end tags.
fn well_formed_xml(body: &[u8]) -> Result<(), String> {
    let text = std::str::from_utf8(body).map_err(|e| e.to_string())?;
    let allowed = |c: char| matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..);
    if let Some(c) = text.chars().find(|&c| !allowed(c)) {
        return Err(format!("character {c:?} is not allowed in XML 1.0"));
    }
    let mut reader = quick_xml::Reader::from_str(text);
    reader.config_mut().check_end_names = true;
    let mut depth = 0usize;
    loop {
        match reader.read_event().map_err(|e| e.to_string())? {
            quick_xml::events::Event::Start(_) => depth += 1,
            quick_xml::events::Event::End(_) => depth -= 1,
            quick_xml::events::Event::Eof => break,
            _ => {}
        }
    }
    if depth == 0 {
        Ok(())
    } else {
        Err("unclosed element".into())
    }
}

#[tokio::test]
async fn soap_bodies_stay_well_formed_whatever_the_values() {
    let crm = Crm::start(|seen| match well_formed_xml(&seen.body) {
        Ok(()) => Answer::Reply(
            200,
            "text/xml",
            "<Envelope><Body><Card>https://crm.example.org/card/1</Card></Body></Envelope>".into(),
        ),
        Err(e) => Answer::Reply(400, "text/plain", e),
    })
    .await;
    let backends = format!(
        r#"
[backends.soap]
url = "{}/soap"
encoding = "xml"
body = '''<?xml version="1.0"?><Envelope><Body><Lookup><Phone>{{{{ caller }}}}</Phone><Data>{{{{ userData.note }}}}</Data></Lookup></Body></Envelope>'''
reply = {{ format = "xml", extract = {{ url = "Envelope/Body/Card" }} }}
"#,
        crm.url()
    );
    let routes = "[[routes]]\nname = \"xml-controls\"\nbackend = \"soap\"\n";
    let gw = start_gateway(&config(&backends, routes)).await;
    let payload = json!({
        "user": {"userId": 4},
        "caller": "06\u{0}12\u{1}\u{8}\u{b}\u{c}\u{1f}34",
        "callee": "1000",
        "userData": {"note": "a\u{fffe}b\u{ffff}c\td\u{1b}[0m <&>"},
    })
    .to_string();
    let reply = gw.client().post(gw.addr, None, &payload).await;
    assert_eq!(
        reply.json()["url"],
        "https://crm.example.org/card/1",
        "the CRM read the body: {:?}",
        crm.seen().first().map(|s| s.text())
    );
    let body = crm.seen()[0].text();
    assert!(body.contains("<Phone>061234</Phone>"), "{body}");
    assert!(
        body.contains("<Data>abc\td[0m &lt;&amp;&gt;</Data>"),
        "{body}"
    );
}

#[tokio::test]
async fn a_token_that_is_not_a_string_is_named_by_type_not_echoed() {
    let routes = "[[routes]]\nname = \"token-type\"\n[routes.open]\nevent = \"EventRinging\"\n\
                  url = \"https://crm.example.org/?n={{ caller }}\"\n";
    let gw = start_gateway(&config("", routes)).await;
    for (token, kind) in [("98765432123", "a number"), (r#"{"t":"zx8q-k3y"}"#, "map")] {
        let body =
            format!(r#"{{"user":{{"userId":1,"token":{token}}},"caller":"1","callee":"2"}}"#);
        let reply = gw.client().post(gw.addr, None, &body).await;
        assert_eq!(reply.status, 400);
        let text = reply.text();
        assert!(
            text.contains("user.token: invalid type") && text.contains(kind),
            "{text}"
        );
        for secret in ["98765432123", "zx8q-k3y"] {
            assert!(!text.contains(secret), "{text}");
            assert!(log_lines(secret).is_empty(), "{:#?}", log_lines(secret));
        }
    }
    assert!(
        !log_lines("user.token: invalid type").is_empty(),
        "the refusal is logged"
    );
}

/// `simulate` on a `forward_token` route: the token is in the request's
/// header, URL and body, and echoed by the CRM; everywhere it shows
/// `[redacted]`, dry run or not.
#[tokio::test]
async fn simulate_redacts_a_forwarded_token() {
    let token = "eyJhbGciOiJIUzI1NiJ9.eyJsb2dpbiI6Impib25kIn0.c2lnbmF0dXJl";
    let crm = Crm::start(|seen| {
        Answer::Reply(
            200,
            "application/json",
            json!({"url": "https://crm.example.org/card", "echo": seen.text()}).to_string(),
        )
    })
    .await;
    let config = config(
        &format!(
            "[backends.api]\nurl = \"{}/api?t={{{{ user.token }}}}\"\nencoding = \"json\"\n\
             headers = {{ X-Agent-Token = \"Bearer {{{{ user.token }}}}\" }}\n\
             reply = {{ format = \"json\", extract = {{ url = \"/url\" }} }}\n",
            crm.url()
        ),
        "[[routes]]\nname = \"sim-forward\"\nbackend = \"api\"\nforward_token = true\n",
    );
    assert!(WITH_TOKEN.contains(token));
    for extra in [&["--dry-run"][..], &[]] {
        let text = simulate_cli(&config, WITH_TOKEN, &[], extra).await;
        assert!(text.contains("x-agent-token: Bearer [redacted]"), "{text}");
        assert!(text.contains("/api?t=[redacted]"), "{text}");
        assert!(text.contains(r#""token":"[redacted]""#), "{text}");
        assert!(!text.contains(token), "{text}");
        assert!(!text.contains("c2lnbmF0dXJl"), "{text}");
    }
    assert_eq!(crm.seen().len(), 1, "the live run sent the request");
    assert!(
        crm.seen()[0].text().contains(token),
        "the CRM got the token"
    );
}

/// A one-letter token is hidden where the request puts it, and nowhere
/// else: the rest of the printout (`application/json`, the caller's name)
/// stays readable.
#[tokio::test]
async fn simulate_hides_a_one_letter_token_only_where_it_stands() {
    let token = "eyJhbGciOiJIUzI1NiJ9.eyJsb2dpbiI6Impib25kIn0.c2lnbmF0dXJl";
    let payload = WITH_TOKEN.replace(token, "a");
    assert_ne!(payload, WITH_TOKEN);
    let config = config(
        "[backends.api]\nurl = \"http://127.0.0.1:9/api?t={{ user.token }}\"\nencoding = \"json\"\n\
         headers = { X-Agent-Token = \"Bearer {{ user.token }}\" }\n\
         reply = { format = \"json\", extract = { url = \"/url\" } }\n",
        "[[routes]]\nname = \"sim-forward\"\nbackend = \"api\"\nforward_token = true\n",
    );
    let text = simulate_cli(&config, &payload, &[], &["--dry-run"]).await;
    assert!(text.contains("x-agent-token: Bearer [redacted]"), "{text}");
    assert!(text.contains("/api?t=[redacted]"), "{text}");
    assert!(text.contains(r#""token":"[redacted]""#), "{text}");
    assert!(text.contains("application/json"), "{text}");
    assert!(text.contains("sim-forward"), "{text}");
}
