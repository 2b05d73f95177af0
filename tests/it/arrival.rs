//! A request's deadline counts from its arrival (the first byte of its
//! head), not from when the handler got to it: the client has waited since.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::crm::{Answer, Crm};
use crate::support::*;

/// The call's whole budget.
const DEADLINE_MS: u64 = 1000;

/// How long the head takes to come: three budgets, so that "counted from
/// the first byte" and "counted from the handler" stay a full budget apart
/// in the logged latency even when a loaded machine reads the first bytes
/// late.
const SLOW_HEAD: Duration = Duration::from_millis(3 * DEADLINE_MS);

#[tokio::test]
async fn the_deadline_counts_from_the_first_byte_of_a_slow_head() {
    let crm = Crm::start(|_| Answer::Hang).await;
    let gw = start_gateway(&format!(
        "{TLS_HEAD}[server]\ndeadline_ms = {DEADLINE_MS}\n[cors]\nallow_origins = [\"*\"]\n\
         [backends.hangs]\nurl = \"{}/x\"\nencoding = \"json\"\n\
         reply = {{ format = \"json\", extract = {{ url = \"url\" }} }}\n\
         [[routes]]\nname = \"slow-head\"\nbackend = \"hangs\"\n",
        crm.url()
    ))
    .await;
    let tcp = TcpStream::connect(gw.addr).await.unwrap();
    let mut tls = tls_over(&gw.ca.ca_der, tcp, b"http/1.1").await;
    let head = format!(
        "POST / HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{SEED}",
        SEED.len()
    );
    let (first, rest) = head.split_at(10);
    tls.write_all(first.as_bytes()).await.unwrap();
    tls.flush().await.unwrap();
    tokio::time::sleep(SLOW_HEAD).await;
    tls.write_all(rest.as_bytes()).await.unwrap();
    let mut reply = String::new();
    tokio::time::timeout(Duration::from_secs(10), tls.read_to_string(&mut reply))
        .await
        .expect("an answer within the deadline")
        .unwrap();
    assert!(reply.starts_with("HTTP/1.1 200 "), "{reply}");
    assert!(reply.ends_with(r#"{"action":"none"}"#), "{reply}");
    let id = reply
        .lines()
        .find_map(|l| l.strip_prefix("x-request-id: "))
        .expect("a request id");
    let line = log_lines(&format!("id={id} "))
        .into_iter()
        .find(|l| l.contains("route=slow-head") && l.contains("outcome=none"))
        .expect("the request's log line");
    // Counted from the first byte, the deadline had passed before the head
    // was whole: the call is answered at once, its latency includes the
    // slow head. Counted from the handler, it would have run a full budget
    // (at most one budget) after the head and logged about that; counted
    // from the first byte it logs what the head took, less however late the
    // gateway read the first bytes.
    assert!(line.contains("reason=deadline"), "{line}");
    let latency: f64 = line
        .split("latency_ms=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|ms| ms.parse().ok())
        .expect("a latency");
    assert!(latency >= (2 * DEADLINE_MS) as f64, "{line}");
}
