//! `examples/vtiger.toml` end to end against the strict test vTiger: one
//! VTQL query per module (Contacts, then Leads, then Accounts) over one
//! shared session, each asking every phone field LIKE the caller's digits
//! and the gateway picking the record that holds the caller's number (the
//! whole caller-match matrix), a session PHP's garbage collection ends
//! renewed before it does (or once for all three backends after), names
//! vTiger stores HTML-encoded (its UI writes `<` as `&lt;`) shown as typed,
//! and the `login = "OTHER"` references `check` refuses.

use std::sync::Arc;

use serde_json::json;

use crate::examples::example_config;
use crate::phone_matrix::{assert_all, calls, people};
use crate::support::*;
use crate::test_crms::vtiger::{ui_saved, Vtiger, GC_MAXLIFETIME};
use crate::test_crms::PAYLOAD;

const VT: &str = "https://vtiger.example.org";

/// The example against `vt` without its caller directory (these tests
/// count the live look-ups), its access key read from `key_var` (each test
/// its own variable and key), plus `extra` appended.
async fn start(vt: &Vtiger, key_var: &str, key: &str, extra: &str) -> TestGateway {
    std::env::set_var(key_var, key);
    let secret = format!("secret('{key_var}')");
    let text = example_config(
        "vtiger.toml",
        &[
            ("https://vtiger.example.org/webservice.php", &vt.url()),
            ("secret('VTIGER_ACCESS_KEY')", &secret),
        ],
    );
    start_gateway(&format!("{}\n{extra}", without_directory(&text))).await
}

