//! `examples/zoho.toml`, `examples/odoo.toml` and `examples/odoo-jsonrpc.toml`
//! run end to end against strict test CRMs (tests/it/test_crms/zoho.rs and
//! odoo.rs): Zoho's accounts server and API server apart, its mint limit,
//! its COQL read with its limits, its 204 for no match; Odoo's JSON-2 bearer
//! key, its JSON-RPC uid, and its `=ilike` read as PostgreSQL `ILIKE`. Each
//! recipe runs the caller matrix (tests/it/phone_matrix.rs): every stored
//! format found from every caller shape, no wrong card. Each test renames
//! the example's secrets to variables of its own, so tests running at once
//! do not share a value. The recipes' caller directory runs in tests of
//! its own (a full sync then the matrix with no look-up, an edit with the
//! next incremental sync); the other tests cut it out (`live_only`), so
//! what they count is the live look-up's.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::examples::example_config;
use crate::phone_matrix::{assert_all, calls, people};
use crate::recipe_sugar::{live_only, seconds_ago, two_more_incremental_syncs, wait_log};
use crate::support::*;
use crate::test_crms::odoo::{Odoo, Partner};
use crate::test_crms::zoho::{self, Contact, Criteria, Zoho, PHONE_FIELDS};
use crate::test_crms::{fields, PAYLOAD};

/// PAYLOAD with another caller.
fn call(caller: &str) -> String {
    PAYLOAD.replace(
        "\"0612345678\"",
        &serde_json::to_string(caller).unwrap_or_default(),
    )
}

fn opened(url: &str, title: &str) -> Value {
    json!({"action":"open","event":"EventRinging","url":url,"autopause":false,"title":title})
}

/// The longer deadline some tests need on a loaded machine.
const DEADLINE: (&str, &str) = (
    "listen = \"0.0.0.0:8443\"",
    "listen = \"0.0.0.0:8443\"\ndeadline_ms = 10000",
);

/// `examples/zoho.toml` against `zoho`, its secrets in variables named
/// after `tag`, its route named `tag`.
async fn zoho_gateway(zoho: &Zoho, tag: &str) -> TestGateway {
    let secret_var = format!("TPGW_IT_ZOHO_SECRET_{tag}");
    let refresh_var = format!("TPGW_IT_ZOHO_REFRESH_{tag}");
    {
        let s = zoho.state.lock().unwrap();
        std::env::set_var(&secret_var, &s.client_secret);
        std::env::set_var(&refresh_var, &s.refresh_token);
    }
    let route = format!("name = \"{tag}\"");
    let text = example_config(
        "zoho.toml",
        &[
            ("https://accounts.zoho.eu", &zoho.accounts.url()),
            ("\"ZOHO_CLIENT_SECRET\"", &format!("\"{secret_var}\"")),
            ("\"ZOHO_REFRESH_TOKEN\"", &format!("\"{refresh_var}\"")),
            ("name = \"zoho-contact\"", &route),
            DEADLINE,
        ],
    );
    start_gateway(&live_only(&text)).await
}

fn jeanne_in_zoho() -> Value {
    opened(
        "https://crm.zoho.eu/crm/org20101234567/tab/Contacts/554023000000238121",
        "Jeanne O'Neil",
    )
}

/// What `examples/zoho.toml` asks Zoho for the caller 0612345678.
const QUERY_0612345678: &str = concat!(
    "select Full_Name, Phone, Mobile, Home_Phone, Other_Phone, Asst_Phone, Fax from Contacts where ",
    "(((((((((((((((((((((((Phone like '%12 34 56 78%'",
    " or Phone like '%12.34.56.78%')",
    " or Phone like '%12-34-56-78%')",
    " or Phone like '%12345678%')",
    " or Mobile like '%12 34 56 78%')",
    " or Mobile like '%12.34.56.78%')",
    " or Mobile like '%12-34-56-78%')",
    " or Mobile like '%12345678%')",
    " or Home_Phone like '%12 34 56 78%')",
    " or Home_Phone like '%12.34.56.78%')",
    " or Home_Phone like '%12-34-56-78%')",
    " or Home_Phone like '%12345678%')",
    " or Other_Phone like '%12 34 56 78%')",
    " or Other_Phone like '%12.34.56.78%')",
    " or Other_Phone like '%12-34-56-78%')",
    " or Other_Phone like '%12345678%')",
    " or Asst_Phone like '%12 34 56 78%')",
    " or Asst_Phone like '%12.34.56.78%')",
    " or Asst_Phone like '%12-34-56-78%')",
    " or Asst_Phone like '%12345678%')",
    " or Fax like '%12 34 56 78%')",
    " or Fax like '%12.34.56.78%')",
    " or Fax like '%12-34-56-78%')",
    " or Fax like '%12345678%') limit 50",
);

