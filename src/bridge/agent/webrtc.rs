//! WebRTC AI-agent legs: the person's audio sent to an agent as PCMU over a peer connection
//! (ICE + DTLS-SRTP, the `webrtc` crate), the agent's audio played to the person, with the
//! offer exchanged over HTTP in one of two shapes:
//!
//! - pipecat SmallWebRTC: `POST {url}` with JSON `{"sdp", "type": "offer", "pc_id": null,
//!   "request_data": {…}}`, answered by `{"sdp", "type": "answer", "pc_id"}`;
//! - WHIP (RFC 9725): `POST {url}` with the offer as `application/sdp`, answered `201 Created`
//!   with the answer and a `Location` (the session's resource), which is sent `DELETE` when the
//!   call ends.
//!
//! What is done warm and what at the verdict: while the call rings and the detector listens,
//! the peer connection is built (one audio transceiver, sendrecv, PCMU only), its offer made
//! and its ICE candidates gathered (host candidates: loopback when the agent's URL is on this
//! machine, every interface otherwise; no STUN server), so the offer is complete and ready.
//! The offer is exchanged only when a person is on the line ([`Command::Start`]): a WebRTC
//! agent's session (and its greeting) starts when its peer connection connects, and its
//! `request_data` then carries the call's parameters and the verdict (`AnsweredBy`) — the cost
//! is one HTTP round trip plus the ICE check and DTLS handshake, recorded as the stream's
//! `connect_ms`. The candidates go in the offer (no trickling, so no SmallWebRTC `PATCH`).
//!
//! From then on each 20 ms frame of the callee's audio leaves as one PCMU RTP packet; the
//! agent's RTP (PCMU) is decoded and queued on the callee's media session, which paces it out.
//! The agent leaving — its DTLS `close_notify` (what closing a peer connection sends; asked of
//! the transport every 200 ms), its track ending, or the peer connection failing or closing
//! (ICE consent lost within a few seconds) — ends the leg ([`LegEvent::AgentEnded`]);
//! [`Command::Stop`] sends the `DELETE` (WHIP), an RTCP BYE, and closes the peer
//! connection. DTMF from the callee is not sent to a WebRTC agent.
//!
//! It must not touch the callee's leg beyond queueing audio on its media session, and must not
//! decide the plan; the functions that shape the signalling and the RTP are sans-IO.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::media_engine::MIME_TYPE_PCMU;
use rtc::peer_connection::transport::RTCDtlsTransportState;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters, RTCRtpEncodingParameters,
    RtpCodecKind,
};
use rtc::{rtcp, rtp};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    configure_rtcp_reports, MediaEngine, PeerConnection, PeerConnectionBuilder,
    PeerConnectionEventHandler, RTCConfigurationBuilder, RTCIceGatheringState,
    RTCPeerConnectionState, RTCSessionDescription, Registry, SettingEngineBuilder,
};
use webrtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit, RtpSender};

use super::{
    fail_later, fail_later_now, wait_stop, AgentKind, AgentTarget, Command, LegEvent, LegStats,
    StreamInfo, CONNECT_TIMEOUT,
};
use crate::media::g711::Codec;
use crate::media::session::{AudioFrame, MediaSession};

/// How long gathering the ICE candidates for the offer may take.
pub const GATHER_TIMEOUT: Duration = Duration::from_secs(5);

/// ICE: no answer to consent checks for this long reads as disconnected, then as failed (the
/// agent gone without a BYE); checks are sent at least this often.
const ICE_DISCONNECTED: Duration = Duration::from_secs(2);
const ICE_FAILED: Duration = Duration::from_secs(5);
const ICE_KEEPALIVE: Duration = Duration::from_secs(1);

/// How often the DTLS transport is asked whether the agent closed it.
const DTLS_CHECK: Duration = Duration::from_millis(200);

/// How long closing the peer connection and the WHIP `DELETE` may take.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// PCMU's static payload type.
const PT_PCMU: u8 = 0;

