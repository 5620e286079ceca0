//! One call's RTP and RTCP: the per-call state the media [`engine`](super::engine) drives,
//! around the sans-IO [`rtp`](super::rtp), [`jitter`](super::jitter), [`rtcp`](super::rtcp),
//! [`g711`](super::g711) and [`link`](super::link) code, and the [`MediaSession`] handle a call
//! holds.
//!
//! [`MediaSession::start`] hands the leased port pair (RTP on the even port, RTCP on the odd
//! one after it) to one of the engine's worker threads, which from then on reads the sockets
//! (in batches, at its play-out tick) and sends from them. There are no tasks per call.
//!
//! * **Receiving** starts at once (early media is caught once a 183's SDP has given the far
//!   end's address). Each RTP packet's source is checked by the sans-IO `Latch` first:
//!   nothing is taken before the SDP address is known, the expected source (the SDP address,
//!   or the one latched onto) always is, and another address only as [`RtpLatching`] allows
//!   (symmetric RTP for a far end behind a NAT: [`LATCH_PACKETS`] in a row with one SSRC, then
//!   replies go there). Everything else is dropped before it reaches the jitter buffer, the
//!   detectors or a linked leg, counted in [`RtpStats::rejected_source`] and logged at most
//!   once per call every few seconds. RTCP is taken only from the IP address RTP is taken
//!   from. An accepted packet is fed to the RTCP statistics, and audio (G.711, or G.722 with
//!   the `g722` feature, decoded through a stateful [`FrameDecoder`] to 8 kHz) or comfort
//!   noise goes into the jitter buffer;
//!   telephone-events are decoded into digits, other payload types only counted. Each tick
//!   plays out the frames that are due and sends them as [`MediaEvent::Frame`] with `try_send`
//!   on a bounded channel (or, once the call asked, on its own frames channel:
//!   [`MediaSession::send_frames_to`]): a slow consumer loses frames (counted in
//!   [`RtpStats::dropped_frames`]), it never stalls the engine. Frames that no packet filled in
//!   time are concealed and say so ([`AudioFrame::concealed`]). RTCP is read on the RTCP port
//!   and, multiplexed (RFC 5761), on the RTP port; reports go out every few seconds to where
//!   the far end's RTCP comes from (else the RTP destination's port + 1, or the RTP port itself
//!   once the far end multiplexes), and a BYE when the session stops.
//! * **Sending** runs once a remote address is known: packet *n* is due at
//!   `start + n × 20 ms` on the monotonic clock, so pacing never drifts; after a stall of more
//!   than a few frames it skips ahead (advancing the RTP timestamp) instead of bursting. It
//!   sends queued PCM, or G.711 silence when nothing is queued, so the stream is continuous.
//! * **Linked** ([`MediaSession::link`]): what one leg receives leaves the other leg as soon as
//!   the engine reads it, rewritten into that leg's stream by [`RelayTx`] (no jitter buffer on
//!   that path); the leg's own paced sending pauses and resumes, without a jump, when the link
//!   ends. Digits and tones are still reported; frames only with
//!   [`MediaSession::set_frames_while_linked`] (a recording), through the jitter buffer on the
//!   side.
//!
//! * **SRTP** ([`MediaSession::set_srtp`], keys from the SDP offer/answer): every datagram on
//!   either port is opened by [`srtp`](super::srtp) before anything else looks at it (one that
//!   fails authentication or the replay window is dropped and counted in
//!   [`RtpStats::srtp_rejected`]); every packet we send, paced, relayed or RTCP, is sealed last,
//!   and one that cannot be sealed is not sent: nothing leaves in clear once keys are set.
//!
//! The handle and the engine share one small mutex-guarded state per call; the handle never
//! blocks on the network, and the engine never holds two calls' locks at once. Nothing received
//! from the network can make it panic, and nothing on the per-packet path allocates except each
//! frame's own samples and, on SRTP calls, the crypto crate's output buffer per packet.

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, oneshot};

use super::codec::{FrameDecoder, FrameEncoder};
use super::dtmf::{
    inband_samples, DtmfDigit, DtmfError, DtmfSource, InbandDtmfDetector, Rfc4733Receiver,
    Rfc4733Sender,
};
use super::engine::{Engine, Scratch};
use super::g711::Codec;
use super::jitter::{
    Concealer, FrameKind, JitterBuffer, JitterConfig, JitterStats, COMFORT_NOISE_PT,
};
use super::link::{InKind, OutStream, RelayTx, Relayed};
use super::playback::PlaybackQueue;
use super::ports::{PortLease, RtpSocket};
use super::rtcp::{RtcpConfig, RtcpState, RtcpStats, DEFAULT_INTERVAL};
use super::rtp::{is_rtcp, RtpPacket, RtpSender, RTP_HEADER_LEN};
use super::srtp::{SrtpKeys, SrtpStreams};
use super::sys::RecvBatch;
use super::tones::{ToneDetectors, ToneEvent};
use super::{MediaError, FRAME_MS, FRAME_SAMPLES};

/// Frames the event channel holds by default before the receiver starts dropping them (10 s).
pub const EVENT_CHANNEL_CAPACITY: usize = 500;
/// Packets in a row (one SSRC) from another address before it is latched onto (symmetric RTP).
pub const LATCH_PACKETS: u32 = 3;
/// With [`RtpLatching::Initial`], latching is only possible this long after the first packet
/// that came once the SDP address was known.
pub const LATCH_WINDOW: Duration = Duration::from_secs(5);
/// With [`RtpLatching::Always`], a stream only moves to another address once nothing has come
/// from the expected one for this long (the far end's NAT binding changed; an injector cannot
/// take over a stream that is still flowing).
pub const TAKEOVER_SILENCE: Duration = Duration::from_millis(100);
/// At most one log line per call this often about packets dropped for their source.
const DROP_LOG_INTERVAL: Duration = Duration::from_secs(10);
/// How late (in frames) the sender may fall before it skips ahead instead of catching up.
const STALL_FRAMES: u64 = 3;
#[cfg(test)]
const FRAME: Duration = Duration::from_millis(FRAME_MS);
/// A packet due this soon after the tick goes out in it (the next tick would be later).
const SEND_SLACK: Duration = Duration::from_millis(2);

/// How a session receives; [`MediaOptions::default`] is what [`MediaSession::start`] uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaOptions {
    /// The jitter buffer's delay never goes below this (ms)...
    pub jitter_min_ms: u32,
    /// ...nor above this (ms)...
    pub jitter_max_ms: u32,
    /// ...and starts here until the jitter has been measured (ms).
    pub jitter_initial_ms: u32,
    /// Which sources besides the SDP address are taken ([`RtpLatching`]).
    pub latching: RtpLatching,
    /// Send and read RTCP (the statistics from RTP are kept either way).
    pub rtcp: bool,
    /// Mean time between RTCP reports (randomized 0.5-1.5×).
    pub rtcp_interval: Duration,
    /// Frames the event channel holds before frames are dropped.
    pub event_capacity: usize,
    /// Report every 20 ms audio frame we send as [`MediaEvent::Sent`] (for outbound or stereo
    /// recording); off by default.
    pub tap_sent: bool,
}

impl Default for MediaOptions {
    /// 20-200 ms of jitter buffer starting at 40 ms, [`RtpLatching::Initial`], RTCP every 5 s,
    /// 10 s of frames.
    fn default() -> Self {
        MediaOptions {
            jitter_min_ms: 20,
            jitter_max_ms: 200,
            jitter_initial_ms: 40,
            latching: RtpLatching::Initial,
            rtcp: true,
            rtcp_interval: DEFAULT_INTERVAL,
            event_capacity: EVENT_CHANNEL_CAPACITY,
            tap_sent: false,
        }
    }
}

/// 20 ms of received audio: 8 kHz mono PCM, one per playout tick.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioFrame {
    /// Decoded samples: 160 at the usual 20 ms packet time (whatever the packet carried).
    pub samples: Vec<i16>,
    /// RTP timestamp (8 kHz clock) of the packet, or of the turn a made-up frame stands in for.
    pub rtp_timestamp: u32,
    /// Payload type the packet carried (0 PCMU, 8 PCMA, 13 for silence the sender meant: comfort
    /// noise or a gap in its timestamps); for concealed frames, the last audio payload type.
    pub payload_type: u8,
    /// No packet was there in time (lost, late, or the buffer growing its delay): the samples
    /// repeat the last frame, fading, then fall silent. Consumers that judge audio should weigh
    /// these accordingly.
    pub concealed: bool,
}

/// What a media session reports to its call. The channel closes when the session stops.
#[derive(Debug, Clone, PartialEq)]
pub enum MediaEvent {
    Frame(AudioFrame),
    /// A key press from the far end: RFC 4733 events when telephone-event was negotiated,
    /// otherwise detected in the audio. Each press once.
    Dtmf(DtmfDigit),
    /// A beep, SIT or fax tone in the received audio, once tone detection is on
    /// ([`MediaSession::set_tone_detection`]). Times are in received-audio time: ms since the
    /// first received frame.
    Tone(ToneEvent),
    /// A 20 ms frame of audio we just sent (only with [`MediaOptions::tap_sent`]).
    Sent(Vec<i16>),
    /// Everything queued with [`MediaSession::play`] has been sent.
    PlaybackFinished,
}

/// Packet counters and quality figures of one session, for the attempt record.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct RtpStats {
    /// RTP packets sent (silence and relayed packets included).
    pub sent: u64,
    /// Valid RTP packets received from an accepted source, whatever their payload type (RTCP
    /// not included).
    pub received: u64,
    /// Frames lost because the event channel was full.
    pub dropped_frames: u64,
    /// Datagrams on the RTP port that were neither RTP nor RTCP.
    pub invalid: u64,
    /// RTP (and RTCP) packets dropped for their source: before the SDP address was known, from
    /// an address the [`RtpLatching`] mode does not take, or the first packets of a source
    /// before it was latched onto.
    pub rejected_source: u64,
    /// Packets (RTP or RTCP) dropped because SRTP authentication, replay or decryption failed.
    pub srtp_rejected: u64,
    /// The SRTP suite the media was protected with when the session ended (`None`: plain RTP).
    pub srtp: Option<&'static str>,
    /// Packets lost from the far end (RFC 3550: expected − received, duplicates offsetting).
    pub lost: i64,
    /// Interarrival jitter of the far end's packets, in ms (RFC 3550).
    pub jitter_ms: f64,
    /// Round-trip time from the far end's RTCP reports, in ms.
    pub rtt_ms: Option<f64>,
    /// Where our RTP goes instead of the SDP address, after symmetric-RTP latching.
    pub latched_to: Option<SocketAddr>,
    /// The jitter buffer's counters (late, duplicates, reordered, concealed, delay...).
    pub jitter_buffer: JitterStats,
    /// RTCP figures, both directions.
    pub rtcp: RtcpStats,
}

#[derive(Debug, Default)]
struct Counters {
    sent: AtomicU64,
    sent_octets: AtomicU64,
    received: AtomicU64,
    dropped_frames: AtomicU64,
    invalid: AtomicU64,
    rejected_source: AtomicU64,
    srtp_rejected: AtomicU64,
}

impl Counters {
    fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// What the handle sets, read by the engine.
#[derive(Debug)]
struct Control {
    /// Where to send; `None` stops sending (hold, or not answered yet).
    remote: Option<SocketAddr>,
    /// The last address the SDP gave: what latching compares sources with.
    sdp_remote: Option<SocketAddr>,
    /// Where the far end really sends from, when it is not `sdp_remote` (set on receive).
    latched: Option<SocketAddr>,
    codec: Codec,
    queue: PlaybackQueue,
    /// A `play` is outstanding: report [`MediaEvent::PlaybackFinished`] when the queue drains.
    playing: bool,
    /// RTP timestamp of the last packet sent and when (for RTCP sender reports).
    sent_ref: Option<(u32, Instant)>,
    /// The far end's telephone-event payload type, when negotiated.
    dtmf_pt: Option<u8>,
    /// Digits being sent as RFC 4733 events (suppresses audio while one plays).
    dtmf_tx: Rfc4733Sender,
    /// Run the beep/SIT/fax detectors on received audio.
    detect_tones: bool,
    /// Bumped on every change the receiving side copies (addresses, DTMF, tones).
    generation: u64,
    /// SRTP for everything sent and received, once the offer/answer settled on it.
    srtp: Option<Srtp>,
}

/// A leg's SRTP contexts and the buffer packets are sealed or opened into.
#[derive(Debug)]
struct Srtp {
    streams: SrtpStreams,
    buf: Vec<u8>,
}

impl Srtp {
    /// Seals `packet` (RTP, or RTCP when `rtcp`) in place: the caller sends it only on `true`.
    fn seal(&mut self, packet: &mut Vec<u8>, rtcp: bool) -> bool {
        let sealed = if rtcp {
            self.streams.protect_rtcp(packet, &mut self.buf)
        } else {
            self.streams.protect_rtp(packet, &mut self.buf)
        };
        match sealed {
            Ok(()) => {
                std::mem::swap(packet, &mut self.buf);
                true
            }
            Err(e) => {
                tracing::debug!(error = %e, "SRTP protect failed: packet not sent");
                false
            }
        }
    }
}

impl Control {
    fn destination(&self) -> Option<SocketAddr> {
        self.remote.map(|r| self.latched.unwrap_or(r))
    }
}

/// The call's end of the event channel; `None` once the session has stopped (closing it).
/// Received frames go to `frames` instead when the call asked for them there
/// ([`MediaSession::send_frames_to`]), and nowhere while `frames_off`
/// ([`MediaSession::deliver_frames`]).
#[derive(Debug)]
struct Events {
    tx: Option<mpsc::Sender<MediaEvent>>,
    frames: Option<mpsc::Sender<AudioFrame>>,
    frames_off: bool,
}

impl Events {
    fn new(tx: Option<mpsc::Sender<MediaEvent>>) -> Self {
        Events {
            tx,
            frames: None,
            frames_off: false,
        }
    }

    /// Someone takes received frames now.
    fn wants_frames(&self) -> bool {
        !self.frames_off && (self.frames.is_some() || self.tx.is_some())
    }

    /// The session stopped: both channels let go of.
    fn close(&mut self) {
        self.tx = None;
        self.frames = None;
    }

    /// A received frame: to the frames channel when there is one, else as an event; dropped
    /// and counted when the channel is full.
    fn received(&self, frame: AudioFrame, stats: &Counters) {
        match &self.frames {
            Some(tx) => match tx.try_send(frame) {
                Ok(()) | Err(TrySendError::Closed(_)) => {}
                Err(TrySendError::Full(_)) => Counters::bump(&stats.dropped_frames),
            },
            None => self.frame(MediaEvent::Frame(frame), stats),
        }
    }

    /// A frame: dropped and counted when the channel is full.
    fn frame(&self, event: MediaEvent, stats: &Counters) {
        if let Some(tx) = &self.tx {
            match tx.try_send(event) {
                Ok(()) | Err(TrySendError::Closed(_)) => {}
                Err(TrySendError::Full(_)) => Counters::bump(&stats.dropped_frames),
            }
        }
    }

    /// A control event (a digit, a tone). These are rare and matter: if the channel is full of
    /// frames, one is dropped and counted rather than the event.
    fn control(&self, event: MediaEvent, stats: &Counters) {
        if let Some(tx) = &self.tx {
            match tx.try_send(event) {
                Ok(()) | Err(TrySendError::Closed(_)) => {}
                Err(TrySendError::Full(event)) => {
                    Counters::bump(&stats.dropped_frames);
                    tracing::warn!(?event, "media event channel full: event dropped");
                }
            }
        }
    }
}

/// Everything of one call the engine works on, behind one lock.
#[derive(Debug)]
pub(crate) struct Leg {
    control: Control,
    rx: Receiver,
    tx: Sender,
    events: Events,
    /// The linked leg: it sends what this one receives.
    partner: Option<Arc<Core>>,
    /// While linked: the stream this leg sends, carrying what the partner receives.
    relay: Option<RelayTx>,
    /// Keep the jitter buffer and frames going while linked (recording).
    frames_while_linked: bool,
}

/// One call's media as the engine holds it: the sockets, the port lease and the locked state.
#[derive(Debug)]
pub(crate) struct Core {
    id: u64,
    leg: Mutex<Leg>,
    socket: UdpSocket,
    rtcp: Option<UdpSocket>,
    stats: Counters,
    /// The handle changed something the engine's idea of when to look at this call depends on.
    poke: AtomicBool,
    // Declared after the sockets: the ports go back to the pool once both are closed.
    _lease: PortLease,
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Turns a kernel receive time (CLOCK_REALTIME ns) into an [`Instant`], read against a pair of
/// clock readings taken together.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    pub now: Instant,
    pub real_ns: u64,
}

impl Clock {
    fn arrival(&self, stamp_ns: Option<u64>) -> Instant {
        match stamp_ns {
            Some(ns) if ns <= self.real_ns => self
                .now
                .checked_sub(Duration::from_nanos(self.real_ns - ns))
                .unwrap_or(self.now),
            _ => self.now,
        }
    }
}

impl Core {
    fn leg(&self) -> MutexGuard<'_, Leg> {
        // The state holds plain values that stay consistent even if a holder panicked.
        self.leg.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// The RTP socket's descriptor and the RTCP socket's, if any.
    pub(crate) fn fds(&self) -> (RawFd, Option<RawFd>) {
        (
            self.socket.as_raw_fd(),
            self.rtcp.as_ref().map(|s| s.as_raw_fd()),
        )
    }

