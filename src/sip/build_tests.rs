//! Tests of response and NOTIFY encoding, checked by parsing the output back.

use std::net::SocketAddr;

use bytes::Bytes;

use super::headers::{Event, SubscriptionState};
use super::*;

const SUBSCRIBE: &str = "SUBSCRIBE sip:bob@example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 10.0.0.5:5070;rport;branch=z9hG4bK-c;received=1.1.1.1, SIP/2.0/TCP proxy.example.com;branch=z9hG4bK-p\r\n\
Via: SIP/2.0/UDP 10.0.0.9;branch=z9hG4bK-d\r\n\
From: \"Alice\" <sip:alice@example.com>;tag=a1\r\n\
To: <sip:bob@example.com>\r\n\
Call-ID: sub-1\r\n\
CSeq: 10 SUBSCRIBE\r\n\
Contact: <sip:alice@10.0.0.5:5070>\r\n\
Event: presence\r\n\
Content-Length: 0\r\n\r\n";

fn request(text: &str) -> Request {
    match parse(text.as_bytes()) {
        Ok(Message::Request(r)) => r,
        other => panic!("expected request, got {other:?}"),
    }
}

fn response(bytes: &[u8]) -> Response {
    match parse(bytes) {
        Ok(Message::Response(r)) => r,
        other => panic!(
            "expected response, got {other:?} from {}",
            String::from_utf8_lossy(bytes)
        ),
    }
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

#[test]
fn response_copies_vias_in_order_and_stamps_the_top_one() {
    let req = request(SUBSCRIBE);
    let out = OutResponse::to(&req, 202, "Accepted", addr("192.0.2.7:40000"))
        .to_tag("ours")
        .to_tag("second")
        .header("Expires", "600");
    assert_eq!(out.status(), 202);
    let bytes = out.encode("presenced/0.1");
    let r = response(&bytes);
    let raws: Vec<_> = r.vias.iter().map(|v| v.raw.as_str()).collect();
    assert_eq!(
        raws,
        [
            "SIP/2.0/UDP 10.0.0.5:5070;rport=40000;branch=z9hG4bK-c;received=192.0.2.7",
            "SIP/2.0/TCP proxy.example.com;branch=z9hG4bK-p",
            "SIP/2.0/UDP 10.0.0.9;branch=z9hG4bK-d",
        ]
    );
    assert_eq!(r.to.tag.as_deref(), Some("ours"));
    assert_eq!(r.from.raw, "\"Alice\" <sip:alice@example.com>;tag=a1");
    assert_eq!((r.call_id.as_str(), r.cseq.seq), ("sub-1", 10));
    assert_eq!(r.header("Expires"), Some("600"));
    assert_eq!(r.header("Server"), Some("presenced/0.1"));
    assert_eq!(r.header("Content-Length"), Some("0"));
    assert_eq!((r.status, r.reason.as_str()), (202, "Accepted"));
}

#[test]
fn received_only_when_source_differs_and_no_rport() {
    let text = SUBSCRIBE.replace(
        "10.0.0.5:5070;rport;branch=z9hG4bK-c;received=1.1.1.1",
        "10.0.0.5:5070;branch=z9hG4bK-c",
    );
    let req = request(&text);
    let same = response(&OutResponse::to(&req, 200, "OK", addr("10.0.0.5:5070")).encode(""));
    assert_eq!(
        same.vias[0].raw,
        "SIP/2.0/UDP 10.0.0.5:5070;branch=z9hG4bK-c"
    );
    assert_eq!(same.header("Server"), None);
    let other = response(&OutResponse::to(&req, 200, "OK", addr("10.9.9.9:5070")).encode(""));
    assert_eq!(other.vias[0].received.as_deref(), Some("10.9.9.9"));
    assert_eq!(other.vias[0].rport, None);
}

#[test]
fn existing_to_tag_is_kept_and_body_sets_length() {
    let text = SUBSCRIBE.replace(
        "To: <sip:bob@example.com>",
        "To: <sip:bob@example.com>;tag=x9",
    );
    let req = request(&text);
    let body = Bytes::from_static(b"<xml/>");
    let out = OutResponse::to(&req, 200, "OK", addr("10.0.0.5:5070"))
        .to_tag("new")
        .body("application/pidf+xml", body.clone());
    let r = response(&out.encode("s"));
    assert_eq!(r.to.tag.as_deref(), Some("x9"));
    assert_eq!(r.header("Content-Length"), Some("6"));
    assert_eq!(r.header("Content-Type"), Some("application/pidf+xml"));
    assert_eq!(r.body, body);
}

#[test]
fn bad_request_from_echo() {
    let text = SUBSCRIBE.replace("CSeq: 10 SUBSCRIBE\r\n", "");
    let Err(ParseError::BadRequest { reason, echo }) = parse(text.as_bytes()) else {
        panic!("expected 400");
    };
    let out = OutResponse::from_echo(&echo, 400, &reason, addr("10.0.0.5:5070")).to_tag("t");
    let wire = out.encode("srv");
    let s = String::from_utf8_lossy(&wire);
    assert!(s.starts_with("SIP/2.0 400 Missing CSeq\r\n"), "{s}");
    assert!(
        s.contains(
            "Via: SIP/2.0/UDP 10.0.0.5:5070;rport=5070;branch=z9hG4bK-c;received=10.0.0.5\r\n"
        ),
        "{s}"
    );
    assert_eq!(s.matches("Via: ").count(), 3);
    assert!(s.contains("To: <sip:bob@example.com>;tag=t\r\n"), "{s}");
    assert!(
        !s.contains("CSeq:") && s.ends_with("Content-Length: 0\r\n\r\n"),
        "{s}"
    );
}

#[test]
fn injected_line_breaks_are_neutralised() {
    let req = request(SUBSCRIBE);
    let out = OutResponse::to(&req, 400, "Bad\r\nX-Evil: 1", addr("10.0.0.5:5070"))
        .header("Warning", "a\r\nX-Evil: 2");
    let r = response(&out.encode("s"));
    assert_eq!(r.header("X-Evil"), None);
}

fn notify_params<'a>(
    route: &'a [String],
    event: &'a Event,
    state: &'a SubscriptionState,
    body: Option<(&'a str, &'a [u8])>,
    extra: &'a [(String, String)],
) -> NotifyParams<'a> {
    NotifyParams {
        request_uri: "sip:alice@10.0.0.5:5070",
        route,
        via_transport: "udp",
        via_host: "2001:db8::10",
        via_port: 5060,
        branch: "z9hG4bKn1",
        from_uri: "sip:bob@example.com",
        from_tag: "ours",
        to_uri: "sip:alice@example.com",
        to_tag: "a1",
        call_id: "sub-1",
        cseq: 4,
        contact: "sip:10.0.0.1:5060",
        event,
        subscription_state: state,
        body,
        extra_headers: extra,
    }
}

