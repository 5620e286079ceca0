//! Twilio-compatible call control, so that AI agents written for Twilio can hang up and query
//! their call when pointed at outdial: `POST /2010-04-01/Accounts/{AccountSid}/Calls/{CallSid}.json`
//! with `Status=completed` hangs the call up, `GET` on the same path returns its status; an
//! ended or unknown call answers 404 `{"code": 20404, …}`, as Twilio does.
//!
//! Auth is HTTP Basic: the account SID the agent got in `start` and a key — an account's API
//! key when the admin API serves it, or the key `outdial call --control-listen` was given.
//!
//! Must not: log or echo a key; act on a call of another account; act on the call itself
//! (the request goes to the call's runner through the live-call registry).

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine as _;
use serde::Deserialize;
use serde_json::json;
use subtle::ConstantTimeEq;

use crate::bridge::agent::twilio::{account_sid, is_sid};
use crate::bridge::EndedBy;
use crate::flow::control::{CallStatus, Control, LiveCall, LiveCalls};
use crate::store::Store;

/// Who may control calls.
#[derive(Clone)]
pub enum ControlKeys {
    /// One key for every call (`outdial call --control-listen`), account SID of account 0.
    Fixed(String),
    /// The accounts' API keys (the admin API).
    Store(Store),
}

#[derive(Clone)]
pub struct ControlState {
    pub live: LiveCalls,
    pub keys: ControlKeys,
}

/// The one path (`{call}` is `CA….json`).
pub const CALL_PATH: &str = "/2010-04-01/Accounts/{account}/Calls/{call}";

/// Paths under this prefix do their own auth (Basic), not the admin API's bearer gate.
pub const PREFIX: &str = "/2010-04-01/";

/// The routes on their own (`outdial call --control-listen`); the admin API mounts the same
/// handlers on its router (they do their own auth).
pub fn router(state: ControlState) -> Router {
    Router::new()
        .route(CALL_PATH, get(get_call).post(update_call))
        .with_state(state)
}

impl axum::extract::FromRef<super::AppState> for ControlState {
    fn from_ref(app: &super::AppState) -> ControlState {
        ControlState {
            live: app.live.clone(),
            keys: ControlKeys::Store(app.store.clone()),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct UpdateCall {
    #[serde(rename = "Status")]
    status: Option<String>,
    #[serde(rename = "Twiml")]
    twiml: Option<String>,
    #[serde(rename = "Url")]
    url: Option<String>,
}

fn twilio_error(status: StatusCode, code: u32, message: &str) -> Response {
    (
        status,
        Json(json!({
            "code": code,
            "message": message,
            "more_info": format!("https://www.twilio.com/docs/errors/{code}"),
            "status": status.as_u16(),
        })),
    )
        .into_response()
}

fn not_found(call: &str) -> Response {
    twilio_error(
        StatusCode::NOT_FOUND,
        20404,
        &format!("The requested resource /Calls/{call}.json was not found"),
    )
}

fn unauthorized() -> Response {
    let mut r = twilio_error(StatusCode::UNAUTHORIZED, 20003, "Authenticate");
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        axum::http::HeaderValue::from_static("Basic realm=\"outdial\""),
    );
    r
}

/// The Basic credentials of a request.
fn basic(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, pass) = text.split_once(':')?;
    Some((user.to_string(), pass.to_string()))
}

/// Checks the request's credentials against the path's account SID; the account id they
/// stand for (`None` for the fixed key).
async fn authorize(
    state: &ControlState,
    headers: &HeaderMap,
    account: &str,
) -> Result<Option<i64>, Response> {
    let Some((user, key)) = basic(headers) else {
        return Err(unauthorized());
    };
    if user != account || !is_sid(account, "AC") {
        return Err(unauthorized());
    }
    match &state.keys {
        ControlKeys::Fixed(expected) => {
            let ok: bool = key.as_bytes().ct_eq(expected.as_bytes()).into();
            if ok && account == account_sid(0) {
                Ok(None)
            } else {
                Err(unauthorized())
            }
        }
        ControlKeys::Store(store) => {
            let now = chrono::Utc::now().timestamp_millis();
            match store.verify_api_key(None, &key, now).await {
                Ok(Some(who)) if account_sid(who.account.id) == account => Ok(Some(who.account.id)),
                Ok(_) => Err(unauthorized()),
                Err(e) => {
                    tracing::warn!(error = %e, "call control: key not checked");
                    Err(twilio_error(
                        StatusCode::SERVICE_UNAVAILABLE,
                        20500,
                        "the store is not available",
                    ))
                }
            }
        }
    }
}

/// The live call the path names, if it is the caller's.
fn find(state: &ControlState, account_id: Option<i64>, call: &str) -> Option<LiveCall> {
    let c = state.live.get(call)?;
    (c.account_id == account_id || account_id.is_none() && c.account_id.is_none()).then_some(c)
}

fn call_json(account: &str, call: &LiveCall, status: CallStatus) -> serde_json::Value {
    json!({
        "sid": call.call_sid,
        "account_sid": account,
        "to": call.to,
        "from": call.from,
        "status": status.name(),
        "direction": "outbound-api",
        "api_version": "2010-04-01",
        "uri": format!("/2010-04-01/Accounts/{account}/Calls/{}.json", call.call_sid),
    })
}

fn call_sid_of(path: &str) -> &str {
    path.strip_suffix(".json").unwrap_or(path)
}

pub async fn get_call(
    State(state): State<ControlState>,
    Path((account, call)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let account_id = match authorize(&state, &headers, &account).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let sid = call_sid_of(&call);
    match find(&state, account_id, sid) {
        Some(c) => Json(call_json(&account, &c, c.status())).into_response(),
        None => not_found(sid),
    }
}

pub async fn update_call(
    State(state): State<ControlState>,
    Path((account, call)): Path<(String, String)>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let account_id = match authorize(&state, &headers, &account).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let sid = call_sid_of(&call);
    let Some(c) = find(&state, account_id, sid) else {
        return not_found(sid);
    };
    let update: UpdateCall = match serde_urlencoded::from_bytes(&body) {
        Ok(u) => u,
        Err(e) => {
            return twilio_error(
                StatusCode::BAD_REQUEST,
                21200,
                &format!("the form body is not understood: {e}"),
            )
        }
    };
    if update.twiml.is_some() || update.url.is_some() {
        return twilio_error(
            StatusCode::BAD_REQUEST,
            21220,
            "Twiml and Url are not supported: use POST /v1/calls/{id}/transfer to hand the call on",
        );
    }
    match update.status.as_deref() {
        Some("completed") | Some("canceled") => {
            if !c.send(Control::Hangup { by: EndedBy::Agent }) {
                return not_found(sid);
            }
            tracing::info!(call_sid = sid, "hang-up requested through call control");
            Json(call_json(&account, &c, CallStatus::Completed)).into_response()
        }
        Some(other) => twilio_error(
            StatusCode::BAD_REQUEST,
            21218,
            &format!("Status {other:?} is not one of completed, canceled"),
        ),
        None => Json(call_json(&account, &c, c.status())).into_response(),
    }
}
