//! Backends end to end: real test CRMs (HTTP and HTTPS with a custom CA)
//! check exactly what the gateway sends them and answer in their own shapes;
//! the agent gets the contract reply, or `none` in time with the reason logged.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::crm::{raw_server, refused_url, Answer, Crm, Raw};
use crate::support::*;

/// A payload whose values would break XML, URLs and forms if not escaped.
const HOSTILE: &str = r#"{"user":{"userId":4,"agentId":1,"fullName":"James <Bond> & Co","token":"SECRET-TOKEN"},"caller":"06 12&34<x>\"'","callee":"1000","queue":{"id":2,"name":"trucks","displayName":"Trucks"},"userData":{"USR_CONTRACT":"C/1 2"}}"#;

fn config(backends: &str, routes: &str) -> String {
    format!("{TLS_HEAD}[cors]\nallow_origins = [\"*\"]\n{backends}\n{routes}")
}

fn route(name: &str, backend: &str) -> String {
    format!("[[routes]]\nname = \"{name}\"\nbackend = {backend}\n")
}

/// Asserts that the latest request log line of `route` says outcome none
/// with `reason`, and that the route's failure warnings carry the same
/// request id; returns the request line.
fn logged_none(route: &str, reason: &str) -> String {
    let lines = log_lines(&format!("route={route} "));
    let line = lines
        .iter()
        .rev()
        .find(|l| l.contains(" INFO request "))
        .unwrap_or_else(|| {
            panic!(
                "no request log line for {route}: {lines:#?} {:#?}",
                log_lines(" request ")
            )
        })
        .clone();
    assert!(line.contains("outcome=none"), "{line}");
    assert!(line.contains(&format!("reason={reason} ")), "{line}");
    let id = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("id="))
        .unwrap_or_else(|| panic!("no id in {line}"));
    if lines
        .iter()
        .any(|l| l.contains("backend gave no screen-pop"))
    {
        assert!(
            lines
                .iter()
                .any(|l| l.contains("backend gave no screen-pop")
                    && l.contains(&format!("id={id} "))),
            "the backend warning carries the request id {id}: {lines:#?}"
        );
    }
    line
}

#[tokio::test]
async fn soap_backend_gets_an_escaped_envelope_and_its_reply_is_normalized() {
    let crm = Crm::start(|_| {
        Answer::Reply(
            200,
            "text/xml",
            r#"<?xml version="1.0"?>
<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body>
<m:LookupResponse xmlns:m="urn:crm"><m:Card href="cards/77?x=1&amp;y=2"/><m:Name>Dupont &amp; Fils</m:Name><m:Vip>true</m:Vip></m:LookupResponse>
</s:Body></s:Envelope>"#
                .into(),
        )
    })
    .await;
    let backends = format!(
        r#"
[backends.soap]
url = "{}/soap/lookup"
encoding = "xml"
public_base = "https://crm.example.org/app/"
body = '''<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body><Lookup><Phone>{{{{ caller }}}}</Phone><Agent>{{{{ user.fullName }}}}</Agent></Lookup></soapenv:Body></soapenv:Envelope>'''
[backends.soap.headers]
SOAPAction = "urn:crm#Lookup"
[backends.soap.reply]
format = "xml"
extract = {{ card = "Envelope/Body/LookupResponse/Card/@href", title = "Envelope/Body/LookupResponse/Name", vip = "Envelope/Body/LookupResponse/Vip" }}
url = "{{{{ card | safe }}}}"
event = "EventEstablished"
autopause = 'vip == "true"'
"#,
        crm.url()
    );
    let gw = start_gateway(&config(&backends, &route("soap-route", "\"soap\""))).await;
    let reply = gw.client().post(gw.addr, None, HOSTILE).await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.json(),
        json!({"action":"open","event":"EventEstablished",
               "url":"https://crm.example.org/app/cards/77?x=1&y=2",
               "autopause":true,"title":"Dupont & Fils"})
    );
    let seen = crm.seen();
    assert_eq!(seen.len(), 1);
    let req = &seen[0];
    assert_eq!(req.method, "POST");
    assert_eq!(req.target, "/soap/lookup");
    assert_eq!(req.header("soapaction"), Some("urn:crm#Lookup"));
    assert_eq!(req.header("content-type"), Some("text/xml; charset=utf-8"));
    assert_eq!(
        req.text(),
        "<soapenv:Envelope xmlns:soapenv=\"http://schemas.xmlsoap.org/soap/envelope/\"><soapenv:Body><Lookup>\
         <Phone>06 12&amp;34&lt;x&gt;&quot;&apos;</Phone><Agent>James &lt;Bond&gt; &amp; Co</Agent>\
         </Lookup></soapenv:Body></soapenv:Envelope>"
    );
    assert!(!req.text().contains("SECRET-TOKEN"));
}

