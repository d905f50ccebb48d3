//! The debug/admin endpoint (SPEC §5) against a real node with real SIP traffic: routes,
//! JSON-RPC methods, token enforcement, paging and `presenced ctl` (called in-process).

mod common;

use std::net::SocketAddr;
use std::sync::{mpsc, Arc};
use std::time::Duration;

use serde_json::{json, Value};

use common::*;
use presenced::admin;
use presenced::config::Config;
use presenced::ctl::{self, CtlError};
use presenced::metrics::Metrics;

const ALICE: &str = "sip:alice@example.com";
const ALICE_PATH: &str = "sip%3Aalice%40example.com";

/// A node plus its admin endpoint on 127.0.0.1 ephemeral ports, in one actix System.
struct AdminNode {
    udp: SocketAddr,
    url: String,
    /// `admin::start` refused 0.0.0.0 without a token.
    public_bind_refused: bool,
    stop: Option<mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl AdminNode {
    fn start(token: Option<&str>) -> AdminNode {
        let toml =
            "[sip]\nlisten = [\"udp:127.0.0.1:0\", \"tcp:127.0.0.1:0\"]\n[admin]\nlisten = \"\"\n";
        let mut cfg = Config::from_toml_str(toml).expect("test config parses");
        cfg.presence.subs_db_mode = presenced::config::SubsDbMode::Memory;
        cfg.presence.publ_cache = presenced::config::PublCache::Full;
        let token = token.map(str::to_string);
        let (tx, rx) = mpsc::channel();
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            actix::System::new().block_on(async move {
                let node = presenced::node::start(&cfg).await.expect("node starts");
                let metrics = Arc::new(Metrics::new());
                let any: SocketAddr = "0.0.0.0:0".parse().unwrap();
                let refused = admin::start(any, None, node.api.clone(), metrics.clone()).is_err();
                let local: SocketAddr = "127.0.0.1:0".parse().unwrap();
                let server = admin::start(local, token, node.api.clone(), metrics)
                    .expect("admin endpoint starts");
                tx.send((node.udp_addr.unwrap(), server.addr(), refused))
                    .unwrap();
                while stop_rx.try_recv().is_err() {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                server.stop().await;
                node.shutdown(Duration::from_millis(10)).await;
            });
        });
        let (udp, http, public_bind_refused) = rx.recv_timeout(WAIT).expect("node reports");
        AdminNode {
            udp,
            url: format!("http://{http}"),
            public_bind_refused,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    fn get(&self, path: &str) -> (u16, Value) {
        self.request("GET", path, None, None)
    }

    /// Any request; the body parsed as JSON (`Value::String` when it is not JSON).
    fn request(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> (u16, Value) {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(WAIT))
            .build()
            .into();
        let url = format!("{}{path}", self.url);
        let auth = token.map(|t| format!("Bearer {t}"));
        let resp = match method {
            "GET" => {
                let mut r = agent.get(&url);
                if let Some(a) = &auth {
                    r = r.header("Authorization", a);
                }
                r.call()
            }
            _ => {
                // As Kamailio users do: `curl -d '…'` (form content type).
                let mut r = agent
                    .post(&url)
                    .header("Content-Type", "application/x-www-form-urlencoded");
                if let Some(a) = &auth {
                    r = r.header("Authorization", a);
                }
                r.send(body.unwrap_or("").to_string())
            }
        };
        let mut resp = resp.expect("HTTP exchange");
        let status = resp.status().as_u16();
        let text = resp.body_mut().read_to_string().unwrap_or_default();
        let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, v)
    }

    /// A JSON-RPC call; the whole response object.
    fn rpc(&self, method: &str, params: Value) -> Value {
        let body = json!({"jsonrpc": "2.0", "method": method, "params": params, "id": 1});
        let (status, v) = self.request("POST", "/rpc", None, Some(&body.to_string()));
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["id"], 1, "{v}");
        v
    }

