//! CSV imports, all or nothing, in bounded memory: an import stages its accepted rows in
//! `contact_imports` batch by batch (short transactions: the dialer keeps writing
//! meanwhile), then [`StagedImport::commit`] moves them into the campaign's contacts in one
//! transaction — or [`StagedImport::abort`] (or dropping it) deletes them, so nothing is
//! half-imported. Duplicates are found by the database's unique indexes, never by a set in
//! memory: a phone twice in the file meets the staging table's primary key
//! `(import_id, phone)` (reported with the line it repeats), a phone already in the
//! campaign meets contacts' `UNIQUE (campaign_id, phone)` (counted, left as it was).
//!
//! Must not: hold more than one batch, validate rows (the caller passes
//! [`NewContact::validate`]d rows), or leave staged rows behind on a normal end; rows of a
//! process that died midway are purged a day later ([`Store::purge_stale_imports`]).

use std::collections::HashMap;

use sqlx::Row;

use super::{in_list, to_json, Arg, Backend, NewContact, Result, Sql, Store};
use crate::campaign::model::Millis;

/// Rows per staging INSERT (7 values each).
const STAGE_CHUNK: usize = 1000;
/// Staged rows older than this are an import a stopped process left behind.
const STALE_IMPORT_MS: Millis = 24 * 3600 * 1000;

/// What a committed import did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImportCommit {
    /// Contacts added to the campaign.
    pub inserted: u64,
    /// Staged rows whose phone the campaign already had (left as they were).
    pub duplicates: u64,
}

/// An import in progress (see the module notes). Dropping it without
/// [`StagedImport::commit`] deletes what it staged.
#[derive(Debug)]
pub struct StagedImport {
    store: Store,
    /// Random hex: the staging rows' key (never user input, so safe to inline in SQL).
    id: String,
    campaign_id: i64,
    staged: u64,
    finished: bool,
}

impl Store {
    /// Starts an import into a campaign (NotFound when it does not exist).
    pub async fn begin_import(&self, campaign_id: i64) -> Result<StagedImport> {
        self.ensure_campaign(campaign_id).await?;
        let bytes: [u8; 16] = rand::random();
        Ok(StagedImport {
            store: self.clone(),
            id: super::hex(&bytes),
            campaign_id,
            staged: 0,
            finished: false,
        })
    }

    /// Deletes staged rows older than a day (an import whose process stopped midway).
    pub async fn purge_stale_imports(&self, now: Millis) -> Result<u64> {
        let done = sqlx::query("DELETE FROM contact_imports WHERE created_at < $1")
            .bind(now.saturating_sub(STALE_IMPORT_MS))
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }
}

impl StagedImport {
    /// Rows staged so far (file duplicates not counted).
    pub fn staged(&self) -> u64 {
        self.staged
    }

    /// Stages rows `(line, contact)`. Returns `(line, first_line)` for each row whose phone
    /// an earlier row of this import already has (that row is not staged).
    pub async fn stage(
        &mut self,
        rows: &[(u64, NewContact)],
        now: Millis,
    ) -> Result<Vec<(u64, u64)>> {
        let mut repeated = Vec::new();
        for chunk in rows.chunks(STAGE_CHUNK) {
            let text = stage_sql(self.store.backend, chunk.len(), &self.id, now);
            let mut q = sqlx::query(sqlx::AssertSqlSafe(text));
            for (line, c) in chunk {
                q = q
                    .bind(i64::try_from(*line).unwrap_or(i64::MAX))
                    .bind(c.phone.clone())
                    .bind(c.name.clone())
                    .bind(c.comments.clone())
                    .bind(if c.tags.is_empty() {
                        "[]".to_string()
                    } else {
                        to_json(&c.tags)
                    })
                    .bind(c.timezone.clone())
                    .bind(c.status.as_str());
            }
            let returned = q.fetch_all(&self.store.pool).await?;
            self.staged += returned.len() as u64;
            if returned.len() == chunk.len() {
                continue;
            }
            let mut kept = std::collections::HashSet::with_capacity(returned.len());
            for row in &returned {
                kept.insert(row.try_get::<i64, _>("line")?);
            }
            let lost: Vec<&(u64, NewContact)> = chunk
                .iter()
                .filter(|(line, _)| !kept.contains(&i64::try_from(*line).unwrap_or(i64::MAX)))
                .collect();
            let mut sql = Sql::default();
            let id = sql.arg(Arg::Text(self.id.clone()));
            let phones = in_list(
                &mut sql,
                lost.iter().map(|(_, c)| Arg::Text(c.phone.clone())),
            );
            sql.text = format!(
                "SELECT phone, line FROM contact_imports WHERE import_id = {id} AND phone IN ({phones})"
            );
            let mut first: HashMap<String, i64> = HashMap::new();
            for row in sql.query().fetch_all(&self.store.pool).await? {
                first.insert(row.try_get("phone")?, row.try_get("line")?);
            }
            for (line, c) in lost {
                let at = first.get(&c.phone).copied().unwrap_or(0);
                repeated.push((*line, u64::try_from(at).unwrap_or(0)));
            }
        }
        Ok(repeated)
    }

