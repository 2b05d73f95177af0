//! The ops console over HTTP: what it shows of each call (route, backends
//! tried, outcome, reason, the decision trace, the caller masked), what it
//! never shows (a secret, the agent's token, a session, the full caller),
//! who may see it (a secret when it asks; `check` refuses a console on a
//! public address without one), and its memory (a ring that keeps its cap
//! in calls and bytes, over 100,000 calls).

use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use serde_json::Value;
use thirdparty_gateway::answer::Observer;
use thirdparty_gateway::backend::{Failure, RawReply};
use thirdparty_gateway::console::{Console, ConsoleSettings, Ending};
use thirdparty_gateway::constants::CONSOLE_CALL_MAX_BYTES;
use thirdparty_gateway::contract::Reply;
use thirdparty_gateway::outcome::NoneReason;
use thirdparty_gateway::request_id::RequestId;

use crate::check_cmd::check_ok;
use crate::crm::refused_url;
use crate::support::*;
use crate::test_crms::vtiger::Vtiger;

/// The agent's xuc token in the calls' payloads.
pub(crate) const TOKEN: &str = "agent-token-eyJhbGciOiJIUzI1NiJ9.c2lnbmF0dXJl";
/// The caller of every call, as XucMgt sends it.
pub(crate) const CALLER: &str = "0612345678";
/// How the console shows it.
pub(crate) const MASKED: &str = "********78";

/// A call from [`CALLER`] in `queue`, with the agent's token.
pub(crate) fn call(queue: &str) -> String {
    format!(
        r#"{{"user":{{"userId":4,"agentId":1,"fullName":"Agent","token":"{TOKEN}"}},"caller":"{CALLER}","callee":"1000","queue":{{"id":2,"name":"{queue}","displayName":"Q"}},"userData":{{}}}}"#
    )
}

/// Three CRMs and the secrets the gateway holds for them.
pub(crate) struct Crms {
    pub(crate) good: Vtiger,
    pub(crate) bad: Vtiger,
    pub(crate) down: String,
    /// Every value that must never reach a page or its JSON but the
    /// sessions (read from the CRM once it gave them).
    pub(crate) secrets: Vec<String>,
}

impl Crms {
    /// `tag` makes the environment variables of this test its own.
    pub(crate) async fn start(tag: &str) -> Self {
        let (good_key, bad_key) = (
            format!("k3y-console-good-{tag}"),
            format!("k3y-console-wrong-{tag}"),
        );
        std::env::set_var(format!("TPGW_IT_CONSOLE_GOOD_{tag}"), &good_key);
        std::env::set_var(format!("TPGW_IT_CONSOLE_BAD_{tag}"), &bad_key);
        Self {
            good: Vtiger::start("gateway", &good_key).await,
            // The CRM expects another key than the one the gateway has.
            bad: Vtiger::start("gateway", &format!("k3y-the-crm-expects-{tag}")).await,
            down: refused_url().await,
            secrets: vec![good_key, bad_key, TOKEN.to_owned(), CALLER.to_owned()],
        }
    }

    /// Every session the CRMs handed out.
    pub(crate) fn sessions(&self) -> Vec<String> {
        let mut out = self.good.state.lock().unwrap().query_sessions.clone();
        out.extend(self.bad.state.lock().unwrap().query_sessions.clone());
        out.sort();
        out.dedup();
        out
    }

