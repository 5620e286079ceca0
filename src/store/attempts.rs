//! Call attempts: one CDR per call placed or callback answered (`direction`): SIP result,
//! timings, AMD verdict, RTP figures, recording, DTMF, and the agent leg of a bridged call
//! ([`BridgeRecord`]); and the campaign report built from them: per-status contact counts,
//! answered / not answered / total calls, the 7 × 24 answer-rate heat map, the abandon rate
//! (campaign total and rolling 30 days), agent occupancy and queue wait; and the measured rates
//! the predictive pacer reads ([`PacingStats`]). Calls, heat map, abandon rate and pacing
//! rates count outbound attempts only; agent occupancy counts callbacks too.
//!
//! A person answered = an `answered` attempt AMD did not class as a machine, fax or
//! unknown (`answered_by` human, or none when AMD was off); machines never count in the
//! abandon rate.
//!
//! The heat map is bucketed in Rust: SQL groups attempts by UTC quarter hour (every zone
//! in use today is offset by whole quarter hours), and each quarter hour is placed in the
//! requested IANA zone's weekday × hour, so both engines give the same answer.

use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::Row;

use super::campaigns::{CallCounts, ContactCounts};
use super::contacts::{filter_conditions, ContactFilter};
use super::{where_clause, Arg, Page, Paged, Result, Sql, Store, StoreError};
use crate::campaign::model::{EndedBy, Millis};

/// The outcome word of an answered attempt (what the heat map and the counts call
/// answered).
pub const ANSWERED: &str = "answered";
const QUARTER_HOUR_MS: i64 = 15 * 60 * 1000;

/// Which way a recorded call went.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CallDirection {
    /// We dialed the contact (a campaign attempt).
    #[default]
    Outbound,
    /// The contact called us (a callback, matched to the campaign and contact).
    Inbound,
}

impl CallDirection {
    pub fn as_str(self) -> &'static str {
        match self {
            CallDirection::Outbound => "outbound",
            CallDirection::Inbound => "inbound",
        }
    }

    pub fn parse(s: &str) -> Option<CallDirection> {
        match s {
            "outbound" => Some(CallDirection::Outbound),
            "inbound" => Some(CallDirection::Inbound),
            _ => None,
        }
    }
}

/// One call attempt as the call reports it (a CDR).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AttemptRecord {
    pub campaign_id: Option<i64>,
    pub contact_id: Option<i64>,
    /// 1 for the first call of the contact.
    pub attempt_number: i64,
    pub call_id: String,
    /// Trunk profile used.
    pub sip_profile: String,
    pub caller_id: String,
    pub billable_account: String,
    /// The number or URI dialed.
    pub destination: String,
    pub started_at: Millis,
    pub ended_at: Option<Millis>,
    /// INVITE → first 18x.
    pub ring_ms: Option<i64>,
    /// INVITE → 200 OK.
    pub answer_ms: Option<i64>,
    /// Answer → end; 0 when not answered.
    pub duration_ms: i64,
    pub sip_code: Option<i64>,
    pub reason: String,
    /// answered, busy, rejected, no_answer, unavailable, invalid_number, failed, …
    pub outcome: String,
    /// Who or what ended the call (`None`: never answered).
    pub ended_by: Option<EndedBy>,
    pub codec: Option<String>,
    pub amd_mode: Option<String>,
    /// MACHINE / HUMAN / NOTSURE / HANGUP (Asterisk words) or the detector's own.
    pub amd_verdict: Option<String>,
    /// Twilio's AnsweredBy: human, machine_start, machine_end_beep, …
    pub answered_by: Option<String>,
    pub amd_cause: Option<String>,
    pub amd_confidence: Option<f64>,
    /// Answer → verdict.
    pub amd_decision_ms: Option<i64>,
    /// Answer → beep, when one was heard.
    pub beep_ms: Option<i64>,
    pub rtp_sent: i64,
    pub rtp_received: i64,
    pub rtp_lost: i64,
    pub jitter_ms: Option<f64>,
    pub rtt_ms: Option<f64>,
    pub recording_path: Option<String>,
    /// Digits the callee pressed, in order.
    pub dtmf: String,
    /// Digits the message plan collected (every `collect` step's entry, in order).
    pub digits: String,
    /// The message plan's `record` file (kept on the server; served by
    /// `GET /v1/attempts/{id}/recording`).
    pub recording: Option<String>,
    /// The profile's trunk the call ended on.
    pub trunk: Option<String>,
    /// The trunks the call left behind before it, in order, and why.
    pub failover: Vec<crate::sip::trunks::TrunkTry>,
    /// The Special Information Tone heard in early media that ended the attempt.
    pub sit: Option<String>,
    /// RTP and RTCP packets dropped for their source (see `rtp_latching`).
    pub rtp_rejected_source: i64,
    /// Where our RTP went instead of the SDP address, when it moved (symmetric RTP).
    pub rtp_latched_to: Option<String>,
    /// Which way the call went: we dialed the contact, or the contact called us back.
    pub direction: CallDirection,
    /// The agent leg (all empty when the call was not bridged to an agent).
    #[serde(flatten)]
    pub bridge: BridgeRecord,
}

