//! [`SledStore`]: the [`Store`] on disk, one sled database per node in `[node] data_dir`.
//!
//! # Layout
//!
//! * one tree per table, named from configuration ([`Tables`]): publications in
//!   `presentity_table`, subscription dialogs in `active_watchers_table`; the `watchers_table`
//!   tree is created at open for the watcher-authorization records that will live there;
//! * a `meta` tree ([`META_TREE`]) holding the schema version (one byte,
//!   [`SCHEMA_VERSION`]), the node id (UTF-8) and, under a separate key namespace, whatever
//!   other modules store through [`SledStore::meta_put`] (NOTIFY CSeq floors, HLC).
//!
//! Keys and values are exactly those of [`MemoryStore`](super::memory::MemoryStore): keys from
//! [`publication_key`]/[`subscription_key`], values [`crate::codec`] envelopes.
//!
//! # Invariants
//!
//! * A database this process opened carries a schema version and a node id, and both are
//!   durable before [`SledStore::open`] returns; a newer schema version or another node's id
//!   refuses the open (see [`OpenError`]).
//! * Opening never panics: a lock still held by a dying process is retried for
//!   [`SledOptions::lock_wait`], everything else becomes an [`OpenError`] whose text names the
//!   directory and what the operator should do.
//!
//! # Flushing
//!
//! Durability follows the contract of [`super`]: data is durable after [`Store::flush`]
//! (sled's `Db::flush`, which writes and fsyncs the whole log, every tree). `flush` blocks on
//! disk I/O, and so does `open`: call both off actor threads (`spawn_blocking`, or
//! [`GroupFlusher`](super::flusher::GroupFlusher) for write-through).
//!
//! **Choice: sled's background flusher stays on, every 1000 ms** ([`SledOptions`] default).
//! Write-through (`subs_db_mode = 1`) does not need it; write-back (`subs_db_mode = 2`) calls
//! `flush` every `db_update_period` (100 s by default), and with the background flusher a
//! crash loses about one second of changes instead of up to that period, for the price of at
//! most one fsync per second while writes are arriving (an idle database costs nothing: sled
//! skips a flush with nothing dirty). The spec's "at most `db_update_period` seconds lost" is
//! a bound this tightens. `flush_every_ms: None` switches it off.

mod open;

use std::ops::Bound;
use std::path::{Path, PathBuf};

pub use self::open::{OpenError, SledOptions, Tables};
use super::*;
use crate::codec;
use crate::ids::NodeId;

/// Name of the metadata tree.
pub const META_TREE: &str = "meta";
/// The schema version this release writes and reads.
pub const SCHEMA_VERSION: u8 = 1;

/// Meta key of the schema version.
const KEY_SCHEMA: &[u8] = b"sys/schema_version";
/// Meta key of the node id.
const KEY_NODE_ID: &[u8] = b"sys/node_id";
/// Prefix of the keys of [`SledStore::meta_put`], so callers cannot clobber `sys/` keys.
const APP_PREFIX: &[u8] = b"app/";

/// The sled-backed store. Cheap to share behind an `Arc`; every method may block on disk.
pub struct SledStore {
    db: ::sled::Db,
    publications: ::sled::Tree,
    subscriptions: ::sled::Tree,
    watchers: ::sled::Tree,
    meta: ::sled::Tree,
    dir: PathBuf,
    node_id: NodeId,
}

impl SledStore {
    /// Opens (or creates) the database in `dir` with the default [`SledOptions`]: 64 MiB
    /// cache, background flush every second, lock retried for 5 s. Blocks; see
    /// [`SledStore::open_with`].
    pub fn open(dir: &Path, tables: Tables, node_id: &NodeId) -> Result<SledStore, OpenError> {
        Self::open_with(dir, tables, node_id, &SledOptions::default())
    }

    /// Opens (or creates) the database in `dir`: checks the table names, waits up to
    /// `options.lock_wait` for the lock of a process that is still exiting (one warning per
    /// attempt), then checks or records the schema version and node id. Blocks the calling
    /// thread (disk I/O and the lock wait): call it at start, before the actor system runs.
    pub fn open_with(
        dir: &Path,
        tables: Tables,
        node_id: &NodeId,
        options: &SledOptions,
    ) -> Result<SledStore, OpenError> {
        open::open(dir, tables, node_id, options)
    }

    /// The node id recorded in the database (equal to the configured one).
    pub fn node_id(&self) -> &NodeId {
        &self.node_id
    }

    /// The database directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A value stored with [`SledStore::meta_put`], if any.
    pub fn meta_get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .meta
            .get(app_key(key))
            .map_err(backend)?
            .map(|v| v.to_vec()))
    }

    /// Stores a small value in the metadata tree (clocks, CSeq floors). Durable, like every
    /// write, after the next [`Store::flush`]. Keys live in their own namespace: no key can
    /// overwrite the schema version or node id.
    pub fn meta_put(&self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.meta.insert(app_key(key), value).map_err(backend)?;
        Ok(())
    }

    /// Bytes the database uses on disk (sled's estimate: its files, all trees).
    pub fn size_on_disk(&self) -> Result<u64, StoreError> {
        self.db.size_on_disk().map_err(backend)
    }
}

fn app_key(key: &[u8]) -> Vec<u8> {
    let mut k = APP_PREFIX.to_vec();
    k.extend_from_slice(key);
    k
}

