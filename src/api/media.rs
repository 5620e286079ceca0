//! Media files and recordings: each account uploads, lists and deletes the WAV files its
//! campaigns play (`POST /v1/media`, `GET /v1/media`, `DELETE /v1/media/{name}`), and
//! downloads what an attempt recorded (`GET /v1/attempts/{id}/recording`).
//!
//! Uploads are `multipart/form-data` with a `file` part (its file name is the media name,
//! or a `name` part gives it), at most [`MAX_UPLOAD_BYTES`], and must load with the
//! project's WAV loader; they land in the caller's own folder of the media directory (see
//! [`crate::config::media`]). Shared files (put in the directory by an operator) are listed
//! but cannot be deleted through the API.
//!
//! What it must NOT do: take a server path from a request, show the server path of a
//! file, serve another account's recording, or do file I/O on the async workers (it runs in
//! `spawn_blocking` or through tokio's file API).

use axum::body::Body;
use axum::extract::{FromRequest, Multipart, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::Caller;
use super::error::{ApiError, ApiPath, ApiResult, ErrorBody};
use super::AppState;
use crate::config::media::{self, MediaFile, MediaFileError, MAX_UPLOAD_BYTES};

/// The body limit of an upload: the file plus room for the multipart framing.
pub const UPLOAD_BODY_LIMIT: usize = MAX_UPLOAD_BYTES + 64 * 1024;

/// A media file as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MediaFileView {
    /// What campaigns put in `play_message`, `voicemail_message` or a step's `file`.
    pub name: String,
    pub size: u64,
    /// A file of the whole server (read-only here), not one of the account's uploads.
    pub shared: bool,
}

impl From<MediaFile> for MediaFileView {
    fn from(f: MediaFile) -> Self {
        MediaFileView {
            name: f.name,
            size: f.size,
            shared: f.shared,
        }
    }
}

/// The media files the account can use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MediaList {
    pub items: Vec<MediaFileView>,
}

fn media_error(field: &str, e: MediaFileError) -> ApiError {
    match e {
        MediaFileError::NotFound { .. } => ApiError::not_found(e.to_string()),
        MediaFileError::TooLarge { .. } => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            e.to_string(),
        ),
        MediaFileError::Directory { .. } => {
            // The detail names server paths: logged, not sent.
            tracing::error!(error = %e, "media directory");
            ApiError::internal("the media directory failed; see the server log")
        }
        other => ApiError::invalid(field, other),
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, MediaFileError> + Send + 'static,
    field: &'static str,
) -> ApiResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(format!("media task failed: {e}")))?
        .map_err(|e| media_error(field, e))
}

/// Uploads a WAV into the account's media folder (replacing its own file of that name).
#[utoipa::path(
    post,
    path = "/v1/media",
    tag = "media",
    request_body(
        description = "multipart/form-data: a `file` part (the WAV) and optionally a `name` part",
        content((String = "multipart/form-data")),
    ),
    responses(
        (status = 201, description = "Stored", body = MediaFileView),
        (status = 400, description = "Not a WAV, or a bad name (named in `field`)", body = ErrorBody),
        (status = 401, description = "No valid credentials", body = ErrorBody),
        (status = 413, description = "Over the size limit", body = ErrorBody),
        (status = 415, description = "Not multipart/form-data", body = ErrorBody),
    )
)]
pub async fn upload_media(
    State(state): State<AppState>,
    caller: Caller,
    request: Request,
) -> ApiResult<(StatusCode, Json<MediaFileView>)> {
    let is_multipart = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim_start()
                .to_ascii_lowercase()
                .starts_with("multipart/form-data")
        });
    if !is_multipart {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the WAV as multipart/form-data with a `file` part",
        ));
    }
    let mut multipart = Multipart::from_request(request, &state)
        .await
        .map_err(|e| ApiError::bad_request(format!("multipart: {}", e.body_text())))?;
    let mut name: Option<String> = None;
    let mut file_name: Option<String> = None;
    let mut bytes: Option<Vec<u8>> = None;
    while let Some(mut field) = multipart.next_field().await.map_err(multipart_error)? {
        match field.name() {
            Some("name") => {
                name = Some(field.text().await.map_err(multipart_error)?.trim().into());
            }
            Some("file") => {
                file_name = field.file_name().map(str::to_string);
                let mut data = Vec::new();
                while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
                    if data.len() + chunk.len() > MAX_UPLOAD_BYTES {
                        return Err(ApiError::new(
                            StatusCode::PAYLOAD_TOO_LARGE,
                            "payload_too_large",
                            format!("file: larger than the {MAX_UPLOAD_BYTES}-byte limit"),
                        )
                        .with_field("file"));
                    }
                    data.extend_from_slice(&chunk);
                }
                bytes = Some(data);
            }
            _ => {}
        }
    }
    let Some(bytes) = bytes else {
        return Err(ApiError::invalid("file", "the `file` part is missing"));
    };
    let Some(name) = name.filter(|n| !n.is_empty()).or(file_name) else {
        return Err(ApiError::invalid(
            "name",
            "give the file a name (a `name` part, or the file part's file name)",
        ));
    };
    let dir = state.media_dir.clone();
    let account = caller.account_id;
    let stored = blocking(
        move || media::save_upload(&dir, account, &name, &bytes),
        "file",
    )
    .await?;
    Ok((StatusCode::CREATED, Json(stored.into())))
}

