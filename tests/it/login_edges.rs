//! Logins at their edges, against the strict OAuth2 test CRM: the password
//! grant and extra token parameters the endpoint insists on; a login slower
//! than a call's deadline (or than its own timeout); sessions that end by
//! time (`idle_ttl_s`, `ttl_s`, `expires_in`); the backoff after a failed
//! login; `simulate` with and without `--dry-run`; what `check` says about
//! templates that read what they cannot see; the login metrics.
//! Assertions are on counts and outcomes, never on durations.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::ops::ops_get_at;
use crate::support::*;
use crate::test_crms::oauth::OAuthCrm;
use crate::test_crms::{fields, PAYLOAD};

/// A config with backend `name` and a route of the same name to it.
fn config(name: &str, deadline_ms: u64, auth: &str) -> String {
    format!(
        "{}{}{}",
        head(deadline_ms),
        backend(name, auth),
        route(name, &[name])
    )
}

fn head(deadline_ms: u64) -> String {
    format!(
        r#"{TLS_HEAD}
[server]
deadline_ms = {deadline_ms}
[cors]
allow_origins = ["*"]
[phone]
default_region = "FR"
"#
    )
}

/// A backend `name` that looks up `/api/contacts` with a session; `auth`
/// is its `auth = {...}` line, or a login ([`login_steps`]).
fn backend(name: &str, auth: &str) -> String {
    format!(
        r#"
[backends.{name}]
url = "{{{{ login.api_domain | safe }}}}/api/contacts"
encoding = "query"
body = {{ phone = "{{{{ caller | e164 }}}}" }}
{auth}

[backends.{name}.reply]
format = "json"
extract = {{ id = "records.0.id", name = "records.0.name" }}
open_when = "id is defined"
url = "https://crm.example.org/contacts/{{{{ id }}}}"
title = "{{{{ name }}}}"
"#
    )
}

fn route(name: &str, backends: &[&str]) -> String {
    format!("\n[[routes]]\nname = \"{name}\"\nbackend = {backends:?}\n")
}

/// An `auth = { type = "oauth2", ... }` line for the test CRM.
fn oauth2(crm: &OAuthCrm, rest: &str) -> String {
    format!(
        r#"auth = {{ type = "oauth2", token_url = "{}/oauth/token", client_id = "gw-client", {rest} }}"#,
        crm.crm.url()
    )
}

/// A one-step `[backends.NAME.login]` that asks the test CRM's token
/// endpoint itself (the client in the body), with `settings` (`ttl_s`...).
fn login_steps(name: &str, crm: &OAuthCrm, secret_var: &str, settings: &str) -> String {
    format!(
        r#"headers = {{ Authorization = "Bearer {{{{ login.access_token }}}}" }}

[backends.{name}.login]
{settings}

[[backends.{name}.login.steps]]
url = "{}/oauth/token"
encoding = "form"
body = {{ grant_type = "client_credentials", client_id = "gw-client", client_secret = "{{{{ secret('{secret_var}') }}}}" }}
reply = {{ format = "json", extract = {{ access_token = "access_token", api_domain = "api_domain" }} }}
"#,
        crm.crm.url()
    )
}

fn opened() -> serde_json::Value {
    json!({"action":"open","event":"EventRinging","url":"https://crm.example.org/contacts/003xx0001",
           "autopause":false,"title":"Jeanne O'Neil"})
}

fn none() -> serde_json::Value {
    json!({"action":"none"})
}

/// The token requests the CRM received, as form fields.
fn token_forms(crm: &OAuthCrm) -> Vec<std::collections::HashMap<String, String>> {
    crm.crm
        .seen()
        .iter()
        .filter(|r| r.target == "/oauth/token")
        .map(|r| fields(&r.text()))
        .collect()
}

