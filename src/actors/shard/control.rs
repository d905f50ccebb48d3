//! The admin side of a shard: listings and counts for the debug endpoint, mailbox sampling
//! for `/metrics`, and control messages forwarded to one presentity actor
//! (`presence.refreshWatchers`, `cleanup`, rule changes). Snapshots are asked for by
//! message, each bounded by the snapshot timeout.
//!
//! Listings are paged here, at the source ([`crate::actors::inspect`]'s two phases): a page
//! request picks at most `limit` keys after the cursor without asking any actor, and only
//! the actors the caller kept are snapshotted. Invariant: a presentity's mailbox depth is
//! `sent − handled` — `sent` counted here for every message the shard sends it (the Idle
//! protocol's counter), `handled` counted by the actor.

use actix::prelude::*;

use super::Shard;
use crate::actors::inspect::*;
use crate::actors::presentity::{PresentityActor, SnapshotDormant};
use crate::actors::subscription::SubscriptionActor;
use crate::ids::{EventKey, PresentityUri};

impl Handler<ListPresentities> for Shard {
    type Result = MessageResult<ListPresentities>;

    fn handle(&mut self, msg: ListPresentities, _: &mut Context<Self>) -> Self::Result {
        let ListPresentities { filter: f, page } = msg;
        let after = page.after.as_deref();
        let matching = self.presentities.keys().filter(|k| {
            let (uri, ev) = &***k;
            f.uri.as_ref().is_none_or(|u| u == uri) && f.event.as_ref().is_none_or(|e| e == ev)
        });
        MessageResult(key_page(
            matching.map(|k| (PresKeyRef::new(k.0.as_str(), k.1.as_str()), k)),
            |k| after.is_none_or(|a| k.is_after(a)),
            &page,
            |k, key| (k.to_string(), (**key).clone()),
        ))
    }
}

impl Handler<SnapshotPresentities> for Shard {
    type Result = ResponseFuture<Vec<(String, Snapshot<PresentityView>)>>;

    fn handle(&mut self, msg: SnapshotPresentities, _: &mut Context<Self>) -> Self::Result {
        let targets: Vec<(String, Addr<PresentityActor>, u64)> = msg
            .0
            .into_iter()
            .filter_map(|(key, k)| {
                let e = self.presentities.get(&k)?;
                Some((key, e.addr.clone(), e.sent))
            })
            .collect();
        Box::pin(presentity_snapshots(targets, false))
    }
}

impl Handler<SampleMailboxes> for Shard {
    type Result = ResponseFuture<MailboxSample>;

    fn handle(&mut self, msg: SampleMailboxes, _: &mut Context<Self>) -> Self::Result {
        // A random window (in map order, wrapping), so that successive scrapes of a shard
        // with more than `max` actors see different ones.
        let n = self.presentities.len();
        let start = if n > msg.max {
            rand::random_range(0..n)
        } else {
            0
        };
        let entries = self.presentities.values();
        let targets: Vec<(String, Addr<PresentityActor>, u64)> = entries
            .clone()
            .skip(start)
            .chain(entries.take(start))
            .take(msg.max)
            .map(|e| (String::new(), e.addr.clone(), e.sent))
            .collect();
        Box::pin(async move {
            let mut sample = MailboxSample::default();
            for (_, snap) in presentity_snapshots(targets, true).await {
                match snap {
                    Snapshot::Ready(v) => sample.presentity.push(v.mailbox_depth),
                    Snapshot::Busy { .. } => sample.busy += 1,
                }
            }
            sample
        })
    }
}

