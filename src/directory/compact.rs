//! The index as a full sync builds it: a few flat arrays instead of a map
//! entry and an allocation per number, so a million numbers fit in well
//! under 100 MB. One sorted array of (number, record) answers a call by
//! binary search; the records' values sit in one arena of bytes
//! ([`super::values`]); the records' id hashes, sorted, find the record an
//! incremental sync replaces, and each record's print (a hash of its
//! numbers) and count (the numbers it answers) tell whether a record seen
//! again changed, and how many numbers masking it hides. Built once per
//! full sync (and when the changes since grow, see [`super::index`]),
//! never edited in place.

use super::index::Key;

/// A number and the record it belongs to: 16 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Slot {
    pub(super) national: u64,
    pub(super) record: u32,
    pub(super) code: u16,
    pub(super) zeros: u8,
}

impl Slot {
    pub(super) fn key(&self) -> Key {
        (self.code, self.national, self.zeros)
    }
}

/// A hash of a record's numbers (sorted, each once, as a page reads
/// them): a record seen again with the same print and values is not a
/// change. Two sets of numbers with one print (a chance of 1 in 4
/// billion per edit that leaves the values as they were) would keep the
/// old numbers until the next full sync.
pub(super) fn print(numbers: &[Key]) -> u32 {
    use std::hash::{Hash, Hasher};
    let mut h = std::hash::DefaultHasher::new();
    numbers.hash(&mut h);
    h.finish() as u32
}

/// Records are numbered by their place: those with an id first, in the
/// order of their id's hash, then those without one.
#[derive(Debug, Clone)]
pub(super) struct Compact {
    /// Sorted by number, one slot per number.
    pub(super) numbers: Box<[Slot]>,
    /// The id hash of each record that has one, increasing.
    pub(super) ids: Box<[u64]>,
    /// Where each record's values start in `values`, and the end.
    pub(super) starts: Box<[u32]>,
    pub(super) values: Box<[u8]>,
    /// Each record's [`print`].
    pub(super) prints: Box<[u32]>,
    /// How many slots of `numbers` each record has (derived from them).
    counts: Box<[u32]>,
}

impl Default for Compact {
    fn default() -> Self {
        Self {
            numbers: Box::new([]),
            ids: Box::new([]),
            starts: Box::new([0]),
            values: Box::new([]),
            prints: Box::new([]),
            counts: Box::new([]),
        }
    }
}

impl Compact {
    /// The record holding `key`.
    pub(super) fn find(&self, key: &Key) -> Option<u32> {
        self.numbers
            .binary_search_by(|s| s.key().cmp(key))
            .ok()
            .and_then(|i| self.numbers.get(i))
            .map(|s| s.record)
    }

    /// The record of the id with this hash.
    pub(super) fn record(&self, id: u64) -> Option<u32> {
        let i = self.ids.binary_search(&id).ok()?;
        u32::try_from(i).ok()
    }

    /// A record's id hash.
    pub(super) fn id(&self, record: u32) -> Option<u64> {
        self.ids.get(record as usize).copied()
    }

    /// A record's values, encoded.
    pub(super) fn values(&self, record: u32) -> &[u8] {
        let r = record as usize;
        let (Some(&from), Some(&to)) = (self.starts.get(r), self.starts.get(r + 1)) else {
            return &[];
        };
        self.values.get(from as usize..to as usize).unwrap_or(&[])
    }

    /// A record's print.
    pub(super) fn print(&self, record: u32) -> Option<u32> {
        self.prints.get(record as usize).copied()
    }

    /// How many numbers of the arrays are the record's.
    pub(super) fn count(&self, record: u32) -> usize {
        self.counts.get(record as usize).map_or(0, |&c| c as usize)
    }

    pub(super) fn records(&self) -> usize {
        self.starts.len().saturating_sub(1)
    }

    /// The arrays read from a snapshot, once [`Compact::check`] passed
    /// (the counts are not saved: they follow from the numbers).
    pub(super) fn from_parts(
        numbers: Box<[Slot]>,
        ids: Box<[u64]>,
        starts: Box<[u32]>,
        values: Box<[u8]>,
        prints: Box<[u32]>,
    ) -> Result<Self, &'static str> {
        let c = Self {
            numbers,
            ids,
            starts,
            values,
            prints,
            counts: Box::new([]),
        };
        c.check()?;
        Ok(c.counted())
    }

    /// Fills in each record's count.
    fn counted(mut self) -> Self {
        let mut counts = vec![0u32; self.records()];
        for s in self.numbers.iter() {
            if let Some(c) = counts.get_mut(s.record as usize) {
                *c = c.saturating_add(1);
            }
        }
        self.counts = counts.into_boxed_slice();
        self
    }

    /// Checks what a snapshot said: the numbers sorted and unique, every
    /// slot naming a record, the ids increasing, the values' bounds in
    /// order. A look-up of arrays that pass can only miss, never panic.
    pub(super) fn check(&self) -> Result<(), &'static str> {
        let records = self.records();
        if self.starts.first() != Some(&0) {
            return Err("values do not start at 0");
        }
        if self.starts.windows(2).any(|w| w[0] > w[1])
            || self.starts.last().map(|&e| e as usize) != Some(self.values.len())
        {
            return Err("values out of order");
        }
        if self.ids.len() > records || self.ids.windows(2).any(|w| w[0] >= w[1]) {
            return Err("ids out of order");
        }
        if self.prints.len() != records {
            return Err("prints do not match the records");
        }
        if self.numbers.windows(2).any(|w| w[0].key() >= w[1].key())
            || self.numbers.iter().any(|s| s.record as usize >= records)
        {
            return Err("numbers out of order");
        }
        Ok(())
    }
}

