//! Goals and analyses of a campaign (itellico's Goals and Analyses tabs), and the report an
//! AI agent posts about one conversation.
//!
//! - `/v1/campaigns/{id}/goals`: one primary goal (at most one active and unarchived: a
//!   second answers 409 naming the first) and any number of secondary ones; each has a
//!   name, a question, a type (`yes_no`, `open_text`, `rating` 1–5) and the active and
//!   archived flags. `POST …/goals/{goal_id}/archive` and `…/restore` (restoring a primary
//!   goal while another is live: 409). No delete: archived goals keep their results.
//! - `/v1/campaigns/{id}/analyses`: custom analysis questions of the same three types,
//!   made active or inactive with PATCH `{"active": …}`, archived and restored the same way.
//! - `POST /v1/attempts/{id}/analysis`: the agent's report — goal outcomes (`achieved`,
//!   `partially_achieved`, `not_achieved`, `unknown`) with optional values, analysis values
//!   and a summary; values are checked against the question's type and every problem names
//!   the index and field (`goals[1].value`). A second report replaces the first.
//!   `GET` reads it back; `GET /v1/campaigns/{id}/contacts/{contact_id}/analyses` gives a
//!   contact's reports across all its conversations with its primary-goal status.
//!
//! Only the campaign owner's account sees or changes these (another account's campaign or
//! attempt answers 404).

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::auth::Caller;
use super::campaigns::load;
use super::error::{ApiError, ApiJson, ApiPath, ApiQuery, ApiResult, ErrorBody};
use super::AppState;
use crate::campaign::goals::{
    AnalysisResult, ConversationResult, GoalOutcome, GoalResult, Question, QuestionKind,
    QuestionSpec, QuestionType,
};
use crate::campaign::model::Millis;
use crate::store::{Answer, AttemptAnalysis, StoreError};

// ---------------------------------------------------------------------------------------
// Wire types.

/// A goal or an analysis question.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct QuestionView {
    pub id: i64,
    pub campaign_id: i64,
    /// primary or secondary (goals), analysis (analyses).
    pub kind: QuestionKind,
    pub name: String,
    /// What the agent is to find out.
    pub question: String,
    /// yes_no, open_text or rating (1–5).
    #[serde(rename = "type")]
    pub question_type: QuestionType,
    /// Inactive questions take no results (kept for their history).
    pub active: bool,
    pub archived: bool,
    pub created_at: Millis,
    pub updated_at: Millis,
}

impl From<Question> for QuestionView {
    fn from(q: Question) -> Self {
        QuestionView {
            id: q.id,
            campaign_id: q.campaign_id,
            kind: q.spec.kind,
            name: q.spec.name,
            question: q.spec.question,
            question_type: q.spec.question_type,
            active: q.spec.active,
            archived: q.archived,
            created_at: q.created_at,
            updated_at: q.updated_at,
        }
    }
}

/// Create and PATCH body of a goal: create needs `kind`, `name` and `type`; PATCH merges
/// the given fields.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct GoalInput {
    /// primary or secondary.
    pub kind: Option<QuestionKind>,
    pub name: Option<String>,
    pub question: Option<String>,
    /// yes_no, open_text or rating.
    #[serde(rename = "type")]
    pub question_type: Option<QuestionType>,
    /// Default true.
    pub active: Option<bool>,
    pub archived: Option<bool>,
}

/// Create and PATCH body of an analysis question: create needs `name` and `type`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct AnalysisInput {
    pub name: Option<String>,
    pub question: Option<String>,
    /// yes_no, open_text or rating.
    #[serde(rename = "type")]
    pub question_type: Option<QuestionType>,
    /// Default true; false keeps the question without asking it.
    pub active: Option<bool>,
    pub archived: Option<bool>,
}

impl From<AnalysisInput> for GoalInput {
    fn from(a: AnalysisInput) -> Self {
        GoalInput {
            kind: None,
            name: a.name,
            question: a.question,
            question_type: a.question_type,
            active: a.active,
            archived: a.archived,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct QuestionListQuery {
    /// true: only archived; false: only not archived; absent: both.
    pub archived: Option<bool>,
}

/// One goal of a report.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GoalResultInput {
    pub goal_id: i64,
    /// achieved, partially_achieved, not_achieved or unknown.
    pub outcome: GoalOutcome,
    /// The answer to the goal's question, of its type (optional).
    #[serde(default)]
    pub value: Option<serde_json::Value>,
}

/// One analysis of a report.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AnalysisResultInput {
    pub analysis_id: i64,
    /// yes_no: true/false; rating: an integer 1–5; open_text: a string of at most 4000
    /// characters.
    pub value: serde_json::Value,
}

/// What an agent reports about one conversation.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct AnalysisReportInput {
    pub goals: Vec<GoalResultInput>,
    pub analyses: Vec<AnalysisResultInput>,
    /// At most 20000 characters.
    pub summary: String,
}

