//! The `dialog` event package (RFC 4235, dialog-info) and its BLA variant `dialog;sla`:
//! Kamailio's presence_dialoginfo.
//!
//! Accepts `application/dialog-info+xml`; default Expires 3600. A published body must be a
//! well-formed XML document (checked like PIDF, see the `presence` package) whose root is
//! `<dialog-info>` in the namespace [`DIALOG_INFO_NS`] with a `version` (digits), a `state`
//! (`full` or `partial`) and a non-empty `entity` attribute. Composition merges the
//! `<dialog>` elements of all publications into one full document for the presentity, and
//! each watcher's NOTIFY gets its own `version` (see `dialog_compose`).
//!
//! Invariant: both variants behave identically except for their registry name.

use bytes::Bytes;
use quick_xml::events::BytesStart;

use crate::ids::PresentityUri;
use crate::presence::package::{Body, EventPackage};
use crate::presence::packages::dialog_compose;
use crate::presence::packages::presence::validate_xml;

/// The dialog-info namespace (RFC 4235 §4).
pub const DIALOG_INFO_NS: &str = "urn:ietf:params:xml:ns:dialog-info";

/// The `dialog` package (RFC 4235) or its Bridged Line Appearance variant `dialog;sla`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DialogPackage {
    /// Registered as `dialog`.
    Dialog,
    /// Registered as `dialog;sla` (BLA, draft-anil-sipping-bla).
    Sla,
}

impl EventPackage for DialogPackage {
    fn name(&self) -> &str {
        match self {
            DialogPackage::Dialog => "dialog",
            DialogPackage::Sla => "dialog;sla",
        }
    }

    fn content_types(&self) -> &[&str] {
        &["application/dialog-info+xml"]
    }

    fn default_expires(&self) -> u32 {
        3600
    }

    fn validate_publish(&self, body: &[u8]) -> Result<(), String> {
        validate_dialog_info(body)
    }

    fn aggregate(&self, presentity: &PresentityUri, docs: &[&[u8]]) -> Option<Bytes> {
        if docs.is_empty() {
            return None;
        }
        Some(Bytes::from(dialog_compose::compose(
            presentity.as_str(),
            docs,
        )))
    }

    /// Rewrites the root `version` attribute to `version`; `None` when the body is not a
    /// `<dialog-info>` document (it is then sent unchanged).
    fn aux_body(&self, body: &Body, version: u32) -> Option<Body> {
        let bytes = dialog_compose::set_version(&body.bytes, version)?;
        Some(Body::new(&body.content_type, bytes))
    }
}

/// Checks that `body` is a dialog-info document (RFC 4235 §4.1); `Err` is a short reason.
pub fn validate_dialog_info(body: &[u8]) -> Result<(), String> {
    validate_xml(body, DIALOG_INFO_NS, "dialog-info", check_root)
}

