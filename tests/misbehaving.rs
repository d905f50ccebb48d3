//! Watchers that misbehave (issue #8 item 3), against a real node on 127.0.0.1: a watcher
//! that never answers its NOTIFYs (Timer E/F, `timeout_rm_subs`), one that answers with
//! garbage, Contacts the node cannot use, a NOTIFY storm towards a slow watcher (coalescing,
//! latest state never lost) and a TCP watcher that stops reading.
//!
//! No traffic leaves loopback: every Contact is either a loopback address or one the node
//! refuses before any lookup (no host names, which would go to the system's DNS server, and
//! no non-loopback addresses, which the node would really send to).

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;
use presenced::sip::{Message, Request};
use rand::{Rng, SeedableRng};

const ALICE: &str = "sip:alice@example.com";

/// A node with an admin endpoint (for `/metrics` and `/debug/subscriptions`) plus `extra`.
fn admin_node(extra: &str) -> TestNode {
    TestNode::start(&format!("[admin]\nlisten = \"127.0.0.1:0\"\n{extra}\n"))
}

/// The value of the `/metrics` sample whose line starts with `series` (name and labels);
/// 0 when the series does not exist yet (a labelled counter appears on its first use).
fn metric(node: &TestNode, series: &str) -> u64 {
    let text = node.admin_get("/metrics");
    let text = text.as_str().expect("metrics are text");
    let prefix = format!("{series} ");
    text.lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .map(|v| v.trim().parse().expect("a counter value"))
        .unwrap_or(0)
}

const FAILED: &str = "presenced_notify_failed_total";
const TCP_IDLE: &str = "presenced_limit_hits_total{limit=\"tcp_idle\"}";

/// `presenced_notify_failed_total{reason="<reason>"}`.
fn failed(node: &TestNode, reason: &str) -> u64 {
    metric(node, &format!("{FAILED}{{reason=\"{reason}\"}}"))
}

/// `/debug/subscriptions/{tag}`: the view, or `None` once the dialog is gone (404).
fn debug_sub(node: &TestNode, tag: &str) -> Option<serde_json::Value> {
    let admin = node.admin.expect("admin endpoint");
    let mut resp = http_agent()
        .get(&format!("http://{admin}/debug/subscriptions/{tag}"))
        .call()
        .expect("HTTP exchange with the admin endpoint");
    let status = resp.status().as_u16();
    let text = resp.body_mut().read_to_string().unwrap_or_default();
    match status {
        404 => None,
        200 => Some(serde_json::from_str(&text).expect("JSON view")),
        s => panic!("/debug/subscriptions/{tag}: {s} {text}"),
    }
}

/// Subscribes `c` to `uri` (Expires 300) and returns our To-tag.
fn subscribe_ok(c: &mut UdpClient, uri: &str, call_id: &str) -> String {
    c.send(&subscribe(uri, c.port(), call_id, 1, "Expires: 300\r\n"));
    let r = c.response(call_id, "SUBSCRIBE");
    assert_eq!(r.status, 200, "SUBSCRIBE {call_id}");
    r.to.tag.expect("To-tag")
}

/// Publishes `uri` with one tuple `tuple` (a new publication) and waits for the 200.
fn publish_ok(c: &mut UdpClient, uri: &str, call_id: &str, tuple: &str) -> String {
    let doc = pidf(uri, tuple, "open");
    c.send(&publish(uri, c.port(), call_id, 1, "", &doc));
    let r = c.response(call_id, "PUBLISH");
    assert_eq!(r.status, 200, "PUBLISH {call_id}");
    r.header("SIP-ETag").expect("SIP-ETag").to_string()
}

/// Answers `n` with `code` from `w`'s socket.
fn reply(w: &UdpClient, n: &Request, code: u16) {
    let a = answer(n, code);
    w.sock.send_to(a.as_bytes(), w.server).expect("send");
}

fn branch(n: &Request) -> String {
    n.vias[0].branch.clone().unwrap_or_default()
}

fn body(n: &Request) -> String {
    String::from_utf8_lossy(&n.body).into_owned()
}

// ─── 1. A watcher that never answers ─────────────────────────────────────────────────────

