//! Cluster tests: several real `presenced` processes replicating over QUIC with mutual TLS
//! on 127.0.0.1 (SPEC §8). Every inter-node packet goes through a relay of the harness so a
//! test can cut a node off.

#[path = "../tests/common/mod.rs"]
mod common;
mod harness;
mod owner_return;
mod replay;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;
use harness::*;

const ALICE: &str = "sip:alice@example.com";

/// Three nodes, each behind a relay that the others dial.
struct Cluster {
    _dir: tempfile::TempDir,
    nodes: Vec<Option<ClusterNode>>,
    specs: Vec<NodeSpec>,
    relays: Vec<Relay>,
}

impl Cluster {
    fn start(n: usize) -> Cluster {
        Self::start_with(n, 30)
    }

    fn start_with(n: usize, takeover_grace: u64) -> Cluster {
        Self::start_extra(n, takeover_grace, "")
    }

    /// `extra` is appended to every node's configuration. Every node seeds all the others, as
    /// the shipped configs do: pairs dial each other at once and the link keeps one connection
    /// per pair.
    fn start_extra(n: usize, takeover_grace: u64, extra: &str) -> Cluster {
        Self::start_seeded(n, takeover_grace, extra, |i| {
            (0..n).filter(|j| *j != i).collect()
        })
    }

