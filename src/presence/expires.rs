//! The Expires decision for PUBLISH and SUBSCRIBE (SPEC §3.1.2 / §3.2.1).
//!
//! Kamailio's `max_expires`, `min_expires` and `min_expires_action`, as one pure function.
//! Invariants: a decided value is never above `max` (the package default included); 0 is
//! never changed (it means removal / unsubscribe); a non-zero value below a non-zero `min` is
//! either refused (423 with Min-Expires) or raised to `min`, never silently kept.

/// What to do with a non-zero Expires below `min_expires` (`[presence] min_expires_action`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MinExpiresAction {
    /// `min_expires_action = 1`: reply 423 Interval Too Brief with a Min-Expires header.
    #[default]
    Reply423,
    /// `min_expires_action = 2`: accept the request with the Expires raised to `min_expires`.
    Raise,
}

/// The configured bounds on Expires.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExpiresRules {
    /// `max_expires`: larger requested (or default) values are lowered to this.
    pub max: u32,
    /// `min_expires`: smaller non-zero values trigger `action`; 0 = no minimum.
    pub min: u32,
    /// What happens below `min`.
    pub action: MinExpiresAction,
}

impl Default for ExpiresRules {
    /// Kamailio's defaults: `max_expires = 3600`, `min_expires = 0`, `min_expires_action = 1`.
    fn default() -> Self {
        ExpiresRules {
            max: 3600,
            min: 0,
            action: MinExpiresAction::Reply423,
        }
    }
}

/// The outcome of [`decide`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExpiresDecision {
    /// Proceed with this many seconds (0 = remove / unsubscribe).
    Use(u32),
    /// Reply 423 Interval Too Brief with `Min-Expires: min_expires`.
    TooBrief {
        /// The value for the Min-Expires header.
        min_expires: u32,
    },
}

/// Decides the Expires of a request.
///
/// Absent → the package `default`; 0 stays 0 (removal / unsubscribe); above `rules.max` →
/// `rules.max`; `0 < x < rules.min` → per `rules.action` (423 with Min-Expires, or raised to
/// `min`). The default itself is also capped at `max`. When `min > max` (a configuration the
/// config layer should reject) the raised value is still capped at `max`.
pub fn decide(requested: Option<u32>, default: u32, rules: &ExpiresRules) -> ExpiresDecision {
    let value = requested.unwrap_or(default);
    if value == 0 {
        return ExpiresDecision::Use(0);
    }
    if rules.min > 0 && value < rules.min {
        return match rules.action {
            MinExpiresAction::Reply423 => ExpiresDecision::TooBrief {
                min_expires: rules.min,
            },
            MinExpiresAction::Raise => ExpiresDecision::Use(rules.min.min(rules.max)),
        };
    }
    ExpiresDecision::Use(value.min(rules.max))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(max: u32, min: u32, action: MinExpiresAction) -> ExpiresRules {
        ExpiresRules { max, min, action }
    }

    #[test]
    fn decide_table() {
        use ExpiresDecision::{TooBrief, Use};
        use MinExpiresAction::{Raise, Reply423};
        let cases: &[(Option<u32>, u32, ExpiresRules, ExpiresDecision)] = &[
            // absent → default
            (None, 3600, rules(7200, 0, Reply423), Use(3600)),
            // default above max → capped
            (None, 3600, rules(600, 0, Reply423), Use(600)),
            // 0 stays 0, even with a minimum
            (Some(0), 3600, rules(3600, 60, Reply423), Use(0)),
            (Some(0), 3600, rules(3600, 60, Raise), Use(0)),
            // above max → max
            (Some(100_000), 3600, rules(3600, 0, Reply423), Use(3600)),
            // within bounds → unchanged
            (Some(120), 3600, rules(3600, 60, Reply423), Use(120)),
            (Some(60), 3600, rules(3600, 60, Reply423), Use(60)),
            // below min, both actions
            (
                Some(30),
                3600,
                rules(3600, 60, Reply423),
                TooBrief { min_expires: 60 },
            ),
            (Some(30), 3600, rules(3600, 60, Raise), Use(60)),
            // min = 0 means no minimum
            (Some(1), 3600, rules(3600, 0, Reply423), Use(1)),
            // a default below min is subject to min as well
            (
                None,
                10,
                rules(3600, 60, Reply423),
                TooBrief { min_expires: 60 },
            ),
            // raised value still capped by max
            (Some(5), 3600, rules(30, 60, Raise), Use(30)),
        ];
        for (i, (req, default, r, want)) in cases.iter().enumerate() {
            assert_eq!(
                decide(*req, *default, r),
                *want,
                "case {i}: {req:?} default {default} {r:?}"
            );
        }
    }

    #[test]
    fn default_rules_are_kamailios() {
        let r = ExpiresRules::default();
        assert_eq!(
            (r.max, r.min, r.action),
            (3600, 0, MinExpiresAction::Reply423)
        );
    }
}
