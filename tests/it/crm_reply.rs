//! `simulate --crm-reply BACKEND=FILE`: every example in `examples/` read
//! with a reply saved in its CRM's own shape (`tests/fixtures/crm-replies/`,
//! a look-alike record first, the caller's second) opens the caller's card,
//! with no login and no request to the CRM; a misspelt backend, a missing,
//! odd or oversized file is refused before anything runs.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::examples::example_config;
use crate::support::*;
use crate::test_crms::vtiger::Vtiger;
use crate::test_crms::PAYLOAD_NO_TOKEN as PAYLOAD;

/// Every secret an example reads, with a value: `check` needs them, and
/// nothing is sent with them.
const SECRETS: [(&str, &str); 15] = [
    ("VTIGER_ACCESS_KEY", "vtiger-key-1"),
    ("DOLIBARR_API_KEY", "dolibarr-key-1"),
    ("ESPOCRM_API_KEY", "espo-key-1"),
    ("ESPOCRM_SECRET_KEY", "espo-secret-1"),
    ("HUBSPOT_ACCESS_TOKEN", "hubspot-token-1"),
    ("DYNAMICS_CLIENT_SECRET", "dynamics-secret-1"),
    ("SALESFORCE_CLIENT_SECRET", "salesforce-secret-1"),
    ("SUGAR_PASSWORD", "sugar-password-1"),
    ("SUITECRM_CLIENT_SECRET", "suite-secret-1"),
    ("ODOO_API_KEY", "odoo-key-1"),
    ("ZOHO_CLIENT_SECRET", "zoho-secret-1"),
    ("ZOHO_REFRESH_TOKEN", "zoho-refresh-1"),
    ("CRM_PASSWORD", "crm-password-1"),
    ("CRM_API_KEY", "crm-key-1"),
    ("CRM_API_TOKEN", "crm-token-1"),
];

/// A saved reply in `tests/fixtures/crm-replies/`.
fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/crm-replies")
        .join(name)
}

/// One example read with a saved reply: the backend it replaces, the
/// file, the call, and the card that must open.
struct Case {
    example: &'static str,
    backend: &'static str,
    reply: &'static str,
    payload: &'static str,
    url: &'static str,
    title: &'static str,
}

const fn case(
    example: &'static str,
    backend: &'static str,
    reply: &'static str,
    url: &'static str,
    title: &'static str,
) -> Case {
    Case {
        example,
        backend,
        reply,
        payload: PAYLOAD,
        url,
        title,
    }
}

fn cases() -> Vec<Case> {
    let jeanne = "Jeanne O'Neil";
    vec![
        case("vtiger.toml", "vtiger-contacts", "vtiger.json",
            "https://vtiger.example.org/index.php?module=Contacts&view=Detail&record=345", jeanne),
        case("dolibarr.toml", "dolibarr-contact", "dolibarr.json",
            "https://erp.example.org/contact/card.php?id=12", jeanne),
        case("espocrm.toml", "espocrm", "espocrm.json",
            "https://crm.example.org/#Contact/view/6571a1b2c3d4e5f61", jeanne),
        case("hubspot.toml", "hubspot", "hubspot.json",
            "https://app.hubspot.com/contacts/12345678/record/0-1/102", jeanne),
        case("dynamics365.toml", "dynamics", "dynamics365.json",
            "https://contoso.crm.dynamics.com/main.aspx?pagetype=entityrecord&etn=contact&id=3f2504e0-4f89-11d3-9a0c-0305e82c3301", jeanne),
        case("salesforce.toml", "salesforce", "salesforce.json",
            "https://mydomain.lightning.force.com/lightning/r/Contact/003xx0000002AAA/view", jeanne),
        case("sugarcrm.toml", "sugar", "sugarcrm.json",
            "https://crm.example.org/index.php?module=Contacts&action=DetailView&record=5c1b3a7e-0000-4000-8000-000000000002", jeanne),
        case("suitecrm7.toml", "suitecrm", "suitecrm.json",
            "https://crm.example.org/index.php?module=Contacts&action=DetailView&record=7e1c0a52-0000-4000-8000-000000000002", jeanne),
        case("suitecrm8.toml", "suitecrm", "suitecrm.json",
            "https://crm.example.org/#/contacts/record/7e1c0a52-0000-4000-8000-000000000002", jeanne),
        case("odoo.toml", "odoo", "odoo.json",
            "https://odoo.example.org/odoo/contacts/8", jeanne),
        case("odoo-jsonrpc.toml", "odoo", "odoo-jsonrpc.json",
            "https://odoo.example.org/web#id=8&model=res.partner&view_type=form", jeanne),
        case("zoho.toml", "zoho", "zoho.json",
            "https://crm.zoho.eu/crm/org20101234567/tab/Contacts/5725767000000411002", jeanne),
        Case { payload: SEED, ..case("soap-crm.toml", "soap-crm", "soap-crm.xml",
            "https://crm.example.org/crm/cards/1001", "ACME (1001)") },
        Case { payload: SEED, ..case("json-api.toml", "api", "json-api.json",
            "https://crm.example.org/customers/42", "ACME") },
        Case { payload: SEED, ..case("form-basic-auth.toml", "php-crm", "form-basic-auth.txt",
            "https://crm.lan/card/1001", "Caller 1001") },
        Case { payload: SEED, ..case("contract-backend.toml", "native", "contract-backend.json",
            "https://crm.example.org/c/7", "Card 7") },
    ]
}

/// The `reply:` line of a simulation, as JSON.
fn reply_of(text: &str) -> serde_json::Value {
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("reply: "))
        .unwrap_or_else(|| panic!("no reply line in:\n{text}"));
    serde_json::from_str(line).unwrap()
}

