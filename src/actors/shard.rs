//! [`Shard`]: ingress of the requests routed to it. Owns its server-transaction table, the
//! registry of its presentity actors and subscription dialogs, and answers everything that
//! needs no presentity state (OPTIONS, 405, 489, 423, 481, …), including the node-wide
//! admission limits on new SUBSCRIBEs (`max_pending_notifies`, `max_subscriptions_per_watcher`:
//! each registered dialog holds a [`WatcherSlot`] for its watcher until its entry goes).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

use super::context::{NodeCtx, WatcherSlot};
use super::messages::*;
use super::presentity::PresentityActor;
use super::router::tag_for_shard;
use super::subscription::SubscriptionActor;
use crate::clock::{self, Timestamp};
use crate::ids::{DialogId, EventKey, PresentityUri};
use crate::metrics::Limit;
use crate::presence::request::{publish_request, subscribe_request, Rejection};
use crate::presence::subscription::{DialogState, SubStatus};
use crate::sip::{Message, Method, Request, Response};
use crate::transaction::{ServerTransactions, TransactionKey, Verdict};
use crate::transport::{Proto, Source};

/// Methods we answer (Allow header).
pub const ALLOW: &str = "PUBLISH, SUBSCRIBE, OPTIONS, ACK";

type PresKey = (PresentityUri, EventKey);

struct PresEntry {
    addr: Addr<PresentityActor>,
    /// Messages this shard has sent to the actor (compared with its `handled` at Idle).
    sent: u64,
}

struct DialogEntry {
    /// Its actor, while one runs (a passivated dialog's presentity wakes a new one, which
    /// registers again).
    addr: Option<Addr<SubscriptionActor>>,
    /// The presentity actor that routes this dialog's messages — shared with the
    /// presentity's own entry, not a copy per dialog (the index is per dialog in memory
    /// even when the dialog is passivated).
    key: Arc<PresKey>,
    /// A watcher-info dialog (its event is the key's `.winfo` template).
    winfo: bool,
    /// Counts this dialog for its watcher (`max_subscriptions_per_watcher`) while it lives;
    /// also names the watcher.
    slot: WatcherSlot,
}

impl DialogEntry {
    /// The presentity actor that routes this dialog's messages.
    fn actor_key(&self) -> PresKey {
        (*self.key).clone()
    }

    /// Whether the dialog subscribes to `event`.
    fn event_is(&self, event: &EventKey) -> bool {
        match self.winfo {
            true => event.as_str().strip_suffix(".winfo") == Some(self.key.1.as_str()),
            false => *event == self.key.1,
        }
    }
}

mod control;
mod dialogs;

pub use control::ToPresentity;

/// One shard of the registry.
pub struct Shard {
    idx: usize,
    ctx: Arc<NodeCtx>,
    txns: ServerTransactions,
    presentities: HashMap<Arc<PresKey>, PresEntry>,
    dialogs: HashMap<String, DialogEntry>,
    /// (presentity, Call-ID) → tag, kept only with `delete_same_subs = 1`.
    same_subs: HashMap<(PresentityUri, String), String>,
    /// Our own address, handed to the presentity actors we create (set in `started`).
    me: Option<Addr<Shard>>,
    last_activity: Timestamp,
}

impl Shard {
    /// Shard number `idx`.
    pub fn new(idx: usize, ctx: Arc<NodeCtx>) -> Self {
        let txns = ServerTransactions::new(ctx.timers, ctx.max_transactions);
        Shard {
            idx,
            ctx,
            txns,
            presentities: HashMap::new(),
            dialogs: HashMap::new(),
            same_subs: HashMap::new(),
            me: None,
            last_activity: clock::now(),
        }
    }

