//! Health, metrics and cluster routes: `/live`, `/ready`, `/metrics`, `/debug/cluster`.
//! `/ready` and `/metrics` ask the shards for their counts with a bounded wait
//! ([`STATS_TIMEOUT`]); neither can hang.
//!
//! Each `/metrics` scrape also refreshes what only the actors know, with bounded work: the
//! mailbox depths of [`MAILBOX_SAMPLE_TOTAL`] presentity actors spread over the shards (at
//! least 1, at most [`MAILBOX_SAMPLE_PER_SHARD`] per shard), observed into
//! `presenced_mailbox_depth{kind="presentity"}`, and the replication counts and lag per
//! peer from the cluster view.

use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use serde_json::json;

use super::{json, AppState};
use crate::actors::inspect::ShardStats;
use crate::api::NodeApi;

/// How long `/ready` and `/metrics` wait for all shards' counts.
pub(crate) const STATS_TIMEOUT: Duration = Duration::from_secs(2);

/// Most presentity actors per shard whose mailbox depth one scrape observes.
pub(crate) const MAILBOX_SAMPLE_PER_SHARD: usize = 1000;
/// Most presentity actors in all whose mailbox depth one scrape observes.
pub(crate) const MAILBOX_SAMPLE_TOTAL: usize = 10_000;

/// Summed counts over the shards, or why there are none.
pub(crate) async fn stats(api: &NodeApi) -> Result<Vec<ShardStats>, String> {
    match tokio::time::timeout(STATS_TIMEOUT, api.stats()).await {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("shards did not answer within {STATS_TIMEOUT:?}")),
    }
}

/// Totals of `(presentities, subscriptions, transactions)`.
pub(crate) fn totals(s: &[ShardStats]) -> (usize, usize, usize) {
    s.iter().fold((0, 0, 0), |(p, d, t), x| {
        (p + x.presentities, d + x.subscriptions, t + x.transactions)
    })
}

/// `GET /live`.
pub(crate) async fn live() -> HttpResponse {
    json(StatusCode::OK, &json!({ "live": true }))
}

/// `GET /ready`: 200 when every shard answers.
pub(crate) async fn ready(state: web::Data<AppState>) -> HttpResponse {
    let node = state.api.node_id().to_string();
    // With the cluster enabled, ready also means joined: at least one peer up (a node whose
    // seed list is empty is the first of its cluster and is ready alone).
    let cluster = state.api.cluster().await.ok().flatten();
    let joined = cluster
        .as_ref()
        .is_none_or(|c| c.peers.is_empty() || c.peers.iter().any(|p| p.state == "up"));
    if !joined {
        return json(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({ "ready": false, "node": node, "reason": "cluster not joined: no peer is up yet" }),
        );
    }
    match stats(&state.api).await {
        Ok(s) => {
            let (p, d, t) = totals(&s);
            json(
                StatusCode::OK,
                &json!({
                    "ready": true,
                    "cluster": cluster.map(|c| c.peers.iter().filter(|p| p.state == "up").count()),
                    "node": node,
                    "shards": s.len(),
                    "presentities": p,
                    "subscriptions": d,
                    "transactions": t,
                }),
            )
        }
        Err(reason) => json(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({ "ready": false, "node": node, "reason": reason }),
        ),
    }
}

/// `GET /metrics`: refreshes the sampled gauges, then encodes the registry.
pub(crate) async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    let m = &state.metrics;
    if let Ok(s) = stats(&state.api).await {
        let (p, d, t) = totals(&s);
        m.set_actors("presentity", i64::try_from(p).unwrap_or(i64::MAX));
        let z: usize = s.iter().map(|x| x.passivated).sum();
        m.set_actors(
            "subscription",
            i64::try_from(d - z.min(d)).unwrap_or(i64::MAX),
        );
        m.set_actors(
            "subscription_passivated",
            i64::try_from(z).unwrap_or(i64::MAX),
        );
        m.set_actors("transaction", i64::try_from(t).unwrap_or(i64::MAX));
    }
    sample_mailboxes(&state.api, m).await;
    if let Ok(Ok(Some(view))) = tokio::time::timeout(STATS_TIMEOUT, state.api.cluster()).await {
        for p in view.peers {
            let Some(id) = p.id else { continue }; // a seed that never answered
            m.replication_frames(&id, p.frames_in, p.frames_out);
            if let Some(lag) = p.lag_ms {
                m.replication_lag(&id, Duration::from_millis(lag));
            }
        }
    }
    m.sample_process();
    HttpResponse::Ok()
        .content_type(crate::metrics::CONTENT_TYPE)
        .body(m.encode())
}

/// Observes the mailbox depths of a bounded sample of presentity actors (busy ones, whose
/// depth is unknown, are not observed).
async fn sample_mailboxes(api: &NodeApi, m: &crate::metrics::Metrics) {
    let per_shard = sample_per_shard(api.shard_count());
    let Ok(Ok(samples)) = tokio::time::timeout(STATS_TIMEOUT, api.mailbox_depths(per_shard)).await
    else {
        return;
    };
    for depth in samples.into_iter().flat_map(|s| s.presentity) {
        m.mailbox_depth("presentity", usize::try_from(depth).unwrap_or(usize::MAX));
    }
}

/// Actors sampled per shard: [`MAILBOX_SAMPLE_TOTAL`] spread over the shards, at least one,
/// at most [`MAILBOX_SAMPLE_PER_SHARD`].
fn sample_per_shard(shards: usize) -> usize {
    (MAILBOX_SAMPLE_TOTAL / shards.max(1)).clamp(1, MAILBOX_SAMPLE_PER_SHARD)
}

/// `GET /debug/cluster`: this node, its peers (link and membership state, RTT, last contact,
/// frames in/out, records applied, last in-sync exchange), the membership summary and the
/// replicated view's size.
pub(crate) async fn cluster(state: web::Data<AppState>) -> HttpResponse {
    match state.api.cluster().await {
        Ok(Some(view)) => json(StatusCode::OK, &json!(view)),
        Ok(None) => json(
            StatusCode::OK,
            &json!({
                "node": state.api.node_id().to_string(),
                "enabled": false,
                "peers": [],
            }),
        ),
        Err(e) => json(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({"error": e.to_string()}),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_sum_every_shard() {
        let s = [
            ShardStats {
                presentities: 2,
                subscriptions: 3,
                passivated: 1,
                transactions: 1,
                last_activity: 0,
            },
            ShardStats {
                presentities: 5,
                subscriptions: 0,
                passivated: 0,
                transactions: 4,
                last_activity: 9,
            },
        ];
        assert_eq!(totals(&s), (7, 3, 5));
        assert_eq!(totals(&[]), (0, 0, 0));
    }

    #[test]
    fn mailbox_sampling_is_bounded() {
        assert_eq!(sample_per_shard(1), MAILBOX_SAMPLE_PER_SHARD);
        assert_eq!(sample_per_shard(4), MAILBOX_SAMPLE_PER_SHARD);
        assert_eq!(sample_per_shard(512), 19);
        assert_eq!(sample_per_shard(65_536), 1);
        assert_eq!(sample_per_shard(0), MAILBOX_SAMPLE_PER_SHARD);
        for shards in [1, 2, 16, 512, 4096] {
            assert!(sample_per_shard(shards) * shards <= MAILBOX_SAMPLE_TOTAL.max(shards));
        }
    }
}
