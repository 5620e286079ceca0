//! Contact exports (guide 2: Export Options and Export History): a job is queued, a tokio
//! task writes the file (XLSX, CSV with `,` or CSV with `;`) into `exports_dir` page by page,
//! and the history lists every job with its status; a finished file is downloaded with the
//! right name and type. Text cells that a spreadsheet would run (`=`, `+`, `-`, `@` …) are
//! escaped by the writer ([`crate::contacts::export`]).
//!
//! Every row carries the contact's metrics and its primary-goal status (empty while no
//! conversation of it was analysed).
//!
//! Scope: `all` (the entire campaign), `filtered` (the contact filters of the list) or
//! `selection` (ids). The file is written under a temporary name and renamed when
//! complete, so a download never sees half a file. Writing runs on the blocking pool. A
//! finished file's bytes are kept in the store as well: every node sharing the store serves
//! the download (from its own file where it wrote it, else from the store).

use std::path::{Path, PathBuf};

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::auth::Caller;
use super::campaigns::load;
use super::contacts::{contact_filter, goal_statuses, MAX_IDS};
use super::error::{ApiError, ApiJson, ApiPath, ApiQuery, ApiResult, ErrorBody};
use super::{AppState, PageQuery, Paged};
use crate::campaign::goals::GoalOutcome;
use crate::campaign::model::{Contact, Millis};
use crate::contacts::{Cell, ExportFormat as FileFormat, Exporter};
use crate::store::{
    ContactFilter, ExportFormat, ExportJob, ExportScope, ExportStatus, ExportUpdate, NewExport,
    Page, MAX_PAGE,
};

/// Contacts read per store query while exporting.
const EXPORT_PAGE: i64 = MAX_PAGE;

/// The columns of a contact export.
pub const COLUMNS: [&str; 15] = [
    "id",
    "phone",
    "name",
    "comments",
    "tags",
    "timezone",
    "status",
    "attempts",
    "retries",
    "last_outcome",
    "last_attempt_at",
    "next_attempt_at",
    "primary_goal_status",
    "created_at",
    "updated_at",
];

/// File format: `xlsx`, `csv_comma` or `csv_semicolon` (`csv` means comma).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ExportFormatWord {
    Xlsx,
    #[serde(alias = "csv")]
    CsvComma,
    CsvSemicolon,
}

impl From<ExportFormatWord> for ExportFormat {
    fn from(f: ExportFormatWord) -> Self {
        match f {
            ExportFormatWord::Xlsx => ExportFormat::Xlsx,
            ExportFormatWord::CsvComma => ExportFormat::CsvComma,
            ExportFormatWord::CsvSemicolon => ExportFormat::CsvSemicolon,
        }
    }
}

impl From<ExportFormat> for ExportFormatWord {
    fn from(f: ExportFormat) -> Self {
        match f {
            ExportFormat::Xlsx => ExportFormatWord::Xlsx,
            ExportFormat::CsvComma => ExportFormatWord::CsvComma,
            ExportFormat::CsvSemicolon => ExportFormatWord::CsvSemicolon,
        }
    }
}

fn file_format(f: ExportFormat) -> FileFormat {
    match f {
        ExportFormat::Xlsx => FileFormat::Xlsx,
        ExportFormat::CsvComma => FileFormat::CsvComma,
        ExportFormat::CsvSemicolon => FileFormat::CsvSemicolon,
    }
}

/// Which contacts: `all` (entire campaign), `filtered` or `selection`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ExportScopeWord {
    #[serde(alias = "campaign", alias = "entire")]
    All,
    Filtered,
    Selection,
}

impl From<ExportScopeWord> for ExportScope {
    fn from(s: ExportScopeWord) -> Self {
        match s {
            ExportScopeWord::All => ExportScope::Campaign,
            ExportScopeWord::Filtered => ExportScope::Filtered,
            ExportScopeWord::Selection => ExportScope::Selection,
        }
    }
}

