//! A minimal namespace-resolved element tree for the small XML documents authorization reads
//! (rule documents, and PIDF bodies for the RPID sphere).
//!
//! Invariants:
//! * The tree is built iteratively and never deeper than [`MAX_DEPTH`], so neither building,
//!   walking nor dropping it can exhaust the stack on hostile input.
//! * Only namespace-well-formed UTF-8 documents with exactly one root element and no DOCTYPE
//!   (hence no entity definitions) are accepted; errors are short reasons, never the input.

use quick_xml::events::{BytesStart, Event};
use quick_xml::name::ResolveResult;
use quick_xml::NsReader;

/// The deepest element nesting accepted (a rule document needs 6 levels).
pub(super) const MAX_DEPTH: usize = 32;

/// One element: resolved namespace, local name, unqualified attributes, children, text.
#[derive(Debug, Default)]
pub(super) struct Element {
    /// Namespace name the element resolves to; empty when unbound.
    pub(super) ns: String,
    /// Local name.
    pub(super) local: String,
    /// Attributes without a prefix (`id`, `domain`, `value`), unescaped, in order.
    pub(super) attrs: Vec<(String, String)>,
    /// Child elements in document order.
    pub(super) children: Vec<Element>,
    /// Concatenated character data directly inside this element, unescaped, untrimmed.
    pub(super) text: String,
}

impl Element {
    /// Whether this element is `{ns}local`.
    pub(super) fn is(&self, ns: &str, local: &str) -> bool {
        self.ns == ns && self.local == local
    }

    /// The value of the unqualified attribute `name`.
    pub(super) fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Parses `body` into its root element.
pub(super) fn parse(body: &[u8]) -> Result<Element, String> {
    if let Err(e) = std::str::from_utf8(body) {
        return Err(format!("not UTF-8 at byte {}", e.valid_up_to()));
    }
    let mut r = NsReader::from_reader(body);
    // Open elements, outermost first; the root is `stack[0]` while open.
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    let at = |r: &NsReader<&[u8]>, what: &str| format!("{what} at byte {}", r.buffer_position());
    loop {
        let (ns, ev) = match r.read_resolved_event() {
            Ok((res, ev)) => (owned_ns(res), ev),
            Err(_) => return Err(format!("malformed XML at byte {}", r.error_position())),
        };
        match ev {
            Event::Start(ref e) | Event::Empty(ref e) => {
                if stack.is_empty() && root.is_some() {
                    return Err(at(&r, "second root element"));
                }
                if stack.len() >= MAX_DEPTH {
                    return Err(at(&r, "elements nested too deeply"));
                }
                let el = element(&r, ns, e).map_err(|what| at(&r, what))?;
                if matches!(ev, Event::Start(_)) {
                    stack.push(el);
                } else {
                    close(&mut stack, &mut root, el);
                }
            }
            // quick-xml checks that end tags match their start tags.
            Event::End(_) => {
                if let Some(el) = stack.pop() {
                    close(&mut stack, &mut root, el);
                }
            }
            Event::Text(t) => {
                let text = t.unescape().map_err(|_| at(&r, "bad reference in text"))?;
                match stack.last_mut() {
                    Some(el) => el.text.push_str(&text),
                    None if text.trim().is_empty() => {}
                    None => return Err(at(&r, "text outside the root element")),
                }
            }
            Event::CData(c) => {
                let text = String::from_utf8_lossy(&c.into_inner()).into_owned();
                match stack.last_mut() {
                    Some(el) => el.text.push_str(&text),
                    None => return Err(at(&r, "text outside the root element")),
                }
            }
            Event::DocType(_) => return Err("DOCTYPE is not allowed".to_string()),
            Event::Eof if !stack.is_empty() => {
                return Err(format!("unclosed element at byte {}", body.len()))
            }
            Event::Eof => return root.ok_or_else(|| "no root element".to_string()),
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
        }
    }
}

/// Builds an element from a start tag; `Err` names what is wrong with it.
fn element(
    r: &NsReader<&[u8]>,
    ns: Option<String>,
    e: &BytesStart<'_>,
) -> Result<Element, &'static str> {
    let ns = ns.ok_or("undeclared namespace prefix")?;
    let local = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
    let mut attrs = Vec::new();
    for a in e.attributes() {
        let a = a.map_err(|_| "bad attribute")?;
        let value = a
            .unescape_value()
            .map_err(|_| "bad reference in attribute")?;
        let is_decl = a.key.as_namespace_binding().is_some();
        match r.resolve_attribute(a.key) {
            (ResolveResult::Unknown(_), _) => return Err("undeclared namespace prefix"),
            (ResolveResult::Unbound, name) if !is_decl => attrs.push((
                String::from_utf8_lossy(name.as_ref()).into_owned(),
                value.into_owned(),
            )),
            _ => {}
        }
    }
    Ok(Element {
        ns,
        local,
        attrs,
        children: Vec::new(),
        text: String::new(),
    })
}

