//! The book-keeping of a link: known addresses, peers, their connections ("slots") and
//! counters. No I/O; every method runs under the link's mutex and never awaits.
//!
//! Invariants:
//! * per peer at most one slot is **live** (has a sender): the preferred one. Preference is
//!   the same on both nodes of a pair — a connection dialed by the node with the smaller id
//!   beats one dialed by the other; between two dialed by the same node the older wins — so
//!   when both nodes dial each other at once they keep the same connection and each retires
//!   the other (a retired slot's writer finishes its stream, so nothing already queued on it
//!   is lost);
//! * a peer is up exactly while it has a live slot; `register` reports when a new slot became
//!   live (a `PeerUp`, also for a replacement) and `remove` when the last live slot went (a
//!   `PeerDown`);
//! * an address that answered as this node is never dialed again.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::sync::mpsc;

use super::{PeerInfo, PeerState, SendError};
use crate::clock::{self, Timestamp};
use crate::ids::NodeId;

/// Encoded frames (length prefix included) queued for one connection.
pub(super) type Queue = mpsc::Sender<Vec<u8>>;

#[derive(Debug, Default)]
struct AddrInfo {
    owner: Option<NodeId>,
    is_self: bool,
    connecting: bool,
}

#[derive(Debug)]
struct Slot {
    id: u64,
    /// Lower is preferred: (dialed by the larger node id, slot id).
    rank: (bool, u64),
    tx: Option<Queue>,
    conn: Option<quinn::Connection>,
}

#[derive(Debug, Default)]
struct Peer {
    addr: Option<SocketAddr>,
    slots: Vec<Slot>,
    frames_in: u64,
    frames_out: u64,
    dropped: u64,
    last_contact: Option<Timestamp>,
}

impl Peer {
    fn live(&self) -> Option<&Slot> {
        self.slots.iter().find(|s| s.tx.is_some())
    }
}

/// What [`Registry::register`] decided.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Registered {
    /// The new slot's id (pass it to `remove`).
    pub(super) slot: u64,
    /// The new slot is the live one: report the peer up.
    pub(super) up: bool,
    /// An address learned from the peer's `Hello` that has no dialer yet.
    pub(super) new_addr: Option<SocketAddr>,
}

/// See the module doc.
#[derive(Debug)]
pub(super) struct Registry {
    me: NodeId,
    addrs: BTreeMap<SocketAddr, AddrInfo>,
    peers: BTreeMap<NodeId, Peer>,
    next_slot: u64,
    refused: u64,
    closed: bool,
}

impl Registry {
    pub(super) fn new(me: NodeId) -> Self {
        Registry {
            me,
            addrs: BTreeMap::new(),
            peers: BTreeMap::new(),
            next_slot: 0,
            refused: 0,
            closed: false,
        }
    }

    /// Adds an address to dial; true if it is new (start a dialer for it).
    pub(super) fn add_addr(&mut self, addr: SocketAddr) -> bool {
        if self.closed || self.addrs.contains_key(&addr) {
            return false;
        }
        self.addrs.insert(addr, AddrInfo::default());
        true
    }

    /// Whether a dialer of `addr` should stop for good (closed, or the address is ours).
    pub(super) fn retired(&self, addr: SocketAddr) -> bool {
        self.closed || self.addrs.get(&addr).is_none_or(|a| a.is_self)
    }

    /// Whether `addr` belongs to a peer that is up (no need to dial it).
    pub(super) fn covered(&self, addr: SocketAddr) -> bool {
        let owner = self.addrs.get(&addr).and_then(|a| a.owner.as_ref());
        owner.is_some_and(|id| self.peers.get(id).is_some_and(|p| p.live().is_some()))
    }

    pub(super) fn set_connecting(&mut self, addr: SocketAddr, connecting: bool) {
        if let Some(a) = self.addrs.get_mut(&addr) {
            a.connecting = connecting;
        }
    }

    pub(super) fn mark_self(&mut self, addr: SocketAddr) {
        self.addrs.entry(addr).or_default().is_self = true;
    }

    pub(super) fn count_refused(&mut self) {
        self.refused += 1;
    }

    pub(super) fn refused(&self) -> u64 {
        self.refused
    }

