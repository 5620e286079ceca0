//! outdial's side of the media benchmark: the RTP relay a bridged call runs, for many calls
//! at once, on at most two worker threads.
//!
//! Each stream (one bridged call) has two UDP sockets on 127.0.0.1: leg A and leg B. What
//! arrives on leg A goes through leg A's [`LegMedia`]: parsed ([`RtpPacket::try_parse`]), put
//! in outdial's adaptive jitter buffer ([`JitterBuffer`], configured as for a real call:
//! 20-200 ms, 40 ms to start), which reorders it and drops duplicates and packets whose turn
//! has passed; in its turn it is decoded to PCM ([`Codec::decode`]), re-encoded
//! ([`Codec::encode`]) and sent from leg B to B's peer. Leg B works the same way towards A's
//! peer. The played packet's RTP header (SSRC, sequence number, timestamp, marker) is carried
//! over, as a forwarding relay does, so the generator can match what it sent; RTCP and payload
//! types that are not audio (DTMF events) pass through at once, unbuffered; datagrams that are
//! not RTP are dropped and counted. A turn the jitter buffer fills with a made-up frame
//! (a missing or late packet, or its delay growing) is counted, not sent: a packet invented
//! here could not be told from the one it stands in for, and would hide a loss.
//!
//! Cost model: each worker owns its sockets, one level-triggered epoll and one play-out clock.
//! It wakes once per tick (20 ms by default, [`DEFAULT_TICK`]) and only then: one
//! `epoll_wait(0)` reports every socket holding data, each is drained with `recvmmsg`, and
//! every packet goes into its leg's jitter buffer with the arrival time the kernel stamped
//! on it (`SO_TIMESTAMPNS`), so waking late does not blur the jitter estimate. Then every leg
//! whose next frame is due plays it out, and what it played leaves with one `sendmmsg` from
//! the partner leg. Receiving at the tick adds no delay: a packet's turn comes no sooner than
//! the jitter buffer's minimum delay (20 ms) after it arrived, so it is always in the buffer
//! by the tick that plays it, as long as the tick is no longer than that minimum. Legs are
//! not timers: the worker keeps one due time per leg in a flat array and scans it each tick.
//! No locks, no channels, no allocation per packet (the batches, the PCM buffer and each
//! leg's jitter buffer, made on its first packet, are reused); counters are published once
//! per tick. A leg whose far end has been silent for a second stops being polled until its
//! next packet.
//!
//! The price of a shared play-out clock is honest and visible in the generator's figures:
//! frames leave on the tick after their turn, so each stream's latency is the jitter buffer's
//! delay plus a fixed share of one tick that depends on its phase; across streams that share
//! reads as up to one tick of `jitter_added_ms_p99`, while within one stream the spacing stays
//! even (`stream_jitter_ms_p99`).
//!
//! The unsafe system calls live in [`super::sys`]; this module is safe code.

use std::io;
use std::net::{SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::sys::{self, Epoll, RecvBatch, SendBatch};
use crate::media::jitter::{FrameKind, JitterBuffer, JitterConfig, Pushed, COMFORT_NOISE_PT};
use crate::media::rtp::{is_rtcp, write_rtp, RtpPacket};
use crate::media::session::MediaOptions;
use crate::media::{Codec, FRAME_SAMPLES};

/// Datagrams one `recvmmsg` / `sendmmsg` moves at most.
pub const BATCH: usize = 32;
/// Largest datagram relayed whole (longer ones are dropped as truncated).
const SLOT_LEN: usize = 2048;
/// Socket buffer size asked for on every relay socket (the kernel may cap it at rmem_max).
pub const SOCKET_BUFFER: usize = 1 << 20;
/// The play-out tick of a worker unless told otherwise: one frame time.
pub const DEFAULT_TICK: Duration = Duration::from_millis(20);
/// Shortest and longest tick accepted; the longest is the jitter buffer's minimum delay.
pub const MIN_TICK: Duration = Duration::from_millis(1);
pub const MAX_TICK: Duration = Duration::from_millis(20);
/// Turns in a row with nothing to play (1 s) after which a leg is no longer polled.
const PARK_AFTER_TURNS: u32 = 50;
/// Batches drained from one socket per tick at most (a flood cannot starve the others).
const MAX_BATCHES_PER_SOCKET: usize = 4;

/// The jitter buffer settings of a real call ([`MediaOptions::default`]).
pub fn call_jitter_config() -> JitterConfig {
    let o = MediaOptions::default();
    JitterConfig::from_ms(o.jitter_min_ms, o.jitter_max_ms, o.jitter_initial_ms)
}

/// Where one stream's legs send: leg A's packets go out of leg B to `b_peer`, and back.
#[derive(Debug, Clone, Copy)]
pub struct StreamSpec {
    pub a_peer: SocketAddrV4,
    pub b_peer: SocketAddrV4,
}

/// What happened to one received datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    /// Audio (G.711) or comfort noise, now in the leg's jitter buffer.
    Buffered,
    /// Received before: dropped by the jitter buffer.
    Duplicate,
    /// Its turn had passed: dropped by the jitter buffer.
    Late,
    /// Forwarded at once, unchanged (RTCP, or an RTP payload type that is not audio).
    PassedThrough,
    /// Not RTP: dropped.
    Invalid,
}

