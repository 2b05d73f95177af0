//! The EspoCRM and Dolibarr recipes (`examples/espocrm.toml`,
//! `examples/dolibarr.toml`) run end to end against test CRMs that check
//! what the real ones check: EspoCRM's HMAC signature recomputed over the
//! request received, its where items over a contact's numbers (their digits
//! for `phoneNumberNumeric`), lists showing the primary number only;
//! Dolibarr's API key, its `sqlfilters` parsed and matched as Dolibarr and
//! MySQL would, and its HTTP 404 for no match. Both run the caller-match
//! matrix. Each test renames the example's secrets so tests in
//! parallel never share an environment variable. The look-up tests run
//! without the recipes' caller directories; the directory tests run with
//! them: a full sync paged as each CRM pages (EspoCRM offset/maxSize by id,
//! Dolibarr page/limit by rowid, its 404 past the end) answers calls with
//! no look-up, and an edit arrives with the next incremental sync
//! (`modifiedAt` after, `t.tms` greater than).

use serde_json::json;

use crate::examples::example_config;
use crate::recipe_vtiger::without_directory;
use crate::support::*;
use crate::test_crms::dolibarr::{Criterion, Dolibarr};
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
    start_gateway(&without_directory(&example_config("espocrm.toml", &all))).await
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
    assert_eq!(s.values, ["612345678", "612345678"]);
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
async fn espocrm_caller_in_any_shape_is_asked_as_its_significant_digits_and_matches() {
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
    assert!(s.values.iter().all(|v| v == "612345678"), "{:?}", s.values);
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
    // The broad search, then the exact one.
    let s = espo.state.lock().unwrap();
    assert_eq!((s.lookups, s.refused, s.bad_searches), (2, 0, 0));
    assert_eq!(s.values, ["298765432", "+33298765432"]);
}

#[tokio::test]
async fn espocrm_wrong_secret_key_is_refused_with_401_and_gives_none() {
    let espo = EspoCrm::start("ak-wrong", "sk-right").await;
    let gw = espo_gateway_with(&espo, "WRONG", ("ak-wrong", "sk-not-it"), &[]).await;
    let reply = gw.client().post(gw.addr, None, PAYLOAD).await;
    assert_eq!(reply.json(), json!({"action":"none"}));
    let s = espo.state.lock().unwrap();
    assert_eq!((s.lookups, s.refused), (0, 2));
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
    assert_eq!(espo.state.lock().unwrap().refused, 2);
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
    assert_eq!((s.lookups, s.refused), (1, 2));
}

#[tokio::test]
async fn espocrm_hostile_caller_stays_one_query_value() {
    let espo = EspoCrm::start("ak-hostile", "sk-hostile").await;
    let gw = espo_gateway(&espo, "HOSTILE", &[]).await;
    let hostile = r#"06'12"34%5_6\78&where[1][type]=isNotNull&maxSize=200#"#;
    let reply = gw.client().post(gw.addr, None, &call_from(hostile)).await;
    assert_eq!(reply.json(), json!({"action":"none"}));
    // Two look-ups (broad, then exact), each its five fields and nothing
    // the caller tried to add.
    let s = espo.state.lock().unwrap();
    assert_eq!((s.lookups, s.bad_searches), (2, 0));
    for query in &s.queries {
        let names: Vec<&str> = query.iter().map(|(k, _)| k.as_str()).collect();
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
    }
    let fields: std::collections::HashMap<_, _> = s.queries[0].iter().cloned().collect();
    assert_eq!(fields["maxSize"], "30");
    assert_eq!(fields["where[0][type]"], "contains");
    assert_eq!(fields["where[0][attribute]"], "phoneNumberNumeric");
    assert!(
        s.values
            .iter()
            .all(|v| v.chars().all(|c| c.is_ascii_digit() || c == '+')),
        "{:?}",
        s.values
    );
}

#[tokio::test]
async fn espocrm_finds_every_stored_format_of_a_primary_number_and_no_look_alike_opens() {
    use crate::phone_matrix::{assert_all, calls, people};
    use crate::test_crms::espocrm::Contact;
    let espo = EspoCrm::start("ak-matrix", "sk-matrix").await;
    espo.state.lock().unwrap().contacts.extend(
        people()
            .iter()
            .map(|p| Contact::new(&format!("m{}", p.id), &format!("P{}", p.id), &[p.stored])),
    );
    let gw = espo_gateway(&espo, "MATRIX", &[]).await;
    let client = gw.client();
    let mut results = Vec::new();
    for (caller, want) in calls() {
        let reply = client.post(gw.addr, None, &call_from(&caller)).await.json();
        let got = reply["url"].as_str().map(|url| {
            url.strip_prefix("https://crm.example.org/#Contact/view/m")
                .and_then(|id| id.parse().ok())
                .unwrap_or(0)
        });
        results.push((caller, want, got));
    }
    assert_all("EspoCRM", &results);
    assert_eq!(espo.state.lock().unwrap().bad_searches, 0);
}

