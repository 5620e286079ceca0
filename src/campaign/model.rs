//! The campaign vocabulary both product guides use, in one place: campaign and contact
//! statuses, the actions an admin takes, the settings a campaign carries, and the rules
//! that say which action is legal in which status.
//!
//! Pure data and pure functions: no I/O, no clock (callers pass `now` where time matters).
//! The store persists these types, the API serialises them (snake_case), the scheduler
//! reads them. Timestamps are milliseconds since the Unix epoch, UTC (`i64`).
//!
//! ## The two guides' words
//!
//! | canonical (`status`) | Auto-Dialer guide (v1/v2) | AI-campaign guide | final |
//! |---|---|---|---|
//! | campaign `new` | New | (draft) | |
//! | campaign `scheduled` | Scheduled | Active, start date in the future | |
//! | campaign `processing` | Processing | Active | |
//! | campaign `paused` | Paused | Paused | |
//! | campaign `finished` | Finished | Completed | yes |
//! | campaign `overdue` | Overdue | (not shown) | |
//! | campaign `canceled` | Canceled | Cancelled | yes |
//! | contact `pending` | Upcoming | Pending | |
//! | contact `dialing` | Dialing | Dialing | |
//! | contact `on_hold` | On hold | Dialing | |
//! | contact `called` | Answered (call in progress) | Called | |
//! | contact `retry` | Upcoming (again) | Retry | |
//! | contact `answered` | Answered | Completed | yes |
//! | contact `completed` | Answered | Completed | yes |
//! | contact `rejected` | Rejected | Failed | yes |
//! | contact `not_answered` | Not answered | No Conversation | yes |
//! | contact `no_conversation` | Not answered | No Conversation | yes |
//! | contact `failed` | Rejected | Failed | yes |
//!
//! Inputs are accepted in either guide's words (`upcoming`, `active`, `completed` for a
//! campaign, `cancelled`, `no conversation`, …); outputs always use the canonical name.

use serde::{Deserialize, Serialize};

use crate::flow::steps::{self, Step, StepError};

/// Milliseconds since the Unix epoch, UTC.
pub type Millis = i64;

/// Why a request about a campaign or contact is refused; one line, for a 409 or a 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    #[error("cannot {action} a campaign that is {status}")]
    IllegalAction {
        action: CampaignAction,
        status: CampaignStatus,
    },
    #[error("{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    /// A message plan's problems, each naming the step and field (never empty).
    #[error("{}", join_step_errors(.0))]
    InvalidSteps(Vec<StepError>),
}

