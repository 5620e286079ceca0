//! The Do-Not-Call list: numbers never to dial, whatever the campaign. The dialer asks
//! [`Store::dnc_contains`] before each call (FTC TSR: DNC checked before dialing).

use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::Row;

use super::{
    conflict_on_constraint, is_e164, like_pattern, where_clause, Arg, Page, Paged, Result, Sql,
    Store, StoreError,
};
use crate::campaign::model::Millis;

/// One number on the list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DncEntry {
    pub id: i64,
    /// E.164.
    pub phone: String,
    pub reason: String,
    pub created_at: Millis,
}

fn entry_from(row: &AnyRow) -> Result<DncEntry> {
    Ok(DncEntry {
        id: row.try_get("id")?,
        phone: row.try_get("phone")?,
        reason: row.try_get("reason")?,
        created_at: row.try_get("created_at")?,
    })
}

impl Store {
    /// Adds a number (E.164, else Invalid); one already listed is a Conflict.
    pub async fn add_dnc(&self, phone: &str, reason: &str, now: Millis) -> Result<DncEntry> {
        if !is_e164(phone) {
            return Err(StoreError::Invalid(format!(
                "phone: {phone:?} is not an E.164 number (+ and up to 15 digits)"
            )));
        }
        let row = sqlx::query(
            "INSERT INTO dnc_numbers (phone, reason, created_at) VALUES ($1, $2, $3) \
             RETURNING id, phone, reason, created_at",
        )
        .bind(phone.to_string())
        .bind(reason.to_string())
        .bind(now)
        .fetch_one(&self.pool)
        .await
        .map_err(|e| conflict_on_constraint(e, || format!("{phone} is already on the DNC list")))?;
        entry_from(&row)
    }

    /// A page of the list by phone; `search` matches part of the phone or the reason.
    pub async fn list_dnc(&self, search: Option<&str>, page: Page) -> Result<Paged<DncEntry>> {
        let page = page.clamped();
        let mut sql = Sql::default();
        let mut conds = Vec::new();
        if let Some(text) = search.filter(|t| !t.trim().is_empty()) {
            let p = sql.arg(Arg::Text(like_pattern(text.trim())));
            conds.push(format!(
                "(phone LIKE {p} ESCAPE '\\' OR LOWER(reason) LIKE {p} ESCAPE '\\')"
            ));
        }
        let wc = where_clause(&conds);
        let count = Sql {
            text: format!("SELECT COUNT(*) AS n FROM dnc_numbers{wc}"),
            args: sql.args.clone(),
        };
        let total: i64 = count.query().fetch_one(&self.pool).await?.try_get("n")?;
        let limit = sql.arg(Arg::I64(page.limit));
        let offset = sql.arg(Arg::I64(page.offset));
        sql.text = format!(
            "SELECT id, phone, reason, created_at FROM dnc_numbers{wc} \
             ORDER BY phone LIMIT {limit} OFFSET {offset}"
        );
        let rows = sql.query().fetch_all(&self.pool).await?;
        let items = rows.iter().map(entry_from).collect::<Result<Vec<_>>>()?;
        Ok(Paged { items, total })
    }

    /// Takes a number off the list; NotFound when it was not on it.
    pub async fn delete_dnc(&self, phone: &str) -> Result<()> {
        let done = sqlx::query("DELETE FROM dnc_numbers WHERE phone = $1")
            .bind(phone.to_string())
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("DNC number {phone}")));
        }
        Ok(())
    }

    /// True when the number must not be dialed.
    pub async fn dnc_contains(&self, phone: &str) -> Result<bool> {
        let row = sqlx::query("SELECT id FROM dnc_numbers WHERE phone = $1")
            .bind(phone.to_string())
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.is_some())
    }
}
