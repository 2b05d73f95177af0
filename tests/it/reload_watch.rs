//! Reloads on the real binary: a config the loader once panicked on is a
//! failed reload that leaves signals working, a SIGHUP sent the moment the
//! gateway is ready reloads it, and `run --watch` follows edits of the
//! config file (keeping the old config when an edit is broken).

use std::time::Duration;

use crate::ops::{sample, screen_pop_config, Daemon};
use crate::support::*;

/// Longest wait for the watcher to see an edit (it polls every second).
const WATCH_WAIT: Duration = Duration::from_secs(15);

/// A backend whose concurrency limit is valid TOML but beyond any semaphore.
const HUGE_LIMIT: &str = "[backends.crm]\nurl = \"http://127.0.0.1:9/\"\nencoding = \"json\"\n\
    max_concurrency = 3000000000000000000\n[backends.crm.reply]\nformat = \"contract\"\n";

async fn url(d: &Daemon) -> String {
    d.post(SEED).await.json()["url"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// Posts until the screen-pop url names `route`, within [`WATCH_WAIT`].
async fn wait_for_route(d: &Daemon, route: &str) {
    let deadline = tokio::time::Instant::now() + WATCH_WAIT;
    let want = format!("https://crm.example.org/{route}?");
    loop {
        let got = url(d).await;
        if got.starts_with(&want) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still {got:?}, not route {route}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn reloads(d: &Daemon, result: &str) -> f64 {
    sample(
        &d.metrics().await,
        "thirdparty_gateway_reloads_total",
        &[("result", result)],
    )
}

#[tokio::test]
async fn an_out_of_range_number_fails_the_reload_and_signals_still_work() {
    let d = Daemon::start(&screen_pop_config("one", "")).await;
    std::fs::write(d.config_path(), screen_pop_config("two", HUGE_LIMIT)).unwrap();
    let (_, ready) = d.reload().await;
    assert!(ready.contains("READY=1"), "{ready}");
    let line = d.wait_log("reload failed").await;
    assert!(
        line.contains(
            "backends.crm.max_concurrency: 3000000000000000000 is out of range: allowed 1 to 1000000"
        ),
        "{line}"
    );
    assert!(url(&d).await.starts_with("https://crm.example.org/one?"));
    assert_eq!(reloads(&d, "failed").await, 1.0);

    std::fs::write(d.config_path(), screen_pop_config("two", "")).unwrap();
    let (_, ready) = d.reload().await;
    // The status keeps the address it gave at start.
    assert!(
        ready.contains(&format!("serving on {}, generation 2", d.addr)),
        "{ready}"
    );
    assert!(url(&d).await.starts_with("https://crm.example.org/two?"));

    d.signal("TERM");
    let (status, _) = d.wait_exit().await;
    assert!(status.success(), "{status}");
}

#[tokio::test]
async fn watch_follows_edits_and_keeps_the_old_config_on_a_broken_one() {
    let d = Daemon::start_with_args(&screen_pop_config("one", ""), &[], &["--watch"]).await;
    let start = d.wait_log("listening on https://").await;
    assert!(start.contains(&format!("pid={}", d.pid())), "{start}");
    d.wait_log("watching the config").await;

    std::fs::write(d.config_path(), screen_pop_config("two", "")).unwrap();
    wait_for_route(&d, "two").await;
    let line = d.wait_log("reloaded config").await;
    assert!(line.contains("config.toml changed"), "{line}");

    std::fs::write(
        d.config_path(),
        screen_pop_config("three", "").replace("[[routes]]", "[[routes]"),
    )
    .unwrap();
    let line = d.wait_log("reload failed").await;
    assert!(line.contains("config.toml changed"), "{line}");
    assert!(line.contains("config.toml:"), "names where: {line}");
    assert!(url(&d).await.starts_with("https://crm.example.org/two?"));

    std::fs::write(d.config_path(), screen_pop_config("three", "")).unwrap();
    wait_for_route(&d, "three").await;
    assert_eq!(reloads(&d, "ok").await, 2.0);
    assert_eq!(reloads(&d, "failed").await, 1.0);

    d.signal("TERM");
    let (status, _) = d.wait_exit().await;
    assert!(status.success(), "{status}");
}

#[tokio::test]
async fn watch_reloads_when_the_certificate_is_replaced() {
    let d = Daemon::start_with_args(&screen_pop_config("one", ""), &[], &["--watch"]).await;
    d.wait_log("watching the config").await;
    let dir = d.config_path().parent().unwrap().to_owned();
    // A renewal as certbot does it: a new file renamed over the old one.
    let renewed = TestCa::new();
    std::fs::create_dir(dir.join("new")).unwrap();
    renewed.write(&dir.join("new"));
    std::fs::rename(dir.join("new/cert.pem"), dir.join("cert.pem")).unwrap();
    std::fs::rename(dir.join("new/key.pem"), dir.join("key.pem")).unwrap();
    let line = d.wait_log("reloaded config").await;
    assert!(line.contains(".pem changed"), "{line}");
}

#[tokio::test]
async fn a_fifo_or_a_huge_file_swapped_in_is_refused_at_once_and_sigterm_still_stops() {
    let mut d = Daemon::start_with_args(&screen_pop_config("one", ""), &[], &["--watch"]).await;
    d.wait_log("watching the config").await;
    let (rss_before, _) = d.rss_kib();

    // A 64 MiB file (sparse: no disk) in place of the config.
    let path = d.config_path();
    let huge = std::fs::File::create(&path).unwrap();
    huge.set_len(64 * 1024 * 1024).unwrap();
    drop(huge);
    let line = d.wait_log("reload failed").await;
    assert!(line.contains("over the limit"), "{line}");
    let (rss_after, _) = d.rss_kib();
    assert!(
        rss_after < rss_before + 16 * 1024,
        "RSS {rss_before} KiB -> {rss_after} KiB"
    );

    // A FIFO nobody writes to: refused, not waited on.
    std::fs::remove_file(&path).unwrap();
    let made = std::process::Command::new("mkfifo")
        .arg(&path)
        .status()
        .unwrap();
    assert!(made.success());
    d.signal("HUP");
    let line = d.wait_log("not a regular file").await;
    assert!(line.contains("reload failed"), "{line}");
    assert!(d.alive());
    assert!(url(&d).await.starts_with("https://crm.example.org/one?"));

    d.signal("TERM");
    let (status, _) = tokio::time::timeout(Duration::from_secs(20), d.wait_exit())
        .await
        .expect("SIGTERM stops the gateway");
    assert!(status.success(), "{status}");
}

#[tokio::test]
async fn a_reload_refused_for_several_errors_logs_one_line_each() {
    let d = Daemon::start(&screen_pop_config("one", "")).await;
    let broken = screen_pop_config("two", "").replace(
        "[cors]\n",
        "[cors]\nmax_age = \"1m\"\n",
    ) + "[[routes]]\nname = \"three\"\n[routes.open]\nevent = \"EventRinging\"\nurl = \"/legacy?n={{ caller }}\"\n";
    std::fs::write(d.config_path(), broken).unwrap();
    d.reload().await;
    let first = d.wait_log("reload failed (1 of 2)").await;
    assert!(
        first.contains("cors.max_age: expected a number of seconds, e.g. 600, not the text")
            && !first.contains("\\n"),
        "{first}"
    );
    let second = d.wait_log("reload failed (2 of 2)").await;
    assert!(
        second.contains("routes[1].open.url: renders to"),
        "{second}"
    );
    assert!(url(&d).await.starts_with("https://crm.example.org/one?"));
}

/// A SIGHUP sent the moment the gateway says READY=1 (a reload right after
/// a start) finds the handlers in place: it reloads, and does not meet
/// SIGHUP's default action, which ends the process. A few starts, as the
/// window was a task not yet run.
#[tokio::test]
async fn a_sighup_at_the_moment_of_ready_reloads_and_never_ends_the_gateway() {
    use tokio::net::UnixDatagram;
    for round in 0..3 {
        let dir = tempfile::TempDir::new().unwrap();
        TestCa::new().write(dir.path());
        std::fs::write(
            dir.path().join("config.toml"),
            screen_pop_config(&format!("hup{round}"), ""),
        )
        .unwrap();
        let socket = dir.path().join("notify.sock");
        let notify = UnixDatagram::bind(&socket).unwrap();
        let mut child = tokio::process::Command::new(binary())
            .arg("run")
            .arg("--config")
            .arg(dir.path().join("config.toml"))
            .env("NOTIFY_SOCKET", &socket)
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let next = || async {
            let mut buf = vec![0u8; 4096];
            let n = tokio::time::timeout(Duration::from_secs(10), notify.recv(&mut buf))
                .await
                .expect("a notification in time")
                .unwrap();
            String::from_utf8_lossy(&buf[..n]).into_owned()
        };
        assert!(next().await.contains("READY=1"));
        let pid = child.id().unwrap();
        send_signal(pid, "HUP");
        assert!(next().await.contains("RELOADING=1"), "round {round}");
        assert!(next().await.contains("READY=1"), "round {round}");
        assert!(child.try_wait().unwrap().is_none(), "round {round}: ended");
        send_signal(pid, "TERM");
        let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
            .await
            .expect("SIGTERM stops the gateway")
            .unwrap();
        assert!(status.success(), "round {round}: {status}");
    }
}
