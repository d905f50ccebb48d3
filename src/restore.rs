//! Opening the store for the configured modes and restoring state at start (SPEC §6):
//! publications and subscriptions are read in `fetch_rows` batches with a progress line,
//! expired records are dropped (publications per `startup_mode`), and every record is handed
//! to its shard, which re-creates the actors with their timers armed.

use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;

use crate::actors::messages::{RestoreDialog, RestorePresentity};
use crate::actors::persist::Persistence;
use crate::actors::router::shard_of_presentity;
use crate::actors::shard::Shard;
use crate::clock::{self, Timestamp};
use crate::config::{Config, PublCache, SubsDbMode};
use crate::ids::{EventKey, PresentityUri};
use crate::presence::publication::Publication;
use crate::store::sled::{OpenError, SledStore, Tables};
use crate::store::{Store, StoreError};

/// Opens the store the modes need (none for `subs_db_mode = 0` with `publ_cache = 2`).
pub fn open(cfg: &Config) -> Result<Persistence, OpenError> {
    let p = &cfg.presence;
    let publications = p.publ_cache != PublCache::Full;
    let subscriptions = p.subs_db_mode != SubsDbMode::Memory;
    if !publications && !subscriptions {
        return Ok(Persistence::none());
    }
    let tables = Tables {
        presentity: p.presentity_table.clone(),
        active_watchers: p.active_watchers_table.clone(),
        watchers: p.watchers_table.clone(),
    };
    let store = SledStore::open(&cfg.node.data_dir, tables, &cfg.node.id)?;
    let write_through = p.subs_db_mode == SubsDbMode::WriteThrough;
    let persist = Persistence::new(Arc::new(store), publications, subscriptions, write_through);
    Ok(if p.subs_db_mode == SubsDbMode::DbOnly {
        persist.with_db_only()
    } else {
        persist
    })
}

/// What a restore found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Restored {
    /// Publications handed to actors.
    pub publications: usize,
    /// Subscriptions handed to actors.
    pub subscriptions: usize,
    /// Expired records dropped (and deleted).
    pub dropped: usize,
}

/// Reads everything back and hands it to the shards. Blocking: runs before the listeners
/// start, so nothing else waits on it.
pub fn restore(
    cfg: &Config,
    persist: &Persistence,
    shards: &[Addr<Shard>],
) -> Result<Restored, StoreError> {
    let mut out = Restored::default();
    let Some(store) = persist.store() else {
        return Ok(out);
    };
    let batch = cfg.presence.fetch_rows.max(1) as usize;
    let started = Instant::now();
    let now = clock::now();
    if persist.stores_publications() {
        // startup_mode = 1 drops records that expire within a second; 0 keeps them (they
        // expire right away, notifying watchers), Kamailio's old behaviour.
        let keep_after = if cfg.presence.startup_mode {
            now.plus_secs(1)
        } else {
            Timestamp(0)
        };
        restore_publications(store.as_ref(), batch, keep_after, shards, &mut out)?;
    }
    if persist.stores_subscriptions() {
        restore_subscriptions(store.as_ref(), batch, now, shards, &mut out)?;
    }
    let secs = started.elapsed().as_secs_f64();
    tracing::info!(
        publications = out.publications,
        subscriptions = out.subscriptions,
        dropped_expired = out.dropped,
        seconds = format!("{secs:.2}"),
        "restored state from the store"
    );
    Ok(out)
}

