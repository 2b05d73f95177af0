//! Backends that log in first: a strict vTiger (challenge, md5 access key,
//! sessions the CRM drops with `INVALID_SESSIONID` over HTTP 200) and an
//! OAuth2 CRM with a mint limit. A cold call logs in then looks up; later
//! calls reuse the session; a dropped session is renewed once for many
//! calls; a broken login gives `none` with reason `login` and is not hammered.

use std::sync::Arc;

use serde_json::json;

use crate::support::*;
use crate::test_crms::vtiger::Vtiger;
use crate::test_crms::PAYLOAD;

/// A vTiger backend as `examples/vtiger.toml` configures it, with the
/// access key in the environment variable `key_var`.
fn vtiger_config(route: &str, url: &str, key_var: &str) -> String {
    format!(
        r#"{TLS_HEAD}
[server]
deadline_ms = 5000
[cors]
allow_origins = ["*"]

[backends.vtiger]
url = "{url}"
encoding = "query"
body = {{ operation = "query", sessionName = "{{{{ login.sessionName }}}}", query = "SELECT id,firstname,lastname FROM Contacts WHERE phone='{{{{ caller | sql_quote }}}}';" }}

[backends.vtiger.login]
idle_ttl_s = 1500
relogin_when = 'error.code in ["INVALID_SESSIONID", "SESSION_EXPIRED", "SESSION_LEFT_IDLE"]'

[[backends.vtiger.login.steps]]
url = "{url}"
encoding = "query"
body = {{ operation = "getchallenge", username = "gateway" }}
reply = {{ format = "json", extract = {{ token = "result.token" }} }}

[[backends.vtiger.login.steps]]
url = "{url}"
encoding = "form"
body = {{ operation = "login", username = "gateway", accessKey = "{{{{ md5(login.token ~ secret('{key_var}')) }}}}" }}
reply = {{ format = "json", extract = {{ sessionName = "result.sessionName" }} }}

[backends.vtiger.reply]
format = "json"
extract = {{ id = "result.0.id", first = "result.0.firstname", last = "result.0.lastname" }}
open_when = "id is defined"
url = "https://crm.example.org/index.php?module=Contacts&view=Detail&record={{{{ id | split('x') | last }}}}"
title = "{{{{ first }}}} {{{{ last }}}}"

[[routes]]
name = "{route}"
backend = "vtiger"
"#
    )
}

fn opened() -> serde_json::Value {
    json!({"action":"open","event":"EventRinging",
           "url":"https://crm.example.org/index.php?module=Contacts&view=Detail&record=345",
           "autopause":false,"title":"Jeanne O'Neil"})
}

#[tokio::test]
async fn vtiger_cold_call_logs_in_then_looks_up_and_the_next_call_reuses_the_session() {
    std::env::set_var("TPGW_IT_VTIGER_KEY_COLD", "k3y-cold");
    let vt = Vtiger::start("gateway", "k3y-cold").await;
    let gw = start_gateway(&vtiger_config(
        "vt-cold",
        &vt.url(),
        "TPGW_IT_VTIGER_KEY_COLD",
    ))
    .await;
    for _ in 0..2 {
        let reply = gw.client().post(gw.addr, None, PAYLOAD).await;
        assert_eq!(reply.json(), opened());
    }
    let s = vt.state.lock().unwrap();
    assert_eq!((s.challenges, s.logins, s.queries), (1, 1, 2));
    assert_eq!(
        s.vtql[0],
        "SELECT id,firstname,lastname FROM Contacts WHERE phone='0612345678';"
    );
    let seen = vt.crm.seen();
    let login = seen.iter().find(|r| r.method == "POST").unwrap();
    assert!(
        !login.text().contains("k3y-cold"),
        "the access key itself is never sent"
    );
}

