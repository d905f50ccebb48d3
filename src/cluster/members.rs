//! Cluster membership and failure detection: SWIM, as implemented by the `foca` crate, behind
//! a sans-IO wrapper ([`Membership`]). It owns this node's [`MemberId`], the foca instance and
//! the list of every member ever known; it does no I/O and reads no clock.
//!
//! The replication actor drives it: it feeds the membership packets that arrive as QUIC
//! datagrams from authenticated peers ([`Membership::handle_packet`]), fires the timers foca
//! asks for ([`Membership::handle_timer`]), and drains [`Effects`] after every call: packets
//! to send (a packet for a member with no connection is simply lost, which SWIM treats as a
//! failed probe), timers to schedule, and members that came up or went down.
//!
//! Invariants:
//! * a packet is `[PACKET_VERSION]` then foca's bytes (header and member updates encoded by
//!   [`crate::codec`] parts); one whose version differs, that does not decode, or whose sender
//!   is not the node the connection authenticated, is refused;
//! * a node is *up* while foca holds its identity active (alive or suspect); [`Change`]s are
//!   reported per [`NodeId`], so a renamed identity (a restarted node's renewal) that stays
//!   active produces no change;
//! * a member, once known, stays known (for the majority rule) for the life of the process.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::num::{NonZeroU8, NonZeroUsize};
use std::time::Duration;

use bytes::{Buf, BufMut};
use foca::{Codec, Foca, Header, Member, NoCustomBroadcast, Notification, Runtime, State, Timer};
use rand_foca::rngs::SmallRng;
use rand_foca::SeedableRng;
use serde::{Deserialize, Serialize};

use crate::codec::{self, CodecError};
use crate::ids::NodeId;

/// The version byte in front of every membership packet.
pub const PACKET_VERSION: u8 = 1;

/// Largest foca packet produced and accepted (fits one QUIC datagram on any path with the
/// minimum QUIC MTU of 1200 bytes).
pub const MAX_PACKET: usize = 1100;

/// Probe period: each period one member is pinged (round robin in random order).
pub const PROBE_PERIOD: Duration = Duration::from_millis(500);

/// How long a direct probe waits for its ack before asking other members to probe.
pub const PROBE_RTT: Duration = Duration::from_millis(200);

/// How long a suspect member has to refute the suspicion before it is declared down.
pub const SUSPECT_TO_DOWN: Duration = Duration::from_millis(1500);

/// A member's identity: its node id, the QUIC address it advertises, and a renewal counter
/// (a restarted node starts with a larger one, so its new identity wins over the old one).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct MemberId {
    /// The node.
    pub node: NodeId,
    /// Where its QUIC endpoint is reached.
    pub addr: SocketAddr,
    /// Bumped on every renewal; seeded from the wall clock at start.
    pub renewal: u64,
}

impl foca::Identity for MemberId {
    /// One member per node id: identities of the same node conflict.
    type Addr = NodeId;

    fn renew(&self) -> Option<Self> {
        Some(MemberId {
            renewal: self.renewal.wrapping_add(1),
            ..self.clone()
        })
    }

    fn addr(&self) -> NodeId {
        self.node.clone()
    }

    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        (self.renewal, self.addr) > (adversary.renewal, adversary.addr)
    }
}

/// A member's state as foca holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MemberState {
    /// Answering probes.
    Alive,
    /// Missed a probe; declared down unless it refutes in time.
    Suspect,
    /// Declared down by the cluster.
    Down,
}

impl MemberState {
    /// `alive`, `suspect` or `down`.
    pub fn as_str(self) -> &'static str {
        match self {
            MemberState::Alive => "alive",
            MemberState::Suspect => "suspect",
            MemberState::Down => "down",
        }
    }
}

/// A node that came up or went down.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// The node is now active (its current identity).
    Up(MemberId),
    /// The node was declared down (or forgotten).
    Down(NodeId),
}

