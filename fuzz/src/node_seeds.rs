//! Seed inputs for the `node` target, in its record layout ([`crate::node::encode`]).
//!
//! The messages are those of the black-box tests (tests/common/mod.rs `publish`,
//! `subscribe`, `resubscribe`) and of the sipp scenarios (tests/sipp: publish, refresh /
//! modify / remove, subscribe + NOTIFY, fetch, unsubscribe), addressed as the harness's
//! clients: client i sends from 127.0.0.1:`5070 + i` and names that port in its Via and
//! Contact, so NOTIFYs reach it. `$TAG` / `$ETAG` are filled in by the harness.

use crate::node::{encode, CLIENT_PORT0};

const TCP: u8 = 0x80;

fn pidf(entity: &str, basic: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\r\n<presence xmlns=\"urn:ietf:params:xml:ns:pidf\" entity=\"{entity}\">\r\n<tuple id=\"t1\"><status><basic>{basic}</basic></status></tuple>\r\n</presence>\r\n"
    )
}

/// tests/common `request`: `client` selects the Via/Contact port, `tcp` the Via transport.
#[allow(clippy::too_many_arguments)]
fn request(
    method: &str,
    user: &str,
    client: u8,
    tcp: bool,
    call_id: &str,
    cseq: u32,
    extra: &str,
    body: &str,
) -> Vec<u8> {
    let port = CLIENT_PORT0 + u16::from(client);
    let proto = if tcp { "TCP" } else { "UDP" };
    format!(
        "{method} sip:{user}@example.com SIP/2.0\r\n\
         Via: SIP/2.0/{proto} 127.0.0.1:{port};branch=z9hG4bK{call_id}{cseq}{method};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:watcher{client}@example.com>;tag=ft-{call_id}\r\n\
         To: <sip:{user}@example.com>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: {cseq} {method}\r\n\
         {extra}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn publish(user: &str, client: u8, call_id: &str, cseq: u32, extra: &str, basic: &str) -> Vec<u8> {
    let doc = if basic.is_empty() {
        String::new()
    } else {
        pidf(&format!("sip:{user}@example.com"), basic)
    };
    let ct = if doc.is_empty() {
        ""
    } else {
        "Content-Type: application/pidf+xml\r\n"
    };
    let extra = format!("Event: presence\r\n{ct}{extra}");
    request("PUBLISH", user, client, false, call_id, cseq, &extra, &doc)
}

fn subscribe(user: &str, event: &str, client: u8, call_id: &str, expires: u32) -> Vec<u8> {
    let port = CLIENT_PORT0 + u16::from(client);
    let extra = format!(
        "Event: {event}\r\nContact: <sip:watcher{client}@127.0.0.1:{port}>\r\nAccept: application/pidf+xml\r\nExpires: {expires}\r\n"
    );
    request("SUBSCRIBE", user, client, false, call_id, 1, &extra, "")
}

/// tests/common `resubscribe`: in dialog (To carries the node's tag, `$TAG`).
fn resubscribe(user: &str, client: u8, call_id: &str, cseq: u32, expires: u32) -> Vec<u8> {
    let port = CLIENT_PORT0 + u16::from(client);
    format!(
        "SUBSCRIBE sip:127.0.0.1 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK{call_id}{cseq}re;rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:watcher{client}@example.com>;tag=ft-{call_id}\r\n\
         To: <sip:{user}@example.com>;tag=$TAG\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: {cseq} SUBSCRIBE\r\n\
         Event: presence\r\n\
         Contact: <sip:watcher{client}@127.0.0.1:{port}>\r\n\
         Expires: {expires}\r\n\
         Content-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

/// The `node` seeds: (file name, input).
pub fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let all = 0xFF;
    let options = request("OPTIONS", "alice", 0, false, "o1", 1, "", "");
    let options_tcp = request("OPTIONS", "alice", 0, true, "o2", 1, "", "");
    let missing_to = b"SUBSCRIBE sip:a@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5071;branch=z9hG4bKm;rport\r\nFrom: <sip:a@x>;tag=1\r\nCall-ID: m\r\nCSeq: 1 SUBSCRIBE\r\nContent-Length: 0\r\n\r\n".to_vec();
    let stray_200 = b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKn\r\nFrom: <sip:alice@example.com>;tag=lt-1\r\nTo: <sip:watcher@example.com>;tag=ft-s1\r\nCall-ID: s1\r\nCSeq: 3 NOTIFY\r\nContent-Length: 0\r\n\r\n".to_vec();
    let dialog = "<?xml version=\"1.0\"?>\r\n<dialog-info xmlns=\"urn:ietf:params:xml:ns:dialog-info\" version=\"3\" state=\"full\" entity=\"sip:carol@example.com\">\r\n<dialog id=\"d1\" direction=\"initiator\"><state>confirmed</state></dialog>\r\n</dialog-info>\r\n";
    let mwi = "Messages-Waiting: yes\r\nVoice-Message: 2/8 (0/2)\r\n";
    let tcp_extra =
        "Event: presence\r\nContact: <sip:watcher0@$TCP;transport=tcp>\r\nExpires: 30\r\n";
    // Watcherinfo is for the presentity itself (anyone else gets 403).
    let winfo = |call_id: &str, expires: u32| {
        let m = subscribe("frank", "presence.winfo", 6, call_id, expires);
        String::from_utf8_lossy(&m)
            .replace("<sip:watcher6@example.com>", "<sip:frank@example.com>")
            .into_bytes()
    };
    vec![
        (
            "publish_subscribe_resubscribe",
            encode(
                all,
                0,
                &[
                    (0, &publish("alice", 0, "p1", 1, "Expires: 60\r\n", "open")),
                    (1, &subscribe("alice", "presence", 1, "s1", 60)),
                    (1, &resubscribe("alice", 1, "s1", 2, 0)),
                ],
            ),
        ),
        (
            "publish_refresh_modify_remove",
            encode(
                all,
                0,
                &[
                    (2, &publish("bob", 2, "p2", 1, "Expires: 60\r\n", "open")),
                    (2, &publish("bob", 2, "p2", 2, "SIP-If-Match: $ETAG\r\nExpires: 60\r\n", "")),
                    (2, &publish("bob", 2, "p2", 3, "SIP-If-Match: $ETAG\r\n", "closed")),
                    (2, &publish("bob", 2, "p2", 4, "SIP-If-Match: $ETAG\r\nExpires: 0\r\n", "")),
                ],
            ),
        ),
        (
            "subscribe_unanswered_then_publish",
            encode(
                0,
                0,
                &[
                    (3, &subscribe("dave", "presence", 3, "s3", 30)),
                    (4, &publish("dave", 4, "p3", 1, "Expires: 30\r\n", "open")),
                ],
            ),
        ),
        (
            "subscribe_notify_481",
            encode(all, all, &[(5, &subscribe("erin", "presence", 5, "s5", 30))]),
        ),
        (
            "winfo_subscribe_fetch",
            encode(
                all,
                0,
                &[
                    (6, &winfo("w6", 30)),
                    (7, &subscribe("frank", "presence", 7, "s7", 30)),
                    (6, &winfo("w7", 0)),
                ],
            ),
        ),
        (
            "dialog_and_mwi",
            encode(
                all,
                0,
                &[
                    (1, &request("PUBLISH", "carol", 1, false, "d1", 1, "Event: dialog;sla\r\nContent-Type: application/dialog-info+xml\r\n", dialog)),
                    (2, &subscribe("carol", "dialog;sla", 2, "d2", 30)),
                    (3, &request("PUBLISH", "carol", 3, false, "m1", 1, "Event: message-summary\r\nContent-Type: application/simple-message-summary\r\n", mwi)),
                    (4, &subscribe("carol", "message-summary", 4, "m2", 30)),
                ],
            ),
        ),
        (
            "tcp_publish_subscribe",
            encode(
                all,
                0,
                &[
                    (TCP, &options_tcp),
                    (TCP, &request("SUBSCRIBE", "gina", 0, true, "t1", 1, tcp_extra, "")),
                    (TCP, b"\r\n\r\n"),
                ],
            ),
        ),
        ("options", encode(0, 0, &[(0, &options)])),
        (
            "garbage",
            encode(
                all,
                0,
                &[
                    (1, &missing_to),
                    (2, &stray_200),
                    (3, b"\r\n\r\n"),
                    (4, b"\x00\xffINVITE garbage\r\n\r\n"),
                    (TCP | 5, b"NOTIFY sip:x SIP/2.0\r\nContent-Length: 5\r\n\r\nab"),
                ],
            ),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::records;

    #[test]
    fn seeds_decode_to_their_records() {
        for (name, input) in seeds() {
            let (_, _, recs) = records(&input);
            assert!(!recs.is_empty(), "{name} has no records");
            assert!(recs.iter().all(|r| !r.payload.is_empty()), "{name}");
        }
        let input = encode(3, 1, &[(0x85, b"ab"), (2, b"c")]);
        let (a, e, recs) = records(&input);
        assert_eq!((a, e, recs.len()), (3, 1, 2));
        assert_eq!(
            (recs[0].client, recs[0].tcp, recs[0].payload),
            (5, true, &b"ab"[..])
        );
        assert_eq!((recs[1].client, recs[1].tcp), (2, false));
    }
}
