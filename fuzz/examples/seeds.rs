//! Writes the hand-made seed corpora under `seeds/<target>/` (run from `fuzz/`:
//! `cargo run --example seeds`), or with `--check` replays every file of `seeds/` and
//! `corpus/` through the targets' checks without libFuzzer (a regression run).
//!
//! The SIP seeds are the messages the black-box tests send (tests/common/mod.rs); the
//! documents are the tests' PIDF / dialog-info / message-summary bodies; the frames are
//! encoded with the crate's own `encode_frame`, so they track the wire format.

use std::fs;
use std::path::Path;

use presenced::clock::Timestamp;
use presenced::cluster::hlc::{Hlc, Stamp};
use presenced::cluster::merge::{OwnedDialog, PubId, PubKey, Record, State, Versioned};
use presenced::cluster::sync::SyncMsg;
use presenced::cluster::wire::{encode_frame, Frame, Hello, PROTOCOL};
use presenced::ids::{DialogId, ETag, EventKey, NodeId, PresentityUri, UriMatch};
use presenced::presence::package::Body;
use presenced::presence::publication::Publication;
use presenced::presence::subscription::{DialogState, SubStatus};

const TARGETS: [&str; 5] = ["parse", "headers", "compose", "wire", "node"];

fn pidf(entity: &str, tuple: &str, basic: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\r\n<presence xmlns=\"urn:ietf:params:xml:ns:pidf\" entity=\"{entity}\">\r\n<tuple id=\"{tuple}\"><status><basic>{basic}</basic></status></tuple>\r\n</presence>\r\n"
    )
}

const RPID: &str = "<?xml version=\"1.0\"?>\n<presence xmlns=\"urn:ietf:params:xml:ns:pidf\" xmlns:dm=\"urn:ietf:params:xml:ns:pidf:data-model\" xmlns:rpid=\"urn:ietf:params:xml:ns:pidf:rpid\" entity=\"sip:alice@example.com\"><tuple id=\"t2\"><status><basic>closed</basic></status><note xml:lang=\"en\">away</note><timestamp>2024-01-01T00:00:00Z</timestamp></tuple><dm:person id=\"p1\"><rpid:activities><rpid:on-the-phone/></rpid:activities></dm:person></presence>";

fn dialog_info(id: &str, state: &str) -> String {
    format!(
        "<?xml version=\"1.0\"?>\r\n<dialog-info xmlns=\"urn:ietf:params:xml:ns:dialog-info\" version=\"3\" state=\"full\" entity=\"sip:alice@example.com\">\r\n<dialog id=\"{id}\" direction=\"initiator\"><state>{state}</state></dialog>\r\n</dialog-info>\r\n"
    )
}

