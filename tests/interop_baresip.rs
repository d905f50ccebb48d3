//! Interop with baresip (issue #8 item 5): a real headless `baresip` 1.0 (Debian's
//! `baresip-core`: no audio modules, its `presence` module, commands on stdin through its
//! `stdio` module) as a presence publisher and watcher against the real `presenced` binary,
//! both on free 127.0.0.1 UDP ports.
//!
//! baresip's account `sip:bob@example.com` uses presenced as its outbound proxy (no
//! REGISTER, PUBLISH every 60 s); its address book has `alice` and `bob` (itself) marked
//! `;presence=p2p`, so it SUBSCRIBEs to both. Checked: presenced holds baresip's PUBLISH
//! (JSON-RPC `presence.presentity_list`) and both SUBSCRIBEs (`/debug/subscriptions`), and
//! got 200s to its NOTIFYs; baresip's contact list shows alice (published by this test) and
//! bob (published by baresip) Online — the state of NOTIFYs from presenced — and bob Offline
//! after `/presence_offline` re-publishes; on `/quit` baresip removes its publication and
//! ends both subscriptions.
//!
//! baresip comes from Debian's `baresip-core` package (`.ci/setup` installs it). When it is
//! missing this test FAILS with that instruction; it never skips. The child is killed when
//! its guard drops, also when an assertion fails, and quits by itself after 25 s anyway.

mod common;

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use common::binary::{free_port, BinaryNode};
use common::{admin_get_at, pidf, publish, UdpClient, WAIT};
use serde_json::{json, Value};

const ALICE: &str = "sip:alice@example.com";
const BOB: &str = "sip:bob@example.com";
const BOB_PATH: &str = "sip%3Abob%40example.com";
const MODULES: &str = "/usr/lib/baresip/modules";

/// Panics with the fix when baresip (or its presence module) is not installed.
fn require_baresip() {
    let found = Command::new("baresip")
        .arg("-h")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    assert!(
        found && Path::new(MODULES).join("presence.so").exists(),
        "baresip is not installed: run `.ci/setup` (installs Debian's `baresip-core` \
         package, which provides /usr/bin/baresip and {MODULES}/presence.so)"
    );
}

/// A running baresip; its stdout+stderr go to `log`, commands to its stdin.
struct Baresip {
    child: Child,
    stdin: Option<ChildStdin>,
    log: PathBuf,
}

impl Baresip {
    /// Writes `config`, `accounts` and `contacts` under `dir/baresip` and starts baresip.
    fn start(dir: &Path, presenced: SocketAddr) -> Baresip {
        require_baresip();
        let conf = dir.join("baresip");
        std::fs::create_dir_all(&conf).unwrap();
        let port = free_port();
        let config = format!(
            "poll_method epoll\nsip_listen 127.0.0.1:{port}\nsip_transports udp\n\
             module_path {MODULES}\nmodule stdio.so\nmodule_tmp account.so\n\
             module_app contact.so\nmodule_app presence.so\nmodule_app menu.so\n\
             audio_player none\naudio_source none\n"
        );
        std::fs::write(conf.join("config"), config).unwrap();
        std::fs::write(
            conf.join("accounts"),
            format!("<{BOB}>;outbound=\"sip:{presenced}\";regint=0;pubint=60\n"),
        )
        .unwrap();
        std::fs::write(
            conf.join("contacts"),
            format!("\"Alice\" <{ALICE}>;presence=p2p\n\"Bob\" <{BOB}>;presence=p2p\n"),
        )
        .unwrap();
        let log = dir.join("baresip.log");
        let out = std::fs::File::create(&log).unwrap();
        let mut child = Command::new("baresip")
            .arg("-f")
            .arg(&conf)
            .args(["-e", "/presence_online", "-t", "25"])
            .stdin(Stdio::piped())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("baresip starts");
        let stdin = child.stdin.take();
        Baresip { child, stdin, log }
    }

    fn command(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("baresip's stdin is open");
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .and_then(|()| stdin.flush())
            .unwrap_or_else(|e| panic!("baresip stdin: {e}\n{}", self.log_text()));
    }

    /// The log with ANSI colour sequences removed.
    fn log_text(&self) -> String {
        let raw = std::fs::read_to_string(&self.log).unwrap_or_default();
        let mut out = String::with_capacity(raw.len());
        let mut chars = raw.chars();
        while let Some(c) = chars.next() {
            if c == '\u{1b}' {
                // CSI: ESC [ params final-byte (a letter).
                for d in chars.by_ref() {
                    if d.is_ascii_alphabetic() {
                        break;
                    }
                }
            } else if c != '\r' {
                out.push(c);
            }
        }
        out
    }