    pub(crate) fn socket(&self, rtcp: bool) -> Option<&UdpSocket> {
        if rtcp {
            self.rtcp.as_ref()
        } else {
            Some(&self.socket)
        }
    }

    /// True (once) when the handle changed something since the engine last looked.
    pub(crate) fn poked(&self) -> bool {
        self.poke.load(Ordering::Relaxed) && self.poke.swap(false, Ordering::AcqRel)
    }

    fn poke(&self) {
        self.poke.store(true, Ordering::Release);
    }

    /// Takes the `n` datagrams of `batch`, read on the RTP port (or the RTCP port), then
    /// relays what a linked leg must send. Returns the datagrams relayed, and when the call
    /// next has a frame to play out or an event to time out.
    pub(crate) fn receive(
        &self,
        batch: &RecvBatch,
        n: usize,
        rtcp_port: bool,
        clock: Clock,
        scratch: &mut Scratch,
    ) -> (usize, Option<Instant>) {
        scratch.forward.clear();
        let due;
        let partner = {
            let mut guard = self.leg();
            let leg = &mut *guard;
            let linked = leg.partner.is_some();
            let buffer_audio = !linked || leg.side_path();
            scratch.opened = leg.control.srtp.is_some();
            if scratch.opened && scratch.plain.len() < n {
                scratch.plain.resize_with(n, Vec::new);
            }
            for i in 0..n {
                let Some(from) = batch.source_addr(i) else {
                    continue;
                };
                let mut datagram = batch.packet(i);
                let arrival = clock.arrival(batch.timestamp_ns(i));
                if batch.truncated(i) {
                    Counters::bump(&self.stats.invalid);
                    continue;
                }
                if let (Some(srtp), Some(plain)) =
                    (leg.control.srtp.as_mut(), scratch.plain.get_mut(i))
                {
                    let opened = if rtcp_port || is_rtcp(datagram) {
                        srtp.streams.unprotect_rtcp(datagram, plain)
                    } else {
                        srtp.streams.unprotect_rtp(datagram, plain)
                    };
                    if let Err(e) = opened {
                        Counters::bump(&self.stats.srtp_rejected);
                        tracing::trace!(error = %e, %from, "SRTP packet dropped");
                        continue;
                    }
                    datagram = plain;
                }
                if rtcp_port {
                    leg.rx.on_rtcp(datagram, from, arrival, false, &self.stats);
                    continue;
                }
                let kind = leg.rx.on_rtp_port(
                    datagram,
                    from,
                    arrival,
                    buffer_audio,
                    &mut leg.control,
                    &self.stats,
                    &leg.events,
                );
                if let (true, Some(kind)) = (linked, kind) {
                    scratch.forward.push((i, kind));
                }
            }
            due = match leg.rx.dtmf_rx.active() {
                Some(_) => Some(clock.now),
                None => leg.rx.jitter.next_due(),
            };
            if scratch.forward.is_empty() {
                None
            } else {
                leg.partner.clone()
            }
        };
        let relayed = match partner {
            Some(p) => p.relay_in(batch, clock.now, scratch),
            None => 0,
        };
        (relayed, due)
    }

    /// Sends, from this leg, the packets its partner received (`scratch.forward`).
    fn relay_in(&self, batch: &RecvBatch, now: Instant, scratch: &mut Scratch) -> usize {
        let out = &mut scratch.out;
        out.clear();
        let mut octets = 0u64;
        {
            let mut guard = self.leg();
            let leg = &mut *guard;
            let Some(relay) = leg.relay.as_mut() else {
                return 0;
            };
            // On hold: what the partner receives goes nowhere.
            let Some(dest) = leg.control.destination() else {
                return 0;
            };
            let to = OutStream {
                codec: leg.control.codec,
                dtmf_pt: leg.control.dtmf_pt,
            };
            for &(i, kind) in &scratch.forward {
                let bytes = match scratch.opened {
                    true => scratch.plain.get(i).map_or(&[][..], |p| p.as_slice()),
                    false => batch.packet(i),
                };
                let Ok(packet) = RtpPacket::try_parse(bytes) else {
                    continue;
                };
                let mut relayed = Relayed::Dropped;
                let control = &mut leg.control;
                let queued = out.push_to(dest, |buf| {
                    relayed = relay.forward(
                        &packet,
                        kind,
                        to,
                        &mut control.dtmf_tx,
                        &mut leg.tx.rtp,
                        buf,
                    );
                    if relayed != Relayed::Dropped {
                        if let Some(srtp) = control.srtp.as_mut() {
                            if !srtp.seal(buf, false) {
                                relayed = Relayed::Dropped;
                            }
                        }
                    }
                });
                if !queued {
                    break;
                }
                if relayed == Relayed::Dropped {
                    out.pop();
                    continue;
                }
                let len = out.packet(out.len() - 1).len();
                octets += len.saturating_sub(RTP_HEADER_LEN) as u64;
                if leg.tx.tap_sent
                    && matches!(
                        relayed,
                        Relayed::Forwarded | Relayed::Transcoded | Relayed::Tone
                    )
                    && to.codec.is_g711()
                {
                    let mut pcm = Vec::with_capacity(FRAME_SAMPLES);
                    to.codec.decode(
                        out.packet(out.len() - 1)
                            .get(RTP_HEADER_LEN..)
                            .unwrap_or(&[]),
                        &mut pcm,
                    );
                    leg.events.frame(MediaEvent::Sent(pcm), &self.stats);
                }
            }
            if !out.is_empty() {
                let next_ts = leg.tx.rtp.next_timestamp();
                leg.control.sent_ref = Some((next_ts.wrapping_sub(FRAME_SAMPLES as u32), now));
                leg.tx.last_due = Some(now);
            }
        }
        if out.is_empty() {
            return 0;
        }
        match out.send(&self.socket) {
            Ok(sent) => {
                self.stats.sent.fetch_add(sent as u64, Ordering::Relaxed);
                self.stats.sent_octets.fetch_add(octets, Ordering::Relaxed);
                sent
            }
            Err(e) => {
                tracing::debug!(error = %e, "relayed RTP send failed");
                0
            }
        }
    }

    /// The engine's turn at `now`: plays out due frames, sends an RTCP report and the next RTP
    /// packet when due. Returns when it next has something to do (`None`: only on a packet or
    /// a change from the handle), the datagrams sent, and how many paced packets missed their
    /// 20 ms slot since the last turn (sent a frame or more late, or skipped).
    pub(crate) fn tick(
        &self,
        now: Instant,
        scratch: &mut Scratch,
    ) -> (Option<Instant>, usize, u64) {
        scratch.digits.clear();
        let (next, sent, late, partner) = {
            // The handle may hold the call's state on a thread of lower priority, and that
            // thread may be preempted for a while: this call waits for the next tick rather
            // than the worker (and every other call of it) for that thread.
            let mut guard = match self.leg.try_lock() {
                Ok(guard) => guard,
                Err(TryLockError::Poisoned(p)) => p.into_inner(),
                Err(TryLockError::WouldBlock) => return (Some(now), 0, 0),
            };
            let leg = &mut *guard;
            leg.rx.refresh(&leg.control);
            let linked = leg.relay.is_some();
            if leg.rx.jitter.next_due().is_some_and(|due| due <= now)
                || leg.rx.dtmf_rx.active().is_some()
            {
                leg.rx
                    .playout(now, &leg.events, &self.stats, &mut scratch.digits);
            }
            if leg.rx.rtcp_enabled && leg.rx.rtcp.next_report_at() <= now {
                leg.rx.report_if_due(now, &mut leg.control, self);
            }
            let (send_due, sent) = leg.tx.poll(
                now,
                &mut leg.control,
                linked,
                &self.socket,
                &self.stats,
                &leg.events,
            );
            let mut next = send_due;
            let mut earliest = |t: Option<Instant>| {
                if let Some(t) = t {
                    next = Some(next.map_or(t, |n| n.min(t)));
                }
            };
            earliest(leg.rx.jitter.next_due());
            if leg.rx.rtcp_enabled {
                earliest(Some(leg.rx.rtcp.next_report_at()));
            }
            if leg.rx.dtmf_rx.active().is_some() {
                // An RFC 4733 event in progress may time out: look every tick.
                earliest(Some(now));
            }
            let partner = if scratch.digits.is_empty() {
                None
            } else {
                leg.partner.clone()
            };
            (next, sent, std::mem::take(&mut leg.tx.late), partner)
        };
        if let Some(p) = partner {
            p.queue_relayed_digits(&scratch.digits);
        }
        (next, sent, late)
    }

    /// Digits heard in-band on the partner: sent as RFC 4733 when this leg negotiated
    /// telephone-event (otherwise the tones are in the relayed audio already).
    fn queue_relayed_digits(&self, digits: &[DtmfDigit]) {
        let mut leg = self.leg();
        if leg.relay.is_none() || leg.control.dtmf_pt.is_none() {
            return;
        }
        for d in digits {
            if let Err(e) = leg.control.dtmf_tx.queue(d.digit, d.duration_ms.max(40)) {
                tracing::debug!(error = %e, "relayed digit not sent");
            }
        }
    }

    /// The session is ending: a last report and BYE, the link undone, the event channel
    /// closed.
    pub(crate) fn finish(self: &Arc<Self>) {
        let partner = {
            let mut guard = self.leg();
            let leg = &mut *guard;
            leg.rx.say_bye(&mut leg.control, self);
            leg.rx.drops.flush();
            leg.events.close();
            leg.relay = None;
            leg.partner.take()
        };
        if let Some(p) = partner {
            p.unlink_from(self.id);
        }
    }

    /// Ends this leg's link with the leg `other`, if it has one.
    fn unlink_from(&self, other: u64) {
        let mut leg = self.leg();
        if leg.partner.as_ref().is_some_and(|p| p.id == other) {
            leg.partner = None;
            leg.relay = None;
            drop(leg);
            self.poke();
        }
    }
}

impl Leg {
    /// Whether received audio still goes through the jitter buffer while linked: for frames
    /// (recording), tone detection, or digits that only the audio carries.
    fn side_path(&self) -> bool {
        self.frames_while_linked || self.control.detect_tones || self.control.dtmf_pt.is_none()
    }
}

/// Handle to one call's RTP; see the module documentation.
#[derive(Debug)]
pub struct MediaSession {
    core: Arc<Core>,
    engine: Engine,
    worker: usize,
    port: u16,
    removed: bool,
}

/// Two legs linked by [`MediaSession::link`]; dropping it (or [`MediaLink::unlink`]) returns
/// both to their own play-out.
#[derive(Debug)]
pub struct MediaLink {
    a: Arc<Core>,
    b: Arc<Core>,
}

impl MediaLink {
    /// Ends the link now.
    pub fn unlink(self) {
        drop(self);
    }
}

impl Drop for MediaLink {
    fn drop(&mut self) {
        self.a.unlink_from(self.b.id);
        self.b.unlink_from(self.a.id);
    }
}

impl MediaSession {
    /// Starts receiving at once (so early media is caught) and sending paced 20 ms packets to
    /// `remote` once it is known, with [`MediaOptions::default`], on the process-wide
    /// [`Engine`]. Must be called inside a tokio runtime (the events are for async code).
    pub fn start(
        socket: RtpSocket,
        codec: Codec,
        remote: Option<SocketAddr>,
    ) -> Result<(MediaSession, mpsc::Receiver<MediaEvent>), MediaError> {
        Self::start_with(socket, codec, remote, MediaOptions::default())
    }

    /// [`MediaSession::start`] with explicit options.
    pub fn start_with(
        socket: RtpSocket,
        codec: Codec,
        remote: Option<SocketAddr>,
        options: MediaOptions,
    ) -> Result<(MediaSession, mpsc::Receiver<MediaEvent>), MediaError> {
        tokio::runtime::Handle::try_current().map_err(|_| MediaError::NoRuntime)?;
        let engine = Engine::global()?;
        Self::start_on(&engine, socket, codec, remote, options)
    }

    /// [`MediaSession::start_with`] on a given engine (a benchmark's own); needs no runtime.
    pub fn start_on(
        engine: &Engine,
        socket: RtpSocket,
        codec: Codec,
        remote: Option<SocketAddr>,
        options: MediaOptions,
    ) -> Result<(MediaSession, mpsc::Receiver<MediaEvent>), MediaError> {
        let port = socket.port;
        let (std_socket, mut lease) = socket.into_parts();
        let rtcp = lease.take_rtcp_socket();
        for s in std::iter::once(&std_socket).chain(rtcp.as_ref()) {
            s.set_nonblocking(true)?;
            // Best effort: without kernel stamps, arrivals are read at the tick.
            let _ = super::sys::enable_rx_timestamps(s);
        }
        let ssrc: u32 = rand::random();
        let (events_tx, events_rx) = mpsc::channel(options.event_capacity.max(1));
        let core = Arc::new(Core {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            leg: Mutex::new(Leg {
                control: Control {
                    remote,
                    sdp_remote: remote,
                    latched: None,
                    codec,
                    queue: PlaybackQueue::default(),
                    playing: false,
                    sent_ref: None,
                    dtmf_pt: None,
                    dtmf_tx: Rfc4733Sender::new(),
                    detect_tones: false,
                    generation: 0,
                    srtp: None,
                },
                rx: Receiver::new(&options, ssrc, remote),
                tx: Sender::new(ssrc, options.tap_sent),
                events: Events::new(Some(events_tx)),
                partner: None,
                relay: None,
                frames_while_linked: false,
            }),
            socket: std_socket,
            rtcp,
            stats: Counters::default(),
            poke: AtomicBool::new(true),
            _lease: lease,
        });
        let worker = engine.add(Arc::clone(&core))?;
        Ok((
            MediaSession {
                core,
                engine: engine.clone(),
                worker,
                port,
                removed: false,
            },
            events_rx,
        ))
    }

    fn control(&self) -> MutexGuard<'_, Leg> {
        self.core.leg()
    }

    /// The local RTP port (to put in SDP); RTCP is on the port after it.
    pub fn local_port(&self) -> u16 {
        self.port
    }

    /// Where packets go now: the remote address, or the address latched onto in its place;
    /// `None` while on hold or before the answer.
    pub fn remote(&self) -> Option<SocketAddr> {
        self.control().control.destination()
    }

    /// `None` stops sending (hold, inactive); `Some` (re)starts sending to that address. After
    /// a pause the RTP timestamp jumps by the time that passed and the marker bit is set. A new
    /// address forgets any latching.
    pub fn set_remote(&self, remote: Option<SocketAddr>) {
        {
            let mut leg = self.control();
            let control = &mut leg.control;
            if let Some(addr) = remote {
                if control.sdp_remote != Some(addr) {
                    control.sdp_remote = Some(addr);
                    control.latched = None;
                }
            }
            control.remote = remote;
            control.generation += 1;
        }
        self.core.poke();
    }

    /// SRTP keys for everything sent and received from now on (`None`: plain RTP). The same
    /// keys again (a re-INVITE that kept them) keep the running contexts, with their rollover
    /// counters and replay windows; new keys start new ones.
    pub fn set_srtp(&self, keys: Option<SrtpKeys>) -> Result<(), MediaError> {
        let mut leg = self.control();
        let control = &mut leg.control;
        let current = control.srtp.as_ref().map(|s| s.streams.keys());
        if current == keys.as_ref() {
            return Ok(());
        }
        control.srtp = match keys {
            None => None,
            Some(keys) => match SrtpStreams::new(keys) {
                Ok(streams) => Some(Srtp {
                    streams,
                    buf: Vec::with_capacity(RTP_HEADER_LEN + FRAME_SAMPLES + 16),
                }),
                Err(e) => {
                    // Nothing may leave in clear: stop sending until keys that work come.
                    control.srtp = None;
                    control.remote = None;
                    control.generation += 1;
                    return Err(MediaError::Srtp(e.to_string()));
                }
            },
        };
        Ok(())
    }