/// Snapshots of presentity actors (all asked at once), each with its mailbox depth: what the
/// shard had sent it (`sent`, read when the targets were chosen) minus what it had handled
/// when it answered, clamped at 0 (it may have handled later messages meanwhile).
async fn presentity_snapshots(
    targets: Vec<(String, Addr<PresentityActor>, u64)>,
    brief: bool,
) -> Vec<(String, Snapshot<PresentityView>)> {
    let (addrs, sent): (Vec<_>, Vec<u64>) = targets
        .into_iter()
        .map(|(key, addr, sent)| ((key, addr), sent))
        .unzip();
    let mut out = snapshots(addrs, || SnapshotPresentity { brief }).await;
    for ((_, snap), sent) in out.iter_mut().zip(sent) {
        if let Snapshot::Ready(v) = snap {
            v.mailbox_depth = sent.saturating_sub(v.handled);
        }
    }
    out
}

impl Handler<ListSubscriptions> for Shard {
    type Result = MessageResult<ListSubscriptions>;

    fn handle(&mut self, msg: ListSubscriptions, _: &mut Context<Self>) -> Self::Result {
        let ListSubscriptions { filter: f, page } = msg;
        let after = page.after.as_deref();
        let matching = self.dialogs.iter().filter(|(tag, d)| {
            f.id.as_ref().is_none_or(|i| i == *tag)
                && f.presentity.as_ref().is_none_or(|p| *p == d.key.0)
                && f.watcher.as_ref().is_none_or(|w| w == d.slot.watcher())
                && f.event.as_ref().is_none_or(|e| d.event_is(e))
        });
        MessageResult(key_page(
            matching.map(|(tag, _)| (tag.as_str(), ())),
            |k| after.is_none_or(|a| *k > a),
            &page,
            |k, ()| (k.to_string(), ()),
        ))
    }
}

impl Handler<SnapshotSubscriptions> for Shard {
    type Result = ResponseFuture<Vec<(String, Snapshot<SubscriptionView>)>>;

    fn handle(&mut self, msg: SnapshotSubscriptions, _: &mut Context<Self>) -> Self::Result {
        let targets: Vec<(String, DialogTarget)> = msg
            .0
            .into_iter()
            .filter_map(|tag| {
                let d = self.dialogs.get(&tag)?;
                let live = d.addr.clone().filter(Addr::connected);
                let presentity = self
                    .presentities
                    .get(&d.actor_key())
                    .map(|e| e.addr.clone());
                Some((tag, DialogTarget { live, presentity }))
            })
            .collect();
        Box::pin(dialog_snapshots(targets))
    }
}

/// Where the view of one dialog comes from: its actor, or — passivated — its presentity.
struct DialogTarget {
    live: Option<Addr<SubscriptionActor>>,
    presentity: Option<Addr<PresentityActor>>,
}

/// One snapshot per dialog, all asked at once, each bounded by [`SNAPSHOT_TIMEOUT`]. A
/// dialog passivated (or ended) between the listing and its answer is asked of its
/// presentity (or left out).
async fn dialog_snapshots(
    targets: Vec<(String, DialogTarget)>,
) -> Vec<(String, Snapshot<SubscriptionView>)> {
    let dormant = |key: &str, p: &Addr<PresentityActor>| {
        p.send(SnapshotDormant(key.to_string()))
            .timeout(SNAPSHOT_TIMEOUT)
    };
    let asked: Vec<_> = targets
        .into_iter()
        .map(|(key, t)| {
            let live = t
                .live
                .as_ref()
                .map(|a| a.send(SnapshotSubscription).timeout(SNAPSHOT_TIMEOUT));
            let sleeping = match (&live, &t.presentity) {
                (None, Some(p)) => Some(dormant(&key, p)),
                _ => None,
            };
            (key, t.presentity, live, sleeping)
        })
        .collect();
    let mut out = Vec::with_capacity(asked.len());
    for (key, presentity, live, mut sleeping) in asked {
        if let Some(request) = live {
            match request.await {
                Ok(v) => {
                    out.push((key, Snapshot::Ready(v)));
                    continue;
                }
                Err(MailboxError::Timeout) => {
                    out.push((key.clone(), Snapshot::Busy { key, state: "busy" }));
                    continue;
                }
                // Passivated meanwhile: ask its presentity.
                Err(MailboxError::Closed) => sleeping = presentity.map(|p| dormant(&key, &p)),
            }
        }
        let Some(request) = sleeping else { continue };
        match request.await {
            Ok(Some(v)) => out.push((key, Snapshot::Ready(v))),
            Ok(None) | Err(MailboxError::Closed) => {} // ended meanwhile
            Err(MailboxError::Timeout) => {
                out.push((key.clone(), Snapshot::Busy { key, state: "busy" }));
            }
        }
    }
    out
}