    /// Asks for the contact list until `name`'s line in the latest one shows `status`.
    fn wait_contact(&mut self, name: &str, status: &str) {
        let deadline = Instant::now() + WAIT;
        let needle = format!("{name} <sip:");
        loop {
            self.command("/contacts");
            std::thread::sleep(Duration::from_millis(200));
            let log = self.log_text();
            let latest = log.rsplit("--- Contacts").next().unwrap_or_default();
            let line = latest.lines().find(|l| l.contains(&needle));
            if line.is_some_and(|l| l.split_whitespace().any(|w| w == status)) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "baresip never showed {name} {status}; last contact line {line:?}\n{log}"
            );
        }
    }

    /// Sends `/quit` and waits (bounded) for a clean exit.
    fn quit(&mut self) {
        self.command("/quit");
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for baresip") {
                assert!(
                    status.success(),
                    "baresip exit {status}\n{}",
                    self.log_text()
                );
                return;
            }
            assert!(
                Instant::now() < deadline,
                "baresip did not quit\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Baresip {
    fn drop(&mut self) {
        self.stdin.take();
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// A JSON-RPC call; its `result`.
fn rpc(admin: SocketAddr, method: &str, params: Value) -> Value {
    let body = json!({"jsonrpc": "2.0", "method": method, "params": params, "id": 1});
    let mut resp = common::http_agent()
        .post(&format!("http://{admin}/rpc"))
        .header("Content-Type", "application/json")
        .send(body.to_string())
        .expect("HTTP exchange with presenced's admin endpoint");
    let text = resp.body_mut().read_to_string().unwrap_or_default();
    let v: Value = serde_json::from_str(&text).expect("JSON-RPC answer");
    assert!(v.get("error").is_none(), "{method}: {v}");
    v["result"].clone()
}

/// Polls `probe` until `done` holds (event-based, bounded by [`WAIT`]).
fn until(what: &str, probe: impl Fn() -> Value, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let v = probe();
        if done(&v) {
            return v;
        }
        assert!(Instant::now() < deadline, "{what} never held: {v}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// bob's publications in `presence.presentity_list full`.
fn bob_bodies(admin: SocketAddr) -> Value {
    let list = rpc(admin, "presence.presentity_list", json!(["full"]));
    let bob: Vec<Value> = list
        .as_array()
        .map(|a| a.iter().filter(|r| r["pres_uri"] == BOB).cloned().collect())
        .unwrap_or_default();
    Value::Array(bob)
}

fn has_basic(bodies: &Value, basic: &str) -> bool {
    let tag = format!("<basic>{basic}</basic>");
    bodies.as_array().is_some_and(|a| {
        a.iter()
            .any(|r| r["body"].as_str().is_some_and(|b| b.contains(&tag)))
    })
}

#[test]
fn baresip_publishes_and_watches_presence() {
    let dir = tempfile::tempdir().unwrap();
    let (node, admin) = BinaryNode::start_with_admin(dir.path(), "node-baresip");

    // alice's state, published by this test before baresip subscribes to it.
    let mut c = UdpClient::new(node.udp);
    let doc = pidf(ALICE, "bs-a1", "open");
    c.send(&publish(
        ALICE,
        c.port(),
        "bs-pub",
        1,
        "Expires: 600\r\n",
        &doc,
    ));
    assert_eq!(c.response("bs-pub", "PUBLISH").status, 200);

    let mut bs = Baresip::start(dir.path(), node.udp);

    // baresip's PUBLISH (open after `-e /presence_online`) is held by presenced.
    let bodies = until(
        "bob's open publication",
        || bob_bodies(admin),
        |v| has_basic(v, "open"),
    );
    // The document is baresip's own (its tuple carries its AOR as <contact>).
    let body = bodies[0]["body"].as_str().unwrap_or_default();
    assert!(
        body.contains("<contact>sip:bob@example.com</contact>"),
        "{body}"
    );

    // Both of baresip's SUBSCRIBEs are dialogs in presenced, each NOTIFY answered 200.
    let subs = format!("/debug/subscriptions?watcher={BOB_PATH}");
    let list = until(
        "two subscriptions by bob",
        || admin_get_at(admin, &subs),
        |v| v["total"] == 2,
    );
    let mut presentities: Vec<String> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["pres_uri"].as_str().unwrap_or_default().to_string())
        .collect();
    presentities.sort();
    assert_eq!(presentities, [ALICE, BOB], "{list}");
    for item in list["items"].as_array().unwrap() {
        let path = format!("/debug/subscriptions/{}", item["id"].as_str().unwrap());
        let s = until(
            "a 200 from baresip to a NOTIFY",
            || admin_get_at(admin, &path),
            |v| v["notify_reply"]["status"] == 200,
        );
        assert_eq!(s["status"], "active", "{s}");
        assert!(
            s["user_agent"]
                .as_str()
                .unwrap_or_default()
                .contains("baresip"),
            "{s}"
        );
    }

    // baresip applied the NOTIFYs: alice (this test's PIDF) and bob (its own) Online.
    bs.wait_contact("Alice", "Online");
    bs.wait_contact("Bob", "Online");

    // A modified publication from baresip reaches baresip's own subscription.
    bs.command("/presence_offline");
    until(
        "bob's closed publication",
        || bob_bodies(admin),
        |v| has_basic(v, "closed"),
    );
    bs.wait_contact("Bob", "Offline");
    bs.wait_contact("Alice", "Online");

    // Quitting removes the publication (Expires: 0) and ends both subscriptions.
    bs.quit();
    until(
        "no subscription by bob",
        || admin_get_at(admin, &subs),
        |v| v["total"] == 0,
    );
    until(
        "bob's publication removed",
        || bob_bodies(admin),
        |v| v.as_array().is_some_and(Vec::is_empty),
    );
    drop(bs);
    node.terminate();
}
