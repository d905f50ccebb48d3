//! Non-INVITE server transactions (RFC 3261 §17.2.2): the table that absorbs request
//! retransmissions and answers them with the last response sent.
//!
//! Owns the map from [`TransactionKey`] to the transaction's state and the deadline queue that
//! expires entries. Invariants:
//!
//! * The table never holds more than `max_entries` transactions; a new request beyond that is
//!   [`Verdict::Overloaded`] (after purging whatever is due).
//! * Every entry has exactly one live deadline: 64·T1 after creation while no final response
//!   is recorded (a lost response must not pin memory), Timer J after the final response.
//!   Over a reliable transport Timer J is zero, so the entry goes the moment it completes.
//! * Expiry is a deadline queue with lazy deletion ([`due`]: a FIFO for the in-order pushes
//!   that are nearly all of them, a min-heap for the rest): every push is numbered, and an
//!   item is live when its number is its entry's (equal deadlines leave the queue in push
//!   order). Stale items at the front are popped after every mutation, so [`next_deadline`]
//!   is exact; stale items deeper down are bounded by a compaction that rebuilds the queue
//!   once it holds more than twice the live entries plus 1024 (amortised O(1) per
//!   operation, since each operation leaves at most one stale item). Nothing scans the
//!   table on a timer tick.
//! * The first final response wins: a second one for the same transaction is ignored.
//!
//! [`next_deadline`]: ServerTransactions::next_deadline

use std::collections::HashMap;
use std::fmt::Write as _;
use std::hash::{BuildHasher, BuildHasherDefault, Hash, Hasher, RandomState};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use bytes::Bytes;

use crate::clock::Timestamp;
use crate::transaction::timers::Timers;
use due::{Due, DueQueue};

mod due;

/// Identifies a server transaction (RFC 3261 §17.2.3). Built by the caller from the request's
/// top Via and start line; ACK and CANCEL never reach this table.
///
/// Internally one shared, length-prefixed string, so cloning is cheap and no two different
/// part lists can collide, and its hash, computed once when the key is built (SipHash with
/// this process's random keys, so a client cannot aim requests at one bucket): the table
/// looks a key up several times per transaction and never hashes the text again.
#[derive(Clone, Debug)]
pub struct TransactionKey {
    hash: u64,
    text: Arc<str>,
}

/// The random SipHash keys of this process, for [`TransactionKey`]'s hash.
static KEY_HASHER: LazyLock<RandomState> = LazyLock::new(RandomState::new);

impl PartialEq for TransactionKey {
    fn eq(&self, other: &Self) -> bool {
        self.hash == other.hash && self.text == other.text
    }
}

impl Eq for TransactionKey {}

impl Hash for TransactionKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

/// The table's hasher: a [`TransactionKey`] hands over its finished hash, used as is.
#[derive(Default)]
struct Prehashed(u64);

impl Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only reached by a type other than TransactionKey: an FNV-style fold of the bytes.
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

impl TransactionKey {
    /// The RFC 3261 key: the top Via's `branch` (carrying the `z9hG4bK` cookie, compared
    /// exactly), its sent-by (`host[:port]`, host case-insensitive) and the request method.
    pub fn rfc3261(branch: &str, sent_by: &str, method: &str) -> Self {
        match sent_by.bytes().any(|b| b.is_ascii_uppercase()) {
            true => Self::build("3261", &[branch, &sent_by.to_ascii_lowercase(), method]),
            false => Self::build("3261", &[branch, sent_by, method]),
        }
    }

    /// The RFC 2543 fallback key for requests whose branch lacks the magic cookie
    /// (§17.2.3): Request-URI, To-tag (empty if none), From-tag, Call-ID, CSeq number, the
    /// whole top Via and the method.
    pub fn rfc2543(
        request_uri: &str,
        to_tag: &str,
        from_tag: &str,
        call_id: &str,
        cseq: u32,
        top_via: &str,
        method: &str,
    ) -> Self {
        let cseq = cseq.to_string();
        Self::build(
            "2543",
            &[
                request_uri,
                to_tag,
                from_tag,
                call_id,
                &cseq,
                top_via,
                method,
            ],
        )
    }