#[tokio::test]
async fn espocrm_another_number_is_found_exactly_when_stored_in_e164_and_not_otherwise() {
    use crate::test_crms::espocrm::Contact;
    let espo = EspoCrm::start("ak-other", "sk-other").await;
    espo.state.lock().unwrap().contacts.extend([
        Contact::new("a1", "Other E164", &["+33 1 44 55 66 77", "+33698765401"]),
        Contact::new(
            "a2",
            "Other typed",
            &["+33 1 44 55 66 78", "06 98 76 54 02"],
        ),
    ]);
    let gw = espo_gateway(&espo, "OTHER", &[]).await;
    let client = gw.client();
    // The broad search offers the contact, its primary number is not the
    // caller's; the exact search on every number finds it.
    let reply = client.post(gw.addr, None, &call_from("0698765401")).await;
    assert_eq!(
        reply.json(),
        json!({"action":"open","event":"EventRinging",
               "url":"https://crm.example.org/#Contact/view/a1",
               "autopause":false,"title":"Other E164"})
    );
    // Stored another way, another number cannot be checked nor matched
    // exactly: none (the recipe says so).
    let reply = client.post(gw.addr, None, &call_from("0698765402")).await;
    assert_eq!(reply.json(), json!({"action":"none"}));
    let s = espo.state.lock().unwrap();
    assert_eq!(
        s.values,
        ["698765401", "+33698765401", "698765402", "+33698765402"]
    );
}

#[tokio::test]
async fn espocrm_test_crm_refuses_an_unknown_attribute_and_a_page_over_200() {
    let espo = EspoCrm::start("ak-strict", "sk-strict").await;
    for (tag, from, to) in [
        (
            "STRICT_ATTR",
            "\"phoneNumberNumeric\"",
            "\"phoneNumberDigits\"",
        ),
        ("STRICT_SIZE", "maxSize = \"30\"", "maxSize = \"300\""),
    ] {
        let gw = espo_gateway(&espo, tag, &[(from, to)]).await;
        let reply = gw.client().post(gw.addr, None, PAYLOAD).await;
        // The broad search refused, the exact one still finds Jeanne.
        assert_eq!(reply.json(), espo_opened(), "{tag}");
    }
    // Refused: 400 for the attribute, 403 for the page; answered: the two
    // exact look-ups.
    let s = espo.state.lock().unwrap();
    assert_eq!((s.bad_searches, s.lookups), (2, 2));
}

/// `examples/dolibarr.toml` against `doli`, its key renamed to
/// `TPGW_IT_DOLI_{tag}_KEY` and set to `key`.
async fn doli_gateway(
    doli: &Dolibarr,
    tag: &str,
    key: &str,
    swaps: &[(&str, &str)],
) -> TestGateway {
    let key_var = format!("TPGW_IT_DOLI_{tag}_KEY");
    std::env::set_var(&key_var, key);
    let api = format!("{}/api", doli.crm.url());
    let quoted_var = format!("\"{key_var}\"");
    let mut all = swaps.to_vec();
    all.extend_from_slice(&[
        ("https://erp.example.org/api", api.as_str()),
        ("\"DOLIBARR_API_KEY\"", quoted_var.as_str()),
    ]);
    start_gateway(&without_directory(&example_config("dolibarr.toml", &all))).await
}

fn doli_contact_opened() -> serde_json::Value {
    json!({"action":"open","event":"EventRinging",
           "url":"https://erp.example.org/contact/card.php?id=7",
           "autopause":false,"title":"Jeanne O'Neil"})
}

/// The criteria a look-up sends: each column LIKE `pattern`.
fn criteria(columns: &[&str], pattern: &str) -> Vec<Criterion> {
    columns
        .iter()
        .map(|c| (c.to_string(), "LIKE".to_owned(), pattern.to_owned()))
        .collect()
}

const CONTACT_COLUMNS: [&str; 4] = ["t.phone", "t.phone_mobile", "t.phone_perso", "t.fax"];
const THIRDPARTY_COLUMNS: [&str; 2] = ["t.phone", "t.fax"];

