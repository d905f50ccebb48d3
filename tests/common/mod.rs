//! Test harness: a real node on 127.0.0.1 ephemeral ports (in its own actix System on its
//! own thread) and a small raw SIP client over UDP or TCP.

#![allow(dead_code, unreachable_pub)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub mod binary;

use presenced::config::Config;
use presenced::sip::{Message, Request, Response};

/// Generous: CI machines are slow and shared.
pub const WAIT: Duration = Duration::from_secs(10);

pub struct TestNode {
    pub udp: SocketAddr,
    pub tcp: SocketAddr,
    /// The admin endpoint, when the test's config enables one (`[admin] listen`).
    pub admin: Option<SocketAddr>,
    stop: Option<mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// The sled directory of a DB-only test node (removed after the node stopped).
    _data: Option<tempfile::TempDir>,
}

impl TestNode {
    /// A node with the default config plus `extra` TOML (e.g. a `[presence]` table).
    pub fn start(extra: &str) -> TestNode {
        Self::start_with_hooks(extra, presenced::node::Hooks::default())
    }

    /// As [`TestNode::start`], with an embedder's hooks.
    pub fn start_with_hooks(extra: &str, hooks: presenced::node::Hooks) -> TestNode {
        // `extra` may bring its own [sip] table (it must then list ephemeral ports too).
        let sip = if extra.contains("[sip]") {
            ""
        } else {
            "[sip]\nlisten = [\"udp:127.0.0.1:0\", \"tcp:127.0.0.1:0\"]\n"
        };
        let admin = if extra.contains("[admin]") {
            ""
        } else {
            "[admin]\nlisten = \"\"\n"
        };
        let toml = format!("{sip}{admin}{extra}\n");
        let mut cfg = Config::from_toml_str(&toml).expect("test config parses");
        let mut data = None;
        if !extra.contains("subs_db_mode") {
            cfg.presence.subs_db_mode = presenced::config::SubsDbMode::Memory;
            // `PRESENCED_TEST_SUBS_DB_MODE=3` runs a suite against DB-only nodes (each with its
            // own sled directory): the same behaviour must hold (issue #3).
            if std::env::var("PRESENCED_TEST_SUBS_DB_MODE").as_deref() == Ok("3") {
                let dir = tempfile::tempdir().expect("temp dir");
                cfg.presence.subs_db_mode = presenced::config::SubsDbMode::DbOnly;
                cfg.presence.notifier_processes = 0;
                cfg.node.data_dir = dir.path().join("data");
                data = Some(dir);
            }
        }
        if !extra.contains("publ_cache") {
            cfg.presence.publ_cache = presenced::config::PublCache::Full;
        }
        let (addr_tx, addr_rx) = mpsc::channel();
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            let sys = actix::System::new();
            sys.block_on(async move {
                let packages = presenced::presence::package::PackageRegistry::with_builtin();
                let node = presenced::node::start_with_hooks(&cfg, packages, hooks)
                    .await
                    .expect("node starts");
                addr_tx
                    .send((
                        node.udp_addr.unwrap(),
                        node.tcp_addr.unwrap(),
                        node.admin_addr,
                    ))
                    .unwrap();
                // Wait for the stop signal without blocking the System thread.
                loop {
                    if stop_rx.try_recv().is_ok() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                node.shutdown(Duration::from_millis(10)).await;
            });
        });
        let (udp, tcp, admin) = addr_rx
            .recv_timeout(WAIT)
            .expect("node reports its addresses");
        TestNode {
            udp,
            tcp,
            admin,
            stop: Some(stop_tx),
            thread: Some(thread),
            _data: data,
        }
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A raw SIP user agent on one UDP socket.
pub struct UdpClient {
    pub sock: UdpSocket,
    pub server: SocketAddr,
    /// Messages received but not yet consumed by a `wait_*`.
    backlog: Vec<Message>,
    /// Answer every NOTIFY with this status automatically (None = do not answer).
    pub auto_answer: Option<u16>,
    /// Datagrams from the server that do not parse as complete SIP messages.
    pub incomplete: Vec<String>,
}

impl UdpClient {
    pub fn new(server: SocketAddr) -> UdpClient {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        UdpClient {
            sock,
            server,
            backlog: Vec::new(),
            auto_answer: Some(200),
            incomplete: Vec::new(),
        }
    }

    pub fn port(&self) -> u16 {
        self.sock.local_addr().unwrap().port()
    }

    pub fn send(&self, msg: &str) {
        self.sock.send_to(msg.as_bytes(), self.server).unwrap();
    }