    /// Records a checked connection to `peer`. `dialed` is the address we dialed, if we did;
    /// `advertise` the address its `Hello` gave. `None` once the link is closed.
    pub(super) fn register(
        &mut self,
        peer: &NodeId,
        dialer: &NodeId,
        dialed: Option<SocketAddr>,
        advertise: Option<SocketAddr>,
        tx: Queue,
        conn: Option<quinn::Connection>,
    ) -> Option<Registered> {
        if self.closed {
            return None;
        }
        let id = self.next_slot;
        self.next_slot += 1;
        let lower = if self.me < *peer { &self.me } else { peer };
        let rank = (dialer != lower, id);
        // An advertised address never seen before needs a dialer (for reconnecting).
        let new_addr = advertise.filter(|a| !self.addrs.contains_key(a));
        for addr in dialed.iter().chain(advertise.iter()) {
            self.addrs.entry(*addr).or_default().owner = Some(peer.clone());
        }
        let p = self.peers.entry(peer.clone()).or_default();
        if advertise.is_some() {
            p.addr = advertise;
        } else if p.addr.is_none() {
            p.addr = dialed;
        }
        p.last_contact = Some(clock::now());
        let beats_live = p.live().is_none_or(|live| rank < live.rank);
        if beats_live {
            for s in &mut p.slots {
                s.tx = None;
            }
        }
        p.slots.push(Slot {
            id,
            rank,
            tx: beats_live.then_some(tx),
            conn,
        });
        Some(Registered {
            slot: id,
            up: beats_live,
            new_addr,
        })
    }

    /// Forgets a slot whose connection ended; true if the peer just went down.
    pub(super) fn remove(&mut self, peer: &NodeId, slot: u64) -> bool {
        let Some(p) = self.peers.get_mut(peer) else {
            return false;
        };
        let Some(i) = p.slots.iter().position(|s| s.id == slot) else {
            return false;
        };
        let was_live = p.slots[i].tx.is_some();
        p.slots.remove(i);
        // Down only when no other live connection to the peer remains: a duplicate retired
        // after simultaneous dials must not report a peer down whose other connection is up
        // (the node would then stop syncing with it).
        let still_up = p.slots.iter().any(|s| s.tx.is_some());
        was_live && !still_up && !self.closed
    }

