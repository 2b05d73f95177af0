//! TOML text into the raw structs, reporting every structural error (an
//! unknown key, a wrong type, a missing field), not only the first. serde
//! stops at the first, so each faulty key is taken out of the document and
//! the rest read again; the values taken out keep their defaults, and
//! whatever validation later says about them (or about the tables that held
//! them) is dropped as a consequence rather than a cause.

use super::diag::{suggest, Diagnostics};
use super::raw::RawConfig;

/// Most structural errors reported in one file.
const MAX_ERRORS: usize = 50;

/// A structural error: key path, span in the text read, message.
type Fault = (String, Option<std::ops::Range<usize>>, String);

/// The raw config with faulty keys taken out, and those keys; `None` when
/// nothing usable remains (a TOML syntax error).
pub(super) fn read(source: &str, diags: &mut Diagnostics<'_>) -> Option<(RawConfig, Vec<String>)> {
    let (key, span, message) = match deserialize(source) {
        Ok(raw) => return Some((raw, Vec::new())),
        Err(fault) => fault,
    };
    let first = diags.at_span(&key, span, explain(&key, &message));
    diags.errors.push(first);
    let mut doc: toml::Table = source.parse().ok()?;
    let mut removed = vec![key];
    while removed.len() < MAX_ERRORS {
        let last = removed.last()?;
        if last.is_empty() || !remove(&mut doc, last) {
            return None;
        }
        let text = toml::to_string(&doc).ok()?;
        match deserialize(&text) {
            Ok(raw) => return Some((raw, removed)),
            Err((key, _, message)) => {
                if removed.contains(&key) {
                    return None;
                }
                // A table missing the key just taken out is no news.
                if !removed.iter().any(|r| related(&key, r)) {
                    // Placed by key: spans refer to the rewritten text.
                    diags.error(&key, explain(&key, &message));
                }
                removed.push(key);
            }
        }
    }
    None
}

/// Whether diagnostic key `a` is about `b`, a key taken out: the same key,
/// inside it, or a table holding it.
pub(super) fn related(a: &str, b: &str) -> bool {
    let inside =
        |x: &str, y: &str| x == y || x.strip_prefix(y).is_some_and(|r| r.starts_with(['.', '[']));
    a.is_empty() || inside(a, b) || inside(b, a)
}

/// Deserializes with the key path of any error and the TOML span.
fn deserialize(source: &str) -> Result<RawConfig, Fault> {
    let de = toml::Deserializer::parse(source)
        .map_err(|e| (String::new(), e.span(), e.message().to_owned()))?;
    serde_path_to_error::deserialize(de).map_err(|e| {
        let key = e.path().to_string();
        let key = if key == "." { String::new() } else { key };
        let inner = e.into_inner();
        (key, inner.span(), inner.message().to_owned())
    })
}

/// serde's message, with "did you mean" for a misspelt key or variant:
/// "unknown field `allow_origin`, expected one of `allow_origins`, ...";
/// a value of the wrong type said in the config's words, not Rust's.
fn explain(key: &str, message: &str) -> String {
    let Some((head, expected)) = message.split_once(", expected ") else {
        return message.to_owned();
    };
    for prefix in ["invalid type: ", "invalid value: "] {
        if let Some(found) = head.strip_prefix(prefix) {
            return format!(
                "expected {}, not {}",
                wanted(key, expected),
                found_words(found)
            );
        }
    }
    let Some(name) = ["unknown field `", "unknown variant `"]
        .iter()
        .find_map(|p| head.strip_prefix(p))
        .and_then(|rest| rest.strip_suffix('`'))
    else {
        return message.to_owned();
    };
    let known = expected.split('`').skip(1).step_by(2);
    let hint = suggest(name, known).replace('"', "`");
    format!("{head}{hint}, expected {expected}")
}

