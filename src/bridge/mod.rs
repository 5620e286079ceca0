//! Bridges: joining an answered callee with a second party — a SIP target (agent, hunt group,
//! auto-attendant, agent pool) or an AI voice agent over a media stream ([`agent`]), all
//! through the one [`Bridge`] trait.
//!
//! A bridge is started by the call-flow runner once a person is to be connected. It reaches
//! the far side, joins the media when the far side answers, follows what either side does
//! (hold, digits sent out of band, hang-up) and keeps the bridge's part of the attempt record
//! ([`BridgeReport`]). Adding a kind of bridge is one file plus a match arm in [`start`].
//!
//! A bridge must not own or end the callee's leg: it asks the runner ([`BridgeEvent`]), which
//! owns it. It must not decide the plan (queue timeouts, abandons): the flow core does.

pub mod agent;
pub mod pool;
pub mod refer;
pub mod sip;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::Serialize;

use crate::call::{Call, CallEvent, Hangup};
use crate::config::Profile;
use crate::media::session::AudioFrame;
use crate::sip::UserAgent;

/// Where the callee's received frames go besides the recorder, while a bridge wants them (an
/// AI agent's stream): the call's recorder task offers the slot's sender every frame
/// (`try_send`: a slow bridge loses frames, it never stalls the call), and is woken when the
/// slot is filled or emptied (it asks for the call's frames only while someone takes them).
#[derive(Debug, Clone, Default)]
pub struct CalleeAudio(Arc<CalleeAudioSlot>);

#[derive(Debug, Default)]
struct CalleeAudioSlot {
    tx: parking_lot::Mutex<Option<tokio::sync::mpsc::Sender<AudioFrame>>>,
    changed: tokio::sync::Notify,
}

impl CalleeAudio {
    /// Fills (`Some`) or empties the slot.
    pub fn set(&self, tx: Option<tokio::sync::mpsc::Sender<AudioFrame>>) {
        *self.0.tx.lock() = tx;
        self.0.changed.notify_one();
    }

    /// A bridge takes frames now.
    pub fn is_set(&self) -> bool {
        self.0.tx.lock().is_some()
    }

    /// Offers a frame to the bridge, if any; `false` when its channel was full (the frame is
    /// dropped).
    pub fn offer(&self, frame: &AudioFrame) -> bool {
        match self.0.tx.lock().as_ref() {
            Some(tx) => !matches!(
                tx.try_send(frame.clone()),
                Err(tokio::sync::mpsc::error::TrySendError::Full(_))
            ),
            None => true,
        }
    }

    /// Resolves once the slot was set since the last time this resolved.
    pub async fn changed(&self) {
        self.0.changed.notified().await
    }
}

/// Where a person is connected.
#[derive(Debug, Clone)]
pub enum BridgeTarget {
    /// A number through a trunk profile, or a `sip:` URI.
    Sip {
        destination: String,
        profile: Option<Box<Profile>>,
    },
    /// Blind transfer: the callee is asked (REFER) to call this URI itself; our leg and its
    /// media are released once the target answers.
    Refer { uri: String },
    /// An agent pool: the longest-idle free agent is rung, the next one when it is busy, does
    /// not answer within `agent_ring_timeout` or rejects, until one answers (or the flow's
    /// queue timeout gives up).
    Pool {
        name: String,
        agents: Arc<dyn AgentSource>,
        agent_ring_timeout: Duration,
    },
    /// An AI voice agent over a media stream (Twilio Media Streams, L16 or WebRTC).
    Agent(Box<agent::AgentTarget>),
}

impl std::fmt::Debug for dyn AgentSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AgentSource")
    }
}

