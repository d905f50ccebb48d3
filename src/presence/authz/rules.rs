//! Presence authorization rule documents: the RFC 5025 subset of common-policy (RFC 4745)
//! that SPEC §4 needs, parsed into a [`RuleSet`].
//!
//! Understood: `<ruleset>` of `<rule id>`s, each with optional `<conditions>` (`<identity>`
//! with `<one id>` and `<many [domain]>` holding `<except id|domain>`; `<sphere value>`),
//! `<actions>` (`<pr:sub-handling>`) and `<transformations>` (accepted, not applied).
//! Elements are namespace-qualified: common-policy for the structure and conditions,
//! pres-rules for `sub-handling`.
//!
//! Invariants of a parsed [`RuleSet`]:
//! * rule ids are non-empty and unique; each rule has at most one sub-handling value;
//! * every `one`/`except id` holds a parsed [`PresentityUri`] (normalised with the
//!   [`UriMatch`] given to [`RuleSet::parse_with`]) and every domain is lower-case;
//! * a condition this subset does not evaluate (`<validity>`, or a condition element of
//!   another namespace) is kept as [`Condition::Unsupported`], which never matches: RFC 4745
//!   is privacy-safe, a rule whose conditions cannot all be checked grants nothing.

use serde::{Deserialize, Serialize};

use super::xml::{self, Element};
use crate::ids::{PresentityUri, UriMatch};

/// The common-policy namespace (RFC 4745 §15.2).
pub const COMMON_POLICY_NS: &str = "urn:ietf:params:xml:ns:common-policy";
/// The presence-rules namespace (RFC 5025 §9.2).
pub const PRES_RULES_NS: &str = "urn:ietf:params:xml:ns:pres-rules";

/// The `<sub-handling>` action (RFC 5025 §3.2.1), ordered by its integer value so that
/// `max` combines permissions as RFC 4745 §10.2 demands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum SubHandling {
    /// Value 0: reject the subscription (terminated, reason `rejected`).
    Block,
    /// Value 10: keep the subscription pending until the presentity decides.
    Confirm,
    /// Value 20: accept the subscription but send only a neutral "closed" document.
    PoliteBlock,
    /// Value 30: accept the subscription and send the presence document.
    Allow,
}

impl SubHandling {
    /// The RFC 5025 integer value (block 0, confirm 10, polite-block 20, allow 30).
    pub fn value(self) -> u8 {
        match self {
            SubHandling::Block => 0,
            SubHandling::Confirm => 10,
            SubHandling::PoliteBlock => 20,
            SubHandling::Allow => 30,
        }
    }

    /// The document spelling (`block`, `confirm`, `polite-block`, `allow`).
    pub fn as_str(self) -> &'static str {
        match self {
            SubHandling::Block => "block",
            SubHandling::Confirm => "confirm",
            SubHandling::PoliteBlock => "polite-block",
            SubHandling::Allow => "allow",
        }
    }

    /// Parses the document spelling (surrounding whitespace ignored, case-sensitive as the
    /// XML schema enumeration is).
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim() {
            "block" => Some(SubHandling::Block),
            "confirm" => Some(SubHandling::Confirm),
            "polite-block" => Some(SubHandling::PoliteBlock),
            "allow" => Some(SubHandling::Allow),
            _ => None,
        }
    }
}

/// A parsed rule document: the rules in document order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RuleSet {
    rules: Vec<Rule>,
}

/// One `<rule>`: it applies when all its conditions match (RFC 4745 §10.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// The rule's `id` attribute (unique in its document).
    pub id: String,
    /// The conditions, all of which must match; empty = the rule always applies.
    pub conditions: Vec<Condition>,
    /// The rule's sub-handling action, if it has one.
    pub sub_handling: Option<SubHandling>,
}

/// One condition element of a rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Condition {
    /// `<identity>`: matches when any of its alternatives matches the watcher.
    Identity(Vec<IdentityMatch>),
    /// `<sphere value>`: matches when the presentity's current sphere is one of these
    /// (whitespace-separated tokens of `value`, compared case-insensitively).
    Sphere(Vec<String>),
    /// A condition this implementation does not evaluate (its local name); never matches.
    Unsupported(String),
}

