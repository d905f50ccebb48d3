//! Evaluating a [`RuleSet`] for one watcher (RFC 4745 §10, RFC 5025 §3.2.1).
//!
//! Invariants:
//! * A rule applies when every one of its conditions matches; a rule without conditions
//!   always applies; [`Condition::Unsupported`] never matches (privacy-safe).
//! * The sub-handling values of all applicable rules combine by **maximum** (RFC 4745
//!   §10.2 for integer-valued permissions): `allow` beats everything, `block` loses to
//!   everything. The order of rules in the document does not matter.
//! * The sphere condition is consulted only when `sphere_check` is on
//!   (`enable_sphere_check = 1`); when off it is treated as satisfied, as Kamailio skips it.
//!   When on and the presentity has no known sphere, the condition does not match.

use super::rules::{Condition, Except, IdentityMatch, Rule, RuleSet, SubHandling};
use crate::ids::PresentityUri;

/// The sub-handling for `watcher`: the combined value of the applicable rules, or
/// [`SubHandling::Confirm`] when no applicable rule carries one.
///
/// RFC 5025 names `block` (value 0) as the value when no permission is granted; presenced
/// instead keeps such a watcher pending, as Kamailio's `pres_watcher_allowed` does and as
/// SPEC §4 describes (an unknown watcher waits for the presentity's decision, which
/// `presence.winfo` tells it about). [`combined`] gives the undefaulted result.
pub fn evaluate(
    rules: &RuleSet,
    watcher: &PresentityUri,
    sphere: Option<&str>,
    sphere_check: bool,
) -> SubHandling {
    combined(rules, watcher, sphere, sphere_check).unwrap_or(SubHandling::Confirm)
}

/// The RFC 4745 combination: the maximum sub-handling of the rules that apply to
/// `watcher`; `None` when no applicable rule has a sub-handling action.
pub fn combined(
    rules: &RuleSet,
    watcher: &PresentityUri,
    sphere: Option<&str>,
    sphere_check: bool,
) -> Option<SubHandling> {
    rules
        .rules()
        .iter()
        .filter(|r| applies(r, watcher, sphere, sphere_check))
        .filter_map(|r| r.sub_handling)
        .max()
}

/// The rules of `rules` that apply to `watcher`, in document order (for diagnostics).
pub fn applicable<'a>(
    rules: &'a RuleSet,
    watcher: &PresentityUri,
    sphere: Option<&str>,
    sphere_check: bool,
) -> Vec<&'a Rule> {
    rules
        .rules()
        .iter()
        .filter(|r| applies(r, watcher, sphere, sphere_check))
        .collect()
}

/// Whether every condition of `rule` holds.
fn applies(rule: &Rule, watcher: &PresentityUri, sphere: Option<&str>, sphere_check: bool) -> bool {
    rule.conditions
        .iter()
        .all(|c| condition_matches(c, watcher, sphere, sphere_check))
}

/// Whether one condition holds.
fn condition_matches(
    c: &Condition,
    watcher: &PresentityUri,
    sphere: Option<&str>,
    sphere_check: bool,
) -> bool {
    match c {
        Condition::Identity(alts) => alts.iter().any(|a| identity_matches(a, watcher)),
        Condition::Sphere(_) if !sphere_check => true,
        Condition::Sphere(tokens) => {
            sphere.is_some_and(|s| tokens.iter().any(|t| t.eq_ignore_ascii_case(s.trim())))
        }
        Condition::Unsupported(_) => false,
    }
}

