//! Typed SIP headers that rsip leaves untyped (or that presenced needs stricter), one per file.
//!
//! Each file owns one header: the type, the RFC section it follows, `FromStr` (parse the value
//! part, without the `Name:`), `Display` (print the value part) and its own tests. Parsers
//! never panic on any input and trim surrounding whitespace; printers emit the canonical form.

mod allow_events;
mod event;
mod expires;
mod min_expires;
mod sip_etag;
mod sip_if_match;
mod subscription_state;

pub use allow_events::AllowEvents;
pub use event::Event;
pub use expires::Expires;
pub use min_expires::MinExpires;
pub use sip_etag::SipETag;
pub use sip_if_match::SipIfMatch;
pub use subscription_state::{SubState, SubscriptionState};

/// A header value that does not match its grammar.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// The value is empty or violates the grammar of the named header.
    #[error("malformed {0} header")]
    Malformed(&'static str),
}

/// RFC 3261 §25.1 `token` characters, by byte (every token character is ASCII, so a byte of
/// a multi-byte UTF-8 sequence is never one).
static TOKEN: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
            );
        b += 1;
    }
    t
};

/// True when `s` is a non-empty RFC 3261 `token`.
pub(crate) fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| TOKEN[usize::from(b)])
}

/// `s` without leading and trailing spaces and tabs (linear whitespace on one line).
pub(crate) fn trim_lws(s: &str) -> &str {
    s.trim_matches(|c| c == ' ' || c == '\t')
}

/// Parses a delta-seconds value (RFC 3261 §25.1: `1*DIGIT`); values above `u32::MAX` clamp to
/// `u32::MAX` (RFC 3261 §20.19 treats huge values as "very long", not as errors).
pub(crate) fn parse_delta_seconds(s: &str) -> Option<u32> {
    let s = s.trim();
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(s.parse::<u32>().unwrap_or(u32::MAX))
}

/// Splits `;`-separated generic parameters (`name[=value]`), quote-aware. Names are kept as
/// written; values keep their quotes. `None` when a name is not a token.
pub(crate) fn parse_params(s: &str) -> Option<Vec<(String, Option<String>)>> {
    let mut out = Vec::new();
    for part in split_quoted(s, ';') {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        let (name, value) = match part.split_once('=') {
            Some((n, v)) => (n.trim(), Some(v.trim().to_string())),
            None => (part, None),
        };
        if !is_token(name) || value.as_deref().is_some_and(|v| !is_gen_value(v)) {
            return None;
        }
        out.push((name.to_string(), value));
    }
    Some(out)
}

/// RFC 3261 §25.1 `gen-value = token / host / quoted-string`: anything else (a stray `<`,
/// `>` or `"`) would not survive being printed and parsed again.
fn is_gen_value(v: &str) -> bool {
    if let Some(inner) = v.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
        let mut escaped = false;
        for c in inner.chars() {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => return false,
                _ => {}
            }
        }
        return !escaped;
    }
    !v.is_empty()
        && v.bytes()
            .all(|b| TOKEN[usize::from(b)] || matches!(b, b'[' | b']' | b':'))
}

/// Writes `;name[=value]` for each parameter.
pub(crate) fn write_params(
    f: &mut std::fmt::Formatter<'_>,
    params: &[(String, Option<String>)],
) -> std::fmt::Result {
    for (name, value) in params {
        match value {
            Some(v) => write!(f, ";{name}={v}")?,
            None => write!(f, ";{name}")?,
        }
    }
    Ok(())
}

/// Splits `s` at every `sep` outside double quotes (and outside `<...>`), honouring `\`
/// escapes inside quotes. Never panics; an unterminated quote runs to the end. `sep` must be
/// ASCII (it is compared byte by byte, which is exact for UTF-8: no byte of a multi-byte
/// character is ASCII). Lazy and allocation-free: it runs for every Via, From, To and
/// parameter list of every message.
pub(crate) fn split_quoted(s: &str, sep: char) -> SplitQuoted<'_> {
    debug_assert!(sep.is_ascii(), "split_quoted separator must be ASCII");
    SplitQuoted {
        s,
        pos: 0,
        sep: sep as u8,
        done: false,
    }
}