    /// Moves every staged row into the campaign's contacts (in line order) and deletes
    /// the staging rows, in one transaction.
    pub async fn commit(mut self, now: Millis) -> Result<ImportCommit> {
        let mut tx = self.store.pool.begin().await?;
        let sql = format!(
            "INSERT INTO contacts (campaign_id, phone, name, comments, tags, timezone, status, \
             next_attempt_at, created_at, updated_at) \
             SELECT {campaign}, phone, name, comments, tags, timezone, status, \
             CAST(NULL AS BIGINT), {now}, {now} FROM contact_imports \
             WHERE import_id = $1 ORDER BY line \
             ON CONFLICT (campaign_id, phone) DO NOTHING",
            campaign = self.campaign_id
        );
        let inserted = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(self.id.clone())
            .execute(&mut *tx)
            .await?
            .rows_affected();
        sqlx::query("DELETE FROM contact_imports WHERE import_id = $1")
            .bind(self.id.clone())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        self.finished = true;
        Ok(ImportCommit {
            inserted,
            duplicates: self.staged.saturating_sub(inserted),
        })
    }

    /// Deletes what was staged: the campaign is left as it was.
    pub async fn abort(mut self) -> Result<()> {
        self.finished = true;
        delete_staged(&self.store, &self.id).await
    }
}

impl Drop for StagedImport {
    /// An import dropped midway (an error, a client that went away) deletes its rows on
    /// the runtime; without one, the stale-import purge removes them later.
    fn drop(&mut self) {
        if self.finished || self.staged == 0 {
            return;
        }
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            let store = self.store.clone();
            let id = std::mem::take(&mut self.id);
            handle.spawn(async move {
                if let Err(e) = delete_staged(&store, &id).await {
                    tracing::warn!(error = %e, "staged import rows not deleted (purged later)");
                }
            });
        }
    }
}

async fn delete_staged(store: &Store, id: &str) -> Result<()> {
    sqlx::query("DELETE FROM contact_imports WHERE import_id = $1")
        .bind(id.to_string())
        .execute(&store.pool)
        .await?;
    Ok(())
}

/// `INSERT … VALUES (…), … ON CONFLICT (import_id, phone) DO NOTHING RETURNING line` for
/// `rows` rows of 7 placeholders (`?` on SQLite, `$n` on PostgreSQL, as the contact
/// import's own statement).
fn stage_sql(backend: Backend, rows: usize, import_id: &str, now: Millis) -> String {
    super::contacts::values_sql(
        backend,
        "INSERT INTO contact_imports (import_id, line, phone, name, comments, tags, timezone, \
         status, created_at) VALUES ",
        rows,
        &format!("'{import_id}', "),
        &now.to_string(),
        " ON CONFLICT (import_id, phone) DO NOTHING RETURNING line",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stage_sql_numbers_each_row() {
        assert_eq!(
            stage_sql(Backend::Postgres, 2, "ab", 9)
                .split(" VALUES ")
                .nth(1)
                .unwrap(),
            "('ab', $1, $2, $3, $4, $5, $6, $7, 9), ('ab', $8, $9, $10, $11, $12, $13, $14, 9) \
             ON CONFLICT (import_id, phone) DO NOTHING RETURNING line"
        );
        assert!(stage_sql(Backend::Sqlite, 1, "ab", 9).contains("('ab', ?, ?, ?, ?, ?, ?, ?, 9)"));
    }
}
