//! One outbound call: the only place that joins SIP signalling and media.
//!
//! [`Call::dial`] checks the request, takes an RTP port, sends the INVITE and
//! hands the call to its own task — the single owner of the dialog and the
//! media session. The caller drives it with commands (play, send a frame,
//! hang up) and reads [`CallEvent`]s (ringing, answered, ended with a
//! [`CallSummary`]) and received audio frames. No state is shared with the
//! task behind locks. Campaigns, answering-machine detection and bridges use
//! this object; the CLI is just one more user.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rsipstack::dialog::dialog::{DialogState, TerminatedReason};
use rsipstack::dialog::invitation::InviteOption;
use rsipstack::dialog::invite_dialog::InviteDialog;
use rsipstack::sip::uri::ParamsExt;
use rsipstack::sip::{Header, Response, StatusCode, StatusCodeKind};
use rsipstack::transport::SipAddr;
use serde::Serialize;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{debug, info, info_span, warn, Instrument};

use crate::amd::{Amd, AmdEvent, AmdResult};
use crate::config::{CodecName, Profile, Transport};
use crate::media::dtmf::{parse_info_body, DtmfDigit, DtmfError};
use crate::media::g711::Codec;
use crate::media::session::{AudioFrame, MediaEvent, MediaSession, RtpStats};
use crate::media::tones::ToneEvent;
use crate::media::MediaError;
use crate::sip::sdp::{self, Direction, Format, LocalMedia, RemoteMedia, TELEPHONE_EVENT_PT};
use crate::sip::ua::{credential, host_port, resolve, UserAgent};
use crate::sip::{reason_phrase, Outcome, SipError};

/// What to dial and how.
#[derive(Debug, Clone)]
pub struct CallRequest {
    /// A phone number (sent through `profile`'s trunk) or a `sip:`/`sips:` URI
    /// (dialed directly; a profile then only lends its identity and credentials).
    pub destination: String,
    pub profile: Option<Profile>,
    /// Caller ID for the From header; overrides the profile's.
    pub caller_id: Option<String>,
    /// How long to let it ring before CANCEL.
    pub ring_timeout: Duration,
    /// Longest answered call; then we hang up.
    pub max_duration: Duration,
    /// Deliver the audio we send too ([`Call::take_sent_audio`]), e.g. for stereo recording.
    pub tap_sent: bool,
}

/// Who ended an answered call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Hangup {
    Local,
    Remote,
    MaxDuration,
}

#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct EarlyMedia {
    /// RTP packets received before the answer.
    pub received: u64,
}

#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct RtpCounts {
    pub sent: u64,
    pub received: u64,
    /// Packets the far end sent that never arrived (RFC 3550 expected − received).
    pub lost: i64,
    /// Interarrival jitter of the far end's stream, ms (RFC 3550).
    pub jitter_ms: f64,
    /// Round-trip time from RTCP reports, ms; `None` when no report came back.
    pub rtt_ms: Option<f64>,
    /// Frames the jitter buffer had to make up (loss, late packets).
    pub concealed: u64,
}

/// The record of one attempt, as the CLI prints it and a campaign stores it.
#[derive(Debug, Clone, Serialize)]
pub struct CallSummary {
    pub outcome: Outcome,
    /// The final SIP code; `None` when no final response came (timeout).
    pub sip_code: Option<u16>,
    pub reason: String,
    pub call_id: String,
    /// INVITE → first 180/183.
    pub ring_ms: Option<u64>,
    /// INVITE → 200 OK.
    pub answer_ms: Option<u64>,
    /// Answer → end; 0 when not answered.
    pub duration_ms: u64,
    pub hangup: Option<Hangup>,
    pub early_media: EarlyMedia,
    pub rtp: RtpCounts,
    pub codec: Option<&'static str>,
    /// Digits the far end pressed, in order (RFC 4733, SIP INFO or in-band).
    pub dtmf_received: String,
    /// Beeps, SIT and fax tones heard after the answer (times: ms of received audio).
    pub tones: Vec<ToneEvent>,
}

/// What the call tells its owner.
#[derive(Debug, Clone)]
pub enum CallEvent {
    /// 180/183; `early_media` when the response carried SDP.
    Ringing {
        code: u16,
        early_media: bool,
    },
    Answered {
        codec: Codec,
    },
    /// Everything queued with [`Call::play`] has been sent.
    PlaybackFinished,
    /// The far end pressed a key.
    Dtmf(DtmfDigit),
    /// A beep, SIT or fax tone in the answered call's audio.
    Tone(ToneEvent),
    /// The call is over; the last event.
    Ended(CallSummary),
}