    /// `seeds(i)`: the indexes of the nodes node `i` is configured with.
    fn start_seeded(
        n: usize,
        takeover_grace: u64,
        extra: &str,
        seeds: impl Fn(usize) -> Vec<usize>,
    ) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let certs = dir.path().join("certs");
        let ids: Vec<String> = (1..=n).map(|i| format!("node-{i}")).collect();
        let id_refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        make_certs(&certs, &id_refs);
        let mut specs: Vec<NodeSpec> = ids
            .iter()
            .map(|id| NodeSpec::new(id, &certs, dir.path()))
            .collect();
        let relays: Vec<Relay> = specs.iter().map(|s| Relay::start(s.quic_addr())).collect();
        for i in 0..n {
            specs[i].takeover_grace = takeover_grace;
            specs[i].advertise = relays[i].addr;
            specs[i].peers = seeds(i).into_iter().map(|j| relays[j].addr).collect();
        }
        let nodes = specs
            .iter()
            .map(|s| Some(ClusterNode::start(s, extra)))
            .collect();
        let c = Cluster {
            _dir: dir,
            nodes,
            specs,
            relays,
        };
        c.wait_all_up();
        for n in c.nodes.iter().flatten() {
            assert_eq!(
                n.get("/ready")["ready"],
                true,
                "{} joined and ready",
                n.spec.id
            );
        }
        c
    }

    fn node(&self, i: usize) -> &ClusterNode {
        self.nodes[i].as_ref().expect("node running")
    }

    fn wait_all_up(&self) {
        let ids: Vec<String> = self.specs.iter().map(|s| s.id.clone()).collect();
        for (i, n) in self.nodes.iter().enumerate() {
            let Some(n) = n else { continue };
            let others: Vec<&str> = ids
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, s)| s.as_str())
                .collect();
            n.wait_peers(&others, WAIT * 3);
        }
    }

    /// Waits until node `i`'s replicated view holds `n` live subscription dialogs.
    fn wait_subscriptions_replicated(&self, i: usize, n: u64) {
        let deadline = Instant::now() + WAIT;
        while self.node(i).get("/debug/cluster")["subscriptions"] != n {
            assert!(
                Instant::now() < deadline,
                "the subscription was not replicated to {}",
                self.specs[i].id
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A watcher of `ALICE` subscribed at node `i` (call `call`): its client and the CSeq of
    /// the first NOTIFY.
    fn watch_alice(&self, i: usize, call: &str) -> (UdpClient, u32) {
        let mut w = UdpClient::new(self.sip(i));
        w.send(&subscribe(ALICE, w.port(), call, 1, "Expires: 600\r\n"));
        assert_eq!(w.response(call, "SUBSCRIBE").status, 200);
        let first = w.notify(call).cseq.seq;
        (w, first)
    }

    /// An initial PUBLISH of `ALICE` with `note` at node `i`, answered 200.
    fn publish_alice(&self, i: usize, call: &str, note: &str) {
        let mut p = UdpClient::new(self.sip(i));
        p.send(&publish(
            ALICE,
            p.port(),
            call,
            1,
            "Expires: 600\r\n",
            &pidf(ALICE, note, "open"),
        ));
        assert_eq!(p.response(call, "PUBLISH").status, 200);
    }

    fn sip(&self, i: usize) -> SocketAddr {
        self.specs[i].sip_addr()
    }

    /// Cuts node `i` off from the others (both ways) or heals it.
    fn partition(&self, i: usize, on: bool) {
        self.relays[i].cut(on);
        let me = self.specs[i].quic_addr();
        for (j, r) in self.relays.iter().enumerate() {
            if j != i {
                r.block(me, on);
            }
        }
    }
}

/// Node `i`'s `/debug/cluster` entry for `peer`.
fn peer_view(node: &ClusterNode, peer: &str) -> serde_json::Value {
    let v = node.get("/debug/cluster");
    v["peers"]
        .as_array()
        .and_then(|a| a.iter().find(|p| p["id"] == peer).cloned())
        .unwrap_or(serde_json::Value::Null)
}

/// Polls `node`'s `/debug/cluster` until `pred` holds; returns how long it took.
fn wait_view(
    node: &ClusterNode,
    timeout: Duration,
    what: &str,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> Duration {
    let start = Instant::now();
    loop {
        let v = node.get("/debug/cluster");
        if pred(&v) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < timeout,
            "{}: {what}; view: {v}",
            node.spec.id
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn membership_of(v: &serde_json::Value, peer: &str) -> String {
    v["peers"]
        .as_array()
        .and_then(|a| a.iter().find(|p| p["id"] == peer))
        .and_then(|p| p["membership"].as_str())
        .unwrap_or("")
        .to_string()
}

fn fetch(c: &mut UdpClient, uri: &str, call_id: &str) -> String {
    c.send(&subscribe(uri, c.port(), call_id, 1, "Expires: 0\r\n"));
    assert_eq!(c.response(call_id, "SUBSCRIBE").status, 200);
    String::from_utf8_lossy(&c.notify(call_id).body).into_owned()
}

/// Fetches `uri` from a node until `pred` holds for the document, or panics after `timeout`.
fn eventually(
    server: SocketAddr,
    uri: &str,
    timeout: Duration,
    pred: impl Fn(&str) -> bool,
) -> Duration {
    let start = Instant::now();
    let mut c = UdpClient::new(server);
    for n in 0.. {
        let body = fetch(&mut c, uri, &format!("ev-{n}"));
        if pred(&body) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < timeout,
            "{uri} at {server} never converged; last: {body}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    unreachable!()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[test]
fn publish_on_one_node_notifies_watchers_on_the_others() {
    let cl = Cluster::start(3);
    let mut w2 = UdpClient::new(cl.sip(1));
    let mut w3 = UdpClient::new(cl.sip(2));
    w2.send(&subscribe(ALICE, w2.port(), "w2", 1, "Expires: 600\r\n"));
    w3.send(&subscribe(ALICE, w3.port(), "w3", 1, "Expires: 600\r\n"));
    assert_eq!(w2.response("w2", "SUBSCRIBE").status, 200);
    assert_eq!(w3.response("w3", "SUBSCRIBE").status, 200);
    w2.notify("w2");
    w3.notify("w3");

    let mut p = UdpClient::new(cl.sip(0));
    let port = p.port();
    let mut etag: Option<String> = None;
    let mut latencies = Vec::new();
    for i in 0..200 {
        let tuple = format!("t{i}");
        let extra = etag
            .as_ref()
            .map(|e| format!("SIP-If-Match: {e}\r\n"))
            .unwrap_or_default();
        let sent = Instant::now();
        p.send(&publish(
            ALICE,
            port,
            "pub",
            i + 1,
            &format!("{extra}Expires: 600\r\n"),
            &pidf(ALICE, &tuple, "open"),
        ));
        let needle = format!("id=\"{tuple}\"");
        let n = w2
            .wait_for(WAIT, |m| matches!(m, presenced::sip::Message::Request(r) if String::from_utf8_lossy(&r.body).contains(&needle)))
            .unwrap_or_else(|| panic!("node 2's watcher never saw {tuple}"));
        latencies.push(sent.elapsed());
        drop(n);
        let r = p.response("pub", "PUBLISH");
        assert_eq!(r.status, 200);
        etag = r.header("SIP-ETag").map(str::to_string);
    }
    // Node 3's watcher ends with the same, latest state.
    let deadline = Instant::now() + WAIT;
    loop {
        let n = w3.notify("w3");
        if String::from_utf8_lossy(&n.body).contains("id=\"t199\"") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "node 3's watcher never reached the latest state"
        );
    }
    // /metrics on node 2 shows the traffic from node 1 per peer, and a replication lag.
    let admin: SocketAddr = ([127, 0, 0, 1], cl.node(1).spec.admin).into();
    let actors = admin_get_at(admin, "/debug/actors");
    assert_eq!(actors["kinds"]["replication"]["live"], 1, "{actors}");
    assert_eq!(
        actors["kinds"]["peer"]["live"], 2,
        "node 2 sees both peers up: {actors}"
    );
    let metrics = admin_get_at(admin, "/metrics");
    let metrics = metrics.as_str().expect("metrics are text");
    let frames_in = metrics
        .lines()
        .find_map(|l| {
            l.strip_prefix("presenced_replication_frames_total{peer=\"node-1\",direction=\"in\"} ")
        })
        .unwrap_or_else(|| panic!("no frames from node-1 in {metrics}"));
    assert!(
        frames_in.trim().parse::<u64>().unwrap() >= 200,
        "200 deltas from node-1: {frames_in}"
    );
    assert!(
        metrics.contains("presenced_replication_frames_total{peer=\"node-3\",direction=\"out\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("presenced_replication_lag_seconds{peer=\"node-1\"} "),
        "{metrics}"
    );
    // No false positive under that load (three nodes and the other tests on two cores).
    for i in 0..3 {
        let v = cl.node(i).get("/debug/cluster");
        assert_eq!(v["members"]["declared_down"], 0, "{v}");
        assert_eq!(v["members"]["alive"], 3, "{v}");
    }
    latencies.sort();
    eprintln!(
        "publish → remote NOTIFY over {} tries: p50 {:?}, p99 {:?}, max {:?}",
        latencies.len(),
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies.last().unwrap()
    );
}

#[test]
fn an_etag_minted_by_one_node_refreshes_and_removes_on_the_others() {
    let cl = Cluster::start(3);
    let mut c1 = UdpClient::new(cl.sip(0));
    c1.send(&publish(
        ALICE,
        c1.port(),
        "e1",
        1,
        "Expires: 600\r\n",
        &pidf(ALICE, "phone", "open"),
    ));
    let etag = c1
        .response("e1", "PUBLISH")
        .header("SIP-ETag")
        .unwrap()
        .to_string();
    eventually(cl.sip(1), ALICE, WAIT, |b| b.contains("id=\"phone\""));

    let mut c2 = UdpClient::new(cl.sip(1));
    c2.send(&publish(
        ALICE,
        c2.port(),
        "e2",
        1,
        &format!("SIP-If-Match: {etag}\r\nExpires: 600\r\n"),
        "",
    ));
    let r = c2.response("e2", "PUBLISH");
    assert_eq!(r.status, 200, "refresh at node 2 with node 1's ETag");
    let etag2 = r.header("SIP-ETag").unwrap().to_string();

    // Node 3 learns the new ETag and can remove the publication with it.
    let mut c3 = UdpClient::new(cl.sip(2));
    let deadline = Instant::now() + WAIT;
    let mut n = 0;
    loop {
        n += 1;
        let call = format!("e3-{n}");
        c3.send(&publish(
            ALICE,
            c3.port(),
            &call,
            1,
            &format!("SIP-If-Match: {etag2}\r\nExpires: 0\r\n"),
            "",
        ));
        let status = c3.response(&call, "PUBLISH").status;
        if status == 200 {
            break;
        }
        assert_eq!(status, 412);
        assert!(
            Instant::now() < deadline,
            "node 3 never learned the refreshed ETag"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    eventually(cl.sip(0), ALICE, WAIT * 3, |b| !b.contains("phone"));
}

#[test]
fn a_restarted_node_with_an_empty_data_dir_catches_up() {
    let mut cl = Cluster::start(3);
    let spec = cl.nodes[2].take().unwrap().kill9();
    let mut c1 = UdpClient::new(cl.sip(0));
    for i in 0..50 {
        let uri = format!("sip:u{i}@example.com");
        c1.send(&publish(
            &uri,
            c1.port(),
            &format!("k{i}"),
            1,
            "Expires: 600\r\n",
            &pidf(&uri, &format!("k{i}"), "open"),
        ));
        assert_eq!(c1.response(&format!("k{i}"), "PUBLISH").status, 200);
    }
    std::fs::remove_dir_all(&spec.data).unwrap();
    let started = Instant::now();
    cl.nodes[2] = Some(ClusterNode::start(&spec, ""));
    for i in 0..50 {
        let uri = format!("sip:u{i}@example.com");
        eventually(cl.sip(2), &uri, WAIT, |b| {
            b.contains(&format!("id=\"k{i}\""))
        });
    }
    eprintln!(
        "empty node caught up with 50 publications in {:?}",
        started.elapsed()
    );
    // The new process joined with a newer identity, alive at both others.
    for i in 0..2 {
        wait_view(cl.node(i), WAIT, "the restarted node alive", |v| {
            membership_of(v, "node-3") == "alive"
        });
    }
}

#[test]
fn a_partition_heals_and_every_node_converges() {
    let cl = Cluster::start(3);
    cl.partition(2, true);
    // Wait until both sides noticed (idle timeout ~3 s).
    cl.node(0).wait_peers(&["node-2"], WAIT * 2);
    // The isolated node holds both others down: 1 of 3 alive is no majority, so it would not
    // take their dialogs over; the majority side would.
    wait_view(cl.node(2), WAIT * 2, "loses the majority", |v| {
        v["members"]["takeover_allowed"] == false && v["members"]["alive"] == 1
    });
    wait_view(cl.node(0), WAIT, "keeps the majority", |v| {
        v["members"]["takeover_allowed"] == true && v["members"]["alive"] == 2
    });
    let mut c1 = UdpClient::new(cl.sip(0));
    let mut c3 = UdpClient::new(cl.sip(2));
    c1.send(&publish(
        ALICE,
        c1.port(),
        "pa",
        1,
        "Expires: 600\r\n",
        &pidf(ALICE, "left", "open"),
    ));
    assert_eq!(c1.response("pa", "PUBLISH").status, 200);
    let bob = "sip:bob@example.com";
    c3.send(&publish(
        bob,
        c3.port(),
        "pb",
        1,
        "Expires: 600\r\n",
        &pidf(bob, "right", "open"),
    ));
    assert_eq!(c3.response("pb", "PUBLISH").status, 200);
    // While cut off, node 3 does not see node 1's publication.
    assert!(!fetch(&mut c3, ALICE, "during").contains("left"));

    let healed = Instant::now();
    cl.partition(2, false);
    for i in 0..3 {
        eventually(cl.sip(i), ALICE, WAIT * 3, |b| b.contains("id=\"left\""));
        eventually(cl.sip(i), bob, WAIT * 3, |b| b.contains("id=\"right\""));
    }
    eprintln!(
        "converged {:?} after the partition healed",
        healed.elapsed()
    );
    // Membership heals too: the isolated node rejoins (renewed) and every node sees all alive.
    for i in 0..3 {
        wait_view(cl.node(i), WAIT * 2, "all members alive again", |v| {
            v["members"]["alive"] == 3 && v["members"]["takeover_allowed"] == true
        });
    }
    eprintln!(
        "membership healed {:?} after the partition",
        healed.elapsed()
    );
}

#[test]
fn a_node_with_a_foreign_certificate_cannot_join() {
    let cl = Cluster::start(2);
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("other-ca");
    make_certs(&certs, &["node-9"]);
    let mut spec = NodeSpec::new("node-9", &certs, dir.path());
    spec.peers = vec![cl.relays[0].addr];
    let intruder = ClusterNode::start(&spec, "");
    let mut c = UdpClient::new(spec.sip_addr());
    c.send(&publish(
        ALICE,
        c.port(),
        "x",
        1,
        "Expires: 600\r\n",
        &pidf(ALICE, "intruder", "open"),
    ));
    assert_eq!(c.response("x", "PUBLISH").status, 200);
    std::thread::sleep(Duration::from_secs(2)); // give a wrongly accepted link time to deliver
    assert_eq!(cl.node(0).peers_up(), vec!["node-2".to_string()]);
    assert!(intruder.peers_up().is_empty());
    assert_eq!(
        intruder.get("/ready")["ready"],
        false,
        "not joined, not ready"
    );
    assert!(!fetch(&mut UdpClient::new(cl.sip(0)), ALICE, "f").contains("intruder"));
}

#[test]
fn a_surviving_node_takes_over_the_dialogs_of_a_dead_one() {
    let mut cl = Cluster::start_with(3, 2);
    let mut w = UdpClient::new(cl.sip(0));
    w.send(&subscribe(ALICE, w.port(), "tk", 1, "Expires: 600\r\n"));
    assert_eq!(w.response("tk", "SUBSCRIBE").status, 200);
    let mut last = w.notify("tk").cseq.seq;
    let mut p = UdpClient::new(cl.sip(1));
    p.send(&publish(
        ALICE,
        p.port(),
        "tk-p",
        1,
        "Expires: 600\r\n",
        &pidf(ALICE, "before", "open"),
    ));
    assert_eq!(p.response("tk-p", "PUBLISH").status, 200);
    let n = w.notify("tk");
    assert!(n.cseq.seq > last);
    last = n.cseq.seq;
    // The dialog's record reaches the other nodes before node 1 dies.
    cl.wait_subscriptions_replicated(1, 1);

    cl.nodes[0].take().unwrap().kill9();
    // Down after ~3 s, taken over after the 2 s grace: the new owner NOTIFYs at once.
    let n = w.try_notify("tk", WAIT * 2).unwrap_or_else(|| {
        panic!(
            "no NOTIFY from a node taking over; views: {} / {}",
            cl.node(1).get("/debug/cluster"),
            cl.node(2).get("/debug/cluster")
        )
    });
    assert!(
        n.cseq.seq > last,
        "CSeq continues: {} after {last}",
        n.cseq.seq
    );
    last = n.cseq.seq;
    let owner_port = n.vias[0].port;
    assert_ne!(owner_port, Some(cl.specs[0].sip), "not from the dead node");
    assert!(
        n.contact
            .as_ref()
            .is_some_and(|c| !c.uri.contains(&cl.specs[0].sip.to_string())),
        "Contact moves to the new owner"
    );

    // New state published anywhere reaches the watcher from the new owner, exactly once.
    p.send(&publish(
        ALICE,
        p.port(),
        "tk-p2",
        1,
        "Expires: 600\r\n",
        &pidf(ALICE, "after", "open"),
    ));
    assert_eq!(p.response("tk-p2", "PUBLISH").status, 200);
    let deadline = Instant::now() + WAIT;
    let mut seen = Vec::new();
    loop {
        let n = w.notify("tk");
        assert_eq!(n.vias[0].port, owner_port, "one node notifies the dialog");
        assert!(n.cseq.seq > last, "CSeq strictly increasing");
        last = n.cseq.seq;
        seen.push(n.cseq.seq);
        if String::from_utf8_lossy(&n.body).contains("id=\"after\"") {
            break;
        }
        assert!(Instant::now() < deadline, "the new state never arrived");
    }
    let extra = w.drain(Duration::from_millis(1500));
    assert!(
        !extra.iter().any(|m| matches!(m, presenced::sip::Message::Request(r) if String::from_utf8_lossy(&r.body).contains("after"))),
        "a second NOTIFY of the same change (two owners?)"
    );
    let taken: u64 = (1..3)
        .map(|i| {
            cl.node(i).get("/debug/cluster")["takeovers"]
                .as_u64()
                .unwrap_or(0)
        })
        .sum();
    assert_eq!(taken, 1, "exactly one surviving node took the dialog over");
}

#[test]
fn a_node_seeded_with_one_member_learns_the_others_and_a_killed_one_is_declared_down() {
    // node-1 has no seeds; node-2 and node-3 know only node-1.
    let mut cl = Cluster::start_seeded(3, 30, "", |i| if i == 0 { vec![] } else { vec![0] });
    // (`start_seeded` waited until every node has every other up on the link.)
    let learned = wait_view(cl.node(2), WAIT, "node-2 alive", |v| {
        membership_of(v, "node-2") == "alive"
    });
    let p = peer_view(cl.node(2), "node-2");
    assert_eq!(
        p["state"], "up",
        "node-3 dialled the member it learned: {p}"
    );
    assert_eq!(p["addr"], cl.relays[1].addr.to_string(), "{p}");
    let v = cl.node(2).get("/debug/cluster");
    assert_eq!(v["members"]["known"], 3, "{v}");
    assert_eq!(v["members"]["alive"], 3, "{v}");
    eprintln!("node-3 saw node-2 alive {learned:?} after the cluster formed");

    // kill -9 node-2: both survivors declare it down (SWIM), without waiting for the link.
    let killed = Instant::now();
    cl.nodes[1].take().unwrap().kill9();
    for i in [0, 2] {
        wait_view(cl.node(i), WAIT, "node-2 declared down", |v| {
            membership_of(v, "node-2") == "down"
        });
    }
    let took = killed.elapsed();
    eprintln!("a killed node was declared down by both survivors after {took:?}");
    assert!(
        took < Duration::from_secs(6),
        "declared down after {took:?} (expected ~2-3 s)"
    );
    for (i, other) in [(0, "node-3"), (2, "node-1")] {
        let v = cl.node(i).get("/debug/cluster");
        assert_eq!(v["members"]["takeover_allowed"], true, "2 of 3: {v}");
        assert_eq!(membership_of(&v, other), "alive", "no false positive: {v}");
    }
}