    /// The codec outgoing audio is encoded with (incoming packets are decoded by their own
    /// payload type).
    pub fn set_codec(&self, codec: Codec) {
        self.control().control.codec = codec;
    }

    /// The far end's telephone-event payload type from SDP (`None`: not negotiated, so digits
    /// we send go in-band and digits we receive are detected in the audio).
    pub fn set_dtmf_pt(&self, pt: Option<u8>) {
        let mut leg = self.control();
        leg.control.dtmf_pt = pt;
        leg.control.generation += 1;
    }

    /// Sends digits: RFC 4733 events when telephone-event was negotiated, otherwise tones in
    /// the audio queue. Each digit lasts `duration_ms` (40–8000).
    pub fn send_dtmf(&self, digits: &str, duration_ms: u32) -> Result<(), DtmfError> {
        let mut leg = self.control();
        let control = &mut leg.control;
        if control.dtmf_pt.is_some() {
            control.dtmf_tx.queue_str(digits, duration_ms)
        } else {
            let mut samples = Vec::new();
            for d in digits.chars() {
                samples.extend(inband_samples(d, duration_ms, 60)?);
            }
            control.queue.extend(samples);
            Ok(())
        }
    }

    /// Sends received frames to `frames` from now on instead of as [`MediaEvent::Frame`] on the
    /// event channel (`None`: back to the event channel). A call's consumers then get them
    /// without a hop through the call's task. Nothing changes once the session has stopped.
    pub fn send_frames_to(&self, frames: Option<mpsc::Sender<AudioFrame>>) {
        let mut leg = self.control();
        if leg.events.tx.is_some() {
            leg.events.frames = frames;
        }
    }

    /// Received frames go to their consumer (`true`, the default) or nowhere (`false`: nobody
    /// needs them now — the AMD is done and nothing records or streams the call). Either way
    /// they are played out and counted, and listened to while tones or in-band digits are.
    pub fn deliver_frames(&self, on: bool) {
        self.control().events.frames_off = !on;
    }

    /// Turns the beep/SIT/fax detectors on or off (on once a call is answered: ringback and busy
    /// tones are single tones too).
    pub fn set_tone_detection(&self, on: bool) {
        let mut leg = self.control();
        leg.control.detect_tones = on;
        leg.control.generation += 1;
    }

    /// While linked, keep delivering received frames (through the jitter buffer, on the side of
    /// the relay) — for a recording. Off by default: a linked leg only forwards.
    pub fn set_frames_while_linked(&self, on: bool) {
        self.control().frames_while_linked = on;
    }

    /// Queues 8 kHz mono PCM after whatever is already queued; [`MediaEvent::PlaybackFinished`]
    /// follows once the queue has drained (one event however many `play` calls fed it).
    /// The samples are shared, not copied: calls playing the same prompt hold one copy.
    pub fn play(&self, samples: Arc<Vec<i16>>) {
        let mut leg = self.control();
        leg.control.queue.push_shared(samples);
        leg.control.playing = true;
    }

    /// Queues one 20 ms frame of live audio (a bridge); no event when it has been sent.
    pub fn send_frame(&self, samples: &[i16]) {
        self.control().control.queue.extend(samples.iter().copied());
    }

    /// Drops everything queued (barge-in, a media stream's `clear`).
    pub fn clear_playback(&self) {
        self.control().control.queue.clear();
    }

    /// Samples queued and not sent yet.
    pub fn queued_samples(&self) -> usize {
        self.control().control.queue.len()
    }

    /// Links this leg with `other` (a bridge): from now on each RTP packet received on one leg
    /// leaves the other at once, rewritten into that leg's stream and transcoded to its codec;
    /// telephone-events pass with the other leg's payload type or become tones. Each leg's own
    /// queued audio is not sent while linked. Both legs keep reporting digits and tones to
    /// their calls. Dropping the [`MediaLink`] ends it.
    pub fn link(&self, other: &MediaSession) -> Result<MediaLink, MediaError> {
        if Arc::ptr_eq(&self.core, &other.core) {
            return Err(MediaError::Link(
                "a media session cannot be linked with itself".into(),
            ));
        }
        for (core, name) in [(&self.core, "this"), (&other.core, "the other")] {
            if core.leg().partner.is_some() {
                return Err(MediaError::Link(format!(
                    "{name} media session (port {}) is already linked",
                    if name == "this" {
                        self.port
                    } else {
                        other.port
                    }
                )));
            }
        }
        for (core, partner) in [(&self.core, &other.core), (&other.core, &self.core)] {
            let mut leg = core.leg();
            leg.partner = Some(Arc::clone(partner));
            leg.relay = Some(RelayTx::new());
            drop(leg);
            core.poke();
        }
        Ok(MediaLink {
            a: Arc::clone(&self.core),
            b: Arc::clone(&other.core),
        })
    }

    /// Sets the SSRC, next sequence number and next timestamp of the stream this session sends
    /// (before it sends anything: a test or benchmark that must know them; calls leave them
    /// random).
    pub fn set_rtp_stream(&self, ssrc: u32, sequence: u16, timestamp: u32) {
        self.control().tx.rtp = RtpSender::new(ssrc, sequence, timestamp);
    }

    /// Counters now.
    pub fn stats(&self) -> RtpStats {
        let c = &self.core.stats;
        let (jitter, rtcp, latched_to, srtp) = {
            let leg = self.control();
            (
                leg.rx.jitter.stats(),
                leg.rx.rtcp.stats(),
                leg.rx.latch.latched,
                leg.control
                    .srtp
                    .as_ref()
                    .map(|s| s.streams.keys().suite.name()),
            )
        };
        RtpStats {
            sent: c.sent.load(Ordering::Relaxed),
            received: c.received.load(Ordering::Relaxed),
            dropped_frames: c.dropped_frames.load(Ordering::Relaxed),
            invalid: c.invalid.load(Ordering::Relaxed),
            rejected_source: c.rejected_source.load(Ordering::Relaxed),
            srtp_rejected: c.srtp_rejected.load(Ordering::Relaxed),
            srtp,
            lost: rtcp.packets_lost,
            jitter_ms: rtcp.jitter_ms,
            rtt_ms: rtcp.rtt_ms,
            latched_to,
            jitter_buffer: jitter,
            rtcp,
        }
    }

    /// Stops both directions (an RTCP BYE goes out), waits until the engine has let go of the
    /// call (the ports are back in the pool when this returns) and gives the final counters.
    pub async fn stop(mut self) -> RtpStats {
        let (done_tx, done_rx) = oneshot::channel();
        self.removed = true;
        self.engine.remove(self.worker, self.core.id, Some(done_tx));
        if done_rx.await.is_err() {
            tracing::warn!("media engine ended before the session was removed");
        }
        let stats = self.stats();
        // The last reference: the sockets close and the lease goes back here.
        drop(self);
        stats
    }
}

impl Drop for MediaSession {
    fn drop(&mut self) {
        if !self.removed {
            // The engine lets go at its next tick; the sockets close with the last reference.
            self.engine.remove(self.worker, self.core.id, None);
        }
    }
}

/// When each outgoing packet is due, and when to give up catching up after a stall. Sans-IO:
/// the sender passes it `now`.
#[derive(Debug, Clone)]
struct Pacer {
    start: Instant,
    /// Index of the next packet since `start`.
    next: u64,
}

impl Pacer {
    fn new(start: Instant) -> Self {
        Pacer { start, next: 0 }
    }

    /// When the next packet is due.
    fn due(&self) -> Instant {
        self.start + Duration::from_millis(FRAME_MS.saturating_mul(self.next))
    }

    /// Called when the sender wakes at `now` to send the next packet. A few frames late it just
    /// catches up (the packets go out back to back); later than that it skips the missed frames
    /// and returns how many, so the caller advances the RTP timestamp by them.
    fn skip_if_stalled(&mut self, now: Instant) -> u64 {
        let late = now.saturating_duration_since(self.due());
        let late_frames = (late.as_millis() / FRAME_MS as u128) as u64;
        if late_frames > STALL_FRAMES {
            self.next += late_frames;
            late_frames
        } else {
            0
        }
    }

    /// The packet that was due has been sent.
    fn advance(&mut self) {
        self.next += 1;
    }
}

/// The paced sending side of one call.
#[derive(Debug)]
struct Sender {
    rtp: RtpSender,
    /// G.722 keeps state from frame to frame: one encoder for the stream.
    encoder: FrameEncoder,
    frame: [i16; FRAME_SAMPLES],
    payload: Vec<u8>,
    packet: Vec<u8>,
    finished_pending: bool,
    /// When the last packet sent was due: after a pause the timestamp jumps by it.
    last_due: Option<Instant>,
    /// `None` while not sending (no remote, on hold, or linked).
    pacer: Option<Pacer>,
    marker: bool,
    tap_sent: bool,
    /// Paced packets that left a whole frame (20 ms) or more after they were due, plus frames
    /// skipped after a stall, since the engine last took the count ([`Core::tick`]).
    late: u64,
}

impl Sender {
    fn new(ssrc: u32, tap_sent: bool) -> Self {
        Sender {
            rtp: RtpSender::new(ssrc, rand::random(), rand::random()),
            encoder: FrameEncoder::new(),
            frame: [0; FRAME_SAMPLES],
            payload: Vec::with_capacity(FRAME_SAMPLES),
            packet: Vec::with_capacity(RTP_HEADER_LEN + FRAME_SAMPLES),
            finished_pending: false,
            last_due: None,
            pacer: None,
            marker: true,
            tap_sent,
            late: 0,
        }
    }

    /// Sends every packet due by `now` (one, normally); returns when the next is due (`None`:
    /// not sending) and how many went out.
    fn poll(
        &mut self,
        now: Instant,
        control: &mut Control,
        linked: bool,
        socket: &UdpSocket,
        stats: &Counters,
        events: &Events,
    ) -> (Option<Instant>, usize) {
        if control.remote.is_none() || linked {
            self.pacer = None;
            return (None, 0);
        }
        if self.pacer.is_none() {
            if let Some(last) = self.last_due {
                let paused_frames =
                    (now.saturating_duration_since(last).as_millis() / FRAME_MS as u128) as u64;
                self.rtp.skip(
                    paused_frames
                        .saturating_sub(1)
                        .saturating_mul(FRAME_SAMPLES as u64) as u32,
                );
            }
            self.pacer = Some(Pacer::new(now));
            self.marker = true;
        }
        let mut sent = 0;
        loop {
            let Some(pacer) = self.pacer.as_mut() else {
                return (None, sent);
            };
            if pacer.due() > now + SEND_SLACK {
                return (Some(pacer.due()), sent);
            }
            let skipped = pacer.skip_if_stalled(now);
            if skipped > 0 {
                tracing::debug!(frames = skipped, "RTP sender stalled, skipping ahead");
                self.rtp.skip((skipped * FRAME_SAMPLES as u64) as u32);
                self.late += skipped;
            }
            if now >= pacer.due() + Duration::from_millis(FRAME_MS) {
                self.late += 1;
            }
            let Some(destination) = control.destination() else {
                self.pacer = None;
                return (None, sent);
            };
            let event = match control.dtmf_pt {
                Some(pt) => control.dtmf_tx.next_packet().map(|p| (pt, p)),
                None => None,
            };
            let mut finished = false;
            self.payload.clear();
            if let Some((pt, ev)) = event {
                // RFC 4733: every packet of an event carries the event's start timestamp.
                let event_ts = self.rtp.next_timestamp().wrapping_sub(ev.timestamp_offset);
                control.sent_ref = Some((event_ts, now));
                self.payload.extend_from_slice(&ev.payload);
                self.rtp.packet(
                    &mut self.packet,
                    pt,
                    &self.payload,
                    FRAME_SAMPLES as u32,
                    ev.marker,
                );
                if let Some(ts) = self.packet.get_mut(4..8) {
                    ts.copy_from_slice(&event_ts.to_be_bytes());
                }
            } else {
                control.queue.take_frame(&mut self.frame);
                finished = control.playing && control.queue.is_empty();
                if finished {
                    control.playing = false;
                }
                control.sent_ref = Some((self.rtp.next_timestamp(), now));
                if self.tap_sent {
                    // Dropped when the channel is full: a recording gap, never a stall.
                    if let Some(tx) = &events.tx {
                        let _ = tx.try_send(MediaEvent::Sent(self.frame.to_vec()));
                    }
                }
                self.encoder
                    .encode(control.codec, &self.frame, &mut self.payload);
                self.rtp.packet(
                    &mut self.packet,
                    control.codec.payload_type(),
                    &self.payload,
                    FRAME_SAMPLES as u32,
                    self.marker,
                );
            }
            let sealed = match control.srtp.as_mut() {
                Some(srtp) => srtp.seal(&mut self.packet, false),
                None => true,
            };
            match sealed.then(|| socket.send_to(&self.packet, destination)) {
                None => {}
                Some(Ok(_)) => {
                    Counters::bump(&stats.sent);
                    stats
                        .sent_octets
                        .fetch_add(self.payload.len() as u64, Ordering::Relaxed);
                    self.marker = false;
                    sent += 1;
                }
                Some(Err(e)) => tracing::debug!(error = %e, %destination, "RTP send failed"),
            }
            self.last_due = Some(pacer.due());
            pacer.advance();
            self.finished_pending |= finished;
            if self.finished_pending {
                match events
                    .tx
                    .as_ref()
                    .map(|tx| tx.try_send(MediaEvent::PlaybackFinished))
                {
                    None | Some(Ok(())) | Some(Err(TrySendError::Closed(_))) => {
                        self.finished_pending = false
                    }
                    Some(Err(TrySendError::Full(_))) => {} // retried on the next packet
                }
            }
        }
    }
}

/// Which RTP sources a session takes besides the address the SDP gave (profile key
/// `rtp_latching`). Whatever the mode, nothing is taken before the SDP address is known, and a
/// new source must send [`LATCH_PACKETS`] packets in a row, with one SSRC, before it is taken
/// (those packets are dropped and counted); replies then go there.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RtpLatching {
    /// Only the SDP address: a far end behind a NAT that rewrites its port gets no audio.
    Off,
    /// Latch once, within [`LATCH_WINDOW`] of the first packet, and only while nothing has come
    /// from the SDP address (a far end behind a NAT); afterwards only the address taken.
    #[default]
    Initial,
    /// Latch whenever a new source takes over (a NAT binding that moves mid-call): once a
    /// stream has been taken, only onto a source carrying that stream's SSRC after the expected
    /// source has been silent for [`TAKEOVER_SILENCE`].
    Always,
}

impl RtpLatching {
    /// `off`, `initial` or `always` (case-insensitive).
    pub fn parse(s: &str) -> Option<RtpLatching> {
        match s.to_ascii_lowercase().as_str() {
            "off" => Some(RtpLatching::Off),
            "initial" => Some(RtpLatching::Initial),
            "always" => Some(RtpLatching::Always),
            _ => None,
        }
    }

    /// The name written in profiles.
    pub fn as_str(self) -> &'static str {
        match self {
            RtpLatching::Off => "off",
            RtpLatching::Initial => "initial",
            RtpLatching::Always => "always",
        }
    }
}

impl std::fmt::Display for RtpLatching {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether a packet's source is accepted, and where replies go (symmetric RTP). Sans-IO: the
/// receiver passes each valid packet's source, SSRC and arrival time.
///
/// | from | accepted when |
/// |---|---|
/// | anywhere, SDP address unknown | never (nothing to compare with: early packets are dropped) |
/// | the expected source (latched, else SDP) | always; its SSRC may change |
/// | another address | after [`LATCH_PACKETS`] in a row with one SSRC, if the mode allows: `initial` only within [`LATCH_WINDOW`] and while nothing came from the SDP address and nothing was latched; `always` only with the current stream's SSRC once one was taken, and once the expected source has been silent for [`TAKEOVER_SILENCE`] |
#[derive(Debug, Clone)]
struct Latch {
    mode: RtpLatching,
    /// The address the SDP gave (the last one, kept through a hold).
    remote: Option<SocketAddr>,
    /// Where replies go instead of `remote`.
    latched: Option<SocketAddr>,
    /// The SSRC of the last packet taken from the expected source, and when it came.
    ssrc: Option<u32>,
    last_expected: Option<Instant>,
    /// When the first packet came after the SDP address was known (`initial`'s window).
    first_packet: Option<Instant>,
    /// Something came from the SDP address itself (`initial` then never latches).
    heard_remote: bool,
    /// Another source, the SSRC it sends, and how many packets in a row came from it.
    candidate: Option<(SocketAddr, u32, u32)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SourceCheck {
    Accept,
    /// Accept, and from now on send to this address.
    Latch(SocketAddr),
    Reject(Rejected),
}

/// Why a packet was dropped for its source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rejected {
    /// No SDP address yet: nothing to compare the source with.
    NoRemote,
    /// From a source that may be latched onto once it has sent enough packets in a row.
    Pending,
    /// From a source the mode does not take (an injector, or a late or foreign stream).
    Foreign,
}

impl Latch {
    fn new(mode: RtpLatching, remote: Option<SocketAddr>) -> Self {
        Latch {
            mode,
            remote,
            latched: None,
            ssrc: None,
            last_expected: None,
            first_packet: None,
            heard_remote: false,
            candidate: None,
        }
    }

