//! The tokio driver of one leg: sends the INVITE ([`dial`]) or answers the caller's
//! ([`answer`]), then turns what rsipstack and the media session report into [`Input`]s for
//! the leg's [`CallCore`] and carries out its [`Output`]s.
//!
//! It decides nothing itself — every rule (timeouts, CANCEL or BYE, outcomes, SDP answers,
//! when to fail over or follow a redirect) is the core's; the driver only walks to the next
//! target of the trunk, else the next trunk in the order [`crate::sip::trunks::order`] gave. It must not block: SIP requests are awaited one at a time inside the task,
//! received audio is passed on with `try_send` (a slow owner loses frames, never stalls the
//! call), and in-dialog requests are always answered so the stack stops retransmitting.

use std::collections::VecDeque;
use std::sync::Arc;

use rsipstack::dialog::dialog::{DialogState, TerminatedReason};
use rsipstack::dialog::invitation::InviteOption;
use rsipstack::dialog::invite_dialog::InviteDialog;
use rsipstack::sip::{Header, StatusCode};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{debug, info, info_span, warn, Instrument};

use super::core::{CallCore, Input, Output};
use super::plan::{answer_contact, profile_formats, Plan};
use super::{AnswerRequest, Call, CallError, CallEvent, CallRequest, Command};
use crate::config::Trunk;
use crate::media::dtmf::parse_info_body;
use crate::media::session::{AudioFrame, MediaEvent, MediaSession};
use crate::media::srtp::SrtpPolicy;
use crate::media::MediaOptions;
use crate::sip::sdp::{Direction, LocalMedia};
use crate::sip::trunks::TrunkTry;
use crate::sip::{reason_phrase, UserAgent};

/// Received audio frames waiting for the owner; older ones are dropped when it does not keep
/// up (the media layer counts them).
const AUDIO_QUEUE: usize = 256;

type InviteResult = rsipstack::dialog::invitation::InviteAsyncResult;

pub(super) async fn dial(ua: Arc<UserAgent>, req: CallRequest) -> Result<Call, CallError> {
    // The profile's trunks in the order this call tries them (none for a SIP URI).
    let mut trunks: VecDeque<Trunk> = match (&req.profile, Plan::uses_trunks(&req)) {
        (Some(p), true) => ua
            .trunk_order(p)
            .into_iter()
            .filter_map(|i| p.trunks.get(i).cloned())
            .collect(),
        _ => VecDeque::new(),
    };
    let channel = match &req.profile {
        Some(p) => ua.trunk_limit(p).admit().await?,
        None => None,
    };
    let call_id = format!(
        "{:016x}{:08x}@outdial",
        rand::random::<u64>(),
        rand::random::<u32>()
    );
    let socket = ua.ports.bind()?;
    let port = socket.port;

    // The first trunk that takes the INVITE (its own channels, its host resolving).
    let mut failover = Vec::new();
    let first = loop {
        let trunk = trunks.pop_front();
        let plan = Plan::new(&ua, &req, trunk.as_ref()).await;
        let attempt = match plan {
            Ok(plan) => Try::admit(&ua, &req, trunk.as_ref(), plan).await,
            Err(e) => Err(e),
        };
        match attempt {
            Ok(t) => break t,
            Err(e) => match trunk {
                Some(t) if !trunks.is_empty() => {
                    warn!(trunk = %t.name, error = %e, "trunk not usable; trying the next");
                    failover.push(TrunkTry {
                        trunk: t.name.clone(),
                        code: None,
                        reason: e.to_string(),
                    });
                }
                _ => return Err(e),
            },
        }
    };
    let media_ip = ua.media_addr(first.plan.peer);
    let local = LocalMedia::new(media_ip, port).with_srtp(srtp_policy(req.profile.as_ref()));
    let options = media_options(req.profile.as_ref(), req.tap_sent);
    let (media, media_events) =
        MediaSession::start_with(socket, first.plan.preferred_codec(), None, options)?;
    let media = Arc::new(media);

    let mut core = CallCore::new(
        std::time::Instant::now(),
        req.ring_timeout,
        req.max_duration,
        first.plan.formats.clone(),
        local,
    );
    if let Some(t) = &first.trunk {
        let more = first.plan.has_next_target() || !trunks.is_empty();
        core = core.on_trunk(&t.name, Some(t.invite_timeout), more);
    }
    core.left_behind(failover);
    let span = info_span!("call", call_id = %call_id, to = %first.plan.callee);
    let offer = core.offer(Direction::SendRecv);
    let mut first = first;
    let leg = first.send(&ua, &call_id, offer, &span)?;

    let leg_parts = LegParts {
        ua,
        dialog: leg.dialog,
        call_id,
        core,
        media,
        on_answer: req.on_answer.clone(),
        channel,
        trunk_channel: leg.channel,
        redial: Some(Redial {
            trunks,
            current: first,
            request: req,
        }),
    };
    Ok(start_leg(
        leg_parts,
        Some(leg.invite),
        leg.states,
        media_events,
        span,
    ))
}

