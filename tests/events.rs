//! The `/debug/events` stream and the `presence:notify-reply` hook.

mod common;

use std::io::{BufRead, BufReader};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use common::*;
use presenced::node::Hooks;

const ALICE: &str = "sip:alice@example.com";
const ADMIN: &str = "[admin]\nlisten = \"127.0.0.1:0\"\n";

/// Reads `url` as an SSE stream in a thread; sends every `event:` name.
fn listen(url: String) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder().build().into();
        let Ok(mut resp) = agent.get(&url).call() else {
            return;
        };
        let reader = BufReader::new(resp.body_mut().as_reader());
        for line in reader.lines() {
            let Ok(line) = line else { return };
            if let Some(kind) = line.strip_prefix("event: ") {
                if tx.send(kind.to_string()).is_err() {
                    return;
                }
            } else if line.starts_with(": presenced") && tx.send("open".into()).is_err() {
                return;
            }
        }
    });
    rx
}

fn collect(rx: &mpsc::Receiver<String>, want: &[&str]) -> Vec<String> {
    let deadline = Instant::now() + WAIT;
    let mut got = Vec::new();
    while !want.iter().all(|w| got.iter().any(|g| g == w)) {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(k) => got.push(k),
            Err(_) => panic!("events so far {got:?}, want {want:?}"),
        }
    }
    got
}

#[test]
fn the_event_stream_shows_one_presentitys_activity() {
    let node = TestNode::start(ADMIN);
    let url = format!(
        "http://{}/debug/events?presentity={}",
        node.admin.unwrap(),
        "sip%3Aalice%40example.com"
    );
    let rx = listen(url);
    assert_eq!(rx.recv_timeout(WAIT).unwrap(), "open");
    let mut c = UdpClient::new(node.udp);
    // Bob's activity is filtered out.
    c.send(&publish(
        "sip:bob@example.com",
        c.port(),
        "bob",
        1,
        "",
        &pidf("sip:bob@example.com", "b", "open"),
    ));
    c.response("bob", "PUBLISH");
    c.send(&subscribe(ALICE, c.port(), "ev-w", 1, "Expires: 60\r\n"));
    c.response("ev-w", "SUBSCRIBE");
    c.notify("ev-w");
    c.send(&publish(
        ALICE,
        c.port(),
        "ev-p",
        1,
        "",
        &pidf(ALICE, "a", "open"),
    ));
    c.response("ev-p", "PUBLISH");
    c.notify("ev-w");
    let got = collect(
        &rx,
        &["subscription-created", "notify", "notify-reply", "publish"],
    );
    assert_eq!(
        got.iter().filter(|k| *k == "publish").count(),
        1,
        "Bob's PUBLISH is not in Alice's stream: {got:?}"
    );
}

#[test]
fn the_notify_reply_hook_sees_replies_and_may_end_the_subscription() {
    let seen = Arc::new(AtomicUsize::new(0));
    let counter = seen.clone();
    let hooks = Hooks {
        notify_reply: Some(Arc::new(move |r| {
            counter.fetch_add(1, Ordering::SeqCst);
            // Delete the subscription of the watcher whose reply says 202 (a made-up rule).
            r.status == 202
        })),
    };
    let node = TestNode::start_with_hooks("", hooks);
    let mut c = UdpClient::new(node.udp);
    c.send(&subscribe(ALICE, c.port(), "hk", 1, "Expires: 60\r\n"));
    let tag = c.response("hk", "SUBSCRIBE").to.tag.unwrap();
    c.notify("hk"); // answered 200: kept
    c.send(&resubscribe(ALICE, c.port(), "hk", 2, &tag, 60));
    assert_eq!(c.response("hk", "SUBSCRIBE").status, 200);
    c.auto_answer = Some(202);
    c.notify("hk"); // answered 202: the hook deletes it
    let deadline = Instant::now() + WAIT;
    let mut cseq = 3;
    loop {
        c.send(&resubscribe(ALICE, c.port(), "hk", cseq, &tag, 60));
        if c.response("hk", "SUBSCRIBE").status == 481 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the hook did not end the subscription"
        );
        cseq += 1;
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        seen.load(Ordering::SeqCst) >= 2,
        "the hook saw both replies"
    );
}
