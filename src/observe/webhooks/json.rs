//! The `json` webhook format: the event exactly as `GET /v1/events` shows it (`id`, `kind`,
//! `campaign_id`, `contact_id`, `attempt`, `call_id`, `detail`, `at`).
//!
//! Must not: add anything the events API does not show (one shape to parse for both).

use crate::api::events::EventView;
use crate::store::events::Event;

/// The body.
pub fn body(event: &Event) -> String {
    serde_json::to_string(&EventView::from(event.clone())).unwrap_or_else(|_| "{}".into())
}