fn multipart_error(e: axum::extract::multipart::MultipartError) -> ApiError {
    let status = e.status();
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        return ApiError::new(
            status,
            "payload_too_large",
            format!("file: larger than the {MAX_UPLOAD_BYTES}-byte limit"),
        )
        .with_field("file");
    }
    ApiError::bad_request(format!("multipart: {}", e.body_text()))
}

/// The WAV files the account can use: its uploads, then the shared files.
#[utoipa::path(
    get,
    path = "/v1/media",
    tag = "media",
    responses(
        (status = 200, description = "The files", body = MediaList),
        (status = 401, description = "No valid credentials", body = ErrorBody),
    )
)]
pub async fn list_media(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<MediaList>> {
    let dir = state.media_dir.clone();
    let account = caller.account_id;
    let files = blocking(move || media::list_media(&dir, account), "name").await?;
    Ok(Json(MediaList {
        items: files.into_iter().map(MediaFileView::from).collect(),
    }))
}

/// Deletes one of the account's uploads (shared files are not deletable here).
#[utoipa::path(
    delete,
    path = "/v1/media/{name}",
    tag = "media",
    params(("name" = String, Path, description = "The file name, e.g. welcome.wav")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "Not a media file name", body = ErrorBody),
        (status = 401, description = "No valid credentials", body = ErrorBody),
        (status = 404, description = "The account has no such file", body = ErrorBody),
    )
)]
pub async fn delete_media(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<StatusCode> {
    let dir = state.media_dir.clone();
    let account = caller.account_id;
    blocking(move || media::delete_media(&dir, account, &name), "name").await?;
    Ok(StatusCode::NO_CONTENT)
}

/// What the attempt recorded, as WAV: the message plan's `record` reply, or else the call
/// recording (campaigns with `recording`). 404 when there is none, or when the attempt
/// belongs to another account's campaign.
#[utoipa::path(
    get,
    path = "/v1/attempts/{id}/recording",
    tag = "reports",
    params(("id" = i64, Path, description = "Attempt id")),
    responses(
        (status = 200, description = "The recording", content((Vec<u8> = "audio/wav"))),
        (status = 401, description = "No valid credentials", body = ErrorBody),
        (status = 404, description = "No such attempt, or it has no recording", body = ErrorBody),
    )
)]
pub async fn get_attempt_recording(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Response> {
    // Someone else's attempt reads as no attempt at all.
    let attempt = super::reports::load_attempt(&state, &caller, id).await?;
    let no_recording = || ApiError::not_found(format!("attempt {id} has no recording"));
    let path = attempt
        .record
        .recording
        .or(attempt.record.recording_path)
        .filter(|p| !p.is_empty())
        .ok_or_else(no_recording)?;
    let file = tokio::fs::File::open(&path).await.map_err(|e| {
        tracing::warn!(attempt = id, error = %e, "recording file cannot be opened");
        no_recording()
    })?;
    let mut response = Body::from_stream(super::exports::file_chunks(file)).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("audio/wav"));
    if let Ok(value) = HeaderValue::from_str(&format!("attachment; filename=\"attempt-{id}.wav\""))
    {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    Ok(response)
}
