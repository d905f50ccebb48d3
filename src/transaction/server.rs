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
//! * Expiry is a min-heap with lazy deletion: a heap item is live when its deadline equals its
//!   entry's. Stale items at the top are popped after every mutation, so [`next_deadline`] is
//!   exact; stale items deeper down are bounded by a compaction that rebuilds the heap once it
//!   holds more than twice the live entries plus 1024 (amortised O(1) per operation, since
//!   each operation leaves at most one stale item). Nothing scans the table on a timer tick.
//! * The first final response wins: a second one for the same transaction is ignored.
//!
//! [`next_deadline`]: ServerTransactions::next_deadline

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap};
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::clock::Timestamp;
use crate::transaction::timers::Timers;

/// Identifies a server transaction (RFC 3261 §17.2.3). Built by the caller from the request's
/// top Via and start line; ACK and CANCEL never reach this table.
///
/// Internally one shared, length-prefixed string, so cloning is cheap and no two different
/// part lists can collide.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TransactionKey(Arc<str>);

impl TransactionKey {
    /// The RFC 3261 key: the top Via's `branch` (carrying the `z9hG4bK` cookie, compared
    /// exactly), its sent-by (`host[:port]`, host case-insensitive) and the request method.
    pub fn rfc3261(branch: &str, sent_by: &str, method: &str) -> Self {
        Self::build("3261", &[branch, &sent_by.to_ascii_lowercase(), method])
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
        TransactionKey(s.into())
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
    entries: HashMap<TransactionKey, Entry>,
    due: BinaryHeap<Reverse<Due>>,
}

/// Heap items allowed beyond the live ones before a compaction is considered.
const COMPACT_SLACK: usize = 1024;

#[derive(Debug)]
struct Entry {
    state: State,
    /// Chosen at creation: decides Timer J when the final response is recorded.
    reliable: bool,
    /// The one live deadline of this entry; heap items with another value are stale.
    deadline: Timestamp,
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

/// A heap item, ordered by deadline (then key).
#[derive(Debug)]
struct Due {
    at: Timestamp,
    key: TransactionKey,
}

impl PartialEq for Due {
    fn eq(&self, other: &Self) -> bool {
        self.at == other.at && self.key == other.key
    }
}

impl Eq for Due {}

impl PartialOrd for Due {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Due {
    /// By deadline, then key: deterministic, so eviction order is predictable.
    fn cmp(&self, other: &Self) -> Ordering {
        self.at
            .cmp(&other.at)
            .then_with(|| self.key.cmp(&other.key))
    }
}

impl ServerTransactions {
    /// An empty table holding at most `max_entries` transactions.
    pub fn new(timers: Timers, max_entries: usize) -> Self {
        ServerTransactions {
            timers,
            max_entries,
            entries: HashMap::new(),
            due: BinaryHeap::new(),
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
        self.entries.insert(
            key.clone(),
            Entry {
                state: State::Trying,
                reliable,
                deadline,
            },
        );
        self.due.push(Reverse(Due {
            at: deadline,
            key: key.clone(),
        }));
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
            self.due.push(Reverse(Due {
                at: entry.deadline,
                key: key.clone(),
            }));
        }
        self.settle();
    }

    /// Drops transactions whose Timer J fired and Trying/Proceeding entries older than 64·T1.
    /// Returns how many were dropped. Cost: O(log n) per item due, nothing else.
    pub fn on_timer(&mut self, now: Timestamp) -> usize {
        self.purge_due(now)
    }

    /// When [`on_timer`](Self::on_timer) next has work to do; `None` when the table is empty.
    pub fn next_deadline(&self) -> Option<Timestamp> {
        self.due.peek().map(|Reverse(item)| item.at)
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
        while let Some(Reverse(top)) = self.due.peek() {
            let live = self.entries.get(&top.key).filter(|e| e.deadline == top.at);
            match live.map(|e| matches!(e.state, State::Completed(_))) {
                None => {
                    self.due.pop(); // stale heap item
                }
                Some(true) => {
                    let Some(Reverse(item)) = self.due.pop() else {
                        return false;
                    };
                    self.entries.remove(&item.key);
                    return true;
                }
                Some(false) => return false,
            }
        }
        false
    }

    /// How long a transaction may stay without a final response: 64·T1.
    fn processing_limit(&self) -> Duration {
        self.timers.t1.saturating_mul(64)
    }

