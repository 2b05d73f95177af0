//! The SaaS CRM recipes (`examples/salesforce.toml`, `dynamics365.toml`,
//! `hubspot.toml`) run end to end against test CRMs that behave as the real
//! ones document: a cold call gets a token then looks up, the next reuses
//! it, a token the CRM dropped is renewed once, the phone matrix (numbers
//! stored as people type them, called in every shape) finds each person and
//! never opens someone else's card (HubSpot: but for the two numbers in one
//! field its search cannot express), hostile callers cannot change the query, and the
//! CRMs' refusals (wrong secret, unknown tenant, rate limit) give `none`.
//!
//! Each test renames the example's secret variable, so tests running in
//! parallel never read each other's secrets.

use serde_json::{json, Value};

use crate::examples::example_config;
use crate::phone_matrix::{self, assert_all, Person};
use crate::support::*;
use crate::test_crms::dynamics::{self, Dynamics};
use crate::test_crms::hubspot::{self, HubSpot};
use crate::test_crms::salesforce::{self, Salesforce};
use crate::test_crms::{fields, query_of, PAYLOAD};

/// The seed payload with another caller.
fn call(caller: &str) -> String {
    PAYLOAD.replace("\"0612345678\"", &Value::from(caller).to_string())
}

fn opened(url: &str, title: &str) -> Value {
    json!({"action":"open","event":"EventRinging","url":url,"autopause":false,"title":title})
}

/// Every call of the phone matrix through `gw`: whose card opened, read
/// from the url of an open reply by `whose`, checked by [`assert_all`].
/// The people of `excluded` (stored numbers the CRM's search cannot find)
/// must get `none`, never someone else's card.
async fn run_matrix(
    crm: &str,
    gw: &TestGateway,
    excluded: &[u32],
    whose: impl Fn(&str) -> Option<u32>,
) {
    let client = gw.client();
    let mut results = Vec::new();
    for (caller, want) in phone_matrix::calls() {
        let want = want.filter(|id| !excluded.contains(id));
        let reply = client.post(gw.addr, None, &call(&caller)).await.json();
        // An open reply whose url is nobody of the matrix: a wrong card (0).
        let got = reply["url"].as_str().map(|url| whose(url).unwrap_or(0));
        results.push((caller, want, got));
    }
    assert_all(crm, &results);
}

/// Shapes XucMgt may send Jeanne's number in (+33 6 12 34 56 78).
const JEANNE_SHAPES: [&str; 5] = [
    "0612345678",
    "+33612345678",
    "0033612345678",
    "612345678",
    "06 12 34 56 78",
];

/// Callers that try to leave the quoted value or widen the match; each
/// still holds six digits, so the route asks the CRM.
const HOSTILE: [&str; 6] = [
    "0612345678' or '1'='1",
    "06123456\\' OR 1=1 --",
    "0612%345678_",
    "0612345678\"} OR {*",
    "*0612345678*",
    "06-12-34-56-78) OR (Name:*",
];

// ---------------------------------------------------------------- Salesforce

const SF_KEY: &str = "3MVG9_REPLACE_WITH_YOUR_CONSUMER_KEY";

fn sf_card(contact: salesforce::Contact) -> Value {
    opened(
        &format!(
            "https://mydomain.lightning.force.com/lightning/r/Contact/{}/view",
            contact.id
        ),
        &contact.name,
    )
}

/// The SOQL the recipe sends for a caller whose pattern is this.
fn sf_query(pattern: &str) -> String {
    let fields = ["Phone", "MobilePhone", "HomePhone", "OtherPhone"];
    let like: Vec<String> = fields
        .iter()
        .map(|f| format!("{f} LIKE '{pattern}'"))
        .collect();
    format!(
        "SELECT Id, Name, Phone, MobilePhone, HomePhone, OtherPhone FROM Contact WHERE {} LIMIT 50",
        like.join(" OR ")
    )
}

/// The Salesforce example against `sf`, its secret read from `var`, with
/// more `(from, to)` swaps.
async fn salesforce_gateway(sf: &Salesforce, var: &str, more: &[(&str, &str)]) -> TestGateway {
    let url = sf.crm.url();
    let mut swaps = vec![
        ("https://mydomain.my.salesforce.com", url.as_str()),
        ("SALESFORCE_CLIENT_SECRET", var),
    ];
    swaps.extend_from_slice(more);
    start_gateway(&example_config("salesforce.toml", &swaps)).await
}

