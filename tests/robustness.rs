//! Bounded robustness guard (SPEC §3 "Bad input", issue 8): random and mutated SIP
//! datagrams from several sources, over UDP and TCP, against one real in-process node.
//!
//! After every batch the node must still answer OPTIONS on UDP and TCP, and every datagram it
//! sent to any source must parse as SIP (or be the 400/505 to a request whose headers were
//! too broken to echo completely). At the end its actor and transaction counts (`/ready`)
//! must stay within what the accepted requests can explain, and the process RSS must not
//! have grown without bound.
//!
//! Invariant of the generator: nothing leaves 127.0.0.1. A generated request that parses is
//! only sent when its Contact names one of this test's own sockets (`127.0.0.1:<port>`), it
//! has no Record-Route, and its top Via has `rport` (so answers go to the source address);
//! anything the node's parser rejects is answered, if at all, to the source address.
//!
//! The fuzz targets in `fuzz/` run the same entry points for minutes; this runs ~a few
//! seconds so CI guards the property.

mod common;

use std::cell::{Cell, RefCell};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::test_runner::{Config as PtConfig, TestCaseError, TestRunner};

use common::*;
use presenced::sip::{self, Message};

/// Number of batches (proptest cases) and datagrams per batch.
const BATCHES: u32 = 16;
const PER_BATCH: usize = 12;
/// Sources (UDP sockets) the datagrams come from.
const SOURCES: usize = 4;

const NOISE: &[u8] = b":;<>\"\r\n%@[]=, \t\0\\/SIP2.0\xff";

/// Seed messages (those the black-box tests send), `{port}` = the sending socket's port.
fn seeds(port: u16) -> Vec<String> {
    let doc = pidf("sip:alice@example.com", "t1", "open");
    vec![
        publish("sip:alice@example.com", port, "rb-p", 1, "Expires: 60\r\n", &doc),
        publish(
            "sip:alice@example.com",
            port,
            "rb-r",
            2,
            "SIP-If-Match: nope\r\n",
            "",
        ),
        subscribe("sip:alice@example.com", port, "rb-s", 1, "Expires: 30\r\n"),
        subscribe(
            "sip:bob@example.com",
            port,
            "rb-f",
            1,
            "Expires: 0\r\nEvent: presence.winfo\r\n",
        ),
        resubscribe("sip:alice@example.com", port, "rb-s", 2, "nosuchtag", 0),
        request("OPTIONS", "sip:presence@127.0.0.1", port, "rb-o", 1, "", ""),
        request("MESSAGE", "sip:alice@example.com", port, "rb-m", 1, "", ""),
        format!(
            "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKx\r\nFrom: <sip:a@x>;tag=1\r\nTo: <sip:b@x>;tag=2\r\nCall-ID: rb-n\r\nCSeq: 3 NOTIFY\r\nContent-Length: 0\r\n\r\n"
        ),
    ]
}

fn mutate(seed: &[u8], ops: &[(u8, usize, u8)]) -> Vec<u8> {
    let mut buf = seed.to_vec();
    for &(op, pos, val) in ops {
        if buf.is_empty() {
            buf.push(val);
            continue;
        }
        let at = pos % buf.len();
        match op % 5 {
            0 => buf[at] = NOISE[val as usize % NOISE.len()],
            1 => {
                buf.remove(at);
            }
            2 => buf.insert(at, NOISE[val as usize % NOISE.len()]),
            3 => buf[at] = val,
            _ => {
                let end = (at + val as usize % 32).min(buf.len());
                let chunk = buf[at..end].to_vec();
                buf.splice(at..at, chunk);
            }
        }
    }
    buf
}

/// One generated datagram: which source sends it and how it is made.
#[derive(Clone, Debug)]
enum Gen {
    Random(Vec<u8>),
    Mutated {
        seed: usize,
        ops: Vec<(u8, usize, u8)>,
    },
    /// A seed sent unchanged (keeps real state — publications, dialogs — in play).
    Valid(usize),
}

fn gen() -> impl Strategy<Value = (usize, Gen)> {
    let g = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..400).prop_map(Gen::Random),
        (
            0..8usize,
            proptest::collection::vec((any::<u8>(), any::<usize>(), any::<u8>()), 1..6)
        )
            .prop_map(|(seed, ops)| Gen::Mutated { seed, ops }),
        (0..8usize).prop_map(Gen::Valid),
    ];
    (0..SOURCES, g)
}

/// `sip:…@127.0.0.1:<port>` with `port` one of ours (the only NOTIFY target allowed).
fn contact_is_ours(uri: &str, ports: &[u16]) -> bool {
    let uri = uri.trim().trim_start_matches('<');
    let Some(rest) = uri.strip_prefix("sip:") else {
        return false;
    };
    let hostport = rest.split([';', '?', '>']).next().unwrap_or("");
    let hostport = hostport.rsplit_once('@').map_or(hostport, |(_, h)| h);
    let Some(port) = hostport
        .strip_prefix("127.0.0.1:")
        .and_then(|p| p.parse::<u16>().ok())
    else {
        return false;
    };
    ports.contains(&port)
}

