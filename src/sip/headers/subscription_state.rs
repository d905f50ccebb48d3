//! The `Subscription-State` header (RFC 6665 §8.2.3, grammar §7.2.1), sent in every NOTIFY.
//!
//! Invariant: `expires`, `reason` and `retry-after` live in [`SubState`]; `params` holds only
//! the other (extension) parameters, so printing never duplicates one.

use std::fmt;
use std::str::FromStr;

use super::{is_token, parse_delta_seconds, parse_params, write_params, HeaderError};

/// The substate value with the parameters that belong to it (RFC 6665 §4.1.3, §4.2.2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SubState {
    /// `active;expires=N`: the subscription is accepted.
    Active {
        /// Remaining seconds (the server always sends it; optional when parsing).
        expires: Option<u32>,
    },
    /// `pending;expires=N`: awaiting authorisation.
    Pending {
        /// Remaining seconds.
        expires: Option<u32>,
    },
    /// `terminated;reason=R;retry-after=N`: the subscription is over.
    Terminated {
        /// `timeout`, `noresource`, `deactivated`, `rejected`, `probation`, `giveup`, ….
        reason: Option<String>,
        /// Seconds after which the subscriber may retry.
        retry_after: Option<u32>,
    },
}

/// `Subscription-State: substate *(;param)` (RFC 6665 §8.2.3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubscriptionState {
    /// The state and its own parameters.
    pub state: SubState,
    /// Extension parameters in received order.
    pub params: Vec<(String, Option<String>)>,
}

impl SubscriptionState {
    /// `active;expires=secs`.
    pub fn active(expires: u32) -> Self {
        Self::from_state(SubState::Active {
            expires: Some(expires),
        })
    }

    /// `pending;expires=secs`.
    pub fn pending(expires: u32) -> Self {
        Self::from_state(SubState::Pending {
            expires: Some(expires),
        })
    }

    /// `terminated;reason=reason`.
    pub fn terminated(reason: &str) -> Self {
        Self::from_state(SubState::Terminated {
            reason: Some(reason.to_string()),
            retry_after: None,
        })
    }

    fn from_state(state: SubState) -> Self {
        SubscriptionState {
            state,
            params: Vec::new(),
        }
    }
}

impl FromStr for SubscriptionState {
    type Err = HeaderError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        const BAD: HeaderError = HeaderError::Malformed("Subscription-State");
        let s = s.trim();
        let (value, rest) = s.split_once(';').unwrap_or((s, ""));
        let value = value.trim();
        if !is_token(value) {
            return Err(BAD);
        }
        let (mut expires, mut reason, mut retry_after) = (None, None, None);
        let mut params = Vec::new();
        for (name, v) in parse_params(rest).ok_or(BAD)? {
            let seconds = || v.as_deref().and_then(parse_delta_seconds).ok_or(BAD);
            if name.eq_ignore_ascii_case("expires") {
                expires = Some(seconds()?);
            } else if name.eq_ignore_ascii_case("retry-after") {
                retry_after = Some(seconds()?);
            } else if name.eq_ignore_ascii_case("reason") {
                let r = v.as_deref().filter(|r| is_token(r)).ok_or(BAD)?;
                reason = Some(r.to_ascii_lowercase());
            } else {
                params.push((name, v));
            }
        }
        let state = if value.eq_ignore_ascii_case("active") {
            SubState::Active { expires }
        } else if value.eq_ignore_ascii_case("pending") {
            SubState::Pending { expires }
        } else if value.eq_ignore_ascii_case("terminated") {
            SubState::Terminated {
                reason,
                retry_after,
            }
        } else {
            return Err(BAD);
        };
        Ok(SubscriptionState { state, params })
    }
}

impl fmt::Display for SubscriptionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.state {
            SubState::Active { expires } | SubState::Pending { expires } => {
                let name = match self.state {
                    SubState::Active { .. } => "active",
                    _ => "pending",
                };
                f.write_str(name)?;
                if let Some(e) = expires {
                    write!(f, ";expires={e}")?;
                }
            }
            SubState::Terminated {
                reason,
                retry_after,
            } => {
                f.write_str("terminated")?;
                if let Some(r) = reason {
                    write!(f, ";reason={r}")?;
                }
                if let Some(r) = retry_after {
                    write!(f, ";retry-after={r}")?;
                }
            }
        }
        write_params(f, &self.params)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_what_notify_needs() {
        assert_eq!(
            SubscriptionState::active(3600).to_string(),
            "active;expires=3600"
        );
        assert_eq!(
            SubscriptionState::pending(10).to_string(),
            "pending;expires=10"
        );
        assert_eq!(
            SubscriptionState::terminated("timeout").to_string(),
            "terminated;reason=timeout"
        );
    }

    #[test]
    fn parses_states_and_params() {
        let s: SubscriptionState = "Terminated ;reason=Rejected;retry-after=30;x=1"
            .parse()
            .unwrap();
        assert_eq!(
            s.state,
            SubState::Terminated {
                reason: Some("rejected".into()),
                retry_after: Some(30)
            }
        );
        assert_eq!(s.params, vec![("x".to_string(), Some("1".to_string()))]);
        let a: SubscriptionState = "active".parse().unwrap();
        assert_eq!(a.state, SubState::Active { expires: None });
    }

    #[test]
    fn round_trips() {
        for s in [
            "active;expires=60",
            "pending;expires=0",
            "terminated",
            "terminated;reason=noresource;retry-after=5",
            "active;expires=1;foo",
        ] {
            let v: SubscriptionState = s.parse().unwrap();
            assert_eq!(v.to_string(), s);
        }
    }

    #[test]
    fn rejects_bad_input() {
        for s in [
            "",
            "waiting",
            "active;expires=x",
            "active;expires",
            "terminated;reason",
            "terminated;retry-after=-1",
            "active;a b",
        ] {
            assert!(s.parse::<SubscriptionState>().is_err(), "{s:?}");
        }
    }
}
