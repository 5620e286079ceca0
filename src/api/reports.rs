//! Campaign reports: progress (contacts per status, answered / not answered / total calls),
//! rates (answer, human answer), average call duration and the 7 × 24 answer-rate heat map
//! in a chosen time zone (guide 2's dashboard), the abandon rate (campaign total and rolling
//! 30 days), agent occupancy and average queue wait, the goals (Primary Goal Achievement
//! Rate, Total Conversations, the per-goal and per-analysis breakdown); and the call
//! attempts (CDRs, with the agent leg) with the reporting tab's filters.

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::auth::Caller;
use super::campaigns::{load, CallCountsView, ContactCountsView};
use super::contacts::{contact_filter, goal_statuses};
use super::error::{ApiError, ApiPath, ApiQuery, ApiResult, ErrorBody};
use super::{split_list, AppState, PageQuery, Paged};
use crate::campaign::goals::{GoalOutcome, QuestionKind, QuestionType};
use crate::campaign::model::{CampaignStatus, EndedBy, Millis};
use crate::store::{AttemptFilter, CallAttempt, HeatMap, OutcomeCounts, QuestionStats};

pub const WEEKDAYS: [&str; 7] = [
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
];

#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReportQuery {
    /// IANA zone of the heat map (default: the campaign's business-hours zone, else its
    /// schedule zone).
    pub tz: Option<String>,
}

/// One hour of one weekday.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HeatCellView {
    pub attempts: i64,
    pub answered: i64,
    /// answered / attempts (0 when there were none).
    pub rate: f64,
}

/// Answer rate by weekday (rows, Monday first) × hour (columns, 0–23) in `timezone`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HeatMapView {
    pub timezone: String,
    /// The row names, Monday first.
    pub days: Vec<String>,
    /// 7 rows of 24 cells.
    pub cells: Vec<Vec<HeatCellView>>,
}

impl From<&HeatMap> for HeatMapView {
    fn from(map: &HeatMap) -> Self {
        HeatMapView {
            timezone: map.timezone.clone(),
            days: WEEKDAYS.iter().map(|d| d.to_string()).collect(),
            cells: map
                .cells
                .iter()
                .map(|day| {
                    day.iter()
                        .map(|c| HeatCellView {
                            attempts: c.attempts,
                            answered: c.answered,
                            rate: c.rate(),
                        })
                        .collect()
                })
                .collect(),
        }
    }
}

/// Contacts in a final status out of all.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ProgressView {
    pub finished: i64,
    pub total: i64,
    /// 0–100.
    pub percent: f64,
}

/// The campaign dashboard.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ReportView {
    pub campaign_id: i64,
    pub name: String,
    pub status: CampaignStatus,
    /// Contacts per status.
    pub contacts: ContactCountsView,
    /// Call attempts: answered, not answered, total.
    pub calls: CallCountsView,
    pub progress: ProgressView,
    /// Answered attempts / attempts (0–1).
    pub answer_rate: f64,
    /// Attempts a person answered / attempts (0–1): answered and not classed as a
    /// machine, fax or unknown by AMD.
    pub human_answer_rate: f64,
    /// Attempts answered by a person.
    pub human_answered: i64,
    /// Mean talk time of answered attempts, seconds.
    pub average_duration_secs: f64,
    pub heat_map: HeatMapView,
    /// People answered and abandoned: not connected to an agent within 2 s of their
    /// greeting (machines do not count).
    pub abandons: AbandonView,
    /// Calls bridged to an agent.
    pub bridged: i64,
    /// Agent occupancy, 0–1: talk time ÷ (talk time + the agents' idle time before each
    /// call that took them), over this campaign's bridged calls.
    pub agent_occupancy: f64,
    /// Total talk time of the bridged calls, seconds.
    pub agent_talk_secs: f64,
    /// Mean wait of the people who waited for an agent (connected or abandoned), ms.
    pub average_queue_wait_ms: f64,
    /// Primary Goal Achievement Rate (0–1): contacts whose primary-goal status is
    /// `achieved` ÷ contacts with an analysed conversation. A contact's status is its
    /// latest analysed conversation's outcome for the current primary goal; partially
    /// achieved does not count as achieved (see `primary_goal`). 0 when none was analysed.
    pub primary_goal_achievement_rate: f64,
    /// Total Conversations: attempts an AI agent posted a report for, plus attempts a
    /// person answered (AMD did not say machine, fax or unknown) that were bridged to an
    /// agent; each attempt counts once.
    pub total_conversations: i64,
    /// Mean duration (answer → end) of those conversations, seconds. The dashboard's
    /// Average Call Duration over all answered attempts is `average_duration_secs`.
    pub average_conversation_secs: f64,
    /// The current primary goal over the analysed contacts.
    pub primary_goal: PrimaryGoalView,
    /// Every goal (primary first, archived included) over each analysed contact's latest
    /// report: counts and percentages of achieved / partially / not achieved / unknown (a
    /// report that does not mention the goal counts as unknown).
    pub goals: Vec<QuestionBreakdownView>,
    /// Every analysis question over each analysed contact's latest report (values only).
    pub analyses: Vec<QuestionBreakdownView>,
}

