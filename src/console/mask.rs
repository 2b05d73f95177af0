//! The caller's number, masked: the console shows its last two digits
//! (`********78`) unless the config lets it show callers. The number also
//! travels inside requests (a query, a body, a CRM search pattern such as
//! `%0%6%1%2...`, percent-encoded or not), replies' urls and titles, so a
//! trace is masked too: every run of digits (with the separators numbers
//! are written with) that holds the caller's last digits loses all but its
//! last two.

use std::borrow::Cow;

/// Digits of a caller shown unmasked.
const SHOWN: usize = 2;

/// How many of the caller's last digits identify it in a text.
const KEY_DIGITS: usize = 6;

/// `caller` with every digit but the last two as `*`.
pub fn caller(caller: &str) -> String {
    let digits = caller.bytes().filter(u8::is_ascii_digit).count();
    let mut seen = 0;
    caller
        .chars()
        .map(|c| {
            if c.is_ascii_digit() {
                seen += 1;
                if seen + SHOWN <= digits {
                    return '*';
                }
            }
            c
        })
        .collect()
}

/// Masks the caller's number wherever `text` holds it.
#[derive(Debug)]
pub struct Masker {
    /// The caller's last digits; empty when there is nothing to look for.
    key: Vec<u8>,
}

impl Masker {
    /// A masker for `caller`; one for a caller under 3 digits (nothing to
    /// hide but what is shown anyway) masks nothing.
    pub fn new(caller: &str) -> Self {
        let digits: Vec<u8> = caller.bytes().filter(u8::is_ascii_digit).collect();
        let key = if digits.len() > SHOWN {
            digits[digits.len().saturating_sub(KEY_DIGITS)..].to_vec()
        } else {
            Vec::new()
        };
        Self { key }
    }

    /// `text` with each run of digits that holds the caller's number
    /// masked, all but the run's last two digits.
    pub fn mask<'t>(&self, text: &'t str) -> Cow<'t, str> {
        if self.key.is_empty() {
            return Cow::Borrowed(text);
        }
        let bytes = text.as_bytes();
        let mut out: Option<Vec<u8>> = None;
        let mut i = 0;
        while i < bytes.len() {
            if escape(bytes, i) {
                i += 3;
                continue;
            }
            if !bytes[i].is_ascii_digit() {
                i += 1;
                continue;
            }
            let (end, digits) = run(bytes, i);
            if contains(&digits, &self.key) {
                let out = out.get_or_insert_with(|| bytes.to_vec());
                let mut left = digits.len();
                let mut j = i;
                while j < end {
                    if escape(bytes, j) {
                        j += 3;
                        continue;
                    }
                    if bytes[j].is_ascii_digit() {
                        if left > SHOWN {
                            out[j] = b'*';
                        }
                        left = left.saturating_sub(1);
                    }
                    j += 1;
                }
            }
            i = end;
        }
        match out {
            // Only ASCII digits were replaced by an ASCII `*`.
            Some(bytes) => Cow::Owned(String::from_utf8(bytes).unwrap_or_default()),
            None => Cow::Borrowed(text),
        }
    }
}

/// The run of a number that starts at `start` (a digit): its end, and its
/// digits. Separators inside a number: space, `.`, `-`, `/`, `(`, `)`,
/// `+`, `%`, `*`, `_`, and a percent-encoded character (`%20`, `%2B`,
/// `%25`...). A run ends on its last digit.
fn run(bytes: &[u8], start: usize) -> (usize, Vec<u8>) {
    let mut digits = Vec::new();
    let mut i = start;
    let mut end = start;
    while i < bytes.len() {
        let b = bytes[i];
        if b.is_ascii_digit() {
            digits.push(b);
            i += 1;
            end = i;
        } else if escape(bytes, i) {
            i += 3;
        } else if matches!(
            b,
            b' ' | b'.' | b'-' | b'/' | b'(' | b')' | b'+' | b'%' | b'*' | b'_'
        ) {
            i += 1;
        } else {
            break;
        }
    }
    (end, digits)
}

/// Whether a percent-encoded character starts at `i` (`%2B`; not the
/// wildcard of `%0%6`).
fn escape(bytes: &[u8], i: usize) -> bool {
    bytes[i] == b'%'
        && bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
        && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.len() >= needle.len() && haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_caller_shows_its_last_two_digits() {
        assert_eq!(caller("0612345678"), "********78");
        assert_eq!(caller("+33 6 12 34 56 78"), "+** * ** ** ** 78");
        assert_eq!(caller("12"), "12");
        assert_eq!(caller(""), "");
    }

    #[test]
    fn the_number_is_masked_in_every_spelling_a_request_gives_it() {
        let m = Masker::new("0612345678");
        for (text, masked) in [
            ("phone=0612345678&q=1", "phone=********78&q=1"),
            ("+33612345678", "+*********78"),
            ("%2B33612345678", "%2B*********78"),
            (
                "like '%0%6%1%2%3%4%5%6%7%8%'",
                "like '%*%*%*%*%*%*%*%*%7%8%'",
            ),
            (
                "%250%256%251%252%253%254%255%256%257%258%25",
                "%25*%25*%25*%25*%25*%25*%25*%25*%257%258%25",
            ),
            ("06 12 34 56 78", "** ** ** ** 78"),
            (
                "06.12.34.56.78 and 127.0.0.1",
                "**.**.**.**.78 and 127.0.0.1",
            ),
            (
                "WHERE phone=%270612345678%27",
                "WHERE phone=%27********78%27",
            ),
        ] {
            assert_eq!(m.mask(text), masked, "{text}");
        }
        assert!(matches!(m.mask("HTTP 200 (123 bytes)"), Cow::Borrowed(_)));
        assert_eq!(Masker::new("12").mask("12 and 1234"), "12 and 1234");
        assert_eq!(
            Masker::new("1001").mask("Call 1001, not 1002"),
            "Call **01, not 1002"
        );
    }
}