/// What one turn of a leg's play-out gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Played {
    /// The packet of this turn: G.711 decoded and re-encoded (comfort noise as received).
    Sent,
    /// Silence the sender meant (a gap in its timestamps with nothing missing): nothing to send.
    Silent,
    /// No packet for this turn (missing, late, or the buffer growing its delay): nothing sent.
    Concealed,
}

/// One receiving leg's media, sans-IO: the jitter buffer and the per-frame codec work.
pub struct LegMedia {
    config: JitterConfig,
    /// Made on the first audio packet (legs that only send never pay for one).
    jitter: Option<Box<JitterBuffer>>,
    /// Turns in a row that played no packet.
    idle_turns: u32,
    /// Not polled until the next audio packet (see [`PARK_AFTER_TURNS`]).
    parked: bool,
}

impl LegMedia {
    pub fn new(config: JitterConfig) -> Self {
        LegMedia {
            config,
            jitter: None,
            idle_turns: 0,
            parked: false,
        }
    }

    /// The leg's jitter buffer, once its first audio packet has arrived.
    pub fn jitter(&self) -> Option<&JitterBuffer> {
        self.jitter.as_deref()
    }

    /// Takes one received datagram that arrived at `arrival`. Audio goes into the jitter
    /// buffer; what passes through is written into `out` (cleared) to be sent at once.
    pub fn receive(&mut self, input: &[u8], arrival: Instant, out: &mut Vec<u8>) -> Received {
        out.clear();
        if is_rtcp(input) {
            out.extend_from_slice(input);
            return Received::PassedThrough;
        }
        let Ok(packet) = RtpPacket::try_parse(input) else {
            return Received::Invalid;
        };
        let audio = packet.payload_type == COMFORT_NOISE_PT
            || Codec::from_payload_type(packet.payload_type).is_some();
        if !audio {
            // A telephone-event (or anything else): its sequence number is not a gap.
            if let Some(jb) = self.jitter.as_mut() {
                jb.note_foreign(&packet);
            }
            out.extend_from_slice(input);
            return Received::PassedThrough;
        }
        let config = self.config;
        let jb = self
            .jitter
            .get_or_insert_with(|| Box::new(JitterBuffer::new(config)));
        self.parked = false;
        match jb.push(&packet, arrival) {
            Pushed::Duplicate => Received::Duplicate,
            Pushed::Late => Received::Late,
            Pushed::Buffered | Pushed::Resync | Pushed::Held => Received::Buffered,
        }
    }

    /// When the next frame is due; `None` before the first packet and while parked.
    pub fn next_due(&self) -> Option<Instant> {
        if self.parked {
            return None;
        }
        self.jitter.as_ref().and_then(|jb| jb.next_due())
    }

    /// Plays the next frame if its turn has come by `now`: a played G.711 packet is decoded
    /// into `pcm` (the spot where recording, detectors or mixing would tap it), re-encoded
    /// and written into `out` (cleared) with its RTP header. `None` when nothing is due.
    pub fn play(&mut self, now: Instant, pcm: &mut Vec<i16>, out: &mut Vec<u8>) -> Option<Played> {
        out.clear();
        if self.parked {
            return None;
        }
        let jb = self.jitter.as_mut()?;
        let ssrc = jb.ssrc().unwrap_or(0);
        let frame = jb.pop(now)?;
        let played = match frame.kind {
            FrameKind::Audio => {
                let header = |out: &mut Vec<u8>| {
                    write_rtp(
                        out,
                        frame.marker,
                        frame.payload_type,
                        frame.sequence.unwrap_or(0),
                        frame.timestamp,
                        ssrc,
                        &[],
                    )
                };
                // G.711 is transcoded; another audio codec (G.722) goes out as received.
                match Codec::from_payload_type(frame.payload_type).filter(|c| c.is_g711()) {
                    Some(codec) => {
                        pcm.clear();
                        codec.decode(frame.payload, pcm);
                        // ── Hook: the 20 ms PCM frame of this leg, in play-out order. ──
                        // Recording, AMD taps and mixing read `pcm` here.
                        header(out);
                        codec.encode(pcm, out);
                    }
                    None => {
                        header(out);
                        out.extend_from_slice(frame.payload);
                    }
                }
                Played::Sent
            }
            FrameKind::Comfort if !frame.payload.is_empty() => {
                write_rtp(
                    out,
                    frame.marker,
                    frame.payload_type,
                    frame.sequence.unwrap_or(0),
                    frame.timestamp,
                    ssrc,
                    frame.payload,
                );
                Played::Sent
            }
            FrameKind::Comfort => Played::Silent,
            FrameKind::Concealed => Played::Concealed,
        };
        if played == Played::Sent {
            self.idle_turns = 0;
        } else {
            self.idle_turns = self.idle_turns.saturating_add(1);
            if self.idle_turns >= PARK_AFTER_TURNS && jb.buffered() == 0 {
                self.parked = true;
            }
        }
        Some(played)
    }
}