/// The agent leg of an attempt and what the queue did (times in ms since the epoch).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BridgeRecord {
    /// The SIP Call-ID of the leg to the agent.
    pub agent_call_id: Option<String>,
    pub agent_id: Option<i64>,
    pub agent_name: Option<String>,
    /// When the agent's phone started ringing (first 18x), and when it answered.
    pub agent_ring_at: Option<Millis>,
    pub agent_answer_at: Option<Millis>,
    /// When the two legs were joined, and when the bridge ended.
    pub bridge_start_at: Option<Millis>,
    pub bridge_end_at: Option<Millis>,
    /// Bridge start → end.
    pub talk_ms: Option<i64>,
    /// From the person's greeting (the answer verdict) to the agent's answer, or to the
    /// abandon.
    pub queue_wait_ms: Option<i64>,
    /// How long the agent had been free before this call took it (for occupancy).
    pub agent_idle_ms: Option<i64>,
    /// A person answered and was not connected to an agent within 2 s of the greeting.
    pub abandoned: bool,
    /// `sip`, `refer`, `twilio_ws`, `l16_ws` or `webrtc`; and what it was connected to (a
    /// number, URI, `pool:NAME` or an AI agent's URL).
    pub bridge_kind: Option<String>,
    pub bridge_target: Option<String>,
    /// The call's SID as an AI agent saw it (`CA…`).
    pub call_sid: Option<String>,
    /// AI agents: from the stream's start to the agent's first audio; marks it placed; clears
    /// (barge-ins) it sent.
    pub agent_first_audio_ms: Option<i64>,
    pub agent_marks: Option<i64>,
    pub agent_clears: Option<i64>,
}
/// A stored attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallAttempt {
    pub id: i64,
    #[serde(flatten)]
    pub record: AttemptRecord,
}

/// Which attempts a list shows. The contact conditions (status, tags, retries, text)
/// apply to the attempt's contact.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AttemptFilter {
    pub campaign_id: Option<i64>,
    pub contact_id: Option<i64>,
    /// Any of these outcomes.
    pub outcomes: Vec<String>,
    /// Started at or after.
    pub since: Option<Millis>,
    /// Started before.
    pub until: Option<Millis>,
    pub contact: ContactFilter,
}

/// One cell of the heat map.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeatCell {
    pub attempts: i64,
    pub answered: i64,
}

impl HeatCell {
    /// answered / attempts, 0 when there were none.
    pub fn rate(&self) -> f64 {
        if self.attempts == 0 {
            0.0
        } else {
            self.answered as f64 / self.attempts as f64
        }
    }
}

/// Attempts and answers by weekday (0 = Monday … 6 = Sunday) × hour (0–23) of the
/// attempt's start, in `timezone`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeatMap {
    pub timezone: String,
    pub cells: Vec<[HeatCell; 24]>,
}

impl HeatMap {
    pub fn cell(&self, weekday: usize, hour: usize) -> HeatCell {
        self.cells[weekday][hour]
    }
}

/// What the campaign dashboard shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CampaignReport {
    pub campaign_id: i64,
    pub contacts: ContactCounts,
    pub calls: CallCounts,
    pub heat_map: HeatMap,
}

/// The columns an attempt record is inserted with, in [`record_args`]' order.
macro_rules! insert_columns {
    () => {
        "campaign_id, contact_id, attempt_number, call_id, sip_profile, \
    caller_id, billable_account, destination, started_at, ended_at, ring_ms, answer_ms, \
    duration_ms, sip_code, reason, outcome, ended_by, codec, amd_mode, amd_verdict, answered_by, \
    amd_cause, amd_confidence, amd_decision_ms, beep_ms, rtp_sent, rtp_received, rtp_lost, \
    jitter_ms, rtt_ms, recording_path, dtmf, digits, recording, trunk, failover, sit, \
    rtp_rejected_source, rtp_latched_to, direction, agent_call_id, agent_id, \
    agent_name, agent_ring_at, agent_answer_at, bridge_start_at, bridge_end_at, talk_ms, \
    queue_wait_ms, agent_idle_ms, abandoned, bridge_kind, bridge_target, call_sid, \
    agent_first_audio_ms, agent_marks, agent_clears"
    };
}
pub(crate) const INSERT_COLUMNS: &str = insert_columns!();
const COLUMNS: &str = concat!("id, ", insert_columns!());