    /// The SDP address changed (or was set again): a new address starts over (a new window,
    /// no latching onto the old one).
    fn set_remote(&mut self, remote: Option<SocketAddr>, latched: Option<SocketAddr>) {
        if self.remote != remote {
            self.candidate = None;
            self.first_packet = None;
            self.heard_remote = false;
            self.ssrc = None;
            self.last_expected = None;
        }
        self.remote = remote;
        self.latched = latched;
    }

    /// Where packets are expected from now: the latched address, else the SDP one.
    fn expected(&self) -> Option<SocketAddr> {
        self.remote.map(|r| self.latched.unwrap_or(r))
    }

    /// Checks the source of one valid RTP packet that arrived at `now`.
    fn check(&mut self, from: SocketAddr, ssrc: u32, now: Instant) -> SourceCheck {
        let Some(remote) = self.remote else {
            return SourceCheck::Reject(Rejected::NoRemote);
        };
        let first = *self.first_packet.get_or_insert(now);
        if Some(from) == self.expected() {
            self.candidate = None;
            self.ssrc = Some(ssrc);
            self.last_expected = Some(now);
            self.heard_remote |= from == remote;
            return SourceCheck::Accept;
        }
        let may_latch = match self.mode {
            RtpLatching::Off => false,
            RtpLatching::Initial => {
                self.latched.is_none()
                    && !self.heard_remote
                    && now.saturating_duration_since(first) < LATCH_WINDOW
            }
            RtpLatching::Always => {
                self.ssrc.is_none_or(|s| s == ssrc)
                    && self
                        .last_expected
                        .is_none_or(|t| now.saturating_duration_since(t) >= TAKEOVER_SILENCE)
            }
        };
        if !may_latch {
            // Not in a row any more.
            self.candidate = None;
            return SourceCheck::Reject(Rejected::Foreign);
        }
        let count = match self.candidate {
            Some((addr, s, n)) if addr == from && s == ssrc => n + 1,
            _ => 1,
        };
        if count < LATCH_PACKETS {
            self.candidate = Some((from, ssrc, count));
            return SourceCheck::Reject(Rejected::Pending);
        }
        self.candidate = None;
        self.ssrc = Some(ssrc);
        self.last_expected = Some(now);
        self.heard_remote |= from == remote;
        self.latched = (from != remote).then_some(from);
        SourceCheck::Latch(from)
    }

    /// Whether RTCP from `from` is taken: only from the IP address RTP is taken from.
    fn rtcp_allowed(&self, from: SocketAddr) -> bool {
        self.expected().is_some_and(|e| e.ip() == from.ip())
    }
}

/// Drops for the source, logged at most once per [`DROP_LOG_INTERVAL`] per call.
#[derive(Debug, Default)]
struct DropLog {
    /// When the next line may be written.
    next: Option<Instant>,
    /// Drops since the last line.
    unlogged: u64,
}

impl DropLog {
    fn dropped(&mut self, from: SocketAddr, why: Rejected, now: Instant) {
        match why {
            // Normal: early packets, and the first packets of a NAT'd far end.
            Rejected::NoRemote | Rejected::Pending => {
                tracing::trace!(%from, ?why, "RTP dropped for its source");
                return;
            }
            Rejected::Foreign => {}
        }
        self.unlogged += 1;
        if self.next.is_some_and(|t| now < t) {
            return;
        }
        tracing::warn!(
            %from,
            dropped = self.unlogged,
            "RTP from an unexpected source dropped (further drops summed up every {} s)",
            DROP_LOG_INTERVAL.as_secs()
        );
        self.unlogged = 0;
        self.next = Some(now + DROP_LOG_INTERVAL);
    }

    /// The session ends: the drops no line has counted yet.
    fn flush(&mut self) {
        if self.unlogged > 0 {
            tracing::warn!(
                dropped = self.unlogged,
                "RTP from unexpected sources dropped since the last report"
            );
            self.unlogged = 0;
        }
    }
}

/// The receiving side of one call: the sans-IO cores and where replies go.
#[derive(Debug)]
struct Receiver {
    jitter: JitterBuffer,
    decoder: FrameDecoder,
    concealer: Concealer,
    rtcp: RtcpState,
    rtcp_enabled: bool,
    latch: Latch,
    drops: DropLog,
    /// The control generation these copies were read at.
    generation: Option<u64>,
    /// Where RTP goes now (`None`: on hold or unknown, so no RTCP either).
    remote: Option<SocketAddr>,
    /// The far end multiplexes RTCP on the RTP port: ours goes there too.
    rtcp_mux: bool,
    /// Where the far end's RTCP comes from (on the RTCP port).
    rtcp_peer: Option<SocketAddr>,
    report: Vec<u8>,
    /// Telephone-event payload type and tone detection, as last read from the handle.
    dtmf_pt: Option<u8>,
    detect_tones: bool,
    dtmf_rx: Rfc4733Receiver,
    inband: InbandDtmfDetector,
    tones: ToneDetectors,
    /// When the receiver started: the clock RFC 4733 timeouts run on.
    started: Instant,
    /// Frames played out so far: received-audio time for the detectors (20 ms each).
    frames_out: u64,
    samples: Vec<i16>,
}

impl Receiver {
    fn new(options: &MediaOptions, ssrc: u32, remote: Option<SocketAddr>) -> Self {
        let jitter = JitterBuffer::new(JitterConfig::from_ms(
            options.jitter_min_ms,
            options.jitter_max_ms,
            options.jitter_initial_ms,
        ));
        let mut cfg = RtcpConfig::new(ssrc, format!("outdial-{:016x}", rand::random::<u64>()));
        cfg.interval = options.rtcp_interval;
        cfg.seed = rand::random();
        Receiver {
            jitter,
            decoder: FrameDecoder::new(),
            concealer: Concealer::new(),
            rtcp: RtcpState::new(cfg, Instant::now(), SystemTime::now()),
            rtcp_enabled: options.rtcp,
            latch: Latch::new(options.latching, remote),
            drops: DropLog::default(),
            generation: None,
            remote,
            rtcp_mux: false,
            rtcp_peer: None,
            report: Vec::with_capacity(256),
            dtmf_pt: None,
            detect_tones: false,
            dtmf_rx: Rfc4733Receiver::new(),
            inband: InbandDtmfDetector::new(),
            tones: ToneDetectors::new(),
            started: Instant::now(),
            frames_out: 0,
            samples: Vec::new(),
        }
    }

    /// Re-reads what the handle set, when it changed.
    fn refresh(&mut self, control: &Control) {
        if self.generation == Some(control.generation) {
            return;
        }
        self.generation = Some(control.generation);
        self.latch.set_remote(control.sdp_remote, control.latched);
        if self.remote != control.remote {
            self.rtcp_peer = None;
        }
        self.remote = control.remote;
        self.dtmf_pt = control.dtmf_pt;
        self.detect_tones = control.detect_tones;
    }

    /// One datagram on the RTP port. Returns what an accepted RTP packet carries (for a link).
    #[allow(clippy::too_many_arguments)]
    fn on_rtp_port(
        &mut self,
        datagram: &[u8],
        from: SocketAddr,
        now: Instant,
        buffer_audio: bool,
        control: &mut Control,
        stats: &Counters,
        events: &Events,
    ) -> Option<InKind> {
        self.refresh(control);
        if is_rtcp(datagram) {
            self.on_rtcp(datagram, from, now, true, stats);
            return None;
        }
        let packet = match RtpPacket::try_parse(datagram) {
            Ok(p) => p,
            Err(e) => {
                Counters::bump(&stats.invalid);
                tracing::trace!(error = %e, "invalid datagram on RTP port");
                return None;
            }
        };
        match self.latch.check(from, packet.ssrc, now) {
            SourceCheck::Accept => {}
            SourceCheck::Reject(why) => {
                Counters::bump(&stats.rejected_source);
                self.drops.dropped(from, why, now);
                return None;
            }
            SourceCheck::Latch(to) => {
                tracing::info!(%to, "RTP source differs from the SDP address: latched onto it");
                // Our RTCP follows (to the latched port + 1, unless the far end's RTCP has
                // shown where it comes from).
                control.latched = self.latch.latched;
            }
        }
        Counters::bump(&stats.received);
        self.rtcp
            .on_rtp_received(packet.ssrc, packet.sequence, packet.timestamp, now);
        let codec = Codec::from_payload_type(packet.payload_type);
        let audio = packet.payload_type == COMFORT_NOISE_PT
            || (codec.is_some() && !packet.payload.is_empty());
        if audio {
            if buffer_audio {
                self.jitter.push(&packet, now);
            }
            return Some(match codec {
                Some(c) => InKind::Audio(c),
                None => InKind::Comfort,
            });
        }
        // Telephone-events and anything else: their sequence numbers are not a gap.
        self.jitter.note_foreign(&packet);
        // The negotiated telephone-event type, or (peers do this) another dynamic type
        // carrying a 4-byte event: we negotiate no other codec that could be.
        let pt = packet.payload_type;
        let is_event = Some(pt) == self.dtmf_pt
            || (self.dtmf_pt.is_some() && (96..=127).contains(&pt) && packet.payload.len() == 4);
        if !is_event {
            return Some(InKind::Other);
        }
        let now_ms = now.saturating_duration_since(self.started).as_millis() as u64;
        if let Some(digit) = self.dtmf_rx.on_packet(
            packet.sequence,
            packet.timestamp,
            packet.marker,
            packet.payload,
            now_ms,
        ) {
            // A zero-length event is no key press (some senders pad with them).
            if digit.duration_ms > 0 {
                events.control(MediaEvent::Dtmf(digit), stats);
            }
        }
        Some(InKind::Event)
    }

    /// One RTCP datagram (on the RTCP port, or multiplexed on the RTP port).
    fn on_rtcp(
        &mut self,
        datagram: &[u8],
        from: SocketAddr,
        now: Instant,
        muxed: bool,
        stats: &Counters,
    ) {
        if !self.rtcp_enabled {
            return;
        }
        if !self.latch.rtcp_allowed(from) {
            Counters::bump(&stats.rejected_source);
            tracing::trace!(%from, "RTCP from an unexpected source dropped");
            return;
        }
        match self.rtcp.on_rtcp_received(datagram, now) {
            Ok(()) if muxed => self.rtcp_mux = true,
            Ok(()) => self.rtcp_peer = Some(from),
            Err(e) => tracing::trace!(error = %e, %from, "invalid RTCP"),
        }
    }

    /// Where our RTCP goes: (through the RTP socket?, address). `None` on hold, unless
    /// `last_known` (for the BYE: a call puts the session on hold before it hangs up).
    fn rtcp_destination(&self, last_known: bool) -> Option<(bool, SocketAddr)> {
        let remote = match self.remote {
            Some(r) => r,
            None if last_known => self.latch.remote?,
            None => return None,
        };
        let rtp_to = self.latch.latched.unwrap_or(remote);
        if self.rtcp_mux {
            return Some((true, rtp_to));
        }
        if let Some(peer) = self.rtcp_peer {
            return Some((false, peer));
        }
        let port = rtp_to.port().checked_add(1)?;
        Some((false, SocketAddr::new(rtp_to.ip(), port)))
    }

    /// Sends what is in `self.report` (best effort: a full socket buffer drops it), sealed as
    /// SRTCP when the call uses SRTP.
    fn send_report(&mut self, core: &Core, last_known: bool, srtp: Option<&mut Srtp>) {
        let Some((via_rtp, to)) = self.rtcp_destination(last_known) else {
            return;
        };
        if let Some(srtp) = srtp {
            if !srtp.seal(&mut self.report, true) {
                return;
            }
        }
        let socket = match (&core.rtcp, via_rtp) {
            (Some(rtcp), false) => rtcp,
            _ => &core.socket,
        };
        if let Err(e) = socket.send_to(&self.report, to) {
            tracing::debug!(error = %e, %to, "RTCP send failed");
        }
    }

    /// Sends an RTCP report if one is due.
    fn report_if_due(&mut self, now: Instant, control: &mut Control, core: &Core) {
        self.rtcp.set_sent_totals(
            core.stats.sent.load(Ordering::Relaxed),
            core.stats.sent_octets.load(Ordering::Relaxed),
            control.sent_ref,
        );
        self.report.clear();
        if self.rtcp.poll_report(now, &mut self.report) {
            self.send_report(core, false, control.srtp.as_mut());
        }
    }

    /// The session is ending: a last report and BYE.
    fn say_bye(&mut self, control: &mut Control, core: &Core) {
        if !self.rtcp_enabled {
            return;
        }
        self.refresh(control);
        self.report.clear();
        self.rtcp.write_bye(Instant::now(), &mut self.report);
        self.send_report(core, true, control.srtp.as_mut());
    }

