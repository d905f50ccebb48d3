//! Composition for the `dialog` packages: the `<dialog>` elements of all publications merged
//! into one full dialog-info document (Kamailio's `dlginfo_agg_nbody`), and the per-watcher
//! `version` rewrite (Kamailio's `dlginfo_body_setversion`, our `aux_body`).
//!
//! The merge is `pidf_compose::merge` with a `<dialog-info>` root: the output is
//! `<dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" version="0" state="full"
//! entity="…">` followed by every `<dialog>` (document order), then any extension element,
//! each copied byte for byte with its namespaces kept. With no `<dialog>` at all the result is
//! an empty full document (presence_dialoginfo with `force_single_dialog=0`).
//!
//! Invariant: [`set_version`] only replaces the root start tag; every other byte is copied,
//! and applying it twice equals applying it once with the second version.

use quick_xml::events::Event;
use quick_xml::Reader;

use crate::presence::packages::dialog::DIALOG_INFO_NS;
use crate::presence::packages::pidf_compose::{merge, Root};

/// Merges `docs` (first = highest precedence) into one full dialog-info document for
/// `entity`, with `version="0"` (rewritten per watcher by [`set_version`]). Unparsable
/// documents are skipped.
pub(crate) fn compose(entity: &str, docs: &[&[u8]]) -> Vec<u8> {
    let root = Root {
        name: "dialog-info",
        ns: DIALOG_INFO_NS,
        attrs: &[("version", "0"), ("state", "full"), ("entity", entity)],
        order: &["dialog"],
    };
    merge(&root, docs)
}

/// `doc` with its root `<dialog-info>` start tag's unprefixed `version` attribute set to
/// `version` (added when missing); `None` when `doc` does not parse up to its root start tag
/// or its root is not `dialog-info`.
///
/// The rewritten start tag keeps the qualified name and every other attribute in order with
/// its raw (still escaped) value, separated by single spaces; values are quoted with `"`
/// unless they contain one (then `'`, which such a value cannot contain).
pub(crate) fn set_version(doc: &[u8], version: u32) -> Option<Vec<u8>> {
    set_root_version(doc, b"dialog-info", version)
}

/// [`set_version`] for any root element named `root` (local name): dialog-info and
/// watcherinfo documents both number themselves with a root `version` attribute.
pub(crate) fn set_root_version(doc: &[u8], root: &[u8], version: u32) -> Option<Vec<u8>> {
    let mut r = Reader::from_reader(doc);
    loop {
        let start = usize::try_from(r.buffer_position()).ok()?;
        let (e, empty) = match r.read_event().ok()? {
            Event::Start(e) => (e, false),
            Event::Empty(e) => (e, true),
            Event::Eof | Event::End(_) => return None,
            _ => continue,
        };
        if e.local_name().as_ref() != root {
            return None;
        }
        let end = usize::try_from(r.buffer_position()).ok()?;
        let mut out = Vec::with_capacity(doc.len() + 16);
        out.extend_from_slice(doc.get(..start)?);
        out.push(b'<');
        out.extend_from_slice(e.name().as_ref());
        let new_version = format!("\"{version}\"");
        let mut replaced = false;
        for a in e.attributes() {
            let a = a.ok()?;
            out.push(b' ');
            out.extend_from_slice(a.key.as_ref());
            out.push(b'=');
            if a.key.as_ref() == b"version" && !replaced {
                out.extend_from_slice(new_version.as_bytes());
                replaced = true;
            } else {
                let q = if a.value.contains(&b'"') { b'\'' } else { b'"' };
                out.push(q);
                out.extend_from_slice(&a.value);
                out.push(q);
            }
        }
        if !replaced {
            out.extend_from_slice(b" version=");
            out.extend_from_slice(new_version.as_bytes());
        }
        out.extend_from_slice(if empty { b"/>" } else { b">" });
        out.extend_from_slice(doc.get(end..)?);
        return Some(out);
    }
}

#[cfg(test)]
mod tests {
    use quick_xml::name::ResolveResult;
    use quick_xml::NsReader;

    use super::*;
    use crate::presence::packages::dialog::validate_dialog_info;

    /// An element's (namespace, local name, non-namespace attributes).
    type Elem = (String, String, Vec<(String, String)>);
    /// A child's (namespace, local name, id).
    type Child = (String, String, String);

    /// The root and the top-level children of `xml`, parsing it as namespace-well-formed XML.
    fn outline(xml: &[u8]) -> (Elem, Vec<Child>) {
        let mut r = NsReader::from_reader(xml);
        let mut depth = 0;
        let mut root = None;
        let mut top = Vec::new();
        loop {
            let (res, ev) = r.read_resolved_event().expect("output parses");
            let is_start = matches!(ev, Event::Start(_));
            match ev {
                Event::Start(e) | Event::Empty(e) => {
                    let ns = match res {
                        ResolveResult::Bound(ns) => String::from_utf8(ns.0.to_vec()).unwrap(),
                        ResolveResult::Unbound => String::new(),
                        ResolveResult::Unknown(p) => panic!("unknown prefix {p:?}"),
                    };
                    let name = String::from_utf8(e.local_name().as_ref().to_vec()).unwrap();
                    let attrs: Vec<(String, String)> = e
                        .attributes()
                        .map(|a| {
                            let a = a.unwrap();
                            (
                                String::from_utf8(a.key.as_ref().to_vec()).unwrap(),
                                a.unescape_value().unwrap().into_owned(),
                            )
                        })
                        .filter(|(k, _)| !k.starts_with("xmlns"))
                        .collect();
                    if depth == 0 {
                        root = Some((ns, name, attrs));
                    } else if depth == 1 {
                        let id = attrs
                            .iter()
                            .find(|(k, _)| k == "id")
                            .map(|(_, v)| v.clone());
                        top.push((ns, name, id.unwrap_or_default()));
                    }
                    if is_start {
                        depth += 1;
                    }
                }
                Event::End(_) => depth -= 1,
                Event::Eof => break,
                _ => {}
            }
        }
        assert_eq!(depth, 0);
        (root.expect("a root"), top)
    }

