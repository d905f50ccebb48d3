//! Time as an input: the one place in the crate that reads the OS clock.
//!
//! The sans-IO cores (`presence/`, `transaction/`) never read a clock; they take a
//! [`Timestamp`] argument. Actors read [`now`] once per message and pass it down. Timestamps
//! are wall-clock milliseconds since the Unix epoch, so an absolute expiry can be persisted,
//! restored after a restart and replicated to another node unchanged.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// Milliseconds since the Unix epoch (wall clock).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// A timestamp `secs` seconds after this one.
    pub fn plus_secs(self, secs: u64) -> Self {
        Timestamp(self.0.saturating_add(secs.saturating_mul(1000)))
    }

    /// A timestamp `d` after this one.
    pub fn plus(self, d: Duration) -> Self {
        Timestamp(
            self.0
                .saturating_add(d.as_millis().min(u64::MAX as u128) as u64),
        )
    }

    /// Time from `self` until `later`, zero if `later` is not after `self`.
    pub fn until(self, later: Timestamp) -> Duration {
        Duration::from_millis(later.0.saturating_sub(self.0))
    }

    /// Whole seconds remaining from `self` until `later`, rounded up (0 if passed).
    pub fn secs_until(self, later: Timestamp) -> u32 {
        let ms = later.0.saturating_sub(self.0);
        (ms.div_ceil(1000)).min(u32::MAX as u64) as u32
    }

    /// Seconds since the Unix epoch (truncated).
    pub fn as_unix_secs(self) -> u64 {
        self.0 / 1000
    }
}

/// Reads the wall clock. The only call of `SystemTime::now` in the crate.
pub fn now() -> Timestamp {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    Timestamp(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secs_until_rounds_up_and_saturates() {
        let t = Timestamp(10_000);
        assert_eq!(t.secs_until(Timestamp(10_001)), 1);
        assert_eq!(t.secs_until(Timestamp(13_000)), 3);
        assert_eq!(t.secs_until(Timestamp(9_000)), 0);
        assert_eq!(t.plus_secs(5), Timestamp(15_000));
        assert_eq!(t.until(Timestamp(10_250)), Duration::from_millis(250));
    }
}
