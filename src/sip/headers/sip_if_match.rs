//! The `SIP-If-Match` header (RFC 3903 §11.3.2): the entity tag a PUBLISH refreshes,
//! modifies or removes.
//!
//! Invariant: the value is a non-empty RFC 3261 token.

use std::fmt;
use std::str::FromStr;

use super::{is_token, HeaderError};
use crate::ids::ETag;

/// `SIP-If-Match: entity-tag` (RFC 3903 §11.3.2).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SipIfMatch(String);

impl SipIfMatch {
    /// The header naming an entity tag.
    pub fn new(etag: &ETag) -> Self {
        SipIfMatch(etag.as_str().to_string())
    }

    /// The entity tag to match against stored publications.
    pub fn etag(&self) -> ETag {
        ETag::from_wire(&self.0)
    }

    /// The tag text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for SipIfMatch {
    type Err = HeaderError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if !is_token(s) {
            return Err(HeaderError::Malformed("SIP-If-Match"));
        }
        Ok(SipIfMatch(s.to_string()))
    }
}

impl fmt::Display for SipIfMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let h: SipIfMatch = "  a1b2.c3 ".parse().unwrap();
        assert_eq!(h.as_str(), "a1b2.c3");
        assert_eq!(h.etag(), ETag::from_wire("a1b2.c3"));
        assert_eq!(h.to_string().parse::<SipIfMatch>().unwrap(), h);
        let e = ETag::mint();
        assert_eq!(SipIfMatch::new(&e).etag(), e);
    }

    #[test]
    fn rejects_non_tokens() {
        for s in ["", "   ", "a,b", "x y"] {
            assert_eq!(
                s.parse::<SipIfMatch>(),
                Err(HeaderError::Malformed("SIP-If-Match"))
            );
        }
    }
}