/// The bridge columns in [`bridge_args`] order.
const BRIDGE_COLUMNS: [&str; 17] = [
    "agent_call_id",
    "agent_id",
    "agent_name",
    "agent_ring_at",
    "agent_answer_at",
    "bridge_start_at",
    "bridge_end_at",
    "talk_ms",
    "queue_wait_ms",
    "agent_idle_ms",
    "abandoned",
    "bridge_kind",
    "bridge_target",
    "call_sid",
    "agent_first_audio_ms",
    "agent_marks",
    "agent_clears",
];

fn bridge_args(b: &BridgeRecord) -> Vec<Arg> {
    vec![
        Arg::OptText(b.agent_call_id.clone()),
        Arg::OptI64(b.agent_id),
        Arg::OptText(b.agent_name.clone()),
        Arg::OptI64(b.agent_ring_at),
        Arg::OptI64(b.agent_answer_at),
        Arg::OptI64(b.bridge_start_at),
        Arg::OptI64(b.bridge_end_at),
        Arg::OptI64(b.talk_ms),
        Arg::OptI64(b.queue_wait_ms),
        Arg::OptI64(b.agent_idle_ms),
        Arg::I64(super::flag(b.abandoned)),
        Arg::OptText(b.bridge_kind.clone()),
        Arg::OptText(b.bridge_target.clone()),
        Arg::OptText(b.call_sid.clone()),
        Arg::OptI64(b.agent_first_audio_ms),
        Arg::OptI64(b.agent_marks),
        Arg::OptI64(b.agent_clears),
    ]
}

fn bridge_from(row: &AnyRow) -> Result<BridgeRecord> {
    Ok(BridgeRecord {
        agent_call_id: row.try_get("agent_call_id")?,
        agent_id: row.try_get("agent_id")?,
        agent_name: row.try_get("agent_name")?,
        agent_ring_at: row.try_get("agent_ring_at")?,
        agent_answer_at: row.try_get("agent_answer_at")?,
        bridge_start_at: row.try_get("bridge_start_at")?,
        bridge_end_at: row.try_get("bridge_end_at")?,
        talk_ms: row.try_get("talk_ms")?,
        queue_wait_ms: row.try_get("queue_wait_ms")?,
        agent_idle_ms: row.try_get("agent_idle_ms")?,
        abandoned: super::get_flag(row, "abandoned")?,
        bridge_kind: row.try_get("bridge_kind")?,
        bridge_target: row.try_get("bridge_target")?,
        call_sid: row.try_get("call_sid")?,
        agent_first_audio_ms: row.try_get("agent_first_audio_ms")?,
        agent_marks: row.try_get("agent_marks")?,
        agent_clears: row.try_get("agent_clears")?,
    })
}

fn attempt_from(row: &AnyRow) -> Result<CallAttempt> {
    let ended_by: Option<String> = row.try_get("ended_by")?;
    let ended_by = match ended_by {
        Some(word) => Some(
            EndedBy::parse(&word)
                .ok_or_else(|| StoreError::Db(super::corrupt("ended_by", &word)))?,
        ),
        None => None,
    };
    Ok(CallAttempt {
        id: row.try_get("id")?,
        record: AttemptRecord {
            campaign_id: row.try_get("campaign_id")?,
            contact_id: row.try_get("contact_id")?,
            attempt_number: row.try_get("attempt_number")?,
            call_id: row.try_get("call_id")?,
            sip_profile: row.try_get("sip_profile")?,
            caller_id: row.try_get("caller_id")?,
            billable_account: row.try_get("billable_account")?,
            destination: row.try_get("destination")?,
            started_at: row.try_get("started_at")?,
            ended_at: row.try_get("ended_at")?,
            ring_ms: row.try_get("ring_ms")?,
            answer_ms: row.try_get("answer_ms")?,
            duration_ms: row.try_get("duration_ms")?,
            sip_code: row.try_get("sip_code")?,
            reason: row.try_get("reason")?,
            outcome: row.try_get("outcome")?,
            ended_by,
            codec: row.try_get("codec")?,
            amd_mode: row.try_get("amd_mode")?,
            amd_verdict: row.try_get("amd_verdict")?,
            answered_by: row.try_get("answered_by")?,
            amd_cause: row.try_get("amd_cause")?,
            amd_confidence: row.try_get("amd_confidence")?,
            amd_decision_ms: row.try_get("amd_decision_ms")?,
            beep_ms: row.try_get("beep_ms")?,
            rtp_sent: row.try_get("rtp_sent")?,
            rtp_received: row.try_get("rtp_received")?,
            rtp_lost: row.try_get("rtp_lost")?,
            jitter_ms: row.try_get("jitter_ms")?,
            rtt_ms: row.try_get("rtt_ms")?,
            recording_path: row.try_get("recording_path")?,
            dtmf: row.try_get("dtmf")?,
            digits: row.try_get("digits")?,
            recording: row.try_get("recording")?,
            trunk: row.try_get("trunk")?,
            failover: {
                let text: String = row.try_get("failover")?;
                if text.is_empty() {
                    Vec::new()
                } else {
                    serde_json::from_str(&text)
                        .map_err(|e| StoreError::Invalid(format!("call_attempts.failover: {e}")))?
                }
            },
            sit: row.try_get("sit")?,
            rtp_rejected_source: row.try_get("rtp_rejected_source")?,
            rtp_latched_to: row.try_get("rtp_latched_to")?,
            direction: {
                let text: String = row.try_get("direction")?;
                CallDirection::parse(&text).ok_or_else(|| {
                    StoreError::Invalid(format!("call_attempts.direction: {text:?}"))
                })?
            },
            bridge: bridge_from(row)?,
        },
    })
}

