//! [`Metrics`]: the node's Prometheus metrics (served by the admin endpoint at `GET /metrics`).
//!
//! One `Metrics` per node, shared as `Arc<Metrics>` with every actor that counts something.
//! Invariants:
//! * Every recording method is cheap and callable from any thread: counters and gauges are
//!   atomics; labelled families take a read lock on a map whose keys come from small, fixed
//!   sets (a SIP method outside the known list is counted as `OTHER`), so label cardinality
//!   stays bounded whatever the network sends.
//! * Nothing here reads sockets or the clock; the process RSS is read from `/proc` only when
//!   the endpoint asks ([`Metrics::sample_process`]).
//!
//! The families (names as exposed):
//!
//! | name | type | labels |
//! |---|---|---|
//! | `presenced_sip_requests_total` | counter | `method`, `status` (final status sent) |
//! | `presenced_notify_sent_total` | counter | – |
//! | `presenced_notify_retransmitted_total` | counter | – |
//! | `presenced_passivations_total` | counter | – (subscription dialogs passivated) |
//! | `presenced_notify_failed_total` | counter | `reason` (`timeout`, `transport`, `rejected`, …) |
//! | `presenced_limit_hits_total` | counter | `limit` (one per [`Limit`], all present from start) |
//! | `presenced_actors` | gauge | `kind` (`presentity`, `subscription`, `transaction`, …) |
//! | `presenced_mailbox_depth` | histogram | `kind` |
//! | `presenced_store_flush_seconds` | histogram | – |
//! | `presenced_process_resident_memory_bytes` | gauge | – |
//! | `presenced_replication_frames_total` | counter | `peer` (node id), `direction` (`in`, `out`) |
//! | `presenced_replication_lag_seconds` | gauge | `peer` (node id) |
//!
//! The replication families are raised to the link's own per-peer counts at each scrape
//! ([`Metrics::replication_frames`], [`Metrics::replication_lag`]); their `peer` values are
//! node ids, so their cardinality is bounded by the cluster's size.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// The content type of [`Metrics::encode`]'s output (OpenMetrics text, which Prometheus
/// scrapes natively).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The SIP methods counted under their own name; anything else is `OTHER`.
const KNOWN_METHODS: [&str; 8] = [
    "PUBLISH",
    "SUBSCRIBE",
    "NOTIFY",
    "OPTIONS",
    "ACK",
    "INVITE",
    "MESSAGE",
    "REGISTER",
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: &'static str,
    status: u16,
}

/// A `[limits]` bound that was hit: the `limit` label of `presenced_limit_hits_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Limit {
    /// `[sip] max_message_size`: an oversized UDP datagram dropped or a TCP message refused.
    MessageSize,
    /// `max_body_size`: a PUBLISH body refused with 413.
    BodySize,
    /// `max_publications_per_presentity`: a new publication refused with 503.
    Publications,
    /// `max_subscriptions_per_presentity`: a new SUBSCRIBE refused with 403.
    Subscriptions,
    /// `mailbox_size`: a request refused with 503 (or a response or ACK dropped) because a
    /// mailbox was full.
    Mailbox,
    /// `max_server_transactions`: a request refused with 503 because the table was full.
    Transactions,
    /// `max_tcp_connections`: a TCP connection refused.
    TcpConnections,
    /// `tcp_idle_timeout`: an idle TCP connection closed.
    TcpIdle,
    /// `tcp_message_timeout`: a TCP connection closed because a message came too slowly.
    TcpSlow,
    /// `max_pending_notifies`: a new SUBSCRIBE refused with 503.
    PendingNotifies,
    /// `max_subscriptions_per_watcher`: a new SUBSCRIBE refused with 403.
    WatcherSubscriptions,
    /// `max_queue_delay_ms`: a request that waited too long in a queue refused with 503.
    QueueDelay,
    /// `max_presentities`: a request that would create one more presentity refused with 503.
    Presentities,
}

impl Limit {
    /// Every limit, in the order they are exposed.
    pub const ALL: [Limit; 13] = [
        Limit::MessageSize,
        Limit::BodySize,
        Limit::Publications,
        Limit::Subscriptions,
        Limit::Mailbox,
        Limit::Transactions,
        Limit::TcpConnections,
        Limit::TcpIdle,
        Limit::TcpSlow,
        Limit::PendingNotifies,
        Limit::WatcherSubscriptions,
        Limit::QueueDelay,
        Limit::Presentities,
    ];

