//! Digests and the anti-entropy exchange: order-independent digests, one record → one
//! bucket, and a full exchange that makes two diverged replicas equal.

use proptest::prelude::*;

use super::*;
use crate::cluster::digest::{self, bucket_of, Digest, BUCKETS};
use crate::cluster::hlc::HlcClock;
use crate::cluster::sync::{digest_request, handle, Handled, SyncLimits, SyncMsg};

type Msg = SyncMsg<PubKey, Publication>;

const NOW: Timestamp = Timestamp(5_000);

struct Node {
    set: ReplicaSet<PubKey, Publication>,
    clock: HlcClock,
}

fn node(name: &str, records: &[PubRecord]) -> Node {
    let mut set = set();
    for r in records {
        set.apply(r.clone(), NOW);
    }
    Node {
        set,
        clock: HlcClock::new(NodeId::new(name), HlcClock::DEFAULT_MAX_DRIFT),
    }
}

/// Runs one exchange started by `a` until no message is left; returns every message sent
/// (a → b first element, b → a second) and whether `a` heard "in sync".
fn exchange(a: &mut Node, b: &mut Node, limits: SyncLimits) -> (Vec<Msg>, Vec<Msg>, bool) {
    let mut to_b = vec![digest_request(&a.set)];
    let mut to_a: Vec<Msg> = Vec::new();
    let (mut sent_ab, mut sent_ba) = (Vec::new(), Vec::new());
    let mut in_sync = false;
    for _round in 0..10 {
        if to_a.is_empty() && to_b.is_empty() {
            return (sent_ab, sent_ba, in_sync);
        }
        for m in std::mem::take(&mut to_b) {
            sent_ab.push(m.clone());
            let h = handle(&mut b.set, &mut b.clock, m, NOW, limits);
            to_a.extend(h.reply);
        }
        for m in std::mem::take(&mut to_a) {
            sent_ba.push(m.clone());
            let h: Handled<_, _> = handle(&mut a.set, &mut a.clock, m, NOW, limits);
            in_sync |= h.in_sync;
            to_b.extend(h.reply);
        }
    }
    panic!("the exchange did not terminate");
}

#[test]
fn hash_is_stable_across_builds() {
    // Part of the wire protocol: a change here needs a major protocol bump.
    let k = key("alice", "L1");
    assert_eq!(bucket_of(&k), bucket_of(&k.clone()));
    assert_eq!(
        bucket_of(&k),
        627,
        "bucket of a fixed key changed: protocol break"
    );
    let (b, h) = digest::record_hash(&k, &stamp(1, 2, "n1"));
    assert_eq!(b, 627);
    assert_ne!(h, digest::record_hash(&k, &stamp(1, 3, "n1")).1);
}

#[test]
fn equal_sets_have_equal_digests_regardless_of_order() {
    let records: Vec<PubRecord> = (0..50)
        .map(|i| {
            live(
                key(&format!("u{i}"), "L"),
                stamp(100 + i, 0, "n1"),
                publication("e", "x", 1_000_000, "n1"),
            )
        })
        .collect();
    let mut reversed = records.clone();
    reversed.reverse();
    let a = node("a", &records);
    let b = node("b", &reversed);
    assert_eq!(a.set.digest(), b.set.digest());
    assert!(a.set.digest().differing(b.set.digest()).is_empty());
    assert_ne!(a.set.digest(), &Digest::empty());
    // The wire form round-trips; out-of-range buckets are ignored.
    let mut wire = a.set.digest().to_wire();
    assert_eq!(&Digest::from_wire(&wire), a.set.digest());
    wire.push((BUCKETS, 7));
    wire.push((u16::MAX, 7));
    assert_eq!(&Digest::from_wire(&wire), a.set.digest());
}

#[test]
fn one_differing_record_differs_in_exactly_its_bucket() {
    let records: Vec<PubRecord> = (0..200)
        .map(|i| {
            live(
                key(&format!("u{i}"), "L"),
                stamp(100, 0, "n1"),
                publication("e", "x", 1_000_000, "n1"),
            )
        })
        .collect();
    let a = node("a", &records);
    let mut b = node("b", &records);
    let k = key("u17", "L");
    b.set.apply(
        live(
            k.clone(),
            stamp(200, 0, "n2"),
            publication("e2", "y", 1_000_000, "n2"),
        ),
        NOW,
    );
    assert_eq!(
        digest::differing(a.set.digest(), b.set.digest()),
        vec![bucket_of(&k)]
    );
    // A record only one side has: also exactly its bucket.
    let extra = key("zed", "L");
    b.set.apply(
        live(
            extra.clone(),
            stamp(1, 0, "n2"),
            publication("e", "x", 1_000_000, "n2"),
        ),
        NOW,
    );
    let mut expected = vec![bucket_of(&k), bucket_of(&extra)];
    expected.sort();
    expected.dedup();
    assert_eq!(a.set.digest().differing(b.set.digest()), expected);
}

#[test]
fn in_sync_replicas_exchange_one_empty_diff() {
    let records = vec![live(
        key("a", "L"),
        stamp(1, 0, "n1"),
        publication("e", "x", 1_000_000, "n1"),
    )];
    let mut a = node("a", &records);
    let mut b = node("b", &records);
    let (ab, ba, in_sync) = exchange(&mut a, &mut b, SyncLimits::default());
    assert_eq!(ab.len(), 1);
    assert_eq!(
        ba,
        vec![SyncMsg::DigestDiff {
            buckets: vec![],
            entries: vec![]
        }]
    );
    assert!(in_sync);
}

