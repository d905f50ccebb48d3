//! [`PresentityActor`]: one per (presentity URI, event). Owns the publications
//! ([`Presentity`]), the composed document, and its local subscriptions; fans every change
//! out to them.

use std::collections::HashMap;
use std::sync::Arc;

use actix::prelude::*;

use super::context::NodeCtx;
use super::inspect::{
    body_text, CountWatchers, PresentityView, PublicationView, RefreshWatchers, SnapshotPresentity,
    Sweep,
};
use super::messages::*;
use super::shard::Shard;
use super::subscription::SubscriptionActor;
use crate::clock::{self, Timestamp};
use crate::ids::{ETag, EventKey, PresentityUri};
use crate::presence::package::{Body, EventPackage};
use crate::presence::presentity::Presentity;
use crate::presence::publication::PublishInput;
use crate::sip::headers::SipETag;
use crate::sip::OutResponse;

struct Watcher {
    addr: Addr<SubscriptionActor>,
    uri: PresentityUri,
}

/// The actor of one presentity and event package.
pub struct PresentityActor {
    core: Presentity,
    pkg: Arc<dyn EventPackage>,
    ctx: Arc<NodeCtx>,
    /// The composed document, recomputed once per change.
    composed: Option<Body>,
    watchers: HashMap<String, Watcher>,
    /// Shard messages handled (see the Idle protocol in [`crate::actors`]).
    handled: u64,
    timer: Option<(Timestamp, SpawnHandle)>,
    shard: Addr<Shard>,
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
            PresentityActor {
                core: Presentity::new(uri, event),
                pkg,
                ctx,
                composed: None,
                watchers: HashMap::new(),
                handled: 0,
                timer: None,
                shard,
                last_activity: clock::now(),
            }
        })
    }

    fn recompose(&mut self) {
        self.composed = self
            .core
            .compose(self.pkg.as_ref(), &self.ctx.publish.order);
    }

    /// Sends the composed document to every watcher except `skip`.
    fn fan_out(&self, skip: Option<&PresentityUri>) {
        let msg = StateChanged {
            body: self.composed.clone(),
        };
        for w in self.watchers.values() {
            if skip == Some(&w.uri) {
                continue;
            }
            w.addr.do_send(msg.clone());
        }
    }

    /// Re-arms the expiry timer and reports idleness after every message.
    fn after_message(&mut self, ctx: &mut Context<Self>) {
        self.last_activity = clock::now();
        let next = self.core.next_expiry();
        if self.timer.as_ref().map(|t| t.0) != next {
            if let Some((_, h)) = self.timer.take() {
                ctx.cancel_future(h);
            }
            if let Some(at) = next {
                let delay = clock::now().until(at);
                let h = ctx.run_later(delay, |this, ctx| {
                    this.timer = None;
                    let _ = this.on_expiry_timer();
                    this.after_message(ctx);
                });
                self.timer = Some((at, h));
            }
        }
        if self.core.is_empty() && self.watchers.is_empty() {
            self.shard.do_send(PresentityIdle {
                key: (self.core.uri().clone(), self.core.event().clone()),
                handled: self.handled,
            });
        }
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

    /// Sends `resp` now, or — in write-through mode — once the change is on disk (a failed
    /// flush answers 500 + Retry-After instead: nothing unflushed is acknowledged).
    fn answer_when_durable(&self, reply: Reply, resp: OutResponse, ctx: &mut Context<Self>) {
        let Some(durable) = self.ctx.persist.durable() else {
            return reply.send(resp);
        };
        let retry_after = self.ctx.retry_after;
        ctx.spawn(durable.into_actor(self).map(move |res, _, _| match res {
            Ok(()) => reply.send(resp),
            Err(e) => {
                tracing::error!(error = %e, "store flush failed; request answered 500");
                let fail = reply
                    .response(500, "Server Internal Error")
                    .header("Retry-After", retry_after.to_string());
                reply.send(fail);
            }
        }));
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
}

impl Handler<Publish> for PresentityActor {
    type Result = ();

    fn handle(&mut self, msg: Publish, ctx: &mut Context<Self>) {
        self.handled += 1;
        let now = clock::now();
        let Publish { req, reply } = msg;
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
                self.persist_changes(&before, &out.etag);
                let expires = out.expires.saturating_sub(self.ctx.publish.expires_offset);
                let resp = reply
                    .response(200, "OK")
                    .header("SIP-ETag", SipETag::new(&out.etag).to_string())
                    .header("Expires", expires.to_string())
                    .header("Contact", format!("<{}>", self.ctx.server_address));
                self.answer_when_durable(reply, resp, ctx);
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
            let resp = msg.reply.response(403, "Too Many Subscriptions");
            msg.reply.send(resp);
            self.after_message(ctx);
            return;
        }
        let tag = msg.dialog.id.local_tag.clone();
        let uri = msg.dialog.watcher.clone();
        let addr = SubscriptionActor::start_for(
            msg.dialog,
            self.composed.clone(),
            msg.reply,
            ctx.address(),
            self.ctx.clone(),
        );
        self.watchers.insert(tag, Watcher { addr, uri });
        self.after_message(ctx);
    }
}

impl Handler<Unwatch> for PresentityActor {
    type Result = ();

    fn handle(&mut self, msg: Unwatch, ctx: &mut Context<Self>) {
        self.watchers.remove(&msg.tag);
        self.after_message(ctx);
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

    fn handle(&mut self, _: SnapshotPresentity, _: &mut Context<Self>) -> Self::Result {
        MessageResult(PresentityView {
            uri: self.core.uri().to_string(),
            event: self.core.event().to_string(),
            publications: self
                .core
                .publications()
                .iter()
                .map(PublicationView::from)
                .collect(),
            composed: body_text(&self.composed),
            watchers: self.watchers.len(),
            handled: self.handled,
            last_activity: self.last_activity.0,
        })
    }
}

impl Handler<RefreshWatchers> for PresentityActor {
    type Result = usize;

    fn handle(&mut self, _: RefreshWatchers, _: &mut Context<Self>) -> usize {
        self.recompose();
        self.fan_out(None);
        self.watchers.len()
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
        self.watchers.len()
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

impl Handler<RestoreWatch> for PresentityActor {
    type Result = ();

    fn handle(&mut self, msg: RestoreWatch, ctx: &mut Context<Self>) {
        self.handled += 1;
        let tag = msg.0.id.local_tag.clone();
        let uri = msg.0.watcher.clone();
        let addr = SubscriptionActor::start_restored(
            msg.0,
            self.composed.clone(),
            self.shard.clone(),
            ctx.address(),
            self.ctx.clone(),
        );
        self.watchers.insert(tag, Watcher { addr, uri });
        self.after_message(ctx);
    }
}