    /// Routes by queue: `sales` asks a vTiger that knows the caller (it
    /// opens), `down` a CRM nobody answers on (`none`, connect), `badkey` a
    /// vTiger whose key the gateway has wrong (`none`, login). `ops` is
    /// added to `[ops]`.
    pub(crate) fn config(&self, tag: &str, ops: &str) -> String {
        let vtiger = |name: &str, url: &str, var: &str, extra: &str| {
            format!(
                r#"
[backends.{name}]
url = "{url}"
encoding = "query"
body = {{ operation = "query", sessionName = "{{{{ login.sessionName }}}}", query = "SELECT id,firstname,lastname FROM Contacts WHERE phone='{{{{ caller | sql_quote }}}}';" }}
{extra}
[[backends.{name}.login.steps]]
url = "{url}"
encoding = "query"
body = {{ operation = "getchallenge", username = "gateway" }}
reply = {{ format = "json", extract = {{ token = "result.token" }} }}
[[backends.{name}.login.steps]]
url = "{url}"
encoding = "form"
body = {{ operation = "login", username = "gateway", accessKey = "{{{{ md5(login.token ~ secret('{var}')) }}}}" }}
reply = {{ format = "json", extract = {{ sessionName = "result.sessionName" }} }}
[backends.{name}.reply]
format = "json"
extract = {{ id = "result.0.id", first = "result.0.firstname", last = "result.0.lastname" }}
open_when = "id is defined"
url = "https://crm.example.org/index.php?module=Contacts&view=Detail&record={{{{ id | split('x') | last }}}}&from={{{{ caller }}}}"
title = "{{{{ first }}}} {{{{ last }}}}"
"#
            )
        };
        let good = vtiger(
            "vtiger",
            &self.good.url(),
            &format!("TPGW_IT_CONSOLE_GOOD_{tag}"),
            "headers = { X-Agent = \"{{ user.token }}\" }",
        );
        let bad = vtiger(
            "vtiger_badkey",
            &self.bad.url(),
            &format!("TPGW_IT_CONSOLE_BAD_{tag}"),
            "",
        );
        format!(
            r#"{TLS_HEAD}
[server]
deadline_ms = 5000
[cors]
allow_origins = ["*"]
[ops]
{ops}
{good}
{bad}
[backends.down]
url = "{down}/lookup"
encoding = "json"
body = {{ phone = "{{{{ caller }}}}" }}
timeout_ms = 2000
[backends.down.reply]
format = "json"
extract = {{ url = "/url" }}

[[routes]]
name = "sales"
when = 'queue.name == "sales"'
backend = "vtiger"
forward_token = true

[[routes]]
name = "down"
when = 'queue.name == "down"'
backend = "down"

[[routes]]
name = "badkey"
when = 'queue.name == "badkey"'
backend = "vtiger_badkey"
"#,
            down = self.down,
            ops = if ops.contains("listen =") {
                ops.to_owned()
            } else {
                format!("listen = \"127.0.0.1:9090\"\n{ops}")
            },
        )
    }
}

/// A JSON GET on the console.
async fn get_json(ops: std::net::SocketAddr, path: &str, headers: &[(&str, &str)]) -> Value {
    let reply = plain_get(ops, path, headers).await;
    assert_eq!(reply.status, 200, "{path}: {}", reply.text());
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    reply.json()
}

/// Asserts that none of `secrets` is in `text` (`what` names it).
pub(crate) fn assert_holds_none(text: &str, secrets: &[String], what: &str) {
    for secret in secrets {
        assert!(
            !text.contains(secret.as_str()),
            "{what} shows {secret:?}:\n{text}"
        );
    }
}

/// The three calls, posted in order; returns their replies.
pub(crate) async fn post_the_three(gw: &TestGateway) -> [Value; 3] {
    let mut out = Vec::new();
    for queue in ["sales", "down", "badkey"] {
        out.push(gw.client().post(gw.addr, None, &call(queue)).await.json());
    }
    out.try_into().unwrap()
}

