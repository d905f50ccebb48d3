//! What the load tool reads from a datagram, and the 200 it answers a request with.
//!
//! A load generator shares the machine with the server it measures (two cores here), so
//! every microsecond it spends per message is taken from the server. Like sipp, the tool
//! therefore does not parse messages fully: it scans the header lines once for the few
//! fields it acts on (status or method, Call-ID, CSeq, SIP-ETag, Subscription-State, the
//! From tag, the body) and answers a request by copying its Via, From, To, Call-ID and CSeq
//! lines. Full names and compact forms are recognised, in any case. A datagram without a
//! start line, Call-ID or CSeq is unparsable (counted, never answered). What the server's
//! messages must contain is checked by presenced's own tests, not by this tool.

/// What the tool needs from one datagram.
pub(crate) struct Scanned<'a> {
    /// The status code of a response; `None` for a request.
    pub(crate) status: Option<u16>,
    /// The method of a request (empty for a response).
    pub(crate) method: &'a str,
    pub(crate) call_id: &'a str,
    pub(crate) cseq: u32,
    pub(crate) etag: Option<&'a str>,
    pub(crate) sub_state: Option<&'a str>,
    pub(crate) from_tag: Option<&'a str>,
    pub(crate) body: &'a [u8],
    /// The lines a response to this request copies (Via, From, To, Call-ID, CSeq).
    copy: Vec<&'a str>,
    /// The index in `copy` of a To line without a tag (the 200 adds one).
    untagged_to: Option<usize>,
}

/// Scans `buf`; `None` when it is not a SIP message the tool can act on.
pub(crate) fn scan(buf: &[u8]) -> Option<Scanned<'_>> {
    let split = memchr::memmem::find(buf, b"\r\n\r\n")?;
    let head = std::str::from_utf8(&buf[..split]).ok()?;
    let body = &buf[split + 4..];
    let mut lines = head.split("\r\n");
    let first = lines.next()?;
    let (status, method) = match first.strip_prefix("SIP/2.0 ") {
        Some(rest) => (Some(rest.get(..3)?.parse().ok()?), ""),
        None => (None, first.split(' ').next().filter(|m| !m.is_empty())?),
    };
    let mut s = Scanned {
        status,
        method,
        call_id: "",
        cseq: 0,
        etag: None,
        sub_state: None,
        from_tag: None,
        body,
        copy: Vec::new(),
        untagged_to: None,
    };
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        let name = name.trim_end();
        let is = |full: &str, compact: &str| {
            name.eq_ignore_ascii_case(full) || name.eq_ignore_ascii_case(compact)
        };
        if is("Via", "v") {
            s.copy.push(line);
        } else if is("From", "f") {
            s.from_tag = tag_of(value);
            s.copy.push(line);
        } else if is("To", "t") {
            if tag_of(value).is_none() {
                s.untagged_to = Some(s.copy.len());
            }
            s.copy.push(line);
        } else if is("Call-ID", "i") {
            s.call_id = value;
            s.copy.push(line);
        } else if name.eq_ignore_ascii_case("CSeq") {
            s.cseq = value.split_ascii_whitespace().next()?.parse().ok()?;
            s.copy.push(line);
        } else if name.eq_ignore_ascii_case("SIP-ETag") {
            s.etag = Some(value);
        } else if name.eq_ignore_ascii_case("Subscription-State") {
            s.sub_state = Some(value);
        }
    }
    if s.call_id.is_empty() || s.cseq == 0 {
        return None;
    }
    Some(s)
}

/// The `tag` parameter of a From/To value (after the closing `>` of a name-addr).
fn tag_of(value: &str) -> Option<&str> {
    let params = value.rsplit_once('>').map_or(value, |(_, p)| p);
    params
        .split(';')
        .skip(1)
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("tag"))
        .map(|(_, v)| v.trim())
}

impl Scanned<'_> {
    /// The 200 OK answering this request: its Via, From, To (tagged if it was not),
    /// Call-ID and CSeq lines, no body.
    pub(crate) fn ok(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(512);
        out.extend_from_slice(b"SIP/2.0 200 OK\r\n");
        for (i, line) in self.copy.iter().enumerate() {
            out.extend_from_slice(line.as_bytes());
            if self.untagged_to == Some(i) {
                out.extend_from_slice(b";tag=load");
            }
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"Content-Length: 0\r\n\r\n");
        out
    }
}
