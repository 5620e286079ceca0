//! Campaigns: list, create, read, partial update, delete, and the guides' five actions
//! (start, stop, pause, resume, restart).
//!
//! Create and PATCH take the same body: every [`CampaignSettings`] field in snake_case, with
//! the guides' spellings accepted too — `did_number` (guide 1 v1) for `connect_to`,
//! `call_interval` / `ring_timeout` as seconds, `"30s"`, `"1min"` or `{value, unit}`, and
//! `schedule_start` as ms, RFC 3339, or a local `YYYY-MM-DDTHH:MM` read in
//! `schedule_timezone` (guide 1: "the date and time in your timezone"). PATCH merges into
//! the stored settings and validates the result; nullable fields are cleared with `null`.
//! `ai_agent_id` names an AI agent record of the campaign's account; `ai_agent_url` stays as
//! a shortcut for a `twilio_ws` agent with that URL; both at once answer 422.
//! The status changes only through the actions (409 with the rule's message when illegal);
//! a new campaign may start as `new` or `scheduled` (guide 1: "the initial status").
//!
//! Phone number (itellico's guide): create takes `number_id`, the id of one of the account's
//! numbers (`/v1/numbers`); the campaign's caller ID is then that number (a different
//! `caller_id` answers 422) and its SIP profile the number's when none is given. The number
//! cannot be changed after creation: a PATCH of `number_id`, or of `caller_id` on a campaign
//! with a number, answers 422. A number is held by one scheduled, processing or paused
//! campaign at a time: creating a campaign with it, or starting, resuming or restarting one,
//! while another campaign holds it answers 409 naming that campaign. The campaign JSON shows
//! `number_id` and `number`.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Schema, Type};
use utoipa::openapi::RefOr;
use utoipa::{IntoParams, PartialSchema, ToSchema};

use super::auth::Caller;
use super::error::{ApiError, ApiJson, ApiPath, ApiQuery, ApiResult, ErrorBody};
use super::{split_list, AppState, PageQuery, Paged};
use crate::campaign::model::{
    apply_action, AmdMode, Campaign, CampaignAction, CampaignSettings, CampaignStatus,
    ContactStatus, ContactWindow, Interval, IntervalUnit, MachineAction, Millis, Pacing, RetryOn,
    Transfer,
};
use crate::flow::steps::{parse_steps, Step};
use crate::store::{CallCounts, CampaignFilter, ContactCounts};

// ---------------------------------------------------------------------------------------
// Wire types.

/// `{"value": 2, "unit": "hours"}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IntervalView {
    pub value: i64,
    pub unit: IntervalUnit,
}

impl From<Interval> for IntervalView {
    fn from(i: Interval) -> Self {
        IntervalView {
            value: i.value,
            unit: i.unit,
        }
    }
}

impl From<IntervalView> for Interval {
    fn from(i: IntervalView) -> Self {
        Interval::new(i.value, i.unit)
    }
}

/// Which outcomes earn another attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RetryOnView {
    pub busy: bool,
    pub no_answer: bool,
    pub failed: bool,
    pub machine: bool,
}

/// Part of [`RetryOnView`] (PATCH): absent fields keep their value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct RetryOnInput {
    pub busy: Option<bool>,
    pub no_answer: Option<bool>,
    pub failed: Option<bool>,
    pub machine: Option<bool>,
}

/// The calling window in each contact's own time zone, "HH:MM"–"HH:MM".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContactWindowView {
    pub start: String,
    pub end: String,
}

/// A duration as seconds (`30`), text (`"30s"`, `"1min"`, `"2 h"`) or `{value, unit}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct DurationInput(pub i64);

impl<'de> Deserialize<'de> for DurationInput {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(d)?;
        duration_secs(&value)
            .map(DurationInput)
            .map_err(serde::de::Error::custom)
    }
}

impl PartialSchema for DurationInput {
    fn schema() -> RefOr<Schema> {
        OneOfBuilder::new()
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .description(Some("seconds")),
            )
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .description(Some("e.g. 30s, 1min, 2 h")),
            )
            .item(IntervalView::schema())
            .description(Some(
                "seconds, text such as \"30s\" or \"1min\", or {value, unit}",
            ))
            .into()
    }
}

impl ToSchema for DurationInput {
    fn name() -> std::borrow::Cow<'static, str> {
        "DurationInput".into()
    }
}

fn duration_secs(value: &serde_json::Value) -> Result<i64, String> {
    use serde_json::Value;
    match value {
        Value::Number(n) => n
            .as_i64()
            .ok_or_else(|| format!("{n} is not a whole number of seconds")),
        Value::String(text) => parse_duration_text(text),
        Value::Object(_) => {
            let interval: IntervalView = serde_json::from_value(value.clone())
                .map_err(|e| format!("expected {{\"value\", \"unit\"}}: {e}"))?;
            Ok(Interval::from(interval).as_secs())
        }
        other => Err(format!(
            "{other} is not a duration (seconds, \"30s\", \"1min\" or {{value, unit}})"
        )),
    }
}

