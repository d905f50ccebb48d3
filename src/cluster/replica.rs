//! [`ReplicaSet`]: one node's copy of a replicated table (publications or subscriptions),
//! merged last-writer-wins, with expiry, tombstones and an always-current digest.
//!
//! Invariants:
//! * Every stored version is the greatest ever applied for its key ([`merge`]), except that a
//!   tombstone past its `until` is dropped.
//! * A live value at or past its own `expires_at` is never stored: [`ReplicaSet::apply`] and
//!   [`ReplicaSet::expire`] turn it into the tombstone of the same stamp with
//!   `until = expires_at + hold`. Every node does this from the record's absolute expiry on its
//!   own timer; expiry is not replicated (SPEC §8).
//! * The digest always equals [`crate::cluster::digest::digest`] of the records.
//!
//! # Tombstone lifetime (the precondition of convergence)
//!
//! Dropping a tombstone is safe once no older version of its key can still be live, because a
//! late older version then arrives dead and is ignored. An older version was written before
//! the removal, with an expiry of at most `max_expires` after its write; so tombstones are
//! kept until `max(expires_at, now) + hold` with `hold >= max_expires` (the largest Expires
//! any node grants). With a smaller `hold`, a publication whose expiry was shortened by a
//! refresh and then removed could come back from a long-partitioned peer until its old
//! expiry.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use crate::clock::Timestamp;
use crate::cluster::digest::{record_hash, Digest};
use crate::cluster::hlc::HlcClock;
use crate::cluster::merge::{merge, Expiring, MergeOutcome, PubKey, Record, State, Versioned};
use crate::ids::{ETag, EventKey, PresentityUri};
use crate::presence::publication::Publication;

/// Tombstone hold by default: Kamailio's default `max_expires` (3600 s).
pub const DEFAULT_TOMBSTONE_HOLD: Duration = Duration::from_secs(3600);

/// What [`ReplicaSet::apply`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Applied<T> {
    /// The incoming version won. `new` is what is now stored (a tombstone already past its
    /// `until` wins but is not stored: the key is then gone).
    Changed {
        /// The version held before, if any.
        old: Option<Versioned<T>>,
        /// The winning version.
        new: Versioned<T>,
    },
    /// The local version was at least as new; nothing changed.
    Unchanged,
}

/// A stored version with its key's digest bucket (cached: computing it encodes the key).
#[derive(Clone, Debug)]
struct Entry<T> {
    version: Versioned<T>,
    bucket: u16,
}

/// What one [`ReplicaSet::expire`] pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExpireReport {
    /// Live records past their expiry, turned into tombstones.
    pub expired: usize,
    /// Tombstones past their `until`, dropped.
    pub purged: usize,
}

/// One node's copy of a replicated table.
#[derive(Clone, Debug)]
pub struct ReplicaSet<K, T> {
    records: BTreeMap<K, Entry<T>>,
    digest: Digest,
    hold: Duration,
}

