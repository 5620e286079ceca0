//! Who is calling: the gate in front of every route, and log in / log out.
//!
//! Two credentials, both sent as `Authorization: Bearer …`: an API key (`odk_…`, made by
//! `outdial keys create` or the store) or a session token (`ods_…`) from `POST /v1/login`,
//! which takes the guide's Login and API Key fields. The store keeps only SHA-256 hashes and
//! compares them in constant time; here a failure never says which part was wrong.
//!
//! A [`Caller`] carries the account every handler filters by, and the login's role:
//! `admin` routes (logins, other logins' keys, the global DNC list) answer 403 to an
//! operator through [`Caller::require_admin`].
//!
//! Logging in is rate limited per client address ([`LoginLimiter`]): after too many
//! failures in a window the address gets 429 with `Retry-After` until the window ends,
//! before its credentials are even checked. The address is the TCP peer's (a proxy's
//! `X-Forwarded-For` is not trusted).
//!
//! The web page ([`crate::web`]) logs in with a session cookie instead: the gate takes it in
//! place of a bearer credential and then wants the session's CSRF token on every request that
//! is not a GET or HEAD.
//!
//! Must not: log or echo a key, token or cookie, or let a request past without a [`Caller`] —
//! only [`PUBLIC_PATHS`], the web page's shell, assets and login skip the gate.

use std::collections::HashMap;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use subtle::ConstantTimeEq;

use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::{ApiError, ApiResult, ErrorBody};
use super::AppState;
use crate::campaign::model::Millis;
use crate::store::{Authenticated, Role};

/// Paths answered without a bearer credential. `/v1/login` checks the credentials in its
/// body itself; Twilio-compatible call control (under [`super::twilio::PREFIX`]) checks its
/// Basic credentials itself.
pub const PUBLIC_PATHS: &[&str] = &["/healthz", "/v1/login"];

/// The account and login behind a request (set by the gate).
#[derive(Debug, Clone)]
pub struct Caller {
    pub account_id: i64,
    pub login_id: i64,
    pub login: String,
    pub role: Role,
    /// The API key used, directly or through the session it opened.
    pub key_id: Option<i64>,
}

impl From<Authenticated> for Caller {
    fn from(a: Authenticated) -> Caller {
        Caller {
            account_id: a.account.id,
            login_id: a.login.id,
            login: a.login.login,
            role: a.login.role,
            key_id: a.key_id,
        }
    }
}

impl Caller {
    /// 403 unless the caller's login is an admin; `what` names what was refused.
    pub fn require_admin(&self, what: &str) -> ApiResult<()> {
        if self.role == Role::Admin {
            return Ok(());
        }
        Err(ApiError::forbidden(format!(
            "{what} needs an admin login; {:?} is an operator",
            self.login
        )))
    }
}

/// The TCP peer's address, when the server recorded it (`serve` does; a router mounted
/// elsewhere may not).
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientAddr(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip()),
        ))
    }
}

/// Failed logins per client address in a fixed window: a sans-IO core (time is an
/// argument) behind a lock. At most [`LoginLimiter::MAX_ADDRESSES`] addresses are
/// tracked; when full, ended windows are dropped, then the oldest.
#[derive(Debug, Clone)]
pub struct LoginLimiter {
    inner: Arc<parking_lot::Mutex<LimiterCore>>,
}

#[derive(Debug)]
struct LimiterCore {
    max_failures: u32,
    window_ms: Millis,
    /// Address → (window start, failures in it).
    windows: HashMap<IpAddr, (Millis, u32)>,
}

impl LoginLimiter {
    pub const MAX_ADDRESSES: usize = 10_000;

    /// `max_failures` failed logins per `window_ms` per address (0: no limit).
    pub fn new(max_failures: u32, window_ms: Millis) -> LoginLimiter {
        LoginLimiter {
            inner: Arc::new(parking_lot::Mutex::new(LimiterCore {
                max_failures,
                window_ms: window_ms.max(1),
                windows: HashMap::new(),
            })),
        }
    }

    /// `Err(ms until the window ends)` while the address has used up its failures.
    pub fn check(&self, addr: IpAddr, now: Millis) -> Result<(), Millis> {
        let core = self.inner.lock();
        if core.max_failures == 0 {
            return Ok(());
        }
        match core.windows.get(&addr) {
            Some((start, failures))
                if now < start + core.window_ms && *failures >= core.max_failures =>
            {
                Err(start + core.window_ms - now)
            }
            _ => Ok(()),
        }
    }

    /// Counts a failed login from the address.
    pub fn failed(&self, addr: IpAddr, now: Millis) {
        let mut core = self.inner.lock();
        if core.max_failures == 0 {
            return;
        }
        let window = core.window_ms;
        if core.windows.len() >= Self::MAX_ADDRESSES && !core.windows.contains_key(&addr) {
            core.windows.retain(|_, (start, _)| now < *start + window);
            if core.windows.len() >= Self::MAX_ADDRESSES {
                if let Some(oldest) = core
                    .windows
                    .iter()
                    .min_by_key(|(_, (start, _))| *start)
                    .map(|(a, _)| *a)
                {
                    core.windows.remove(&oldest);
                }
            }
        }
        let entry = core.windows.entry(addr).or_insert((now, 0));
        if now >= entry.0 + window {
            *entry = (now, 0);
        }
        entry.1 = entry.1.saturating_add(1);
    }

