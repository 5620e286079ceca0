//! One error shape for every answer that is not a success:
//! `{"error": {"code": "…", "message": "…", "field": "…"}}` (`field` only when one field is
//! to blame), and the extractors that produce it instead of axum's plain-text rejections:
//! [`ApiJson`] (415 without `application/json`, 413 over the body limit, 400 naming the
//! field serde stumbled on), [`ApiQuery`] and [`ApiPath`] (400 naming the parameter).
//!
//! Store and model errors map here too: not found → 404, conflict → 409, invalid → 400 with
//! the field the message starts with, database → 500 with no detail (logged, never sent).

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{FromRequest, FromRequestParts, RawPathParams, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::de::DeserializeOwned;
use serde::Serialize;
use utoipa::ToSchema;

use crate::campaign::model::ModelError;
use crate::store::StoreError;

/// The body of every error answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// Machine-readable: `unauthorized`, `forbidden`, `invalid`, `not_found`, `conflict`,
    /// `illegal_action`, `payload_too_large`, `too_many_requests`, `unsupported_media_type`, `invalid_csv`,
    /// `internal`, …
    pub code: String,
    /// One line for a person.
    pub message: String,
    /// The request field (JSON path, query or path parameter) the problem is in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Every problem, one line each naming its field, when there are several at once
    /// (a message plan's steps: `steps[2].max_digits: must be 1-32, got 0`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
}

/// An error answer: status, code, message and maybe the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub field: Option<String>,
    /// Every problem when there are several (see [`ErrorDetail::errors`]).
    pub errors: Vec<String>,
    /// Seconds to send as `Retry-After` (429 and 503 answers).
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            field: None,
            errors: Vec::new(),
            retry_after: None,
        }
    }

    /// 422 `invalid_steps`: a message plan's problems, each `steps[i].field: reason`; the
    /// message is the first, `field` its path, `errors` all of them.
    pub fn invalid_steps(errors: Vec<(String, String)>) -> ApiError {
        let lines: Vec<String> = errors
            .iter()
            .map(|(path, reason)| format!("{path}: {reason}"))
            .collect();
        let mut message = lines.first().cloned().unwrap_or_default();
        if lines.len() > 1 {
            message.push_str(&format!(" (and {} more)", lines.len() - 1));
        }
        ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: "invalid_steps",
            message,
            field: errors.first().map(|(path, _)| path.clone()),
            errors: lines,
            retry_after: None,
        }
    }

    pub fn with_field(mut self, field: impl Into<String>) -> ApiError {
        self.field = Some(field.into());
        self
    }

    /// 400 naming the field: the message reads `field: reason`.
    pub fn invalid(field: impl Into<String>, reason: impl std::fmt::Display) -> ApiError {
        let field = field.into();
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid",
            format!("{field}: {reason}"),
        )
        .with_field(field)
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid", message)
    }

    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 403 `forbidden`: the login's role may not do this.
    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// 429 `too_many_requests` with `Retry-After: retry_after_secs`.
    pub fn too_many_requests(message: impl Into<String>, retry_after_secs: u64) -> ApiError {
        ApiError {
            retry_after: Some(retry_after_secs),
            ..ApiError::new(StatusCode::TOO_MANY_REQUESTS, "too_many_requests", message)
        }
    }

    /// 413 `payload_too_large`: the message names the limit.
    pub fn too_large(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", message)
    }

    pub fn conflict(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, "conflict", message)
    }

    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }

    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: ErrorDetail {
                code: self.code.to_string(),
                message: self.message.clone(),
                field: self.field.clone(),
                errors: self.errors.clone(),
            },
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.code,
            self.message
        )
    }
}

impl std::error::Error for ApiError {}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(self.body())).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer realm=\"outdial\""),
            );
        }
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from(secs));
        }
        response
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

