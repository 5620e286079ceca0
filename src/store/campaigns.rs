//! Campaigns: every [`CampaignSettings`] field in its own column, the status, the owner
//! account and the timestamps.
//!
//! Status changes go through [`Store::set_campaign_status`], a compare-and-set on the
//! status the caller saw, so two nodes (or two admins) cannot both start a campaign.
//! The list carries per-status contact counts and answered/not-answered/total calls (the
//! guides' "Calls" column) for the page's campaigns only.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::Row;

use super::{
    conflict_on_constraint, flag, get_flag, get_word, in_list, like_pattern, where_clause, Arg,
    Page, Paged, Result, Sql, Store, StoreError,
};
use crate::campaign::model::{
    AmdMode, Campaign, CampaignSettings, CampaignStatus, ContactStatus, ContactWindow, Interval,
    IntervalUnit, MachineAction, Millis, Pacing, RetryOn,
};
use crate::flow::steps::Step;

/// Contacts of a campaign per status.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContactCounts {
    /// Every status, in [`ContactStatus::ALL`] order, zeros included.
    pub by_status: Vec<(ContactStatus, i64)>,
    pub total: i64,
}

impl ContactCounts {
    pub(crate) fn from_pairs(pairs: impl IntoIterator<Item = (ContactStatus, i64)>) -> Self {
        let mut map: HashMap<ContactStatus, i64> = HashMap::new();
        for (s, n) in pairs {
            *map.entry(s).or_default() += n;
        }
        let by_status: Vec<_> = ContactStatus::ALL
            .iter()
            .map(|s| (*s, map.get(s).copied().unwrap_or(0)))
            .collect();
        let total = by_status.iter().map(|(_, n)| n).sum();
        ContactCounts { by_status, total }
    }

    pub fn get(&self, status: ContactStatus) -> i64 {
        self.by_status
            .iter()
            .find(|(s, _)| *s == status)
            .map_or(0, |(_, n)| *n)
    }

    /// Contacts in a final status.
    pub fn finished(&self) -> i64 {
        self.by_status
            .iter()
            .filter(|(s, _)| s.is_final())
            .map(|(_, n)| n)
            .sum()
    }
}

/// Call attempts of a campaign: answered (outcome `answered`), not answered (any other
/// outcome) and total.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallCounts {
    pub answered: i64,
    pub not_answered: i64,
    pub total: i64,
}

/// One row of the campaign list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CampaignSummary {
    pub campaign: Campaign,
    pub account_id: Option<i64>,
    pub contacts: ContactCounts,
    pub calls: CallCounts,
}

/// Which campaigns a list shows (all `None`: every campaign). Ordered newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CampaignFilter {
    pub account_id: Option<i64>,
    /// Any of these statuses (empty: all).
    pub statuses: Vec<CampaignStatus>,
    /// Case-insensitive, in the name or the description.
    pub search: Option<String>,
}

const COLUMNS: &str = "id, account_id, status, name, description, connect_to, ai_agent_url, \
    schedule_start, schedule_timezone, pace, max_concurrent, call_interval_secs, \
    ring_timeout_secs, ring_timeout_override, business_hours_id, contact_window_start, \
    contact_window_end, amd_mode, machine_action, voicemail_message, play_message, max_retries, \
    retry_interval_value, retry_interval_unit, retry_on_busy, retry_on_no_answer, \
    retry_on_failed, retry_on_machine, completion_timeout_value, completion_timeout_unit, \
    caller_id, billable_account, sip_profile, recording, pacing, abandon_cap_pct, \
    abandon_message, agent_ring_timeout_secs, queue_timeout_secs, default_country, created_at, \
    updated_at, started_at, finished_at, steps, transfer, ai_agent_id, number_id";

/// The settings columns in bind order ($1…$39).
const SETTINGS_COLUMNS: [&str; 39] = [
    "name",
    "description",
    "connect_to",
    "ai_agent_url",
    "schedule_start",
    "schedule_timezone",
    "pace",
    "max_concurrent",
    "call_interval_secs",
    "ring_timeout_secs",
    "ring_timeout_override",
    "business_hours_id",
    "contact_window_start",
    "contact_window_end",
    "amd_mode",
    "machine_action",
    "voicemail_message",
    "play_message",
    "max_retries",
    "retry_interval_value",
    "retry_interval_unit",
    "retry_on_busy",
    "retry_on_no_answer",
    "retry_on_failed",
    "retry_on_machine",
    "completion_timeout_value",
    "completion_timeout_unit",
    "caller_id",
    "billable_account",
    "sip_profile",
    "recording",
    "steps",
    "pacing",
    "abandon_cap_pct",
    "abandon_message",
    "agent_ring_timeout_secs",
    "queue_timeout_secs",
    "transfer",
    "ai_agent_id",
];