fn contact_criteria() -> Vec<Criterion> {
    criteria(&CONTACT_COLUMNS, "%6%1%2%3%4%5%6%7%8%")
}

#[tokio::test]
async fn dolibarr_example_finds_a_contact_typed_with_spaces_and_opens_its_card() {
    let doli = Dolibarr::start("doli-key-contact-5b1").await;
    let gw = doli_gateway(&doli, "CONTACT", "doli-key-contact-5b1", &[]).await;
    for _ in 0..2 {
        let reply = gw.client().post(gw.addr, None, PAYLOAD).await;
        assert_eq!(reply.json(), doli_contact_opened());
    }
    let s = doli.state.lock().unwrap();
    assert_eq!(
        (s.contact_lookups, s.thirdparty_lookups, s.refused),
        (2, 0, 0)
    );
    assert_eq!(s.filters[0].1, contact_criteria());
    let seen = doli.crm.seen();
    assert_eq!(seen[0].header("dolapikey"), Some("doli-key-contact-5b1"));
    assert!(seen[0].target.contains("&limit=30"), "{}", seen[0].target);
}

#[tokio::test]
async fn dolibarr_no_contact_404_falls_through_to_the_thirdparty_card() {
    let doli = Dolibarr::start("doli-key-company").await;
    let gw = doli_gateway(&doli, "COMPANY", "doli-key-company", &[]).await;
    let reply = gw
        .client()
        .post(gw.addr, None, &call_from("0298765432"))
        .await;
    assert_eq!(
        reply.json(),
        json!({"action":"open","event":"EventRinging",
               "url":"https://erp.example.org/societe/card.php?socid=3",
               "autopause":false,"title":"ACME SARL"})
    );
    let s = doli.state.lock().unwrap();
    assert_eq!((s.contact_lookups, s.thirdparty_lookups), (1, 1));
    assert_eq!(
        s.filters[1].1,
        criteria(&THIRDPARTY_COLUMNS, "%2%9%8%7%6%5%4%3%2%")
    );
    let statuses: Vec<_> = doli.crm.seen().iter().map(|r| r.target.clone()).collect();
    assert!(
        statuses[0].starts_with("/api/index.php/contacts?"),
        "{statuses:?}"
    );
}

#[tokio::test]
async fn dolibarr_unknown_caller_two_404s_give_none() {
    let doli = Dolibarr::start("doli-key-none").await;
    let gw = doli_gateway(&doli, "NONE", "doli-key-none", &[]).await;
    let reply = gw
        .client()
        .post(gw.addr, None, &call_from("0311223344"))
        .await;
    assert_eq!(reply.json(), json!({"action":"none"}));
    let s = doli.state.lock().unwrap();
    assert_eq!(
        (s.contact_lookups, s.thirdparty_lookups, s.bad_filters),
        (1, 1, 0)
    );
}

#[tokio::test]
async fn dolibarr_caller_in_any_shape_is_asked_as_its_significant_digits_and_matches() {
    let doli = Dolibarr::start("doli-key-shapes").await;
    let gw = doli_gateway(&doli, "SHAPES", "doli-key-shapes", &[]).await;
    for caller in [
        "+33612345678",
        "0033 6 12 34 56 78",
        "612345678",
        "+33 (0)6-12-34-56-78",
    ] {
        let reply = gw.client().post(gw.addr, None, &call_from(caller)).await;
        assert_eq!(reply.json(), doli_contact_opened(), "caller {caller}");
    }
    let s = doli.state.lock().unwrap();
    assert!(s.filters.iter().all(|f| f.1 == contact_criteria()));
}

#[tokio::test]
async fn dolibarr_wrong_api_key_is_401_on_both_lookups_and_gives_none() {
    let doli = Dolibarr::start("doli-key-right").await;
    let gw = doli_gateway(&doli, "WRONG", "doli-key-not-it", &[]).await;
    let reply = gw.client().post(gw.addr, None, PAYLOAD).await;
    assert_eq!(reply.json(), json!({"action":"none"}));
    let s = doli.state.lock().unwrap();
    assert_eq!(
        (s.refused, s.contact_lookups, s.thirdparty_lookups),
        (2, 0, 0)
    );
}