fn backend(e: ::sled::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

/// `limit` entries of `tree` after `after`, in key order, with the continuation key when
/// the batch is full (the convention of [`Store::scan_subscriptions`]).
fn scan<T>(
    tree: &::sled::Tree,
    after: Option<&[u8]>,
    limit: usize,
    mut decode: impl FnMut(&[u8], &[u8]) -> Result<T, StoreError>,
) -> Result<(Vec<T>, Option<Vec<u8>>), StoreError> {
    let start = match after {
        Some(k) => Bound::Excluded(k.to_vec()),
        None => Bound::Unbounded,
    };
    let mut out = Vec::new();
    let mut last = None;
    for entry in tree
        .range::<Vec<u8>, _>((start, Bound::Unbounded))
        .take(limit)
    {
        let (k, v) = entry.map_err(backend)?;
        out.push(decode(&k, &v)?);
        last = Some(k.to_vec());
    }
    let next = if out.len() == limit { last } else { None };
    Ok((out, next))
}

impl Store for SledStore {
    fn put_publication(
        &self,
        uri: &PresentityUri,
        event: &EventKey,
        p: &Publication,
    ) -> Result<(), StoreError> {
        let v = codec::encode(PUBLICATION_V1, p);
        self.publications
            .insert(publication_key(uri, event, &p.etag), v)
            .map_err(backend)?;
        Ok(())
    }

    fn delete_publication(
        &self,
        uri: &PresentityUri,
        event: &EventKey,
        etag: &ETag,
    ) -> Result<(), StoreError> {
        self.publications
            .remove(publication_key(uri, event, etag))
            .map_err(backend)?;
        Ok(())
    }

    fn publications(
        &self,
        uri: &PresentityUri,
        event: &EventKey,
    ) -> Result<Vec<Publication>, StoreError> {
        self.publications
            .scan_prefix(presentity_prefix(uri, event))
            .map(|entry| {
                let (_, v) = entry.map_err(backend)?;
                Ok(codec::decode(PUBLICATION_V1, &v)?)
            })
            .collect()
    }

    fn put_rules(&self, presentity: &PresentityUri, doc: &[u8]) -> Result<(), StoreError> {
        let v = codec::encode(RULES_V1, &doc.to_vec());
        self.watchers
            .insert(rules_key(presentity), v)
            .map_err(backend)?;
        Ok(())
    }

    fn delete_rules(&self, presentity: &PresentityUri) -> Result<(), StoreError> {
        self.watchers
            .remove(rules_key(presentity))
            .map_err(backend)?;
        Ok(())
    }

    fn rules(&self, presentity: &PresentityUri) -> Result<Option<Vec<u8>>, StoreError> {
        match self.watchers.get(rules_key(presentity)).map_err(backend)? {
            Some(v) => Ok(Some(codec::decode(RULES_V1, &v)?)),
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
        self.watchers
            .insert(watcher_key(presentity, event, &w.watcher), v)
            .map_err(backend)?;
        Ok(())
    }

    fn delete_watcher(
        &self,
        presentity: &PresentityUri,
        event: &EventKey,
        watcher: &PresentityUri,
    ) -> Result<(), StoreError> {
        self.watchers
            .remove(watcher_key(presentity, event, watcher))
            .map_err(backend)?;
        Ok(())
    }

    fn watchers(
        &self,
        presentity: &PresentityUri,
        event: &EventKey,
    ) -> Result<Vec<WatcherRecord>, StoreError> {
        self.watchers
            .scan_prefix(watchers_prefix(presentity, event))
            .map(|entry| {
                let (_, v) = entry.map_err(backend)?;
                Ok(codec::decode(WATCHER_V1, &v)?)
            })
            .collect()
    }

    fn put_subscription(&self, d: &DialogState) -> Result<(), StoreError> {
        let v = codec::encode(SUBSCRIPTION_V1, d);
        self.subscriptions
            .insert(subscription_key(&d.presentity, &d.event, &d.id), v)
            .map_err(backend)?;
        Ok(())
    }

    fn subscription(
        &self,
        presentity: &PresentityUri,
        event: &EventKey,
        id: &DialogId,
    ) -> Result<Option<DialogState>, StoreError> {
        match self
            .subscriptions
            .get(subscription_key(presentity, event, id))
            .map_err(backend)?
        {
            Some(v) => Ok(Some(codec::decode(SUBSCRIPTION_V1, &v)?)),
            None => Ok(None),
        }
    }

    fn delete_subscription(
        &self,
        presentity: &PresentityUri,
        event: &EventKey,
        id: &DialogId,
    ) -> Result<(), StoreError> {
        self.subscriptions
            .remove(subscription_key(presentity, event, id))
            .map_err(backend)?;
        Ok(())
    }

    fn scan_subscriptions(
        &self,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<(Vec<DialogState>, Option<Vec<u8>>), StoreError> {
        scan(&self.subscriptions, after, limit, |_, v| {
            Ok(codec::decode(SUBSCRIPTION_V1, v)?)
        })
    }

    fn scan_publications(
        &self,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<(Vec<PublicationRow>, Option<Vec<u8>>), StoreError> {
        scan(&self.publications, after, limit, |k, v| {
            let (uri, event) = split_publication_key(k).ok_or_else(|| {
                StoreError::Codec(codec::CodecError::Decode(
                    "malformed publication key".into(),
                ))
            })?;
            Ok((uri, event, codec::decode(PUBLICATION_V1, v)?))
        })
    }

    /// `Db::flush`: writes and fsyncs the whole log. Blocks on disk I/O: never call it on an
    /// actor thread.
    fn flush(&self) -> Result<usize, StoreError> {
        self.db.flush().map_err(backend)
    }
}

#[cfg(test)]
mod tests;
