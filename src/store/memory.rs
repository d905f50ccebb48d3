//! [`MemoryStore`]: the in-memory twin of the sled store. Values are kept encoded (the same
//! codec envelopes sled stores), so the conformance suite exercises the real record format.
//! Used in unit tests, and as the store of `subs_db_mode = 0` / `publ_cache = 2`.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Mutex;

use super::*;
use crate::codec;

/// Two ordered maps behind one mutex (short critical sections; never held across I/O).
#[derive(Default)]
pub struct MemoryStore {
    inner: Mutex<Tables>,
}

#[derive(Default)]
struct Tables {
    publications: BTreeMap<Vec<u8>, Vec<u8>>,
    subscriptions: BTreeMap<Vec<u8>, Vec<u8>>,
    watchers: BTreeMap<Vec<u8>, Vec<u8>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn tables(&self) -> std::sync::MutexGuard<'_, Tables> {
        // The maps are consistent between statements; a panic elsewhere does not corrupt them.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Store for MemoryStore {
    fn put_publication(
        &self,
        uri: &PresentityUri,
        event: &EventKey,
        p: &Publication,
    ) -> Result<(), StoreError> {
        let v = codec::encode(PUBLICATION_V1, p);
        self.tables()
            .publications
            .insert(publication_key(uri, event, &p.etag), v);
        Ok(())
    }

    fn delete_publication(
        &self,
        uri: &PresentityUri,
        event: &EventKey,
        etag: &ETag,
    ) -> Result<(), StoreError> {
        self.tables()
            .publications
            .remove(&publication_key(uri, event, etag));
        Ok(())
    }

    fn publications(
        &self,
        uri: &PresentityUri,
        event: &EventKey,
    ) -> Result<Vec<Publication>, StoreError> {
        let prefix = presentity_prefix(uri, event);
        let t = self.tables();
        t.publications
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(_, v)| codec::decode(PUBLICATION_V1, v).map_err(StoreError::from))
            .collect()
    }

    fn put_rules(&self, presentity: &PresentityUri, doc: &[u8]) -> Result<(), StoreError> {
        let v = codec::encode(RULES_V1, &doc.to_vec());
        self.tables().watchers.insert(rules_key(presentity), v);
        Ok(())
    }

    fn delete_rules(&self, presentity: &PresentityUri) -> Result<(), StoreError> {
        self.tables().watchers.remove(&rules_key(presentity));
        Ok(())
    }

    fn rules(&self, presentity: &PresentityUri) -> Result<Option<Vec<u8>>, StoreError> {
        match self.tables().watchers.get(&rules_key(presentity)) {
            Some(v) => Ok(Some(codec::decode(RULES_V1, v)?)),
            None => Ok(None),
        }
    }

    fn put_watcher(
        &self,
        presentity: &PresentityUri,
        event: &EventKey,
        w: &WatcherRecord,
    ) -> Result<(), StoreError> {
        let v = codec::encode(WATCHER_V1, w);
        self.tables()
            .watchers
            .insert(watcher_key(presentity, event, &w.watcher), v);
        Ok(())
    }

    fn delete_watcher(
        &self,
        presentity: &PresentityUri,
        event: &EventKey,
        watcher: &PresentityUri,
    ) -> Result<(), StoreError> {
        self.tables()
            .watchers
            .remove(&watcher_key(presentity, event, watcher));
        Ok(())
    }

    fn watchers(
        &self,
        presentity: &PresentityUri,
        event: &EventKey,
    ) -> Result<Vec<WatcherRecord>, StoreError> {
        let prefix = watchers_prefix(presentity, event);
        let t = self.tables();
        t.watchers
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(_, v)| codec::decode(WATCHER_V1, v).map_err(StoreError::from))
            .collect()
    }

    fn put_subscription(&self, d: &DialogState) -> Result<(), StoreError> {
        let v = codec::encode(SUBSCRIPTION_V1, d);
        self.tables()
            .subscriptions
            .insert(subscription_key(&d.presentity, &d.event, &d.id), v);
        Ok(())
    }

    fn subscription(
        &self,
        presentity: &PresentityUri,
        event: &EventKey,
        id: &DialogId,
    ) -> Result<Option<DialogState>, StoreError> {
        match self
            .tables()
            .subscriptions
            .get(&subscription_key(presentity, event, id))
        {
            Some(v) => Ok(Some(codec::decode(SUBSCRIPTION_V1, v)?)),
            None => Ok(None),
        }
    }

    fn delete_subscription(
        &self,
        presentity: &PresentityUri,
        event: &EventKey,
        id: &DialogId,
    ) -> Result<(), StoreError> {
        self.tables()
            .subscriptions
            .remove(&subscription_key(presentity, event, id));
        Ok(())
    }

    fn scan_subscriptions(
        &self,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<(Vec<DialogState>, Option<Vec<u8>>), StoreError> {
        scan(&self.tables().subscriptions, after, limit, |_, v| {
            Ok(codec::decode(SUBSCRIPTION_V1, v)?)
        })
    }

    fn scan_publications(
        &self,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<(Vec<PublicationRow>, Option<Vec<u8>>), StoreError> {
        scan(&self.tables().publications, after, limit, |k, v| {
            let (uri, event) = split_publication_key(k).ok_or_else(|| {
                StoreError::Codec(codec::CodecError::Decode(
                    "malformed publication key".into(),
                ))
            })?;
            Ok((uri, event, codec::decode(PUBLICATION_V1, v)?))
        })
    }

    fn flush(&self) -> Result<usize, StoreError> {
        Ok(0)
    }
}

/// One batch of a key-ordered scan: up to `limit` rows after `after`, and the key to continue
/// from when the batch is full (the contract of `Store::scan_*`).
fn scan<T>(
    map: &BTreeMap<Vec<u8>, Vec<u8>>,
    after: Option<&[u8]>,
    limit: usize,
    row: impl Fn(&[u8], &[u8]) -> Result<T, StoreError>,
) -> Result<(Vec<T>, Option<Vec<u8>>), StoreError> {
    let start = match after {
        Some(k) => Bound::Excluded(k.to_vec()),
        None => Bound::Unbounded,
    };
    let mut out = Vec::new();
    let mut last = None;
    for (k, v) in map.range((start, Bound::Unbounded)).take(limit) {
        out.push(row(k, v)?);
        last = Some(k.clone());
    }
    let next = if out.len() == limit { last } else { None };
    Ok((out, next))
}

#[cfg(test)]
mod tests {
    #[test]
    fn memory_store_passes_the_conformance_suite() {
        super::super::conformance::run(&super::MemoryStore::new());
    }
}
