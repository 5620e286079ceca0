//! Export jobs (guide 2: Export & History): a campaign's contacts written as XLSX or CSV
//! (comma or semicolon) in the background. The job row tracks queued → running → done or
//! failed, the row count, the error, and the file: a path, or the bytes themselves
//! (`content`, read separately so lists stay small).

use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::Row;

use super::{
    conflict_on_constraint, get_json, get_word, to_json, where_clause, Arg, Page, Paged, Result,
    Sql, Store, StoreError,
};
use crate::campaign::model::Millis;

macro_rules! words {
    ($(#[$meta:meta])* $name:ident { $($variant:ident = $word:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name { $(#[serde(rename = $word)] $variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $word),+ }
            }

            pub fn parse(text: &str) -> Option<$name> {
                match text.trim().to_ascii_lowercase().as_str() {
                    $($word => Some($name::$variant),)+
                    _ => None,
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

words! {
    /// File format of an export.
    ExportFormat { CsvComma = "csv_comma", CsvSemicolon = "csv_semicolon", Xlsx = "xlsx" }
}

words! {
    /// Which contacts an export holds (details such as the ids or the filter go in
    /// [`ExportJob::params`]).
    ExportScope { Selection = "selection", Filtered = "filtered", Campaign = "campaign" }
}

words! {
    /// Where an export job is.
    ExportStatus { Queued = "queued", Running = "running", Done = "done", Failed = "failed" }
}

impl ExportFormat {
    /// The file name extension.
    pub fn extension(self) -> &'static str {
        match self {
            ExportFormat::Xlsx => "xlsx",
            ExportFormat::CsvComma | ExportFormat::CsvSemicolon => "csv",
        }
    }
}

/// What to export.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewExport {
    pub campaign_id: i64,
    pub format: ExportFormat,
    pub scope: ExportScope,
    /// The selection's ids or the filter, as the API received them.
    #[serde(default)]
    pub params: serde_json::Value,
    /// The node that runs the job (its id); `None` for jobs made outside `serve`.
    #[serde(default)]
    pub node: Option<String>,
}

/// What an export that can never finish says (its node stopped or died while writing it).
pub const INTERRUPTED_EXPORT: &str =
    "interrupted: the server stopped before the export was written";

/// A stored export job (without the file's bytes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExportJob {
    pub id: i64,
    pub campaign_id: i64,
    pub format: ExportFormat,
    pub scope: ExportScope,
    pub params: serde_json::Value,
    pub status: ExportStatus,
    pub file_path: Option<String>,
    /// True when the bytes are stored in the job (see [`Store::export_content`]).
    pub has_content: bool,
    pub row_count: i64,
    pub error: Option<String>,
    pub created_at: Millis,
    pub updated_at: Millis,
    pub finished_at: Option<Millis>,
}

/// A progress report from the exporter; `None` fields keep their stored value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExportUpdate {
    pub status: ExportStatus,
    pub file_path: Option<String>,
    pub row_count: Option<i64>,
    pub error: Option<String>,
    /// The file's bytes, when kept in the database.
    #[serde(skip)]
    pub content: Option<Vec<u8>>,
}

impl ExportUpdate {
    pub fn status(status: ExportStatus) -> ExportUpdate {
        ExportUpdate {
            status,
            file_path: None,
            row_count: None,
            error: None,
            content: None,
        }
    }
}

const COLUMNS: &str = "id, campaign_id, format, scope, params, status, file_path, \
    CASE WHEN content IS NULL THEN 0 ELSE 1 END AS has_content, row_count, error, created_at, \
    updated_at, finished_at";

fn job_from(row: &AnyRow) -> Result<ExportJob> {
    Ok(ExportJob {
        id: row.try_get("id")?,
        campaign_id: row.try_get("campaign_id")?,
        format: get_word(row, "format", ExportFormat::parse)?,
        scope: get_word(row, "scope", ExportScope::parse)?,
        params: get_json(row, "params")?,
        status: get_word(row, "status", ExportStatus::parse)?,
        file_path: row.try_get("file_path")?,
        has_content: row.try_get::<i64, _>("has_content")? != 0,
        row_count: row.try_get("row_count")?,
        error: row.try_get("error")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        finished_at: row.try_get("finished_at")?,
    })
}

impl Store {
    /// Queues an export job.
    pub async fn create_export(&self, export: &NewExport, now: Millis) -> Result<ExportJob> {
        let sql = format!(
            "INSERT INTO export_jobs (campaign_id, format, scope, params, status, created_at, \
             updated_at, node) VALUES ($1, $2, $3, $4, 'queued', $5, $5, $6) RETURNING {COLUMNS}"
        );
        let params = if export.params.is_null() {
            "{}".to_string()
        } else {
            to_json(&export.params)
        };
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(export.campaign_id)
            .bind(export.format.as_str())
            .bind(export.scope.as_str())
            .bind(params)
            .bind(now)
            .bind(export.node.clone())
            .fetch_one(&self.pool)
            .await
            .map_err(|e| {
                conflict_on_constraint(e, || format!("campaign {} not found", export.campaign_id))
            })?;
        job_from(&row)
    }

