//! The traffic generator of `outdial bench media`: a child process (`outdial bench media-gen`)
//! so that its CPU is not counted as the relay's.
//!
//! It sends N streams of PCMU RTP (172-byte packets: 12-byte header + 160 bytes, 50 packets/s
//! each, sequence numbers and timestamps advancing by 1 and 160, one SSRC per stream) from a
//! single socket with `sendmmsg`, the streams' send times spread evenly over each 20 ms on
//! CLOCK_MONOTONIC, and takes the relayed packets back on a few sink sockets with `recvmmsg`.
//! Transit time = the kernel's receive timestamp at the sink (`SO_TIMESTAMPNS`) − the time
//! the batch was handed to `sendmmsg`, so the generator's own wake-up delay on the receive
//! side is not counted. Besides loss and transit times it keeps, per stream, the change in
//! transit between consecutive packets (RFC 3550's D), in 10 µs bins. It wakes at most once a tick (default [`TICK_NS`]), so it stays
//! cheap (one send batch, one `epoll_wait` and a few receive batches per wake-up); the packets
//! due within a tick therefore leave together, as from a media gateway that batches.
//!
//! Tagged runs (`bench agent`) write the stream index and sequence number into each packet's
//! payload ([`tag_payload`]) and match what comes back by that tag instead of the RTP header:
//! the audio then may come back in another stream (a call's own paced stream, after a trip
//! through an AI agent), as long as its bytes are the ones sent.
//!
//! Control is line-delimited JSON: the parent writes [`GenCommand`]s on our stdin; we answer
//! [`GenEvent`]s on stdout (nothing else may be written there).

use std::io::{self, BufRead, Write};
use std::net::{SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::sys::{self, Epoll, RecvBatch, SendBatch};
use crate::media::g711::linear_to_ulaw;
use crate::media::rtp::{write_rtp, RtpPacket};

/// Socket buffer size asked for on every generator socket (the kernel may cap it at rmem_max).
pub const SOCKET_BUFFER: usize = 1 << 20;

/// The sequence number and timestamp stream `i` starts at: random-ish, derived from the index.
pub fn stream_start(i: usize) -> (u16, u32) {
    (
        (i as u32).wrapping_mul(2_654_435_761) as u16,
        (i as u32).wrapping_mul(40_503),
    )
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
        std::net::SocketAddr::V4(a) => Ok(a),
        std::net::SocketAddr::V6(a) => Err(io::Error::other(format!("{a} is not IPv4"))),
    }
}

/// Packet interval of every stream (20 ms: 50 packets/s).
pub const PERIOD_NS: u64 = 20_000_000;
/// Default shortest interval between two wake-ups of the generator.
pub const TICK_NS: u64 = 500_000;
/// Send-time slots kept per stream (2.56 s at 50 packets/s); a packet later than that is lost.
const SLOTS: usize = 128;
/// Samples per packet (PCMU at 8 kHz, 20 ms).
const SAMPLES: u32 = 160;
/// Socket buffers of the generator's sockets (they carry every stream).
const GEN_BUFFER: usize = 4 << 20;

/// From the parent.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum GenCommand {
    /// Send stream `i` to `targets[i]` for `warmup_ms` (not counted), then `seconds` (counted),
    /// then keep receiving for `drain_ms`; wake at most every `tick_us`.
    Run {
        targets: Vec<SocketAddrV4>,
        warmup_ms: u64,
        seconds: f64,
        drain_ms: u64,
        ssrc_base: u32,
        tick_us: u64,
        /// Also take relayed packets back on the source socket (a relay that answers where
        /// the packets come from, as a bridged call's legs do).
        #[serde(default)]
        recv_on_source: bool,
        /// Tag every payload and match returning packets by their payload's tag.
        #[serde(default)]
        tagged: bool,
    },
    Exit,
}

/// To the parent.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum GenEvent {
    /// Bound and ready: packets come from `source`; stream `i` must be delivered to
    /// `sinks[i % sinks.len()]`.
    Ready {
        source: SocketAddrV4,
        sinks: Vec<SocketAddrV4>,
    },
    WindowStart,
    WindowEnd,
    Result(GenResult),
    Error {
        message: String,
    },
}

