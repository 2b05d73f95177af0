//! The index a call looks up: the compact arrays of the last full sync
//! ([`Compact`]), and over them the records incremental syncs changed
//! since, in small maps, so an edit in the CRM answers at once. A changed
//! record hides its earlier self in the arrays (a set of masked records);
//! a record deleted in the CRM stays until the next full sync, which
//! rebuilds the arrays from scratch. A record seen again as the index
//! holds it (a sync's overlap brings most records back) changes nothing.
//! When the changes grow past a share of the index, the sync task folds
//! them into new arrays off the async workers ([`Index::merged`]); until
//! then every cost of a change (a look-up, counting the numbers, saving
//! the index) is in proportion to the changes, not to the index.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use minijinja::value::Value;

use super::compact::{print, Builder, Compact};
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
#[derive(Debug, Clone)]
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
    base: Arc<Compact>,
    /// The numbers of the records changed since `base` was built.
    numbers: HashMap<Key, Arc<Record>>,
    /// The records changed since, by id hash.
    changed: HashMap<u64, Arc<Record>>,
    /// Records of `base` changed since: their numbers there no longer answer.
    masked: HashSet<u32>,
    /// Records applied since `base` was built (a bound on the maps above).
    applied: usize,
    /// Changes since the directory began: a snapshot that holds this
    /// version need not be written again. A fold keeps it.
    version: u64,
}

/// What the index answers, as a snapshot saves it: the arrays (shared, not
/// copied) and the changes beside them.
#[derive(Debug)]
pub(super) struct Frozen {
    pub(super) base: Arc<Compact>,
    /// The masked records of `base`, increasing.
    pub(super) masked: Vec<u32>,
    /// Each changed record, with which of its numbers it answers.
    pub(super) changed: Vec<(Arc<Record>, Vec<bool>)>,
}

impl Index {
    /// An index of a full sync's (or a snapshot's) arrays, nothing changed.
    pub(super) fn new(base: Compact) -> Self {
        Self {
            base: Arc::new(base),
            ..Self::default()
        }
    }

    /// The same index at a version (a full sync's is its predecessor's plus one).
    pub(super) fn at(mut self, version: u64) -> Self {
        self.version = version;
        self
    }

    pub(super) fn version(&self) -> u64 {
        self.version
    }

    /// The record holding `key`.
    pub(super) fn get(&self, key: &Key) -> Option<Entry> {
        Some(Entry {
            values: values::decode(self.bytes(key)?),
        })
    }

    /// The encoded values of the record holding `key`.
    fn bytes(&self, key: &Key) -> Option<&[u8]> {
        match self.numbers.get(key) {
            Some(record) => Some(&record.values),
            None => {
                let r = self.base.find(key)?;
                if !self.masked.is_empty() && self.masked.contains(&r) {
                    return None;
                }
                Some(self.base.values(r))
            }
        }
    }

    /// Puts an incremental sync's records in: each in place of its earlier
    /// self, and a record that lost every number out. A record the index
    /// already holds as it is changes nothing. Returns the records that
    /// changed.
    pub(super) fn apply(&mut self, records: Vec<Record>) -> usize {
        let mut changes = 0;
        for record in records {
            if self.holds(&record) {
                continue;
            }
            changes += 1;
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
        if changes > 0 {
            self.version += 1;
        }
        changes
    }

    /// Whether the index holds `record` as it is: the same values and
    /// numbers under its id (whichever record a number shared with
    /// another answers), or, without an id, each of its numbers answering
    /// its values.
    fn holds(&self, record: &Record) -> bool {
        let Some(id) = record.id else {
            return record
                .numbers
                .iter()
                .all(|k| self.bytes(k) == Some(&record.values[..]));
        };
        if let Some(old) = self.changed.get(&id) {
            return old.numbers == record.numbers && old.values == record.values;
        }
        match self.base.record(id).filter(|r| !self.masked.contains(r)) {
            Some(r) => {
                self.base.values(r) == &record.values[..]
                    && self.base.print(r) == Some(print(&record.numbers))
            }
            // Not in the index: it still is not, if it has no number.
            None => record.numbers.is_empty(),
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

    /// The numbers that answer: the arrays', but those of masked records
    /// and those a changed record took, and the changed records'.
    pub(super) fn len(&self) -> usize {
        let masked: usize = self.masked.iter().map(|&r| self.base.count(r)).sum();
        let taken = self
            .numbers
            .keys()
            .filter(|k| self.base.find(k).is_some_and(|r| !self.masked.contains(&r)))
            .count();
        (self.base.numbers.len())
            .saturating_sub(masked + taken)
            .saturating_add(self.numbers.len())
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
                let print = base.print(r).unwrap_or(0);
                *seq = build.record(base.id(r), print, base.values(r))?;
            }
        }
        for s in base.numbers.iter() {
            let seq = seq_of.get(s.record as usize).copied().unwrap_or(u32::MAX);
            if seq != u32::MAX && !self.numbers.contains_key(&s.key()) {
                build.number(s.key(), seq);
            }
        }
        drop(seq_of);
        for (record, owned) in self.changes() {
            let seq = build.record(record.id, print(&record.numbers), &record.values)?;
            for (k, _) in record.numbers.iter().zip(owned).filter(|(_, o)| *o) {
                build.number(*k, seq);
            }
        }
        Ok(build.finish())
    }

    /// Each changed record once, with which of its numbers it answers.
    fn changes(&self) -> Vec<(Arc<Record>, Vec<bool>)> {
        let mut seen = HashSet::new();
        self.changed
            .values()
            .chain(self.numbers.values())
            .filter(|r| seen.insert(Arc::as_ptr(r)))
            .map(|r| {
                let owned = r
                    .numbers
                    .iter()
                    .map(|k| self.numbers.get(k).is_some_and(|o| Arc::ptr_eq(o, r)))
                    .collect();
                (Arc::clone(r), owned)
            })
            .collect()
    }

    /// What a snapshot saves; its cost is the changes', not the index's.
    pub(super) fn freeze(&self) -> Frozen {
        let mut masked: Vec<u32> = self.masked.iter().copied().collect();
        masked.sort_unstable();
        Frozen {
            base: Arc::clone(&self.base),
            masked,
            changed: self.changes(),
        }
    }

    /// The index a snapshot saved.
    pub(super) fn thaw(base: Compact, masked: Vec<u32>, changed: Vec<(Record, Vec<bool>)>) -> Self {
        let mut index = Self::new(base);
        index.masked = masked.into_iter().collect();
        index.applied = changed.len();
        for (record, owned) in changed {
            let record = Arc::new(record);
            if let Some(id) = record.id {
                index.changed.insert(id, Arc::clone(&record));
            }
            for (k, _) in record.numbers.iter().zip(owned).filter(|(_, o)| *o) {
                index.numbers.insert(*k, Arc::clone(&record));
            }
        }
        index
    }
}

#[cfg(test)]
#[path = "index_tests.rs"]
mod tests;