    fn purge_due(&mut self, now: Timestamp) -> usize {
        let mut dropped = 0;
        while let Some(Reverse(top)) = self.due.peek() {
            if top.at > now {
                break;
            }
            let Some(Reverse(item)) = self.due.pop() else {
                break;
            };
            if self
                .entries
                .get(&item.key)
                .is_some_and(|e| e.deadline == item.at)
            {
                self.entries.remove(&item.key);
                dropped += 1;
            }
        }
        self.settle();
        dropped
    }

    /// Restores the heap invariants: no stale item on top, stale items bounded.
    fn settle(&mut self) {
        while let Some(Reverse(top)) = self.due.peek() {
            let live = self
                .entries
                .get(&top.key)
                .is_some_and(|e| e.deadline == top.at);
            if live {
                break;
            }
            self.due.pop();
        }
        if self.due.len() > 2 * self.entries.len() + COMPACT_SLACK {
            self.due = self
                .entries
                .iter()
                .map(|(key, e)| {
                    Reverse(Due {
                        at: e.deadline,
                        key: key.clone(),
                    })
                })
                .collect();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;

    const T0: Timestamp = Timestamp(1_000_000);

    fn key(branch: &str) -> TransactionKey {
        TransactionKey::rfc3261(branch, "192.0.2.1:5060", "SUBSCRIBE")
    }

    fn table(max: usize) -> ServerTransactions {
        ServerTransactions::new(Timers::default(), max)
    }

    #[test]
    fn keys_distinguish_every_part_and_fold_host_case() {
        let a = TransactionKey::rfc3261("z9hG4bKab", "Host.Example:5060", "PUBLISH");
        assert_eq!(
            a,
            TransactionKey::rfc3261("z9hG4bKab", "host.example:5060", "PUBLISH")
        );
        assert_ne!(
            a,
            TransactionKey::rfc3261("z9hG4bKAB", "host.example:5060", "PUBLISH")
        );
        assert_ne!(
            a,
            TransactionKey::rfc3261("z9hG4bKab", "host.example:5060", "SUBSCRIBE")
        );
        // Length prefixes: moving a character across a part boundary is a different key.
        let b = TransactionKey::rfc3261("ab", "c", "M");
        assert_ne!(b, TransactionKey::rfc3261("a", "bc", "M"));
        let old =
            TransactionKey::rfc2543("sip:a@b", "", "f1", "cid", 7, "SIP/2.0/UDP h", "PUBLISH");
        assert_eq!(
            old,
            TransactionKey::rfc2543("sip:a@b", "", "f1", "cid", 7, "SIP/2.0/UDP h", "PUBLISH")
        );
        assert_ne!(
            old,
            TransactionKey::rfc2543("sip:a@b", "", "f1", "cid", 8, "SIP/2.0/UDP h", "PUBLISH")
        );
    }

    #[test]
    fn new_then_retransmission_absorbed_while_processing() {
        let mut t = table(10);
        assert!(t.is_empty());
        assert_eq!(t.on_request(T0, &key("z9hG4bK1"), false), Verdict::New);
        assert_eq!(t.len(), 1);
        assert_eq!(
            t.on_request(T0.plus_secs(1), &key("z9hG4bK1"), false),
            Verdict::Absorb
        );
        assert_eq!(
            t.on_request(T0.plus_secs(1), &key("z9hG4bK2"), false),
            Verdict::New
        );
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn final_response_resent_byte_identical_and_first_final_wins() {
        let mut t = table(10);
        let k = key("z9hG4bK1");
        t.on_request(T0, &k, false);
        let ok = Bytes::from_static(b"SIP/2.0 200 OK\r\nCSeq: 1 SUBSCRIBE\r\n\r\n");
        t.on_response(T0, &k, 200, ok.clone());
        t.on_response(T0, &k, 500, Bytes::from_static(b"SIP/2.0 500 Oops\r\n\r\n"));
        assert_eq!(
            t.on_request(T0.plus_secs(5), &k, false),
            Verdict::Resend(ok.clone())
        );
        assert_eq!(
            t.on_request(T0.plus_secs(6), &k, false),
            Verdict::Resend(ok)
        );
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn provisional_response_resent_until_final() {
        let mut t = table(10);
        let k = key("z9hG4bK1");
        t.on_request(T0, &k, false);
        let trying = Bytes::from_static(b"SIP/2.0 100 Trying\r\n\r\n");
        t.on_response(T0, &k, 100, trying.clone());
        assert_eq!(
            t.on_request(T0.plus_secs(1), &k, false),
            Verdict::Resend(trying)
        );
        let accepted = Bytes::from_static(b"SIP/2.0 202 Accepted\r\n\r\n");
        t.on_response(T0.plus_secs(2), &k, 202, accepted.clone());
        assert_eq!(
            t.on_request(T0.plus_secs(3), &k, false),
            Verdict::Resend(accepted)
        );
    }

    #[test]
    fn reliable_transport_purges_at_once() {
        let mut t = table(10);
        let k = key("z9hG4bK1");
        t.on_request(T0, &k, true);
        assert_eq!(t.on_request(T0, &k, true), Verdict::Absorb);
        t.on_response(T0, &k, 200, Bytes::from_static(b"ok"));
        assert!(t.is_empty());
        assert_eq!(t.next_deadline(), None);
        assert_eq!(t.on_request(T0.plus_secs(1), &k, true), Verdict::New);
    }

    #[test]
    fn timer_j_expires_completed_transaction() {
        let mut t = table(10);
        let k = key("z9hG4bK1");
        t.on_request(T0, &k, false);
        t.on_response(T0.plus_secs(1), &k, 200, Bytes::from_static(b"ok"));
        // The stale "processing" deadline (T0 + 32 s) must not show: Timer J runs from 1 s.
        let j = T0.plus_secs(33);
        assert_eq!(t.next_deadline(), Some(j));
        assert_eq!(t.on_timer(Timestamp(j.0 - 1)), 0);
        assert_eq!(t.len(), 1);
        assert_eq!(t.on_timer(j), 1);
        assert!(t.is_empty());
        assert_eq!(t.next_deadline(), None);
        assert_eq!(t.on_request(j, &k, false), Verdict::New);
    }

    #[test]
    fn stuck_entries_without_response_are_purged_after_64_t1() {
        let mut t = table(10);
        t.on_request(T0, &key("z9hG4bK1"), false);
        t.on_request(T0.plus_secs(10), &key("z9hG4bK2"), true);
        assert_eq!(t.next_deadline(), Some(T0.plus_secs(32)));
        assert_eq!(t.on_timer(T0.plus_secs(32)), 1);
        assert_eq!(t.next_deadline(), Some(T0.plus_secs(42)));
        assert_eq!(t.on_timer(T0.plus_secs(100)), 1);
        assert!(t.is_empty());
    }

    #[test]
    fn full_table_evicts_the_oldest_completed_transaction() {
        let mut t = table(2);
        assert_eq!(t.on_request(T0, &key("a"), false), Verdict::New);
        t.on_response(T0, &key("a"), 200, Bytes::from_static(b"ok-a"));
        assert_eq!(
            t.on_request(T0.plus_secs(1), &key("b"), false),
            Verdict::New
        );
        t.on_response(T0.plus_secs(1), &key("b"), 200, Bytes::from_static(b"ok-b"));
        // Full: "a" (answered, due first) makes room; "b" is still answered again.
        assert_eq!(
            t.on_request(T0.plus_secs(2), &key("c"), false),
            Verdict::New
        );
        assert_eq!(t.len(), 2);
        assert_eq!(
            t.on_request(T0.plus_secs(2), &key("b"), false),
            Verdict::Resend(Bytes::from_static(b"ok-b"))
        );
        // "c" still waits for its answer and is due first after "b": no more room.
        t.on_response(T0.plus_secs(2), &key("b"), 200, Bytes::from_static(b"x"));
        assert_eq!(
            t.on_request(T0.plus_secs(3), &key("a"), false),
            Verdict::New
        );
        assert_eq!(
            t.on_request(T0.plus_secs(3), &key("d"), false),
            Verdict::Overloaded
        );
    }

    #[test]
    fn cap_reports_overloaded_until_something_is_due() {
        let mut t = table(2);
        assert_eq!(t.on_request(T0, &key("a"), false), Verdict::New);
        assert_eq!(
            t.on_request(T0.plus_secs(1), &key("b"), false),
            Verdict::New
        );
        assert_eq!(
            t.on_request(T0.plus_secs(2), &key("c"), false),
            Verdict::Overloaded
        );
        // A retransmission of a known transaction is still recognised when full.
        assert_eq!(
            t.on_request(T0.plus_secs(2), &key("a"), false),
            Verdict::Absorb
        );
        assert_eq!(t.len(), 2);
        // At T0 + 32 s "a" is due and purged before the capacity check.
        assert_eq!(
            t.on_request(T0.plus_secs(32), &key("c"), false),
            Verdict::New
        );
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn reliable_churn_keeps_the_heap_bounded() {
        let mut t = table(100_000);
        // A pending entry on top of the heap keeps stale items below it from being popped.
        assert_eq!(t.on_request(T0, &key("pin"), false), Verdict::New);
        for i in 0..20_000u64 {
            let k = key(&format!("z9hG4bK{i}"));
            let now = Timestamp(T0.0 + 1 + i);
            assert_eq!(t.on_request(now, &k, true), Verdict::New);
            t.on_response(now, &k, 200, Bytes::from_static(b"ok"));
        }
        assert_eq!(t.len(), 1);
        assert!(
            t.due.len() <= 2 + COMPACT_SLACK + 1,
            "heap grew to {}",
            t.due.len()
        );
        assert_eq!(t.next_deadline(), Some(T0.plus_secs(32)));
    }

    #[derive(Clone, Debug)]
    enum Op {
        Request(u8, bool),
        Response(u8, u16),
        Advance(u64),
        Timer,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u8..6, any::<bool>()).prop_map(|(k, r)| Op::Request(k, r)),
            (
                0u8..6,
                prop::sample::select(vec![100u16, 180, 200, 202, 404])
            )
                .prop_map(|(k, s)| Op::Response(k, s)),
            (0u64..40_000).prop_map(Op::Advance),
            Just(Op::Timer),
        ]
    }

    /// Naive model: (last response status, reliable, deadline) per key, scanned in full.
    type Model = HashMap<u8, (Option<u16>, bool, Timestamp)>;

    fn model_purge(m: &mut Model, now: Timestamp) -> usize {
        let before = m.len();
        m.retain(|_, e| e.2 > now);
        before - m.len()
    }

    proptest! {
        #[test]
        fn table_agrees_with_a_scanning_model(ops in prop::collection::vec(op(), 1..80)) {
            const CAP: usize = 4;
            let mut t = table(CAP);
            let mut m: Model = HashMap::new();
            let mut now = T0;
            for op in ops {
                match op {
                    Op::Request(k, reliable) => {
                        model_purge(&mut m, now);
                        let expected = match m.get(&k) {
                            Some((None, _, _)) => Verdict::Absorb,
                            Some((Some(s), _, _)) => Verdict::Resend(Bytes::from(s.to_string())),
                            None if m.len() >= CAP => {
                                // Evict the completed entry due first, if the first due is one.
                                let min = m.values().map(|e| e.2).min();
                                let first = m
                                    .iter()
                                    .filter(|(_, e)| Some(e.2) == min)
                                    .map(|(k, e)| (*k, e.0))
                                    .min_by_key(|(k, _)| *k);
                                match first {
                                    Some((victim, Some(s))) if s >= 200 => {
                                        m.remove(&victim);
                                        m.insert(k, (None, reliable, now.plus_secs(32)));
                                        Verdict::New
                                    }
                                    _ => Verdict::Overloaded,
                                }
                            }
                            None => {
                                m.insert(k, (None, reliable, now.plus_secs(32)));
                                Verdict::New
                            }
                        };
                        let verdict = t.on_request(now, &key(&k.to_string()), reliable);
                        prop_assert_eq!(verdict, expected);
                    }
                    Op::Response(k, s) => {
                        if let Some(e) = m.get_mut(&k) {
                            match e.0 {
                                Some(prev) if prev >= 200 => {}
                                _ if s < 200 => e.0 = Some(s),
                                _ if e.1 => { m.remove(&k); }
                                _ => *e = (Some(s), false, now.plus_secs(32)),
                            }
                        }
                        t.on_response(now, &key(&k.to_string()), s, Bytes::from(s.to_string()));
                    }
                    Op::Advance(ms) => now = Timestamp(now.0 + ms),
                    Op::Timer => prop_assert_eq!(t.on_timer(now), model_purge(&mut m, now)),
                }
                prop_assert_eq!(t.len(), m.len());
                prop_assert_eq!(t.next_deadline(), m.values().map(|e| e.2).min());
            }
        }
    }
}