fn join_step_errors(errors: &[StepError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

fn invalid(field: &'static str, reason: impl Into<String>) -> ModelError {
    ModelError::Invalid {
        field,
        reason: reason.into(),
    }
}

macro_rules! word_enum {
    (
        $(#[$meta:meta])*
        $name:ident { $( $(#[$vmeta:meta])* $variant:ident = $canon:literal $(| $alias:literal)* ),+ $(,)? }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $( $(#[$vmeta])* $variant ),+ }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The canonical snake_case name (what the API and the store write).
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $canon),+ }
            }

            /// Parses the canonical name or either guide's word (case, spaces and `-`
            /// do not matter).
            pub fn parse(text: &str) -> Option<$name> {
                let key: String = text
                    .trim()
                    .chars()
                    .map(|c| if c == ' ' || c == '-' { '_' } else { c.to_ascii_lowercase() })
                    .collect();
                match key.as_str() {
                    $( $canon $(| $alias)* => Some($name::$variant), )+
                    _ => None,
                }
            }

            /// The accepted canonical names, for error messages.
            pub fn expected() -> String {
                [$($canon),+].join(" | ")
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = ModelError;
            fn from_str(text: &str) -> Result<Self, ModelError> {
                $name::parse(text).ok_or_else(|| invalid(
                    stringify!($name),
                    format!("unknown value {:?} (expected {})", text, $name::expected()),
                ))
            }
        }

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = String::deserialize(d)?;
                $name::parse(&text).ok_or_else(|| serde::de::Error::custom(format!(
                    "unknown value {:?} (expected {})", text, $name::expected()
                )))
            }
        }
    };
}

/// The same word enums for the other domain files (AI agents, goals).
pub(crate) use word_enum;

word_enum! {
    /// Where a campaign is in its life.
    CampaignStatus {
        /// Created, not scheduled.
        New = "new" | "draft",
        /// Started with a start time still in the future.
        Scheduled = "scheduled",
        /// Dialing (inside business hours) or waiting for the hours to open.
        Processing = "processing" | "active" | "running",
        /// Stopped temporarily; progress kept.
        Paused = "paused",
        /// Every contact reached a final status.
        Finished = "finished" | "completed",
        /// Its start time passed while nothing ran it (server down, or never started).
        Overdue = "overdue",
        /// Stopped for good (Stop); Restart brings it back.
        Canceled = "canceled" | "cancelled" | "stopped",
    }
}

word_enum! {
    /// What an admin can do to a campaign.
    CampaignAction {
        Start = "start",
        Stop = "stop" | "cancel",
        Pause = "pause",
        Resume = "resume",
        Restart = "restart",
    }
}

word_enum! {
    /// Where a contact is in its campaign.
    ContactStatus {
        /// Queued, never dialed (guide 1: Upcoming).
        Pending = "pending" | "upcoming" | "queued",
        /// A call is being placed (INVITE sent, ringing).
        Dialing = "dialing",
        /// Answered by a person who now waits for the connect-to target (agent, hunt group).
        OnHold = "on_hold" | "onhold" | "hold",
        /// A conversation is going on, or it happened and the contact awaits its next step
        /// (becomes `completed` at the latest after the campaign's completion timeout).
        Called = "called",
        /// The last attempt did not reach anyone; another attempt is scheduled.
        Retry = "retry",
        /// A person answered and the campaign's call plan ran.
        Answered = "answered",
        /// Completed all campaign objectives (after `called`, or set by an admin).
        Completed = "completed",
        /// Busy or declined on the last allowed attempt.
        Rejected = "rejected" | "busy",
        /// Never answered on the last allowed attempt.
        NotAnswered = "not_answered" | "no_answer" | "notanswered",
        /// Answered by a machine (or silence) on the last allowed attempt: nobody to talk to.
        NoConversation = "no_conversation" | "noconversation" | "machine",
        /// Could not be dialed: invalid number, DNC, carrier failure on the last attempt.
        Failed = "failed",
    }
}

impl ContactStatus {
    /// A final status: the engine will not dial the contact again (manual retry can).
    pub fn is_final(self) -> bool {
        matches!(
            self,
            ContactStatus::Answered
                | ContactStatus::Completed
                | ContactStatus::Rejected
                | ContactStatus::NotAnswered
                | ContactStatus::NoConversation
                | ContactStatus::Failed
        )
    }

    /// A call for this contact is live (dialing, waiting for an agent, talking).
    pub fn is_in_call(self) -> bool {
        matches!(self, ContactStatus::Dialing | ContactStatus::OnHold)
    }

    /// Only contacts nobody dialed yet may be removed from a campaign (guide 2).
    pub fn is_removable(self) -> bool {
        self == ContactStatus::Pending
    }

    /// Statuses an admin may give a contact by hand (create/edit): the engine owns the
    /// in-call ones.
    pub fn settable_by_admin(self) -> bool {
        !self.is_in_call()
    }
}

impl CampaignStatus {
    pub fn is_final(self) -> bool {
        matches!(self, CampaignStatus::Finished | CampaignStatus::Canceled)
    }

    /// The engine dials for campaigns in this status (inside business hours).
    pub fn is_dialing(self) -> bool {
        self == CampaignStatus::Processing
    }

    /// A campaign in this status holds its phone number (`number_id`): no other campaign
    /// may be in one of these statuses with the same number (itellico's guide: "active or
    /// paused"; a scheduled campaign has been started and waits for its start time).
    pub fn holds_number(self) -> bool {
        matches!(
            self,
            CampaignStatus::Scheduled | CampaignStatus::Processing | CampaignStatus::Paused
        )
    }
}

/// The status an action leads to, or why it is illegal. `start_in_future` says whether the
/// campaign's schedule start is still ahead of `now` (Start then gives `scheduled`).
///
/// | action | from | to |
/// |---|---|---|
/// | start | new, overdue, scheduled | processing, or scheduled if the start time is ahead |
/// | pause | processing, scheduled | paused |
/// | resume | paused | processing, or scheduled if the start time is ahead |
/// | stop | new, scheduled, processing, paused, overdue | canceled |
/// | restart | finished, canceled | processing, or scheduled (every contact back to pending) |
pub fn apply_action(
    status: CampaignStatus,
    action: CampaignAction,
    start_in_future: bool,
) -> Result<CampaignStatus, ModelError> {
    use CampaignAction as A;
    use CampaignStatus as S;
    let running = if start_in_future {
        S::Scheduled
    } else {
        S::Processing
    };
    let to = match (action, status) {
        (A::Start, S::New | S::Overdue | S::Scheduled) => running,
        (A::Pause, S::Processing | S::Scheduled) => S::Paused,
        (A::Resume, S::Paused) => running,
        (A::Stop, S::New | S::Scheduled | S::Processing | S::Paused | S::Overdue) => S::Canceled,
        (A::Restart, S::Finished | S::Canceled) => running,
        _ => return Err(ModelError::IllegalAction { action, status }),
    };
    Ok(to)
}

/// The highest campaign pace accepted: 100,000 calls a second (a trunk's `max_cps` limits what
/// is dialed).
pub const MAX_PACE_PER_MINUTE: f64 = 6_000_000.0;

word_enum! {
    /// Answering-machine detection on answered calls.
    AmdMode {
        Off = "off" | "none" | "disabled",
        Heuristic = "heuristic",
        Text = "text" | "text_based",
        Ml = "ml" | "ml_based",
        Auto = "auto",
    }
}

word_enum! {
    /// What the campaign does when a machine answers.
    MachineAction {
        Hangup = "hangup" | "hang_up",
        /// Wait for the beep (or the end of the greeting) and play the voicemail message.
        LeaveMessage = "leave_message" | "voicemail" | "message",
        /// Treat it like a person (connect to the target anyway).
        Connect = "connect" | "connect_anyway",
    }
}

word_enum! {
    /// How a person is handed to `connect_to`.
    Transfer {
        /// A second leg from us, the media relayed by us (B2BUA); the call stays ours.
        Bridge = "bridge",
        /// Blind transfer (RFC 3515 REFER): the callee's side calls the target itself and our
        /// leg ends once it answered. Not for agent pools.
        Refer = "refer",
    }
}

word_enum! {
    /// How a campaign decides how many calls to place.
    Pacing {
        /// At most `pace` calls a minute; with an agent pool, never more calls waiting to
        /// be answered than agents free (nobody is abandoned for want of an agent).
        Progressive = "progressive",
        /// Dials ahead of free agents from the measured answer rate, machine rate and
        /// handle time, holding the abandon rate at or under `abandon_cap_pct`.
        Predictive = "predictive",
    }
}

word_enum! {
    /// An agent's state (set through the API; `busy` also while the engine holds it for a call).
    AgentState {
        /// Logged in and free (once its wrap-up after the last call is over).
        Available = "available" | "ready",
        /// Logged in, taking no calls for now.
        Paused = "paused",
        /// On a call (or being rung for one).
        Busy = "busy",
        /// Logged out.
        Offline = "offline" | "logged_out",
    }
}

impl AgentState {
    /// Logged in (its time counts as working time).
    pub fn is_logged_in(self) -> bool {
        matches!(self, AgentState::Available | AgentState::Busy)
    }
}

word_enum! {
    /// Who or what ended an answered call: the one word the CLI, the attempt record (CDR) and
    /// the API use for it.
    EndedBy {
        /// The person called hung up.
        Callee = "callee",
        /// The agent hung up.
        Agent = "agent",
        /// We did: the plan was done, a queue timeout, a stop, a shutdown, a failed leg.
        System = "system",
        /// We did, at the call's maximum duration.
        MaxDuration = "max_duration",
        /// We left the call once the callee reached the transfer target (REFER).
        Transferred = "transferred",
    }
}

word_enum! {
    /// The unit an interval is shown in (guide 2's unit selector); the value is stored in
    /// seconds.
    IntervalUnit {
        Seconds = "seconds" | "s" | "sec",
        Minutes = "minutes" | "m" | "min",
        Hours = "hours" | "h",
        Days = "days" | "d",
    }
}

impl IntervalUnit {
    pub fn seconds(self) -> i64 {
        match self {
            IntervalUnit::Seconds => 1,
            IntervalUnit::Minutes => 60,
            IntervalUnit::Hours => 3600,
            IntervalUnit::Days => 86_400,
        }
    }
}

/// A duration as an admin enters it: `{"value": 2, "unit": "hours"}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interval {
    pub value: i64,
    pub unit: IntervalUnit,
}