#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("destination {0:?} is neither a phone number nor a sip: URI")]
    BadDestination(String),
    #[error("destination {0:?} is a number: name the trunk to send it through (--profile)")]
    NoProfile(String),
    #[error(transparent)]
    Sip(#[from] SipError),
    #[error(transparent)]
    Media(#[from] MediaError),
    #[error(transparent)]
    TrunkFull(#[from] crate::sip::limits::TrunkFull),
    #[error("cannot send INVITE: {0}")]
    Invite(String),
}

enum Command {
    Hangup,
    Play(Vec<i16>),
    Frame(Vec<i16>),
    Dtmf(String, u32),
}

/// A handle on a call in progress. Dropping it hangs the call up.
pub struct Call {
    call_id: String,
    commands: mpsc::UnboundedSender<Command>,
    events: mpsc::UnboundedReceiver<CallEvent>,
    audio: mpsc::Receiver<AudioFrame>,
    sent_audio: mpsc::Receiver<Vec<i16>>,
}

/// Received audio frames waiting for the owner; older ones are dropped when
/// it does not keep up (the media layer counts them).
const AUDIO_QUEUE: usize = 256;

impl Call {
    /// Sends the INVITE and starts the call's task. Errors here are the
    /// caller's (bad destination, no free RTP port): no INVITE went out.
    pub async fn dial(ua: Arc<UserAgent>, req: CallRequest) -> Result<Call, CallError> {
        let plan = Plan::new(&ua, &req).await?;
        let channel = match &req.profile {
            Some(p) => ua.trunk_limit(p).admit().await?,
            None => None,
        };
        let socket = ua.ports.bind()?;
        let media_ip = ua.media_addr(plan.peer);
        let mut local = LocalMedia::new(media_ip, socket.port);
        let offer = local.offer(&plan.formats, Direction::SendRecv);
        let options = crate::media::MediaOptions {
            tap_sent: req.tap_sent,
            ..Default::default()
        };
        let (media, media_events) =
            MediaSession::start_with(socket, plan.preferred_codec(), None, options)?;

        let call_id = format!(
            "{:016x}{:08x}@outdial",
            rand::random::<u64>(),
            rand::random::<u32>()
        );
        let (state_tx, state_rx) = ua.dialog_layer.new_dialog_state_channel();
        let opt = InviteOption {
            caller_display_name: plan.display_name.clone(),
            caller: plan.caller.clone(),
            callee: plan.callee.clone(),
            destination: plan.destination.clone(),
            content_type: Some("application/sdp".into()),
            offer: Some(offer.into_bytes()),
            contact: plan.contact.clone(),
            credential: plan.credential.clone(),
            headers: Some(plan.headers.clone()),
            call_id: Some(call_id.clone()),
            ..Default::default()
        };
        let span = info_span!("call", call_id = %call_id, to = %plan.callee);
        info!(parent: &span, trunk = ?req.profile.as_ref().map(|p| &p.name), "dialing");
        let (dialog, invite) = ua
            .dialog_layer
            .do_invite_async(opt, state_tx)
            .map_err(|e| CallError::Invite(e.to_string()))?;

        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let (event_tx, event_rx) = mpsc::unbounded_channel();
        let (audio_tx, audio_rx) = mpsc::channel(AUDIO_QUEUE);
        let (sent_tx, sent_rx) = mpsc::channel(AUDIO_QUEUE);
        let task = CallTask {
            ua,
            dialog,
            call_id: call_id.clone(),
            formats: plan.formats,
            local,
            media,
            started: Instant::now(),
            ring_timeout: req.ring_timeout,
            max_duration: req.max_duration,
            events: event_tx,
            audio: audio_tx,
            sent_audio: sent_tx,
            ring_ms: None,
            answered_at: None,
            answer_ms: None,
            final_code: None,
            reason: String::new(),
            outcome: None,
            hangup: None,
            early_received: 0,
            codec: None,
            cancelled: false,
            heard_from_peer: false,
            _channel: channel,
            dtmf_received: String::new(),
            tones: Vec::new(),
        };
        tokio::spawn(
            task.run(invite, state_rx, cmd_rx, media_events)
                .instrument(span),
        );
        Ok(Call {
            call_id,
            commands: cmd_tx,
            events: event_rx,
            audio: audio_rx,
            sent_audio: sent_rx,
        })
    }

    pub fn call_id(&self) -> &str {
        &self.call_id
    }

    /// Queues 8 kHz PCM to send after what is already queued.
    pub fn play(&self, samples: Vec<i16>) {
        let _ = self.commands.send(Command::Play(samples));
    }

    /// Queues one 20 ms frame (160 samples).
    pub fn send_frame(&self, samples: Vec<i16>) {
        let _ = self.commands.send(Command::Frame(samples));
    }

    /// Sends digits (RFC 4733 when negotiated, else in-band), each `duration_ms` long.
    /// Invalid digits are refused here, before anything is sent.
    pub fn send_dtmf(&self, digits: &str, duration_ms: u32) -> Result<(), DtmfError> {
        if let Some(bad) = digits
            .chars()
            .find(|c| crate::media::dtmf::event_code(*c).is_none())
        {
            return Err(DtmfError::InvalidDigit(bad));
        }
        let _ = self
            .commands
            .send(Command::Dtmf(digits.to_string(), duration_ms));
        Ok(())
    }

    /// CANCEL before the answer, BYE after it.
    pub fn hangup(&self) {
        let _ = self.commands.send(Command::Hangup);
    }

    /// The next event; `None` after [`CallEvent::Ended`].
    pub async fn next_event(&mut self) -> Option<CallEvent> {
        self.events.recv().await
    }

    /// The next received audio frame (early media included).
    pub async fn next_audio(&mut self) -> Option<AudioFrame> {
        self.audio.recv().await
    }

    /// The audio we send, 20 ms frames, when the request asked for it (`tap_sent`).
    pub fn take_sent_audio(&mut self) -> mpsc::Receiver<Vec<i16>> {
        let (_tx, rx) = mpsc::channel(1);
        std::mem::replace(&mut self.sent_audio, rx)
    }

    /// Splits the audio receiver off, for a consumer in another task.
    pub fn take_audio(&mut self) -> mpsc::Receiver<AudioFrame> {
        let (_tx, rx) = mpsc::channel(1);
        std::mem::replace(&mut self.audio, rx)
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        let _ = self.commands.send(Command::Hangup);
    }
}

/// Who we call, as whom, and through where: everything decided before the
/// INVITE goes out.
struct Plan {
    callee: rsipstack::sip::Uri,
    caller: rsipstack::sip::Uri,
    display_name: Option<String>,
    contact: rsipstack::sip::Uri,
    destination: Option<SipAddr>,
    peer: Option<SocketAddr>,
    credential: Option<rsipstack::dialog::authenticate::Credential>,
    headers: Vec<Header>,
    formats: Vec<Format>,
}

impl Plan {
    async fn new(ua: &UserAgent, req: &CallRequest) -> Result<Plan, CallError> {
        let dest = req.destination.trim();
        let profile = req.profile.as_ref();
        let is_uri = dest.starts_with("sip:") || dest.starts_with("sips:");
        let (callee, transport, peer, destination) = if is_uri {
            let uri = rsipstack::sip::Uri::try_from(dest)
                .map_err(|_| CallError::BadDestination(dest.to_string()))?;
            let transport = match uri.transport() {
                Some(rsipstack::sip::Transport::Tcp) => Transport::Tcp,
                Some(rsipstack::sip::Transport::Tls) => Transport::Tls,
                _ => Transport::Udp,
            };
            let peer = uri_peer(&uri).await;
            (uri, transport, peer, None)
        } else {
            if !is_phone_number(dest) {
                return Err(CallError::BadDestination(dest.to_string()));
            }
            let p = profile.ok_or_else(|| CallError::NoProfile(dest.to_string()))?;
            let number = dest.replace([' ', '-', '(', ')', '.'], "");
            let uri = crate::sip::ua::trunk_uri(p, Some(&number))?;
            let hop = p.outbound_proxy.as_ref().unwrap_or(&p.proxy);
            let peer = resolve(hop).await?;
            let destination = p.outbound_proxy.as_ref().map(|_| SipAddr {
                r#type: Some(match p.transport {
                    Transport::Udp => rsipstack::sip::Transport::Udp,
                    Transport::Tcp => rsipstack::sip::Transport::Tcp,
                    Transport::Tls => rsipstack::sip::Transport::Tls,
                }),
                addr: peer.into(),
            });
            (uri, p.transport, Some(peer), destination)
        };

        let user = req
            .caller_id
            .clone()
            .or_else(|| profile.and_then(|p| p.caller_id.clone()))
            .or_else(|| profile.and_then(|p| p.from_user.clone()))
            .or_else(|| profile.and_then(|p| p.username.clone()))
            .unwrap_or_else(|| "outdial".to_string());
        let contact_addr = ua
            .contact_addr(transport, peer)
            .or_else(|| ua.contact_addr(Transport::Udp, peer))
            .ok_or(SipError::NoTransport)?;
        let domain = profile
            .and_then(|p| p.from_domain.clone().or_else(|| p.realm.clone()))
            .or_else(|| profile.map(|p| p.proxy.host.clone()))
            .unwrap_or_else(|| contact_addr.ip().to_string());
        let caller = parse_uri(&format!("sip:{}@{}", uri_user(&user), domain))?;
        let contact = parse_uri(&format!(
            "sip:{}@{}",
            uri_user(
                profile
                    .and_then(|p| p.username.as_deref())
                    .unwrap_or("outdial")
            ),
            contact_addr
        ))?;

        let mut headers = Vec::new();
        if let Some(p) = profile {
            let domain = p.from_domain.clone().unwrap_or_else(|| host_port(&p.proxy));
            for (name, value) in [
                ("P-Asserted-Identity", &p.pai),
                ("P-Preferred-Identity", &p.ppi),
            ] {
                if let Some(v) = value {
                    let v = if v.contains(':') {
                        format!("<{v}>")
                    } else {
                        format!("<sip:{}@{domain}>", uri_user(v))
                    };
                    headers.push(Header::Other(name.into(), v));
                }
            }
        }
        let formats = profile.map(|p| formats_of(&p.codecs)).unwrap_or_else(|| {
            formats_of(&[CodecName::Pcmu, CodecName::Pcma, CodecName::TelephoneEvent])
        });

        Ok(Plan {
            callee,
            caller,
            display_name: req
                .caller_id
                .clone()
                .or_else(|| profile.and_then(|p| p.caller_id.clone())),
            contact,
            destination,
            peer,
            credential: profile.and_then(credential),
            headers,
            formats,
        })
    }

    fn preferred_codec(&self) -> Codec {
        self.formats
            .iter()
            .find_map(|f| match f {
                Format::Audio(c) => Some(*c),
                Format::TelephoneEvent(_) => None,
            })
            .unwrap_or(Codec::Pcmu)
    }
}