/// What one run measured over its counted window.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct GenResult {
    /// Packets sent in the window.
    pub sent: u64,
    /// Of those, received back (each once).
    pub received: u64,
    /// Packets `sendmmsg` refused (generator overload, not the relay's loss).
    pub send_failed: u64,
    pub duplicates: u64,
    /// Received but not one we sent (wrong SSRC, or older than the slot window).
    pub stray: u64,
    /// Received with a payload different from the one sent.
    pub payload_mismatches: u64,
    pub transit_us_p50: f64,
    pub transit_us_p99: f64,
    pub transit_us_max: f64,
    /// p99 of |transit − median transit|.
    pub jitter_us_p99: f64,
    /// p99 over consecutive packets n, n+1 of one stream of |transit(n+1) − transit(n)|.
    #[serde(default)]
    pub stream_jitter_us_p99: f64,
    /// Length of the counted window, seconds.
    pub window_s: f64,
    /// The generator's own CPU over the window, % of one core.
    pub cpu_percent: f64,
    /// Packets sent in the whole run (warm-up and window).
    #[serde(default)]
    pub sent_total: u64,
    /// Of those, received back (each once), until the end of the drain.
    #[serde(default)]
    pub received_total: u64,
    /// Tagged runs: packets received whose payload carries no tag (silence, other audio).
    #[serde(default)]
    pub untagged: u64,
}

/// Sink sockets for `streams` streams: enough that each carries a few thousand packets/s.
pub fn sink_count(streams: usize) -> usize {
    streams.div_ceil(128).clamp(1, 16)
}

/// The payload every packet carries: 20 ms of a 1 kHz tone, with no byte µ-law decodes to
/// zero from below (0x7F), so decode + encode gives it back bit for bit.
pub fn tone_payload() -> [u8; 160] {
    let mut p = [0u8; 160];
    for (i, b) in p.iter_mut().enumerate() {
        let x = (i as f64 * 2.0 * std::f64::consts::PI / 8.0 + 0.4).sin();
        *b = linear_to_ulaw((x * 6000.0) as i16);
    }
    p
}

/// The first bytes of a tagged payload; none is 0x7F, the one µ-law byte that does not come
/// back from decode + encode as itself.
const TAG_MAGIC: [u8; 2] = [0xA5, 0x5A];
/// Magic, 8 nibbles of the stream index, 4 of the sequence number, 1 check nibble.
const TAG_LEN: usize = 2 + 8 + 4 + 1;

/// `base` with stream `stream`'s packet `seq` written into its first bytes: one byte per
/// nibble (0x40 + nibble), so that the tag survives µ-law decode + encode.
pub fn tag_payload(base: &[u8; 160], stream: u32, seq: u16) -> [u8; 160] {
    let mut p = *base;
    p[..2].copy_from_slice(&TAG_MAGIC);
    let mut check = 0u8;
    let nibbles = (0..8)
        .rev()
        .map(|k| ((stream >> (4 * k)) & 0xF) as u8)
        .chain((0..4).rev().map(|k| ((seq >> (4 * k)) & 0xF) as u8));
    for (j, n) in nibbles.enumerate() {
        p[2 + j] = 0x40 | n;
        check ^= n;
    }
    p[TAG_LEN - 1] = 0x40 | check;
    p
}

/// The (stream, sequence number) a tagged payload carries; `None` when it carries none.
pub fn read_tag(payload: &[u8]) -> Option<(u32, u16)> {
    let tag = payload.get(..TAG_LEN)?;
    if tag[..2] != TAG_MAGIC {
        return None;
    }
    let mut check = 0u8;
    let mut value = 0u64;
    for &b in &tag[2..TAG_LEN - 1] {
        if b & 0xF0 != 0x40 {
            return None;
        }
        check ^= b & 0xF;
        value = (value << 4) | u64::from(b & 0xF);
    }
    if tag[TAG_LEN - 1] != 0x40 | check {
        return None;
    }
    Some(((value >> 16) as u32, value as u16))
}

/// How one run goes.
#[derive(Debug, Clone, Copy)]
pub struct RunSpec {
    /// Sent but not counted, first.
    pub warmup: Duration,
    /// The counted window.
    pub seconds: f64,
    /// Receiving only, after the window.
    pub drain: Duration,
    /// SSRC of stream 0 (stream `i` uses `ssrc_base + i`); distinct per run.
    pub ssrc_base: u32,
    /// Shortest interval between two wake-ups.
    pub tick: Duration,
    /// Receive on the source socket too (see [`GenCommand::Run`]).
    pub recv_on_source: bool,
    /// Tag payloads and match by tag (see [`GenCommand::Run`]).
    pub tagged: bool,
}