/// One outcome's share.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct OutcomeShareView {
    pub outcome: GoalOutcome,
    pub count: i64,
    /// 0–100 of the analysed contacts.
    pub percent: f64,
}

fn shares(counts: &OutcomeCounts) -> Vec<OutcomeShareView> {
    let total = counts.total();
    [
        (GoalOutcome::Achieved, counts.achieved),
        (GoalOutcome::PartiallyAchieved, counts.partially_achieved),
        (GoalOutcome::NotAchieved, counts.not_achieved),
        (GoalOutcome::Unknown, counts.unknown),
    ]
    .into_iter()
    .map(|(outcome, count)| OutcomeShareView {
        outcome,
        count,
        percent: 100.0 * ratio(count, total),
    })
    .collect()
}

/// The primary goal on the dashboard.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PrimaryGoalView {
    /// The active, unarchived primary goal (null: none).
    pub goal_id: Option<i64>,
    pub name: Option<String>,
    /// Contacts with an analysed conversation.
    pub analysed_contacts: i64,
    /// achieved, partially_achieved, not_achieved, unknown — in that order.
    pub outcomes: Vec<OutcomeShareView>,
}

/// One goal or analysis over the analysed contacts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct QuestionBreakdownView {
    pub id: i64,
    pub kind: QuestionKind,
    pub name: String,
    #[serde(rename = "type")]
    pub question_type: QuestionType,
    pub active: bool,
    pub archived: bool,
    /// Goals: achieved, partially_achieved, not_achieved, unknown — in that order (empty
    /// for analyses).
    pub outcomes: Vec<OutcomeShareView>,
    /// Latest reports that gave a value.
    pub answered: i64,
    /// yes_no: how many said yes and no.
    pub yes: i64,
    pub no: i64,
    /// rating: the mean value (null: none, or not a rating).
    pub average_rating: Option<f64>,
}

impl From<QuestionStats> for QuestionBreakdownView {
    fn from(s: QuestionStats) -> Self {
        let q = s.question;
        QuestionBreakdownView {
            id: q.id,
            kind: q.spec.kind,
            name: q.spec.name,
            question_type: q.spec.question_type,
            active: q.spec.active,
            archived: q.archived,
            outcomes: if q.spec.kind.is_goal() {
                shares(&s.outcomes)
            } else {
                Vec::new()
            },
            answered: s.answered,
            yes: s.yes,
            no: s.no,
            average_rating: s.average_rating,
        }
    }
}

/// The abandon rate, over the whole campaign and the rolling 30 days (FTC TSR).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AbandonView {
    pub people_answered: i64,
    pub abandoned: i64,
    /// Percent of the people answered.
    pub rate_pct: f64,
    pub people_answered_30d: i64,
    pub abandoned_30d: i64,
    pub rate_pct_30d: f64,
    /// The campaign's cap on the 30-day rate, percent.
    pub cap_pct: f64,
}