#[tokio::test]
async fn vtiger_session_dropped_by_the_crm_is_renewed_and_the_call_still_opens() {
    std::env::set_var("TPGW_IT_VTIGER_KEY_DROP", "k3y-drop");
    let vt = Vtiger::start("gateway", "k3y-drop").await;
    let gw = start_gateway(&vtiger_config(
        "vt-drop",
        &vt.url(),
        "TPGW_IT_VTIGER_KEY_DROP",
    ))
    .await;
    assert_eq!(
        gw.client().post(gw.addr, None, PAYLOAD).await.json(),
        opened()
    );
    vt.state.lock().unwrap().expire_sessions();
    assert_eq!(
        gw.client().post(gw.addr, None, PAYLOAD).await.json(),
        opened()
    );
    let s = vt.state.lock().unwrap();
    assert_eq!((s.logins, s.refused_sessions, s.queries), (2, 1, 2));
}

#[tokio::test]
async fn vtiger_hundred_concurrent_calls_after_the_session_died_cause_one_login() {
    std::env::set_var("TPGW_IT_VTIGER_KEY_HUNDRED", "k3y-100");
    let vt = Vtiger::start("gateway", "k3y-100").await;
    let gw = start_gateway(&vtiger_config(
        "vt-hundred",
        &vt.url(),
        "TPGW_IT_VTIGER_KEY_HUNDRED",
    ))
    .await;
    assert_eq!(
        gw.client().post(gw.addr, None, PAYLOAD).await.json(),
        opened()
    );
    vt.state.lock().unwrap().expire_sessions();
    let client = Arc::new(gw.client());
    let addr = gw.addr;
    let calls: Vec<_> = (0..100)
        .map(|_| {
            let client = Arc::clone(&client);
            tokio::spawn(async move { client.post(addr, None, PAYLOAD).await.json() })
        })
        .collect();
    for call in calls {
        let reply = tokio::time::timeout(std::time::Duration::from_secs(60), call)
            .await
            .expect("every call answered")
            .unwrap();
        assert_eq!(reply, opened());
    }
    let s = vt.state.lock().unwrap();
    assert_eq!(
        s.logins, 2,
        "one login at start, one after the sessions died"
    );
    assert_eq!(s.challenges, 2);
}

#[tokio::test]
async fn vtiger_broken_login_gives_none_with_reason_login_and_is_not_hammered() {
    std::env::set_var("TPGW_IT_VTIGER_KEY_BROKEN", "k3y-broken");
    let vt = Vtiger::start("gateway", "k3y-broken").await;
    vt.state.lock().unwrap().broken = true;
    let gw = start_gateway(&vtiger_config(
        "vt-broken",
        &vt.url(),
        "TPGW_IT_VTIGER_KEY_BROKEN",
    ))
    .await;
    let client = Arc::new(gw.client());
    let addr = gw.addr;
    let calls: Vec<_> = (0..20)
        .map(|_| {
            let client = Arc::clone(&client);
            tokio::spawn(async move { client.post(addr, None, PAYLOAD).await.json() })
        })
        .collect();
    for call in calls {
        assert_eq!(call.await.unwrap(), json!({"action":"none"}));
    }
    let s = vt.state.lock().unwrap();
    // The calls arrive within the first backoff (1 s); one more attempt at
    // most if the machine is slow enough for a call to arrive after it.
    assert!(
        s.challenges <= 2,
        "{} challenges for 20 calls",
        s.challenges
    );
    assert_eq!(s.logins, 0);
    let lines = log_lines("route=vt-broken ");
    assert!(
        lines
            .iter()
            .any(|l| l.contains(" INFO request ") && l.contains("reason=login ")),
        "{lines:#?}"
    );
}

#[tokio::test]
async fn vtiger_wrong_access_key_is_a_login_failure_not_a_lookup() {
    std::env::set_var("TPGW_IT_VTIGER_KEY_WRONG", "not-the-key");
    let vt = Vtiger::start("gateway", "k3y-right").await;
    let gw = start_gateway(&vtiger_config(
        "vt-wrong",
        &vt.url(),
        "TPGW_IT_VTIGER_KEY_WRONG",
    ))
    .await;
    let reply = gw.client().post(gw.addr, None, PAYLOAD).await;
    assert_eq!(reply.json(), json!({"action":"none"}));
    let s = vt.state.lock().unwrap();
    assert_eq!((s.challenges, s.logins, s.queries), (1, 0, 0));
    let lines = log_lines("backend=vtiger ");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("login failed") && l.contains("no sessionName")),
        "{lines:#?}"
    );
}