/// Answers an admitted inbound INVITE: takes an RTP port, answers the caller's offer in a
/// 200 and hands the leg to its own task, which reports [`CallEvent::Answered`] at the ACK.
/// Errors here were answered to the caller already (488 for an offer we cannot take, 503
/// without a free RTP port): no dialog is left.
pub(super) async fn answer(
    ua: Arc<UserAgent>,
    incoming: crate::sip::inbound::IncomingCall,
    req: AnswerRequest,
) -> Result<Call, CallError> {
    use rsipstack::sip::prelude::HeadersExt;
    let mut tx = incoming.tx;
    let call_id = tx
        .original
        .call_id_header()
        .map(|h| h.value().to_string())
        .unwrap_or_default();
    let transport = match tx.connection.as_ref().map(|c| c.transport()) {
        Some(rsipstack::sip::Transport::Tcp) => crate::config::Transport::Tcp,
        Some(rsipstack::sip::Transport::Tls) => crate::config::Transport::Tls,
        _ => crate::config::Transport::Udp,
    };
    let peer = std::net::SocketAddr::new(incoming.source, 5060);
    let socket = match ua.ports.bind() {
        Ok(s) => s,
        Err(e) => {
            let _ = tx.reply(StatusCode::ServiceUnavailable).await;
            return Err(e.into());
        }
    };
    let local = LocalMedia::new(ua.media_addr(Some(peer)), socket.port)
        .with_srtp(srtp_policy(req.profile.as_ref()));
    let formats = profile_formats(req.profile.as_ref());
    let (core, answer_sdp) = match CallCore::incoming(
        std::time::Instant::now(),
        req.max_duration,
        formats,
        local,
        &tx.original.body,
    ) {
        Ok(c) => c,
        Err(e) => {
            warn!(call_id = %call_id, error = %e, "inbound offer refused");
            let _ = tx.reply(StatusCode::NotAcceptableHere).await;
            return Err(CallError::Invite(format!("the caller's offer: {e}")));
        }
    };
    let contact_user = req
        .profile
        .as_ref()
        .and_then(|p| p.username.clone())
        .unwrap_or_else(|| "outdial".into());
    let contact = match answer_contact(&ua, &contact_user, transport, peer) {
        Ok(c) => c,
        Err(e) => {
            let _ = tx.reply(StatusCode::ServerInternalError).await;
            return Err(e);
        }
    };
    let (state_tx, states) = ua.dialog_layer.new_dialog_state_channel();
    let dialog =
        match ua
            .dialog_layer
            .get_or_create_server_invite(&tx, state_tx, None, Some(contact))
        {
            Ok(d) => d,
            Err(e) => {
                let _ = tx.reply(StatusCode::ServerInternalError).await;
                return Err(CallError::Invite(e.to_string()));
            }
        };
    let options = media_options(req.profile.as_ref(), req.tap_sent);
    let codec = core.codec().unwrap_or(crate::media::g711::Codec::Pcmu);
    let (media, media_events) = match MediaSession::start_with(socket, codec, None, options) {
        Ok(m) => m,
        Err(e) => {
            let _ = dialog.reject(Some(StatusCode::ServiceUnavailable), None);
            ua.dialog_layer.remove_dialog(&dialog.id());
            return Err(e.into());
        }
    };
    let media = Arc::new(media);
    let span = info_span!("call", call_id = %call_id, inbound = true);
    if let Err(e) = dialog.accept(
        Some(vec![Header::ContentType("application/sdp".into())]),
        Some(answer_sdp.into_bytes()),
    ) {
        ua.dialog_layer.remove_dialog(&dialog.id());
        return Err(CallError::Invite(e.to_string()));
    }
    info!(parent: &span, profile = %incoming.profile, "inbound call answered");
    // The INVITE's server transaction: retransmits our 200 until the ACK (or a CANCEL).
    let mut server = dialog.clone();
    tokio::spawn(
        async move {
            if let Err(e) = server.handle(&mut tx).await {
                debug!(error = %e, "inbound INVITE transaction ended with an error");
            }
        }
        .instrument(span.clone()),
    );

    let parts = LegParts {
        ua,
        dialog,
        call_id,
        core,
        media,
        on_answer: None,
        channel: None,
        trunk_channel: None,
        redial: None,
    };
    Ok(start_leg(parts, None, states, media_events, span))
}

/// The media session's options for a leg of `profile` (its RTP latching).
fn media_options(profile: Option<&crate::config::Profile>, tap_sent: bool) -> MediaOptions {
    MediaOptions {
        tap_sent,
        latching: profile.map_or_else(Default::default, |p| p.rtp_latching),
        ..Default::default()
    }
}

