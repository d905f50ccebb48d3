//! [`PresentityActor`]: one per (presentity URI, event). Owns the publications
//! ([`Presentity`]), the composed document, and its local subscriptions; fans every change
//! out to them.

use std::collections::HashMap;
use std::sync::Arc;

pub mod control;
mod dialogs;

pub use dialogs::SnapshotDormant;

use actix::prelude::*;

use super::context::NodeCtx;
use super::dormant::{SubHandle, Waker};
use super::inspect::{
    body_text, CountWatchers, PresentityView, PublicationView, RefreshWatchers, SnapshotPresentity,
    Sweep,
};
use super::messages::*;
use super::replication::LocalPublication;
use super::shard::Shard;
use super::subscription::SubscriptionActor;
use super::watchers::{initial_status, neutral_body, Watcher, Watchers};
use crate::clock::{self, Timestamp};
use crate::cluster::merge::{PubId, PubKey};
use crate::ids::{ETag, EventKey, PresentityUri};
use crate::presence::authz::{Decision, RuleSet, WatcherStatus};
use crate::presence::package::{Body, EventPackage};
use crate::presence::presentity::Presentity;
use crate::presence::publication::PublishInput;
use crate::sip::headers::SipETag;
use crate::sip::OutResponse;
use bytes::Bytes;

/// The actor of one presentity and event package.
pub struct PresentityActor {
    core: Presentity,
    pkg: Arc<dyn EventPackage>,
    ctx: Arc<NodeCtx>,
    /// The composed document, recomputed on the first read after a change
    /// ([`Self::fresh_composed`]): a presentity nobody watches is never composed.
    composed: Option<Body>,
    /// A publication changed since `composed` was computed.
    stale: bool,
    watchers: Watchers,
    /// The polite-block document (RFC 5025 §3.2.1) of this presentity.
    neutral: Body,
    /// The authorization rule document, loaded from the store on first use.
    rules: Option<(Bytes, RuleSet)>,
    rules_loaded: bool,
    /// Current ETag → replication lineage (the ETag of the initial PUBLISH): refreshes and
    /// modifications mint new ETags but stay one replicated publication.
    lineage: HashMap<ETag, PubId>,
    /// Shard messages handled (see the Idle protocol in [`crate::actors`]).
    handled: u64,
    timer: Option<(Timestamp, SpawnHandle)>,
    shard: Addr<Shard>,
    /// Our own address, for the subscription actors we (re)start.
    me: Addr<PresentityActor>,
    /// The watchers table's records of this presentity, read at the first restored dialog
    /// (they give restored watchers their original `since` and last event).
    stored_watchers: Option<HashMap<PresentityUri, crate::store::WatcherRecord>>,
    /// When this actor started.
    started_at: Timestamp,
    last_activity: Timestamp,
}

impl PresentityActor {
    /// Starts the actor of (`uri`, `event`) on the current arbiter.
    pub fn start_for(
        uri: PresentityUri,
        event: EventKey,
        ctx: Arc<NodeCtx>,
        shard: Addr<Shard>,
    ) -> Addr<Self> {
        let pkg = match ctx.packages.find(&event) {
            Some(p) => p,
            // The shard only routes events it found in the registry, and packages are never
            // removed, so this cannot miss.
            None => unreachable!("presentity actor for an unregistered event {event}"),
        };
        let mailbox = ctx.mailbox_size;
        PresentityActor::create(move |c| {
            c.set_mailbox_capacity(mailbox);
            let polite = Decision {
                status: WatcherStatus::Active,
                neutral_body: true,
            };
            let neutral = pkg
                .apply_auth(&uri, None, &polite)
                .unwrap_or_else(|| neutral_body(&uri));
            PresentityActor {
                neutral,
                core: Presentity::new(uri, event),
                pkg,
                ctx,
                composed: None,
                stale: false,
                watchers: Watchers::default(),
                rules: None,
                rules_loaded: false,
                lineage: HashMap::new(),
                handled: 0,
                timer: None,
                shard,
                me: c.address(),
                stored_watchers: None,
                started_at: clock::now(),
                last_activity: clock::now(),
            }
        })
    }

