//! The event log: what happened to campaigns, contacts and calls (status changes, each call's
//! progress from `initiated` to `completed`, admin actions), append-only, each event in an
//! account, read back by id as a cursor (the events API, webhooks, the live monitor).
//!
//! Must not: change or delete an event once written (the cursor relies on ids only growing).

use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::Row;

use super::{get_json, to_json, where_clause, Arg, Result, Sql, Store};
use crate::campaign::model::Millis;

/// One logged event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub id: i64,
    /// The account the event belongs to (`None`: a node-wide event).
    pub account_id: Option<i64>,
    pub campaign_id: Option<i64>,
    pub contact_id: Option<i64>,
    /// A call's event: the contact's attempt number...
    pub attempt: Option<i64>,
    /// ...and the call's SIP Call-ID.
    pub call_id: Option<String>,
    /// e.g. `campaign.status`, `contact.status`, `call.ended`.
    pub kind: String,
    pub detail: serde_json::Value,
    pub at: Millis,
}

/// Which events to read: ids after `after_id`, oldest first, at most `limit`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct EventFilter {
    /// Only this account's events (every API request sets it).
    pub account_id: Option<i64>,
    pub campaign_id: Option<i64>,
    pub contact_id: Option<i64>,
    pub kind: Option<String>,
    /// Cursor: only events with a greater id.
    pub after_id: Option<i64>,
    pub since: Option<Millis>,
    /// 0: 100.
    pub limit: i64,
}

/// An event to append.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub account_id: Option<i64>,
    pub campaign_id: Option<i64>,
    pub contact_id: Option<i64>,
    pub attempt: Option<i64>,
    pub call_id: Option<String>,
    pub kind: String,
    pub detail: serde_json::Value,
    pub at: Millis,
}

/// Events per `INSERT` in [`Store::append_events`] (8 placeholders each; on SQLite they go
/// anonymous, [`Sql::query`](super::Sql::query), so a statement's cost grows with its rows only).
const EVENTS_PER_STATEMENT: usize = 256;

const EVENT_COLUMNS: &str =
    "id, account_id, campaign_id, contact_id, attempt, call_id, kind, detail, created_at";

fn event_from(row: &AnyRow) -> Result<Event> {
    Ok(Event {
        id: row.try_get("id")?,
        account_id: row.try_get("account_id")?,
        campaign_id: row.try_get("campaign_id")?,
        contact_id: row.try_get("contact_id")?,
        attempt: row.try_get("attempt")?,
        call_id: row.try_get("call_id")?,
        kind: row.try_get("kind")?,
        detail: get_json(row, "detail")?,
        at: row.try_get("created_at")?,
    })
}

/// Appends an event, and its webhook delivery, through `conn` (inside a transaction, so both
/// are written or neither); returns its id.
pub(crate) async fn append_event_on(
    conn: &mut sqlx::AnyConnection,
    campaign_id: Option<i64>,
    contact_id: Option<i64>,
    kind: &str,
    detail: &serde_json::Value,
    now: Millis,
) -> Result<i64> {
    // The campaign's account, so the account's event feed has it.
    let row = sqlx::query(
        "INSERT INTO events (account_id, campaign_id, contact_id, kind, detail, created_at) \
         VALUES ((SELECT account_id FROM campaigns WHERE id = $1), $1, $2, $3, $4, $5) \
         RETURNING id, account_id",
    )
    .bind(campaign_id)
    .bind(contact_id)
    .bind(kind.to_string())
    .bind(to_json(detail))
    .bind(now)
    .fetch_one(&mut *conn)
    .await?;
    let event = Event {
        id: row.try_get("id")?,
        account_id: row.try_get("account_id")?,
        campaign_id,
        contact_id,
        attempt: None,
        call_id: None,
        kind: kind.to_string(),
        detail: detail.clone(),
        at: now,
    };
    super::webhooks::queue_deliveries(conn, &event).await?;
    Ok(event.id)
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
        let mut tx = self.pool.begin().await?;
        let id = append_event_on(&mut tx, campaign_id, contact_id, kind, detail, now).await?;
        tx.commit().await?;
        Ok(id)
    }

    /// Appends `events` in one transaction, in order; returns them as stored (with their ids),
    /// and queues their webhook deliveries in the same transaction.
    ///
    /// Written [`EVENTS_PER_STATEMENT`] rows to a statement, their ids matched to them with
    /// [`super::ids_in_order`].
    pub async fn append_events(&self, events: &[NewEvent]) -> Result<Vec<Event>> {
        let _turn = self.write_turn("append_events").await;
        let mut tx = self.pool.begin().await?;
        let mut stored = Vec::with_capacity(events.len());
        for chunk in events.chunks(EVENTS_PER_STATEMENT) {
            let mut sql = Sql::default();
            let rows: Vec<String> = chunk
                .iter()
                .map(|e| {
                    let values = [
                        Arg::OptI64(e.account_id),
                        Arg::OptI64(e.campaign_id),
                        Arg::OptI64(e.contact_id),
                        Arg::OptI64(e.attempt),
                        Arg::OptText(e.call_id.clone()),
                        Arg::Text(e.kind.clone()),
                        Arg::Text(to_json(&e.detail)),
                        Arg::I64(e.at),
                    ];
                    format!("({})", super::in_list(&mut sql, values))
                })
                .collect();
            sql.text = format!(
                "INSERT INTO events (account_id, campaign_id, contact_id, attempt, call_id, kind, \
                 detail, created_at) VALUES {} RETURNING id",
                rows.join(", ")
            );
            let rows = sql
                .query(super::Backend::of(&tx))
                .fetch_all(&mut *tx)
                .await?;
            let ids = super::ids_in_order(&rows, chunk.len(), "events")?;
            stored.extend(chunk.iter().zip(ids).map(|(e, id)| Event {
                id,
                account_id: e.account_id,
                campaign_id: e.campaign_id,
                contact_id: e.contact_id,
                attempt: e.attempt,
                call_id: e.call_id.clone(),
                kind: e.kind.clone(),
                detail: e.detail.clone(),
                at: e.at,
            }));
        }
        // Their webhook deliveries, in the same transaction: stored means sent.
        super::webhooks::queue_deliveries_many(&mut tx, &stored).await?;
        tx.commit().await?;
        Ok(stored)
    }

    /// Events matching `filter`, oldest first.
    pub async fn list_events(&self, filter: &EventFilter) -> Result<Vec<Event>> {
        let mut sql = Sql::default();
        let mut conds = Vec::new();
        if let Some(a) = filter.account_id {
            conds.push(format!("account_id = {}", sql.arg(Arg::I64(a))));
        }
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
            "SELECT {EVENT_COLUMNS} FROM events{} ORDER BY id LIMIT {limit}",
            where_clause(&conds)
        );
        let rows = sql.query(self.backend).fetch_all(&self.pool).await?;
        rows.iter().map(event_from).collect()
    }
}
