//! Parse, don't validate: a SIP request becomes a [`PublishRequest`] or a [`SubscribeRequest`]
//! before it reaches an actor, or it is refused with a [`Rejection`] carrying its status.
//!
//! Covers SPEC §3.1 steps 1–2 and §3.2 step 1: Event (489 + Allow-Events), Expires (default,
//! cap, 423 + Min-Expires or raise), the Request-URI as presentity, body size (413), the
//! `sender_header`, `watcher_uri_header` and priority (`xavp_cfg`) headers.

use std::sync::Arc;

use bytes::Bytes;

use crate::ids::{ETag, EventKey, PresentityUri, UriMatch};
use crate::presence::expires::{decide, ExpiresDecision, ExpiresRules};
use crate::presence::package::{Body, EventPackage, PackageRegistry};
use crate::sip::Request;

/// The request-independent rules applied at ingress.
#[derive(Clone, Debug)]
pub struct IngressRules {
    /// Expires default/cap/minimum.
    pub expires: ExpiresRules,
    /// URI comparison mode.
    pub uri_match: UriMatch,
    /// Largest body accepted (413 above).
    pub max_body: usize,
    /// `[sip] sender_header`.
    pub sender_header: Option<String>,
    /// `[sip] watcher_uri_header`.
    pub watcher_uri_header: Option<String>,
    /// `[presence] xavp_cfg`: header carrying `priority=N`.
    pub priority_header: Option<String>,
}

/// A refused request: status, reason phrase and extra response headers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    /// SIP status code.
    pub status: u16,
    /// Reason phrase.
    pub reason: String,
    /// Extra headers (Allow-Events, Min-Expires, …).
    pub headers: Vec<(&'static str, String)>,
}

impl Rejection {
    fn new(status: u16, reason: &str) -> Self {
        Rejection {
            status,
            reason: reason.to_string(),
            headers: Vec::new(),
        }
    }

    fn bad_event(packages: &PackageRegistry) -> Self {
        let mut r = Rejection::new(489, "Bad Event");
        r.headers
            .push(("Allow-Events", packages.event_list().join(", ")));
        r
    }
}

/// A PUBLISH that passed ingress checks.
#[derive(Clone, Debug)]
pub struct PublishRequest {
    /// The presentity (Request-URI).
    pub presentity: PresentityUri,
    /// The package.
    pub event: EventKey,
    /// Decided expiry in seconds (0 = remove).
    pub expires: u32,
    /// SIP-If-Match.
    pub if_match: Option<ETag>,
    /// The body with its media type.
    pub body: Option<Body>,
    /// Priority from the `xavp_cfg` header.
    pub priority: Option<i32>,
    /// The `sender_header` URI, not notified of this PUBLISH.
    pub sender: Option<PresentityUri>,
}

/// A SUBSCRIBE that passed ingress checks.
#[derive(Clone, Debug)]
pub struct SubscribeRequest {
    /// The presentity (Request-URI for an initial SUBSCRIBE).
    pub presentity: PresentityUri,
    /// The package.
    pub event: EventKey,
    /// The Event header's `id`.
    pub event_id: Option<String>,
    /// Decided expiry in seconds (0 = un-subscribe / fetch).
    pub expires: u32,
    /// The watcher URI (From, or `watcher_uri_header`).
    pub watcher: PresentityUri,
    /// Our tag, when the SUBSCRIBE is inside a dialog.
    pub local_tag: Option<String>,
}

/// Finds the package of `req`'s Event header, or refuses with 489.
fn package_of(
    req: &Request,
    packages: &PackageRegistry,
) -> Result<(Arc<dyn EventPackage>, Option<String>), Rejection> {
    let event = match req.event() {
        Ok(Some(e)) => e,
        Ok(None) | Err(_) => return Err(Rejection::bad_event(packages)),
    };
    let pkg = packages
        .find(&event.key())
        .ok_or_else(|| Rejection::bad_event(packages))?;
    Ok((pkg, event.id.clone()))
}

fn expires_of(
    req: &Request,
    pkg: &dyn EventPackage,
    rules: &IngressRules,
) -> Result<u32, Rejection> {
    let requested = req
        .expires()
        .map_err(|_| Rejection::new(400, "Bad Expires"))?;
    match decide(requested, pkg.default_expires(), &rules.expires) {
        ExpiresDecision::Use(s) => Ok(s),
        ExpiresDecision::TooBrief { min_expires } => {
            let mut r = Rejection::new(423, "Interval Too Brief");
            r.headers.push(("Min-Expires", min_expires.to_string()));
            Err(r)
        }
    }
}

fn presentity_of(req: &Request, rules: &IngressRules) -> Result<PresentityUri, Rejection> {
    PresentityUri::parse(&req.uri, rules.uri_match)
        .ok_or_else(|| Rejection::new(400, "Bad Request-URI"))
}

