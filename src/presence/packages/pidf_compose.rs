//! Merging XML documents into one under a new root without building a DOM; used by the PIDF
//! composition of the `presence` package (RFC 3863) and by the `dialog` packages (RFC 4235).
//!
//! Each document is scanned once with quick-xml; its root's namespace declarations are read
//! and the byte range of every top-level child is copied verbatim. Output ([`merge`]): an XML
//! declaration, one root element `<name xmlns="ns" …attrs>` (a [`Root`]) carrying the union of
//! the source roots' prefix declarations, then the top-level children of all documents
//! grouped by [`Root::order`] (children in the root namespace with the first listed local
//! name, in document order, then the second, …), then every other top-level element byte for
//! byte. For PIDF ([`compose`]): `<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="…">`,
//! all `<tuple>`s, then all `<note>`s, then RPID/data-model `person`, `device` and unknown
//! extensions.
//!
//! Invariant: every copied element keeps the namespace it had in its source. Where the
//! output root binds a prefix (or the default namespace) differently from the source root,
//! the source's declaration is repeated on the copied element's start tag.

use quick_xml::escape::escape;
use quick_xml::events::{BytesStart, Event};
use quick_xml::name::PrefixDeclaration;
use quick_xml::Reader;

/// The PIDF namespace (RFC 3863 §4.1).
pub(crate) const PIDF_NS: &str = "urn:ietf:params:xml:ns:pidf";

/// A namespace declaration: prefix (`None` = default namespace) and namespace name.
type Binding = (Option<Vec<u8>>, String);

/// A borrowed declaration to repeat on copied elements: prefix (`None` = default) and name.
type Decl<'a> = (Option<&'a [u8]>, &'a str);

/// The root element of a merged document.
pub(crate) struct Root<'a> {
    /// Local name, written unprefixed (`presence`, `dialog-info`).
    pub(crate) name: &'a str,
    /// The default namespace declared on the root; also the namespace of [`Root::order`].
    pub(crate) ns: &'a str,
    /// Attributes after the namespace declarations, in order; values are escaped on output.
    pub(crate) attrs: &'a [(&'a str, &'a str)],
    /// Local names (in [`Root::ns`]) of the top-level children that come first, group by
    /// group in this order; all other children follow in document order.
    pub(crate) order: &'a [&'a str],
}

/// A top-level child of a source document.
struct Child<'a> {
    /// Index of the element's group in [`Root::order`]; `order.len()` for all others.
    kind: usize,
    /// The element's bytes, from `<` to the end of its end tag (or of `/>`).
    bytes: &'a [u8],
    /// Length of the element's qualified name (the bytes after `<`).
    name_len: usize,
    /// Prefixes the element declares itself (`None` = `xmlns`).
    own: Vec<Option<Vec<u8>>>,
}

/// A scanned source document.
struct Scanned<'a> {
    bindings: Vec<Binding>,
    children: Vec<Child<'a>>,
}

/// Merges `docs` (first = highest precedence) into one PIDF document for `entity`.
/// Documents that fail to parse are skipped (they were validated on PUBLISH, so this only
/// guards restored data); the result is then still a well-formed, possibly empty, document.
pub(crate) fn compose(entity: &str, docs: &[&[u8]]) -> Vec<u8> {
    let root = Root {
        name: "presence",
        ns: PIDF_NS,
        attrs: &[("entity", entity)],
        order: &["tuple", "note"],
    };
    merge(&root, docs)
}