fn ratio(part: i64, whole: i64) -> f64 {
    if whole <= 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

/// One of the caller's attempts (its campaign is the caller's), else 404 — the same answer
/// as an attempt that does not exist. Attempt-scoped routes (recordings, analyses) start
/// here.
pub(crate) async fn load_attempt(
    state: &AppState,
    caller: &Caller,
    id: i64,
) -> ApiResult<crate::store::CallAttempt> {
    let no_attempt = || ApiError::not_found(format!("attempt {id} not found"));
    let attempt = match state.store.get_attempt(id).await {
        Ok(a) => a,
        Err(crate::store::StoreError::NotFound(_)) => return Err(no_attempt()),
        Err(e) => return Err(e.into()),
    };
    let owner = match attempt.record.campaign_id {
        Some(campaign) => match state.store.campaign_owner(campaign).await {
            Ok(owner) => owner,
            Err(crate::store::StoreError::NotFound(_)) => None,
            Err(e) => return Err(e.into()),
        },
        None => None,
    };
    if owner != Some(caller.account_id) {
        return Err(no_attempt());
    }
    Ok(attempt)
}

/// The campaign's progress, rates and heat map.
#[utoipa::path(
    get,
    path = "/v1/campaigns/{id}/report",
    tag = "reports",
    params(("id" = i64, Path, description = "Campaign id"), ReportQuery),
    responses(
        (status = 200, description = "The report", body = ReportView),
        (status = 400, description = "tz is not an IANA zone", body = ErrorBody),
        (status = 401, description = "No valid credentials", body = ErrorBody),
        (status = 404, description = "No such campaign", body = ErrorBody),
    )
)]
pub async fn campaign_report(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
    ApiQuery(query): ApiQuery<ReportQuery>,
) -> ApiResult<Json<ReportView>> {
    let campaign = load(&state, &caller, id).await?;
    let tz = match query
        .tz
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
    {
        Some(tz) => {
            if tz.parse::<chrono_tz::Tz>().is_err() {
                return Err(ApiError::invalid(
                    "tz",
                    format!("{tz:?} is not an IANA time zone"),
                ));
            }
            tz
        }
        None => match campaign.settings.business_hours_id {
            Some(hours) => match state.store.get_business_hours(hours).await {
                Ok(h) => h.spec.timezone,
                Err(_) => campaign.settings.schedule_timezone.clone(),
            },
            None => campaign.settings.schedule_timezone.clone(),
        },
    };
    let report = state.store.campaign_report(id, &tz).await?;
    let stats = state.store.attempt_stats(id).await?;
    let bridge = state.store.bridge_stats(id, state.now()).await?;
    let goals = state.store.goal_report(id).await?;
    let finished = report.contacts.finished();
    let primary_name = goals
        .questions
        .iter()
        .find(|q| Some(q.question.id) == goals.primary_goal_id)
        .map(|q| q.question.spec.name.clone());
    let (goal_stats, analysis_stats): (Vec<_>, Vec<_>) = goals
        .questions
        .into_iter()
        .partition(|q| q.question.spec.kind.is_goal());
    Ok(Json(ReportView {
        campaign_id: id,
        name: campaign.settings.name,
        status: campaign.status,
        contacts: (&report.contacts).into(),
        calls: (&report.calls).into(),
        progress: ProgressView {
            finished,
            total: report.contacts.total,
            percent: 100.0 * ratio(finished, report.contacts.total),
        },
        answer_rate: ratio(report.calls.answered, report.calls.total),
        human_answer_rate: ratio(stats.human_answered, report.calls.total),
        human_answered: stats.human_answered,
        average_duration_secs: stats.average_duration_ms / 1000.0,
        heat_map: (&report.heat_map).into(),
        abandons: AbandonView {
            people_answered: bridge.total.people_answered,
            abandoned: bridge.total.abandoned,
            rate_pct: bridge.total.rate_pct(),
            people_answered_30d: bridge.last_30_days.people_answered,
            abandoned_30d: bridge.last_30_days.abandoned,
            rate_pct_30d: bridge.last_30_days.rate_pct(),
            cap_pct: campaign.settings.abandon_cap_pct,
        },
        bridged: bridge.bridged,
        agent_occupancy: bridge.occupancy(),
        agent_talk_secs: bridge.talk_ms as f64 / 1000.0,
        average_queue_wait_ms: bridge.average_queue_wait_ms(),
        primary_goal_achievement_rate: ratio(goals.primary.achieved, goals.analysed_contacts),
        total_conversations: goals.conversations,
        average_conversation_secs: ratio(goals.conversation_ms, goals.conversations) / 1000.0,
        primary_goal: PrimaryGoalView {
            goal_id: goals.primary_goal_id,
            name: primary_name,
            analysed_contacts: goals.analysed_contacts,
            outcomes: shares(&goals.primary),
        },
        goals: goal_stats
            .into_iter()
            .map(QuestionBreakdownView::from)
            .collect(),
        analyses: analysis_stats
            .into_iter()
            .map(QuestionBreakdownView::from)
            .collect(),
    }))
}

