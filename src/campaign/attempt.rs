//! One call attempt of a campaign: dial the contact through the campaign's trunk, run the
//! call plan on an answer, and report everything the attempt record (CDR) keeps.
//!
//! The call plan: without answering-machine detection, play the campaign's message (if any)
//! and hang up; with no message, hang up at once. With AMD, the received audio goes through
//! the campaign's mode from the answer on, and the verdict picks the branch:
//! * a person (or no verdict in time): the message, as above;
//! * a machine: `machine_action` — hang up at once, leave the voicemail message once the
//!   greeting has ended (beep or silence), or treat it as a person;
//! * a fax, or nobody saying anything: hang up.
//!
//! Bridges (connect-to, AI agent) plug in here from their own modules. This is a thin driver: it owns no campaign state and never
//! touches the store; the engine decides what the report means for the contact.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::amd::{Amd, AmdConfig, AmdEvent, AmdResult};
use crate::call::{record_call, AmdTap, Call, CallEvent, CallRequest, CallSummary};
use crate::campaign::model::MachineAction;
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
    /// Answering-machine detection on the answered call.
    pub amd: Option<AmdConfig>,
    /// What to do when AMD says machine.
    pub machine_action: MachineAction,
    /// Played after a machine's greeting when `machine_action` is leave_message.
    pub voicemail: Option<Arc<Vec<i16>>>,
}

/// What became of the attempt.
#[derive(Debug, Clone)]
pub struct AttemptReport {
    pub summary: CallSummary,
    /// The recording, when one was asked for and written.
    pub recording: Option<PathBuf>,
    /// AMD's result, when the plan asked for detection and the call was answered.
    pub amd: Option<AmdResult>,
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
    // Built before dialing, so a missing runtime or model fails the attempt before any INVITE;
    // off the async workers, since the first one loads the models from disk.
    let amd = match plan.amd {
        Some(cfg) => Some(
            tokio::task::spawn_blocking(move || Amd::new(cfg))
                .await
                .map_err(|e| AttemptError(format!("AMD: {e}")))?
                .map_err(|e| AttemptError(format!("AMD: {e}")))?,
        ),
        None => None,
    };
    let mut call = Call::dial(ua, request)
        .await
        .map_err(|e| AttemptError(e.to_string()))?;
    let (audio, mut tap) = match amd {
        Some(amd) => {
            let (audio, tap) = AmdTap::start(call.take_audio(), amd);
            (audio, Some(tap))
        }
        None => (call.take_audio(), None),
    };
    let recording = tokio::spawn(record_call(audio, call.take_sent_audio(), recorder));
    let mut stopping = *stop.borrow();
    if stopping {
        call.hangup();
    }
    let mut amd_open = tap.is_some();
    // A machine whose greeting is awaited before the voicemail message.
    let mut awaiting_greeting_end = false;
    let summary = loop {
        tokio::select! {
            event = async { tap.as_mut()?.next_event().await }, if amd_open => match event {
                None => amd_open = false,
                Some(event) => on_amd_event(&call, &plan, event, &mut awaiting_greeting_end),
            },
            event = call.next_event() => match event {
                Some(CallEvent::Answered { .. }) => match &tap {
                    Some(tap) => tap.answered(),
                    None => play_or_hang_up(&call, plan.message.as_deref()),
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
    let amd = match tap {
        Some(tap) => tap.result().await,
        None => None,
    };
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
    Ok(AttemptReport {
        summary,
        recording,
        amd,
    })
}

fn play_or_hang_up(call: &Call, samples: Option<&Vec<i16>>) {
    match samples {
        Some(samples) => call.play(samples.clone()),
        None => call.hangup(),
    }
}

/// The call plan's answer to one detection event.
fn on_amd_event(
    call: &Call,
    plan: &AttemptPlan,
    event: AmdEvent,
    awaiting_greeting_end: &mut bool,
) {
    match event {
        // Undecided: give whoever it is the benefit of the doubt.
        AmdEvent::HumanDetected { .. } | AmdEvent::Timeout { .. } => {
            play_or_hang_up(call, plan.message.as_deref())
        }
        AmdEvent::NoSpeech { .. } | AmdEvent::Fax { .. } => call.hangup(),
        AmdEvent::MachineDetected { .. } => match plan.machine_action {
            MachineAction::Hangup => call.hangup(),
            MachineAction::Connect => play_or_hang_up(call, plan.message.as_deref()),
            MachineAction::LeaveMessage => *awaiting_greeting_end = true,
        },
        AmdEvent::MachineGreetingEnded { .. } if *awaiting_greeting_end => {
            *awaiting_greeting_end = false;
            play_or_hang_up(call, plan.voicemail.as_deref());
        }
        AmdEvent::MachineGreetingEnded { .. } | AmdEvent::Beep { .. } => {}
    }
}
