//! Typed → bytes: responses to received requests (RFC 3261 §8.2.6) and the NOTIFY requests
//! the server originates (RFC 6665 §4.2.1, RFC 3261 §12.2.1.1).
//!
//! Invariants: every encoded message ends its header section with `Content-Length` (always
//! present, also on UDP, so TCP framing works) and carries the Server/User-Agent value given;
//! header values and reason phrases are stripped of CR/LF so nothing we copy can inject a
//! header line. Via values are echoed exactly as received except the top one, which gets
//! `received`/`rport` per RFC 3261 §18.2.1 and RFC 3581 §4.

use std::fmt::{self, Write as _};
use std::net::{IpAddr, SocketAddr};

use bytes::Bytes;

use super::headers::{split_quoted, Event, SubscriptionState};
use super::{EchoHeaders, NameAddr, Request, Via};

/// A response under construction; [`OutResponse::encode`] writes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutResponse {
    status: u16,
    reason: String,
    vias: Vec<String>,
    from: String,
    to: String,
    to_has_tag: bool,
    call_id: String,
    cseq: String,
    headers: Vec<(&'static str, String)>,
    body: Option<(String, Bytes)>,
}

impl OutResponse {
    /// A response to `req` received from `source`: copies every Via in order (top Via with
    /// `received`/`rport` filled in), From, To, Call-ID and CSeq.
    pub fn to(req: &Request, status: u16, reason: &str, source: SocketAddr) -> Self {
        let mut vias: Vec<String> = req.vias.iter().map(|v| v.raw.clone()).collect();
        if let (Some(top), Some(first)) = (req.vias.first(), vias.first_mut()) {
            *first = stamp_top_via(top, source);
        }
        OutResponse {
            status,
            reason: clean(reason),
            vias,
            from: req.from.raw.clone(),
            to: req.to.raw.clone(),
            to_has_tag: req.to.tag.is_some(),
            call_id: req.call_id.clone(),
            cseq: req.cseq.to_string(),
            // RFC 3261 §12.1.1: a response that creates a dialog carries the request's
            // Record-Route, so that the watcher's route set includes the proxies. Copied into
            // every response, as Kamailio's core does.
            headers: req
                .record_route
                .iter()
                .map(|r| ("Record-Route", clean(r)))
                .collect(),
            body: None,
        }
    }

    /// A response (normally 400) built from the headers salvaged from a malformed request.
    /// A To that does not parse is treated as tagged, so no tag is appended to garbage.
    pub fn from_echo(echo: &EchoHeaders, status: u16, reason: &str, source: SocketAddr) -> Self {
        let mut vias = echo.vias.clone();
        if let Some(first) = vias.first_mut() {
            if let Some(top) = Via::parse(first) {
                *first = stamp_top_via(&top, source);
            }
        }
        let to = echo.to.clone().unwrap_or_default();
        OutResponse {
            status,
            reason: clean(reason),
            vias,
            to_has_tag: NameAddr::parse(&to).is_none_or(|n| n.tag.is_some()),
            from: echo.from.clone().unwrap_or_default(),
            to,
            call_id: echo.call_id.clone().unwrap_or_default(),
            cseq: echo.cseq.clone().unwrap_or_default(),
            headers: Vec::new(),
            body: None,
        }
    }

    /// Adds `;tag=tag` to To, only if To has no tag yet (RFC 3261 §8.2.6.2).
    pub fn to_tag(mut self, tag: &str) -> Self {
        if !self.to_has_tag && !self.to.is_empty() {
            self.to.push_str(";tag=");
            self.to.push_str(&clean(tag));
            self.to_has_tag = true;
        }
        self
    }

    /// Appends an extra header (`Allow`, `Min-Expires`, `SIP-ETag`, `Expires`, …).
    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        let mut value = value.into();
        if has_line_break(&value) {
            value = clean(&value);
        }
        self.headers.push((name, value));
        self
    }

    /// Sets the body and its Content-Type.
    pub fn body(mut self, content_type: &str, body: Bytes) -> Self {
        self.body = Some((clean(content_type), body));
        self
    }

    /// The status code.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// Encodes the response; `server` is the Server header value (omitted when empty).
    pub fn encode(&self, server: &str) -> Bytes {
        let body_len = self.body.as_ref().map_or(0, |(_, b)| b.len());
        let mut out = String::with_capacity(512 + body_len);
        // Writing into a String cannot fail.
        let _ = write!(out, "SIP/2.0 {} {}\r\n", self.status, self.reason);
        for v in &self.vias {
            push_header(&mut out, "Via", v);
        }
        // A response to a request that lacked one of these omits it rather than sending an
        // empty header (only 400s built from an echo can lack them).
        for (name, value) in [
            ("From", &self.from),
            ("To", &self.to),
            ("Call-ID", &self.call_id),
            ("CSeq", &self.cseq),
        ] {
            if !value.is_empty() {
                push_header(&mut out, name, value);
            }
        }
        for (n, v) in &self.headers {
            push_header(&mut out, n, v);
        }
        if !server.is_empty() {
            push_header(&mut out, "Server", server);
        }
        finish(out, self.body.as_ref().map(|(t, b)| (t.as_str(), &b[..])))
    }
}

