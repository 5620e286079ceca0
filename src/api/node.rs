//! This node's own state: `GET /v1/node` — its id, version, uptime, live calls, tokio tasks
//! and what its process uses (memory, open files, threads). What `outdial bench soak` watches
//! for leaks, and what an operator checks first.
//!
//! Admins only (the figures are the node's, every account's together). Must not: name another
//! account's calls or anything about them (only the node-wide count), or fail when a figure
//! cannot be read (it is `null` then).

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::Caller;
use super::error::{ApiResult, ErrorBody};
use super::AppState;
use crate::observe::process::{resources, Pid};

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct NodeView {
    /// This node's name (campaign leases carry it).
    pub node: String,
    pub version: String,
    /// When this process started serving (UTC ms).
    pub started_at: i64,
    pub uptime_s: f64,
    /// Calls in progress on this node, every account's.
    pub live_calls: usize,
    /// Tasks alive on the server's tokio runtime (calls, bridges, connections, timers).
    pub tasks: usize,
    /// Resident memory, bytes.
    pub rss_bytes: Option<u64>,
    /// Open file descriptors (sockets included).
    pub open_files: Option<u64>,
    /// OS threads (tokio's workers, the media engine's, blocking pool).
    pub threads: Option<u64>,
}

/// This node: id, version, uptime, live calls, tasks and process resources.
#[utoipa::path(
    get,
    path = "/v1/node",
    tag = "node",
    responses(
        (status = 200, description = "This node's state", body = NodeView),
        (status = 401, description = "No valid credentials", body = ErrorBody),
        (status = 403, description = "Not an admin login", body = ErrorBody),
    )
)]
pub async fn get_node(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<NodeView>> {
    caller.require_admin("read this node's state")?;
    let process = resources(Pid::This);
    let now = state.now();
    Ok(Json(NodeView {
        node: state.node.clone(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        started_at: state.started_at,
        uptime_s: (now - state.started_at).max(0) as f64 / 1000.0,
        live_calls: state.live.len(),
        tasks: tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks(),
        rss_bytes: process.rss_bytes,
        open_files: process.open_files,
        threads: process.threads,
    }))
}
