//! `check` on broken configs: each fault reported with its exact message,
//! line and column, the line itself and a caret under the fault; every
//! fault of a file reported together; warnings alone do not fail.

use std::process::{Command, Output};

use crate::support::*;

/// A config that passes; each case breaks one line of it.
const BASE: &str = r#"[tls]
cert = "cert.pem"
key = "key.pem"

[cors]
allow_origins = ["https://xuc.example.org"]

[backends.crm]
url = "https://crm.example.org/find?n={{ caller | digits }}"
encoding = "json"
[backends.crm.body]
phone = "{{ caller | digits }}"
[backends.crm.reply]
format = "contract"

[[routes]]
name = "zero"
when = 'caller.startswith("0")'
backend = "crm"

[[routes]]
name = "trucks"
when = 'queue.name == "trucks"'
[routes.open]
event = "EventRinging"
url = "https://crm.example.org/?n={{ caller }}"
"#;

fn check(config: &str) -> (Output, String) {
    let dir = tempfile::TempDir::new().unwrap();
    TestCa::new().write(dir.path());
    let path = dir.path().join("config.toml");
    std::fs::write(&path, config).unwrap();
    let out = Command::new(binary())
        .current_dir(dir.path())
        .args(["check", "--config", "config.toml"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr).into_owned();
    (out, text)
}

fn broken(from: &str, to: &str) -> String {
    assert!(BASE.contains(from), "{from}");
    BASE.replacen(from, to, 1)
}

#[test]
fn the_base_config_passes_without_warnings() {
    let (out, text) = check(BASE);
    assert!(out.status.success(), "{text}");
    assert_eq!(text, "");
}

#[test]
fn each_fault_is_shown_at_its_column_with_a_caret() {
    let cases = [
        (
            broken("caller | digits }}\"\nencoding", "caller | digitz }}\"\nencoding"),
            r#"error: config.toml:9:51: backends.crm.url: unknown filter "digitz" (did you mean "digits"?)
  |
9 | url = "https://crm.example.org/find?n={{ caller | digitz }}"
  |                                                   ^^^^^^"#,
        ),
        (
            broken("phone = \"{{ caller | digits }}\"", "phone = \"{{ caller | digit }}\""),
            r#"error: config.toml:12:22: backends.crm.body.phone: unknown filter "digit" (did you mean "digits"?)
   |
12 | phone = "{{ caller | digit }}"
   |                      ^^^^^"#,
        ),
        (
            broken("caller.startswith(", "caller.startwith("),
            r#"error: config.toml:18:16: routes[0].when: unknown method "startwith" (did you mean "startswith"?)
   |
18 | when = 'caller.startwith("0")'
   |                ^^^^^^^^^"#,
        ),
        (
            broken("caller.startswith(\"0\")", "caller is definde"),
            r#"error: config.toml:18:19: routes[0].when: unknown test "definde" (did you mean "defined"?)"#,
        ),
        (
            broken("queue.name == ", "queue.name = "),
            r#"error: config.toml:23:20: routes[1].when: syntax error: unexpected input after expression
   |
23 | when = 'queue.name = "trucks"'
   |                    ^"#,
        ),
        (
            broken("?n={{ caller }}\"", "?n={{ caller \""),
            r#"error: config.toml:26:38: routes[1].open.url: syntax error: unexpected end of input, expected end of variable block
   |
26 | url = "https://crm.example.org/?n={{ caller "
   |                                      ^^^^^^"#,
        ),
        (
            broken(
                "encoding = \"json\"\n",
                "encoding = \"json\"\nmax_concurrency = 3000000000000000000\n",
            ),
            r#"error: config.toml:11:19: backends.crm.max_concurrency: 3000000000000000000 is out of range: allowed 1 to 1000000
   |
11 | max_concurrency = 3000000000000000000
   |                   ^^^^^^^^^^^^^^^^^^^"#,
        ),
        (
            broken("event = \"EventRinging\"", "evnt = \"EventRinging\""),
            "error: config.toml:25:1: routes[1].open.evnt: unknown field `evnt` (did you mean `event`?), expected one of `event`, `url`, `title`, `autopause`",
        ),
    ];
    for (config, want) in cases {
        let (out, text) = check(&config);
        assert_eq!(out.status.code(), Some(1), "{want}\n{text}");
        assert!(text.contains(want), "want:\n{want}\nin:\n{text}");
    }
}

#[test]
fn three_faults_in_one_file_are_reported_together() {
    let config = broken(
        "caller | digits }}\"\nencoding",
        "caller | digitz }}\"\nencoding",
    )
    .replace("caller.startswith(", "caller.startwith(")
    .replace("[cors]\n", "[cors]\nmax_ag = 60\n");
    let (out, text) = check(&config);
    assert_eq!(out.status.code(), Some(1), "{text}");
    let firsts: Vec<&str> = text.lines().filter(|l| l.starts_with("error")).collect();
    assert_eq!(
        firsts,
        [
            "error: config.toml:6:1: cors.max_ag: unknown field `max_ag` (did you mean `max_age`?), expected one of `allow_origins`, `allow_headers`, `max_age`, `allow_private_network`, `allow_credentials`",
            "error: config.toml:10:51: backends.crm.url: unknown filter \"digitz\" (did you mean \"digits\"?)",
            "error: config.toml:19:16: routes[0].when: unknown method \"startwith\" (did you mean \"startswith\"?)",
            "error: 3 errors",
        ],
        "{text}"
    );
}

#[test]
fn fields_outside_the_contract_are_warnings_that_do_not_fail() {
    let config = broken("queue.name ==", "queue.nam ==")
        .replace("?n={{ caller }}", "?n={{ caller }}&a={{ user.fullname }}");
    let (out, text) = check(&config);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains(r#"warning: config.toml:23:15: routes[1].when: unknown field "nam" of queue (did you mean "name"?): not in the XucMgt contract
   |
23 | when = 'queue.nam == "trucks"'
   |               ^^^"#),
        "{text}"
    );
    assert!(
        text.contains(r#"warning: config.toml:26:58: routes[1].open.url: unknown field "fullname" of user (did you mean "fullName"?): not in the XucMgt contract"#),
        "{text}"
    );
}

#[test]
fn a_template_that_fails_on_a_sample_payload_is_a_warning_naming_it() {
    let config = broken("?n={{ caller }}", "?n={{ caller.startswith() }}");
    let (out, text) = check(&config);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("warning: config.toml:26:1: routes[1].open.url: fails on the sample payload of a direct call (no queue): "),
        "{text}"
    );
}

#[test]
fn a_relative_or_javascript_screen_pop_url_is_refused_as_every_call_would_be() {
    let cases = [
        (
            broken(
                "url = \"https://crm.example.org/?n={{ caller }}\"",
                "url = \"/demo/crm/legacy?n={{ caller }}\"",
            ),
            r#"error: config.toml:26:8: routes[1].open.url: renders to "/demo/crm/legacy?n=0612345678" on the sample payload of a direct call (no queue), which every call would refuse (the agent gets no tab): url "/demo/crm/legacy?n=0612345678" is not an absolute URL; write the whole address, e.g. https://crm.example.org/
   |
26 | url = "/demo/crm/legacy?n={{ caller }}"
   |        ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^"#,
        ),
        (
            broken(
                "url = \"https://crm.example.org/?n={{ caller }}\"",
                "url = \"javascript:alert({{ caller }})\"",
            ),
            r#"error: config.toml:26:8: routes[1].open.url: renders to "javascript:alert(0612345678)" on the sample payload of a direct call (no queue), which every call would refuse (the agent gets no tab): url scheme "javascript" is not http or https"#,
        ),
    ];
    for (config, want) in cases {
        let (out, text) = check(&config);
        assert_eq!(out.status.code(), Some(1), "{want}\n{text}");
        assert!(text.contains(want), "want:\n{want}\nin:\n{text}");
    }
}

#[test]
fn a_reply_url_refused_whatever_the_crm_answers_is_an_error_naming_public_base() {
    let config = broken(
        "format = \"contract\"",
        "format = \"json\"\nextract = { id = \"/id\" }\nurl = \"/card/{{ id }}\"",
    );
    let (out, text) = check(&config);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains(r#"error: config.toml:16:8: backends.crm.reply.url: renders to "/card/42" (each value of the reply as 42) on the sample payload of a direct call (no queue), which every call would refuse (the agent gets no tab): url "/card/42" is not an absolute URL; set public_base = "https://crm.example.org/" (the CRM as the agent's browser reaches it) or write the whole address"#),
        "{text}"
    );
    // With public_base, or when the CRM's value is the whole url, it passes.
    let with_base = config.replace(
        "encoding = \"json\"\n",
        "encoding = \"json\"\npublic_base = \"https://crm.example.org/\"\n",
    );
    let (out, text) = check(&with_base);
    assert!(out.status.success(), "{text}");
    let whole = config.replace("url = \"/card/{{ id }}\"", "url = \"{{ id | safe }}\"");
    let (out, text) = check(&whole);
    assert!(out.status.success(), "{text}");
}

#[test]
fn a_missing_certificate_is_reported_with_a_missing_secret_each_at_its_line() {
    let config = broken(
        "cert = \"cert.pem\"\nkey = \"key.pem\"",
        "cert = \"gone-cert.pem\"\nkey = \"gone-key.pem\"",
    )
    .replace(
        "encoding = \"json\"\n",
        "encoding = \"json\"\nheaders = { DOLAPIKEY = \"{{ secret('TPGW_NO_SUCH_SECRET') }}\" }\n",
    );
    let (out, text) = check(&config);
    assert_eq!(out.status.code(), Some(1), "{text}");
    let firsts: Vec<&str> = text.lines().filter(|l| l.starts_with("error")).collect();
    assert_eq!(
        firsts,
        [
            "error: config.toml:2:8: tls.cert: gone-cert.pem: cannot read: No such file or directory (os error 2); on a test box, self_signed_if_missing = true in [tls] makes a self-signed pair when both files are missing",
            "error: config.toml:3:7: tls.key: gone-key.pem: cannot read: No such file or directory (os error 2); on a test box, self_signed_if_missing = true in [tls] makes a self-signed pair when both files are missing",
            "error: config.toml:11:13: backends.crm.headers.DOLAPIKEY: secret(\"TPGW_NO_SUCH_SECRET\") has no value: no file TPGW_NO_SUCH_SECRET in $CREDENTIALS_DIRECTORY and no environment variable TPGW_NO_SUCH_SECRET; give it one with `export TPGW_NO_SUCH_SECRET=...` before `check` or `run`, or in the service with `LoadCredential=TPGW_NO_SUCH_SECRET:/path/to/file` (systemctl edit thirdparty-gateway)",
            "error: 3 errors",
        ],
        "{text}"
    );
}

#[test]
fn a_wrong_type_is_said_in_the_configs_words() {
    let config = broken(
        "encoding = \"json\"\n",
        "encoding = \"json\"\ntimeout_ms = \"1s\"\n",
    );
    let (out, text) = check(&config);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains(r#"error: config.toml:11:14: backends.crm.timeout_ms: expected a number of milliseconds, e.g. 1500, not the text "1s"
   |
11 | timeout_ms = "1s"
   |              ^^^^"#),
        "{text}"
    );
}

#[test]
fn a_credential_to_a_plain_http_remote_host_is_a_warning_loopback_is_not() {
    let config = broken(
        "url = \"https://crm.example.org/find",
        "url = \"http://crm.lan/find",
    )
    .replace(
        "encoding = \"json\"\n",
        "encoding = \"json\"\nauth = { type = \"header\", header = \"DOLAPIKEY\", value_env = \"TPGW_CLEAR_KEY\" }\n",
    );
    std::env::set_var("TPGW_CLEAR_KEY", "k");
    let (out, text) = check(&config);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains(r#"warning: config.toml:9:1: backends.crm.url: the DOLAPIKEY header of auth.type = "header" goes to crm.lan over plain http: anyone on the network on the way can read it; use https:// (with ca_file for a CRM whose certificate an internal CA signs), or run the CRM on this host (127.0.0.1)"#),
        "{text}"
    );
    let local = config.replace("http://crm.lan/", "http://127.0.0.1:8080/");
    let (out, text) = check(&local);
    assert!(out.status.success(), "{text}");
    assert_eq!(text, "");
}
