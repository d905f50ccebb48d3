//! The event-package trait (Kamailio's `pres_ev_t`) and the registry of packages.
//!
//! A package says which bodies a PUBLISH may carry, validates them, and composes the bodies of
//! all live publications of one presentity into the document a NOTIFY carries. The built-in
//! packages (see [`crate::presence::packages`]) use this trait like any added one would.
//!
//! Invariants: a [`PackageRegistry`] holds at most one package per [`EventKey`] and lists them
//! in registration order (the order of Allow-Events).

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::ids::{EventKey, PresentityUri};

/// A message body with its Content-Type.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Body {
    /// The Content-Type header value as received (may carry parameters such as `charset`).
    pub content_type: String,
    /// The body bytes.
    #[serde(with = "bytes_serde")]
    pub bytes: Bytes,
}

impl Body {
    /// A body from a content type and bytes.
    pub fn new(content_type: &str, bytes: impl Into<Bytes>) -> Self {
        Body {
            content_type: content_type.to_string(),
            bytes: bytes.into(),
        }
    }

    /// The media type without parameters, trimmed (`application/pidf+xml`).
    pub fn media_type(&self) -> &str {
        self.content_type.split(';').next().unwrap_or("").trim()
    }
}

/// An event package (RFC 6665 §7.2): Kamailio's `pres_ev_t`.
pub trait EventPackage: Send + Sync + 'static {
    /// The registry key, e.g. `presence`, `dialog;sla`.
    fn name(&self) -> &str;

    /// The media types accepted on PUBLISH; the first one is the type of NOTIFY bodies.
    fn content_types(&self) -> &[&str];

    /// The Expires used when a request has none (3600 for presence).
    fn default_expires(&self) -> u32;

    /// `true` when a refresh keeps the publication's ETag (Kamailio's `etag_not_new`).
    fn etag_not_new(&self) -> bool {
        false
    }

    /// `true` when subscriptions need authorization (Kamailio's `req_auth`).
    fn req_auth(&self) -> bool {
        false
    }

    /// Checks a published body (Kamailio's `evs_publ_handl`); `Err` carries a short reason
    /// for the 400 reply, never the body itself.
    fn validate_publish(&self, body: &[u8]) -> Result<(), String>;

    /// Kamailio's `agg_nbody`: composes the bodies of all live publications (already
    /// ordered, first = highest precedence) into one document for `presentity`; `None` when
    /// `docs` is empty.
    fn aggregate(&self, presentity: &PresentityUri, docs: &[&[u8]]) -> Option<Bytes>;

    /// Kamailio's `aux_body_processing`: per-watcher post-processing of the composed body;
    /// `version` is the subscription's NOTIFY counter (0 for the first NOTIFY with a body, +1
    /// each). `None` = send `body` unchanged (the default). The `dialog` packages rewrite the
    /// root `version` attribute here; the NOTIFY path calls it once per NOTIFY that carries a
    /// body, after any authorization filtering.
    fn aux_body(&self, body: &Body, version: u32) -> Option<Body> {
        let _ = (body, version);
        None
    }
}

/// An error of the package registry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PackageError {
    /// A package with this name is already registered; the registry is unchanged.
    #[error("event package {0:?} is already registered")]
    Duplicate(String),
}

/// The registered event packages, by [`EventKey`], in registration order.
#[derive(Clone, Default)]
pub struct PackageRegistry {
    packages: Vec<(EventKey, Arc<dyn EventPackage>)>,
}

impl PackageRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        PackageRegistry {
            packages: Vec::new(),
        }
    }

    /// A registry holding the built-in packages (`presence`).
    pub fn with_builtin() -> Self {
        let mut r = PackageRegistry::new();
        for p in crate::presence::packages::builtin() {
            // The built-in list has distinct names (tested in `packages`), so adding to an
            // empty registry cannot fail; a duplicate would only be skipped.
            let _ = r.add(p);
        }
        r
    }

    /// Registers a package; a name already registered is an error and changes nothing.
    pub fn add(&mut self, p: Arc<dyn EventPackage>) -> Result<(), PackageError> {
        let key = EventKey::new(p.name());
        if self.contains(&key) {
            return Err(PackageError::Duplicate(key.as_str().to_string()));
        }
        self.packages.push((key, p));
        Ok(())
    }

    /// The package registered under `key`.
    pub fn find(&self, key: &EventKey) -> Option<Arc<dyn EventPackage>> {
        self.packages
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, p)| Arc::clone(p))
    }

    /// Whether a package is registered under `key`.
    pub fn contains(&self, key: &EventKey) -> bool {
        self.packages.iter().any(|(k, _)| k == key)
    }

    /// The registered names in registration order (for Allow-Events).
    pub fn event_list(&self) -> Vec<String> {
        self.packages
            .iter()
            .map(|(k, _)| k.as_str().to_string())
            .collect()
    }
}