impl Interval {
    pub const fn new(value: i64, unit: IntervalUnit) -> Interval {
        Interval { value, unit }
    }

    pub fn as_secs(self) -> i64 {
        self.value.saturating_mul(self.unit.seconds())
    }

    pub fn as_millis(self) -> Millis {
        self.as_secs().saturating_mul(1000)
    }
}

/// Which attempt outcomes earn another attempt (while attempts remain).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RetryOn {
    pub busy: bool,
    pub no_answer: bool,
    pub failed: bool,
    pub machine: bool,
}

impl Default for RetryOn {
    fn default() -> Self {
        RetryOn {
            busy: true,
            no_answer: true,
            failed: true,
            machine: true,
        }
    }
}

/// The calling window in the contact's own time zone (derived from the number), e.g.
/// 09:00–21:00; applies on top of the campaign's business hours.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContactWindow {
    /// "HH:MM", inclusive.
    pub start: String,
    /// "HH:MM", exclusive; may be "24:00".
    pub end: String,
}

/// Ring timeout default (seconds) and the floor below which an explicit override is needed
/// (FTC TSR: ring at least 15 s).
pub const DEFAULT_RING_TIMEOUT_SECS: i64 = 30;
pub const MIN_RING_TIMEOUT_SECS: i64 = 15;
pub const MAX_RETRIES: i64 = 10;
pub const DEFAULT_MAX_RETRIES: i64 = 2;
/// How far in the past a schedule start may lie (guide 2: up to 24 h).
pub const MAX_START_IN_PAST_MS: Millis = 24 * 3600 * 1000;
/// The abandon-rate cap the FTC TSR allows (per campaign, rolling 30 days), percent.
pub const DEFAULT_ABANDON_CAP_PCT: f64 = 3.0;
/// How long an agent is rung before the next is tried.
pub const DEFAULT_AGENT_RING_TIMEOUT_SECS: i64 = 15;
/// How long a person who answered may wait for an agent (the TSR's 2 s).
pub const DEFAULT_QUEUE_TIMEOUT_SECS: i64 = 2;
/// The rolling window of the abandon rate (FTC TSR: 30 days).
pub const ABANDON_WINDOW_MS: Millis = 30 * 86_400 * 1000;