#[test]
fn empty_node_receives_everything_in_bounded_batches_without_summaries() {
    let records: Vec<PubRecord> = (0..300)
        .map(|i| {
            live(
                key(&format!("u{i}"), "L"),
                stamp(100 + i, 0, "n1"),
                publication("etag", &"d".repeat(100), 1_000_000, "n1"),
            )
        })
        .collect();
    let mut empty = node("new", &[]);
    let mut full = node("old", &records);
    let limits = SyncLimits {
        max_batch_bytes: 4_096,
    };
    let (ab, ba, _) = exchange(&mut empty, &mut full, limits);
    assert_eq!(
        ab.len(),
        1,
        "only the digest request: nothing to pull or push"
    );
    assert!(
        ba.iter().all(|m| matches!(m, SyncMsg::Batch(_))),
        "no summaries for empty buckets"
    );
    assert!(ba.len() > 5, "split into several batches: {}", ba.len());
    for m in &ba {
        let bytes = crate::codec::encode(0, m).len();
        assert!(bytes < 4_096 + 400, "batch of {bytes} bytes");
    }
    assert_eq!(snapshot(&empty.set), snapshot(&full.set));
}

#[test]
fn records_with_stamps_far_ahead_are_refused() {
    let mut n = node("a", &[]);
    let k = key("a", "L");
    let future = live(
        k.clone(),
        stamp(NOW.0 + 61_000, 0, "n9"),
        publication("e", "x", 10_000_000, "n9"),
    );
    let h = handle(
        &mut n.set,
        &mut n.clock,
        SyncMsg::Delta(vec![future]),
        NOW,
        SyncLimits::default(),
    );
    assert_eq!(h.refused.len(), 1);
    assert_eq!(h.refused[0].0, k);
    assert!(h.changes.is_empty() && n.set.is_empty());
    // A delta within the drift is applied and moves our clock past it.
    let near = live(
        k.clone(),
        stamp(NOW.0 + 1_000, 4, "n9"),
        publication("e", "x", 10_000_000, "n9"),
    );
    let h = handle(
        &mut n.set,
        &mut n.clock,
        SyncMsg::Delta(vec![near.clone()]),
        NOW,
        SyncLimits::default(),
    );
    assert_eq!(h.changes.len(), 1);
    assert!(n.clock.last() > near.version.stamp.hlc);
}

fn arb_side() -> impl Strategy<Value = Vec<PubRecord>> {
    proptest::collection::vec(arb_record(), 0..25)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// From any two diverged states (sharing a common part), one exchange in either direction
    /// leaves both replicas equal to the join of both, and a second exchange finds nothing.
    #[test]
    fn one_exchange_makes_diverged_replicas_equal(
        common in arb_side(),
        only_a in arb_side(),
        only_b in arb_side(),
        small_batches in any::<bool>(),
    ) {
        // A stamp names one write: keep one value per (key, stamp), as real nodes produce.
        // (Equal stamps with different values are the merge laws' business, not the digest's.)
        let mut seen = std::collections::HashMap::new();
        let mut one_value = |r: &PubRecord| {
            let v = seen.entry((r.key.clone(), r.version.stamp.clone())).or_insert_with(|| r.clone());
            v.clone()
        };
        let common: Vec<PubRecord> = common.iter().map(&mut one_value).collect();
        let only_a: Vec<PubRecord> = only_a.iter().map(&mut one_value).collect();
        let only_b: Vec<PubRecord> = only_b.iter().map(&mut one_value).collect();
        let mut a_recs = common.clone();
        a_recs.extend(only_a.iter().cloned());
        let mut b_recs = common.clone();
        b_recs.extend(only_b.iter().cloned());
        let mut all = a_recs.clone();
        all.extend(b_recs.iter().cloned());
        let joined = node("j", &all);

        let mut a = node("a", &a_recs);
        let mut b = node("b", &b_recs);
        let limits = SyncLimits { max_batch_bytes: if small_batches { 200 } else { 1 << 20 } };
        exchange(&mut a, &mut b, limits);
        prop_assert_eq!(snapshot(&a.set), snapshot(&joined.set));
        prop_assert_eq!(snapshot(&b.set), snapshot(&joined.set));
        prop_assert_eq!(a.set.digest(), b.set.digest());

        let (_, ba, in_sync) = exchange(&mut b, &mut a, limits);
        prop_assert!(in_sync);
        prop_assert_eq!(ba.len(), 1);
    }
}

#[test]
fn a_peers_expiry_is_capped_but_its_stamp_and_tombstones_are_not() {
    let far = live(
        key("alice", "e1"),
        stamp(10, 0, "n2"),
        publication("e1", "far", 9_000_000, "n2"),
    );
    let near = live(
        key("bob", "e2"),
        stamp(10, 0, "n2"),
        publication("e2", "near", 6_000, "n2"),
    );
    let gone = removed(key("carol", "e3"), stamp(10, 0, "n2"), 9_000_000);
    let mut msg: Msg = SyncMsg::Delta(vec![far.clone(), near.clone(), gone.clone()]);
    crate::cluster::sync::cap_expiries(&mut msg, Timestamp(7_000));
    let SyncMsg::Delta(out) = msg else {
        panic!("still a delta")
    };
    let expiry = |r: &PubRecord| r.version.state.live().map(|p| p.expires_at);
    assert_eq!(expiry(&out[0]), Some(Timestamp(7_000)), "capped");
    assert_eq!(out[0].version.stamp, far.version.stamp, "stamp kept");
    assert_eq!(out[1], near, "an expiry within the cap is untouched");
    assert_eq!(out[2], gone, "tombstones are untouched");
}