#[tokio::test]
async fn salesforce_cold_call_gets_a_token_then_queries_and_the_next_call_reuses_it() {
    std::env::set_var("TPGW_IT_SF_SECRET_COLD", "sf-cold:s3cret/+");
    let sf = Salesforce::start(SF_KEY, "sf-cold:s3cret/+").await;
    let gw = salesforce_gateway(&sf, "TPGW_IT_SF_SECRET_COLD", &[]).await;
    for _ in 0..2 {
        let reply = gw.client().post(gw.addr, None, PAYLOAD).await;
        assert_eq!(reply.json(), sf_card(salesforce::jeanne()));
    }
    let s = sf.state.lock().unwrap();
    assert_eq!((s.mints, s.queries, s.refused), (1, 2, 0));
    assert_eq!(s.soql[0], sf_query("%6%1%2%3%4%5%6%7%8%"));
    let seen = sf.crm.seen();
    let login = seen.iter().find(|r| r.method == "POST").unwrap();
    let form = fields(&login.text());
    assert_eq!(form["grant_type"], "client_credentials");
    assert_eq!(form["client_id"], SF_KEY);
    let search = seen.iter().find(|r| r.method == "GET").unwrap();
    assert!(search
        .header("authorization")
        .unwrap()
        .starts_with("Bearer 00DQy000000Org!"));
}

#[tokio::test]
async fn salesforce_session_ended_by_the_org_is_renewed_once_and_the_call_still_opens() {
    std::env::set_var("TPGW_IT_SF_SECRET_EXPIRED", "sf-expired");
    let sf = Salesforce::start(SF_KEY, "sf-expired").await;
    let gw = salesforce_gateway(&sf, "TPGW_IT_SF_SECRET_EXPIRED", &[]).await;
    let reply = gw.client().post(gw.addr, None, PAYLOAD).await;
    assert_eq!(reply.json(), sf_card(salesforce::jeanne()));
    sf.state.lock().unwrap().expire_sessions();
    for _ in 0..2 {
        let reply = gw.client().post(gw.addr, None, PAYLOAD).await;
        assert_eq!(reply.json(), sf_card(salesforce::jeanne()));
    }
    let s = sf.state.lock().unwrap();
    assert_eq!(
        (s.mints, s.refused, s.queries),
        (2, 1, 3),
        "one new token after INVALID_SESSION_ID, then reused"
    );
}

#[tokio::test]
async fn salesforce_hundred_calls_after_the_session_ended_cause_one_new_token() {
    std::env::set_var("TPGW_IT_SF_SECRET_HUNDRED", "sf-hundred");
    let sf = Salesforce::start(SF_KEY, "sf-hundred").await;
    // A deadline for 100 calls at once on a busy test machine.
    let gw = salesforce_gateway(
        &sf,
        "TPGW_IT_SF_SECRET_HUNDRED",
        &[(
            "listen = \"0.0.0.0:8443\"",
            "listen = \"0.0.0.0:8443\"\ndeadline_ms = 10000",
        )],
    )
    .await;
    let reply = gw.client().post(gw.addr, None, PAYLOAD).await;
    assert_eq!(reply.json(), sf_card(salesforce::jeanne()));
    sf.state.lock().unwrap().expire_sessions();
    let client = std::sync::Arc::new(gw.client());
    let addr = gw.addr;
    let calls: Vec<_> = (0..100)
        .map(|_| {
            let client = std::sync::Arc::clone(&client);
            tokio::spawn(async move { client.post(addr, None, PAYLOAD).await.json() })
        })
        .collect();
    for call in calls {
        let reply = tokio::time::timeout(std::time::Duration::from_secs(60), call)
            .await
            .expect("every call answered")
            .unwrap();
        assert_eq!(reply, sf_card(salesforce::jeanne()), "{reply}");
    }
    assert_eq!(sf.state.lock().unwrap().mints, 2);
}

#[tokio::test]
async fn salesforce_token_is_renewed_after_ttl_s_without_waiting_for_a_refusal() {
    // Salesforce says nothing of the token's life: ttl_s (shortened here)
    // is what renews it.
    std::env::set_var("TPGW_IT_SF_SECRET_TTL", "sf-ttl");
    let sf = Salesforce::start(SF_KEY, "sf-ttl").await;
    let gw = salesforce_gateway(
        &sf,
        "TPGW_IT_SF_SECRET_TTL",
        &[("ttl_s = 7200", "ttl_s = 1")],
    )
    .await;
    let reply = gw.client().post(gw.addr, None, PAYLOAD).await;
    assert_eq!(reply.json(), sf_card(salesforce::jeanne()));
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let reply = gw.client().post(gw.addr, None, PAYLOAD).await;
    assert_eq!(reply.json(), sf_card(salesforce::jeanne()));
    let s = sf.state.lock().unwrap();
    assert_eq!((s.mints, s.refused, s.queries), (2, 0, 2));
}