/// The epoll token of the source socket (sinks are 0..n).
const SOURCE_TOKEN: u64 = u64::MAX;
/// Receive buffer of the source socket when relayed packets come back to it (SO_RCVBUFFORCE,
/// needs CAP_NET_ADMIN; else rmem_max caps it).
const SOURCE_RECV_BUFFER: usize = 64 << 20;

/// Sets a socket's receive buffer past `net.core.rmem_max` (SO_RCVBUFFORCE).
fn force_recv_buffer(socket: &UdpSocket, bytes: usize) -> io::Result<()> {
    let size = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    // SAFETY: the option value points at a live c_int of the length passed.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&size as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Width of one bin of the stream-jitter histogram, ns.
const D_BIN_NS: u64 = 10_000;
/// Bins of the stream-jitter histogram (the last one holds everything from 100 ms up).
const D_BINS: usize = 10_001;

/// What the receive side measures: transit times and, per stream, the change in transit
/// between consecutive packets.
struct Tally {
    transits: Vec<u32>,
    /// Per stream: the last counted packet's sequence number and transit (ns), if any.
    last: Vec<Option<(u16, u32)>>,
    /// Histogram of |transit(n+1) − transit(n)| in [`D_BIN_NS`] bins.
    d_hist: Vec<u64>,
}

impl Tally {
    fn new(streams: usize, expected: usize) -> Self {
        Tally {
            transits: Vec::with_capacity(expected.min(50_000_000)),
            last: vec![None; streams],
            d_hist: vec![0; D_BINS],
        }
    }

    /// Records a counted packet of stream `i` with sequence `seq` and `transit` ns.
    fn record(&mut self, i: usize, seq: u16, transit: u32) {
        self.transits.push(transit);
        if let Some(Some((prev_seq, prev))) = self.last.get(i) {
            if seq == prev_seq.wrapping_add(1) {
                let d = u64::from(transit.abs_diff(*prev));
                self.d_hist[((d / D_BIN_NS) as usize).min(D_BINS - 1)] += 1;
            }
        }
        if let Some(l) = self.last.get_mut(i) {
            *l = Some((seq, transit));
        }
    }

    /// The `q` quantile of the histogram, µs (upper edge of its bin).
    fn d_quantile_us(&self, q: f64) -> f64 {
        let total: u64 = self.d_hist.iter().sum();
        if total == 0 {
            return 0.0;
        }
        let rank = ((total as f64 * q).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        for (bin, &count) in self.d_hist.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return ((bin as u64 + 1) * D_BIN_NS) as f64 / 1000.0;
            }
        }
        (D_BINS as u64 * D_BIN_NS) as f64 / 1000.0
    }
}

#[derive(Clone, Copy, Default)]
struct Slot {
    seq: u16,
    /// 0 empty, 1 sent in warm-up, 2 sent in window, 3 received (sent in window), 4 received
    /// (sent in warm-up).
    state: u8,
    sent_ns: u64,
}

/// The generator: one source socket, a few sinks, reused batches.
pub struct Generator {
    source: UdpSocket,
    sinks: Vec<UdpSocket>,
    epoll: Epoll,
    rx: RecvBatch,
    tx: SendBatch,
    payload: [u8; 160],
}

impl Generator {
    pub fn bind(streams: usize) -> io::Result<Generator> {
        let source = bind_loopback()?;
        let r = socket2::SockRef::from(&source);
        let _ = r.set_send_buffer_size(GEN_BUFFER);
        let n = sink_count(streams);
        let mut sinks = Vec::with_capacity(n);
        let epoll = Epoll::new(n + 1)?;
        for i in 0..n {
            let s = bind_loopback()?;
            let _ = socket2::SockRef::from(&s).set_recv_buffer_size(GEN_BUFFER);
            sys::enable_rx_timestamps(&s)?;
            epoll.add_readable(s.as_raw_fd(), i as u64)?;
            sinks.push(s);
        }
        Ok(Generator {
            source,
            sinks,
            epoll,
            rx: RecvBatch::new(64, 256, true),
            tx: SendBatch::new(64, 256),
            payload: tone_payload(),
        })
    }

    pub fn source_addr(&self) -> io::Result<SocketAddrV4> {
        local_v4(&self.source)
    }

