//! The one conformance suite every [`Store`] implementation must pass (Garage's
//! `src/db/test.rs` idea): call [`run`] from the implementation's tests.

use super::*;
use crate::clock::Timestamp;
use crate::ids::{NodeId, UriMatch};
use crate::presence::package::Body;
use crate::presence::subscription::SubStatus;

fn uri(s: &str) -> PresentityUri {
    PresentityUri::parse(s, UriMatch::CaseSensitive).expect("test URI")
}

fn publication(etag: &str, body: &str) -> Publication {
    Publication {
        etag: ETag::from_wire(etag),
        body: Body::new("application/pidf+xml", body.as_bytes().to_vec()),
        expires_at: Timestamp(10_000),
        received_at: Timestamp(5_000),
        priority: 3,
        origin: NodeId::new("node-1"),
    }
}

fn dialog(presentity: &str, tag: &str) -> DialogState {
    DialogState {
        id: DialogId {
            call_id: format!("c-{tag}"),
            remote_tag: "r".into(),
            local_tag: tag.into(),
        },
        presentity: uri(presentity),
        event: EventKey::new("presence"),
        event_id: None,
        watcher: uri("sip:w@example.com"),
        to_uri: presentity.into(),
        from_uri: "sip:w@example.com".into(),
        contact: "sip:w@127.0.0.1:5090".into(),
        route_set: vec!["<sip:p;lr>".into()],
        local_contact: "sip:127.0.0.1:5060".into(),
        remote_cseq: 7,
        local_cseq: 9,
        expires_at: Timestamp(99_000),
        status: SubStatus::Active,
        reason: None,
        version: 2,
        user_agent: Some("ua".into()),
        transport: "udp".into(),
        source: "127.0.0.1:5090".into(),
    }
}

/// Runs every check against `store`, which must start empty.
pub fn run(store: &dyn Store) {
    let alice = uri("sip:alice@example.com");
    let alicia = uri("sip:alice@example.co");
    let presence = EventKey::new("presence");
    let dialog_ev = EventKey::new("dialog");

    // Publications: put, read back per presentity, prefix isolation, replace, delete.
    store
        .put_publication(&alice, &presence, &publication("e1", "<a/>"))
        .unwrap();
    store
        .put_publication(&alice, &presence, &publication("e2", "<b/>"))
        .unwrap();
    store
        .put_publication(&alice, &dialog_ev, &publication("e3", "<c/>"))
        .unwrap();
    store
        .put_publication(&alicia, &presence, &publication("e4", "<d/>"))
        .unwrap();
    let got = store.publications(&alice, &presence).unwrap();
    let etags: Vec<_> = got.iter().map(|p| p.etag.as_str().to_string()).collect();
    assert_eq!(etags, ["e1", "e2"], "only this presentity and event");
    assert_eq!(
        got[0],
        publication("e1", "<a/>"),
        "round trip keeps every field"
    );
    store
        .put_publication(&alice, &presence, &publication("e1", "<z/>"))
        .unwrap();
    assert_eq!(
        store.publications(&alice, &presence).unwrap()[0]
            .body
            .bytes
            .as_ref(),
        b"<z/>"
    );
    store
        .delete_publication(&alice, &presence, &ETag::from_wire("e1"))
        .unwrap();
    store
        .delete_publication(&alice, &presence, &ETag::from_wire("missing"))
        .unwrap();
    assert_eq!(store.publications(&alice, &presence).unwrap().len(), 1);

    // Subscriptions: batched scan in key order covers everything exactly once.
    for i in 0..25 {
        store
            .put_subscription(&dialog("sip:bob@example.com", &format!("t{i:02}")))
            .unwrap();
    }
    let mut seen = Vec::new();
    let mut after: Option<Vec<u8>> = None;
    loop {
        let (batch, next) = store.scan_subscriptions(after.as_deref(), 10).unwrap();
        assert!(batch.len() <= 10);
        seen.extend(batch.into_iter().map(|d| d.id.local_tag));
        match next {
            Some(k) => after = Some(k),
            None => break,
        }
    }
    let expected: Vec<String> = (0..25).map(|i| format!("t{i:02}")).collect();
    assert_eq!(seen, expected);
    let d = dialog("sip:bob@example.com", "t03");
    assert_eq!(
        store.subscription(&d.presentity, &d.event, &d.id).unwrap(),
        Some(d.clone()),
        "read back by its key"
    );
    store
        .delete_subscription(&d.presentity, &d.event, &d.id)
        .unwrap();
    assert_eq!(
        store.subscription(&d.presentity, &d.event, &d.id).unwrap(),
        None
    );
    let (all, _) = store.scan_subscriptions(None, 100).unwrap();
    assert_eq!(all.len(), 24);
    assert_eq!(
        all[0],
        dialog("sip:bob@example.com", "t00"),
        "round trip keeps every field"
    );

    scan_publications(store);
    // Rule documents: per presentity, replace, delete.
    let bob = uri("sip:bob@example.com");
    assert_eq!(store.rules(&alice).unwrap(), None);
    store.put_rules(&alice, b"<ruleset/>").unwrap();
    store.put_rules(&bob, b"<b/>").unwrap();
    store.put_rules(&alice, b"<ruleset>2</ruleset>").unwrap();
    assert_eq!(
        store.rules(&alice).unwrap().as_deref(),
        Some(&b"<ruleset>2</ruleset>"[..])
    );
    store.delete_rules(&alice).unwrap();
    assert_eq!(store.rules(&alice).unwrap(), None);
    assert_eq!(store.rules(&bob).unwrap().as_deref(), Some(&b"<b/>"[..]));
    watchers(store);
    store.flush().unwrap();
}

