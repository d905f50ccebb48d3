//! The `Allow-Events` header (RFC 6665 §8.2.2; compact form `u`): the event packages a node
//! accepts, sent with 489 Bad Event and in OPTIONS responses.
//!
//! Invariant: every entry is a lower-case event type (`presence`, `presence.winfo`); like
//! Kamailio, an entry may carry parameters (`dialog;sla`) because that is a registry name.

use std::fmt;
use std::str::FromStr;

use super::{is_token, split_quoted, HeaderError};

/// `Allow-Events: event-type *(, event-type)` (RFC 6665 §8.2.2).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AllowEvents(pub Vec<String>);

impl AllowEvents {
    /// The list of registry names, lower-cased, in the order given.
    pub fn new<I, S>(events: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        AllowEvents(
            events
                .into_iter()
                .map(|e| e.as_ref().trim().to_ascii_lowercase())
                .collect(),
        )
    }

    /// True when the list names `event` (case-insensitive).
    pub fn contains(&self, event: &str) -> bool {
        self.0.iter().any(|e| e.eq_ignore_ascii_case(event))
    }
}

impl FromStr for AllowEvents {
    type Err = HeaderError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = Vec::new();
        for item in split_quoted(s, ',') {
            let item = item.trim();
            let etype = item.split(';').next().unwrap_or("").trim();
            if !is_token(etype) {
                return Err(HeaderError::Malformed("Allow-Events"));
            }
            out.push(item.to_ascii_lowercase());
        }
        Ok(AllowEvents(out))
    }
}

impl fmt::Display for AllowEvents {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            f.write_str(e)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displays_comma_joined_and_round_trips() {
        let a = AllowEvents::new(["presence", "Presence.Winfo", "dialog;sla"]);
        assert_eq!(a.to_string(), "presence, presence.winfo, dialog;sla");
        assert_eq!(a.to_string().parse::<AllowEvents>().unwrap(), a);
        assert!(a.contains("PRESENCE.winfo"));
        assert!(!a.contains("dialog"));
    }

    #[test]
    fn parses_loose_spacing() {
        let a: AllowEvents = "presence ,message-summary,  dialog".parse().unwrap();
        assert_eq!(a.0, vec!["presence", "message-summary", "dialog"]);
    }

    #[test]
    fn rejects_empty_items() {
        for s in ["", "presence,,dialog", "presence, a b", ","] {
            assert!(s.parse::<AllowEvents>().is_err(), "{s:?}");
        }
    }
}
