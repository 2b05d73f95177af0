//! The index itself: each stored number (as [`crate::phone`] compares
//! them) to the record it belongs to, and each record by its id so an
//! edited record drops its old numbers. What a call looks up, and what a
//! sync's pages are put into.

use std::collections::HashMap;
use std::sync::Arc;

use minijinja::value::Value;

use crate::extract::JsonPath;
use crate::phone::Number;

/// A number as the index keys it: country code, national number, leading zeros.
pub(super) type Key = (u16, u64, u8);

#[derive(Debug, Default)]
pub(super) struct Index {
    pub(super) numbers: HashMap<Key, Arc<Entry>>,
    /// Each record by a hash of its id, so an edited record drops its old
    /// numbers. A hash, not the id, keeps the index small; two ids with
    /// one 64-bit hash (a chance of about 3 in 10^8 for a million records) would
    /// lose a number until the next full sync.
    pub(super) ids: HashMap<u64, Arc<Entry>>,
}

/// What the index keeps of one record: the values its reply needs, in the
/// order of the backend's `extract` (undefined where the record had none).
#[derive(Debug)]
pub struct Entry {
    pub(super) id: Option<u64>,
    pub(super) numbers: Box<[Key]>,
    pub(super) values: Box<[Value]>,
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

pub(super) fn key(n: &Number) -> Key {
    let (value, zeros) = n.national_parts();
    (n.code(), value, zeros)
}

/// Puts a page's records in `index`: each in place of its earlier self,
/// and a record that lost every number out.
pub(super) fn apply(index: &mut Index, entries: Vec<(Option<u64>, Option<Arc<Entry>>)>) {
    for (id, entry) in entries {
        match entry {
            Some(entry) => insert(index, entry),
            None => {
                if let Some(old) = id.and_then(|id| index.ids.remove(&id)) {
                    remove(index, &old);
                }
            }
        }
    }
}

/// Puts a record in the index, in place of its earlier self.
pub(super) fn insert(index: &mut Index, entry: Arc<Entry>) {
    if let Some(old) = entry
        .id
        .and_then(|id| index.ids.insert(id, Arc::clone(&entry)))
    {
        remove(index, &old);
    }
    for k in entry.numbers.iter() {
        index.numbers.insert(*k, Arc::clone(&entry));
    }
}

/// Takes a record's numbers out of the index (those still its own).
pub(super) fn remove(index: &mut Index, old: &Arc<Entry>) {
    for k in old.numbers.iter() {
        if index.numbers.get(k).is_some_and(|e| Arc::ptr_eq(e, old)) {
            index.numbers.remove(k);
        }
    }
}
