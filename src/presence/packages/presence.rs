//! The `presence` event package (RFC 3856): PIDF bodies (RFC 3863, with RPID RFC 4480 and
//! the data model RFC 4479 as extensions).
//!
//! Accepts `application/pidf+xml`; default Expires 3600. A published body must be UTF-8,
//! well-formed, namespace-well-formed XML whose single root is `<presence>` in the PIDF
//! namespace, without a DOCTYPE (no entity definitions, so copied fragments stay valid in
//! the composed document); the check is `validate_xml`, shared with the other XML
//! packages. Composition merges all documents into one `<presence>` (see `pidf_compose`).

use bytes::Bytes;
use quick_xml::events::{BytesStart, Event};
use quick_xml::name::{Namespace, ResolveResult};
use quick_xml::NsReader;

use crate::ids::PresentityUri;
use crate::presence::package::EventPackage;
use crate::presence::packages::pidf_compose::{self, PIDF_NS};

/// The `presence` package.
#[derive(Clone, Copy, Debug, Default)]
pub struct PresencePackage;

impl EventPackage for PresencePackage {
    fn name(&self) -> &str {
        "presence"
    }

    fn content_types(&self) -> &[&str] {
        &["application/pidf+xml"]
    }

    fn default_expires(&self) -> u32 {
        3600
    }

    fn req_auth(&self) -> bool {
        true
    }

    fn validate_publish(&self, body: &[u8]) -> Result<(), String> {
        validate_pidf(body)
    }

    fn aggregate(&self, presentity: &PresentityUri, docs: &[&[u8]]) -> Option<Bytes> {
        if docs.is_empty() {
            return None;
        }
        Some(Bytes::from(pidf_compose::compose(
            presentity.as_str(),
            docs,
        )))
    }
}

/// Checks that `body` is a PIDF document; `Err` is a short reason naming a byte offset.
pub fn validate_pidf(body: &[u8]) -> Result<(), String> {
    validate_xml(body, PIDF_NS, "presence", |_| Ok(()))
}

