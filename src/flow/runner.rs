//! The runner of one call's plan: places the call, runs the detector and the recorder beside
//! it, and carries out what the [`FlowCore`] decides — digits, prompts, the bridge, hang-up —
//! until the call is over; then returns everything the attempt record keeps.
//!
//! `outdial call` and the campaign engine both run their calls through [`run`]; there is no
//! second copy of this script. It must not decide anything (the core does) nor touch the
//! store (the caller records the [`FlowReport`]).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;
use tracing::warn;

use super::core::{BridgeInput, FlowCore, FlowRecord, FlowSettings, Input, Output, Prompt};
use super::record::record_call;
use super::tap::AmdTap;
use crate::amd::{Amd, AmdResult};
use crate::bridge::{
    self, Bridge, BridgeContext, BridgeEvent, BridgeReport, BridgeTarget, EndedBy,
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
    /// Played to a person when there is no bridge target.
    pub message: Option<Arc<Vec<i16>>>,
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
            message: None,
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
    /// The detector's result, when the plan asked for detection and the call was answered.
    pub amd: Option<AmdResult>,
    pub bridge: Option<BridgeReport>,
    pub flow: FlowRecord,
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
        message: plan.message.is_some(),
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
    let recording = tokio::spawn(record_call(audio, call.take_sent_audio(), plan.recorder));

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
        message: plan.message,
        voicemail: plan.voicemail,
        abandon_message: plan.abandon_message,
        connect: plan.connect,
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
                        b.stop(EndedBy::Callee);
                    }
                    run.feed(Input::CalleeEnded, tap.as_ref()).await;
                    break Some(summary);
                }
                Some(other) => {
                    if let Some(b) = run.bridge.as_mut() {
                        b.callee_event(&other);
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
    Ok(FlowReport {
        summary,
        amd,
        bridge,
        flow,
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
    message: Option<Arc<Vec<i16>>>,
    voicemail: Option<Arc<Vec<i16>>>,
    abandon_message: Option<Arc<Vec<i16>>>,
    connect: Option<Connect>,
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
                let audio = match prompt {
                    Prompt::Message => &self.message,
                    Prompt::Voicemail => &self.voicemail,
                    Prompt::Abandon => &self.abandon_message,
                };
                match audio {
                    Some(samples) => self.call.play(samples.as_ref().clone()),
                    None => self.pending.push(Input::PlaybackFinished),
                }
            }
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

async fn next_bridge_event(bridge: &mut Option<Box<dyn Bridge>>) -> Option<BridgeEvent> {
    bridge.as_mut()?.next_event().await
}
