//! Cluster replication: the sans-IO core (SPEC §8, DESIGN §5).
//!
//! Everything here is pure: no sockets, no actors, no clock reads — wall time comes in as a
//! [`crate::clock::Timestamp`] argument. The QUIC transport and the peer/replication actors
//! drive it.
//!
//! # The replication model
//!
//! * **What replicates.** Two tables, each a [`replica::ReplicaSet`]: publications keyed by
//!   [`merge::PubKey`] (presentity, event, lineage id = the ETag of the initial PUBLISH) with
//!   the [`crate::presence::publication::Publication`] as value (current ETag, body, absolute
//!   expiry, received time, priority, origin node); and subscriptions keyed by
//!   [`crate::ids::DialogId`] with an [`merge::OwnedDialog`] (dialog state + owner node).
//! * **Ownership.** Any node may write any publication: a PUBLISH (initial, refresh, modify,
//!   remove) is handled where it arrives, and its SIP-If-Match finds the lineage through the
//!   replicated origin ETag ([`replica::ReplicaSet::find_etag`]). A subscription is notified
//!   only by its `owner`; takeover is an ordinary write that changes the owner.
//! * **Merge rule.** Every write carries a [`hlc::Stamp`] (hybrid logical clock, node id);
//!   replicas keep the greatest version per key, tombstones included ([`merge`]: the laws —
//!   commutative, associative, idempotent — are stated there and property-tested), so
//!   duplicated, reordered or re-synced messages converge to one state.
//! * **Propagation.** Each local write goes to every peer as a delta ([`sync::SyncMsg::Delta`]);
//!   applying a received record never produces a delta (no re-broadcast). Anti-entropy
//!   ([`sync`], [`digest`]) on join, reconnect and periodically compares per-bucket digests and
//!   moves only the differing records, batched.
//! * **Expiry and failure.** Expiry is not replicated: every node expires records from their
//!   absolute expiry on its own timer, and tombstones are dropped after a hold that outlives
//!   any older version ([`replica`]). A node that was down, partitioned or restarted empty
//!   converges through anti-entropy; a peer whose clock runs more than the max drift ahead has
//!   its stamps refused ([`hlc::ClockSkew`]) until our clock catches up.
//! * **Wire.** [`wire::Frame`] in a [`crate::codec`] envelope behind a `u32` length; a
//!   handshake with a protocol version; another major version is refused.
//!
//! # Integration notes (the actor side)
//!
//! * Keep one [`hlc::HlcClock`] per node; stamp local writes with
//!   [`replica::ReplicaSet::write`] / [`replica::ReplicaSet::remove`]; on restart,
//!   [`hlc::HlcClock::restore`] the stamps read back from the store.
//! * Feed every received [`sync::SyncMsg`] to [`sync::handle`]; send its `reply` back to that
//!   peer; apply each of its `changes` to the presentity actor (`Live` → insert/replace the
//!   old version's ETag with the new one; `Removed` → remove the old version's ETag) so local
//!   watchers are notified, without replicating that change again.
//! * Call [`replica::ReplicaSet::expire`] about once a second.

pub mod certs;
pub mod digest;
pub mod endpoint;
pub mod hlc;
pub mod link;
pub mod members;
pub mod merge;
pub mod replica;
pub mod sync;
pub mod tls;
pub mod wire;

#[cfg(test)]
mod tests;
