//! The live board: every call in progress and where it stands (dialing, ringing, answered,
//! AMD listening, the verdict, bridged to whom, talk time), kept from the call events as they
//! are stored, for the live monitor (`GET /v1/live`).
//!
//! Sans-IO: [`LiveBoard::apply`] takes one stored event; [`LiveBoard::calls`] reads an
//! account's calls. A call leaves the board at its `completed` event, or when it has been
//! silent for [`STALE_MS`] (its node died; crash recovery writes its record elsewhere).
//!
//! Must not: hold more than the calls in progress, or show one account another's calls.

use std::collections::HashMap;

use serde::Serialize;

use crate::campaign::model::Millis;
use crate::store::events::Event;

/// A call with no event for this long is taken off the board (its node is gone).
pub const STALE_MS: Millis = 4 * 3600 * 1000;

/// Where a call in progress stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CallState {
    /// The INVITE is out, nothing heard yet.
    Dialing,
    Ringing,
    /// Answered, the detector listening (or no detection).
    Answered,
    /// The verdict is in: a person (waiting to be connected, or hearing the message).
    Human,
    /// The verdict is in: a machine (waiting for its greeting to end, or the voicemail).
    Machine,
    /// Connected to a target.
    Bridged,
}

impl CallState {
    pub const ALL: [CallState; 6] = [
        CallState::Dialing,
        CallState::Ringing,
        CallState::Answered,
        CallState::Human,
        CallState::Machine,
        CallState::Bridged,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CallState::Dialing => "dialing",
            CallState::Ringing => "ringing",
            CallState::Answered => "answered",
            CallState::Human => "human",
            CallState::Machine => "machine",
            CallState::Bridged => "bridged",
        }
    }
}

/// One call in progress.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LiveCall {
    pub call_id: String,
    #[serde(skip)]
    pub account_id: Option<i64>,
    pub campaign_id: Option<i64>,
    pub contact_id: Option<i64>,
    pub direction: Option<String>,
    pub to: Option<String>,
    pub state: CallState,
    /// When the call was placed (ms since the epoch).
    pub started_at: Millis,
    pub answered_at: Option<Millis>,
    /// Twilio's AnsweredBy, once known.
    pub answered_by: Option<String>,
    /// Who the person is connected to, while bridged.
    pub bridged_to: Option<String>,
    pub bridged_at: Option<Millis>,
    /// The last event's time.
    pub updated_at: Millis,
}

impl LiveCall {
    /// Answered time so far at `now` (ms), `None` before the answer.
    pub fn talk_ms(&self, now: Millis) -> Option<Millis> {
        self.answered_at.map(|a| (now - a).max(0))
    }
}

/// The calls in progress, by Call-ID.
#[derive(Debug, Default)]
pub struct LiveBoard {
    calls: HashMap<String, LiveCall>,
}

impl LiveBoard {
    /// Takes one stored event into account.
    pub fn apply(&mut self, event: &Event) {
        let Some(call_id) = event.call_id.as_deref() else {
            return;
        };
        let d = &event.detail;
        let text = |k: &str| d.get(k).and_then(|v| v.as_str()).map(str::to_string);
        if event.kind == "completed" {
            self.calls.remove(call_id);
            return;
        }
        let call = self
            .calls
            .entry(call_id.to_string())
            .or_insert_with(|| LiveCall {
                call_id: call_id.to_string(),
                account_id: event.account_id,
                campaign_id: event.campaign_id,
                contact_id: event.contact_id,
                direction: None,
                to: None,
                state: CallState::Dialing,
                started_at: event.at,
                answered_at: None,
                answered_by: None,
                bridged_to: None,
                bridged_at: None,
                updated_at: event.at,
            });
        call.updated_at = event.at;
        match event.kind.as_str() {
            "initiated" => {
                call.direction = text("direction");
                call.to = text("to");
                call.started_at = event.at;
            }
            "ringing" | "early_media" if call.answered_at.is_none() => {
                call.state = CallState::Ringing;
            }
            "answered" => {
                call.state = CallState::Answered;
                call.answered_at = Some(event.at);
            }
            "amd" | "machine_end" => {
                call.answered_by = text("answered_by");
                if call.state != CallState::Bridged {
                    call.state = match text("verdict").as_deref() {
                        Some("human") => CallState::Human,
                        Some("machine") | Some("fax") => CallState::Machine,
                        _ if event.kind == "machine_end" => CallState::Machine,
                        _ => call.state,
                    };
                }
            }
            "bridged" => {
                call.state = CallState::Bridged;
                call.bridged_to = text("target").or_else(|| Some("transfer".into()));
                call.bridged_at = Some(event.at);
            }
            "unbridged" => {
                call.state = CallState::Human;
                call.bridged_to = None;
                call.bridged_at = None;
            }
            _ => {}
        }
    }

