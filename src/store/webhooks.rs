//! Webhooks and their durable outbox. A webhook belongs to an account and sends its call
//! events (those it lists, or all) to a URL, as JSON or as Twilio-style form fields; one with a
//! campaign serves that campaign, the one without is the account's default for campaigns that
//! have none. Each account has one signing secret, made on first need.
//!
//! Deliveries are written by [`Store::append_events`] in the transaction that stores their
//! events ([`queue_deliveries`]), so nothing stored is left unsent by a crash. The dispatcher
//! reads them with [`Store::due_deliveries`] — oldest first, and in each stream (one call's
//! events, or one campaign's others) only the first one not yet delivered, so a call's events
//! arrive in order — and marks each delivered, retried later or given up.
//!
//! Must not: show or change another account's webhooks or deliveries, or reorder a stream (a
//! later delivery of a stream never goes before an earlier one is delivered or given up).

use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::Row;

use super::events::Event;
use super::{conflict_on_constraint, Arg, Page, Paged, Result, Sql, Store, StoreError};
use crate::campaign::model::Millis;

/// One account's webhook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Webhook {
    pub id: i64,
    pub account_id: i64,
    /// The campaign it serves (`None`: the account's default).
    pub campaign_id: Option<i64>,
    pub url: String,
    /// Event kinds sent (empty: every call event).
    pub events: Vec<String>,
    /// `json` or `twilio`.
    pub format: String,
    pub created_at: Millis,
    pub updated_at: Millis,
}

/// A new webhook, or a whole replacement.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewWebhook {
    pub campaign_id: Option<i64>,
    pub url: String,
    pub events: Vec<String>,
    pub format: String,
}

/// One delivery of one event to one webhook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    pub id: i64,
    pub webhook_id: i64,
    pub event_id: i64,
    pub account_id: i64,
    /// The stream it is ordered in (`call:<Call-ID>` or `campaign:<id>`).
    pub stream: String,
    /// `pending`, `delivered` or `failed` (given up).
    pub status: String,
    pub attempts: i64,
    /// When it is tried next (pending).
    pub next_at: Millis,
    /// The last HTTP status the receiver answered.
    pub last_status: Option<i64>,
    /// Why the last try failed (connection refused, timeout, a non-2xx status).
    pub last_error: Option<String>,
    pub created_at: Millis,
    pub delivered_at: Option<Millis>,
}

const WEBHOOK_COLUMNS: &str =
    "id, account_id, campaign_id, url, events, format, created_at, updated_at";
const DELIVERY_COLUMNS: &str = "id, webhook_id, event_id, account_id, stream, status, attempts, \
     next_at, last_status, last_error, created_at, delivered_at";

