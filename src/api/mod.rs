//! The admin API (axum 0.8) under `/v1`: log in, campaigns and their actions, contacts
//! (CRUD, CSV import, manual retry), exports as background jobs, reports with the heat map,
//! the DNC list and business-hours schedules, and the OpenAPI document describing all of it
//! at `/v1/openapi.json`.
//!
//! The seam for whoever runs it (`outdial serve`): build an [`AppState`] from the opened
//! [`Store`], the campaign engine's wake-up [`Notify`] and a folder for export files, then
//! either `serve(listener, state, shutdown)` or mount [`router`] yourself:
//!
//! ```no_run
//! # async fn run(store: outdial::store::Store) -> std::io::Result<()> {
//! use std::sync::Arc;
//! let engine = Arc::new(tokio::sync::Notify::new()); // the engine waits on it
//! let state = outdial::api::AppState::new(store, engine, "exports".into());
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! outdial::api::serve(listener, state, async { tokio::signal::ctrl_c().await.ok(); }).await
//! # }
//! ```
//!
//! Every change an engine must see (campaign created, edited, started, paused…, contacts
//! added, retried, imported; schedules edited) calls `engine.notify_one()` once the store
//! has it: the engine re-reads the store, so settings apply to queued calls at once.
//!
//! Every route but `GET /healthz` (and `POST /v1/login`, which checks its own credentials, and
//! the web page at `/` with its assets and cookie login, [`crate::web`])
//! needs `Authorization: Bearer <API key or session token>` or the web page's session cookie
//! with its CSRF token; unknown paths answer 401 too
//! before they answer 404, so nothing can be probed without a key.
//!
//! Accounts: every object (campaign and what hangs off it, schedule, DNC entry, agent,
//! pool, AI agent, phone number, media file, export, live call) belongs to one account, and every route
//! reads and changes only the caller's: another account's id answers 404 with the same body
//! as an id that does not exist. Campaign-scoped routes go through
//! [`campaigns::load`], which is where the check lives for them.
//!
//! [`serve`] guards the listener with [`ApiLimits`]: a header-read timeout (a client that
//! sends half a request and stalls is disconnected), an idle timeout between request body
//! chunks, a cap on open connections (the next one is answered 503 and closed), and it
//! purges expired sessions every few minutes.
//!
//! What it must not do: dial, decide campaign state beyond the guides' action rules
//! (`campaign::apply_action`), hold a CSV upload in memory (it is streamed into the
//! importer), block the runtime on file I/O, or log keys, tokens or request bodies.
//!
//! One file per group of routes: [`auth`], [`keys`] (API keys and logins), [`campaigns`],
//! [`contacts`], [`import`],
//! [`exports`], [`reports`], [`dnc`], [`schedules`], [`media`] (WAV uploads and attempt
//! recordings), [`agents`] (SIP agents and pools), [`ai_agents`] (AI voice agents),
//! [`goals`] (goals, analyses and agents' reports about attempts), [`node`] (this node's state),
//! [`numbers`] (the account's phone numbers), [`trunks`] (the SIP trunks and their health),
//! [`events`] (every call's events and campaign changes, by cursor), [`live`] (the live
//! monitor's event stream), [`metrics`] (Prometheus), [`webhooks`] (where events are sent);
//! [`error`] holds the one error shape
//! and the extractors, [`openapi`] the document and the schemas of the model's words.

pub mod agents;
pub mod ai_agents;
pub mod auth;
pub mod calls;
pub mod campaigns;
pub mod contacts;
pub mod dnc;
pub mod error;
pub mod events;
pub mod exports;
pub mod goals;
pub mod import;
pub mod keys;
pub mod live;
pub mod media;
pub mod metrics;
pub mod node;
pub mod numbers;
pub mod openapi;
pub mod reports;
pub mod schedules;
pub mod trunks;
pub mod twilio;
pub mod webhooks;