#[test]
fn injected_line_breaks_in_notify_fields_are_neutralised() {
    let event: Event = "presence".parse().unwrap();
    let state = SubscriptionState::active(60);
    let mut p = notify_params(&[], &event, &state, None, &[]);
    p.from_uri = "sip:bob@example.com>\r\nX-Evil: 1\r\nX: <x";
    p.to_tag = "a1\nX-Evil: 2";
    p.contact = "sip:10.0.0.1\r\nX-Evil: 3";
    p.call_id = "sub-1\r\nX-Evil: 4";
    let out = OutRequest::notify(&p, "ua\r\nX-Evil: 5");
    let text = String::from_utf8(out.bytes.to_vec()).unwrap();
    let lines: Vec<&str> = text.split("\r\n").collect();
    assert!(!lines.iter().any(|l| l.starts_with('X')), "{text}");
    assert!(!text.contains('\n') || text.matches('\n').count() == lines.len() - 1);
    assert!(lines.contains(&"Call-ID: sub-1  X-Evil: 4"), "{text}");
    assert!(
        lines.contains(&"To: <sip:alice@example.com>;tag=a1 X-Evil: 2"),
        "{text}"
    );
}

fn notify_request(bytes: &[u8]) -> Request {
    match parse(bytes) {
        Ok(Message::Request(r)) => r,
        other => panic!("bad NOTIFY {other:?}: {}", String::from_utf8_lossy(bytes)),
    }
}