    /// Marks the composed document out of date (a publication changed). Composing costs as
    /// much as the rest of a PUBLISH; most presentities have no watcher when they publish.
    fn recompose(&mut self) {
        self.stale = true;
    }

    /// Brings `composed` up to date; called before every read of it.
    fn fresh_composed(&mut self) {
        if std::mem::take(&mut self.stale) {
            self.composed = self
                .core
                .compose(self.pkg.as_ref(), &self.ctx.publish.order);
        }
    }

    /// Sends the composed document to every authorized watcher except `skip`.
    fn fan_out(&mut self, skip: Option<&PresentityUri>) {
        if self.watchers.state_watchers() == 0 {
            return;
        }
        self.fresh_composed();
        let waker = self.waker();
        self.watchers
            .fan_out(&self.composed, &self.neutral, skip, &waker);
    }

    /// Starts the actors of passivated dialogs.
    fn waker(&self) -> Waker {
        Waker {
            shard: self.shard.clone(),
            presentity: self.me.clone(),
            ctx: self.ctx.clone(),
        }
    }

    /// Re-arms the expiry timer and reports idleness after every message.
    fn after_message(&mut self, ctx: &mut Context<Self>) {
        self.last_activity = clock::now();
        self.persist_watchers();
        self.load_waiting(ctx);
        let next = match (self.core.next_expiry(), self.watchers.next_dormant_expiry()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if self.timer.as_ref().map(|t| t.0) != next {
            if let Some((_, h)) = self.timer.take() {
                ctx.cancel_future(h);
            }
            if let Some(at) = next {
                let delay = clock::now().until(at);
                let h = ctx.run_later(delay, |this, ctx| {
                    this.timer = None;
                    let _ = this.on_expiry_timer();
                    let waker = this.waker();
                    this.fresh_composed();
                    this.watchers
                        .wake_expired(clock::now(), &this.composed, &this.neutral, &waker);
                    this.after_message(ctx);
                });
                self.timer = Some((at, h));
            }
        }
        // Rules set in memory only (no store) keep the actor alive: they would be lost.
        let holds_rules = self.rules.is_some() && self.ctx.persist.store().is_none();
        if self.core.is_empty() && self.watchers.is_empty() && !holds_rules {
            self.shard.do_send(PresentityIdle {
                key: (self.core.uri().clone(), self.core.event().clone()),
                addr: ctx.address(),
                handled: self.handled,
            });
        }
    }

    /// Writes the watchers-table records of the watchers whose state changed.
    /// Only when authorization is in effect: with `default_policy = "allow"` every watcher is
    /// active and, as with Kamailio's `force_active = 1`, no watcher rows are kept.
    fn persist_watchers(&mut self) {
        let dirty = self.watchers.take_dirty();
        if !self.keeps_watcher_rows() {
            return;
        }
        let (uri, event) = (self.core.uri(), self.core.event());
        for w in dirty {
            match self.watchers.record(&w) {
                Some(r) => self.ctx.persist.put_watcher(uri, event, &r),
                None => self.ctx.persist.delete_watcher(uri, event, &w),
            }
        }
    }

    /// Whether the watchers table is kept for this presentity (authorization in effect).
    fn keeps_watcher_rows(&self) -> bool {
        self.pkg.req_auth() && self.ctx.policy != crate::presence::authz::Policy::Allow
    }

    /// Writes what a PUBLISH changed: publications gone since `before` are deleted, the one
    /// named `etag` (new or modified) is written.
    fn persist_changes(&self, before: &[ETag], etag: &ETag) {
        let p = &self.ctx.persist;
        if !p.stores_publications() {
            return;
        }
        let (uri, event) = (self.core.uri(), self.core.event());
        let now: Vec<&ETag> = self.core.publications().iter().map(|p| &p.etag).collect();
        for old in before.iter().filter(|e| !now.contains(e)) {
            p.delete_publication(uri, event, old);
        }
        if let Some(publ) = self.core.publications().iter().find(|p| &p.etag == etag) {
            p.put_publication(uri, event, publ);
        }
    }

    /// Tells the replication actor (cluster) what a local PUBLISH did to its lineage: the
    /// publication now named `etag`, or its removal.
    fn replicate(&mut self, if_match: Option<&ETag>, etag: &ETag) {
        let lineage = match if_match {
            Some(old) => self
                .lineage
                .remove(old)
                .unwrap_or_else(|| PubId(old.clone())),
            None => PubId(etag.clone()),
        };
        let current = self.core.publications().iter().find(|p| &p.etag == etag);
        // A lineage named by its current ETag needs no entry: a lookup that misses means
        // "itself" (above), so most presentities keep no map at all.
        if current.is_some() && lineage.0 != *etag {
            self.lineage.insert(etag.clone(), lineage.clone());
        }
        let Some(replication) = &self.ctx.replication else {
            return;
        };
        let current = current.cloned();
        let key = PubKey {
            uri: self.core.uri().clone(),
            event: self.core.event().clone(),
            id: lineage,
        };
        replication.do_send(LocalPublication {
            key,
            publication: current,
        });
    }

    /// Sends `resp` now, or — in write-through mode — once the change is on disk (a failed
    /// flush answers 500 + Retry-After instead: nothing unflushed is acknowledged).
    fn answer_when_durable(&self, reply: Reply, resp: OutResponse) {
        let Some(durable) = self.ctx.persist.durable() else {
            return reply.send(resp);
        };
        let retry_after = self.ctx.retry_after;
        // Not tied to this actor: a PUBLISH that removed the last publication leaves the actor
        // idle, and its shard may stop it before the flush completes — the answer must still go.
        actix::spawn(async move {
            match durable.await {
                Ok(()) => reply.send(resp),
                Err(e) => {
                    tracing::error!(error = %e, "store flush failed; request answered 500");
                    let fail = reply
                        .response(500, "Server Internal Error")
                        .header("Retry-After", retry_after.to_string());
                    reply.send(fail);
                }
            }
        });
    }

    /// Removes what has expired; returns how many publications went.
    fn on_expiry_timer(&mut self) -> usize {
        let expired = self.core.expire(clock::now());
        if expired.is_empty() {
            return 0;
        }
        for p in &expired {
            self.ctx
                .persist
                .delete_publication(self.core.uri(), self.core.event(), &p.etag);
            self.lineage.remove(&p.etag);
        }
        tracing::debug!(presentity = %self.core.uri(), count = expired.len(), "publications expired");
        self.recompose();
        if !self.ctx.publish.force_delete {
            self.fan_out(None);
        }
        expired.len()
    }
}

impl Actor for PresentityActor {
    type Context = Context<Self>;

