//! CSV imports, all or nothing, in bounded memory: an import stages its accepted rows in
//! `contact_imports` batch by batch (short transactions: the dialer keeps writing
//! meanwhile; one batch is written while the caller reads the next), then
//! [`StagedImport::commit`] moves them into the campaign's contacts in one statement — or
//! [`StagedImport::abort`] (or dropping it) deletes them, so nothing is half-imported. Duplicates are found by the database's unique indexes, never by a set in
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

/// The deletion of a committed import's staging rows, running on its own. Dropping this
/// leaves it running; a process about to exit waits for it ([`Cleanup::wait`]), or the rows
/// stay until the stale-import purge.
#[derive(Debug)]
pub struct Cleanup(tokio::task::JoinHandle<()>);

impl Cleanup {
    /// Waits until the staging rows are deleted (or the deletion failed, which is logged).
    pub async fn wait(self) {
        let _ = self.0.await;
    }
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
    /// The batch being written (one batch at a time, in file order; in parts).
    in_flight: Vec<tokio::task::JoinHandle<Staged>>,
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
            in_flight: Vec::new(),
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

/// A row of the file whose phone an earlier row of the same import already has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repeat {
    pub line: u64,
    /// The line that has the phone first.
    pub first_line: u64,
    pub phone: String,
}

/// What one staging statement did: rows staged, and the rows it refused as repeats.
type Staged = Result<(u64, Vec<Repeat>)>;

impl StagedImport {
    /// Rows staged so far (file duplicates not counted; a batch still being written is not
    /// counted yet).
    pub fn staged(&self) -> u64 {
        self.staged
    }

    /// Stages rows `(line, contact)` of one batch: a phone repeated within the batch is
    /// refused at once (a set of one batch's phones); the rest is handed to tasks and this
    /// returns once the batch before it is written, so the caller reads the next batch while
    /// this one is written. Batches land in file order, so of two lines with one phone the
    /// first is kept; on PostgreSQL a batch's two halves are written on two connections at
    /// once (they share no phone). Returns the refused rows: this batch's repeats within
    /// itself, and the rows of earlier batches that repeat a phone staged before them.
    pub async fn stage(
        &mut self,
        rows: Vec<(u64, NewContact)>,
        now: Millis,
    ) -> Result<Vec<Repeat>> {
        let mut repeats = self.settle().await?;
        let mut first: HashMap<&str, u64> = HashMap::with_capacity(rows.len());
        let mut keep = Vec::with_capacity(rows.len());
        for (i, (line, c)) in rows.iter().enumerate() {
            match first.get(c.phone.as_str()) {
                Some(&first_line) => repeats.push(Repeat {
                    line: *line,
                    first_line,
                    phone: c.phone.clone(),
                }),
                None => {
                    first.insert(&c.phone, *line);
                    keep.push(i);
                }
            }
        }
        drop(first);
        let mut fresh: Vec<(u64, NewContact)> = Vec::with_capacity(keep.len());
        let mut keep = keep.into_iter().peekable();
        for (i, row) in rows.into_iter().enumerate() {
            if keep.peek() == Some(&i) {
                keep.next();
                fresh.push(row);
            }
        }
        let parts = match self.store.backend {
            Backend::Sqlite => 1,
            Backend::Postgres => 2,
        };
        let per_part = fresh.len().div_ceil(parts).max(1);
        while !fresh.is_empty() {
            let rest = fresh.split_off(per_part.min(fresh.len()));
            let part = std::mem::replace(&mut fresh, rest);
            let store = self.store.clone();
            let id = self.id.clone();
            self.in_flight.push(tokio::spawn(async move {
                stage_rows(&store, &id, &part, now).await
            }));
        }
        Ok(repeats)
    }

    /// Waits for the batch in flight: the rows it refused.
    pub async fn settle(&mut self) -> Result<Vec<Repeat>> {
        let mut repeats = Vec::new();
        let mut failed = None;
        for task in std::mem::take(&mut self.in_flight) {
            match joined(task).await {
                Ok((staged, refused)) => {
                    self.staged += staged;
                    repeats.extend(refused);
                }
                Err(e) => failed = failed.or(Some(e)),
            }
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(repeats),
        }
    }

