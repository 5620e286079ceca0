//! `GET /v1/events`: the account's event log, oldest first, paged by a cursor (`after` = the
//! last id seen; the answer's `next_after` is the one to pass next). Each call emits its
//! events (`initiated`, `ringing`, `early_media`, `answered`, `amd`, `machine_end`, `dtmf`,
//! `bridged`, `unbridged`, `abandoned`, `completed`) with its campaign, contact, attempt number
//! and SIP Call-ID; campaigns add their status changes and callbacks.
//!
//! Must not: show another account's events (every query is the caller's account), or page by
//! offset (events keep arriving; the id cursor never skips or repeats one).

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::auth::Caller;
use super::error::{ApiError, ApiQuery, ApiResult, ErrorBody};
use super::AppState;
use crate::campaign::model::Millis;
use crate::store::events::{Event, EventFilter};

/// Events one page holds at most.
pub const MAX_LIMIT: i64 = 1000;

/// One event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct EventView {
    /// Grows with every event: the cursor.
    pub id: i64,
    /// `initiated`, `ringing`, `early_media`, `answered`, `amd`, `machine_end`, `dtmf`,
    /// `bridged`, `unbridged`, `abandoned`, `completed`; `campaign_status`, `callback`, ….
    pub kind: String,
    pub campaign_id: Option<i64>,
    pub contact_id: Option<i64>,
    /// The contact's attempt number (a call's events).
    pub attempt: Option<i64>,
    /// The call's SIP Call-ID (a call's events, from `initiated` on).
    pub call_id: Option<String>,
    /// What the event says (an AMD verdict's `answered_by` and `decision_ms`, a completed
    /// call's outcome, SIP code, durations and RTP figures, …).
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
    /// Milliseconds since the Unix epoch.
    pub at: Millis,
}

impl From<Event> for EventView {
    fn from(e: Event) -> Self {
        EventView {
            id: e.id,
            kind: e.kind,
            campaign_id: e.campaign_id,
            contact_id: e.contact_id,
            attempt: e.attempt,
            call_id: e.call_id,
            detail: e.detail,
            at: e.at,
        }
    }
}

/// A page of events.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EventPage {
    pub items: Vec<EventView>,
    /// Pass as `after` for the next page (the last id of this one, or `after` again when the
    /// page is empty).
    pub next_after: i64,
}

/// Filters and the cursor.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct EventQuery {
    pub campaign: Option<i64>,
    pub contact: Option<i64>,
    /// One kind only.
    pub kind: Option<String>,
    /// Only events with a greater id (default 0: from the first).
    pub after: Option<i64>,
    /// 1–1000 (default 100).
    pub limit: Option<i64>,
}

/// The account's events after a cursor.
#[utoipa::path(
    get,
    path = "/v1/events",
    tag = "events",
    params(EventQuery),
    responses(
        (status = 200, description = "Events after the cursor, oldest first", body = EventPage),
        (status = 400, description = "A bad parameter (named in `field`)", body = ErrorBody),
        (status = 401, description = "No valid credentials", body = ErrorBody),
    )
)]
pub async fn list_events(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<EventQuery>,
) -> ApiResult<Json<EventPage>> {
    let limit = query.limit.unwrap_or(100);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::invalid(
            "limit",
            format!("must be between 1 and {MAX_LIMIT}"),
        ));
    }
    let after = query.after.unwrap_or(0);
    if after < 0 {
        return Err(ApiError::invalid(
            "after",
            "must be an event id (0 or more)",
        ));
    }
    let events = state
        .store
        .list_events(&EventFilter {
            account_id: Some(caller.account_id),
            campaign_id: query.campaign,
            contact_id: query.contact,
            kind: query.kind,
            after_id: Some(after),
            since: None,
            limit,
        })
        .await?;
    let next_after = events.last().map_or(after, |e| e.id);
    Ok(Json(EventPage {
        items: events.into_iter().map(EventView::from).collect(),
        next_after,
    }))
}
