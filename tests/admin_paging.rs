//! The admin endpoint's paging at the source and mailbox depths, against a real node with
//! real SIP traffic: subscriptions spread over several presentities (so several shards) are
//! walked page by page over HTTP and JSON-RPC, live and passivated; presentity entries carry
//! their mailbox depth, and `/metrics` observes it.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use common::*;

const ADMIN: &str = "[admin]\nlisten = \"127.0.0.1:0\"\n";

/// 25 subscriptions: 5 watchers' dialogs on each of 5 presentities; returns the tags.
fn subscribe_25(node: &TestNode) -> BTreeSet<String> {
    let mut w = UdpClient::new(node.udp);
    let port = w.port();
    let mut tags = BTreeSet::new();
    for p in 0..5 {
        let uri = format!("sip:page{p}@example.com");
        for d in 0..5 {
            let call_id = format!("pg-{p}-{d}");
            w.send(&subscribe(&uri, port, &call_id, 1, "Expires: 600\r\n"));
            let ok = w.response(&call_id, "SUBSCRIBE");
            assert_eq!(ok.status, 200, "SUBSCRIBE {call_id}");
            tags.insert(ok.to.tag.expect("To-tag"));
            w.notify(&call_id);
        }
    }
    assert_eq!(tags.len(), 25, "distinct tags");
    tags
}

/// Walks `path` (which has a `?`) in pages of `limit`: the page sizes and every item's `id`
/// field (`key_field`), asserting the page shape on the way.
fn walk(node: &TestNode, path: &str, limit: usize, key_field: &str) -> (Vec<usize>, Vec<String>) {
    let mut sizes = Vec::new();
    let mut keys = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let url = match &cursor {
            Some(c) => format!("{path}&limit={limit}&cursor={c}"),
            None => format!("{path}&limit={limit}"),
        };
        let v = node.admin_get(&url);
        let items = v["items"]
            .as_array()
            .unwrap_or_else(|| panic!("{url}: {v}"));
        sizes.push(items.len());
        keys.extend(
            items
                .iter()
                .map(|i| i[key_field].as_str().unwrap().to_string()),
        );
        match v["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => {
                assert!(v["next_cursor"].is_null(), "{v}");
                return (sizes, keys);
            }
        }
        assert!(sizes.len() < 10, "the walk must end: {sizes:?}");
    }
}

fn sorted(keys: &[String]) -> Vec<String> {
    let mut s = keys.to_vec();
    s.sort();
    s
}

