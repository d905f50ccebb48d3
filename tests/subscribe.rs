//! SUBSCRIBE / NOTIFY (RFC 6665, SPEC §3.2) against a real node over UDP.

mod common;

use std::time::Duration;

use common::*;
use presenced::sip::{Message, Request};

const ALICE: &str = "sip:alice@example.com";

fn sub_state(n: &Request) -> String {
    n.header("Subscription-State").unwrap_or("").to_string()
}

#[test]
fn subscribe_gets_200_with_tag_contact_and_immediate_notify() {
    let node = TestNode::start("");
    let mut c = UdpClient::new(node.udp);
    let p = c.port();
    c.send(&publish(ALICE, p, "s-p", 1, "", &pidf(ALICE, "t1", "open")));
    c.response("s-p", "PUBLISH");
    c.send(&subscribe(
        ALICE,
        p,
        "s1",
        1,
        "Expires: 300\r\nEvent: presence;id=7\r\n",
    ));
    let r = c.response("s1", "SUBSCRIBE");
    assert_eq!(r.status, 200);
    assert!(r.to.tag.is_some(), "To-tag added");
    assert_eq!(r.header("Expires"), Some("300"));
    assert!(r.header("Contact").unwrap().contains(&node.udp.to_string()));
    let n = c.notify("s1");
    assert_eq!(n.method.as_str(), "NOTIFY");
    assert_eq!(n.uri, format!("sip:watcher@127.0.0.1:{p}"));
    assert_eq!(n.from.tag, r.to.tag, "NOTIFY From-tag = our To-tag");
    assert_eq!(n.to.tag.as_deref(), Some("ft-s1"));
    assert!(
        sub_state(&n).starts_with("active;expires="),
        "{}",
        sub_state(&n)
    );
    assert_eq!(n.max_forwards, Some(70));
    assert!(String::from_utf8_lossy(&n.body).contains("id=\"t1\""));
    assert!(n.contact.is_some());
}

#[test]
fn event_id_is_echoed_in_notify() {
    let node = TestNode::start("");
    let mut c = UdpClient::new(node.udp);
    let msg = subscribe(ALICE, c.port(), "id1", 1, "")
        .replace("Event: presence\r\n", "Event: presence;id=42\r\n");
    c.send(&msg);
    c.response("id1", "SUBSCRIBE");
    let n = c.notify("id1");
    let ev = n.event().unwrap().unwrap();
    assert_eq!(ev.id.as_deref(), Some("42"));
}

#[test]
fn in_dialog_refresh_unsubscribe_and_481() {
    let node = TestNode::start("");
    let mut c = UdpClient::new(node.udp);
    let p = c.port();
    c.send(&subscribe(ALICE, p, "d1", 1, "Expires: 300\r\n"));
    let tag = c.response("d1", "SUBSCRIBE").to.tag.unwrap();
    let n1 = c.notify("d1");
    c.send(&resubscribe(ALICE, p, "d1", 2, &tag, 600));
    let r = c.response("d1", "SUBSCRIBE");
    assert_eq!((r.status, r.header("Expires")), (200, Some("600")));
    let n2 = c.notify("d1");
    assert!(n2.cseq.seq > n1.cseq.seq, "NOTIFY CSeq increases");
    // Stale CSeq → 500 + Retry-After.
    c.send(&resubscribe(ALICE, p, "d1", 2, &tag, 600).replace("re;rport", "re2;rport"));
    let r = c.response("d1", "SUBSCRIBE");
    assert_eq!(r.status, 500);
    assert!(r.header("Retry-After").is_some());
    // Un-subscribe: 200, final NOTIFY terminated;reason=timeout.
    c.send(&resubscribe(ALICE, p, "d1", 3, &tag, 0));
    assert_eq!(c.response("d1", "SUBSCRIBE").status, 200);
    let n3 = c.notify("d1");
    assert!(
        sub_state(&n3).starts_with("terminated"),
        "{}",
        sub_state(&n3)
    );
    assert!(sub_state(&n3).contains("reason=timeout"));
    assert!(n3.cseq.seq > n2.cseq.seq);
    // The dialog is gone.
    std::thread::sleep(Duration::from_millis(100));
    c.send(&resubscribe(ALICE, p, "d1", 4, &tag, 300));
    assert_eq!(c.response("d1", "SUBSCRIBE").status, 481);
    // A tag we never issued.
    c.send(&resubscribe(ALICE, p, "d2", 1, "deadbeef-0", 300));
    assert_eq!(c.response("d2", "SUBSCRIBE").status, 481);
}