/// One call attempt (CDR).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AttemptView {
    pub id: i64,
    pub campaign_id: Option<i64>,
    pub contact_id: Option<i64>,
    pub attempt_number: i64,
    pub call_id: String,
    pub sip_profile: String,
    pub caller_id: String,
    pub billable_account: String,
    pub destination: String,
    pub started_at: Millis,
    pub ended_at: Option<Millis>,
    pub ring_ms: Option<i64>,
    pub answer_ms: Option<i64>,
    pub duration_ms: i64,
    pub sip_code: Option<i64>,
    pub reason: String,
    /// answered, busy, rejected, no_answer, unavailable, invalid_number, failed, …
    pub outcome: String,
    /// Who or what ended the call: callee, agent, system, max_duration or transferred
    /// (`null`: never answered).
    pub ended_by: Option<EndedBy>,
    pub codec: Option<String>,
    pub amd_mode: Option<String>,
    pub amd_verdict: Option<String>,
    /// human, machine_start, machine_end_beep, machine_end_silence, machine_end_other,
    /// fax, unknown.
    pub answered_by: Option<String>,
    pub amd_cause: Option<String>,
    pub amd_confidence: Option<f64>,
    pub amd_decision_ms: Option<i64>,
    pub beep_ms: Option<i64>,
    pub rtp_sent: i64,
    pub rtp_received: i64,
    pub rtp_lost: i64,
    pub jitter_ms: Option<f64>,
    pub rtt_ms: Option<f64>,
    /// RTP and RTCP packets dropped for their source (the trunk's `rtp_latching`).
    pub rtp_rejected_source: i64,
    /// Where our RTP went instead of the SDP address, when it moved (symmetric RTP).
    pub rtp_latched_to: Option<String>,
    /// The trunk of its profile the call ended on.
    pub trunk: Option<String>,
    /// The trunks it left behind before that, in order, with the code (`null`: none came)
    /// and why.
    pub failover: Vec<crate::sip::trunks::TrunkTry>,
    /// The Special Information Tone heard in early media that ended the attempt (`VC`
    /// vacant code, `IC` intercept, `RO` reorder, `NC` no circuit, `IO`, `unknown`).
    pub sit: Option<String>,
    /// `outbound` (we dialed the contact) or `inbound` (the contact called back; `destination`
    /// is then the number called, `caller_id` the caller's).
    pub direction: crate::store::attempts::CallDirection,
    pub recording_path: Option<String>,
    pub dtmf: String,
    /// Digits the message plan collected, in order.
    pub digits: String,
    /// Where to download what the attempt recorded (`null`: nothing recorded).
    pub recording_url: Option<String>,
    /// The SIP Call-ID of the agent leg.
    pub agent_call_id: Option<String>,
    pub agent_id: Option<i64>,
    pub agent_name: Option<String>,
    /// When the agent's phone rang and when it answered (ms since the epoch).
    pub agent_ring_at: Option<Millis>,
    pub agent_answer_at: Option<Millis>,
    /// When the legs were joined and when the bridge ended.
    pub bridge_start_at: Option<Millis>,
    pub bridge_end_at: Option<Millis>,
    pub talk_ms: Option<i64>,
    /// Greeting → agent answer (or → abandon), ms.
    pub queue_wait_ms: Option<i64>,
    /// How long the agent had been free before this call.
    pub agent_idle_ms: Option<i64>,
    /// A person answered and was not connected to an agent within 2 s.
    pub abandoned: bool,
    /// The bridge: `sip`, `refer`, `twilio_ws`, `l16_ws` or `webrtc`, and its target.
    pub bridge_kind: Option<String>,
    pub bridge_target: Option<String>,
    /// The call SID an AI agent saw (`CA…`; `POST /v1/attempts/{sid}/analysis` takes it).
    pub call_sid: Option<String>,
    /// AI agents: stream start → the agent's first audio (ms), marks placed, clears sent.
    pub agent_first_audio_ms: Option<i64>,
    pub agent_marks: Option<i64>,
    pub agent_clears: Option<i64>,
}