/// A config without its `[backends.*.directory]` tables (and their
/// sub-tables): the live path only.
pub fn without_directory(text: &str) -> String {
    let mut out = String::new();
    let mut skipping = false;
    for line in text.lines() {
        if line.starts_with('[') {
            skipping = line.contains(".directory]") || line.contains(".directory.");
        }
        if !skipping {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

fn call(caller: &str) -> String {
    PAYLOAD.replace("\"0612345678\"", &serde_json::to_string(caller).unwrap())
}

fn card(module: &str, record: u32, title: &str) -> serde_json::Value {
    json!({"action":"open","event":"EventRinging",
           "url": format!("{VT}/index.php?module={module}&view=Detail&record={record}"),
           "autopause":false,"title":title})
}

/// A lead and an account the contacts do not share numbers with.
fn with_lead_and_account(vt: &Vtiger) {
    let mut s = vt.state.lock().unwrap();
    s.add(
        "Leads",
        77,
        &[
            ("firstname", "Paul"),
            ("lastname", "Martin"),
            ("company", "ACME"),
            ("mobile", "+33 6 98 76 54 32"),
        ],
    );
    s.add(
        "Accounts",
        501,
        &[
            ("accountname", "Dupont SARL"),
            ("otherphone", "+33145678901"),
        ],
    );
}

#[tokio::test]
async fn a_contact_opens_its_card_after_one_login_and_the_next_call_reuses_the_session() {
    let vt = Vtiger::start("gateway", "k-recipe-contact").await;
    let gw = start(&vt, "TPGW_IT_VTR_CONTACT", "k-recipe-contact", "").await;
    let client = gw.client();
    for _ in 0..2 {
        let reply = client.post(gw.addr, None, &call("0612345678")).await;
        assert_eq!(reply.json(), card("Contacts", 345, "Jeanne O'Neil"));
    }
    let s = vt.state.lock().unwrap();
    assert_eq!((s.challenges, s.logins, s.queries), (1, 1, 2));
    let p = "'%6%1%2%3%4%5%6%7%8%'";
    assert_eq!(
        s.vtql[0],
        format!(
            "SELECT id,firstname,lastname,phone,mobile,homephone,otherphone,fax FROM Contacts WHERE phone LIKE {p} OR mobile LIKE {p} OR homephone LIKE {p} OR otherphone LIKE {p} OR fax LIKE {p} LIMIT 30;"
        )
    );
    assert!(s.query_errors.is_empty(), "{:?}", s.query_errors);
    let login = vt
        .crm
        .seen()
        .into_iter()
        .find(|r| r.method == "POST")
        .unwrap();
    assert!(!login.text().contains("k-recipe-contact"));
}

#[tokio::test]
async fn a_caller_only_in_leads_opens_the_leads_card_after_a_contacts_query_on_the_same_session() {
    let vt = Vtiger::start("gateway", "k-recipe-leads").await;
    with_lead_and_account(&vt);
    let gw = start(&vt, "TPGW_IT_VTR_LEADS", "k-recipe-leads", "").await;
    let reply = gw.client().post(gw.addr, None, &call("0698765432")).await;
    assert_eq!(reply.json(), card("Leads", 77, "Paul Martin (ACME)"));
    let s = vt.state.lock().unwrap();
    assert_eq!(s.modules_asked(), ["Contacts", "Leads"]);
    assert_eq!((s.challenges, s.logins), (1, 1));
    assert_eq!(s.query_sessions[0], s.query_sessions[1]);
    assert!(s.query_errors.is_empty(), "{:?}", s.query_errors);
}

#[tokio::test]
async fn a_caller_only_in_accounts_is_found_by_the_third_query_and_nobody_gives_none() {
    let vt = Vtiger::start("gateway", "k-recipe-accounts").await;
    with_lead_and_account(&vt);
    let gw = start(&vt, "TPGW_IT_VTR_ACCOUNTS", "k-recipe-accounts", "").await;
    let client = gw.client();
    let reply = client.post(gw.addr, None, &call("01 45 67 89 01")).await;
    assert_eq!(reply.json(), card("Accounts", 501, "Dupont SARL"));
    {
        let s = vt.state.lock().unwrap();
        assert_eq!(s.modules_asked(), ["Contacts", "Leads", "Accounts"]);
        assert_eq!(s.logins, 1);
        assert!(s.query_sessions.iter().all(|q| *q == s.query_sessions[0]));
    }
    let reply = client.post(gw.addr, None, &call("0298765432")).await;
    assert_eq!(reply.json(), json!({"action":"none"}));
    let s = vt.state.lock().unwrap();
    assert_eq!(
        s.modules_asked()[3..],
        ["Contacts", "Leads", "Accounts"],
        "none only after the three modules"
    );
    assert_eq!((s.challenges, s.logins, s.queries), (1, 1, 6));
    assert!(s.query_errors.is_empty(), "{:?}", s.query_errors);
}

#[tokio::test]
async fn numbers_stored_in_each_typed_shape_are_found_from_each_caller_shape() {
    let vt = Vtiger::start("gateway", "k-recipe-shapes").await;
    // One number per stored shape, each in another phone field.
    let stored = [
        (501, "phone", "06 11 22 33 44", "611223344"),
        (502, "mobile", "+33 6 22 33 44 55", "622334455"),
        (503, "homephone", "0633445566", "633445566"),
        (504, "otherphone", "+33644556677", "644556677"),
    ];
    {
        let mut s = vt.state.lock().unwrap();
        for (id, field, typed, _) in stored {
            s.add(
                "Contacts",
                id,
                &[
                    ("firstname", "C"),
                    ("lastname", &id.to_string()),
                    (field, typed),
                ],
            );
        }
    }
    let gw = start(&vt, "TPGW_IT_VTR_SHAPES", "k-recipe-shapes", "").await;
    let client = gw.client();
    for (id, field, typed, significant) in stored {
        // As the PBX may present it: national, E.164, international
        // prefix, without the trunk 0.
        for caller in [
            format!("0{significant}"),
            format!("+33{significant}"),
            format!("0033{significant}"),
            significant.to_owned(),
        ] {
            let reply = client.post(gw.addr, None, &call(&caller)).await;
            assert_eq!(
                reply.json(),
                card("Contacts", id, &format!("C {id}")),
                "{caller} against {field} = {typed:?}"
            );
        }
    }
    let s = vt.state.lock().unwrap();
    assert_eq!((s.logins, s.queries), (1, 16));
    assert!(s.query_errors.is_empty(), "{:?}", s.query_errors);
}

#[tokio::test]
async fn a_session_dropped_while_querying_leads_is_renewed_once_and_serves_the_next_contacts_query()
{
    let vt = Vtiger::start("gateway", "k-recipe-drop").await;
    with_lead_and_account(&vt);
    vt.state.lock().unwrap().expire_before = Some("Leads");
    let gw = start(&vt, "TPGW_IT_VTR_DROP", "k-recipe-drop", "").await;
    let client = gw.client();
    let reply = client.post(gw.addr, None, &call("0698765432")).await;
    assert_eq!(reply.json(), card("Leads", 77, "Paul Martin (ACME)"));
    let reply = client.post(gw.addr, None, &call("0612345678")).await;
    assert_eq!(reply.json(), card("Contacts", 345, "Jeanne O'Neil"));
    let s = vt.state.lock().unwrap();
    assert_eq!((s.challenges, s.logins, s.refused_sessions), (2, 2, 1));
    // Accepted queries: Contacts on the first session, then Leads retried
    // and the next call's Contacts on the second.
    assert_eq!(s.modules_asked(), ["Contacts", "Leads", "Contacts"]);
    let q = &s.query_sessions;
    assert_ne!(q[0], q[1]);
    assert_eq!(q[1], q[2]);
}

/// One route per module, so concurrent calls reach all three backends.
const PER_MODULE_ROUTES: &str = r#"
[[routes]]
name = "vt-contacts-only"
path = "/contacts"
backend = "vtiger-contacts"

[[routes]]
name = "vt-leads-only"
path = "/leads"
backend = "vtiger-leads"

[[routes]]
name = "vt-accounts-only"
path = "/accounts"
backend = "vtiger-accounts"
"#;

#[tokio::test]
async fn hundred_concurrent_calls_on_the_three_backends_after_the_session_died_log_in_once() {
    let vt = Vtiger::start("gateway", "k-recipe-100").await;
    with_lead_and_account(&vt);
    let gw = start(
        &vt,
        "TPGW_IT_VTR_HUNDRED",
        "k-recipe-100",
        PER_MODULE_ROUTES,
    )
    .await;
    let client = Arc::new(gw.client());
    let warm = client
        .post_at(gw.addr, "/contacts", None, &call("0612345678"))
        .await;
    assert_eq!(warm.json(), card("Contacts", 345, "Jeanne O'Neil"));
    vt.state.lock().unwrap().expire_sessions();
    let targets = [
        (
            "/contacts",
            "0612345678",
            card("Contacts", 345, "Jeanne O'Neil"),
        ),
        (
            "/leads",
            "0698765432",
            card("Leads", 77, "Paul Martin (ACME)"),
        ),
        (
            "/accounts",
            "0145678901",
            card("Accounts", 501, "Dupont SARL"),
        ),
    ];
    let addr = gw.addr;
    let calls: Vec<_> = (0..100)
        .map(|i| {
            let (path, caller, want) = targets[i % 3].clone();
            let client = Arc::clone(&client);
            tokio::spawn(async move {
                let reply = client.post_at(addr, path, None, &call(caller)).await;
                (reply.json(), want)
            })
        })
        .collect();
    for c in calls {
        let (got, want) = tokio::time::timeout(std::time::Duration::from_secs(60), c)
            .await
            .expect("every call answered")
            .unwrap();
        assert_eq!(got, want);
    }
    let s = vt.state.lock().unwrap();
    assert_eq!(
        s.logins, 2,
        "one login at start, one after the session died"
    );
    assert_eq!(s.challenges, 2);
}

#[tokio::test]
async fn hostile_callers_stay_digits_and_quotes_inside_their_vtql_strings() {
    let vt = Vtiger::start("gateway", "k-recipe-hostile").await;
    let gw = start(&vt, "TPGW_IT_VTR_HOSTILE", "k-recipe-hostile", "").await;
    let client = gw.client();
    let hostile = [
        "0612345678' OR '1'='1",
        "06123456\\'78",
        "061234567%",
        "06_12345678",
        "0612\"345678",
        "0612345678\\",
    ];
    for caller in hostile {
        let reply = client.post(gw.addr, None, &call(caller)).await;
        let action = reply.json()["action"].clone();
        assert!(action == "open" || action == "none", "{caller}: {action}");
    }
    let s = vt.state.lock().unwrap();
    assert!(s.query_errors.is_empty(), "{:?}", s.query_errors);
    // phone_like keeps digits and its wildcard; sql_quote is there for
    // whatever else a template puts in a string.
    for values in &s.values {
        for v in values {
            assert!(
                v.chars().all(|c| c.is_ascii_digit() || c == '%'),
                "{v:?} reached the query"
            );
        }
    }
}

#[tokio::test]
async fn login_metrics_name_the_owner_and_session_metrics_the_backend_that_looked_up() {
    let vt = Vtiger::start("gateway", "k-recipe-metrics").await;
    with_lead_and_account(&vt);
    let gw = start(&vt, "TPGW_IT_VTR_METRICS", "k-recipe-metrics", "").await;
    let ops = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ops_addr = ops.local_addr().unwrap();
    let ops_task = tokio::spawn(thirdparty_gateway::ops::run(
        ops,
        Arc::clone(&gw.live),
        std::future::pending(),
    ));
    let reply = gw.client().post(gw.addr, None, &call("0698765432")).await;
    assert_eq!(reply.json(), card("Leads", 77, "Paul Martin (ACME)"));
    let (status, text) = crate::ops::ops_get_at(ops_addr, "/metrics").await;
    ops_task.abort();
    assert_eq!(status, 200);
    let has = |series: &str| text.lines().any(|l| l.starts_with(series));
    let value = |series: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(series))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {series} in {text}"))
    };
    assert_eq!(
        value(r#"thirdparty_gateway_logins_total{backend="vtiger-contacts",result="ok"}"#),
        1.0
    );
    assert!(
        !has(r#"thirdparty_gateway_logins_total{backend="vtiger-leads""#),
        "{text}"
    );
    assert_eq!(
        value(
            r#"thirdparty_gateway_login_sessions_total{backend="vtiger-contacts",result="fresh"}"#
        ),
        1.0
    );
    assert_eq!(
        value(r#"thirdparty_gateway_login_sessions_total{backend="vtiger-leads",result="hit"}"#),
        1.0
    );
}

/// The errors `check` gives for the example with `(from, to)` swapped in.
fn load_errors(swaps: &[(&str, &str)], extra: &str) -> String {
    std::env::set_var("TPGW_IT_VTR_CHECK", "k");
    let mut all = vec![("secret('VTIGER_ACCESS_KEY')", "secret('TPGW_IT_VTR_CHECK')")];
    all.extend_from_slice(swaps);
    let text = format!("{}\n{extra}", example_config("vtiger.toml", &all));
    let dir = tempfile::TempDir::new().unwrap();
    TestCa::new().write(dir.path());
    let path = dir.path().join("config.toml");
    std::fs::write(&path, text).unwrap();
    match thirdparty_gateway::config::load(&path) {
        Ok(_) => String::new(),
        Err(e) => e.to_string(),
    }
}

#[test]
fn a_shared_login_must_name_a_backend_with_a_login_of_its_own() {
    assert_eq!(load_errors(&[], ""), "");
    let leads = "url = \"https://vtiger.example.org/webservice.php\"\nencoding = \"query\"\nlogin = \"vtiger-contacts\"\n\n[backends.vtiger-leads.body]";
    let accounts = "url = \"https://vtiger.example.org/webservice.php\"\nencoding = \"query\"\nlogin = \"vtiger-contacts\"\n\n[backends.vtiger-accounts.body]";
    let errors = load_errors(
        &[(
            leads,
            &leads.replace("\"vtiger-contacts\"", "\"vtiger-contact\""),
        )],
        "",
    );
    assert!(
        errors.contains("backends.vtiger-leads.login: no [backends.vtiger-contact] to share the login of (did you mean \"vtiger-contacts\"?)"),
        "{errors}"
    );
    let errors = load_errors(
        &[(
            accounts,
            &accounts.replace("\"vtiger-contacts\"", "\"vtiger-leads\""),
        )],
        "",
    );
    assert!(
        errors.contains("backends.vtiger-accounts.login: backends.vtiger-leads shares the login of \"vtiger-contacts\" itself"),
        "{errors}"
    );
    let errors = load_errors(
        &[(
            accounts,
            &accounts.replace("\"vtiger-contacts\"", "\"vtiger-accounts\""),
        )],
        "",
    );
    assert!(
        errors.contains("backends.vtiger-accounts.login: a backend cannot share its own login"),
        "{errors}"
    );
    let plain = "[backends.plain]\nurl = \"https://crm.example.org/x\"\nencoding = \"query\"\nreply = { format = \"json\", extract = { url = \"u\" } }\n";
    let errors = load_errors(
        &[(
            accounts,
            &accounts.replace("\"vtiger-contacts\"", "\"plain\""),
        )],
        plain,
    );
    assert!(
        errors.contains("backends.vtiger-accounts.login: backends.plain has no login to share: it needs [backends.plain.login] or auth.type = \"oauth2\""),
        "{errors}"
    );
    let oauth = "login = \"vtiger-contacts\"\nauth = { type = \"oauth2\", grant = \"client_credentials\", token_url = \"https://crm.example.org/token\", client_id = \"c\", client_secret_env = \"TPGW_IT_VTR_CHECK\" }\n\n[backends.vtiger-leads.body]";
    let errors = load_errors(
        &[(
            leads,
            &leads.replace(
                "login = \"vtiger-contacts\"\n\n[backends.vtiger-leads.body]",
                oauth,
            ),
        )],
        "",
    );
    assert!(
        errors.contains("backends.vtiger-leads.auth: a backend that shares a login cannot have auth.type = \"oauth2\" too"),
        "{errors}"
    );
    // A login table keeps serde's own message for a misspelt key.
    let errors = load_errors(&[("idle_ttl_s = 1200", "idle_ttl = 1200")], "");
    assert!(
        errors.contains("unknown field `idle_ttl` (did you mean `idle_ttl_s`?)"),
        "{errors}"
    );
    let errors = load_errors(
        &[(
            leads,
            &leads.replace("login = \"vtiger-contacts\"", "login = 3"),
        )],
        "",
    );
    assert!(
        errors.contains("backends.vtiger-leads.login")
            && errors.contains("the name of the backend whose login to share"),
        "{errors}"
    );
}

#[test]
fn check_reads_login_values_in_a_sharing_backend_without_a_warning_but_not_elsewhere() {
    // The example itself loads with no warning (check_cmd proves it); a
    // backend sharing nothing that reads login.* is still warned about.
    let dir = tempfile::TempDir::new().unwrap();
    TestCa::new().write(dir.path());
    std::env::set_var("TPGW_IT_VTR_PROBE", "k");
    let text = example_config(
        "vtiger.toml",
        &[
            ("secret('VTIGER_ACCESS_KEY')", "secret('TPGW_IT_VTR_PROBE')"),
            (
                "login = \"vtiger-contacts\"\n\n[backends.vtiger-accounts.body]",
                "\n[backends.vtiger-accounts.body]",
            ),
        ],
    );
    let path = dir.path().join("config.toml");
    std::fs::write(&path, text).unwrap();
    let config = thirdparty_gateway::config::load(&path).unwrap();
    let warnings: Vec<String> = config.warnings.iter().map(|w| w.to_string()).collect();
    // Its look-up and its directory's pages both read the session.
    assert_eq!(warnings.len(), 2, "{warnings:#?}");
    for (warning, key) in warnings.iter().zip([
        "backends.vtiger-accounts.body.sessionName",
        "backends.vtiger-accounts.directory.body.sessionName",
    ]) {
        assert!(
            warning.contains(key) && warning.contains("login.* is always empty here"),
            "{warnings:#?}"
        );
    }
}

#[tokio::test]
async fn simulate_shows_the_second_module_on_the_login_of_the_first() {
    std::env::set_var("TPGW_IT_VTR_SIM", "k-recipe-sim");
    let vt = Vtiger::start("gateway", "k-recipe-sim").await;
    with_lead_and_account(&vt);
    let config = example_config(
        "vtiger.toml",
        &[
            ("https://vtiger.example.org/webservice.php", &vt.url()),
            ("secret('VTIGER_ACCESS_KEY')", "secret('TPGW_IT_VTR_SIM')"),
        ],
    );
    let text = simulate_cli(&config, &call("0698765432"), &[], &[]).await;
    assert!(
        text.contains("backend \"vtiger-contacts\" login: logged in\n"),
        "{text}"
    );
    assert!(
        text.contains("backend \"vtiger-leads\" login: cached session (0 s old) (the login of \"vtiger-contacts\")"),
        "{text}"
    );
    assert!(text.contains("login.sessionName = [redacted]"), "{text}");
    assert!(!text.contains("k-recipe-sim"), "{text}");
    let dry = simulate_cli(&config, &call("0698765432"), &[], &["--dry-run"]).await;
    assert!(
        dry.contains("backend \"vtiger-leads\" login: shares the login of \"vtiger-contacts\""),
        "{dry}"
    );
    assert_eq!(
        vt.state.lock().unwrap().logins,
        1,
        "the dry run logs in nowhere"
    );
}

/// Holds tokio's paused clock still while calls run: it moves only by
/// `advance` (a running blocking task stops its auto-advance), so no
/// deadline fires while the CRM answers.
struct HeldClock(#[allow(dead_code)] std::sync::mpsc::Sender<()>);

fn hold_clock() -> HeldClock {
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    tokio::task::spawn_blocking(move || {
        let _ = rx.recv();
    });
    HeldClock(tx)
}

#[tokio::test(start_paused = true)]
async fn a_session_unused_for_1200_s_is_renewed_before_php_s_gc_ends_it_at_1440_s() {
    let _clock = hold_clock();
    let vt = Vtiger::start("gateway", "k-recipe-gc").await;
    with_lead_and_account(&vt);
    let gw = start(&vt, "TPGW_IT_VTR_GC", "k-recipe-gc", "").await;
    let accounts = card("Accounts", 501, "Dupont SARL");
    let ask = || async {
        gw.client()
            .post(gw.addr, None, &call("0145678901"))
            .await
            .json()
    };
    assert_eq!(ask().await, accounts);
    // Unused 1100 s: both keep it.
    tokio::time::advance(std::time::Duration::from_secs(1100)).await;
    assert_eq!(ask().await, accounts);
    assert_eq!(vt.state.lock().unwrap().logins, 1);
    // Unused 1300 s: the gateway renews it before PHP would drop it.
    tokio::time::advance(std::time::Duration::from_secs(1300)).await;
    assert!(std::time::Duration::from_secs(1300) < GC_MAXLIFETIME);
    assert_eq!(ask().await, accounts);
    let s = vt.state.lock().unwrap();
    assert_eq!((s.logins, s.refused_sessions), (2, 0));
    let q = &s.query_sessions;
    assert_eq!(q.len(), 9);
    assert!(q[..6].iter().all(|x| *x == q[0]) && q[6..].iter().all(|x| *x == q[6]));
    assert_ne!(q[0], q[6]);
}

#[tokio::test(start_paused = true)]
async fn a_session_php_s_gc_ended_answers_invalid_sessionid_and_is_renewed_once_for_all_three_modules(
) {
    let _clock = hold_clock();
    let vt = Vtiger::start("gateway", "k-recipe-gc-late").await;
    with_lead_and_account(&vt);
    // Renewing later than PHP's gc: the CRM ends the session first.
    std::env::set_var("TPGW_IT_VTR_GC_LATE", "k-recipe-gc-late");
    let late = example_config(
        "vtiger.toml",
        &[
            ("https://vtiger.example.org/webservice.php", &vt.url()),
            (
                "secret('VTIGER_ACCESS_KEY')",
                "secret('TPGW_IT_VTR_GC_LATE')",
            ),
            ("idle_ttl_s = 1200", "idle_ttl_s = 1800"),
        ],
    );
    let gw = start_gateway(&without_directory(&late)).await;
    let accounts = card("Accounts", 501, "Dupont SARL");
    let ask = || async {
        gw.client()
            .post(gw.addr, None, &call("0145678901"))
            .await
            .json()
    };
    assert_eq!(ask().await, accounts);
    tokio::time::advance(GC_MAXLIFETIME + std::time::Duration::from_secs(60)).await;
    assert_eq!(ask().await, accounts);
    let s = vt.state.lock().unwrap();
    assert_eq!((s.logins, s.refused_sessions), (2, 1));
    // Each call: three modules on one session; the retry on the new one.
    let q = &s.query_sessions;
    assert_eq!(q.len(), 6);
    assert!(q[..3].iter().all(|x| *x == q[0]) && q[3..].iter().all(|x| *x == q[3]));
    assert_ne!(q[0], q[3]);
}

/// The module and field each matrix person is stored in: across the three
/// modules and every phone field of each.
fn matrix_home(id: u32) -> (&'static str, &'static str) {
    const HOMES: [(&str, &[&str]); 3] = [
        (
            "Contacts",
            &["phone", "mobile", "homephone", "otherphone", "fax"],
        ),
        ("Leads", &["phone", "mobile", "fax"]),
        ("Accounts", &["phone", "otherphone", "fax"]),
    ];
    let (module, fields) = HOMES[id as usize % 3];
    (module, fields[id as usize / 3 % fields.len()])
}

/// Record numbers of matrix people: 1000 + their id.
const MATRIX_BASE: u32 = 1000;

/// Whose card opened: the matrix person (`Some(0)`: someone else's card).
fn matrix_opened(reply: &Reply) -> Option<u32> {
    let v = reply.json();
    if v["action"] == "none" {
        return None;
    }
    let url = v["url"].as_str().expect("an open reply has a url");
    let record: u32 = url
        .rsplit("record=")
        .next()
        .and_then(|r| r.parse().ok())
        .unwrap_or(0);
    let id = record.saturating_sub(MATRIX_BASE);
    let home = people()
        .iter()
        .find(|p| p.id == id)
        .map(|p| matrix_home(p.id).0);
    match home {
        Some(module) if url.contains(&format!("module={module}&")) => Some(id),
        _ => Some(0),
    }
}

#[tokio::test]
async fn every_stored_format_in_every_module_and_field_is_found_and_no_look_alike_opens() {
    let vt = Vtiger::start("gateway", "k-recipe-matrix").await;
    {
        let mut s = vt.state.lock().unwrap();
        for p in people() {
            let (module, field) = matrix_home(p.id);
            let name = format!("P{}", p.id);
            let mut fields = vec![(field, p.stored)];
            match module {
                "Accounts" => fields.push(("accountname", &name)),
                _ => fields.extend([("firstname", "M"), ("lastname", name.as_str())]),
            }
            s.add(module, MATRIX_BASE + p.id, &fields);
        }
    }
    let gw = start(&vt, "TPGW_IT_VTR_MATRIX", "k-recipe-matrix", "").await;
    let client = gw.client();
    let mut results = Vec::new();
    for (caller, want) in calls() {
        let reply = client.post(gw.addr, None, &call(&caller)).await;
        results.push((caller, want, matrix_opened(&reply)));
    }
    assert_all("vTiger", &results);
    let s = vt.state.lock().unwrap();
    assert!(s.query_errors.is_empty(), "{:?}", s.query_errors);
    assert_eq!(s.logins, 1);
}

#[test]
fn the_test_vtiger_stores_text_as_vtiger_8_2_s_ui_saves_it() {
    // vtlib_purify: HTMLPurifier's text escaping, then &amp; back to &.
    for (typed, stored) in [
        ("Zoë D'Artagnan & Fils", "Zoë D'Artagnan & Fils"),
        ("Lou \"Le Roi\" <3 Ça", "Lou \"Le Roi\" &lt;3 Ça"),
        ("Dupré-L'Hôte > 2 < 3", "Dupré-L'Hôte &gt; 2 &lt; 3"),
        (" +33 (0)6 12 34 56 82 ", "+33 (0)6 12 34 56 82"),
    ] {
        assert_eq!(ui_saved(typed), stored, "{typed}");
    }
    // A tag-like "<SARL>" would be removed by HTMLPurifier: refused here.
    assert!(std::panic::catch_unwind(|| ui_saved("O\"Brien <SARL>")).is_err());
}

#[tokio::test]
async fn names_come_back_as_typed_in_every_module_though_vtiger_stores_some_html_encoded() {
    let vt = Vtiger::start("gateway", "k-recipe-names").await;
    {
        let mut s = vt.state.lock().unwrap();
        // Typed in vTiger's edit view.
        s.add(
            "Contacts",
            601,
            &[
                ("firstname", "Zoë"),
                ("lastname", "D'Artagnan & Fils"),
                ("mobile", "06 11 22 33 01"),
            ],
        );
        s.add(
            "Leads",
            602,
            &[
                ("firstname", "Lou \"Le Roi\""),
                ("lastname", "<3 Ça & Œuvre"),
                ("company", "Dupré-L'Hôte > 2"),
                ("phone", "+33 6 11 22 33 02"),
            ],
        );
        s.add(
            "Accounts",
            603,
            &[
                ("accountname", "O\"Brien <3 SARL & Fils"),
                ("fax", "0033 6 11 22 33 03"),
            ],
        );
        // Created through the webservice: stored as sent, < included.
        s.add_via_webservice(
            "Contacts",
            604,
            &[
                ("firstname", "Noël"),
                ("lastname", "O\"Hara <3 & Cie"),
                ("phone", "06.11.22.33.04"),
            ],
        );
    }
    let gw = start(&vt, "TPGW_IT_VTR_NAMES", "k-recipe-names", "").await;
    let client = gw.client();
    for (caller, module, record, title) in [
        ("0611223301", "Contacts", 601, "Zoë D'Artagnan & Fils"),
        (
            "+33611223302",
            "Leads",
            602,
            "Lou \"Le Roi\" <3 Ça & Œuvre (Dupré-L'Hôte > 2)",
        ),
        ("611223303", "Accounts", 603, "O\"Brien <3 SARL & Fils"),
        ("0611223304", "Contacts", 604, "Noël O\"Hara <3 & Cie"),
    ] {
        let reply = client.post(gw.addr, None, &call(caller)).await;
        assert_eq!(reply.json(), card(module, record, title), "{caller}");
    }
    // What vTiger holds, and hands back, for the names typed in its UI.
    let s = vt.state.lock().unwrap();
    let stored: Vec<&str> = s
        .records
        .iter()
        .flat_map(|r| &r.fields)
        .filter(|(f, _)| matches!(*f, "lastname" | "company" | "accountname"))
        .map(|(_, v)| v.as_str())
        .collect();
    assert!(stored.contains(&"&lt;3 Ça & Œuvre"), "{stored:?}");
    assert!(stored.contains(&"Dupré-L'Hôte &gt; 2"), "{stored:?}");
    assert!(stored.contains(&"O\"Brien &lt;3 SARL & Fils"), "{stored:?}");
    assert!(stored.contains(&"O\"Hara <3 & Cie"), "{stored:?}");
    assert!(s.query_errors.is_empty(), "{:?}", s.query_errors);
}

/// The example with its caller directory on, the three backends renamed
/// `{tag}-contacts`, `{tag}-leads`, `{tag}-accounts` (each test's log lines
/// its own), `swaps` applied to the directory settings.
async fn start_directory(
    vt: &Vtiger,
    key_var: &str,
    key: &str,
    tag: &str,
    swaps: &[(&str, &str)],
) -> TestGateway {
    std::env::set_var(key_var, key);
    let secret = format!("secret('{key_var}')");
    let mut all = vec![
        ("https://vtiger.example.org/webservice.php", vt.url()),
        ("secret('VTIGER_ACCESS_KEY')", secret),
        ("vtiger-contacts", format!("{tag}-contacts")),
        ("vtiger-leads", format!("{tag}-leads")),
        ("vtiger-accounts", format!("{tag}-accounts")),
        // Tests need not wait for the example's 2 pages a second.
        ("pages_per_second = 2", "pages_per_second = 100".into()),
    ];
    all.extend(swaps.iter().map(|(a, b)| (*a, (*b).to_owned())));
    let swaps: Vec<(&str, &str)> = all.iter().map(|(a, b)| (*a, b.as_str())).collect();
    start_gateway(&example_config("vtiger.toml", &swaps)).await
}

/// Waits (at most 30 s) for more than `skip` log lines holding every
/// needle; returns how many there are.
pub async fn wait_log(needles: &[&str], skip: usize) -> usize {
    for _ in 0..600 {
        let n = log_lines(needles[0])
            .iter()
            .filter(|l| needles.iter().all(|n| l.contains(n)))
            .count();
        if n > skip {
            return n;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("no log line with {needles:?}");
}

/// Look-up queries the CRM answered (the syncs' page through by id).
fn lookups(vt: &Vtiger) -> usize {
    let s = vt.state.lock().unwrap();
    s.vtql.iter().filter(|q| q.contains(" LIKE ")).count()
}

#[tokio::test]
async fn a_full_sync_pages_each_module_by_id_and_known_callers_open_with_no_query() {
    let vt = Vtiger::start("gateway", "k-recipe-dir").await;
    with_lead_and_account(&vt);
    let fields = ["phone", "mobile", "homephone", "otherphone", "fax"];
    {
        let mut s = vt.state.lock().unwrap();
        for p in people() {
            let name = format!("P{}", p.id);
            let field = fields[p.id as usize % fields.len()];
            s.add(
                "Contacts",
                MATRIX_BASE + p.id,
                &[("firstname", "M"), ("lastname", &name), (field, p.stored)],
            );
        }
    }
    let contacts = vt
        .state
        .lock()
        .unwrap()
        .records
        .iter()
        .filter(|r| r.module == "Contacts")
        .count();
    // Pages of 7, to see the offsets move.
    let gw = start_directory(
        &vt,
        "TPGW_IT_VTR_DIR",
        "k-recipe-dir",
        "vtdfull",
        &[("page_size = 100", "page_size = 7")],
    )
    .await;
    let pages = contacts / 7 + 1;
    wait_log(
        &[
            "backend=vtdfull-contacts",
            "directory full sync",
            &format!("{contacts} record(s) in {pages} page(s)"),
        ],
        0,
    )
    .await;
    for module in ["leads", "accounts"] {
        wait_log(
            &[
                &format!("backend=vtdfull-{module}"),
                "directory full sync",
                "1 record(s) in 1 page(s)",
            ],
            0,
        )
        .await;
    }
    {
        let s = vt.state.lock().unwrap();
        assert!(s.query_errors.is_empty(), "{:?}", s.query_errors);
        let select = "SELECT id,firstname,lastname,phone,mobile,homephone,otherphone,fax FROM Contacts ORDER BY id LIMIT";
        let paged: Vec<&String> = s.vtql.iter().filter(|q| q.starts_with(select)).collect();
        let want: Vec<String> = (0..pages)
            .map(|i| format!("{select} {},7;", i * 7))
            .collect();
        assert_eq!(paged, want.iter().collect::<Vec<_>>());
        assert_eq!(s.logins, 1, "the syncs share the look-ups' login");
    }
    let client = gw.client();
    let mut results = Vec::new();
    for (caller, want) in calls() {
        let before = lookups(&vt);
        let reply = client.post(gw.addr, None, &call(&caller)).await;
        let v = reply.json();
        let got = v["url"].as_str().map(|url| {
            let record: u32 = url.rsplit("record=").next().unwrap().parse().unwrap();
            assert!(url.contains("module=Contacts&"), "{url}");
            record.saturating_sub(MATRIX_BASE)
        });
        if want.is_some() {
            assert_eq!(lookups(&vt), before, "{caller}: answered from the index");
        }
        results.push((caller, want, got));
    }
    assert_all("vTiger's directory", &results);
    // A lead: the Contacts index does not know it, so Contacts is asked
    // live (a contact added since the last sync), then Leads' index answers.
    let before = lookups(&vt);
    let reply = client.post(gw.addr, None, &call("0698765432")).await;
    assert_eq!(reply.json(), card("Leads", 77, "Paul Martin (ACME)"));
    assert_eq!(lookups(&vt), before + 1);
    let s = vt.state.lock().unwrap();
    assert!(s.vtql.last().unwrap().contains(" FROM Contacts WHERE "));
}

#[tokio::test]
async fn a_number_edited_in_vtiger_opens_after_the_next_incremental_sync_with_no_query() {
    let vt = Vtiger::start("gateway", "k-recipe-dir-edit").await;
    let gw = start_directory(
        &vt,
        "TPGW_IT_VTR_DIR_EDIT",
        "k-recipe-dir-edit",
        "vtdedit",
        &[("every_s = 60", "every_s = 1")],
    )
    .await;
    wait_log(
        &[
            "backend=vtdedit-contacts",
            "directory full sync",
            "1 record(s)",
        ],
        0,
    )
    .await;
    let client = gw.client();
    let jeanne = card("Contacts", 345, "Jeanne O'Neil");
    assert_eq!(
        client.post(gw.addr, None, &call("0612345678")).await.json(),
        jeanne
    );
    assert_eq!(lookups(&vt), 0);

    // Jeanne's phone changes in vTiger's edit view: modifiedtime moves.
    vt.state
        .lock()
        .unwrap()
        .edit("12x345", "phone", "+33 6 11 11 11 11");
    let needles = ["backend=vtdedit-contacts", "directory incremental sync"];
    let seen = wait_log(&needles, 0).await;
    wait_log(&needles, seen + 1).await;
    assert_eq!(
        client.post(gw.addr, None, &call("0611111111")).await.json(),
        jeanne
    );
    assert_eq!(lookups(&vt), 0, "answered from the index");
    // Her old number left the index with the edit; the live look-up finds
    // nobody either.
    let reply = client.post(gw.addr, None, &call("0612345678")).await;
    assert_eq!(reply.json(), json!({"action": "none"}));
    assert_eq!(lookups(&vt), 3);

    let s = vt.state.lock().unwrap();
    assert!(s.query_errors.is_empty(), "{:?}", s.query_errors);
    let head = "SELECT id,firstname,lastname,phone,mobile,homephone,otherphone,fax FROM Contacts WHERE modifiedtime > '";
    let since: Vec<&str> = s
        .vtql
        .iter()
        .filter_map(|q| {
            q.strip_prefix(head)?
                .strip_suffix("' ORDER BY id LIMIT 0,100;")
        })
        .collect();
    assert!(!since.is_empty(), "{:#?}", s.vtql);
    for t in since {
        assert!(
            crate::test_crms::vtql::mysql_datetime(t).as_deref() == Some(t),
            "{t}"
        );
    }
}