#[tokio::test]
async fn zoho_cold_call_mints_then_searches_the_api_domain_and_later_calls_reuse_the_token() {
    let zoho = Zoho::start("zs3cret-cold", "1000.refresh.cold").await;
    let gw = zoho_gateway(&zoho, "zoho-cold").await;
    for caller in ["0612345678", "+33 6 12 34 56 78", "0033612345678"] {
        let reply = gw.client().post(gw.addr, None, &call(caller)).await;
        assert_eq!(reply.json(), jeanne_in_zoho(), "{caller}");
    }
    {
        let s = zoho.state.lock().unwrap();
        assert_eq!((s.mints, s.searches, s.refused, s.denied), (1, 3, 0, 0));
        assert_eq!(s.queries[0], QUERY_0612345678);
    }
    // The token comes from the accounts server, the search goes to the
    // server its reply named: never the other way round.
    let minted = zoho.accounts.seen();
    assert_eq!(minted.len(), 1);
    assert_eq!(minted[0].target, "/oauth/v2/token");
    let form = fields(&minted[0].text());
    assert_eq!(form["grant_type"], "refresh_token");
    assert_eq!(form["client_id"], "1000.GATEWAYCLIENTID");
    assert_eq!(form["client_secret"], "zs3cret-cold");
    assert_eq!(form["refresh_token"], "1000.refresh.cold");
    let searches = zoho.api.seen();
    assert_eq!(searches.len(), 3);
    for s in &searches {
        assert_eq!(
            (s.method.as_str(), s.target.as_str()),
            ("POST", "/crm/v8/coql")
        );
        assert!(
            s.header("authorization")
                .is_some_and(|h| h.starts_with("Zoho-oauthtoken 1000.")),
            "{:?}",
            s.headers
        );
    }
}

#[tokio::test]
async fn zoho_no_match_is_a_204_read_as_none_and_a_mobile_number_matches_too() {
    let zoho = Zoho::start("zs3cret-204", "1000.refresh.204").await;
    let gw = zoho_gateway(&zoho, "zoho-nomatch").await;
    let reply = gw.client().post(gw.addr, None, &call("0211111111")).await;
    assert_eq!(reply.json(), json!({"action":"none"}));
    let lines = log_lines("route=zoho-nomatch ");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("reason=no_match ") && l.contains("0 record(s)")),
        "a 204 is no candidate, not a bad reply: {lines:#?}"
    );
    // Zoho offers Paul Martin, whose mobile 06.98.76.54.32 holds "98.76.54.32":
    // not the caller's number, the gateway opens nothing.
    let reply = gw.client().post(gw.addr, None, &call("0298765432")).await;
    assert_eq!(reply.json(), json!({"action":"none"}));
    assert!(
        log_lines("route=zoho-nomatch ")
            .iter()
            .any(|l| l.contains("1 record(s) with 2 stored number(s), none is the caller's number")),
        "the look-alike was offered and refused"
    );
    let reply = gw
        .client()
        .post(gw.addr, None, &call("06 98 76 54 32"))
        .await;
    assert_eq!(
        reply.json(),
        opened(
            "https://crm.zoho.eu/crm/org20101234567/tab/Contacts/554023000000238177",
            "Paul Martin"
        )
    );
    let s = zoho.state.lock().unwrap();
    assert_eq!((s.mints, s.searches), (1, 3));
}

#[tokio::test]
async fn zoho_token_the_crm_expired_is_renewed_once_and_the_call_still_opens() {
    let zoho = Zoho::start("zs3cret-exp", "1000.refresh.exp").await;
    let gw = zoho_gateway(&zoho, "zoho-expired").await;
    assert_eq!(
        gw.client().post(gw.addr, None, PAYLOAD).await.json(),
        jeanne_in_zoho()
    );
    zoho.state.lock().unwrap().expire_tokens();
    assert_eq!(
        gw.client().post(gw.addr, None, PAYLOAD).await.json(),
        jeanne_in_zoho()
    );
    let s = zoho.state.lock().unwrap();
    assert_eq!((s.mints, s.refused, s.searches), (2, 1, 2));
}

#[tokio::test]
async fn zoho_hundred_concurrent_calls_after_expiry_mint_exactly_one_token() {
    let zoho = Zoho::start("zs3cret-100", "1000.refresh.100").await;
    zoho.state.lock().unwrap().expires_in = Duration::from_secs(2);
    let gw = zoho_gateway(&zoho, "zoho-hundred").await;
    assert_eq!(
        gw.client().post(gw.addr, None, PAYLOAD).await.json(),
        jeanne_in_zoho()
    );
    // The next token lives an hour; the first one runs out meanwhile.
    zoho.state.lock().unwrap().expires_in = Duration::from_secs(3600);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let client = Arc::new(gw.client());
    let addr = gw.addr;
    let calls: Vec<_> = (0..100)
        .map(|_| {
            let client = Arc::clone(&client);
            tokio::spawn(async move { client.post(addr, None, PAYLOAD).await.json() })
        })
        .collect();
    for call in calls {
        let reply = tokio::time::timeout(Duration::from_secs(60), call)
            .await
            .expect("every call answered")
            .unwrap();
        assert_eq!(reply, jeanne_in_zoho());
    }
    let s = zoho.state.lock().unwrap();
    assert_eq!(s.mints, 2, "one token at start, exactly one after expiry");
    assert_eq!(s.denied, 0, "never over Zoho's mint limit");
    assert_eq!(s.refused, 0, "no call sent the expired token");
    assert_eq!(s.searches, 101);
}

#[tokio::test]
async fn zoho_mint_limit_reached_gives_none_with_reason_login_without_hammering() {
    let zoho = Zoho::start("zs3cret-lim", "1000.refresh.lim").await;
    // Another client of the same refresh token used up the ten mints.
    zoho.state.lock().unwrap().spend_mints(10);
    let gw = zoho_gateway(&zoho, "zoho-limit").await;
    let client = Arc::new(gw.client());
    let addr = gw.addr;
    let calls: Vec<_> = (0..20)
        .map(|_| {
            let client = Arc::clone(&client);
            tokio::spawn(async move { client.post(addr, None, PAYLOAD).await.json() })
        })
        .collect();
    for call in calls {
        assert_eq!(call.await.unwrap(), json!({"action":"none"}));
    }
    let s = zoho.state.lock().unwrap();
    // The calls arrive within the first backoff (1 s); one more attempt at
    // most on a machine slow enough for a call to arrive after it.
    assert!(s.denied <= 2, "{} token requests for 20 calls", s.denied);
    assert_eq!((s.mints, s.searches), (0, 0));
    let lines = log_lines("route=zoho-limit ");
    assert!(
        lines.iter().any(|l| l.contains("reason=login ")),
        "{lines:#?}"
    );
}