use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, DefaultBodyLimit};
use axum::http::{Method, StatusCode, Uri};
use axum::middleware;
use axum::Router;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;
use tokio::sync::{Notify, Semaphore};
use utoipa::{IntoParams, ToSchema};

pub use error::{ApiError, ApiJson, ApiPath, ApiQuery, ApiResult, ErrorBody};

use crate::campaign::model::Millis;
use crate::store::{Page, Store};

/// Largest JSON body accepted (the CSV import has its own limit,
/// [`ApiLimits::import_max_bytes`]: it is streamed).
pub const JSON_BODY_LIMIT: usize = 1024 * 1024;
/// How often `serve` purges expired sessions.
const SESSION_PURGE_EVERY: Duration = Duration::from_secs(300);
/// How long a stopping server waits for requests in flight.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// What the admin API allows a client (`[http]` in `outdial.toml`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiLimits {
    /// A connection must send a whole request head (request line and headers) within this,
    /// also while it idles between requests; else it is closed.
    pub header_read_timeout: Duration,
    /// The longest wait for the next chunk of a request body; the request then fails.
    pub body_timeout: Duration,
    /// Connections served at once; the next is answered 503 and closed.
    pub max_connections: usize,
    /// Largest CSV import body in bytes: 413 naming the limit, nothing imported.
    pub import_max_bytes: u64,
    /// Export jobs running at once (this process); one more answers 429.
    pub max_export_jobs: usize,
    /// Failed logins per client address per minute; then 429 with Retry-After
    /// (0: no limit).
    pub login_failures_per_minute: u32,
}

impl Default for ApiLimits {
    fn default() -> Self {
        ApiLimits {
            header_read_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            max_connections: 256,
            import_max_bytes: 100 * 1024 * 1024,
            max_export_jobs: 2,
            login_failures_per_minute: 10,
        }
    }
}

impl ApiLimits {
    /// The limits `[http]` configures.
    pub fn from_settings(http: &crate::config::HttpSettings) -> ApiLimits {
        ApiLimits {
            header_read_timeout: Duration::from_secs(http.header_read_timeout_secs),
            body_timeout: Duration::from_secs(http.body_timeout_secs),
            max_connections: http.max_connections,
            import_max_bytes: http.import_max_bytes,
            max_export_jobs: http.max_export_jobs,
            login_failures_per_minute: http.login_failures_per_minute,
        }
    }
}
/// How long a session from `POST /v1/login` lasts by default.
pub const DEFAULT_SESSION_TTL_MS: Millis = 12 * 3600 * 1000;
/// The most rows one page of a list may hold.
pub const MAX_LIMIT: i64 = 1000;
pub const DEFAULT_LIMIT: i64 = 50;

/// The wall clock in milliseconds, with an offset tests can move forward (session expiry,
/// schedule starts) without sleeping. Clones share the offset.
#[derive(Debug, Clone, Default)]
pub struct Clock {
    offset_ms: Arc<AtomicI64>,
}

impl Clock {
    pub fn system() -> Clock {
        Clock::default()
    }

    pub fn now(&self) -> Millis {
        let wall = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        wall.saturating_add(self.offset_ms.load(Ordering::Relaxed))
    }

    /// Moves this clock (and its clones) forward by `ms`.
    pub fn advance(&self, ms: Millis) {
        self.offset_ms.fetch_add(ms, Ordering::Relaxed);
    }
}