#[tokio::test]
async fn form_backend_gets_fields_and_basic_auth_from_a_file() {
    let crm =
        Crm::start(|_| Answer::Reply(200, "text/plain", "https://crm.example.org/card/5\n".into()))
            .await;
    let backends = format!(
        r#"
[backends.form]
url = "{}/lookup.php"
encoding = "form"
body = {{ phone = "{{{{ caller }}}}", agent = "{{{{ user.agentId }}}}", contract = "{{{{ userData.USR_CONTRACT }}}}", kind = 3 }}
auth = {{ type = "basic", username = "gateway", password_file = "crm-password" }}
reply = {{ format = "text", title = "Card {{{{ caller }}}}" }}
"#,
        crm.url()
    );
    let gw = start_gateway_with(
        &config(&backends, &route("form-route", "\"form\"")),
        &[("crm-password", "s3cr:t\n")],
    )
    .await;
    let reply = gw.client().post(gw.addr, None, HOSTILE).await;
    assert_eq!(
        reply.json(),
        json!({"action":"open","event":"EventRinging","url":"https://crm.example.org/card/5",
               "autopause":false,"title":"Card 06 12&34<x>\"'"})
    );
    let req = &crm.seen()[0];
    assert_eq!(req.method, "POST");
    assert_eq!(
        req.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(
        req.text(),
        "phone=06+12%2634%3Cx%3E%22%27&agent=1&contract=C%2F1+2&kind=3"
    );
    // base64("gateway:s3cr:t")
    assert_eq!(
        req.header("authorization"),
        Some("Basic Z2F0ZXdheTpzM2NyOnQ=")
    );
    assert!(log_lines("s3cr:t").is_empty() && log_lines("Z2F0ZXdheTpzM2NyOnQ").is_empty());
}

#[tokio::test]
async fn query_backend_gets_a_get_with_the_query_string_and_json_decides() {
    let crm = Crm::start(|seen| {
        let found = seen.target.contains("phone=1001");
        let results = if found {
            json!([{"id": "c-9", "name": "ACME"}])
        } else {
            json!([])
        };
        Answer::Reply(
            200,
            "application/json",
            json!({"status": "ok", "result": results}).to_string(),
        )
    })
    .await;
    let backends = format!(
        r#"
[backends.vtiger]
url = "{}/webservice.php?operation=query"
encoding = "query"
body = {{ phone = "{{{{ caller }}}}", q = "SELECT * FROM Contacts WHERE phone='{{{{ caller }}}}';" }}
auth = {{ type = "header", header = "X-Api-Key", value_env = "TPGW_TEST_VTIGER_KEY" }}
[backends.vtiger.reply]
format = "json"
extract = {{ status = "status", results = "result", id = "result.0.id", name = "/result/0/name" }}
open_when = 'status == "ok" and results | length > 0'
url = "https://crm.example.org/index.php?module=Contacts&record={{{{ id }}}}"
title = "{{{{ name }}}} ({{{{ caller }}}})"
"#,
        crm.url()
    );
    // The variable is unique to this test, so setting it cannot race another test.
    std::env::set_var("TPGW_TEST_VTIGER_KEY", "k-123");
    let gw = start_gateway(&config(&backends, &route("query-route", "\"vtiger\""))).await;
    let reply = gw.client().post(gw.addr, None, SEED).await;
    assert_eq!(
        reply.json(),
        json!({"action":"open","event":"EventRinging",
               "url":"https://crm.example.org/index.php?module=Contacts&record=c-9",
               "autopause":false,"title":"ACME (1001)"})
    );
    let req = &crm.seen()[0];
    assert_eq!(req.method, "GET");
    assert!(req.body.is_empty());
    assert_eq!(
        req.target,
        "/webservice.php?operation=query&phone=1001&q=SELECT+*+FROM+Contacts+WHERE+phone%3D%271001%27%3B"
    );
    assert_eq!(req.header("x-api-key"), Some("k-123"));

    // No result: the backend was reached and said no.
    let reply = gw.client().post(gw.addr, None, NO_QUEUE).await;
    assert_eq!(reply.json(), json!({"action":"none"}));
    logged_none("query-route", "declined");
}

#[tokio::test]
async fn json_backend_gets_typed_values_and_no_token_unless_forwarded() {
    let crm = Crm::start(|_| {
        Answer::Reply(
            200,
            "application/json",
            r#"{"card":{"path":"/customers/42"}}"#.into(),
        )
    })
    .await;
    let backends = format!(
        r#"
[backends.api]
url = "{0}/api/lookup"
encoding = "json"
public_base = "https://crm.example.org/"
body = {{ phone = "{{{{ caller }}}}", agent = "{{{{ user.agentId }}}}", label = "agent {{{{ user.agentId }}}}", queue = "{{{{ queue }}}}", tags = ["xuc", "{{{{ callee }}}}"], token = "{{{{ user.token }}}}" }}
auth = {{ type = "bearer", token_env = "TPGW_TEST_API_TOKEN" }}
reply = {{ format = "json", extract = {{ url = "/card/path" }} }}

[backends.whole]
url = "{0}/api/whole"
encoding = "json"
reply = {{ format = "json", extract = {{ url = "/card/path" }} }}
"#,
        crm.url()
    );
    std::env::set_var("TPGW_TEST_API_TOKEN", "bearer-xyz");
    let routes = r#"
[[routes]]
name = "json-forward"
path = "/forward"
backend = "api"
forward_token = true

[[routes]]
name = "json-route"
backend = "api"

[[routes]]
name = "json-whole"
path = "/whole"
backend = "whole"
"#;
    let gw = start_gateway(&config(&backends, routes)).await;
    let reply = gw.client().post(gw.addr, None, HOSTILE).await;
    assert_eq!(reply.json()["url"], "https://crm.example.org/customers/42");
    let body: serde_json::Value = serde_json::from_slice(&crm.seen()[0].body).unwrap();
    assert_eq!(
        body,
        json!({"phone": "06 12&34<x>\"'", "agent": 1, "label": "agent 1",
               "queue": {"id": 2, "name": "trucks", "displayName": "Trucks"},
               "tags": ["xuc", "1000"], "token": null})
    );
    assert_eq!(
        crm.seen()[0].header("authorization"),
        Some("Bearer bearer-xyz")
    );

    gw.client()
        .post_at(gw.addr, "/forward", None, HOSTILE)
        .await;
    let body: serde_json::Value = serde_json::from_slice(&crm.seen()[1].body).unwrap();
    assert_eq!(body["token"], "SECRET-TOKEN");

    // No body table: the payload as templates see it, without the token.
    gw.client().post_at(gw.addr, "/whole", None, HOSTILE).await;
    let body: serde_json::Value = serde_json::from_slice(&crm.seen()[2].body).unwrap();
    assert_eq!(body["caller"], "06 12&34<x>\"'");
    assert_eq!(body["user"]["fullName"], "James <Bond> & Co");
    assert!(body["user"].get("token").is_none(), "{body}");
    assert!(log_lines("SECRET-TOKEN").is_empty());
}

#[tokio::test]
async fn contract_backend_is_validated_strictly() {
    let crm = Crm::start(|seen| {
        let body = match seen.target.as_str() {
            "/ok" => r#"{"action":"open","event":"EventReleased","url":"/card/1","autopause":true,"title":" A\u0007  B "}"#,
            "/js" => r#"{"action":"open","event":"EventRinging","url":"javascript:alert(1)","autopause":false,"title":"x"}"#,
            "/event" => r#"{"action":"open","event":"EventHangup","url":"https://crm/x","autopause":false,"title":"x"}"#,
            "/extra" => r#"{"action":"open","event":"EventRinging","url":"https://crm/x","autopause":false,"title":"x","script":"1"}"#,
            _ => r#"{"action":"none"}"#,
        };
        Answer::Reply(200, "application/json", body.into())
    })
    .await;
    let mut backends = String::new();
    let mut routes = String::new();
    for name in ["ok", "js", "event", "extra", "none"] {
        backends.push_str(&format!(
            "[backends.{name}]\nurl = \"{}/{name}\"\nencoding = \"json\"\npublic_base = \"https://crm.example.org/\"\nreply = {{ format = \"contract\" }}\n",
            crm.url()
        ));
        routes.push_str(&format!(
            "[[routes]]\nname = \"contract-{name}\"\npath = \"/{name}\"\nbackend = \"{name}\"\n"
        ));
    }
    let gw = start_gateway(&config(&backends, &routes)).await;
    let ok = gw.client().post_at(gw.addr, "/ok", None, SEED).await;
    assert_eq!(
        ok.json(),
        json!({"action":"open","event":"EventReleased","url":"https://crm.example.org/card/1","autopause":true,"title":"A B"})
    );
    for (name, reason) in [
        ("js", "invalid_reply"),
        ("event", "invalid_reply"),
        ("extra", "bad_reply"),
        ("none", "declined"),
    ] {
        let reply = gw
            .client()
            .post_at(gw.addr, &format!("/{name}"), None, SEED)
            .await;
        assert_eq!(reply.status, 200, "{name}");
        assert_eq!(reply.text(), r#"{"action":"none"}"#, "{name}");
        logged_none(&format!("contract-{name}"), reason);
    }
}

#[tokio::test]
async fn https_backend_with_a_custom_ca_and_without_it() {
    let crm_ca = TestCa::new();
    let crm = Crm::start_tls(&crm_ca, |_| {
        Answer::Reply(
            200,
            "application/json",
            r#"{"url":"https://crm.example.org/c/1"}"#.into(),
        )
    })
    .await;
    let backends = format!(
        r#"
[backends.internal]
url = "{0}/lookup"
encoding = "json"
ca_file = "crm-ca.pem"
reply = {{ format = "json", extract = {{ url = "url" }} }}

[backends.untrusted]
url = "{0}/lookup"
encoding = "json"
reply = {{ format = "json", extract = {{ url = "url" }} }}
"#,
        crm.url().replace("127.0.0.1", "localhost")
    );
    let routes = r#"
[[routes]]
name = "tls-trusted"
backend = "internal"
[[routes]]
name = "tls-untrusted"
path = "/untrusted"
backend = "untrusted"
"#;
    let gw = start_gateway_with(
        &config(&backends, routes),
        &[("crm-ca.pem", &crm_ca.ca_pem)],
    )
    .await;
    let reply = gw.client().post(gw.addr, None, SEED).await;
    assert_eq!(reply.json()["url"], "https://crm.example.org/c/1");
    assert_eq!(crm.seen().len(), 1);
    assert_eq!(
        crm.seen()[0].version,
        http::Version::HTTP_2,
        "h2 chosen by ALPN"
    );

    let reply = gw.client().post_at(gw.addr, "/untrusted", None, SEED).await;
    assert_eq!(reply.text(), r#"{"action":"none"}"#);
    let line = logged_none("tls-untrusted", "connect");
    assert!(line.to_lowercase().contains("certificate"), "{line}");
    assert_eq!(
        crm.seen().len(),
        1,
        "no request may reach an unverified server"
    );
}

/// One route per fault, each against its own misbehaving backend.
#[tokio::test]
async fn every_backend_fault_gives_none_before_the_deadline_with_the_reason_logged() {
    let crm = Crm::start(|seen| match seen.target.as_str() {
        "/hang" => Answer::Hang,
        "/500" => Answer::Reply(500, "text/plain", "internal error".into()),
        "/notjson" => Answer::Reply(200, "application/json", "<html>oops</html>".into()),
        "/big" => Answer::Reply(200, "application/json", "x".repeat(3 * 1024 * 1024)),
        "/stream" => Answer::Stream(8 * 1024 * 1024),
        "/redirect" => Answer::Redirect(302, "/elsewhere".into()),
        _ => Answer::Reply(404, "text/plain", "not found".into()),
    })
    .await;
    let (reset_url, _reset) = raw_server(Raw::Reset).await;
    let (garbage_url, _garbage) = raw_server(Raw::Garbage).await;
    let refused = refused_url().await;
    let faults = [
        ("refused", format!("{refused}/x"), "connect"),
        ("hang", format!("{}/hang", crm.url()), "deadline"),
        ("reset", format!("{reset_url}/x"), "io"),
        ("status500", format!("{}/500", crm.url()), "status"),
        ("status404", format!("{}/missing", crm.url()), "status"),
        ("garbage", format!("{garbage_url}/x"), "io"),
        ("notjson", format!("{}/notjson", crm.url()), "bad_reply"),
        ("big", format!("{}/big", crm.url()), "too_large"),
        ("stream", format!("{}/stream", crm.url()), "too_large"),
        ("redirect", format!("{}/redirect", crm.url()), "redirect"),
    ];
    let mut backends = String::new();
    let mut routes = String::new();
    for (name, url, _) in &faults {
        backends.push_str(&format!(
            "[backends.{name}]\nurl = \"{url}\"\nencoding = \"json\"\nreply = {{ format = \"json\", extract = {{ url = \"url\" }} }}\n"
        ));
        routes.push_str(&format!(
            "[[routes]]\nname = \"fault-{name}\"\npath = \"/{name}\"\nbackend = \"{name}\"\n"
        ));
    }
    // Room for the 8 MiB stream to pass the 1 MiB reply limit before the
    // deadline on a loaded machine (at 400 ms it sometimes did not: `deadline`).
    let deadline_ms = 1500;
    let cfg = format!(
        "[server]\ndeadline_ms = {deadline_ms}\n{}",
        config(&backends, &routes)
    );
    let gw = start_gateway(&cfg).await;
    let mut checks = Vec::new();
    for (name, _, reason) in faults {
        let client = gw.client();
        let addr = gw.addr;
        checks.push(tokio::spawn(async move {
            let started = Instant::now();
            let path = format!("/{name}");
            let reply = client
                .post_at(addr, &path, Some("https://xuc.example.org"), SEED)
                .await;
            (name, reason, started.elapsed(), reply)
        }));
    }
    for check in checks {
        let (name, reason, elapsed, reply) = check.await.unwrap();
        assert_eq!(reply.status, 200, "{name}");
        assert_eq!(reply.text(), r#"{"action":"none"}"#, "{name}");
        assert_eq!(
            reply.header("access-control-allow-origin"),
            Some("*"),
            "{name}"
        );
        // Generous margin: the point is "bounded by the deadline", not speed.
        assert!(
            elapsed < Duration::from_millis(deadline_ms + 2000),
            "{name} took {elapsed:?}"
        );
        let line = logged_none(&format!("fault-{name}"), reason);
        assert!(line.contains(&format!("backend={name} ")), "{line}");
        assert!(line.contains("latency_ms="), "{line}");
    }
}

#[tokio::test]
async fn redirects_are_followed_only_when_configured() {
    let crm = Crm::start(|seen| match seen.target.as_str() {
        "/old" => Answer::Redirect(301, "/new?x=1".into()),
        _ => Answer::Reply(
            200,
            "application/json",
            r#"{"url":"https://crm.example.org/moved"}"#.into(),
        ),
    })
    .await;
    std::env::set_var("TPGW_TEST_REDIRECT_TOKEN", "hop-token");
    let backends = format!(
        "[backends.moved]\nurl = \"{}/old\"\nencoding = \"json\"\nfollow_redirects = 1\n\
         auth = {{ type = \"bearer\", token_env = \"TPGW_TEST_REDIRECT_TOKEN\" }}\n\
         headers = {{ X-Site = \"lyon\" }}\n\
         reply = {{ format = \"json\", extract = {{ url = \"url\" }} }}\n",
        crm.url()
    );
    let gw = start_gateway(&config(&backends, &route("redirect-followed", "\"moved\""))).await;
    let reply = gw.client().post(gw.addr, None, SEED).await;
    assert_eq!(reply.json()["url"], "https://crm.example.org/moved");
    let seen = crm.seen();
    assert_eq!(seen.len(), 2);
    // A 301 after a POST becomes a GET without body, as browsers do.
    assert_eq!(
        (seen[1].method.as_str(), seen[1].target.as_str()),
        ("GET", "/new?x=1")
    );
    assert!(seen[1].body.is_empty());
    // Same origin: both hops carry the backend's headers and credentials.
    for hop in &seen {
        assert_eq!(hop.header("x-site"), Some("lyon"), "{}", hop.target);
        assert_eq!(
            hop.header("authorization"),
            Some("Bearer hop-token"),
            "{}",
            hop.target
        );
    }
}

#[tokio::test]
async fn fallbacks_are_tried_in_order_then_the_screen_pop() {
    let good = Crm::start(|_| {
        Answer::Reply(
            200,
            "application/json",
            r#"{"url":"https://crm.example.org/standby"}"#.into(),
        )
    })
    .await;
    let refused = refused_url().await;
    let backends = format!(
        r#"
[backends.primary]
url = "{refused}/x"
encoding = "json"
reply = {{ format = "json", extract = {{ url = "url" }} }}
[backends.standby]
url = "{}/x"
encoding = "json"
reply = {{ format = "json", extract = {{ url = "url" }} }}
"#,
        good.url()
    );
    let routes = r#"
[[routes]]
name = "fallback-chain"
backend = ["primary", "standby"]

[[routes]]
name = "fallback-pop"
path = "/pop"
backend = "primary"
[routes.open]
event = "EventRinging"
url = "https://crm.example.org/search?phone={{ caller }}"
"#;
    let gw = start_gateway(&config(&backends, routes)).await;
    let reply = gw.client().post(gw.addr, None, SEED).await;
    assert_eq!(reply.json()["url"], "https://crm.example.org/standby");
    let reply = gw.client().post_at(gw.addr, "/pop", None, SEED).await;
    assert_eq!(
        reply.json()["url"],
        "https://crm.example.org/search?phone=1001"
    );
    let warn = log_lines("route=fallback-pop ");
    assert!(
        warn.iter().any(|l| l.contains("reason=connect")),
        "{warn:#?}"
    );
}

#[tokio::test]
async fn a_backend_at_its_concurrency_limit_answers_none_at_once() {
    let crm = Crm::start(|seen| match seen.target.as_str() {
        "/slow" => Answer::Hang,
        _ => Answer::Reply(200, "application/json", "{}".into()),
    })
    .await;
    let backends = format!(
        "[backends.slow]\nurl = \"{}/slow\"\nencoding = \"json\"\nmax_concurrency = 1\nreply = {{ format = \"json\", extract = {{ url = \"url\" }} }}\n",
        crm.url()
    );
    let cfg = format!(
        "[server]\ndeadline_ms = 3000\n{}",
        config(&backends, &route("busy-route", "\"slow\""))
    );
    let gw = start_gateway(&cfg).await;
    let (client, addr) = (gw.client(), gw.addr);
    let first = tokio::spawn(async move { client.post(addr, None, SEED).await });
    // Wait until the first call is in flight at the CRM.
    for _ in 0..200 {
        if !crm.seen().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(crm.seen().len(), 1);
    let second = gw.client().post(gw.addr, None, SEED).await;
    assert_eq!(second.text(), r#"{"action":"none"}"#);
    logged_none("busy-route", "busy");
    assert_eq!(crm.seen().len(), 1, "the busy call must not reach the CRM");
    first.abort();
}

#[tokio::test]
async fn client_certificate_is_presented_to_a_crm_that_requires_one() {
    let server_ca = TestCa::new();
    let client_ca = TestCa::new();
    let crm = Crm::start_tls_with(&server_ca, Some(&client_ca), |_| {
        Answer::Reply(
            200,
            "application/json",
            r#"{"url":"https://crm.example.org/mtls"}"#.into(),
        )
    })
    .await;
    let backends = format!(
        r#"
[backends.mtls]
url = "{0}/x"
encoding = "json"
ca_file = "crm-ca.pem"
client_cert = "client.pem"
client_key = "client-key.pem"
reply = {{ format = "json", extract = {{ url = "url" }} }}

[backends.anonymous]
url = "{0}/x"
encoding = "json"
ca_file = "crm-ca.pem"
reply = {{ format = "json", extract = {{ url = "url" }} }}
"#,
        crm.url()
    );
    let routes = "[[routes]]\nname = \"mtls-ok\"\nbackend = \"mtls\"\n\
                  [[routes]]\nname = \"mtls-anon\"\npath = \"/anon\"\nbackend = \"anonymous\"\n";
    let files = [
        ("crm-ca.pem", server_ca.ca_pem.as_str()),
        ("client.pem", client_ca.cert_pem.as_str()),
        ("client-key.pem", client_ca.key_pem.as_str()),
    ];
    let gw = start_gateway_with(&config(&backends, routes), &files).await;
    let reply = gw.client().post(gw.addr, None, SEED).await;
    assert_eq!(reply.json()["url"], "https://crm.example.org/mtls");
    let reply = gw.client().post_at(gw.addr, "/anon", None, SEED).await;
    assert_eq!(reply.text(), r#"{"action":"none"}"#);
    assert_eq!(crm.seen().len(), 1);
}

#[tokio::test]
async fn mapped_statuses_reach_open_when() {
    let crm = Crm::start(|seen| match seen.target.as_str() {
        "/lookup?phone=1001" => Answer::Reply(
            200,
            "application/json",
            r#"{"url":"https://crm.example.org/c/1001"}"#.into(),
        ),
        _ => Answer::Reply(
            404,
            "application/json",
            r#"{"error":"unknown caller"}"#.into(),
        ),
    })
    .await;
    let backends = format!(
        r#"
[backends.mapped]
url = "{}/lookup"
encoding = "query"
body = {{ phone = "{{{{ caller }}}}" }}
[backends.mapped.reply]
format = "json"
accept_status = [200, 404]
extract = {{ url = "url" }}
open_when = "http_status == 200"
"#,
        crm.url()
    );
    let gw = start_gateway(&config(&backends, &route("mapped-route", "\"mapped\""))).await;
    let reply = gw.client().post(gw.addr, None, SEED).await;
    assert_eq!(reply.json()["url"], "https://crm.example.org/c/1001");
    let reply = gw.client().post(gw.addr, None, NO_QUEUE).await;
    assert_eq!(reply.text(), r#"{"action":"none"}"#);
    // A mapped 404 is an answer ("unknown caller"), not a fault.
    logged_none("mapped-route", "declined");
}

/// The client keeps connections: calls in a row share one (HTTP/1.1 and
/// h2), and a connection the CRM closed while idle is replaced, not failed.
#[tokio::test]
async fn backend_connections_are_reused_and_closed_ones_replaced() {
    let reply = || {
        Answer::Reply(
            200,
            "application/json",
            r#"{"url":"https://crm.example.org/c/1"}"#.into(),
        )
    };
    let plain = Crm::start(move |_| reply()).await;
    let crm_ca = TestCa::new();
    let tls = Crm::start_tls(&crm_ca, move |_| reply()).await;
    let (closing, _task) = raw_server(Raw::OneThenClose).await;
    let backends = format!(
        r#"
[backends.plain]
url = "{0}/lookup"
encoding = "json"
reply = {{ format = "json", extract = {{ url = "url" }} }}

[backends.tls]
url = "{1}/lookup"
encoding = "json"
ca_file = "crm-ca.pem"
reply = {{ format = "json", extract = {{ url = "url" }} }}

[backends.closing]
url = "{2}/lookup"
encoding = "json"
reply = {{ format = "json", extract = {{ url = "url" }} }}
"#,
        plain.url(),
        tls.url().replace("127.0.0.1", "localhost"),
        closing
    );
    let routes = r#"
[[routes]]
name = "plain"
backend = "plain"
[[routes]]
name = "tls"
path = "/tls"
backend = "tls"
[[routes]]
name = "closing"
path = "/closing"
backend = "closing"
"#;
    let gw = start_gateway_with(
        &config(&backends, routes),
        &[("crm-ca.pem", &crm_ca.ca_pem)],
    )
    .await;
    for path in ["/", "/tls", "/closing"] {
        for call in 0..5 {
            let reply = gw.client().post_at(gw.addr, path, None, SEED).await;
            assert_eq!(
                reply.json()["action"],
                "open",
                "{path} call {call}: {}",
                reply.text()
            );
            // Let the closing CRM's close arrive before the next call.
            tokio::time::sleep(Duration::from_millis(40)).await;
        }
    }
    assert_eq!(plain.seen().len(), 5);
    assert_eq!(
        plain.connections(),
        1,
        "five HTTP/1.1 calls on one connection"
    );
    assert_eq!(tls.seen().len(), 5);
    assert_eq!(tls.connections(), 1, "five h2 calls on one connection");
}

/// A JSON reply's values are read in its text when nothing needs the whole
/// document, and parsed into one when a template reads `body`: both ways
/// give the agent the same reply, for duplicates, escapes, blanks, arrays,
/// missing values and text that is not JSON. The one difference is by
/// design: a number beyond f64 elsewhere in the reply no longer refuses
/// the whole of it.
#[tokio::test]
async fn a_json_reply_read_in_place_gives_what_the_parsed_document_gives() {
    let bodies = [
        r#"{"f":true,"c":{"card":"https://crm.example.org/c/1","name":"ACME"},"list":[1,"two"]}"#,
        r#"{"f":true,"c":{"card":"https://x/bad","name":"X"},"c":{"card":"https://crm.example.org/c/2","name":"Dup \"q\""},"list":[{"a":1},2.5]}"#,
        " { \"f\" : 1 , \"c\" : { \"c\\u0061rd\" : \"https:\\/\\/crm.example.org\\/c\\/3\" , \"name\" : \"\\u00e9t\\u00e9\" } , \"list\" : [ null , [1,2] ] } ",
        r#"{"f":false,"c":{"card":"https://crm.example.org/c/4","name":"N"}}"#,
        r#"{"f":"yes","c":{"card":"https://crm.example.org/c/5"},"list":[]}"#,
        r#"{"f":true,"c":{"card":"https://crm.example.org/c/6"},"list":[true,-0,12345678901234567890]}"#,
        r#"{"f":true,"#,
        "[1,2]",
        "{\"f\":true,\"c\":{\"card\":\"https://crm.example.org/c/8\",\"name\":\"a\nb\"}}",
        r#"{"f":true,"c":{"card":"https://crm.example.org/c/9","name":"Big"},"n":1e400}"#,
    ];
    let crm = Crm::start(move |seen| {
        let n: usize = seen.target.trim_start_matches("/r/").parse().unwrap_or(0);
        Answer::Reply(200, "application/json", bodies[n % bodies.len()].into())
    })
    .await;
    let extract = r#"extract = { url = "/c/card", name = "c.name", n = "list.1", flag = "/f" }, open_when = "flag""#;
    let mut backends = String::new();
    let mut routes = String::new();
    for i in 0..bodies.len() {
        for (way, title) in [
            ("inplace", "{{ name }} {{ n }}"),
            (
                "whole",
                "{{ name }} {{ n }}{% if false %}{{ body }}{% endif %}",
            ),
        ] {
            backends.push_str(&format!(
                "[backends.{way}{i}]\nurl = \"{}/r/{i}\"\nencoding = \"json\"\nreply = {{ format = \"json\", {extract}, title = \"{title}\" }}\n",
                crm.url()
            ));
            routes.push_str(&format!(
                "[[routes]]\nname = \"{way}{i}\"\npath = \"/{way}{i}\"\nbackend = \"{way}{i}\"\n"
            ));
        }
    }
    let gw = start_gateway(&config(&backends, &routes)).await;
    let mut opened = 0;
    for i in 0..bodies.len() {
        let read = |way: &str| {
            let (client, addr, path) = (gw.client(), gw.addr, format!("/{way}{i}"));
            async move { client.post_at(addr, &path, None, SEED).await.text() }
        };
        let (in_place, whole) = (read("inplace").await, read("whole").await);
        if i == bodies.len() - 1 {
            assert_eq!(whole, r#"{"action":"none"}"#);
            logged_none(&format!("whole{i}"), "bad_reply");
            assert!(
                in_place.contains("https://crm.example.org/c/9"),
                "{in_place}"
            );
            assert!(in_place.contains(r#""title":"Big""#), "{in_place}");
            continue;
        }
        assert_eq!(in_place, whole, "{}", bodies[i]);
        opened += usize::from(in_place.contains(r#""action":"open""#));
    }
    // Most open a card, with the values each way found.
    assert_eq!(opened, 5);
    let second = gw.client().post_at(gw.addr, "/inplace1", None, SEED).await;
    assert_eq!(second.json()["url"], "https://crm.example.org/c/2");
    assert_eq!(second.json()["title"], "Dup \"q\" 2.5");
    let third = gw.client().post_at(gw.addr, "/inplace2", None, SEED).await;
    assert_eq!(third.json()["title"], "été [1, 2]");
    logged_none("inplace6", "bad_reply");
    logged_none("inplace8", "bad_reply");
}