/// Everything an admin sets on a campaign (both guides together). Ids and bookkeeping
/// (status, timestamps, counters) live on [`Campaign`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CampaignSettings {
    pub name: String,
    pub description: String,
    /// Where answered people go: a SIP URI (`sip:agent@pbx`) or a number (hunt group,
    /// auto-attendant, agent); guide 1 v1 calls it "DID number". Empty: no bridge.
    pub connect_to: String,
    /// AI voice agent (WebSocket media stream URL), bridged instead of `connect_to`: a
    /// shortcut for a `twilio_ws` agent with that URL (see [`super::ai::AiAgentSpec::from_url`]).
    pub ai_agent_url: Option<String>,
    /// The AI agent record (`/v1/agents/ai`) answered people are bridged to, of the
    /// campaign's account; not together with `ai_agent_url`.
    pub ai_agent_id: Option<i64>,
    /// When dialing may begin (UTC ms); `None`: as soon as it is started.
    pub schedule_start: Option<Millis>,
    /// The time zone the schedule start was entered in (IANA name), shown back to the admin.
    pub schedule_timezone: String,
    /// Calls started per minute (smooth).
    pub pace: f64,
    /// Calls live at once for this campaign.
    pub max_concurrent: i64,
    /// Least time between two call starts of this campaign, seconds (guide 2's "call
    /// interval"; with `pace` the stricter of the two wins).
    pub call_interval_secs: i64,
    pub ring_timeout_secs: i64,
    /// Needed for a ring timeout under 15 s.
    pub ring_timeout_override: bool,
    /// Business-hours schedule id; `None`: 24/7.
    pub business_hours_id: Option<i64>,
    /// Optional calling window in each contact's own time zone.
    pub contact_window: Option<ContactWindow>,
    pub amd_mode: AmdMode,
    pub machine_action: MachineAction,
    /// WAV left on voicemail (machine_action = leave_message).
    pub voicemail_message: Option<String>,
    /// WAV played to people when the campaign has no connect-to target (call plan); the
    /// call hangs up when it ends. `None` and no target: hang up at once.
    pub play_message: Option<String>,
    /// The message plan run for people (play, collect digits, record, connect, hang up);
    /// `None`: `play_message`, then hang up (see [`CampaignSettings::plan`]).
    pub steps: Option<Vec<Step>>,
    pub max_retries: i64,
    pub retry_interval: Interval,
    pub retry_on: RetryOn,
    /// How long a contact may stay `called` before it is `completed`.
    pub completion_timeout: Interval,
    pub caller_id: String,
    /// The account's phone number record (`/v1/numbers`) the campaign calls from: set at
    /// creation only, then `caller_id` is that number. `None`: `caller_id` is free text.
    pub number_id: Option<i64>,
    pub billable_account: String,
    /// SIP profile (trunk) name from sip-profiles/; empty: the default profile.
    pub sip_profile: String,
    pub recording: bool,
    /// Default country for numbers without a `+` (ISO 3166 alpha-2, e.g. "US").
    pub default_country: String,
    /// Progressive (today's pace) or predictive (dials ahead of free agents).
    pub pacing: Pacing,
    /// How a person is handed to `connect_to`: bridged (default) or transferred with REFER.
    pub transfer: Transfer,
    /// The most people answered and not connected to an agent within 2 s, percent of the
    /// people answered (machines do not count), rolling 30 days: 0–3 (default 3, FTC TSR).
    pub abandon_cap_pct: f64,
    /// WAV played to a person no agent could take (seller's name and callback number);
    /// required for predictive pacing.
    pub abandon_message: Option<String>,
    /// How long an agent of the pool is rung before the next one is tried, seconds.
    pub agent_ring_timeout_secs: i64,
    /// How long a person who answered waits for an agent before being abandoned, seconds.
    pub queue_timeout_secs: i64,
}

impl Default for CampaignSettings {
    fn default() -> Self {
        CampaignSettings {
            name: String::new(),
            description: String::new(),
            connect_to: String::new(),
            ai_agent_url: None,
            ai_agent_id: None,
            schedule_start: None,
            schedule_timezone: "UTC".into(),
            pace: 10.0,
            max_concurrent: 10,
            call_interval_secs: 0,
            ring_timeout_secs: DEFAULT_RING_TIMEOUT_SECS,
            ring_timeout_override: false,
            business_hours_id: None,
            contact_window: None,
            amd_mode: AmdMode::Off,
            machine_action: MachineAction::Hangup,
            voicemail_message: None,
            play_message: None,
            steps: None,
            max_retries: DEFAULT_MAX_RETRIES,
            retry_interval: Interval::new(30, IntervalUnit::Minutes),
            retry_on: RetryOn::default(),
            completion_timeout: Interval::new(0, IntervalUnit::Minutes),
            caller_id: String::new(),
            number_id: None,
            billable_account: String::new(),
            sip_profile: String::new(),
            recording: false,
            default_country: "US".into(),
            pacing: Pacing::Progressive,
            transfer: Transfer::Bridge,
            abandon_cap_pct: DEFAULT_ABANDON_CAP_PCT,
            abandon_message: None,
            agent_ring_timeout_secs: DEFAULT_AGENT_RING_TIMEOUT_SECS,
            queue_timeout_secs: DEFAULT_QUEUE_TIMEOUT_SECS,
        }
    }
}