/// An alternative inside `<identity>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IdentityMatch {
    /// `<one id>`: exactly this watcher.
    One(PresentityUri),
    /// `<many [domain]>`: every watcher (of `domain`, lower-case, when given) not excepted.
    Many {
        /// The domain the watcher's host must equal; `None` = any domain.
        domain: Option<String>,
        /// `<except>` children: watchers that this alternative does not match.
        except: Vec<Except>,
    },
}

/// An `<except>` inside `<many>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Except {
    /// `<except id>`: this watcher.
    Id(PresentityUri),
    /// `<except domain>`: every watcher of this (lower-case) domain.
    Domain(String),
}

impl RuleSet {
    /// Parses a rule document, normalising identity URIs with [`UriMatch::CaseSensitive`]
    /// (`sip_uri_match = 0`). `Err` is a short reason, never the document.
    pub fn parse(doc: &[u8]) -> Result<RuleSet, String> {
        Self::parse_with(doc, UriMatch::CaseSensitive)
    }

    /// Parses a rule document, normalising identity URIs like watcher URIs are normalised
    /// under `mode` so that both compare equal when they name the same user.
    pub fn parse_with(doc: &[u8], mode: UriMatch) -> Result<RuleSet, String> {
        let root = xml::parse(doc)?;
        if !root.is(COMMON_POLICY_NS, "ruleset") {
            return Err("root element is not <ruleset>".to_string());
        }
        let mut rules: Vec<Rule> = Vec::new();
        for el in &root.children {
            if el.is(COMMON_POLICY_NS, "rule") {
                let rule = parse_rule(el, mode)?;
                if rules.iter().any(|r| r.id == rule.id) {
                    return Err(format!("duplicate rule id {:?}", short(&rule.id)));
                }
                rules.push(rule);
            } else if el.ns == COMMON_POLICY_NS || el.ns.is_empty() {
                return Err(format!("unexpected <{}> in <ruleset>", short(&el.local)));
            }
            // Elements of other namespaces are extensions: ignored.
        }
        Ok(RuleSet { rules })
    }

    /// The rules in document order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }
}

/// Parses one `<rule>`.
fn parse_rule(el: &Element, mode: UriMatch) -> Result<Rule, String> {
    let id = el.attr("id").map(str::trim).unwrap_or("");
    if id.is_empty() {
        return Err("<rule> without id".to_string());
    }
    let mut rule = Rule {
        id: id.to_string(),
        conditions: Vec::new(),
        sub_handling: None,
    };
    let mut seen: [bool; 3] = [false; 3];
    for part in &el.children {
        let slot = match (part.ns.as_str(), part.local.as_str()) {
            (COMMON_POLICY_NS, "conditions") => 0,
            (COMMON_POLICY_NS, "actions") => 1,
            (COMMON_POLICY_NS, "transformations") => 2,
            _ => {
                return Err(format!(
                    "unexpected <{}> in rule {:?}",
                    short(&part.local),
                    short(id)
                ))
            }
        };
        if std::mem::replace(&mut seen[slot], true) {
            return Err(format!("repeated <{}> in rule {:?}", part.local, short(id)));
        }
        match slot {
            0 => rule.conditions = parse_conditions(part, mode)?,
            1 => rule.sub_handling = parse_actions(part, id)?,
            // Transformations (RFC 5025 §3.3) are not applied; their content is ignored.
            _ => {}
        }
    }
    Ok(rule)
}