/// Waits (at most 10 s) for the gateway to log that `backend` logged in.
async fn logged_in(backend: &str) {
    let needle = format!("backend={backend}");
    for _ in 0..200 {
        if log_lines(&needle).iter().any(|l| l.contains("logged in")) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{backend} never logged in: {:#?}", log_lines(&needle));
}

// 1. The password grant and extra token parameters.

#[tokio::test]
async fn password_grant_sends_the_resource_owner_client_and_extra_params_to_a_strict_endpoint() {
    std::env::set_var("TPGW_IT_EDGE_PW_SECRET", "s3cr:et/+");
    std::env::set_var("TPGW_IT_EDGE_PW_PASSWORD", "pa ss&w=rd%");
    let crm = OAuthCrm::start(Duration::from_secs(3600)).await;
    crm.state.lock().unwrap().required =
        vec![("resource".into(), "https://org.crm.dynamics.com".into())];
    let auth = oauth2(
        &crm,
        r#"grant = "password", username = "gw@example.org", password_env = "TPGW_IT_EDGE_PW_PASSWORD", client_secret_env = "TPGW_IT_EDGE_PW_SECRET", params = { resource = "https://org.crm.dynamics.com" }"#,
    );
    let gw = start_gateway(&config("edge-password", 5000, &auth)).await;
    for _ in 0..2 {
        let reply = gw.client().post(gw.addr, None, PAYLOAD).await;
        assert_eq!(reply.json(), opened());
    }
    {
        let s = crm.state.lock().unwrap();
        assert_eq!((s.token_requests, s.mints, s.lookups), (1, 1, 2));
    }
    let forms = token_forms(&crm);
    let form = &forms[0];
    assert_eq!(form["grant_type"], "password");
    assert_eq!(form["username"], "gw@example.org");
    assert_eq!(form["password"], "pa ss&w=rd%");
    assert_eq!(form["resource"], "https://org.crm.dynamics.com");
    // The client authenticated with Basic, so not in the body too.
    assert!(!form.contains_key("client_secret"), "{form:?}");
    assert!(!form.contains_key("client_id"), "{form:?}");
}

#[tokio::test]
async fn a_token_endpoint_that_requires_an_audience_refuses_a_config_without_params() {
    std::env::set_var("TPGW_IT_EDGE_AUD_SECRET", "s3cr:et/+");
    let crm = OAuthCrm::start(Duration::from_secs(3600)).await;
    crm.state.lock().unwrap().required =
        vec![("audience".into(), "https://api.example.org".into())];
    let without = oauth2(
        &crm,
        r#"grant = "client_credentials", client_auth = "body", client_secret_env = "TPGW_IT_EDGE_AUD_SECRET""#,
    );
    let gw = start_gateway(&config("edge-no-audience", 5000, &without)).await;
    let reply = gw.client().post(gw.addr, None, PAYLOAD).await;
    assert_eq!(reply.json(), none());
    {
        let s = crm.state.lock().unwrap();
        assert_eq!((s.token_requests, s.mints, s.lookups), (1, 0, 0));
    }
    let lines = log_lines("backend=edge-no-audience ");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("login failed") && l.contains("HTTP 400")),
        "{lines:#?}"
    );
    let with = without.replace(
        "client_auth",
        r#"params = { audience = "https://api.example.org" }, client_auth"#,
    );
    let gw = start_gateway(&config("edge-audience", 5000, &with)).await;
    let reply = gw.client().post(gw.addr, None, PAYLOAD).await;
    assert_eq!(reply.json(), opened());
    let forms = token_forms(&crm);
    assert_eq!(forms.len(), 2);
    assert_eq!(forms[1]["audience"], "https://api.example.org");
    assert_eq!(forms[1]["client_id"], "gw-client");
    assert_eq!(forms[1]["client_secret"], "s3cr:et/+");
}

// 2. A login slower than a call's deadline, or than its own timeout.

#[tokio::test]
async fn a_login_slower_than_the_deadline_serves_the_next_call_without_a_second_login() {
    std::env::set_var("TPGW_IT_EDGE_SLOW_SECRET", "s3cr:et/+");
    let crm = OAuthCrm::start(Duration::from_secs(3600)).await;
    crm.state.lock().unwrap().token_delay = Some(Duration::from_millis(1500));
    let auth = oauth2(
        &crm,
        r#"grant = "client_credentials", client_secret_env = "TPGW_IT_EDGE_SLOW_SECRET""#,
    );
    let gw = start_gateway(&config("edge-slow", 400, &auth)).await;
    let reply = gw.client().post(gw.addr, None, PAYLOAD).await;
    assert_eq!(reply.json(), none());
    let lines = log_lines("route=edge-slow ");
    assert!(
        lines
            .iter()
            .any(|l| l.contains(" INFO request ") && l.contains("reason=login ")),
        "{lines:#?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("backend gave no screen-pop")
                && l.contains("login still running at the deadline")),
        "{lines:#?}"
    );
    // The login went on without the call that started it.
    logged_in("edge-slow").await;
    let reply = gw.client().post(gw.addr, None, PAYLOAD).await;
    assert_eq!(reply.json(), opened());
    let s = crm.state.lock().unwrap();
    assert_eq!((s.token_requests, s.mints, s.lookups), (1, 1, 1));
    let m = gw.live.metrics.encode();
    assert!(
        m.contains(r#"thirdparty_gateway_requests_total{route="edge-slow",outcome="none",reason="login"} 1"#),
        "{m}"
    );
}

