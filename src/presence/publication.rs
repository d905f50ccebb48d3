//! One PUBLISH soft state per ETag (RFC 3903 §4), and the vocabulary of publishing: the
//! input and outcome of [`crate::presence::presentity::Presentity::publish`], its errors with
//! their SIP status, and the order in which publications are composed (`retrieve_order`).
//!
//! Invariants: a [`Publication`] is plain data (clonable, serialisable for the store and for
//! replication); its `expires_at` and `received_at` are absolute wall-clock times so they
//! survive restarts and travel between nodes unchanged.

use std::cmp::Ordering;

use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;
use crate::ids::{ETag, NodeId};
use crate::presence::package::Body;

/// One publication: the document a PUBLISH installed under one ETag.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Publication {
    /// The ETag that names it now (SIP-ETag of the last 2xx); changes on refresh/modify
    /// unless the package keeps ETags.
    pub etag: ETag,
    /// The published document.
    pub body: Body,
    /// When it expires unless refreshed.
    pub expires_at: Timestamp,
    /// When its document was last set (initial PUBLISH or modify); orders composition.
    pub received_at: Timestamp,
    /// Composition precedence (higher = earlier with `priority desc`); from `xavp_cfg`, else
    /// the receive time in seconds, so newer documents rank higher (Kamailio).
    pub priority: i32,
    /// The node that accepted the PUBLISH.
    pub origin: NodeId,
}

/// A PUBLISH as the presentity sees it: headers already parsed, Expires already decided.
#[derive(Clone, Debug)]
pub struct PublishInput {
    /// SIP-If-Match, if present.
    pub if_match: Option<ETag>,
    /// The decided Expires ([`crate::presence::expires::decide`]); 0 = remove.
    pub expires: u32,
    /// The body with its Content-Type, if the request had one.
    pub body: Option<Body>,
    /// `priority=N` from the `xavp_cfg` header, if configured and present.
    pub priority: Option<i32>,
    /// The node handling the request.
    pub origin: NodeId,
}

/// What a successful PUBLISH did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublishOutcome {
    /// The ETag for the SIP-ETag header of the 2xx (for a removal: the removed one).
    pub etag: ETag,
    /// The Expires granted (before `expires_offset`); 0 for a removal.
    pub expires: u32,
    /// The composed state changed: watchers must be notified.
    pub changed: bool,
}

/// Why a PUBLISH was refused. No variant ever leaves the presentity changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    /// 400: an initial PUBLISH (no SIP-If-Match) without a body. State unchanged.
    #[error("missing body")]
    MissingBody,
    /// 415: the Content-Type is not one the package accepts. State unchanged.
    #[error("unsupported media type (accepted: {accept})")]
    UnsupportedMediaType {
        /// The Accept header value: the accepted types, comma-separated.
        accept: String,
    },
    /// 400: the package refused the body; a short reason, never the body. State unchanged.
    #[error("bad body: {0}")]
    BadBody(String),
    /// 412: SIP-If-Match names no live publication of this presentity and package (unknown,
    /// replaced, removed or expired). State unchanged.
    #[error("conditional request failed")]
    ConditionalRequestFailed,
    /// 503: the presentity already holds the maximum number of publications. State unchanged.
    #[error("too many publications (max {max})")]
    TooManyPublications {
        /// The configured limit per presentity.
        max: usize,
    },
}

impl PublishError {
    /// The SIP status code of the reply.
    pub fn status_code(&self) -> u16 {
        match self {
            PublishError::MissingBody | PublishError::BadBody(_) => 400,
            PublishError::UnsupportedMediaType { .. } => 415,
            PublishError::ConditionalRequestFailed => 412,
            PublishError::TooManyPublications { .. } => 503,
        }
    }

    /// The reason phrase of the reply: one line, printable ASCII, at most ~100 characters.
    pub fn reason_phrase(&self) -> String {
        match self {
            PublishError::MissingBody => "Missing body".to_string(),
            PublishError::UnsupportedMediaType { .. } => "Unsupported Media Type".to_string(),
            PublishError::BadBody(reason) => {
                let clean: String = reason
                    .chars()
                    .map(|c| {
                        if c.is_ascii_graphic() || c == ' ' {
                            c
                        } else {
                            '?'
                        }
                    })
                    .take(80)
                    .collect();
                format!("Bad body: {clean}")
            }
            PublishError::ConditionalRequestFailed => "Conditional Request Failed".to_string(),
            PublishError::TooManyPublications { .. } => "Too Many Publications".to_string(),
        }
    }
}

/// A key publications can be ordered by (`retrieve_order_by`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OrderField {
    /// [`Publication::priority`].
    Priority,
    /// [`Publication::received_at`].
    ReceivedTime,
}