    fn on_request(&mut self, req: Request, source: Source, ctx: &mut Context<Self>) {
        if req.method == Method::Ack {
            return; // ACK to a non-INVITE response: nothing to do (RFC 3261 §17.2.3)
        }
        let now = clock::now();
        let key = transaction_key(&req);
        match self.txns.on_request(now, &key, source.proto.reliable()) {
            Verdict::New => {}
            Verdict::Absorb => return,
            Verdict::Resend(bytes) => {
                self.ctx
                    .sender
                    .send_response(&response_dest(&req, source), bytes);
                return;
            }
            Verdict::Overloaded => {
                self.ctx.metrics.limit_hit(Limit::Transactions);
                let reply = self.reply(key, req, source, ctx);
                let resp = reply
                    .response(503, "Service Unavailable")
                    .header("Retry-After", self.ctx.retry_after.to_string());
                self.ctx
                    .sender
                    .send_response(&reply.dest, resp.encode(self.ctx.sender.server_header()));
                return;
            }
        }
        let _span =
            tracing::debug_span!("sip", method = %req.method.as_str(), call_id = %req.call_id)
                .entered();
        let reply = self.reply(key, req, source, ctx);
        match reply.request().method {
            Method::Publish => self.on_publish(reply),
            Method::Subscribe => self.on_subscribe(reply, source),
            Method::Options => {
                let resp = reply
                    .response(200, "OK")
                    .header("Allow", ALLOW)
                    .header("Allow-Events", self.ctx.packages.event_list().join(", "))
                    .header("Accept", "application/pidf+xml");
                reply.send(resp);
            }
            _ => {
                let resp = reply
                    .response(405, "Method Not Allowed")
                    .header("Allow", ALLOW);
                reply.send(resp);
            }
        }
    }

    fn reply(
        &self,
        key: TransactionKey,
        req: Request,
        source: Source,
        ctx: &Context<Self>,
    ) -> Reply {
        Reply {
            key,
            dest: response_dest(&req, source),
            req: Arc::new(req),
            shard: ctx.address(),
            sender: self.ctx.sender.clone(),
            metrics: self.ctx.metrics.clone(),
        }
    }

    fn on_publish(&mut self, reply: Reply) {
        let (req, _pkg) =
            match publish_request(reply.request(), &self.ctx.packages, &self.ctx.ingress) {
                Ok(x) => x,
                Err(rej) => {
                    if rej.status == 413 {
                        self.ctx.metrics.limit_hit(Limit::BodySize);
                    }
                    return reply.reject(&rej);
                }
            };
        let key = (req.presentity.clone(), req.event.clone());
        if let Err((m, status)) = self.send_to_presentity(key, Publish { req, reply }) {
            self.refuse(m.reply, status);
        }
    }

