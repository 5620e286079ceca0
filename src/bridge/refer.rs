//! Blind transfer (RFC 3515): instead of a second leg, the callee's own leg is asked with
//! REFER to call the target itself; the NOTIFYs' sipfrag tell how that goes, and once the
//! target answered (2xx) the callee's leg ends with our BYE, releasing our media.
//!
//! It must not dial anything itself or touch media: the callee's leg does the REFER, and the
//! runner hands this bridge the leg's transfer progress ([`Bridge::callee_event`]).

use std::time::Instant;

use async_trait::async_trait;
use tokio::sync::mpsc;

use super::{Bridge, BridgeEvent, BridgeReport, EndedBy};
use crate::call::{Call, CallEvent};

/// A transfer in progress.
pub struct ReferBridge {
    uri: String,
    started: Instant,
    started_at_ms: i64,
    /// Progress codes passed on from the callee's leg.
    progress_tx: mpsc::UnboundedSender<u16>,
    progress: mpsc::UnboundedReceiver<u16>,
    ring_at: Option<Instant>,
    answered_at: Option<Instant>,
    final_code: Option<u16>,
    done: bool,
}

impl ReferBridge {
    /// Sends the REFER on the callee's leg.
    pub fn start(uri: &str, callee: &Call) -> ReferBridge {
        callee.transfer(uri);
        let (progress_tx, progress) = mpsc::unbounded_channel();
        ReferBridge {
            uri: uri.to_string(),
            started: Instant::now(),
            started_at_ms: chrono::Utc::now().timestamp_millis(),
            progress_tx,
            progress,
            ring_at: None,
            answered_at: None,
            final_code: None,
            done: false,
        }
    }
}

#[async_trait]
impl Bridge for ReferBridge {
    async fn next_event(&mut self) -> Option<BridgeEvent> {
        while !self.done {
            let code = self.progress.recv().await?;
            match code {
                100..=199 => {
                    if code != 100 {
                        self.ring_at.get_or_insert_with(Instant::now);
                    }
                }
                200..=299 => {
                    self.final_code = Some(code);
                    self.answered_at = Some(Instant::now());
                    self.done = true;
                    return Some(BridgeEvent::Connected);
                }
                _ => {
                    self.final_code = Some(code);
                    self.done = true;
                    return Some(BridgeEvent::Failed);
                }
            }
        }
        None
    }

    fn callee_event(&mut self, event: &CallEvent) {
        if let CallEvent::Transfer { code } = event {
            let _ = self.progress_tx.send(*code);
        }
    }

    fn stop(&mut self, _by: EndedBy) {
        // The callee's leg is the runner's to end; a pending transfer ends with it.
        self.done = true;
    }

    async fn finish(self: Box<Self>) -> BridgeReport {
        let ms = |a: Instant, b: Instant| b.saturating_duration_since(a).as_millis() as u64;
        BridgeReport {
            target: self.uri.clone(),
            kind: "refer",
            answered: self.answered_at.is_some(),
            sip_code: self.final_code,
            call_id: None,
            ring_ms: self.ring_at.map(|r| ms(self.started, r)),
            bridge_ms: self.answered_at.map(|a| ms(self.started, a)),
            // Once transferred, the conversation is no longer ours to time.
            talk_ms: 0,
            ended_by: None,
            started_at_ms: self.started_at_ms,
            agent: None,
            agents_skipped: Vec::new(),
            stream: None,
        }
    }
}
