//! Phone-number filters backed by libphonenumber's metadata (through
//! [`crate::phone`]): XucMgt sends the caller as the PBX saw it
//! (`0612345678`, `+33612345678`, `0033612345678`, `612345678`) while CRMs
//! store E.164, a national format, or whatever was typed. A number without a
//! country code is read in `[phone] default_region`.
//!
//! Two kinds: shapes of the number to ask a CRM that compares exactly
//! (`e164`, `national`, `international`, `national_digits`), and patterns to
//! ask a CRM broadly for candidates that the gateway then compares itself
//! (`phone_like`, `significant`). None of them renders a value that holds
//! no digit (an undefined variable, `anonymous`): a search for nothing would
//! match every record, so the render fails and the call gets `none`.

use minijinja::value::{Kwargs, Value, ValueKind};
use minijinja::{Environment, Error, ErrorKind};
use phonenumber::country::Id;
use phonenumber::Mode;

use super::filters::text;
use crate::phone::Number;

/// Registers the phone filters, reading local numbers in `region`.
pub(super) fn register(env: &mut Environment<'static>, region: Option<Id>) {
    env.add_filter("e164", move |v: Value| show(&v, region, Mode::E164));
    env.add_filter("international", move |v: Value| {
        show(&v, region, Mode::International)
    });
    env.add_filter("national", move |v: Value| show(&v, region, Mode::National));
    env.add_filter("national_digits", move |v: Value| {
        show(&v, region, Mode::National).map(|s| digits(&s))
    });
    env.add_filter("significant", move |v: Value, kwargs: Kwargs| {
        let last = last_of(&kwargs)?;
        kwargs.assert_all_used()?;
        Ok::<_, Error>(tail(&significant(&v, region)?, last).to_owned())
    });
    env.add_filter("phone_like", move |v: Value, kwargs: Kwargs| {
        let last = last_of(&kwargs)?;
        let wildcard = kwargs.get::<Option<String>>("wildcard")?;
        kwargs.assert_all_used()?;
        let wildcard = wildcard.unwrap_or_else(|| "%".to_owned());
        if wildcard.is_empty() || wildcard.chars().any(|c| c.is_ascii_digit()) {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                "phone_like's wildcard must be a non-empty text without digits, e.g. \"%\" or \"*\"",
            ));
        }
        Ok(like(tail(&significant(&v, region)?, last), &wildcard))
    });
}

/// `last=N`: keep the last N significant digits (at least 4).
fn last_of(kwargs: &Kwargs) -> Result<Option<usize>, Error> {
    let last = kwargs.get::<Option<usize>>("last")?;
    if let Some(n) = last {
        if n < 4 {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                format!("last={n} is too few digits to tell callers apart: 4 or more"),
            ));
        }
    }
    Ok(last)
}

fn tail(digits: &str, last: Option<usize>) -> &str {
    match last {
        Some(n) => &digits[digits.len().saturating_sub(n)..],
        None => digits,
    }
}

/// `%6%1%2%3%4%5%6%7%8%`: the digits in order with anything between, before
/// and after, so a SQL `LIKE` finds the number however it was punctuated
/// (`06.12.34.56.78`, `+33 (0)6 12 34 56 78`, `06 12 34 56 78 x12`).
fn like(digits: &str, wildcard: &str) -> String {
    let mut out = String::with_capacity(digits.len() * (1 + wildcard.len()) + wildcard.len());
    out.push_str(wildcard);
    for d in digits.chars() {
        out.push(d);
        out.push_str(wildcard);
    }
    out
}

/// A value's text, refused when it holds no digit: an undefined variable (a
/// typo) or a withheld caller must not become a search for nothing.
fn with_digits(value: &Value) -> Result<String, Error> {
    if matches!(value.kind(), ValueKind::Undefined | ValueKind::None) {
        return Err(Error::new(
            ErrorKind::UndefinedError,
            "a phone filter was given an undefined value: is the variable's name right?",
        ));
    }
    let raw = crate::phone::ascii_digits(&text(value)).into_owned();
    if !raw.bytes().any(|b| b.is_ascii_digit()) {
        return Err(Error::new(
            ErrorKind::InvalidOperation,
            format!("{raw:?} holds no phone number (no digit)"),
        ));
    }
    Ok(raw)
}

/// A number libphonenumber validates, in `mode`; one it does not validate
/// but that carries its country (`+`, `00`) keeps it (`+32 2 123 45 67` is
/// `+3221234567`); anything else (an internal extension) its digits.
fn show(value: &Value, region: Option<Id>, mode: Mode) -> Result<String, Error> {
    let raw = with_digits(value)?;
    Ok(match Number::read_caller(&raw, region) {
        Some(n) if n.is_valid() || n.is_explicit() => n.format(mode),
        _ => digits(&raw),
    })
}

/// The national significant number's digits (`612345678`), or the digits
/// of what does not read as a number.
fn significant(value: &Value, region: Option<Id>) -> Result<String, Error> {
    let raw = with_digits(value)?;
    Ok(match Number::read_caller(&raw, region) {
        Some(n) => n.significant(),
        None => digits(&raw),
    })
}

