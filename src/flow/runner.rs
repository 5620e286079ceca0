//! The runner of one call's plan: places the call, runs the detector and the recorder beside
//! it, and carries out what the [`FlowCore`] decides — digits, prompts, the bridge, hang-up —
//! until the call is over; then returns everything the attempt record keeps.
//!
//! A person to be streamed to an AI agent gets the agent's socket opened as the call is placed
//! (warm start), so the stream starts the moment the verdict is in. Requests from outside
//! (an agent's REST hang-up, a transfer through the API) arrive through the call's
//! [`Registration`] in the live-call registry; a transfer (or an AI agent that leaves with a
//! hand-off target) starts a second bridge, and the first is released once it connects.
//!
//! `outdial call` and the campaign engine both run their calls through [`run`], and a callback
//! we answer through [`run_answered`] — the same script from the answer on; there is no
//! second copy of it. It must not decide anything (the core does) nor touch the
//! store (the caller records the [`FlowReport`]).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tracing::warn;

use super::control::{CallStatus, Control, Registration};
use super::core::{BridgeInput, FlowCore, FlowRecord, FlowSettings, Input, Output, Prompt};
use super::record::{record_call, ReplyRequest};
use super::steps::Step;
use super::tap::AmdTap;
use crate::amd::{Amd, AmdEvent, AmdResult, GreetingEnd};
use crate::bridge::agent::{twilio, AgentBridge, StreamInfo, Warm};
use crate::bridge::{
    self, leg_ended_by, Bridge, BridgeContext, BridgeEvent, BridgeReport, BridgeTarget,
    CalleeAudio, EndedBy,
};
use crate::call::{Call, CallError, CallEvent, CallRequest, CallSummary};
use crate::campaign::model::MachineAction;
use crate::media::wav::CallRecorder;
use crate::observe::events::{CallEventKind, EventSink};
use crate::sip::outcome::Outcome;
use crate::sip::UserAgent;

/// How long each digit of [`FlowPlan::send_dtmf`] is held.
pub const DTMF_MS: u32 = 100;

/// Where a person is connected, and how long they may wait for it.
#[derive(Debug, Clone)]
pub struct Connect {
    pub target: BridgeTarget,
    /// From the person's verdict to a connected bridge, at most; then the abandon message.
    pub queue_timeout: Duration,
    /// How long the target may ring.
    pub ring_timeout: Duration,
    pub campaign_id: Option<i64>,
    pub contact_id: Option<i64>,
    /// Sent to an AI agent when its stream starts (`customParameters`), besides the verdict
    /// (`AnsweredBy`, `amd_verdict`) the runner adds.
    pub custom: BTreeMap<String, String>,
}

/// What to do once the call is answered.
pub struct FlowPlan {
    /// Digits sent at the answer (RFC 4733 when negotiated, else in-band).
    pub send_dtmf: Option<String>,
    /// Answering-machine detection; `None` treats whoever answers as a person.
    pub amd: Option<Amd>,
    /// The person's message plan (play, collect, record, connect, hang up); empty: connect to
    /// the target when there is one, else nothing.
    pub steps: Vec<Step>,
    /// The audio of every file the plan names, by name (loaded before dialing).
    pub prompts: HashMap<String, Arc<Vec<i16>>>,
    /// Where a `record` step writes the callee's reply.
    pub reply_to: Option<PathBuf>,
    /// Played after a machine's greeting (machine_action = leave_message).
    pub voicemail: Option<Arc<Vec<i16>>>,
    /// Played to a person no agent could take in time.
    pub abandon_message: Option<Arc<Vec<i16>>>,
    pub machine_action: MachineAction,
    pub recorder: Option<CallRecorder>,
    pub connect: Option<Connect>,
    /// Hang up once nothing is left to do; otherwise wait for the callee to hang up.
    pub hang_up_when_idle: bool,
    /// Who the call is to an AI agent (SIDs, numbers); drawn per call when `None`.
    pub stream: Option<StreamInfo>,
    /// The call's entry in the live-call registry (REST hang-up, transfer, status).
    pub registration: Option<Registration>,
    /// Where the call's events go (a campaign's calls); `None`: nowhere.
    pub events: Option<EventSink>,
}

