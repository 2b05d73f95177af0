//! `examples/sugarcrm.toml` against a strict Sugar v4_1 REST API and
//! `examples/suitecrm8.toml` against a strict SuiteCRM V8 JSON:API with its
//! OAuth2 token endpoint: a cold call logs in (or mints) then opens the
//! contact's card, later calls reuse the session or token, one the CRM
//! dropped is renewed once, an unknown caller gets none, callers in other
//! shapes still match, and hostile callers cannot change the query. Each
//! recipe also runs the caller-match matrix (`phone_matrix`): every stored
//! shape found from every caller shape, no look-alike's card, and names
//! the CRM hands back HTML-encoded shown as typed. `examples/suitecrm7.toml`
//! is run as the SuiteCRM 8 one, with SuiteCRM 7's card address.
//!
//! The recipes' caller directory runs in tests of its own: a full sync
//! pages through the CRM and the matrix then opens with no look-up, an
//! edit arrives with the next incremental sync. Every other test runs the
//! recipe with its directory section cut out (`live_only`), so what it
//! counts is the live look-up's, whatever a sync would have done meanwhile.
//!
//! Each test gives its secret a variable name of its own (swapped into the
//! example), so tests running at once never read each other's value.

use serde_json::{json, Value};

use crate::examples::example_config;
use crate::phone_matrix::{assert_all, calls, people};
use crate::support::*;
use crate::test_crms::sugar::{self, saved_text, Sugar, PHONES};
use crate::test_crms::suitecrm8::{self, php_query, SuiteCrm8};
use crate::test_crms::{fields, PAYLOAD};

const SUGAR_USER: &str = "gateway";
const JEANNE_SUGAR: &str =
    "https://crm.example.org/index.php?module=Contacts&action=DetailView&record=1b7c3a52-4d1e-9f0a-6c2b-5e8d7f9a0b1c";
const JEANNE_SUITE: &str =
    "https://crm.example.org/#/contacts/record/8d2e6f10-3a4b-4c5d-9e8f-0a1b2c3d4e5f";
const CLIENT_ID: &str = "5d0c6d2e-8f5a-4c3b-9e1d-2b7a9c4e1f00";

fn call(caller: &str) -> String {
    PAYLOAD.replace("\"0612345678\"", &serde_json::to_string(caller).unwrap())
}

fn opened(url: &str, title: &str) -> Value {
    json!({"action": "open", "event": "EventRinging", "url": url, "autopause": false, "title": title})
}

/// An example's text without its `[backends.NAME.directory]` table: the
/// live look-up alone.
pub fn live_only(text: &str) -> String {
    let mut out = String::new();
    let mut skipping = false;
    for line in text.lines() {
        if line.starts_with('[') {
            skipping = line.starts_with("[backends.") && line.ends_with(".directory]");
        }
        if !skipping {
            out.push_str(line);
            out.push('\n');
        }
    }
    assert!(out.len() < text.len(), "no directory table to cut");
    out
}

