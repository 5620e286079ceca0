//! AI-agent legs: a person joined to a voice agent over a WebSocket media stream — Twilio Media
//! Streams JSON ([`twilio`]) or jambonz `listen`-style L16 ([`l16`]) — or over WebRTC
//! ([`webrtc`]: pipecat SmallWebRTC or WHIP signalling, PCMU over DTLS-SRTP).
//!
//! The socket is opened early ([`Warm::connect`]: while the call rings or the detector
//! listens), so that when a person is detected the stream starts at once ([`AgentBridge`]):
//! Twilio's `start` (or jambonz's metadata frame) goes out and from then on every 20 ms frame
//! of the callee's audio is sent to the agent. The agent's audio — any size, faster than real
//! time — is queued on the callee's media session, which paces it out every 20 ms; marks are
//! echoed once their audio has been sent ([`playout`]), `clear` / `killAudio` drops the queue
//! at once. The agent closing the socket ends the bridge ([`BridgeEvent::Ended`], or
//! [`BridgeEvent::HandOff`] when the agent is set to hand the call to a person); the call
//! ending sends `stop` and closes the socket. A WebRTC agent's leg follows the same contract
//! with a peer connection instead of a socket (see [`webrtc`] for what is done warm).
//!
//! One task per agent leg owns the socket. It must not end the callee's leg (the runner does,
//! on the events here) and must not decide the plan.

pub mod l16;
pub mod playout;
pub mod twilio;
pub mod webrtc;

use std::collections::BTreeMap;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;
use tracing::{debug, info, warn};

use self::playout::Playout;
use super::{Bridge, BridgeError, BridgeEvent, BridgeReport, BridgeTarget, CalleeAudio, EndedBy};
use crate::call::CallEvent;
use crate::media::g711::Codec;
use crate::media::session::{AudioFrame, MediaSession};

/// How long opening the agent's socket may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Bytes the agent's socket reads at a time. tungstenite zeroes this much of its read buffer
/// before every read (128 KiB by default: at 50 frames/s per call that was a third of the
/// calls' CPU); larger messages are still read whole, in several reads.
pub const READ_BUFFER: usize = 8 * 1024;

/// The protocol an agent speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentKind {
    /// Twilio Media Streams (JSON text frames, µ-law 8 kHz).
    TwilioWs,
    /// jambonz `listen`-style: binary L16 at the stream's sample rate.
    L16Ws,
    /// WebRTC, offer exchanged as pipecat's SmallWebRTC JSON (`POST {sdp, type, pc_id,
    /// request_data}` → `{sdp, type, pc_id}`).
    WebrtcSmallWebrtc,
    /// WebRTC, offer exchanged over WHIP (RFC 9725: `application/sdp` POST → 201 + Location,
    /// DELETE on hang-up).
    WebrtcWhip,
}

impl AgentKind {
    /// Every kind, for parsing and validation messages.
    pub const ALL: [AgentKind; 4] = [
        AgentKind::TwilioWs,
        AgentKind::L16Ws,
        AgentKind::WebrtcSmallWebrtc,
        AgentKind::WebrtcWhip,
    ];

    /// The kind's own name (what an agent record stores): `twilio_ws`, `l16_ws`,
    /// `webrtc_smallwebrtc`, `webrtc_whip`.
    pub fn name(self) -> &'static str {
        match self {
            AgentKind::TwilioWs => "twilio_ws",
            AgentKind::L16Ws => "l16_ws",
            AgentKind::WebrtcSmallWebrtc => "webrtc_smallwebrtc",
            AgentKind::WebrtcWhip => "webrtc_whip",
        }
    }

    /// The kind by its [`name`](Self::name).
    pub fn from_name(name: &str) -> Option<AgentKind> {
        AgentKind::ALL.into_iter().find(|k| k.name() == name)
    }

    /// The bridge kind the CLI's JSON and the attempt record show: `twilio_ws`, `l16_ws`, or
    /// `webrtc` for both WebRTC signalling shapes.
    pub fn report_kind(self) -> &'static str {
        match self {
            AgentKind::WebrtcSmallWebrtc | AgentKind::WebrtcWhip => "webrtc",
            k => k.name(),
        }
    }

    /// A WebRTC agent (an `http://` or `https://` endpoint), not a WebSocket one.
    pub fn is_webrtc(self) -> bool {
        matches!(self, AgentKind::WebrtcSmallWebrtc | AgentKind::WebrtcWhip)
    }
}

