//! Shared helpers: a test CA, a gateway started on 127.0.0.1:0 with real TLS,
//! and a small HTTP client that speaks HTTP/1.1 or HTTP/2 as ALPN decides.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, ServerName};
use tempfile::TempDir;
use thirdparty_gateway::{config, gateway::Live, server};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const SEED: &str = include_str!("../fixtures/seed-queue-call.json");
pub const NO_QUEUE: &str = include_str!("../fixtures/direct-call-no-queue.json");
pub const WITH_TOKEN: &str = include_str!("../fixtures/newer-with-token.json");

/// A CA made for one test, and a server certificate for 127.0.0.1/localhost.
pub struct TestCa {
    pub ca_der: CertificateDer<'static>,
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

impl TestCa {
    pub fn new() -> Self {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "thirdparty-gateway test CA");
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);
        let leaf_key = KeyPair::generate().unwrap();
        let leaf_params =
            CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
        let leaf = leaf_params.signed_by(&leaf_key, &issuer).unwrap();
        Self {
            ca_der: ca_cert.der().clone(),
            ca_pem: ca_cert.pem(),
            cert_pem: leaf.pem(),
            key_pem: leaf_key.serialize_pem(),
        }
    }

    /// Writes the server pair into `dir` as cert.pem / key.pem.
    pub fn write(&self, dir: &Path) {
        std::fs::write(dir.join("cert.pem"), &self.cert_pem).unwrap();
        std::fs::write(dir.join("key.pem"), &self.key_pem).unwrap();
    }
}

/// The `[tls]` and `[server]` head of a test config; routes and CORS follow.
pub const TLS_HEAD: &str = "[tls]\ncert = \"cert.pem\"\nkey = \"key.pem\"\n";

/// A running gateway; dropping it stops the server.
pub struct TestGateway {
    pub addr: SocketAddr,
    pub ca: TestCa,
    /// The served generations and the process-wide metrics.
    pub live: Arc<Live>,
    /// Holds the config and certificates for as long as the server runs.
    _dir: TempDir,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl TestGateway {
    /// The config file it was started from (a test rewrites it, then
    /// reloads).
    pub fn config_path(&self) -> std::path::PathBuf {
        self._dir.path().join("config.toml")
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.addr.port())
    }

    pub fn client(&self) -> Client {
        Client::new(&self.ca.ca_der)
    }

    /// Replaces the config file with `config` and reloads it, as SIGHUP
    /// does; returns the generation now served.
    pub fn reload_with(&self, config: &str) -> u64 {
        std::fs::write(self._dir.path().join("config.toml"), config).unwrap();
        self.live
            .reload()
            .unwrap_or_else(|e| panic!("reload refused: {e:#}"))
    }

    /// Stops accepting and waits for the server to drain.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap();
        }
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// Writes `config` (which should start with [`TLS_HEAD`]) and a fresh
/// certificate pair into a temporary folder, loads it as `run` does, and
/// serves it on 127.0.0.1:0.
pub async fn start_gateway(config: &str) -> TestGateway {
    start_gateway_with(config, &[]).await
}

/// Like [`start_gateway`], with extra files (name, contents) beside the config.
pub async fn start_gateway_with(config: &str, files: &[(&str, &str)]) -> TestGateway {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    start_gateway_on(listener, config, files).await
}

/// Like [`start_gateway_with`], on a listener the caller bound.
pub async fn start_gateway_on(
    listener: TcpListener,
    config: &str,
    files: &[(&str, &str)],
) -> TestGateway {
    capture_logs();
    let dir = TempDir::new().unwrap();
    let ca = TestCa::new();
    ca.write(dir.path());
    for (name, contents) in files {
        std::fs::write(dir.path().join(name), contents).unwrap();
    }
    let path = dir.path().join("config.toml");
    std::fs::write(&path, config).unwrap();
    let config = config::load(&path).unwrap_or_else(|e| panic!("test config invalid:\n{e}"));
    let gateway = Live::new(config, &path, None).unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(server::run(listener, Arc::clone(&gateway), async {
        let _ = stopped.await;
    }));
    TestGateway {
        addr,
        ca,
        live: gateway,
        _dir: dir,
        stop: Some(stop),
        task: Some(task),
    }
}