/// `"30s"`, `"30"`, `"1min"`, `"2 h"`, `"1 day"` → seconds.
pub fn parse_duration_text(text: &str) -> Result<i64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let bad = || format!("{text:?} is not a duration such as 30s, 1min or 2h");
    let n: i64 = number.parse().map_err(|_| bad())?;
    let unit = unit.trim();
    let scale = if unit.is_empty() {
        1
    } else {
        let unit = unit.trim_end_matches('s');
        match unit {
            "" | "sec" | "second" => 1,
            "m" | "min" | "minute" => 60,
            "h" | "hr" | "hour" => 3600,
            "d" | "day" => 86_400,
            _ => return Err(bad()),
        }
    };
    n.checked_mul(scale).ok_or_else(bad)
}

/// When dialing may begin: ms since the epoch, RFC 3339, or local `YYYY-MM-DDTHH:MM[:SS]`
/// in the campaign's `schedule_timezone`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ScheduleStartInput {
    Millis(i64),
    Text(String),
}

impl PartialSchema for ScheduleStartInput {
    fn schema() -> RefOr<Schema> {
        OneOfBuilder::new()
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .description(Some("ms since the Unix epoch, UTC")),
            )
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .description(Some(
                    "RFC 3339, or a local date and time (YYYY-MM-DDTHH:MM) in schedule_timezone",
                )),
            )
            .into()
    }
}

impl ToSchema for ScheduleStartInput {
    fn name() -> std::borrow::Cow<'static, str> {
        "ScheduleStartInput".into()
    }
}

