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

/// RFC 3261 §25.1 `token` character.
pub(crate) fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-.!%*_+`'~".contains(c)
}

/// True when `s` is a non-empty RFC 3261 `token`.
pub(crate) fn is_token(s: &str) -> bool {
    !s.is_empty() && s.chars().all(is_token_char)
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
    !v.is_empty() && v.chars().all(|c| is_token_char(c) || "[]:".contains(c))
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
/// escapes inside quotes. Never panics; an unterminated quote runs to the end.
pub(crate) fn split_quoted(s: &str, sep: char) -> impl Iterator<Item = &str> {
    let mut start = 0;
    let mut in_quotes = false;
    let mut in_angle = false;
    let mut escaped = false;
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
    cuts.into_iter()
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