/// The namespace name of a resolved element; `None` for an undeclared prefix.
fn owned_ns(res: ResolveResult<'_>) -> Option<String> {
    match res {
        ResolveResult::Bound(ns) => Some(String::from_utf8_lossy(ns.0).into_owned()),
        ResolveResult::Unbound => Some(String::new()),
        ResolveResult::Unknown(_) => None,
    }
}

/// Attaches a finished element to its parent, or makes it the root.
fn close(stack: &mut [Element], root: &mut Option<Element>, el: Element) {
    match stack.last_mut() {
        Some(parent) => parent.children.push(el),
        None => *root = Some(el),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_a_resolved_tree() {
        let doc = br#"<?xml version="1.0"?>
<a:root xmlns:a="urn:a" xmlns="urn:d" id="r&amp;1" a:q="x">
  <child k="v">hello <![CDATA[<world>]]> &#233;</child><a:leaf/>
</a:root>"#;
        let root = parse(doc).unwrap();
        assert!(root.is("urn:a", "root"));
        // Prefixed attributes and namespace declarations are not kept.
        assert_eq!(root.attrs, vec![("id".to_string(), "r&1".to_string())]);
        assert_eq!(root.children.len(), 2);
        let child = &root.children[0];
        assert!(child.is("urn:d", "child"));
        assert_eq!(child.attr("k"), Some("v"));
        assert_eq!(child.attr("x"), None);
        assert_eq!(child.text, "hello <world> é");
        assert!(root.children[1].is("urn:a", "leaf"));
    }

    #[test]
    fn rejects_bad_documents() {
        let deep = format!(
            "{}{}",
            "<a>".repeat(MAX_DEPTH + 1),
            "</a>".repeat(MAX_DEPTH + 1)
        );
        let ok_deep = format!("{}{}", "<a>".repeat(MAX_DEPTH), "</a>".repeat(MAX_DEPTH));
        assert!(parse(ok_deep.as_bytes()).is_ok());
        let cases: &[(&[u8], &str)] = &[
            (b"", "no root element"),
            (b"<a/><b/>", "second root element"),
            (b"<a>", "unclosed element"),
            (b"<a></b>", "malformed XML"),
            (b"<x:a/>", "undeclared namespace prefix"),
            (b"<a x:b='1'/>", "undeclared namespace prefix"),
            (b"<a b='&zz;'/>", "bad reference in attribute"),
            (b"<a>&zz;</a>", "bad reference in text"),
            (b"hi<a/>", "text outside the root element"),
            (b"<!DOCTYPE a><a/>", "DOCTYPE is not allowed"),
            (b"<a>\xff</a>", "not UTF-8"),
            (deep.as_bytes(), "nested too deeply"),
        ];
        for (doc, want) in cases {
            let err = parse(doc).unwrap_err();
            assert!(
                err.contains(want),
                "{:?}: got {err:?}",
                String::from_utf8_lossy(doc)
            );
        }
    }
}
