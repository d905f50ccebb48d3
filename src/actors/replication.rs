//! [`ReplicationActor`]: the node's DMQ — one per node when `[cluster] enabled`. It owns the
//! replicated view of every publication ([`ReplicaSet`]), the hybrid logical clock, and the
//! QUIC link to the peers ([`crate::cluster::link`]).
//!
//! * A local change (PUBLISH create/refresh/modify/remove) arrives as [`LocalPublication`]
//!   from the presentity actor, is stamped, merged and broadcast as a delta.
//! * A peer's delta or batch is merged last-writer-wins; every record that changed the view
//!   is handed to its presentity's shard as [`ApplyReplicated`], so the local watchers are
//!   notified at once. Those changes are never re-broadcast.
//! * When a peer comes up (join, reconnect) and every [`ANTI_ENTROPY_EVERY`], digests are
//!   exchanged and only what differs is pulled (`crate::cluster::sync`), so a lost delta or
//!   a partition heals by itself and a node started empty receives every live publication.
//! * Expiry is not replicated: each node expires from the absolute expiry on its own timer.
//! * Membership and failure detection: SWIM through foca ([`crate::cluster::members`]), its
//!   packets carried as QUIC datagrams (see `membership`). A member declared down has its
//!   subscription dialogs taken over after `[cluster] takeover_grace` by the node a
//!   rendezvous hash picks among this node and the members alive — only while those are a
//!   strict majority of the members known, when three or more were ever known (an isolated
//!   node of a partition never takes over the majority's dialogs; with two nodes there is no
//!   majority to ask and the survivor takes over).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use actix::prelude::*;

use super::messages::{ApplyReplicated, Disown, Fence, RestoreDialog};
use super::router::shard_of_presentity;
use super::shard::Shard;
use crate::clock;
use crate::clock::Timestamp;
use crate::cluster::hlc::HlcClock;
use crate::cluster::link::{Link, LinkConfig, LinkEvent, LinkHandle, PeerState};
use crate::cluster::members::Membership;
use crate::cluster::merge::{OwnedDialog, PubKey, State};
use crate::cluster::replica::{Applied, ReplicaSet};
use crate::cluster::sync::{self, SyncLimits, SyncMsg};
use crate::cluster::wire::Frame;
use crate::ids::{DialogId, NodeId};
use crate::presence::publication::Publication;

mod membership;
mod peer_stats;
mod settle;
mod view;

use peer_stats::PeerStats;
pub use settle::OwnerOf;
use settle::{Settle, SETTLE_TICK};
pub use view::{ClusterView, GetClusterView, MembersView, PeerView};

/// How often digests are compared with every peer (anti-entropy).
pub const ANTI_ENTROPY_EVERY: Duration = Duration::from_secs(5);

/// A publication changed on this node: replicate it (`None` = removed).
#[derive(Message)]
#[rtype(result = "()")]
pub struct LocalPublication {
    /// Presentity, event and lineage.
    pub key: PubKey,
    /// The new state, `None` for a removal.
    pub publication: Option<Publication>,
}

/// A subscription dialog changed on this node (its owner): replicate it so that another
/// node can take it over if this one goes away (`live = false`: it ended).
#[derive(Message)]
#[rtype(result = "()")]
pub struct LocalSubscription {
    /// The dialog as stored.
    pub dialog: crate::presence::subscription::DialogState,
    /// Still running.
    pub live: bool,
}

/// An event of the QUIC link.
#[derive(Message)]
#[rtype(result = "()")]
struct FromLink(LinkEvent);

/// Starts the link once the shards exist (changes from peers go to them).
#[derive(Message)]
#[rtype(result = "Result<std::net::SocketAddr, String>")]
pub struct StartLink {
    /// The node's shards.
    pub shards: Vec<Addr<Shard>>,
    /// Our Contact (`server_address`), set on dialogs taken over.
    pub server_address: String,
    /// The link's configuration.
    pub config: LinkConfig,
}

/// Stop the link (graceful leave at shutdown).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Leave;

/// CSeq jump of a dialog taken over: NOTIFYs its old owner sent after its last replicated
/// record are unknown here; a gap is allowed, a step back is not.
const TAKEOVER_CSEQ_GAP: u32 = 1 << 16;

