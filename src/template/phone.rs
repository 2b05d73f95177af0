//! Phone-number filters backed by libphonenumber's metadata (the
//! `phonenumber` crate): XucMgt sends the caller as the PBX saw it
//! (`0612345678`, `+33612345678`, `0033612345678`, `612345678`) while CRMs
//! store E.164, a national format, or whatever was typed. A number without a
//! country code is read in `[phone] default_region`.
//!
//! A number that does not parse (an internal extension, a withheld caller)
//! falls back to its digits: a filter never fails a call.

use minijinja::value::Value;
use minijinja::Environment;
use phonenumber::country::Id;
use phonenumber::{Mode, PhoneNumber};

use super::filters::text;

/// Registers the phone filters, reading local numbers in `region`.
pub(super) fn register(env: &mut Environment<'static>, region: Option<Id>) {
    env.add_filter("e164", move |v: Value| show(&v, region, Mode::E164));
    env.add_filter("international", move |v: Value| {
        show(&v, region, Mode::International)
    });
    env.add_filter("national", move |v: Value| show(&v, region, Mode::National));
    env.add_filter("national_digits", move |v: Value| {
        digits(&show(&v, region, Mode::National))
    });
}

/// Loads libphonenumber's metadata and the region's patterns now, at config
/// load: the first parse costs far more than the next ones (the metadata is
/// decoded and the patterns compiled on first use), which must not land on
/// the first call's deadline or block a worker.
pub(super) fn warm(region: Id) {
    let _ = &*phonenumber::metadata::DATABASE;
    let _ = show(&Value::from("0123456789"), Some(region), Mode::National);
}

/// Parses an ISO 3166 region code such as `FR` (any case).
pub fn region(code: &str) -> Option<Id> {
    code.trim().to_ascii_uppercase().parse().ok()
}

/// A number libphonenumber knows as valid: a short extension or a typo is
/// not given a country code it does not have.
fn parse(raw: &str, region: Option<Id>) -> Option<PhoneNumber> {
    // A payload field past this length is not a phone number.
    if raw.len() > 64 {
        return None;
    }
    phonenumber::parse(region, raw)
        .ok()
        .filter(phonenumber::is_valid)
}

fn show(value: &Value, region: Option<Id>, mode: Mode) -> String {
    let raw = text(value);
    match parse(&raw, region) {
        Some(number) => number.format().mode(mode).to_string(),
        None => digits(&raw),
    }
}

fn digits(text: &str) -> String {
    text.chars().filter(char::is_ascii_digit).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(raw: &str, region: &str) -> [String; 4] {
        let r = super::region(region);
        assert!(r.is_some(), "{region}");
        let v = Value::from(raw);
        [
            show(&v, r, Mode::E164),
            show(&v, r, Mode::National),
            show(&v, r, Mode::International),
            digits(&show(&v, r, Mode::National)),
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
    }

    #[test]
    fn what_does_not_parse_falls_back_to_its_digits() {
        for (raw, want) in [
            ("1001", "1001"),
            ("", ""),
            ("anonymous", ""),
            ("12-x", "12"),
        ] {
            assert_eq!(all(raw, "FR")[0], want, "{raw:?}");
        }
        assert_eq!(all(&"9".repeat(200), "FR")[0].len(), 200);
    }

    #[test]
    fn without_a_region_only_international_numbers_parse() {
        let v = Value::from("0612345678");
        assert_eq!(show(&v, None, Mode::E164), "0612345678");
        let v = Value::from("+33 6 12 34 56 78");
        assert_eq!(show(&v, None, Mode::E164), "+33612345678");
    }

    #[test]
    fn regions_are_iso_codes() {
        assert!(region("fr").is_some());
        assert!(region("XX").is_none());
        assert!(region("").is_none());
    }
}
