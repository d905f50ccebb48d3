//! End-to-end check that duplicated and reordered replication messages leave a node's state
//! unchanged (issue #6; the merge laws themselves are property-tested in `src/cluster/tests`).
//!
//! One real node runs with the cluster enabled; a **fake peer** inside the test is a real
//! [`Link`] (QUIC, mutual TLS, a `presenced cert create-node` certificate from the node's CA)
//! that dials it and then sends hand-made `Frame::Pub(SyncMsg::Delta(..))` records whose HLC
//! stamps the test mints with an [`HlcClock`] of its own. A SIP watcher at the node sees every
//! change the node applies as a NOTIFY; after each step a newer "sentinel" write proves, by
//! being the very next NOTIFY, that the stale or duplicated messages before it produced none.
//!
//! Invariants: everything is on 127.0.0.1; every wait is bounded; the fake peer's runtime
//! thread is stopped and joined on drop, the node process is killed on drop (harness).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::mpsc as std_mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use presenced::clock;
use presenced::cluster::hlc::{HlcClock, Stamp};
use presenced::cluster::link::{Link, LinkConfig, LinkEvent, LinkHandle};
use presenced::cluster::merge::{PubId, PubKey, PubRecord, State, Versioned};
use presenced::cluster::sync::SyncMsg;
use presenced::cluster::tls::TlsMaterial;
use presenced::cluster::wire::Frame;
use presenced::ids::{ETag, EventKey, NodeId, PresentityUri, UriMatch};
use presenced::presence::package::Body;
use presenced::presence::publication::Publication;
use serde_json::Value;

use crate::common::*;
use crate::harness::*;

const ALICE: &str = "sip:alice@example.com";
const FAKE: &str = "fake-peer";
const NODE: &str = "node-1";

/// A peer made of the crate's own QUIC link, driven by a current-thread runtime on a thread
/// of its own (so keep-alives run while the test blocks on SIP sockets).
struct FakePeer {
    link: Option<LinkHandle>,
    events: std_mpsc::Receiver<LinkEvent>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl FakePeer {
    /// Starts a link as node `FAKE` with its certificate under `certs`, dialing `seed`.
    fn start(certs: &Path, seed: SocketAddr) -> FakePeer {
        let tls = TlsMaterial::load(
            &certs.join("ca.crt"),
            &certs.join(format!("{FAKE}.crt")),
            &certs.join(format!("{FAKE}.key")),
        )
        .expect("the fake peer's certificate loads");
        let mut config = LinkConfig::new(SocketAddr::from(([127, 0, 0, 1], 0)), tls);
        config.seeds = vec![seed];
        let (ev_tx, events) = std_mpsc::channel();
        let (handle_tx, handle_rx) = std_mpsc::channel();
        let (stop, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a tokio runtime");
            rt.block_on(async move {
                let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
                let link = Link::start(config, NodeId::new(FAKE), tx).expect("the link starts");
                let _ = handle_tx.send(link.clone());
                loop {
                    tokio::select! {
                        _ = &mut stop_rx => break,
                        ev = rx.recv() => match ev {
                            Some(ev) => { let _ = ev_tx.send(ev); }
                            None => break,
                        },
                    }
                }
                link.shutdown().await;
            });
        });
        let link = handle_rx
            .recv_timeout(WAIT)
            .expect("the fake peer's link started");
        FakePeer {
            link: Some(link),
            events,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// Waits for the link to report `peer` up.
    fn wait_up(&self, peer: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(LinkEvent::Up { peer: p, .. }) if p.as_str() == peer => return,
                Ok(_) => continue,
                Err(e) => panic!("{peer} never came up at the fake peer: {e}"),
            }
        }
    }

    /// Sends one delta frame of `records` to the node (queued in order on the one stream).
    fn delta(&self, records: Vec<PubRecord>) {
        let link = self.link.as_ref().expect("link running");
        link.send(&NodeId::new(NODE), &Frame::Pub(SyncMsg::Delta(records)))
            .expect("the delta is queued for the node");
    }
}

impl Drop for FakePeer {
    fn drop(&mut self) {
        drop(self.link.take());
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The key of one publication lineage of ALICE's presence.
fn key(lineage: &str) -> PubKey {
    PubKey {
        uri: PresentityUri::parse(ALICE, UriMatch::CaseSensitive).expect("valid URI"),
        event: EventKey::new("presence"),
        id: PubId(ETag::from_wire(lineage)),
    }
}

/// A live version of `key` under ETag `etag`: a PIDF document with one tuple.
fn live(key: &PubKey, stamp: &Stamp, etag: &str, tuple: &str, basic: &str) -> PubRecord {
    let now = clock::now();
    PubRecord {
        key: key.clone(),
        version: Versioned {
            stamp: stamp.clone(),
            state: State::Live(Publication {
                etag: ETag::from_wire(etag),
                body: Body::new(
                    "application/pidf+xml",
                    pidf(ALICE, tuple, basic).into_bytes(),
                ),
                expires_at: now.plus_secs(3600),
                received_at: now,
                priority: 0,
                origin: NodeId::new(FAKE),
            }),
        },
    }
}

/// A removal of `key` (tombstone held two hours).
fn removed(key: &PubKey, stamp: &Stamp) -> PubRecord {
    PubRecord {
        key: key.clone(),
        version: Versioned {
            stamp: stamp.clone(),
            state: State::Removed {
                until: clock::now().plus_secs(7200),
            },
        },
    }
}

/// The body of the next NOTIFY of dialog `call`.
fn next_doc(w: &mut UdpClient, call: &str) -> String {
    String::from_utf8_lossy(&w.notify(call).body).into_owned()
}

/// `(etag, body)` of every publication the node holds for ALICE's presence.
fn held(node: &ClusterNode) -> Vec<(String, String)> {
    let v = node.get(&format!("/debug/presentities/{ALICE}/presence"));
    v["publications"]
        .as_array()
        .unwrap_or_else(|| panic!("no publication list in {v}"))
        .iter()
        .map(|p| {
            let s = |f: &str| p[f].as_str().unwrap_or_default().to_string();
            (s("etag"), s("body"))
        })
        .collect()
}

/// The fake peer as the node's `/debug/cluster` shows it.
fn fake_in_view(view: &Value) -> Value {
    view["peers"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["id"] == FAKE).cloned())
        .unwrap_or_else(|| panic!("{FAKE} not in {view}"))
}

#[test]
fn duplicated_and_reordered_replication_messages_leave_state_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    make_certs(&certs, &[NODE, FAKE]);
    let spec = NodeSpec::new(NODE, &certs, dir.path());
    let node = ClusterNode::start(&spec, "");
    let peer = FakePeer::start(&certs, spec.quic_addr());
    peer.wait_up(NODE, WAIT);
    node.wait_peers(&[FAKE], WAIT);