/// The iterator of [`split_quoted`].
pub(crate) struct SplitQuoted<'a> {
    s: &'a str,
    pos: usize,
    sep: u8,
    done: bool,
}

impl<'a> Iterator for SplitQuoted<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        if self.done {
            return None;
        }
        let bytes = self.s.as_bytes();
        let start = self.pos;
        // A cut happens only outside quotes and angles, so each part starts in that state.
        // Each state jumps (memchr) to the next byte that can change it.
        let (mut in_quotes, mut in_angle) = (false, false);
        let mut i = start;
        while let Some(rest) = bytes.get(i..) {
            let found = if in_quotes {
                memchr::memchr2(b'"', b'\\', rest)
            } else if in_angle {
                memchr::memchr2(b'>', b'"', rest)
            } else {
                memchr::memchr3(self.sep, b'"', b'<', rest)
            };
            let Some(off) = found else { break };
            i += off;
            match bytes[i] {
                b'\\' if in_quotes => i += 1, // skips the escaped byte
                b'"' => in_quotes = !in_quotes,
                b'>' => in_angle = false,
                b'<' => in_angle = true,
                _ => {
                    self.pos = i + 1;
                    return Some(&self.s[start..i]);
                }
            }
            i += 1;
        }
        self.done = true;
        Some(&self.s[start..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_quoted_respects_quotes_and_angles() {
        let parts: Vec<_> = split_quoted(r#""a,\"b" <sip:x;p=1,2>, c"#, ',').collect();
        assert_eq!(parts, vec![r#""a,\"b" <sip:x;p=1,2>"#, " c"]);
        let parts: Vec<_> = split_quoted("x;y=\"1;2\";z", ';').collect();
        assert_eq!(parts, vec!["x", "y=\"1;2\"", "z"]);
    }

    /// The char-by-char splitter split_quoted replaced: the reference it must agree with.
    fn split_reference(s: &str, sep: char) -> Vec<&str> {
        let (mut start, mut in_quotes, mut in_angle, mut escaped) = (0, false, false, false);
        let mut cuts = Vec::new();
        for (i, c) in s.char_indices() {
            if escaped {
                escaped = false;
                continue;
            }
            match c {
                '\\' if in_quotes => escaped = true,
                '"' => in_quotes = !in_quotes,
                '<' if !in_quotes => in_angle = true,
                '>' if !in_quotes => in_angle = false,
                c if c == sep && !in_quotes && !in_angle => {
                    cuts.push(&s[start..i]);
                    start = i + c.len_utf8();
                }
                _ => {}
            }
        }
        cuts.push(&s[start..]);
        cuts
    }

    proptest::proptest! {
        #[test]
        fn split_quoted_agrees_with_the_reference(s in "[a-z\"<>,;\\\\ é]{0,40}") {
            for sep in [',', ';'] {
                let parts: Vec<&str> = split_quoted(&s, sep).collect();
                proptest::prop_assert_eq!(&parts, &split_reference(&s, sep));
                proptest::prop_assert_eq!(parts.join(&sep.to_string()), s.clone());
            }
        }
    }

    #[test]
    fn delta_seconds_clamps_and_rejects() {
        assert_eq!(parse_delta_seconds(" 3600 "), Some(3600));
        assert_eq!(parse_delta_seconds("99999999999999999999"), Some(u32::MAX));
        assert_eq!(parse_delta_seconds("-1"), None);
        assert_eq!(parse_delta_seconds("12a"), None);
        assert_eq!(parse_delta_seconds(""), None);
    }

    #[test]
    fn params_parse_and_reject_bad_names() {
        let p = parse_params("id=1;sla; X = \"a;b\"").unwrap();
        assert_eq!(p[0], ("id".into(), Some("1".into())));
        assert_eq!(p[1], ("sla".into(), None));
        assert_eq!(p[2], ("X".into(), Some("\"a;b\"".into())));
        assert!(parse_params("a b=1").is_none());
        // Found by fuzzing: values that would not print back (F2).
        assert!(parse_params("id=r>, \"x").is_none());
        assert!(parse_params("x=<a").is_none());
        assert!(
            parse_params("x=\"a\\\"b\"").is_some(),
            "escaped quote inside a quoted string"
        );
        assert!(parse_params("maddr=[::1]").is_some());
    }
}