impl FlowPlan {
    /// A plan that does nothing but wait for the callee to hang up.
    pub fn wait() -> FlowPlan {
        FlowPlan {
            send_dtmf: None,
            amd: None,
            steps: Vec::new(),
            prompts: HashMap::new(),
            reply_to: None,
            voicemail: None,
            abandon_message: None,
            machine_action: MachineAction::Hangup,
            recorder: None,
            connect: None,
            hang_up_when_idle: false,
            stream: None,
            registration: None,
            events: None,
        }
    }
}

/// Everything the attempt record keeps.
#[derive(Debug, Clone)]
pub struct FlowReport {
    pub summary: CallSummary,
    /// Who or what ended the call (`None`: never answered): a connected bridge's answer (the
    /// agent's BYE ends the callee's leg from our side), else the callee leg's.
    pub ended_by: Option<EndedBy>,
    /// The detector's result, when the plan asked for detection and the call was answered.
    pub amd: Option<AmdResult>,
    pub bridge: Option<BridgeReport>,
    /// The bridge the person was handed to afterwards (a transfer, or an AI agent's hand-off).
    pub transfer: Option<BridgeReport>,
    pub flow: FlowRecord,
    /// Digits the callee entered in the plan's collects, in order.
    pub digits: String,
    /// The callee's reply, when a `record` step wrote one.
    pub reply: Option<PathBuf>,
    /// Why the recording is incomplete, when it is.
    pub recording_error: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum FlowError {
    /// Nothing was dialed: bad destination, no RTP port, trunk full…
    #[error(transparent)]
    Call(#[from] CallError),
    #[error("the call ended without a summary")]
    NoSummary,
}

/// Places the call and runs the plan until the call ends. `stop` turning true hangs up
/// (campaign stopped, server shutting down, Ctrl-C).
pub async fn run(
    ua: Arc<UserAgent>,
    request: CallRequest,
    plan: FlowPlan,
    stop: watch::Receiver<bool>,
) -> Result<FlowReport, FlowError> {
    let person = Person {
        number: request.destination.clone(),
        from: request.caller_id.clone().unwrap_or_default(),
        max_duration: request.max_duration,
    };
    let call = Call::dial(ua.clone(), request).await?;
    drive(ua, call, person, plan, stop, "outbound").await
}

/// The person the flow serves: the callee of [`run`], the caller of [`run_answered`].
#[derive(Debug, Clone)]
pub struct Person {
    /// The person's number (the callee we dial, or the caller who called us).
    pub number: String,
    /// The other party's number as an AI agent is told (our caller ID, or the number called).
    pub from: String,
    /// Longest call.
    pub max_duration: Duration,
}

/// Runs the plan on an inbound call we answer ([`Call::answer`]) until it ends: the same
/// script as [`run`] from the answer on (a plan for an inbound call has no detection).
pub async fn run_answered(
    ua: Arc<UserAgent>,
    call: Call,
    person: Person,
    plan: FlowPlan,
    stop: watch::Receiver<bool>,
) -> Result<FlowReport, FlowError> {
    drive(ua, call, person, plan, stop, "inbound").await
}

async fn drive(
    ua: Arc<UserAgent>,
    mut call: Call,
    person: Person,
    plan: FlowPlan,
    mut stop: watch::Receiver<bool>,
    direction: &'static str,
) -> Result<FlowReport, FlowError> {
    let mut events = plan.events;
    if let Some(sink) = events.as_mut() {
        sink.set_call_id(call.call_id());
        sink.emit(
            CallEventKind::Initiated,
            json!({"direction": direction, "to": person.number, "from": person.from}),
        );
    }
    let settings = FlowSettings {
        send_dtmf: plan.send_dtmf.is_some(),
        detect: plan.amd.is_some(),
        steps: plan.steps,
        voicemail: plan.voicemail.is_some(),
        abandon_message: plan.abandon_message.is_some(),
        machine_action: plan.machine_action,
        connect: plan.connect.is_some(),
        queue_timeout: plan
            .connect
            .as_ref()
            .map_or(Duration::ZERO, |c| c.queue_timeout),
        hang_up_when_idle: plan.hang_up_when_idle,
    };
    let callee_number = person.number.clone();
    let max_duration = person.max_duration;
    let stream = plan.stream.clone().unwrap_or_else(|| StreamInfo {
        ids: twilio::StreamIds {
            account_sid: twilio::account_sid(0),
            call_sid: twilio::random_sid("CA"),
            stream_sid: twilio::random_sid("MZ"),
        },
        from: person.from.clone(),
        to: person.number.clone(),
    });
    let mut registration = plan.registration;
    // Warm start: the agent's socket opens while the call rings and the detector listens.
    let warm = match plan.connect.as_ref().map(|c| &c.target) {
        Some(BridgeTarget::Agent(agent)) => {
            Some(Warm::connect(agent.as_ref().clone(), stream.clone()))
        }
        _ => None,
    };
    if let Some(r) = &registration {
        r.set_status(CallStatus::Ringing);
    }
    let (feed, mut tap) = match plan.amd {
        Some(amd) => {
            let (feed, tap) = AmdTap::start(amd, call.hear_tones_beside());
            (Some(feed), Some(tap))
        }
        None => (None, None),
    };
    let recorded_call = plan.recorder.is_some();
    let (reply_tx, reply_rx) = mpsc::unbounded_channel();
    let callee_audio = CalleeAudio::default();
    // An AI agent's stream takes the person's audio from the verdict on: every frame comes.
    let gate = warm.is_none().then(|| call.frame_gate());
    let recording = tokio::spawn(record_call(
        call.take_audio(),
        call.take_sent_audio(),
        plan.recorder,
        reply_rx,
        callee_audio.clone(),
        feed,
        gate,
    ));

    let mut run = Run {
        core: FlowCore::new(settings),
        call,
        bridge: None,
        bridge_open: false,
        handoff: None,
        handoff_open: false,
        transfer: None,
        first_bridge: None,
        warm,
        stream,
        callee_audio,
        answered_by: None,
        detecting: tap.is_some(),
        tap_started: false,
        pending: Vec::new(),
        ua,
        callee_number,
        max_duration,
        send_dtmf: plan.send_dtmf,
        prompts: plan.prompts,
        reply_to: plan.reply_to,
        replies: reply_tx,
        reply_done: None,
        reply: None,
        voicemail: plan.voicemail,
        abandon_message: plan.abandon_message,
        connect: plan.connect,
        recording: recorded_call,
        events,
        early_media: false,
        abandoned: false,
    };
    let mut stopping = *stop.borrow();
    if stopping {
        run.feed(Input::Stop, tap.as_ref()).await;
    }
    let mut amd_open = tap.is_some();
    let mut control_open = registration.is_some();
    let summary = loop {
        let deadline = run.core.poll_timeout().map(Instant::from_std);
        tokio::select! {
            event = async { tap.as_mut()?.next_event().await }, if amd_open => match event {
                None => amd_open = false,
                Some(event) => {
                    run.note_verdict(&event);
                    run.emit_amd(&event);
                    run.feed(Input::Amd(event), tap.as_ref()).await
                }
            },
            request = async { registration.as_mut()?.requests.recv().await }, if control_open => {
                match request {
                    None => control_open = false,
                    Some(Control::Hangup { by }) => {
                        if let Some(b) = run.bridge.as_mut() {
                            b.stop(by);
                        }
                        run.feed(Input::Stop, tap.as_ref()).await;
                    }
                    Some(Control::Transfer { target }) => {
                        run.hand_off(target).await;
                    }
                }
            },
            event = run.call.next_event() => match event {
                Some(CallEvent::Ringing { code, early_media }) => {
                    run.emit(CallEventKind::Ringing, json!({"code": code}));
                    if early_media && !run.early_media {
                        run.early_media = true;
                        run.emit(CallEventKind::EarlyMedia, json!({"code": code}));
                    }
                }
                Some(CallEvent::Answered { codec }) => {
                    run.emit(CallEventKind::Answered, json!({"codec": codec.name()}));
                    if let Some(r) = &registration {
                        r.set_status(CallStatus::InProgress);
                    }
                    run.feed(Input::Answered, tap.as_ref()).await
                }
                Some(CallEvent::PlaybackFinished) => {
                    run.feed(Input::PlaybackFinished, tap.as_ref()).await
                }
                Some(CallEvent::Ended(summary)) => {
                    // The callee's BYE, or ours (a limit, a stop).
                    let by = summary
                        .hangup
                        .map_or(EndedBy::System, |h| leg_ended_by(h, EndedBy::Callee));
                    for b in run.bridge.iter_mut().chain(run.handoff.iter_mut()) {
                        b.stop(by);
                    }
                    if let Some(r) = &registration {
                        r.set_status(final_status(&summary));
                    }
                    run.feed(Input::CalleeEnded, tap.as_ref()).await;
                    break Some(*summary);
                }
                Some(other) => {
                    if let Some(b) = run.bridge.as_mut() {
                        b.callee_event(&other);
                    }
                    if let Some(b) = run.handoff.as_mut() {
                        b.callee_event(&other);
                    }
                    if let CallEvent::Dtmf(d) = other {
                        run.emit(
                            CallEventKind::Dtmf,
                            json!({"digit": d.digit.to_string(), "duration_ms": d.duration_ms}),
                        );
                        run.feed(Input::Dtmf(d.digit), tap.as_ref()).await;
                    }
                }
                None => break None,
            },
            event = next_bridge_event(&mut run.bridge), if run.bridge_open => {
                match event {
                    Some(BridgeEvent::Connected) => {
                        run.emit_bridged(false);
                        run.feed(Input::Bridge(BridgeInput::Connected), tap.as_ref()).await
                    }
                    Some(BridgeEvent::Failed) => {
                        run.feed(Input::Bridge(BridgeInput::Failed), tap.as_ref()).await
                    }
                    Some(BridgeEvent::Ended) => {
                        run.emit(CallEventKind::Unbridged, json!({}));
                        run.feed(Input::Bridge(BridgeInput::Ended), tap.as_ref()).await
                    }
                    Some(BridgeEvent::HoldCallee(on)) => run.call.hold(on),
                    Some(BridgeEvent::Agent { what, name }) => {
                        run.emit(CallEventKind::AgentEvent, json!({"what": what, "name": name}));
                    }
                    Some(BridgeEvent::HandOff(target)) => {
                        if let Some(b) = run.bridge.as_mut() {
                            b.stop(EndedBy::Agent);
                        }
                        if !run.hand_off(target).await {
                            run.feed(Input::Bridge(BridgeInput::Ended), tap.as_ref()).await
                        }
                    }
                    None => run.bridge_open = false,
                }
            },
            event = next_bridge_event(&mut run.handoff), if run.handoff_open => {
                match event {
                    Some(BridgeEvent::Connected) => {
                        run.emit_bridged(true);
                        run.handoff_connected().await
                    }
                    Some(BridgeEvent::Failed) => {
                        warn!("transfer target not reached: the person stays where they were");
                        run.handoff_open = false;
                        if let Some(b) = run.handoff.take() {
                            run.transfer = Some(b.finish().await);
                        }
                        if !run.bridge_open || run.bridge_over() {
                            // The first bridge is gone (an AI agent that handed off): nobody
                            // is left for the person.
                            run.feed(Input::Bridge(BridgeInput::Ended), tap.as_ref()).await
                        }
                    }
                    Some(BridgeEvent::HoldCallee(on)) => run.call.hold(on),
                    Some(BridgeEvent::Agent { what, name }) => {
                        run.emit(CallEventKind::AgentEvent, json!({"what": what, "name": name}));
                    }
                    Some(BridgeEvent::Ended) | Some(BridgeEvent::HandOff(_)) => {
                        run.feed(Input::Bridge(BridgeInput::Ended), tap.as_ref()).await
                    }
                    None => run.handoff_open = false,
                }
            },
            done = async { run.reply_done.as_mut()?.await.ok() }, if run.reply_done.is_some() => {
                run.reply_done = None;
                match done {
                    Some(Ok(ms)) => tracing::info!(ms, "reply recorded"),
                    Some(Err(e)) => warn!(error = %e, "reply not recorded"),
                    None => {}
                }
                run.feed(Input::Recorded, tap.as_ref()).await;
            }
            _ = async { tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)).await },
                if deadline.is_some() => run.feed(Input::Timeout, tap.as_ref()).await,
            changed = stop.changed(), if !stopping => {
                if changed.is_err() || *stop.borrow() {
                    stopping = true;
                    run.feed(Input::Stop, tap.as_ref()).await;
                }
            }
        }
    };
    let flow = run.core.record();
    let digits = run.core.digits().to_string();
    let events = run.events.take();
    let reply = run.reply.take();
    if let Some(warm) = run.warm.take() {
        warm.close();
    }
    let bridge = match run.bridge.take() {
        Some(b) => Some(b.finish().await),
        None => None,
    };
    let mut transfer = run.transfer.take();
    if let Some(b) = run.handoff.take() {
        transfer = Some(b.finish().await);
    }
    // A transfer that connected is the bridge the person ended on; the first one (the AI
    // agent) is the attempt's `bridge`.
    let (bridge, transfer) = match (run.first_bridge.take(), bridge) {
        (Some(first), last) => (Some(first), last.or(transfer)),
        (None, b) => (b, transfer),
    };
    drop(registration);
    drop(run);
    let recording_error = match recording.await {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e.to_string()),
        Err(e) => Some(e.to_string()),
    };
    let amd = match tap {
        Some(tap) => tap.result().await,
        None => None,
    };
    let summary = summary.ok_or(FlowError::NoSummary)?;
    if let Some(sink) = &events {
        sink.emit(
            CallEventKind::Completed,
            completed(&summary, amd.as_ref(), &flow),
        );
    }
    // The bridge the person ended on says who ended the call (a transfer that connected, else
    // the first bridge).
    let ended_by = transfer
        .as_ref()
        .filter(|t| t.answered)
        .or(bridge.as_ref())
        .and_then(|b| b.ended_by)
        .or_else(|| summary.hangup.map(|h| leg_ended_by(h, EndedBy::Callee)));
    Ok(FlowReport {
        summary,
        ended_by,
        amd,
        bridge,
        transfer,
        flow,
        digits,
        reply,
        recording_error,
    })
}

