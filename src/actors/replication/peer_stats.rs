//! What the replication actor counts per peer for `/debug/cluster` and `/metrics`: records
//! applied from it, the last anti-entropy exchange that found nothing to repair, and the
//! replication lag. Invariant: the lag is never negative (a peer clock ahead of ours counts
//! as no lag) and is 0 once an exchange found the two views equal.

use crate::clock::Timestamp;

/// Counts of one peer.
#[derive(Debug, Default)]
pub(super) struct PeerStats {
    /// Records applied from it.
    pub(super) applied: u64,
    /// Last anti-entropy exchange that found nothing to repair (ms since the epoch).
    pub(super) last_in_sync: Option<u64>,
    /// See [`super::PeerView::lag_ms`].
    pub(super) lag_ms: Option<u64>,
}

impl PeerStats {
    /// Updates the lag after one message from the peer: `newest` is the largest HLC wall
    /// time (ms) among the records it changed here, `in_sync` whether it reported no
    /// difference.
    pub(super) fn note_lag(&mut self, newest: Option<u64>, in_sync: bool, now: Timestamp) {
        if let Some(wall) = newest {
            self.lag_ms = Some(now.0.saturating_sub(wall));
        }
        if in_sync {
            self.lag_ms = Some(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_follows_the_newest_record_applied_and_clears_when_in_sync() {
        let mut s = PeerStats::default();
        s.note_lag(None, false, Timestamp(10_000));
        assert_eq!(s.lag_ms, None, "nothing known yet");
        s.note_lag(Some(9_250), false, Timestamp(10_000));
        assert_eq!(s.lag_ms, Some(750));
        // A peer clock ahead of ours does not make the lag negative.
        s.note_lag(Some(10_400), false, Timestamp(10_000));
        assert_eq!(s.lag_ms, Some(0));
        s.note_lag(Some(1_000), false, Timestamp(10_000));
        assert_eq!(
            s.lag_ms,
            Some(9_000),
            "an old record repaired late is a real lag"
        );
        s.note_lag(None, true, Timestamp(11_000));
        assert_eq!(s.lag_ms, Some(0), "in sync: caught up");
        s.note_lag(None, false, Timestamp(60_000));
        assert_eq!(s.lag_ms, Some(0), "idle is not lagging");
    }
}
