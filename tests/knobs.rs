//! Kamailio parameters that change SUBSCRIBE/PUBLISH behaviour, end to end over UDP.

mod common;

use std::time::Duration;

use common::*;

const ALICE: &str = "sip:alice@example.com";

#[test]
fn sip_uri_match_decides_whether_user_case_matters() {
    for (mode, same) in [(0, false), (1, true)] {
        let node = TestNode::start(&format!("[presence]\nsip_uri_match = {mode}\n"));
        let mut c = UdpClient::new(node.udp);
        let p = c.port();
        c.send(&publish(
            "sip:Alice@Example.com",
            p,
            "u-p",
            1,
            "",
            &pidf(ALICE, "t1", "open"),
        ));
        assert_eq!(c.response("u-p", "PUBLISH").status, 200);
        c.send(&subscribe("sip:alice@example.com", p, "u-w", 1, ""));
        c.response("u-w", "SUBSCRIBE");
        let n = c.notify("u-w");
        assert_eq!(!n.body.is_empty(), same, "sip_uri_match = {mode}");
    }
}

#[test]
fn watcher_uri_header_replaces_from_as_watcher() {
    let node = TestNode::start(
        "[sip]\nlisten = [\"udp:127.0.0.1:0\", \"tcp:127.0.0.1:0\"]\nwatcher_uri_header = \"P-Asserted-Identity\"\nsender_header = \"Sender\"\n",
    );
    let mut c = UdpClient::new(node.udp);
    let p = c.port();
    // The watcher is the asserted identity, so a PUBLISH whose Sender is that identity is
    // not notified to it — proof that the header, not From, named the watcher.
    c.send(&subscribe(
        ALICE,
        p,
        "wh",
        1,
        "P-Asserted-Identity: <sip:carol@example.com>\r\n",
    ));
    c.response("wh", "SUBSCRIBE");
    c.notify("wh");
    c.send(&publish(
        ALICE,
        p,
        "wh-p",
        1,
        "Sender: <sip:carol@example.com>\r\n",
        &pidf(ALICE, "t", "open"),
    ));
    c.response("wh-p", "PUBLISH");
    assert!(c.try_notify("wh", Duration::from_millis(700)).is_none());
    c.send(&publish(
        ALICE,
        p,
        "wh-p2",
        1,
        "Sender: <sip:watcher@example.com>\r\n",
        &pidf(ALICE, "u", "open"),
    ));
    c.response("wh-p2", "PUBLISH");
    assert!(
        c.try_notify("wh", Duration::from_secs(5)).is_some(),
        "From is not the watcher"
    );
}

#[test]
fn delete_same_subs_replaces_the_older_dialog() {
    let node = TestNode::start("[presence]\ndelete_same_subs = 1\n");
    let mut c = UdpClient::new(node.udp);
    let p = c.port();
    c.send(&subscribe(ALICE, p, "same", 1, ""));
    let tag1 = c.response("same", "SUBSCRIBE").to.tag.unwrap();
    c.notify("same");
    // Same Call-ID, new From-tag: a new dialog that replaces the old one.
    let again = subscribe(ALICE, p, "same", 2, "").replace("tag=ft-same", "tag=ft-same-2");
    c.send(&again);
    let tag2 = c.response("same", "SUBSCRIBE").to.tag.unwrap();
    assert_ne!(tag1, tag2);
    c.notify("same");
    std::thread::sleep(Duration::from_millis(200));
    c.send(&resubscribe(ALICE, p, "same", 3, &tag1, 300));
    assert_eq!(
        c.response("same", "SUBSCRIBE").status,
        481,
        "the old dialog is gone"
    );

    let node = TestNode::start("");
    let mut c = UdpClient::new(node.udp);
    let p = c.port();
    c.send(&subscribe(ALICE, p, "keep", 1, ""));
    let tag1 = c.response("keep", "SUBSCRIBE").to.tag.unwrap();
    c.notify("keep");
    c.send(&subscribe(ALICE, p, "keep", 2, "").replace("tag=ft-keep", "tag=ft-keep-2"));
    c.response("keep", "SUBSCRIBE");
    c.notify("keep");
    c.send(&resubscribe(ALICE, p, "keep", 3, &tag1, 300));
    assert_eq!(
        c.response("keep", "SUBSCRIBE").status,
        200,
        "both kept by default"
    );
}