/// Takes `key` (`routes[1].open.url`) out of the document; an array item's
/// faulty key takes out the whole array key, so later indices do not move.
fn remove(doc: &mut toml::Table, key: &str) -> bool {
    let segments: Vec<&str> = key.split('.').filter(|s| !s.is_empty()).collect();
    let Some((last, path)) = segments.split_last() else {
        return false;
    };
    let mut table = doc;
    for segment in path {
        let (name, index) = match segment.split_once('[') {
            Some((name, rest)) => (name, rest.trim_end_matches(']').parse::<usize>().ok()),
            None => (*segment, None),
        };
        let value = match table.get_mut(name) {
            Some(v) => v,
            None => return false,
        };
        let value = match index {
            Some(i) => match value.as_array_mut().and_then(|a| a.get_mut(i)) {
                Some(v) => v,
                None => return false,
            },
            None => value,
        };
        table = match value.as_table_mut() {
            Some(t) => t,
            None => return false,
        };
    }
    let name = last.split_once('[').map_or(*last, |(name, _)| name);
    table.remove(name).is_some()
}

/// What serde expected (`u64`, `a boolean`), as the config is written.
fn wanted(key: &str, expected: &str) -> String {
    let whole = matches!(
        expected,
        "u8" | "u16" | "u32" | "u64" | "usize" | "i8" | "i16" | "i32" | "i64" | "isize"
    );
    let unit = [
        ("_ms", "a number of milliseconds, e.g. 1500"),
        ("_s", "a number of seconds, e.g. 30"),
        ("_bytes", "a number of bytes, e.g. 65536"),
        ("_age", "a number of seconds, e.g. 600"),
    ]
    .into_iter()
    .find(|(suffix, _)| key.ends_with(suffix));
    match (whole, unit) {
        (true, Some((_, words))) => words.to_owned(),
        (true, None) => "a whole number, e.g. 10".to_owned(),
        (false, _) => match expected {
            "a boolean" => "true or false".to_owned(),
            "a string" => "a string in quotes".to_owned(),
            "a sequence" => "a list, e.g. [\"a\", \"b\"]".to_owned(),
            "a map" | "struct" => "a table".to_owned(),
            other => other.to_owned(),
        },
    }
}

/// What was found instead, as serde describes it (`string "1s"`,
/// `integer `-1``), without its type names.
fn found_words(found: &str) -> String {
    let quoted = |rest: &str| rest.trim_matches('`').to_owned();
    if let Some(text) = found.strip_prefix("string ") {
        format!("the text {text}")
    } else if let Some(n) = found
        .strip_prefix("integer ")
        .or_else(|| found.strip_prefix("floating point "))
    {
        quoted(n)
    } else if let Some(b) = found.strip_prefix("boolean ") {
        quoted(b)
    } else {
        match found {
            "sequence" => "a list".to_owned(),
            "map" => "a table".to_owned(),
            other => other.to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn misspelt_keys_and_variants_get_a_suggestion() {
        assert_eq!(
            explain("cors.allow_origin", "unknown field `allow_origin`, expected one of `allow_origins`, `allow_headers`"),
            "unknown field `allow_origin` (did you mean `allow_origins`?), expected one of `allow_origins`, `allow_headers`"
        );
        assert_eq!(
            explain(
                "server.deadline_ms",
                "invalid type: string \"1s\", expected u64"
            ),
            "expected a number of milliseconds, e.g. 1500, not the text \"1s\""
        );
        assert_eq!(
            explain(
                "server.max_connections",
                "invalid value: integer `-1`, expected usize"
            ),
            "expected a whole number, e.g. 10, not -1"
        );
        assert_eq!(
            explain(
                "routes[0].wrap",
                "invalid type: string \"yes\", expected a boolean"
            ),
            "expected true or false, not the text \"yes\""
        );
    }

    #[test]
    fn related_keys_are_the_same_inside_or_holding() {
        assert!(related("routes[0]", "routes[0].open"));
        assert!(related("routes[0].open.url", "routes[0].open"));
        assert!(!related("routes[1]", "routes[0].open"));
        assert!(!related("cors.allow_origins", "cors.allow_origin"));
    }
}