/// Whether a leg of `profile` offers SRTP (a SIP URI without a profile: plain RTP).
fn srtp_policy(profile: Option<&crate::config::Profile>) -> SrtpPolicy {
    profile.map_or(SrtpPolicy::Off, |p| p.srtp)
}

/// What a leg's task is made of, besides its channels.
struct LegParts {
    ua: Arc<UserAgent>,
    dialog: InviteDialog,
    call_id: String,
    core: CallCore,
    media: Arc<MediaSession>,
    on_answer: Option<mpsc::UnboundedSender<crate::sip::orphan::DialogFacts>>,
    channel: Option<tokio::sync::OwnedSemaphorePermit>,
    trunk_channel: Option<tokio::sync::OwnedSemaphorePermit>,
    redial: Option<Redial>,
}

/// Spawns the leg's task (the INVITE in flight, for an outbound leg) and returns its handle.
fn start_leg(
    parts: LegParts,
    invite: Option<tokio::task::JoinHandle<InviteResult>>,
    states: rsipstack::dialog::dialog::DialogStateReceiver,
    media_events: mpsc::Receiver<MediaEvent>,
    span: tracing::Span,
) -> Call {
    let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
    let (event_tx, event_rx) = mpsc::unbounded_channel();
    let (audio_tx, audio_rx) = mpsc::channel(AUDIO_QUEUE);
    let (sent_tx, sent_rx) = mpsc::channel(AUDIO_QUEUE);
    // Once a consumer takes the received frames (`Call::take_audio`), the media engine sends
    // them straight to it instead of through this task; the task keeps its own sender so the
    // channel still closes when the call's task ends.
    let frames_tx = audio_tx.downgrade();
    let weak = Arc::downgrade(&parts.media);
    let call_id = parts.call_id.clone();
    let task = CallTask {
        ua: parts.ua,
        dialog: parts.dialog,
        call_id: parts.call_id,
        core: parts.core,
        media: parts.media,
        events: event_tx,
        audio: audio_tx,
        sent_audio: sent_tx,
        early_received: 0,
        tones_beside: false,
        on_answer: parts.on_answer,
        _channel: parts.channel,
        trunk_channel: parts.trunk_channel,
        redial: parts.redial,
        next_leg: None,
        abandon: false,
    };
    tokio::spawn(
        task.run(invite, states, cmd_rx, media_events)
            .instrument(span),
    );
    Call {
        call_id,
        commands: cmd_tx,
        events: event_rx,
        audio: audio_rx,
        frames_tx: Some(frames_tx),
        sent_audio: sent_rx,
        media: weak,
    }
}

/// What an outbound leg needs to send its INVITE again (next target, next trunk, a
/// redirect); an inbound leg has none.
struct Redial {
    /// The trunks not tried yet, in order.
    trunks: VecDeque<Trunk>,
    /// The trunk (and its resolved targets) the INVITE in flight went to.
    current: Try,
    /// What was asked (a failover makes the next trunk's plan from it).
    request: CallRequest,
}

/// One INVITE about to go out: its plan and the trunk channel it holds.
struct Try {
    trunk: Option<Trunk>,
    plan: Plan,
    channel: Option<tokio::sync::OwnedSemaphorePermit>,
}

/// One INVITE in flight.
struct Leg {
    dialog: InviteDialog,
    invite: tokio::task::JoinHandle<InviteResult>,
    states: rsipstack::dialog::dialog::DialogStateReceiver,
    channel: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl Try {
    /// Takes a channel of `trunk`'s own (its `max_channels`, then its `max_cps` slot).
    /// Over TCP or TLS, also opens the connection first (or finds it open), so that a refused
    /// connection or a certificate that does not verify fails this trunk at once with that
    /// reason, rather than as a silent timer B.
    async fn admit(
        ua: &UserAgent,
        req: &CallRequest,
        trunk: Option<&Trunk>,
        plan: Plan,
    ) -> Result<Try, CallError> {
        let channel = match (&req.profile, trunk) {
            (Some(p), Some(t)) => ua.one_trunk_limit(p, t).admit().await?,
            _ => None,
        };
        let reliable = plan.destination.as_ref().filter(|d| {
            matches!(
                d.r#type,
                Some(rsipstack::sip::Transport::Tcp | rsipstack::sip::Transport::Tls)
            )
        });
        if let Some(dest) = reliable {
            if let Err(e) = ua.endpoint().transport_layer.lookup(dest, None).await {
                let transport = match dest.r#type {
                    Some(rsipstack::sip::Transport::Tls) => "TLS",
                    _ => "TCP",
                };
                return Err(CallError::Invite(format!(
                    "cannot connect to {} over {transport}: {e}",
                    dest.addr
                )));
            }
        }
        Ok(Try {
            trunk: trunk.cloned(),
            plan,
            channel,
        })
    }