/// What the user must do after a call.
#[derive(Debug, Default)]
pub struct Effects {
    /// Packets (version byte included) to send to a node, best effort.
    pub sends: Vec<(NodeId, Vec<u8>)>,
    /// Timers to hand back to [`Membership::handle_timer`] after the delay.
    pub timers: Vec<(Duration, Timer<MemberId>)>,
    /// Nodes that came up or went down, in order.
    pub changes: Vec<Change>,
}

/// Why a packet was refused.
#[derive(Debug, thiserror::Error)]
pub enum MembersError {
    /// The version byte is not [`PACKET_VERSION`] (or the packet is empty).
    #[error("membership packet version {0:?} is not {PACKET_VERSION}")]
    Version(Option<u8>),
    /// The header's sender is not the authenticated peer.
    #[error("membership packet from {from} claims to come from {claimed}")]
    Spoofed {
        /// The node the connection authenticated.
        from: NodeId,
        /// The sender the header names.
        claimed: NodeId,
    },
    /// foca refused it (undecodable, too big, ...).
    #[error("membership packet refused: {0}")]
    Foca(String),
}

/// foca's wire format: [`crate::codec`] parts (bincode 1, varint) for headers and members.
#[derive(Clone, Copy, Debug, Default)]
pub struct MembersCodec;

fn put(value: &impl Serialize, mut buf: impl BufMut) -> Result<(), CodecError> {
    let mut bytes = Vec::new();
    codec::encode_part(value, &mut bytes);
    if bytes.is_empty() {
        return Err(CodecError::Empty);
    }
    if buf.remaining_mut() < bytes.len() {
        return Err(CodecError::Decode("membership packet buffer full".into()));
    }
    buf.put_slice(&bytes);
    Ok(())
}

fn take<T: serde::de::DeserializeOwned>(mut buf: impl Buf) -> Result<T, CodecError> {
    let (value, used) = codec::decode_part(buf.chunk(), MAX_PACKET as u64)?;
    buf.advance(used);
    Ok(value)
}

impl Codec<MemberId> for MembersCodec {
    type Error = CodecError;

    fn encode_header(
        &mut self,
        header: &Header<MemberId>,
        buf: impl BufMut,
    ) -> Result<(), Self::Error> {
        put(header, buf)
    }

    fn decode_header(&mut self, buf: impl Buf) -> Result<Header<MemberId>, Self::Error> {
        take(buf)
    }

    fn encode_member(
        &mut self,
        member: &Member<MemberId>,
        buf: impl BufMut,
    ) -> Result<(), Self::Error> {
        put(member, buf)
    }

    fn decode_member(&mut self, buf: impl Buf) -> Result<Member<MemberId>, Self::Error> {
        take(buf)
    }
}

/// The `foca::Runtime` adapter: collects what foca asks for into vectors.
#[derive(Debug, Default)]
struct Outbox {
    sends: Vec<(NodeId, Vec<u8>)>,
    timers: Vec<(Duration, Timer<MemberId>)>,
    rejoined: Option<MemberId>,
}

impl Runtime<MemberId> for Outbox {
    fn notify(&mut self, notification: Notification<'_, MemberId>) {
        // Up/down are derived from foca's member table after each call (see `Membership`);
        // here only our own state is worth a log line.
        match notification {
            Notification::Rejoin(id) => self.rejoined = Some(id.clone()),
            Notification::Defunct => {
                tracing::warn!("cluster: this node was declared down and cannot rejoin")
            }
            Notification::Idle => tracing::debug!("cluster: no other member is alive"),
            Notification::Active => tracing::debug!("cluster: membership active"),
            _ => {}
        }
    }

    fn send_to(&mut self, to: MemberId, data: &[u8]) {
        let mut packet = Vec::with_capacity(data.len() + 1);
        packet.push(PACKET_VERSION);
        packet.extend_from_slice(data);
        self.sends.push((to.node, packet));
    }