#[tokio::test]
async fn a_login_slower_than_its_timeout_ms_is_abandoned_as_failed() {
    std::env::set_var("TPGW_IT_EDGE_TIMEOUT_SECRET", "s3cr:et/+");
    let crm = OAuthCrm::start(Duration::from_secs(3600)).await;
    crm.state.lock().unwrap().token_delay = Some(Duration::from_millis(3000));
    let auth = oauth2(
        &crm,
        r#"grant = "client_credentials", client_secret_env = "TPGW_IT_EDGE_TIMEOUT_SECRET", timeout_ms = 200"#,
    );
    let gw = start_gateway(&config("edge-timeout", 2000, &auth)).await;
    let reply = gw.client().post(gw.addr, None, PAYLOAD).await;
    assert_eq!(reply.json(), none());
    let lines = log_lines("backend=edge-timeout");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("login failed") && l.contains("login took over 200 ms")),
        "{lines:#?}"
    );
    assert!(!lines.iter().any(|l| l.contains("logged in")), "{lines:#?}");
    assert_eq!(crm.state.lock().unwrap().lookups, 0);
}

// 3. Sessions that end by time: each test waits just past the lifetime
// once, and counts logins.

#[tokio::test]
async fn a_session_idle_longer_than_idle_ttl_s_is_not_reused() {
    std::env::set_var("TPGW_IT_EDGE_IDLE_SECRET", "s3cr:et/+");
    let crm = OAuthCrm::start(Duration::from_secs(3600)).await;
    let steps = login_steps(
        "edge-idle",
        &crm,
        "TPGW_IT_EDGE_IDLE_SECRET",
        "idle_ttl_s = 1",
    );
    let gw = start_gateway(&config("edge-idle", 5000, &steps)).await;
    assert_eq!(
        gw.client().post(gw.addr, None, PAYLOAD).await.json(),
        opened()
    );
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(
        gw.client().post(gw.addr, None, PAYLOAD).await.json(),
        opened()
    );
    let s = crm.state.lock().unwrap();
    assert_eq!((s.token_requests, s.lookups, s.refused), (2, 2, 0));
}

#[tokio::test]
async fn a_session_older_than_ttl_s_is_not_reused() {
    std::env::set_var("TPGW_IT_EDGE_TTL_SECRET", "s3cr:et/+");
    let crm = OAuthCrm::start(Duration::from_secs(3600)).await;
    let steps = login_steps("edge-ttl", &crm, "TPGW_IT_EDGE_TTL_SECRET", "ttl_s = 1");
    let gw = start_gateway(&config("edge-ttl", 5000, &steps)).await;
    assert_eq!(
        gw.client().post(gw.addr, None, PAYLOAD).await.json(),
        opened()
    );
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(
        gw.client().post(gw.addr, None, PAYLOAD).await.json(),
        opened()
    );
    let s = crm.state.lock().unwrap();
    assert_eq!((s.token_requests, s.lookups, s.refused), (2, 2, 0));
}

#[tokio::test]
async fn a_token_past_expires_in_is_renewed_before_the_crm_refuses_it() {
    std::env::set_var("TPGW_IT_EDGE_EXP_SECRET", "s3cr:et/+");
    let crm = OAuthCrm::start(Duration::from_secs(2)).await;
    let auth = oauth2(
        &crm,
        r#"grant = "client_credentials", client_secret_env = "TPGW_IT_EDGE_EXP_SECRET""#,
    );
    let gw = start_gateway(&config("edge-expires", 5000, &auth)).await;
    assert_eq!(
        gw.client().post(gw.addr, None, PAYLOAD).await.json(),
        opened()
    );
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(
        gw.client().post(gw.addr, None, PAYLOAD).await.json(),
        opened()
    );
    let s = crm.state.lock().unwrap();
    // Renewed by time: the expired token was never sent.
    assert_eq!((s.mints, s.lookups, s.refused, s.early_mints), (2, 2, 0, 0));
}

