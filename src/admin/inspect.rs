//! Live-state routes: `/debug/actors`, `/debug/presentities[/{uri}/{event}]`,
//! `/debug/subscriptions[/{id}]`. Views come from [`crate::actors::inspect`] through
//! [`NodeApi`]; lists are cut by [`super::page`]. A busy actor is listed as
//! `{"key": …, "state": "busy"}` (a single-item route answers it with 503).

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Value};

use super::health::{stats, totals};
use super::page::{Page, PageQuery};

use super::{bounded, json, AppState, HttpError};
use crate::actors::inspect::{
    PageRequest, PresentityFilter, PresentityView, Snapshot, SubscriptionFilter, SubscriptionView,
};
use crate::api::NodeApi;

/// The actor kinds `/debug/actors?kind=` lists.
const LISTED_KINDS: [&str; 2] = ["presentity", "subscription"];

/// `?kind=&limit=&cursor=`.
#[derive(Debug, Deserialize)]
pub(crate) struct ActorsQuery {
    kind: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
}

/// `?uri=&event=&limit=&cursor=`.
#[derive(Debug, Deserialize)]
pub(crate) struct PresentitiesQuery {
    uri: Option<String>,
    event: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
}

/// `?presentity=&watcher=&event=&limit=&cursor=`.
#[derive(Debug, Deserialize)]
pub(crate) struct SubscriptionsQuery {
    presentity: Option<String>,
    watcher: Option<String>,
    event: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
}

/// Parses the optional filter values of a presentity listing.
pub(crate) fn presentity_filter(
    api: &NodeApi,
    uri: Option<&str>,
    event: Option<&str>,
) -> Result<PresentityFilter, HttpError> {
    Ok(PresentityFilter {
        uri: uri.map(|u| api.presentity(u)).transpose()?,
        event: event.map(|e| api.event(e)).transpose()?,
    })
}

/// `GET /debug/actors`.
pub(crate) async fn actors(
    state: web::Data<AppState>,
    q: web::Query<ActorsQuery>,
) -> Result<HttpResponse, HttpError> {
    let api = &state.api;
    let Some(kind) = q.kind.as_deref() else {
        let s = stats(api).await.map_err(HttpError::Unavailable)?;
        let (p, d, t) = totals(&s);
        let z: usize = s.iter().map(|x| x.passivated).sum();
        let (udp, tcp) = api.transport();
        let cluster = api.cluster().await.ok().flatten();
        let peers = cluster.as_ref().map_or((0, 0), |c| {
            let up = c.peers.iter().filter(|p| p.state == "up").count();
            (up, c.peers.len() - up)
        });
        return Ok(json(
            StatusCode::OK,
            &json!({
                "node": api.node_id().to_string(),
                "kinds": {
                    "presentity": { "live": p },
                    "subscription": { "live": d - z.min(d), "passivated": z },
                    "transaction": { "live": t },
                    "shard": { "live": s.len() },
                    "replication": { "live": usize::from(cluster.is_some()) },
                    "peer": { "live": peers.0, "down": peers.1 },
                    "transport": { "udp_listener": udp, "tcp_connection": tcp },
                },
                "shards": s,
            }),
        ));
    };
    let page = PageQuery::of(q.limit, q.cursor.as_deref()).request()?;
    let body: Page<Value> = match kind {
        "presentity" => Page::of(
            bounded(api.presentities(PresentityFilter::default(), page)).await?,
            |_, s| presentity_actor(s),
        ),
        "subscription" => Page::of(
            bounded(api.subscriptions(SubscriptionFilter::default(), page)).await?,
            |_, s| subscription_actor(s),
        ),
        other => {
            return Err(HttpError::BadRequest(format!(
                "unknown actor kind {other:?} (listed kinds: {})",
                LISTED_KINDS.join(", ")
            )))
        }
    };
    Ok(json(StatusCode::OK, &body))
}

fn presentity_actor(s: Snapshot<PresentityView>) -> Value {
    match s {
        Snapshot::Ready(v) => json!({
            "kind": "presentity",
            "key": format!("{} {}", v.uri, v.event),
            "state": "ready",
            "publications": v.publications.len(),
            "watchers": v.watchers,
            "handled": v.handled,
            "mailbox_depth": v.mailbox_depth,
            "last_activity": v.last_activity,
            "started_at": v.started_at,
        }),
        busy => busy_value("presentity", busy_key(&busy)),
    }
}