    /// Sends the INVITE with `offer` to the plan's current target.
    fn send(
        &mut self,
        ua: &UserAgent,
        call_id: &str,
        offer: String,
        span: &tracing::Span,
    ) -> Result<Leg, CallError> {
        let plan = &self.plan;
        let (state_tx, states) = ua.dialog_layer.new_dialog_state_channel();
        // Session timers (RFC 4028): a far end that wants one sets it in its answer.
        let mut headers = plan.headers.clone();
        headers.push(Header::Supported("timer".into()));
        let opt = InviteOption {
            caller_display_name: plan.display_name.clone(),
            caller: plan.caller.clone(),
            callee: plan.callee.clone(),
            destination: plan.destination.clone(),
            content_type: Some("application/sdp".into()),
            offer: Some(offer.into_bytes()),
            contact: plan.contact.clone(),
            credential: plan.credential.clone(),
            headers: Some(headers),
            call_id: Some(call_id.to_string()),
            // Supported: 100rel; reliable provisionals are PRACKed (RFC 3262).
            support_prack: true,
            ..Default::default()
        };
        info!(
            parent: span,
            trunk = ?self.trunk.as_ref().map(|t| &t.name),
            to = %plan.callee,
            target = ?plan.target().map(|t| (t.addr, t.transport)),
            targets = plan.targets.len(),
            "dialing"
        );
        let (dialog, invite) = ua
            .dialog_layer
            .do_invite_async(opt, state_tx)
            .map_err(|e| CallError::Invite(e.to_string()))?;
        Ok(Leg {
            dialog,
            invite,
            states,
            channel: self.channel.take(),
        })
    }
}

/// The call's own task: owns the dialog, the media session and the core.
struct CallTask {
    ua: Arc<UserAgent>,
    dialog: InviteDialog,
    call_id: String,
    core: CallCore,
    /// The only strong reference (the handle holds a weak one), so the session stops here.
    media: Arc<MediaSession>,
    events: mpsc::UnboundedSender<CallEvent>,
    audio: mpsc::Sender<AudioFrame>,
    sent_audio: mpsc::Sender<Vec<i16>>,
    /// Packets received before the answer (early media), taken when it comes.
    early_received: u64,
    /// The answered call's tones come from a detector beside it ([`crate::call::ToneInput`]).
    tones_beside: bool,
    /// Told the dialog's facts at answer (see [`CallRequest::on_answer`]).
    on_answer: Option<mpsc::UnboundedSender<crate::sip::orphan::DialogFacts>>,
    /// The profile channel this call occupies, freed when the task ends.
    _channel: Option<tokio::sync::OwnedSemaphorePermit>,
    /// The channel of the trunk the INVITE in flight went to.
    trunk_channel: Option<tokio::sync::OwnedSemaphorePermit>,
    /// An outbound leg's trunks and plan; `None` for an inbound leg.
    redial: Option<Redial>,
    /// The next trunk's INVITE, for the run loop to take over.
    next_leg: Option<Leg>,
    /// The INVITE in flight is to be given up (no response at all).
    abandon: bool,
}

