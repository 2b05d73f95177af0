//! The OTLP export (`[ops] otlp_endpoint`) against a real OTLP/HTTP
//! receiver written here, on 127.0.0.1:0, that decodes what arrives as a
//! collector does (protobuf `ExportTraceServiceRequest`): each call is a
//! trace of a `call` span, its `route` span, a `login` span for each login
//! (the one that failed too) and a `backend` span for each request, with
//! their attributes; no secret, token, session or caller number is in any
//! byte sent.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message as _;
use tokio::net::TcpListener;

use crate::console::{assert_holds_none, post_the_three, Crms, MASKED};
use crate::support::*;

/// What the receiver got: each request's path, content type and body.
type Received = Arc<Mutex<Vec<(String, String, Bytes)>>>;

/// An OTLP/HTTP receiver: answers every POST 200 with an empty
/// `ExportTraceServiceResponse`, as a collector does, and keeps the body.
async fn receiver() -> (String, Received, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let received: Received = Arc::default();
    let keep = Arc::clone(&received);
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let keep = Arc::clone(&keep);
            tokio::spawn(async move {
                let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let keep = Arc::clone(&keep);
                    async move {
                        let path = req.uri().path().to_owned();
                        let kind = req
                            .headers()
                            .get("content-type")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                            .to_owned();
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        keep.lock().unwrap().push((path, kind, body));
                        let mut reply = http::Response::new(Full::new(Bytes::new()));
                        reply
                            .headers_mut()
                            .insert("content-type", "application/x-protobuf".parse().unwrap());
                        Ok::<_, Infallible>(reply)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (url, received, task)
}

fn attribute<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a Any> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref()?.value.as_ref())
}

fn text<'a>(span: &'a Span, key: &str) -> &'a str {
    match attribute(&span.attributes, key) {
        Some(Any::StringValue(s)) => s,
        other => panic!("{}: {key} is {other:?}", span.name),
    }
}

