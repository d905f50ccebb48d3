//! The persistence seam: a [`Store`] trait that domain code and actors talk to, its
//! in-memory twin [`memory::MemoryStore`] and its sled implementation [`sled::SledStore`],
//! both held to the same conformance suite ([`conformance`]). [`flusher::GroupFlusher`] lets
//! concurrent write-through requests share one `flush`.
//!
//! # Records and keys
//!
//! * publications: key `uri \0 event \0 etag`, value = [`crate::codec`] envelope of a
//!   [`Publication`] (record version [`PUBLICATION_V1`]);
//! * subscriptions: key `presentity \0 event \0 local_tag`, value = envelope of a
//!   [`DialogState`] (record version [`SUBSCRIPTION_V1`]);
//! * rule documents (watchers table): key `rules \0 presentity`, value = envelope of the
//!   document bytes (record version [`RULES_V1`]).
//!
//! Keys sort so that one presentity's records are one prefix range. A presentity URI or event
//! key never contains a NUL byte (the key layout relies on it), so the URI and event of a
//! publication are read back from its key (`split_publication_key`); the stored value is the
//! bare [`Publication`].
//!
//! # Durability contract
//!
//! A `put`/`delete` is visible to later reads at once; it is durable (survives a process
//! crash and power loss) only after [`Store::flush`] returned `Ok`. Write-through mode calls
//! `flush` before the 2xx goes out; write-back calls it every `db_update_period`; memory-only
//! never needs it. `flush` may block: callers run it off actor threads.

pub mod conformance;
pub mod flusher;
pub mod memory;
pub mod sled;

use crate::codec::CodecError;
use crate::ids::{DialogId, ETag, EventKey, PresentityUri};
use crate::presence::publication::Publication;
use crate::presence::subscription::DialogState;

/// Record version of stored publications.
pub const PUBLICATION_V1: u8 = 1;
/// Record version of stored subscriptions.
pub const SUBSCRIPTION_V1: u8 = 1;
/// Record version of stored rule documents.
pub const RULES_V1: u8 = 1;
/// Record version of stored watcher authorization states.
pub const WATCHER_V1: u8 = 1;

/// One watcher of a presentity and event as the watchers table keeps it (Kamailio's
/// `watchers` table): its authorization status, why, and since when it watches. Feeds
/// `presence.winfo` across restarts.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WatcherRecord {
    /// The watcher URI.
    pub watcher: PresentityUri,
    /// `active`, `pending`, `waiting` or `terminated`.
    pub status: String,
    /// Termination reason (`rejected`, …).
    pub reason: Option<String>,
    /// When the watcher first subscribed (ms since the epoch): winfo's
    /// `duration-subscribed` counts from here.
    pub inserted_at: crate::clock::Timestamp,
    /// The last watcher-info event about it (`subscribe`, `approved`, …).
    pub last_event: String,
}

/// One publication as a scan returns it: its presentity, its event and the record.
pub type PublicationRow = (PresentityUri, EventKey, Publication);

/// A storage failure. The request that caused it is answered 500 + Retry-After.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A stored value could not be decoded (corruption or a newer format).
    #[error("stored record cannot be decoded: {0}")]
    Codec(#[from] CodecError),
    /// The backend failed (I/O, lock).
    #[error("store backend: {0}")]
    Backend(String),
}