impl CampaignSettings {
    /// Checks every field; `now` bounds the schedule start (at most 24 h in the past).
    /// The first problem found is returned, naming the field.
    pub fn validate(&self, now: Millis) -> Result<(), ModelError> {
        if self.name.trim().is_empty() {
            return Err(invalid("name", "must not be empty"));
        }
        if self.name.chars().count() > 200 {
            return Err(invalid("name", "longer than 200 characters"));
        }
        if self.description.chars().count() > 4000 {
            return Err(invalid("description", "longer than 4000 characters"));
        }
        // The trunks' `max_cps` is the real limit; this only refuses nonsense.
        if !self.pace.is_finite() || self.pace <= 0.0 || self.pace > MAX_PACE_PER_MINUTE {
            return Err(invalid(
                "pace",
                format!(
                    "{} is not a rate between 0 and {MAX_PACE_PER_MINUTE} calls per minute",
                    self.pace
                ),
            ));
        }
        if !(1..=10_000).contains(&self.max_concurrent) {
            return Err(invalid(
                "max_concurrent",
                format!("{} is not between 1 and 10000", self.max_concurrent),
            ));
        }
        if !(0..=86_400).contains(&self.call_interval_secs) {
            return Err(invalid(
                "call_interval_secs",
                format!("{} is not between 0 and 86400", self.call_interval_secs),
            ));
        }
        if !(1..=600).contains(&self.ring_timeout_secs) {
            return Err(invalid(
                "ring_timeout_secs",
                format!("{} is not between 1 and 600", self.ring_timeout_secs),
            ));
        }
        if self.ring_timeout_secs < MIN_RING_TIMEOUT_SECS && !self.ring_timeout_override {
            return Err(invalid(
                "ring_timeout_secs",
                format!(
                    "{} s is below {MIN_RING_TIMEOUT_SECS} s (set ring_timeout_override to allow it)",
                    self.ring_timeout_secs
                ),
            ));
        }
        if !(0..=MAX_RETRIES).contains(&self.max_retries) {
            return Err(invalid(
                "max_retries",
                format!("{} is not between 0 and {MAX_RETRIES}", self.max_retries),
            ));
        }
        if self.retry_interval.value < 0 || self.retry_interval.as_secs() > 365 * 86_400 {
            return Err(invalid("retry_interval", "must be between 0 and 365 days"));
        }
        if self.completion_timeout.value < 0 || self.completion_timeout.as_secs() > 365 * 86_400 {
            return Err(invalid(
                "completion_timeout",
                "must be between 0 and 365 days",
            ));
        }
        if self.schedule_timezone.parse::<chrono_tz::Tz>().is_err() {
            return Err(invalid(
                "schedule_timezone",
                format!("{:?} is not an IANA time zone", self.schedule_timezone),
            ));
        }
        if let Some(start) = self.schedule_start {
            if start < now - MAX_START_IN_PAST_MS {
                return Err(invalid(
                    "schedule_start",
                    "is more than 24 hours in the past",
                ));
            }
        }
        if let Some(url) = &self.ai_agent_url {
            if !(url.starts_with("ws://") || url.starts_with("wss://")) {
                return Err(invalid(
                    "ai_agent_url",
                    format!("{url:?} is not a ws:// or wss:// URL"),
                ));
            }
        }
        if self.ai_agent_id.is_some() && self.ai_agent_url.is_some() {
            return Err(invalid(
                "ai_agent_id",
                "give ai_agent_id or ai_agent_url, not both",
            ));
        }
        if let Some(window) = &self.contact_window {
            let start = parse_hhmm(&window.start).ok_or_else(|| {
                invalid(
                    "contact_window",
                    format!("start {:?} is not HH:MM", window.start),
                )
            })?;
            let end = parse_hhmm(&window.end).ok_or_else(|| {
                invalid(
                    "contact_window",
                    format!("end {:?} is not HH:MM", window.end),
                )
            })?;
            if start >= end {
                return Err(invalid("contact_window", "start must be before end"));
            }
        }
        if self.machine_action == MachineAction::LeaveMessage
            && self.voicemail_message.as_deref().unwrap_or("").is_empty()
        {
            return Err(invalid(
                "voicemail_message",
                "is required when machine_action is leave_message",
            ));
        }
        for (field, name) in [
            ("voicemail_message", &self.voicemail_message),
            ("play_message", &self.play_message),
        ] {
            if let Some(problem) = name
                .as_deref()
                .filter(|n| !n.is_empty())
                .and_then(steps::media_name_problem)
            {
                return Err(invalid(field, problem));
            }
        }
        if let Some(name) = &self.abandon_message {
            check_message_name("abandon_message", name)?;
        }
        if !self.abandon_cap_pct.is_finite() || !(0.0..=3.0).contains(&self.abandon_cap_pct) {
            return Err(invalid(
                "abandon_cap_pct",
                format!(
                    "{} is not a percentage between 0 and 3 (the FTC TSR allows at most 3 %)",
                    self.abandon_cap_pct
                ),
            ));
        }
        if self.pacing == Pacing::Predictive
            && self.abandon_message.as_deref().unwrap_or("").is_empty()
        {
            return Err(invalid(
                "abandon_message",
                "is required when pacing is predictive (an abandoned person must hear who called and a callback number)",
            ));
        }
        if self.transfer == Transfer::Refer
            && matches!(
                super::agents::ConnectTarget::parse(&self.connect_to),
                super::agents::ConnectTarget::Pool(_) | super::agents::ConnectTarget::None
            )
        {
            return Err(invalid(
                "transfer",
                "refer needs connect_to to be a number or a SIP URI (an agent pool is bridged)",
            ));
        }
        if self.pacing == Pacing::Predictive && self.connect_to.trim().is_empty() {
            return Err(invalid(
                "connect_to",
                "must name an agent pool when pacing is predictive",
            ));
        }
        if !(1..=300).contains(&self.agent_ring_timeout_secs) {
            return Err(invalid(
                "agent_ring_timeout_secs",
                format!("{} is not between 1 and 300", self.agent_ring_timeout_secs),
            ));
        }
        if !(1..=3600).contains(&self.queue_timeout_secs) {
            return Err(invalid(
                "queue_timeout_secs",
                format!("{} is not between 1 and 3600", self.queue_timeout_secs),
            ));
        }
        let country = self.default_country.trim();
        if country.len() != 2 || !country.chars().all(|c| c.is_ascii_alphabetic()) {
            return Err(invalid(
                "default_country",
                format!(
                    "{:?} is not a two-letter country code",
                    self.default_country
                ),
            ));
        }
        if let Some(plan) = &self.steps {
            let mut errors = steps::validate(plan).err().unwrap_or_default();
            if self.connect_to.is_empty() {
                errors.extend(steps::first_connect(plan));
            }
            if !errors.is_empty() {
                return Err(ModelError::InvalidSteps(errors));
            }
        }
        Ok(())
    }

