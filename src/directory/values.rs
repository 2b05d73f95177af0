//! A record's values as the index keeps them: the values its reply's
//! templates read, in the order of the backend's `extract`, packed into
//! bytes, so a million records are a few arenas of bytes rather than a
//! million allocations of template values. A call decodes the one record
//! it found.
//!
//! Each value is a tag, then (but for an undefined one) its length as a
//! LEB128 number and its bytes: a string as its UTF-8 text, any other
//! JSON value (a number, a boolean, an object…) as its JSON text.

use minijinja::value::Value;

/// The record had no such value (the template sees it undefined).
const UNDEFINED: u8 = 0;
/// A string, as its UTF-8 text.
const STRING: u8 = 1;
/// Any other JSON value, as its JSON text.
const JSON: u8 = 2;

/// Appends a record's values, as `extract`'s paths found them, to `out`.
pub(super) fn encode<'a>(
    found: impl Iterator<Item = Option<&'a serde_json::Value>>,
    out: &mut Vec<u8>,
) {
    for value in found {
        match value {
            None => out.push(UNDEFINED),
            Some(serde_json::Value::String(s)) => {
                out.push(STRING);
                bytes(s.as_bytes(), out);
            }
            Some(v) => {
                out.push(JSON);
                bytes(v.to_string().as_bytes(), out);
            }
        }
    }
}

fn bytes(b: &[u8], out: &mut Vec<u8>) {
    let mut n = b.len();
    loop {
        let low = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(low);
            break;
        }
        out.push(low | 0x80);
    }
    out.extend_from_slice(b);
}

/// The values of one record, in the order they were encoded. Bytes that do
/// not decode (a damaged snapshot) end the list: what follows is undefined.
pub(super) fn decode(mut b: &[u8]) -> Vec<Value> {
    let mut out = Vec::new();
    while let Some((&tag, rest)) = b.split_first() {
        if tag == UNDEFINED {
            out.push(Value::UNDEFINED);
            b = rest;
            continue;
        }
        let Some((text, rest)) = length(rest).and_then(|(n, rest)| {
            let text = rest.get(..n)?;
            Some((text, rest.get(n..)?))
        }) else {
            break;
        };
        let value = match tag {
            STRING => std::str::from_utf8(text).ok().map(Value::from),
            JSON => serde_json::from_slice::<serde_json::Value>(text)
                .ok()
                .map(|v| Value::from(minijinja::value::Serde(v))),
            _ => None,
        };
        let Some(value) = value else { break };
        out.push(value);
        b = rest;
    }
    out
}

/// A LEB128 length of at most 32 bits, and what follows it.
fn length(b: &[u8]) -> Option<(usize, &[u8])> {
    let mut n: usize = 0;
    for (i, &byte) in b.iter().enumerate().take(5) {
        n |= usize::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((n, &b[i + 1..]));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn values_come_back_as_they_were_found() {
        let long = "é".repeat(200);
        let found = [
            Some(json!("Jeanne O'Neil")),
            None,
            Some(json!(12345)),
            Some(json!(long)),
            Some(json!({"a": [1, true]})),
            Some(json!(null)),
        ];
        let mut out = Vec::new();
        encode(found.iter().map(Option::as_ref), &mut out);
        let back = decode(&out);
        assert_eq!(back.len(), 6);
        assert_eq!(back[0].as_str(), Some("Jeanne O'Neil"));
        assert!(back[1].is_undefined());
        assert_eq!(back[2], Value::from(12345));
        assert_eq!(back[3].as_str(), Some(long.as_str()));
        assert_eq!(back[4].get_attr("a").unwrap().len(), Some(2));
        assert!(back[5].is_none());
    }

    #[test]
    fn damaged_bytes_end_the_list_without_a_panic() {
        let mut out = Vec::new();
        encode(
            [Some(&json!("abc")), Some(&json!("def"))].into_iter(),
            &mut out,
        );
        for cut in 0..out.len() {
            let back = decode(&out[..cut]);
            assert!(back.len() <= 1);
        }
        for junk in [
            &[9u8, 1, 2][..],
            &[1, 0xff, 0xff, 0xff, 0xff, 0xff],
            &[1, 2, 0xc3],
        ] {
            assert!(decode(junk).is_empty());
        }
    }
}