/// Merges the top-level children of `docs` under one new `root` (see the module docs).
/// Documents that fail to parse are skipped with a warning; the result is always a
/// well-formed document, with no children when no document has any.
pub(crate) fn merge(root: &Root<'_>, docs: &[&[u8]]) -> Vec<u8> {
    let scanned: Vec<Scanned<'_>> = docs
        .iter()
        .filter_map(|d| match scan(d, root) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(
                    root = root.name,
                    "skipping unparsable document in composition: {e}"
                );
                None
            }
        })
        .collect();

    // The output root: default namespace `root.ns`, then each prefix the first time it is seen.
    let mut decls: Vec<(&[u8], &str)> = Vec::new();
    for s in &scanned {
        for (prefix, ns) in &s.bindings {
            if let Some(p) = prefix {
                if !decls.iter().any(|(q, _)| *q == p.as_slice()) {
                    decls.push((p.as_slice(), ns.as_str()));
                }
            }
        }
    }

    let mut out = Vec::with_capacity(docs.iter().map(|d| d.len()).sum::<usize>() + 256);
    out.extend_from_slice(b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<");
    out.extend_from_slice(root.name.as_bytes());
    push_decl(&mut out, None, root.ns);
    for (prefix, ns) in &decls {
        push_decl(&mut out, Some(prefix), ns);
    }
    for (name, value) in root.attrs {
        out.push(b' ');
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b"=\"");
        out.extend_from_slice(escape(*value).as_bytes());
        out.push(b'"');
    }
    out.extend_from_slice(b">\n");

    // What each document needs repeated on its copied elements.
    let fixes: Vec<Vec<Decl<'_>>> = scanned
        .iter()
        .map(|s| {
            let mut fix: Vec<Decl<'_>> = Vec::new();
            let mut has_default = false;
            for (prefix, ns) in &s.bindings {
                let same = match prefix {
                    None => {
                        has_default = true;
                        ns == root.ns
                    }
                    Some(p) => decls.iter().any(|(q, n)| *q == p.as_slice() && n == ns),
                };
                if !same {
                    fix.push((prefix.as_deref(), ns));
                }
            }
            if !has_default {
                fix.push((None, ""));
            }
            fix
        })
        .collect();

    for kind in 0..=root.order.len() {
        for (s, fix) in scanned.iter().zip(&fixes) {
            for c in s.children.iter().filter(|c| c.kind == kind) {
                push_child(&mut out, c, fix);
                out.push(b'\n');
            }
        }
    }
    out.extend_from_slice(b"</");
    out.extend_from_slice(root.name.as_bytes());
    out.extend_from_slice(b">\n");
    // The document is kept (one per presentity) until the next change: without the headroom
    // reserved above.
    out.shrink_to_fit();
    out
}

/// Copies `c`, declaring on its start tag each binding of `fix` it does not declare itself.
fn push_child(out: &mut Vec<u8>, c: &Child<'_>, fix: &[Decl<'_>]) {
    let split = 1 + c.name_len;
    let (head, rest) = match (fix.is_empty(), c.bytes.get(..split), c.bytes.get(split..)) {
        (false, Some(head), Some(rest)) => (head, rest),
        _ => {
            out.extend_from_slice(c.bytes);
            return;
        }
    };
    out.extend_from_slice(head);
    for (prefix, ns) in fix {
        if !c.own.iter().any(|o| o.as_deref() == *prefix) {
            push_decl(out, *prefix, ns);
        }
    }
    out.extend_from_slice(rest);
}

/// Writes ` xmlns[:prefix]="ns"`.
fn push_decl(out: &mut Vec<u8>, prefix: Option<&[u8]>, ns: &str) {
    out.extend_from_slice(b" xmlns");
    if let Some(p) = prefix {
        out.push(b':');
        out.extend_from_slice(p);
    }
    out.extend_from_slice(b"=\"");
    out.extend_from_slice(escape(ns).as_bytes());
    out.push(b'"');
}

/// Reads the root's declarations and the byte ranges of its element children, grouping the
/// children per `root.order`.
fn scan<'a>(doc: &'a [u8], root: &Root<'_>) -> Result<Scanned<'a>, String> {
    let err = |e: quick_xml::Error| e.to_string();
    let mut r = Reader::from_reader(doc);
    let top = loop {
        match r.read_event().map_err(err)? {
            Event::Start(e) => break e,
            Event::Empty(e) => {
                return Ok(Scanned {
                    bindings: declarations(&e)?,
                    children: Vec::new(),
                })
            }
            Event::Eof => return Err("no root element".to_string()),
            _ => {}
        }
    };
    let bindings = declarations(&top)?;
    let mut children = Vec::new();
    loop {
        let start = usize::try_from(r.buffer_position()).map_err(|e| e.to_string())?;
        let (e, is_start) = match r.read_event().map_err(err)? {
            Event::Start(e) => (e, true),
            Event::Empty(e) => (e, false),
            Event::End(_) => break,
            Event::Eof => return Err("unclosed root element".to_string()),
            _ => continue,
        };
        if is_start {
            r.read_to_end(e.name()).map_err(err)?;
        }
        let end = usize::try_from(r.buffer_position()).map_err(|e| e.to_string())?;
        let bytes = doc.get(start..end).ok_or("element out of range")?;
        let own = declarations(&e)?;
        let name = e.name();
        let ns = own
            .iter()
            .chain(&bindings)
            .find(|(p, _)| p.as_deref() == name.prefix().map(|p| p.into_inner()))
            .map(|(_, ns)| ns.as_str());
        let local = name.local_name();
        let kind = root
            .order
            .iter()
            .position(|n| ns == Some(root.ns) && n.as_bytes() == local.as_ref())
            .unwrap_or(root.order.len());
        let name_len = name.as_ref().len();
        children.push(Child {
            kind,
            bytes,
            name_len,
            own: own.into_iter().map(|(p, _)| p).collect(),
        });
    }
    Ok(Scanned { bindings, children })
}

