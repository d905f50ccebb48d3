//! Tests of [`Presentity`]: the publication lifecycle of RFC 3903 §6 case by case, then a
//! proptest model test against a map of ETag → (tuple count, expiry) on a virtual clock.

use std::collections::{HashMap, HashSet};

use bytes::Bytes;
use proptest::prelude::*;
use quick_xml::events::Event;
use quick_xml::name::{Namespace, ResolveResult};
use quick_xml::NsReader;

use super::*;
use crate::ids::{NodeId, UriMatch};
use crate::presence::packages::presence::PresencePackage;
use crate::presence::publication::{OrderField, SortDir};

const PIDF: &str = "application/pidf+xml";
const T0: Timestamp = Timestamp(1_700_000_000_000);

/// The presence package with `etag_not_new` set.
struct KeepEtag;

impl EventPackage for KeepEtag {
    fn name(&self) -> &str {
        "presence"
    }
    fn content_types(&self) -> &[&str] {
        PresencePackage.content_types()
    }
    fn default_expires(&self) -> u32 {
        3600
    }
    fn etag_not_new(&self) -> bool {
        true
    }
    fn validate_publish(&self, body: &[u8]) -> Result<(), String> {
        PresencePackage.validate_publish(body)
    }
    fn aggregate(&self, p: &PresentityUri, docs: &[&[u8]]) -> Option<Bytes> {
        PresencePackage.aggregate(p, docs)
    }
}

fn presentity() -> Presentity {
    let uri = PresentityUri::parse("sip:alice@example.com", UriMatch::CaseSensitive).unwrap();
    Presentity::new(uri, EventKey::new("presence"))
}

