//! Keyset paging pushed to the shards. A listing is done in two phases so that a page costs
//! O(shards + limit) snapshots however many actors exist:
//!
//! 1. every shard asked picks, among its matching entries, the first `limit` keys strictly
//!    after the cursor ([`first_after`]: a bounded heap, no full sort, no snapshot) and
//!    answers them as a [`KeyPage`] with its match count;
//! 2. the caller merges the shards' key pages ([`merge_keys`], k-way by key), keeps the
//!    first `limit`, and asks each shard to snapshot only its keys that made the cut.
//!
//! Invariants:
//! * Keys are totally ordered as strings (presentities: `"<uri> <event>"`, compared
//!   byte-wise without building the string, see [`PresKeyRef`]; subscriptions: our tag).
//! * `next` (the cursor of the following page) is set exactly when matching keys beyond the
//!   page exist, and every matching key `<= next` that existed during the call is either in
//!   the page or was gone by phase 2 — so walking the cursor visits each key once, in order,
//!   even while entries come and go, and never skips one.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use super::Snapshot;

/// Which slice of a listing: keys strictly after `after`, at most `limit` of them, in key
/// order. A `limit` of 0 counts as 1.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PageRequest {
    /// The last key of the previous page (`None`: from the start).
    pub after: Option<String>,
    /// Page size.
    pub limit: usize,
}

impl PageRequest {
    /// The first `limit` keys.
    pub fn first(limit: usize) -> Self {
        PageRequest { after: None, limit }
    }

    /// The `limit` keys after `after` (`None`: from the start).
    pub fn after(after: Option<String>, limit: usize) -> Self {
        PageRequest { after, limit }
    }

    fn size(&self) -> usize {
        self.limit.max(1)
    }
}

/// Phase 1 answer of one shard: its first keys after the cursor, with what it needs to find
/// each entry again (`K`).
#[derive(Clone, Debug)]
pub struct KeyPage<K> {
    /// `(key, handle)`, ascending by key, at most the page's limit.
    pub keys: Vec<(String, K)>,
    /// Matching entries on this shard in all (before and after the cursor).
    pub total: usize,
    /// Set when this shard has matching keys beyond `keys`: its last key.
    pub next: Option<String>,
}

impl<K> Default for KeyPage<K> {
    fn default() -> Self {
        KeyPage {
            keys: Vec::new(),
            total: 0,
            next: None,
        }
    }
}

/// One page of a listing, as [`crate::api::NodeApi`] answers it.
#[derive(Clone, Debug)]
pub struct ListPage<T> {
    /// `(key, snapshot)`, ascending by key, at most the requested limit. An entry gone
    /// between the two phases is left out.
    pub items: Vec<(String, Snapshot<T>)>,
    /// Matching entries in all (the same on every page).
    pub total: usize,
    /// The cursor of the next page (pass it as [`PageRequest::after`]); `None` on the last.
    pub next: Option<String>,
}

impl<T> Default for ListPage<T> {
    fn default() -> Self {
        ListPage {
            items: Vec::new(),
            total: 0,
            next: None,
        }
    }
}

/// The merged phase 1: the keys to snapshot (each with the index of its shard page), the
/// total, and the next cursor.
#[derive(Debug)]
pub(crate) struct MergedKeys<K> {
    /// `(shard page index, key, handle)`, ascending by key.
    pub(crate) keys: Vec<(usize, String, K)>,
    /// Sum of the shards' totals.
    pub(crate) total: usize,
    /// The cursor of the next page.
    pub(crate) next: Option<String>,
}

/// A presentity's key `"<uri> <event>"` without building the string: ordered exactly as
/// that string is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PresKeyRef<'a> {
    uri: &'a str,
    event: &'a str,
}

impl<'a> PresKeyRef<'a> {
    /// The key of (`uri`, `event`).
    pub(crate) fn new(uri: &'a str, event: &'a str) -> Self {
        PresKeyRef { uri, event }
    }

    fn bytes(&self) -> impl Iterator<Item = u8> + 'a {
        self.uri
            .bytes()
            .chain(std::iter::once(b' '))
            .chain(self.event.bytes())
    }

    /// Whether this key sorts strictly after `cursor`.
    pub(crate) fn is_after(&self, cursor: &str) -> bool {
        self.bytes().cmp(cursor.bytes()) == Ordering::Greater
    }
}

impl std::fmt::Display for PresKeyRef<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.uri, self.event)
    }
}

impl Ord for PresKeyRef<'_> {
    fn cmp(&self, other: &Self) -> Ordering {
        self.bytes().cmp(other.bytes())
    }
}