/// Whether one `<identity>` alternative names `watcher`.
fn identity_matches(m: &IdentityMatch, watcher: &PresentityUri) -> bool {
    match m {
        IdentityMatch::One(id) => id == watcher,
        IdentityMatch::Many { domain, except } => {
            let host = watcher.host();
            let in_domain = domain.as_deref().is_none_or(|d| d == host);
            in_domain
                && !except.iter().any(|x| match x {
                    Except::Id(id) => id == watcher,
                    Except::Domain(d) => d == host,
                })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::UriMatch;

    fn uri(s: &str) -> PresentityUri {
        PresentityUri::parse(s, UriMatch::CaseSensitive).unwrap()
    }

    fn doc(rules: &str) -> RuleSet {
        let xml = format!(
            r#"<ruleset xmlns="urn:ietf:params:xml:ns:common-policy"
                 xmlns:pr="urn:ietf:params:xml:ns:pres-rules">{rules}</ruleset>"#
        );
        RuleSet::parse(xml.as_bytes()).unwrap()
    }

    fn rule(id: &str, conditions: &str, action: &str) -> String {
        format!(
            "<rule id='{id}'><conditions>{conditions}</conditions>\
             <actions><pr:sub-handling>{action}</pr:sub-handling></actions></rule>"
        )
    }

    fn eval(rs: &RuleSet, w: &str) -> SubHandling {
        evaluate(rs, &uri(w), None, false)
    }

    #[test]
    fn one_many_and_except() {
        let rs = doc(&[
            rule(
                "a",
                "<identity><one id='sip:bob@example.com'/></identity>",
                "allow",
            ),
            rule(
                "b",
                "<identity><many domain='Corp.example'><except id='sip:eve@corp.example'/>\
                 </many></identity>",
                "polite-block",
            ),
            rule(
                "c",
                "<identity><many><except domain='spam.example'/>\
                 <except domain='corp.example'/></many></identity>",
                "block",
            ),
        ]
        .concat());
        assert_eq!(eval(&rs, "sip:bob@example.com"), SubHandling::Allow);
        assert_eq!(
            eval(&rs, "sip:bob@EXAMPLE.com:5060;transport=tcp"),
            SubHandling::Allow
        );
        // The user part is case-sensitive under sip_uri_match = 0; carol hits only `c`.
        assert_eq!(eval(&rs, "sip:Bob@example.com"), SubHandling::Block);
        assert_eq!(
            eval(&rs, "sip:carol@corp.example"),
            SubHandling::PoliteBlock
        );
        // eve is excepted from `b` and `c` excepts the whole domain: no rule applies.
        assert_eq!(eval(&rs, "sip:eve@corp.example"), SubHandling::Confirm);
        assert_eq!(
            combined(&rs, &uri("sip:eve@corp.example"), None, false),
            None
        );
        assert_eq!(eval(&rs, "sip:x@spam.example"), SubHandling::Confirm);
        assert_eq!(eval(&rs, "sip:x@other.example"), SubHandling::Block);
        let ids: Vec<&str> = applicable(&rs, &uri("sip:bob@example.com"), None, false)
            .into_iter()
            .map(|r| r.id.as_str())
            .collect();
        assert_eq!(ids, ["a", "c"]);
    }

    #[test]
    fn combining_takes_the_maximum_whatever_the_order() {
        let any = "<identity><many/></identity>";
        let all = [
            SubHandling::Block,
            SubHandling::Confirm,
            SubHandling::PoliteBlock,
            SubHandling::Allow,
        ];
        for (i, a) in all.iter().enumerate() {
            for (j, b) in all.iter().enumerate() {
                let rs = doc(&[rule("x", any, a.as_str()), rule("y", any, b.as_str())].concat());
                let want = all[i.max(j)];
                assert_eq!(eval(&rs, "sip:w@h.example"), want, "{a:?} + {b:?}");
            }
        }
        // A matching rule without sub-handling does not lower an allow, nor grant anything.
        let rs = doc(&format!(
            "{}<rule id='n'><conditions>{any}</conditions></rule>",
            rule("y", any, "block")
        ));
        assert_eq!(eval(&rs, "sip:w@h.example"), SubHandling::Block);
        let rs = doc(&format!(
            "<rule id='n'><conditions>{any}</conditions></rule>"
        ));
        assert_eq!(combined(&rs, &uri("sip:w@h.example"), None, false), None);
    }

    #[test]
    fn conditions_are_anded_and_empty_conditions_always_apply() {
        let rs = doc(&[
            "<rule id='all'><actions><pr:sub-handling>confirm</pr:sub-handling></actions></rule>",
            &rule(
                "both",
                "<identity><one id='sip:bob@example.com'/></identity>\
                 <identity><many domain='example.com'/></identity>\
                 <sphere value='work'/>",
                "allow",
            ),
        ]
        .concat());
        let bob = uri("sip:bob@example.com");
        assert_eq!(evaluate(&rs, &bob, Some("work"), true), SubHandling::Allow);
        assert_eq!(
            evaluate(&rs, &bob, Some("home"), true),
            SubHandling::Confirm
        );
        assert_eq!(eval(&rs, "sip:zed@else.example"), SubHandling::Confirm);
        assert_eq!(
            applicable(&rs, &uri("sip:zed@else.example"), None, false).len(),
            1
        );
    }

    #[test]
    fn sphere_only_with_the_flag() {
        let rs = doc(&rule("s", "<sphere value='work  Meeting'/>", "allow"));
        let w = uri("sip:w@h.example");
        // Flag off: the sphere is not consulted, whatever it is.
        assert_eq!(evaluate(&rs, &w, None, false), SubHandling::Allow);
        assert_eq!(evaluate(&rs, &w, Some("home"), false), SubHandling::Allow);
        // Flag on: the presentity's sphere must be one of the tokens.
        assert_eq!(evaluate(&rs, &w, Some("work"), true), SubHandling::Allow);
        assert_eq!(evaluate(&rs, &w, Some("meeting"), true), SubHandling::Allow);
        assert_eq!(evaluate(&rs, &w, Some("home"), true), SubHandling::Confirm);
        assert_eq!(evaluate(&rs, &w, None, true), SubHandling::Confirm);
    }

    #[test]
    fn unsupported_conditions_never_match() {
        let rs = doc(&rule(
            "v",
            "<validity><from>2000-01-01T00:00:00Z</from><until>2999-01-01T00:00:00Z</until>\
             </validity>",
            "allow",
        ));
        assert_eq!(eval(&rs, "sip:w@h.example"), SubHandling::Confirm);
        let rs = doc(&rule(
            "o",
            "<oma:other-identity xmlns:oma='urn:oma:xml:xdm:common-policy'/>",
            "allow",
        ));
        assert_eq!(eval(&rs, "sip:w@h.example"), SubHandling::Confirm);
    }

    #[test]
    fn case_insensitive_mode_matches_normalised_watchers() {
        let xml = br#"<ruleset xmlns="urn:ietf:params:xml:ns:common-policy"
            xmlns:pr="urn:ietf:params:xml:ns:pres-rules"><rule id="a"><conditions><identity>
            <one id="sip:Bob@Example.com"/></identity></conditions><actions>
            <pr:sub-handling>allow</pr:sub-handling></actions></rule></ruleset>"#;
        let rs = RuleSet::parse_with(xml, UriMatch::CaseInsensitive).unwrap();
        let w = PresentityUri::parse("sip:BOB@example.COM", UriMatch::CaseInsensitive).unwrap();
        assert_eq!(evaluate(&rs, &w, None, false), SubHandling::Allow);
        let strict = RuleSet::parse(xml).unwrap();
        assert_eq!(evaluate(&strict, &w, None, false), SubHandling::Confirm);
    }
}
