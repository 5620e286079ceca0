//! The runner of one call's plan: places the call, runs the detector and the recorder beside
//! it, and carries out what the [`FlowCore`] decides — digits, prompts, the bridge, hang-up —
//! until the call is over; then returns everything the attempt record keeps.
//!
//! `outdial call` and the campaign engine both run their calls through [`run`]; there is no
//! second copy of this script. It must not decide anything (the core does) nor touch the
//! store (the caller records the [`FlowReport`]).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tracing::warn;

use super::core::{BridgeInput, FlowCore, FlowRecord, FlowSettings, Input, Output, Prompt};
use super::record::{record_call, ReplyRequest};
use super::steps::Step;
use super::tap::AmdTap;
use crate::amd::{Amd, AmdResult};
use crate::bridge::{
    self, leg_ended_by, Bridge, BridgeContext, BridgeEvent, BridgeReport, BridgeTarget, EndedBy,
};
use crate::call::{Call, CallError, CallEvent, CallRequest, CallSummary};
use crate::campaign::model::MachineAction;
use crate::media::wav::CallRecorder;
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
    mut stop: watch::Receiver<bool>,
) -> Result<FlowReport, FlowError> {
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
    let callee_number = request.destination.clone();
    let max_duration = request.max_duration;
    let mut call = Call::dial(ua.clone(), request).await?;
    let (audio, mut tap) = match plan.amd {
        Some(amd) => {
            let (audio, tap) = AmdTap::start(call.take_audio(), amd);
            (audio, Some(tap))
        }
        None => (call.take_audio(), None),
    };
    let recorded_call = plan.recorder.is_some();
    let (reply_tx, reply_rx) = mpsc::unbounded_channel();
    let recording = tokio::spawn(record_call(
        audio,
        call.take_sent_audio(),
        plan.recorder,
        reply_rx,
    ));

    let mut run = Run {
        core: FlowCore::new(settings),
        call,
        bridge: None,
        bridge_open: false,
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
    };
    let mut stopping = *stop.borrow();
    if stopping {
        run.feed(Input::Stop, tap.as_ref()).await;
    }
    let mut amd_open = tap.is_some();
    let summary = loop {
        let deadline = run.core.poll_timeout().map(Instant::from_std);
        tokio::select! {
            event = async { tap.as_mut()?.next_event().await }, if amd_open => match event {
                None => amd_open = false,
                Some(event) => run.feed(Input::Amd(event), tap.as_ref()).await,
            },
            event = run.call.next_event() => match event {
                Some(CallEvent::Answered { .. }) => run.feed(Input::Answered, tap.as_ref()).await,
                Some(CallEvent::PlaybackFinished) => {
                    run.feed(Input::PlaybackFinished, tap.as_ref()).await
                }
                Some(CallEvent::Ended(summary)) => {
                    if let Some(b) = run.bridge.as_mut() {
                        // The callee's BYE, or ours (a limit, a stop).
                        b.stop(
                            summary
                                .hangup
                                .map_or(EndedBy::System, |h| leg_ended_by(h, EndedBy::Callee)),
                        );
                    }
                    run.feed(Input::CalleeEnded, tap.as_ref()).await;
                    break Some(summary);
                }
                Some(other) => {
                    if let Some(b) = run.bridge.as_mut() {
                        b.callee_event(&other);
                    }
                    if let CallEvent::Dtmf(d) = other {
                        run.feed(Input::Dtmf(d.digit), tap.as_ref()).await;
                    }
                }
                None => break None,
            },
            event = next_bridge_event(&mut run.bridge), if run.bridge_open => {
                match event {
                    Some(BridgeEvent::Connected) => {
                        run.feed(Input::Bridge(BridgeInput::Connected), tap.as_ref()).await
                    }
                    Some(BridgeEvent::Failed) => {
                        run.feed(Input::Bridge(BridgeInput::Failed), tap.as_ref()).await
                    }
                    Some(BridgeEvent::Ended) => {
                        run.feed(Input::Bridge(BridgeInput::Ended), tap.as_ref()).await
                    }
                    Some(BridgeEvent::HoldCallee(on)) => run.call.hold(on),
                    None => run.bridge_open = false,
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
    let reply = run.reply.take();
    let bridge = match run.bridge.take() {
        Some(b) => Some(b.finish().await),
        None => None,
    };
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
    let ended_by = bridge
        .as_ref()
        .and_then(|b| b.ended_by)
        .or_else(|| summary.hangup.map(|h| leg_ended_by(h, EndedBy::Callee)));
    Ok(FlowReport {
        summary,
        ended_by,
        amd,
        bridge,
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
}

impl Run {
    /// Feeds the core and carries out what it decides, until nothing is pending.
    async fn feed(&mut self, input: Input, tap: Option<&AmdTap>) {
        self.pending.push(input);
        while let Some(input) = self.pending.pop() {
            self.core.handle(std::time::Instant::now(), input);
            while let Some(out) = self.core.poll_output() {
                self.execute(out, tap).await;
            }
        }
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
                    Some(samples) => self.call.play(samples.as_ref().clone()),
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
                    self.call.play(beep_tone());
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
                let ctx = BridgeContext {
                    ua: self.ua.clone(),
                    callee: self.callee_number.clone(),
                    campaign_id: connect.campaign_id,
                    contact_id: connect.contact_id,
                    ring_timeout: connect.ring_timeout,
                    max_duration: self.max_duration,
                    tap_callee: self.recording,
                };
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
                if let Some(b) = self.bridge.as_mut() {
                    b.stop(EndedBy::System);
                }
            }
            Output::HangUpCallee => self.call.hangup(),
        }
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
