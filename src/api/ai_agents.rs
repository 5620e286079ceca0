//! AI voice agents, per account (itellico's "Agent": which AI agent handles the calls).
//!
//! `/v1/agents/ai`: list, create, read, partial update (PATCH merges the given fields and
//! validates the result), delete. An agent has a kind (`twilio_ws`, `l16_ws`,
//! `webrtc_smallwebrtc`, `webrtc_whip`), a URL of the kind's scheme, custom parameters sent
//! to it, an auth header given by the header's name and the name of the environment
//! variable holding its value (`auth_header_env`: the value is read when a call starts, never
//! sent to or stored by the API; `auth_header_env_set` says whether the server has it),
//! the L16 rate, and what happens when it closes (`hangup`, or `connect` the person to
//! `handoff_target`: a SIP URI, a number or an agent pool of the account). A campaign names
//! one by `ai_agent_id`; deleting an agent a campaign names answers 409 naming the
//! campaigns. Every route sees only the caller's account's agents (another's answer 404).

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;

use super::auth::Caller;
use super::error::{ApiError, ApiJson, ApiPath, ApiQuery, ApiResult, ErrorBody};
use super::{AppState, PageQuery, Paged};
use crate::campaign::ai::{AiAgentKind, AiAgentSpec, OnAgentClose, DEFAULT_L16_SAMPLE_RATE};
use crate::campaign::model::Millis;
use crate::store::AiAgent;

/// An AI agent as the API shows it (never the auth header's value).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AiAgentView {
    pub id: i64,
    pub name: String,
    pub kind: AiAgentKind,
    /// ws:// or wss:// (WebSocket kinds), http:// or https:// (WebRTC kinds).
    pub url: String,
    /// Sent to the agent with every call (Twilio `customParameters`, the L16 metadata,
    /// SmallWebRTC `request_data`).
    pub custom_parameters: BTreeMap<String, String>,
    /// The header the agent authenticates with.
    pub auth_header_name: Option<String>,
    /// The environment variable (of the server) holding that header's value.
    pub auth_header_env: Option<String>,
    /// Whether that variable is set in the server's environment now (null: no auth
    /// header).
    pub auth_header_env_set: Option<bool>,
    /// L16 only: 8000, 16000 or 24000.
    pub sample_rate: Option<u32>,
    pub on_agent_close: OnAgentClose,
    /// Where the person goes when the agent closes and on_agent_close is connect.
    pub handoff_target: Option<String>,
    pub created_at: Millis,
    pub updated_at: Millis,
}

impl From<AiAgent> for AiAgentView {
    fn from(a: AiAgent) -> Self {
        let s = a.spec;
        let env_set = s
            .auth_header_env
            .as_deref()
            .map(|name| std::env::var_os(name).is_some());
        AiAgentView {
            id: a.id,
            name: s.name,
            kind: s.kind,
            url: s.url,
            custom_parameters: s.custom_parameters,
            auth_header_name: s.auth_header_name,
            auth_header_env: s.auth_header_env,
            auth_header_env_set: env_set,
            sample_rate: s.sample_rate,
            on_agent_close: s.on_agent_close,
            handoff_target: s.handoff_target,
            created_at: a.created_at,
            updated_at: a.updated_at,
        }
    }
}

/// Absent → `None`; `null` → `Some(None)`; a value → `Some(Some(v))`.
fn nullable<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// Create and PATCH body: absent fields keep their value (create: kind `twilio_ws`,
/// on_agent_close `hangup`, an L16 agent's rate 8000); `null` clears a nullable field.
/// There is no field for the auth header's value: name the environment variable that
/// holds it.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct AiAgentInput {
    pub name: Option<String>,
    pub kind: Option<AiAgentKind>,
    pub url: Option<String>,
    /// String → string; null clears.
    #[serde(deserialize_with = "nullable")]
    #[schema(value_type = Option<BTreeMap<String, String>>)]
    pub custom_parameters: Option<Option<BTreeMap<String, String>>>,
    /// `Authorization`, `X-Api-Key`, … (with auth_header_env).
    #[serde(deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    pub auth_header_name: Option<Option<String>>,
    /// The environment variable holding the header's value (letters, digits, `_`).
    #[serde(deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    pub auth_header_env: Option<Option<String>>,
    /// L16 only: 8000, 16000 or 24000.
    #[serde(deserialize_with = "nullable")]
    #[schema(value_type = Option<u32>)]
    pub sample_rate: Option<Option<u32>>,
    pub on_agent_close: Option<OnAgentClose>,
    /// A SIP URI, a number or an agent pool name (required for on_agent_close connect).
    #[serde(deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    pub handoff_target: Option<Option<String>>,
}

impl AiAgentInput {
    /// Merges the given fields into `spec`. An L16 agent without a rate gets 8000; a kind
    /// changed away from L16 drops the rate unless one is given (then validation names it).
    fn apply(self, spec: &mut AiAgentSpec) {
        let rate_given = self.sample_rate.is_some();
        if let Some(v) = self.name {
            spec.name = v;
        }
        if let Some(v) = self.kind {
            spec.kind = v;
        }
        if let Some(v) = self.url {
            spec.url = v;
        }
        if let Some(v) = self.custom_parameters {
            spec.custom_parameters = v.unwrap_or_default();
        }
        if let Some(v) = self.auth_header_name {
            spec.auth_header_name = v;
        }
        if let Some(v) = self.auth_header_env {
            spec.auth_header_env = v;
        }
        if let Some(v) = self.sample_rate {
            spec.sample_rate = v;
        }
        if let Some(v) = self.on_agent_close {
            spec.on_agent_close = v;
        }
        if let Some(v) = self.handoff_target {
            spec.handoff_target = v;
        }
        if spec.kind == AiAgentKind::L16Ws {
            spec.sample_rate.get_or_insert(DEFAULT_L16_SAMPLE_RATE);
        } else if !rate_given {
            spec.sample_rate = None;
        }
    }
}

