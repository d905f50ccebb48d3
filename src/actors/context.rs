//! What every actor of a node shares, read-only: rules, packages, the sender. Built once by
//! the node and passed as `Arc<NodeCtx>` at construction (no globals).
//!
//! Also the two node-wide counts that admission control reads across shards
//! ([`PendingNotifies`], [`WatcherCounts`]). Invariant: each is changed only through a guard
//! ([`PendingNotify`], [`WatcherSlot`]) whose drop undoes its increment, so a stopped actor
//! or a removed registry entry can never leak a count.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::persist::Persistence;
use crate::ids::{NodeId, PresentityUri};
use crate::metrics::Limit;
use crate::presence::package::PackageRegistry;
use crate::presence::publication::RetrieveOrder;
use crate::presence::request::{IngressRules, Rejection};
use crate::presence::subscription::SubscriptionRules;
use crate::transaction::Timers;
use crate::transport::SipSender;

/// Publication-side rules from `[presence]` and `[limits]`.
#[derive(Clone, Debug)]
pub struct PublishRules {
    /// `expires_offset`: subtracted from the Expires of a PUBLISH 2xx.
    pub expires_offset: u32,
    /// `force_delete`: expired publications are removed without notifying.
    pub force_delete: bool,
    /// `[limits] max_publications_per_presentity`.
    pub max_publications: usize,
    /// `retrieve_order` / `retrieve_order_by`.
    pub order: RetrieveOrder,
}

/// Shared, read-only node context.
pub struct NodeCtx {
    /// This node.
    pub node_id: NodeId,
    /// Registered event packages.
    pub packages: PackageRegistry,
    /// Ingress checks.
    pub ingress: IngressRules,
    /// Publication rules.
    pub publish: PublishRules,
    /// Subscription rules.
    pub subscription: SubscriptionRules,
    /// `subs_remove_match = 1`: NOTIFY replies must match Call-ID and both tags.
    pub remove_match_full: bool,
    /// `delete_same_subs = 1`.
    pub delete_same_subs: bool,
    /// `[limits] max_subscriptions_per_presentity`.
    pub max_subscriptions: usize,
    /// `[limits] max_subscriptions_per_watcher`.
    pub max_subscriptions_per_watcher: usize,
    /// Subscription dialogs per watcher URI, node-wide (held by the shards' registries).
    pub watcher_subs: Arc<WatcherCounts>,
    /// `[limits] max_pending_notifies`.
    pub max_pending_notifies: usize,
    /// NOTIFY transactions in flight, node-wide (held by the subscription actors).
    pub pending_notifies: PendingNotifies,
    /// `[limits] mailbox_size`.
    pub mailbox_size: usize,
    /// `[limits] max_server_transactions` per shard.
    pub max_transactions: usize,
    /// `[limits] max_queue_delay_ms`: requests that waited longer are answered 503.
    pub max_queue_delay: std::time::Duration,
    /// Retry-After seconds for 500/503.
    pub retry_after: u32,
    /// `server_address`: Contact of our 2xx and NOTIFYs.
    pub server_address: String,
    /// SIP timers.
    pub timers: Timers,
    /// The way out.
    pub sender: SipSender,
    /// The store, per `subs_db_mode` / `publ_cache`.
    pub persist: Persistence,
    /// `subs_db_mode = 2`: stored NOTIFY CSeqs may lag; restore raises them.
    pub cseq_may_lag: bool,
    /// `[authorization] default_policy`.
    pub policy: crate::presence::authz::Policy,
    /// `enable_sphere_check`.
    pub sphere_check: bool,
    /// What happened, for `/debug/events` and embedders.
    pub events: crate::events::EventBus,
    /// The embedder's `presence:notify-reply` hook.
    pub notify_reply_hook: Option<crate::events::NotifyReplyHook>,
    /// The replication actor, when the cluster is enabled.
    pub replication: Option<actix::Addr<super::replication::ReplicationActor>>,
    /// With the cluster enabled: `true` once the ownership of restored subscriptions is
    /// settled with the peers; a restored dialog waits for it before its first NOTIFY.
    pub cluster_settled: Option<tokio::sync::watch::Receiver<bool>>,
    /// Counters for `/metrics`.
    pub metrics: std::sync::Arc<crate::metrics::Metrics>,
    /// `[limits] max_presentities`.
    pub max_presentities: usize,
    /// Presentity actors alive on this node (every shard counts its own in and out).
    pub presentities: Arc<std::sync::atomic::AtomicUsize>,
    /// `[node] passivate_after`: how long a subscription dialog stays quiet before its actor
    /// is stopped and the dialog kept in its compact form (`None`: never).
    pub passivate_after: Option<std::time::Duration>,
}

