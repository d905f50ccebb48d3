//! Watcher authorization (SPEC §4): the policy, the watcher statuses, rule documents
//! (RFC 5025 subset, [`rules`]), their evaluation ([`eval`]) and the resulting decision.
//!
//! Pure code: the callers (presentity and subscription actors, admin RPCs) fetch the rule
//! document and the presentity's sphere, call [`decide`], persist the [`WatcherStatus`] and
//! send the NOTIFYs it implies.
//!
//! Invariants:
//! * [`decide`] is a function of its arguments only: the same policy, rules, watcher and
//!   sphere always give the same [`Decision`], so re-evaluating after a rule change
//!   (`presence.updateWatchers`) notifies exactly the watchers whose decision changed.
//! * A watcher that is not [`WatcherStatus::Active`] never receives the presence document;
//!   `neutral_body` is only ever set on an active decision (polite-block).
//! * A presentity is always authorized to watch itself.

use serde::{Deserialize, Serialize};

use crate::config::DefaultPolicy;
use crate::ids::PresentityUri;
use crate::presence::subscription::SubStatus;

pub mod eval;
mod pidf;
pub mod rules;
mod xml;

pub use eval::evaluate;
pub use pidf::{neutral_pidf, sphere_of};
pub use rules::{RuleSet, SubHandling};

/// The authorization policy (`[authorization] default_policy`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Policy {
    /// Every watcher is active (Kamailio's `force_active = 1`).
    Allow,
    /// Every new watcher is pending until an administrative decision.
    Pending,
    /// The presentity's rule document decides; without one, watchers are pending.
    Rules,
}

impl From<DefaultPolicy> for Policy {
    fn from(p: DefaultPolicy) -> Self {
        match p {
            DefaultPolicy::Allow => Policy::Allow,
            DefaultPolicy::Pending => Policy::Pending,
            DefaultPolicy::Rules => Policy::Rules,
        }
    }
}

/// The `reason` of a watcher terminated by a `block` rule (RFC 6665 §4.1.3).
pub const REASON_REJECTED: &str = "rejected";

/// A watcher's authorization status for one (presentity, package), as stored in the
/// watchers table and reported by `presence.winfo` (RFC 3858 `status`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum WatcherStatus {
    /// Authorized.
    Active,
    /// Awaiting the presentity's decision; the subscription lives, NOTIFYs carry no body.
    Pending,
    /// Awaiting a decision, but the subscription itself is gone (RFC 3857 §3.4, e.g. a
    /// fetch by an unauthorized watcher); the status is kept for watcherinfo.
    Waiting,
    /// Not (or no longer) authorized, with the reason (`rejected`, …).
    Terminated {
        /// The Subscription-State / watcherinfo reason.
        reason: String,
    },
}

impl WatcherStatus {
    /// Kamailio's `ACTIVE_STATUS` (presence/subscribe.h).
    pub const ACTIVE_CODE: i32 = 1;
    /// Kamailio's `PENDING_STATUS`.
    pub const PENDING_CODE: i32 = 2;
    /// Kamailio's `TERMINATED_STATUS`.
    pub const TERMINATED_CODE: i32 = 3;
    /// Kamailio's `WAITING_STATUS`.
    pub const WAITING_CODE: i32 = 4;

    /// Kamailio's integer code, as stored in its `watchers.status` column and returned by
    /// `pres_auth_status`: active 1, pending 2, terminated 3, waiting 4.
    pub fn code(&self) -> i32 {
        match self {
            WatcherStatus::Active => Self::ACTIVE_CODE,
            WatcherStatus::Pending => Self::PENDING_CODE,
            WatcherStatus::Terminated { .. } => Self::TERMINATED_CODE,
            WatcherStatus::Waiting => Self::WAITING_CODE,
        }
    }

    /// The status from Kamailio's integer code; `reason` is used for terminated (and
    /// defaults to `rejected` when empty). `None` for an unknown code.
    pub fn from_code(code: i32, reason: Option<&str>) -> Option<Self> {
        Some(match code {
            Self::ACTIVE_CODE => WatcherStatus::Active,
            Self::PENDING_CODE => WatcherStatus::Pending,
            Self::WAITING_CODE => WatcherStatus::Waiting,
            Self::TERMINATED_CODE => WatcherStatus::Terminated {
                reason: reason
                    .filter(|r| !r.is_empty())
                    .unwrap_or(REASON_REJECTED)
                    .to_string(),
            },
            _ => return None,
        })
    }

