//! The cluster as `/debug/cluster` (and `/metrics`) show it: [`ClusterView`] built from the
//! link's peers (connection state, RTT, frames), the membership's verdict on each (alive /
//! suspect / down) and the replication counters. Invariant: `state` is the link's connection
//! state and `membership` foca's; a member foca knows that the link has no entry for is listed
//! too (link state `down`).

use actix::prelude::*;
use serde::Serialize;

use super::ReplicationActor;
use crate::cluster::link::{PeerInfo, PeerState};

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
    /// Live subscription dialogs in the replicated view (all owners).
    pub subscriptions: usize,
    /// Of those, the dialogs this node notifies.
    pub owned_here: usize,
    /// Dialogs this node took over from nodes that were gone.
    pub takeovers: u64,
    /// Records in the view (live and tombstones).
    pub records: usize,
    /// Records refused for clock skew since start.
    pub refused_skew: u64,
    /// Whether the ownership of restored subscriptions is settled (restored dialogs notify
    /// only from then on).
    pub settled: bool,
    /// Membership (SWIM) summary; `None` before the link starts.
    pub members: Option<MembersView>,
}

/// The membership summary.
#[derive(Clone, Debug, Serialize)]
pub struct MembersView {
    /// Members alive or suspect, this node included.
    pub alive: usize,
    /// Members ever known, this node included.
    pub known: usize,
    /// Whether this node may take dialogs over (majority rule, see README).
    pub takeover_allowed: bool,
    /// This node's identity renewal (grows on each restart and rejoin).
    pub renewal: u64,
    /// Members this node saw declared down since it started.
    pub declared_down: u64,
}

/// One peer.
#[derive(Clone, Debug, Serialize)]
pub struct PeerView {
    /// Its node id (once known).
    pub id: Option<String>,
    /// Its address.
    pub addr: String,
    /// Link state: up / connecting / down.
    pub state: &'static str,
    /// Membership state (foca): alive / suspect / down; `None` if not (yet) a member.
    pub membership: Option<&'static str>,
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
    /// Replication lag (ms): how far behind the last publication records applied from this
    /// peer were — apply time minus the HLC wall time of the newest of them (so it includes
    /// the clock offset between the nodes, clamped at 0) — or 0 once an anti-entropy
    /// exchange with it found nothing to repair since. `None` before either happened.
    pub lag_ms: Option<u64>,
}

/// Ask for the cluster view (`/debug/cluster`).
#[derive(Message)]
#[rtype(result = "ClusterView")]
pub struct GetClusterView;

impl ReplicationActor {
    fn peer_view(&self, p: PeerInfo) -> PeerView {
        let stats = p.id.as_ref().and_then(|id| self.stats.get(id));
        let membership = self
            .members
            .as_ref()
            .zip(p.id.as_ref())
            .and_then(|(m, id)| m.states().get(id))
            .map(|s| s.as_str());
        PeerView {
            id: p.id.as_ref().map(|i| i.to_string()),
            addr: p.addr.map(|a| a.to_string()).unwrap_or_default(),
            state: match p.state {
                PeerState::Up => "up",
                PeerState::Connecting => "connecting",
                PeerState::Down => "down",
            },
            membership,
            rtt_ms: p.rtt.map(|d| d.as_secs_f64() * 1000.0),
            last_contact: p.last_contact.map(|t| t.0),
            frames_in: p.frames_in,
            frames_out: p.frames_out,
            dropped: p.dropped,
            applied_from: stats.map(|s| s.applied).unwrap_or(0),
            last_in_sync: stats.and_then(|s| s.last_in_sync),
            lag_ms: stats.and_then(|s| s.lag_ms),
        }
    }

    fn peer_views(&self) -> Vec<PeerView> {
        let mut infos: Vec<PeerInfo> = self.link.as_ref().map(|l| l.peers()).unwrap_or_default();
        // Members the link has no entry for: a seed address not yet matched to its node takes
        // the member's id; otherwise the member is listed on its own.
        if let Some(m) = &self.members {
            for node in m.states().keys() {
                if infos.iter().any(|p| p.id.as_ref() == Some(node)) {
                    continue;
                }
                let addr = self.member_addrs.get(node).copied();
                match infos.iter_mut().find(|p| p.id.is_none() && p.addr == addr) {
                    Some(p) if addr.is_some() => p.id = Some(node.clone()),
                    _ => infos.push(PeerInfo {
                        id: Some(node.clone()),
                        addr,
                        state: PeerState::Down,
                        rtt: None,
                        last_contact: None,
                        frames_in: 0,
                        frames_out: 0,
                        dropped: 0,
                    }),
                }
            }
        }
        infos.into_iter().map(|p| self.peer_view(p)).collect()
    }
}

impl Handler<GetClusterView> for ReplicationActor {
    type Result = MessageResult<GetClusterView>;

    fn handle(&mut self, _: GetClusterView, _: &mut Context<Self>) -> Self::Result {
        MessageResult(ClusterView {
            node: self.node.to_string(),
            enabled: true,
            listen: self.link.as_ref().map(|l| l.local_addr().to_string()),
            peers: self.peer_views(),
            publications: self.pubs.live().count(),
            subscriptions: self.subs.live().count(),
            owned_here: self
                .subs
                .live()
                .filter(|(_, o)| o.owner == self.node)
                .count(),
            takeovers: self.takeovers,
            records: self.pubs.len() + self.subs.len(),
            refused_skew: self.refused_skew,
            settled: self.settle.is_settled(),
            members: self.members.as_ref().map(|m| MembersView {
                alive: m.alive().count() + 1,
                known: m.known_count(),
                takeover_allowed: m.has_majority(),
                renewal: m.me().renewal,
                declared_down: self.member_downs,
            }),
        })
    }
}
