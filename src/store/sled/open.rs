//! Opening a [`SledStore`]: table-name checks, the lock retry, turning sled's errors into
//! operator-readable [`OpenError`]s, and the schema-version / node-id check.
//!
//! Invariant: [`open`] never panics and never returns a store whose `meta` tree lacks a durable
//! schema version and node id.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{SledStore, KEY_NODE_ID, KEY_SCHEMA, META_TREE, SCHEMA_VERSION};
use crate::ids::NodeId;

/// The tree names, from `[presence] presentity_table`, `active_watchers_table` and
/// `watchers_table`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tables {
    /// Tree of publications.
    pub presentity: String,
    /// Tree of subscription dialogs.
    pub active_watchers: String,
    /// Tree of watcher authorization states.
    pub watchers: String,
}

impl Default for Tables {
    /// The spec's defaults: `presentity`, `active_watchers`, `watchers`.
    fn default() -> Self {
        Tables {
            presentity: "presentity".into(),
            active_watchers: "active_watchers".into(),
            watchers: "watchers".into(),
        }
    }
}

/// Tunables of [`SledStore::open_with`]. The defaults are the node's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SledOptions {
    /// sled's page cache, bytes (64 MiB). Budget RSS from measurement: sled exceeds it.
    pub cache_capacity: u64,
    /// sled's background flush period (1000 ms; `None` = off). See the module doc of
    /// [`super`] for why it stays on.
    pub flush_every_ms: Option<u64>,
    /// How long a held lock (a crashed process still exiting) is retried (5 s).
    pub lock_wait: Duration,
}

impl Default for SledOptions {
    fn default() -> Self {
        SledOptions {
            cache_capacity: 64 * 1024 * 1024,
            flush_every_ms: Some(1000),
            lock_wait: Duration::from_secs(5),
        }
    }
}

/// Pause between two lock attempts.
const LOCK_RETRY_EVERY: Duration = Duration::from_millis(250);
/// sled's own default tree: not usable as a table.
const SLED_DEFAULT_TREE: &str = "__sled__default";

/// Why the database could not be opened. Each text names the directory (or the setting) and
/// what the operator can do.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The configured tree names are unusable.
    #[error("invalid table names: {0}")]
    TableNames(String),
    /// Another process holds the database lock.
    #[error(
        "the database in {} is locked by another process (waited {waited:?}): stop the other \
         presenced using this [node] data_dir, or give this node its own directory",
        dir.display()
    )]
    Locked {
        /// The database directory.
        dir: PathBuf,
        /// How long the lock was retried.
        waited: Duration,
    },
    /// The path exists and is not a directory.
    #[error(
        "the database path {} is not a directory: move it aside or set [node] data_dir to a \
         directory",
        dir.display()
    )]
    NotADirectory {
        /// The configured path.
        dir: PathBuf,
    },
    /// An I/O error (permissions, disk full, missing parent).
    #[error(
        "cannot open the database in {}: {source}; check that the directory is readable and \
         writable by this user and that the disk is not full",
        dir.display()
    )]
    Io {
        /// The database directory.
        dir: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// sled found corrupt data, or our metadata is malformed.
    #[error(
        "the database in {} is corrupt ({detail}): move the directory aside (the node will \
         start empty and, in a cluster, resync from its peers) or restore it from a backup",
        dir.display()
    )]
    Corrupt {
        /// The database directory.
        dir: PathBuf,
        /// What was found.
        detail: String,
    },
    /// The database was written by a newer release.
    #[error(
        "the database in {} has schema version {found}, newer than this release reads \
         ({supported}): run the release that wrote it, or move the directory aside to start \
         empty",
        dir.display()
    )]
    NewerSchema {
        /// The database directory.
        dir: PathBuf,
        /// Version on disk.
        found: u8,
        /// Newest version this release reads.
        supported: u8,
    },
    /// The database belongs to another node.
    #[error(
        "the database belongs to node \"{stored}\" but [node] id is \"{configured}\": set \
         [node] id = \"{stored}\", or point [node] data_dir at this node's own directory"
    )]
    NodeIdMismatch {
        /// Node id recorded at the first open.
        stored: NodeId,
        /// Node id in the configuration.
        configured: NodeId,
    },
    /// The directory holds a sled database that presenced did not create.
    #[error(
        "the database in {} holds data but no presenced schema version: point [node] \
         data_dir at an empty directory or at this node's database",
        dir.display()
    )]
    Foreign {
        /// The database directory.
        dir: PathBuf,
    },
    /// Any other refusal by sled (unsupported configuration change, internal bug).
    #[error(
        "sled cannot open the database in {} ({detail}): move the directory aside (the node \
         will start empty) or restore it from a backup",
        dir.display()
    )]
    Backend {
        /// The database directory.
        dir: PathBuf,
        /// sled's text.
        detail: String,
    },
}

/// See [`SledStore::open_with`].
pub(super) fn open(
    dir: &Path,
    tables: Tables,
    node_id: &NodeId,
    options: &SledOptions,
) -> Result<SledStore, OpenError> {
    check_tables(&tables)?;
    if dir.exists() && !dir.is_dir() {
        return Err(OpenError::NotADirectory { dir: dir.into() });
    }
    let db = open_db(dir, options)?;
    let err = |e| classify(dir, e);
    let meta = db.open_tree(META_TREE).map_err(err)?;
    check_meta(dir, &db, &meta, node_id)?;
    let publications = db.open_tree(&tables.presentity).map_err(err)?;
    let subscriptions = db.open_tree(&tables.active_watchers).map_err(err)?;
    // Authorization rule documents per presentity (SPEC §4).
    let watchers = db.open_tree(&tables.watchers).map_err(err)?;
    Ok(SledStore {
        db,
        publications,
        subscriptions,
        watchers,
        meta,
        dir: dir.into(),
        node_id: node_id.clone(),
    })
}