/// One answer of a stored report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AnswerView {
    /// The goal's or analysis' id.
    pub id: i64,
    pub kind: QuestionKind,
    pub name: String,
    #[serde(rename = "type")]
    pub question_type: QuestionType,
    /// Goals only.
    pub outcome: Option<GoalOutcome>,
    pub value: Option<serde_json::Value>,
}

impl From<Answer> for AnswerView {
    fn from(a: Answer) -> Self {
        AnswerView {
            id: a.question_id,
            kind: a.kind,
            name: a.name,
            question_type: a.question_type,
            outcome: a.outcome,
            value: a.value,
        }
    }
}

/// A stored report about one attempt's conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AttemptAnalysisView {
    pub attempt_id: i64,
    pub campaign_id: i64,
    pub contact_id: Option<i64>,
    /// When the attempt started.
    pub started_at: Millis,
    pub summary: String,
    pub goals: Vec<AnswerView>,
    pub analyses: Vec<AnswerView>,
    /// When the first report came, and when it was last replaced.
    pub created_at: Millis,
    pub updated_at: Millis,
}

impl From<AttemptAnalysis> for AttemptAnalysisView {
    fn from(a: AttemptAnalysis) -> Self {
        AttemptAnalysisView {
            attempt_id: a.attempt_id,
            campaign_id: a.campaign_id,
            contact_id: a.contact_id,
            started_at: a.started_at,
            summary: a.summary,
            goals: a.goals.into_iter().map(AnswerView::from).collect(),
            analyses: a.analyses.into_iter().map(AnswerView::from).collect(),
            created_at: a.created_at,
            updated_at: a.updated_at,
        }
    }
}

/// A contact's reports across all its conversations.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ContactAnalysesView {
    pub contact_id: i64,
    /// The outcome of the latest analysed conversation for the campaign's primary goal
    /// (unknown when it does not say); null while none was analysed.
    pub primary_goal_status: Option<GoalOutcome>,
    /// Latest conversation first.
    pub analyses: Vec<AttemptAnalysisView>,
}

// ---------------------------------------------------------------------------------------
// Helpers.

/// The campaign, if it is the caller's (another account's reads as no campaign).
async fn own_campaign(state: &AppState, caller: &Caller, id: i64) -> ApiResult<()> {
    load(state, caller, id).await?;
    Ok(())
}

/// The attempt's campaign, if the attempt is the caller's (another account's reads as no
/// attempt).
/// An attempt named by its id or by the call SID an AI agent saw, checked like
/// [`own_attempt`]; its id.
async fn own_attempt_named(state: &AppState, caller: &Caller, name: &str) -> ApiResult<i64> {
    let id = match name.parse::<i64>() {
        Ok(id) => id,
        Err(_) if crate::bridge::agent::twilio::is_sid(name, "CA") => state
            .store
            .attempt_id_by_call_sid(name)
            .await?
            .ok_or_else(|| ApiError::not_found(format!("no attempt with call SID {name}")))?,
        Err(_) => {
            return Err(ApiError::invalid(
                "id",
                "an attempt id or a call SID (CA followed by 32 hex digits)",
            ))
        }
    };
    own_attempt(state, caller, id).await?;
    Ok(id)
}

async fn own_attempt(state: &AppState, caller: &Caller, id: i64) -> ApiResult<()> {
    super::reports::load_attempt(state, caller, id).await?;
    Ok(())
}

/// Which tab a question belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tab {
    Goals,
    Analyses,
}

impl Tab {
    fn kinds(self) -> &'static [QuestionKind] {
        match self {
            Tab::Goals => &[QuestionKind::Primary, QuestionKind::Secondary],
            Tab::Analyses => &[QuestionKind::Analysis],
        }
    }

    fn word(self) -> &'static str {
        match self {
            Tab::Goals => "goal",
            Tab::Analyses => "analysis",
        }
    }
}

