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
//! Every route but `GET /healthz` (and `POST /v1/login`, which checks its own credentials)
//! needs `Authorization: Bearer <API key or session token>`; unknown paths answer 401 too
//! before they answer 404, so nothing can be probed without a key.
//!
//! What it must not do: dial, decide campaign state beyond the guides' action rules
//! (`campaign::apply_action`), hold a CSV upload in memory (it is streamed into the
//! importer), block the runtime on file I/O, or log keys, tokens or request bodies.
//!
//! One file per group of routes: [`auth`], [`campaigns`], [`contacts`], [`import`],
//! [`exports`], [`reports`], [`dnc`], [`schedules`], [`media`] (WAV uploads and attempt
//! recordings), [`agents`] (SIP agents and pools), [`ai_agents`] (AI voice agents),
//! [`goals`] (goals, analyses and agents' reports about attempts), [`node`] (this node's state); [`error`] holds the one error shape
//! and the extractors, [`openapi`] the document and the schemas of the model's words.

pub mod agents;
pub mod ai_agents;
pub mod auth;
pub mod calls;
pub mod campaigns;
pub mod contacts;
pub mod dnc;
pub mod error;
pub mod exports;
pub mod goals;
pub mod import;
pub mod media;
pub mod node;
pub mod openapi;
pub mod reports;
pub mod schedules;
pub mod twilio;

use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::http::{Method, StatusCode, Uri};
use axum::middleware;
use axum::Router;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use utoipa::{IntoParams, ToSchema};

pub use error::{ApiError, ApiJson, ApiPath, ApiQuery, ApiResult, ErrorBody};

use crate::campaign::model::Millis;
use crate::store::{Page, Store};

/// Largest JSON body accepted (the CSV import has no total limit: it is streamed).
pub const JSON_BODY_LIMIT: usize = 1024 * 1024;
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
        }
    }

    /// The same state naming this node (`GET /v1/node`).
    pub fn with_node(mut self, node: String) -> AppState {
        self.node = node;
        self
    }

    /// The same state sharing the engine's registry of live calls.
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

/// The whole HTTP service: `/healthz`, `/v1/…`, JSON 404/405 and the auth gate.
pub fn router(state: AppState) -> Router {
    let (routes, _doc) = openapi::api_router().split_for_parts();
    // Twilio-compatible call control does its own (Basic) auth.
    routes
        .route(
            twilio::CALL_PATH,
            axum::routing::get(twilio::get_call).post(twilio::update_call),
        )
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_auth,
        ))
        .layer(middleware::from_fn(log_request))
        .layer(DefaultBodyLimit::max(JSON_BODY_LIMIT))
        .with_state(state)
}

/// Serves [`router`] on `listener` until `shutdown` completes, then lets requests in
/// flight finish. Export jobs a previous run left unfinished are marked failed first.
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
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
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
