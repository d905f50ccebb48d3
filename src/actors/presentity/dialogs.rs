//! The subscription dialogs of a presentity actor as the shard sees them: restored dialogs
//! (straight into the passivated form when they are quiet), in-dialog messages routed
//! through the presentity ([`ToDialog`]), the passivation handshake ([`Passivate`]) and the
//! view of a passivated dialog for the debug endpoint ([`SnapshotDormant`]).

use actix::prelude::*;

use super::PresentityActor;
use crate::actors::dormant::DormantSub;
use crate::actors::dormant::SubHandle;
use crate::actors::inspect::SubscriptionView;
use crate::actors::messages::*;
use crate::actors::subscription::{raise_restored_cseq, SubscriptionActor};
use crate::actors::watchers::Watcher;
use crate::clock::{self, Timestamp};
use crate::ids::PresentityUri;
use crate::presence::authz::WatcherStatus;
use crate::presence::subscription::{DialogState, NotifyReply, SubStatus};
use crate::store::StoreError;
use crate::store::WatcherRecord;

/// Ask a presentity actor for the view of its passivated dialog `0` (`None`: it has no such
/// passivated dialog).
#[derive(Message)]
#[rtype(result = "Option<SubscriptionView>")]
pub struct SnapshotDormant(pub String);

impl Handler<RestoreWatch> for PresentityActor {
    type Result = ();

    fn handle(&mut self, msg: RestoreWatch, ctx: &mut Context<Self>) {
        self.handled += 1;
        let now = clock::now();
        let (mut d, takeover) = (msg.0, msg.1);
        let tag = d.id.local_tag.clone();
        let winfo = &d.event != self.core.event();
        let status = match d.status {
            SubStatus::Active => WatcherStatus::Active,
            SubStatus::Pending => WatcherStatus::Pending,
            SubStatus::Terminated => WatcherStatus::Terminated {
                reason: d.reason.clone().unwrap_or_default(),
            },
        };
        // A polite-blocked watcher is re-decided: the flag is not part of the stored dialog.
        let neutral =
            !winfo && status == WatcherStatus::Active && self.decide(&d.watcher).neutral_body;
        let (uri, expires_at) = (d.watcher.clone(), d.expires_at);
        // A quiet restored dialog goes straight to the passivated form: a restart with many
        // subscriptions starts no actor per dialog (its presentity wakes it when needed).
        let sleep = !winfo
            && !takeover
            && self.ctx.passivate_after.is_some()
            && d.status != SubStatus::Terminated
            && expires_at > now;
        let handle = if sleep {
            raise_restored_cseq(&mut d, &self.ctx);
            self.shard.do_send(RegisterDialog {
                tag: tag.clone(),
                addr: None,
                same_key: (d.presentity.clone(), d.id.call_id.clone()),
                event: d.event.clone(),
                watcher: d.watcher.clone(),
            });
            if self.ctx.cseq_may_lag {
                // Write-back: the raised CSeq is not in the store; keep it in memory.
                SubHandle::Dormant(DormantSub::new(&d, None, now))
            } else {
                // The store has the dialog exactly: nothing to keep but the watcher entry.
                SubHandle::Stored
            }
        } else {
            let body = match (winfo, neutral) {
                (true, _) => Some(self.watchers.winfo_full(now, self.core.uri())),
                (false, true) => Some(self.neutral.clone()),
                (false, false) => {
                    self.fresh_composed();
                    self.composed.clone()
                }
            };
            let addr = SubscriptionActor::start_restored(
                d,
                body,
                self.shard.clone(),
                ctx.address(),
                self.ctx.clone(),
                takeover,
            );
            if winfo {
                self.watchers.add_winfo(tag, addr);
                return self.after_message(ctx);
            }
            SubHandle::live(addr)
        };
        let stored = self.stored_watcher(&uri);
        let w = Watcher {
            handle,
            uri,
            status,
            neutral,
            since: stored.as_ref().map_or(now, |r| r.inserted_at.min(now)),
            expires_at,
            last_event: stored.map_or("subscribe", |r| winfo_event(&r.last_event)),
        };
        self.watchers.add(tag, w, now, self.core.uri());
        self.after_message(ctx);
    }
}

impl PresentityActor {
    /// The watchers-table record of `watcher`, read once per actor.
    /// Each record is handed out once (restored dialogs of one watcher after the first start
    /// from now); the map is freed once empty.
    fn stored_watcher(&mut self, watcher: &PresentityUri) -> Option<WatcherRecord> {
        // Read when the actor started (only while authorization is in effect).
        let map = self.stored_watchers.as_mut()?;
        let r = map.remove(watcher);
        if map.is_empty() {
            map.shrink_to_fit();
        }
        r
    }
}

