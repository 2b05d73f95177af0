//! Template filters for what CRM APIs demand of a request: digests and
//! signatures (vTiger's `md5(token + accessKey)`, EspoCRM's HMAC), base64,
//! and escaping for the query languages integrators build from strings
//! (SQL fragments, OData, SOSL, or any language that escapes with a
//! backslash: Zoho's criteria, Odoo's `ilike` patterns), plus `split`/`last` for ids such as vTiger's
//! `12x345`, and `html_unescape` for CRMs that hand back text HTML-encoded
//! (SugarCRM, SuiteCRM: `D&#039;Artagnan &amp; Fils`).
//!
//! The escaping filters only escape: the config author writes the quotes
//! around the value (`phone='{{ caller | sql_quote }}'`), so a filter never
//! guesses which quoting the CRM's language uses.

use base64::Engine as _;
use md5::Digest as _;
use minijinja::value::{Kwargs, Value, ValueKind};
use minijinja::{Environment, Error, ErrorKind};

/// Characters Salesforce reserves in a SOSL search term, escaped with `\`.
const SOSL_RESERVED: &[char] = &[
    '?', '&', '|', '!', '{', '}', '[', ']', '(', ')', '^', '~', '*', ':', '\\', '"', '\'', '+', '-',
];

/// Registers every filter of this module.
pub(super) fn register(env: &mut Environment<'static>) {
    // Digests also as functions, as integrators write them: `md5(a ~ b)`.
    env.add_filter("md5", md5);
    env.add_function("md5", md5);
    env.add_filter("sha256", sha256);
    env.add_function("sha256", sha256);
    env.add_filter("hmac_sha256", hmac_sha256);
    env.add_function("hmac_sha256", hmac_sha256);
    env.add_filter("base64", base64_of);
    env.add_function("base64", base64_of);
    env.add_filter("sql_quote", |v: Value| sql_quote(&text(&v)));
    env.add_filter("sql_like", |v: Value| sql_like(&text(&v)));
    env.add_filter("odata_quote", |v: Value| text(&v).replace('\'', "''"));
    env.add_filter("sosl_escape", |v: Value| sosl_escape(&text(&v)));
    env.add_filter("backslash_escape", |v: Value, chars: String| {
        backslash_escape(&text(&v), &chars)
    });
    env.add_filter("split", split);
    env.add_filter("last", last);
    env.add_filter("html_unescape", |v: Value| html_unescape(&text(&v)));
}

fn md5(v: Value, kwargs: Kwargs) -> Result<Value, Error> {
    digest_out(&md5::Md5::digest(bytes_of(&v)), &kwargs)
}

fn sha256(v: Value, kwargs: Kwargs) -> Result<Value, Error> {
    digest_out(
        ring::digest::digest(&ring::digest::SHA256, &bytes_of(&v)).as_ref(),
        &kwargs,
    )
}

/// `{{ message | hmac_sha256(key) }}`, hex as PHP's `hash_hmac` gives it.
fn hmac_sha256(v: Value, key: Value, kwargs: Kwargs) -> Result<Value, Error> {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &bytes_of(&key));
    digest_out(ring::hmac::sign(&key, &bytes_of(&v)).as_ref(), &kwargs)
}

/// A digest as lowercase hex, or with `binary=true` as raw bytes (PHP's
/// `hash_hmac(..., true)`): what a signature wants to base64 (EspoCRM
/// before 8.4.1) or to feed to another digest. Raw bytes are not text, so
/// printed as they are they would be garbled: they go to `base64` or a
/// digest.
fn digest_out(digest: &[u8], kwargs: &Kwargs) -> Result<Value, Error> {
    let binary = kwargs.get::<Option<bool>>(BINARY)?.unwrap_or(false);
    kwargs.assert_all_used()?;
    Ok(if binary {
        Value::from_bytes(digest.to_vec())
    } else {
        Value::from(hex(digest))
    })
}

/// The keyword argument of the digests: raw bytes instead of hex.
const BINARY: &str = "binary";

/// `base64` of a string (its UTF-8), raw bytes, or a list of those one
/// after the other: `base64([key ~ ":", digest])` with a binary digest.
fn base64_of(v: Value) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes_of(&v))
}

/// The bytes a digest or `base64` works on: a string's UTF-8, raw bytes as
/// they are, a list's items (each as a string or bytes) one after the other,
/// anything else as its text.
fn bytes_of(value: &Value) -> Vec<u8> {
    let one = |v: &Value| match v.kind() {
        ValueKind::Bytes => v.as_bytes().map(<[u8]>::to_vec).unwrap_or_default(),
        _ => text(v).into_bytes(),
    };
    match value.kind() {
        ValueKind::Seq => value
            .try_iter()
            .map(|items| items.flat_map(|item| one(&item)).collect())
            .unwrap_or_default(),
        _ => one(value),
    }
}

