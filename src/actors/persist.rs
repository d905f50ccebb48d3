//! [`Persistence`]: how the actors talk to the store, configured once from `subs_db_mode`
//! and `publ_cache` — the storage mode is this value, not `if` statements in the core.
//!
//! * `publ_cache = 2` → publications are not written; `0`/`1` → every publication change is
//!   written (the actor keeps its own copy, so both behave alike here).
//! * `subs_db_mode = 0` → subscriptions are not written; `1` (write-through) → written and
//!   flushed before the 2xx (group commit: concurrent requests share one flush); `2`
//!   (write-back) → written to the store's memory buffers at once and made durable by the
//!   node's flush every `db_update_period` and at shutdown.
//! * `subs_db_mode = 3` (DB-only) → written and flushed as in write-through, and the store is
//!   the only copy: a dialog's actor stops as soon as the dialog is quiet and its presentity
//!   keeps no copy; every message for it reads it back ([`Persistence::load_subscription`],
//!   on the blocking pool).
//! * Write-through also covers publications: with `subs_db_mode = 1` a PUBLISH 2xx leaves
//!   only after its change is on disk.
//!
//! Store errors are logged; in write-through mode a failed flush turns the 2xx into
//! 500 + Retry-After (nothing unflushed is acknowledged).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::ids::{ETag, EventKey, PresentityUri};
use crate::presence::publication::Publication;
use crate::presence::subscription::DialogState;
use crate::store::flusher::GroupFlusher;
use crate::store::{Store, StoreError, WatcherRecord};

/// The store as the actors see it.
#[derive(Clone, Default)]
pub struct Persistence {
    store: Option<Arc<dyn Store>>,
    flusher: Option<Arc<GroupFlusher>>,
    publications: bool,
    subscriptions: bool,
    write_through: bool,
    db_only: bool,
}

/// A flush to wait for before answering (write-through), or nothing.
pub type Durable = Pin<Box<dyn Future<Output = Result<(), StoreError>>>>;

impl Persistence {
    /// No store at all (memory only).
    pub fn none() -> Self {
        Self::default()
    }

    /// Writes through `store` as the modes say.
    pub fn new(
        store: Arc<dyn Store>,
        publications: bool,
        subscriptions: bool,
        write_through: bool,
    ) -> Self {
        let flusher = Arc::new(GroupFlusher::new(store.clone()));
        Persistence {
            store: Some(store),
            flusher: Some(flusher),
            publications,
            subscriptions,
            write_through,
            db_only: false,
        }
    }

    /// DB-only (`subs_db_mode = 3`): dialogs live in the store only (implies write-through).
    pub fn with_db_only(mut self) -> Self {
        self.db_only = self.store.is_some() && self.subscriptions;
        self.write_through |= self.db_only;
        self
    }

    /// Whether dialogs live in the store only (`subs_db_mode = 3`).
    pub fn db_only(&self) -> bool {
        self.db_only
    }

