//! Interop with Kamailio 5.6 as a front proxy (issue #8 item 5): a real `presenced` binary
//! and a real `kamailio` process (config `tests/kamailio/front-proxy.cfg`: in-memory
//! registrar, `record_route()` + `t_relay` of PUBLISH/SUBSCRIBE to presenced, in-dialog
//! requests by `loose_route`), both on free 127.0.0.1 UDP ports, driven by this test's own
//! UDP user agents, which talk only to Kamailio.
//!
//! Checked: the watcher registers; its SUBSCRIBE reaches presenced through Kamailio
//! (presenced stores Kamailio's Record-Route as the dialog's route set); every NOTIFY the
//! watcher receives has Kamailio's Via on top and presenced's below it (it went through the
//! proxy) with the right Subscription-State and body; a PUBLISH through Kamailio reaches the
//! watcher as a PIDF NOTIFY through Kamailio; the watcher's 200s to NOTIFYs travel back
//! through Kamailio to presenced; an un-SUBSCRIBE (Expires: 0) loose-routed by Kamailio ends
//! the dialog (terminated NOTIFY through Kamailio, no subscription left in presenced).
//!
//! The 200 to SUBSCRIBE carries Kamailio's Record-Route (RFC 3261 §12.1.1), from which the
//! watcher builds the route set of its in-dialog requests.
//!
//! Kamailio comes from Debian's `kamailio` package (`.ci/setup` installs it). When it is
//! missing this test FAILS with that instruction; it never skips. The Kamailio process group
//! is terminated when the guard drops, also when an assertion fails.

mod common;

use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::binary::{free_port, BinaryNode};
use common::{admin_get_at, pidf, publish, request, subscribe, UdpClient, WAIT};
use presenced::sip::{Message, Request, Response};
use serde_json::Value;

const ALICE: &str = "sip:alice@example.com";
const ALICE_PATH: &str = "sip%3Aalice%40example.com";

/// Where Debian (and a source install) put Kamailio's modules.
const MODULE_DIRS: [&str; 4] = [
    "/usr/lib/x86_64-linux-gnu/kamailio/modules",
    "/usr/lib/aarch64-linux-gnu/kamailio/modules",
    "/usr/lib/kamailio/modules",
    "/usr/local/lib64/kamailio/modules",
];

/// The `kamailio` executable (Debian installs it in /usr/sbin, often not on a user's PATH);
/// panics with the fix when it is not installed.
fn kamailio_binary() -> PathBuf {
    let on_path = Command::new("kamailio")
        .arg("-v")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if on_path {
        return PathBuf::from("kamailio");
    }
    let sbin = PathBuf::from("/usr/sbin/kamailio");
    assert!(
        sbin.exists(),
        "kamailio is not installed: run `.ci/setup` (installs Debian's `kamailio` package, \
         which provides /usr/sbin/kamailio and its modules)"
    );
    sbin
}

/// A running Kamailio (its own process group); SIGTERM to the group on drop.
struct Kamailio {
    addr: SocketAddr,
    log: PathBuf,
    child: Child,
}

impl Kamailio {
    /// Writes the front-proxy config for `presenced` into `dir`, starts Kamailio in the
    /// foreground (`-DD -E`) and waits until it answers OPTIONS.
    fn start(dir: &Path, presenced: SocketAddr) -> Kamailio {
        let bin = kamailio_binary();
        let mpath = MODULE_DIRS
            .iter()
            .find(|d| Path::new(d).join("tm.so").exists())
            .unwrap_or_else(|| {
                panic!(
                    "no Kamailio modules in {MODULE_DIRS:?}: run `.ci/setup` (package `kamailio`)"
                )
            });
        let port = free_port();
        let template = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/kamailio/front-proxy.cfg"),
        )
        .expect("tests/kamailio/front-proxy.cfg");
        let cfg = dir.join("front-proxy.cfg");
        std::fs::write(
            &cfg,
            template
                .replace(
                    "/usr/lib/x86_64-linux-gnu/kamailio/modules/",
                    &format!("{mpath}/"),
                )
                .replace("__PORT__", &port.to_string())
                .replace("__PRESENCED__", &format!("sip:{presenced}")),
        )
        .unwrap();
        let log = dir.join("kamailio.log");
        let child = Command::new(bin)
            .args(["-DD", "-E", "-m", "32", "-M", "4", "-f"])
            .arg(&cfg)
            .arg("-w")
            .arg(dir)
            .arg("-Y")
            .arg(dir)
            .arg("-P")
            .arg(dir.join("kamailio.pid"))
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(dir.join("kamailio.out")).unwrap())
            .stderr(std::fs::File::create(&log).unwrap())
            // Its own group, so the guard reaches the worker processes too.
            .process_group(0)
            .spawn()
            .expect("kamailio starts");
        let mut k = Kamailio {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            log,
            child,
        };
        k.wait_ready();
        k
    }

    fn wait_ready(&mut self) {
        let mut c = UdpClient::new(self.addr);
        let deadline = Instant::now() + WAIT * 2;
        for n in 0.. {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("kamailio exited with {status}:\n{}", self.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "kamailio did not answer OPTIONS:\n{}",
                self.log_text()
            );
            let call_id = format!("kam-ready-{n}");
            let uri = format!("sip:{}", self.addr);
            c.send(&request("OPTIONS", &uri, c.port(), &call_id, 1, "", ""));
            let got = c.wait_for(
                Duration::from_millis(200),
                |m| matches!(m, Message::Response(r) if r.call_id == call_id && r.status == 200),
            );
            if got.is_some() {
                return;
            }
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Asserts `req` went through this proxy: its Via on top, presenced's right below.
    fn assert_relayed(&self, req: &Request, presenced: SocketAddr) {
        let hops: Vec<(String, Option<u16>)> =
            req.vias.iter().map(|v| (v.host.clone(), v.port)).collect();
        assert!(
            hops.len() >= 2
                && hops[0] == (self.addr.ip().to_string(), Some(self.addr.port()))
                && hops[1] == (presenced.ip().to_string(), Some(presenced.port())),
            "{} not relayed by Kamailio {} from presenced {presenced}: Vias {hops:?}",
            req.method.as_str(),
            self.addr
        );
    }
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.child.wait();
    }
}