impl<K, T> ReplicaSet<K, T>
where
    K: Ord + Clone + Serialize,
    T: Expiring + Clone + Serialize,
{
    /// An empty set whose tombstones live `hold` past the removed value's expiry (see the
    /// module doc: at least the largest Expires any node grants).
    pub fn new(hold: Duration) -> Self {
        ReplicaSet {
            records: BTreeMap::new(),
            digest: Digest::empty(),
            hold,
        }
    }

    /// Merges one record (a delta, a batch entry, or a local write) at wall time `now`.
    pub fn apply(&mut self, record: Record<K, T>, now: Timestamp) -> Applied<T> {
        let Record { key, version } = record;
        let incoming = self.normalise(version, now);
        if merge(self.get(&key), &incoming) == MergeOutcome::Keep {
            return Applied::Unchanged;
        }
        let dead = matches!(incoming.state, State::Removed { until } if until <= now);
        let (bucket, hash) = record_hash(&key, &incoming.stamp);
        let old = if dead {
            self.records.remove(&key)
        } else {
            self.digest.toggle(bucket, hash);
            let entry = Entry {
                version: incoming.clone(),
                bucket,
            };
            self.records.insert(key.clone(), entry)
        };
        let Some(old) = old else {
            return if dead {
                Applied::Unchanged
            } else {
                Applied::Changed {
                    old: None,
                    new: incoming,
                }
            };
        };
        let (bucket, hash) = record_hash(&key, &old.version.stamp);
        self.digest.toggle(bucket, hash);
        Applied::Changed {
            old: Some(old.version),
            new: incoming,
        }
    }

    /// A local write: stamps `state` with `clock`, applies it, and returns the record to send
    /// to every peer. A local stamp is newer than every stamp this node has observed, so the
    /// write wins locally (unless `state` is already expired or dead at `now`).
    pub fn write(
        &mut self,
        key: K,
        state: State<T>,
        clock: &mut HlcClock,
        now: Timestamp,
    ) -> (Record<K, T>, Applied<T>) {
        let record = Record {
            key,
            version: Versioned {
                stamp: clock.stamp(now),
                state,
            },
        };
        let applied = self.apply(record.clone(), now);
        (record, applied)
    }

    /// A local removal of `key`: the tombstone kept until `max(expires_at, now) + hold`.
    /// `None` (nothing written) when the key holds no live value.
    pub fn remove(
        &mut self,
        key: K,
        clock: &mut HlcClock,
        now: Timestamp,
    ) -> Option<(Record<K, T>, Applied<T>)> {
        let expires_at = self.get(&key)?.state.live()?.expires_at();
        let until = expires_at.max(now).plus(self.hold);
        Some(self.write(key, State::Removed { until }, clock, now))
    }

    /// Turns live records past their expiry into tombstones and drops tombstones past their
    /// `until`. O(records): call it from a periodic timer (about once a second).
    pub fn expire(&mut self, now: Timestamp) -> ExpireReport {
        let mut report = ExpireReport::default();
        let hold = self.hold;
        let digest = &mut self.digest;
        self.records.retain(|key, entry| {
            let v = &mut entry.version;
            if let State::Live(x) = &v.state {
                if x.expires_at() <= now {
                    v.state = State::Removed {
                        until: x.expires_at().plus(hold),
                    };
                    report.expired += 1;
                }
            }
            match v.state {
                State::Removed { until } if until <= now => {
                    let (bucket, hash) = record_hash(key, &v.stamp);
                    digest.toggle(bucket, hash);
                    report.purged += 1;
                    false
                }
                _ => true,
            }
        });
        report
    }

    /// The version held for `key`.
    pub fn get(&self, key: &K) -> Option<&Versioned<T>> {
        self.records.get(key).map(|e| &e.version)
    }

    /// Every record, live and tombstone, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &Versioned<T>)> {
        self.records.iter().map(|(k, e)| (k, &e.version))
    }

    /// Every record with its digest bucket, in key order (no hashing: the bucket is cached).
    pub(crate) fn iter_buckets(&self) -> impl Iterator<Item = (&K, &Versioned<T>, u16)> {
        self.records.iter().map(|(k, e)| (k, &e.version, e.bucket))
    }

    /// Every live value, in key order.
    pub fn live(&self) -> impl Iterator<Item = (&K, &T)> {
        self.iter()
            .filter_map(|(k, v)| v.state.live().map(|x| (k, x)))
    }

    /// Number of records, tombstones included.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// No records at all.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The per-bucket digest of the records (kept current on every change).
    pub fn digest(&self) -> &Digest {
        &self.digest
    }

    /// The tombstone hold this set was built with.
    pub fn hold(&self) -> Duration {
        self.hold
    }

    /// A live value at or past its expiry becomes the tombstone of the same stamp.
    fn normalise(&self, mut v: Versioned<T>, now: Timestamp) -> Versioned<T> {
        if let State::Live(x) = &v.state {
            if x.expires_at() <= now {
                v.state = State::Removed {
                    until: x.expires_at().plus(self.hold),
                };
            }
        }
        v
    }
}

impl ReplicaSet<PubKey, Publication> {
    /// The live publication of (`uri`, `event`) whose current ETag is `etag`, with its key:
    /// how a refresh, modify or remove (SIP-If-Match) finds the lineage it continues, whichever
    /// node minted the ETag. A scan of that presentity's range only.
    pub fn find_etag(
        &self,
        uri: &PresentityUri,
        event: &EventKey,
        etag: &ETag,
    ) -> Option<(&PubKey, &Publication)> {
        let start = PubKey {
            uri: uri.clone(),
            event: event.clone(),
            id: crate::cluster::merge::PubId(ETag::from_wire("")),
        };
        self.records
            .range(start..)
            .take_while(|(k, _)| &k.uri == uri && &k.event == event)
            .filter_map(|(k, e)| e.version.state.live().map(|p| (k, p)))
            .find(|(_, p)| &p.etag == etag)
    }
}
