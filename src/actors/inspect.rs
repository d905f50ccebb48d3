//! Read-only snapshots of live actors for the debug/admin endpoint. Snapshots are asked for
//! by message (never through shared locks) with a timeout: an actor that does not answer in
//! time shows as busy instead of hanging the caller. The snapshots of one listing are asked
//! for all at once, so a listing waits at most about one [`SNAPSHOT_TIMEOUT`] however many
//! of its actors are busy.
//!
//! Listings are paged at the source ([`paging`]): a shard answers the keys of one page
//! ([`ListPresentities`], [`ListSubscriptions`]), then snapshots only the keys the caller
//! kept ([`SnapshotPresentities`], [`SnapshotSubscriptions`]).

use std::time::Duration;

use actix::prelude::*;
use serde::Serialize;

use crate::clock::Timestamp;
use crate::ids::{EventKey, PresentityUri};
use crate::presence::package::Body;
use crate::presence::publication::Publication;
use crate::presence::subscription::{DialogState, NotifyReply};

mod paging;

pub(crate) use paging::{key_page, merge_keys, PresKeyRef};
pub use paging::{KeyPage, ListPage, PageRequest};

/// How long one actor may take to answer a snapshot request.
pub const SNAPSHOT_TIMEOUT: Duration = Duration::from_millis(500);

/// One publication as the endpoint shows it.
#[derive(Clone, Debug, Serialize)]
pub struct PublicationView {
    /// Entity tag.
    pub etag: String,
    /// Absolute expiry (ms since the epoch).
    pub expires_at: u64,
    /// When its document was set (ms since the epoch).
    pub received_at: u64,
    /// Composition priority.
    pub priority: i32,
    /// The node that accepted it.
    pub origin: String,
    /// Media type of the body.
    pub content_type: String,
    /// The document (lossy UTF-8).
    pub body: String,
}

impl From<&Publication> for PublicationView {
    fn from(p: &Publication) -> Self {
        PublicationView {
            etag: p.etag.to_string(),
            expires_at: p.expires_at.0,
            received_at: p.received_at.0,
            priority: p.priority,
            origin: p.origin.to_string(),
            content_type: p.body.content_type.clone(),
            body: String::from_utf8_lossy(&p.body.bytes).into_owned(),
        }
    }
}

/// One presentity actor.
#[derive(Clone, Debug, Serialize)]
pub struct PresentityView {
    /// Presentity URI.
    pub uri: String,
    /// Event package.
    pub event: String,
    /// Live publications.
    pub publications: Vec<PublicationView>,
    /// The composed document sent to watchers.
    pub composed: Option<String>,
    /// Number of local subscriptions.
    pub watchers: usize,
    /// Of those, passivated (kept in compact form, no actor running).
    pub passivated_watchers: usize,
    /// Messages from its shard handled so far.
    pub handled: u64,
    /// Messages its shard sent that it has not handled yet (the shard's count of messages
    /// sent minus `handled`, clamped at 0; filled in by the shard, 0 from the actor itself).
    pub mailbox_depth: u64,
    /// Last message handled (ms since the epoch).
    pub last_activity: u64,
    /// When this actor started (ms since the epoch): its age.
    pub started_at: u64,
}

