//! One call's RTP and RTCP: a thin tokio driver around the sans-IO [`rtp`](super::rtp),
//! [`jitter`](super::jitter), [`rtcp`](super::rtcp) and [`g711`](super::g711) code.
//!
//! [`MediaSession::start`] spawns two tasks on the leased port pair (RTP on the even port, RTCP
//! on the odd one after it).
//!
//! * The **receiver** starts at once (early media is caught). Each RTP packet is checked against
//!   the expected source (symmetric RTP: once [`LATCH_PACKETS`] packets in a row come from
//!   another address than the SDP one — a NAT — replies go there; with
//!   [`MediaOptions::strict_source`] such packets are dropped and counted instead), fed to the
//!   RTCP statistics, and audio (G.711, or G.722 with the `g722` feature, decoded through a
//!   stateful [`FrameDecoder`] to 8 kHz) or comfort noise goes into the jitter buffer; telephone-events
//!   and other payload types are noted, not decoded. A playout tick pops one frame per 20 ms
//!   from the buffer and sends it as [`MediaEvent::Frame`] with `try_send` on a bounded channel:
//!   a slow consumer loses frames (counted in [`RtpStats::dropped_frames`]), it never stalls the
//!   socket. Frames that no packet filled in time are concealed and say so
//!   ([`AudioFrame::concealed`]). RTCP is read on the RTCP port and, multiplexed (RFC 5761), on
//!   the RTP port; reports go out every few seconds to where the far end's RTCP comes from
//!   (else the RTP destination's port + 1, or the RTP port itself once the far end
//!   multiplexes), and a BYE when the session stops.
//! * The **sender** runs once a remote address is known: packet *n* is due at
//!   `start + n × 20 ms` on the monotonic clock, so pacing never drifts; after a stall of more
//!   than a few frames it skips ahead (advancing the RTP timestamp) instead of bursting. It
//!   sends queued PCM, or G.711 silence when nothing is queued, so the stream is continuous.
//!
//! The tasks hold no call state beyond this: the handle talks to them through a small
//! mutex-guarded queue and atomics, never blocks on the network, and both tasks end (releasing
//! the ports) when the handle is stopped or dropped. Nothing received from the network can make
//! them panic, and nothing on the per-packet path allocates except each frame's own samples.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use tokio::net::UdpSocket;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::codec::{FrameDecoder, FrameEncoder};
use super::dtmf::{
    inband_samples, DtmfDigit, DtmfError, InbandDtmfDetector, Rfc4733Receiver, Rfc4733Sender,
};
use super::g711::Codec;
use super::jitter::{
    Concealer, FrameKind, JitterBuffer, JitterConfig, JitterStats, COMFORT_NOISE_PT,
};
use super::ports::{PortLease, RtpSocket};
use super::rtcp::{RtcpConfig, RtcpState, RtcpStats, DEFAULT_INTERVAL};
use super::rtp::{is_rtcp, RtpPacket, RtpSender, RTP_HEADER_LEN};
use super::tones::{ToneDetectors, ToneEvent};
use super::{MediaError, FRAME_MS, FRAME_SAMPLES};

/// Frames the event channel holds by default before the receiver starts dropping them (10 s).
pub const EVENT_CHANNEL_CAPACITY: usize = 500;
/// Packets in a row from one other address before replies are sent there (symmetric RTP).
pub const LATCH_PACKETS: u32 = 3;
/// How late (in frames) the sender may fall before it skips ahead instead of catching up.
const STALL_FRAMES: u64 = 3;
/// Largest datagram read; longer ones are truncated by the kernel and then fail to parse.
const RECV_BUFFER_BYTES: usize = 4096;
/// Datagrams read without waiting before a playout tick, so a late wake-up finds them queued.
const DRAIN_LIMIT: usize = 64;
const FRAME: Duration = Duration::from_millis(FRAME_MS);

