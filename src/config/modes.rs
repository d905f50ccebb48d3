//! Kamailio integer modes of `[presence]` as typed enums.
//!
//! Owns the mapping between Kamailio's magic numbers and named variants, in both directions
//! (`value()` gives the number back for logs and `--check-config`). The rest of the crate
//! matches on variants and never sees the integers. Each enum deserializes from a TOML
//! integer and rejects any other number with the list of allowed values.

use std::fmt;

use serde::de::{self, Deserializer};
use serde::Deserialize;

/// Declares a fieldless enum whose variants are Kamailio integers, with `TryFrom<i64>`
/// (error = "allowed values are …"), `value()` and a `Display` of `N (label)`.
macro_rules! int_mode {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$vmeta:meta])* $var:ident = $val:literal => $label:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
        #[serde(try_from = "i64")]
        pub enum $name {
            $( $(#[$vmeta])* $var = $val, )+
        }

        impl $name {
            /// Every variant with its Kamailio integer and a short label.
            const ALL: &'static [($name, &'static str)] = &[$( ($name::$var, $label), )+];

            /// The Kamailio integer of this mode.
            pub fn value(self) -> i64 {
                self as i64
            }

            fn label(self) -> &'static str {
                $name::ALL
                    .iter()
                    .find(|(v, _)| *v == self)
                    .map(|(_, l)| *l)
                    .unwrap_or("")
            }
        }

        impl TryFrom<i64> for $name {
            type Error = String;

            fn try_from(v: i64) -> Result<Self, String> {
                $name::ALL
                    .iter()
                    .find(|(m, _)| m.value() == v)
                    .map(|(m, _)| *m)
                    .ok_or_else(|| allowed_list($name::ALL.iter().map(|(m, l)| (m.value(), *l))))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{} ({})", self.value(), self.label())
            }
        }
    };
}

/// `allowed values are 1 (a), 2 (b) and 3 (c)`.
fn allowed_list(items: impl Iterator<Item = (i64, &'static str)>) -> String {
    let parts: Vec<String> = items.map(|(v, l)| format!("{v} ({l})")).collect();
    match parts.split_last() {
        Some((last, rest)) if !rest.is_empty() => {
            format!("allowed values are {} and {last}", rest.join(", "))
        }
        Some((last, _)) => format!("allowed value is {last}"),
        None => String::from("no value is allowed"),
    }
}

int_mode! {
    /// `subs_db_mode`: where subscription dialogs live.
    pub enum SubsDbMode {
        /// 0: memory only; subscriptions do not survive a restart.
        Memory = 0 => "memory only",
        /// 1: stored and flushed to sled before the 2xx is sent.
        WriteThrough = 1 => "write-through",
        /// 2: kept in memory, flushed every `db_update_period`.
        WriteBack = 2 => "write-back",
        /// 3: no actor keeps state between messages; every message loads from and stores to sled.
        DbOnly = 3 => "DB only",
    }
}

int_mode! {
    /// `publ_cache`: where publications live.
    pub enum PublCache {
        /// 0: no in-memory index; every lookup reads sled.
        None = 0 => "no cache",
        /// 1: in-memory index of (URI, event) that have publications; bodies in sled.
        Index = 1 => "index in memory",
        /// 2: everything in memory, nothing written to sled.
        Full = 2 => "all in memory",
    }
}

int_mode! {
    /// `min_expires_action`: what to do with a non-zero Expires below `min_expires`.
    pub enum MinExpiresAction {
        /// 1: reply 423 Interval Too Brief with Min-Expires (RFC compliant).
        Reply423 = 1 => "reply 423",
        /// 2: accept and raise the expiry to `min_expires`.
        Raise = 2 => "raise to min_expires",
    }
}

int_mode! {
    /// `subs_remove_match`: how a NOTIFY reply finds the subscription to remove.
    pub enum SubsRemoveMatch {
        /// 0: by our To-tag only.
        ToTag = 0 => "match To-tag",
        /// 1: by Call-ID, From-tag and To-tag.
        Dialog = 1 => "match Call-ID, From-tag and To-tag",
    }
}

int_mode! {
    /// `retrieve_order`: the order in which publications are aggregated.
    pub enum RetrieveOrder {
        /// 0: newest first by received time.
        ReceivedTime = 0 => "by received time",
        /// 1: as listed in `retrieve_order_by`.
        OrderBy = 1 => "by retrieve_order_by",
    }
}

/// `local_log_level`: Kamailio's log levels (`L_ALERT` −5 … `L_ERR` −1, `L_WARN` 0,
/// `L_NOTICE` 1, `L_INFO` 2, `L_DBG` 3) mapped onto tracing levels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(try_from = "i64")]
pub enum LocalLogLevel {
    /// −5 … −1 (`L_ALERT`, `L_BUG`, `L_CRIT2`, `L_CRIT`, `L_ERR`).
    Error,
    /// 0 (`L_WARN`).
    Warn,
    /// 1 (`L_NOTICE`); logged at tracing's INFO level.
    Notice,
    /// 2 (`L_INFO`).
    Info,
    /// 3 (`L_DBG`).
    Debug,
}

impl LocalLogLevel {
    /// The tracing level the presence module's informational lines are emitted at.
    pub fn tracing_level(self) -> tracing::Level {
        match self {
            LocalLogLevel::Error => tracing::Level::ERROR,
            LocalLogLevel::Warn => tracing::Level::WARN,
            LocalLogLevel::Notice | LocalLogLevel::Info => tracing::Level::INFO,
            LocalLogLevel::Debug => tracing::Level::DEBUG,
        }
    }
}

impl TryFrom<i64> for LocalLogLevel {
    type Error = String;

    fn try_from(v: i64) -> Result<Self, String> {
        Ok(match v {
            -5..=-1 => LocalLogLevel::Error,
            0 => LocalLogLevel::Warn,
            1 => LocalLogLevel::Notice,
            2 => LocalLogLevel::Info,
            3 => LocalLogLevel::Debug,
            _ => {
                return Err(String::from(
                    "allowed values are -5 to -1 (error), 0 (warn), 1 (notice), 2 (info) \
                     and 3 (debug)",
                ))
            }
        })
    }
}

/// The order keys are the presence core's own types: a field (`priority`,
/// `received_time`) and a direction (a field written without one sorts descending: highest
/// priority / newest first).
pub use crate::presence::publication::{OrderField, SortDir as SortDirection};

/// One `retrieve_order_by` item: a field and its direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct OrderKey {
    /// What to order by.
    pub field: OrderField,
    /// In which direction.
    pub direction: SortDirection,
}

