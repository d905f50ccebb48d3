//! The replication conversation for one table, sans-IO: the messages ([`SyncMsg`]) and what a
//! node does on receiving each ([`handle`]). The peer actor only moves messages between this
//! and the wire.
//!
//! # Protocol
//!
//! * **Delta** — every local write is sent to every peer at once. Receiving one applies it; it
//!   is never forwarded (changes caused by a replicated message are not re-broadcast).
//! * **Anti-entropy** (on join, reconnect and periodically), one exchange, requester R and
//!   responder S:
//!   1. R → S `DigestRequest` with R's non-zero bucket digests ([`digest_request`]).
//!   2. S compares. Buckets where R is empty: S sends its records there at once (`Batch`).
//!      Other differing buckets: S sends `DigestDiff` with the buckets and the `(key, stamp)`
//!      of its records in them. No difference at all: one empty `DigestDiff` ("in sync").
//!   3. R reconciles each `DigestDiff`: `Pull` for keys where S is newer or R has nothing, and
//!      a `Batch` of R's records where R is newer or S has nothing.
//!   4. S answers `Pull` with `Batch`.
//!
//!   Afterwards both hold the join of both states for every bucket that differed, without
//!   per-record round trips; only differing records travel. Writes racing the exchange are
//!   carried by their deltas or the next round.
//!
//! Invariants: every stamp received is first observed by the local HLC; a record whose stamp
//! is too far in the future ([`ClockSkew`]) is refused, not applied. Every message produced
//! holds at most about `max_batch_bytes` of records or summary entries (one oversized record
//! still travels alone).

use std::hash::Hash;

use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;
use crate::cluster::digest::{self, Digest};
use crate::cluster::hlc::{ClockSkew, HlcClock, Stamp};
use crate::cluster::merge::{Expiring, Record};
use crate::cluster::replica::{Applied, ReplicaSet};
use crate::codec;

/// One replication message for a table of keys `K` and live values `T`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SyncMsg<K, T> {
    /// Writes made at the sender (real-time replication).
    Delta(Vec<Record<K, T>>),
    /// "These are my bucket digests" (non-zero buckets only): starts an exchange.
    DigestRequest {
        /// `(bucket, digest)` pairs.
        buckets: Vec<(u16, u64)>,
    },
    /// "These buckets differ; this is what I hold in them". Empty = in sync.
    DigestDiff {
        /// The differing buckets this message covers.
        buckets: Vec<u16>,
        /// `(key, stamp)` of every sender record in those buckets.
        entries: Vec<(K, Stamp)>,
    },
    /// "Send me these records."
    Pull {
        /// The keys wanted.
        keys: Vec<K>,
    },
    /// Records sent for anti-entropy (answer to a digest or a pull).
    Batch(Vec<Record<K, T>>),
}

/// Message size bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SyncLimits {
    /// Target encoded size of the records or entries in one message.
    pub max_batch_bytes: usize,
}

impl Default for SyncLimits {
    fn default() -> Self {
        SyncLimits {
            max_batch_bytes: 1 << 20,
        }
    }
}

/// The result of handling one message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Handled<K, T> {
    /// Messages to send back to the same peer, in order.
    pub reply: Vec<SyncMsg<K, T>>,
    /// Records that changed the local state: apply them to the presentity / subscription
    /// actors (which notify local watchers). Only [`Applied::Changed`] entries.
    pub changes: Vec<(K, Applied<T>)>,
    /// Records refused because their stamp is too far ahead of our clock.
    pub refused: Vec<(K, ClockSkew)>,
    /// The peer reported no difference (an empty `DigestDiff`).
    pub in_sync: bool,
}

impl<K, T> Default for Handled<K, T> {
    fn default() -> Self {
        Handled {
            reply: Vec::new(),
            changes: Vec::new(),
            refused: Vec::new(),
            in_sync: false,
        }
    }
}

/// The message that starts an anti-entropy exchange with a peer.
pub fn digest_request<K, T>(set: &ReplicaSet<K, T>) -> SyncMsg<K, T>
where
    K: Ord + Clone + Serialize,
    T: Expiring + Clone + Serialize,
{
    SyncMsg::DigestRequest {
        buckets: set.digest().to_wire(),
    }
}

/// Caps the expiry of every live record `msg` carries at `latest` (see
/// [`Expiring::cap_expiry`]): a peer cannot make a record outlive this node's `max_expires`.
pub fn cap_expiries<K, T: Expiring>(msg: &mut SyncMsg<K, T>, latest: Timestamp) {
    if let SyncMsg::Delta(records) | SyncMsg::Batch(records) = msg {
        for r in records {
            if let crate::cluster::merge::State::Live(v) = &mut r.version.state {
                v.cap_expiry(latest);
            }
        }
    }
}

