//! The SIP trunks this node dials through: `GET /v1/trunks` — every profile, its trunks in
//! their configured order, each trunk's health from its OPTIONS pings (up, down, unknown), its
//! last ping and the channels free on this node; the profile's registration state.
//!
//! Admins only (trunks are the server's, shared by every account). Must not: show a password,
//! username or anything of a credential; change a trunk (profiles are files, read at start).

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::Caller;
use super::error::{ApiResult, ErrorBody};
use super::AppState;
use crate::config::Profile;
use crate::sip::trunks::HealthState;
use crate::sip::ua::{RegistrationState, UserAgent};

/// What the trunks endpoint reads: the profiles and the user agent that pings them.
#[derive(Clone, Default)]
pub struct TrunkBoard {
    pub profiles: Arc<Vec<Profile>>,
    pub ua: Option<Arc<UserAgent>>,
}

impl std::fmt::Debug for TrunkBoard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrunkBoard")
            .field("profiles", &self.profiles.len())
            .finish_non_exhaustive()
    }
}

/// Each trunk's (name, up, free channels on this node) for the metrics: up unless its pings
/// say down.
pub fn trunk_gauges(board: &TrunkBoard) -> Vec<(String, bool, Option<u32>)> {
    board
        .profiles
        .iter()
        .flat_map(|p| profile_view(p, board.ua.as_deref()).trunks)
        .map(|t| (t.name, t.health != HealthState::Down, t.free_channels))
        .collect()
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ProfileView {
    pub profile: String,
    /// Concurrent calls over all its trunks (counted across nodes); `null`: no limit.
    pub max_channels: Option<u32>,
    pub max_cps: Option<f64>,
    /// Its channels free on this node; `null`: no limit.
    pub free_channels: Option<u32>,
    /// `idle` (does not register), `registering`, `registered`, `failed`.
    pub registration: String,
    /// Seconds between OPTIONS pings; `null`: pings off (health stays `unknown`).
    pub ping_interval: Option<u32>,
    pub trunks: Vec<TrunkView>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TrunkView {
    pub name: String,
    /// `host:port`.
    pub proxy: String,
    /// `udp`, `tcp` or `tls`.
    pub transport: String,
    pub outbound_proxy: Option<String>,
    /// Lower is tried first.
    pub priority: u32,
    /// Share of the calls within its priority.
    pub weight: u32,
    pub max_channels: Option<u32>,
    pub max_cps: Option<f64>,
    /// Its own channels free on this node; `null`: no limit of its own.
    pub free_channels: Option<u32>,
    /// Seconds an INVITE may go without any response before the call moves on.
    pub invite_timeout_s: f64,
    /// `up`, `down` or `unknown` (no ping answered or sent yet).
    #[schema(value_type = String)]
    pub health: HealthState,
    /// Unanswered pings in a row.
    pub ping_failures: u32,
    /// The last ping's final response code; `null` when unanswered or none yet.
    pub last_ping_code: Option<u16>,
    /// When the last ping ended (UTC ms).
    pub last_ping_at: Option<i64>,
}

/// Every profile and its trunks, with health.
#[utoipa::path(
    get,
    path = "/v1/trunks",
    tag = "trunks",
    responses(
        (status = 200, description = "The profiles and their trunks", body = [ProfileView]),
        (status = 401, description = "No valid credentials", body = ErrorBody),
        (status = 403, description = "Not an admin login", body = ErrorBody),
    )
)]
pub async fn list_trunks(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<Vec<ProfileView>>> {
    caller.require_admin("read the trunks")?;
    let board = &state.trunks;
    let views = board
        .profiles
        .iter()
        .map(|p| profile_view(p, board.ua.as_deref()))
        .collect();
    Ok(Json(views))
}

fn profile_view(p: &Profile, ua: Option<&UserAgent>) -> ProfileView {
    let registration = match ua.map(|ua| ua.registration(&p.name)) {
        None | Some(RegistrationState::Idle) => "idle",
        Some(RegistrationState::Registering) => "registering",
        Some(RegistrationState::Registered { .. }) => "registered",
        Some(RegistrationState::Failed { .. }) => "failed",
    };
    ProfileView {
        profile: p.name.clone(),
        max_channels: p.max_channels,
        max_cps: p.max_cps,
        free_channels: ua.and_then(|ua| ua.trunk_limit(p).free_channels()),
        registration: registration.to_string(),
        ping_interval: p.ping_interval,
        trunks: p
            .trunks
            .iter()
            .map(|t| {
                let health = ua.map(|ua| ua.trunk_health(p, t));
                TrunkView {
                    name: t.name.clone(),
                    proxy: t.proxy.to_string(),
                    transport: t.transport.to_string(),
                    outbound_proxy: t.outbound_proxy.as_ref().map(|h| h.to_string()),
                    priority: t.priority,
                    weight: t.weight,
                    max_channels: t.max_channels,
                    max_cps: t.max_cps,
                    free_channels: ua.and_then(|ua| ua.one_trunk_limit(p, t).free_channels()),
                    invite_timeout_s: t.invite_timeout.as_secs_f64(),
                    health: health.map_or(HealthState::Unknown, |h| h.health.state),
                    ping_failures: health.map_or(0, |h| h.health.failures),
                    last_ping_code: health.and_then(|h| h.last_code),
                    last_ping_at: health.and_then(|h| h.last_ping_ms),
                }
            })
            .collect(),
    }
}
