//! Tests of [`SledStore`]: the conformance suite, reopening, and every refusal of `open`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;
use crate::clock::Timestamp;
use crate::ids::UriMatch;
use crate::presence::package::Body;
use crate::store::flusher::GroupFlusher;

fn opts(lock_wait_ms: u64) -> SledOptions {
    SledOptions {
        lock_wait: Duration::from_millis(lock_wait_ms),
        ..SledOptions::default()
    }
}

fn node(id: &str) -> NodeId {
    NodeId::new(id)
}

/// Opens `dir`, retrying long enough for a just-dropped store's threads to let go.
fn reopen(dir: &Path, id: &str) -> Result<SledStore, OpenError> {
    SledStore::open_with(dir, Tables::default(), &node(id), &opts(5_000))
}

fn publication(etag: &str) -> Publication {
    Publication {
        etag: ETag::from_wire(etag),
        body: Body::new("application/pidf+xml", b"<p/>".to_vec()),
        expires_at: Timestamp(10_000),
        received_at: Timestamp(5_000),
        priority: 1,
        origin: node("n1"),
    }
}

fn alice() -> PresentityUri {
    PresentityUri::parse("sip:alice@example.com", UriMatch::CaseSensitive).unwrap()
}

#[test]
fn sled_store_passes_the_conformance_suite() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path(), Tables::default(), &node("n1")).unwrap();
    crate::store::conformance::run(&store);
}

#[test]
fn data_and_meta_survive_a_reopen_after_flush() {
    let dir = tempfile::tempdir().unwrap();
    let presence = EventKey::new("presence");
    {
        let store = reopen(dir.path(), "n1").unwrap();
        assert_eq!(store.meta_get(b"hlc").unwrap(), None);
        store
            .put_publication(&alice(), &presence, &publication("e1"))
            .unwrap();
        store.meta_put(b"hlc", &[1, 2, 3]).unwrap();
        // The app namespace cannot reach the schema version.
        store.meta_put(b"sys/schema_version", &[9]).unwrap();
        store.flush().unwrap();
    }
    let store = reopen(dir.path(), "n1").unwrap();
    assert_eq!(store.node_id(), &node("n1"));
    assert_eq!(store.dir(), dir.path());
    let got = store.publications(&alice(), &presence).unwrap();
    assert_eq!(got, vec![publication("e1")]);
    assert_eq!(store.meta_get(b"hlc").unwrap(), Some(vec![1, 2, 3]));
    assert!(store.size_on_disk().unwrap() > 0);
}

#[test]
fn group_flusher_over_sled_makes_writes_survive() {
    let dir = tempfile::tempdir().unwrap();
    let presence = EventKey::new("presence");
    {
        let store = Arc::new(reopen(dir.path(), "n1").unwrap());
        let flusher = GroupFlusher::new(store.clone());
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        for i in 0..10 {
            store
                .put_publication(&alice(), &presence, &publication(&format!("e{i}")))
                .unwrap();
            rt.block_on(flusher.flush()).unwrap();
        }
        assert_eq!(flusher.flushes(), 10);
    }
    let store = reopen(dir.path(), "n1").unwrap();
    assert_eq!(store.publications(&alice(), &presence).unwrap().len(), 10);
}

#[test]
fn another_node_id_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    drop(reopen(dir.path(), "n1").unwrap());
    let err = reopen(dir.path(), "n2").err().expect("must refuse");
    match &err {
        OpenError::NodeIdMismatch { stored, configured } => {
            assert_eq!((stored.as_str(), configured.as_str()), ("n1", "n2"));
        }
        other => panic!("unexpected {other}"),
    }
    assert!(err.to_string().contains("[node] id = \"n1\""), "{err}");
    // The refusal changed nothing: the right id still opens.
    reopen(dir.path(), "n1").unwrap();
}

#[test]
fn a_newer_schema_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = reopen(dir.path(), "n1").unwrap();
        store
            .meta
            .insert(KEY_SCHEMA, &[SCHEMA_VERSION + 1])
            .unwrap();
        store.flush().unwrap();
    }
    let err = reopen(dir.path(), "n1").err().expect("must refuse");
    assert!(
        matches!(
            err,
            OpenError::NewerSchema {
                found: 2,
                supported: 1,
                ..
            }
        ),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(text.contains(&dir.path().display().to_string()), "{text}");
    assert!(text.contains("schema version 2"), "{text}");
}

#[test]
fn malformed_metadata_is_reported_as_corruption() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = reopen(dir.path(), "n1").unwrap();
        store.meta.insert(KEY_SCHEMA, &[1, 1]).unwrap();
        store.flush().unwrap();
    }
    let err = reopen(dir.path(), "n1").err().expect("must refuse");
    assert!(matches!(err, OpenError::Corrupt { .. }), "{err:?}");
    assert!(
        err.to_string().contains("move the directory aside"),
        "{err}"
    );
}

