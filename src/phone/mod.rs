//! Phone numbers as the gateway compares them: a country calling code and a
//! national significant number, however either was written. CRMs store
//! numbers as people typed them (`06.12.34.56.78`, `+33 (0)6 12 34 56 78`,
//! `0033 6 12 34 56 78`, `(415) 555-0101 x12`) and the PBX sends the caller
//! in its own shape (E.164, national, `00` international); two of these are
//! the same number exactly when libphonenumber reads them to the same
//! country code and national significant number (its `isNumberMatch`),
//! extensions aside. That comparison, not a CRM's string search, decides
//! which record is the caller: a French `06 12 34 56 79` and a Swiss
//! `+41 61 234 56 79` share their last nine digits and are never the same.
//!
//! Reading is libphonenumber's (the `phonenumber` crate) after a first cut
//! of what people add around a number: a label before it, a comment or an
//! extension after it, a trunk `(0)` inside an international number.

use phonenumber::country::{Id, Source};
use phonenumber::{Mode, PhoneNumber};

/// A stored field longer than this is not read as a phone number (a note
/// pasted into a phone field): reading is bounded per field.
const MAX_FIELD_CHARS: usize = 128;

/// Digits a phone number has at most: 15 in E.164, plus an international
/// prefix (`00`, `011`) and a trunk zero as people write them.
const MAX_DIGITS: usize = 20;

/// Fewer digits than this is not a number to compare (`x12`, a stray `1`).
const MIN_DIGITS: usize = 3;

/// A phone number read: what two numbers must share to be the same one.
#[derive(Debug, Clone)]
pub struct Number {
    parsed: PhoneNumber,
    /// Whether the text carried its country (`+`, `00`, or the region's own
    /// code), rather than taking the region's.
    explicit: bool,
    /// Whether libphonenumber's metadata knows it as a valid number.
    valid: bool,
}

impl PartialEq for Number {
    fn eq(&self, other: &Self) -> bool {
        self.code() == other.code() && self.significant() == other.significant()
    }
}

impl Eq for Number {}

impl Number {
    /// Reads `raw` as a phone number, a number without a country code in
    /// `region`. `None` for what holds no number (`anonymous`, an empty
    /// field, a note, a number without country code and no region).
    pub fn read(raw: &str, region: Option<Id>) -> Option<Self> {
        if raw.len() > MAX_FIELD_CHARS * 4 || raw.chars().nth(MAX_FIELD_CHARS).is_some() {
            return None;
        }
        let raw = ascii_digits(raw);
        let whole = number_part(&raw)?;
        if let Some(n) = Self::read_part(whole, region) {
            return Some(n);
        }
        // Two numbers in one field (`06 12 34 56 78 / 01 23 45 67 89`): the
        // first one that reads.
        whole
            .split('/')
            .filter_map(|part| number_part(part))
            .find_map(|part| Self::read_part(part, region))
    }

    /// Reads what a PBX sent as the caller: a number and nothing else. A
    /// stored field may carry a label or an extension around its number;
    /// a caller that does (`0612345678' OR '1'='1`) is not a number.
    pub fn read_caller(raw: &str, region: Option<Id>) -> Option<Self> {
        let raw = ascii_digits(raw);
        let raw = raw.trim();
        if raw.is_empty() || number_part(raw) != Some(raw) || raw.contains('/') {
            return None;
        }
        Self::read(raw, region)
    }

