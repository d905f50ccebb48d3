//! [`SubscriptionActor`]: one per dialog. Owns the [`Subscription`] core, turns its effects
//! into NOTIFYs on the wire, keeps the in-flight NOTIFY's bytes for Timer E retransmissions.

use std::sync::Arc;

use actix::prelude::*;
use bytes::Bytes;

use super::context::{NodeCtx, PendingNotify};
use super::dormant::DormantSub;
use super::inspect::{SnapshotSubscription, SubscriptionView};
use super::messages::*;
use super::presentity::PresentityActor;
use super::replication::LocalSubscription;
use super::shard::Shard;

mod notify;
mod ownership;
use crate::clock::{self, Timestamp};
use crate::presence::package::Body;
use crate::presence::subscription::{SubEffect, SubStatus, Subscription};
use crate::transport::Target;

/// How long a refused passivation request waits before the next one (DB-only mode asks
/// as soon as the dialog is quiet).
const RETRY_PASSIVATION: std::time::Duration = std::time::Duration::from_secs(1);

/// CSeq jump for dialogs restored in write-back mode (see [`SubscriptionActor::start_restored`]).
const CSEQ_RESTORE_GAP: u32 = 1 << 16;

/// The actor of one subscription dialog.
pub struct SubscriptionActor {
    core: Subscription,
    ctx: Arc<NodeCtx>,
    presentity: Addr<PresentityActor>,
    shard: Addr<Shard>,
    /// The 200 to the initial SUBSCRIBE, sent in `started` before the first NOTIFY.
    first_reply: Option<Reply>,
    first_effects: Vec<SubEffect>,
    /// Restored as a takeover from a node that is gone: NOTIFY at once, which also moves the
    /// watcher's remote target (our Contact) to this node.
    takeover: bool,
    /// The NOTIFY in flight (for retransmission).
    in_flight: Option<InFlightNotify>,
    timer: Option<(Timestamp, SpawnHandle)>,
    /// Unregistered; waiting for the shard's `Stop`.
    gone: bool,
    /// The presentity was told this watcher is gone.
    left: bool,
    last_activity: Timestamp,
    /// Messages handled that came through the presentity (the passivation handshake).
    handled: u64,
    /// When this actor last asked to be passivated.
    asked: Timestamp,
    /// When this actor started.
    started_at: Timestamp,
}

/// The NOTIFY in flight: its bytes (for retransmission), where it goes, its Via branch (a
/// response must carry it, RFC 3261 §17.1.3), and its place in the node's
/// `max_pending_notifies` count (released when this is dropped).
pub(crate) struct InFlightNotify {
    target: Target,
    bytes: Bytes,
    branch: String,
    _pending: PendingNotify,
}

impl SubscriptionActor {
    /// Starts the actor of a new dialog on the current arbiter; it answers `reply` with 200
    /// and sends the first NOTIFY.
    pub fn start_for(
        dialog: crate::presence::subscription::DialogState,
        body: Option<Body>,
        reply: Reply,
        presentity: Addr<PresentityActor>,
        ctx: Arc<NodeCtx>,
    ) -> Addr<Self> {
        let shard = reply.shard.clone();
        let (core, first_effects) =
            Subscription::start(clock::now(), dialog, ctx.subscription, body);
        Self::spawn(
            core,
            ctx,
            presentity,
            shard,
            Some(reply),
            first_effects,
            false,
        )
    }

    /// Starts the actor of a dialog restored from the store: no 200 and no NOTIFY now; its
    /// timers are re-armed and the next NOTIFY continues the CSeq.
    pub fn start_restored(
        mut dialog: crate::presence::subscription::DialogState,
        body: Option<Body>,
        shard: Addr<Shard>,
        presentity: Addr<PresentityActor>,
        ctx: Arc<NodeCtx>,
        takeover: bool,
    ) -> Addr<Self> {
        raise_restored_cseq(&mut dialog, &ctx);
        let mut core = Subscription::restore(dialog, ctx.subscription);
        core.set_body(body);
        Self::spawn(core, ctx, presentity, shard, None, Vec::new(), takeover)
    }

    /// Starts the actor of a passivated dialog again (its state was in memory: the CSeq
    /// continues exactly).
    pub(crate) fn start_woken(
        dialog: crate::presence::subscription::DialogState,
        last_reply: Option<crate::presence::subscription::NotifyReply>,
        body: Option<Body>,
        shard: Addr<Shard>,
        presentity: Addr<PresentityActor>,
        ctx: Arc<NodeCtx>,
    ) -> Addr<Self> {
        let mut core = Subscription::wake(dialog, ctx.subscription, last_reply);
        core.set_body(body);
        Self::spawn(core, ctx, presentity, shard, None, Vec::new(), false)
    }