/// The ops listener (health, metrics, console) of a test gateway, served
/// on 127.0.0.1:0 until dropped.
pub struct TestOps {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for TestOps {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves `live`'s ops listener as `run` does, on 127.0.0.1:0.
pub async fn start_ops(live: &Arc<Live>) -> TestOps {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(thirdparty_gateway::ops::run(
        listener,
        Arc::clone(live),
        std::future::pending(),
    ));
    TestOps { addr, task }
}

/// One plain-HTTP GET on a connection of its own, `Host: localhost` unless
/// `headers` name another; the whole exchange within 30 s.
pub async fn plain_get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Reply {
    let exchange = async {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .unwrap();
        tokio::spawn(conn);
        let mut req = Request::get(path);
        if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("host")) {
            req = req.header("host", "localhost");
        }
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        let req = req.body(Full::new(Bytes::new())).unwrap();
        read(send.send_request(req).await.unwrap()).await
    };
    tokio::time::timeout(std::time::Duration::from_secs(30), exchange)
        .await
        .unwrap_or_else(|_| panic!("GET {path} on {addr} got no answer in time"))
}

/// A CORS section allowing exactly one origin, with PNA on.
pub fn cors_for(origin: &str) -> String {
    format!("[cors]\nallow_origins = [\"{origin}\"]\nallow_private_network = true\n")
}

/// A reply read in full.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub version: Version,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }
}

/// A TLS connector trusting one CA, offering the given ALPN protocols.
pub fn tls_connector(ca: &CertificateDer<'static>, alpn: &[&[u8]]) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// A TLS connection to `localhost` over `tcp`, trusting one CA, offering
/// one ALPN protocol.
pub async fn tls_over(
    ca: &CertificateDer<'static>,
    tcp: TcpStream,
    alpn: &[u8],
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let name = ServerName::try_from("localhost").unwrap();
    tls_connector(ca, &[alpn]).connect(name, tcp).await.unwrap()
}

/// A TLS client trusting one CA, offering the given ALPN protocols.
pub struct Client {
    tls: tokio_rustls::TlsConnector,
}

impl Client {
    pub fn new(ca: &CertificateDer<'static>) -> Self {
        Self::with_alpn(ca, &[b"http/1.1"])
    }

    pub fn with_alpn(ca: &CertificateDer<'static>, alpn: &[&[u8]]) -> Self {
        Self {
            tls: tls_connector(ca, alpn),
        }
    }

    /// Sends one request on a new connection.
    pub async fn send(&self, addr: SocketAddr, req: Request<Full<Bytes>>) -> Reply {
        self.try_send(addr, req).await.unwrap()
    }

    /// Sends one request on a new connection; `Err` when the connection
    /// fails (e.g. the server closed it while the body was still being sent).
    pub async fn try_send(
        &self,
        addr: SocketAddr,
        req: Request<Full<Bytes>>,
    ) -> Result<Reply, String> {
        let err = |e: &dyn std::fmt::Display| e.to_string();
        let tcp = TcpStream::connect(addr).await.map_err(|e| err(&e))?;
        let name = ServerName::try_from("localhost").unwrap();
        let tls = self.tls.connect(name, tcp).await.map_err(|e| err(&e))?;
        let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
        let io = TokioIo::new(tls);
        let response = if h2 {
            let (mut send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                .await
                .map_err(|e| err(&e))?;
            tokio::spawn(conn);
            send.send_request(req).await.map_err(|e| err(&e))?
        } else {
            let (mut send, conn) = hyper::client::conn::http1::handshake(io)
                .await
                .map_err(|e| err(&e))?;
            tokio::spawn(conn);
            send.send_request(req).await.map_err(|e| err(&e))?
        };
        Ok(read(response).await)
    }

    /// POSTs a JSON body to `/` with an Origin header.
    pub async fn post(&self, addr: SocketAddr, origin: Option<&str>, body: &str) -> Reply {
        self.post_at(addr, "/", origin, body).await
    }

    /// POSTs a JSON body to `path` with an Origin header.
    pub async fn post_at(
        &self,
        addr: SocketAddr,
        path: &str,
        origin: Option<&str>,
        body: &str,
    ) -> Reply {
        let mut req = Request::post(path).header("content-type", "application/json");
        if let Some(o) = origin {
            req = req.header("origin", o);
        }
        let req = req
            .header("host", "localhost")
            .body(Full::new(Bytes::from(body.to_owned())))
            .unwrap();
        self.send(addr, req).await
    }
}

async fn read(response: Response<hyper::body::Incoming>) -> Reply {
    let (parts, body) = response.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    Reply {
        status: parts.status,
        version: parts.version,
        headers: parts.headers,
        body,
    }
}

/// A free port on loopback, from 127.0.0.1:0 (nothing listens on it once
/// this returns: a connection there is refused).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Sends the signal `name` (`HUP`, `TERM`...) to process `pid`.
pub fn send_signal(pid: u32, name: &str) {
    let sent = std::process::Command::new("kill")
        .args(["-s", name, &pid.to_string()])
        .status()
        .unwrap();
    assert!(sent.success(), "kill -s {name} {pid}");
}

/// Path of the built binary, for CLI tests.
pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_thirdparty-gateway"))
}

static LOGS: std::sync::OnceLock<Arc<std::sync::Mutex<Vec<u8>>>> = std::sync::OnceLock::new();

/// Sends the gateway's log lines (all tests of this binary) to a buffer,
/// written by the gateway's own text formatter, as in production.
fn capture_logs() {
    LOGS.get_or_init(|| {
        let buf = Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = Arc::clone(&buf);
        let _ = tracing_subscriber::fmt()
            .with_env_filter("thirdparty_gateway=info")
            .with_ansi(false)
            .event_format(thirdparty_gateway::logging::TextLine { time: true })
            .with_writer(move || LogWriter(Arc::clone(&sink)))
            .try_init();
        buf
    });
}

struct LogWriter(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for LogWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Log lines so far that contain `needle` (tests use unique route names).
pub fn log_lines(needle: &str) -> Vec<String> {
    let Some(buf) = LOGS.get() else {
        return Vec::new();
    };
    let text = String::from_utf8_lossy(&buf.lock().unwrap()).into_owned();
    text.lines()
        .filter(|l| l.contains(needle))
        .map(str::to_owned)
        .collect()
}

/// A tool from PATH, or `None` (with a loud message) when it is missing
/// outside CI. In CI (`CI` set) a missing tool fails the test: `.ci/run`
/// must install it.
pub fn require_tool(name: &str, install: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(name))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        if std::env::var_os("CI").is_some() {
            panic!("CI is set but `{name}` is missing: .ci/run must install it ({install})");
        }
        eprintln!("\n!!!!! SKIPPED: `{name}` not found; {install} to run this test !!!!!\n");
    }
    found
}

