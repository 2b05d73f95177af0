use super::*;

fn built(records: &[(Option<u64>, &[Key], &str)]) -> Compact {
    let mut b = Builder::default();
    for (id, numbers, v) in records {
        b.push(*id, numbers, v.as_bytes()).unwrap();
    }
    let c = b.finish();
    c.check().unwrap();
    c
}

fn at(c: &Compact, key: Key) -> Option<&str> {
    c.find(&key)
        .map(|r| std::str::from_utf8(c.values(r)).unwrap())
}

#[test]
fn a_later_record_of_the_same_id_replaces_the_earlier_and_its_numbers() {
    let c = built(&[
        (Some(7), &[(33, 612345678, 0), (33, 698765432, 0)], "old"),
        (Some(3), &[(33, 611111111, 0)], "three"),
        (None, &[(39, 612345, 1)], "no id"),
        (Some(7), &[(33, 612345678, 0)], "new"),
    ]);
    assert_eq!(at(&c, (33, 612345678, 0)), Some("new"));
    assert_eq!(
        at(&c, (33, 698765432, 0)),
        None,
        "the old record's number went"
    );
    assert_eq!(at(&c, (33, 611111111, 0)), Some("three"));
    assert_eq!(at(&c, (39, 612345, 1)), Some("no id"));
    assert_eq!(
        at(&c, (39, 612345, 0)),
        None,
        "leading zeros tell numbers apart"
    );
    assert_eq!(c.records(), 3);
    assert_eq!(&*c.ids, &[3, 7]);
    assert_eq!(c.record(7).and_then(|r| c.id(r)), Some(7));
    assert_eq!(c.record(8), None);
}

#[test]
fn a_number_in_two_records_belongs_to_the_later() {
    let c = built(&[
        (Some(1), &[(33, 612345678, 0)], "first"),
        (Some(2), &[(33, 612345678, 0)], "second"),
    ]);
    assert_eq!(at(&c, (33, 612345678, 0)), Some("second"));
    assert_eq!(c.numbers.len(), 1);
}

#[test]
fn an_empty_index_finds_nothing_and_checks() {
    let c = Compact::default();
    c.check().unwrap();
    assert_eq!(c.find(&(33, 1, 0)), None);
    assert_eq!(c.values(0), b"");
    assert_eq!(built(&[]).records(), 0);
}

#[test]
fn check_refuses_arrays_a_look_up_cannot_trust() {
    let good = built(&[(Some(1), &[(33, 1, 0)], "a"), (Some(2), &[(33, 2, 0)], "b")]);
    let mut bad = built(&[(Some(1), &[(33, 1, 0)], "a"), (Some(2), &[(33, 2, 0)], "b")]);
    bad.numbers[0].record = 9;
    assert!(bad.check().is_err());
    let mut bad = built(&[(Some(1), &[(33, 1, 0)], "a"), (Some(2), &[(33, 2, 0)], "b")]);
    bad.numbers.swap(0, 1);
    assert!(bad.check().is_err());
    let mut bad = built(&[(Some(1), &[(33, 1, 0)], "a"), (Some(2), &[(33, 2, 0)], "b")]);
    bad.starts[1] = 5;
    assert!(bad.check().is_err());
    assert!(good.check().is_ok());
}
