//! The gateway as a service: the real binary in a child process, systemd
//! notifications read from a real unix datagram socket (`NOTIFY_SOCKET`),
//! signals sent with `kill`, health and metrics read from the ops listener.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tempfile::TempDir;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::{TcpStream, UnixDatagram};
use tokio::process::{Child, Command};

use crate::crm::{Answer, Crm};
use crate::support::*;

/// Time allowed for anything the daemon should do "at once" (generous: CI).
const SOON: Duration = Duration::from_secs(10);

/// The gateway binary running as a service would.
pub(crate) struct Daemon {
    dir: TempDir,
    child: Child,
    notify: UnixDatagram,
    log: Arc<Mutex<Vec<String>>>,
    pub(crate) addr: SocketAddr,
    ops: SocketAddr,
    pub(crate) ca: TestCa,
}

pub(crate) fn screen_pop_config(route: &str, extra: &str) -> String {
    format!(
        "{TLS_HEAD}\n[server]\nlisten = \"127.0.0.1:0\"\nshutdown_grace_ms = 5000\n\
         [ops]\nlisten = \"127.0.0.1:0\"\n[cors]\nallow_origins = [\"*\"]\n{extra}\n\
         [[routes]]\nname = \"{route}\"\n[routes.open]\nevent = \"EventRinging\"\n\
         url = \"https://crm.example.org/{route}?n={{{{ caller }}}}\"\n"
    )
}

impl Daemon {
    pub(crate) async fn start(config: &str) -> Self {
        Self::start_with_env(config, &[]).await
    }

    pub(crate) async fn start_with_env(config: &str, env: &[(&str, &str)]) -> Self {
        Self::start_with_args(config, env, &[]).await
    }