/// A hand-off to an agent pool must name one of the account's pools.
async fn check_handoff(state: &AppState, account: i64, spec: &AiAgentSpec) -> ApiResult<()> {
    spec.validate()?;
    if let Some(pool) = spec.handoff_pool() {
        if state
            .store
            .pool_by_name(Some(account), &pool)
            .await?
            .is_none()
        {
            return Err(ApiError::invalid(
                "handoff_target",
                format!("{pool:?} is not a sip: URI, a number or an agent pool of this account"),
            ));
        }
    }
    Ok(())
}

/// The account's AI agents by name.
#[utoipa::path(
    get,
    path = "/v1/agents/ai",
    tag = "agents",
    params(PageQuery),
    responses(
        (status = 200, description = "A page of AI agents", body = Paged<AiAgentView>),
        (status = 400, description = "A bad parameter", body = ErrorBody),
        (status = 401, description = "No valid credentials", body = ErrorBody),
    )
)]
pub async fn list_ai_agents(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> ApiResult<Json<Paged<AiAgentView>>> {
    let page = query.page()?;
    let found = state
        .store
        .list_ai_agents(Some(caller.account_id), page)
        .await?;
    let items = found.items.into_iter().map(AiAgentView::from).collect();
    Ok(Json(Paged::new(items, found.total, page)))
}

/// Creates an AI agent.
#[utoipa::path(
    post,
    path = "/v1/agents/ai",
    tag = "agents",
    request_body = AiAgentInput,
    responses(
        (status = 201, description = "Created", body = AiAgentView),
        (status = 400, description = "A field is missing or wrong (named in `field`)", body = ErrorBody),
        (status = 401, description = "No valid credentials", body = ErrorBody),
        (status = 409, description = "An AI agent of that name exists", body = ErrorBody),
    )
)]
pub async fn create_ai_agent(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(input): ApiJson<AiAgentInput>,
) -> ApiResult<(StatusCode, Json<AiAgentView>)> {
    if input.name.is_none() {
        return Err(ApiError::invalid("name", "is required"));
    }
    if input.url.is_none() {
        return Err(ApiError::invalid("url", "is required"));
    }
    let mut spec = AiAgentSpec::default();
    input.apply(&mut spec);
    check_handoff(&state, caller.account_id, &spec).await?;
    let agent = state
        .store
        .create_ai_agent(Some(caller.account_id), &spec, state.now())
        .await?;
    Ok((StatusCode::CREATED, Json(agent.into())))
}

/// One AI agent.
#[utoipa::path(
    get,
    path = "/v1/agents/ai/{id}",
    tag = "agents",
    params(("id" = i64, Path, description = "AI agent id")),
    responses(
        (status = 200, description = "The AI agent", body = AiAgentView),
        (status = 401, description = "No valid credentials", body = ErrorBody),
        (status = 404, description = "No such AI agent", body = ErrorBody),
    )
)]
pub async fn get_ai_agent(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<AiAgentView>> {
    let agent = state
        .store
        .get_ai_agent(Some(caller.account_id), id)
        .await?;
    Ok(Json(agent.into()))
}

/// Partial update: the given fields are merged and the result validated. Campaigns
/// naming the agent use the new settings from their next call.
#[utoipa::path(
    patch,
    path = "/v1/agents/ai/{id}",
    tag = "agents",
    params(("id" = i64, Path, description = "AI agent id")),
    request_body = AiAgentInput,
    responses(
        (status = 200, description = "Updated", body = AiAgentView),
        (status = 400, description = "A field is wrong (named in `field`)", body = ErrorBody),
        (status = 401, description = "No valid credentials", body = ErrorBody),
        (status = 404, description = "No such AI agent", body = ErrorBody),
        (status = 409, description = "An AI agent of that name exists", body = ErrorBody),
    )
)]
pub async fn update_ai_agent(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
    ApiJson(input): ApiJson<AiAgentInput>,
) -> ApiResult<Json<AiAgentView>> {
    let account = Some(caller.account_id);
    let mut spec = state.store.get_ai_agent(account, id).await?.spec;
    input.apply(&mut spec);
    check_handoff(&state, caller.account_id, &spec).await?;
    let agent = state
        .store
        .update_ai_agent(account, id, &spec, state.now())
        .await?;
    state.wake_engine();
    Ok(Json(agent.into()))
}

/// Deletes an AI agent no campaign names (409 naming the campaigns that do).
#[utoipa::path(
    delete,
    path = "/v1/agents/ai/{id}",
    tag = "agents",
    params(("id" = i64, Path, description = "AI agent id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "No valid credentials", body = ErrorBody),
        (status = 404, description = "No such AI agent", body = ErrorBody),
        (status = 409, description = "Campaigns use the agent (named in the message)", body = ErrorBody),
    )
)]
pub async fn delete_ai_agent(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<StatusCode> {
    state
        .store
        .delete_ai_agent(Some(caller.account_id), id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
