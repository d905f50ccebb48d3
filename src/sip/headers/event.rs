//! The `Event` header (RFC 6665 §8.2.1, grammar in §7.2.1; compact form `o`).
//!
//! Invariant: `package` and `template` are lower-case tokens without dots in `package`;
//! parameter names keep their spelling, `id` is pulled out into [`Event::id`].

use std::fmt;
use std::str::FromStr;

use super::{is_token, parse_params, write_params, HeaderError};
use crate::ids::EventKey;

/// `Event: package[.template];id=...;params` (RFC 6665 §7.2.1 `event-type` + `event-param`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// The event package, lower-cased (`presence`, `dialog`, `message-summary`).
    pub package: String,
    /// The template part after the first dot, lower-cased (`winfo` in `presence.winfo`).
    pub template: Option<String>,
    /// The `id` parameter (RFC 6665 §8.2.1), distinguishing subscriptions in one dialog.
    pub id: Option<String>,
    /// Every other parameter in received order (`sla` of `dialog;sla`).
    pub params: Vec<(String, Option<String>)>,
}

impl Event {
    /// An event of the given package (`presence`) with no template or parameters.
    pub fn new(package: &str) -> Self {
        Event {
            package: package.to_ascii_lowercase(),
            template: None,
            id: None,
            params: Vec::new(),
        }
    }

    /// The registry name of this event: `dialog;sla` when the package is `dialog` and it has
    /// an `sla` parameter (Kamailio treats that as a package of its own), otherwise the
    /// event type (`presence`, `presence.winfo`).
    pub fn key(&self) -> EventKey {
        if self.package == "dialog" && self.has_param("sla") {
            return EventKey::new("dialog;sla");
        }
        match &self.template {
            Some(t) => EventKey::new(&format!("{}.{t}", self.package)),
            None => EventKey::new(&self.package),
        }
    }

    /// True when a parameter of that name (case-insensitive) is present.
    pub fn has_param(&self, name: &str) -> bool {
        self.params
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case(name))
    }
}

impl FromStr for Event {
    type Err = HeaderError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        const BAD: HeaderError = HeaderError::Malformed("Event");
        let s = s.trim();
        let (etype, rest) = match s.find(';') {
            Some(i) => (&s[..i], &s[i + 1..]),
            None => (s, ""),
        };
        let etype = etype.trim().to_ascii_lowercase();
        if !is_token(&etype) || etype.starts_with('.') || etype.ends_with('.') {
            return Err(BAD);
        }
        let (package, template) = match etype.split_once('.') {
            Some((p, t)) => (p.to_string(), Some(t.to_string())),
            None => (etype, None),
        };
        let mut id = None;
        let mut params = Vec::new();
        for (name, value) in parse_params(rest).ok_or(BAD)? {
            if name.eq_ignore_ascii_case("id") && id.is_none() {
                id = Some(value.ok_or(BAD)?);
            } else {
                params.push((name, value));
            }
        }
        Ok(Event {
            package,
            template,
            id,
            params,
        })
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.package)?;
        if let Some(t) = &self.template {
            write!(f, ".{t}")?;
        }
        if let Some(id) = &self.id {
            write!(f, ";id={id}")?;
        }
        write_params(f, &self.params)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_package_template_id_and_params() {
        let e: Event = " Presence.WINFO ;id=abc;foo=1".parse().unwrap();
        assert_eq!(e.package, "presence");
        assert_eq!(e.template.as_deref(), Some("winfo"));
        assert_eq!(e.id.as_deref(), Some("abc"));
        assert_eq!(e.params, vec![("foo".to_string(), Some("1".to_string()))]);
        assert_eq!(e.key().as_str(), "presence.winfo");
        assert_eq!(e.to_string(), "presence.winfo;id=abc;foo=1");
    }

    #[test]
    fn dialog_sla_is_its_own_key() {
        let e: Event = "dialog;sla".parse().unwrap();
        assert_eq!(e.key().as_str(), "dialog;sla");
        let d: Event = "dialog".parse().unwrap();
        assert_eq!(d.key().as_str(), "dialog");
        assert_eq!(Event::new("Presence").key().as_str(), "presence");
    }

    #[test]
    fn round_trips() {
        for s in [
            "presence",
            "message-summary",
            "dialog;sla",
            "presence;id=7",
            "a.b.c;x",
        ] {
            let e: Event = s.parse().unwrap();
            assert_eq!(e.to_string(), s);
            assert_eq!(e.to_string().parse::<Event>().unwrap(), e);
        }
    }

    #[test]
    fn rejects_bad_input() {
        for s in [
            "",
            " ",
            "pre sence",
            ".x",
            "x.",
            "presence;id",
            "presence;a b",
            "é",
        ] {
            assert!(s.parse::<Event>().is_err(), "{s:?}");
        }
    }
}