    /// A successful login clears the address's failures.
    pub fn succeeded(&self, addr: IpAddr) {
        self.inner.lock().windows.remove(&addr);
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Caller>()
            .cloned()
            .ok_or_else(|| ApiError::unauthorized("authentication required"))
    }
}

/// The bearer credential of a request, if it has one.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, credential) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let credential = credential.trim();
    (!credential.is_empty()).then_some(credential)
}

/// Checks a bearer credential: a session token or an API key.
async fn authenticate(state: &AppState, credential: &str) -> ApiResult<Option<Authenticated>> {
    let now = state.now();
    if credential.starts_with("ods_") {
        Ok(state.store.verify_session(credential, now).await?)
    } else {
        Ok(state.store.verify_api_key(None, credential, now).await?)
    }
}

/// The web page's session cookie: the session token, `HttpOnly` and `SameSite=Strict`.
pub const SESSION_COOKIE: &str = "outdial_session";
/// The header that carries the web page's CSRF token ([`csrf_token`]) on every request made
/// with the session cookie that is not a GET or HEAD.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// The session token in a request's [`SESSION_COOKIE`], if it has one.
pub fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value.trim())
        .filter(|value| !value.is_empty())
}

/// The CSRF token of a session: derived from its token, so nothing more is stored, and
/// unknowable to a page that cannot read the `HttpOnly` cookie.
pub fn csrf_token(session_token: &str) -> String {
    crate::store::sha256_hex(format!("outdial-csrf\0{session_token}").as_bytes())
}

/// Whether a request made with the session cookie carries its session's CSRF token.
fn csrf_ok(headers: &HeaderMap, session_token: &str) -> bool {
    let Some(given) = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    csrf_token(session_token)
        .as_bytes()
        .ct_eq(given.trim().as_bytes())
        .into()
}

/// Whether `path` is answered without credentials: [`PUBLIC_PATHS`], the web page and its
/// assets, and Twilio-compatible call control (which checks its own).
fn is_public(path: &str) -> bool {
    PUBLIC_PATHS.contains(&path)
        || path.starts_with(super::twilio::PREFIX)
        || crate::web::is_public(path)
}

/// The gate: every path except the public ones needs a valid bearer credential or the web
/// page's session cookie (401 with the JSON error otherwise, also for paths that do not
/// exist). With the cookie, anything but GET and HEAD also needs the session's CSRF token
/// in [`CSRF_HEADER`] (403 without it).
pub async fn require_auth(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    if is_public(req.uri().path()) {
        return next.run(req).await;
    }
    // A scraper with the node's metrics token (compared in constant time).
    if req.uri().path() == super::METRICS_PATH {
        if let (Some(token), Some(given)) = (&state.metrics_token, bearer(req.headers())) {
            let same: bool = token.expose().as_bytes().ct_eq(given.as_bytes()).into();
            if same {
                req.extensions_mut().insert(super::metrics::MetricsScrape);
                return next.run(req).await;
            }
        }
    }
    let credential = if let Some(credential) = bearer(req.headers()) {
        credential.to_string()
    } else if let Some(token) = session_cookie(req.headers()) {
        let safe = matches!(
            *req.method(),
            axum::http::Method::GET | axum::http::Method::HEAD
        );
        if !safe && !csrf_ok(req.headers(), token) {
            return ApiError::forbidden(format!(
                "a request made with the session cookie needs its {CSRF_HEADER} header"
            ))
            .into_response();
        }
        token.to_string()
    } else {
        return ApiError::unauthorized(
            "authentication required: send Authorization: Bearer <API key or session token>",
        )
        .into_response();
    };
    match authenticate(&state, &credential).await {
        Ok(Some(who)) => {
            req.extensions_mut().insert(Caller::from(who));
            next.run(req).await
        }
        Ok(None) => {
            ApiError::unauthorized("invalid, revoked or expired credentials").into_response()
        }
        Err(e) => e.into_response(),
    }
}

/// The guide's login dialog: Login and API Key.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct LoginRequest {
    pub login: String,
    pub api_key: String,
}

/// The caller's account and login.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AccountView {
    /// The account's id.
    pub id: i64,
    /// The login used.
    pub login: String,
    /// The account's name.
    pub name: String,
    /// The login's role: admin or operator.
    #[schema(value_type = String, example = "admin")]
    pub role: Role,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LoginResponse {
    /// Send as `Authorization: Bearer <token>`.
    pub token: String,
    pub token_type: String,
    /// When the session ends, ms since the epoch (UTC).
    pub expires_at: Millis,
    pub account: AccountView,
}

