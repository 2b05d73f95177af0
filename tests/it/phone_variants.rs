//! One route trying several shapes of the caller's number in order, through
//! its ordered backend list: a CRM that compares stored numbers exactly is
//! asked for the E.164 shape first, then the national one, and the first
//! that finds a contact opens.

use serde_json::json;

use crate::crm::{Answer, Crm};
use crate::support::*;
use crate::test_crms::{query_of, PAYLOAD};

/// The same look-up twice, `phone` in E.164 and then in national format.
fn config(crm: &Crm) -> String {
    let backend = |name: &str, filter: &str| {
        format!(
            r#"
[backends.{name}]
url = "{url}/contacts"
encoding = "query"
body = {{ phone = "{{{{ caller | {filter} }}}}" }}
[backends.{name}.reply]
format = "json"
extract = {{ id = "0.id" }}
open_when = "id is defined"
url = "https://crm.example.org/contacts/{{{{ id }}}}"
"#,
            url = crm.url()
        )
    };
    format!(
        "{TLS_HEAD}[cors]\nallow_origins = [\"*\"]\n[phone]\ndefault_region = \"FR\"\n{}{}\
         [[routes]]\nname = \"phone-variants\"\nbackend = [\"crm-e164\", \"crm-national\"]\n",
        backend("crm-e164", "e164"),
        backend("crm-national", "national"),
    )
}

#[tokio::test]
async fn the_e164_shape_is_tried_first_then_the_national_one() {
    // Two contacts, stored as typed: one in E.164, one nationally.
    let crm = Crm::start(|seen| {
        let found = match query_of(&seen.target).get("phone").map(String::as_str) {
            Some("+33612345678") => json!([{"id": "e164-contact"}]),
            Some("01 23 45 67 89") => json!([{"id": "national-contact"}]),
            _ => json!([]),
        };
        Answer::Reply(200, "application/json", found.to_string())
    })
    .await;
    let gw = start_gateway(&config(&crm)).await;
    let call = |caller: &str| PAYLOAD.replace("\"0612345678\"", &format!("\"{caller}\""));
    let url = |reply: Reply| reply.json()["url"].as_str().map(str::to_owned);
    let client = gw.client();

    // Found in the first shape: the second is never asked.
    let reply = client.post(gw.addr, None, &call("0033612345678")).await;
    assert_eq!(
        url(reply).as_deref(),
        Some("https://crm.example.org/contacts/e164-contact")
    );
    // Not in the first shape: the second finds it.
    let reply = client.post(gw.addr, None, &call("+33123456789")).await;
    assert_eq!(
        url(reply).as_deref(),
        Some("https://crm.example.org/contacts/national-contact")
    );
    // In neither: none, after both were asked.
    let reply = client.post(gw.addr, None, &call("0298765432")).await;
    assert_eq!(reply.json(), json!({"action": "none"}));

    let asked: Vec<String> = crm
        .seen()
        .iter()
        .map(|s| query_of(&s.target)["phone"].clone())
        .collect();
    assert_eq!(
        asked,
        [
            "+33612345678",
            "+33123456789",
            "01 23 45 67 89",
            "+33298765432",
            "02 98 76 54 32"
        ]
    );
}
