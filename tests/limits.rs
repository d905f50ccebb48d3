//! Black-box tests of the `[limits]` bounds that span the transport and the shards: each hit
//! is answered as documented (413, 503 + Retry-After, 403, a closed connection) and counted
//! in `presenced_limit_hits_total{limit=…}` on `/metrics`.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::*;
use presenced::sip::Message;

const ALICE: &str = "sip:alice@example.com";

/// Admin endpoint on an ephemeral port, plus `limits` (a `[limits]` body) and `sip` (extra
/// `[sip]` keys).
fn node(sip: &str, limits: &str) -> TestNode {
    TestNode::start(&format!(
        "[sip]\nlisten = [\"udp:127.0.0.1:0\", \"tcp:127.0.0.1:0\"]\n{sip}\n\
         [admin]\nlisten = \"127.0.0.1:0\"\n[limits]\n{limits}\n"
    ))
}

/// `presenced_limit_hits_total{limit="<limit>"}` now.
fn hits(node: &TestNode, limit: &str) -> u64 {
    let text = node.admin_get("/metrics");
    let text = text.as_str().expect("metrics are text");
    let prefix = format!("presenced_limit_hits_total{{limit=\"{limit}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {prefix} in {text}"))
}

/// Waits until `limit` was hit at least `n` times; returns the count.
fn wait_hits(node: &TestNode, limit: &str, n: u64) -> u64 {
    let end = Instant::now() + WAIT;
    loop {
        let h = hits(node, limit);
        if h >= n || Instant::now() >= end {
            return h;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Reads until the peer closes (0 or an error other than a timeout); false if still open
/// after `within`.
fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let end = Instant::now() + within;
    let mut buf = [0u8; 4096];
    while Instant::now() < end {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return true,
        }
    }
    false
}

fn options(port: u16, call_id: &str) -> String {
    request("OPTIONS", "sip:127.0.0.1", port, call_id, 1, "", "")
}

/// An OPTIONS over `c` is answered 200.
fn ping(c: &mut TcpClient, call_id: &str) {
    let port = c.local_port();
    c.send(&options(port, call_id));
    match c.recv(WAIT) {
        Some(Message::Response(r)) => assert_eq!((r.status, r.call_id.as_str()), (200, call_id)),
        other => panic!("no 200 to OPTIONS {call_id}: {other:?}"),
    }
}

/// A new SUBSCRIBE to `uri` from `watcher` (its Contact is the client's port).
fn subscribe_as(watcher: &str, uri: &str, port: u16, call_id: &str) -> String {
    subscribe(uri, port, call_id, 1, "Expires: 600\r\n").replace(
        "From: <sip:watcher@example.com>",
        &format!("From: <{watcher}>"),
    )
}

fn connect(addr: SocketAddr) -> TcpStream {
    TcpStream::connect(addr).expect("connect")
}

#[test]
fn message_size_publications_and_tcp_connections_are_answered_and_counted() {
    let node = node(
        "max_message_size = 2048",
        "max_publications_per_presentity = 1\nmax_body_size = 1000\nmax_tcp_connections = 2",
    );
    for l in [
        "message_size",
        "publications",
        "tcp_connections",
        "body_size",
    ] {
        assert_eq!(hits(&node, l), 0, "{l} before anything");
    }

    // publications: the second new publication of a presentity is 503 + Retry-After.
    let mut ua = UdpClient::new(node.udp);
    let port = ua.port();
    ua.send(&publish(
        ALICE,
        port,
        "pub-1",
        1,
        "Expires: 600\r\n",
        &pidf(ALICE, "t1", "open"),
    ));
    assert_eq!(ua.response("pub-1", "PUBLISH").status, 200);
    ua.send(&publish(
        ALICE,
        port,
        "pub-2",
        1,
        "Expires: 600\r\n",
        &pidf(ALICE, "t2", "open"),
    ));
    let r = ua.response("pub-2", "PUBLISH");
    assert_eq!(r.status, 503, "{r:?}");
    assert_eq!(header(&r, "Retry-After"), Some("5"));
    assert_eq!(hits(&node, "publications"), 1);

    // body_size: 413 through the transaction.
    let big = format!("{}{}", pidf(ALICE, "t3", "open"), " ".repeat(1000));
    assert!(big.len() > 1000 && big.len() < 1500);
    ua.send(&publish(ALICE, port, "pub-3", 1, "", &big));
    assert_eq!(ua.response("pub-3", "PUBLISH").status, 413);
    assert_eq!(hits(&node, "body_size"), 1);

    // message_size over UDP: dropped without an answer, but counted.
    ua.send(&options(port, "udp-big").replace(
        "Content-Length: 0",
        &format!("X-Pad: {}\r\nContent-Length: 0", "x".repeat(3000)),
    ));
    assert_eq!(wait_hits(&node, "message_size", 1), 1);

    // tcp_connections: two held open (each answered once, so registered), the third closed.
    let mut c1 = TcpClient::connect(node.tcp);
    ping(&mut c1, "tcp-1");
    let mut c2 = TcpClient::connect(node.tcp);
    ping(&mut c2, "tcp-2");
    let mut c3 = connect(node.tcp);
    let _ = c3.write_all(options(1, "tcp-3").as_bytes());
    assert!(
        closed_within(&mut c3, WAIT),
        "third TCP connection not refused"
    );
    assert_eq!(wait_hits(&node, "tcp_connections", 1), 1);

    // message_size over TCP: 413 on the connection, then it is closed.
    let port = c1.local_port();
    let huge = options(port, "tcp-big").replace("Content-Length: 0", "Content-Length: 5000");
    c1.send(&huge);
    match c1.recv(WAIT) {
        Some(Message::Response(r)) => assert_eq!((r.status, r.call_id.as_str()), (413, "tcp-big")),
        other => panic!("no 413: {other:?}"),
    }
    assert!(
        closed_within(&mut c1.stream, WAIT),
        "connection kept after 413"
    );
    assert_eq!(wait_hits(&node, "message_size", 2), 2);
    drop(c2);
}

#[test]
fn a_message_trickled_byte_by_byte_is_cut_off_after_tcp_message_timeout() {
    let node = node("", "tcp_message_timeout = 1");

    // A message in two parts within the deadline is fine, and a quiet connection between
    // messages is not timed out by it (only by tcp_idle_timeout, 120 s).
    let mut ok = TcpClient::connect(node.tcp);
    let port = ok.local_port();
    let msg = options(port, "halves");
    let (a, b) = msg.split_at(msg.len() / 2);
    ok.send(a);
    std::thread::sleep(Duration::from_millis(400));
    ok.send(b);
    match ok.recv(WAIT) {
        Some(Message::Response(r)) => assert_eq!(r.status, 200),
        other => panic!("no 200 to a message sent in halves: {other:?}"),
    }
    std::thread::sleep(Duration::from_millis(1500));
    ping(&mut ok, "after-quiet");

    // One byte every 300 ms: the idle timeout restarts on each, the message deadline not.
    let mut slow = connect(node.tcp);
    slow.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let msg = options(port, "trickle");
    let started = Instant::now();
    let mut closed = false;
    let mut buf = [0u8; 1024];
    for byte in msg.as_bytes() {
        if slow.write_all(&[*byte]).is_err() {
            closed = true;
            break;
        }
        match slow.read(&mut buf) {
            Ok(0) => closed = true,
            Ok(n) => panic!("answered a message never completed: {:?}", &buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => closed = true,
        }
        if closed || started.elapsed() > Duration::from_secs(15) {
            break;
        }
    }
    let took = started.elapsed();
    assert!(closed, "trickling connection still open after {took:?}");
    assert!(
        took >= Duration::from_millis(900),
        "closed too early: {took:?}"
    );
    assert!(took < Duration::from_secs(8), "closed too late: {took:?}");
    assert_eq!(wait_hits(&node, "tcp_slow", 1), 1);
    assert_eq!(hits(&node, "tcp_idle"), 0);
    ping(&mut ok, "still-open");
}

#[test]
fn new_subscriptions_get_503_while_max_pending_notifies_are_in_flight() {
    let node = node("", "max_pending_notifies = 2");
    // Two watchers that never answer: each keeps one NOTIFY in flight (Timer F is 32 s).
    let mut mute = Vec::new();
    for i in 0..2 {
        let mut w = UdpClient::new(node.udp);
        w.auto_answer = None;
        let call = format!("mute-{i}");
        w.send(&subscribe(ALICE, w.port(), &call, 1, "Expires: 600\r\n"));
        assert_eq!(w.response(&call, "SUBSCRIBE").status, 200);
        let n = w.notify(&call);
        mute.push((w, call, n));
    }
    let mut third = UdpClient::new(node.udp);
    let port = third.port();
    third.send(&subscribe(ALICE, port, "third-1", 1, "Expires: 600\r\n"));
    let r = third.response("third-1", "SUBSCRIBE");
    assert_eq!(r.status, 503, "{r:?}");
    assert_eq!(header(&r, "Retry-After"), Some("5"));
    assert_eq!(hits(&node, "pending_notifies"), 1);

    // Existing subscriptions keep being served: an in-dialog refresh is answered 200.
    let (w0, call0, n0) = &mut mute[0];
    let tag = n0.from.tag.clone().expect("NOTIFY From tag");
    w0.send(&resubscribe(ALICE, w0.port(), call0, 2, &tag, 600));
    assert_eq!(w0.response(call0, "SUBSCRIBE").status, 200);

    // Once the first watcher answers its NOTIFYs, a new subscription is accepted again.
    w0.auto_answer = Some(200);
    w0.sock
        .send_to(answer(n0, 200).as_bytes(), node.udp)
        .unwrap();
    let end = Instant::now() + WAIT;
    let mut attempt = 2;
    let status = loop {
        let call = format!("third-{attempt}");
        third.send(&subscribe(ALICE, port, &call, 1, "Expires: 600\r\n"));
        let _ = w0.drain(Duration::from_millis(100)); // answers the refresh's NOTIFY
        let s = third.response(&call, "SUBSCRIBE").status;
        if s == 200 || Instant::now() >= end {
            break s;
        }
        attempt += 1;
    };
    assert_eq!(
        status, 200,
        "no subscription accepted after NOTIFYs were answered"
    );
}

#[test]
fn a_watcher_beyond_max_subscriptions_per_watcher_gets_403() {
    let node = node("", "max_subscriptions_per_watcher = 2");
    let carol = "sip:carol@example.com";
    let mut w = UdpClient::new(node.udp);
    let port = w.port();
    let mut tags = Vec::new();
    for (i, p) in ["sip:p1@example.com", "sip:p2@example.com"]
        .iter()
        .enumerate()
    {
        let call = format!("carol-{i}");
        w.send(&subscribe_as(carol, p, port, &call));
        let r = w.response(&call, "SUBSCRIBE");
        assert_eq!(r.status, 200, "{r:?}");
        tags.push((p.to_string(), call, r.to.tag.clone().expect("To tag")));
    }
    // Both dialogs are registered with their shards once the listing shows them.
    let listed = "/debug/subscriptions?watcher=sip%3Acarol%40example.com";
    assert_eq!(node.admin_get(listed)["total"], 2);

    w.send(&subscribe_as(carol, "sip:p3@example.com", port, "carol-2"));
    let r = w.response("carol-2", "SUBSCRIBE");
    assert_eq!(
        (r.status, r.reason.as_str()),
        (403, "Too Many Subscriptions")
    );
    assert_eq!(hits(&node, "watcher_subscriptions"), 1);

    // Another watcher is not affected.
    w.send(&subscribe_as(
        "sip:dave@example.com",
        "sip:p3@example.com",
        port,
        "dave-0",
    ));
    assert_eq!(w.response("dave-0", "SUBSCRIBE").status, 200);

    // Ending one dialog frees its place.
    let (p, call, tag) = &tags[0];
    let unsub = resubscribe(p, port, call, 2, tag, 0).replace(
        "From: <sip:watcher@example.com>",
        &format!("From: <{carol}>"),
    );
    w.send(&unsub);
    assert_eq!(w.response(call, "SUBSCRIBE").status, 200);
    let end = Instant::now() + WAIT;
    while node.admin_get(listed)["total"] != 1 && Instant::now() < end {
        let _ = w.drain(Duration::from_millis(50)); // answers the final NOTIFY
    }
    assert_eq!(node.admin_get(listed)["total"], 1);
    w.send(&subscribe_as(carol, "sip:p3@example.com", port, "carol-3"));
    assert_eq!(w.response("carol-3", "SUBSCRIBE").status, 200);
    assert_eq!(hits(&node, "watcher_subscriptions"), 1);
}

/// Overload shedding: a request that waited in the node's queues longer than
/// `max_queue_delay_ms` is answered 503 + Retry-After at once instead of being handled. A
/// burst of PUBLISHes queues up far beyond 10 ms.
#[test]
fn requests_that_waited_too_long_are_shed_with_503() {
    let node = node("", "max_queue_delay_ms = 10\nmailbox_size = 4096");
    let mut c = UdpClient::new(node.udp);
    c.auto_answer = None;
    let p = c.port();
    // Big documents keep the actor threads busy (validation, composition), so the shards'
    // mailboxes, on the same threads, wait well beyond 10 ms even on an idle machine.
    let tuples: String = (0..150)
        .map(|i| {
            format!(
                "<tuple id=\"t{i}\"><status><basic>open</basic></status><note>{}</note></tuple>",
                "n".repeat(40)
            )
        })
        .collect();
    let body = format!(
        "<?xml version=\"1.0\"?><presence xmlns=\"urn:ietf:params:xml:ns:pidf\" entity=\"{ALICE}\">{tuples}</presence>"
    );
    const BURST: u32 = 2000;
    for i in 0..BURST {
        let uri = format!("sip:u{i}@example.com");
        c.send(&publish(
            &uri,
            p,
            &format!("shed-{i}"),
            1,
            "Expires: 60\r\n",
            &body,
        ));
    }
    let shed = wait_hits(&node, "queue_delay", 1);
    assert!(shed >= 1, "no request was shed");
    // Every 503 that came back carries Retry-After; the node still serves afterwards.
    let answers = c.drain(Duration::from_secs(2));
    let refused: Vec<_> = answers
        .iter()
        .filter_map(|m| match m {
            presenced::sip::Message::Response(r) if r.status == 503 => Some(r),
            _ => None,
        })
        .collect();
    assert!(
        !refused.is_empty(),
        "no 503 among {} answers",
        answers.len()
    );
    assert!(refused.iter().all(|r| r.header("Retry-After").is_some()));
    // Served again once the backlog is gone (each try a new transaction: a 503 may still
    // come while the queues drain on a slow machine).
    let end = Instant::now() + WAIT;
    for i in 0.. {
        let cid = format!("shed-after-{i}");
        c.send(&publish(ALICE, p, &cid, 1, "Expires: 60\r\n", &body));
        let r = c.response(&cid, "PUBLISH");
        if r.status == 200 {
            return;
        }
        assert!(
            Instant::now() < end,
            "never served again: {} {}",
            r.status,
            r.reason
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_new_presentity_beyond_max_presentities_gets_503_until_one_goes() {
    let node = node("", "max_presentities = 2");
    let mut ua = UdpClient::new(node.udp);
    let port = ua.port();
    let publish_to = |ua: &mut UdpClient, user: &str, call: &str, expires: &str| {
        let uri = format!("sip:{user}@example.com");
        ua.send(&publish(
            &uri,
            port,
            call,
            1,
            expires,
            &pidf(&uri, call, "open"),
        ));
        ua.response(call, "PUBLISH")
    };
    assert_eq!(
        publish_to(&mut ua, "p1", "mp-1", "Expires: 600\r\n").status,
        200
    );
    let r = publish_to(&mut ua, "p2", "mp-2", "Expires: 600\r\n");
    assert_eq!(r.status, 200);
    let etag = header(&r, "SIP-ETag").expect("an ETag").to_string();
    let r = publish_to(&mut ua, "p3", "mp-3", "Expires: 600\r\n");
    assert_eq!(r.status, 503, "a third presentity: {r:?}");
    assert_eq!(header(&r, "Retry-After"), Some("5"));
    assert_eq!(hits(&node, "presentities"), 1);
    // A presentity already held is not refused.
    assert_eq!(
        publish_to(&mut ua, "p1", "mp-4", "Expires: 600\r\n").status,
        200
    );

    // p2's only publication removed: its actor stops and frees the place.
    let uri = "sip:p2@example.com";
    ua.send(&publish(
        uri,
        port,
        "mp-rm",
        1,
        &format!("Expires: 0\r\nSIP-If-Match: {etag}\r\n"),
        "",
    ));
    assert_eq!(ua.response("mp-rm", "PUBLISH").status, 200);
    let end = Instant::now() + WAIT;
    let mut n = 0;
    loop {
        n += 1;
        let r = publish_to(&mut ua, "p3", &format!("mp-3-{n}"), "Expires: 600\r\n");
        if r.status == 200 {
            break;
        }
        assert_eq!(r.status, 503);
        assert!(
            Instant::now() < end,
            "the place of a stopped presentity never came free"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