/// Subscribes a watcher that never answers and collects every copy of the first NOTIFY
/// until Timer F has fired (`notify_failed{timeout}` counted). Checks the copies: one
/// transaction (same CSeq, branch and bytes), Timer E doubling from T1 = 500 ms up to
/// T2 = 4 s, and at most the RFC 3261 count before Timer F (64·T1 = 32 s; the node has no
/// knob to shorten T1, so this takes about 33 s). Returns the watcher, our tag and the NOTIFY.
fn never_answer(node: &TestNode, call_id: &str) -> (UdpClient, String, Request) {
    let mut w = UdpClient::new(node.udp);
    w.auto_answer = None;
    let tag = subscribe_ok(&mut w, ALICE, call_id);
    let first = w.notify(call_id);
    let t0 = Instant::now();
    let mut arrivals = vec![Duration::ZERO];
    // Receive-only until just past Timer F (no HTTP in between: arrival times stay exact).
    let until = Duration::from_millis(32_700);
    while let Some(n) = w.try_notify(call_id, until.saturating_sub(t0.elapsed())) {
        let same = (n.cseq.seq, branch(&n), &n.body);
        assert_eq!(same, (first.cseq.seq, branch(&first), &first.body));
        arrivals.push(t0.elapsed());
    }
    let timed_out = eventually(WAIT, || failed(node, "timeout") >= 1);
    assert!(timed_out, "Timer F not counted");
    // Timer F fired: no copy of this transaction may follow.
    let late = w.drain(Duration::from_millis(1500));
    assert!(late.is_empty(), "sent after Timer F: {late:?}");
    assert_eq!(failed(node, "timeout"), 1);
    // RFC 3261 §17.1.2.2: E at 0.5, 1.5, 3.5, 7.5 s, then every T2 until F at 32 s.
    assert!((10..=11).contains(&arrivals.len()), "copies: {arrivals:?}");
    let retransmitted = metric(node, "presenced_notify_retransmitted_total");
    assert_eq!(retransmitted, arrivals.len() as u64 - 1);
    let gaps: Vec<_> = arrivals.windows(2).map(|w| w[1] - w[0]).collect();
    for (i, gap) in gaps.iter().map(Duration::as_millis).enumerate() {
        let want = [500, 1000, 2000, 4000][i.min(3)];
        let fine = gap >= want * 8 / 10 && gap <= want + 1000;
        assert!(fine, "gap {i}: {gap} ms, want ~{want}: {gaps:?}");
    }
    let last = *arrivals.last().expect("at least the original");
    let stop = last >= Duration::from_secs(27) && last < Duration::from_millis(32_500);
    assert!(stop, "copies stop at Timer F (64·T1): last at {last:?}");
    (w, tag, first)
}

#[test]
fn never_answered_notify_is_retransmitted_then_times_out_and_removes_the_subscription() {
    let node = admin_node("[presence]\ntimeout_rm_subs = 1\n");
    let (mut w, tag, _) = never_answer(&node, "na-rm");
    let gone = eventually(WAIT, || debug_sub(&node, &tag).is_none());
    assert!(gone, "still in /debug/subscriptions");
    // Nothing more reaches the watcher, and the dialog is unknown.
    let mut p = UdpClient::new(node.udp);
    publish_ok(&mut p, ALICE, "na-rm-p", "after");
    assert!(w.try_notify("na-rm", Duration::from_millis(700)).is_none());
    w.auto_answer = Some(200);
    w.send(&resubscribe(ALICE, w.port(), "na-rm", 2, &tag, 300));
    assert_eq!(w.response("na-rm", "SUBSCRIBE").status, 481);
}

#[test]
fn never_answered_notify_times_out_but_the_subscription_stays_with_timeout_rm_subs_0() {
    let node = admin_node("[presence]\ntimeout_rm_subs = 0\n");
    let (mut w, tag, first) = never_answer(&node, "na-keep");
    let view = debug_sub(&node, &tag).expect("the subscription stays");
    assert_eq!(view["status"], "active", "{view}");
    assert_eq!(view["notify_reply"]["status"], 408, "{view}");
    assert_eq!(view["notify_in_flight"], false, "{view}");
    // The next state change gets a fresh NOTIFY with the next CSeq.
    let mut p = UdpClient::new(node.udp);
    publish_ok(&mut p, ALICE, "na-keep-p", "after");
    let n = w.notify("na-keep");
    assert_eq!(n.cseq.seq, first.cseq.seq + 1);
    assert_ne!(branch(&n), branch(&first), "a new transaction");
    assert!(body(&n).contains("id=\"after\""), "{}", body(&n));
    reply(&w, &n, 200);
    let answered = |v: serde_json::Value| v["notify_reply"]["status"] == 200;
    assert!(eventually(WAIT, || debug_sub(&node, &tag).is_some_and(answered)));
}

