//! Passivation of subscription dialogs: how a presentity holds a dialog ([`SubHandle`]:
//! running, passivated in compact form, or — DB-only mode — in the store only), the compact
//! form itself ([`DormantSub`]), and the [`Waker`] that starts an actor from it again.
//!
//! A dormant dialog is one versioned bincode record (the [`DialogState`] and the last NOTIFY
//! reply) owned by its presentity actor, which routes every message for the dialog and wakes
//! it on the first one (a state change, an in-dialog SUBSCRIBE, its expiry). Invariants:
//! * only a quiescent dialog is passivated (no NOTIFY in flight or due, not terminated), so
//!   the record is its whole state and waking it loses nothing;
//! * the record is written by the dialog's own actor after its last message, and the
//!   presentity accepts it only if it has sent that actor nothing since (see
//!   [`crate::actors::messages::Passivate`]).

use std::borrow::Cow;
use std::sync::Arc;

use actix::prelude::*;
use serde::{Deserialize, Serialize};

use super::context::NodeCtx;
use super::presentity::PresentityActor;
use super::shard::Shard;
use super::subscription::SubscriptionActor;
use crate::clock::Timestamp;
use crate::codec::{self, CodecError};
use crate::presence::package::Body;
use crate::presence::subscription::{DialogState, NotifyReply};

/// Record version of the dormant form (in memory only, never stored: no older version to
/// read).
const DORMANT_V2: u8 = 2;

/// `to_uri` was the presentity's URI and is not in the record.
const TO_IS_PRESENTITY: u8 = 1;
/// `from_uri` was the watcher's URI and is not in the record.
const FROM_IS_WATCHER: u8 = 2;

#[derive(Serialize)]
struct FormRef<'a> {
    elided: u8,
    dialog: &'a DialogState,
    last_reply: Option<&'a NotifyReply>,
}

#[derive(Deserialize)]
struct Form {
    elided: u8,
    dialog: DialogState,
    last_reply: Option<NotifyReply>,
}

/// A passivated dialog: a few hundred bytes instead of a running actor.
pub(crate) struct DormantSub {
    bytes: Box<[u8]>,
    /// When its actor last handled a message.
    pub(crate) last_activity: Timestamp,
}

impl DormantSub {
    /// The compact form of a dialog. The To and From URIs usually spell the presentity and
    /// the watcher exactly; they are then kept once (a quarter of a typical form).
    pub(crate) fn new(
        dialog: &DialogState,
        last_reply: Option<&NotifyReply>,
        last_activity: Timestamp,
    ) -> Self {
        let mut elided = 0;
        let mut d = Cow::Borrowed(dialog);
        if dialog.to_uri == dialog.presentity.as_str() {
            elided |= TO_IS_PRESENTITY;
            d.to_mut().to_uri = String::new();
        }
        if dialog.from_uri == dialog.watcher.as_str() {
            elided |= FROM_IS_WATCHER;
            d.to_mut().from_uri = String::new();
        }
        let form = FormRef {
            elided,
            dialog: &d,
            last_reply,
        };
        let bytes = codec::encode(DORMANT_V2, &form);
        DormantSub {
            bytes: bytes.into_boxed_slice(),
            last_activity,
        }
    }

    /// The dialog and its last NOTIFY reply.
    pub(crate) fn open(&self) -> Result<(DialogState, Option<NotifyReply>), CodecError> {
        let mut f: Form = codec::decode(DORMANT_V2, &self.bytes)?;
        if f.elided & TO_IS_PRESENTITY != 0 {
            f.dialog.to_uri = f.dialog.presentity.as_str().to_owned();
        }
        if f.elided & FROM_IS_WATCHER != 0 {
            f.dialog.from_uri = f.dialog.watcher.as_str().to_owned();
        }
        Ok((f.dialog, f.last_reply))
    }

    /// Bytes held.
    #[cfg(test)]
    pub(crate) fn size(&self) -> usize {
        self.bytes.len()
    }
}

/// Starts the actor of a dormant dialog, on the presentity actor's thread.
pub(crate) struct Waker {
    pub(crate) shard: Addr<Shard>,
    pub(crate) presentity: Addr<PresentityActor>,
    pub(crate) ctx: Arc<NodeCtx>,
}

impl Waker {
    /// A running actor for `d`, holding `body` as the current document; `None` (logged) if
    /// the record cannot be read — a bug, since this process wrote it.
    pub(crate) fn wake(
        &self,
        d: &DormantSub,
        body: Option<Body>,
    ) -> Option<Addr<SubscriptionActor>> {
        match d.open() {
            Ok((dialog, reply)) => Some(SubscriptionActor::start_woken(
                dialog,
                reply,
                body,
                self.shard.clone(),
                self.presentity.clone(),
                self.ctx.clone(),
            )),
            Err(e) => {
                tracing::error!(error = %e, "dormant subscription unreadable; dropped");
                None
            }
        }
    }
}

/// A message waiting for a dialog that is being read back from the store.
pub(crate) type Deliver = Box<dyn FnOnce(&Addr<SubscriptionActor>)>;