/// Handles one message from a peer at wall time `now` (see the module doc for each step).
pub fn handle<K, T>(
    set: &mut ReplicaSet<K, T>,
    clock: &mut HlcClock,
    msg: SyncMsg<K, T>,
    now: Timestamp,
    limits: SyncLimits,
) -> Handled<K, T>
where
    K: Ord + Clone + Serialize + Hash,
    T: Expiring + Clone + Serialize,
{
    let mut out = Handled::default();
    let max = limits.max_batch_bytes;
    match msg {
        SyncMsg::Delta(records) | SyncMsg::Batch(records) => {
            for record in records {
                if let Err(skew) = clock.observe(record.version.stamp.hlc, now) {
                    out.refused.push((record.key, skew));
                    continue;
                }
                let key = record.key.clone();
                if let applied @ Applied::Changed { .. } = set.apply(record, now) {
                    out.changes.push((key, applied));
                }
            }
        }
        SyncMsg::DigestRequest { buckets } => {
            let remote = Digest::from_wire(&buckets);
            let (theirs_empty, both): (Vec<u16>, Vec<u16>) = set
                .digest()
                .differing(&remote)
                .into_iter()
                .partition(|&b| remote.bucket(b) == 0);
            let records = digest::records_in(set, &theirs_empty);
            out.reply
                .extend(chunk(records, max).into_iter().map(SyncMsg::Batch));
            if theirs_empty.is_empty() && both.is_empty() {
                out.reply.push(SyncMsg::DigestDiff {
                    buckets: Vec::new(),
                    entries: Vec::new(),
                });
            }
            out.reply.extend(diff_messages(set, &both, max));
        }
        SyncMsg::DigestDiff { buckets, entries } => {
            out.in_sync = buckets.is_empty();
            let plan = digest::reconcile(set, &buckets, &entries);
            out.reply.extend(
                chunk(plan.pull, max)
                    .into_iter()
                    .map(|keys| SyncMsg::Pull { keys }),
            );
            let records = digest::records(set, &plan.push);
            out.reply
                .extend(chunk(records, max).into_iter().map(SyncMsg::Batch));
        }
        SyncMsg::Pull { keys } => {
            let records = digest::records(set, &keys);
            out.reply
                .extend(chunk(records, max).into_iter().map(SyncMsg::Batch));
        }
    }
    out
}

/// Splits `items` into runs of at most about `max_bytes` encoded bytes (never an empty run;
/// an item larger than `max_bytes` gets a run of its own).
fn chunk<R: Serialize>(items: Vec<R>, max_bytes: usize) -> Vec<Vec<R>> {
    let mut runs = Vec::new();
    let mut run = Vec::new();
    let mut size = 0usize;
    for item in items {
        let len = codec::encode(0, &item).len();
        if !run.is_empty() && size.saturating_add(len) > max_bytes {
            runs.push(std::mem::take(&mut run));
            size = 0;
        }
        size = size.saturating_add(len);
        run.push(item);
    }
    if !run.is_empty() {
        runs.push(run);
    }
    runs
}

/// `DigestDiff` messages covering `buckets`, each with at most about `max_bytes` of entries
/// (a bucket is never split: each message is self-contained for its buckets).
fn diff_messages<K, T>(
    set: &ReplicaSet<K, T>,
    buckets: &[u16],
    max_bytes: usize,
) -> Vec<SyncMsg<K, T>>
where
    K: Ord + Clone + Serialize,
    T: Expiring + Clone + Serialize,
{
    let mut out = Vec::new();
    let mut group = Vec::new();
    let mut entries = Vec::new();
    let mut size = 0usize;
    for (bucket, list) in digest::summary_by_bucket(set, buckets) {
        let len: usize = list.iter().map(|e| codec::encode(0, e).len()).sum();
        if !group.is_empty() && size.saturating_add(len) > max_bytes {
            out.push(SyncMsg::DigestDiff {
                buckets: std::mem::take(&mut group),
                entries: std::mem::take(&mut entries),
            });
            size = 0;
        }
        size = size.saturating_add(len);
        group.push(bucket);
        entries.extend(list);
    }
    if !group.is_empty() {
        out.push(SyncMsg::DigestDiff {
            buckets: group,
            entries,
        });
    }
    out
}