#[tokio::test]
async fn salesforce_caller_in_any_shape_finds_numbers_stored_in_either_shape() {
    std::env::set_var("TPGW_IT_SF_SECRET_SHAPES", "sf-shapes");
    let sf = Salesforce::start(SF_KEY, "sf-shapes").await;
    let gw = salesforce_gateway(&sf, "TPGW_IT_SF_SECRET_SHAPES", &[]).await;
    for caller in JEANNE_SHAPES {
        let reply = gw.client().post(gw.addr, None, &call(caller)).await;
        assert_eq!(reply.json(), sf_card(salesforce::jeanne()), "{caller}");
    }
    // Paul's mobile was typed nationally (06 11 22 33 44).
    for caller in ["+33 6 11 22 33 44", "0611223344", "0033611223344"] {
        let reply = gw.client().post(gw.addr, None, &call(caller)).await;
        assert_eq!(reply.json(), sf_card(salesforce::paul()), "{caller}");
    }
    let reply = gw.client().post(gw.addr, None, &call("0298765432")).await;
    assert_eq!(reply.json(), json!({"action":"none"}));
    let s = sf.state.lock().unwrap();
    assert_eq!((s.mints, s.malformed), (1, 0));
    assert_eq!(s.queries, JEANNE_SHAPES.len() + 4);
}

#[tokio::test]
async fn salesforce_hostile_callers_cannot_change_the_soql() {
    std::env::set_var("TPGW_IT_SF_SECRET_HOSTILE", "sf-hostile");
    let sf = Salesforce::start(SF_KEY, "sf-hostile").await;
    let gw = salesforce_gateway(&sf, "TPGW_IT_SF_SECRET_HOSTILE", &[]).await;
    for caller in HOSTILE {
        let reply = gw.client().post(gw.addr, None, &call(caller)).await;
        let json = reply.json();
        assert!(
            json == json!({"action":"none"}) || json == sf_card(salesforce::jeanne()),
            "{caller}: {json}"
        );
    }
    let s = sf.state.lock().unwrap();
    assert_eq!(s.malformed, 0, "every query parsed: {:#?}", s.soql);
    assert_eq!(s.queries, HOSTILE.len());
    for soql in &s.soql {
        // The recipe's query around a pattern of digits and %, nothing else.
        let pattern = soql
            .split_once("WHERE Phone LIKE '")
            .and_then(|(_, rest)| rest.split_once('\''))
            .map(|(p, _)| p)
            .unwrap_or_else(|| panic!("{soql}"));
        assert!(
            pattern.chars().all(|c| c.is_ascii_digit() || c == '%'),
            "{soql}"
        );
        assert_eq!(soql, &sf_query(pattern));
    }
}

#[tokio::test]
async fn salesforce_query_without_escaping_is_refused_by_the_org() {
    // The org refuses a quote that ends the literal early, as Salesforce
    // does: escaping is what keeps a caller's text inside it.
    std::env::set_var("TPGW_IT_SF_SECRET_RAW", "sf-raw");
    let sf = Salesforce::start(SF_KEY, "sf-raw").await;
    let gw = salesforce_gateway(
        &sf,
        "TPGW_IT_SF_SECRET_RAW",
        &[(
            "caller | phone_like | backslash_escape(\\\"'\\\")",
            "caller",
        )],
    )
    .await;
    let reply = gw.client().post(gw.addr, None, &call("06 12' 34 56")).await;
    assert_eq!(reply.json(), json!({"action":"none"}));
    let s = sf.state.lock().unwrap();
    assert_eq!((s.malformed, s.queries), (1, 0));
}

/// A matrix person as a Salesforce contact, the number in one of the four
/// phone fields in turn.
fn sf_person(p: &Person) -> salesforce::Contact {
    let mut c =
        salesforce::Contact::new(&format!("003Qy{:013}", p.id), &format!("Person {}", p.id));
    match p.id % 4 {
        0 => c.phone = p.stored,
        1 => c.mobile_phone = p.stored,
        2 => c.home_phone = p.stored,
        _ => c.other_phone = p.stored,
    }
    c
}