/// What the peer connection and the agent's track report to the driver.
#[derive(Debug)]
enum PcEvent {
    /// ICE gathering is complete: the local description holds every candidate.
    Gathered,
    State(RTCPeerConnectionState),
    /// The agent's audio, decoded to 8 kHz.
    Audio(Vec<i16>),
    /// The agent's track ended.
    AgentLeft(&'static str),
}

/// Forwards the peer connection's events to the driver.
struct Handler {
    events: mpsc::UnboundedSender<PcEvent>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            let _ = self.events.send(PcEvent::Gathered);
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        let _ = self.events.send(PcEvent::State(state));
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let events = self.events.clone();
        tokio::spawn(read_track(track, events));
    }
}

/// Reads the agent's track until it ends: RTP decoded to audio, the end of the track reported
/// as the agent leaving.
async fn read_track(track: Arc<dyn TrackRemote>, events: mpsc::UnboundedSender<PcEvent>) {
    while let Some(event) = track.poll().await {
        let out = match event {
            TrackRemoteEvent::OnRtpPacket(packet) => match decode_rtp(&packet) {
                Some(pcm) => PcEvent::Audio(pcm),
                None => continue,
            },
            TrackRemoteEvent::OnEnded => {
                let _ = events.send(PcEvent::AgentLeft("the agent's track ended"));
                return;
            }
            _ => continue,
        };
        if events.send(out).is_err() {
            return;
        }
    }
}

/// The agent's RTP packet as 8 kHz samples (`None`: not PCMU audio, or empty).
fn decode_rtp(packet: &rtp::Packet) -> Option<Vec<i16>> {
    if packet.header.payload_type != PT_PCMU || packet.payload.is_empty() {
        return None;
    }
    let mut pcm = Vec::with_capacity(packet.payload.len());
    Codec::Pcmu.decode(&packet.payload, &mut pcm);
    Some(pcm)
}

/// The callee's frames as one RTP stream (PCMU, 8 kHz clock).
struct RtpOut {
    ssrc: u32,
    sequence: u16,
    timestamp: u32,
    first: bool,
}

impl RtpOut {
    fn new(ssrc: u32, sequence: u16, timestamp: u32) -> RtpOut {
        RtpOut {
            ssrc,
            sequence,
            timestamp,
            first: true,
        }
    }

    /// One frame of 8 kHz samples as the next packet (the marker on the first).
    fn packet(&mut self, samples: &[i16]) -> rtp::Packet {
        let mut payload = Vec::with_capacity(samples.len());
        Codec::Pcmu.encode(samples, &mut payload);
        let packet = rtp::Packet {
            header: rtp::header::Header {
                version: 2,
                marker: self.first,
                payload_type: PT_PCMU,
                sequence_number: self.sequence,
                timestamp: self.timestamp,
                ssrc: self.ssrc,
                ..Default::default()
            },
            payload: Bytes::from(payload),
        };
        self.first = false;
        self.sequence = self.sequence.wrapping_add(1);
        self.timestamp = self.timestamp.wrapping_add(samples.len() as u32);
        packet
    }
}

/// The HTTP client for every agent's signalling (rustls, the system's roots).
fn http_client() -> Result<&'static reqwest::Client, String> {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    if let Some(c) = CLIENT.get() {
        return Ok(c);
    }
    let client = reqwest::Client::builder()
        .timeout(CONNECT_TIMEOUT)
        .build()
        .map_err(|e| format!("HTTP client: {e}"))?;
    Ok(CLIENT.get_or_init(|| client))
}