/// A sort direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SortDir {
    /// Smallest first (SQL's default, as in Kamailio's `retrieve_order_by`).
    Asc,
    /// Largest first.
    Desc,
}

/// The order in which publications are handed to the package for composition; the first is
/// the highest precedence.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum RetrieveOrder {
    /// `retrieve_order = 0`: newest `received_at` first.
    #[default]
    NewestFirst,
    /// `retrieve_order = 1`: by these keys in turn; ties keep newest-first order.
    By(Vec<(OrderField, SortDir)>),
}

impl RetrieveOrder {
    /// Sorts `pubs` into composition order (first = highest precedence). Stable: equal keys
    /// keep newest-first order, then the later-inserted first.
    pub fn sort(&self, pubs: &mut [&Publication]) {
        pubs.reverse();
        pubs.sort_by_key(|p| std::cmp::Reverse(p.received_at));
        if let RetrieveOrder::By(keys) = self {
            pubs.sort_by(|a, b| {
                keys.iter()
                    .map(|(field, dir)| {
                        let ord = match field {
                            OrderField::Priority => a.priority.cmp(&b.priority),
                            OrderField::ReceivedTime => a.received_at.cmp(&b.received_at),
                        };
                        if *dir == SortDir::Desc {
                            ord.reverse()
                        } else {
                            ord
                        }
                    })
                    .find(|o| *o != Ordering::Equal)
                    .unwrap_or(Ordering::Equal)
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn publication(tag: &str, received: u64, priority: i32) -> Publication {
        Publication {
            etag: ETag::from_wire(tag),
            body: Body::new("text/plain", tag.as_bytes().to_vec()),
            expires_at: Timestamp(received + 1000),
            received_at: Timestamp(received),
            priority,
            origin: NodeId::new("n1"),
        }
    }

    fn order_of(order: &RetrieveOrder, pubs: &[Publication]) -> Vec<String> {
        let mut refs: Vec<&Publication> = pubs.iter().collect();
        order.sort(&mut refs);
        refs.iter().map(|p| p.etag.as_str().to_string()).collect()
    }

    #[test]
    fn orders_newest_first_and_by_keys() {
        let pubs = [
            publication("a", 10, 5),
            publication("b", 30, 1),
            publication("c", 20, 5),
        ];
        assert_eq!(
            order_of(&RetrieveOrder::NewestFirst, &pubs),
            ["b", "c", "a"]
        );
        let by_prio_desc = RetrieveOrder::By(vec![(OrderField::Priority, SortDir::Desc)]);
        // a and c tie on priority: newest (c) first.
        assert_eq!(order_of(&by_prio_desc, &pubs), ["c", "a", "b"]);
        let by_prio_then_time = RetrieveOrder::By(vec![
            (OrderField::Priority, SortDir::Asc),
            (OrderField::ReceivedTime, SortDir::Asc),
        ]);
        assert_eq!(order_of(&by_prio_then_time, &pubs), ["b", "a", "c"]);
        // Equal on every key: the later-inserted first.
        let same = [publication("x", 10, 1), publication("y", 10, 1)];
        assert_eq!(order_of(&RetrieveOrder::NewestFirst, &same), ["y", "x"]);
    }

    #[test]
    fn errors_map_to_sip_status() {
        let accept = PublishError::UnsupportedMediaType {
            accept: "application/pidf+xml".into(),
        };
        assert_eq!(
            (accept.status_code(), accept.reason_phrase().as_str()),
            (415, "Unsupported Media Type")
        );
        assert_eq!(PublishError::MissingBody.status_code(), 400);
        assert_eq!(PublishError::MissingBody.reason_phrase(), "Missing body");
        assert_eq!(PublishError::ConditionalRequestFailed.status_code(), 412);
        assert_eq!(
            PublishError::TooManyPublications { max: 3 }.status_code(),
            503
        );
        let bad = PublishError::BadBody(format!("evil\r\nVia: x {}", "y".repeat(500)));
        assert_eq!(bad.status_code(), 400);
        let phrase = bad.reason_phrase();
        assert!(phrase.starts_with("Bad body: evil??Via: x "), "{phrase}");
        assert!(phrase.len() <= 100 && !phrase.contains('\r') && !phrase.contains('\n'));
    }

    #[test]
    fn publication_serde_round_trip() {
        let p = publication("tag1", 1_000, -3);
        let text = toml::to_string(&p).unwrap();
        let back: Publication = toml::from_str(&text).unwrap();
        assert_eq!(back, p);
        assert_eq!(&back.body.bytes[..], b"tag1");
    }
}