impl From<ExportScope> for ExportScopeWord {
    fn from(s: ExportScope) -> Self {
        match s {
            ExportScope::Campaign => ExportScopeWord::All,
            ExportScope::Filtered => ExportScopeWord::Filtered,
            ExportScope::Selection => ExportScopeWord::Selection,
        }
    }
}

/// The contact filters of a `filtered` export (same words as the contact list).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ExportFilter {
    /// Comma-separated statuses, either guide's words.
    pub status: Option<String>,
    /// Comma-separated tags.
    pub tags: Option<String>,
    pub min_retries: Option<i64>,
    pub max_retries: Option<i64>,
    pub q: Option<String>,
    /// Comma-separated primary-goal statuses (achieved, partially_achieved, not_achieved,
    /// unknown).
    pub primary_goal_status: Option<String>,
}

impl ExportFilter {
    fn to_store(&self) -> ApiResult<ContactFilter> {
        contact_filter(
            self.status.as_deref(),
            self.tags.as_deref(),
            self.min_retries,
            self.max_retries,
            self.q.as_deref(),
        )
        .and_then(|mut filter| {
            filter.primary_goal_statuses = goal_statuses(self.primary_goal_status.as_deref())?;
            Ok(filter)
        })
        .map_err(|e| match &e.field {
            Some(f) => ApiError {
                message: format!("filter.{}", e.message),
                field: Some(format!("filter.{f}")),
                ..e
            },
            None => e,
        })
    }
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExportRequest {
    pub format: ExportFormatWord,
    #[serde(default = "default_scope")]
    pub scope: ExportScopeWord,
    /// For `filtered`.
    #[serde(default)]
    pub filter: ExportFilter,
    /// For `selection`.
    #[serde(default)]
    pub ids: Vec<i64>,
}

fn default_scope() -> ExportScopeWord {
    ExportScopeWord::All
}

/// An export job and where it is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ExportJobView {
    pub id: i64,
    pub campaign_id: i64,
    pub format: ExportFormatWord,
    /// How the history shows the format: `.xlsx`, `.csv (,)`, `.csv (;)`.
    pub format_label: String,
    pub scope: ExportScopeWord,
    /// queued, running, done or failed.
    pub status: String,
    pub row_count: i64,
    pub error: Option<String>,
    /// The file name a download gets.
    pub file_name: String,
    /// Where to download it once done.
    pub download_url: Option<String>,
    pub created_at: Millis,
    pub updated_at: Millis,
    pub finished_at: Option<Millis>,
}

fn file_name(job: &ExportJob) -> String {
    format!(
        "campaign-{}-contacts-{}.{}",
        job.campaign_id,
        job.id,
        job.format.extension()
    )
}