/// Watcher states: per presentity and event, in watcher order, replaced, deleted; rule
/// documents in the same tree are not listed as watchers.
fn watchers(store: &dyn Store) {
    let (alice, bob) = (uri("sip:alice@example.com"), uri("sip:bob@example.com"));
    let presence = EventKey::new("presence");
    let rec = |w: &str, status: &str| WatcherRecord {
        watcher: uri(w),
        status: status.to_string(),
        reason: (status == "terminated").then(|| "rejected".to_string()),
        inserted_at: Timestamp(1_700_000_000_000),
        last_event: "subscribe".to_string(),
    };
    store.put_rules(&alice, b"<ruleset/>").unwrap();
    assert!(store.watchers(&alice, &presence).unwrap().is_empty());
    store
        .put_watcher(&alice, &presence, &rec("sip:zoe@example.com", "pending"))
        .unwrap();
    store
        .put_watcher(&alice, &presence, &rec("sip:carol@example.com", "active"))
        .unwrap();
    store
        .put_watcher(
            &alice,
            &EventKey::new("dialog"),
            &rec("sip:dan@example.com", "active"),
        )
        .unwrap();
    store
        .put_watcher(&bob, &presence, &rec("sip:erin@example.com", "active"))
        .unwrap();
    store
        .put_watcher(&alice, &presence, &rec("sip:zoe@example.com", "terminated"))
        .unwrap();
    let got = store.watchers(&alice, &presence).unwrap();
    assert_eq!(
        got,
        vec![
            rec("sip:carol@example.com", "active"),
            rec("sip:zoe@example.com", "terminated")
        ],
        "only this presentity and event, in order, replaced, every field kept"
    );
    store
        .delete_watcher(&alice, &presence, &uri("sip:carol@example.com"))
        .unwrap();
    store
        .delete_watcher(&alice, &presence, &uri("sip:nobody@example.com"))
        .unwrap();
    assert_eq!(store.watchers(&alice, &presence).unwrap().len(), 1);
    assert_eq!(
        store.rules(&alice).unwrap().as_deref(),
        Some(&b"<ruleset/>"[..])
    );
    store.delete_rules(&alice).unwrap();
}

/// Batched publication scan: key order, every record once, presentity and event read back.
/// Runs after the publication checks above left e2 (alice, presence), e3 (alice, dialog) and
/// e4 (alicia, presence).
fn scan_publications(store: &dyn Store) {
    let carol = uri("sip:carol@example.com");
    let presence = EventKey::new("presence");
    for i in 0..5 {
        store
            .put_publication(&carol, &presence, &publication(&format!("c{i}"), "<c/>"))
            .unwrap();
    }
    let mut seen = Vec::new();
    let mut after: Option<Vec<u8>> = None;
    let mut batches = 0;
    loop {
        let (batch, next) = store.scan_publications(after.as_deref(), 3).unwrap();
        assert!(batch.len() <= 3);
        batches += 1;
        for (u, e, p) in batch {
            seen.push(format!("{u}|{e}|{}", p.etag));
        }
        match next {
            Some(k) => after = Some(k),
            None => break,
        }
    }
    // "…example.co\0" sorts before "…example.com": NUL is the smallest byte.
    let mut expected = vec![
        "sip:alice@example.co|presence|e4".to_string(),
        "sip:alice@example.com|dialog|e3".to_string(),
        "sip:alice@example.com|presence|e2".to_string(),
    ];
    expected.extend((0..5).map(|i| format!("sip:carol@example.com|presence|c{i}")));
    assert_eq!(seen, expected);
    assert_eq!(
        batches, 3,
        "8 records in batches of 3, continuation only after full ones"
    );
    let (all, next) = store.scan_publications(None, 100).unwrap();
    assert_eq!(next, None, "a partial batch is the last one");
    assert_eq!(
        all[0].2,
        publication("e4", "<d/>"),
        "round trip keeps every field"
    );
    assert_eq!(all[0].0, uri("sip:alice@example.co"));
    assert_eq!(all[0].1, presence);
    let (first, next) = store.scan_publications(None, 1).unwrap();
    let (second, _) = store.scan_publications(next.as_deref(), 1).unwrap();
    assert_eq!((first.len(), second.len()), (1, 1));
    assert_eq!(
        second[0].2.etag.as_str(),
        "e3",
        "continues after the returned key"
    );
}