impl CallTask {
    async fn run(
        mut self,
        mut invite: Option<tokio::task::JoinHandle<InviteResult>>,
        mut states: rsipstack::dialog::dialog::DialogStateReceiver,
        mut commands: mpsc::UnboundedReceiver<Command>,
        mut media_events: mpsc::Receiver<MediaEvent>,
    ) {
        let mut invite_done = invite.is_none();
        let mut commands_open = true;
        // What the core decided before the task started (an inbound leg's media).
        while let Some(out) = self.core.poll_output() {
            self.execute(out).await;
        }
        let mut media_open = true;
        let mut states_open = true;
        while !self.core.is_over() {
            if std::mem::take(&mut self.abandon) {
                if let Some(i) = &invite {
                    i.abort();
                }
                invite_done = true;
            }
            if let Some(leg) = self.next_leg.take() {
                // The call moved to another trunk: its INVITE and dialog replace the old.
                invite = Some(leg.invite);
                states = leg.states;
                invite_done = false;
                states_open = true;
            }
            let deadline = self
                .core
                .poll_timeout()
                .map(Instant::from_std)
                .unwrap_or_else(|| Instant::now() + std::time::Duration::from_secs(3600));
            tokio::select! {
                res = async {
                    match invite.as_mut() {
                        Some(i) => i.await,
                        None => std::future::pending().await,
                    }
                }, if !invite_done => {
                    invite_done = true;
                    // States sent before the INVITE ended come first.
                    while let Ok(state) = states.try_recv() {
                        self.on_state(state).await;
                    }
                    self.on_invite_done(res).await;
                }
                state = states.recv(), if states_open => match state {
                    Some(state) => self.on_state(state).await,
                    None => {
                        // The dialog layer is gone (shutting down): the call is over.
                        states_open = false;
                        self.input(Input::Terminated { by_remote: false }).await;
                        self.input(Input::InviteGone { error: Some("dialog layer closed".into()) }).await;
                    }
                },
                _ = tokio::time::sleep_until(deadline) => self.input(Input::Timeout).await,
                cmd = commands.recv(), if commands_open => match cmd {
                    Some(Command::Play(samples)) => self.media.play(samples),
                    Some(Command::ClearPlayback) => self.media.clear_playback(),
                    Some(Command::Frame(samples)) => self.media.send_frame(&samples),
                    Some(Command::Dtmf(digits, ms)) => {
                        if let Err(e) = self.media.send_dtmf(&digits, ms) {
                            warn!(error = %e, "DTMF not sent");
                        }
                    }
                    Some(Command::TonesHeardBeside) => {
                        self.tones_beside = true;
                        if self.core.is_answered() {
                            self.media.set_tone_detection(false);
                        }
                    }
                    Some(Command::Tone(tone)) => {
                        info!(?tone, "tone heard");
                        self.input(Input::Tone(tone)).await;
                    }
                    Some(Command::Hold(on)) => self.input(Input::Hold(on)).await,
                    Some(Command::Transfer(target)) => {
                        self.input(Input::Refer { target: &target }).await
                    }
                    Some(Command::Hangup) | None => {
                        commands_open = false;
                        self.input(Input::Hangup).await;
                    }
                },
                ev = media_events.recv(), if media_open => match ev {
                    Some(MediaEvent::Frame(frame)) => {
                        let _ = self.audio.try_send(frame);
                    }
                    Some(MediaEvent::PlaybackFinished) => {
                        let _ = self.events.send(CallEvent::PlaybackFinished);
                    }
                    Some(MediaEvent::Dtmf(digit)) => {
                        info!(digit = %digit.digit, source = ?digit.source, "DTMF received");
                        self.input(Input::Dtmf(digit)).await;
                    }
                    Some(MediaEvent::Sent(frame)) => {
                        let _ = self.sent_audio.try_send(frame);
                    }
                    Some(MediaEvent::Tone(tone)) => {
                        info!(?tone, "tone heard");
                        self.input(Input::Tone(tone)).await;
                    }
                    None => media_open = false,
                },
            }
        }
        self.finish().await;
    }

    /// Feeds the core and carries out what it asks, in order.
    async fn input(&mut self, input: Input<'_>) {
        self.core.handle(std::time::Instant::now(), input);
        while let Some(out) = self.core.poll_output() {
            self.execute(out).await;
        }
    }

    async fn execute(&mut self, out: Output) {
        match out {
            Output::Cancel => {
                if let Err(e) = self.dialog.cancel().await {
                    debug!(error = %e, "CANCEL not answered 200");
                }
            }
            Output::Bye => {
                self.media.set_remote(None);
                if let Err(e) = self.dialog.bye().await {
                    warn!(error = %e, "BYE failed");
                }
            }
            Output::Reinvite { sdp } => {
                let headers = vec![Header::ContentType("application/sdp".into())];
                match self
                    .dialog
                    .reinvite(Some(headers), Some(sdp.into_bytes()))
                    .await
                {
                    Ok(Some(resp)) => debug!(code = %resp.status_code, "re-INVITE answered"),
                    Ok(None) => debug!("re-INVITE not sent: dialog not confirmed"),
                    Err(e) => warn!(error = %e, "re-INVITE failed"),
                }
            }
            Output::Refer { target } => {
                let code = match rsipstack::sip::Uri::try_from(target.as_str()) {
                    Ok(uri) => match self.dialog.refer(uri, None, None).await {
                        Ok(Some(resp)) => u16::from(resp.status_code.clone()),
                        Ok(None) => 481,
                        Err(e) => {
                            warn!(error = %e, "REFER failed");
                            408
                        }
                    },
                    Err(e) => {
                        warn!(error = %e, target = %target, "transfer target is not a URI");
                        400
                    }
                };
                info!(code, target = %target, "REFER answered");
                self.core
                    .handle(std::time::Instant::now(), Input::ReferAnswered { code });
            }
            Output::AnswerReoffer { .. } => {
                // Answered where the request's handle is (on_state).
            }
            Output::Media(m) => {
                if let Err(e) = self.media.set_srtp(m.srtp) {
                    warn!(error = %e, "hanging up: the call's media cannot be protected");
                    self.core.handle(std::time::Instant::now(), Input::Hangup);
                }
                self.media.set_codec(m.codec);
                self.media.set_dtmf_pt(m.dtmf_pt);
                self.media.set_remote(m.remote);
            }
            // Before the answer (early media) the media session listens; after it, unless a
            // detector beside the call (the AMD) hears the tones instead.
            Output::ToneDetection => self
                .media
                .set_tone_detection(!(self.tones_beside && self.core.is_answered())),
            Output::AbandonInvite => {
                // No provisional came, so there is nothing a CANCEL may go to (RFC 3261
                // §9.1); the transaction is dropped and a late answer finds no dialog.
                self.abandon = true;
                self.ua.dialog_layer.remove_dialog(&self.dialog.id());
            }
            Output::NextTrunk => self.next_trunk().await,
            Output::Redirect { target } => self.redirect(target).await,
            Output::Event(event) => {
                match &event {
                    CallEvent::Answered { codec } => {
                        self.early_received = self.media.stats().received;
                        info!(?codec, "answered");
                        if let Some(tx) = self.on_answer.take() {
                            let mut facts =
                                crate::sip::orphan::DialogFacts::of(&self.dialog.snapshot());
                            facts.trunk = self.core.trunk().map(str::to_string);
                            let _ = tx.send(facts);
                        }
                    }
                    CallEvent::Reoffered { direction, remote } => {
                        info!(?direction, ?remote, "media updated by peer")
                    }
                    CallEvent::Transfer { code } => info!(code, "transfer progress"),
                    _ => {}
                }
                let _ = self.events.send(event);
            }
        }
    }

