//! Bad requests get clear 4xx replies; both HTTP versions work over ALPN.

use bytes::Bytes;
use http::{Request, Version};
use http_body_util::{Full, StreamBody};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::*;

const CONFIG: &str = "[server]\nmax_body_bytes = 4096\nheader_read_timeout_ms = 300\n\
    [cors]\nallow_origins = [\"*\"]\n\
    [[routes]]\n[routes.open]\nevent = \"EventRinging\"\nurl = \"https://crm.example.org/{{ caller }}\"\n";

async fn gateway() -> TestGateway {
    start_gateway(&format!("{TLS_HEAD}{CONFIG}")).await
}

fn post(content_type: &str, body: impl Into<Bytes>) -> Request<Full<Bytes>> {
    Request::post("/")
        .header("host", "localhost")
        .header("content-type", content_type)
        .body(Full::new(body.into()))
        .unwrap()
}

#[tokio::test]
async fn invalid_json_is_400_with_a_json_error() {
    let gw = gateway().await;
    let reply = gw.client().post(gw.addr, None, "{\"user\":").await;
    assert_eq!(reply.status, 400);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    assert!(reply.json()["error"]
        .as_str()
        .unwrap()
        .starts_with("invalid payload: EOF"));
}

#[tokio::test]
async fn missing_or_mistyped_fields_are_400_naming_the_field() {
    let gw = gateway().await;
    let client = gw.client();
    let reply = client
        .post(gw.addr, None, r#"{"user":{"userId":1},"callee":"1"}"#)
        .await;
    assert_eq!(reply.status, 400);
    assert_eq!(
        reply.json()["error"],
        "invalid payload: missing field `caller`"
    );
    let reply = client
        .post(
            gw.addr,
            None,
            r#"{"user":{"userId":1},"caller":5,"callee":"1"}"#,
        )
        .await;
    assert_eq!(
        reply.json()["error"],
        "invalid payload: caller: invalid type: integer `5`, expected a string"
    );
}

#[tokio::test]
async fn wrong_method_is_405_with_allow() {
    let gw = gateway().await;
    let req = Request::get("/")
        .header("host", "localhost")
        .body(Full::default())
        .unwrap();
    let reply = gw.client().send(gw.addr, req).await;
    assert_eq!(reply.status, 405);
    assert_eq!(reply.header("allow"), Some("POST, OPTIONS"));
    assert_eq!(reply.header("content-type"), Some("application/json"));
}

#[tokio::test]
async fn wrong_content_type_is_415() {
    let gw = gateway().await;
    let reply = gw.client().send(gw.addr, post("text/plain", SEED)).await;
    assert_eq!(reply.status, 415);
    assert_eq!(
        reply.json()["error"],
        "content type must be application/json"
    );
    let reply = gw
        .client()
        .send(gw.addr, post("application/json; charset=utf-8", SEED))
        .await;
    assert_eq!(reply.status, 200);
}

#[tokio::test]
async fn unknown_path_is_404() {
    let gw = gateway().await;
    let req = Request::post("/nope")
        .header("host", "localhost")
        .body(Full::default())
        .unwrap();
    let reply = gw.client().send(gw.addr, req).await;
    assert_eq!(reply.status, 404);
    assert_eq!(
        reply.json()["error"],
        "no route on this path: THIRD_PARTY_URL's path must be one of \"/\""
    );
}

#[tokio::test]
async fn declared_oversized_body_is_413() {
    let gw = gateway().await;
    let reply = gw
        .client()
        .send(gw.addr, post("application/json", vec![b' '; 5000]))
        .await;
    assert_eq!(reply.status, 413);
    assert_eq!(reply.json()["error"], "request body over 4096 bytes");
}

#[tokio::test]
async fn streamed_oversized_body_is_413() {
    let gw = gateway().await;
    let chunks = (0..10).map(|_| {
        Ok::<_, std::convert::Infallible>(hyper::body::Frame::data(Bytes::from(vec![b' '; 1000])))
    });
    let body = StreamBody::new(futures_stream(chunks.collect()));
    let req = Request::post("/")
        .header("host", "localhost")
        .header("content-type", "application/json")
        .body(body)
        .unwrap();
    let response = http1(&gw).await.send_request(req).await.unwrap();
    assert_eq!(response.status(), 413);
}

/// An HTTP/1.1 connection to the gateway over TLS, driven in the background.
async fn http1<B>(gw: &TestGateway) -> hyper::client::conn::http1::SendRequest<B>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let tcp = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let tls = tls_over(&gw.ca.ca_der, tcp, b"http/1.1").await;
    let (send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    send
}

fn futures_stream<T>(items: Vec<T>) -> impl futures_core::Stream<Item = T> {
    tokio_stream::iter(items)
}

#[tokio::test]
async fn http2_is_negotiated_by_alpn_and_http1_still_works() {
    let gw = gateway().await;
    let h2 = Client::with_alpn(&gw.ca.ca_der, &[b"h2", b"http/1.1"]);
    let reply = h2.post(gw.addr, None, SEED).await;
    assert_eq!(reply.version, Version::HTTP_2);
    assert_eq!(reply.json()["url"], "https://crm.example.org/1001");
    let h1 = Client::with_alpn(&gw.ca.ca_der, &[b"http/1.1"]);
    let reply = h1.post(gw.addr, None, SEED).await;
    assert_eq!(reply.version, Version::HTTP_11);
    assert_eq!(reply.json()["url"], "https://crm.example.org/1001");
}

/// Everything the gateway sends until it closes (bounded: 20 s).
async fn read_to_close(mut stream: impl tokio::io::AsyncRead + Unpin) -> String {
    let mut reply = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(20),
        stream.read_to_end(&mut reply),
    )
    .await
    .expect("no reply within 20 s")
    .unwrap();
    String::from_utf8_lossy(&reply).into_owned()
}