#[tokio::test]
async fn salesforce_matrix_every_stored_format_from_every_caller_shape_and_no_wrong_card() {
    std::env::set_var("TPGW_IT_SF_SECRET_MATRIX", "sf-matrix");
    let sf = Salesforce::start(SF_KEY, "sf-matrix").await;
    sf.state.lock().unwrap().contacts = phone_matrix::people().iter().map(sf_person).collect();
    let gw = salesforce_gateway(&sf, "TPGW_IT_SF_SECRET_MATRIX", &[]).await;
    run_matrix("Salesforce", &gw, &[], |url| {
        url.strip_suffix("/view")
            .and_then(|u| u.rsplit_once("/003Qy"))
            .and_then(|(_, id)| id.parse().ok())
    })
    .await;
    let s = sf.state.lock().unwrap();
    assert_eq!(s.malformed, 0, "{:#?}", s.soql);
    assert_eq!(s.queries, phone_matrix::calls().len());
}

#[tokio::test]
async fn salesforce_wrong_client_secret_is_a_login_failure_and_nothing_is_queried() {
    std::env::set_var("TPGW_IT_SF_SECRET_WRONG", "not-the-secret");
    let sf = Salesforce::start(SF_KEY, "sf-right").await;
    let gw = salesforce_gateway(
        &sf,
        "TPGW_IT_SF_SECRET_WRONG",
        &[("name = \"salesforce-contact\"", "name = \"sf-wrong\"")],
    )
    .await;
    let reply = gw.client().post(gw.addr, None, PAYLOAD).await;
    assert_eq!(reply.json(), json!({"action":"none"}));
    let s = sf.state.lock().unwrap();
    assert_eq!((s.refused_logins, s.mints, s.queries), (1, 0, 0));
    let lines = log_lines("route=sf-wrong ");
    assert!(
        lines.iter().any(|l| l.contains("reason=login ")),
        "{lines:#?}"
    );
}

#[tokio::test]
async fn salesforce_simulate_shows_the_token_step_and_hides_the_secret_and_the_token() {
    std::env::set_var("TPGW_IT_SF_SECRET_SIM", "sf-sim-s3cret");
    let sf = Salesforce::start(SF_KEY, "sf-sim-s3cret").await;
    let url = sf.crm.url();
    let config = example_config(
        "salesforce.toml",
        &[
            ("https://mydomain.my.salesforce.com", &url),
            ("SALESFORCE_CLIENT_SECRET", "TPGW_IT_SF_SECRET_SIM"),
        ],
    );
    // A long agent token: simulate redacts it wherever it appears.
    let payload = PAYLOAD.replace("\"token\":\"T\"", "\"token\":\"agent-token-4f2a9c\"");
    assert_ne!(payload, PAYLOAD);
    let text = simulate_cli(&config, &payload, &[], &[]).await;
    assert!(
        text.contains(&format!("POST {url}/services/oauth2/token")),
        "{text}"
    );
    assert!(text.contains("login.access_token = [redacted]"), "{text}");
    assert!(
        text.contains(&format!("GET {url}{}", salesforce::QUERY_PATH)),
        "{text}"
    );
    assert!(text.contains("\"action\":\"open\""), "{text}");
    assert!(!text.contains("sf-sim-s3cret"), "{text}");
    assert!(
        !text.contains("00DQy000000Org!"),
        "the token itself: {text}"
    );
    assert_eq!(sf.state.lock().unwrap().mints, 1);
}

// ---------------------------------------------------------------- Dynamics 365

const TENANT: &str = "00000000-0000-0000-0000-000000000000";
const APP_ID: &str = "11111111-1111-1111-1111-111111111111";

fn dyn_card(d: &Dynamics, contact: dynamics::Contact) -> Value {
    opened(
        &format!(
            "{}/main.aspx?pagetype=entityrecord&etn=contact&id={}",
            d.crm.url(),
            contact.id
        ),
        &contact.name,
    )
}

/// The Dynamics example against `d` (as both Entra ID and the
/// organization), its secret read from `var`.
async fn dynamics_gateway(d: &Dynamics, var: &str) -> TestGateway {
    let url = d.crm.url();
    start_gateway(&example_config(
        "dynamics365.toml",
        &[
            ("https://login.microsoftonline.com", &url),
            ("https://contoso.crm.dynamics.com", &url),
            ("DYNAMICS_CLIENT_SECRET", var),
        ],
    ))
    .await
}