    fn read_part(text: &str, region: Option<Id>) -> Option<Self> {
        let digits = text.bytes().filter(u8::is_ascii_digit).count();
        if !(MIN_DIGITS..=MAX_DIGITS).contains(&digits) {
            return None;
        }
        let international = text.starts_with('+') || text.starts_with("00");
        // `+33 (0)6 12 34 56 78`: the trunk zero people add in brackets to
        // an international number is not part of it.
        let text: std::borrow::Cow<'_, str> = if international && text.contains("(0)") {
            text.replace("(0)", "").into()
        } else {
            text.into()
        };
        let first = parse(region, &text).map(Self::from_parsed);
        if let Some(n) = first.as_ref().filter(|n| n.valid) {
            return Some(n.clone());
        }
        // `41612345679`: an international number whose `+` the PBX or the
        // typist left out. Taken only when it is valid that way and has the
        // length of one (11 digits or more), since a shorter run of digits
        // is more likely a national number of the region that does not
        // validate.
        let bare = text
            .bytes()
            .all(|b| b.is_ascii_digit() || b == b' ' || b == b'-' || b == b'.');
        if bare && !text.starts_with('0') && digits >= 11 {
            let plus = format!("+{text}");
            if let Some(n) = parse(region, &plus)
                .map(Self::from_parsed)
                .filter(|n| n.valid)
            {
                return Some(n);
            }
        }
        first
    }

    fn from_parsed(parsed: PhoneNumber) -> Self {
        let explicit = parsed.code().source() != Source::Default;
        let valid = phonenumber::is_valid(&parsed);
        Self {
            parsed,
            explicit,
            valid,
        }
    }

    /// The country calling code (`33`).
    pub fn code(&self) -> u16 {
        self.parsed.code().value()
    }

    /// The national significant number as its value and its count of
    /// leading zeros (Italy's `06…` is `(6…, 1)`): what an index keys by.
    pub fn national_parts(&self) -> (u64, u8) {
        let national = self.parsed.national();
        (national.value(), national.zeros())
    }

    /// The national significant number as digits, with the leading zeros
    /// it keeps (Italy's `06…`): `612345678` for `06 12 34 56 78`.
    pub fn significant(&self) -> String {
        let national = self.parsed.national();
        let mut out = "0".repeat(usize::from(national.zeros()));
        out.push_str(&national.value().to_string());
        out
    }

    /// Whether libphonenumber's metadata knows this number as valid.
    pub fn is_valid(&self) -> bool {
        self.valid
    }

    /// Whether the text carried its country code rather than taking the
    /// region's.
    pub fn is_explicit(&self) -> bool {
        self.explicit
    }

    /// `+33612345678`, for any number read (valid or not): the country
    /// code and the national significant number are all E.164 holds.
    pub fn e164(&self) -> String {
        format!("+{}{}", self.code(), self.significant())
    }

    /// The number in one of libphonenumber's formats; a number the metadata
    /// does not validate has no known grouping, so it is shown as
    /// `+CC NSN` (international) or its national significant number.
    pub fn format(&self, mode: Mode) -> String {
        if self.valid {
            return self.parsed.format().mode(mode).to_string();
        }
        match mode {
            Mode::E164 | Mode::Rfc3966 => self.e164(),
            Mode::International => format!("+{} {}", self.code(), self.significant()),
            Mode::National => self.significant(),
        }
    }
}

/// libphonenumber's parse, with the national number read by the metadata
/// of the country the number names: the crate reads a number with an
/// international prefix with the metadata of the region it was given, so
/// France's trunk `0` would be stripped from Italy's `+39 06 1234 5678`.
/// Such a number is parsed again as `+CC…` without a region.
fn parse(region: Option<Id>, text: &str) -> Option<PhoneNumber> {
    let first = phonenumber::parse(region, text).ok()?;
    let source = first.code().source();
    if region.is_none() || !matches!(source, Source::Plus | Source::Idd) {
        return Some(first);
    }
    let digits: String = text.chars().filter(char::is_ascii_digit).collect();
    let code = first.code().value().to_string();
    // After the region's international prefix (`00`, `011`, `0011`), the
    // country code.
    let skip = match source {
        Source::Plus => Some(0),
        _ => region
            .and_then(|r| phonenumber::metadata::DATABASE.by_id(r.as_ref()))
            .and_then(|meta| meta.international_prefix())
            .and_then(|idd| idd.find(&digits))
            .filter(|m| m.start() == 0)
            .map(|m| m.end()),
    }
    .filter(|&i| digits.get(i..).is_some_and(|d| d.starts_with(&code)));
    let again = skip.and_then(|i| phonenumber::parse(None, format!("+{}", &digits[i..])).ok());
    Some(again.unwrap_or(first))
}

/// The part of a field that can be a phone number: from its first `+`,
/// digit or `(` to the last digit of the run of characters people write
/// numbers with (digits, spaces, `+ ( ) - . /`). What comes after a letter
/// or another sign (`x12`, `;ext=12`, `(mobile)`, `, poste 12`) is an
/// extension or a comment, never part of the number compared.
fn number_part(raw: &str) -> Option<&str> {
    let start = raw.find(|c: char| c == '+' || c == '(' || c.is_ascii_digit())?;
    let rest = &raw[start..];
    let end = rest
        .find(|c: char| {
            !(c.is_ascii_digit()
                || matches!(
                    c,
                    '+' | '(' | ')' | '-' | '.' | '/' | ' ' | '\u{a0}' | '\u{202f}' | '\t'
                ))
        })
        .unwrap_or(rest.len());
    let part = &rest[..end];
    let last = part.rfind(|c: char| c.is_ascii_digit())?;
    Some(&part[..=last])
}

/// `raw` with the decimal digits of every script (Arabic-Indic `٠٦١٢`,
/// fullwidth `０６`, Devanagari `०६`) written as ASCII digits, as
/// libphonenumber normalizes them before reading: a caller typed or sent in
/// another script is the same number. Borrowed when there is nothing to
/// change (the common case costs one scan).
pub fn ascii_digits(raw: &str) -> std::borrow::Cow<'_, str> {
    if raw.is_ascii() {
        return raw.into();
    }
    raw.chars()
        .map(|c| digit_value(c).map_or(c, |d| char::from(b'0' + d)))
        .collect::<String>()
        .into()
}