/// A stored watcher-info event name as the `'static` one of RFC 3857 §4.2.1.
fn winfo_event(e: &str) -> &'static str {
    match e {
        "approved" => "approved",
        "deactivated" => "deactivated",
        "probation" => "probation",
        "rejected" => "rejected",
        "timeout" => "timeout",
        "giveup" => "giveup",
        "noresource" => "noresource",
        _ => "subscribe",
    }
}

impl Handler<ToDialog> for PresentityActor {
    type Result = ();

    fn handle(&mut self, msg: ToDialog, ctx: &mut Context<Self>) {
        self.handled += 1;
        let waker = self.waker();
        self.fresh_composed();
        let left = self
            .watchers
            .deliver(&msg.tag, msg.msg, &self.composed, &self.neutral, &waker);
        if let Some(DialogMsg::Refresh(r)) = left {
            // Ended between the shard's lookup and now.
            let resp = r.reply.response(481, "Call/Transaction Does Not Exist");
            r.reply.send(resp);
        }
        self.after_message(ctx);
    }
}

impl Handler<Passivate> for PresentityActor {
    type Result = ();

    fn handle(&mut self, msg: Passivate, ctx: &mut Context<Self>) {
        // With subscriptions in the store (modes 1, 2, 3) the store has the dialog: a
        // passivated one is read back from it; memory-only mode keeps the compact form.
        let keep_form = !self.ctx.persist.stores_subscriptions();
        let tag = msg.tag.clone();
        if let Some(addr) = self.watchers.passivate(msg, keep_form) {
            self.ctx.metrics.subscription_passivated();
            addr.do_send(Stop);
            self.shard.do_send(DialogAsleep { tag, addr });
            // The presentity's timer now also covers the dialog's expiry.
            self.after_message(ctx);
        }
    }
}

impl Handler<SnapshotDormant> for PresentityActor {
    type Result = ResponseFuture<Option<SubscriptionView>>;

    fn handle(&mut self, msg: SnapshotDormant, _: &mut Context<Self>) -> Self::Result {
        let node = self.ctx.node_id.to_string();
        let view = move |d: &DialogState, reply: Option<&NotifyReply>, at: Timestamp| {
            let mut v = SubscriptionView::new(d, reply, false, &node, clock::now(), at);
            v.passivated = true;
            v
        };
        if let Some(z) = self.watchers.dormant(&msg.0) {
            let v = z
                .open()
                .ok()
                .map(|(d, reply)| view(&d, reply.as_ref(), z.last_activity));
            return Box::pin(async move { v });
        }
        if !self
            .watchers
            .get(&msg.0)
            .is_some_and(|w| w.handle.is_asleep())
        {
            return Box::pin(async { None });
        }
        // DB-only: the store has it.
        let load = self.ctx.persist.load_subscription(
            self.core.uri().clone(),
            self.core.event().clone(),
            msg.0,
        );
        Box::pin(async move {
            let d = load.await.ok()??;
            Some(view(&d, None, Timestamp(0)))
        })
    }
}

impl PresentityActor {
    /// Starts reading back every passivated dialog that has messages waiting (one blocking
    /// task for all of them).
    pub(super) fn load_waiting(&mut self, ctx: &mut Context<Self>) {
        let tags = self.watchers.take_to_load();
        if tags.is_empty() {
            return;
        }
        let load = self.ctx.persist.load_subscriptions(
            self.core.uri().clone(),
            self.core.event().clone(),
            tags,
        );
        ctx.spawn(load.into_actor(self).map(|results, this, ctx| {
            for (tag, res) in results {
                this.on_loaded(&tag, res, ctx);
            }
        }));
    }

    /// A dialog read back from the store: its actor starts and gets what waited; a dialog
    /// that is missing or unreadable is forgotten (its waiting messages are dropped: an
    /// in-dialog SUBSCRIBE among them is answered 481 on its retransmission).
    fn on_loaded(
        &mut self,
        tag: &str,
        res: Result<Option<DialogState>, StoreError>,
        ctx: &mut Context<Self>,
    ) {
        self.fresh_composed();
        let body = match self.watchers.get(tag) {
            Some(w) if w.neutral => Some(self.neutral.clone()),
            Some(_) => self.composed.clone(),
            None => return, // gone meanwhile
        };
        match res {
            Ok(Some(d)) => {
                let addr = SubscriptionActor::start_woken(
                    d,
                    None,
                    body,
                    self.shard.clone(),
                    ctx.address(),
                    self.ctx.clone(),
                );
                self.watchers.loaded(tag, addr);
            }
            other => {
                let why = match other {
                    Err(e) => e.to_string(),
                    _ => "record missing".to_string(),
                };
                tracing::error!(presentity = %self.core.uri(), dialog = tag, reason = %why, "DB-only: subscription not read back; forgotten");
                let uri = self.core.uri().clone();
                self.watchers.load_failed(tag, clock::now(), &uri);
                self.shard.do_send(DialogGone {
                    tag: tag.to_string(),
                    same_key: (uri, String::new()),
                });
            }
        }
        self.after_message(ctx);
    }
}