/// One subscription actor: every `$subs(...)` attribute of Kamailio, plus the last NOTIFY
/// reply (`$notify_reply`) and the owning node.
#[derive(Clone, Debug, Serialize)]
pub struct SubscriptionView {
    /// Our tag: the id under `/debug/subscriptions/{id}`.
    pub id: String,
    /// `$subs(uri)`: the presentity URI.
    pub uri: String,
    /// `$subs(pres_uri)`: alias of `uri`.
    pub pres_uri: String,
    /// User part of the SUBSCRIBE's To URI.
    pub to_user: Option<String>,
    /// Host part of the SUBSCRIBE's To URI.
    pub to_domain: Option<String>,
    /// User part of the SUBSCRIBE's From URI.
    pub from_user: Option<String>,
    /// Host part of the SUBSCRIBE's From URI.
    pub from_domain: Option<String>,
    /// User part of the watcher URI.
    pub watcher_username: Option<String>,
    /// Host part of the watcher URI.
    pub watcher_domain: String,
    /// Event package.
    pub event: String,
    /// Event `id` parameter.
    pub event_id: Option<String>,
    /// Our tag (To-tag of the SUBSCRIBE's 2xx).
    pub to_tag: String,
    /// The watcher's tag.
    pub from_tag: String,
    /// Call-ID.
    pub callid: String,
    /// Last CSeq from the watcher.
    pub remote_cseq: u32,
    /// Last CSeq of our NOTIFYs.
    pub local_cseq: u32,
    /// The watcher's Contact (remote target).
    pub contact: String,
    /// Our Contact.
    pub local_contact: String,
    /// Route set, comma-joined as in Kamailio.
    pub record_route: String,
    /// Seconds until expiry.
    pub expires: u32,
    /// active / pending / terminated.
    pub status: &'static str,
    /// Termination reason.
    pub reason: Option<String>,
    /// Document version counter.
    pub version: u32,
    /// Kamailio's flags (none are used: always 0).
    pub flags: u32,
    /// The watcher's User-Agent.
    pub user_agent: Option<String>,
    /// Transport of the SUBSCRIBE.
    pub transport: String,
    /// Source address of the SUBSCRIBE.
    pub source: String,
    /// Last NOTIFY reply (`$notify_reply`).
    pub notify_reply: Option<NotifyReply>,
    /// Whether a NOTIFY is waiting for its reply.
    pub notify_in_flight: bool,
    /// The node that owns (notifies) the dialog.
    pub node: String,
    /// Last message handled (ms since the epoch).
    pub last_activity: u64,
    /// Passivated: no actor runs for it now; its presentity keeps it in compact form and
    /// wakes it on the next message.
    pub passivated: bool,
    /// When its current actor started (ms since the epoch; `None` while passivated).
    pub started_at: Option<u64>,
}

impl SubscriptionView {
    /// The view of a dialog.
    pub fn new(
        d: &DialogState,
        reply: Option<&NotifyReply>,
        in_flight: bool,
        node: &str,
        now: Timestamp,
        last_activity: Timestamp,
    ) -> Self {
        let to = PresentityUri::parse(&d.to_uri, crate::ids::UriMatch::CaseSensitive);
        let from = PresentityUri::parse(&d.from_uri, crate::ids::UriMatch::CaseSensitive);
        SubscriptionView {
            id: d.id.local_tag.clone(),
            uri: d.presentity.to_string(),
            pres_uri: d.presentity.to_string(),
            to_user: to.as_ref().and_then(|u| u.user().map(str::to_string)),
            to_domain: to.as_ref().map(|u| u.host().to_string()),
            from_user: from.as_ref().and_then(|u| u.user().map(str::to_string)),
            from_domain: from.as_ref().map(|u| u.host().to_string()),
            watcher_username: d.watcher.user().map(str::to_string),
            watcher_domain: d.watcher.host().to_string(),
            event: d.event.to_string(),
            event_id: d.event_id.clone(),
            to_tag: d.id.local_tag.clone(),
            from_tag: d.id.remote_tag.clone(),
            callid: d.id.call_id.clone(),
            remote_cseq: d.remote_cseq,
            local_cseq: d.local_cseq,
            contact: d.contact.clone(),
            local_contact: d.local_contact.clone(),
            record_route: d.route_set.join(","),
            expires: now.secs_until(d.expires_at),
            status: d.status.as_str(),
            reason: d.reason.clone(),
            version: d.version,
            flags: 0,
            user_agent: d.user_agent.clone(),
            transport: d.transport.clone(),
            source: d.source.clone(),
            notify_reply: reply.cloned(),
            notify_in_flight: in_flight,
            node: node.to_string(),
            last_activity: last_activity.0,
            passivated: false,
            started_at: None,
        }
    }
}

/// An actor's answer, or a note that it was too busy to give one in time.
#[derive(Clone, Debug, Serialize)]
#[serde(untagged)]
pub enum Snapshot<T> {
    /// The actor answered.
    Ready(T),
    /// The actor did not answer within [`SNAPSHOT_TIMEOUT`].
    Busy {
        /// Its key.
        key: String,
        /// Always "busy".
        state: &'static str,
    },
}

