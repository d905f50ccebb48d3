//! PUBLISH (RFC 3903, SPEC §3.1) against a real node over UDP.

mod common;

use std::time::Duration;

use common::*;
use presenced::sip::Message;

const ALICE: &str = "sip:alice@example.com";

#[test]
fn initial_publish_gets_200_with_etag_and_expires() {
    let node = TestNode::start("");
    let mut c = UdpClient::new(node.udp);
    c.send(&publish(
        ALICE,
        c.port(),
        "p1",
        1,
        "Expires: 120\r\n",
        &pidf(ALICE, "t1", "open"),
    ));
    let r = c.response("p1", "PUBLISH");
    assert_eq!(r.status, 200);
    let etag = r.header("SIP-ETag").expect("SIP-ETag");
    assert_eq!(etag.len(), 32);
    assert_eq!(r.header("Expires"), Some("120"));
    assert_eq!(
        r.header("Contact"),
        Some(format!("<sip:{}>", node.udp).as_str()),
        "server_address"
    );
    // Every mandatory header echoed.
    assert_eq!(r.vias.len(), 1);
    assert_eq!(r.cseq.seq, 1);
}

#[test]
fn missing_or_unknown_event_gets_489_with_allow_events() {
    let node = TestNode::start("");
    let mut c = UdpClient::new(node.udp);
    let body = pidf(ALICE, "t1", "open");
    let msg = request(
        "PUBLISH",
        ALICE,
        c.port(),
        "e1",
        1,
        "Content-Type: application/pidf+xml\r\n",
        &body,
    );
    c.send(&msg);
    let r = c.response("e1", "PUBLISH");
    assert_eq!(r.status, 489);
    assert!(r.header("Allow-Events").unwrap().contains("presence"));
    let msg = request(
        "PUBLISH",
        ALICE,
        c.port(),
        "e2",
        1,
        "Event: nonsense\r\nContent-Type: application/pidf+xml\r\n",
        &body,
    );
    c.send(&msg);
    assert_eq!(c.response("e2", "PUBLISH").status, 489);
}

#[test]
fn expires_is_capped_and_min_expires_gives_423_or_raise() {
    let node = TestNode::start("[presence]\nmax_expires = 600\nmin_expires = 60\n");
    let mut c = UdpClient::new(node.udp);
    let body = pidf(ALICE, "t1", "open");
    c.send(&publish(
        ALICE,
        c.port(),
        "x1",
        1,
        "Expires: 99999\r\n",
        &body,
    ));
    let r = c.response("x1", "PUBLISH");
    assert_eq!((r.status, r.header("Expires")), (200, Some("600")));
    c.send(&publish(ALICE, c.port(), "x2", 1, "Expires: 10\r\n", &body));
    let r = c.response("x2", "PUBLISH");
    assert_eq!((r.status, r.header("Min-Expires")), (423, Some("60")));
    // Absent Expires: the package default (3600) capped to max_expires.
    c.send(&publish(ALICE, c.port(), "x3", 1, "", &body));
    assert_eq!(c.response("x3", "PUBLISH").header("Expires"), Some("600"));

    let node = TestNode::start("[presence]\nmin_expires = 60\nmin_expires_action = 2\n");
    let mut c = UdpClient::new(node.udp);
    c.send(&publish(ALICE, c.port(), "x4", 1, "Expires: 10\r\n", &body));
    let r = c.response("x4", "PUBLISH");
    assert_eq!((r.status, r.header("Expires")), (200, Some("60")));
}

#[test]
fn bad_bodies_get_400_and_415() {
    let node = TestNode::start("");
    let mut c = UdpClient::new(node.udp);
    c.send(&publish(ALICE, c.port(), "b1", 1, "", ""));
    assert_eq!(c.response("b1", "PUBLISH").status, 400);
    let body = pidf(ALICE, "t1", "open");
    let msg = request(
        "PUBLISH",
        ALICE,
        c.port(),
        "b2",
        1,
        "Event: presence\r\nContent-Type: text/plain\r\n",
        &body,
    );
    c.send(&msg);
    let r = c.response("b2", "PUBLISH");
    assert_eq!(r.status, 415);
    assert!(r.header("Accept").unwrap().contains("application/pidf+xml"));
    c.send(&publish(
        ALICE,
        c.port(),
        "b3",
        1,
        "",
        "<presence><unclosed></presence>",
    ));
    assert_eq!(c.response("b3", "PUBLISH").status, 400);
}