    /// Pops every frame that is due and sends it to the call; digits heard in-band also go
    /// into `digits` (for a linked leg).
    fn playout(
        &mut self,
        now: Instant,
        events: &Events,
        stats: &Counters,
        digits: &mut Vec<DtmfDigit>,
    ) {
        let now_ms = now.saturating_duration_since(self.started).as_millis() as u64;
        while let Some(digit) = self.dtmf_rx.poll(now_ms) {
            if digit.duration_ms > 0 {
                events.control(MediaEvent::Dtmf(digit), stats);
            }
        }
        let deliver = events.wants_frames();
        // Nothing takes the audio itself: frames are only played out (and counted).
        let listen = deliver || self.detect_tones || self.dtmf_pt.is_none();
        while let Some(frame) = self.jitter.pop(now) {
            self.frames_out += 1;
            if !listen {
                self.concealer.reset();
                continue;
            }
            let len = frame.samples as usize;
            let samples = &mut self.samples;
            samples.clear();
            let codec = Codec::from_payload_type(frame.payload_type);
            let concealed = match (frame.kind, codec) {
                (FrameKind::Audio, Some(codec)) => {
                    self.decoder.decode(codec, frame.payload, samples);
                    self.concealer.observe(samples);
                    false
                }
                (FrameKind::Comfort, _) => {
                    samples.resize(len, 0);
                    self.concealer.reset();
                    false
                }
                _ => {
                    self.concealer.conceal(samples, len);
                    true
                }
            };
            let at_ms = (self.frames_out - 1) * FRAME_MS;
            if self.detect_tones {
                for tone in self.tones.process(samples, at_ms) {
                    events.control(MediaEvent::Tone(tone), stats);
                }
            }
            if self.dtmf_pt.is_none() {
                if let Some(digit) = self.inband.push(samples, at_ms) {
                    events.control(MediaEvent::Dtmf(digit), stats);
                    digits.push(digit);
                }
                while let Some(digit) = self.inband.next_digit() {
                    events.control(MediaEvent::Dtmf(digit), stats);
                    digits.push(digit);
                }
            }
            if deliver {
                let frame = AudioFrame {
                    samples: samples.clone(),
                    rtp_timestamp: frame.timestamp,
                    payload_type: frame.payload_type,
                    concealed,
                };
                events.received(frame, stats);
            }
        }
        digits.retain(|d| d.source == DtmfSource::Inband);
    }
}

/// True for errors that only report an earlier send's ICMP error: not fatal.
pub(crate) fn is_transient(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionRefused
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::ports::PortPool;
    use crate::media::rtcp::{
        ntp_middle, parse_compound, write_rr, write_sdes_cname, write_sr, RtcpPacket, SenderInfo,
    };
    use crate::media::rtp::write_rtp;
    use std::net::{IpAddr, Ipv4Addr};
    use tokio::net::UdpSocket;
    use tokio::time::Instant;

    const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    /// A pool of its own for each test, below the kernel's ephemeral range (32768–60999) that
    /// busy benchmarks and clients fill; ports taken by anyone else are skipped.
    fn test_pool() -> PortPool {
        let base = rand::random_range(20_000u16..29_000) & !1;
        PortPool::new(LOCALHOST, base, base + 63)
    }

    /// Options for tests whose peer is a bare socket: no RTCP sent to a port nobody owns.
    fn quiet() -> MediaOptions {
        MediaOptions {
            rtcp: false,
            ..MediaOptions::default()
        }
    }

    fn start(
        pool: &PortPool,
        codec: Codec,
        remote: Option<SocketAddr>,
    ) -> (MediaSession, mpsc::Receiver<MediaEvent>) {
        MediaSession::start(pool.bind().expect("free RTP port"), codec, remote).expect("start")
    }

    fn start_with(
        pool: &PortPool,
        codec: Codec,
        remote: Option<SocketAddr>,
        options: MediaOptions,
    ) -> (MediaSession, mpsc::Receiver<MediaEvent>) {
        MediaSession::start_with(pool.bind().expect("free RTP port"), codec, remote, options)
            .expect("start")
    }

    async fn raw_socket() -> (UdpSocket, SocketAddr) {
        let s = UdpSocket::bind((LOCALHOST, 0))
            .await
            .expect("bind raw socket");
        let addr = s.local_addr().expect("addr");
        (s, addr)
    }

    /// Receives RTP packets on `sock` until `until`, as (arrival, header fields, payload).
    /// RTCP arriving on the same socket is skipped.
    async fn collect(sock: &UdpSocket, until: Instant) -> Vec<(Instant, RtpOwned)> {
        let mut out = Vec::new();
        let mut buf = [0u8; 2048];
        while let Ok(Ok((len, _))) = tokio::time::timeout_at(until, sock.recv_from(&mut buf)).await
        {
            if is_rtcp(&buf[..len]) {
                continue;
            }
            let p = RtpPacket::parse(&buf[..len]).expect("session sends valid RTP");
            out.push((Instant::now(), RtpOwned::from(p)));
        }
        out
    }

    /// Frames received until `until`, with when each came.
    async fn frames_until(
        events: &mut mpsc::Receiver<MediaEvent>,
        until: Instant,
    ) -> Vec<(Instant, AudioFrame)> {
        let mut out = Vec::new();
        while let Ok(Some(e)) = tokio::time::timeout_at(until, events.recv()).await {
            if let MediaEvent::Frame(f) = e {
                out.push((Instant::now(), f));
            }
        }
        out
    }

    #[derive(Debug, Clone)]
    struct RtpOwned {
        marker: bool,
        payload_type: u8,
        sequence: u16,
        timestamp: u32,
        ssrc: u32,
        payload: Vec<u8>,
    }

    impl From<RtpPacket<'_>> for RtpOwned {
        fn from(p: RtpPacket<'_>) -> Self {
            RtpOwned {
                marker: p.marker,
                payload_type: p.payload_type,
                sequence: p.sequence,
                timestamp: p.timestamp,
                ssrc: p.ssrc,
                payload: p.payload.to_vec(),
            }
        }
    }