fn settings_args(s: &CampaignSettings) -> Vec<Arg> {
    let (window_start, window_end) = match &s.contact_window {
        Some(w) => (Some(w.start.clone()), Some(w.end.clone())),
        None => (None, None),
    };
    vec![
        Arg::Text(s.name.clone()),
        Arg::Text(s.description.clone()),
        Arg::Text(s.connect_to.clone()),
        Arg::OptText(s.ai_agent_url.clone()),
        Arg::OptI64(s.schedule_start),
        Arg::Text(s.schedule_timezone.clone()),
        Arg::F64(s.pace),
        Arg::I64(s.max_concurrent),
        Arg::I64(s.call_interval_secs),
        Arg::I64(s.ring_timeout_secs),
        Arg::I64(flag(s.ring_timeout_override)),
        Arg::OptI64(s.business_hours_id),
        Arg::OptText(window_start),
        Arg::OptText(window_end),
        Arg::Text(s.amd_mode.as_str().into()),
        Arg::Text(s.machine_action.as_str().into()),
        Arg::OptText(s.voicemail_message.clone()),
        Arg::OptText(s.play_message.clone()),
        Arg::I64(s.max_retries),
        Arg::I64(s.retry_interval.value),
        Arg::Text(s.retry_interval.unit.as_str().into()),
        Arg::I64(flag(s.retry_on.busy)),
        Arg::I64(flag(s.retry_on.no_answer)),
        Arg::I64(flag(s.retry_on.failed)),
        Arg::I64(flag(s.retry_on.machine)),
        Arg::I64(s.completion_timeout.value),
        Arg::Text(s.completion_timeout.unit.as_str().into()),
        Arg::Text(s.caller_id.clone()),
        Arg::Text(s.billable_account.clone()),
        Arg::Text(s.sip_profile.clone()),
        Arg::I64(flag(s.recording)),
        Arg::OptText(s.steps.as_ref().map(|plan| {
            // A Vec of plain enums always serialises; "[]" keeps the row readable if not.
            serde_json::to_string(plan).unwrap_or_else(|_| "[]".into())
        })),
        Arg::Text(s.pacing.as_str().into()),
        Arg::F64(s.abandon_cap_pct),
        Arg::OptText(s.abandon_message.clone()),
        Arg::I64(s.agent_ring_timeout_secs),
        Arg::I64(s.queue_timeout_secs),
        Arg::Text(s.transfer.as_str().into()),
        Arg::OptI64(s.ai_agent_id),
    ]
}

/// The `steps` column (JSON) back into a plan; a row that does not parse is reported, not
/// guessed at.
fn steps_from(row: &AnyRow) -> Result<Option<Vec<Step>>> {
    let text: Option<String> = row.try_get("steps")?;
    text.map(|t| {
        serde_json::from_str(&t)
            .map_err(|e| StoreError::Invalid(format!("steps: stored plan does not parse: {e}")))
    })
    .transpose()
}

