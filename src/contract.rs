//! The XucMgt third-party contract as types: the payload the agent's browser
//! POSTs, and the reply it expects. The reply type makes a malformed answer
//! unrepresentable: `none` serializes to exactly `{"action":"none"}`, and an
//! `open` can only be built through [`Open::new`], which validates it.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use url::Url;

use crate::constants::{MAX_TITLE_CHARS, MAX_URL_LEN};

/// What XucMgt POSTs on every ringing call, checked once against the
/// contract's types and kept as the JSON it came as. Unknown fields stay, so
/// a newer XucMgt never breaks us and templates can still use them; only
/// `user.token` is taken out, so no template, log line or backend sees it
/// unless a route asks.
///
/// Templates read the payload through [`Payload::context`], which converts
/// a field only when a template reads it: a route reads two or three of a
/// payload's fields, and converting all of them was measured as a large
/// share of a call's cost.
#[derive(Debug, Clone)]
pub struct Payload {
    fields: Arc<Map<String, Value>>,
    token: Option<Secret>,
}

impl Payload {
    /// The agent's xuc token, if the payload had one.
    pub fn token(&self) -> Option<&Secret> {
        self.token.as_ref()
    }

    /// The payload as templates see it (no token).
    pub fn context(&self) -> minijinja::Value {
        minijinja::Value::from_object(JsonObject {
            root: Arc::clone(&self.fields),
            path: Box::default(),
        })
    }

    /// The payload as templates see it, with `user.token` back in, for the
    /// routes that forward it.
    pub fn context_with_token(&self) -> minijinja::Value {
        let Some(token) = &self.token else {
            return self.context();
        };
        let mut fields = Map::clone(&self.fields);
        if let Some(user) = fields.get_mut("user").and_then(Value::as_object_mut) {
            user.insert("token".into(), token.expose().into());
        }
        minijinja::Value::from_object(JsonObject {
            root: Arc::new(fields),
            path: Box::default(),
        })
    }
}

impl Serialize for Payload {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.fields.serialize(serializer)
    }
}

/// Parses a payload as XucMgt sends it. The error is one line that names
/// the field at fault (`user.userId: invalid type...`), for the 400 reply.
pub fn parse_payload(body: &[u8]) -> Result<Payload, String> {
    let first_line = |message: String| match message.split_once(" at line ") {
        Some((head, _)) => head.to_owned(),
        None => message,
    };
    let doc: Value = serde_json::from_slice(body).map_err(|e| first_line(e.to_string()))?;
    require_objects(&doc)?;
    // Fast path; the slower path-tracking check only runs to explain an error.
    if Shape::deserialize(&doc).is_err() {
        return Err(match serde_path_to_error::deserialize::<_, Shape>(&doc) {
            Ok(_) => "payload does not match the contract".to_owned(),
            Err(err) => {
                let path = err.path().to_string();
                let message = first_line(err.into_inner().to_string());
                if path == "." {
                    message
                } else {
                    format!("{path}: {message}")
                }
            }
        });
    }
    let Value::Object(mut fields) = doc else {
        return Err("invalid type: expected an object".to_owned());
    };
    let token = match fields
        .get_mut("user")
        .and_then(Value::as_object_mut)
        .and_then(|user| user.remove("token"))
    {
        Some(Value::String(token)) => Some(Secret(token)),
        _ => None,
    };
    Ok(Payload {
        fields: Arc::new(fields),
        token,
    })
}

/// The payload, `user` and `queue` must be JSON objects: serde would also
/// read a struct from an array (by position), which no XucMgt sends.
fn require_objects(doc: &Value) -> Result<(), String> {
    let check = |at: &str, value: &Value, nullable: bool| match value {
        Value::Object(_) => Ok(()),
        Value::Null if nullable => Ok(()),
        other => {
            let found = match other {
                Value::Null => "null".to_owned(),
                Value::Bool(b) => format!("boolean `{b}`"),
                Value::Number(n) => format!("number `{n}`"),
                Value::String(s) => format!("string {s:?}"),
                Value::Array(_) => "sequence".to_owned(),
                Value::Object(_) => "map".to_owned(),
            };
            Err(format!("{at}invalid type: {found}, expected a JSON object"))
        }
    };
    check("", doc, false)?;
    if let Some(user) = doc.get("user") {
        check("user: ", user, false)?;
    }
    match doc.get("queue") {
        Some(queue) => check("queue: ", queue, true),
        None => Ok(()),
    }
}

/// The contract's types, checked over the parsed JSON without copying it:
/// required fields present, numbers where numbers are due, and so on.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)] // read by serde only: the check is the point
struct Shape {
    user: User,
    caller: AnyString,
    callee: AnyString,
    #[serde(default)]
    queue: Option<Queue>,
    #[serde(default)]
    user_data: AnyObject,
    #[serde(default)]
    call_data_call_id: Option<AnyString>,
}

