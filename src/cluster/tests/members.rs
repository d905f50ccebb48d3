//! Membership ([`crate::cluster::members`]) over a simulated network: several foca instances
//! with the production configuration, their packets carried by a queue, their timers by a
//! simulated clock. Nodes can be stopped (no packets, no timers), cut off (a partition), and
//! restarted with a renewed identity. Each node also follows the replication actor's rule of
//! announcing to every other node once a second while it knows no member alive.

use std::collections::{BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::time::Duration;

use foca::Timer;

use crate::cluster::members::{
    default_config, Change, MemberId, MemberState, MembersError, Membership, PACKET_VERSION,
};
use crate::ids::NodeId;

const STEP: Duration = Duration::from_millis(10);

struct Sim {
    nodes: Vec<Membership>,
    names: Vec<NodeId>,
    now: Duration,
    /// (due, node, timer, the node's generation when scheduled)
    timers: Vec<(Duration, usize, Timer<MemberId>, u32)>,
    generation: Vec<u32>,
    packets: VecDeque<(usize, NodeId, Vec<u8>)>,
    stopped: BTreeSet<usize>,
    cut: BTreeSet<usize>,
    /// Every change reported: (time, at node, change).
    log: Vec<(Duration, usize, Change)>,
    next_tick: Duration,
}

fn addr(i: usize) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 7001 + i as u16))
}

fn id(i: usize, renewal: u64) -> MemberId {
    MemberId {
        node: NodeId::new(&format!("node-{}", i + 1)),
        addr: addr(i),
        renewal,
    }
}

impl Sim {
    fn new(n: usize) -> Sim {
        Sim {
            nodes: (0..n)
                .map(|i| Membership::new(id(i, 1), default_config(), 7 + i as u64))
                .collect(),
            names: (0..n).map(|i| id(i, 1).node).collect(),
            now: Duration::ZERO,
            timers: Vec::new(),
            generation: vec![0; n],
            packets: VecDeque::new(),
            stopped: BTreeSet::new(),
            cut: BTreeSet::new(),
            log: Vec::new(),
            next_tick: Duration::from_secs(1),
        }
    }

    fn effects(&mut self, i: usize) {
        let e = self.nodes[i].take_effects();
        for (to, bytes) in e.sends {
            self.packets.push_back((i, to, bytes));
        }
        for (after, t) in e.timers {
            self.timers
                .push((self.now + after, i, t, self.generation[i]));
        }
        for c in e.changes {
            self.log.push((self.now, i, c));
        }
    }

    fn announce(&mut self, i: usize, j: usize) {
        let name = self.names[j].clone();
        self.nodes[i].announce(&name, addr(j));
        self.effects(i);
    }

    fn index(&self, node: &NodeId) -> usize {
        self.names.iter().position(|n| n == node).unwrap()
    }

    fn deliver(&mut self) {
        while let Some((from, to, bytes)) = self.packets.pop_front() {
            let to = self.index(&to);
            let lost = self.stopped.contains(&from)
                || self.stopped.contains(&to)
                || self.cut.contains(&from) != self.cut.contains(&to);
            if lost {
                continue;
            }
            let from_name = self.names[from].clone();
            self.nodes[to]
                .handle_packet(&from_name, &bytes)
                .unwrap_or_else(|e| panic!("node {to} refused a packet from {from}: {e}"));
            self.effects(to);
        }
    }

    /// The actor's rule: a node with no member alive announces to the others every second.
    fn tick(&mut self) {
        for i in 0..self.nodes.len() {
            if self.stopped.contains(&i) || self.nodes[i].alive().next().is_some() {
                continue;
            }
            for j in (0..self.nodes.len()).filter(|j| *j != i) {
                self.announce(i, j);
            }
        }
    }

    fn step(&mut self) {
        let until = self.now + STEP;
        loop {
            self.deliver();
            let due = self
                .timers
                .iter()
                .enumerate()
                .filter(|(_, t)| t.0 <= until)
                .min_by_key(|(_, t)| t.0)
                .map(|(k, _)| k);
            let Some(k) = due else { break };
            let (at, i, timer, generation) = self.timers.swap_remove(k);
            self.now = self.now.max(at);
            if self.stopped.contains(&i) || generation != self.generation[i] {
                continue;
            }
            self.nodes[i].handle_timer(timer);
            self.effects(i);
        }
        self.now = until;
        if self.now >= self.next_tick {
            self.next_tick += Duration::from_secs(1);
            self.tick();
        }
    }

