//! The PIDF side of authorization: the neutral document a polite-blocked watcher receives
//! (RFC 5025 §3.2.1) and the RPID sphere of a presentity's state (RFC 4480 §3.7), which
//! sphere conditions compare against.
//!
//! Invariants: [`neutral_pidf`] reveals nothing but the presentity's URI (which the watcher
//! already knows): one tuple with a fixed id, basic status `closed`, no note, timestamp,
//! contact, person or device. [`sphere_of`] never fails: unreadable input has no sphere.

use quick_xml::escape::escape;

use super::xml::{self, Element};

/// The PIDF namespace (RFC 3863 §4.1).
const PIDF_NS: &str = "urn:ietf:params:xml:ns:pidf";
/// The RPID namespace (RFC 4480 §4).
const RPID_NS: &str = "urn:ietf:params:xml:ns:pidf:rpid";

/// The neutral presence document sent to polite-blocked watchers of `presentity`: a PIDF
/// with a single tuple whose basic status is `closed` ("a single service whose basic status
/// is set to closed", RFC 5025 §3.2.1), so that the watcher cannot tell it from an offline
/// presentity.
pub fn neutral_pidf(presentity: &str) -> Vec<u8> {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <presence xmlns=\"{PIDF_NS}\" entity=\"{}\">\
         <tuple id=\"t0\"><status><basic>closed</basic></status></tuple>\
         </presence>\n",
        escape(presentity)
    )
    .into_bytes()
}

/// The presentity's current sphere (Kamailio's `get_sphere`): the content of the first
/// `<rpid:sphere>` that is a child of a `<person>` element, in document order (in a composed
/// document the highest-precedence publication comes first). An empty-element choice
/// (`<rpid:work/>`, `<rpid:home/>`, or any other element) yields its local name; otherwise
/// the trimmed text. `None` when there is no such sphere, it is empty, or `pidf` is not
/// well-formed XML.
pub fn sphere_of(pidf: &[u8]) -> Option<String> {
    let root = xml::parse(pidf).ok()?;
    if !root.is(PIDF_NS, "presence") {
        return None;
    }
    root.children
        .iter()
        .filter(|el| el.local == "person")
        .flat_map(|person| person.children.iter())
        .find(|el| el.is(RPID_NS, "sphere"))
        .and_then(sphere_value)
}

/// The value of one `<rpid:sphere>` element.
fn sphere_value(sphere: &Element) -> Option<String> {
    if let Some(choice) = sphere.children.first() {
        return Some(choice.local.clone());
    }
    let text = sphere.text.trim();
    (!text.is_empty()).then(|| text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::presence::packages::presence::validate_pidf;

    #[test]
    fn neutral_document_is_valid_and_closed() {
        let doc = neutral_pidf("sip:alice@example.com");
        assert_eq!(validate_pidf(&doc), Ok(()));
        let root = xml::parse(&doc).unwrap();
        assert_eq!(root.attr("entity"), Some("sip:alice@example.com"));
        assert_eq!(root.children.len(), 1);
        let tuple = &root.children[0];
        assert!(tuple.is(PIDF_NS, "tuple"));
        assert_eq!(tuple.children.len(), 1);
        let status = &tuple.children[0];
        assert!(status.is(PIDF_NS, "status"));
        assert_eq!(status.children.len(), 1);
        assert!(status.children[0].is(PIDF_NS, "basic"));
        assert_eq!(status.children[0].text, "closed");
        // No sphere, note or person leaks through.
        assert_eq!(sphere_of(&doc), None);
        let text = String::from_utf8(doc).unwrap();
        assert!(!text.contains("open") && !text.contains("note"));
    }

    #[test]
    fn neutral_document_escapes_the_entity() {
        let doc = neutral_pidf("sip:a\"b<c>&d@example.com");
        assert_eq!(validate_pidf(&doc), Ok(()));
        let root = xml::parse(&doc).unwrap();
        assert_eq!(root.attr("entity"), Some("sip:a\"b<c>&d@example.com"));
    }

    const HEAD: &str = r#"<presence xmlns="urn:ietf:params:xml:ns:pidf"
        xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model"
        xmlns:rpid="urn:ietf:params:xml:ns:pidf:rpid" entity="sip:alice@example.com">
        <tuple id="t1"><status><basic>open</basic></status></tuple>"#;

    fn pidf(body: &str) -> Vec<u8> {
        format!("{HEAD}{body}</presence>").into_bytes()
    }

    #[test]
    fn sphere_from_rpid_samples() {
        let cases: &[(&str, Option<&str>)] = &[
            // RFC 4480 §3.7: an empty-element choice.
            (
                "<dm:person id='p'><rpid:sphere><rpid:work/></rpid:sphere></dm:person>",
                Some("work"),
            ),
            (
                "<dm:person id='p'><rpid:sphere><rpid:home/></rpid:sphere></dm:person>",
                Some("home"),
            ),
            // Free text, trimmed.
            (
                "<dm:person id='p'><rpid:sphere> bowling league </rpid:sphere></dm:person>",
                Some("bowling league"),
            ),
            // The first person's sphere wins.
            (
                "<dm:person id='a'><rpid:activities><rpid:busy/></rpid:activities>\
              <rpid:sphere>work</rpid:sphere></dm:person>\
              <dm:person id='b'><rpid:sphere>home</rpid:sphere></dm:person>",
                Some("work"),
            ),
            (
                "<dm:person id='a'/><dm:person id='b'><rpid:sphere>home</rpid:sphere></dm:person>",
                Some("home"),
            ),
            // Empty, absent, outside a person, or in the wrong namespace: no sphere.
            (
                "<dm:person id='p'><rpid:sphere>  </rpid:sphere></dm:person>",
                None,
            ),
            (
                "<dm:person id='p'><rpid:mood><rpid:happy/></rpid:mood></dm:person>",
                None,
            ),
            (
                "<dm:device id='d'><rpid:sphere>work</rpid:sphere></dm:device>",
                None,
            ),
            (
                "<dm:person id='p'><dm:sphere>work</dm:sphere></dm:person>",
                None,
            ),
            ("", None),
        ];
        for (body, want) in cases {
            assert_eq!(sphere_of(&pidf(body)).as_deref(), *want, "{body}");
        }
        assert_eq!(sphere_of(b"<presence"), None);
        assert_eq!(
            sphere_of(
                b"<x xmlns:rpid='urn:ietf:params:xml:ns:pidf:rpid'><person>\
                        <rpid:sphere>work</rpid:sphere></person></x>"
            ),
            None
        );
    }
}