/// The question of the campaign in this tab, or 404.
async fn load_question(state: &AppState, tab: Tab, campaign: i64, id: i64) -> ApiResult<Question> {
    let not_found = || {
        ApiError::not_found(format!(
            "{} {id} not found in campaign {campaign}",
            tab.word()
        ))
    };
    match state.store.get_question(campaign, id).await {
        Ok(q) if tab.kinds().contains(&q.spec.kind) => Ok(q),
        Ok(_) | Err(StoreError::NotFound(_)) => Err(not_found()),
        Err(e) => Err(e.into()),
    }
}

async fn list(
    state: &AppState,
    caller: &Caller,
    tab: Tab,
    campaign: i64,
    query: QuestionListQuery,
) -> ApiResult<Json<Vec<QuestionView>>> {
    own_campaign(state, caller, campaign).await?;
    let found = state
        .store
        .list_questions(campaign, tab.kinds(), query.archived)
        .await?;
    Ok(Json(found.into_iter().map(QuestionView::from).collect()))
}

async fn create(
    state: &AppState,
    caller: &Caller,
    tab: Tab,
    campaign: i64,
    input: GoalInput,
) -> ApiResult<(StatusCode, Json<QuestionView>)> {
    own_campaign(state, caller, campaign).await?;
    let kind = match tab {
        Tab::Analyses => QuestionKind::Analysis,
        Tab::Goals => match input.kind {
            Some(kind) if kind.is_goal() => kind,
            Some(kind) => {
                return Err(ApiError::invalid(
                    "kind",
                    format!("a goal is primary or secondary, not {kind}"),
                ))
            }
            None => {
                return Err(ApiError::invalid(
                    "kind",
                    "is required (primary or secondary)",
                ))
            }
        },
    };
    let Some(name) = input.name else {
        return Err(ApiError::invalid("name", "is required"));
    };
    let Some(question_type) = input.question_type else {
        return Err(ApiError::invalid(
            "type",
            "is required (yes_no, open_text or rating)",
        ));
    };
    if input.archived == Some(true) {
        return Err(ApiError::invalid(
            "archived",
            "a new question is not archived",
        ));
    }
    let spec = QuestionSpec {
        kind,
        name,
        question: input.question.unwrap_or_default(),
        question_type,
        active: input.active.unwrap_or(true),
    };
    let created = state
        .store
        .create_question(campaign, &spec, state.now())
        .await?;
    Ok((StatusCode::CREATED, Json(created.into())))
}

async fn update(
    state: &AppState,
    caller: &Caller,
    tab: Tab,
    campaign: i64,
    id: i64,
    input: GoalInput,
) -> ApiResult<Json<QuestionView>> {
    own_campaign(state, caller, campaign).await?;
    let before = load_question(state, tab, campaign, id).await?;
    let mut spec = before.spec;
    if let Some(kind) = input.kind {
        if !kind.is_goal() {
            return Err(ApiError::invalid(
                "kind",
                format!("a goal is primary or secondary, not {kind}"),
            ));
        }
        spec.kind = kind;
    }
    if let Some(v) = input.name {
        spec.name = v;
    }
    if let Some(v) = input.question {
        spec.question = v;
    }
    if let Some(v) = input.question_type {
        spec.question_type = v;
    }
    if let Some(v) = input.active {
        spec.active = v;
    }
    let archived = input.archived.unwrap_or(before.archived);
    let updated = state
        .store
        .update_question(campaign, id, &spec, archived, state.now())
        .await?;
    Ok(Json(updated.into()))
}

async fn set_archived(
    state: &AppState,
    caller: &Caller,
    tab: Tab,
    campaign: i64,
    id: i64,
    archived: bool,
) -> ApiResult<Json<QuestionView>> {
    update(
        state,
        caller,
        tab,
        campaign,
        id,
        GoalInput {
            archived: Some(archived),
            ..GoalInput::default()
        },
    )
    .await
}

// ---------------------------------------------------------------------------------------
// Goals.

/// The campaign's goals: the primary first, then the secondary ones.
#[utoipa::path(
    get,
    path = "/v1/campaigns/{id}/goals",
    tag = "goals",
    params(("id" = i64, Path, description = "Campaign id"), QuestionListQuery),
    responses(
        (status = 200, description = "The goals", body = Vec<QuestionView>),
        (status = 401, description = "No valid credentials", body = ErrorBody),
        (status = 404, description = "No such campaign", body = ErrorBody),
    )
)]
pub async fn list_goals(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
    ApiQuery(query): ApiQuery<QuestionListQuery>,
) -> ApiResult<Json<Vec<QuestionView>>> {
    list(&state, &caller, Tab::Goals, id, query).await
}

