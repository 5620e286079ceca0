//! The OpenAPI 3.1 document (utoipa): every route is registered through
//! [`api_router`], which builds the axum routes and their documentation from the same
//! `#[utoipa::path]` handlers, so the document cannot miss a route the server answers.
//!
//! The model's words (statuses, actions, AMD modes, interval units) get string-enum schemas
//! here, written by hand from their `ALL` lists, so the document lists exactly the values
//! the API writes.

use std::borrow::Cow;
use std::sync::OnceLock;

use axum::extract::DefaultBodyLimit;
use axum::http::header;
use axum::response::IntoResponse;
use utoipa::openapi::schema::{Object, ObjectBuilder, Schema, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{RefOr, Tag};
use utoipa::{PartialSchema, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{
    agents, ai_agents, auth, calls, campaigns, contacts, dnc, events, exports, goals, import, keys,
    live, media, node, numbers, reports, schedules, trunks, webhooks, AppState,
};
use crate::campaign::ai::{AiAgentKind, OnAgentClose};
use crate::campaign::goals::{GoalOutcome, QuestionKind, QuestionType};
use crate::campaign::model::{
    AgentState, AmdMode, CampaignAction, CampaignStatus, ContactStatus, EndedBy, IntervalUnit,
    MachineAction, Pacing, Transfer,
};

macro_rules! word_schema {
    ($($ty:ty => $name:literal, $doc:literal;)+) => {$(
        impl PartialSchema for $ty {
            fn schema() -> RefOr<Schema> {
                let object: Object = ObjectBuilder::new()
                    .schema_type(Type::String)
                    .description(Some($doc))
                    .enum_values(Some(<$ty>::ALL.iter().map(|v| v.as_str())))
                    .build();
                RefOr::T(Schema::Object(object))
            }
        }

        impl ToSchema for $ty {
            fn name() -> Cow<'static, str> {
                Cow::Borrowed($name)
            }
        }
    )+};
}

word_schema! {
    CampaignStatus => "CampaignStatus",
        "Where a campaign is (input also accepts either guide's word: active, completed, cancelled, draft).";
    CampaignAction => "CampaignAction", "What an admin does to a campaign.";
    ContactStatus => "ContactStatus",
        "Where a contact is (input also accepts either guide's word: upcoming, not answered, no conversation, busy…).";
    AmdMode => "AmdMode", "Answering-machine detection (text_based and ml_based are accepted too).";
    MachineAction => "MachineAction", "What to do when a machine answers.";
    IntervalUnit => "IntervalUnit", "The unit of an interval.";
    Pacing => "Pacing", "How a campaign decides how many calls to place.";
    Transfer => "Transfer", "How a person is handed to connect_to: bridge or refer.";
    AgentState => "AgentState", "An agent's state (ready and logged_out are accepted too).";
    EndedBy => "EndedBy", "Who or what ended an answered call.";
    AiAgentKind => "AiAgentKind",
        "How outdial talks to an AI agent: Twilio Media Streams or L16 over a WebSocket, or WebRTC (SmallWebRTC or WHIP offer/answer).";
    OnAgentClose => "OnAgentClose",
        "What happens when the AI agent ends its side: hang up, or connect the person to handoff_target.";
    QuestionKind => "QuestionKind", "A goal (primary or secondary) or an analysis question.";
    QuestionType => "QuestionType",
        "The answer a goal or analysis takes: yes_no (boolean), open_text (string, at most 4000 characters) or rating (integer 1-5).";
    GoalOutcome => "GoalOutcome", "How far a conversation reached a goal.";
}

/// Every route of the API with its documentation.
pub fn api_router() -> OpenApiRouter<AppState> {
    let (schemas, paths, import_route) = routes!(import::import_contacts);
    let (media_schemas, media_paths, media_route) = routes!(media::list_media, media::upload_media);
    OpenApiRouter::new()
        .routes(routes!(auth::healthz))
        .routes(routes!(openapi_json))
        .routes(routes!(auth::login))
        .routes(routes!(auth::logout))
        .routes(routes!(auth::me))
        .routes(routes!(keys::list_keys, keys::create_key))
        .routes(routes!(keys::revoke_key))
        .routes(routes!(keys::list_logins, keys::create_login))
        .routes(routes!(keys::delete_login))
        .routes(routes!(
            campaigns::list_campaigns,
            campaigns::create_campaign
        ))
        .routes(routes!(
            campaigns::get_campaign,
            campaigns::update_campaign,
            campaigns::delete_campaign
        ))
        .routes(routes!(campaigns::start_campaign))
        .routes(routes!(campaigns::stop_campaign))
        .routes(routes!(campaigns::pause_campaign))
        .routes(routes!(campaigns::resume_campaign))
        .routes(routes!(campaigns::restart_campaign))
        .routes(routes!(contacts::list_contacts, contacts::create_contact))
        .routes(routes!(
            contacts::get_contact,
            contacts::update_contact,
            contacts::delete_contact
        ))
        .routes(routes!(contacts::remove_contacts))
        .routes(routes!(contacts::retry_contacts))
        // The import streams the body: its own limit (ApiLimits::import_max_bytes, checked
        // as it streams), not the JSON one.
        .routes((
            schemas,
            paths,
            import_route.layer(DefaultBodyLimit::disable()),
        ))
        .routes(routes!(exports::create_export))
        .routes(routes!(exports::list_exports))
        .routes(routes!(exports::get_export))
        .routes(routes!(exports::download_export))
        .routes(routes!(reports::campaign_report))
        .routes(routes!(reports::list_attempts))
        .routes(routes!(media::get_attempt_recording))
        // A WAV upload is held whole (it is checked before it is stored): its own limit.
        .routes((
            media_schemas,
            media_paths,
            media_route.layer(DefaultBodyLimit::max(media::UPLOAD_BODY_LIMIT)),
        ))
        .routes(routes!(media::delete_media))
        .routes(routes!(dnc::list_dnc, dnc::add_dnc))
        .routes(routes!(dnc::get_dnc, dnc::delete_dnc))
        .routes(routes!(
            schedules::list_schedules,
            schedules::create_schedule
        ))
        .routes(routes!(
            schedules::get_schedule,
            schedules::update_schedule,
            schedules::delete_schedule
        ))
        .routes(routes!(agents::list_agents, agents::create_agent))
        .routes(routes!(
            agents::get_agent,
            agents::update_agent,
            agents::delete_agent
        ))
        .routes(routes!(agents::set_agent_state))
        .routes(routes!(agents::list_pools, agents::create_pool))
        .routes(routes!(
            agents::get_pool,
            agents::update_pool,
            agents::delete_pool
        ))
        .routes(routes!(numbers::list_numbers, numbers::create_number))
        .routes(routes!(
            numbers::get_number,
            numbers::update_number,
            numbers::delete_number
        ))
        .routes(routes!(events::list_events))
        .routes(routes!(live::live))
        .routes(routes!(live::live_ws))
        .routes(routes!(webhooks::list_webhooks, webhooks::create_webhook))
        .routes(routes!(webhooks::get_secret))
        .routes(routes!(webhooks::rotate_secret))
        .routes(routes!(webhooks::list_deliveries))
        .routes(routes!(
            webhooks::get_webhook,
            webhooks::update_webhook,
            webhooks::delete_webhook
        ))
        .routes(routes!(node::get_node))
        .routes(routes!(trunks::list_trunks))
        .routes(routes!(calls::list_calls))
        .routes(routes!(calls::get_call))
        .routes(routes!(calls::transfer_call))
        .routes(routes!(calls::hangup_call))
        .routes(routes!(
            ai_agents::list_ai_agents,
            ai_agents::create_ai_agent
        ))
        .routes(routes!(
            ai_agents::get_ai_agent,
            ai_agents::update_ai_agent,
            ai_agents::delete_ai_agent
        ))
        .routes(routes!(goals::list_goals, goals::create_goal))
        .routes(routes!(goals::get_goal, goals::update_goal))
        .routes(routes!(goals::archive_goal))
        .routes(routes!(goals::restore_goal))
        .routes(routes!(goals::list_analyses, goals::create_analysis))
        .routes(routes!(goals::get_analysis, goals::update_analysis))
        .routes(routes!(goals::archive_analysis))
        .routes(routes!(goals::restore_analysis))
        .routes(routes!(
            goals::post_attempt_analysis,
            goals::get_attempt_analysis
        ))
        .routes(routes!(goals::contact_analyses))
}

/// The title, the bearer scheme (required everywhere unless a route says otherwise) and
/// the tags.
pub fn finish(mut doc: utoipa::openapi::OpenApi) -> utoipa::openapi::OpenApi {
    doc.info.title = "outdial admin API".into();
    doc.info.version = env!("CARGO_PKG_VERSION").into();
    doc.info.description = Some(
        "Campaigns, contacts, CSV import, exports, reports, DNC, business hours, phone numbers, SIP agents, \
         agent pools, AI agents, goals and analyses. \
         Authenticate with `Authorization: Bearer <API key or session token>` (POST /v1/login \
         trades a login and API key for a session token). Times are milliseconds since the \
         Unix epoch, UTC. Errors: {\"error\":{\"code\",\"message\",\"field\"?}}."
            .into(),
    );
    doc.info.license = None;
    doc.info.contact = None;
    let components = doc.components.get_or_insert_with(Default::default);
    // A message-plan step is its fields plus `type` (allOf): the field schemas must stay
    // open, or a validator would refuse `type` as an unknown property. The server still
    // refuses unknown fields.
    for name in ["Play", "Collect", "Record"] {
        if let Some(RefOr::T(Schema::Object(object))) = components.schemas.get_mut(name) {
            object.additional_properties = None;
        }
    }
    components.security_schemes.insert(
        "bearer".into(),
        RefOr::T(SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some("An API key (odk_…) or a session token (ods_…)"))
                .build(),
        )),
    );
    doc.security = Some(vec![SecurityRequirement::new(
        "bearer",
        Vec::<String>::new(),
    )]);
    doc.tags = Some(
        [
            ("health", "Liveness"),
            (
                "auth",
                "Log in, log out, who am I; the account's API keys and logins",
            ),
            ("campaigns", "Campaigns and their actions"),
            (
                "contacts",
                "Contacts of a campaign, CSV import, manual retry",
            ),
            (
                "exports",
                "Contact exports (XLSX, CSV , and ;) and their history",
            ),
            ("reports", "Campaign progress, heat map and call attempts"),
            (
                "dnc",
                "The Do-Not-Call lists: the account's own and the global one",
            ),
            ("schedules", "Business-hours schedules"),
            (
                "events",
                "Every call's events as they happened, and campaign changes, by cursor",
            ),
            (
                "numbers",
                "The account's phone numbers: a campaign's caller ID, held by one running campaign at a time",
            ),
            (
                "media",
                "WAV files campaigns play (each account's uploads, shared files)",
            ),
            (
                "agents",
                "SIP agents, their states, agent pools, and AI agents",
            ),
            (
                "calls",
                "Calls in progress: list, hang up, transfer (an AI agent hands a person on)",
            ),
            (
                "goals",
                "Campaign goals and analyses, and the reports AI agents post about attempts",
            ),
            (
                "node",
                "This node: id, version, uptime, live calls, tasks, memory, open files",
            ),
            (
                "trunks",
                "SIP trunks: each profile's trunks, their order, limits and health",
            ),
            ("openapi", "This document"),
        ]
        .into_iter()
        .map(|(name, description)| {
            let mut tag = Tag::new(name);
            tag.description = Some(description.into());
            tag
        })
        .collect(),
    );
    doc
}

