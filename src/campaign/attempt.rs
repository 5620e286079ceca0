//! One call attempt of a campaign: dial the contact through the campaign's trunk, run the
//! call plan on an answer, and report everything the attempt record (CDR) keeps.
//!
//! The call plan for now: play the campaign's message (if any) and hang up; with no message,
//! hang up at once. Answering-machine detection and bridges (connect-to, AI agent) plug in
//! here from their own modules. This is a thin driver: it owns no campaign state and never
//! touches the store; the engine decides what the report means for the contact.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::call::{record_call, Call, CallEvent, CallRequest, CallSummary};
use crate::config::Profile;
use crate::media::wav::{CallRecorder, RecordMode};
use crate::sip::{Outcome, UserAgent};

/// Longest answered campaign call before we hang up ourselves.
pub const MAX_CALL: Duration = Duration::from_secs(3600);

/// What to dial and what to do when someone answers.
#[derive(Debug, Clone)]
pub struct AttemptPlan {
    /// E.164 number (through `profile`) or a SIP URI.
    pub destination: String,
    pub profile: Option<Profile>,
    pub caller_id: Option<String>,
    pub ring_timeout: Duration,
    pub max_duration: Duration,
    /// 8 kHz mono samples played to whoever answers; the call ends when they are done.
    pub message: Option<Arc<Vec<i16>>>,
    /// Stereo recording (far end left, us right) written here when set.
    pub record_to: Option<PathBuf>,
}

/// What became of the attempt.
#[derive(Debug, Clone)]
pub struct AttemptReport {
    pub summary: CallSummary,
    /// The recording, when one was asked for and written.
    pub recording: Option<PathBuf>,
}

/// Why an attempt could not even be placed (no INVITE left): bad destination, no RTP port,
/// trunk at its channel limit. The engine treats these as a failed attempt.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct AttemptError(pub String);

/// Places the call and runs the plan until the call ends. `stop` hangs the call up early
/// (campaign stopped, server shutting down).
pub async fn run_attempt(
    ua: Arc<UserAgent>,
    plan: AttemptPlan,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<AttemptReport, AttemptError> {
    let recorder = match &plan.record_to {
        Some(path) => Some(
            CallRecorder::create(path, RecordMode::Stereo)
                .map_err(|e| AttemptError(format!("recording {}: {e}", path.display())))?,
        ),
        None => None,
    };
    let request = CallRequest {
        destination: plan.destination.clone(),
        profile: plan.profile.clone(),
        caller_id: plan.caller_id.clone().filter(|c| !c.is_empty()),
        ring_timeout: plan.ring_timeout,
        max_duration: plan.max_duration,
        tap_sent: recorder.is_some(),
    };
    let mut call = Call::dial(ua, request)
        .await
        .map_err(|e| AttemptError(e.to_string()))?;
    let recording = tokio::spawn(record_call(
        call.take_audio(),
        call.take_sent_audio(),
        recorder,
    ));
    let mut stopping = *stop.borrow();
    if stopping {
        call.hangup();
    }
    let summary = loop {
        tokio::select! {
            event = call.next_event() => match event {
                Some(CallEvent::Answered { .. }) => match &plan.message {
                    Some(samples) => call.play(samples.as_ref().clone()),
                    None => call.hangup(),
                },
                Some(CallEvent::PlaybackFinished) => call.hangup(),
                Some(CallEvent::Ended(summary)) => break Some(summary),
                Some(_) => {}
                None => break None,
            },
            changed = stop.changed(), if !stopping => {
                if changed.is_err() || *stop.borrow() {
                    stopping = true;
                    call.hangup();
                }
            }
        }
    };
    drop(call);
    let recorded = recording.await;
    let summary = summary.ok_or_else(|| AttemptError("the call ended without a summary".into()))?;
    let recording = match (plan.record_to, recorded) {
        (Some(path), Ok(Ok(()))) if summary.outcome == Outcome::Answered => Some(path),
        (Some(path), Ok(Err(e))) => {
            tracing::warn!(call_id = %summary.call_id, "recording {} incomplete: {e}", path.display());
            Some(path)
        }
        (Some(path), _) => {
            // Nothing was answered: no recording worth keeping.
            let _ = std::fs::remove_file(&path);
            None
        }
        (None, _) => None,
    };
    Ok(AttemptReport { summary, recording })
}
