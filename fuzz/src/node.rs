//! `node` target: full request handling of one real node, fed a sequence of datagrams from
//! eight UDP sources and one TCP connection.
//!
//! One node per fuzzing process, started lazily (`OnceLock`) by [`node`] inside an actix
//! System on its own thread: memory mode (`subs_db_mode = 0`, `publ_cache = 2`), SIP on
//! `udp:127.0.0.1:0` and `tcp:127.0.0.1:0`, admin off, small limits ([`CONFIG`]). Its
//! state carries over from one input to the next (that is the point: sequences), so a
//! finding may need the inputs before it to reproduce.
//!
//! Input layout (see [`records`]): byte 0 = NOTIFY-answer mask (bit i: client i answers the
//! requests it receives), byte 1 = error mask (bit i: client i answers 481 instead of 200);
//! then up to [`MAX_RECORDS`] records `flags, len_hi, len_lo, payload[len]` where
//! `flags & 7` is the client and `flags & 0x80` sends the payload over the TCP connection
//! instead. In payloads `$TAG` becomes the last dialog tag and `$ETAG` the last SIP-ETag the
//! node handed out, so in-dialog SUBSCRIBEs and PUBLISH refreshes can reach live state, and
//! `$TCP` the TCP connection's local address (a Contact the node can reach over TCP).
//!
//! Properties: no panic anywhere in the process (a panic hook aborts); every message the
//! node sends parses as SIP, except a 400/413/505 echoing a request that was itself
//! malformed (its salvaged headers may lack To or From; on TCP the stream is framed as the
//! node frames it to find such requests); every [`CHECK_EVERY`] inputs an OPTIONS gets a
//! 200 within 1 s and VmRSS stays under [`RSS_LIMIT_KB`] (else abort).
//!
//! Invariant: the node may only send to loopback. Contacts and Vias are fuzzed, so the
//! target refuses to start unless the process is in a network namespace with loopback only
//! (`unshare -rn`, see README), or `PRESENCED_FUZZ_ALLOW_NET=1` is set.