/// The logged-in agent.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)]
struct User {
    user_id: i64,
    #[serde(default)]
    agent_id: Option<i64>,
    #[serde(default)]
    first_name: AnyString,
    #[serde(default)]
    last_name: AnyString,
    #[serde(default)]
    full_name: AnyString,
    #[serde(default)]
    token: Option<AnyString>,
}

/// The queue the call came through.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)]
struct Queue {
    #[serde(default)]
    id: Option<i64>,
    #[serde(default)]
    name: AnyString,
    #[serde(default)]
    display_name: AnyString,
    #[serde(default)]
    number: AnyString,
}

/// A string, checked and not kept.
#[derive(Default)]
struct AnyString;

impl<'de> Deserialize<'de> for AnyString {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = AnyString;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<AnyString, E> {
                Ok(AnyString)
            }
        }
        d.deserialize_str(V)
    }
}

/// A JSON object of anything, checked and not kept.
#[derive(Default)]
struct AnyObject;

impl<'de> Deserialize<'de> for AnyObject {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = AnyObject;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<AnyObject, A::Error> {
                while map
                    .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
                    .is_some()
                {}
                Ok(AnyObject)
            }
        }
        d.deserialize_map(V)
    }
}

/// A JSON object as templates see it, read in place: a field is converted
/// when a template reads it. Nested objects are read through the root.
#[derive(Debug)]
struct JsonObject {
    root: Arc<Map<String, Value>>,
    /// Keys from the root to this object.
    path: Box<[Box<str>]>,
}

impl JsonObject {
    fn map(&self) -> Option<&Map<String, Value>> {
        let mut map = &*self.root;
        for key in &self.path {
            map = map.get(&**key)?.as_object()?;
        }
        Some(map)
    }
}

impl minijinja::value::Object for JsonObject {
    fn get_value(self: &Arc<Self>, key: &minijinja::Value) -> Option<minijinja::Value> {
        self.get_value_by_str(key.as_str()?)
    }

    fn get_value_by_str(self: &Arc<Self>, key: &str) -> Option<minijinja::Value> {
        Some(match self.map()?.get(key)? {
            Value::Object(_) => minijinja::Value::from_object(JsonObject {
                root: Arc::clone(&self.root),
                path: self.path.iter().cloned().chain([key.into()]).collect(),
            }),
            other => minijinja::Value::from(minijinja::value::Serde(other)),
        })
    }

    fn enumerate(self: &Arc<Self>) -> minijinja::value::Enumerator {
        use minijinja::value::ObjectExt;
        self.mapped_enumerator(|this| {
            Box::new(
                this.map()
                    .into_iter()
                    .flat_map(|m| m.keys())
                    .map(|k| minijinja::Value::from(k.as_str())),
            )
        })
    }

    fn enumerator_len(self: &Arc<Self>) -> Option<usize> {
        Some(self.map().map_or(0, Map::len))
    }
}

/// A string that must never be printed: `Debug` shows a placeholder.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    /// The secret itself, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// The call event on which XucMgt opens the tab.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    /// When the phone rings.
    EventRinging,
    /// When the agent answers.
    EventEstablished,
    /// When an answered call hangs up.
    EventReleased,
}

impl Event {
    /// Parses the exact contract spelling; anything else is not an event.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "EventRinging" => Some(Self::EventRinging),
            "EventEstablished" => Some(Self::EventEstablished),
            "EventReleased" => Some(Self::EventReleased),
            _ => None,
        }
    }
}

/// The reply XucMgt reads. The client reads fields without checking `action`,
/// so `None` must carry nothing else.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "lowercase")]
pub enum Reply {
    /// Open a tab.
    Open(Open),
    /// Do nothing.
    None,
}

/// A validated `open` reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Open {
    event: Event,
    url: String,
    autopause: bool,
    title: String,
}

/// Why a would-be `open` reply was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidOpen {
    /// The url does not parse as an absolute URL.
    #[error("url {0:?} is not an absolute URL")]
    NotAbsolute(String),
    /// The url is absolute but would run or embed something other than a web page.
    #[error("url scheme {0:?} is not http or https")]
    Scheme(String),
    /// The url is longer than a browser should be handed.
    #[error("url is {0} bytes, over the {MAX_URL_LEN}-byte limit")]
    TooLong(usize),
}