    fn on_subscribe(&mut self, reply: Reply, source: Source) {
        let (sub, pkg) =
            match subscribe_request(reply.request(), &self.ctx.packages, &self.ctx.ingress) {
                Ok(x) => x,
                Err(rej) => return reply.reject(&rej),
            };
        if let Err((status, reason)) = pkg.check_subscribe(&sub.watcher, &sub.presentity) {
            return reply.reject(&rejection(status, &reason));
        }
        let now = clock::now();
        if let Some(tag) = sub.local_tag.as_deref() {
            let Some(key) = self.dialogs.get(tag).map(DialogEntry::actor_key) else {
                return reply.reject(&rejection(481, "Call/Transaction Does Not Exist"));
            };
            let cseq = reply.request().cseq.seq;
            let msg = ToDialog {
                tag: tag.to_string(),
                msg: DialogMsg::Refresh(Refresh {
                    cseq,
                    expires: sub.expires,
                    reply,
                }),
            };
            // Through the presentity actor, which wakes a passivated dialog.
            if let Err((m, status)) = self.send_to_presentity(key, msg) {
                if let DialogMsg::Refresh(r) = m.msg {
                    self.refuse(r.reply, status);
                }
            }
            return;
        }
        if sub.event.as_str().ends_with(".winfo") && sub.watcher != sub.presentity {
            // RFC 3857 §5.2: watcher information is private to the presentity.
            return reply.reject(&rejection(403, "Forbidden"));
        }
        // Node-wide limits, before any presentity is involved (a replacement adds nothing).
        let same = (sub.presentity.clone(), reply.request().call_id.clone());
        let replaces = self.ctx.delete_same_subs && self.same_subs.contains_key(&same);
        if let Some(rej) = self.ctx.admit_subscription(&sub.watcher, replaces) {
            return reply.reject(&rej);
        }
        let req = reply.request();
        let local_tag = tag_for_shard(self.idx);
        let dialog = DialogState {
            id: DialogId {
                call_id: req.call_id.clone(),
                remote_tag: req.from.tag.clone().unwrap_or_default(),
                local_tag,
            },
            presentity: sub.presentity.clone(),
            event: sub.event.clone(),
            event_id: sub.event_id,
            watcher: sub.watcher,
            to_uri: req.to.uri.clone(),
            from_uri: req.from.uri.clone(),
            contact: req
                .contact
                .as_ref()
                .map(|c| c.uri.clone())
                .unwrap_or_default(),
            route_set: req.record_route.clone(),
            local_contact: self.ctx.server_address.clone(),
            remote_cseq: req.cseq.seq,
            local_cseq: 0,
            expires_at: now.plus_secs(sub.expires as u64),
            status: SubStatus::Active,
            reason: None,
            version: 0,
            user_agent: req.user_agent().map(str::to_string),
            transport: source.proto.as_str().to_string(),
            source: source.addr.to_string(),
        };
        if self.ctx.delete_same_subs {
            let same = (sub.presentity.clone(), dialog.id.call_id.clone());
            if let Some((tag, old)) = self
                .same_subs
                .get(&same)
                .and_then(|t| self.dialogs.get(t).map(|d| (t.clone(), d.actor_key())))
            {
                let msg = ToDialog {
                    tag,
                    msg: DialogMsg::Replaced,
                };
                // Bounded by the dialogs that exist: never refused.
                if let Some(addr) = self.presentity_for_restore(old) {
                    addr.do_send(msg);
                }
            }
        }
        let key = actor_key(sub.presentity, &sub.event);
        if let Err((m, status)) = self.send_to_presentity(key, Watch { dialog, reply }) {
            self.refuse(m.reply, status);
        }
    }

    /// The presentity actor of `key`, created if needed; counts one message sent to it (for
    /// internal messages, bounded by state, that must not be refused).
    fn presentity_for_restore(&mut self, key: PresKey) -> Option<Addr<PresentityActor>> {
        let entry = self.presentity_entry(&key, false).ok()?;
        entry.sent += 1;
        Some(entry.addr.clone())
    }

    /// The entry of the presentity actor of `key`, created if needed. A hit clones nothing.
    /// `Err(503)` before this shard has started, or — for a request (`admit`) — when the node
    /// holds `max_presentities` already.
    fn presentity_entry(&mut self, key: &PresKey, admit: bool) -> Result<&mut PresEntry, u16> {
        if !self.presentities.contains_key(key) {
            let me = self.me.clone().ok_or(503u16)?;
            let count = &self.ctx.presentities;
            if admit && count.load(Ordering::Relaxed) >= self.ctx.max_presentities {
                self.ctx
                    .metrics
                    .limit_hit(crate::metrics::Limit::Presentities);
                return Err(503);
            }
            count.fetch_add(1, Ordering::Relaxed);
            let addr =
                PresentityActor::start_for(key.0.clone(), key.1.clone(), self.ctx.clone(), me);
            self.presentities
                .insert(Arc::new(key.clone()), PresEntry { addr, sent: 0 });
        }
        self.presentities.get_mut(key).ok_or(500)
    }

    /// Forgets the presentity actor of `key` (stopped or dead).
    fn forget_presentity(&mut self, key: &PresKey) -> Option<PresEntry> {
        let entry = self.presentities.remove(key)?;
        self.ctx.presentities.fetch_sub(1, Ordering::Relaxed);
        Some(entry)
    }

