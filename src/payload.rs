//! The payload XucMgt POSTs on every ringing call: checked once against the
//! contract's types, then read in place.
//!
//! The check is one pass of serde over the bytes into types that keep
//! nothing (no strings copied, no maps built); only `user.token` is kept
//! aside, where the caller is (the ops console records it), and where each
//! top-level entry is ([`one_pass`]). Templates then read the payload
//! through [`Payload::context`], which finds a field in the JSON text when
//! a template asks for it: a route reads two or three of a payload's
//! fields, and building a JSON tree of all of them (every key and string
//! allocated) was the largest single cost of a call (docs/performance.md).
//! Finding the fields of nested objects in text already checked is
//! [`json_scan`]'s work.

use std::borrow::Cow;
use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::fmt;
use std::marker::PhantomData;
use std::ops::Range;
use std::sync::{Arc, OnceLock};

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Serialize};

use crate::json_scan::{self, Key};

mod one_pass;

/// A string that must never be printed: `Debug` shows a placeholder.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub(crate) fn new(secret: String) -> Self {
        Self(secret)
    }

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

/// A payload that matched the contract. Unknown fields stay, so a newer
/// XucMgt never breaks us and templates can still use them; `user.token`
/// is hidden from templates, logs and backends unless a route asks.
#[derive(Clone)]
pub struct Payload {
    doc: Arc<Doc>,
    token: Option<Secret>,
    caller: Caller,
}

/// A payload's text and its top level's keys, shared by every template
/// context made from it.
#[derive(Debug)]
struct Doc {
    text: Box<str>,
    /// Found by the check in the same pass (see [`one_pass`]), or on the
    /// first look-up when that could not place a key.
    root: OnceLock<Index>,
}

/// Where the caller is: in the text when its JSON string has no escape
/// (the usual case), else decoded aside.
#[derive(Clone, Debug)]
enum Caller {
    At(Range<usize>),
    Decoded(Box<str>),
}

impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Payload")
            .field("bytes", &self.doc.text.len())
            .field("token", &self.token)
            .finish()
    }
}

impl Payload {
    /// The agent's xuc token, if the payload had one.
    pub fn token(&self) -> Option<&Secret> {
        self.token.as_ref()
    }

    /// The caller as sent (JSON escapes decoded), as templates read it.
    pub fn caller(&self) -> &str {
        match &self.caller {
            Caller::At(at) => self.doc.text.get(at.clone()).unwrap_or(""),
            Caller::Decoded(caller) => caller,
        }
    }

    /// The payload as templates see it (no token).
    pub fn context(&self) -> minijinja::Value {
        self.object(false)
    }

    /// The payload as templates see it, with `user.token`, for the routes
    /// that forward it.
    pub fn context_with_token(&self) -> minijinja::Value {
        self.object(true)
    }

    fn object(&self, show_token: bool) -> minijinja::Value {
        minijinja::Value::from_object(JsonObject {
            doc: Arc::clone(&self.doc),
            span: 0..self.doc.text.len(),
            hides_token: false,
            show_token,
            index: OnceLock::new(),
        })
    }
}

impl Serialize for Payload {
    /// The payload as templates see it: everything but `user.token`.
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut doc: serde_json::Value =
            serde_json::from_str(&self.doc.text).map_err(serde::ser::Error::custom)?;
        if let Some(user) = doc
            .get_mut("user")
            .and_then(serde_json::Value::as_object_mut)
        {
            user.remove("token");
        }
        doc.serialize(serializer)
    }
}

/// Parses a payload as XucMgt sends it. The error is one line that names
/// the field at fault (`user.userId: invalid type...`), for the 400 reply.
pub fn parse_payload(body: &[u8]) -> Result<Payload, String> {
    let text = std::str::from_utf8(body).map_err(|e| format!("payload is not UTF-8: {e}"))?;
    // Fast path; the slower path-tracking check only runs to explain an error.
    match one_pass::read(text) {
        Ok(top) => {
            let caller = match top.caller.0 {
                Cow::Borrowed(caller) => {
                    let from = (caller.as_ptr() as usize).wrapping_sub(text.as_ptr() as usize);
                    Caller::At(from..from + caller.len())
                }
                Cow::Owned(caller) => Caller::Decoded(caller.into()),
            };
            let root = top
                .entries
                .map(|entries| OnceLock::from(Index::new(text, entries)))
                .unwrap_or_default();
            Ok(Payload {
                doc: Arc::new(Doc {
                    text: text.into(),
                    root,
                }),
                token: top.token.map(|t| Secret::new(t.0)),
                caller,
            })
        }
        Err(err) => Err(explain(text, err)),
    }
}