    let mut w = UdpClient::new(spec.sip_addr());
    w.send(&subscribe(ALICE, w.port(), "rw", 1, "Expires: 600\r\n"));
    assert_eq!(w.response("rw", "SUBSCRIBE").status, 200);
    let first = next_doc(&mut w, "rw");
    assert!(!first.contains("tuple"), "nothing published yet: {first}");

    // Every stamp from one clock, so each is strictly newer than the one minted before.
    let mut hlc = HlcClock::new(NodeId::new(FAKE), HlcClock::DEFAULT_MAX_DRIFT);
    let mut stamp = || hlc.stamp(clock::now());
    let (t_v1, t_v2, t_v3, t_zombie, t_rm1) = (stamp(), stamp(), stamp(), stamp(), stamp());
    let (t_l3_live, t_l3_rm, t_s1, t_s2) = (stamp(), stamp(), stamp(), stamp());
    let (l1, l2, l3) = (key("l1-e1"), key("l2-e1"), key("l3-e1"));
    let v1 = live(&l1, &t_v1, "l1-e1", "v1", "open");
    let v2 = live(&l1, &t_v2, "l1-e2", "v2", "closed");

    // (a) Reordered: v2 (newer, closed) arrives before v1 (older, open).
    peer.delta(vec![v2.clone()]);
    peer.delta(vec![v1]);
    let doc = next_doc(&mut w, "rw");
    assert!(
        doc.contains("id=\"v2\"") && doc.contains("closed") && !doc.contains("open"),
        "first change is v2, closed: {doc}"
    );
    assert_eq!(
        held(&node),
        vec![("l1-e2".to_string(), pidf(ALICE, "v2", "closed"))]
    );

    // (b) Duplicated: v2 again. Then the sentinel v3 must be the very next NOTIFY: neither
    // the stale v1 nor the duplicate produced one.
    peer.delta(vec![v2]);
    peer.delta(vec![live(&l1, &t_v3, "l1-e3", "v3", "open")]);
    let doc = next_doc(&mut w, "rw");
    assert!(
        doc.contains("id=\"v3\"") && !doc.contains("id=\"v1\"") && !doc.contains("id=\"v2\""),
        "the NOTIFY after v2's is v3's: {doc}"
    );
    assert_eq!(
        held(&node),
        vec![("l1-e3".to_string(), pidf(ALICE, "v3", "open"))]
    );

    // (c) A removal newer than v3, then a live write older than the removal (though newer
    // than v3): the lineage stays removed.
    peer.delta(vec![removed(&l1, &t_rm1)]);
    let doc = next_doc(&mut w, "rw");
    assert!(!doc.contains("tuple"), "L1 removed: {doc}");
    assert!(held(&node).is_empty(), "nothing held after the removal");
    peer.delta(vec![live(&l1, &t_zombie, "l1-e4", "zombie", "open")]);
    peer.delta(vec![live(&l2, &t_s1, "l2-e1", "s1", "open")]);
    let doc = next_doc(&mut w, "rw");
    assert!(
        doc.contains("id=\"s1\"") && !doc.contains("zombie"),
        "the next NOTIFY is the sentinel's, without the stale write: {doc}"
    );
    assert_eq!(
        held(&node),
        vec![("l2-e1".to_string(), pidf(ALICE, "s1", "open"))]
    );

    // (d) A removal that overtakes its own creation (both in one frame, reordered): the
    // creation arrives dead; the sentinel (a modify of L2) is the next NOTIFY.
    peer.delta(vec![
        removed(&l3, &t_l3_rm),
        live(&l3, &t_l3_live, "l3-e1", "l3", "open"),
    ]);
    peer.delta(vec![live(&l2, &t_s2, "l2-e2", "s2", "closed")]);
    let doc = next_doc(&mut w, "rw");
    assert!(
        doc.contains("id=\"s2\"") && !doc.contains("id=\"s1\"") && !doc.contains("id=\"l3\""),
        "the next NOTIFY is the modify of L2, without L3: {doc}"
    );
    assert_eq!(
        held(&node),
        vec![("l2-e2".to_string(), pidf(ALICE, "s2", "closed"))]
    );

    // The node's replicated view agrees: exactly the winning writes were applied (v2, v3,
    // L1's removal, L2 twice, L3's removal), one publication is live, nothing was refused.
    let view = node.get("/debug/cluster");
    let fake = fake_in_view(&view);
    assert_eq!(fake["state"], "up", "{fake}");
    assert_eq!(
        fake["applied_from"], 6,
        "records applied from the fake peer: {fake}"
    );
    assert_eq!(view["publications"], 1, "{view}");
    assert_eq!(view["refused_skew"], 0, "{view}");
}