/// Ask a presentity actor for its view.
#[derive(Message)]
#[rtype(result = "PresentityView")]
pub struct SnapshotPresentity {
    /// Counts only: no publications and no composed document (for mailbox sampling).
    pub brief: bool,
}

/// Ask a subscription actor for its view.
#[derive(Message)]
#[rtype(result = "SubscriptionView")]
pub struct SnapshotSubscription;

/// Which presentities a shard should list.
#[derive(Clone, Debug, Default)]
pub struct PresentityFilter {
    /// Only this URI.
    pub uri: Option<PresentityUri>,
    /// Only this event.
    pub event: Option<EventKey>,
}

/// Phase 1 of a presentity listing: ask a shard for the keys of its matching presentities
/// on the requested page (no actor is asked anything).
#[derive(Clone, Message)]
#[rtype(result = "KeyPage<(PresentityUri, EventKey)>")]
pub struct ListPresentities {
    /// Which presentities.
    pub filter: PresentityFilter,
    /// Which page.
    pub page: PageRequest,
}

/// Phase 2 of a presentity listing: ask a shard for the views of these presentities (those
/// gone meanwhile are left out), each with its mailbox depth.
#[derive(Message)]
#[rtype(result = "Vec<(String, Snapshot<PresentityView>)>")]
pub struct SnapshotPresentities(pub Vec<(String, (PresentityUri, EventKey))>);

/// Which subscriptions a shard should list.
#[derive(Clone, Debug, Default)]
pub struct SubscriptionFilter {
    /// Only this presentity.
    pub presentity: Option<PresentityUri>,
    /// Only this watcher.
    pub watcher: Option<PresentityUri>,
    /// Only this event.
    pub event: Option<EventKey>,
    /// Only this dialog (our tag).
    pub id: Option<String>,
}

/// Phase 1 of a subscription listing: ask a shard for the tags of its matching dialogs on
/// the requested page (live and passivated alike; no actor is asked anything).
#[derive(Clone, Message)]
#[rtype(result = "KeyPage<()>")]
pub struct ListSubscriptions {
    /// Which subscriptions.
    pub filter: SubscriptionFilter,
    /// Which page.
    pub page: PageRequest,
}

/// Phase 2 of a subscription listing: ask a shard for the views of these dialogs (by tag):
/// a live one from its actor, a passivated one from its presentity; those ended meanwhile
/// are left out.
#[derive(Message)]
#[rtype(result = "Vec<(String, Snapshot<SubscriptionView>)>")]
pub struct SnapshotSubscriptions(pub Vec<String>);

/// Ask a shard for the mailbox depths of at most `max` of its presentity actors (a random
/// window of them), for the `presenced_mailbox_depth` histogram.
#[derive(Message)]
#[rtype(result = "MailboxSample")]
pub struct SampleMailboxes {
    /// Most actors asked.
    pub max: usize,
}

/// What [`SampleMailboxes`] found.
#[derive(Clone, Debug, Default)]
pub struct MailboxSample {
    /// Depth of each presentity actor that answered in time.
    pub presentity: Vec<u64>,
    /// Actors that did not answer within [`SNAPSHOT_TIMEOUT`] (their depth is unknown).
    pub busy: usize,
}

/// Counts of one shard.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct ShardStats {
    /// Live presentity actors.
    pub presentities: usize,
    /// Subscription dialogs (live actors and passivated).
    pub subscriptions: usize,
    /// Of those, passivated (no actor running).
    pub passivated: usize,
    /// Server transactions in the table.
    pub transactions: usize,
    /// Last message handled (ms since the epoch).
    pub last_activity: u64,
}

/// Ask a shard for its counts.
#[derive(Message)]
#[rtype(result = "ShardStats")]
pub struct Stats;

