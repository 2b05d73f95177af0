//! `thirdparty-gateway simulate`: the route chosen and why, the backend
//! request with secrets redacted and its query decoded, the raw reply and
//! the normalized one, each backend's failure (a shared login's failing
//! step included), the exit status.

use crate::crm::{Answer, Crm};
use crate::examples::example_config;
use crate::recipe_vtiger::without_directory;
use crate::support::*;
use crate::test_crms::PAYLOAD_NO_TOKEN as PAYLOAD;

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
    assert!(
        text.contains("  form body, decoded:\n    phone = 1001\n"),
        "{text}"
    );
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

/// The vTiger example (three backends sharing one login) with its CRM on
/// a port nothing listens on, its route named `route`, its access key
/// `key` (from the environment variable `key_var`).
fn vtiger_unreachable(route: &str, key_var: &str, key: &str) -> (String, String) {
    std::env::set_var(key_var, key);
    let url = format!("http://127.0.0.1:{}/webservice.php", free_port());
    let config = example_config(
        "vtiger.toml",
        &[
            ("https://vtiger.example.org/webservice.php", &url),
            (
                "secret('VTIGER_ACCESS_KEY')",
                &format!("secret('{key_var}')"),
            ),
            ("name = \"vtiger-contact\"", &format!("name = {route:?}")),
        ],
    );
    (config, url)
}

#[tokio::test]
async fn a_shared_login_that_cannot_connect_shows_its_failing_step_in_simulate_and_its_log() {
    let (config, url) = vtiger_unreachable("sim-shared-down", "TPGW_IT_SIM_SHARED_KEY", "k-shared");
    let text = simulate_cli_env(&config, PAYLOAD, &[], &[], &[("RUST_LOG", "debug")]).await;
    let step = format!("login step 1: GET {url}: connect: ");
    // The backend that logs in says why; those sharing its login say the
    // same cause, not only that they wait.
    assert!(
        text.contains(&format!(
            "backend \"vtiger-contacts\": no screen-pop: login ({step}"
        )),
        "{text}"
    );
    for sharing in ["vtiger-leads", "vtiger-accounts"] {
        assert!(
            text.contains(&format!(
                "backend {sharing:?}: no screen-pop: login (the last login failed ({step}"
            )),
            "{text}"
        );
    }
    assert!(text.contains("Connection refused"), "{text}");
    assert!(
        text.contains(&format!("reason: login (the last login failed ({step}")),
        "{text}"
    );
    // RUST_LOG: the gateway's own log lines on standard error.
    assert!(
        text.lines().any(|l| l.contains("WARN login failed")
            && l.contains("backend=vtiger-contacts")
            && l.contains(&step)),
        "{text}"
    );
    assert!(!text.contains("k-shared"), "{text}");

    // A running gateway's log line for each backend names it too.
    let (config, _) = vtiger_unreachable("run-shared-down", "TPGW_IT_RUN_SHARED_KEY", "k-shared");
    let gw = start_gateway(&without_directory(&config)).await;
    let reply = gw.client().post(gw.addr, None, PAYLOAD).await;
    assert_eq!(reply.json(), serde_json::json!({"action":"none"}));
    let lines = log_lines("route=run-shared-down");
    for backend in ["vtiger-contacts", "vtiger-leads", "vtiger-accounts"] {
        assert!(
            lines
                .iter()
                .any(|l| l.contains(&format!("backend={backend} "))
                    && l.contains("login step 1: GET")
                    && l.contains("Connection refused")),
            "{backend}: {lines:#?}"
        );
    }
    // No query string of a login step in a log line.
    assert!(
        lines.iter().all(|l| !l.contains("username=gateway")),
        "{lines:#?}"
    );
}

#[tokio::test]
async fn a_dry_run_shows_each_query_decoded_and_a_challenge_step_unredacted() {
    let (config, url) =
        vtiger_unreachable("sim-dry-decoded", "TPGW_IT_SIM_DRY_KEY", "k-dry-decoded");
    let text = simulate_cli(&config, PAYLOAD, &[], &["--dry-run"]).await;
    // getchallenge holds no secret: its query is shown. The login step
    // holds md5(token + key): its body is never shown.
    assert!(
        text.contains(&format!(
            "  step 1: GET {url}?operation=getchallenge&username=gateway (not sent)"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!("  step 2: POST {url} (not sent)")),
        "{text}"
    );
    // The look-up's query string, percent-encoded then decoded.
    assert!(
        text.contains("&query=SELECT+id%2Cfirstname%2Clastname%2Cphone"),
        "{text}"
    );
    let p = "'%6%1%2%3%4%5%6%7%8%'";
    assert!(
        text.contains(&format!(
            "  query string, decoded:\n    operation = query\n    sessionName = \n    query = SELECT id,firstname,lastname,phone,mobile,homephone,otherphone,fax FROM Contacts WHERE phone LIKE {p} OR mobile LIKE {p}"
        )),
        "{text}"
    );
    assert!(
        !text.contains("k-dry-decoded") && !text.contains("accessKey"),
        "{text}"
    );
}
