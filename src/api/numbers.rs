//! Phone numbers (itellico's guide: "Phone Number"): the account's DIDs, in E.164, each
//! unique across the whole server, with an optional label and the SIP profile the number is
//! reached on. `GET /v1/numbers?available=true` lists those a new campaign may take: no
//! scheduled, processing or paused campaign holds them.
//!
//! A campaign names its number with `number_id` at creation (see [`super::campaigns`]): its
//! caller ID is then that number, and the number cannot change afterwards. A number belongs
//! to at most one scheduled, processing or paused campaign at a time; deleting a number such
//! a campaign holds answers 409 naming the campaign. Another account's number answers 404.
//!
//! Must not: change a number's digits (delete it and add the new one), or reveal which
//! account holds a number another account tries to add (409 says only that it exists).

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::auth::Caller;
use super::error::{ApiError, ApiJson, ApiPath, ApiQuery, ApiResult, ErrorBody};
use super::{AppState, PageQuery, Paged};
use crate::campaign::model::Millis;
use crate::store::{NewNumber, NumberUpdate, PhoneNumber, StoreError};

/// A phone number as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NumberView {
    pub id: i64,
    /// E.164.
    pub number: String,
    pub label: Option<String>,
    /// The SIP profile (trunk) the number is reached on.
    pub sip_profile: Option<String>,
    /// The scheduled, processing or paused campaign holding the number (null: available).
    pub campaign_id: Option<i64>,
    /// No scheduled, processing or paused campaign holds it: a new campaign may take it.
    pub available: bool,
    pub created_at: Millis,
    pub updated_at: Millis,
}

impl From<PhoneNumber> for NumberView {
    fn from(n: PhoneNumber) -> Self {
        NumberView {
            id: n.id,
            number: n.number,
            label: n.label,
            sip_profile: n.sip_profile,
            campaign_id: n.campaign_id,
            available: n.campaign_id.is_none(),
            created_at: n.created_at,
            updated_at: n.updated_at,
        }
    }
}

/// A new number.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NumberInput {
    /// E.164: `+`, then up to 15 digits, the first not 0 (e.g. +12025550100).
    pub number: String,
    #[serde(default)]
    pub label: Option<String>,
    /// The SIP profile the number is reached on (a profile name).
    #[serde(default)]
    pub sip_profile: Option<String>,
}

/// Absent → `None`; `null` → `Some(None)`; a value → `Some(Some(v))`.
fn nullable<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// A change to a number: absent fields keep their value, `null` clears. `number` itself
/// cannot change (422).
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct NumberPatch {
    #[serde(deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    pub label: Option<Option<String>>,
    #[serde(deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    pub sip_profile: Option<Option<String>>,
    /// Refused (422): a number's digits never change.
    #[schema(value_type = Option<String>)]
    pub number: Option<serde_json::Value>,
}

/// `?available=` plus paging.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct NumberListQuery {
    /// `true`: only numbers no scheduled, processing or paused campaign holds.
    pub available: Option<bool>,
    pub limit: Option<i64>,
    pub offset: Option<i64>,
}

/// 422 naming the field, for a store Invalid about a number's own fields.
fn unprocessable(e: StoreError) -> ApiError {
    match e {
        StoreError::Invalid(message) => {
            let field = super::error::leading_field(&message).map(str::to_string);
            let mut error = ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", message);
            error.field = field;
            error
        }
        other => other.into(),
    }
}

/// The account's numbers, by number.
#[utoipa::path(
    get,
    path = "/v1/numbers",
    tag = "numbers",
    params(NumberListQuery),
    responses(
        (status = 200, description = "A page of the account's numbers", body = Paged<NumberView>),
        (status = 400, description = "A bad parameter", body = ErrorBody),
        (status = 401, description = "No valid credentials", body = ErrorBody),
    )
)]
pub async fn list_numbers(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<NumberListQuery>,
) -> ApiResult<Json<Paged<NumberView>>> {
    let page = PageQuery {
        limit: query.limit,
        offset: query.offset,
    }
    .page()?;
    let found = state
        .store
        .list_numbers(caller.account_id, query.available.unwrap_or(false), page)
        .await?;
    let items = found.items.into_iter().map(NumberView::from).collect();
    Ok(Json(Paged::new(items, found.total, page)))
}