fn restore_publications(
    store: &dyn Store,
    batch: usize,
    keep_after: Timestamp,
    shards: &[Addr<Shard>],
    out: &mut Restored,
) -> Result<(), StoreError> {
    let mut after: Option<Vec<u8>> = None;
    // Keys sort by presentity then event, so one presentity's rows are consecutive.
    let mut group: Option<(PresentityUri, EventKey, Vec<Publication>)> = None;
    loop {
        let (rows, next) = store.scan_publications(after.as_deref(), batch)?;
        for (uri, event, p) in rows {
            if p.expires_at <= keep_after {
                store.delete_publication(&uri, &event, &p.etag)?;
                out.dropped += 1;
                continue;
            }
            out.publications += 1;
            match &mut group {
                Some((u, e, pubs)) if *u == uri && *e == event => pubs.push(p),
                _ => {
                    if let Some(g) = group.replace((uri, event, vec![p])) {
                        send_publications(g, shards);
                    }
                }
            }
        }
        log_progress("publications", out.publications);
        match next {
            Some(k) => after = Some(k),
            None => break,
        }
    }
    if let Some(g) = group {
        send_publications(g, shards);
    }
    Ok(())
}

fn send_publications(
    (uri, event, pubs): (PresentityUri, EventKey, Vec<Publication>),
    shards: &[Addr<Shard>],
) {
    let shard = &shards[shard_of_presentity(&uri, shards.len())];
    shard.do_send(RestorePresentity { uri, event, pubs });
}

fn restore_subscriptions(
    store: &dyn Store,
    batch: usize,
    now: Timestamp,
    shards: &[Addr<Shard>],
    out: &mut Restored,
) -> Result<(), StoreError> {
    let mut after: Option<Vec<u8>> = None;
    loop {
        let (rows, next) = store.scan_subscriptions(after.as_deref(), batch)?;
        for d in rows {
            if d.expires_at <= now {
                store.delete_subscription(&d.presentity, &d.event, &d.id)?;
                out.dropped += 1;
                continue;
            }
            // The dialog must return to the shard encoded in its tag (in-dialog requests and
            // NOTIFY replies are routed by it), which must be its presentity's shard. After a
            // change of pres_htable_size they differ: such a dialog cannot be served.
            let idx = shard_of_presentity(&d.presentity, shards.len());
            let tagged = crate::actors::router::shard_from_tag(&d.id.local_tag, shards.len());
            if tagged != Some(idx) {
                tracing::warn!(dialog = %d.id, "subscription dropped at restore: pres_htable_size changed since it was created; the watcher will re-subscribe");
                store.delete_subscription(&d.presentity, &d.event, &d.id)?;
                out.dropped += 1;
                continue;
            }
            shards[idx].do_send(RestoreDialog(d, false));
            out.subscriptions += 1;
        }
        log_progress("subscriptions", out.subscriptions);
        match next {
            Some(k) => after = Some(k),
            None => break,
        }
    }
    Ok(())
}

fn log_progress(what: &str, count: usize) {
    if count > 0 && count % 10_000 < 500 {
        tracing::info!(count, "restoring {what}…");
    }
}

/// Deletes stored records that expired before `now` (the `clean_period` sweep; live actors
/// delete their own on their timers, this catches what no actor holds). Blocking.
pub fn sweep(persist: &Persistence, now: Timestamp) -> Result<usize, StoreError> {
    let Some(store) = persist.store() else {
        return Ok(0);
    };
    let mut removed = 0;
    if persist.stores_publications() {
        let mut after: Option<Vec<u8>> = None;
        loop {
            let (rows, next) = store.scan_publications(after.as_deref(), 1000)?;
            for (uri, event, p) in rows {
                if p.expires_at <= now {
                    store.delete_publication(&uri, &event, &p.etag)?;
                    removed += 1;
                }
            }
            match next {
                Some(k) => after = Some(k),
                None => break,
            }
        }
    }
    if persist.stores_subscriptions() {
        let mut after: Option<Vec<u8>> = None;
        loop {
            let (rows, next) = store.scan_subscriptions(after.as_deref(), 1000)?;
            for d in rows {
                if d.expires_at <= now {
                    store.delete_subscription(&d.presentity, &d.event, &d.id)?;
                    removed += 1;
                }
            }
            match next {
                Some(k) => after = Some(k),
                None => break,
            }
        }
    }
    Ok(removed)
}