/// The namespace declarations on one start tag (`xml`, empty prefixes and empty prefixed
/// namespace names ignored).
fn declarations(e: &BytesStart<'_>) -> Result<Vec<Binding>, String> {
    let mut out = Vec::new();
    for a in e.attributes() {
        let a = a.map_err(|e| e.to_string())?;
        let prefix = match a.key.as_namespace_binding() {
            Some(PrefixDeclaration::Default) => None,
            Some(PrefixDeclaration::Named(p)) if !p.is_empty() && p != b"xml" => Some(p.to_vec()),
            _ => continue,
        };
        let ns = a.unescape_value().map_err(|e| e.to_string())?.into_owned();
        if prefix.is_some() && ns.is_empty() {
            continue; // `xmlns:p=""` is not a binding (Namespaces in XML 1.0 §3).
        }
        out.push((prefix, ns));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use quick_xml::name::ResolveResult;
    use quick_xml::NsReader;

    use super::*;

    const DM: &str = "urn:ietf:params:xml:ns:pidf:data-model";
    const RPID: &str = "urn:ietf:params:xml:ns:pidf:rpid";

    /// Every element of `xml` as (depth, namespace, local name, id attribute), checking that
    /// it parses as namespace-well-formed XML.
    fn elements(xml: &[u8]) -> Vec<(usize, String, String, String)> {
        let mut r = NsReader::from_reader(xml);
        let mut depth = 0;
        let mut out = Vec::new();
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
                    let id = e
                        .try_get_attribute("id")
                        .unwrap()
                        .map(|a| a.unescape_value().unwrap().into_owned())
                        .unwrap_or_default();
                    out.push((
                        depth,
                        ns,
                        String::from_utf8(e.local_name().as_ref().to_vec()).unwrap(),
                        id,
                    ));
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
        out
    }

    /// The top-level children as (namespace, local name, id).
    fn top(xml: &[u8]) -> Vec<(String, String, String)> {
        elements(xml)
            .into_iter()
            .filter(|e| e.0 == 1)
            .map(|(_, ns, n, id)| (ns, n, id))
            .collect()
    }

    fn root_entity(xml: &[u8]) -> String {
        let mut r = NsReader::from_reader(xml);
        loop {
            if let (ResolveResult::Bound(ns), Event::Start(e) | Event::Empty(e)) =
                r.read_resolved_event().unwrap()
            {
                assert_eq!(ns.0, PIDF_NS.as_bytes());
                assert_eq!(e.local_name().as_ref(), b"presence");
                return e
                    .try_get_attribute("entity")
                    .unwrap()
                    .unwrap()
                    .unescape_value()
                    .unwrap()
                    .into_owned();
            }
        }
    }

    fn t(ns: &str, name: &str, id: &str) -> (String, String, String) {
        (ns.to_string(), name.to_string(), id.to_string())
    }

    const PHONE: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<presence xmlns="urn:ietf:params:xml:ns:pidf" xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model"
    xmlns:rpid="urn:ietf:params:xml:ns:pidf:rpid" entity="sip:alice@phone">
  <dm:person id="p1"><rpid:activities><rpid:on-the-phone/></rpid:activities></dm:person>
  <tuple id="phone"><status><basic>open</basic></status></tuple>
  <note>on a call</note>
  <dm:device id="d1"><dm:deviceID>urn:x</dm:deviceID></dm:device>
</presence>"#;

    const DESK: &str = r#"<presence xmlns='urn:ietf:params:xml:ns:pidf' entity='sip:alice@desk'
    xmlns:ext='urn:example:ext'><tuple id='desk'><status><basic>closed</basic></status>
    <ext:flag/></tuple><ext:mood>calm</ext:mood></presence>"#;

    #[test]
    fn merges_tuples_notes_then_others_and_rewrites_entity() {
        let out = compose(
            "sip:alice@example.com",
            &[PHONE.as_bytes(), DESK.as_bytes()],
        );
        assert!(out.starts_with(b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<presence "));
        assert_eq!(root_entity(&out), "sip:alice@example.com");
        assert_eq!(
            top(&out),
            vec![
                t(PIDF_NS, "tuple", "phone"),
                t(PIDF_NS, "tuple", "desk"),
                t(PIDF_NS, "note", ""),
                t(DM, "person", "p1"),
                t(DM, "device", "d1"),
                t("urn:example:ext", "mood", ""),
            ]
        );
        let all = elements(&out);
        assert!(all.contains(&(
            3,
            RPID.to_string(),
            "on-the-phone".to_string(),
            String::new()
        )));
        assert!(all.contains(&(
            2,
            "urn:example:ext".to_string(),
            "flag".to_string(),
            String::new()
        )));
        // No conflicts: the declarations live on the root only.
        let text = std::str::from_utf8(&out).unwrap();
        assert_eq!(text.matches("xmlns:dm=").count(), 1, "{text}");
        assert_eq!(text.matches("xmlns=").count(), 1, "{text}");
        // Children are copied byte for byte.
        assert!(text.contains(r#"<dm:device id="d1"><dm:deviceID>urn:x</dm:deviceID></dm:device>"#));
    }

    #[test]
    fn conflicting_prefixes_are_declared_on_the_copied_element() {
        let a = br#"<presence xmlns="urn:ietf:params:xml:ns:pidf" xmlns:x="urn:a"><tuple id="1"><x:e/></tuple><x:top id="a"/></presence>"#;
        let b = br#"<presence xmlns="urn:ietf:params:xml:ns:pidf" xmlns:x="urn:b"><tuple id="2"><x:e/></tuple><x:top id="b"/></presence>"#;
        let out = compose("sip:a@b", &[a, b]);
        assert_eq!(
            top(&out),
            vec![
                t(PIDF_NS, "tuple", "1"),
                t(PIDF_NS, "tuple", "2"),
                t("urn:a", "top", "a"),
                t("urn:b", "top", "b")
            ]
        );
        let inner: Vec<String> = elements(&out)
            .into_iter()
            .filter(|e| e.2 == "e")
            .map(|e| e.1)
            .collect();
        assert_eq!(inner, ["urn:a", "urn:b"]);
    }

    #[test]
    fn prefixed_pidf_and_foreign_default_namespace_keep_their_meaning() {
        // PIDF through a prefix, and an unprefixed element in no namespace.
        let a = br#"<p:presence xmlns:p="urn:ietf:params:xml:ns:pidf"><p:tuple id="1"/><loose/><p:note>n</p:note></p:presence>"#;
        // A child that redeclares the default namespace itself is left alone.
        let b = br#"<presence xmlns="urn:ietf:params:xml:ns:pidf"><mine xmlns="urn:m"><sub/></mine></presence>"#;
        let out = compose("sip:a@b", &[a, b]);
        assert_eq!(
            top(&out),
            vec![
                t(PIDF_NS, "tuple", "1"),
                t(PIDF_NS, "note", ""),
                t("", "loose", ""),
                t("urn:m", "mine", "")
            ]
        );
        let text = std::str::from_utf8(&out).unwrap();
        assert_eq!(text.matches(r#"xmlns="urn:m""#).count(), 1, "{text}");
    }

    #[test]
    fn escapes_entity_and_skips_broken_documents() {
        let good = br#"<presence xmlns="urn:ietf:params:xml:ns:pidf"><tuple id="g"/></presence>"#;
        let out = compose(
            r#"sip:"a"&<b>@x"#,
            &[
                b"<presence><tuple>",
                good,
                b"<presence xmlns='urn:ietf:params:xml:ns:pidf'/>",
            ],
        );
        assert_eq!(root_entity(&out), r#"sip:"a"&<b>@x"#);
        assert_eq!(top(&out), vec![t(PIDF_NS, "tuple", "g")]);
        let empty = compose("sip:a@b", &[b"not xml"]);
        assert_eq!(elements(&empty).len(), 1);
    }
}