// 4. The backoff after a failed login.

#[tokio::test]
async fn calls_in_the_backoff_window_never_reach_the_crm_and_the_next_attempt_comes_after_it() {
    std::env::set_var("TPGW_IT_EDGE_BACKOFF_SECRET", "not-the-secret");
    let crm = OAuthCrm::start(Duration::from_secs(3600)).await;
    let auth = oauth2(
        &crm,
        r#"grant = "client_credentials", client_secret_env = "TPGW_IT_EDGE_BACKOFF_SECRET""#,
    );
    let gw = start_gateway(&config("edge-backoff", 5000, &auth)).await;
    let client = gw.client();
    assert_eq!(client.post(gw.addr, None, PAYLOAD).await.json(), none());
    let failed = Instant::now();
    assert_eq!(crm.state.lock().unwrap().token_requests, 1);
    // The window is 1 s from the failure, which came before its reply:
    // calls sent within its first 300 ms are inside it even if a loaded
    // machine takes most of a second to hand one to the gateway.
    let mut inside = 0;
    while inside < 20 && failed.elapsed() < Duration::from_millis(300) {
        assert_eq!(client.post(gw.addr, None, PAYLOAD).await.json(), none());
        inside += 1;
    }
    assert_eq!(
        crm.state.lock().unwrap().token_requests,
        1,
        "{inside} calls in the backoff window"
    );
    let lines = log_lines("route=edge-backoff ");
    let spaced = lines
        .iter()
        .filter(|l| l.contains("backend gave no screen-pop") && l.contains("next attempt in"))
        .count();
    assert_eq!(spaced, inside, "{lines:#?}");
    let window_over =
        (failed + Duration::from_millis(1200)).saturating_duration_since(Instant::now());
    tokio::time::sleep(window_over).await;
    assert_eq!(client.post(gw.addr, None, PAYLOAD).await.json(), none());
    let s = crm.state.lock().unwrap();
    assert_eq!((s.token_requests, s.mints, s.lookups), (2, 0, 0));
}

#[tokio::test]
async fn a_login_that_works_again_resets_the_backoff_to_one_second() {
    std::env::set_var("TPGW_IT_EDGE_RESET_SECRET", "s3cr:et/+");
    let crm = OAuthCrm::start(Duration::from_secs(3600)).await;
    crm.state.lock().unwrap().client_secret = "rotated".into();
    let auth = oauth2(
        &crm,
        r#"grant = "client_credentials", client_secret_env = "TPGW_IT_EDGE_RESET_SECRET""#,
    );
    let gw = start_gateway(&config("edge-reset", 5000, &auth)).await;
    let client = gw.client();
    let past = |from: Instant| {
        (from + Duration::from_millis(1200)).saturating_duration_since(Instant::now())
    };
    // A failure (backoff 1 s), then the CRM takes the secret again.
    assert_eq!(client.post(gw.addr, None, PAYLOAD).await.json(), none());
    let failed = Instant::now();
    crm.state.lock().unwrap().client_secret = "s3cr:et/+".into();
    tokio::time::sleep(past(failed)).await;
    assert_eq!(client.post(gw.addr, None, PAYLOAD).await.json(), opened());
    // The session is refused and the secret rotated: the re-login fails.
    {
        let mut s = crm.state.lock().unwrap();
        s.revoke_all();
        s.client_secret = "rotated".into();
    }
    assert_eq!(client.post(gw.addr, None, PAYLOAD).await.json(), none());
    let failed = Instant::now();
    assert_eq!(crm.state.lock().unwrap().token_requests, 3);
    // After a success the backoff starts again at 1 s, not 2 s.
    tokio::time::sleep(past(failed)).await;
    assert_eq!(client.post(gw.addr, None, PAYLOAD).await.json(), none());
    assert_eq!(crm.state.lock().unwrap().token_requests, 4);
}