impl From<&ExportJob> for ExportJobView {
    fn from(job: &ExportJob) -> Self {
        ExportJobView {
            id: job.id,
            campaign_id: job.campaign_id,
            format: job.format.into(),
            format_label: file_format(job.format).label().to_string(),
            scope: job.scope.into(),
            status: job.status.as_str().to_string(),
            row_count: job.row_count,
            error: job.error.clone(),
            file_name: file_name(job),
            download_url: (job.status == ExportStatus::Done)
                .then(|| format!("/v1/exports/{}/download", job.id)),
            created_at: job.created_at,
            updated_at: job.updated_at,
            finished_at: job.finished_at,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExportListQuery {
    /// Only this campaign's exports.
    pub campaign_id: Option<i64>,
    pub limit: Option<i64>,
    pub offset: Option<i64>,
}

/// One export row.
fn row(c: &Contact, primary_goal_status: Option<GoalOutcome>) -> Vec<Cell> {
    vec![
        Cell::Int(c.id),
        Cell::Phone(c.phone.clone()),
        Cell::Text(c.name.clone()),
        Cell::Text(c.comments.clone()),
        Cell::Text(c.tags.join(";")),
        c.timezone.clone().map_or(Cell::Empty, Cell::Text),
        Cell::Text(c.status.as_str().to_string()),
        Cell::Int(c.attempts),
        Cell::Int(c.retries),
        c.last_outcome.clone().map_or(Cell::Empty, Cell::Text),
        c.last_attempt_at.map_or(Cell::Empty, Cell::Time),
        c.next_attempt_at.map_or(Cell::Empty, Cell::Time),
        primary_goal_status.map_or(Cell::Empty, |s| Cell::Text(s.as_str().to_string())),
        Cell::Time(c.created_at),
        Cell::Time(c.updated_at),
    ]
}

// ---------------------------------------------------------------------------------------
// The background job.

/// Writes the export of `job` into `dir`; returns the file and the rows written.
async fn write_export(
    state: &AppState,
    job: &ExportJob,
    filter: ContactFilter,
    dir: &Path,
) -> Result<(PathBuf, i64), String> {
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(|e| format!("cannot create the exports folder: {e}"))?;
    let final_path = dir.join(file_name(job));
    let temp_path = dir.join(format!(".{}.part", file_name(job)));
    let file = std::fs::File::create(&temp_path)
        .map_err(|e| format!("cannot create the export file: {e}"))?;
    let format = file_format(job.format);
    let mut exporter = tokio::task::spawn_blocking(move || {
        Exporter::new(format, &COLUMNS, std::io::BufWriter::new(file))
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| e.to_string())?;
    let mut offset = 0;
    let mut rows = 0i64;
    loop {
        let page = state
            .store
            .list_contacts(job.campaign_id, &filter, Page::new(EXPORT_PAGE, offset))
            .await
            .map_err(|e| e.to_string())?;
        let n = page.items.len() as i64;
        if n == 0 {
            break;
        }
        let ids: Vec<i64> = page.items.iter().map(|c| c.id).collect();
        let statuses = state
            .store
            .primary_goal_statuses(job.campaign_id, &ids)
            .await
            .map_err(|e| e.to_string())?;
        exporter = tokio::task::spawn_blocking(move || {
            for contact in &page.items {
                exporter.write_row(&row(contact, statuses.get(&contact.id).copied()))?;
            }
            Ok::<_, crate::contacts::ExportError>(exporter)
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
        rows += n;
        offset += n;
        if n < EXPORT_PAGE {
            break;
        }
    }
    tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let mut out = exporter.finish().map_err(|e| e.to_string())?;
        out.flush().map_err(|e| e.to_string())?;
        let file = out.into_inner().map_err(|e| e.to_string())?;
        file.sync_all().map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| e.to_string())??;
    tokio::fs::rename(&temp_path, &final_path)
        .await
        .map_err(|e| format!("cannot move the export file into place: {e}"))?;
    Ok((final_path, rows))
}

/// The job's task: running → done (with the file) or failed (with why).
async fn run_export(state: AppState, job: ExportJob, filter: ContactFilter) {
    let id = job.id;
    if let Err(e) = state
        .store
        .update_export(
            id,
            &ExportUpdate::status(ExportStatus::Running),
            state.now(),
        )
        .await
    {
        tracing::warn!(export = id, error = %e, "export job lost");
        return;
    }
    let dir = state.exports_dir.clone();
    let written = match write_export(&state, &job, filter, &dir).await {
        // The bytes go into the store too, so that every node sharing it can serve them.
        Ok((path, rows)) => match tokio::fs::read(&path).await {
            Ok(bytes) => Ok((path, rows, bytes)),
            Err(e) => Err(format!("cannot read back {}: {e}", path.display())),
        },
        Err(error) => Err(error),
    };
    let update = match written {
        Ok((path, rows, bytes)) => ExportUpdate {
            file_path: Some(path.to_string_lossy().into_owned()),
            row_count: Some(rows),
            content: Some(bytes),
            ..ExportUpdate::status(ExportStatus::Done)
        },
        Err(error) => {
            tracing::warn!(export = id, %error, "export failed");
            ExportUpdate {
                error: Some(error),
                ..ExportUpdate::status(ExportStatus::Failed)
            }
        }
    };
    if let Err(e) = state.store.update_export(id, &update, state.now()).await {
        tracing::warn!(export = id, error = %e, "export result not recorded");
    }
}

/// A file as a stream of 64 KiB chunks (ends after the first error).
pub(crate) fn file_chunks(
    file: tokio::fs::File,
) -> impl futures_util::Stream<Item = std::io::Result<axum::body::Bytes>> {
    futures_util::stream::unfold(Some(file), |file| async move {
        use tokio::io::AsyncReadExt;
        let mut file = file?;
        let mut buf = vec![0u8; 64 * 1024];
        match file.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(axum::body::Bytes::from(buf)), Some(file)))
            }
            Err(e) => Some((Err(e), None)),
        }
    })
}

/// Jobs this node's previous run left queued or running (and jobs that name no node) can
/// never finish: their task died with it. Marks them failed so the history does not show
/// them in progress forever; other nodes' jobs are left alone (a node found dead has its
/// jobs failed by the node that reconciles it). Called by [`super::serve`] before it
/// listens; returns how many.
pub async fn fail_interrupted_exports(state: &AppState) -> ApiResult<u64> {
    Ok(state
        .store
        .fail_exports_of_node(
            &state.node,
            true,
            crate::store::exports::INTERRUPTED_EXPORT,
            state.now(),
        )
        .await?)
}

/// The export job if its campaign is the caller's, else 404 (the same answer as a job that
/// does not exist).
async fn own_export(state: &AppState, caller: &Caller, id: i64) -> ApiResult<ExportJob> {
    let job = state.store.get_export(id).await?;
    let owner = match state.store.campaign_owner(job.campaign_id).await {
        Ok(owner) => owner,
        Err(crate::store::StoreError::NotFound(_)) => None,
        Err(e) => return Err(e.into()),
    };
    if owner != Some(caller.account_id) {
        return Err(crate::store::StoreError::NotFound(format!("export job {id}")).into());
    }
    Ok(job)
}

// ---------------------------------------------------------------------------------------
// Handlers.

/// Queues an export of the campaign's contacts; the job runs in the background.
#[utoipa::path(
    post,
    path = "/v1/campaigns/{id}/exports",
    tag = "exports",
    params(("id" = i64, Path, description = "Campaign id")),
    request_body = ExportRequest,
    responses(
        (status = 202, description = "Queued", body = ExportJobView),
        (status = 400, description = "A field is wrong (named in `field`)", body = ErrorBody),
        (status = 401, description = "No valid credentials", body = ErrorBody),
        (status = 404, description = "No such campaign", body = ErrorBody),
        (status = 429, description = "As many export jobs as the server runs at once are running (see Retry-After)", body = ErrorBody),
    )
)]
pub async fn create_export(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
    ApiJson(request): ApiJson<ExportRequest>,
) -> ApiResult<(StatusCode, Json<ExportJobView>)> {
    load(&state, &caller, id).await?;
    // A slot first: a job beyond the limit is refused before anything is stored.
    let Ok(slot) = state.export_slots.clone().try_acquire_owned() else {
        let limit = state.limits.max_export_jobs;
        return Err(ApiError::too_many_requests(
            format!(
                "{limit} export jobs are running, the most this server runs at once \
                 (http.max_export_jobs); try again when one has finished"
            ),
            5,
        ));
    };
    let filter = match request.scope {
        ExportScopeWord::All => ContactFilter::default(),
        ExportScopeWord::Filtered => request.filter.to_store()?,
        ExportScopeWord::Selection => {
            if request.ids.is_empty() {
                return Err(ApiError::invalid(
                    "ids",
                    "a selection needs at least one id",
                ));
            }
            if request.ids.len() > MAX_IDS {
                return Err(ApiError::invalid(
                    "ids",
                    format!("{} ids; at most {MAX_IDS}", request.ids.len()),
                ));
            }
            ContactFilter {
                ids: request.ids.clone(),
                ..ContactFilter::default()
            }
        }
    };
    let params = match request.scope {
        ExportScopeWord::All => serde_json::json!({}),
        ExportScopeWord::Filtered => serde_json::json!({ "filter": request.filter }),
        ExportScopeWord::Selection => serde_json::json!({ "ids": request.ids }),
    };
    let job = state
        .store
        .create_export(
            &NewExport {
                campaign_id: id,
                format: request.format.into(),
                scope: request.scope.into(),
                params,
                node: Some(state.node.clone()),
            },
            state.now(),
        )
        .await?;
    let view = ExportJobView::from(&job);
    tokio::spawn(async move {
        run_export(state.clone(), job, filter).await;
        drop(slot);
    });
    Ok((StatusCode::ACCEPTED, Json(view)))
}