#[tokio::test]
async fn zoho_revoked_refresh_token_gives_none_with_reason_login() {
    let zoho = Zoho::start("zs3cret-rev", "1000.refresh.rev").await;
    let gw = zoho_gateway(&zoho, "zoho-revoked").await;
    // Revoked in Zoho's console after the gateway was configured: the
    // accounts server answers {"error":"invalid_code"} with HTTP 200.
    zoho.state.lock().unwrap().refresh_token = "1000.refresh.new".into();
    let reply = gw.client().post(gw.addr, None, PAYLOAD).await;
    assert_eq!(reply.json(), json!({"action":"none"}));
    let s = zoho.state.lock().unwrap();
    assert_eq!((s.mints, s.searches), (0, 0));
    let lines = log_lines("route=zoho-revoked ");
    assert!(
        lines.iter().any(|l| l.contains("reason=login ")),
        "{lines:#?}"
    );
}

#[tokio::test]
async fn zoho_hostile_callers_cannot_change_the_query() {
    let zoho = Zoho::start("zs3cret-hostile", "1000.refresh.hostile").await;
    let gw = zoho_gateway(&zoho, "zoho-hostile").await;
    let hostile = [
        "0612345678') or (Full_Name = 'Jeanne O''Neil",
        "061234(5678),x",
        "06\\12345678'\"",
        "0612345%_678",
    ];
    for caller in hostile {
        let reply = gw.client().post(gw.addr, None, &call(caller)).await;
        let reply = reply.json();
        assert!(
            reply["action"] == "none" || reply == jeanne_in_zoho(),
            "{caller}: {reply}"
        );
    }
    let s = zoho.state.lock().unwrap();
    assert_eq!(s.queries.len(), hostile.len());
    assert_eq!(s.searches, hostile.len(), "no query refused as malformed");
    for query in &s.queries {
        // Zoho reads each one as the recipe wrote it: 24 criteria, each a
        // phone field "like" a number made of digits and separators.
        let q = zoho::parse(query).unwrap_or_else(|e| panic!("{query}: {e:?}"));
        let mut leaves = Vec::new();
        fn walk<'a>(c: &'a Criteria, out: &mut Vec<&'a Criteria>) {
            match c {
                Criteria::Or(a, b) => {
                    walk(a, out);
                    walk(b, out);
                }
                other => out.push(other),
            }
        }
        walk(&q.criteria, &mut leaves);
        assert_eq!(leaves.len(), 24, "{query}");
        for leaf in leaves {
            let Criteria::Compare(field, op, value) = leaf else {
                panic!("{query}");
            };
            assert!(PHONE_FIELDS.contains(&field.as_str()), "{query}");
            assert_eq!(op, "like", "{query}");
            let inner = value.trim_start_matches('%').trim_end_matches('%');
            assert!(
                !inner.is_empty()
                    && inner
                        .chars()
                        .all(|c| c.is_ascii_digit() || " .-".contains(c)),
                "{query}"
            );
        }
    }
}

#[tokio::test]
async fn zoho_finds_every_stored_format_in_every_phone_field_and_opens_no_wrong_card() {
    let zoho = Zoho::start("zs3cret-matrix", "1000.refresh.matrix").await;
    {
        // Each person's number as typed, in one of Contacts' phone fields in
        // turn; the other fields hold a number nobody calls.
        let mut s = zoho.state.lock().unwrap();
        s.contacts = people()
            .iter()
            .map(|p| {
                let field = PHONE_FIELDS[p.id as usize % PHONE_FIELDS.len()];
                let other = PHONE_FIELDS[(p.id as usize + 1) % PHONE_FIELDS.len()];
                Contact::new(
                    &format!("5540230000009{:05}", p.id),
                    &format!("Person {}", p.id),
                    &[(other, "+33 5 55 00 00 00"), (field, p.stored)],
                )
            })
            .collect();
    }
    let gw = zoho_gateway(&zoho, "zoho-matrix").await;
    let client = gw.client();
    let mut results = Vec::new();
    for (caller, want) in calls() {
        let reply = client.post(gw.addr, None, &call(&caller)).await.json();
        let got = reply["url"].as_str().map(|url| {
            let id = url.rsplit('/').next().unwrap_or_default();
            id.strip_prefix("5540230000009")
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("{caller}: {url}"))
        });
        results.push((caller, want, got));
    }
    assert_all("Zoho CRM (COQL)", &results);
    let s = zoho.state.lock().unwrap();
    assert_eq!(
        s.searches,
        s.queries.len(),
        "every query read as Zoho reads it"
    );
}

