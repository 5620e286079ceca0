//! Who is calling: the gate in front of every route, and log in / log out.
//!
//! Two credentials, both sent as `Authorization: Bearer …`: an API key (`odk_…`, made by
//! `outdial keys create` or the store) or a session token (`ods_…`) from `POST /v1/login`,
//! which takes the guide's Login and API Key fields. The store keeps only SHA-256 hashes and
//! compares them in constant time; here a failure never says which part was wrong.
//!
//! Must not: log or echo a key or token, or let a request past without a [`Caller`] —
//! only [`PUBLIC_PATHS`] skip the gate.

use axum::extract::{FromRequestParts, Request, State};
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
use crate::store::Authenticated;

/// Paths answered without a bearer credential. `/v1/login` checks the credentials in its
/// body itself; Twilio-compatible call control (under [`super::twilio::PREFIX`]) checks its
/// Basic credentials itself.
pub const PUBLIC_PATHS: &[&str] = &["/healthz", "/v1/login"];

/// The account behind a request (set by the gate).
#[derive(Debug, Clone)]
pub struct Caller {
    pub account_id: i64,
    pub login: String,
    /// The API key used; `None` for a session.
    pub key_id: Option<i64>,
}

impl From<Authenticated> for Caller {
    fn from(a: Authenticated) -> Caller {
        Caller {
            account_id: a.account.id,
            login: a.account.login,
            key_id: a.key_id,
        }
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

/// The gate: every path except [`PUBLIC_PATHS`] needs a valid bearer credential (401 with
/// the JSON error otherwise, also for paths that do not exist).
pub async fn require_auth(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    if PUBLIC_PATHS.contains(&req.uri().path())
        || req.uri().path().starts_with(super::twilio::PREFIX)
    {
        return next.run(req).await;
    }
    let Some(credential) = bearer(req.headers()) else {
        return ApiError::unauthorized(
            "authentication required: send Authorization: Bearer <API key or session token>",
        )
        .into_response();
    };
    match authenticate(&state, credential).await {
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

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AccountView {
    pub id: i64,
    pub login: String,
    pub name: String,
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
    )
)]
pub async fn login(
    State(state): State<AppState>,
    super::ApiJson(body): super::ApiJson<LoginRequest>,
) -> ApiResult<Json<LoginResponse>> {
    if body.login.trim().is_empty() || body.api_key.trim().is_empty() {
        return Err(ApiError::unauthorized("login and api_key are required"));
    }
    let now = state.now();
    let who = state
        .store
        .verify_api_key(Some(body.login.trim()), body.api_key.trim(), now)
        .await?
        .ok_or_else(|| ApiError::unauthorized("wrong login or API key"))?;
    let (session, token) = state
        .store
        .create_session(who.account.id, state.session_ttl_ms, now)
        .await?;
    tracing::info!(account = who.account.id, "session opened");
    Ok(Json(LoginResponse {
        token,
        token_type: "Bearer".into(),
        expires_at: session.expires_at,
        account: AccountView {
            id: who.account.id,
            login: who.account.login,
            name: who.account.name,
        },
    }))
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

/// The account behind the credentials.
#[utoipa::path(
    get,
    path = "/v1/me",
    tag = "auth",
    responses(
        (status = 200, description = "The caller's account", body = AccountView),
        (status = 401, description = "No valid credentials", body = ErrorBody),
    )
)]
pub async fn me(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<AccountView>> {
    let account = state.store.get_account(caller.account_id).await?;
    Ok(Json(AccountView {
        id: account.id,
        login: account.login,
        name: account.name,
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