impl ScheduleStartInput {
    fn to_millis(&self, timezone: &str) -> ApiResult<Millis> {
        let text = match self {
            ScheduleStartInput::Millis(ms) => return Ok(*ms),
            ScheduleStartInput::Text(text) => text.trim(),
        };
        if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
            return Ok(t.timestamp_millis());
        }
        let naive = [
            "%Y-%m-%dT%H:%M:%S",
            "%Y-%m-%dT%H:%M",
            "%Y-%m-%d %H:%M:%S",
            "%Y-%m-%d %H:%M",
        ]
        .iter()
        .find_map(|f| chrono::NaiveDateTime::parse_from_str(text, f).ok())
        .ok_or_else(|| {
            ApiError::invalid(
                "schedule_start",
                format!("{text:?} is not ms, RFC 3339 or YYYY-MM-DDTHH:MM"),
            )
        })?;
        let tz: chrono_tz::Tz = timezone.parse().map_err(|_| {
            ApiError::invalid(
                "schedule_timezone",
                format!("{timezone:?} is not an IANA time zone"),
            )
        })?;
        use chrono::TimeZone;
        match tz.from_local_datetime(&naive) {
            chrono::LocalResult::Single(t) => Ok(t.timestamp_millis()),
            chrono::LocalResult::Ambiguous(first, _) => Ok(first.timestamp_millis()),
            chrono::LocalResult::None => Err(ApiError::invalid(
                "schedule_start",
                format!("{text} does not exist in {timezone} (a clock change skips it)"),
            )),
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

/// The body of POST (create) and PATCH (partial update). Absent fields keep their value
/// (create: the defaults); `null` clears a nullable field.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct CampaignInput {
    pub name: Option<String>,
    pub description: Option<String>,
    /// Create only: `new` (default) or `scheduled`. Later changes go through the actions.
    pub status: Option<CampaignStatus>,
    /// Where answered people go: a number (hunt group, auto-attendant, agent) or a SIP URI.
    /// `did_number` (guide 1 v1) is the same field.
    #[serde(alias = "did_number")]
    pub connect_to: Option<String>,
    /// AI voice agent media stream (ws:// or wss://): a shortcut for a `twilio_ws` agent
    /// with that URL. Not together with `ai_agent_id` (422).
    #[serde(deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    pub ai_agent_url: Option<Option<String>>,
    /// The AI agent (`/v1/agents/ai`, of this account) answered people are bridged to
    /// (itellico's "Agent"); null clears. Not together with `ai_agent_url` (422).
    #[serde(deserialize_with = "nullable")]
    #[schema(value_type = Option<i64>)]
    pub ai_agent_id: Option<Option<i64>>,
    /// When dialing may begin (leave out or null: as soon as it is started).
    #[serde(deserialize_with = "nullable")]
    #[schema(value_type = Option<ScheduleStartInput>)]
    pub schedule_start: Option<Option<ScheduleStartInput>>,
    /// IANA zone the schedule is entered in (default UTC).
    pub schedule_timezone: Option<String>,
    /// Calls per minute.
    pub pace: Option<f64>,
    pub max_concurrent: Option<i64>,
    /// Least time between two call starts (guide 2: 5s … 30min).
    #[serde(alias = "call_interval_secs")]
    pub call_interval: Option<DurationInput>,
    /// How long to let the phone ring (guide 2: 10s … 60s; under 15 s needs
    /// ring_timeout_override).
    #[serde(alias = "ring_timeout_secs")]
    pub ring_timeout: Option<DurationInput>,
    pub ring_timeout_override: Option<bool>,
    /// Business-hours schedule (null: 24/7).
    #[serde(deserialize_with = "nullable")]
    #[schema(value_type = Option<i64>)]
    pub business_hours_id: Option<Option<i64>>,
    #[serde(deserialize_with = "nullable")]
    #[schema(value_type = Option<ContactWindowView>)]
    pub contact_window: Option<Option<ContactWindowView>>,
    pub amd_mode: Option<AmdMode>,
    pub machine_action: Option<MachineAction>,
    #[serde(deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    pub voicemail_message: Option<Option<String>>,
    #[serde(deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    pub play_message: Option<Option<String>>,
    /// The message plan (null: `play_message`, then hang up). Problems answer 422 with
    /// every step and field named.
    /// Read by [`crate::flow::steps::parse_steps`] so that every problem names its step
    /// and field.
    #[serde(deserialize_with = "nullable")]
    #[schema(value_type = Option<Vec<Step>>)]
    pub steps: Option<Option<serde_json::Value>>,
    /// 0–10 (default 2).
    pub max_retries: Option<i64>,
    /// Calendar time between retries.
    pub retry_interval: Option<IntervalView>,
    pub retry_on: Option<RetryOnInput>,
    /// How long a contact may stay `called` before it is `completed`.
    pub completion_timeout: Option<IntervalView>,
    /// The number presented as the caller. With `number_id`: leave it out (it is the number).
    pub caller_id: Option<String>,
    /// Create only: one of the account's phone numbers (`/v1/numbers`) the campaign calls
    /// from; its caller ID is then that number. Cannot be changed after creation (422).
    #[serde(deserialize_with = "nullable")]
    #[schema(value_type = Option<i64>)]
    pub number_id: Option<Option<i64>>,
    pub billable_account: Option<String>,
    pub sip_profile: Option<String>,
    pub recording: Option<bool>,
    /// ISO 3166 alpha-2 for numbers without a `+` (default US).
    pub default_country: Option<String>,
    /// `progressive` (default) or `predictive` (needs `connect_to` naming an agent pool and
    /// an `abandon_message`).
    pub pacing: Option<Pacing>,
    /// `bridge` (default: a second leg, media relayed) or `refer` (blind transfer with REFER;
    /// `connect_to` must be a number or a SIP URI).
    pub transfer: Option<Transfer>,
    /// The most people abandoned, percent of the people answered, rolling 30 days: 0–3
    /// (default 3).
    pub abandon_cap_pct: Option<f64>,
    /// WAV played to a person no agent could take within the queue timeout.
    #[serde(deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    pub abandon_message: Option<Option<String>>,
    /// How long each agent is rung before the next is tried (default 15 s).
    #[serde(alias = "agent_ring_timeout_secs")]
    pub agent_ring_timeout: Option<DurationInput>,
    /// How long a person who answered waits for an agent (default 2 s).
    #[serde(alias = "queue_timeout_secs")]
    pub queue_timeout: Option<DurationInput>,
}

impl CampaignInput {
    /// Merges the given fields into `s`.
    pub fn apply(self, s: &mut CampaignSettings) -> ApiResult<()> {
        fn set<T>(slot: &mut T, value: Option<T>) {
            if let Some(v) = value {
                *slot = v;
            }
        }
        set(&mut s.name, self.name);
        set(&mut s.description, self.description);
        set(
            &mut s.connect_to,
            self.connect_to.map(|c| c.trim().to_string()),
        );
        set(&mut s.ai_agent_url, self.ai_agent_url);
        set(&mut s.ai_agent_id, self.ai_agent_id);
        set(&mut s.schedule_timezone, self.schedule_timezone);
        if let Some(start) = self.schedule_start {
            s.schedule_start = match start {
                Some(start) => Some(start.to_millis(&s.schedule_timezone)?),
                None => None,
            };
        }
        set(&mut s.pace, self.pace);
        set(&mut s.max_concurrent, self.max_concurrent);
        set(&mut s.call_interval_secs, self.call_interval.map(|d| d.0));
        set(&mut s.ring_timeout_secs, self.ring_timeout.map(|d| d.0));
        set(&mut s.ring_timeout_override, self.ring_timeout_override);
        set(&mut s.business_hours_id, self.business_hours_id);
        set(
            &mut s.contact_window,
            self.contact_window.map(|w| {
                w.map(|w| ContactWindow {
                    start: w.start,
                    end: w.end,
                })
            }),
        );
        set(&mut s.amd_mode, self.amd_mode);
        set(&mut s.machine_action, self.machine_action);
        set(&mut s.voicemail_message, self.voicemail_message);
        set(&mut s.play_message, self.play_message);
        if let Some(steps) = self.steps {
            s.steps = match steps {
                None | Some(serde_json::Value::Null) => None,
                Some(value) => Some(parse_steps(&value).map_err(|errors| {
                    ApiError::invalid_steps(
                        errors
                            .iter()
                            .map(|e| (e.path(), e.reason.clone()))
                            .collect(),
                    )
                })?),
            };
        }
        set(&mut s.max_retries, self.max_retries);
        set(
            &mut s.retry_interval,
            self.retry_interval.map(Interval::from),
        );
        if let Some(r) = self.retry_on {
            set(&mut s.retry_on.busy, r.busy);
            set(&mut s.retry_on.no_answer, r.no_answer);
            set(&mut s.retry_on.failed, r.failed);
            set(&mut s.retry_on.machine, r.machine);
        }
        set(
            &mut s.completion_timeout,
            self.completion_timeout.map(Interval::from),
        );
        set(
            &mut s.caller_id,
            self.caller_id.map(|c| c.trim().to_string()),
        );
        set(&mut s.number_id, self.number_id);
        set(&mut s.billable_account, self.billable_account);
        set(&mut s.sip_profile, self.sip_profile);
        set(&mut s.recording, self.recording);
        set(
            &mut s.default_country,
            self.default_country.map(|c| c.trim().to_ascii_uppercase()),
        );
        set(&mut s.pacing, self.pacing);
        set(&mut s.transfer, self.transfer);
        set(&mut s.abandon_cap_pct, self.abandon_cap_pct);
        set(&mut s.abandon_message, self.abandon_message);
        set(
            &mut s.agent_ring_timeout_secs,
            self.agent_ring_timeout.map(|d| d.0),
        );
        set(&mut s.queue_timeout_secs, self.queue_timeout.map(|d| d.0));
        Ok(())
    }
}

/// Contacts per status (every status, zeros included) and their total.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ContactCountsView {
    pub total: i64,
    /// Canonical status → contacts.
    pub by_status: BTreeMap<String, i64>,
}