/// The finished document (built once).
pub fn document() -> &'static utoipa::openapi::OpenApi {
    static DOC: OnceLock<utoipa::openapi::OpenApi> = OnceLock::new();
    DOC.get_or_init(|| finish(api_router().split_for_parts().1))
}

/// The document as JSON (built once).
pub fn document_json() -> &'static str {
    static JSON: OnceLock<String> = OnceLock::new();
    JSON.get_or_init(|| {
        serde_json::to_string_pretty(document()).unwrap_or_else(|_| "{}".to_string())
    })
}

/// This OpenAPI document.
#[utoipa::path(
    get,
    path = "/v1/openapi.json",
    tag = "openapi",
    responses(
        (status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json"),
        (status = 401, description = "No valid credentials", body = super::ErrorBody),
    )
)]
pub async fn openapi_json() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        document_json(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_schemas_accept_their_type_beside_their_fields() {
        let doc = serde_json::to_value(document()).unwrap();
        let schemas = &doc["components"]["schemas"];
        for name in ["Play", "Collect", "Record"] {
            assert!(schemas[name].is_object(), "{name} is documented");
            assert!(
                schemas[name].get("additionalProperties").is_none(),
                "{name}: {}",
                schemas[name]
            );
        }
        assert_eq!(schemas["Step"]["oneOf"].as_array().map(Vec::len), Some(5));
    }

    #[test]
    fn the_document_lists_the_issue_routes() {
        let doc = document();
        let paths: Vec<&str> = doc.paths.paths.keys().map(String::as_str).collect();
        for p in [
            "/v1/login",
            "/v1/campaigns",
            "/v1/campaigns/{id}",
            "/v1/campaigns/{id}/start",
            "/v1/campaigns/{id}/stop",
            "/v1/campaigns/{id}/pause",
            "/v1/campaigns/{id}/resume",
            "/v1/campaigns/{id}/restart",
            "/v1/campaigns/{id}/contacts",
            "/v1/campaigns/{id}/contacts/import",
            "/v1/campaigns/{id}/report",
            "/v1/campaigns/{id}/attempts",
            "/v1/openapi.json",
            "/v1/agents/sip",
            "/v1/agents/sip/{id}",
            "/v1/agents/sip/{id}/state",
            "/v1/agents/pools",
            "/v1/agents/pools/{id}",
            "/v1/agents/ai",
            "/v1/agents/ai/{id}",
            "/v1/campaigns/{id}/goals",
            "/v1/campaigns/{id}/goals/{goal_id}",
            "/v1/campaigns/{id}/goals/{goal_id}/archive",
            "/v1/campaigns/{id}/goals/{goal_id}/restore",
            "/v1/campaigns/{id}/analyses",
            "/v1/campaigns/{id}/analyses/{analysis_id}",
            "/v1/attempts/{id}/analysis",
            "/v1/numbers",
            "/v1/numbers/{id}",
            "/v1/events",
            "/v1/live",
            "/v1/webhooks",
            "/v1/webhooks/{id}",
            "/v1/webhooks/secret",
            "/v1/webhooks/deliveries",
            "/healthz",
        ] {
            assert!(paths.contains(&p), "{p} missing from {paths:?}");
        }
        let json = document_json();
        assert!(json.contains("\"openapi\": \"3.1"), "{}", &json[..200]);
        assert!(json.contains("\"CampaignStatus\""));
    }
}