    /// Sends the INVITE to the next target of the same trunk (its host's next SRV or A
    /// record), else on the next trunk that takes it, and tells the core.
    async fn next_trunk(&mut self) {
        self.ua.dialog_layer.remove_dialog(&self.dialog.id());
        let Some(mut redial) = self.redial.take() else {
            self.core
                .handle(std::time::Instant::now(), Input::NoTrunkLeft);
            return;
        };
        self.next_trunk_of(&mut redial).await;
        self.redial = Some(redial);
    }

    async fn next_trunk_of(&mut self, r: &mut Redial) {
        match r.current.plan.next_target(&self.ua) {
            Ok(Some(_)) => {
                let offer = self.core.offer(Direction::SendRecv);
                match r
                    .current
                    .send(&self.ua, &self.call_id, offer, &tracing::Span::current())
                {
                    Ok(leg) => {
                        info!("trying the trunk's next address");
                        self.dialog = leg.dialog.clone();
                        self.next_leg = Some(leg);
                        let name = r.current.trunk.as_ref().map(|t| t.name.clone());
                        let timeout = r.current.trunk.as_ref().map(|t| t.invite_timeout);
                        let more = r.current.plan.has_next_target() || !r.trunks.is_empty();
                        self.core.handle(
                            std::time::Instant::now(),
                            Input::Redialed {
                                trunk: name.as_deref().unwrap_or_default(),
                                invite_timeout: timeout,
                                more,
                            },
                        );
                        return;
                    }
                    Err(e) => warn!(error = %e, "the trunk's next address is not usable"),
                }
            }
            Ok(None) => {}
            Err(e) => warn!(error = %e, "the trunk's next address is not usable"),
        }
        self.trunk_channel = None;
        while let Some(trunk) = r.trunks.pop_front() {
            let attempt = match Plan::new(&self.ua, &r.request, Some(&trunk)).await {
                Ok(plan) => Try::admit(&self.ua, &r.request, Some(&trunk), plan).await,
                Err(e) => Err(e),
            };
            let sent = attempt.and_then(|mut t| {
                let offer = self.core.offer(Direction::SendRecv);
                let leg = t.send(&self.ua, &self.call_id, offer, &tracing::Span::current())?;
                Ok((t, leg))
            });
            match sent {
                Ok((t, mut leg)) => {
                    info!(trunk = %trunk.name, "failing over to the next trunk");
                    self.dialog = leg.dialog.clone();
                    self.trunk_channel = leg.channel.take();
                    self.next_leg = Some(leg);
                    let more = t.plan.has_next_target() || !r.trunks.is_empty();
                    r.current = t;
                    self.core.handle(
                        std::time::Instant::now(),
                        Input::Redialed {
                            trunk: &trunk.name,
                            invite_timeout: Some(trunk.invite_timeout),
                            more,
                        },
                    );
                    return;
                }
                Err(e) => {
                    warn!(trunk = %trunk.name, error = %e, "trunk not usable; trying the next");
                    self.core.left_behind(vec![TrunkTry {
                        trunk: trunk.name.clone(),
                        code: None,
                        reason: e.to_string(),
                    }]);
                }
            }
        }
        self.core
            .handle(std::time::Instant::now(), Input::NoTrunkLeft);
    }