#[test]
fn a_database_without_our_metadata_is_foreign() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = ::sled::open(dir.path()).unwrap();
        db.open_tree("presentity")
            .unwrap()
            .insert(b"k", b"v")
            .unwrap();
        db.flush().unwrap();
    }
    let err = reopen(dir.path(), "n1").err().expect("must refuse");
    assert!(matches!(err, OpenError::Foreign { .. }), "{err:?}");
}

#[test]
fn a_second_open_fails_cleanly_after_the_lock_window() {
    let dir = tempfile::tempdir().unwrap();
    let _first = reopen(dir.path(), "n1").unwrap();
    let started = Instant::now();
    let err = SledStore::open_with(dir.path(), Tables::default(), &node("n1"), &opts(300))
        .err()
        .expect("the lock is held");
    let waited = started.elapsed();
    assert!(matches!(err, OpenError::Locked { .. }), "{err:?}");
    assert!(
        waited >= Duration::from_millis(300),
        "gave up after {waited:?}"
    );
    assert!(waited < Duration::from_secs(3), "took {waited:?}");
    let text = err.to_string();
    assert!(text.contains(&dir.path().display().to_string()), "{text}");
    assert!(text.contains("locked by another process"), "{text}");
}

#[test]
fn a_file_instead_of_a_directory_is_a_clear_error() {
    let file = tempfile::NamedTempFile::new().unwrap();
    let err = reopen(file.path(), "n1").err().expect("must refuse");
    assert!(matches!(err, OpenError::NotADirectory { .. }), "{err:?}");
    assert!(err.to_string().contains(&file.path().display().to_string()));
    // Below a file: sled's own error is classified the same way.
    let below = file.path().join("db");
    let err = reopen(&below, "n1").err().expect("must refuse");
    assert!(matches!(err, OpenError::NotADirectory { .. }), "{err:?}");
}

#[test]
fn an_unopenable_data_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    // sled's data file `db` is a directory: opening it for writing fails (even as root).
    std::fs::create_dir(dir.path().join("db")).unwrap();
    let err = reopen(dir.path(), "n1").err().expect("must refuse");
    let text = err.to_string();
    assert!(matches!(err, OpenError::Io { .. }), "{err:?}");
    assert!(text.contains(&dir.path().display().to_string()), "{text}");
    assert!(text.contains("readable and writable"), "{text}");
}

#[test]
fn a_corrupt_config_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    drop(reopen(dir.path(), "n1").unwrap());
    // sled ignores a config file of 8 bytes or less; a longer one that does not parse is
    // reported as corruption.
    std::fs::write(dir.path().join("conf"), b"garbage, not a sled config").unwrap();
    let err = reopen(dir.path(), "n1").err().expect("must refuse");
    let text = err.to_string();
    assert!(matches!(err, OpenError::Corrupt { .. }), "{err:?}");
    assert!(text.contains(&dir.path().display().to_string()), "{text}");
    assert!(text.contains("move the directory aside"), "{text}");
    assert!(text.contains("restore it from a backup"), "{text}");
}

#[test]
fn reserved_or_duplicate_table_names_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let meta = Tables {
        watchers: "meta".into(),
        ..Tables::default()
    };
    let err = SledStore::open(dir.path(), meta, &node("n1"))
        .err()
        .unwrap();
    assert!(
        err.to_string().contains("watchers_table = \"meta\""),
        "{err}"
    );
    let dup = Tables {
        active_watchers: "presentity".into(),
        ..Tables::default()
    };
    let err = SledStore::open(dir.path(), dup, &node("n1")).err().unwrap();
    assert!(
        err.to_string()
            .contains("presentity_table and active_watchers_table"),
        "{err}"
    );
}

#[test]
fn configured_tree_names_are_the_ones_used() {
    let dir = tempfile::tempdir().unwrap();
    let tables = Tables {
        presentity: "pres_x".into(),
        active_watchers: "aw_x".into(),
        watchers: "w_x".into(),
    };
    let store = SledStore::open(dir.path(), tables, &node("n1")).unwrap();
    store
        .put_publication(&alice(), &EventKey::new("presence"), &publication("e1"))
        .unwrap();
    let names: Vec<_> = store
        .db
        .tree_names()
        .into_iter()
        .map(|n| n.to_vec())
        .collect();
    for want in [&b"pres_x"[..], b"aw_x", b"w_x", META_TREE.as_bytes()] {
        assert!(names.iter().any(|n| n == want), "{names:?}");
    }
    assert_eq!(store.db.open_tree("pres_x").unwrap().len(), 1);
}