impl NodeCtx {
    /// The node-wide limits on a new SUBSCRIBE (not a refresh), checked by its shard before
    /// any presentity is involved: `503` + Retry-After while `max_pending_notifies` NOTIFYs
    /// are in flight, `403 Too Many Subscriptions` when the watcher already holds
    /// `max_subscriptions_per_watcher` dialogs and the request `replaces` none of them. Each
    /// refusal is counted. Checked, not reserved: concurrent SUBSCRIBEs of one watcher on
    /// several shards may overshoot by the number in flight.
    pub fn admit_subscription(&self, watcher: &PresentityUri, replaces: bool) -> Option<Rejection> {
        if self.pending_notifies.count() >= self.max_pending_notifies {
            self.metrics.limit_hit(Limit::PendingNotifies);
            tracing::debug!(%watcher, "SUBSCRIBE refused: max_pending_notifies reached");
            return Some(Rejection {
                status: 503,
                reason: "Service Unavailable".into(),
                headers: vec![("Retry-After", self.retry_after.to_string())],
            });
        }
        let held = self.watcher_subs.count(watcher) as usize;
        if !replaces && held >= self.max_subscriptions_per_watcher {
            self.metrics.limit_hit(Limit::WatcherSubscriptions);
            tracing::debug!(%watcher, held, "SUBSCRIBE refused: max_subscriptions_per_watcher");
            return Some(Rejection {
                status: 403,
                reason: "Too Many Subscriptions".into(),
                headers: Vec::new(),
            });
        }
        None
    }
}

/// The number of NOTIFY transactions in flight on the node. Clones share the count.
#[derive(Clone, Debug, Default)]
pub struct PendingNotifies(Arc<AtomicUsize>);

/// One NOTIFY transaction in flight: counted while this lives.
#[derive(Debug)]
pub struct PendingNotify(Arc<AtomicUsize>);

impl PendingNotifies {
    /// Counts one more NOTIFY in flight until the guard is dropped.
    pub fn start(&self) -> PendingNotify {
        self.0.fetch_add(1, Ordering::Relaxed);
        PendingNotify(self.0.clone())
    }

    /// NOTIFYs in flight now.
    pub fn count(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }
}

impl Drop for PendingNotify {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Locks of [`WatcherCounts`]: watchers are spread over them by hash, so shards on different
/// threads rarely wait for each other.
const WATCHER_LOCKS: usize = 16;

/// Subscription dialogs per watcher URI across the node. A watcher with none has no entry.
#[derive(Debug)]
pub struct WatcherCounts {
    parts: Vec<Mutex<HashMap<PresentityUri, u32>>>,
}

/// One dialog of a watcher: counted while this lives.
#[derive(Debug)]
pub struct WatcherSlot {
    counts: Arc<WatcherCounts>,
    watcher: PresentityUri,
}

impl Default for WatcherCounts {
    fn default() -> Self {
        WatcherCounts {
            parts: (0..WATCHER_LOCKS).map(|_| Mutex::default()).collect(),
        }
    }
}

impl WatcherCounts {
    fn part(
        &self,
        watcher: &PresentityUri,
    ) -> std::sync::MutexGuard<'_, HashMap<PresentityUri, u32>> {
        let mut h = DefaultHasher::new();
        watcher.hash(&mut h);
        let m = &self.parts[(h.finish() % WATCHER_LOCKS as u64) as usize];
        // A poisoned lock only means a panic elsewhere between two statements that leave
        // the map consistent.
        m.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Dialogs `watcher` holds now.
    pub fn count(&self, watcher: &PresentityUri) -> u32 {
        self.part(watcher).get(watcher).copied().unwrap_or(0)
    }

    /// Counts one more dialog of `watcher` until the slot is dropped.
    pub fn enter(self: &Arc<Self>, watcher: PresentityUri) -> WatcherSlot {
        *self.part(&watcher).entry(watcher.clone()).or_insert(0) += 1;
        WatcherSlot {
            counts: self.clone(),
            watcher,
        }
    }
}

impl WatcherSlot {
    /// The watcher counted.
    pub fn watcher(&self) -> &PresentityUri {
        &self.watcher
    }
}

impl Drop for WatcherSlot {
    fn drop(&mut self) {
        let mut part = self.counts.part(&self.watcher);
        if let Some(n) = part.get_mut(&self.watcher) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                part.remove(&self.watcher);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::UriMatch;

    #[test]
    fn pending_notify_guards_count_while_alive() {
        let p = PendingNotifies::default();
        let a = p.start();
        let b = p.clone().start();
        assert_eq!(p.count(), 2);
        drop(a);
        assert_eq!(p.count(), 1);
        drop(b);
        assert_eq!(p.count(), 0);
    }

    #[test]
    fn watcher_slots_count_per_watcher_and_forget_at_zero() {
        let counts = Arc::new(WatcherCounts::default());
        let uri = |s: &str| PresentityUri::parse(s, UriMatch::CaseSensitive).unwrap();
        let (alice, bob) = (uri("sip:alice@example.com"), uri("sip:bob@example.com"));
        let a1 = counts.enter(alice.clone());
        let a2 = counts.enter(alice.clone());
        let b1 = counts.enter(bob.clone());
        assert_eq!(counts.count(&alice), 2);
        assert_eq!(counts.count(&bob), 1);
        drop(a1);
        drop(b1);
        assert_eq!(counts.count(&alice), 1);
        assert_eq!(counts.count(&bob), 0);
        drop(a2);
        let entries: usize = counts.parts.iter().map(|p| p.lock().unwrap().len()).sum();
        assert_eq!(entries, 0, "no entry is kept for a watcher without dialogs");
    }
}