    fn spawn(
        core: Subscription,
        ctx: Arc<NodeCtx>,
        presentity: Addr<PresentityActor>,
        shard: Addr<Shard>,
        first_reply: Option<Reply>,
        first_effects: Vec<SubEffect>,
        takeover: bool,
    ) -> Addr<Self> {
        let mailbox = ctx.mailbox_size;
        SubscriptionActor::create(move |c| {
            c.set_mailbox_capacity(mailbox);
            let now = clock::now();
            SubscriptionActor {
                core,
                ctx,
                presentity,
                shard,
                first_reply,
                first_effects,
                takeover,
                in_flight: None,
                timer: None,
                gone: false,
                left: false,
                last_activity: now,
                handled: 0,
                asked: Timestamp(0),
                started_at: now,
            }
        })
    }

    /// Answers the initial SUBSCRIBE (200) and sends the first NOTIFY.
    fn first_answer(&mut self, ctx: &mut Context<Self>) {
        let d = self.core.dialog();
        self.ctx.events.emit(
            "subscription-created",
            d.presentity.as_str(),
            d.event.as_str(),
            || serde_json::json!({"dialog": d.id.local_tag, "watcher": d.watcher.as_str(), "status": d.status.as_str()}),
        );
        if let Some(reply) = self.first_reply.take() {
            let expires = clock::now().secs_until(d.expires_at);
            let resp = reply
                .response(200, "OK")
                .to_tag(&d.id.local_tag)
                .header("Expires", expires.to_string())
                .header("Contact", format!("<{}>", self.ctx.server_address));
            reply.send(resp);
        }
        let fx = std::mem::take(&mut self.first_effects);
        self.apply(fx, ctx);
    }

    fn apply(&mut self, effects: Vec<SubEffect>, ctx: &mut Context<Self>) {
        self.last_activity = clock::now();
        let notified = effects.iter().any(|e| matches!(e, SubEffect::Notify(_)));
        let mut unsent = Vec::new();
        for e in effects {
            match e {
                SubEffect::Notify(spec) => {
                    if !self.send_notify(&spec) {
                        unsent.push(spec.cseq);
                    }
                }
                SubEffect::Retransmit => {
                    if let Some(f) = &self.in_flight {
                        self.ctx.metrics.notify_retransmitted();
                        self.ctx.sender.send_request(&f.target, f.bytes.clone());
                    }
                }
                SubEffect::Remove => self.unregister(),
            }
        }
        // A NOTIFY that could not leave at all fails at once, as a transport error (RFC 3261
        // §8.1.3.1: 503), instead of waiting 32 s for Timer F with nothing on the wire.
        for cseq in unsent {
            let fx = self
                .core
                .on_notify_response(clock::now(), cseq, 503, "Service Unavailable");
            if !fx.is_empty() {
                self.apply(fx, ctx);
            }
        }
        if notified && !self.gone {
            // The new local CSeq (and version) must survive a restart.
            self.record();
        }
        if self.core.dialog().status == SubStatus::Terminated {
            self.leave_presentity();
        }
        if !self.core.notify_in_flight() {
            // Answered, timed out (Timer F) or never sent: no longer pending.
            self.in_flight = None;
        }
        self.rearm(ctx);
    }

    fn unregister(&mut self) {
        self.unregister_from(true);
    }

    /// Stops serving the dialog: forgets it (in the cluster too when `cluster`; not when
    /// another node owns it now), leaves the presentity, and tells the shard.
    fn unregister_from(&mut self, cluster: bool) {
        if self.gone {
            return;
        }
        self.gone = true;
        self.in_flight = None;
        let d = self.core.dialog();
        tracing::debug!(presentity = %d.presentity, dialog = %d.id, reason = ?d.reason, "subscription removed");
        if cluster {
            self.forget();
        } else {
            self.ctx.persist.delete_subscription(d);
        }
        self.leave_presentity();
        let d = self.core.dialog();
        self.shard.do_send(DialogGone {
            tag: d.id.local_tag.clone(),
            same_key: (d.presentity.clone(), d.id.call_id.clone()),
        });
    }

    /// Stores the dialog's state (CSeqs, expiry, status) and replicates it to the cluster,
    /// so that a restart or another node (takeover) continues it.
    fn record(&self) {
        let d = self.core.dialog();
        self.ctx.persist.put_subscription(d);
        if let Some(r) = &self.ctx.replication {
            r.do_send(LocalSubscription {
                dialog: d.clone(),
                live: true,
            });
        }
    }