/// Counters of one worker, published once per tick.
#[derive(Debug, Default)]
pub struct Counters {
    pub received: AtomicU64,
    pub sent: AtomicU64,
    pub invalid: AtomicU64,
    pub send_dropped: AtomicU64,
    pub io_errors: AtomicU64,
    pub wakeups: AtomicU64,
    /// Packets the jitter buffers dropped as seen before.
    pub duplicates: AtomicU64,
    /// Packets the jitter buffers dropped because their turn had passed.
    pub late: AtomicU64,
    /// Turns that played a received packet.
    pub played: AtomicU64,
    /// Turns with no packet to play (loss, lateness, delay growth): counted, not sent.
    pub concealed: AtomicU64,
    /// Datagrams forwarded unbuffered (RTCP, DTMF events).
    pub passed_through: AtomicU64,
}

/// A copy of the counters summed over workers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CounterSnapshot {
    pub received: u64,
    pub sent: u64,
    pub invalid: u64,
    pub send_dropped: u64,
    pub io_errors: u64,
    pub wakeups: u64,
    pub duplicates: u64,
    pub late: u64,
    pub played: u64,
    pub concealed: u64,
    pub passed_through: u64,
}

impl CounterSnapshot {
    fn add(&mut self, c: &Counters) {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        self.received += get(&c.received);
        self.sent += get(&c.sent);
        self.invalid += get(&c.invalid);
        self.send_dropped += get(&c.send_dropped);
        self.io_errors += get(&c.io_errors);
        self.wakeups += get(&c.wakeups);
        self.duplicates += get(&c.duplicates);
        self.late += get(&c.late);
        self.played += get(&c.played);
        self.concealed += get(&c.concealed);
        self.passed_through += get(&c.passed_through);
    }
}

/// What one tick counted, added to [`Counters`] once at its end.
#[derive(Debug, Default)]
struct TickCounts {
    received: u64,
    sent: u64,
    invalid: u64,
    send_dropped: u64,
    io_errors: u64,
    duplicates: u64,
    late: u64,
    played: u64,
    concealed: u64,
    passed_through: u64,
}

impl TickCounts {
    fn publish(&self, c: &Counters) {
        c.wakeups.fetch_add(1, Ordering::Relaxed);
        let put = |a: &AtomicU64, v: u64| {
            if v > 0 {
                a.fetch_add(v, Ordering::Relaxed);
            }
        };
        put(&c.received, self.received);
        put(&c.sent, self.sent);
        put(&c.invalid, self.invalid);
        put(&c.send_dropped, self.send_dropped);
        put(&c.io_errors, self.io_errors);
        put(&c.duplicates, self.duplicates);
        put(&c.late, self.late);
        put(&c.played, self.played);
        put(&c.concealed, self.concealed);
        put(&c.passed_through, self.passed_through);
    }
}

/// One socket of a worker: the socket, its partner leg's index, where the partner sends, and
/// the media of what this socket receives.
struct Leg {
    socket: UdpSocket,
    partner: usize,
    dest: SocketAddrV4,
    media: LegMedia,
}

/// Binds the two legs of every stream; returns the legs plus each stream's A and B addresses.
fn bind_legs(
    streams: &[StreamSpec],
    jitter: JitterConfig,
) -> io::Result<(Vec<Leg>, Vec<SocketAddrV4>)> {
    let mut legs = Vec::with_capacity(2 * streams.len());
    let mut a_addrs = Vec::with_capacity(streams.len());
    for s in streams {
        let a = bind_loopback()?;
        let b = bind_loopback()?;
        for sock in [&a, &b] {
            sys::enable_rx_timestamps(sock)?;
        }
        a_addrs.push(local_v4(&a)?);
        let i = legs.len();
        // What arrives on A leaves from B towards B's peer, and the reverse.
        legs.push(Leg {
            socket: a,
            partner: i + 1,
            dest: s.b_peer,
            media: LegMedia::new(jitter),
        });
        legs.push(Leg {
            socket: b,
            partner: i,
            dest: s.a_peer,
            media: LegMedia::new(jitter),
        });
    }
    Ok((legs, a_addrs))
}