    fn result(&self, method: &str, params: Value) -> Value {
        let v = self.rpc(method, params);
        assert!(v.get("error").is_none(), "{method}: {v}");
        v["result"].clone()
    }
}

impl Drop for AdminNode {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// PUBLISHes an open PIDF for `uri`; returns the SIP-ETag.
fn publish_open(c: &mut UdpClient, uri: &str, call_id: &str, expires: u32) -> String {
    let extra = format!("Expires: {expires}\r\n");
    c.send(&publish(
        uri,
        c.port(),
        call_id,
        1,
        &extra,
        &pidf(uri, "t1", "open"),
    ));
    let r = c.response(call_id, "PUBLISH");
    assert_eq!(r.status, 200, "PUBLISH {uri}");
    r.header("SIP-ETag").expect("SIP-ETag").to_string()
}

#[test]
fn publication_shows_in_debug_routes_and_presentity_list() {
    let node = AdminNode::start(None);
    let mut c = UdpClient::new(node.udp);
    let etag = publish_open(&mut c, ALICE, "pa1", 600);

    let (status, v) = node.get("/debug/presentities");
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["total"], 1, "{v}");
    let p = &v["items"][0];
    assert_eq!(p["uri"], ALICE);
    assert_eq!(p["event"], "presence");
    assert_eq!(p["publications"][0]["etag"], etag.as_str());
    assert!(v["next_cursor"].is_null());

    let (status, one) = node.get(&format!("/debug/presentities/{ALICE_PATH}/presence"));
    assert_eq!(status, 200, "{one}");
    assert_eq!(one["publications"][0]["etag"], etag.as_str());
    assert!(one["composed"].as_str().unwrap().contains("open"), "{one}");
    let (status, _) = node.get("/debug/presentities/sip%3Abob%40example.com/presence");
    assert_eq!(status, 404);
    let (status, e) = node.get(&format!("/debug/presentities/{ALICE_PATH}/no-such-event"));
    assert_eq!(status, 400, "{e}");
    let (status, _) = node.get("/debug/presentities?uri=sip%3Abob%40example.com");
    assert_eq!(status, 200);

    let list = node.result("presence.presentity_list", json!([]));
    let rec = &list.as_array().unwrap()[0];
    assert_eq!(rec["pres_uri"], ALICE);
    assert_eq!(rec["etag"], etag.as_str());
    assert_eq!(rec["event"], "presence");
    assert_eq!(rec["user"], "alice");
    assert_eq!(rec["domain"], "example.com");
    assert!(rec.get("body").is_none(), "short mode has no body");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let expires = rec["expires"].as_u64().unwrap();
    assert!(expires > now + 500 && expires <= now + 601, "{rec}");
    let full = node.result("presence.presentity_list", json!(["full"]));
    assert!(full[0]["body"]
        .as_str()
        .unwrap()
        .contains("<basic>open</basic>"));

    let (status, a) = node.get("/debug/actors");
    assert_eq!(status, 200);
    assert_eq!(a["kinds"]["presentity"]["live"], 1, "{a}");
    assert_eq!(a["kinds"]["transport"]["udp_listener"], 1, "{a}");
    assert_eq!(a["kinds"]["replication"]["live"], 0, "{a}");
    assert_eq!(a["kinds"]["peer"]["live"], 0, "{a}");
    let (_, a) = node.get("/debug/actors?kind=presentity");
    assert_eq!(a["items"][0]["key"], format!("{ALICE} presence"));
    assert_eq!(a["items"][0]["publications"], 1);
    // Age and activity: started before (or when) it last handled a message, both recent.
    let item = &a["items"][0];
    let (started, last) = (
        item["started_at"].as_u64().expect("started_at"),
        item["last_activity"].as_u64().expect("last_activity"),
    );
    let now_ms = now * 1000;
    assert!(
        started + 60_000 > now_ms && started <= last && last <= now_ms + 60_000,
        "{item}"
    );
    assert!(item["mailbox_depth"].as_u64().is_some(), "{item}");
    let (status, _) = node.get("/debug/actors?kind=martian");
    assert_eq!(status, 400);
}

