//! presenced — a clustered SIP presence server.
//!
//! It re-creates Kamailio's `presence` module (PUBLISH/SUBSCRIBE/NOTIFY, RFC 6665, 3903,
//! 3856) as a standalone node. See `README.md` for running it and the architecture overview;
//! this page is the map of the code.
//!
//! # Layers
//!
//! ```text
//! main.rs ─► node.rs (composition root) ─► actors/ ─► presence/    (pure domain core)
//!                                    │          ├─► transaction/ (pure RFC 3261 §17)
//!                                    │          ├─► sip/         (bytes ⇄ typed messages)
//!                                    │          └─► store/       (trait; memory impl)
//!                                    └─► transport/ (UDP, TCP sockets; framing only)
//! ```
//!
//! * [`presence`] and [`transaction`] are sans-IO: they take `now` and return effects.
//! * [`actors`] are thin actix shells, one per presentity (URI, event) and one per
//!   subscription dialog, each owning one core value.
//! * [`sip`] turns bytes into typed requests and typed requests into bytes.
//! * [`transport`] owns sockets: UDP datagrams and TCP streams framed by Content-Length.
//! * [`store`] is the persistence seam; [`config`] the TOML configuration tree.

pub mod actors;
pub mod admin;
pub mod api;
pub mod clock;
pub mod cluster;
pub mod codec;
pub mod config;
pub mod ctl;
pub mod events;
pub mod ids;
pub mod metrics;
pub mod node;
pub mod presence;
pub mod restore;
pub mod sip;
pub mod store;
pub mod transaction;
pub mod transport;