#[test]
fn priority_header_orders_the_composed_document() {
    let node = TestNode::start("[presence]\nxavp_cfg = \"X-Pres\"\nretrieve_order = 1\nretrieve_order_by = \"priority desc\"\n");
    let mut c = UdpClient::new(node.udp);
    let p = c.port();
    c.send(&publish(
        ALICE,
        p,
        "pr1",
        1,
        "X-Pres: priority=10\r\n",
        &pidf(ALICE, "high", "open"),
    ));
    c.response("pr1", "PUBLISH");
    c.send(&publish(
        ALICE,
        p,
        "pr2",
        1,
        "X-Pres: priority=1\r\n",
        &pidf(ALICE, "low", "closed"),
    ));
    c.response("pr2", "PUBLISH");
    c.send(&subscribe(ALICE, p, "pr-w", 1, ""));
    c.response("pr-w", "SUBSCRIBE");
    let body = String::from_utf8_lossy(&c.notify("pr-w").body).to_string();
    let (h, l) = (
        body.find("id=\"high\"").unwrap(),
        body.find("id=\"low\"").unwrap(),
    );
    assert!(h < l, "priority 10 first: {body}");
}

#[test]
fn send_fast_notify_off_skips_the_empty_first_notify() {
    let node = TestNode::start("[presence]\nsend_fast_notify = 0\n");
    let mut c = UdpClient::new(node.udp);
    let p = c.port();
    c.send(&subscribe(ALICE, p, "sf", 1, ""));
    assert_eq!(c.response("sf", "SUBSCRIBE").status, 200);
    assert!(c.try_notify("sf", Duration::from_millis(700)).is_none());
    c.send(&publish(ALICE, p, "sf-p", 1, "", &pidf(ALICE, "t", "open")));
    c.response("sf-p", "PUBLISH");
    assert!(!c.notify("sf").body.is_empty());
}

#[test]
fn full_mailbox_is_answered_503_with_retry_after() {
    // A mailbox of 1 with many requests at once: some must be refused with 503, none lost.
    let node = TestNode::start("[limits]\nmailbox_size = 1\n[presence]\npres_htable_size = 1\n");
    let mut c = UdpClient::new(node.udp);
    let p = c.port();
    // Small enough that the kernel socket buffers (about 200 KB) hold the burst.
    let n = 100;
    for i in 0..n {
        c.send(&publish(
            &format!("sip:u{i}@example.com"),
            p,
            &format!("mb{i}"),
            1,
            "",
            &pidf(ALICE, "t", "open"),
        ));
    }
    let (mut ok, mut busy) = (0, 0);
    for i in 0..n {
        let r = c.response(&format!("mb{i}"), "PUBLISH");
        match r.status {
            200 => ok += 1,
            503 => {
                assert!(r.header("Retry-After").is_some());
                busy += 1;
            }
            s => panic!("unexpected {s}"),
        }
    }
    assert_eq!(ok + busy, n, "every request answered");
    assert!(ok > 0, "some accepted");
    assert!(
        busy > 0,
        "mailbox of 1 must overflow with {n} requests in flight"
    );
}

#[test]
fn subs_remove_match_decides_which_notify_replies_count() {
    // A 481 whose Call-ID does not match the dialog: with subs_remove_match = 0 the To-tag
    // (our From-tag) alone matches and the subscription is removed; with 1 the whole dialog
    // must match, so the reply is ignored and the subscription stays.
    //
    // Every Arbiter reads the socket, so datagrams sent back to back may be handled in
    // either order (as UDP may deliver them): each step waits for the forged reply's effect
    // before the next datagram leaves.
    let has_subscribers = |node: &TestNode| {
        node.rpc(
            "presence.has_subscribers",
            serde_json::json!([ALICE, "presence"]),
        )
    };
    for (mode, removed) in [(0, true), (1, false)] {
        let node = TestNode::start(&format!(
            "[presence]\nsubs_remove_match = {mode}\n[admin]\nlisten = \"127.0.0.1:0\"\n"
        ));
        let mut c = UdpClient::new(node.udp);
        c.auto_answer = None;
        let p = c.port();
        c.send(&subscribe(ALICE, p, "rm", 1, ""));
        let tag = c.response("rm", "SUBSCRIBE").to.tag.unwrap();
        let n = c.notify("rm");
        assert_eq!(has_subscribers(&node), serde_json::json!(true));
        let forged = answer(&n, 481).replace("Call-ID: rm", "Call-ID: someone-else");
        c.sock.send_to(forged.as_bytes(), c.server).unwrap();
        if removed {
            // The forged reply ended the subscription.
            assert!(
                eventually(WAIT, || has_subscribers(&node) == serde_json::json!(false)),
                "subs_remove_match = {mode}: the forged 481 did not remove the subscription"
            );
        } else {
            // Ignored: the NOTIFY transaction stays open and the NOTIFY is retransmitted
            // (Timer E); then the real 200 ends it.
            let again = c.notify("rm");
            assert_eq!(
                again.cseq.seq, n.cseq.seq,
                "a retransmission of the same NOTIFY"
            );
            c.sock
                .send_to(answer(&n, 200).as_bytes(), c.server)
                .unwrap();
        }
        c.auto_answer = Some(200);
        c.send(&resubscribe(ALICE, p, "rm", 2, &tag, 300));
        let status = c.response("rm", "SUBSCRIBE").status;
        assert_eq!(
            status == 481,
            removed,
            "subs_remove_match = {mode}: got {status}"
        );
    }
}
