//! Bytes → [`Message`]: one complete SIP message (a UDP datagram, or one frame cut by
//! [`frame_length`](super::frame_length)).
//!
//! Steps: skip leading CRLFs (RFC 3261 §7.5), classify the start line (not SIP at all →
//! [`ParseError::NotSip`]), normalise and split the header section
//! ([`split_headers`]), check the mandatory headers (Via, From, To, Call-ID, CSeq) and parse
//! them, then apply Content-Length (RFC 3261 §18.3: longer datagrams are truncated to it,
//! shorter ones are an error; absent means "the rest of the datagram").
//!
//! Invariants: never panics on any input; a [`ParseError::BadRequest`] always carries the
//! raw Via/From/To/Call-ID/CSeq values that could be salvaged so a 400 can be sent; reason
//! phrases are fixed strings, never text taken from the message.

use bytes::Bytes;

use super::headers::{is_token, split_quoted};
use super::message::{
    normalise_content_type, CSeq, HeaderName, Message, Method, Request, Response,
};
use super::normalise::{split_headers, RawHeader};
use super::{NameAddr, Via};

/// Why a buffer is not a usable SIP message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Not a SIP message at all (garbage, empty, no SIP start line): drop with a debug log.
    #[error("not a SIP message")]
    NotSip,
    /// Looks like a SIP request but is malformed: answer 400 with `reason` as the
    /// Reason-Phrase if `echo` has at least one Via (else drop). The reason is one of
    /// `Missing <Name>`, `Malformed <Name>`, `Bad Content-Length`, `Unsupported SIP version`,
    /// `Malformed header`, `Malformed Request-URI`, `CSeq method mismatch`.
    #[error("bad request: {reason}")]
    BadRequest {
        /// Reason-Phrase for the 400 (fixed text naming the problem).
        reason: String,
        /// Raw headers salvaged for the 400.
        echo: Box<EchoHeaders>,
    },
    /// A malformed response: drop.
    #[error("malformed response")]
    BadResponse,
}

impl ParseError {
    /// The status to answer with: 505 for an unsupported SIP version, 400 for any other
    /// malformed request, `None` when the message is to be dropped. (A request whose echo has
    /// no Via cannot be answered either; check `echo.vias`.)
    pub fn status_code(&self) -> Option<u16> {
        match self {
            ParseError::BadRequest { reason, .. } if reason == UNSUPPORTED_VERSION => Some(505),
            ParseError::BadRequest { .. } => Some(400),
            ParseError::NotSip | ParseError::BadResponse => None,
        }
    }
}

const UNSUPPORTED_VERSION: &str = "Unsupported SIP version";

/// Raw header values salvaged from a malformed request so a 400 can still be built.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EchoHeaders {
    /// Every via-parm in order (comma-separated Via headers split), as received.
    pub vias: Vec<String>,
    /// The first From value.
    pub from: Option<String>,
    /// The first To value.
    pub to: Option<String>,
    /// The first Call-ID value.
    pub call_id: Option<String>,
    /// The first CSeq value.
    pub cseq: Option<String>,
}

/// Parses one complete SIP message.
pub fn parse(buf: &[u8]) -> Result<Message, ParseError> {
    let start = buf
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .ok_or(ParseError::NotSip)?;
    let buf = &buf[start..];
    let (head, body) = split_head(buf);
    let line_end = memchr::memchr(b'\n', head).unwrap_or(head.len());
    let line = &head[..line_end];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let section = head.get(line_end + 1..).unwrap_or(&[]);
    let line = std::str::from_utf8(line).map_err(|_| ParseError::NotSip)?;
    match classify(line).ok_or(ParseError::NotSip)? {
        StartLine::Request {
            method,
            uri,
            version,
        } => parse_request(method, uri, version, section, body).map(Message::Request),
        StartLine::Response {
            version,
            status,
            reason,
        } => parse_response(version, status, reason, section, body)
            .map(Message::Response)
            .map_err(|_| ParseError::BadResponse),
    }
}

enum StartLine<'a> {
    Request {
        method: &'a str,
        uri: &'a str,
        version: &'a str,
    },
    Response {
        version: &'a str,
        status: &'a str,
        reason: &'a str,
    },
}