    pub fn send_bytes(&self, msg: &[u8]) {
        self.sock.send_to(msg, self.server).unwrap();
    }

    /// Reads datagrams until `deadline`, parsing them into the backlog.
    fn pump(&mut self, until: Instant) {
        let mut buf = vec![0u8; 70_000];
        while Instant::now() < until {
            match self.sock.recv_from(&mut buf) {
                Ok((n, from)) => {
                    let Ok(msg) = presenced::sip::parse(&buf[..n]) else {
                        // Only a 400 to a request that lacked mandatory headers may be
                        // incomplete; tests that expect one look here.
                        self.incomplete
                            .push(String::from_utf8_lossy(&buf[..n]).into_owned());
                        return;
                    };
                    if let Message::Request(req) = &msg {
                        if let Some(code) = self.auto_answer {
                            let resp = answer(req, code);
                            self.sock.send_to(resp.as_bytes(), from).unwrap();
                        }
                    }
                    self.backlog.push(msg);
                    return;
                }
                Err(_) => continue,
            }
        }
    }

    /// Waits for a message matching `pred` (consuming it), up to `timeout`.
    pub fn wait_for(
        &mut self,
        timeout: Duration,
        pred: impl Fn(&Message) -> bool,
    ) -> Option<Message> {
        let end = Instant::now() + timeout;
        loop {
            if let Some(i) = self.backlog.iter().position(&pred) {
                return Some(self.backlog.remove(i));
            }
            if Instant::now() >= end {
                return None;
            }
            self.pump(end);
        }
    }

    /// Waits for the response with this Call-ID and CSeq method.
    pub fn response(&mut self, call_id: &str, method: &str) -> Response {
        let call_id = call_id.to_string();
        let method = method.to_string();
        match self.wait_for(WAIT, |m| match m {
            Message::Response(r) => r.call_id == call_id && r.cseq.method.as_str() == method,
            _ => false,
        }) {
            Some(Message::Response(r)) => r,
            _ => panic!("no {method} response for {call_id}"),
        }
    }

    /// Waits for a NOTIFY in dialog `call_id`.
    pub fn notify(&mut self, call_id: &str) -> Request {
        self.try_notify(call_id, WAIT)
            .unwrap_or_else(|| panic!("no NOTIFY for {call_id}"))
    }

    pub fn try_notify(&mut self, call_id: &str, timeout: Duration) -> Option<Request> {
        let call_id = call_id.to_string();
        match self.wait_for(
            timeout,
            |m| matches!(m, Message::Request(r) if r.call_id == call_id),
        ) {
            Some(Message::Request(r)) => Some(r),
            _ => None,
        }
    }

    /// Everything that arrives within `window` (for "nothing else came" checks).
    pub fn drain(&mut self, window: Duration) -> Vec<Message> {
        let end = Instant::now() + window;
        while Instant::now() < end {
            self.pump(end);
        }
        std::mem::take(&mut self.backlog)
    }
}

/// A 2xx (or other) answer to a request we received.
pub fn answer(req: &Request, code: u16) -> String {
    let mut s = format!("SIP/2.0 {code} Answer\r\n");
    for v in &req.vias {
        s.push_str(&format!("Via: {}\r\n", v.raw));
    }
    s.push_str(&format!(
        "From: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {} {}\r\nContent-Length: 0\r\n\r\n",
        req.from.raw,
        req.to.raw,
        req.call_id,
        req.cseq.seq,
        req.cseq.method.as_str()
    ));
    s
}

/// A TCP client: one connection, messages framed by Content-Length.
pub struct TcpClient {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl TcpClient {
    pub fn connect(server: SocketAddr) -> TcpClient {
        let stream = TcpStream::connect(server).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        TcpClient {
            stream,
            buf: Vec::new(),
        }
    }

    pub fn local_port(&self) -> u16 {
        self.stream.local_addr().unwrap().port()
    }

    pub fn send(&mut self, msg: &str) {
        self.stream.write_all(msg.as_bytes()).unwrap();
    }

    /// Next complete message, or None after `timeout`.
    pub fn recv(&mut self, timeout: Duration) -> Option<Message> {
        let end = Instant::now() + timeout;
        loop {
            if let Ok(Some(n)) = presenced::sip::frame_length(&self.buf, 1 << 20) {
                let frame: Vec<u8> = self.buf.drain(..n).collect();
                return Some(presenced::sip::parse(&frame).expect("valid SIP over TCP"));
            }
            if Instant::now() >= end {
                return None;
            }
            let mut chunk = [0u8; 8192];
            match self.stream.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(_) => continue,
            }
        }
    }
}

/// A PIDF document for `entity` with one tuple.
pub fn pidf(entity: &str, tuple_id: &str, basic: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\r\n<presence xmlns=\"urn:ietf:params:xml:ns:pidf\" entity=\"{entity}\">\r\n<tuple id=\"{tuple_id}\"><status><basic>{basic}</basic></status></tuple>\r\n</presence>\r\n"
    )
}