/// Polls `path` until `done` holds for its JSON (event-based, bounded by [`WAIT`]).
fn admin_until(admin: SocketAddr, path: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let v = admin_get_at(admin, path);
        if done(&v) {
            return v;
        }
        assert!(Instant::now() < deadline, "{path} never satisfied: {v}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Every Record-Route entry of `r`, in order.
fn record_route(r: &Response) -> Vec<String> {
    r.headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("Record-Route"))
        .flat_map(|(_, v)| v.split(','))
        .map(|e| e.trim().to_string())
        .collect()
}

fn response(c: &mut UdpClient, call_id: &str, method: &str) -> Response {
    let r = c.response(call_id, method);
    assert!(r.status >= 200, "{method}: provisional {}", r.status);
    r
}

/// The URI inside `<…>` (or the whole value).
fn uri_of(value: &str) -> &str {
    let v = value.trim();
    v.strip_prefix('<')
        .and_then(|r| r.split('>').next())
        .unwrap_or(v)
}

/// A watcher behind Kamailio: register, subscribe, get NOTIFYs (initial, after a PUBLISH by
/// another UA, final) through the proxy, un-subscribe through the proxy.
#[test]
fn kamailio_front_proxy_register_subscribe_publish_unsubscribe() {
    let dir = tempfile::tempdir().unwrap();
    let (node, admin) = BinaryNode::start_with_admin(dir.path(), "node-proxy");
    let kam = Kamailio::start(dir.path(), node.udp);
    let mut watcher = UdpClient::new(kam.addr);
    let w = watcher.port();

    // In-memory registrar: the watcher's binding is stored and echoed.
    let contact = format!("Contact: <sip:watcher@127.0.0.1:{w}>\r\nExpires: 600\r\n");
    let mut reg = request("REGISTER", "sip:example.com", w, "px-reg", 1, &contact, "");
    reg = reg.replace("To: <sip:example.com>", "To: <sip:watcher@example.com>");
    watcher.send(&reg);
    let r = response(&mut watcher, "px-reg", "REGISTER");
    assert_eq!(r.status, 200, "REGISTER through Kamailio: {r:?}");
    let bound = r.header("Contact").unwrap_or_default();
    assert!(
        bound.contains(&format!("127.0.0.1:{w}")),
        "binding: {bound}"
    );

    // SUBSCRIBE through the proxy.
    watcher.send(&subscribe(ALICE, w, "px-sub", 1, "Expires: 300\r\n"));
    let ok = response(&mut watcher, "px-sub", "SUBSCRIBE");
    assert_eq!(ok.status, 200, "SUBSCRIBE through Kamailio: {ok:?}");
    let to_tag = ok.to.tag.clone().expect("To-tag on the 200");
    assert_eq!(
        ok.vias.len(),
        1,
        "Kamailio strips its own Via: {:?}",
        ok.vias
    );
    let remote_target = uri_of(ok.header("Contact").expect("Contact on the 200")).to_string();

    let first = watcher.notify("px-sub");
    kam.assert_relayed(&first, node.udp);
    assert_eq!(first.uri, format!("sip:watcher@127.0.0.1:{w}"));
    assert_eq!(first.header("Event"), Some("presence"));
    let state = first.header("Subscription-State").unwrap_or_default();
    assert!(state.starts_with("active"), "initial NOTIFY state: {state}");
    let body = String::from_utf8_lossy(&first.body);
    assert!(
        !body.contains("<basic>open"),
        "nothing published yet: {body}"
    );
    assert!(
        first.header("Route").is_none(),
        "Kamailio consumed its Route"
    );

    // presenced saw the SUBSCRIBE from Kamailio and keeps Kamailio as the route set; the
    // watcher's 200 to the NOTIFY came back to presenced through Kamailio.
    let path = format!("/debug/subscriptions/{to_tag}");
    let view = admin_until(admin, &path, |v| v["notify_reply"]["status"] == 200);
    let rr = view["record_route"].as_str().unwrap_or_default();
    assert!(
        rr.contains(&format!("{};lr", kam.addr)),
        "route set: {view}"
    );
    assert_eq!(
        view["source"].as_str(),
        Some(kam.addr.to_string().as_str()),
        "{view}"
    );
    assert_eq!(view["status"], "active", "{view}");

    // A publisher (another UA behind the same proxy) PUBLISHes; the watcher gets the PIDF.
    let mut publisher = UdpClient::new(kam.addr);
    let p = publisher.port();
    let doc = pidf(ALICE, "px-t1", "open");
    publisher.send(&publish(ALICE, p, "px-pub", 1, "Expires: 600\r\n", &doc));
    let r = response(&mut publisher, "px-pub", "PUBLISH");
    assert_eq!(r.status, 200, "PUBLISH through Kamailio: {r:?}");
    assert!(r.header("SIP-ETag").is_some(), "{r:?}");
    let update = watcher.notify("px-sub");
    kam.assert_relayed(&update, node.udp);
    let state = update.header("Subscription-State").unwrap_or_default();
    assert!(state.starts_with("active"), "update state: {state}");
    assert_eq!(update.content_type(), Some("application/pidf+xml"));
    let body = String::from_utf8_lossy(&update.body);
    assert!(
        body.contains("<basic>open</basic>") && body.contains("px-t1"),
        "{body}"
    );
    assert!(update.cseq.seq > first.cseq.seq, "NOTIFY CSeq increases");

    // Un-SUBSCRIBE inside the dialog: Request-URI the 200's Contact, Route the dialog's
    // route set (the 200's Record-Route reversed, RFC 3261 §12.1.2).
    let route: Vec<String> = record_route(&ok).into_iter().rev().collect();
    assert!(!route.is_empty(), "the 200 carries Kamailio's Record-Route");
    let unsub = format!(
        "SUBSCRIBE {remote_target} SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:{w};branch=z9hG4bKpx-unsub;rport\r\n\
         Route: {}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:watcher@example.com>;tag=ft-px-sub\r\n\
         To: <{ALICE}>;tag={to_tag}\r\n\
         Call-ID: px-sub\r\nCSeq: 2 SUBSCRIBE\r\nEvent: presence\r\n\
         Contact: <sip:watcher@127.0.0.1:{w}>\r\nExpires: 0\r\nContent-Length: 0\r\n\r\n",
        route.join(", ")
    );
    watcher.send(&unsub);
    let r = response(&mut watcher, "px-sub", "SUBSCRIBE");
    assert_eq!(r.status, 200, "un-SUBSCRIBE through Kamailio: {r:?}");
    let last = watcher.notify("px-sub");
    kam.assert_relayed(&last, node.udp);
    let state = last.header("Subscription-State").unwrap_or_default();
    assert!(
        state.starts_with("terminated"),
        "final NOTIFY state: {state}"
    );

    let list = format!("/debug/subscriptions?presentity={ALICE_PATH}&event=presence");
    admin_until(admin, &list, |v| v["total"] == 0);
    let log = kam.log_text();
    assert!(
        log.contains("front-proxy: in-dialog SUBSCRIBE") && log.contains("in-dialog NOTIFY"),
        "Kamailio's log shows no loose-routed SUBSCRIBE/NOTIFY:\n{log}"
    );
    drop(kam);
    node.terminate();
}

/// RFC 3261 §12.1.1: the 200 that creates the subscription dialog carries the Record-Route
/// Kamailio inserted, so the watcher's route set goes through the proxy. Kamailio's own
/// presence module does this (its core copies Record-Route into every reply), and so does
/// presenced.
#[test]
fn subscribe_200_mirrors_record_route() {
    let dir = tempfile::tempdir().unwrap();
    let (node, _admin) = BinaryNode::start_with_admin(dir.path(), "node-proxy");
    let kam = Kamailio::start(dir.path(), node.udp);
    let mut watcher = UdpClient::new(kam.addr);
    let w = watcher.port();
    watcher.send(&subscribe(ALICE, w, "px-rr", 1, "Expires: 60\r\n"));
    let ok = response(&mut watcher, "px-rr", "SUBSCRIBE");
    assert_eq!(ok.status, 200, "{ok:?}");
    let rr = record_route(&ok);
    assert_eq!(rr.len(), 1, "the 200 has no Record-Route: {:?}", ok.headers);
    assert!(rr[0].contains(&format!("{};lr", kam.addr)), "{rr:?}");
    watcher.notify("px-rr");
    drop(kam);
    node.terminate();
}
