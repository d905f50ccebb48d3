//! Interop with a real SIP implementation: the sipp scenarios in `tests/sipp/` run against
//! the real `presenced` binary (a child process with a generated config on free 127.0.0.1
//! ports). Each run must exit 0 and its statistics must show exactly the calls expected,
//! all successful, none failed on an unexpected message.
//!
//! sipp comes from Debian's `sip-tester` package (`.ci/setup` installs it). When it is
//! missing these tests FAIL with that instruction; they never skip.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::binary::{free_port, BinaryNode};

/// Upper bound for one sipp run (its own `-timeout` is lower).
const RUN_LIMIT: Duration = Duration::from_secs(60);

fn scenario(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/sipp")
        .join(format!("{name}.xml"))
}

/// Panics with the fix when sipp is not installed.
fn require_sipp() {
    let found = Command::new("sipp")
        .arg("-v")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    assert!(
        found,
        "sipp is not installed: run `.ci/setup` (installs Debian's sip-tester package, \
         which provides /usr/bin/sipp)"
    );
}

/// sipp's final statistics (`-trace_stat` CSV: a header line of names, then value lines).
#[derive(Debug)]
struct Stats(HashMap<String, String>);

impl Stats {
    fn read(path: &Path) -> Stats {
        let text = std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("sipp wrote no statistics to {}: {e}", path.display()));
        let mut lines = text.lines().filter(|l| !l.trim().is_empty());
        let last_line = text.lines().rev().find(|l| !l.trim().is_empty());
        let names: Vec<&str> = lines.next().expect("a header line").split(';').collect();
        let last: Vec<&str> = last_line.expect("a value line").split(';').collect();
        Stats(
            names
                .iter()
                .zip(last)
                .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
                .collect(),
        )
    }

    fn count(&self, name: &str) -> u64 {
        self.0
            .get(name)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no counter {name} in {:?}", self.0.keys()))
    }
}

/// Runs `scenario` once (`-m 1`) against `node` for presentity `service`, over `transport`
/// (`u1` UDP, `t1` TCP); asserts exit status 0 and the counters of one successful call.
fn run(node: &BinaryNode, dir: &Path, name: &str, service: &str, transport: &str) -> Stats {
    require_sipp();
    let tag = format!("{name}-{service}-{transport}");
    let stat = dir.join(format!("{tag}.csv"));
    let err = dir.join(format!("{tag}.err"));
    let log = dir.join(format!("{tag}.log"));
    let mut child = Command::new("sipp")
        .arg(node.udp.to_string())
        .arg("-sf")
        .arg(scenario(name))
        .args(["-s", service, "-m", "1", "-t", transport])
        .args(["-i", "127.0.0.1", "-p", &free_port().to_string()])
        .args(["-nostdin", "-default_behaviors", "-bye"])
        .args(["-timeout", "30s", "-recv_timeout", "5000"])
        .args(["-trace_stat", "-stf"])
        .arg(&stat)
        .args(["-trace_err", "-error_file"])
        .arg(&err)
        .args(["-trace_logs", "-log_file"])
        .arg(&log)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sipp starts");
    let deadline = Instant::now() + RUN_LIMIT;
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait for sipp") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("sipp {tag} did not finish within {RUN_LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let errors = std::fs::read_to_string(&err).unwrap_or_default();
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut e, &mut stderr);
    }
    assert!(
        status.success(),
        "sipp {tag} exited with {status}\nerrors:\n{errors}\nstderr:\n{stderr}"
    );
    let stats = Stats::read(&stat);
    assert_eq!(stats.count("OutgoingCall(C)"), 1, "{tag}: {stats:?}");
    assert_eq!(stats.count("SuccessfulCall(C)"), 1, "{tag}: {errors}");
    assert_eq!(stats.count("FailedCall(C)"), 0, "{tag}: {errors}");
    assert_eq!(stats.count("FailedUnexpectedMessage(C)"), 0, "{tag}");
    assert_eq!(stats.count("FailedMaxUDPRetrans(C)"), 0, "{tag}");
    stats
}

fn start_node(dir: &Path) -> BinaryNode {
    let config = BinaryNode::configure(dir, "subs_db_mode = 0\n");
    BinaryNode::start(&config)
}

/// publish → subscribe + NOTIFY (sees the published state) → fetch (sees it too) →
/// subscribe + un-subscribe, all over UDP.
#[test]
fn sipp_publish_subscribe_fetch_unsubscribe_udp() {
    let dir = tempfile::tempdir().unwrap();
    let node = start_node(dir.path());
    run(&node, dir.path(), "publish", "alice", "u1");
    run(&node, dir.path(), "subscribe_notify", "alice", "u1");
    run(&node, dir.path(), "fetch", "alice", "u1");
    run(&node, dir.path(), "unsubscribe", "alice", "u1");
    // The log lines the scenarios wrote prove what was checked.
    let log = std::fs::read_to_string(dir.path().join("fetch-alice-u1.log")).unwrap_or_default();
    assert!(log.contains("<basic>open</basic>"), "fetch log: {log}");
    node.terminate();
}

/// PUBLISH, refresh (new ETag), stale-ETag refresh (412), modify, remove, over UDP.
#[test]
fn sipp_publish_refresh_udp() {
    let dir = tempfile::tempdir().unwrap();
    let node = start_node(dir.path());
    run(&node, dir.path(), "publish_refresh", "carol", "u1");
    // After the removal a fetch must not see carol's state any more: fetch.xml requires
    // <basic>open</basic>, so it fails (the call is counted failed, sipp exits non-zero).
    let probe = std::panic::catch_unwind(|| run(&node, dir.path(), "fetch", "carol", "u1"));
    assert!(
        probe.is_err(),
        "fetch found state after the publication was removed"
    );
    node.terminate();
}

/// The same flows over TCP (one connection per sipp run; NOTIFYs come back on it).
#[test]
fn sipp_scenarios_over_tcp() {
    let dir = tempfile::tempdir().unwrap();
    let node = start_node(dir.path());
    run(&node, dir.path(), "publish", "dave", "t1");
    run(&node, dir.path(), "subscribe_notify", "dave", "t1");
    run(&node, dir.path(), "fetch", "dave", "t1");
    run(&node, dir.path(), "unsubscribe", "dave", "t1");
    run(&node, dir.path(), "publish_refresh", "erin", "t1");
    node.terminate();
}
