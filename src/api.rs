//! [`NodeApi`]: the handle through which the admin endpoint and embedding programs query and
//! steer a running node — Kamailio's `presence_api_t` as Rust:
//!
//! | Kamailio | here |
//! |---|---|
//! | `add_event` | [`crate::presence::package::PackageRegistry::add`] before [`crate::node::start_with`] |
//! | `contains_event` / `get_event_list` | [`NodeApi::contains_event`] / [`NodeApi::event_list`] |
//! | `update_watchers_status` | [`NodeApi::update_watchers`] (after [`NodeApi::set_rules`]) |
//! | `get_sphere` | [`NodeApi::sphere`] |
//! | `get_presentity` | [`NodeApi::composed`] |
//! | `pres_has_subscribers` / `pres_auth_status` | [`NodeApi::has_subscribers`] / [`NodeApi::auth_status`] |
//! | RPCs `refreshWatchers`, `cleanup` | [`NodeApi::refresh_watchers`], [`NodeApi::cleanup`] |
//!
//! Every call is a message to the shards (never a shared lock); each actor answers within
//! [`crate::actors::inspect::SNAPSHOT_TIMEOUT`] or is reported busy.

use std::sync::Arc;

use actix::prelude::*;

use crate::actors::inspect::*;
use crate::actors::presentity::control::{AuthStatus, GetRules, SetRules, UpdateWatchers};
use crate::actors::replication::{ClusterView, GetClusterView, ReplicationActor};
use crate::actors::router::shard_of_presentity;
use crate::actors::shard::{Shard, ToPresentity};
use crate::events::{EventBus, PresenceEvent};
use crate::ids::{EventKey, NodeId, PresentityUri, UriMatch};
use crate::presence::authz::Decision;
use crate::presence::package::PackageRegistry;

/// A cheap clonable handle on a running node.
#[derive(Clone)]
pub struct NodeApi {
    inner: Arc<Inner>,
}

struct Inner {
    shards: Vec<Addr<Shard>>,
    cluster: Option<Addr<ReplicationActor>>,
    events: EventBus,
    uri_match: UriMatch,
    node_id: NodeId,
    packages: PackageRegistry,
    /// Open TCP connections and UDP listeners, for the actor counts.
    tcp: Option<crate::transport::TcpConnections>,
    udp_listeners: usize,
}

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Not a SIP URI.
    #[error("invalid URI {0:?}")]
    BadUri(String),
    /// The event package is not registered.
    #[error("unknown event package {0:?}")]
    UnknownEvent(String),
    /// A shard did not answer (node shutting down).
    #[error("node unavailable")]
    Unavailable,
}

impl NodeApi {
    /// A handle over `shards` (index = shard number) and the replication actor, if any.
    pub fn new(
        shards: Vec<Addr<Shard>>,
        uri_match: UriMatch,
        node_id: NodeId,
        packages: PackageRegistry,
        cluster: Option<Addr<ReplicationActor>>,
        events: EventBus,
    ) -> Self {
        NodeApi {
            inner: Arc::new(Inner {
                shards,
                cluster,
                events,
                uri_match,
                node_id,
                packages,
                tcp: None,
                udp_listeners: 0,
            }),
        }
    }