#[tokio::test]
async fn zoho_refresh_token_without_the_coql_scope_gives_none_after_one_token_and_no_storm() {
    let zoho = Zoho::start("zs3cret-scope", "1000.refresh.scope").await;
    // A refresh token made for the search API's scopes, not COQL's.
    zoho.state.lock().unwrap().scopes = vec![
        "ZohoCRM.modules.contacts.READ".into(),
        "ZohoSearch.securesearch.READ".into(),
    ];
    let gw = zoho_gateway(&zoho, "zoho-scope").await;
    let reply = gw.client().post(gw.addr, None, PAYLOAD).await;
    assert_eq!(reply.json(), json!({"action":"none"}));
    let s = zoho.state.lock().unwrap();
    // 401 is relogin_when's default, but a token refused before any
    // look-up was accepted with it is a failed login: no second token at
    // once (Zoho locks a client out after 10 in 10 minutes), the backoff
    // spaces the next ones.
    assert_eq!((s.mints, s.refused, s.searches), (1, 1, 0));
    let lines = log_lines("route=zoho-scope ");
    assert!(
        lines.iter().any(|l| l.contains("reason=login ")),
        "{lines:#?}"
    );
    assert!(!log_lines("before any look-up was accepted").is_empty());
}

#[tokio::test]
async fn zoho_simulate_shows_the_token_request_and_never_a_secret_or_token() {
    let zoho = Zoho::start("zs3cret-sim", "1000.refresh.sim").await;
    std::env::set_var("TPGW_IT_ZOHO_SECRET_SIM", "zs3cret-sim");
    std::env::set_var("TPGW_IT_ZOHO_REFRESH_SIM", "1000.refresh.sim");
    let text = example_config(
        "zoho.toml",
        &[
            ("https://accounts.zoho.eu", &zoho.accounts.url()),
            ("\"ZOHO_CLIENT_SECRET\"", "\"TPGW_IT_ZOHO_SECRET_SIM\""),
            ("\"ZOHO_REFRESH_TOKEN\"", "\"TPGW_IT_ZOHO_REFRESH_SIM\""),
        ],
    );
    // A dry run sends nothing; the look-up's url comes from the token reply,
    // so it says why it cannot build it rather than blame the config.
    let dry = simulate_cli(&text, PAYLOAD, &[], &["--dry-run"]).await;
    assert!(
        dry.contains(&format!(
            "step 1: POST {}/oauth/v2/token (not sent)",
            zoho.accounts.url()
        )),
        "{dry}"
    );
    assert!(
        dry.contains(
            "(login.* is empty in a dry run: simulate without --dry-run logs in and builds it)"
        ),
        "{dry}"
    );
    assert!(zoho.accounts.seen().is_empty() && zoho.api.seen().is_empty());
    let text = simulate_cli(&text, PAYLOAD, &[], &[]).await;
    assert!(text.contains("/oauth/v2/token"), "{text}");
    assert!(text.contains("login.access_token = [redacted]"), "{text}");
    assert!(text.contains("\"action\":\"open\""), "{text}");
    let seen = zoho.api.seen();
    let token = seen[0]
        .header("authorization")
        .and_then(|h| h.strip_prefix("Zoho-oauthtoken "))
        .unwrap();
    for secret in ["zs3cret-sim", "1000.refresh.sim", token] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
}

/// `examples/odoo.toml` (or `odoo-jsonrpc.toml`) against `odoo`, its key in
/// a variable named after `tag`, its route named `tag`.
async fn odoo_gateway(example: &str, odoo: &Odoo, tag: &str) -> TestGateway {
    let key_var = format!("TPGW_IT_ODOO_KEY_{tag}");
    std::env::set_var(&key_var, &odoo.state.lock().unwrap().api_key);
    let route = format!("name = \"{tag}\"");
    let url = format!("{}/json", odoo.crm.url());
    let mut swaps: Vec<(&str, &str)> = vec![
        ("https://odoo.example.org/json", &url),
        ("name = \"odoo-contact\"", &route),
        DEADLINE,
    ];
    let quoted = format!("'{key_var}'");
    let env = format!("\"{key_var}\"");
    if example == "odoo.toml" {
        swaps.push(("\"ODOO_API_KEY\"", &env));
    } else {
        swaps.push(("'ODOO_API_KEY'", &quoted));
    }
    let text = example_config(example, &swaps);
    start_gateway(&live_only(&text)).await
}

fn jeanne_in_odoo() -> Value {
    opened("https://odoo.example.org/odoo/contacts/42", "Jeanne O'Neil")
}

#[tokio::test]
async fn odoo_json2_finds_each_stored_phone_shape_from_each_caller_shape() {
    let odoo = Odoo::start("0dd0-key-shapes").await;
    let gw = odoo_gateway("odoo.toml", &odoo, "odoo-shapes").await;
    // Stored "+33 6 12 34 56 78" (Odoo's own formatting).
    for caller in ["0612345678", "+33612345678", "0033 6 12 34 56 78"] {
        let reply = gw.client().post(gw.addr, None, &call(caller)).await;
        assert_eq!(reply.json(), jeanne_in_odoo(), "{caller}");
    }
    // Stored "06.98.76.54.32" (typed with dots).
    let reply = gw.client().post(gw.addr, None, &call("+33698765432")).await;
    assert_eq!(
        reply.json(),
        opened("https://odoo.example.org/odoo/contacts/43", "Paul Martin")
    );
    // Stored "0033298112233" (typed without spaces).
    let reply = gw
        .client()
        .post(gw.addr, None, &call("02 98 11 22 33"))
        .await;
    assert_eq!(
        reply.json(),
        opened("https://odoo.example.org/odoo/contacts/44", "Luc Petit")
    );
    let reply = gw.client().post(gw.addr, None, &call("0299999999")).await;
    assert_eq!(reply.json(), json!({"action":"none"}));
    let s = odoo.state.lock().unwrap();
    assert_eq!((s.searches, s.refused), (6, 0));
    assert_eq!(
        s.domains[0],
        json!([["phone", "=ilike", "%6%1%2%3%4%5%6%7%8%"]])
    );
    let seen = odoo.crm.seen();
    assert_eq!(seen[0].target, "/json/2/res.partner/search_read");
    assert_eq!(seen[0].header("x-odoo-database"), Some("odoo"));
    let body: Value = serde_json::from_slice(&seen[0].body).unwrap();
    assert_eq!(
        (&body["fields"], &body["limit"]),
        (&json!(["name", "phone"]), &json!(20))
    );
}