#[tokio::test]
async fn every_example_opens_the_callers_card_from_a_reply_saved_in_its_crms_shape() {
    let examples: Vec<String> =
        std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".toml"))
            .collect();
    let cases = cases();
    // Every example with a backend has its case (production.toml has none).
    for name in &examples {
        let has_backend = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("examples")
                .join(name),
        )
        .unwrap()
        .contains("\n[backends.");
        assert_eq!(
            cases.iter().any(|c| c.example == name),
            has_backend,
            "{name}: a case here for each example with a backend"
        );
    }
    for case in &cases {
        let config = example_config(case.example, &[]);
        let reply = fixture(case.reply);
        let arg = format!("{}={}", case.backend, reply.display());
        let text =
            simulate_cli_env(&config, case.payload, &[], &["--crm-reply", &arg], &SECRETS).await;
        let opened = reply_of(&text);
        assert_eq!(opened["action"], "open", "{}:\n{text}", case.example);
        assert_eq!(opened["url"], case.url, "{}:\n{text}", case.example);
        assert_eq!(opened["title"], case.title, "{}:\n{text}", case.example);
        assert!(
            text.contains(&format!(
                "backend {:?} reply: read from {}",
                case.backend,
                reply.display()
            )) && text.contains("--crm-reply, so no login and no request to the CRM"),
            "{}:\n{text}",
            case.example
        );
        // The recipes read every candidate: the look-alike (a Swiss
        // number with the same digits) first, dropped; the caller kept.
        if case.payload == PAYLOAD {
            assert!(
                text.contains("record 0: dropped") && text.contains("record 1: kept"),
                "{}:\n{text}",
                case.example
            );
        }
        for (_, secret) in SECRETS {
            assert!(
                !text.contains(secret),
                "{}: {secret} shown:\n{text}",
                case.example
            );
        }
    }
}

#[tokio::test]
async fn a_saved_reply_sends_no_login_and_no_request_to_the_crm() {
    let vt = Vtiger::start("gateway", "vtiger-key-1").await;
    let url = vt.url();
    let config = example_config(
        "vtiger.toml",
        &[("https://vtiger.example.org/webservice.php", &url)],
    );
    let arg = format!("vtiger-contacts={}", fixture("vtiger.json").display());
    let text = simulate_cli_env(&config, PAYLOAD, &[], &["--crm-reply", &arg], &SECRETS).await;
    assert_eq!(reply_of(&text)["action"], "open", "{text}");
    let s = vt.state.lock().unwrap();
    assert_eq!((s.challenges, s.logins, s.queries), (0, 0, 0), "{text}");
    assert!(vt.crm.seen().is_empty(), "{text}");
}

/// Runs `simulate` in `dir` (config.toml and call.json there) with `args`.
fn run_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(binary())
        .current_dir(dir)
        .args(["simulate", "--config", "config.toml", "call.json"])
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn a_misspelt_backend_and_a_missing_odd_or_oversized_file_are_refused_with_exit_2() {
    let dir = tempfile::TempDir::new().unwrap();
    TestCa::new().write(dir.path());
    let config = format!(
        "{TLS_HEAD}[cors]\nallow_origins = [\"*\"]\n\
         [backends.contacts]\nurl = \"https://crm.example.org/lookup\"\nencoding = \"json\"\nmax_response_bytes = 64\n\
         reply = {{ format = \"json\", extract = {{ url = \"url\" }} }}\n\
         [backends.leads]\nurl = \"https://crm.example.org/leads\"\nencoding = \"json\"\n\
         reply = {{ format = \"json\", extract = {{ url = \"url\" }} }}\n\
         [[routes]]\nbackend = \"contacts\"\n"
    );
    std::fs::write(dir.path().join("config.toml"), config).unwrap();
    std::fs::write(dir.path().join("call.json"), SEED).unwrap();
    std::fs::write(
        dir.path().join("reply.json"),
        r#"{"url":"https://crm.example.org/c/1"}"#,
    )
    .unwrap();
    std::fs::write(
        dir.path().join("big.json"),
        format!(r#"{{"url":"{}"}}"#, "x".repeat(100)),
    )
    .unwrap();
    let refused = |args: &[&str], want: &str| {
        let out = run_in(dir.path(), args);
        let text = printed(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}:\n{text}");
        assert!(text.contains(want), "{args:?}: want {want:?} in:\n{text}");
    };
    refused(
        &["--crm-reply", "contact=reply.json"],
        r#"no backend "contact" in config.toml (did you mean "contacts"?) (its backends: contacts, leads)"#,
    );
    refused(&["--crm-reply", "reply.json"], "expected BACKEND=FILE");
    refused(
        &["--crm-reply", "contacts=none.json"],
        "cannot read none.json: No such file or directory",
    );
    refused(
        &["--crm-reply", "contacts=."],
        "cannot read .: not a regular file",
    );
    refused(
        &["--crm-reply", "contacts=big.json"],
        "cannot read big.json: 110 bytes, over the limit of 64: refused (the backend's max_response_bytes",
    );
    refused(
        &[
            "--crm-reply",
            "contacts=reply.json",
            "--crm-reply",
            "contacts=reply.json",
        ],
        "backend \"contacts\" is given twice",
    );
    refused(
        &["--crm-reply", "contacts=reply.json", "--dry-run"],
        "cannot be used with",
    );

    // A backend the route does not ask: said, not silently ignored.
    let out = run_in(
        dir.path(),
        &[
            "--crm-reply",
            "contacts=reply.json",
            "--crm-reply",
            "leads=reply.json",
        ],
    );
    let text = printed(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains(
            r#"reply: {"action":"open","event":"EventRinging","url":"https://crm.example.org/c/1""#
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "note: the saved reply reply.json of backend \"leads\" was not read: it is not one of this route's backends"
        ),
        "{text}"
    );
}
