//! A stop first drains: the gateway keeps serving, HTTP/1.1 replies say
//! `Connection: close` and HTTP/2 clients get a GOAWAY, so that keep-alive
//! clients leave after a reply instead of losing a connection under them.

use std::time::Duration;

use bytes::Bytes;
use tokio::net::TcpStream;

use crate::support::*;

/// Far less than the drain below: only a GOAWAY ends the connection by then.
const WITHIN: Duration = Duration::from_secs(20);

#[tokio::test]
async fn a_drain_sends_goaway_to_http2_and_connection_close_to_http1() {
    let gw = start_gateway(&format!(
        "{TLS_HEAD}[server]\ndrain_ms = 600000\n[cors]\nallow_origins = [\"*\"]\n\
         [[routes]]\nname = \"drained\"\n[routes.open]\nevent = \"EventRinging\"\n\
         url = \"https://crm.example.org/drained\"\n"
    ))
    .await;
    let (addr, client) = (gw.addr, gw.client());
    let tcp = TcpStream::connect(addr).await.unwrap();
    let tls = tls_over(&gw.ca.ca_der, tcp, b"h2").await;
    let (send, conn) = h2::client::handshake(tls).await.unwrap();
    let conn = tokio::spawn(conn);
    let mut send = send.ready().await.unwrap();
    let req = http::Request::post("https://localhost/")
        .header("content-type", "application/json")
        .body(())
        .unwrap();
    let (response, mut body) = send.send_request(req, false).unwrap();
    body.send_data(Bytes::from_static(SEED.as_bytes()), true)
        .unwrap();
    assert_eq!(response.await.unwrap().status(), 200);

    let stopping = tokio::spawn(gw.shutdown());
    let ended = tokio::time::timeout(WITHIN, conn).await;
    assert!(
        matches!(ended, Ok(Ok(Ok(())))),
        "the HTTP/2 connection ends cleanly (GOAWAY, no stream left): {ended:?}"
    );
    // Still serving: a new client is answered, and told to leave.
    let reply = client.post(addr, None, SEED).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("connection"), Some("close"));
    stopping.abort();
}