/// The runner's state while the call lasts.
struct Run {
    core: FlowCore,
    call: Call,
    bridge: Option<Box<dyn Bridge>>,
    bridge_open: bool,
    /// A second bridge being set up (a transfer); it replaces `bridge` once it connects.
    handoff: Option<Box<dyn Bridge>>,
    handoff_open: bool,
    /// The report of a transfer that did not connect.
    transfer: Option<BridgeReport>,
    /// The first bridge's report, once a transfer replaced it.
    first_bridge: Option<BridgeReport>,
    /// The AI agent's socket, opened before the verdict.
    warm: Option<Warm>,
    stream: StreamInfo,
    callee_audio: CalleeAudio,
    /// Twilio's AnsweredBy for the verdict so far.
    answered_by: Option<&'static str>,
    detecting: bool,
    tap_started: bool,
    /// Inputs produced while carrying out outputs (a bridge that failed to start).
    pending: Vec<Input>,
    ua: Arc<UserAgent>,
    callee_number: String,
    max_duration: Duration,
    send_dtmf: Option<String>,
    prompts: HashMap<String, Arc<Vec<i16>>>,
    reply_to: Option<PathBuf>,
    replies: mpsc::UnboundedSender<ReplyRequest>,
    /// The reply recording in progress reports here.
    reply_done: Option<oneshot::Receiver<Result<u64, crate::media::MediaError>>>,
    /// The reply file, once a `record` step started one.
    reply: Option<PathBuf>,
    voicemail: Option<Arc<Vec<i16>>>,
    abandon_message: Option<Arc<Vec<i16>>>,
    connect: Option<Connect>,
    /// The call is recorded: its audio is wanted while bridged too.
    recording: bool,
    events: Option<EventSink>,
    /// `early_media` was emitted (once per call).
    early_media: bool,
    /// `abandoned` was emitted.
    abandoned: bool,
}