fn request(method: &str, call_id: &str, extra: &str, body: &str) -> String {
    format!(
        "{method} sip:alice@example.com SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK{call_id}1;rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:watcher@example.com>;tag=ft-{call_id}\r\n\
         To: <sip:alice@example.com>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 1 {method}\r\n\
         {extra}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

fn sip_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let doc = pidf("sip:alice@example.com", "t1", "open");
    let publish = request(
        "PUBLISH",
        "p1",
        "Event: presence\r\nContent-Type: application/pidf+xml\r\nExpires: 60\r\n",
        &doc,
    );
    let refresh = request(
        "PUBLISH",
        "p2",
        "Event: presence\r\nSIP-If-Match: a1b2c3\r\nExpires: 3600\r\n",
        "",
    );
    let subscribe = request(
        "SUBSCRIBE",
        "s1",
        "Event: presence;id=7\r\nContact: <sip:watcher@127.0.0.1:5070>\r\nRecord-Route: <sip:p1.example.com;lr>, <sip:p2.example.com;lr>\r\nExpires: 600\r\nAccept: application/pidf+xml\r\n",
        "",
    );
    let fetch = request(
        "SUBSCRIBE",
        "s2",
        "Event: presence.winfo\r\nContact: <sip:watcher@127.0.0.1:5070>\r\nExpires: 0\r\n",
        "",
    );
    let resub = "SUBSCRIBE sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKs1re;rport\r\nMax-Forwards: 70\r\nFrom: <sip:watcher@example.com>;tag=ft-s1\r\nTo: <sip:alice@example.com>;tag=lt-1\r\nCall-ID: s1\r\nCSeq: 2 SUBSCRIBE\r\nEvent: presence\r\nContact: <sip:watcher@127.0.0.1:5070>\r\nExpires: 0\r\nContent-Length: 0\r\n\r\n".to_string();
    let options = request("OPTIONS", "o1", "", "");
    let dialog = request(
        "PUBLISH",
        "d1",
        "Event: dialog;sla\r\nContent-Type: application/dialog-info+xml\r\n",
        &dialog_info("d1", "confirmed"),
    );
    let mwi = request(
        "PUBLISH",
        "m1",
        "Event: message-summary\r\nContent-Type: application/simple-message-summary\r\n",
        "Messages-Waiting: yes\r\nVoice-Message: 2/8 (0/2)\r\n",
    );
    let compact = "PUBLISH sip:a@x SIP/2.0\nv: SIP/2.0/UDP h;branch=z9hG4bK1\nf: <sip:a@x>;tag=1\nt : <sip:a@x>\ni: c\nCSeq: 1 PUBLISH\no: presence\nc: application/pidf+xml\nSIP-If-Match: e1\nSubject: folded\n  line\nl: 5\n\nhello".to_string();
    let ok = "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKn\r\nFrom: <sip:alice@example.com>;tag=lt-1\r\nTo: <sip:watcher@example.com>;tag=ft-s1\r\nCall-ID: s1\r\nCSeq: 3 NOTIFY\r\nContent-Length: 0\r\n\r\n".to_string();
    let ipv6 = "SUBSCRIBE sips:a@[2001:db8::1] SIP/2.0\r\nVia: SIP/2.0/TCP [::1]:5060;branch=z9hG4bKq, SIP/2.0/UDP 10.0.0.5:5070;rport;branch=z9hG4bK-c\r\nFrom: \"A, B\" <sip:a@x>;tag=1\r\nTo: <tel:+15551234>\r\nCall-ID: c6\r\nCSeq: 1 SUBSCRIBE\r\nEvent: presence\r\nContent-Length: 0\r\n\r\n".to_string();
    let missing = "SUBSCRIBE sip:a@x SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKm\r\nFrom: <sip:a@x>;tag=1\r\nCall-ID: m\r\nCSeq: 1 SUBSCRIBE\r\nContent-Length: 0\r\n\r\n".to_string();
    let stream = format!("\r\n\r\n{options}{publish}");
    vec![
        ("publish", publish.into_bytes()),
        ("refresh", refresh.into_bytes()),
        ("subscribe", subscribe.into_bytes()),
        ("fetch_winfo", fetch.into_bytes()),
        ("resubscribe", resub.into_bytes()),
        ("options", options.into_bytes()),
        ("publish_dialog", dialog.into_bytes()),
        ("publish_mwi", mwi.into_bytes()),
        ("compact_folded_lf", compact.into_bytes()),
        ("notify_200", ok.into_bytes()),
        ("ipv6_tel", ipv6.into_bytes()),
        ("missing_to", missing.into_bytes()),
        ("tcp_stream", stream.into_bytes()),
    ]
}

fn header_seeds() -> Vec<(&'static str, Vec<u8>)> {
    [
        ("event", "presence;id=7"),
        ("event_sla", "dialog;sla"),
        ("substate_active", "active;expires=600"),
        ("substate_term", "terminated;reason=timeout;retry-after=30"),
        ("expires", " 3600 "),
        ("expires_huge", "99999999999999999999"),
        (
            "allow_events",
            "presence, presence.winfo, dialog, dialog;sla, message-summary",
        ),
        ("etag", "a1b2-c3d4.e5"),
        (
            "name_addr",
            "\"Bob, Jr\" <sip:bob@example.com;transport=tcp>;tag=abc;q=0.5",
        ),
        ("name_addr_list", "<sip:p1;lr>, \"x,y\" <sip:p2;lr>"),
        (
            "via",
            "SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1;rport;received=10.0.0.1",
        ),
        ("via_v6", "SIP/2.0/TCP [2001:db8::1]:5061;branch=z9hG4bKx"),
        ("cseq", "12 SUBSCRIBE"),
        ("uri", "sip:Alice@Example.COM:5060;transport=udp?subject=x"),
        ("uri_tel", "tel:+1-555-1234;phone-context=example.com"),
    ]
    .into_iter()
    .map(|(n, s)| (n, s.as_bytes().to_vec()))
    .collect()
}

/// `pick, version, doc (0xFF doc)*` — pick indexes `packages::builtin()`: 0 presence,
/// 1 presence.winfo, 2 dialog, 3 dialog;sla, 4 message-summary.
fn compose_input(pick: u8, version: u8, docs: &[&str]) -> Vec<u8> {
    let mut out = vec![pick, version];
    for (i, d) in docs.iter().enumerate() {
        if i > 0 {
            out.push(0xFF);
        }
        out.extend_from_slice(d.as_bytes());
    }
    out
}

fn compose_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let a = pidf("sip:alice@example.com", "t1", "open");
    let b = pidf("sip:alice@example.com", "t2", "closed");
    vec![
        ("pidf_one", compose_input(0, 0, &[&a])),
        ("pidf_three", compose_input(0, 1, &[&a, &b, RPID])),
        ("winfo", compose_input(1, 4, &["sip:alice@example.com", "presence", "sip:bob@example.com", "sip:carol@example.com"])),
        ("dialog_two", compose_input(2, 3, &[&dialog_info("d1", "confirmed"), &dialog_info("d2", "early")])),
        ("dialog_sla", compose_input(3, 9, &[&dialog_info("x", "terminated")])),
        ("mwi", compose_input(4, 0, &["Messages-Waiting: yes\r\nMessage-Account: sip:alice@example.com\r\nVoice-Message: 2/8 (0/2)\r\n", "Messages-Waiting: no\r\n"])),
    ]
}