    /// Runs until `done` holds; returns how long it took, or panics after `limit`.
    fn run_until(&mut self, limit: Duration, what: &str, done: impl Fn(&Sim) -> bool) -> Duration {
        let start = self.now;
        while !done(self) {
            assert!(self.now - start < limit, "{what}: not within {limit:?}");
            self.step();
        }
        self.now - start
    }

    fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        while self.now < end {
            self.step();
        }
    }

    fn up(&self, i: usize) -> Vec<String> {
        self.nodes[i].alive().map(|n| n.to_string()).collect()
    }

    fn sees_up(&self, i: usize, j: usize) -> bool {
        self.nodes[i].is_up(&self.names[j])
    }

    /// How many times node `j` was reported down at one of the nodes `at`.
    fn downs_of(&self, j: usize, at: &[usize]) -> usize {
        let name = &self.names[j];
        self.log
            .iter()
            .filter(|(_, i, c)| at.contains(i) && matches!(c, Change::Down(n) if n == name))
            .count()
    }

    /// A new process for node `i`: a fresh instance with a larger renewal, seeded with node 0.
    fn restart(&mut self, i: usize, renewal: u64) {
        self.generation[i] += 1;
        self.stopped.remove(&i);
        self.nodes[i] = Membership::new(id(i, renewal), default_config(), 99);
        self.announce(i, 0);
    }
}

fn joined(n: usize) -> Sim {
    let mut sim = Sim::new(n);
    for i in 1..n {
        sim.announce(i, 0);
    }
    sim.run_until(Duration::from_secs(3), "join", |s| {
        (0..n).all(|i| s.up(i).len() == n - 1)
    });
    sim
}

#[test]
fn three_members_learn_each_other_from_one_seed() {
    let mut sim = Sim::new(3);
    // node-2 and node-3 know only node-1.
    sim.announce(1, 0);
    sim.announce(2, 0);
    let took = sim.run_until(Duration::from_secs(3), "join", |s| {
        (0..3).all(|i| s.up(i).len() == 2)
    });
    assert!(
        sim.sees_up(1, 2) && sim.sees_up(2, 1),
        "learned through node-1"
    );
    assert_eq!(sim.nodes[0].states().len(), 2);
    assert!(sim.nodes[0]
        .states()
        .values()
        .all(|s| *s == MemberState::Alive));
    eprintln!("three members joined in {took:?}");
    // A quiet, healthy cluster stays up: no false suspicion over a minute.
    sim.run_for(Duration::from_secs(60));
    assert!(
        (0..3).all(|i| sim.downs_of(i, &[0, 1, 2]) == 0),
        "{:?}",
        sim.log
    );
}

#[test]
fn a_silent_member_is_declared_down_within_the_bound_and_rejoins_renewed() {
    let mut sim = joined(3);
    sim.stopped.insert(2);
    let took = sim.run_until(Duration::from_millis(3500), "down", |s| {
        !s.sees_up(0, 2) && !s.sees_up(1, 2)
    });
    eprintln!("a silent member was declared down by both others after {took:?}");
    assert!(
        took >= Duration::from_millis(1500),
        "not before the suspicion timeout"
    );
    assert_eq!(sim.nodes[0].states()[&sim.names[2]], MemberState::Down);
    assert!(sim.nodes[0].has_majority() && sim.nodes[1].has_majority());
    assert_eq!(
        sim.downs_of(0, &[1]) + sim.downs_of(1, &[0]),
        0,
        "no false positives"
    );

    // It comes back as a new process: renewed identity, seeded with node-1 only.
    sim.restart(2, 2);
    sim.run_until(Duration::from_secs(3), "rejoin", |s| {
        (0..3).all(|i| s.up(i).len() == 2)
    });
    assert_eq!(sim.nodes[0].states()[&sim.names[2]], MemberState::Alive);
    assert_eq!(sim.downs_of(0, &[1, 2]) + sim.downs_of(1, &[0, 2]), 0);
}

#[test]
fn an_isolated_member_loses_the_majority_and_a_healed_partition_rejoins() {
    let mut sim = joined(3);
    sim.cut.insert(2);
    sim.run_until(Duration::from_secs(4), "both sides see the cut", |s| {
        !s.sees_up(0, 2) && !s.sees_up(1, 2) && s.up(2).is_empty()
    });
    assert!(sim.nodes[0].has_majority(), "2 of 3 alive");
    assert!(!sim.nodes[2].has_majority(), "1 of 3: no takeover");
    assert_eq!(sim.nodes[2].known_count(), 3);

    sim.cut.clear();
    let took = sim.run_until(Duration::from_secs(10), "heal", |s| {
        (0..3).all(|i| s.up(i).len() == 2)
    });
    eprintln!("a healed partition rejoined in {took:?}");
    assert!((0..3).all(|i| sim.nodes[i].has_majority()));
    // The majority side never lost each other.
    assert_eq!(
        sim.downs_of(0, &[1]) + sim.downs_of(1, &[0]),
        0,
        "{:?}",
        sim.log
    );
}

