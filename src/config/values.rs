//! Value types and field deserializers shared by the configuration tables.
//!
//! Owns the parsing of single values: Kamailio 0/1 flags, bounded integers, SIP header
//! names, socket addresses, `[sip] listen` entries, sled tree names, `sip:` URIs and syslog
//! facility names. Every error message here says what is
//! allowed; the key and the offending value are added by the caller
//! (`config::locate`), which knows where in the file the value sits.
//!
//! Invariant: a value that deserializes is valid on its own; only cross-key rules are left
//! to `config::validate`.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

use crate::ids::{PresentityUri, UriMatch};

/// A transport protocol of a SIP listen address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Proto {
    /// SIP over UDP datagrams.
    Udp,
    /// SIP over TCP streams (framed by Content-Length).
    Tcp,
}

impl Proto {
    /// The lower-case name used in config (`udp`, `tcp`) and in `transport=` URI parameters.
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Udp => "udp",
            Proto::Tcp => "tcp",
        }
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One `[sip] listen` entry: `udp:IP:PORT` or `tcp:IP:PORT` (`tcp:[::1]:5060` for IPv6).
/// Port 0 is allowed (the OS picks one; tests use it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(try_from = "String")]
pub struct ListenAddr {
    /// Transport protocol.
    pub proto: Proto,
    /// Local address to bind.
    pub addr: SocketAddr,
}

const LISTEN_ALLOWED: &str =
    "allowed: \"udp:IP:PORT\" or \"tcp:IP:PORT\", e.g. \"udp:127.0.0.1:5060\" or \"tcp:[::1]:5060\"";

impl ListenAddr {
    /// The SIP URI this address is reached at (`sip:127.0.0.1:5060`, with
    /// `;transport=tcp` for TCP): the derived `server_address`.
    pub fn sip_uri(&self) -> String {
        match self.proto {
            Proto::Udp => format!("sip:{}", self.addr),
            Proto::Tcp => format!("sip:{};transport=tcp", self.addr),
        }
    }
}

impl FromStr for ListenAddr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not a listen address; {LISTEN_ALLOWED}");
        let (proto, addr) = s.split_once(':').ok_or_else(bad)?;
        let proto = match proto.to_ascii_lowercase().as_str() {
            "udp" => Proto::Udp,
            "tcp" => Proto::Tcp,
            _ => return Err(bad()),
        };
        let addr = addr.parse::<SocketAddr>().map_err(|_| bad())?;
        Ok(ListenAddr { proto, addr })
    }
}

impl TryFrom<String> for ListenAddr {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.proto, self.addr)
    }
}

/// `[sip] listen`: at least one entry, no duplicates.
pub(crate) fn listen_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<ListenAddr>, D::Error> {
    let list = Vec::<ListenAddr>::deserialize(d)?;
    if list.is_empty() {
        return Err(de::Error::custom(format!(
            "at least one address is required; {LISTEN_ALLOWED}"
        )));
    }
    for (i, a) in list.iter().enumerate() {
        if list[..i].contains(a) {
            return Err(de::Error::custom(format!("\"{a}\" is listed twice")));
        }
    }
    Ok(list)
}

const FLAG_ALLOWED: &str = "allowed values are 0 (off) and 1 (on), or false and true";

struct FlagVisitor;

impl Visitor<'_> for FlagVisitor {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("0 or 1 (or false/true)")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<bool, E> {
        Ok(v)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<bool, E> {
        match v {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(E::custom(FLAG_ALLOWED)),
        }
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<bool, E> {
        self.visit_i64(i64::try_from(v).unwrap_or(i64::MAX))
    }
}

/// A Kamailio 0/1 flag; TOML `true`/`false` are accepted too.
pub(crate) fn flag<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    d.deserialize_any(FlagVisitor)
}

/// A flag whose presence matters (a parameter that is accepted but has no effect).
pub(crate) fn opt_flag<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    flag(d).map(Some)
}

fn range_message(lo: i64, hi: i64) -> String {
    if hi == i64::MAX {
        format!("allowed values are integers from {lo} up")
    } else {
        format!("allowed values are integers from {lo} to {hi}")
    }
}

/// An integer in `LO..=HI`, converted to the field's type. Used as
/// `deserialize_with = "ranged::<_, u32, 1, 3600>"`.
pub(crate) fn ranged<'de, D, T, const LO: i64, const HI: i64>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<i64>,
{
    let v = i64::deserialize(d)?;
    if !(LO..=HI).contains(&v) {
        return Err(de::Error::custom(range_message(LO, HI)));
    }
    T::try_from(v).map_err(|_| de::Error::custom(range_message(LO, HI)))
}

/// True when `s` is an RFC 3261 `token` (the grammar of header names).
pub(crate) fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b))
}

/// An optional SIP header name (`Sender`, `P-Asserted-Identity`).
pub(crate) fn opt_header_name<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let s = String::deserialize(d)?;
    if !is_token(&s) {
        return Err(de::Error::custom(
            "allowed: a SIP header name (letters, digits and -.!%*_+`'~), e.g. \"Sender\"",
        ));
    }
    Ok(Some(s))
}

const ADDR_ALLOWED: &str = "allowed: \"IP:PORT\", e.g. \"127.0.0.1:5070\" or \"[::1]:5070\"";

fn parse_addr<E: de::Error>(s: &str) -> Result<SocketAddr, E> {
    s.trim()
        .parse()
        .map_err(|_| E::custom(format!("{s:?} is not an address; {ADDR_ALLOWED}")))
}

