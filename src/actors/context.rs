//! What every actor of a node shares, read-only: rules, packages, the sender. Built once by
//! the node and passed as `Arc<NodeCtx>` at construction (no globals).

use super::persist::Persistence;
use crate::ids::NodeId;
use crate::presence::package::PackageRegistry;
use crate::presence::publication::RetrieveOrder;
use crate::presence::request::IngressRules;
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
    /// `[limits] mailbox_size`.
    pub mailbox_size: usize,
    /// `[limits] max_server_transactions` per shard.
    pub max_transactions: usize,
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
    /// Counters for `/metrics`.
    pub metrics: std::sync::Arc<crate::metrics::Metrics>,
    /// `[node] passivate_after`: how long a subscription dialog stays quiet before its actor
    /// is stopped and the dialog kept in its compact form (`None`: never).
    pub passivate_after: Option<std::time::Duration>,
}