#[tokio::test]
async fn odoo_json2_wrong_key_is_refused_and_gives_none() {
    let odoo = Odoo::start("0dd0-key-right").await;
    std::env::set_var("TPGW_IT_ODOO_KEY_WRONG_VALUE", "0dd0-key-wrong");
    let text = example_config(
        "odoo.toml",
        &[
            (
                "https://odoo.example.org/json",
                &format!("{}/json", odoo.crm.url()),
            ),
            ("\"ODOO_API_KEY\"", "\"TPGW_IT_ODOO_KEY_WRONG_VALUE\""),
            ("name = \"odoo-contact\"", "name = \"odoo-wrong-key\""),
        ],
    );
    let gw = start_gateway(&live_only(&text)).await;
    let reply = gw.client().post(gw.addr, None, PAYLOAD).await;
    assert_eq!(reply.json(), json!({"action":"none"}));
    let s = odoo.state.lock().unwrap();
    assert_eq!((s.refused, s.searches), (1, 0));
    let lines = log_lines("route=odoo-wrong-key ");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("reason=status ") && l.contains("401")),
        "{lines:#?}"
    );
}

#[tokio::test]
async fn odoo_hostile_callers_reach_odoo_as_digits_and_never_open_a_card() {
    let odoo = Odoo::start("0dd0-key-hostile").await;
    // Every digit of the hostile callers below, in order, is in this number.
    odoo.state.lock().unwrap().partners.push(Partner::new(
        46,
        "Anyone",
        "0 1 2 3 4 5 6 7 9 8 7 6 5 4",
        "",
    ));
    let gw = odoo_gateway("odoo.toml", &odoo, "odoo-hostile").await;
    // The pattern is the callers' digits with "%" between: a quote, a
    // backslash or the caller's own "%" and "_" never reach the value, and a
    // candidate Odoo offers for so few digits is not the caller's number.
    for caller in ["0%1%2%3%4%5", "0_1_2_3_4_5", "01'23\\45\"67%", "029876%%%%"] {
        let reply = gw.client().post(gw.addr, None, &call(caller)).await;
        assert_eq!(reply.json(), json!({"action":"none"}), "{caller}");
    }
    let lines = log_lines("route=odoo-hostile ");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("the caller is not a phone number the gateway can compare")),
        "Odoo offered a candidate, the gateway refused it: {lines:#?}"
    );
    let s = odoo.state.lock().unwrap();
    assert_eq!(s.searches, 4);
    for domain in &s.domains {
        let value = domain[0][2].as_str().unwrap();
        assert!(value.starts_with('%') && value.ends_with('%'), "{domain}");
        let mut parts = value.split('%');
        assert!(
            parts.all(|p| p.is_empty() || (p.len() == 1 && p.bytes().all(|b| b.is_ascii_digit()))),
            "{domain}"
        );
    }
}

#[tokio::test]
async fn odoo_jsonrpc_logs_in_once_reuses_the_uid_and_logs_in_again_when_refused() {
    let odoo = Odoo::start("0dd0-key-rpc").await;
    let gw = odoo_gateway("odoo-jsonrpc.toml", &odoo, "odoo-rpc").await;
    let jeanne = opened(
        "https://odoo.example.org/web#id=42&model=res.partner&view_type=form",
        "Jeanne O'Neil",
    );
    for caller in ["0612345678", "+33 6 12 34 56 78"] {
        let reply = gw.client().post(gw.addr, None, &call(caller)).await;
        assert_eq!(reply.json(), jeanne, "{caller}");
    }
    {
        let s = odoo.state.lock().unwrap();
        assert_eq!((s.logins, s.searches, s.refused), (1, 2, 0));
    }
    let seen = odoo.crm.seen();
    let login: Value = serde_json::from_slice(&seen[0].body).unwrap();
    assert_eq!(
        login["params"],
        json!({"service": "common", "method": "login", "args": ["odoo", "gateway@example.org", "0dd0-key-rpc"]})
    );
    let search: Value = serde_json::from_slice(&seen[1].body).unwrap();
    assert_eq!(
        search["params"]["args"][1],
        json!(7),
        "the uid stays a number"
    );
    assert_eq!(
        search["params"]["args"][5],
        json!([[
            "|",
            ["phone", "=ilike", "%6%1%2%3%4%5%6%7%8%"],
            ["mobile", "=ilike", "%6%1%2%3%4%5%6%7%8%"]
        ]])
    );
    assert_eq!(
        search["params"]["args"][6],
        json!({"fields": ["name", "phone", "mobile"], "limit": 20})
    );
    // The user was recreated: the old uid is refused (AccessDenied over
    // HTTP 200), the gateway logs in again once and the call still opens.
    odoo.state.lock().unwrap().uid = 9;
    let reply = gw.client().post(gw.addr, None, PAYLOAD).await;
    assert_eq!(reply.json(), jeanne);
    let reply = gw.client().post(gw.addr, None, &call("0299999999")).await;
    assert_eq!(reply.json(), json!({"action":"none"}));
    // A number in the mobile field only (Odoo 16 to 18 have one).
    let reply = gw.client().post(gw.addr, None, &call("0711223344")).await;
    assert_eq!(
        reply.json(),
        opened(
            "https://odoo.example.org/web#id=45&model=res.partner&view_type=form",
            "Marie Durand"
        )
    );
    let s = odoo.state.lock().unwrap();
    assert_eq!((s.logins, s.searches, s.refused), (2, 5, 1));
}

