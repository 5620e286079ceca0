//! Webhooks: where the account's call events are POSTed (see [`crate::observe::webhooks`] for
//! the delivery, its signature and its retries). One webhook per campaign (`campaign_id`), and
//! one without a campaign: the account's default, for campaigns without their own.
//! `GET /v1/webhooks/deliveries` shows each delivery's state and last answer; the signing
//! secret is an admin's to read and rotate.
//!
//! Must not: show or change another account's webhooks, deliveries or secret (404), or accept a
//! URL that is not `http://` or `https://`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::auth::Caller;
use super::error::{ApiError, ApiJson, ApiPath, ApiQuery, ApiResult, ErrorBody};
use super::{AppState, PageQuery, Paged};
use crate::observe::events::CallEventKind;
use crate::observe::webhooks::Format;
use crate::store::webhooks::{Delivery, NewWebhook, Webhook};

/// Event kinds a webhook may list besides the call events.
const OTHER_KINDS: [&str; 2] = ["campaign_status", "callback"];
/// Longest URL, in bytes.
const MAX_URL: usize = 2048;

/// A webhook as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WebhookView {
    pub id: i64,
    /// The campaign it serves; `null`: the account's default.
    pub campaign_id: Option<i64>,
    pub url: String,
    /// Event kinds sent; empty: all.
    pub events: Vec<String>,
    /// `json` or `twilio`.
    pub format: String,
    pub created_at: i64,
    pub updated_at: i64,
}

impl From<Webhook> for WebhookView {
    fn from(w: Webhook) -> Self {
        WebhookView {
            id: w.id,
            campaign_id: w.campaign_id,
            url: w.url,
            events: w.events,
            format: w.format,
            created_at: w.created_at,
            updated_at: w.updated_at,
        }
    }
}

/// A new webhook (POST), or its new settings (PUT: `campaign_id` cannot change).
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookInput {
    /// `http://` or `https://`.
    pub url: String,
    #[serde(default)]
    pub campaign_id: Option<i64>,
    /// Event kinds to send (`initiated`, `ringing`, `early_media`, `answered`, `amd`,
    /// `machine_end`, `dtmf`, `bridged`, `unbridged`, `agent_event`, `abandoned`, `completed`,
    /// `campaign_status`, `callback`); empty or absent: all.
    #[serde(default)]
    pub events: Vec<String>,
    /// `json` (default) or `twilio` (Twilio's status-callback form fields).
    #[serde(default)]
    pub format: Option<String>,
}

impl WebhookInput {
    fn check(self) -> ApiResult<NewWebhook> {
        let url = self.url.trim().to_string();
        let lower = url.to_ascii_lowercase();
        if url.len() > MAX_URL
            || !(lower.starts_with("http://") || lower.starts_with("https://"))
            || url.chars().any(char::is_whitespace)
            || reqwest::Url::parse(&url).is_err()
        {
            return Err(ApiError::invalid(
                "url",
                format!("must be an http:// or https:// URL of at most {MAX_URL} bytes"),
            ));
        }
        for kind in &self.events {
            if CallEventKind::parse(kind).is_none() && !OTHER_KINDS.contains(&kind.as_str()) {
                return Err(ApiError::invalid(
                    "events",
                    format!("{kind:?} is not an event kind"),
                ));
            }
        }
        let format = match self.format.as_deref() {
            None => Format::Json,
            Some(f) => Format::parse(f)
                .ok_or_else(|| ApiError::invalid("format", "must be json or twilio"))?,
        };
        Ok(NewWebhook {
            campaign_id: self.campaign_id,
            url,
            events: self.events,
            format: format.as_str().to_string(),
        })
    }
}

/// The account's webhooks, its default first.
#[utoipa::path(
    get,
    path = "/v1/webhooks",
    tag = "events",
    responses(
        (status = 200, description = "The account's webhooks", body = Vec<WebhookView>),
        (status = 401, description = "No valid credentials", body = ErrorBody),
    )
)]
pub async fn list_webhooks(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<Vec<WebhookView>>> {
    let hooks = state.store.list_webhooks(caller.account_id).await?;
    Ok(Json(hooks.into_iter().map(WebhookView::from).collect()))
}

/// Adds a webhook (a campaign's, or the account's default without `campaign_id`).
#[utoipa::path(
    post,
    path = "/v1/webhooks",
    tag = "events",
    request_body = WebhookInput,
    responses(
        (status = 201, description = "Added", body = WebhookView),
        (status = 400, description = "A bad URL, kind or format (named in `field`)", body = ErrorBody),
        (status = 401, description = "No valid credentials", body = ErrorBody),
        (status = 404, description = "No such campaign", body = ErrorBody),
        (status = 409, description = "The campaign (or the account's default) has a webhook already", body = ErrorBody),
    )
)]
pub async fn create_webhook(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(input): ApiJson<WebhookInput>,
) -> ApiResult<(StatusCode, Json<WebhookView>)> {
    let new = input.check()?;
    let hook = state
        .store
        .create_webhook(caller.account_id, &new, state.now())
        .await?;
    Ok((StatusCode::CREATED, Json(hook.into())))
}