pub(crate) fn record_args(r: &AttemptRecord) -> Vec<Arg> {
    vec![
        Arg::OptI64(r.campaign_id),
        Arg::OptI64(r.contact_id),
        Arg::I64(r.attempt_number),
        Arg::Text(r.call_id.clone()),
        Arg::Text(r.sip_profile.clone()),
        Arg::Text(r.caller_id.clone()),
        Arg::Text(r.billable_account.clone()),
        Arg::Text(r.destination.clone()),
        Arg::I64(r.started_at),
        Arg::OptI64(r.ended_at),
        Arg::OptI64(r.ring_ms),
        Arg::OptI64(r.answer_ms),
        Arg::I64(r.duration_ms),
        Arg::OptI64(r.sip_code),
        Arg::Text(r.reason.clone()),
        Arg::Text(r.outcome.clone()),
        Arg::OptText(r.ended_by.map(|e| e.as_str().to_string())),
        Arg::OptText(r.codec.clone()),
        Arg::OptText(r.amd_mode.clone()),
        Arg::OptText(r.amd_verdict.clone()),
        Arg::OptText(r.answered_by.clone()),
        Arg::OptText(r.amd_cause.clone()),
        Arg::OptF64(r.amd_confidence),
        Arg::OptI64(r.amd_decision_ms),
        Arg::OptI64(r.beep_ms),
        Arg::I64(r.rtp_sent),
        Arg::I64(r.rtp_received),
        Arg::I64(r.rtp_lost),
        Arg::OptF64(r.jitter_ms),
        Arg::OptF64(r.rtt_ms),
        Arg::OptText(r.recording_path.clone()),
        Arg::Text(r.dtmf.clone()),
        Arg::Text(r.digits.clone()),
        Arg::OptText(r.recording.clone()),
        Arg::OptText(r.trunk.clone()),
        Arg::Text(if r.failover.is_empty() {
            String::new()
        } else {
            serde_json::to_string(&r.failover).unwrap_or_default()
        }),
        Arg::OptText(r.sit.clone()),
        Arg::I64(r.rtp_rejected_source),
        Arg::OptText(r.rtp_latched_to.clone()),
        Arg::Text(r.direction.as_str().to_string()),
    ]
    .into_iter()
    .chain(bridge_args(&r.bridge))
    .collect()
}

fn parse_zone(timezone: &str) -> Result<chrono_tz::Tz> {
    timezone.parse::<chrono_tz::Tz>().map_err(|_| {
        StoreError::Invalid(format!("timezone: {timezone:?} is not an IANA time zone"))
    })
}

/// Places `(quarter-hour index since the epoch, attempts, answered)` rows in `tz`'s
/// weekday × hour grid.
pub fn bucket_heat_map(tz: chrono_tz::Tz, quarters: &[(i64, i64, i64)]) -> HeatMap {
    use chrono::{Datelike, TimeZone, Timelike};
    let mut cells = vec![[HeatCell::default(); 24]; 7];
    for &(quarter, attempts, answered) in quarters {
        let Some(utc) = chrono::Utc
            .timestamp_millis_opt(quarter.saturating_mul(QUARTER_HOUR_MS))
            .single()
        else {
            continue;
        };
        let local = utc.with_timezone(&tz);
        let cell =
            &mut cells[local.weekday().num_days_from_monday() as usize][local.hour() as usize];
        cell.attempts += attempts;
        cell.answered += answered;
    }
    HeatMap {
        timezone: tz.name().to_string(),
        cells,
    }
}