/// Asks every actor for its snapshot at once (each request is queued before any is
/// awaited, and each one's timeout starts then), so the whole call takes at most about
/// [`SNAPSHOT_TIMEOUT`]; one that does not answer in time is reported busy under its key.
/// The answers keep the order of `targets`.
pub(crate) async fn snapshots<A, M, V>(
    targets: Vec<(String, Addr<A>)>,
    msg: impl Fn() -> M,
) -> Vec<(String, Snapshot<V>)>
where
    A: Actor<Context = Context<A>> + Handler<M>,
    M: Message<Result = V> + Send + 'static,
    V: Send + 'static,
{
    let asked: Vec<_> = targets
        .into_iter()
        .map(|(key, addr)| (key, addr.send(msg()).timeout(SNAPSHOT_TIMEOUT)))
        .collect();
    let mut out = Vec::with_capacity(asked.len());
    for (key, request) in asked {
        let snap = match request.await {
            Ok(v) => Snapshot::Ready(v),
            Err(_) => Snapshot::Busy {
                key: key.clone(),
                state: "busy",
            },
        };
        out.push((key, snap));
    }
    out
}

/// Helper for handlers: the composed document as text.
pub(crate) fn body_text(b: &Option<Body>) -> Option<String> {
    b.as_ref()
        .map(|b| String::from_utf8_lossy(&b.bytes).into_owned())
}

/// Re-send the current state to every watcher of a presentity (`presence.refreshWatchers`).
#[derive(Message)]
#[rtype(result = "usize")]
pub struct RefreshWatchers;

/// Expire now what is due (`presence.cleanup`): publications past their expiry are removed
/// (and watchers notified unless `force_delete`). Returns how many were removed.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct Sweep;

/// Ask a shard to forward a control message to one presentity (`None` if it has no actor).
#[derive(Message)]
#[rtype(result = "Option<usize>")]
pub struct ForPresentity {
    /// Presentity.
    pub uri: PresentityUri,
    /// Event package.
    pub event: EventKey,
    /// What to do.
    pub action: PresentityAction,
}

/// A control action on one presentity actor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PresentityAction {
    /// [`RefreshWatchers`].
    Refresh,
    /// [`Sweep`].
    Sweep,
    /// Count its watchers.
    CountWatchers,
}

/// Count a presentity's watchers.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct CountWatchers;

/// Ask a shard to sweep every presentity it holds; returns publications removed.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct SweepShard;

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    /// Answers after `delay`, blocking its arbiter's thread meanwhile (a busy actor).
    struct Probe {
        delay: Duration,
        answer: u32,
    }

    impl Actor for Probe {
        type Context = Context<Self>;
    }

    #[derive(Message)]
    #[rtype(result = "u32")]
    struct Ask;

    impl Handler<Ask> for Probe {
        type Result = u32;

        fn handle(&mut self, _: Ask, _: &mut Context<Self>) -> u32 {
            std::thread::sleep(self.delay);
            self.answer
        }
    }

    #[test]
    fn busy_actors_show_as_busy_within_about_one_timeout() {
        actix::System::new().block_on(async {
            // The busy actors block their own thread, as a long handler would.
            let busy_arbiter = Arbiter::new();
            let slow = SNAPSHOT_TIMEOUT * 4;
            let mut targets = Vec::new();
            for i in 0..3 {
                let addr = Probe::start_in_arbiter(&busy_arbiter.handle(), move |_| Probe {
                    delay: slow,
                    answer: i,
                });
                targets.push((format!("busy-{i}"), addr));
            }
            let quick = Probe {
                delay: Duration::ZERO,
                answer: 42,
            }
            .start();
            targets.insert(1, ("quick".to_string(), quick));

            let started = Instant::now();
            let out = snapshots(targets, || Ask).await;
            let took = started.elapsed();

            // Asked all at once: three busy actors cost one timeout, not three.
            assert!(took >= SNAPSHOT_TIMEOUT, "{took:?}");
            assert!(took < Duration::from_secs(1), "{took:?}");
            let keys: Vec<&str> = out.iter().map(|(k, _)| k.as_str()).collect();
            assert_eq!(keys, vec!["busy-0", "quick", "busy-1", "busy-2"]);
            assert!(matches!(out[1].1, Snapshot::Ready(42)));
            for (key, snap) in out.iter().filter(|(k, _)| k != "quick") {
                match snap {
                    Snapshot::Busy { key: k, state } => {
                        assert_eq!((k, *state), (key, "busy"));
                    }
                    Snapshot::Ready(v) => panic!("{key} answered {v} while busy"),
                }
            }
            busy_arbiter.stop();
        });
    }
}