#[test]
fn subscription_views_and_watcher_methods() {
    let node = AdminNode::start(None);
    let mut c = UdpClient::new(node.udp);
    let p = c.port();
    publish_open(&mut c, ALICE, "sw-p", 600);
    c.send(&subscribe(ALICE, p, "sw1", 5, "Expires: 300\r\n"));
    let r = c.response("sw1", "SUBSCRIBE");
    assert_eq!(r.status, 200);
    let tag = r.to.tag.expect("To-tag");
    c.notify("sw1");

    let (status, s) = node.get(&format!("/debug/subscriptions/{tag}"));
    assert_eq!(status, 200, "{s}");
    assert_eq!(s["to_tag"], tag.as_str());
    assert_eq!(s["from_tag"], "ft-sw1");
    assert_eq!(s["callid"], "sw1");
    assert_eq!(s["remote_cseq"], 5);
    assert!(s["local_cseq"].as_u64().unwrap() >= 1, "{s}");
    assert_eq!(s["pres_uri"], ALICE);
    assert_eq!(s["watcher_username"], "watcher");
    assert_eq!(s["watcher_domain"], "example.com");
    assert_eq!(s["status"], "active");
    assert!(s["expires"].as_u64().unwrap() > 250, "{s}");
    let (status, _) = node.get("/debug/subscriptions/no-such-tag");
    assert_eq!(status, 404);

    let (_, l) = node.get(&format!(
        "/debug/subscriptions?presentity={ALICE_PATH}&event=presence"
    ));
    assert_eq!(l["total"], 1, "{l}");
    assert_eq!(l["items"][0]["id"], tag.as_str());
    let (_, l) = node.get("/debug/subscriptions?watcher=sip%3Anobody%40example.com");
    assert_eq!(l["total"], 0, "{l}");
    let (_, l) = node.get("/debug/subscriptions?watcher=sip%3Awatcher%40example.com");
    assert_eq!(l["total"], 1, "{l}");

    let w = node.result("presence.watcher_list", json!([ALICE, "presence"]));
    assert_eq!(w[0]["watcher"], "sip:watcher@example.com", "{w}");
    assert_eq!(w[0]["to_tag"], tag.as_str());
    assert_eq!(w.as_array().unwrap().len(), 1);
    let named = node.result(
        "presence.watcher_list",
        json!({"uri": ALICE, "event": "presence"}),
    );
    assert_eq!(named, w);
    assert_eq!(
        node.result("presence.has_subscribers", json!([ALICE, "presence"])),
        json!(true)
    );
    let bob = json!(["sip:bob@example.com", "presence"]);
    assert_eq!(node.result("presence.has_subscribers", bob), json!(false));
    let auth = node.result(
        "presence.auth_status",
        json!(["sip:watcher@example.com", ALICE]),
    );
    assert_eq!(auth["status"], "active", "{auth}");
    assert_eq!(auth["code"], 1, "Kamailio's ACTIVE_STATUS");
    let upd = node.result("presence.updateWatchers", json!([ALICE, "presence"]));
    assert_eq!(upd["changed"], 0);
    assert_eq!(upd["watchers"], 1);

    // refreshWatchers re-sends the current state; type given as kamcmd sends it (a string).
    let out = node.result("presence.refreshWatchers", json!([ALICE, "presence", "1"]));
    assert_eq!(out["notified"], 1, "{out}");
    let n = c.notify("sw1");
    assert!(String::from_utf8_lossy(&n.body).contains("open"));
    let (_, s2) = node.get(&format!("/debug/subscriptions/{tag}"));
    assert!(s2["local_cseq"].as_u64() > s["local_cseq"].as_u64(), "{s2}");
    let e = node.rpc("presence.refreshWatchers", json!([ALICE, "presence", 2]));
    assert_eq!(e["error"]["code"], -32602);
    assert!(
        e["error"]["message"].as_str().unwrap().contains("XCAP"),
        "{e}"
    );
    let e = node.rpc("presence.refreshWatchers", json!([ALICE, "presence", 7]));
    assert_eq!(e["error"]["code"], -32602);
}

