//! The merge laws of `cluster::merge`, checked on versions and on whole replica sets:
//! commutative, associative, idempotent, hence convergence under any delivery order with
//! duplicates.

use std::cmp::Ordering;

use proptest::prelude::*;

use super::*;
use crate::cluster::digest;
use crate::cluster::merge::{merge, version_cmp, MergeOutcome};

const NOW: Timestamp = Timestamp(5_000);

fn applied_all(records: &[PubRecord]) -> ReplicaSet<PubKey, Publication> {
    let mut s = set();
    for r in records {
        s.apply(r.clone(), NOW);
    }
    s
}

/// The join of two versions under `merge`: what a replica holds after seeing both.
fn join(a: &Versioned<Publication>, b: &Versioned<Publication>) -> Versioned<Publication> {
    match merge(Some(a), b) {
        MergeOutcome::Replace => b.clone(),
        MergeOutcome::Keep => a.clone(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Commutative, associative and idempotent on versions of one key.
    #[test]
    fn merge_is_a_semilattice(a in arb_record(), b in arb_record(), c in arb_record()) {
        let (a, b, c) = (a.version, b.version, c.version);
        prop_assert_eq!(join(&a, &b), join(&b, &a));
        prop_assert_eq!(join(&join(&a, &b), &c), join(&a, &join(&b, &c)));
        prop_assert_eq!(join(&a, &a), a.clone());
        prop_assert_eq!(merge(Some(&a), &a), MergeOutcome::Keep);
        // The order behind it is total and antisymmetric.
        prop_assert_eq!(version_cmp(&a, &b), version_cmp(&b, &a).reverse());
        if version_cmp(&a, &b) == Ordering::Equal {
            prop_assert_eq!(&a, &b);
        }
    }

    /// Any permutation of a multiset of updates, with duplicates, converges to one state
    /// (records and digest), and applying everything again changes nothing.
    #[test]
    fn any_delivery_order_converges(
        records in proptest::collection::vec(arb_record(), 1..30),
        order in any::<u64>(),
        dups in proptest::collection::vec(0usize..30, 0..10),
    ) {
        let reference = applied_all(&records);

        let mut shuffled = records.clone();
        for &d in &dups {
            shuffled.push(records[d % records.len()].clone());
        }
        // A deterministic Fisher–Yates from the drawn seed.
        let mut seed = order;
        for i in (1..shuffled.len()).rev() {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let j = (seed >> 33) as usize % (i + 1);
            shuffled.swap(i, j);
        }
        let mut other = applied_all(&shuffled);
        prop_assert_eq!(snapshot(&reference), snapshot(&other));
        prop_assert_eq!(reference.digest(), other.digest());

        for r in &records {
            prop_assert_eq!(other.apply(r.clone(), NOW), crate::cluster::replica::Applied::Unchanged);
        }
        prop_assert_eq!(snapshot(&reference), snapshot(&other));
    }

    /// Grouping does not matter: merging two replicas that each saw part of the updates
    /// gives the state of one replica that saw all of them.
    #[test]
    fn merging_partial_replicas_equals_seeing_everything(
        left in proptest::collection::vec(arb_record(), 0..15),
        right in proptest::collection::vec(arb_record(), 0..15),
    ) {
        let mut all = left.clone();
        all.extend(right.iter().cloned());
        let everything = applied_all(&all);
        let mut l = applied_all(&left);
        let r = applied_all(&right);
        for (k, v) in r.iter() {
            l.apply(Record { key: k.clone(), version: v.clone() }, NOW);
        }
        prop_assert_eq!(snapshot(&l), snapshot(&everything));
    }

    /// The incrementally kept digest always equals the digest recomputed from the records,
    /// through applies and expiry passes.
    #[test]
    fn incremental_digest_matches_recomputed(
        records in proptest::collection::vec(arb_record(), 0..30),
        nows in proptest::collection::vec(0u64..3_000_000, 1..4),
    ) {
        let mut s = applied_all(&records);
        prop_assert_eq!(s.digest(), &digest::digest(&s));
        for now in nows {
            s.expire(Timestamp(now));
            prop_assert_eq!(s.digest(), &digest::digest(&s));
        }
    }
}