#[tokio::test]
async fn dolibarr_hostile_caller_reaches_the_filter_as_digits_and_wildcards_only() {
    let doli = Dolibarr::start("doli-key-hostile").await;
    let gw = doli_gateway(&doli, "HOSTILE", "doli-key-hostile", &[]).await;
    // Digits only where a number's are: the rest tries to close the string
    // and the criterion and add one that holds for every row.
    let hostile = r#"06') or (t.rowid:like:'%' "\%_12345678"#;
    let reply = gw.client().post(gw.addr, None, &call_from(hostile)).await;
    // Not a number: its digits are asked for (Jeanne's 06 12 34 56 78 is a
    // candidate), but no stored number is the caller's, so nobody opens.
    assert_eq!(reply.json(), json!({"action":"none"}));
    let s = doli.state.lock().unwrap();
    assert_eq!((s.bad_filters, s.sql_errors), (0, 0));
    assert_eq!(s.filters.len(), 2);
    let digits = "%0%6%1%2%3%4%5%6%7%8%";
    assert_eq!(s.filters[0].1, criteria(&CONTACT_COLUMNS, digits));
    assert_eq!(s.filters[1].1, criteria(&THIRDPARTY_COLUMNS, digits));
}

#[tokio::test]
async fn dolibarr_test_crm_refuses_a_filter_dolibarr_refuses() {
    // The raw caller in the filter: a parenthesis in it is refused (400).
    let doli = Dolibarr::start("doli-key-strict").await;
    let gw = doli_gateway(
        &doli,
        "STRICT",
        "doli-key-strict",
        &[(
            "((t.phone:like:'{{ p }}') or (t.fax:like:'{{ p }}'))\"",
            "(t.phone:like:'%{{ caller }}')\"",
        )],
    )
    .await;
    let reply = gw
        .client()
        .post(gw.addr, None, &call_from("02 98 (76) 54 32"))
        .await;
    assert_eq!(reply.json(), json!({"action":"none"}));
    let s = doli.state.lock().unwrap();
    assert_eq!(
        (s.contact_lookups, s.bad_filters, s.thirdparty_lookups),
        (1, 1, 0)
    );
}

/// Where each matrix person is stored in Dolibarr: contacts' four phone
/// columns and third parties' two, in turn.
fn doli_home(id: u32) -> (bool, &'static str) {
    const HOMES: [(bool, &str); 6] = [
        (true, "phone"),
        (true, "phone_mobile"),
        (true, "phone_perso"),
        (true, "fax"),
        (false, "phone"),
        (false, "fax"),
    ];
    HOMES[id as usize % HOMES.len()]
}

/// Matrix people's rowids: 1000 + their id.
const MATRIX_BASE: u32 = 1000;

/// Whose card opened, by the url's rowid (`Some(0)`: someone else's).
fn matrix_opened(reply: &Reply, contact_url: &str, thirdparty_url: &str) -> Option<u32> {
    let v = reply.json();
    if v["action"] == "none" {
        return None;
    }
    let url = v["url"].as_str().expect("an open reply has a url");
    let (contact, rowid) = if let Some(id) = url.strip_prefix(contact_url) {
        (true, id)
    } else if let Some(id) = url.strip_prefix(thirdparty_url) {
        (false, id)
    } else {
        return Some(0);
    };
    let id = rowid
        .parse::<u32>()
        .ok()
        .and_then(|r| r.checked_sub(MATRIX_BASE))
        .filter(|id| crate::phone_matrix::people().iter().any(|p| p.id == *id));
    match id {
        Some(id) if doli_home(id).0 == contact => Some(id),
        _ => Some(0),
    }
}

#[tokio::test]
async fn dolibarr_finds_every_stored_format_in_every_phone_column_and_no_look_alike_opens() {
    use crate::phone_matrix::{assert_all, calls, people};
    use crate::test_crms::dolibarr::{Contact, Thirdparty};
    let doli = Dolibarr::start("doli-key-matrix").await;
    {
        let mut s = doli.state.lock().unwrap();
        for p in people() {
            let (contact, column) = doli_home(p.id);
            let (id, stored, name) = (
                MATRIX_BASE + p.id,
                p.stored.to_owned(),
                format!("P{}", p.id),
            );
            if contact {
                let mut c = Contact {
                    id,
                    first: "M".into(),
                    last: name,
                    ..Contact::default()
                };
                match column {
                    "phone" => c.phone = stored,
                    "phone_mobile" => c.phone_mobile = stored,
                    "phone_perso" => c.phone_perso = stored,
                    _ => c.fax = stored,
                }
                s.contacts.push(c);
            } else {
                let mut t = Thirdparty {
                    id,
                    name,
                    ..Thirdparty::default()
                };
                match column {
                    "phone" => t.phone = stored,
                    _ => t.fax = stored,
                }
                s.thirdparties.push(t);
            }
        }
    }
    let gw = doli_gateway(&doli, "MATRIX", "doli-key-matrix", &[]).await;
    let client = gw.client();
    let mut results = Vec::new();
    for (caller, want) in calls() {
        let reply = client.post(gw.addr, None, &call_from(&caller)).await;
        let got = matrix_opened(
            &reply,
            "https://erp.example.org/contact/card.php?id=",
            "https://erp.example.org/societe/card.php?socid=",
        );
        results.push((caller, want, got));
    }
    assert_all("Dolibarr", &results);
    let s = doli.state.lock().unwrap();
    assert_eq!((s.bad_filters, s.sql_errors), (0, 0));
}