/// The replication actor.
pub struct ReplicationActor {
    node: NodeId,
    link: Option<LinkHandle>,
    /// SWIM membership; created with the link.
    members: Option<Membership>,
    /// The address of every member that came up (for `/debug/cluster`).
    member_addrs: HashMap<NodeId, SocketAddr>,
    /// Members declared down since start.
    member_downs: u64,
    pubs: ReplicaSet<PubKey, Publication>,
    subs: ReplicaSet<DialogId, OwnedDialog>,
    /// Members declared down (by the membership), and since when.
    down_since: HashMap<NodeId, Timestamp>,
    /// `[cluster] takeover_grace`.
    grace: Duration,
    takeovers: u64,
    clock: HlcClock,
    shards: Vec<Addr<Shard>>,
    limits: SyncLimits,
    stats: HashMap<NodeId, PeerStats>,
    refused_skew: u64,
    /// Our Contact, set on dialogs taken over.
    server_address: String,
    /// The gate of restored dialogs.
    settle: Settle,
    /// A peer's record expires at most this long after it arrives (`max_expires` plus the
    /// clock drift allowed between nodes).
    expiry_cap: Duration,
}

impl ReplicationActor {
    /// A replication actor for `node`; tombstones are held `hold` (≥ `max_expires`).
    /// `settled` is the gate restored dialogs wait on (see [`settle`]).
    pub fn new(
        node: NodeId,
        hold: Duration,
        grace: Duration,
        settled: tokio::sync::watch::Sender<bool>,
    ) -> Self {
        ReplicationActor {
            settle: Settle::new(settled, std::time::Instant::now()),
            expiry_cap: hold + HlcClock::DEFAULT_MAX_DRIFT,
            subs: ReplicaSet::new(hold),
            down_since: HashMap::new(),
            grace,
            takeovers: 0,
            clock: HlcClock::new(node.clone(), HlcClock::DEFAULT_MAX_DRIFT),
            node,
            link: None,
            members: None,
            member_addrs: HashMap::new(),
            member_downs: 0,
            pubs: ReplicaSet::new(hold),
            shards: Vec::new(),
            limits: SyncLimits::default(),
            stats: HashMap::new(),
            refused_skew: 0,
            server_address: String::new(),
        }
    }

    fn send(&self, peer: &NodeId, frame: &Frame) {
        if let Some(link) = &self.link {
            if let Err(e) = link.send(peer, frame) {
                tracing::debug!(%peer, error = ?e, "cluster frame not sent");
            }
        }
    }

    fn start_sync(&self, peer: &NodeId) {
        self.send(peer, &Frame::Pub(sync::digest_request(&self.pubs)));
        self.send(peer, &Frame::Sub(sync::digest_request(&self.subs)));
    }

    fn on_sub_msg(&mut self, peer: NodeId, mut msg: SyncMsg<DialogId, OwnedDialog>) {
        let now = clock::now();
        sync::cap_expiries(&mut msg, now.plus(self.expiry_cap));
        let handled = sync::handle(&mut self.subs, &mut self.clock, msg, now, self.limits);
        for reply in handled.reply {
            self.send(&peer, &Frame::Sub(reply));
        }
        if handled.in_sync {
            self.settle.note_in_sync(peer.clone());
        }
        for (_, applied) in handled.changes {
            let Applied::Changed { new, .. } = applied else {
                continue;
            };
            let theirs = new.state.live().is_some_and(|o| o.owner != self.node);
            if theirs {
                // Another node owns the dialog (its write is newer): if we still serve it —
                // we took it over, or we restarted and restored it from our store — stop.
                // (The shard ignores tags it does not hold.)
                if let Some(o) = new.state.live() {
                    let shard =
                        &self.shards[shard_of_presentity(&o.dialog.presentity, self.shards.len())];
                    shard.do_send(Disown {
                        tag: o.dialog.id.local_tag.clone(),
                    });
                }
            }
        }
    }