#[test]
fn cleanup_removes_expired_publications_only() {
    let node = AdminNode::start(None);
    let mut c = UdpClient::new(node.udp);
    publish_open(&mut c, "sip:short@example.com", "cl1", 1);
    let keep = publish_open(&mut c, ALICE, "cl2", 600);
    std::thread::sleep(Duration::from_millis(1500));
    let out = node.result("presence.cleanup", json!([]));
    assert!(out["removed_publications"].is_u64(), "{out}");
    let list = node.result("presence.presentity_list", json!([]));
    let uris: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["pres_uri"].as_str())
        .collect();
    assert_eq!(uris, vec![ALICE], "{list}");
    assert_eq!(list[0]["etag"], keep.as_str());
}

#[test]
fn health_metrics_and_cluster_routes() {
    let node = AdminNode::start(None);
    let mut c = UdpClient::new(node.udp);
    publish_open(&mut c, ALICE, "h1", 600);
    let (status, v) = node.get("/live");
    assert_eq!((status, v["live"].clone()), (200, json!(true)));
    let (status, v) = node.get("/ready");
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["ready"], true);
    assert_eq!(v["presentities"], 1);
    let (status, m) = node.get("/metrics");
    assert_eq!(status, 200);
    let text = m.as_str().expect("metrics are text");
    assert!(
        text.contains("presenced_actors{kind=\"presentity\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("presenced_process_resident_memory_bytes "),
        "{text}"
    );
    assert!(text.contains("presenced_notify_sent_total 0"), "{text}");
    let (status, v) = node.get("/debug/cluster");
    assert_eq!(status, 200);
    assert_eq!(v["enabled"], false);
    assert_eq!(v["peers"], json!([]));
    assert!(v["node"].is_string());
    let (status, _) = node.get("/no/such/route");
    assert_eq!(status, 404);
}

#[test]
fn token_is_enforced_and_public_bind_needs_one() {
    let node = AdminNode::start(Some("s3cret"));
    assert!(node.public_bind_refused);
    assert_eq!(node.request("GET", "/live", None, None).0, 401);
    assert_eq!(node.request("GET", "/live", Some("wrong"), None).0, 401);
    assert_eq!(node.request("GET", "/live", Some("s3cret"), None).0, 200);
    let body = r#"{"jsonrpc":"2.0","method":"presence.presentity_list","id":1}"#;
    assert_eq!(node.request("POST", "/rpc", None, Some(body)).0, 401);
    let (status, v) = node.request("POST", "/rpc", Some("s3cret"), Some(body));
    assert_eq!((status, v["result"].clone()), (200, json!([])));
    let ok = ctl::run(
        &node.url,
        Some("s3cret"),
        "presence.presentity_list",
        &[],
        false,
    );
    assert_eq!(ok.unwrap(), "(empty)");
    let e = ctl::run(&node.url, None, "presence.presentity_list", &[], false).unwrap_err();
    assert!(matches!(e, CtlError::Http { status: 401, .. }), "{e}");
    assert!(!e.to_string().contains("s3cret"));
}

