//! `auth.type = "oauth2"` against a strict token endpoint: a token is minted
//! once and reused, renewed when the API answers 401, renewed on expiry
//! once for many calls (never while the previous one is still good), and the
//! token reply's `api_domain` is the look-up's base URL.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use crate::support::*;
use crate::test_crms::oauth::OAuthCrm;
use crate::test_crms::PAYLOAD;

fn config(route: &str, token_url: &str, auth: &str) -> String {
    format!(
        r#"{TLS_HEAD}
[server]
deadline_ms = 5000
[cors]
allow_origins = ["*"]
[phone]
default_region = "FR"

[backends.api]
url = "{{{{ login.api_domain | safe }}}}/api/contacts"
encoding = "query"
body = {{ phone = "{{{{ caller | e164 }}}}" }}
auth = {{ type = "oauth2", token_url = "{token_url}", client_id = "gw-client", {auth} }}

[backends.api.reply]
format = "json"
extract = {{ id = "records.0.id", name = "records.0.name" }}
open_when = "id is defined"
url = "https://crm.example.org/contacts/{{{{ id }}}}"
title = "{{{{ name }}}}"

[[routes]]
name = "{route}"
backend = "api"
"#
    )
}

fn opened() -> serde_json::Value {
    json!({"action":"open","event":"EventRinging","url":"https://crm.example.org/contacts/003xx0001",
           "autopause":false,"title":"Jeanne O'Neil"})
}

#[tokio::test]
async fn client_credentials_token_is_minted_once_reused_and_renewed_after_a_401() {
    std::env::set_var("TPGW_IT_OAUTH_SECRET_CC", "s3cr:et/+");
    let crm = OAuthCrm::start(Duration::from_secs(3600)).await;
    let token_url = format!("{}/oauth/token", crm.crm.url());
    let gw = start_gateway(&config(
        "oauth-cc",
        &token_url,
        r#"grant = "client_credentials", client_secret_env = "TPGW_IT_OAUTH_SECRET_CC", scope = "contacts.read""#,
    ))
    .await;
    for _ in 0..2 {
        assert_eq!(
            gw.client().post(gw.addr, None, PAYLOAD).await.json(),
            opened()
        );
    }
    {
        let s = crm.state.lock().unwrap();
        assert_eq!((s.mints, s.lookups, s.refused), (1, 2, 0));
    }
    let token_req = crm
        .crm
        .seen()
        .into_iter()
        .find(|r| r.target == "/oauth/token")
        .unwrap();
    assert_eq!(
        token_req.text(),
        "grant_type=client_credentials&scope=contacts.read"
    );
    crm.state.lock().unwrap().revoke_all();
    assert_eq!(
        gw.client().post(gw.addr, None, PAYLOAD).await.json(),
        opened()
    );
    let s = crm.state.lock().unwrap();
    assert_eq!((s.mints, s.lookups, s.refused), (2, 3, 1));
    assert_eq!(s.early_mints, 0);
}

#[tokio::test]
async fn refresh_token_grant_mints_one_token_per_expiry_for_many_calls() {
    std::env::set_var("TPGW_IT_OAUTH_SECRET_RT", "s3cr:et/+");
    std::env::set_var("TPGW_IT_OAUTH_REFRESH_RT", "1000.refresh.abc");
    let crm = OAuthCrm::start(Duration::from_secs(3)).await;
    let token_url = format!("{}/oauth/token", crm.crm.url());
    let gw = start_gateway(&config(
        "oauth-rt",
        &token_url,
        r#"grant = "refresh_token", client_auth = "body", client_secret_env = "TPGW_IT_OAUTH_SECRET_RT", refresh_token_env = "TPGW_IT_OAUTH_REFRESH_RT""#,
    ))
    .await;
    assert_eq!(
        gw.client().post(gw.addr, None, PAYLOAD).await.json(),
        opened()
    );
    tokio::time::sleep(Duration::from_millis(3100)).await;
    let client = Arc::new(gw.client());
    let addr = gw.addr;
    let calls: Vec<_> = (0..30)
        .map(|_| {
            let client = Arc::clone(&client);
            tokio::spawn(async move { client.post(addr, None, PAYLOAD).await.json() })
        })
        .collect();
    for call in calls {
        assert_eq!(call.await.unwrap(), opened());
    }
    let s = crm.state.lock().unwrap();
    assert!(s.mints >= 2, "the expired token was renewed");
    assert_eq!(s.early_mints, 0, "no token minted while the last was good");
    // Whether one of the calls still met the old token depends on how the
    // calls spread in time on a loaded machine: if one did, it was renewed
    // and retried (all opened), which is what matters.
}

#[tokio::test]
async fn bad_client_secret_gives_none_with_reason_login() {
    std::env::set_var("TPGW_IT_OAUTH_SECRET_BAD", "wrong");
    let crm = OAuthCrm::start(Duration::from_secs(3600)).await;
    let token_url = format!("{}/oauth/token", crm.crm.url());
    let gw = start_gateway(&config(
        "oauth-bad",
        &token_url,
        r#"grant = "client_credentials", client_secret_env = "TPGW_IT_OAUTH_SECRET_BAD""#,
    ))
    .await;
    for _ in 0..3 {
        assert_eq!(
            gw.client().post(gw.addr, None, PAYLOAD).await.json(),
            json!({"action":"none"})
        );
    }
    assert_eq!(crm.state.lock().unwrap().lookups, 0);
    let lines = log_lines("route=oauth-bad ");
    assert!(
        lines.iter().any(|l| l.contains("reason=login ")),
        "{lines:#?}"
    );
}
