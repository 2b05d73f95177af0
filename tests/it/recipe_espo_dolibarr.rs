//! The EspoCRM and Dolibarr recipes (`examples/espocrm.toml`,
//! `examples/dolibarr.toml`) run end to end against test CRMs that check
//! what the real ones check: EspoCRM's HMAC signature recomputed over the
//! request received, E.164 numbers compared exactly; Dolibarr's API key, its
//! `sqlfilters` parsed and matched as Dolibarr and MySQL would, and its HTTP
//! 404 for no match. Each test renames the example's secrets so tests in
//! parallel never share an environment variable.

use serde_json::json;

use crate::examples::example_config;
use crate::support::*;
use crate::test_crms::espocrm::EspoCrm;
use crate::test_crms::PAYLOAD;

/// A call whose caller is `caller`.
fn call_from(caller: &str) -> String {
    let caller = serde_json::to_string(caller).unwrap();
    PAYLOAD.replace("\"0612345678\"", &caller)
}

const NONE: &str = r#"{"action":"none"}"#;

/// `examples/espocrm.toml` against `espo`, its two secrets renamed to
/// `TPGW_IT_ESPO_{tag}_KEY`/`_SECRET` and set to the CRM's values; `swaps`
/// are applied too.
async fn espo_gateway(espo: &EspoCrm, tag: &str, swaps: &[(&str, &str)]) -> TestGateway {
    let (key, secret) = {
        let s = espo.state.lock().unwrap();
        (s.api_key.clone(), s.secret_key.clone())
    };
    espo_gateway_with(espo, tag, (&key, &secret), swaps).await
}

/// [`espo_gateway`] with the gateway's api key and secret key given.
async fn espo_gateway_with(
    espo: &EspoCrm,
    tag: &str,
    (key, secret): (&str, &str),
    swaps: &[(&str, &str)],
) -> TestGateway {
    let (key_var, secret_var) = (
        format!("TPGW_IT_ESPO_{tag}_KEY"),
        format!("TPGW_IT_ESPO_{tag}_SECRET"),
    );
    std::env::set_var(&key_var, key);
    std::env::set_var(&secret_var, secret);
    let api = espo.api_url();
    // The caller's swaps first: they may name the example's secrets.
    let mut all = swaps.to_vec();
    all.extend_from_slice(&[
        ("https://crm.example.org/api/v1", api.as_str()),
        ("ESPOCRM_API_KEY", key_var.as_str()),
        ("ESPOCRM_SECRET_KEY", secret_var.as_str()),
    ]);
    start_gateway(&example_config("espocrm.toml", &all)).await
}

fn espo_opened() -> serde_json::Value {
    json!({"action":"open","event":"EventRinging",
           "url":"https://crm.example.org/#Contact/view/6571f0a2c3b9d4e18",
           "autopause":false,"title":"Jeanne O'Neil"})
}

#[tokio::test]
async fn espocrm_example_signs_every_lookup_and_opens_the_contact_card() {
    let espo = EspoCrm::start("ak-cold-41c2", "sk-cold-9e0f77").await;
    let gw = espo_gateway(&espo, "COLD", &[]).await;
    for _ in 0..2 {
        let reply = gw.client().post(gw.addr, None, PAYLOAD).await;
        assert_eq!(reply.json(), espo_opened());
    }
    let s = espo.state.lock().unwrap();
    assert_eq!((s.lookups, s.refused), (2, 0));
    assert_eq!(s.values, ["+33612345678", "+33612345678"]);
    let seen = espo.crm.seen();
    let header = seen[0].header("x-hmac-authorization").unwrap();
    assert_eq!(
        header,
        crate::test_crms::espocrm::hmac_header("ak-cold-41c2", "sk-cold-9e0f77", "GET", "/Contact")
    );
    assert!(seen
        .iter()
        .all(|r| !format!("{:?}", r.headers).contains("sk-cold-9e0f77")
            && !r.target.contains("sk-cold-9e0f77")));
}

#[tokio::test]
async fn espocrm_caller_in_any_shape_is_sent_as_e164_and_matches() {
    let espo = EspoCrm::start("ak-shapes", "sk-shapes").await;
    let gw = espo_gateway(&espo, "SHAPES", &[]).await;
    for caller in [
        "+33 6 12 34 56 78",
        "0033612345678",
        "612345678",
        "06.12.34.56.78",
    ] {
        let reply = gw.client().post(gw.addr, None, &call_from(caller)).await;
        assert_eq!(reply.json(), espo_opened(), "caller {caller}");
    }
    let s = espo.state.lock().unwrap();
    assert!(
        s.values.iter().all(|v| v == "+33612345678"),
        "{:?}",
        s.values
    );
}