    /// Started with `run --config FILE` followed by `args`.
    pub(crate) async fn start_with_args(config: &str, env: &[(&str, &str)], args: &[&str]) -> Self {
        let dir = TempDir::new().unwrap();
        let ca = TestCa::new();
        ca.write(dir.path());
        std::fs::write(dir.path().join("config.toml"), config).unwrap();
        let socket_path = dir.path().join("notify.sock");
        let notify = UnixDatagram::bind(&socket_path).unwrap();
        let mut child = Command::new(binary())
            .args(["run", "--config"])
            .arg(dir.path().join("config.toml"))
            .args(args)
            .env("NOTIFY_SOCKET", &socket_path)
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&log);
        let stdout = child.stdout.take().unwrap();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                sink.lock().unwrap().push(line);
            }
        });
        let mut daemon = Self {
            dir,
            child,
            notify,
            log,
            addr: "127.0.0.1:0".parse().unwrap(),
            ops: "127.0.0.1:0".parse().unwrap(),
            ca,
        };
        assert!(daemon.next_notify().await.contains("READY=1"));
        daemon.addr = daemon.address_after("listening on https://").await;
        daemon.ops = daemon.address_after("ops listening on http://").await;
        daemon
    }

    /// (current, peak) resident memory of the gateway, in KiB.
    pub(crate) fn rss_kib(&self) -> (u64, u64) {
        let pid = self.child.id().expect("the gateway is running");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let field = |name: &str| {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    /// The gateway's process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id().expect("the gateway is running")
    }

    /// Whether the gateway process is still running.
    pub(crate) fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub(crate) fn config_path(&self) -> PathBuf {
        self.dir.path().join("config.toml")
    }

    /// The next notification the daemon sent to systemd.
    pub(crate) async fn next_notify(&self) -> String {
        let mut buf = vec![0u8; 4096];
        let n = tokio::time::timeout(SOON, self.notify.recv(&mut buf))
            .await
            .expect("no sd_notify message in time")
            .unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    pub(crate) async fn wait_log(&self, needle: &str) -> String {
        let deadline = tokio::time::Instant::now() + SOON;
        loop {
            if let Some(line) = self.log.lock().unwrap().iter().find(|l| l.contains(needle)) {
                return line.clone();
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no log line with {needle:?}: {:#?}",
                self.log.lock().unwrap()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn address_after(&self, prefix: &str) -> SocketAddr {
        let line = self.wait_log(prefix).await;
        let rest = &line[line.find(prefix).unwrap() + prefix.len()..];
        rest.split('/').next().unwrap().parse().unwrap()
    }

    pub(crate) fn signal(&self, name: &str) {
        let pid = self.child.id().unwrap().to_string();
        let status = std::process::Command::new("kill")
            .args(["-s", name, &pid])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Sends SIGHUP and returns the notifications around the reload.
    pub(crate) async fn reload(&self) -> (String, String) {
        self.signal("HUP");
        let reloading = self.next_notify().await;
        let ready = self.next_notify().await;
        (reloading, ready)
    }

    pub(crate) async fn post(&self, body: &str) -> Reply {
        Client::new(&self.ca.ca_der)
            .post(self.addr, None, body)
            .await
    }

    pub(crate) async fn ops_get(&self, path: &str) -> (u16, String) {
        ops_get_at(self.ops, path).await
    }

    pub(crate) async fn metrics(&self) -> prometheus_parse::Scrape {
        let (status, text) = self.ops_get("/metrics").await;
        assert_eq!(status, 200);
        let lines = text.lines().map(|l| Ok(l.to_owned()));
        prometheus_parse::Scrape::parse(lines).expect("metrics text parses")
    }

    pub(crate) async fn wait_exit(mut self) -> (std::process::ExitStatus, Self) {
        let status = tokio::time::timeout(SOON, self.child.wait())
            .await
            .expect("the gateway did not exit in time")
            .unwrap();
        (status, self)
    }
}

/// One GET on an ops listener, on a connection of its own.
pub(crate) async fn ops_get_at(ops: SocketAddr, path: &str) -> (u16, String) {
    let reply = plain_get(ops, path, &[]).await;
    (reply.status.as_u16(), reply.text())
}

/// The value of a sample, by name and labels.
pub(crate) fn sample(
    scrape: &prometheus_parse::Scrape,
    name: &str,
    labels: &[(&str, &str)],
) -> f64 {
    scrape
        .samples
        .iter()
        .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => f64::NAN,
        })
        .unwrap_or(0.0)
}

#[tokio::test]
async fn notify_reload_good_and_broken_configs_then_stop() {
    let d = Daemon::start(&screen_pop_config("one", "")).await;
    assert!(d.post(SEED).await.json()["url"]
        .as_str()
        .unwrap()
        .starts_with("https://crm.example.org/one"));
    // Health names the running version, so a load balancer's check (or an
    // operator's curl) tells which build answers.
    let (status, health) = d.ops_get("/healthz").await;
    let health: serde_json::Value = serde_json::from_str(&health).unwrap();
    assert_eq!(
        (status, &health["status"], &health["version"]),
        (
            200,
            &serde_json::json!("serving"),
            &serde_json::json!(env!("CARGO_PKG_VERSION"))
        ),
        "{health}"
    );

    std::fs::write(d.config_path(), screen_pop_config("two", "")).unwrap();
    let (reloading, ready) = d.reload().await;
    assert!(reloading.contains("RELOADING=1"), "{reloading}");
    assert!(reloading.contains("MONOTONIC_USEC="), "{reloading}");
    assert!(ready.contains("READY=1"), "{ready}");
    assert!(d.post(SEED).await.json()["url"]
        .as_str()
        .unwrap()
        .starts_with("https://crm.example.org/two"));
    let (_, health) = d.ops_get("/healthz").await;
    assert!(health.contains("\"generation\":2"), "{health}");

    std::fs::write(d.config_path(), "[routes\nbroken").unwrap();
    let (_, ready) = d.reload().await;
    assert!(ready.contains("READY=1"), "{ready}");
    let line = d.wait_log("reload failed").await;
    assert!(
        line.contains("config.toml:1"),
        "names file and line: {line}"
    );
    assert!(d.post(SEED).await.json()["url"]
        .as_str()
        .unwrap()
        .starts_with("https://crm.example.org/two"));

    let m = d.metrics().await;
    assert_eq!(
        sample(&m, "thirdparty_gateway_reloads_total", &[("result", "ok")]),
        1.0
    );
    assert_eq!(
        sample(
            &m,
            "thirdparty_gateway_reloads_total",
            &[("result", "failed")]
        ),
        1.0
    );
    assert_eq!(sample(&m, "thirdparty_gateway_config_generation", &[]), 2.0);

    d.signal("TERM");
    assert!(d.next_notify().await.contains("STOPPING=1"));
    let (status, _) = d.wait_exit().await;
    assert!(status.success(), "{status}");
}

/// A gateway whose only route asks `crm` (which answers slowly).
fn slow_backend_config(crm: &Crm, route: &str) -> String {
    format!(
        "{TLS_HEAD}\n[server]\nlisten = \"127.0.0.1:0\"\ndeadline_ms = 3000\n[ops]\nlisten = \"127.0.0.1:0\"\n\
         [cors]\nallow_origins = [\"*\"]\n\
         [backends.slow]\nurl = \"{}/x\"\nencoding = \"json\"\nreply = {{ format = \"json\", extract = {{ url = \"url\" }} }}\n\
         [[routes]]\nname = \"{route}\"\nbackend = \"slow\"\n",
        crm.url()
    )
}

/// Posts the seed call without waiting for the reply.
fn post_in_background(d: &Daemon) -> tokio::task::JoinHandle<Reply> {
    let (client, addr) = (Client::new(&d.ca.ca_der), d.addr);
    tokio::spawn(async move { client.post(addr, None, SEED).await })
}

/// Waits (bounded) until the CRM has received `n` requests.
async fn wait_until_seen(crm: &Crm, n: usize) {
    for _ in 0..500 {
        if crm.seen().len() >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("the CRM received {} calls, not {n}", crm.seen().len());
}

#[tokio::test]
async fn watchdog_is_pinged_when_systemd_asks_for_it() {
    // 200 ms watchdog: pings come every 100 ms.
    let d = Daemon::start_with_env(
        &screen_pop_config("dog", ""),
        &[("WATCHDOG_USEC", "200000")],
    )
    .await;
    for _ in 0..3 {
        let msg = d.next_notify().await;
        assert_eq!(msg.trim(), "WATCHDOG=1");
    }
}

#[tokio::test]
async fn in_flight_request_finishes_on_the_config_it_started_with() {
    let crm = Crm::start(|_| {
        Answer::Slow(
            Duration::from_millis(800),
            200,
            "application/json",
            r#"{"url":"https://crm.example.org/old-backend"}"#.into(),
        )
    })
    .await;
    let d = Daemon::start(&slow_backend_config(&crm, "old")).await;
    let in_flight = post_in_background(&d);
    wait_until_seen(&crm, 1).await;
    assert_eq!(crm.seen().len(), 1, "the first request reached the CRM");
    std::fs::write(d.config_path(), screen_pop_config("new", "")).unwrap();
    let (_, ready) = d.reload().await;
    assert!(ready.contains("READY=1"));
    assert!(d.post(SEED).await.json()["url"]
        .as_str()
        .unwrap()
        .starts_with("https://crm.example.org/new"));
    let reply = in_flight.await.unwrap();
    assert_eq!(reply.json()["url"], "https://crm.example.org/old-backend");
}

#[tokio::test]
async fn renewed_certificate_is_served_after_reload_without_dropping_connections() {
    let d = Daemon::start(&screen_pop_config("certs", "")).await;
    // A keep-alive connection opened before the reload.
    let tls = tls_stream(&d, b"http/1.1").await;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);

    let renewed = TestCa::new();
    renewed.write(d.dir.path());
    let (_, ready) = d.reload().await;
    assert!(ready.contains("READY=1"));

    // New handshakes see the new certificate; the old chain no longer verifies.
    let reply = Client::new(&renewed.ca_der).post(d.addr, None, SEED).await;
    assert_eq!(reply.status, 200);
    let tcp = TcpStream::connect(d.addr).await.unwrap();
    assert!(tls_connector(&d.ca.ca_der, &[b"http/1.1"])
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .is_err());

    // The connection from before the reload still works.
    let req = http::Request::post("/")
        .header("host", "localhost")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(SEED)))
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn sigterm_drains_in_flight_requests_then_exits_zero() {
    let crm = Crm::start(|_| {
        Answer::Slow(
            Duration::from_millis(700),
            200,
            "application/json",
            r#"{"url":"https://crm.example.org/drained"}"#.into(),
        )
    })
    .await;
    let config = slow_backend_config(&crm, "drain").replace(
        "deadline_ms = 3000\n",
        "deadline_ms = 3000\ndrain_ms = 2000\n",
    );
    let d = Daemon::start(&config).await;
    let in_flight = post_in_background(&d);
    wait_until_seen(&crm, 1).await;
    d.signal("TERM");
    assert!(d.next_notify().await.contains("STOPPING=1"));
    // While draining, health says so (a load balancer stops sending)...
    let (status, body) = d.ops_get("/healthz").await;
    assert_eq!((status, body.contains("draining")), (503, true), "{body}");
    let reply = in_flight.await.unwrap();
    assert_eq!(reply.json()["url"], "https://crm.example.org/drained");
    assert_eq!(reply.header("connection"), Some("close"));
    // ...and a client that has not noticed yet is still served, and told
    // to leave.
    let late = d.post(SEED).await;
    assert_eq!(late.json()["url"], "https://crm.example.org/drained");
    assert_eq!(late.header("connection"), Some("close"));
    let (status, d) = d.wait_exit().await;
    assert!(status.success(), "{status}");
    // Batched log lines are all written before the process exits.
    let id = reply.header("x-request-id").unwrap();
    let line = d.wait_log(&format!("id={id} ")).await;
    assert!(
        line.contains("route=drain") && line.contains("outcome=open"),
        "{line}"
    );
    d.wait_log("  INFO stopped").await;
}

#[tokio::test]
async fn a_second_sigterm_stops_at_once_without_waiting_for_the_drain() {
    let config = screen_pop_config("fast", "").replace(
        "shutdown_grace_ms = 5000\n",
        "shutdown_grace_ms = 5000\ndrain_ms = 60000\n",
    );
    let d = Daemon::start(&config).await;
    d.signal("TERM");
    assert!(d.next_notify().await.contains("STOPPING=1"));
    let (status, body) = d.ops_get("/healthz").await;
    assert_eq!((status, body.contains("draining")), (503, true), "{body}");
    let asked = std::time::Instant::now();
    d.signal("TERM");
    let (status, d) = tokio::time::timeout(Duration::from_secs(5), d.wait_exit())
        .await
        .expect("a second SIGTERM ends the 60 s drain at once");
    assert!(status.success(), "{status}");
    assert!(asked.elapsed() < Duration::from_secs(5));
    d.wait_log("second stop signal: stopping at once").await;
}

#[tokio::test]
async fn metrics_count_what_was_sent() {
    let d = Daemon::start(&screen_pop_config("counted", "")).await;
    let client = Client::new(&d.ca.ca_der);
    for _ in 0..3 {
        assert_eq!(client.post(d.addr, None, SEED).await.status, 200);
    }
    let bad = client.post(d.addr, None, "{").await;
    assert_eq!(bad.status, 400);
    let preflight = http::Request::options("/")
        .header("host", "localhost")
        .header("origin", "https://xuc.example.org")
        .header("access-control-request-method", "POST")
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(client.send(d.addr, preflight).await.status, 204);
    // A failed TLS handshake: plain bytes on the TLS port.
    let mut tcp = TcpStream::connect(d.addr).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut tcp, b"GET / HTTP/1.1\r\n\r\n")
        .await
        .unwrap();
    let mut sink = Vec::new();
    let _ = tokio::io::AsyncReadExt::read_to_end(&mut tcp, &mut sink).await;

    let m = d.metrics().await;
    let requests = sample(
        &m,
        "thirdparty_gateway_requests_total",
        &[("route", "counted"), ("outcome", "open")],
    );
    assert_eq!(requests, 3.0);
    assert_eq!(
        sample(&m, "thirdparty_gateway_errors_total", &[("status", "400")]),
        1.0
    );
    assert_eq!(sample(&m, "thirdparty_gateway_preflights_total", &[]), 1.0);
    assert_eq!(
        sample(&m, "thirdparty_gateway_tls_handshake_failures_total", &[]),
        1.0
    );
    assert_eq!(
        sample(
            &m,
            "thirdparty_gateway_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0
    );
    assert_eq!(
        sample(&m, "thirdparty_gateway_request_duration_seconds_count", &[]),
        3.0
    );
    // Every request's log line carries its id, as the reply does.
    let reply = client.post(d.addr, None, SEED).await;
    let id = reply.header("x-request-id").unwrap().to_owned();
    let line = d.wait_log(&format!("id={id} ")).await;
    assert!(line.contains("outcome=open"), "{line}");
}

/// Log lines are written a batch per event-loop turn: under a concurrent
/// burst on two workers every request still gets exactly one whole line,
/// and a line shows up without waiting for more traffic.
#[tokio::test]
async fn a_burst_on_two_workers_logs_one_whole_line_per_request() {
    let config = screen_pop_config("burst", "").replace("[server]\n", "[server]\nworkers = 2\n");
    let d = Daemon::start(&config).await;
    let client = Arc::new(Client::new(&d.ca.ca_der));
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (client, addr) = (Arc::clone(&client), d.addr);
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for _ in 0..25 {
                let reply = client.post(addr, None, SEED).await;
                assert_eq!(reply.status, 200);
                ids.push(reply.header("x-request-id").unwrap().to_owned());
            }
            ids
        }));
    }
    let mut ids = Vec::new();
    for task in tasks {
        ids.extend(task.await.unwrap());
    }
    assert_eq!(ids.len(), 200);
    // Every line shows up with nothing sent after the burst. (The id
    // listed last need not be the last logged: eight clients on two
    // workers.)
    for id in &ids {
        d.wait_log(&format!(" request id={id} ")).await;
    }
    let log = d.log.lock().unwrap().clone();
    for id in &ids {
        let lines: Vec<&String> = log
            .iter()
            .filter(|l| l.contains(&format!(" request id={id} ")))
            .collect();
        assert_eq!(lines.len(), 1, "one line for {id}: {lines:#?}");
        let line = lines[0];
        assert!(
            line.starts_with("20")
                && line.contains("Z  INFO request id=")
                && line.contains(" latency_ms="),
            "a whole line: {line}"
        );
        assert_eq!(line.matches(" request id=").count(), 1, "{line}");
    }
}