/// The formats a profile's codecs offer, in its order, except that G.722 (listed only) comes
/// right after the last G.711 codec: a peer that takes the first codec it knows of ours still
/// gets G.711, as from any G.711 trunk, and one that prefers wideband can pick G.722.
fn formats_of(codecs: &[CodecName]) -> Vec<Format> {
    let mut formats = Vec::with_capacity(codecs.len());
    for c in codecs {
        match c {
            CodecName::Pcmu => formats.push(Format::Audio(Codec::Pcmu)),
            CodecName::Pcma => formats.push(Format::Audio(Codec::Pcma)),
            CodecName::TelephoneEvent => formats.push(Format::TelephoneEvent(TELEPHONE_EVENT_PT)),
            #[cfg(feature = "g722")]
            CodecName::G722 => {}
        }
    }
    #[cfg(feature = "g722")]
    if codecs.contains(&CodecName::G722) {
        let after_g711 = formats
            .iter()
            .rposition(|f| matches!(f, Format::Audio(c) if c.is_g711()))
            .map_or(0, |i| i + 1);
        formats.insert(after_g711, Format::Audio(Codec::G722));
    }
    formats
}

/// Digits with an optional leading `+` (spaces, dashes, dots and brackets
/// allowed as separators), or `*`/`#` service codes.
pub fn is_phone_number(s: &str) -> bool {
    let body = s.strip_prefix('+').unwrap_or(s);
    let mut digits = 0;
    for c in body.chars() {
        match c {
            '0'..='9' | '*' | '#' => digits += 1,
            ' ' | '-' | '(' | ')' | '.' => {}
            _ => return false,
        }
    }
    (1..=32).contains(&digits)
}

