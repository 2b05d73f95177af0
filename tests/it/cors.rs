//! CORS as a browser sees it: preflights and the headers on actual replies.

use bytes::Bytes;
use http::Request;
use http_body_util::Full;

use crate::support::*;

const XUC: &str = "https://xuc.example.org";

fn routes() -> &'static str {
    "[[routes]]\n[routes.open]\nevent = \"EventRinging\"\nurl = \"https://crm.example.org/c?n={{ caller }}\"\n"
}

async fn gateway_for(origin: &str) -> TestGateway {
    start_gateway(&format!("{TLS_HEAD}{}{}", cors_for(origin), routes())).await
}

fn preflight(origin: &str, extra: &[(&str, &str)]) -> Request<Full<Bytes>> {
    let mut req = Request::options("/")
        .header("host", "localhost")
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type");
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    req.body(Full::default()).unwrap()
}

/// Header names of a reply, sorted, without the ones every reply has.
fn cors_header_names(reply: &Reply) -> Vec<String> {
    let mut names: Vec<String> = reply
        .headers
        .keys()
        .map(|k| k.as_str().to_owned())
        .filter(|k| k.starts_with("access-control-") || k == "vary")
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn preflight_from_allowed_origin_gets_exactly_the_cors_headers() {
    let gw = gateway_for(XUC).await;
    let reply = gw.client().send(gw.addr, preflight(XUC, &[])).await;
    assert_eq!(reply.status, 204);
    assert_eq!(reply.header("access-control-allow-origin"), Some(XUC));
    assert_eq!(
        reply.header("access-control-allow-methods"),
        Some("POST, OPTIONS")
    );
    assert_eq!(
        reply.header("access-control-allow-headers"),
        Some("Origin, X-Requested-With, Content-Type, Accept")
    );
    assert_eq!(reply.header("access-control-max-age"), Some("600"));
    assert_eq!(
        reply.header("vary"),
        Some("Origin, Access-Control-Request-Method, Access-Control-Request-Headers")
    );
    assert_eq!(
        cors_header_names(&reply),
        [
            "access-control-allow-headers",
            "access-control-allow-methods",
            "access-control-allow-origin",
            "access-control-max-age",
            "vary"
        ]
    );
    let id = reply.header("x-request-id").unwrap_or_default();
    assert!(
        id.len() > 9 && id.contains('-'),
        "a preflight carries its request id: {id:?}"
    );
    assert_eq!(reply.headers.get_all("x-request-id").iter().count(), 1);
    assert!(reply.body.is_empty());
}

#[tokio::test]
async fn preflight_with_star_config_answers_star() {
    let gw = start_gateway(&format!(
        "{TLS_HEAD}[cors]\nallow_origins = [\"*\"]\nmax_age = 30\n{}",
        routes()
    ))
    .await;
    let reply = gw
        .client()
        .send(gw.addr, preflight("http://anything.example", &[]))
        .await;
    assert_eq!(reply.status, 204);
    assert_eq!(reply.header("access-control-allow-origin"), Some("*"));
    assert_eq!(reply.header("access-control-max-age"), Some("30"));
    assert_eq!(reply.header("access-control-allow-credentials"), None);
}

#[tokio::test]
async fn preflight_from_disallowed_origin_is_403_without_cors_headers() {
    let gw = gateway_for(XUC).await;
    let reply = gw
        .client()
        .send(gw.addr, preflight("https://evil.example", &[]))
        .await;
    assert_eq!(reply.status, 403);
    assert!(cors_header_names(&reply).is_empty(), "{:?}", reply.headers);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    assert_eq!(reply.json()["error"], "origin not allowed");
}

#[tokio::test]
async fn preflight_asking_for_private_network_access_is_allowed_when_configured() {
    let gw = gateway_for(XUC).await;
    let req = preflight(XUC, &[("access-control-request-private-network", "true")]);
    let reply = gw.client().send(gw.addr, req).await;
    assert_eq!(reply.status, 204);
    assert_eq!(
        reply.header("access-control-allow-private-network"),
        Some("true")
    );

    let gw = start_gateway(&format!(
        "{TLS_HEAD}[cors]\nallow_origins = [\"{XUC}\"]\n{}",
        routes()
    ))
    .await;
    let req = preflight(XUC, &[("access-control-request-private-network", "true")]);
    let reply = gw.client().send(gw.addr, req).await;
    assert_eq!(reply.header("access-control-allow-private-network"), None);
}

#[tokio::test]
async fn post_replies_carry_allow_origin_and_vary() {
    let gw = gateway_for(XUC).await;
    let client = gw.client();
    let reply = client.post(gw.addr, Some(XUC), SEED).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("access-control-allow-origin"), Some(XUC));
    assert_eq!(reply.header("vary"), Some("Origin"));
    assert_eq!(reply.json()["action"], "open");

    let reply = client.post(gw.addr, None, SEED).await;
    assert_eq!(reply.status, 200);
    assert!(
        cors_header_names(&reply).is_empty(),
        "no Origin, no CORS headers"
    );
}

#[tokio::test]
async fn error_replies_carry_cors_headers_for_allowed_origins() {
    let gw = gateway_for(XUC).await;
    let client = gw.client();
    let bad_json = client.post(gw.addr, Some(XUC), "{nope").await;
    assert_eq!(bad_json.status, 400);
    let not_found = Request::post("/other")
        .header("host", "localhost")
        .header("origin", XUC)
        .body(Full::default())
        .unwrap();
    let not_found = client.send(gw.addr, not_found).await;
    assert_eq!(not_found.status, 404);
    for reply in [&bad_json, &not_found] {
        assert_eq!(reply.header("access-control-allow-origin"), Some(XUC));
        assert_eq!(reply.header("vary"), Some("Origin"));
        assert_eq!(reply.header("content-type"), Some("application/json"));
    }
}

#[tokio::test]
async fn a_preflight_and_a_post_on_an_unknown_path_get_cors_headers_and_the_paths() {
    let gw = gateway_for(XUC).await;
    let client = gw.client();
    let preflight = Request::options("/wrong/path")
        .header("host", "localhost")
        .header("origin", XUC)
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type")
        .body(Full::default())
        .unwrap();
    let preflight = client.send(gw.addr, preflight).await;
    assert_eq!(preflight.status, 204);
    assert_eq!(preflight.header("access-control-allow-origin"), Some(XUC));
    let post = client
        .post_at(gw.addr, "/wrong/path", Some(XUC), SEED)
        .await;
    assert_eq!(post.status, 404);
    assert_eq!(post.header("access-control-allow-origin"), Some(XUC));
    assert_eq!(
        post.json()["error"],
        "no route on this path: THIRD_PARTY_URL's path must be one of \"/\""
    );
    assert!(!log_lines("is XucMgt's THIRD_PARTY_URL right?").is_empty());
}

#[tokio::test]
async fn post_from_disallowed_origin_is_403_and_routes_nothing() {
    let gw = gateway_for(XUC).await;
    let reply = gw
        .client()
        .post(gw.addr, Some("https://evil.example"), SEED)
        .await;
    assert_eq!(reply.status, 403);
    assert!(cors_header_names(&reply).is_empty());
}
