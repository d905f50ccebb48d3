//! `micro`: criterion micro-benchmarks of the hot-path building blocks, each without I/O
//! except the store group: SIP parse + normalise (`sip::parse` and the presentity URI of
//! the Request-URI) of a typical SUBSCRIBE and PUBLISH; PIDF composition of 1/5/20
//! publications (`PresencePackage::aggregate`); NOTIFY encoding (`sip::encode_notify`);
//! a publication write (+ flush) to `SledStore` in a temp dir and to `MemoryStore`; and
//! the cluster merge (`ReplicaSet::apply`) of new and superseding versions.
//!
//! Invariants: every benchmark checks once, before timing, that the operation does what
//! is measured (a parse that fails or an empty composition aborts the run instead of
//! timing an error path); measurement is short (2 s, 20 samples) so the whole run ends in
//! about a minute and a half.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion};
use presenced::clock::Timestamp;
use presenced::cluster::hlc::{Hlc, Stamp};
use presenced::cluster::merge::{PubId, PubKey, Record, State, Versioned};
use presenced::cluster::replica::{ReplicaSet, DEFAULT_TOMBSTONE_HOLD};
use presenced::ids::{ETag, EventKey, NodeId, PresentityUri, UriMatch};
use presenced::presence::package::{Body, EventPackage};
use presenced::presence::packages::presence::PresencePackage;
use presenced::presence::publication::Publication;
use presenced::sip::headers::{Event, SubscriptionState};
use presenced::sip::{encode_notify, parse, Message, NotifyParams};
use presenced::store::memory::MemoryStore;
use presenced::store::sled::{SledStore, Tables};
use presenced::store::Store;

const SUBSCRIBE: &str = "SUBSCRIBE sip:alice@example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK776asdhds;rport\r\n\
Max-Forwards: 70\r\n\
From: \"Bob\" <sip:bob@example.com>;tag=1928301774\r\n\
To: <sip:alice@example.com>\r\n\
Call-ID: a84b4c76e66710@pc33.example.com\r\n\
CSeq: 314159 SUBSCRIBE\r\n\
Contact: <sip:bob@192.0.2.10:5060>\r\n\
Event: presence\r\n\
Accept: application/pidf+xml\r\n\
Expires: 3600\r\n\
User-Agent: bench/1.0\r\n\
Content-Length: 0\r\n\r\n";

fn pidf_doc(entity: &str, tuple: &str, note: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\r\n\
<presence xmlns=\"urn:ietf:params:xml:ns:pidf\" entity=\"{entity}\">\r\n\
<tuple id=\"{tuple}\"><status><basic>open</basic></status>\
<contact priority=\"0.8\">sip:alice@192.0.2.20</contact><note>{note}</note></tuple>\r\n\
</presence>\r\n"
    )
}