    /// With authorization in effect and a store, reads the rule document and the watcher
    /// rows on the blocking pool before handling any message (`wait` holds the mailbox), so
    /// that no store read ever runs on this thread.
    fn started(&mut self, ctx: &mut Context<Self>) {
        if !self.keeps_watcher_rows() || self.ctx.persist.store().is_none() {
            return;
        }
        let load = self
            .ctx
            .persist
            .load_authorization(self.core.uri().clone(), self.core.event().clone());
        ctx.wait(load.into_actor(self).map(|(rules, watchers), this, _| {
            if this.pkg.rules_doc(this.core.uri()).is_none() {
                this.install_rules(rules);
            }
            this.stored_watchers = Some(
                watchers
                    .into_iter()
                    .map(|r| (r.watcher.clone(), r))
                    .collect(),
            );
        }));
    }
}

impl Handler<Publish> for PresentityActor {
    type Result = ();

    fn handle(&mut self, msg: Publish, ctx: &mut Context<Self>) {
        self.handled += 1;
        let now = clock::now();
        let Publish { req, reply } = msg;
        let if_match = req.if_match.clone();
        let input = PublishInput {
            if_match: req.if_match,
            expires: req.expires,
            body: req.body,
            priority: req.priority,
            origin: self.ctx.node_id.clone(),
        };
        let max = self.ctx.publish.max_publications;
        let before: Vec<ETag> = self
            .core
            .publications()
            .iter()
            .map(|p| p.etag.clone())
            .collect();
        match self.core.publish(now, self.pkg.as_ref(), input, max) {
            Ok(out) => {
                self.ctx.events.emit(
                    "publish",
                    self.core.uri().as_str(),
                    self.core.event().as_str(),
                    || serde_json::json!({"etag": out.etag.as_str(), "expires": out.expires, "changed": out.changed}),
                );
                self.persist_changes(&before, &out.etag);
                self.replicate(if_match.as_ref(), &out.etag);
                let expires = out.expires.saturating_sub(self.ctx.publish.expires_offset);
                let resp = reply
                    .response(200, "OK")
                    .header("SIP-ETag", SipETag::new(&out.etag).to_string())
                    .header("Expires", expires.to_string())
                    .header("Contact", format!("<{}>", self.ctx.server_address));
                self.answer_when_durable(reply, resp);
                if out.changed {
                    self.recompose();
                    self.fan_out(req.sender.as_ref());
                }
            }
            Err(e) => {
                let mut resp = reply.response(e.status_code(), &e.reason_phrase());
                if let crate::presence::publication::PublishError::UnsupportedMediaType { accept } =
                    &e
                {
                    resp = resp.header("Accept", accept.clone());
                }
                if e.status_code() == 503 {
                    self.ctx
                        .metrics
                        .limit_hit(crate::metrics::Limit::Publications);
                    resp = resp.header("Retry-After", self.ctx.retry_after.to_string());
                }
                reply.send(resp);
            }
        }
        self.after_message(ctx);
    }
}

impl Handler<Watch> for PresentityActor {
    type Result = ();