/// How a presentity holds one of its watchers' dialogs.
pub(crate) enum SubHandle {
    /// Its actor, and how many messages this presentity has sent it (the passivation
    /// handshake compares it with the actor's count).
    Live {
        addr: Addr<SubscriptionActor>,
        sent: u64,
    },
    /// Passivated, in compact form.
    Dormant(DormantSub),
    /// DB-only mode: passivated, in the store only.
    Stored,
    /// DB-only mode: being read back from the store; its messages wait here, in order.
    Loading(Vec<Deliver>),
}

impl SubHandle {
    /// A freshly started actor.
    pub(crate) fn live(addr: Addr<SubscriptionActor>) -> Self {
        SubHandle::Live { addr, sent: 0 }
    }

    /// Passivated (either way): no actor runs.
    pub(crate) fn is_asleep(&self) -> bool {
        matches!(self, SubHandle::Dormant(_) | SubHandle::Stored)
    }

    /// Sends `msg`, waking a passivated dialog first (holding `body`). Returns `true` when
    /// the dialog must now be read back from the store (DB-only): the caller starts the read
    /// and calls [`SubHandle::loaded`] with the new actor; `msg` waits until then.
    #[must_use]
    pub(crate) fn send<M>(&mut self, msg: M, waker: &Waker, body: &Option<Body>) -> bool
    where
        M: actix::Message<Result = ()> + Send + 'static,
        SubscriptionActor: Handler<M>,
    {
        match self {
            SubHandle::Dormant(d) => match waker.wake(d, body.clone()) {
                Some(addr) => *self = SubHandle::live(addr),
                None => return false,
            },
            SubHandle::Stored => {
                *self = SubHandle::Loading(vec![deliver(msg)]);
                return true;
            }
            SubHandle::Loading(queue) => {
                queue.push(deliver(msg));
                return false;
            }
            SubHandle::Live { .. } => {}
        }
        if let SubHandle::Live { addr, sent } = self {
            addr.do_send(msg);
            *sent += 1;
        }
        false
    }

    /// The dialog read back from the store runs as `addr`: the waiting messages go to it.
    pub(crate) fn loaded(&mut self, addr: Addr<SubscriptionActor>) {
        let queue = match std::mem::replace(self, SubHandle::Stored) {
            SubHandle::Loading(q) => q,
            other => {
                *self = other;
                return;
            }
        };
        let sent = queue.len() as u64;
        for f in queue {
            f(&addr);
        }
        *self = SubHandle::Live { addr, sent };
    }
}

fn deliver<M>(msg: M) -> Deliver
where
    M: actix::Message<Result = ()> + Send + 'static,
    SubscriptionActor: Handler<M>,
{
    Box::new(move |a: &Addr<SubscriptionActor>| a.do_send(msg))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{DialogId, EventKey, PresentityUri, UriMatch};
    use crate::presence::subscription::SubStatus;

    fn dialog() -> DialogState {
        let uri = |s: &str| PresentityUri::parse(s, UriMatch::CaseSensitive).unwrap();
        DialogState {
            id: DialogId {
                call_id: "a84b4c76e66710@pc33.example.com".into(),
                remote_tag: "1928301774".into(),
                local_tag: "5f0e8d3c9a1b2c4d-3".into(),
            },
            presentity: uri("sip:alice@example.com"),
            event: EventKey::new("presence"),
            event_id: None,
            watcher: uri("sip:bob@example.com"),
            to_uri: "sip:alice@example.com".into(),
            from_uri: "sip:bob@example.com".into(),
            contact: "sip:bob@127.0.0.1:5090;transport=udp".into(),
            route_set: vec!["<sip:127.0.0.1:5070;lr>".into()],
            local_contact: "sip:127.0.0.1:5060".into(),
            remote_cseq: 7,
            local_cseq: 12,
            expires_at: Timestamp(1_800_000_000_000),
            status: SubStatus::Active,
            reason: None,
            version: 11,
            user_agent: Some("Linphone/5.2".into()),
            transport: "udp".into(),
            source: "127.0.0.1:5090".into(),
        }
    }

    #[test]
    fn dormant_form_round_trips_and_is_compact() {
        let d = dialog();
        let reply = NotifyReply {
            status: 200,
            reason: "OK".into(),
        };
        let z = DormantSub::new(&d, Some(&reply), Timestamp(5));
        let (back, r) = z.open().unwrap();
        assert_eq!(back, d);
        assert_eq!(r, Some(reply));
        assert_eq!(z.last_activity, Timestamp(5));
        // Every string once plus lengths: far below the live actor's ~4 KB.
        assert!(z.size() < 260, "{} bytes", z.size());
        // To and From spelled otherwise than the normalised URIs are kept as they were.
        let mut odd = d.clone();
        odd.to_uri = "sip:Alice@Example.com".into();
        odd.from_uri = "<sip:bob@example.com>".into();
        let full = DormantSub::new(&odd, None, Timestamp(5));
        assert_eq!(full.open().unwrap().0, odd);
        assert!(
            full.size() > z.size() + 30,
            "{} vs {}",
            full.size(),
            z.size()
        );
    }

    #[test]
    fn a_damaged_form_is_an_error_not_a_panic() {
        let mut z = DormantSub::new(&dialog(), None, Timestamp(0));
        let n = z.bytes.len();
        z.bytes[n / 2..].fill(0xff);
        assert!(z.open().is_err());
    }
}