/// What happens when the agent closes its socket while the person is on the line.
#[derive(Debug, Clone)]
pub enum OnAgentClose {
    /// The call is hung up.
    Hangup,
    /// The person is handed to this target (a SIP target or an agent pool).
    Connect(Box<BridgeTarget>),
}

/// An AI agent to stream a person to.
#[derive(Clone)]
pub struct AgentTarget {
    pub kind: AgentKind,
    /// `ws://` or `wss://`; `http://` or `https://` for WebRTC (the offer endpoint).
    pub url: String,
    /// Extra request headers (the agent's auth); values are secrets: never logged.
    pub headers: Vec<(String, String)>,
    /// Sent to the agent (`customParameters`, jambonz `metadata`, SmallWebRTC `request_data`).
    pub custom_parameters: BTreeMap<String, String>,
    /// L16 streams: 8000, 16000 or 24000.
    pub sample_rate: u32,
    pub on_close: OnAgentClose,
}

impl std::fmt::Debug for AgentTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentTarget")
            .field("kind", &self.kind)
            .field("url", &self.url)
            .field(
                "headers",
                &self.headers.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .field("custom_parameters", &self.custom_parameters)
            .field("sample_rate", &self.sample_rate)
            .field("on_close", &self.on_close)
            .finish()
    }
}

/// Who the call is, for the agent's first frames.
#[derive(Debug, Clone)]
pub struct StreamInfo {
    pub ids: twilio::StreamIds,
    pub from: String,
    pub to: String,
}

/// What the driver is asked to do.
enum Command {
    /// A person is on the line: start streaming.
    Start {
        custom: BTreeMap<String, String>,
        media: Weak<MediaSession>,
        audio: mpsc::Receiver<AudioFrame>,
    },
    Dtmf(char, u32),
    Stop,
}

/// What the driver reports.
#[derive(Debug)]
enum LegEvent {
    /// The stream started (`start` sent).
    Started,
    /// The socket could not be opened (or closed before the stream started).
    Failed(String),
    /// The agent closed the socket, or asked to hang up (`disconnect`).
    AgentEnded,
    /// The agent sent a mark, or cleared what it had queued (`what`: `mark`, `clear`).
    Agent {
        what: &'static str,
        name: Option<String>,
    },
}

/// What the driver kept for the attempt record.
#[derive(Debug, Default, Clone)]
struct LegStats {
    connected_ms: Option<u64>,
    first_audio_ms: Option<u64>,
    marks: u64,
    clears: u64,
    audio_ms: u64,
    frames_sent: u64,
    error: Option<String>,
}

/// An agent's socket opened ahead of the verdict; see the module documentation.
pub struct Warm {
    target: AgentTarget,
    commands: mpsc::UnboundedSender<Command>,
    events: mpsc::UnboundedReceiver<LegEvent>,
    task: JoinHandle<LegStats>,
    opened: Instant,
    opened_at_ms: i64,
}

impl Warm {
    /// Opens the socket now (in the background) and sends `connected` as soon as it is open; for
    /// a WebRTC agent, prepares the peer connection and its offer (see [`webrtc`]).
    pub fn connect(target: AgentTarget, info: StreamInfo) -> Warm {
        let (commands, command_rx) = mpsc::unbounded_channel();
        let (event_tx, events) = mpsc::unbounded_channel();
        let opened = Instant::now();
        let task = if target.kind.is_webrtc() {
            tokio::spawn(webrtc::drive(
                target.clone(),
                info,
                command_rx,
                event_tx,
                opened,
            ))
        } else {
            tokio::spawn(drive(target.clone(), info, command_rx, event_tx, opened))
        };
        Warm {
            target,
            commands,
            events,
            task,
            opened,
            opened_at_ms: chrono::Utc::now().timestamp_millis(),
        }
    }

