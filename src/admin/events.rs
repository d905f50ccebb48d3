//! `GET /debug/events[?presentity=URI]`: a Server-Sent-Events stream of what happens on the
//! node (PUBLISH applied, NOTIFY sent and answered, subscriptions created / refreshed /
//! terminated), one JSON object per `data:` line. A listener too slow to keep up is told how
//! many events it missed (`event: lagged`); the node never waits for it.

use actix_web::{web, HttpResponse};
use bytes::Bytes;
use futures_util::stream;
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;

use super::AppState;

#[derive(Deserialize)]
pub(crate) struct EventsQuery {
    presentity: Option<String>,
}

pub(crate) async fn events(state: web::Data<AppState>, q: web::Query<EventsQuery>) -> HttpResponse {
    let filter = match q.presentity.as_deref().map(|u| state.api.presentity(u)) {
        Some(Ok(uri)) => Some(uri.to_string()),
        Some(Err(e)) => return HttpResponse::BadRequest().body(e.to_string()),
        None => None,
    };
    let rx = state.api.events();
    // A comment line first so clients see the stream open at once.
    let hello = stream::iter([Ok::<Bytes, actix_web::Error>(Bytes::from_static(
        b": presenced events\n\n",
    ))]);
    let body = stream::unfold((rx, filter), |(mut rx, filter)| async move {
        loop {
            match rx.recv().await {
                Ok(e) => {
                    if filter.as_deref().is_some_and(|f| f != e.presentity) {
                        continue;
                    }
                    let json = serde_json::to_string(&*e).unwrap_or_default();
                    let chunk = Bytes::from(format!("event: {}\ndata: {json}\n\n", e.kind));
                    return Some((Ok(chunk), (rx, filter)));
                }
                Err(RecvError::Lagged(n)) => {
                    let chunk = Bytes::from(format!("event: lagged\ndata: {{\"missed\":{n}}}\n\n"));
                    return Some((Ok(chunk), (rx, filter)));
                }
                Err(RecvError::Closed) => return None,
            }
        }
    });
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("Cache-Control", "no-cache"))
        .streaming(futures_util::StreamExt::chain(hello, body))
}
