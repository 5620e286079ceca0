//! API keys and logins of the caller's account.
//!
//! - `GET /v1/keys`: an admin sees every key of the account, an operator its own login's.
//! - `POST /v1/keys` (admin): a new key for a login of the account (default: the caller's);
//!   the key is in this answer only.
//! - `DELETE /v1/keys/{id}`: revokes the key and ends the sessions it opened, at once. An
//!   operator may revoke its own keys only (403 for another login's).
//! - `GET/POST /v1/logins`, `DELETE /v1/logins/{id}` (admin): the account's logins and
//!   their roles; deleting one deletes its keys and sessions; the last admin stays (409).
//!
//! Another account's key or login answers 404, like one that does not exist.
//!
//! Must not: show a key after its creation (lists carry the public prefix only), or let an
//! operator change what is not its own.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::Caller;
use super::error::{ApiError, ApiJson, ApiPath, ApiResult, ErrorBody};
use super::AppState;
use crate::campaign::model::Millis;
use crate::store::{ApiKey, Login, Role, StoreError};

/// An API key as listed (never the key itself).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct KeyView {
    pub id: i64,
    /// The login it belongs to.
    pub login_id: Option<i64>,
    pub login: Option<String>,
    /// The key's start, to tell keys apart (`odk_1a2b3c4d…`).
    pub prefix: String,
    pub label: String,
    pub created_at: Millis,
    pub last_used_at: Option<Millis>,
    /// Set once revoked: the key and its sessions no longer work.
    pub revoked_at: Option<Millis>,
}

impl From<ApiKey> for KeyView {
    fn from(k: ApiKey) -> Self {
        KeyView {
            id: k.id,
            login_id: k.login_id,
            login: k.login,
            prefix: format!("odk_{}…", k.prefix),
            label: k.label,
            created_at: k.created_at,
            last_used_at: k.last_used_at,
            revoked_at: k.revoked_at,
        }
    }
}

/// A key just made.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct NewKeyView {
    pub key: KeyView,
    /// The whole key, shown this once: send it as `Authorization: Bearer …` or log in with
    /// it.
    pub secret: String,
}

#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct KeyInput {
    /// A label to tell keys apart.
    pub label: String,
    /// The login of the account the key is for (default: the caller's).
    pub login_id: Option<i64>,
}

/// A login of the account.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LoginView {
    pub id: i64,
    pub login: String,
    /// admin or operator.
    #[schema(value_type = String, example = "operator")]
    pub role: Role,
    pub created_at: Millis,
}

impl From<Login> for LoginView {
    fn from(l: Login) -> Self {
        LoginView {
            id: l.id,
            login: l.login,
            role: l.role,
            created_at: l.created_at,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct LoginInput {
    /// Unique over the whole server.
    pub login: String,
    /// admin or operator (default operator).
    #[schema(value_type = Option<String>, example = "operator")]
    pub role: Option<Role>,
}

/// One of the account's keys (another account's reads as no key).
async fn own_key(state: &AppState, caller: &Caller, id: i64) -> ApiResult<ApiKey> {
    let missing = || ApiError::from(StoreError::NotFound(format!("api key {id}")));
    match state.store.get_api_key(id).await {
        Ok(key) if key.account_id == caller.account_id => Ok(key),
        Ok(_) | Err(StoreError::NotFound(_)) => Err(missing()),
        Err(e) => Err(e.into()),
    }
}

/// The account's API keys (an operator: its own login's), oldest first.
#[utoipa::path(
    get,
    path = "/v1/keys",
    tag = "auth",
    responses(
        (status = 200, description = "The keys (no secrets)", body = Vec<KeyView>),
        (status = 401, description = "No valid credentials", body = ErrorBody),
    )
)]
pub async fn list_keys(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<Vec<KeyView>>> {
    let keys = state.store.list_api_keys(caller.account_id).await?;
    Ok(Json(
        keys.into_iter()
            .filter(|k| caller.role == Role::Admin || k.login_id == Some(caller.login_id))
            .map(KeyView::from)
            .collect(),
    ))
}

/// Makes an API key for a login of the account (admin only); the key is shown once.
#[utoipa::path(
    post,
    path = "/v1/keys",
    tag = "auth",
    request_body = KeyInput,
    responses(
        (status = 201, description = "Made; `secret` is the key", body = NewKeyView),
        (status = 401, description = "No valid credentials", body = ErrorBody),
        (status = 403, description = "Not an admin login", body = ErrorBody),
        (status = 404, description = "No such login in the account", body = ErrorBody),
    )
)]
pub async fn create_key(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(input): ApiJson<KeyInput>,
) -> ApiResult<(StatusCode, Json<NewKeyView>)> {
    caller.require_admin("making API keys")?;
    let login_id = input.login_id.unwrap_or(caller.login_id);
    let login = state.store.get_login(caller.account_id, login_id).await?;
    let made = state
        .store
        .create_login_key(login.id, input.label.trim(), state.now())
        .await?;
    tracing::info!(
        account = caller.account_id,
        key = made.key.id,
        "API key made"
    );
    Ok((
        StatusCode::CREATED,
        Json(NewKeyView {
            key: made.key.into(),
            secret: made.secret,
        }),
    ))
}