#[test]
fn check_reports_a_misspelt_binary_argument_at_its_column() {
    let legacy = LEGACY_LINE.trim_start_matches("# ");
    let text = example_config(
        "espocrm.toml",
        &[
            (LEGACY_LINE, ""),
            (HEX_LINE, &legacy.replace("binary=", "bianry=")),
        ],
    );
    let dir = tempfile::TempDir::new().unwrap();
    TestCa::new().write(dir.path());
    std::fs::write(dir.path().join("config.toml"), text).unwrap();
    let out = std::process::Command::new(binary())
        .current_dir(dir.path())
        .args(["check", "--config", "config.toml"])
        .env("ESPOCRM_API_KEY", "k")
        .env("ESPOCRM_SECRET_KEY", "s")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(
            r#"backends.espocrm.headers.X-Hmac-Authorization: unknown argument "bianry" of hmac_sha256 (did you mean "binary"?)"#
        ),
        "{stderr}"
    );
}

/// `examples/espocrm.toml` with its caller directory on, the first backend
/// renamed `tag` (its log lines its own), `swaps` applied.
async fn espo_directory_gateway(espo: &EspoCrm, tag: &str, swaps: &[(&str, &str)]) -> TestGateway {
    let (key, secret) = {
        let s = espo.state.lock().unwrap();
        (s.api_key.clone(), s.secret_key.clone())
    };
    let upper = tag.to_uppercase().replace('-', "_");
    let (key_var, secret_var) = (
        format!("TPGW_IT_ESPO_{upper}_KEY"),
        format!("TPGW_IT_ESPO_{upper}_SECRET"),
    );
    std::env::set_var(&key_var, key);
    std::env::set_var(&secret_var, secret);
    let api = espo.api_url();
    let (table, tables, route) = (
        format!("[backends.{tag}]"),
        format!("[backends.{tag}."),
        format!("backend = [\"{tag}\","),
    );
    let mut all = swaps.to_vec();
    all.extend_from_slice(&[
        ("https://crm.example.org/api/v1", api.as_str()),
        ("ESPOCRM_API_KEY", key_var.as_str()),
        ("ESPOCRM_SECRET_KEY", secret_var.as_str()),
        ("[backends.espocrm]", table.as_str()),
        ("[backends.espocrm.", tables.as_str()),
        ("backend = [\"espocrm\",", route.as_str()),
        ("pages_per_second = 2", "pages_per_second = 100"),
    ]);
    start_gateway(&example_config("espocrm.toml", &all)).await
}

fn espo_card(id: &str, name: &str) -> serde_json::Value {
    json!({"action":"open","event":"EventRinging",
           "url": format!("https://crm.example.org/#Contact/view/{id}"),
           "autopause":false,"title":name})
}

