//! The caller-match matrix every recipe's test CRM runs: phone numbers
//! stored the ways people type them in a French CRM, each a different
//! person, called in every shape a French PBX sends (E.164, national, `00`
//! international, digits without `+`); and callers whose digits overlap a
//! stored number of someone else (another country's number with the same
//! national digits, Italy's leading zero, a number that is another's
//! suffix), who must never get that person's card.
//!
//! A recipe test stores [`people`] in its test CRM (each as the CRM keeps a
//! contact: the number in one of its phone fields), asks [`calls`] through
//! the real gateway, maps each reply back to a person id (or `None`) and
//! hands the lot to [`assert_all`], which reports every miss and every
//! wrong card at once.

/// One stored record of the matrix: an id for the test CRM, the text of its
/// phone field exactly as typed, and the number it is (E.164).
#[derive(Debug, Clone, Copy)]
pub struct Person {
    pub id: u32,
    pub stored: &'static str,
    pub e164: &'static str,
}

/// Stored the ways people type them; every one must be found from every
/// caller shape.
const FOUND: [(&str, &str); 20] = [
    ("06.12.34.56.80", "+33612345680"),
    ("06-12-34-56-81", "+33612345681"),
    ("+33 (0)6 12 34 56 82", "+33612345682"),
    ("0033 6 12 34 56 83", "+33612345683"),
    ("0612345684", "+33612345684"),
    ("6 12 34 56 85", "+33612345685"),
    ("+33612345686", "+33612345686"),
    ("+33 6 12 34 56 87", "+33612345687"),
    ("06 12 34 56 88 (mobile)", "+33612345688"),
    ("01 23 45 67 89 x12", "+33123456789"),
    ("01 23 45 67 90;ext=12", "+33123456790"),
    ("+1 415 555 0100", "+14155550100"),
    ("+1 (415) 555-0101", "+14155550101"),
    ("+32 2 123 45 67", "+3221234567"),
    ("0032 470 12 34 56", "+32470123456"),
    ("+41 78 123 45 67", "+41781234567"),
    ("+49 30 1234567", "+49301234567"),
    ("+44 20 7946 0018", "+442079460018"),
    ("+39 06 1234 5678", "+390612345678"),
    ("+33 1 23 45 67 91 / 06 12 34 56 92", "+33123456791"),
];

/// Stored numbers that share digits with a caller who is someone else.
const BAIT: [(&str, &str); 4] = [
    // Same national digits as the Swiss caller +41 61 234 56 79.
    ("06 12 34 56 79", "+33612345679"),
    // Same digits in a row as the French caller 02 79 46 00 18, in the
    // UK's +44 20 7946 0018 written another way.
    ("+44 (0)20 7946 0019", "+442079460019"),
    // Its digits end with those of the French caller 06 12 34 56 93.
    ("+39 06 12 34 56 93", "+390612345693"),
    // The last eight digits of the French caller 06 12 34 56 94.
    ("12 34 56 94", "+3312345694"),
];

/// Callers nobody has, each overlapping a [`BAIT`] number (and the number
/// each is).
const STRANGERS: [(&str, &str); 4] = [
    ("+41612345679", "+41612345679"),
    ("0279460019", "+33279460019"),
    ("0612345693", "+33612345693"),
    ("0612345694", "+33612345694"),
];

/// Every record of the matrix, ids from 1.
pub fn people() -> Vec<Person> {
    FOUND
        .iter()
        .chain(BAIT.iter())
        .zip(1..)
        .map(|(&(stored, e164), id)| Person { id, stored, e164 })
        .collect()
}

/// The shapes a French PBX sends a number in: E.164, and for French numbers
/// also national, `00` international and digits without `+`; for other
/// countries `00` international.
pub fn shapes(e164: &str) -> Vec<String> {
    let digits = &e164[1..];
    let mut out = vec![e164.to_owned(), format!("00{digits}")];
    if let Some(national) = digits.strip_prefix("33") {
        out.push(format!("0{national}"));
        out.push(digits.to_owned());
    }
    out
}

/// Every call of the matrix: the caller, and whose card it must open
/// (`None`: nobody's).
pub fn calls() -> Vec<(String, Option<u32>)> {
    let mut out = Vec::new();
    for p in people().iter().take(FOUND.len()) {
        for caller in shapes(p.e164) {
            out.push((caller, Some(p.id)));
        }
    }
    for (caller, _) in STRANGERS {
        out.push((caller.to_owned(), None));
    }
    out
}

/// Checks every call's outcome (`got`: whose card opened, `None` for
/// `{"action":"none"}`) and reports all misses and wrong cards at once.
pub fn assert_all(crm: &str, results: &[(String, Option<u32>, Option<u32>)]) {
    let people = people();
    let stored = |id: Option<u32>| {
        id.and_then(|id| people.iter().find(|p| p.id == id))
            .map_or("nobody".to_owned(), |p| format!("#{} {:?}", p.id, p.stored))
    };
    let mut wrong = Vec::new();
    let mut missed = Vec::new();
    for (caller, want, got) in results {
        match (want, got) {
            (w, g) if w == g => {}
            (Some(_), None) => missed.push(format!("{caller} -> none, wanted {}", stored(*want))),
            _ => wrong.push(format!(
                "{caller} -> {}, wanted {}",
                stored(*got),
                stored(*want)
            )),
        }
    }
    let total = results.iter().filter(|(_, w, _)| w.is_some()).count();
    assert!(
        wrong.is_empty() && missed.is_empty(),
        "{crm}: found {} of {total}, {} wrong card(s)\nwrong:\n  {}\nmissed:\n  {}",
        total - missed.len(),
        wrong.len(),
        wrong.join("\n  "),
        missed.join("\n  ")
    );
}

#[test]
fn the_matrix_is_what_it_says() {
    let people = people();
    // Every stored number is a different number.
    let mut numbers: Vec<&str> = people.iter().map(|p| p.e164).collect();
    numbers.sort_unstable();
    numbers.dedup();
    assert_eq!(numbers.len(), people.len());
    // No stranger is anybody.
    for (caller, e164) in STRANGERS {
        assert!(people.iter().all(|p| p.e164 != e164), "{caller}");
    }
    assert!(calls().len() > 60);
}