    /// Moves every staged row into the campaign's contacts (in line order), in one
    /// transaction; the staging rows are deleted afterwards, apart (a few thousand per
    /// statement, so the store's writers are not held up; what a stop leaves is purged a day
    /// later). Call [`StagedImport::settle`] first: a batch still in flight is refused.
    pub async fn commit(mut self, now: Millis) -> Result<(ImportCommit, Cleanup)> {
        if !self.in_flight.is_empty() {
            return Err(super::StoreError::Invalid(
                "an import was committed with a batch still being staged".into(),
            ));
        }
        // On PostgreSQL the campaign's phones are skipped by an anti-join (far cheaper than
        // a conflict clause per row); should a contact with one of the phones be added
        // meanwhile, the statement fails whole and runs again with the conflict clause.
        // SQLite's conflict clause is cheap, and its anti-join would sort in memory.
        let anti_join = self.store.backend == Backend::Postgres;
        let inserted = match self.insert_staged(now, !anti_join).await {
            Err(e)
                if e.as_database_error()
                    .is_some_and(|d| d.is_unique_violation()) =>
            {
                self.insert_staged(now, true).await?
            }
            other => other?,
        };
        self.finished = true;
        let store = self.store.clone();
        let id = std::mem::take(&mut self.id);
        let cleanup = Cleanup(tokio::spawn(async move {
            if let Err(e) = delete_staged(&store, &id).await {
                tracing::warn!(error = %e, "staged import rows not deleted (purged later)");
            }
        }));
        Ok((
            ImportCommit {
                inserted,
                duplicates: self.staged.saturating_sub(inserted),
            },
            cleanup,
        ))
    }

    /// The staged rows into the campaign's contacts, in line order, but for the phones the
    /// campaign has: skipped by a conflict clause, or else by an anti-join.
    async fn insert_staged(
        &self,
        now: Millis,
        on_conflict: bool,
    ) -> std::result::Result<u64, sqlx::Error> {
        let skip = if on_conflict {
            ""
        } else {
            " AND NOT EXISTS (SELECT 1 FROM contacts c \
             WHERE c.campaign_id = {campaign} AND c.phone = s.phone)"
        }
        .replace("{campaign}", &self.campaign_id.to_string());
        let sql = format!(
            "INSERT INTO contacts (campaign_id, phone, name, comments, tags, timezone, status, \
             next_attempt_at, created_at, updated_at) \
             SELECT {campaign}, s.phone, s.name, s.comments, s.tags, s.timezone, s.status, \
             CAST(NULL AS BIGINT), {now}, {now} FROM contact_imports s \
             WHERE s.import_id = $1{skip} ORDER BY s.line{conflict}",
            campaign = self.campaign_id,
            conflict = if on_conflict {
                " ON CONFLICT (campaign_id, phone) DO NOTHING"
            } else {
                ""
            },
        );
        Ok(sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(self.id.clone())
            .execute(&self.store.pool)
            .await?
            .rows_affected())
    }

    /// Deletes what was staged: the campaign is left as it was.
    pub async fn abort(mut self) -> Result<()> {
        self.finished = true;
        for task in std::mem::take(&mut self.in_flight) {
            // Whatever it did is deleted below.
            let _ = task.await;
        }
        delete_staged(&self.store, &self.id).await
    }
}

/// A staging task's result (a task that panicked or was cancelled is a store error).
async fn joined(task: tokio::task::JoinHandle<Staged>) -> Staged {
    task.await
        .map_err(|e| super::StoreError::Invalid(format!("an import's staging task failed: {e}")))?
}

/// Rows of one batch (no phone twice) into the staging table: rows staged, and the rows
/// refused as repeats of a phone an earlier batch staged (with its line). The statement
/// counts the rows it wrote; only when some are missing are they looked up.
async fn stage_rows(store: &Store, id: &str, rows: &[(u64, NewContact)], now: Millis) -> Staged {
    let mut staged = 0u64;
    let mut repeated = Vec::new();
    for chunk in rows.chunks(STAGE_CHUNK) {
        let fresh: Vec<&(u64, NewContact)> = chunk.iter().collect();
        // Rows of an earlier batch with the same phone are rare: the plain statement is
        // tried first (a unique key checked without a conflict clause is much cheaper on
        // PostgreSQL) and, when it meets one (nothing written), the batch is written again
        // skipping them.
        let written = match write_batch(store, id, &fresh, now, false).await {
            Err(e)
                if e.as_database_error()
                    .is_some_and(|d| d.is_unique_violation()) =>
            {
                write_batch(store, id, &fresh, now, true).await?
            }
            other => other?,
        };
        staged += written;
        if written as usize == fresh.len() {
            continue;
        }
        // Some phones were staged by an earlier batch: which, and on which line.
        let mut sql = Sql::default();
        let import = sql.arg(Arg::Text(id.to_string()));
        let phones = in_list(
            &mut sql,
            fresh.iter().map(|(_, c)| Arg::Text(c.phone.clone())),
        );
        sql.text = format!(
            "SELECT phone, line FROM contact_imports WHERE import_id = {import} AND phone IN ({phones})"
        );
        let mut staged_line: HashMap<String, i64> = HashMap::new();
        for row in sql.query(store.backend).fetch_all(&store.pool).await? {
            staged_line.insert(row.try_get("phone")?, row.try_get("line")?);
        }
        for (line, c) in fresh {
            let Some(&at) = staged_line.get(&c.phone) else {
                continue;
            };
            let at = u64::try_from(at).unwrap_or(0);
            if at != *line {
                repeated.push(Repeat {
                    line: *line,
                    first_line: at,
                    phone: c.phone.clone(),
                });
            }
        }
    }
    Ok((staged, repeated))
}

