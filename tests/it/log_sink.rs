//! A log reader that stops reading (a stalled journald or log shipper): the
//! real binary with standard output a pipe that nobody reads for a while.

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tempfile::TempDir;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::net::TcpStream;
use tokio::process::{ChildStdout, Command};

use crate::ops::{ops_get_at, screen_pop_config};
use crate::support::*;

/// Time allowed for anything that should happen "at once" (generous: CI).
const SOON: Duration = Duration::from_secs(10);

/// Calls sent at most while waiting for the first dropped line: the pipe
/// (64 KiB) and the gateway's queue (1024 batches, one per call when calls
/// come one at a time) fill long before.
const MAX_CALLS: usize = 20_000;

/// The next line with `needle`, reading on; `None` at the end of output.
async fn line_with(lines: &mut Lines<BufReader<ChildStdout>>, needle: &str) -> Option<String> {
    tokio::time::timeout(SOON * 3, async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains(needle) {
                return Some(line);
            }
        }
        None
    })
    .await
    .unwrap_or_else(|_| panic!("no log line with {needle:?} in time"))
}

fn address_after(line: &str, prefix: &str) -> SocketAddr {
    let rest = &line[line.find(prefix).unwrap() + prefix.len()..];
    rest.split('/').next().unwrap().parse().unwrap()
}

async fn dropped_lines(ops: SocketAddr) -> f64 {
    let (status, text) = ops_get_at(ops, "/metrics").await;
    assert_eq!(status, 200);
    text.lines()
        .find_map(|l| l.strip_prefix("thirdparty_gateway_log_lines_dropped_total "))
        .map(|v| v.trim().parse().unwrap())
        .expect("the metric is exported")
}

#[tokio::test]
async fn a_stuck_log_reader_never_stops_calls_or_health() {
    let dir = TempDir::new().unwrap();
    let ca = TestCa::new();
    ca.write(dir.path());
    let config = dir.path().join("config.toml");
    std::fs::write(&config, screen_pop_config("stuck_reader", "")).unwrap();
    let mut child = Command::new(binary())
        .args(["run", "--config"])
        .arg(&config)
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let ops_line = line_with(&mut lines, "ops listening on http://")
        .await
        .unwrap();
    let ops = address_after(&ops_line, "ops listening on http://");
    let line = line_with(&mut lines, "listening on https://")
        .await
        .unwrap();
    let addr = address_after(&line, "listening on https://");
    assert_eq!(dropped_lines(ops).await, 0.0);

    // From here nobody reads standard output; the read end stays open.
    let tcp = TcpStream::connect(addr).await.unwrap();
    let tls = tls_over(&ca.ca_der, tcp, b"http/1.1").await;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut calls = 0;
    loop {
        let req = http::Request::post("/")
            .header("host", "localhost")
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from_static(SEED.as_bytes())))
            .unwrap();
        let reply = tokio::time::timeout(SOON, async {
            let resp = send.send_request(req).await.unwrap();
            resp.into_body().collect().await.unwrap().to_bytes()
        })
        .await
        .unwrap_or_else(|_| panic!("call {calls} got no answer: logging blocked it"));
        assert!(
            String::from_utf8_lossy(&reply).contains("crm.example.org/stuck_reader"),
            "{reply:?}"
        );
        calls += 1;
        if calls % 250 == 0 && dropped_lines(ops).await > 0.0 {
            break;
        }
        assert!(calls < MAX_CALLS, "no line dropped after {calls} calls");
    }
    assert_eq!(ops_get_at(ops, "/healthz").await.0, 200);

    // Reading again: the queued lines arrive, then one warning with the count.
    let warning = line_with(&mut lines, "lines dropped")
        .await
        .expect("a warning line");
    assert!(warning.contains("WARN"), "{warning}");
    let warned: f64 = warning
        .split("dropped=")
        .nth(1)
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no count in {warning}"));
    assert!(warned > 0.0, "{warning}");
    assert!(dropped_lines(ops).await >= warned);
    let _ = child.start_kill();
}
