//! The SaaS CRM recipes (`examples/salesforce.toml`, `dynamics365.toml`,
//! `hubspot.toml`) run end to end against test CRMs that behave as the real
//! ones document: a cold call gets a token then looks up, the next reuses
//! it, a token the CRM dropped is renewed once, the phone matrix (numbers
//! stored as people type them, called in every shape) finds each person and
//! never opens someone else's card (HubSpot: but for the two numbers in one
//! field its search cannot express), hostile callers cannot change the query, and the
//! CRMs' refusals (wrong secret, unknown tenant, rate limit) give `none`.
//!
//! Each recipe's caller directory runs too: a full sync through the CRM's
//! real paging (HubSpot: searches by `hs_object_id GT`; Salesforce:
//! `nextRecordsUrl`; Dynamics: `@odata.nextLink`) builds the index and the
//! phone matrix is answered with no look-up reaching the CRM but for the
//! numbers nobody holds; an edit is answered after the next incremental
//! sync (the CRM's modified-since filter). The other tests run the example
//! without its directory ([`live_only`]): they count the live look-ups.
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

/// The example `text` without its `[backends.BACKEND.directory]` table:
/// calls take the live look-up alone, whatever a sync would have done.
fn live_only(mut text: String, backend: &str) -> String {
    let header = format!("\n[backends.{backend}.directory]\n");
    let start = text.find(&header).expect("the example has a directory") + 1;
    let end = text[start + header.len() - 1..]
        .find("\n[")
        .map_or(text.len(), |i| start + header.len() - 1 + i + 1);
    text.replace_range(start..end, "");
    assert!(!text.contains(".directory]"));
    text
}

/// The example with the directory on, its backend renamed `name` (log
/// lines name it: tests wait on their own), and more `(from, to)` swaps
/// (shorter periods, smaller pages).
fn with_directory(mut text: String, backend: &str, name: &str, swaps: &[(&str, &str)]) -> String {
    text = text
        .replace(
            &format!("[backends.{backend}"),
            &format!("[backends.{name}"),
        )
        .replace(
            &format!("backend = \"{backend}\""),
            &format!("backend = \"{name}\""),
        );
    for (from, to) in swaps {
        assert!(text.contains(from), "no {from}");
        text = text.replace(from, to);
    }
    text
}

