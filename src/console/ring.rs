//! The recent calls: a ring of fixed capacity, the oldest call pushed out
//! when a new one comes, so its memory is bounded by its capacity times a
//! call's bound whatever the call rate. Calls are numbered in the order
//! they are recorded, so a page asks for "the calls after N". The ring
//! owns its calls: a call goes in and the one it pushes out comes back by
//! their pointers, and a page reads copies, taken under the console's lock
//! (a page asks now and then; a call is recorded on every request).

use super::call::Call;

/// The last `cap` calls.
#[derive(Debug)]
pub struct Ring {
    /// The calls, in the order they came until it is full; then the
    /// oldest is at `next`, which the next call takes the place of (no
    /// call moves). Boxed: a call comes in from its recorder and goes
    /// back out to be reused by its pointer.
    #[allow(clippy::vec_box)]
    calls: Vec<Box<Call>>,
    /// Where the next call goes once it is full.
    next: usize,
    cap: usize,
    /// What the calls in it hold ([`Call::heap_bytes`]), summed.
    bytes: usize,
    /// The number of the last call recorded (0: none yet).
    last: u64,
}

impl Ring {
    /// An empty ring for `cap` calls (at least one).
    pub fn new(cap: usize) -> Self {
        let cap = cap.max(1);
        Self {
            calls: Vec::with_capacity(cap),
            next: 0,
            cap,
            bytes: 0,
            last: 0,
        }
    }

    /// The number the next call gets.
    pub fn next_seq(&self) -> u64 {
        self.last + 1
    }

    /// Adds a call (numbered [`Ring::next_seq`], its `bytes` counted);
    /// returns the call it pushed out, for the caller to drop outside any
    /// lock.
    #[inline]
    pub fn push(&mut self, call: Box<Call>) -> Option<Box<Call>> {
        debug_assert_eq!(call.seq, self.next_seq());
        self.last = call.seq;
        self.bytes += call.bytes;
        if self.calls.len() < self.cap {
            self.calls.push(call);
            return None;
        }
        let slot = self.calls.get_mut(self.next)?;
        let old = std::mem::replace(slot, call);
        self.bytes -= old.bytes;
        self.next += 1;
        if self.next == self.cap {
            self.next = 0;
        }
        Some(old)
    }

    /// The calls, oldest first.
    fn oldest_first(&self) -> impl DoubleEndedIterator<Item = &Call> {
        let (newer, older) = self.calls.split_at(self.next.min(self.calls.len()));
        older.iter().chain(newer).map(|call| &**call)
    }

    /// The calls it holds, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = &Call> {
        self.oldest_first()
    }

    /// Copies of the calls numbered after `seq`, newest first, at most
    /// `max`.
    pub fn after(&self, seq: u64, max: usize) -> Vec<Call> {
        self.oldest_first()
            .rev()
            .take_while(|c| c.seq > seq)
            .take(max)
            .cloned()
            .collect()
    }

    /// A copy of the call numbered `seq`, while the ring still holds it.
    pub fn get(&self, seq: u64) -> Option<Call> {
        let first = self.oldest_first().next()?.seq;
        let i = usize::try_from(seq.checked_sub(first)?).ok()?;
        if i >= self.calls.len() {
            return None;
        }
        let at = (self.next + i) % self.calls.len();
        self.calls.get(at).map(|call| Call::clone(call))
    }

    /// The number of the last call recorded.
    pub fn last(&self) -> u64 {
        self.last
    }

    /// Calls held.
    pub fn len(&self) -> usize {
        self.calls.len()
    }

    /// Whether it holds no call.
    pub fn is_empty(&self) -> bool {
        self.calls.is_empty()
    }

    /// Calls it may hold.
    pub fn cap(&self) -> usize {
        self.cap
    }

    /// Memory the calls hold, the ring's own slots included.
    pub fn bytes(&self) -> usize {
        self.bytes + self.calls.capacity() * std::mem::size_of::<Box<Call>>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::console::call::{Text, Texts};
    use crate::request_id::RequestId;

    fn call(ring: &Ring) -> Box<Call> {
        let mut call = Call::new(
            tokio::time::Instant::now(),
            RequestId::next(),
            Texts::default(),
            Text::default(),
        );
        call.seq = ring.next_seq();
        call.bytes = 10;
        Box::new(call)
    }

    #[test]
    fn the_newest_call_takes_the_oldest_ones_place_and_reads_stay_in_order() {
        let mut ring = Ring::new(3);
        for _ in 0..3 {
            assert!(ring.push(call(&ring)).is_none());
        }
        let seqs = |calls: Vec<Call>| calls.iter().map(|c| c.seq).collect::<Vec<_>>();
        assert_eq!(seqs(ring.after(0, 10)), [3, 2, 1]);
        // Two more: 1 and 2 are pushed out, in that order.
        let out: Vec<u64> = (0..2)
            .filter_map(|_| ring.push(call(&ring)).map(|c| c.seq))
            .collect();
        assert_eq!(out, [1, 2]);
        assert_eq!(seqs(ring.after(0, 10)), [5, 4, 3]);
        assert_eq!(seqs(ring.after(3, 10)), [5, 4]);
        assert_eq!(seqs(ring.after(0, 1)), [5]);
        assert_eq!(ring.iter().map(|c| c.seq).collect::<Vec<_>>(), [3, 4, 5]);
        assert_eq!(
            [2, 3, 4, 5, 6].map(|seq| ring.get(seq).map(|c| c.seq)),
            [None, Some(3), Some(4), Some(5), None]
        );
        assert_eq!((ring.len(), ring.last()), (3, 5));
        assert_eq!(
            ring.bytes(),
            30 + ring.cap() * std::mem::size_of::<Box<Call>>()
        );
    }
}