/// A full sync's records as pages bring them, made [`Compact`] at the end.
#[derive(Debug, Default)]
pub(super) struct Builder {
    /// Each record's id hash, in the order pushed.
    ids: Vec<Option<u64>>,
    /// Each record's print, in the order pushed.
    prints: Vec<u32>,
    /// Where each record's values start in `values`.
    starts: Vec<u32>,
    values: Vec<u8>,
    /// Each number, `record` the order it was pushed in.
    numbers: Vec<Slot>,
}

impl Builder {
    /// Adds a record and its numbers (sorted, each once); a later record
    /// of the same id, or with the same number, wins (the newer page, the
    /// later change).
    pub(super) fn push(
        &mut self,
        id: Option<u64>,
        numbers: &[Key],
        values: &[u8],
    ) -> Result<(), String> {
        let seq = self.record(id, print(numbers), values)?;
        for &key in numbers {
            self.number(key, seq);
        }
        Ok(())
    }

    /// Adds a record without its numbers; returns its place in the order pushed.
    pub(super) fn record(
        &mut self,
        id: Option<u64>,
        print: u32,
        values: &[u8],
    ) -> Result<u32, String> {
        let seq = u32::try_from(self.ids.len())
            .ok()
            .filter(|&s| s < u32::MAX)
            .ok_or("more than 4 billion records")?;
        let start = u32::try_from(self.values.len())
            .ok()
            .filter(|s| u32::try_from(values.len()).is_ok_and(|n| s.checked_add(n).is_some()))
            .ok_or("the records' values take more than 4 GiB")?;
        self.ids.push(id);
        self.prints.push(print);
        self.starts.push(start);
        self.values.extend_from_slice(values);
        Ok(seq)
    }

    /// Adds a number of the record pushed `seq`-th.
    pub(super) fn number(&mut self, (code, national, zeros): Key, seq: u32) {
        self.numbers.push(Slot {
            national,
            record: seq,
            code,
            zeros,
        });
    }

    /// The arrays: records in id-hash order (a repeated id keeps its last
    /// record), values copied in that order, numbers sorted (a number in
    /// two records belongs to the one pushed last).
    pub(super) fn finish(self) -> Compact {
        let Builder {
            ids,
            prints,
            starts,
            values,
            mut numbers,
        } = self;
        let count = ids.len();
        let end = |seq: usize| starts.get(seq + 1).map_or(values.len(), |&s| s as usize);
        // Records with an id by (hash, order pushed); the last of each hash kept.
        let mut with_id: Vec<(u64, u32)> = ids
            .iter()
            .enumerate()
            .filter_map(|(seq, id)| Some(((*id)?, seq as u32)))
            .collect();
        with_id.sort_unstable();
        let mut order: Vec<u32> = Vec::with_capacity(count);
        let mut kept_ids: Vec<u64> = Vec::with_capacity(with_id.len());
        for (i, &(hash, seq)) in with_id.iter().enumerate() {
            if with_id.get(i + 1).is_some_and(|next| next.0 == hash) {
                continue;
            }
            kept_ids.push(hash);
            order.push(seq);
        }
        drop(with_id);
        order.extend(
            ids.iter()
                .enumerate()
                .filter(|(_, id)| id.is_none())
                .map(|(seq, _)| seq as u32),
        );
        // Where each record pushed went (u32::MAX: replaced by a later one).
        let mut place = vec![u32::MAX; count];
        let mut new_starts = Vec::with_capacity(order.len() + 1);
        let mut new_values = Vec::with_capacity(values.len());
        let mut new_prints = Vec::with_capacity(order.len());
        for (i, &seq) in order.iter().enumerate() {
            place[seq as usize] = i as u32;
            new_prints.push(prints.get(seq as usize).copied().unwrap_or(0));
            new_starts.push(new_values.len() as u32);
            let from = starts.get(seq as usize).map_or(0, |&s| s as usize);
            new_values.extend_from_slice(values.get(from..end(seq as usize)).unwrap_or(&[]));
        }
        new_starts.push(new_values.len() as u32);
        drop(values);
        drop(order);
        numbers.retain(|s| place.get(s.record as usize).is_some_and(|&p| p != u32::MAX));
        // By number, the last pushed first; then one slot per number.
        numbers.sort_unstable_by(|a, b| a.key().cmp(&b.key()).then(b.record.cmp(&a.record)));
        numbers.dedup_by_key(|s| s.key());
        for s in &mut numbers {
            s.record = place[s.record as usize];
        }
        Compact {
            numbers: numbers.into_boxed_slice(),
            ids: kept_ids.into_boxed_slice(),
            starts: new_starts.into_boxed_slice(),
            values: new_values.into_boxed_slice(),
            prints: new_prints.into_boxed_slice(),
            counts: Box::new([]),
        }
        .counted()
    }
}

#[cfg(test)]
#[path = "compact_tests.rs"]
mod tests;