/// Creates a goal: `kind` primary (at most one active and unarchived) or secondary.
#[utoipa::path(
    post,
    path = "/v1/campaigns/{id}/goals",
    tag = "goals",
    params(("id" = i64, Path, description = "Campaign id")),
    request_body = GoalInput,
    responses(
        (status = 201, description = "Created", body = QuestionView),
        (status = 400, description = "A field is missing or wrong (named in `field`)", body = ErrorBody),
        (status = 401, description = "No valid credentials", body = ErrorBody),
        (status = 404, description = "No such campaign", body = ErrorBody),
        (status = 409, description = "The campaign already has an active primary goal", body = ErrorBody),
    )
)]
pub async fn create_goal(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
    ApiJson(input): ApiJson<GoalInput>,
) -> ApiResult<(StatusCode, Json<QuestionView>)> {
    create(&state, &caller, Tab::Goals, id, input).await
}

/// One goal.
#[utoipa::path(
    get,
    path = "/v1/campaigns/{id}/goals/{goal_id}",
    tag = "goals",
    params(
        ("id" = i64, Path, description = "Campaign id"),
        ("goal_id" = i64, Path, description = "Goal id"),
    ),
    responses(
        (status = 200, description = "The goal", body = QuestionView),
        (status = 401, description = "No valid credentials", body = ErrorBody),
        (status = 404, description = "No such goal in this campaign", body = ErrorBody),
    )
)]
pub async fn get_goal(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((id, goal_id)): ApiPath<(i64, i64)>,
) -> ApiResult<Json<QuestionView>> {
    own_campaign(&state, &caller, id).await?;
    Ok(Json(
        load_question(&state, Tab::Goals, id, goal_id).await?.into(),
    ))
}

/// Partial update of a goal (kind primary ⇄ secondary, name, question, type, active,
/// archived); making a primary goal live while another is: 409.
#[utoipa::path(
    patch,
    path = "/v1/campaigns/{id}/goals/{goal_id}",
    tag = "goals",
    params(
        ("id" = i64, Path, description = "Campaign id"),
        ("goal_id" = i64, Path, description = "Goal id"),
    ),
    request_body = GoalInput,
    responses(
        (status = 200, description = "Updated", body = QuestionView),
        (status = 400, description = "A field is wrong (named in `field`)", body = ErrorBody),
        (status = 401, description = "No valid credentials", body = ErrorBody),
        (status = 404, description = "No such goal in this campaign", body = ErrorBody),
        (status = 409, description = "Another primary goal is active", body = ErrorBody),
    )
)]
pub async fn update_goal(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((id, goal_id)): ApiPath<(i64, i64)>,
    ApiJson(input): ApiJson<GoalInput>,
) -> ApiResult<Json<QuestionView>> {
    update(&state, &caller, Tab::Goals, id, goal_id, input).await
}

/// Archives a goal (it takes no results; its history stays).
#[utoipa::path(
    post,
    path = "/v1/campaigns/{id}/goals/{goal_id}/archive",
    tag = "goals",
    params(
        ("id" = i64, Path, description = "Campaign id"),
        ("goal_id" = i64, Path, description = "Goal id"),
    ),
    responses(
        (status = 200, description = "The archived goal", body = QuestionView),
        (status = 401, description = "No valid credentials", body = ErrorBody),
        (status = 404, description = "No such goal in this campaign", body = ErrorBody),
    )
)]
pub async fn archive_goal(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((id, goal_id)): ApiPath<(i64, i64)>,
) -> ApiResult<Json<QuestionView>> {
    set_archived(&state, &caller, Tab::Goals, id, goal_id, true).await
}

/// Restores an archived goal (a primary goal while another is live: 409).
#[utoipa::path(
    post,
    path = "/v1/campaigns/{id}/goals/{goal_id}/restore",
    tag = "goals",
    params(
        ("id" = i64, Path, description = "Campaign id"),
        ("goal_id" = i64, Path, description = "Goal id"),
    ),
    responses(
        (status = 200, description = "The restored goal", body = QuestionView),
        (status = 401, description = "No valid credentials", body = ErrorBody),
        (status = 404, description = "No such goal in this campaign", body = ErrorBody),
        (status = 409, description = "Another primary goal is active", body = ErrorBody),
    )
)]
pub async fn restore_goal(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((id, goal_id)): ApiPath<(i64, i64)>,
) -> ApiResult<Json<QuestionView>> {
    set_archived(&state, &caller, Tab::Goals, id, goal_id, false).await
}