    /// The watcherinfo `status` word (RFC 3858): `active`, `pending`, `waiting`,
    /// `terminated`.
    pub fn as_str(&self) -> &'static str {
        match self {
            WatcherStatus::Active => "active",
            WatcherStatus::Pending => "pending",
            WatcherStatus::Waiting => "waiting",
            WatcherStatus::Terminated { .. } => "terminated",
        }
    }

    /// The termination reason, when terminated.
    pub fn reason(&self) -> Option<&str> {
        match self {
            WatcherStatus::Terminated { reason } => Some(reason),
            _ => None,
        }
    }

    /// The Subscription-State a live dialog of this watcher carries. `Waiting` maps to
    /// `pending`: authorization is still undecided, so no body is sent.
    pub fn sub_status(&self) -> SubStatus {
        match self {
            WatcherStatus::Active => SubStatus::Active,
            WatcherStatus::Pending | WatcherStatus::Waiting => SubStatus::Pending,
            WatcherStatus::Terminated { .. } => SubStatus::Terminated,
        }
    }
}

/// Kamailio's `POLITE_BLOCK_STATUS`: what `pres_auth_status` returns for an active watcher
/// whose rule is polite-block (presence/subscribe.h in Kamailio ≥ 5).
pub const POLITE_BLOCK_CODE: i32 = 5;

/// The outcome of authorizing one watcher.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// The watcher's status.
    pub status: WatcherStatus,
    /// Polite-block: the watcher is active but must receive [`neutral_pidf`] instead of the
    /// presentity's document (Kamailio's reason `polite-block`). Only set when active.
    pub neutral_body: bool,
}

impl Decision {
    /// An active decision with the real document.
    pub fn active() -> Self {
        Decision {
            status: WatcherStatus::Active,
            neutral_body: false,
        }
    }

    /// A pending decision.
    pub fn pending() -> Self {
        Decision {
            status: WatcherStatus::Pending,
            neutral_body: false,
        }
    }

    /// The decision a sub-handling value implies (RFC 5025 §3.2.1, Kamailio's
    /// `pres_watcher_allowed`): block → terminated (`rejected`), confirm → pending,
    /// polite-block → active with the neutral document, allow → active.
    pub fn from_sub_handling(h: SubHandling) -> Self {
        match h {
            SubHandling::Block => Decision {
                status: WatcherStatus::Terminated {
                    reason: REASON_REJECTED.to_string(),
                },
                neutral_body: false,
            },
            SubHandling::Confirm => Decision::pending(),
            SubHandling::PoliteBlock => Decision {
                status: WatcherStatus::Active,
                neutral_body: true,
            },
            SubHandling::Allow => Decision::active(),
        }
    }

    /// The value `pres_auth_status` returns: the status code, or [`POLITE_BLOCK_CODE`] for
    /// a polite-blocked watcher.
    pub fn auth_status_code(&self) -> i32 {
        if self.neutral_body {
            POLITE_BLOCK_CODE
        } else {
            self.status.code()
        }
    }
}

/// Authorizes `watcher` to see `presentity` (Kamailio's `get_auth_status` /
/// `pres_auth_status`).
///
/// * The presentity itself → active, whatever the policy.
/// * [`Policy::Allow`] → active.
/// * [`Policy::Pending`] and [`Policy::Rules`] → no document: pending; otherwise
///   [`evaluate`] (no applicable rule: confirm → pending) mapped by
///   [`Decision::from_sub_handling`]. SPEC §4 keeps a pending watcher waiting "until a rule or
///   an admin decision", so under `pending` too a rule document decides once there is one;
///   the two policies differ only in intent (and a later release may add per-watcher admin
///   decisions to `pending`).
///
/// `sphere` is the presentity's current sphere ([`sphere_of`] its composed document), used
/// only when `sphere_check` (`enable_sphere_check = 1`).
pub fn decide(
    policy: Policy,
    rules: Option<&RuleSet>,
    watcher: &PresentityUri,
    presentity: &PresentityUri,
    sphere: Option<&str>,
    sphere_check: bool,
) -> Decision {
    if watcher == presentity {
        return Decision::active();
    }
    // SPEC §4: under `pending`, a watcher waits "until a rule or an admin decision" — so a
    // rule document, when the presentity has one, decides under `pending` as under `rules`.
    match (policy, rules) {
        (Policy::Allow, _) => Decision::active(),
        (Policy::Pending | Policy::Rules, None) => Decision::pending(),
        (Policy::Pending | Policy::Rules, Some(rs)) => {
            Decision::from_sub_handling(evaluate(rs, watcher, sphere, sphere_check))
        }
    }
}

#[cfg(test)]
mod tests;