impl Run {
    /// Feeds the core and carries out what it decides, until nothing is pending.
    async fn feed(&mut self, input: Input, tap: Option<&AmdTap>) {
        self.pending.push(input);
        while let Some(input) = self.pending.pop() {
            self.core.handle(std::time::Instant::now(), input);
            if self.core.record().abandoned && !self.abandoned {
                self.abandoned = true;
                let wait = self.core.record().queue_wait_ms;
                self.emit(CallEventKind::Abandoned, json!({"queue_wait_ms": wait}));
            }
            while let Some(out) = self.core.poll_output() {
                self.execute(out, tap).await;
            }
        }
    }

    fn emit(&self, kind: CallEventKind, detail: serde_json::Value) {
        if let Some(sink) = &self.events {
            sink.emit(kind, detail);
        }
    }

    /// The verdict (`amd`) or the end of a machine's greeting (`machine_end`).
    fn emit_amd(&self, event: &AmdEvent) {
        let (kind, detail) = match *event {
            AmdEvent::HumanDetected {
                cause,
                confidence,
                at_ms,
            }
            | AmdEvent::MachineDetected {
                cause,
                confidence,
                at_ms,
            } => {
                let human = matches!(event, AmdEvent::HumanDetected { .. });
                (
                    CallEventKind::Amd,
                    json!({
                        "verdict": if human { "human" } else { "machine" },
                        "answered_by": if human { "human" } else { "machine_start" },
                        "cause": cause.name(),
                        "confidence": confidence,
                        "decision_ms": at_ms,
                    }),
                )
            }
            AmdEvent::Fax { confidence, at_ms } => (
                CallEventKind::Amd,
                json!({"verdict": "fax", "answered_by": "fax", "cause": "FAX",
                       "confidence": confidence, "decision_ms": at_ms}),
            ),
            AmdEvent::NoSpeech { confidence, at_ms } | AmdEvent::Timeout { confidence, at_ms } => {
                let cause = if matches!(event, AmdEvent::NoSpeech { .. }) {
                    "INITIALSILENCE"
                } else {
                    "TOOLONG"
                };
                (
                    CallEventKind::Amd,
                    json!({"verdict": "unknown", "answered_by": "unknown", "cause": cause,
                           "confidence": confidence, "decision_ms": at_ms}),
                )
            }
            AmdEvent::Beep {
                onset_ms,
                frequency_hz,
                at_ms,
                ..
            } => (
                CallEventKind::MachineEnd,
                json!({"how": "beep", "answered_by": "machine_end_beep", "beep_ms": onset_ms,
                       "frequency_hz": frequency_hz, "at_ms": at_ms}),
            ),
            AmdEvent::MachineGreetingEnded { how, at_ms, .. } => {
                let (how, by) = match how {
                    GreetingEnd::Beep => ("beep", "machine_end_beep"),
                    GreetingEnd::Silence => ("silence", "machine_end_silence"),
                    GreetingEnd::Other => ("other", "machine_end_other"),
                };
                (
                    CallEventKind::MachineEnd,
                    json!({"how": how, "answered_by": by, "at_ms": at_ms}),
                )
            }
        };
        self.emit(kind, detail);
    }

