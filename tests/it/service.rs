//! What the packaged unit relies on from the binary, run as systemd runs it:
//! `reload --pid` (its `ExecReload=`) waits for the outcome and fails on a
//! refused config; a refused config at start exits 78
//! (`RestartPreventExitStatus=78`); lines written to the journal carry no
//! time of their own; a stop with nothing open does not wait out the drain;
//! `sudo check` names the files only root may read.

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::ops::{screen_pop_config, Daemon};
use crate::support::*;

fn reload_command(pid: u32) -> Output {
    Command::new(binary())
        .args(["reload", "--pid", &pid.to_string()])
        .output()
        .unwrap()
}

#[tokio::test]
async fn reload_command_applies_an_edit_and_fails_on_a_refused_one() {
    let d = Daemon::start(&screen_pop_config("one", "")).await;
    std::fs::write(d.config_path(), screen_pop_config("two", "")).unwrap();
    let pid = d.pid();
    let out = tokio::task::spawn_blocking(move || reload_command(pid))
        .await
        .unwrap();
    assert!(out.status.success(), "{}", printed(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "reloaded: serving generation 2\n"
    );
    assert!(d.next_notify().await.contains("RELOADING=1"));
    let ready = d.next_notify().await;
    assert!(
        ready.contains("READY=1")
            && ready.contains(&format!("STATUS=serving on {}, generation 2", d.addr)),
        "{ready}"
    );
    let reply = d.post(SEED).await;
    assert!(reply.json()["url"]
        .as_str()
        .unwrap()
        .starts_with("https://crm.example.org/two?"));

    std::fs::write(d.config_path(), "[server]\nlisten = 12\n").unwrap();
    let out = tokio::task::spawn_blocking(move || reload_command(pid))
        .await
        .unwrap();
    let text = printed(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("reload refused, still serving the previous config: ")
            && text.contains("config.toml:2:10"),
        "{text}"
    );
    let reply = d.post(SEED).await;
    assert!(reply.json()["url"]
        .as_str()
        .unwrap()
        .starts_with("https://crm.example.org/two?"));
    d.signal("TERM");
    let (status, _) = d.wait_exit().await;
    assert!(status.success(), "{status}");
}

#[test]
fn reload_command_says_when_no_gateway_answers() {
    // Process 1 is never a gateway started by this test.
    let out = reload_command(1);
    let text = printed(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("process 1 does not answer reload requests"),
        "{text}"
    );
}

#[test]
fn a_refused_config_at_start_exits_78_and_a_busy_port_exits_1() {
    let dir = TempDir::new().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(&config, "[server]\nlisten = 12\n").unwrap();
    let run = || {
        Command::new(binary())
            .args(["run", "--config"])
            .arg(&config)
            .output()
            .unwrap()
    };
    let out = run();
    assert_eq!(out.status.code(), Some(78), "{}", printed(&out));

    // A missing key: the config's too, not a passing trouble.
    let listen = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listen.local_addr().unwrap().port();
    std::fs::write(
        &config,
        format!(
            "{TLS_HEAD}[server]\nlisten = \"127.0.0.1:{port}\"\n[cors]\nallow_origins = [\"*\"]\n\
             [[routes]]\nname = \"r\"\n[routes.open]\nevent = \"EventRinging\"\n\
             url = \"https://crm.example.org/\"\n"
        ),
    )
    .unwrap();
    let out = run();
    assert_eq!(out.status.code(), Some(78), "{}", printed(&out));

    // With the pair there, only the port is in the way: maybe passing.
    TestCa::new().write(dir.path());
    let out = run();
    let text = printed(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("cannot listen on"), "{text}");
}

/// Runs the gateway with its standard output on a file, `JOURNAL_STREAM`
/// naming that file (as systemd names the journal's stream) or another.
fn first_line_with_journal_stream(matching: bool) -> String {
    let dir = TempDir::new().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(&config, screen_pop_config("j", "")).unwrap();
    TestCa::new().write(dir.path());
    let out_path = dir.path().join("out.log");
    let out = std::fs::File::create(&out_path).unwrap();
    let meta = std::fs::metadata(&out_path).unwrap();
    let stream = {
        use std::os::unix::fs::MetadataExt;
        let ino = if matching { meta.ino() } else { meta.ino() + 1 };
        format!("{}:{ino}", meta.dev())
    };
    let mut child = Command::new(binary())
        .args(["run", "--config"])
        .arg(&config)
        .env("JOURNAL_STREAM", stream)
        .stdout(Stdio::from(out))
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let text = loop {
        let text = std::fs::read_to_string(&out_path).unwrap_or_default();
        if text.contains("listening on https://") || Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let _ = child.kill();
    let _ = child.wait();
    text.lines()
        .find(|l| l.contains("listening on https://"))
        .unwrap_or_else(|| panic!("no listening line in {text:?}"))
        .to_owned()
}

#[test]
fn on_the_journal_lines_carry_no_time_of_their_own() {
    let line = first_line_with_journal_stream(true);
    assert!(line.starts_with("<6>INFO listening on https://"), "{line}");
    // An inherited JOURNAL_STREAM that names another stream changes nothing.
    let line = first_line_with_journal_stream(false);
    let (time, rest) = line.split_once(' ').unwrap();
    assert!(time.ends_with('Z') && time.contains('T'), "{line}");
    assert!(rest.starts_with(" INFO listening on https://"), "{line}");
}

#[tokio::test]
async fn a_stop_with_nothing_open_ends_within_a_second() {
    // The default drain_ms, 5 s: a quiet gateway does not wait it out.
    let d = Daemon::start(&screen_pop_config("quiet", "")).await;
    assert_eq!(d.post(SEED).await.status, 200);
    let asked = Instant::now();
    d.signal("TERM");
    let (status, d) = d.wait_exit().await;
    assert!(status.success(), "{status}");
    assert!(
        asked.elapsed() < Duration::from_secs(1),
        "stopped after {:?}",
        asked.elapsed()
    );
    d.wait_log("INFO stopped").await;
}

#[test]
fn check_as_root_names_a_key_the_service_cannot_read() {
    if !std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false)
    {
        eprintln!("not root: check only warns when run as root");
        return;
    }
    let dir = TempDir::new().unwrap();
    TestCa::new().write(dir.path());
    let config = dir.path().join("config.toml");
    std::fs::write(&config, screen_pop_config("k", "")).unwrap();
    let key = dir.path().join("key.pem");
    let root_only = std::os::unix::fs::PermissionsExt::from_mode(0o600);
    std::fs::set_permissions(&key, root_only).unwrap();
    let out = Command::new(binary())
        .arg("check")
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    let text = printed(&out);
    assert!(out.status.success(), "{text}");
    assert_eq!(
        text.matches("warning: only root may read").count(),
        1,
        "{text}"
    );
    assert!(
        text.contains(&format!("warning: only root may read {}: ", key.display()))
            && text.contains(&format!("LoadCredential=tls-key:{}", key.display()))
            && text.contains("tls.key = \"$CREDENTIALS_DIRECTORY/tls-key\""),
        "{text}"
    );
}
