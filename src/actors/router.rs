//! Routing of parsed messages to shards (see the module doc of [`crate::actors`]).
//!
//! The router runs on the transport's thread and does no I/O besides answering a request
//! with 503 when its shard's mailbox is full (counted as a `mailbox` limit hit).

use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;

use actix::prelude::*;

use super::messages::ToShard;
use super::shard::Shard;
use crate::ids::{mint_tag, PresentityUri, UriMatch};
use crate::metrics::{Limit, Metrics};
use crate::sip::{Message, Method, OutResponse};
use crate::transport::{Dispatch, Inbound, SipSender};

/// Hands each message to the shard that owns it.
pub struct Router {
    shards: Vec<Addr<Shard>>,
    uri_match: UriMatch,
    sender: SipSender,
    retry_after: u32,
    metrics: Arc<Metrics>,
}

impl Router {
    /// A router over `shards` (index = shard number); refusals are counted in `metrics`.
    pub fn new(
        shards: Vec<Addr<Shard>>,
        uri_match: UriMatch,
        sender: SipSender,
        retry_after: u32,
        metrics: Arc<Metrics>,
    ) -> Self {
        Router {
            shards,
            uri_match,
            sender,
            retry_after,
            metrics,
        }
    }
}

impl Dispatch for Router {
    fn dispatch(&self, inbound: Inbound) {
        let idx = shard_of(&inbound.msg, self.shards.len(), self.uri_match);
        let Err(err) = self.shards[idx].try_send(ToShard(inbound)) else {
            return;
        };
        let (ToShard(inbound), full) = match err {
            SendError::Full(m) => (m, true),
            SendError::Closed(m) => (m, false),
        };
        if full {
            // A dropped response counts too: the shard was full either way.
            self.metrics.limit_hit(Limit::Mailbox);
        }
        let Message::Request(req) = &inbound.msg else {
            tracing::debug!(shard = idx, "response dropped: shard busy");
            return;
        };
        if req.method == Method::Ack {
            return;
        }
        let (status, reason) = if full {
            (503, "Service Unavailable")
        } else {
            (500, "Server Internal Error")
        };
        tracing::debug!(
            shard = idx,
            status,
            "request refused: shard mailbox unavailable"
        );
        let resp = OutResponse::to(req, status, reason, inbound.source.addr)
            .header("Retry-After", self.retry_after.to_string());
        self.sender
            .send_response(&inbound.source, resp.encode(self.sender.server_header()));
    }
}

/// A fresh local tag that routes back to shard `idx`.
pub fn tag_for_shard(idx: usize) -> String {
    format!("{}-{idx:x}", mint_tag())
}

/// The shard encoded in one of our tags.
pub fn shard_from_tag(tag: &str, shards: usize) -> Option<usize> {
    let (_, idx) = tag.rsplit_once('-')?;
    usize::from_str_radix(idx, 16).ok().filter(|i| *i < shards)
}

/// The shard of a presentity.
pub fn shard_of_presentity(uri: &PresentityUri, shards: usize) -> usize {
    hash_index(uri.as_str(), shards)
}

/// The shard that owns `msg`.
pub fn shard_of(msg: &Message, shards: usize, mode: UriMatch) -> usize {
    match msg {
        Message::Request(req) => {
            if let Some(idx) = req
                .to
                .tag
                .as_deref()
                .and_then(|t| shard_from_tag(t, shards))
            {
                return idx;
            }
            if matches!(req.method, Method::Publish | Method::Subscribe) && req.to.tag.is_none() {
                if let Some(uri) = PresentityUri::parse(&req.uri, mode) {
                    return shard_of_presentity(&uri, shards);
                }
            }
            hash_index(&req.call_id, shards)
        }
        Message::Response(resp) => resp
            .from
            .tag
            .as_deref()
            .and_then(|t| shard_from_tag(t, shards))
            .unwrap_or_else(|| hash_index(&resp.call_id, shards)),
    }
}

fn hash_index(s: &str, n: usize) -> usize {
    let mut h = DefaultHasher::new();
    s.hash(&mut h);
    (h.finish() % n.max(1) as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_route_back_to_their_shard() {
        for idx in [0usize, 1, 15, 511] {
            let tag = tag_for_shard(idx);
            assert_eq!(shard_from_tag(&tag, 512), Some(idx));
        }
        assert_eq!(shard_from_tag("abc-1ff", 16), None);
        assert_eq!(shard_from_tag("notours", 16), None);
    }

    #[test]
    fn presentity_hash_is_stable_and_in_range() {
        let uri = PresentityUri::parse("sip:alice@example.com", UriMatch::CaseSensitive).unwrap();
        let a = shard_of_presentity(&uri, 512);
        assert_eq!(a, shard_of_presentity(&uri, 512));
        assert!(a < 512);
    }
}
