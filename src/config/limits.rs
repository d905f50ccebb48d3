//! The `[limits]` table: the bounds that keep memory and work finite under load.
//!
//! SPEC §2 leaves this table to the README; this file is its definition. Invariant: a limit
//! that is hit is answered (503 with `Retry-After: retry_after`, or 413), never by crashing
//! or by unbounded growth. Every limit is at least 1.

use serde::Deserialize;

use super::values::ranged;

/// Upper bound for counts (fits every target's `usize`).
const COUNT_MAX: i64 = u32::MAX as i64;

/// `[limits]`: capacity bounds.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Capacity of each actor's mailbox; a full mailbox on an input path answers 503.
    #[serde(
        default = "default_mailbox_size",
        deserialize_with = "ranged::<_, usize, 1, 1048576>"
    )]
    pub mailbox_size: usize,
    /// Subscriptions one presentity (URI, event) may have; more are answered 503.
    #[serde(
        default = "default_max_subscriptions",
        deserialize_with = "ranged::<_, usize, 1, COUNT_MAX>"
    )]
    pub max_subscriptions_per_presentity: usize,
    /// Live publications (ETags) one presentity may have; more are answered 503.
    #[serde(
        default = "default_max_publications",
        deserialize_with = "ranged::<_, usize, 1, COUNT_MAX>"
    )]
    pub max_publications_per_presentity: usize,
    /// Largest accepted PUBLISH body in bytes; larger is answered 413.
    #[serde(
        default = "default_max_body_size",
        deserialize_with = "ranged::<_, usize, 1, 16777216>"
    )]
    pub max_body_size: usize,
    /// Concurrent TCP connections; further connections are refused until one closes.
    #[serde(
        default = "default_max_tcp_connections",
        deserialize_with = "ranged::<_, usize, 1, COUNT_MAX>"
    )]
    pub max_tcp_connections: usize,
    /// Seconds a TCP connection may stay idle before it is closed.
    #[serde(
        default = "default_tcp_idle_timeout",
        deserialize_with = "ranged::<_, u64, 1, 86400>"
    )]
    pub tcp_idle_timeout: u64,
    /// NOTIFYs waiting to be sent (in flight or coalesced) across the node; above it, new
    /// SUBSCRIBEs are answered 503.
    #[serde(
        default = "default_max_pending_notifies",
        deserialize_with = "ranged::<_, usize, 1, COUNT_MAX>"
    )]
    pub max_pending_notifies: usize,
    /// Live server transactions (for retransmission absorption); above it, new requests are
    /// answered 503.
    #[serde(
        default = "default_max_server_transactions",
        deserialize_with = "ranged::<_, usize, 1, COUNT_MAX>"
    )]
    pub max_server_transactions: usize,
    /// Seconds put in the `Retry-After` header of a 503 caused by a limit.
    #[serde(
        default = "default_retry_after",
        deserialize_with = "ranged::<_, u32, 1, 3600>"
    )]
    pub retry_after: u32,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            mailbox_size: default_mailbox_size(),
            max_subscriptions_per_presentity: default_max_subscriptions(),
            max_publications_per_presentity: default_max_publications(),
            max_body_size: default_max_body_size(),
            max_tcp_connections: default_max_tcp_connections(),
            tcp_idle_timeout: default_tcp_idle_timeout(),
            max_pending_notifies: default_max_pending_notifies(),
            max_server_transactions: default_max_server_transactions(),
            retry_after: default_retry_after(),
        }
    }
}

fn default_mailbox_size() -> usize {
    256
}
fn default_max_subscriptions() -> usize {
    10_000
}
fn default_max_publications() -> usize {
    64
}
fn default_max_body_size() -> usize {
    65_536
}
fn default_max_tcp_connections() -> usize {
    1024
}
fn default_tcp_idle_timeout() -> u64 {
    120
}
fn default_max_pending_notifies() -> usize {
    100_000
}
fn default_max_server_transactions() -> usize {
    200_000
}
fn default_retry_after() -> u32 {
    5
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_parse_and_reject_zero() {
        let l: LimitsConfig = toml::from_str("mailbox_size = 16\nretry_after = 2").unwrap();
        assert_eq!(l.mailbox_size, 16);
        assert_eq!(l.retry_after, 2);
        assert_eq!(l.max_body_size, 65_536);
        for key in [
            "mailbox_size",
            "max_tcp_connections",
            "retry_after",
            "tcp_idle_timeout",
        ] {
            let e = toml::from_str::<LimitsConfig>(&format!("{key} = 0")).unwrap_err();
            assert!(
                e.message().contains("allowed values are integers from 1"),
                "{key}: {e}"
            );
        }
    }
}