    fn build(kind: &str, parts: &[&str]) -> Self {
        let mut s =
            String::with_capacity(kind.len() + parts.iter().map(|p| p.len() + 8).sum::<usize>());
        s.push_str(kind);
        for part in parts {
            // Writing into a String cannot fail.
            let _ = write!(s, "|{}:", part.len());
            s.push_str(part);
        }
        TransactionKey {
            hash: KEY_HASHER.hash_one(s.as_str()),
            text: s.into(),
        }
    }
}

/// What to do with an incoming request, as decided by [`ServerTransactions::on_request`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// A new transaction: process the request (and record the response with `on_response`).
    New,
    /// A retransmission while the request is still being processed and nothing was sent yet:
    /// drop it.
    Absorb,
    /// A retransmission of a request already answered: send these bytes (the last response
    /// recorded, final or provisional) again, unchanged.
    Resend(Bytes),
    /// The table is full: answer 503 (or drop) without creating a transaction.
    Overloaded,
}

/// The table of live non-INVITE server transactions. Sans-IO: the caller feeds `now` and
/// calls [`on_timer`](Self::on_timer) at [`next_deadline`](Self::next_deadline).
#[derive(Debug)]
pub struct ServerTransactions {
    timers: Timers,
    max_entries: usize,
    entries: HashMap<TransactionKey, Entry, BuildHasherDefault<Prehashed>>,
    due: DueQueue,
}

/// Heap items allowed beyond the live ones before a compaction is considered.
const COMPACT_SLACK: usize = 1024;

/// Unused capacity kept before the tables shrink: small, since there is one table per shard
/// (hundreds), each sized by its own share of a burst.
const SHRINK_SLACK: usize = 32;

#[derive(Debug)]
struct Entry {
    state: State,
    /// Chosen at creation: decides Timer J when the final response is recorded.
    reliable: bool,
    /// The one live deadline of this entry.
    deadline: Timestamp,
    /// The number of its queued item for that deadline; items with another number are stale.
    seq: u64,
}

#[derive(Debug)]
enum State {
    /// Request handed to the TU, nothing sent yet.
    Trying,
    /// A provisional response was sent; these are its bytes.
    Proceeding(Bytes),
    /// The final response was sent; these are its bytes.
    Completed(Bytes),
}

impl ServerTransactions {
    /// An empty table holding at most `max_entries` transactions.
    pub fn new(timers: Timers, max_entries: usize) -> Self {
        ServerTransactions {
            timers,
            max_entries,
            entries: HashMap::default(),
            due: DueQueue::default(),
        }
    }

    /// Classifies a request: new transaction, retransmission to absorb or to answer again,
    /// or no room. Purges due entries first. `reliable` is the transport the request came
    /// on; it is remembered for Timer J.
    pub fn on_request(&mut self, now: Timestamp, key: &TransactionKey, reliable: bool) -> Verdict {
        self.purge_due(now);
        if let Some(entry) = self.entries.get(key) {
            return match &entry.state {
                State::Trying => Verdict::Absorb,
                State::Proceeding(bytes) | State::Completed(bytes) => {
                    Verdict::Resend(bytes.clone())
                }
            };
        }
        if self.entries.len() >= self.max_entries && !self.evict_oldest_completed() {
            return Verdict::Overloaded;
        }
        let deadline = now.plus(self.processing_limit());
        let seq = self.due.push(deadline, key);
        self.entries.insert(
            key.clone(),
            Entry {
                state: State::Trying,
                reliable,
                deadline,
                seq,
            },
        );
        Verdict::New
    }

