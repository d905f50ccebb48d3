//! Anti-entropy digests: a fixed partition of the key space into [`BUCKETS`] buckets, one
//! 64-bit digest per bucket, and the set arithmetic that finds what two replicas disagree on.
//!
//! Invariants:
//! * A key's bucket depends on the key only, so every version of a record stays in one
//!   bucket; a bucket's digest is the XOR of a 64-bit hash of `(key, stamp)` over its records,
//!   so it does not depend on insertion order and is updated in O(1) per change
//!   ([`crate::cluster::replica::ReplicaSet`] keeps its digest current that way).
//! * Hashes are computed over the codec's bytes with FNV-1a and a SplitMix64 finaliser: they
//!   are the same on every node, platform and Rust release (std's `DefaultHasher` is not
//!   guaranteed to be). [`BUCKETS`] and the hash are part of the wire protocol: changing
//!   either needs a major protocol bump.
//! * The digest covers `(key, stamp)`, not the value: a stamp names one write, so two replicas
//!   with the same stamps hold the same writes. (A record one node has already turned into
//!   its expiry tombstone keeps its stamp and digest; the other node's own timer catches up.)
//! * Nothing taken from the network is trusted: bucket numbers out of range are ignored.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use crate::cluster::hlc::Stamp;
use crate::cluster::merge::{Expiring, Record};
use crate::cluster::replica::ReplicaSet;
use crate::codec;

/// Number of buckets the key space is split into (protocol constant).
pub const BUCKETS: u16 = 1024;

/// One digest per bucket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Digest {
    buckets: Vec<u64>,
}

impl Default for Digest {
    fn default() -> Self {
        Digest {
            buckets: vec![0; usize::from(BUCKETS)],
        }
    }
}

impl Digest {
    /// The digest of an empty set (every bucket 0).
    pub fn empty() -> Self {
        Self::default()
    }

    /// The digest of one bucket (0 for an index out of range).
    pub fn bucket(&self, bucket: u16) -> u64 {
        self.buckets.get(usize::from(bucket)).copied().unwrap_or(0)
    }

    /// Adds or removes (XOR is its own inverse) one record hash.
    pub(crate) fn toggle(&mut self, bucket: u16, hash: u64) {
        if let Some(slot) = self.buckets.get_mut(usize::from(bucket)) {
            *slot ^= hash;
        }
    }

    /// The non-zero buckets, for `DigestRequest` (an empty set sends nothing).
    pub fn to_wire(&self) -> Vec<(u16, u64)> {
        (0..BUCKETS)
            .map(|b| (b, self.bucket(b)))
            .filter(|(_, d)| *d != 0)
            .collect()
    }

    /// A digest from the wire: missing buckets are 0, out-of-range ones are ignored, and of
    /// duplicates the last counts.
    pub fn from_wire(pairs: &[(u16, u64)]) -> Self {
        let mut d = Digest::empty();
        for &(b, v) in pairs {
            if let Some(slot) = d.buckets.get_mut(usize::from(b)) {
                *slot = v;
            }
        }
        d
    }

    /// The buckets whose digests differ, ascending.
    pub fn differing(&self, other: &Digest) -> Vec<u16> {
        (0..BUCKETS)
            .filter(|&b| self.bucket(b) != other.bucket(b))
            .collect()
    }
}

/// The buckets in which `local` and `remote` differ, ascending.
pub fn differing(local: &Digest, remote: &Digest) -> Vec<u16> {
    local.differing(remote)
}

/// The bucket of `key`.
pub fn bucket_of<K: Serialize>(key: &K) -> u16 {
    bucket_from(fnv(FNV_OFFSET, &codec::encode(0, key)))
}

/// The bucket of `key` and the digest contribution of `(key, stamp)`.
pub fn record_hash<K: Serialize>(key: &K, stamp: &Stamp) -> (u16, u64) {
    let key_state = fnv(FNV_OFFSET, &codec::encode(0, key));
    let full = fnv(key_state, &codec::encode(0, stamp));
    (bucket_from(key_state), mix(full))
}

/// Recomputes the digest of a whole set from scratch (the set keeps its own incrementally;
/// this is the reference it is checked against).
pub fn digest<K, T>(set: &ReplicaSet<K, T>) -> Digest
where
    K: Ord + Clone + Serialize,
    T: Expiring + Clone + Serialize,
{
    let mut d = Digest::empty();
    for (k, v) in set.iter() {
        let (bucket, hash) = record_hash(k, &v.stamp);
        d.toggle(bucket, hash);
    }
    d
}

