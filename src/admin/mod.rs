//! The debug/admin HTTP endpoint (SPEC §5): health, Prometheus metrics, live-state inspection
//! and JSON-RPC 2.0 with Kamailio's method names, served by actix-web inside the node's actix
//! System. [`start`] binds it; everything it shows comes through [`NodeApi`] (messages to the
//! shards, never shared locks) and [`Metrics`].
//!
//! # Routes
//!
//! | route | answer |
//! |---|---|
//! | `GET /live` | 200 `{"live": true}` while the process serves HTTP |
//! | `GET /ready` | 200 when every shard answers a stats call (`{"ready": true, …counts}`), 503 otherwise |
//! | `GET /metrics` | Prometheus/OpenMetrics text ([`crate::metrics`]) |
//! | `GET /debug/actors[?kind=&limit=&cursor=]` | counts by kind; with `kind` (`presentity`, `subscription`) a paged list of actors (presentities with their `mailbox_depth`) |
//! | `GET /debug/presentities[?uri=&event=&limit=&cursor=]` | paged presentity views (publications, composed document) |
//! | `GET /debug/presentities/{uri}/{event}` | one presentity (404 when it has no actor) |
//! | `GET /debug/subscriptions[?presentity=&watcher=&event=&limit=&cursor=]` | paged subscription views (every `$subs(…)` attribute) |
//! | `GET /debug/subscriptions/{id}` | one subscription by our tag (the To-tag of its 2xx) |
//! | `GET /debug/events[?presentity=]` | Server-Sent Events: PUBLISH applied, NOTIFY sent / answered, subscriptions created / refreshed / terminated |
//! | `GET /debug/cluster` | this node and its peers: link state, membership state (SWIM), RTT, last contact, frames, records applied, last in-sync exchange |
//! | `POST /rpc` | JSON-RPC 2.0 ([`rpc`]); methods in [`rpc_methods`] |
//!
//! Invariants:
//! * Nothing hangs: every actor answers within
//!   [`crate::actors::inspect::SNAPSHOT_TIMEOUT`] or shows as `{"key": …, "state": "busy"}`.
//! * Lists are paged: `limit` defaults to 100, at most 1000 (larger values are clamped);
//!   `next_cursor` (opaque) walks the rest, each item exactly once in key order. Paging is
//!   done at the source: a page snapshots at most `limit` actors whatever their number
//!   ([`crate::actors::inspect`]); a page's snapshots are asked for all at once.
//! * Paths carry percent-encoded URIs (`/debug/presentities/sip%3Aalice%40example.com/presence`).
//! * Request bodies are limited to [`MAX_BODY`] bytes.
//! * With a token configured, every request needs `Authorization: Bearer <token>` (compared in
//!   constant time; 401 otherwise). The token is never logged. A non-loopback address without
//!   a token is refused.
//! * Handlers never block the thread they run on (they only await messages), and one
//!   request waits for the node at most [`REQUEST_TIMEOUT`].

mod events;
mod health;
mod inspect;
mod page;
pub mod rpc;
pub mod rpc_methods;

use std::future::Future;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::dev::{ServerHandle, ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::middleware::{from_fn, Next};
use actix_web::{web, App, HttpResponse, HttpServer, ResponseError};
use serde::Serialize;

use crate::api::{ApiError, NodeApi};
use crate::metrics::Metrics;

/// Largest request body accepted (bytes).
pub const MAX_BODY: usize = 64 * 1024;

/// The longest one request waits for the node: a listing visits the actors one by one, each
/// within its snapshot timeout, so many busy actors could otherwise add up.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The running endpoint.
pub struct AdminServer {
    addr: SocketAddr,
    handle: ServerHandle,
}

impl AdminServer {
    /// The address actually bound (useful with port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting and finishes in-flight requests (bounded by a 1 s shutdown timeout).
    pub async fn stop(self) {
        self.handle.stop(true).await;
    }
}

/// What the handlers share.
#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) api: NodeApi,
    pub(crate) metrics: Arc<Metrics>,
    token: Option<Arc<str>>,
}

/// Binds `listen` and serves the endpoint on the current actix System (call it from inside
/// one: the node's, or a test's). Refuses a non-loopback address without a token.
pub fn start(
    listen: SocketAddr,
    token: Option<String>,
    api: NodeApi,
    metrics: Arc<Metrics>,
) -> io::Result<AdminServer> {
    let listener = bind(listen, token.as_deref())?;
    serve(listener, token, api, metrics)
}

/// The first half of [`start`], for a composition root that binds every socket before it
/// starts anything: binds `listen`, refusing a non-loopback address without a token.
pub fn bind(listen: SocketAddr, token: Option<&str>) -> io::Result<TcpListener> {
    if !listen.ip().is_loopback() && token.is_none() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("admin endpoint on non-loopback {listen} needs [admin] token"),
        ));
    }
    TcpListener::bind(listen)
}

