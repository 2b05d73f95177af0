//! `login = "OTHER"` with an OAuth2 owner: the sharing backend's look-ups
//! carry OTHER's token as a Bearer header, one token serves both, and a
//! token the CRM revoked is minted again once for both.

use std::time::Duration;

use serde_json::json;

use crate::support::*;
use crate::test_crms::oauth::OAuthCrm;
use crate::test_crms::PAYLOAD;

/// Two backends on the test CRM's `/api/contacts`: `national` asks for the
/// caller's national digits (the CRM stores E.164: no match), then `e164`,
/// sharing `national`'s token.
fn config(crm: &OAuthCrm, secret_var: &str) -> String {
    let url = crm.crm.url();
    let backend = |name: &str, phone: &str, login: &str| {
        format!(
            r#"
[backends.{name}]
url = "{url}/api/contacts"
encoding = "query"
body = {{ phone = "{{{{ caller | {phone} }}}}" }}
{login}

[backends.{name}.reply]
format = "json"
extract = {{ id = "records.0.id", name = "records.0.name" }}
open_when = "id is defined"
url = "https://crm.example.org/contacts/{{{{ id }}}}"
title = "{{{{ name }}}}"
"#
        )
    };
    let auth = format!(
        r#"auth = {{ type = "oauth2", grant = "client_credentials", token_url = "{url}/oauth/token", client_id = "gw-client", client_secret_env = "{secret_var}" }}"#
    );
    format!(
        "{TLS_HEAD}\n[cors]\nallow_origins = [\"*\"]\n[phone]\ndefault_region = \"FR\"\n{}{}\n[[routes]]\nname = \"shared-oauth\"\nbackend = [\"national\", \"e164\"]\n",
        backend("national", "national_digits", &auth),
        backend("e164", "e164", "login = \"national\""),
    )
}

fn opened() -> serde_json::Value {
    json!({"action":"open","event":"EventRinging","url":"https://crm.example.org/contacts/003xx0001",
           "autopause":false,"title":"Jeanne O'Neil"})
}

#[tokio::test]
async fn a_backend_sharing_an_oauth2_login_sends_its_token_and_one_mint_serves_both() {
    std::env::set_var("TPGW_IT_SHARED_OAUTH_SECRET", "s3cr:et/+");
    let crm = OAuthCrm::start(Duration::from_secs(3600)).await;
    let gw = start_gateway(&config(&crm, "TPGW_IT_SHARED_OAUTH_SECRET")).await;
    let client = gw.client();
    assert_eq!(client.post(gw.addr, None, PAYLOAD).await.json(), opened());
    {
        let s = crm.state.lock().unwrap();
        // Both look-ups were authorized (the first found nothing).
        assert_eq!((s.mints, s.lookups, s.refused), (1, 2, 0));
    }
    crm.state.lock().unwrap().revoke_all();
    assert_eq!(client.post(gw.addr, None, PAYLOAD).await.json(), opened());
    let s = crm.state.lock().unwrap();
    // Refused to the first backend, minted again, and the second used it.
    assert_eq!((s.mints, s.lookups, s.refused), (2, 4, 1));
}