#[tokio::test]
async fn espocrm_full_sync_pages_by_id_and_known_callers_open_with_no_lookup() {
    use crate::phone_matrix::{assert_all, calls, people};
    use crate::recipe_vtiger::wait_log;
    use crate::test_crms::espocrm::Contact;
    let espo = EspoCrm::start("ak-dir-full", "sk-dir-full").await;
    espo.state.lock().unwrap().contacts.extend(
        people()
            .iter()
            .map(|p| Contact::new(&format!("m{:02}", p.id), &format!("P{}", p.id), &[p.stored])),
    );
    // A contact with a second number: a list shows only the primary one.
    espo.state.lock().unwrap().contacts.push(Contact::new(
        "m99",
        "Two Numbers",
        &["06 00 00 00 01", "+33600000002"],
    ));
    let total = espo.state.lock().unwrap().contacts.len();
    // Pages of 7, to see the offsets move.
    let gw =
        espo_directory_gateway(&espo, "espdfull", &[("page_size = 200", "page_size = 7")]).await;
    let pages = total / 7 + 1;
    wait_log(
        &[
            "backend=espdfull",
            "directory full sync",
            &format!("{total} record(s) in {pages} page(s)"),
        ],
        0,
    )
    .await;
    {
        let s = espo.state.lock().unwrap();
        assert_eq!((s.lookups, s.bad_searches, s.refused), (0, 0, 0));
        let offsets: Vec<String> = s
            .pages
            .iter()
            .map(|fields| {
                let get = |k: &str| {
                    fields
                        .iter()
                        .find(|(n, _)| n == k)
                        .map_or("", |(_, v)| v.as_str())
                };
                assert_eq!(
                    (get("orderBy"), get("order"), get("maxSize")),
                    ("id", "asc", "7")
                );
                assert_eq!(
                    (get("where[0][type]"), get("where[0][attribute]")),
                    ("isNotNull", "modifiedAt")
                );
                get("offset").to_owned()
            })
            .collect();
        let want: Vec<String> = (0..pages).map(|i| (i * 7).to_string()).collect();
        assert_eq!(offsets, want);
    }
    let client = gw.client();
    let mut results = Vec::new();
    for (caller, want) in calls() {
        let before = espo.state.lock().unwrap().lookups;
        let reply = client.post(gw.addr, None, &call_from(&caller)).await.json();
        let got = reply["url"].as_str().map(|url| {
            url.strip_prefix("https://crm.example.org/#Contact/view/m")
                .and_then(|id| id.parse().ok())
                .unwrap_or(0)
        });
        if want.is_some() {
            let after = espo.state.lock().unwrap().lookups;
            assert_eq!(after, before, "{caller}: answered from the index");
        }
        results.push((caller, want, got));
    }
    assert_all("EspoCRM's directory", &results);
    assert_eq!(
        client.post(gw.addr, None, PAYLOAD).await.json(),
        espo_opened()
    );
    // The primary number opens from the index; the second one is not in
    // it (EspoCRM lists no phoneNumberData): the live look-ups find it.
    let m99 = "https://crm.example.org/#Contact/view/m99";
    let before = espo.state.lock().unwrap().lookups;
    let reply = client
        .post(gw.addr, None, &call_from("0600000001"))
        .await
        .json();
    assert_eq!(reply["url"], m99);
    assert_eq!(espo.state.lock().unwrap().lookups, before);
    let reply = client
        .post(gw.addr, None, &call_from("0600000002"))
        .await
        .json();
    assert_eq!(reply["url"], m99);
    assert!(espo.state.lock().unwrap().lookups > before);
}

#[tokio::test]
async fn espocrm_edited_number_opens_after_the_next_incremental_sync_with_no_lookup() {
    use crate::recipe_vtiger::wait_log;
    let espo = EspoCrm::start("ak-dir-edit", "sk-dir-edit").await;
    let gw = espo_directory_gateway(&espo, "espdedit", &[("every_s = 60", "every_s = 1")]).await;
    wait_log(
        &["backend=espdedit", "directory full sync", "1 record(s)"],
        0,
    )
    .await;
    let client = gw.client();
    assert_eq!(
        client.post(gw.addr, None, PAYLOAD).await.json(),
        espo_opened()
    );

    // Jeanne's number changes: modifiedAt moves.
    espo.state
        .lock()
        .unwrap()
        .edit_numbers("6571f0a2c3b9d4e18", &["+33 6 11 11 11 11"]);
    let needles = ["backend=espdedit", "directory incremental sync"];
    let seen = wait_log(&needles, 0).await;
    wait_log(&needles, seen + 1).await;
    assert_eq!(
        client
            .post(gw.addr, None, &call_from("0611111111"))
            .await
            .json(),
        espo_card("6571f0a2c3b9d4e18", "Jeanne O'Neil")
    );
    let s = espo.state.lock().unwrap();
    assert_eq!(
        (s.lookups, s.bad_searches),
        (0, 0),
        "answered from the index"
    );
    let after: Vec<&Vec<(String, String)>> = s
        .pages
        .iter()
        .filter(|f| f.contains(&("where[0][type]".into(), "after".into())))
        .collect();
    assert!(!after.is_empty());
    assert!(log_lines("backend=espdedit")
        .iter()
        .all(|l| !l.contains("directory sync failed")));
}