/// Waits (at most 30 s) for a log line holding every needle, after `skip`
/// such lines; returns how many there are now.
pub async fn wait_log(needles: &[&str], skip: usize) -> usize {
    for _ in 0..600 {
        let lines: Vec<String> = log_lines(needles[0])
            .into_iter()
            .filter(|l| needles.iter().all(|n| l.contains(n)))
            .collect();
        if lines.len() > skip {
            return lines.len();
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("no log line with {needles:?}");
}

/// Waits for two more incremental syncs of `backend` than now: one that
/// began after the caller's edit, whatever was running.
pub async fn two_more_incremental_syncs(backend: &str) {
    let needle = format!("backend={backend}");
    let needles = [needle.as_str(), "directory incremental sync"];
    let seen = log_lines(needles[0])
        .iter()
        .filter(|l| l.contains(needles[1]))
        .count();
    wait_log(&needles, seen + 1).await;
}

/// How long ago `when` (UTC, `YYYY-MM-DD HH:MM:SS`) was, in seconds.
pub fn seconds_ago(when: &str) -> i64 {
    let format = time::format_description::parse_borrowed::<2>(
        "[year]-[month]-[day] [hour]:[minute]:[second]",
    )
    .unwrap();
    let t = time::PrimitiveDateTime::parse(when, &format)
        .unwrap_or_else(|e| panic!("{when}: {e}"))
        .assume_utc();
    (time::OffsetDateTime::now_utc() - t).whole_seconds()
}

/// The Sugar example's text against `sugar`, its password read from `var`.
fn sugar_text(sugar: &Sugar, var: &str, password: &str) -> String {
    std::env::set_var(var, password);
    let quoted = format!("\"{var}\"");
    example_config(
        "sugarcrm.toml",
        &[
            (
                "https://crm.example.org/service/v4_1/rest.php",
                &sugar.url(),
            ),
            ("\"SUGAR_PASSWORD\"", &quoted),
        ],
    )
}

/// The Sugar example without its directory against `sugar`.
async fn sugar_gateway(sugar: &Sugar, var: &str, password: &str) -> TestGateway {
    start_gateway(&live_only(&sugar_text(sugar, var, password))).await
}

/// The Sugar example with its directory, the backend named `name` (for
/// its log lines), syncing every second, pages of `page_size`.
async fn sugar_directory_gateway(
    sugar: &Sugar,
    var: &str,
    password: &str,
    name: &str,
    page_size: usize,
) -> TestGateway {
    let text = sugar_text(sugar, var, password)
        .replace("backends.sugar", &format!("backends.{name}"))
        .replace("backend = \"sugar\"", &format!("backend = \"{name}\""))
        .replace("every_s = 60\n", "every_s = 1\n")
        .replace("pages_per_second = 2\n", "pages_per_second = 1000\n")
        .replace("page_size = 200\n", &format!("page_size = {page_size}\n"));
    assert!(text.contains("every_s = 1\n") && text.contains("pages_per_second = 1000"));
    start_gateway(&text).await
}

/// The `rest_data` of every `get_entry_list` the CRM received.
fn entry_list_calls(sugar: &Sugar) -> Vec<Value> {
    sugar
        .crm
        .seen()
        .iter()
        .map(|s| fields(&s.text()))
        .filter(|f| f.get("method").map(String::as_str) == Some("get_entry_list"))
        .map(|f| serde_json::from_str(&f["rest_data"]).unwrap())
        .collect()
}

#[tokio::test]
async fn sugar_example_logs_in_once_then_opens_the_contact_for_every_caller_shape() {
    let sugar = Sugar::start(SUGAR_USER, "pw-shapes-1").await;
    let gw = sugar_gateway(&sugar, "SUGAR_RECIPE_PW_SHAPES", "pw-shapes-1").await;
    let client = gw.client();
    for caller in [
        "0612345678",
        "+33612345678",
        "0033 6 12 34 56 78",
        "612345678",
    ] {
        let reply = client.post(gw.addr, None, &call(caller)).await;
        assert_eq!(
            reply.json(),
            opened(JEANNE_SUGAR, "Jeanne O'Neil"),
            "{caller}"
        );
    }
    // A contact found by its mobile, typed another way.
    let reply = client.post(gw.addr, None, &call("+33 6 98 76 54 32")).await;
    assert_eq!(
        reply.json(),
        opened(
            "https://crm.example.org/index.php?module=Contacts&action=DetailView&record=2c8d4b63-5e2f-a01b-7d3c-6f9e8a0b1c2d",
            "Paul Durand"
        )
    );
    {
        let s = sugar.state.lock().unwrap();
        assert_eq!((s.logins, s.failed_logins, s.lookups), (1, 0, 5));
        let like = " LIKE '%6%1%2%3%4%5%6%7%8%'";
        assert_eq!(
            s.queries[0],
            format!(
                "contacts.phone_home{like} OR contacts.phone_mobile{like} OR contacts.phone_work{like} \
                 OR contacts.phone_other{like} OR contacts.phone_fax{like}"
            )
        );
    }
    let login = fields(&sugar.crm.seen()[0].text());
    assert_eq!(login["method"], "login");
    let rest: Value = serde_json::from_str(&login["rest_data"]).unwrap();
    assert_eq!(
        rest["user_auth"]["password"],
        crate::test_crms::md5_hex("pw-shapes-1")
    );
    let lookup = &entry_list_calls(&sugar)[0];
    assert_eq!(lookup["module_name"], "Contacts");
    assert_eq!(
        lookup["select_fields"],
        json!([
            "id",
            "first_name",
            "last_name",
            "phone_home",
            "phone_mobile",
            "phone_work",
            "phone_other",
            "phone_fax"
        ])
    );
    assert_eq!(lookup["max_results"], 50);
}

#[tokio::test]
async fn sugar_session_the_crm_dropped_is_renewed_by_one_login_and_the_call_opens() {
    let sugar = Sugar::start(SUGAR_USER, "pw-drop-2").await;
    let gw = sugar_gateway(&sugar, "SUGAR_RECIPE_PW_DROP", "pw-drop-2").await;
    let client = gw.client();
    let reply = client.post(gw.addr, None, &call("0612345678")).await;
    assert_eq!(reply.json(), opened(JEANNE_SUGAR, "Jeanne O'Neil"));
    sugar.state.lock().unwrap().expire_sessions();
    let reply = client.post(gw.addr, None, &call("0612345678")).await;
    assert_eq!(reply.json(), opened(JEANNE_SUGAR, "Jeanne O'Neil"));
    let reply = client.post(gw.addr, None, &call("0612345678")).await;
    assert_eq!(reply.json(), opened(JEANNE_SUGAR, "Jeanne O'Neil"));
    let s = sugar.state.lock().unwrap();
    assert_eq!((s.logins, s.refused_sessions, s.lookups), (2, 1, 3));
    let sessions: Vec<Value> = entry_list_calls(&sugar)
        .iter()
        .map(|r| r["session"].clone())
        .collect();
    assert_eq!(
        sessions[0], sessions[1],
        "the dropped session was tried once"
    );
    assert_ne!(sessions[1], sessions[2]);
    assert_eq!(sessions[2], sessions[3]);
}

#[tokio::test]
async fn sugar_unknown_caller_gets_none_and_a_wrong_password_gets_none_without_look_up() {
    let sugar = Sugar::start(SUGAR_USER, "pw-none-3").await;
    let gw = sugar_gateway(&sugar, "SUGAR_RECIPE_PW_NONE", "pw-none-3").await;
    let reply = gw.client().post(gw.addr, None, &call("0298765432")).await;
    assert_eq!(reply.json(), json!({"action": "none"}));
    assert_eq!(sugar.state.lock().unwrap().logins, 1);

    let sugar = Sugar::start(SUGAR_USER, "the-real-password").await;
    let gw = sugar_gateway(&sugar, "SUGAR_RECIPE_PW_WRONG", "not-the-password").await;
    let reply = gw.client().post(gw.addr, None, &call("0612345678")).await;
    assert_eq!(reply.json(), json!({"action": "none"}));
    let s = sugar.state.lock().unwrap();
    assert_eq!((s.logins, s.failed_logins, s.lookups), (0, 1, 0));
}

#[tokio::test]
async fn sugar_hostile_callers_stay_inside_their_sql_strings() {
    let sugar = Sugar::start(SUGAR_USER, "pw-hostile-4").await;
    let gw = sugar_gateway(&sugar, "SUGAR_RECIPE_PW_HOSTILE", "pw-hostile-4").await;
    let client = gw.client();
    // A number with junk around it is read as the digits it has: a valid
    // number finds its contact, the rest nothing; never another row.
    let jeanne = opened(JEANNE_SUGAR, "Jeanne O'Neil");
    let none = json!({"action": "none"});
    let hostile = [
        ("0612345678' OR '1'='1", &none),
        ("0612345678\\' OR 1=1 -- ", &none),
        ("06123456%", &none),
        ("0612345_78", &none),
        ("0612345678\" OR \"\"=\"", &none),
        ("')) OR contacts.id IN (('0612345678", &none),
    ];
    for (caller, want) in hostile {
        let reply = client.post(gw.addr, None, &call(caller)).await;
        assert_eq!(&reply.json(), want, "{caller:?}");
    }
    {
        let s = sugar.state.lock().unwrap();
        // Every fragment parsed as the recipe wrote it, and only compared phone
        // columns with patterns of digits: nothing a caller typed became SQL.
        assert_eq!((s.refused_queries, s.lookups), (0, hostile.len()));
        for (query, values) in s.queries.iter().zip(&s.compared) {
            assert_eq!(values.len(), 5, "{query}");
            assert!(
                values
                    .iter()
                    .all(|v| v.chars().all(|c| c.is_ascii_digit() || c == '%')),
                "{query}"
            );
        }
    }

    // Without the phone filters the caller's text itself reaches the SQL:
    // sql_quote and tojson still keep it one string, compared as typed.
    let raw = Sugar::start(SUGAR_USER, "pw-hostile-raw-5").await;
    std::env::set_var("SUGAR_RECIPE_PW_HOSTILE_RAW", "pw-hostile-raw-5");
    let text = example_config(
        "sugarcrm.toml",
        &[
            ("https://crm.example.org/service/v4_1/rest.php", &raw.url()),
            ("\"SUGAR_PASSWORD\"", "\"SUGAR_RECIPE_PW_HOSTILE_RAW\""),
            ("caller | phone_like | sql_quote", "caller | sql_quote"),
        ],
    );
    let gw = start_gateway(&live_only(&text)).await;
    let callers = [
        "0612345678' OR '1'='1",
        "0612345678\\' OR 1=1 -- ",
        "0612345678\\",
        "06123456%_\"}, \"query\": \"1=1",
        "')) OR contacts.id IN (('0612345678",
        "+33 6 12 34 56 78",
    ];
    for caller in callers {
        let reply = gw.client().post(gw.addr, None, &call(caller)).await;
        let want = if caller.starts_with('+') {
            &jeanne
        } else {
            &none
        };
        assert_eq!(&reply.json(), want, "{caller:?}");
    }
    let s = raw.state.lock().unwrap();
    assert_eq!((s.refused_queries, s.lookups), (0, callers.len()));
    for (caller, values) in callers.iter().zip(&s.compared) {
        assert_eq!(values, &vec![caller.to_string(); 5]);
    }
}

/// The SuiteCRM 8 example against `suite`, its client secret read from `var`.
async fn suite_gateway(suite: &SuiteCrm8, var: &str, secret: &str) -> TestGateway {
    suite_example_gateway("suitecrm8.toml", suite, var, secret).await
}

/// A SuiteCRM example (`suitecrm8.toml`, `suitecrm7.toml`) against `suite`.
async fn suite_example_gateway(
    example: &str,
    suite: &SuiteCrm8,
    var: &str,
    secret: &str,
) -> TestGateway {
    start_gateway(&live_only(&suite_text(example, suite, var, secret))).await
}

/// A SuiteCRM example's text against `suite`.
fn suite_text(example: &str, suite: &SuiteCrm8, var: &str, secret: &str) -> String {
    std::env::set_var(var, secret);
    let base = format!("{}/Api", suite.crm.url());
    let quoted = format!("\"{var}\"");
    example_config(
        example,
        &[
            ("https://crm.example.org/Api", &base),
            ("\"SUITECRM_CLIENT_SECRET\"", &quoted),
        ],
    )
}

#[tokio::test]
async fn suitecrm8_example_mints_once_then_opens_the_contact_for_every_caller_shape() {
    let suite = SuiteCrm8::start(CLIENT_ID, "s3cr+t:/shapes").await;
    let gw = suite_gateway(&suite, "SUITE_RECIPE_SECRET_SHAPES", "s3cr+t:/shapes").await;
    let client = gw.client();
    for caller in [
        "0612345678",
        "+33612345678",
        "0033 6 12 34 56 78",
        "612345678",
    ] {
        let reply = client.post(gw.addr, None, &call(caller)).await;
        assert_eq!(
            reply.json(),
            opened(JEANNE_SUITE, "Jeanne O'Neil"),
            "{caller}"
        );
    }
    let reply = client.post(gw.addr, None, &call("+33698765432")).await;
    assert_eq!(
        reply.json(),
        opened(
            "https://crm.example.org/#/contacts/record/9e3f7021-4b5c-4d6e-8f90-1b2c3d4e5f60",
            "Paul Durand"
        )
    );
    let s = suite.state.lock().unwrap();
    assert_eq!(
        (s.mints, s.refused_mints, s.lookups, s.refused),
        (1, 0, 5, 0)
    );
    let like = json!({"like": "%6%1%2%3%4%5%6%7%8%"});
    assert_eq!(
        s.queries[0],
        json!({
            "filter": {
                "operator": "or",
                "phone_home": like,
                "phone_mobile": like,
                "phone_work": like,
                "phone_other": like,
                "phone_fax": like,
            },
            "fields": {"Contacts": "first_name,last_name,phone_home,phone_mobile,phone_work,phone_other,phone_fax"},
            "page": {"size": "50"},
        })
    );
    let seen = suite.crm.seen();
    let token_form = fields(&seen[0].text());
    assert_eq!(token_form["grant_type"], "client_credentials");
    assert_eq!(token_form["client_id"], CLIENT_ID);
    assert!(seen[0].header("authorization").is_none());
    assert_eq!(seen[1].header("accept"), Some("application/vnd.api+json"));
}

#[tokio::test]
async fn suitecrm8_expired_token_is_renewed_by_one_mint_and_the_call_opens() {
    let suite = SuiteCrm8::start(CLIENT_ID, "secret-expiry").await;
    let gw = suite_gateway(&suite, "SUITE_RECIPE_SECRET_EXPIRY", "secret-expiry").await;
    let client = gw.client();
    let reply = client.post(gw.addr, None, &call("0612345678")).await;
    assert_eq!(reply.json(), opened(JEANNE_SUITE, "Jeanne O'Neil"));
    suite.state.lock().unwrap().expire_tokens();
    let reply = client.post(gw.addr, None, &call("0612345678")).await;
    assert_eq!(reply.json(), opened(JEANNE_SUITE, "Jeanne O'Neil"));
    let reply = client.post(gw.addr, None, &call("0612345678")).await;
    assert_eq!(reply.json(), opened(JEANNE_SUITE, "Jeanne O'Neil"));
    let s = suite.state.lock().unwrap();
    assert_eq!((s.mints, s.refused, s.lookups), (2, 1, 3));
}

#[tokio::test]
async fn suitecrm8_unknown_caller_gets_none_and_a_wrong_secret_gets_none_without_look_up() {
    let suite = SuiteCrm8::start(CLIENT_ID, "secret-none").await;
    let gw = suite_gateway(&suite, "SUITE_RECIPE_SECRET_NONE", "secret-none").await;
    let reply = gw.client().post(gw.addr, None, &call("0298765432")).await;
    assert_eq!(reply.json(), json!({"action": "none"}));
    {
        let s = suite.state.lock().unwrap();
        assert_eq!((s.mints, s.lookups), (1, 1));
    }

    let suite = SuiteCrm8::start(CLIENT_ID, "the-real-secret").await;
    let gw = suite_gateway(&suite, "SUITE_RECIPE_SECRET_WRONG", "not-the-secret").await;
    let reply = gw.client().post(gw.addr, None, &call("0612345678")).await;
    assert_eq!(reply.json(), json!({"action": "none"}));
    let s = suite.state.lock().unwrap();
    assert_eq!((s.mints, s.refused_mints, s.lookups), (0, 1, 0));
}

#[tokio::test]
async fn suitecrm8_hostile_callers_cannot_add_or_change_query_parameters() {
    let suite = SuiteCrm8::start(CLIENT_ID, "secret-hostile").await;
    let gw = suite_gateway(&suite, "SUITE_RECIPE_SECRET_HOSTILE", "secret-hostile").await;
    let client = gw.client();
    let jeanne = opened(JEANNE_SUITE, "Jeanne O'Neil");
    let none = json!({"action": "none"});
    let hostile = [
        ("0612345678' OR '1'='1", &none),
        ("0612345678\\", &none),
        ("06123456%_", &none),
        ("0612345678\"", &none),
        (
            "06 12 34 56 78&filter[operator]=and&filter[id][neq]=x",
            &none,
        ),
        ("0612345678#x", &none),
    ];
    for (caller, want) in hostile {
        let reply = client.post(gw.addr, None, &call(caller)).await;
        assert_eq!(&reply.json(), want, "{caller:?}");
    }
    {
        let s = suite.state.lock().unwrap();
        assert_eq!(s.lookups, hostile.len());
        for query in &s.queries {
            let filter = &query["filter"];
            assert_eq!(filter["operator"], "or", "{query}");
            let keys: Vec<&String> = filter.as_object().unwrap().keys().collect();
            assert_eq!(
                keys,
                [
                    "operator",
                    "phone_fax",
                    "phone_home",
                    "phone_mobile",
                    "phone_other",
                    "phone_work"
                ],
                "{query}"
            );
            let value = filter["phone_work"]["like"].as_str().unwrap();
            assert!(
                value.chars().all(|c| c.is_ascii_digit() || c == '%'),
                "{query}"
            );
            for field in ["phone_home", "phone_mobile", "phone_other", "phone_fax"] {
                assert_eq!(filter[field], json!({ "like": value }), "{query}");
            }
        }
    }

    // Without the phone filter the caller's text itself is the filter
    // value: percent-encoded, it stays one value of one parameter.
    let raw = SuiteCrm8::start(CLIENT_ID, "secret-hostile-raw").await;
    std::env::set_var("SUITE_RECIPE_SECRET_HOSTILE_RAW", "secret-hostile-raw");
    let text = example_config(
        "suitecrm8.toml",
        &[
            (
                "https://crm.example.org/Api",
                &format!("{}/Api", raw.crm.url()),
            ),
            (
                "\"SUITECRM_CLIENT_SECRET\"",
                "\"SUITE_RECIPE_SECRET_HOSTILE_RAW\"",
            ),
            ("{{ caller | phone_like }}", "{{ caller }}"),
        ],
    );
    let gw = start_gateway(&live_only(&text)).await;
    let callers = [
        "0612345678' OR '1'='1",
        "0612345678\\",
        "06123456%_",
        "0612345678&filter[operator]=and&filter[id][neq]=x",
        "0612345678#x",
        "06 12 34 56 78",
    ];
    for caller in callers {
        let reply = gw.client().post(gw.addr, None, &call(caller)).await;
        let want = if caller == "06 12 34 56 78" {
            &jeanne
        } else {
            &none
        };
        assert_eq!(&reply.json(), want, "{caller:?}");
    }
    let s = raw.state.lock().unwrap();
    assert_eq!(s.lookups, callers.len());
    for (caller, query) in callers.iter().zip(&s.queries) {
        let filter = &query["filter"];
        assert_eq!(filter["operator"], "or", "{query}");
        assert_eq!(filter.as_object().unwrap().len(), 6, "{query}");
        for field in [
            "phone_home",
            "phone_mobile",
            "phone_work",
            "phone_other",
            "phone_fax",
        ] {
            assert_eq!(filter[field], json!({ "like": caller }), "{query}");
        }
    }

    // The parser reads nested keys as PHP does.
    assert_eq!(
        php_query("filter%5Ba%5D%5Beq%5D=1&x=2"),
        json!({"filter": {"a": {"eq": "1"}}, "x": "2"})
    );
}

/// SuiteCRM 7's card address, and SuiteCRM 8's, before the record id.
const SUITE7_CARD: &str =
    "https://crm.example.org/index.php?module=Contacts&action=DetailView&record=";
const SUITE8_CARD: &str = "https://crm.example.org/#/contacts/record/";

/// The id a matrix person has in the test CRMs: a uuid ending in its number.
fn matrix_id(id: u32) -> String {
    format!("{id:08x}-5a5a-4b4b-8c8c-{id:012x}")
}

/// Whose card a reply opened (`None` for none), read from the id at the
/// end of a url that must start with `card`.
fn matrix_person(reply: &Reply, card: &str) -> Option<u32> {
    let v = reply.json();
    if v == json!({"action": "none"}) {
        return None;
    }
    let url = v["url"].as_str().expect("an open reply has a url");
    let id = url.strip_prefix(card).unwrap_or_else(|| panic!("{url}"));
    u32::from_str_radix(&id[id.len() - 12..], 16).ok()
}

/// The phone field person `id` keeps its number in: each field in turn.
fn matrix_field(id: u32) -> &'static str {
    PHONES[id as usize % PHONES.len()]
}

/// Names holding what Sugar and SuiteCRM encode, each with its number.
const NAMES: [(&str, &str, &str); 3] = [
    ("Zoë", "D'Artagnan & Fils", "+33 6 11 22 33 01"),
    ("Lou \"Le Roi\"", "<3 Ça & Œuvre", "06.11.22.33.02"),
    ("Jean-Noël", "Dupré-L'Hôte > 2", "0033 6 11 22 33 03"),
];

#[test]
fn the_test_crms_store_names_as_suitecrm_7_14_saves_them() {
    // What PHP 8.2's htmlentities over HTMLPurifier's output (purify_html)
    // stores for these names.
    for (typed, stored) in [
        (
            "Zoë D'Artagnan & Fils",
            "Zo&euml; D&#039;Artagnan &amp;amp; Fils",
        ),
        (
            "Lou \"Le Roi\" <3 Ça",
            "Lou &quot;Le Roi&quot; &amp;lt;3 &Ccedil;a",
        ),
        (
            "Noël > 2 < 3 & Œuvre",
            "No&euml;l &amp;gt; 2 &amp;lt; 3 &amp;amp; &OElig;uvre",
        ),
        ("+33 (0)6 12 34 56 82", "+33 (0)6 12 34 56 82"),
        (
            "+33 1 23 45 67 91 / 06 12 34 56 92",
            "+33 1 23 45 67 91 / 06 12 34 56 92",
        ),
    ] {
        assert_eq!(saved_text(typed), stored, "{typed}");
    }
    // MySQL LIKE: wildcards, escapes, case.
    for (text, pattern, want) in [
        ("+33 (0)6 12 34 56 82", "%6%1%2%3%4%5%6%8%2%", true),
        ("+33 (0)6 12 34 56 82", "%6%1%2%3%4%5%6%8%3%", false),
        ("06 12", "06_12", true),
        ("06  12", "06_12", false),
        ("50%", "50\\%", true),
        ("500", "50\\%", false),
        ("Mobile", "%MOBILE", true),
        ("", "%", true),
    ] {
        assert_eq!(
            sugar::mysql_like(text, pattern),
            want,
            "{text} LIKE {pattern}"
        );
    }
}

#[tokio::test]
async fn sugar_example_finds_every_stored_shape_from_every_caller_shape_and_no_look_alike() {
    // Look-alikes first, as a database may return them.
    let contacts = people()
        .iter()
        .rev()
        .map(|p| {
            let last = format!("Person {}", p.id);
            sugar::Contact::saved(
                &matrix_id(p.id),
                "Matrix",
                &last,
                &[(matrix_field(p.id), p.stored)],
            )
        })
        .collect();
    let sugar = Sugar::with_contacts(SUGAR_USER, "pw-matrix-6", contacts).await;
    let gw = sugar_gateway(&sugar, "SUGAR_RECIPE_PW_MATRIX", "pw-matrix-6").await;
    let client = gw.client();
    let card = JEANNE_SUGAR.trim_end_matches(|c| c != '=');
    let mut results = Vec::new();
    for (caller, want) in calls() {
        let reply = client.post(gw.addr, None, &call(&caller)).await;
        results.push((caller, want, matrix_person(&reply, card)));
    }
    assert_all("sugarcrm.toml", &results);
    let s = sugar.state.lock().unwrap();
    assert_eq!((s.refused_queries, s.lookups), (0, results.len()));
}

#[tokio::test]
async fn sugar_example_shows_names_as_typed_though_sugar_sends_them_html_encoded() {
    let contacts = NAMES
        .iter()
        .zip(1..)
        .map(|((first, last, phone), id)| {
            sugar::Contact::saved(&matrix_id(id), first, last, &[("phone_other", phone)])
        })
        .collect();
    let sugar = Sugar::with_contacts(SUGAR_USER, "pw-names-7", contacts).await;
    let gw = sugar_gateway(&sugar, "SUGAR_RECIPE_PW_NAMES", "pw-names-7").await;
    let client = gw.client();
    for ((first, last, _), caller) in NAMES
        .iter()
        .zip(["0611223301", "+33611223302", "611223303"])
    {
        let reply = client.post(gw.addr, None, &call(caller)).await;
        assert_eq!(reply.json()["title"], format!("{first} {last}"), "{caller}");
    }
    // What Sugar sent was encoded.
    let sent = &sugar.state.lock().unwrap().sent;
    assert!(
        sent[0].contains(r#""value":"D&#039;Artagnan &amp;amp; Fils""#),
        "{sent:?}"
    );
}

/// A SuiteCRM example run through the matrix: every call and whose card.
async fn suite_matrix(example: &str, card: &str, var: &str) {
    let contacts = people()
        .iter()
        .rev()
        .map(|p| {
            let last = format!("Person {}", p.id);
            suitecrm8::Contact::saved(
                &matrix_id(p.id),
                "Matrix",
                &last,
                &[(matrix_field(p.id), p.stored)],
            )
        })
        .collect();
    let suite = SuiteCrm8::with_contacts(CLIENT_ID, "secret-matrix", contacts).await;
    let gw = suite_example_gateway(example, &suite, var, "secret-matrix").await;
    let client = gw.client();
    let mut results = Vec::new();
    for (caller, want) in calls() {
        let reply = client.post(gw.addr, None, &call(&caller)).await;
        results.push((caller, want, matrix_person(&reply, card)));
    }
    assert_all(example, &results);
    let s = suite.state.lock().unwrap();
    assert_eq!((s.mints, s.lookups), (1, results.len()));
}

#[tokio::test]
async fn suitecrm8_example_finds_every_stored_shape_from_every_caller_shape_and_no_look_alike() {
    suite_matrix("suitecrm8.toml", SUITE8_CARD, "SUITE_RECIPE_SECRET_MATRIX8").await;
}

#[tokio::test]
async fn suitecrm7_example_finds_every_stored_shape_and_opens_suitecrm_7_s_card() {
    suite_matrix("suitecrm7.toml", SUITE7_CARD, "SUITE_RECIPE_SECRET_MATRIX7").await;
}

#[tokio::test]
async fn suitecrm_examples_show_names_as_typed_though_suitecrm_sends_them_html_encoded() {
    for (example, card, var) in [
        ("suitecrm8.toml", SUITE8_CARD, "SUITE_RECIPE_SECRET_NAMES8"),
        ("suitecrm7.toml", SUITE7_CARD, "SUITE_RECIPE_SECRET_NAMES7"),
    ] {
        let contacts = NAMES
            .iter()
            .zip(1..)
            .map(|((first, last, phone), id)| {
                suitecrm8::Contact::saved(&matrix_id(id), first, last, &[("phone_fax", phone)])
            })
            .collect();
        let suite = SuiteCrm8::with_contacts(CLIENT_ID, "secret-names", contacts).await;
        let gw = suite_example_gateway(example, &suite, var, "secret-names").await;
        let client = gw.client();
        for (((first, last, _), caller), id) in NAMES
            .iter()
            .zip(["0611223301", "+33611223302", "0033611223303"])
            .zip(1..)
        {
            let reply = client.post(gw.addr, None, &call(caller)).await;
            assert_eq!(
                reply.json(),
                opened(
                    &format!("{card}{}", matrix_id(id)),
                    &format!("{first} {last}")
                ),
                "{example} {caller}"
            );
        }
    }
}

#[tokio::test]
async fn sugar_directory_pages_every_contact_then_the_matrix_opens_with_no_look_up() {
    let contacts = people()
        .iter()
        .rev()
        .map(|p| {
            let last = format!("Person {}", p.id);
            sugar::Contact::saved(
                &matrix_id(p.id),
                "Matrix",
                &last,
                &[(matrix_field(p.id), p.stored)],
            )
        })
        .collect();
    let sugar = Sugar::with_contacts(SUGAR_USER, "pw-dir-matrix", contacts).await;
    let gw = sugar_directory_gateway(
        &sugar,
        "SUGAR_RECIPE_PW_DIR_MATRIX",
        "pw-dir-matrix",
        "sugar-dir-matrix",
        7,
    )
    .await;
    wait_log(
        &[
            "backend=sugar-dir-matrix",
            "directory full sync",
            "24 record(s) in 4 page(s)",
        ],
        0,
    )
    .await;
    let client = gw.client();
    let card = JEANNE_SUGAR.trim_end_matches(|c| c != '=');
    let mut results = Vec::new();
    for (caller, want) in calls() {
        let reply = client.post(gw.addr, None, &call(&caller)).await;
        results.push((caller, want, matrix_person(&reply, card)));
    }
    assert_all("sugarcrm.toml's directory", &results);
    let strangers = results.iter().filter(|(_, w, _)| w.is_none()).count();
    let s = sugar.state.lock().unwrap();
    // Only callers in no contact went to Sugar; the pages were read with
    // the call's own session.
    assert_eq!((s.lookups, s.refused_queries, s.logins), (strangers, 0, 1));
    drop(s);
    let pages: Vec<Value> = entry_list_calls(&sugar)
        .into_iter()
        .filter(|r| r["order_by"] == "contacts.id")
        .collect();
    let offsets: Vec<Value> = pages.iter().map(|r| r["offset"].clone()).collect();
    assert_eq!(offsets[..4], [json!(0), json!(7), json!(14), json!(21)]);
    assert_eq!(pages[0]["query"], "");
    assert_eq!(pages[0]["max_results"], 7);
    assert_eq!(pages[0]["deleted"], 0);
}

#[tokio::test]
async fn sugar_directory_edit_is_answered_after_the_next_incremental_sync() {
    let sugar = Sugar::start(SUGAR_USER, "pw-dir-edit").await;
    let gw = sugar_directory_gateway(
        &sugar,
        "SUGAR_RECIPE_PW_DIR_EDIT",
        "pw-dir-edit",
        "sugar-dir-edit",
        200,
    )
    .await;
    wait_log(
        &[
            "backend=sugar-dir-edit",
            "directory full sync",
            "3 number(s)",
        ],
        0,
    )
    .await;
    let client = gw.client();
    let reply = client.post(gw.addr, None, &call("0612345678")).await;
    assert_eq!(reply.json(), opened(JEANNE_SUGAR, "Jeanne O'Neil"));

    // Jeanne's work phone changes in Sugar.
    sugar.state.lock().unwrap().contacts[0].edit("phone_work", "07 11 22 33 44");
    two_more_incremental_syncs("sugar-dir-edit").await;
    let reply = client.post(gw.addr, None, &call("+33711223344")).await;
    assert_eq!(reply.json(), opened(JEANNE_SUGAR, "Jeanne O'Neil"));
    {
        let s = sugar.state.lock().unwrap();
        assert_eq!((s.lookups, s.refused_queries), (0, 0), "from the index");
        assert!(s.since_pages > 0);
    }
    // The incremental page asked what changed since a UTC time, as Sugar
    // stores date_modified.
    let since = entry_list_calls(&sugar)
        .into_iter()
        .map(|r| r["query"].as_str().unwrap_or("").to_owned())
        .find(|q| !q.is_empty() && !q.contains("phone"))
        .unwrap();
    let when = since
        .strip_prefix("contacts.date_modified > '")
        .and_then(|w| w.strip_suffix('\''))
        .unwrap_or_else(|| panic!("{since}"));
    let ago = seconds_ago(when);
    assert!((100..600).contains(&ago), "{since}");

    // Her old number is no longer hers: the live look-up finds nobody.
    let reply = client.post(gw.addr, None, &call("0612345678")).await;
    assert_eq!(reply.json(), json!({"action": "none"}));
    assert_eq!(sugar.state.lock().unwrap().lookups, 1);
}

/// A SuiteCRM example's caller directory (its backend named `name`,
/// syncing every second in pages of 7) against a SuiteCRM holding the
/// matrix: the full sync pages by number, sorted by id, and the matrix
/// then opens with no look-up; a contact's new phone opens after the next
/// incremental sync.
async fn suite_directory(example: &str, card: &str, var: &str, name: &str) {
    let contacts = people()
        .iter()
        .rev()
        .map(|p| {
            let last = format!("Person {}", p.id);
            suitecrm8::Contact::saved(
                &matrix_id(p.id),
                "Matrix",
                &last,
                &[(matrix_field(p.id), p.stored)],
            )
        })
        .collect();
    let suite = SuiteCrm8::with_contacts(CLIENT_ID, "secret-dir", contacts).await;
    let text = suite_text(example, &suite, var, "secret-dir")
        .replace("backends.suitecrm", &format!("backends.{name}"))
        .replace("backend = \"suitecrm\"", &format!("backend = \"{name}\""))
        .replace("every_s = 60\n", "every_s = 1\n")
        .replace("pages_per_second = 2\n", "pages_per_second = 1000\n")
        .replace("page_size = 100\n", "page_size = 7\n");
    assert!(text.contains("every_s = 1\n") && text.contains("page_size = 7\n"));
    let gw = start_gateway(&text).await;
    let backend = format!("backend={name}");
    wait_log(
        &[&backend, "directory full sync", "24 record(s) in 4 page(s)"],
        0,
    )
    .await;
    let client = gw.client();
    let mut results = Vec::new();
    for (caller, want) in calls() {
        let reply = client.post(gw.addr, None, &call(&caller)).await;
        results.push((caller, want, matrix_person(&reply, card)));
    }
    assert_all(&format!("{example}'s directory"), &results);
    let strangers = results.iter().filter(|(_, w, _)| w.is_none()).count();
    {
        let s = suite.state.lock().unwrap();
        assert_eq!((s.lookups, s.mints, s.refused), (strangers, 1, 0));
        let pages: Vec<&Value> = s.queries.iter().filter(|q| q["sort"] == "id").collect();
        let numbers: Vec<&Value> = pages.iter().take(4).map(|q| &q["page"]["number"]).collect();
        assert_eq!(
            numbers,
            [&json!("1"), &json!("2"), &json!("3"), &json!("4")]
        );
        assert_eq!(pages[0]["page"]["size"], "7");
        assert_eq!(
            pages[0]["filter"],
            json!({"date_modified": {"gt": "1970-01-01 00:00:00"}})
        );
    }

    // Person 1's number changes in SuiteCRM.
    {
        let mut s = suite.state.lock().unwrap();
        let one = s
            .contacts
            .iter_mut()
            .find(|c| c.id == matrix_id(1))
            .unwrap();
        one.edit(matrix_field(1), "07 11 22 33 44");
    }
    two_more_incremental_syncs(name).await;
    let reply = client.post(gw.addr, None, &call("+33711223344")).await;
    assert_eq!(matrix_person(&reply, card), Some(1));
    let s = suite.state.lock().unwrap();
    assert_eq!(s.lookups, strangers, "from the index");
    assert!(s.since_pages > 0);
    let since = s.queries.last().unwrap()["filter"]["date_modified"]["gt"]
        .as_str()
        .unwrap()
        .to_owned();
    let ago = seconds_ago(&since);
    assert!((100..600).contains(&ago), "{since}");
}

#[tokio::test]
async fn suitecrm8_directory_pages_by_number_and_follows_date_modified() {
    suite_directory(
        "suitecrm8.toml",
        SUITE8_CARD,
        "SUITE_RECIPE_SECRET_DIR8",
        "suite8-dir",
    )
    .await;
}

#[tokio::test]
async fn suitecrm7_directory_pages_by_number_and_follows_date_modified() {
    suite_directory(
        "suitecrm7.toml",
        SUITE7_CARD,
        "SUITE_RECIPE_SECRET_DIR7",
        "suite7-dir",
    )
    .await;
}
