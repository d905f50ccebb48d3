//! Settling the ownership of restored subscriptions after a (re)start: the gate that keeps a
//! returning node from notifying a dialog another node has taken over meanwhile.
//!
//! A node restores its dialogs from its own store, but while it was away another node may
//! have taken them over (a newer owner record in the replicated view). Until this node has
//! compared its subscription view with every peer it can reach, it cannot know, so every
//! restored dialog waits at the gate ([`Settle`]'s `watch` channel, `false` until settled)
//! before its first NOTIFY; once open, the dialog asks the replication actor for its owner
//! and stops quietly when it is another node ([`OwnerOf`]).
//!
//! Settled means: every peer that is up has answered one subscription digest exchange with
//! "in sync", and either every known peer is up or [`SETTLE_DIAL`] has passed (a dead seed
//! does not hold the node back for longer); in any case after [`SETTLE_MAX`]. A node with no
//! peers configured settles at once.
//!
//! The same gate fences a node that loses the majority of a cluster of three or more
//! ([`Settle::fence`]): the majority will take its dialogs over after the grace period, so
//! its dialogs hold their NOTIFYs (every live one is told to wait at the gate) until the
//! majority is back and the views are settled again — then each dialog either continues or,
//! taken over meanwhile, stops without a NOTIFY. Invariant: the gate is closed only while
//! unsettled (at start, or fenced), and every closing is followed by a full settlement.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use actix::prelude::*;
use tokio::sync::watch;

use super::ReplicationActor;
use crate::cluster::link::{PeerInfo, PeerState};
use crate::ids::{DialogId, NodeId};

/// How long a peer that is not up yet may hold the settlement (dial and handshake time).
pub(super) const SETTLE_DIAL: Duration = Duration::from_secs(3);
/// The settlement never takes longer than this (peers up but never in sync: writes racing).
pub(super) const SETTLE_MAX: Duration = Duration::from_secs(15);
/// While unsettled, digest exchanges with the peers not yet in sync run this often.
pub(super) const SETTLE_TICK: Duration = Duration::from_millis(300);

/// "Which node owns this dialog?" — `None` when the replicated view has no live record.
#[derive(Message)]
#[rtype(result = "Option<NodeId>")]
pub struct OwnerOf(pub DialogId);

/// The settlement state of the replication actor.
#[derive(Debug)]
pub(super) struct Settle {
    /// The gate: `true` once settled (closed again by [`Settle::fence`]).
    gate: watch::Sender<bool>,
    settled: bool,
    started: Instant,
    in_sync: HashSet<NodeId>,
}

impl Settle {
    /// Unsettled, from `now`; `tx` is the gate the restored dialogs wait on.
    pub(super) fn new(tx: watch::Sender<bool>, now: Instant) -> Self {
        Settle {
            gate: tx,
            settled: false,
            started: now,
            in_sync: HashSet::new(),
        }
    }

    /// This node lost the majority: closes the gate (a settled node only; returns whether it
    /// did, so the caller tells the live dialogs once). It reopens by [`Settle::poll`] once
    /// the caller stops fencing and the views are in sync again.
    pub(super) fn fence(&mut self, now: Instant) -> bool {
        self.started = now;
        if !self.settled {
            // Already closed: the settlement starts over when the majority is back.
            return false;
        }
        self.gate.send_replace(false);
        self.settled = false;
        self.in_sync.clear();
        tracing::warn!("cluster: this node sees no majority of the cluster; its subscriptions hold their NOTIFYs until the majority is back (the majority takes them over after takeover_grace)");
        true
    }

    /// Whether the gate is open.
    pub(super) fn is_settled(&self) -> bool {
        self.settled
    }

    /// A subscription digest exchange with `peer` found both views equal.
    pub(super) fn note_in_sync(&mut self, peer: NodeId) {
        if !self.settled {
            self.in_sync.insert(peer);
        }
    }