    /// Records progress; a job that is done or failed gets `finished_at = now`.
    pub async fn update_export(
        &self,
        id: i64,
        update: &ExportUpdate,
        now: Millis,
    ) -> Result<ExportJob> {
        let finished = matches!(update.status, ExportStatus::Done | ExportStatus::Failed);
        let sql = format!(
            "UPDATE export_jobs SET status = $2, file_path = COALESCE($3, file_path), \
             row_count = COALESCE($4, row_count), error = COALESCE($5, error), \
             content = COALESCE($6, content), updated_at = $7, \
             finished_at = {} WHERE id = $1 RETURNING {COLUMNS}",
            if finished { "$7" } else { "finished_at" }
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .bind(update.status.as_str())
            .bind(update.file_path.clone())
            .bind(update.row_count)
            .bind(update.error.clone())
            .bind(update.content.clone())
            .bind(now)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("export job {id}")))?;
        job_from(&row)
    }

    /// Marks failed, with `error`, the jobs still queued or running on `node` — this node at
    /// its start (their tasks died with its previous run), or a node found dead — and, with
    /// `unowned`, the jobs that name no node. Returns how many.
    pub async fn fail_exports_of_node(
        &self,
        node: &str,
        unowned: bool,
        error: &str,
        now: Millis,
    ) -> Result<u64> {
        let done = sqlx::query(
            "UPDATE export_jobs SET status = 'failed', error = $2, updated_at = $3, \
             finished_at = $3 WHERE status IN ('queued', 'running') \
             AND (node = $1 OR ($4 = 1 AND node IS NULL))",
        )
        .bind(node.to_string())
        .bind(error.to_string())
        .bind(now)
        .bind(i64::from(unowned))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    pub async fn get_export(&self, id: i64) -> Result<ExportJob> {
        let sql = format!("SELECT {COLUMNS} FROM export_jobs WHERE id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("export job {id}")))?;
        job_from(&row)
    }

    /// The file's bytes when stored in the job (`None`: kept as a file, or not yet made).
    pub async fn export_content(&self, id: i64) -> Result<Option<Vec<u8>>> {
        let row = sqlx::query("SELECT content FROM export_jobs WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("export job {id}")))?;
        Ok(row.try_get("content")?)
    }

    /// A campaign's export history, newest first (`None`: every campaign's).
    pub async fn list_exports(
        &self,
        campaign_id: Option<i64>,
        page: Page,
    ) -> Result<Paged<ExportJob>> {
        let page = page.clamped();
        let (wc, total) = match campaign_id {
            Some(c) => {
                let n: i64 =
                    sqlx::query("SELECT COUNT(*) AS n FROM export_jobs WHERE campaign_id = $1")
                        .bind(c)
                        .fetch_one(&self.pool)
                        .await?
                        .try_get("n")?;
                (" WHERE campaign_id = $3", n)
            }
            None => {
                let n: i64 = sqlx::query("SELECT COUNT(*) AS n FROM export_jobs")
                    .fetch_one(&self.pool)
                    .await?
                    .try_get("n")?;
                (" WHERE $3 = $3", n)
            }
        };
        let sql =
            format!("SELECT {COLUMNS} FROM export_jobs{wc} ORDER BY id DESC LIMIT $1 OFFSET $2");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(page.limit)
            .bind(page.offset)
            .bind(campaign_id.unwrap_or(0))
            .fetch_all(&self.pool)
            .await?;
        let items = rows.iter().map(job_from).collect::<Result<Vec<_>>>()?;
        Ok(Paged { items, total })
    }

    /// The account's export jobs (of its campaigns), newest first, optionally of one
    /// campaign.
    pub async fn list_account_exports(
        &self,
        account_id: i64,
        campaign_id: Option<i64>,
        page: Page,
    ) -> Result<Paged<ExportJob>> {
        let page = page.clamped();
        let mut sql = Sql::default();
        let account = sql.arg(Arg::I64(account_id));
        let mut conds = vec![format!(
            "campaign_id IN (SELECT id FROM campaigns WHERE account_id = {account})"
        )];
        if let Some(c) = campaign_id {
            conds.push(format!("campaign_id = {}", sql.arg(Arg::I64(c))));
        }
        let wc = where_clause(&conds);
        let count = Sql {
            text: format!("SELECT COUNT(*) AS n FROM export_jobs{wc}"),
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
            "SELECT {COLUMNS} FROM export_jobs{wc} ORDER BY id DESC LIMIT {limit} OFFSET {offset}"
        );
        let rows = sql.query(self.backend).fetch_all(&self.pool).await?;
        let items = rows.iter().map(job_from).collect::<Result<Vec<_>>>()?;
        Ok(Paged { items, total })
    }
}