    pub fn sink_addrs(&self) -> io::Result<Vec<SocketAddrV4>> {
        self.sinks.iter().map(local_v4).collect()
    }

    /// One measured run; `event` is called with `WindowStart` / `WindowEnd` as they happen.
    pub fn run(
        &mut self,
        targets: &[SocketAddrV4],
        spec: RunSpec,
        mut event: impl FnMut(GenEvent),
    ) -> io::Result<GenResult> {
        let RunSpec {
            warmup,
            seconds,
            drain,
            ssrc_base,
            tick,
            recv_on_source,
            tagged,
        } = spec;
        if recv_on_source {
            sys::enable_rx_timestamps(&self.source)?;
            // Every relayed stream comes back on this one socket: past rmem_max when allowed.
            if force_recv_buffer(&self.source, SOURCE_RECV_BUFFER).is_err() {
                let _ = socket2::SockRef::from(&self.source).set_recv_buffer_size(GEN_BUFFER);
            }
            self.epoll
                .add_readable(self.source.as_raw_fd(), SOURCE_TOKEN)?;
        }
        let tick_ns = (tick.as_nanos() as u64).clamp(10_000, PERIOD_NS);
        let n = targets.len();
        let mut res = GenResult::default();
        if n == 0 {
            return Ok(res);
        }
        let mut slots = vec![Slot::default(); n * SLOTS];
        let expected = (n as f64 * 50.0 * seconds * 1.05) as usize + 64;
        let mut tally = Tally::new(n, expected);
        let mut batch_meta: Vec<(u32, u16)> = Vec::with_capacity(self.tx.capacity());
        // Per-stream random-ish starting points, derived from the stream index.
        let seq0 = |i: usize| stream_start(i).0;
        let ts0 = |i: usize| stream_start(i).1;

        let t0 = sys::monotonic_ns() + 2_000_000;
        let window_start = t0 + warmup.as_nanos() as u64;
        let window_end = window_start + (seconds * 1e9) as u64;
        let due = |g: u64| t0 + ((g as u128 * PERIOD_NS as u128) / n as u128) as u64;
        let mut g: u64 = 0;
        let mut in_window = false;
        let (mut cpu_start, mut wall_start) = (0u64, 0u64);

        sys::sleep_until_monotonic(t0);
        loop {
            let now = sys::monotonic_ns();
            if !in_window && now >= window_start {
                in_window = true;
                event(GenEvent::WindowStart);
                cpu_start = sys::cpu_time_us(false)?;
                wall_start = sys::monotonic_ns();
            }
            if now >= window_end {
                break;
            }
            // Send every packet that is due, in batches.
            while due(g) <= now && due(g) < window_end {
                let counted = due(g) >= window_start;
                let i = (g % n as u64) as usize;
                let k = g / n as u64;
                let seq = seq0(i).wrapping_add(k as u16);
                let ts = ts0(i).wrapping_add((k as u32).wrapping_mul(SAMPLES));
                let ssrc = ssrc_base.wrapping_add(i as u32);
                let tagged_payload;
                let payload = if tagged {
                    tagged_payload = tag_payload(&self.payload, i as u32, seq);
                    &tagged_payload
                } else {
                    &self.payload
                };
                self.tx.push(targets[i], |out| {
                    write_rtp(out, false, 0, seq, ts, ssrc, payload)
                });
                batch_meta.push((i as u32 | if counted { 1 << 31 } else { 0 }, seq));
                g += 1;
                if self.tx.is_full() {
                    self.flush(&mut batch_meta, &mut slots, &mut res)?;
                }
            }
            if !self.tx.is_empty() {
                self.flush(&mut batch_meta, &mut slots, &mut res)?;
            }
            self.receive(n, ssrc_base, tagged, &mut slots, &mut tally, &mut res)?;
            let next = due(g).max(now + tick_ns).min(window_end);
            sys::sleep_until_monotonic(next);
        }
        let cpu_end = sys::cpu_time_us(false)?;
        let wall_end = sys::monotonic_ns();
        event(GenEvent::WindowEnd);
        let drain_end = sys::monotonic_ns() + drain.as_nanos() as u64;
        while sys::monotonic_ns() < drain_end {
            self.receive(n, ssrc_base, tagged, &mut slots, &mut tally, &mut res)?;
            sys::sleep_until_monotonic(sys::monotonic_ns() + tick_ns);
        }
        self.receive(n, ssrc_base, tagged, &mut slots, &mut tally, &mut res)?;
        if recv_on_source {
            self.epoll.remove(self.source.as_raw_fd())?;
        }

        let wall_us = (wall_end.saturating_sub(wall_start) / 1000).max(1);
        res.window_s = wall_us as f64 / 1e6;
        res.cpu_percent = 100.0 * cpu_end.saturating_sub(cpu_start) as f64 / wall_us as f64;
        summarize(&mut tally.transits, &mut res);
        res.stream_jitter_us_p99 = tally.d_quantile_us(0.99);
        Ok(res)
    }

