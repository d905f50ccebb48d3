//! The pure presence core: publications, presentities, subscriptions, event packages.
//!
//! Sans-IO: nothing here touches actix, tokio, sled, sockets or the clock. Every input method
//! takes `now` and returns values (outcomes and effects) that the actors interpret.

pub mod authz;
pub mod expires;
pub mod package;
pub mod packages;
pub mod presentity;
pub mod publication;
pub mod request;
pub mod subscription;
