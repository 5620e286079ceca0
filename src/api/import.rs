//! CSV contact import, streamed: the request body (`text/csv`, or the file part of a
//! `multipart/form-data` upload) goes chunk by chunk into the sans-IO
//! [`crate::contacts::Importer`], and each batch of accepted rows is staged in the store
//! as it fills ([`crate::store::imports`]). Nothing holds the whole file: memory stays at
//! one line (capped by the importer) plus one batch, whatever the upload's size; duplicate
//! numbers are found by the store's unique indexes, not by a set in memory.
//!
//! The body may be at most [`super::ApiLimits::import_max_bytes`] (`http.import_max_bytes`):
//! a larger `Content-Length` is refused before anything is read, a longer stream as soon as
//! it passes the limit — 413 naming the limit.
//!
//! All or nothing: the staged rows become contacts in one transaction once the whole file
//! is read. Over the limit, a whole-file problem (empty, header only, no phone column,
//! UTF-16, 400), an upload that breaks off, or a store error: nothing is imported. A row is
//! accepted whole or refused whole, with its line, value and reason; a phone repeated in
//! the file is refused as a duplicate of its first line; a phone already in the campaign
//! is counted as a duplicate and left as it was.
//!
//! [`ContactImport`] is that flow, whatever the bytes come from: `outdial contacts import`
//! drives it with a file (without the HTTP size limit).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{FromRequest, Multipart, Request, State};
use axum::http::{header, StatusCode};
use axum::Json;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::auth::Caller;
use super::campaigns::{load, record_event};
use super::error::{ApiError, ApiPath, ApiQuery, ApiResult, ErrorBody};
use super::AppState;
use crate::campaign::model::{ContactStatus, Millis};
use crate::contacts::{ImportOptions, ImportRow, Importer, RowError};
use crate::store::imports::{Cleanup, Repeat, StagedImport};
use crate::store::{NewContact, Store};

/// Row errors returned (the count covers them all).
pub const MAX_ERRORS_SHOWN: usize = 1000;

#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ImportQuery {
    /// ISO 3166 alpha-2 for numbers without a `+` (default: the campaign's).
    pub default_country: Option<String>,
}

/// One refused row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ImportRowError {
    /// 1-based line where the row starts.
    pub line: u64,
    /// The offending cell, or the start of the line.
    pub value: String,
    pub reason: String,
}

impl From<RowError> for ImportRowError {
    fn from(e: RowError) -> Self {
        ImportRowError {
            line: e.line,
            value: e.value,
            reason: e.reason,
        }
    }
}

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ImportResult {
    /// Contacts added to the campaign.
    pub inserted: u64,
    /// Accepted rows whose phone was already in the campaign (left as they were).
    pub duplicates: u64,
    /// Refused rows, in file order (the first 1000).
    pub errors: Vec<ImportRowError>,
    /// All refused rows.
    pub error_count: u64,
    /// Data rows read (header and blank lines not counted).
    pub rows: u64,
    /// Lines read.
    pub lines: u64,
    pub has_header: bool,
    /// The header as written, when there is one.
    pub columns: Vec<String>,
    /// The delimiter found on the first line.
    pub delimiter: Option<String>,
    pub warnings: Vec<String>,
}

/// One CSV import from bytes to contacts, all or nothing: chunks go into the sans-IO
/// [`Importer`], each batch of accepted rows is checked ([`NewContact::validate`]) and
/// staged ([`StagedImport`]), and [`ContactImport::finish`] turns the staged rows into
/// contacts in one transaction. The one import flow: the HTTP route streams the request
/// body into it, `outdial contacts import` a file.
pub struct ContactImport {
    importer: Importer,
    staged: StagedImport,
    now: Millis,
    /// Rows the importer accepted but the store's rules refuse, or that repeat an earlier
    /// line.
    refused: Vec<ImportRowError>,
    refused_count: u64,
}

impl ContactImport {
    /// Starts an import into campaign `campaign_id` (404 when it does not exist; the
    /// caller checks whose it is), reading numbers without a `+` as `country`'s (400 on
    /// `default_country` when it is not a country).
    pub async fn begin(
        store: &Store,
        campaign_id: i64,
        country: String,
        now: Millis,
    ) -> ApiResult<ContactImport> {
        let importer = Importer::new(ImportOptions {
            max_errors: MAX_ERRORS_SHOWN,
            ..ImportOptions::new(country)
        })
        .map_err(|e| {
            let message = e.to_string();
            let reason = message
                .strip_prefix("default_country: ")
                .unwrap_or(&message)
                .to_string();
            ApiError::invalid("default_country", reason)
        })?;
        Ok(ContactImport {
            importer,
            staged: store.begin_import(campaign_id).await?,
            now,
            refused: Vec::new(),
            refused_count: 0,
        })
    }

    /// Rows staged so far (accepted, not repeating an earlier line).
    pub fn staged(&self) -> u64 {
        self.staged.staged()
    }

