//! `GET /v1/live`: the live monitor as Server-Sent Events. On connect a `snapshot` event holds
//! the account's calls in progress (state, who answered, bridged to whom, talk time), its
//! active campaigns with their counters, and its agents' states; then every call event of the
//! account as it is stored (the SSE event's name is the event's kind, its data the same JSON
//! as `GET /v1/events`, its id the event id), and every [`REFRESH`] a `counters` event with the
//! campaigns and agents again (they change without call events: imports, admin actions).
//! A client that falls more than a few thousand events behind gets a `lagged` event (how many
//! it missed) and should read them from `GET /v1/events`. `GET /v1/live/ws` is the same stream
//! over a WebSocket, one JSON text frame per message (`{"event", "id", "data"}`).
//!
//! Must not: show another account's calls or events, or keep anything per client beyond its
//! stream (a client that goes away ends its stream).

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::Response;
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

/// One message of the live stream: its name (`snapshot`, `counters`, `lagged`, or an event's
/// kind), its data, and the event id for call events.
struct LiveMessage {
    name: String,
    data: Value,
    id: Option<i64>,
}

/// The account's live stream: the snapshot, then each stored event of the account and a
/// `counters` message every [`REFRESH`]; shared by the SSE and the WebSocket forms.
async fn live_messages(
    state: AppState,
    account: i64,
) -> ApiResult<impl Stream<Item = LiveMessage>> {
    let Some(bus) = state.events.clone() else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "this server records no events",
        ));
    };
    // Subscribed before the snapshot is taken: nothing falls between the two (an event may
    // show in both; its id tells).
    let rx = bus.subscribe();
    let mut snapshot = counters(&state, account).await;
    if let Some(map) = snapshot.as_object_mut() {
        map.insert("calls".into(), calls(&state, account));
        map.insert("at".into(), json!(state.now()));
    }
    let first = LiveMessage {
        name: "snapshot".into(),
        data: snapshot,
        id: None,
    };
    let mut refresh = tokio::time::interval(REFRESH);
    refresh.reset();
    let events = stream::unfold(
        (rx, refresh, state, account),
        |(mut rx, mut refresh, state, account)| async move {
            loop {
                tokio::select! {
                    // The server stops: the stream ends (the client may reconnect elsewhere).
                    () = state.closing.cancelled() => return None,
                    received = rx.recv() => match received {
                        Ok(e) if e.account_id == Some(account) => {
                            let view = EventView::from((*e).clone());
                            let message = LiveMessage {
                                name: view.kind.clone(),
                                id: Some(view.id),
                                data: serde_json::to_value(&view).unwrap_or_default(),
                            };
                            return Some((message, (rx, refresh, state, account)));
                        }
                        Ok(_) => continue,
                        Err(RecvError::Lagged(n)) => {
                            let message = LiveMessage {
                                name: "lagged".into(),
                                data: json!({"missed": n}),
                                id: None,
                            };
                            return Some((message, (rx, refresh, state, account)));
                        }
                        Err(RecvError::Closed) => return None,
                    },
                    _ = refresh.tick() => {
                        let mut data = counters(&state, account).await;
                        if let Some(map) = data.as_object_mut() {
                            map.insert("calls".into(), calls(&state, account));
                            map.insert("at".into(), json!(state.now()));
                        }
                        let message = LiveMessage { name: "counters".into(), data, id: None };
                        return Some((message, (rx, refresh, state, account)));
                    }
                }
            }
        },
    );
    Ok(stream::once(async move { first }).chain(events))
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
    let messages = live_messages(state, caller.account_id).await?;
    let events = messages.map(|m| {
        let mut event = SseEvent::default().event(m.name).data(m.data.to_string());
        if let Some(id) = m.id {
            event = event.id(id.to_string());
        }
        Ok(event)
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}

/// The same stream over a WebSocket: one text message per item,
/// `{"event": name, "id": event id or null, "data": …}`.
#[utoipa::path(
    get,
    path = "/v1/live/ws",
    tag = "events",
    responses(
        (status = 101, description = "WebSocket: the same messages as `GET /v1/live`, as JSON text frames"),
        (status = 401, description = "No valid credentials", body = super::error::ErrorBody),
        (status = 503, description = "This server records no events", body = super::error::ErrorBody),
    )
)]
pub async fn live_ws(
    State(state): State<AppState>,
    caller: Caller,
    upgrade: WebSocketUpgrade,
) -> ApiResult<Response> {
    let messages = live_messages(state, caller.account_id).await?;
    Ok(upgrade.on_upgrade(move |socket| send_live(socket, messages)))
}

async fn send_live(mut socket: WebSocket, messages: impl Stream<Item = LiveMessage>) {
    let mut messages = std::pin::pin!(messages);
    loop {
        tokio::select! {
            next = messages.next() => {
                let Some(m) = next else { break };
                let text = json!({"event": m.name, "id": m.id, "data": m.data}).to_string();
                if socket.send(Message::Text(text.into())).await.is_err() {
                    break;
                }
            }
            // The client's frames are not read for anything but its close.
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            }
        }
    }
}
