//! Transports and bad input (SPEC §3 "Bad input"): TCP round trip, malformed datagrams.

mod common;

use std::time::Duration;

use common::*;
use presenced::sip::Message;

const ALICE: &str = "sip:alice@example.com";

#[test]
fn tcp_publish_subscribe_notify_round_trip() {
    let node = TestNode::start("");
    let mut c = TcpClient::connect(node.tcp);
    let p = c.local_port();
    let body = pidf(ALICE, "t1", "open");
    c.send(&publish(ALICE, p, "tcp1", 1, "", &body).replace("SIP/2.0/UDP", "SIP/2.0/TCP"));
    match c.recv(WAIT) {
        Some(Message::Response(r)) => assert_eq!((r.status, r.call_id.as_str()), (200, "tcp1")),
        other => panic!("expected a response, got {other:?}"),
    }
    let sub = subscribe(ALICE, p, "tcp2", 1, "")
        .replace("SIP/2.0/UDP", "SIP/2.0/TCP")
        .replace(
            &format!("<sip:watcher@127.0.0.1:{p}>"),
            &format!("<sip:watcher@127.0.0.1:{p};transport=tcp>"),
        );
    c.send(&sub);
    let mut got_200 = false;
    let mut notify = None;
    while !(got_200 && notify.is_some()) {
        match c.recv(WAIT) {
            Some(Message::Response(r)) if r.call_id == "tcp2" => {
                assert_eq!(r.status, 200);
                got_200 = true;
            }
            Some(Message::Request(n)) => {
                c.send(&answer(&n, 200));
                notify = Some(n);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    let n = notify.unwrap();
    assert_eq!(n.vias[0].transport, "TCP");
    assert!(String::from_utf8_lossy(&n.body).contains("open"));
}

#[test]
fn malformed_input_gets_400_or_is_dropped_and_server_keeps_answering() {
    let node = TestNode::start("");
    let mut c = UdpClient::new(node.udp);
    let p = c.port();
    // Garbage and empty datagrams: dropped.
    c.send_bytes(b"\x00\x01\x02garbage\xff\xfe");
    c.send_bytes(b"");
    c.send_bytes(b"hello world\r\n\r\n");
    // Truncated header section.
    c.send_bytes(
        format!("PUBLISH {ALICE} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{p};br").as_bytes(),
    );
    // Missing Call-ID: 400 naming it.
    let no_callid = publish(ALICE, p, "nocid", 1, "", "").replace("Call-ID: nocid\r\n", "");
    c.send(&no_callid);
    let deadline = std::time::Instant::now() + WAIT;
    while !c
        .incomplete
        .iter()
        .any(|m| m.starts_with("SIP/2.0 400") && m.contains("Call-ID"))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no 400 naming Call-ID: {:?}",
            c.incomplete
        );
        c.drain(Duration::from_millis(50));
    }
    // Bad Content-Length (longer than the body).
    let bad_cl = publish(ALICE, p, "badcl", 1, "", "<x/>")
        .replace("Content-Length: 4", "Content-Length: 400");
    c.send(&bad_cl);
    assert_eq!(c.response("badcl", "PUBLISH").status, 400);
    // Wrong SIP version.
    c.send(&publish(ALICE, p, "ver", 1, "", "").replace("SIP/2.0\r\n", "SIP/3.0\r\n"));
    let r = c.response("ver", "PUBLISH");
    assert!(r.status == 505 || r.status == 400, "{}", r.status);
    // 40 KB header: answered or dropped, never a crash.
    let big = publish(
        ALICE,
        p,
        "big",
        1,
        &format!("X-Big: {}\r\n", "a".repeat(40_000)),
        "",
    );
    c.send(&big);
    // Oversized datagram (above max_message_size): dropped.
    c.send_bytes(&vec![b'A'; 65_000]);
    // The server still answers.
    c.send(&publish(
        ALICE,
        p,
        "after",
        1,
        "",
        &pidf(ALICE, "t", "open"),
    ));
    assert_eq!(c.response("after", "PUBLISH").status, 200);
}

#[test]
fn oversized_tcp_message_gets_413() {
    let node = TestNode::start(
        "[sip]\nlisten = [\"udp:127.0.0.1:0\", \"tcp:127.0.0.1:0\"]\nmax_message_size = 2000\n",
    );
    let mut c = TcpClient::connect(node.tcp);
    let p = c.local_port();
    let body = format!("<presence>{}</presence>", "x".repeat(5000));
    c.send(&publish(ALICE, p, "big413", 1, "", &body).replace("SIP/2.0/UDP", "SIP/2.0/TCP"));
    match c.recv(WAIT) {
        Some(Message::Response(r)) => assert_eq!(r.status, 413),
        other => panic!("expected 413, got {other:?}"),
    }
    let _ = Duration::ZERO;
}