    /// Records the response sent for a transaction. A final response (≥ 200) moves it to
    /// Completed and starts Timer J (64·T1 unreliable; reliable transactions are dropped at
    /// once). A provisional response (1xx) is kept (Proceeding) and resent on retransmission.
    /// Responses for unknown or already completed transactions are ignored.
    pub fn on_response(&mut self, now: Timestamp, key: &TransactionKey, status: u16, bytes: Bytes) {
        let Some(entry) = self.entries.get_mut(key) else {
            return;
        };
        if matches!(entry.state, State::Completed(_)) {
            return;
        }
        if status < 200 {
            entry.state = State::Proceeding(bytes);
            return;
        }
        let timer_j = self.timers.timer_j(entry.reliable);
        if timer_j.is_zero() {
            self.entries.remove(key);
        } else {
            entry.state = State::Completed(bytes);
            entry.deadline = now.plus(timer_j);
            entry.seq = self.due.push(entry.deadline, key);
        }
        self.settle();
    }

    /// Drops transactions whose Timer J fired and Trying/Proceeding entries older than 64·T1.
    /// Returns how many were dropped. Cost: O(1) per item due (O(log n) for the rare
    /// out-of-order one), nothing else.
    pub fn on_timer(&mut self, now: Timestamp) -> usize {
        self.purge_due(now)
    }

    /// When [`on_timer`](Self::on_timer) next has work to do; `None` when the table is empty.
    pub fn next_deadline(&self) -> Option<Timestamp> {
        self.due.peek().map(|item| item.at)
    }

    /// Number of live transactions.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no transaction is live.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Makes room under load: drops the completed transaction whose Timer J is due first
    /// (the oldest answer, the least likely to be asked for again). A late retransmission of
    /// it would be processed again — a mild failure, where refusing every new request with
    /// 503 until Timer J fires would be a severe one. Entries still waiting for their answer
    /// are never dropped: when the oldest live entry is one, nothing is evicted.
    fn evict_oldest_completed(&mut self) -> bool {
        while let Some(top) = self.due.peek() {
            let live = self.entries.get(&top.key).filter(|e| e.seq == top.seq);
            match live.map(|e| matches!(e.state, State::Completed(_))) {
                None => {
                    self.due.pop(); // stale item
                }
                Some(true) => {
                    let Some(item) = self.due.pop() else {
                        return false;
                    };
                    self.entries.remove(&item.key);
                    self.settle();
                    return true;
                }
                Some(false) => return false,
            }
        }
        false
    }

    /// Whether a queued item is its entry's live deadline.
    fn is_live(&self, item: &Due) -> bool {
        self.entries
            .get(&item.key)
            .is_some_and(|e| e.seq == item.seq)
    }

    /// How long a transaction may stay without a final response: 64·T1.
    fn processing_limit(&self) -> Duration {
        self.timers.t1.saturating_mul(64)
    }

    fn purge_due(&mut self, now: Timestamp) -> usize {
        let mut dropped = 0;
        while let Some(top) = self.due.peek() {
            if top.at > now {
                break;
            }
            let Some(item) = self.due.pop() else {
                break;
            };
            if self.is_live(&item) {
                self.entries.remove(&item.key);
                dropped += 1;
            }
        }
        self.settle();
        dropped
    }

    /// Restores the queue invariants: no stale item on top, stale items bounded.
    fn settle(&mut self) {
        while let Some(top) = self.due.peek() {
            if self.is_live(top) {
                break;
            }
            self.due.pop();
        }
        if self.due.len() > 2 * self.entries.len() + COMPACT_SLACK {
            let live = self.entries.iter().map(|(key, e)| Due {
                at: e.deadline,
                seq: e.seq,
                key: key.clone(),
            });
            self.due.rebuild(live);
        }
        // A burst leaves tables sized for its peak (a hash map never shrinks by itself):
        // give the memory back once it is mostly unused, keeping room to grow again.
        if self.entries.capacity() > 4 * self.entries.len() + SHRINK_SLACK {
            self.entries.shrink_to(2 * self.entries.len());
        }
        self.due.shrink(SHRINK_SLACK);
    }
}

#[cfg(test)]
mod tests;
