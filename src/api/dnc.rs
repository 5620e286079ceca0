//! The Do-Not-Call lists: numbers never dialed. Each account has its own list (`list`
//! `account`, the default), and one `global` list applies to every account's campaigns;
//! anyone reads the global list, only an admin login adds to it or removes from it (403
//! otherwise). Numbers are stored in E.164; input in any common spelling is normalised
//! (`?default_country=` or the body's `default_country` for numbers without a `+`, default
//! US). `{phone}` in a path may be written the same ways (URL-encode the `+` as `%2B`).

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::auth::Caller;
use super::contacts::e164;
use super::error::{ApiError, ApiJson, ApiPath, ApiQuery, ApiResult, ErrorBody};
use super::{AppState, PageQuery, Paged};
use crate::campaign::model::Millis;
use crate::store::{DncEntry, DncList};

/// Which list a request is about.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ListWord {
    /// The caller's account's own list.
    #[default]
    Account,
    /// The list every account's campaigns check (admins change it).
    Global,
}

impl ListWord {
    fn list(self, caller: &Caller) -> DncList {
        match self {
            ListWord::Account => DncList::Account(caller.account_id),
            ListWord::Global => DncList::Global,
        }
    }

    /// The list to change: the global one needs an admin login.
    fn writable(self, caller: &Caller) -> ApiResult<DncList> {
        if self == ListWord::Global {
            caller.require_admin("changing the global DNC list")?;
        }
        Ok(self.list(caller))
    }
}

const DEFAULT_COUNTRY: &str = "US";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DncView {
    pub id: i64,
    /// The list it is on.
    pub list: ListWord,
    /// E.164.
    pub phone: String,
    pub reason: String,
    pub created_at: Millis,
}

impl From<DncEntry> for DncView {
    fn from(e: DncEntry) -> Self {
        DncView {
            id: e.id,
            list: match e.list() {
                DncList::Account(_) => ListWord::Account,
                DncList::Global => ListWord::Global,
            },
            phone: e.phone,
            reason: e.reason,
            created_at: e.created_at,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct DncInput {
    pub phone: String,
    pub reason: String,
    /// For a number without `+` (default US).
    pub default_country: Option<String>,
    /// `account` (default) or `global` (admins only).
    pub list: ListWord,
}

#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DncListQuery {
    /// `account` (default) or `global`.
    #[param(value_type = Option<String>)]
    pub list: Option<ListWord>,
    /// Part of the phone or the reason.
    pub q: Option<String>,
    pub limit: Option<i64>,
    pub offset: Option<i64>,
}

#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CountryQuery {
    /// For a number without `+` (default US).
    pub default_country: Option<String>,
    /// `account` (default) or `global`.
    #[param(value_type = Option<String>)]
    pub list: Option<ListWord>,
}

/// The list, by phone.
#[utoipa::path(
    get,
    path = "/v1/dnc",
    tag = "dnc",
    params(DncListQuery),
    responses(
        (status = 200, description = "A page of the list", body = Paged<DncView>),
        (status = 400, description = "A bad parameter", body = ErrorBody),
        (status = 401, description = "No valid credentials", body = ErrorBody),
    )
)]
pub async fn list_dnc(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<DncListQuery>,
) -> ApiResult<Json<Paged<DncView>>> {
    let page = PageQuery {
        limit: query.limit,
        offset: query.offset,
    }
    .page()?;
    let list = query.list.unwrap_or_default().list(&caller);
    let found = state.store.list_dnc(list, query.q.as_deref(), page).await?;
    let items = found.items.into_iter().map(DncView::from).collect();
    Ok(Json(Paged::new(items, found.total, page)))
}

/// Adds a number (409 when it is listed already).
#[utoipa::path(
    post,
    path = "/v1/dnc",
    tag = "dnc",
    request_body = DncInput,
    responses(
        (status = 201, description = "Added", body = DncView),
        (status = 400, description = "Not a phone number", body = ErrorBody),
        (status = 401, description = "No valid credentials", body = ErrorBody),
        (status = 403, description = "The global list needs an admin login", body = ErrorBody),
        (status = 409, description = "Already listed", body = ErrorBody),
    )
)]
pub async fn add_dnc(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(input): ApiJson<DncInput>,
) -> ApiResult<(StatusCode, Json<DncView>)> {
    let list = input.list.writable(&caller)?;
    if input.phone.trim().is_empty() {
        return Err(ApiError::invalid("phone", "is required"));
    }
    let country = input.default_country.as_deref().unwrap_or(DEFAULT_COUNTRY);
    let phone = e164("phone", &input.phone, country)?;
    let entry = state
        .store
        .add_dnc(list, &phone, input.reason.trim(), state.now())
        .await?;
    state.wake_engine();
    Ok((StatusCode::CREATED, Json(entry.into())))
}

/// Whether a number is listed (404 when it is not).
#[utoipa::path(
    get,
    path = "/v1/dnc/{phone}",
    tag = "dnc",
    params(("phone" = String, Path, description = "The number (E.164, + as %2B)"), CountryQuery),
    responses(
        (status = 200, description = "Listed", body = DncView),
        (status = 400, description = "Not a phone number", body = ErrorBody),
        (status = 401, description = "No valid credentials", body = ErrorBody),
        (status = 404, description = "Not listed", body = ErrorBody),
    )
)]
pub async fn get_dnc(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(phone): ApiPath<String>,
    ApiQuery(query): ApiQuery<CountryQuery>,
) -> ApiResult<Json<DncView>> {
    let country = query.default_country.as_deref().unwrap_or(DEFAULT_COUNTRY);
    let phone = e164("phone", &phone, country)?;
    let list = query.list.unwrap_or_default().list(&caller);
    Ok(Json(state.store.get_dnc(list, &phone).await?.into()))
}

/// Takes a number off the list.
#[utoipa::path(
    delete,
    path = "/v1/dnc/{phone}",
    tag = "dnc",
    params(("phone" = String, Path, description = "The number (E.164, + as %2B)"), CountryQuery),
    responses(
        (status = 204, description = "Removed"),
        (status = 400, description = "Not a phone number", body = ErrorBody),
        (status = 401, description = "No valid credentials", body = ErrorBody),
        (status = 403, description = "The global list needs an admin login", body = ErrorBody),
        (status = 404, description = "Not listed", body = ErrorBody),
    )
)]
pub async fn delete_dnc(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(phone): ApiPath<String>,
    ApiQuery(query): ApiQuery<CountryQuery>,
) -> ApiResult<StatusCode> {
    let list = query.list.unwrap_or_default().writable(&caller)?;
    let country = query.default_country.as_deref().unwrap_or(DEFAULT_COUNTRY);
    let phone = e164("phone", &phone, country)?;
    state.store.delete_dnc(list, &phone).await?;
    state.wake_engine();
    Ok(StatusCode::NO_CONTENT)
}