// ─── 2. A watcher that answers with garbage ──────────────────────────────────────────────

/// Answers to `n` that are not answers: unparseable bytes, broken responses, responses to
/// another transaction or dialog. `strict`: `subs_remove_match = 1`, where a response whose
/// Call-ID is not the dialog's is ignored too (with 0, Kamailio's default, the To-tag alone
/// identifies the dialog, so such a response does count: see tests/knobs.rs).
fn garbage(n: &Request, strict: bool, rng: &mut impl Rng) -> Vec<Vec<u8>> {
    let ok = answer(n, 200);
    let cseq = format!("CSeq: {} NOTIFY", n.cseq.seq);
    let mut noise = vec![0u8; 300];
    rng.fill(&mut noise[..]);
    let seq = n.cseq.seq;
    let from_tag = format!("tag={}", n.from.tag.clone().unwrap_or_default());
    let swaps = [
        ("SIP/2.0 200 Answer", "SIP/2.0 2x0 Answer".to_string()),
        ("SIP/2.0 200 Answer", "SIP/2.0 700 Beyond".to_string()),
        (&cseq, format!("CSeq: {} NOTIFY", seq + 7)),
        (&cseq, format!("CSeq: {} NOTIFY", seq.wrapping_sub(1))),
        (&cseq, format!("CSeq: {seq} SUBSCRIBE")),
        (&format!("{cseq}\r\n"), String::new()),
        (&from_tag, "tag=not-our-dialog".to_string()),
        ("Content-Length: 0", "Content-Length: 40".to_string()),
    ];
    let mut out: Vec<Vec<u8>> = Vec::new();
    for (a, b) in &swaps {
        out.push(ok.replace(a, b).into_bytes());
    }
    out.extend([noise, b"SIP/2.0 200 OK\r\n\r\n".to_vec(), Vec::new()]);
    out.push(ok.as_bytes()[..ok.len() / 2].to_vec());
    if strict {
        let other = ok.replace(&format!("Call-ID: {}", n.call_id), "Call-ID: else");
        out.push(other.into_bytes());
    }
    out
}

#[test]
fn garbage_answers_do_not_complete_the_notify_and_a_later_200_does() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed_8003);
    for strict in [false, true] {
        let mode = u8::from(strict);
        let node = TestNode::start(&format!("[presence]\nsubs_remove_match = {mode}\n"));
        let mut w = UdpClient::new(node.udp);
        w.auto_answer = None;
        let tag = subscribe_ok(&mut w, ALICE, "gb");
        let first = w.notify("gb");
        // Garbage after the original and after each of the first two retransmissions
        // (T1 and 3·T1): every time the node keeps retransmitting the same transaction.
        let mut copy = first.clone();
        for round in 0..2 {
            for g in garbage(&copy, strict, &mut rng) {
                w.sock.send_to(&g, node.udp).expect("send");
            }
            let again = w.try_notify("gb", WAIT);
            copy = again.unwrap_or_else(|| panic!("strict={strict}: no copy {round}"));
            let same = (copy.cseq.seq, branch(&copy)) == (first.cseq.seq, branch(&first));
            assert!(same, "strict={strict}: not the same NOTIFY: {copy:?}");
        }
        // A proper 200 completes it: no further copy (the next one was due 2·T1 later).
        reply(&w, &copy, 200);
        let after = w.drain(Duration::from_millis(2500));
        assert!(after.is_empty(), "strict={strict}: {after:?}");
        // The node is fine and the dialog goes on: a state change, a fresh NOTIFY.
        w.auto_answer = Some(200);
        let mut p = UdpClient::new(node.udp);
        publish_ok(&mut p, ALICE, "gb-p", "fresh");
        let n = w.notify("gb");
        assert_eq!(n.cseq.seq, first.cseq.seq + 1, "strict={strict}");
        assert_ne!(branch(&n), branch(&first));
        assert!(body(&n).contains("id=\"fresh\""), "{}", body(&n));
        w.send(&resubscribe(ALICE, w.port(), "gb", 2, &tag, 300));
        assert_eq!(w.response("gb", "SUBSCRIBE").status, 200, "strict={strict}");
    }
}