fn publish_request() -> String {
    let body = pidf_doc("sip:alice@example.com", "t1", "Online");
    format!(
        "PUBLISH sip:alice@example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.20:5060;branch=z9hG4bKpub1;rport\r\n\
Max-Forwards: 70\r\n\
From: <sip:alice@example.com>;tag=9fxced76sl\r\n\
To: <sip:alice@example.com>\r\n\
Call-ID: 3848276298220188511@192.0.2.20\r\n\
CSeq: 1 PUBLISH\r\n\
Event: presence\r\n\
Expires: 3600\r\n\
Content-Type: application/pidf+xml\r\n\
Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// Parse, then derive the presentity key as the server does for every request.
fn parse_and_key(bytes: &[u8]) -> Option<PresentityUri> {
    match parse(bytes) {
        Ok(Message::Request(r)) => PresentityUri::parse(&r.uri, UriMatch::CaseSensitive),
        _ => None,
    }
}

fn bench_parse(c: &mut Criterion) {
    let publish = publish_request();
    let mut g = c.benchmark_group("sip_parse");
    for (name, msg) in [("subscribe", SUBSCRIBE), ("publish", publish.as_str())] {
        assert!(parse_and_key(msg.as_bytes()).is_some(), "{name} must parse");
        g.bench_function(name, |b| {
            b.iter(|| parse_and_key(black_box(msg.as_bytes())))
        });
    }
    g.finish();
}

fn bench_compose(c: &mut Criterion) {
    let uri = PresentityUri::parse("sip:alice@example.com", UriMatch::CaseSensitive)
        .expect("constant URI parses");
    let docs: Vec<String> = (0..20)
        .map(|i| pidf_doc(uri.as_str(), &format!("t{i}"), &format!("device {i}")))
        .collect();
    let mut g = c.benchmark_group("pidf_compose");
    for n in [1usize, 5, 20] {
        let refs: Vec<&[u8]> = docs[..n].iter().map(|d| d.as_bytes()).collect();
        let out = PresencePackage
            .aggregate(&uri, &refs)
            .expect("composition of n ≥ 1 docs");
        assert!(String::from_utf8_lossy(&out).contains(&format!("t{}", n - 1)));
        g.bench_with_input(BenchmarkId::from_parameter(n), &refs, |b, refs| {
            b.iter(|| PresencePackage.aggregate(black_box(&uri), black_box(refs)))
        });
    }
    g.finish();
}

fn bench_notify(c: &mut Criterion) {
    let event = Event::new("presence");
    let state = SubscriptionState::active(3599);
    let body = pidf_doc("sip:alice@example.com", "t1", "Online");
    let p = NotifyParams {
        request_uri: "sip:bob@192.0.2.10:5060",
        route: &[],
        via_transport: "UDP",
        via_host: "127.0.0.1",
        via_port: 5060,
        branch: "z9hG4bKn1",
        from_uri: "sip:alice@example.com",
        from_tag: "ours",
        to_uri: "sip:bob@example.com",
        to_tag: "1928301774",
        call_id: "a84b4c76e66710@pc33.example.com",
        cseq: 2,
        contact: "sip:127.0.0.1:5060",
        event: &event,
        subscription_state: &state,
        body: Some(("application/pidf+xml", body.as_bytes())),
        extra_headers: &[],
    };
    assert!(matches!(
        parse(&encode_notify(&p, "presenced")),
        Ok(Message::Request(_))
    ));
    c.bench_function("notify_encode", |b| {
        b.iter(|| encode_notify(black_box(&p), "presenced"))
    });
}

fn publication(i: u64, node: &NodeId) -> Publication {
    let body = pidf_doc("sip:alice@example.com", &format!("t{i}"), "Online");
    Publication {
        etag: ETag::from_wire(&format!("e{i}")),
        body: Body::new("application/pidf+xml", body.into_bytes()),
        expires_at: Timestamp(4_000_000_000_000),
        received_at: Timestamp(1_700_000_000_000 + i),
        priority: 0,
        origin: node.clone(),
    }
}

fn presentity(i: u64) -> PresentityUri {
    let s = format!("sip:user{i}@example.com");
    PresentityUri::parse(&s, UriMatch::CaseSensitive).expect("generated URI parses")
}

fn bench_store(c: &mut Criterion) {
    let node = NodeId::new("bench-1");
    let ev = EventKey::new("presence");
    let dir = tempfile::tempdir().expect("temp dir");
    let sled = SledStore::open(dir.path(), Tables::default(), &node).expect("open sled");
    let mem = MemoryStore::new();
    let mut g = c.benchmark_group("store");
    let mut i = 0u64;
    for (name, store) in [("sled_put", &sled as &dyn Store), ("memory_put", &mem)] {
        store
            .put_publication(&presentity(0), &ev, &publication(0, &node))
            .expect("put");
        assert_eq!(
            store.publications(&presentity(0), &ev).expect("read").len(),
            1
        );
        g.bench_function(name, |b| {
            b.iter_batched(
                || {
                    i += 1;
                    (presentity(i % 100_000), publication(i, &node))
                },
                |(uri, p)| store.put_publication(&uri, &ev, &p),
                BatchSize::SmallInput,
            )
        });
    }
    g.bench_function("sled_put_flush", |b| {
        b.iter_batched(
            || {
                i += 1;
                (presentity(i % 100_000), publication(i, &node))
            },
            |(uri, p)| {
                sled.put_publication(&uri, &ev, &p)?;
                sled.flush()
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

fn record(uri: u64, wall_ms: u64, node: &NodeId) -> Record<PubKey, Publication> {
    Record {
        key: PubKey {
            uri: presentity(uri),
            event: EventKey::new("presence"),
            id: PubId(ETag::from_wire(&format!("l{uri}"))),
        },
        version: Versioned {
            stamp: Stamp {
                hlc: Hlc {
                    wall_ms,
                    counter: 0,
                },
                node: node.clone(),
            },
            state: State::Live(publication(wall_ms, node)),
        },
    }
}

fn bench_merge(c: &mut Criterion) {
    let node = NodeId::new("node-2");
    let now = Timestamp(1_700_000_000_000);
    let mut set: ReplicaSet<PubKey, Publication> = ReplicaSet::new(DEFAULT_TOMBSTONE_HOLD);
    for u in 0..10_000 {
        set.apply(record(u, 1_700_000_000_000, &node), now);
    }
    assert_eq!(set.len(), 10_000);
    let mut g = c.benchmark_group("cluster_merge");
    let mut wall = 1_700_000_000_001u64;
    g.bench_function("apply_newer_into_10k", |b| {
        b.iter_batched(
            || {
                wall += 1;
                record(wall % 10_000, wall, &node)
            },
            |r| set.apply(r, now),
            BatchSize::SmallInput,
        )
    });
    g.bench_function("apply_stale_into_10k", |b| {
        b.iter_batched(
            || record(wall % 10_000, 1_600_000_000_000, &node),
            |r| set.apply(r, now),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group! {
    name = micro;
    config = Criterion::default()
        .measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(500))
        .sample_size(20);
    targets = bench_parse, bench_compose, bench_notify, bench_store, bench_merge
}
criterion_main!(micro);
