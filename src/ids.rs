//! Identifier newtypes shared by every layer: parsed once, never bare strings.
//!
//! * [`PresentityUri`] — the normalised `sip:user@host` a PUBLISH or SUBSCRIBE addresses
//!   (Kamailio's `pres_uri`), compared per `sip_uri_match`.
//! * [`EventKey`] — an event package as the registry names it (`presence`, `dialog;sla`).
//! * [`ETag`] — an entity tag of one publication (RFC 3903 §4.1), unguessable.
//! * [`DialogId`] — Call-ID + remote (watcher) tag + local tag of a subscription dialog.
//! * [`NodeId`] — a cluster node's configured name.

use std::fmt;

use rand::RngCore;
use serde::{Deserialize, Serialize};

/// How the user part of a URI is compared (`[presence] sip_uri_match`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum UriMatch {
    /// `sip_uri_match = 0`: the user part is case-sensitive (host never is, RFC 3261 §19.1.4).
    #[default]
    CaseSensitive,
    /// `sip_uri_match = 1`: the whole URI is compared case-insensitively.
    CaseInsensitive,
}

/// A presentity: `scheme:user@host`, without port, parameters or headers, as Kamailio builds
/// `pres_uri` from the Request-URI. The host is always lower-cased; the user part too when
/// [`UriMatch::CaseInsensitive`].
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PresentityUri(String);

impl PresentityUri {
    /// Builds the normalised form from its parts.
    pub fn from_parts(scheme: &str, user: Option<&str>, host: &str, mode: UriMatch) -> Self {
        // One allocation: this runs for every PUBLISH and SUBSCRIBE (Request-URI, From).
        let len = scheme.len() + 1 + user.map_or(0, |u| u.len() + 1) + host.len();
        let mut s = String::with_capacity(len);
        push_lower(&mut s, scheme);
        s.push(':');
        if let Some(u) = user {
            match mode {
                UriMatch::CaseInsensitive => push_lower(&mut s, u),
                UriMatch::CaseSensitive => s.push_str(u),
            }
            s.push('@');
        }
        push_lower(&mut s, host);
        PresentityUri(s)
    }

    /// Parses a URI string (`sip:alice@Example.COM:5060;transport=udp` or with `<>`) and
    /// normalises it. `None` when it has no scheme or host.
    pub fn parse(uri: &str, mode: UriMatch) -> Option<Self> {
        let uri = uri.trim();
        let uri = uri
            .strip_prefix('<')
            .and_then(|u| u.split('>').next())
            .unwrap_or(uri);
        let (scheme, rest) = uri.split_once(':')?;
        if scheme.is_empty()
            || !scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '+')
        {
            return None;
        }
        let rest = rest.split([';', '?', '>']).next().unwrap_or("");
        // Whitespace and control characters have no place in a user or host (RFC 3261
        // §25.1); accepting them would make normalisation depend on what follows them.
        if rest.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return None;
        }
        let (user, hostport) = match rest.rsplit_once('@') {
            Some((u, h)) => (Some(u.split(':').next().unwrap_or(u)), h),
            None => (None, rest),
        };
        let host = match hostport.strip_prefix('[') {
            // `[` … `]` kept: the bracketed IPv6 reference is the host.
            Some(v6) => &hostport[..v6.find(']').map_or(hostport.len(), |i| i + 2)],
            None => hostport.split(':').next().unwrap_or(""),
        };
        if host.is_empty() || host == "[" || host == "[]" || user == Some("") {
            return None;
        }
        if host.starts_with('[') && !host.ends_with(']') {
            // `[::1` without its closing bracket: as before, the host reads `[::1]`.
            let closed = format!("{host}]");
            return Some(Self::from_parts(scheme, user, &closed, mode));
        }
        Some(Self::from_parts(scheme, user, host, mode))
    }

    /// A URI text that was normalised before (read back from our own store keys).
    pub(crate) fn from_normalised(s: String) -> Self {
        PresentityUri(s)
    }

    /// The normalised URI text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The user part, if any.
    pub fn user(&self) -> Option<&str> {
        let rest = self.0.split_once(':').map(|(_, r)| r)?;
        rest.rsplit_once('@').map(|(u, _)| u)
    }

    /// The host part.
    pub fn host(&self) -> &str {
        let rest = self.0.split_once(':').map(|(_, r)| r).unwrap_or(&self.0);
        rest.rsplit_once('@').map(|(_, h)| h).unwrap_or(rest)
    }
}

impl fmt::Display for PresentityUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An event package name as registered (`presence`, `presence.winfo`, `dialog;sla`,
/// `message-summary`). Lower-case; `dialog;sla` keeps its parameter because Kamailio treats
/// it as a package of its own.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct EventKey(String);

impl EventKey {
    /// An event key from a registered package name.
    pub fn new(name: &str) -> Self {
        EventKey(name.trim().to_ascii_lowercase())
    }

    /// The package name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EventKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An entity tag (RFC 3903 §4.1): 128 random bits, hex, so that no ETag can be guessed from
/// any other and none repeats across restarts or nodes.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ETag(String);

impl ETag {
    /// Mints a fresh ETag from the thread's CSPRNG.
    pub fn mint() -> Self {
        ETag(random_hex(16))
    }

    /// An ETag as received in SIP-If-Match (opaque token, any value).
    pub fn from_wire(s: &str) -> Self {
        ETag(s.trim().to_string())
    }

    /// The tag text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ETag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A subscription dialog (RFC 3261 §12): Call-ID, the watcher's tag (From-tag of the
/// SUBSCRIBE) and our tag (To-tag we minted).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct DialogId {
    /// Call-ID of the dialog.
    pub call_id: String,
    /// The watcher's tag (From-tag of the SUBSCRIBE).
    pub remote_tag: String,
    /// Our tag (To-tag of our 2xx; From-tag of our NOTIFYs).
    pub local_tag: String,
}

impl fmt::Display for DialogId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{};{};{}", self.call_id, self.remote_tag, self.local_tag)
    }
}

