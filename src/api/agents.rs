//! SIP agents and agent pools, per account: the people answered calls are bridged to.
//!
//! `/v1/agents/sip`: list, create, read, partial update (PATCH merges the given fields and
//! validates the result), delete; `POST /v1/agents/sip/{id}/state {"state": "paused"}`
//! changes only the state (`available | paused | busy | offline`). `/v1/agents/pools`: a
//! pool is a name and an ordered list of agent ids; a campaign's `connect_to` names it.
//! Every route sees only the caller's account's agents and pools (another account's answer
//! 404). Every change wakes the campaign engine (a freed agent may be given a call).

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::auth::Caller;
use super::error::{ApiError, ApiJson, ApiPath, ApiQuery, ApiResult, ErrorBody};
use super::{AppState, PageQuery, Paged};
use crate::campaign::agents::{AgentCounts, AgentSpec, Pool};
use crate::campaign::model::{AgentState, Millis};
use crate::store::{Agent, AgentPool};

/// An agent as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AgentView {
    pub id: i64,
    pub name: String,
    /// A SIP URI or a phone number.
    pub target: String,
    /// Trunk profile for a number target.
    pub profile: String,
    pub state: AgentState,
    pub wrap_up_secs: i64,
    /// Available and out of its wrap-up now: the next caller may get it.
    pub free: bool,
    /// When the state last changed (ms since the epoch).
    pub state_since: Millis,
    /// When it last became free to take a call.
    pub idle_since: Option<Millis>,
    pub last_call_end_at: Option<Millis>,
    /// Calls it talked on, and their total talk time.
    pub calls: i64,
    pub talk_ms: i64,
    pub created_at: Millis,
    pub updated_at: Millis,
}

impl AgentView {
    fn new(a: Agent, now: Millis) -> AgentView {
        let free = a.pool_agent().is_free(now);
        AgentView {
            id: a.id,
            name: a.spec.name,
            target: a.spec.target,
            profile: a.spec.profile,
            state: a.spec.state,
            wrap_up_secs: a.spec.wrap_up_secs,
            free,
            state_since: a.state_since,
            idle_since: a.idle_since,
            last_call_end_at: a.last_call_end_at,
            calls: a.calls,
            talk_ms: a.talk_ms,
            created_at: a.created_at,
            updated_at: a.updated_at,
        }
    }
}

/// Create and PATCH body: absent fields keep their value (create: `state` defaults to
/// `offline`, `wrap_up_secs` to 0).
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct AgentInput {
    pub name: Option<String>,
    /// `sip:alice@pbx.example.com` or a phone number.
    pub target: Option<String>,
    /// Trunk profile name (required for a phone number target).
    pub profile: Option<String>,
    pub state: Option<AgentState>,
    /// Seconds after a call before the agent takes the next one (0–3600).
    pub wrap_up_secs: Option<i64>,
}

impl AgentInput {
    fn apply(self, spec: &mut AgentSpec) {
        if let Some(v) = self.name {
            spec.name = v;
        }
        if let Some(v) = self.target {
            spec.target = v;
        }
        if let Some(v) = self.profile {
            spec.profile = v;
        }
        if let Some(v) = self.state {
            spec.state = v;
        }
        if let Some(v) = self.wrap_up_secs {
            spec.wrap_up_secs = v;
        }
    }
}

/// `{"state": "paused"}`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentStateInput {
    pub state: AgentState,
}

#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AgentListQuery {
    /// Only agents in this state.
    pub state: Option<AgentState>,
    pub limit: Option<i64>,
    pub offset: Option<i64>,
}

/// Agents of a pool by what they can do now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AgentCountsView {
    /// Available and out of wrap-up.
    pub free: u32,
    /// Available, still in wrap-up.
    pub wrap_up: u32,
    pub busy: u32,
    /// Paused or offline.
    pub away: u32,
}

impl From<AgentCounts> for AgentCountsView {
    fn from(c: AgentCounts) -> Self {
        AgentCountsView {
            free: c.free,
            wrap_up: c.wrap_up,
            busy: c.busy,
            away: c.away,
        }
    }
}

/// A pool as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PoolView {
    pub id: i64,
    /// What a campaign's `connect_to` names.
    pub name: String,
    /// Its agents, in order.
    pub agent_ids: Vec<i64>,
    pub agents: AgentCountsView,
    pub created_at: Millis,
    pub updated_at: Millis,
}

/// Create body (both required) and PATCH body (either).
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct PoolInput {
    pub name: Option<String>,
    pub agent_ids: Option<Vec<i64>>,
}