#[tokio::test]
async fn simulate_shows_the_login_steps_and_hides_the_key_and_the_session() {
    std::env::set_var("TPGW_IT_VTIGER_KEY_SIM", "k3y-sim");
    let vt = Vtiger::start("gateway", "k3y-sim").await;
    let config = vtiger_config("vt-sim", &vt.url(), "TPGW_IT_VTIGER_KEY_SIM");
    let text = simulate_cli(&config, PAYLOAD, &[], &[]).await;
    assert!(
        text.contains("backend \"vtiger\" login: logged in"),
        "{text}"
    );
    // The challenge holds no secret: shown whole. The login's form body
    // (md5 of the challenge and the key) is never printed.
    assert!(
        text.contains("GET http://127.0.0.1:")
            && text.contains("/webservice.php?operation=getchallenge&username=gateway -> HTTP 200"),
        "{text}"
    );
    assert!(
        text.contains("/webservice.php -> HTTP 200") && !text.contains("accessKey"),
        "{text}"
    );
    assert!(text.contains("login.sessionName = [redacted]"), "{text}");
    assert!(text.contains("\"action\":\"open\""), "{text}");
    let session = {
        let s = vt.state.lock().unwrap();
        assert_eq!(s.logins, 1);
        s.vtql.len()
    };
    assert_eq!(session, 1);
    assert!(!text.contains("k3y-sim"), "{text}");
    // The session name the CRM issued appears nowhere in the printout.
    let seen = vt.crm.seen();
    let lookup = seen
        .iter()
        .find(|r| r.target.contains("operation=query"))
        .unwrap();
    let session_name = crate::test_crms::query_of(&lookup.target)["sessionName"].clone();
    assert!(!text.contains(&session_name), "{session_name} in {text}");
}

/// The errors `check` gives for a config, as one text.
fn load_errors(config: &str) -> String {
    let dir = tempfile::TempDir::new().unwrap();
    TestCa::new().write(dir.path());
    let path = dir.path().join("config.toml");
    std::fs::write(&path, config).unwrap();
    match thirdparty_gateway::config::load(&path) {
        Ok(_) => String::new(),
        Err(e) => e.to_string(),
    }
}

#[test]
fn bad_regions_missing_secrets_and_incomplete_logins_are_load_errors() {
    let base = vtiger_config(
        "vt-check",
        "http://127.0.0.1:9/webservice.php",
        "TPGW_IT_NEVER_SET_91",
    );
    let errors = load_errors(&base);
    assert!(errors.contains("TPGW_IT_NEVER_SET_91"), "{errors}");
    std::env::set_var("TPGW_IT_VTIGER_KEY_CHECK", "k");
    let good = vtiger_config(
        "vt-check",
        "http://127.0.0.1:9/webservice.php",
        "TPGW_IT_VTIGER_KEY_CHECK",
    );
    assert_eq!(load_errors(&good), "");
    let errors = load_errors(&format!("{good}\n[phone]\ndefault_region = \"XX\"\n"));
    assert!(errors.contains("phone.default_region"), "{errors}");
    assert_eq!(
        load_errors(&format!("{good}\n[phone]\ndefault_region = \"be\"\n")),
        ""
    );
    let errors = load_errors(&good.replace("relogin_when = '", "relogin_when = '(("));
    assert!(errors.contains("login.relogin_when"), "{errors}");
    let errors =
        load_errors(&good.replace("extract = { token = \"result.token\" }", "extract = {}"));
    assert!(errors.contains("login.steps[0].reply.extract"), "{errors}");
    let oauth = format!(
        "{TLS_HEAD}[cors]\nallow_origins = [\"*\"]\n[backends.api]\nurl = \"https://crm.example.org/x\"\nencoding = \"query\"\n\
         auth = {{ type = \"oauth2\", token_url = \"https://crm.example.org/token\", client_id = \"c\", client_secret_env = \"TPGW_IT_NEVER_SET_92\" }}\n\
         reply = {{ format = \"json\", extract = {{ url = \"u\" }} }}\n"
    );
    let errors = load_errors(&oauth);
    assert!(errors.contains("needs grant"), "{errors}");
    let errors = load_errors(&oauth.replace(
        "client_id = \"c\"",
        "grant = \"client_credentials\", client_id = \"c\"",
    ));
    assert!(errors.contains("TPGW_IT_NEVER_SET_92"), "{errors}");
}