#[test]
fn refresh_modify_remove_and_412_for_unknown_etags() {
    let node = TestNode::start("[presence]\nexpires_offset = 10\n");
    let mut c = UdpClient::new(node.udp);
    let p = c.port();
    c.send(&publish(
        ALICE,
        p,
        "r1",
        1,
        "Expires: 300\r\n",
        &pidf(ALICE, "t1", "open"),
    ));
    let r = c.response("r1", "PUBLISH");
    assert_eq!(
        r.header("Expires"),
        Some("290"),
        "expires_offset subtracted"
    );
    let etag1 = r.header("SIP-ETag").unwrap().to_string();

    c.send(&publish(
        ALICE,
        p,
        "r1",
        2,
        &format!("SIP-If-Match: {etag1}\r\nExpires: 300\r\n"),
        "",
    ));
    let r = c.response("r1", "PUBLISH");
    assert_eq!(r.status, 200, "refresh");
    let etag2 = r.header("SIP-ETag").unwrap().to_string();
    assert_ne!(etag1, etag2, "refresh mints a new ETag");

    c.send(&publish(
        ALICE,
        p,
        "r1",
        3,
        &format!("SIP-If-Match: {etag1}\r\n"),
        "",
    ));
    assert_eq!(
        c.response("r1", "PUBLISH").status,
        412,
        "the old ETag is gone"
    );
    c.send(&publish(
        ALICE,
        p,
        "r1",
        4,
        "SIP-If-Match: nosuchetag\r\n",
        "",
    ));
    assert_eq!(c.response("r1", "PUBLISH").status, 412);

    c.send(&publish(
        ALICE,
        p,
        "r1",
        5,
        &format!("SIP-If-Match: {etag2}\r\n"),
        &pidf(ALICE, "t1", "closed"),
    ));
    let r = c.response("r1", "PUBLISH");
    assert_eq!(r.status, 200, "modify");
    let etag3 = r.header("SIP-ETag").unwrap().to_string();

    c.send(&publish(
        ALICE,
        p,
        "r1",
        6,
        &format!("SIP-If-Match: {etag3}\r\nExpires: 0\r\n"),
        "",
    ));
    let r = c.response("r1", "PUBLISH");
    assert_eq!((r.status, r.header("Expires")), (200, Some("0")), "remove");
    c.send(&publish(
        ALICE,
        p,
        "r1",
        7,
        &format!("SIP-If-Match: {etag3}\r\n"),
        "",
    ));
    assert_eq!(
        c.response("r1", "PUBLISH").status,
        412,
        "removed publication is gone"
    );
    // An ETag of another presentity is not accepted either.
    c.send(&publish(
        "sip:bob@example.com",
        p,
        "r2",
        1,
        "",
        &pidf("sip:bob@example.com", "b", "open"),
    ));
    let bob_etag = c
        .response("r2", "PUBLISH")
        .header("SIP-ETag")
        .unwrap()
        .to_string();
    c.send(&publish(
        ALICE,
        p,
        "r1",
        8,
        &format!("SIP-If-Match: {bob_etag}\r\n"),
        "",
    ));
    assert_eq!(c.response("r1", "PUBLISH").status, 412);
}

#[test]
fn retransmitted_publish_is_processed_once() {
    let node = TestNode::start("");
    let mut c = UdpClient::new(node.udp);
    let msg = publish(ALICE, c.port(), "rt1", 1, "", &pidf(ALICE, "t1", "open"));
    c.send(&msg);
    let first = c.response("rt1", "PUBLISH");
    c.send(&msg);
    let second = c.response("rt1", "PUBLISH");
    assert_eq!(
        first.header("SIP-ETag"),
        second.header("SIP-ETag"),
        "same response again"
    );
    // Only one publication exists: a watcher sees exactly one tuple.
    c.send(&subscribe(ALICE, c.port(), "rt-w", 1, ""));
    assert_eq!(c.response("rt-w", "SUBSCRIBE").status, 200);
    let n = c.notify("rt-w");
    let body = String::from_utf8_lossy(&n.body).to_string();
    assert_eq!(body.matches("<tuple").count(), 1, "{body}");
}