/// Records an attempt through `ex` (the pool, or a transaction); returns its id.
pub(crate) async fn insert_attempt_on<'e, E>(
    ex: E,
    backend: super::Backend,
    record: &AttemptRecord,
) -> Result<i64>
where
    E: 'e + sqlx::Executor<'e, Database = sqlx::Any>,
{
    let mut sql = Sql::default();
    let values: Vec<String> = record_args(record)
        .into_iter()
        .map(|a| sql.arg(a))
        .collect();
    sql.text = format!(
        "INSERT INTO call_attempts ({INSERT_COLUMNS}) VALUES ({}) RETURNING id",
        values.join(", ")
    );
    let row = sql.query(backend).fetch_one(ex).await.map_err(|e| {
        super::conflict_on_constraint(e, || {
            "the attempt's campaign or contact does not exist".into()
        })
    })?;
    Ok(row.try_get("id")?)
}

/// Attempt records per `INSERT` in [`insert_attempts_on`] (some sixty placeholders each; on
/// SQLite they go anonymous, [`Sql::query`](super::Sql::query), so a statement's cost
/// grows with its rows only; 128 records stay far below SQLite's 32,766 placeholders).
const RECORDS_PER_STATEMENT: usize = 128;

/// Inserts `records` through `conn`, a few to a statement; their ids, in order
/// ([`super::ids_in_order`]).
pub(crate) async fn insert_attempts_on(
    conn: &mut sqlx::AnyConnection,
    records: &[&AttemptRecord],
) -> Result<Vec<i64>> {
    let mut out = Vec::with_capacity(records.len());
    for chunk in records.chunks(RECORDS_PER_STATEMENT) {
        let mut sql = Sql::default();
        let rows: Vec<String> = chunk
            .iter()
            .map(|r| format!("({})", super::in_list(&mut sql, record_args(r))))
            .collect();
        sql.text = format!(
            "INSERT INTO call_attempts ({INSERT_COLUMNS}) VALUES {} RETURNING id",
            rows.join(", ")
        );
        let rows = sql
            .query(super::Backend::of(&*conn))
            .fetch_all(&mut *conn)
            .await
            .map_err(|e| {
                super::conflict_on_constraint(e, || {
                    "an attempt's campaign or contact does not exist".into()
                })
            })?;
        let ids = super::ids_in_order(&rows, chunk.len(), "attempt records")?;
        out.extend(ids);
    }
    Ok(out)
}

impl Store {
    /// Records an attempt; returns its id.
    pub async fn insert_attempt(&self, record: &AttemptRecord) -> Result<i64> {
        insert_attempt_on(&self.pool, self.backend, record).await
    }

