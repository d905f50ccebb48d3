//! Typed SIP messages as the rest of the crate sees them (RFC 3261 §7).
//!
//! Invariants: a [`Request`] or [`Response`] always has at least one Via, a From, a To, a
//! non-empty Call-ID and a CSeq (the parser refuses anything else); `headers` holds every
//! header in received order under its canonical long name (compact forms expanded), and
//! the typed fields are views of those same headers. `body` is exactly Content-Length bytes.

use std::fmt;

use bytes::Bytes;

use super::headers::{Event, Expires, HeaderError, SipIfMatch};
use super::normalise::canonical_name;
use super::{NameAddr, Via};

/// A header name in a parsed message: the canonical spelling of a known header is not
/// copied (every message has a dozen of them).
pub type HeaderName = std::borrow::Cow<'static, str>;

/// A parsed SIP message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// A request (`METHOD uri SIP/2.0`).
    Request(Request),
    /// A response (`SIP/2.0 code reason`).
    Response(Response),
}

/// A SIP method (RFC 3261 §7.1; methods are case-sensitive).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Method {
    /// RFC 3903 PUBLISH.
    Publish,
    /// RFC 6665 SUBSCRIBE.
    Subscribe,
    /// RFC 6665 NOTIFY.
    Notify,
    /// RFC 3261 OPTIONS.
    Options,
    /// RFC 3261 ACK.
    Ack,
    /// Any other method token (answered 405 by the server).
    Other(String),
}

impl Method {
    /// The method for a token as it appears on the wire.
    pub fn from_token(token: &str) -> Method {
        match token {
            "PUBLISH" => Method::Publish,
            "SUBSCRIBE" => Method::Subscribe,
            "NOTIFY" => Method::Notify,
            "OPTIONS" => Method::Options,
            "ACK" => Method::Ack,
            other => Method::Other(other.to_string()),
        }
    }

    /// The method token.
    pub fn as_str(&self) -> &str {
        match self {
            Method::Publish => "PUBLISH",
            Method::Subscribe => "SUBSCRIBE",
            Method::Notify => "NOTIFY",
            Method::Options => "OPTIONS",
            Method::Ack => "ACK",
            Method::Other(s) => s,
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `CSeq: seq METHOD` (RFC 3261 §20.16).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CSeq {
    /// Sequence number.
    pub seq: u32,
    /// Method, equal to the request's method in any valid request.
    pub method: Method,
}

impl CSeq {
    /// Parses `1*DIGIT LWS Method`. `None` when malformed or the number exceeds `u32`.
    pub fn parse(value: &str) -> Option<CSeq> {
        let mut parts = value.split_ascii_whitespace();
        let seq = parts.next()?;
        let method = parts.next()?;
        if parts.next().is_some()
            || !seq.bytes().all(|b| b.is_ascii_digit())
            || !super::headers::is_token(method)
        {
            return None;
        }
        Some(CSeq {
            seq: seq.parse().ok()?,
            method: Method::from_token(method),
        })
    }
}

impl fmt::Display for CSeq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.seq, self.method)
    }
}

/// A SIP request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// The method from the request line.
    pub method: Method,
    /// The Request-URI text as received.
    pub uri: String,
    /// Every Via value in order, comma-separated Via headers split.
    pub vias: Vec<Via>,
    /// The From header.
    pub from: NameAddr,
    /// The To header.
    pub to: NameAddr,
    /// The Call-ID.
    pub call_id: String,
    /// The CSeq.
    pub cseq: CSeq,
    /// Max-Forwards, if present (tolerated missing).
    pub max_forwards: Option<u32>,
    /// The first Contact, if present.
    pub contact: Option<NameAddr>,
    /// Each Record-Route entry (`<sip:p1;lr>`), in received order, commas split.
    pub record_route: Vec<String>,
    /// All headers, canonical long names, in received order (values trimmed, folded lines
    /// joined; the media type of Content-Type lower-cased).
    pub headers: Vec<(HeaderName, String)>,
    /// The body: exactly Content-Length bytes.
    pub body: Bytes,
}