#[test]
fn publication_expires_and_watcher_is_notified() {
    let node = TestNode::start("");
    let mut c = UdpClient::new(node.udp);
    let p = c.port();
    c.send(&subscribe(ALICE, p, "ex-w", 1, "Expires: 600\r\n"));
    assert_eq!(c.response("ex-w", "SUBSCRIBE").status, 200);
    assert!(c.notify("ex-w").body.is_empty(), "no state yet");
    c.send(&publish(
        ALICE,
        p,
        "ex-p",
        1,
        "Expires: 1\r\n",
        &pidf(ALICE, "t1", "open"),
    ));
    assert_eq!(c.response("ex-p", "PUBLISH").status, 200);
    let n = c.notify("ex-w");
    assert!(String::from_utf8_lossy(&n.body).contains("<tuple"));
    // After expiry the watcher is told the state is gone.
    let n = c.notify("ex-w");
    assert!(
        n.body.is_empty(),
        "state after expiry: {:?}",
        String::from_utf8_lossy(&n.body)
    );
}

#[test]
fn force_delete_expires_silently() {
    let node = TestNode::start("[presence]\nforce_delete = 1\n");
    let mut c = UdpClient::new(node.udp);
    let p = c.port();
    c.send(&subscribe(ALICE, p, "fd-w", 1, ""));
    c.response("fd-w", "SUBSCRIBE");
    c.notify("fd-w");
    c.send(&publish(
        ALICE,
        p,
        "fd-p",
        1,
        "Expires: 1\r\n",
        &pidf(ALICE, "t1", "open"),
    ));
    c.response("fd-p", "PUBLISH");
    c.notify("fd-w");
    let later = c.drain(Duration::from_millis(2500));
    assert!(
        !later.iter().any(|m| matches!(m, Message::Request(_))),
        "no NOTIFY after a forced delete"
    );
}

#[test]
fn two_publications_are_composed_into_one_document() {
    let node = TestNode::start("");
    let mut c = UdpClient::new(node.udp);
    let p = c.port();
    c.send(&publish(
        ALICE,
        p,
        "c1",
        1,
        "",
        &pidf(ALICE, "phone", "open"),
    ));
    c.response("c1", "PUBLISH");
    c.send(&publish(
        ALICE,
        p,
        "c2",
        1,
        "",
        &pidf(ALICE, "desk", "closed"),
    ));
    c.response("c2", "PUBLISH");
    c.send(&subscribe(ALICE, p, "c-w", 1, ""));
    c.response("c-w", "SUBSCRIBE");
    let n = c.notify("c-w");
    let body = String::from_utf8_lossy(&n.body).to_string();
    assert_eq!(body.matches("<presence").count(), 1, "{body}");
    assert!(
        body.contains("id=\"phone\"") && body.contains("id=\"desk\""),
        "{body}"
    );
    assert_eq!(n.content_type(), Some("application/pidf+xml"));
}

#[test]
fn refresh_without_body_does_not_notify() {
    let node = TestNode::start("");
    let mut c = UdpClient::new(node.udp);
    let p = c.port();
    c.send(&publish(ALICE, p, "nb", 1, "", &pidf(ALICE, "t", "open")));
    let etag = c
        .response("nb", "PUBLISH")
        .header("SIP-ETag")
        .unwrap()
        .to_string();
    c.send(&subscribe(ALICE, p, "nb-w", 1, ""));
    c.response("nb-w", "SUBSCRIBE");
    c.notify("nb-w");
    c.send(&publish(
        ALICE,
        p,
        "nb",
        2,
        &format!("SIP-If-Match: {etag}\r\n"),
        "",
    ));
    assert_eq!(c.response("nb", "PUBLISH").status, 200);
    assert!(c.try_notify("nb-w", Duration::from_millis(700)).is_none());
}

/// Write-through: removing a presentity's last publication leaves its actor idle, and the
/// shard may stop it while the flush runs — the 200 must still go out (it once did not).
#[test]
fn write_through_answers_the_removal_of_the_last_publication() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(&format!(
        "[node]\ndata_dir = \"{}\"\n[presence]\nsubs_db_mode = 1\npubl_cache = 1\n",
        dir.path().join("data").display()
    ));
    let mut c = UdpClient::new(node.udp);
    let p = c.port();
    for round in 0..5 {
        let cid = format!("wt-rm{round}");
        c.send(&publish(
            ALICE,
            p,
            &cid,
            1,
            "Expires: 60\r\n",
            &pidf(ALICE, "t1", "open"),
        ));
        let r = c.response(&cid, "PUBLISH");
        assert_eq!(r.status, 200);
        let etag = r.header("SIP-ETag").unwrap().to_string();
        c.send(&publish(
            ALICE,
            p,
            &cid,
            2,
            &format!("SIP-If-Match: {etag}\r\nExpires: 0\r\n"),
            "",
        ));
        let r = c.response(&cid, "PUBLISH");
        assert_eq!((r.status, r.header("Expires")), (200, Some("0")), "remove");
    }
}