/// A non-blocking UDP socket on 127.0.0.1 with large buffers.
pub fn bind_loopback() -> io::Result<UdpSocket> {
    let s = UdpSocket::bind("127.0.0.1:0")?;
    s.set_nonblocking(true)?;
    let r = socket2::SockRef::from(&s);
    // Best effort: the kernel caps these at net.core.[rw]mem_max.
    let _ = r.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = r.set_send_buffer_size(SOCKET_BUFFER);
    Ok(s)
}

/// The IPv4 address a socket is bound to.
pub fn local_v4(s: &UdpSocket) -> io::Result<SocketAddrV4> {
    match s.local_addr()? {
        SocketAddr::V4(a) => Ok(a),
        SocketAddr::V6(a) => Err(io::Error::other(format!("{a} is not IPv4"))),
    }
}

/// `t` moved by `ns` nanoseconds either way.
fn shift(t: Instant, ns: i64) -> Instant {
    let d = Duration::from_nanos(ns.unsigned_abs());
    if ns >= 0 {
        t.checked_add(d).unwrap_or(t)
    } else {
        t.checked_sub(d).unwrap_or(t)
    }
}

/// Not playing: no stream yet, or parked.
const NOT_DUE: u64 = u64::MAX;

/// One worker's event loop state. Build it on the thread that runs it.
pub struct Worker {
    epoll: Epoll,
    legs: Vec<Leg>,
    /// When each leg's next frame is due, in ns after `epoch` ([`NOT_DUE`]: not playing).
    due: Vec<u64>,
    /// Legs that have a jitter buffer, in the order they got one: the ones a tick looks at.
    playing: Vec<u32>,
    epoch: Instant,
    rx: RecvBatch,
    tx: SendBatch,
    pcm: Vec<i16>,
    counters: Arc<Counters>,
}

impl Worker {
    /// A worker relaying `streams` on freshly bound sockets, each receiving leg with a jitter
    /// buffer configured by `jitter`; also returns each stream's leg A address (where the A
    /// party sends).
    pub fn bind(
        streams: &[StreamSpec],
        jitter: JitterConfig,
        counters: Arc<Counters>,
    ) -> io::Result<(Worker, Vec<SocketAddrV4>)> {
        let (legs, a_addrs) = bind_legs(streams, jitter)?;
        Ok((Worker::new(legs, counters)?, a_addrs))
    }

    fn new(legs: Vec<Leg>, counters: Arc<Counters>) -> io::Result<Worker> {
        let epoll = Epoll::new(legs.len().clamp(1, 4096))?;
        for (i, leg) in legs.iter().enumerate() {
            epoll.add_readable(leg.socket.as_raw_fd(), i as u64)?;
        }
        Ok(Worker {
            epoll,
            due: vec![NOT_DUE; legs.len()],
            playing: Vec::with_capacity(legs.len()),
            legs,
            epoch: Instant::now(),
            rx: RecvBatch::new(BATCH, SLOT_LEN, true),
            tx: SendBatch::new(BATCH, SLOT_LEN),
            pcm: Vec::with_capacity(4 * FRAME_SAMPLES),
            counters,
        })
    }