fn stamp(ms: u64, node: &str) -> Stamp {
    Stamp {
        hlc: Hlc {
            wall_ms: ms,
            counter: 0,
        },
        node: NodeId::new(node),
    }
}

fn uri(user: &str) -> PresentityUri {
    PresentityUri::parse(&format!("sip:{user}@example.com"), UriMatch::CaseSensitive)
        .unwrap_or_else(|| unreachable!("a literal valid URI"))
}

fn wire_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let now = 1_700_000_000_000u64;
    let key = PubKey {
        uri: uri("alice"),
        event: EventKey::new("presence"),
        id: PubId(ETag::from_wire("lineage-1")),
    };
    let publication = Publication {
        etag: ETag::from_wire("etag-2"),
        body: Body::new(
            "application/pidf+xml",
            pidf("sip:alice@example.com", "t1", "open").into_bytes(),
        ),
        expires_at: Timestamp(now + 3_600_000),
        received_at: Timestamp(now - 1000),
        priority: 0,
        origin: NodeId::new("n1"),
    };
    let live = Record {
        key: key.clone(),
        version: Versioned {
            stamp: stamp(now - 500, "n1"),
            state: State::Live(publication),
        },
    };
    let tomb = Record {
        key: key.clone(),
        version: Versioned {
            stamp: stamp(now - 100, "n2"),
            state: State::Removed {
                until: Timestamp(now + 7_200_000),
            },
        },
    };
    let id = DialogId {
        call_id: "c1@host".into(),
        remote_tag: "rt".into(),
        local_tag: "lt".into(),
    };
    let dialog = DialogState {
        id: id.clone(),
        presentity: uri("alice"),
        event: EventKey::new("presence"),
        event_id: Some("7".into()),
        watcher: uri("bob"),
        to_uri: "sip:alice@example.com".into(),
        from_uri: "sip:bob@example.com".into(),
        contact: "sip:bob@127.0.0.1:5070".into(),
        route_set: vec!["<sip:proxy;lr>".into()],
        local_contact: "sip:presence@127.0.0.1".into(),
        remote_cseq: 3,
        local_cseq: 12,
        expires_at: Timestamp(now + 600_000),
        status: SubStatus::Active,
        reason: None,
        version: 4,
        user_agent: Some("ua".into()),
        transport: "udp".into(),
        source: "127.0.0.1:5070".into(),
    };
    let sub = Record {
        key: id.clone(),
        version: Versioned {
            stamp: stamp(now - 50, "n2"),
            state: State::Live(OwnedDialog {
                dialog,
                owner: NodeId::new("n2"),
            }),
        },
    };
    let hello = Frame::Hello(Hello {
        protocol: PROTOCOL,
        node: NodeId::new("n2"),
        advertise: "127.0.0.1:7000".into(),
    });
    let frames: Vec<(&'static str, Vec<Frame>)> = vec![
        (
            "hello_ping",
            vec![
                hello.clone(),
                Frame::Ping { nonce: 7 },
                Frame::Pong { nonce: 7 },
            ],
        ),
        (
            "pub_delta",
            vec![
                hello.clone(),
                Frame::Pub(SyncMsg::Delta(vec![live.clone()])),
            ],
        ),
        (
            "pub_delta_then_tomb",
            vec![
                Frame::Pub(SyncMsg::Delta(vec![live.clone()])),
                Frame::Pub(SyncMsg::Batch(vec![tomb])),
            ],
        ),
        (
            "pub_digest",
            vec![
                Frame::Pub(SyncMsg::Delta(vec![live])),
                Frame::Pub(SyncMsg::DigestRequest {
                    buckets: vec![(3, 0xdead_beef), (1023, 1)],
                }),
            ],
        ),
        (
            "pub_pull",
            vec![
                Frame::Pub(SyncMsg::Pull {
                    keys: vec![key.clone()],
                }),
                Frame::Pub(SyncMsg::DigestDiff {
                    buckets: vec![5],
                    entries: vec![(key, stamp(now, "n3"))],
                }),
            ],
        ),
        (
            "sub_delta",
            vec![
                Frame::Sub(SyncMsg::Delta(vec![sub.clone()])),
                Frame::Sub(SyncMsg::DigestRequest { buckets: vec![] }),
            ],
        ),
        (
            "sub_pull",
            vec![
                Frame::Sub(SyncMsg::Batch(vec![sub])),
                Frame::Sub(SyncMsg::Pull { keys: vec![id] }),
            ],
        ),
    ];
    let mut out = Vec::new();
    for (name, fs) in frames {
        // Whole stream at once, decoder limit 64 + 255 * 64 bytes.
        let mut bytes = vec![0u8, 255];
        for f in &fs {
            bytes.extend_from_slice(&encode_frame(f));
        }
        out.push((name, bytes));
    }
    // The same delta stream cut into 7-byte chunks.
    if let Some((_, b)) = out.iter().find(|(n, _)| *n == "pub_delta") {
        let mut c = b.clone();
        c[0] = 6;
        out.push(("pub_delta_chunked", c));
    }
    out
}