// ---------------------------------------------------------------------------------------
// Analyses.

/// The campaign's analysis questions.
#[utoipa::path(
    get,
    path = "/v1/campaigns/{id}/analyses",
    tag = "goals",
    params(("id" = i64, Path, description = "Campaign id"), QuestionListQuery),
    responses(
        (status = 200, description = "The analyses", body = Vec<QuestionView>),
        (status = 401, description = "No valid credentials", body = ErrorBody),
        (status = 404, description = "No such campaign", body = ErrorBody),
    )
)]
pub async fn list_analyses(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
    ApiQuery(query): ApiQuery<QuestionListQuery>,
) -> ApiResult<Json<Vec<QuestionView>>> {
    list(&state, &caller, Tab::Analyses, id, query).await
}

/// Creates an analysis question.
#[utoipa::path(
    post,
    path = "/v1/campaigns/{id}/analyses",
    tag = "goals",
    params(("id" = i64, Path, description = "Campaign id")),
    request_body = AnalysisInput,
    responses(
        (status = 201, description = "Created", body = QuestionView),
        (status = 400, description = "A field is missing or wrong (named in `field`)", body = ErrorBody),
        (status = 401, description = "No valid credentials", body = ErrorBody),
        (status = 404, description = "No such campaign", body = ErrorBody),
    )
)]
pub async fn create_analysis(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
    ApiJson(input): ApiJson<AnalysisInput>,
) -> ApiResult<(StatusCode, Json<QuestionView>)> {
    create(&state, &caller, Tab::Analyses, id, input.into()).await
}

/// One analysis question.
#[utoipa::path(
    get,
    path = "/v1/campaigns/{id}/analyses/{analysis_id}",
    tag = "goals",
    params(
        ("id" = i64, Path, description = "Campaign id"),
        ("analysis_id" = i64, Path, description = "Analysis id"),
    ),
    responses(
        (status = 200, description = "The analysis question", body = QuestionView),
        (status = 401, description = "No valid credentials", body = ErrorBody),
        (status = 404, description = "No such analysis in this campaign", body = ErrorBody),
    )
)]
pub async fn get_analysis(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((id, analysis_id)): ApiPath<(i64, i64)>,
) -> ApiResult<Json<QuestionView>> {
    own_campaign(&state, &caller, id).await?;
    Ok(Json(
        load_question(&state, Tab::Analyses, id, analysis_id)
            .await?
            .into(),
    ))
}

/// Partial update of an analysis question (`{"active": false}` turns it off without
/// deleting it).
#[utoipa::path(
    patch,
    path = "/v1/campaigns/{id}/analyses/{analysis_id}",
    tag = "goals",
    params(
        ("id" = i64, Path, description = "Campaign id"),
        ("analysis_id" = i64, Path, description = "Analysis id"),
    ),
    request_body = AnalysisInput,
    responses(
        (status = 200, description = "Updated", body = QuestionView),
        (status = 400, description = "A field is wrong (named in `field`)", body = ErrorBody),
        (status = 401, description = "No valid credentials", body = ErrorBody),
        (status = 404, description = "No such analysis in this campaign", body = ErrorBody),
    )
)]
pub async fn update_analysis(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((id, analysis_id)): ApiPath<(i64, i64)>,
    ApiJson(input): ApiJson<AnalysisInput>,
) -> ApiResult<Json<QuestionView>> {
    update(
        &state,
        &caller,
        Tab::Analyses,
        id,
        analysis_id,
        input.into(),
    )
    .await
}

/// Archives an analysis question.
#[utoipa::path(
    post,
    path = "/v1/campaigns/{id}/analyses/{analysis_id}/archive",
    tag = "goals",
    params(
        ("id" = i64, Path, description = "Campaign id"),
        ("analysis_id" = i64, Path, description = "Analysis id"),
    ),
    responses(
        (status = 200, description = "The archived analysis", body = QuestionView),
        (status = 401, description = "No valid credentials", body = ErrorBody),
        (status = 404, description = "No such analysis in this campaign", body = ErrorBody),
    )
)]
pub async fn archive_analysis(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((id, analysis_id)): ApiPath<(i64, i64)>,
) -> ApiResult<Json<QuestionView>> {
    set_archived(&state, &caller, Tab::Analyses, id, analysis_id, true).await
}