#[tokio::test]
async fn each_call_is_exported_as_a_trace_of_route_login_and_backend_spans_without_a_secret() {
    let (url, received, _receiver) = receiver().await;
    let crms = Crms::start("otlp").await;
    // No console page: the export alone.
    let gw = start_gateway(&crms.config(
        "otlp",
        &format!("console = false\notlp_endpoint = \"{url}\""),
    ))
    .await;
    post_the_three(&gw).await;

    // Bounded wait for the three traces (the export batches for 200 ms).
    let mut spans: Vec<Span> = Vec::new();
    let mut resources = Vec::new();
    for _ in 0..300 {
        spans.clear();
        resources.clear();
        for (path, kind, body) in received.lock().unwrap().iter() {
            assert_eq!(
                (path.as_str(), kind.as_str()),
                ("/v1/traces", "application/x-protobuf")
            );
            let request = ExportTraceServiceRequest::decode(body.clone()).unwrap();
            for rs in request.resource_spans {
                resources.extend(rs.resource.map(|r| r.attributes).unwrap_or_default());
                for ss in rs.scope_spans {
                    spans.extend(ss.spans);
                }
            }
        }
        if spans.iter().filter(|s| s.name == "call").count() == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let names: Vec<&str> = spans.iter().map(|s| s.name.as_str()).collect();
    for name in [
        "call",
        "route sales",
        "login vtiger",
        "backend vtiger",
        "route down",
        "backend down",
        "route badkey",
        "login vtiger_badkey",
    ] {
        assert!(names.contains(&name), "no {name:?} span in {names:?}");
    }
    assert_eq!(
        names.iter().filter(|n| **n == "call").count(),
        3,
        "{names:?}"
    );
    assert!(
        matches!(attribute(&resources, "service.name"), Some(Any::StringValue(s)) if s == "thirdparty-gateway"),
        "{resources:?}"
    );

    // Each trace hangs together: route under call, the rest under route.
    let by_id: HashMap<&[u8], &Span> = spans.iter().map(|s| (s.span_id.as_slice(), s)).collect();
    for span in &spans {
        let parent = by_id
            .get(span.parent_span_id.as_slice())
            .map(|p| p.name.as_str());
        let want = match span.name.split(' ').next() {
            Some("call") => None,
            Some("route") => Some("call"),
            _ => Some("route"),
        };
        assert_eq!(
            parent.map(|p| p.split(' ').next().unwrap()),
            want,
            "{}",
            span.name
        );
        assert!(
            span.end_time_unix_nano >= span.start_time_unix_nano,
            "{}",
            span.name
        );
        if let Some(parent) = by_id.get(span.parent_span_id.as_slice()) {
            assert_eq!(parent.trace_id, span.trace_id, "{}", span.name);
        }
    }
    let span = |name: &str| spans.iter().find(|s| s.name == name).unwrap();
    let lookup = span("backend vtiger");
    assert_eq!(text(lookup, "http.request.method"), "GET");
    assert!(
        text(lookup, "url.full").starts_with(&crms.good.url()),
        "{lookup:?}"
    );
    assert!(matches!(
        attribute(&lookup.attributes, "http.response.status_code"),
        Some(Any::IntValue(200))
    ));
    assert_eq!(text(lookup, "thirdparty_gateway.result"), "open");
    let down = span("backend down");
    assert_eq!(text(down, "thirdparty_gateway.result"), "connect");
    assert_eq!(
        down.status.as_ref().map(|s| s.code),
        Some(2),
        "an error: {down:?}"
    );
    let failed_login = span("login vtiger_badkey");
    assert!(text(failed_login, "thirdparty_gateway.detail").starts_with("login step 2"));
    for call in spans.iter().filter(|s| s.name == "call") {
        assert_eq!(text(call, "thirdparty_gateway.caller"), MASKED);
    }
    let reasons: Vec<&str> = spans
        .iter()
        .filter(|s| s.name == "call")
        .filter_map(
            |s| match attribute(&s.attributes, "thirdparty_gateway.reason") {
                Some(Any::StringValue(r)) => Some(r.as_str()),
                _ => None,
            },
        )
        .collect();
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert!(
        reasons.contains(&"connect") && reasons.contains(&"login"),
        "{reasons:?}"
    );

    // Not one byte of a secret, the token, a session or the caller.
    let mut secrets = crms.secrets.clone();
    secrets.extend(crms.sessions());
    for (_, _, body) in received.lock().unwrap().iter() {
        assert_holds_none(&String::from_utf8_lossy(body), &secrets, "the OTLP export");
    }
}

/// A call still waiting on its CRM when a stop's grace runs out is dropped
/// as the process ends; its trace still reaches the collector, marked as
/// cut by the stop (not answered, not left by the agent).
#[tokio::test]
async fn a_call_cut_by_a_stop_is_exported_as_cancelled_by_the_shutdown() {
    use crate::ops::Daemon;
    let (url, received, _receiver) = receiver().await;
    let crm = crate::crm::Crm::start(|_| crate::crm::Answer::Hang).await;
    let config = format!(
        "{TLS_HEAD}\n[server]\nlisten = \"127.0.0.1:0\"\ndeadline_ms = 5000\ndrain_ms = 0\n\
         shutdown_grace_ms = 200\n[ops]\nlisten = \"127.0.0.1:0\"\notlp_endpoint = \"{url}\"\n\
         [cors]\nallow_origins = [\"*\"]\n\
         [backends.slow]\nurl = \"{}/x\"\nencoding = \"json\"\n\
         reply = {{ format = \"json\", extract = {{ url = \"url\" }} }}\n\
         [[routes]]\nname = \"slow\"\nbackend = \"slow\"\n",
        crm.url()
    );
    let daemon = Daemon::start(&config).await;
    let tls = crate::console::call_waiting_on(&crm, &daemon.ca, daemon.addr, SEED).await;
    daemon.signal("TERM");
    let (status, _daemon) = daemon.wait_exit().await;
    assert!(status.success(), "{status}");

    let calls: Vec<Span> = received
        .lock()
        .unwrap()
        .iter()
        .flat_map(|(_, _, body)| {
            ExportTraceServiceRequest::decode(body.clone())
                .unwrap()
                .resource_spans
        })
        .flat_map(|rs| rs.scope_spans)
        .flat_map(|ss| ss.spans)
        .filter(|s| s.name == "call")
        .collect();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(text(&calls[0], "thirdparty_gateway.outcome"), "cancelled");
    assert_eq!(text(&calls[0], "thirdparty_gateway.cancelled"), "shutdown");
    assert_eq!(
        text(&calls[0], "thirdparty_gateway.detail"),
        "dropped unanswered: server.shutdown_grace ran out"
    );
    drop(tls);
}