/// A socket address written as `"IP:PORT"`.
pub(crate) fn socket_addr<'de, D: Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
    parse_addr(&String::deserialize(d)?)
}

/// An optional socket address (the key may be absent).
pub(crate) fn opt_socket_addr<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<SocketAddr>, D::Error> {
    socket_addr(d).map(Some)
}

/// A socket address where the empty string means "disabled".
pub(crate) fn socket_addr_or_empty<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<SocketAddr>, D::Error> {
    let s = String::deserialize(d)?;
    if s.trim().is_empty() {
        return Ok(None);
    }
    parse_addr(&s).map(Some)
}

/// A list of socket addresses, no duplicates.
pub(crate) fn socket_addr_list<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Vec<SocketAddr>, D::Error> {
    let raw = Vec::<String>::deserialize(d)?;
    let mut out: Vec<SocketAddr> = Vec::with_capacity(raw.len());
    for s in &raw {
        let a = parse_addr(s)?;
        if out.contains(&a) {
            return Err(de::Error::custom(format!("\"{a}\" is listed twice")));
        }
        out.push(a);
    }
    Ok(out)
}

/// A non-empty optional string (`[admin] token`, `[presence] db_url`).
pub(crate) fn opt_non_empty<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let s = String::deserialize(d)?;
    if s.is_empty() {
        return Err(de::Error::custom(
            "allowed: a non-empty string (remove the key to leave it unset)",
        ));
    }
    Ok(Some(s))
}

/// `[presence] sip_uri_match`: 0 case-sensitive user part, 1 case-insensitive.
pub(crate) fn uri_match<'de, D: Deserializer<'de>>(d: D) -> Result<UriMatch, D::Error> {
    match i64::deserialize(d)? {
        0 => Ok(UriMatch::CaseSensitive),
        1 => Ok(UriMatch::CaseInsensitive),
        _ => Err(de::Error::custom(
            "allowed values are 0 (user part case-sensitive) and 1 (case-insensitive)",
        )),
    }
}

/// A sled tree name: 1–64 characters of letters, digits, `_`, `-`, `.`.
pub(crate) fn tree_name<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s = String::deserialize(d)?;
    let ok = (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b));
    if !ok {
        return Err(de::Error::custom(
            "allowed: 1 to 64 letters, digits, '_', '-' or '.'",
        ));
    }
    Ok(s)
}

/// `server_address`: a `sip:` or `sips:` URI with a host.
pub(crate) fn opt_sip_uri<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let s = String::deserialize(d)?;
    let scheme_ok = s.split_once(':').is_some_and(|(sch, _)| {
        sch.eq_ignore_ascii_case("sip") || sch.eq_ignore_ascii_case("sips")
    });
    if !scheme_ok || PresentityUri::parse(&s, UriMatch::CaseSensitive).is_none() {
        return Err(de::Error::custom(
            "allowed: a sip: or sips: URI, e.g. \"sip:10.10.10.10:5060\"",
        ));
    }
    Ok(Some(s))
}

const FACILITIES: &[&str] = &[
    "LOG_AUTH",
    "LOG_AUTHPRIV",
    "LOG_CRON",
    "LOG_DAEMON",
    "LOG_FTP",
    "LOG_KERN",
    "LOG_LPR",
    "LOG_MAIL",
    "LOG_NEWS",
    "LOG_SYSLOG",
    "LOG_USER",
    "LOG_UUCP",
    "LOG_LOCAL0",
    "LOG_LOCAL1",
    "LOG_LOCAL2",
    "LOG_LOCAL3",
    "LOG_LOCAL4",
    "LOG_LOCAL5",
    "LOG_LOCAL6",
    "LOG_LOCAL7",
];

/// `local_log_facility`: a syslog facility name.
pub(crate) fn opt_facility<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let s = String::deserialize(d)?;
    if !FACILITIES.contains(&s.as_str()) {
        return Err(de::Error::custom(format!(
            "allowed: a syslog facility name, one of {}",
            FACILITIES.join(", ")
        )));
    }
    Ok(Some(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addr_parses_udp_tcp_and_ipv6() {
        let a: ListenAddr = "udp:127.0.0.1:5060".parse().unwrap();
        assert_eq!(a.proto, Proto::Udp);
        assert_eq!(a.addr, "127.0.0.1:5060".parse::<SocketAddr>().unwrap());
        assert_eq!(a.to_string(), "udp:127.0.0.1:5060");
        assert_eq!(a.sip_uri(), "sip:127.0.0.1:5060");
        let b: ListenAddr = "TCP:[::1]:0".parse().unwrap();
        assert_eq!(b.proto, Proto::Tcp);
        assert_eq!(b.addr.port(), 0);
        assert_eq!(b.sip_uri(), "sip:[::1]:0;transport=tcp");
    }

    #[test]
    fn listen_addr_rejects_bad_forms() {
        for bad in [
            "127.0.0.1:5060",
            "sctp:127.0.0.1:5060",
            "udp:localhost:5060",
            "udp:1.2.3.4",
        ] {
            let e = bad.parse::<ListenAddr>().unwrap_err();
            assert!(e.contains("udp:IP:PORT"), "{bad}: {e}");
        }
    }

    #[test]
    fn tokens() {
        assert!(is_token("P-Asserted-Identity"));
        assert!(!is_token(""));
        assert!(!is_token("Bad Header"));
        assert!(!is_token("X:y"));
    }

    #[test]
    fn range_message_wording() {
        assert_eq!(
            range_message(1, 10),
            "allowed values are integers from 1 to 10"
        );
        assert_eq!(
            range_message(0, i64::MAX),
            "allowed values are integers from 0 up"
        );
    }
}