/// RFC 3261 §17.1.3: a response matches a client transaction by the branch of its top Via
/// (and the CSeq method). A 200 carrying another branch answers some other request.
#[test]
fn a_200_with_another_branch_does_not_complete_the_notify() {
    let node = TestNode::start("");
    let mut w = UdpClient::new(node.udp);
    w.auto_answer = None;
    subscribe_ok(&mut w, ALICE, "br");
    let first = w.notify("br");
    let forged = answer(&first, 200).replace(&branch(&first), "z9hG4bKsomeone-else");
    w.sock.send_to(forged.as_bytes(), node.udp).expect("send");
    let again = w.try_notify("br", Duration::from_secs(3));
    let retransmitted = again.is_some_and(|n| n.cseq.seq == first.cseq.seq);
    assert!(retransmitted, "a forged 200 completed the NOTIFY");
}

// ─── 3. Contacts the node cannot use ─────────────────────────────────────────────────────

/// Contacts refused before any lookup or packet: an unsupported scheme, unsupported
/// transports, a port out of range. (A host name would make the node ask the system's DNS
/// server, off loopback; a non-loopback address would really be sent to. Neither is here.)
const UNUSABLE: [&str; 4] = [
    "sips:w@127.0.0.1:5061",
    "sip:w@127.0.0.1:5060;transport=tls",
    "sip:w@127.0.0.1;transport=ws",
    "sip:w@127.0.0.1:99999",
];

#[test]
fn unusable_contacts_are_accepted_counted_as_no_target_and_harm_no_one() {
    let node = admin_node("");
    let mut w = UdpClient::new(node.udp);
    let p = w.port();
    let own = format!("Contact: <sip:watcher@127.0.0.1:{p}>");
    for (i, contact) in UNUSABLE.iter().enumerate() {
        let call_id = format!("uc{i}");
        let sub = subscribe(ALICE, p, &call_id, 1, "Expires: 300\r\n");
        w.send(&sub.replace(&own, &format!("Contact: <{contact}>")));
        assert_eq!(w.response(&call_id, "SUBSCRIBE").status, 200, "{contact}");
    }
    let n = UNUSABLE.len() as u64;
    let counted = eventually(WAIT, || failed(&node, "no_target") >= n);
    assert!(counted, "no_target: {}", failed(&node, "no_target"));
    assert_eq!(failed(&node, "no_target"), n);
    // No fallback to the SUBSCRIBE's source address: nothing but the 200s came back.
    let back = w.drain(Duration::from_millis(700));
    let only_200s = back.iter().all(|m| matches!(m, Message::Response(_)));
    assert!(only_200s, "{back:?}");
    // Others are served as usual, before and after a state change.
    let mut ok = UdpClient::new(node.udp);
    subscribe_ok(&mut ok, ALICE, "uc-ok");
    ok.notify("uc-ok");
    let mut pb = UdpClient::new(node.udp);
    publish_ok(&mut pb, ALICE, "uc-p", "served");
    assert!(body(&ok.notify("uc-ok")).contains("id=\"served\""));
    let back = w.drain(Duration::from_millis(300));
    assert!(back.is_empty(), "{back:?}");
    let ping = request("OPTIONS", "sip:127.0.0.1", pb.port(), "uc-ping", 1, "", "");
    pb.send(&ping);
    assert_eq!(pb.response("uc-ping", "OPTIONS").status, 200);
}

// ─── 4. A NOTIFY storm towards a slow watcher ────────────────────────────────────────────

/// How long the slow watcher holds each 200.
const HOLD: Duration = Duration::from_millis(300);

/// What a slow watcher saw of one storm.
struct Storm {
    /// (CSeq, published state index) of every NOTIFY after the initial one, in order.
    seen: Vec<(u32, usize)>,
    /// How long the publisher took for all its changes.
    publishing: Duration,
    /// From the publisher's last 200 to the NOTIFY with the last state.
    lag: Duration,
}