/// Escapes what a SIP user part may not hold raw (`#` in service codes).
fn uri_user(user: &str) -> String {
    user.replace('#', "%23")
}

fn parse_uri(text: &str) -> Result<rsipstack::sip::Uri, SipError> {
    rsipstack::sip::Uri::try_from(text).map_err(|e| SipError::BadUri {
        uri: text.to_string(),
        reason: e.to_string(),
    })
}

async fn uri_peer(uri: &rsipstack::sip::Uri) -> Option<SocketAddr> {
    let port = uri
        .host_with_port
        .port
        .as_ref()
        .map(|p| p.0)
        .unwrap_or(5060);
    match &uri.host_with_port.host {
        rsipstack::sip::Host::IpAddr(ip) => Some(SocketAddr::new(*ip, port)),
        rsipstack::sip::Host::Domain(d) => tokio::net::lookup_host((d.to_string(), port))
            .await
            .ok()?
            .next(),
    }
}

/// The call's own task: owns the dialog and the media session.
struct CallTask {
    ua: Arc<UserAgent>,
    dialog: InviteDialog,
    call_id: String,
    formats: Vec<Format>,
    local: LocalMedia,
    media: MediaSession,
    started: Instant,
    ring_timeout: Duration,
    max_duration: Duration,
    events: mpsc::UnboundedSender<CallEvent>,
    audio: mpsc::Sender<AudioFrame>,
    sent_audio: mpsc::Sender<Vec<i16>>,
    ring_ms: Option<u64>,
    answered_at: Option<Instant>,
    answer_ms: Option<u64>,
    final_code: Option<u16>,
    reason: String,
    outcome: Option<Outcome>,
    hangup: Option<Hangup>,
    early_received: u64,
    codec: Option<Codec>,
    cancelled: bool,
    /// Any response (100 included) arrived for our INVITE.
    heard_from_peer: bool,
    dtmf_received: String,
    tones: Vec<ToneEvent>,
    /// The trunk channel this call occupies, freed when the task ends.
    _channel: Option<tokio::sync::OwnedSemaphorePermit>,
}

type InviteResult = rsipstack::dialog::invitation::InviteAsyncResult;

/// How long past the ring timeout we wait for the INVITE to end after our
/// CANCEL (487 or a late 200) before giving up on the peer.
const CANCEL_GRACE: Duration = Duration::from_secs(34);

