//! Authorization (SPEC §4) and watcher info (RFC 3857/3858) end to end: real sockets, rule
//! documents set through the admin endpoint's JSON-RPC.

mod common;

use std::time::Duration;

use common::*;
use presenced::sip::{Message, Request};
use serde_json::json;

const ALICE: &str = "sip:alice@example.com";
const ADMIN: &str = "[admin]\nlisten = \"127.0.0.1:0\"\n";

fn state(n: &Request) -> String {
    n.header("Subscription-State").unwrap_or("").to_string()
}

fn ruleset(rules: &str) -> String {
    format!(
        "<?xml version=\"1.0\"?><ruleset xmlns=\"urn:ietf:params:xml:ns:common-policy\" \
         xmlns:pr=\"urn:ietf:params:xml:ns:pres-rules\">{rules}</ruleset>"
    )
}

fn rule(id: &str, watcher: &str, action: &str) -> String {
    format!(
        "<rule id=\"{id}\"><conditions><identity><one id=\"{watcher}\"/></identity></conditions>\
         <actions><pr:sub-handling>{action}</pr:sub-handling></actions></rule>"
    )
}

/// Publishes Alice's state with a tuple id only an authorized watcher may see.
fn publish_secret(c: &mut UdpClient) {
    c.send(&publish(
        ALICE,
        c.port(),
        "secret",
        1,
        "",
        &pidf(ALICE, "secret-tuple", "open"),
    ));
    assert_eq!(c.response("secret", "PUBLISH").status, 200);
}

fn wire_mentions_secret(msgs: &[Message]) -> bool {
    msgs.iter().any(|m| match m {
        Message::Request(r) => String::from_utf8_lossy(&r.body).contains("secret-tuple"),
        Message::Response(_) => false,
    })
}

#[test]
fn pending_watcher_gets_no_state_until_a_rule_allows_it() {
    let node = TestNode::start(&format!(
        "{ADMIN}[authorization]\ndefault_policy = \"pending\"\n"
    ));
    let mut c = UdpClient::new(node.udp);
    publish_secret(&mut c);
    c.send(&subscribe(ALICE, c.port(), "pw", 1, "Expires: 600\r\n"));
    assert_eq!(c.response("pw", "SUBSCRIBE").status, 200);
    let n = c.notify("pw");
    assert!(state(&n).starts_with("pending"), "{}", state(&n));
    assert!(n.body.is_empty(), "a pending watcher sees no state");
    let auth = node.rpc(
        "presence.auth_status",
        json!(["sip:watcher@example.com", ALICE]),
    );
    assert_eq!(
        (auth["status"].as_str(), auth["code"].as_i64()),
        (Some("pending"), Some(2))
    );

    // A rule change alone changes nothing; updateWatchers re-decides and notifies.
    let doc = ruleset(&rule("r1", "sip:watcher@example.com", "allow"));
    node.rpc("presence.rules_set", json!([ALICE, doc]));
    assert!(c.try_notify("pw", Duration::from_millis(500)).is_none());
    let upd = node.rpc("presence.updateWatchers", json!([ALICE, "presence"]));
    assert_eq!(upd["changed"], 1, "{upd}");
    let n = c.notify("pw");
    assert!(state(&n).starts_with("active"), "{}", state(&n));
    assert!(String::from_utf8_lossy(&n.body).contains("secret-tuple"));
    // Nothing changes on a second call.
    assert_eq!(
        node.rpc("presence.updateWatchers", json!([ALICE, "presence"]))["changed"],
        0
    );
}

#[test]
fn each_rule_action_decides_what_the_watcher_sees() {
    let node = TestNode::start(&format!(
        "{ADMIN}[authorization]\ndefault_policy = \"rules\"\n"
    ));
    let mut owner = UdpClient::new(node.udp);
    publish_secret(&mut owner);
    let doc = ruleset(&format!(
        "{}{}{}",
        rule("b", "sip:blocked@example.com", "block"),
        rule("p", "sip:polite@example.com", "polite-block"),
        rule("c", "sip:confirm@example.com", "confirm"),
    ));
    node.rpc("presence.rules_set", json!([ALICE, doc]));
    assert!(node.rpc("presence.rules_get", json!([ALICE]))["document"]
        .as_str()
        .unwrap()
        .contains("polite-block"));

    for (who, expect) in [
        ("blocked", "terminated"),
        ("polite", "active"),
        ("confirm", "pending"),
        ("nobody", "pending"),
    ] {
        let mut c = UdpClient::new(node.udp);
        let call = format!("act-{who}");
        let msg = subscribe(ALICE, c.port(), &call, 1, "")
            .replace("sip:watcher@example.com", &format!("sip:{who}@example.com"));
        c.send(&msg);
        assert_eq!(c.response(&call, "SUBSCRIBE").status, 200);
        let n = c.notify(&call);
        assert!(state(&n).starts_with(expect), "{who}: {}", state(&n));
        if who == "blocked" {
            assert!(state(&n).contains("reason=rejected"), "{}", state(&n));
        }
        if who == "polite" {
            let body = String::from_utf8_lossy(&n.body).to_string();
            assert!(
                body.contains("<basic>closed</basic>"),
                "neutral document: {body}"
            );
        }
        let mut seen = vec![Message::Request(n)];
        seen.extend(c.drain(Duration::from_millis(300)));
        assert!(
            !wire_mentions_secret(&seen),
            "{who} must never receive the document"
        );
    }
}