    /// The person is connected (`transfer`: to the target of a hand-off).
    fn emit_bridged(&self, transfer: bool) {
        let target = match (&self.connect, transfer) {
            (Some(c), false) => Some(&c.target),
            _ => None,
        };
        self.emit(
            CallEventKind::Bridged,
            json!({
                "target": target.map(|t| t.describe_public()),
                "kind": target.map(|t| t.kind()),
                "transfer": transfer,
                "queue_wait_ms": self.core.record().queue_wait_ms,
            }),
        );
    }

    async fn execute(&mut self, out: Output, tap: Option<&AmdTap>) {
        match out {
            Output::SendDtmf => {
                if let Some(digits) = &self.send_dtmf {
                    if let Err(e) = self.call.send_dtmf(digits, DTMF_MS) {
                        warn!(error = %e, "digits not sent");
                    }
                }
            }
            Output::StartDetection => {
                if let (Some(tap), false) = (tap, self.tap_started) {
                    self.tap_started = true;
                    tap.answered();
                }
            }
            Output::Play(prompt) => {
                let audio = match &prompt {
                    Prompt::File(name) => self.prompts.get(name),
                    Prompt::Voicemail => self.voicemail.as_ref(),
                    Prompt::Abandon => self.abandon_message.as_ref(),
                };
                match audio {
                    Some(samples) => self.call.play(samples.clone()),
                    None => {
                        warn!(?prompt, "nothing to play: skipped");
                        self.pending.push(Input::PlaybackFinished);
                    }
                }
            }
            Output::StopPlayback => self.call.clear_playback(),
            Output::StartRecording {
                max,
                silence_end,
                beep,
            } => {
                let Some(path) = self.reply_to.clone() else {
                    warn!("record step without a place for the reply: skipped");
                    self.pending.push(Input::Recorded);
                    return;
                };
                if beep {
                    self.call.play(Arc::new(beep_tone()));
                }
                let (done, reply_done) = oneshot::channel();
                let request = ReplyRequest {
                    path: path.clone(),
                    max,
                    silence_end,
                    done,
                };
                if self.replies.send(request).is_ok() {
                    self.reply = Some(path);
                    self.reply_done = Some(reply_done);
                } else {
                    self.pending.push(Input::Recorded);
                }
            }
            Output::AddDnc => tracing::info!("callee asked to be put on the DNC list"),
            Output::StartBridge => {
                let Some(connect) = &self.connect else {
                    self.pending.push(Input::Bridge(BridgeInput::Failed));
                    return;
                };
                let ctx = self.bridge_context(connect);
                if let Some(warm) = self.warm.take() {
                    let b = AgentBridge::start(
                        warm,
                        self.call.media(),
                        self.callee_audio.clone(),
                        ctx.custom,
                    );
                    self.bridge = Some(Box::new(b));
                    self.bridge_open = true;
                    return;
                }
                match bridge::start(&connect.target, &self.call, ctx).await {
                    Ok(b) => {
                        self.bridge = Some(b);
                        self.bridge_open = true;
                    }
                    Err(e) => {
                        warn!(error = %e, "bridge not started");
                        self.pending.push(Input::Bridge(BridgeInput::Failed));
                    }
                }
            }
            Output::StopBridge => {
                for b in self.bridge.iter_mut().chain(self.handoff.iter_mut()) {
                    b.stop(EndedBy::System);
                }
            }
            Output::HangUpCallee => self.call.hangup(),
        }
    }
}