    fn handle(&mut self, msg: Watch, ctx: &mut Context<Self>) {
        self.handled += 1;
        if self.watchers.len() >= self.ctx.max_subscriptions {
            self.ctx
                .metrics
                .limit_hit(crate::metrics::Limit::Subscriptions);
            let resp = msg.reply.response(403, "Too Many Subscriptions");
            msg.reply.send(resp);
            self.after_message(ctx);
            return;
        }
        let now = clock::now();
        let Watch { mut dialog, reply } = msg;
        let tag = dialog.id.local_tag.clone();
        if &dialog.event != self.core.event() {
            // A watcher-info subscription (`presence.winfo`), served by the presentity's own
            // actor since it owns the watcher list.
            let body = Some(self.watchers.winfo_full(now, self.core.uri()));
            let addr =
                SubscriptionActor::start_for(dialog, body, reply, ctx.address(), self.ctx.clone());
            self.watchers.add_winfo(tag, addr);
            self.after_message(ctx);
            return;
        }
        let decision = self.decide(&dialog.watcher);
        let (status, reason) = initial_status(&decision);
        dialog.status = status;
        dialog.reason = reason;
        let body = if decision.neutral_body {
            Some(self.neutral.clone())
        } else {
            self.fresh_composed();
            self.composed.clone()
        };
        let (uri, expires_at) = (dialog.watcher.clone(), dialog.expires_at);
        let addr =
            SubscriptionActor::start_for(dialog, body, reply, ctx.address(), self.ctx.clone());
        if expires_at > now {
            let w = Watcher {
                handle: SubHandle::live(addr),
                uri,
                status: decision.status,
                neutral: decision.neutral_body,
                since: now,
                expires_at,
                last_event: "subscribe",
            };
            self.watchers.add(tag, w, now, self.core.uri());
        }
        self.after_message(ctx);
    }
}

impl Handler<Unwatch> for PresentityActor {
    type Result = ();

