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
    /// Subscriptions one presentity (URI, event) may have; more are answered
    /// `403 Too Many Subscriptions`.
    #[serde(
        default = "default_max_subscriptions",
        deserialize_with = "ranged::<_, usize, 1, COUNT_MAX>"
    )]
    pub max_subscriptions_per_presentity: usize,
    /// Subscription dialogs one watcher URI may hold on this node (over every presentity and
    /// event); more are answered `403 Too Many Subscriptions`.
    #[serde(
        default = "default_max_subscriptions_per_watcher",
        deserialize_with = "ranged::<_, usize, 1, COUNT_MAX>"
    )]
    pub max_subscriptions_per_watcher: usize,
    /// Presentity actors (URI, event) this node holds at once; a request that would create
    /// one more is answered 503 + Retry-After (state restored or replicated is never refused).
    /// With ~3.3 KB per presentity, the default bounds that state near 3.3 GB.
    #[serde(
        default = "default_max_presentities",
        deserialize_with = "ranged::<_, usize, 1, COUNT_MAX>"
    )]
    pub max_presentities: usize,
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
    /// Seconds a TCP message may take to arrive whole, from its first byte (slow-read /
    /// slowloris bound: `tcp_idle_timeout` restarts on every read); slower is closed.
    #[serde(
        default = "default_tcp_message_timeout",
        deserialize_with = "ranged::<_, u64, 1, 86400>"
    )]
    pub tcp_message_timeout: u64,
    /// NOTIFY transactions in flight across the node; at it, new SUBSCRIBEs are answered
    /// 503 + Retry-After (existing subscriptions keep being served: their changes are
    /// coalesced while a NOTIFY is in flight).
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
    /// Milliseconds (10–32000) a request may wait in the node's queues; one that waited
    /// longer is answered 503 instead of being handled (its client has retransmitted or is
    /// about to give up: handling it would only lengthen the queue under overload).
    #[serde(
        default = "default_max_queue_delay_ms",
        deserialize_with = "ranged::<_, u64, 10, 32000>"
    )]
    pub max_queue_delay_ms: u64,
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
            max_subscriptions_per_watcher: default_max_subscriptions_per_watcher(),
            max_publications_per_presentity: default_max_publications(),
            max_presentities: default_max_presentities(),
            max_body_size: default_max_body_size(),
            max_tcp_connections: default_max_tcp_connections(),
            tcp_idle_timeout: default_tcp_idle_timeout(),
            tcp_message_timeout: default_tcp_message_timeout(),
            max_pending_notifies: default_max_pending_notifies(),
            max_server_transactions: default_max_server_transactions(),
            max_queue_delay_ms: default_max_queue_delay_ms(),
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
fn default_max_subscriptions_per_watcher() -> usize {
    10_000
}
fn default_max_publications() -> usize {
    64
}
fn default_max_presentities() -> usize {
    1_000_000
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
fn default_tcp_message_timeout() -> u64 {
    10
}
fn default_max_pending_notifies() -> usize {
    100_000
}
fn default_max_server_transactions() -> usize {
    200_000
}
fn default_max_queue_delay_ms() -> u64 {
    1000
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
        assert_eq!(l.tcp_message_timeout, 10);
        assert_eq!(l.max_subscriptions_per_watcher, 10_000);
        for key in [
            "mailbox_size",
            "max_tcp_connections",
            "retry_after",
            "tcp_idle_timeout",
            "tcp_message_timeout",
            "max_subscriptions_per_watcher",
            "max_pending_notifies",
        ] {
            let e = toml::from_str::<LimitsConfig>(&format!("{key} = 0")).unwrap_err();
            assert!(
                e.message().contains("allowed values are integers from 1"),
                "{key}: {e}"
            );
        }
    }

    #[test]
    fn new_limits_parse_and_are_bounded() {
        let l: LimitsConfig =
            toml::from_str("tcp_message_timeout = 1\nmax_subscriptions_per_watcher = 2").unwrap();
        assert_eq!(l.tcp_message_timeout, 1);
        assert_eq!(l.max_subscriptions_per_watcher, 2);
        let e = toml::from_str::<LimitsConfig>("tcp_message_timeout = 86401").unwrap_err();
        assert!(e.message().contains("from 1 to 86400"), "{e}");
        assert!(toml::from_str::<LimitsConfig>("tcp_message_timeout = \"10\"").is_err());
    }
}