/// Where the peer connection's sockets bind: loopback when the agent's URL names this machine
/// (`localhost`, 127.0.0.0/8, `::1`), every interface otherwise.
fn bind_addrs(url: &str) -> Result<Vec<String>, String> {
    let url = reqwest::Url::parse(url).map_err(|e| format!("agent URL {url:?}: {e}"))?;
    let host = url
        .host_str()
        .ok_or_else(|| format!("agent URL {url:?} has no host"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    Ok(vec![if loopback {
        "127.0.0.1:0".to_string()
    } else {
        "0.0.0.0:0".to_string()
    }])
}

/// What the agent's endpoint is sent about the call: the call's parameters (the agent's own,
/// the campaign's, the verdict) plus who the call is, under pipecat's names unless set.
fn request_data(custom: &BTreeMap<String, String>, info: &StreamInfo) -> BTreeMap<String, String> {
    let mut data = custom.clone();
    data.entry("call_sid".into())
        .or_insert_with(|| info.ids.call_sid.clone());
    if !info.from.is_empty() {
        data.entry("from_number".into())
            .or_insert_with(|| info.from.clone());
    }
    data.entry("to_number".into())
        .or_insert_with(|| info.to.clone());
    data
}

/// The SmallWebRTC offer body.
fn smallwebrtc_offer(sdp: &str, request_data: &BTreeMap<String, String>) -> serde_json::Value {
    json!({"sdp": sdp, "type": "offer", "pc_id": null, "request_data": request_data})
}

#[derive(Deserialize)]
struct SmallWebrtcAnswer {
    sdp: String,
    #[serde(rename = "type")]
    kind: String,
    pc_id: Option<String>,
}

/// The SmallWebRTC answer: its SDP and `pc_id`.
fn parse_smallwebrtc_answer(body: &str) -> Result<(String, Option<String>), String> {
    let a: SmallWebrtcAnswer =
        serde_json::from_str(body).map_err(|e| format!("the agent's answer: {e}"))?;
    if a.kind != "answer" {
        return Err(format!(
            "the agent's answer has type {:?}, not \"answer\"",
            a.kind
        ));
    }
    Ok((a.sdp, a.pc_id))
}

/// A WHIP `Location` resolved against the endpoint's URL (it may be relative).
fn whip_resource(endpoint: &str, location: &str) -> Result<String, String> {
    let base = reqwest::Url::parse(endpoint).map_err(|e| format!("agent URL {endpoint:?}: {e}"))?;
    base.join(location)
        .map(|u| u.to_string())
        .map_err(|e| format!("WHIP Location {location:?}: {e}"))
}

/// The agent's answer to the offer.
struct Answer {
    sdp: String,
    /// WHIP: the session's resource, to `DELETE` when the call ends.
    resource: Option<String>,
    /// SmallWebRTC: the agent's id for the peer connection.
    pc_id: Option<String>,
}

fn with_headers(
    mut request: reqwest::RequestBuilder,
    target: &AgentTarget,
) -> Result<reqwest::RequestBuilder, String> {
    for (name, value) in &target.headers {
        let name = reqwest::header::HeaderName::from_bytes(name.as_bytes())
            .map_err(|e| format!("header name {name:?}: {e}"))?;
        let value = reqwest::header::HeaderValue::from_str(value)
            .map_err(|_| format!("the value of header {name} is not a valid header value"))?;
        request = request.header(name, value);
    }
    Ok(request)
}

/// Sends the offer to the agent and reads its answer.
async fn exchange(
    target: &AgentTarget,
    offer: &str,
    data: &BTreeMap<String, String>,
) -> Result<Answer, String> {
    let client = http_client()?;
    let url = target.url.as_str();
    let request = match target.kind {
        AgentKind::WebrtcWhip => client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/sdp")
            .body(offer.to_string()),
        _ => client.post(url).json(&smallwebrtc_offer(offer, data)),
    };
    let response = with_headers(request, target)?
        .send()
        .await
        .map_err(|e| format!("agent {url}: {e}"))?;
    let status = response.status();
    let location = response
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = response
        .text()
        .await
        .map_err(|e| format!("agent {url}: {e}"))?;
    match target.kind {
        AgentKind::WebrtcWhip => {
            if status != reqwest::StatusCode::CREATED {
                return Err(format!(
                    "agent {url}: WHIP answered {status}, not 201 Created"
                ));
            }
            let location =
                location.ok_or_else(|| format!("agent {url}: WHIP answer without a Location"))?;
            Ok(Answer {
                sdp: body,
                resource: Some(whip_resource(url, &location)?),
                pc_id: None,
            })
        }
        _ => {
            if !status.is_success() {
                return Err(format!("agent {url}: the offer was answered {status}"));
            }
            let (sdp, pc_id) = parse_smallwebrtc_answer(&body)?;
            Ok(Answer {
                sdp,
                resource: None,
                pc_id,
            })
        }
    }
}

/// A peer connection with its offer made and its candidates gathered.
struct Prepared {
    pc: Arc<dyn PeerConnection>,
    track: Arc<TrackLocalStaticRTP>,
    /// Our sender: its DTLS transport says when the agent closed the connection.
    sender: Option<Arc<dyn RtpSender>>,
    ssrc: u32,
    offer: String,
    events: mpsc::UnboundedReceiver<PcEvent>,
}

/// Builds the peer connection (one sendrecv audio transceiver, PCMU only), makes the offer and
/// waits for ICE gathering to complete.
async fn prepare(target: &AgentTarget) -> Result<Prepared, String> {
    let err = |what: &str, e: webrtc::error::Error| format!("WebRTC {what}: {e}");
    let pcmu = RTCRtpCodec {
        mime_type: MIME_TYPE_PCMU.to_owned(),
        clock_rate: 8000,
        channels: 0,
        sdp_fmtp_line: String::new(),
        rtcp_feedback: vec![],
    };
    let mut media = MediaEngine::default();
    media
        .register_codec(
            RTCRtpCodecParameters {
                rtp_codec: pcmu.clone(),
                payload_type: PT_PCMU,
            },
            RtpCodecKind::Audio,
        )
        .map_err(|e| err("codec", e))?;
    let settings = SettingEngineBuilder::new()
        .with_ice_timeouts(
            Some(ICE_DISCONNECTED),
            Some(ICE_FAILED),
            Some(ICE_KEEPALIVE),
        )
        .build();
    let (tx, mut events) = mpsc::unbounded_channel();
    let pc = PeerConnectionBuilder::new()
        .with_configuration(RTCConfigurationBuilder::new().build())
        .with_media_engine(media)
        .with_interceptor_registry(configure_rtcp_reports(Registry::new()))
        .with_setting_engine(settings)
        .with_handler(Arc::new(Handler { events: tx }))
        .with_udp_addrs(bind_addrs(&target.url)?)
        .build()
        .await
        .map_err(|e| err("peer connection", e))?;
    let pc: Arc<dyn PeerConnection> = Arc::new(pc);
    let ssrc = rand::random::<u32>();
    let track = Arc::new(TrackLocalStaticRTP::new(MediaStreamTrack::new(
        "outdial".to_owned(),
        "callee-audio".to_owned(),
        "callee".to_owned(),
        RtpCodecKind::Audio,
        vec![RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters {
                ssrc: Some(ssrc),
                ..Default::default()
            },
            codec: pcmu,
            active: true,
            ..Default::default()
        }],
    )));
    let result = async {
        let transceiver = pc
            .add_transceiver_from_track(
                Arc::clone(&track) as Arc<dyn TrackLocal>,
                Some(RTCRtpTransceiverInit {
                    direction: RTCRtpTransceiverDirection::Sendrecv,
                    streams: vec![],
                    send_encodings: vec![],
                }),
            )
            .await
            .map_err(|e| err("audio transceiver", e))?;
        let sender = transceiver.sender().await.ok().flatten();
        let offer = pc.create_offer(None).await.map_err(|e| err("offer", e))?;
        pc.set_local_description(offer)
            .await
            .map_err(|e| err("local description", e))?;
        let gathered = async {
            while let Some(e) = events.recv().await {
                if matches!(e, PcEvent::Gathered) {
                    return true;
                }
            }
            false
        };
        match tokio::time::timeout(GATHER_TIMEOUT, gathered).await {
            Ok(true) => {}
            Ok(false) => return Err("WebRTC: the peer connection stopped".to_string()),
            Err(_) => {
                return Err(format!(
                    "WebRTC: ICE gathering took more than {} s",
                    GATHER_TIMEOUT.as_secs()
                ))
            }
        }
        let offer = pc
            .local_description()
            .await
            .map(|d| d.sdp)
            .ok_or_else(|| "WebRTC: no local description".to_string())?;
        Ok((offer, sender))
    }
    .await;
    match result {
        Ok((offer, sender)) => Ok(Prepared {
            pc,
            track,
            sender,
            ssrc,
            offer,
            events,
        }),
        Err(e) => {
            let _ = tokio::time::timeout(CLOSE_TIMEOUT, pc.close()).await;
            Err(e)
        }
    }
}

/// Where the leg stood when it was closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    /// Never connected: nothing to say on the media path.
    Unconnected,
    /// Connected, and ended from our side (the callee left, the call's limit).
    Ours,
    /// The agent closed its side first: its resource may be gone already.
    AgentLeft,
}