    /// Sends `msg` to the presentity actor of `key`, creating it if needed; gives it back
    /// with the status to answer (503 when the mailbox is full or `max_presentities` is
    /// reached, 500 when the actor died).
    fn send_to_presentity<M>(&mut self, key: PresKey, msg: M) -> Result<(), (M, u16)>
    where
        M: actix::Message<Result = ()> + Send + 'static,
        PresentityActor: Handler<M>,
    {
        let entry = match self.presentity_entry(&key, true) {
            Ok(e) => e,
            Err(status) => return Err((msg, status)),
        };
        match entry.addr.try_send(msg) {
            Ok(()) => {
                entry.sent += 1;
                Ok(())
            }
            Err(SendError::Full(m)) => Err((m, 503)),
            Err(SendError::Closed(m)) => {
                // The actor died (a bug): forget it; the client's retransmission or next
                // request creates a fresh one.
                tracing::error!(presentity = %key.0, "presentity actor gone; request refused");
                self.forget_presentity(&key);
                Err((m, 500))
            }
        }
    }

    /// Overload: a request that waited longer than `max_queue_delay_ms` is answered 503 +
    /// Retry-After at once (an ACK is dropped), without touching any state.
    fn shed(&self, req: &Request, source: Source) {
        self.ctx
            .metrics
            .limit_hit(crate::metrics::Limit::QueueDelay);
        if req.method == Method::Ack {
            return;
        }
        let dest = response_dest(req, source);
        let resp = crate::sip::OutResponse::to(req, 503, "Service Unavailable", dest.addr)
            .header("Retry-After", self.ctx.retry_after.to_string());
        self.ctx.metrics.sip_request(req.method.as_str(), 503);
        self.ctx
            .sender
            .send_response(&dest, resp.encode(self.ctx.sender.server_header()));
    }

    fn refuse(&self, reply: Reply, status: u16) {
        if status == 503 {
            self.ctx.metrics.limit_hit(Limit::Mailbox);
        }
        let reason = match status {
            481 => "Call/Transaction Does Not Exist",
            503 => "Service Unavailable",
            _ => "Server Internal Error",
        };
        let mut rej = rejection(status, reason);
        if status != 481 {
            rej.headers
                .push(("Retry-After", self.ctx.retry_after.to_string()));
        }
        reply.reject(&rej);
    }

    fn on_response(&mut self, resp: Response) {
        if resp.cseq.method != Method::Notify {
            tracing::debug!(
                status = resp.status,
                "dropped a response to a request we did not send"
            );
            return;
        }
        let Some(addr) = resp
            .from
            .tag
            .as_deref()
            .and_then(|t| self.dialogs.get(t))
            .and_then(|d| d.addr.as_ref())
        else {
            tracing::debug!(call_id = %resp.call_id, "NOTIFY response for an unknown dialog");
            return;
        };
        let _ = addr.try_send(NotifyResponse {
            cseq: resp.cseq.seq,
            status: resp.status,
            reason: resp.reason,
            branch: resp.vias.first().and_then(|v| v.branch.clone()),
            call_id: resp.call_id,
            remote_tag: resp.to.tag,
        });
    }
}

/// The actor that serves a subscription to `event`: a template package (`presence.winfo`,
/// RFC 3857) is served by the actor of its base package, which owns the watcher list.
fn actor_key(presentity: PresentityUri, event: &EventKey) -> PresKey {
    match event.as_str().strip_suffix(".winfo") {
        Some(base) => (presentity, EventKey::new(base)),
        None => (presentity, event.clone()),
    }
}

fn rejection(status: u16, reason: &str) -> Rejection {
    Rejection {
        status,
        reason: reason.to_string(),
        headers: Vec::new(),
    }
}

/// The server-transaction key of a request (RFC 3261 §17.2.3).
pub fn transaction_key(req: &Request) -> TransactionKey {
    let method = req.method.as_str();
    let top = req.vias.first();
    match top.and_then(|v| v.branch.as_deref()) {
        Some(b) if b.starts_with("z9hG4bK") => {
            let mut v = String::with_capacity(64);
            if let Some(top) = top {
                v.push_str(&top.host);
                v.push(':');
                let _ = write!(v, "{}", top.port.unwrap_or(5060)); // into a String: cannot fail
            }
            TransactionKey::rfc3261(b, &v, method)
        }
        _ => TransactionKey::rfc2543(
            &req.uri,
            req.to.tag.as_deref().unwrap_or(""),
            req.from.tag.as_deref().unwrap_or(""),
            &req.call_id,
            req.cseq.seq,
            top.map(|v| v.raw.as_str()).unwrap_or(""),
            method,
        ),
    }
}

