//! The index a call looks up: the compact arrays of the last full sync
//! ([`Compact`]), and over them the records incremental syncs changed
//! since, in small maps, so an edit in the CRM answers at once. A changed
//! record hides its earlier self in the arrays (a set of masked records);
//! a record deleted in the CRM stays until the next full sync, which
//! rebuilds the arrays from scratch. When the changes grow past a share of
//! the index (or before a snapshot is written), the sync task folds them
//! into new arrays off the async workers ([`Index::merged`]).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use minijinja::value::Value;

use super::compact::{Builder, Compact};
use super::values;
use crate::constants::{DIRECTORY_MERGE_MIN, DIRECTORY_MERGE_SHARE};
use crate::extract::JsonPath;
use crate::phone::Number;

/// A number as the index keys it: country code, national number, leading zeros.
pub(super) type Key = (u16, u64, u8);

/// The key of a number read.
pub(super) fn key(n: &Number) -> Key {
    let (value, zeros) = n.national_parts();
    (n.code(), value, zeros)
}

/// One record as a page brings it.
#[derive(Debug)]
pub(super) struct Record {
    /// Its id's hash: an edited record replaces its earlier self. A hash,
    /// not the id, keeps the index small; two ids with one 64-bit hash (a
    /// chance of about 3 in 10^8 for a million records) would lose a
    /// number until the next full sync.
    pub(super) id: Option<u64>,
    /// Its numbers; none: the record is out of the index (it lost them).
    pub(super) numbers: Box<[Key]>,
    /// The values its reply reads ([`values`]).
    pub(super) values: Box<[u8]>,
}

/// A record id's hash, as the index keys records.
pub(super) fn id_hash(id: &serde_json::Value) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let mut h = std::hash::DefaultHasher::new();
    match id {
        serde_json::Value::String(s) => s.hash(&mut h),
        serde_json::Value::Number(n) => n.to_string().hash(&mut h),
        _ => return None,
    }
    Some(h.finish())
}

/// What a call found: the record's values, in the order of the backend's
/// `extract` (undefined where the record had none).
#[derive(Debug)]
pub struct Entry {
    values: Vec<Value>,
}

impl Entry {
    /// The values by name, as the reply's templates see them.
    pub fn values(&self, names: &[(Value, JsonPath)]) -> Vec<(Value, Value)> {
        names
            .iter()
            .zip(self.values.iter())
            .filter(|(_, v)| !v.is_undefined())
            .map(|((n, _), v)| (n.clone(), v.clone()))
            .collect()
    }
}

#[derive(Debug, Default)]
pub(super) struct Index {
    base: Compact,
    /// The numbers of the records changed since `base` was built.
    numbers: HashMap<Key, Arc<Record>>,
    /// The records changed since, by id hash.
    changed: HashMap<u64, Arc<Record>>,
    /// Records of `base` changed since: their numbers there no longer answer.
    masked: HashSet<u32>,
    /// Records applied since `base` was built (a bound on the maps above).
    applied: usize,
}

impl Index {
    /// An index of a full sync's (or a snapshot's) arrays, nothing changed.
    pub(super) fn new(base: Compact) -> Self {
        Self {
            base,
            ..Self::default()
        }
    }

    /// The record holding `key`.
    pub(super) fn get(&self, key: &Key) -> Option<Entry> {
        let bytes = match self.numbers.get(key) {
            Some(record) => &record.values,
            None => {
                let r = self.base.find(key)?;
                if !self.masked.is_empty() && self.masked.contains(&r) {
                    return None;
                }
                self.base.values(r)
            }
        };
        Some(Entry {
            values: values::decode(bytes),
        })
    }

    /// Puts an incremental sync's records in: each in place of its earlier
    /// self, and a record that lost every number out.
    pub(super) fn apply(&mut self, records: Vec<Record>) {
        for record in records {
            self.applied += 1;
            if let Some(id) = record.id {
                if let Some(r) = self.base.record(id) {
                    self.masked.insert(r);
                }
                if let Some(old) = self.changed.remove(&id) {
                    self.forget(&old);
                }
            }
            if record.numbers.is_empty() {
                continue;
            }
            let record = Arc::new(record);
            if let Some(id) = record.id {
                self.changed.insert(id, Arc::clone(&record));
            }
            for k in record.numbers.iter() {
                self.numbers.insert(*k, Arc::clone(&record));
            }
        }
    }

    /// Takes a changed record's numbers out (those still its own).
    fn forget(&mut self, old: &Arc<Record>) {
        for k in old.numbers.iter() {
            if self.numbers.get(k).is_some_and(|r| Arc::ptr_eq(r, old)) {
                self.numbers.remove(k);
            }
        }
    }

    /// The numbers that answer.
    pub(super) fn len(&self) -> usize {
        if self.applied == 0 {
            return self.base.numbers.len();
        }
        let kept = self
            .base
            .numbers
            .iter()
            .filter(|s| !self.masked.contains(&s.record) && !self.numbers.contains_key(&s.key()))
            .count();
        kept + self.numbers.len()
    }

    /// The arrays alone answer (nothing changed since they were built).
    pub(super) fn compact(&self) -> Option<&Compact> {
        (self.applied == 0).then_some(&self.base)
    }

    /// Whether the changes since the last build are worth folding in.
    pub(super) fn wants_merge(&self) -> bool {
        self.applied > DIRECTORY_MERGE_MIN.max(self.base.records() / DIRECTORY_MERGE_SHARE)
    }

    /// New arrays holding what this index answers (blocking work: a sort).
    pub(super) fn merged(&self) -> Result<Compact, String> {
        let base = &self.base;
        let mut build = Builder::default();
        let mut seq_of = vec![u32::MAX; base.records()];
        for (r, seq) in seq_of.iter_mut().enumerate() {
            let r = r as u32;
            if !self.masked.contains(&r) {
                *seq = build.record(base.id(r), base.values(r))?;
            }
        }
        for s in base.numbers.iter() {
            let seq = seq_of.get(s.record as usize).copied().unwrap_or(u32::MAX);
            if seq != u32::MAX && !self.numbers.contains_key(&s.key()) {
                build.number(s.key(), seq);
            }
        }
        drop(seq_of);
        let mut seen = HashSet::new();
        for record in self.numbers.values() {
            if !seen.insert(Arc::as_ptr(record)) {
                continue;
            }
            let seq = build.record(record.id, &record.values)?;
            for k in record.numbers.iter() {
                if self.numbers.get(k).is_some_and(|r| Arc::ptr_eq(r, record)) {
                    build.number(*k, seq);
                }
            }
        }
        Ok(build.finish())
    }
}

#[cfg(test)]
mod tests {
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
}