#[test]
fn bad_rule_documents_are_refused() {
    let node = TestNode::start(ADMIN);
    let v = node.rpc_raw("presence.rules_set", json!([ALICE, "<ruleset><rule"]));
    assert_eq!(v["error"]["code"], -32602, "{v}");
}

/// A winfo SUBSCRIBE from Alice herself.
fn winfo_subscribe(c: &UdpClient, call_id: &str) -> String {
    subscribe(ALICE, c.port(), call_id, 1, "")
        .replace("Event: presence", "Event: presence.winfo")
        .replace(
            "From: <sip:watcher@example.com>",
            "From: <sip:alice@example.com>",
        )
}

fn winfo(n: &Request) -> (String, String, String) {
    let body = String::from_utf8_lossy(&n.body).to_string();
    let attr = |name: &str| -> String {
        let root = &body[body.find("<watcherinfo").expect("watcherinfo root")..];
        let v = &root[root
            .find(&format!("{name}=\""))
            .unwrap_or_else(|| panic!("{name} in {body}"))
            + name.len()
            + 2..];
        v[..v.find('"').unwrap()].to_string()
    };
    (attr("version"), attr("state"), body)
}

#[test]
fn watcher_info_reports_watchers_full_then_partial_with_versions() {
    let node = TestNode::start("");
    let mut owner = UdpClient::new(node.udp);
    owner.send(&winfo_subscribe(&owner, "wi"));
    assert_eq!(owner.response("wi", "SUBSCRIBE").status, 200);
    let n = owner.notify("wi");
    assert_eq!(n.content_type(), Some("application/watcherinfo+xml"));
    let (v, st, _) = winfo(&n);
    assert_eq!((v.as_str(), st.as_str()), ("0", "full"));

    // A watcher appears.
    let mut bob = UdpClient::new(node.udp);
    bob.send(&subscribe(
        ALICE,
        bob.port(),
        "bob-w",
        1,
        "Expires: 600\r\n",
    ));
    let bob_tag = bob.response("bob-w", "SUBSCRIBE").to.tag.unwrap();
    bob.notify("bob-w");
    let (v, st, body) = winfo(&owner.notify("wi"));
    assert_eq!((v.as_str(), st.as_str()), ("1", "partial"), "{body}");
    assert!(
        body.contains("sip:watcher@example.com")
            && body.contains("event=\"subscribe\"")
            && body.contains("status=\"active\""),
        "{body}"
    );

    // It un-subscribes.
    bob.send(&resubscribe(ALICE, bob.port(), "bob-w", 2, &bob_tag, 0));
    bob.response("bob-w", "SUBSCRIBE");
    bob.notify("bob-w");
    let (v, _, body) = winfo(&owner.notify("wi"));
    assert_eq!(v, "2");
    assert!(
        body.contains("status=\"terminated\"") && body.contains("event=\"timeout\""),
        "{body}"
    );

    // Another watcher's subscription expires.
    let mut carol = UdpClient::new(node.udp);
    carol.send(&subscribe(
        ALICE,
        carol.port(),
        "carol-w",
        1,
        "Expires: 1\r\n",
    ));
    carol.response("carol-w", "SUBSCRIBE");
    let (v, _, _) = winfo(&owner.notify("wi"));
    assert_eq!(v, "3");
    let (v, _, body) = winfo(&owner.notify("wi"));
    assert_eq!(v, "4");
    assert!(
        body.contains("event=\"timeout\""),
        "expiry reported: {body}"
    );
}

#[test]
fn watcher_info_reports_rejection_and_only_the_presentity_may_subscribe() {
    let node = TestNode::start(&format!(
        "{ADMIN}[authorization]\ndefault_policy = \"rules\"\n"
    ));
    node.rpc(
        "presence.rules_set",
        json!([
            ALICE,
            ruleset(&rule("b", "sip:watcher@example.com", "block"))
        ]),
    );
    let mut owner = UdpClient::new(node.udp);
    owner.send(&winfo_subscribe(&owner, "wr"));
    owner.response("wr", "SUBSCRIBE");
    owner.notify("wr");
    let mut w = UdpClient::new(node.udp);
    w.send(&subscribe(ALICE, w.port(), "blk", 1, ""));
    w.response("blk", "SUBSCRIBE");
    // Reported once, as rejected.
    let (_, _, body) = winfo(&owner.notify("wr"));
    assert!(
        body.contains("event=\"rejected\"") && body.contains("status=\"terminated\""),
        "{body}"
    );

    // Someone else asking for Alice's watcher list is refused.
    let mut eve = UdpClient::new(node.udp);
    let msg = subscribe(ALICE, eve.port(), "eve", 1, "")
        .replace("Event: presence", "Event: presence.winfo");
    eve.send(&msg);
    assert_eq!(eve.response("eve", "SUBSCRIBE").status, 403);
    // And presence.winfo cannot be published.
    let p = request(
        "PUBLISH",
        ALICE,
        eve.port(),
        "wp",
        1,
        "Event: presence.winfo\r\nContent-Type: application/watcherinfo+xml\r\n",
        "<x/>",
    );
    eve.send(&p);
    assert_eq!(eve.response("wp", "PUBLISH").status, 489);
}