    fn flush(
        &mut self,
        meta: &mut Vec<(u32, u16)>,
        slots: &mut [Slot],
        res: &mut GenResult,
    ) -> io::Result<()> {
        let sent_ns = sys::realtime_ns();
        let queued = self.tx.len();
        let sent = self.tx.send(&self.source)?;
        for (j, &(tagged, seq)) in meta.iter().enumerate() {
            let counted = tagged & (1 << 31) != 0;
            if j >= sent {
                if counted {
                    res.send_failed += 1;
                }
                continue;
            }
            let i = (tagged & !(1 << 31)) as usize;
            slots[i * SLOTS + seq as usize % SLOTS] = Slot {
                seq,
                state: if counted { 2 } else { 1 },
                sent_ns,
            };
            res.sent_total += 1;
            if counted {
                res.sent += 1;
            }
        }
        debug_assert_eq!(queued, meta.len());
        meta.clear();
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn receive(
        &mut self,
        n: usize,
        ssrc_base: u32,
        tagged: bool,
        slots: &mut [Slot],
        tally: &mut Tally,
        res: &mut GenResult,
    ) -> io::Result<()> {
        let ready = self.epoll.wait(Some(Duration::ZERO))?;
        for e in 0..ready {
            let sink = match self.epoll.token(e) {
                Some(SOURCE_TOKEN) => &self.source,
                Some(t) => match self.sinks.get(t as usize) {
                    Some(s) => s,
                    None => continue,
                },
                None => continue,
            };
            loop {
                let got = self.rx.recv(sink)?;
                let fallback_ns = sys::realtime_ns();
                for j in 0..got {
                    let data = self.rx.packet(j);
                    let Ok(p) = RtpPacket::try_parse(data) else {
                        res.stray += 1;
                        continue;
                    };
                    let (i, seq) = if tagged {
                        match read_tag(p.payload) {
                            Some((i, seq)) => (i as usize, seq),
                            None => {
                                res.untagged += 1;
                                continue;
                            }
                        }
                    } else {
                        (p.ssrc.wrapping_sub(ssrc_base) as usize, p.sequence)
                    };
                    if i >= n {
                        res.stray += 1;
                        continue;
                    }
                    let slot = &mut slots[i * SLOTS + seq as usize % SLOTS];
                    if slot.seq != seq || slot.state == 0 {
                        res.stray += 1;
                        continue;
                    }
                    let intact = if tagged {
                        p.payload[..] == tag_payload(&self.payload, i as u32, seq)[..]
                    } else {
                        p.payload == self.payload
                    };
                    match slot.state {
                        // Sent in the warm-up: counted in the totals only.
                        1 => {
                            slot.state = 4;
                            res.received_total += 1;
                        }
                        2 => {
                            slot.state = 3;
                            res.received += 1;
                            res.received_total += 1;
                            let rx_ns = self.rx.timestamp_ns(j).unwrap_or(fallback_ns);
                            let transit = rx_ns.saturating_sub(slot.sent_ns);
                            tally.record(i, seq, transit.min(u32::MAX as u64) as u32);
                            if !intact {
                                res.payload_mismatches += 1;
                            }
                        }
                        3 => res.duplicates += 1,
                        _ => {}
                    }
                }
                if got < self.rx.capacity() {
                    break;
                }
            }
        }
        Ok(())
    }
}

/// Fills the percentile fields from the transit times (ns).
fn summarize(transits: &mut [u32], res: &mut GenResult) {
    if transits.is_empty() {
        return;
    }
    transits.sort_unstable();
    let pick = |v: &[u32], q: f64| v[((v.len() as f64 * q) as usize).min(v.len() - 1)] as f64;
    let p50 = pick(transits, 0.50);
    res.transit_us_p50 = p50 / 1000.0;
    res.transit_us_p99 = pick(transits, 0.99) / 1000.0;
    res.transit_us_max = transits[transits.len() - 1] as f64 / 1000.0;
    let mut dev: Vec<u32> = transits
        .iter()
        .map(|&t| (t as f64 - p50).abs() as u32)
        .collect();
    dev.sort_unstable();
    res.jitter_us_p99 = pick(&dev, 0.99) / 1000.0;
}

fn emit(out: &mut impl Write, ev: &GenEvent) -> io::Result<()> {
    let line = serde_json::to_string(ev).map_err(io::Error::other)?;
    writeln!(out, "{line}")?;
    out.flush()
}

/// `outdial bench media-gen --streams N`: binds, says `ready`, then runs commands from stdin
/// until `exit` or end of input.
pub fn main(streams: usize) -> io::Result<()> {
    let _ = sys::raise_nofile(1024);
    let stdout = io::stdout();
    let mut out = stdout.lock();
    let mut gen = match Generator::bind(streams) {
        Ok(g) => g,
        Err(e) => {
            emit(
                &mut out,
                &GenEvent::Error {
                    message: format!("generator cannot bind its sockets: {e}"),
                },
            )?;
            return Err(e);
        }
    };
    emit(
        &mut out,
        &GenEvent::Ready {
            source: gen.source_addr()?,
            sinks: gen.sink_addrs()?,
        },
    )?;
    let stdin = io::stdin();
    for line in stdin.lock().lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let cmd: GenCommand = match serde_json::from_str(&line) {
            Ok(c) => c,
            Err(e) => {
                emit(
                    &mut out,
                    &GenEvent::Error {
                        message: format!("bad command {line:?}: {e}"),
                    },
                )?;
                continue;
            }
        };
        match cmd {
            GenCommand::Exit => break,
            GenCommand::Run {
                targets,
                warmup_ms,
                seconds,
                drain_ms,
                ssrc_base,
                tick_us,
                recv_on_source,
                tagged,
            } => {
                let mut event_err = Ok(());
                let spec = RunSpec {
                    warmup: Duration::from_millis(warmup_ms),
                    seconds,
                    drain: Duration::from_millis(drain_ms),
                    ssrc_base,
                    tick: Duration::from_micros(tick_us),
                    recv_on_source,
                    tagged,
                };
                let result = gen.run(&targets, spec, |ev| {
                    if event_err.is_ok() {
                        event_err = emit(&mut out, &ev);
                    }
                });
                event_err?;
                let ev = match result {
                    Ok(r) => GenEvent::Result(r),
                    Err(e) => GenEvent::Error {
                        message: format!("generator failed: {e}"),
                    },
                };
                emit(&mut out, &ev)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::Codec;

    #[test]
    fn tone_survives_decode_encode() {
        let p = tone_payload();
        let mut pcm = Vec::new();
        Codec::Pcmu.decode(&p, &mut pcm);
        let mut back = Vec::new();
        Codec::Pcmu.encode(&pcm, &mut back);
        assert_eq!(&back[..], &p[..]);
        assert!(p.iter().any(|&b| b != p[0]));
    }

    #[test]
    fn loopback_run_without_relay_loses_nothing() {
        // Targets are the generator's own sinks: measures the generator and the kernel only.
        let mut g = Generator::bind(8).unwrap();
        let sinks = g.sink_addrs().unwrap();
        let targets: Vec<_> = (0..8).map(|i| sinks[i % sinks.len()]).collect();
        let mut events = Vec::new();
        let r = g
            .run(
                &targets,
                RunSpec {
                    warmup: Duration::from_millis(100),
                    seconds: 0.3,
                    drain: Duration::from_millis(100),
                    ssrc_base: 7000,
                    tick: Duration::from_nanos(TICK_NS),
                    recv_on_source: false,
                    tagged: false,
                },
                |e| events.push(format!("{e:?}")),
            )
            .unwrap();
        assert_eq!(events, ["WindowStart", "WindowEnd"]);
        assert!(r.sent >= 8 * 14, "{r:?}");
        assert_eq!(r.received, r.sent, "{r:?}");
        assert_eq!(r.payload_mismatches, 0);
        assert!(
            r.transit_us_p50 > 0.0 && r.transit_us_p50 < 100_000.0,
            "{r:?}"
        );
    }

    #[test]
    fn stream_jitter_counts_consecutive_packets_only() {
        let mut t = Tally::new(2, 16);
        // Stream 0: transits 1.000, 1.025, 1.001 ms; stream 1 far slower but steady.
        t.record(0, 10, 1_000_000);
        t.record(1, 7, 9_000_000);
        t.record(0, 11, 1_025_000);
        t.record(1, 8, 9_000_000);
        t.record(0, 12, 1_001_000);
        // A gap (13 missing): no difference taken across it.
        t.record(0, 14, 5_000_000);
        assert_eq!(t.transits.len(), 6);
        assert_eq!(t.d_hist.iter().sum::<u64>(), 3);
        // Differences 25 and 24 µs (the 20-30 µs bin) and 0 (the first bin).
        assert_eq!(t.d_quantile_us(0.99), 30.0);
        assert_eq!(t.d_quantile_us(0.3), 10.0);
        assert_eq!(Tally::new(1, 1).d_quantile_us(0.99), 0.0);
    }

    #[test]
    fn summarize_percentiles() {
        let mut t: Vec<u32> = (1..=100).map(|v| v * 1000).collect();
        let mut r = GenResult::default();
        summarize(&mut t, &mut r);
        assert_eq!(r.transit_us_p50, 51.0);
        assert_eq!(r.transit_us_p99, 100.0);
        assert_eq!(r.jitter_us_p99, 50.0);
    }

    #[test]
    fn packets_sent_back_to_the_source_are_counted_when_asked() {
        // What a bridged call's legs do: answer where the packets come from.
        let mut g = Generator::bind(4).unwrap();
        let source = g.source_addr().unwrap();
        let spec = |recv_on_source| RunSpec {
            warmup: Duration::from_millis(100),
            seconds: 0.3,
            drain: Duration::from_millis(100),
            ssrc_base: 9000,
            tick: Duration::from_nanos(TICK_NS),
            recv_on_source,
            tagged: false,
        };
        let r = g.run(&[source; 4], spec(true), |_| {}).unwrap();
        assert!(r.sent > 0);
        assert_eq!(r.received, r.sent, "{r:?}");
        // Not asked: the source is not read, so nothing comes back.
        let r = g.run(&[source; 4], spec(false), |_| {}).unwrap();
        assert_eq!(r.received, 0, "{r:?}");
    }

    #[test]
    fn tags_survive_mulaw_decode_encode_and_read_back() {
        let base = tone_payload();
        for (stream, seq) in [(0u32, 0u16), (1, 1), (299, 0xBEEF), (u32::MAX, u16::MAX)] {
            let p = tag_payload(&base, stream, seq);
            assert_eq!(read_tag(&p), Some((stream, seq)));
            // What a call does with it on its way to an agent and back.
            let mut pcm = Vec::new();
            Codec::Pcmu.decode(&p, &mut pcm);
            let mut back = Vec::new();
            Codec::Pcmu.encode(&pcm, &mut back);
            assert_eq!(&back[..], &p[..]);
        }
        // Silence, the bare tone and a damaged tag carry none.
        assert_eq!(read_tag(&[0xFF; 160]), None);
        assert_eq!(read_tag(&base), None);
        let mut p = tag_payload(&base, 7, 9);
        p[5] ^= 1;
        assert_eq!(read_tag(&p), None);
        assert_eq!(read_tag(&p[..4]), None);
    }

    #[test]
    fn tagged_run_matches_packets_by_payload_whatever_their_header() {
        // The source socket answers itself: packets come back with the header they left with,
        // but the tagged run reads only their payloads.
        let mut g = Generator::bind(3).unwrap();
        let source = g.source_addr().unwrap();
        let spec = RunSpec {
            warmup: Duration::from_millis(100),
            seconds: 0.3,
            drain: Duration::from_millis(100),
            ssrc_base: 0,
            tick: Duration::from_nanos(TICK_NS),
            recv_on_source: true,
            tagged: true,
        };
        let r = g.run(&[source; 3], spec, |_| {}).unwrap();
        assert!(r.sent > 0);
        assert_eq!(r.received, r.sent, "{r:?}");
        assert_eq!(r.received_total, r.sent_total, "{r:?}");
        assert!(r.sent_total > r.sent, "{r:?}");
        assert_eq!((r.payload_mismatches, r.untagged, r.stray), (0, 0, 0));
    }
}