/// How a session receives; [`MediaOptions::default`] is what [`MediaSession::start`] uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaOptions {
    /// The jitter buffer's delay never goes below this (ms)...
    pub jitter_min_ms: u32,
    /// ...nor above this (ms)...
    pub jitter_max_ms: u32,
    /// ...and starts here until the jitter has been measured (ms).
    pub jitter_initial_ms: u32,
    /// Drop RTP from any address but the remote one, instead of latching onto it.
    pub strict_source: bool,
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
    /// 20-200 ms of jitter buffer starting at 40 ms, latching on, RTCP every 5 s, 10 s of frames.
    fn default() -> Self {
        MediaOptions {
            jitter_min_ms: 20,
            jitter_max_ms: 200,
            jitter_initial_ms: 40,
            strict_source: false,
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
    /// RTP packets sent (silence included).
    pub sent: u64,
    /// Valid RTP packets received from an accepted source, whatever their payload type (RTCP
    /// not included).
    pub received: u64,
    /// Frames lost because the event channel was full.
    pub dropped_frames: u64,
    /// Datagrams on the RTP port that were neither RTP nor RTCP.
    pub invalid: u64,
    /// RTP (and RTCP) packets dropped because they came from another address than the remote
    /// one while [`MediaOptions::strict_source`] is on.
    pub rejected_source: u64,
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
}

impl Counters {
    fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// What the handle tells the sender (read once per packet), and where the sender is.
#[derive(Debug)]
struct Control {
    /// Where to send; `None` stops sending (hold, or not answered yet).
    remote: Option<SocketAddr>,
    /// The last address the SDP gave: what latching compares sources with.
    sdp_remote: Option<SocketAddr>,
    /// Where the far end really sends from, when it is not `sdp_remote` (set by the receiver).
    latched: Option<SocketAddr>,
    codec: Codec,
    queue: VecDeque<i16>,
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
}

impl Control {
    fn destination(&self) -> Option<SocketAddr> {
        self.remote.map(|r| self.latched.unwrap_or(r))
    }
}

/// What the receiver publishes for [`MediaSession::stats`].
#[derive(Debug, Default, Clone, Copy)]
struct Published {
    jitter: JitterStats,
    rtcp: RtcpStats,
    latched_to: Option<SocketAddr>,
}

#[derive(Debug)]
struct Shared {
    control: Mutex<Control>,
    /// Bumped on every `set_remote`, so the receiver re-reads the addresses.
    remote_gen: AtomicU64,
    /// Wakes an idle sender when a remote address arrives.
    wake: Notify,
    stats: Counters,
    published: Mutex<Published>,
}

impl Shared {
    fn control(&self) -> MutexGuard<'_, Control> {
        // Control holds plain values that stay consistent even if a holder panicked.
        self.control.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn published(&self) -> MutexGuard<'_, Published> {
        self.published.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The sockets and their port lease, dropped together when the last task ends.
#[derive(Debug)]
struct Io {
    socket: UdpSocket,
    rtcp: Option<UdpSocket>,
    // Declared after the sockets: the ports go back to the pool once both are closed.
    _lease: PortLease,
}

/// Handle to one call's RTP; see the module documentation.
#[derive(Debug)]
pub struct MediaSession {
    shared: Arc<Shared>,
    cancel: CancellationToken,
    port: u16,
    tasks: Vec<JoinHandle<()>>,
}

impl MediaSession {
    /// Starts receiving at once (so early media is caught) and sending paced 20 ms packets to
    /// `remote` once it is known, with [`MediaOptions::default`]. Must be called inside a tokio
    /// runtime.
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
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| MediaError::NoRuntime)?;
        let port = socket.port;
        let (std_socket, mut lease) = socket.into_parts();
        let rtcp_socket = match lease.take_rtcp_socket() {
            Some(s) => {
                s.set_nonblocking(true)?;
                Some(UdpSocket::from_std(s)?)
            }
            None => None,
        };
        std_socket.set_nonblocking(true)?;
        let socket = UdpSocket::from_std(std_socket)?;
        let io = Arc::new(Io {
            socket,
            rtcp: rtcp_socket,
            _lease: lease,
        });
        let shared = Arc::new(Shared {
            control: Mutex::new(Control {
                remote,
                sdp_remote: remote,
                latched: None,
                codec,
                queue: VecDeque::new(),
                playing: false,
                sent_ref: None,
                dtmf_pt: None,
                dtmf_tx: Rfc4733Sender::new(),
                detect_tones: false,
            }),
            remote_gen: AtomicU64::new(0),
            wake: Notify::new(),
            stats: Counters::default(),
            published: Mutex::new(Published::default()),
        });
        let ssrc: u32 = rand::random();
        let receiver = Receiver::new(&options, ssrc, remote);
        let cancel = CancellationToken::new();
        let (events_tx, events_rx) = mpsc::channel(options.event_capacity.max(1));
        let recv = runtime.spawn(recv_loop(
            Arc::clone(&io),
            Arc::clone(&shared),
            events_tx.clone(),
            cancel.clone(),
            receiver,
        ));
        let send = runtime.spawn(send_loop(
            io,
            Arc::clone(&shared),
            events_tx,
            cancel.clone(),
            ssrc,
            options.tap_sent,
        ));
        Ok((
            MediaSession {
                shared,
                cancel,
                port,
                tasks: vec![recv, send],
            },
            events_rx,
        ))
    }

    /// The local RTP port (to put in SDP); RTCP is on the port after it.
    pub fn local_port(&self) -> u16 {
        self.port
    }

    /// Where packets go now: the remote address, or the address latched onto in its place;
    /// `None` while on hold or before the answer.
    pub fn remote(&self) -> Option<SocketAddr> {
        self.shared.control().destination()
    }

    /// `None` stops sending (hold, inactive); `Some` (re)starts sending to that address. After
    /// a pause the RTP timestamp jumps by the time that passed and the marker bit is set. A new
    /// address forgets any latching.
    pub fn set_remote(&self, remote: Option<SocketAddr>) {
        {
            let mut control = self.shared.control();
            if let Some(addr) = remote {
                if control.sdp_remote != Some(addr) {
                    control.sdp_remote = Some(addr);
                    control.latched = None;
                }
            }
            control.remote = remote;
        }
        self.shared.remote_gen.fetch_add(1, Ordering::Release);
        if remote.is_some() {
            self.shared.wake.notify_one();
        }
    }

    /// The codec outgoing audio is encoded with (incoming packets are decoded by their own
    /// payload type).
    pub fn set_codec(&self, codec: Codec) {
        self.shared.control().codec = codec;
    }

    /// The far end's telephone-event payload type from SDP (`None`: not negotiated, so digits
    /// we send go in-band and digits we receive are detected in the audio).
    pub fn set_dtmf_pt(&self, pt: Option<u8>) {
        self.shared.control().dtmf_pt = pt;
        self.shared.remote_gen.fetch_add(1, Ordering::Release);
    }

    /// Sends digits: RFC 4733 events when telephone-event was negotiated, otherwise tones in
    /// the audio queue. Each digit lasts `duration_ms` (40–8000).
    pub fn send_dtmf(&self, digits: &str, duration_ms: u32) -> Result<(), DtmfError> {
        let mut control = self.shared.control();
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

    /// Turns the beep/SIT/fax detectors on or off (on once a call is answered: ringback and busy
    /// tones are single tones too).
    pub fn set_tone_detection(&self, on: bool) {
        self.shared.control().detect_tones = on;
        self.shared.remote_gen.fetch_add(1, Ordering::Release);
    }

    /// Queues 8 kHz mono PCM after whatever is already queued; [`MediaEvent::PlaybackFinished`]
    /// follows once the queue has drained (one event however many `play` calls fed it).
    pub fn play(&self, samples: Vec<i16>) {
        let mut control = self.shared.control();
        control.queue.extend(samples);
        control.playing = true;
    }

    /// Queues one 20 ms frame of live audio (a bridge); no event when it has been sent.
    pub fn send_frame(&self, samples: &[i16]) {
        self.shared.control().queue.extend(samples.iter().copied());
    }

    /// Drops everything queued (barge-in, a media stream's `clear`).
    pub fn clear_playback(&self) {
        self.shared.control().queue.clear();
    }

    /// Samples queued and not sent yet.
    pub fn queued_samples(&self) -> usize {
        self.shared.control().queue.len()
    }

    /// Counters now (the receiver's figures are at most one packet or tick old).
    pub fn stats(&self) -> RtpStats {
        let c = &self.shared.stats;
        let published = *self.shared.published();
        RtpStats {
            sent: c.sent.load(Ordering::Relaxed),
            received: c.received.load(Ordering::Relaxed),
            dropped_frames: c.dropped_frames.load(Ordering::Relaxed),
            invalid: c.invalid.load(Ordering::Relaxed),
            rejected_source: c.rejected_source.load(Ordering::Relaxed),
            lost: published.rtcp.packets_lost,
            jitter_ms: published.rtcp.jitter_ms,
            rtt_ms: published.rtcp.rtt_ms,
            latched_to: published.latched_to,
            jitter_buffer: published.jitter,
            rtcp: published.rtcp,
        }
    }

    /// Stops both directions (an RTCP BYE goes out), waits for the tasks to end (the ports are
    /// back in the pool when this returns) and gives the final counters.
    pub async fn stop(mut self) -> RtpStats {
        self.cancel.cancel();
        for task in self.tasks.drain(..) {
            if let Err(e) = task.await {
                tracing::warn!(error = %e, "media task ended abnormally");
            }
        }
        self.stats()
    }
}

impl Drop for MediaSession {
    fn drop(&mut self) {
        // The tasks see this at their next wake-up and release the sockets and ports.
        self.cancel.cancel();
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

async fn send_loop(
    io: Arc<Io>,
    shared: Arc<Shared>,
    events: mpsc::Sender<MediaEvent>,
    cancel: CancellationToken,
    ssrc: u32,
    tap_sent: bool,
) {
    let mut rtp = RtpSender::new(ssrc, rand::random(), rand::random());
    // G.722 keeps state from frame to frame: one encoder for the stream.
    let mut encoder = FrameEncoder::new();
    let mut frame = [0i16; FRAME_SAMPLES];
    let mut payload = Vec::with_capacity(FRAME_SAMPLES);
    let mut packet = Vec::with_capacity(RTP_HEADER_LEN + FRAME_SAMPLES);
    let mut finished_pending = false;
    // When the last packet sent was due: after a hold the timestamp jumps by the pause.
    let mut last_due: Option<Instant> = None;

    loop {
        // Idle until there is somewhere to send.
        while shared.control().remote.is_none() {
            tokio::select! {
                biased;
                _ = cancel.cancelled() => return,
                _ = shared.wake.notified() => {}
            }
        }
        let now = Instant::now();
        if let Some(last) = last_due {
            let paused_frames =
                (now.saturating_duration_since(last).as_millis() / FRAME_MS as u128) as u64;
            rtp.skip(
                paused_frames
                    .saturating_sub(1)
                    .saturating_mul(FRAME_SAMPLES as u64) as u32,
            );
        }
        let mut pacer = Pacer::new(now);
        let mut marker = true;

        loop {
            tokio::select! {
                biased;
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep_until(pacer.due()) => {}
            }
            let now = Instant::now();
            let skipped = pacer.skip_if_stalled(now);
            if skipped > 0 {
                tracing::debug!(frames = skipped, "RTP sender stalled, skipping ahead");
                rtp.skip((skipped * FRAME_SAMPLES as u64) as u32);
            }

            let (destination, codec, finished, event) = {
                let mut control = shared.control();
                let Some(destination) = control.destination() else {
                    break; // on hold: back to idle
                };
                let event = match control.dtmf_pt {
                    Some(pt) => control.dtmf_tx.next_packet().map(|p| (pt, p)),
                    None => None,
                };
                if let Some((_, ev)) = &event {
                    control.sent_ref =
                        Some((rtp.next_timestamp().wrapping_sub(ev.timestamp_offset), now));
                    (destination, control.codec, false, event)
                } else {
                    let n = control.queue.len().min(FRAME_SAMPLES);
                    for (dst, src) in frame.iter_mut().zip(control.queue.drain(..n)) {
                        *dst = src;
                    }
                    frame[n..].fill(0);
                    let finished = control.playing && control.queue.is_empty();
                    if finished {
                        control.playing = false;
                    }
                    control.sent_ref = Some((rtp.next_timestamp(), now));
                    (destination, control.codec, finished, None)
                }
            };

            payload.clear();
            if let Some((pt, ev)) = event {
                // RFC 4733: every packet of an event carries the event's start timestamp.
                let event_ts = rtp.next_timestamp().wrapping_sub(ev.timestamp_offset);
                payload.extend_from_slice(&ev.payload);
                rtp.packet(&mut packet, pt, &payload, FRAME_SAMPLES as u32, ev.marker);
                if let Some(ts) = packet.get_mut(4..8) {
                    ts.copy_from_slice(&event_ts.to_be_bytes());
                }
            } else {
                if tap_sent {
                    // Dropped when the channel is full: a recording gap, never a stall.
                    let _ = events.try_send(MediaEvent::Sent(frame.to_vec()));
                }
                encoder.encode(codec, &frame, &mut payload);
                rtp.packet(
                    &mut packet,
                    codec.payload_type(),
                    &payload,
                    FRAME_SAMPLES as u32,
                    marker,
                );
            }
            let result = tokio::select! {
                biased;
                _ = cancel.cancelled() => return,
                r = io.socket.send_to(&packet, destination) => r,
            };
            match result {
                Ok(_) => {
                    Counters::bump(&shared.stats.sent);
                    shared
                        .stats
                        .sent_octets
                        .fetch_add(payload.len() as u64, Ordering::Relaxed);
                    marker = false;
                }
                Err(e) => tracing::debug!(error = %e, %destination, "RTP send failed"),
            }
            last_due = Some(pacer.due());
            pacer.advance();

            finished_pending |= finished;
            if finished_pending {
                match events.try_send(MediaEvent::PlaybackFinished) {
                    Ok(()) | Err(TrySendError::Closed(_)) => finished_pending = false,
                    Err(TrySendError::Full(_)) => {} // retried on the next packet
                }
            }
        }
    }
}

/// Whether a packet's source is accepted, and where replies go (symmetric RTP). Sans-IO.
#[derive(Debug, Clone)]
struct Latch {
    strict: bool,
    /// The address the SDP gave (the last one, kept through a hold).
    remote: Option<SocketAddr>,
    /// Where replies go instead of `remote`.
    latched: Option<SocketAddr>,
    /// Another address packets came from, and how many in a row.
    candidate: Option<(SocketAddr, u32)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SourceCheck {
    Accept,
    /// Accept, and from now on send to this address.
    Latch(SocketAddr),
    Reject,
}

impl Latch {
    fn new(strict: bool, remote: Option<SocketAddr>) -> Self {
        Latch {
            strict,
            remote,
            latched: None,
            candidate: None,
        }
    }

    /// The SDP address changed (or was set again): forget latching onto an older one.
    fn set_remote(&mut self, remote: Option<SocketAddr>, latched: Option<SocketAddr>) {
        if self.remote != remote {
            self.candidate = None;
        }
        self.remote = remote;
        self.latched = latched;
    }

    /// Checks the source of one valid RTP packet.
    fn check(&mut self, from: SocketAddr) -> SourceCheck {
        // Nothing negotiated yet: early media from wherever it comes.
        let Some(remote) = self.remote else {
            return SourceCheck::Accept;
        };
        if from == self.latched.unwrap_or(remote) {
            self.candidate = None;
            return SourceCheck::Accept;
        }
        if self.strict {
            return SourceCheck::Reject;
        }
        let count = match self.candidate {
            Some((addr, n)) if addr == from => n + 1,
            _ => 1,
        };
        if count < LATCH_PACKETS {
            self.candidate = Some((from, count));
            return SourceCheck::Accept;
        }
        self.candidate = None;
        self.latched = (from != remote).then_some(from);
        SourceCheck::Latch(from)
    }
}

/// Everything the receive task owns: the sans-IO cores and where replies go.
#[derive(Debug)]
struct Receiver {
    jitter: JitterBuffer,
    decoder: FrameDecoder,
    concealer: Concealer,
    rtcp: RtcpState,
    rtcp_enabled: bool,
    latch: Latch,
    /// The `remote_gen` these addresses were read at.
    remote_gen: u64,
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
            rtcp: RtcpState::new(cfg, Instant::now().into_std(), SystemTime::now()),
            rtcp_enabled: options.rtcp,
            latch: Latch::new(options.strict_source, remote),
            remote_gen: 0,
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
        }
    }

    /// Re-reads the addresses after a `set_remote`.
    fn refresh_remote(&mut self, shared: &Shared) {
        let generation = shared.remote_gen.load(Ordering::Acquire);
        if generation == self.remote_gen {
            return;
        }
        self.remote_gen = generation;
        let control = shared.control();
        self.latch.set_remote(control.sdp_remote, control.latched);
        if self.remote != control.remote {
            self.rtcp_peer = None;
        }
        self.remote = control.remote;
        self.dtmf_pt = control.dtmf_pt;
        self.detect_tones = control.detect_tones;
    }

    /// One datagram on the RTP port.
    fn on_rtp_port(
        &mut self,
        datagram: &[u8],
        from: SocketAddr,
        now: Instant,
        shared: &Shared,
        events: &mpsc::Sender<MediaEvent>,
    ) {
        self.refresh_remote(shared);
        if is_rtcp(datagram) {
            self.on_rtcp(datagram, from, now, true, shared);
            return;
        }
        let packet = match RtpPacket::try_parse(datagram) {
            Ok(p) => p,
            Err(e) => {
                Counters::bump(&shared.stats.invalid);
                tracing::trace!(error = %e, "invalid datagram on RTP port");
                return;
            }
        };
        match self.latch.check(from) {
            SourceCheck::Accept => {}
            SourceCheck::Reject => {
                Counters::bump(&shared.stats.rejected_source);
                tracing::trace!(%from, "RTP from an unexpected source dropped (strict)");
                return;
            }
            SourceCheck::Latch(to) => {
                tracing::info!(%to, "RTP source differs from the SDP address: latched onto it");
                // Our RTCP follows (to the latched port + 1, unless the far end's RTCP has
                // shown where it comes from).
                shared.control().latched = self.latch.latched;
            }
        }
        Counters::bump(&shared.stats.received);
        let arrival = now.into_std();
        self.rtcp
            .on_rtp_received(packet.ssrc, packet.sequence, packet.timestamp, arrival);
        let audio = packet.payload_type == COMFORT_NOISE_PT
            || (Codec::from_payload_type(packet.payload_type).is_some()
                && !packet.payload.is_empty());
        if audio {
            self.jitter.push(&packet, arrival);
        } else {
            // Telephone-events and anything else: their sequence numbers are not a gap.
            self.jitter.note_foreign(&packet);
            // The negotiated telephone-event type, or (peers do this) another dynamic type
            // carrying a 4-byte event: we negotiate no other codec that could be.
            let pt = packet.payload_type;
            let is_event = Some(pt) == self.dtmf_pt
                || (self.dtmf_pt.is_some()
                    && (96..=127).contains(&pt)
                    && packet.payload.len() == 4);
            if is_event {
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
                        send_event(events, MediaEvent::Dtmf(digit), shared);
                    }
                }
            }
        }
    }

    /// One RTCP datagram (on the RTCP port, or multiplexed on the RTP port).
    fn on_rtcp(
        &mut self,
        datagram: &[u8],
        from: SocketAddr,
        now: Instant,
        muxed: bool,
        shared: &Shared,
    ) {
        if !self.rtcp_enabled {
            return;
        }
        if self.latch.strict && self.latch.remote.is_some_and(|r| r.ip() != from.ip()) {
            Counters::bump(&shared.stats.rejected_source);
            return;
        }
        match self.rtcp.on_rtcp_received(datagram, now.into_std()) {
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

    /// Sends what is in `self.report` (best effort: a full socket buffer drops it).
    fn send_report(&self, io: &Io, last_known: bool) {
        let Some((via_rtp, to)) = self.rtcp_destination(last_known) else {
            return;
        };
        let socket = match (&io.rtcp, via_rtp) {
            (Some(rtcp), false) => rtcp,
            _ => &io.socket,
        };
        if let Err(e) = socket.try_send_to(&self.report, to) {
            tracing::debug!(error = %e, %to, "RTCP send failed");
        }
    }

    /// Sends an RTCP report if one is due.
    fn report_if_due(&mut self, io: &Io, shared: &Shared) {
        let now = Instant::now();
        let sent_ref = shared.control().sent_ref;
        self.rtcp.set_sent_totals(
            shared.stats.sent.load(Ordering::Relaxed),
            shared.stats.sent_octets.load(Ordering::Relaxed),
            sent_ref.map(|(ts, at)| (ts, at.into_std())),
        );
        self.report.clear();
        if self.rtcp.poll_report(now.into_std(), &mut self.report) {
            self.send_report(io, false);
        }
    }

    /// The session is ending: a last report and BYE.
    fn say_bye(&mut self, io: &Io, shared: &Shared) {
        if !self.rtcp_enabled {
            return;
        }
        self.refresh_remote(shared);
        self.report.clear();
        self.rtcp
            .write_bye(Instant::now().into_std(), &mut self.report);
        self.send_report(io, true);
    }

    /// Pops every frame that is due and sends it to the call.
    fn playout(&mut self, now: Instant, events: &mpsc::Sender<MediaEvent>, shared: &Shared) {
        let now_ms = now.saturating_duration_since(self.started).as_millis() as u64;
        while let Some(digit) = self.dtmf_rx.poll(now_ms) {
            if digit.duration_ms > 0 {
                send_event(events, MediaEvent::Dtmf(digit), shared);
            }
        }
        while let Some(frame) = self.jitter.pop(now.into_std()) {
            let len = frame.samples as usize;
            let mut samples = Vec::with_capacity(len.max(frame.payload.len()));
            let codec = Codec::from_payload_type(frame.payload_type);
            let concealed = match (frame.kind, codec) {
                (FrameKind::Audio, Some(codec)) => {
                    self.decoder.decode(codec, frame.payload, &mut samples);
                    self.concealer.observe(&samples);
                    false
                }
                (FrameKind::Comfort, _) => {
                    samples.resize(len, 0);
                    self.concealer.reset();
                    false
                }
                _ => {
                    self.concealer.conceal(&mut samples, len);
                    true
                }
            };
            let at_ms = self.frames_out * FRAME_MS;
            self.frames_out += 1;
            if self.detect_tones {
                for tone in self.tones.process(&samples, at_ms) {
                    send_event(events, MediaEvent::Tone(tone), shared);
                }
            }
            if self.dtmf_pt.is_none() {
                if let Some(digit) = self.inband.push(&samples, at_ms) {
                    send_event(events, MediaEvent::Dtmf(digit), shared);
                }
                while let Some(digit) = self.inband.next_digit() {
                    send_event(events, MediaEvent::Dtmf(digit), shared);
                }
            }
            let frame = AudioFrame {
                samples,
                rtp_timestamp: frame.timestamp,
                payload_type: frame.payload_type,
                concealed,
            };
            match events.try_send(MediaEvent::Frame(frame)) {
                Ok(()) | Err(TrySendError::Closed(_)) => {}
                Err(TrySendError::Full(_)) => Counters::bump(&shared.stats.dropped_frames),
            }
        }
    }

    fn publish(&self, shared: &Shared) {
        let mut p = shared.published();
        p.jitter = self.jitter.stats();
        p.rtcp = self.rtcp.stats();
        p.latched_to = self.latch.latched;
    }
}

/// Reports a control event (a digit, a tone). These are rare and matter: if the channel is full
/// of frames, one is dropped and counted rather than the event.
fn send_event(events: &mpsc::Sender<MediaEvent>, event: MediaEvent, shared: &Shared) {
    match events.try_send(event) {
        Ok(()) | Err(TrySendError::Closed(_)) => {}
        Err(TrySendError::Full(event)) => {
            Counters::bump(&shared.stats.dropped_frames);
            tracing::warn!(?event, "media event channel full: event dropped");
        }
    }
}

/// What woke the receive task.
enum Wake {
    Playout,
    Report,
    Rtp(std::io::Result<(usize, SocketAddr)>),
    Rtcp(std::io::Result<(usize, SocketAddr)>),
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

async fn recv_opt(
    socket: Option<&UdpSocket>,
    buf: &mut [u8],
) -> std::io::Result<(usize, SocketAddr)> {
    match socket {
        Some(s) => s.recv_from(buf).await,
        None => std::future::pending().await,
    }
}

/// True for errors that only report an earlier send's ICMP error: not fatal.
fn is_transient(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionRefused
    )
}

async fn recv_loop(
    io: Arc<Io>,
    shared: Arc<Shared>,
    events: mpsc::Sender<MediaEvent>,
    cancel: CancellationToken,
    mut rx: Receiver,
) {
    let mut buf = vec![0u8; RECV_BUFFER_BYTES];
    let mut rtcp_buf = vec![0u8; RECV_BUFFER_BYTES];
    loop {
        let playout_at = rx.jitter.next_due().map(Instant::from_std);
        let report_at = rx
            .rtcp_enabled
            .then(|| Instant::from_std(rx.rtcp.next_report_at()));
        // Timers first: a flood of packets must not starve the playout.
        let wake = tokio::select! {
            biased;
            _ = cancel.cancelled() => break,
            _ = sleep_until_opt(playout_at) => Wake::Playout,
            _ = sleep_until_opt(report_at) => Wake::Report,
            r = io.socket.recv_from(&mut buf) => Wake::Rtp(r),
            r = recv_opt(io.rtcp.as_ref(), &mut rtcp_buf), if rx.rtcp_enabled => Wake::Rtcp(r),
        };
        let failed = match wake {
            Wake::Playout => {
                // Read what is queued first, so a late wake-up does not make packets late.
                for _ in 0..DRAIN_LIMIT {
                    match io.socket.try_recv_from(&mut buf) {
                        Ok((len, from)) => {
                            let datagram = buf.get(..len).unwrap_or(&[]);
                            rx.on_rtp_port(datagram, from, Instant::now(), &shared, &events);
                        }
                        Err(_) => break,
                    }
                }
                rx.playout(Instant::now(), &events, &shared);
                None
            }
            Wake::Report => {
                rx.report_if_due(&io, &shared);
                None
            }
            Wake::Rtp(Ok((len, from))) => {
                let datagram = buf.get(..len).unwrap_or(&[]);
                rx.on_rtp_port(datagram, from, Instant::now(), &shared, &events);
                None
            }
            Wake::Rtcp(Ok((len, from))) => {
                let datagram = rtcp_buf.get(..len).unwrap_or(&[]);
                rx.on_rtcp(datagram, from, Instant::now(), false, &shared);
                None
            }
            Wake::Rtp(Err(e)) | Wake::Rtcp(Err(e)) if is_transient(&e) => None,
            Wake::Rtp(Err(e)) | Wake::Rtcp(Err(e)) => Some(e),
        };
        rx.publish(&shared);
        if let Some(e) = failed {
            tracing::warn!(error = %e, "RTP/RTCP receive failed");
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tokio::time::sleep(FRAME) => {}
            }
        }
    }
    rx.say_bye(&io, &shared);
    rx.publish(&shared);
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

    const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    /// A pool of its own for each test; ports taken by anyone else are skipped.
    fn test_pool() -> PortPool {
        let base = rand::random_range(30_000u16..39_000) & !1;
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
        a.play(signal.clone());

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
        let (session, mut events) = start(&pool, Codec::Pcmu, None);
        let (raw, _) = raw_socket().await;
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
                stats.sent,
                stats.received,
                stats.dropped_frames,
                stats.invalid
            ),
            (0, 2, 0, 2),
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
    async fn impaired_stream_still_gives_one_frame_per_20_ms() {
        let pool = test_pool();
        let options = MediaOptions {
            jitter_min_ms: 60,
            jitter_initial_ms: 60,
            ..quiet()
        };
        let (session, mut events) = start_with(&pool, Codec::Pcmu, None, options);
        let (raw, _) = raw_socket().await;
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
        let (session, mut events) = start_with(&pool, Codec::Pcmu, None, options);
        let (raw, _) = raw_socket().await;
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
        for strict in [false, true] {
            let pool = test_pool();
            let (sdp, sdp_addr) = raw_socket().await; // what the SDP said
            let (real, real_addr) = raw_socket().await; // where the peer really sends from
            let real = Arc::new(real);
            let options = MediaOptions {
                strict_source: strict,
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
            if strict {
                assert!(at_real.is_empty(), "strict: nothing to the other address");
                assert!(
                    at_sdp.len() >= 5,
                    "strict: still sending to the SDP address"
                );
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
                    "{} packets after latching",
                    at_real.len()
                );
                assert!(
                    at_sdp.is_empty(),
                    "{} packets still to the SDP address",
                    at_sdp.len()
                );
                assert_eq!(
                    (stats.received, stats.rejected_source),
                    (30, 0),
                    "{stats:?}"
                );
                assert_eq!(stats.latched_to, Some(real_addr));
                assert_eq!(session.remote(), Some(real_addr));
                assert_continuous(&at_real);
            }
            session.stop().await;
        }
    }

    #[test]
    fn latch_needs_consecutive_packets_and_strict_never_latches() {
        let addr = |port: u16| SocketAddr::new(LOCALHOST, port);
        let (sdp, nat, other) = (addr(1000), addr(2000), addr(3000));
        let mut l = Latch::new(false, Some(sdp));
        assert_eq!(l.check(sdp), SourceCheck::Accept);
        assert_eq!(l.check(nat), SourceCheck::Accept);
        assert_eq!(l.check(nat), SourceCheck::Accept);
        assert_eq!(l.check(nat), SourceCheck::Latch(nat));
        assert_eq!(l.latched, Some(nat));
        // Interleaved sources never reach three in a row.
        for _ in 0..5 {
            assert_eq!(l.check(other), SourceCheck::Accept);
            assert_eq!(l.check(nat), SourceCheck::Accept);
        }
        assert_eq!(l.latched, Some(nat));
        // Back to the SDP address after three in a row: no latching needed any more.
        for _ in 0..2 {
            assert_eq!(l.check(sdp), SourceCheck::Accept);
        }
        assert_eq!(l.check(sdp), SourceCheck::Latch(sdp));
        assert_eq!(l.latched, None);
        // A new SDP address forgets the old candidate.
        l.check(other);
        l.check(other);
        l.set_remote(Some(addr(4000)), None);
        assert_eq!(l.check(other), SourceCheck::Accept);
        assert_eq!(l.latched, None);

        let mut strict = Latch::new(true, Some(sdp));
        for _ in 0..5 {
            assert_eq!(strict.check(nat), SourceCheck::Reject);
        }
        assert_eq!(strict.check(sdp), SourceCheck::Accept);
        assert_eq!(strict.latched, None);
        // Before any SDP address (early media), anything goes.
        let mut open = Latch::new(true, None);
        assert_eq!(open.check(nat), SourceCheck::Accept);
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
        let t0 = Instant::now();
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
}
