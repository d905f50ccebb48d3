//! The header-section normaliser: turns the lines after the start line into
//! `(canonical name, value)` pairs, whatever spelling the sender used.
//!
//! It accepts what RFC 3261 §7.3 allows and rsip 0.4.0 does not: compact names (§7.3.3:
//! `i m e l c f s k t v`, RFC 6665 `o` = Event and `u` = Allow-Events, plus `r b x j a d y`),
//! folded continuation lines (leading SP/HTAB, §7.3.1), whitespace before the colon
//! (`Name : value`), bare-LF line ends, and names in any letter case.
//!
//! Invariants: names of known headers come out in one canonical spelling (a `&'static str`);
//! unknown names are kept as received. Nothing is copied unless a line was folded: names
//! and values borrow the input. A line that is not `token ":" value` is skipped and flagged
//! in [`HeaderSection::malformed`], so the caller can still salvage the good lines.

use std::borrow::Cow;

use super::headers::{is_token, trim_lws};

/// Canonical spelling of every header this crate knows by name.
const KNOWN: &[&str] = &[
    "Accept",
    "Accept-Contact",
    "Accept-Encoding",
    "Accept-Language",
    "Alert-Info",
    "Allow",
    "Allow-Events",
    "Authentication-Info",
    "Authorization",
    "CSeq",
    "Call-ID",
    "Call-Info",
    "Contact",
    "Content-Disposition",
    "Content-Encoding",
    "Content-Language",
    "Content-Length",
    "Content-Type",
    "Date",
    "Error-Info",
    "Event",
    "Expires",
    "From",
    "Identity",
    "In-Reply-To",
    "MIME-Version",
    "Max-Forwards",
    "Min-Expires",
    "Organization",
    "Priority",
    "Proxy-Authenticate",
    "Proxy-Authorization",
    "Proxy-Require",
    "Reason",
    "Record-Route",
    "Refer-To",
    "Referred-By",
    "Reject-Contact",
    "Reply-To",
    "Request-Disposition",
    "Require",
    "Retry-After",
    "Route",
    "SIP-ETag",
    "SIP-If-Match",
    "Server",
    "Session-Expires",
    "Subject",
    "Subscription-State",
    "Supported",
    "Timestamp",
    "To",
    "Unsupported",
    "User-Agent",
    "Via",
    "WWW-Authenticate",
    "Warning",
];

/// [`KNOWN`] by name length: `BY_LENGTH[n]` holds the names of `n` bytes.
static BY_LENGTH: std::sync::LazyLock<Vec<Vec<&'static str>>> = std::sync::LazyLock::new(|| {
    let longest = KNOWN.iter().map(|k| k.len()).max().unwrap_or(0);
    let mut by = vec![Vec::new(); longest + 1];
    for k in KNOWN {
        by[k.len()].push(*k);
    }
    by
});

/// One header line after normalisation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RawHeader<'a> {
    /// Canonical name (see [`canonical_name`]).
    pub(crate) name: Name<'a>,
    /// Value with surrounding whitespace trimmed; folded lines joined by one space.
    pub(crate) value: Cow<'a, str>,
}

/// A header name after normalisation: a known name in its canonical spelling, or an unknown
/// one as received.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Name<'a> {
    /// One of [`KNOWN`] (compact forms expanded).
    Known(&'static str),
    /// Not a name this crate knows: kept as received.
    Other(&'a str),
}

impl<'a> Name<'a> {
    /// The name's text.
    pub(crate) fn as_str(self) -> &'a str {
        match self {
            Name::Known(k) => k,
            Name::Other(o) => o,
        }
    }

    /// An owned name: a known one without copying.
    pub(crate) fn to_static(self) -> Cow<'static, str> {
        match self {
            Name::Known(k) => Cow::Borrowed(k),
            Name::Other(o) => Cow::Owned(o.to_string()),
        }
    }
}