/// Adds a number to the account.
#[utoipa::path(
    post,
    path = "/v1/numbers",
    tag = "numbers",
    request_body = NumberInput,
    responses(
        (status = 201, description = "Added", body = NumberView),
        (status = 400, description = "The body cannot be read", body = ErrorBody),
        (status = 401, description = "No valid credentials", body = ErrorBody),
        (status = 409, description = "The number is already registered", body = ErrorBody),
        (status = 422, description = "Not an E.164 number, or a bad label or profile name (named in `field`)", body = ErrorBody),
    )
)]
pub async fn create_number(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(input): ApiJson<NumberInput>,
) -> ApiResult<(StatusCode, Json<NumberView>)> {
    let new = NewNumber {
        number: input.number,
        label: input.label,
        sip_profile: input.sip_profile,
    };
    let created = state
        .store
        .create_number(caller.account_id, &new, state.now())
        .await
        .map_err(unprocessable)?;
    Ok((StatusCode::CREATED, Json(created.into())))
}

/// One number.
#[utoipa::path(
    get,
    path = "/v1/numbers/{id}",
    tag = "numbers",
    params(("id" = i64, Path, description = "Number id")),
    responses(
        (status = 200, description = "The number", body = NumberView),
        (status = 401, description = "No valid credentials", body = ErrorBody),
        (status = 404, description = "No such number", body = ErrorBody),
    )
)]
pub async fn get_number(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<NumberView>> {
    Ok(Json(
        state.store.get_number(caller.account_id, id).await?.into(),
    ))
}

/// Changes a number's label or SIP profile.
#[utoipa::path(
    patch,
    path = "/v1/numbers/{id}",
    tag = "numbers",
    params(("id" = i64, Path, description = "Number id")),
    request_body = NumberPatch,
    responses(
        (status = 200, description = "Updated", body = NumberView),
        (status = 400, description = "The body cannot be read", body = ErrorBody),
        (status = 401, description = "No valid credentials", body = ErrorBody),
        (status = 404, description = "No such number", body = ErrorBody),
        (status = 422, description = "The number's digits cannot change, or a bad label or profile name", body = ErrorBody),
    )
)]
pub async fn update_number(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
    ApiJson(patch): ApiJson<NumberPatch>,
) -> ApiResult<Json<NumberView>> {
    // Another account's number is 404 before anything about the body is said.
    let current = state.store.get_number(caller.account_id, id).await?;
    if let Some(number) = &patch.number {
        if number.as_str() != Some(current.number.as_str()) {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid",
                "number: a number's digits cannot be changed (delete it and add the new one)",
            )
            .with_field("number"));
        }
    }
    let update = NumberUpdate {
        label: patch.label,
        sip_profile: patch.sip_profile,
    };
    let updated = state
        .store
        .update_number(caller.account_id, id, &update, state.now())
        .await
        .map_err(unprocessable)?;
    Ok(Json(updated.into()))
}

/// Deletes a number no scheduled, processing or paused campaign holds (409 naming the
/// campaign otherwise). Campaigns that named it keep their caller ID.
#[utoipa::path(
    delete,
    path = "/v1/numbers/{id}",
    tag = "numbers",
    params(("id" = i64, Path, description = "Number id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "No valid credentials", body = ErrorBody),
        (status = 404, description = "No such number", body = ErrorBody),
        (status = 409, description = "A scheduled, processing or paused campaign holds it", body = ErrorBody),
    )
)]
pub async fn delete_number(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<StatusCode> {
    state.store.delete_number(caller.account_id, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
