//! The owner of a dialog returns after another node took it over: ownership is settled
//! without two nodes notifying the dialog (issue #6, "when the owner returns").

use super::*;

#[test]
fn a_returning_owner_never_notifies_a_dialog_taken_over_meanwhile() {
    // Write-through, so the dialog is in node 1's store when it is killed and comes back
    // with it.
    let mut cl = Cluster::start_extra(3, 2, "[presence]\nsubs_db_mode = 1\n");
    let (mut w, mut last) = cl.watch_alice(0, "ret");
    cl.publish_alice(1, "ret-1", "before");
    last = last.max(w.notify("ret").cseq.seq);
    cl.wait_subscriptions_replicated(1, 1);

    let spec = cl.nodes[0].take().unwrap().kill9();
    let n = w
        .try_notify("ret", WAIT * 2)
        .expect("a surviving node takes the dialog over and notifies");
    let owner_port = n.vias[0].port;
    assert_ne!(owner_port, Some(spec.sip));
    assert!(n.cseq.seq > last);
    last = n.cseq.seq;
    // A change while node 1 is away: node 1's stored copy of the dialog is now stale.
    cl.publish_alice(1, "ret-2", "while-away");
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
    cl.publish_alice(0, "ret-3", "back");
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

#[test]
fn an_isolated_owner_holds_its_notifies_while_the_majority_takes_over() {
    let cl = Cluster::start_with(3, 2);
    let (mut w, mut last) = cl.watch_alice(0, "iso");
    cl.publish_alice(1, "iso-1", "before");
    last = last.max(w.notify("iso").cseq.seq);
    cl.wait_subscriptions_replicated(1, 1);

    cl.partition(0, true);
    let isolated_port = Some(cl.specs[0].sip);
    // The majority declares node 1 down and, after the 2 s grace, takes the dialog over.
    let n = w
        .try_notify("iso", WAIT * 3)
        .expect("the majority takes the dialog over and notifies");
    assert_ne!(n.vias[0].port, isolated_port, "from the majority side");
    let owner_port = n.vias[0].port;
    assert!(n.cseq.seq > last);
    last = n.cseq.seq;
    let v = cl.node(0).get("/debug/cluster");
    assert_eq!(v["members"]["takeover_allowed"], false, "{v}");
    assert_eq!(v["settled"], false, "the isolated node is fenced: {v}");

    // A change published on the isolated side: node 1 still serves the dialog but must not
    // NOTIFY it (the majority owns it now).
    cl.publish_alice(0, "iso-2", "isolated-side");
    for m in w.drain(Duration::from_secs(2)) {
        if let presenced::sip::Message::Request(r) = m {
            assert_ne!(
                r.vias[0].port,
                isolated_port,
                "the isolated node notified: {}",
                String::from_utf8_lossy(&r.body)
            );
        }
    }

    cl.partition(0, false);
    let deadline = Instant::now() + WAIT * 3;
    loop {
        let v = cl.node(0).get("/debug/cluster");
        if v["settled"] == true && v["owned_here"] == 0 && v["members"]["takeover_allowed"] == true
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "node 1 never settled after the heal: {v}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Healed: the isolated side's publication reaches the watcher from the owner only, and
    // the old owner stays silent.
    let deadline = Instant::now() + WAIT;
    loop {
        let n = w.notify("iso");
        assert_eq!(n.vias[0].port, owner_port, "one notifier after the heal");
        assert!(n.cseq.seq > last, "CSeq strictly increasing");
        last = n.cseq.seq;
        if String::from_utf8_lossy(&n.body).contains("isolated-side") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the isolated side's state never arrived"
        );
    }
    for m in w.drain(Duration::from_millis(1500)) {
        if let presenced::sip::Message::Request(r) = m {
            assert_eq!(
                r.vias[0].port, owner_port,
                "a second notifier after the heal"
            );
        }
    }
}
