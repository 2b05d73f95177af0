//! The call with and without the caller directory, side by side, against a
//! test CRM that answers its search after a realistic delay: two gateways
//! in this process (the same config, one with a `[backends.NAME.directory]`),
//! one keep-alive client each, calls sent one at a time, alternating. Also
//! times the directory's full sync of the CRM's records (pages of 2,000
//! read as fast as the CRM answers them: `pages_per_second = 1000`).
//!
//!     cargo run --release --example directory-calls [RECORDS] [DELAY_MS] [CALLS]
//!
//! Defaults: 100,000 records, a search answered after 50 ms (a PHP CRM's
//! `LIKE '%...%'` over a contacts table; the page requests are answered at
//! once), 500 calls to each gateway. Wall times on a shared machine are
//! noisy: compare the columns of one run, not runs.

#[path = "machine.rs"]
mod machine;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use thirdparty_gateway::gateway::Live;
use tokio::net::{TcpListener, TcpStream};

/// The gateway's allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const PAYLOAD: &str = r#"{"user":{"userId":4,"agentId":1,"fullName":"Agent","token":"T"},"caller":"CALLER","callee":"1000","queue":{"id":2,"name":"sales","displayName":"Sales"},"userData":{}}"#;

/// Record `i`'s number, as the CRM stores it (national, spaced).
fn stored(i: u64) -> String {
    let d = format!("6{i:08}");
    format!(
        "0{} {} {} {} {}",
        &d[..1],
        &d[1..3],
        &d[3..5],
        &d[5..7],
        &d[7..]
    )
}

fn record(i: u64) -> serde_json::Value {
    serde_json::json!({"id": i, "name": format!("Contact {i}"), "phone": stored(i)})
}

/// The test CRM: `/search?q=DIGITS` answers the records whose number ends
/// with the caller's last eight digits, after `delay`; `/contacts?offset=
/// &limit=` pages the records by id at once.
async fn crm(records: u64, delay: Duration) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("a port");
    let addr = listener.local_addr().expect("an address");
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<hyper::body::Incoming>| async move {
                    let target = req.uri().to_string();
                    let query: std::collections::HashMap<String, String> =
                        url::form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
                            .into_owned()
                            .collect();
                    let body = if target.starts_with("/search") {
                        tokio::time::sleep(delay).await;
                        let digits: String = query
                            .get("q")
                            .map(|q| q.chars().filter(char::is_ascii_digit).collect())
                            .unwrap_or_default();
                        let tail = &digits[digits.len().saturating_sub(8)..];
                        let found: Vec<_> = tail
                            .parse::<u64>()
                            .ok()
                            .filter(|i| *i < records)
                            .map(record)
                            .into_iter()
                            .collect();
                        serde_json::json!({ "data": found })
                    } else {
                        let num = |k: &str, d: u64| {
                            query.get(k).and_then(|v| v.parse().ok()).unwrap_or(d)
                        };
                        let (offset, limit) = (num("offset", 0), num("limit", 100));
                        let page: Vec<_> = (offset..(offset + limit).min(records))
                            .map(record)
                            .collect();
                        serde_json::json!({ "data": page })
                    };
                    Ok::<_, Infallible>(
                        Response::builder()
                            .header("content-type", "application/json")
                            .body(Full::new(Bytes::from(body.to_string())))
                            .expect("a reply"),
                    )
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), service)
                    .await;
            });
        }
    });
    addr
}

/// A gateway on 127.0.0.1:0 (plain HTTP), its backend `name`, with a
/// directory when `directory` has its extra settings.
async fn gateway(
    crm: SocketAddr,
    name: &str,
    directory: Option<&str>,
    dir: &std::path::Path,
) -> (SocketAddr, Arc<Live>) {
    let mut config = format!(
        r#"[server]
plain_http = true
listen = "127.0.0.1:0"
deadline_ms = 5000
[cors]
allow_origins = ["*"]
[phone]
default_region = "FR"
[backends.{name}]
url = "http://{crm}/search"
encoding = "query"
body = {{ q = "{{{{ caller | digits }}}}" }}
timeout_ms = 5000
[backends.{name}.reply]
format = "json"
records = "data"
phones = ["phone"]
extract = {{ id = "id", name = "name" }}
url = "https://crm.example.org/c/{{{{ id }}}}"
title = "{{{{ name }}}}"
[[routes]]
name = "{name}"
backend = "{name}"
"#
    );
    if let Some(extra) = directory {
        config.push_str(&format!(
            r#"[backends.{name}.directory]
url = "http://{crm}/contacts"
body = {{ offset = "{{{{ page.offset }}}}", limit = "{{{{ page.size }}}}" }}
page_size = 2000
pages_per_second = 1000
max_pages = 1000
max_age_s = 3600
{extra}
"#
        ));
    }
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, config).expect("config written");
    let config = thirdparty_gateway::config::load(&path).expect("a valid config");
    let live = Live::new(config, &path, None).expect("a gateway");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("a port");
    let addr = listener.local_addr().expect("an address");
    tokio::spawn(thirdparty_gateway::server::run(
        listener,
        Arc::clone(&live),
        std::future::pending(),
    ));
    (addr, live)
}