#[test]
fn subscriptions_page_at_the_source_10_10_5() {
    let node = TestNode::start(ADMIN);
    let tags = subscribe_25(&node);
    let all: Vec<String> = tags.iter().cloned().collect();

    let first = node.admin_get("/debug/subscriptions?limit=10");
    assert_eq!(first["total"], 25, "{first}");
    let (sizes, keys) = walk(&node, "/debug/subscriptions?", 10, "id");
    assert_eq!(sizes, vec![10, 10, 5]);
    assert_eq!(keys, all, "each dialog once, in key order");

    // The same walk through the actor listing, and a filtered one on one shard.
    let (sizes, keys) = walk(&node, "/debug/actors?kind=subscription", 10, "key");
    assert_eq!((sizes, keys), (vec![10, 10, 5], all.clone()));
    let (sizes, keys) = walk(
        &node,
        "/debug/subscriptions?presentity=sip%3Apage3%40example.com",
        2,
        "id",
    );
    assert_eq!(sizes, vec![2, 2, 1]);
    assert_eq!(keys, sorted(&keys));
    assert_eq!(keys.len(), 5);

    // JSON-RPC: Kamailio's plain array when not paged, the page object when paged.
    let plain = node.rpc(
        "presence.watcher_list",
        json!(["sip:page1@example.com", "presence"]),
    );
    assert_eq!(plain.as_array().map(Vec::len), Some(5), "{plain}");
    let mut seen = Vec::new();
    let mut params = json!(["sip:page1@example.com", "presence", 2]);
    let mut pages = 0;
    loop {
        let page = node.rpc("presence.watcher_list", params.clone());
        assert_eq!(page["total"], 5, "{page}");
        assert!(page.get("truncated").is_none(), "{page}");
        pages += 1;
        for r in page["items"].as_array().unwrap() {
            seen.push(r["to_tag"].as_str().unwrap().to_string());
        }
        match page["next_cursor"].as_str() {
            Some(c) => params = json!(["sip:page1@example.com", "presence", 2, c]),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    let plain_tags: Vec<String> = plain
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["to_tag"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(seen, plain_tags);
    let bad = node.rpc_raw(
        "presence.watcher_list",
        json!({"uri": "sip:page1@example.com", "event": "presence", "cursor": "zz"}),
    );
    assert_eq!(bad["error"]["code"], -32602, "{bad}");
}

#[test]
fn passivated_dialogs_are_paged_like_live_ones() {
    let node = TestNode::start(&format!(
        "[node]\npassivate_after = 1\n{ADMIN}[presence]\nsubs_db_mode = 0\n"
    ));
    let tags = subscribe_25(&node);
    let end = Instant::now() + WAIT;
    loop {
        let a = node.admin_get("/debug/actors");
        if a["kinds"]["subscription"]["passivated"] == 25 {
            break;
        }
        assert!(Instant::now() < end, "dialogs never all passivated: {a}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut keys = Vec::new();
    let mut sizes = Vec::new();
    let mut path = "/debug/subscriptions?limit=10".to_string();
    loop {
        let v = node.admin_get(&path);
        assert_eq!(v["total"], 25, "{v}");
        let items = v["items"].as_array().unwrap();
        sizes.push(items.len());
        for i in items {
            assert_eq!(i["passivated"], true, "{i}");
            keys.push(i["id"].as_str().unwrap().to_string());
        }
        match v["next_cursor"].as_str() {
            Some(c) => path = format!("/debug/subscriptions?limit=10&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(sizes, vec![10, 10, 5]);
    assert_eq!(keys, tags.into_iter().collect::<Vec<_>>());
}

#[test]
fn presentities_carry_mailbox_depth_and_metrics_observe_it() {
    let node = TestNode::start(ADMIN);
    let mut c = UdpClient::new(node.udp);
    let port = c.port();
    let uris: Vec<String> = (0..12)
        .map(|i| format!("sip:depth{i:02}@example.com"))
        .collect();
    for (i, u) in uris.iter().enumerate() {
        for n in 0..3u32 {
            let call_id = format!("md-{i}-{n}");
            c.send(&publish(
                u,
                port,
                &call_id,
                1,
                "Expires: 600\r\n",
                &pidf(u, &format!("t{n}"), "open"),
            ));
            assert_eq!(c.response(&call_id, "PUBLISH").status, 200);
        }
    }

    for path in [
        "/debug/presentities?limit=5",
        "/debug/actors?kind=presentity&limit=5",
    ] {
        let v = node.admin_get(path);
        assert_eq!(v["total"], 12, "{path}: {v}");
        let items = v["items"].as_array().unwrap();
        assert_eq!(items.len(), 5, "{path}: {v}");
        for i in items {
            let depth = i["mailbox_depth"].as_u64();
            assert!(depth.is_some(), "{path}: no mailbox_depth in {i}");
            assert!(i["handled"].as_u64().unwrap() >= 3, "{i}");
        }
    }
    let (_, names) = walk(&node, "/debug/presentities?", 5, "uri");
    assert_eq!(names, uris, "every presentity once, in key order");

    // presentity_list paged over JSON-RPC: `limit` counts presentities (3 records each).
    let page = node.rpc("presence.presentity_list", json!({"limit": 4}));
    assert_eq!(page["total"], 12, "{page}");
    assert_eq!(page["items"].as_array().map(Vec::len), Some(12), "{page}");
    assert!(page["next_cursor"].is_string(), "{page}");
    let whole = node.rpc("presence.presentity_list", json!([]));
    assert_eq!(
        whole.as_array().map(Vec::len),
        Some(36),
        "plain array: {whole}"
    );

    // Each scrape observes the depth of every presentity actor here (12 < the sample cap).
    let first = depth_count(&node);
    assert!(first >= 12, "one observation per presentity actor: {first}");
    let second = depth_count(&node);
    assert!(
        second >= first + 12,
        "a second scrape samples again: {first} → {second}"
    );
}

/// `presenced_mailbox_depth_count{kind="presentity"}` from one scrape.
fn depth_count(node: &TestNode) -> u64 {
    let text = node.admin_get("/metrics");
    let text = text.as_str().expect("metrics are text");
    let count = text
        .lines()
        .find_map(|l| l.strip_prefix("presenced_mailbox_depth_count{kind=\"presentity\"} "))
        .unwrap_or_else(|| panic!("no presentity mailbox histogram in {text}"));
    count.trim().parse().expect("a count")
}

/// The page object of an unpaged RPC is only used past the cap: the plain array otherwise.
#[test]
fn unpaged_rpc_lists_stay_plain_arrays() {
    let node = TestNode::start(ADMIN);
    let v: Value = node.rpc("presence.presentity_list", json!([]));
    assert_eq!(v, json!([]));
    let v = node.rpc("presence.presentity_list", json!(["short", 10]));
    assert_eq!(v["items"], json!([]), "{v}");
    assert_eq!(v["total"], 0, "{v}");
    assert!(v["next_cursor"].is_null(), "{v}");
}