/// The second half of [`start`]: serves on `listener` (from [`bind`]) on the current actix
/// System.
pub fn serve(
    listener: TcpListener,
    token: Option<String>,
    api: NodeApi,
    metrics: Arc<Metrics>,
) -> io::Result<AdminServer> {
    let has_token = token.is_some();
    let state = AppState {
        api,
        metrics,
        token: token.map(Arc::from),
    };
    let server = HttpServer::new(move || {
        App::new()
            .app_data(web::Data::new(state.clone()))
            .app_data(web::PayloadConfig::new(MAX_BODY))
            .app_data(web::QueryConfig::default().error_handler(|e, _| {
                HttpError::BadRequest(format!("bad query string: {e}")).into()
            }))
            .wrap(from_fn(require_token))
            .configure(routes)
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(1)
    .listen(listener)?;
    let addr = server
        .addrs()
        .first()
        .copied()
        .ok_or_else(|| io::Error::other("admin listener has no address"))?;
    let server = server.run();
    let handle = server.handle();
    actix_rt::spawn(server);
    tracing::info!(%addr, token_required = has_token, "admin endpoint listening");
    Ok(AdminServer { addr, handle })
}

fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/live", web::get().to(health::live))
        .route("/ready", web::get().to(health::ready))
        .route("/metrics", web::get().to(health::metrics))
        .route("/debug/cluster", web::get().to(health::cluster))
        .route("/debug/events", web::get().to(events::events))
        .route("/debug/actors", web::get().to(inspect::actors))
        .route("/debug/presentities", web::get().to(inspect::presentities))
        .route(
            "/debug/presentities/{uri}/{event}",
            web::get().to(inspect::presentity),
        )
        .route(
            "/debug/subscriptions",
            web::get().to(inspect::subscriptions),
        )
        .route(
            "/debug/subscriptions/{id}",
            web::get().to(inspect::subscription),
        )
        .route("/rpc", web::post().to(rpc::serve))
        .default_service(web::to(|| async {
            HttpError::NotFound(
                "no such route (see GET /live, /ready, /metrics, /debug/…, POST /rpc)".into(),
            )
            .error_response()
        }));
}

/// Rejects a request without the right bearer token (when one is configured).
async fn require_token(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let expected = req
        .app_data::<web::Data<AppState>>()
        .and_then(|s| s.token.clone());
    if let Some(expected) = expected {
        let given = req
            .headers()
            .get(actix_web::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        let ok = given.is_some_and(|g| constant_time_eq(g.as_bytes(), expected.as_bytes()));
        if !ok {
            let resp = HttpError::Unauthorized.error_response();
            return Ok(req.into_response(resp).map_into_right_body());
        }
    }
    Ok(next.call(req).await?.map_into_left_body())
}

/// Compares without an early exit on the first differing byte (the length still shows).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = u8::from(a.len() != b.len());
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= x ^ y;
    }
    diff == 0
}

/// An endpoint error, answered as `{"error": "<message>"}` with its HTTP status.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HttpError {
    /// Malformed query or path.
    #[error("{0}")]
    BadRequest(String),
    /// No such thing.
    #[error("{0}")]
    NotFound(String),
    /// Missing or wrong bearer token.
    #[error("missing or wrong bearer token")]
    Unauthorized,
    /// The node did not answer.
    #[error("{0}")]
    Unavailable(String),
}

impl From<ApiError> for HttpError {
    fn from(e: ApiError) -> Self {
        match e {
            ApiError::BadUri(_) | ApiError::UnknownEvent(_) => HttpError::BadRequest(e.to_string()),
            ApiError::Unavailable => HttpError::Unavailable(e.to_string()),
        }
    }
}

impl ResponseError for HttpError {
    fn status_code(&self) -> StatusCode {
        match self {
            HttpError::BadRequest(_) => StatusCode::BAD_REQUEST,
            HttpError::NotFound(_) => StatusCode::NOT_FOUND,
            HttpError::Unauthorized => StatusCode::UNAUTHORIZED,
            HttpError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut resp = HttpResponse::build(self.status_code());
        if matches!(self, HttpError::Unauthorized) {
            resp.insert_header((actix_web::http::header::WWW_AUTHENTICATE, "Bearer"));
        }
        resp.json(serde_json::json!({ "error": self.to_string() }))
    }
}

/// `fut` bounded by [`REQUEST_TIMEOUT`] (a timeout counts as the node being unavailable).
pub(crate) async fn bounded<T>(
    fut: impl Future<Output = Result<T, ApiError>>,
) -> Result<T, ApiError> {
    tokio::time::timeout(REQUEST_TIMEOUT, fut)
        .await
        .unwrap_or(Err(ApiError::Unavailable))
}

/// A JSON answer with `status`.
pub(crate) fn json<T: Serialize>(status: StatusCode, body: &T) -> HttpResponse {
    HttpResponse::build(status).json(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_comparison() {
        assert!(constant_time_eq(b"s3cret", b"s3cret"));
        assert!(!constant_time_eq(b"s3cret", b"s3creT"));
        assert!(!constant_time_eq(b"s3cret", b"s3cre"));
        assert!(!constant_time_eq(b"", b"x"));
        assert!(constant_time_eq(b"", b""));
        // A prefix padded with NULs must not pass.
        assert!(!constant_time_eq(b"ab\0", b"ab"));
    }

    #[test]
    fn api_errors_map_to_statuses() {
        let e: HttpError = ApiError::BadUri("x".into()).into();
        assert_eq!(e.status_code(), StatusCode::BAD_REQUEST);
        let e: HttpError = ApiError::Unavailable.into();
        assert_eq!(e.status_code(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            HttpError::Unauthorized.status_code(),
            StatusCode::UNAUTHORIZED
        );
    }
}