    fn submit_after(&mut self, event: Timer<MemberId>, after: Duration) {
        self.timers.push((after, event));
    }
}

/// foca's settings for our clusters (loopback and LAN): a dead member is declared down about
/// 2–3 s after it stops answering (at most one round of probes of every member, i.e.
/// `PROBE_PERIOD` × members, then [`SUSPECT_TO_DOWN`]).
pub fn default_config() -> foca::Config {
    // The literals are non-zero: `NonZero*::MIN` stands for 1 where a constant is needed.
    let mut c = foca::Config::new_lan(std::num::NonZeroU32::MIN.saturating_add(4));
    c.probe_period = PROBE_PERIOD;
    c.probe_rtt = PROBE_RTT;
    c.suspect_to_down_after = SUSPECT_TO_DOWN;
    c.num_indirect_probes = NonZeroUsize::MIN.saturating_add(2);
    c.max_transmissions = NonZeroU8::MIN.saturating_add(5);
    c.max_packet_size = NonZeroUsize::MIN.saturating_add(MAX_PACKET - 1);
    c.notify_down_members = true;
    // Announce to members held down every 2 s: after a partition heals the two sides find
    // each other again (with `notify_down_members`, the side told it is down renews its
    // identity and rejoins).
    c.periodic_announce_to_down_members = Some(foca::PeriodicParams {
        frequency: Duration::from_secs(2),
        num_members: NonZeroUsize::MIN.saturating_add(1),
    });
    c.periodic_announce = Some(foca::PeriodicParams {
        frequency: Duration::from_secs(10),
        num_members: NonZeroUsize::MIN,
    });
    c.periodic_gossip = Some(foca::PeriodicParams {
        frequency: Duration::from_millis(200),
        num_members: NonZeroUsize::MIN.saturating_add(2),
    });
    c
}

/// See the module doc.
pub struct Membership {
    foca: Foca<MemberId, MembersCodec, SmallRng, NoCustomBroadcast>,
    out: Outbox,
    /// Every node ever known (not us) and its state as last reported.
    known: BTreeMap<NodeId, MemberState>,
    /// The nodes reported up by the last [`Change`]s.
    up: BTreeSet<NodeId>,
}

impl std::fmt::Debug for Membership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Membership")
            .field("me", self.foca.identity())
            .field("known", &self.known)
            .finish()
    }
}

impl Membership {
    /// A membership for `me`; `seed` seeds foca's random choices.
    pub fn new(me: MemberId, config: foca::Config, seed: u64) -> Self {
        Membership {
            foca: Foca::new(me, config, SmallRng::seed_from_u64(seed), MembersCodec),
            out: Outbox::default(),
            known: BTreeMap::new(),
            up: BTreeSet::new(),
        }
    }

    /// This node's current identity.
    pub fn me(&self) -> &MemberId {
        self.foca.identity()
    }

    /// Asks `node` (reached at `addr`; its renewal is not known, any of its identities
    /// accepts an announce) to let us join.
    pub fn announce(&mut self, node: &NodeId, addr: SocketAddr) {
        let dst = MemberId {
            node: node.clone(),
            addr,
            renewal: 0,
        };
        if let Err(e) = self.foca.announce(dst, &mut self.out) {
            tracing::debug!(%node, error = %e, "cluster: membership announce failed");
        }
    }