#[tokio::test]
async fn odoo_jsonrpc_wrong_key_is_a_login_failure_not_a_search() {
    let odoo = Odoo::start("0dd0-key-rpc-right").await;
    std::env::set_var("TPGW_IT_ODOO_KEY_RPC_WRONG_VALUE", "0dd0-key-rpc-wrong");
    let text = example_config(
        "odoo-jsonrpc.toml",
        &[
            (
                "https://odoo.example.org/json",
                &format!("{}/json", odoo.crm.url()),
            ),
            ("'ODOO_API_KEY'", "'TPGW_IT_ODOO_KEY_RPC_WRONG_VALUE'"),
            ("name = \"odoo-contact\"", "name = \"odoo-rpc-wrong\""),
        ],
    );
    let gw = start_gateway(&live_only(&text)).await;
    let reply = gw.client().post(gw.addr, None, PAYLOAD).await;
    assert_eq!(reply.json(), json!({"action":"none"}));
    let s = odoo.state.lock().unwrap();
    assert_eq!((s.failed_logins, s.logins, s.searches), (1, 0, 0));
    let lines = log_lines("route=odoo-rpc-wrong ");
    assert!(
        lines.iter().any(|l| l.contains("reason=login ")),
        "{lines:#?}"
    );
}

/// The matrix through `example` against a test Odoo holding every person
/// (in phone, or in phone and mobile in turn with `mobile`), each reply's
/// card read back by the partner id after `marker` in its url.
async fn odoo_matrix(example: &str, tag: &str, mobile: bool, marker: &str) {
    let odoo = Odoo::start(&format!("0dd0-key-{tag}")).await;
    odoo.state.lock().unwrap().partners = people()
        .iter()
        .map(|p| {
            let name = format!("Person {}", p.id);
            let id = 1000 + u64::from(p.id);
            if mobile && p.id % 2 == 0 {
                Partner::new(id, &name, "+33 5 55 00 00 00", p.stored)
            } else {
                Partner::new(id, &name, p.stored, "")
            }
        })
        .collect();
    let gw = odoo_gateway(example, &odoo, tag).await;
    let client = gw.client();
    let mut results = Vec::new();
    for (caller, want) in calls() {
        let reply = client.post(gw.addr, None, &call(&caller)).await.json();
        let got = reply["url"].as_str().map(|url| {
            let id = url.split_once(marker).map_or("", |(_, rest)| rest);
            let id: String = id.chars().take_while(char::is_ascii_digit).collect();
            id.parse::<u32>()
                .ok()
                .and_then(|n| n.checked_sub(1000))
                .unwrap_or_else(|| panic!("{caller}: {url}"))
        });
        results.push((caller, want, got));
    }
    assert_all(example, &results);
    let s = odoo.state.lock().unwrap();
    assert_eq!(
        s.searches,
        calls().len(),
        "every domain read as Odoo reads it"
    );
}

#[tokio::test]
async fn odoo_json2_finds_every_stored_format_and_opens_no_wrong_card() {
    odoo_matrix("odoo.toml", "odoo-matrix", false, "/contacts/").await;
}

#[tokio::test]
async fn odoo_jsonrpc_finds_every_stored_format_in_phone_or_mobile_and_opens_no_wrong_card() {
    odoo_matrix("odoo-jsonrpc.toml", "odoo-rpc-matrix", true, "#id=").await;
}