    /// Reads a dialog back from the store on the blocking pool; `Ok(None)` without a store
    /// or when it is not there. (The one-dialog case of [`Persistence::load_subscriptions`].)
    pub fn load_subscription(
        &self,
        presentity: PresentityUri,
        event: EventKey,
        local_tag: String,
    ) -> impl Future<Output = Result<Option<DialogState>, StoreError>> + 'static {
        let load = self.load_subscriptions(presentity, event, vec![local_tag]);
        async move { load.await.pop().map_or(Ok(None), |(_, res)| res) }
    }

    /// Reads back several passivated dialogs of one presentity in one blocking task (a
    /// fan-out to passivated watchers wakes them all at once: one task, not one per dialog).
    /// Each tag comes back with its result, in order.
    pub fn load_subscriptions(
        &self,
        presentity: PresentityUri,
        event: EventKey,
        local_tags: Vec<String>,
    ) -> impl Future<Output = Vec<(String, Result<Option<DialogState>, StoreError>)>> + 'static
    {
        let store = self.store.clone();
        async move {
            let Some(store) = store else {
                return local_tags.into_iter().map(|t| (t, Ok(None))).collect();
            };
            let tags = local_tags.clone();
            let read = tokio::task::spawn_blocking(move || {
                tags.into_iter()
                    .map(|local_tag| {
                        let id = crate::ids::DialogId {
                            call_id: String::new(),
                            remote_tag: String::new(),
                            local_tag,
                        };
                        let res = store.subscription(&presentity, &event, &id);
                        (id.local_tag, res)
                    })
                    .collect()
            });
            read.await.unwrap_or_else(|e| {
                let why = format!("store read task: {e}");
                local_tags
                    .into_iter()
                    .map(|t| (t, Err(StoreError::Backend(why.clone()))))
                    .collect()
            })
        }
    }

    /// The store, if any.
    pub fn store(&self) -> Option<&Arc<dyn Store>> {
        self.store.as_ref()
    }

    /// Whether publications are stored.
    pub fn stores_publications(&self) -> bool {
        self.publications && self.store.is_some()
    }

    /// Whether subscriptions are stored.
    pub fn stores_subscriptions(&self) -> bool {
        self.subscriptions && self.store.is_some()
    }

    /// Whether a 2xx must wait for [`Persistence::durable`].
    pub fn write_through(&self) -> bool {
        self.write_through && self.store.is_some()
    }

    /// Records a publication's new state.
    pub fn put_publication(&self, uri: &PresentityUri, event: &EventKey, p: &Publication) {
        if let (true, Some(s)) = (self.publications, &self.store) {
            if let Err(e) = s.put_publication(uri, event, p) {
                tracing::error!(presentity = %uri, error = %e, "store: publication not written");
            }
        }
    }

    /// Forgets a publication.
    pub fn delete_publication(&self, uri: &PresentityUri, event: &EventKey, etag: &ETag) {
        if let (true, Some(s)) = (self.publications, &self.store) {
            if let Err(e) = s.delete_publication(uri, event, etag) {
                tracing::error!(presentity = %uri, error = %e, "store: publication not deleted");
            }
        }
    }

    /// Records a subscription's new state.
    pub fn put_subscription(&self, d: &DialogState) {
        if let (true, Some(s)) = (self.subscriptions, &self.store) {
            if let Err(e) = s.put_subscription(d) {
                tracing::error!(dialog = %d.id, error = %e, "store: subscription not written");
            }
        }
    }

    /// Forgets a subscription.
    pub fn delete_subscription(&self, d: &DialogState) {
        if let (true, Some(s)) = (self.subscriptions, &self.store) {
            if let Err(e) = s.delete_subscription(&d.presentity, &d.event, &d.id) {
                tracing::error!(dialog = %d.id, error = %e, "store: subscription not deleted");
            }
        }
    }

    /// Records a watcher's authorization state (watchers table), with the subscriptions.
    pub fn put_watcher(&self, uri: &PresentityUri, event: &EventKey, w: &WatcherRecord) {
        if let (true, Some(s)) = (self.subscriptions, &self.store) {
            if let Err(e) = s.put_watcher(uri, event, w) {
                tracing::error!(presentity = %uri, watcher = %w.watcher, error = %e, "store: watcher not written");
            }
        }
    }

    /// Forgets a watcher of a presentity.
    pub fn delete_watcher(&self, uri: &PresentityUri, event: &EventKey, watcher: &PresentityUri) {
        if let (true, Some(s)) = (self.subscriptions, &self.store) {
            if let Err(e) = s.delete_watcher(uri, event, watcher) {
                tracing::error!(presentity = %uri, watcher = %watcher, error = %e, "store: watcher not deleted");
            }
        }
    }

    /// A presentity's stored rule document and watcher rows, read on the blocking pool (read
    /// errors are logged and treated as none).
    pub fn load_authorization(
        &self,
        uri: PresentityUri,
        event: EventKey,
    ) -> impl Future<Output = (Option<Vec<u8>>, Vec<WatcherRecord>)> + 'static {
        let (store, subscriptions) = (self.store.clone(), self.subscriptions);
        async move {
            let Some(s) = store else {
                return (None, Vec::new());
            };
            let read = move || {
                let rules = s.rules(&uri).unwrap_or_else(|e| {
                    tracing::error!(presentity = %uri, error = %e, "store: rule document not read");
                    None
                });
                let watchers = if subscriptions {
                    s.watchers(&uri, &event).unwrap_or_else(|e| {
                        tracing::error!(presentity = %uri, error = %e, "store: watchers not read");
                        Vec::new()
                    })
                } else {
                    Vec::new()
                };
                (rules, watchers)
            };
            tokio::task::spawn_blocking(read)
                .await
                .unwrap_or((None, Vec::new()))
        }
    }

    /// A presentity's stored rule document, read on the blocking pool.
    pub fn load_rules(
        &self,
        uri: PresentityUri,
    ) -> impl Future<Output = Option<Vec<u8>>> + 'static {
        let store = self.store.clone();
        async move {
            let s = store?;
            tokio::task::spawn_blocking(move || {
                s.rules(&uri).unwrap_or_else(|e| {
                    tracing::error!(presentity = %uri, error = %e, "store: rule document not read");
                    None
                })
            })
            .await
            .ok()
            .flatten()
        }
    }

    /// Stores (or with `None` removes) a presentity's rule document. Rules are kept whenever
    /// the node has a store, whatever the publication/subscription modes.
    pub fn set_rules(&self, uri: &PresentityUri, doc: Option<&[u8]>) -> Result<(), StoreError> {
        let Some(s) = &self.store else { return Ok(()) };
        match doc {
            Some(d) => s.put_rules(uri, d),
            None => s.delete_rules(uri),
        }
    }

    /// In write-through mode, a future that resolves once everything written so far is
    /// durable; otherwise `None` (answer at once).
    pub fn durable(&self) -> Option<Durable> {
        if !self.write_through() {
            return None;
        }
        let flusher = self.flusher.clone()?;
        Some(Box::pin(async move { flusher.flush().await }))
    }

    /// Makes everything durable now (write-back timer, shutdown); blocking work runs on the
    /// blocking pool.
    pub async fn flush(&self) -> Result<(), StoreError> {
        match &self.flusher {
            Some(f) => f.flush().await,
            None => Ok(()),
        }
    }
}