fn webhook_from(row: &AnyRow) -> Result<Webhook> {
    let events: String = row.try_get("events")?;
    Ok(Webhook {
        id: row.try_get("id")?,
        account_id: row.try_get("account_id")?,
        campaign_id: row.try_get("campaign_id")?,
        url: row.try_get("url")?,
        events: serde_json::from_str(&events).unwrap_or_default(),
        format: row.try_get("format")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn delivery_from(row: &AnyRow) -> Result<Delivery> {
    Ok(Delivery {
        id: row.try_get("id")?,
        webhook_id: row.try_get("webhook_id")?,
        event_id: row.try_get("event_id")?,
        account_id: row.try_get("account_id")?,
        stream: row.try_get("stream")?,
        status: row.try_get("status")?,
        attempts: row.try_get("attempts")?,
        next_at: row.try_get("next_at")?,
        last_status: row.try_get("last_status")?,
        last_error: row.try_get("last_error")?,
        created_at: row.try_get("created_at")?,
        delivered_at: row.try_get("delivered_at")?,
    })
}

/// The stream an event is ordered in: its call, or its campaign's other events.
pub fn stream_of(event: &Event) -> String {
    match (&event.call_id, event.campaign_id) {
        (Some(call), _) => format!("call:{call}"),
        (None, Some(c)) => format!("campaign:{c}"),
        (None, None) => "account".to_string(),
    }
}

/// Writes, through `tx`, a delivery of `event` to the webhook that serves it (its campaign's,
/// else its account's default) when that webhook takes its kind. Called for every event
/// stored, in the same transaction.
pub(crate) async fn queue_deliveries(conn: &mut sqlx::AnyConnection, event: &Event) -> Result<()> {
    queue_deliveries_many(conn, std::slice::from_ref(event)).await
}

/// [`queue_deliveries`] for a group of events: one look at the webhooks per account and
/// campaign, one statement for every delivery.
pub(crate) async fn queue_deliveries_many(
    conn: &mut sqlx::AnyConnection,
    events: &[Event],
) -> Result<()> {
    // (account, campaign) → the webhook that serves it and the kinds it takes.
    type Serving = Option<(i64, Vec<String>)>;
    let mut serving: std::collections::HashMap<(i64, Option<i64>), Serving> = Default::default();
    let mut rows = Vec::new();
    for event in events {
        let Some(account) = event.account_id else {
            continue;
        };
        let key = (account, event.campaign_id);
        if let std::collections::hash_map::Entry::Vacant(slot) = serving.entry(key) {
            // The campaign's own webhook first, then the account's default.
            let found = sqlx::query(
                "SELECT id, campaign_id, events FROM webhooks WHERE account_id = $1 \
                 AND (campaign_id = $2 OR campaign_id IS NULL)",
            )
            .bind(account)
            .bind(event.campaign_id)
            .fetch_all(&mut *conn)
            .await?;
            let mut chosen = None;
            for row in &found {
                let id: i64 = row.try_get("id")?;
                let campaign: Option<i64> = row.try_get("campaign_id")?;
                let events: String = row.try_get("events")?;
                if campaign.is_some() || chosen.is_none() {
                    chosen = Some((id, events));
                }
            }
            let chosen = chosen.map(|(id, events)| {
                (
                    id,
                    serde_json::from_str::<Vec<String>>(&events).unwrap_or_default(),
                )
            });
            slot.insert(chosen);
        }
        let Some(Some((webhook, kinds))) = serving.get(&key) else {
            continue;
        };
        if !kinds.is_empty() && !kinds.contains(&event.kind) {
            continue;
        }
        rows.push([
            Arg::I64(*webhook),
            Arg::I64(event.id),
            Arg::I64(account),
            Arg::Text(stream_of(event)),
            Arg::I64(event.at),
        ]);
    }
    // A few dozen rows per statement: sqlx's SQLite driver's cost per statement grows with
    // the square of its placeholders.
    for chunk in rows.chunks(32) {
        let mut sql = Sql::default();
        let values: Vec<String> = chunk
            .iter()
            .map(|row| {
                let p: Vec<String> = row.iter().map(|a| sql.arg(a.clone())).collect();
                format!(
                    "({}, {}, {}, {}, 'pending', 0, {}, {})",
                    p[0], p[1], p[2], p[3], p[4], p[4]
                )
            })
            .collect();
        sql.text = format!(
            "INSERT INTO webhook_deliveries (webhook_id, event_id, account_id, stream, status, \
             attempts, next_at, created_at) VALUES {}",
            values.join(", ")
        );
        sql.query(super::Backend::of(&*conn))
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

impl Store {
    /// The account's webhooks, its default first.
    pub async fn list_webhooks(&self, account_id: i64) -> Result<Vec<Webhook>> {
        let sql = format!(
            "SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE account_id = $1 \
             ORDER BY campaign_id IS NOT NULL, campaign_id, id"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(account_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(webhook_from).collect()
    }

    pub async fn get_webhook(&self, account_id: i64, id: i64) -> Result<Webhook> {
        let sql =
            format!("SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE id = $1 AND account_id = $2");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .bind(account_id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("webhook {id}")))?;
        webhook_from(&row)
    }

    /// Adds a webhook; 409 when its campaign (or the account's default) has one already, 404
    /// when the campaign is not the account's.
    pub async fn create_webhook(
        &self,
        account_id: i64,
        new: &NewWebhook,
        now: Millis,
    ) -> Result<Webhook> {
        if let Some(c) = new.campaign_id {
            let owned = sqlx::query("SELECT id FROM campaigns WHERE id = $1 AND account_id = $2")
                .bind(c)
                .bind(account_id)
                .fetch_optional(&self.pool)
                .await?;
            if owned.is_none() {
                return Err(StoreError::NotFound(format!("campaign {c}")));
            }
        }
        let events = serde_json::to_string(&new.events).unwrap_or_else(|_| "[]".into());
        let row = sqlx::query(
            "INSERT INTO webhooks (account_id, campaign_id, url, events, format, created_at, \
             updated_at) VALUES ($1, $2, $3, $4, $5, $6, $6) RETURNING id",
        )
        .bind(account_id)
        .bind(new.campaign_id)
        .bind(new.url.clone())
        .bind(events)
        .bind(new.format.clone())
        .bind(now)
        .fetch_one(&self.pool)
        .await
        .map_err(|e| {
            conflict_on_constraint(e, || match new.campaign_id {
                Some(c) => format!("campaign {c} has a webhook already"),
                None => "the account has a default webhook already".to_string(),
            })
        })?;
        self.get_webhook(account_id, row.try_get("id")?).await
    }

    /// Replaces a webhook's URL, kinds and format (its campaign stays).
    pub async fn update_webhook(
        &self,
        account_id: i64,
        id: i64,
        new: &NewWebhook,
        now: Millis,
    ) -> Result<Webhook> {
        let events = serde_json::to_string(&new.events).unwrap_or_else(|_| "[]".into());
        let done = sqlx::query(
            "UPDATE webhooks SET url = $1, events = $2, format = $3, updated_at = $4 \
             WHERE id = $5 AND account_id = $6",
        )
        .bind(new.url.clone())
        .bind(events)
        .bind(new.format.clone())
        .bind(now)
        .bind(id)
        .bind(account_id)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("webhook {id}")));
        }
        self.get_webhook(account_id, id).await
    }

    /// Deletes a webhook and its deliveries not yet made.
    pub async fn delete_webhook(&self, account_id: i64, id: i64) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query("DELETE FROM webhooks WHERE id = $1 AND account_id = $2")
            .bind(id)
            .bind(account_id)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("webhook {id}")));
        }
        sqlx::query("DELETE FROM webhook_deliveries WHERE webhook_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The account's signing secret, made (random, 32 bytes as hex) on first need.
    pub async fn webhook_secret(&self, account_id: i64) -> Result<String> {
        let row = sqlx::query("SELECT webhook_secret FROM accounts WHERE id = $1")
            .bind(account_id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("account {account_id}")))?;
        if let Some(secret) = row.try_get::<Option<String>, _>("webhook_secret")? {
            return Ok(secret);
        }
        self.rotate_webhook_secret_if(account_id, None).await
    }

    /// A new signing secret for the account (the old one stops signing at once).
    pub async fn rotate_webhook_secret(&self, account_id: i64) -> Result<String> {
        let current = self.webhook_secret(account_id).await?;
        self.rotate_webhook_secret_if(account_id, Some(current))
            .await
    }

    /// Sets a new secret if the stored one is still `expected` (two nodes making the first
    /// secret at once agree on one); returns the secret in force.
    async fn rotate_webhook_secret_if(
        &self,
        account_id: i64,
        expected: Option<String>,
    ) -> Result<String> {
        let fresh: String = (0..32)
            .map(|_| format!("{:02x}", rand::random::<u8>()))
            .collect();
        let mut sql = Sql::default();
        let secret = sql.arg(Arg::Text(fresh.clone()));
        let id = sql.arg(Arg::I64(account_id));
        let cond = match expected {
            Some(e) => format!("webhook_secret = {}", sql.arg(Arg::Text(e))),
            None => "webhook_secret IS NULL".to_string(),
        };
        sql.text =
            format!("UPDATE accounts SET webhook_secret = {secret} WHERE id = {id} AND {cond}");
        sql.query(self.backend).execute(&self.pool).await?;
        let row = sqlx::query("SELECT webhook_secret FROM accounts WHERE id = $1")
            .bind(account_id)
            .fetch_one(&self.pool)
            .await?;
        let stored: Option<String> = row.try_get("webhook_secret")?;
        stored.ok_or_else(|| StoreError::Invalid("webhook secret not stored".into()))
    }

    /// Up to `limit` deliveries due at `now`, oldest first, each the first undelivered one of
    /// its stream, with their events and webhooks.
    pub async fn due_deliveries(
        &self,
        now: Millis,
        limit: i64,
    ) -> Result<Vec<(Delivery, Event, Webhook)>> {
        let sql = format!(
            "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries d WHERE d.status = 'pending' \
             AND d.next_at <= $1 AND NOT EXISTS (SELECT 1 FROM webhook_deliveries e \
               WHERE e.webhook_id = d.webhook_id AND e.stream = d.stream \
               AND e.status = 'pending' AND e.id < d.id) \
             ORDER BY d.id LIMIT $2"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(now)
            .bind(limit.clamp(1, 1000))
            .fetch_all(&self.pool)
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let d = delivery_from(row)?;
            let event = self.event_by_id(d.event_id).await?;
            let webhook = self.get_webhook(d.account_id, d.webhook_id).await?;
            out.push((d, event, webhook));
        }
        Ok(out)
    }

    /// Takes a due delivery for `node` until `until` (several nodes share the outbox):
    /// `false` when another node has it.
    pub async fn claim_delivery(
        &self,
        id: i64,
        node: &str,
        now: Millis,
        until: Millis,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE webhook_deliveries SET claimed_by = $1, claimed_until = $2              WHERE id = $3 AND status = 'pending'              AND (claimed_until IS NULL OR claimed_until < $4 OR claimed_by = $1)",
        )
        .bind(node.to_string())
        .bind(until)
        .bind(id)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Records a try: delivered (`next_at` `None`), or pending again at `next_at`, or given up
    /// (`give_up`).
    pub async fn delivery_tried(
        &self,
        id: i64,
        status: Option<i64>,
        error: Option<&str>,
        next_at: Option<Millis>,
        give_up: bool,
        now: Millis,
    ) -> Result<()> {
        let (state, delivered_at, next) = match (next_at, give_up) {
            (_, true) => ("failed", None, now),
            (None, false) => ("delivered", Some(now), now),
            (Some(at), false) => ("pending", None, at),
        };
        sqlx::query(
            "UPDATE webhook_deliveries SET status = $1, attempts = attempts + 1, next_at = $2, \
             last_status = $3, last_error = $4, delivered_at = $5, claimed_by = NULL, \
             claimed_until = NULL WHERE id = $6",
        )
        .bind(state)
        .bind(next)
        .bind(status)
        .bind(error.map(str::to_string))
        .bind(delivered_at)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The account's deliveries, newest first (`status`: only those).
    pub async fn list_deliveries(
        &self,
        account_id: i64,
        status: Option<&str>,
        page: Page,
    ) -> Result<Paged<Delivery>> {
        let page = page.clamped();
        let mut sql = Sql::default();
        let mut conds = vec![format!("account_id = {}", sql.arg(Arg::I64(account_id)))];
        if let Some(s) = status {
            conds.push(format!("status = {}", sql.arg(Arg::Text(s.to_string()))));
        }
        let cond = conds.join(" AND ");
        let count = Sql {
            text: format!("SELECT COUNT(*) AS n FROM webhook_deliveries WHERE {cond}"),
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
            "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE {cond} \
             ORDER BY id DESC LIMIT {limit} OFFSET {offset}"
        );
        let rows = sql.query(self.backend).fetch_all(&self.pool).await?;
        let items = rows.iter().map(delivery_from).collect::<Result<Vec<_>>>()?;
        Ok(Paged { items, total })
    }

    /// One stored event.
    pub async fn event_by_id(&self, id: i64) -> Result<Event> {
        let mut filter = super::events::EventFilter {
            after_id: Some(id - 1),
            limit: 1,
            ..Default::default()
        };
        filter.kind = None;
        self.list_events(&filter)
            .await?
            .into_iter()
            .find(|e| e.id == id)
            .ok_or_else(|| StoreError::NotFound(format!("event {id}")))
    }
}