    /// The call ended before a person was connected: closes the socket (no `start` was sent).
    pub fn close(self) {
        let _ = self.commands.send(Command::Stop);
    }
}

/// The person streamed to the agent; see the module documentation.
pub struct AgentBridge {
    warm: Warm,
    callee_audio: CalleeAudio,
    started: Instant,
    connected_at: Option<Instant>,
    ended_at: Option<Instant>,
    ended_by: Option<EndedBy>,
    failed: bool,
    over: bool,
}

impl AgentBridge {
    /// Starts the stream on the warm socket: the callee's audio flows to the agent from now
    /// on, the agent's to the callee.
    pub fn start(
        warm: Warm,
        callee_media: Option<Arc<MediaSession>>,
        callee_audio: CalleeAudio,
        custom: BTreeMap<String, String>,
    ) -> AgentBridge {
        // The agent's own parameters, then the call's (the verdict, the numbers).
        let mut params = warm.target.custom_parameters.clone();
        params.extend(custom);
        let custom = params;
        let (tx, rx) = mpsc::channel(64);
        callee_audio.set(Some(tx));
        let media = match &callee_media {
            Some(m) => {
                // A person is on the line: no beep or fax to listen for any more.
                m.set_tone_detection(false);
                Arc::downgrade(m)
            }
            None => Weak::new(),
        };
        let _ = warm.commands.send(Command::Start {
            custom,
            media,
            audio: rx,
        });
        AgentBridge {
            warm,
            callee_audio,
            started: Instant::now(),
            connected_at: None,
            ended_at: None,
            ended_by: None,
            failed: false,
            over: false,
        }
    }
}

#[async_trait]
impl Bridge for AgentBridge {
    async fn next_event(&mut self) -> Option<BridgeEvent> {
        if self.over {
            return None;
        }
        match self.warm.events.recv().await {
            Some(LegEvent::Started) => {
                self.connected_at = Some(Instant::now());
                Some(BridgeEvent::Connected)
            }
            Some(LegEvent::Failed(reason)) => {
                warn!(target = %self.warm.target.url, %reason, "AI agent not reached");
                self.failed = true;
                self.over = true;
                self.ended_at = Some(Instant::now());
                Some(BridgeEvent::Failed)
            }
            Some(LegEvent::Agent { what, name }) => Some(BridgeEvent::Agent { what, name }),
            Some(LegEvent::AgentEnded) => {
                self.over = true;
                self.ended_at = Some(Instant::now());
                self.ended_by.get_or_insert(EndedBy::Agent);
                self.callee_audio.set(None);
                match &self.warm.target.on_close {
                    OnAgentClose::Hangup => Some(BridgeEvent::Ended),
                    OnAgentClose::Connect(target) => {
                        Some(BridgeEvent::HandOff(target.as_ref().clone()))
                    }
                }
            }
            None => {
                self.over = true;
                None
            }
        }
    }

    fn callee_event(&mut self, event: &CallEvent) {
        if let CallEvent::Dtmf(d) = event {
            let _ = self
                .warm
                .commands
                .send(Command::Dtmf(d.digit, d.duration_ms));
        }
    }

    fn stop(&mut self, by: EndedBy) {
        self.ended_by.get_or_insert(by);
        self.ended_at.get_or_insert_with(Instant::now);
        self.callee_audio.set(None);
        let _ = self.warm.commands.send(Command::Stop);
    }