impl PartialOrd for PresKeyRef<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// A heap entry ordered by its key only.
struct ByKey<K, V>(K, V);

impl<K: Ord, V> PartialEq for ByKey<K, V> {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}
impl<K: Ord, V> Eq for ByKey<K, V> {}
impl<K: Ord, V> PartialOrd for ByKey<K, V> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<K: Ord, V> Ord for ByKey<K, V> {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.cmp(&other.0)
    }
}

/// Phase 1 on one shard: of `entries` (the matching ones, any order), the smallest
/// `page.limit` keys for which `after` holds, ascending; plus how many entries there were
/// and whether more keys after the cursor exist beyond those picked. O(n log limit) time,
/// O(limit) memory.
pub(crate) fn first_after<K: Ord, V>(
    entries: impl Iterator<Item = (K, V)>,
    after: impl Fn(&K) -> bool,
    page: &PageRequest,
) -> (Vec<(K, V)>, usize, bool) {
    let limit = page.size();
    let mut heap: BinaryHeap<ByKey<K, V>> = BinaryHeap::new();
    let (mut total, mut candidates) = (0usize, 0usize);
    for (k, v) in entries {
        total += 1;
        if !after(&k) {
            continue;
        }
        candidates += 1;
        if heap.len() < limit {
            heap.push(ByKey(k, v));
        } else if heap.peek().is_some_and(|top| k < top.0) {
            heap.pop();
            heap.push(ByKey(k, v));
        }
    }
    let picked: Vec<(K, V)> = heap
        .into_sorted_vec()
        .into_iter()
        .map(|ByKey(k, v)| (k, v))
        .collect();
    (picked, total, candidates > limit)
}

/// Phase 1 on one shard, as a [`KeyPage`]: the picked keys rendered with `key`.
pub(crate) fn key_page<K: Ord, V, H>(
    entries: impl Iterator<Item = (K, V)>,
    after: impl Fn(&K) -> bool,
    page: &PageRequest,
    key: impl Fn(&K, V) -> (String, H),
) -> KeyPage<H> {
    let (picked, total, more) = first_after(entries, after, page);
    let keys: Vec<(String, H)> = picked.into_iter().map(|(k, v)| key(&k, v)).collect();
    let next = if more {
        keys.last().map(|(k, _)| k.clone())
    } else {
        None
    };
    KeyPage { keys, total, next }
}