    /// The steps people hear: `steps`, or `play_message` then hang up.
    pub fn plan(&self) -> Vec<Step> {
        match &self.steps {
            Some(plan) => plan.clone(),
            None => steps::default_steps(self.play_message.as_deref()),
        }
    }

    /// Every media file the campaign plays, with the field that names it
    /// (`play_message`, `voicemail_message`, `steps[1].prompt`), for existence checks.
    pub fn media_files(&self) -> Vec<(String, String)> {
        let mut files = Vec::new();
        for (field, name) in [
            ("voicemail_message", &self.voicemail_message),
            ("play_message", &self.play_message),
        ] {
            if let Some(name) = name.as_deref().filter(|n| !n.is_empty()) {
                files.push((field.to_string(), name.to_string()));
            }
        }
        for (i, step) in self.steps.iter().flatten().enumerate() {
            for (field, name) in step.files() {
                files.push((format!("steps[{i}].{field}"), name.to_string()));
            }
        }
        files
    }

    pub fn ring_timeout_ms(&self) -> Millis {
        self.ring_timeout_secs * 1000
    }
}

/// A message file name (`abandon_message`): a WAV file, not empty, no NUL, no `..`
/// component.
pub fn check_message_name(field: &'static str, name: &str) -> Result<(), ModelError> {
    let trimmed = name.trim();
    if trimmed.is_empty() {
        return Err(invalid(field, "must not be empty (null clears it)"));
    }
    if trimmed.contains('\0') || trimmed.split(['/', '\\']).any(|part| part == "..") {
        return Err(invalid(field, format!("{name:?} is not a file name")));
    }
    if !trimmed.to_ascii_lowercase().ends_with(".wav") {
        return Err(invalid(field, format!("{name:?} is not a .wav file")));
    }
    Ok(())
}

/// "HH:MM" → minutes after midnight (0..=1440; "24:00" allowed).
pub fn parse_hhmm(text: &str) -> Option<u32> {
    let (h, m) = text.trim().split_once(':')?;
    if h.is_empty() || h.len() > 2 || m.len() != 2 {
        return None;
    }
    let h: u32 = h.parse().ok()?;
    let m: u32 = m.parse().ok()?;
    if m >= 60 || h > 24 || (h == 24 && m != 0) {
        return None;
    }
    Some(h * 60 + m)
}

/// A stored campaign.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Campaign {
    pub id: i64,
    pub status: CampaignStatus,
    #[serde(flatten)]
    pub settings: CampaignSettings,
    pub created_at: Millis,
    pub updated_at: Millis,
    /// When it last went to processing.
    pub started_at: Option<Millis>,
    pub finished_at: Option<Millis>,
}

/// A contact of one campaign.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Contact {
    pub id: i64,
    pub campaign_id: i64,
    /// E.164, `+` and digits.
    pub phone: String,
    pub name: String,
    pub comments: String,
    pub tags: Vec<String>,
    /// IANA zone for the contact window; derived from the number when not given.
    pub timezone: Option<String>,
    pub status: ContactStatus,
    /// Calls placed so far (retries included).
    pub attempts: i64,
    /// Retries done so far (`attempts - 1` once dialed, reset by restart).
    pub retries: i64,
    /// Not before this time (retry interval, manual retry sets it to now).
    pub next_attempt_at: Option<Millis>,
    pub last_attempt_at: Option<Millis>,
    /// The last attempt's outcome word (answered, busy, no_answer, machine, failed, …).
    pub last_outcome: Option<String>,
    pub created_at: Millis,
    pub updated_at: Millis,
}

/// One opening interval of a business day, "HH:MM"–"HH:MM" (end exclusive, may be "24:00").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenHours {
    pub start: String,
    pub end: String,
}

