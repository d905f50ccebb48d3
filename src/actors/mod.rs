//! The actor layer: thin actix shells that each own one core value and interpret its effects.
//!
//! # Actor map
//!
//! * [`shard::Shard`] — 2^`pres_htable_size` of them, spread over one Arbiter per core. A
//!   shard owns the server-transaction table of the requests routed to it, the registry of
//!   its presentity actors and subscription dialogs, and the ingress checks. Routing
//!   ([`router::Router`]): an out-of-dialog request goes to the shard of its presentity's
//!   hash; an in-dialog request and a NOTIFY response go to the shard encoded in our tag
//!   (`<random>-<shard>`). So everything about one presentity — its shard, its presentity
//!   actor and all its subscription actors — lives on one thread: the chatty pairs never
//!   cross threads.
//! * [`presentity::PresentityActor`] — one per (presentity URI, event). Owns the
//!   [`crate::presence::presentity::Presentity`] (its publications), the composed document,
//!   and the set of its local subscriptions. Every PUBLISH, expiry and SUBSCRIBE of that
//!   presentity is serialised by its mailbox: no ETag races.
//! * [`subscription::SubscriptionActor`] — one per dialog. Owns the
//!   [`crate::presence::subscription::Subscription`]; sends NOTIFYs (one in flight, the rest
//!   coalesced), handles in-dialog SUBSCRIBEs and NOTIFY responses.
//!
//! # Runtime semantics
//!
//! * **Ordering**: messages from one sender to one actor are delivered in order (actix
//!   mailboxes are FIFO). A shard's messages to an actor therefore arrive before the shard's
//!   `Stop`. Datagrams are not ordered: every Arbiter reads the UDP socket, so two datagrams
//!   of one dialog may reach its shard in either order, as UDP itself may deliver them (a
//!   NOTIFY's 200 after the un-SUBSCRIBE that follows it: the terminal NOTIFY waits for it,
//!   one NOTIFY in flight).
//! * **Backpressure**: messages caused by network input are sent with `try_send`; a full
//!   mailbox (`[limits] mailbox_size`) is answered with 503 + Retry-After. `do_send` is used
//!   only for internal messages whose count is bounded by state (fan-out to existing
//!   subscriptions, responses, registration).
//! * **Stopping**: an actor never stops on its own while the shard may still route to it.
//!   A presentity actor with no publications and no subscriptions reports `Idle` with its
//!   address and the number of shard messages it has handled (a late report of an actor
//!   already replaced is ignored); the shard removes it and sends `Stop` only if
//!   it has sent no message since (counts equal). A terminated subscription reports
//!   `DialogGone`; the shard removes it (new in-dialog requests then get 481) and sends
//!   `Stop`. So no message routed by a shard is ever lost in a stopping mailbox.
//! * **Passivation** (`[node] passivate_after`): a subscription actor quiet for that long
//!   (no NOTIFY in flight or due) sends its compact form (`dormant::DormantSub`) to its
//!   presentity with the number of presentity-routed messages it has handled. The presentity
//!   routes every message that changes a dialog (state changes, authorization changes, and —
//!   forwarded by the shard as `ToDialog` — in-dialog SUBSCRIBEs, replacement, disowning),
//!   so it accepts only if it has sent exactly that many, keeps the form and sends `Stop`;
//!   otherwise the actor stays and asks again later. The presentity wakes the dialog (a new
//!   actor from the form, which registers with the shard again) on its next message or at
//!   its expiry. Dialogs restored at start go straight to the compact form. NOTIFY responses
//!   still go straight to the actor: a dialog with a NOTIFY in flight is never passivated.
//! * **Crash**: a panic in a handler kills that actor only; the shard sees the mailbox
//!   closed on the next `try_send`, forgets the address and answers 500 + Retry-After (the
//!   state of a crashed actor is lost in memory-only mode; persistence re-creates it).
//! * **Time**: actors read the clock once per message ([`crate::clock::now`]) and pass it to
//!   the core; timers are one `run_later` per actor for the core's `next_deadline`.

pub mod context;
pub(crate) mod dormant;
pub mod inspect;
pub mod messages;
pub mod persist;
pub mod presentity;
pub mod replication;
pub mod router;
pub mod shard;
pub mod subscription;
pub mod watchers;