/// Recognises `Method SP Request-URI SP SIP/x.y` or `SIP/x.y SP code SP reason`.
fn classify(line: &str) -> Option<StartLine<'_>> {
    let b = line.as_bytes();
    if b.len() >= 4 && b[..4].eq_ignore_ascii_case(b"SIP/") {
        let mut parts = line.splitn(3, ' ');
        let version = parts.next()?;
        let status = parts.next()?;
        let reason = parts.next().unwrap_or("");
        return Some(StartLine::Response {
            version,
            status,
            reason,
        });
    }
    let mut parts = line.split_ascii_whitespace();
    let (method, uri, version) = (parts.next()?, parts.next()?, parts.next()?);
    let vb = version.as_bytes();
    let looks_sip = vb.len() >= 4 && vb[..4].eq_ignore_ascii_case(b"SIP/");
    (parts.next().is_none() && is_token(method) && looks_sip).then_some(StartLine::Request {
        method,
        uri,
        version,
    })
}

/// Splits at the first empty line (CRLF CRLF, or bare LF LF); without one, all is head.
fn split_head(buf: &[u8]) -> (&[u8], &[u8]) {
    for nl in memchr::memchr_iter(b'\n', buf) {
        match (buf.get(nl + 1), buf.get(nl + 2)) {
            (Some(b'\n'), _) => return (&buf[..nl], &buf[nl + 2..]),
            (Some(b'\r'), Some(b'\n')) => return (&buf[..nl], &buf[nl + 3..]),
            _ => {}
        }
    }
    (buf, &[])
}

/// Raw values of the headers every message must carry, plus the optional ones we type.
#[derive(Default)]
struct Raw<'h> {
    vias: Vec<&'h str>,
    from: Option<&'h str>,
    to: Option<&'h str>,
    call_id: Option<&'h str>,
    cseq: Option<&'h str>,
    max_forwards: Option<&'h str>,
    contact: Option<&'h str>,
    record_route: Vec<&'h str>,
    content_length: Option<&'h str>,
}

impl<'h> Raw<'h> {
    fn collect(headers: &'h [RawHeader<'_>]) -> Self {
        let mut r = Raw::default();
        for h in headers {
            let v: &str = &h.value;
            match h.name.as_str() {
                "Via" => r.vias.push(v),
                "From" => r.from = r.from.or(Some(v)),
                "To" => r.to = r.to.or(Some(v)),
                "Call-ID" => r.call_id = r.call_id.or(Some(v)),
                "CSeq" => r.cseq = r.cseq.or(Some(v)),
                "Max-Forwards" => r.max_forwards = r.max_forwards.or(Some(v)),
                "Contact" => r.contact = r.contact.or(Some(v)),
                "Record-Route" => r.record_route.push(v),
                "Content-Length" => r.content_length = r.content_length.or(Some(v)),
                _ => {}
            }
        }
        r
    }
}

/// The typed mandatory headers.
struct Common {
    vias: Vec<Via>,
    from: NameAddr,
    to: NameAddr,
    call_id: String,
    cseq: CSeq,
}

fn common(raw: &Raw<'_>) -> Result<Common, &'static str> {
    if raw.vias.is_empty() {
        return Err("Missing Via");
    }
    let from = raw.from.ok_or("Missing From")?;
    let to = raw.to.ok_or("Missing To")?;
    let call_id = raw.call_id.ok_or("Missing Call-ID")?;
    let cseq = raw.cseq.ok_or("Missing CSeq")?;
    let mut vias = Vec::with_capacity(raw.vias.len());
    for value in &raw.vias {
        for part in split_quoted(value, ',') {
            vias.push(Via::parse(part).ok_or("Malformed Via")?);
        }
    }
    if call_id.is_empty() || call_id.contains([' ', '\t']) {
        return Err("Malformed Call-ID");
    }
    Ok(Common {
        vias,
        from: NameAddr::parse(from).ok_or("Malformed From")?,
        to: NameAddr::parse(to).ok_or("Malformed To")?,
        call_id: call_id.to_string(),
        cseq: CSeq::parse(cseq).ok_or("Malformed CSeq")?,
    })
}

/// Applies Content-Length to the bytes after the blank line.
fn cut_body(content_length: Option<&str>, body: &[u8]) -> Result<Bytes, &'static str> {
    const BAD: &str = "Bad Content-Length";
    let len = match content_length {
        None => body.len(),
        Some(v) if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) => {
            v.parse::<usize>().map_err(|_| BAD)?
        }
        Some(_) => return Err(BAD),
    };
    body.get(..len).map(Bytes::copy_from_slice).ok_or(BAD)
}