/// A local tag for a new dialog: 64 random bits, hex.
pub fn mint_tag() -> String {
    random_hex(8)
}

/// A Via branch for a request we send (RFC 3261 §8.1.1.7 magic cookie + 64 random bits).
pub fn mint_branch() -> String {
    format!("z9hG4bK{}", random_hex(8))
}

/// A node's name in the cluster (`[node] id`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NodeId(String);

impl NodeId {
    /// A node id from configuration.
    pub fn new(id: &str) -> Self {
        NodeId(id.to_string())
    }

    /// The id text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn random_hex(bytes: usize) -> String {
    let mut buf = [0u8; 32];
    let buf = &mut buf[..bytes.min(32)];
    rand::rng().fill_bytes(buf);
    let mut s = String::with_capacity(buf.len() * 2);
    for b in buf.iter() {
        s.push(char::from(b"0123456789abcdef"[(b >> 4) as usize]));
        s.push(char::from(b"0123456789abcdef"[(b & 15) as usize]));
    }
    s
}

/// Appends `s` in ASCII lower case.
fn push_lower(out: &mut String, s: &str) {
    out.extend(s.chars().map(|c| c.to_ascii_lowercase()));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presentity_uri_normalises_host_port_and_params() {
        let u = PresentityUri::parse(
            "<sip:Alice@Example.COM:5060;transport=udp>",
            UriMatch::CaseSensitive,
        )
        .unwrap();
        assert_eq!(u.as_str(), "sip:Alice@example.com");
        assert_eq!(u.user(), Some("Alice"));
        assert_eq!(u.host(), "example.com");
        let v = PresentityUri::parse("sip:Alice@example.com", UriMatch::CaseInsensitive).unwrap();
        assert_eq!(v.as_str(), "sip:alice@example.com");
        assert!(PresentityUri::parse("alice", UriMatch::CaseSensitive).is_none());
        assert!(PresentityUri::parse("sip:@", UriMatch::CaseSensitive).is_none());
        // Found by fuzzing (F4): normalising twice must give the same key.
        assert!(
            PresentityUri::parse("e:+1-alogaold,ig ;ssntext=om", UriMatch::CaseSensitive).is_none()
        );
        assert!(PresentityUri::parse("psip:Alireyeen\r;x", UriMatch::CaseInsensitive).is_none());
        let w = PresentityUri::parse("sip:bob@[::1]:5070", UriMatch::CaseSensitive).unwrap();
        assert_eq!(w.as_str(), "sip:bob@[::1]");
        // The IPv6 edge cases of the one-allocation builder: an unclosed reference reads as
        // closed, an empty one is no host; the host is lower-cased, the user kept.
        let x = PresentityUri::parse("SIP:Bob@[FE80::1", UriMatch::CaseSensitive).unwrap();
        assert_eq!(x.as_str(), "sip:Bob@[fe80::1]");
        assert!(PresentityUri::parse("sip:bob@[]:5060", UriMatch::CaseSensitive).is_none());
        assert!(PresentityUri::parse("sip:bob@[", UriMatch::CaseSensitive).is_none());
        let h = PresentityUri::parse("sips:Example.ORG", UriMatch::CaseInsensitive).unwrap();
        assert_eq!(h.as_str(), "sips:example.org");
    }

    #[test]
    fn etags_are_unique_and_long() {
        let a = ETag::mint();
        let b = ETag::mint();
        assert_ne!(a, b);
        assert_eq!(a.as_str().len(), 32);
        assert!(mint_branch().starts_with("z9hG4bK"));
    }

    /// No ETag is predictable from the previous ones: 2,000 consecutive ETags are distinct,
    /// and each differs from its predecessor in about half of its 128 bits (a counter or a
    /// weak generator would differ in a few), with every bit position taking both values.
    #[test]
    fn etags_are_not_predictable_from_previous_ones() {
        let bits = |e: &ETag| u128::from_str_radix(e.as_str(), 16).expect("hex");
        let v: Vec<u128> = (0..2000).map(|_| bits(&ETag::mint())).collect();
        let mut uniq = v.clone();
        uniq.sort_unstable();
        uniq.dedup();
        assert_eq!(uniq.len(), v.len(), "an ETag repeated");
        let flips: Vec<u32> = v.windows(2).map(|w| (w[0] ^ w[1]).count_ones()).collect();
        let mean = f64::from(flips.iter().sum::<u32>()) / flips.len() as f64;
        assert!((60.0..68.0).contains(&mean), "mean bit flips {mean}");
        assert!(
            flips.iter().all(|&f| f >= 20),
            "two consecutive ETags nearly equal"
        );
        let (or, and) = v
            .iter()
            .fold((0u128, u128::MAX), |(o, a), x| (o | x, a & x));
        assert_eq!(or, u128::MAX, "some bit is always 0");
        assert_eq!(and, 0, "some bit is always 1");
    }
}
