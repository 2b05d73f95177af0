//! The payload's check and its top level's index, in one pass of serde.
//!
//! Templates read top-level fields (`caller`, `queue.name`) on every call.
//! Finding where each value is by scanning the text again after the check
//! cost ≈4.4k instructions, 5% of an adapted call (docs/performance.md),
//! while serde had just walked every entry. A key serde reads without
//! escapes is a slice of the text, so where it is tells where its value
//! starts (past the colon) and where the value before it ended (before the
//! comma); the last one ends before the closing brace. A key with escapes
//! is decoded aside and its place is lost: that payload's index is then
//! found by the scan on first look-up, as a nested object's always is.
//!
//! The fields are checked as `Shape` checks them, with the same types, the
//! same required fields and duplicates refused as serde's derive refuses
//! them; `Shape` stays the reference that explains a refusal with the path
//! to its field, and a test holds both to the same verdicts.

use std::fmt;
use std::ops::Range;

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, Visitor};

use super::{AnyObject, AnyString, CallerText, Object, Queue, Token, User};
use crate::json_scan::{blank, blank_before, Key, TextKey};

/// What the check keeps of a payload that passed it.
pub(super) struct TopLevel<'a> {
    pub(super) caller: CallerText<'a>,
    pub(super) token: Option<Token>,
    /// Each top-level key and its value's span, in order, duplicates
    /// included; `None` when a key's place is unknown.
    pub(super) entries: Option<Vec<(Key, Range<usize>)>>,
}

/// Checks `text` against the contract and indexes its top level.
pub(super) fn read(text: &str) -> Result<TopLevel<'_>, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_str(text);
    let (mut top, places) = de.deserialize_map(TopVisitor { text })?;
    de.end()?;
    top.entries = places.finish();
    Ok(top)
}

/// Reads the top-level object, field by field.
struct TopVisitor<'a> {
    text: &'a str,
}

impl<'de> Visitor<'de> for TopVisitor<'de> {
    type Value = (TopLevel<'de>, Places<'de>);

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut places = Places {
            text: self.text,
            found: Some(Vec::with_capacity(8)),
            open: None,
        };
        let mut user: Option<User> = None;
        let mut caller: Option<CallerText<'de>> = None;
        // Whether callee, queue, userData and callDataCallId were given.
        let mut seen = [false; 4];
        while let Some(key) = map.next_key::<TextKey<'de>>()? {
            places.key(&key);
            match key.as_str() {
                "user" => {
                    once(user.is_some(), "user")?;
                    user = Some(map.next_value::<Object<User>>()?.0);
                }
                "caller" => {
                    once(caller.is_some(), "caller")?;
                    caller = Some(map.next_value::<CallerText<'de>>()?);
                }
                "callee" => check::<AnyString, _>(&mut map, &mut seen[0], "callee")?,
                "queue" => check::<Option<Object<Queue>>, _>(&mut map, &mut seen[1], "queue")?,
                "userData" => check::<AnyObject, _>(&mut map, &mut seen[2], "userData")?,
                "callDataCallId" => {
                    check::<Option<AnyString>, _>(&mut map, &mut seen[3], "callDataCallId")?;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let user = user.ok_or_else(|| de::Error::missing_field("user"))?;
        let caller = caller.ok_or_else(|| de::Error::missing_field("caller"))?;
        if !seen[0] {
            return Err(de::Error::missing_field("callee"));
        }
        let top = TopLevel {
            caller,
            token: user.token,
            entries: None,
        };
        Ok((top, places))
    }
}

/// Checks a field's value as `T`, which nothing keeps.
fn check<'de, T: Deserialize<'de>, A: MapAccess<'de>>(
    map: &mut A,
    seen: &mut bool,
    field: &'static str,
) -> Result<(), A::Error> {
    once(*seen, field)?;
    *seen = true;
    map.next_value::<T>().map(drop)
}

/// A field given twice is refused before its second value is read, as
/// serde's derive does.
fn once<E: de::Error>(seen: bool, field: &'static str) -> Result<(), E> {
    if seen {
        Err(E::duplicate_field(field))
    } else {
        Ok(())
    }
}

/// Where the top level's entries are, from where serde found their keys.
struct Places<'a> {
    text: &'a str,
    found: Option<Vec<(Key, Range<usize>)>>,
    /// The last key read and where its value starts.
    open: Option<(Range<usize>, usize)>,
}