impl Run {
    /// What every bridge of this call is told.
    fn bridge_context(&self, connect: &Connect) -> BridgeContext {
        let mut custom = connect.custom.clone();
        let answered_by = self.answered_by.unwrap_or("unknown");
        custom.insert("AnsweredBy".into(), answered_by.into());
        custom.insert(
            "amd_verdict".into(),
            if !self.detecting {
                "off".into()
            } else {
                answered_by.into()
            },
        );
        custom
            .entry("to_number".into())
            .or_insert_with(|| self.stream.to.clone());
        if !self.stream.from.is_empty() {
            custom
                .entry("from_number".into())
                .or_insert_with(|| self.stream.from.clone());
        }
        BridgeContext {
            ua: self.ua.clone(),
            callee: self.callee_number.clone(),
            campaign_id: connect.campaign_id,
            contact_id: connect.contact_id,
            ring_timeout: connect.ring_timeout,
            max_duration: self.max_duration,
            tap_callee: self.recording,
            callee_audio: self.callee_audio.clone(),
            stream_info: Some(self.stream.clone()),
            custom,
        }
    }

    /// Keeps Twilio's AnsweredBy for the detector's verdict.
    fn note_verdict(&mut self, event: &AmdEvent) {
        let by = match event {
            AmdEvent::HumanDetected { .. } => "human",
            AmdEvent::MachineDetected { .. } => "machine_start",
            AmdEvent::Beep { .. } => "machine_end_beep",
            AmdEvent::MachineGreetingEnded { .. } => "machine_end_other",
            AmdEvent::Fax { .. } => "fax",
            _ => return,
        };
        self.answered_by = Some(by);
    }