impl CallTask {
    async fn run(
        mut self,
        mut invite: tokio::task::JoinHandle<InviteResult>,
        mut states: rsipstack::dialog::dialog::DialogStateReceiver,
        mut commands: mpsc::UnboundedReceiver<Command>,
        mut media_events: mpsc::Receiver<MediaEvent>,
    ) {
        let ring_deadline = self.started + self.ring_timeout;
        let give_up = ring_deadline + CANCEL_GRACE;
        let mut invite_done = false;
        let mut commands_open = true;
        let mut media_open = true;
        loop {
            let max_deadline = self
                .answered_at
                .map(|at| at + self.max_duration)
                .unwrap_or(give_up);
            tokio::select! {
                res = &mut invite, if !invite_done => {
                    invite_done = true;
                    // States sent before the INVITE ended come first.
                    let mut over = false;
                    while let Ok(state) = states.try_recv() {
                        over |= self.on_state(state).await;
                    }
                    if over || self.on_invite_done(res).await {
                        break;
                    }
                }
                state = states.recv() => {
                    let Some(state) = state else { break };
                    if self.on_state(state).await {
                        break;
                    }
                }
                _ = tokio::time::sleep_until(ring_deadline), if self.answered_at.is_none() && !self.cancelled => {
                    info!(ring_timeout_s = self.ring_timeout.as_secs_f32(), "no answer: cancelling");
                    self.outcome = Some(Outcome::NoAnswer);
                    self.reason = "ring timeout".into();
                    self.cancel().await;
                }
                _ = tokio::time::sleep_until(max_deadline) => {
                    if self.answered_at.is_some() {
                        info!("maximum call duration reached: hanging up");
                        self.hangup = Some(Hangup::MaxDuration);
                        self.bye().await;
                    } else {
                        warn!("INVITE did not end after CANCEL: giving up");
                        self.outcome.get_or_insert(Outcome::Failed);
                    }
                    break;
                }
                cmd = commands.recv(), if commands_open => match cmd {
                    Some(Command::Play(samples)) => self.media.play(samples),
                    Some(Command::Frame(samples)) => self.media.send_frame(&samples),
                    Some(Command::Dtmf(digits, ms)) => {
                        if let Err(e) = self.media.send_dtmf(&digits, ms) {
                            warn!(error = %e, "DTMF not sent");
                        }
                    }
                    Some(Command::Hangup) | None => {
                        commands_open = false;
                        if self.answered_at.is_some() {
                            self.hangup = Some(Hangup::Local);
                            self.bye().await;
                            break;
                        }
                        self.outcome.get_or_insert(Outcome::Failed);
                        if self.reason.is_empty() {
                            self.reason = "cancelled by caller".into();
                        }
                        self.cancel().await;
                    }
                },
                ev = media_events.recv(), if media_open => match ev {
                    Some(MediaEvent::Frame(frame)) => {
                        let _ = self.audio.try_send(frame);
                    }
                    Some(MediaEvent::PlaybackFinished) => {
                        let _ = self.events.send(CallEvent::PlaybackFinished);
                    }
                    Some(MediaEvent::Dtmf(digit)) => self.on_dtmf(digit),
                    Some(MediaEvent::Sent(frame)) => {
                        let _ = self.sent_audio.try_send(frame);
                    }
                    Some(MediaEvent::Tone(tone)) => {
                        info!(?tone, "tone heard");
                        self.tones.push(tone);
                        let _ = self.events.send(CallEvent::Tone(tone));
                    }
                    None => media_open = false,
                },
            }
        }
        self.finish().await;
    }

    /// The INVITE transaction ended. Returns true when the call is over.
    async fn on_invite_done(&mut self, res: Result<InviteResult, tokio::task::JoinError>) -> bool {
        match res {
            Ok(Ok((_, Some(resp)))) => {
                let code = u16::from(resp.status_code.clone());
                if resp.status_code.kind() == StatusCodeKind::Successful {
                    if self.cancelled {
                        // rsipstack ACKs and BYEs a 200 that crossed our CANCEL:
                        // the attempt stays what made us cancel (no answer in
                        // time), with the 200 on record.
                        info!(code, "answered after CANCEL: ACK and BYE sent");
                        self.final_code = Some(code);
                        self.reason = "answered after CANCEL; ended with BYE".into();
                        return true;
                    }
                    self.on_answer(&resp);
                    return false;
                }
                if code == 408 && !self.heard_from_peer {
                    // rsipstack's own 408 on Timer B: nobody answered at all.
                    info!("no response to INVITE");
                    self.outcome = Some(Outcome::Failed);
                    self.reason = "no response (timeout)".into();
                    return true;
                }
                self.final_code = Some(code);
                if !(self.cancelled && code == 487) {
                    self.reason = reason_phrase(&resp);
                    self.outcome = Some(Outcome::from_final_code(code));
                }
                info!(code, reason = %self.reason, "call not answered");
                true
            }
            Ok(Ok((_, None))) => {
                self.outcome.get_or_insert(Outcome::Failed);
                if self.reason.is_empty() {
                    self.reason = "no final response".into();
                }
                true
            }
            Ok(Err(e)) => {
                warn!(error = %e, "INVITE failed");
                self.outcome.get_or_insert(Outcome::Failed);
                if self.reason.is_empty() {
                    self.reason = no_response_reason(&e);
                }
                true
            }
            Err(e) => {
                warn!(error = %e, "INVITE task ended");
                self.outcome.get_or_insert(Outcome::Failed);
                true
            }
        }
    }