#[tokio::test]
async fn a_crm_that_refuses_every_fresh_session_sees_a_bounded_number_of_logins() {
    std::env::set_var("TPGW_IT_EDGE_STORM_SECRET", "s3cr:et/+");
    let crm = OAuthCrm::start(Duration::from_secs(3600)).await;
    crm.state.lock().unwrap().refuse_lookups = true;
    let auth = oauth2(
        &crm,
        r#"grant = "client_credentials", client_secret_env = "TPGW_IT_EDGE_STORM_SECRET""#,
    );
    let gw = start_gateway(&config("edge-storm", 5000, &auth)).await;
    let client = gw.client();
    let started = Instant::now();
    for _ in 0..50 {
        assert_eq!(client.post(gw.addr, None, PAYLOAD).await.json(), none());
    }
    // Each token refused before any look-up was accepted with it counts as
    // a failed login: 1 s, 2 s, 4 s... between tokens, whatever the call
    // rate (before: two tokens per call).
    let elapsed = started.elapsed().as_secs_f64();
    let bound = 2 + (elapsed + 1.0).log2().ceil() as usize;
    let tokens = crm.state.lock().unwrap().token_requests;
    assert!(tokens <= bound, "{tokens} tokens in {elapsed:.1} s");
    let lines = log_lines("before any look-up was accepted");
    assert!(!lines.is_empty());
}

#[tokio::test]
async fn a_token_said_to_expire_at_once_is_kept_a_second() {
    std::env::set_var("TPGW_IT_EDGE_FLOOR_SECRET", "s3cr:et/+");
    let crm = OAuthCrm::start(Duration::from_secs(3600)).await;
    crm.state.lock().unwrap().says_expires_in = Some(0.001);
    let auth = oauth2(
        &crm,
        r#"grant = "client_credentials", client_secret_env = "TPGW_IT_EDGE_FLOOR_SECRET""#,
    );
    let gw = start_gateway(&config("edge-floor", 5000, &auth)).await;
    let client = gw.client();
    let started = Instant::now();
    for _ in 0..20 {
        assert_eq!(client.post(gw.addr, None, PAYLOAD).await.json(), opened());
    }
    // At most one token a second (renewed 10 % before its floor), not one
    // per call.
    let elapsed = started.elapsed().as_millis() as usize;
    let tokens = crm.state.lock().unwrap().token_requests;
    assert!(
        tokens <= 2 + elapsed / 900,
        "{tokens} tokens in {elapsed} ms"
    );
    assert!(!log_lines("under the floor").is_empty());
}

// 5. `simulate`.

/// Runs the real binary's `simulate` on `config` with the test payload.
async fn simulate(config: &str, dry_run: bool) -> String {
    let extra: &[&str] = if dry_run { &["--dry-run"] } else { &[] };
    simulate_cli(config, PAYLOAD, &[], extra).await
}

/// A password-grant backend and a login-steps backend on one route.
fn simulated_config(crm: &OAuthCrm) -> String {
    let auth = oauth2(
        crm,
        r#"grant = "password", username = "gw@example.org", password_env = "TPGW_IT_EDGE_SIM_PASSWORD", client_secret_env = "TPGW_IT_EDGE_SIM_SECRET""#,
    );
    config("edge-sim", 5000, &auth)
}

#[tokio::test]
async fn simulate_dry_run_sends_no_login_to_the_crm() {
    std::env::set_var("TPGW_IT_EDGE_SIM_SECRET", "s3cr:et/+");
    std::env::set_var("TPGW_IT_EDGE_SIM_PASSWORD", "pa ss&w=rd%");
    let crm = OAuthCrm::start(Duration::from_secs(3600)).await;
    let steps = login_steps("edge-sim-steps", &crm, "TPGW_IT_EDGE_SIM_SECRET", "");
    let both = simulated_config(&crm).replace(
        "\n[[routes]]",
        &format!("{}\n[[routes]]", backend("edge-sim-steps", &steps)),
    );
    let both = both.replace(
        "backend = [\"edge-sim\"]",
        "backend = [\"edge-sim\", \"edge-sim-steps\"]",
    );
    let text = simulate(&both, true).await;
    for backend in ["edge-sim", "edge-sim-steps"] {
        assert!(
            text.contains(&format!(
                "backend {backend:?} login: 1 step(s) before the look-up (dry run: not run"
            )),
            "{text}"
        );
    }
    let step = format!("  step 1: POST {}/oauth/token (not sent)", crm.crm.url());
    assert_eq!(text.matches(&step).count(), 2, "{text}");
    assert!(crm.crm.seen().is_empty(), "{:#?}", crm.crm.seen());
    assert!(
        !text.contains("pa ss&w=rd%") && !text.contains("s3cr:et"),
        "{text}"
    );
}