/// What every handler reaches: the store, the engine's wake-up, where export files go.
/// Cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState {
    pub store: Store,
    /// Notified after every change the campaign engine must look at.
    pub engine: Arc<Notify>,
    /// Export files are written here (created on first use).
    pub exports_dir: PathBuf,
    /// The media directory: WAV files campaigns name are looked up here, uploads go to
    /// each account's subfolder (see [`crate::config::media`]).
    pub media_dir: PathBuf,
    /// Lifetime of a login session.
    pub session_ttl_ms: Millis,
    pub clock: Clock,
    /// Calls in progress (the campaign engine registers them).
    pub live: crate::flow::control::LiveCalls,
    /// This node's name (`GET /v1/node`).
    pub node: String,
    /// When this state was made: the server's start (UTC ms).
    pub started_at: Millis,
    /// Timeouts and caps (see [`ApiLimits`]).
    pub limits: ApiLimits,
    /// Failed logins per client address.
    pub login_limiter: auth::LoginLimiter,
    /// One permit per export job running, [`ApiLimits::max_export_jobs`] in all.
    pub export_slots: Arc<Semaphore>,
    /// The trunks and their health (`GET /v1/trunks`).
    pub trunks: trunks::TrunkBoard,
    /// Calls' events as they are stored, and the calls in progress (`GET /v1/live`); `None`:
    /// this server records none.
    pub events: Option<crate::observe::events::EventBus>,
    /// The token a Prometheus scraper may send instead of an admin's key (`GET /metrics`).
    pub metrics_token: Option<crate::config::Secret>,
    /// Cancelled when the server stops: endless responses (the live monitor) end then.
    pub closing: tokio_util::sync::CancellationToken,
}

impl AppState {
    pub fn new(store: Store, engine: Arc<Notify>, exports_dir: PathBuf) -> AppState {
        AppState {
            store,
            engine,
            exports_dir,
            media_dir: PathBuf::from(crate::config::DEFAULT_MEDIA_DIR),
            session_ttl_ms: DEFAULT_SESSION_TTL_MS,
            clock: Clock::system(),
            live: crate::flow::control::LiveCalls::new(),
            node: "outdial".into(),
            started_at: Clock::system().now(),
            limits: ApiLimits::default(),
            login_limiter: auth::LoginLimiter::new(
                ApiLimits::default().login_failures_per_minute,
                60_000,
            ),
            export_slots: Arc::new(Semaphore::new(ApiLimits::default().max_export_jobs)),
            trunks: trunks::TrunkBoard::default(),
            events: None,
            metrics_token: None,
            closing: tokio_util::sync::CancellationToken::new(),
        }
    }

    /// The same state showing these profiles' trunks, with the health `ua` keeps.
    pub fn with_trunks(
        mut self,
        profiles: Vec<crate::config::Profile>,
        ua: Arc<crate::sip::UserAgent>,
    ) -> AppState {
        self.trunks = trunks::TrunkBoard {
            profiles: Arc::new(profiles),
            ua: Some(ua),
        };
        self
    }

    /// The same state naming this node (`GET /v1/node`).
    pub fn with_node(mut self, node: String) -> AppState {
        self.node = node;
        self
    }

    /// The same state with other limits.
    pub fn with_limits(mut self, limits: ApiLimits) -> AppState {
        self.limits = limits;
        self.login_limiter = auth::LoginLimiter::new(limits.login_failures_per_minute, 60_000);
        self.export_slots = Arc::new(Semaphore::new(limits.max_export_jobs));
        self
    }

    /// The same state sharing the engine's registry of live calls.
    /// The same state with a metrics token (`OUTDIAL_METRICS_TOKEN`).
    pub fn with_metrics_token(mut self, token: Option<crate::config::Secret>) -> AppState {
        self.metrics_token = token;
        self
    }

    /// The same state with the server's event bus (the live monitor reads it).
    pub fn with_events(mut self, events: crate::observe::events::EventBus) -> AppState {
        self.events = Some(events);
        self
    }

    pub fn with_live_calls(mut self, live: crate::flow::control::LiveCalls) -> AppState {
        self.live = live;
        self
    }

    /// The same state with the configured media directory (`[media] dir`).
    pub fn with_media_dir(mut self, media_dir: PathBuf) -> AppState {
        self.media_dir = media_dir;
        self
    }

    pub fn now(&self) -> Millis {
        self.clock.now()
    }