fn seeds(target: &str) -> Vec<(&'static str, Vec<u8>)> {
    match target {
        "parse" => sip_seeds(),
        "headers" => header_seeds(),
        "compose" => compose_seeds(),
        "node" => presenced_fuzz::node_seeds::seeds(),
        _ => wire_seeds(),
    }
}

fn run(target: &str, data: &[u8]) {
    match target {
        "parse" => presenced_fuzz::parse(data),
        "headers" => presenced_fuzz::headers(data),
        "compose" => presenced_fuzz::compose(data),
        "node" => presenced_fuzz::node(data),
        _ => presenced_fuzz::wire(data),
    }
}

fn main() -> std::io::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let check = std::env::args().any(|a| a == "--check");
    for target in TARGETS {
        // The node target refuses to run where fuzzed Contacts could reach the network.
        let node_ok = presenced_fuzz::node::isolated()
            || std::env::var_os("PRESENCED_FUZZ_ALLOW_NET").is_some();
        if target == "node" && check && !node_ok {
            println!("node: skipped (run under `unshare -rn`, see README)");
            continue;
        }
        if check {
            let mut n = 0;
            for dir in ["seeds", "corpus", "regressions"] {
                let Ok(entries) = fs::read_dir(root.join(dir).join(target)) else {
                    continue;
                };
                for e in entries {
                    run(target, &fs::read(e?.path())?);
                    n += 1;
                }
            }
            println!("{target}: {n} inputs replayed, no panic");
        } else {
            let dir = root.join("seeds").join(target);
            fs::create_dir_all(&dir)?;
            for (name, bytes) in seeds(target) {
                if target != "node" || node_ok {
                    run(target, &bytes);
                }
                fs::write(dir.join(name), bytes)?;
            }
            println!("{target}: seeds written to {}", dir.display());
        }
    }
    Ok(())
}
