//! Every example config in `examples/` run end to end: its backend URL is
//! pointed at a test CRM that answers in the shape the example expects, and
//! the seed call must open what the example says it opens.

use serde_json::json;

use crate::crm::{Answer, Crm};
use crate::support::*;

/// An example's text with its certificate files swapped for the test's and
/// each `(from, to)` replaced (a CRM's host for a test CRM's URL); every
/// `from` must be in the example, so a renamed host fails the test.
pub fn example_config(name: &str, swaps: &[(&str, &str)]) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(name);
    let mut text = std::fs::read_to_string(path)
        .unwrap()
        .replace("/etc/thirdparty-gateway/tls/fullchain.pem", "cert.pem")
        .replace("/etc/thirdparty-gateway/tls/privkey.pem", "key.pem");
    for (from, to) in swaps {
        assert!(text.contains(from), "{name} has no {from}");
        text = text.replace(from, to);
    }
    text
}

/// Starts an example whose backend URLs (`from`) all point at `crm`.
async fn start_example(name: &str, crm: &Crm, from: &[&str]) -> TestGateway {
    for var in ["CRM_PASSWORD", "CRM_API_KEY", "CRM_API_TOKEN"] {
        std::env::set_var(var, "example-secret");
    }
    let url = crm.url();
    let swaps: Vec<(&str, &str)> = from.iter().map(|f| (*f, url.as_str())).collect();
    start_gateway(&example_config(name, &swaps)).await
}

const XUC: &str = "https://xuc.example.org";

#[tokio::test]
async fn soap_example() {
    let crm = Crm::start(|seen| {
        assert!(seen.text().contains("<crm:Phone>1001</crm:Phone>"));
        Answer::Reply(200, "text/xml", r#"<S:Envelope xmlns:S="http://schemas.xmlsoap.org/soap/envelope/"><S:Body><ns2:CustomerLookupResponse xmlns:ns2="urn:example:crm"><ns2:Found>true</ns2:Found><ns2:CardUrl>cards/1001</ns2:CardUrl><ns2:Name>ACME</ns2:Name></ns2:CustomerLookupResponse></S:Body></S:Envelope>"#.into())
    })
    .await;
    let gw = start_example("soap-crm.toml", &crm, &["https://crm.internal:8443"]).await;
    let reply = gw.client().post(gw.addr, Some(XUC), SEED).await;
    assert_eq!(
        reply.json(),
        json!({"action":"open","event":"EventEstablished","url":"https://crm.example.org/crm/cards/1001","autopause":true,"title":"ACME (1001)"})
    );
}

#[tokio::test]
async fn form_basic_auth_example() {
    let crm = Crm::start(|seen| {
        let body = if seen.text().starts_with("phone=1001&") {
            "https://crm.lan/card/1001"
        } else {
            ""
        };
        Answer::Reply(200, "text/plain", body.into())
    })
    .await;
    let gw = start_example("form-basic-auth.toml", &crm, &["https://crm.lan/screenpop"]).await;
    let reply = gw.client().post(gw.addr, Some(XUC), SEED).await;
    assert_eq!(reply.json()["url"], "https://crm.lan/card/1001");
    assert!(crm.seen()[0]
        .header("authorization")
        .unwrap()
        .starts_with("Basic "));
    let reply = gw.client().post(gw.addr, Some(XUC), NO_QUEUE).await;
    assert_eq!(reply.json(), json!({"action":"none"}));
}

#[tokio::test]
async fn json_api_example_with_standby_and_search_fallback() {
    let crm = Crm::start(|seen| {
        let body: serde_json::Value = serde_json::from_slice(&seen.body).unwrap();
        assert_eq!(body["agentId"], 1);
        match body["phone"].as_str() {
            Some("1001") => Answer::Reply(
                200,
                "application/json",
                r#"{"customer":{"path":"/customers/42","name":"ACME"}}"#.into(),
            ),
            _ => Answer::Reply(404, "application/json", r#"{"error":"unknown"}"#.into()),
        }
    })
    .await;
    let gw = start_example(
        "json-api.toml",
        &crm,
        &[
            "https://api.crm.example.org/v2/lookup",
            "https://api-standby.crm.example.org/v2/lookup",
        ],
    )
    .await;
    let reply = gw.client().post(gw.addr, Some(XUC), SEED).await;
    assert_eq!(reply.json()["url"], "https://crm.example.org/customers/42");
    let reply = gw.client().post(gw.addr, Some(XUC), WITH_TOKEN).await;
    assert_eq!(
        reply.json()["url"],
        "https://crm.example.org/search?phone=0298765432"
    );
}

#[tokio::test]
async fn contract_backend_example() {
    let crm = Crm::start(|_| {
        Answer::Reply(200, "application/json", r#"{"action":"open","event":"EventRinging","url":"/c/7","autopause":false,"title":"Card 7"}"#.into())
    })
    .await;
    let gw = start_example("contract-backend.toml", &crm, &["http://10.0.0.12:8080"]).await;
    let reply = gw.client().post(gw.addr, Some(XUC), WITH_TOKEN).await;
    assert_eq!(reply.json()["url"], "https://crm.example.org/c/7");
    let forwarded: serde_json::Value = serde_json::from_slice(&crm.seen()[0].body).unwrap();
    assert_eq!(forwarded["caller"], "0298765432");
    assert!(forwarded["user"].get("token").is_none());
}