impl BridgeTarget {
    /// The target as the attempt record and the CLI's JSON show it.
    /// What kind of target it is, as events name it: `sip`, `refer`, `pool`, `ai_agent`.
    pub fn kind(&self) -> &'static str {
        match self {
            BridgeTarget::Sip { .. } => "sip",
            BridgeTarget::Refer { .. } => "refer",
            BridgeTarget::Pool { .. } => "pool",
            BridgeTarget::Agent(_) => "ai_agent",
        }
    }

    /// [`BridgeTarget::describe`] without what an AI agent's URL may carry after its path
    /// (a token in the query): what events and webhooks show.
    pub fn describe_public(&self) -> String {
        let text = self.describe();
        match self {
            BridgeTarget::Agent(_) => text
                .split(['?', '#'])
                .next()
                .unwrap_or_default()
                .to_string(),
            _ => text,
        }
    }

    pub fn describe(&self) -> String {
        match self {
            BridgeTarget::Sip { destination, .. } => destination.clone(),
            BridgeTarget::Refer { uri } => uri.clone(),
            BridgeTarget::Pool { name, .. } => format!("pool:{name}"),
            BridgeTarget::Agent(a) => a.url.clone(),
        }
    }
}

pub use crate::campaign::model::EndedBy;
pub use pool::{AgentSource, LeasedAgent};

/// Who or what ended an answered leg whose far end is `far` (the callee, or the agent): the
/// far end's BYE is theirs; ours is the system's unless the maximum duration or a transfer
/// caused it.
pub fn leg_ended_by(hangup: Hangup, far: EndedBy) -> EndedBy {
    match hangup {
        Hangup::Remote => far,
        Hangup::Local => EndedBy::System,
        Hangup::MaxDuration => EndedBy::MaxDuration,
        Hangup::Transferred => EndedBy::Transferred,
    }
}

/// What the bridge tells the runner.
#[derive(Debug, Clone)]
pub enum BridgeEvent {
    /// The far side answered and the media is joined.
    Connected,
    /// The far side was not reached (busy, no answer, rejected, failure).
    Failed,
    /// The far side put the call on hold (`true`) or took it off (`false`): hold the callee.
    HoldCallee(bool),
    /// The far side hung up after being connected.
    Ended,
    /// The far side (an AI agent) left and the person is to be handed to this target.
    HandOff(BridgeTarget),
    /// An AI agent's stream sent a mark or a clear (for the call's `agent_event`s).
    Agent {
        what: &'static str,
        name: Option<String>,
    },
}

impl PartialEq for BridgeEvent {
    fn eq(&self, other: &BridgeEvent) -> bool {
        match (self, other) {
            (BridgeEvent::HoldCallee(a), BridgeEvent::HoldCallee(b)) => a == b,
            (BridgeEvent::HandOff(a), BridgeEvent::HandOff(b)) => a.describe() == b.describe(),
            (BridgeEvent::Agent { what: a, name: x }, BridgeEvent::Agent { what: b, name: y }) => {
                a == b && x == y
            }
            (a, b) => std::mem::discriminant(a) == std::mem::discriminant(b),
        }
    }
}

/// The bridge's part of the attempt record (the CLI's `bridge` object).
#[derive(Debug, Clone, Serialize)]
pub struct BridgeReport {
    pub target: String,
    /// `sip` (a second leg), `refer` (blind transfer), `twilio_ws`, `l16_ws` or `webrtc` (an AI
    /// agent).
    pub kind: &'static str,
    /// The far side answered.
    pub answered: bool,
    /// The far side's final SIP code, when one came.
    pub sip_code: Option<u16>,
    /// The second leg's Call-ID.
    pub call_id: Option<String>,
    /// Bridge start → first 180/183 of the far side.
    pub ring_ms: Option<u64>,
    /// Bridge start → the far side's answer (media joined).
    pub bridge_ms: Option<u64>,
    /// Joined → ended.
    pub talk_ms: u64,
    /// Who ended the bridged call; `None` when it never connected.
    pub ended_by: Option<EndedBy>,
    /// When the bridge started (ms since the epoch), for the attempt record's times.
    #[serde(skip)]
    pub started_at_ms: i64,
    /// The agent that answered (agent pools).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent: Option<LeasedAgent>,
    /// Agents rung for this caller that did not answer (busy, rejected, no answer).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub agents_skipped: Vec<i64>,
    /// AI-agent streams: what crossed the socket.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream: Option<StreamReport>,
}

