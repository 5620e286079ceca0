//! `GET /metrics`: every Prometheus metric of this node in the text format (see
//! [`crate::observe::metrics`]). A scraper authenticates with the node's own metrics token
//! (`OUTDIAL_METRICS_TOKEN`, as `Authorization: Bearer …`), or with an admin's API key.
//!
//! Must not: answer an operator's key or no credentials (the figures are the whole node's,
//! every account's calls counted together), or reveal whether a metrics token is set.

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

use super::auth::Caller;
use super::error::{ApiError, ApiResult};
use super::AppState;
use crate::observe::metrics::{self, Gauges};

/// Set by the auth gate on a request that carried the metrics token.
#[derive(Debug, Clone, Copy)]
pub struct MetricsScrape;

/// The node's metrics, Prometheus text format 0.0.4.
pub async fn get_metrics(State(state): State<AppState>, req: Request) -> ApiResult<Response> {
    let ext = req.extensions();
    if ext.get::<MetricsScrape>().is_none() {
        let caller = ext
            .get::<Caller>()
            .ok_or_else(|| ApiError::unauthorized("authentication required"))?;
        caller.require_admin("the node's metrics")?;
    }
    let gauges = Gauges {
        calls_by_state: state
            .events
            .as_ref()
            .map(|bus| bus.calls_by_state())
            .unwrap_or_default(),
        trunks: super::trunks::trunk_gauges(&state.trunks),
        events_dropped: state.events.as_ref().map_or(0, |bus| bus.dropped()),
        transcriptions_queued: crate::asr::stream::Workers::queued_now(),
        media: crate::media::engine::Engine::running().map(|e| e.counters()),
    };
    let Some(text) = metrics::render(&gauges) else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "metrics are off in this process",
        ));
    };
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response())
}