    /// The label value (`message_size`, `tcp_slow`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Limit::MessageSize => "message_size",
            Limit::BodySize => "body_size",
            Limit::Publications => "publications",
            Limit::Subscriptions => "subscriptions",
            Limit::Mailbox => "mailbox",
            Limit::Transactions => "transactions",
            Limit::TcpConnections => "tcp_connections",
            Limit::TcpIdle => "tcp_idle",
            Limit::TcpSlow => "tcp_slow",
            Limit::PendingNotifies => "pending_notifies",
            Limit::WatcherSubscriptions => "watcher_subscriptions",
            Limit::QueueDelay => "queue_delay",
            Limit::Presentities => "presentities",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LimitLabels {
    limit: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PeerDirLabels {
    peer: String,
    direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PeerLabels {
    peer: String,
}

fn mailbox_histogram() -> Histogram {
    // 1, 2, 4, … 4096 messages.
    Histogram::new(exponential_buckets(1.0, 2.0, 13))
}

/// The node's metrics registry and its families.
pub struct Metrics {
    registry: Registry,
    sip_requests: Family<RequestLabels, Counter>,
    notify_sent: Counter,
    notify_retransmitted: Counter,
    passivations: Counter,
    notify_failed: Family<ReasonLabels, Counter>,
    limit_hits: Family<LimitLabels, Counter>,
    actors: Family<KindLabels, Gauge>,
    mailbox_depth: Family<KindLabels, Histogram, fn() -> Histogram>,
    store_flush: Histogram,
    rss: Gauge,
    replication_frames: Family<PeerDirLabels, Counter>,
    replication_lag: Family<PeerLabels, Gauge<f64, AtomicU64>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with every family registered and no samples yet.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let sip_requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "presenced_sip_requests",
            "SIP requests answered, by method and final status",
            sip_requests.clone(),
        );
        let notify_sent = Counter::default();
        registry.register(
            "presenced_notify_sent",
            "NOTIFY requests sent (first transmissions)",
            notify_sent.clone(),
        );
        let notify_retransmitted = Counter::default();
        registry.register(
            "presenced_notify_retransmitted",
            "NOTIFY retransmissions (Timer E over UDP)",
            notify_retransmitted.clone(),
        );
        let passivations = Counter::default();
        registry.register(
            "presenced_passivations",
            "Subscription dialogs passivated (actor stopped, dialog kept in compact form)",
            passivations.clone(),
        );
        let notify_failed = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "presenced_notify_failed",
            "NOTIFY transactions that failed, by reason",
            notify_failed.clone(),
        );
        let limit_hits = Family::<LimitLabels, Counter>::default();
        for l in Limit::ALL {
            // Present at 0 from the start, so a dashboard sees every limit.
            drop(limit_hits.get_or_create(&LimitLabels { limit: l.as_str() }));
        }
        registry.register(
            "presenced_limit_hits",
            "Requests refused, datagrams dropped or connections closed because a limit was hit",
            limit_hits.clone(),
        );
        let actors = Family::<KindLabels, Gauge>::default();
        registry.register("presenced_actors", "Live actors by kind", actors.clone());
        let mailbox_depth =
            Family::<KindLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                mailbox_histogram as fn() -> Histogram,
            );
        registry.register(
            "presenced_mailbox_depth",
            "Mailbox depth (messages sent to an actor and not yet handled), sampled at each scrape, by actor kind",
            mailbox_depth.clone(),
        );
        // 100 µs … ~3.3 s.
        let store_flush = Histogram::new(exponential_buckets(0.0001, 2.0, 16));
        registry.register(
            "presenced_store_flush_seconds",
            "Latency of one store flush",
            store_flush.clone(),
        );
        let rss = Gauge::default();
        registry.register(
            "presenced_process_resident_memory_bytes",
            "Resident set size of the process",
            rss.clone(),
        );
        let replication_frames = Family::<PeerDirLabels, Counter>::default();
        registry.register(
            "presenced_replication_frames",
            "Cluster frames exchanged with each peer (node id), by direction",
            replication_frames.clone(),
        );
        let replication_lag = Family::<PeerLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "presenced_replication_lag_seconds",
            "How far behind the last publications applied from each peer were (apply time \
             minus their HLC wall time); 0 after an anti-entropy exchange found nothing to repair",
            replication_lag.clone(),
        );
        Metrics {
            registry,
            sip_requests,
            notify_sent,
            notify_retransmitted,
            passivations,
            notify_failed,
            limit_hits,
            actors,
            mailbox_depth,
            store_flush,
            rss,
            replication_frames,
            replication_lag,
        }
    }

    /// Counts one SIP request answered with final `status` (call once per transaction, when
    /// its final response is sent). `method` is matched case-sensitively against the known
    /// methods; others count as `OTHER`.
    pub fn sip_request(&self, method: &str, status: u16) {
        let method = KNOWN_METHODS
            .iter()
            .copied()
            .find(|m| *m == method)
            .unwrap_or("OTHER");
        self.sip_requests
            .get_or_create(&RequestLabels { method, status })
            .inc();
    }

    /// Counts one NOTIFY sent (first transmission, not retransmissions).
    pub fn notify_sent(&self) {
        self.notify_sent.inc();
    }

    /// Counts one subscription dialog passivated.
    pub fn subscription_passivated(&self) {
        self.passivations.inc();
    }

    /// Counts one NOTIFY retransmission.
    pub fn notify_retransmitted(&self) {
        self.notify_retransmitted.inc();
    }

    /// Counts one failed NOTIFY transaction. `reason` must come from a small fixed set chosen
    /// by the caller (`timeout`, `transport`, `rejected` for a non-2xx final reply, …), never
    /// from network input.
    pub fn notify_failed(&self, reason: &str) {
        self.notify_failed
            .get_or_create(&ReasonLabels {
                reason: reason.to_string(),
            })
            .inc();
    }

    /// Counts one hit of `limit` (call once per refused request, dropped datagram or closed
    /// connection, where the limit is enforced).
    pub fn limit_hit(&self, limit: Limit) {
        self.limit_hits
            .get_or_create(&LimitLabels {
                limit: limit.as_str(),
            })
            .inc();
    }

    /// How many times `limit` was hit so far.
    pub fn limit_hits(&self, limit: Limit) -> u64 {
        self.limit_hits
            .get(&LimitLabels {
                limit: limit.as_str(),
            })
            .map(|c| c.get())
            .unwrap_or(0)
    }

    /// Adds `delta` (±) to the live-actor gauge of `kind` (for actor kinds the shards do not
    /// count themselves, e.g. `peer` or `tcp_connection`).
    pub fn actors_add(&self, kind: &str, delta: i64) {
        self.actors
            .get_or_create(&KindLabels {
                kind: kind.to_string(),
            })
            .inc_by(delta);
    }

    /// Sets the live-actor gauge of `kind` (the endpoint does this for `presentity`,
    /// `subscription` and `transaction` from the shards' counts at each scrape).
    pub fn set_actors(&self, kind: &str, n: i64) {
        self.actors
            .get_or_create(&KindLabels {
                kind: kind.to_string(),
            })
            .set(n);
    }

    /// The current live-actor gauge of `kind` (0 when never set).
    pub fn actors(&self, kind: &str) -> i64 {
        self.actors
            .get(&KindLabels {
                kind: kind.to_string(),
            })
            .map(|g| g.get())
            .unwrap_or(0)
    }

    /// Records a mailbox depth seen for an actor of `kind`.
    pub fn mailbox_depth(&self, kind: &str, depth: usize) {
        self.mailbox_depth
            .get_or_create(&KindLabels {
                kind: kind.to_string(),
            })
            .observe(depth as f64);
    }

    /// Records how long one store flush took.
    pub fn store_flush(&self, took: Duration) {
        self.store_flush.observe(took.as_secs_f64());
    }

    /// Raises the frame counters of `peer` (a node id) to the link's totals: frames received
    /// (`in`) and sent (`out`) since start. A total below the counter (a restarted link
    /// count) leaves it as it is: counters never go down.
    pub fn replication_frames(&self, peer: &str, frames_in: u64, frames_out: u64) {
        for (direction, total) in [("in", frames_in), ("out", frames_out)] {
            let c = self.replication_frames.get_or_create(&PeerDirLabels {
                peer: peer.to_string(),
                direction,
            });
            let seen = c.get();
            if total > seen {
                c.inc_by(total - seen);
            }
        }
    }

    /// Sets the replication lag of `peer` (a node id).
    pub fn replication_lag(&self, peer: &str, lag: Duration) {
        self.replication_lag
            .get_or_create(&PeerLabels {
                peer: peer.to_string(),
            })
            .set(lag.as_secs_f64());
    }

    /// Refreshes the process gauges (RSS from `/proc/self/status`); a no-op where `/proc`
    /// is missing.
    pub fn sample_process(&self) {
        if let Some(bytes) = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| rss_from_status(&s))
        {
            self.rss.set(i64::try_from(bytes).unwrap_or(i64::MAX));
        }
    }

    /// The whole registry in the OpenMetrics text format ([`CONTENT_TYPE`]).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail; an error here would only come from a metric's
        // own encoder, and then the partial text is still the best answer we have.
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            tracing::warn!("metrics encoding failed");
        }
        out
    }
}

