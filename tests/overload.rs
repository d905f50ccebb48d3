//! Overload at small scale (issue #8 item 2). A node with small limits (`mailbox_size = 16`,
//! `max_server_transactions = 256`) is first measured: requests served per second (answered
//! with anything but a load-shedding `503 Service Unavailable`) by a closed loop of 16
//! outstanding requests for 1 s. Then three UDP clients offer 3× that rate for 5 s — at most
//! 120 000 requests: PUBLISHes (modifies with SIP-If-Match once an ETag is known) and fetch
//! SUBSCRIBEs over 20 presentities per client. Asserted: every datagram from the node is valid
//! SIP and every 503 carries Retry-After; the test process's RSS (the node runs in it) grows
//! by less than 200 MB; a subscription accepted before the storm gets the NOTIFY of a change
//! published during it, before the storm ends; a normal PUBLISH gets 200 within 5 s after.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use common::*;
use presenced::sip::{Message, Response};

const WATCHED: &str = "sip:watched@example.com";
const THREADS: usize = 3;
const PER_THREAD: usize = 40_000;
const STORM: Duration = Duration::from_secs(5);
/// Offered load over measured capacity.
const OVERLOAD: f64 = 3.0;
/// Pacing step of the storm clients.
const TICK: Duration = Duration::from_millis(5);
/// Bound on the test process's RSS growth over the storm (the node runs in-process).
const RSS_BOUND: u64 = 200 * 1024 * 1024;
const PRESENTITIES: usize = 20;

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// One load client: its socket, the ETags it learnt, and what it saw.
struct Client {
    id: usize,
    sock: UdpSocket,
    port: u16,
    etags: HashMap<usize, String>,
    sent: usize,
    statuses: BTreeMap<u16, usize>,
    /// Answers other than a load-shedding 503.
    served: usize,
    notifies: usize,
    invalid: Vec<String>,
    no_retry_after: usize,
}

impl Client {
    fn new(id: usize) -> Client {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_nonblocking(true).unwrap();
        let port = sock.local_addr().unwrap().port();
        Client {
            id,
            sock,
            port,
            etags: HashMap::new(),
            sent: 0,
            statuses: BTreeMap::new(),
            served: 0,
            notifies: 0,
            invalid: Vec::new(),
            no_retry_after: 0,
        }
    }

    fn uri(&self, k: usize) -> String {
        format!("sip:storm{}x{k}@example.com", self.id)
    }

    /// Sends request number `sent`: every fourth a fetch (from one of 50 watchers), else a
    /// PUBLISH of presentity `sent % 20` — a modify when its ETag is known. False when the
    /// socket buffer is full.
    fn send_next(&mut self, server: SocketAddr) -> bool {
        let i = self.sent;
        let k = i % PRESENTITIES;
        let uri = self.uri(k);
        let call = format!("s{}-{i}", self.id);
        let msg = if i % 4 == 3 {
            subscribe(&uri, self.port, &call, 1, "Expires: 0\r\n").replace(
                "From: <sip:watcher@example.com>",
                &format!("From: <sip:w{}@example.com>", i % 50),
            )
        } else {
            let body = pidf(
                &uri,
                &format!("t{i}"),
                if i.is_multiple_of(2) {
                    "open"
                } else {
                    "closed"
                },
            );
            let extra = match self.etags.get(&k) {
                Some(e) => format!("SIP-If-Match: {e}\r\nExpires: 60\r\n"),
                None => "Expires: 60\r\n".to_string(),
            };
            publish(&uri, self.port, &call, 1, &extra, &body)
        };
        let ok = self.sock.send_to(msg.as_bytes(), server).is_ok();
        self.sent += usize::from(ok);
        ok
    }

    fn on_response(&mut self, r: &Response) {
        *self.statuses.entry(r.status).or_default() += 1;
        let shed = r.status == 503 && r.reason == "Service Unavailable";
        self.served += usize::from(!shed);
        if r.status == 503 && r.header("Retry-After").is_none() {
            self.no_retry_after += 1;
        }
        if r.cseq.method.as_str() != "PUBLISH" {
            return;
        }
        let Some(k) = r
            .call_id
            .rsplit('-')
            .next()
            .and_then(|i| i.parse::<usize>().ok())
            .map(|i| i % PRESENTITIES)
        else {
            return;
        };
        match (r.status, r.header("SIP-ETag")) {
            (200, Some(e)) => {
                self.etags.insert(k, e.to_string());
            }
            (412, _) => {
                self.etags.remove(&k);
            }
            _ => {}
        }
    }