/// `example`'s caller directory against a test Odoo holding every person
/// (as `odoo_matrix`), its backend named `tag`, syncing every second in
/// pages of 7: the full sync pages by id, the matrix then opens with no
/// look-up, and a partner's new phone opens after the next incremental
/// sync.
async fn odoo_directory(example: &str, tag: &str, mobile: bool, marker: &str) {
    let odoo = Odoo::start(&format!("0dd0-key-{tag}")).await;
    odoo.state.lock().unwrap().partners = people()
        .iter()
        .map(|p| {
            let name = format!("Person {}", p.id);
            let id = 1000 + u64::from(p.id);
            if mobile && p.id % 2 == 0 {
                Partner::new(id, &name, "+33 5 55 00 00 00", p.stored)
            } else {
                Partner::new(id, &name, p.stored, "")
            }
        })
        .collect();
    let key_var = format!("TPGW_IT_ODOO_KEY_{tag}");
    std::env::set_var(&key_var, &odoo.state.lock().unwrap().api_key);
    let url = format!("{}/json", odoo.crm.url());
    let key = if example == "odoo.toml" {
        ("\"ODOO_API_KEY\"".to_owned(), format!("\"{key_var}\""))
    } else {
        ("'ODOO_API_KEY'".to_owned(), format!("'{key_var}'"))
    };
    let text = example_config(
        example,
        &[
            ("https://odoo.example.org/json", &url),
            (&key.0, &key.1),
            ("backends.odoo", &format!("backends.{tag}")),
            ("backend = \"odoo\"", &format!("backend = \"{tag}\"")),
            ("every_s = 60\n", "every_s = 1\n"),
            ("pages_per_second = 2\n", "pages_per_second = 1000\n"),
            ("page_size = 500\n", "page_size = 7\n"),
            DEADLINE,
        ],
    );
    let gw = start_gateway(&text).await;
    let backend = format!("backend={tag}");
    wait_log(
        &[&backend, "directory full sync", "24 record(s) in 4 page(s)"],
        0,
    )
    .await;
    let client = gw.client();
    let opened_id = |reply: Value, caller: &str| {
        reply["url"].as_str().map(|url| {
            let id = url.split_once(marker).map_or("", |(_, rest)| rest);
            let id: String = id.chars().take_while(char::is_ascii_digit).collect();
            id.parse::<u32>()
                .ok()
                .and_then(|n| n.checked_sub(1000))
                .unwrap_or_else(|| panic!("{caller}: {url}"))
        })
    };
    let mut results = Vec::new();
    for (caller, want) in calls() {
        let reply = client.post(gw.addr, None, &call(&caller)).await.json();
        results.push((caller.clone(), want, opened_id(reply, &caller)));
    }
    assert_all(&format!("{example}'s directory"), &results);
    let strangers = results.iter().filter(|(_, w, _)| w.is_none()).count();
    let lookups = |s: &crate::test_crms::odoo::State| {
        s.searches - s.pages.iter().filter(|p| p.2 == "id").count()
    };
    {
        let s = odoo.state.lock().unwrap();
        assert_eq!(
            (lookups(&s), s.refused),
            (strangers, 0),
            "only strangers asked Odoo"
        );
        let (pages, domains): (Vec<_>, Vec<_>) = s
            .pages
            .iter()
            .zip(&s.domains)
            .filter(|(p, _)| p.2 == "id")
            .unzip();
        let offsets: Vec<&Value> = pages.iter().take(4).map(|p| &p.0).collect();
        assert_eq!(offsets, [&json!(0), &json!(7), &json!(14), &json!(21)]);
        assert_eq!(pages[0].1, json!(7));
        assert_eq!(
            domains[0],
            &json!([
                "|",
                ["write_date", "=", false],
                ["write_date", ">", "1970-01-01 00:00:00"]
            ])
        );
    }

    // Person 1's phone changes in Odoo.
    odoo.state.lock().unwrap().partners[0].set_phone("07 11 22 33 44");
    two_more_incremental_syncs(tag).await;
    let reply = client
        .post(gw.addr, None, &call("+33711223344"))
        .await
        .json();
    assert_eq!(opened_id(reply, "+33711223344"), Some(1));
    let s = odoo.state.lock().unwrap();
    assert_eq!(lookups(&s), strangers, "from the index");
    // The incremental pages asked what was written since a UTC time, as
    // Odoo keeps write_date.
    let since = s.domains.last().unwrap()[2][2].as_str().unwrap().to_owned();
    let ago = seconds_ago(&since);
    assert!((100..600).contains(&ago), "{since}");
}

#[tokio::test]
async fn odoo_json2_directory_pages_by_id_and_follows_write_date() {
    odoo_directory("odoo.toml", "odoo-dir", false, "/contacts/").await;
}

#[tokio::test]
async fn odoo_jsonrpc_directory_pages_by_id_and_follows_write_date() {
    odoo_directory("odoo-jsonrpc.toml", "odoo-rpc-dir", true, "#id=").await;
}