/// Persistence of publications and subscriptions.
pub trait Store: Send + Sync + 'static {
    /// Inserts or replaces a publication.
    fn put_publication(
        &self,
        uri: &PresentityUri,
        event: &EventKey,
        p: &Publication,
    ) -> Result<(), StoreError>;
    /// Removes a publication (no error if absent).
    fn delete_publication(
        &self,
        uri: &PresentityUri,
        event: &EventKey,
        etag: &ETag,
    ) -> Result<(), StoreError>;
    /// The publications of one presentity and event.
    fn publications(
        &self,
        uri: &PresentityUri,
        event: &EventKey,
    ) -> Result<Vec<Publication>, StoreError>;
    /// Stores the authorization rule document of a presentity (SPEC §4), replacing any.
    fn put_rules(&self, presentity: &PresentityUri, doc: &[u8]) -> Result<(), StoreError>;
    /// Removes a presentity's rule document (no error if absent).
    fn delete_rules(&self, presentity: &PresentityUri) -> Result<(), StoreError>;
    /// A presentity's rule document.
    fn rules(&self, presentity: &PresentityUri) -> Result<Option<Vec<u8>>, StoreError>;
    /// Stores (replaces) a watcher's authorization state.
    fn put_watcher(
        &self,
        presentity: &PresentityUri,
        event: &EventKey,
        w: &WatcherRecord,
    ) -> Result<(), StoreError>;
    /// Forgets a watcher of a presentity (no error if absent).
    fn delete_watcher(
        &self,
        presentity: &PresentityUri,
        event: &EventKey,
        watcher: &PresentityUri,
    ) -> Result<(), StoreError>;
    /// The watchers of a presentity and event, in watcher-URI order.
    fn watchers(
        &self,
        presentity: &PresentityUri,
        event: &EventKey,
    ) -> Result<Vec<WatcherRecord>, StoreError>;
    /// Inserts or replaces a subscription.
    fn put_subscription(&self, d: &DialogState) -> Result<(), StoreError>;
    /// One subscription by its presentity, event and dialog id (DB-only mode reads each
    /// dialog back when a message comes for it).
    fn subscription(
        &self,
        presentity: &PresentityUri,
        event: &EventKey,
        id: &DialogId,
    ) -> Result<Option<DialogState>, StoreError>;
    /// Removes a subscription (no error if absent).
    fn delete_subscription(
        &self,
        presentity: &PresentityUri,
        event: &EventKey,
        id: &DialogId,
    ) -> Result<(), StoreError>;
    /// Up to `limit` subscriptions whose key sorts after `after` (`None` = from the start),
    /// in key order, with the key to continue from: batched restore (`fetch_rows`).
    fn scan_subscriptions(
        &self,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<(Vec<DialogState>, Option<Vec<u8>>), StoreError>;
    /// Up to `limit` publications whose key sorts after `after` (`None` = from the start), in
    /// key order, each with its presentity and event, and the key to continue from (`Some`
    /// exactly when the batch is full): batched restore (`fetch_rows`).
    fn scan_publications(
        &self,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<(Vec<PublicationRow>, Option<Vec<u8>>), StoreError>;
    /// Makes everything written so far durable; returns bytes flushed (0 if unknown).
    fn flush(&self) -> Result<usize, StoreError>;
}

/// The key of a publication record.
pub fn publication_key(uri: &PresentityUri, event: &EventKey, etag: &ETag) -> Vec<u8> {
    join(&[uri.as_str(), event.as_str(), etag.as_str()])
}

/// The key prefix of one presentity's records.
pub fn presentity_prefix(uri: &PresentityUri, event: &EventKey) -> Vec<u8> {
    let mut k = join(&[uri.as_str(), event.as_str()]);
    k.push(0);
    k
}

/// The key of a presentity's rule document in the watchers table.
pub fn rules_key(presentity: &PresentityUri) -> Vec<u8> {
    join(&["rules", presentity.as_str()])
}

/// The key of a watcher's state in the watchers table (`watcher \0 presentity \0 event \0
/// watcher-uri`: one prefix per presentity and event, apart from the rule documents).
pub fn watcher_key(
    presentity: &PresentityUri,
    event: &EventKey,
    watcher: &PresentityUri,
) -> Vec<u8> {
    join(&[
        "watcher",
        presentity.as_str(),
        event.as_str(),
        watcher.as_str(),
    ])
}

/// The key prefix of the watcher states of one presentity and event.
pub fn watchers_prefix(presentity: &PresentityUri, event: &EventKey) -> Vec<u8> {
    let mut k = join(&["watcher", presentity.as_str(), event.as_str()]);
    k.push(0);
    k
}

/// The key of a subscription record.
pub fn subscription_key(presentity: &PresentityUri, event: &EventKey, id: &DialogId) -> Vec<u8> {
    join(&[presentity.as_str(), event.as_str(), &id.local_tag])
}

/// The presentity and event of a publication key (`uri \0 event \0 etag`); `None` when the
/// key does not have that shape (a corrupt record).
pub(crate) fn split_publication_key(key: &[u8]) -> Option<(PresentityUri, EventKey)> {
    let mut parts = key.splitn(3, |b| *b == 0);
    let uri = std::str::from_utf8(parts.next()?).ok()?;
    let event = std::str::from_utf8(parts.next()?).ok()?;
    parts.next()?;
    // The key holds the normalised text; re-parsing could alter unusual (but stored) URIs.
    let uri = PresentityUri::from_normalised(uri.to_string());
    // `EventKey::new` trims and lower-cases: idempotent on a stored (already normalised) key.
    Some((uri, EventKey::new(event)))
}

fn join(parts: &[&str]) -> Vec<u8> {
    let mut k = Vec::with_capacity(parts.iter().map(|p| p.len() + 1).sum());
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            k.push(0);
        }
        k.extend_from_slice(p.as_bytes());
    }
    k
}