/// The `$filter` the recipe sends for a caller whose pattern is this.
fn dyn_filter(pattern: &str) -> String {
    ["telephone1", "telephone2", "telephone3", "mobilephone"]
        .iter()
        .map(|c| format!("contains({c},'{pattern}')"))
        .collect::<Vec<_>>()
        .join(" or ")
}

#[tokio::test]
async fn dynamics_cold_call_gets_a_token_then_queries_and_the_next_call_reuses_it() {
    std::env::set_var("TPGW_IT_DYN_SECRET_COLD", "dyn~cold.s3cret");
    let d = Dynamics::start(TENANT, APP_ID, "dyn~cold.s3cret").await;
    let gw = dynamics_gateway(&d, "TPGW_IT_DYN_SECRET_COLD").await;
    for _ in 0..2 {
        let reply = gw.client().post(gw.addr, None, PAYLOAD).await;
        assert_eq!(reply.json(), dyn_card(&d, dynamics::jeanne()));
    }
    {
        let s = d.state.lock().unwrap();
        assert_eq!((s.mints, s.queries, s.refused), (1, 2, 0));
        assert_eq!(s.filters[0], dyn_filter("%6%1%2%3%4%5%6%7%8%"));
    }
    let seen = d.crm.seen();
    let login = seen.iter().find(|r| r.method == "POST").unwrap();
    assert_eq!(login.target, format!("/{TENANT}/oauth2/v2.0/token"));
    let form = fields(&login.text());
    assert_eq!(form["grant_type"], "client_credentials");
    assert_eq!(form["client_id"], APP_ID);
    assert_eq!(form["scope"], format!("{}/.default", d.crm.url()));
    let query = seen.iter().find(|r| r.method == "GET").unwrap();
    for (name, value) in [
        ("odata-maxversion", "4.0"),
        ("odata-version", "4.0"),
        ("accept", "application/json"),
    ] {
        assert_eq!(query.header(name), Some(value), "{name}");
    }
    let q = query_of(&query.target);
    assert_eq!(
        q["$select"],
        "fullname,contactid,telephone1,telephone2,telephone3,mobilephone"
    );
    assert_eq!(q["$top"], "50");
}

#[tokio::test]
async fn dynamics_expired_token_is_renewed_once_and_the_call_still_opens() {
    std::env::set_var("TPGW_IT_DYN_SECRET_EXPIRED", "dyn-expired");
    let d = Dynamics::start(TENANT, APP_ID, "dyn-expired").await;
    let gw = dynamics_gateway(&d, "TPGW_IT_DYN_SECRET_EXPIRED").await;
    let reply = gw.client().post(gw.addr, None, PAYLOAD).await;
    assert_eq!(reply.json(), dyn_card(&d, dynamics::jeanne()));
    d.state.lock().unwrap().expire_tokens();
    for _ in 0..2 {
        let reply = gw.client().post(gw.addr, None, PAYLOAD).await;
        assert_eq!(reply.json(), dyn_card(&d, dynamics::jeanne()));
    }
    let s = d.state.lock().unwrap();
    assert_eq!(
        (s.mints, s.refused, s.queries),
        (2, 1, 3),
        "one new token after the 401, then reused"
    );
}

#[tokio::test]
async fn dynamics_token_is_renewed_before_its_expires_in_without_a_refusal() {
    std::env::set_var("TPGW_IT_DYN_SECRET_LIFE", "dyn-life");
    let d = Dynamics::start(TENANT, APP_ID, "dyn-life").await;
    d.state.lock().unwrap().expires_in = std::time::Duration::from_secs(1);
    let gw = dynamics_gateway(&d, "TPGW_IT_DYN_SECRET_LIFE").await;
    let reply = gw.client().post(gw.addr, None, PAYLOAD).await;
    assert_eq!(reply.json(), dyn_card(&d, dynamics::jeanne()));
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let reply = gw.client().post(gw.addr, None, PAYLOAD).await;
    assert_eq!(reply.json(), dyn_card(&d, dynamics::jeanne()));
    let s = d.state.lock().unwrap();
    assert_eq!((s.mints, s.refused, s.queries), (2, 0, 2));
}