/// Ends the leg: the WHIP resource deleted first (the session's end as RFC 9725 has it; the
/// agent then closes its side), an RTCP BYE when we end a connected leg, the peer connection
/// closed (its DTLS `close_notify` is how a SmallWebRTC agent learns the call ended).
async fn close(prepared: &Prepared, target: &AgentTarget, resource: Option<&str>, ending: Ending) {
    if let Some(resource) = resource {
        let delete = async {
            let client = http_client()?;
            let response = with_headers(client.delete(resource), target)?
                .send()
                .await
                .map_err(|e| e.to_string())?;
            debug!(status = %response.status(), "WHIP session deleted");
            Ok::<(), String>(())
        };
        let failed = match tokio::time::timeout(CLOSE_TIMEOUT, delete).await {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e),
            Err(_) => Some("no answer in time".to_string()),
        };
        match failed {
            // The agent that left first may have dropped its resource (and its server).
            Some(e) if ending == Ending::AgentLeft => debug!(error = %e, "WHIP DELETE failed"),
            Some(e) => warn!(error = %e, "WHIP DELETE failed"),
            None => {}
        }
    }
    if ending == Ending::Ours {
        let bye: Vec<Box<dyn rtcp::Packet>> = vec![Box::new(rtcp::goodbye::Goodbye {
            sources: vec![prepared.ssrc],
            reason: Bytes::from_static(b"hangup"),
        })];
        let _ = prepared.track.write_rtcp(bye).await;
    }
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, prepared.pc.close()).await;
}

