//! One call attempt of a campaign: the campaign's settings turned into a call request and a
//! flow plan, run through the one call-flow runner ([`crate::flow::run`]; for a callback we
//! answer, [`crate::flow::run_answered`]), and the report the attempt record (CDR) keeps.
//!
//! The plan itself (AMD verdict → message, voicemail after the greeting, bridge to the
//! `connect_to` target, abandon, hang-up) is the flow's; this is a thin adapter. It owns no
//! campaign state and never touches the store; the engine decides what the report means for
//! the contact.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::amd::{Amd, AmdConfig, AmdResult};
use crate::bridge::BridgeReport;
use crate::call::{AnswerRequest, Call, CallRequest, CallSummary};
use crate::campaign::model::MachineAction;
use crate::config::Profile;
use crate::flow::core::FlowRecord;
use crate::flow::{Connect, FlowPlan};
use crate::media::wav::{CallRecorder, RecordMode};
use crate::sip::{Outcome, UserAgent};

/// Longest answered campaign call before we hang up ourselves.
pub const MAX_CALL: Duration = Duration::from_secs(3600);

/// What to dial and what to do when someone answers.
#[derive(Debug)]
pub struct AttemptPlan {
    /// E.164 number (through `profile`) or a SIP URI.
    pub destination: String,
    pub profile: Option<Profile>,
    pub caller_id: Option<String>,
    pub ring_timeout: Duration,
    pub max_duration: Duration,
    /// The person's message plan (empty: connect when there is a target, else hang up).
    pub steps: Vec<crate::flow::steps::Step>,
    /// The plan's files, loaded, by name.
    pub prompts: std::collections::HashMap<String, Arc<Vec<i16>>>,
    /// Where a `record` step writes the callee's reply.
    pub reply_to: Option<PathBuf>,
    /// Stereo recording (far end left, us right) written here when set.
    pub record_to: Option<PathBuf>,
    /// Answering-machine detection on the answered call.
    pub amd: Option<AmdConfig>,
    /// What to do when AMD says machine.
    pub machine_action: MachineAction,
    /// Played after a machine's greeting when `machine_action` is leave_message.
    pub voicemail: Option<Arc<Vec<i16>>>,
    /// Where a person is connected (the campaign's `connect_to`); the message is not played then.
    pub connect: Option<Connect>,
    /// Played to a person who could not be connected in time.
    pub abandon_message: Option<Arc<Vec<i16>>>,
    /// Who the call is to an AI agent (its SIDs).
    pub stream: Option<crate::bridge::agent::StreamInfo>,
    /// The call's entry in the live-call registry (REST hang-up, transfer).
    pub registration: Option<crate::flow::control::Registration>,
    /// Told the dialog's facts at answer ([`CallRequest::on_answer`]).
    pub on_answer: Option<tokio::sync::mpsc::UnboundedSender<crate::sip::orphan::DialogFacts>>,
    /// A callback to answer instead of dialing `destination` (which is then the caller's
    /// number, and `caller_id` the number called).
    pub incoming: Option<crate::sip::inbound::IncomingCall>,
    /// Where the call's events go.
    pub events: Option<crate::observe::events::EventSink>,
}

/// What became of the attempt.
#[derive(Debug, Clone)]
pub struct AttemptReport {
    pub summary: CallSummary,
    /// Who or what ended the call (`None`: never answered).
    pub ended_by: Option<crate::bridge::EndedBy>,
    /// The recording, when one was asked for and written.
    pub recording: Option<PathBuf>,
    /// AMD's result, when the plan asked for detection and the call was answered.
    pub amd: Option<AmdResult>,
    /// The bridge's record, when a person was to be connected.
    pub bridge: Option<BridgeReport>,
    /// What the plan did (abandoned, queue wait, voicemail left, message played, DNC asked).
    pub flow: FlowRecord,
    /// Digits entered in the plan's collects.
    pub digits: String,
    /// The callee's recorded reply.
    pub reply: Option<PathBuf>,
    /// The call's SID (what an AI agent saw).
    pub call_sid: Option<String>,
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
    mut plan: AttemptPlan,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Result<AttemptReport, AttemptError> {
    let recorder = match &plan.record_to {
        Some(path) => Some(
            CallRecorder::create(path, RecordMode::Stereo)
                .map_err(|e| AttemptError(format!("recording {}: {e}", path.display())))?,
        ),
        None => None,
    };
    let mut request = CallRequest::new(
        plan.destination.clone(),
        plan.ring_timeout,
        plan.max_duration,
    );
    request.profile = plan.profile.clone();
    request.caller_id = plan.caller_id.clone().filter(|c| !c.is_empty());
    request.tap_sent = recorder.is_some();
    request.on_answer = plan.on_answer.clone();
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
    let call_sid = plan.stream.as_ref().map(|s| s.ids.call_sid.clone());
    let flow_plan = FlowPlan {
        send_dtmf: None,
        amd,
        steps: plan.steps.clone(),
        prompts: plan.prompts.clone(),
        reply_to: plan.reply_to.clone(),
        voicemail: plan.voicemail.clone(),
        abandon_message: plan.abandon_message.clone(),
        machine_action: plan.machine_action,
        recorder,
        connect: plan.connect.clone(),
        hang_up_when_idle: true,
        stream: plan.stream.clone(),
        registration: plan.registration,
        events: plan.events.take(),
    };
    let report = match plan.incoming.take() {
        Some(incoming) => {
            let answer = AnswerRequest {
                profile: plan.profile.clone(),
                max_duration: plan.max_duration,
                tap_sent: request.tap_sent,
            };
            let person = crate::flow::Person {
                number: plan.destination.clone(),
                from: plan.caller_id.clone().unwrap_or_default(),
                max_duration: plan.max_duration,
            };
            let call = Call::answer(ua.clone(), incoming, answer)
                .await
                .map_err(|e| AttemptError(e.to_string()))?;
            crate::flow::run_answered(ua, call, person, flow_plan, stop).await
        }
        None => crate::flow::run(ua, request, flow_plan, stop).await,
    }
    .map_err(|e| AttemptError(e.to_string()))?;
    let recording = match (plan.record_to, &report.recording_error) {
        (Some(path), None) if report.summary.outcome == Outcome::Answered => Some(path),
        (Some(path), Some(e)) if report.summary.outcome == Outcome::Answered => {
            tracing::warn!(call_id = %report.summary.call_id, "recording {} incomplete: {e}", path.display());
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
        summary: report.summary,
        ended_by: report.ended_by,
        recording,
        amd: report.amd,
        bridge: report.bridge,
        flow: report.flow,
        digits: report.digits,
        reply: report.reply,
        call_sid,
    })
}