#[tokio::test]
async fn console_json_shows_each_decision_masked_and_never_a_secret_token_or_session() {
    let crms = Crms::start("json").await;
    let gw = start_gateway(&crms.config("json", "")).await;
    let ops = start_ops(&gw.live).await;
    let [opened, down, badkey] = post_the_three(&gw).await;
    assert_eq!(opened["action"], "open", "{opened}");
    assert_eq!(down, serde_json::json!({"action": "none"}));
    assert_eq!(badkey, serde_json::json!({"action": "none"}));

    let list = get_json(ops.addr, "/api/calls?after=0", &[]).await;
    let calls = list["calls"].as_array().unwrap();
    assert_eq!(calls.len(), 3, "{list}");
    // Newest first.
    let by_route = |route: &str| calls.iter().find(|c| c["route"] == route).unwrap();
    let (sales, down, badkey) = (by_route("sales"), by_route("down"), by_route("badkey"));
    assert_eq!(
        (
            &sales["outcome"],
            &sales["title"],
            &sales["tried"][0]["result"]
        ),
        (&"open".into(), &"Jeanne O'Neil".into(), &"open".into()),
        "{sales}"
    );
    assert_eq!(
        (&down["outcome"], &down["reason"]),
        (&"none".into(), &"connect".into()),
        "{down}"
    );
    assert_eq!(
        (&badkey["outcome"], &badkey["reason"]),
        (&"none".into(), &"login".into()),
        "{badkey}"
    );
    for c in calls {
        assert_eq!(c["caller"], MASKED, "{c}");
    }
    // The url the agent got holds the caller: masked too.
    assert!(
        sales["url"]
            .as_str()
            .unwrap()
            .ends_with(&format!("&from={MASKED}")),
        "{sales}"
    );

    let trace = |c: &Value| {
        let seq = c["seq"].as_u64().unwrap();
        async move { get_json(ops.addr, &format!("/api/calls/{seq}"), &[]).await }
    };
    let sales_trace = trace(sales).await;
    let text = sales_trace["trace"].as_str().unwrap();
    for line in [
        "route \"sales\": when `queue.name == \"sales\"` holds: chosen",
        "backend \"vtiger\" login: logged in",
        "login.sessionName = [redacted]",
        "backend \"vtiger\" request:",
        "x-agent: [redacted]",
        "backend \"vtiger\" replied in ",
        ": HTTP 200 (",
        "backend \"vtiger\": opened (",
        "reply: {\"action\":\"open\",\"event\":\"EventRinging\",\"url\":\"https://crm.example.org/index.php?module=Contacts&view=Detail&record=345&from=********78\"",
    ] {
        assert!(text.contains(line), "no {line:?} in:\n{text}");
    }
    assert!(
        text.contains("WHERE+phone%3D%27********78%27") || text.contains("phone='********78'"),
        "{text}"
    );
    let down_trace = trace(down).await;
    let text = down_trace["trace"].as_str().unwrap();
    assert!(
        text.contains("route \"sales\": when `queue.name == \"sales\"` did not hold: skipped"),
        "{text}"
    );
    assert!(
        text.contains("route \"down\": when `queue.name == \"down\"` holds: chosen"),
        "{text}"
    );
    assert!(
        text.contains("backend \"down\": no screen-pop: connect ("),
        "{text}"
    );
    assert!(text.contains("reason: connect ("), "{text}");
    let badkey_trace = trace(badkey).await;
    let text = badkey_trace["trace"].as_str().unwrap();
    assert!(
        text.contains("backend \"vtiger_badkey\": no screen-pop: login (login step 2: "),
        "{text}"
    );
    assert!(text.contains("\nreason: login (login step 2: "), "{text}");

    let overview = get_json(ops.addr, "/api/overview", &[]).await;
    assert_eq!(overview["calls"]["since_start"]["calls"], 3, "{overview}");
    assert_eq!(
        overview["calls"]["since_start"]["none"]["login"], 1,
        "{overview}"
    );
    let routes: Vec<&str> = overview["routes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(routes, ["sales", "down", "badkey"]);
    let backend = |name: &str| {
        overview["backends"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["name"] == name)
            .cloned()
            .unwrap()
    };
    let (vt, dn, bad) = (backend("vtiger"), backend("down"), backend("vtiger_badkey"));
    assert_eq!(vt["login"]["logins"], 1, "{vt}");
    assert!(vt["login"]["session_age_s"].is_u64(), "{vt}");
    assert_eq!(vt["answered_rate"], 1.0, "{vt}");
    assert_eq!(dn["last_error"]["reason"], "connect", "{dn}");
    assert_eq!(dn["answered_rate"], 0.0, "{dn}");
    assert_eq!(bad["login"]["failures"], 1, "{bad}");
    assert!(bad["login"]["backoff_left_ms"].as_u64() > Some(0), "{bad}");
    assert!(
        bad["login"]["last_failure"]["detail"]
            .as_str()
            .unwrap()
            .starts_with("login step 2"),
        "{bad}"
    );
    assert_eq!(
        overview["series"]["points"].as_array().map(Vec::len),
        Some(60)
    );

    // Nothing the gateway keeps secret is in any of it.
    let mut secrets = crms.secrets.clone();
    secrets.extend(crms.sessions());
    assert!(!crms.sessions().is_empty());
    let page = plain_get(ops.addr, "/", &[("accept", "text/html")]).await;
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    for (what, body) in [
        ("the list", list.to_string()),
        ("the sales trace", sales_trace.to_string()),
        ("the down trace", down_trace.to_string()),
        ("the badkey trace", badkey_trace.to_string()),
        ("the overview", overview.to_string()),
        ("the page", page.text()),
    ] {
        assert_holds_none(&body, &secrets, what);
    }
}

#[tokio::test]
async fn console_with_a_secret_asks_for_it_even_on_loopback_while_health_and_metrics_stay_open() {
    std::env::set_var("TPGW_IT_CONSOLE_SECRET", "console-s3cret-0123456789");
    let crms = Crms::start("auth").await;
    let gw = start_gateway(&crms.config(
        "auth",
        "console_secret_env = \"TPGW_IT_CONSOLE_SECRET\"\nconsole_user = \"watch\"",
    ))
    .await;
    let ops = start_ops(&gw.live).await;
    let basic = |user: &str, password: &str| {
        let pair = format!("{user}:{password}");
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(pair)
        )
    };
    for path in [
        "/",
        "/api/overview",
        "/api/calls",
        "/api/calls/1",
        "/console.js",
    ] {
        let reply = plain_get(ops.addr, path, &[]).await;
        assert_eq!(reply.status, 401, "{path}");
        assert_eq!(
            reply.header("www-authenticate"),
            Some("Basic realm=\"thirdparty-gateway console\", charset=\"UTF-8\""),
            "{path}"
        );
        assert!(!reply.text().contains("console-s3cret"), "{path}");
        for wrong in [
            basic("watch", "console-s3cret-012345678"),
            basic("ops", "console-s3cret-0123456789"),
            "Bearer console-s3cret".to_owned(),
        ] {
            let reply = plain_get(ops.addr, path, &[("authorization", &wrong)]).await;
            assert_eq!(reply.status, 401, "{path} {wrong}");
        }
    }
    let right = basic("watch", "console-s3cret-0123456789");
    let overview = plain_get(ops.addr, "/api/overview", &[("authorization", &right)]).await;
    assert_eq!(overview.status, 200, "{}", overview.text());
    assert!(!overview.text().contains("console-s3cret"));
    let bearer = plain_get(
        ops.addr,
        "/",
        &[
            ("authorization", "Bearer console-s3cret-0123456789"),
            ("accept", "text/html"),
        ],
    )
    .await;
    assert_eq!(bearer.status, 200);
    assert!(bearer.text().contains("<script src=\"/console.js\""));
    // With a secret, the Host does not matter (it is checked when there
    // is none: see below).
    let elsewhere = plain_get(
        ops.addr,
        "/api/overview",
        &[
            ("authorization", &right),
            ("host", "gateway.example.org:9090"),
        ],
    )
    .await;
    assert_eq!(elsewhere.status, 200);
    for path in ["/healthz", "/metrics"] {
        assert_eq!(plain_get(ops.addr, path, &[]).await.status, 200, "{path}");
    }

    // Configured for every address (`0.0.0.0`), served here on loopback:
    // the same door.
    let public = start_gateway(&crms.config(
        "auth",
        "listen = \"0.0.0.0:9090\"\nconsole_secret_env = \"TPGW_IT_CONSOLE_SECRET\"",
    ))
    .await;
    let public_ops = start_ops(&public.live).await;
    assert_eq!(
        plain_get(public_ops.addr, "/api/overview", &[])
            .await
            .status,
        401
    );
    let bearer = [("authorization", "Bearer console-s3cret-0123456789")];
    assert_eq!(
        plain_get(public_ops.addr, "/api/overview", &bearer)
            .await
            .status,
        200
    );
    // Without a secret there, the console is off; health and metrics are not.
    let bare = start_gateway(&crms.config("auth", "listen = \"0.0.0.0:9090\"")).await;
    let bare_ops = start_ops(&bare.live).await;
    for (path, status) in [
        ("/", 404),
        ("/api/overview", 404),
        ("/healthz", 200),
        ("/metrics", 200),
    ] {
        assert_eq!(
            plain_get(bare_ops.addr, path, &[]).await.status,
            status,
            "{path}"
        );
    }

    // Without a secret (a loopback console), only this host's names.
    let open = start_gateway(&crms.config("auth", "")).await;
    let open_ops = start_ops(&open.live).await;
    let rebound = plain_get(
        open_ops.addr,
        "/api/overview",
        &[("host", "attacker.example:9090")],
    )
    .await;
    assert_eq!(rebound.status, 421, "{}", rebound.text());
    assert_eq!(
        plain_get(
            open_ops.addr,
            "/api/overview",
            &[("host", "127.0.0.1:9090")]
        )
        .await
        .status,
        200
    );
}