/// `log.format = "json"`: one JSON object per line, the request line's
/// fields as keys, for log shippers.
#[tokio::test]
async fn json_log_format_writes_one_object_per_request() {
    let d = Daemon::start(&screen_pop_config("shipped", "[log]\nformat = \"json\"\n")).await;
    let reply = Client::new(&d.ca.ca_der).post(d.addr, None, SEED).await;
    assert_eq!(reply.status, 200);
    let id = reply.header("x-request-id").unwrap();
    let line = d.wait_log(&format!("\"id\":\"{id}\"")).await;
    let event: serde_json::Value = serde_json::from_str(&line).expect("one JSON object per line");
    assert_eq!(event["level"], "INFO", "{line}");
    assert_eq!(event["message"], "request", "{line}");
    assert_eq!(event["route"], "shipped", "{line}");
    assert_eq!(event["outcome"], "open", "{line}");
    assert!(
        event["timestamp"]
            .as_str()
            .is_some_and(|t| t.starts_with("20")),
        "{line}"
    );
}

/// systemd-socket-activate (from systemd) hands the gateway a listening
/// socket as fd 3, as a `.socket` unit would.
#[tokio::test]
#[test_tools::needs("systemd-socket-activate")]
async fn socket_activation_uses_the_passed_socket() {
    let Some(tool) = require_tool("systemd-socket-activate", "apt-get install systemd") else {
        return;
    };
    let dir = TempDir::new().unwrap();
    let ca = TestCa::new();
    ca.write(dir.path());
    // server.listen names a port we do not use: the passed socket wins.
    let config = screen_pop_config("activated", "").replace("127.0.0.1:0", "127.0.0.1:1");
    std::fs::write(dir.path().join("config.toml"), config).unwrap();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut child = Command::new(tool)
        .arg("-l")
        .arg(format!("127.0.0.1:{port}"))
        .arg(binary())
        .args(["run", "--config"])
        .arg(dir.path().join("config.toml"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut reply = None;
    for _ in 0..200 {
        if TcpStream::connect(addr).await.is_ok() {
            reply = Some(Client::new(&ca.ca_der).post(addr, None, SEED).await);
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let reply = reply.expect("the activated socket answered");
    assert!(reply.json()["url"]
        .as_str()
        .unwrap()
        .starts_with("https://crm.example.org/activated"));
    let _ = child.kill().await;
}

/// A connection to the daemon, TLS with the given ALPN.
async fn tls_stream(
    d: &Daemon,
    alpn: &[u8],
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    tls_over(
        &d.ca.ca_der,
        TcpStream::connect(d.addr).await.unwrap(),
        alpn,
    )
    .await
}

/// hyper drops a request's future when its client goes away; the request
/// still gets its line (nginx's 499) and is counted, whether the client
/// closed an HTTP/1 connection or reset one HTTP/2 stream of a connection
/// it keeps.
#[tokio::test]
async fn a_call_its_client_abandons_is_logged_as_499_and_counted() {
    let crm = Crm::start(|_| Answer::Hang).await;
    let d = Daemon::start(&slow_backend_config(&crm, "abandoned")).await;
    let body = SEED.as_bytes();

    let mut h1 = tls_stream(&d, b"http/1.1").await;
    let head = format!(
        "POST / HTTP/1.1\r\nHost: localhost\r\nOrigin: https://h1-gone.example.org\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    tokio::io::AsyncWriteExt::write_all(&mut h1, head.as_bytes())
        .await
        .unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut h1, body)
        .await
        .unwrap();
    wait_until_seen(&crm, 1).await;
    drop(h1);

    let h2 = tls_stream(&d, b"h2").await;
    let (mut send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        TokioIo::new(h2),
    )
    .await
    .unwrap();
    let conn = tokio::spawn(conn);
    let req = http::Request::post(format!("https://localhost:{}/", d.addr.port()))
        .header("origin", "https://h2-gone.example.org")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(body)))
        .unwrap();
    let pending = send.send_request(req);
    let waited = tokio::time::timeout(Duration::from_millis(300), async {
        tokio::join!(pending, wait_until_seen(&crm, 2)).0
    });
    // Dropping the unanswered future resets the stream (RST_STREAM CANCEL).
    assert!(waited.await.is_err(), "a hanging CRM cannot have answered");

    for origin in ["https://h1-gone.example.org", "https://h2-gone.example.org"] {
        let line = d.wait_log(&format!("origin={origin} ")).await;
        assert!(
            line.contains("outcome=cancelled status=499 ")
                && line.contains("error=\"the client closed the request before its reply\""),
            "{line}"
        );
    }
    assert!(
        !conn.is_finished(),
        "the HTTP/2 connection itself stays open"
    );
    let m = d.metrics().await;
    assert_eq!(
        sample(
            &m,
            "thirdparty_gateway_cancelled_total",
            &[("by", "client")]
        ),
        2.0
    );
    // The stream reset left the connection usable for the next call.
    let req = http::Request::post(format!("https://localhost:{}/", d.addr.port()))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(b"{")))
        .unwrap();
    let reply = send.send_request(req).await.unwrap();
    assert_eq!(reply.status(), 400);
}