#[tokio::test]
async fn simulate_shows_the_token_request_fresh_and_hides_password_secret_and_token() {
    std::env::set_var("TPGW_IT_EDGE_SIM_SECRET", "s3cr:et/+");
    std::env::set_var("TPGW_IT_EDGE_SIM_PASSWORD", "pa ss&w=rd%");
    let crm = OAuthCrm::start(Duration::from_secs(3600)).await;
    let text = simulate(&simulated_config(&crm), false).await;
    assert!(
        text.contains("backend \"edge-sim\" login: logged in"),
        "{text}"
    );
    assert!(
        text.contains(&format!("  POST {}/oauth/token -> HTTP 200", crm.crm.url())),
        "{text}"
    );
    assert!(text.contains("login.access_token = [redacted]"), "{text}");
    assert!(text.contains("authorization: [redacted]"), "{text}");
    assert!(text.contains("\"action\":\"open\""), "{text}");
    let s = crm.state.lock().unwrap();
    assert_eq!((s.token_requests, s.lookups), (1, 1));
    for hidden in ["pa ss&w=rd%", "pa+ss", "s3cr:et", "1000.access.1"] {
        assert!(!text.contains(hidden), "{hidden} in {text}");
    }
}

// 6. What `check` says about templates that read what they cannot see.