/// `examples/dolibarr.toml` with its caller directory on, its backends
/// renamed `{tag}-contact` and `{tag}-thirdparty`, `swaps` applied.
async fn doli_directory_gateway(
    doli: &Dolibarr,
    tag: &str,
    key: &str,
    swaps: &[(&str, &str)],
) -> TestGateway {
    let key_var = format!("TPGW_IT_DOLI_{}_KEY", tag.to_uppercase().replace('-', "_"));
    std::env::set_var(&key_var, key);
    let api = format!("{}/api", doli.crm.url());
    let quoted_var = format!("\"{key_var}\"");
    let (contact, thirdparty) = (format!("{tag}-contact"), format!("{tag}-thirdparty"));
    let mut all = swaps.to_vec();
    all.extend_from_slice(&[
        ("https://erp.example.org/api", api.as_str()),
        ("\"DOLIBARR_API_KEY\"", quoted_var.as_str()),
        ("dolibarr-contact", contact.as_str()),
        ("dolibarr-thirdparty", thirdparty.as_str()),
        ("pages_per_second = 2", "pages_per_second = 100"),
    ]);
    start_gateway(&example_config("dolibarr.toml", &all)).await
}

#[tokio::test]
async fn dolibarr_full_sync_pages_by_rowid_to_the_404_past_the_end_and_opens_with_no_lookup() {
    use crate::recipe_vtiger::wait_log;
    use crate::test_crms::dolibarr::Contact;
    let doli = Dolibarr::start("doli-key-dir-full").await;
    doli.state
        .lock()
        .unwrap()
        .contacts
        .extend((1..=3).map(|i| Contact {
            id: 100 + i,
            first: "C".into(),
            last: i.to_string(),
            phone_perso: format!("+33 1 44 55 66 0{i}"),
            ..Contact::default()
        }));
    // Pages of 2: four contacts fill two, and the third is Dolibarr's 404.
    let gw = doli_directory_gateway(
        &doli,
        "dolidfull",
        "doli-key-dir-full",
        &[("page_size = 100", "page_size = 2")],
    )
    .await;
    wait_log(
        &[
            "backend=dolidfull-contact",
            "directory full sync",
            "4 record(s) in 3 page(s)",
        ],
        0,
    )
    .await;
    wait_log(
        &[
            "backend=dolidfull-thirdparty",
            "directory full sync",
            "1 record(s) in 1 page(s)",
        ],
        0,
    )
    .await;
    {
        let s = doli.state.lock().unwrap();
        assert_eq!(
            (
                s.contact_lookups,
                s.thirdparty_lookups,
                s.refused,
                s.bad_filters,
                s.sql_errors
            ),
            (0, 0, 0, 0, 0)
        );
        let contact_pages: Vec<String> = s
            .pages
            .iter()
            .filter(|f| f.contains(&("resource".into(), "contacts".into())))
            .map(|f| {
                assert!(f.contains(&("sortfield".into(), "t.rowid".into())), "{f:?}");
                assert!(f.contains(&("sqlfilters".into(), String::new())), "{f:?}");
                f.iter().find(|(k, _)| k == "page").unwrap().1.clone()
            })
            .collect();
        assert_eq!(contact_pages, ["0", "1", "2"]);
    }
    let client = gw.client();
    assert_eq!(
        client.post(gw.addr, None, PAYLOAD).await.json(),
        doli_contact_opened()
    );
    assert_eq!(
        client
            .post(gw.addr, None, &call_from("+33144556603"))
            .await
            .json(),
        json!({"action":"open","event":"EventRinging",
               "url":"https://erp.example.org/contact/card.php?id=103",
               "autopause":false,"title":"C 3"})
    );
    // A third party: the contacts' index does not know it, so contacts are
    // asked live (404), then the third parties' index answers.
    let reply = client.post(gw.addr, None, &call_from("0298765432")).await;
    assert_eq!(
        reply.json(),
        json!({"action":"open","event":"EventRinging",
               "url":"https://erp.example.org/societe/card.php?socid=3",
               "autopause":false,"title":"ACME SARL"})
    );
    let s = doli.state.lock().unwrap();
    assert_eq!((s.contact_lookups, s.thirdparty_lookups), (1, 0));
}