impl From<&ContactCounts> for ContactCountsView {
    fn from(c: &ContactCounts) -> Self {
        let mut by_status: BTreeMap<String, i64> = ContactStatus::ALL
            .iter()
            .map(|s| (s.as_str().to_string(), 0))
            .collect();
        for (status, n) in &c.by_status {
            by_status.insert(status.as_str().to_string(), *n);
        }
        ContactCountsView {
            total: c.total,
            by_status,
        }
    }
}

/// Call attempts: answered, not answered, total (guide 1's "Calls" column).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CallCountsView {
    pub answered: i64,
    pub not_answered: i64,
    pub total: i64,
}

impl From<&CallCounts> for CallCountsView {
    fn from(c: &CallCounts) -> Self {
        CallCountsView {
            answered: c.answered,
            not_answered: c.not_answered,
            total: c.total,
        }
    }
}

/// A campaign as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CampaignView {
    pub id: i64,
    pub status: CampaignStatus,
    pub name: String,
    pub description: String,
    pub connect_to: String,
    /// Shortcut for a `twilio_ws` AI agent with this URL.
    pub ai_agent_url: Option<String>,
    /// The AI agent record answered people are bridged to.
    pub ai_agent_id: Option<i64>,
    /// ms since the epoch, UTC.
    pub schedule_start: Option<Millis>,
    pub schedule_timezone: String,
    /// Calls per minute.
    pub pace: f64,
    pub max_concurrent: i64,
    pub call_interval_secs: i64,
    pub ring_timeout_secs: i64,
    pub ring_timeout_override: bool,
    pub business_hours_id: Option<i64>,
    pub contact_window: Option<ContactWindowView>,
    pub amd_mode: AmdMode,
    pub machine_action: MachineAction,
    pub voicemail_message: Option<String>,
    pub play_message: Option<String>,
    /// The message plan; null: `play_message`, then hang up.
    pub steps: Option<Vec<Step>>,
    pub max_retries: i64,
    pub retry_interval: IntervalView,
    pub retry_on: RetryOnView,
    pub completion_timeout: IntervalView,
    pub caller_id: String,
    /// The phone number record the campaign calls from (fixed at creation).
    pub number_id: Option<i64>,
    /// That number (E.164): the campaign's caller ID. Null without `number_id`.
    pub number: Option<String>,
    pub billable_account: String,
    pub sip_profile: String,
    pub recording: bool,
    pub default_country: String,
    pub pacing: Pacing,
    pub transfer: Transfer,
    pub abandon_cap_pct: f64,
    pub abandon_message: Option<String>,
    pub agent_ring_timeout_secs: i64,
    pub queue_timeout_secs: i64,
    pub created_at: Millis,
    pub updated_at: Millis,
    pub started_at: Option<Millis>,
    pub finished_at: Option<Millis>,
    pub contacts: ContactCountsView,
    pub calls: CallCountsView,
}

impl CampaignView {
    pub fn new(c: Campaign, contacts: &ContactCounts, calls: &CallCounts) -> CampaignView {
        let s = c.settings;
        let RetryOn {
            busy,
            no_answer,
            failed,
            machine,
        } = s.retry_on;
        CampaignView {
            id: c.id,
            status: c.status,
            name: s.name,
            description: s.description,
            connect_to: s.connect_to,
            ai_agent_url: s.ai_agent_url,
            ai_agent_id: s.ai_agent_id,
            schedule_start: s.schedule_start,
            schedule_timezone: s.schedule_timezone,
            pace: s.pace,
            max_concurrent: s.max_concurrent,
            call_interval_secs: s.call_interval_secs,
            ring_timeout_secs: s.ring_timeout_secs,
            ring_timeout_override: s.ring_timeout_override,
            business_hours_id: s.business_hours_id,
            contact_window: s.contact_window.map(|w| ContactWindowView {
                start: w.start,
                end: w.end,
            }),
            amd_mode: s.amd_mode,
            machine_action: s.machine_action,
            voicemail_message: s.voicemail_message,
            play_message: s.play_message,
            steps: s.steps,
            max_retries: s.max_retries,
            retry_interval: s.retry_interval.into(),
            retry_on: RetryOnView {
                busy,
                no_answer,
                failed,
                machine,
            },
            completion_timeout: s.completion_timeout.into(),
            number: s.number_id.map(|_| s.caller_id.clone()),
            caller_id: s.caller_id,
            number_id: s.number_id,
            billable_account: s.billable_account,
            sip_profile: s.sip_profile,
            recording: s.recording,
            default_country: s.default_country,
            pacing: s.pacing,
            transfer: s.transfer,
            abandon_cap_pct: s.abandon_cap_pct,
            abandon_message: s.abandon_message,
            agent_ring_timeout_secs: s.agent_ring_timeout_secs,
            queue_timeout_secs: s.queue_timeout_secs,
            created_at: c.created_at,
            updated_at: c.updated_at,
            started_at: c.started_at,
            finished_at: c.finished_at,
            contacts: contacts.into(),
            calls: calls.into(),
        }
    }
}