    /// Sends the INVITE to a redirect's target (a SIP URI; the profile still lends its
    /// identity and credentials), and tells the core.
    async fn redirect(&mut self, target: String) {
        self.ua.dialog_layer.remove_dialog(&self.dialog.id());
        let Some(mut redial) = self.redial.take() else {
            self.core
                .handle(std::time::Instant::now(), Input::NoTrunkLeft);
            return;
        };
        self.redirect_of(&mut redial, target).await;
        self.redial = Some(redial);
    }

    async fn redirect_of(&mut self, r: &mut Redial, target: String) {
        self.trunk_channel = None;
        let mut req = r.request.clone();
        req.destination = target.clone();
        let sent = match Plan::new(&self.ua, &req, None).await {
            Ok(plan) => {
                let mut t = Try {
                    trunk: r.current.trunk.clone(),
                    plan,
                    channel: None,
                };
                let offer = self.core.offer(Direction::SendRecv);
                let leg = t.send(&self.ua, &self.call_id, offer, &tracing::Span::current());
                r.current = t;
                leg
            }
            Err(e) => Err(e),
        };
        match sent {
            Ok(leg) => {
                info!(%target, "following a redirect");
                self.dialog = leg.dialog.clone();
                self.next_leg = Some(leg);
                let trunk = self.core.trunk().unwrap_or_default().to_string();
                let more = !r.trunks.is_empty();
                self.core.handle(
                    std::time::Instant::now(),
                    Input::Redialed {
                        trunk: &trunk,
                        invite_timeout: None,
                        more,
                    },
                );
            }
            Err(e) => {
                warn!(%target, error = %e, "redirect target not usable");
                self.core
                    .handle(std::time::Instant::now(), Input::NoTrunkLeft);
            }
        }
    }

    /// The INVITE transaction ended.
    async fn on_invite_done(&mut self, res: Result<InviteResult, tokio::task::JoinError>) {
        let input_error = match res {
            Ok(Ok((_, Some(resp)))) => {
                let code = u16::from(resp.status_code.clone());
                let reason = reason_phrase(&resp);
                info!(code, reason = %reason, "INVITE final response");
                if (300..400).contains(&code) {
                    if let Some(contact) = redirect_target(&resp) {
                        self.input(Input::Redirected {
                            code,
                            reason: &reason,
                            contact: &contact,
                        })
                        .await;
                        return;
                    }
                }
                self.input(Input::InviteFinal {
                    code,
                    reason: &reason,
                    sdp: &resp.body,
                })
                .await;
                return;
            }
            Ok(Ok((_, None))) => None,
            Ok(Err(e)) => {
                warn!(error = %e, "INVITE failed");
                Some(e.to_string())
            }
            Err(e) => {
                warn!(error = %e, "INVITE task ended");
                Some(e.to_string())
            }
        };
        self.input(Input::InviteGone { error: input_error }).await;
    }