    fn assert_continuous(packets: &[(Instant, RtpOwned)]) {
        for pair in packets.windows(2) {
            let (a, b) = (&pair[0].1, &pair[1].1);
            assert_eq!(b.sequence, a.sequence.wrapping_add(1), "sequence step");
            assert_eq!(b.timestamp, a.timestamp.wrapping_add(160), "timestamp step");
            assert_eq!(b.ssrc, a.ssrc);
            assert!(!b.marker, "marker only on the first packet");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sends_paced_numbered_silence() {
        let pool = test_pool();
        let (raw, raw_addr) = raw_socket().await;
        let (session, _events) = start_with(&pool, Codec::Pcmu, Some(raw_addr), quiet());
        let t0 = Instant::now();
        let packets = collect(&raw, t0 + Duration::from_millis(1000)).await;
        let stats = session.stop().await;

        let n = packets.len();
        assert!((40..=56).contains(&n), "{n} packets in one second");
        assert!(packets[0].1.marker, "marker on the first packet");
        assert_continuous(&packets);
        for (_, p) in &packets {
            assert_eq!(p.payload_type, 0);
            assert_eq!(p.payload, vec![0xFF; 160], "PCMU silence");
        }
        // Paced, not bursted: the stream spans about (n - 1) × 20 ms.
        let span = packets[n - 1].0 - packets[0].0;
        let ideal = FRAME * (n as u32 - 1);
        assert!(
            span + Duration::from_millis(100) > ideal,
            "span {span:?} for {n} packets"
        );
        assert!(
            stats.sent >= n as u64 && stats.sent <= n as u64 + 2,
            "{stats:?} vs {n}"
        );
        assert_eq!(pool.in_use(), 0, "ports released by stop");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_call_whose_state_is_held_does_not_hold_back_the_others() {
        let pool = test_pool();
        // Sessions go to the workers in turn: among four, others share the held one's worker.
        let mut others = Vec::new();
        for _ in 0..4 {
            let (raw, raw_addr) = raw_socket().await;
            let (session, _events) = start_with(&pool, Codec::Pcmu, Some(raw_addr), quiet());
            others.push((Arc::new(raw), session, _events));
        }
        let (_held_raw, held_addr) = raw_socket().await;
        let (held, _held_events) = start_with(&pool, Codec::Pcmu, Some(held_addr), quiet());
        tokio::time::sleep(Duration::from_millis(100)).await;
        let until = Instant::now() + Duration::from_millis(700);
        let collectors: Vec<_> = others
            .iter()
            .map(|(raw, _, _)| collect_task(raw.clone(), until))
            .collect();
        // A thread of the handle's side holds the call's state for 400 ms.
        let holder = std::thread::spawn(move || {
            let guard = held.control();
            std::thread::sleep(Duration::from_millis(400));
            drop(guard);
            held
        });
        for c in collectors {
            let packets = c.await.expect("collector");
            assert!(packets.len() >= 20, "{} packets in 700 ms", packets.len());
            let worst = packets
                .windows(2)
                .map(|w| w[1].0 - w[0].0)
                .max()
                .unwrap_or_default();
            assert!(
                worst < Duration::from_millis(200),
                "another call's packets stopped for {worst:?} while one call's state was held"
            );
        }
        let held = holder.join().expect("holder");
        held.stop().await;
        for (_, session, _) in others {
            session.stop().await;
        }
    }

    /// Sends `packets` from `sock` to `to`, one every 20 ms.
    async fn send_paced(sock: Arc<UdpSocket>, to: SocketAddr, packets: Vec<Vec<u8>>) {
        let mut tick = tokio::time::interval(FRAME);
        for p in packets {
            tick.tick().await;
            sock.send_to(&p, to).await.expect("send");
        }
    }

    /// Everything a far end receives until `until`, RTP only, in order.
    fn collect_task(
        sock: Arc<UdpSocket>,
        until: Instant,
    ) -> tokio::task::JoinHandle<Vec<(Instant, RtpOwned)>> {
        tokio::spawn(async move { collect(&sock, until).await })
    }

    /// One leg's stream as its far end sees it: one SSRC, sequence numbers without a gap or
    /// jump, timestamps never going back.
    fn assert_one_continuous_stream(packets: &[(Instant, RtpOwned)]) {
        assert!(!packets.is_empty());
        for pair in packets.windows(2) {
            let (a, b) = (&pair[0].1, &pair[1].1);
            assert_eq!(b.ssrc, a.ssrc, "one SSRC");
            assert_eq!(b.sequence, a.sequence.wrapping_add(1), "sequence step");
            let step = b.timestamp.wrapping_sub(a.timestamp);
            assert!(step < 8000 * 5, "timestamp went back or jumped: {step}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn linked_legs_relay_both_ways_rewritten_and_transcoded() {
        use crate::media::dtmf::InbandDtmfDetector;
        use crate::media::g711::{alaw_to_ulaw, ulaw_to_alaw};
        let pool = test_pool();
        let (peer_a, addr_a) = raw_socket().await;
        let (peer_b, addr_b) = raw_socket().await;
        let (peer_a, peer_b) = (Arc::new(peer_a), Arc::new(peer_b));
        // Leg A speaks PCMU with telephone-event 101; leg B PCMA without telephone-event.
        let (a, mut events_a) = start_with(&pool, Codec::Pcmu, Some(addr_a), quiet());
        let (b, _events_b) = start_with(&pool, Codec::Pcma, Some(addr_b), quiet());
        a.set_dtmf_pt(Some(101));
        let a_port = SocketAddr::new(LOCALHOST, a.local_port());
        let b_port = SocketAddr::new(LOCALHOST, b.local_port());
        let t0 = Instant::now();
        let end = t0 + Duration::from_millis(2000);
        let at_a = collect_task(Arc::clone(&peer_a), end);
        let at_b = collect_task(Arc::clone(&peer_b), end);
        // Each leg plays its own silence first.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let link = a.link(&b).expect("link");
        assert!(
            matches!(a.link(&b), Err(MediaError::Link(_))),
            "linked once only"
        );

        let pattern: Vec<u8> = (0..160u32).map(|i| (i * 7 % 250) as u8).collect();
        let mut from_a = Vec::new();
        for k in 0..20u16 {
            let mut p = Vec::new();
            write_rtp(
                &mut p,
                false,
                0,
                1000 + k,
                50_000 + u32::from(k) * 160,
                0xAAAA,
                &pattern,
            );
            from_a.push(p);
        }
        // Digit 5 held 200 ms: ten event packets, three end packets.
        for k in 0..13u16 {
            let dur = (k.min(9) + 1) * 160;
            let e = if k >= 10 { 0x80 | 10 } else { 10 };
            let mut p = Vec::new();
            write_rtp(
                &mut p,
                k == 0,
                101,
                1020 + k,
                53_200,
                0xAAAA,
                &[5, e, (dur >> 8) as u8, dur as u8],
            );
            from_a.push(p);
        }
        for k in 0..10u16 {
            let mut p = Vec::new();
            write_rtp(
                &mut p,
                false,
                0,
                1033 + k,
                55_280 + u32::from(k) * 160,
                0xAAAA,
                &[0xFF; 160],
            );
            from_a.push(p);
        }
        let mut from_b = Vec::new();
        for k in 0..20u16 {
            let mut p = Vec::new();
            write_rtp(
                &mut p,
                false,
                8,
                7000 + k,
                9_000 + u32::from(k) * 160,
                0xBBBB,
                &pattern,
            );
            from_b.push(p);
        }
        let send_a = tokio::spawn(send_paced(Arc::clone(&peer_a), a_port, from_a));
        let send_b = tokio::spawn(send_paced(Arc::clone(&peer_b), b_port, from_b));
        send_a.await.expect("peer A sent");
        send_b.await.expect("peer B sent");
        tokio::time::sleep(Duration::from_millis(200)).await;
        link.unlink();
        let at_a = at_a.await.expect("collected at A");
        let at_b = at_b.await.expect("collected at B");

        // What peer B hears: B's own stream throughout, peer A's audio in it as A-law.
        assert_one_continuous_stream(&at_b);
        let relayed_to_b: Vec<&RtpOwned> = at_b
            .iter()
            .map(|(_, p)| p)
            .filter(|p| p.payload.iter().any(|&x| x != Codec::Pcma.silence_byte()))
            .collect();
        let alaw: Vec<u8> = pattern.iter().map(|&x| ulaw_to_alaw(x)).collect();
        let audio_b: Vec<&&RtpOwned> = relayed_to_b.iter().filter(|p| p.payload == alaw).collect();
        assert_eq!(audio_b.len(), 20, "every packet of A's audio, transcoded");
        assert!(audio_b[0].marker, "marker on the first relayed packet");
        assert!(audio_b.iter().all(|p| p.payload_type == 8));
        // The digit became tones in B's audio.
        let mut detector = InbandDtmfDetector::new();
        let mut heard = String::new();
        for (i, (_, p)) in at_b.iter().enumerate() {
            let mut pcm = Vec::new();
            Codec::Pcma.decode(&p.payload, &mut pcm);
            if let Some(d) = detector.push(&pcm, i as u64 * 20) {
                heard.push(d.digit);
            }
            while let Some(d) = detector.next_digit() {
                heard.push(d.digit);
            }
        }
        assert_eq!(heard, "5", "the telephone-event reached B as a tone");
        // B's own silence again after the link (the stream went on without a jump).
        assert!(at_b
            .last()
            .is_some_and(|(_, p)| p.payload == [Codec::Pcma.silence_byte(); 160]));

        // What peer A hears: A's own stream, peer B's audio in it as µ-law.
        assert_one_continuous_stream(&at_a);
        let ulaw: Vec<u8> = pattern.iter().map(|&x| alaw_to_ulaw(x)).collect();
        let audio_a: Vec<&RtpOwned> = at_a
            .iter()
            .map(|(_, p)| p)
            .filter(|p| p.payload == ulaw)
            .collect();
        assert_eq!(audio_a.len(), 20, "every packet of B's audio, transcoded");
        assert!(audio_a[0].marker);
        assert!(audio_a.iter().all(|p| p.payload_type == 0));

        // A's call still heard the digit.
        let mut digits = Vec::new();
        while let Ok(ev) = events_a.try_recv() {
            if let MediaEvent::Dtmf(d) = ev {
                digits.push(d.digit);
            }
        }
        assert_eq!(digits, vec!['5']);
        let (sa, sb) = (a.stop().await, b.stop().await);
        assert!(
            sb.sent >= 20 + 13 && sa.sent >= 20,
            "relayed packets counted: {sa:?} {sb:?}"
        );
        assert_eq!(pool.in_use(), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_srtp_leg_linked_to_a_plain_leg_opens_and_seals_every_packet() {
        use crate::media::srtp::{MasterKey, SrtpKeys, SrtpStreams, Suite};
        let pool = test_pool();
        let (peer_a, addr_a) = raw_socket().await;
        let (peer_b, addr_b) = raw_socket().await;
        let (peer_a, peer_b) = (Arc::new(peer_a), Arc::new(peer_b));
        let (ours, theirs) = (MasterKey::generate(), MasterKey::generate());
        // Leg A is SRTP (its far end holds the mirror contexts); leg B is plain RTP.
        let (a, _events_a) = start_with(&pool, Codec::Pcmu, None, quiet());
        a.set_srtp(Some(SrtpKeys {
            suite: Suite::AesCm128HmacSha1_80,
            local: ours.clone(),
            remote: theirs.clone(),
        }))
        .expect("srtp");
        a.set_remote(Some(addr_a));
        let mut far_a = SrtpStreams::new(SrtpKeys {
            suite: Suite::AesCm128HmacSha1_80,
            local: theirs,
            remote: ours,
        })
        .expect("far end's contexts");
        let (b, _events_b) = start_with(&pool, Codec::Pcmu, Some(addr_b), quiet());
        let a_port = SocketAddr::new(LOCALHOST, a.local_port());
        let b_port = SocketAddr::new(LOCALHOST, b.local_port());
        let end = Instant::now() + Duration::from_millis(1500);
        let at_b = collect_task(Arc::clone(&peer_b), end);
        let raw_a = {
            let sock = Arc::clone(&peer_a);
            tokio::spawn(async move {
                let mut got = Vec::new();
                let mut buf = [0u8; 2048];
                while let Ok(Ok((len, _))) =
                    tokio::time::timeout_at(end, sock.recv_from(&mut buf)).await
                {
                    got.push(buf[..len].to_vec());
                }
                got
            })
        };
        let link = a.link(&b).expect("link");
        let pattern: Vec<u8> = (0..160u32).map(|i| (i * 3 % 200) as u8).collect();
        let mut from_a = Vec::new();
        let mut sealed = Vec::new();
        for k in 0..20u16 {
            let mut p = Vec::new();
            write_rtp(
                &mut p,
                false,
                0,
                100 + k,
                800 + u32::from(k) * 160,
                0xAAAA,
                &pattern,
            );
            far_a.protect_rtp(&p, &mut sealed).expect("seal");
            from_a.push(sealed.clone());
        }
        // Forged: plain RTP, and a sealed packet with one payload bit flipped.
        let mut plain = Vec::new();
        write_rtp(&mut plain, false, 0, 200, 99_999, 0xAAAA, &[0x11; 160]);
        let mut flipped = from_a[3].clone();
        flipped[40] ^= 0x01;
        from_a.push(plain);
        from_a.push(flipped);
        from_a.push(from_a[5].clone()); // a replay
        let mut from_b = Vec::new();
        for k in 0..20u16 {
            let mut p = Vec::new();
            write_rtp(
                &mut p,
                false,
                0,
                7000 + k,
                9000 + u32::from(k) * 160,
                0xBBBB,
                &pattern,
            );
            from_b.push(p);
        }
        let send_a = tokio::spawn(send_paced(Arc::clone(&peer_a), a_port, from_a));
        let send_b = tokio::spawn(send_paced(Arc::clone(&peer_b), b_port, from_b));
        send_a.await.expect("peer A sent");
        send_b.await.expect("peer B sent");
        tokio::time::sleep(Duration::from_millis(200)).await;
        link.unlink();
        let at_b = at_b.await.expect("collected at B");
        let raw_a = raw_a.await.expect("collected at A");
        let stats_a = a.stop().await;
        b.stop().await;

        // B's far end hears A's audio in clear, and nothing forged.
        let relayed: Vec<_> = at_b.iter().filter(|(_, p)| p.payload == pattern).collect();
        assert_eq!(relayed.len(), 20, "every SRTP packet opened and relayed");
        assert!(!at_b.iter().any(|(_, p)| p.payload == vec![0x11; 160]));
        assert_eq!(stats_a.srtp_rejected, 3, "{stats_a:?}");
        assert_eq!(stats_a.srtp, Some("AES_CM_128_HMAC_SHA1_80"));
        // A's far end gets only SRTP: every datagram opens with its key, none is plain RTP,
        // and B's audio is among them.
        assert!(raw_a.len() >= 20, "{} packets at A", raw_a.len());
        let mut opened = Vec::new();
        let mut heard_b = 0;
        for d in &raw_a {
            assert_ne!(
                &d[12..d.len().min(172)],
                &pattern[..],
                "no plain copy of B's audio"
            );
            far_a
                .unprotect_rtp(d, &mut opened)
                .expect("A sends SRTP only");
            if RtpPacket::parse(&opened).is_ok_and(|p| p.payload == pattern.as_slice()) {
                heard_b += 1;
            }
        }
        assert_eq!(heard_b, 20, "B's audio reached A's far end sealed");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_burst_queued_on_a_linked_leg_is_relayed_whole_and_in_order() {
        let pool = test_pool();
        let (peer_a, addr_a) = raw_socket().await;
        let (peer_b, addr_b) = raw_socket().await;
        let peer_b = Arc::new(peer_b);
        let (a, _events_a) = start_with(&pool, Codec::Pcmu, Some(addr_a), quiet());
        let (b, _events_b) = start_with(&pool, Codec::Pcmu, Some(addr_b), quiet());
        let a_port = SocketAddr::new(LOCALHOST, a.local_port());
        let link = a.link(&b).expect("link");
        let end = Instant::now() + Duration::from_millis(1000);
        let at_b = collect_task(Arc::clone(&peer_b), end);
        tokio::time::sleep(Duration::from_millis(50)).await;
        // More than one receive batch at once (a far end catching up after a stall): the
        // engine reads it in several batches, and every packet leaves, in order.
        const BURST: u16 = 3 * crate::media::engine::BATCH as u16 + 5;
        for k in 0..BURST {
            let mut p = Vec::new();
            write_rtp(
                &mut p,
                false,
                0,
                300 + k,
                8_000 + u32::from(k) * 160,
                0xCAFE,
                &[(k % 200) as u8 + 1; 160],
            );
            peer_a.send_to(&p, a_port).await.expect("send");
        }
        let at_b = at_b.await.expect("collected at B");
        link.unlink();
        let relayed: Vec<u8> = at_b
            .iter()
            .map(|(_, p)| p)
            .filter(|p| p.payload[0] != Codec::Pcmu.silence_byte())
            .map(|p| p.payload[0])
            .collect();
        let sent: Vec<u8> = (0..BURST).map(|k| (k % 200) as u8 + 1).collect();
        assert_eq!(relayed, sent, "every packet of the burst, in order");
        assert_one_continuous_stream(&at_b);
        a.stop().await;
        b.stop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn inband_digits_on_a_linked_leg_reach_the_other_as_rfc4733() {
        let pool = test_pool();
        let (peer_a, addr_a) = raw_socket().await;
        let (peer_b, addr_b) = raw_socket().await;
        let (peer_a, peer_b) = (Arc::new(peer_a), Arc::new(peer_b));
        // Leg A has no telephone-event (digits come as tones); leg B negotiated 101.
        let (a, mut events_a) = start_with(&pool, Codec::Pcmu, Some(addr_a), quiet());
        let (b, _events_b) = start_with(&pool, Codec::Pcmu, Some(addr_b), quiet());
        b.set_dtmf_pt(Some(101));
        let link = a.link(&b).expect("link");
        let a_port = SocketAddr::new(LOCALHOST, a.local_port());
        let end = Instant::now() + Duration::from_millis(2200);
        let at_b = collect_task(Arc::clone(&peer_b), end);
        // 200 ms of silence, digit 8 for 160 ms, then silence: µ-law, 20 ms a packet.
        let mut pcm = vec![0i16; 1600];
        pcm.extend(inband_samples('8', 160, 0).expect("digit"));
        pcm.resize(pcm.len() + 4000, 0);
        let packets: Vec<Vec<u8>> = pcm
            .chunks(FRAME_SAMPLES)
            .enumerate()
            .map(|(k, frame)| {
                let mut payload = Vec::new();
                Codec::Pcmu.encode(frame, &mut payload);
                let mut p = Vec::new();
                write_rtp(&mut p, false, 0, k as u16, k as u32 * 160, 0xCAFE, &payload);
                p
            })
            .collect();
        send_paced(Arc::clone(&peer_a), a_port, packets).await;
        let at_b = at_b.await.expect("collected at B");
        drop(link);
        assert_one_continuous_stream(&at_b);
        let events: Vec<&RtpOwned> = at_b
            .iter()
            .map(|(_, p)| p)
            .filter(|p| p.payload_type == 101)
            .collect();
        assert!(
            events.len() >= 3,
            "RFC 4733 packets for the digit: {}",
            events.len()
        );
        assert!(events.iter().all(|p| p.payload.first() == Some(&8)));
        assert!(events[0].marker, "an event starts with the marker");
        assert!(events
            .iter()
            .any(|p| p.payload.get(1).is_some_and(|e| e & 0x80 != 0)));
        // A's call heard the digit too.
        let mut digits = Vec::new();
        while let Ok(ev) = events_a.try_recv() {
            if let MediaEvent::Dtmf(d) = ev {
                digits.push(d.digit);
            }
        }
        assert_eq!(digits, vec!['8']);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_sessions_exchange_played_audio() {
        let pool = test_pool();
        let (a, mut a_events) = start(&pool, Codec::Pcmu, None);
        let (b, mut b_events) = start(&pool, Codec::Pcmu, None);
        let a_addr = SocketAddr::new(LOCALHOST, a.local_port());
        let b_addr = SocketAddr::new(LOCALHOST, b.local_port());
        a.set_remote(Some(b_addr));
        b.set_remote(Some(a_addr));

        // 0.6 s of a two-tone signal whose first sample is not zero (so its start is visible).
        let signal: Vec<i16> = (0..4850)
            .map(|i| {
                let t = i as f64 / 8000.0;
                (6000.0 * (2.0 * std::f64::consts::PI * 440.0 * t).cos()
                    + 3000.0 * (2.0 * std::f64::consts::PI * 1330.0 * t).sin())
                    as i16
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(100)).await;
        a.play(Arc::new(signal.clone()));

        let mut b_frames = Vec::new();
        let mut a_frames = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(3);
        let mut finished = false;
        while !finished {
            tokio::select! {
                e = a_events.recv() => match e {
                    Some(MediaEvent::PlaybackFinished) => finished = true,
                    Some(MediaEvent::Frame(f)) => a_frames.push(f),
                    Some(MediaEvent::Dtmf(_) | MediaEvent::Tone(_) | MediaEvent::Sent(_)) => {}
                    None => panic!("a's events closed"),
                },
                Some(MediaEvent::Frame(f)) = b_events.recv() => b_frames.push(f),
                _ = tokio::time::sleep_until(deadline) => panic!("no PlaybackFinished"),
            }
        }
        // Let the jitter buffer play out what is queued before a stops.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let a_stats = a.stop().await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        let b_stats = b.stop().await;
        while let Some(e) = b_events.recv().await {
            if let MediaEvent::Frame(f) = e {
                b_frames.push(f);
            }
        }
        while let Some(e) = a_events.recv().await {
            if let MediaEvent::Frame(f) = e {
                a_frames.push(f);
            }
        }

        // Every packet a sent reached b and was played; likewise the other way.
        let played: Vec<&AudioFrame> = b_frames.iter().filter(|f| !f.concealed).collect();
        assert_eq!(
            b_stats.received, a_stats.sent,
            "a {a_stats:?} b {b_stats:?}"
        );
        assert_eq!(played.len() as u64, b_stats.received, "{b_stats:?}");
        assert!(a_stats.received <= b_stats.sent); // b ran on after a had closed its port
        let a_played = a_frames.iter().filter(|f| !f.concealed).count() as u64;
        assert!(a_played <= a_stats.received && a_played + 3 >= a_stats.received);
        assert_eq!(a_stats.dropped_frames + b_stats.dropped_frames, 0);
        assert_eq!(a_stats.invalid + b_stats.invalid, 0);
        assert_eq!(
            (b_stats.lost, b_stats.jitter_buffer.late),
            (0, 0),
            "{b_stats:?}"
        );
        assert!(a_stats.sent >= 35, "{a_stats:?}"); // 0.1 s + 0.6 s + 0.2 s of packets
                                                    // Frames are continuous: the concealed ones only come after a stopped.
        let first_concealed = b_frames.iter().position(|f| f.concealed);
        if let Some(i) = first_concealed {
            assert!(
                b_frames[i..].iter().all(|f| f.concealed),
                "a gap mid-stream"
            );
        }

        for pair in played.windows(2) {
            assert_eq!(
                pair[1].rtp_timestamp,
                pair[0].rtp_timestamp.wrapping_add(160)
            );
        }
        let received: Vec<i16> = played
            .iter()
            .flat_map(|f| f.samples.iter().copied())
            .collect();
        assert!(played
            .iter()
            .all(|f| f.payload_type == 0 && f.samples.len() == 160));
        let start = received
            .iter()
            .position(|&s| s != 0)
            .expect("signal arrived");
        assert_eq!(start % 160, 0, "playback starts on a frame boundary");
        let got = &received[start..start + signal.len()];
        // Exactly the G.711 rendering of what was played...
        let mut expected = Vec::new();
        let mut bytes = Vec::new();
        Codec::Pcmu.encode(&signal, &mut bytes);
        Codec::Pcmu.decode(&bytes, &mut expected);
        assert_eq!(got, &expected[..]);
        // ...which correlates with the original almost perfectly.
        let dot: f64 = got
            .iter()
            .zip(&signal)
            .map(|(&x, &y)| x as f64 * y as f64)
            .sum();
        let nx: f64 = got.iter().map(|&x| (x as f64).powi(2)).sum();
        let ny: f64 = signal.iter().map(|&y| (y as f64).powi(2)).sum();
        assert!(dot / (nx * ny).sqrt() > 0.999);
        // Silence after the signal (the last frame is padded with zeros).
        assert!(received[start + signal.len()..].iter().all(|&s| s == 0));
        assert_eq!(pool.in_use(), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn hold_stops_sending_and_resume_continues_the_stream() {
        let pool = test_pool();
        let (raw, raw_addr) = raw_socket().await;
        let (session, _events) = start_with(&pool, Codec::Pcmu, Some(raw_addr), quiet());
        let before = collect(&raw, Instant::now() + Duration::from_millis(200)).await;
        session.set_remote(None);
        assert_eq!(session.remote(), None);
        let held_at = Instant::now();
        let in_flight = collect(&raw, Instant::now() + Duration::from_millis(60)).await;
        assert!(
            in_flight.len() <= 2,
            "{} packets after hold",
            in_flight.len()
        );
        let sent_on_hold = session.stats().sent;
        let silent = collect(&raw, Instant::now() + Duration::from_millis(300)).await;
        assert!(silent.is_empty(), "{} packets while on hold", silent.len());
        assert_eq!(session.stats().sent, sent_on_hold);

        session.set_codec(Codec::Pcma);
        session.set_remote(Some(raw_addr));
        let resumed_at = Instant::now();
        let after = collect(&raw, Instant::now() + Duration::from_millis(200)).await;
        let stats = session.stop().await;
        // A packet may go out between the end of `collect` and `stop`.
        let tail = collect(&raw, Instant::now() + Duration::from_millis(50)).await;

        let last = &in_flight
            .last()
            .unwrap_or(before.last().expect("packets before hold"))
            .1;
        let first = &after.first().expect("packets after resume").1;
        assert!(first.marker, "marker after resume");
        assert_eq!(first.sequence, last.sequence.wrapping_add(1));
        let jump = first.timestamp.wrapping_sub(last.timestamp) as u64;
        let paused = (resumed_at - held_at).as_millis() as u64 * 8;
        assert!(
            jump >= paused.saturating_sub(480) && jump <= paused + 1600,
            "jump {jump}, paused {paused}"
        );
        assert_continuous(&after);
        assert!(after
            .iter()
            .all(|(_, p)| p.payload_type == 8 && p.payload == vec![0xD5; 160]));
        assert_eq!(
            stats.sent,
            (before.len() + in_flight.len() + after.len() + tail.len()) as u64
        );
    }

    #[tokio::test]
    async fn receiver_counts_ignores_and_decodes() {
        let pool = test_pool();
        let (raw, raw_addr) = raw_socket().await;
        let (session, mut events) = start(&pool, Codec::Pcmu, Some(raw_addr));
        let to = SocketAddr::new(LOCALHOST, session.local_port());
        let mut pkt = Vec::new();
        // An SR header whose length runs past the datagram: invalid RTCP.
        raw.send_to(&[0x80, 200, 0, 6, 1, 2, 3, 4], to)
            .await
            .expect("bad rtcp");
        write_rr(&mut pkt, 0x77, &[]);
        raw.send_to(&pkt, to).await.expect("rtcp"); // RTCP multiplexed: read
        raw.send_to(b"hello, not rtp", to).await.expect("garbage"); // version 1: invalid
        raw.send_to(&[0x80, 0], to).await.expect("short"); // too short: invalid
        write_rtp(&mut pkt, true, 101, 1, 0, 7, &[1, 0, 0, 160]);
        raw.send_to(&pkt, to).await.expect("dtmf"); // telephone-event: counted, not decoded
        write_rtp(&mut pkt, false, 8, 2, 160, 7, &[0xD5; 160]);
        raw.send_to(&pkt, to).await.expect("pcma"); // decoded as A-law though PCMU is negotiated

        let frame = tokio::time::timeout(Duration::from_secs(2), events.recv())
            .await
            .expect("a frame in time")
            .expect("channel open");
        assert_eq!(
            frame,
            MediaEvent::Frame(AudioFrame {
                samples: vec![8; 160],
                rtp_timestamp: 160,
                payload_type: 8,
                concealed: false,
            })
        );
        // The turns after the last packet are concealed: the last frame fading, then silence.
        let mut levels = Vec::new();
        for _ in 0..4 {
            match tokio::time::timeout(Duration::from_secs(2), events.recv()).await {
                Ok(Some(MediaEvent::Frame(f))) => {
                    assert!(f.concealed && f.samples.len() == 160 && f.payload_type == 8);
                    levels.push(f.samples[0]);
                }
                other => panic!("expected a concealed frame, got {other:?}"),
            }
        }
        assert_eq!(levels, vec![5, 2, 1, 0]);
        let stats = session.stop().await;
        assert_eq!(
            (
                stats.received,
                stats.dropped_frames,
                stats.invalid,
                stats.rejected_source
            ),
            (2, 0, 2, 0),
            "{stats:?}"
        );
        assert_eq!((stats.rtcp.reports_received, stats.rtcp.invalid), (1, 1));
        assert_eq!(
            stats.jitter_buffer.received, 1,
            "the DTMF packet is not audio"
        );
        assert_eq!(stats.jitter_buffer.played, 1);
        assert_eq!(stats.lost, 0);
        while let Some(e) = events.recv().await {
            assert!(matches!(
                e,
                MediaEvent::Frame(AudioFrame {
                    concealed: true,
                    ..
                })
            ));
        }
    }

    /// The peer's payload byte for packet `k`: each decodes to a different sample value.
    fn marker_byte(k: u16) -> u8 {
        0x10 + k as u8
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn frames_nobody_takes_are_played_out_but_not_delivered() {
        let pool = test_pool();
        let (raw, raw_addr) = raw_socket().await;
        let raw = Arc::new(raw);
        let (session, mut events) = start(&pool, Codec::Pcmu, Some(raw_addr));
        let to = SocketAddr::new(LOCALHOST, session.local_port());
        // One stream of 50 packets (1 s); delivery off for its first 400 ms.
        let packets: Vec<Vec<u8>> = (0..50u16)
            .map(|k| {
                let mut pkt = Vec::new();
                let ts = 160 * u32::from(k);
                write_rtp(&mut pkt, k == 0, 0, k, ts, 0x77, &[marker_byte(k); 160]);
                pkt
            })
            .collect();
        session.deliver_frames(false);
        let sender = tokio::spawn(send_paced(raw.clone(), to, packets));
        let quiet = frames_until(&mut events, Instant::now() + Duration::from_millis(400)).await;
        assert!(
            quiet.is_empty(),
            "{} frames delivered while off",
            quiet.len()
        );
        session.deliver_frames(true);
        sender.await.expect("sender");
        let frames = frames_until(&mut events, Instant::now() + Duration::from_millis(300)).await;
        let heard: Vec<u16> = frames
            .iter()
            .filter(|(_, f)| !f.concealed)
            .map(|(_, f)| (f.rtp_timestamp / 160) as u16)
            .collect();
        let first = *heard.first().expect("frames once on again");
        assert!(first >= 10, "frame {first} was played out while off");
        assert_eq!(
            heard,
            (first..50).collect::<Vec<u16>>(),
            "every frame once on again, in order"
        );
        let stats = session.stop().await;
        assert_eq!(stats.received, 50);
        assert_eq!(stats.jitter_buffer.played, 50, "{:?}", stats.jitter_buffer);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn impaired_stream_still_gives_one_frame_per_20_ms() {
        let pool = test_pool();
        let options = MediaOptions {
            jitter_min_ms: 60,
            jitter_initial_ms: 60,
            ..quiet()
        };
        let (raw, raw_addr) = raw_socket().await;
        let (session, mut events) = start_with(&pool, Codec::Pcmu, Some(raw_addr), options);
        let to = SocketAddr::new(LOCALHOST, session.local_port());

        // 60 packets of 20 ms: 10/11 and 30/31 swapped, 20 duplicated at once and 40 again
        // 60 ms later, 25, 26 and 50 never sent.
        let dropped = [25u16, 26, 50];
        let mut plan: Vec<(u64, u16)> = (0..60u16)
            .filter(|k| !dropped.contains(k))
            .map(|k| {
                let slot = match k {
                    10 => 11,
                    11 => 10,
                    30 => 31,
                    31 => 30,
                    k => k,
                };
                (u64::from(slot) * 20_000, k)
            })
            .collect();
        plan.push((20 * 20_000 + 1_000, 20));
        plan.push((43 * 20_000 + 1_000, 40));
        plan.sort_by_key(|&(at, _)| at);
        let t0 = Instant::now() + Duration::from_millis(20);
        let collector = tokio::spawn(async move {
            let frames = frames_until(&mut events, t0 + Duration::from_millis(60 * 20 + 400)).await;
            (frames, events)
        });
        let mut pkt = Vec::new();
        for (at_us, k) in plan {
            tokio::time::sleep_until(t0 + Duration::from_micros(at_us)).await;
            let ts = 8000 + 160 * u32::from(k);
            write_rtp(
                &mut pkt,
                k == 0,
                0,
                1000 + k,
                ts,
                0x77,
                &[marker_byte(k); 160],
            );
            raw.send_to(&pkt, to).await.expect("send");
        }
        let (frames, _events) = collector.await.expect("collector");
        let stats = session.stop().await;

        let real: Vec<&(Instant, AudioFrame)> =
            frames.iter().filter(|(_, f)| !f.concealed).collect();
        let expected: Vec<u32> = (0..60u16)
            .filter(|k| !dropped.contains(k))
            .map(|k| 8000 + 160 * u32::from(k))
            .collect();
        let got: Vec<u32> = real.iter().map(|(_, f)| f.rtp_timestamp).collect();
        assert_eq!(got, expected, "every packet once, in order: {stats:?}");
        for (_, f) in &real {
            let k = ((f.rtp_timestamp - 8000) / 160) as u16;
            assert_eq!(
                f.samples,
                vec![Codec::Pcmu.decode_sample(marker_byte(k)); 160]
            );
        }
        // The dropped packets' turns are concealed, in place.
        let first = frames
            .iter()
            .position(|(_, f)| !f.concealed)
            .expect("audio");
        let last = frames
            .iter()
            .rposition(|(_, f)| !f.concealed)
            .expect("audio");
        let span = &frames[first..=last];
        for k in dropped {
            let ts = 8000 + 160 * u32::from(k);
            assert!(
                span.iter()
                    .any(|(_, f)| f.concealed && f.rtp_timestamp == ts),
                "turn of {k} concealed"
            );
        }
        // One frame per 20 ms: 60 turns (plus at most a couple inserted to grow the delay).
        assert!((60..=63).contains(&span.len()), "{} frames", span.len());
        let took = span[span.len() - 1].0 - span[0].0;
        let ideal = FRAME * (span.len() as u32 - 1);
        assert!(
            took + Duration::from_millis(120) > ideal && took < ideal + Duration::from_millis(120),
            "{} frames over {took:?}",
            span.len()
        );
        let jb = stats.jitter_buffer;
        assert_eq!(stats.received, 59, "57 packets and 2 duplicates: {stats:?}");
        assert_eq!(
            (jb.duplicates, jb.reordered, jb.lost, jb.late),
            (2, 2, 3, 0),
            "{jb:?}"
        );
        // RFC 3550 counts duplicates as received: 60 expected − 59 received.
        assert_eq!(
            (stats.lost, stats.rtcp.packets_expected),
            (1, 60),
            "{stats:?}"
        );
        assert_eq!((stats.dropped_frames, stats.invalid), (0, 0));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn full_event_channel_drops_frames_and_counts_them() {
        let pool = test_pool();
        let options = MediaOptions {
            event_capacity: 5,
            ..quiet()
        };
        let (raw, raw_addr) = raw_socket().await;
        let (session, mut events) = start_with(&pool, Codec::Pcmu, Some(raw_addr), options);
        let to = SocketAddr::new(LOCALHOST, session.local_port());
        let mut pkt = Vec::new();
        let t0 = Instant::now();
        for i in 0..30u16 {
            tokio::time::sleep_until(t0 + FRAME * u32::from(i)).await;
            write_rtp(&mut pkt, false, 0, i, u32::from(i) * 160, 9, &[0xFF; 160]);
            raw.send_to(&pkt, to).await.expect("send");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        let stats = session.stop().await;
        assert_eq!(stats.received, 30, "{stats:?}");
        let mut frames = 0u64;
        while let Some(MediaEvent::Frame(_)) = events.recv().await {
            frames += 1;
        }
        assert_eq!(frames, 5);
        // Every 20 ms turn since the first packet made a frame; all but 5 were dropped.
        let turns = stats.jitter_buffer.played + stats.jitter_buffer.concealed;
        assert_eq!(stats.dropped_frames, turns - 5, "{stats:?}");
        assert!(stats.dropped_frames >= 25, "{stats:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn rtcp_reports_flow_both_ways_and_give_rtt() {
        let pool = test_pool();
        let options = MediaOptions {
            rtcp_interval: Duration::from_millis(200),
            ..MediaOptions::default()
        };
        let (a, _a_events) = start_with(&pool, Codec::Pcmu, None, options.clone());
        let (b, _b_events) = start_with(&pool, Codec::Pcma, None, options);
        a.set_remote(Some(SocketAddr::new(LOCALHOST, b.local_port())));
        b.set_remote(Some(SocketAddr::new(LOCALHOST, a.local_port())));
        let deadline = Instant::now() + Duration::from_secs(6);
        while Instant::now() < deadline {
            let (sa, sb) = (a.stats(), b.stats());
            if sa.rtt_ms.is_some() && sb.rtt_ms.is_some() && sa.rtcp.reports_received >= 3 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        for (name, s) in [("a", a.stats()), ("b", b.stats())] {
            let rtt = s.rtt_ms.unwrap_or_else(|| panic!("{name}: no RTT: {s:?}"));
            assert!((0.0..50.0).contains(&rtt), "{name}: {s:?}");
            assert_eq!(s.rtt_ms, s.rtcp.rtt_ms);
            assert!(
                s.rtcp.reports_received >= 1 && s.rtcp.reports_sent >= 1,
                "{name}: {s:?}"
            );
            assert_eq!(s.rtcp.invalid, 0, "{name}: {s:?}");
            assert!(
                s.rtcp.remote_packets_sent.is_some_and(|n| n > 0),
                "{name}: {s:?}"
            );
            assert_eq!(s.rtcp.remote_fraction_lost, Some(0.0), "{name}: {s:?}");
            assert_eq!(s.rtcp.remote_packets_lost, Some(0), "{name}: {s:?}");
            assert_eq!((s.lost, s.invalid), (0, 0), "{name}: {s:?}");
            assert!(
                s.received > 10 && s.rtcp.packets_expected > 10,
                "{name}: {s:?}"
            );
        }
        // Stopping sends a BYE, even after a hold (a call holds the session before its BYE).
        a.set_remote(None);
        a.stop().await;
        let deadline = Instant::now() + Duration::from_secs(2);
        while !b.stats().rtcp.bye_received && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(b.stats().rtcp.bye_received, "{:?}", b.stats());
        b.stop().await;
        assert_eq!(pool.in_use(), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn rtcp_multiplexed_on_the_rtp_port_is_read_and_answered_there() {
        let pool = test_pool();
        let (raw, raw_addr) = raw_socket().await;
        let options = MediaOptions {
            rtcp_interval: Duration::from_millis(200),
            ..MediaOptions::default()
        };
        let (session, _events) = start_with(&pool, Codec::Pcmu, Some(raw_addr), options);
        let to = SocketAddr::new(LOCALHOST, session.local_port());
        let mut pkt = Vec::new();
        for k in 0..5u16 {
            write_rtp(
                &mut pkt,
                false,
                0,
                k,
                160 * u32::from(k),
                0x5EED,
                &[0xFF; 160],
            );
            raw.send_to(&pkt, to).await.expect("rtp");
        }
        let ntp = (0xE000_0000u64 << 32) | 0x1234_0000;
        pkt.clear();
        let info = SenderInfo {
            ntp,
            rtp_timestamp: 800,
            packet_count: 5,
            octet_count: 800,
        };
        write_sr(&mut pkt, 0x5EED, &info, &[]);
        write_sdes_cname(&mut pkt, 0x5EED, "peer@test");
        raw.send_to(&pkt, to).await.expect("muxed SR");

        // The session's next reports come back multiplexed, echoing our SR.
        let deadline = Instant::now() + Duration::from_secs(3);
        let mut buf = [0u8; 2048];
        let mut echoed = None;
        while echoed.is_none() {
            let Ok(Ok((len, _))) = tokio::time::timeout_at(deadline, raw.recv_from(&mut buf)).await
            else {
                break;
            };
            if !is_rtcp(&buf[..len]) {
                continue;
            }
            let compound = parse_compound(&buf[..len]).expect("the session's RTCP parses");
            for p in compound.packets() {
                if let RtcpPacket::SenderReport { reports, .. }
                | RtcpPacket::ReceiverReport { reports, .. } = p
                {
                    echoed = reports
                        .iter()
                        .find(|b| b.ssrc == 0x5EED && b.lsr == ntp_middle(ntp));
                }
            }
        }
        let block = echoed.expect("a report block echoing our SR, on the RTP port");
        assert!(block.dlsr < 65_536, "answered within a second: {block:?}");
        let stats = session.stop().await;
        assert_eq!(stats.rtcp.reports_received, 1, "{stats:?}");
        assert_eq!(stats.rtcp.remote_packets_sent, Some(5));
        assert_eq!((stats.invalid, stats.received), (0, 5));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn latches_onto_the_address_rtp_really_comes_from() {
        for mode in [RtpLatching::Off, RtpLatching::Initial, RtpLatching::Always] {
            let pool = test_pool();
            let (sdp, sdp_addr) = raw_socket().await; // what the SDP said
            let (real, real_addr) = raw_socket().await; // where the peer really sends from
            let real = Arc::new(real);
            let options = MediaOptions {
                latching: mode,
                ..quiet()
            };
            let (session, _events) = start_with(&pool, Codec::Pcmu, Some(sdp_addr), options);
            let to = SocketAddr::new(LOCALHOST, session.local_port());
            let peer = Arc::clone(&real);
            let sender = tokio::spawn(async move {
                let mut pkt = Vec::new();
                for k in 0..30u16 {
                    write_rtp(
                        &mut pkt,
                        false,
                        0,
                        k,
                        160 * u32::from(k),
                        0xCAFE,
                        &[0xFF; 160],
                    );
                    peer.send_to(&pkt, to).await.expect("send");
                    tokio::time::sleep(FRAME).await;
                }
            });
            let at_real = collect(&real, Instant::now() + Duration::from_millis(700)).await;
            sender.await.expect("sender");
            // Whatever went to the SDP address before latching is read away; then watch it.
            collect(&sdp, Instant::now() + Duration::from_millis(30)).await;
            let at_sdp = collect(&sdp, Instant::now() + Duration::from_millis(200)).await;
            let stats = session.stats();
            if mode == RtpLatching::Off {
                assert!(at_real.is_empty(), "off: nothing to the other address");
                assert!(at_sdp.len() >= 5, "off: still sending to the SDP address");
                assert_eq!(
                    (stats.received, stats.rejected_source),
                    (0, 30),
                    "{stats:?}"
                );
                assert_eq!(stats.latched_to, None);
                assert_eq!(session.remote(), Some(sdp_addr));
                // Packets from the SDP address itself are taken.
                let mut pkt = Vec::new();
                write_rtp(&mut pkt, false, 0, 1, 160, 0xCAFE, &[0xFF; 160]);
                sdp.send_to(&pkt, to).await.expect("send");
                tokio::time::sleep(Duration::from_millis(50)).await;
                assert_eq!(session.stats().received, 1);
            } else {
                assert!(
                    at_real.len() >= 20,
                    "{mode}: {} packets after latching",
                    at_real.len()
                );
                assert!(
                    at_sdp.is_empty(),
                    "{mode}: {} packets still to the SDP address",
                    at_sdp.len()
                );
                // The packets before the latch are dropped, not heard.
                let before = u64::from(LATCH_PACKETS - 1);
                assert_eq!(
                    (stats.received, stats.rejected_source),
                    (30 - before, before),
                    "{mode}: {stats:?}"
                );
                assert_eq!(stats.latched_to, Some(real_addr));
                assert_eq!(session.remote(), Some(real_addr));
                assert_continuous(&at_real);
            }
            session.stop().await;
        }
    }

    /// µ-law bytes of a loud 1 kHz tone (what an injector would like AMD to hear).
    fn loud_tone() -> Vec<u8> {
        (0..160)
            .map(|i| {
                let x = (i as f64 * 2.0 * std::f64::consts::PI * 1000.0 / 8000.0).sin();
                crate::media::g711::linear_to_ulaw((20_000.0 * x) as i16)
            })
            .collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn injected_rtp_is_not_heard_not_latched_and_counted() {
        for mode in [RtpLatching::Off, RtpLatching::Initial, RtpLatching::Always] {
            let pool = test_pool();
            let (peer, peer_addr) = raw_socket().await; // the far end, at its SDP address
            let (injector, injector_addr) = raw_socket().await; // anyone else on the network
            let options = MediaOptions {
                latching: mode,
                ..quiet()
            };
            let (session, mut events) = start_with(&pool, Codec::Pcmu, Some(peer_addr), options);
            session.set_dtmf_pt(Some(101));
            session.set_tone_detection(true);
            let to = SocketAddr::new(LOCALHOST, session.local_port());
            let (peer, injector) = (Arc::new(peer), Arc::new(injector));
            let at_injector = collect_task(
                Arc::clone(&injector),
                Instant::now() + Duration::from_millis(1800),
            );
            let collector = tokio::spawn(async move {
                let mut frames = Vec::new();
                let mut other = Vec::new();
                let until = Instant::now() + Duration::from_millis(1800);
                while let Ok(Some(e)) = tokio::time::timeout_at(until, events.recv()).await {
                    match e {
                        MediaEvent::Frame(f) => frames.push(f),
                        e => other.push(e),
                    }
                }
                (frames, other)
            });
            // The far end streams silence; once it has started, the injector sends bursts of
            // a loud tone and of key presses between the far end's packets: each burst two
            // packets with its own SSRC, then LATCH_PACKETS in a row with the far end's.
            let tone = loud_tone();
            let mut injected = 0u64;
            let mut pkt = Vec::new();
            let t0 = Instant::now();
            for k in 0..60u16 {
                tokio::time::sleep_until(t0 + FRAME * u32::from(k)).await;
                write_rtp(
                    &mut pkt,
                    k == 0,
                    0,
                    k,
                    160 * u32::from(k),
                    0xFA2,
                    &[0xFF; 160],
                );
                peer.send_to(&pkt, to).await.expect("peer");
                if k < 5 {
                    continue;
                }
                for j in 0..5u16 {
                    let seq = 5000 + 5 * k + j;
                    let ssrc = if j < 2 { 0xBAD } else { 0xFA2 };
                    if k % 2 == 0 {
                        write_rtp(&mut pkt, false, 0, seq, 160 * u32::from(seq), ssrc, &tone);
                    } else {
                        // Digit 1, 100 ms, end bit on the last packets.
                        let end = if j >= 2 { 0x80 } else { 0 };
                        write_rtp(&mut pkt, j == 0, 101, seq, 9_000, ssrc, &[1, end, 3, 32]);
                    }
                    injector.send_to(&pkt, to).await.expect("inject");
                    injected += 1;
                }
            }
            let (frames, other) = collector.await.expect("collector");
            let at_injector = at_injector.await.expect("collector");
            let stats = session.stop().await;

            assert!(frames.len() > 40, "{mode}: {} frames", frames.len());
            let loudest = frames
                .iter()
                .flat_map(|f| f.samples.iter())
                .map(|s| s.unsigned_abs())
                .max()
                .unwrap_or(0);
            assert!(
                loudest < 100,
                "{mode}: the injected tone was heard ({loudest})"
            );
            assert!(
                other.is_empty(),
                "{mode}: injected events reported: {other:?}"
            );
            assert!(
                at_injector.is_empty(),
                "{mode}: {} of our packets went to the injector at {injector_addr}",
                at_injector.len()
            );
            assert_eq!(stats.received, 60, "{mode}: {stats:?}");
            assert_eq!(stats.rejected_source, injected, "{mode}: {stats:?}");
            assert_eq!(stats.latched_to, None, "{mode}");
        }
    }

    #[test]
    fn nothing_is_taken_before_the_sdp_address_is_known() {
        let t0 = std::time::Instant::now();
        let addr = |port: u16| SocketAddr::new(LOCALHOST, port);
        for mode in [RtpLatching::Off, RtpLatching::Initial, RtpLatching::Always] {
            let mut l = Latch::new(mode, None);
            for k in 0..5 {
                assert_eq!(
                    l.check(addr(2000), 7, t0 + FRAME * k),
                    SourceCheck::Reject(Rejected::NoRemote),
                    "{mode}"
                );
            }
            assert!(!l.rtcp_allowed(addr(2001)));
            // The answer's SDP: from now on its address is taken, and the window opens with
            // the first packet after it.
            l.set_remote(Some(addr(1000)), None);
            assert_eq!(l.check(addr(1000), 7, t0 + FRAME * 10), SourceCheck::Accept);
            assert!(l.rtcp_allowed(addr(1001)));
            assert!(!l.rtcp_allowed(SocketAddr::new([127, 0, 0, 2].into(), 1001)));
        }
    }

    #[test]
    fn off_takes_the_sdp_address_only() {
        let t0 = std::time::Instant::now();
        let addr = |port: u16| SocketAddr::new(LOCALHOST, port);
        let (sdp, nat) = (addr(1000), addr(2000));
        let mut l = Latch::new(RtpLatching::Off, Some(sdp));
        for k in 0..10 {
            assert_eq!(
                l.check(nat, 7, t0 + FRAME * k),
                SourceCheck::Reject(Rejected::Foreign)
            );
        }
        assert_eq!(l.check(sdp, 7, t0 + FRAME * 10), SourceCheck::Accept);
        // The far end's new stream (a new SSRC) from its address is taken.
        assert_eq!(l.check(sdp, 8, t0 + FRAME * 11), SourceCheck::Accept);
        assert_eq!(l.latched, None);
    }

    #[test]
    fn initial_latches_once_within_the_window_while_the_sdp_address_is_silent() {
        let t0 = std::time::Instant::now();
        let addr = |port: u16| SocketAddr::new(LOCALHOST, port);
        let (sdp, nat, other) = (addr(1000), addr(2000), addr(3000));
        let pending = SourceCheck::Reject(Rejected::Pending);
        let foreign = SourceCheck::Reject(Rejected::Foreign);

        // A far end behind a NAT: three in a row, one SSRC, a second in.
        let mut l = Latch::new(RtpLatching::Initial, Some(sdp));
        let t = t0 + Duration::from_secs(1);
        assert_eq!(l.check(other, 9, t0), pending); // the window opens here
        assert_eq!(l.check(nat, 7, t), pending);
        assert_eq!(
            l.check(nat, 8, t),
            pending,
            "a new SSRC starts the count again"
        );
        assert_eq!(l.check(nat, 8, t), pending);
        assert_eq!(l.check(nat, 8, t), SourceCheck::Latch(nat));
        assert_eq!(l.latched, Some(nat));
        assert_eq!(l.check(nat, 8, t), SourceCheck::Accept);
        // Latched once: nobody else, not even the SDP address, later in the call.
        for k in 0..5 {
            assert_eq!(l.check(other, 8, t + FRAME * k), foreign);
            assert_eq!(l.check(sdp, 8, t + FRAME * k), foreign);
        }
        // The expected source may change its SSRC.
        assert_eq!(l.check(nat, 99, t), SourceCheck::Accept);
        assert!(l.rtcp_allowed(nat) && !l.rtcp_allowed(SocketAddr::new([10, 0, 0, 1].into(), 1)));

        // Interleaved sources never reach three in a row.
        let mut l = Latch::new(RtpLatching::Initial, Some(sdp));
        for k in 0..10 {
            assert_eq!(l.check(other, 9, t0 + FRAME * k), pending);
            assert_eq!(l.check(nat, 7, t0 + FRAME * k), pending);
        }
        assert_eq!(l.latched, None);

        // Once the SDP address has been heard, nobody else is latched onto.
        let mut l = Latch::new(RtpLatching::Initial, Some(sdp));
        assert_eq!(l.check(sdp, 7, t0), SourceCheck::Accept);
        for k in 1..10 {
            assert_eq!(l.check(nat, 7, t0 + FRAME * k), foreign);
        }

        // Too late: the window closed LATCH_WINDOW after the first packet.
        let mut l = Latch::new(RtpLatching::Initial, Some(sdp));
        assert_eq!(l.check(nat, 7, t0), pending);
        let late = t0 + LATCH_WINDOW;
        for k in 0..5 {
            assert_eq!(l.check(nat, 7, late + FRAME * k), foreign);
        }
        assert_eq!(l.latched, None);

        // A new SDP address (a re-INVITE) starts over: a new window, nothing latched.
        let mut l = Latch::new(RtpLatching::Initial, Some(sdp));
        for _ in 0..3 {
            l.check(nat, 7, t0);
        }
        assert_eq!(l.latched, Some(nat));
        l.set_remote(Some(addr(4000)), None);
        let later = t0 + Duration::from_secs(60);
        assert_eq!(l.check(nat, 7, later), pending);
        assert_eq!(l.check(nat, 7, later), pending);
        assert_eq!(l.check(nat, 7, later), SourceCheck::Latch(nat));
        // The same address again (a hold and resume, a second SDP) changes nothing.
        l.set_remote(Some(addr(4000)), Some(nat));
        assert_eq!(l.check(other, 7, later), foreign);
    }

    #[test]
    fn always_moves_only_onto_the_stream_it_has() {
        let t0 = std::time::Instant::now();
        let addr = |port: u16| SocketAddr::new(LOCALHOST, port);
        let (sdp, nat, other) = (addr(1000), addr(2000), addr(3000));
        let pending = SourceCheck::Reject(Rejected::Pending);
        let foreign = SourceCheck::Reject(Rejected::Foreign);
        let late = t0 + Duration::from_secs(600);

        let mut l = Latch::new(RtpLatching::Always, Some(sdp));
        assert_eq!(l.check(sdp, 7, t0), SourceCheck::Accept);
        // Another stream (another SSRC) from elsewhere is never taken, however long it runs.
        for k in 0..10 {
            assert_eq!(l.check(other, 8, late + FRAME * k), foreign);
        }
        // The far end's own stream moving to a new address (its NAT binding changed), even
        // late in the call: while the old address still sends, nothing moves...
        assert_eq!(l.check(sdp, 7, late), SourceCheck::Accept);
        for k in 1..=4 {
            assert_eq!(l.check(nat, 7, late + FRAME * k), foreign);
        }
        // ...once it has been silent for TAKEOVER_SILENCE, three in a row move the replies.
        let moved = late + TAKEOVER_SILENCE;
        assert_eq!(l.check(nat, 7, moved), pending);
        assert_eq!(l.check(nat, 7, moved + FRAME), pending);
        assert_eq!(l.check(nat, 7, moved + FRAME * 2), SourceCheck::Latch(nat));
        assert_eq!(l.latched, Some(nat));
        assert_eq!(l.check(nat, 7, moved + FRAME * 3), SourceCheck::Accept);
        // And back to the SDP address later: no latching needed any more.
        let back = moved + Duration::from_secs(10);
        assert_eq!(l.check(sdp, 7, back), pending);
        assert_eq!(l.check(sdp, 7, back + FRAME), pending);
        assert_eq!(l.check(sdp, 7, back + FRAME * 2), SourceCheck::Latch(sdp));
        assert_eq!(l.latched, None);
        // The expected source changes its SSRC: the old one no longer moves anything.
        let t = back + Duration::from_secs(10);
        assert_eq!(l.check(sdp, 9, t), SourceCheck::Accept);
        let t = t + Duration::from_secs(1);
        for k in 0..5 {
            assert_eq!(l.check(nat, 7, t + FRAME * k), foreign);
        }
        // A packet from the expected source, or a foreign one, breaks a run.
        assert_eq!(l.check(nat, 9, t), pending);
        assert_eq!(l.check(nat, 9, t), pending);
        assert_eq!(l.check(nat, 7, t), foreign);
        assert_eq!(l.check(nat, 9, t), pending);
        assert_eq!(l.check(nat, 9, t), pending);
        assert_eq!(l.check(sdp, 9, t), SourceCheck::Accept);
        let t = t + TAKEOVER_SILENCE;
        assert_eq!(l.check(nat, 9, t), pending);
        assert_eq!(l.latched, None);
    }

    #[test]
    fn drop_log_writes_one_line_per_interval() {
        let t0 = std::time::Instant::now();
        let from = SocketAddr::new(LOCALHOST, 2000);
        let mut log = DropLog::default();
        log.dropped(from, Rejected::Pending, t0);
        log.dropped(from, Rejected::NoRemote, t0);
        assert_eq!(
            (log.unlogged, log.next),
            (0, None),
            "normal drops are not warned about"
        );
        log.dropped(from, Rejected::Foreign, t0);
        assert_eq!((log.unlogged, log.next), (0, Some(t0 + DROP_LOG_INTERVAL)));
        for k in 1..500 {
            log.dropped(from, Rejected::Foreign, t0 + FRAME * k);
        }
        assert_eq!(log.unlogged, 499, "summed up, not written");
        log.dropped(from, Rejected::Foreign, t0 + DROP_LOG_INTERVAL);
        assert_eq!(log.unlogged, 0);
        assert_eq!(log.next, Some(t0 + 2 * DROP_LOG_INTERVAL));
    }

    #[tokio::test]
    async fn dropping_the_handle_releases_the_port() {
        let pool = test_pool();
        let (session, mut events) = start(&pool, Codec::Pcma, None);
        assert_eq!(pool.in_use(), 1);
        drop(session);
        // The tasks end at their next wake-up; the event channel closes when both have.
        let closed = tokio::time::timeout(Duration::from_secs(2), events.recv()).await;
        assert_eq!(closed.expect("tasks end"), None);
        let deadline = Instant::now() + Duration::from_secs(2);
        while pool.in_use() != 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(pool.in_use(), 0);
    }

    #[test]
    fn handle_and_events_can_move_between_tasks() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<MediaSession>();
        assert_send_sync::<mpsc::Receiver<MediaEvent>>();
        assert_send_sync::<RtpStats>();
    }

    #[test]
    fn stats_serialize_for_the_attempt_record() {
        let stats = RtpStats {
            latched_to: Some(SocketAddr::new(LOCALHOST, 4000)),
            rtt_ms: Some(12.5),
            ..RtpStats::default()
        };
        let json = serde_json::to_value(stats).expect("serializes");
        assert_eq!(json["latched_to"], "127.0.0.1:4000");
        assert_eq!(json["rtt_ms"], 12.5);
        assert_eq!(json["jitter_buffer"]["late"], 0);
        assert_eq!(json["rtcp"]["remote_jitter_ms"], serde_json::Value::Null);
    }

    #[test]
    fn start_outside_a_runtime_is_an_error() {
        let pool = test_pool();
        let err = MediaSession::start(pool.bind().expect("port"), Codec::Pcmu, None)
            .expect_err("no runtime");
        assert!(matches!(err, MediaError::NoRuntime));
        assert_eq!(
            pool.in_use(),
            0,
            "the lease went back with the dropped socket"
        );
    }

    #[test]
    fn pacer_keeps_the_grid_and_skips_after_a_stall() {
        let t0 = std::time::Instant::now();
        let mut p = Pacer::new(t0);
        assert_eq!(p.due(), t0);
        assert_eq!(p.skip_if_stalled(t0 + Duration::from_millis(1)), 0);
        p.advance();
        assert_eq!(p.due(), t0 + FRAME);
        // Woken late by a few ms: no drift, the next one is still on the 20 ms grid.
        assert_eq!(p.skip_if_stalled(t0 + Duration::from_millis(27)), 0);
        p.advance();
        assert_eq!(p.due(), t0 + 2 * FRAME);
        // Late by three frames: catch up by sending back to back.
        assert_eq!(p.skip_if_stalled(t0 + Duration::from_millis(40 + 65)), 0);
        p.advance();
        assert_eq!(p.due(), t0 + 3 * FRAME);
        // A 200 ms stall: skip the ten missed frames rather than burst them.
        let now = t0 + Duration::from_millis(60 + 205);
        assert_eq!(p.skip_if_stalled(now), 10);
        assert_eq!(p.due(), t0 + 13 * FRAME);
        assert!(p.due() <= now && now < p.due() + FRAME);
        p.advance();
        assert_eq!(p.due(), t0 + 14 * FRAME);
    }

    #[test]
    fn sender_counts_packets_that_miss_their_slot() {
        // A bare socket to send to; the sender is driven with a made-up clock.
        let sink = std::net::UdpSocket::bind((LOCALHOST, 0)).expect("bind");
        let socket = std::net::UdpSocket::bind((LOCALHOST, 0)).expect("bind");
        let remote = sink.local_addr().expect("addr");
        let mut control = Control {
            remote: Some(remote),
            sdp_remote: Some(remote),
            latched: None,
            codec: Codec::Pcmu,
            queue: PlaybackQueue::default(),
            playing: false,
            sent_ref: None,
            dtmf_pt: None,
            dtmf_tx: Rfc4733Sender::new(),
            detect_tones: false,
            generation: 0,
            srtp: None,
        };
        let stats = Counters::default();
        let events = Events::new(None);
        let mut tx = Sender::new(1, false);
        let t0 = std::time::Instant::now();
        let mut poll = |tx: &mut Sender, ms: u64| {
            tx.poll(
                t0 + Duration::from_millis(ms),
                &mut control,
                false,
                &socket,
                &stats,
                &events,
            )
            .1
        };
        // On time, then a few ms late (the tick's granularity): not late.
        assert_eq!(poll(&mut tx, 0), 1);
        assert_eq!(poll(&mut tx, 27), 1);
        assert_eq!(tx.late, 0);
        // Woken at 65 ms: the packet due at 40 ms missed its slot, the one due at 60 did not.
        assert_eq!(poll(&mut tx, 65), 2);
        assert_eq!(tx.late, 1);
        // A 200 ms stall: the skipped frames count as late too.
        assert_eq!(poll(&mut tx, 285), 1);
        assert_eq!(tx.late, 1 + 10);
    }
}