/// One INSERT of a batch into the staging table (skipping the phones already staged, or
/// failing on them): rows written.
async fn write_batch(
    store: &Store,
    id: &str,
    rows: &[&(u64, NewContact)],
    now: Millis,
    skip_staged: bool,
) -> std::result::Result<u64, sqlx::Error> {
    let on_conflict = if skip_staged {
        " ON CONFLICT (import_id, phone) DO NOTHING"
    } else {
        ""
    };
    let done = match store.backend {
        Backend::Sqlite => {
            let text = stage_sql(rows.len(), id, now) + on_conflict;
            let mut q = sqlx::query(sqlx::AssertSqlSafe(text));
            for (line, c) in rows {
                q = q
                    .bind(i64::try_from(*line).unwrap_or(i64::MAX))
                    .bind(c.phone.clone())
                    .bind(c.name.clone())
                    .bind(c.comments.clone())
                    .bind(tags_json(c))
                    .bind(c.timezone.clone())
                    .bind(c.status.as_str());
            }
            q.execute(&store.pool).await?
        }
        Backend::Postgres => {
            // One JSON parameter for the batch: PostgreSQL builds an expression per
            // placeholder on every run, so 7,000 of them cost more than the rows.
            let json: Vec<serde_json::Value> = rows
                .iter()
                .map(|(line, c)| {
                    serde_json::json!({
                        "line": line, "phone": c.phone, "name": c.name,
                        "comments": c.comments, "tags": tags_json(c),
                        "timezone": c.timezone, "status": c.status.as_str(),
                    })
                })
                .collect();
            sqlx::query(sqlx::AssertSqlSafe(format!("{PG_STAGE_SQL}{on_conflict}")))
                .bind(id.to_string())
                .bind(to_json(&json))
                .bind(now)
                .execute(&store.pool)
                .await?
        }
    };
    Ok(done.rows_affected())
}

impl Drop for StagedImport {
    /// An import dropped midway (an error, a client that went away) deletes its rows on
    /// the runtime, once its batch in flight is done; without a runtime, the stale-import
    /// purge removes them later.
    fn drop(&mut self) {
        if self.finished || (self.staged == 0 && self.in_flight.is_empty()) {
            return;
        }
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            let store = self.store.clone();
            let id = std::mem::take(&mut self.id);
            let in_flight = std::mem::take(&mut self.in_flight);
            handle.spawn(async move {
                for task in in_flight {
                    let _ = task.await;
                }
                if let Err(e) = delete_staged(&store, &id).await {
                    tracing::warn!(error = %e, "staged import rows not deleted (purged later)");
                }
            });
        }
    }
}

/// Deletes an import's staging rows, a few thousand per statement.
async fn delete_staged(store: &Store, id: &str) -> Result<()> {
    let sql = match store.backend {
        Backend::Sqlite => {
            "DELETE FROM contact_imports WHERE rowid IN \
             (SELECT rowid FROM contact_imports WHERE import_id = $1 LIMIT 5000)"
        }
        Backend::Postgres => {
            "DELETE FROM contact_imports WHERE ctid IN \
             (SELECT ctid FROM contact_imports WHERE import_id = $1 LIMIT 5000)"
        }
    };
    loop {
        let done = sqlx::query(sql)
            .bind(id.to_string())
            .execute(&store.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Ok(());
        }
    }
}

/// The staging statement of SQLite: `INSERT … VALUES (…), …` for `rows` rows of 7 placeholders (`?`: sqlx's SQLite driver looks numbered
/// ones up by name, which costs the square of their count).
fn stage_sql(rows: usize, import_id: &str, now: Millis) -> String {
    super::contacts::values_sql(
        Backend::Sqlite,
        "INSERT INTO contact_imports (import_id, line, phone, name, comments, tags, timezone, \
         status, created_at) VALUES ",
        rows,
        &format!("'{import_id}', "),
        &now.to_string(),
        "",
    )
}

/// The staging statement of PostgreSQL: the batch's rows as one JSON array ($2).
const PG_STAGE_SQL: &str = "INSERT INTO contact_imports \
     (import_id, line, phone, name, comments, tags, timezone, status, created_at) \
     SELECT $1, line, phone, name, comments, tags, timezone, status, $3 \
     FROM json_to_recordset(CAST($2 AS JSON)) AS r(line BIGINT, phone TEXT, name TEXT, \
     comments TEXT, tags TEXT, timezone TEXT, status TEXT)";

/// A contact's tags as stored (a JSON array).
fn tags_json(c: &NewContact) -> String {
    if c.tags.is_empty() {
        "[]".to_string()
    } else {
        to_json(&c.tags)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stage_sql_has_a_row_of_placeholders_per_contact() {
        assert_eq!(
            stage_sql(2, "ab", 9).split(" VALUES ").nth(1).unwrap(),
            "('ab', ?, ?, ?, ?, ?, ?, ?, 9), ('ab', ?, ?, ?, ?, ?, ?, ?, 9)"
        );
    }
}