    /// Adds the transport (for `/debug/actors`); only before the handle is shared.
    pub fn with_transport(
        mut self,
        tcp: crate::transport::TcpConnections,
        udp_listeners: usize,
    ) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.tcp = Some(tcp);
            inner.udp_listeners = udp_listeners;
        }
        self
    }

    /// (UDP listeners, open TCP connections).
    pub fn transport(&self) -> (usize, usize) {
        let tcp = self.inner.tcp.as_ref().map_or(0, |t| t.len());
        (self.inner.udp_listeners, tcp)
    }

    /// A live stream of what happens on the node (PUBLISH applied, NOTIFY sent and
    /// answered, subscriptions created/refreshed/terminated).
    pub fn events(&self) -> tokio::sync::broadcast::Receiver<std::sync::Arc<PresenceEvent>> {
        self.inner.events.subscribe()
    }

    /// The cluster view (`None` when the cluster is not enabled).
    pub async fn cluster(&self) -> Result<Option<ClusterView>, ApiError> {
        let Some(r) = &self.inner.cluster else {
            return Ok(None);
        };
        r.send(GetClusterView)
            .await
            .map(Some)
            .map_err(|_| ApiError::Unavailable)
    }

    /// This node's id.
    pub fn node_id(&self) -> &NodeId {
        &self.inner.node_id
    }

    /// How many presentity shards the node runs.
    pub fn shard_count(&self) -> usize {
        self.inner.shards.len()
    }

    /// The registered event packages (for Allow-Events).
    pub fn event_list(&self) -> Vec<String> {
        self.inner.packages.event_list()
    }

    /// Whether `event` is a registered package (Kamailio's `contains_event`).
    pub fn contains_event(&self, event: &str) -> bool {
        self.inner.packages.contains(&EventKey::new(event))
    }

    /// The RPID sphere of a presentity's composed presence document (Kamailio's
    /// `get_sphere`), `None` without state or sphere.
    pub async fn sphere(&self, uri: &PresentityUri) -> Result<Option<String>, ApiError> {
        let doc = self.composed(uri, &EventKey::new("presence")).await?;
        Ok(doc.and_then(|d| crate::presence::authz::sphere_of(d.as_bytes())))
    }

    /// Parses and normalises a presentity URI as the node does.
    pub fn presentity(&self, uri: &str) -> Result<PresentityUri, ApiError> {
        PresentityUri::parse(uri, self.inner.uri_match)
            .ok_or_else(|| ApiError::BadUri(uri.to_string()))
    }

    /// Checks that `event` is a registered package.
    pub fn event(&self, event: &str) -> Result<EventKey, ApiError> {
        let key = EventKey::new(event);
        if self.inner.packages.contains(&key) {
            Ok(key)
        } else {
            Err(ApiError::UnknownEvent(event.to_string()))
        }
    }

    fn shard_for(&self, uri: &PresentityUri) -> &Addr<Shard> {
        &self.inner.shards[shard_of_presentity(uri, self.inner.shards.len())]
    }

    /// One page of the presentities matching the filter, in key order (`"<uri> <event>"`),
    /// each with its mailbox depth. Paged at the source: every shard asked (only the owning
    /// one when a URI is given) answers at most `page.limit` keys after the cursor, the keys
    /// are merged, and only the presentities on the page are snapshotted.
    pub async fn presentities(
        &self,
        filter: PresentityFilter,
        page: PageRequest,
    ) -> Result<ListPage<PresentityView>, ApiError> {
        let targets: Vec<&Addr<Shard>> = match &filter.uri {
            Some(u) => vec![self.shard_for(u)],
            None => self.inner.shards.iter().collect(),
        };
        let limit = page.limit;
        let msg = ListPresentities { filter, page };
        let keys = ask_all(&targets, |_| msg.clone()).await?;
        let merged = merge_keys(keys, limit);
        let mut per_shard: Vec<Vec<(String, (PresentityUri, EventKey))>> =
            vec![Vec::new(); targets.len()];
        for (i, key, k) in merged.keys {
            per_shard[i].push((key, k));
        }
        let parts = ask_all(&targets, |i| {
            SnapshotPresentities(std::mem::take(&mut per_shard[i]))
        })
        .await?;
        Ok(merged_page(parts, merged.total, merged.next))
    }

    /// One page of the subscriptions matching the filter, in key order (our tag), live and
    /// passivated alike. Every shard is asked (a watcher's dialogs live in the shards of the
    /// presentities it watches) unless the presentity or the tag names one; paged at the
    /// source as [`NodeApi::presentities`].
    pub async fn subscriptions(
        &self,
        filter: SubscriptionFilter,
        page: PageRequest,
    ) -> Result<ListPage<SubscriptionView>, ApiError> {
        let targets: Vec<&Addr<Shard>> = match (&filter.presentity, &filter.id) {
            (Some(p), _) => vec![self.shard_for(p)],
            (None, Some(id)) => {
                match crate::actors::router::shard_from_tag(id, self.inner.shards.len()) {
                    Some(i) => vec![&self.inner.shards[i]],
                    None => Vec::new(),
                }
            }
            (None, None) => self.inner.shards.iter().collect(),
        };
        let limit = page.limit;
        let msg = ListSubscriptions { filter, page };
        let keys = ask_all(&targets, |_| msg.clone()).await?;
        let merged = merge_keys(keys, limit);
        let mut per_shard: Vec<Vec<String>> = vec![Vec::new(); targets.len()];
        for (i, key, ()) in merged.keys {
            per_shard[i].push(key);
        }
        let parts = ask_all(&targets, |i| {
            SnapshotSubscriptions(std::mem::take(&mut per_shard[i]))
        })
        .await?;
        Ok(merged_page(parts, merged.total, merged.next))
    }

    /// The mailbox depths of at most `per_shard` presentity actors of every shard (for the
    /// `presenced_mailbox_depth` histogram). The shards' own mailboxes are not included:
    /// actix does not expose a mailbox's length.
    pub async fn mailbox_depths(&self, per_shard: usize) -> Result<Vec<MailboxSample>, ApiError> {
        let targets: Vec<&Addr<Shard>> = self.inner.shards.iter().collect();
        ask_all(&targets, |_| SampleMailboxes { max: per_shard }).await
    }

    /// Per-shard counts.
    pub async fn stats(&self) -> Result<Vec<ShardStats>, ApiError> {
        let mut out = Vec::with_capacity(self.inner.shards.len());
        for s in &self.inner.shards {
            out.push(s.send(Stats).await.map_err(|_| ApiError::Unavailable)?);
        }
        Ok(out)
    }

    /// The composed document of a presentity (`get_presentity`), `None` without state.
    pub async fn composed(
        &self,
        uri: &PresentityUri,
        event: &EventKey,
    ) -> Result<Option<String>, ApiError> {
        let filter = PresentityFilter {
            uri: Some(uri.clone()),
            event: Some(event.clone()),
        };
        let views = self.presentities(filter, PageRequest::first(1)).await?;
        Ok(views.items.into_iter().find_map(|(_, v)| match v {
            Snapshot::Ready(v) => v.composed,
            Snapshot::Busy { .. } => None,
        }))
    }

    /// Whether a presentity has local subscribers for `event` (`pres_has_subscribers`).
    pub async fn has_subscribers(
        &self,
        uri: &PresentityUri,
        event: &EventKey,
    ) -> Result<bool, ApiError> {
        Ok(self
            .control(uri, event, PresentityAction::CountWatchers)
            .await?
            .unwrap_or(0)
            > 0)
    }

    /// Re-sends the current state to every watcher (`presence.refreshWatchers`); returns how
    /// many were notified.
    pub async fn refresh_watchers(
        &self,
        uri: &PresentityUri,
        event: &EventKey,
    ) -> Result<usize, ApiError> {
        Ok(self
            .control(uri, event, PresentityAction::Refresh)
            .await?
            .unwrap_or(0))
    }

    /// Removes everything expired now (`presence.cleanup`); returns publications removed.
    pub async fn cleanup(&self) -> Result<usize, ApiError> {
        let mut removed = 0;
        for s in &self.inner.shards {
            removed += s
                .send(SweepShard)
                .await
                .map_err(|_| ApiError::Unavailable)?;
        }
        Ok(removed)
    }

    /// Re-decides every watcher of a presentity after a rule change
    /// (`presence.updateWatchers`); returns how many changed status (0 if it has no actor).
    pub async fn update_watchers(
        &self,
        uri: &PresentityUri,
        event: &EventKey,
    ) -> Result<usize, ApiError> {
        Ok(self
            .to_presentity(uri, event, false, UpdateWatchers)
            .await?
            .unwrap_or(0))
    }

    /// Sets (or with `None` removes) a presentity's rule document (RFC 5025 subset). Takes
    /// effect for new watchers at once; existing ones follow `update_watchers`.
    pub async fn set_rules(
        &self,
        uri: &PresentityUri,
        doc: Option<Vec<u8>>,
    ) -> Result<Result<(), String>, ApiError> {
        let event = EventKey::new("presence");
        self.to_presentity(uri, &event, true, SetRules(doc))
            .await?
            .ok_or(ApiError::Unavailable)
    }

    /// A presentity's rule document.
    pub async fn rules(&self, uri: &PresentityUri) -> Result<Option<String>, ApiError> {
        let event = EventKey::new("presence");
        self.to_presentity(uri, &event, true, GetRules)
            .await?
            .ok_or(ApiError::Unavailable)
    }

    /// The authorization decision for `watcher` of `presentity`'s presence
    /// (`pres_auth_status`).
    pub async fn auth_status(
        &self,
        watcher: &PresentityUri,
        presentity: &PresentityUri,
    ) -> Result<Decision, ApiError> {
        let event = EventKey::new("presence");
        self.to_presentity(presentity, &event, true, AuthStatus(watcher.clone()))
            .await?
            .ok_or(ApiError::Unavailable)
    }

    async fn to_presentity<M>(
        &self,
        uri: &PresentityUri,
        event: &EventKey,
        create: bool,
        msg: M,
    ) -> Result<Option<M::Result>, ApiError>
    where
        M: actix::Message + Send + 'static,
        M::Result: Send,
        crate::actors::presentity::PresentityActor: Handler<M>,
    {
        let m = ToPresentity {
            uri: uri.clone(),
            event: event.clone(),
            create,
            msg,
        };
        self.shard_for(uri)
            .send(m)
            .await
            .map_err(|_| ApiError::Unavailable)
    }

    async fn control(
        &self,
        uri: &PresentityUri,
        event: &EventKey,
        action: PresentityAction,
    ) -> Result<Option<usize>, ApiError> {
        let msg = ForPresentity {
            uri: uri.clone(),
            event: event.clone(),
            action,
        };
        self.shard_for(uri)
            .send(msg)
            .await
            .map_err(|_| ApiError::Unavailable)
    }
}

/// Sends `msg(i)` to every shard of `targets` at once (each queued before any answer is
/// awaited), then collects the answers in order.
async fn ask_all<M>(
    targets: &[&Addr<Shard>],
    mut msg: impl FnMut(usize) -> M,
) -> Result<Vec<M::Result>, ApiError>
where
    M: actix::Message + Send + 'static,
    M::Result: Send,
    Shard: Handler<M>,
{
    let asked: Vec<_> = targets
        .iter()
        .enumerate()
        .map(|(i, s)| s.send(msg(i)))
        .collect();
    let mut out = Vec::with_capacity(asked.len());
    for request in asked {
        out.push(request.await.map_err(|_| ApiError::Unavailable)?);
    }
    Ok(out)
}

/// The shards' phase-2 answers as one page, in key order.
fn merged_page<T>(
    parts: Vec<Vec<(String, Snapshot<T>)>>,
    total: usize,
    next: Option<String>,
) -> ListPage<T> {
    let mut items: Vec<(String, Snapshot<T>)> = parts.into_iter().flatten().collect();
    items.sort_by(|a, b| a.0.cmp(&b.0));
    ListPage { items, total, next }
}