/// The state indices (`<tuple id="sN">`) in a NOTIFY body.
fn states(n: &Request) -> Vec<usize> {
    body(n)
        .split("id=\"s")
        .skip(1)
        .filter_map(|t| t.split('"').next()?.parse().ok())
        .collect()
}

/// A watcher of `uri` that holds each 200 for [`HOLD`] while a publisher (its own thread)
/// changes `uri`'s state `changes` times as fast as the node answers (one publication
/// refreshed with SIP-If-Match: each change replaces the document with tuple `s<i>`).
/// `id` names the dialogs (Call-IDs `st-<id>`, `st-<id>-p`).
fn storm(server: SocketAddr, uri: &str, id: &str, changes: usize) -> Storm {
    let call_id = format!("st-{id}");
    let mut w = UdpClient::new(server);
    w.auto_answer = None;
    w.send(&subscribe(uri, w.port(), &call_id, 1, "Expires: 300\r\n"));
    assert_eq!(w.response(&call_id, "SUBSCRIBE").status, 200);
    let initial = w.notify(&call_id);
    reply(&w, &initial, 200);
    let uri_p = uri.to_string();
    let call_id_p = call_id.clone();
    let publisher = std::thread::spawn(move || {
        let mut p = UdpClient::new(server);
        let pid = format!("{call_id_p}-p");
        let start = Instant::now();
        let mut etag = publish_ok(&mut p, &uri_p, &pid, "s0");
        for i in 1..changes {
            let cseq = u32::try_from(i + 1).expect("few changes");
            let doc = pidf(&uri_p, &format!("s{i}"), "open");
            let h = format!("SIP-If-Match: {etag}\r\n");
            p.send(&publish(&uri_p, p.port(), &pid, cseq, &h, &doc));
            let r = p.response(&pid, "PUBLISH");
            assert_eq!(r.status, 200, "change {i}");
            etag = r.header("SIP-ETag").expect("SIP-ETag").to_string();
        }
        (start.elapsed(), Instant::now())
    });
    let mut seen = Vec::new();
    let mut last_cseq = initial.cseq.seq;
    let end = Instant::now() + 3 * WAIT;
    let final_at = loop {
        let left = end.saturating_duration_since(Instant::now());
        let n = w.try_notify(&call_id, left);
        let n = n.unwrap_or_else(|| panic!("{uri}: the last state never came: {seen:?}"));
        if n.cseq.seq == last_cseq {
            // Our hold outlasted T1 on a busy machine: a retransmission, answered again.
            reply(&w, &n, 200);
            continue;
        }
        let arrived = Instant::now();
        assert!(n.cseq.seq > last_cseq, "{uri}: CSeq went back: {n:?}");
        last_cseq = n.cseq.seq;
        let s = states(&n);
        assert_eq!(s.len(), 1, "{uri}: one tuple: {}", body(&n));
        seen.push((n.cseq.seq, s[0]));
        std::thread::sleep(HOLD);
        reply(&w, &n, 200);
        if s[0] == changes - 1 {
            break arrived;
        }
    };
    let (publishing, published) = publisher.join().expect("publisher");
    // The last state is the last NOTIFY: nothing newer follows.
    w.auto_answer = Some(200);
    let old = |m: &Message| !matches!(m, Message::Request(r) if r.cseq.seq > last_cseq);
    let more = w.drain(Duration::from_secs(1));
    assert!(more.iter().all(old), "{uri}: newer NOTIFY: {more:?}");
    let lag = final_at.saturating_duration_since(published);
    Storm {
        seen,
        publishing,
        lag,
    }
}

/// One NOTIFY in flight at a time: the watcher gets far fewer NOTIFYs than changes, each
/// newer than the one before, and the last carries the last state.
fn check_coalesced(s: &Storm, changes: usize) {
    let (n, seen, took) = (s.seen.len(), &s.seen, s.publishing);
    let bound = 3 + (took.as_millis() / HOLD.as_millis()) as usize;
    let few = n < changes / 3 && n <= bound;
    assert!(few, "{n} NOTIFYs in {took:?} (max {bound}): {seen:?}");
    let newer = |w: &[(u32, usize)]| w[0].0 < w[1].0 && w[0].1 < w[1].1;
    assert!(
        seen.windows(2).all(newer),
        "CSeq and state increase: {seen:?}"
    );
    let last = seen.last().map(|x| x.1);
    assert_eq!(last, Some(changes - 1), "latest state lost: {seen:?}");
}