    /// Opens the gate when the rule of the module doc holds; otherwise returns the peers to
    /// run a subscription digest exchange with again.
    pub(super) fn poll(&mut self, peers: &[PeerInfo], now: Instant) -> Vec<NodeId> {
        if self.settled {
            return Vec::new();
        }
        let pending: Vec<NodeId> = peers
            .iter()
            .filter(|p| p.state == PeerState::Up)
            .filter_map(|p| p.id.clone())
            .filter(|id| !self.in_sync.contains(id))
            .collect();
        let all_up = peers.iter().all(|p| p.state == PeerState::Up);
        let waited = now.saturating_duration_since(self.started);
        let done = pending.is_empty() && (all_up || waited >= SETTLE_DIAL);
        if !done && waited < SETTLE_MAX {
            return pending;
        }
        self.settled = true;
        self.gate.send_replace(true);
        if done {
            tracing::info!(
                peers_in_sync = self.in_sync.len(),
                after_ms = waited.as_millis() as u64,
                "cluster: subscription ownership settled; restored dialogs may notify"
            );
        } else {
            tracing::warn!(still_differing = ?pending, after_ms = waited.as_millis() as u64, "cluster: subscription ownership not confirmed with every peer in time; restored dialogs notify anyway (a dialog taken over meanwhile stops when its owner's record arrives)");
        }
        Vec::new()
    }
}

impl Handler<OwnerOf> for ReplicationActor {
    type Result = Option<NodeId>;

    fn handle(&mut self, msg: OwnerOf, _: &mut Context<Self>) -> Self::Result {
        self.subs
            .get(&msg.0)
            .and_then(|r| r.state.live())
            .map(|o| o.owner.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(id: Option<&str>, state: PeerState) -> PeerInfo {
        PeerInfo {
            id: id.map(NodeId::new),
            addr: None,
            state,
            rtt: None,
            last_contact: None,
            frames_in: 0,
            frames_out: 0,
            dropped: 0,
        }
    }

    fn settle() -> (Settle, watch::Receiver<bool>, Instant) {
        let (tx, rx) = watch::channel(false);
        let t0 = Instant::now();
        (Settle::new(tx, t0), rx, t0)
    }

    #[test]
    fn a_node_without_peers_settles_at_once() {
        let (mut s, rx, t0) = settle();
        assert!(s.poll(&[], t0).is_empty());
        assert!(s.is_settled());
        assert!(*rx.borrow());
    }

    #[test]
    fn waits_for_every_peer_up_to_be_in_sync() {
        let (mut s, rx, t0) = settle();
        let peers = [
            peer(Some("node-2"), PeerState::Up),
            peer(Some("node-3"), PeerState::Up),
        ];
        assert_eq!(s.poll(&peers, t0).len(), 2);
        s.note_in_sync(NodeId::new("node-2"));
        assert_eq!(s.poll(&peers, t0), vec![NodeId::new("node-3")]);
        assert!(!*rx.borrow(), "one peer not in sync yet");
        s.note_in_sync(NodeId::new("node-3"));
        assert!(s.poll(&peers, t0).is_empty());
        assert!(*rx.borrow());
    }

    #[test]
    fn a_peer_not_up_holds_the_gate_only_for_the_dial_time() {
        let (mut s, rx, t0) = settle();
        let peers = [
            peer(Some("node-2"), PeerState::Up),
            peer(None, PeerState::Connecting),
        ];
        s.note_in_sync(NodeId::new("node-2"));
        s.poll(&peers, t0 + SETTLE_DIAL / 2);
        assert!(!*rx.borrow(), "the seed may still come up");
        s.poll(&peers, t0 + SETTLE_DIAL);
        assert!(*rx.borrow());
    }

    #[test]
    fn a_fence_closes_the_gate_until_the_views_settle_again() {
        let (mut s, rx, t0) = settle();
        let peers = [peer(Some("node-2"), PeerState::Up)];
        s.note_in_sync(NodeId::new("node-2"));
        s.poll(&peers, t0);
        assert!(*rx.borrow());
        assert!(s.fence(t0 + SETTLE_MAX), "a settled node is fenced");
        assert!(!s.fence(t0 + SETTLE_MAX), "once");
        assert!(!*rx.borrow(), "closed");
        // The in-sync notes of before the fence do not count.
        assert_eq!(s.poll(&peers, t0 + SETTLE_MAX).len(), 1);
        assert!(!*rx.borrow());
        s.note_in_sync(NodeId::new("node-2"));
        s.poll(&peers, t0 + SETTLE_MAX);
        assert!(*rx.borrow(), "reopened after a new settlement");
    }

    #[test]
    fn never_longer_than_the_maximum() {
        let (mut s, rx, t0) = settle();
        let peers = [peer(Some("node-2"), PeerState::Up)];
        assert_eq!(s.poll(&peers, t0 + SETTLE_DIAL).len(), 1);
        assert!(!*rx.borrow());
        assert!(s.poll(&peers, t0 + SETTLE_MAX).is_empty());
        assert!(*rx.borrow());
        // Opened once, for good: a later in-sync note changes nothing.
        s.note_in_sync(NodeId::new("node-2"));
        assert!(s.is_settled());
    }
}
