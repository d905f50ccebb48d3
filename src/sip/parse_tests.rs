//! Tests of [`parse`](super::parse) on realistic and broken messages.

use super::*;

const PUBLISH: &str = "PUBLISH sip:alice@example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-pub-1;rport\r\n\
Max-Forwards: 70\r\n\
From: <sip:alice@example.com>;tag=f1\r\n\
To: <sip:alice@example.com>\r\n\
Call-ID: pub-1@192.0.2.10\r\n\
CSeq: 1 PUBLISH\r\n\
Event: presence\r\n\
Expires: 3600\r\n\
SIP-If-Match: abc123\r\n\
User-Agent: test-ua/1.0\r\n\
Content-Type: Application/PIDF+XML; charset=utf-8\r\n\
Content-Length: 168\r\n\r\n";

const PIDF: &str = "<?xml version=\"1.0\"?><presence xmlns=\"urn:ietf:params:xml:ns:pidf\" \
entity=\"sip:alice@example.com\"><tuple id=\"t1\"><status><basic>open</basic></status></tuple></presence>";

const SUBSCRIBE: &str = "SUBSCRIBE sip:bob@example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP proxy.example.com;branch=z9hG4bK-p, SIP/2.0/TCP 10.0.0.5:5070;branch=z9hG4bK-c;received=10.0.0.5\r\n\
Via: SIP/2.0/UDP 10.0.0.9;branch=z9hG4bK-d\r\n\
Record-Route: <sip:p1.example.com;lr>, <sip:p2.example.com;lr>\r\n\
Record-Route: <sip:p3.example.com;lr>\r\n\
From: \"Alice\" <sip:alice@example.com>;tag=a1\r\n\
To: <sip:bob@example.com>\r\n\
Call-ID: sub-1\r\n\
CSeq: 10 SUBSCRIBE\r\n\
Contact: <sip:alice@10.0.0.5:5070;transport=tcp>\r\n\
Event: presence;id=7\r\n\
Expires: 600\r\n\
Content-Length: 0\r\n\r\n";

fn req(text: &str) -> Request {
    match parse(text.as_bytes()) {
        Ok(Message::Request(r)) => r,
        other => panic!("expected request, got {other:?}"),
    }
}

fn bad(text: &[u8]) -> (String, EchoHeaders) {
    match parse(text) {
        Err(ParseError::BadRequest { reason, echo }) => (reason, *echo),
        other => panic!("expected BadRequest, got {other:?}"),
    }
}

fn publish_text() -> String {
    assert_eq!(PIDF.len(), 168, "fixture Content-Length must match");
    format!("{PUBLISH}{PIDF}")
}

#[test]
fn realistic_publish_with_pidf_body() {
    let r = req(&publish_text());
    assert_eq!(r.method, Method::Publish);
    assert_eq!(r.uri, "sip:alice@example.com");
    assert_eq!(r.vias.len(), 1);
    assert_eq!(r.vias[0].branch.as_deref(), Some("z9hG4bK-pub-1"));
    assert_eq!(r.vias[0].rport, Some(None));
    assert_eq!(r.from.tag.as_deref(), Some("f1"));
    assert_eq!(r.to.tag, None);
    assert_eq!(
        r.cseq,
        CSeq {
            seq: 1,
            method: Method::Publish
        }
    );
    assert_eq!(r.max_forwards, Some(70));
    assert_eq!(r.event().unwrap().unwrap().key().as_str(), "presence");
    assert_eq!(r.expires(), Ok(Some(3600)));
    assert_eq!(r.sip_if_match().unwrap().as_str(), "abc123");
    assert_eq!(r.content_type(), Some("application/pidf+xml"));
    assert_eq!(r.user_agent(), Some("test-ua/1.0"));
    assert_eq!(&r.body[..], PIDF.as_bytes());
    assert_eq!(r.header("content-length"), Some("168"));
    assert_eq!(r.header("l"), Some("168"));
    assert_eq!(r.headers.len(), 12);
}