use std::collections::VecDeque;
use std::io::{ErrorKind, Read};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::sync::{mpsc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use presenced::config::Config;
use presenced::sip::{self, Message, Method, OutResponse, ParseError, Request};

use crate::node_input::{check_rss, first_via, replace, via_key, write_all, CHECK_EVERY};
pub use crate::node_input::{encode, isolated, records, Record, MAX_RECORDS, RSS_LIMIT_KB};

/// UDP client sockets; client i binds 127.0.0.1:`CLIENT_PORT0 + i` when free.
pub const CLIENTS: usize = 8;
/// Port of client 0 (the seeds' Via sent-by and Contact ports are `5070 + i`).
pub const CLIENT_PORT0: u16 = 5070;
/// Finding F6 (open, see README): a SUBSCRIBE whose Contact URI holds a character no URI
/// may hold (`{`, `|`, `^` …) is accepted, and its NOTIFYs carry that Request-URI, which
/// `sip::parse` rejects. While open, such NOTIFYs are tolerated; set to `false` once fixed
/// (then `regressions/node/f6-*` guards it).
const F6_OPEN: bool = false;
/// Malformed requests remembered for matching the node's echoed 400s.
const MALFORMED_KEPT: usize = 4096;
/// Longest wait for the node's answer to one request.
const RECORD_WAIT: Duration = Duration::from_millis(5);
/// After the last record: stop once nothing arrived for this long …
const QUIET: Duration = Duration::from_micros(500);
/// … or after this long in all.
const SETTLE_MAX: Duration = Duration::from_millis(5);

/// The node's configuration: memory only, small limits so state stays bounded.
pub const CONFIG: &str = r#"
[sip]
listen = ["udp:127.0.0.1:0", "tcp:127.0.0.1:0"]
max_message_size = 3000
[admin]
listen = ""
[presence]
subs_db_mode = 0
publ_cache = 2
max_expires = 60
[limits]
mailbox_size = 64
max_subscriptions_per_presentity = 16
max_subscriptions_per_watcher = 64
max_publications_per_presentity = 16
max_body_size = 16384
max_tcp_connections = 32
tcp_idle_timeout = 10
tcp_message_timeout = 2
max_pending_notifies = 4096
max_server_transactions = 50000
"#;

/// `node` target entry: feeds one input to the process's node (started on first use).
pub fn node(data: &[u8]) {
    static HARNESS: OnceLock<Mutex<Harness>> = OnceLock::new();
    let h = HARNESS.get_or_init(|| Mutex::new(Harness::start()));
    // A poisoned lock means a harness panic, which has already aborted the process.
    let mut h = h.lock().unwrap_or_else(|e| e.into_inner());
    h.run(data);
}

/// What the node owes us for a payload we sent.
#[derive(Clone, PartialEq, Eq)]
enum Owed {
    Nothing,
    Answer,
    /// A 400/413/505 built from salvaged headers (may not parse itself); the [`via_key`]
    /// of its top Via.
    Echo(String),
}

fn owed(payload: &[u8]) -> Owed {
    match sip::parse(payload) {
        Ok(Message::Request(r)) if r.method != Method::Ack => Owed::Answer,
        Err(ParseError::BadRequest { echo, .. }) => match echo.vias.first() {
            Some(v) => Owed::Echo(via_key(v)),
            None => Owed::Nothing,
        },
        _ => Owed::Nothing,
    }
}

/// Where a message from the node came in (and where our answer goes back).
#[derive(Clone, Copy)]
enum Channel {
    Udp(usize, SocketAddr),
    Tcp,
}

struct Harness {
    node_udp: SocketAddr,
    node_tcp: SocketAddr,
    clients: Vec<UdpSocket>,
    probe: UdpSocket,
    tcp: Option<TcpStream>,
    tcp_buf: Vec<u8>,
    /// What we wrote on the TCP connection and the node has not framed yet (as we see it).
    tcp_sent: Vec<u8>,
    last_tag: Vec<u8>,
    last_etag: Vec<u8>,
    inputs: u64,
    /// Top Vias ([`via_key`]) of the malformed requests we sent lately: the node may
    /// answer them with a 400/413/505 that lacks To or From.
    malformed: VecDeque<String>,
    answer_mask: u8,
    error_mask: u8,
    got_response: bool,
    /// `PRESENCED_FUZZ_TRACE` set: print the first line of every message from the node.
    trace: bool,
}

pub(crate) fn abort(why: &str) -> ! {
    eprintln!("node target: {why}");
    std::process::abort()
}

impl Harness {
    fn start() -> Harness {
        if !isolated() && std::env::var_os("PRESENCED_FUZZ_ALLOW_NET").is_none() {
            abort(
                "refusing to run: fuzzed Contacts would make the node send beyond loopback. \
                 Run in a loopback-only network namespace (unshare -rn, see fuzz/README.md) \
                 or set PRESENCED_FUZZ_ALLOW_NET=1",
            );
        }
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            previous(info);
            abort("panic (in the node or the harness)");
        }));
        let cfg = Config::from_toml_str(CONFIG).unwrap_or_else(|e| abort(&format!("{e}")));
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let sys = actix::System::new();
            sys.block_on(async move {
                match presenced::node::start(&cfg).await {
                    Ok(node) => {
                        let _ = tx.send(node.udp_addr.zip(node.tcp_addr).ok_or("no address"));
                        // The handle (and so the node) lives as long as the process.
                        let _node = node;
                        std::future::pending::<()>().await;
                    }
                    Err(e) => {
                        eprintln!("node target: start: {e}");
                        let _ = tx.send(Err("start failed"));
                    }
                }
            });
        });
        let (node_udp, node_tcp) = match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(Ok(a)) => a,
            Ok(Err(e)) => abort(e),
            Err(e) => abort(&format!("node did not start: {e}")),
        };
        let clients = (0..CLIENTS as u16)
            .map(|i| {
                let s = UdpSocket::bind(("127.0.0.1", CLIENT_PORT0 + i))
                    .or_else(|_| UdpSocket::bind("127.0.0.1:0"))
                    .unwrap_or_else(|e| abort(&format!("bind: {e}")));
                s.set_nonblocking(true)
                    .unwrap_or_else(|e| abort(&format!("{e}")));
                s
            })
            .collect();
        let probe = UdpSocket::bind("127.0.0.1:0").unwrap_or_else(|e| abort(&format!("bind: {e}")));
        let _ = probe.set_read_timeout(Some(Duration::from_millis(50)));
        Harness {
            node_udp,
            node_tcp,
            clients,
            probe,
            tcp: None,
            tcp_buf: Vec::new(),
            tcp_sent: Vec::new(),
            last_tag: b"none".to_vec(),
            last_etag: b"none".to_vec(),
            inputs: 0,
            malformed: VecDeque::new(),
            answer_mask: 0,
            error_mask: 0,
            got_response: false,
            trace: std::env::var_os("PRESENCED_FUZZ_TRACE").is_some(),
        }
    }

    fn run(&mut self, data: &[u8]) {
        self.inputs += 1;
        let (answer, error, recs) = records(data);
        self.answer_mask = answer;
        self.error_mask = error;
        self.sweep();
        for r in recs {
            if r.tcp {
                self.connect_tcp();
            }
            let payload = self.substitute(r.payload);
            let owed = owed(&payload);
            self.note_malformed(&owed);
            self.got_response = false;
            if self.trace {
                let line = payload.split(|&b| b == b'\r').next().unwrap_or(&payload);
                let to = if r.tcp {
                    "tcp".into()
                } else {
                    format!("udp client {}", r.client)
                };
                eprintln!("{to} → node: {}", String::from_utf8_lossy(line));
            }
            if r.tcp {
                self.send_tcp(&payload);
            } else {
                let _ = self.clients[r.client].send_to(&payload, self.node_udp);
            }
            if owed != Owed::Nothing {
                let end = Instant::now() + RECORD_WAIT;
                while !self.got_response && Instant::now() < end {
                    if !self.sweep() {
                        std::thread::sleep(Duration::from_micros(50));
                    }
                }
            }
        }
        self.settle();
        self.tcp = None;
        self.tcp_buf.clear();
        self.tcp_sent.clear();
        if self.inputs == 1 || self.inputs.is_multiple_of(CHECK_EVERY) {
            self.check_alive();
            check_rss(self.inputs);
        }
    }

    /// Replaces `$ETAG` and `$TAG` with the last values the node handed out, and `$TCP`
    /// with the TCP connection's local address.
    fn substitute(&self, payload: &[u8]) -> Vec<u8> {
        let once = replace(payload, b"$ETAG", &self.last_etag);
        let twice = replace(&once, b"$TAG", &self.last_tag);
        let local = self.tcp.as_ref().and_then(|s| s.local_addr().ok());
        let local = local.map_or_else(|| "127.0.0.1:5070".to_string(), |a| a.to_string());
        replace(&twice, b"$TCP", local.as_bytes())
    }

    fn connect_tcp(&mut self) {
        if self.tcp.is_none() {
            let Ok(s) = TcpStream::connect_timeout(&self.node_tcp, Duration::from_millis(200))
            else {
                return;
            };
            let _ = s.set_nonblocking(true);
            let _ = s.set_nodelay(true);
            self.tcp = Some(s);
            self.tcp_buf.clear();
            self.tcp_sent.clear();
        }
    }

    fn send_tcp(&mut self, payload: &[u8]) {
        self.connect_tcp();
        if let Some(s) = &mut self.tcp {
            if write_all(s, payload).is_err() {
                self.tcp = None;
                self.tcp_buf.clear();
                self.tcp_sent.clear();
                return;
            }
        }
        self.frame_sent(payload);
    }

    /// Remembers the top Via of a malformed request (the last [`MALFORMED_KEPT`]).
    fn note_malformed(&mut self, owed: &Owed) {
        if let Owed::Echo(key) = owed {
            if self.malformed.len() == MALFORMED_KEPT {
                self.malformed.pop_front();
            }
            self.malformed.push_back(key.clone());
        }
    }

    /// Frames what we wrote on TCP as the node does, noting a malformed request (one the
    /// node may answer with a 400/413 built from salvaged headers).
    fn frame_sent(&mut self, payload: &[u8]) {
        self.tcp_sent.extend_from_slice(payload);
        loop {
            match sip::frame_length(&self.tcp_sent, 1 << 20) {
                Ok(Some(n)) => {
                    let frame: Vec<u8> = self.tcp_sent.drain(..n).collect();
                    self.note_malformed(&owed(&frame));
                }
                other => {
                    let head = self.tcp_sent.windows(4).position(|w| w == b"\r\n\r\n");
                    if let Some(h) = head {
                        self.note_malformed(&owed(&self.tcp_sent[..h + 4]));
                    }
                    if other.is_err() {
                        self.tcp_sent.clear();
                    }
                    return;
                }
            }
        }
    }

    /// Waits until nothing arrived for [`QUIET`] (at most [`SETTLE_MAX`]).
    fn settle(&mut self) {
        let start = Instant::now();
        let mut last = start;
        while last.elapsed() < QUIET && start.elapsed() < SETTLE_MAX {
            if self.sweep() {
                last = Instant::now();
            } else {
                std::thread::sleep(Duration::from_micros(50));
            }
        }
    }

    /// Reads everything waiting on the sockets; whether anything came.
    fn sweep(&mut self) -> bool {
        let mut got = false;
        let mut buf = [0u8; 65_536];
        for i in 0..CLIENTS {
            while let Ok((n, from)) = self.clients[i].recv_from(&mut buf) {
                got = true;
                let msg = buf[..n].to_vec();
                self.on_message(&msg, Channel::Udp(i, from));
            }
        }
        let Some(s) = &mut self.tcp else {
            return got;
        };
        match s.read(&mut buf) {
            Ok(0) => self.tcp = None,
            Ok(n) => {
                got = true;
                self.tcp_buf.extend_from_slice(&buf[..n]);
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(_) => self.tcp = None,
        }
        loop {
            match sip::frame_length(&self.tcp_buf, 1 << 20) {
                Ok(Some(n)) => {
                    let frame: Vec<u8> = self.tcp_buf.drain(..n).collect();
                    if !frame.iter().all(|b| matches!(b, b'\r' | b'\n')) {
                        self.on_message(&frame, Channel::Tcp);
                    }
                }
                Ok(None) => break,
                Err(e) => panic!(
                    "the node's TCP stream does not frame ({e:?}): {:?}",
                    String::from_utf8_lossy(&self.tcp_buf)
                ),
            }
        }
        got
    }

    fn on_message(&mut self, bytes: &[u8], via: Channel) {
        if self.trace {
            let line = bytes.split(|&b| b == b'\r').next().unwrap_or(bytes);
            let at = match via {
                Channel::Udp(i, _) => format!("udp client {i}"),
                Channel::Tcp => "tcp".into(),
            };
            eprintln!("  node → {at}: {}", String::from_utf8_lossy(line));
        }
        match sip::parse(bytes) {
            Ok(Message::Response(r)) => {
                self.got_response = true;
                let ok = (200..300).contains(&r.status);
                if ok && r.cseq.method == Method::Subscribe {
                    if let Some(t) = &r.to.tag {
                        self.last_tag = t.clone().into_bytes();
                    }
                }
                if let (true, Some(e)) = (ok, r.header("SIP-ETag")) {
                    self.last_etag = e.trim().as_bytes().to_vec();
                }
            }
            Ok(Message::Request(req)) => {
                if let Some(t) = &req.from.tag {
                    self.last_tag = t.clone().into_bytes();
                }
                self.answer(&req, via);
            }
            Err(e) => {
                let echo = [&b"SIP/2.0 400 "[..], b"SIP/2.0 413 ", b"SIP/2.0 505 "]
                    .iter()
                    .any(|p| bytes.starts_with(p));
                let ours = first_via(bytes).is_some_and(|v| self.malformed.contains(&via_key(&v)));
                // F5 (open): a control character folded into a request header is echoed.
                let head = bytes.split(|&b| b == b'\n').take_while(|l| l.len() > 1);
                let f5 = head.map(|l| {
                    String::from_utf8_lossy(l)
                        .trim_end_matches('\r')
                        .to_string()
                });
                let f5 = crate::F5_OPEN && f5.into_iter().any(|l| crate::has_control(&l));
                // F6 (open): a Contact URI the node accepted but no Request-URI may hold.
                let f6 = F6_OPEN
                    && bytes.starts_with(b"NOTIFY ")
                    && e.to_string().contains("Malformed Request-URI");
                assert!(
                    f5 || f6 || (echo && ours),
                    "the node sent a message that does not parse ({e}):\n{}",
                    String::from_utf8_lossy(bytes)
                );
                self.got_response = true;
            }
        }
    }

    /// Answers a request from the node (a NOTIFY) when the input's masks say so.
    fn answer(&mut self, req: &Request, via: Channel) {
        let bit = match via {
            Channel::Udp(i, _) => 1u8 << i,
            Channel::Tcp => 1,
        };
        if self.answer_mask & bit == 0 {
            return;
        }
        let (code, reason) = if self.error_mask & bit != 0 {
            (481, "Subscription Does Not Exist")
        } else {
            (200, "OK")
        };
        let resp = OutResponse::to(req, code, reason, self.node_udp).encode("presenced-fuzz");
        match via {
            Channel::Udp(i, from) => {
                let _ = self.clients[i].send_to(&resp, from);
            }
            Channel::Tcp => self.send_tcp(&resp),
        }
    }

    /// An OPTIONS from a separate socket must get a 200 within 1 s (resent every 200 ms).
    fn check_alive(&mut self) {
        let port = self.probe.local_addr().map(|a| a.port()).unwrap_or(0);
        let call_id = format!("fuzz-alive-{}", self.inputs);
        let msg = format!(
            "OPTIONS sip:fuzz@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK{call_id};rport\r\nMax-Forwards: 70\r\nFrom: <sip:probe@127.0.0.1>;tag=p\r\nTo: <sip:fuzz@127.0.0.1>\r\nCall-ID: {call_id}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
        );
        let start = Instant::now();
        let mut sent = start - Duration::from_secs(1);
        let mut buf = [0u8; 65_536];
        let mut seen = String::from("nothing");
        while start.elapsed() < Duration::from_secs(1) {
            if sent.elapsed() >= Duration::from_millis(200) {
                let _ = self.probe.send_to(msg.as_bytes(), self.node_udp);
                sent = Instant::now();
            }
            let Ok((n, _)) = self.probe.recv_from(&mut buf) else {
                continue;
            };
            if let Ok(Message::Response(r)) = sip::parse(&buf[..n]) {
                if r.call_id == call_id && r.status == 200 {
                    return;
                }
                seen = format!("{} {}", r.status, r.reason);
            }
        }
        abort(&format!(
            "no 200 to OPTIONS within 1 s after {} inputs (last seen: {seen})",
            self.inputs
        ));
    }
}
