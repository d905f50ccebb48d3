//! The deadline queue of the server-transaction table: items ordered by deadline, then by
//! push order, with O(1) push and pop for the common case.
//!
//! Every transaction's deadlines are the same length (64·T1 to answer, Timer J = 64·T1 after
//! the answer over UDP) and are pushed as time goes on, so pushes nearly always arrive in
//! deadline order: those go to a FIFO. A push earlier than the FIFO's last item (a clock step
//! back, a shorter timer set at run time) goes to a binary heap instead. The front is the
//! lesser of the two heads, so the order is exact whatever the push order.

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, VecDeque};

use super::TransactionKey;
use crate::clock::Timestamp;

/// A queued deadline: for `key`, at `at`, the `seq`-th push.
#[derive(Debug)]
pub(super) struct Due {
    pub(super) at: Timestamp,
    pub(super) seq: u64,
    pub(super) key: TransactionKey,
}

impl PartialEq for Due {
    fn eq(&self, other: &Self) -> bool {
        self.at == other.at && self.seq == other.seq
    }
}

impl Eq for Due {}

impl PartialOrd for Due {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Due {
    /// By deadline, then push order: deterministic, so eviction order is predictable, and
    /// no key text is compared.
    fn cmp(&self, other: &Self) -> Ordering {
        self.at
            .cmp(&other.at)
            .then_with(|| self.seq.cmp(&other.seq))
    }
}

/// Deadlines in order: a FIFO for in-order pushes, a heap for the rest.
#[derive(Debug, Default)]
pub(super) struct DueQueue {
    fifo: VecDeque<Due>,
    heap: BinaryHeap<Reverse<Due>>,
    /// Numbers pushes (the tie-break between equal deadlines); never reset, so a number
    /// names one push for the table's whole life.
    pushed: u64,
}

impl DueQueue {
    /// Queues `key`'s deadline `at` and returns its push number, which the caller keeps to
    /// tell this item from stale ones. Numbers grow, so an item no earlier than the FIFO's
    /// last one sorts after it.
    pub(super) fn push(&mut self, at: Timestamp, key: &TransactionKey) -> u64 {
        self.pushed += 1;
        let item = Due {
            at,
            seq: self.pushed,
            key: key.clone(),
        };
        match self.fifo.back() {
            Some(last) if item.at < last.at => self.heap.push(Reverse(item)),
            _ => self.fifo.push_back(item),
        }
        self.pushed
    }

    /// Whether the next item comes from the FIFO (else from the heap).
    fn front_is_fifo(&self) -> Option<bool> {
        match (self.fifo.front(), self.heap.peek()) {
            (Some(f), Some(Reverse(h))) => Some(f < h),
            (Some(_), None) => Some(true),
            (None, Some(_)) => Some(false),
            (None, None) => None,
        }
    }

    /// The earliest item.
    pub(super) fn peek(&self) -> Option<&Due> {
        match self.front_is_fifo()? {
            true => self.fifo.front(),
            false => self.heap.peek().map(|Reverse(h)| h),
        }
    }

    /// Removes and returns the earliest item.
    pub(super) fn pop(&mut self) -> Option<Due> {
        match self.front_is_fifo()? {
            true => self.fifo.pop_front(),
            false => self.heap.pop().map(|Reverse(h)| h),
        }
    }

    /// Items queued, live or stale.
    pub(super) fn len(&self) -> usize {
        self.fifo.len() + self.heap.len()
    }

    /// Items the queue has room for without reallocating.
    #[cfg(test)]
    pub(super) fn capacity(&self) -> usize {
        self.fifo.capacity() + self.heap.capacity()
    }

    /// Replaces the contents with `items` (compaction), in order.
    pub(super) fn rebuild(&mut self, items: impl Iterator<Item = Due>) {
        let mut all: Vec<Due> = items.collect();
        all.sort_unstable();
        self.fifo = all.into();
        self.heap = BinaryHeap::new();
    }

    /// Gives memory back when mostly unused, keeping room to grow (`slack` items).
    pub(super) fn shrink(&mut self, slack: usize) {
        if self.fifo.capacity() > 4 * self.fifo.len() + slack {
            self.fifo.shrink_to(2 * self.fifo.len());
        }
        if self.heap.capacity() > 4 * self.heap.len() + slack {
            self.heap.shrink_to(2 * self.heap.len());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> TransactionKey {
        TransactionKey::rfc3261("z9hG4bK1", "a:5060", "PUBLISH")
    }

    fn due(at_ms: u64, seq: u64) -> Due {
        Due {
            at: Timestamp(at_ms),
            seq,
            key: key(),
        }
    }

    #[test]
    fn pops_in_deadline_then_push_order_whatever_the_push_order() {
        let mut q = DueQueue::default();
        // In order, a step back, equal deadlines, and one far ahead.
        for (i, at) in [10, 20, 20, 5, 30, 15, 20, 100, 1].into_iter().enumerate() {
            assert_eq!(q.push(Timestamp(at), &key()), i as u64 + 1);
        }
        assert_eq!(q.len(), 9);
        let mut out = Vec::new();
        while let Some(d) = q.pop() {
            out.push((d.at.0, d.seq));
        }
        // (deadline, push number); numbers start at 1.
        let want = vec![
            (1, 9),
            (5, 4),
            (10, 1),
            (15, 6),
            (20, 2),
            (20, 3),
            (20, 7),
            (30, 5),
            (100, 8),
        ];
        assert_eq!(out, want);
        assert!(q.peek().is_none());
    }

    #[test]
    fn rebuild_keeps_the_order_and_peek_matches_pop() {
        let mut q = DueQueue::default();
        let seqs: Vec<u64> = [30, 10, 20]
            .map(|at| q.push(Timestamp(at), &key()))
            .to_vec();
        // A compaction hands back the live items in any order.
        q.rebuild([due(30, seqs[0]), due(20, seqs[2]), due(10, seqs[1])].into_iter());
        assert_eq!(q.len(), 3);
        let seq = q.push(Timestamp(5), &key());
        assert!(!seqs.contains(&seq), "push numbers go on after a rebuild");
        assert_eq!(q.peek().map(|d| d.seq), Some(seq));
        let order: Vec<u64> = std::iter::from_fn(|| q.pop()).map(|d| d.seq).collect();
        assert_eq!(order, vec![seq, seqs[1], seqs[2], seqs[0]]);
    }
}