async fn pool_view(state: &AppState, account: i64, pool: AgentPool) -> ApiResult<PoolView> {
    let now = state.now();
    let mut agents = Vec::with_capacity(pool.agent_ids.len());
    for id in &pool.agent_ids {
        agents.push(
            state
                .store
                .get_agent(Some(account), *id)
                .await?
                .pool_agent(),
        );
    }
    Ok(PoolView {
        id: pool.id,
        name: pool.name,
        agent_ids: pool.agent_ids,
        agents: Pool::new(agents).counts(now).into(),
        created_at: pool.created_at,
        updated_at: pool.updated_at,
    })
}

// ---------------------------------------------------------------------------------------
// Agents.

/// The account's agents by name.
#[utoipa::path(
    get,
    path = "/v1/agents/sip",
    tag = "agents",
    params(AgentListQuery),
    responses(
        (status = 200, description = "A page of agents", body = Paged<AgentView>),
        (status = 400, description = "A bad parameter", body = ErrorBody),
        (status = 401, description = "No valid credentials", body = ErrorBody),
    )
)]
pub async fn list_agents(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<AgentListQuery>,
) -> ApiResult<Json<Paged<AgentView>>> {
    let page = PageQuery {
        limit: query.limit,
        offset: query.offset,
    }
    .page()?;
    let found = state
        .store
        .list_agents(Some(caller.account_id), query.state, page)
        .await?;
    let now = state.now();
    let items = found
        .items
        .into_iter()
        .map(|a| AgentView::new(a, now))
        .collect();
    Ok(Json(Paged::new(items, found.total, page)))
}

/// Creates an agent.
#[utoipa::path(
    post,
    path = "/v1/agents/sip",
    tag = "agents",
    request_body = AgentInput,
    responses(
        (status = 201, description = "Created", body = AgentView),
        (status = 400, description = "A field is missing or wrong (named in `field`)", body = ErrorBody),
        (status = 401, description = "No valid credentials", body = ErrorBody),
        (status = 409, description = "An agent of that name exists", body = ErrorBody),
    )
)]
pub async fn create_agent(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(input): ApiJson<AgentInput>,
) -> ApiResult<(StatusCode, Json<AgentView>)> {
    if input.name.is_none() {
        return Err(ApiError::invalid("name", "is required"));
    }
    if input.target.is_none() {
        return Err(ApiError::invalid("target", "is required"));
    }
    let mut spec = AgentSpec::default();
    input.apply(&mut spec);
    let now = state.now();
    let agent = state
        .store
        .create_agent(Some(caller.account_id), &spec, now)
        .await?;
    state.wake_engine();
    Ok((StatusCode::CREATED, Json(AgentView::new(agent, now))))
}

/// One agent.
#[utoipa::path(
    get,
    path = "/v1/agents/sip/{id}",
    tag = "agents",
    params(("id" = i64, Path, description = "Agent id")),
    responses(
        (status = 200, description = "The agent", body = AgentView),
        (status = 401, description = "No valid credentials", body = ErrorBody),
        (status = 404, description = "No such agent", body = ErrorBody),
    )
)]
pub async fn get_agent(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<AgentView>> {
    let agent = state.store.get_agent(Some(caller.account_id), id).await?;
    Ok(Json(AgentView::new(agent, state.now())))
}

/// Partial update: the given fields are merged and the result validated.
#[utoipa::path(
    patch,
    path = "/v1/agents/sip/{id}",
    tag = "agents",
    params(("id" = i64, Path, description = "Agent id")),
    request_body = AgentInput,
    responses(
        (status = 200, description = "Updated", body = AgentView),
        (status = 400, description = "A field is wrong (named in `field`)", body = ErrorBody),
        (status = 401, description = "No valid credentials", body = ErrorBody),
        (status = 404, description = "No such agent", body = ErrorBody),
        (status = 409, description = "An agent of that name exists", body = ErrorBody),
    )
)]
pub async fn update_agent(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
    ApiJson(input): ApiJson<AgentInput>,
) -> ApiResult<Json<AgentView>> {
    let account = Some(caller.account_id);
    let mut spec = state.store.get_agent(account, id).await?.spec;
    input.apply(&mut spec);
    let now = state.now();
    let agent = state.store.update_agent(account, id, &spec, now).await?;
    state.wake_engine();
    Ok(Json(AgentView::new(agent, now)))
}

/// Sets the agent's state (`available`, `paused`, `busy`, `offline`).
#[utoipa::path(
    post,
    path = "/v1/agents/sip/{id}/state",
    tag = "agents",
    params(("id" = i64, Path, description = "Agent id")),
    request_body = AgentStateInput,
    responses(
        (status = 200, description = "The agent in its new state", body = AgentView),
        (status = 400, description = "Not a state", body = ErrorBody),
        (status = 401, description = "No valid credentials", body = ErrorBody),
        (status = 404, description = "No such agent", body = ErrorBody),
    )
)]
pub async fn set_agent_state(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
    ApiJson(input): ApiJson<AgentStateInput>,
) -> ApiResult<Json<AgentView>> {
    let now = state.now();
    let agent = state
        .store
        .set_agent_state(Some(caller.account_id), id, input.state, now)
        .await?;
    state.wake_engine();
    Ok(Json(AgentView::new(agent, now)))
}

