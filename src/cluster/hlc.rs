//! The hybrid logical clock (HLC, Kulkarni et al. 2014) that stamps every replicated write,
//! and the [`Stamp`] that orders writes cluster-wide for last-writer-wins.
//!
//! Sans-IO: wall time comes in as an argument. Invariants of one [`HlcClock`]:
//! * every value it returns (from [`HlcClock::now`] or [`HlcClock::observe`]) is strictly
//!   greater than every value it returned or observed before, even when the wall clock goes
//!   back (the counter absorbs it, and on counter overflow `wall_ms` moves on by one);
//! * a remote stamp more than `max_drift` ahead of the local wall clock is refused
//!   ([`ClockSkew`]) and leaves the clock unchanged, so one peer with a wild clock cannot drag
//!   the whole cluster's stamps into the future.
//!
//! A [`Stamp`] is `(Hlc, NodeId)`: two nodes never issue the same stamp (the node breaks the
//! tie), and one node never issues the same HLC twice, so a stamp names one write.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;
use crate::ids::NodeId;

/// An HLC value: physical milliseconds plus a logical counter for events in the same
/// millisecond (or while the wall clock lags behind a stamp already seen).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Hlc {
    /// The largest wall time (ms since the epoch) seen by the issuing clock.
    pub wall_ms: u64,
    /// Events since `wall_ms` last advanced.
    pub counter: u32,
}

impl Hlc {
    /// The smallest HLC strictly greater than `self`.
    fn successor(self) -> Hlc {
        match self.counter.checked_add(1) {
            Some(counter) => Hlc {
                wall_ms: self.wall_ms,
                counter,
            },
            None => Hlc {
                wall_ms: self.wall_ms.saturating_add(1),
                counter: 0,
            },
        }
    }
}

/// The version of one replicated write: total order for last-writer-wins. Compares the HLC
/// first, then the node id (the derive's field order is the comparison order).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Stamp {
    /// When, causally.
    pub hlc: Hlc,
    /// Which node wrote it (the tie-breaker).
    pub node: NodeId,
}

/// A remote stamp too far ahead of our wall clock; it was not observed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("remote clock {remote_ms} ms is {ahead_ms} ms ahead of ours (max drift {max_drift_ms} ms)")]
pub struct ClockSkew {
    /// The remote stamp's wall part.
    pub remote_ms: u64,
    /// How far it is ahead of the local wall clock.
    pub ahead_ms: u64,
    /// The configured limit.
    pub max_drift_ms: u64,
}

/// One node's HLC. Create one per node and feed it every wall-clock reading and every
/// remote stamp received.
#[derive(Clone, Debug)]
pub struct HlcClock {
    node: NodeId,
    last: Hlc,
    max_drift_ms: u64,
}

impl HlcClock {
    /// The default refusal limit for remote stamps ahead of the local wall clock.
    pub const DEFAULT_MAX_DRIFT: Duration = Duration::from_secs(60);

    /// A clock for `node` that refuses remote stamps more than `max_drift` ahead.
    pub fn new(node: NodeId, max_drift: Duration) -> Self {
        HlcClock {
            node,
            last: Hlc::default(),
            max_drift_ms: u64::try_from(max_drift.as_millis()).unwrap_or(u64::MAX),
        }
    }

    /// The node this clock stamps for.
    pub fn node(&self) -> &NodeId {
        &self.node
    }

    /// The last value issued or observed.
    pub fn last(&self) -> Hlc {
        self.last
    }

    /// A new local event at wall time `wall`: strictly greater than anything before.
    pub fn now(&mut self, wall: Timestamp) -> Hlc {
        self.last = if wall.0 > self.last.wall_ms {
            Hlc {
                wall_ms: wall.0,
                counter: 0,
            }
        } else {
            self.last.successor()
        };
        self.last
    }

    /// [`Self::now`] with this node's id: the stamp of a local write.
    pub fn stamp(&mut self, wall: Timestamp) -> Stamp {
        Stamp {
            hlc: self.now(wall),
            node: self.node.clone(),
        }
    }

    /// Receives a remote stamp at wall time `wall`: the clock moves past it, so every later
    /// local write orders after the remote one. Refused, clock unchanged, when `remote` is
    /// more than the max drift ahead of `wall`.
    pub fn observe(&mut self, remote: Hlc, wall: Timestamp) -> Result<Hlc, ClockSkew> {
        let ahead_ms = remote.wall_ms.saturating_sub(wall.0);
        if ahead_ms > self.max_drift_ms {
            return Err(ClockSkew {
                remote_ms: remote.wall_ms,
                ahead_ms,
                max_drift_ms: self.max_drift_ms,
            });
        }
        self.restore(remote);
        Ok(self.now(wall))
    }