    /// Forgets the dialog in the store and in the cluster.
    fn forget(&self) {
        let d = self.core.dialog();
        self.ctx.persist.delete_subscription(d);
        if let Some(r) = &self.ctx.replication {
            r.do_send(LocalSubscription {
                dialog: d.clone(),
                live: false,
            });
        }
    }

    /// Tells the presentity this watcher is gone — as soon as the subscription is
    /// terminated, not when its final NOTIFY completes, so watcher info reports it at once.
    fn leave_presentity(&mut self) {
        if self.left {
            return;
        }
        self.left = true;
        let d = self.core.dialog();
        self.ctx.events.emit(
            "subscription-terminated",
            d.presentity.as_str(),
            d.event.as_str(),
            || serde_json::json!({"dialog": d.id.local_tag, "watcher": d.watcher.as_str(), "reason": d.reason}),
        );
        self.presentity.do_send(Unwatch {
            tag: d.id.local_tag.clone(),
            reason: d.reason.clone(),
        });
    }

    fn rearm(&mut self, ctx: &mut Context<Self>) {
        let core_next = if self.gone {
            None
        } else {
            self.core.next_deadline()
        };
        let next = match (core_next, self.sleep_at()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if self.timer.as_ref().map(|t| t.0) == next {
            return;
        }
        if let Some((_, h)) = self.timer.take() {
            ctx.cancel_future(h);
        }
        if let Some(at) = next {
            let h = ctx.run_later(clock::now().until(at), |this, ctx| {
                this.timer = None;
                let now = clock::now();
                let was_in_flight = this.core.notify_in_flight();
                let fx = this.core.on_timer(now);
                if was_in_flight
                    && !this.core.notify_in_flight()
                    && this.core.last_reply().is_some_and(|r| r.status == 408)
                {
                    this.ctx.metrics.notify_failed("timeout");
                }
                if fx.is_empty() && this.sleep_at().is_some_and(|t| t <= now) {
                    this.ask_passivation(now, ctx);
                }
                this.apply(fx, ctx);
            });
            self.timer = Some((at, h));
        }
    }

    /// When this dialog may be passivated: `passivate_after` after its last activity (or
    /// its last request), if it is quiet. Watcher-info dialogs and dialogs being set up or
    /// torn down are never passivated.
    fn sleep_at(&self) -> Option<Timestamp> {
        let after = self.ctx.passivate_after?;
        let d = self.core.dialog();
        if self.gone
            || self.first_reply.is_some()
            || !self.core.is_quiescent()
            || d.event.as_str().ends_with(".winfo")
        {
            return None;
        }
        if self.asked >= self.last_activity {
            // Asked already and refused (a message was on its way): ask again later.
            return Some(self.asked.plus(after.max(RETRY_PASSIVATION)));
        }
        Some(self.last_activity.plus(after))
    }

    /// Asks the presentity to keep this dialog in its compact form and stop this actor.
    fn ask_passivation(&mut self, now: Timestamp, ctx: &mut Context<Self>) {
        self.asked = now;
        let d = self.core.dialog();
        self.presentity.do_send(Passivate {
            tag: d.id.local_tag.clone(),
            addr: ctx.address(),
            handled: self.handled,
            form: DormantSub::new(d, self.core.last_reply(), self.last_activity),
        });
    }
}

/// Write-back: NOTIFYs sent after the last flush are not in the record, so a restored
/// dialog's CSeq jumps ahead. A gap is allowed by RFC 3261 §12.2.1.1, a step backwards is
/// not.
pub(crate) fn raise_restored_cseq(
    dialog: &mut crate::presence::subscription::DialogState,
    ctx: &NodeCtx,
) {
    if ctx.cseq_may_lag {
        dialog.local_cseq = dialog.local_cseq.saturating_add(CSEQ_RESTORE_GAP);
    }
}

impl Actor for SubscriptionActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let d = self.core.dialog();
        self.shard.do_send(RegisterDialog {
            tag: d.id.local_tag.clone(),
            addr: Some(ctx.address()),
            same_key: (d.presentity.clone(), d.id.call_id.clone()),
            event: d.event.clone(),
            watcher: d.watcher.clone(),
        });
        if self.first_reply.is_none() {
            // Restored: nothing to answer, timers to re-arm — and after a takeover, a NOTIFY.
            if self.takeover {
                tracing::info!(dialog = %self.core.dialog().id, "subscription taken over; notifying the watcher");
                let fx = self.core.resend(clock::now());
                self.apply(fx, ctx);
            }
            self.rearm(ctx);
            self.fence(ctx);
            return;
        }
        if self.core.dialog().status != SubStatus::Terminated {
            self.record();
        }
        let Some(durable) = self.ctx.persist.durable() else {
            return self.first_answer(ctx);
        };
        // Write-through: the 200 leaves only once the dialog is on disk. `wait` holds this
        // actor's mailbox meanwhile, so nothing overtakes the 200.
        ctx.wait(durable.into_actor(self).map(|res, this, ctx| match res {
            Ok(()) => this.first_answer(ctx),
            Err(e) => {
                tracing::error!(error = %e, "store flush failed; SUBSCRIBE answered 500");
                if let Some(reply) = this.first_reply.take() {
                    let fail = reply
                        .response(500, "Server Internal Error")
                        .header("Retry-After", this.ctx.retry_after.to_string());
                    reply.send(fail);
                }
                this.unregister();
            }
        }));
    }
}