/// Deletes an agent (it leaves its pools).
#[utoipa::path(
    delete,
    path = "/v1/agents/sip/{id}",
    tag = "agents",
    params(("id" = i64, Path, description = "Agent id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "No valid credentials", body = ErrorBody),
        (status = 404, description = "No such agent", body = ErrorBody),
    )
)]
pub async fn delete_agent(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<StatusCode> {
    state
        .store
        .delete_agent(Some(caller.account_id), id)
        .await?;
    state.wake_engine();
    Ok(StatusCode::NO_CONTENT)
}

// ---------------------------------------------------------------------------------------
// Pools.

/// The account's pools by name, with their agents' counts.
#[utoipa::path(
    get,
    path = "/v1/agents/pools",
    tag = "agents",
    responses(
        (status = 200, description = "Every pool of the account", body = Vec<PoolView>),
        (status = 401, description = "No valid credentials", body = ErrorBody),
    )
)]
pub async fn list_pools(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<Vec<PoolView>>> {
    let pools = state.store.list_pools(Some(caller.account_id)).await?;
    let mut views = Vec::with_capacity(pools.len());
    for pool in pools {
        views.push(pool_view(&state, caller.account_id, pool).await?);
    }
    Ok(Json(views))
}

/// Creates a pool of the account's agents.
#[utoipa::path(
    post,
    path = "/v1/agents/pools",
    tag = "agents",
    request_body = PoolInput,
    responses(
        (status = 201, description = "Created", body = PoolView),
        (status = 400, description = "A field is missing or wrong (named in `field`)", body = ErrorBody),
        (status = 401, description = "No valid credentials", body = ErrorBody),
        (status = 409, description = "A pool of that name exists", body = ErrorBody),
    )
)]
pub async fn create_pool(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(input): ApiJson<PoolInput>,
) -> ApiResult<(StatusCode, Json<PoolView>)> {
    let Some(name) = input.name else {
        return Err(ApiError::invalid("name", "is required"));
    };
    let ids = input.agent_ids.unwrap_or_default();
    let pool = state
        .store
        .create_pool(Some(caller.account_id), &name, &ids, state.now())
        .await?;
    state.wake_engine();
    Ok((
        StatusCode::CREATED,
        Json(pool_view(&state, caller.account_id, pool).await?),
    ))
}

/// One pool.
#[utoipa::path(
    get,
    path = "/v1/agents/pools/{id}",
    tag = "agents",
    params(("id" = i64, Path, description = "Pool id")),
    responses(
        (status = 200, description = "The pool", body = PoolView),
        (status = 401, description = "No valid credentials", body = ErrorBody),
        (status = 404, description = "No such pool", body = ErrorBody),
    )
)]
pub async fn get_pool(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<PoolView>> {
    let pool = state.store.get_pool(Some(caller.account_id), id).await?;
    Ok(Json(pool_view(&state, caller.account_id, pool).await?))
}

/// Renames a pool and/or replaces its agents (in the order given).
#[utoipa::path(
    patch,
    path = "/v1/agents/pools/{id}",
    tag = "agents",
    params(("id" = i64, Path, description = "Pool id")),
    request_body = PoolInput,
    responses(
        (status = 200, description = "Updated", body = PoolView),
        (status = 400, description = "A field is wrong (named in `field`)", body = ErrorBody),
        (status = 401, description = "No valid credentials", body = ErrorBody),
        (status = 404, description = "No such pool", body = ErrorBody),
        (status = 409, description = "A pool of that name exists", body = ErrorBody),
    )
)]
pub async fn update_pool(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
    ApiJson(input): ApiJson<PoolInput>,
) -> ApiResult<Json<PoolView>> {
    let pool = state
        .store
        .update_pool(
            Some(caller.account_id),
            id,
            input.name.as_deref(),
            input.agent_ids.as_deref(),
            state.now(),
        )
        .await?;
    state.wake_engine();
    Ok(Json(pool_view(&state, caller.account_id, pool).await?))
}

/// Deletes a pool (its agents stay).
#[utoipa::path(
    delete,
    path = "/v1/agents/pools/{id}",
    tag = "agents",
    params(("id" = i64, Path, description = "Pool id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "No valid credentials", body = ErrorBody),
        (status = 404, description = "No such pool", body = ErrorBody),
    )
)]
pub async fn delete_pool(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<StatusCode> {
    state.store.delete_pool(Some(caller.account_id), id).await?;
    state.wake_engine();
    Ok(StatusCode::NO_CONTENT)
}
