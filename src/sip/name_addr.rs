//! A `name-addr` / `addr-spec` header value (From, To, Contact, Route entries; RFC 3261
//! §20.10, §20.20, §20.39, §25.1).
//!
//! Invariant: [`NameAddr::uri`] is the URI text without `<>`; `tag` is pulled out of the
//! header parameters and not repeated in `params`; [`NameAddr::raw`] is the value as received.

use super::headers::{parse_params, split_quoted, trim_lws};

/// `[display-name] <uri> *(;param)` or `uri *(;param)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NameAddr {
    /// The display name: quoted-string contents (escapes kept) or the token words.
    pub display: Option<String>,
    /// The URI without angle brackets (`sip:alice@example.com;transport=tcp`).
    pub uri: String,
    /// The `tag` header parameter (RFC 3261 §19.3), if any.
    pub tag: Option<String>,
    /// Other header parameters (`expires`, `q`, …), names as written.
    pub params: Vec<(String, Option<String>)>,
    /// The header value as received (trimmed).
    pub raw: String,
}

impl NameAddr {
    /// Parses one name-addr or addr-spec (no top-level commas). `None` when there is no URI
    /// with a scheme, a bracket is unbalanced, or a parameter is not `token[=value]`.
    pub fn parse(raw: &str) -> Option<NameAddr> {
        let raw = trim_lws(raw);
        let (display, uri, rest) = if let Some(after) = raw.strip_prefix('"') {
            let end = closing_quote(after)?;
            let display = &after[..end];
            let rest = after[end + 1..].trim_start_matches([' ', '\t']);
            let inner = rest.strip_prefix('<')?;
            let close = inner.find('>')?;
            (Some(display), &inner[..close], &inner[close + 1..])
        } else if let Some(open) = raw.find('<') {
            let display = trim_lws(&raw[..open]);
            let inner = &raw[open + 1..];
            let close = inner.find('>')?;
            let display = (!display.is_empty()).then_some(display);
            (display, &inner[..close], &inner[close + 1..])
        } else {
            // addr-spec: parameters after the URI are header parameters (§20.10).
            match raw.find(';') {
                Some(i) => (None, &raw[..i], &raw[i..]),
                None => (None, raw, ""),
            }
        };
        let uri = trim_lws(uri);
        if !has_scheme(uri) || uri.contains(['<', '>', ' ', '"']) {
            return None;
        }
        let rest = rest.trim_start_matches([' ', '\t']);
        if !rest.is_empty() && !rest.starts_with(';') {
            return None;
        }
        let mut tag = None;
        let mut params = Vec::new();
        for (name, value) in parse_params(rest)? {
            if name.eq_ignore_ascii_case("tag") && tag.is_none() {
                tag = Some(value.filter(|v| !v.is_empty())?);
            } else {
                params.push((name, value));
            }
        }
        Some(NameAddr {
            display: display.map(str::to_string),
            uri: uri.to_string(),
            tag,
            params,
            raw: raw.to_string(),
        })
    }

    /// Parses a comma-separated list of name-addrs (Contact, Route, Record-Route values).
    pub fn parse_list(value: &str) -> Option<Vec<NameAddr>> {
        split_quoted(value, ',')
            .filter(|p| !p.trim().is_empty())
            .map(NameAddr::parse)
            .collect()
    }
}

/// Index of the closing `"` of a quoted string whose opening quote was already consumed.
fn closing_quote(s: &str) -> Option<usize> {
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => return Some(i),
            _ => {}
        }
    }
    None
}

/// True when `uri` starts with `scheme ":"` (RFC 3986 scheme characters) and has more after.
fn has_scheme(uri: &str) -> bool {
    match uri.split_once(':') {
        Some((scheme, rest)) => {
            !rest.is_empty()
                && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
                && scheme
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_quoted_display_and_tag() {
        let n = NameAddr::parse(
            r#" "Alice \"A\" Smith" <sip:alice@example.com;transport=tcp>;tag=88sja8x;x=1"#,
        )
        .unwrap();
        assert_eq!(n.display.as_deref(), Some(r#"Alice \"A\" Smith"#));
        assert_eq!(n.uri, "sip:alice@example.com;transport=tcp");
        assert_eq!(n.tag.as_deref(), Some("88sja8x"));
        assert_eq!(n.params, vec![("x".to_string(), Some("1".to_string()))]);
        assert!(n.raw.starts_with("\"Alice"));
    }

    #[test]
    fn parses_token_display_and_addr_spec() {
        let n = NameAddr::parse("Bob <sips:bob@biloxi.example.com>").unwrap();
        assert_eq!(
            (n.display.as_deref(), n.uri.as_str()),
            (Some("Bob"), "sips:bob@biloxi.example.com")
        );
        assert_eq!(n.tag, None);
        // addr-spec: ;tag belongs to the header, not the URI.
        let a = NameAddr::parse("sip:carol@chicago.com;tag=9").unwrap();
        assert_eq!(
            (a.uri.as_str(), a.tag.as_deref()),
            ("sip:carol@chicago.com", Some("9"))
        );
    }

    #[test]
    fn parses_lists() {
        let l = NameAddr::parse_list("<sip:p1.example.com;lr>, \"x,y\" <sip:p2;lr>").unwrap();
        assert_eq!(l.len(), 2);
        assert_eq!(l[1].uri, "sip:p2;lr");
        assert!(NameAddr::parse_list("<sip:a>, <bad").is_none());
    }

    #[test]
    fn rejects_malformed() {
        for s in [
            "",
            "*",
            "alice",
            "<sip:a@b",
            "\"unterminated <sip:a@b>",
            "<>",
            "<sip:a@b> junk",
            "<sip:a>;tag",
            "<sip:a>;a b=1",
        ] {
            assert!(NameAddr::parse(s).is_none(), "{s:?}");
        }
    }
}