    /// Stores what an attempt's message plan gathered: the digits collected (in order) and
    /// the reply's recording file (`None` leaves no recording).
    pub async fn set_attempt_plan_result(
        &self,
        id: i64,
        digits: &str,
        recording: Option<&str>,
    ) -> Result<()> {
        let done =
            sqlx::query("UPDATE call_attempts SET digits = $1, recording = $2 WHERE id = $3")
                .bind(digits.to_string())
                .bind(recording.map(str::to_string))
                .bind(id)
                .execute(&self.pool)
                .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("attempt {id}")));
        }
        Ok(())
    }

    pub async fn get_attempt(&self, id: i64) -> Result<CallAttempt> {
        let sql = format!("SELECT {COLUMNS} FROM call_attempts WHERE id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("attempt {id}")))?;
        attempt_from(&row)
    }

    /// The attempt an AI agent knew by its call SID (`CA…`), if it has been recorded.
    pub async fn attempt_id_by_call_sid(&self, call_sid: &str) -> Result<Option<i64>> {
        let row = sqlx::query("SELECT id FROM call_attempts WHERE call_sid = $1")
            .bind(call_sid.to_string())
            .fetch_optional(&self.pool)
            .await?;
        Ok(match row {
            Some(r) => Some(r.try_get("id")?),
            None => None,
        })
    }

    /// A page of attempts, newest first, with the filtered total.
    pub async fn list_attempts(
        &self,
        filter: &AttemptFilter,
        page: Page,
    ) -> Result<Paged<CallAttempt>> {
        let page = page.clamped();
        let mut sql = Sql::default();
        let mut conds = Vec::new();
        if let Some(c) = filter.campaign_id {
            conds.push(format!("a.campaign_id = {}", sql.arg(Arg::I64(c))));
        }
        if let Some(c) = filter.contact_id {
            conds.push(format!("a.contact_id = {}", sql.arg(Arg::I64(c))));
        }
        if !filter.outcomes.is_empty() {
            let list = super::in_list(
                &mut sql,
                filter.outcomes.iter().map(|o| Arg::Text(o.clone())),
            );
            conds.push(format!("a.outcome IN ({list})"));
        }
        if let Some(t) = filter.since {
            conds.push(format!("a.started_at >= {}", sql.arg(Arg::I64(t))));
        }
        if let Some(t) = filter.until {
            conds.push(format!("a.started_at < {}", sql.arg(Arg::I64(t))));
        }
        let before = conds.len();
        filter_conditions(&mut sql, &mut conds, "c.", &filter.contact);
        let join = if conds.len() > before {
            " JOIN contacts c ON c.id = a.contact_id"
        } else {
            ""
        };
        let wc = where_clause(&conds);
        let count = Sql {
            text: format!("SELECT COUNT(*) AS n FROM call_attempts a{join}{wc}"),
            args: sql.args.clone(),
        };
        let total: i64 = count
            .query(self.backend)
            .fetch_one(&self.pool)
            .await?
            .try_get("n")?;
        let limit = sql.arg(Arg::I64(page.limit));
        let offset = sql.arg(Arg::I64(page.offset));
        let columns = COLUMNS
            .split(", ")
            .map(|c| format!("a.{c}"))
            .collect::<Vec<_>>()
            .join(", ");
        sql.text = format!(
            "SELECT {columns} FROM call_attempts a{join}{wc} \
             ORDER BY a.started_at DESC, a.id DESC LIMIT {limit} OFFSET {offset}"
        );
        let rows = sql.query(self.backend).fetch_all(&self.pool).await?;
        let items = rows.iter().map(attempt_from).collect::<Result<Vec<_>>>()?;
        Ok(Paged { items, total })
    }

    /// The answer-rate heat map of a campaign's attempts in `timezone` (IANA).
    pub async fn heat_map(&self, campaign_id: i64, timezone: &str) -> Result<HeatMap> {
        let tz = parse_zone(timezone)?;
        let rows = sqlx::query(
            "SELECT started_at / 900000 AS q, COUNT(*) AS n, \
                    CAST(COALESCE(SUM(CASE WHEN outcome = 'answered' THEN 1 ELSE 0 END), 0) AS BIGINT) AS answered \
             FROM call_attempts WHERE campaign_id = $1 AND direction = 'outbound' \
             GROUP BY started_at / 900000",
        )
        .bind(campaign_id)
        .fetch_all(&self.pool)
        .await?;
        let mut quarters = Vec::with_capacity(rows.len());
        for row in &rows {
            quarters.push((
                row.try_get::<i64, _>("q")?,
                row.try_get::<i64, _>("n")?,
                row.try_get::<i64, _>("answered")?,
            ));
        }
        Ok(bucket_heat_map(tz, &quarters))
    }

    /// Contact counts, call counts and the heat map of one campaign.
    pub async fn campaign_report(
        &self,
        campaign_id: i64,
        timezone: &str,
    ) -> Result<CampaignReport> {
        parse_zone(timezone)?;
        self.get_campaign(campaign_id).await?;
        let (contacts, calls) = self.campaign_counts(campaign_id).await?;
        let heat_map = self.heat_map(campaign_id, timezone).await?;
        Ok(CampaignReport {
            campaign_id,
            contacts,
            calls,
            heat_map,
        })
    }
}

/// What the dashboard adds to the counts: attempts a person answered and the mean talk time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct AttemptStats {
    /// Attempts in the campaign.
    pub attempts: i64,
    /// Attempts with outcome `answered`.
    pub answered: i64,
    /// Answered attempts AMD did not class as a machine, fax or unknown (`answered_by`
    /// human, or none when AMD was off).
    pub human_answered: i64,
    /// Mean `duration_ms` of answered attempts (0 when none).
    pub average_duration_ms: f64,
}

impl Store {
    /// Answered, human-answered and mean duration of a campaign's attempts.
    pub async fn attempt_stats(&self, campaign_id: i64) -> Result<AttemptStats> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n, \
                    CAST(COALESCE(SUM(CASE WHEN outcome = 'answered' THEN 1 ELSE 0 END), 0) AS BIGINT) AS answered, \
                    CAST(COALESCE(SUM(CASE WHEN outcome = 'answered' \
                         AND (answered_by IS NULL OR answered_by = 'human') THEN 1 ELSE 0 END), 0) AS BIGINT) AS human, \
                    CAST(COALESCE(SUM(CASE WHEN outcome = 'answered' THEN duration_ms ELSE 0 END), 0) AS BIGINT) AS talk_ms \
             FROM call_attempts WHERE campaign_id = $1 AND direction = 'outbound'",
        )
        .bind(campaign_id)
        .fetch_one(&self.pool)
        .await?;
        let attempts: i64 = row.try_get("n")?;
        let answered: i64 = row.try_get("answered")?;
        let talk_ms: i64 = row.try_get("talk_ms")?;
        Ok(AttemptStats {
            attempts,
            answered,
            human_answered: row.try_get("human")?,
            average_duration_ms: if answered > 0 {
                talk_ms as f64 / answered as f64
            } else {
                0.0
            },
        })
    }
}

