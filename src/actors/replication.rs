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
//! * Membership: each node tells a peer that comes up the addresses of the peers it knows
//!   (`Members`), so a node that knows one member learns all.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use actix::prelude::*;
use serde::Serialize;

use super::messages::ApplyReplicated;
use super::router::shard_of_presentity;
use super::shard::Shard;
use crate::clock;
use crate::cluster::hlc::HlcClock;
use crate::cluster::link::{Link, LinkConfig, LinkEvent, LinkHandle, PeerInfo, PeerState};
use crate::cluster::merge::{PubKey, State};
use crate::cluster::replica::{Applied, ReplicaSet};
use crate::cluster::sync::{self, SyncLimits, SyncMsg};
use crate::cluster::wire::{Frame, Member};
use crate::ids::NodeId;
use crate::presence::publication::Publication;

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
    /// The link's configuration.
    pub config: LinkConfig,
}

/// Ask for the cluster view (`/debug/cluster`).
#[derive(Message)]
#[rtype(result = "ClusterView")]
pub struct GetClusterView;

/// Stop the link (graceful leave at shutdown).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Leave;

/// This node and its peers, as `/debug/cluster` shows them.
#[derive(Clone, Debug, Serialize)]
pub struct ClusterView {
    /// This node.
    pub node: String,
    /// Whether replication runs.
    pub enabled: bool,
    /// The QUIC address peers dial.
    pub listen: Option<String>,
    /// Every peer ever seen.
    pub peers: Vec<PeerView>,
    /// Live publications in the replicated view.
    pub publications: usize,
    /// Records in the view (live and tombstones).
    pub records: usize,
    /// Records refused for clock skew since start.
    pub refused_skew: u64,
}

/// One peer.
#[derive(Clone, Debug, Serialize)]
pub struct PeerView {
    /// Its node id (once known).
    pub id: Option<String>,
    /// Its address.
    pub addr: String,
    /// up / connecting / down.
    pub state: &'static str,
    /// Round-trip time, ms.
    pub rtt_ms: Option<f64>,
    /// Last frame from it (ms since the epoch).
    pub last_contact: Option<u64>,
    /// Frames received / sent / dropped.
    pub frames_in: u64,
    /// Frames sent.
    pub frames_out: u64,
    /// Frames dropped (queue full or not connected).
    pub dropped: u64,
    /// Records applied from it.
    pub applied_from: u64,
    /// Last anti-entropy exchange that found nothing to repair (ms since the epoch).
    pub last_in_sync: Option<u64>,
}

#[derive(Default)]
struct PeerStats {
    applied: u64,
    last_in_sync: Option<u64>,
}

/// The replication actor.
pub struct ReplicationActor {
    node: NodeId,
    link: Option<LinkHandle>,
    pubs: ReplicaSet<PubKey, Publication>,
    clock: HlcClock,
    shards: Vec<Addr<Shard>>,
    limits: SyncLimits,
    stats: HashMap<NodeId, PeerStats>,
    refused_skew: u64,
}

impl ReplicationActor {
    /// A replication actor for `node`; tombstones are held `hold` (≥ `max_expires`).
    pub fn new(node: NodeId, hold: Duration) -> Self {
        ReplicationActor {
            clock: HlcClock::new(node.clone(), HlcClock::DEFAULT_MAX_DRIFT),
            node,
            link: None,
            pubs: ReplicaSet::new(hold),
            shards: Vec::new(),
            limits: SyncLimits::default(),
            stats: HashMap::new(),
            refused_skew: 0,
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
    }

    fn on_pub_msg(&mut self, peer: NodeId, msg: SyncMsg<PubKey, Publication>) {
        let now = clock::now();
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

    fn members(&self) -> Vec<Member> {
        let Some(link) = &self.link else {
            return Vec::new();
        };
        link.peers()
            .into_iter()
            .filter(|p| p.state == PeerState::Up)
            .filter_map(|p| {
                let (node, addr) = (p.id?, p.addr?);
                Some(Member {
                    node,
                    addr: addr.to_string(),
                    incarnation: 0,
                })
            })
            .collect()
    }
}

impl Actor for ReplicationActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(Duration::from_secs(1), |this, _| {
            this.pubs.expire(clock::now());
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
        let (tx, mut rx) = tokio::sync::mpsc::channel(4096);
        let link = Link::start(msg.config, self.node.clone(), tx).map_err(|e| e.to_string())?;
        let addr = link.local_addr();
        self.link = Some(link);
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

    fn handle(&mut self, msg: FromLink, _: &mut Context<Self>) {
        match msg.0 {
            LinkEvent::Up { peer, addr } => {
                tracing::info!(%peer, addr = ?addr, "cluster: peer up; synchronising");
                let members = self.members();
                self.send(&peer, &Frame::Members(members));
                self.start_sync(&peer);
            }
            LinkEvent::Down { peer, reason } => {
                tracing::warn!(%peer, %reason, "cluster: peer down");
            }
            LinkEvent::Frame { peer, frame } => match frame {
                Frame::Pub(m) => self.on_pub_msg(peer, m),
                Frame::Members(list) => {
                    let Some(link) = &self.link else { return };
                    let known: Vec<Option<NodeId>> =
                        link.peers().into_iter().map(|p| p.id).collect();
                    for m in list {
                        if m.node == self.node || known.contains(&Some(m.node.clone())) {
                            continue;
                        }
                        if let Ok(a) = m.addr.parse() {
                            tracing::info!(peer = %m.node, addr = %a, "cluster: learned a member by gossip");
                            link.add_peer(a);
                        }
                    }
                }
                Frame::Ping { nonce } => self.send(&peer, &Frame::Pong { nonce }),
                Frame::Sub(_) | Frame::Pong { .. } | Frame::Hello(_) => {}
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

impl Handler<GetClusterView> for ReplicationActor {
    type Result = MessageResult<GetClusterView>;

    fn handle(&mut self, _: GetClusterView, _: &mut Context<Self>) -> Self::Result {
        let peers: Vec<PeerInfo> = self.link.as_ref().map(|l| l.peers()).unwrap_or_default();
        let peers = peers
            .into_iter()
            .map(|p| {
                let stats = p.id.as_ref().and_then(|id| self.stats.get(id));
                PeerView {
                    id: p.id.as_ref().map(|i| i.to_string()),
                    addr: p.addr.map(|a| a.to_string()).unwrap_or_default(),
                    state: match p.state {
                        PeerState::Up => "up",
                        PeerState::Connecting => "connecting",
                        PeerState::Down => "down",
                    },
                    rtt_ms: p.rtt.map(|d| d.as_secs_f64() * 1000.0),
                    last_contact: p.last_contact.map(|t| t.0),
                    frames_in: p.frames_in,
                    frames_out: p.frames_out,
                    dropped: p.dropped,
                    applied_from: stats.map(|s| s.applied).unwrap_or(0),
                    last_in_sync: stats.and_then(|s| s.last_in_sync),
                }
            })
            .collect();
        MessageResult(ClusterView {
            node: self.node.to_string(),
            enabled: true,
            listen: self.link.as_ref().map(|l| l.local_addr().to_string()),
            peers,
            publications: self.pubs.live().count(),
            records: self.pubs.len(),
            refused_skew: self.refused_skew,
        })
    }
}

impl Handler<Leave> for ReplicationActor {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, _: Leave, _: &mut Context<Self>) -> Self::Result {
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