/// `(key, stamp)` of every record of `set` in `buckets`: what a peer needs to decide what to
/// pull and what to push.
pub fn summary<K, T>(set: &ReplicaSet<K, T>, buckets: &[u16]) -> Vec<(K, Stamp)>
where
    K: Ord + Clone + Serialize,
    T: Expiring + Clone + Serialize,
{
    let wanted = bucket_mask(buckets);
    set.iter_buckets()
        .filter(|(_, _, b)| wanted[usize::from(*b)])
        .map(|(k, v, _)| (k.clone(), v.stamp.clone()))
        .collect()
}

/// [`summary`] of `buckets`, grouped by bucket (ascending): one pass over the set.
pub fn summary_by_bucket<K, T>(
    set: &ReplicaSet<K, T>,
    buckets: &[u16],
) -> BTreeMap<u16, Vec<(K, Stamp)>>
where
    K: Ord + Clone + Serialize,
    T: Expiring + Clone + Serialize,
{
    let wanted = bucket_mask(buckets);
    let mut out: BTreeMap<u16, Vec<(K, Stamp)>> = buckets
        .iter()
        .filter(|&&b| b < BUCKETS)
        .map(|&b| (b, Vec::new()))
        .collect();
    for (k, v, b) in set.iter_buckets() {
        if wanted[usize::from(b)] {
            out.entry(b).or_default().push((k.clone(), v.stamp.clone()));
        }
    }
    out
}

/// Every record of `set` in `buckets`.
pub fn records_in<K, T>(set: &ReplicaSet<K, T>, buckets: &[u16]) -> Vec<Record<K, T>>
where
    K: Ord + Clone + Serialize,
    T: Expiring + Clone + Serialize,
{
    let wanted = bucket_mask(buckets);
    set.iter_buckets()
        .filter(|(_, _, b)| wanted[usize::from(*b)])
        .map(|(k, v, _)| Record {
            key: k.clone(),
            version: v.clone(),
        })
        .collect()
}

/// The records of `set` named by `keys` (unknown keys skipped).
pub fn records<K, T>(set: &ReplicaSet<K, T>, keys: &[K]) -> Vec<Record<K, T>>
where
    K: Ord + Clone + Serialize,
    T: Expiring + Clone + Serialize,
{
    keys.iter()
        .filter_map(|k| {
            set.get(k).map(|v| Record {
                key: k.clone(),
                version: v.clone(),
            })
        })
        .collect()
}

/// What to exchange for some buckets, given the peer's summary of them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reconcile<K> {
    /// Keys the peer holds a newer version of (or we lack): ask for them.
    pub pull: Vec<K>,
    /// Keys we hold a newer version of (or the peer lacks): send them.
    pub push: Vec<K>,
}

/// Compares our records in `buckets` with the peer's `remote` summary of the same buckets.
/// Remote entries outside `buckets` are ignored; equal stamps need nothing.
pub fn reconcile<K, T>(
    set: &ReplicaSet<K, T>,
    buckets: &[u16],
    remote: &[(K, Stamp)],
) -> Reconcile<K>
where
    K: Ord + Clone + Serialize + std::hash::Hash,
    T: Expiring + Clone + Serialize,
{
    let wanted = bucket_mask(buckets);
    let mut theirs: HashMap<&K, &Stamp> = HashMap::with_capacity(remote.len());
    for (k, s) in remote {
        if wanted[usize::from(bucket_of(k))] {
            theirs.insert(k, s);
        }
    }
    let mut pull = Vec::new();
    let mut push = Vec::new();
    for (k, v, b) in set.iter_buckets() {
        if !wanted[usize::from(b)] {
            continue;
        }
        match theirs.remove(k) {
            Some(s) if *s > v.stamp => pull.push(k.clone()),
            Some(s) if *s == v.stamp => {}
            _ => push.push(k.clone()),
        }
    }
    pull.extend(theirs.into_keys().cloned());
    pull.sort();
    Reconcile { pull, push }
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

fn fnv(mut state: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        state ^= u64::from(b);
        state = state.wrapping_mul(FNV_PRIME);
    }
    state
}

/// SplitMix64's finaliser: spreads FNV's weak low bits over the whole word.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn bucket_from(key_state: u64) -> u16 {
    // The remainder is < BUCKETS, which fits u16.
    (mix(key_state) % u64::from(BUCKETS)) as u16
}

fn bucket_mask(buckets: &[u16]) -> Vec<bool> {
    let mut mask = vec![false; usize::from(BUCKETS)];
    for &b in buckets {
        if let Some(m) = mask.get_mut(usize::from(b)) {
            *m = true;
        }
    }
    mask
}
