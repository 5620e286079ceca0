//! One call's RTP: a thin tokio driver around the sans-IO [`rtp`](super::rtp) and
//! [`g711`](super::g711) code.
//!
//! [`MediaSession::start`] spawns two tasks on the leased socket. The **receiver** starts at once
//! (early media is caught), ignores RTCP multiplexed on the port, counts malformed datagrams, and
//! turns each G.711 packet into one [`MediaEvent::Frame`] pushed with `try_send` on a bounded
//! channel: a slow consumer loses frames (counted in [`RtpStats::dropped_frames`]), it never
//! stalls the socket. The **sender** runs once a remote address is known: packet *n* is due at
//! `start + n × 20 ms` on the monotonic clock, so pacing never drifts; after a stall of more than
//! a few frames it skips ahead (advancing the RTP timestamp) instead of bursting. It sends queued
//! PCM, or G.711 silence when nothing is queued, so the stream is continuous.
//!
//! The tasks hold no call state beyond this: the handle talks to them through a small mutex-guarded
//! queue and atomics, never blocks on the network, and both tasks end (releasing the port) when
//! the handle is stopped or dropped. Nothing received from the network can make them panic.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::g711::Codec;
use super::ports::{PortLease, RtpSocket};
use super::rtp::{is_rtcp, RtpPacket, RtpSender, RTP_HEADER_LEN};
use super::{MediaError, FRAME_MS, FRAME_SAMPLES};

/// Frames the event channel holds before the receiver starts dropping them (10 s of audio).
pub const EVENT_CHANNEL_CAPACITY: usize = 500;
/// How late (in frames) the sender may fall before it skips ahead instead of catching up.
const STALL_FRAMES: u64 = 3;
/// Largest datagram read; longer ones are truncated by the kernel and then fail to parse.
const RECV_BUFFER_BYTES: usize = 4096;
const FRAME: Duration = Duration::from_millis(FRAME_MS);

/// 20 ms of received audio: 8 kHz mono PCM decoded from one RTP packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioFrame {
    /// Decoded samples: 160 at the usual 20 ms packet time (whatever the packet carried).
    pub samples: Vec<i16>,
    /// RTP timestamp of the packet (8 kHz clock): gaps and reordering show here.
    pub rtp_timestamp: u32,
    /// Payload type the packet carried (0 PCMU, 8 PCMA).
    pub payload_type: u8,
}

/// What a media session reports to its call. The channel closes when the session stops.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaEvent {
    Frame(AudioFrame),
    /// Everything queued with [`MediaSession::play`] has been sent.
    PlaybackFinished,
}

/// Packet counters of one session, for the attempt record.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct RtpStats {
    /// RTP packets sent (silence included).
    pub sent: u64,
    /// Valid RTP packets received, whatever their payload type (RTCP not included).
    pub received: u64,
    /// Decoded frames lost because the event channel was full.
    pub dropped_frames: u64,
    /// Datagrams on the RTP port that were neither RTP nor RTCP.
    pub invalid: u64,
}

#[derive(Debug, Default)]
struct Counters {
    sent: AtomicU64,
    received: AtomicU64,
    dropped_frames: AtomicU64,
    invalid: AtomicU64,
}

impl Counters {
    fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn snapshot(&self) -> RtpStats {
        RtpStats {
            sent: self.sent.load(Ordering::Relaxed),
            received: self.received.load(Ordering::Relaxed),
            dropped_frames: self.dropped_frames.load(Ordering::Relaxed),
            invalid: self.invalid.load(Ordering::Relaxed),
        }
    }
}

/// What the handle tells the sender; read once per packet.
#[derive(Debug)]
struct Control {
    remote: Option<SocketAddr>,
    codec: Codec,
    queue: VecDeque<i16>,
    /// A `play` is outstanding: report [`MediaEvent::PlaybackFinished`] when the queue drains.
    playing: bool,
}

#[derive(Debug)]
struct Shared {
    control: Mutex<Control>,
    /// Wakes an idle sender when a remote address arrives.
    wake: Notify,
    stats: Counters,
}