impl Handler<Refresh> for SubscriptionActor {
    type Result = ();

    fn handle(&mut self, msg: Refresh, ctx: &mut Context<Self>) {
        self.handled += 1;
        let Refresh {
            cseq,
            expires,
            reply,
        } = msg;
        let d = self.core.dialog();
        let req = reply.request();
        let same_dialog =
            req.call_id == d.id.call_id && req.from.tag.as_deref() == Some(&d.id.remote_tag);
        if self.gone || !same_dialog {
            let resp = reply.response(481, "Call/Transaction Does Not Exist");
            reply.send(resp);
            return;
        }
        let now = clock::now();
        match self.core.refresh(now, cseq, now.plus_secs(expires as u64)) {
            Ok(fx) => {
                let resp = reply
                    .response(200, "OK")
                    .header("Expires", expires.to_string())
                    .header("Contact", format!("<{}>", self.ctx.server_address));
                self.record();
                self.ctx.events.emit(
                    "subscription-refreshed",
                    self.core.dialog().presentity.as_str(),
                    self.core.dialog().event.as_str(),
                    || serde_json::json!({"dialog": self.core.dialog().id.local_tag, "expires": expires}),
                );
                self.presentity.do_send(WatcherRefreshed {
                    tag: self.core.dialog().id.local_tag.clone(),
                    expires_at: self.core.dialog().expires_at,
                });
                let Some(durable) = self.ctx.persist.durable() else {
                    reply.send(resp);
                    return self.apply(fx, ctx);
                };
                ctx.wait(durable.into_actor(self).map(move |res, this, ctx| {
                    if let Err(e) = res {
                        tracing::error!(error = %e, "store flush failed; refresh answered 500");
                        let fail = reply
                            .response(500, "Server Internal Error")
                            .header("Retry-After", this.ctx.retry_after.to_string());
                        return reply.send(fail);
                    }
                    reply.send(resp);
                    this.apply(fx, ctx);
                }));
            }
            Err(e) => {
                let mut resp = reply.response(e.status_code(), &e.to_string());
                if e.status_code() == 500 {
                    resp = resp.header("Retry-After", self.ctx.retry_after.to_string());
                }
                reply.send(resp);
            }
        }
    }
}

impl Handler<StateChanged> for SubscriptionActor {
    type Result = ();

    fn handle(&mut self, msg: StateChanged, ctx: &mut Context<Self>) {
        self.handled += 1;
        if self.gone {
            return;
        }
        let fx = self
            .core
            .state_changed_with_delta(clock::now(), msg.body, msg.partial);
        self.apply(fx, ctx);
    }
}

impl Handler<Replaced> for SubscriptionActor {
    type Result = ();

    fn handle(&mut self, _: Replaced, ctx: &mut Context<Self>) {
        self.handled += 1;
        self.unregister();
        self.rearm(ctx);
    }
}

impl Handler<Stop> for SubscriptionActor {
    type Result = ();

    fn handle(&mut self, _: Stop, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

impl Handler<SnapshotSubscription> for SubscriptionActor {
    type Result = MessageResult<SnapshotSubscription>;

    fn handle(&mut self, _: SnapshotSubscription, _: &mut Context<Self>) -> Self::Result {
        let mut v = SubscriptionView::new(
            self.core.dialog(),
            self.core.last_reply(),
            self.core.notify_in_flight(),
            self.ctx.node_id.as_str(),
            clock::now(),
            self.last_activity,
        );
        v.started_at = Some(self.started_at.0);
        MessageResult(v)
    }
}

impl Handler<SetStatus> for SubscriptionActor {
    type Result = ();

    fn handle(&mut self, msg: SetStatus, ctx: &mut Context<Self>) {
        self.handled += 1;
        if self.gone {
            return;
        }
        self.core.set_body(msg.body);
        let fx = self
            .core
            .set_status(clock::now(), msg.status, msg.reason.as_deref());
        self.apply(fx, ctx);
    }
}