/// `VmRSS:   12345 kB` → bytes. (`/proc/self/statm` counts pages, whose size would need
/// `sysconf`; `status` states kB.)
fn rss_from_status(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line
        .trim_start_matches("VmRSS:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    kb.checked_mul(1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_appear_with_labels() {
        let m = Metrics::new();
        m.sip_request("PUBLISH", 200);
        m.sip_request("PUBLISH", 200);
        m.sip_request("FOO", 405);
        m.notify_sent();
        m.notify_retransmitted();
        m.subscription_passivated();
        m.notify_failed("timeout");
        let text = m.encode();
        assert!(
            text.contains("presenced_sip_requests_total{method=\"PUBLISH\",status=\"200\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("presenced_sip_requests_total{method=\"OTHER\",status=\"405\"} 1"),
            "{text}"
        );
        assert!(text.contains("presenced_notify_sent_total 1"), "{text}");
        assert!(text.contains("presenced_notify_retransmitted_total 1"));
        assert!(text.contains("presenced_passivations_total 1"), "{text}");
        assert!(text.contains("presenced_notify_failed_total{reason=\"timeout\"} 1"));
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn limit_hits_are_counted_per_limit_and_all_exposed() {
        let m = Metrics::new();
        let text = m.encode();
        for l in Limit::ALL {
            let line = format!("presenced_limit_hits_total{{limit=\"{}\"}} 0", l.as_str());
            assert!(text.contains(&line), "{line} missing from {text}");
        }
        m.limit_hit(Limit::TcpSlow);
        m.limit_hit(Limit::TcpSlow);
        m.limit_hit(Limit::PendingNotifies);
        assert_eq!(m.limit_hits(Limit::TcpSlow), 2);
        assert_eq!(m.limit_hits(Limit::PendingNotifies), 1);
        assert_eq!(m.limit_hits(Limit::TcpIdle), 0);
        let text = m.encode();
        assert!(
            text.contains("presenced_limit_hits_total{limit=\"tcp_slow\"} 2"),
            "{text}"
        );
        assert!(text.contains("presenced_limit_hits_total{limit=\"pending_notifies\"} 1"));
        let labels: std::collections::HashSet<_> = Limit::ALL.iter().map(|l| l.as_str()).collect();
        assert_eq!(labels.len(), Limit::ALL.len(), "labels are distinct");
    }

    #[test]
    fn actor_gauges_add_and_set() {
        let m = Metrics::new();
        m.actors_add("peer", 2);
        m.actors_add("peer", -1);
        assert_eq!(m.actors("peer"), 1);
        m.set_actors("presentity", 7);
        assert_eq!(m.actors("presentity"), 7);
        assert_eq!(m.actors("never"), 0);
        assert!(m
            .encode()
            .contains("presenced_actors{kind=\"presentity\"} 7"));
    }

    #[test]
    fn replication_families_follow_the_link_counts() {
        let m = Metrics::new();
        m.replication_frames("node-2", 5, 3);
        m.replication_frames("node-2", 9, 3);
        m.replication_frames("node-2", 4, 2); // a lower total never lowers a counter
        m.replication_frames("node-3", 1, 0);
        m.replication_lag("node-2", Duration::from_millis(1500));
        let text = m.encode();
        for line in [
            "presenced_replication_frames_total{peer=\"node-2\",direction=\"in\"} 9",
            "presenced_replication_frames_total{peer=\"node-2\",direction=\"out\"} 3",
            "presenced_replication_frames_total{peer=\"node-3\",direction=\"in\"} 1",
            "presenced_replication_lag_seconds{peer=\"node-2\"} 1.5",
        ] {
            assert!(text.contains(line), "{line} missing from {text}");
        }
        m.replication_lag("node-2", Duration::ZERO);
        assert!(m
            .encode()
            .contains("presenced_replication_lag_seconds{peer=\"node-2\"} 0.0"));
    }

    #[test]
    fn histograms_count_observations() {
        let m = Metrics::new();
        m.mailbox_depth("presentity", 3);
        m.store_flush(Duration::from_millis(2));
        let text = m.encode();
        assert!(
            text.contains("presenced_mailbox_depth_count{kind=\"presentity\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("presenced_store_flush_seconds_count 1"),
            "{text}"
        );
    }

    #[test]
    fn rss_parsing() {
        let status = "Name:\tpresenced\nVmPeak:\t 9 kB\nVmRSS:\t    2048 kB\nThreads: 4\n";
        assert_eq!(rss_from_status(status), Some(2048 * 1024));
        assert_eq!(rss_from_status("VmRSS: lots\n"), None);
        assert_eq!(rss_from_status("Name: x\n"), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn process_sample_sets_rss() {
        let m = Metrics::new();
        m.sample_process();
        let text = m.encode();
        let line = text
            .lines()
            .find(|l| l.starts_with("presenced_process_resident_memory_bytes "))
            .unwrap_or_else(|| panic!("no rss line in {text}"));
        let v: u64 = line
            .rsplit(' ')
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        assert!(v > 1024 * 1024, "rss {v}");
    }
}
