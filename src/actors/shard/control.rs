//! The admin side of a shard: listings and counts for the debug endpoint, and control
//! messages forwarded to one presentity actor (`presence.refreshWatchers`, `cleanup`, rule
//! changes). Snapshots are asked for by message, each bounded by the snapshot timeout.

use actix::prelude::*;

use super::Shard;
use crate::actors::inspect::*;
use crate::actors::presentity::{PresentityActor, SnapshotDormant};
use crate::actors::subscription::SubscriptionActor;
use crate::ids::{EventKey, PresentityUri};

impl Handler<ListPresentities> for Shard {
    type Result = ResponseFuture<Vec<Snapshot<PresentityView>>>;

    fn handle(&mut self, msg: ListPresentities, _: &mut Context<Self>) -> Self::Result {
        let f = msg.0;
        let targets: Vec<(String, Addr<PresentityActor>)> = self
            .presentities
            .iter()
            .filter(|((uri, ev), _)| {
                f.uri.as_ref().is_none_or(|u| u == uri) && f.event.as_ref().is_none_or(|e| e == ev)
            })
            .map(|((uri, ev), e)| (format!("{uri} {ev}"), e.addr.clone()))
            .collect();
        Box::pin(snapshots(targets, || SnapshotPresentity))
    }
}

impl Handler<ListSubscriptions> for Shard {
    type Result = ResponseFuture<Vec<Snapshot<SubscriptionView>>>;

    fn handle(&mut self, msg: ListSubscriptions, _: &mut Context<Self>) -> Self::Result {
        let f = msg.0;
        let targets: Vec<(String, DialogTarget)> = self
            .dialogs
            .iter()
            .filter(|(tag, d)| {
                f.id.as_ref().is_none_or(|i| i == *tag)
                    && f.presentity.as_ref().is_none_or(|p| *p == d.presentity)
                    && f.watcher.as_ref().is_none_or(|w| *w == d.watcher)
                    && f.event.as_ref().is_none_or(|e| *e == d.event)
            })
            .map(|(tag, d)| {
                let live = d.addr.clone().filter(Addr::connected);
                let presentity = self
                    .presentities
                    .get(&d.actor_key())
                    .map(|e| e.addr.clone());
                (tag.clone(), DialogTarget { live, presentity })
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

/// One snapshot per dialog, in turn, each bounded by [`SNAPSHOT_TIMEOUT`]. A dialog
/// passivated (or ended) between the listing and its turn is asked of its presentity (or
/// left out).
async fn dialog_snapshots(targets: Vec<(String, DialogTarget)>) -> Vec<Snapshot<SubscriptionView>> {
    let mut out = Vec::with_capacity(targets.len());
    for (key, t) in targets {
        if let Some(addr) = t.live {
            match addr
                .send(SnapshotSubscription)
                .timeout(SNAPSHOT_TIMEOUT)
                .await
            {
                Ok(v) => {
                    out.push(Snapshot::Ready(v));
                    continue;
                }
                Err(MailboxError::Timeout) => {
                    out.push(Snapshot::Busy { key, state: "busy" });
                    continue;
                }
                Err(MailboxError::Closed) => {} // passivated meanwhile
            }
        }
        let Some(p) = t.presentity else { continue };
        match p
            .send(SnapshotDormant(key.clone()))
            .timeout(SNAPSHOT_TIMEOUT)
            .await
        {
            Ok(Some(v)) => out.push(Snapshot::Ready(v)),
            Ok(None) | Err(MailboxError::Closed) => {} // ended meanwhile
            Err(MailboxError::Timeout) => out.push(Snapshot::Busy { key, state: "busy" }),
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