/// The value of a decimal digit of any script. Unicode keeps each script's
/// digits as a run of ten code points from 0 to 9 (runs may follow one
/// another, as the mathematical digits do), so a digit's value is its
/// distance from the start of its runs, modulo ten.
fn digit_value(c: char) -> Option<u8> {
    use unicode_general_category::{get_general_category, GeneralCategory};
    let nd = |c: char| get_general_category(c) == GeneralCategory::DecimalNumber;
    if c.is_ascii_digit() {
        return Some(c as u8 - b'0');
    }
    if !nd(c) {
        return None;
    }
    let mut before = 0u32;
    let mut at = u32::from(c);
    while let Some(prev) = at.checked_sub(1).and_then(char::from_u32) {
        if !nd(prev) {
            break;
        }
        before += 1;
        at -= 1;
    }
    u8::try_from(before % 10).ok()
}

/// Loads libphonenumber's metadata and the region's patterns now, at config
/// load: the first parse costs far more than the next ones (the metadata is
/// decoded and the patterns compiled on first use), which must not land on
/// the first call's deadline or block a worker.
pub fn warm(region: Id) {
    let _ = &*phonenumber::metadata::DATABASE;
    let _ = Number::read("0123456789", Some(region)).map(|n| n.format(Mode::National));
}

/// Parses an ISO 3166 region code such as `FR` (any case).
pub fn region(code: &str) -> Option<Id> {
    code.trim().to_ascii_uppercase().parse().ok()
}

/// Whether `stored` can hold `caller`'s number at all: its digits include
/// the caller's last six significant digits in a row, however it is
/// written. A cheap test before reading a stored number, which costs a
/// parse; never false for a stored number that reads to the caller's.
pub fn may_hold(stored: &str, tail: &[u8]) -> bool {
    if tail.is_empty() {
        return true;
    }
    let digits: Vec<u8> = ascii_digits(stored)
        .bytes()
        .filter(u8::is_ascii_digit)
        .take(MAX_FIELD_CHARS)
        .collect();
    digits.windows(tail.len()).any(|w| w == tail)
}