#[test]
fn fetch_gets_one_terminated_notify_with_state() {
    let node = TestNode::start("");
    let mut c = UdpClient::new(node.udp);
    let p = c.port();
    c.send(&publish(ALICE, p, "f-p", 1, "", &pidf(ALICE, "t1", "open")));
    c.response("f-p", "PUBLISH");
    c.send(&subscribe(ALICE, p, "f1", 1, "Expires: 0\r\n"));
    assert_eq!(c.response("f1", "SUBSCRIBE").status, 200);
    let n = c.notify("f1");
    assert!(sub_state(&n).starts_with("terminated"));
    assert!(String::from_utf8_lossy(&n.body).contains("id=\"t1\""));
    assert!(c.try_notify("f1", Duration::from_millis(500)).is_none());
}

#[test]
fn two_watchers_are_both_notified_with_increasing_cseq() {
    let node = TestNode::start("");
    let mut w1 = UdpClient::new(node.udp);
    let mut w2 = UdpClient::new(node.udp);
    w1.send(&subscribe(ALICE, w1.port(), "w1", 1, ""));
    w2.send(&subscribe(ALICE, w2.port(), "w2", 1, ""));
    w1.response("w1", "SUBSCRIBE");
    w2.response("w2", "SUBSCRIBE");
    let a1 = w1.notify("w1");
    let b1 = w2.notify("w2");
    let mut pubc = UdpClient::new(node.udp);
    pubc.send(&publish(
        ALICE,
        pubc.port(),
        "w-p",
        1,
        "",
        &pidf(ALICE, "t1", "open"),
    ));
    assert_eq!(pubc.response("w-p", "PUBLISH").status, 200);
    let a2 = w1.notify("w1");
    let b2 = w2.notify("w2");
    assert!(a2.cseq.seq > a1.cseq.seq && b2.cseq.seq > b1.cseq.seq);
    assert!(String::from_utf8_lossy(&a2.body).contains("open"));
    assert!(String::from_utf8_lossy(&b2.body).contains("open"));
}

#[test]
fn retransmitted_subscribe_is_processed_once() {
    let node = TestNode::start("");
    let mut c = UdpClient::new(node.udp);
    let msg = subscribe(ALICE, c.port(), "rs1", 1, "");
    c.send(&msg);
    let t1 = c.response("rs1", "SUBSCRIBE").to.tag;
    c.send(&msg);
    let t2 = c.response("rs1", "SUBSCRIBE").to.tag;
    assert_eq!(t1, t2, "the same response, not a second dialog");
    c.notify("rs1");
    assert!(
        c.try_notify("rs1", Duration::from_millis(500)).is_none(),
        "one dialog, one NOTIFY"
    );
}

#[test]
fn unanswered_notify_is_retransmitted() {
    let node = TestNode::start("");
    let mut c = UdpClient::new(node.udp);
    c.auto_answer = None;
    c.send(&subscribe(ALICE, c.port(), "un1", 1, ""));
    c.response("un1", "SUBSCRIBE");
    let first = c.notify("un1");
    let again = c.notify("un1");
    assert_eq!(
        first.cseq.seq, again.cseq.seq,
        "same transaction retransmitted"
    );
    assert_eq!(first.vias[0].branch, again.vias[0].branch);
}