/// One keep-alive HTTP/1.1 connection to a gateway.
struct Caller {
    send: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
}

impl Caller {
    async fn connect(addr: SocketAddr) -> Self {
        let tcp = TcpStream::connect(addr).await.expect("connected");
        let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .expect("handshake");
        tokio::spawn(conn);
        Self { send }
    }

    /// One call; its latency and whether a card opened.
    async fn call(&mut self, caller: &str) -> (Duration, bool) {
        let req = Request::post("/")
            .header("host", "gateway")
            .header("content-type", "application/json")
            .header("origin", "https://xuc.example.org")
            .body(Full::new(Bytes::from(PAYLOAD.replace("CALLER", caller))))
            .expect("a request");
        let t = Instant::now();
        self.send.ready().await.expect("the connection is open");
        let resp = self.send.send_request(req).await.expect("a reply");
        let status = resp.status();
        let body = resp.into_body().collect().await.expect("a body").to_bytes();
        assert!(status.is_success(), "{status}: {body:?}");
        (t.elapsed(), body.windows(6).any(|w| w == b"\"open\""))
    }
}

/// Waits until `backend`'s index holds every record's number; the time
/// since `started`.
async fn built(live: &Live, backend: &str, records: u64, started: Instant) -> Duration {
    let want = format!("thirdparty_gateway_directory_entries{{backend=\"{backend}\"}} {records}\n");
    for _ in 0..60_000 {
        if live.metrics.encode().contains(&want) {
            return started.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{backend}'s full sync did not end within 10 minutes");
}

fn quantiles(mut times: Vec<Duration>) -> String {
    times.sort_unstable();
    let at = |q: f64| times[((times.len() as f64 - 1.0) * q) as usize].as_secs_f64() * 1e3;
    format!(
        "p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        at(0.5),
        at(0.99),
        at(1.0)
    )
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let arg = |n: usize, d: u64| {
        std::env::args()
            .nth(n)
            .and_then(|a| a.parse().ok())
            .unwrap_or(d)
    };
    let (records, delay_ms, calls) = (arg(1, 100_000), arg(2, 50), arg(3, 500));
    let region = thirdparty_gateway::template::phone_region("FR").expect("FR is a region");
    thirdparty_gateway::phone::warm(region);
    let dir = tempfile::TempDir::new().expect("a folder");
    let crm = crm(records, Duration::from_millis(delay_ms)).await;
    let started = Instant::now();
    let (with, with_live) = gateway(crm, "dir", Some(""), dir.path()).await;
    let synced = built(&with_live, "dir", records, started).await;
    let (without, _without_live) = gateway(crm, "live", None, dir.path()).await;
    // Full syncs back to back (each a second or so, then a second's wait).
    let started = Instant::now();
    let (busy, busy_live) = gateway(crm, "busy", Some("full_every_s = 1"), dir.path()).await;
    built(&busy_live, "busy", records, started).await;
    let (mut a, mut b) = (Caller::connect(with).await, Caller::connect(without).await);
    let mut c = Caller::connect(busy).await;
    // Warm both (connections to the CRM, templates, caches).
    for i in 0..20 {
        let caller = format!("+336{:08}", i);
        a.call(&caller).await;
        b.call(&caller).await;
    }
    let (mut hit, mut live, mut miss, mut syncing) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut opened = [0usize; 4];
    for k in 0..calls {
        let i = (k * 7919) % records;
        let caller = format!("+336{i:08}");
        let (t, o) = a.call(&caller).await;
        hit.push(t);
        opened[0] += usize::from(o);
        let (t, o) = b.call(&caller).await;
        live.push(t);
        opened[1] += usize::from(o);
        let (t, o) = c.call(&caller).await;
        syncing.push(t);
        opened[3] += usize::from(o);
        if k % 10 == 0 {
            // A caller the index lacks: the directory's miss, then the live look-up.
            let (t, o) = a.call(&format!("+337{i:08}")).await;
            miss.push(t);
            opened[2] += usize::from(o);
        }
    }
    println!("| measure | value |");
    println!("| --- | --- |");
    println!(
        "| full sync of {records} records (pages of 2,000, gateway start to index built) | {:.2} s |",
        synced.as_secs_f64()
    );
    println!(
        "| call, from the directory ({} of {calls} opened) | {} |",
        opened[0],
        quantiles(hit)
    );
    println!(
        "| call, from the directory while full syncs run back to back ({} of {calls} opened) | {} |",
        opened[3],
        quantiles(syncing)
    );
    println!(
        "| call, live look-up, CRM search {delay_ms} ms ({} of {calls} opened) | {} |",
        opened[1],
        quantiles(live)
    );
    let misses = miss.len();
    println!(
        "| call, directory miss then live look-up ({} of {misses} opened) | {} |",
        opened[2],
        quantiles(miss)
    );
    println!(
        "| machine load (1, 5, 15 min) | {} |",
        machine::load_average()
    );
}