/// A business-hours schedule (guide 2: Settings → Business Hours), shared by campaigns.
/// Calls are placed only while it is open, in its own time zone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BusinessHoursSpec {
    pub name: String,
    /// IANA time zone, e.g. "America/New_York".
    pub timezone: String,
    /// Opening intervals per weekday; index 0 = Monday … 6 = Sunday. A day with no
    /// interval is closed.
    pub week: [Vec<OpenHours>; 7],
    /// Whole days closed (holidays), "YYYY-MM-DD" in the schedule's zone.
    #[serde(default)]
    pub closed_dates: Vec<String>,
}

impl BusinessHoursSpec {
    /// Checks the zone, every interval and every date; names the first bad one.
    pub fn validate(&self) -> Result<(), ModelError> {
        if self.name.trim().is_empty() {
            return Err(invalid("name", "must not be empty"));
        }
        if self.timezone.parse::<chrono_tz::Tz>().is_err() {
            return Err(invalid(
                "timezone",
                format!("{:?} is not an IANA time zone", self.timezone),
            ));
        }
        for (day, intervals) in self.week.iter().enumerate() {
            for hours in intervals {
                let (Some(start), Some(end)) = (parse_hhmm(&hours.start), parse_hhmm(&hours.end))
                else {
                    return Err(invalid(
                        "week",
                        format!(
                            "day {day}: {:?}-{:?} is not HH:MM-HH:MM",
                            hours.start, hours.end
                        ),
                    ));
                };
                if start >= end {
                    return Err(invalid(
                        "week",
                        format!(
                            "day {day}: {}-{} ends before it starts",
                            hours.start, hours.end
                        ),
                    ));
                }
            }
        }
        for date in &self.closed_dates {
            if chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d").is_err() {
                return Err(invalid(
                    "closed_dates",
                    format!("{date:?} is not YYYY-MM-DD"),
                ));
            }
        }
        Ok(())
    }
}

