//! One Via value (`via-parm`, RFC 3261 §20.42 / §25.1) parsed from the raw text.
//!
//! Invariant: [`Via::raw`] is the via-parm exactly as received (trimmed), so responses echo
//! it byte for byte; the typed fields are read-only views used for matching and for
//! `received`/`rport` (RFC 3581).

use super::headers::{is_token, split_quoted, trim_lws};

/// One via-parm: `SIP/2.0/UDP host:port;branch=z9hG4bK…;rport;received=…`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Via {
    /// Transport, upper-cased (`UDP`, `TCP`, `TLS`, `WS`, …).
    pub transport: String,
    /// sent-by host as written (IPv6 references keep their brackets).
    pub host: String,
    /// sent-by port, if written.
    pub port: Option<u16>,
    /// The `branch` parameter (RFC 3261 §8.1.1.7), the transaction key.
    pub branch: Option<String>,
    /// `rport` (RFC 3581): `None` absent, `Some(None)` present without value.
    pub rport: Option<Option<u16>>,
    /// The `received` parameter, if any.
    pub received: Option<String>,
    /// The via-parm as received, for echoing in responses.
    pub raw: String,
}

impl Via {
    /// Parses one via-parm (no commas). `None` when it is not `SIP/2.0/transport sent-by`.
    pub fn parse(raw: &str) -> Option<Via> {
        let raw = trim_lws(raw);
        let (proto, rest) = raw.split_once('/')?;
        let (version, rest) = rest.split_once('/')?;
        if !proto.trim().eq_ignore_ascii_case("SIP") || version.trim() != "2.0" {
            return None;
        }
        let rest = rest.trim_start_matches([' ', '\t']);
        let t_end = rest.find([' ', '\t']).unwrap_or(rest.len());
        let transport = &rest[..t_end];
        if !is_token(transport) {
            return None;
        }
        let rest = &rest[t_end..];
        let (sent_by, params) = match rest.find(';') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, ""),
        };
        let (host, port) = split_host_port(trim_lws(sent_by))?;
        let mut via = Via {
            transport: transport.to_ascii_uppercase(),
            host: host.to_string(),
            port,
            branch: None,
            rport: None,
            received: None,
            raw: raw.to_string(),
        };
        for p in split_quoted(params, ';') {
            let p = trim_lws(p);
            let (name, value) = match p.split_once('=') {
                Some((n, v)) => (n.trim(), Some(v.trim())),
                None => (p, None),
            };
            if name.eq_ignore_ascii_case("branch") {
                via.branch = Some(value.filter(|v| !v.is_empty())?.to_string());
            } else if name.eq_ignore_ascii_case("rport") {
                via.rport = Some(match value {
                    Some(v) => Some(v.parse().ok()?),
                    None => None,
                });
            } else if name.eq_ignore_ascii_case("received") {
                via.received = Some(value?.to_string());
            } else if !name.is_empty() && !is_token(name) {
                return None;
            }
        }
        Some(via)
    }

    /// The host without IPv6 brackets, for comparison with a socket address.
    pub fn host_unbracketed(&self) -> &str {
        self.host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(&self.host)
    }
}

/// Splits `host[:port]`, where host may be a bracketed IPv6 reference.
fn split_host_port(s: &str) -> Option<(&str, Option<u16>)> {
    let (host, port) = if s.starts_with('[') {
        let end = s.find(']')?;
        let (h, rest) = s.split_at(end + 1);
        match rest.strip_prefix(':') {
            Some(p) => (h, Some(p)),
            None if rest.is_empty() => (h, None),
            None => return None,
        }
    } else {
        match s.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    let valid_host = !host.is_empty()
        && host.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'[' | b']' | b':' | b'_')
        });
    if !valid_host {
        return None;
    }
    let port = match port {
        Some(p) => Some(p.trim().parse::<u16>().ok()?),
        None => None,
    };
    Some((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_full_via() {
        let v =
            Via::parse(" SIP/2.0/udp 192.0.2.1:5062;branch=z9hG4bK776;rport;received=10.0.0.1 ")
                .unwrap();
        assert_eq!(v.transport, "UDP");
        assert_eq!(v.host, "192.0.2.1");
        assert_eq!(v.port, Some(5062));
        assert_eq!(v.branch.as_deref(), Some("z9hG4bK776"));
        assert_eq!(v.rport, Some(None));
        assert_eq!(v.received.as_deref(), Some("10.0.0.1"));
        assert_eq!(
            v.raw,
            "SIP/2.0/udp 192.0.2.1:5062;branch=z9hG4bK776;rport;received=10.0.0.1"
        );
    }

    #[test]
    fn accepts_spaces_ipv6_and_rport_value() {
        let v = Via::parse("SIP / 2.0 / TCP [2001:db8::1]:5060 ; rport=7000").unwrap();
        assert_eq!(v.host, "[2001:db8::1]");
        assert_eq!(v.host_unbracketed(), "2001:db8::1");
        assert_eq!(v.port, Some(5060));
        assert_eq!(v.rport, Some(Some(7000)));
        assert_eq!(v.branch, None);
        let w = Via::parse("SIP/2.0/UDP pc33.example.com").unwrap();
        assert_eq!((w.host.as_str(), w.port), ("pc33.example.com", None));
    }

    #[test]
    fn rejects_malformed() {
        for s in [
            "",
            "SIP/2.0",
            "SIP/3.0/UDP h",
            "HTTP/2.0/UDP h",
            "SIP/2.0/UDP",
            "SIP/2.0/UDP h:99999",
            "SIP/2.0/UDP h;branch",
            "SIP/2.0/UDP h;rport=x",
            "SIP/2.0/UDP [::1",
            "SIP/2.0/UDP h o",
        ] {
            assert!(Via::parse(s).is_none(), "{s:?}");
        }
    }
}