#[tokio::test]
async fn dynamics_caller_in_any_shape_finds_numbers_typed_in_any_shape() {
    std::env::set_var("TPGW_IT_DYN_SECRET_SHAPES", "dyn-shapes");
    let d = Dynamics::start(TENANT, APP_ID, "dyn-shapes").await;
    let gw = dynamics_gateway(&d, "TPGW_IT_DYN_SECRET_SHAPES").await;
    for caller in JEANNE_SHAPES {
        let reply = gw.client().post(gw.addr, None, &call(caller)).await;
        assert_eq!(reply.json(), dyn_card(&d, dynamics::jeanne()), "{caller}");
    }
    // Paul's mobile was typed nationally (06 11 22 33 44).
    for caller in ["+33611223344", "0033 6 11 22 33 44", "0611223344"] {
        let reply = gw.client().post(gw.addr, None, &call(caller)).await;
        assert_eq!(reply.json(), dyn_card(&d, dynamics::paul()), "{caller}");
    }
    let reply = gw.client().post(gw.addr, None, &call("0298765432")).await;
    assert_eq!(reply.json(), json!({"action":"none"}));
    let s = d.state.lock().unwrap();
    assert_eq!((s.mints, s.malformed), (1, 0));
}

#[tokio::test]
async fn dynamics_hostile_callers_cannot_change_the_filter() {
    std::env::set_var("TPGW_IT_DYN_SECRET_HOSTILE", "dyn-hostile");
    let d = Dynamics::start(TENANT, APP_ID, "dyn-hostile").await;
    let gw = dynamics_gateway(&d, "TPGW_IT_DYN_SECRET_HOSTILE").await;
    for caller in HOSTILE {
        let reply = gw.client().post(gw.addr, None, &call(caller)).await;
        let json = reply.json();
        assert!(
            json == json!({"action":"none"}) || json == dyn_card(&d, dynamics::jeanne()),
            "{caller}: {json}"
        );
    }
    let s = d.state.lock().unwrap();
    assert_eq!(s.malformed, 0, "every filter parsed: {:#?}", s.filters);
    assert_eq!(s.queries, HOSTILE.len());
    for filter in &s.filters {
        // Four contains() of a pattern of digits and %, nothing else.
        let pattern = filter
            .strip_prefix("contains(telephone1,'")
            .and_then(|f| f.split_once('\''))
            .map(|(p, _)| p)
            .unwrap_or_else(|| panic!("{filter}"));
        assert!(
            pattern.chars().all(|c| c.is_ascii_digit() || c == '%'),
            "{filter}"
        );
        assert_eq!(filter, &dyn_filter(pattern));
    }
}

/// A matrix person as a Dataverse contact, the number in one of the four
/// phone columns in turn.
fn dyn_person(p: &Person) -> dynamics::Contact {
    let mut c = dynamics::Contact::new(
        &format!("00000000-0000-4000-8000-{:012}", p.id),
        &format!("Person {}", p.id),
    );
    match p.id % 4 {
        0 => c.telephone1 = p.stored,
        1 => c.telephone2 = p.stored,
        2 => c.telephone3 = p.stored,
        _ => c.mobilephone = p.stored,
    }
    c
}

#[tokio::test]
async fn dynamics_matrix_every_stored_format_from_every_caller_shape_and_no_wrong_card() {
    std::env::set_var("TPGW_IT_DYN_SECRET_MATRIX", "dyn-matrix");
    let d = Dynamics::start(TENANT, APP_ID, "dyn-matrix").await;
    d.state.lock().unwrap().contacts = phone_matrix::people().iter().map(dyn_person).collect();
    let gw = dynamics_gateway(&d, "TPGW_IT_DYN_SECRET_MATRIX").await;
    run_matrix("Dynamics 365", &gw, &[], |url| {
        url.rsplit('-').next().and_then(|n| n.parse().ok())
    })
    .await;
    let s = d.state.lock().unwrap();
    assert_eq!(s.malformed, 0, "{:#?}", s.filters);
    assert_eq!(s.queries, phone_matrix::calls().len());
}

#[tokio::test]
async fn dynamics_unknown_tenant_is_a_login_failure_and_nothing_is_queried() {
    std::env::set_var("TPGW_IT_DYN_SECRET_TENANT", "dyn-tenant");
    let d = Dynamics::start("another-tenant.onmicrosoft.com", APP_ID, "dyn-tenant").await;
    let gw = dynamics_gateway(&d, "TPGW_IT_DYN_SECRET_TENANT").await;
    let reply = gw.client().post(gw.addr, None, PAYLOAD).await;
    assert_eq!(reply.json(), json!({"action":"none"}));
    let s = d.state.lock().unwrap();
    assert_eq!((s.refused_logins, s.mints, s.queries), (1, 0, 0));
}

// ---------------------------------------------------------------- HubSpot