#[test]
fn paging_walks_every_presentity_once() {
    let node = AdminNode::start(None);
    let mut c = UdpClient::new(node.udp);
    let uris: Vec<String> = (0..25)
        .map(|i| format!("sip:user{i:02}@example.com"))
        .collect();
    for (i, u) in uris.iter().enumerate() {
        publish_open(&mut c, u, &format!("pg{i}"), 600);
    }
    let mut seen = Vec::new();
    let mut path = "/debug/presentities?limit=10".to_string();
    let mut pages = 0;
    loop {
        let (status, v) = node.get(&path);
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["total"], 25);
        pages += 1;
        for item in v["items"].as_array().unwrap() {
            seen.push(item["uri"].as_str().unwrap().to_string());
        }
        match v["next_cursor"].as_str() {
            Some(cur) => path = format!("/debug/presentities?limit=10&cursor={cur}"),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, uris, "each exactly once, in key order");
    let (_, a) = node.get("/debug/actors?kind=presentity&limit=20");
    assert_eq!(a["items"].as_array().unwrap().len(), 20);
    assert!(a["next_cursor"].is_string());
    let (status, _) = node.get("/debug/presentities?cursor=zz");
    assert_eq!(status, 400);
    let (status, _) = node.get("/debug/presentities?limit=many");
    assert_eq!(status, 400);
}

#[test]
fn rpc_envelope_errors() {
    let node = AdminNode::start(None);
    let (status, v) = node.request("POST", "/rpc", None, Some("{\"jsonrpc\": \"2.0\", "));
    assert_eq!(status, 200);
    assert_eq!(v["error"]["code"], -32700, "{v}");
    let v = node.rpc("presence.no_such_method", json!([]));
    assert_eq!(v["error"]["code"], -32601, "{v}");
    let v = node.rpc("presence.watcher_list", json!([ALICE]));
    assert_eq!(v["error"]["code"], -32602, "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("event"),
        "{v}"
    );
    let v = node.rpc("presence.has_subscribers", json!(["not a uri", "presence"]));
    assert_eq!(v["error"]["code"], -32602, "{v}");
    let v = node.rpc("presence.presentity_list", json!(["partial"]));
    assert_eq!(v["error"]["code"], -32602, "{v}");
    let (status, v) = node.request("POST", "/rpc", None, Some("[]"));
    assert_eq!((status, v["error"]["code"].clone()), (200, json!(-32600)));
    let methods = node.result("system.listMethods", json!([]));
    assert!(methods
        .as_array()
        .unwrap()
        .contains(&json!("presence.cleanup")));
    let big = format!(
        "{{\"method\":\"x\",\"params\":[\"{}\"]}}",
        "a".repeat(70 * 1024)
    );
    assert_eq!(node.request("POST", "/rpc", None, Some(&big)).0, 413);
    assert_eq!(node.request("GET", "/rpc", None, None).0, 404);
}

#[test]
fn ctl_against_a_running_node() {
    let node = AdminNode::start(None);
    let mut c = UdpClient::new(node.udp);
    let etag = publish_open(&mut c, ALICE, "ctl1", 600);
    let table = ctl::run(&node.url, None, "presence.presentity_list", &[], false).unwrap();
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 2, "{table}");
    assert!(lines[0].starts_with("pres_uri"), "{table}");
    assert!(
        lines[1].contains(ALICE) && lines[1].contains(&etag),
        "{table}"
    );
    let raw = ctl::run(
        &node.url,
        None,
        "presence.presentity_list",
        &["full".into()],
        true,
    );
    let v: Value = serde_json::from_str(&raw.unwrap()).unwrap();
    assert_eq!(v[0]["etag"], etag.as_str());
    assert!(v[0]["body"].is_string());
    let args = [ALICE.to_string(), "presence".into()];
    let s = ctl::run(&node.url, None, "presence.has_subscribers", &args, false).unwrap();
    assert_eq!(s, "false");
    let e = ctl::run(&node.url, None, "presence.bogus", &[], false).unwrap_err();
    assert!(matches!(e, CtlError::Rpc { code: -32601, .. }), "{e}");
    let out = ctl::run(
        &format!("{}/", node.url),
        None,
        "presence.cleanup",
        &[],
        false,
    );
    assert!(out.unwrap().starts_with("removed_publications"));
}