/// The export history, newest first.
#[utoipa::path(
    get,
    path = "/v1/exports",
    tag = "exports",
    params(ExportListQuery),
    responses(
        (status = 200, description = "A page of export jobs", body = Paged<ExportJobView>),
        (status = 400, description = "A bad parameter", body = ErrorBody),
        (status = 401, description = "No valid credentials", body = ErrorBody),
    )
)]
pub async fn list_exports(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<ExportListQuery>,
) -> ApiResult<Json<Paged<ExportJobView>>> {
    let page = PageQuery {
        limit: query.limit,
        offset: query.offset,
    }
    .page()?;
    let found = state
        .store
        .list_account_exports(caller.account_id, query.campaign_id, page)
        .await?;
    let items = found.items.iter().map(ExportJobView::from).collect();
    Ok(Json(Paged::new(items, found.total, page)))
}

/// One export job.
#[utoipa::path(
    get,
    path = "/v1/exports/{id}",
    tag = "exports",
    params(("id" = i64, Path, description = "Export job id")),
    responses(
        (status = 200, description = "The job", body = ExportJobView),
        (status = 401, description = "No valid credentials", body = ErrorBody),
        (status = 404, description = "No such job", body = ErrorBody),
    )
)]
pub async fn get_export(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<ExportJobView>> {
    let job = own_export(&state, &caller, id).await?;
    Ok(Json(ExportJobView::from(&job)))
}

/// Downloads a finished export (409 while it is queued or running, or when it failed).
#[utoipa::path(
    get,
    path = "/v1/exports/{id}/download",
    tag = "exports",
    params(("id" = i64, Path, description = "Export job id")),
    responses(
        (status = 200, description = "The file", content(
            (Vec<u8> = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
            (String = "text/csv"),
        )),
        (status = 401, description = "No valid credentials", body = ErrorBody),
        (status = 404, description = "No such job, or its file is gone", body = ErrorBody),
        (status = 409, description = "Not done", body = ErrorBody),
    )
)]
pub async fn download_export(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Response> {
    let job = own_export(&state, &caller, id).await?;
    if job.status != ExportStatus::Done {
        return Err(ApiError::conflict(format!(
            "export {id} is {}{}",
            job.status,
            job.error
                .as_deref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        )));
    }
    // The file where this node wrote it; else (another node made it) the bytes the store
    // keeps.
    let local = match &job.file_path {
        Some(path) => tokio::fs::File::open(path).await.ok(),
        None => None,
    };
    let body = match local {
        Some(file) => Body::from_stream(file_chunks(file)),
        None => match state.store.export_content(id).await? {
            Some(bytes) => Body::from(bytes),
            None => {
                return Err(ApiError::not_found(format!(
                    "the file of export {id} is gone"
                )))
            }
        },
    };
    let format = file_format(job.format);
    let disposition = format!("attachment; filename=\"{}\"", file_name(&job));
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    if let Ok(value) = HeaderValue::from_str(&disposition) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    Ok(response)
}
