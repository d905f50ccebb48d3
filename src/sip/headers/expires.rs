//! The `Expires` header (RFC 3261 §20.19; compact form none): delta-seconds.
//!
//! Invariant: any run of digits parses; values beyond `u32::MAX` clamp to `u32::MAX`
//! ("malformed" is only for empty or non-digit values).

use std::fmt;
use std::str::FromStr;

use super::{parse_delta_seconds, HeaderError};

/// `Expires: delta-seconds` (RFC 3261 §20.19), as used by PUBLISH and SUBSCRIBE.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Expires(pub u32);

impl FromStr for Expires {
    type Err = HeaderError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_delta_seconds(s)
            .map(Expires)
            .ok_or(HeaderError::Malformed("Expires"))
    }
}

impl fmt::Display for Expires {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_clamps() {
        assert_eq!("3600".parse::<Expires>().unwrap(), Expires(3600));
        assert_eq!(" 0 ".parse::<Expires>().unwrap(), Expires(0));
        assert_eq!(
            Expires(42).to_string().parse::<Expires>().unwrap(),
            Expires(42)
        );
        assert_eq!("4294967296".parse::<Expires>().unwrap(), Expires(u32::MAX));
    }

    #[test]
    fn rejects_non_digits() {
        for s in ["", "abc", "-5", "1.5", "10 s", "+3"] {
            assert!(s.parse::<Expires>().is_err(), "{s:?}");
        }
    }
}