/// The driver of a WebRTC agent leg; see the module documentation. Same contract as the
/// WebSocket driver in the parent module.
pub(super) async fn drive(
    target: AgentTarget,
    info: StreamInfo,
    mut commands: mpsc::UnboundedReceiver<Command>,
    events: mpsc::UnboundedSender<LegEvent>,
    _opened: Instant,
) -> LegStats {
    let mut stats = LegStats::default();
    // Warm: the peer connection and its complete offer, unless the call is over first. A
    // person detected before the offer is ready is kept for right after.
    let mut early_start: Option<Command> = None;
    let preparing = prepare(&target);
    tokio::pin!(preparing);
    let prepared = loop {
        tokio::select! {
            p = &mut preparing => break p,
            c = commands.recv(), if early_start.is_none() => match c {
                Some(start @ Command::Start { .. }) => early_start = Some(start),
                Some(Command::Dtmf(..)) => {}
                Some(Command::Stop) | None => {
                    debug!("WebRTC agent leg not needed any more");
                    return stats;
                }
            },
        }
    };
    let mut leg = match prepared {
        Ok(p) => p,
        Err(reason) if early_start.is_some() => return fail_later_now(&events, reason, stats),
        Err(reason) => return fail_later(&mut commands, &events, reason, stats).await,
    };
    // Wait for the person (or the end of the call).
    let (custom, media, mut audio) = loop {
        let next = match early_start.take() {
            Some(start) => Some(start),
            None => commands.recv().await,
        };
        match next {
            Some(Command::Start {
                custom,
                media,
                audio,
            }) => break (custom, media, audio),
            Some(Command::Dtmf(..)) => {}
            Some(Command::Stop) | None => {
                close(&leg, &target, None, Ending::Unconnected).await;
                return stats;
            }
        }
    };
    // Events from the warm phase (gathering, connection "new") say nothing now.
    while leg.events.try_recv().is_ok() {}
    let asked = Instant::now();
    let data = request_data(&custom, &info);
    let answer = match exchange(&target, &leg.offer, &data).await {
        Ok(a) => a,
        Err(reason) => {
            close(&leg, &target, None, Ending::Unconnected).await;
            return fail_later_now(&events, reason, stats);
        }
    };
    let resource = answer.resource.clone();
    let remote =
        RTCSessionDescription::answer(answer.sdp).map_err(|e| format!("the agent's answer: {e}"));
    let applied = match remote {
        Ok(desc) => leg
            .pc
            .set_remote_description(desc)
            .await
            .map_err(|e| format!("the agent's answer: {e}")),
        Err(e) => Err(e),
    };
    if let Err(reason) = applied {
        close(&leg, &target, resource.as_deref(), Ending::Unconnected).await;
        return fail_later_now(&events, reason, stats);
    }
    // Connecting: ICE checks and the DTLS handshake. The callee's audio meanwhile is dropped.
    let deadline = tokio::time::sleep(CONNECT_TIMEOUT);
    tokio::pin!(deadline);
    let connected = loop {
        tokio::select! {
            e = leg.events.recv() => match e {
                Some(PcEvent::State(RTCPeerConnectionState::Connected)) => break Ok(()),
                Some(PcEvent::State(s @ (RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed))) => {
                    break Err(format!("WebRTC: the peer connection {s} before it connected"));
                }
                Some(PcEvent::AgentLeft(why)) => break Err(why.to_string()),
                Some(_) => {}
                None => break Err("WebRTC: the peer connection stopped".to_string()),
            },
            c = commands.recv() => match c {
                Some(Command::Stop) | None => {
                    close(&leg, &target, resource.as_deref(), Ending::Unconnected).await;
                    return stats;
                }
                Some(_) => {}
            },
            _ = audio.recv() => {}
            _ = &mut deadline => {
                break Err(format!(
                    "WebRTC: the peer connection did not connect within {} s",
                    CONNECT_TIMEOUT.as_secs()
                ));
            }
        }
    };
    if let Err(reason) = connected {
        close(&leg, &target, resource.as_deref(), Ending::Unconnected).await;
        return fail_later_now(&events, reason, stats);
    }
    stats.connected_ms = Some(asked.elapsed().as_millis() as u64);
    let _ = events.send(LegEvent::Started);
    info!(
        agent = %target.url,
        kind = target.kind.name(),
        call_sid = %info.ids.call_sid,
        pc_id = answer.pc_id.as_deref().unwrap_or(""),
        connect_ms = stats.connected_ms.unwrap_or(0),
        "AI agent peer connection up"
    );
    let started = Instant::now();
    let mut rtp_out = RtpOut::new(leg.ssrc, rand::random(), rand::random());
    let mut audio_open = true;
    let mut samples_queued: u64 = 0;
    let mut dtls_check = tokio::time::interval(DTLS_CHECK);
    dtls_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let agent_left = loop {
        tokio::select! {
            _ = dtls_check.tick() => {
                if dtls_closed(&leg).await {
                    break Some("the agent closed the connection (DTLS close_notify)".to_string());
                }
            },
            frame = audio.recv(), if audio_open => match frame {
                Some(frame) => send_frame(&leg, &mut rtp_out, &frame, &mut stats).await,
                None => audio_open = false,
            },
            c = commands.recv() => match c {
                Some(Command::Stop) | None => break None,
                Some(_) => {}
            },
            e = leg.events.recv() => match e {
                Some(PcEvent::Audio(pcm)) => {
                    stats
                        .first_audio_ms
                        .get_or_insert_with(|| started.elapsed().as_millis() as u64);
                    samples_queued += pcm.len() as u64;
                    queue(&media, &pcm);
                }
                Some(PcEvent::AgentLeft(why)) => break Some(why.to_string()),
                Some(PcEvent::State(s @ (RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed))) => {
                    break Some(format!("the peer connection {s}"));
                }
                Some(PcEvent::State(s)) => debug!(state = %s, "agent peer connection"),
                Some(PcEvent::Gathered) => {}
                None => break Some("the peer connection stopped".to_string()),
            },
        }
    };
    stats.audio_ms = samples_queued / 8;
    if let Some(why) = &agent_left {
        if let Some(m) = media.upgrade() {
            m.clear_playback();
        }
        info!(agent = %target.url, reason = %why, "AI agent left the call");
        let _ = events.send(LegEvent::AgentEnded);
        // Wait for the runner to let go (it stops the bridge), then close.
        let _ = wait_stop(&mut commands).await;
    }
    let ending = if agent_left.is_some() {
        Ending::AgentLeft
    } else {
        Ending::Ours
    };
    close(&leg, &target, resource.as_deref(), ending).await;
    leg.events.close();
    stats
}