    /// Reads everything available; answers NOTIFYs (of the fetches) with 200. The number of
    /// responses read.
    fn drain(&mut self) -> usize {
        let mut buf = vec![0u8; 70_000];
        let mut responses = 0;
        while let Ok((n, from)) = self.sock.recv_from(&mut buf) {
            match presenced::sip::parse(&buf[..n]) {
                Ok(Message::Response(r)) => {
                    responses += 1;
                    self.on_response(&r);
                }
                Ok(Message::Request(r)) => {
                    self.notifies += 1;
                    let _ = self.sock.send_to(answer(&r, 200).as_bytes(), from);
                }
                Err(e) => self
                    .invalid
                    .push(format!("{e:?}: {}", String::from_utf8_lossy(&buf[..n]))),
            }
        }
        responses
    }
}

/// Requests served per second to a closed loop of 16 outstanding requests, for `during`.
fn capacity(server: SocketAddr, during: Duration) -> f64 {
    let mut c = Client::new(99);
    let mut outstanding = 0usize;
    let mut quiet_since = Instant::now();
    let started = Instant::now();
    while started.elapsed() < during {
        while outstanding < 16 && c.send_next(server) {
            outstanding += 1;
        }
        let got = c.drain();
        outstanding = outstanding.saturating_sub(got);
        if got > 0 {
            quiet_since = Instant::now();
        } else if quiet_since.elapsed() > Duration::from_millis(200) {
            outstanding = 0; // lost ones: refill the window
        } else {
            std::thread::sleep(Duration::from_micros(200));
        }
    }
    c.served as f64 / started.elapsed().as_secs_f64()
}

/// One storm client: offers `rate` requests per second for [`STORM`] (at most
/// [`PER_THREAD`]), then reads late answers for 0.5 s. Returns it and when it stopped sending.
fn storm(server: SocketAddr, id: usize, rate: f64) -> (Client, Instant) {
    let mut c = Client::new(id);
    let started = Instant::now();
    while c.sent < PER_THREAD && started.elapsed() < STORM {
        let due = ((started.elapsed().as_secs_f64() * rate) as usize).min(PER_THREAD);
        while c.sent < due && c.send_next(server) {}
        c.drain();
        std::thread::sleep(TICK);
    }
    let ended = Instant::now();
    while ended.elapsed() < Duration::from_millis(500) {
        c.drain();
        std::thread::sleep(Duration::from_millis(10));
    }
    (c, ended)
}