/// `?status=&q=` plus paging.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CampaignListQuery {
    /// Comma-separated statuses (either guide's words).
    pub status: Option<String>,
    /// Text in the name or description.
    pub q: Option<String>,
    pub limit: Option<i64>,
    pub offset: Option<i64>,
}

// ---------------------------------------------------------------------------------------
// Helpers.

/// The campaign with its counts, as the API shows it.
pub(crate) async fn view(state: &AppState, campaign: Campaign) -> ApiResult<CampaignView> {
    let (contacts, calls) = state.store.campaign_counts(campaign.id).await?;
    Ok(CampaignView::new(campaign, &contacts, &calls))
}

/// Loads one of the caller's campaigns, or answers 404 — the same answer for another
/// account's campaign as for one that does not exist. Every campaign-scoped route (and
/// what hangs off a campaign: contacts, imports, exports, reports, attempts, goals) starts
/// here.
pub(crate) async fn load(state: &AppState, caller: &Caller, id: i64) -> ApiResult<Campaign> {
    let owner = state.store.campaign_owner(id).await?;
    if owner != Some(caller.account_id) {
        return Err(crate::store::StoreError::NotFound(format!("campaign {id}")).into());
    }
    Ok(state.store.get_campaign(id).await?)
}

/// Appends an admin event; a failure is logged, never fatal to the request.
pub(crate) async fn record_event(
    state: &AppState,
    campaign_id: Option<i64>,
    kind: &str,
    detail: serde_json::Value,
) {
    if let Err(e) = state
        .store
        .append_event(campaign_id, None, kind, &detail, state.now())
        .await
    {
        tracing::warn!(error = %e, kind, "event not recorded");
    }
}

// ---------------------------------------------------------------------------------------
// Handlers.

/// The campaigns, newest first, with their contact and call counts.
#[utoipa::path(
    get,
    path = "/v1/campaigns",
    tag = "campaigns",
    params(CampaignListQuery),
    responses(
        (status = 200, description = "A page of campaigns", body = Paged<CampaignView>),
        (status = 400, description = "A bad parameter", body = ErrorBody),
        (status = 401, description = "No valid credentials", body = ErrorBody),
    )
)]
pub async fn list_campaigns(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<CampaignListQuery>,
) -> ApiResult<Json<Paged<CampaignView>>> {
    let page = PageQuery {
        limit: query.limit,
        offset: query.offset,
    }
    .page()?;
    let mut filter = CampaignFilter {
        account_id: Some(caller.account_id),
        search: query.q.clone(),
        ..CampaignFilter::default()
    };
    if let Some(list) = &query.status {
        for word in split_list(list) {
            let status = CampaignStatus::parse(word).ok_or_else(|| {
                ApiError::invalid(
                    "status",
                    format!(
                        "unknown value {word:?} (expected {})",
                        CampaignStatus::expected()
                    ),
                )
            })?;
            filter.statuses.push(status);
        }
    }
    let found = state.store.list_campaigns(&filter, page).await?;
    let items = found
        .items
        .into_iter()
        .map(|s| CampaignView::new(s.campaign, &s.contacts, &s.calls))
        .collect();
    Ok(Json(Paged::new(items, found.total, page)))
}

/// Creates a campaign (status `new`, or `scheduled` with a start time).
#[utoipa::path(
    post,
    path = "/v1/campaigns",
    tag = "campaigns",
    request_body = CampaignInput,
    responses(
        (status = 201, description = "Created", body = CampaignView),
        (status = 400, description = "A field is missing or wrong (named in `field`)", body = ErrorBody),
        (status = 401, description = "No valid credentials", body = ErrorBody),
        (status = 409, description = "The business-hours schedule does not exist, or another scheduled, processing or paused campaign holds the number", body = ErrorBody),
        (status = 413, description = "Body over 1 MiB", body = ErrorBody),
        (status = 415, description = "Not application/json", body = ErrorBody),
        (status = 422, description = "Both ai_agent_id and ai_agent_url are set, a caller_id other than the number, or a message plan is wrong", body = ErrorBody),
    )
)]
pub async fn create_campaign(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(input): ApiJson<CampaignInput>,
) -> ApiResult<(StatusCode, Json<CampaignView>)> {
    let now = state.now();
    let status = input.status.unwrap_or(CampaignStatus::New);
    if !matches!(status, CampaignStatus::New | CampaignStatus::Scheduled) {
        return Err(ApiError::invalid(
            "status",
            format!("a new campaign is new or scheduled, not {status}"),
        ));
    }
    let mut settings = CampaignSettings::default();
    input.apply(&mut settings)?;
    check_ai_agent(&settings)?;
    check_number(&state, &caller, &mut settings).await?;
    if status == CampaignStatus::Scheduled && settings.schedule_start.is_none() {
        return Err(ApiError::invalid(
            "schedule_start",
            "is required for a scheduled campaign",
        ));
    }
    settings.validate(now)?;
    check_schedule(&state, &caller, &settings).await?;
    check_media(&state, Some(caller.account_id), &settings).await?;
    check_pool(&state, caller.account_id, &settings).await?;
    let campaign = state
        .store
        .create_campaign(Some(caller.account_id), &settings, status, now)
        .await?;
    record_event(
        &state,
        Some(campaign.id),
        "campaign.created",
        serde_json::json!({ "account_id": caller.account_id, "status": status }),
    )
    .await;
    state.wake_engine();
    Ok((StatusCode::CREATED, Json(view(&state, campaign).await?)))
}