/// The caller's last significant digits that [`may_hold`] looks for.
pub fn tail(caller: &Number) -> Vec<u8> {
    let s = caller.significant().into_bytes();
    let from = s.len().saturating_sub(6);
    s[from..].to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fr(raw: &str) -> Option<String> {
        Number::read(raw, region("FR")).map(|n| n.e164())
    }

    fn same(a: &str, ra: &str, b: &str, rb: &str) -> bool {
        match (Number::read(a, region(ra)), Number::read(b, region(rb))) {
            (Some(x), Some(y)) => x == y,
            _ => false,
        }
    }

    #[test]
    fn every_way_people_write_a_french_mobile_is_the_same_number() {
        for stored in [
            "0612345678",
            "06 12 34 56 78",
            "06.12.34.56.78",
            "06-12-34-56-78",
            "+33 6 12 34 56 78",
            "+33 (0)6 12 34 56 78",
            "+33(0)612345678",
            "0033 6 12 34 56 78",
            "0033612345678",
            "6 12 34 56 78",
            "33612345678",
            "+33612345678",
            "06 12 34 56 78 (mobile)",
            "Tel: 06 12 34 56 78",
            "06 12 34 56 78 x12",
            "06 12 34 56 78;ext=12",
            "+33 6 12 34 56 78, poste 12",
            "06\u{a0}12\u{a0}34\u{a0}56\u{a0}78",
            "06 12 34 56 78 / 01 23 45 67 89",
        ] {
            assert_eq!(fr(stored).as_deref(), Some("+33612345678"), "{stored:?}");
        }
    }

    #[test]
    fn numbers_of_other_countries_keep_their_country() {
        let cases = [
            ("+1 415 555 0100", "US", "+14155550100"),
            ("(415) 555-0101", "US", "+14155550101"),
            ("+1 (415) 555-0101", "FR", "+14155550101"),
            ("+32 2 123 45 67", "FR", "+3221234567"),
            ("0032 2 123 45 67", "FR", "+3221234567"),
            ("02 123 45 67", "BE", "+3221234567"),
            ("+41 61 234 56 79", "FR", "+41612345679"),
            ("061 234 56 79", "CH", "+41612345679"),
            ("+49 30 1234567", "FR", "+49301234567"),
            ("030 1234567", "DE", "+49301234567"),
            ("+44 20 7946 0018", "FR", "+442079460018"),
            ("020 7946 0018", "GB", "+442079460018"),
            ("+44 (0)20 7946 0018", "FR", "+442079460018"),
            ("+39 06 1234 5678", "FR", "+390612345678"),
            ("06 1234 5678", "IT", "+390612345678"),
            ("0039 06 1234 5678", "FR", "+390612345678"),
        ];
        for (raw, region_code, want) in cases {
            let got = Number::read(raw, region(region_code)).map(|n| n.e164());
            assert_eq!(got.as_deref(), Some(want), "{raw:?} in {region_code}");
        }
    }

    #[test]
    fn numbers_that_share_digits_are_not_the_same_number() {
        assert!(!same("+41 61 234 56 79", "FR", "06 12 34 56 79", "FR"));
        assert!(!same("+44 20 7946 0018", "FR", "+33 2 07 94 60 01", "FR"));
        assert!(!same("+33612345678", "FR", "12345678", "FR"));
        assert!(!same("+33612345678", "FR", "+33 6 12 34 56 7", "FR"));
        assert!(!same("+33612345678", "FR", "+33 6 12 34 56 789", "FR"));
        // The same digits read in two regions are two numbers.
        assert!(!same("0612345678", "FR", "0612345678", "IT"));
        assert!(same("+390612345678", "FR", "0612345678", "IT"));
        assert!(same("+41612345679", "FR", "0041 61 234 56 79", "FR"));
    }

    #[test]
    fn what_holds_no_number_reads_as_none() {
        for raw in ["", "anonymous", "n/a", "()", "+", "x12"] {
            assert!(fr(raw).is_none(), "{raw:?}");
        }
        assert!(fr(&"9".repeat(40)).is_none());
        assert!(fr(&format!("{} 0612345678", "a".repeat(500))).is_none());
        // Without a region, only international numbers read.
        assert!(Number::read("0612345678", None).is_none());
        assert_eq!(
            Number::read("+33 6 12 34 56 78", None).map(|n| n.e164()),
            Some("+33612345678".into())
        );
    }

    #[test]
    fn a_caller_is_a_number_and_nothing_else() {
        let caller = |raw: &str| Number::read_caller(raw, region("FR")).map(|n| n.e164());
        for raw in [
            "0612345678",
            " +33 6 12 34 56 78 ",
            "0033612345678",
            "06.12.34.56.78",
        ] {
            assert_eq!(caller(raw).as_deref(), Some("+33612345678"), "{raw:?}");
        }
        for raw in [
            "0612345678' OR '1'='1",
            "06 12 34 56 78 (mobile)",
            "tel 0612345678",
            "0612345678 / 0123456789",
            "",
        ] {
            assert_eq!(caller(raw), None, "{raw:?}");
        }
    }

    #[test]
    fn an_international_prefix_is_the_region_s_own() {
        let us = |raw: &str| Number::read(raw, region("US")).map(|n| n.e164());
        assert_eq!(us("011 33 6 12 34 56 78").as_deref(), Some("+33612345678"));
        assert_eq!(us("011 39 06 1234 5678").as_deref(), Some("+390612345678"));
        assert_eq!(us("1 (415) 555-0100").as_deref(), Some("+14155550100"));
    }

    #[test]
    fn digits_of_every_script_are_read_as_digits() {
        for raw in [
            "٠٦١٢٣٤٥٦٧٨",
            "۰۶۱۲۳۴۵۶۷۸",
            "０６１２３４５６７８",
            "०६१२३४५६७८",
            "+٣٣ ٦ ١٢ ٣٤ ٥٦ ٧٨",
        ] {
            assert_eq!(
                Number::read_caller(raw, region("FR"))
                    .map(|n| n.e164())
                    .as_deref(),
                Some("+33612345678"),
                "{raw}"
            );
        }
        // Mathematical digits: runs of ten one after another.
        assert_eq!(ascii_digits("\u{1d7ce}\u{1d7d8}\u{1d7e1}\u{1d7ff}"), "0099");
        // Not decimal digits: left as they are.
        assert_eq!(ascii_digits("²½Ⅻ"), "²½Ⅻ");
        assert_eq!(ascii_digits("06 12"), "06 12");
    }

    #[test]
    fn regions_are_iso_codes() {
        assert!(region("fr").is_some());
        assert!(region("XX").is_none());
        assert!(region("").is_none());
    }

    #[test]
    fn the_tail_test_never_drops_a_number_that_reads_to_the_caller() {
        let caller = Number::read("+33612345678", region("FR")).unwrap();
        let tail = tail(&caller);
        for stored in [
            "+33 (0)6 12 34 56 78",
            "06.12.34.56.78 x12",
            "0033612345678",
        ] {
            assert!(may_hold(stored, &tail), "{stored}");
        }
        assert!(!may_hold("06 12 34 56 79", &tail));
    }
}
