//! The owner of a dialog returns after another node took it over: ownership is settled
//! without two nodes notifying the dialog (issue #6, "when the owner returns").

use super::*;

#[test]
fn a_returning_owner_never_notifies_a_dialog_taken_over_meanwhile() {
    // Write-through, so the dialog is in node 1's store when it is killed and comes back
    // with it.
    let mut cl = Cluster::start_extra(3, 2, "[presence]\nsubs_db_mode = 1\n");
    let mut w = UdpClient::new(cl.sip(0));
    w.send(&subscribe(ALICE, w.port(), "ret", 1, "Expires: 600\r\n"));
    assert_eq!(w.response("ret", "SUBSCRIBE").status, 200);
    let mut last = w.notify("ret").cseq.seq;
    let mut p = UdpClient::new(cl.sip(1));
    let publish_at = |p: &mut UdpClient, call: &str, note: &str| {
        p.send(&publish(
            ALICE,
            p.port(),
            call,
            1,
            "Expires: 600\r\n",
            &pidf(ALICE, note, "open"),
        ));
        assert_eq!(p.response(call, "PUBLISH").status, 200);
    };
    publish_at(&mut p, "ret-1", "before");
    last = last.max(w.notify("ret").cseq.seq);
    let deadline = Instant::now() + WAIT;
    while cl.node(1).get("/debug/cluster")["subscriptions"] != 1 {
        assert!(
            Instant::now() < deadline,
            "the subscription was not replicated"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    let spec = cl.nodes[0].take().unwrap().kill9();
    let n = w
        .try_notify("ret", WAIT * 2)
        .expect("a surviving node takes the dialog over and notifies");
    let owner_port = n.vias[0].port;
    assert_ne!(owner_port, Some(spec.sip));
    assert!(n.cseq.seq > last);
    last = n.cseq.seq;
    // A change while node 1 is away: node 1's stored copy of the dialog is now stale.
    publish_at(&mut p, "ret-2", "while-away");
    loop {
        let n = w.notify("ret");
        assert_eq!(n.vias[0].port, owner_port);
        assert!(n.cseq.seq > last, "CSeq strictly increasing");
        last = n.cseq.seq;
        if String::from_utf8_lossy(&n.body).contains("while-away") {
            break;
        }
    }

    // Node 1 comes back with the dialog in its store. It catches up the publication it
    // missed — which must not make it NOTIFY the dialog it no longer owns.
    cl.nodes[0] = Some(ClusterNode::start(&spec, "[presence]\nsubs_db_mode = 1\n"));
    let deadline = Instant::now() + WAIT * 2;
    loop {
        let v = cl.node(0).get("/debug/cluster");
        if v["settled"] == true && v["publications"] == 2 {
            assert_eq!(v["owned_here"], 0, "ownership stays with the taker: {v}");
            break;
        }
        assert!(Instant::now() < deadline, "node 1 never settled: {v}");
        std::thread::sleep(Duration::from_millis(100));
    }
    // And a change published at the returning node reaches the watcher once, from the taker.
    let mut p1 = UdpClient::new(cl.sip(0));
    publish_at(&mut p1, "ret-3", "back");
    let deadline = Instant::now() + WAIT;
    loop {
        let n = w.notify("ret");
        assert_eq!(
            n.vias[0].port,
            owner_port,
            "a NOTIFY from a node that does not own the dialog: {}",
            String::from_utf8_lossy(&n.body)
        );
        assert!(n.cseq.seq > last, "CSeq strictly increasing");
        last = n.cseq.seq;
        if String::from_utf8_lossy(&n.body).contains("id=\"back\"") {
            break;
        }
        assert!(Instant::now() < deadline, "the new state never arrived");
    }
    let extra = w.drain(Duration::from_millis(1500));
    for m in &extra {
        if let presenced::sip::Message::Request(r) = m {
            assert_eq!(r.vias[0].port, owner_port, "a second notifier");
        }
    }
    // Node 1 forgot the dialog: it serves no subscription.
    let deadline = Instant::now() + WAIT;
    while cl.node(0).get("/ready")["subscriptions"] != 0 {
        assert!(
            Instant::now() < deadline,
            "node 1 still holds the dialog: {}",
            cl.node(0).get("/ready")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