impl From<CallAttempt> for AttemptView {
    fn from(a: CallAttempt) -> Self {
        let r = a.record;
        let recorded = r.recording.as_deref().is_some_and(|p| !p.is_empty())
            || r.recording_path.as_deref().is_some_and(|p| !p.is_empty());
        AttemptView {
            id: a.id,
            campaign_id: r.campaign_id,
            contact_id: r.contact_id,
            attempt_number: r.attempt_number,
            call_id: r.call_id,
            sip_profile: r.sip_profile,
            caller_id: r.caller_id,
            billable_account: r.billable_account,
            destination: r.destination,
            started_at: r.started_at,
            ended_at: r.ended_at,
            ring_ms: r.ring_ms,
            answer_ms: r.answer_ms,
            duration_ms: r.duration_ms,
            sip_code: r.sip_code,
            reason: r.reason,
            outcome: r.outcome,
            ended_by: r.ended_by,
            codec: r.codec,
            amd_mode: r.amd_mode,
            amd_verdict: r.amd_verdict,
            answered_by: r.answered_by,
            amd_cause: r.amd_cause,
            amd_confidence: r.amd_confidence,
            amd_decision_ms: r.amd_decision_ms,
            beep_ms: r.beep_ms,
            rtp_sent: r.rtp_sent,
            rtp_received: r.rtp_received,
            rtp_lost: r.rtp_lost,
            jitter_ms: r.jitter_ms,
            rtt_ms: r.rtt_ms,
            rtp_rejected_source: r.rtp_rejected_source,
            rtp_latched_to: r.rtp_latched_to,
            trunk: r.trunk,
            failover: r.failover,
            sit: r.sit,
            direction: r.direction,
            recording_path: r.recording_path,
            dtmf: r.dtmf,
            digits: r.digits,
            recording_url: recorded.then(|| format!("/v1/attempts/{}/recording", a.id)),
            agent_call_id: r.bridge.agent_call_id,
            agent_id: r.bridge.agent_id,
            agent_name: r.bridge.agent_name,
            agent_ring_at: r.bridge.agent_ring_at,
            agent_answer_at: r.bridge.agent_answer_at,
            bridge_start_at: r.bridge.bridge_start_at,
            bridge_end_at: r.bridge.bridge_end_at,
            talk_ms: r.bridge.talk_ms,
            queue_wait_ms: r.bridge.queue_wait_ms,
            agent_idle_ms: r.bridge.agent_idle_ms,
            abandoned: r.bridge.abandoned,
            bridge_kind: r.bridge.bridge_kind,
            bridge_target: r.bridge.bridge_target,
            call_sid: r.bridge.call_sid,
            agent_first_audio_ms: r.bridge.agent_first_audio_ms,
            agent_marks: r.bridge.agent_marks,
            agent_clears: r.bridge.agent_clears,
        }
    }
}

/// The reporting tab's filters: the contact's status, tags, retries and text; the
/// attempt's outcome and time.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AttemptListQuery {
    /// Comma-separated contact statuses (either guide's words).
    pub status: Option<String>,
    /// Comma-separated attempt outcomes (answered, busy, no_answer, …).
    pub outcome: Option<String>,
    /// Comma-separated contact tags.
    pub tags: Option<String>,
    pub min_retries: Option<i64>,
    pub max_retries: Option<i64>,
    /// Text in the contact's name, phone or comments.
    pub q: Option<String>,
    /// Comma-separated primary-goal statuses of the contact (achieved,
    /// partially_achieved, not_achieved, unknown).
    pub primary_goal_status: Option<String>,
    pub contact_id: Option<i64>,
    /// Started at or after (ms).
    pub since: Option<Millis>,
    /// Started before (ms).
    pub until: Option<Millis>,
    pub limit: Option<i64>,
    pub offset: Option<i64>,
}

/// The campaign's call attempts, newest first.
#[utoipa::path(
    get,
    path = "/v1/campaigns/{id}/attempts",
    tag = "reports",
    params(("id" = i64, Path, description = "Campaign id"), AttemptListQuery),
    responses(
        (status = 200, description = "A page of attempts", body = Paged<AttemptView>),
        (status = 400, description = "A bad filter (named in `field`)", body = ErrorBody),
        (status = 401, description = "No valid credentials", body = ErrorBody),
        (status = 404, description = "No such campaign", body = ErrorBody),
    )
)]
pub async fn list_attempts(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
    ApiQuery(query): ApiQuery<AttemptListQuery>,
) -> ApiResult<Json<Paged<AttemptView>>> {
    let page = PageQuery {
        limit: query.limit,
        offset: query.offset,
    }
    .page()?;
    let mut contact = contact_filter(
        query.status.as_deref(),
        query.tags.as_deref(),
        query.min_retries,
        query.max_retries,
        query.q.as_deref(),
    )?;
    contact.primary_goal_statuses = goal_statuses(query.primary_goal_status.as_deref())?;
    if let (Some(since), Some(until)) = (query.since, query.until) {
        if since > until {
            return Err(ApiError::invalid("since", "is after until"));
        }
    }
    load(&state, &caller, id).await?;
    let filter = AttemptFilter {
        campaign_id: Some(id),
        contact_id: query.contact_id,
        outcomes: query
            .outcome
            .as_deref()
            .map(|o| split_list(o).map(|w| w.to_ascii_lowercase()).collect())
            .unwrap_or_default(),
        since: query.since,
        until: query.until,
        contact,
    };
    let found = state.store.list_attempts(&filter, page).await?;
    let items = found.items.into_iter().map(AttemptView::from).collect();
    Ok(Json(Paged::new(items, found.total, page)))
}