/// Checks that `body` is UTF-8, well-formed, namespace-well-formed XML without a DOCTYPE
/// whose single root is `<root>` in namespace `ns`; `check_root` then judges the root's start
/// tag (its attributes already parse). `Err` is a short reason, naming a byte offset where
/// one applies. Shared by the packages whose bodies are XML documents.
pub(crate) fn validate_xml(
    body: &[u8],
    ns: &str,
    root: &str,
    mut check_root: impl FnMut(&BytesStart<'_>) -> Result<(), String>,
) -> Result<(), String> {
    if let Err(e) = std::str::from_utf8(body) {
        return Err(format!("body is not UTF-8 at byte {}", e.valid_up_to()));
    }
    let mut r = NsReader::from_reader(body);
    let mut depth = 0usize;
    let mut seen_root = false;
    let malformed = |r: &NsReader<&[u8]>| format!("malformed XML at byte {}", r.error_position());
    let at = |r: &NsReader<&[u8]>, what: &str| format!("{what} at byte {}", r.buffer_position());
    loop {
        let (res, ev) = match r.read_resolved_event() {
            Ok(x) => x,
            Err(_) => return Err(malformed(&r)),
        };
        match ev {
            Event::Start(ref e) | Event::Empty(ref e) => {
                if depth == 0 {
                    if seen_root {
                        return Err(at(&r, "second root element"));
                    }
                    if res != ResolveResult::Bound(Namespace(ns.as_bytes()))
                        || e.local_name().as_ref() != root.as_bytes()
                    {
                        return Err(format!("root element is not <{root}>"));
                    }
                    seen_root = true;
                }
                if let ResolveResult::Unknown(_) = res {
                    return Err(at(&r, "undeclared namespace prefix"));
                }
                for a in e.attributes() {
                    let a = a.map_err(|_| at(&r, "bad attribute"))?;
                    a.unescape_value()
                        .map_err(|_| at(&r, "bad reference in attribute"))?;
                    let (ares, _) = r.resolve_attribute(a.key);
                    if let ResolveResult::Unknown(_) = ares {
                        return Err(at(&r, "undeclared namespace prefix"));
                    }
                }
                if depth == 0 {
                    check_root(e)?;
                }
                if matches!(ev, Event::Start(_)) {
                    depth += 1;
                }
            }
            // quick-xml checks that end tags match; it rejects an unmatched one.
            Event::End(_) => depth = depth.saturating_sub(1),
            Event::Text(t) => {
                if depth == 0 && !t.iter().all(u8::is_ascii_whitespace) {
                    return Err(at(&r, "text outside the root element"));
                }
                t.unescape().map_err(|_| at(&r, "bad reference in text"))?;
            }
            Event::CData(_) if depth == 0 => return Err(at(&r, "text outside the root element")),
            Event::DocType(_) => return Err("DOCTYPE is not allowed".to_string()),
            Event::Eof if !seen_root => return Err("no root element".to_string()),
            Event::Eof if depth > 0 => {
                return Err(format!(
                    "malformed XML at byte {}: unclosed element",
                    body.len()
                ))
            }
            Event::Eof => return Ok(()),
            Event::CData(_) | Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::UriMatch;

    const OK: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<presence xmlns="urn:ietf:params:xml:ns:pidf" xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model"
          entity="sip:alice@example.com">
  <!-- a comment -->
  <tuple id="t1"><status><basic>open</basic></status><note>caf&#233; &amp; co</note></tuple>
  <dm:person id="p1"/>
</presence>"#;

    #[test]
    fn accepts_pidf() {
        assert_eq!(validate_pidf(OK.as_bytes()), Ok(()));
        let prefixed = r#"<p:presence xmlns:p="urn:ietf:params:xml:ns:pidf" entity="x"><p:tuple id="a"/></p:presence>"#;
        assert_eq!(validate_pidf(prefixed.as_bytes()), Ok(()));
        assert_eq!(
            PresencePackage.validate_publish(b"<presence xmlns='urn:ietf:params:xml:ns:pidf'/>"),
            Ok(())
        );
    }

    #[test]
    fn rejects_non_pidf_with_short_reasons() {
        let cases: &[(&[u8], &str)] = &[
            (b"<presence xmlns='urn:ietf:params:xml:ns:pidf'><tuple></presence>", "malformed XML at byte"),
            (b"<presence xmlns='urn:ietf:params:xml:ns:pidf'><tuple>", "unclosed element"),
            (b"<presence xmlns='urn:ietf:params:xml:ns:pidf'", "malformed XML at byte"),
            (b"<dialog-info xmlns='urn:ietf:params:xml:ns:dialog-info'/>", "root element is not <presence>"),
            (b"<presence/>", "root element is not <presence>"),
            (b"<presence xmlns='urn:other'/>", "root element is not <presence>"),
            (b"", "no root element"),
            (b"just text", "text outside the root element"),
            (b"<presence xmlns='urn:ietf:params:xml:ns:pidf'/><presence xmlns='urn:ietf:params:xml:ns:pidf'/>", "second root"),
            (b"<presence xmlns='urn:ietf:params:xml:ns:pidf'><x:tuple/></presence>", "undeclared namespace prefix"),
            (b"<presence xmlns='urn:ietf:params:xml:ns:pidf' x:a='1'/>", "undeclared namespace prefix"),
            (b"<presence xmlns='urn:ietf:params:xml:ns:pidf' a='1' a='2'/>", "bad attribute"),
            (b"<presence xmlns='urn:ietf:params:xml:ns:pidf'>&bogus;</presence>", "bad reference in text"),
            (b"<presence xmlns='urn:ietf:params:xml:ns:pidf' entity='&bogus;'/>", "bad reference in attribute"),
            (b"<!DOCTYPE presence [<!ENTITY e 'x'>]><presence xmlns='urn:ietf:params:xml:ns:pidf'/>", "DOCTYPE"),
            (b"<presence xmlns='urn:ietf:params:xml:ns:pidf'>\xff</presence>", "not UTF-8 at byte 46"),
        ];
        for (body, want) in cases {
            let got = validate_pidf(body).expect_err(&String::from_utf8_lossy(body));
            assert!(
                got.contains(want),
                "{:?}: got {got:?}, want {want:?}",
                String::from_utf8_lossy(body)
            );
            assert!(got.len() < 80, "reason too long: {got}");
        }
    }

    #[test]
    fn package_metadata_and_single_doc_entity_rewrite() {
        let p = PresencePackage;
        assert_eq!(
            (p.name(), p.content_types(), p.default_expires()),
            ("presence", &["application/pidf+xml"][..], 3600)
        );
        assert!(!p.etag_not_new());
        let uri = PresentityUri::parse("sip:bob@example.org", UriMatch::CaseSensitive).unwrap();
        assert_eq!(p.aggregate(&uri, &[]), None);
        let out = p.aggregate(&uri, &[OK.as_bytes()]).unwrap();
        let text = std::str::from_utf8(&out).unwrap();
        assert!(
            text.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>"),
            "{text}"
        );
        assert!(text.contains(r#"entity="sip:bob@example.org""#), "{text}");
        assert!(!text.contains("alice"), "{text}");
        assert!(
            text.contains(r#"<tuple id="t1">"#) && text.contains(r#"<dm:person id="p1"/>"#),
            "{text}"
        );
        assert_eq!(validate_pidf(&out), Ok(()));
    }
}
