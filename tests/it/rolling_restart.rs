//! A rolling restart behind HAProxy loses no call: two real gateways behind
//! HAProxy in TCP mode, checked on `/healthz`, keep-alive clients calling
//! through it while each gateway in turn is stopped (SIGTERM) and started
//! again on the same ports. The config below is the one docs/operations.md
//! shows.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tempfile::TempDir;
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio::time::Instant;

use crate::support::*;

/// Time allowed for a start, a stop or a health change (generous: CI).
const SOON: Duration = Duration::from_secs(20);
/// Keep-alive clients calling through HAProxy.
const CLIENTS: usize = 8;
/// Bounds on the load: calls per client, and time.
const MAX_CALLS_PER_CLIENT: u64 = 50_000;
const MAX_LOAD_TIME: Duration = Duration::from_secs(90);

/// One gateway process on fixed ports (the same across its restarts).
struct Instance {
    name: String,
    dir: TempDir,
    port: u16,
    ops: SocketAddr,
    child: Option<Child>,
}

impl Instance {
    async fn start(name: &str) -> Self {
        let dir = TempDir::new().unwrap();
        let (port, ops) = (free_port(), free_port());
        let config = format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\nplain_http = true\n\
             drain_ms = 1500\nshutdown_grace_ms = 5000\n\
             [ops]\nlisten = \"127.0.0.1:{ops}\"\n[cors]\nallow_origins = [\"*\"]\n\
             [[routes]]\nname = \"{name}\"\n[routes.open]\nevent = \"EventRinging\"\n\
             url = \"https://crm.example.org/{name}\"\n"
        );
        std::fs::write(dir.path().join("config.toml"), config).unwrap();
        let mut instance = Self {
            name: name.to_owned(),
            dir,
            port,
            ops: SocketAddr::from(([127, 0, 0, 1], ops)),
            child: None,
        };
        instance.run().await;
        instance
    }

    /// Starts the process and waits until its health check says serving.
    async fn run(&mut self) {
        let child = Command::new(binary())
            .args(["run", "--config"])
            .arg(self.dir.path().join("config.toml"))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + SOON;
        while health(self.ops).await != Some(200) {
            assert!(Instant::now() < deadline, "the gateway did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Sends SIGTERM and waits for the process to exit by itself.
    async fn stop(&mut self) {
        let mut child = self.child.take().unwrap();
        send_signal(child.id().unwrap(), "TERM");
        let status = tokio::time::timeout(SOON, child.wait())
            .await
            .expect("the gateway did not stop in time")
            .unwrap();
        assert!(status.success(), "{status}");
    }

    /// Waits until the balancer sends new connections to this instance
    /// (keep-alive clients stay where they are: only new connections tell).
    async fn wait_in_rotation(&self, proxy: &Haproxy) {
        let deadline = Instant::now() + SOON;
        while !answered_by(proxy.addr).await.contains(&self.name) {
            assert!(Instant::now() < deadline, "{} never took a call", self.name);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn ops_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let tcp = TcpStream::connect(addr).await.ok()?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .ok()?;
    tokio::spawn(conn);
    let req = http::Request::get(path)
        .header("host", "localhost")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = tokio::time::timeout(SOON, send.send_request(req))
        .await
        .ok()?
        .ok()?;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.ok()?.to_bytes();
    Some((status, String::from_utf8_lossy(&body).into_owned()))
}

async fn health(ops: SocketAddr) -> Option<u16> {
    ops_get(ops, "/healthz").await.map(|(status, _)| status)
}

/// The HAProxy config for two gateways: TCP mode, health from the ops port.
fn haproxy_config(front: u16, gateways: &[&Instance]) -> String {
    let mut config = format!(
        "global\n    maxconn 1000\n\
         defaults\n    mode tcp\n    timeout connect 2s\n    timeout client 30s\n    timeout server 30s\n\
         \x20   retries 3\n    option redispatch\n\
         frontend gateway\n    bind 127.0.0.1:{front}\n    default_backend gateways\n\
         backend gateways\n    balance roundrobin\n    option httpchk GET /healthz\n\
         \x20   default-server inter 200ms fall 1 rise 2\n"
    );
    for (i, g) in gateways.iter().enumerate() {
        config.push_str(&format!(
            "    server gw{i} 127.0.0.1:{} check port {}\n",
            g.port,
            g.ops.port()
        ));
    }
    config
}

/// HAProxy in the foreground, killed on drop.
struct Haproxy {
    _dir: TempDir,
    _child: Child,
    addr: SocketAddr,
}

impl Haproxy {
    async fn start(program: &Path, gateways: &[&Instance]) -> Self {
        let dir = TempDir::new().unwrap();
        let front = free_port();
        let file: PathBuf = dir.path().join("haproxy.cfg");
        std::fs::write(&file, haproxy_config(front, gateways)).unwrap();
        let child = Command::new(program)
            .arg("-db")
            .arg("-f")
            .arg(&file)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let addr = SocketAddr::from(([127, 0, 0, 1], front));
        let proxy = Self {
            _dir: dir,
            _child: child,
            addr,
        };
        let deadline = Instant::now() + SOON;
        while call_once(addr).await.is_err() {
            assert!(Instant::now() < deadline, "HAProxy did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        proxy
    }
}

type Send = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn connect(addr: SocketAddr) -> Result<Send, String> {
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    Ok(send)
}

/// One call; `Ok(keep)` when answered, `keep` false when the gateway asked
/// to close the connection.
async fn call(send: &mut Send) -> Result<bool, String> {
    let req = http::Request::post("/")
        .header("host", "localhost")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(SEED.as_bytes())))
        .unwrap();
    let resp = tokio::time::timeout(SOON, send.send_request(req))
        .await
        .map_err(|_| "no answer in time".to_owned())?
        .map_err(|e| e.to_string())?;
    let status = resp.status();
    let keep = resp
        .headers()
        .get("connection")
        .is_none_or(|v| v != "close");
    resp.into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?;
    if status != 200 {
        return Err(format!("status {status}"));
    }
    Ok(keep)
}

async fn call_once(addr: SocketAddr) -> Result<bool, String> {
    call(&mut connect(addr).await?).await
}

/// The body of a call on a new connection (it names the route, so the
/// instance), or an empty string.
async fn answered_by(addr: SocketAddr) -> String {
    let Ok(mut send) = connect(addr).await else {
        return String::new();
    };
    let req = http::Request::post("/")
        .header("host", "localhost")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(SEED.as_bytes())))
        .unwrap();
    let Ok(Ok(resp)) = tokio::time::timeout(SOON, send.send_request(req)).await else {
        return String::new();
    };
    match resp.into_body().collect().await {
        Ok(body) => String::from_utf8_lossy(&body.to_bytes()).into_owned(),
        Err(_) => String::new(),
    }
}

/// What the clients saw.
#[derive(Default)]
struct Tally {
    answered: AtomicU64,
    failures: std::sync::Mutex<Vec<String>>,
}

/// A keep-alive client: calls one after the other on its connection, and
/// opens a new one when the gateway closed it (`Connection: close`, or
/// closed while idle, which a client notices before sending).
async fn client(addr: SocketAddr, stop: Arc<AtomicBool>, tally: Arc<Tally>) {
    let started = Instant::now();
    let mut conn: Option<Send> = None;
    for _ in 0..MAX_CALLS_PER_CLIENT {
        if stop.load(Ordering::Relaxed) || started.elapsed() > MAX_LOAD_TIME {
            return;
        }
        let reusable = match conn.take() {
            Some(mut send) => send.ready().await.is_ok().then_some(send),
            None => None,
        };
        let mut send = match reusable {
            Some(send) => send,
            None => match connect(addr).await {
                Ok(send) => send,
                Err(err) => {
                    tally
                        .failures
                        .lock()
                        .unwrap()
                        .push(format!("connect: {err}"));
                    continue;
                }
            },
        };
        match call(&mut send).await {
            Ok(keep) => {
                tally.answered.fetch_add(1, Ordering::Relaxed);
                if keep {
                    conn = Some(send);
                }
            }
            Err(err) => tally.failures.lock().unwrap().push(err),
        }
    }
}

#[tokio::test]
#[test_tools::needs("haproxy")]
async fn a_rolling_restart_behind_haproxy_loses_no_call() {
    let Some(program) = require_tool("haproxy", "apt-get install haproxy") else {
        return;
    };
    let mut a = Instance::start("rolling-a").await;
    let mut b = Instance::start("rolling-b").await;
    let proxy = Haproxy::start(&program, &[&a, &b]).await;
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| tokio::spawn(client(proxy.addr, Arc::clone(&stop), Arc::clone(&tally))))
        .collect();
    a.wait_in_rotation(&proxy).await;
    b.wait_in_rotation(&proxy).await;
    for instance in [&mut a, &mut b] {
        instance.stop().await;
        instance.run().await;
        instance.wait_in_rotation(&proxy).await;
    }
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.await.unwrap();
    }
    let failures = tally.failures.lock().unwrap();
    let answered = tally.answered.load(Ordering::Relaxed);
    assert!(
        failures.is_empty(),
        "{} of {} calls failed: {:?}",
        failures.len(),
        answered + failures.len() as u64,
        &failures[..failures.len().min(10)]
    );
    assert!(answered > 0);
}