    /// Takes over the dialogs of members down longer than the grace period, when this node is
    /// the one the dialog's rendezvous hash picks among itself and the members alive, and
    /// those are a majority (see the module doc).
    fn take_over(&mut self) {
        let now = clock::now();
        let gone: Vec<NodeId> = self
            .down_since
            .iter()
            .filter(|(_, since)| since.until(now) >= self.grace)
            .map(|(n, _)| n.clone())
            .collect();
        if gone.is_empty() || self.shards.is_empty() {
            return;
        }
        let Some(members) = &self.members else { return };
        if !members.has_majority() {
            tracing::debug!(
                alive = members.alive().count() + 1,
                known = members.known_count(),
                "cluster: no majority of the members is alive here; not taking over"
            );
            return;
        }
        let mut candidates: Vec<NodeId> = members.alive().cloned().collect();
        candidates.push(self.node.clone());
        let orphans: Vec<(DialogId, OwnedDialog)> = self
            .subs
            .live()
            .filter(|(_, o)| gone.contains(&o.owner))
            .filter(|(k, _)| rendezvous(k, &candidates) == Some(&self.node))
            .map(|(k, o)| (k.clone(), o.clone()))
            .collect();
        for (key, owned) in orphans {
            let mut dialog = owned.dialog;
            dialog.local_cseq = dialog.local_cseq.saturating_add(TAKEOVER_CSEQ_GAP);
            dialog.local_contact.clone_from(&self.server_address);
            let state = State::Live(OwnedDialog {
                dialog: dialog.clone(),
                owner: self.node.clone(),
            });
            let (record, _) = self.subs.write(key, state, &mut self.clock, now);
            if let Some(link) = &self.link {
                link.broadcast(&Frame::Sub(SyncMsg::Delta(vec![record])));
            }
            tracing::warn!(dialog = %dialog.id, from = %owned.owner, "cluster: taking over a subscription of a node that is gone");
            self.takeovers += 1;
            let shard = &self.shards[shard_of_presentity(&dialog.presentity, self.shards.len())];
            shard.do_send(RestoreDialog(dialog, true));
        }
    }

    fn on_pub_msg(&mut self, peer: NodeId, mut msg: SyncMsg<PubKey, Publication>) {
        let now = clock::now();
        sync::cap_expiries(&mut msg, now.plus(self.expiry_cap));
        let handled = sync::handle(&mut self.pubs, &mut self.clock, msg, now, self.limits);
        for reply in handled.reply {
            self.send(&peer, &Frame::Pub(reply));
        }
        if !handled.refused.is_empty() {
            self.refused_skew += handled.refused.len() as u64;
            tracing::warn!(%peer, count = handled.refused.len(), "cluster: records refused, their clock stamps are too far ahead of ours");
        }
        let stats = self.stats.entry(peer).or_default();
        if handled.in_sync {
            stats.last_in_sync = Some(now.0);
        }
        stats.applied += handled.changes.len() as u64;
        let newest = handled
            .changes
            .iter()
            .filter_map(|(_, a)| match a {
                Applied::Changed { new, .. } => Some(new.stamp.hlc.wall_ms),
                Applied::Unchanged => None,
            })
            .max();
        stats.note_lag(newest, handled.in_sync, now);
        for (key, applied) in handled.changes {
            let Applied::Changed { old, new } = applied else {
                continue;
            };
            let old_etag = old
                .as_ref()
                .and_then(|v| v.state.live())
                .map(|p| p.etag.clone());
            let publication = new.state.live().cloned();
            let shard = &self.shards[shard_of_presentity(&key.uri, self.shards.len())];
            shard.do_send(ApplyReplicated {
                key,
                old_etag,
                publication,
            });
        }
    }
}

impl Actor for ReplicationActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(Duration::from_secs(1), |this, _| {
            this.pubs.expire(clock::now());
        });
        ctx.run_interval(Duration::from_secs(1), |this, _| {
            this.subs.expire(clock::now());
            this.take_over();
        });
        ctx.run_interval(membership::ANNOUNCE_EVERY, |this, ctx| {
            this.announce_if_alone(ctx);
        });
        ctx.run_interval(SETTLE_TICK, |this, _| {
            let Some(link) = &this.link else { return };
            let now = std::time::Instant::now();
            if this.members.as_ref().is_some_and(|m| !m.has_majority()) {
                if this.settle.fence(now) {
                    for shard in &this.shards {
                        shard.do_send(Fence);
                    }
                }
                return;
            }
            if this.settle.is_settled() {
                return;
            }
            for peer in this.settle.poll(&link.peers(), now) {
                this.send(&peer, &Frame::Sub(sync::digest_request(&this.subs)));
            }
        });
        ctx.run_interval(ANTI_ENTROPY_EVERY, |this, _| {
            let Some(link) = &this.link else { return };
            for p in link
                .peers()
                .into_iter()
                .filter(|p| p.state == PeerState::Up)
            {
                if let Some(id) = p.id {
                    this.start_sync(&id);
                }
            }
        });
    }
}

impl Handler<StartLink> for ReplicationActor {
    type Result = Result<SocketAddr, String>;

    fn handle(&mut self, msg: StartLink, ctx: &mut Context<Self>) -> Self::Result {
        self.shards = msg.shards;
        self.server_address = msg.server_address;
        let (tx, mut rx) = tokio::sync::mpsc::channel(4096);
        let link = Link::start(msg.config, self.node.clone(), tx).map_err(|e| e.to_string())?;
        let addr = link.local_addr();
        self.link = Some(link);
        self.start_members();
        let me = ctx.address();
        actix_rt::spawn(async move {
            while let Some(ev) = rx.recv().await {
                if me.send(FromLink(ev)).await.is_err() {
                    break;
                }
            }
        });
        Ok(addr)
    }
}