    /// A dialog state change. Returns true when the call is over.
    async fn on_state(&mut self, state: DialogState) -> bool {
        match state {
            DialogState::Early(_, resp) => {
                self.heard_from_peer = true;
                let code = u16::from(resp.status_code.clone());
                self.ring_ms
                    .get_or_insert(self.started.elapsed().as_millis() as u64);
                let early_media = !resp.body.is_empty() && self.apply_remote(&resp.body).is_ok();
                debug!(code, early_media, "ringing");
                let _ = self.events.send(CallEvent::Ringing { code, early_media });
            }
            DialogState::Confirmed(_, resp) => {
                if self.answered_at.is_none() && !self.cancelled {
                    self.on_answer(&resp);
                }
            }
            DialogState::Updated(_, req, handle) => {
                // re-INVITE or UPDATE: hold, unhold, a new media address.
                let (code, body) = if req.body.is_empty() {
                    let offer = self.local.offer(&self.formats, Direction::SendRecv);
                    (StatusCode::OK, Some(offer))
                } else {
                    match sdp::parse_remote(&req.body, &self.formats) {
                        Ok(remote) => {
                            self.use_remote(&remote);
                            info!(addr = ?remote.addr, direction = ?remote.direction, "media updated by peer");
                            (
                                StatusCode::OK,
                                Some(self.local.answer(&remote, &self.formats)),
                            )
                        }
                        Err(e) => {
                            warn!(error = %e, "re-INVITE SDP refused");
                            (StatusCode::NotAcceptableHere, None)
                        }
                    }
                };
                let headers = body
                    .as_ref()
                    .map(|_| vec![Header::ContentType("application/sdp".into())]);
                if let Err(e) = handle
                    .respond(code, headers, body.map(String::into_bytes))
                    .await
                {
                    debug!(error = %e, "re-INVITE answer not sent");
                }
            }
            DialogState::Info(_, req, handle) => {
                let ctype = content_type(&req).unwrap_or_default();
                debug!(content_type = %ctype, "INFO received");
                let _ = handle.reply(StatusCode::OK).await;
                if let Some(digit) = parse_info_body(&ctype, &req.body) {
                    self.on_dtmf(digit);
                }
            }
            DialogState::Options(_, _, handle) => {
                let _ = handle
                    .respond(
                        StatusCode::OK,
                        Some(vec![Header::Allow(
                            "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE".into(),
                        )]),
                        None,
                    )
                    .await;
            }
            DialogState::Refer(_, _, handle)
            | DialogState::Message(_, _, handle)
            | DialogState::Notify(_, _, handle)
            | DialogState::Publish(_, _, handle) => {
                let _ = handle.reply(StatusCode::MethodNotAllowed).await;
            }
            DialogState::Terminated(_, reason) => {
                debug!(?reason, "dialog terminated");
                if self.answered_at.is_some() {
                    if self.hangup.is_none() {
                        self.hangup = Some(match reason {
                            TerminatedReason::UasBye => Hangup::Remote,
                            _ => Hangup::Local,
                        });
                    }
                    return true;
                }
                // Unanswered: the INVITE's final response (from the invite
                // task) says why; keep waiting for it.
            }
            DialogState::Trying(_) => self.heard_from_peer = true,
            DialogState::Calling(_) | DialogState::WaitAck(_, _) => {}
        }
        false
    }

    fn on_answer(&mut self, resp: &Response) {
        if self.answered_at.is_some() {
            return;
        }
        self.answered_at = Some(Instant::now());
        // Packets that arrived before the answer: early media.
        self.early_received = self.media.stats().received;
        self.answer_ms = Some(self.started.elapsed().as_millis() as u64);
        self.final_code = Some(u16::from(resp.status_code.clone()));
        self.reason = reason_phrase(resp);
        self.outcome = Some(Outcome::Answered);
        if let Err(e) = self.apply_remote(&resp.body) {
            warn!(error = %e, "answer SDP unusable: no audio will flow");
        }
        // Ringback and busy are single tones too: listen for beeps only now.
        self.media.set_tone_detection(true);
        info!(codec = ?self.codec, answer_ms = self.answer_ms, "answered");
        let codec = self.codec.unwrap_or(Codec::Pcmu);
        let _ = self.events.send(CallEvent::Answered { codec });
    }

    fn on_dtmf(&mut self, digit: DtmfDigit) {
        info!(digit = %digit.digit, source = ?digit.source, "DTMF received");
        self.dtmf_received.push(digit.digit);
        let _ = self.events.send(CallEvent::Dtmf(digit));
    }

    fn apply_remote(&mut self, body: &[u8]) -> Result<(), sdp::SdpError> {
        let remote = sdp::parse_remote(body, &self.formats)?;
        self.use_remote(&remote);
        Ok(())
    }

    fn use_remote(&mut self, remote: &RemoteMedia) {
        if self.codec != Some(remote.codec) {
            self.media.set_codec(remote.codec);
            self.codec = Some(remote.codec);
        }
        let we_take_dtmf = self
            .formats
            .iter()
            .any(|f| matches!(f, Format::TelephoneEvent(_)));
        self.media
            .set_dtmf_pt(remote.dtmf_pt.filter(|_| we_take_dtmf));
        self.media
            .set_remote(remote.addr.filter(|_| remote.peer_receives()));
    }