fn campaign_from(row: &AnyRow) -> Result<Campaign> {
    let window_start: Option<String> = row.try_get("contact_window_start")?;
    let window_end: Option<String> = row.try_get("contact_window_end")?;
    let settings = CampaignSettings {
        name: row.try_get("name")?,
        description: row.try_get("description")?,
        connect_to: row.try_get("connect_to")?,
        ai_agent_url: row.try_get("ai_agent_url")?,
        ai_agent_id: row.try_get("ai_agent_id")?,
        schedule_start: row.try_get("schedule_start")?,
        schedule_timezone: row.try_get("schedule_timezone")?,
        pace: row.try_get("pace")?,
        max_concurrent: row.try_get("max_concurrent")?,
        call_interval_secs: row.try_get("call_interval_secs")?,
        ring_timeout_secs: row.try_get("ring_timeout_secs")?,
        ring_timeout_override: get_flag(row, "ring_timeout_override")?,
        business_hours_id: row.try_get("business_hours_id")?,
        contact_window: match (window_start, window_end) {
            (Some(start), Some(end)) => Some(ContactWindow { start, end }),
            _ => None,
        },
        amd_mode: get_word(row, "amd_mode", AmdMode::parse)?,
        machine_action: get_word(row, "machine_action", MachineAction::parse)?,
        voicemail_message: row.try_get("voicemail_message")?,
        play_message: row.try_get("play_message")?,
        max_retries: row.try_get("max_retries")?,
        retry_interval: Interval {
            value: row.try_get("retry_interval_value")?,
            unit: get_word(row, "retry_interval_unit", IntervalUnit::parse)?,
        },
        retry_on: RetryOn {
            busy: get_flag(row, "retry_on_busy")?,
            no_answer: get_flag(row, "retry_on_no_answer")?,
            failed: get_flag(row, "retry_on_failed")?,
            machine: get_flag(row, "retry_on_machine")?,
        },
        completion_timeout: Interval {
            value: row.try_get("completion_timeout_value")?,
            unit: get_word(row, "completion_timeout_unit", IntervalUnit::parse)?,
        },
        caller_id: row.try_get("caller_id")?,
        number_id: row.try_get("number_id")?,
        billable_account: row.try_get("billable_account")?,
        sip_profile: row.try_get("sip_profile")?,
        recording: get_flag(row, "recording")?,
        default_country: row.try_get("default_country")?,
        steps: steps_from(row)?,
        pacing: get_word(row, "pacing", Pacing::parse)?,
        transfer: get_word(row, "transfer", crate::campaign::model::Transfer::parse)?,
        abandon_cap_pct: row.try_get("abandon_cap_pct")?,
        abandon_message: row.try_get("abandon_message")?,
        agent_ring_timeout_secs: row.try_get("agent_ring_timeout_secs")?,
        queue_timeout_secs: row.try_get("queue_timeout_secs")?,
    };
    Ok(Campaign {
        id: row.try_get("id")?,
        status: get_word(row, "status", CampaignStatus::parse)?,
        settings,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        started_at: row.try_get("started_at")?,
        finished_at: row.try_get("finished_at")?,
    })
}

fn missing_reference(settings: &CampaignSettings, account_id: Option<i64>) -> String {
    match (settings.business_hours_id, account_id) {
        (Some(h), Some(a)) => format!("business hours {h} or account {a} does not exist"),
        (Some(h), None) => format!("business hours {h} does not exist"),
        (None, Some(a)) => format!("account {a} does not exist"),
        (None, None) => "a referenced row does not exist".into(),
    }
}

impl Store {
    /// Stores a new campaign in `status` (normally `new`). The settings are validated
    /// first (Invalid names the field); a missing business-hours schedule or account is a
    /// Conflict. A `number_id` must name one of the account's numbers (Invalid otherwise);
    /// the campaign's caller ID is then that number (a different `caller_id` is Invalid), its
    /// SIP profile the number's when it names none, and no scheduled, processing or paused
    /// campaign may hold the number (Conflict naming it; checked again when this one starts).
    pub async fn create_campaign(
        &self,
        account_id: Option<i64>,
        settings: &CampaignSettings,
        status: CampaignStatus,
        now: Millis,
    ) -> Result<Campaign> {
        settings.validate(now)?;
        self.check_ai_agent_of(account_id, settings).await?;
        let Some(number_id) = settings.number_id else {
            let row =
                insert_on(&self.pool, self.backend, account_id, settings, status, now).await?;
            return campaign_from(&row);
        };
        let mut tx = self.pool.begin().await?;
        let number = super::numbers::lock_number(&mut tx, number_id)
            .await?
            .filter(|n| Some(n.account_id) == account_id)
            .ok_or_else(|| {
                StoreError::Invalid(format!("number_id: number {number_id} does not exist"))
            })?;
        super::numbers::check_not_held(&mut tx, &number, 0).await?;
        let mut settings = settings.clone();
        settings.caller_id = caller_id_of(&settings.caller_id, &number.number)?;
        if settings.sip_profile.trim().is_empty() {
            if let Some(profile) = &number.sip_profile {
                settings.sip_profile.clone_from(profile);
            }
        }
        let row = insert_on(&mut *tx, self.backend, account_id, &settings, status, now).await?;
        tx.commit().await?;
        campaign_from(&row)
    }