    fn handle(&mut self, msg: Unwatch, ctx: &mut Context<Self>) {
        let uri = self.core.uri().clone();
        self.watchers
            .remove(&msg.tag, msg.reason.as_deref(), clock::now(), &uri);
        self.after_message(ctx);
    }
}

impl Handler<WatcherRefreshed> for PresentityActor {
    type Result = ();

    fn handle(&mut self, msg: WatcherRefreshed, _: &mut Context<Self>) {
        self.watchers.refreshed(&msg.tag, msg.expires_at);
    }
}

impl Handler<Stop> for PresentityActor {
    type Result = ();

    fn handle(&mut self, _: Stop, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

impl Handler<SnapshotPresentity> for PresentityActor {
    type Result = MessageResult<SnapshotPresentity>;

    fn handle(&mut self, msg: SnapshotPresentity, _: &mut Context<Self>) -> Self::Result {
        // `brief` (mailbox sampling): counts only, nothing cloned.
        let full = !msg.brief;
        if full {
            self.fresh_composed();
        }
        MessageResult(PresentityView {
            uri: self.core.uri().to_string(),
            event: self.core.event().to_string(),
            publications: if full {
                self.core
                    .publications()
                    .iter()
                    .map(PublicationView::from)
                    .collect()
            } else {
                Vec::new()
            },
            composed: if full {
                body_text(&self.composed)
            } else {
                None
            },
            watchers: self.watchers.len(),
            passivated_watchers: self.watchers.dormant_count(),
            handled: self.handled,
            mailbox_depth: 0, // the shard fills it in: only it knows what it sent
            started_at: self.started_at.0,
            last_activity: self.last_activity.0,
        })
    }
}

impl Handler<RefreshWatchers> for PresentityActor {
    type Result = usize;

    fn handle(&mut self, _: RefreshWatchers, ctx: &mut Context<Self>) -> usize {
        self.recompose();
        self.fresh_composed();
        let waker = self.waker();
        let n = self
            .watchers
            .refresh_all(&self.composed, &self.neutral, &waker);
        self.after_message(ctx);
        n
    }
}

impl Handler<Sweep> for PresentityActor {
    type Result = usize;

    fn handle(&mut self, _: Sweep, ctx: &mut Context<Self>) -> usize {
        let n = self.on_expiry_timer();
        self.after_message(ctx);
        n
    }
}

impl Handler<CountWatchers> for PresentityActor {
    type Result = usize;

    fn handle(&mut self, _: CountWatchers, _: &mut Context<Self>) -> usize {
        self.watchers.state_watchers()
    }
}

impl Handler<AddRestored> for PresentityActor {
    type Result = ();

    fn handle(&mut self, msg: AddRestored, ctx: &mut Context<Self>) {
        self.handled += 1;
        for p in msg.0 {
            self.core.insert_restored(p);
        }
        self.recompose();
        self.after_message(ctx);
    }
}

impl Handler<ApplyReplicated> for PresentityActor {
    type Result = ();

    fn handle(&mut self, msg: ApplyReplicated, ctx: &mut Context<Self>) {
        self.handled += 1;
        let (uri, event) = (self.core.uri().clone(), self.core.event().clone());
        let mut changed = false;
        if let Some(old) = &msg.old_etag {
            if self.core.remove_etag(old).is_some() {
                self.ctx.persist.delete_publication(&uri, &event, old);
                changed = true;
            }
            self.lineage.remove(old);
        }
        if let Some(p) = msg.publication {
            if p.expires_at > clock::now() {
                self.core.remove_etag(&p.etag);
                self.ctx.persist.put_publication(&uri, &event, &p);
                if msg.key.id.0 != p.etag {
                    self.lineage.insert(p.etag.clone(), msg.key.id.clone());
                }
                self.core.insert_restored(p);
                changed = true;
            }
        }
        if changed {
            // A peer's change notifies the local watchers at once (and is not replicated
            // again: only local PUBLISHes are).
            self.recompose();
            self.fan_out(None);
        }
        self.after_message(ctx);
    }
}
