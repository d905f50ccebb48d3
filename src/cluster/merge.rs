//! The replicated records and their merge rule: last-writer-wins on [`Stamp`] with
//! tombstones.
//!
//! A record is a key (`K`: [`PubKey`] for publications, [`DialogId`] for subscriptions) and
//! a [`Versioned`] state: [`State::Live`] or a [`State::Removed`] tombstone, stamped by the
//! writing node's HLC.
//!
//! # The merge laws
//!
//! Versions of one key are totally ordered by [`version_cmp`]: by stamp; at an equal stamp a
//! tombstone above a live value (so a node that expired a record locally and one that has
//! not yet agree on the result); between two tombstones the later `until`; between two live
//! values their encoded bytes. An equal stamp with different values happens only when a
//! node converts a record it holds into a tombstone on expiry, or after a misconfiguration
//! (two nodes with one id); the byte order keeps even that deterministic.
//!
//! [`merge`] keeps the greater version. Applying a set of records to a replica set is
//! therefore a join (max) per key in a total order, which is:
//! * **commutative** — applying `a` then `b` leaves the same state as `b` then `a`;
//! * **associative** — how applications are grouped (batches, deltas, anti-entropy) does not
//!   matter;
//! * **idempotent** — applying a record already applied changes nothing.
//!
//! So any permutation of any multiset of updates, with duplicates, converges to one state
//! (checked by proptest in `cluster/tests`). Expiry is a monotone step in the same order
//! (a live value becomes the tombstone of the same stamp) and runs from the record's own
//! absolute expiry, so it keeps convergence; see [`crate::cluster::replica`] for the one
//! precondition on when tombstones may be dropped.

use std::cmp::Ordering;

use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;
use crate::cluster::hlc::Stamp;
use crate::codec;
use crate::ids::{DialogId, ETag, EventKey, NodeId, PresentityUri};
use crate::presence::publication::Publication;
use crate::presence::subscription::DialogState;

/// A live value with an absolute expiry, after which every node treats it as removed.
pub trait Expiring {
    /// When the value stops being live (absolute wall-clock time).
    fn expires_at(&self) -> Timestamp;
    /// Moves the expiry back to `latest` if it is later: a peer's record never lives longer
    /// here than this node would grant (`max_expires`). The stamp is unchanged, so digests
    /// still agree.
    fn cap_expiry(&mut self, latest: Timestamp);
}

/// The state of one replicated key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum State<T> {
    /// The value is live until its own expiry.
    Live(T),
    /// Removed (explicitly or by expiry); the tombstone is kept until `until` so that an
    /// older live version arriving late cannot bring the key back.
    Removed {
        /// When the tombstone may be forgotten.
        until: Timestamp,
    },
}

impl<T> State<T> {
    /// The live value, if any.
    pub fn live(&self) -> Option<&T> {
        match self {
            State::Live(v) => Some(v),
            State::Removed { .. } => None,
        }
    }
}

/// A state with the stamp of the write that produced it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Versioned<T> {
    /// The write's (HLC, node): the LWW order.
    pub stamp: Stamp,
    /// The state written.
    pub state: State<T>,
}

/// One key with its version: the unit of replication (deltas, batches).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record<K, T> {
    /// Which record.
    pub key: K,
    /// Its version.
    pub version: Versioned<T>,
}

/// What [`merge`] decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MergeOutcome {
    /// The local version is at least as new: keep it, drop the incoming one.
    Keep,
    /// The incoming version is newer: it replaces the local one (or is inserted).
    Replace,
}

/// Last-writer-wins: `Replace` iff `incoming` is strictly greater than `local` in the total
/// order of [`version_cmp`] (an absent local record is below everything). The laws
/// (commutative, associative, idempotent) are in the module doc.
pub fn merge<T: Serialize>(local: Option<&Versioned<T>>, incoming: &Versioned<T>) -> MergeOutcome {
    match local {
        Some(local) if version_cmp(incoming, local) != Ordering::Greater => MergeOutcome::Keep,
        _ => MergeOutcome::Replace,
    }
}

/// The total order on versions of one key (see the module doc).
pub fn version_cmp<T: Serialize>(a: &Versioned<T>, b: &Versioned<T>) -> Ordering {
    a.stamp
        .cmp(&b.stamp)
        .then_with(|| match (&a.state, &b.state) {
            (State::Removed { until: x }, State::Removed { until: y }) => x.cmp(y),
            (State::Removed { .. }, State::Live(_)) => Ordering::Greater,
            (State::Live(_), State::Removed { .. }) => Ordering::Less,
            (State::Live(x), State::Live(y)) => codec::encode(0, x).cmp(&codec::encode(0, y)),
        })
}

