//! The recent calls: a ring of fixed capacity, the oldest call dropped
//! when a new one comes, so its memory is bounded by its capacity times a
//! call's bound whatever the call rate. Calls are numbered in the order
//! they are recorded, so a page asks for "the calls after N".

use std::collections::VecDeque;
use std::sync::Arc;

use super::call::Call;

/// The last `cap` calls, oldest first.
#[derive(Debug)]
pub struct Ring {
    calls: VecDeque<Arc<Call>>,
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
            calls: VecDeque::with_capacity(cap),
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
    pub fn push(&mut self, call: Arc<Call>) -> Option<Arc<Call>> {
        debug_assert_eq!(call.seq, self.next_seq());
        self.last = call.seq;
        let dropped = if self.calls.len() == self.cap {
            self.calls.pop_front()
        } else {
            None
        };
        if let Some(old) = &dropped {
            self.bytes -= old.bytes;
        }
        self.bytes += call.bytes;
        self.calls.push_back(call);
        dropped
    }

    /// The calls numbered after `seq`, newest first, at most `max`.
    pub fn after(&self, seq: u64, max: usize) -> Vec<Arc<Call>> {
        self.calls
            .iter()
            .rev()
            .take_while(|c| c.seq > seq)
            .take(max)
            .cloned()
            .collect()
    }

    /// The call numbered `seq`, while the ring still holds it.
    pub fn get(&self, seq: u64) -> Option<Arc<Call>> {
        let first = self.calls.front()?.seq;
        let i = usize::try_from(seq.checked_sub(first)?).ok()?;
        self.calls.get(i).cloned()
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
        self.bytes + self.calls.capacity() * std::mem::size_of::<Arc<Call>>()
    }
}