/// `check` on `config`: whether it passed, and what it printed.
fn check(config: &str) -> (bool, String) {
    let dir = tempfile::TempDir::new().unwrap();
    TestCa::new().write(dir.path());
    std::fs::write(dir.path().join("config.toml"), config).unwrap();
    let out = std::process::Command::new(binary())
        .current_dir(dir.path())
        .args(["check", "--config", "config.toml"])
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const SESSION_CRM: &str = r#"[tls]
cert = "cert.pem"
key = "key.pem"

[cors]
allow_origins = ["https://xuc.example.org"]

[backends.crm]
url = "https://crm.example.org/find"
encoding = "query"
body = { session = "{{ login.sid }}", phone = "{{ caller }}" }
reply = { format = "json", extract = { url = "url" } }

[backends.crm.login]
[[backends.crm.login.steps]]
url = "https://crm.example.org/challenge"
encoding = "query"
reply = { format = "json", extract = { token = "token" } }
[[backends.crm.login.steps]]
url = "https://crm.example.org/login"
encoding = "form"
body = { user = "gw", key = "{{ md5(login.token) }}" }
reply = { format = "json", extract = { sid = "sid" } }

[[routes]]
name = "crm"
backend = "crm"
"#;

fn session_crm(from: &str, to: &str) -> String {
    assert!(SESSION_CRM.contains(from), "{from}");
    SESSION_CRM.replacen(from, to, 1)
}

#[test]
fn a_login_step_that_reads_the_payload_is_an_error_at_its_column() {
    let (ok, text) = check(SESSION_CRM);
    assert!(ok, "{text}");
    assert_eq!(text, "");
    let (ok, text) = check(&session_crm(
        r#"body = { user = "gw", key"#,
        r#"body = { user = "{{ user.fullName }}", key"#,
    ));
    assert!(!ok);
    assert_eq!(
        text.trim_end(),
        r#"error: config.toml:22:21: backends.crm.login.steps[1].body.user: a login step runs once for all calls: it cannot read `user`
   |
22 | body = { user = "{{ user.fullName }}", key = "{{ md5(login.token) }}" }
   |                     ^^^^

error: 1 error"#
    );
    let (ok, text) = check(&session_crm(
        r#"url = "https://crm.example.org/login""#,
        r#"url = "https://crm.example.org/login?from={{ caller }}""#,
    ));
    assert!(!ok);
    assert!(
        text.starts_with("error: config.toml:20:46: backends.crm.login.steps[1].url: a login step runs once for all calls: it cannot read `caller`\n"),
        "{text}"
    );
}

#[test]
fn a_login_step_or_its_ok_when_reading_a_name_it_never_gets_is_an_error() {
    let (ok, text) = check(&session_crm("md5(login.token)", "md5(token)"));
    assert!(!ok);
    assert!(
        text.starts_with("error: config.toml:22:37: backends.crm.login.steps[1].body.key: unknown variable \"token\": a login step sees only login.* (what the steps before it extract) and secret(...)\n"),
        "{text}"
    );
    let (ok, text) = check(&session_crm(
        r#"extract = { sid = "sid" } }"#,
        r#"extract = { sid = "sid" }, ok_when = 'sid and caller' }"#,
    ));
    assert!(!ok);
    assert!(
        text.contains("backends.crm.login.steps[1].reply.ok_when: a login step runs once for all calls: it cannot read `caller`\n"),
        "{text}"
    );
    let (ok, text) = check(&session_crm(
        r#"extract = { sid = "sid" } }"#,
        r#"extract = { sid = "sid" }, ok_when = 'login.token' }"#,
    ));
    assert!(!ok);
    assert!(
        text.contains("backends.crm.login.steps[1].reply.ok_when: unknown variable \"login\": ok_when sees only what this step extracts\n"),
        "{text}"
    );
}

#[test]
fn a_login_step_reading_a_value_no_earlier_step_extracts_is_a_warning() {
    let (ok, text) = check(&session_crm("md5(login.token)", "md5(login.tokn)"));
    assert!(ok, "{text}");
    assert_eq!(
        text.trim_end(),
        r#"warning: config.toml:22:43: backends.crm.login.steps[1].body.key: login.tokn is empty here: no earlier login step extracts "tokn" (did you mean "token"?)
   |
22 | body = { user = "gw", key = "{{ md5(login.tokn) }}" }
   |                                           ^^^^"#
    );
}

#[test]
fn login_values_in_a_backend_without_a_login_are_a_warning() {
    let text = SESSION_CRM
        .split("[backends.crm.login]")
        .next()
        .unwrap()
        .to_owned()
        + "[[routes]]\nname = \"crm\"\nbackend = \"crm\"\n";
    let (ok, text) = check(&text);
    assert!(ok, "{text}");
    assert_eq!(
        text.trim_end(),
        r#"warning: config.toml:11:24: backends.crm.body.session: login.* is always empty here: only the templates of a backend with [backends.NAME.login], login = "OTHER" (a shared login) or auth.type = "oauth2" see a session
   |
11 | body = { session = "{{ login.sid }}", phone = "{{ caller }}" }
   |                        ^^^^^"#
    );
}

// 7. Metrics.

#[tokio::test]
async fn metrics_count_logins_cache_hits_and_relogins_by_backend() {
    std::env::set_var("TPGW_IT_EDGE_METRICS_SECRET", "s3cr:et/+");
    let crm = OAuthCrm::start(Duration::from_secs(3600)).await;
    let auth = oauth2(
        &crm,
        r#"grant = "client_credentials", client_secret_env = "TPGW_IT_EDGE_METRICS_SECRET""#,
    );
    let gw = start_gateway(&config("edge-metered", 5000, &auth)).await;
    let ops = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ops_addr = ops.local_addr().unwrap();
    let ops_task = tokio::spawn(thirdparty_gateway::ops::run(
        ops,
        Arc::clone(&gw.live),
        std::future::pending(),
    ));
    let client = gw.client();
    // Cold, then cached, then refused by the CRM and logged in again.
    assert_eq!(client.post(gw.addr, None, PAYLOAD).await.json(), opened());
    assert_eq!(client.post(gw.addr, None, PAYLOAD).await.json(), opened());
    crm.state.lock().unwrap().revoke_all();
    assert_eq!(client.post(gw.addr, None, PAYLOAD).await.json(), opened());
    let (status, text) = ops_get_at(ops_addr, "/metrics").await;
    ops_task.abort();
    assert_eq!(status, 200);
    let value = |series: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(series))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {series} in {text}"))
    };
    let logins = |result: &str| {
        value(&format!(
            r#"thirdparty_gateway_logins_total{{backend="edge-metered",result="{result}"}}"#
        ))
    };
    let sessions = |result: &str| {
        value(&format!(
            r#"thirdparty_gateway_login_sessions_total{{backend="edge-metered",result="{result}"}}"#
        ))
    };
    assert_eq!(logins("ok"), 2.0);
    assert_eq!(sessions("fresh"), 1.0);
    assert_eq!(sessions("hit"), 2.0);
    assert_eq!(sessions("relogin"), 1.0);
    assert_eq!(logins("failed"), 0.0);
}