#[test]
fn notify_answered_481_removes_the_subscription() {
    let node = TestNode::start("");
    let mut c = UdpClient::new(node.udp);
    let p = c.port();
    c.auto_answer = Some(481);
    c.send(&subscribe(ALICE, p, "g1", 1, ""));
    let tag = c.response("g1", "SUBSCRIBE").to.tag.unwrap();
    c.notify("g1");
    c.auto_answer = Some(200);
    std::thread::sleep(Duration::from_millis(200));
    c.send(&publish(ALICE, p, "g-p", 1, "", &pidf(ALICE, "t1", "open")));
    c.response("g-p", "PUBLISH");
    assert!(
        c.try_notify("g1", Duration::from_millis(700)).is_none(),
        "no NOTIFY after 481"
    );
    c.send(&resubscribe(ALICE, p, "g1", 2, &tag, 300));
    assert_eq!(c.response("g1", "SUBSCRIBE").status, 481);
}

#[test]
fn subscription_expires_with_terminated_notify() {
    let node = TestNode::start("");
    let mut c = UdpClient::new(node.udp);
    c.send(&subscribe(ALICE, c.port(), "se1", 1, "Expires: 1\r\n"));
    c.response("se1", "SUBSCRIBE");
    let n = c.notify("se1");
    assert!(sub_state(&n).starts_with("active"));
    let n = c.notify("se1");
    assert!(sub_state(&n).starts_with("terminated") && sub_state(&n).contains("timeout"));
}

#[test]
fn record_route_becomes_route_of_notify() {
    let node = TestNode::start("");
    let mut c = UdpClient::new(node.udp);
    let p = c.port();
    // The proxy is the client itself (loose router on our port).
    let rr = format!("Record-Route: <sip:127.0.0.1:{p};lr>, <sip:10.0.0.9;lr>\r\n");
    c.send(&subscribe(ALICE, p, "rr1", 1, &rr).replace(
        &format!("Contact: <sip:watcher@127.0.0.1:{p}>"),
        "Contact: <sip:watcher@192.0.2.1:5099>",
    ));
    c.response("rr1", "SUBSCRIBE");
    let n = c.notify("rr1");
    assert_eq!(
        n.uri, "sip:watcher@192.0.2.1:5099",
        "Request-URI = remote target"
    );
    let routes: Vec<&str> = n.header_values("Route").collect();
    let joined = routes.join(",");
    assert!(
        joined.contains(&format!("sip:127.0.0.1:{p};lr")) && joined.contains("sip:10.0.0.9;lr"),
        "{joined}"
    );
}

#[test]
fn every_via_is_copied_in_order_and_compact_headers_work() {
    let node = TestNode::start("");
    let mut c = UdpClient::new(node.udp);
    let p = c.port();
    let msg = format!(
        "OPTIONS sip:presence@127.0.0.1 SIP/2.0\r\n\
         v: SIP/2.0/UDP 127.0.0.1:{p};branch=z9hG4bKa1;rport\r\n\
         v: SIP/2.0/UDP 10.1.1.1:5060;branch=z9hG4bKb2, SIP/2.0/UDP 10.2.2.2;branch=z9hG4bKc3\r\n\
         f: <sip:x@example.com>;tag=1\r\nt: <sip:presence@127.0.0.1>\r\ni: compact1\r\n\
         CSeq: 1 OPTIONS\r\nl: 0\r\n\r\n"
    );
    c.send(&msg);
    let r = c.response("compact1", "OPTIONS");
    assert_eq!(r.status, 200);
    let branches: Vec<_> = r
        .vias
        .iter()
        .map(|v| v.branch.clone().unwrap_or_default())
        .collect();
    assert_eq!(branches, ["z9hG4bKa1", "z9hG4bKb2", "z9hG4bKc3"]);
    assert!(r.header("Allow").unwrap().contains("SUBSCRIBE"));
    assert!(r.header("Allow-Events").unwrap().contains("presence"));
    // Other methods → 405 with Allow.
    c.send(&request("INFO", ALICE, p, "m405", 1, "", ""));
    let r = c.response("m405", "INFO");
    assert_eq!(r.status, 405);
    assert!(r.header("Allow").is_some());
}