/// A new campaign's `number_id` must name one of the account's numbers (400 naming the
/// field; another account's reads as missing); an explicit `caller_id` must be that number
/// (422); no scheduled, processing or paused campaign may hold the number (409 naming it —
/// the store checks again in the transaction that stores the campaign, and when it starts).
/// The caller ID and, when none is given, the SIP profile come from the number.
async fn check_number(
    state: &AppState,
    caller: &Caller,
    settings: &mut CampaignSettings,
) -> ApiResult<()> {
    let Some(id) = settings.number_id else {
        return Ok(());
    };
    let number = match state.store.get_number(caller.account_id, id).await {
        Ok(n) => n,
        Err(crate::store::StoreError::NotFound(_)) => {
            return Err(ApiError::invalid(
                "number_id",
                format!("number {id} does not exist (see GET /v1/numbers)"),
            ))
        }
        Err(e) => return Err(e.into()),
    };
    let given = settings.caller_id.trim();
    if !given.is_empty() && given != number.number {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            format!(
                "caller_id: {given:?} differs from number {id} ({}); the caller ID comes from \
                 number_id: leave caller_id out",
                number.number
            ),
        )
        .with_field("caller_id"));
    }
    if let Some(holder) = number.campaign_id {
        return Err(ApiError::conflict(format!(
            "number {} is held by campaign {holder}: a number belongs to one scheduled, \
             processing or paused campaign at a time",
            number.number
        )));
    }
    settings.caller_id = number.number;
    if settings.sip_profile.trim().is_empty() {
        if let Some(profile) = number.sip_profile {
            settings.sip_profile = profile;
        }
    }
    Ok(())
}

/// A PATCH may not change a campaign's number, nor the caller ID of a campaign that has
/// one (422 naming the field).
fn check_number_kept(before: &CampaignSettings, after: &CampaignSettings) -> ApiResult<()> {
    let locked = |field: &str, message: String| {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", message).with_field(field)
    };
    if before.number_id != after.number_id {
        return Err(locked(
            "number_id",
            "number_id: a campaign's phone number cannot be changed after creation".into(),
        ));
    }
    if before.number_id.is_some() && before.caller_id != after.caller_id {
        return Err(locked(
            "caller_id",
            format!(
                "caller_id: comes from the campaign's phone number {}, which cannot be changed \
                 after creation",
                before.caller_id
            ),
        ));
    }
    Ok(())
}

/// `ai_agent_id` and `ai_agent_url` name the agent two ways: one at a time (422). That
/// the id names an AI agent of the campaign's account is checked by the store (400).
fn check_ai_agent(settings: &CampaignSettings) -> ApiResult<()> {
    if settings.ai_agent_id.is_some() && settings.ai_agent_url.is_some() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            "ai_agent_id: give ai_agent_id or ai_agent_url, not both (set the other to null)",
        )
        .with_field("ai_agent_id"));
    }
    Ok(())
}

/// A predictive campaign's `connect_to` must name one of the account's agent pools.
async fn check_pool(
    state: &AppState,
    account_id: i64,
    settings: &CampaignSettings,
) -> ApiResult<()> {
    use crate::campaign::agents::ConnectTarget;
    if settings.pacing != Pacing::Predictive {
        return Ok(());
    }
    match ConnectTarget::parse(&settings.connect_to) {
        ConnectTarget::Pool(name) => {
            if state
                .store
                .pool_by_name(Some(account_id), &name)
                .await?
                .is_none()
            {
                return Err(ApiError::invalid(
                    "connect_to",
                    format!("no agent pool named {name:?} (create it with POST /v1/agents/pools)"),
                ));
            }
            Ok(())
        }
        _ => Err(ApiError::invalid(
            "connect_to",
            "must name an agent pool when pacing is predictive",
        )),
    }
}