impl Request {
    /// The first value of a header (name case-insensitive, compact forms accepted).
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    /// Every value of a header, in order (values are not split at commas).
    pub fn header_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        header_values(&self.headers, name)
    }

    /// The Event header, typed (RFC 6665 §8.2.1).
    pub fn event(&self) -> Result<Option<Event>, HeaderError> {
        self.header("Event").map(str::parse).transpose()
    }

    /// The Expires header in seconds (RFC 3261 §20.19).
    pub fn expires(&self) -> Result<Option<u32>, HeaderError> {
        self.header("Expires")
            .map(|v| v.parse::<Expires>().map(|e| e.0))
            .transpose()
    }

    /// The SIP-If-Match header (RFC 3903 §11.3.2); `None` when absent or not a token.
    pub fn sip_if_match(&self) -> Option<SipIfMatch> {
        self.header("SIP-If-Match").and_then(|v| v.parse().ok())
    }

    /// The media type of the body (`application/pidf+xml`): lower-case, parameters stripped.
    pub fn content_type(&self) -> Option<&str> {
        self.header("Content-Type").map(media_type)
    }

    /// The User-Agent header.
    pub fn user_agent(&self) -> Option<&str> {
        self.header("User-Agent")
    }

    /// The branch of the top Via (RFC 3261 §17.2.3 transaction key), if any.
    pub fn branch(&self) -> Option<&str> {
        self.vias.first().and_then(|v| v.branch.as_deref())
    }
}

/// A SIP response (to a NOTIFY we sent).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// Status code, 100..=699.
    pub status: u16,
    /// Reason phrase as received (may be empty).
    pub reason: String,
    /// Every Via value in order.
    pub vias: Vec<Via>,
    /// The From header (our side of the dialog).
    pub from: NameAddr,
    /// The To header (the watcher's side).
    pub to: NameAddr,
    /// The Call-ID.
    pub call_id: String,
    /// The CSeq.
    pub cseq: CSeq,
    /// All headers, canonical long names, in received order.
    pub headers: Vec<(HeaderName, String)>,
    /// The body: exactly Content-Length bytes.
    pub body: Bytes,
}

impl Response {
    /// The first value of a header (name case-insensitive, compact forms accepted).
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    /// The branch of the top Via, which names the client transaction.
    pub fn branch(&self) -> Option<&str> {
        self.vias.first().and_then(|v| v.branch.as_deref())
    }
}

fn find_header<'a>(headers: &'a [(HeaderName, String)], name: &str) -> Option<&'a str> {
    let name = canonical_name(name);
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn header_values<'a>(
    headers: &'a [(HeaderName, String)],
    name: &'a str,
) -> impl Iterator<Item = &'a str> + 'a {
    let name = canonical_name(name);
    headers
        .iter()
        .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// The media type part of a Content-Type value; the parser stores it lower-cased.
fn media_type(value: &str) -> &str {
    value.split(';').next().unwrap_or("").trim()
}

/// Lower-cases the media type of a Content-Type value, keeping its parameters as written
/// (media types are case-insensitive, RFC 3261 §7.3.1 / RFC 2045 §5.1).
pub(crate) fn normalise_content_type(value: &str) -> String {
    match value.split_once(';') {
        Some((t, params)) => format!("{};{params}", t.trim().to_ascii_lowercase()),
        None => value.trim().to_ascii_lowercase(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_tokens_are_case_sensitive() {
        assert_eq!(Method::from_token("PUBLISH"), Method::Publish);
        assert_eq!(
            Method::from_token("publish"),
            Method::Other("publish".into())
        );
        assert_eq!(Method::from_token("INFO").as_str(), "INFO");
        assert_eq!(Method::Subscribe.to_string(), "SUBSCRIBE");
    }

    #[test]
    fn cseq_parses_and_rejects() {
        let c = CSeq::parse(" 4711   SUBSCRIBE ").unwrap();
        assert_eq!((c.seq, &c.method), (4711, &Method::Subscribe));
        assert_eq!(c.to_string(), "4711 SUBSCRIBE");
        for s in [
            "",
            "1",
            "x NOTIFY",
            "1 NOTIFY extra",
            "99999999999 ACK",
            "-1 ACK",
        ] {
            assert!(CSeq::parse(s).is_none(), "{s:?}");
        }
    }

    #[test]
    fn content_type_is_normalised() {
        assert_eq!(
            normalise_content_type(" Application/PIDF+XML ;charset=UTF-8"),
            "application/pidf+xml;charset=UTF-8"
        );
        assert_eq!(
            media_type("application/pidf+xml;charset=UTF-8"),
            "application/pidf+xml"
        );
    }
}