    fn s(v: &str) -> String {
        v.to_string()
    }

    const PHONE: &str = r#"<?xml version="1.0"?>
<dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" version="3" state="partial"
    entity="sip:alice@phone"><dialog id="d1" call-id="c1" direction="initiator"><state>confirmed</state>
<local><identity>sip:alice@example.com</identity></local></dialog></dialog-info>"#;

    const DESK: &str = r#"<di:dialog-info xmlns:di="urn:ietf:params:xml:ns:dialog-info"
    xmlns:x="urn:example:ext" version="9" state="full" entity="sip:alice@desk"><x:hint/>
    <di:dialog id="d2"><di:state>early</di:state><x:extra/></di:dialog></di:dialog-info>"#;

    #[test]
    fn merges_dialogs_of_two_publications_under_the_presentity() {
        let out = compose(
            "sip:alice@example.com",
            &[PHONE.as_bytes(), DESK.as_bytes()],
        );
        assert!(out.starts_with(b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<dialog-info "));
        let (root, top) = outline(&out);
        assert_eq!(
            root,
            (
                s(DIALOG_INFO_NS),
                s("dialog-info"),
                vec![
                    (s("version"), s("0")),
                    (s("state"), s("full")),
                    (s("entity"), s("sip:alice@example.com"))
                ]
            )
        );
        assert_eq!(
            top,
            vec![
                (s(DIALOG_INFO_NS), s("dialog"), s("d1")),
                (s(DIALOG_INFO_NS), s("dialog"), s("d2")),
                (s("urn:example:ext"), s("hint"), s("")),
            ]
        );
        let text = std::str::from_utf8(&out).unwrap();
        assert!(text.contains("<state>confirmed</state>"), "{text}");
        assert!(
            text.contains("<di:state>early</di:state><x:extra/>"),
            "{text}"
        );
        assert_eq!(validate_dialog_info(&out), Ok(()));
    }

    #[test]
    fn no_dialog_gives_an_empty_full_document() {
        let empty = b"<dialog-info xmlns='urn:ietf:params:xml:ns:dialog-info' version='1' state='full' entity='sip:a@b'/>";
        for docs in [&[&empty[..]][..], &[&b"not xml"[..]][..]] {
            let out = compose("sip:bob@b", docs);
            let (root, top) = outline(&out);
            assert_eq!(
                (root.0.as_str(), root.1.as_str()),
                (DIALOG_INFO_NS, "dialog-info")
            );
            assert!(root.2.contains(&(s("state"), s("full"))));
            assert!(top.is_empty(), "{top:?}");
            assert_eq!(validate_dialog_info(&out), Ok(()));
        }
    }

    #[test]
    fn set_version_rewrites_only_the_root_version() {
        let composed = compose("sip:a@b", &[PHONE.as_bytes()]);
        let v5 = set_version(&composed, 5).unwrap();
        let (root, _) = outline(&v5);
        assert_eq!(root.2[0], (s("version"), s("5")));
        assert_eq!(v5.len(), composed.len());
        // Everything but the version value is unchanged.
        let text = String::from_utf8(v5.clone()).unwrap();
        let back = text.replacen(r#"version="5""#, r#"version="0""#, 1);
        assert_eq!(back.as_bytes(), &composed[..]);
        // Idempotence: twice = once with the last version.
        assert_eq!(
            set_version(&v5, 4_000_000_000),
            set_version(&composed, 4_000_000_000)
        );
        assert_eq!(set_version(&v5, 5).as_deref(), Some(&v5[..]));
        // A source document: prefixed root, odd spacing and quotes; inner `version`s untouched.
        let odd =
            br#"<?xml version="1.0"?><di:dialog-info  xmlns:di='urn:ietf:params:xml:ns:dialog-info'
 entity='sip:"q"@b' version = '12' state="full"><di:dialog id="x" version="7"/></di:dialog-info>"#;
        let once = set_version(odd, 1).unwrap();
        let text = std::str::from_utf8(&once).unwrap();
        assert_eq!(
            text,
            r#"<?xml version="1.0"?><di:dialog-info xmlns:di="urn:ietf:params:xml:ns:dialog-info" entity='sip:"q"@b' version="1" state="full"><di:dialog id="x" version="7"/></di:dialog-info>"#
        );
        assert_eq!(set_version(&once, 2), set_version(odd, 2));
        assert_eq!(validate_dialog_info(&once), Ok(()));
    }

    #[test]
    fn set_version_adds_a_missing_version_and_refuses_other_documents() {
        let out = set_version(
            b"<dialog-info xmlns='urn:ietf:params:xml:ns:dialog-info'/>",
            3,
        )
        .unwrap();
        assert_eq!(
            out,
            br#"<dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" version="3"/>"#
        );
        assert_eq!(set_version(b"<presence version='1'/>", 1), None);
        assert_eq!(set_version(b"", 1), None);
        assert_eq!(set_version(b"<dialog-info a='1' a='2'/>", 1), None);
        assert_eq!(set_version(b"<dialog-info version='1", 1), None);
    }
}
