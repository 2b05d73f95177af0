//! A keep-alive HTTP/1.1 connection quiet for a moment is parked (hyper's
//! state dropped, the TLS session kept): the client sees nothing of it. The
//! next request, pipelined requests, and a head whose bytes straddle the
//! park are all answered on the same connection.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::*;

/// Longer than the gateway's park delay (100 ms), so each pause parks.
const PAUSE: Duration = Duration::from_millis(400);

const PREFLIGHT: &str =
    "OPTIONS / HTTP/1.1\r\nHost: localhost\r\nOrigin: https://xuc.example.org\r\n\
     Access-Control-Request-Method: POST\r\n\r\n";

/// How many times connections were parked so far.
fn parks(gw: &TestGateway) -> u64 {
    gw.live
        .metrics
        .encode()
        .lines()
        .find_map(|l| l.strip_prefix("thirdparty_gateway_connections_parked_total "))
        .and_then(|n| n.parse().ok())
        .expect("the parked counter")
}

/// Reads from `stream` until `count` replies with status `status` came
/// (bodies included, when their length is given), within 10 s.
async fn replies(stream: &mut (impl AsyncRead + Unpin), status: &str, count: usize) -> String {
    let mut seen = String::new();
    let mut buf = [0u8; 4096];
    let read = async {
        while !whole(&seen, status, count) {
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "the connection closed after: {seen}");
            seen.push_str(std::str::from_utf8(&buf[..n]).unwrap());
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .unwrap_or_else(|_| panic!("{count} replies {status} expected, got: {seen}"));
    seen
}

/// Whether `seen` holds `count` whole replies of `status`.
fn whole(seen: &str, status: &str, count: usize) -> bool {
    let replies: Vec<&str> = seen.split("HTTP/1.1 ").skip(1).collect();
    replies.len() == count
        && replies.iter().all(|r| {
            let Some((head, body)) = r.split_once("\r\n\r\n") else {
                return false;
            };
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .map_or(0, |n| n.trim().parse().unwrap());
            head.starts_with(status) && body.len() >= length
        })
}

/// A gateway opening a fixed card (`server` prepended to its config), and a
/// TLS HTTP/1.1 connection to it that had one preflight answered.
async fn after_one_preflight(
    server: &str,
) -> (TestGateway, tokio_rustls::client::TlsStream<TcpStream>) {
    let gw = start_gateway(&format!(
        "{TLS_HEAD}{server}[cors]\nallow_origins = [\"https://xuc.example.org\"]\n[[routes]]\n\
         [routes.open]\nevent = \"EventRinging\"\nurl = \"https://crm.example.org/card\"\n"
    ))
    .await;
    let tcp = TcpStream::connect(gw.addr).await.unwrap();
    let mut tls = tls_over(&gw.ca.ca_der, tcp, b"http/1.1").await;
    tls.write_all(PREFLIGHT.as_bytes()).await.unwrap();
    replies(&mut tls, "204", 1).await;
    (gw, tls)
}

#[tokio::test]
async fn a_parked_connection_answers_its_next_pipelined_and_straddling_requests() {
    let (gw, mut tls) = after_one_preflight("").await;

    // Parked: two requests in one write come back as two replies.
    tokio::time::sleep(PAUSE).await;
    tls.write_all(format!("{PREFLIGHT}{PREFLIGHT}").as_bytes())
        .await
        .unwrap();
    replies(&mut tls, "204", 2).await;

    // Parked again, then a call whose head stops half way for longer than
    // the park delay: the half read before the park is not lost.
    tokio::time::sleep(PAUSE).await;
    let call = format!(
        "POST / HTTP/1.1\r\nHost: localhost\r\nOrigin: https://xuc.example.org\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{SEED}",
        SEED.len()
    );
    let (first, rest) = call.split_at(30);
    tls.write_all(first.as_bytes()).await.unwrap();
    tls.flush().await.unwrap();
    tokio::time::sleep(PAUSE).await;
    tls.write_all(rest.as_bytes()).await.unwrap();
    let reply = replies(&mut tls, "200", 1).await;
    assert!(reply.contains(r#""action":"open""#), "{reply}");
    // A head coming is not parked: hyper would have answered it and closed.
    assert!(!reply.contains("connection: close"), "{reply}");

    // Still the same connection, still open.
    tokio::time::sleep(PAUSE).await;
    tls.write_all(PREFLIGHT.as_bytes()).await.unwrap();
    replies(&mut tls, "204", 1).await;
    // Each pause between requests parked it: after the first preflight, the
    // pipelined pair and the call.
    assert!(parks(&gw) >= 3, "{}", parks(&gw));
    gw.shutdown().await;
}

#[tokio::test]
async fn a_parked_connection_is_closed_at_the_idle_timeout_with_a_tls_goodbye() {
    let (gw, mut tls) = after_one_preflight("[server]\nidle_timeout_ms = 1000\n").await;
    // Parked after 100 ms, closed after a second: a clean end of stream
    // (close_notify), not a reset.
    let mut rest = Vec::new();
    let end = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut rest)).await;
    assert!(
        matches!(end, Ok(Ok(0))),
        "{end:?} {}",
        String::from_utf8_lossy(&rest)
    );
    gw.shutdown().await;
}