/// One webhook.
#[utoipa::path(
    get,
    path = "/v1/webhooks/{id}",
    tag = "events",
    params(("id" = i64, Path, description = "Webhook id")),
    responses(
        (status = 200, description = "The webhook", body = WebhookView),
        (status = 401, description = "No valid credentials", body = ErrorBody),
        (status = 404, description = "No such webhook", body = ErrorBody),
    )
)]
pub async fn get_webhook(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<WebhookView>> {
    Ok(Json(
        state.store.get_webhook(caller.account_id, id).await?.into(),
    ))
}

/// Replaces a webhook's URL, kinds and format.
#[utoipa::path(
    put,
    path = "/v1/webhooks/{id}",
    tag = "events",
    params(("id" = i64, Path, description = "Webhook id")),
    request_body = WebhookInput,
    responses(
        (status = 200, description = "Updated", body = WebhookView),
        (status = 400, description = "A bad URL, kind or format, or a change of campaign", body = ErrorBody),
        (status = 401, description = "No valid credentials", body = ErrorBody),
        (status = 404, description = "No such webhook", body = ErrorBody),
    )
)]
pub async fn update_webhook(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
    ApiJson(input): ApiJson<WebhookInput>,
) -> ApiResult<Json<WebhookView>> {
    let current = state.store.get_webhook(caller.account_id, id).await?;
    let new = input.check()?;
    if new.campaign_id.is_some() && new.campaign_id != current.campaign_id {
        return Err(ApiError::invalid(
            "campaign_id",
            "a webhook's campaign cannot change (add one for the other campaign)",
        ));
    }
    let hook = state
        .store
        .update_webhook(caller.account_id, id, &new, state.now())
        .await?;
    Ok(Json(hook.into()))
}

/// Deletes a webhook and its deliveries not yet made.
#[utoipa::path(
    delete,
    path = "/v1/webhooks/{id}",
    tag = "events",
    params(("id" = i64, Path, description = "Webhook id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "No valid credentials", body = ErrorBody),
        (status = 404, description = "No such webhook", body = ErrorBody),
    )
)]
pub async fn delete_webhook(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<StatusCode> {
    state.store.delete_webhook(caller.account_id, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The account's signing secret.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WebhookSecret {
    /// `X-Outdial-Signature` is `v1=` and the hex HMAC-SHA256 of
    /// `"<X-Outdial-Timestamp>.<raw body>"` under this secret.
    pub secret: String,
}

/// The account's webhook signing secret (admins).
#[utoipa::path(
    get,
    path = "/v1/webhooks/secret",
    tag = "events",
    responses(
        (status = 200, description = "The secret", body = WebhookSecret),
        (status = 401, description = "No valid credentials", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
    )
)]
pub async fn get_secret(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<WebhookSecret>> {
    caller.require_admin("the webhook secret")?;
    let secret = state.store.webhook_secret(caller.account_id).await?;
    Ok(Json(WebhookSecret { secret }))
}

/// A new signing secret (admins); deliveries from now on are signed with it.
#[utoipa::path(
    post,
    path = "/v1/webhooks/secret/rotate",
    tag = "events",
    responses(
        (status = 200, description = "The new secret", body = WebhookSecret),
        (status = 401, description = "No valid credentials", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
    )
)]
pub async fn rotate_secret(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<WebhookSecret>> {
    caller.require_admin("the webhook secret")?;
    let secret = state.store.rotate_webhook_secret(caller.account_id).await?;
    Ok(Json(WebhookSecret { secret }))
}

/// One delivery as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeliveryView {
    pub id: i64,
    pub webhook_id: i64,
    pub event_id: i64,
    /// `pending`, `delivered` or `failed` (given up after 24 h).
    pub status: String,
    pub attempts: i64,
    /// When a pending one is tried next.
    pub next_at: i64,
    /// The receiver's last HTTP status (`null`: no answer).
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub delivered_at: Option<i64>,
}

impl From<Delivery> for DeliveryView {
    fn from(d: Delivery) -> Self {
        DeliveryView {
            id: d.id,
            webhook_id: d.webhook_id,
            event_id: d.event_id,
            status: d.status,
            attempts: d.attempts,
            next_at: d.next_at,
            last_status: d.last_status,
            last_error: d.last_error,
            created_at: d.created_at,
            delivered_at: d.delivered_at,
        }
    }
}

/// `?status=` plus paging.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeliveryQuery {
    /// `pending`, `delivered` or `failed`.
    pub status: Option<String>,
    pub limit: Option<i64>,
    pub offset: Option<i64>,
}

/// The account's deliveries, newest first.
#[utoipa::path(
    get,
    path = "/v1/webhooks/deliveries",
    tag = "events",
    params(DeliveryQuery),
    responses(
        (status = 200, description = "A page of deliveries", body = Paged<DeliveryView>),
        (status = 400, description = "A bad parameter", body = ErrorBody),
        (status = 401, description = "No valid credentials", body = ErrorBody),
    )
)]
pub async fn list_deliveries(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<DeliveryQuery>,
) -> ApiResult<Json<Paged<DeliveryView>>> {
    if let Some(s) = &query.status {
        if !["pending", "delivered", "failed"].contains(&s.as_str()) {
            return Err(ApiError::invalid(
                "status",
                "must be pending, delivered or failed",
            ));
        }
    }
    let page = PageQuery {
        limit: query.limit,
        offset: query.offset,
    }
    .page()?;
    let found = state
        .store
        .list_deliveries(caller.account_id, query.status.as_deref(), page)
        .await?;
    let items = found.items.into_iter().map(DeliveryView::from).collect();
    Ok(Json(Paged::new(items, found.total, page)))
}
