//! Tests of the authorization decision: every policy × rule action, statuses and codes.

use super::*;
use crate::ids::UriMatch;

fn uri(s: &str) -> PresentityUri {
    PresentityUri::parse(s, UriMatch::CaseSensitive).unwrap()
}

/// A rule document giving `action` to every watcher of example.net.
fn rules_with(action: &str) -> RuleSet {
    let xml = format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<cp:ruleset xmlns:cp="urn:ietf:params:xml:ns:common-policy"
            xmlns:pr="urn:ietf:params:xml:ns:pres-rules">
  <cp:rule id="r1">
    <cp:conditions><cp:identity><cp:many domain="example.net"/></cp:identity></cp:conditions>
    <cp:actions><pr:sub-handling>{action}</pr:sub-handling></cp:actions>
    <cp:transformations/>
  </cp:rule>
</cp:ruleset>"#
    );
    RuleSet::parse(xml.as_bytes()).unwrap()
}

fn rejected() -> WatcherStatus {
    WatcherStatus::Terminated {
        reason: "rejected".to_string(),
    }
}

#[test]
fn each_policy_and_rule_action_gives_its_decision() {
    let alice = uri("sip:alice@example.com");
    let bob = uri("sip:bob@example.net");
    let table: &[(Policy, Option<&str>, WatcherStatus, bool)] = &[
        (Policy::Allow, None, WatcherStatus::Active, false),
        (Policy::Allow, Some("block"), WatcherStatus::Active, false),
        (Policy::Pending, None, WatcherStatus::Pending, false),
        // Under `pending` a rule document, when there is one, decides (SPEC §4).
        (Policy::Pending, Some("allow"), WatcherStatus::Active, false),
        (Policy::Pending, Some("block"), rejected(), false),
        (
            Policy::Pending,
            Some("confirm"),
            WatcherStatus::Pending,
            false,
        ),
        (Policy::Rules, None, WatcherStatus::Pending, false),
        (Policy::Rules, Some("block"), rejected(), false),
        (
            Policy::Rules,
            Some("confirm"),
            WatcherStatus::Pending,
            false,
        ),
        (
            Policy::Rules,
            Some("polite-block"),
            WatcherStatus::Active,
            true,
        ),
        (Policy::Rules, Some("allow"), WatcherStatus::Active, false),
    ];
    for (policy, action, status, neutral) in table {
        let rs = action.map(rules_with);
        let d = decide(*policy, rs.as_ref(), &bob, &alice, None, false);
        assert_eq!(d.status, *status, "{policy:?} {action:?}");
        assert_eq!(d.neutral_body, *neutral, "{policy:?} {action:?}");
    }
}

#[test]
fn rules_without_an_applicable_rule_leave_the_watcher_pending() {
    let alice = uri("sip:alice@example.com");
    let stranger = uri("sip:eve@elsewhere.example");
    for action in ["block", "allow", "polite-block"] {
        let rs = rules_with(action);
        let d = decide(Policy::Rules, Some(&rs), &stranger, &alice, None, false);
        assert_eq!(d, Decision::pending(), "{action}");
    }
    let empty = RuleSet::parse(b"<ruleset xmlns='urn:ietf:params:xml:ns:common-policy'/>");
    let d = decide(
        Policy::Rules,
        empty.as_ref().ok(),
        &stranger,
        &alice,
        None,
        false,
    );
    assert_eq!(d, Decision::pending());
}

#[test]
fn the_presentity_may_always_watch_itself() {
    let alice = uri("sip:alice@example.net");
    let block = rules_with("block");
    for policy in [Policy::Allow, Policy::Pending, Policy::Rules] {
        for rs in [None, Some(&block)] {
            let d = decide(policy, rs, &alice, &alice, None, false);
            assert_eq!(d, Decision::active(), "{policy:?} {}", rs.is_some());
        }
    }
    // The same rules do block another user of the domain.
    let bob = uri("sip:bob@example.net");
    let d = decide(Policy::Rules, Some(&block), &bob, &alice, None, false);
    assert_eq!(d.status, rejected());
}

#[test]
fn sphere_reaches_the_rules_only_with_the_flag() {
    let xml = br#"<ruleset xmlns="urn:ietf:params:xml:ns:common-policy"
        xmlns:pr="urn:ietf:params:xml:ns:pres-rules"><rule id="w"><conditions>
        <sphere value="work"/></conditions><actions><pr:sub-handling>allow</pr:sub-handling>
        </actions></rule></ruleset>"#;
    let rs = RuleSet::parse(xml).unwrap();
    let (alice, bob) = (uri("sip:alice@example.com"), uri("sip:bob@example.net"));
    let pidf = br#"<presence xmlns="urn:ietf:params:xml:ns:pidf"
        xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model"
        xmlns:rpid="urn:ietf:params:xml:ns:pidf:rpid" entity="sip:alice@example.com">
        <dm:person id="p"><rpid:sphere><rpid:home/></rpid:sphere></dm:person></presence>"#;
    let sphere = sphere_of(pidf);
    assert_eq!(sphere.as_deref(), Some("home"));
    let d = |s: Option<&str>, check| decide(Policy::Rules, Some(&rs), &bob, &alice, s, check);
    assert_eq!(d(sphere.as_deref(), false), Decision::active());
    assert_eq!(d(sphere.as_deref(), true), Decision::pending());
    assert_eq!(d(Some("work"), true), Decision::active());
}

#[test]
fn statuses_map_to_kamailio_codes_and_back() {
    let all = [
        (WatcherStatus::Active, 1, "active"),
        (WatcherStatus::Pending, 2, "pending"),
        (rejected(), 3, "terminated"),
        (WatcherStatus::Waiting, 4, "waiting"),
    ];
    for (status, code, word) in all {
        assert_eq!(status.code(), code);
        assert_eq!(status.as_str(), word);
        assert_eq!(
            WatcherStatus::from_code(code, status.reason()),
            Some(status)
        );
    }
    assert_eq!(
        WatcherStatus::from_code(3, Some("deactivated"))
            .unwrap()
            .reason(),
        Some("deactivated")
    );
    assert_eq!(WatcherStatus::from_code(3, None), Some(rejected()));
    assert_eq!(WatcherStatus::from_code(0, None), None);
    assert_eq!(WatcherStatus::from_code(5, None), None);
    assert_eq!(WatcherStatus::Waiting.sub_status(), SubStatus::Pending);
    assert_eq!(rejected().sub_status(), SubStatus::Terminated);
    assert_eq!(WatcherStatus::Active.sub_status(), SubStatus::Active);
}

#[test]
fn pres_auth_status_codes_include_polite_block() {
    let codes: Vec<i32> = ["block", "confirm", "polite-block", "allow"]
        .iter()
        .map(|a| Decision::from_sub_handling(SubHandling::parse(a).unwrap()).auth_status_code())
        .collect();
    assert_eq!(codes, [3, 2, POLITE_BLOCK_CODE, 1]);
}

#[test]
fn policy_follows_the_config() {
    assert_eq!(Policy::from(DefaultPolicy::Allow), Policy::Allow);
    assert_eq!(Policy::from(DefaultPolicy::Pending), Policy::Pending);
    assert_eq!(Policy::from(DefaultPolicy::Rules), Policy::Rules);
}
