use super::*;
use serde_json::json;

fn record(id: u64, numbers: &[Key], name: &str) -> Record {
    let mut v = Vec::new();
    values::encode([Some(&json!(name))].into_iter(), &mut v);
    Record {
        id: Some(id),
        numbers: numbers.into(),
        values: v.into(),
    }
}

fn name(index: &Index, k: Key) -> Option<String> {
    let e = index.get(&k)?;
    Some(e.values.first()?.as_str()?.to_owned())
}

fn full(records: Vec<Record>) -> Index {
    let mut b = Builder::default();
    for r in records {
        b.push(r.id, &r.numbers, &r.values).unwrap();
    }
    Index::new(b.finish())
}

const A: Key = (33, 612345678, 0);
const B: Key = (33, 698765432, 0);
const C: Key = (33, 611111111, 0);

#[test]
fn an_edit_answers_at_once_and_hides_the_records_old_numbers() {
    let mut index = full(vec![record(1, &[A, B], "Jeanne"), record(2, &[C], "Paul")]);
    assert_eq!(index.len(), 3);
    assert_eq!(name(&index, A).as_deref(), Some("Jeanne"));
    index.apply(vec![record(1, &[B], "Jeanne M.")]);
    assert_eq!(name(&index, A), None, "her old number went with the edit");
    assert_eq!(name(&index, B).as_deref(), Some("Jeanne M."));
    assert_eq!(name(&index, C).as_deref(), Some("Paul"));
    assert_eq!(index.len(), 2);
    // Edited again: the first edit's numbers go too.
    index.apply(vec![record(1, &[A], "Jeanne")]);
    assert_eq!(name(&index, B), None);
    assert_eq!(name(&index, A).as_deref(), Some("Jeanne"));
    // Paul lost his number: out.
    index.apply(vec![Record {
        id: Some(2),
        numbers: Box::new([]),
        values: Box::new([]),
    }]);
    assert_eq!(name(&index, C), None);
    assert_eq!(index.len(), 1);
    // A merge answers the same.
    let merged = Index::new(index.merged().unwrap());
    for k in [A, B, C] {
        assert_eq!(name(&merged, k), name(&index, k));
    }
    assert_eq!(merged.len(), 1);
    assert!(merged.compact().is_some() && index.compact().is_none());
}

#[test]
fn a_new_record_may_take_a_number_from_the_arrays() {
    let mut index = full(vec![record(1, &[A], "Jeanne")]);
    index.apply(vec![record(3, &[A, C], "Marie")]);
    assert_eq!(name(&index, A).as_deref(), Some("Marie"));
    assert_eq!(index.len(), 2);
    let merged = Index::new(index.merged().unwrap());
    assert_eq!(name(&merged, A).as_deref(), Some("Marie"));
    assert_eq!(name(&merged, C).as_deref(), Some("Marie"));
    assert_eq!(merged.len(), 2);
}

#[test]
fn changes_past_a_share_of_the_index_want_a_merge() {
    let mut index = full(Vec::new());
    let many = (0..=DIRECTORY_MERGE_MIN as u64)
        .map(|i| record(i, &[(33, 600000000 + i, 0)], "x"))
        .collect();
    assert!(!index.wants_merge());
    index.apply(many);
    assert!(index.wants_merge());
}