/// Everything a NOTIFY needs (RFC 6665 §4.2.1, RFC 3261 §12.2.1.1).
#[derive(Clone, Copy, Debug)]
pub struct NotifyParams<'a> {
    /// Remote target: the Contact URI of the SUBSCRIBE (without `<>`).
    pub request_uri: &'a str,
    /// Route set, each a `<uri>` entry, in the order the Route headers are to be sent.
    pub route: &'a [String],
    /// Via transport (`UDP`, `TCP`).
    pub via_transport: &'a str,
    /// Via sent-by host (an IPv6 address is bracketed automatically).
    pub via_host: &'a str,
    /// Via sent-by port.
    pub via_port: u16,
    /// Via branch (`z9hG4bK…`), the client-transaction key.
    pub branch: &'a str,
    /// Our URI (the presentity), From.
    pub from_uri: &'a str,
    /// Our dialog tag.
    pub from_tag: &'a str,
    /// The watcher's URI, To.
    pub to_uri: &'a str,
    /// The watcher's dialog tag.
    pub to_tag: &'a str,
    /// The dialog's Call-ID.
    pub call_id: &'a str,
    /// Our CSeq for this NOTIFY.
    pub cseq: u32,
    /// Our Contact URI (server address).
    pub contact: &'a str,
    /// The Event header (package and `id` of the subscription).
    pub event: &'a Event,
    /// The Subscription-State header.
    pub subscription_state: &'a SubscriptionState,
    /// Body with its content type.
    pub body: Option<(&'a str, &'a [u8])>,
    /// Extra headers appended after the standard ones.
    pub extra_headers: &'a [(String, String)],
}

/// An encoded request the server originates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutRequest {
    /// The Request-URI actually used (differs from the remote target under strict routing).
    pub request_uri: String,
    /// The full message bytes.
    pub bytes: Bytes,
}

impl OutRequest {
    /// Builds a NOTIFY. Loose routing (RFC 3261 §12.2.1.1): when the first route entry has
    /// `lr`, the Request-URI is the remote target and Route copies the route set; otherwise
    /// (strict router) the first entry becomes the Request-URI and the remote target is
    /// appended as the last Route. `user_agent` becomes the User-Agent header (omitted when
    /// empty). Max-Forwards is 70.
    pub fn notify(p: &NotifyParams<'_>, user_agent: &str) -> OutRequest {
        let strict = p
            .route
            .first()
            .and_then(|r| NameAddr::parse(r))
            .filter(|r| !has_lr(&r.uri));
        let (request_uri, routes): (String, Vec<String>) = match strict {
            Some(first) => {
                // `strict` came from `p.route.first()`, so the slice is in bounds.
                let mut rest: Vec<String> = p.route[1..].to_vec();
                rest.push(format!("<{}>", p.request_uri));
                (first.uri, rest)
            }
            None => (p.request_uri.to_string(), p.route.to_vec()),
        };
        let request_uri = clean(&request_uri);
        let body_len = p.body.map_or(0, |(_, b)| b.len());
        let mut out = String::with_capacity(768 + body_len);
        out.push_str("NOTIFY ");
        out.push_str(&request_uri);
        out.push_str(" SIP/2.0\r\n");
        let (open, close) = if p.via_host.contains(':') && !p.via_host.starts_with('[') {
            ("[", "]")
        } else {
            ("", "")
        };
        let transport = Upper(p.via_transport);
        let (host, port, branch) = (p.via_host, p.via_port, p.branch);
        let via = format_args!("SIP/2.0/{transport} {open}{host}{close}:{port};branch={branch}");
        header_fmt(&mut out, "Via", via);
        for r in &routes {
            push_header(&mut out, "Route", r);
        }
        push_header(&mut out, "Max-Forwards", "70");
        let (uri, tag) = (p.from_uri, p.from_tag);
        header_fmt(&mut out, "From", format_args!("<{uri}>;tag={tag}"));
        let (uri, tag) = (p.to_uri, p.to_tag);
        header_fmt(&mut out, "To", format_args!("<{uri}>;tag={tag}"));
        push_header(&mut out, "Call-ID", p.call_id);
        header_fmt(&mut out, "CSeq", format_args!("{} NOTIFY", p.cseq));
        match p.contact.starts_with('<') {
            true => push_header(&mut out, "Contact", p.contact),
            false => header_fmt(&mut out, "Contact", format_args!("<{}>", p.contact)),
        }
        header_fmt(&mut out, "Event", format_args!("{}", p.event));
        header_fmt(
            &mut out,
            "Subscription-State",
            format_args!("{}", p.subscription_state),
        );
        for (n, v) in p.extra_headers {
            push_header(&mut out, n, v);
        }
        if !user_agent.is_empty() {
            push_header(&mut out, "User-Agent", user_agent);
        }
        OutRequest {
            request_uri,
            bytes: finish(out, p.body),
        }
    }
}