    async fn finish(self: Box<Self>) -> BridgeReport {
        let this = *self;
        this.callee_audio.set(None);
        let _ = this.warm.commands.send(Command::Stop);
        let stats = match tokio::time::timeout(Duration::from_secs(5), this.warm.task).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => LegStats {
                error: Some(e.to_string()),
                ..LegStats::default()
            },
            Err(_) => LegStats {
                error: Some("the agent's socket did not close within 5 s".into()),
                ..LegStats::default()
            },
        };
        let ended = this.ended_at.unwrap_or_else(Instant::now);
        let ms = |d: Duration| d.as_millis() as u64;
        BridgeReport {
            target: this.warm.target.url.clone(),
            kind: this.warm.target.kind.report_kind(),
            answered: this.connected_at.is_some(),
            sip_code: None,
            call_id: None,
            ring_ms: stats.connected_ms,
            bridge_ms: this
                .connected_at
                .map(|c| ms(c.saturating_duration_since(this.started))),
            talk_ms: this
                .connected_at
                .map_or(0, |c| ms(ended.saturating_duration_since(c))),
            ended_by: this.connected_at.and(this.ended_by),
            started_at_ms: this.warm.opened_at_ms
                + ms(this.started.saturating_duration_since(this.warm.opened)) as i64,
            agent: None,
            agents_skipped: Vec::new(),
            stream: Some(super::StreamReport {
                connect_ms: stats.connected_ms,
                first_audio_ms: stats.first_audio_ms,
                agent_audio_ms: stats.audio_ms,
                frames_to_agent: stats.frames_sent,
                marks: stats.marks,
                clears: stats.clears,
                error: stats.error.or_else(|| {
                    this.failed
                        .then(|| "the agent's socket could not be opened".to_string())
                }),
            }),
        }
    }
}

/// Starts a bridge to an agent without a warm socket (a transfer to an agent): opens it now.
pub fn start_cold(
    target: &AgentTarget,
    info: StreamInfo,
    callee_media: Option<Arc<MediaSession>>,
    callee_audio: CalleeAudio,
    custom: BTreeMap<String, String>,
) -> Result<AgentBridge, BridgeError> {
    let warm = Warm::connect(target.clone(), info);
    Ok(AgentBridge::start(warm, callee_media, callee_audio, custom))
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The wire side of one stream.
enum Wire {
    Twilio(twilio::Encoder),
    L16 {
        audio: Box<l16::Audio>,
        metadata: l16::Metadata,
    },
}

async fn open(target: &AgentTarget) -> Result<Socket, String> {
    let mut request = target
        .url
        .as_str()
        .into_client_request()
        .map_err(|e| format!("agent URL {:?}: {e}", target.url))?;
    for (name, value) in &target.headers {
        let name = tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(name.as_bytes())
            .map_err(|e| format!("header name {name:?}: {e}"))?;
        let value = HeaderValue::from_str(value)
            .map_err(|_| format!("the value of header {name} is not a valid header value"))?;
        request.headers_mut().insert(name, value);
    }
    if target.kind == AgentKind::L16Ws {
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_static(l16::SUBPROTOCOL),
        );
    }
    let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER);
    let connect = tokio_tungstenite::connect_async_with_config(request, Some(config), true);
    match tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
        Ok(Ok((socket, _response))) => Ok(socket),
        Ok(Err(e)) => Err(format!("agent {}: {e}", target.url)),
        Err(_) => Err(format!(
            "agent {}: no answer within {} s",
            target.url,
            CONNECT_TIMEOUT.as_secs()
        )),
    }
}