fn check_tables(t: &Tables) -> Result<(), OpenError> {
    let named = [
        ("presentity_table", &t.presentity),
        ("active_watchers_table", &t.active_watchers),
        ("watchers_table", &t.watchers),
    ];
    for (i, (key, name)) in named.iter().enumerate() {
        if name.is_empty() || name.as_str() == META_TREE || name.as_str() == SLED_DEFAULT_TREE {
            return Err(OpenError::TableNames(format!(
                "{key} = \"{name}\" is empty or reserved (\"{META_TREE}\", \
                 \"{SLED_DEFAULT_TREE}\"); choose another name"
            )));
        }
        if let Some((other, _)) = named[..i].iter().find(|(_, n)| n == name) {
            return Err(OpenError::TableNames(format!(
                "{other} and {key} are both \"{name}\"; each table needs its own tree"
            )));
        }
    }
    Ok(())
}

/// `sled::Config::open`, retrying a held lock until `options.lock_wait` has passed.
fn open_db(dir: &Path, options: &SledOptions) -> Result<::sled::Db, OpenError> {
    let config = ::sled::Config::new()
        .path(dir)
        .cache_capacity(options.cache_capacity)
        .flush_every_ms(options.flush_every_ms);
    let started = Instant::now();
    let mut attempt = 1u32;
    loop {
        match config.open() {
            Ok(db) => return Ok(db),
            Err(e) if is_lock_error(&e) => {
                let waited = started.elapsed();
                if waited >= options.lock_wait {
                    return Err(OpenError::Locked {
                        dir: dir.into(),
                        waited,
                    });
                }
                tracing::warn!(
                    dir = %dir.display(),
                    attempt,
                    "database locked (a previous process may still be exiting); retrying"
                );
                std::thread::sleep(LOCK_RETRY_EVERY.min(options.lock_wait - waited));
                attempt += 1;
            }
            Err(e) => return Err(classify(dir, e)),
        }
    }
}

/// sled 0.34.7 reports a held `flock` as `Io(Other, "could not acquire lock on …")`.
fn is_lock_error(e: &::sled::Error) -> bool {
    match e {
        ::sled::Error::Io(io) => {
            io.kind() == io::ErrorKind::WouldBlock
                || io.to_string().contains("could not acquire lock")
        }
        _ => false,
    }
}

fn classify(dir: &Path, e: ::sled::Error) -> OpenError {
    let dir = dir.to_path_buf();
    match e {
        ::sled::Error::Io(source) if source.kind() == io::ErrorKind::NotADirectory => {
            OpenError::NotADirectory { dir }
        }
        ::sled::Error::Io(source) => OpenError::Io { dir, source },
        ::sled::Error::Corruption { at, .. } => OpenError::Corrupt {
            dir,
            detail: match at {
                Some(at) => format!("sled found corrupt data at {at:?}"),
                None => "sled found corrupt data".into(),
            },
        },
        other => OpenError::Backend {
            dir,
            detail: other.to_string(),
        },
    }
}

/// Records schema version and node id in a new database, or checks them in an existing one.
fn check_meta(
    dir: &Path,
    db: &::sled::Db,
    meta: &::sled::Tree,
    node_id: &NodeId,
) -> Result<(), OpenError> {
    let err = |e| classify(dir, e);
    let corrupt = |detail: String| OpenError::Corrupt {
        dir: dir.into(),
        detail,
    };
    let Some(version) = meta.get(KEY_SCHEMA).map_err(err)? else {
        if !meta.is_empty() || holds_data(db).map_err(err)? {
            return Err(OpenError::Foreign { dir: dir.into() });
        }
        let mut batch = ::sled::Batch::default();
        batch.insert(KEY_SCHEMA, &[SCHEMA_VERSION]);
        batch.insert(KEY_NODE_ID, node_id.as_str().as_bytes());
        meta.apply_batch(batch).map_err(err)?;
        db.flush().map_err(err)?;
        tracing::info!(dir = %dir.display(), node_id = %node_id, "created a new database");
        return Ok(());
    };
    match *version {
        [v] if v > SCHEMA_VERSION => {
            return Err(OpenError::NewerSchema {
                dir: dir.into(),
                found: v,
                supported: SCHEMA_VERSION,
            })
        }
        [SCHEMA_VERSION] => {}
        ref other => return Err(corrupt(format!("schema version bytes {other:?}"))),
    }
    let stored = meta
        .get(KEY_NODE_ID)
        .map_err(err)?
        .ok_or_else(|| corrupt("schema version without a node id".into()))?;
    let stored =
        std::str::from_utf8(&stored).map_err(|_| corrupt("stored node id is not UTF-8".into()))?;
    if stored != node_id.as_str() {
        return Err(OpenError::NodeIdMismatch {
            stored: NodeId::new(stored),
            configured: node_id.clone(),
        });
    }
    Ok(())
}

/// Whether any tree other than sled's default and `meta` has records.
fn holds_data(db: &::sled::Db) -> Result<bool, ::sled::Error> {
    for name in db.tree_names() {
        if name == SLED_DEFAULT_TREE.as_bytes() || name == META_TREE.as_bytes() {
            continue;
        }
        if !db.open_tree(&name)?.is_empty() {
            return Ok(true);
        }
    }
    Ok(!db.is_empty())
}