fn pidf(ids: &[&str]) -> Body {
    let mut d = String::from(r#"<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:x@y">"#);
    for id in ids {
        d.push_str(&format!(
            r#"<tuple id="{id}"><status><basic>open</basic></status></tuple>"#
        ));
    }
    d.push_str("</presence>");
    Body::new(PIDF, d.into_bytes())
}

fn input(if_match: Option<&ETag>, expires: u32, body: Option<Body>) -> PublishInput {
    PublishInput {
        if_match: if_match.cloned(),
        expires,
        body,
        priority: None,
        origin: NodeId::new("n1"),
    }
}

fn etags(p: &Presentity) -> HashSet<ETag> {
    p.publications().iter().map(|p| p.etag.clone()).collect()
}

/// Tuple ids of a composed document, in order, checking root namespace and entity.
fn tuple_ids(body: &Body) -> Vec<String> {
    assert_eq!(body.content_type, PIDF);
    let mut r = NsReader::from_reader(&body.bytes[..]);
    let mut ids = Vec::new();
    let pidf = Namespace(b"urn:ietf:params:xml:ns:pidf");
    loop {
        match r.read_resolved_event().expect("composed document parses") {
            (ResolveResult::Bound(ns), Event::Start(e) | Event::Empty(e)) if ns == pidf => {
                match e.local_name().as_ref() {
                    b"presence" => {
                        let entity = e.try_get_attribute("entity").unwrap().unwrap();
                        assert_eq!(&*entity.value, b"sip:alice@example.com");
                    }
                    b"tuple" => {
                        let id = e.try_get_attribute("id").unwrap().unwrap();
                        ids.push(String::from_utf8(id.value.to_vec()).unwrap());
                    }
                    _ => {}
                }
            }
            (_, Event::Eof) => return ids,
            _ => {}
        }
    }
}

#[test]
fn initial_publish_requires_a_valid_body() {
    let mut p = presentity();
    let pkg = PresencePackage;
    assert_eq!(
        p.publish(T0, &pkg, input(None, 60, None), 10),
        Err(PublishError::MissingBody)
    );
    let wrong = Body::new("application/xpidf+xml", pidf(&["a"]).bytes);
    assert_eq!(
        p.publish(T0, &pkg, input(None, 60, Some(wrong)), 10),
        Err(PublishError::UnsupportedMediaType {
            accept: PIDF.to_string()
        })
    );
    let bad = Body::new(
        PIDF,
        &b"<presence xmlns='urn:ietf:params:xml:ns:pidf'><tuple>"[..],
    );
    match p.publish(T0, &pkg, input(None, 60, Some(bad)), 10) {
        Err(PublishError::BadBody(r)) => assert!(r.contains("malformed XML"), "{r}"),
        other => panic!("expected BadBody, got {other:?}"),
    }
    assert!(p.is_empty());
    // Expires 0 without If-Match: answered, nothing stored.
    let gone = p
        .publish(T0, &pkg, input(None, 0, Some(pidf(&["a"]))), 10)
        .unwrap();
    assert_eq!((gone.expires, gone.changed), (0, false));
    assert!(p.is_empty());
    // Media type matching ignores case and parameters.
    let body = Body::new("Application/PIDF+XML; charset=UTF-8", pidf(&["a"]).bytes);
    let out = p
        .publish(T0, &pkg, input(None, 60, Some(body)), 10)
        .unwrap();
    assert_eq!((out.expires, out.changed), (60, true));
    assert_eq!(etags(&p), HashSet::from([out.etag.clone()]));
    let publ = &p.publications()[0];
    assert_eq!((publ.expires_at, publ.received_at), (T0.plus_secs(60), T0));
    assert_eq!(publ.priority, (T0.0 / 1000) as i32);
    assert_eq!(p.next_expiry(), Some(T0.plus_secs(60)));
}

#[test]
fn refresh_mints_a_new_etag_and_extends_expiry() {
    let mut p = presentity();
    let pkg = PresencePackage;
    let first = p
        .publish(T0, &pkg, input(None, 60, Some(pidf(&["a"]))), 10)
        .unwrap();
    let t1 = T0.plus_secs(30);
    let refreshed = p
        .publish(t1, &pkg, input(Some(&first.etag), 120, None), 10)
        .unwrap();
    assert_ne!(refreshed.etag, first.etag);
    assert_eq!((refreshed.expires, refreshed.changed), (120, false));
    assert_eq!(p.next_expiry(), Some(t1.plus_secs(120)));
    assert_eq!(
        p.publications()[0].received_at,
        T0,
        "a refresh does not change the document"
    );
    assert_eq!(
        p.publish(t1, &pkg, input(Some(&first.etag), 60, None), 10),
        Err(PublishError::ConditionalRequestFailed)
    );
    // A new priority on refresh reorders composition: watchers are told.
    let mut prio = input(Some(&refreshed.etag), 60, None);
    prio.priority = Some(7);
    let again = p.publish(t1, &pkg, prio, 10).unwrap();
    assert!(again.changed);
    assert_eq!(p.publications()[0].priority, 7);
    // A package with etag_not_new keeps the ETag.
    let kept = p
        .publish(t1, &KeepEtag, input(Some(&again.etag), 60, None), 10)
        .unwrap();
    assert_eq!(kept.etag, again.etag);
    assert_eq!(etags(&p), HashSet::from([again.etag]));
}

#[test]
fn modify_replaces_the_document() {
    let mut p = presentity();
    let pkg = PresencePackage;
    let first = p
        .publish(T0, &pkg, input(None, 60, Some(pidf(&["a"]))), 10)
        .unwrap();
    let bad = Body::new(PIDF, &b"<nope/>"[..]);
    assert!(matches!(
        p.publish(T0, &pkg, input(Some(&first.etag), 60, Some(bad)), 10),
        Err(PublishError::BadBody(_))
    ));
    assert_eq!(
        etags(&p),
        HashSet::from([first.etag.clone()]),
        "a refused modify changes nothing"
    );
    let t1 = T0.plus_secs(10);
    let m = p
        .publish(
            t1,
            &pkg,
            input(Some(&first.etag), 90, Some(pidf(&["b", "c"]))),
            10,
        )
        .unwrap();
    assert!(m.changed);
    assert_ne!(m.etag, first.etag);
    assert_eq!(etags(&p), HashSet::from([m.etag.clone()]));
    assert_eq!(p.publications()[0].received_at, t1);
    let composed = p.compose(&pkg, &RetrieveOrder::NewestFirst).unwrap();
    assert_eq!(tuple_ids(&composed), ["b", "c"]);
}

#[test]
fn remove_unknown_and_expired_etags() {
    let mut p = presentity();
    let pkg = PresencePackage;
    let a = p
        .publish(T0, &pkg, input(None, 60, Some(pidf(&["a"]))), 10)
        .unwrap();
    let b = p
        .publish(T0, &pkg, input(None, 30, Some(pidf(&["b"]))), 10)
        .unwrap();
    let unknown = ETag::from_wire("deadbeef");
    assert_eq!(
        p.publish(T0, &pkg, input(Some(&unknown), 60, None), 10),
        Err(PublishError::ConditionalRequestFailed)
    );
    let removed = p
        .publish(T0, &pkg, input(Some(&a.etag), 0, None), 10)
        .unwrap();
    assert_eq!(
        removed,
        PublishOutcome {
            etag: a.etag.clone(),
            expires: 0,
            changed: true
        }
    );
    assert_eq!(etags(&p), HashSet::from([b.etag.clone()]));
    assert_eq!(
        p.publish(T0, &pkg, input(Some(&a.etag), 0, None), 10),
        Err(PublishError::ConditionalRequestFailed)
    );
    // b expires at T0+30 s: dead from that instant, though still held until expire().
    let at = T0.plus_secs(30);
    assert_eq!(
        p.publish(at, &pkg, input(Some(&b.etag), 60, None), 10),
        Err(PublishError::ConditionalRequestFailed)
    );
    assert_eq!(p.publications().len(), 1);
}

#[test]
fn expire_at_the_boundary_and_next_expiry() {
    let mut p = presentity();
    let pkg = PresencePackage;
    assert_eq!(p.next_expiry(), None);
    let a = p
        .publish(T0, &pkg, input(None, 20, Some(pidf(&["a"]))), 10)
        .unwrap();
    let b = p
        .publish(T0, &pkg, input(None, 10, Some(pidf(&["b"]))), 10)
        .unwrap();
    assert_eq!(p.next_expiry(), Some(T0.plus_secs(10)));
    assert!(p.expire(Timestamp(T0.plus_secs(10).0 - 1)).is_empty());
    let gone = p.expire(T0.plus_secs(10));
    assert_eq!(gone.iter().map(|g| &g.etag).collect::<Vec<_>>(), [&b.etag]);
    assert_eq!(p.next_expiry(), Some(T0.plus_secs(20)));
    assert_eq!(p.expire(T0.plus_secs(25)).len(), 1);
    assert!(p.is_empty() && p.next_expiry().is_none());
    assert!(p.compose(&pkg, &RetrieveOrder::NewestFirst).is_none());
    assert!(p.remove_etag(&a.etag).is_none());
}

#[test]
fn publication_limit_counts_live_publications_only() {
    let mut p = presentity();
    let pkg = PresencePackage;
    let a = p
        .publish(T0, &pkg, input(None, 10, Some(pidf(&["a"]))), 2)
        .unwrap();
    p.publish(T0, &pkg, input(None, 60, Some(pidf(&["b"]))), 2)
        .unwrap();
    assert_eq!(
        p.publish(T0, &pkg, input(None, 60, Some(pidf(&["c"]))), 2),
        Err(PublishError::TooManyPublications { max: 2 })
    );
    assert_eq!(p.publications().len(), 2);
    // Refresh and modify of an existing one are fine at the limit.
    let a2 = p
        .publish(T0, &pkg, input(Some(&a.etag), 10, Some(pidf(&["a2"]))), 2)
        .unwrap();
    assert!(a2.changed);
    // Once a has expired it no longer counts.
    let later = T0.plus_secs(10);
    assert!(p
        .publish(later, &pkg, input(None, 60, Some(pidf(&["c"]))), 2)
        .is_ok());
}

#[test]
fn compose_orders_by_retrieve_order() {
    let mut p = presentity();
    let pkg = PresencePackage;
    let mut old = input(None, 60, Some(pidf(&["old1", "old2"])));
    old.priority = Some(9);
    p.publish(T0, &pkg, old, 10).unwrap();
    let mut new = input(None, 60, Some(pidf(&["new"])));
    new.priority = Some(1);
    p.publish(T0.plus_secs(1), &pkg, new, 10).unwrap();
    let newest = p.compose(&pkg, &RetrieveOrder::NewestFirst).unwrap();
    assert_eq!(tuple_ids(&newest), ["new", "old1", "old2"]);
    let by_prio = RetrieveOrder::By(vec![(OrderField::Priority, SortDir::Desc)]);
    assert_eq!(
        tuple_ids(&p.compose(&pkg, &by_prio).unwrap()),
        ["old1", "old2", "new"]
    );
}

#[test]
fn restore_and_remove_by_etag() {
    let mut p = presentity();
    let pkg = PresencePackage;
    let a = p
        .publish(T0, &pkg, input(None, 60, Some(pidf(&["a"]))), 10)
        .unwrap();
    let mut copy = p.publications()[0].clone();
    copy.body = pidf(&["restored"]);
    p.insert_restored(copy.clone());
    assert_eq!(p.publications(), &[copy.clone()]);
    let mut other = copy.clone();
    other.etag = ETag::from_wire("other");
    p.insert_restored(other);
    assert_eq!(p.publications().len(), 2);
    assert_eq!(p.remove_etag(&a.etag), Some(copy));
    assert_eq!(etags(&p), HashSet::from([ETag::from_wire("other")]));
    assert_eq!(p.uri().as_str(), "sip:alice@example.com");
    assert_eq!(p.event().as_str(), "presence");
}

#[derive(Clone, Debug)]
enum Op {
    Publish {
        tuples: usize,
        expires: u32,
    },
    Refresh {
        pick: usize,
        expires: u32,
    },
    Modify {
        pick: usize,
        tuples: usize,
        expires: u32,
    },
    Remove {
        pick: usize,
    },
    Advance {
        ms: u64,
        expire: bool,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (1..4usize, 0..30u32).prop_map(|(tuples, expires)| Op::Publish { tuples, expires }),
        (any::<usize>(), 0..30u32).prop_map(|(pick, expires)| Op::Refresh { pick, expires }),
        (any::<usize>(), 1..4usize, 1..30u32).prop_map(|(pick, tuples, expires)| Op::Modify {
            pick,
            tuples,
            expires
        }),
        any::<usize>().prop_map(|pick| Op::Remove { pick }),
        (0..20_000u64, any::<bool>()).prop_map(|(ms, expire)| Op::Advance { ms, expire }),
    ]
}

const MAX: usize = 4;

proptest! {
    #[test]
    fn presentity_matches_model(ops in proptest::collection::vec(op(), 1..40)) {
        let pkg = PresencePackage;
        let mut p = presentity();
        let mut model: HashMap<ETag, (usize, Timestamp)> = HashMap::new();
        let mut known: Vec<ETag> = Vec::new();
        let mut now = T0;
        let mut serial = 0;
        let mut body = |n: usize| {
            serial += 1;
            let ids: Vec<String> = (0..n).map(|i| format!("t{serial}-{i}")).collect();
            pidf(&ids.iter().map(String::as_str).collect::<Vec<_>>())
        };
        for op in ops {
            let live = |m: &HashMap<ETag, (usize, Timestamp)>, e: &ETag| m.get(e).is_some_and(|v| v.1 > now);
            let pick = |i: usize| known.get(i % known.len().max(1)).cloned().unwrap_or_else(|| ETag::from_wire("none"));
            match op {
                Op::Publish { tuples, expires } => {
                    let res = p.publish(now, &pkg, input(None, expires, Some(body(tuples))), MAX);
                    let live_count = model.values().filter(|v| v.1 > now).count();
                    if expires == 0 {
                        prop_assert!(res.is_ok_and(|o| !o.changed));
                    } else if live_count >= MAX {
                        prop_assert_eq!(res, Err(PublishError::TooManyPublications { max: MAX }));
                    } else {
                        let out = res.unwrap();
                        prop_assert!(out.changed);
                        model.insert(out.etag.clone(), (tuples, now.plus_secs(expires.into())));
                        known.push(out.etag);
                    }
                }
                Op::Refresh { pick: i, .. } | Op::Modify { pick: i, .. } | Op::Remove { pick: i } if !live(&model, &pick(i)) => {
                    let (expires, new_body) = match op {
                        Op::Refresh { expires, .. } => (expires, None),
                        Op::Modify { expires, tuples, .. } => (expires, Some(body(tuples))),
                        _ => (0, None),
                    };
                    let res = p.publish(now, &pkg, input(Some(&pick(i)), expires, new_body), MAX);
                    prop_assert_eq!(res, Err(PublishError::ConditionalRequestFailed));
                }
                Op::Refresh { pick: i, expires: 0 } | Op::Remove { pick: i } => {
                    let tag = pick(i);
                    let out = p.publish(now, &pkg, input(Some(&tag), 0, None), MAX).unwrap();
                    prop_assert_eq!(&out.etag, &tag);
                    prop_assert!(out.changed);
                    model.remove(&tag);
                }
                Op::Refresh { pick: i, expires } => {
                    let tag = pick(i);
                    let out = p.publish(now, &pkg, input(Some(&tag), expires, None), MAX).unwrap();
                    prop_assert!(!out.changed);
                    let (tuples, _) = model.remove(&tag).unwrap();
                    model.insert(out.etag.clone(), (tuples, now.plus_secs(expires.into())));
                    known.push(out.etag);
                }
                Op::Modify { pick: i, tuples, expires } => {
                    let tag = pick(i);
                    let out = p.publish(now, &pkg, input(Some(&tag), expires, Some(body(tuples))), MAX).unwrap();
                    prop_assert!(out.changed);
                    model.remove(&tag);
                    model.insert(out.etag.clone(), (tuples, now.plus_secs(expires.into())));
                    known.push(out.etag);
                }
                Op::Advance { ms, expire } => {
                    now = Timestamp(now.0 + ms);
                    if expire {
                        let gone: HashSet<ETag> = p.expire(now).into_iter().map(|g| g.etag).collect();
                        let due: HashSet<ETag> = model.iter().filter(|(_, v)| v.1 <= now).map(|(k, _)| k.clone()).collect();
                        prop_assert_eq!(gone, due);
                        model.retain(|_, v| v.1 > now);
                    }
                }
            }
            prop_assert_eq!(etags(&p), model.keys().cloned().collect::<HashSet<_>>());
            prop_assert_eq!(p.next_expiry(), model.values().map(|v| v.1).min());
            let tuples: usize = model.values().map(|v| v.0).sum();
            match p.compose(&pkg, &RetrieveOrder::NewestFirst) {
                Some(doc) => prop_assert_eq!(tuple_ids(&doc).len(), tuples),
                None => prop_assert!(model.is_empty()),
            }
        }
    }
}