/// Where a response goes (RFC 3261 §18.2.2 with RFC 3581): over TCP back on the connection;
/// over UDP to the source IP and, unless the top Via asks for `rport`, its sent-by port.
pub fn response_dest(req: &Request, source: Source) -> Source {
    if source.proto != Proto::Udp {
        return source;
    }
    let Some(top) = req.vias.first() else {
        return source;
    };
    if top.rport.is_some() {
        return source;
    }
    let mut dest = source;
    dest.addr.set_port(top.port.unwrap_or(5060));
    dest
}

impl Actor for Shard {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(self.ctx.mailbox_size);
        self.me = Some(ctx.address());
        ctx.run_interval(Duration::from_secs(1), |this, _| {
            this.txns.on_timer(clock::now());
        });
    }
}

impl Handler<ToShard> for Shard {
    type Result = ();

    fn handle(&mut self, msg: ToShard, ctx: &mut Context<Self>) {
        self.last_activity = clock::now();
        let source = msg.0.source;
        match msg.0.msg {
            Message::Request(req) if msg.0.received.elapsed() > self.ctx.max_queue_delay => {
                self.shed(&req, source)
            }
            Message::Request(req) => self.on_request(req, source, ctx),
            Message::Response(resp) => self.on_response(resp),
        }
    }
}

impl Handler<Record> for Shard {
    type Result = ();

    fn handle(&mut self, msg: Record, _: &mut Context<Self>) {
        self.txns
            .on_response(clock::now(), &msg.key, msg.status, msg.bytes);
    }
}

impl Handler<PresentityIdle> for Shard {
    type Result = ();

    fn handle(&mut self, msg: PresentityIdle, _: &mut Context<Self>) {
        let Some(entry) = self.presentities.get(&msg.key) else {
            return;
        };
        if entry.addr != msg.addr || entry.sent != msg.handled {
            // Another actor's late report, or something is on its way to this one (it will
            // report again when idle).
            return;
        }
        if let Some(entry) = self.forget_presentity(&msg.key) {
            entry.addr.do_send(Stop);
        }
    }
}

impl Handler<RestorePresentity> for Shard {
    type Result = ();

    fn handle(&mut self, msg: RestorePresentity, _: &mut Context<Self>) {
        if let Some(addr) = self.presentity_for_restore((msg.uri, msg.event)) {
            // Restore is bounded by what the store holds and must not be refused.
            addr.do_send(AddRestored(msg.pubs));
        }
    }
}

impl Handler<RestoreDialog> for Shard {
    type Result = ();

    fn handle(&mut self, msg: RestoreDialog, _: &mut Context<Self>) {
        let key = actor_key(msg.0.presentity.clone(), &msg.0.event);
        if self.dialogs.contains_key(&msg.0.id.local_tag) {
            return; // already served here
        }
        if let Some(addr) = self.presentity_for_restore(key) {
            addr.do_send(RestoreWatch(msg.0, msg.1));
        }
    }
}

impl Handler<ApplyReplicated> for Shard {
    type Result = ();

    fn handle(&mut self, msg: ApplyReplicated, _: &mut Context<Self>) {
        let key = (msg.key.uri.clone(), msg.key.event.clone());
        if let Some(addr) = self.presentity_for_restore(key) {
            // Replication is bounded by the peers' state and must not be refused.
            addr.do_send(msg);
        }
    }
}

impl Handler<Disown> for Shard {
    type Result = ();

    fn handle(&mut self, msg: Disown, _: &mut Context<Self>) {
        let Some(key) = self.dialogs.get(&msg.tag).map(DialogEntry::actor_key) else {
            return;
        };
        let m = ToDialog {
            tag: msg.tag.clone(),
            msg: DialogMsg::Disown(msg),
        };
        // Bounded by the dialogs that exist: never refused.
        if let Some(addr) = self.presentity_for_restore(key) {
            addr.do_send(m);
        }
    }
}