#[test]
fn two_members_take_over_without_a_majority_rule() {
    let mut sim = joined(2);
    sim.stopped.insert(1);
    sim.run_until(Duration::from_secs(4), "down", |s| !s.sees_up(0, 1));
    assert_eq!(sim.nodes[0].known_count(), 2);
    assert!(
        sim.nodes[0].has_majority(),
        "with two nodes there is no majority to ask"
    );
}

#[test]
fn packets_not_from_their_authenticated_sender_or_version_are_refused() {
    let mut sim = Sim::new(3);
    sim.nodes[1].announce(&sim.names[0].clone(), addr(0));
    let e = sim.nodes[1].take_effects();
    let (to, packet) = e.sends.into_iter().next().expect("an announce");
    assert_eq!((to.as_str(), packet[0]), ("node-1", PACKET_VERSION));
    let node3 = sim.names[2].clone();
    assert!(matches!(
        sim.nodes[0].handle_packet(&node3, &packet),
        Err(MembersError::Spoofed { .. })
    ));
    let mut other = packet.clone();
    other[0] = PACKET_VERSION + 1;
    let node2 = sim.names[1].clone();
    assert!(matches!(
        sim.nodes[0].handle_packet(&node2, &other),
        Err(MembersError::Version(Some(_)))
    ));
    assert!(matches!(
        sim.nodes[0].handle_packet(&node2, &[]),
        Err(MembersError::Version(None))
    ));
    assert!(matches!(
        sim.nodes[0].handle_packet(&node2, &[PACKET_VERSION, 0xff, 0xff, 0xff]),
        Err(MembersError::Foca(_))
    ));
    assert!(
        sim.nodes[0].alive().next().is_none(),
        "nothing was accepted"
    );
    sim.nodes[0].handle_packet(&node2, &packet).unwrap();
    sim.effects(0);
    assert!(sim.sees_up(0, 1), "the genuine packet is");
}

#[test]
fn a_renewed_identity_wins_over_the_old_one_of_the_same_node() {
    use foca::Identity;
    let old = id(0, 5);
    let new = old.renew().expect("identities always renew");
    assert_eq!((new.renewal, &new.node, new.addr), (6, &old.node, old.addr));
    assert_eq!(old.addr(), new.addr(), "one member per node id");
    assert!(new.win_addr_conflict(&old) && !old.win_addr_conflict(&new));
    // A restart on another address with a newer renewal wins too.
    let moved = MemberId {
        addr: addr(9),
        renewal: 7,
        ..old.clone()
    };
    assert!(moved.win_addr_conflict(&new));
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

    /// Membership packets come from the network: any bytes — random, or a genuine packet with
    /// bytes changed, cut or extended — are refused or applied, never a panic, and a later
    /// genuine packet still works.
    #[test]
    fn damaged_membership_packets_never_panic(
        edits in proptest::collection::vec((0usize..4096, proptest::prelude::any::<u8>()), 0..8),
        cut in proptest::prelude::any::<Option<usize>>(),
        tail in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64),
        random in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256),
    ) {
        let mut sim = Sim::new(2);
        sim.nodes[1].announce(&sim.names[0].clone(), addr(0));
        let (_, packet) = sim.nodes[1].take_effects().sends.into_iter().next().expect("an announce");
        let mut damaged = packet.clone();
        for (at, byte) in edits {
            let n = damaged.len();
            damaged[at % n] = byte;
        }
        if let Some(c) = cut {
            damaged.truncate(c % (packet.len() + 1));
        }
        damaged.extend_from_slice(&tail);
        let node2 = sim.names[1].clone();
        let _ = sim.nodes[0].handle_packet(&node2, &damaged);
        let _ = sim.nodes[0].handle_packet(&node2, &random);
        let mut versioned = random.clone();
        versioned.insert(0, PACKET_VERSION);
        let _ = sim.nodes[0].handle_packet(&node2, &versioned);
        sim.effects(0);
        sim.nodes[0].handle_packet(&node2, &packet).expect("a genuine packet is still accepted");
        sim.effects(0);
        proptest::prop_assert!(sim.sees_up(0, 1));
    }
}