#[test]
fn check_refuses_a_console_on_a_public_address_without_a_secret() {
    let base = "[tls]\ncert = \"cert.pem\"\nkey = \"key.pem\"\n[cors]\nallow_origins = [\"*\"]\n";
    let (ok, text) = check_ok(&format!(
        "{base}[ops]\nlisten = \"0.0.0.0:9090\"\nconsole = true\n"
    ));
    assert!(!ok, "{text}");
    assert!(
        text.contains("ops.console")
            && text.contains("the console on 0.0.0.0:9090 (not a loopback address) needs a secret"),
        "{text}"
    );
    // A config from before the console, ops on a management address for
    // the load balancer: it still loads, with the console off.
    let (ok, text) = check_ok(&format!("{base}[ops]\nlisten = \"0.0.0.0:9090\"\n"));
    assert!(ok, "{text}");
    assert!(
        text.contains("warning") && text.contains("the console is off there until it has a secret"),
        "{text}"
    );
    let config = thirdparty_gateway::config::parse(
        std::path::Path::new("config.toml"),
        "[server]\nplain_http = true\n[cors]\nallow_origins = [\"*\"]\n[ops]\nlisten = \"0.0.0.0:9090\"\n",
    )
    .unwrap();
    assert!(!config.ops.console.page);
    let (ok, text) = check_ok(&format!(
        "{base}[ops]\nlisten = \"[::]:9090\"\nconsole_secret_env = \"TPGW_IT_CONSOLE_SHORT\"\n"
    ));
    assert!(!ok, "an unset variable: {text}");
    std::env::set_var("TPGW_IT_CONSOLE_SHORT", "short");
    let (ok, text) = check_ok(&format!(
        "{base}[ops]\nlisten = \"[::]:9090\"\nconsole_secret_env = \"TPGW_IT_CONSOLE_SHORT\"\n"
    ));
    assert!(!ok && text.contains("shorter than 16 bytes"), "{text}");
    std::env::set_var("TPGW_IT_CONSOLE_LONG", "a-long-console-secret-0123456789");
    for ops in [
        "listen = \"0.0.0.0:9090\"\nconsole_secret_env = \"TPGW_IT_CONSOLE_LONG\"",
        "listen = \"0.0.0.0:9090\"\nconsole = false",
        "listen = \"127.0.0.1:9090\"",
        "listen = \"[::1]:9090\"",
    ] {
        let (ok, text) = check_ok(&format!("{base}[ops]\n{ops}\n"));
        assert!(ok, "{ops}: {text}");
    }
    let (ok, text) = check_ok(&format!("{base}[ops]\nconsole_calls = 0\n"));
    assert!(!ok && text.contains("ops.console_calls"), "{text}");
    let (ok, text) = check_ok(&format!(
        "{base}[ops]\notlp_endpoint = \"ftp://collector\"\n"
    ));
    assert!(!ok && text.contains("ops.otlp_endpoint"), "{text}");
}