/// Encodes a NOTIFY (shorthand for `OutRequest::notify(p, user_agent).bytes`).
pub fn encode_notify(p: &NotifyParams<'_>, user_agent: &str) -> Bytes {
    OutRequest::notify(p, user_agent).bytes
}

/// The top via-parm with `received` (always when rport was requested, else when the
/// source IP differs from sent-by) and a filled-in empty `rport` (RFC 3581 §4).
fn stamp_top_via(top: &Via, source: SocketAddr) -> String {
    let want_rport = top.rport == Some(None);
    let same_host = top
        .host_unbracketed()
        .parse::<IpAddr>()
        .is_ok_and(|ip| ip == source.ip());
    if same_host && !want_rport {
        return top.raw.clone();
    }
    let mut out = String::with_capacity(top.raw.len() + 32);
    for (i, part) in split_quoted(&top.raw, ';').enumerate() {
        let name = part.split('=').next().unwrap_or("").trim();
        if i > 0 && name.eq_ignore_ascii_case("received") {
            continue;
        }
        if i > 0 {
            out.push(';');
        }
        if i > 0 && want_rport && name.eq_ignore_ascii_case("rport") {
            let _ = write!(out, "rport={}", source.port());
        } else {
            out.push_str(part);
        }
    }
    let _ = write!(out, ";received={}", source.ip());
    out
}

/// True when a URI carries the `lr` parameter.
fn has_lr(uri: &str) -> bool {
    uri.split(';').skip(1).any(|p| {
        p.split('=')
            .next()
            .unwrap_or("")
            .trim()
            .eq_ignore_ascii_case("lr")
    })
}

/// Removes CR and LF so a value can never end a header line early.
fn clean(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    Clean(&mut out).push(s);
    out
}

fn push_header(out: &mut String, name: &str, value: &str) {
    out.push_str(name);
    out.push_str(": ");
    Clean(out).push(value);
    out.push_str("\r\n");
}

/// [`push_header`] with a formatted value, written in place (no temporary String).
fn header_fmt(out: &mut String, name: &str, value: fmt::Arguments<'_>) {
    out.push_str(name);
    out.push_str(": ");
    // Writing into a String cannot fail.
    let _ = Clean(out).write_fmt(value);
    out.push_str("\r\n");
}

/// Writes into a String with CR and LF replaced by spaces (the one place that does).
struct Clean<'a>(&'a mut String);

/// Whether `s` holds a CR or an LF (one vectorised scan; header values rarely do).
fn has_line_break(s: &str) -> bool {
    memchr::memchr2(b'\r', b'\n', s.as_bytes()).is_some()
}

impl Clean<'_> {
    fn push(&mut self, s: &str) {
        if has_line_break(s) {
            self.0.extend(
                s.chars()
                    .map(|c| if c == '\r' || c == '\n' { ' ' } else { c }),
            );
        } else {
            self.0.push_str(s);
        }
    }
}

impl fmt::Write for Clean<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.push(s);
        Ok(())
    }
}

/// Displays a str in ASCII upper case.
struct Upper<'a>(&'a str);

impl fmt::Display for Upper<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0
            .chars()
            .try_for_each(|c| f.write_char(c.to_ascii_uppercase()))
    }
}

/// Adds Content-Type (with a body), Content-Length, the blank line and the body. The body
/// is appended to the header text's own buffer (the callers size it for the body).
fn finish(mut out: String, body: Option<(&str, &[u8])>) -> Bytes {
    if let Some((ct, _)) = body {
        push_header(&mut out, "Content-Type", ct);
    }
    let bytes = body.map(|(_, b)| b).unwrap_or(&[]);
    header_fmt(&mut out, "Content-Length", format_args!("{}", bytes.len()));
    out.push_str("\r\n");
    let mut buf = out.into_bytes();
    buf.extend_from_slice(bytes);
    Bytes::from(buf)
}