/// SQL condition: a person answered (machines, faxes and unknowns excluded).
const PERSON: &str = "outcome = 'answered' AND (answered_by IS NULL OR answered_by = 'human')";

/// People answered and abandoned (the FTC TSR's abandon rate: abandoned ÷ people).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AbandonCounts {
    pub people_answered: i64,
    pub abandoned: i64,
}

impl AbandonCounts {
    /// Abandoned ÷ people answered, percent (0 when nobody answered).
    pub fn rate_pct(&self) -> f64 {
        if self.people_answered <= 0 {
            0.0
        } else {
            100.0 * self.abandoned as f64 / self.people_answered as f64
        }
    }
}

/// What the predictive pacer measures from a campaign's recent attempts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct PacingStats {
    /// Attempts finished in the window.
    pub attempts: i64,
    /// Of them answered (people and machines).
    pub answered: i64,
    /// Of them answered by a person.
    pub people: i64,
    /// Mean INVITE → answer of answered attempts, ms (0 when none).
    pub average_answer_ms: f64,
    /// Mean talk time of bridged calls, ms (0 when none).
    pub average_talk_ms: f64,
}

/// The bridge figures of a campaign report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct BridgeStats {
    /// Over the whole campaign.
    pub total: AbandonCounts,
    /// Over the rolling 30 days before `now`.
    pub last_30_days: AbandonCounts,
    /// Calls bridged to an agent (talk time recorded).
    pub bridged: i64,
    /// Talk time of the bridged calls, ms.
    pub talk_ms: i64,
    /// Agents' idle time before the calls that took them, ms.
    pub agent_idle_ms: i64,
    /// People who waited in the queue (a queue wait recorded), and their total wait, ms.
    pub queued: i64,
    pub queue_wait_ms: i64,
}

impl BridgeStats {
    /// Agent occupancy: talk ÷ (talk + idle), 0–1 (0 when nothing was measured).
    pub fn occupancy(&self) -> f64 {
        let whole = self.talk_ms + self.agent_idle_ms;
        if whole <= 0 {
            0.0
        } else {
            self.talk_ms as f64 / whole as f64
        }
    }

    /// Mean queue wait, ms (0 when nobody waited).
    pub fn average_queue_wait_ms(&self) -> f64 {
        if self.queued <= 0 {
            0.0
        } else {
            self.queue_wait_ms as f64 / self.queued as f64
        }
    }
}