#[test]
fn login_numbers_out_of_range_and_misspelt_login_templates_are_errors_at_their_keys() {
    std::env::set_var("TPGW_IT_VTIGER_KEY_RANGE", "k");
    let good = vtiger_config(
        "vt-range",
        "http://127.0.0.1:9/webservice.php",
        "TPGW_IT_VTIGER_KEY_RANGE",
    );
    let config = good.replace(
        "idle_ttl_s = 1500",
        "idle_ttl_s = 0\nttl_s = 86401\ntimeout_ms = 0",
    );
    let errors = load_errors(&config);
    for key in ["login.idle_ttl_s", "login.ttl_s", "login.timeout_ms"] {
        assert!(
            errors.contains(&format!("{key}: ")) && errors.contains("out of range"),
            "{key} in {errors}"
        );
    }
    let config = good
        .replace("md5(login.token", "md5(login.token | sql_quot")
        .replace("error.code in", "error.code | lowr in");
    let errors = load_errors(&config);
    assert!(
        errors.contains("login.steps[1].body.accessKey: unknown filter \"sql_quot\""),
        "{errors}"
    );
    assert!(
        errors.contains("login.relogin_when: unknown filter \"lowr\""),
        "{errors}"
    );
    let oauth = format!(
        "{TLS_HEAD}[cors]\nallow_origins = [\"*\"]\n[backends.api]\nurl = \"https://crm.example.org/x\"\nencoding = \"query\"\n\
         auth = {{ type = \"oauth2\", grant = \"client_credentials\", token_url = \"https://crm.example.org/token\", client_id = \"c\", client_secret_env = \"TPGW_IT_VTIGER_KEY_RANGE\", ttl_s = 0, timeout_ms = 86400001 }}\n\
         reply = {{ format = \"json\", extract = {{ url = \"u\" }} }}\n"
    );
    let errors = load_errors(&oauth);
    assert!(errors.contains("auth.ttl_s: 0 is out of range"), "{errors}");
    assert!(
        errors.contains("auth.timeout_ms: 86400001 is out of range"),
        "{errors}"
    );
}

#[tokio::test]
async fn vtiger_hostile_callers_stay_inside_their_sql_quoted_vtql_string() {
    std::env::set_var("TPGW_IT_VTIGER_KEY_HOSTILE", "k3y-hostile");
    let vt = Vtiger::start("gateway", "k3y-hostile").await;
    let gw = start_gateway(&vtiger_config(
        "vt-hostile",
        &vt.url(),
        "TPGW_IT_VTIGER_KEY_HOSTILE",
    ))
    .await;
    // Unquoted, each would change the query: end the string and match every
    // contact, leave a backslash that MySQL reads as escaping our closing
    // quote, or (with LIKE) be a wildcard.
    let hostile = [
        "x' OR '1'='1",
        "x' OR phone LIKE '%",
        "0612345678\\",
        "\\' OR '1'='1",
        "%",
        "06123456_8",
        "O'Neil\"",
    ];
    for caller in hostile {
        let call = PAYLOAD.replace("\"0612345678\"", &serde_json::to_string(caller).unwrap());
        let reply = gw.client().post(gw.addr, None, &call).await;
        assert_eq!(reply.json(), json!({"action":"none"}), "{caller}");
    }
    let s = vt.state.lock().unwrap();
    assert!(s.query_errors.is_empty(), "{:?}", s.query_errors);
    // Each query compared exactly the caller, as MySQL read it.
    let compared: Vec<&str> = s.values.iter().map(|v| v[0].as_str()).collect();
    assert_eq!(compared, hostile);
}