    /// `t` in ns after the worker's epoch (0 before it).
    fn ns(&self, t: Instant) -> u64 {
        u64::try_from(t.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(NOT_DUE - 1)
    }

    fn due_ns(&self, leg: usize) -> u64 {
        self.legs[leg]
            .media
            .next_due()
            .map_or(NOT_DUE, |t| self.ns(t))
    }

    /// One tick at `now`: takes in everything the sockets hold (each packet with the kernel's
    /// arrival time, read against `now`), then plays out every frame due by `now`. Returns the
    /// number of datagrams sent.
    pub fn tick(&mut self, now: Instant) -> io::Result<usize> {
        let mut n = TickCounts::default();
        // The kernel stamps arrivals on CLOCK_REALTIME; `now` is monotonic. Read together,
        // they put each arrival on `now`'s clock.
        let real_now = sys::realtime_ns();
        // Every ready socket; more rounds when more are ready than one wait reports.
        let rounds = self.legs.len() / self.epoll.capacity() + 2;
        for _ in 0..rounds {
            let ready = self.epoll.wait(Some(Duration::ZERO))?;
            for e in 0..ready {
                let Some(token) = self.epoll.token(e) else {
                    continue;
                };
                let idx = token as usize;
                if idx < self.legs.len() {
                    self.receive_leg(idx, now, real_now, &mut n);
                }
            }
            if ready < self.epoll.capacity() {
                break;
            }
        }
        let now_ns = self.ns(now);
        for k in 0..self.playing.len() {
            let idx = self.playing[k] as usize;
            if self.due[idx] <= now_ns {
                self.play_leg(idx, now, &mut n);
                self.due[idx] = self.due_ns(idx);
            }
        }
        n.publish(&self.counters);
        Ok(n.sent as usize)
    }

    /// Drains leg `idx`: audio into its jitter buffer, pass-through out of the partner leg.
    fn receive_leg(&mut self, idx: usize, now: Instant, real_now: u64, n: &mut TickCounts) {
        let (partner, dest) = (self.legs[idx].partner, self.legs[idx].dest);
        let had_jitter = self.legs[idx].media.jitter().is_some();
        for _ in 0..MAX_BATCHES_PER_SOCKET {
            let got = match self.rx.recv(&self.legs[idx].socket) {
                Ok(got) => got,
                Err(_) => {
                    n.io_errors += 1;
                    break;
                }
            };
            n.received += got as u64;
            for i in 0..got {
                if self.rx.truncated(i) {
                    n.invalid += 1;
                    continue;
                }
                let arrival = match self.rx.timestamp_ns(i) {
                    Some(ts) => shift(now, ts as i64 - real_now as i64),
                    None => now,
                };
                let input = self.rx.packet(i);
                let media = &mut self.legs[idx].media;
                let mut verdict = Received::Invalid;
                let queued = self
                    .tx
                    .push(dest, |out| verdict = media.receive(input, arrival, out));
                if verdict != Received::PassedThrough && queued {
                    self.tx.pop();
                }
                match verdict {
                    Received::Buffered => {}
                    Received::Duplicate => n.duplicates += 1,
                    Received::Late => n.late += 1,
                    Received::PassedThrough if queued => n.passed_through += 1,
                    Received::PassedThrough => n.send_dropped += 1,
                    Received::Invalid => n.invalid += 1,
                }
            }
            self.flush(partner, n);
            if got < self.rx.capacity() {
                break;
            }
        }
        if !had_jitter && self.legs[idx].media.jitter().is_some() {
            self.playing.push(idx as u32);
        }
        self.due[idx] = self.due_ns(idx);
    }

    /// Plays every frame of leg `idx` due by `now`, out of the partner leg.
    fn play_leg(&mut self, idx: usize, now: Instant, n: &mut TickCounts) {
        let (partner, dest) = (self.legs[idx].partner, self.legs[idx].dest);
        loop {
            if self.tx.is_full() {
                self.flush(partner, n);
            }
            let media = &mut self.legs[idx].media;
            let pcm = &mut self.pcm;
            let mut played = None;
            let queued = self.tx.push(dest, |out| played = media.play(now, pcm, out));
            match played {
                Some(Played::Sent) => n.played += 1,
                Some(Played::Silent) => {}
                Some(Played::Concealed) => n.concealed += 1,
                None => {}
            }
            if queued && played != Some(Played::Sent) {
                self.tx.pop();
            }
            if played.is_none() {
                break;
            }
        }
        self.flush(partner, n);
    }

    /// Sends what is queued from leg `from`'s socket.
    fn flush(&mut self, from: usize, n: &mut TickCounts) {
        if self.tx.is_empty() {
            return;
        }
        let queued = self.tx.len();
        match self.tx.send(&self.legs[from].socket) {
            Ok(k) => {
                n.sent += k as u64;
                n.send_dropped += (queued - k) as u64;
            }
            Err(_) => {
                n.io_errors += 1;
                n.send_dropped += queued as u64;
            }
        }
    }

    /// Ticks every `tick` (on CLOCK_MONOTONIC, without drift) until `stop` is set.
    pub fn run(mut self, stop: &AtomicBool, tick: Duration) -> io::Result<()> {
        let tick_ns = tick.clamp(MIN_TICK, MAX_TICK).as_nanos() as u64;
        let mut next = sys::monotonic_ns();
        while !stop.load(Ordering::Relaxed) {
            sys::sleep_until_monotonic(next);
            self.tick(Instant::now())?;
            next += tick_ns;
            let now = sys::monotonic_ns();
            if next <= now {
                // Fell behind by whole ticks: skip them (the jitter buffers catch up).
                next += (now - next) / tick_ns * tick_ns + tick_ns;
            }
        }
        Ok(())
    }
}

/// The relay: worker threads, each owning a share of the streams.
pub struct Relay {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<io::Result<()>>>,
    counters: Vec<Arc<Counters>>,
    a_addrs: Vec<SocketAddrV4>,
}

impl Relay {
    /// Binds every stream's legs and starts `workers` threads (at least one), each playing out
    /// every `tick` through jitter buffers configured by `jitter`; stream `i` goes to worker
    /// `i % workers`. Returns once every worker is ready.
    pub fn start(
        streams: &[StreamSpec],
        workers: usize,
        tick: Duration,
        jitter: JitterConfig,
    ) -> io::Result<Relay> {
        let workers = workers.clamp(1, streams.len().max(1));
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::with_capacity(workers);
        let mut counters = Vec::with_capacity(workers);
        let mut per_worker_addrs = Vec::with_capacity(workers);
        let (ready_tx, ready_rx) = mpsc::channel::<io::Result<()>>();
        let mut started = Ok(());
        for w in 0..workers {
            let mine: Vec<StreamSpec> = streams.iter().skip(w).step_by(workers).copied().collect();
            // Sockets are bound here (the addresses are needed at once); the epoll and the
            // batches are built on the worker's own thread.
            let (legs, a_addrs) = match bind_legs(&mine, jitter) {
                Ok(v) => v,
                Err(e) => {
                    started = Err(e);
                    break;
                }
            };
            per_worker_addrs.push(a_addrs);
            let c = Arc::new(Counters::default());
            counters.push(c.clone());
            let stop = stop.clone();
            let ready = ready_tx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("relay-{w}"))
                .spawn(move || {
                    let worker = match Worker::new(legs, c) {
                        Ok(w) => w,
                        Err(e) => {
                            let _ = ready.send(Err(io::Error::new(e.kind(), e.to_string())));
                            return Err(e);
                        }
                    };
                    let _ = ready.send(Ok(()));
                    worker.run(&stop, tick)
                });
            match spawned {
                Ok(t) => threads.push(t),
                Err(e) => {
                    started = Err(e);
                    break;
                }
            }
        }
        drop(ready_tx);
        for _ in 0..threads.len() {
            match ready_rx.recv() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => started = started.and(Err(e)),
                Err(_) => started = started.and(Err(io::Error::other("relay worker died"))),
            }
        }
        let mut relay = Relay {
            stop,
            threads,
            counters,
            a_addrs: Vec::new(),
        };
        if let Err(e) = started {
            let _ = relay.stop();
            return Err(e);
        }
        // Stream i lives on worker i % workers at position i / workers.
        let mut a_addrs = Vec::with_capacity(streams.len());
        for i in 0..streams.len() {
            match per_worker_addrs
                .get(i % workers)
                .and_then(|v| v.get(i / workers))
            {
                Some(a) => a_addrs.push(*a),
                None => return Err(io::Error::other("relay lost track of a stream")),
            }
        }
        relay.a_addrs = a_addrs;
        Ok(relay)
    }

    /// Where the A party of each stream sends (leg A's address), in stream order.
    pub fn a_addrs(&self) -> &[SocketAddrV4] {
        &self.a_addrs
    }

    pub fn counters(&self) -> CounterSnapshot {
        let mut s = CounterSnapshot::default();
        for c in &self.counters {
            s.add(c);
        }
        s
    }

    /// Stops and joins the workers; returns the final counters or the first worker error.
    pub fn stop(mut self) -> io::Result<CounterSnapshot> {
        self.stop.store(true, Ordering::Relaxed);
        let mut result = Ok(());
        for t in self.threads.drain(..) {
            match t.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => result = result.and(Err(e)),
                Err(_) => result = result.and(Err(io::Error::other("relay worker panicked"))),
            }
        }
        result.map(|()| self.counters())
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::g711::linear_to_ulaw;

    const MS: Duration = Duration::from_millis(1);

    fn tone() -> Vec<u8> {
        (0..160)
            .map(|i| {
                let x = (i as f64 * 2.0 * std::f64::consts::PI / 8.0 + 0.4).sin();
                linear_to_ulaw((x * 8000.0) as i16)
            })
            .collect()
    }

    /// Packet `k` of a 20 ms PCMU stream: sequence 1000 + k, the tone with byte 0 set to k.
    fn packet(k: u16) -> Vec<u8> {
        let mut payload = tone();
        payload[0] = linear_to_ulaw(i16::try_from(k).unwrap() * 100);
        let mut pkt = Vec::new();
        write_rtp(
            &mut pkt,
            k == 0,
            0,
            1000 + k,
            160 * u32::from(k),
            0xABCD,
            &payload,
        );
        pkt
    }

    fn seq_of(pkt: &[u8]) -> u16 {
        RtpPacket::try_parse(pkt).unwrap().sequence
    }

    #[test]
    fn reordered_and_duplicated_input_plays_out_in_order_once() {
        // Arrivals on a 20 ms cadence, but 3 and 4 swapped, 6 arriving twice and 8 arriving
        // 30 ms late, after 9 (still before its turn): out comes 0..10 in order, each once, on
        // the jitter buffer's clock, every byte as sent (PCMU decode + encode is exact here).
        let t0 = Instant::now();
        let mut arrivals: Vec<(u64, u16)> = (0..10u16).map(|k| (20 * u64::from(k), k)).collect();
        arrivals[3].1 = 4;
        arrivals[4].1 = 3;
        arrivals[8].0 += 30;
        arrivals.push((135, 6));
        arrivals.sort();
        let mut leg = LegMedia::new(call_jitter_config());
        let (mut pcm, mut out) = (Vec::new(), Vec::new());
        let mut sent: Vec<(u64, Vec<u8>)> = Vec::new();
        let mut verdicts = Vec::new();
        let mut next = arrivals.iter().peekable();
        // A 20 ms play-out tick, as the worker runs it: receive what came, then play.
        for tick in 0..40u64 {
            let now = t0 + MS * (tick as u32 * 20);
            while let Some(&&(at, k)) = next.peek() {
                if at > tick * 20 {
                    break;
                }
                next.next();
                let v = leg.receive(&packet(k), t0 + MS * at as u32, &mut out);
                verdicts.push(v);
                assert!(out.is_empty(), "audio is buffered, not passed through");
            }
            while let Some(p) = leg.play(now, &mut pcm, &mut out) {
                if p == Played::Sent {
                    sent.push((tick * 20, out.clone()));
                }
            }
        }
        let order: Vec<u16> = sent.iter().map(|(_, p)| seq_of(p) - 1000).collect();
        assert_eq!(order, (0..10).collect::<Vec<u16>>());
        for (k, (_, p)) in sent.iter().enumerate() {
            assert_eq!(p, &packet(k as u16), "packet {k} relayed bit for bit");
        }
        // Played on the buffer's clock: 40 ms (the initial delay) after the first arrival,
        // then one every 20 ms.
        let times: Vec<u64> = sent.iter().map(|(t, _)| *t).collect();
        assert_eq!(times, (0..10).map(|k| 40 + 20 * k).collect::<Vec<u64>>());
        assert_eq!(
            verdicts
                .iter()
                .filter(|v| **v == Received::Duplicate)
                .count(),
            1
        );
        let s = leg.jitter().unwrap().stats();
        assert_eq!((s.reordered, s.duplicates, s.lost), (2, 1, 0), "{s:?}");
    }

    #[test]
    fn a_late_packet_is_dropped_and_its_turn_concealed() {
        let t0 = Instant::now();
        let mut leg = LegMedia::new(call_jitter_config());
        let (mut pcm, mut out) = (Vec::new(), Vec::new());
        let mut played = Vec::new();
        for tick in 0..12u32 {
            let now = t0 + MS * (tick * 20);
            if tick != 2 && tick < 8 {
                leg.receive(&packet(tick as u16), now, &mut out);
            }
            if tick == 7 {
                // Packet 2, 100 ms late: its turn (at 80 ms) has gone.
                assert_eq!(leg.receive(&packet(2), now, &mut out), Received::Late);
            }
            while let Some(p) = leg.play(now, &mut pcm, &mut out) {
                played.push((p, (p == Played::Sent).then(|| seq_of(&out) - 1000)));
            }
        }
        let seqs: Vec<u16> = played.iter().filter_map(|(_, s)| *s).collect();
        assert_eq!(seqs, [0, 1, 3, 4, 5, 6, 7]);
        assert_eq!(played[2], (Played::Concealed, None));
    }

    #[test]
    fn rtcp_and_events_pass_through_garbage_is_dropped() {
        let t0 = Instant::now();
        let mut leg = LegMedia::new(call_jitter_config());
        let mut out = Vec::new();
        assert_eq!(leg.receive(&[1, 2, 3], t0, &mut out), Received::Invalid);
        let rtcp = [0x80, 200, 0, 1, 0, 0, 0, 1];
        assert_eq!(leg.receive(&rtcp, t0, &mut out), Received::PassedThrough);
        assert_eq!(out, rtcp);
        assert!(leg.jitter().is_none(), "no audio yet: no jitter buffer");
        assert_eq!(leg.receive(&packet(0), t0, &mut out), Received::Buffered);
        let mut event = Vec::new();
        write_rtp(&mut event, false, 101, 1001, 0, 0xABCD, &[1, 0x80, 0, 160]);
        assert_eq!(leg.receive(&event, t0, &mut out), Received::PassedThrough);
        assert_eq!(out, event);
        // The event's sequence number is not a gap: packet 2 follows without loss.
        leg.receive(&packet(2), t0 + 40 * MS, &mut out);
        let mut pcm = Vec::new();
        let mut sent = 0;
        for tick in 0..8u32 {
            while let Some(p) = leg.play(t0 + MS * (tick * 20), &mut pcm, &mut out) {
                sent += usize::from(p == Played::Sent);
            }
        }
        assert_eq!(sent, 2);
        assert_eq!(leg.jitter().unwrap().stats().lost, 0);
    }

    #[test]
    fn a_silent_leg_is_parked_until_its_next_packet() {
        let t0 = Instant::now();
        let mut leg = LegMedia::new(call_jitter_config());
        let (mut pcm, mut out) = (Vec::new(), Vec::new());
        leg.receive(&packet(0), t0, &mut out);
        let mut turns = 0;
        for tick in 0..100u32 {
            while leg
                .play(t0 + MS * (tick * 20), &mut pcm, &mut out)
                .is_some()
            {
                turns += 1;
            }
        }
        assert!(leg.next_due().is_none(), "parked");
        assert!(turns <= 2 + PARK_AFTER_TURNS as usize, "{turns} turns");
        leg.receive(&packet(100), t0 + 2000 * MS, &mut out);
        assert!(leg.next_due().is_some(), "playing again");
    }

    #[test]
    fn worker_relays_through_the_jitter_buffer_in_order() {
        // Real sockets and the kernel's arrival stamps: packets sent 20 ms apart, 2 and 3
        // swapped and 4 sent twice, come out of leg B in order, once each, no sooner than
        // the jitter buffer's delay.
        let a_party = bind_loopback().unwrap();
        let b_party = bind_loopback().unwrap();
        let spec = StreamSpec {
            a_peer: local_v4(&a_party).unwrap(),
            b_peer: local_v4(&b_party).unwrap(),
        };
        let counters = Arc::new(Counters::default());
        // 100 ms to start, so a test thread descheduled for a while cannot make a packet late.
        let (mut worker, a_addrs) = Worker::bind(
            &[spec],
            JitterConfig::from_ms(20, 200, 100),
            counters.clone(),
        )
        .unwrap();
        let order = [0u16, 1, 3, 2, 4, 4, 5, 6, 7];
        let t0 = Instant::now();
        let mut got = Vec::new();
        let mut buf = [0u8; 2048];
        let mut first_out = None;
        let mut sent = 0;
        for tick in 0..30u32 {
            if let Some(&k) = order.get(tick as usize) {
                a_party.send_to(&packet(k), a_addrs[0]).unwrap();
                sent += 1;
            }
            std::thread::sleep(
                (t0 + MS * (tick * 20 + 1)).saturating_duration_since(Instant::now()),
            );
            worker.tick(Instant::now()).unwrap();
            while let Ok((n, _)) = b_party.recv_from(&mut buf) {
                first_out.get_or_insert(tick);
                got.push(seq_of(&buf[..n]) - 1000);
            }
            std::thread::sleep(
                (t0 + MS * (tick * 20 + 20)).saturating_duration_since(Instant::now()),
            );
        }
        assert_eq!(sent, order.len());
        assert_eq!(got, (0..8).collect::<Vec<u16>>());
        assert!(
            first_out.unwrap() >= 5,
            "played after the 100 ms initial delay"
        );
        let mut c = CounterSnapshot::default();
        c.add(&counters);
        assert_eq!(
            (c.received, c.sent, c.duplicates, c.played),
            (9, 8, 1, 8),
            "{c:?}"
        );
    }

    #[test]
    fn relays_both_ways_between_legs() {
        let a_party = bind_loopback().unwrap();
        let b_party = bind_loopback().unwrap();
        let spec = StreamSpec {
            a_peer: local_v4(&a_party).unwrap(),
            b_peer: local_v4(&b_party).unwrap(),
        };
        let relay =
            Relay::start(&[spec, spec, spec], 2, DEFAULT_TICK, call_jitter_config()).unwrap();
        assert_eq!(relay.a_addrs().len(), 3);
        let mut pkt = Vec::new();
        write_rtp(&mut pkt, false, 0, 1, 160, 42, &tone());
        for a in relay.a_addrs() {
            a_party.send_to(&pkt, a).unwrap();
        }
        let mut buf = [0u8; 2048];
        let mut got = 0;
        b_party.set_nonblocking(false).unwrap();
        b_party
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        while got < 3 {
            let (n, from) = b_party.recv_from(&mut buf).unwrap();
            assert_eq!(&buf[..n], &pkt[..]);
            got += 1;
            // And back: what B sends to the leg it heard from reaches A.
            b_party.send_to(&pkt, from).unwrap();
        }
        a_party.set_nonblocking(false).unwrap();
        a_party
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        for _ in 0..3 {
            let (n, _) = a_party.recv_from(&mut buf).unwrap();
            assert_eq!(&buf[..n], &pkt[..]);
        }
        let c = relay.stop().unwrap();
        assert_eq!((c.received, c.sent, c.invalid, c.played), (6, 6, 0, 6));
    }
}