    /// Moves the clock to at least `seen` without a drift check: for stamps this node wrote
    /// itself before a restart (read back from the store), so that new writes order after
    /// them even if the wall clock went back across the restart.
    pub fn restore(&mut self, seen: Hlc) {
        self.last = self.last.max(seen);
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn clock() -> HlcClock {
        HlcClock::new(NodeId::new("n1"), HlcClock::DEFAULT_MAX_DRIFT)
    }

    #[test]
    fn now_follows_wall_and_counts_within_a_millisecond() {
        let mut c = clock();
        assert_eq!(
            c.now(Timestamp(100)),
            Hlc {
                wall_ms: 100,
                counter: 0
            }
        );
        assert_eq!(
            c.now(Timestamp(100)),
            Hlc {
                wall_ms: 100,
                counter: 1
            }
        );
        // The wall clock goes back: the HLC keeps its wall part and counts.
        assert_eq!(
            c.now(Timestamp(50)),
            Hlc {
                wall_ms: 100,
                counter: 2
            }
        );
        assert_eq!(
            c.now(Timestamp(101)),
            Hlc {
                wall_ms: 101,
                counter: 0
            }
        );
        assert_eq!(c.stamp(Timestamp(101)).node, NodeId::new("n1"));
    }

    #[test]
    fn counter_overflow_moves_the_wall_part() {
        let mut c = clock();
        c.restore(Hlc {
            wall_ms: 7,
            counter: u32::MAX,
        });
        assert_eq!(
            c.now(Timestamp(1)),
            Hlc {
                wall_ms: 8,
                counter: 0
            }
        );
    }

    #[test]
    fn observe_moves_past_remote_and_refuses_far_future() {
        let mut c = clock();
        let remote = Hlc {
            wall_ms: 5_000,
            counter: 9,
        };
        let after = c.observe(remote, Timestamp(1_000)).unwrap();
        assert!(after > remote);
        assert_eq!(
            after,
            Hlc {
                wall_ms: 5_000,
                counter: 10
            }
        );
        assert!(c.now(Timestamp(1_000)) > after);

        let far = Hlc {
            wall_ms: 1_000 + 60_001,
            counter: 0,
        };
        let before = c.last();
        let err = c.observe(far, Timestamp(1_000)).unwrap_err();
        assert_eq!(err.ahead_ms, 60_001);
        assert_eq!(
            c.last(),
            before,
            "a refused stamp leaves the clock unchanged"
        );
        // Exactly at the limit is accepted.
        let edge = Hlc {
            wall_ms: 61_000,
            counter: 0,
        };
        assert!(c.observe(edge, Timestamp(1_000)).unwrap() > edge);
    }

    #[test]
    fn stamps_order_by_hlc_then_node() {
        let hlc = Hlc {
            wall_ms: 1,
            counter: 0,
        };
        let a = Stamp {
            hlc,
            node: NodeId::new("a"),
        };
        let b = Stamp {
            hlc,
            node: NodeId::new("b"),
        };
        let later = Stamp {
            hlc: Hlc {
                wall_ms: 1,
                counter: 1,
            },
            node: NodeId::new("a"),
        };
        assert!(a < b && b < later);
    }

    #[derive(Clone, Debug)]
    enum Event {
        Local(u64),
        Remote(u64, u32, u64),
    }

    fn event() -> impl Strategy<Value = Event> {
        prop_oneof![
            (0u64..200_000).prop_map(Event::Local),
            (0u64..400_000, any::<u32>(), 0u64..200_000)
                .prop_map(|(w, c, wall)| Event::Remote(w, c, wall)),
        ]
    }

    proptest! {
        /// Whatever the wall clock and remote stamps do, every value issued is strictly
        /// greater than the previous one and than every remote stamp accepted.
        #[test]
        fn issued_values_strictly_increase(events in proptest::collection::vec(event(), 1..80)) {
            let mut c = clock();
            let mut prev: Option<Hlc> = None;
            for e in events {
                let issued = match e {
                    Event::Local(wall) => {
                        let h = c.now(Timestamp(wall));
                        prop_assert!(h.wall_ms >= wall);
                        Some(h)
                    }
                    Event::Remote(w, counter, wall) => {
                        let remote = Hlc { wall_ms: w, counter };
                        let before = c.last();
                        match c.observe(remote, Timestamp(wall)) {
                            Ok(h) => {
                                prop_assert!(h > remote);
                                Some(h)
                            }
                            Err(_) => {
                                prop_assert!(w > wall + 60_000);
                                prop_assert_eq!(c.last(), before);
                                None
                            }
                        }
                    }
                };
                if let Some(h) = issued {
                    if let Some(p) = prev {
                        prop_assert!(h > p, "{h:?} after {p:?}");
                    }
                    prev = Some(h);
                }
            }
        }
    }
}