/// The URI inside a header value such as `"Bob" <sip:bob@h>;tag=1` or `sip:bob@h`.
fn header_uri(value: &str, mode: UriMatch) -> Option<PresentityUri> {
    let inner = match (value.find('<'), value.find('>')) {
        (Some(a), Some(b)) if a < b => &value[a + 1..b],
        _ => value.split(';').next().unwrap_or(value),
    };
    PresentityUri::parse(inner, mode)
}

/// Ingress checks of a PUBLISH (SPEC §3.1 steps 1–2).
pub fn publish_request(
    req: &Request,
    packages: &PackageRegistry,
    rules: &IngressRules,
) -> Result<(PublishRequest, Arc<dyn EventPackage>), Rejection> {
    let (pkg, _) = package_of(req, packages)?;
    if !pkg.publishable() {
        // Server-generated state (watcher info) cannot be published.
        return Err(Rejection::bad_event(packages));
    }
    let expires = expires_of(req, pkg.as_ref(), rules)?;
    let presentity = presentity_of(req, rules)?;
    if req.body.len() > rules.max_body {
        return Err(Rejection::new(413, "Request Entity Too Large"));
    }
    let body = (!req.body.is_empty()).then(|| Body {
        content_type: req.content_type().unwrap_or("").to_string(),
        bytes: Bytes::clone(&req.body),
    });
    let priority = rules
        .priority_header
        .as_deref()
        .and_then(|h| req.header(h))
        .and_then(parse_priority);
    let sender = rules
        .sender_header
        .as_deref()
        .and_then(|h| req.header(h))
        .and_then(|v| header_uri(v, rules.uri_match));
    let publish = PublishRequest {
        presentity,
        event: EventKey::new(pkg.name()),
        expires,
        if_match: req.sip_if_match().map(|m| m.etag()),
        body,
        priority,
        sender,
    };
    Ok((publish, pkg))
}

/// `priority=N` among `;`/`,`-separated attributes (the `xavp_cfg` header's value).
fn parse_priority(value: &str) -> Option<i32> {
    value.split([';', ',']).find_map(|attr| {
        let (k, v) = attr.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("priority")
            .then(|| v.trim().parse().ok())?
    })
}

/// Ingress checks of a SUBSCRIBE (SPEC §3.2 step 1).
pub fn subscribe_request(
    req: &Request,
    packages: &PackageRegistry,
    rules: &IngressRules,
) -> Result<(SubscribeRequest, Arc<dyn EventPackage>), Rejection> {
    let (pkg, event_id) = package_of(req, packages)?;
    let expires = expires_of(req, pkg.as_ref(), rules)?;
    let local_tag = req.to.tag.clone();
    let presentity = match &local_tag {
        // In a dialog the Request-URI is our Contact; the presentity is the dialog's.
        Some(_) => header_uri(&req.to.uri, rules.uri_match)
            .ok_or_else(|| Rejection::new(400, "Bad To URI"))?,
        None => presentity_of(req, rules)?,
    };
    if local_tag.is_none() && req.contact.is_none() {
        return Err(Rejection::new(400, "Missing Contact"));
    }
    // The Contact becomes our NOTIFYs' Request-URI: it must be one we would accept ourselves
    // (fuzzing found NOTIFYs sent to `sip:watch{r7@…`, which strict clients refuse).
    if req
        .contact
        .as_ref()
        .is_some_and(|c| !crate::sip::request_uri_ok(&c.uri))
    {
        return Err(Rejection::new(400, "Malformed Contact"));
    }
    if req.from.tag.is_none() {
        return Err(Rejection::new(400, "Missing From tag"));
    }
    let watcher = rules
        .watcher_uri_header
        .as_deref()
        .and_then(|h| req.header(h))
        .and_then(|v| header_uri(v, rules.uri_match))
        .or_else(|| header_uri(&req.from.uri, rules.uri_match))
        .ok_or_else(|| Rejection::new(400, "Bad From URI"))?;
    let sub = SubscribeRequest {
        presentity,
        event: EventKey::new(pkg.name()),
        event_id,
        expires,
        watcher,
        local_tag,
    };
    Ok((sub, pkg))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priority_attribute_is_found_among_others() {
        assert_eq!(parse_priority("priority=100"), Some(100));
        assert_eq!(parse_priority("x=1; Priority = -5"), Some(-5));
        assert_eq!(parse_priority("priority=abc"), None);
        assert_eq!(parse_priority("nothing"), None);
    }

    #[test]
    fn header_uri_takes_angle_brackets_or_bare_uri() {
        let m = UriMatch::CaseSensitive;
        assert_eq!(
            header_uri("\"Bob\" <sip:bob@Example.com>;tag=1", m)
                .unwrap()
                .as_str(),
            "sip:bob@example.com"
        );
        assert_eq!(
            header_uri("sip:carol@h;tag=2", m).unwrap().as_str(),
            "sip:carol@h"
        );
        assert!(header_uri("garbage", m).is_none());
    }
}
