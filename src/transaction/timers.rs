//! The RFC 3261 timer constants (§17.1.2.2, Table 4) and the non-INVITE timers derived from them.
//!
//! Owns nothing but arithmetic. Invariants the rest of the layer relies on: every derived timer
//! is a pure function of T1/T2/T4 and the transport's reliability, and the unreliable values are
//! never zero as long as T1 and T4 are not (the defaults are not).

use std::time::Duration;

/// The three base timers of RFC 3261 §17.1.2.2 (Table 4). Default: T1 500 ms, T2 4 s, T4 5 s.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timers {
    /// RTT estimate: first retransmission interval (Timer E's start) and the unit of Timers F/J.
    pub t1: Duration,
    /// Cap on the non-INVITE retransmission interval (Timer E never grows past it).
    pub t2: Duration,
    /// Maximum time a message stays in the network: how long a client waits for response
    /// retransmissions once completed (Timer K over unreliable transports).
    pub t4: Duration,
}

impl Default for Timers {
    fn default() -> Self {
        Timers {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
        }
    }
}

impl Timers {
    /// Timer F, the non-INVITE client transaction timeout: 64·T1 (32 s by default).
    pub fn timer_f(&self) -> Duration {
        self.t1.saturating_mul(64)
    }

    /// Timer J, how long a completed non-INVITE server transaction absorbs retransmissions:
    /// 64·T1 over an unreliable transport, zero over a reliable one.
    pub fn timer_j(&self, reliable: bool) -> Duration {
        if reliable {
            Duration::ZERO
        } else {
            self.t1.saturating_mul(64)
        }
    }

    /// Timer K, how long a completed non-INVITE client transaction absorbs response
    /// retransmissions: T4 over an unreliable transport, zero over a reliable one.
    pub fn timer_k(&self, reliable: bool) -> Duration {
        if reliable {
            Duration::ZERO
        } else {
            self.t4
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_rfc_table_4() {
        let t = Timers::default();
        assert_eq!(t.t1, Duration::from_millis(500));
        assert_eq!(t.t2, Duration::from_secs(4));
        assert_eq!(t.t4, Duration::from_secs(5));
        assert_eq!(t.timer_f(), Duration::from_secs(32));
        assert_eq!(t.timer_j(false), Duration::from_secs(32));
        assert_eq!(t.timer_j(true), Duration::ZERO);
        assert_eq!(t.timer_k(false), Duration::from_secs(5));
        assert_eq!(t.timer_k(true), Duration::ZERO);
    }

    #[test]
    fn derived_timers_follow_t1_and_t4() {
        let t = Timers {
            t1: Duration::from_millis(100),
            t2: Duration::from_secs(1),
            t4: Duration::from_secs(2),
        };
        assert_eq!(t.timer_f(), Duration::from_millis(6400));
        assert_eq!(t.timer_j(false), Duration::from_millis(6400));
        assert_eq!(t.timer_k(false), Duration::from_secs(2));
    }
}