    /// Takes off calls silent since before `now - STALE_MS`.
    pub fn sweep(&mut self, now: Millis) {
        self.calls.retain(|_, c| now - c.updated_at < STALE_MS);
    }

    /// Calls in progress by state (every state listed, zeros included).
    pub fn counts_by_state(&self) -> Vec<(&'static str, usize)> {
        CallState::ALL
            .iter()
            .map(|s| {
                (
                    s.as_str(),
                    self.calls.values().filter(|c| c.state == *s).count(),
                )
            })
            .collect()
    }

    /// An account's calls in progress, oldest first.
    pub fn calls(&self, account_id: i64) -> Vec<LiveCall> {
        let mut calls: Vec<LiveCall> = self
            .calls
            .values()
            .filter(|c| c.account_id == Some(account_id))
            .cloned()
            .collect();
        calls.sort_by(|a, b| (a.started_at, &a.call_id).cmp(&(b.started_at, &b.call_id)));
        calls
    }

    pub fn len(&self) -> usize {
        self.calls.len()
    }

    pub fn is_empty(&self) -> bool {
        self.calls.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(id: i64, account: i64, call: &str, kind: &str, detail: serde_json::Value) -> Event {
        Event {
            id,
            account_id: Some(account),
            campaign_id: Some(1),
            contact_id: Some(id),
            attempt: Some(1),
            call_id: Some(call.into()),
            kind: kind.into(),
            detail,
            at: id * 1000,
        }
    }

    #[test]
    fn a_call_moves_from_dialing_to_bridged_and_leaves_at_completed() {
        let mut board = LiveBoard::default();
        let steps = [
            (
                "initiated",
                json!({"direction": "outbound", "to": "+15551230001"}),
                CallState::Dialing,
            ),
            ("ringing", json!({"code": 180}), CallState::Ringing),
            ("answered", json!({"codec": "PCMU"}), CallState::Answered),
            (
                "amd",
                json!({"verdict": "human", "answered_by": "human"}),
                CallState::Human,
            ),
            (
                "bridged",
                json!({"target": "pool:sales", "kind": "pool"}),
                CallState::Bridged,
            ),
            ("dtmf", json!({"digit": "5"}), CallState::Bridged),
            ("unbridged", json!({}), CallState::Human),
        ];
        for (i, (kind, detail, state)) in steps.into_iter().enumerate() {
            board.apply(&event(i as i64 + 1, 7, "a@x", kind, detail));
            let calls = board.calls(7);
            assert_eq!(calls.len(), 1);
            assert_eq!(calls[0].state, state, "after {kind}");
            if kind == "bridged" {
                assert_eq!(calls[0].bridged_to.as_deref(), Some("pool:sales"));
            }
        }
        let call = &board.calls(7)[0];
        assert_eq!(call.to.as_deref(), Some("+15551230001"));
        assert_eq!(call.answered_by.as_deref(), Some("human"));
        assert_eq!(call.talk_ms(10_000), Some(7_000), "answered at 3 s");
        assert!(board.calls(8).is_empty(), "another account sees nothing");
        board.apply(&event(
            9,
            7,
            "a@x",
            "completed",
            json!({"outcome": "answered"}),
        ));
        assert!(board.is_empty());
    }

    #[test]
    fn machines_and_silent_calls() {
        let mut board = LiveBoard::default();
        board.apply(&event(1, 7, "m@x", "answered", json!({})));
        board.apply(&event(
            2,
            7,
            "m@x",
            "machine_end",
            json!({"how": "beep", "answered_by": "machine_end_beep"}),
        ));
        assert_eq!(board.calls(7)[0].state, CallState::Machine);
        board.apply(&event(3, 7, "n@x", "initiated", json!({})));
        // Events without a Call-ID (campaign changes) are not calls.
        let mut status = event(4, 7, "", "campaign_status", json!({}));
        status.call_id = None;
        board.apply(&status);
        assert_eq!(board.len(), 2);
        board.sweep(2500 + STALE_MS);
        assert_eq!(
            board.len(),
            1,
            "m@x silent since 2 s is gone, n@x (3 s) stays"
        );
        board.sweep(4000 + STALE_MS);
        assert!(board.is_empty());
    }
}