impl Places<'_> {
    /// A key was read: the value before it ends before the comma that
    /// precedes it, its own starts past the colon that follows it. Text
    /// that is not what serde just read (which would be a bug) costs only
    /// the index.
    fn key(&mut self, key: &TextKey<'_>) {
        let placed = match key {
            TextKey::InText(key) => self.place(key),
            TextKey::Decoded(_) => None,
        };
        let Some((quote, next)) = placed else {
            self.found = None;
            return;
        };
        if let Some((key, start)) = self.open.take() {
            self.close(key, start, quote, b',');
        }
        self.open = Some(next);
    }

    /// Where the key's opening quote is, its span, and where its value
    /// starts.
    fn place(&self, key: &str) -> Option<(usize, (Range<usize>, usize))> {
        let b = self.text.as_bytes();
        let at = (key.as_ptr() as usize).checked_sub(self.text.as_ptr() as usize)?;
        let span = at..at.checked_add(key.len())?;
        let quote = at.checked_sub(1)?;
        if b.get(quote) != Some(&b'"') || b.get(span.end) != Some(&b'"') {
            return None;
        }
        let colon = blank(b, span.end + 1);
        if b.get(colon) != Some(&b':') {
            return None;
        }
        Some((quote, (span, blank(b, colon + 1))))
    }

    /// Records the open entry, whose value ends before `delimiter`, the
    /// last character but blanks before `before`.
    fn close(&mut self, key: Range<usize>, start: usize, before: usize, delimiter: u8) {
        let b = self.text.as_bytes();
        let end = blank_before(b, before)
            .filter(|&d| b.get(d) == Some(&delimiter))
            .and_then(|d| blank_before(b, d));
        match (end, self.found.as_mut()) {
            (Some(end), Some(found)) => found.push((Key::At(key), start..end + 1)),
            _ => self.found = None,
        }
    }

    /// The entries, the last one ending before the closing brace, which is
    /// the text's last character but blanks once serde has read it whole.
    fn finish(mut self) -> Option<Vec<(Key, Range<usize>)>> {
        if let Some((key, start)) = self.open.take() {
            self.close(key, start, self.text.len(), b'}');
        }
        self.found
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::SAMPLE_PAYLOADS;
    use crate::json_scan;
    use crate::payload::{object, Shape};

    /// The derived check's verdict: `Ok` or its message.
    fn by_shape(text: &str) -> Result<(), String> {
        let mut de = serde_json::Deserializer::from_str(text);
        object::<_, Shape<'_>>(&mut de)
            .and_then(|_| de.end())
            .map_err(|e| e.to_string())
    }

    fn by_one_pass(text: &str) -> Result<(), String> {
        read(text).map(|_| ()).map_err(|e| e.to_string())
    }

    /// Payloads around the contract: each sample with each top-level field
    /// absent, doubled, spelled with an escape, or of each JSON type.
    fn variants() -> Vec<String> {
        let values = [
            "null",
            "1",
            "-1",
            "1.5",
            "1e400",
            r#""s""#,
            r#""""#,
            "true",
            "[]",
            "[1]",
            "{}",
            r#"{"userId":1}"#,
            r#"{"userId":"1"}"#,
            r#"{"userId":1,"token":"T"}"#,
            r#"{"userId":1,"token":5}"#,
            r#"{"userId":1,"userId":2}"#,
            r#"{"id":2,"name":"trucks"}"#,
            r#"{"id":"2"}"#,
            r#"{"name":null}"#,
            r#"{"K":"v","K":1}"#,
        ];
        let fields = [
            "user",
            "caller",
            "callee",
            "queue",
            "userData",
            "callDataCallId",
            "other",
        ];
        let mut out = Vec::new();
        for (_, sample) in SAMPLE_PAYLOADS {
            out.push(sample.to_owned());
            for field in fields {
                let quoted = format!("\"{field}\":");
                // Absent: the sample rebuilt without it.
                let mut doc: serde_json::Map<String, serde_json::Value> =
                    serde_json::from_str(sample).unwrap();
                doc.remove(field);
                out.push(serde_json::to_string(&doc).unwrap());
                for value in values {
                    // Replaced (or added), and doubled ahead of the rest.
                    let mut doc = doc.clone();
                    doc.insert(
                        field.to_owned(),
                        serde_json::from_str(value).unwrap_or_default(),
                    );
                    let text = serde_json::to_string(&doc).unwrap();
                    if value != "1e400" {
                        out.push(text.clone());
                    }
                    out.push(text.replacen('{', &format!("{{{quoted}{value},"), 1));
                    out.push(text.replacen('{', &format!("{{{quoted}{value}, "), 1));
                }
                // The key spelled with an escape, as serde decodes it.
                let escaped = format!("\"\\u{:04x}{}\":", field.as_bytes()[0], &field[1..]);
                out.push(sample.replacen(&quoted, &escaped, 1));
            }
        }
        for text in [
            "",
            " ",
            "[]",
            "1",
            r#""x""#,
            "null",
            "{}",
            "{",
            r#"{"user":{"userId":1},"caller":"1","callee":"2"}"#,
            " \n{ \"user\" : { \"userId\" : 1 } ,\t\"caller\":\"1\" ,\"callee\" :\"2\" }\r\n",
            r#"{"user":{"userId":1},"caller":"1","callee":"2"} x"#,
            r#"{"user":{"userId":1},"caller":"1","callee":"2",}"#,
            r#"{"user":{"userId":1},"caller":"1","callee":"2""#,
            r#"{"user":{"userId":1},"caller":"1","callee":2}"#,
            r#"{"user":{"userId":1},"caller":"\u0030\"1","callee":"2"}"#,
        ] {
            out.push(text.to_owned());
        }
        out
    }

    /// The check on every call refuses exactly what the derived one does,
    /// with the same message.
    #[test]
    fn verdicts_are_the_derived_checks() {
        let variants = variants();
        assert!(variants.len() > 1_000, "{}", variants.len());
        let mut refused = 0;
        for text in &variants {
            let verdict = by_one_pass(text);
            assert_eq!(verdict, by_shape(text), "{text}");
            refused += usize::from(verdict.is_err());
        }
        // Both kinds are well represented.
        assert!(refused > 300 && refused < variants.len() - 300, "{refused}");
    }

    /// Random edits of the samples (a byte removed, doubled, or replaced by
    /// one of JSON's own): hostile or broken text gets the same verdict and
    /// message from both checks, and what passes is placed as the scan
    /// places it.
    #[test]
    fn random_edits_get_the_derived_checks_verdict() {
        let mut rng = crate::test_rng::Lcg::new(7);
        let mut next = |n: usize| rng.below(n);
        let alphabet = b"{}[]:,\" 0-1e.tfnu\\a";
        let (mut passed, mut refused) = (0, 0);
        for _ in 0..20_000 {
            let (_, sample) = SAMPLE_PAYLOADS[next(SAMPLE_PAYLOADS.len())];
            let mut bytes = sample.as_bytes().to_vec();
            for _ in 0..1 + next(3) {
                let at = next(bytes.len());
                match next(3) {
                    0 => {
                        bytes.remove(at);
                    }
                    1 => bytes.insert(at, bytes[at]),
                    _ => bytes[at] = alphabet[next(alphabet.len())],
                }
            }
            let Ok(text) = std::str::from_utf8(&bytes) else {
                continue;
            };
            let verdict = by_one_pass(text);
            assert_eq!(verdict, by_shape(text), "{text}");
            match read(text) {
                Ok(top) => {
                    passed += 1;
                    if let Some(entries) = top.entries {
                        assert_eq!(Some(entries), json_scan::entries(text, 0), "{text}");
                    }
                }
                Err(_) => refused += 1,
            }
        }
        assert!(passed > 1_000 && refused > 1_000, "{passed} {refused}");
    }

    /// Where the pass places the top level's entries is where a scan of
    /// the text finds them; a key with an escape leaves them to the scan.
    #[test]
    fn entries_are_where_the_scan_finds_them() {
        let (mut placed, mut read_ok) = (0, 0);
        for text in variants() {
            let Ok(top) = read(&text) else { continue };
            read_ok += 1;
            let scanned = json_scan::entries(&text, 0).unwrap();
            match top.entries {
                Some(entries) => {
                    assert_eq!(entries, scanned, "{text}");
                    placed += 1;
                }
                None => assert!(
                    scanned.iter().any(|(k, _)| matches!(k, Key::Decoded(_))),
                    "{text}"
                ),
            }
        }
        // Only the samples with an escaped key are left to the scan.
        assert!(
            placed > 200 && read_ok - placed < 20,
            "{placed} of {read_ok}"
        );
    }
}