/// Revokes an API key: it and the sessions opened with it stop working at once. An
/// operator may revoke only its own keys.
#[utoipa::path(
    delete,
    path = "/v1/keys/{id}",
    tag = "auth",
    params(("id" = i64, Path, description = "API key id")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 401, description = "No valid credentials", body = ErrorBody),
        (status = 403, description = "Another login's key, and not an admin login", body = ErrorBody),
        (status = 404, description = "No such key in the account", body = ErrorBody),
    )
)]
pub async fn revoke_key(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<StatusCode> {
    let key = own_key(&state, &caller, id).await?;
    if key.login_id != Some(caller.login_id) {
        caller.require_admin("revoking another login's API key")?;
    }
    state.store.revoke_api_key(id, state.now()).await?;
    tracing::info!(account = caller.account_id, key = id, "API key revoked");
    Ok(StatusCode::NO_CONTENT)
}

/// The account's logins (admin only).
#[utoipa::path(
    get,
    path = "/v1/logins",
    tag = "auth",
    responses(
        (status = 200, description = "The logins", body = Vec<LoginView>),
        (status = 401, description = "No valid credentials", body = ErrorBody),
        (status = 403, description = "Not an admin login", body = ErrorBody),
    )
)]
pub async fn list_logins(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<Vec<LoginView>>> {
    caller.require_admin("managing logins")?;
    let logins = state.store.list_logins(caller.account_id).await?;
    Ok(Json(logins.into_iter().map(LoginView::from).collect()))
}

/// Adds a login to the account (admin only); give it a key with `POST /v1/keys`.
#[utoipa::path(
    post,
    path = "/v1/logins",
    tag = "auth",
    request_body = LoginInput,
    responses(
        (status = 201, description = "Added", body = LoginView),
        (status = 400, description = "The login is empty or too long", body = ErrorBody),
        (status = 401, description = "No valid credentials", body = ErrorBody),
        (status = 403, description = "Not an admin login", body = ErrorBody),
        (status = 409, description = "The login is taken", body = ErrorBody),
    )
)]
pub async fn create_login(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(input): ApiJson<LoginInput>,
) -> ApiResult<(StatusCode, Json<LoginView>)> {
    caller.require_admin("managing logins")?;
    let login = state
        .store
        .create_login(
            caller.account_id,
            &input.login,
            input.role.unwrap_or(Role::Operator),
            state.now(),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(login.into())))
}

/// Deletes a login of the account with its keys and sessions (admin only; the last admin
/// stays).
#[utoipa::path(
    delete,
    path = "/v1/logins/{id}",
    tag = "auth",
    params(("id" = i64, Path, description = "Login id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "No valid credentials", body = ErrorBody),
        (status = 403, description = "Not an admin login", body = ErrorBody),
        (status = 404, description = "No such login in the account", body = ErrorBody),
        (status = 409, description = "The account's last admin", body = ErrorBody),
    )
)]
pub async fn delete_login(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<StatusCode> {
    caller.require_admin("managing logins")?;
    state.store.delete_login(caller.account_id, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
