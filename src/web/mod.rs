//! The web page: one application for the browser at `/` (a login page, then every screen of
//! the product guides, all drawn from the admin API) and its assets under `/assets/`, built
//! into the binary from `web/` — no CDN, nothing fetched at run time — plus the cookie session
//! it logs in with (`/web/login`, `/web/session`, `/web/logout`).
//!
//! The page holds no credential a script can read: logging in sets [`SESSION_COOKIE`]
//! (`HttpOnly`, `SameSite=Strict`, `Secure` when the request came over TLS through a proxy
//! that says so in `X-Forwarded-Proto`), and the gate ([`crate::api::auth::require_auth`])
//! takes that cookie instead of a bearer credential, with the session's CSRF token required
//! on everything but GET and HEAD.
//!
//! Must not: decide anything the API does not (the page only calls `/v1`), serve a file that
//! is not in [`ASSETS`], or log a key, token or cookie.

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;

use crate::api::auth::{
    csrf_token, open_session, session_cookie, AccountView, Caller, ClientAddr, LoginRequest,
    SESSION_COOKIE,
};
use crate::api::error::{ApiError, ApiResult};
use crate::api::{ApiJson, AppState};
use crate::campaign::model::Millis;

/// One file of the page: its name under `/assets/`, its media type and its bytes.
pub struct Asset {
    pub name: &'static str,
    pub content_type: &'static str,
    pub bytes: &'static [u8],
}

/// The page's shell, served at `/`.
const INDEX_HTML: &[u8] = include_bytes!("../../web/index.html");

/// Every asset the page loads.
pub const ASSETS: &[Asset] = &[
    Asset {
        name: "app.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../../web/app.js"),
    },
    Asset {
        name: "ui.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../../web/ui.js"),
    },
    Asset {
        name: "screens.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../../web/screens.js"),
    },
    Asset {
        name: "campaign.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../../web/campaign.js"),
    },
    Asset {
        name: "app.css",
        content_type: "text/css; charset=utf-8",
        bytes: include_bytes!("../../web/app.css"),
    },
    Asset {
        name: "icon.svg",
        content_type: "image/svg+xml",
        bytes: include_bytes!("../../web/icon.svg"),
    },
];

/// Where the assets are served.
pub const ASSETS_PREFIX: &str = "/assets/";

/// Paths the gate lets through without credentials: the page and its assets, logging in,
/// and asking whether one is logged in.
pub fn is_public(path: &str) -> bool {
    path == "/" || path == LOGIN_PATH || path == SESSION_PATH || path.starts_with(ASSETS_PREFIX)
}

/// Logs in with Login + API key and sets the session cookie.
pub const LOGIN_PATH: &str = "/web/login";

/// Who is logged in (the cookie's session), answered with or without one.
pub const SESSION_PATH: &str = "/web/session";

/// The page's routes, merged into the API's router (behind the same gate).
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(index))
        .route("/assets/{name}", get(asset))
        .route(LOGIN_PATH, post(login))
        .route(SESSION_PATH, get(session))
        .route("/web/logout", post(logout))
}

/// What every page response carries: a strict content security policy (only this origin's
/// scripts, styles, images, media and connections; no framing) and no sniffing.
fn with_page_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             media-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; \
             form-action 'self'; frame-ancestors 'none'",
        ),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

async fn index() -> Response {
    with_page_headers(
        (
            [
                (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            INDEX_HTML,
        )
            .into_response(),
    )
}

async fn asset(Path(name): Path<String>) -> Response {
    match ASSETS.iter().find(|a| a.name == name) {
        Some(a) => with_page_headers(
            (
                [
                    (header::CONTENT_TYPE, a.content_type),
                    // Served from the binary: a new build may change them, so revalidate.
                    (header::CACHE_CONTROL, "no-cache"),
                ],
                a.bytes,
            )
                .into_response(),
        ),
        None => ApiError::not_found(format!("no asset {name:?}")).into_response(),
    }
}

/// The page's session: who is logged in, and the CSRF token its changes must carry.
#[derive(Debug, Clone, Serialize)]
pub struct WebSession {
    /// Send as `X-CSRF-Token` on every request that is not a GET or HEAD.
    pub csrf: String,
    /// When the session ends, ms since the epoch (UTC); absent when asked with a bearer key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Millis>,
    /// Who is logged in; null without a live session.
    pub account: Option<AccountView>,
}

/// Whether the request reached us over TLS (a proxy in front says so).
fn over_tls(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"))
}

fn cookie(headers: &HeaderMap, value: &str, max_age_s: i64) -> Result<HeaderValue, ApiError> {
    let secure = if over_tls(headers) { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age_s}{secure}"
    ))
    .map_err(|_| ApiError::internal("session cookie not representable"))
}

/// Logs in (the guide's Login and API Key) and sets the session cookie.
async fn login(
    State(state): State<AppState>,
    ClientAddr(addr): ClientAddr,
    headers: HeaderMap,
    ApiJson(body): ApiJson<LoginRequest>,
) -> ApiResult<Response> {
    let opened = open_session(&state, addr, &body).await?;
    let max_age = ((opened.expires_at - state.now()) / 1000).max(0);
    let set_cookie = cookie(&headers, &opened.token, max_age)?;
    let body = WebSession {
        csrf: csrf_token(&opened.token),
        expires_at: Some(opened.expires_at),
        account: Some(opened.account),
    };
    let mut response = Json(body).into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, set_cookie);
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// Who the session cookie belongs to, and its CSRF token; `account` null (and no CSRF
/// token) without a live session. Public, so that a page opened before logging in gets an
/// answer rather than an error.
async fn session(State(state): State<AppState>, headers: HeaderMap) -> ApiResult<Response> {
    let token = session_cookie(&headers);
    let who = match token {
        Some(token) => state.store.verify_session(token, state.now()).await?,
        None => None,
    };
    let body = match (token, who) {
        (Some(token), Some(who)) => WebSession {
            csrf: csrf_token(token),
            expires_at: None,
            account: Some(AccountView {
                id: who.account.id,
                login: who.login.login,
                name: who.account.name,
                role: who.login.role,
            }),
        },
        _ => WebSession {
            csrf: String::new(),
            expires_at: None,
            account: None,
        },
    };
    let mut response = Json(body).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// Ends the cookie's session and clears the cookie.
async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
    _caller: Caller,
) -> ApiResult<Response> {
    if let Some(token) = session_cookie(&headers) {
        state.store.delete_session(token).await?;
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, cookie(&headers, "", 0)?);
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_the_shell_names_is_served() {
        let shell = std::str::from_utf8(INDEX_HTML).expect("index.html is UTF-8");
        for name in ["app.js", "app.css", "icon.svg"] {
            assert!(shell.contains(&format!("/assets/{name}")), "{name}");
            assert!(ASSETS.iter().any(|a| a.name == name), "{name}");
        }
    }

    #[test]
    fn the_page_and_its_assets_are_public_nothing_else() {
        assert!(is_public("/"));
        assert!(is_public("/assets/app.js"));
        assert!(is_public(LOGIN_PATH));
        assert!(is_public(SESSION_PATH));
        assert!(!is_public("/web/logout"));
        assert!(!is_public("/v1/campaigns"));
    }

    #[test]
    fn the_session_cookie_is_found_among_others_and_csrf_is_bound_to_it() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; outdial_session=ods_abc ; b=2"),
        );
        assert_eq!(session_cookie(&headers), Some("ods_abc"));
        assert_ne!(csrf_token("ods_abc"), csrf_token("ods_abd"));
        assert_eq!(csrf_token("ods_abc").len(), 64);
    }
}