    /// Feeds one chunk of the file and stages the batches that filled.
    pub async fn feed(&mut self, chunk: &[u8]) -> ApiResult<()> {
        self.importer.feed(chunk);
        while let Some(batch) = self.importer.take_batch() {
            self.stage(batch).await?;
        }
        Ok(())
    }

    /// The end of the file: stages the last rows and commits them all, or — on a
    /// whole-file problem (400 `invalid_csv`) or a store error — deletes what was staged
    /// and imports nothing. The staging rows of a committed import are deleted by the
    /// returned [`Cleanup`], on its own.
    pub async fn finish(mut self, now: Millis) -> ApiResult<(ImportResult, Cleanup)> {
        self.importer.finish();
        while let Some(batch) = self.importer.take_batch() {
            if let Err(e) = self.stage(batch).await {
                self.abort().await;
                return Err(e);
            }
        }
        match self.staged.settle().await {
            Ok(repeats) => self.refuse_repeats(repeats),
            Err(e) => {
                self.abort().await;
                return Err(e.into());
            }
        }
        let ContactImport {
            importer,
            staged,
            refused,
            refused_count,
            ..
        } = self;
        let report = importer.into_report();
        if let Some(problem) = report.file_error {
            if let Err(abort) = staged.abort().await {
                tracing::warn!(error = %abort, "staged import rows not deleted (purged later)");
            }
            return Err(
                ApiError::new(StatusCode::BAD_REQUEST, "invalid_csv", problem.to_string())
                    .with_field("file"),
            );
        }
        let (done, cleanup) = staged.commit(now).await?;
        let mut errors: Vec<ImportRowError> = report
            .errors
            .into_iter()
            .map(ImportRowError::from)
            .collect();
        errors.extend(refused);
        errors.sort_by_key(|e| e.line);
        errors.truncate(MAX_ERRORS_SHOWN);
        let result = ImportResult {
            inserted: done.inserted,
            duplicates: done.duplicates,
            errors,
            error_count: report.rejected + refused_count,
            rows: report.rows,
            lines: report.lines,
            has_header: report.has_header,
            columns: report.columns,
            delimiter: report.delimiter.map(String::from),
            warnings: report.warnings,
        };
        Ok((result, cleanup))
    }

    /// Deletes what was staged: the campaign is left as it was.
    pub async fn abort(self) {
        if let Err(e) = self.staged.abort().await {
            tracing::warn!(error = %e, "staged import rows not deleted (purged later)");
        }
    }

    fn refuse(&mut self, line: u64, value: &str, reason: String) {
        self.refused_count += 1;
        if self.refused.len() < MAX_ERRORS_SHOWN {
            self.refused.push(ImportRowError {
                line,
                value: value.to_string(),
                reason,
            });
        }
    }

    async fn stage(&mut self, batch: Vec<ImportRow>) -> ApiResult<()> {
        let mut rows = Vec::with_capacity(batch.len());
        for row in batch {
            let contact = NewContact {
                phone: row.phone,
                name: row.name,
                comments: row.comments,
                tags: row.tags,
                timezone: row.timezone,
                status: row.status.unwrap_or(ContactStatus::Pending),
                next_attempt_at: None,
            };
            match contact.validate() {
                Ok(()) => rows.push((row.line, contact)),
                Err(e) => self.refuse(row.line, &contact.phone, e.to_string()),
            }
        }
        if rows.is_empty() {
            return Ok(());
        }
        let repeats = self.staged.stage(rows, self.now).await?;
        self.refuse_repeats(repeats);
        Ok(())
    }

    fn refuse_repeats(&mut self, repeats: Vec<Repeat>) {
        for r in repeats {
            self.refuse(
                r.line,
                &r.phone,
                format!("duplicate of line {}", r.first_line),
            );
        }
    }
}

/// 413 naming the limit.
fn over_limit(limit: u64) -> ApiError {
    ApiError::too_large(format!(
        "the CSV upload is larger than the import limit of {limit} bytes ({:.1} MiB, \
         http.import_max_bytes); nothing was imported",
        limit as f64 / (1024.0 * 1024.0)
    ))
}

/// The request with its body cut off (an error) past `limit` bytes; the flag tells that
/// the limit, not the client, ended it.
fn capped(request: Request, limit: u64) -> (Request, Arc<AtomicBool>) {
    let over = Arc::new(AtomicBool::new(false));
    let flag = over.clone();
    let (parts, body) = request.into_parts();
    let mut seen = 0u64;
    let stream = body.into_data_stream().map(move |chunk| {
        let chunk = chunk?;
        seen = seen.saturating_add(chunk.len() as u64);
        if seen > limit {
            flag.store(true, Ordering::Relaxed);
            return Err(axum::Error::new(std::io::Error::other(
                "the upload is over the import limit",
            )));
        }
        Ok(chunk)
    });
    (Request::from_parts(parts, Body::from_stream(stream)), over)
}

fn is_multipart(content_type: &str) -> bool {
    content_type.starts_with("multipart/form-data")
}

fn is_csv(content_type: &str) -> bool {
    matches!(
        content_type,
        "text/csv"
            | "application/csv"
            | "text/plain"
            | "application/octet-stream"
            | "application/vnd.ms-excel"
            | "text/comma-separated-values"
    )
}