    /// Tells the campaign engine to re-read the store.
    pub fn wake_engine(&self) {
        self.engine.notify_one();
    }
}

/// The whole HTTP service: `/healthz`, `/v1/…`, JSON 404/405, the auth gate and the
/// request body timeout.
/// Where Prometheus scrapes ([`metrics`]).
pub const METRICS_PATH: &str = "/metrics";

pub fn router(state: AppState) -> Router {
    let body_timeout = state.limits.body_timeout;
    let (routes, _doc) = openapi::api_router().split_for_parts();
    // Twilio-compatible call control does its own (Basic) auth.
    routes
        .route(
            twilio::CALL_PATH,
            axum::routing::get(twilio::get_call).post(twilio::update_call),
        )
        .route(METRICS_PATH, axum::routing::get(metrics::get_metrics))
        // The web page at `/` and its cookie session.
        .merge(crate::web::router())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_auth,
        ))
        .layer(middleware::from_fn(log_request))
        .layer(DefaultBodyLimit::max(JSON_BODY_LIMIT))
        .layer(middleware::from_fn(
            move |req: axum::extract::Request, next: middleware::Next| {
                let req = req.map(|body| {
                    axum::body::Body::new(tower_http::timeout::TimeoutBody::new(body_timeout, body))
                });
                next.run(req)
            },
        ))
        .with_state(state)
}

/// Serves [`router`] on `listener` until `shutdown` completes, then lets requests in
/// flight finish (at most 30 s). Export jobs a previous run left unfinished are marked
/// failed first. Each connection is HTTP/1.1 under [`ApiLimits`]: its head must arrive
/// within the header-read timeout, and past `max_connections` a new one is answered 503
/// and closed. Expired sessions are purged at start and every five minutes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    match exports::fail_interrupted_exports(&state).await {
        Ok(0) => {}
        Ok(n) => tracing::warn!(
            jobs = n,
            "export jobs interrupted by the last stop marked failed"
        ),
        Err(e) => tracing::warn!(error = %e, "could not check for interrupted export jobs"),
    }
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "admin API listening");
    }
    let limits = state.limits;
    let closing = state.closing.clone();
    let purge = tokio::spawn(purge_sessions(state.clone()));
    let app = router(state);
    let connections = Arc::new(Semaphore::new(limits.max_connections));
    // Each connection's task holds a sender: once all are gone, every connection has ended.
    let (open_tx, mut all_closed) = tokio::sync::mpsc::channel::<()>(1);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of descriptors or an aborted handshake: wait a little, go on.
                    tracing::warn!(error = %e, "admin API accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            tokio::spawn(refuse_connection(stream, limits.max_connections));
            continue;
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let service =
            hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(ConnectInfo(peer));
                let mut app = app.clone();
                async move { tower_service::Service::call(&mut app, req).await }
            });
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
            // The live monitor's WebSocket (`GET /v1/live/ws`).
            .with_upgrades();
        let (closing, open) = (closing.clone(), open_tx.clone());
        tokio::spawn(async move {
            let mut connection = std::pin::pin!(connection);
            let ended = tokio::select! {
                ended = connection.as_mut() => ended,
                () = closing.cancelled() => {
                    // Requests in flight finish; then the connection closes.
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(e) = ended {
                tracing::debug!(error = %e, %peer, "admin API connection ended");
            }
            drop(permit);
            drop(open);
        });
    }
    drop(listener);
    purge.abort();
    closing.cancel();
    drop(open_tx);
    if tokio::time::timeout(SHUTDOWN_GRACE, all_closed.recv())
        .await
        .is_err()
    {
        tracing::warn!("admin API requests still in flight at shutdown were cut off");
    }
    Ok(())
}

