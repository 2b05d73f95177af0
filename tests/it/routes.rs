//! Screen-pop routes end to end: payload in, contract reply out.

use serde_json::json;

use crate::support::*;

const ROUTES: &str = r#"
[cors]
allow_origins = ["*"]

[[routes]]
name = "contract"
when = 'userData.USR_CONTRACT is defined'
[routes.open]
event = "EventEstablished"
url = "https://crm.example.org/contracts/{{ userData.USR_CONTRACT }}?call={{ callDataCallId }}"
title = "Contract {{ userData.USR_CONTRACT }}"
autopause = true

[[routes]]
name = "trucks"
when = 'queue.name == "trucks"'
[routes.open]
event = "EventRinging"
url = "https://crm.example.org/search?phone={{ caller }}&q={{ queue.displayName }}"
title = "{{ queue.displayName }}: {{ caller }}"

[[routes]]
name = "mobiles"
when = 'caller.startswith("06")'
[routes.open]
event = "EventReleased"
url = "https://crm.example.org/mobile?n={{ caller }}&agent={{ user.fullName }}&t={{ user.token }}"
title = "Mobile {{ caller }} {{ user.token }}"
"#;

async fn gateway() -> TestGateway {
    start_gateway(&format!("{TLS_HEAD}{ROUTES}")).await
}

#[tokio::test]
async fn seed_payload_through_a_queue_route_gives_the_exact_contract_reply() {
    let gw = gateway().await;
    let reply = gw.client().post(gw.addr, None, SEED).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    assert_eq!(
        reply.text(),
        r#"{"action":"open","event":"EventRinging","url":"https://crm.example.org/search?phone=1001&q=Trucks","autopause":false,"title":"Trucks: 1001"}"#
    );
}

#[tokio::test]
async fn first_matching_route_wins() {
    let gw = gateway().await;
    // The token payload is in the trucks queue too, but carries USR_CONTRACT.
    let reply = gw.client().post(gw.addr, None, WITH_TOKEN).await;
    assert_eq!(
        reply.json(),
        json!({"action":"open","event":"EventEstablished",
               "url":"https://crm.example.org/contracts/C-1234?call=1732520000.42",
               "autopause":true,"title":"Contract C-1234"})
    );
}

#[tokio::test]
async fn no_queue_payload_falls_through_to_a_caller_route_and_never_sees_the_token() {
    let gw = gateway().await;
    let payload = NO_QUEUE.replace(
        r#""lastName":"Lovelace","#,
        r#""lastName":"Lovelace","token":"secret-jwt","#,
    );
    assert!(payload.contains("secret-jwt"));
    let reply = gw.client().post(gw.addr, None, &payload).await;
    assert_eq!(
        reply.json(),
        json!({"action":"open","event":"EventReleased",
               "url":"https://crm.example.org/mobile?n=0612345678&agent=Ada%20Lovelace&t=",
               "autopause":false,"title":"Mobile 0612345678"})
    );
}

#[tokio::test]
async fn no_matching_route_answers_exactly_none() {
    let gw = gateway().await;
    let payload = json!({"user":{"userId":1},"caller":"0298","callee":"1"}).to_string();
    let reply = gw.client().post(gw.addr, None, &payload).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.text(), r#"{"action":"none"}"#);
}

#[tokio::test]
async fn hostile_values_are_url_encoded_in_urls_and_cleaned_in_titles() {
    let gw = gateway().await;
    let payload = json!({
        "user":{"userId":1}, "callee":"1",
        "caller":"06 1&x=<y>#\"/..?",
        "future_field": {"nested": true}
    })
    .to_string();
    let reply = gw.client().post(gw.addr, None, &payload).await.json();
    assert_eq!(
        reply["url"],
        "https://crm.example.org/mobile?n=06%201%26x%3D%3Cy%3E%23%22%2F..%3F&agent=&t="
    );
    assert_eq!(reply["title"], "Mobile 06 1&x=<y>#\"/..?");
}

#[tokio::test]
async fn a_url_template_that_renders_to_a_relative_or_script_url_answers_none() {
    // A url every call would refuse is a load error (tests/it/check_errors.rs);
    // one made of a dialplan variable is checked on each call.
    let config = format!(
        "{TLS_HEAD}[cors]\nallow_origins = [\"*\"]\n[[routes]]\n[routes.open]\nevent = \"EventRinging\"\nurl = \"{{{{ userData.URL | safe }}}}\"\nautopause = true\n"
    );
    let gw = start_gateway(&config).await;
    for url in ["/relative/1001", "javascript:alert(1001)", "1001"] {
        let payload = SEED.replace(
            "\"userData\":{",
            &format!("\"userData\":{{\"URL\":\"{url}\","),
        );
        let reply = gw.client().post(gw.addr, None, &payload).await;
        assert_eq!(reply.text(), r#"{"action":"none"}"#, "url {url}");
    }
}

#[tokio::test]
async fn routes_on_other_paths_are_separate() {
    let config = format!(
        "{TLS_HEAD}[cors]\nallow_origins = [\"*\"]\n\
         [[routes]]\npath = \"/sales\"\n[routes.open]\nevent = \"EventRinging\"\nurl = \"https://sales.example.org/\"\n\
         [[routes]]\npath = \"/support\"\n[routes.open]\nevent = \"EventRinging\"\nurl = \"https://support.example.org/\"\n"
    );
    let gw = start_gateway(&config).await;
    let client = gw.client();
    for (path, url) in [
        ("/sales", "https://sales.example.org/"),
        ("/support", "https://support.example.org/"),
    ] {
        assert_eq!(
            client.post_at(gw.addr, path, None, SEED).await.json()["url"],
            url
        );
    }
    let reply = client.post(gw.addr, None, SEED).await;
    assert_eq!(reply.status, 404);
}
