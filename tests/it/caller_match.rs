//! The gateway decides which record is the caller's: a backend's reply names
//! its list of records and each record's phone fields, and the first record
//! holding the caller's number (same country code and national significant
//! number, however written) opens; no record does, and the route goes on to
//! its next backend, then `none`. Tested against a CRM whose search is as
//! loose as can be (every record is a candidate), so only the gateway's
//! comparison stands between a caller and someone else's card.

use serde_json::json;

use crate::crm::{Answer, Crm};
use crate::phone_matrix::{assert_all, calls, people, Person};
use crate::support::*;
use crate::test_crms::PAYLOAD;

fn call(caller: &str) -> String {
    PAYLOAD.replace("\"0612345678\"", &serde_json::to_string(caller).unwrap())
}

/// A CRM answering every search with all of `records`, as `{"result": [...]}`.
async fn everything(records: serde_json::Value) -> Crm {
    Crm::start(move |_| {
        Answer::Reply(
            200,
            "application/json",
            json!({ "result": records }).to_string(),
        )
    })
    .await
}

/// One backend reading candidates from `crm`, its stored numbers read in
/// `region` (or `[phone] default_region`, FR, without one).
fn backend(name: &str, crm: &Crm, region: Option<&str>) -> String {
    let region = region.map_or(String::new(), |r| format!("region = \"{r}\"\n"));
    format!(
        r#"
[backends.{name}]
url = "{url}/search"
encoding = "query"
body = {{ q = "{{{{ caller | phone_like }}}}" }}
[backends.{name}.reply]
format = "json"
records = "result"
phones = ["phone", "mobile", "others.*.number"]
{region}extract = {{ id = "id", name = "name" }}
url = "https://crm.example.org/{name}/{{{{ id }}}}"
title = "{{{{ name }}}}"
"#,
        url = crm.url()
    )
}

fn config(backends: &str, order: &[&str]) -> String {
    let list: Vec<String> = order.iter().map(|b| format!("{b:?}")).collect();
    format!(
        "{TLS_HEAD}[cors]\nallow_origins = [\"*\"]\n[phone]\ndefault_region = \"FR\"\n{backends}\
         [[routes]]\nname = \"caller-match\"\nbackend = [{}]\n",
        list.join(", ")
    )
}

fn record(p: &Person) -> serde_json::Value {
    json!({"id": p.id, "name": format!("Person {}", p.id), "phone": "", "mobile": p.stored})
}

/// Whose card opened, by the id in its url.
fn opened(reply: &Reply) -> Option<u32> {
    let v = reply.json();
    if v["action"] == "none" {
        return None;
    }
    let url = v["url"].as_str().expect("an open reply has a url");
    url.rsplit('/').next().and_then(|id| id.parse().ok())
}

#[tokio::test]
async fn every_stored_shape_is_found_from_every_caller_shape_and_nobody_else_opens() {
    // Worst case for a wrong card: the CRM offers every record each time,
    // the stranger's look-alikes first.
    let mut all: Vec<serde_json::Value> = people().iter().rev().map(record).collect();
    all.insert(0, json!({"id": 999, "name": "No phone", "phone": null}));
    let crm = everything(json!(all)).await;
    let gw = start_gateway(&config(&backend("crm", &crm, None), &["crm"])).await;
    let client = gw.client();
    let mut results = Vec::new();
    for (caller, want) in calls() {
        let reply = client.post(gw.addr, None, &call(&caller)).await;
        results.push((caller, want, opened(&reply)));
    }
    assert_all("a CRM that offers every record", &results);
}

#[tokio::test]
async fn numbers_stored_without_a_country_code_are_read_in_the_backend_s_region() {
    let cases = [
        ("US", "(415) 555-0101", "+14155550101"),
        ("US", "415.555.0102", "0014155550102"),
        ("BE", "02 123 45 67", "+3221234567"),
        ("BE", "0470/12.34.56", "0032470123456"),
        ("CH", "061 234 56 79", "+41612345679"),
        ("DE", "030 1234567", "0049301234567"),
        ("DE", "(030) 123 45 68", "+49301234568"),
        ("GB", "020 7946 0018", "+442079460018"),
        ("IT", "06 1234 5678", "+390612345678"),
        ("IT", "06-1234-5679", "0039 06 1234 5679"),
    ];
    for (region, stored, caller) in cases {
        let crm = everything(json!([
            {"id": 1, "name": "Local", "phone": stored},
        ]))
        .await;
        let gw = start_gateway(&config(&backend("crm", &crm, Some(region)), &["crm"])).await;
        let reply = gw.client().post(gw.addr, None, &call(caller)).await;
        assert_eq!(
            opened(&reply),
            Some(1),
            "{stored:?} in {region}, caller {caller}"
        );
        // The same digits read in France are a French number: not this caller.
        let crm_fr = everything(json!([{"id": 2, "name": "Local", "phone": stored}])).await;
        let gw_fr = start_gateway(&config(&backend("crm", &crm_fr, None), &["crm"])).await;
        let reply = gw_fr.client().post(gw_fr.addr, None, &call(caller)).await;
        assert_eq!(
            opened(&reply),
            None,
            "{stored:?} read in FR, caller {caller}"
        );
    }
}

