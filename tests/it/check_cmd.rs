//! `thirdparty-gateway check`: exit 0 with a summary, or exit 1 with every
//! error naming file, line, column and key.

use std::process::{Command, Output};

use crate::support::*;

const GOOD: &str = r#"[tls]
cert = "cert.pem"
key = "key.pem"

[cors]
allow_origins = ["https://xuc.example.org"]

[[routes]]
name = "trucks"
when = 'queue.name == "trucks"'
[routes.open]
event = "EventRinging"
url = "https://crm.example.org/?n={{ caller }}"
"#;

pub(crate) fn check(config: &str) -> (Output, String) {
    let dir = tempfile::TempDir::new().unwrap();
    TestCa::new().write(dir.path());
    let path = dir.path().join("config.toml");
    std::fs::write(&path, config).unwrap();
    let out = Command::new(binary())
        .arg("check")
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    let text = printed(&out);
    (out, text)
}

/// [`check`]'s verdict: whether it passed, and all it printed.
pub(crate) fn check_ok(config: &str) -> (bool, String) {
    let (out, text) = check(config);
    (out.status.success(), text)
}

#[test]
fn good_config_passes_with_a_one_line_summary() {
    let (out, text) = check(GOOD);
    assert!(out.status.success(), "{text}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(
        stdout.contains("ok: 1 route(s) on /, 0 backend(s), listening on 127.0.0.1:8443 (TLS: "),
        "{stdout}"
    );
    assert!(
        stdout
            .trim_end()
            .ends_with(", ops on http://127.0.0.1:9090/"),
        "{stdout}"
    );
}

#[test]
fn shipped_demo_config_passes() {
    let out = Command::new(binary())
        .args([
            "check",
            "--config",
            concat!(env!("CARGO_MANIFEST_DIR"), "/config.toml"),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn bad_expression_is_reported_at_its_line_and_key() {
    let (out, text) = check(&GOOD.replace(r#"queue.name == "trucks""#, r#"queue.name =="#));
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("config.toml:10:20: routes[0].when: syntax error"),
        "{text}"
    );
}

#[test]
fn bad_template_and_bad_origin_are_both_reported() {
    let bad = GOOD
        .replace("{{ caller }}", "{{ caller ")
        .replace("https://xuc.example.org", "xuc.example.org/path");
    let (out, text) = check(&bad);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains(
            "config.toml:6:18: cors.allow_origins[0]: \"xuc.example.org/path\" is not an origin"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "config.toml:13:38: routes[0].open.url: syntax error: unexpected end of input"
        ),
        "{text}"
    );
}

#[test]
fn unknown_key_is_an_error_listing_the_known_ones() {
    let (out, text) = check(&GOOD.replace("[cors]\n", "[cors]\nallow_origin = []\n"));
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("config.toml:6:1: cors.allow_origin: unknown field `allow_origin` (did you mean `allow_origins`?), expected one of `allow_origins`"), "{text}");
}

#[test]
fn wrong_event_names_the_key() {
    let (out, text) = check(&GOOD.replace("EventRinging", "Ringing"));
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("routes[0].open.event: unknown variant `Ringing`"),
        "{text}"
    );
}

#[test]
fn missing_certificate_file_is_an_error_naming_it() {
    let (out, text) = check(&GOOD.replace("cert.pem", "missing.pem"));
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("missing.pem"), "{text}");
}

#[test]
fn credentials_with_any_origin_are_refused() {
    let cfg = GOOD.replace(
        r#"allow_origins = ["https://xuc.example.org"]"#,
        "allow_origins = [\"*\"]\nallow_credentials = true",
    );
    let (out, text) = check(&cfg);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("cors.allow_credentials: credentials cannot be allowed"),
        "{text}"
    );
}

#[test]
fn likely_typo_in_a_variable_is_an_error_with_a_suggestion() {
    let (out, text) = check(&GOOD.replace("queue.name", "queu.name"));
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("error: "), "{text}");
    assert!(
        text.contains("routes[0].when: unknown variable \"queu\" (did you mean \"queue\"?)"),
        "{text}"
    );
}