impl Shared {
    fn control(&self) -> MutexGuard<'_, Control> {
        // Control holds plain values that stay consistent even if a holder panicked.
        self.control.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The socket and its port lease, dropped together when the last task ends.
#[derive(Debug)]
struct Io {
    socket: UdpSocket,
    // Declared after the socket: the port goes back to the pool once the socket is closed.
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
    /// `remote` once it is known. Must be called inside a tokio runtime.
    pub fn start(
        socket: RtpSocket,
        codec: Codec,
        remote: Option<SocketAddr>,
    ) -> Result<(MediaSession, mpsc::Receiver<MediaEvent>), MediaError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| MediaError::NoRuntime)?;
        let port = socket.port;
        let (std_socket, lease) = socket.into_parts();
        std_socket.set_nonblocking(true)?;
        let socket = UdpSocket::from_std(std_socket)?;
        let io = Arc::new(Io {
            socket,
            _lease: lease,
        });
        let shared = Arc::new(Shared {
            control: Mutex::new(Control {
                remote,
                codec,
                queue: VecDeque::new(),
                playing: false,
            }),
            wake: Notify::new(),
            stats: Counters::default(),
        });
        let cancel = CancellationToken::new();
        let (events_tx, events_rx) = mpsc::channel(EVENT_CHANNEL_CAPACITY);
        let recv = runtime.spawn(recv_loop(
            Arc::clone(&io),
            Arc::clone(&shared),
            events_tx.clone(),
            cancel.clone(),
        ));
        let send = runtime.spawn(send_loop(
            io,
            Arc::clone(&shared),
            events_tx,
            cancel.clone(),
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

    /// The local RTP port (to put in SDP).
    pub fn local_port(&self) -> u16 {
        self.port
    }

    /// Where packets go now; `None` while on hold or before the answer.
    pub fn remote(&self) -> Option<SocketAddr> {
        self.shared.control().remote
    }

    /// `None` stops sending (hold, inactive); `Some` (re)starts sending to that address. After
    /// a pause the RTP timestamp jumps by the time that passed and the marker bit is set.
    pub fn set_remote(&self, remote: Option<SocketAddr>) {
        self.shared.control().remote = remote;
        if remote.is_some() {
            self.shared.wake.notify_one();
        }
    }

    /// The codec outgoing audio is encoded with (incoming packets are decoded by their own
    /// payload type).
    pub fn set_codec(&self, codec: Codec) {
        self.shared.control().codec = codec;
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

    pub fn stats(&self) -> RtpStats {
        self.shared.stats.snapshot()
    }

    /// Stops both directions, waits for the tasks to end (the port is back in the pool when this
    /// returns) and gives the final counters.
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
        // The tasks see this at their next wake-up and release the socket and port.
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
) {
    let mut rtp = RtpSender::new(rand::random(), rand::random(), rand::random());
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
            let skipped = pacer.skip_if_stalled(Instant::now());
            if skipped > 0 {
                tracing::debug!(frames = skipped, "RTP sender stalled, skipping ahead");
                rtp.skip((skipped * FRAME_SAMPLES as u64) as u32);
            }

            let (remote, codec, finished) = {
                let mut control = shared.control();
                let Some(remote) = control.remote else {
                    break; // on hold: back to idle
                };
                let n = control.queue.len().min(FRAME_SAMPLES);
                for (dst, src) in frame.iter_mut().zip(control.queue.drain(..n)) {
                    *dst = src;
                }
                frame[n..].fill(0);
                let finished = control.playing && control.queue.is_empty();
                if finished {
                    control.playing = false;
                }
                (remote, control.codec, finished)
            };

            payload.clear();
            codec.encode(&frame, &mut payload);
            rtp.packet(
                &mut packet,
                codec.payload_type(),
                &payload,
                FRAME_SAMPLES as u32,
                marker,
            );
            let result = tokio::select! {
                biased;
                _ = cancel.cancelled() => return,
                r = io.socket.send_to(&packet, remote) => r,
            };
            match result {
                Ok(_) => {
                    Counters::bump(&shared.stats.sent);
                    marker = false;
                }
                Err(e) => tracing::debug!(error = %e, %remote, "RTP send failed"),
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

async fn recv_loop(
    io: Arc<Io>,
    shared: Arc<Shared>,
    events: mpsc::Sender<MediaEvent>,
    cancel: CancellationToken,
) {
    let mut buf = vec![0u8; RECV_BUFFER_BYTES];
    loop {
        let result = tokio::select! {
            biased;
            _ = cancel.cancelled() => return,
            r = io.socket.recv_from(&mut buf) => r,
        };
        match result {
            Ok((len, _from)) => {
                let datagram = buf.get(..len).unwrap_or(&[]);
                handle_datagram(datagram, &shared.stats, &events);
            }
            // An ICMP error from an earlier send (reported on some platforms): not fatal.
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionRefused
                ) => {}
            Err(e) => {
                tracing::warn!(error = %e, "RTP receive failed");
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(FRAME) => {}
                }
            }
        }
    }
}

/// Counts one datagram and turns G.711 packets into frames. Never blocks, never panics.
fn handle_datagram(datagram: &[u8], stats: &Counters, events: &mpsc::Sender<MediaEvent>) {
    if is_rtcp(datagram) {
        return;
    }
    let packet = match RtpPacket::try_parse(datagram) {
        Ok(p) => p,
        Err(e) => {
            Counters::bump(&stats.invalid);
            tracing::trace!(error = %e, "invalid datagram on RTP port");
            return;
        }
    };
    Counters::bump(&stats.received);
    // Telephone-event, comfort noise and anything else: counted, not decoded.
    let Some(codec) = Codec::from_payload_type(packet.payload_type) else {
        return;
    };
    if packet.payload.is_empty() {
        return;
    }
    let mut samples = Vec::with_capacity(packet.payload.len());
    codec.decode(packet.payload, &mut samples);
    let frame = AudioFrame {
        samples,
        rtp_timestamp: packet.timestamp,
        payload_type: packet.payload_type,
    };
    match events.try_send(MediaEvent::Frame(frame)) {
        Ok(()) | Err(TrySendError::Closed(_)) => {}
        Err(TrySendError::Full(_)) => Counters::bump(&stats.dropped_frames),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::ports::PortPool;
    use crate::media::rtp::write_rtp;
    use std::net::{IpAddr, Ipv4Addr};

    const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    /// A pool of its own for each test; ports taken by anyone else are skipped.
    fn test_pool() -> PortPool {
        let base = rand::random_range(30_000u16..39_000) & !1;
        PortPool::new(LOCALHOST, base, base + 63)
    }

    fn start(
        pool: &PortPool,
        codec: Codec,
        remote: Option<SocketAddr>,
    ) -> (MediaSession, mpsc::Receiver<MediaEvent>) {
        MediaSession::start(pool.bind().expect("free RTP port"), codec, remote).expect("start")
    }

    async fn raw_socket() -> (UdpSocket, SocketAddr) {
        let s = UdpSocket::bind((LOCALHOST, 0))
            .await
            .expect("bind raw socket");
        let addr = s.local_addr().expect("addr");
        (s, addr)
    }

    /// Receives RTP packets on `sock` until `until`, as (arrival, header fields, payload).
    async fn collect(sock: &UdpSocket, until: Instant) -> Vec<(Instant, RtpOwned)> {
        let mut out = Vec::new();
        let mut buf = [0u8; 2048];
        while let Ok(Ok((len, _))) = tokio::time::timeout_at(until, sock.recv_from(&mut buf)).await
        {
            let p = RtpPacket::parse(&buf[..len]).expect("session sends valid RTP");
            out.push((Instant::now(), RtpOwned::from(p)));
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
        let (session, _events) = start(&pool, Codec::Pcmu, Some(raw_addr));
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
        assert_eq!(pool.in_use(), 0, "port released by stop");
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
        let mut a_frames = 0u64;
        let deadline = Instant::now() + Duration::from_secs(3);
        let mut finished = false;
        while !finished {
            tokio::select! {
                e = a_events.recv() => match e {
                    Some(MediaEvent::PlaybackFinished) => finished = true,
                    Some(MediaEvent::Frame(_)) => a_frames += 1,
                    None => panic!("a's events closed"),
                },
                Some(MediaEvent::Frame(f)) = b_events.recv() => b_frames.push(f),
                _ = tokio::time::sleep_until(deadline) => panic!("no PlaybackFinished"),
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let a_stats = a.stop().await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        let b_stats = b.stop().await;
        while let Some(e) = b_events.recv().await {
            if let MediaEvent::Frame(f) = e {
                b_frames.push(f);
            }
        }
        while let Some(e) = a_events.recv().await {
            if let MediaEvent::Frame(_) = e {
                a_frames += 1;
            }
        }

        // Every packet a sent reached b and became a frame; likewise the other way.
        assert_eq!(
            b_stats.received, a_stats.sent,
            "a {a_stats:?} b {b_stats:?}"
        );
        assert_eq!(b_frames.len() as u64, b_stats.received);
        assert!(a_stats.received <= b_stats.sent); // b ran on after a had closed its port
        assert_eq!(a_frames, a_stats.received);
        assert_eq!(a_stats.dropped_frames + b_stats.dropped_frames, 0);
        assert_eq!(a_stats.invalid + b_stats.invalid, 0);
        assert!(a_stats.sent >= 35, "{a_stats:?}"); // 0.1 s + 0.6 s + 0.1 s of packets

        for pair in b_frames.windows(2) {
            assert_eq!(
                pair[1].rtp_timestamp,
                pair[0].rtp_timestamp.wrapping_add(160)
            );
        }
        let received: Vec<i16> = b_frames
            .iter()
            .flat_map(|f| f.samples.iter().copied())
            .collect();
        assert!(b_frames
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
        let (session, _events) = start(&pool, Codec::Pcmu, Some(raw_addr));
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
            (before.len() + in_flight.len() + after.len()) as u64
        );
    }

    #[tokio::test]
    async fn receiver_counts_ignores_and_decodes() {
        let pool = test_pool();
        let (session, mut events) = start(&pool, Codec::Pcmu, None);
        let (raw, _) = raw_socket().await;
        let to = SocketAddr::new(LOCALHOST, session.local_port());
        let mut pkt = Vec::new();
        raw.send_to(&[0x80, 200, 0, 6, 1, 2, 3, 4], to)
            .await
            .expect("rtcp"); // RTCP SR: ignored
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
            })
        );
        let stats = session.stop().await;
        assert_eq!(
            stats,
            RtpStats {
                sent: 0,
                received: 2,
                dropped_frames: 0,
                invalid: 2,
            }
        );
        assert!(events.recv().await.is_none(), "channel closes on stop");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn full_event_channel_drops_frames_and_counts_them() {
        let pool = test_pool();
        let (session, mut events) = start(&pool, Codec::Pcmu, None);
        let (raw, _) = raw_socket().await;
        let to = SocketAddr::new(LOCALHOST, session.local_port());
        let total = EVENT_CHANNEL_CAPACITY as u64 + 20;
        let mut pkt = Vec::new();
        for i in 0..total {
            write_rtp(
                &mut pkt,
                false,
                0,
                i as u16,
                i as u32 * 160,
                9,
                &[0xFF; 160],
            );
            raw.send_to(&pkt, to).await.expect("send");
            if i % 50 == 0 {
                tokio::task::yield_now().await;
            }
        }
        let deadline = Instant::now() + Duration::from_secs(3);
        while session.stats().received < total && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let stats = session.stop().await;
        assert_eq!(stats.received, total, "{stats:?}");
        assert_eq!(stats.dropped_frames, 20);
        let mut frames = 0;
        while let Some(MediaEvent::Frame(_)) = events.recv().await {
            frames += 1;
        }
        assert_eq!(frames, EVENT_CHANNEL_CAPACITY);
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