/// A stored business-hours schedule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BusinessHours {
    pub id: i64,
    #[serde(flatten)]
    pub spec: BusinessHoursSpec,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_guides_words_parse_to_one_status() {
        assert_eq!(
            ContactStatus::parse("Upcoming"),
            Some(ContactStatus::Pending)
        );
        assert_eq!(ContactStatus::parse("On hold"), Some(ContactStatus::OnHold));
        assert_eq!(
            ContactStatus::parse("Not answered"),
            Some(ContactStatus::NotAnswered)
        );
        assert_eq!(
            ContactStatus::parse("No Conversation"),
            Some(ContactStatus::NoConversation)
        );
        assert_eq!(
            CampaignStatus::parse("Active"),
            Some(CampaignStatus::Processing)
        );
        assert_eq!(
            CampaignStatus::parse("Cancelled"),
            Some(CampaignStatus::Canceled)
        );
        assert_eq!(
            CampaignStatus::parse("Completed"),
            Some(CampaignStatus::Finished)
        );
        assert_eq!(ContactStatus::parse("ringing"), None);
        for status in ContactStatus::ALL {
            assert_eq!(ContactStatus::parse(status.as_str()), Some(*status));
        }
        for status in CampaignStatus::ALL {
            assert_eq!(CampaignStatus::parse(status.as_str()), Some(*status));
        }
    }

    #[test]
    fn statuses_serialise_in_snake_case_and_reject_unknown_words() {
        let json = serde_json::to_string(&ContactStatus::NoConversation).unwrap();
        assert_eq!(json, "\"no_conversation\"");
        let err = serde_json::from_str::<ContactStatus>("\"sleeping\"").unwrap_err();
        assert!(err.to_string().contains("expected pending"), "{err}");
    }

    #[test]
    fn lifecycle_follows_the_guides() {
        use CampaignAction as A;
        use CampaignStatus as S;
        assert_eq!(apply_action(S::New, A::Start, false), Ok(S::Processing));
        assert_eq!(apply_action(S::New, A::Start, true), Ok(S::Scheduled));
        assert_eq!(apply_action(S::Processing, A::Pause, false), Ok(S::Paused));
        assert_eq!(apply_action(S::Paused, A::Resume, false), Ok(S::Processing));
        assert_eq!(apply_action(S::Processing, A::Stop, false), Ok(S::Canceled));
        assert_eq!(
            apply_action(S::Finished, A::Restart, false),
            Ok(S::Processing)
        );
        assert_eq!(apply_action(S::Overdue, A::Start, false), Ok(S::Processing));
        let err = apply_action(S::Finished, A::Pause, false).unwrap_err();
        assert_eq!(err.to_string(), "cannot pause a campaign that is finished");
        assert!(apply_action(S::Processing, A::Start, false).is_err());
        assert!(apply_action(S::Paused, A::Pause, false).is_err());
        assert!(apply_action(S::New, A::Resume, false).is_err());
        assert!(apply_action(S::Processing, A::Restart, false).is_err());
        assert!(apply_action(S::Canceled, A::Stop, false).is_err());
    }

    #[test]
    fn settings_validation_names_the_field() {
        let now = 1_700_000_000_000;
        let good = CampaignSettings {
            name: "Q1 Sales Outreach".into(),
            ..CampaignSettings::default()
        };
        assert_eq!(good.validate(now), Ok(()));
        let field = |s: CampaignSettings| match s.validate(now) {
            Err(ModelError::Invalid { field, .. }) => field,
            other => panic!("expected an error, got {other:?}"),
        };
        assert_eq!(field(CampaignSettings::default()), "name");
        assert_eq!(
            field(CampaignSettings {
                ring_timeout_secs: 10,
                ..good.clone()
            }),
            "ring_timeout_secs"
        );
        assert_eq!(
            CampaignSettings {
                ring_timeout_secs: 10,
                ring_timeout_override: true,
                ..good.clone()
            }
            .validate(now),
            Ok(())
        );
        assert_eq!(
            field(CampaignSettings {
                max_retries: 11,
                ..good.clone()
            }),
            "max_retries"
        );
        assert_eq!(
            field(CampaignSettings {
                pace: f64::NAN,
                ..good.clone()
            }),
            "pace"
        );
        assert_eq!(
            field(CampaignSettings {
                schedule_start: Some(now - MAX_START_IN_PAST_MS - 1),
                ..good.clone()
            }),
            "schedule_start"
        );
        assert_eq!(
            CampaignSettings {
                schedule_start: Some(now - MAX_START_IN_PAST_MS + 1000),
                ..good.clone()
            }
            .validate(now),
            Ok(())
        );
        assert_eq!(
            field(CampaignSettings {
                schedule_timezone: "Mars/Olympus".into(),
                ..good.clone()
            }),
            "schedule_timezone"
        );
        assert_eq!(
            field(CampaignSettings {
                machine_action: MachineAction::LeaveMessage,
                ..good.clone()
            }),
            "voicemail_message"
        );
    }

    #[test]
    fn media_fields_take_file_names_not_server_paths() {
        let now = 1_700_000_000_000;
        let good = CampaignSettings {
            name: "Reminders".into(),
            play_message: Some("reminder.wav".into()),
            ..CampaignSettings::default()
        };
        assert_eq!(good.validate(now), Ok(()));
        let err = CampaignSettings {
            play_message: Some("/etc/passwd".into()),
            ..good.clone()
        }
        .validate(now)
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "play_message: \"/etc/passwd\" is an absolute path; give a file name in the media directory"
        );
        let err = CampaignSettings {
            machine_action: MachineAction::LeaveMessage,
            voicemail_message: Some("../vm.wav".into()),
            ..good.clone()
        }
        .validate(now)
        .unwrap_err();
        assert!(err.to_string().starts_with("voicemail_message: "), "{err}");
    }

    #[test]
    fn a_plan_is_checked_with_the_campaign() {
        let now = 1_700_000_000_000;
        let plan: Vec<Step> = serde_json::from_str(
            r#"[{"type":"collect","prompt":"menu.wav","max_digits":0,"on":{"1":"connect"}}]"#,
        )
        .unwrap();
        let settings = CampaignSettings {
            name: "Survey".into(),
            steps: Some(plan),
            ..CampaignSettings::default()
        };
        let Err(ModelError::InvalidSteps(errors)) = settings.validate(now) else {
            panic!("expected step errors");
        };
        let paths: Vec<String> = errors.iter().map(StepError::path).collect();
        assert_eq!(paths, ["steps[0].max_digits", "steps[0].on.1"]);
        assert!(
            errors[1].to_string().contains("connect_to"),
            "{}",
            errors[1]
        );
        assert_eq!(
            settings.media_files(),
            [("steps[0].prompt".to_string(), "menu.wav".to_string())]
        );
        // With a target and a sound max_digits the same plan is fine.
        let mut fixed = settings.clone();
        fixed.connect_to = "sip:agent@127.0.0.1".into();
        if let Some(Step::Collect(steps::Collect { max_digits, .. })) =
            fixed.steps.as_mut().and_then(|s| s.first_mut())
        {
            *max_digits = 1;
        }
        assert_eq!(fixed.validate(now), Ok(()));
        // No steps: the play message, then hang up.
        let plain = CampaignSettings {
            play_message: Some("hello.wav".into()),
            ..fixed
        };
        assert_eq!(plain.plan().len(), 1);
        let plain = CampaignSettings {
            steps: None,
            ..plain
        };
        assert_eq!(plain.plan(), steps::default_steps(Some("hello.wav")));
    }

    #[test]
    fn hhmm_parses_the_day_and_nothing_else() {
        assert_eq!(parse_hhmm("09:00"), Some(540));
        assert_eq!(parse_hhmm("24:00"), Some(1440));
        assert_eq!(parse_hhmm("24:01"), None);
        assert_eq!(parse_hhmm("9:5"), None);
        assert_eq!(parse_hhmm("12:60"), None);
        assert_eq!(parse_hhmm("noon"), None);
    }

    #[test]
    fn intervals_convert_units() {
        assert_eq!(Interval::new(2, IntervalUnit::Hours).as_secs(), 7200);
        assert_eq!(
            Interval::new(3, IntervalUnit::Days).as_millis(),
            259_200_000
        );
        let json = r#"{"value":30,"unit":"minutes"}"#;
        let parsed: Interval = serde_json::from_str(json).unwrap();
        assert_eq!(parsed.as_secs(), 1800);
    }
}