/// One line that says what is wrong with a payload, naming the field.
fn explain(text: &str, err: serde_json::Error) -> String {
    let first_line = |message: String| match message.split_once(" at line ") {
        Some((head, _)) => head.to_owned(),
        None => message,
    };
    if err.is_syntax() || err.is_eof() {
        return first_line(err.to_string());
    }
    let mut de = serde_json::Deserializer::from_str(text);
    match serde_path_to_error::deserialize::<_, Object<Shape<'_>>>(&mut de) {
        Err(err) if err.path().to_string() != "." => {
            let path = err.path().to_string();
            format!("{path}: {}", first_line(err.into_inner().to_string()))
        }
        _ => first_line(err.to_string()),
    }
}

/// Deserializes `T` from a JSON object only: serde would also read a struct
/// from an array (by position), which no XucMgt sends.
fn object<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<T, D::Error> {
    struct MapOnly<T>(PhantomData<T>);
    impl<'de, T: Deserialize<'de>> Visitor<'de> for MapOnly<T> {
        type Value = T;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
            T::deserialize(de::value::MapAccessDeserializer::new(map))
        }
    }
    d.deserialize_map(MapOnly(PhantomData))
}

/// `T` read with [`object`], for serde_path_to_error at the top level.
struct Object<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Object<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        object(d).map(Object)
    }
}

/// The contract's types; nothing is kept but the token. The check on every
/// call is [`one_pass`], which must give the same verdicts; this derived
/// one names the path to a refused field.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)] // read by serde only: the check is the point
struct Shape<'a> {
    #[serde(deserialize_with = "object")]
    user: User,
    #[serde(borrow)]
    caller: CallerText<'a>,
    callee: AnyString,
    #[serde(default, deserialize_with = "optional_object")]
    queue: Option<Queue>,
    #[serde(default)]
    user_data: AnyObject,
    #[serde(default)]
    call_data_call_id: Option<AnyString>,
}

fn optional_object<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Queue>, D::Error> {
    Option::<Object<Queue>>::deserialize(d).map(|o| o.map(|Object(q)| q))
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
    token: Option<Token>,
}

/// The agent's credential, the one string kept. Anything else is refused
/// naming its type only: serde's message quotes the value (`invalid type:
/// integer `5``), and the refusal goes to the 400 body and the log.
struct Token(String);

impl<'de> Deserialize<'de> for Token {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Token;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: de::Error>(self, token: &str) -> Result<Token, E> {
                Ok(Token(token.to_owned()))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Token, E> {
                Err(E::invalid_type(de::Unexpected::Other("a boolean"), &self))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Token, E> {
                Err(E::invalid_type(de::Unexpected::Other("a number"), &self))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Token, E> {
                Err(E::invalid_type(de::Unexpected::Other("a number"), &self))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Token, E> {
                Err(E::invalid_type(de::Unexpected::Other("a number"), &self))
            }
        }
        // `deserialize_str` would let serde_json write the refusal, value
        // included.
        d.deserialize_any(V)
    }
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
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = AnyString;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<AnyString, E> {
                Ok(AnyString)
            }
        }
        d.deserialize_str(V)
    }
}

/// The caller's string: borrowed from the text when it has no escape.
struct CallerText<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for CallerText<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = CallerText<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(CallerText(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(CallerText(Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(V(PhantomData))
    }
}

/// A JSON object of anything, checked and not kept.
#[derive(Default)]
struct AnyObject;

impl<'de> Deserialize<'de> for AnyObject {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = AnyObject;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<AnyObject, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(AnyObject)
            }
        }
        d.deserialize_map(V)
    }
}