#[test]
fn subscribe_with_record_route_and_split_vias() {
    let r = req(SUBSCRIBE);
    let hosts: Vec<_> = r.vias.iter().map(|v| v.host.as_str()).collect();
    assert_eq!(hosts, ["proxy.example.com", "10.0.0.5", "10.0.0.9"]);
    assert_eq!(r.vias[1].transport, "TCP");
    assert_eq!(r.vias[1].port, Some(5070));
    assert_eq!(
        r.vias[1].raw,
        "SIP/2.0/TCP 10.0.0.5:5070;branch=z9hG4bK-c;received=10.0.0.5"
    );
    assert_eq!(
        r.record_route,
        [
            "<sip:p1.example.com;lr>",
            "<sip:p2.example.com;lr>",
            "<sip:p3.example.com;lr>"
        ]
    );
    assert_eq!(
        r.contact.as_ref().unwrap().uri,
        "sip:alice@10.0.0.5:5070;transport=tcp"
    );
    assert_eq!(r.from.display.as_deref(), Some("Alice"));
    let ev = r.event().unwrap().unwrap();
    assert_eq!(ev.id.as_deref(), Some("7"));
    assert_eq!(r.max_forwards, None);
    assert_eq!(r.branch(), Some("z9hG4bK-p"));
    assert!(r.body.is_empty());
    assert_eq!(r.header_values("Via").count(), 2);
}

#[test]
fn compact_forms_folding_space_before_colon_and_lf_only() {
    let text = "SUBSCRIBE sip:bob@example.com SIP/2.0\n\
v: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKx\n\
f: <sip:alice@example.com>\n ;tag=a1\n\
t : <sip:bob@example.com>\n\
i: c1\n\
CSEQ: 2 SUBSCRIBE\n\
o: presence.winfo\n\
m: <sip:alice@10.0.0.1>\n\
Subject: hello\n\tworld\n\
l: 4\n\nbody";
    let r = req(text);
    assert_eq!(r.from.tag.as_deref(), Some("a1"));
    assert_eq!(r.to.uri, "sip:bob@example.com");
    assert_eq!(r.call_id, "c1");
    assert_eq!(r.cseq.seq, 2);
    assert_eq!(r.event().unwrap().unwrap().key().as_str(), "presence.winfo");
    assert_eq!(r.header("Subject"), Some("hello world"));
    assert_eq!(r.header("s"), Some("hello world"));
    assert_eq!(&r.body[..], b"body");
    let names: Vec<_> = r.headers.iter().map(|(n, _)| n.as_ref()).collect();
    assert_eq!(names[..5], ["Via", "From", "To", "Call-ID", "CSeq"]);
}

#[test]
fn every_missing_mandatory_header_names_itself_and_echoes_the_rest() {
    let lines = [
        ("Via", "Via: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKm"),
        ("From", "From: <sip:a@x>;tag=1"),
        ("To", "To: <sip:b@x>"),
        ("Call-ID", "Call-ID: cid"),
        ("CSeq", "CSeq: 1 SUBSCRIBE"),
    ];
    for (missing, _) in lines {
        let mut text = String::from("SUBSCRIBE sip:b@x SIP/2.0\r\n");
        for (name, line) in lines {
            if name != missing {
                text.push_str(line);
                text.push_str("\r\n");
            }
        }
        text.push_str("\r\n");
        let (reason, echo) = bad(text.as_bytes());
        assert_eq!(reason, format!("Missing {missing}"));
        assert_eq!(echo.vias.is_empty(), missing == "Via");
        assert_eq!(echo.from.is_none(), missing == "From");
        assert_eq!(echo.to.is_none(), missing == "To");
        assert_eq!(echo.call_id.is_none(), missing == "Call-ID");
        assert_eq!(echo.cseq.is_none(), missing == "CSeq");
    }
}

#[test]
fn content_length_short_bad_and_long() {
    let base = SUBSCRIBE.replace("Content-Length: 0\r\n\r\n", "");
    let (reason, echo) = bad(format!("{base}Content-Length: 10\r\n\r\nshort").as_bytes());
    assert_eq!(reason, "Bad Content-Length");
    assert_eq!(echo.vias.len(), 3);
    let (reason, _) = bad(format!("{base}Content-Length: ten\r\n\r\n").as_bytes());
    assert_eq!(reason, "Bad Content-Length");
    let r = req(&format!("{base}Content-Length: 3\r\n\r\nabcdef"));
    assert_eq!(&r.body[..], b"abc");
    let r = req(&format!("{base}\r\nall of it"));
    assert_eq!(&r.body[..], b"all of it");
}

