//! The event log: what happened to campaigns and contacts (status changes, calls placed,
//! verdicts, admin actions), append-only, read back by id as a cursor (webhooks and the
//! UI's activity feed poll "events after N").

use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::Row;

use super::{get_json, to_json, where_clause, Arg, Result, Sql, Store};
use crate::campaign::model::Millis;

/// One logged event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub id: i64,
    pub campaign_id: Option<i64>,
    pub contact_id: Option<i64>,
    /// e.g. `campaign.status`, `contact.status`, `call.ended`.
    pub kind: String,
    pub detail: serde_json::Value,
    pub at: Millis,
}

/// Which events to read: ids after `after_id`, oldest first, at most `limit`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct EventFilter {
    pub campaign_id: Option<i64>,
    pub contact_id: Option<i64>,
    pub kind: Option<String>,
    /// Cursor: only events with a greater id.
    pub after_id: Option<i64>,
    pub since: Option<Millis>,
    /// 0: 100.
    pub limit: i64,
}

fn event_from(row: &AnyRow) -> Result<Event> {
    Ok(Event {
        id: row.try_get("id")?,
        campaign_id: row.try_get("campaign_id")?,
        contact_id: row.try_get("contact_id")?,
        kind: row.try_get("kind")?,
        detail: get_json(row, "detail")?,
        at: row.try_get("created_at")?,
    })
}

/// Appends an event through `ex` (the pool, or a transaction); returns its id.
pub(crate) async fn append_event_on<'e, E>(
    ex: E,
    campaign_id: Option<i64>,
    contact_id: Option<i64>,
    kind: &str,
    detail: &serde_json::Value,
    now: Millis,
) -> Result<i64>
where
    E: 'e + sqlx::Executor<'e, Database = sqlx::Any>,
{
    let row = sqlx::query(
        "INSERT INTO events (campaign_id, contact_id, kind, detail, created_at) \
         VALUES ($1, $2, $3, $4, $5) RETURNING id",
    )
    .bind(campaign_id)
    .bind(contact_id)
    .bind(kind.to_string())
    .bind(to_json(detail))
    .bind(now)
    .fetch_one(ex)
    .await?;
    Ok(row.try_get("id")?)
}

impl Store {
    /// Appends an event; returns its id.
    pub async fn append_event(
        &self,
        campaign_id: Option<i64>,
        contact_id: Option<i64>,
        kind: &str,
        detail: &serde_json::Value,
        now: Millis,
    ) -> Result<i64> {
        append_event_on(&self.pool, campaign_id, contact_id, kind, detail, now).await
    }

    /// Events matching `filter`, oldest first.
    pub async fn list_events(&self, filter: &EventFilter) -> Result<Vec<Event>> {
        let mut sql = Sql::default();
        let mut conds = Vec::new();
        if let Some(c) = filter.campaign_id {
            conds.push(format!("campaign_id = {}", sql.arg(Arg::I64(c))));
        }
        if let Some(c) = filter.contact_id {
            conds.push(format!("contact_id = {}", sql.arg(Arg::I64(c))));
        }
        if let Some(k) = &filter.kind {
            conds.push(format!("kind = {}", sql.arg(Arg::Text(k.clone()))));
        }
        if let Some(id) = filter.after_id {
            conds.push(format!("id > {}", sql.arg(Arg::I64(id))));
        }
        if let Some(t) = filter.since {
            conds.push(format!("created_at >= {}", sql.arg(Arg::I64(t))));
        }
        let limit = if filter.limit <= 0 {
            100
        } else {
            filter.limit.min(super::MAX_PAGE)
        };
        let limit = sql.arg(Arg::I64(limit));
        sql.text = format!(
            "SELECT id, campaign_id, contact_id, kind, detail, created_at FROM events{} \
             ORDER BY id LIMIT {limit}",
            where_clause(&conds)
        );
        let rows = sql.query().fetch_all(&self.pool).await?;
        rows.iter().map(event_from).collect()
    }
}