/// The lineage id of a publication: the ETag minted by its initial PUBLISH. Refreshes and
/// modifications mint new ETags (carried in [`Publication::etag`]) but keep the lineage id,
/// so every version of one publication is one replicated key.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PubId(pub ETag);

/// The key of a replicated publication. Ordered by presentity, then event, then lineage, so
/// the publications of one presentity are a contiguous range.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PubKey {
    /// The presentity.
    pub uri: PresentityUri,
    /// The event package.
    pub event: EventKey,
    /// The publication's lineage.
    pub id: PubId,
}

impl Expiring for Publication {
    fn expires_at(&self) -> Timestamp {
        self.expires_at
    }
    fn cap_expiry(&mut self, latest: Timestamp) {
        self.expires_at = self.expires_at.min(latest);
    }
}

/// A replicated subscription dialog: its stored state plus the node that notifies it. Only
/// `owner` sends NOTIFYs; a takeover is a write that changes `owner` (with the CSeq and
/// version continuing from `dialog`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnedDialog {
    /// The dialog as its owner stores it.
    pub dialog: DialogState,
    /// The node that notifies it.
    pub owner: NodeId,
}

impl Expiring for OwnedDialog {
    fn expires_at(&self) -> Timestamp {
        self.dialog.expires_at
    }
    fn cap_expiry(&mut self, latest: Timestamp) {
        self.dialog.expires_at = self.dialog.expires_at.min(latest);
    }
}

/// A replicated publication state.
pub type PubState = State<Publication>;
/// A replicated publication record.
pub type PubRecord = Record<PubKey, Publication>;
/// A replicated subscription record (keyed by its dialog id).
pub type SubRecord = Record<DialogId, OwnedDialog>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::hlc::Hlc;
    use crate::presence::package::Body;

    fn stamp(ms: u64, node: &str) -> Stamp {
        Stamp {
            hlc: Hlc {
                wall_ms: ms,
                counter: 0,
            },
            node: NodeId::new(node),
        }
    }

    fn live(ms: u64, node: &str, text: &str) -> Versioned<Publication> {
        Versioned {
            stamp: stamp(ms, node),
            state: State::Live(Publication {
                etag: ETag::from_wire(text),
                body: Body::new("text/plain", text.as_bytes().to_vec()),
                expires_at: Timestamp(10_000),
                received_at: Timestamp(ms),
                priority: 0,
                origin: NodeId::new(node),
            }),
        }
    }

    fn removed(ms: u64, node: &str, until: u64) -> Versioned<Publication> {
        Versioned {
            stamp: stamp(ms, node),
            state: State::Removed {
                until: Timestamp(until),
            },
        }
    }

    #[test]
    fn newer_stamp_wins_and_node_breaks_ties() {
        let old = live(1, "a", "x");
        let new = live(2, "a", "y");
        assert_eq!(merge(None, &old), MergeOutcome::Replace);
        assert_eq!(merge(Some(&old), &new), MergeOutcome::Replace);
        assert_eq!(merge(Some(&new), &old), MergeOutcome::Keep);
        assert_eq!(merge(Some(&new), &new), MergeOutcome::Keep);
        let other_node = live(2, "b", "z");
        assert_eq!(merge(Some(&new), &other_node), MergeOutcome::Replace);
        assert_eq!(merge(Some(&other_node), &new), MergeOutcome::Keep);
    }

    #[test]
    fn tombstone_beats_live_only_at_equal_or_newer_stamp() {
        let live2 = live(2, "a", "x");
        assert_eq!(
            merge(Some(&live2), &removed(2, "a", 5)),
            MergeOutcome::Replace
        );
        assert_eq!(merge(Some(&removed(2, "a", 5)), &live2), MergeOutcome::Keep);
        // A newer live version brings the key back (a re-publish after a remove).
        assert_eq!(
            merge(Some(&removed(1, "a", 5)), &live2),
            MergeOutcome::Replace
        );
        // Between equal-stamped tombstones the later `until` wins, both ways round.
        assert_eq!(
            merge(Some(&removed(1, "a", 5)), &removed(1, "a", 6)),
            MergeOutcome::Replace
        );
        assert_eq!(
            merge(Some(&removed(1, "a", 6)), &removed(1, "a", 5)),
            MergeOutcome::Keep
        );
    }

    #[test]
    fn equal_stamps_with_different_values_order_deterministically() {
        let x = live(3, "a", "x");
        let y = live(3, "a", "y");
        let xy = merge(Some(&x), &y);
        let yx = merge(Some(&y), &x);
        assert_ne!(xy, yx, "exactly one of the two replaces the other");
        assert_eq!(version_cmp(&x, &y), version_cmp(&y, &x).reverse());
        assert_ne!(version_cmp(&x, &y), Ordering::Equal);
    }
}
