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
    holds(seen, TOKEN)
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

/// Whether a request holds `needle` anywhere: target, headers or body.
fn holds(seen: &Seen, needle: &str) -> bool {
    seen.target.contains(needle)
        || seen.text().contains(needle)
        || seen
            .headers
            .values()
            .any(|v| String::from_utf8_lossy(v.as_bytes()).contains(needle))
}

#[tokio::test]
async fn credentials_in_a_body_or_url_never_follow_a_redirect_to_another_origin() {
    std::env::set_var("TPGW_IT_REDIRECT_PASSWORD", "pw-never-elsewhere");
    std::env::set_var("TPGW_IT_REDIRECT_SECRET", "cs-never-elsewhere");
    let other = Crm::start(|_| {
        Answer::Reply(
            200,
            "application/json",
            r#"{"access_token":"other-token","sessionName":"other-session","url":"https://crm.example.org/other"}"#.into(),
        )
    })
    .await;
    let elsewhere = other.url();
    let first = Crm::start(move |seen| {
        let path = seen.target.split('?').next().unwrap_or("");
        match path {
            // Every login and token request is sent elsewhere with a 307.
            "/login-away" | "/token-away" => Answer::Redirect(307, format!("{elsewhere}{path}")),
            "/login" => Answer::Reply(
                200,
                "application/json",
                r#"{"sessionName":"sess-never-elsewhere"}"#.into(),
            ),
            "/lookup-away" => Answer::Redirect(307, format!("{elsewhere}/lookup")),
            "/lookup-same" => Answer::Redirect(307, "/lookup-final".into()),
            "/lookup-meta" => {
                Answer::Redirect(307, "http://169.254.169.254/latest/meta-data/".into())
            }
            _ => Answer::Reply(
                200,
                "application/json",
                r#"{"url":"https://crm.example.org/same"}"#.into(),
            ),
        }
    })
    .await;
    let login = |name: &str, path: &str| {
        format!(
            r#"
[backends.{name}.login]
[[backends.{name}.login.steps]]
url = "{}{path}"
encoding = "form"
body = {{ user = "gw", password = "{{{{ secret('TPGW_IT_REDIRECT_PASSWORD') }}}}" }}
reply = {{ format = "json", extract = {{ sessionName = "sessionName" }} }}
"#,
            first.url()
        )
    };
    let lookup = |name: &str, path: &str, auth: &str| {
        format!(
            r#"
[backends.{name}]
url = "{}{path}"
encoding = "json"
follow_redirects = 3
body = {{ session = "{{{{ login.sessionName }}}}", phone = "{{{{ caller }}}}" }}
{auth}
reply = {{ format = "json", extract = {{ url = "url" }} }}
"#,
            first.url()
        )
    };
    let token = format!(
        r#"auth = {{ type = "oauth2", token_url = "{}/token-away", grant = "client_credentials", client_id = "gw", client_secret_env = "TPGW_IT_REDIRECT_SECRET" }}"#,
        first.url()
    );
    let config = format!(
        "{TLS_HEAD}[cors]\nallow_origins = [\"*\"]\n{}{}{}{}{}{}{}{}{}\n\
         [[routes]]\nname = \"r-login\"\npath = \"/login\"\nbackend = \"login-away\"\n\
         [[routes]]\nname = \"r-token\"\npath = \"/token\"\nbackend = \"token-away\"\n\
         [[routes]]\nname = \"r-away\"\npath = \"/away\"\nbackend = \"lookup-away\"\n\
         [[routes]]\nname = \"r-same\"\npath = \"/same\"\nbackend = \"lookup-same\"\n\
         [[routes]]\nname = \"r-meta\"\npath = \"/meta\"\nbackend = \"lookup-meta\"\n",
        lookup("login-away", "/lookup-same", ""),
        login("login-away", "/login-away"),
        lookup("token-away", "/lookup-same", &token),
        lookup("lookup-away", "/lookup-away", ""),
        login("lookup-away", "/login"),
        lookup("lookup-same", "/lookup-same", ""),
        login("lookup-same", "/login"),
        // No credential at all: still not sent to a metadata service.
        lookup("lookup-meta", "/lookup-meta", "")
            .replace("session = \"{{ login.sessionName }}\", ", "",),
        "",
    );
    let gw = start_gateway(&config).await;
    let client = gw.client();
    let none = serde_json::json!({"action": "none"});
    for path in ["/login", "/token", "/away", "/meta"] {
        let reply = client.post_at(gw.addr, path, None, SEED).await;
        assert_eq!(reply.json(), none, "{path}");
    }
    // The same origin is still followed, session and all.
    let reply = client.post_at(gw.addr, "/same", None, SEED).await;
    assert_eq!(reply.json()["url"], "https://crm.example.org/same");
    // Nothing reached the other origin: no password, client secret, session.
    assert!(other.seen().is_empty(), "{:#?}", other.seen());
    for needle in [
        "pw-never-elsewhere",
        "cs-never-elsewhere",
        "sess-never-elsewhere",
    ] {
        assert!(other.seen().iter().all(|s| !holds(s, needle)));
    }
    for (route, says) in [
        ("r-away", ["reason=redirect", "a secret or a session value"]),
        ("r-meta", ["reason=redirect", "link-local"]),
        ("r-login", ["reason=login", ""]),
        ("r-token", ["reason=login", ""]),
    ] {
        let lines = log_lines(&format!("route={route} "));
        assert!(
            lines.iter().any(|l| says.iter().all(|s| l.contains(s))),
            "{route}: {lines:#?}"
        );
    }
}

#[tokio::test]
async fn a_url_that_does_not_parse_is_named_by_its_key_not_quoted_with_its_secret() {
    std::env::set_var("TPGW_IT_URL_SECRET", "not a host s3cret-in-url");
    let config = format!(
        r#"{TLS_HEAD}[cors]
allow_origins = ["*"]
[backends.leaky]
url = "https://{{{{ secret('TPGW_IT_URL_SECRET') }}}}/api"
encoding = "query"
body = {{ phone = "{{{{ caller }}}}" }}
reply = {{ format = "json", extract = {{ url = "url" }} }}

[[routes]]
name = "leaky-url"
backend = "leaky"
"#
    );
    let gw = start_gateway(&config).await;
    let reply = gw.client().post(gw.addr, None, SEED).await;
    assert_eq!(reply.json(), serde_json::json!({"action": "none"}));
    let lines = log_lines("route=leaky-url ");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("backends.leaky.url (it reads a secret or login.*) is not a URL")),
        "{lines:#?}"
    );
    assert!(
        lines.iter().all(|l| !l.contains("s3cret-in-url")),
        "{lines:#?}"
    );
}