#[test]
fn sender_header_suppresses_the_publishers_own_notify() {
    let node = TestNode::start(
        "[sip]\nlisten = [\"udp:127.0.0.1:0\", \"tcp:127.0.0.1:0\"]\nsender_header = \"Sender\"\n",
    );
    let mut c = UdpClient::new(node.udp);
    let p = c.port();
    // The watcher is sip:watcher@example.com (From of `subscribe`).
    c.send(&subscribe(ALICE, p, "sh-w", 1, ""));
    c.response("sh-w", "SUBSCRIBE");
    c.notify("sh-w");
    c.send(&publish(
        ALICE,
        p,
        "sh-p",
        1,
        "Sender: <sip:watcher@example.com>\r\n",
        &pidf(ALICE, "t", "open"),
    ));
    c.response("sh-p", "PUBLISH");
    assert!(c.try_notify("sh-w", Duration::from_millis(700)).is_none());
    c.send(&publish(
        ALICE,
        p,
        "sh-p2",
        1,
        "Sender: <sip:other@example.com>\r\n",
        &pidf(ALICE, "u", "open"),
    ));
    c.response("sh-p2", "PUBLISH");
    assert!(c.try_notify("sh-w", Duration::from_secs(5)).is_some());
}

#[test]
fn unknown_event_subscribe_gets_489() {
    let node = TestNode::start("");
    let mut c = UdpClient::new(node.udp);
    c.send(&subscribe(ALICE, c.port(), "ue", 1, "").replace("Event: presence", "Event: foo"));
    let r = c.response("ue", "SUBSCRIBE");
    assert_eq!(r.status, 489);
    assert!(matches!(
        c.drain(Duration::from_millis(300)).first(),
        None | Some(Message::Response(_))
    ));
}

/// Fuzzing (F6): a Contact that is not a URI we would accept as a Request-URI ourselves is
/// refused, rather than used as the Request-URI of NOTIFYs strict clients reject.
#[test]
fn a_malformed_contact_gets_400() {
    let node = TestNode::start("");
    let mut c = UdpClient::new(node.udp);
    let p = c.port();
    let msg = subscribe(ALICE, p, "bad-contact", 1, "").replace(
        &format!("<sip:watcher@127.0.0.1:{p}>"),
        &format!("<sip:watch{{r7@127.0.0.1:{p}>"),
    );
    assert!(msg.contains("watch{r7"), "{msg}");
    c.send(&msg);
    let r = c.response("bad-contact", "SUBSCRIBE");
    assert_eq!((r.status, r.reason.as_str()), (400, "Malformed Contact"));
    assert!(c
        .try_notify("bad-contact", Duration::from_millis(300))
        .is_none());
}

/// A watcher only ever receives the state of the presentity it subscribed to (issue #8,
/// security): Bob's publications never reach Alice's watcher, even on the same node and
/// shard-mates; a later change of Alice is the very next NOTIFY it gets.
#[test]
fn a_watcher_never_receives_another_presentitys_state() {
    const BOB: &str = "sip:bob@example.com";
    let node = TestNode::start("");
    let mut w = UdpClient::new(node.udp);
    w.send(&subscribe(ALICE, w.port(), "iso-w", 1, ""));
    assert_eq!(w.response("iso-w", "SUBSCRIBE").status, 200);
    w.notify("iso-w");
    let mut p = UdpClient::new(node.udp);
    let pp = p.port();
    for i in 0..20 {
        let cid = format!("iso-b{i}");
        p.send(&publish(
            BOB,
            pp,
            &cid,
            1,
            "",
            &pidf(BOB, &format!("bob-secret-{i}"), "open"),
        ));
        assert_eq!(p.response(&cid, "PUBLISH").status, 200);
    }
    p.send(&publish(
        ALICE,
        pp,
        "iso-a",
        1,
        "",
        &pidf(ALICE, "alice-tuple", "open"),
    ));
    assert_eq!(p.response("iso-a", "PUBLISH").status, 200);
    let n = w.notify("iso-w");
    let body = String::from_utf8_lossy(&n.body);
    assert!(body.contains("alice-tuple"), "{body}");
    assert!(
        !body.contains("bob-secret") && !body.contains(BOB),
        "{body}"
    );
}