/// SPEC §4: watcher states persist in the watchers table (status, reason, since, last
/// watcher-info event), written as they change.
#[test]
fn watcher_states_are_kept_in_the_watchers_table() {
    use presenced::ids::{EventKey, NodeId, PresentityUri, UriMatch};
    use presenced::store::sled::{SledStore, Tables};
    use presenced::store::Store;

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cfg = format!(
        "{ADMIN}[node]\ndata_dir = \"{}\"\n[presence]\nsubs_db_mode = 1\npubl_cache = 1\n\
         [authorization]\ndefault_policy = \"pending\"\n",
        data.display()
    );
    let node = TestNode::start(&cfg);
    let mut w = UdpClient::new(node.udp);
    w.send(&subscribe(ALICE, w.port(), "wt-1", 1, "Expires: 600\r\n"));
    assert!(w.response("wt-1", "SUBSCRIBE").status < 300);
    assert!(state(&w.notify("wt-1")).starts_with("pending"));
    let doc = ruleset(&rule("a", "sip:watcher@example.com", "allow"));
    node.rpc("presence.rules_set", json!([ALICE, doc]));
    node.rpc("presence.updateWatchers", json!([ALICE, "presence"]));
    assert!(state(&w.notify("wt-1")).starts_with("active"));
    // A second watcher, then gone: its record goes with its last dialog.
    let mut x = UdpClient::new(node.udp);
    let as_xavier = |m: String| m.replace("<sip:watcher@example.com>", "<sip:xavier@example.com>");
    x.send(&as_xavier(subscribe(
        ALICE,
        x.port(),
        "wt-2",
        1,
        "Expires: 600\r\n",
    )));
    let ok = x.response("wt-2", "SUBSCRIBE");
    x.notify("wt-2");
    let tag = ok.to.tag.clone().expect("to-tag");
    x.send(&as_xavier(resubscribe(ALICE, x.port(), "wt-2", 2, &tag, 0)));
    assert_eq!(x.response("wt-2", "SUBSCRIBE").status, 200);
    x.notify("wt-2");
    drop(node); // shutdown: flushed and closed

    let store = SledStore::open(&data, Tables::default(), &NodeId::new("node-1")).unwrap();
    let alice = PresentityUri::parse(ALICE, UriMatch::CaseSensitive).unwrap();
    let presence = EventKey::new("presence");
    let recs = store.watchers(&alice, &presence).unwrap();
    assert_eq!(recs.len(), 1, "{recs:?}");
    let mut r = recs[0].clone();
    assert_eq!(r.watcher.as_str(), "sip:watcher@example.com");
    assert_eq!(r.status, "active");
    assert_eq!(r.last_event, "approved");
    assert!(r.inserted_at.0 > 0);

    // The table feeds watcher info across a restart: a watcher subscribed an hour ago (as
    // the record says) shows an hour of `duration-subscribed` once its dialog is restored.
    r.inserted_at = presenced::clock::Timestamp(r.inserted_at.0 - 3_600_000);
    store.put_watcher(&alice, &presence, &r).unwrap();
    store.flush().unwrap();
    drop(store);
    let node = TestNode::start(&cfg);
    let mut a = UdpClient::new(node.udp);
    a.send(&winfo_subscribe(&a, "wt-winfo"));
    assert_eq!(a.response("wt-winfo", "SUBSCRIBE").status, 200);
    let (_, st, body) = winfo(&a.notify("wt-winfo"));
    assert_eq!(st, "full");
    let at = body
        .find("sip:watcher@example.com")
        .expect("the restored watcher is listed");
    let tag_start = body[..at]
        .rfind("<watcher ")
        .expect("its <watcher> element");
    let elem = &body[tag_start..at];
    let d = elem
        .split("duration-subscribed=\"")
        .nth(1)
        .and_then(|v| v.split('"').next())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or_else(|| panic!("duration-subscribed in {elem}"));
    assert!(
        (3600..3700).contains(&d),
        "duration-subscribed {d} in {body}"
    );
    assert!(elem.contains("status=\"active\""), "{elem}");
}