/// The required attributes of `<dialog-info>`: `version`, `state`, `entity`.
fn check_root(e: &BytesStart<'_>) -> Result<(), String> {
    let attr = |name: &str| -> Result<String, String> {
        match e.try_get_attribute(name) {
            Ok(Some(a)) => a
                .unescape_value()
                .map(|v| v.into_owned())
                .map_err(|_| format!("bad {name} attribute")),
            Ok(None) => Err(format!("<dialog-info> has no {name} attribute")),
            Err(_) => Err(format!("bad {name} attribute")),
        }
    };
    let version = attr("version")?;
    if version.is_empty() || !version.bytes().all(|b| b.is_ascii_digit()) {
        return Err("version is not a non-negative integer".to_string());
    }
    match attr("state")?.as_str() {
        "full" | "partial" => {}
        _ => return Err("state is neither full nor partial".to_string()),
    }
    if attr("entity")?.trim().is_empty() {
        return Err("entity is empty".to_string());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::UriMatch;

    const OK: &str = r#"<?xml version="1.0"?>
<dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" version="12" state="full"
             entity="sip:alice@example.com">
  <dialog id="as7d900as8" call-id="a84b4c76e66710" local-tag="1928301774" direction="initiator">
    <state>confirmed</state>
  </dialog>
</dialog-info>"#;

    #[test]
    fn accepts_dialog_info() {
        let cases: &[&[u8]] = &[
            OK.as_bytes(),
            b"<dialog-info xmlns='urn:ietf:params:xml:ns:dialog-info' version='0' state='partial' entity='sip:a@b'/>",
            b"<d:dialog-info xmlns:d='urn:ietf:params:xml:ns:dialog-info' version='4294967296' state='full' entity='sip:a@b'><d:dialog id='x'/></d:dialog-info>",
        ];
        for body in cases {
            assert_eq!(
                validate_dialog_info(body),
                Ok(()),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        assert_eq!(DialogPackage::Sla.validate_publish(OK.as_bytes()), Ok(()));
    }

    #[test]
    fn rejects_with_short_reasons() {
        const NS: &str = "xmlns='urn:ietf:params:xml:ns:dialog-info'";
        let doc = |attrs: &str| format!("<dialog-info {NS} {attrs}/>");
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (
                doc("version='1' state='full'").into(),
                "no entity attribute",
            ),
            (
                doc("state='full' entity='sip:a@b'").into(),
                "no version attribute",
            ),
            (
                doc("version='1' entity='sip:a@b'").into(),
                "no state attribute",
            ),
            (
                doc("version='-1' state='full' entity='x'").into(),
                "version is not",
            ),
            (
                doc("version='' state='full' entity='x'").into(),
                "version is not",
            ),
            (
                doc("version='1' state='Full' entity='x'").into(),
                "neither full nor partial",
            ),
            (
                doc("version='1' state='full' entity=' '").into(),
                "entity is empty",
            ),
            (
                doc("version='&bogus;' state='full' entity='x'").into(),
                "bad reference",
            ),
            (
                b"<dialog-info version='1' state='full' entity='x'/>".to_vec(),
                "root element is not <dialog-info>",
            ),
            (
                b"<presence xmlns='urn:ietf:params:xml:ns:pidf'/>".to_vec(),
                "root element is not <dialog-info>",
            ),
            (
                format!("<dialog-info {NS} version='1' state='full' entity='x'><dialog>").into(),
                "unclosed element",
            ),
            (
                format!("<dialog-info {NS} version='1' state='full' entity='x'></dialog>").into(),
                "malformed XML",
            ),
            (b"".to_vec(), "no root element"),
        ];
        for (body, want) in &cases {
            let got = validate_dialog_info(body).expect_err(&String::from_utf8_lossy(body));
            assert!(
                got.contains(want),
                "{:?}: got {got:?}, want {want:?}",
                String::from_utf8_lossy(body)
            );
            assert!(got.len() < 80, "reason too long: {got}");
        }
    }

    #[test]
    fn package_metadata() {
        for (p, name) in [
            (DialogPackage::Dialog, "dialog"),
            (DialogPackage::Sla, "dialog;sla"),
        ] {
            assert_eq!(
                (p.name(), p.content_types(), p.default_expires()),
                (name, &["application/dialog-info+xml"][..], 3600)
            );
            assert!(!p.etag_not_new() && !p.req_auth());
            let uri = PresentityUri::parse("sip:bob@example.org", UriMatch::CaseSensitive).unwrap();
            assert_eq!(p.aggregate(&uri, &[]), None);
            let out = p.aggregate(&uri, &[OK.as_bytes()]).unwrap();
            assert_eq!(validate_dialog_info(&out), Ok(()));
            let text = std::str::from_utf8(&out).unwrap();
            assert!(text.contains(r#"entity="sip:bob@example.org""#), "{text}");
            assert!(text.contains(r#"<dialog id="as7d900as8""#), "{text}");
        }
    }

    #[test]
    fn aux_body_keeps_content_type_and_skips_foreign_bodies() {
        let p = DialogPackage::Dialog;
        let b = Body::new("application/dialog-info+xml;charset=UTF-8", OK);
        let out = p.aux_body(&b, 7).expect("rewritten");
        assert_eq!(out.content_type, b.content_type);
        assert!(std::str::from_utf8(&out.bytes)
            .unwrap()
            .contains(r#"version="7""#));
        let pidf = Body::new("application/pidf+xml", &b"<presence/>"[..]);
        assert_eq!(p.aux_body(&pidf, 1), None);
        assert_eq!(p.aux_body(&Body::new("x/y", &b"<a"[..]), 1), None);
    }
}
