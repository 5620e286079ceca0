//! Live calls of the caller's account: list them, hang one up, or hand its person to another
//! target (`POST /v1/calls/{sid}/transfer`: from an AI agent to a SIP target or agent pool;
//! the first bridge is released once the target answers). Calls are named by their
//! Twilio-shaped call SID (`CA…`), the one an AI agent gets in `start`.
//!
//! Must not: show or touch another account's calls (they answer 404 like unknown ones).

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::Caller;
use super::error::{ApiError, ApiJson, ApiPath, ApiResult, ErrorBody};
use super::AppState;
use crate::bridge::EndedBy;
use crate::flow::control::{Control, LiveCall};

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LiveCallView {
    /// The call SID (`CA…`).
    pub sid: String,
    pub to: String,
    pub from: String,
    /// queued, ringing, in-progress (Twilio's words).
    pub status: String,
    pub created_at: i64,
}

impl From<&LiveCall> for LiveCallView {
    fn from(c: &LiveCall) -> Self {
        LiveCallView {
            sid: c.call_sid.clone(),
            to: c.to.clone(),
            from: c.from.clone(),
            status: c.status().name().to_string(),
            created_at: c.created_at_ms,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct TransferInput {
    /// A number (through the campaign's trunk), a `sip:` URI, or an agent pool's name.
    pub target: String,
}

fn find(state: &AppState, caller: &Caller, sid: &str) -> ApiResult<LiveCall> {
    match state.live.get(sid) {
        Some(c) if c.account_id == Some(caller.account_id) => Ok(c),
        _ => Err(ApiError::not_found(format!("no live call {sid}"))),
    }
}

/// The account's calls in progress, oldest first.
#[utoipa::path(
    get,
    path = "/v1/calls",
    tag = "calls",
    responses(
        (status = 200, description = "Live calls", body = Vec<LiveCallView>),
        (status = 401, description = "No valid credentials", body = ErrorBody),
    )
)]
pub async fn list_calls(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<Vec<LiveCallView>>> {
    Ok(Json(
        state
            .live
            .of_account(caller.account_id)
            .iter()
            .map(LiveCallView::from)
            .collect(),
    ))
}

/// One live call.
#[utoipa::path(
    get,
    path = "/v1/calls/{sid}",
    tag = "calls",
    params(("sid" = String, Path, description = "The call SID (CA…)")),
    responses(
        (status = 200, description = "The call", body = LiveCallView),
        (status = 404, description = "No such live call (or it has ended)", body = ErrorBody),
    )
)]
pub async fn get_call(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(sid): ApiPath<String>,
) -> ApiResult<Json<LiveCallView>> {
    Ok(Json(LiveCallView::from(&find(&state, &caller, &sid)?)))
}

/// Hands the call's person to another target; the current bridge (an AI agent) is released
/// once the target answers. 202: the transfer has started.
#[utoipa::path(
    post,
    path = "/v1/calls/{sid}/transfer",
    tag = "calls",
    params(("sid" = String, Path, description = "The call SID (CA…)")),
    request_body = TransferInput,
    responses(
        (status = 202, description = "Transfer started", body = LiveCallView),
        (status = 404, description = "No such live call (or it has ended)", body = ErrorBody),
        (status = 400, description = "The target is not understood", body = ErrorBody),
    )
)]
pub async fn transfer_call(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(sid): ApiPath<String>,
    ApiJson(input): ApiJson<TransferInput>,
) -> ApiResult<(StatusCode, Json<LiveCallView>)> {
    let call = find(&state, &caller, &sid)?;
    let target = input.target.trim();
    if target.is_empty() {
        return Err(ApiError::invalid("target", "must not be empty"));
    }
    call.transfer(target)
        .map_err(|e| ApiError::invalid("target", e))?;
    Ok((StatusCode::ACCEPTED, Json(LiveCallView::from(&call))))
}

/// Hangs the call up.
#[utoipa::path(
    post,
    path = "/v1/calls/{sid}/hangup",
    tag = "calls",
    params(("sid" = String, Path, description = "The call SID (CA…)")),
    responses(
        (status = 202, description = "Hang-up requested", body = LiveCallView),
        (status = 404, description = "No such live call (or it has ended)", body = ErrorBody),
    )
)]
pub async fn hangup_call(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(sid): ApiPath<String>,
) -> ApiResult<(StatusCode, Json<LiveCallView>)> {
    let call = find(&state, &caller, &sid)?;
    if !call.send(Control::Hangup {
        by: EndedBy::System,
    }) {
        return Err(ApiError::not_found(format!("no live call {sid}")));
    }
    Ok((StatusCode::ACCEPTED, Json(LiveCallView::from(&call))))
}
