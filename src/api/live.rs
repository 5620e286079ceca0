//! `GET /v1/live`: the live monitor as Server-Sent Events. On connect a `snapshot` event holds
//! the account's calls in progress (state, who answered, bridged to whom, talk time), its
//! active campaigns with their counters, and its agents' states; then every call event of the
//! account as it is stored (the SSE event's name is the event's kind, its data the same JSON
//! as `GET /v1/events`, its id the event id), and every [`REFRESH`] a `counters` event with the
//! campaigns and agents again (they change without call events: imports, admin actions).
//! A client that falls more than a few thousand events behind gets a `lagged` event (how many
//! it missed) and should read them from `GET /v1/events`.
//!
//! Must not: show another account's calls or events, or keep anything per client beyond its
//! stream (a client that goes away ends its stream).

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures_util::stream::{self, Stream, StreamExt};
use serde_json::{json, Value};
use tokio::sync::broadcast::error::RecvError;

use super::auth::Caller;
use super::error::{ApiError, ApiResult};
use super::events::EventView;
use super::AppState;
use crate::campaign::model::CampaignStatus;
use crate::store::{CampaignFilter, Page};

/// How often campaign counters and agent states are sent again.
pub const REFRESH: Duration = Duration::from_secs(5);

/// The account's active campaigns with their counters, and its agents' states.
async fn counters(state: &AppState, account_id: i64) -> Value {
    let campaigns = state
        .store
        .list_campaigns(
            &CampaignFilter {
                account_id: Some(account_id),
                statuses: vec![
                    CampaignStatus::Processing,
                    CampaignStatus::Paused,
                    CampaignStatus::Scheduled,
                ],
                ..CampaignFilter::default()
            },
            Page::new(100, 0),
        )
        .await
        .map(|page| {
            page.items
                .into_iter()
                .map(|c| {
                    json!({
                        "id": c.campaign.id,
                        "name": c.campaign.settings.name,
                        "status": c.campaign.status,
                        "contacts": c.contacts,
                        "calls": c.calls,
                    })
                })
                .collect::<Vec<_>>()
        });
    let agents = state
        .store
        .list_agents(Some(account_id), None, Page::new(500, 0))
        .await
        .map(|page| {
            page.items
                .into_iter()
                .map(|a| {
                    json!({
                        "id": a.id,
                        "name": a.spec.name,
                        "state": a.spec.state,
                        "state_since": a.state_since,
                    })
                })
                .collect::<Vec<_>>()
        });
    json!({
        "campaigns": campaigns.unwrap_or_default(),
        "agents": agents.unwrap_or_default(),
    })
}

/// The calls in progress, with their talk time now.
fn calls(state: &AppState, account_id: i64) -> Value {
    let now = state.now();
    let calls = state
        .events
        .as_ref()
        .map(|bus| bus.calls(account_id))
        .unwrap_or_default();
    Value::Array(
        calls
            .into_iter()
            .map(|c| {
                let talk = c.talk_ms(now);
                let mut v = serde_json::to_value(&c).unwrap_or_default();
                if let Some(map) = v.as_object_mut() {
                    map.insert("talk_ms".into(), json!(talk));
                }
                v
            })
            .collect(),
    )
}

fn json_event(name: &str, data: &Value) -> SseEvent {
    SseEvent::default().event(name).data(data.to_string())
}

/// The live monitor's stream.
#[utoipa::path(
    get,
    path = "/v1/live",
    tag = "events",
    responses(
        (status = 200, description = "Server-Sent Events: `snapshot`, then each call event by its kind, `counters` every 5 s", content_type = "text/event-stream", body = String),
        (status = 401, description = "No valid credentials", body = super::error::ErrorBody),
        (status = 503, description = "This server records no events", body = super::error::ErrorBody),
    )
)]
pub async fn live(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>> {
    let Some(bus) = state.events.clone() else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "this server records no events",
        ));
    };
    let account = caller.account_id;
    // Subscribed before the snapshot is taken: nothing falls between the two (an event may
    // show in both; its id tells).
    let rx = bus.subscribe();
    let mut snapshot = counters(&state, account).await;
    if let Some(map) = snapshot.as_object_mut() {
        map.insert("calls".into(), calls(&state, account));
        map.insert("at".into(), json!(state.now()));
    }
    let first = json_event("snapshot", &snapshot);
    let mut refresh = tokio::time::interval(REFRESH);
    refresh.reset();
    let events = stream::unfold(
        (rx, refresh, state, account),
        |(mut rx, mut refresh, state, account)| async move {
            loop {
                tokio::select! {
                    received = rx.recv() => match received {
                        Ok(e) if e.account_id == Some(account) => {
                            let view = EventView::from((*e).clone());
                            let data = serde_json::to_value(&view).unwrap_or_default();
                            let event = json_event(&view.kind, &data).id(view.id.to_string());
                            return Some((Ok(event), (rx, refresh, state, account)));
                        }
                        Ok(_) => continue,
                        Err(RecvError::Lagged(n)) => {
                            let event = json_event("lagged", &json!({"missed": n}));
                            return Some((Ok(event), (rx, refresh, state, account)));
                        }
                        Err(RecvError::Closed) => return None,
                    },
                    _ = refresh.tick() => {
                        let mut data = counters(&state, account).await;
                        if let Some(map) = data.as_object_mut() {
                            map.insert("calls".into(), calls(&state, account));
                            map.insert("at".into(), json!(state.now()));
                        }
                        let event = json_event("counters", &data);
                        return Some((Ok(event), (rx, refresh, state, account)));
                    }
                }
            }
        },
    );
    let stream = stream::once(async move { Ok(first) }).chain(events);
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}