#[test]
fn unreadable_config_names_the_file() {
    let out = Command::new(binary())
        .args(["check", "--config", "/nonexistent/x.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("/nonexistent/x.toml: cannot read config"),
        "{err}"
    );
}

#[test]
fn every_example_config_is_valid_apart_from_its_certificate_files() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut seen = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            for var in secret_names(&std::fs::read_to_string(&path).unwrap()) {
                std::env::set_var(var, "example-secret");
            }
            // The certificate files are the test's own: load reads them.
            let tmp = tempfile::TempDir::new().unwrap();
            TestCa::new().write(tmp.path());
            let name = path.file_name().unwrap().to_str().unwrap();
            let copy = tmp.path().join(name);
            std::fs::write(&copy, crate::examples::example_config(name, &[])).unwrap();
            let config = thirdparty_gateway::config::load(&copy).unwrap_or_else(|e| panic!("{e}"));
            assert!(
                config.warnings.is_empty(),
                "{}: {:?}",
                path.display(),
                config.warnings
            );
            seen += 1;
        }
    }
    assert!(seen > 0);
}

/// The environment variables an example reads its secrets from:
/// `secret('NAME')` in templates and `..._env = "NAME"` keys.
fn secret_names(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    for (open, close) in [("secret('", "'"), ("secret(\"", "\""), ("_env = \"", "\"")] {
        for (at, _) in text.match_indices(open) {
            let rest = &text[at + open.len()..];
            if let Some(end) = rest.find(close) {
                names.push(rest[..end].to_owned());
            }
        }
    }
    names
}

const WITH_BACKEND: &str = r#"[tls]
cert = "cert.pem"
key = "key.pem"

[cors]
allow_origins = ["https://xuc.example.org"]

[server]
deadline_ms = 1000

[backends.crm]
url = "https://crm.internal/lookup"
encoding = "form"
timeout_ms = 800
body = { phone = "{{ caller }}" }
auth = { type = "basic", username = "gw", password_env = "TPGW_CHECK_PASSWORD" }
[backends.crm.reply]
format = "json"
extract = { url = "/card" }

[[routes]]
backend = "crm"
"#;

#[test]
fn backend_errors_name_their_keys() {
    std::env::set_var("TPGW_CHECK_PASSWORD", "x");
    let (out, text) = check(WITH_BACKEND);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("1 backend(s)"), "{text}");

    let cases = [
        (
            WITH_BACKEND.replace("timeout_ms = 800", "timeout_ms = 5000"),
            "config.toml:14:1: backends.crm.timeout_ms: 5000 ms exceeds server.deadline_ms (1000 ms)",
        ),
        (
            WITH_BACKEND.replace("backend = \"crm\"", "backend = \"crn\""),
            "routes[0].backend: no [backends.crn] (known: [\"crm\"])",
        ),
        (
            WITH_BACKEND.replace("TPGW_CHECK_PASSWORD", "TPGW_CHECK_UNSET_VARIABLE"),
            "backends.crm.auth.password_env: environment variable TPGW_CHECK_UNSET_VARIABLE is not set",
        ),
        (
            WITH_BACKEND.replace("extract = { url = \"/card\" }", "extract = { card = \"/card\" }"),
            "backends.crm.reply: no url: set reply.url (a template) or extract a value named url",
        ),
        (
            WITH_BACKEND.replace("encoding = \"form\"", "encoding = \"xml\""),
            "backends.crm.body: with encoding = \"xml\", body is the document template",
        ),
        (
            WITH_BACKEND.replace("https://crm.internal", "ftp://crm.internal"),
            "backends.crm.url: must start with http:// or https://",
        ),
        (
            WITH_BACKEND.replace("format = \"json\"", "format = \"yaml\""),
            "backends.crm.reply.format: unknown variant `yaml`",
        ),
        (
            WITH_BACKEND.replace("[backends.crm.reply]", "ca_file = \"nope.pem\"\n[backends.crm.reply]"),
            "backends.crm.ca_file: ",
        ),
    ];
    for (config, want) in cases {
        let (out, text) = check(&config);
        assert_eq!(out.status.code(), Some(1), "{want}\n{text}");
        assert!(text.contains(want), "want {want:?} in:\n{text}");
        assert!(!text.contains("panicked"), "{text}");
    }
}
