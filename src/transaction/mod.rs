//! The SIP transaction layer for non-INVITE requests (RFC 3261 §17), sans-IO.
//!
//! presenced only handles non-INVITE methods, so this layer is small:
//!
//! * [`ServerTransactions`] — the table of server transactions for requests we receive
//!   (PUBLISH, SUBSCRIBE, OPTIONS, …): a retransmission is absorbed while the request is being
//!   processed and answered with the very same response bytes once one was sent (§17.2.2).
//!   Keys ([`TransactionKey`]) follow §17.2.3, with the RFC 2543 fallback.
//! * [`ClientTransaction`] — one NOTIFY we send: Timer E retransmissions over UDP, Timer F
//!   timeout (reported as [`ClientOutput::TimedOut`], i.e. 408), Timer K (§17.1.2).
//! * [`Timers`] — T1/T2/T4 and the timers derived from them.
//!
//! # The sans-IO contract
//!
//! Nothing here reads a clock, owns a socket or spawns a task. Every method that depends on
//! time takes `now: Timestamp`; the caller (an actor) reads the clock once per message, feeds
//! it in, acts on the returned value (resend bytes, report a status, drop the transaction) and
//! schedules a wake-up at `next_deadline()`, at which it calls `on_timer(now)`. A wake-up that
//! comes late is harmless: due work is done once, not replayed. The caller builds keys and
//! statuses from parsed messages; this layer never sees `crate::sip` types, only strings,
//! numbers and response bytes.

mod client;
mod server;
mod timers;

pub use client::{ClientOutput, ClientTransaction};
pub use server::{ServerTransactions, TransactionKey, Verdict};
pub use timers::Timers;
