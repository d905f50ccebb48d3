//! The replication actor's side of membership ([`crate::cluster::members`]): it creates the
//! node's SWIM member when the link starts, carries its packets as QUIC datagrams, runs its
//! timers with `run_later`, and turns its verdicts into what replication needs.
//!
//! * A member coming up: the link dials its address (`add_peer`; a no-op if known) and it is
//!   no longer down for takeover. A member declared down: down since now (`down_since`), so
//!   its dialogs are taken over after `[cluster] takeover_grace`.
//! * Joining: a peer whose link comes up and that is not a member yet is sent an announce
//!   (the seeds, identified by the handshake); while no member is alive, every peer the link
//!   has up is announced to every [`ANNOUNCE_EVERY`] (a restarted node, or the isolated side
//!   of a healed partition, finds its way back).
//! * A packet for a node without a connection is lost: SWIM counts it as a failed probe.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use actix::prelude::*;
use bytes::Bytes;
use foca::Timer;

use super::ReplicationActor;
use crate::clock;
use crate::cluster::link::PeerState;
use crate::cluster::members::{default_config, Change, MemberId, Membership};
use crate::ids::NodeId;

/// How often a node with no member alive announces to the peers it is connected to.
pub(super) const ANNOUNCE_EVERY: Duration = Duration::from_secs(1);

impl ReplicationActor {
    /// Creates this node's member, once the link (and so the advertised address) exists. The
    /// renewal starts at the wall clock in ms, so a restarted node's identity is newer.
    pub(super) fn start_members(&mut self) {
        let Some(link) = &self.link else { return };
        let me = MemberId {
            node: self.node.clone(),
            addr: link.advertised(),
            renewal: clock::now().0,
        };
        self.members = Some(Membership::new(me, default_config(), rand::random()));
    }

    /// A datagram from `peer` (authenticated by its connection).
    pub(super) fn on_member_packet(&mut self, peer: NodeId, data: Bytes, ctx: &mut Context<Self>) {
        let Some(m) = &mut self.members else { return };
        if let Err(e) = m.handle_packet(&peer, &data) {
            tracing::debug!(%peer, error = %e, "cluster: membership packet refused");
        }
        self.flush_members(ctx);
    }

    fn on_member_timer(&mut self, timer: Timer<MemberId>, ctx: &mut Context<Self>) {
        let Some(m) = &mut self.members else { return };
        m.handle_timer(timer);
        self.flush_members(ctx);
    }

    /// The link to `peer` came up: ask to join through it unless it is a member already.
    pub(super) fn announce_to(
        &mut self,
        peer: &NodeId,
        addr: Option<SocketAddr>,
        ctx: &mut Context<Self>,
    ) {
        let Some(m) = &mut self.members else { return };
        if m.is_up(peer) {
            return;
        }
        m.announce(peer, addr.unwrap_or((Ipv4Addr::UNSPECIFIED, 0).into()));
        self.flush_members(ctx);
    }

    /// While no member is alive, announces to every peer the link has up.
    pub(super) fn announce_if_alone(&mut self, ctx: &mut Context<Self>) {
        let (Some(m), Some(link)) = (&mut self.members, &self.link) else {
            return;
        };
        if m.alive().next().is_some() {
            return;
        }
        for p in link
            .peers()
            .into_iter()
            .filter(|p| p.state == PeerState::Up)
        {
            if let (Some(id), Some(addr)) = (p.id, p.addr) {
                m.announce(&id, addr);
            }
        }
        self.flush_members(ctx);
    }

    /// Carries out what the membership asked for (see the module doc).
    pub(super) fn flush_members(&mut self, ctx: &mut Context<Self>) {
        let Some(m) = &mut self.members else { return };
        let effects = m.take_effects();
        if let Some(link) = &self.link {
            for (node, packet) in effects.sends {
                if let Err(e) = link.send_datagram(&node, Bytes::from(packet)) {
                    tracing::trace!(%node, error = ?e, "cluster: membership packet lost");
                }
            }
        }
        for (after, timer) in effects.timers {
            ctx.run_later(after, move |this, ctx| this.on_member_timer(timer, ctx));
        }
        for change in effects.changes {
            match change {
                Change::Up(id) => {
                    tracing::info!(peer = %id.node, addr = %id.addr, renewal = id.renewal, "cluster: member up");
                    self.down_since.remove(&id.node);
                    self.member_addrs.insert(id.node.clone(), id.addr);
                    if let Some(link) = &self.link {
                        link.add_peer(id.addr);
                    }
                }
                Change::Down(node) => {
                    tracing::warn!(peer = %node, "cluster: member declared down");
                    self.member_downs += 1;
                    self.down_since.entry(node).or_insert_with(clock::now);
                }
            }
        }
    }

    /// Tells the members we leave (best effort, before the link closes).
    pub(super) fn leave_members(&mut self) {
        let Some(m) = &mut self.members else { return };
        m.leave();
        let effects = m.take_effects();
        if let Some(link) = &self.link {
            for (node, packet) in effects.sends {
                let _ = link.send_datagram(&node, Bytes::from(packet));
            }
        }
    }
}