#[test]
fn garbage_is_not_sip() {
    for g in [
        &b""[..],
        b"\r\n\r\n",
        b"hello world",
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"\xff\xfe\x00garbage",
        b"INVITE sip:x",
    ] {
        let err = parse(g).unwrap_err();
        assert_eq!(
            (&err, err.status_code()),
            (&ParseError::NotSip, None),
            "{g:?}"
        );
    }
}

#[test]
fn wrong_version_malformed_values_and_method_mismatch() {
    let wrong = SUBSCRIBE.replace(" SIP/2.0\r\n", " SIP/3.0\r\n");
    assert_eq!(
        parse(wrong.as_bytes()).unwrap_err().status_code(),
        Some(505)
    );
    let (reason, echo) = bad(wrong.as_bytes());
    assert_eq!(reason, "Unsupported SIP version");
    assert_eq!(echo.call_id.as_deref(), Some("sub-1"));
    let cases = [
        (
            "CSeq: 10 SUBSCRIBE",
            "CSeq: 10 NOTIFY",
            "CSeq method mismatch",
        ),
        (
            "CSeq: 10 SUBSCRIBE",
            "CSeq: ten SUBSCRIBE",
            "Malformed CSeq",
        ),
        (
            "To: <sip:bob@example.com>",
            "To: <sip:bob@example.com",
            "Malformed To",
        ),
        ("Call-ID: sub-1", "Bad Header Line", "Malformed header"),
        (
            "Expires: 600",
            "Max-Forwards: lots",
            "Malformed Max-Forwards",
        ),
        (
            "SUBSCRIBE sip:bob@example.com",
            "SUBSCRIBE bob",
            "Malformed Request-URI",
        ),
    ];
    for (from, to, want) in cases {
        let err = parse(SUBSCRIBE.replacen(from, to, 1).as_bytes()).unwrap_err();
        assert_eq!(err.status_code(), Some(400));
        let ParseError::BadRequest { reason, .. } = err else {
            unreachable!()
        };
        assert_eq!(reason, want, "{to}");
    }
    let mut bytes = SUBSCRIBE.as_bytes().to_vec();
    let at = SUBSCRIBE.find("Expires").unwrap();
    bytes[at + 1] = 0xff;
    assert_eq!(bad(&bytes).0, "Malformed header");
}

#[test]
fn extension_methods_parse_for_a_405() {
    let text = SUBSCRIBE.replace("SUBSCRIBE", "INFO");
    let r = req(&text);
    assert_eq!(r.method, Method::Other("INFO".into()));
}

#[test]
fn response_to_a_notify() {
    let text = "SIP/2.0 200 OK\r\n\
Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKnotify1\r\n\
From: <sip:bob@example.com>;tag=ours\r\n\
To: <sip:alice@example.com>;tag=a1\r\n\
Call-ID: sub-1\r\n\
CSeq: 3 NOTIFY\r\n\
Content-Length: 0\r\n\r\n";
    let Ok(Message::Response(r)) = parse(text.as_bytes()) else {
        panic!("not a response");
    };
    assert_eq!((r.status, r.reason.as_str()), (200, "OK"));
    assert_eq!(r.branch(), Some("z9hG4bKnotify1"));
    assert_eq!(r.cseq.method, Method::Notify);
    assert_eq!(r.to.tag.as_deref(), Some("a1"));
    assert_eq!(r.header("i"), Some("sub-1"));
    for broken in [
        text.replace("200 OK", "2000 OK"),
        text.replace("200 OK", "099 Low"),
        text.replace("SIP/2.0 200", "SIP/1.0 200"),
        text.replace("Call-ID: sub-1\r\n", ""),
        text.replace("Content-Length: 0", "Content-Length: 9"),
    ] {
        assert_eq!(
            parse(broken.as_bytes()),
            Err(ParseError::BadResponse),
            "{broken}"
        );
    }
}

#[test]
fn request_uri_schemes_accepted() {
    for uri in [
        "sip:alice@example.com",
        "sips:a@[2001:db8::1]:5061",
        "pres:alice@example.com",
        "tel:+15551234",
    ] {
        let r = req(&SUBSCRIBE.replacen("sip:bob@example.com", uri, 1));
        assert_eq!(r.uri, uri);
    }
}