/// The header section split into headers, in received order.
#[derive(Clone, Debug, Default)]
pub(crate) struct HeaderSection<'a> {
    /// Every well-formed header line.
    pub(crate) headers: Vec<RawHeader<'a>>,
    /// True when at least one line was not `token ":" value`.
    pub(crate) malformed: bool,
}

/// The long form of a compact header name (RFC 3261 §7.3.3, RFC 6665 §8.2).
fn expand_compact(c: u8) -> Option<&'static str> {
    Some(match c.to_ascii_lowercase() {
        b'i' => "Call-ID",
        b'm' => "Contact",
        b'e' => "Content-Encoding",
        b'l' => "Content-Length",
        b'c' => "Content-Type",
        b'f' => "From",
        b's' => "Subject",
        b'k' => "Supported",
        b't' => "To",
        b'v' => "Via",
        b'o' => "Event",
        b'u' => "Allow-Events",
        b'r' => "Refer-To",
        b'b' => "Referred-By",
        b'x' => "Session-Expires",
        b'j' => "Reject-Contact",
        b'a' => "Accept-Contact",
        b'd' => "Request-Disposition",
        b'y' => "Identity",
        _ => return None,
    })
}

/// The canonical name of a header: compact forms expanded, known names in their standard
/// spelling (`call-id` → `Call-ID`), unknown names unchanged.
pub(crate) fn canonical_name(name: &str) -> &str {
    name_of(name).as_str()
}

/// [`canonical_name`], telling a known name from an unknown one.
pub(crate) fn name_of(name: &str) -> Name<'_> {
    if let [c] = name.as_bytes() {
        if let Some(long) = expand_compact(*c) {
            return Name::Known(long);
        }
    }
    // Only the few known names of the same length are compared.
    let candidates = BY_LENGTH.get(name.len()).map_or(&[][..], Vec::as_slice);
    match candidates.iter().find(|k| k.eq_ignore_ascii_case(name)) {
        Some(k) => Name::Known(k),
        None => Name::Other(name),
    }
}

/// Splits a header section (the text between the start line and the blank line).
pub(crate) fn split_headers(section: &str) -> HeaderSection<'_> {
    let mut out = HeaderSection {
        headers: Vec::with_capacity(16),
        malformed: false,
    };
    // Whether the last line pushed a header that a continuation line may extend.
    let mut last_ok = false;
    for line in section.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        if line.starts_with([' ', '\t']) {
            if has_control(line) {
                // The same rule as for a header's first line (fuzzing found the gap).
                out.malformed = true;
                last_ok = false;
                continue;
            }
            match out.headers.last_mut() {
                Some(h) if last_ok => {
                    let more = trim_lws(line);
                    if !more.is_empty() {
                        let v = h.value.to_mut();
                        if !v.is_empty() {
                            v.push(' ');
                        }
                        v.push_str(more);
                    }
                }
                _ => out.malformed = true,
            }
            continue;
        }
        let Some((name, value)) = line.split_once(':') else {
            out.malformed = true;
            last_ok = false;
            continue;
        };
        let name = name.trim_end_matches([' ', '\t']);
        // A bare CR or another control character inside a value (RFC 3261 §25.1 allows none
        // but HTAB) would be echoed into our responses, where no client could match it.
        if !is_token(name) || has_control(value) {
            out.malformed = true;
            last_ok = false;
            continue;
        }
        out.headers.push(RawHeader {
            name: name_of(name),
            value: Cow::Borrowed(trim_lws(value)),
        });
        last_ok = true;
    }
    out
}