#[tokio::test]
async fn dolibarr_edited_number_opens_after_the_next_incremental_sync_and_no_change_is_a_404_not_a_failure(
) {
    use crate::recipe_vtiger::wait_log;
    let doli = Dolibarr::start("doli-key-dir-edit").await;
    let gw = doli_directory_gateway(
        &doli,
        "dolidedit",
        "doli-key-dir-edit",
        &[("every_s = 60", "every_s = 1")],
    )
    .await;
    wait_log(
        &[
            "backend=dolidedit-contact",
            "directory full sync",
            "1 record(s)",
        ],
        0,
    )
    .await;
    let client = gw.client();
    assert_eq!(
        client.post(gw.addr, None, PAYLOAD).await.json(),
        doli_contact_opened()
    );

    doli.state
        .lock()
        .unwrap()
        .edit_contact(7, |c| c.phone_mobile = "+33 6 11 11 11 11".into());
    let needles = ["backend=dolidedit-contact", "directory incremental sync"];
    let seen = wait_log(&needles, 0).await;
    wait_log(&needles, seen + 1).await;
    assert_eq!(
        client
            .post(gw.addr, None, &call_from("0611111111"))
            .await
            .json(),
        doli_contact_opened()
    );
    let s = doli.state.lock().unwrap();
    assert_eq!(
        (s.contact_lookups, s.bad_filters, s.sql_errors),
        (0, 0, 0),
        "answered from the index"
    );
    let since: Vec<&str> = s
        .filters
        .iter()
        .flat_map(|(_, c)| c)
        .filter(|(f, op, _)| f == "t.tms" && op == ">")
        .map(|(_, _, v)| v.as_str())
        .collect();
    assert!(!since.is_empty());
    assert!(
        since
            .iter()
            .all(|v| v.len() == 14 && v.bytes().all(|b| b.is_ascii_digit())),
        "{since:?}"
    );
    // The third parties' incremental syncs find nothing: Dolibarr's 404,
    // read as no records, never a failed sync.
    assert!(log_lines("backend=dolidedit-")
        .iter()
        .all(|l| !l.contains("directory sync failed")));
}

#[tokio::test]
async fn espocrm_refuses_a_page_over_200_and_a_since_it_cannot_read_and_the_index_stays() {
    use crate::recipe_vtiger::wait_log;
    let espo = EspoCrm::start("ak-dir-strict", "sk-dir-strict").await;
    let _big =
        espo_directory_gateway(&espo, "espdbig", &[("page_size = 200", "page_size = 201")]).await;
    wait_log(&["backend=espdbig", "directory sync failed", "HTTP 403"], 0).await;
    let iso = [
        ("every_s = 60", "every_s = 1"),
        (
            "since_format = \"[year]-[month]-[day] [hour]:[minute]:[second]\"",
            "since_format = \"[year]-[month]-[day]T[hour]:[minute]:[second]Z\"",
        ),
    ];
    let gw = espo_directory_gateway(&espo, "espdiso", &iso).await;
    wait_log(
        &["backend=espdiso", "directory full sync", "1 record(s)"],
        0,
    )
    .await;
    wait_log(&["backend=espdiso", "directory sync failed", "HTTP 400"], 0).await;
    // The full sync's index still answers.
    let before = espo.state.lock().unwrap().lookups;
    assert_eq!(
        gw.client().post(gw.addr, None, PAYLOAD).await.json(),
        espo_opened()
    );
    assert_eq!(espo.state.lock().unwrap().lookups, before);
}

#[tokio::test]
async fn dolibarr_refuses_a_since_written_with_colons_and_the_index_stays() {
    use crate::recipe_vtiger::wait_log;
    let doli = Dolibarr::start("doli-key-dir-colons").await;
    let colons = [
        ("every_s = 60", "every_s = 1"),
        (
            "since_format = \"[year][month][day][hour][minute][second]\"",
            "since_format = \"[year]-[month]-[day] [hour]:[minute]:[second]\"",
        ),
    ];
    let gw = doli_directory_gateway(&doli, "dolidcolon", "doli-key-dir-colons", &colons).await;
    wait_log(
        &[
            "backend=dolidcolon-contact",
            "directory full sync",
            "1 record(s)",
        ],
        0,
    )
    .await;
    // Dolibarr cuts '2026-12-07 14:00:00' at its first colon.
    wait_log(
        &[
            "backend=dolidcolon-contact",
            "directory sync failed",
            "HTTP 503",
        ],
        0,
    )
    .await;
    assert_eq!(
        gw.client().post(gw.addr, None, PAYLOAD).await.json(),
        doli_contact_opened()
    );
    let s = doli.state.lock().unwrap();
    assert_eq!(s.contact_lookups, 0);
    assert!(s.sql_errors > 0);
}