#[test]
fn notify_storm_to_a_slow_watcher_is_coalesced_and_the_latest_state_wins() {
    let node = TestNode::start("");
    let s = storm(node.udp, ALICE, "a", 50);
    check_coalesced(&s, 50);
}

#[test]
fn two_presentities_storming_at_once_do_not_hold_up_each_others_watchers() {
    let node = TestNode::start("");
    let server = node.udp;
    let other = std::thread::spawn(move || storm(server, "sip:bob@example.com", "b", 50));
    let a = storm(server, "sip:carol@example.com", "c", 50);
    let b = other.join().expect("second storm");
    for s in [&a, &b] {
        check_coalesced(s, 50);
        // At worst the NOTIFY in flight when the last change came, then the last one.
        let lag = s.lag;
        assert!(lag < 2 * HOLD + Duration::from_secs(2), "lag {lag:?}");
    }
}

// ─── 5. A TCP watcher that stops reading ─────────────────────────────────────────────────

/// A SUBSCRIBE over TCP whose Contact is the connection's own address.
fn tcp_subscribe(uri: &str, port: u16, call_id: &str) -> String {
    subscribe(uri, port, call_id, 1, "Expires: 300\r\n")
        .replace("SIP/2.0/UDP", "SIP/2.0/TCP")
        .replace(
            &format!("<sip:watcher@127.0.0.1:{port}>"),
            &format!("<sip:watcher@127.0.0.1:{port};transport=tcp>"),
        )
}

/// The node's side of the TCP connection from `client_port` in `/proc/net/tcp`: (state,
/// bytes queued to send, inode); `None` once the kernel has forgotten it. State 1 is
/// ESTABLISHED; inode 0 means no process holds the socket any more.
fn node_side(node: &TestNode, client_port: u16) -> Option<(u8, u64, u64)> {
    let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
    let local = format!("0100007F:{:04X}", node.tcp.port());
    let remote = format!("0100007F:{client_port:04X}");
    table.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.len() < 10 || f[1] != local || f[2] != remote {
            return None;
        }
        let state = u8::from_str_radix(f[3], 16).ok()?;
        let tx_queue = u64::from_str_radix(f[4].split(':').next()?, 16).ok()?;
        Some((state, tx_queue, f[9].parse().ok()?))
    })
}

const BIG: &str = "sip:big@example.com";
/// `/debug/subscriptions` filter for [`BIG`].
const BIG_SUBS: &str = "/debug/subscriptions?presentity=sip%3Abig%40example.com&event=presence";
/// Subscriptions on the stalled connection: with ~45 KB per NOTIFY, about 9 MB to write,
/// far beyond what the loopback socket buffers hold.
const STALLED_SUBS: u64 = 200;

/// A node whose TCP connections idle out after 3 s, a ~45 KB document for [`BIG`], and a
/// TCP watcher that subscribes to it [`STALLED_SUBS`] times on one connection and then
/// never reads: the node's writes to it back up. Returns the node and the stalled stream.
fn stalled_tcp_watcher() -> (TestNode, std::net::TcpStream) {
    use std::io::Write;
    let node = admin_node("[limits]\ntcp_idle_timeout = 3\n");
    let note = format!(
        "<status><basic>open</basic></status><note>{}</note>",
        "x".repeat(60)
    );
    let tuples: String = (0..400)
        .map(|i| format!("<tuple id=\"b{i}\">{note}</tuple>"))
        .collect();
    let doc = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\r\n<presence \
         xmlns=\"urn:ietf:params:xml:ns:pidf\" entity=\"{BIG}\">{tuples}</presence>\r\n"
    );
    let mut p = UdpClient::new(node.udp);
    p.send(&publish(BIG, p.port(), "big-p", 1, "", &doc));
    assert_eq!(p.response("big-p", "PUBLISH").status, 200);
    let mut t = std::net::TcpStream::connect(node.tcp).expect("connect");
    let port = t.local_addr().expect("local address").port();
    for i in 0..STALLED_SUBS {
        let sub = tcp_subscribe(BIG, port, &format!("tw{i}"));
        t.write_all(sub.as_bytes()).expect("write");
    }
    let all = eventually(WAIT, || node.admin_get(BIG_SUBS)["total"] == STALLED_SUBS);
    assert!(all, "the stalled watcher's subscriptions");
    // The node's writes are backed up (bytes queued in its socket).
    let backed_up = |(_, queued, _): (u8, u64, u64)| queued > 0;
    let ok = eventually(WAIT, || node_side(&node, port).is_some_and(backed_up));
    assert!(ok, "node side: {:?}", node_side(&node, port));
    (node, t)
}