/// The driver: owns the socket; see the module documentation.
async fn drive(
    target: AgentTarget,
    info: StreamInfo,
    mut commands: mpsc::UnboundedReceiver<Command>,
    events: mpsc::UnboundedSender<LegEvent>,
    opened: Instant,
) -> LegStats {
    let mut stats = LegStats::default();
    // Open the socket, unless the call is over first. A person detected before the socket is
    // open is kept for right after (nothing is dropped).
    let mut early_start: Option<Command> = None;
    let opening = open(&target);
    tokio::pin!(opening);
    let socket = loop {
        tokio::select! {
            s = &mut opening => break s,
            c = commands.recv(), if early_start.is_none() => match c {
                Some(start @ Command::Start { .. }) => early_start = Some(start),
                Some(Command::Dtmf(..)) => {}
                Some(Command::Stop) | None => {
                    debug!("agent socket not needed any more");
                    return stats;
                }
            },
        }
    };
    let mut socket = match socket {
        Ok(s) => s,
        Err(reason) => {
            if early_start.is_some() {
                return fail_later_now(&events, reason, stats);
            }
            // Reported when (if) the stream is asked to start.
            return fail_later(&mut commands, &events, reason, stats).await;
        }
    };
    stats.connected_ms = Some(opened.elapsed().as_millis() as u64);
    let mut wire = match target.kind {
        AgentKind::TwilioWs => Wire::Twilio(twilio::Encoder::new(info.ids.clone())),
        AgentKind::L16Ws => match l16::Audio::new(target.sample_rate) {
            Ok(audio) => Wire::L16 {
                audio: Box::new(audio),
                metadata: l16::Metadata {
                    call_sid: info.ids.call_sid.clone(),
                    from: info.from.clone(),
                    to: info.to.clone(),
                    sample_rate: target.sample_rate,
                    custom: BTreeMap::new(),
                },
            },
            Err(e) => {
                let _ = socket.close(None).await;
                return fail_later(&mut commands, &events, e.to_string(), stats).await;
            }
        },
        // Warm::connect gives these to the WebRTC driver.
        AgentKind::WebrtcSmallWebrtc | AgentKind::WebrtcWhip => {
            let _ = socket.close(None).await;
            let reason = "a WebRTC agent is not reached over a WebSocket".to_string();
            return fail_later(&mut commands, &events, reason, stats).await;
        }
    };
    if let Wire::Twilio(enc) = &wire {
        if let Err(e) = socket.send(Message::text(enc.connected())).await {
            return fail_later(&mut commands, &events, e.to_string(), stats).await;
        }
    }
    // Warm: wait for the person (or the end of the call).
    let (media, mut audio) = loop {
        let next = match early_start.take() {
            Some(start) => Some(start),
            None => tokio::select! {
                c = commands.recv() => c,
                m = socket.next() => match m {
                    Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
                    Some(Ok(_)) => {
                        debug!("agent sent before the stream started: ignored");
                        continue;
                    }
                    Some(Err(_)) | None => {
                        // Closed before a person was connected.
                        return fail_later(&mut commands, &events, "the agent closed its socket before the stream started".into(), stats).await;
                    }
                },
            },
        };
        {
            match next {
                Some(Command::Start {
                    custom,
                    media,
                    audio,
                }) => {
                    let first = match &mut wire {
                        Wire::Twilio(enc) => enc.start(&custom),
                        Wire::L16 { metadata, .. } => {
                            metadata.custom = custom;
                            l16::metadata_frame(metadata)
                        }
                    };
                    if let Err(e) = socket.send(Message::text(first)).await {
                        return fail_later_now(&events, e.to_string(), stats);
                    }
                    let _ = events.send(LegEvent::Started);
                    break (media, audio);
                }
                Some(Command::Dtmf(..)) => {}
                Some(Command::Stop) | None => {
                    let _ = socket.close(None).await;
                    return stats;
                }
            }
        }
    };
    info!(agent = %target.url, kind = target.kind.name(), call_sid = %info.ids.call_sid, "AI agent stream started");
    let started = Instant::now();
    let mut playout = Playout::new();
    let mut pcm: Vec<i16> = Vec::with_capacity(crate::media::FRAME_SAMPLES);
    let mut ulaw: Vec<u8> = Vec::with_capacity(crate::media::FRAME_SAMPLES);
    let mut audio_open = true;
    let mut timestamp_ms: u64 = 0;
    let mut agent_ended = false;
    loop {
        let mark_wait = media.upgrade().and_then(|m| {
            playout
                .samples_to_next_mark(m.queued_samples())
                .map(|samples| Duration::from_micros(samples * 125).max(Duration::from_millis(2)))
        });
        tokio::select! {
            frame = audio.recv(), if audio_open => match frame {
                Some(frame) => {
                    let msg = match &mut wire {
                        Wire::Twilio(enc) => {
                            ulaw.clear();
                            Codec::Pcmu.encode(&frame.samples, &mut ulaw);
                            timestamp_ms += (frame.samples.len() as u64 * 1000) / 8000;
                            Message::text(enc.media(&ulaw, timestamp_ms))
                        }
                        Wire::L16 { audio, .. } => match audio.to_agent(&frame.samples) {
                            Ok(bytes) if !bytes.is_empty() => Message::binary(bytes),
                            Ok(_) => continue,
                            Err(e) => {
                                warn!(error = %e, "callee audio not resampled");
                                continue;
                            }
                        },
                    };
                    if socket.send(msg).await.is_err() {
                        agent_ended = true;
                        break;
                    }
                    stats.frames_sent += 1;
                }
                None => audio_open = false,
            },
            c = commands.recv() => match c {
                Some(Command::Dtmf(digit, duration_ms)) => {
                    let msg = match &mut wire {
                        Wire::Twilio(enc) => enc.dtmf(digit),
                        Wire::L16 { .. } => l16::dtmf_frame(digit, duration_ms),
                    };
                    if socket.send(Message::text(msg)).await.is_err() {
                        agent_ended = true;
                        break;
                    }
                }
                Some(Command::Start { .. }) => {}
                Some(Command::Stop) | None => break,
            },
            m = socket.next() => {
                let action = match m {
                    Some(Ok(Message::Text(text))) => match &mut wire {
                        Wire::Twilio(_) => match twilio::parse(text.as_str()) {
                            Ok(twilio::FromAgent::Media(bytes)) => {
                                pcm.clear();
                                Codec::Pcmu.decode(&bytes, &mut pcm);
                                Action::Audio
                            }
                            Ok(twilio::FromAgent::Mark(name)) => Action::Mark(name),
                            Ok(twilio::FromAgent::Clear) => Action::Clear,
                            Ok(twilio::FromAgent::Other(event)) => {
                                debug!(%event, "agent frame ignored");
                                Action::None
                            }
                            Err(e) => {
                                warn!(error = %e, "agent frame not understood");
                                Action::None
                            }
                        },
                        Wire::L16 { .. } => match l16::parse_text(text.as_str()) {
                            Ok(l16::Command::KillAudio) => Action::Clear,
                            Ok(l16::Command::Disconnect) => Action::End,
                            Ok(l16::Command::Mark(name)) => Action::Mark(name),
                            Ok(l16::Command::Other(kind)) => {
                                debug!(%kind, "agent frame ignored");
                                Action::None
                            }
                            Err(e) => {
                                warn!(error = %e, "agent frame not understood");
                                Action::None
                            }
                        },
                    },
                    Some(Ok(Message::Binary(bytes))) => match &mut wire {
                        Wire::L16 { audio, .. } => match audio.from_agent(&bytes) {
                            Ok(samples) => {
                                pcm.clear();
                                pcm.extend_from_slice(&samples);
                                Action::Audio
                            }
                            Err(e) => {
                                warn!(error = %e, "agent audio not resampled");
                                Action::None
                            }
                        },
                        Wire::Twilio(_) => {
                            debug!("binary frame on a Media Streams socket: ignored");
                            Action::None
                        }
                    },
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => Action::End,
                    Some(Ok(_)) => Action::None,
                };
                match action {
                    Action::None => {}
                    Action::Audio => {
                        if pcm.is_empty() {
                            continue;
                        }
                        stats.first_audio_ms.get_or_insert_with(|| started.elapsed().as_millis() as u64);
                        if let Some(m) = media.upgrade() {
                            m.send_frame(&pcm);
                        }
                        playout.audio(pcm.len());
                    }
                    Action::Mark(name) => {
                        let _ = events.send(LegEvent::Agent {
                            what: "mark",
                            name: Some(name.clone()),
                        });
                        playout.mark(name);
                    }
                    Action::Clear => {
                        let _ = events.send(LegEvent::Agent {
                            what: "clear",
                            name: None,
                        });
                        if let Some(m) = media.upgrade() {
                            m.clear_playback();
                        }
                        let names = playout.clear();
                        if send_marks(&mut socket, &mut wire, &names).await.is_err() {
                            agent_ended = true;
                            break;
                        }
                    }
                    Action::End => {
                        agent_ended = true;
                        break;
                    }
                }
                // A mark placed with nothing queued is due now.
                if playout.has_pending_marks() {
                    let queued = media.upgrade().map_or(0, |m| m.queued_samples());
                    let due = playout.due_marks(queued);
                    if send_marks(&mut socket, &mut wire, &due).await.is_err() {
                        agent_ended = true;
                        break;
                    }
                }
            },
            _ = async { tokio::time::sleep(mark_wait.unwrap_or_default()).await }, if mark_wait.is_some() => {
                let queued = media.upgrade().map_or(0, |m| m.queued_samples());
                let due = playout.due_marks(queued);
                if send_marks(&mut socket, &mut wire, &due).await.is_err() {
                    agent_ended = true;
                    break;
                }
            }
        }
    }
    stats.marks = playout.marks_seen;
    stats.clears = playout.clears;
    stats.audio_ms = playout.samples_queued / 8;
    if agent_ended {
        if let Some(m) = media.upgrade() {
            m.clear_playback();
        }
        info!(agent = %target.url, "AI agent ended the stream");
        let _ = events.send(LegEvent::AgentEnded);
        // Wait for the runner to let go (it stops the bridge), then close politely.
        let _ = wait_stop(&mut commands).await;
        let _ = socket.close(None).await;
        return stats;
    }
    if let Wire::Twilio(enc) = &mut wire {
        let _ = socket.send(Message::text(enc.stop())).await;
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), socket.close(None)).await;
    stats
}

