//! Live calls, reachable while they run: an AI agent's REST hang-up, a transfer asked through
//! the API, a status query. Each running call registers under its Twilio-shaped call SID
//! ([`LiveCalls::register`]); the registration goes away when the call's runner ends, so a
//! call that is over is simply not found.
//!
//! It must not act on a call itself: it hands [`Control`] requests to the call's runner.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::{mpsc, watch};

use crate::bridge::{BridgeTarget, EndedBy};

/// A request to a running call.
#[derive(Debug)]
pub enum Control {
    /// Hang up; `by` is who asked (recorded as who ended the bridged call).
    Hangup { by: EndedBy },
    /// Hand the person to this target; the current bridge (an AI agent) is released once the
    /// target answers.
    Transfer { target: BridgeTarget },
}

/// Twilio's call statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallStatus {
    Queued,
    Ringing,
    InProgress,
    Completed,
    Busy,
    NoAnswer,
    Failed,
    Canceled,
}

impl CallStatus {
    pub fn name(self) -> &'static str {
        match self {
            CallStatus::Queued => "queued",
            CallStatus::Ringing => "ringing",
            CallStatus::InProgress => "in-progress",
            CallStatus::Completed => "completed",
            CallStatus::Busy => "busy",
            CallStatus::NoAnswer => "no-answer",
            CallStatus::Failed => "failed",
            CallStatus::Canceled => "canceled",
        }
    }
}

/// Turns a transfer target as a person writes it (a number, a `sip:` URI, an agent pool's
/// name) into a bridge target; given by whoever placed the call (it knows the trunk and the
/// pools).
pub type Resolver = Arc<dyn Fn(&str) -> Result<BridgeTarget, String> + Send + Sync>;

/// What the registry knows of one live call.
#[derive(Clone)]
pub struct LiveCall {
    pub call_sid: String,
    /// The outdial account the call belongs to (`None`: a call placed from the CLI).
    pub account_id: Option<i64>,
    pub to: String,
    pub from: String,
    /// When it was registered (ms since the epoch).
    pub created_at_ms: i64,
    control: mpsc::UnboundedSender<Control>,
    status: watch::Receiver<CallStatus>,
    resolve: Resolver,
}

impl std::fmt::Debug for LiveCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveCall")
            .field("call_sid", &self.call_sid)
            .field("account_id", &self.account_id)
            .field("status", &self.status())
            .finish()
    }
}

impl LiveCall {
    /// Asks the call to hand its person to `target` (as a person writes it).
    pub fn transfer(&self, target: &str) -> Result<(), String> {
        let target = (self.resolve)(target)?;
        if self.send(Control::Transfer { target }) {
            Ok(())
        } else {
            Err("the call has ended".into())
        }
    }

    pub fn status(&self) -> CallStatus {
        *self.status.borrow()
    }

    /// Passes a request to the call's runner; `false` when the call has just ended.
    pub fn send(&self, control: Control) -> bool {
        self.control.send(control).is_ok()
    }
}

/// The registry of running calls; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct LiveCalls {
    calls: Arc<Mutex<HashMap<String, LiveCall>>>,
}

/// The runner's side of a registration: requests in, status out. Dropping it unregisters.
#[derive(Debug)]
pub struct Registration {
    calls: LiveCalls,
    call_sid: String,
    pub requests: mpsc::UnboundedReceiver<Control>,
    status: watch::Sender<CallStatus>,
}

impl Registration {
    pub fn set_status(&self, status: CallStatus) {
        let _ = self.status.send(status);
    }

    pub fn call_sid(&self) -> &str {
        &self.call_sid
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.calls.calls.lock().remove(&self.call_sid);
    }
}

impl LiveCalls {
    pub fn new() -> LiveCalls {
        LiveCalls::default()
    }

    /// Registers a call about to be placed; `resolve` reads transfer targets for it.
    pub fn register(
        &self,
        call_sid: &str,
        account_id: Option<i64>,
        from: &str,
        to: &str,
        resolve: Resolver,
    ) -> Registration {
        let (control, requests) = mpsc::unbounded_channel();
        let (status_tx, status) = watch::channel(CallStatus::Queued);
        self.calls.lock().insert(
            call_sid.to_string(),
            LiveCall {
                call_sid: call_sid.to_string(),
                account_id,
                to: to.to_string(),
                from: from.to_string(),
                created_at_ms: chrono::Utc::now().timestamp_millis(),
                control,
                status,
                resolve,
            },
        );
        Registration {
            calls: self.clone(),
            call_sid: call_sid.to_string(),
            requests,
            status: status_tx,
        }
    }

    /// The live call with this SID.
    pub fn get(&self, call_sid: &str) -> Option<LiveCall> {
        self.calls.lock().get(call_sid).cloned()
    }

    /// The live calls of an account, oldest first.
    pub fn of_account(&self, account_id: i64) -> Vec<LiveCall> {
        let mut calls: Vec<LiveCall> = self
            .calls
            .lock()
            .values()
            .filter(|c| c.account_id == Some(account_id))
            .cloned()
            .collect();
        calls.sort_by_key(|c| c.created_at_ms);
        calls
    }

    /// How many calls are live.
    pub fn len(&self) -> usize {
        self.calls.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_is_found_while_registered_and_gone_after() {
        let live = LiveCalls::new();
        let resolve: Resolver = Arc::new(|t: &str| Ok(BridgeTarget::Refer { uri: t.to_string() }));
        let mut reg = live.register("CA1", Some(7), "+1555", "+1666", resolve);
        let call = live.get("CA1").expect("registered");
        assert_eq!(call.account_id, Some(7));
        assert_eq!(call.status(), CallStatus::Queued);
        reg.set_status(CallStatus::InProgress);
        assert_eq!(call.status(), CallStatus::InProgress);
        assert!(call.send(Control::Hangup { by: EndedBy::Agent }));
        assert!(matches!(
            reg.requests.try_recv(),
            Ok(Control::Hangup { by: EndedBy::Agent })
        ));
        call.transfer("sip:desk@example.com").expect("resolved");
        assert!(matches!(
            reg.requests.try_recv(),
            Ok(Control::Transfer {
                target: BridgeTarget::Refer { .. }
            })
        ));
        assert_eq!(live.of_account(7).len(), 1);
        assert!(live.of_account(8).is_empty());
        drop(reg);
        assert!(live.get("CA1").is_none());
        assert!(!call.send(Control::Hangup { by: EndedBy::Agent }));
    }
}