/// Answers a connection over the cap with 503 (the JSON error) and closes it.
async fn refuse_connection(mut stream: tokio::net::TcpStream, cap: usize) {
    let body = serde_json::to_string(
        &ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "too_many_connections",
            format!("the server has {cap} connections open (http.max_connections); try again"),
        )
        .body(),
    )
    .unwrap_or_default();
    let head = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n",
        body.len()
    );
    let write = async {
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(body.as_bytes()).await?;
        stream.shutdown().await
    };
    let _ = tokio::time::timeout(Duration::from_secs(2), write).await;
}

/// Purges expired sessions (and stale staged imports) now and every few minutes.
async fn purge_sessions(state: AppState) {
    let mut every = tokio::time::interval(SESSION_PURGE_EVERY);
    loop {
        every.tick().await;
        match state.store.purge_sessions(state.now()).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(sessions = n, "expired sessions purged"),
            Err(e) => tracing::warn!(error = %e, "expired sessions not purged"),
        }
    }
}

async fn not_found(uri: Uri) -> ApiError {
    ApiError::not_found(format!("no route for {}", uri.path()))
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{method} is not allowed on {}", uri.path()),
    )
}

/// One line per request: method, path (no query: it may carry search text), status, time.
/// Headers and bodies are never logged (keys, tokens, contact data).
async fn log_request(
    req: axum::extract::Request,
    next: middleware::Next,
) -> axum::response::Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let started = std::time::Instant::now();
    let response = next.run(req).await;
    tracing::debug!(
        %method,
        %path,
        status = response.status().as_u16(),
        ms = started.elapsed().as_millis() as u64,
        "api request"
    );
    response
}

// ---------------------------------------------------------------------------------------
// Paging, shared by the lists.

/// `?limit=&offset=`: at most [`MAX_LIMIT`] rows from `offset`.
#[derive(Debug, Clone, Copy, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Rows per page, 1–1000 (default 50).
    pub limit: Option<i64>,
    /// Rows to skip (default 0).
    pub offset: Option<i64>,
}

impl PageQuery {
    pub fn page(&self) -> ApiResult<Page> {
        let limit = self.limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(ApiError::invalid(
                "limit",
                format!("{limit} is not between 1 and {MAX_LIMIT}"),
            ));
        }
        let offset = self.offset.unwrap_or(0);
        if offset < 0 {
            return Err(ApiError::invalid("offset", "must not be negative"));
        }
        Ok(Page::new(limit, offset))
    }
}

/// One page of a list with the total of the whole (filtered) list.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Paged<T> {
    pub items: Vec<T>,
    /// Rows in the whole list (same filters).
    pub total: i64,
    pub limit: i64,
    pub offset: i64,
}

impl<T> Paged<T> {
    pub fn new(items: Vec<T>, total: i64, page: Page) -> Paged<T> {
        Paged {
            items,
            total,
            limit: page.limit,
            offset: page.offset,
        }
    }
}

/// Splits `a,b , c` into trimmed, non-empty parts.
pub(crate) fn split_list(text: &str) -> impl Iterator<Item = &str> {
    text.split(',').map(str::trim).filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_are_checked() {
        let q = |limit, offset| PageQuery { limit, offset }.page();
        assert_eq!(q(None, None).unwrap(), Page::new(DEFAULT_LIMIT, 0));
        assert_eq!(q(Some(1000), Some(5)).unwrap(), Page::new(1000, 5));
        assert_eq!(
            q(Some(0), None).unwrap_err().field.as_deref(),
            Some("limit")
        );
        assert_eq!(
            q(Some(1001), None).unwrap_err().field.as_deref(),
            Some("limit")
        );
        assert_eq!(
            q(None, Some(-1)).unwrap_err().field.as_deref(),
            Some("offset")
        );
    }

    #[test]
    fn clock_moves_forward_for_every_clone() {
        let clock = Clock::system();
        let other = clock.clone();
        let before = other.now();
        clock.advance(3_600_000);
        assert!(other.now() >= before + 3_600_000);
    }
}