fn digits(text: &str) -> String {
    text.chars().filter(char::is_ascii_digit).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(region: &str) -> Environment<'static> {
        let mut env = Environment::new();
        register(&mut env, crate::phone::region(region));
        env
    }

    fn render(region: &str, source: &str, caller: Value) -> Result<String, Error> {
        let env = env(region);
        env.render_str(source, minijinja::context! { caller })
    }

    fn all(raw: &str, region: &str) -> [String; 4] {
        let r = crate::phone::region(region);
        assert!(r.is_some(), "{region}");
        let v = Value::from(raw);
        [
            show(&v, r, Mode::E164).unwrap(),
            show(&v, r, Mode::National).unwrap(),
            show(&v, r, Mode::International).unwrap(),
            digits(&show(&v, r, Mode::National).unwrap()),
        ]
    }

    #[test]
    fn every_input_shape_gives_the_same_number() {
        let cases = [
            (
                "FR",
                ["0612345678", "+33612345678", "0033612345678", "612345678"],
                [
                    "+33612345678",
                    "06 12 34 56 78",
                    "+33 6 12 34 56 78",
                    "0612345678",
                ],
            ),
            (
                "BE",
                ["0470123456", "+32470123456", "0032470123456", "470123456"],
                [
                    "+32470123456",
                    "0470 12 34 56",
                    "+32 470 12 34 56",
                    "0470123456",
                ],
            ),
            (
                "CH",
                ["0781234567", "+41781234567", "0041781234567", "781234567"],
                [
                    "+41781234567",
                    "078 123 45 67",
                    "+41 78 123 45 67",
                    "0781234567",
                ],
            ),
            (
                "US",
                [
                    "2015550123",
                    "+12015550123",
                    "01112015550123",
                    "12015550123",
                ],
                [
                    "+12015550123",
                    "(201) 555-0123",
                    "+1 201-555-0123",
                    "2015550123",
                ],
            ),
        ];
        for (region, inputs, want) in cases {
            for raw in inputs {
                assert_eq!(all(raw, region), want, "{raw} in {region}");
            }
        }
    }

    #[test]
    fn a_foreign_number_keeps_its_country_whatever_the_region() {
        assert_eq!(all("+32470123456", "FR")[0], "+32470123456");
        assert_eq!(all("0032470123456", "FR")[0], "+32470123456");
        assert_eq!(all("+39 06 1234 5678", "FR")[0], "+390612345678");
    }

    #[test]
    fn a_number_libphonenumber_does_not_validate_keeps_its_country_prefix() {
        // Not in the metadata's patterns, but written with its country.
        for raw in ["+32 2 123 45 67", "0032 2 123 45 67"] {
            let [e164, _, international, _] = all(raw, "FR");
            assert_eq!(e164, "+3221234567", "{raw}");
            assert_eq!(international, "+32 21234567", "{raw}");
        }
        // Nothing better than its digits: an internal extension.
        assert_eq!(all("1001", "FR"), ["1001", "1001", "1001", "1001"]);
    }

    #[test]
    fn what_holds_no_digit_or_is_undefined_fails_the_render() {
        for filter in [
            "e164",
            "national",
            "international",
            "national_digits",
            "significant",
            "phone_like",
        ] {
            let src = format!("{{{{ caller | {filter} }}}}");
            for caller in [
                Value::UNDEFINED,
                Value::from(()),
                Value::from("anonymous"),
                Value::from(""),
            ] {
                let err = render("FR", &src, caller.clone()).unwrap_err();
                assert!(
                    matches!(
                        err.kind(),
                        ErrorKind::UndefinedError | ErrorKind::InvalidOperation
                    ),
                    "{filter} of {caller:?}: {err}"
                );
            }
        }
        assert!(render(
            "FR",
            "{{ calller | phone_like }}",
            Value::from("0612345678")
        )
        .is_err());
    }

    #[test]
    fn patterns_put_a_wildcard_between_the_significant_digits() {
        let caller = || Value::from("+33 6 12 34 56 78");
        let r = |src: &str| render("FR", src, caller()).unwrap();
        assert_eq!(r("{{ caller | phone_like }}"), "%6%1%2%3%4%5%6%7%8%");
        assert_eq!(r("{{ caller | phone_like(last=6) }}"), "%3%4%5%6%7%8%");
        assert_eq!(
            r("{{ caller | phone_like(wildcard='*') }}"),
            "*6*1*2*3*4*5*6*7*8*"
        );
        assert_eq!(r("{{ caller | significant }}"), "612345678");
        assert_eq!(r("{{ caller | significant(last=7) }}"), "2345678");
        // Italy's leading zero is part of the number.
        let it = render(
            "IT",
            "{{ caller | phone_like }}",
            Value::from("+39 06 1234 5678"),
        )
        .unwrap();
        assert_eq!(it, "%0%6%1%2%3%4%5%6%7%8%");
        for bad in [
            "{{ caller | phone_like(last=2) }}",
            "{{ caller | phone_like(wildcard='') }}",
            "{{ caller | phone_like(wildcard='1') }}",
            "{{ caller | phone_like(lst=9) }}",
        ] {
            assert!(render("FR", bad, caller()).is_err(), "{bad}");
        }
    }

    #[test]
    fn without_a_region_only_international_numbers_parse() {
        let v = Value::from("0612345678");
        assert_eq!(show(&v, None, Mode::E164).unwrap(), "0612345678");
        let v = Value::from("+33 6 12 34 56 78");
        assert_eq!(show(&v, None, Mode::E164).unwrap(), "+33612345678");
    }
}
