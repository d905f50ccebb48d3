//! The node's event stream: what happened to presentities and subscriptions, for the
//! `/debug/events` Server-Sent-Events route and for embedders ([`crate::api::NodeApi::events`]),
//! plus the `presence:notify-reply` hook through which an embedder may end a subscription
//! (Kamailio's `event_route[presence:notify-reply]` with `delete_subscription`).
//!
//! Publishing is cheap when nobody listens: actors check [`EventBus::active`] before building
//! an event. The channel is bounded; a slow listener misses events (it is told how many),
//! it never slows the node.

use std::sync::Arc;

use serde::Serialize;
use tokio::sync::broadcast;

use crate::clock;

/// Events kept for a slow listener before it starts missing some.
const CAPACITY: usize = 4096;

/// One thing that happened.
#[derive(Clone, Debug, Serialize)]
pub struct PresenceEvent {
    /// When (ms since the epoch).
    pub at: u64,
    /// What: `publish`, `notify`, `notify-reply`, `subscription-created`,
    /// `subscription-refreshed`, `subscription-terminated`.
    pub kind: &'static str,
    /// The presentity.
    pub presentity: String,
    /// The event package.
    pub event: String,
    /// Details (ETag, dialog id, CSeq, status, reason, …).
    pub detail: serde_json::Value,
}

/// The reply to one of our NOTIFYs, as the notify-reply hook sees it (Kamailio's
/// `$notify_reply` and `$subs`).
#[derive(Clone, Debug)]
pub struct NotifyReplyInfo {
    /// Presentity.
    pub presentity: String,
    /// Watcher URI.
    pub watcher: String,
    /// Event package.
    pub event: String,
    /// Our tag (the subscription id).
    pub dialog: String,
    /// Status code of the reply.
    pub status: u16,
    /// Reason phrase.
    pub reason: String,
}

/// A hook called for every NOTIFY reply; returning `true` ends the subscription
/// (`delete_subscription = 1`). 404, 481 and (with `timeout_rm_subs`) 408 end it anyway.
pub type NotifyReplyHook = Arc<dyn Fn(&NotifyReplyInfo) -> bool + Send + Sync>;

/// The broadcast channel of [`PresenceEvent`]s.
#[derive(Clone)]
pub struct EventBus {
    tx: broadcast::Sender<Arc<PresenceEvent>>,
}

impl Default for EventBus {
    fn default() -> Self {
        let (tx, _) = broadcast::channel(CAPACITY);
        EventBus { tx }
    }
}

impl EventBus {
    /// Whether anyone listens (build events only then).
    pub fn active(&self) -> bool {
        self.tx.receiver_count() > 0
    }

    /// Publishes an event (dropped when nobody listens). `detail` is built only when
    /// someone listens: most nodes run with no listener, and a JSON map per NOTIFY costs.
    pub fn emit(
        &self,
        kind: &'static str,
        presentity: &str,
        event: &str,
        detail: impl FnOnce() -> serde_json::Value,
    ) {
        if !self.active() {
            return;
        }
        let e = PresenceEvent {
            at: clock::now().0,
            kind,
            presentity: presentity.to_string(),
            event: event.to_string(),
            detail: detail(),
        };
        let _ = self.tx.send(Arc::new(e));
    }

    /// A new listener.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<PresenceEvent>> {
        self.tx.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_reach_listeners_and_cost_nothing_without_them() {
        let bus = EventBus::default();
        assert!(!bus.active());
        let built = std::cell::Cell::new(false);
        bus.emit("publish", "sip:a@b", "presence", || {
            built.set(true);
            serde_json::json!({})
        });
        assert!(!built.get(), "the detail was built with nobody listening");
        let mut rx = bus.subscribe();
        assert!(bus.active());
        bus.emit(
            "notify",
            "sip:a@b",
            "presence",
            || serde_json::json!({"cseq": 2}),
        );
        let e = rx.try_recv().unwrap();
        assert_eq!((e.kind, e.detail["cseq"].as_u64()), ("notify", Some(2)));
        assert!(
            rx.try_recv().is_err(),
            "the event before the listener is not replayed"
        );
    }
}