#[tokio::test]
async fn espocrm_unknown_caller_is_none() {
    let espo = EspoCrm::start("ak-none", "sk-none").await;
    let gw = espo_gateway(&espo, "NONE", &[]).await;
    let reply = gw
        .client()
        .post(gw.addr, None, &call_from("0298765432"))
        .await;
    assert_eq!(
        reply.json(),
        serde_json::from_str::<serde_json::Value>(NONE).unwrap()
    );
    let s = espo.state.lock().unwrap();
    assert_eq!((s.lookups, s.refused), (1, 0));
    assert_eq!(s.values, ["+33298765432"]);
}

#[tokio::test]
async fn espocrm_wrong_secret_key_is_refused_with_401_and_gives_none() {
    let espo = EspoCrm::start("ak-wrong", "sk-right").await;
    let gw = espo_gateway_with(&espo, "WRONG", ("ak-wrong", "sk-not-it"), &[]).await;
    let reply = gw.client().post(gw.addr, None, PAYLOAD).await;
    assert_eq!(reply.json(), json!({"action":"none"}));
    let s = espo.state.lock().unwrap();
    assert_eq!((s.lookups, s.refused), (0, 1));
}

/// The example's header line for EspoCRM 8.4.1+ and, in its comment, the
/// one for earlier versions.
const HEX_LINE: &str = r#""X-Hmac-Authorization" = "{{ base64(secret('ESPOCRM_API_KEY') ~ ':' ~ hmac_sha256('GET /Contact', secret('ESPOCRM_SECRET_KEY'))) }}""#;
const LEGACY_LINE: &str = r#"# "X-Hmac-Authorization" = "{{ base64([secret('ESPOCRM_API_KEY') ~ ':', hmac_sha256('GET /Contact', secret('ESPOCRM_SECRET_KEY'), binary=true)]) }}""#;

#[tokio::test]
async fn espocrm_before_8_4_1_takes_the_raw_digest_line_of_the_example_and_refuses_hex() {
    let espo = EspoCrm::start("ak-legacy", "sk-legacy").await;
    espo.state.lock().unwrap().legacy_only = true;
    // As written (hex): an old EspoCRM refuses it.
    let gw = espo_gateway(&espo, "LEGACY_HEX", &[]).await;
    let reply = gw.client().post(gw.addr, None, PAYLOAD).await;
    assert_eq!(reply.json(), json!({"action":"none"}));
    assert_eq!(espo.state.lock().unwrap().refused, 1);
    // With the commented line in place of the hex one: accepted.
    let legacy = LEGACY_LINE.trim_start_matches("# ");
    let gw = espo_gateway(
        &espo,
        "LEGACY_RAW",
        &[(LEGACY_LINE, ""), (HEX_LINE, legacy)],
    )
    .await;
    let reply = gw.client().post(gw.addr, None, PAYLOAD).await;
    assert_eq!(reply.json(), espo_opened());
    let s = espo.state.lock().unwrap();
    assert_eq!((s.lookups, s.refused), (1, 1));
}

#[tokio::test]
async fn espocrm_hostile_caller_stays_one_query_value() {
    let espo = EspoCrm::start("ak-hostile", "sk-hostile").await;
    let gw = espo_gateway(&espo, "HOSTILE", &[]).await;
    let hostile = r#"06'12"34%5_6\78&where[1][type]=isNotNull&maxSize=200#"#;
    let reply = gw.client().post(gw.addr, None, &call_from(hostile)).await;
    assert_eq!(reply.json(), json!({"action":"none"}));
    let s = espo.state.lock().unwrap();
    assert_eq!(s.lookups, 1);
    let names: Vec<&str> = s.queries[0].iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        names,
        [
            "maxSize",
            "select",
            "where[0][attribute]",
            "where[0][type]",
            "where[0][value]"
        ]
    );
    let fields: std::collections::HashMap<_, _> = s.queries[0].iter().cloned().collect();
    assert_eq!(fields["maxSize"], "1");
    assert_eq!(fields["where[0][type]"], "equals");
    assert!(!s.values[0].contains('&'), "{:?}", s.values);
}