impl Open {
    /// Builds an `open` reply, refusing any url the agent's browser should not
    /// load inside XucMgt, and cleaning the title of control characters.
    pub fn new(event: Event, url: &str, autopause: bool, title: &str) -> Result<Self, InvalidOpen> {
        let url = url.trim();
        if url.len() > MAX_URL_LEN {
            return Err(InvalidOpen::TooLong(url.len()));
        }
        let parsed = Url::parse(url).map_err(|_| InvalidOpen::NotAbsolute(url.to_owned()))?;
        if !matches!(parsed.scheme(), "http" | "https") || !parsed.has_host() {
            return Err(InvalidOpen::Scheme(parsed.scheme().to_owned()));
        }
        Ok(Self {
            event,
            url: parsed.into(),
            autopause,
            title: clean_title(title),
        })
    }

    /// The event the tab opens on.
    pub fn event(&self) -> Event {
        self.event
    }

    /// The absolute http(s) url of the tab.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Whether the agent is paused while the tab is open.
    pub fn autopause(&self) -> bool {
        self.autopause
    }

    /// The tab title.
    pub fn title(&self) -> &str {
        &self.title
    }
}

/// Removes control characters, folds runs of white space, trims and bounds
/// the title, so a hostile CRM value cannot break the tab bar.
fn clean_title(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len().min(MAX_TITLE_CHARS * 4));
    let mut pending_space = false;
    let mut chars = 0;
    for c in raw.chars() {
        if c.is_whitespace() {
            pending_space = !out.is_empty();
            continue;
        }
        if c.is_control() || is_bidi_control(c) {
            continue;
        }
        if chars + usize::from(pending_space) >= MAX_TITLE_CHARS {
            break;
        }
        if pending_space {
            out.push(' ');
            chars += 1;
            pending_space = false;
        }
        out.push(c);
        chars += 1;
    }
    out
}

/// Bidirectional overrides can make a title read differently from what it is.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(url: &str) -> Result<Open, InvalidOpen> {
        Open::new(Event::EventRinging, url, false, "t")
    }

    /// Found by the payload fuzzer: the token's value elsewhere in a
    /// payload is just data, but `user` as templates see it never holds it.
    #[test]
    fn fuzz_regression_token_elsewhere_never_in_user() {
        let body = include_bytes!("../tests/fixtures/fuzz/payload-token-elsewhere.json");
        if let Ok(payload) = parse_payload(body) {
            let json = serde_json::to_value(&payload).unwrap();
            assert!(json["user"].get("token").is_none(), "{json}");
            assert!(payload.token().is_some());
        }
    }

    #[test]
    fn none_serializes_to_exactly_action_none() {
        assert_eq!(
            serde_json::to_string(&Reply::None).unwrap(),
            r#"{"action":"none"}"#
        );
    }

    #[test]
    fn open_serializes_to_the_contract_shape() {
        let reply = Reply::Open(
            Open::new(
                Event::EventReleased,
                "https://crm.example.org/c?id=1",
                true,
                "Card",
            )
            .unwrap(),
        );
        assert_eq!(
            serde_json::to_string(&reply).unwrap(),
            r#"{"action":"open","event":"EventReleased","url":"https://crm.example.org/c?id=1","autopause":true,"title":"Card"}"#
        );
    }

    #[test]
    fn only_absolute_http_urls_are_accepted() {
        assert!(open("http://crm/x").is_ok());
        assert!(open(" https://crm.example.org/ ").is_ok());
        assert_eq!(
            open("/relative"),
            Err(InvalidOpen::NotAbsolute("/relative".into()))
        );
        assert_eq!(
            open("javascript:alert(1)"),
            Err(InvalidOpen::Scheme("javascript".into()))
        );
        assert_eq!(
            open("data:text/html,x"),
            Err(InvalidOpen::Scheme("data".into()))
        );
        assert_eq!(
            open("file:///etc/passwd"),
            Err(InvalidOpen::Scheme("file".into()))
        );
        assert!(matches!(
            open(&format!("https://a/{}", "x".repeat(MAX_URL_LEN))),
            Err(InvalidOpen::TooLong(_))
        ));
    }

    #[test]
    fn titles_lose_control_characters_and_are_bounded() {
        assert_eq!(
            clean_title("  Caller\n\t0612\u{0}34 \u{202E}x  "),
            "Caller 061234 x"
        );
        assert_eq!(
            clean_title(&"é".repeat(500)).chars().count(),
            MAX_TITLE_CHARS
        );
        assert_eq!(clean_title(""), "");
    }

    #[test]
    fn token_is_never_serialized_or_debug_printed() {
        let p = parse_payload(
            br#"{"user":{"userId":1,"token":"sekret"},"caller":"1","callee":"2","future":{"a":1}}"#,
        )
        .unwrap();
        assert_eq!(p.token().map(Secret::expose), Some("sekret"));
        assert!(!format!("{p:?}").contains("sekret"));
        let json = serde_json::to_string(&p).unwrap();
        assert!(!json.contains("sekret"));
        assert!(json.contains(r#""future":{"a":1}"#));
    }
}