    /// A dialog state change.
    async fn on_state(&mut self, state: DialogState) {
        match state {
            DialogState::Early(_, resp) => {
                let code = u16::from(resp.status_code.clone());
                self.input(Input::Provisional {
                    code,
                    sdp: &resp.body,
                })
                .await;
            }
            DialogState::Confirmed(_, resp) => {
                let code = u16::from(resp.status_code.clone());
                let reason = reason_phrase(&resp);
                self.input(Input::Confirmed {
                    code,
                    reason: &reason,
                    sdp: &resp.body,
                })
                .await;
                if let Some((expires, we_refresh)) = session_expires(&resp) {
                    info!(expires_s = expires.as_secs(), we_refresh, "session timer");
                    self.input(Input::SessionTimer {
                        expires,
                        we_refresh,
                    })
                    .await;
                }
            }
            DialogState::Updated(_, req, handle) => {
                // re-INVITE or UPDATE: hold, unhold, a new media address.
                self.core
                    .handle(std::time::Instant::now(), Input::Reoffer { sdp: &req.body });
                let mut answered = false;
                while let Some(out) = self.core.poll_output() {
                    if let Output::AnswerReoffer { code, sdp } = &out {
                        answered = true;
                        if *code != 200 {
                            warn!(code, "re-INVITE SDP refused");
                        }
                        let headers = sdp
                            .as_ref()
                            .map(|_| vec![Header::ContentType("application/sdp".into())]);
                        let status = StatusCode::from(*code);
                        if let Err(e) = handle
                            .respond(status, headers, sdp.clone().map(String::into_bytes))
                            .await
                        {
                            debug!(error = %e, "re-INVITE answer not sent");
                        }
                    }
                    self.execute(out).await;
                }
                if !answered {
                    let _ = handle.reply(StatusCode::ServerInternalError).await;
                }
            }
            DialogState::Info(_, req, handle) => {
                let ctype = content_type(&req).unwrap_or_default();
                debug!(content_type = %ctype, "INFO received");
                let _ = handle.reply(StatusCode::OK).await;
                if let Some(digit) = parse_info_body(&ctype, &req.body) {
                    info!(digit = %digit.digit, source = ?digit.source, "DTMF received");
                    self.input(Input::Dtmf(digit)).await;
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
            DialogState::Notify(_, req, handle) => {
                let _ = handle.reply(StatusCode::OK).await;
                let is_sipfrag = content_type(&req)
                    .is_some_and(|c| c.to_ascii_lowercase().starts_with("message/sipfrag"));
                if is_sipfrag {
                    self.input(Input::TransferNotify { sipfrag: &req.body })
                        .await;
                }
            }
            DialogState::Refer(_, _, handle)
            | DialogState::Message(_, _, handle)
            | DialogState::Publish(_, _, handle) => {
                let _ = handle.reply(StatusCode::MethodNotAllowed).await;
            }
            DialogState::Terminated(_, reason) => {
                debug!(?reason, "dialog terminated");
                // The far end's BYE (or an inbound caller's CANCEL): rsipstack names a BYE
                // by the side that sent it.
                use rsipstack::transaction::key::TransactionRole;
                let by_remote = match self.dialog.role() {
                    TransactionRole::Client => matches!(reason, TerminatedReason::UasBye),
                    TransactionRole::Server => matches!(
                        reason,
                        TerminatedReason::UacBye | TerminatedReason::UacCancel
                    ),
                };
                self.input(Input::Terminated { by_remote }).await;
            }
            DialogState::Trying(_) => self.input(Input::Trying).await,
            DialogState::Calling(_) | DialogState::WaitAck(_, _) => {}
        }
    }

    async fn finish(self) {
        self.ua.dialog_layer.remove_dialog(&self.dialog.id());
        let media = match Arc::try_unwrap(self.media) {
            Ok(media) => Some(media),
            Err(shared) => {
                // A bridge is linking this leg's media right now: it lets go at once; the
                // session stops when the last reference drops.
                shared.set_remote(None);
                shared.send_frames_to(None);
                let stats = shared.stats();
                drop(shared);
                let summary = self
                    .core
                    .summary(&self.call_id, &stats, self.early_received);
                log_end(&summary);
                let _ = self.events.send(CallEvent::Ended(Box::new(summary)));
                None
            }
        };
        if let Some(media) = media {
            let stats = media.stop().await;
            let summary = self
                .core
                .summary(&self.call_id, &stats, self.early_received);
            log_end(&summary);
            let _ = self.events.send(CallEvent::Ended(Box::new(summary)));
        }
    }
}

fn log_end(summary: &super::CallSummary) {
    info!(
        outcome = %summary.outcome,
        code = ?summary.sip_code,
        duration_ms = summary.duration_ms,
        sent = summary.rtp.sent,
        received = summary.rtp.received,
        "call ended"
    );
}

/// The session timer a 2xx sets (RFC 4028): `Session-Expires: SECS[;refresher=uac|uas]`
/// (compact form `x`). Without a refresher parameter in a 2xx to our INVITE, the far end
/// (the UAS) refreshes, as §9 leaves it when we asked for nothing. Intervals under 1 s or
/// unreadable are ignored.
fn session_expires(resp: &rsipstack::sip::Response) -> Option<(std::time::Duration, bool)> {
    let value = resp.headers.iter().find_map(|h| match h {
        Header::SessionExpires(v) => Some(v.value().to_string()),
        _ => None,
    })?;
    let mut parts = value.split(';');
    let secs: u64 = parts.next()?.trim().parse().ok()?;
    if secs == 0 {
        return None;
    }
    let we_refresh = parts.any(|p| {
        let p = p.trim().to_ascii_lowercase();
        p.replace(' ', "") == "refresher=uac"
    });
    Some((std::time::Duration::from_secs(secs), we_refresh))
}

/// The first Contact of a redirect, as a SIP URI (`sip:` or `sips:`; anything else is not
/// followed).
fn redirect_target(resp: &rsipstack::sip::Response) -> Option<String> {
    use rsipstack::sip::headers::untyped::ToTypedHeader;
    use rsipstack::sip::prelude::HeadersExt;
    let contact = resp.contact_header().ok()?.typed().ok()?;
    let uri = contact.uri.to_string();
    let lower = uri.to_ascii_lowercase();
    (lower.starts_with("sip:") || lower.starts_with("sips:")).then_some(uri)
}

fn content_type(req: &rsipstack::sip::Request) -> Option<String> {
    req.headers.iter().find_map(|h| match h {
        Header::ContentType(c) => Some(c.value().to_string()),
        _ => None,
    })
}