/// Parses `<conditions>`.
fn parse_conditions(el: &Element, mode: UriMatch) -> Result<Vec<Condition>, String> {
    el.children
        .iter()
        .map(|c| match (c.ns.as_str(), c.local.as_str()) {
            (COMMON_POLICY_NS, "identity") => parse_identity(c, mode).map(Condition::Identity),
            (COMMON_POLICY_NS, "sphere") => {
                let value = c.attr("value").unwrap_or("");
                let tokens: Vec<String> = value.split_whitespace().map(str::to_string).collect();
                if tokens.is_empty() {
                    return Err("<sphere> without value".to_string());
                }
                Ok(Condition::Sphere(tokens))
            }
            (COMMON_POLICY_NS, "validity") => Ok(Condition::Unsupported(c.local.clone())),
            (COMMON_POLICY_NS, _) | ("", _) => {
                Err(format!("unexpected <{}> in <conditions>", short(&c.local)))
            }
            _ => Ok(Condition::Unsupported(c.local.clone())),
        })
        .collect()
}

/// Parses `<actions>`: the rule's sub-handling. Actions of other namespaces are ignored.
fn parse_actions(el: &Element, rule: &str) -> Result<Option<SubHandling>, String> {
    let mut out = None;
    for a in &el.children {
        if a.is(PRES_RULES_NS, "sub-handling") {
            let text = a.text.trim();
            let h = SubHandling::parse(text)
                .ok_or_else(|| format!("unknown sub-handling {:?}", short(text)))?;
            if out.replace(h).is_some() {
                return Err(format!("repeated <sub-handling> in rule {:?}", short(rule)));
            }
        } else if (a.ns == COMMON_POLICY_NS || a.ns.is_empty()) && a.local == "sub-handling" {
            return Err("<sub-handling> must be in the pres-rules namespace".to_string());
        } else if a.ns == COMMON_POLICY_NS || a.ns.is_empty() {
            return Err(format!("unexpected <{}> in <actions>", short(&a.local)));
        }
    }
    Ok(out)
}

/// Parses `<identity>`.
fn parse_identity(el: &Element, mode: UriMatch) -> Result<Vec<IdentityMatch>, String> {
    if el.children.is_empty() {
        return Err("empty <identity>".to_string());
    }
    let mut out = Vec::new();
    for c in &el.children {
        if c.is(COMMON_POLICY_NS, "one") {
            out.push(IdentityMatch::One(uri_attr(c, mode)?));
        } else if c.is(COMMON_POLICY_NS, "many") {
            let domain = domain_attr(c)?;
            let mut except = Vec::new();
            for x in &c.children {
                if x.ns != COMMON_POLICY_NS && !x.ns.is_empty() {
                    continue; // an extension: ignored
                }
                if x.local != "except" {
                    return Err(format!("unexpected <{}> in <many>", short(&x.local)));
                }
                except.push(match (x.attr("id"), x.attr("domain")) {
                    (Some(_), None) => Except::Id(uri_attr(x, mode)?),
                    (None, Some(_)) => Except::Domain(domain_attr(x)?.unwrap_or_default()),
                    _ => return Err("<except> needs exactly one of id, domain".to_string()),
                });
            }
            out.push(IdentityMatch::Many { domain, except });
        } else if c.ns == COMMON_POLICY_NS || c.ns.is_empty() {
            return Err(format!("unexpected <{}> in <identity>", short(&c.local)));
        }
        // Other namespaces (e.g. OMA's external-list) are alternatives we cannot evaluate:
        // they match nobody, so they are simply left out.
    }
    Ok(out)
}

/// The `id` attribute of `el` as a watcher URI.
fn uri_attr(el: &Element, mode: UriMatch) -> Result<PresentityUri, String> {
    let id = el.attr("id").unwrap_or("");
    PresentityUri::parse(id, mode).ok_or_else(|| format!("<{}> id is not a URI", el.local))
}

/// The `domain` attribute of `el`, lower-cased; `Err` when present but empty.
fn domain_attr(el: &Element) -> Result<Option<String>, String> {
    match el.attr("domain").map(str::trim) {
        None => Ok(None),
        Some("") => Err(format!("<{}> with an empty domain", el.local)),
        Some(d) => Ok(Some(d.to_ascii_lowercase())),
    }
}

/// At most 20 characters of a document-supplied name, so that reasons stay short.
fn short(s: &str) -> String {
    match s.char_indices().nth(20) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests;