impl fmt::Debug for PackageRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.packages.iter().map(|(k, _)| k.as_str()))
            .finish()
    }
}

/// serde for [`Bytes`] without the `bytes/serde` feature: written as a byte string, read from
/// a byte string or a sequence of integers (for self-describing formats).
mod bytes_serde {
    use std::fmt;

    use bytes::Bytes;
    use serde::de::{self, SeqAccess, Visitor};
    use serde::{Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(b: &Bytes, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(b)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Bytes, D::Error> {
        d.deserialize_byte_buf(BytesVisitor)
    }

    struct BytesVisitor;

    impl<'de> Visitor<'de> for BytesVisitor {
        type Value = Bytes;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a byte string")
        }

        fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Bytes, E> {
            Ok(Bytes::copy_from_slice(v))
        }

        fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Bytes, E> {
            Ok(Bytes::from(v))
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<Bytes, E> {
            Ok(Bytes::copy_from_slice(v.as_bytes()))
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Bytes, A::Error> {
            let mut v = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64 * 1024));
            while let Some(b) = seq.next_element::<u8>()? {
                v.push(b);
            }
            Ok(Bytes::from(v))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Stub(&'static str);

    impl EventPackage for Stub {
        fn name(&self) -> &str {
            self.0
        }
        fn content_types(&self) -> &[&str] {
            &["text/plain"]
        }
        fn default_expires(&self) -> u32 {
            600
        }
        fn validate_publish(&self, _body: &[u8]) -> Result<(), String> {
            Ok(())
        }
        fn aggregate(&self, _p: &PresentityUri, docs: &[&[u8]]) -> Option<Bytes> {
            docs.first().map(|d| Bytes::copy_from_slice(d))
        }
    }

    #[test]
    fn registry_keeps_order_and_rejects_duplicates() {
        let mut r = PackageRegistry::new();
        assert!(r.event_list().is_empty());
        r.add(Arc::new(Stub("presence"))).unwrap();
        r.add(Arc::new(Stub("dialog;sla"))).unwrap();
        r.add(Arc::new(Stub("dialog"))).unwrap();
        assert_eq!(
            r.add(Arc::new(Stub("Presence"))),
            Err(PackageError::Duplicate("presence".into()))
        );
        assert_eq!(r.event_list(), vec!["presence", "dialog;sla", "dialog"]);
        assert!(r.contains(&EventKey::new("dialog;sla")));
        assert!(!r.contains(&EventKey::new("message-summary")));
        let p = r.find(&EventKey::new("dialog")).unwrap();
        assert_eq!(p.name(), "dialog");
        assert_eq!(p.default_expires(), 600);
        assert!(!p.etag_not_new() && !p.req_auth());
        assert!(r.find(&EventKey::new("nope")).is_none());
        assert_eq!(format!("{r:?}"), r#"["presence", "dialog;sla", "dialog"]"#);
    }

    #[test]
    fn builtin_registry_has_presence() {
        let r = PackageRegistry::with_builtin();
        // The full built-in list is tested in `packages`.
        assert_eq!(r.event_list().first().map(String::as_str), Some("presence"));
        let p = r.find(&EventKey::new("presence")).unwrap();
        assert_eq!(p.content_types(), &["application/pidf+xml"]);
        assert_eq!(p.default_expires(), 3600);
    }

    #[test]
    fn body_media_type_drops_parameters() {
        let b = Body::new(" Application/PIDF+xml ; charset=UTF-8", &b"x"[..]);
        assert_eq!(b.media_type(), "Application/PIDF+xml");
        assert_eq!(
            Body::new("text/plain", Bytes::new()).media_type(),
            "text/plain"
        );
    }
}