/// Restores an archived analysis question.
#[utoipa::path(
    post,
    path = "/v1/campaigns/{id}/analyses/{analysis_id}/restore",
    tag = "goals",
    params(
        ("id" = i64, Path, description = "Campaign id"),
        ("analysis_id" = i64, Path, description = "Analysis id"),
    ),
    responses(
        (status = 200, description = "The restored analysis", body = QuestionView),
        (status = 401, description = "No valid credentials", body = ErrorBody),
        (status = 404, description = "No such analysis in this campaign", body = ErrorBody),
    )
)]
pub async fn restore_analysis(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((id, analysis_id)): ApiPath<(i64, i64)>,
) -> ApiResult<Json<QuestionView>> {
    set_archived(&state, &caller, Tab::Analyses, id, analysis_id, false).await
}

// ---------------------------------------------------------------------------------------
// Reports about attempts.

/// The agent's report about one attempt's conversation (replaces an earlier one).
#[utoipa::path(
    post,
    path = "/v1/attempts/{id}/analysis",
    tag = "goals",
    params(("id" = String, Path, description = "Attempt id, or the call SID (CA…) the AI agent got in `start`")),
    request_body = AnalysisReportInput,
    responses(
        (status = 200, description = "The stored report", body = AttemptAnalysisView),
        (status = 400, description = "A value does not fit (the index and field are named in `field`, e.g. goals[1].value)", body = ErrorBody),
        (status = 401, description = "No valid credentials", body = ErrorBody),
        (status = 404, description = "No such attempt", body = ErrorBody),
        (status = 409, description = "The attempt belongs to no campaign", body = ErrorBody),
    )
)]
pub async fn post_attempt_analysis(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(input): ApiJson<AnalysisReportInput>,
) -> ApiResult<Json<AttemptAnalysisView>> {
    let id = own_attempt_named(&state, &caller, &id).await?;
    let result = ConversationResult {
        goals: input
            .goals
            .into_iter()
            .map(|g| GoalResult {
                goal_id: g.goal_id,
                outcome: g.outcome,
                value: g.value,
            })
            .collect(),
        analyses: input
            .analyses
            .into_iter()
            .map(|a| AnalysisResult {
                analysis_id: a.analysis_id,
                value: a.value,
            })
            .collect(),
        summary: input.summary,
    };
    let stored = state
        .store
        .save_attempt_analysis(id, &result, state.now())
        .await?;
    Ok(Json(stored.into()))
}

/// The report about one attempt (404 when none was posted).
#[utoipa::path(
    get,
    path = "/v1/attempts/{id}/analysis",
    tag = "goals",
    params(("id" = String, Path, description = "Attempt id, or the call SID (CA…) the AI agent got in `start`")),
    responses(
        (status = 200, description = "The report", body = AttemptAnalysisView),
        (status = 401, description = "No valid credentials", body = ErrorBody),
        (status = 404, description = "No such attempt, or no report for it", body = ErrorBody),
    )
)]
pub async fn get_attempt_analysis(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<AttemptAnalysisView>> {
    let id = own_attempt_named(&state, &caller, &id).await?;
    let found = state
        .store
        .get_attempt_analysis(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("attempt {id} has no analysis")))?;
    Ok(Json(found.into()))
}

/// A contact's reports across all its conversations, with its primary-goal status.
#[utoipa::path(
    get,
    path = "/v1/campaigns/{id}/contacts/{contact_id}/analyses",
    tag = "goals",
    params(
        ("id" = i64, Path, description = "Campaign id"),
        ("contact_id" = i64, Path, description = "Contact id"),
    ),
    responses(
        (status = 200, description = "The contact's reports", body = ContactAnalysesView),
        (status = 401, description = "No valid credentials", body = ErrorBody),
        (status = 404, description = "No such contact in this campaign", body = ErrorBody),
    )
)]
pub async fn contact_analyses(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((id, contact_id)): ApiPath<(i64, i64)>,
) -> ApiResult<Json<ContactAnalysesView>> {
    super::contacts::load_contact(&state, &caller, id, contact_id).await?;
    let statuses = state.store.primary_goal_statuses(id, &[contact_id]).await?;
    let analyses = state.store.contact_analyses(contact_id).await?;
    Ok(Json(ContactAnalysesView {
        contact_id,
        primary_goal_status: statuses.get(&contact_id).copied(),
        analyses: analyses
            .into_iter()
            .map(AttemptAnalysisView::from)
            .collect(),
    }))
}