/// A business_hours_id must name one of the account's schedules (400 naming the field,
/// not a 409 later; another account's reads as missing).
async fn check_schedule(
    state: &AppState,
    caller: &Caller,
    settings: &CampaignSettings,
) -> ApiResult<()> {
    if let Some(id) = settings.business_hours_id {
        match state
            .store
            .account_business_hours(caller.account_id, id)
            .await
        {
            Ok(_) => {}
            Err(crate::store::StoreError::NotFound(_)) => {
                return Err(ApiError::invalid(
                    "business_hours_id",
                    format!("schedule {id} does not exist"),
                ))
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Every WAV the campaign names must be a readable WAV in the media directory (the
/// owner's folder or the shared files). A `steps[…]` file answers 422 like the other step
/// problems; `play_message` / `voicemail_message` answer 400 naming the field.
async fn check_media(
    state: &AppState,
    account: Option<i64>,
    settings: &CampaignSettings,
) -> ApiResult<()> {
    let files = settings.media_files();
    if files.is_empty() {
        return Ok(());
    }
    let dir = state.media_dir.clone();
    let problems = tokio::task::spawn_blocking(move || {
        files
            .into_iter()
            .filter_map(|(field, name)| {
                crate::config::media::resolve_wav(&dir, account, &name)
                    .err()
                    .map(|e| (field, e.to_string()))
            })
            .collect::<Vec<_>>()
    })
    .await
    .map_err(|e| ApiError::internal(format!("media check failed: {e}")))?;
    let Some((field, reason)) = problems.first() else {
        return Ok(());
    };
    if field.starts_with("steps") {
        return Err(ApiError::invalid_steps(
            problems
                .into_iter()
                .filter(|(f, _)| f.starts_with("steps"))
                .collect(),
        ));
    }
    Err(ApiError::invalid(field.clone(), reason))
}

/// One campaign with its counts.
#[utoipa::path(
    get,
    path = "/v1/campaigns/{id}",
    tag = "campaigns",
    params(("id" = i64, Path, description = "Campaign id")),
    responses(
        (status = 200, description = "The campaign", body = CampaignView),
        (status = 401, description = "No valid credentials", body = ErrorBody),
        (status = 404, description = "No such campaign", body = ErrorBody),
    )
)]
pub async fn get_campaign(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<CampaignView>> {
    let campaign = load(&state, &caller, id).await?;
    Ok(Json(view(&state, campaign).await?))
}

/// Partial update: the given fields are merged into the stored settings, the result is
/// validated, and the engine applies it to queued calls at once.
#[utoipa::path(
    patch,
    path = "/v1/campaigns/{id}",
    tag = "campaigns",
    params(("id" = i64, Path, description = "Campaign id")),
    request_body = CampaignInput,
    responses(
        (status = 200, description = "Updated", body = CampaignView),
        (status = 400, description = "A field is wrong (named in `field`)", body = ErrorBody),
        (status = 401, description = "No valid credentials", body = ErrorBody),
        (status = 404, description = "No such campaign", body = ErrorBody),
        (status = 422, description = "Both ai_agent_id and ai_agent_url are set, the phone number or its caller ID would change, or a message plan is wrong", body = ErrorBody),
    )
)]
pub async fn update_campaign(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
    ApiJson(input): ApiJson<CampaignInput>,
) -> ApiResult<Json<CampaignView>> {
    if input.status.is_some() {
        return Err(ApiError::invalid(
            "status",
            "changes through the actions: POST /v1/campaigns/{id}/start, stop, pause, resume or restart",
        ));
    }
    let now = state.now();
    let campaign = load(&state, &caller, id).await?;
    let before = campaign.settings.schedule_start;
    let touches_start = input.schedule_start.is_some();
    let mut settings = campaign.settings.clone();
    input.apply(&mut settings)?;
    check_number_kept(&campaign.settings, &settings)?;
    check_ai_agent(&settings)?;
    // The 24-hours-in-the-past bound is for a start being set now: an unchanged start
    // of a campaign that began last week stays valid.
    let check_at = match (touches_start, before) {
        (false, Some(start)) if settings.schedule_start == before => now.min(start),
        _ => now,
    };
    settings.validate(check_at)?;
    check_schedule(&state, &caller, &settings).await?;
    check_media(&state, Some(caller.account_id), &settings).await?;
    check_pool(&state, caller.account_id, &settings).await?;
    let updated = state
        .store
        .update_campaign_checked_at(id, &settings, check_at, now)
        .await?;
    record_event(
        &state,
        Some(id),
        "campaign.updated",
        serde_json::json!({ "account_id": caller.account_id }),
    )
    .await;
    state.wake_engine();
    Ok(Json(view(&state, updated).await?))
}

/// Deletes a campaign with its contacts, attempts and exports (not while it is dialing:
/// stop or pause it first).
#[utoipa::path(
    delete,
    path = "/v1/campaigns/{id}",
    tag = "campaigns",
    params(("id" = i64, Path, description = "Campaign id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "No valid credentials", body = ErrorBody),
        (status = 404, description = "No such campaign", body = ErrorBody),
        (status = 409, description = "The campaign is processing", body = ErrorBody),
    )
)]
pub async fn delete_campaign(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<StatusCode> {
    let campaign = load(&state, &caller, id).await?;
    if campaign.status == CampaignStatus::Processing {
        return Err(ApiError::conflict(format!(
            "campaign {id} is processing: stop or pause it before deleting it"
        )));
    }
    state.store.delete_campaign(id).await?;
    record_event(
        &state,
        None,
        "campaign.deleted",
        serde_json::json!({ "campaign_id": id, "account_id": caller.account_id }),
    )
    .await;
    state.wake_engine();
    Ok(StatusCode::NO_CONTENT)
}

/// Runs one action: the guides' rule (`apply_action`) decides, the store moves the
/// status only if nobody changed it meanwhile, Restart puts every contact back to pending (in
/// the same transaction; a contact whose call is live is reset when the call ends).
async fn act(
    state: &AppState,
    caller: &Caller,
    id: i64,
    action: CampaignAction,
) -> ApiResult<Json<CampaignView>> {
    let now = state.now();
    let campaign = load(state, caller, id).await?;
    let start_in_future = campaign.settings.schedule_start.is_some_and(|s| s > now);
    let to = apply_action(campaign.status, action, start_in_future)?;
    // Restart is one transaction with its status change, and leaves contacts with a live
    // call alone until that call ends (then they are reset).
    let (updated, reset, deferred) = if action == CampaignAction::Restart {
        state
            .store
            .restart_campaign(id, campaign.status, to, now)
            .await?
    } else {
        let updated = state
            .store
            .set_campaign_status(id, campaign.status, to, now)
            .await?;
        (updated, 0, 0)
    };
    record_event(
        state,
        Some(id),
        "campaign.action",
        serde_json::json!({
            "action": action,
            "from": campaign.status,
            "to": to,
            "account_id": caller.account_id,
            "contacts_reset": reset,
            "contacts_reset_after_their_call": deferred,
        }),
    )
    .await;
    tracing::info!(campaign = id, %action, from = %campaign.status, %to, "campaign action");
    state.wake_engine();
    Ok(Json(view(state, updated).await?))
}

macro_rules! action_handler {
    ($fn:ident, $action:expr, $path:tt, $doc:literal) => {
        #[doc = $doc]
        #[utoipa::path(
            post,
            path = $path,
            tag = "campaigns",
            params(("id" = i64, Path, description = "Campaign id")),
            responses(
                (status = 200, description = "The campaign in its new status", body = CampaignView),
                (status = 401, description = "No valid credentials", body = ErrorBody),
                (status = 404, description = "No such campaign", body = ErrorBody),
                (status = 409, description = "Not allowed in the campaign's status, or another scheduled, processing or paused campaign holds its phone number", body = ErrorBody),
            )
        )]
        pub async fn $fn(
            State(state): State<AppState>,
            caller: Caller,
            ApiPath(id): ApiPath<i64>,
        ) -> ApiResult<Json<CampaignView>> {
            act(&state, &caller, id, $action).await
        }
    };
}

