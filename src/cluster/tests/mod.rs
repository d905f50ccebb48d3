//! Tests of the cluster core that span its modules: the merge laws and convergence
//! (`laws`), the replica set (`replica`), digests and the anti-entropy exchange (`exchange`),
//! the wire framing (`wire`), and membership over a simulated network (`members`). Shared
//! builders live here.

use std::time::Duration;

use proptest::prelude::*;

use crate::clock::Timestamp;
use crate::cluster::hlc::{Hlc, Stamp};
use crate::cluster::merge::{PubId, PubKey, PubRecord, Record, State, Versioned};
use crate::cluster::replica::ReplicaSet;
use crate::ids::{ETag, EventKey, NodeId, PresentityUri, UriMatch};
use crate::presence::package::Body;
use crate::presence::publication::Publication;

mod exchange;
mod laws;
mod members;
mod replica;
mod wire;

/// Tombstone hold used by the tests.
const HOLD: Duration = Duration::from_secs(100);

fn set() -> ReplicaSet<PubKey, Publication> {
    ReplicaSet::new(HOLD)
}

fn key(user: &str, lineage: &str) -> PubKey {
    PubKey {
        uri: PresentityUri::parse(&format!("sip:{user}@example.com"), UriMatch::CaseSensitive)
            .expect("a valid test URI"),
        event: EventKey::new("presence"),
        id: PubId(ETag::from_wire(lineage)),
    }
}

fn stamp(ms: u64, counter: u32, node: &str) -> Stamp {
    Stamp {
        hlc: Hlc {
            wall_ms: ms,
            counter,
        },
        node: NodeId::new(node),
    }
}

fn publication(etag: &str, doc: &str, expires_at: u64, node: &str) -> Publication {
    Publication {
        etag: ETag::from_wire(etag),
        body: Body::new("application/pidf+xml", doc.as_bytes().to_vec()),
        expires_at: Timestamp(expires_at),
        received_at: Timestamp(1),
        priority: 0,
        origin: NodeId::new(node),
    }
}

fn live(key: PubKey, stamp: Stamp, p: Publication) -> PubRecord {
    Record {
        key,
        version: Versioned {
            stamp,
            state: State::Live(p),
        },
    }
}

fn removed(key: PubKey, stamp: Stamp, until: u64) -> PubRecord {
    Record {
        key,
        version: Versioned {
            stamp,
            state: State::Removed {
                until: Timestamp(until),
            },
        },
    }
}

/// Records over a small key and stamp space, so that keys collide, stamps tie (on the same
/// and on different nodes) and tombstones meet live values. Expiries and `until`s are far
/// after the test's `now`, so nothing is dead.
fn arb_record() -> impl Strategy<Value = PubRecord> {
    (
        0usize..4,
        0u64..6,
        0u32..2,
        0usize..3,
        any::<bool>(),
        0usize..3,
    )
        .prop_map(|(k, ms, counter, node, is_live, doc)| {
            let key = key(["alice", "bob", "carol", "dave"][k], "lineage");
            let node = ["n1", "n2", "n3"][node];
            let stamp = stamp(1_000 + ms, counter, node);
            if is_live {
                let doc = ["open", "closed", "busy"][doc];
                live(
                    key,
                    stamp,
                    publication(&format!("e{doc}"), doc, 1_000_000, node),
                )
            } else {
                removed(key, stamp, 2_000_000 + doc as u64)
            }
        })
}

/// The full state of a set, for comparisons.
fn snapshot(s: &ReplicaSet<PubKey, Publication>) -> Vec<(PubKey, Versioned<Publication>)> {
    s.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}