    async fn cancel(&mut self) {
        if self.cancelled {
            return;
        }
        self.cancelled = true;
        if let Err(e) = self.dialog.cancel().await {
            debug!(error = %e, "CANCEL not answered 200");
        }
    }

    async fn bye(&mut self) {
        self.media.set_remote(None);
        if let Err(e) = self.dialog.bye().await {
            warn!(error = %e, "BYE failed");
        }
    }

    async fn finish(self) {
        let ended = Instant::now();
        self.ua.dialog_layer.remove_dialog(&self.dialog.id());
        let stats: RtpStats = self.media.stop().await;
        let summary = CallSummary {
            outcome: self.outcome.unwrap_or(Outcome::Failed),
            sip_code: self.final_code,
            reason: self.reason,
            call_id: self.call_id,
            ring_ms: self.ring_ms,
            answer_ms: self.answer_ms,
            duration_ms: self
                .answered_at
                .map(|at| ended.duration_since(at).as_millis() as u64)
                .unwrap_or(0),
            hangup: self.hangup,
            early_media: EarlyMedia {
                received: if self.answered_at.is_some() {
                    self.early_received
                } else {
                    stats.received
                },
            },
            rtp: RtpCounts {
                sent: stats.sent,
                received: stats.received,
                lost: stats.lost,
                jitter_ms: (stats.jitter_ms * 100.0).round() / 100.0,
                rtt_ms: stats.rtt_ms.map(|r| (r * 100.0).round() / 100.0),
                concealed: stats.jitter_buffer.concealed,
            },
            codec: self.codec.map(Codec::name),
            dtmf_received: self.dtmf_received,
            tones: self.tones,
        };
        info!(
            outcome = %summary.outcome,
            code = ?summary.sip_code,
            duration_ms = summary.duration_ms,
            sent = stats.sent,
            received = stats.received,
            "call ended"
        );
        let _ = self.events.send(CallEvent::Ended(summary));
    }
}

fn content_type(req: &rsipstack::sip::Request) -> Option<String> {
    req.headers.iter().find_map(|h| match h {
        Header::ContentType(c) => Some(c.to_string()),
        _ => None,
    })
}

fn no_response_reason(e: &rsipstack::Error) -> String {
    let text = e.to_string();
    if text.to_ascii_lowercase().contains("timeout") {
        "no response (timeout)".into()
    } else {
        text
    }
}

/// Answering-machine detection on a call's received audio, run beside the call: every frame
/// passes through (to a recorder or anyone else) and, from the answer on, into the [`Amd`].
/// Frames are re-cut into 20 ms; audio time starts at 0 at the answer. When the audio ends
/// (the call is over) an undecided detection is closed as a hang-up.
pub struct AmdTap {
    answered: std::sync::Arc<std::sync::atomic::AtomicBool>,
    events: mpsc::UnboundedReceiver<AmdEvent>,
    task: tokio::task::JoinHandle<Option<AmdResult>>,
}

impl AmdTap {
    /// Starts the tap on `audio` (from [`Call::take_audio`]); returns the frames passed on.
    pub fn start(
        mut audio: mpsc::Receiver<AudioFrame>,
        mut amd: Amd,
    ) -> (mpsc::Receiver<AudioFrame>, AmdTap) {
        use std::sync::atomic::Ordering;
        let (forward_tx, forward_rx) = mpsc::channel(64);
        let (events_tx, events) = mpsc::unbounded_channel();
        let answered = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = answered.clone();
        let task = tokio::spawn(async move {
            let mut pending: Vec<i16> = Vec::with_capacity(2 * crate::amd::FRAME_SAMPLES);
            let mut t_ms = 0u64;
            let mut started = false;
            let mut events_out = Vec::new();
            let mut forwarding = true;
            while let Some(frame) = audio.recv().await {
                if flag.load(Ordering::Acquire) && !amd.is_done() {
                    started = true;
                    pending.extend_from_slice(&frame.samples);
                    let mut used = 0;
                    while pending.len() - used >= crate::amd::FRAME_SAMPLES {
                        let chunk = &pending[used..used + crate::amd::FRAME_SAMPLES];
                        amd.push(chunk, t_ms, &mut events_out);
                        used += crate::amd::FRAME_SAMPLES;
                        t_ms += crate::amd::FRAME_MS;
                    }
                    pending.drain(..used);
                    for ev in events_out.drain(..) {
                        let _ = events_tx.send(ev);
                    }
                } else if started {
                    t_ms += (frame.samples.len() as u64 * 1000) / crate::media::SAMPLE_RATE as u64;
                }
                if forwarding && forward_tx.send(frame).await.is_err() {
                    forwarding = false;
                }
            }
            if !started {
                return None;
            }
            amd.finish(t_ms, true, &mut events_out);
            for ev in events_out.drain(..) {
                let _ = events_tx.send(ev);
            }
            Some(amd.result())
        });
        (
            forward_rx,
            AmdTap {
                answered,
                events,
                task,
            },
        )
    }

    /// The call was answered: detection starts with the next frame.
    pub fn answered(&self) {
        self.answered
            .store(true, std::sync::atomic::Ordering::Release);
    }