    /// Starts a second bridge to `target` (a transfer); `false` when it could not start.
    async fn hand_off(&mut self, target: BridgeTarget) -> bool {
        let Some(connect) = &self.connect else {
            warn!("transfer asked for a call with nothing connected: ignored");
            return false;
        };
        if self.handoff.is_some() {
            warn!("a transfer is already in progress: ignored");
            return false;
        }
        let ctx = self.bridge_context(connect);
        match bridge::start(&target, &self.call, ctx).await {
            Ok(b) => {
                tracing::info!(target = %target.describe(), "transferring the person");
                self.handoff = Some(b);
                self.handoff_open = true;
                true
            }
            Err(e) => {
                warn!(error = %e, "transfer not started");
                false
            }
        }
    }

    /// The transfer target answered: the first bridge is released and the new one takes its
    /// place.
    async fn handoff_connected(&mut self) {
        let Some(new) = self.handoff.take() else {
            return;
        };
        self.handoff_open = false;
        if let Some(mut old) = self.bridge.take() {
            old.stop(EndedBy::System);
            let report = old.finish().await;
            self.first_bridge.get_or_insert(report);
        }
        self.bridge = Some(new);
        self.bridge_open = true;
    }

    /// The first bridge has nothing more to say.
    fn bridge_over(&self) -> bool {
        self.bridge.is_none()
    }
}