/// A stop whose grace runs out drops the requests still running; each
/// gets a warning line saying the stop dropped it, not its client.
#[tokio::test]
async fn a_stop_past_its_grace_logs_each_request_it_dropped() {
    let crm = Crm::start(|_| Answer::Hang).await;
    let config = slow_backend_config(&crm, "cut").replace(
        "deadline_ms = 3000\n",
        "deadline_ms = 3000\ndrain_ms = 0\nshutdown_grace_ms = 200\n",
    );
    let d = Daemon::start(&config).await;
    let (client, addr) = (Client::new(&d.ca.ca_der), d.addr);
    let req = http::Request::post("/")
        .header("host", "localhost")
        .header("origin", "https://cut-off.example.org")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(SEED.as_bytes())))
        .unwrap();
    let in_flight = tokio::spawn(async move { client.try_send(addr, req).await });
    wait_until_seen(&crm, 1).await;
    d.signal("TERM");
    let (status, d) = d.wait_exit().await;
    assert!(status.success(), "{status}");
    assert!(in_flight.await.unwrap().is_err(), "no reply was sent");
    let line = d.wait_log("origin=https://cut-off.example.org ").await;
    assert!(
        line.contains(" WARN request ")
            && line.contains("outcome=cancelled")
            && line.contains("shutdown_grace ran out")
            && !line.contains("status="),
        "{line}"
    );
}