impl Handler<Stats> for Shard {
    type Result = MessageResult<Stats>;

    fn handle(&mut self, _: Stats, _: &mut Context<Self>) -> Self::Result {
        MessageResult(ShardStats {
            presentities: self.presentities.len(),
            subscriptions: self.dialogs.len(),
            passivated: self
                .dialogs
                .values()
                .filter(|d| !d.addr.as_ref().is_some_and(Addr::connected))
                .count(),
            transactions: self.txns.len(),
            last_activity: self.last_activity.0,
        })
    }
}

impl Handler<ForPresentity> for Shard {
    type Result = ResponseFuture<Option<usize>>;

    fn handle(&mut self, msg: ForPresentity, _: &mut Context<Self>) -> Self::Result {
        let addr = self
            .presentities
            .get(&(msg.uri, msg.event))
            .map(|e| e.addr.clone());
        Box::pin(async move {
            let addr = addr?;
            let r = match msg.action {
                PresentityAction::Refresh => {
                    addr.send(RefreshWatchers).timeout(SNAPSHOT_TIMEOUT).await
                }
                PresentityAction::Sweep => addr.send(Sweep).timeout(SNAPSHOT_TIMEOUT).await,
                PresentityAction::CountWatchers => {
                    addr.send(CountWatchers).timeout(SNAPSHOT_TIMEOUT).await
                }
            };
            r.ok()
        })
    }
}

impl Handler<SweepShard> for Shard {
    type Result = ResponseFuture<usize>;

    fn handle(&mut self, _: SweepShard, _: &mut Context<Self>) -> Self::Result {
        let targets: Vec<_> = self.presentities.values().map(|e| e.addr.clone()).collect();
        Box::pin(async move {
            let mut removed = 0;
            for a in targets {
                removed += a.send(Sweep).timeout(SNAPSHOT_TIMEOUT).await.unwrap_or(0);
            }
            removed
        })
    }
}

/// A control message for one presentity actor, forwarded by its shard (which creates the
/// actor first when `create`). Answers `None` when there is no such actor or it did not
/// answer within [`SNAPSHOT_TIMEOUT`].
pub struct ToPresentity<M> {
    /// Presentity.
    pub uri: PresentityUri,
    /// Event package.
    pub event: EventKey,
    /// Create the actor if it does not exist (setting rules for a presentity with no state).
    pub create: bool,
    /// The message.
    pub msg: M,
}

impl<M> actix::Message for ToPresentity<M>
where
    M: actix::Message,
    M::Result: Send,
{
    type Result = Option<M::Result>;
}

impl<M> Handler<ToPresentity<M>> for Shard
where
    M: actix::Message + Send + 'static,
    M::Result: Send,
    PresentityActor: Handler<M>,
{
    type Result = ResponseFuture<Option<M::Result>>;

    fn handle(&mut self, m: ToPresentity<M>, _: &mut Context<Self>) -> Self::Result {
        let key = (m.uri, m.event);
        let addr = if m.create {
            self.presentity_for_restore(key)
        } else {
            self.presentities.get_mut(&key).map(|e| {
                e.sent += 1; // control handlers count as handled (Idle protocol)
                e.addr.clone()
            })
        };
        Box::pin(async move { addr?.send(m.msg).timeout(SNAPSHOT_TIMEOUT).await.ok() })
    }
}