    /// A packet from `from` (the node its connection authenticated).
    pub fn handle_packet(&mut self, from: &NodeId, packet: &[u8]) -> Result<(), MembersError> {
        let (version, body) = match packet.split_first() {
            Some((v, body)) => (*v, body),
            None => return Err(MembersError::Version(None)),
        };
        if version != PACKET_VERSION {
            return Err(MembersError::Version(Some(version)));
        }
        let header: Header<MemberId> = take(body).map_err(|e| MembersError::Foca(e.to_string()))?;
        if &header.src.node != from {
            return Err(MembersError::Spoofed {
                from: from.clone(),
                claimed: header.src.node,
            });
        }
        // After a partition, the isolated side holds the majority's members down and answers
        // their announces with TurnUndead. A node that still has members up does not take
        // that verdict from a node it holds down itself (it would renew its identity and
        // flap at every member of its side); the isolated node does, renews, forgets its
        // stale down records and rejoins (see `take_effects`).
        let stale_verdict = matches!(header.message, foca::Message::TurnUndead)
            && !self.up.contains(from)
            && !self.up.is_empty();
        if stale_verdict {
            tracing::debug!(%from, "cluster: ignoring a down verdict from a member held down");
            return Ok(());
        }
        self.foca
            .handle_data(body, &mut self.out)
            .map_err(|e| MembersError::Foca(e.to_string()))
    }

    /// A timer foca scheduled has fired.
    pub fn handle_timer(&mut self, timer: Timer<MemberId>) {
        if let Err(e) = self.foca.handle_timer(timer, &mut self.out) {
            tracing::debug!(error = %e, "cluster: membership timer failed");
        }
    }

    /// Tells the members we are leaving (best effort; drain the effects to send it).
    pub fn leave(&mut self) {
        let _ = self.foca.leave_cluster(&mut self.out);
    }

    /// What to do now: packets, timers, and the nodes that changed since the last call.
    pub fn take_effects(&mut self) -> Effects {
        if let Some(id) = self.out.rejoined.take() {
            tracing::info!(
                renewal = id.renewal,
                "cluster: rejoining with a renewed identity"
            );
            // The members we hold down are most likely the other side of a healed partition:
            // forget them, or their current identities would be refused as down forever.
            let down: Vec<MemberId> = self
                .foca
                .iter_membership_state()
                .filter(|m| m.state() == State::Down)
                .map(|m| m.id().clone())
                .collect();
            for id in down {
                let _ = self.foca.handle_timer(Timer::RemoveDown(id), &mut self.out);
            }
        }
        let mut now_up = BTreeSet::new();
        let mut ids = BTreeMap::new();
        for m in self.foca.iter_membership_state() {
            let node = m.id().node.clone();
            let state = match m.state() {
                State::Alive => MemberState::Alive,
                State::Suspect => MemberState::Suspect,
                State::Down => MemberState::Down,
            };
            if state != MemberState::Down {
                now_up.insert(node.clone());
                ids.insert(node.clone(), m.id().clone());
            }
            self.known.insert(node, state);
        }
        // A member foca forgot (long after it went down) stays known, as down.
        for (node, state) in self.known.iter_mut() {
            if !now_up.contains(node) {
                *state = MemberState::Down;
            }
        }
        let mut changes = Vec::new();
        for node in self.up.difference(&now_up) {
            changes.push(Change::Down(node.clone()));
        }
        for (node, id) in ids {
            if !self.up.contains(&node) {
                changes.push(Change::Up(id));
            }
        }
        self.up = now_up;
        Effects {
            sends: std::mem::take(&mut self.out.sends),
            timers: std::mem::take(&mut self.out.timers),
            changes,
        }
    }

    /// Every node ever known (not us) and its state.
    pub fn states(&self) -> &BTreeMap<NodeId, MemberState> {
        &self.known
    }

    /// The nodes up (alive or suspect), not us, as of the last [`Membership::take_effects`].
    pub fn alive(&self) -> impl Iterator<Item = &NodeId> {
        self.up.iter()
    }

    /// Whether `node` is up.
    pub fn is_up(&self, node: &NodeId) -> bool {
        self.up.contains(node)
    }

    /// Members known, us included.
    pub fn known_count(&self) -> usize {
        self.known.len() + 1
    }

    /// The majority rule for takeover: with three or more members ever known (us included),
    /// the members up (us included) must be a strict majority of them. With one or two
    /// there is no majority to ask: always true.
    pub fn has_majority(&self) -> bool {
        let known = self.known_count();
        known < 3 || (self.up.len() + 1) * 2 > known
    }
}