action_handler!(
    start_campaign,
    CampaignAction::Start,
    "/v1/campaigns/{id}/start",
    "Start: new, scheduled or overdue → processing (scheduled while the start time is ahead)."
);
action_handler!(
    stop_campaign,
    CampaignAction::Stop,
    "/v1/campaigns/{id}/stop",
    "Stop: a campaign not yet finished → canceled."
);
action_handler!(
    pause_campaign,
    CampaignAction::Pause,
    "/v1/campaigns/{id}/pause",
    "Pause: processing or scheduled → paused (progress kept)."
);
action_handler!(
    resume_campaign,
    CampaignAction::Resume,
    "/v1/campaigns/{id}/resume",
    "Resume: paused → processing (scheduled while the start time is ahead)."
);
action_handler!(
    restart_campaign,
    CampaignAction::Restart,
    "/v1/campaigns/{id}/restart",
    "Restart: finished or canceled → processing, every contact back to pending."
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::error::parse_json;

    #[test]
    fn durations_read_every_spelling() {
        assert_eq!(parse_duration_text("30s"), Ok(30));
        assert_eq!(parse_duration_text("1min"), Ok(60));
        assert_eq!(parse_duration_text("2 h"), Ok(7200));
        assert_eq!(parse_duration_text("45"), Ok(45));
        assert_eq!(parse_duration_text("1 day"), Ok(86_400));
        assert!(parse_duration_text("soon").is_err());
        let input: CampaignInput = parse_json(
            br#"{"call_interval":"10min","ring_timeout":{"value":20,"unit":"seconds"}}"#,
        )
        .unwrap();
        assert_eq!(input.call_interval, Some(DurationInput(600)));
        assert_eq!(input.ring_timeout, Some(DurationInput(20)));
        let e = parse_json::<CampaignInput>(br#"{"ring_timeout":"forever"}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("ring_timeout"));
    }

    #[test]
    fn guide_spellings_and_nulls() {
        let input: CampaignInput =
            parse_json(br#"{"name":"Q1","did_number":"1000","business_hours_id":null}"#).unwrap();
        assert_eq!(input.connect_to.as_deref(), Some("1000"));
        assert_eq!(input.business_hours_id, Some(None));
        let mut s = CampaignSettings {
            business_hours_id: Some(4),
            ..CampaignSettings::default()
        };
        input.apply(&mut s).unwrap();
        assert_eq!(s.business_hours_id, None);
        assert_eq!(s.name, "Q1");
        let e = parse_json::<CampaignInput>(br#"{"colour":"red"}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("colour"));
    }

    #[test]
    fn local_schedule_start_is_read_in_the_zone() {
        let start = ScheduleStartInput::Text("2030-01-15T09:00".into());
        // New York is UTC-5 in January.
        assert_eq!(
            start.to_millis("America/New_York").unwrap(),
            chrono::DateTime::parse_from_rfc3339("2030-01-15T14:00:00Z")
                .unwrap()
                .timestamp_millis()
        );
        let utc = ScheduleStartInput::Text("2030-01-15T09:00:00+01:00".into());
        assert_eq!(
            utc.to_millis("Asia/Tokyo").unwrap(),
            chrono::DateTime::parse_from_rfc3339("2030-01-15T08:00:00Z")
                .unwrap()
                .timestamp_millis()
        );
        let e = ScheduleStartInput::Text("tomorrow".into())
            .to_millis("UTC")
            .unwrap_err();
        assert_eq!(e.field.as_deref(), Some("schedule_start"));
    }
}