#[tokio::test]
async fn no_record_with_the_number_goes_to_the_next_backend_then_none_with_a_reason() {
    let look_alike = everything(json!([
        {"id": 1, "name": "French", "phone": "06 12 34 56 79"},
        {"id": 2, "name": "Italian", "mobile": "+39 06 1234 5679"},
    ]))
    .await;
    let right = everything(json!([
        {"id": 3, "name": "Swiss", "others": [{"number": "n/a"}, {"number": "+41 (0)61 234 56 79"}]},
    ]))
    .await;
    let backends = format!(
        "{}{}",
        backend("first", &look_alike, None),
        backend("second", &right, None)
    );
    let gw = start_gateway(&config(&backends, &["first", "second"])).await;
    let client = gw.client();
    let reply = client.post(gw.addr, None, &call("+41612345679")).await;
    assert_eq!(
        reply.json(),
        json!({"action":"open","event":"EventRinging","url":"https://crm.example.org/second/3","autopause":false,"title":"Swiss"})
    );
    // Nobody has this one: none, and the log says why.
    let reply = client.post(gw.addr, None, &call("+41612345600")).await;
    assert_eq!(reply.json(), json!({"action": "none"}));
    let lines = log_lines("no_match");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("none is the caller's number")),
        "{lines:?}"
    );
}

#[tokio::test]
async fn a_caller_that_is_not_a_number_never_reaches_the_crm() {
    let crm = everything(json!([{"id": 1, "name": "Anyone", "phone": "06 12 34 56 78"}])).await;
    let gw = start_gateway(&config(&backend("crm", &crm, None), &["crm"])).await;
    let client = gw.client();
    for caller in ["anonymous", "", "0612345678' OR '1'='1"] {
        let reply = client.post(gw.addr, None, &call(caller)).await;
        assert_eq!(reply.json(), json!({"action": "none"}), "{caller:?}");
    }
    // `phone_like` refused the first two (no digit); the third is sent (its
    // digits) but is not a number to compare, so nobody's card opens.
    assert_eq!(crm.seen().len(), 1);
}

#[tokio::test]
async fn simulate_shows_each_candidate_its_numbers_and_the_verdict() {
    let crm = everything(json!([
        {"id": 1, "name": "French", "phone": "06 12 34 56 79", "mobile": "not given"},
        {"id": 2, "name": "Swiss", "phone": "+41 61 234 56 79"},
    ]))
    .await;
    let text = simulate_cli(
        &config(&backend("crm", &crm, None), &["crm"]),
        &call("0041612345679"),
        &[],
        &[],
    )
    .await;
    for want in [
        "backend \"crm\" candidates: 2 record(s) compared, the caller \"0041612345679\" reads as +41612345679",
        "record 0: dropped: no stored number is the caller's",
        "phone = \"06 12 34 56 79\" -> +33612345679",
        "mobile = \"not given\" -> not a phone number",
        "record 1: kept: holds the caller's number",
        "phone = \"+41 61 234 56 79\" -> +41612345679",
        "\"url\":\"https://crm.example.org/crm/2\"",
    ] {
        assert!(text.contains(want), "{want}\n---\n{text}");
    }
}

#[test]
fn check_refuses_a_misspelt_variable_and_candidates_without_their_parts() {
    let crm_url = "http://127.0.0.1:9";
    let good = format!(
        "{TLS_HEAD}[cors]\nallow_origins = [\"*\"]\n[phone]\ndefault_region = \"FR\"\n\
         [backends.crm]\nurl = \"{crm_url}/s\"\nencoding = \"query\"\n\
         body = {{ q = \"{{{{ caller | phone_like }}}}\" }}\n\
         [backends.crm.reply]\nformat = \"json\"\nrecords = \"result\"\nphones = [\"phone\"]\n\
         extract = {{ id = \"id\" }}\nurl = \"https://crm.example.org/{{{{ id }}}}\"\n\
         [[routes]]\nname = \"r\"\nbackend = \"crm\"\n"
    );
    let (ok, text) = crate::check_cmd::check_ok(&good);
    assert!(ok, "{text}");
    let cases = [
        (
            good.replace("caller | phone_like", "calller | phone_like"),
            "unknown variable \"calller\" (did you mean \"caller\"?)",
        ),
        (
            good.replace("phones = [\"phone\"]\n", ""),
            "backends.crm.reply.records: records needs phones",
        ),
        (
            good.replace("records = \"result\"\n", ""),
            "backends.crm.reply.phones: phones needs records",
        ),
        (
            good.replace(
                "records = \"result\"",
                "records = \"result\"\nregion = \"XX\"",
            ),
            "backends.crm.reply.region: \"XX\" is not a region",
        ),
        (
            good.replace("[phone]\ndefault_region = \"FR\"\n", ""),
            "comparing phone numbers needs a region",
        ),
        (
            good.replace("format = \"json\"", "format = \"xml\""),
            "candidate records are read from JSON replies",
        ),
        (
            good.replace("phone_like", "phone_like(lst=9)"),
            "unknown argument \"lst\" of phone_like (did you mean \"last\"?)",
        ),
    ];
    for (config, want) in cases {
        let (ok, text) = crate::check_cmd::check_ok(&config);
        assert!(!ok, "accepted, wanted {want:?}:\n{text}");
        assert!(text.contains(want), "{want}\n---\n{text}");
    }
}