/// Builds a request with the given extra header lines (each ending in \r\n) and body.
pub fn request(
    method: &str,
    uri: &str,
    port: u16,
    call_id: &str,
    cseq: u32,
    extra: &str,
    body: &str,
) -> String {
    format!(
        "{method} {uri} SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK{call_id}{cseq}{method};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:watcher@example.com>;tag=ft-{call_id}\r\n\
         To: <{uri}>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: {cseq} {method}\r\n\
         {extra}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

pub fn publish(uri: &str, port: u16, call_id: &str, cseq: u32, extra: &str, body: &str) -> String {
    let ct = if body.is_empty() {
        String::new()
    } else {
        "Content-Type: application/pidf+xml\r\n".to_string()
    };
    request(
        "PUBLISH",
        uri,
        port,
        call_id,
        cseq,
        &format!("Event: presence\r\n{ct}{extra}"),
        body,
    )
}

pub fn subscribe(uri: &str, port: u16, call_id: &str, cseq: u32, extra: &str) -> String {
    request(
        "SUBSCRIBE",
        uri,
        port,
        call_id,
        cseq,
        &format!("Event: presence\r\nContact: <sip:watcher@127.0.0.1:{port}>\r\n{extra}"),
        "",
    )
}

/// An in-dialog SUBSCRIBE (To carries our tag).
pub fn resubscribe(
    uri: &str,
    port: u16,
    call_id: &str,
    cseq: u32,
    to_tag: &str,
    expires: u32,
) -> String {
    format!(
        "SUBSCRIBE sip:127.0.0.1 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK{call_id}{cseq}re;rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:watcher@example.com>;tag=ft-{call_id}\r\n\
         To: <{uri}>;tag={to_tag}\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: {cseq} SUBSCRIBE\r\n\
         Event: presence\r\n\
         Contact: <sip:watcher@127.0.0.1:{port}>\r\n\
         Expires: {expires}\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

pub fn header<'a>(resp: &'a Response, name: &str) -> Option<&'a str> {
    resp.header(name)
}

impl TestNode {
    /// A JSON-RPC call to the node's admin endpoint; the `result`, or panics on an error.
    pub fn rpc(&self, method: &str, params: serde_json::Value) -> serde_json::Value {
        let v = self.rpc_raw(method, params);
        assert!(v.get("error").is_none(), "{method}: {v}");
        v["result"].clone()
    }

    /// `GET path` on the node's admin endpoint: the JSON answer (or the text as a JSON
    /// string when it is not JSON, e.g. `/metrics`).
    pub fn admin_get(&self, path: &str) -> serde_json::Value {
        admin_get_at(
            self.admin.expect("this TestNode has an admin endpoint"),
            path,
        )
    }

    /// A JSON-RPC call; the whole response object.
    pub fn rpc_raw(&self, method: &str, params: serde_json::Value) -> serde_json::Value {
        let admin = self.admin.expect("this TestNode has an admin endpoint");
        let body =
            serde_json::json!({"jsonrpc": "2.0", "method": method, "params": params, "id": 1});
        let mut resp = http_agent()
            .post(&format!("http://{admin}/rpc"))
            .header("Content-Type", "application/json")
            .send(body.to_string())
            .expect("HTTP exchange");
        let text = resp.body_mut().read_to_string().unwrap_or_default();
        serde_json::from_str(&text).expect("JSON-RPC answer")
    }
}

/// Polls `cond` every 50 ms until it holds or `within` has passed; whether it held.
pub fn eventually(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + within;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// An HTTP client for the admin endpoint: non-2xx answers are answers, not errors.
pub fn http_agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(WAIT))
        .build()
        .into()
}

/// `GET path` on an admin endpoint at `admin`: the JSON answer (or the text as a JSON string
/// when it is not JSON, e.g. `/metrics`).
pub fn admin_get_at(admin: SocketAddr, path: &str) -> serde_json::Value {
    let mut resp = http_agent()
        .get(&format!("http://{admin}{path}"))
        .call()
        .expect("HTTP exchange with the admin endpoint");
    let text = resp.body_mut().read_to_string().unwrap_or_default();
    serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text))
}
