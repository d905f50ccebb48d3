//! Passivation of quiet subscription dialogs (`[node] passivate_after`) against a real node
//! over real UDP: the actor of a quiet dialog stops and its presentity keeps the dialog in
//! compact form; a state change, an in-dialog SUBSCRIBE and the expiry each wake it, and
//! the watcher sees exactly what it would have seen without passivation (CSeq, body,
//! Subscription-State).

mod common;

use std::time::{Duration, Instant};

use serde_json::Value;

use common::*;

const ALICE: &str = "sip:alice@example.com";
/// Memory mode explicitly (passivation into the in-memory compact form; DB-only mode has its
/// own test below).
const CFG: &str = "[node]\npassivate_after = 1\n[admin]\nlisten = \"127.0.0.1:0\"\n\
                   [presence]\nsubs_db_mode = 0\n";

fn get(node: &TestNode, path: &str) -> Value {
    node.admin_get(path)
}

/// Polls the dialog's view until `want(view)` holds (or panics after [`WAIT`]).
fn wait_view(node: &TestNode, tag: &str, what: &str, want: impl Fn(&Value) -> bool) -> Value {
    let end = Instant::now() + WAIT;
    loop {
        let v = get(node, &format!("/debug/subscriptions/{tag}"));
        if want(&v) {
            return v;
        }
        assert!(Instant::now() < end, "dialog never became {what}: {v}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn passivated(v: &Value) -> bool {
    v["passivated"] == Value::Bool(true)
}

#[test]
fn a_quiet_dialog_sleeps_and_wakes_for_state_refresh_and_expiry() {
    let node = TestNode::start(CFG);
    let mut w = UdpClient::new(node.udp);
    w.send(&subscribe(ALICE, w.port(), "pz-1", 1, "Expires: 60\r\n"));
    let ok = w.response("pz-1", "SUBSCRIBE");
    assert_eq!(ok.status, 200);
    let tag = ok.to.tag.clone().expect("to-tag");
    let first = w.notify("pz-1");
    assert_eq!(first.cseq.seq, 1);

    // Quiet for passivate_after: the actor stops, the dialog stays (and is listed).
    let v = wait_view(&node, &tag, "passivated", passivated);
    assert_eq!(v["local_cseq"], 1, "{v}");
    assert_eq!(v["notify_reply"]["status"], 200, "{v}");
    let actors = get(&node, "/debug/actors");
    assert_eq!(actors["kinds"]["subscription"]["passivated"], 1, "{actors}");
    assert_eq!(actors["kinds"]["subscription"]["live"], 0, "{actors}");

    // A state change wakes it: the NOTIFY continues the CSeq and carries the state.
    let mut p = UdpClient::new(node.udp);
    p.send(&publish(
        ALICE,
        p.port(),
        "pz-p",
        1,
        "Expires: 60\r\n",
        &pidf(ALICE, "t1", "open"),
    ));
    assert_eq!(p.response("pz-p", "PUBLISH").status, 200);
    let n = w.notify("pz-1");
    assert_eq!(n.cseq.seq, 2);
    assert!(String::from_utf8_lossy(&n.body).contains("<basic>open</basic>"));

    // Asleep again, an in-dialog SUBSCRIBE wakes it: 200, then a NOTIFY with the current
    // state (which the woken actor got from its presentity).
    wait_view(&node, &tag, "passivated again", passivated);
    w.send(&resubscribe(ALICE, w.port(), "pz-1", 2, &tag, 3));
    let ok = w.response("pz-1", "SUBSCRIBE");
    assert_eq!(ok.status, 200);
    assert_eq!(header(&ok, "Expires"), Some("3"));
    let n = w.notify("pz-1");
    assert_eq!(n.cseq.seq, 3);
    assert!(String::from_utf8_lossy(&n.body).contains("<basic>open</basic>"));
    assert!(n
        .header("Subscription-State")
        .unwrap()
        .starts_with("active"));

    // Asleep at its expiry: its presentity wakes it to end it with the final NOTIFY.
    let asleep = Instant::now();
    wait_view(&node, &tag, "passivated before expiry", passivated);
    let fin = w.notify("pz-1");
    assert_eq!(fin.cseq.seq, 4);
    let state = fin.header("Subscription-State").unwrap();
    assert!(
        state.starts_with("terminated") && state.contains("timeout"),
        "{state}"
    );
    assert!(asleep.elapsed() < WAIT);
    let gone = get(&node, &format!("/debug/subscriptions/{tag}"));
    assert!(gone.get("id").is_none(), "the dialog is gone: {gone}");

    let metrics = get(&node, "/metrics")
        .as_str()
        .unwrap_or_default()
        .to_string();
    let count: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("presenced_passivations_total "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0);
    assert!(count >= 3, "{metrics}");
}

#[test]
fn a_dialog_with_a_notify_in_flight_is_not_passivated() {
    let node = TestNode::start(CFG);
    // B never answers: its first NOTIFY stays in flight (Timer F is 32 s).
    let mut b = UdpClient::new(node.udp);
    b.auto_answer = None;
    b.send(&subscribe(ALICE, b.port(), "pz-b", 1, "Expires: 60\r\n"));
    let tag_b = b
        .response("pz-b", "SUBSCRIBE")
        .to
        .tag
        .clone()
        .expect("to-tag");
    b.notify("pz-b");
    // A answers, subscribed after B: once A sleeps, B has been quiet longer than A.
    let mut a = UdpClient::new(node.udp);
    a.send(&subscribe(ALICE, a.port(), "pz-a", 1, "Expires: 60\r\n"));
    let tag_a = a
        .response("pz-a", "SUBSCRIBE")
        .to
        .tag
        .clone()
        .expect("to-tag");
    a.notify("pz-a");
    wait_view(&node, &tag_a, "passivated", passivated);
    let v = get(&node, &format!("/debug/subscriptions/{tag_b}"));
    assert_eq!(v["passivated"], false, "{v}");
    assert_eq!(v["notify_in_flight"], true, "{v}");
    // And it still retransmits (Timer E): the actor is alive.
    assert!(b.try_notify("pz-b", WAIT).is_some(), "retransmission");
}

/// DB-only mode (`subs_db_mode = 3`): a dialog's actor stops as soon as the dialog is quiet
/// and nothing of it stays in memory but its watcher entry; every message reads it back from
/// sled, and the watcher sees the same CSeqs and documents as in any other mode.
#[test]
fn db_only_dialogs_are_read_back_from_the_store_for_every_message() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = format!(
        "[node]\ndata_dir = \"{}\"\n[admin]\nlisten = \"127.0.0.1:0\"\n\
         [presence]\nsubs_db_mode = 3\nnotifier_processes = 0\npubl_cache = 1\n",
        dir.path().join("data").display()
    );
    let node = TestNode::start(&cfg);
    let mut w = UdpClient::new(node.udp);
    w.send(&subscribe(ALICE, w.port(), "db-1", 1, "Expires: 60\r\n"));
    let ok = w.response("db-1", "SUBSCRIBE");
    assert_eq!(ok.status, 200);
    let tag = ok.to.tag.clone().expect("to-tag");
    assert_eq!(w.notify("db-1").cseq.seq, 1);
    // No passivate_after needed: asleep as soon as the NOTIFY is answered; its view is read
    // from the store.
    let v = wait_view(&node, &tag, "passivated", passivated);
    assert_eq!(v["local_cseq"], 1, "{v}");
    assert_eq!(v["callid"], "db-1", "{v}");

    for round in 0..3u32 {
        let mut p = UdpClient::new(node.udp);
        let basic = if round % 2 == 0 { "open" } else { "closed" };
        let cid = format!("db-p{round}");
        p.send(&publish(
            ALICE,
            p.port(),
            &cid,
            1,
            "Expires: 60\r\n",
            &pidf(ALICE, "t1", basic),
        ));
        assert_eq!(p.response(&cid, "PUBLISH").status, 200);
        let n = w.notify("db-1");
        assert_eq!(
            n.cseq.seq,
            2 + round,
            "CSeq continues from the stored record"
        );
        assert!(String::from_utf8_lossy(&n.body).contains(&format!("<basic>{basic}</basic>")));
        wait_view(&node, &tag, "passivated again", passivated);
    }
    // An in-dialog refresh reads it back too.
    w.send(&resubscribe(ALICE, w.port(), "db-1", 2, &tag, 60));
    assert_eq!(w.response("db-1", "SUBSCRIBE").status, 200);
    let n = w.notify("db-1");
    assert_eq!(n.cseq.seq, 5);
    assert!(String::from_utf8_lossy(&n.body).contains("<basic>open</basic>"));
    let actors = get(&node, "/debug/actors");
    assert_eq!(
        actors["kinds"]["subscription"]["passivated"]
            .as_u64()
            .unwrap_or(0)
            + actors["kinds"]["subscription"]["live"]
                .as_u64()
                .unwrap_or(0),
        1,
        "{actors}"
    );
    // Un-subscribe: read back, ended, gone from the store.
    w.send(&resubscribe(ALICE, w.port(), "db-1", 3, &tag, 0));
    assert_eq!(w.response("db-1", "SUBSCRIBE").status, 200);
    let fin = w.notify("db-1");
    assert!(fin
        .header("Subscription-State")
        .unwrap()
        .starts_with("terminated"));
    assert_eq!(fin.cseq.seq, 6);
}