/// A value as the text a filter works on: strings as they are, numbers
/// printed, `none` and undefined empty.
pub(super) fn text(value: &Value) -> String {
    match value.kind() {
        ValueKind::Undefined | ValueKind::None => String::new(),
        _ => match value.as_str() {
            Some(s) => s.to_owned(),
            None => value.to_string(),
        },
    }
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    out
}

/// The inside of a single-quoted SQL string: `'` doubled (standard SQL, which
/// every SQL dialect reads), and `\` doubled too, because MySQL and MariaDB
/// (vTiger, SugarCRM, Dolibarr) treat a backslash as an escape by default
/// and `\'` would otherwise end the string. On a database in standard mode a
/// backslash in the caller would not match, which is safe; phone numbers
/// have none.
fn sql_quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    for c in value.chars() {
        match c {
            '\'' => out.push_str("''"),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out
}

/// A value matched literally inside a `LIKE` pattern, in a quoted string:
/// escaped for `LIKE` first (`\` → `\\`, `%` → `\%`, `_` → `\_`, MySQL's
/// default `LIKE` escape) so a caller can neither widen the match nor eat
/// the pattern's own wildcard with a trailing `\`, then for the string
/// literal ([`sql_quote`]).
fn sql_like(value: &str) -> String {
    let mut pattern = String::with_capacity(value.len() + 2);
    for c in value.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    sql_quote(&pattern)
}

fn sosl_escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    for c in value.chars() {
        if SOSL_RESERVED.contains(&c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A `\` before each of `chars` and before `\` itself: Zoho's criteria
/// (`(`, `)`, `,`) and the pattern of a `LIKE` whose value the CRM binds as
/// a parameter (a literal value in Odoo's `ilike`, which wraps it in
/// `%...%` and escapes nothing inside: `%`, `_`), where quotes need no
/// doubling.
fn backslash_escape(value: &str, chars: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    for c in value.chars() {
        if c == '\\' || chars.contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Text a CRM stored or sent HTML-encoded, decoded once: every character
/// reference (`&amp;`, `&#039;`, `&#x27;`, `&euml;`, the whole HTML5 list)
/// becomes its character, as a browser would show it; anything that is not
/// a reference stays as it is. Once only: `&amp;amp;` gives `&amp;`, so a
/// CRM that encodes twice (SuiteCRM 7.10+ stores `&` as `&amp;amp;`) gets
/// the filter twice.
fn html_unescape(value: &str) -> String {
    html_escape::decode_html_entities(value).into_owned()
}

/// `"12x345" | split("x")` → `["12", "345"]`; no separator splits on blanks.
fn split(value: Value, sep: Option<String>) -> Result<Value, Error> {
    let text = text(&value);
    let parts: Vec<Value> = match sep.as_deref() {
        Some("") => {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                "split needs a non-empty separator",
            ))
        }
        Some(sep) => text.split(sep).map(Value::from).collect(),
        None => text.split_whitespace().map(Value::from).collect(),
    };
    Ok(Value::from(parts))
}

/// `last` as Jinja has it (last item of a list, last character of a string),
/// and `last(n)`: the last `n` digits of a phone number, the way connectors
/// compare numbers typed in any format.
fn last(value: Value, n: Option<usize>) -> Result<Value, Error> {
    if let Some(n) = n {
        let digits: Vec<char> = crate::phone::ascii_digits(&text(&value))
            .chars()
            .filter(char::is_ascii_digit)
            .collect();
        // `LIKE '%{{ calller | last(9) }}'` must not become `LIKE '%'`.
        if digits.is_empty() || n == 0 {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                "last(n) takes the last digits of a number, and this value has none (undefined, or no digit)",
            ));
        }
        let from = digits.len().saturating_sub(n);
        return Ok(Value::from(digits[from..].iter().collect::<String>()));
    }
    match value.kind() {
        ValueKind::String => Ok(value
            .as_str()
            .and_then(|s| s.chars().next_back())
            .map(|c| Value::from(c.to_string()))
            .unwrap_or_default()),
        ValueKind::Seq | ValueKind::Iterable => {
            let items: Vec<Value> = value.try_iter()?.collect();
            Ok(items.last().cloned().unwrap_or_default())
        }
        ValueKind::Undefined | ValueKind::None => Ok(Value::UNDEFINED),
        _ => Err(Error::new(
            ErrorKind::InvalidOperation,
            "last needs a list or a string",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Renders `source` with the gateway's filters.
    fn render(source: &str) -> Result<String, Error> {
        let mut env = Environment::new();
        register(&mut env);
        env.render_str(source, ())
    }

    #[test]
    fn html_unescape_decodes_every_reference_once_and_leaves_the_rest() {
        let cases = [
            // SuiteCRM 7.10+ saves `Zoë D'Artagnan & Fils` so.
            (
                "Zo&euml; D&#039;Artagnan &amp;amp; Fils",
                "Zoë D'Artagnan &amp; Fils",
            ),
            ("Zoë D'Artagnan &amp; Fils", "Zoë D'Artagnan & Fils"),
            (
                "&quot;Lou&quot; &lt;3 &#x27;x&#39; &eacute;&ccedil;&Oslash;",
                "\"Lou\" <3 'x' éçØ",
            ),
            // Not references: kept as typed.
            ("A & B", "A & B"),
            ("R&D &nosuchentity; &#;", "R&D &nosuchentity; &#;"),
            ("", ""),
        ];
        for (source, want) in cases {
            let template = format!("{{{{ {} | html_unescape }}}}", serde_json::json!(source));
            assert_eq!(render(&template).unwrap(), want, "{source:?}");
        }
        assert_eq!(
            render("{{ 'a &amp;amp; b' | html_unescape | html_unescape }}").unwrap(),
            "a & b"
        );
        assert_eq!(render("{{ none | html_unescape }}").unwrap(), "");
        assert_eq!(render("{{ 42 | html_unescape }}").unwrap(), "42");
    }

    #[test]
    fn digests_match_known_vectors() {
        assert_eq!(
            render("{{ md5('abc') }}").unwrap(),
            "900150983cd24fb0d6963f7d28e17f72"
        );
        assert_eq!(
            render("{{ 'abc' | sha256 }}").unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        // RFC 4231 test case 2.
        assert_eq!(
            render("{{ 'what do ya want for nothing?' | hmac_sha256('Jefe') }}").unwrap(),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(render("{{ base64('k:v') }}").unwrap(), "azp2");
        assert_eq!(
            render("{{ md5(12) }}").unwrap(),
            render("{{ md5('12') }}").unwrap()
        );
    }

    #[test]
    fn binary_digests_are_raw_bytes_for_base64_and_other_digests() {
        // Computed apart: python3 hmac.new(b"Jefe", msg, sha256).digest(),
        // base64-encoded (with and without a `key:` prefix).
        assert_eq!(
            render(
                "{{ base64(hmac_sha256('what do ya want for nothing?', 'Jefe', binary=true)) }}"
            )
            .unwrap(),
            "W9zBRr9gdU5qBCQmCJV1x1oAPwidJzmDnexYuWTsOEM="
        );
        assert_eq!(
            render("{{ base64(['key:', 'what do ya want for nothing?' | hmac_sha256('Jefe', binary=true)]) }}")
                .unwrap(),
            "a2V5OlvcwUa/YHVOagQkJgiVdcdaAD8InSc5g53sWLlk7DhD"
        );
        // EspoCRM's legacy X-Hmac-Authorization for api key `apikey-1` and
        // secret `s3cret` (openssl dgst -sha256 -hmac s3cret -binary).
        assert_eq!(
            render("{{ base64(['apikey-1' ~ ':', hmac_sha256('GET /Contact', 's3cret', binary=true)]) }}")
                .unwrap(),
            "YXBpa2V5LTE6xnjv5fcGpspLG3iVuIoN1ofs7d1NKbG6gPVwsaJ8p8I="
        );
        // A binary digest hashed again, or used as a key, is its bytes.
        assert_eq!(
            render("{{ md5(md5('abc', binary=true)) }}").unwrap(),
            // python3: md5(md5(b"abc").digest()).hexdigest()
            "af5da9f45af7a300e3aded972f8ff687"
        );
        assert_eq!(
            render("{{ md5('abc', binary=false) }}").unwrap(),
            "900150983cd24fb0d6963f7d28e17f72"
        );
    }

    #[test]
    fn a_misspelt_digest_argument_is_an_error() {
        assert!(render("{{ md5('abc', bianry=true) }}").is_err());
        assert!(render("{{ 'a' | hmac_sha256('k', binary='yes') }}").is_err());
    }

    #[test]
    fn sql_quote_doubles_quotes_and_backslashes_and_leaves_wildcards() {
        assert_eq!(sql_quote("O'Brien"), "O''Brien");
        assert_eq!(sql_quote("x\\' OR 1=1 -- "), "x\\\\'' OR 1=1 -- ");
        assert_eq!(sql_quote("50%_"), "50%_");
        assert_eq!(sql_like("5'0%_\\"), "5''0\\\\%\\\\_\\\\\\\\");
    }

    /// A quoted MySQL string literal's value (the quotes are the caller's):
    /// `''` is a quote, `\x` is `x` except `\%` and `\_`, which stay two
    /// characters (MySQL keeps them for `LIKE`).
    fn mysql_literal(text: &str) -> String {
        let mut out = String::new();
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '\'' => {
                    assert_eq!(
                        chars.next(),
                        Some('\''),
                        "a lone quote ends the literal: {text}"
                    );
                    out.push('\'');
                }
                '\\' => match chars.next() {
                    Some(e @ ('%' | '_')) => {
                        out.push('\\');
                        out.push(e);
                    }
                    Some(e) => out.push(e),
                    None => panic!("a trailing backslash escapes the closing quote: {text}"),
                },
                c => out.push(c),
            }
        }
        out
    }

    /// MySQL's `LIKE` with its default escape `\`.
    fn mysql_like(value: &str, pattern: &str) -> bool {
        fn go(v: &[char], p: &[char]) -> bool {
            match p.split_first() {
                None => v.is_empty(),
                Some(('%', rest)) => (0..=v.len()).any(|i| go(&v[i..], rest)),
                Some(('_', rest)) => !v.is_empty() && go(&v[1..], rest),
                Some(('\\', rest)) if !rest.is_empty() => {
                    v.first() == Some(&rest[0]) && go(&v[1..], &rest[1..])
                }
                Some((c, rest)) => v.first() == Some(c) && go(&v[1..], rest),
            }
        }
        let (v, p): (Vec<char>, Vec<char>) = (value.chars().collect(), pattern.chars().collect());
        go(&v, &p)
    }

    #[test]
    fn sql_like_values_match_only_themselves_inside_a_mysql_pattern() {
        for hostile in ["\\%", "50%", "a_b", "x\\", "\\", "O'Brien\\", "%_\\'"] {
            let pattern = mysql_literal(&format!("%{}%", sql_like(hostile)));
            assert!(
                mysql_like(&format!("tel {hostile} x"), &pattern),
                "{hostile:?} -> {pattern:?}"
            );
            // Never a wildcard: the same length with other characters fails.
            let other: String = hostile.chars().map(|_| 'z').collect();
            assert!(
                !mysql_like(&other, &pattern),
                "{hostile:?} -> {pattern:?} matches {other:?}"
            );
        }
        // The closing wildcard survives a trailing backslash.
        let pattern = mysql_literal(&format!("{}%", sql_like("ab\\")));
        assert!(mysql_like("ab\\cd", &pattern), "{pattern:?}");
    }

    #[test]
    fn backslash_escape_escapes_the_given_characters_and_backslash_only() {
        assert_eq!(
            backslash_escape("a(b),c\\d'%", "(),"),
            "a\\(b\\)\\,c\\\\d'%"
        );
        assert_eq!(backslash_escape("5%_'\\", "%_"), "5\\%\\_'\\\\");
        assert_eq!(backslash_escape("+33612345678", "(),"), "+33612345678");
    }

    #[test]
    fn sosl_escape_escapes_every_reserved_character() {
        assert_eq!(
            sosl_escape("a?&|!{}[]()^~*:\\\"'+-b"),
            "a\\?\\&\\|\\!\\{\\}\\[\\]\\(\\)\\^\\~\\*\\:\\\\\\\"\\'\\+\\-b"
        );
        assert_eq!(sosl_escape("+33 6"), "\\+33 6");
    }

    #[test]
    fn last_keeps_jinja_meaning_and_takes_digits_with_n() {
        assert_eq!(last(Value::from("abc"), None).unwrap(), Value::from("c"));
        assert_eq!(
            last(Value::from(vec!["12", "345"]), None).unwrap(),
            Value::from("345")
        );
        assert_eq!(
            last(Value::from("+33 6 12 34 56 78"), Some(9)).unwrap(),
            Value::from("612345678")
        );
        assert_eq!(last(Value::from("12"), Some(9)).unwrap(), Value::from("12"));
        assert!(last(Value::from(3), None).is_err());
        // A search for the last digits of nothing would match everything.
        for nothing in [Value::UNDEFINED, Value::from(()), Value::from("anonymous")] {
            assert!(last(nothing, Some(9)).is_err());
        }
        assert!(last(Value::from("0612345678"), Some(0)).is_err());
    }

    #[test]
    fn split_with_an_empty_separator_is_an_error_not_a_panic() {
        assert!(split(Value::from("a"), Some(String::new())).is_err());
        assert_eq!(
            split(Value::from("a b"), None).unwrap(),
            Value::from(vec!["a", "b"])
        );
    }
}
