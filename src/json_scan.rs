//! Finding an object's entries in JSON text that serde has already checked,
//! by skipping over values instead of parsing them.
//!
//! Templates read two or three fields of a payload; indexing an object with
//! serde (every value walked through its grammar, every key copied) cost
//! more than checking the whole payload. Text that is known to be valid
//! JSON only needs its strings and brackets matched to find where each value
//! starts and ends. The input must be valid JSON: on
//! anything else the result is some spans or none, never a panic.

use std::fmt;
use std::ops::Range;

use serde::de::{self, Deserialize, Deserializer, Visitor};

/// An object key: where it is in the text when it has no escapes (as good
/// as every key), or its decoded text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    /// The key's characters, between its quotes.
    At(Range<usize>),
    /// A key with escapes, decoded.
    Decoded(Box<str>),
}

impl Key {
    /// The key's text.
    pub fn text<'a>(&'a self, json: &'a str) -> &'a str {
        match self {
            Key::At(span) => json.get(span.clone()).unwrap_or_default(),
            Key::Decoded(text) => text,
        }
    }
}

/// An object key as serde reads it: a slice of the text when it has no
/// escapes (as good as every key), else decoded. Where a key is in the text
/// tells where its value is.
pub enum TextKey<'a> {
    /// The key's characters, between its quotes, in the text read.
    InText(&'a str),
    /// A key with escapes, decoded.
    Decoded(String),
}

impl TextKey<'_> {
    /// The key's text.
    pub fn as_str(&self) -> &str {
        match self {
            TextKey::InText(key) => key,
            TextKey::Decoded(key) => key,
        }
    }
}

impl<'de> Deserialize<'de> for TextKey<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = TextKey<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a key")
            }
            fn visit_borrowed_str<E: de::Error>(self, key: &'de str) -> Result<Self::Value, E> {
                Ok(TextKey::InText(key))
            }
            fn visit_str<E: de::Error>(self, key: &str) -> Result<Self::Value, E> {
                Ok(TextKey::Decoded(key.to_owned()))
            }
        }
        d.deserialize_str(V)
    }
}

/// Each key of the object that starts at `start` (blanks, then `{`) with
/// the span of its value, in order, duplicates included; `None` if the text
/// there is not an object.
pub fn entries(json: &str, start: usize) -> Option<Vec<(Key, Range<usize>)>> {
    let b = json.as_bytes();
    let start = blank(b, start);
    let mut found = Vec::with_capacity(8);
    if b.get(start) != Some(&b'{') {
        return None;
    }
    let mut i = blank(b, start + 1);
    if b.get(i) == Some(&b'}') {
        return Some(found);
    }
    loop {
        let key_end = string_end(b, i)?;
        let inner = i + 1..key_end - 1;
        let raw = json.get(inner.clone())?;
        let key = if raw.contains('\\') {
            Key::Decoded(
                serde_json::from_str::<String>(json.get(i..key_end)?)
                    .ok()?
                    .into(),
            )
        } else {
            Key::At(inner)
        };
        i = blank(b, key_end);
        if b.get(i) != Some(&b':') {
            return None;
        }
        let value_start = blank(b, i + 1);
        let value_end = value_end(b, value_start)?;
        found.push((key, value_start..value_end));
        i = blank(b, value_end);
        match b.get(i)? {
            b',' => i = blank(b, i + 1),
            b'}' => return Some(found),
            _ => return None,
        }
    }
}

/// The first position at or after `i` that is not JSON whitespace.
pub fn blank(b: &[u8], mut i: usize) -> usize {
    while matches!(b.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        i += 1;
    }
    i
}

/// The last position before `i` that is not JSON whitespace, if any.
pub fn blank_before(b: &[u8], i: usize) -> Option<usize> {
    b.get(..i)?
        .iter()
        .rposition(|c| !matches!(c, b' ' | b'\t' | b'\n' | b'\r'))
}

/// Just past the closing quote of the string whose opening quote is at `i`.
fn string_end(b: &[u8], i: usize) -> Option<usize> {
    if b.get(i) != Some(&b'"') {
        return None;
    }
    let mut j = i + 1;
    loop {
        let k = j + memchr::memchr2(b'"', b'\\', b.get(j..)?)?;
        if b.get(k) == Some(&b'\\') {
            j = k + 2;
        } else {
            return Some(k + 1);
        }
    }
}

/// Just past the end of the value that starts at `i`.
fn value_end(b: &[u8], i: usize) -> Option<usize> {
    match b.get(i)? {
        b'"' => string_end(b, i),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut j = i;
            loop {
                match b.get(j)? {
                    b'"' => {
                        j = string_end(b, j)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth = depth.checked_sub(1)?;
                        if depth == 0 {
                            return Some(j + 1);
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
        }
        _ => {
            let mut j = i;
            while !matches!(
                b.get(j),
                None | Some(b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r')
            ) {
                j += 1;
            }
            (j > i).then_some(j)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::de::{Deserializer, MapAccess, Visitor};
    use serde_json::value::RawValue;

    /// What serde finds: each key (decoded) and its raw value's span.
    fn by_serde(json: &str) -> Vec<(String, Range<usize>)> {
        struct Entries;
        impl<'de> Visitor<'de> for Entries {
            type Value = Vec<(String, &'de RawValue)>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut found = Vec::new();
                while let Some(key) = map.next_key::<String>()? {
                    found.push((key, map.next_value::<&'de RawValue>()?));
                }
                Ok(found)
            }
        }
        let base = json.as_ptr() as usize;
        let mut de = serde_json::Deserializer::from_str(json);
        de.deserialize_map(Entries)
            .unwrap()
            .into_iter()
            .map(|(k, raw)| {
                let start = raw.get().as_ptr() as usize - base;
                (k, start..start + raw.get().len())
            })
            .collect()
    }

    #[test]
    fn spans_are_the_ones_serde_finds() {
        for json in [
            "{}",
            " { } ",
            "\n\r\t {\"a\":1}\n",
            r#"{"a":1}"#,
            "{ \"a\" :\n 1 ,\t\"b\" : [ ] }",
            r#"{"s":"x\"}{[","t":"\\","u":"\\\"","e":""}"#,
            r#"{"o":{"p":[1,{"q":"]}"}],"r":{}},"n":-1.5e3,"z":null,"f":false}"#,
            r#"{"fu\u0074ure":{"x":1},"dup":1,"dup":2,"\"q\"":"é😀"}"#,
            r#"{"deep":[[[[{"a":[[]]}]]]],"last":true}"#,
        ] {
            let ours: Vec<(String, Range<usize>)> = entries(json, 0)
                .unwrap()
                .into_iter()
                .map(|(k, span)| (k.text(json).to_owned(), span))
                .collect();
            assert_eq!(ours, by_serde(json), "{json}");
        }
    }

    #[test]
    fn invalid_text_gives_no_panic() {
        for json in [
            "",
            "{",
            "{\"a\"",
            "{\"a\":",
            "{\"a\":1",
            "{\"a\" 1}",
            "{\"a\":1,}",
            "{1:2}",
            "[1]",
            "{\"a\":\"\\",
            "{\"a\":]}",
            "{\"a\":}",
        ] {
            let _ = entries(json, 0);
        }
        assert_eq!(entries("[1]", 0), None);
        assert_eq!(entries("{\"a\":]}", 0), None);
    }
}