fn owned_headers(headers: &[RawHeader<'_>]) -> Vec<(HeaderName, String)> {
    headers
        .iter()
        .map(|h| {
            let value = if h.name.as_str() == "Content-Type" {
                normalise_content_type(&h.value)
            } else {
                h.value.to_string()
            };
            (h.name.to_static(), value)
        })
        .collect()
}

fn bad_request(reason: &str, headers: &[RawHeader<'_>]) -> ParseError {
    let mut echo = EchoHeaders::default();
    let raw = Raw::collect(headers);
    for v in &raw.vias {
        let parts = split_quoted(v, ',')
            .map(str::trim)
            .filter(|p| !p.is_empty());
        echo.vias.extend(parts.map(str::to_string));
    }
    echo.from = raw.from.map(str::to_string);
    echo.to = raw.to.map(str::to_string);
    echo.call_id = raw.call_id.map(str::to_string);
    echo.cseq = raw.cseq.map(str::to_string);
    ParseError::BadRequest {
        reason: reason.to_string(),
        echo: Box::new(echo),
    }
}

/// A Request-URI must be `scheme ":" rest` with no characters that cannot appear in a
/// URI (RFC 3261 §25.1). rsip 0.4.0's URI grammar is not used: it rejects legal URIs such as
/// `sips:a@[2001:db8::1]:5061` and `tel:+15551234`.
pub(crate) fn request_uri_ok(uri: &str) -> bool {
    uri.split_once(':').is_some_and(|(s, rest)| {
        !rest.is_empty()
            && s.starts_with(|c: char| c.is_ascii_alphabetic())
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
            && !rest.bytes().any(|b| {
                b.is_ascii_control()
                    || matches!(
                        b,
                        b'<' | b'>' | b'"' | b'{' | b'}' | b'|' | b'^' | b'`' | b' '
                    )
            })
    })
}

fn parse_request(
    method: &str,
    uri: &str,
    version: &str,
    section: &[u8],
    body: &[u8],
) -> Result<Request, ParseError> {
    let Ok(text) = std::str::from_utf8(section) else {
        let lossy = String::from_utf8_lossy(section);
        return Err(bad_request(
            "Malformed header",
            &split_headers(&lossy).headers,
        ));
    };
    let hs = split_headers(text);
    let fail = |reason: &str| bad_request(reason, &hs.headers);
    if !version.eq_ignore_ascii_case("SIP/2.0") {
        return Err(fail(UNSUPPORTED_VERSION));
    }
    if hs.malformed {
        return Err(fail("Malformed header"));
    }
    if !request_uri_ok(uri) {
        return Err(fail("Malformed Request-URI"));
    }
    let raw = Raw::collect(&hs.headers);
    let c = common(&raw).map_err(fail)?;
    let method = Method::from_token(method);
    if c.cseq.method != method {
        return Err(fail("CSeq method mismatch"));
    }
    let max_forwards = match raw.max_forwards {
        Some(v) => Some(
            v.parse::<u32>()
                .map_err(|_| fail("Malformed Max-Forwards"))?,
        ),
        None => None,
    };
    let contact = match raw.contact {
        Some("*") | None => None,
        Some(v) => {
            let list = NameAddr::parse_list(v).ok_or_else(|| fail("Malformed Contact"))?;
            list.into_iter().next()
        }
    };
    let mut record_route = Vec::new();
    for v in &raw.record_route {
        for entry in split_quoted(v, ',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
        {
            NameAddr::parse(entry).ok_or_else(|| fail("Malformed Record-Route"))?;
            record_route.push(entry.to_string());
        }
    }
    let body = cut_body(raw.content_length, body).map_err(fail)?;
    Ok(Request {
        method,
        uri: uri.to_string(),
        vias: c.vias,
        from: c.from,
        to: c.to,
        call_id: c.call_id,
        cseq: c.cseq,
        max_forwards,
        contact,
        record_route,
        headers: owned_headers(&hs.headers),
        body,
    })
}

fn parse_response(
    version: &str,
    status: &str,
    reason: &str,
    section: &[u8],
    body: &[u8],
) -> Result<Response, &'static str> {
    const BAD: &str = "bad response";
    let status: u16 = match status.as_bytes() {
        [a, b, c] if [a, b, c].iter().all(|d| d.is_ascii_digit()) => {
            status.parse().map_err(|_| BAD)?
        }
        _ => return Err(BAD),
    };
    if !version.eq_ignore_ascii_case("SIP/2.0") || !(100..=699).contains(&status) {
        return Err(BAD);
    }
    let text = std::str::from_utf8(section).map_err(|_| BAD)?;
    let hs = split_headers(text);
    if hs.malformed {
        return Err(BAD);
    }
    let raw = Raw::collect(&hs.headers);
    let c = common(&raw)?;
    let body = cut_body(raw.content_length, body)?;
    Ok(Response {
        status,
        reason: reason.trim().to_string(),
        vias: c.vias,
        from: c.from,
        to: c.to,
        call_id: c.call_id,
        cseq: c.cseq,
        headers: owned_headers(&hs.headers),
        body,
    })
}