fn hs_card(contact: hubspot::Contact) -> Value {
    opened(
        &format!(
            "https://app.hubspot.com/contacts/12345678/record/0-1/{}",
            contact.id
        ),
        &format!("{} {}", contact.firstname, contact.lastname),
    )
}

/// The HubSpot example against `hs`, its token read from `var`, its route
/// named `route`.
async fn hubspot_gateway(hs: &HubSpot, var: &str, route: &str) -> TestGateway {
    let url = hs.crm.url();
    let name = format!("name = \"{route}\"");
    start_gateway(&example_config(
        "hubspot.toml",
        &[
            ("https://api.hubapi.com", &url),
            ("HUBSPOT_ACCESS_TOKEN", var),
            ("name = \"hubspot-contact\"", &name),
        ],
    ))
    .await
}

/// The search body the recipe sends for a caller whose last significant
/// digits are these.
fn hs_body(tail: &str) -> Value {
    let value = format!("*{tail}*");
    json!({
        "filterGroups": [
            {"filters": [{"propertyName": "hs_searchable_calculated_phone_number", "operator": "CONTAINS_TOKEN", "value": value}]},
            {"filters": [{"propertyName": "hs_searchable_calculated_mobile_number", "operator": "CONTAINS_TOKEN", "value": value}]},
        ],
        "properties": ["firstname", "lastname", "phone", "mobilephone"],
        "limit": 50,
    })
}

#[tokio::test]
async fn hubspot_search_sends_the_token_and_both_phone_groups_and_opens_the_card() {
    std::env::set_var("TPGW_IT_HS_TOKEN_COLD", "pat-eu1-cold-0000");
    let hs = HubSpot::start("pat-eu1-cold-0000").await;
    let gw = hubspot_gateway(&hs, "TPGW_IT_HS_TOKEN_COLD", "hs-cold").await;
    for _ in 0..2 {
        let reply = gw.client().post(gw.addr, None, PAYLOAD).await;
        assert_eq!(reply.json(), hs_card(hubspot::jeanne()));
    }
    let s = hs.state.lock().unwrap();
    assert_eq!((s.searches, s.refused, s.invalid), (2, 0, 0));
    assert_eq!(s.bodies[0], hs_body("12345678"));
    let seen = hs.crm.seen();
    assert_eq!(
        seen[0].header("authorization"),
        Some("Bearer pat-eu1-cold-0000")
    );
}

#[tokio::test]
async fn hubspot_caller_in_any_shape_finds_the_phone_or_the_mobile() {
    std::env::set_var("TPGW_IT_HS_TOKEN_SHAPES", "pat-eu1-shapes-0000");
    let hs = HubSpot::start("pat-eu1-shapes-0000").await;
    let gw = hubspot_gateway(&hs, "TPGW_IT_HS_TOKEN_SHAPES", "hs-shapes").await;
    for caller in JEANNE_SHAPES {
        let reply = gw.client().post(gw.addr, None, &call(caller)).await;
        assert_eq!(reply.json(), hs_card(hubspot::jeanne()), "{caller}");
    }
    for caller in ["06 11 22 33 44", "0033611223344"] {
        let reply = gw.client().post(gw.addr, None, &call(caller)).await;
        assert_eq!(reply.json(), hs_card(hubspot::paul()), "{caller}");
    }
    let reply = gw.client().post(gw.addr, None, &call("0298765432")).await;
    assert_eq!(reply.json(), json!({"action":"none"}));
    let s = hs.state.lock().unwrap();
    assert_eq!(s.bodies.last(), Some(&hs_body("98765432")));
    assert_eq!(s.invalid, 0);
}

#[tokio::test]
async fn hubspot_hostile_callers_stay_inside_the_json_value() {
    std::env::set_var("TPGW_IT_HS_TOKEN_HOSTILE", "pat-eu1-hostile-0000");
    let hs = HubSpot::start("pat-eu1-hostile-0000").await;
    let gw = hubspot_gateway(&hs, "TPGW_IT_HS_TOKEN_HOSTILE", "hs-hostile").await;
    for caller in HOSTILE {
        let reply = gw.client().post(gw.addr, None, &call(caller)).await;
        let json = reply.json();
        assert!(
            json == json!({"action":"none"}) || json == hs_card(hubspot::jeanne()),
            "{caller}: {json}"
        );
    }
    let s = hs.state.lock().unwrap();
    assert_eq!((s.invalid, s.searches), (0, HOSTILE.len()));
    for body in &s.bodies {
        let value = body["filterGroups"][0]["filters"][0]["value"]
            .as_str()
            .unwrap();
        let tail = value
            .strip_prefix('*')
            .and_then(|v| v.strip_suffix('*'))
            .unwrap_or_else(|| panic!("{body}"));
        assert!(
            tail.len() <= 8 && tail.chars().all(|c| c.is_ascii_digit()),
            "{body}"
        );
        assert_eq!(body, &hs_body(tail));
    }
}

