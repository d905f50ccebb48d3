//! The dialog, dialog;sla and message-summary packages end to end over UDP.

mod common;

use common::*;

const ALICE: &str = "sip:alice@example.com";

fn dialog_info(entity: &str, id: &str, state: &str) -> String {
    format!(
        "<?xml version=\"1.0\"?>\r\n<dialog-info xmlns=\"urn:ietf:params:xml:ns:dialog-info\" version=\"3\" state=\"full\" entity=\"{entity}\">\r\n<dialog id=\"{id}\" direction=\"initiator\"><state>{state}</state></dialog>\r\n</dialog-info>\r\n"
    )
}

fn publish_as(event: &str, ct: &str, uri: &str, port: u16, call_id: &str, body: &str) -> String {
    request(
        "PUBLISH",
        uri,
        port,
        call_id,
        1,
        &format!("Event: {event}\r\nContent-Type: {ct}\r\n"),
        body,
    )
}

fn subscribe_as(event: &str, uri: &str, port: u16, call_id: &str) -> String {
    subscribe(uri, port, call_id, 1, "").replace("Event: presence", &format!("Event: {event}"))
}

fn root_version(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let root = &text[text.find("<dialog-info").expect("dialog-info root")..];
    let v = &root[root.find("version=\"").expect("version attribute") + 9..];
    v[..v.find('"').unwrap()].to_string()
}

#[test]
fn dialog_publications_are_merged_and_versioned_per_watcher() {
    let node = TestNode::start("");
    let mut c = UdpClient::new(node.udp);
    let p = c.port();
    let ct = "application/dialog-info+xml";
    c.send(&publish_as(
        "dialog",
        ct,
        ALICE,
        p,
        "d-p1",
        &dialog_info(ALICE, "call-1", "confirmed"),
    ));
    assert_eq!(c.response("d-p1", "PUBLISH").status, 200);
    c.send(&publish_as(
        "dialog",
        ct,
        ALICE,
        p,
        "d-p2",
        &dialog_info(ALICE, "call-2", "early"),
    ));
    assert_eq!(c.response("d-p2", "PUBLISH").status, 200);

    c.send(&subscribe_as("dialog", ALICE, p, "d-w"));
    assert_eq!(c.response("d-w", "SUBSCRIBE").status, 200);
    let n = c.notify("d-w");
    assert_eq!(n.content_type(), Some("application/dialog-info+xml"));
    let body = String::from_utf8_lossy(&n.body).to_string();
    assert!(
        body.contains("id=\"call-1\"") && body.contains("id=\"call-2\""),
        "{body}"
    );
    assert_eq!(body.matches("<dialog-info").count(), 1);
    assert_eq!(root_version(&n.body), "0", "first document: version 0");

    c.send(&publish_as(
        "dialog",
        ct,
        ALICE,
        p,
        "d-p3",
        &dialog_info(ALICE, "call-3", "terminated"),
    ));
    c.response("d-p3", "PUBLISH");
    assert_eq!(root_version(&c.notify("d-w").body), "1");

    // A second watcher counts its own versions from 0.
    c.send(&subscribe_as("dialog", ALICE, p, "d-w2"));
    c.response("d-w2", "SUBSCRIBE");
    assert_eq!(root_version(&c.notify("d-w2").body), "0");
}

#[test]
fn dialog_sla_is_a_package_of_its_own() {
    let node = TestNode::start("");
    let mut c = UdpClient::new(node.udp);
    let p = c.port();
    let ct = "application/dialog-info+xml";
    c.send(&publish_as(
        "dialog;sla",
        ct,
        ALICE,
        p,
        "sla-p",
        &dialog_info(ALICE, "line-1", "confirmed"),
    ));
    assert_eq!(c.response("sla-p", "PUBLISH").status, 200);
    // A plain dialog watcher sees nothing of the SLA state.
    c.send(&subscribe_as("dialog", ALICE, p, "plain"));
    c.response("plain", "SUBSCRIBE");
    assert!(!String::from_utf8_lossy(&c.notify("plain").body).contains("line-1"));
    c.send(&subscribe_as("dialog;sla", ALICE, p, "sla-w"));
    c.response("sla-w", "SUBSCRIBE");
    assert!(String::from_utf8_lossy(&c.notify("sla-w").body).contains("line-1"));
}

#[test]
fn message_summary_newest_publication_wins() {
    let node = TestNode::start("");
    let mut c = UdpClient::new(node.udp);
    let p = c.port();
    let ct = "application/simple-message-summary";
    c.send(&publish_as(
        "message-summary",
        ct,
        ALICE,
        p,
        "m1",
        "Messages-Waiting: yes\r\nVoice-Message: 1/0\r\n",
    ));
    assert_eq!(c.response("m1", "PUBLISH").status, 200);
    // Received times are kept in milliseconds: make the second one strictly newer.
    std::thread::sleep(std::time::Duration::from_millis(20));
    c.send(&publish_as(
        "message-summary",
        ct,
        ALICE,
        p,
        "m2",
        "Messages-Waiting: no\r\n",
    ));
    assert_eq!(c.response("m2", "PUBLISH").status, 200);
    c.send(&publish_as(
        "message-summary",
        ct,
        ALICE,
        p,
        "m3",
        "Voicemail: lots\r\n",
    ));
    assert_eq!(c.response("m3", "PUBLISH").status, 400, "light body check");
    c.send(&subscribe_as("message-summary", ALICE, p, "m-w"));
    c.response("m-w", "SUBSCRIBE");
    let n = c.notify("m-w");
    assert_eq!(n.content_type(), Some("application/simple-message-summary"));
    assert_eq!(String::from_utf8_lossy(&n.body), "Messages-Waiting: no\r\n");
}

#[test]
fn allow_events_lists_every_builtin_package() {
    let node = TestNode::start("");
    let mut c = UdpClient::new(node.udp);
    c.send(&subscribe_as("nope", ALICE, c.port(), "ae"));
    let r = c.response("ae", "SUBSCRIBE");
    assert_eq!(r.status, 489);
    let allow = r.header("Allow-Events").unwrap();
    for ev in ["presence", "dialog", "dialog;sla", "message-summary"] {
        assert!(allow.split(", ").any(|e| e == ev), "{ev} in {allow}");
    }
}