    pub async fn get_campaign(&self, id: i64) -> Result<Campaign> {
        let sql = format!("SELECT {COLUMNS} FROM campaigns WHERE id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("campaign {id}")))?;
        campaign_from(&row)
    }

    /// The account that owns the campaign (`None`: nobody's).
    pub async fn campaign_owner(&self, id: i64) -> Result<Option<i64>> {
        let row = sqlx::query("SELECT account_id FROM campaigns WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("campaign {id}")))?;
        Ok(row.try_get("account_id")?)
    }

    /// Campaigns in `status` (any owner), oldest first: what the engine looks at on
    /// start-up and each tick.
    pub async fn campaigns_in_status(&self, statuses: &[CampaignStatus]) -> Result<Vec<Campaign>> {
        if statuses.is_empty() {
            return Ok(Vec::new());
        }
        let mut sql = Sql::default();
        let list = in_list(
            &mut sql,
            statuses.iter().map(|s| Arg::Text(s.as_str().into())),
        );
        sql.text = format!("SELECT {COLUMNS} FROM campaigns WHERE status IN ({list}) ORDER BY id");
        let rows = sql.query(self.backend).fetch_all(&self.pool).await?;
        rows.iter().map(campaign_from).collect()
    }

    /// A page of campaigns, newest first, each with its contact and call counts.
    pub async fn list_campaigns(
        &self,
        filter: &CampaignFilter,
        page: Page,
    ) -> Result<Paged<CampaignSummary>> {
        let page = page.clamped();
        let mut sql = Sql::default();
        let mut conds = Vec::new();
        if let Some(a) = filter.account_id {
            conds.push(format!("account_id = {}", sql.arg(Arg::I64(a))));
        }
        if !filter.statuses.is_empty() {
            let list = in_list(
                &mut sql,
                filter.statuses.iter().map(|s| Arg::Text(s.as_str().into())),
            );
            conds.push(format!("status IN ({list})"));
        }
        if let Some(text) = filter.search.as_deref().filter(|t| !t.trim().is_empty()) {
            let p = sql.arg(Arg::Text(like_pattern(text.trim())));
            conds.push(format!(
                "(LOWER(name) LIKE {p} ESCAPE '\\' OR LOWER(description) LIKE {p} ESCAPE '\\')"
            ));
        }
        let wc = where_clause(&conds);
        let count = Sql {
            text: format!("SELECT COUNT(*) AS n FROM campaigns{wc}"),
            args: sql.args.clone(),
        };
        let total: i64 = count
            .query(self.backend)
            .fetch_one(&self.pool)
            .await?
            .try_get("n")?;
        let limit = sql.arg(Arg::I64(page.limit));
        let offset = sql.arg(Arg::I64(page.offset));
        sql.text = format!(
            "SELECT {COLUMNS} FROM campaigns{wc} ORDER BY id DESC LIMIT {limit} OFFSET {offset}"
        );
        let rows = sql.query(self.backend).fetch_all(&self.pool).await?;
        let mut items = Vec::with_capacity(rows.len());
        for row in &rows {
            items.push(CampaignSummary {
                campaign: campaign_from(row)?,
                account_id: row.try_get("account_id")?,
                contacts: ContactCounts::default(),
                calls: CallCounts::default(),
            });
        }
        let ids: Vec<i64> = items.iter().map(|c| c.campaign.id).collect();
        let mut contacts = self.contact_counts_of(&ids).await?;
        let mut calls = self.call_counts_of(&ids).await?;
        for item in &mut items {
            let id = item.campaign.id;
            item.contacts = ContactCounts::from_pairs(contacts.remove(&id).unwrap_or_default());
            item.calls = calls.remove(&id).unwrap_or_default();
        }
        Ok(Paged { items, total })
    }

    /// Contact counts per status for each of `ids`.
    async fn contact_counts_of(
        &self,
        ids: &[i64],
    ) -> Result<HashMap<i64, Vec<(ContactStatus, i64)>>> {
        let mut out: HashMap<i64, Vec<(ContactStatus, i64)>> = HashMap::new();
        if ids.is_empty() {
            return Ok(out);
        }
        let mut sql = Sql::default();
        let list = in_list(&mut sql, ids.iter().map(|i| Arg::I64(*i)));
        sql.text = format!(
            "SELECT campaign_id, status, COUNT(*) AS n FROM contacts \
             WHERE campaign_id IN ({list}) GROUP BY campaign_id, status"
        );
        for row in sql.query(self.backend).fetch_all(&self.pool).await? {
            let id: i64 = row.try_get("campaign_id")?;
            let status = get_word(&row, "status", ContactStatus::parse)?;
            out.entry(id).or_default().push((status, row.try_get("n")?));
        }
        Ok(out)
    }

    /// Answered / not answered / total attempts for each of `ids`.
    async fn call_counts_of(&self, ids: &[i64]) -> Result<HashMap<i64, CallCounts>> {
        let mut out = HashMap::new();
        if ids.is_empty() {
            return Ok(out);
        }
        let mut sql = Sql::default();
        let list = in_list(&mut sql, ids.iter().map(|i| Arg::I64(*i)));
        sql.text = format!(
            "SELECT campaign_id, COUNT(*) AS n, \
                    CAST(COALESCE(SUM(CASE WHEN outcome = 'answered' THEN 1 ELSE 0 END), 0) AS BIGINT) AS answered \
             FROM call_attempts WHERE campaign_id IN ({list}) AND direction = 'outbound' \
             GROUP BY campaign_id"
        );
        for row in sql.query(self.backend).fetch_all(&self.pool).await? {
            let id: i64 = row.try_get("campaign_id")?;
            let total: i64 = row.try_get("n")?;
            let answered: i64 = row.try_get("answered")?;
            out.insert(
                id,
                CallCounts {
                    answered,
                    not_answered: total - answered,
                    total,
                },
            );
        }
        Ok(out)
    }

    /// The contact and call counts of one campaign.
    pub async fn campaign_counts(&self, id: i64) -> Result<(ContactCounts, CallCounts)> {
        let mut contacts = self.contact_counts_of(&[id]).await?;
        let mut calls = self.call_counts_of(&[id]).await?;
        Ok((
            ContactCounts::from_pairs(contacts.remove(&id).unwrap_or_default()),
            calls.remove(&id).unwrap_or_default(),
        ))
    }

    /// Replaces every setting of a campaign (validated first); the status is untouched.
    pub async fn update_campaign(
        &self,
        id: i64,
        settings: &CampaignSettings,
        now: Millis,
    ) -> Result<Campaign> {
        self.update_campaign_checked_at(id, settings, now, now)
            .await
    }

    /// [`Store::update_campaign`] with the settings validated as of `checked_at` instead of
    /// `now`: an edit that keeps a schedule start from last week (a running campaign's pace,
    /// say) passes `checked_at` ≤ that start, since the 24-hours-in-the-past bound is for a
    /// start being set. `updated_at` is `now`.
    pub async fn update_campaign_checked_at(
        &self,
        id: i64,
        settings: &CampaignSettings,
        checked_at: Millis,
        now: Millis,
    ) -> Result<Campaign> {
        settings.validate(checked_at)?;
        let owner = self.campaign_owner(id).await?;
        let stored = self.get_campaign(id).await?.settings;
        if settings.number_id != stored.number_id {
            return Err(StoreError::Invalid(
                "number_id: a campaign's phone number cannot be changed after creation".into(),
            ));
        }
        if let Some(number_id) = stored.number_id {
            if settings.caller_id != stored.caller_id {
                return Err(StoreError::Invalid(format!(
                    "caller_id: comes from the campaign's number {} (number {number_id}), which \
                     cannot be changed after creation",
                    stored.caller_id
                )));
            }
        }
        self.check_ai_agent_of(owner, settings).await?;
        let mut sql = Sql::default();
        let mut sets: Vec<String> = SETTINGS_COLUMNS
            .iter()
            .zip(settings_args(settings))
            .map(|(c, a)| format!("{c} = {}", sql.arg(a)))
            .collect();
        sets.push(format!(
            "default_country = {}",
            sql.arg(Arg::Text(settings.default_country.trim().to_uppercase()))
        ));
        sets.push(format!("updated_at = {}", sql.arg(Arg::I64(now))));
        let id_arg = sql.arg(Arg::I64(id));
        sql.text = format!(
            "UPDATE campaigns SET {} WHERE id = {id_arg} RETURNING {COLUMNS}",
            sets.join(", ")
        );
        let row = sql
            .query(self.backend)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| conflict_on_constraint(e, || missing_reference(settings, None)))?
            .ok_or_else(|| StoreError::NotFound(format!("campaign {id}")))?;
        campaign_from(&row)
    }

    /// Deletes a campaign with its contacts, attempts and export jobs.
    pub async fn delete_campaign(&self, id: i64) -> Result<()> {
        let done = sqlx::query("DELETE FROM campaigns WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("campaign {id}")));
        }
        Ok(())
    }

    /// Moves a campaign from `expected` to `to`, only if it is still `expected`
    /// (else Conflict naming the status it has). Going to `processing` sets
    /// `started_at`; a final status sets `finished_at`; leaving a final status clears it.
    /// Going to a status that holds the campaign's number (scheduled, processing, paused)
    /// is one transaction with the check that no other campaign holds it (Conflict naming
    /// that campaign).
    pub async fn set_campaign_status(
        &self,
        id: i64,
        expected: CampaignStatus,
        to: CampaignStatus,
        now: Millis,
    ) -> Result<Campaign> {
        if !to.holds_number() {
            let row = set_status_on(&self.pool, id, expected, to, now).await?;
            return self.status_set(id, expected, row).await;
        }
        let mut tx = self.pool.begin().await?;
        super::numbers::check_campaign_may_hold(&mut tx, id, to).await?;
        let row = set_status_on(&mut *tx, id, expected, to, now).await?;
        if row.is_some() {
            tx.commit().await?;
        } else {
            tx.rollback().await?;
        }
        self.status_set(id, expected, row).await
    }

    /// The campaign a status change returned, or Conflict naming the status it has.
    pub(crate) async fn status_set(
        &self,
        id: i64,
        expected: CampaignStatus,
        row: Option<sqlx::any::AnyRow>,
    ) -> Result<Campaign> {
        match row {
            Some(row) => campaign_from(&row),
            None => {
                let current = self.get_campaign(id).await?;
                Err(StoreError::Conflict(format!(
                    "campaign {id} is {} (expected {expected})",
                    current.status
                )))
            }
        }
    }
}

/// The caller ID of a campaign calling from `number`: `number` when `caller_id` is empty or
/// the same, else Invalid naming `caller_id`.
fn caller_id_of(caller_id: &str, number: &str) -> Result<String> {
    let given = caller_id.trim();
    if given.is_empty() || given == number {
        Ok(number.to_string())
    } else {
        Err(StoreError::Invalid(format!(
            "caller_id: {given:?} differs from the campaign's number {number} (the caller ID \
             comes from number_id: leave caller_id out)"
        )))
    }
}

/// Inserts a campaign through `ex` (the pool or a transaction); its row.
async fn insert_on<'e, E>(
    ex: E,
    backend: super::Backend,
    account_id: Option<i64>,
    settings: &CampaignSettings,
    status: CampaignStatus,
    now: Millis,
) -> Result<AnyRow>
where
    E: 'e + sqlx::Executor<'e, Database = sqlx::Any>,
{
    let mut sql = Sql::new("");
    let mut values: Vec<String> = settings_args(settings)
        .into_iter()
        .map(|a| sql.arg(a))
        .collect();
    values.push(sql.arg(Arg::Text(settings.default_country.trim().to_uppercase())));
    values.push(sql.arg(Arg::OptI64(settings.number_id)));
    values.push(sql.arg(Arg::OptI64(account_id)));
    values.push(sql.arg(Arg::Text(status.as_str().into())));
    let now_arg = sql.arg(Arg::I64(now));
    values.push(now_arg.clone());
    values.push(now_arg);
    sql.text = format!(
        "INSERT INTO campaigns ({}, default_country, number_id, account_id, status, created_at, \
         updated_at) VALUES ({}) RETURNING {COLUMNS}",
        SETTINGS_COLUMNS.join(", "),
        values.join(", ")
    );
    sql.query(backend)
        .fetch_one(ex)
        .await
        .map_err(|e| conflict_on_constraint(e, || missing_reference(settings, account_id)))
}

/// [`Store::set_campaign_status`]'s compare-and-set through `ex` (the pool or a
/// transaction): the campaign's row when it moved, `None` when it was not `expected`.
pub(crate) async fn set_status_on<'e, E>(
    ex: E,
    id: i64,
    expected: CampaignStatus,
    to: CampaignStatus,
    now: Millis,
) -> Result<Option<sqlx::any::AnyRow>>
where
    E: 'e + sqlx::Executor<'e, Database = sqlx::Any>,
{
    let started = if to == CampaignStatus::Processing {
        "$4"
    } else {
        "started_at"
    };
    let finished = if to.is_final() { "$4" } else { "NULL" };
    let sql = format!(
        "UPDATE campaigns SET status = $3, updated_at = $4, started_at = {started}, \
         finished_at = {finished} WHERE id = $1 AND status = $2 RETURNING {COLUMNS}"
    );
    Ok(sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .bind(expected.as_str())
        .bind(to.as_str())
        .bind(now)
        .fetch_optional(ex)
        .await?)
}