/// Phase 1 merged: the first `limit` keys over all shard pages (k-way merge by key; the
/// shards' keys are disjoint). A shard that has keys beyond its page bounds the merge: no
/// key past its last one is taken, since its unseen keys could come before it.
pub(crate) fn merge_keys<K>(pages: Vec<KeyPage<K>>, limit: usize) -> MergedKeys<K> {
    let limit = limit.max(1);
    let total = pages.iter().map(|p| p.total).sum();
    let bound: Option<String> = pages.iter().filter_map(|p| p.next.clone()).min();
    let mut heads: Vec<std::iter::Peekable<std::vec::IntoIter<(String, K)>>> = pages
        .into_iter()
        .map(|p| p.keys.into_iter().peekable())
        .collect();
    let mut keys: Vec<(usize, String, K)> = Vec::new();
    while keys.len() < limit {
        let best = heads
            .iter_mut()
            .enumerate()
            .filter_map(|(i, h)| h.peek().map(|(k, _)| (i, k)))
            .filter(|(_, k)| bound.as_ref().is_none_or(|b| *k <= b))
            .min_by(|a, b| a.1.cmp(b.1))
            .map(|(i, _)| i);
        let Some(i) = best else { break };
        if let Some((k, h)) = heads[i].next() {
            keys.push((i, k, h));
        }
    }
    let remains = heads.iter_mut().any(|h| h.peek().is_some());
    let next = if keys.len() == limit && (remains || bound.is_some()) {
        keys.last().map(|(_, k, _)| k.clone())
    } else {
        // Fewer than `limit` taken: the merge stopped at the bound (or everything is in).
        bound
    };
    MergedKeys { keys, total, next }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard_page(keys: &[&str], limit: usize, after: Option<&str>) -> KeyPage<()> {
        let page = PageRequest::after(after.map(str::to_string), limit);
        key_page(
            keys.iter().map(|k| (*k, ())),
            |k| after.is_none_or(|a| *k > a),
            &page,
            |k, _| (k.to_string(), ()),
        )
    }

    fn walk(shards: &[Vec<&str>], limit: usize) -> (Vec<String>, usize) {
        let mut seen = Vec::new();
        let mut after: Option<String> = None;
        let mut pages = 0;
        loop {
            let parts = shards
                .iter()
                .map(|s| shard_page(s, limit, after.as_deref()))
                .collect();
            let m = merge_keys(parts, limit);
            assert!(m.keys.len() <= limit);
            pages += 1;
            seen.extend(m.keys.into_iter().map(|(_, k, _)| k));
            match m.next {
                Some(n) => after = Some(n),
                None => break,
            }
            assert!(pages < 100, "the walk must end");
        }
        (seen, pages)
    }

    #[test]
    fn first_after_keeps_the_smallest_in_order() {
        let page = PageRequest::after(Some("c".into()), 3);
        let keys = ["z", "a", "e", "d", "c", "f", "b", "g"];
        let (picked, total, more) = first_after(keys.iter().map(|k| (*k, ())), |k| *k > "c", &page);
        let picked: Vec<&str> = picked.into_iter().map(|(k, _)| k).collect();
        assert_eq!(picked, vec!["d", "e", "f"]);
        assert_eq!(total, 8);
        assert!(more, "g and z follow");
        let (picked, _, more) = first_after(keys.iter().map(|k| (*k, ())), |k| *k > "f", &page);
        assert_eq!(picked.len(), 2, "g, z");
        assert!(!more);
    }

    #[test]
    fn walking_several_shards_visits_each_key_once_in_order() {
        // 25 keys over 4 uneven shards, pages of 10: 10, 10, 5.
        let all: Vec<String> = (0..25).map(|i| format!("k{i:02}")).collect();
        let mut shards: Vec<Vec<&str>> = vec![Vec::new(); 4];
        for (i, k) in all.iter().enumerate() {
            shards[(i * 7 + i / 3) % 4].push(k.as_str());
        }
        let (seen, pages) = walk(&shards, 10);
        assert_eq!(seen, all);
        assert_eq!(pages, 3);
        // One shard holding everything, and limits that divide exactly.
        let one = vec![all.iter().map(String::as_str).collect::<Vec<_>>()];
        assert_eq!(walk(&one, 5), (all.clone(), 5));
        assert_eq!(walk(&one, 25).1, 1, "no empty last page");
        assert_eq!(walk(&[Vec::new(), Vec::new()], 10), (Vec::new(), 1));
    }

    #[test]
    fn a_shard_with_more_bounds_the_merge() {
        // Shard 0 holds a, b, c, d (page of 2: a, b, more); shard 1 holds x. A merge that took
        // x before c would skip c and d for ever.
        let s0 = shard_page(&["a", "b", "c", "d"], 2, None);
        let s1 = shard_page(&["x"], 2, None);
        let m = merge_keys(vec![s0, s1], 2);
        let keys: Vec<&str> = m.keys.iter().map(|(_, k, _)| k.as_str()).collect();
        assert_eq!(keys, vec!["a", "b"]);
        assert_eq!(m.next.as_deref(), Some("b"));
        assert_eq!(m.total, 5);
        // Limit 3 over the same pages: only 2 keys can be taken safely; the cursor is the
        // bound, so c comes next.
        let s0 = shard_page(&["a", "b", "c", "d"], 2, None);
        let s1 = shard_page(&["x"], 2, None);
        let m = merge_keys(vec![s0, s1], 3);
        assert_eq!(m.keys.len(), 2);
        assert_eq!(m.next.as_deref(), Some("b"));
        // The page indices say which shard to ask in phase 2.
        assert!(m.keys.iter().all(|(i, _, _)| *i == 0));
    }

    #[test]
    fn presentity_keys_order_as_their_strings() {
        let pairs = [
            ("sip:a@b", "presence"),
            ("sip:a@b.c", "presence"),
            ("sip:a@b", "dialog"),
            ("sip:a@bc", "presence"),
            ("sip:a@b", "presence.winfo"),
        ];
        let mut by_ref: Vec<PresKeyRef> =
            pairs.iter().map(|(u, e)| PresKeyRef::new(u, e)).collect();
        by_ref.sort();
        let mut by_string: Vec<String> = pairs.iter().map(|(u, e)| format!("{u} {e}")).collect();
        by_string.sort();
        let rendered: Vec<String> = by_ref.iter().map(ToString::to_string).collect();
        assert_eq!(rendered, by_string);
        let k = PresKeyRef::new("sip:a@b", "presence");
        assert!(k.is_after("sip:a@b dialog"));
        assert!(!k.is_after("sip:a@b presence"));
        assert!(!k.is_after("sip:a@b.c presence"));
    }
}