#[tokio::test]
async fn hubspot_rate_limited_search_is_none_at_once_and_not_retried() {
    std::env::set_var("TPGW_IT_HS_TOKEN_429", "pat-eu1-429-0000");
    let hs = HubSpot::start("pat-eu1-429-0000").await;
    hs.state.lock().unwrap().throttle_next = 1;
    let gw = hubspot_gateway(&hs, "TPGW_IT_HS_TOKEN_429", "hs-429").await;
    let reply = gw.client().post(gw.addr, None, PAYLOAD).await;
    assert_eq!(reply.json(), json!({"action":"none"}));
    assert_eq!(hs.crm.seen().len(), 1, "no retry against a rate limit");
    let lines = log_lines("route=hs-429 ");
    assert!(
        lines.iter().any(|l| l.contains("reason=status ")),
        "{lines:#?}"
    );
    // The limit is per second: the next call asks again and opens.
    let reply = gw.client().post(gw.addr, None, PAYLOAD).await;
    assert_eq!(reply.json(), hs_card(hubspot::jeanne()));
    let s = hs.state.lock().unwrap();
    assert_eq!((s.throttled, s.searches), (1, 1));
}

#[tokio::test]
async fn hubspot_revoked_token_is_none_without_retry() {
    std::env::set_var("TPGW_IT_HS_TOKEN_REVOKED", "pat-eu1-revoked-0000");
    let hs = HubSpot::start("pat-eu1-current-0000").await;
    let gw = hubspot_gateway(&hs, "TPGW_IT_HS_TOKEN_REVOKED", "hs-revoked").await;
    let reply = gw.client().post(gw.addr, None, PAYLOAD).await;
    assert_eq!(reply.json(), json!({"action":"none"}));
    let s = hs.state.lock().unwrap();
    assert_eq!((s.refused, s.searches), (1, 0));
    assert_eq!(hs.crm.seen().len(), 1);
}

/// Matrix numbers the HubSpot recipe cannot find, and why: HubSpot's
/// searchable number is libphonenumber's reading of the whole field, which
/// reads two numbers as none.
const HS_NOT_FOUND: [(&str, &str); 1] = [(
    "+33 1 23 45 67 91 / 06 12 34 56 92",
    "two numbers: too long, no searchable number",
)];

/// A matrix person as a HubSpot contact, the number in the phone or the
/// mobile phone in turn.
fn hs_person(p: &Person) -> hubspot::Contact {
    let mut c = hubspot::Contact::new(&format!("9{:05}", p.id), "Person", &p.id.to_string());
    if p.id.is_multiple_of(2) {
        c.phone = p.stored;
    } else {
        c.mobilephone = p.stored;
    }
    c
}

#[tokio::test]
async fn hubspot_matrix_every_stored_format_but_two_numbers_in_a_field_and_no_wrong_card() {
    std::env::set_var("TPGW_IT_HS_TOKEN_MATRIX", "pat-eu1-matrix-0000");
    let hs = HubSpot::start("pat-eu1-matrix-0000").await;
    let people = phone_matrix::people();
    hs.state.lock().unwrap().contacts = people.iter().map(hs_person).collect();
    // The excluded numbers really have no searchable digits of their own.
    let excluded: Vec<u32> = HS_NOT_FOUND
        .iter()
        .map(|(stored, why)| {
            let p = people.iter().find(|p| p.stored == *stored).unwrap();
            let searchable = hubspot::searchable(p.stored, phonenumber::country::Id::FR);
            assert!(
                !searchable.contains(&p.e164[p.e164.len() - 8..]),
                "{stored}: {searchable} ({why})"
            );
            p.id
        })
        .collect();
    let gw = hubspot_gateway(&hs, "TPGW_IT_HS_TOKEN_MATRIX", "hs-matrix").await;
    run_matrix("HubSpot", &gw, &excluded, |url| {
        url.rsplit('/')
            .next()
            .and_then(|id| id.strip_prefix('9'))
            .and_then(|id| id.parse().ok())
    })
    .await;
    let s = hs.state.lock().unwrap();
    assert_eq!(s.invalid, 0);
    assert_eq!(s.searches, phone_matrix::calls().len());
}
