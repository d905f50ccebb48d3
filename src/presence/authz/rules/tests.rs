//! Tests of rule-document parsing: the accepted subset and the rejection reasons.

use super::*;

const HEAD: &str = r#"<ruleset xmlns="urn:ietf:params:xml:ns:common-policy"
    xmlns:pr="urn:ietf:params:xml:ns:pres-rules">"#;

fn doc(body: &str) -> Vec<u8> {
    format!("{HEAD}{body}</ruleset>").into_bytes()
}

fn uri(s: &str) -> PresentityUri {
    PresentityUri::parse(s, UriMatch::CaseSensitive).unwrap()
}

#[test]
fn parses_the_rfc5025_subset() {
    let xml = br#"<?xml version="1.0" encoding="UTF-8"?>
<ruleset xmlns="urn:ietf:params:xml:ns:common-policy"
     xmlns:pr="urn:ietf:params:xml:ns:pres-rules" xmlns:x="urn:example:ext">
  <rule id="friends">
<conditions>
  <identity>
    <one id="sip:bob@Example.com;transport=tcp"/>
    <many domain="Example.ORG">
      <except id="sip:eve@example.org"/>
      <except domain="sub.example.org"/>
      <x:label>ignored</x:label>
    </many>
  </identity>
  <sphere value="work home"/>
  <validity><from>2020-01-01T00:00:00Z</from><until>2030-01-01T00:00:00Z</until></validity>
</conditions>
<actions><pr:sub-handling> allow </pr:sub-handling><x:other/></actions>
<transformations><pr:provide-services><pr:all-services/></pr:provide-services></transformations>
  </rule>
  <rule id="nothing"/>
  <x:extension/>
</ruleset>"#;
    let rs = RuleSet::parse(xml).unwrap();
    assert_eq!(rs.rules().len(), 2);
    let r = &rs.rules()[0];
    assert_eq!(r.id, "friends");
    assert_eq!(r.sub_handling, Some(SubHandling::Allow));
    assert_eq!(
        r.conditions,
        vec![
            Condition::Identity(vec![
                IdentityMatch::One(uri("sip:bob@example.com")),
                IdentityMatch::Many {
                    domain: Some("example.org".to_string()),
                    except: vec![
                        Except::Id(uri("sip:eve@example.org")),
                        Except::Domain("sub.example.org".to_string()),
                    ],
                },
            ]),
            Condition::Sphere(vec!["work".to_string(), "home".to_string()]),
            Condition::Unsupported("validity".to_string()),
        ]
    );
    let empty = &rs.rules()[1];
    assert_eq!((empty.id.as_str(), empty.conditions.len()), ("nothing", 0));
    assert_eq!(empty.sub_handling, None);
    assert_eq!(RuleSet::parse(&doc("")).unwrap(), RuleSet::default());
}

#[test]
fn sub_handling_values_and_spellings() {
    let all = [
        (SubHandling::Block, 0, "block"),
        (SubHandling::Confirm, 10, "confirm"),
        (SubHandling::PoliteBlock, 20, "polite-block"),
        (SubHandling::Allow, 30, "allow"),
    ];
    for w in all.windows(2) {
        assert!(w[0].0 < w[1].0 && w[0].1 < w[1].1);
    }
    for (h, v, s) in all {
        assert_eq!(
            (h.value(), h.as_str(), SubHandling::parse(s)),
            (v, s, Some(h))
        );
        let xml = doc(&format!(
            "<rule id='r'><actions><pr:sub-handling>{s}</pr:sub-handling></actions></rule>"
        ));
        assert_eq!(
            RuleSet::parse(&xml).unwrap().rules()[0].sub_handling,
            Some(h)
        );
    }
    assert_eq!(SubHandling::parse("Allow"), None);
}

#[test]
fn rejects_with_short_reasons() {
    let sh = |v: &str| format!("<actions><pr:sub-handling>{v}</pr:sub-handling></actions>");
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"<ruleset/>".to_vec(), "root element is not <ruleset>"),
        (b"<ruleset xmlns='urn:other'/>".to_vec(), "root element is not <ruleset>"),
        (b"<ruleset xmlns='urn:ietf:params:xml:ns:common-policy'>".to_vec(), "unclosed"),
        (b"not xml".to_vec(), "text outside the root element"),
        (doc("<rule/>"), "<rule> without id"),
        (doc("<rule id=' '/>"), "<rule> without id"),
        (doc("<rule id='a'/><rule id='a'/>"), "duplicate rule id \"a\""),
        (doc("<policy/>"), "unexpected <policy> in <ruleset>"),
        (doc(&format!("<rule id='{0}'/><rule id='{0}'/>", "x".repeat(500))), "duplicate rule id \"xxxxxxxxxxxxxxxxxxxx…\""),
        (doc("<rule id='a'><foo/></rule>"), "unexpected <foo> in rule \"a\""),
        (doc("<rule id='a'><actions/><actions/></rule>"), "repeated <actions>"),
        (doc("<rule id='a'><conditions><bar/></conditions></rule>"), "unexpected <bar> in <conditions>"),
        (doc("<rule id='a'><conditions><identity/></conditions></rule>"), "empty <identity>"),
        (doc("<rule id='a'><conditions><identity><all/></identity></conditions></rule>"), "unexpected <all> in <identity>"),
        (doc("<rule id='a'><conditions><identity><one/></identity></conditions></rule>"), "<one> id is not a URI"),
        (doc("<rule id='a'><conditions><identity><one id='bob'/></identity></conditions></rule>"), "<one> id is not a URI"),
        (doc("<rule id='a'><conditions><identity><many domain=''/></identity></conditions></rule>"), "<many> with an empty domain"),
        (doc("<rule id='a'><conditions><identity><many><except/></many></identity></conditions></rule>"), "exactly one of id, domain"),
        (doc("<rule id='a'><conditions><identity><many><except id='sip:a@b' domain='b'/></many></identity></conditions></rule>"), "exactly one of id, domain"),
        (doc("<rule id='a'><conditions><identity><many><one id='sip:a@b'/></many></identity></conditions></rule>"), "unexpected <one> in <many>"),
        (doc("<rule id='a'><conditions><sphere/></conditions></rule>"), "<sphere> without value"),
        (doc(&format!("<rule id='a'>{}</rule>", sh("maybe"))), "unknown sub-handling \"maybe\""),
        (doc(&format!("<rule id='a'>{}</rule>", sh(""))), "unknown sub-handling \"\""),
        (doc("<rule id='a'><actions><pr:sub-handling>allow</pr:sub-handling><pr:sub-handling>block</pr:sub-handling></actions></rule>"), "repeated <sub-handling>"),
        (doc("<rule id='a'><actions><sub-handling>allow</sub-handling></actions></rule>"), "<sub-handling> must be in the pres-rules namespace"),
    ];
    for (xml, want) in cases {
        let err = RuleSet::parse(&xml).unwrap_err();
        assert!(
            err.contains(want),
            "{:?}: got {err:?}",
            String::from_utf8_lossy(&xml)
        );
        assert!(err.len() < 80, "reason too long: {err:?}");
    }
}