    /// Queues an encoded frame for `peer`; never waits.
    pub(super) fn send(&mut self, peer: &NodeId, bytes: Vec<u8>) -> Result<(), SendError> {
        let p = self.peers.get_mut(peer).ok_or(SendError::NotConnected)?;
        let Some(tx) = p.live().and_then(|s| s.tx.clone()) else {
            p.dropped += 1;
            return Err(SendError::NotConnected);
        };
        match tx.try_send(bytes) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => {
                p.dropped += 1;
                Err(SendError::QueueFull)
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                p.dropped += 1;
                Err(SendError::NotConnected)
            }
        }
    }

    /// The connection in use to `peer`, if it is up.
    pub(super) fn connection(&self, peer: &NodeId) -> Option<quinn::Connection> {
        self.peers.get(peer)?.live()?.conn.clone()
    }

    /// The peers that are up.
    pub(super) fn up_peers(&self) -> Vec<NodeId> {
        let up = self.peers.iter().filter(|(_, p)| p.live().is_some());
        up.map(|(id, _)| id.clone()).collect()
    }

    pub(super) fn frame_in(&mut self, peer: &NodeId) {
        if let Some(p) = self.peers.get_mut(peer) {
            p.frames_in += 1;
            p.last_contact = Some(clock::now());
        }
    }

    pub(super) fn frames_out(&mut self, peer: &NodeId, n: u64) {
        if let Some(p) = self.peers.get_mut(peer) {
            p.frames_out += n;
        }
    }

    /// Stops everything: no new slots, every queue closed (writers finish their streams).
    pub(super) fn close(&mut self) {
        self.closed = true;
        for p in self.peers.values_mut() {
            for s in &mut p.slots {
                s.tx = None;
            }
        }
    }

    /// Every known peer and every address not yet matched to one.
    pub(super) fn info(&self) -> Vec<PeerInfo> {
        let mut out: Vec<PeerInfo> = self
            .peers
            .iter()
            .map(|(id, p)| {
                let live = p.live();
                let connecting = p
                    .addr
                    .and_then(|a| self.addrs.get(&a))
                    .is_some_and(|a| a.connecting);
                let state = match (live, connecting) {
                    (Some(_), _) => PeerState::Up,
                    (None, true) => PeerState::Connecting,
                    (None, false) => PeerState::Down,
                };
                PeerInfo {
                    id: Some(id.clone()),
                    addr: p.addr,
                    state,
                    rtt: live.and_then(|s| s.conn.as_ref()).map(|c| c.rtt()),
                    last_contact: p.last_contact,
                    frames_in: p.frames_in,
                    frames_out: p.frames_out,
                    dropped: p.dropped,
                }
            })
            .collect();
        for (addr, a) in &self.addrs {
            if a.owner.is_none() && !a.is_self {
                out.push(PeerInfo {
                    id: None,
                    addr: Some(*addr),
                    state: PeerState::Connecting,
                    rtt: None::<Duration>,
                    last_contact: None,
                    frames_in: 0,
                    frames_out: 0,
                    dropped: 0,
                });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(s: &str) -> NodeId {
        NodeId::new(s)
    }

    fn queue() -> (Queue, mpsc::Receiver<Vec<u8>>) {
        mpsc::channel(2)
    }

    #[test]
    fn duplicate_connections_keep_the_one_dialed_by_the_smaller_id() {
        // Seen from node b (the larger id) and from node a: both keep a's connection.
        let (a, b) = (node("a"), node("b"));
        let mut at_b = Registry::new(b.clone());
        let (tx1, _rx1) = queue();
        let r1 = at_b.register(&a, &b, None, None, tx1, None).unwrap();
        assert!(r1.up);
        let (tx2, _rx2) = queue();
        let r2 = at_b.register(&a, &a, None, None, tx2, None).unwrap();
        assert!(r2.up, "a's connection replaces b's");
        assert!(
            !at_b.remove(&a, r1.slot),
            "removing the retired slot is not a down"
        );

        let mut at_a = Registry::new(a.clone());
        let (tx3, _rx3) = queue();
        let r3 = at_a.register(&b, &a, None, None, tx3, None).unwrap();
        let (tx4, _rx4) = queue();
        let r4 = at_a.register(&b, &b, None, None, tx4, None).unwrap();
        assert!(r3.up && !r4.up, "b's connection loses at a too");
        assert!(!at_a.remove(&b, r4.slot));
        assert!(at_a.remove(&b, r3.slot), "the live slot going is a down");
        assert_eq!(at_a.info()[0].state, PeerState::Down);
    }

    #[test]
    fn send_drops_and_counts_when_full_or_down() {
        let (me, p) = (node("a"), node("b"));
        let mut r = Registry::new(me.clone());
        assert_eq!(r.send(&p, vec![1]), Err(SendError::NotConnected));
        let (tx, mut rx) = queue();
        let reg = r.register(&p, &me, None, None, tx, None).unwrap();
        assert_eq!(r.send(&p, vec![1]), Ok(()));
        assert_eq!(r.send(&p, vec![2]), Ok(()));
        assert_eq!(r.send(&p, vec![3]), Err(SendError::QueueFull));
        assert_eq!(rx.try_recv().unwrap(), vec![1]);
        assert!(r.remove(&p, reg.slot));
        assert_eq!(r.send(&p, vec![4]), Err(SendError::NotConnected));
        let info = r.info();
        assert_eq!((info[0].dropped, info[0].state), (2, PeerState::Down));
    }

    #[test]
    fn addresses_are_covered_while_their_peer_is_up() {
        let (me, p) = (node("a"), node("b"));
        let mut r = Registry::new(me.clone());
        let seed: SocketAddr = "127.0.0.1:7001".parse().unwrap();
        let adv: SocketAddr = "127.0.0.1:7002".parse().unwrap();
        assert!(r.add_addr(seed) && !r.add_addr(seed));
        assert!(!r.covered(seed));
        assert_eq!(r.info()[0].id, None);
        let (tx, _rx) = queue();
        let reg = r
            .register(&p, &me, Some(seed), Some(adv), tx, None)
            .unwrap();
        assert_eq!(reg.new_addr, Some(adv));
        assert!(r.covered(seed) && r.covered(adv));
        assert_eq!(r.info().len(), 1, "the seed is matched to its peer");
        r.remove(&p, reg.slot);
        assert!(!r.covered(seed));
        r.mark_self(seed);
        assert!(r.retired(seed) && !r.retired(adv));
        r.close();
        assert!(r.retired(adv));
        let (tx, _rx) = queue();
        assert!(r.register(&p, &me, None, None, tx, None).is_none());
    }
}
