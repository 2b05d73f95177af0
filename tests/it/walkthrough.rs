//! The walkthrough "An afternoon with your CRM" (`docs/crm-recipes.md`),
//! run as written: every `sh` block of the section, in order, in one bash
//! (`set -euo pipefail`) in a fresh folder, against a test Dolibarr on
//! 127.0.0.1. The test swaps only the values of the placeholders the first
//! block exports (the CRM, its key, the two listeners), so a command that
//! stops working, or a new placeholder, fails here before it misleads a
//! reader.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use crate::headless::Reaper;
use crate::support::*;
use crate::test_crms::dolibarr::Dolibarr;

const DOC: &str = include_str!("../../docs/crm-recipes.md");
const HEADING: &str = "## An afternoon with your CRM";

/// The section's text, up to the next section.
fn section() -> &'static str {
    let start = DOC.find(HEADING).expect("the walkthrough's heading");
    let rest = &DOC[start + HEADING.len()..];
    match rest.find("\n## ") {
        Some(end) => &rest[..end],
        None => rest,
    }
}

/// The section's fenced `sh` blocks (indented ones too), in order.
fn shell_blocks(text: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        let fence = line.trim_start();
        match &mut current {
            None if fence == "```sh" => current = Some(String::new()),
            Some(block) if fence == "```" => {
                blocks.push(std::mem::take(block));
                current = None;
            }
            Some(block) => {
                block.push_str(line);
                block.push('\n');
            }
            None => {}
        }
    }
    assert!(current.is_none(), "an unclosed sh block");
    blocks
}

/// The first block with each `export NAME=value` whose NAME is in `swaps`
/// given the test's value; every other placeholder must be in `kept`,
/// where the documented value works as it is.
fn placeholders(block: &str, swaps: &[(&str, String)], kept: &[&str]) -> String {
    let mut out = String::new();
    let mut seen = Vec::new();
    for line in block.lines() {
        let (name, _) = line
            .strip_prefix("export ")
            .and_then(|l| l.split_once('='))
            .unwrap_or_else(|| panic!("the first block only exports placeholders: {line:?}"));
        seen.push(name.to_owned());
        match swaps.iter().find(|(n, _)| *n == name) {
            Some((_, value)) => out.push_str(&format!("export {name}={value}\n")),
            None => {
                assert!(
                    kept.contains(&name),
                    "a new placeholder {name}: give it a test value"
                );
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    for (name, _) in swaps {
        assert!(
            seen.iter().any(|s| s == name),
            "no placeholder {name} any more"
        );
    }
    out
}

/// A log line's words, with the request id and latency left out.
fn fields(line: &str) -> Vec<&str> {
    line.split_whitespace()
        .filter(|w| !w.starts_with("id=") && !w.starts_with("latency_ms="))
        .collect()
}

#[tokio::test]
#[test_tools::needs("curl")]
async fn the_walkthrough_runs_as_written_against_a_test_dolibarr() {
    let key = "walkthrough-api-key-1";
    let dolibarr = Dolibarr::start(key).await;
    let crm = dolibarr.crm.url();
    let blocks = shell_blocks(section());
    assert!(blocks.len() >= 8, "{blocks:#?}");
    let gateway = format!("127.0.0.1:{}", free_port());
    let ops = format!("127.0.0.1:{}", free_port());
    let mut script = placeholders(
        &blocks[0],
        &[
            ("CRM", crm.clone()),
            ("DOLIBARR_API_KEY", key.to_owned()),
            ("GATEWAY", gateway.clone()),
            ("OPS", ops.clone()),
        ],
        &["XUC", "CALLER"],
    );
    for block in &blocks[1..] {
        script.push_str(block);
    }

    // A folder with the recipes, as this repository's folder has them.
    let dir = tempfile::TempDir::new().unwrap();
    std::os::unix::fs::symlink(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples"),
        dir.path().join("examples"),
    )
    .unwrap();
    let bin = binary();
    let path = format!(
        "{}:{}",
        bin.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut bash = tokio::process::Command::new("bash");
    bash.args(["-euo", "pipefail", "-c", &script])
        .current_dir(dir.path())
        .env("PATH", path)
        .env_remove("RUST_LOG")
        .env_remove("CREDENTIALS_DIRECTORY")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // The gateway the script starts in the background is in its group:
    // ended with it, also when this test fails.
    let (child, _reaper) = Reaper::spawn(&mut bash, dir.path());
    let out = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
        .await
        .expect("the walkthrough ends within 2 minutes")
        .unwrap();
    let text = printed(&out);
    assert!(out.status.success(), "script:\n{script}\noutput:\n{text}");

    let card = format!(
        r#"{{"action":"open","event":"EventRinging","url":"{crm}/contact/card.php?id=7","autopause":false,"title":"Jeanne O'Neil"}}"#
    );
    for want in [
        // 4. check
        "config.toml: ok: 1 route(s) on /, 2 backend(s)".to_owned(),
        // 5. the dry run: the query decoded, nothing sent
        "  query string, decoded:\n    sqlfilters = ((t.phone:like:'%6%1%2%3%4%5%6%7%8%')"
            .to_owned(),
        "(dry run: not sent)".to_owned(),
        // 6. the saved reply
        "backend \"dolibarr-contact\" reply: read from reply.json".to_owned(),
        format!("reply: {card}"),
        // 7. the CRM asked
        "backend \"dolibarr-contact\" replied in".to_owned(),
        // 8. the preflight, then the call through the running gateway
        "204 https://xuc.example.org\n".to_owned(),
        format!("{card}\n"),
        // 9. its log line, metrics and health
        "route=dolibarr".to_owned(),
        "thirdparty_gateway_requests_total{route=\"dolibarr\",outcome=\"open\"".to_owned(),
        "thirdparty_gateway_backend_requests_total{backend=\"dolibarr-contact\"".to_owned(),
        "\"status\":\"serving\"".to_owned(),
    ] {
        assert!(text.contains(&want), "want {want:?} in:\n{text}");
    }
    // The log line the section shows is the call's, but for its id and
    // latency.
    let shown = section()
        .split("```text\n")
        .nth(1)
        .and_then(|b| b.lines().next())
        .expect("the log line the section shows");
    let logged = text
        .lines()
        .find_map(|l| {
            l.split_once("Z  ")
                .map(|(_, line)| line)
                .filter(|l| l.contains("method=POST"))
        })
        .unwrap_or_else(|| panic!("no log line of the call in:\n{text}"));
    assert_eq!(fields(logged), fields(shown), "{text}");
    assert!(!text.contains(key), "the API key shown:\n{text}");
    // The dry run and the saved reply sent nothing: the CRM saw the
    // curl, the live simulate and the running gateway's calls, with the key.
    let seen = dolibarr.crm.seen();
    assert!(!seen.is_empty());
    assert!(seen.iter().all(|r| r.header("dolapikey") == Some(key)));
}