/// Runs the real binary's `simulate` on `config` (written beside a test
/// certificate pair and `files`, in a folder that is its working
/// directory, so `extra` may name the files: `--crm-reply crm=reply.json`)
/// with `payload` as the call, and returns all it printed (standard output,
/// then standard error, so a secret shown on either is caught); it must
/// exit 0 on `open` (or a dry run), 1 on `none`, within 30 s.
pub async fn simulate_cli(
    config: &str,
    payload: &str,
    files: &[(&str, &str)],
    extra: &[&str],
) -> String {
    simulate_cli_env(config, payload, files, extra, &[]).await
}

/// [`simulate_cli`] with environment variables set for the command.
pub async fn simulate_cli_env(
    config: &str,
    payload: &str,
    files: &[(&str, &str)],
    extra: &[&str],
    env: &[(&str, &str)],
) -> String {
    let dir = tempfile::TempDir::new().unwrap();
    TestCa::new().write(dir.path());
    std::fs::write(dir.path().join("config.toml"), config).unwrap();
    for (name, contents) in files {
        std::fs::write(dir.path().join(name), contents).unwrap();
    }
    std::fs::write(dir.path().join("call.json"), payload).unwrap();
    let run = tokio::process::Command::new(binary())
        .current_dir(dir.path())
        .arg("simulate")
        .arg("--config")
        .arg(dir.path().join("config.toml"))
        .arg(dir.path().join("call.json"))
        .args(extra)
        .envs(env.iter().copied())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(std::time::Duration::from_secs(30), run)
        .await
        .expect("simulate ends")
        .unwrap();
    let text = printed(&out);
    // 0 on open (or a dry run, which decides nothing), 1 on none.
    let none =
        text.contains("\nreply: {\"action\":\"none\"}") || text.contains("the gateway answers 404");
    let want = if none && !extra.contains(&"--dry-run") {
        1
    } else {
        0
    };
    assert_eq!(out.status.code(), Some(want), "{text}");
    text
}

/// What a finished command printed, stdout then stderr.
pub fn printed(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