#[tokio::test]
async fn zoho_directory_pages_by_id_with_coql_and_follows_modified_time() {
    let zoho = Zoho::start("zs3cret-dir", "1000.refresh.dir").await;
    {
        let mut s = zoho.state.lock().unwrap();
        s.contacts = people()
            .iter()
            .map(|p| {
                let field = PHONE_FIELDS[p.id as usize % PHONE_FIELDS.len()];
                Contact::new(
                    &format!("5540230000009{:05}", p.id),
                    &format!("Person {}", p.id),
                    &[(field, p.stored)],
                )
            })
            .rev()
            .collect();
    }
    let tag = "zoho-dir";
    let secret_var = format!("TPGW_IT_ZOHO_SECRET_{tag}");
    let refresh_var = format!("TPGW_IT_ZOHO_REFRESH_{tag}");
    std::env::set_var(&secret_var, "zs3cret-dir");
    std::env::set_var(&refresh_var, "1000.refresh.dir");
    let text = example_config(
        "zoho.toml",
        &[
            ("https://accounts.zoho.eu", &zoho.accounts.url()),
            ("\"ZOHO_CLIENT_SECRET\"", &format!("\"{secret_var}\"")),
            ("\"ZOHO_REFRESH_TOKEN\"", &format!("\"{refresh_var}\"")),
            ("backends.zoho", &format!("backends.{tag}")),
            ("backend = \"zoho\"", &format!("backend = \"{tag}\"")),
            ("every_s = 120\n", "every_s = 1\n"),
            ("pages_per_second = 1\n", "pages_per_second = 1000\n"),
            ("page_size = 2000\n", "page_size = 7\n"),
            DEADLINE,
        ],
    );
    let gw = start_gateway(&text).await;
    let backend = format!("backend={tag}");
    wait_log(
        &[&backend, "directory full sync", "24 record(s) in 4 page(s)"],
        0,
    )
    .await;
    let client = gw.client();
    let mut results = Vec::new();
    for (caller, want) in calls() {
        let reply = client.post(gw.addr, None, &call(&caller)).await.json();
        let got = reply["url"].as_str().map(|url| {
            let id = url.rsplit('/').next().unwrap_or_default();
            id.strip_prefix("5540230000009")
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("{caller}: {url}"))
        });
        results.push((caller, want, got));
    }
    assert_all("zoho.toml's directory", &results);
    let strangers = results.iter().filter(|(_, w, _)| w.is_none()).count();
    let lookups = |s: &zoho::State| s.searches - s.pages;
    {
        let s = zoho.state.lock().unwrap();
        assert_eq!((lookups(&s), s.mints, s.refused), (strangers, 1, 0));
        let pages: Vec<&String> = s
            .queries
            .iter()
            .filter(|q| q.contains("order by id"))
            .collect();
        assert!(
            pages[0].ends_with("where id is not null\norder by id limit 7"),
            "{}",
            pages[0]
        );
        // Keyset paging: after the last id of the page before, no offset.
        assert!(
            pages[3].ends_with("where id > '554023000000900021'\norder by id limit 7"),
            "{}",
            pages[3]
        );
    }

    // Person 1's number changes in Zoho.
    {
        let mut s = zoho.state.lock().unwrap();
        let one = s
            .contacts
            .iter_mut()
            .find(|c| c.id == "554023000000900001")
            .unwrap();
        one.edit(PHONE_FIELDS[1], "07 11 22 33 44");
    }
    two_more_incremental_syncs(tag).await;
    let reply = client
        .post(gw.addr, None, &call("+33711223344"))
        .await
        .json();
    assert_eq!(
        reply["url"],
        "https://crm.zoho.eu/crm/org20101234567/tab/Contacts/554023000000900001"
    );
    let s = zoho.state.lock().unwrap();
    assert_eq!(lookups(&s), strangers, "from the index");
    assert!(s.since_pages > 0);
    // Incremental syncs that found nothing (HTTP 204) did not fail.
    assert!(log_lines(&backend)
        .iter()
        .all(|l| !l.contains("directory sync failed")));
    let last = s.queries.last().unwrap();
    let since = last
        .split_once("Modified_Time > '")
        .and_then(|(_, rest)| rest.split_once("+00:00'"))
        .map(|(when, _)| when.replace('T', " "))
        .unwrap_or_else(|| panic!("{last}"));
    let ago = seconds_ago(&since);
    assert!((100..600).contains(&ago), "{last}");
}

/// Polls the daemon's metrics (at most `within`) until `metric` of `backend`
/// is `want`.
async fn wait_metric(
    daemon: &crate::ops::Daemon,
    metric: &str,
    backend: &str,
    want: f64,
    within: Duration,
) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let scrape = daemon.metrics().await;
        let got = crate::ops::sample(&scrape, metric, &[("backend", backend)]);
        if got == want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{metric} is {got}, not {want}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn zoho_directory_reads_past_100k_contacts_by_id_through_the_real_binary() {
    // More contacts than COQL's LIMIT and OFFSET reach (100 000): offset
    // paging would end in 400 LIMIT_EXCEEDED at the 51st page.
    const CONTACTS: u64 = 100_500;
    let zoho = Zoho::start("zs3cret-100k", "1000.refresh.100k").await;
    let id = |i: u64| format!("{}", 554_023_000_001_000_000 + i);
    zoho.state.lock().unwrap().contacts = (0..CONTACTS)
        .map(|i| {
            Contact::new(
                &id(i),
                &format!("Person {i}"),
                &[("Mobile", &format!("+33 6 {:08}", 10_000_000 + i))],
            )
        })
        .collect();
    let tag = "zoho-100k";
    let text = example_config(
        "zoho.toml",
        &[
            ("https://accounts.zoho.eu", &zoho.accounts.url()),
            (
                "listen = \"0.0.0.0:8443\"",
                "listen = \"127.0.0.1:0\"\ndeadline_ms = 10000\n[ops]\nlisten = \"127.0.0.1:0\"",
            ),
            ("backends.zoho", &format!("backends.{tag}")),
            ("backend = \"zoho\"", &format!("backend = \"{tag}\"")),
            ("pages_per_second = 1\n", "pages_per_second = 1000\n"),
        ],
    );
    let daemon = crate::ops::Daemon::start_with_env(
        &text,
        &[
            ("ZOHO_CLIENT_SECRET", "zs3cret-100k"),
            ("ZOHO_REFRESH_TOKEN", "1000.refresh.100k"),
        ],
    )
    .await;
    wait_metric(
        &daemon,
        "thirdparty_gateway_directory_entries",
        tag,
        CONTACTS as f64,
        Duration::from_secs(300),
    )
    .await;
    daemon
        .wait_log(&format!("{CONTACTS} record(s) in 51 page(s)"))
        .await;
    // The last contact, past the 100 000th, opens from the index.
    let last = CONTACTS - 1;
    let reply = daemon
        .post(&call(&format!("+336{:08}", 10_000_000 + last)))
        .await;
    assert_eq!(
        reply.json()["url"],
        format!(
            "https://crm.zoho.eu/crm/org20101234567/tab/Contacts/{}",
            id(last)
        )
    );
    let s = zoho.state.lock().unwrap();
    assert_eq!(s.searches, s.pages, "no look-up: every query was a page");
    assert!(s.queries.iter().all(|q| !q.contains("offset")));
    assert!(
        s.queries[50].contains(&format!("where id > '{}'", id(99_999))),
        "{}",
        s.queries[50]
    );
}