/// Log in with Login + API key; answers a session token.
#[utoipa::path(
    post,
    path = "/v1/login",
    tag = "auth",
    security(()),
    request_body = LoginRequest,
    responses(
        (status = 200, description = "Logged in", body = LoginResponse),
        (status = 400, description = "Malformed body", body = ErrorBody),
        (status = 401, description = "Wrong login or API key", body = ErrorBody),
        (status = 429, description = "Too many failed logins from this address (see Retry-After)", body = ErrorBody),
    )
)]
pub async fn login(
    State(state): State<AppState>,
    ClientAddr(addr): ClientAddr,
    super::ApiJson(body): super::ApiJson<LoginRequest>,
) -> ApiResult<Json<LoginResponse>> {
    open_session(&state, addr, &body).await.map(Json)
}

/// Checks Login + API key (rate limited per address) and opens a session: the one way in
/// for `POST /v1/login` and the web page's cookie login.
pub async fn open_session(
    state: &AppState,
    addr: Option<IpAddr>,
    body: &LoginRequest,
) -> ApiResult<LoginResponse> {
    let now = state.now();
    let addr = addr.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    if let Err(wait_ms) = state.login_limiter.check(addr, now) {
        let secs = (wait_ms + 999) / 1000;
        return Err(ApiError::too_many_requests(
            format!("too many failed logins from this address: try again in {secs} s"),
            secs.max(1) as u64,
        ));
    }
    let who = if body.login.trim().is_empty() || body.api_key.trim().is_empty() {
        None
    } else {
        state
            .store
            .verify_api_key(Some(body.login.trim()), body.api_key.trim(), now)
            .await?
    };
    let Some(who) = who else {
        state.login_limiter.failed(addr, now);
        return Err(ApiError::unauthorized(
            "wrong login or API key (login and api_key are required)",
        ));
    };
    state.login_limiter.succeeded(addr);
    // Logging in is also when expired sessions go.
    if let Err(e) = state.store.purge_sessions(now).await {
        tracing::warn!(error = %e, "expired sessions not purged");
    }
    let (session, token) = state
        .store
        .create_session(&who, state.session_ttl_ms, now)
        .await?;
    tracing::info!(
        account = who.account.id,
        login = who.login.id,
        "session opened"
    );
    Ok(LoginResponse {
        token,
        token_type: "Bearer".into(),
        expires_at: session.expires_at,
        account: AccountView {
            id: who.account.id,
            login: who.login.login,
            name: who.account.name,
            role: who.login.role,
        },
    })
}

/// Ends the session whose token is the bearer credential (an API key stays valid).
#[utoipa::path(
    post,
    path = "/v1/logout",
    tag = "auth",
    responses(
        (status = 204, description = "Logged out"),
        (status = 401, description = "No valid credentials", body = ErrorBody),
    )
)]
pub async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
    _caller: Caller,
) -> ApiResult<StatusCode> {
    if let Some(token) = bearer(&headers).filter(|t| t.starts_with("ods_")) {
        state.store.delete_session(token).await?;
    }
    Ok(StatusCode::NO_CONTENT)
}

/// The account and login behind the credentials.
#[utoipa::path(
    get,
    path = "/v1/me",
    tag = "auth",
    responses(
        (status = 200, description = "The caller's account and login", body = AccountView),
        (status = 401, description = "No valid credentials", body = ErrorBody),
    )
)]
pub async fn me(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<AccountView>> {
    let account = state.store.get_account(caller.account_id).await?;
    Ok(Json(AccountView {
        id: account.id,
        login: caller.login,
        name: account.name,
        role: caller.role,
    }))
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Health {
    pub status: String,
}

/// Liveness: answers without credentials.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "health",
    security(()),
    responses((status = 200, description = "The server is up", body = Health))
)]
pub async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn failed_logins_are_limited_per_address_and_window() {
        let limiter = LoginLimiter::new(3, 60_000);
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        for t in 0..3 {
            assert_eq!(limiter.check(a, t), Ok(()));
            limiter.failed(a, t);
        }
        assert_eq!(limiter.check(a, 10_000), Err(50_000));
        assert_eq!(
            limiter.check(b, 10_000),
            Ok(()),
            "another address is not held"
        );
        assert_eq!(limiter.check(a, 60_000), Ok(()), "the window ended");
        limiter.failed(a, 60_000);
        assert_eq!(
            limiter.check(a, 60_001),
            Ok(()),
            "a new window counts from zero"
        );
        limiter.succeeded(a);
        assert!(LoginLimiter::new(0, 1).check(a, 0).is_ok());
    }

    #[test]
    fn the_limiter_tracks_a_bounded_number_of_addresses() {
        let limiter = LoginLimiter::new(1, 60_000);
        for i in 0..(LoginLimiter::MAX_ADDRESSES as u32 + 50) {
            limiter.failed(IpAddr::V4(Ipv4Addr::from(i)), i64::from(i));
        }
        assert!(limiter.inner.lock().windows.len() <= LoginLimiter::MAX_ADDRESSES);
    }

    #[test]
    fn bearer_credentials_are_read() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer(&h), None);
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer odk_abc"),
        );
        assert_eq!(bearer(&h), Some("odk_abc"));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bearer   ods_x  "),
        );
        assert_eq!(bearer(&h), Some("ods_x"));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic dXNlcjpwdw=="),
        );
        assert_eq!(bearer(&h), None);
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer "));
        assert_eq!(bearer(&h), None);
    }
}
