//! Reply normalization: any bytes a backend sends, in any declared format
//! and with any status, give a validated `open` or a `none` reason, never a
//! panic, and an `open` always carries an absolute http(s) url.
#![no_main]

use std::sync::OnceLock;

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use thirdparty_gateway::backend::RawReply;
use thirdparty_gateway::config::{self, Config};

const CONFIG: &str = r#"
[server]
plain_http = true
[cors]
allow_origins = ["*"]
[backends.json]
url = "http://127.0.0.1:9/x"
encoding = "json"
public_base = "https://crm.example.org/app/"
[backends.json.reply]
format = "json"
extract = { url = "/result/0/url", title = "result.0.name", n = "/count" }
open_when = "n is not defined or n > 0"
event = "{{ 'EventReleased' if n == 2 else 'EventRinging' }}"
autopause = "title is defined"
[backends.xml]
url = "http://127.0.0.1:9/x"
encoding = "xml"
body = "<a/>"
public_base = "https://crm.example.org/"
[backends.xml.reply]
format = "xml"
extract = { url = "Envelope/Body/R/Url", title = "Envelope/Body/R/@name" }
[backends.text]
url = "http://127.0.0.1:9/x"
encoding = "query"
reply = { format = "text", title = "{{ body[:20] }}" }
[backends.contract]
url = "http://127.0.0.1:9/x"
encoding = "json"
public_base = "https://crm.example.org/"
reply = { format = "contract" }
"#;

fn config() -> &'static Config {
    static CONFIG_ONCE: OnceLock<Config> = OnceLock::new();
    CONFIG_ONCE.get_or_init(|| {
        config::parse(std::path::Path::new("fuzz.toml"), CONFIG).expect("the fuzz config loads")
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&status, body)) = data.split_first() else {
        return;
    };
    let config = config();
    let json = serde_json::json!({"caller": "1001", "user": {"userId": 1}});
    let payload = minijinja::Value::from(minijinja::value::Serde(&json));
    let raw = RawReply {
        status: http::StatusCode::from_u16(100 + u16::from(status) % 500)
            .unwrap_or(http::StatusCode::OK),
        headers: http::HeaderMap::new(),
        body: Bytes::copy_from_slice(body),
        url: url::Url::parse("http://127.0.0.1:9/x").unwrap(),
        redirected: false,
    };
    for backend in config.backends.values() {
        if let Ok(open) = backend
            .reply
            .normalize(config.router.templates(), &payload, &raw, None, None)
        {
            let url = url::Url::parse(open.url()).expect("open urls are absolute");
            assert!(matches!(url.scheme(), "http" | "https"), "{}", open.url());
            assert!(open.title().chars().count() <= 120);
            assert!(!open.title().chars().any(char::is_control));
        }
    }
});