/// `field: reason` → the field, when the text before the first `": "` looks like one
/// (`phone`, `retry_interval.unit`, `goals[1].value`, `row 3: phone: …` → `phone`).
pub(crate) fn leading_field(message: &str) -> Option<&str> {
    let mut rest = message;
    loop {
        let (head, tail) = rest.split_once(": ")?;
        if let Some(n) = head.strip_prefix("row ") {
            if n.bytes().all(|b| b.is_ascii_digit()) {
                rest = tail;
                continue;
            }
        }
        let looks_like_field = !head.is_empty()
            && head
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.[]".contains(&b));
        return looks_like_field.then_some(head);
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e {
            StoreError::NotFound(what) => ApiError::not_found(format!("{what} not found")),
            StoreError::Conflict(message) => ApiError::conflict(message),
            StoreError::Invalid(message) => {
                let field = leading_field(&message).map(str::to_string);
                let mut error = ApiError::bad_request(message);
                error.field = field;
                error
            }
            StoreError::Db(e) => {
                // The detail can name tables and values: logged here, never sent.
                tracing::error!(error = %e, "store error");
                ApiError::internal("the database failed; see the server log")
            }
        }
    }
}

impl From<ModelError> for ApiError {
    fn from(e: ModelError) -> ApiError {
        match &e {
            ModelError::IllegalAction { .. } => {
                ApiError::new(StatusCode::CONFLICT, "illegal_action", e.to_string())
            }
            ModelError::Invalid { field, .. } => {
                ApiError::new(StatusCode::BAD_REQUEST, "invalid", e.to_string()).with_field(*field)
            }
            ModelError::InvalidSteps(errors) => ApiError::invalid_steps(
                errors
                    .iter()
                    .map(|e| (e.path(), e.reason.clone()))
                    .collect(),
            ),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Extractors.

/// A JSON body: `Content-Type: application/json` (415 otherwise), within the body limit
/// (413), and a 400 naming the field serde could not read.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

fn is_json(content_type: Option<&header::HeaderValue>) -> bool {
    let Some(value) = content_type.and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let mime = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
}

/// Turns a body read failure into 413 (over the limit) or 400.
pub(crate) fn bytes_rejection(rejection: BytesRejection) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!(
                "the request body is larger than {} bytes",
                super::JSON_BODY_LIMIT
            ),
        )
    } else {
        ApiError::bad_request(format!("the request body could not be read: {rejection}"))
    }
}

/// Reads `bytes` as `T`, naming the field on failure.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> ApiResult<T> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request(
            "the request body is empty: expected a JSON object",
        ));
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(json_error)?;
    de.end()
        .map_err(|e| ApiError::bad_request(format!("invalid JSON: {e} (trailing characters)")))?;
    Ok(value)
}

fn json_error(e: serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    let path = e.path().to_string();
    let inner = e.inner();
    let reason = strip_position(&inner.to_string());
    if inner.is_syntax() || inner.is_eof() {
        return ApiError::bad_request(format!("invalid JSON: {}", inner));
    }
    // Errors about a whole object name the field in the message itself.
    let named = backticked(&reason);
    // The path ends at the unknown key itself, but at the parent of a missing one.
    let root = path == "." || path.is_empty();
    let field = match (root, reason.starts_with("missing field")) {
        (true, _) => named.map(str::to_string),
        (false, true) => named.map(|n| format!("{path}.{n}")),
        (false, false) => Some(path),
    };
    match field {
        Some(field) => ApiError::invalid(field, reason),
        None => ApiError::bad_request(reason),
    }
}

/// `missing field `name`` → `name`.
fn backticked(text: &str) -> Option<&str> {
    let start = text.find('`')? + 1;
    let len = text[start..].find('`')?;
    Some(&text[start..start + len])
}

/// serde_json appends " at line 1 column 12"; the field already says where.
fn strip_position(text: &str) -> String {
    match text.rfind(" at line ") {
        Some(i) if text[i..].contains(" column ") => text[..i].to_string(),
        _ => text.to_string(),
    }
}

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(req.headers().get(header::CONTENT_TYPE)) {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "expected a JSON body (Content-Type: application/json)",
            ));
        }
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(bytes_rejection)?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// Query parameters, 400 naming the parameter.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiQuery<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or("");
        let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(de)
            .map(ApiQuery)
            .map_err(|e| {
                let path = e.path().to_string();
                let reason = e.inner().to_string();
                let field = if path == "." || path.is_empty() {
                    backticked(&reason).map(str::to_string)
                } else {
                    Some(path)
                };
                match field {
                    Some(f) => ApiError::invalid(f, reason),
                    None => ApiError::bad_request(format!("query string: {reason}")),
                }
            })
    }
}