/// Whether `bytes` may be sent: see the module doc (nothing may leave 127.0.0.1).
fn loopback_only(bytes: &[u8], ports: &[u16]) -> bool {
    match sip::parse(bytes) {
        Ok(Message::Request(r)) => {
            r.record_route.is_empty()
                && r.vias.first().is_some_and(|v| v.rport.is_some())
                && r.contact
                    .as_ref()
                    .is_none_or(|c| contact_is_ours(&c.uri, ports))
                && !r
                    .headers
                    .iter()
                    .any(|(n, _)| n.eq_ignore_ascii_case("Route"))
        }
        _ => true,
    }
}

/// Whether a datagram from the node is acceptable: parses, or is a 400/505 whose echo was
/// incomplete (the request lacked mandatory headers). `bare_cr`: a datagram of this batch
/// held a CR not followed by LF.
///
/// Known bug F1 (fuzz/README.md): the parser accepts a bare CR inside Call-ID/From/To/Via
/// values and the response echoes it as a space, so that answer does not parse. Until it is
/// fixed, a non-parsing *response* is tolerated after such a datagram; set
/// `ROBUSTNESS_F1_STRICT=1` to make it fail (the fix should then drop this tolerance).
fn acceptable_answer(text: &str, bare_cr: bool) -> bool {
    // F1 (fixed): a value with a bare CR makes the request malformed; its 400 may then
    // lack the headers it could not carry.
    let _ = bare_cr;
    text.starts_with("SIP/2.0 400 ") || text.starts_with("SIP/2.0 505 ")
}

/// A CR that does not start a CRLF.
fn has_bare_cr(bytes: &[u8]) -> bool {
    bytes
        .iter()
        .enumerate()
        .any(|(i, b)| *b == b'\r' && bytes.get(i + 1) != Some(&b'\n'))
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

/// The node answers an OPTIONS over UDP and over TCP.
fn still_answers(node: &TestNode, probe: &mut UdpClient, n: u32) -> Result<(), TestCaseError> {
    let call_id = format!("rb-alive-{n}");
    probe.send(&request(
        "OPTIONS",
        "sip:presence@127.0.0.1",
        probe.port(),
        &call_id,
        1,
        "",
        "",
    ));
    let got = probe.wait_for(
        WAIT,
        |m| matches!(m, Message::Response(r) if r.call_id == call_id && r.status == 200),
    );
    prop_assert!(
        got.is_some(),
        "no 200 to OPTIONS over UDP after batch {}",
        n
    );
    let mut tcp = TcpClient::connect(node.tcp);
    let call_id = format!("rb-alive-tcp-{n}");
    tcp.send(&request(
        "OPTIONS",
        "sip:presence@127.0.0.1",
        tcp.local_port(),
        &call_id,
        1,
        "",
        "",
    ));
    let got = tcp.recv(WAIT);
    prop_assert!(
        matches!(&got, Some(Message::Response(r)) if r.call_id == call_id && r.status == 200),
        "no 200 to OPTIONS over TCP after batch {}: {:?}",
        n,
        got
    );
    Ok(())
}

/// Writes `stream` on a fresh TCP connection, reads what comes back for a moment, and
/// checks every frame of it.
fn tcp_batch(server: SocketAddr, stream: &[u8], bare_cr: bool) -> Result<(), TestCaseError> {
    let Ok(mut s) = TcpStream::connect(server) else {
        return Err(TestCaseError::fail("TCP connect refused"));
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(20)));
    let _ = s.write_all(stream);
    let mut buf = Vec::new();
    let end = Instant::now() + Duration::from_millis(150);
    let mut chunk = [0u8; 8192];
    while Instant::now() < end {
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(_) => {}
        }
    }
    let mut at = 0;
    while at < buf.len() {
        match sip::frame_length(&buf[at..], 1 << 20) {
            Ok(Some(n)) => {
                let frame = &buf[at..at + n];
                let crlf = frame.iter().all(|b| *b == b'\r' || *b == b'\n');
                let text = String::from_utf8_lossy(frame);
                prop_assert!(
                    crlf || sip::parse(frame).is_ok() || acceptable_answer(&text, bare_cr),
                    "unparseable answer over TCP: {:?}",
                    text
                );
                at += n;
            }
            // A frame cut by our read deadline, or garbage we must not see.
            Ok(None) => break,
            Err(e) => {
                return Err(TestCaseError::fail(format!(
                    "node sent unframeable bytes over TCP ({e}): {:?}",
                    String::from_utf8_lossy(&buf[at..])
                )))
            }
        }
    }
    Ok(())
}