/// The `completed` event's detail: how the call ended and its figures.
fn completed(
    summary: &CallSummary,
    amd: Option<&AmdResult>,
    flow: &FlowRecord,
) -> serde_json::Value {
    // The call's record as `outdial call` prints it, plus what the flow adds.
    let mut detail = serde_json::to_value(summary).unwrap_or_else(|_| json!({}));
    if let Some(map) = detail.as_object_mut() {
        map.insert(
            "answered_by".into(),
            json!(amd.map(|a| a.answered_by.name())),
        );
        map.insert("amd_mode".into(), json!(amd.map(|a| a.mode.name())));
        map.insert("abandoned".into(), json!(flow.abandoned));
        map.insert("voicemail_left".into(), json!(flow.voicemail_left));
    }
    detail
}

/// Twilio's final status of a call.
fn final_status(summary: &CallSummary) -> CallStatus {
    match summary.outcome {
        Outcome::Answered => CallStatus::Completed,
        Outcome::Busy => CallStatus::Busy,
        Outcome::NoAnswer => CallStatus::NoAnswer,
        _ => CallStatus::Failed,
    }
}

/// The beep before a recorded reply: 400 ms of 1 kHz at about −10 dBFS.
fn beep_tone() -> Vec<i16> {
    let rate = crate::media::SAMPLE_RATE as f32;
    (0..(rate * 0.4) as usize)
        .map(|n| {
            let t = n as f32 / rate;
            (10_000.0 * (2.0 * std::f32::consts::PI * 1000.0 * t).sin()) as i16
        })
        .collect()
}

async fn next_bridge_event(bridge: &mut Option<Box<dyn Bridge>>) -> Option<BridgeEvent> {
    bridge.as_mut()?.next_event().await
}