/// Path parameters, 400 naming the parameter (`id: "abc" is not an integer`).
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiPath<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        // The names, to say which parameter a bad value is in.
        let names: Vec<(String, String)> = RawPathParams::from_request_parts(parts, state)
            .await
            .map(|raw| {
                raw.iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect()
            })
            .unwrap_or_default();
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(ApiPath(value)),
            Err(PathRejection::FailedToDeserializePathParams(e)) => {
                use axum::extract::path::ErrorKind;
                let (key, value, expected_type) = match e.into_kind() {
                    ErrorKind::ParseErrorAtKey {
                        key,
                        value,
                        expected_type,
                    } => (Some(key), value, expected_type),
                    ErrorKind::ParseErrorAtIndex {
                        index,
                        value,
                        expected_type,
                    } => (
                        names.get(index).map(|(k, _)| k.clone()),
                        value,
                        expected_type,
                    ),
                    ErrorKind::ParseError {
                        value,
                        expected_type,
                    } => (
                        names
                            .iter()
                            .find(|(_, v)| *v == value)
                            .map(|(k, _)| k.clone()),
                        value,
                        expected_type,
                    ),
                    other => return Err(ApiError::bad_request(format!("path: {other}"))),
                };
                let reason = format!("{value:?} is not {}", article(expected_type));
                Err(match key {
                    Some(key) => ApiError::invalid(key, reason),
                    None => ApiError::bad_request(format!("path parameter {reason}")),
                })
            }
            Err(other) => Err(ApiError::bad_request(format!(
                "path: {}",
                other.body_text()
            ))),
        }
    }
}

fn article(type_name: &str) -> &'static str {
    match type_name {
        "i64" | "i32" | "u64" | "u32" | "usize" => "an integer",
        _ => "a valid value",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        name: String,
        pace: Option<f64>,
        inner: Option<Inner>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        value: i64,
    }

    #[test]
    fn json_errors_name_the_field() {
        let e = parse_json::<Body>(br#"{"name":"x","pace":"fast"}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("pace"));
        assert!(e.message.starts_with("pace: invalid type"), "{}", e.message);
        assert!(!e.message.contains("line 1"), "{}", e.message);
        let e = parse_json::<Body>(br#"{"pace":1}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("name"));
        let e = parse_json::<Body>(br#"{"name":"x","colour":1}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("colour"));
        let e = parse_json::<Body>(br#"{"name":"x","inner":{"value":"a"}}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("inner.value"));
        let e = parse_json::<Body>(br#"{"name":"x","inner":{}}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("inner.value"));
        let e = parse_json::<Body>(b"{nope").unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert!(e.message.starts_with("invalid JSON"), "{}", e.message);
        let e = parse_json::<Body>(b"").unwrap_err();
        assert!(e.message.contains("empty"), "{}", e.message);
    }

    #[test]
    fn store_messages_give_their_field() {
        assert_eq!(leading_field("phone: \"x\" is not E.164"), Some("phone"));
        assert_eq!(leading_field("row 3: phone: bad"), Some("phone"));
        assert_eq!(leading_field("name or comments: too long"), None);
        assert_eq!(leading_field("no colon here"), None);
        assert_eq!(
            leading_field("goals[1].value: 6 is not an integer from 1 to 5"),
            Some("goals[1].value")
        );
        let e = ApiError::from(StoreError::Invalid("timezone: \"Mars\" is not".into()));
        assert_eq!(e.field.as_deref(), Some("timezone"));
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
    }

    #[test]
    fn content_types() {
        let v = |s: &'static str| header::HeaderValue::from_static(s);
        assert!(is_json(Some(&v("application/json"))));
        assert!(is_json(Some(&v("application/json; charset=utf-8"))));
        assert!(is_json(Some(&v("application/merge-patch+json"))));
        assert!(!is_json(Some(&v("text/csv"))));
        assert!(!is_json(None));
    }
}
