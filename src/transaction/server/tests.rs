//! Tests of the server-transaction table, with a model-based proptest.
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
    let old = TransactionKey::rfc2543("sip:a@b", "", "f1", "cid", 7, "SIP/2.0/UDP h", "PUBLISH");
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

#[test]
fn tables_give_back_a_burst_once_it_has_expired() {
    let mut t = table(100_000);
    for i in 0..300u64 {
        let k = key(&format!("z9hG4bK{i}"));
        assert_eq!(t.on_request(T0, &k, false), Verdict::New);
        t.on_response(T0, &k, 200, Bytes::from_static(b"ok"));
    }
    assert!(t.entries.capacity() >= 300 && t.due.capacity() >= 300);
    // Timer J (32 s on UDP) has passed for the whole burst; one new request remains.
    assert_eq!(t.on_timer(T0.plus_secs(33)), 300);
    assert_eq!(
        t.on_request(T0.plus_secs(33), &key("z9hG4bKnext"), false),
        Verdict::New
    );
    assert_eq!(t.len(), 1);
    assert!(
        t.entries.capacity() <= SHRINK_SLACK,
        "map keeps {}",
        t.entries.capacity()
    );
    assert!(
        t.due.capacity() <= SHRINK_SLACK,
        "queue keeps {}",
        t.due.capacity()
    );
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

/// Naive model: (last response status, reliable, deadline, when the deadline was set) per
/// key, scanned in full.
type Model = HashMap<u8, (Option<u16>, bool, Timestamp, u64)>;

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
        // Counts deadlines set, in order: equal deadlines are due in the order they were set.
        let mut set = 0u64;
        for op in ops {
            match op {
                Op::Request(k, reliable) => {
                    model_purge(&mut m, now);
                    let expected = match m.get(&k) {
                        Some((None, _, _, _)) => Verdict::Absorb,
                        Some((Some(s), _, _, _)) => Verdict::Resend(Bytes::from(s.to_string())),
                        None if m.len() >= CAP => {
                            // Evict the completed entry due first, if the first due is one.
                            let first = m
                                .iter()
                                .min_by_key(|(_, e)| (e.2, e.3))
                                .map(|(k, e)| (*k, e.0));
                            match first {
                                Some((victim, Some(s))) if s >= 200 => {
                                    m.remove(&victim);
                                    set += 1;
                                    m.insert(k, (None, reliable, now.plus_secs(32), set));
                                    Verdict::New
                                }
                                _ => Verdict::Overloaded,
                            }
                        }
                        None => {
                            set += 1;
                            m.insert(k, (None, reliable, now.plus_secs(32), set));
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
                            _ => {
                                set += 1;
                                *e = (Some(s), false, now.plus_secs(32), set);
                            }
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
