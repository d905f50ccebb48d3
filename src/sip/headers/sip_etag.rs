//! The `SIP-ETag` header (RFC 3903 §11.3.1): the entity tag we assign to a publication.
//!
//! Invariant: the value is a non-empty RFC 3261 token.

use std::fmt;
use std::str::FromStr;

use super::{is_token, HeaderError};
use crate::ids::ETag;

/// `SIP-ETag: entity-tag` (RFC 3903 §11.3.1), sent in 2xx responses to PUBLISH.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SipETag(String);

impl SipETag {
    /// The header for a minted entity tag.
    pub fn new(etag: &ETag) -> Self {
        SipETag(etag.as_str().to_string())
    }

    /// The entity tag carried.
    pub fn etag(&self) -> ETag {
        ETag::from_wire(&self.0)
    }

    /// The tag text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for SipETag {
    type Err = HeaderError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if !is_token(s) {
            return Err(HeaderError::Malformed("SIP-ETag"));
        }
        Ok(SipETag(s.to_string()))
    }
}

impl fmt::Display for SipETag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_minted_tags() {
        let minted = ETag::mint();
        let h = SipETag::new(&minted);
        let back: SipETag = h.to_string().parse().unwrap();
        assert_eq!(back.etag(), minted);
        assert_eq!(
            " dx200xyz ".parse::<SipETag>().unwrap().as_str(),
            "dx200xyz"
        );
    }

    #[test]
    fn rejects_non_tokens() {
        for s in ["", "a b", "a;b", "\"q\""] {
            assert!(s.parse::<SipETag>().is_err(), "{s:?}");
        }
    }
}
