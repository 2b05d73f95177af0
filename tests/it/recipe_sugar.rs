//! `examples/sugarcrm.toml` against a strict Sugar v4_1 REST API and
//! `examples/suitecrm8.toml` against a strict SuiteCRM V8 JSON:API with its
//! OAuth2 token endpoint: a cold call logs in (or mints) then opens the
//! contact's card, later calls reuse the session or token, one the CRM
//! dropped is renewed once, an unknown caller gets none, callers in other
//! shapes still match, and hostile callers cannot change the query.
//!
//! Each test gives its secret a variable name of its own (swapped into the
//! example), so tests running at once never read each other's value.

use serde_json::{json, Value};

use crate::examples::example_config;
use crate::support::*;
use crate::test_crms::sugar::Sugar;
use crate::test_crms::suitecrm8::{php_query, SuiteCrm8};
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

/// The Sugar example against `sugar`, its password read from `var`.
async fn sugar_gateway(sugar: &Sugar, var: &str, password: &str) -> TestGateway {
    std::env::set_var(var, password);
    let quoted = format!("\"{var}\"");
    start_gateway(&example_config(
        "sugarcrm.toml",
        &[
            (
                "https://crm.example.org/service/v4_1/rest.php",
                &sugar.url(),
            ),
            ("\"SUGAR_PASSWORD\"", &quoted),
        ],
    ))
    .await
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
        let shapes = "'0612345678', '06 12 34 56 78', '+33612345678', '+33 6 12 34 56 78'";
        assert_eq!(
            s.queries[0],
            format!("contacts.phone_work IN ({shapes}) OR contacts.phone_mobile IN ({shapes})")
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
        json!(["id", "first_name", "last_name"])
    );
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
        // columns with phone-number text: nothing a caller typed became SQL.
        assert_eq!((s.refused_queries, s.lookups), (0, hostile.len()));
        for (query, values) in s.queries.iter().zip(&s.compared) {
            assert_eq!(values.len(), 8, "{query}");
            assert!(
                values.iter().all(|v| v
                    .chars()
                    .all(|c| c.is_ascii_digit() || c == ' ' || c == '+')),
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
            (
                "[caller | national_digits, caller | national, caller | e164, caller | international]",
                "[caller]",
            ),
        ],
    );
    let gw = start_gateway(&text).await;
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
        assert_eq!(values, &[caller.to_string(), caller.to_string()]);
    }
}

/// The SuiteCRM 8 example against `suite`, its client secret read from `var`.
async fn suite_gateway(suite: &SuiteCrm8, var: &str, secret: &str) -> TestGateway {
    std::env::set_var(var, secret);
    let base = format!("{}/Api", suite.crm.url());
    let quoted = format!("\"{var}\"");
    start_gateway(&example_config(
        "suitecrm8.toml",
        &[
            ("https://crm.example.org/Api", &base),
            ("\"SUITECRM_CLIENT_SECRET\"", &quoted),
        ],
    ))
    .await
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
    assert_eq!(
        s.queries[0],
        json!({
            "filter": {"operator": "or", "phone_work": {"eq": "06 12 34 56 78"}, "phone_mobile": {"eq": "06 12 34 56 78"}},
            "fields": {"Contacts": "first_name,last_name"},
            "page": {"size": "1"},
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
            assert_eq!(keys, ["operator", "phone_mobile", "phone_work"], "{query}");
            let value = filter["phone_work"]["eq"].as_str().unwrap();
            assert!(
                value
                    .chars()
                    .all(|c| c.is_ascii_digit() || c == ' ' || c == '+'),
                "{query}"
            );
            assert_eq!(filter["phone_mobile"]["eq"], value);
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
            ("{{ caller | national }}", "{{ caller }}"),
        ],
    );
    let gw = start_gateway(&text).await;
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
        assert_eq!(filter.as_object().unwrap().len(), 3, "{query}");
        assert_eq!(filter["phone_work"], json!({"eq": caller}), "{query}");
        assert_eq!(filter["phone_mobile"], json!({"eq": caller}), "{query}");
    }

    // The parser reads nested keys as PHP does.
    assert_eq!(
        php_query("filter%5Ba%5D%5Beq%5D=1&x=2"),
        json!({"filter": {"a": {"eq": "1"}}, "x": "2"})
    );
}