/// An object with more keys than this is indexed by a hash map: a look-up
/// in the list of keys costs a comparison per key, so serializing an
/// object (a look-up per key) of thousands of keys (`userData` is the
/// caller's to fill) would cost their square.
const LISTED_KEYS: usize = 16;

/// A JSON object of the payload as templates see it, read in place: its
/// keys are indexed on the first look-up (one scan, values not parsed), a
/// value is parsed when a template reads it.
#[derive(Debug)]
struct JsonObject {
    doc: Arc<Doc>,
    /// Where this object is in the text; the top level's starts at 0.
    span: Range<usize>,
    /// This is `user`, whose `token` only some routes see.
    hides_token: bool,
    show_token: bool,
    /// Its keys and where their values are in the text, found on the
    /// first look-up (the top level's are the document's).
    index: OnceLock<Index>,
}

/// An object's keys: a list for the few keys of most objects, a map for
/// more than [`LISTED_KEYS`].
#[derive(Debug)]
enum Index {
    /// Each key and where its value is, in order, duplicates included: the
    /// last of duplicates wins, as JSON parsers read them, so it is
    /// searched from its end (a payload has no duplicates to pay for).
    Listed(Vec<(Key, Range<usize>)>),
    /// Each distinct key, in the order of its first occurrence, and the
    /// value of its last.
    Mapped {
        keys: Vec<Box<str>>,
        values: HashMap<Box<str>, Range<usize>>,
    },
}

impl Index {
    fn new(text: &str, entries: Vec<(Key, Range<usize>)>) -> Self {
        if entries.len() <= LISTED_KEYS {
            return Index::Listed(entries);
        }
        let mut keys = Vec::with_capacity(entries.len());
        let mut values = HashMap::with_capacity(entries.len());
        for (key, span) in entries {
            match values.entry(Box::<str>::from(key.text(text))) {
                Entry::Occupied(mut seen) => {
                    seen.insert(span);
                }
                Entry::Vacant(new) => {
                    keys.push(new.key().clone());
                    new.insert(span);
                }
            }
        }
        Index::Mapped { keys, values }
    }

    fn find(&self, text: &str, key: &str) -> Option<Range<usize>> {
        match self {
            Index::Listed(entries) => entries
                .iter()
                .rev()
                .find(|(k, _)| compared(k.text(text) == key))
                .map(|(_, span)| span.clone()),
            Index::Mapped { values, .. } => values.get(key).cloned(),
        }
    }

    /// Each distinct key, in the order of its first occurrence.
    fn keys<'a>(&'a self, text: &'a str) -> Vec<&'a str> {
        match self {
            Index::Listed(entries) => {
                let mut keys: Vec<&str> = Vec::with_capacity(entries.len());
                for key in entries.iter().map(|(k, _)| k.text(text)) {
                    if !keys.iter().any(|k| compared(*k == key)) {
                        keys.push(key);
                    }
                }
                keys
            }
            Index::Mapped { keys, .. } => keys.iter().map(|k| &**k).collect(),
        }
    }
}

/// Counts the key comparisons of a thread, for the test that shows their
/// number grows with the keys, not with their square.
#[cfg(test)]
fn compared(equal: bool) -> bool {
    COMPARISONS.with(|n| n.set(n.get() + 1));
    equal
}

#[cfg(not(test))]
#[inline(always)]
fn compared(equal: bool) -> bool {
    equal
}