fn check_answers(
    clients: &mut [UdpClient],
    window: Duration,
    bare_cr: bool,
) -> Result<usize, TestCaseError> {
    let mut n = 0;
    for c in clients.iter_mut() {
        n += c.drain(window).len();
        for text in std::mem::take(&mut c.incomplete) {
            prop_assert!(
                acceptable_answer(&text, bare_cr),
                "the node sent a datagram that does not parse as SIP: {:?}",
                text
            );
        }
    }
    Ok(n)
}

#[test]
fn random_and_mutated_datagrams_never_break_the_node() {
    let node = TestNode::start("[admin]\nlisten = \"127.0.0.1:0\"\n");
    let clients: Vec<UdpClient> = (0..SOURCES).map(|_| UdpClient::new(node.udp)).collect();
    let ports: Vec<u16> = clients.iter().map(UdpClient::port).collect();
    let clients = RefCell::new(clients);
    let probe = RefCell::new(UdpClient::new(node.udp));
    still_answers(&node, &mut probe.borrow_mut(), 0).expect("node answers before any input");
    let rss_before = rss_kib();

    let started = Instant::now();
    // `TestRunner::run` takes an `Fn`: the shared state lives in cells.
    let sent = Cell::new(0u64);
    let batch_no = Cell::new(0u32);
    let answers = Cell::new(0usize);
    let any_bare_cr = Cell::new(false);
    let mut runner = TestRunner::new(PtConfig {
        cases: BATCHES,
        failure_persistence: None,
        max_shrink_iters: 64,
        ..PtConfig::default()
    });
    let strategy = proptest::collection::vec(gen(), PER_BATCH);
    let result = runner.run(&strategy, |batch| {
        batch_no.set(batch_no.get() + 1);
        let mut clients = clients.borrow_mut();
        let mut stream = Vec::new();
        for (src, g) in batch {
            let port = ports[src];
            let seeds = seeds(port);
            let bytes = match g {
                Gen::Random(b) => b,
                Gen::Mutated { seed, ops } => mutate(seeds[seed].as_bytes(), &ops),
                Gen::Valid(seed) => seeds[seed].clone().into_bytes(),
            };
            if !loopback_only(&bytes, &ports) {
                continue;
            }
            clients[src].send_bytes(&bytes);
            stream.extend_from_slice(&bytes);
            sent.set(sent.get() + 1);
        }
        // The same bytes as one TCP stream: framing, 400s and closes on a connection.
        let bare_cr = has_bare_cr(&stream);
        any_bare_cr.set(any_bare_cr.get() || bare_cr);
        tcp_batch(node.tcp, &stream, bare_cr)?;
        let got = check_answers(&mut clients, Duration::from_millis(30), bare_cr)?;
        answers.set(answers.get() + got);
        still_answers(&node, &mut probe.borrow_mut(), batch_no.get())?;
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    // Late answers (NOTIFY retransmissions, slow 200s) are checked too.
    let sent = sent.get();
    let late = check_answers(
        &mut clients.borrow_mut(),
        Duration::from_millis(300),
        any_bare_cr.get(),
    )
    .expect("late answers parse");
    let answers = answers.get() + late;
    assert!(
        sent > u64::from(BATCHES),
        "the generator sent almost nothing: {sent}"
    );
    // Unchanged seeds are a third of the input and each is answered: the node was really
    // talking to the sources (a silent node would pass the parse checks vacuously).
    assert!(
        answers >= BATCHES as usize,
        "only {answers} answers to {sent} datagrams"
    );

    // Bounded state: at most one transaction, presentity or dialog per accepted datagram
    // (in practice far fewer), and no runaway memory in this process (node included).
    let admin = node.admin.expect("admin endpoint configured");
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(WAIT))
        .build()
        .into();
    let text = agent
        .get(&format!("http://{admin}/ready"))
        .call()
        .expect("/ready answers")
        .body_mut()
        .read_to_string()
        .expect("/ready body");
    let ready: serde_json::Value = serde_json::from_str(&text).expect("/ready is JSON");
    assert_eq!(ready["ready"], true, "{ready}");
    let bound = sent + 2 * u64::from(BATCHES) + 2;
    for what in ["presentities", "subscriptions", "transactions"] {
        let n = ready[what].as_u64().expect("count");
        assert!(n <= bound, "{what} = {n} > {bound} after {sent} datagrams");
    }
    let grown_mib = rss_kib().saturating_sub(rss_before) / 1024;
    assert!(grown_mib < 256, "RSS grew by {grown_mib} MiB");
    // "A few seconds": keep this test cheap enough for every CI run.
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "robustness run took {:?}",
        started.elapsed()
    );
}
