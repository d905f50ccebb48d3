//! `ReplicaSet` behaviour: local writes, removal tombstones, expiry on the local timer,
//! dead-on-arrival records, and lineage lookup by current ETag.

use super::*;
use crate::cluster::digest;
use crate::cluster::hlc::HlcClock;
use crate::cluster::replica::{Applied, ExpireReport};

fn clock(node: &str) -> HlcClock {
    HlcClock::new(NodeId::new(node), HlcClock::DEFAULT_MAX_DRIFT)
}

#[test]
fn write_stamps_applies_and_returns_the_delta() {
    let mut s = set();
    let mut c = clock("n1");
    let k = key("alice", "L1");
    let p = publication("e1", "open", 60_000, "n1");
    let (rec, applied) = s.write(k.clone(), State::Live(p.clone()), &mut c, Timestamp(1_000));
    assert_eq!(rec.key, k);
    assert_eq!(rec.version.stamp.node, NodeId::new("n1"));
    assert_eq!(rec.version.stamp.hlc.wall_ms, 1_000);
    assert!(matches!(applied, Applied::Changed { old: None, .. }));
    assert_eq!(s.get(&k).and_then(|v| v.state.live()), Some(&p));
    // A refresh at the same millisecond still wins: the HLC counts.
    let p2 = publication("e2", "open", 120_000, "n1");
    let (rec2, applied2) = s.write(k.clone(), State::Live(p2.clone()), &mut c, Timestamp(1_000));
    assert!(rec2.version.stamp > rec.version.stamp);
    match applied2 {
        Applied::Changed {
            old: Some(old),
            new,
        } => {
            assert_eq!(old.state.live(), Some(&p));
            assert_eq!(new.state.live(), Some(&p2));
        }
        other => panic!("expected a change, got {other:?}"),
    }
    // The older delta arriving late changes nothing.
    assert_eq!(s.apply(rec, Timestamp(2_000)), Applied::Unchanged);
    assert_eq!(s.len(), 1);
}

#[test]
fn remove_writes_a_tombstone_held_past_the_expiry() {
    let mut s = set();
    let mut c = clock("n1");
    let k = key("bob", "L1");
    assert!(
        s.remove(k.clone(), &mut c, Timestamp(10)).is_none(),
        "nothing to remove"
    );
    s.write(
        k.clone(),
        State::Live(publication("e", "x", 60_000, "n1")),
        &mut c,
        Timestamp(10),
    );
    let (rec, _) = s
        .remove(k.clone(), &mut c, Timestamp(20))
        .expect("a live record");
    let until = Timestamp(60_000).plus(HOLD);
    assert_eq!(rec.version.state, State::Removed { until });
    assert!(s.live().next().is_none());
    assert_eq!(s.len(), 1, "the tombstone is kept");
    assert!(
        s.remove(k, &mut c, Timestamp(30)).is_none(),
        "already removed"
    );
}

#[test]
fn expire_turns_live_into_tombstone_then_purges() {
    let mut s = set();
    let k = key("carol", "L1");
    let rec = live(
        k.clone(),
        stamp(100, 0, "n2"),
        publication("e", "x", 10_000, "n2"),
    );
    s.apply(rec.clone(), Timestamp(100));
    let before = s.digest().clone();
    assert_eq!(s.expire(Timestamp(9_999)), ExpireReport::default());
    assert_eq!(
        s.expire(Timestamp(10_000)),
        ExpireReport {
            expired: 1,
            purged: 0
        }
    );
    let v = s.get(&k).expect("tombstone kept");
    assert_eq!(v.stamp, rec.version.stamp, "expiry keeps the stamp");
    assert_eq!(
        v.state,
        State::Removed {
            until: Timestamp(10_000).plus(HOLD)
        }
    );
    assert_eq!(s.digest(), &before, "expiry does not change the digest");
    // The same live record arriving again is dead on arrival: nothing changes.
    assert_eq!(s.apply(rec.clone(), Timestamp(10_001)), Applied::Unchanged);
    let purge_at = Timestamp(10_000).plus(HOLD);
    assert_eq!(
        s.expire(purge_at),
        ExpireReport {
            expired: 0,
            purged: 1
        }
    );
    assert!(s.is_empty());
    assert_eq!(s.digest(), &digest::Digest::empty());
    // After the hold the old version is dead on arrival and not stored.
    assert_eq!(s.apply(rec, purge_at), Applied::Unchanged);
    assert!(s.is_empty());
}

#[test]
fn dead_on_arrival_live_record_is_stored_as_tombstone() {
    let mut s = set();
    let k = key("dave", "L1");
    let rec = live(
        k.clone(),
        stamp(100, 0, "n2"),
        publication("e", "x", 1_000, "n2"),
    );
    match s.apply(rec, Timestamp(1_500)) {
        Applied::Changed { old: None, new } => {
            assert_eq!(
                new.state,
                State::Removed {
                    until: Timestamp(1_000).plus(HOLD)
                }
            );
        }
        other => panic!("expected a tombstone insert, got {other:?}"),
    }
    assert!(s.live().next().is_none());
}

#[test]
fn newer_dead_tombstone_removes_an_older_live_record() {
    let mut s = set();
    let k = key("erin", "L1");
    s.apply(
        live(
            k.clone(),
            stamp(100, 0, "n1"),
            publication("e", "x", 500, "n1"),
        ),
        Timestamp(100),
    );
    let tomb = removed(k.clone(), stamp(200, 0, "n2"), 400);
    match s.apply(tomb, Timestamp(450)) {
        Applied::Changed { old: Some(old), .. } => assert!(old.state.live().is_some()),
        other => panic!("expected the live record removed, got {other:?}"),
    }
    assert!(s.is_empty(), "a tombstone past its until is not stored");
    assert_eq!(s.digest(), &digest::Digest::empty());
}

#[test]
fn find_etag_follows_the_lineage_within_one_presentity() {
    let mut s = set();
    let mut c = clock("n1");
    let alice = key("alice", "L1");
    let alice2 = key("alice", "L2");
    let bob = key("bob", "L1");
    s.write(
        alice.clone(),
        State::Live(publication("cur-a1", "x", 9_000, "n1")),
        &mut c,
        Timestamp(1),
    );
    s.write(
        alice2.clone(),
        State::Live(publication("cur-a2", "y", 9_000, "n2")),
        &mut c,
        Timestamp(1),
    );
    s.write(
        bob.clone(),
        State::Live(publication("cur-b", "z", 9_000, "n1")),
        &mut c,
        Timestamp(1),
    );
    let ev = EventKey::new("presence");
    let found = s.find_etag(&alice.uri, &ev, &ETag::from_wire("cur-a2"));
    assert_eq!(found.map(|(k, _)| k), Some(&alice2));
    // Bob's ETag is not Alice's; another event finds nothing.
    assert!(s
        .find_etag(&alice.uri, &ev, &ETag::from_wire("cur-b"))
        .is_none());
    assert!(s
        .find_etag(
            &alice.uri,
            &EventKey::new("dialog"),
            &ETag::from_wire("cur-a1")
        )
        .is_none());
    // A removed lineage is not found.
    s.remove(alice.clone(), &mut c, Timestamp(2));
    assert!(s
        .find_etag(&alice.uri, &ev, &ETag::from_wire("cur-a1"))
        .is_none());
}