const ORDER_BY_ALLOWED: &str = "allowed: a comma list of priority and received_time, each \
                                optionally followed by desc or asc, e.g. \"priority, received_time desc\"";

/// Parses `"priority, received_time asc"` (case-insensitive, no repeated field).
pub(crate) fn parse_order_by(s: &str) -> Result<Vec<OrderKey>, String> {
    let mut keys: Vec<OrderKey> = Vec::new();
    for item in s.split(',') {
        let mut words = item.split_whitespace();
        let field = match words.next().map(str::to_ascii_lowercase).as_deref() {
            Some("priority") => OrderField::Priority,
            Some("received_time") => OrderField::ReceivedTime,
            _ => return Err(ORDER_BY_ALLOWED.to_string()),
        };
        let direction = match words.next().map(str::to_ascii_lowercase).as_deref() {
            None | Some("desc") => SortDirection::Desc,
            Some("asc") => SortDirection::Asc,
            Some(_) => return Err(ORDER_BY_ALLOWED.to_string()),
        };
        if words.next().is_some() || keys.iter().any(|k| k.field == field) {
            return Err(ORDER_BY_ALLOWED.to_string());
        }
        keys.push(OrderKey { field, direction });
    }
    Ok(keys)
}

/// Field deserializer for `retrieve_order_by`.
pub(crate) fn order_by<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<OrderKey>, D::Error> {
    parse_order_by(&String::deserialize(d)?).map_err(de::Error::custom)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_round_trip_their_kamailio_values() {
        for v in 0..=3 {
            assert_eq!(SubsDbMode::try_from(v).unwrap().value(), v);
        }
        assert_eq!(PublCache::try_from(2), Ok(PublCache::Full));
        assert_eq!(MinExpiresAction::try_from(2), Ok(MinExpiresAction::Raise));
        assert_eq!(SubsRemoveMatch::try_from(1), Ok(SubsRemoveMatch::Dialog));
        assert_eq!(RetrieveOrder::try_from(0), Ok(RetrieveOrder::ReceivedTime));
        assert_eq!(SubsDbMode::WriteBack.to_string(), "2 (write-back)");
    }

    #[test]
    fn bad_mode_lists_allowed_values() {
        assert_eq!(
            MinExpiresAction::try_from(3).unwrap_err(),
            "allowed values are 1 (reply 423) and 2 (raise to min_expires)"
        );
        assert_eq!(
            SubsDbMode::try_from(4).unwrap_err(),
            "allowed values are 0 (memory only), 1 (write-through), 2 (write-back) and 3 (DB only)"
        );
        assert!(PublCache::try_from(-1)
            .unwrap_err()
            .contains("2 (all in memory)"));
    }

    #[test]
    fn log_levels_follow_kamailio_numbers() {
        assert_eq!(LocalLogLevel::try_from(-3), Ok(LocalLogLevel::Error));
        assert_eq!(LocalLogLevel::try_from(0), Ok(LocalLogLevel::Warn));
        assert_eq!(
            LocalLogLevel::try_from(2).unwrap().tracing_level(),
            tracing::Level::INFO
        );
        assert_eq!(
            LocalLogLevel::try_from(3).unwrap().tracing_level(),
            tracing::Level::DEBUG
        );
        assert!(LocalLogLevel::try_from(4).is_err());
        assert!(LocalLogLevel::try_from(-6).is_err());
    }

    #[test]
    fn order_by_parses_fields_and_directions() {
        let keys = parse_order_by("priority, RECEIVED_TIME asc").unwrap();
        assert_eq!(
            keys,
            vec![
                OrderKey {
                    field: OrderField::Priority,
                    direction: SortDirection::Desc
                },
                OrderKey {
                    field: OrderField::ReceivedTime,
                    direction: SortDirection::Asc
                },
            ]
        );
        for bad in [
            "",
            "priority,",
            "size",
            "priority sideways",
            "priority, priority",
            "priority desc x",
        ] {
            assert!(parse_order_by(bad).is_err(), "{bad:?} accepted");
        }
    }
}