#[tokio::test]
async fn simulate_hides_secrets_in_step_paths_sessions_and_values_derived_from_secrets() {
    use base64::Engine as _;
    const SECRET: &str = "pathsecret-4242";
    const SESSION: &str = "sess-tok-98765";
    let crm = crate::crm::Crm::start(|seen| {
        let path = seen.target.split('?').next().unwrap_or("");
        let body = if path == format!("/auth/{SECRET}/challenge") {
            json!({"token": SESSION})
        } else if path == format!("/login/{SESSION}") {
            json!({"sessionName": "sessname-5678"})
        } else {
            json!({"url": "https://crm.example.org/c/1"})
        };
        crate::crm::Answer::Reply(200, "application/json", body.to_string())
    })
    .await;
    std::env::set_var("TPGW_IT_SIM_PATH_SECRET", SECRET);
    let config = format!(
        r#"{}
[backends.sim-leak]
url = "{url}/lookup/{{{{ login.sessionName }}}}"
encoding = "json"
body = {{ basic = "{{{{ base64('gw:' ~ secret('TPGW_IT_SIM_PATH_SECRET')) }}}}", phone = "{{{{ caller }}}}" }}
reply = {{ format = "json", extract = {{ url = "url" }} }}

[backends.sim-leak.login]
[[backends.sim-leak.login.steps]]
url = "{url}/auth/{{{{ secret('TPGW_IT_SIM_PATH_SECRET') }}}}/challenge"
encoding = "query"
reply = {{ format = "json", extract = {{ token = "token" }} }}

[[backends.sim-leak.login.steps]]
url = "{url}/login/{{{{ login.token }}}}"
encoding = "query"
reply = {{ format = "json", extract = {{ sessionName = "sessionName" }} }}
{}"#,
        head(5000),
        route("sim-leak", &["sim-leak"]),
        url = crm.url()
    );
    let derived = base64::engine::general_purpose::STANDARD.encode(format!("gw:{SECRET}"));
    for dry_run in [false, true] {
        let text = simulate(&config, dry_run).await;
        for leak in [SECRET, SESSION, "sessname-5678", derived.as_str()] {
            assert!(
                !text.contains(leak),
                "{leak} shown (dry run: {dry_run}):\n{text}"
            );
        }
        assert!(text.contains("[redacted]"), "{text}");
    }
}

#[tokio::test]
async fn reloads_of_an_unchanged_login_keep_its_session_and_its_backoff() {
    std::env::set_var("TPGW_IT_EDGE_RELOAD_SECRET", "s3cr:et/+");
    let crm = OAuthCrm::start(Duration::from_secs(3600)).await;
    let auth = oauth2(
        &crm,
        r#"grant = "client_credentials", client_secret_env = "TPGW_IT_EDGE_RELOAD_SECRET""#,
    );
    let gw = start_gateway(&config("edge-reload", 5000, &auth)).await;
    let client = gw.client();
    assert_eq!(client.post(gw.addr, None, PAYLOAD).await.json(), opened());
    for _ in 0..5 {
        gw.live.reload().unwrap();
        assert_eq!(client.post(gw.addr, None, PAYLOAD).await.json(), opened());
    }
    assert_eq!(
        crm.state.lock().unwrap().token_requests,
        1,
        "one token for six generations"
    );

    // A login that fails: its backoff survives a reload too.
    crm.state.lock().unwrap().client_secret = "rotated".into();
    crm.state.lock().unwrap().revoke_all();
    assert_eq!(client.post(gw.addr, None, PAYLOAD).await.json(), none());
    let tokens = crm.state.lock().unwrap().token_requests;
    gw.live.reload().unwrap();
    assert_eq!(client.post(gw.addr, None, PAYLOAD).await.json(), none());
    assert_eq!(
        crm.state.lock().unwrap().token_requests,
        tokens,
        "still in its backoff"
    );

    // A changed login (its secret) logs in afresh.
    crm.state.lock().unwrap().client_secret = "rotated".into();
    std::env::set_var("TPGW_IT_EDGE_RELOAD_SECRET", "rotated");
    gw.live.reload().unwrap();
    assert_eq!(client.post(gw.addr, None, PAYLOAD).await.json(), opened());
    assert_eq!(crm.state.lock().unwrap().token_requests, tokens + 1);
}