enum Action {
    None,
    Audio,
    Mark(String),
    Clear,
    End,
}

async fn send_marks(
    socket: &mut Socket,
    wire: &mut Wire,
    names: &[String],
) -> Result<(), tokio_tungstenite::tungstenite::Error> {
    for name in names {
        let msg = match wire {
            Wire::Twilio(enc) => enc.mark(name),
            Wire::L16 { .. } => l16::mark_frame(name),
        };
        socket.send(Message::text(msg)).await?;
    }
    Ok(())
}

/// Waits for [`Command::Stop`] (or the bridge gone), dropping anything else.
async fn wait_stop(commands: &mut mpsc::UnboundedReceiver<Command>) -> LegStats {
    while let Some(c) = commands.recv().await {
        if matches!(c, Command::Stop) {
            break;
        }
    }
    LegStats::default()
}

/// The socket is unusable: report it when the stream is asked to start (or say nothing if the
/// call ends first).
async fn fail_later(
    commands: &mut mpsc::UnboundedReceiver<Command>,
    events: &mpsc::UnboundedSender<LegEvent>,
    reason: String,
    mut stats: LegStats,
) -> LegStats {
    stats.error = Some(reason.clone());
    while let Some(c) = commands.recv().await {
        match c {
            Command::Start { .. } => {
                let _ = events.send(LegEvent::Failed(reason));
                return stats;
            }
            Command::Stop => return stats,
            Command::Dtmf(..) => {}
        }
    }
    stats
}

fn fail_later_now(
    events: &mpsc::UnboundedSender<LegEvent>,
    reason: String,
    mut stats: LegStats,
) -> LegStats {
    stats.error = Some(reason.clone());
    let _ = events.send(LegEvent::Failed(reason));
    stats
}