/// Whether the gateway closes `stream` within 20 s, far more than this
/// config's 300 ms header timeout: anything longer is a hang.
async fn closed_soon(mut stream: impl tokio::io::AsyncRead + Unpin) -> bool {
    let mut buf = Vec::new();
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        stream.read_to_end(&mut buf),
    );
    read.await.is_ok()
}

/// Also when ALPN said h2 and the client speaks HTTP/1 anyway: the head is
/// timed whoever times it (the connection's watcher, or hyper).
#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_disconnected() {
    let gw = gateway().await;
    for alpn in [&b"http/1.1"[..], b"h2"] {
        let tcp = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
        let mut tls = tls_over(&gw.ca.ca_der, tcp, alpn).await;
        tls.write_all(b"POST / HTTP/1.1\r\nHost: localhost\r\n")
            .await
            .unwrap();
        assert!(
            closed_soon(tls).await,
            "ALPN {alpn:?}: still open after 20 s"
        );
    }
}

#[tokio::test]
async fn a_client_that_sends_nothing_after_the_handshake_is_disconnected() {
    let gw = gateway().await;
    let tcp = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let tls = tls_over(&gw.ca.ca_der, tcp, b"http/1.1").await;
    assert!(closed_soon(tls).await, "still open after 20 s");
}

/// Once the head is in, the request is in flight: a body slower than the
/// header timeout is the deadline's to judge, not the head watcher's.
#[tokio::test]
async fn a_body_slower_than_the_header_timeout_is_still_read() {
    let gw = gateway().await;
    let tcp = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let mut tls = tls_over(&gw.ca.ca_der, tcp, b"http/1.1").await;
    let head = format!(
        "POST / HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        SEED.len()
    );
    let (first, rest) = SEED.as_bytes().split_at(SEED.len() / 2);
    tls.write_all(head.as_bytes()).await.unwrap();
    tls.write_all(first).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    tls.write_all(rest).await.unwrap();
    let reply = read_to_close(tls).await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(reply.contains("https://crm.example.org/1001"), "{reply}");
}

/// The header timeout runs while a head is awaited, not between requests:
/// a keep-alive pause longer than it is the idle timeout's to judge.
#[tokio::test]
async fn a_keep_alive_connection_may_pause_longer_than_the_header_timeout() {
    let gw = gateway().await;
    let mut send = http1(&gw).await;
    for pause_ms in [0, 900] {
        tokio::time::sleep(std::time::Duration::from_millis(pause_ms)).await;
        let reply = send
            .send_request(post("application/json", SEED))
            .await
            .expect("the connection is still open");
        assert_eq!(reply.status(), 200, "after a {pause_ms} ms pause");
        http_body_util::BodyExt::collect(reply.into_body())
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn plain_http_to_the_tls_port_gets_no_http_reply() {
    let gw = gateway().await;
    let mut tcp = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    tcp.write_all(b"POST / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        tcp.read_to_end(&mut buf),
    )
    .await;
    assert!(!String::from_utf8_lossy(&buf).contains("HTTP/1.1 200"));
}

#[tokio::test]
async fn after_shutdown_the_port_no_longer_accepts() {
    let gw = gateway().await;
    let addr = gw.addr;
    assert_eq!(gw.client().post(addr, None, SEED).await.status, 200);
    gw.shutdown().await;
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

/// A client that stops sending mid-body gets a 400 that says the body never
/// came whole, not that its payload is invalid.
#[tokio::test]
async fn a_body_cut_short_is_400_body_could_not_be_read() {
    let gw = gateway().await;
    let tcp = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let mut tls = tls_over(&gw.ca.ca_der, tcp, b"http/1.1").await;
    let head = "POST / HTTP/1.1\r\nHost: localhost\r\nOrigin: https://cut-short.example.org\r\n\
         Content-Type: application/json\r\nContent-Length: 300\r\n\r\n{\"user\":";
    tls.write_all(head.as_bytes()).await.unwrap();
    tls.shutdown().await.unwrap();
    let reply = read_to_close(tls).await;
    assert!(reply.starts_with("HTTP/1.1 400 "), "{reply}");
    assert!(
        reply.contains(r#"{"error":"request body could not be read: "#),
        "{reply}"
    );
    let line = log_lines("origin=https://cut-short.example.org ").concat();
    assert!(
        line.contains("status=400 error=\"request body could not be read: "),
        "{line}"
    );
}