    /// The next detection event; `None` once the audio has ended and every event was read.
    pub async fn next_event(&mut self) -> Option<AmdEvent> {
        self.events.recv().await
    }

    /// The final result, once the audio has ended (`None` when the call was never answered).
    pub async fn result(self) -> Option<AmdResult> {
        self.task.await.ok().flatten()
    }
}

/// Writes the call's audio into the recorder: received frames and (for outbound and stereo)
/// sent frames, paired slot by slot; a side that runs ahead alone (the other not started, or
/// silent) is written with silence on the other. Drains both channels even without a recorder.
pub async fn record_call(
    mut received: mpsc::Receiver<AudioFrame>,
    mut sent: mpsc::Receiver<Vec<i16>>,
    mut recorder: Option<crate::media::wav::CallRecorder>,
) -> Result<(), MediaError> {
    use std::collections::VecDeque;
    const AHEAD: usize = 3;
    let (mut rx, mut tx): (VecDeque<Vec<i16>>, VecDeque<Vec<i16>>) = Default::default();
    let (mut rx_open, mut tx_open) = (true, true);
    let mut result = Ok(());
    while rx_open || tx_open {
        tokio::select! {
            f = received.recv(), if rx_open => match f {
                Some(f) => rx.push_back(f.samples),
                None => rx_open = false,
            },
            f = sent.recv(), if tx_open => match f {
                Some(f) => tx.push_back(f),
                None => tx_open = false,
            },
        }
        let done = !rx_open && !tx_open;
        while let Some(r) = recorder.as_mut().filter(|_| result.is_ok()) {
            let slot = match (rx.front(), tx.front()) {
                (Some(_), Some(_)) => (rx.pop_front(), tx.pop_front()),
                (Some(_), None) if rx.len() > AHEAD || done => (rx.pop_front(), None),
                (None, Some(_)) if tx.len() > AHEAD || done => (None, tx.pop_front()),
                _ => break,
            };
            result = r.write_slot(slot.0.as_deref(), slot.1.as_deref());
        }
        if recorder.is_none() {
            rx.clear();
            tx.clear();
        }
    }
    match recorder {
        Some(r) if result.is_ok() => r.finish(),
        _ => result,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phone_numbers() {
        for ok in [
            "12025550101",
            "+1 (202) 555-0101",
            "*67",
            "911",
            "+44.20.7946.0018",
            "#31#",
        ] {
            assert!(is_phone_number(ok), "{ok}");
        }
        for bad in [
            "",
            "+",
            "abc",
            "12a3",
            "sip:x@y",
            "1234567890123456789012345678901234",
        ] {
            assert!(!is_phone_number(bad), "{bad}");
        }
    }

    #[test]
    fn profile_codecs_become_offered_formats() {
        let f = formats_of(&[CodecName::Pcma, CodecName::TelephoneEvent, CodecName::Pcmu]);
        assert_eq!(
            f,
            [
                Format::Audio(Codec::Pcma),
                Format::TelephoneEvent(TELEPHONE_EVENT_PT),
                Format::Audio(Codec::Pcmu)
            ]
        );
    }

    #[cfg(feature = "g722")]
    #[test]
    fn g722_is_offered_after_g711_only_when_listed() {
        let f = formats_of(&[
            CodecName::G722,
            CodecName::Pcmu,
            CodecName::Pcma,
            CodecName::TelephoneEvent,
        ]);
        assert_eq!(
            f,
            [
                Format::Audio(Codec::Pcmu),
                Format::Audio(Codec::Pcma),
                Format::Audio(Codec::G722),
                Format::TelephoneEvent(TELEPHONE_EVENT_PT)
            ]
        );
        assert!(!formats_of(&CodecName::ALL).contains(&Format::Audio(Codec::G722)));
        assert_eq!(formats_of(&[CodecName::G722]), [Format::Audio(Codec::G722)]);
    }

    #[test]
    fn summary_json_has_the_documented_shape() {
        let s = CallSummary {
            outcome: Outcome::Answered,
            sip_code: Some(200),
            reason: "OK".into(),
            call_id: "abc@outdial".into(),
            ring_ms: Some(120),
            answer_ms: Some(900),
            duration_ms: 4000,
            hangup: Some(Hangup::Remote),
            early_media: EarlyMedia { received: 0 },
            rtp: RtpCounts {
                sent: 200,
                received: 190,
                lost: 3,
                jitter_ms: 1.25,
                rtt_ms: None,
                concealed: 4,
            },
            codec: Some("PCMU"),
            dtmf_received: "12#".into(),
            tones: vec![],
        };
        let v: serde_json::Value = serde_json::to_value(&s).unwrap();
        assert_eq!(v["outcome"], "answered");
        assert_eq!(v["sip_code"], 200);
        assert_eq!(v["hangup"], "remote");
        assert_eq!(v["rtp"]["sent"], 200);
        assert_eq!(v["rtp"]["received"], 190);
        assert_eq!(v["codec"], "PCMU");
        assert_eq!(v["early_media"]["received"], 0);
        assert_eq!(v["dtmf_received"], "12#");
        assert_eq!(v["tones"], serde_json::json!([]));
    }
}