/// A control character other than HTAB (a bare CR, NUL, DEL…): RFC 3261 §25.1 allows none in
/// a header value, and echoing one into a response would make it unparsable.
fn has_control(s: &str) -> bool {
    for &b in s.as_bytes() {
        if (b < 0x20 && b != b'\t') || b == 0x7f {
            return true;
        }
        if b >= 0x80 {
            // C1 controls (U+0080..U+009F) are two-byte sequences: decode to find them.
            return s.chars().any(|c| c.is_control() && c != '\t');
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(section: &str) -> Vec<(String, String)> {
        split_headers(section)
            .headers
            .into_iter()
            .map(|h| (h.name.as_str().to_string(), h.value.into_owned()))
            .collect()
    }

    #[test]
    fn known_names_are_found_in_any_case() {
        assert!(
            KNOWN.windows(2).all(|w| w[0] < w[1]),
            "KNOWN is sorted, without repeats"
        );
        for k in KNOWN {
            assert_eq!(canonical_name(k), *k);
            assert_eq!(canonical_name(&k.to_ascii_lowercase()), *k);
            assert_eq!(canonical_name(&k.to_ascii_uppercase()), *k);
        }
    }

    #[test]
    fn control_characters_are_found_in_ascii_and_in_utf8() {
        assert!(!has_control("a\tb ü €"));
        assert!(has_control("a\rb"));
        assert!(has_control("a\u{7f}"));
        assert!(
            has_control("ü\u{85}"),
            "C1 control after a non-ASCII character"
        );
        assert!(has_control("\u{9f}"));
    }

    #[test]
    fn expands_compact_and_canonicalises_names() {
        let p =
            pairs("i: abc\r\nV: SIP/2.0/UDP h\r\ncall-id: x\r\no: presence\r\nu: a\r\nX-Foo: 1");
        let names: Vec<_> = p.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "Call-ID",
                "Via",
                "Call-ID",
                "Event",
                "Allow-Events",
                "X-Foo"
            ]
        );
        assert_eq!(canonical_name("sip-etag"), "SIP-ETag");
        assert_eq!(canonical_name("l"), "Content-Length");
        assert_eq!(canonical_name("q"), "q");
    }

    #[test]
    fn unfolds_continuations_and_accepts_space_before_colon_and_lf() {
        let p = pairs("Subject : hello\n  world\n\tagain\nTo:<sip:a@b>");
        assert_eq!(p[0], ("Subject".into(), "hello world again".into()));
        assert_eq!(p[1], ("To".into(), "<sip:a@b>".into()));
    }

    #[test]
    fn borrows_when_nothing_is_folded() {
        let s = split_headers("Via: SIP/2.0/UDP h\r\nTo: <sip:a@b>\r\n");
        assert!(!s.malformed);
        assert!(s
            .headers
            .iter()
            .all(|h| matches!(h.value, Cow::Borrowed(_))));
    }

    #[test]
    fn a_bare_cr_or_control_character_in_a_value_is_malformed() {
        let s =
            split_headers("Call-ID: rb\r-s\r\nTo: <sip:a@b>\r\nX: a\u{1}b\r\nZ-Tab: tab\tok\r\n");
        assert!(s.malformed);
        let names: Vec<&str> = s.headers.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names, ["To", "Z-Tab"]);
    }

    /// Fuzzing (F5): a folded continuation line carried a NUL into a Via, which our 200
    /// echoed unparsably. Continuation lines follow the same rule as first lines.
    #[test]
    fn a_control_character_in_a_folded_line_is_malformed() {
        let s = split_headers("Via: SIP/2.0/UDP h;branch=z9hG4bKx\n \0\nTo: <sip:a@b>\n");
        assert!(s.malformed);
        let via = s
            .headers
            .iter()
            .find(|h| h.name.as_str() == "Via")
            .map(|h| h.value.as_ref());
        assert_eq!(
            via,
            Some("SIP/2.0/UDP h;branch=z9hG4bKx"),
            "nothing appended"
        );
        let ok = split_headers("Subject: a\n\tb\n");
        assert!(!ok.malformed);
    }

    #[test]
    fn flags_malformed_lines_but_keeps_good_ones() {
        let s = split_headers("no colon here\r\nTo: x\r\nBad Name: y\r\n folded-after-bad");
        assert!(s.malformed);
        assert_eq!(s.headers.len(), 1);
        assert_eq!(s.headers[0].value, "x");
        assert!(split_headers(" leading continuation").malformed);
    }
}
