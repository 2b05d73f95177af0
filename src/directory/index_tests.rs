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
fn a_record_seen_again_as_it_is_changes_nothing() {
    let mut index = full(vec![record(1, &[A, C], "Jeanne"), record(2, &[C], "Paul")]);
    // Paul took C from Jeanne in the full sync; both come back as they were.
    let again = || vec![record(1, &[A, C], "Jeanne"), record(2, &[C], "Paul")];
    assert_eq!(index.apply(again()), 0);
    assert_eq!(index.version(), 0);
    // A new name, then new numbers, are changes; each once.
    assert_eq!(index.apply(vec![record(1, &[A, C], "Jeanne M.")]), 1);
    assert_eq!(index.apply(vec![record(1, &[A, C], "Jeanne M.")]), 0);
    assert_eq!(index.apply(vec![record(2, &[B, C], "Paul")]), 1);
    assert_eq!(index.apply(vec![record(2, &[B, C], "Paul")]), 0);
    assert_eq!(index.version(), 2);
    // A record the index never held, without numbers: nothing.
    let gone = Record {
        id: Some(9),
        numbers: Box::new([]),
        values: Box::new([]),
    };
    assert_eq!(index.apply(vec![gone]), 0);
    // Without an id: a change unless its numbers answer its values.
    let mut v = Vec::new();
    values::encode([Some(&json!("Paul"))].into_iter(), &mut v);
    let anonymous = || Record {
        id: None,
        numbers: Box::new([B]),
        values: v.clone().into(),
    };
    assert_eq!(index.apply(vec![anonymous()]), 0);
    let mut other = anonymous();
    other.numbers = Box::new([(39, 1, 0)]);
    assert_eq!(index.apply(vec![other]), 1);
}

#[test]
fn the_count_of_numbers_follows_every_change_without_a_pass_over_the_index() {
    let mut index = full(vec![
        record(1, &[A, B], "Jeanne"),
        record(2, &[C], "Paul"),
        record(3, &[(1, 5, 0)], "Ann"),
    ]);
    assert_eq!(index.len(), 4);
    // Paul takes Jeanne's B, Jeanne keeps A; Ann loses hers.
    index.apply(vec![record(2, &[B, C], "Paul")]);
    assert_eq!(index.len(), 4);
    index.apply(vec![Record {
        id: Some(3),
        numbers: Box::new([]),
        values: Box::new([]),
    }]);
    assert_eq!(index.len(), 3);
    index.apply(vec![record(1, &[A], "Jeanne")]);
    let merged = Index::new(index.merged().unwrap());
    assert_eq!((index.len(), merged.len()), (3, 3));
}

#[test]
fn a_frozen_index_thaws_into_one_that_answers_the_same() {
    let mut index = full(vec![record(1, &[A, B], "Jeanne"), record(2, &[C], "Paul")]);
    index.apply(vec![record(3, &[B], "Marie"), record(2, &[C, A], "Paul")]);
    let frozen = index.freeze();
    assert_eq!(frozen.masked, vec![index.base.record(2).unwrap()]);
    let changed = frozen
        .changed
        .iter()
        .map(|(r, owned)| (Record::clone(r), owned.clone()))
        .collect();
    let base = Compact::clone(&frozen.base);
    let thawed = Index::thaw(base, frozen.masked.clone(), changed);
    for k in [A, B, C] {
        assert_eq!(name(&thawed, k), name(&index, k), "{k:?}");
    }
    assert_eq!(thawed.len(), index.len());
    // Seen again after the restart: still nothing changed.
    let mut thawed = thawed;
    assert_eq!(thawed.apply(vec![record(3, &[B], "Marie")]), 0);
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