fn subscription_actor(s: Snapshot<SubscriptionView>) -> Value {
    match s {
        Snapshot::Ready(v) => json!({
            "kind": "subscription",
            "key": v.id,
            "state": v.status,
            "presentity": v.pres_uri,
            "event": v.event,
            "notify_in_flight": v.notify_in_flight,
            "last_activity": v.last_activity,
            "started_at": v.started_at,
            "passivated": v.passivated,
        }),
        busy => busy_value("subscription", busy_key(&busy)),
    }
}

fn busy_key<T>(s: &Snapshot<T>) -> String {
    match s {
        Snapshot::Busy { key, .. } => key.clone(),
        Snapshot::Ready(_) => String::new(),
    }
}

fn busy_value(kind: &str, key: String) -> Value {
    json!({ "kind": kind, "key": key, "state": "busy" })
}

/// `GET /debug/presentities`.
pub(crate) async fn presentities(
    state: web::Data<AppState>,
    q: web::Query<PresentitiesQuery>,
) -> Result<HttpResponse, HttpError> {
    let filter = presentity_filter(&state.api, q.uri.as_deref(), q.event.as_deref())?;
    let page = PageQuery::of(q.limit, q.cursor.as_deref()).request()?;
    let list = bounded(state.api.presentities(filter, page)).await?;
    Ok(json(StatusCode::OK, &Page::of(list, |_, s| s)))
}

/// `GET /debug/presentities/{uri}/{event}`.
pub(crate) async fn presentity(
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, HttpError> {
    let (uri, event) = path.into_inner();
    let filter = presentity_filter(&state.api, Some(&uri), Some(&event))?;
    let found = bounded(state.api.presentities(filter, PageRequest::first(1)))
        .await?
        .items
        .into_iter()
        .next()
        .map(|(_, s)| s);
    single(found, || format!("no presentity {uri} for event {event}"))
}

/// `GET /debug/subscriptions`.
pub(crate) async fn subscriptions(
    state: web::Data<AppState>,
    q: web::Query<SubscriptionsQuery>,
) -> Result<HttpResponse, HttpError> {
    let api = &state.api;
    let filter = SubscriptionFilter {
        presentity: q
            .presentity
            .as_deref()
            .map(|u| api.presentity(u))
            .transpose()?,
        watcher: q
            .watcher
            .as_deref()
            .map(|u| api.presentity(u))
            .transpose()?,
        event: q.event.as_deref().map(|e| api.event(e)).transpose()?,
        id: None,
    };
    let page = PageQuery::of(q.limit, q.cursor.as_deref()).request()?;
    let list = bounded(api.subscriptions(filter, page)).await?;
    Ok(json(StatusCode::OK, &Page::of(list, |_, s| s)))
}

/// `GET /debug/subscriptions/{id}`.
pub(crate) async fn subscription(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, HttpError> {
    let id = path.into_inner();
    let filter = SubscriptionFilter {
        id: Some(id.clone()),
        ..SubscriptionFilter::default()
    };
    let found = bounded(state.api.subscriptions(filter, PageRequest::first(1)))
        .await?
        .items
        .into_iter()
        .next()
        .map(|(_, s)| s);
    single(found, || format!("no subscription with id {id}"))
}

/// 200 with the view, 503 with the busy marker, 404 when absent.
fn single<T: serde::Serialize>(
    found: Option<Snapshot<T>>,
    missing: impl FnOnce() -> String,
) -> Result<HttpResponse, HttpError> {
    match found {
        Some(s @ Snapshot::Ready(_)) => Ok(json(StatusCode::OK, &s)),
        Some(s @ Snapshot::Busy { .. }) => Ok(HttpResponse::ServiceUnavailable()
            .insert_header(("Retry-After", "1"))
            .json(s)),
        None => Err(HttpError::NotFound(missing())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_snapshots_keep_their_key() {
        let s: Snapshot<PresentityView> = Snapshot::Busy {
            key: "sip:a@b presence".into(),
            state: "busy",
        };
        let v = presentity_actor(s);
        assert_eq!(v["state"], "busy");
        assert_eq!(v["key"], "sip:a@b presence");
        assert_eq!(v["kind"], "presentity");
    }

    #[test]
    fn single_answers_by_snapshot_state() {
        let busy: Snapshot<u32> = Snapshot::Busy {
            key: "k".into(),
            state: "busy",
        };
        let r = single(Some(busy), String::new).unwrap();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        let r = single(Some(Snapshot::Ready(1u32)), String::new).unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let e = single::<u32>(None, || "gone".into()).unwrap_err();
        assert_eq!(e.to_string(), "gone");
    }
}