#[cfg(test)]
thread_local! {
    static COMPARISONS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

impl JsonObject {
    fn hidden(&self, key: &str) -> bool {
        self.hides_token && !self.show_token && key == "token"
    }

    fn is_root(&self) -> bool {
        self.span.start == 0
    }

    fn index(&self) -> &Index {
        let index = if self.is_root() {
            &self.doc.root
        } else {
            &self.index
        };
        index.get_or_init(|| {
            let text = &self.doc.text;
            let entries = json_scan::entries(text, self.span.start).unwrap_or_default();
            Index::new(text, entries)
        })
    }

    fn value(self: &Arc<Self>, key: &str) -> Option<minijinja::Value> {
        if self.hidden(key) {
            return None;
        }
        let text = &self.doc.text;
        let span = self.index().find(text, key)?;
        let json = text.get(span.clone())?;
        if json.starts_with('{') {
            return Some(minijinja::Value::from_object(JsonObject {
                doc: Arc::clone(&self.doc),
                span,
                hides_token: self.is_root() && key == "user",
                show_token: self.show_token,
                index: OnceLock::new(),
            }));
        }
        Some(template_value(json).unwrap_or_default())
    }

    fn keys(&self) -> Vec<minijinja::Value> {
        self.index()
            .keys(&self.doc.text)
            .into_iter()
            .filter(|key| !self.hidden(key))
            .map(minijinja::Value::from)
            .collect()
    }
}

/// A JSON value's text (valid JSON) as templates see it: what a full
/// parse gives, the common scalars read without one; `None` where serde_json
/// cannot read it (a number beyond f64).
pub(crate) fn template_value(json: &str) -> Option<minijinja::Value> {
    scalar(json).or_else(|| {
        serde_json::from_str::<serde_json::Value>(json)
            .ok()
            .map(|v| minijinja::Value::from(minijinja::value::Serde(v)))
    })
}

/// The common values (strings, integers, booleans, null) read directly;
/// `None` for the rest (escaped strings, floats, arrays), which go through
/// a full parse.
fn scalar(json: &str) -> Option<minijinja::Value> {
    match json.as_bytes().first()? {
        b'"' => {
            let inner = json.strip_prefix('"')?.strip_suffix('"')?;
            (!inner.contains('\\')).then(|| minijinja::Value::from(inner))
        }
        b't' if json == "true" => Some(minijinja::Value::from(true)),
        b'f' if json == "false" => Some(minijinja::Value::from(false)),
        b'n' if json == "null" => Some(minijinja::Value::from(())),
        // serde_json reads `-0` as the float -0.0.
        _ if json == "-0" => None,
        _ => json.parse::<i64>().ok().map(minijinja::Value::from),
    }
}

impl minijinja::value::Object for JsonObject {
    fn get_value(self: &Arc<Self>, key: &minijinja::Value) -> Option<minijinja::Value> {
        self.value(key.as_str()?)
    }

    fn get_value_by_str(self: &Arc<Self>, key: &str) -> Option<minijinja::Value> {
        self.value(key)
    }

    fn enumerate(self: &Arc<Self>) -> minijinja::value::Enumerator {
        minijinja::value::Enumerator::Values(self.keys())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"{"user":{"userId":4,"fullName":"J \"B\"","token":"SECRET"},
        "caller":"06\u0031","callee":"1000","queue":{"id":2,"name":"trucks"},
        "userData":{"XIVO_SRCNUM":"1001","n":[1,{"a":true}]},"fu\u0074ure":{"x":1},"dup":1,"dup":2}"#;

    /// Reading in place gives what a full parse gives, field by field, with
    /// the token only where asked for.
    #[test]
    fn fields_read_in_place_match_a_full_parse() {
        let payload = parse_payload(SAMPLE.as_bytes()).unwrap();
        assert_eq!(payload.token().map(Secret::expose), Some("SECRET"));
        let mut full: serde_json::Value = serde_json::from_str(SAMPLE).unwrap();
        let ctx = payload.context();
        let as_json = |v: minijinja::Value| serde_json::to_value(&v).unwrap();
        assert_eq!(as_json(ctx.get_attr("caller").unwrap()), "061");
        assert_eq!(as_json(ctx.get_attr("future").unwrap()), full["future"]);
        assert_eq!(as_json(ctx.get_attr("dup").unwrap()), 2);
        assert_eq!(as_json(ctx.get_attr("userData").unwrap()), full["userData"]);
        let queue = ctx.get_attr("queue").unwrap();
        assert_eq!(as_json(queue.get_attr("name").unwrap()), "trucks");
        assert!(ctx.get_attr("missing").unwrap().is_undefined());
        let user = ctx.get_attr("user").unwrap();
        assert!(user.get_attr("token").unwrap().is_undefined());
        assert_eq!(
            payload
                .context_with_token()
                .get_attr("user")
                .unwrap()
                .get_attr("token")
                .unwrap()
                .as_str(),
            Some("SECRET")
        );
        full["user"].as_object_mut().unwrap().remove("token");
        assert_eq!(as_json(user), full["user"]);
        assert_eq!(serde_json::to_value(&payload).unwrap(), full);
        assert_eq!(as_json(ctx), full);
    }

    /// Found by fuzz/payload: serde skips an untyped field without reading
    /// its number, so a number no f64 holds passes the check; read in place
    /// it is undefined, and the rest of the payload reads as usual.
    /// The caller kept at parse time is the one templates read: in place
    /// when its string has no escape, decoded when it has.
    #[test]
    fn the_caller_is_the_one_templates_read() {
        for (json, caller) in [
            (r#""06 12 34""#, "06 12 34"),
            (r#""06\u0031\"x""#, "061\"x"),
            (r#""""#, ""),
            (r#""+33 é 6""#, "+33 é 6"),
        ] {
            let text =
                format!(r#"{{"user":{{"userId":1}},"callee":"1","caller":{json},"z":"06"}}"#);
            let payload = parse_payload(text.as_bytes()).unwrap();
            let read = payload.context().get_attr("caller").unwrap();
            assert_eq!((payload.caller(), read.as_str()), (caller, Some(caller)));
        }
    }

    #[test]
    fn a_number_out_of_range_reads_as_undefined() {
        let body =
            br#"{"user":{"userId":7},"callee":"1","caller":"2","userData":{"XI":1e400,"n":"3"}}"#;
        let payload = parse_payload(body).unwrap();
        let data = payload.context().get_attr("userData").unwrap();
        assert!(data.get_attr("XI").unwrap().is_undefined());
        assert_eq!(data.get_attr("n").unwrap().as_str(), Some("3"));
        assert!(serde_json::to_value(payload.context()).is_ok());
    }

    /// The fuzzer's inputs as found (tests/fixtures/fuzz): blanks before the
    /// object once hid every field; a number out of range reads as far as a
    /// full parse can.
    #[test]
    fn fuzz_findings_stay_fixed() {
        let leading = include_bytes!("../tests/fixtures/fuzz/payload-leading-blank.json");
        let payload = parse_payload(leading).unwrap();
        let full: serde_json::Value = serde_json::from_slice(leading).unwrap();
        assert_eq!(serde_json::to_value(payload.context()).unwrap(), full);
        let range = include_bytes!("../tests/fixtures/fuzz/payload-number-out-of-range.json");
        let payload = parse_payload(range).unwrap();
        assert!(serde_json::from_slice::<serde_json::Value>(range).is_err());
        let ctx = payload.context();
        assert_eq!(ctx.get_attr("caller").unwrap().as_str(), Some("060234567("));
        assert!(ctx
            .get_attr("userDatq")
            .unwrap()
            .get_attr("XI")
            .unwrap()
            .is_undefined());
    }

    #[test]
    fn scalars_read_directly_are_what_a_full_parse_gives() {
        for json in [
            r#""plain""#,
            r#""""#,
            r#""a\"b""#,
            r#""\u00e9""#,
            "true",
            "false",
            "null",
            "0",
            "-0",
            "-42",
            "12345678901234",
            "1.5",
            "1e3",
            "[1]",
            "99999999999999999999",
        ] {
            let full = minijinja::Value::from(minijinja::value::Serde(
                serde_json::from_str::<serde_json::Value>(json).unwrap(),
            ));
            if let Some(direct) = scalar(json) {
                assert_eq!(direct, full, "{json}");
                assert_eq!(direct.kind(), full.kind(), "{json}");
            }
        }
        assert!(scalar(r#""a\"b""#).is_none(), "escapes take the full parse");
        assert!(scalar("1.5").is_none());
        // Found by fuzz/payload: `-0` is the float -0.0 to serde_json.
        assert!(scalar("-0").is_none());
    }

    #[test]
    fn structs_are_read_from_objects_only() {
        for body in [
            r#"[{"userId":1},"1","2"]"#,
            r#"{"user":[1],"caller":"1","callee":"2"}"#,
            r#"{"user":{"userId":1},"caller":"1","callee":"2","queue":[2]}"#,
        ] {
            let err = parse_payload(body.as_bytes()).unwrap_err();
            assert!(
                err.contains("invalid type: sequence, expected a JSON object"),
                "{err}"
            );
        }
        assert!(
            parse_payload(br#"{"user":{"userId":1},"caller":"1","callee":"2","queue":null}"#)
                .is_ok()
        );
        assert!(parse_payload(br#"{"user":{"userId":1},"caller":"1","callee":"2"} x"#).is_err());
    }

    /// A payload with thousands of keys reads as a full parse does (the
    /// last of duplicates wins, keys in the order of their first
    /// occurrence), and serializing it compares keys a bounded number of
    /// times per key, not once per pair of keys.
    #[test]
    fn many_keys_cost_comparisons_in_proportion() {
        let keys = 8_500;
        let mut data = String::from("{");
        for i in 0..keys {
            data.push_str(&format!("\"k{i}\":\"v{i}\","));
        }
        data.push_str("\"k7\":\"again\",\"k\\u0038\":{\"x\":1},\"small\":{\"a\":1,\"a\":2}}");
        let body = format!(
            r#"{{"user":{{"userId":1,"token":"T"}},"caller":"1","callee":"2","userData":{data}}}"#
        );
        let full: serde_json::Value = serde_json::from_str(&body).unwrap();
        let payload = parse_payload(body.as_bytes()).unwrap();
        COMPARISONS.with(|n| n.set(0));
        let ctx = payload.context();
        let data = ctx.get_attr("userData").unwrap();
        assert_eq!(serde_json::to_value(&data).unwrap(), full["userData"]);
        assert_eq!(data.get_attr("k7").unwrap().as_str(), Some("again"));
        assert_eq!(
            data.get_attr("small")
                .unwrap()
                .get_attr("a")
                .unwrap()
                .as_i64(),
            Some(2)
        );
        let order: Vec<String> = data
            .try_iter()
            .unwrap()
            .take(3)
            .map(|k| k.to_string())
            .collect();
        assert_eq!(order, ["k0", "k1", "k2"]);
        let compared = COMPARISONS.with(std::cell::Cell::get);
        assert!(
            compared < 100 * keys,
            "{compared} key comparisons for {keys} keys"
        );
    }

    /// A token that is not a string is refused by its type: the value is
    /// a credential, and the refusal reaches the 400 body and the log.
    #[test]
    fn a_token_of_another_type_is_named_not_quoted() {
        for (token, kind) in [
            ("123456789", "a number"),
            ("-123456789", "a number"),
            ("1234.5678", "a number"),
            ("true", "a boolean"),
            (r#"["s3cr3t"]"#, "sequence"),
            (r#"{"k":"s3cr3t"}"#, "map"),
        ] {
            let body =
                format!(r#"{{"user":{{"userId":1,"token":{token}}},"caller":"1","callee":"2"}}"#);
            let err = parse_payload(body.as_bytes()).unwrap_err();
            assert!(err.starts_with("user.token: invalid type"), "{err}");
            assert!(err.contains(kind), "{err}");
            for secret in ["123456789", "1234.5678", "true", "s3cr3t"] {
                assert!(!err.contains(secret), "{err}");
            }
        }
    }

    /// A contract field given twice is refused; other duplicates are read
    /// last-wins, as JSON parsers read them.
    #[test]
    fn duplicate_keys_are_judged_as_serde_judges_them() {
        let err = parse_payload(br#"{"user":{"userId":1},"caller":"1","caller":"2","callee":"3"}"#)
            .unwrap_err();
        assert_eq!(err, "duplicate field `caller`");
        let err = parse_payload(br#"{"user":{"userId":1,"userId":2},"caller":"1","callee":"3"}"#)
            .unwrap_err();
        assert_eq!(err, "user: duplicate field `userId`");
        let ok = parse_payload(br#"{"user":{"userId":1},"caller":"1","callee":"3","x":1,"x":2}"#)
            .unwrap();
        assert_eq!(ok.context().get_attr("x").unwrap().as_i64(), Some(2));
    }
}
