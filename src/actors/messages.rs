//! Every message between actors, in one place: the inter-actor protocol.

use std::sync::Arc;

use actix::prelude::*;

use super::shard::Shard;
use super::subscription::SubscriptionActor;
use crate::ids::{EventKey, PresentityUri};
use crate::presence::package::Body;
use crate::presence::request::{PublishRequest, Rejection};
use crate::presence::subscription::DialogState;
use crate::sip::{OutResponse, Request};
use crate::transaction::TransactionKey;
use crate::transport::{Inbound, SipSender, Source};

/// The way back for one server transaction: whoever holds it answers the request once.
pub struct Reply {
    pub(crate) key: TransactionKey,
    pub(crate) dest: Source,
    pub(crate) req: Arc<Request>,
    pub(crate) shard: Addr<Shard>,
    pub(crate) sender: SipSender,
    pub(crate) metrics: Arc<crate::metrics::Metrics>,
}

impl Reply {
    /// The request being answered.
    pub fn request(&self) -> &Request {
        &self.req
    }

    /// A response skeleton for the request (Via, From, To, Call-ID, CSeq copied).
    pub fn response(&self, status: u16, reason: &str) -> OutResponse {
        OutResponse::to(&self.req, status, reason, self.dest.addr)
    }

    /// Sends `resp` now, and has the shard record it so that a retransmitted request gets
    /// the same response again.
    pub fn send(self, resp: OutResponse) {
        let bytes = resp.encode(self.sender.server_header());
        self.metrics
            .sip_request(self.req.method.as_str(), resp.status());
        // Recorded before it leaves: a retransmission provoked by this very response then
        // finds it in the shard's table (the shard's mailbox is FIFO).
        self.shard.do_send(Record {
            key: self.key,
            status: resp.status(),
            bytes: bytes.clone(),
        });
        self.sender.send_response(&self.dest, bytes);
    }

    /// Answers with a rejection.
    pub fn reject(self, rej: &Rejection) {
        let mut resp = self.response(rej.status, &rej.reason);
        for (n, v) in &rej.headers {
            resp = resp.header(n, v.clone());
        }
        self.send(resp);
    }
}

/// A parsed message for a shard (from the router).
#[derive(Message)]
#[rtype(result = "()")]
pub struct ToShard(pub Inbound);

/// A response that was sent, to record in the transaction table.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Record {
    pub(crate) key: TransactionKey,
    pub(crate) status: u16,
    pub(crate) bytes: bytes::Bytes,
}

/// A new subscription actor is running under `tag`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct RegisterDialog {
    /// Our tag.
    pub tag: String,
    /// Its address (`None`: restored straight into the passivated form; the presentity
    /// actor wakes it).
    pub addr: Option<Addr<SubscriptionActor>>,
    /// Presentity and Call-ID (for `delete_same_subs`).
    pub same_key: (PresentityUri, String),
    /// Event package (for listing by filter).
    pub event: EventKey,
    /// Watcher URI (for listing by filter).
    pub watcher: PresentityUri,
}

/// A subscription is over: forget it and stop it.
#[derive(Message)]
#[rtype(result = "()")]
pub struct DialogGone {
    /// Our tag.
    pub tag: String,
    /// Presentity and Call-ID (for `delete_same_subs`).
    pub same_key: (PresentityUri, String),
}

/// A dialog's actor was passivated: the shard forgets its address (if it is still `addr`),
/// so nothing keeps the stopped actor's mailbox — and through its waker the actor's task —
/// allocated while the dialog sleeps.
#[derive(Message)]
#[rtype(result = "()")]
pub struct DialogAsleep {
    /// Our tag.
    pub tag: String,
    /// The actor stopped.
    pub addr: Addr<SubscriptionActor>,
}

/// This node lost the cluster's majority: every live dialog waits at the settlement gate
/// before its next NOTIFY (sent to each shard, which tells its live dialog actors).
#[derive(Message, Clone, Copy)]
#[rtype(result = "()")]
pub struct Fence;

/// A new subscription with the same presentity and Call-ID replaces this one
/// (`delete_same_subs = 1`): end without a NOTIFY.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Replaced;

/// A presentity actor holds nothing; it may be stopped if the shard sent nothing since.
#[derive(Message)]
#[rtype(result = "()")]
pub struct PresentityIdle {
    /// Its key.
    pub key: (PresentityUri, EventKey),
    /// Which actor: a late report from an actor already stopped must not stop the one that
    /// replaced it under the same key.
    pub addr: Addr<super::presentity::PresentityActor>,
    /// How many shard messages it has handled.
    pub handled: u64,
}

/// A PUBLISH for a presentity actor.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Publish {
    /// The checked request.
    pub req: PublishRequest,
    /// Where the answer goes.
    pub reply: Reply,
}

/// A new subscription to a presentity actor: it creates the subscription actor.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Watch {
    /// The dialog.
    pub dialog: DialogState,
    /// Where the 200 goes.
    pub reply: Reply,
}