/// Imports contacts from a CSV file: the guide's header-less `phone,name,comments`, or a
/// header row in any column order (phone, name, first_name, last_name, comments, tags,
/// timezone, status). Send the file as the body (`Content-Type: text/csv`) or as the file
/// part of `multipart/form-data`.
#[utoipa::path(
    post,
    path = "/v1/campaigns/{id}/contacts/import",
    tag = "contacts",
    params(("id" = i64, Path, description = "Campaign id"), ImportQuery),
    request_body(
        description = "The CSV file (text/csv), or multipart/form-data with a `file` part",
        content(
            (String = "text/csv", example = "12025550101,John Doe,Google Ads\n12025550102,Jane Smith,Website visitor\n"),
            (String = "multipart/form-data"),
        ),
    ),
    responses(
        (status = 200, description = "Imported (row errors listed)", body = ImportResult),
        (status = 400, description = "The file cannot be read at all (empty, no phone column, UTF-16) or a bad parameter", body = ErrorBody),
        (status = 401, description = "No valid credentials", body = ErrorBody),
        (status = 404, description = "No such campaign", body = ErrorBody),
        (status = 413, description = "Larger than the import limit (named in the message); nothing imported", body = ErrorBody),
        (status = 415, description = "Neither text/csv nor multipart/form-data", body = ErrorBody),
    )
)]
pub async fn import_contacts(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
    ApiQuery(query): ApiQuery<ImportQuery>,
    request: Request,
) -> ApiResult<(StatusCode, Json<ImportResult>)> {
    // Whose campaign first: another account's answers 404 whatever the request holds.
    let campaign = load(&state, &caller, id).await?;
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let multipart = is_multipart(&content_type);
    if !multipart && !is_csv(&content_type) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the CSV file as the body (Content-Type: text/csv) or as multipart/form-data",
        ));
    }
    let limit = state.limits.import_max_bytes;
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(over_limit(limit));
    }
    let country = query
        .default_country
        .unwrap_or_else(|| campaign.settings.default_country.clone());
    let began = std::time::Instant::now();
    let mut import = ContactImport::begin(&state.store, id, country, state.now()).await?;
    let (request, over) = capped(request, limit);
    let read = if multipart {
        read_multipart(request, &state, &mut import).await
    } else {
        read_body(request, &mut import).await
    };
    if let Err(e) = read {
        import.abort().await;
        if over.load(Ordering::Relaxed) {
            return Err(over_limit(limit));
        }
        return Err(ApiError {
            message: format!("{} (nothing was imported)", e.message),
            ..e
        });
    }
    let read_ms = began.elapsed().as_millis() as u64;
    // The staging rows are deleted after the answer.
    let (result, _cleanup) = import.finish(state.now()).await?;
    let total_ms = began.elapsed().as_millis() as u64;
    record_event(
        &state,
        Some(id),
        "contacts.import",
        serde_json::json!({
            "inserted": result.inserted,
            "duplicates": result.duplicates,
            "errors": result.error_count,
        }),
    )
    .await;
    if result.inserted > 0 {
        state.wake_engine();
    }
    tracing::info!(
        campaign = id,
        inserted = result.inserted,
        duplicates = result.duplicates,
        errors = result.error_count,
        read_ms,
        commit_ms = total_ms.saturating_sub(read_ms),
        "contacts imported"
    );
    Ok((StatusCode::OK, Json(result)))
}

/// Streams a raw body into the importer.
async fn read_body(request: Request, import: &mut ContactImport) -> ApiResult<()> {
    let mut stream = request.into_body().into_data_stream();
    let mut bytes = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            ApiError::bad_request(format!("the upload broke off after {bytes} bytes: {e}"))
        })?;
        bytes += chunk.len() as u64;
        import.feed(&chunk).await?;
    }
    Ok(())
}

/// Streams the file part (named `file`, or the first part with a file name, or the first
/// part) of a multipart upload into the importer.
async fn read_multipart(
    request: Request,
    state: &AppState,
    import: &mut ContactImport,
) -> ApiResult<()> {
    let mut multipart = Multipart::from_request(request, state)
        .await
        .map_err(|e| ApiError::bad_request(format!("multipart body: {}", e.body_text())))?;
    let bad = |e: axum::extract::multipart::MultipartError| {
        ApiError::bad_request(format!("multipart body: {}", e.body_text()))
    };
    while let Some(mut field) = multipart.next_field().await.map_err(bad)? {
        let is_file = field.name() == Some("file") || field.file_name().is_some();
        if !is_file {
            continue;
        }
        while let Some(chunk) = field.chunk().await.map_err(bad)? {
            import.feed(&chunk).await?;
        }
        return Ok(());
    }
    Err(ApiError::invalid(
        "file",
        "the multipart body has no file part (name it \"file\")",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types() {
        assert!(is_csv("text/csv"));
        assert!(is_csv("text/plain"));
        assert!(!is_csv("application/json"));
        assert!(is_multipart("multipart/form-data"));
    }
}