/// Waits (at most 30 s) for a log line holding every needle, after `skip`
/// such lines; returns how many there are now.
async fn wait_log(needles: &[&str], skip: usize) -> usize {
    for _ in 0..600 {
        let n = log_lines(needles[0])
            .into_iter()
            .filter(|l| needles.iter().all(|n| l.contains(n)))
            .count();
        if n > skip {
            return n;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("no log line with {needles:?}");
}

/// Waits for an incremental sync of `backend` that began after now: the
/// one running (if any) may have read the CRM before an edit.
async fn next_incremental(backend: &str) {
    let needle = format!("backend={backend}");
    let needles = [needle.as_str(), "directory incremental sync"];
    let seen = wait_log(&needles, 0).await;
    wait_log(&needles, seen + 1).await;
}

/// The edit test every directory recipe shares: the gateway started on
/// `config`, `backend`'s full sync of the two test contacts waited for,
/// the payload's caller opening `before`; then `edit` changes a number in
/// the CRM, and after the next incremental sync `caller` opens `after`.
/// The test then checks the CRM saw no live look-up and how it was asked.
async fn edit_arrives_with_the_next_incremental_sync(
    config: &str,
    backend: &str,
    before: Value,
    edit: impl FnOnce(),
    (caller, after): (&str, Value),
) -> TestGateway {
    let gw = start_gateway(config).await;
    let needle = format!("backend={backend}");
    wait_log(&[&needle, "directory full sync", "2 number(s)"], 0).await;
    let client = gw.client();
    assert_eq!(client.post(gw.addr, None, PAYLOAD).await.json(), before);
    edit();
    next_incremental(backend).await;
    assert_eq!(
        client.post(gw.addr, None, &call(caller)).await.json(),
        after
    );
    gw
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
    start_gateway(&live_only(
        example_config("salesforce.toml", &swaps),
        "salesforce",
    ))
    .await
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
    start_gateway(&live_only(dynamics_config(d, var), "dynamics")).await
}

/// The Dynamics example against `d`, its secret read from `var`.
fn dynamics_config(d: &Dynamics, var: &str) -> String {
    let url = d.crm.url();
    example_config(
        "dynamics365.toml",
        &[
            ("https://login.microsoftonline.com", &url),
            ("https://contoso.crm.dynamics.com", &url),
            ("DYNAMICS_CLIENT_SECRET", var),
        ],
    )
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
    start_gateway(&live_only(hubspot_config(hs, var, route), "hubspot")).await
}

/// The HubSpot example against `hs`, its token read from `var`, its route
/// named `route`.
fn hubspot_config(hs: &HubSpot, var: &str, route: &str) -> String {
    let url = hs.crm.url();
    let name = format!("name = \"{route}\"");
    example_config(
        "hubspot.toml",
        &[
            ("https://api.hubapi.com", &url),
            ("HUBSPOT_ACCESS_TOKEN", var),
            ("name = \"hubspot-contact\"", &name),
        ],
    )
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

// ------------------------------------------------------ the caller directory

/// Every call of the phone matrix through `gw`, answered from the index:
/// whose card opened, checked by [`assert_all`]. Returns how many calls
/// had no one to find (a miss in the index: the live look-up asks).
async fn run_matrix_from_index(
    crm: &str,
    gw: &TestGateway,
    whose: impl Fn(&str) -> Option<u32>,
) -> usize {
    let client = gw.client();
    let mut results = Vec::new();
    for (caller, want) in phone_matrix::calls() {
        let reply = client.post(gw.addr, None, &call(&caller)).await.json();
        let got = reply["url"].as_str().map(|url| whose(url).unwrap_or(0));
        results.push((caller, want, got));
    }
    let strangers = results.iter().filter(|(_, w, _)| w.is_none()).count();
    assert_all(crm, &results);
    strangers
}

#[tokio::test]
async fn hubspot_directory_full_sync_pages_by_object_id_and_calls_ask_nothing() {
    std::env::set_var("TPGW_IT_HS_TOKEN_DIR", "pat-eu1-dir-0000");
    let hs = HubSpot::start("pat-eu1-dir-0000").await;
    let people = phone_matrix::people();
    hs.state.lock().unwrap().contacts = people.iter().map(hs_person).collect();
    // Pages of 5, each after the last id of the one before (page.last).
    let config = with_directory(
        hubspot_config(&hs, "TPGW_IT_HS_TOKEN_DIR", "hs-dir"),
        "hubspot",
        "hs-dir-matrix",
        &[
            ("page_size = 200", "page_size = 5"),
            ("pages_per_second = 1\n", "pages_per_second = 1000\n"),
        ],
    );
    let gw = start_gateway(&config).await;
    let pages = people.len().div_ceil(5);
    let done = format!("{} record(s) in {pages} page(s)", people.len());
    wait_log(&["backend=hs-dir-matrix", "directory full sync", &done], 0).await;
    let strangers = run_matrix_from_index("HubSpot directory", &gw, |url| {
        url.rsplit('/')
            .next()
            .and_then(|id| id.strip_prefix('9'))
            .and_then(|id| id.parse().ok())
    })
    .await;
    let s = hs.state.lock().unwrap();
    assert_eq!(s.invalid, 0, "{:#?}", s.bodies);
    assert_eq!(s.lookups(), strangers, "only misses search the CRM");
    // Each page is a new search past the last id read, never `after`.
    let pages: Vec<&Value> = s
        .bodies
        .iter()
        .filter(|b| b["sorts"][0]["propertyName"] == "hs_object_id")
        .collect();
    assert!(pages.len() >= 5, "{pages:#?}");
    assert!(pages.iter().all(|b| b.get("after").is_none()));
    assert_eq!(
        pages[0]["filterGroups"],
        json!([{"filters": [{"propertyName": "hs_object_id", "operator": "GT", "value": "0"}]}])
    );
    assert_eq!(
        pages[1]["filterGroups"][0]["filters"][0]["value"],
        json!(hs_person(&people[4]).id)
    );
    assert_eq!(pages[0]["limit"], json!(5));
}

#[tokio::test]
async fn hubspot_directory_edit_is_answered_after_the_next_incremental_sync() {
    std::env::set_var("TPGW_IT_HS_TOKEN_EDIT", "pat-eu1-edit-0000");
    let hs = HubSpot::start("pat-eu1-edit-0000").await;
    let config = with_directory(
        hubspot_config(&hs, "TPGW_IT_HS_TOKEN_EDIT", "hs-edit"),
        "hubspot",
        "hs-dir-edit",
        &[
            ("\nevery_s = 60", "\nevery_s = 1"),
            ("pages_per_second = 1\n", "pages_per_second = 1000\n"),
        ],
    );
    // Jeanne's phone changes in HubSpot.
    let moved = hubspot::Contact {
        phone: "+33 6 99 88 77 66",
        ..hubspot::jeanne()
    };
    let _gw = edit_arrives_with_the_next_incremental_sync(
        &config,
        "hs-dir-edit",
        hs_card(hubspot::jeanne()),
        || hs.state.lock().unwrap().save(moved.clone()),
        ("0699887766", hs_card(moved.clone())),
    )
    .await;
    let s = hs.state.lock().unwrap();
    assert_eq!(s.lookups(), 0, "answered from the index");
    // The incremental search: past the last id, modified since (Unix ms).
    let since = s
        .bodies
        .iter()
        .find_map(|b| {
            let f = &b["filterGroups"][0]["filters"][1];
            (f["propertyName"] == "lastmodifieddate").then(|| f.clone())
        })
        .expect("an incremental search");
    assert_eq!(since["operator"], "GT");
    let ms: i64 = since["value"].as_str().unwrap().parse().unwrap();
    assert!((ms - hubspot::now_ms()).abs() < 600_000, "{since}");
    assert_eq!(s.invalid, 0);
}

#[tokio::test]
async fn hubspot_search_refuses_a_page_past_the_10000th_result() {
    // Why the directory does not page by `after`: HubSpot refuses it.
    let hs = HubSpot::start("pat-eu1-cap-0000").await;
    let client = reqwest_like_post(&hs, json!({"limit": 200, "after": "9900"})).await;
    assert_eq!(client, 400);
    let ok = reqwest_like_post(&hs, json!({"limit": 100, "after": "9900"})).await;
    assert_eq!(ok, 200);
}

/// Posts `body` to the test HubSpot's search with its token; the status.
async fn reqwest_like_post(hs: &HubSpot, body: Value) -> u16 {
    let token = hs.state.lock().unwrap().token.clone();
    let stream = tokio::net::TcpStream::connect(hs.crm.addr).await.unwrap();
    let (mut send, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let request = hyper::Request::post(hubspot::SEARCH_PATH)
        .header("host", "127.0.0.1")
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from(
            body.to_string(),
        )))
        .unwrap();
    send.send_request(request).await.unwrap().status().as_u16()
}

#[tokio::test]
async fn salesforce_directory_full_sync_follows_next_records_url_and_calls_ask_nothing() {
    std::env::set_var("TPGW_IT_SF_SECRET_DIR", "sf-dir");
    let sf = Salesforce::start(SF_KEY, "sf-dir").await;
    let people = phone_matrix::people();
    {
        let mut s = sf.state.lock().unwrap();
        s.contacts = people.iter().map(sf_person).collect();
        // Contacts without a phone: 450 in all, three batches of 200.
        for n in s.contacts.len()..450 {
            let c = salesforce::Contact::new(&format!("003Qy1{n:012}"), "No Phone");
            s.contacts.push(c);
        }
    }
    let url = sf.crm.url();
    let config = with_directory(
        example_config(
            "salesforce.toml",
            &[
                ("https://mydomain.my.salesforce.com", &url),
                ("SALESFORCE_CLIENT_SECRET", "TPGW_IT_SF_SECRET_DIR"),
            ],
        ),
        "salesforce",
        "sf-dir-matrix",
        &[
            ("page_size = 2000", "page_size = 200"),
            ("pages_per_second = 2\n", "pages_per_second = 1000\n"),
        ],
    );
    let gw = start_gateway(&config).await;
    wait_log(
        &[
            "backend=sf-dir-matrix",
            "directory full sync",
            "450 record(s) in 3 page(s)",
        ],
        0,
    )
    .await;
    let strangers = run_matrix_from_index("Salesforce directory", &gw, |url| {
        url.strip_suffix("/view")?
            .rsplit('/')
            .next()?
            .strip_prefix("003Qy")?
            .parse()
            .ok()
    })
    .await;
    let s = sf.state.lock().unwrap();
    assert_eq!(s.malformed, 0, "{:#?}", s.soql);
    assert_eq!(s.lookups(), strangers, "only misses query the org");
    assert_eq!(s.more_pages, 2, "two batches by nextRecordsUrl");
    assert_eq!(
        s.soql[0],
        "SELECT Id, Name, Phone, MobilePhone, HomePhone, OtherPhone FROM Contact ORDER BY Id"
    );
    let batch = sf
        .crm
        .seen()
        .iter()
        .find_map(|r| r.header("sforce-query-options").map(str::to_owned));
    assert_eq!(batch.as_deref(), Some("batchSize=200"));
}

#[tokio::test]
async fn salesforce_directory_edit_is_answered_after_the_next_incremental_sync() {
    std::env::set_var("TPGW_IT_SF_SECRET_EDIT", "sf-edit");
    let sf = Salesforce::start(SF_KEY, "sf-edit").await;
    let url = sf.crm.url();
    let config = with_directory(
        example_config(
            "salesforce.toml",
            &[
                ("https://mydomain.my.salesforce.com", &url),
                ("SALESFORCE_CLIENT_SECRET", "TPGW_IT_SF_SECRET_EDIT"),
            ],
        ),
        "salesforce",
        "sf-dir-edit",
        &[
            ("\nevery_s = 60", "\nevery_s = 1"),
            ("pages_per_second = 2\n", "pages_per_second = 1000\n"),
        ],
    );
    let moved = salesforce::Contact {
        mobile_phone: "06.99.88.77.66",
        ..salesforce::jeanne()
    };
    let _gw = edit_arrives_with_the_next_incremental_sync(
        &config,
        "sf-dir-edit",
        sf_card(salesforce::jeanne()),
        || sf.state.lock().unwrap().save(moved.clone()),
        ("+33699887766", sf_card(moved.clone())),
    )
    .await;
    let s = sf.state.lock().unwrap();
    assert_eq!(s.lookups(), 0, "answered from the index");
    assert_eq!(s.malformed, 0, "{:#?}", s.soql);
    // The incremental query: a dateTime literal, no quotes, in UTC.
    let incremental = s
        .soql
        .iter()
        .find(|q| q.contains("SystemModstamp"))
        .expect("an incremental query");
    let literal = incremental
        .split("SystemModstamp > ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .unwrap();
    assert_eq!(literal.len(), "2026-12-07T14:00:00Z".len(), "{incremental}");
    assert!(
        literal.ends_with('Z') && !literal.contains('\''),
        "{incremental}"
    );
}

#[tokio::test]
async fn salesforce_quoted_datetime_is_refused_by_the_org() {
    // Why since is written bare: a quoted dateTime is INVALID_FIELD.
    std::env::set_var("TPGW_IT_SF_SECRET_QUOTED", "sf-quoted");
    let sf = Salesforce::start(SF_KEY, "sf-quoted").await;
    let url = sf.crm.url();
    let config = with_directory(
        example_config(
            "salesforce.toml",
            &[
                ("https://mydomain.my.salesforce.com", &url),
                ("SALESFORCE_CLIENT_SECRET", "TPGW_IT_SF_SECRET_QUOTED"),
            ],
        ),
        "salesforce",
        "sf-dir-quoted",
        &[
            (
                "SystemModstamp > {{ since }}",
                "SystemModstamp > '{{ since }}'",
            ),
            ("\nevery_s = 60", "\nevery_s = 1"),
        ],
    );
    let _gw = start_gateway(&config).await;
    wait_log(
        &["backend=sf-dir-quoted", "directory sync failed", "HTTP 400"],
        0,
    )
    .await;
    assert!(sf.state.lock().unwrap().malformed > 0);
}

#[tokio::test]
async fn dynamics_directory_full_sync_follows_next_link_and_calls_ask_nothing() {
    std::env::set_var("TPGW_IT_DYN_SECRET_DIR", "dyn-dir");
    let d = Dynamics::start(TENANT, APP_ID, "dyn-dir").await;
    let people = phone_matrix::people();
    d.state.lock().unwrap().contacts = people.iter().map(dyn_person).collect();
    let config = with_directory(
        dynamics_config(&d, "TPGW_IT_DYN_SECRET_DIR"),
        "dynamics",
        "dyn-dir-matrix",
        &[
            ("page_size = 1000", "page_size = 5"),
            ("pages_per_second = 2\n", "pages_per_second = 1000\n"),
        ],
    );
    let gw = start_gateway(&config).await;
    let pages = people.len().div_ceil(5);
    let done = format!("{} record(s) in {pages} page(s)", people.len());
    wait_log(&["backend=dyn-dir-matrix", "directory full sync", &done], 0).await;
    let strangers = run_matrix_from_index("Dynamics 365 directory", &gw, |url| {
        url.rsplit('-').next().and_then(|n| n.parse().ok())
    })
    .await;
    let s = d.state.lock().unwrap();
    assert_eq!(s.malformed, 0, "{:#?}", s.filters);
    assert_eq!(s.lookups(), strangers, "only misses query Dataverse");
    assert_eq!(s.next_pages, pages - 1, "every next page by its nextLink");
    let seen = d.crm.seen();
    let page = seen.iter().find(|r| r.target.contains("$orderby")).unwrap();
    assert_eq!(page.header("prefer"), Some("odata.maxpagesize=5"));
}

#[tokio::test]
async fn dynamics_directory_edit_is_answered_after_the_next_incremental_sync() {
    std::env::set_var("TPGW_IT_DYN_SECRET_EDIT", "dyn-edit");
    let d = Dynamics::start(TENANT, APP_ID, "dyn-edit").await;
    let config = with_directory(
        dynamics_config(&d, "TPGW_IT_DYN_SECRET_EDIT"),
        "dynamics",
        "dyn-dir-edit",
        &[
            ("\nevery_s = 60", "\nevery_s = 1"),
            ("pages_per_second = 2\n", "pages_per_second = 1000\n"),
        ],
    );
    let moved = dynamics::Contact {
        telephone3: "0033 6 99 88 77 66",
        ..dynamics::jeanne()
    };
    let _gw = edit_arrives_with_the_next_incremental_sync(
        &config,
        "dyn-dir-edit",
        dyn_card(&d, dynamics::jeanne()),
        || d.state.lock().unwrap().save(moved.clone()),
        ("0699887766", dyn_card(&d, moved.clone())),
    )
    .await;
    let s = d.state.lock().unwrap();
    assert_eq!(s.lookups(), 0, "answered from the index");
    assert_eq!(s.malformed, 0, "{:#?}", s.filters);
    let since = s
        .filters
        .iter()
        .find(|f| f.starts_with("modifiedon gt "))
        .expect("an incremental query");
    assert!(since.ends_with('Z') && !since.contains('\''), "{since}");
}