impl Handler<FromLink> for ReplicationActor {
    type Result = ();

    fn handle(&mut self, msg: FromLink, ctx: &mut Context<Self>) {
        match msg.0 {
            LinkEvent::Up { peer, addr } => {
                tracing::info!(%peer, addr = ?addr, "cluster: peer up; synchronising");
                self.start_sync(&peer);
                self.announce_to(&peer, addr, ctx);
            }
            LinkEvent::Down { peer, reason } => {
                // The connection is re-dialled; whether the node is down is the membership's
                // verdict (SWIM), not one connection's.
                tracing::info!(%peer, %reason, "cluster: connection to peer lost");
            }
            LinkEvent::Datagram { peer, data } => self.on_member_packet(peer, data, ctx),
            LinkEvent::Frame { peer, frame } => match frame {
                Frame::Pub(m) => self.on_pub_msg(peer, m),
                Frame::Ping { nonce } => self.send(&peer, &Frame::Pong { nonce }),
                Frame::Sub(m) => self.on_sub_msg(peer, m),
                Frame::Pong { .. } | Frame::Hello(_) => {}
            },
        }
    }
}

impl Handler<LocalPublication> for ReplicationActor {
    type Result = ();

    fn handle(&mut self, msg: LocalPublication, _: &mut Context<Self>) {
        let now = clock::now();
        let written = match msg.publication {
            Some(p) => Some(
                self.pubs
                    .write(msg.key, State::Live(p), &mut self.clock, now),
            ),
            None => self.pubs.remove(msg.key, &mut self.clock, now),
        };
        let Some((record, applied)) = written else {
            return;
        };
        if matches!(applied, Applied::Changed { .. }) {
            if let Some(link) = &self.link {
                link.broadcast(&Frame::Pub(SyncMsg::Delta(vec![record])));
            }
        }
    }
}

impl Handler<LocalSubscription> for ReplicationActor {
    type Result = ();

    fn handle(&mut self, msg: LocalSubscription, _: &mut Context<Self>) {
        let now = clock::now();
        let key = msg.dialog.id.clone();
        let written = if msg.live {
            let owned = OwnedDialog {
                dialog: msg.dialog,
                owner: self.node.clone(),
            };
            Some(
                self.subs
                    .write(key, State::Live(owned), &mut self.clock, now),
            )
        } else {
            self.subs.remove(key, &mut self.clock, now)
        };
        let Some((record, applied)) = written else {
            return;
        };
        if matches!(applied, Applied::Changed { .. }) {
            if let Some(link) = &self.link {
                link.broadcast(&Frame::Sub(SyncMsg::Delta(vec![record])));
            }
        }
    }
}

impl Handler<Leave> for ReplicationActor {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, _: Leave, _: &mut Context<Self>) -> Self::Result {
        self.leave_members();
        let link = self.link.take();
        Box::pin(
            async move {
                if let Some(l) = link {
                    l.shutdown().await;
                }
            }
            .into_actor(self),
        )
    }
}

/// The node that owns `key` among `candidates`: highest hash of (dialog, node). Every node
/// computes the same answer from the same set of nodes up.
fn rendezvous<'a>(key: &DialogId, candidates: &'a [NodeId]) -> Option<&'a NodeId> {
    use std::hash::{DefaultHasher, Hash, Hasher};
    candidates.iter().max_by_key(|n| {
        let mut h = DefaultHasher::new();
        (key, *n).hash(&mut h);
        h.finish()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendezvous_is_deterministic_and_spreads_dialogs() {
        let nodes: Vec<NodeId> = ["node-1", "node-2", "node-3"]
            .iter()
            .map(|n| NodeId::new(n))
            .collect();
        let mut wins = HashMap::new();
        for i in 0..300 {
            let key = DialogId {
                call_id: format!("c{i}"),
                remote_tag: "r".into(),
                local_tag: format!("t{i}"),
            };
            let a = rendezvous(&key, &nodes).unwrap().clone();
            let mut reversed = nodes.clone();
            reversed.reverse();
            assert_eq!(
                rendezvous(&key, &reversed),
                Some(&a),
                "independent of order"
            );
            *wins.entry(a).or_insert(0) += 1;
        }
        assert_eq!(wins.len(), 3);
        assert!(wins.values().all(|w| *w > 50), "{wins:?}");
    }
}
