//! The `Min-Expires` header (RFC 3261 §20.23), sent with 423 Interval Too Brief.
//!
//! Invariant: same value grammar as `Expires` (digits, clamped to `u32::MAX`).

use std::fmt;
use std::str::FromStr;

use super::{parse_delta_seconds, HeaderError};

/// `Min-Expires: delta-seconds` (RFC 3261 §20.23).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct MinExpires(pub u32);

impl FromStr for MinExpires {
    type Err = HeaderError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_delta_seconds(s)
            .map(MinExpires)
            .ok_or(HeaderError::Malformed("Min-Expires"))
    }
}

impl fmt::Display for MinExpires {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_clamps() {
        assert_eq!("60".parse::<MinExpires>().unwrap(), MinExpires(60));
        assert_eq!(MinExpires(7).to_string(), "7");
        assert_eq!(
            "99999999999".parse::<MinExpires>().unwrap(),
            MinExpires(u32::MAX)
        );
    }

    #[test]
    fn rejects_non_digits() {
        for s in ["", "x", "-1", "6 0"] {
            assert_eq!(
                s.parse::<MinExpires>(),
                Err(HeaderError::Malformed("Min-Expires"))
            );
        }
    }
}