/// An AI agent's stream, for the attempt record.
#[derive(Debug, Clone, Serialize)]
pub struct StreamReport {
    /// From opening the socket to its handshake done (WebRTC: from sending the offer to the
    /// peer connection connected).
    pub connect_ms: Option<u64>,
    /// From the stream's start to the agent's first audio.
    pub first_audio_ms: Option<u64>,
    /// Audio the agent sent, in ms.
    pub agent_audio_ms: u64,
    /// 20 ms frames of the callee's audio sent to the agent.
    pub frames_to_agent: u64,
    /// Marks the agent placed, and `clear`s (barge-ins) it sent.
    pub marks: u64,
    pub clears: u64,
    /// Why the stream failed or ended badly, when it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    #[error("bridge target {target:?}: {reason}")]
    Target { target: String, reason: String },
}

/// What a bridge knows about the call it joins.
#[derive(Clone)]
pub struct BridgeContext {
    pub ua: Arc<UserAgent>,
    /// The callee's number (or URI) as dialed: what the agent sees as the caller.
    pub callee: String,
    /// Sent as `X-Outdial-Campaign` / `X-Outdial-Contact` when set.
    pub campaign_id: Option<i64>,
    pub contact_id: Option<i64>,
    /// How long the far side may ring.
    pub ring_timeout: Duration,
    /// Longest bridged call.
    pub max_duration: Duration,
    /// Keep delivering the callee's received audio to its call while the legs are linked
    /// (the call is being recorded).
    pub tap_callee: bool,
    /// The callee's frames, for bridges that stream them (AI agents).
    pub callee_audio: CalleeAudio,
    /// Who the call is, for an AI agent's first frames.
    pub stream_info: Option<agent::StreamInfo>,
    /// Sent to an AI agent when its stream starts (`customParameters`).
    pub custom: BTreeMap<String, String>,
}

/// A bridge in progress; see the module documentation.
#[async_trait]
pub trait Bridge: Send {
    /// The next thing the far side did; `None` once the bridge is over and every event was read.
    async fn next_event(&mut self) -> Option<BridgeEvent>;
    /// The callee did something the far side should follow (hold, out-of-band digits).
    fn callee_event(&mut self, event: &CallEvent);
    /// End the bridge (the far side is hung up on); `by` is recorded as who ended it.
    fn stop(&mut self, by: EndedBy);
    /// Waits for the far side to be gone and returns the record.
    async fn finish(self: Box<Self>) -> BridgeReport;
}

/// Starts the bridge to `target` for the answered `callee`.
pub async fn start(
    target: &BridgeTarget,
    callee: &Call,
    ctx: BridgeContext,
) -> Result<Box<dyn Bridge>, BridgeError> {
    match target {
        BridgeTarget::Sip {
            destination,
            profile,
        } => Ok(Box::new(
            sip::SipBridge::start(destination, profile.as_deref().cloned(), callee, ctx).await?,
        )),
        BridgeTarget::Refer { uri } => Ok(Box::new(refer::ReferBridge::start(uri, callee))),
        BridgeTarget::Pool {
            name,
            agents,
            agent_ring_timeout,
        } => Ok(Box::new(pool::PoolBridge::start(
            name,
            agents.clone(),
            *agent_ring_timeout,
            callee,
            ctx,
        ))),
        BridgeTarget::Agent(a) => {
            let info = ctx.stream_info.clone().ok_or_else(|| BridgeError::Target {
                target: a.url.clone(),
                reason: "no stream identity for the agent".into(),
            })?;
            Ok(Box::new(agent::start_cold(
                a,
                info,
                callee.media(),
                ctx.callee_audio.clone(),
                ctx.custom.clone(),
            )?))
        }
    }
}
