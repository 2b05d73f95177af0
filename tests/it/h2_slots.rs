//! HTTP/2 clients that send nothing useful do not keep their connection
//! slot: a stream whose reply cannot be written (flow-control window 0), a
//! header block never finished, and PINGs alone are all closed within a
//! bound, and the slots they held serve normal calls again.

use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::support::*;

/// Far more than idle timeout + close grace; only a connection kept
/// forever misses it.
const CLOSED_WITHIN: Duration = Duration::from_secs(20);

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const HEADERS: u8 = 0x1;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;

fn config(server: &str) -> String {
    format!(
        "{TLS_HEAD}[server]\n{server}\n[cors]\nallow_origins = [\"*\"]\n\
         [[routes]]\n[routes.open]\nevent = \"EventRinging\"\nurl = \"https://crm.example.org/{{{{ caller }}}}\"\n"
    )
}

/// One HTTP/2 frame: type, flags, stream, payload.
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut bytes = (payload.len() as u32).to_be_bytes()[1..].to_vec();
    bytes.extend_from_slice(&[kind, flags]);
    bytes.extend_from_slice(&stream.to_be_bytes());
    bytes.extend_from_slice(payload);
    bytes
}

type Tls = tokio_rustls::client::TlsStream<TcpStream>;

async fn h2_tls(gw: &TestGateway) -> Tls {
    tls_over(
        &gw.ca.ca_der,
        TcpStream::connect(gw.addr).await.unwrap(),
        b"h2",
    )
    .await
}

/// Writes `first`, then `every_second` once a second, and ends when the
/// server closes the connection (or after a minute: then it never did).
fn raw_h2(mut tls: Tls, first: Vec<u8>, every_second: Option<Vec<u8>>) -> JoinHandle<()> {
    tokio::spawn(async move {
        tls.write_all(PREFACE).await.unwrap();
        tls.write_all(&frame(SETTINGS, 0, 0, &[])).await.unwrap();
        tls.write_all(&first).await.unwrap();
        let (mut read, mut write) = tokio::io::split(tls);
        let writer = async {
            let Some(bytes) = every_second else {
                return std::future::pending::<()>().await;
            };
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                if write.write_all(&bytes).await.is_err() {
                    return std::future::pending().await;
                }
            }
        };
        let reader = async {
            let mut buf = [0u8; 4096];
            // Whatever the server sends (SETTINGS, GOAWAY, PING) is read
            // and ignored, until it closes.
            while matches!(read.read(&mut buf).await, Ok(n) if n > 0) {}
        };
        let _ = tokio::time::timeout(Duration::from_secs(60), async {
            tokio::select! {
                () = reader => {}
                () = writer => {}
            }
        })
        .await;
    })
}

/// A HEADERS frame on `stream` that opens a header block and does not end it.
fn unfinished_headers(stream: u32) -> Vec<u8> {
    // `:method: POST`, `:scheme: https`, `:path: /` from HPACK's static table.
    frame(HEADERS, 0, stream, &[0x83, 0x87, 0x84])
}

fn ping() -> Vec<u8> {
    frame(PING, 0, 0, &[0; 8])
}

/// A call whose client never opens its window: the reply can never be
/// written. Ends when the server closes the connection.
async fn window_closed_call(gw: &TestGateway) -> JoinHandle<()> {
    let (send, conn) = h2::client::Builder::new()
        .initial_window_size(0)
        .handshake::<_, Bytes>(h2_tls(gw).await)
        .await
        .unwrap();
    let conn = tokio::spawn(async move {
        let _ = tokio::time::timeout(Duration::from_secs(60), conn).await;
    });
    let mut send = send.ready().await.unwrap();
    let req = http::Request::post("https://localhost/")
        .header("content-type", "application/json")
        .body(())
        .unwrap();
    let (response, mut body) = send.send_request(req, false).unwrap();
    body.send_data(Bytes::from_static(SEED.as_bytes()), true)
        .unwrap();
    // The head is not flow-controlled: it comes, its body cannot.
    let response = response.await.unwrap();
    assert_eq!(response.status(), 200);
    tokio::spawn(async move {
        let _kept = (send, body, response);
        let _ = conn.await;
    })
}

/// Asserts that each of `connections` ends before `by`.
async fn assert_closed(what: &str, connections: Vec<JoinHandle<()>>, by: Instant) {
    for connection in connections {
        let closed = tokio::time::timeout_at(by, connection).await;
        assert!(closed.is_ok(), "{what}: the gateway kept the connection");
    }
}

#[tokio::test]
async fn http2_clients_sending_nothing_useful_lose_their_slots() {
    let gw = start_gateway(&config("max_connections = 10\nidle_timeout_ms = 2000")).await;
    let (mut closed_window, mut unfinished, mut pinging) = (Vec::new(), Vec::new(), Vec::new());
    // One after the other, each TLS handshake done: the ten take the ten slots.
    for _ in 0..3 {
        closed_window.push(window_closed_call(&gw).await);
    }
    for _ in 0..3 {
        unfinished.push(raw_h2(h2_tls(&gw).await, unfinished_headers(1), None));
    }
    for _ in 0..4 {
        pinging.push(raw_h2(h2_tls(&gw).await, ping(), Some(ping())));
    }
    // The eleventh waits for a slot.
    let (client, addr) = (gw.client(), gw.addr);
    let normal = tokio::spawn(async move { client.post(addr, None, SEED).await });
    let by = Instant::now() + CLOSED_WITHIN;
    assert_closed("window 0", closed_window, by).await;
    assert_closed("unfinished header block", unfinished, by).await;
    assert_closed("PINGs only", pinging, by).await;
    let reply = tokio::time::timeout_at(by, normal)
        .await
        .expect("a normal call is answered once slots free up")
        .unwrap();
    assert_eq!(reply.status, 200);
}

/// An HTTP/2 header block left open holds the whole connection (no other
/// frame may come before its end), so it is timed like an HTTP/1 head,
/// however far away the idle timeout is.
#[tokio::test]
async fn an_unfinished_http2_header_block_meets_the_header_timeout() {
    let gw = start_gateway(&config(
        "idle_timeout_ms = 600000\nheader_read_timeout_ms = 1000",
    ))
    .await;
    // A finished call first: the connection is not new.
    // `:method: GET`, `:scheme: https`, `:path: /`, `:authority: localhost`.
    let mut call = frame(
        HEADERS,
        END_HEADERS | END_STREAM,
        1,
        &[
            0x82, 0x87, 0x84, 0x41, 9, b'l', b'o', b'c', b'a', b'l', b'h', b'o', b's', b't',
        ],
    );
    call.extend(unfinished_headers(3));
    let connection = raw_h2(h2_tls(&gw).await, call, None);
    let by = Instant::now() + CLOSED_WITHIN;
    assert_closed("unfinished header block", vec![connection], by).await;
}