#[test]
fn notify_with_route_set_event_id_state_and_body() {
    let route = vec![
        "<sip:p1.example.com;lr>".to_string(),
        "<sip:p2.example.com;lr>".to_string(),
    ];
    let event: Event = "presence;id=7".parse().unwrap();
    let state = SubscriptionState::active(599);
    let extra = vec![("X-Test".to_string(), "1".to_string())];
    let body = b"<presence/>";
    let p = notify_params(
        &route,
        &event,
        &state,
        Some(("application/pidf+xml", body)),
        &extra,
    );
    let out = OutRequest::notify(&p, "presenced");
    let r = notify_request(&out.bytes);
    assert_eq!(r.method, Method::Notify);
    assert_eq!(r.uri, "sip:alice@10.0.0.5:5070");
    assert_eq!(out.request_uri, r.uri);
    assert_eq!(
        r.vias[0].raw,
        "SIP/2.0/UDP [2001:db8::10]:5060;branch=z9hG4bKn1"
    );
    let routes: Vec<_> = r.header_values("Route").collect();
    assert_eq!(
        routes,
        ["<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>"]
    );
    assert_eq!(r.max_forwards, Some(70));
    assert_eq!(
        (r.from.tag.as_deref(), r.to.tag.as_deref()),
        (Some("ours"), Some("a1"))
    );
    assert_eq!(
        r.cseq,
        CSeq {
            seq: 4,
            method: Method::Notify
        }
    );
    assert_eq!(r.contact.as_ref().unwrap().uri, "sip:10.0.0.1:5060");
    assert_eq!(r.header("Event"), Some("presence;id=7"));
    assert_eq!(r.header("Subscription-State"), Some("active;expires=599"));
    assert_eq!(r.header("X-Test"), Some("1"));
    assert_eq!(r.user_agent(), Some("presenced"));
    assert_eq!(r.content_type(), Some("application/pidf+xml"));
    assert_eq!(&r.body[..], body);
    assert_eq!(r.header("Content-Length"), Some("11"));
}

#[test]
fn notify_without_body_and_with_strict_router() {
    let route = vec![
        "<sip:strict.example.com>".to_string(),
        "<sip:p2.example.com;lr>".to_string(),
    ];
    let event = Event::new("presence");
    let state = SubscriptionState::terminated("timeout");
    let p = notify_params(&route, &event, &state, None, &[]);
    let bytes = encode_notify(&p, "");
    let r = notify_request(&bytes);
    assert_eq!(r.uri, "sip:strict.example.com");
    let routes: Vec<_> = r.header_values("Route").collect();
    assert_eq!(
        routes,
        ["<sip:p2.example.com;lr>", "<sip:alice@10.0.0.5:5070>"]
    );
    assert_eq!(
        r.header("Subscription-State"),
        Some("terminated;reason=timeout")
    );
    assert_eq!(r.header("Content-Length"), Some("0"));
    assert_eq!(r.header("Content-Type"), None);
    assert_eq!(r.user_agent(), None);
    assert!(r.body.is_empty());
    assert_eq!(frame_length(&bytes, 65535), Ok(Some(bytes.len())));
}

#[test]
fn response_mirrors_record_route_in_order() {
    let with_rr = SUBSCRIBE.replace(
        "Call-ID: sub-1\r\n",
        "Record-Route: <sip:p1.example.com;lr>, <sip:p2.example.com;lr>\r\nRecord-Route: <sip:p3.example.com;lr>\r\nCall-ID: sub-1\r\n",
    );
    let req = request(&with_rr);
    let r = response(&OutResponse::to(&req, 200, "OK", addr("10.0.0.5:5070")).encode(""));
    let rr: Vec<&str> = r
        .headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("Record-Route"))
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(
        rr.join(", "),
        "<sip:p1.example.com;lr>, <sip:p2.example.com;lr>, <sip:p3.example.com;lr>"
    );
    // Without Record-Route, none is invented.
    let plain = response(
        &OutResponse::to(&request(SUBSCRIBE), 200, "OK", addr("10.0.0.5:5070")).encode(""),
    );
    assert!(!plain
        .headers
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case("Record-Route")));
}