/// The same three calls' figures as the real server records them, many
/// times over: the ring keeps its number of calls, and every call its
/// bound, so the memory stays what the cap says.
#[tokio::test]
async fn the_ring_keeps_its_cap_in_calls_and_bytes_over_100k_calls() {
    const CAP: usize = 1000;
    let crms = Crms::start("ring").await;
    // Through the real server first: its calls are the ones measured.
    let gw = start_gateway(&crms.config("ring", "console_calls = 20")).await;
    let ops = start_ops(&gw.live).await;
    for _ in 0..15 {
        post_the_three(&gw).await;
    }
    let overview = get_json(ops.addr, "/api/overview", &[]).await;
    let ring = &overview["ring"];
    assert_eq!(
        (
            ring["calls"].as_u64(),
            ring["cap"].as_u64(),
            ring["last"].as_u64()
        ),
        (Some(20), Some(20), Some(45)),
        "{ring}"
    );
    let bytes = ring["bytes"].as_u64().unwrap() as usize;
    assert!(bytes <= 20 * CONSOLE_CALL_MAX_BYTES, "{ring}");
    eprintln!(
        "through the server: {} bytes for 20 calls, {} bytes a call",
        bytes,
        bytes / 20
    );

    // Then 100,000 calls recorded in-process, each as large as a hostile
    // payload and CRM can make it: a long caller, a 60 KiB request body,
    // a long failure detail.
    let config = thirdparty_gateway::config::parse(
        std::path::Path::new("/nonexistent/config.toml"),
        &format!(
            "[server]\nplain_http = true\n[cors]\nallow_origins = [\"*\"]\n\
             [backends.crm]\nurl = \"http://127.0.0.1:9/lookup\"\nencoding = \"json\"\nbody = {{ q = \"{{{{ caller }}}}{}\" }}\n\
             [backends.crm.reply]\nformat = \"json\"\nextract = {{ url = \"/url\" }}\n\
             [[routes]]\nname = \"r\"\nbackend = \"crm\"\n",
            "x".repeat(60 * 1024)
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let backend = config.backends.get("crm").unwrap();
    let caller = "06".repeat(2000);
    let payload = thirdparty_gateway::contract::parse_payload(
        format!(r#"{{"user":{{"userId":1}},"caller":"{caller}","callee":"1"}}"#).as_bytes(),
    )
    .unwrap();
    let request = backend
        .request
        .build(config.router.templates(), &payload.context())
        .unwrap();
    let reply = RawReply {
        status: http::StatusCode::BAD_GATEWAY,
        headers: http::HeaderMap::new(),
        body: Bytes::from(vec![b'r'; 100_000]),
        url: url::Url::parse("http://127.0.0.1:9/elsewhere?x=1").unwrap(),
        redirected: true,
    };
    let failure = Failure::new(NoneReason::Status, "y".repeat(10_000));
    let console = Console::new(ConsoleSettings {
        page: true,
        calls: CAP,
        show_caller: false,
        candidates: false,
        auth: None,
        otlp: None,
    });
    // The route's card (name, explanation, backends' names and header
    // lines) is the config's, shared by its calls, not copied into each.
    let card = std::sync::Arc::clone(&config.router.routes_on("/").unwrap()[0].card);
    let started = tokio::time::Instant::now();
    for _ in 0..100_000 {
        let mut recorder =
            console.recorder(tokio::time::Instant::now(), RequestId::next(), &caller);
        recorder.route(&card);
        for _ in 0..3 {
            recorder.request(backend, &request, tokio::time::Instant::now());
            recorder.response(backend, &reply);
            recorder.attempt(
                backend,
                Some(&failure),
                Duration::from_millis(3),
                tokio::time::Instant::now(),
            );
        }
        console.record(
            recorder,
            Ending {
                cancelled: None,
                reply: &Reply::None,
                wrapped: false,
                backend: Some("crm"),
                failure: Some(&failure),
                ended: tokio::time::Instant::now(),
            },
        );
    }
    let state = console.lock();
    assert_eq!(
        (state.ring.len(), state.ring.cap(), state.ring.last()),
        (CAP, CAP, 100_000)
    );
    let largest = state.ring.iter().map(|c| c.heap_bytes()).max().unwrap();
    assert!(
        largest <= CONSOLE_CALL_MAX_BYTES,
        "a call holds {largest} bytes"
    );
    assert!(
        state.ring.bytes() <= CAP * CONSOLE_CALL_MAX_BYTES,
        "{}",
        state.ring.bytes()
    );
    eprintln!(
        "100,000 hostile calls in {:?}: the ring holds {} calls in {} bytes, {} bytes a call at most",
        started.elapsed(),
        state.ring.len(),
        state.ring.bytes(),
        largest
    );
}

/// A CRM whose search answers two records: someone else's, then the
/// caller's.
async fn two_records() -> crate::crm::Crm {
    crate::crm::Crm::start(|_| {
        crate::crm::Answer::Reply(
            200,
            "application/json",
            serde_json::json!({"result": [
                {"id": 1, "name": "Someone Else", "phone": "0699999999"},
                {"id": 2, "name": "The Caller", "phone": "06 12 34 56 78"},
            ]})
            .to_string(),
        )
    })
    .await
}

/// A backend `name` asking `crm` in `encoding` (the caller and a value
/// that needs encoding), reading candidates from its reply.
fn searching(name: &str, crm: &crate::crm::Crm, encoding: &str) -> String {
    format!(
        r#"
[backends.{name}]
url = "{url}/search"
encoding = "{encoding}"
body = {{ q = "{{{{ caller }}}}", note = "a b&c" }}
[backends.{name}.reply]
format = "json"
records = "result"
phones = ["phone"]
extract = {{ id = "id", name = "name" }}
url = "https://crm.example.org/c/{{{{ id }}}}"
title = "{{{{ name }}}}"
"#,
        url = crm.url()
    )
}

/// A config with the console on (`ops` added to `[ops]`), `backends` and
/// `routes`.
fn console_config(ops: &str, backends: &str, routes: &str) -> String {
    format!(
        "{TLS_HEAD}\n[server]\ndeadline_ms = 5000\n[cors]\nallow_origins = [\"*\"]\n\
         [phone]\ndefault_region = \"FR\"\n[ops]\nlisten = \"127.0.0.1:9090\"\n{ops}\n{backends}\n{routes}"
    )
}

/// A route `name` for the calls of queue `queue`, asking `backend`.
fn route(name: &str, queue: &str, backend: &str) -> String {
    format!("[[routes]]\nname = \"{name}\"\nwhen = 'queue.name == \"{queue}\"'\nbackend = \"{backend}\"\n")
}

/// The trace of call `seq`.
async fn trace_of(ops: std::net::SocketAddr, seq: u64) -> String {
    let call = get_json(ops, &format!("/api/calls/{seq}"), &[]).await;
    call["trace"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_trace_shows_a_query_and_a_form_decoded_and_candidates_only_when_asked() {
    let crm = two_records().await;
    let backends = searching("q", &crm, "query") + &searching("f", &crm, "form");
    let routes = route("q", "q", "q") + &route("f", "f", "f");
    for candidates in [false, true] {
        let ops_keys = format!("console_candidates = {candidates}");
        let gw = start_gateway(&console_config(&ops_keys, &backends, &routes)).await;
        let ops = start_ops(&gw.live).await;
        for queue in ["q", "f"] {
            let reply = gw.client().post(gw.addr, None, &call(queue)).await.json();
            assert_eq!(reply["title"], "The Caller", "{reply}");
        }
        let query = trace_of(ops.addr, 1).await;
        let form = trace_of(ops.addr, 2).await;
        // As `simulate` shows them: each value as the CRM reads it, the
        // caller masked as everywhere in the console.
        assert!(
            query.contains(&format!(
                "  GET {}/search?q={MASKED}&note=a+b%26c\n  query string, decoded:\n    q = {MASKED}\n    note = a b&c\n",
                crm.url()
            )),
            "{query}"
        );
        assert!(
            form.contains(&format!(
                "\n  q={MASKED}&note=a+b%26c\n\n  form body, decoded:\n    q = {MASKED}\n    note = a b&c\n"
            )),
            "{form}"
        );
        assert!(
            form.contains("  content-type: application/x-www-form-urlencoded\n"),
            "{form}"
        );
        for trace in [&query, &form] {
            assert!(!trace.contains(CALLER), "{trace}");
            assert_eq!(
                trace.contains("candidates:"),
                candidates,
                "console_candidates = {candidates}:\n{trace}"
            );
            if candidates {
                for line in [
                    "record 0: dropped: no stored number is the caller's\n",
                    "    phone = \"********99\" -> +*********99\n",
                    "record 1: kept: holds the caller's number\n",
                    "    phone = \"** ** ** ** 78\" -> +*********78\n",
                ] {
                    assert!(trace.contains(line), "no {line:?} in:\n{trace}");
                }
            }
        }
    }
}

#[tokio::test]
async fn a_trace_explains_its_route_from_the_config_it_ran_under_after_a_reload() {
    let crm = two_records().await;
    let backends = searching("q", &crm, "query");
    let before = console_config(
        "",
        &backends,
        &(route("first", "x", "q") + &route("second", "q", "q")),
    );
    let gw = start_gateway(&before).await;
    let ops = start_ops(&gw.live).await;
    gw.client().post(gw.addr, None, &call("q")).await;
    // The routes change: the first goes, the second asks for another
    // queue, a third comes.
    let after = console_config(
        "",
        &backends,
        &(route("second", "other", "q") + &route("third", "q", "q")),
    );
    assert_eq!(gw.reload_with(&after), 2);
    gw.client().post(gw.addr, None, &call("q")).await;

    // Each call's trace, the old one's from the config before the reload.
    for (seq, routes) in [
        (
            1,
            "route \"first\": when `queue.name == \"x\"` did not hold: skipped\n\
             route \"second\": when `queue.name == \"q\"` holds: chosen\n",
        ),
        (
            2,
            "route \"second\": when `queue.name == \"other\"` did not hold: skipped\n\
             route \"third\": when `queue.name == \"q\"` holds: chosen\n",
        ),
    ] {
        let trace = trace_of(ops.addr, seq).await;
        assert!(trace.starts_with(routes), "call {seq}:\n{trace}");
    }
}

/// Posts `body` to the gateway at `addr` over TLS and returns once `crm`
/// (which never answers) has the backend's request: a call in flight, its
/// connection open.
pub(crate) async fn call_waiting_on(
    crm: &crate::crm::Crm,
    ca: &TestCa,
    addr: std::net::SocketAddr,
    body: &str,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let mut tls = tls_over(
        &ca.ca_der,
        tokio::net::TcpStream::connect(addr).await.unwrap(),
        b"http/1.1",
    )
    .await;
    let head = format!(
        "POST / HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    tokio::io::AsyncWriteExt::write_all(&mut tls, head.as_bytes())
        .await
        .unwrap();
    for _ in 0..500 {
        if !crm.seen().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(crm.seen().len(), 1, "the CRM was asked");
    tls
}

#[tokio::test]
async fn a_call_dropped_before_its_reply_is_kept_with_why() {
    let crm = crate::crm::Crm::start(|_| crate::crm::Answer::Hang).await;
    let backends = format!(
        "[backends.slow]\nurl = \"{}/x\"\nencoding = \"json\"\n\
         reply = {{ format = \"json\", extract = {{ url = \"url\" }} }}\n",
        crm.url()
    );
    let gw = start_gateway(&console_config("", &backends, &route("slow", "q", "slow"))).await;
    let ops = start_ops(&gw.live).await;
    let tls = call_waiting_on(&crm, &gw.ca, gw.addr, &call("q")).await;
    // The agent's browser goes away before the reply.
    drop(tls);

    let mut list = Value::Null;
    for _ in 0..500 {
        list = get_json(ops.addr, "/api/calls?after=0", &[]).await;
        if list["calls"].as_array().is_some_and(|c| !c.is_empty()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let dropped = &list["calls"][0];
    assert_eq!(
        (&dropped["outcome"], &dropped["reason"], &dropped["route"]),
        (&"cancelled".into(), &"client".into(), &"slow".into()),
        "{list}"
    );
    let trace = trace_of(ops.addr, 1).await;
    for line in [
        "route \"slow\": when `queue.name == \"q\"` holds: chosen\n",
        "backend \"slow\" request:\n",
        "\nno reply: cancelled (client): the client closed the request before its reply (499)\n",
    ] {
        assert!(trace.contains(line), "no {line:?} in:\n{trace}");
    }
    // Not counted as an answer.
    let overview = get_json(ops.addr, "/api/overview", &[]).await;
    assert_eq!(overview["calls"]["since_start"]["calls"], 0, "{overview}");
}

/// Requests refused before a route could take them (the agent's tab stays
/// closed, the recent calls show nothing) are shown apart, with why: a
/// preflight and a POST from an origin not allowed, a POST to a path
/// without routes, a payload whose caller is a number (its digits masked
/// in the error). A flood of them keeps its bound and pushes no call out.
#[tokio::test]
async fn requests_refused_before_a_route_are_shown_apart_with_why() {
    let crm = two_records().await;
    let config = console_config("", &searching("crm", &crm, "json"), &route("r", "q", "crm"))
        .replace(
            "allow_origins = [\"*\"]",
            "allow_origins = [\"https://xuc.example.org\"]",
        );
    let gw = start_gateway(&config).await;
    let ops = start_ops(&gw.live).await;
    let client = gw.client();
    let stranger = "https://xuc.other.example";
    let preflight = http::Request::builder()
        .method("OPTIONS")
        .uri("/")
        .header("host", "localhost")
        .header("origin", stranger)
        .header("access-control-request-method", "POST")
        .body(http_body_util::Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(client.send(gw.addr, preflight).await.status, 403);
    assert_eq!(
        client
            .post(gw.addr, Some(stranger), &call("q"))
            .await
            .status,
        403
    );
    let allowed = Some("https://xuc.example.org");
    let wrong_path = client.post_at(gw.addr, "/crm", allowed, &call("q")).await;
    assert_eq!(wrong_path.status, 404);
    let numeric = call("q").replace(&format!("\"{CALLER}\""), &CALLER[1..]);
    assert_eq!(client.post(gw.addr, allowed, &numeric).await.status, 400);
    // A call that goes through is a call, not a refusal.
    assert_eq!(
        client.post(gw.addr, allowed, &call("q")).await.json()["action"],
        "open"
    );

    let overview = get_json(ops.addr, "/api/overview", &[]).await;
    let refused = &overview["refused"];
    let seen: Vec<(String, u64, String)> = refused["recent"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                format!(
                    "{} {} {}",
                    r["method"].as_str().unwrap(),
                    r["path"].as_str().unwrap(),
                    r["origin"].as_str().unwrap()
                ),
                r["status"].as_u64().unwrap(),
                r["error"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(refused["since_start"], 4, "{refused}");
    let (newest, oldest) = (&seen[0], &seen[3]);
    assert_eq!(
        (newest.0.as_str(), newest.1),
        ("POST / https://xuc.example.org", 400),
        "{refused}"
    );
    assert!(
        newest.2.contains("caller") && newest.2.contains("*******78"),
        "{refused}"
    );
    assert_eq!(
        (seen[1].0.as_str(), seen[1].1),
        ("POST /crm https://xuc.example.org", 404)
    );
    assert!(seen[1].2.contains("THIRD_PARTY_URL"), "{refused}");
    assert_eq!(
        (&seen[2], &oldest.0, oldest.1),
        (
            &(
                format!("POST / {stranger}"),
                403,
                "origin not allowed".to_owned()
            ),
            &format!("OPTIONS / {stranger}"),
            403
        )
    );
    assert!(!overview.to_string().contains(&CALLER[1..]), "{overview}");
    assert_eq!(overview["ring"]["last"], 1, "{overview}");

    // A flood: the refused keep their bound, the call stays.
    for _ in 0..60 {
        let reply = client.post(gw.addr, Some(stranger), "{}").await;
        assert_eq!(reply.status, 403);
    }
    let overview = get_json(ops.addr, "/api/overview", &[]).await;
    assert_eq!(overview["refused"]["since_start"], 64, "{overview}");
    assert_eq!(
        overview["refused"]["recent"].as_array().unwrap().len(),
        thirdparty_gateway::console::refused::KEPT
    );
    assert_eq!(overview["ring"]["last"], 1, "{overview}");
    assert_eq!(overview["ring"]["calls"], 1, "{overview}");
}