impl Store {
    /// Records the agent leg of a stored attempt (every bridge column is replaced).
    pub async fn update_attempt_bridge(
        &self,
        attempt_id: i64,
        bridge: &BridgeRecord,
    ) -> Result<()> {
        let mut sql = Sql::default();
        let sets: Vec<String> = BRIDGE_COLUMNS
            .iter()
            .zip(bridge_args(bridge))
            .map(|(column, arg)| format!("{column} = {}", sql.arg(arg)))
            .collect();
        let id = sql.arg(Arg::I64(attempt_id));
        sql.text = format!(
            "UPDATE call_attempts SET {} WHERE id = {id}",
            sets.join(", ")
        );
        let done = sql.query(self.backend).execute(&self.pool).await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("attempt {attempt_id}")));
        }
        Ok(())
    }

    /// People answered and abandoned among a campaign's attempts started at or after
    /// `since` (`None`: all of them).
    pub async fn abandon_counts(
        &self,
        campaign_id: i64,
        since: Option<Millis>,
    ) -> Result<AbandonCounts> {
        let sql = format!(
            "SELECT CAST(COALESCE(SUM(CASE WHEN {PERSON} THEN 1 ELSE 0 END), 0) AS BIGINT) AS people, \
                    CAST(COALESCE(SUM(CASE WHEN {PERSON} AND abandoned = 1 THEN 1 ELSE 0 END), 0) AS BIGINT) AS abandoned \
             FROM call_attempts WHERE campaign_id = $1 AND started_at >= $2 \
             AND direction = 'outbound'"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(campaign_id)
            .bind(since.unwrap_or(i64::MIN))
            .fetch_one(&self.pool)
            .await?;
        Ok(AbandonCounts {
            people_answered: row.try_get("people")?,
            abandoned: row.try_get("abandoned")?,
        })
    }

    /// The FTC TSR's window: people answered and abandoned over the 30 days before `now`.
    pub async fn abandon_counts_30d(&self, campaign_id: i64, now: Millis) -> Result<AbandonCounts> {
        self.abandon_counts(
            campaign_id,
            Some(now - crate::campaign::model::ABANDON_WINDOW_MS),
        )
        .await
    }

    /// Answer rate, person rate, answer delay and talk time of a campaign's attempts
    /// started at or after `since`.
    pub async fn pacing_stats(&self, campaign_id: i64, since: Millis) -> Result<PacingStats> {
        let sql = format!(
            "SELECT COUNT(*) AS n, \
                    CAST(COALESCE(SUM(CASE WHEN outcome = 'answered' THEN 1 ELSE 0 END), 0) AS BIGINT) AS answered, \
                    CAST(COALESCE(SUM(CASE WHEN {PERSON} THEN 1 ELSE 0 END), 0) AS BIGINT) AS people, \
                    CAST(COALESCE(SUM(CASE WHEN outcome = 'answered' THEN COALESCE(answer_ms, 0) ELSE 0 END), 0) AS BIGINT) AS answer_ms, \
                    CAST(COALESCE(SUM(CASE WHEN talk_ms IS NOT NULL THEN 1 ELSE 0 END), 0) AS BIGINT) AS bridged, \
                    CAST(COALESCE(SUM(COALESCE(talk_ms, 0)), 0) AS BIGINT) AS talk_ms \
             FROM call_attempts WHERE campaign_id = $1 AND started_at >= $2 \
             AND direction = 'outbound'"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(campaign_id)
            .bind(since)
            .fetch_one(&self.pool)
            .await?;
        let answered: i64 = row.try_get("answered")?;
        let bridged: i64 = row.try_get("bridged")?;
        let mean = |sum: i64, n: i64| if n > 0 { sum as f64 / n as f64 } else { 0.0 };
        Ok(PacingStats {
            attempts: row.try_get("n")?,
            answered,
            people: row.try_get("people")?,
            average_answer_ms: mean(row.try_get("answer_ms")?, answered),
            average_talk_ms: mean(row.try_get("talk_ms")?, bridged),
        })
    }

    /// Abandons (total and 30 days), talk and idle time, queue waits of a campaign.
    pub async fn bridge_stats(&self, campaign_id: i64, now: Millis) -> Result<BridgeStats> {
        let total = self.abandon_counts(campaign_id, None).await?;
        let last_30_days = self.abandon_counts_30d(campaign_id, now).await?;
        let row = sqlx::query(
            "SELECT CAST(COALESCE(SUM(CASE WHEN talk_ms IS NOT NULL THEN 1 ELSE 0 END), 0) AS BIGINT) AS bridged, \
                    CAST(COALESCE(SUM(COALESCE(talk_ms, 0)), 0) AS BIGINT) AS talk_ms, \
                    CAST(COALESCE(SUM(COALESCE(agent_idle_ms, 0)), 0) AS BIGINT) AS idle_ms, \
                    CAST(COALESCE(SUM(CASE WHEN queue_wait_ms IS NOT NULL THEN 1 ELSE 0 END), 0) AS BIGINT) AS queued, \
                    CAST(COALESCE(SUM(COALESCE(queue_wait_ms, 0)), 0) AS BIGINT) AS wait_ms \
             FROM call_attempts WHERE campaign_id = $1",
        )
        .bind(campaign_id)
        .fetch_one(&self.pool)
        .await?;
        Ok(BridgeStats {
            total,
            last_30_days,
            bridged: row.try_get("bridged")?,
            talk_ms: row.try_get("talk_ms")?,
            agent_idle_ms: row.try_get("idle_ms")?,
            queued: row.try_get("queued")?,
            queue_wait_ms: row.try_get("wait_ms")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quarter_hours_land_in_local_weekday_and_hour() {
        // 2024-01-01 00:00 UTC is a Monday; in New York (UTC-5) it is Sunday 19:00.
        let q = 1_704_067_200_000 / QUARTER_HOUR_MS;
        let map = bucket_heat_map(chrono_tz::America::New_York, &[(q, 3, 1)]);
        assert_eq!(
            map.cell(6, 19),
            HeatCell {
                attempts: 3,
                answered: 1
            }
        );
        assert_eq!(
            map.cells.iter().flatten().map(|c| c.attempts).sum::<i64>(),
            3
        );
        // Kolkata (UTC+5:30): Monday 05:30 → hour 5.
        let map = bucket_heat_map(chrono_tz::Asia::Kolkata, &[(q, 2, 2)]);
        assert_eq!(
            map.cell(0, 5),
            HeatCell {
                attempts: 2,
                answered: 2
            }
        );
        assert_eq!(map.cell(0, 5).rate(), 1.0);
    }
}