/// Subscribes a UDP and a TCP watcher to ALICE (first NOTIFYs consumed).
fn alice_watchers(node: &TestNode) -> (UdpClient, TcpClient) {
    let mut u = UdpClient::new(node.udp);
    subscribe_ok(&mut u, ALICE, "sw-u");
    u.notify("sw-u");
    let mut tc = TcpClient::connect(node.tcp);
    let port = tc.local_port();
    tc.send(&tcp_subscribe(ALICE, port, "sw-t"));
    // The 200, then the first NOTIFY, in this order on the connection.
    assert!(matches!(tc.recv(WAIT), Some(Message::Response(r)) if r.status == 200));
    tcp_notify(&mut tc, "");
    (u, tc)
}

/// The next message on `tc` is a NOTIFY whose body contains `text`; answers it 200.
fn tcp_notify(tc: &mut TcpClient, text: &str) {
    let n = tc.recv(WAIT);
    let ok = matches!(&n, Some(Message::Request(r)) if body(r).contains(text));
    assert!(ok, "TCP watcher: no NOTIFY with {text}: {n:?}");
    if let Some(Message::Request(r)) = n {
        tc.send(&answer(&r, 200));
    }
}

/// A state change of ALICE reaches both watchers (answered) within `within`.
fn alice_changes(node: &TestNode, u: &mut UdpClient, tc: &mut TcpClient, tuple: &str) {
    // A keep-alive first: the TCP watcher's connection idles out too when it is quiet.
    tc.send("\r\n\r\n");
    let mut p = UdpClient::new(node.udp);
    let start = Instant::now();
    publish_ok(&mut p, ALICE, &format!("sw-{tuple}"), tuple);
    assert!(body(&u.notify("sw-u")).contains(tuple));
    tcp_notify(tc, tuple);
    let took = start.elapsed();
    assert!(took < Duration::from_secs(3), "NOTIFYs took {took:?}");
}

#[test]
fn a_tcp_watcher_that_stops_reading_holds_up_no_one() {
    let (node, stalled) = stalled_tcp_watcher();
    let (mut u, mut tc) = alice_watchers(&node);
    alice_changes(&node, &mut u, &mut tc, "while-stalled");
    // The node still answers, over UDP and on new TCP connections.
    let mut fresh = TcpClient::connect(node.tcp);
    let port = fresh.local_port();
    fresh.send(&request("OPTIONS", ALICE, port, "sw-o", 1, "", ""));
    assert!(matches!(fresh.recv(WAIT), Some(Message::Response(r)) if r.status == 200));
    // The stalled connection reads nothing: the idle timeout drops it from the table.
    assert!(eventually(WAIT, || metric(&node, TCP_IDLE) >= 1));
    // The other watchers are still served.
    alice_changes(&node, &mut u, &mut tc, "after-idle");
    drop(stalled);
}

/// The node's side of a connection it gave up on (idle timeout) must be closed, or a peer
/// that opens connections, has NOTIFYs queued and never reads holds one socket, one task
/// and up to the write queue's frames per connection, uncounted by `max_tcp_connections`.
#[test]
fn a_stalled_tcp_connection_is_closed_after_the_idle_timeout() {
    let (node, stalled) = stalled_tcp_watcher();
    let port = stalled.local_addr().expect("local address").port();
    assert!(eventually(WAIT, || metric(&node, TCP_IDLE) >= 1));
    let closed = |(state, _, inode): (u8, u64, u64)| state != 1 || inode == 0;
    let ok = eventually(WAIT, || node_side(&node, port).is_none_or(closed));
    assert!(ok, "node side still open: {:?}", node_side(&node, port));
}