/// Sends PUBLISHes of `tuple` to WATCHED over TCP (so that no datagram the flooded UDP
/// socket drops is waited for) until one is answered 200, retrying at once after a 503; how
/// long that took.
fn publish_until_ok(node: &TestNode, tuple: &str, within: Duration) -> Option<Duration> {
    let mut p = TcpClient::connect(node.tcp);
    let port = p.local_port();
    let started = Instant::now();
    let mut attempt = 0;
    while started.elapsed() < within {
        attempt += 1;
        let call = format!("{tuple}-{attempt}");
        let body = pidf(WATCHED, tuple, "open");
        p.send(&publish(WATCHED, port, &call, 1, "Expires: 600\r\n", &body));
        let deadline = Instant::now() + Duration::from_millis(500);
        while Instant::now() < deadline {
            match p.recv(Duration::from_millis(100)) {
                Some(Message::Response(r)) if r.call_id == call && r.status == 200 => {
                    return Some(started.elapsed());
                }
                Some(Message::Response(r)) if r.call_id == call => break,
                _ => {}
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

/// The next NOTIFY of the "watch" dialog whose body mentions `tuple`.
fn notify_with(watcher: &mut UdpClient, tuple: &str, within: Duration) -> bool {
    watcher
        .wait_for(within, |m| {
            matches!(m, Message::Request(r) if r.call_id == "watch"
                && String::from_utf8_lossy(&r.body).contains(tuple))
        })
        .is_some()
}

#[test]
fn overload_keeps_answering_bounded_and_notifying_and_recovers() {
    let node = TestNode::start(
        "[limits]\nmailbox_size = 16\nmax_server_transactions = 256\n\
         max_publications_per_presentity = 8\n",
    );
    // A subscription accepted before the storm.
    let mut watcher = UdpClient::new(node.udp);
    let port = watcher.port();
    watcher.send(&subscribe(WATCHED, port, "watch", 1, "Expires: 600\r\n"));
    assert_eq!(watcher.response("watch", "SUBSCRIBE").status, 200);
    watcher.notify("watch");
    let rss_before = rss_bytes();
    let capacity = capacity(node.udp, Duration::from_secs(1)).max(100.0);
    let rate = capacity * OVERLOAD / THREADS as f64;

    let storm_started = Instant::now();
    let storms: Vec<_> = (0..THREADS)
        .map(|id| {
            let server = node.udp;
            std::thread::spawn(move || storm(server, id, rate))
        })
        .collect();

    // During the storm: a change of the watched presentity reaches its watcher.
    std::thread::sleep(Duration::from_millis(1000));
    let published = publish_until_ok(&node, "during-storm", Duration::from_millis(3500));
    let notified = notify_with(&mut watcher, "during-storm", Duration::from_secs(3));
    let notified_at = Instant::now();
    let done: Vec<(Client, Instant)> = storms.into_iter().map(|h| h.join().unwrap()).collect();
    let rss_after = rss_bytes();
    let storm_ended = done.iter().map(|(_, e)| *e).min().unwrap();

    let sent: usize = done.iter().map(|(c, _)| c.sent).sum();
    let served: usize = done.iter().map(|(c, _)| c.served).sum();
    let mut statuses = BTreeMap::new();
    for (c, _) in &done {
        for (k, v) in &c.statuses {
            *statuses.entry(*k).or_insert(0) += v;
        }
    }
    let answered: usize = statuses.values().sum();
    let secs = (storm_ended - storm_started).as_secs_f64();
    eprintln!(
        "capacity {capacity:.0}/s served; storm: offered {:.0}/s ({sent} in {secs:.1} s), \
         served {:.0}/s, answered {answered} {statuses:?}, NOTIFYs to fetches {}; \
         RSS {} → {} MB; watched PUBLISH took {published:?}, its NOTIFY {:?} into the storm",
        sent as f64 / secs,
        served as f64 / secs,
        done.iter().map(|(c, _)| c.notifies).sum::<usize>(),
        rss_before >> 20,
        rss_after >> 20,
        notified_at - storm_started,
    );

    for (c, _) in &done {
        assert!(c.invalid.is_empty(), "invalid SIP: {:?}", &c.invalid[..1]);
        assert_eq!(c.no_retry_after, 0, "503 without Retry-After");
    }
    assert!(
        served > 0,
        "the node served nothing during the storm: {statuses:?}"
    );
    // Overloaded indeed: a good part of the offered requests was shed (503) or lost.
    assert!(
        (sent - served.min(sent)) * 5 > sent,
        "not overloaded: {served} of {sent} requests served"
    );
    assert!(
        published.is_some(),
        "the watched PUBLISH never got a 200 during the storm"
    );
    assert!(
        notified,
        "no NOTIFY with the state published during the storm"
    );
    assert!(
        notified_at < storm_ended,
        "the NOTIFY came only after the storm"
    );
    let grew = rss_after.saturating_sub(rss_before);
    assert!(grew < RSS_BOUND, "RSS grew by {} MB", grew >> 20);

    // After the storm, a normal PUBLISH is served again within seconds, and notified.
    let recovered = publish_until_ok(&node, "after-storm", Duration::from_secs(5));
    eprintln!("after the storm, PUBLISH 200 after {recovered:?}");
    assert!(recovered.is_some(), "no 200 within 5 s after the storm");
    assert!(
        notify_with(&mut watcher, "after-storm", WAIT),
        "no NOTIFY after the storm"
    );
}