/// Whether the agent closed the DTLS transport (its `close_notify`: what a peer connection's
/// `close()` sends). The connection's own state stays "connected" until ICE consent runs out,
/// so this is asked of the transport.
async fn dtls_closed(leg: &Prepared) -> bool {
    let Some(sender) = &leg.sender else {
        return false;
    };
    match sender.transport().await {
        Ok(Some(t)) => matches!(t.state().await, Ok(RTCDtlsTransportState::Closed)),
        _ => false,
    }
}

/// One frame of the callee's audio to the agent.
async fn send_frame(
    leg: &Prepared,
    rtp_out: &mut RtpOut,
    frame: &AudioFrame,
    stats: &mut LegStats,
) {
    if frame.samples.is_empty() {
        return;
    }
    let packet = rtp_out.packet(&frame.samples);
    match leg.track.write_rtp(packet).await {
        Ok(()) => stats.frames_sent += 1,
        Err(e) => debug!(error = %e, "callee audio not sent to the agent"),
    }
}

/// The agent's audio, queued on the callee's media session.
fn queue(media: &Weak<MediaSession>, pcm: &[i16]) {
    if let Some(m) = media.upgrade() {
        m.send_frame(pcm);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bridge::agent::twilio::StreamIds;

    fn info() -> StreamInfo {
        StreamInfo {
            ids: StreamIds {
                account_sid: "AC1".into(),
                call_sid: "CA1".into(),
                stream_sid: "MZ1".into(),
            },
            from: "+15550001".into(),
            to: "+15550002".into(),
        }
    }

    #[test]
    fn smallwebrtc_offer_has_pipecats_shape_and_the_calls_parameters() {
        let mut custom = BTreeMap::new();
        custom.insert("AnsweredBy".to_string(), "human".to_string());
        custom.insert("to_number".to_string(), "+15559999".to_string());
        let data = request_data(&custom, &info());
        let body = smallwebrtc_offer("v=0\r\n", &data);
        assert_eq!(body["type"], "offer");
        assert_eq!(body["sdp"], "v=0\r\n");
        assert!(body["pc_id"].is_null());
        assert_eq!(body["request_data"]["AnsweredBy"], "human");
        assert_eq!(body["request_data"]["call_sid"], "CA1");
        assert_eq!(body["request_data"]["from_number"], "+15550001");
        // A parameter the call already set wins over the stream's identity.
        assert_eq!(body["request_data"]["to_number"], "+15559999");
    }

    #[test]
    fn smallwebrtc_answers_are_checked() {
        let (sdp, pc_id) = parse_smallwebrtc_answer(
            r#"{"sdp":"v=0","type":"answer","pc_id":"SmallWebRTCConnection#0"}"#,
        )
        .expect("answer");
        assert_eq!(sdp, "v=0");
        assert_eq!(pc_id.as_deref(), Some("SmallWebRTCConnection#0"));
        assert!(parse_smallwebrtc_answer(r#"{"sdp":"v=0","type":"offer"}"#).is_err());
        assert!(parse_smallwebrtc_answer("not json").is_err());
        assert!(parse_smallwebrtc_answer(r#"{"type":"answer"}"#).is_err());
    }

    #[test]
    fn whip_locations_resolve_against_the_endpoint() {
        assert_eq!(
            whip_resource("http://127.0.0.1:8080/whip", "/whip/abc").expect("relative"),
            "http://127.0.0.1:8080/whip/abc"
        );
        assert_eq!(
            whip_resource("http://127.0.0.1:8080/whip/", "abc").expect("relative"),
            "http://127.0.0.1:8080/whip/abc"
        );
        assert_eq!(
            whip_resource("http://a.example/whip", "https://b.example/s/1").expect("absolute"),
            "https://b.example/s/1"
        );
    }

    #[test]
    fn sockets_bind_loopback_only_for_an_agent_on_this_machine() {
        assert_eq!(
            bind_addrs("http://127.0.0.1:7860/api/offer").expect("url"),
            vec!["127.0.0.1:0"]
        );
        assert_eq!(
            bind_addrs("http://localhost:7860/api/offer").expect("url"),
            vec!["127.0.0.1:0"]
        );
        assert_eq!(
            bind_addrs("https://agent.example/api/offer").expect("url"),
            vec!["0.0.0.0:0"]
        );
        assert!(bind_addrs("not a url").is_err());
    }

    #[test]
    fn callee_frames_become_consecutive_pcmu_packets() {
        let mut out = RtpOut::new(0x1234, u16::MAX, u32::MAX - 100);
        let frame = vec![1000i16; 160];
        let a = out.packet(&frame);
        let b = out.packet(&frame);
        assert!(a.header.marker && !b.header.marker);
        assert_eq!(a.header.payload_type, 0);
        assert_eq!(a.header.ssrc, 0x1234);
        assert_eq!(a.header.sequence_number, u16::MAX);
        assert_eq!(b.header.sequence_number, 0, "sequence numbers wrap");
        assert_eq!(b.header.timestamp, (u32::MAX - 100).wrapping_add(160));
        assert_eq!(a.payload.len(), 160);
        // And back: the agent's PCMU decodes to what was sent (within µ-law's step).
        let pcm = decode_rtp(&a).expect("pcmu");
        assert_eq!(pcm.len(), 160);
        assert!(
            pcm.iter().all(|&s| (s - 1000).abs() < 40),
            "{:?}",
            &pcm[..4]
        );
        let mut other = a.clone();
        other.header.payload_type = 111;
        assert!(decode_rtp(&other).is_none(), "only PCMU is decoded");
    }

    #[test]
    fn webrtc_kinds_report_as_webrtc() {
        assert_eq!(AgentKind::WebrtcSmallWebrtc.report_kind(), "webrtc");
        assert_eq!(AgentKind::WebrtcWhip.report_kind(), "webrtc");
        assert_eq!(AgentKind::TwilioWs.report_kind(), "twilio_ws");
        assert_eq!(
            AgentKind::from_name("webrtc_whip"),
            Some(AgentKind::WebrtcWhip)
        );
        assert_eq!(
            AgentKind::from_name("webrtc_smallwebrtc"),
            Some(AgentKind::WebrtcSmallWebrtc)
        );
        assert_eq!(AgentKind::from_name("webrtc"), None);
    }
}