/// A subscription left its presentity.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Unwatch {
    /// Our tag of the dialog.
    pub tag: String,
    /// Why it ended (`timeout`, `rejected`, `notify-481`, …), for watcher info.
    pub reason: Option<String>,
}

/// A subscription was refreshed: its new expiry, for watcher info.
#[derive(Message)]
#[rtype(result = "()")]
pub struct WatcherRefreshed {
    /// Our tag of the dialog.
    pub tag: String,
    /// New absolute expiry.
    pub expires_at: crate::clock::Timestamp,
}

/// The watcher's authorization changed (rule change + `presence.updateWatchers`).
#[derive(Message)]
#[rtype(result = "()")]
pub struct SetStatus {
    /// New status.
    pub status: crate::presence::subscription::SubStatus,
    /// Reason when terminated (`rejected`).
    pub reason: Option<String>,
    /// The document this watcher may now see (the composed one, or the polite-block
    /// neutral one).
    pub body: Option<Body>,
}

/// Stop now (sent by the shard after it forgot the actor).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Stop;

/// An in-dialog SUBSCRIBE.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Refresh {
    /// CSeq number.
    pub cseq: u32,
    /// Decided expiry in seconds.
    pub expires: u32,
    /// Where the answer goes.
    pub reply: Reply,
}

/// The presentity's composed document changed.
#[derive(Message, Clone)]
#[rtype(result = "()")]
pub struct StateChanged {
    /// The new document (`None`: no state).
    pub body: Option<Body>,
    /// A partial document describing only this change (watcher info), if the package has
    /// one.
    pub partial: Option<Body>,
}

/// A response to one of our NOTIFYs.
#[derive(Message)]
#[rtype(result = "()")]
pub struct NotifyResponse {
    /// CSeq number it answers.
    pub cseq: u32,
    /// Status code.
    pub status: u16,
    /// Reason phrase.
    pub reason: String,
    /// Call-ID of the response.
    pub call_id: String,
    /// To-tag of the response (the watcher's tag).
    pub remote_tag: Option<String>,
    /// Branch of the response's top Via (matched against the NOTIFY's).
    pub branch: Option<String>,
}

/// Publications read from the store at start, for one presentity (to its shard).
#[derive(Message)]
#[rtype(result = "()")]
pub struct RestorePresentity {
    /// Presentity.
    pub uri: PresentityUri,
    /// Event package.
    pub event: EventKey,
    /// Its live publications.
    pub pubs: Vec<crate::presence::publication::Publication>,
}

/// A subscription read from the store at start, or taken over from a node that is gone
/// (`takeover`: notify the watcher at once), for its presentity's shard.
#[derive(Message)]
#[rtype(result = "()")]
pub struct RestoreDialog(pub DialogState, pub bool);

/// Another node owns this dialog now: stop notifying it, without a NOTIFY and without
/// replicating a removal.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Disown {
    /// Our tag of the dialog.
    pub tag: String,
}

/// Restored publications (shard → presentity actor).
#[derive(Message)]
#[rtype(result = "()")]
pub struct AddRestored(pub Vec<crate::presence::publication::Publication>);

/// A restored (or taken-over, second field) subscription (shard → presentity actor, which
/// starts its actor).
#[derive(Message)]
#[rtype(result = "()")]
pub struct RestoreWatch(pub DialogState, pub bool);

/// A publication change from a peer (replication → shard → presentity actor): remove the
/// publication `old_etag` named, install `publication`. Never replicated again.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ApplyReplicated {
    /// Presentity, event and lineage.
    pub key: crate::cluster::merge::PubKey,
    /// The ETag the lineage had here before, if any.
    pub old_etag: Option<crate::ids::ETag>,
    /// The winning state (`None`: removed).
    pub publication: Option<crate::presence::publication::Publication>,
}

/// A message for one dialog, routed by the shard through the dialog's presentity actor,
/// which wakes a passivated dialog first. All messages that change a dialog's state come
/// this way (or from the presentity itself), so the presentity knows whether the dialog's
/// actor has pending input when it asks to be passivated.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ToDialog {
    /// Our tag of the dialog.
    pub tag: String,
    /// The message.
    pub msg: DialogMsg,
}

/// What [`ToDialog`] carries.
pub enum DialogMsg {
    /// An in-dialog SUBSCRIBE (answered 481 if the dialog is unknown).
    Refresh(Refresh),
    /// Replaced by a new subscription with the same Call-ID (`delete_same_subs`).
    Replaced,
    /// Another node owns the dialog now.
    Disown(Disown),
}

/// A quiet subscription actor asks its presentity to passivate it (keep `form`, stop the
/// actor). Accepted only if the presentity has sent that actor exactly `handled` messages:
/// otherwise something is on its way and the actor stays.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Passivate {
    /// Our tag of the dialog.
    pub tag: String,
    /// The asking actor.
    pub addr: Addr<SubscriptionActor>,
    /// Presentity-routed messages it has handled.
    pub handled: u64,
    /// Its compact form.
    pub(crate) form: super::dormant::DormantSub,
}
