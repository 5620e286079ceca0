//! Adaptive jitter buffer for the receive and analysis path, sans-IO.
//!
//! [`JitterBuffer::push`] takes each received audio (or comfort-noise) RTP packet with its arrival
//! time; once the first packet is in, [`JitterBuffer::pop`] gives exactly one frame per packet
//! time of the caller's clock (20 ms at the usual ptime, which is learned from the timestamps):
//! the packet due at that moment ([`FrameKind::Audio`]), silence the sender meant
//! ([`FrameKind::Comfort`]: comfort noise, payload type 13, or a gap in its timestamps with no
//! packet missing), or a stand-in for a packet that is missing or late ([`FrameKind::Concealed`];
//! [`Concealer`] turns it into samples). Consumers therefore see an unbroken 20 ms timeline.
//!
//! * **Order and loss**: packets are reordered by sequence number; duplicates and packets whose
//!   turn has passed are dropped and counted; a sequence gap at playout counts as lost.
//!   Non-audio packets of the stream (telephone-events) are noted with
//!   [`JitterBuffer::note_foreign`] so their sequence numbers do not read as loss.
//! * **Delay**: the playout delay (how long a packet waits, smoothed) is steered towards
//!   `ptime + 4 × jitter` (RFC 3550 interarrival jitter), within the configured min/max. It grows by
//!   inserting one frame and shrinks by skipping one: freely in silence, at a talkspurt start
//!   (marker bit: the delay is re-anchored), and mid-speech only when it is far off, so a sender
//!   clock drifting by ±0.5 % costs one frame every few seconds.
//! * **Resync**: a new SSRC or a jump in timestamps or sequence numbers is put on the running
//!   timeline right after what is queued (no flush, no flood of concealment): immediately with
//!   the marker bit, otherwise once two consecutive packets agree, so one stray packet cannot
//!   derail it. Sequence numbers (u16) and timestamps (u32) are unwrapped, so wraparound is
//!   seamless.
//!
//! It must not sleep, spawn, read the clock or touch a socket (the caller passes `now`), must not
//! allocate per packet (payloads are copied into slots allocated once), and no packet, however
//! odd, may make it panic.

use std::time::{Duration, Instant};

use super::rtp::RtpPacket;

/// RTP payload type of comfort noise (RFC 3389).
pub const COMFORT_NOISE_PT: u8 = 13;

/// Packets the buffer can hold (power of two: a slot is `seq % SLOTS`).
const SLOTS: usize = 64;
/// Sequence numbers remembered for duplicate and loss accounting.
const SEQ_WINDOW: i64 = 256;
/// A sequence number this far ahead of the highest seen is a jump (RFC 3550 A.1).
const MAX_DROPOUT: i64 = 3000;
/// A sequence number this far behind the highest seen is a jump (RFC 3550 A.1).
const MAX_MISORDER: i64 = 100;
/// A packet due this much before its arrival, or later than `max_delay` plus this, is a jump.
const JUMP: Duration = Duration::from_secs(1);
/// A caller that has not popped for this long skips ahead instead of catching up frame by frame.
const STALL: Duration = Duration::from_secs(1);
/// Frames to wait after one delay adaptation before the next.
const ADAPT_COOLDOWN: u32 = 10;
/// Packets whose jitter must be measured before the target follows it (until then: initial delay).
const WARMUP_PACKETS: u64 = 50;
/// Target delay = ptime + this × interarrival jitter.
const JITTER_FACTOR: f64 = 4.0;
/// Payload bytes reserved per slot up front (40 ms of G.711); bigger payloads grow it once.
const SLOT_BYTES: usize = 320;

/// Limits of the buffer; see [`JitterConfig::default`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JitterConfig {
    /// RTP clock rate of the stream, in Hz (8000 for G.711).
    pub clock_rate: u32,
    /// Packet duration assumed until the stream shows another, in clock ticks (160 = 20 ms).
    pub ptime: u32,
    /// The delay never goes below this...
    pub min_delay: Duration,
    /// ...nor above this.
    pub max_delay: Duration,
    /// Delay used until enough jitter has been measured.
    pub initial_delay: Duration,
}

impl Default for JitterConfig {
    /// 8 kHz, 20 ms packets, 40 ms to start with, 20-200 ms.
    fn default() -> Self {
        JitterConfig {
            clock_rate: 8000,
            ptime: 160,
            min_delay: Duration::from_millis(20),
            max_delay: Duration::from_millis(200),
            initial_delay: Duration::from_millis(40),
        }
    }
}

impl JitterConfig {
    /// The default with the delay range and initial delay given in milliseconds.
    pub fn from_ms(min_ms: u32, max_ms: u32, initial_ms: u32) -> Self {
        JitterConfig {
            min_delay: Duration::from_millis(min_ms.into()),
            max_delay: Duration::from_millis(max_ms.into()),
            initial_delay: Duration::from_millis(initial_ms.into()),
            ..JitterConfig::default()
        }
    }

    /// Makes every value usable: a zero rate becomes 8000, ptime is kept within 10-120 ms,
    /// max is at least min, the initial delay lies in between, and the whole range fits the
    /// buffer.
    fn sanitized(mut self) -> Self {
        if self.clock_rate == 0 {
            self.clock_rate = 8000;
        }
        let min_ptime = (self.clock_rate / 100).max(1);
        let max_ptime = (self.clock_rate.saturating_mul(3) / 25).max(min_ptime);
        self.ptime = self.ptime.clamp(min_ptime, max_ptime);
        let cap = Duration::from_secs(1);
        self.max_delay = self.max_delay.min(cap);
        self.min_delay = self.min_delay.min(self.max_delay);
        self.initial_delay = self.initial_delay.clamp(self.min_delay, self.max_delay);
        self
    }
}

/// What a popped frame holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    /// A received packet, played in its turn.
    Audio,
    /// Silence the sender meant: a comfort-noise packet, or a stretch of time the sender's
    /// timestamps skipped with no packet missing (silence suppression, a paused sender).
    Comfort,
    /// No packet for this turn: it is lost or late, not arrived yet, or the buffer is growing its
    /// delay. The payload is empty; [`Concealer`] makes the samples.
    Concealed,
}

/// One frame out of [`JitterBuffer::pop`]; `payload` borrows from the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JitterFrame<'a> {
    pub kind: FrameKind,
    /// RTP timestamp of the frame (of the packet, or of the turn it stands in for).
    pub timestamp: u32,
    /// Sequence number of the packet played (`None` unless a packet was played).
    pub sequence: Option<u16>,
    /// The played packet's marker bit (false when no packet was played).
    pub marker: bool,
    /// The packet's payload type; for concealed frames the last audio payload type.
    pub payload_type: u8,
    /// The packet's payload (empty for concealed frames and comfort gaps).
    pub payload: &'a [u8],
    /// Duration of the frame in clock ticks (the stream's ptime).
    pub samples: u32,
}

/// What [`JitterBuffer::push`] did with a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// Stored; it plays in its turn.
    Buffered,
    /// Seen before: dropped.
    Duplicate,
    /// Its turn has passed: dropped.
    Late,
    /// It starts a new stream (SSRC change or jump), now put on the buffer's timeline.
    Resync,
    /// It looks like a new stream; held until the next packet confirms it.
    Held,
}

/// Counters and gauges of one buffer, for the attempt record.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct JitterStats {
    /// Packets pushed (audio and comfort noise).
    pub received: u64,
    /// Packets played in their turn.
    pub played: u64,
    /// Packets dropped because they had been received before.
    pub duplicates: u64,
    /// Packets dropped because they arrived after their turn.
    pub late: u64,
    /// Packets that never played because they were missing in their turn (late ones included).
    pub lost: u64,
    /// Frames made up for a missing packet or to grow the delay.
    pub concealed: u64,
    /// Comfort (silence) frames given for comfort noise or a gap in the sender's timestamps.
    pub comfort: u64,
    /// Packets that arrived after a packet with a higher sequence number.
    pub reordered: u64,
    /// Packets dropped on purpose: to shrink the delay, or a new stream's packet not confirmed.
    pub discarded: u64,
    /// New streams taken on (new SSRC, timestamp or sequence jump) and caller stalls skipped.
    pub resyncs: u64,
    /// Audio buffered ahead of the playout point now, in ms.
    pub depth_ms: f64,
    /// Smoothed time a packet waits in the buffer before it plays, in ms.
    pub delay_ms: f64,
    /// Delay the buffer steers towards, in ms.
    pub target_ms: f64,
    /// RFC 3550 interarrival jitter, in ms.
    pub jitter_ms: f64,
}

#[derive(Debug, Clone)]
struct Slot {
    used: bool,
    /// Sequence number and timestamp on the buffer's own (unwrapped, rebased) timeline.
    seq: i64,
    ts: i64,
    /// What the packet carried, for the output.
    raw_seq: u16,
    raw_ts: u32,
    marker: bool,
    payload_type: u8,
    payload: Vec<u8>,
}

/// The stream being played.
#[derive(Debug, Clone)]
struct Stream {
    ssrc: u32,
    /// Added to received sequence numbers and timestamps to put them on the buffer's timeline
    /// (non-zero after an SSRC change or a jump).
    seq_offset: u16,
    ts_offset: u32,
    /// Packet duration in ticks.
    ptime: i64,
    /// A different ptime seen `.1` times in a row.
    ptime_vote: (i64, u8),
    /// Timestamp of the next turn.
    next_ts: i64,
    /// When the next turn is due.
    next_due: Instant,
    /// Sequence number of the last packet played (or passed over).
    last_played: i64,
    last_played_ts: Option<i64>,
    /// Highest sequence number seen; reference for unwrapping.
    highest: i64,
    /// Highest timestamp seen; reference for unwrapping.
    ts_top: i64,
    /// The last packet played was comfort noise: gaps are silence, not loss.
    comfort: bool,
    last_audio_pt: u8,
    /// Smoothed slack (due time − arrival) of received packets, in ns.
    delay_ns: f64,
    cooldown: u32,
    /// Previous relative transit time for the jitter estimate, in ticks.
    transit: Option<f64>,
}

impl Stream {
    fn seq_of(&self, p: &RtpPacket<'_>) -> i64 {
        unwrap_seq(self.highest, p.sequence.wrapping_add(self.seq_offset))
    }

    fn ts_of(&self, p: &RtpPacket<'_>) -> i64 {
        unwrap_ts(self.ts_top, p.timestamp.wrapping_add(self.ts_offset))
    }
}

/// The first packet of what may be a new stream, kept until the next packet confirms it.
#[derive(Debug, Clone)]
struct Probe {
    active: bool,
    ssrc: u32,
    seq: u16,
    ts: u32,
    payload_type: u8,
    arrival: Option<Instant>,
    payload: Vec<u8>,
}

/// Which sequence numbers were received, over the last [`SEQ_WINDOW`].
#[derive(Debug, Clone, Default)]
struct SeqWindow {
    top: Option<i64>,
    bits: [u64; 4],
}

impl SeqWindow {
    fn bit(seq: i64) -> (usize, u64) {
        let index = seq.rem_euclid(SEQ_WINDOW) as usize;
        (index / 64, 1u64 << (index % 64))
    }

    /// `None` when `seq` is too old to know.
    fn contains(&self, seq: i64) -> Option<bool> {
        let Some(top) = self.top else {
            return Some(false);
        };
        if seq > top {
            return Some(false);
        }
        if seq <= top - SEQ_WINDOW {
            return None;
        }
        let (word, mask) = Self::bit(seq);
        Some(self.bits[word] & mask != 0)
    }

    fn insert(&mut self, seq: i64) {
        let top = match self.top {
            None => {
                self.bits = [0; 4];
                self.top = Some(seq);
                seq
            }
            Some(top) if seq > top => {
                if seq - top >= SEQ_WINDOW {
                    self.bits = [0; 4];
                } else {
                    for s in top + 1..=seq {
                        let (word, mask) = Self::bit(s);
                        self.bits[word] &= !mask;
                    }
                }
                self.top = Some(seq);
                seq
            }
            Some(top) => top,
        };
        if seq > top - SEQ_WINDOW {
            let (word, mask) = Self::bit(seq);
            self.bits[word] |= mask;
        }
    }

    /// How many sequence numbers strictly between `after` and `before` were not received.
    fn unseen_between(&self, after: i64, before: i64) -> u64 {
        let mut n = 0;
        for s in after.saturating_add(1)..before {
            if self.contains(s) != Some(true) {
                n += 1;
            }
        }
        n
    }
}

/// The adaptive jitter buffer; see the module documentation.
#[derive(Debug, Clone)]
pub struct JitterBuffer {
    cfg: JitterConfig,
    slots: Vec<Slot>,
    buffered: usize,
    stream: Option<Stream>,
    probe: Probe,
    seen: SeqWindow,
    /// RFC 3550 interarrival jitter, in ticks.
    jitter: f64,
    /// Arrival time that is tick 0 for the jitter estimate.
    epoch: Option<Instant>,
    /// Jitter samples taken (the target follows the jitter after [`WARMUP_PACKETS`]).
    measured: u64,
    stats: JitterStats,
}

/// Nanoseconds from `b` to `a` (negative when `a` is earlier).
fn signed_ns(a: Instant, b: Instant) -> i64 {
    if a >= b {
        i64::try_from((a - b).as_nanos()).unwrap_or(i64::MAX)
    } else {
        i64::try_from((b - a).as_nanos()).map_or(i64::MIN, |n| -n)
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

fn duration_ns(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

/// Whole turns of `turn_ns` needed to cover `ns` (0 when `ns` is not positive).
fn turns_for(ns: i64, turn_ns: i64) -> i64 {
    if ns <= 0 {
        0
    } else {
        (ns + turn_ns - 1) / turn_ns.max(1)
    }
}

impl Default for JitterBuffer {
    fn default() -> Self {
        JitterBuffer::new(JitterConfig::default())
    }
}

impl JitterBuffer {
    pub fn new(config: JitterConfig) -> Self {
        let cfg = config.sanitized();
        let slot = Slot {
            used: false,
            seq: 0,
            ts: 0,
            raw_seq: 0,
            raw_ts: 0,
            marker: false,
            payload_type: 0,
            payload: Vec::with_capacity(SLOT_BYTES),
        };
        JitterBuffer {
            cfg,
            slots: vec![slot; SLOTS],
            buffered: 0,
            stream: None,
            probe: Probe {
                active: false,
                ssrc: 0,
                seq: 0,
                ts: 0,
                payload_type: 0,
                arrival: None,
                payload: Vec::with_capacity(SLOT_BYTES),
            },
            seen: SeqWindow::default(),
            jitter: 0.0,
            epoch: None,
            measured: 0,
            stats: JitterStats::default(),
        }
    }

    pub fn config(&self) -> &JitterConfig {
        &self.cfg
    }

    /// When the next frame is due; `None` until the first packet has arrived.
    pub fn next_due(&self) -> Option<Instant> {
        self.stream.as_ref().map(|s| s.next_due)
    }

    /// The SSRC being played.
    pub fn ssrc(&self) -> Option<u32> {
        self.stream.as_ref().map(|s| s.ssrc)
    }

    /// Packets stored and not played yet.
    pub fn buffered(&self) -> usize {
        self.buffered
    }

    fn ticks_to_ns(&self, ticks: i64) -> i64 {
        ticks_to_ns(ticks, self.cfg.clock_rate)
    }

    fn ptime(&self) -> i64 {
        self.stream
            .as_ref()
            .map_or(i64::from(self.cfg.ptime), |s| s.ptime)
    }

    fn ptime_ns(&self) -> i64 {
        self.ticks_to_ns(self.ptime()).max(1)
    }

    /// The delay the buffer steers towards, in ns.
    fn target_ns(&self) -> f64 {
        if self.measured < WARMUP_PACKETS {
            return duration_ns(self.cfg.initial_delay) as f64;
        }
        let min = duration_ns(self.cfg.min_delay) as f64;
        let max = duration_ns(self.cfg.max_delay) as f64;
        let jitter_ns = self.jitter * 1e9 / f64::from(self.cfg.clock_rate);
        (self.ptime_ns() as f64 + JITTER_FACTOR * jitter_ns).clamp(min, max)
    }

    /// Takes one received packet: audio or comfort noise of the stream being played (or of a
    /// new one). `arrival` is when it came off the socket.
    pub fn push(&mut self, packet: &RtpPacket<'_>, arrival: Instant) -> Pushed {
        self.stats.received += 1;
        self.push_inner(packet, arrival)
    }

    fn push_inner(&mut self, p: &RtpPacket<'_>, arrival: Instant) -> Pushed {
        let Some(stream) = self.stream.as_ref() else {
            self.anchor(p, arrival);
            return Pushed::Buffered;
        };
        if p.ssrc != stream.ssrc {
            return self.new_stream_candidate(p, arrival);
        }
        let seq = stream.seq_of(p);
        let ts = stream.ts_of(p);
        if self.seen.contains(seq) == Some(true) {
            self.stats.duplicates += 1;
            return Pushed::Duplicate;
        }
        let slack = self.slack_ns(ts, arrival);
        let dseq = seq - stream.highest;
        let jump_ns = duration_ns(JUMP);
        let max_slack = duration_ns(self.cfg.max_delay).saturating_add(jump_ns);
        if !(-MAX_MISORDER..=MAX_DROPOUT).contains(&dseq)
            || !(-jump_ns..=max_slack).contains(&slack)
        {
            return self.new_stream_candidate(p, arrival);
        }
        self.accept(p, seq, ts, arrival, slack)
    }

    /// Stores a packet of the stream being played (`seq`, `ts` on the buffer's timeline), or
    /// drops it as late.
    fn accept(
        &mut self,
        p: &RtpPacket<'_>,
        seq: i64,
        ts: i64,
        arrival: Instant,
        slack: i64,
    ) -> Pushed {
        // A pending new-stream candidate was a stray.
        self.drop_probe();
        self.measure(ts, arrival, slack);
        if p.marker && self.buffered == 0 {
            // Talkspurt start with nothing queued: re-anchor the delay on the target.
            self.reanchor(seq, ts, arrival);
        }
        let Some(s) = self.stream.as_ref() else {
            return Pushed::Late;
        };
        if seq <= s.last_played || ts + s.ptime <= s.next_ts {
            self.stats.late += 1;
            if seq > s.last_played {
                // Its turn went by concealed; the play that follows will not count it missing.
                self.stats.lost += 1;
            }
            if seq < s.highest {
                self.stats.reordered += 1;
            }
            self.seen.insert(seq);
            return Pushed::Late;
        }
        if seq - s.last_played > SLOTS as i64 {
            self.pass_over(seq - SLOTS as i64);
        }
        self.store(p, seq, ts);
        Pushed::Buffered
    }

    /// Notes a packet of the stream that is not audio (a telephone-event): its sequence number is
    /// accounted for, so it is neither a gap nor a duplicate.
    pub fn note_foreign(&mut self, packet: &RtpPacket<'_>) {
        let Some(stream) = self.stream.as_mut() else {
            return;
        };
        if packet.ssrc != stream.ssrc {
            return;
        }
        let seq = stream.seq_of(packet);
        let d = seq - stream.highest;
        if !(-MAX_MISORDER..=MAX_DROPOUT).contains(&d) {
            return;
        }
        stream.highest = stream.highest.max(seq);
        self.seen.insert(seq);
    }

    /// Slack of a packet with timestamp `ts` arriving at `arrival`: how long it would wait
    /// before its turn (negative: its turn has passed).
    fn slack_ns(&self, ts: i64, arrival: Instant) -> i64 {
        let Some(s) = self.stream.as_ref() else {
            return 0;
        };
        signed_ns(s.next_due, arrival).saturating_add(self.ticks_to_ns(ts - s.next_ts))
    }

    /// Updates the RFC 3550 jitter estimate and the smoothed delay with one packet.
    fn measure(&mut self, ts: i64, arrival: Instant, slack: i64) {
        let rate = f64::from(self.cfg.clock_rate);
        let epoch = *self.epoch.get_or_insert(arrival);
        let arrival_ticks = signed_ns(arrival, epoch) as f64 * rate / 1e9;
        let transit = arrival_ticks - ts as f64;
        let Some(s) = self.stream.as_mut() else {
            return;
        };
        if let Some(prev) = s.transit {
            let d = (transit - prev).abs();
            // A difference over a second is a discontinuity, not jitter.
            if d < rate {
                self.jitter += (d - self.jitter) / 16.0;
                self.measured += 1;
            }
        }
        s.transit = Some(transit);
        s.delay_ns += (slack as f64 - s.delay_ns) / 16.0;
    }

    /// Moves the playout point so the packet (`seq`, `ts`) arriving at `arrival` plays on the
    /// first turn at least the target delay later; the turns keep their cadence. Audio already
    /// played is never played again.
    fn reanchor(&mut self, seq: i64, ts: i64, arrival: Instant) {
        let target = self.target_ns() as i64;
        let ptime_ns = self.ptime_ns();
        let Some(s) = self.stream.as_mut() else {
            return;
        };
        if seq <= s.last_played {
            return;
        }
        let turns = turns_for(signed_ns(shift(arrival, target), s.next_due), ptime_ns);
        let next_ts = ts - turns * s.ptime;
        if s.last_played_ts
            .is_some_and(|played| next_ts < played + s.ptime)
        {
            return;
        }
        s.next_ts = next_ts;
        s.delay_ns = (signed_ns(s.next_due, arrival) + turns * ptime_ns) as f64;
        s.cooldown = ADAPT_COOLDOWN;
    }

    /// Starts the buffer on its first packet: it plays after the initial delay.
    fn anchor(&mut self, p: &RtpPacket<'_>, arrival: Instant) {
        let target = self.target_ns() as i64;
        let seq = i64::from(p.sequence);
        let ts = i64::from(p.timestamp);
        self.stream = Some(Stream {
            ssrc: p.ssrc,
            seq_offset: 0,
            ts_offset: 0,
            ptime: i64::from(self.cfg.ptime),
            ptime_vote: (0, 0),
            next_ts: ts,
            next_due: shift(arrival, target),
            last_played: seq - 1,
            last_played_ts: None,
            highest: seq - 1,
            ts_top: ts,
            comfort: false,
            last_audio_pt: if p.payload_type == COMFORT_NOISE_PT {
                0
            } else {
                p.payload_type
            },
            delay_ns: target as f64,
            cooldown: 0,
            transit: None,
        });
        self.measure(ts, arrival, target);
        self.store(p, seq, ts);
    }

    /// Puts a new stream (new SSRC, or a jump in timestamps or sequence numbers) on the running
    /// timeline: its packet `p` becomes the one after the last received, played no sooner than
    /// the target delay after `arrival`. What is queued keeps playing; nothing is flushed.
    fn rebase(&mut self, p: &RtpPacket<'_>, arrival: Instant) {
        let target = self.target_ns() as i64;
        let ptime_ns = self.ptime_ns();
        let Some(s) = self.stream.as_mut() else {
            return;
        };
        self.stats.resyncs += 1;
        // Keep sequence numbers when only the timestamps jumped (loss still counts).
        let seq_raw = unwrap_seq(s.highest, p.sequence.wrapping_add(s.seq_offset));
        let dseq = seq_raw - s.highest;
        let seq = if p.ssrc == s.ssrc && (1..=MAX_MISORDER).contains(&dseq) {
            seq_raw
        } else {
            s.highest + 1
        };
        s.seq_offset = (seq as u16).wrapping_sub(p.sequence);
        let after_queue = s.ts_top + (seq - s.highest) * s.ptime;
        let turns = turns_for(signed_ns(shift(arrival, target), s.next_due), ptime_ns);
        let ts = after_queue.max(s.next_ts + turns * s.ptime);
        s.ts_offset = (ts as u32).wrapping_sub(p.timestamp);
        s.ssrc = p.ssrc;
        s.transit = None;
        let wait = ticks_to_ns(ts - s.next_ts, self.cfg.clock_rate);
        s.delay_ns = (signed_ns(s.next_due, arrival) + wait) as f64;
    }

    /// A packet that is not of the stream being played: rebase on it at once if it has the
    /// marker bit, else hold it until the next packet confirms the new stream.
    fn new_stream_candidate(&mut self, p: &RtpPacket<'_>, arrival: Instant) -> Pushed {
        if p.marker {
            self.drop_probe();
            self.rebase(p, arrival);
            self.accept_rebased(p, arrival);
            return Pushed::Resync;
        }
        let probe = &self.probe;
        let confirms = probe.active
            && probe.ssrc == p.ssrc
            && p.sequence == probe.seq.wrapping_add(1)
            && p.timestamp.wrapping_sub(probe.ts) <= self.cfg.clock_rate;
        if confirms {
            let payload = std::mem::take(&mut self.probe.payload);
            let held = RtpPacket {
                marker: false,
                payload_type: self.probe.payload_type,
                sequence: self.probe.seq,
                timestamp: self.probe.ts,
                ssrc: self.probe.ssrc,
                payload: &payload,
            };
            let held_arrival = self.probe.arrival.unwrap_or(arrival);
            self.probe.active = false;
            self.rebase(&held, held_arrival);
            self.accept_rebased(&held, held_arrival);
            self.probe.payload = payload;
            self.push_inner(p, arrival);
            return Pushed::Resync;
        }
        self.drop_probe();
        let probe = &mut self.probe;
        probe.active = true;
        probe.ssrc = p.ssrc;
        probe.seq = p.sequence;
        probe.ts = p.timestamp;
        probe.payload_type = p.payload_type;
        probe.arrival = Some(arrival);
        probe.payload.clear();
        probe.payload.extend_from_slice(p.payload);
        Pushed::Held
    }

    /// Accepts the packet a rebase was made on (no second jump check: no recursion).
    fn accept_rebased(&mut self, p: &RtpPacket<'_>, arrival: Instant) {
        let Some(s) = self.stream.as_ref() else {
            return;
        };
        let (seq, ts) = (s.seq_of(p), s.ts_of(p));
        let slack = self.slack_ns(ts, arrival);
        self.accept(p, seq, ts, arrival, slack);
    }

    fn drop_probe(&mut self) {
        if self.probe.active {
            self.probe.active = false;
            self.stats.discarded += 1;
        }
    }

    /// Gives up on every sequence number up to `upto`: queued packets there are discarded,
    /// missing ones lost.
    fn pass_over(&mut self, upto: i64) {
        let Some(last) = self.stream.as_ref().map(|s| s.last_played) else {
            return;
        };
        self.stats.lost += self.seen.unseen_between(last, upto + 1);
        for seq in last + 1..=upto {
            let slot = &mut self.slots[slot_index(seq)];
            if slot.used && slot.seq == seq {
                slot.used = false;
                self.buffered -= 1;
                self.stats.discarded += 1;
            }
        }
        if let Some(s) = self.stream.as_mut() {
            s.last_played = upto;
            s.last_played_ts = None;
        }
    }

    /// Stores an accepted packet (`seq` and `ts` on the buffer's timeline) in its slot.
    fn store(&mut self, p: &RtpPacket<'_>, seq: i64, ts: i64) {
        let neighbour_ts = {
            let prev = &self.slots[slot_index(seq - 1)];
            if prev.used && prev.seq == seq - 1 {
                Some(prev.ts)
            } else {
                self.stream
                    .as_ref()
                    .filter(|s| s.last_played == seq - 1)
                    .and_then(|s| s.last_played_ts)
            }
        };
        let slot = &mut self.slots[slot_index(seq)];
        if slot.used {
            // Cannot happen (a slot holds one of the next SLOTS numbers); counted, not trusted.
            self.stats.discarded += 1;
        } else {
            self.buffered += 1;
        }
        slot.used = true;
        slot.seq = seq;
        slot.ts = ts;
        slot.raw_seq = p.sequence;
        slot.raw_ts = p.timestamp;
        slot.marker = p.marker;
        slot.payload_type = p.payload_type;
        slot.payload.clear();
        slot.payload.extend_from_slice(p.payload);
        self.seen.insert(seq);

        let min_ptime = i64::from((self.cfg.clock_rate / 100).max(1));
        let max_ptime = i64::from(self.cfg.clock_rate.saturating_mul(3) / 25);
        let Some(s) = self.stream.as_mut() else {
            return;
        };
        if seq < s.highest {
            self.stats.reordered += 1;
        } else {
            s.highest = seq;
        }
        s.ts_top = s.ts_top.max(ts);
        // Learn the packet time from consecutive packets (three in a row to switch).
        if let Some(prev_ts) = neighbour_ts {
            let delta = ts - prev_ts;
            if delta == s.ptime || !(min_ptime..=max_ptime).contains(&delta) {
                s.ptime_vote = (0, 0);
            } else if s.ptime_vote.0 == delta {
                s.ptime_vote.1 += 1;
                if s.ptime_vote.1 >= 3 {
                    s.ptime = delta;
                    s.ptime_vote = (0, 0);
                }
            } else {
                s.ptime_vote = (delta, 1);
            }
        }
    }

    /// The queued packet with the lowest sequence number, as a slot index.
    fn head(&self) -> Option<usize> {
        let s = self.stream.as_ref()?;
        if self.buffered == 0 {
            return None;
        }
        let end = s.highest.min(s.last_played + SLOTS as i64);
        (s.last_played + 1..=end).find_map(|seq| {
            let i = slot_index(seq);
            (self.slots[i].used && self.slots[i].seq == seq).then_some(i)
        })
    }

    /// The next frame, if its turn has come (`now` at or after [`JitterBuffer::next_due`]).
    /// Call it until it returns `None`: a caller that woke late gets the frames it missed, one
    /// per call (after more than a second it skips ahead instead).
    pub fn pop(&mut self, now: Instant) -> Option<JitterFrame<'_>> {
        let ptime_ns = self.ptime_ns();
        let target = self.target_ns();
        let s = self.stream.as_mut()?;
        if now < s.next_due {
            return None;
        }
        let behind = signed_ns(now, s.next_due);
        if behind > duration_ns(STALL) {
            let turns = behind / ptime_ns;
            s.next_due = shift(s.next_due, turns * ptime_ns);
            s.next_ts += turns * s.ptime;
            self.stats.resyncs += 1;
            self.drop_late();
        }
        let head = self.head();
        let s = self.stream.as_mut()?;
        let ptime_f = ptime_ns as f64;
        let head_is_cn = head.is_some_and(|i| self.slots[i].payload_type == COMFORT_NOISE_PT);
        let quiet = s.comfort || head_is_cn;
        if s.cooldown > 0 {
            s.cooldown -= 1;
        } else if s.delay_ns < target - 0.75 * ptime_f {
            // Too little delay: insert one turn (free in silence) that plays nothing.
            s.delay_ns += ptime_f;
            s.cooldown = ADAPT_COOLDOWN;
            s.next_due = shift(s.next_due, ptime_ns);
            let (kind, payload_type) = if s.comfort {
                self.stats.comfort += 1;
                (FrameKind::Comfort, COMFORT_NOISE_PT)
            } else {
                self.stats.concealed += 1;
                (FrameKind::Concealed, s.last_audio_pt)
            };
            return Some(JitterFrame {
                kind,
                timestamp: (s.next_ts as u32).wrapping_sub(s.ts_offset),
                sequence: None,
                marker: false,
                payload_type,
                payload: &[],
                samples: s.ptime as u32,
            });
        } else if (quiet && s.delay_ns > target + 0.75 * ptime_f)
            || s.delay_ns > target + 2.5 * ptime_f
        {
            // Too much delay: skip one turn's worth of audio.
            s.delay_ns -= ptime_f;
            s.cooldown = ADAPT_COOLDOWN;
            self.skip_turn(head);
            let head = self.head();
            return self.play_turn(head);
        }
        self.play_turn(head)
    }

    /// Drops the packet due this turn (if any) and moves the playout point one turn on.
    fn skip_turn(&mut self, head: Option<usize>) {
        let Some(s) = self.stream.as_mut() else {
            return;
        };
        if let Some(i) = head {
            let slot = &mut self.slots[i];
            if slot.ts < s.next_ts + s.ptime {
                slot.used = false;
                self.buffered -= 1;
                self.stats.discarded += 1;
                self.stats.lost += self.seen.unseen_between(s.last_played, slot.seq);
                s.last_played = slot.seq;
                s.last_played_ts = Some(slot.ts);
            }
        }
        s.next_ts += s.ptime;
    }

    /// This turn's frame: the head packet if it is due, else comfort or concealment.
    fn play_turn(&mut self, head: Option<usize>) -> Option<JitterFrame<'_>> {
        let ptime_ns = self.ptime_ns();
        let s = self.stream.as_mut()?;
        let turn_ts = s.next_ts;
        s.next_due = shift(s.next_due, ptime_ns);
        let due = head.filter(|&i| self.slots[i].ts < s.next_ts + s.ptime);
        if let Some(i) = due {
            let slot = &mut self.slots[i];
            {
                slot.used = false;
                self.buffered -= 1;
                self.stats.lost += self.seen.unseen_between(s.last_played, slot.seq);
                s.last_played = slot.seq;
                s.last_played_ts = Some(slot.ts);
                s.next_ts = slot.ts + s.ptime;
                let kind = if slot.payload_type == COMFORT_NOISE_PT {
                    s.comfort = true;
                    self.stats.comfort += 1;
                    FrameKind::Comfort
                } else {
                    s.comfort = false;
                    s.last_audio_pt = slot.payload_type;
                    self.stats.played += 1;
                    FrameKind::Audio
                };
                return Some(JitterFrame {
                    kind,
                    timestamp: slot.raw_ts,
                    sequence: Some(slot.raw_seq),
                    marker: slot.marker,
                    payload_type: slot.payload_type,
                    payload: &slot.payload,
                    samples: s.ptime as u32,
                });
            }
        }
        // Nothing due. Silence if the sender is in comfort noise, or if the next queued packet
        // follows on from the last one played (the sender's timestamps skipped ahead).
        let gap_without_loss =
            head.is_some_and(|i| self.seen.unseen_between(s.last_played, self.slots[i].seq) == 0);
        s.next_ts += s.ptime;
        let (kind, payload_type) = if s.comfort || gap_without_loss {
            self.stats.comfort += 1;
            (FrameKind::Comfort, COMFORT_NOISE_PT)
        } else {
            self.stats.concealed += 1;
            (FrameKind::Concealed, s.last_audio_pt)
        };
        Some(JitterFrame {
            kind,
            timestamp: (turn_ts as u32).wrapping_sub(s.ts_offset),
            sequence: None,
            marker: false,
            payload_type,
            payload: &[],
            samples: s.ptime as u32,
        })
    }

    /// After skipping ahead: queued packets whose turn has passed are dropped as late.
    fn drop_late(&mut self) {
        let Some(s) = self.stream.as_mut() else {
            return;
        };
        for slot in &mut self.slots {
            if slot.used && slot.ts + s.ptime <= s.next_ts {
                slot.used = false;
                self.buffered -= 1;
                self.stats.late += 1;
                self.stats.lost += 1;
                if slot.seq > s.last_played {
                    s.last_played = slot.seq;
                    s.last_played_ts = Some(slot.ts);
                }
            }
        }
    }

    pub fn stats(&self) -> JitterStats {
        let mut stats = self.stats;
        let ns_to_ms = |ns: f64| ns / 1e6;
        stats.target_ms = ns_to_ms(self.target_ns());
        stats.jitter_ms = self.jitter * 1000.0 / f64::from(self.cfg.clock_rate);
        if let Some(s) = self.stream.as_ref() {
            stats.delay_ms = ns_to_ms(s.delay_ns);
            let end = self
                .slots
                .iter()
                .filter(|slot| slot.used)
                .map(|slot| slot.ts + s.ptime)
                .max();
            stats.depth_ms = end.map_or(0.0, |end| {
                ns_to_ms(self.ticks_to_ns((end - s.next_ts).max(0)) as f64)
            });
        }
        stats
    }
}

/// `ticks` of a `rate` Hz clock in nanoseconds.
fn ticks_to_ns(ticks: i64, rate: u32) -> i64 {
    let ns = i128::from(ticks) * 1_000_000_000 / i128::from(rate.max(1));
    i64::try_from(ns).unwrap_or(if ns < 0 { i64::MIN } else { i64::MAX })
}

fn slot_index(seq: i64) -> usize {
    seq.rem_euclid(SLOTS as i64) as usize
}

/// The sequence number closest to `reference` whose low 16 bits are `seq`.
fn unwrap_seq(reference: i64, seq: u16) -> i64 {
    reference + i64::from(seq.wrapping_sub(reference as u16) as i16)
}

/// The timestamp closest to `reference` whose low 32 bits are `ts`.
fn unwrap_ts(reference: i64, ts: u32) -> i64 {
    reference + i64::from(ts.wrapping_sub(reference as u32) as i32)
}

/// Makes samples for concealed frames: the last good frame repeated at falling gain
/// (−3, −9, −15 dB), then silence. Sans-IO and allocation-free after the first frame.
#[derive(Debug, Clone, Default)]
pub struct Concealer {
    last: Vec<i16>,
    run: u32,
}

impl Concealer {
    pub fn new() -> Self {
        Concealer {
            last: Vec::with_capacity(SLOT_BYTES * 3),
            run: 0,
        }
    }

    /// Remembers a frame that was decoded from a packet.
    pub fn observe(&mut self, frame: &[i16]) {
        self.last.clear();
        self.last.extend_from_slice(frame);
        self.run = 0;
    }

    /// Forgets the last frame (after comfort noise: concealment is silence).
    pub fn reset(&mut self) {
        self.last.clear();
        self.run = 0;
    }

    /// Clears `out` and fills it with `samples` samples of concealment.
    pub fn conceal(&mut self, out: &mut Vec<i16>, samples: usize) {
        const GAINS_Q15: [i32; 3] = [23_170, 11_627, 5_827];
        out.clear();
        let gain = GAINS_Q15.get(self.run as usize).copied().unwrap_or(0);
        self.run = self.run.saturating_add(1);
        if gain == 0 || self.last.is_empty() {
            out.resize(samples, 0);
            return;
        }
        let last = &self.last;
        out.extend((0..samples).map(|i| ((i32::from(last[i % last.len()]) * gain) >> 15) as i16));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// One packet to send in a simulation.
    #[derive(Debug, Clone)]
    struct Pkt {
        at_us: i64,
        seq: u16,
        ts: u32,
        ssrc: u32,
        marker: bool,
        pt: u8,
    }

    fn pkt(at_ms: f64, seq: u16, ts: u32) -> Pkt {
        Pkt {
            at_us: (at_ms * 1000.0).round() as i64,
            seq,
            ts,
            ssrc: 0xABCD,
            marker: false,
            pt: 0,
        }
    }

    /// `n` packets of 20 ms, one every `period_ms`, starting at seq/ts.
    fn stream(n: usize, seq0: u16, ts0: u32, period_ms: f64) -> Vec<Pkt> {
        (0..n)
            .map(|k| {
                pkt(
                    k as f64 * period_ms,
                    seq0.wrapping_add(k as u16),
                    ts0.wrapping_add(160 * k as u32),
                )
            })
            .collect()
    }

    #[derive(Debug, Clone, PartialEq)]
    struct Out {
        at_us: i64,
        kind: FrameKind,
        ts: u32,
        seq: Option<u16>,
        payload: Vec<u8>,
    }

    /// Runs packets (in the order given, each at its time) and pops every frame as it falls
    /// due, up to `until_ms`. A payload carries its sequence number so plays can be checked.
    fn run(jb: &mut JitterBuffer, t0: Instant, packets: &[Pkt], until_ms: i64) -> Vec<Out> {
        let mut order: Vec<&Pkt> = packets.iter().collect();
        order.sort_by_key(|p| p.at_us); // stable: same time keeps the given order
        let mut out = Vec::new();
        let mut next = order.into_iter().peekable();
        let until = t0 + Duration::from_millis(until_ms as u64);
        loop {
            let arrival = next
                .peek()
                .map(|p| t0 + Duration::from_micros(p.at_us as u64));
            let due = jb.next_due();
            let t = match (arrival, due) {
                (Some(a), Some(d)) => a.min(d),
                (Some(a), None) => a,
                (None, Some(d)) => d,
                (None, None) => break,
            };
            if t > until {
                break;
            }
            if arrival == Some(t) {
                let p = next.next().expect("peeked");
                let payload = p.seq.to_be_bytes();
                let packet = RtpPacket {
                    marker: p.marker,
                    payload_type: p.pt,
                    sequence: p.seq,
                    timestamp: p.ts,
                    ssrc: p.ssrc,
                    payload: &payload,
                };
                jb.push(&packet, t);
                continue;
            }
            while let Some(f) = jb.pop(t) {
                out.push(Out {
                    at_us: (t - t0).as_micros() as i64,
                    kind: f.kind,
                    ts: f.timestamp,
                    seq: f.sequence,
                    payload: f.payload.to_vec(),
                });
            }
        }
        out
    }

    fn seqs(out: &[Out]) -> Vec<u16> {
        out.iter().filter_map(|o| o.seq).collect()
    }

    fn count(out: &[Out], kind: FrameKind) -> usize {
        out.iter().filter(|o| o.kind == kind).count()
    }

    /// Exactly one frame per 20 ms, each at its own turn.
    fn assert_cadence(out: &[Out]) {
        for w in out.windows(2) {
            assert_eq!(
                w[1].at_us - w[0].at_us,
                20_000,
                "{:?} then {:?}",
                w[0],
                w[1]
            );
        }
    }

    /// Timestamps advance by exactly one frame from turn to turn.
    fn assert_ts_continuous(out: &[Out]) {
        for w in out.windows(2) {
            assert_eq!(
                w[1].ts,
                w[0].ts.wrapping_add(160),
                "{:?} then {:?}",
                w[0],
                w[1]
            );
        }
    }

    fn new_jb() -> (JitterBuffer, Instant) {
        (JitterBuffer::default(), Instant::now())
    }

    #[test]
    fn in_order_stream_plays_every_packet_after_the_initial_delay() {
        let (mut jb, t0) = new_jb();
        let packets = stream(100, 1000, 5000, 20.0);
        let out = run(&mut jb, t0, &packets, 100 * 20 + 20);
        assert_eq!(
            out[0].at_us, 40_000,
            "first frame after the 40 ms initial delay"
        );
        assert_eq!(out.len(), 100);
        assert_cadence(&out);
        assert_ts_continuous(&out);
        assert_eq!(seqs(&out), (1000..1100).collect::<Vec<u16>>());
        assert!(out.iter().all(|o| o.kind == FrameKind::Audio));
        assert_eq!(out[7].payload, 1007u16.to_be_bytes());
        let s = jb.stats();
        assert_eq!((s.received, s.played, s.lost, s.late), (100, 100, 0, 0));
        assert_eq!(
            (s.duplicates, s.reordered, s.concealed, s.discarded),
            (0, 0, 0, 0)
        );
        assert_eq!(s.resyncs, 0);
        assert!(s.jitter_ms < 0.01, "{s:?}");
        assert!((s.target_ms - 20.0).abs() < 0.1, "no jitter: ptime, {s:?}");
        // Nothing adapts mid-speech for a 20 ms difference: the delay stays at 40 ms.
        assert!((s.delay_ms - 40.0).abs() < 0.5, "{s:?}");
        assert_eq!(jb.buffered(), 0);
    }

    #[test]
    fn after_the_last_packet_turns_go_on_concealed() {
        let (mut jb, t0) = new_jb();
        let out = run(&mut jb, t0, &stream(10, 0, 0, 20.0), 10 * 20 + 40 + 80);
        assert_eq!(out.len(), 15);
        assert_cadence(&out);
        assert_ts_continuous(&out);
        assert_eq!(count(&out[10..], FrameKind::Concealed), 5);
        assert_eq!(jb.stats().concealed, 5);
        assert_eq!(jb.stats().lost, 0, "nothing missing: the stream just ended");
    }

    #[test]
    fn reordered_packets_play_in_order() {
        let (mut jb, t0) = new_jb();
        let mut packets = stream(100, 200, 0, 20.0);
        // Swap the arrival times of every 10th pair: k+1 comes first, k 20 ms late.
        for k in (10..90).step_by(10) {
            let (a, b) = (packets[k].at_us, packets[k + 1].at_us);
            packets[k].at_us = b;
            packets[k + 1].at_us = a;
        }
        let out = run(&mut jb, t0, &packets, 100 * 20 + 60);
        assert_cadence(&out);
        assert_eq!(seqs(&out), (200..300).collect::<Vec<u16>>());
        let s = jb.stats();
        assert_eq!((s.reordered, s.late, s.lost), (8, 0, 0), "{s:?}");
        // The reordering reads as jitter: the buffer may grow its delay by a turn or two (an
        // inserted frame carries the timestamp of the turn it delays).
        assert!(s.concealed <= 4, "{s:?}");
        let audio: Vec<Out> = out
            .into_iter()
            .filter(|o| o.kind == FrameKind::Audio)
            .collect();
        assert_ts_continuous(&audio);
    }

    #[test]
    fn duplicates_are_dropped_early_or_late() {
        let (mut jb, t0) = new_jb();
        let mut packets = stream(60, 7, 1_000, 20.0);
        let mut dups = Vec::new();
        for k in (0..60).step_by(5) {
            let mut d = packets[k].clone();
            d.at_us += 1_000; // right after the original
            dups.push(d);
            let mut late = packets[k].clone();
            late.at_us += 300_000; // long after it has played
            dups.push(late);
        }
        packets.extend(dups);
        let out = run(&mut jb, t0, &packets, 60 * 20 + 20);
        assert_eq!(seqs(&out), (7..67).collect::<Vec<u16>>());
        let s = jb.stats();
        assert_eq!(s.duplicates, 24 - 2, "{s:?}"); // the last two late copies arrive after `until`
        assert_eq!((s.late, s.lost, s.concealed, s.reordered), (0, 0, 0, 0));
        assert_eq!(s.received, 60 + 22);
    }

    #[test]
    fn single_losses_are_concealed_in_their_turn() {
        let (mut jb, t0) = new_jb();
        let packets: Vec<Pkt> = stream(50, 0, 0, 20.0)
            .into_iter()
            .filter(|p| p.seq != 10 && p.seq != 20)
            .collect();
        let out = run(&mut jb, t0, &packets, 50 * 20 + 20);
        assert_eq!(out.len(), 50);
        assert_cadence(&out);
        assert_ts_continuous(&out);
        for (i, o) in out.iter().enumerate() {
            let expect = if i == 10 || i == 20 {
                FrameKind::Concealed
            } else {
                FrameKind::Audio
            };
            assert_eq!(o.kind, expect, "frame {i}");
            assert_eq!(o.ts, 160 * i as u32);
        }
        let s = jb.stats();
        assert_eq!((s.lost, s.concealed, s.late), (2, 2, 0), "{s:?}");
    }

    #[test]
    fn burst_loss_conceals_each_turn_and_resumes_in_place() {
        let (mut jb, t0) = new_jb();
        let packets: Vec<Pkt> = stream(80, 65_000, 0, 20.0)
            .into_iter()
            .filter(|p| !(65_030..65_045).contains(&p.seq))
            .collect();
        let out = run(&mut jb, t0, &packets, 80 * 20 + 20);
        assert_eq!(out.len(), 80);
        assert_cadence(&out);
        assert_ts_continuous(&out);
        assert_eq!(count(&out[30..45], FrameKind::Concealed), 15);
        assert_eq!(out[45].seq, Some(65_045));
        let s = jb.stats();
        assert_eq!(
            (s.lost, s.concealed, s.late, s.resyncs),
            (15, 15, 0, 0),
            "{s:?}"
        );
    }

    #[test]
    fn a_late_packet_is_concealed_then_dropped() {
        let (mut jb, t0) = new_jb();
        let mut packets = stream(40, 0, 0, 20.0);
        packets[10].at_us += 100_000; // 100 ms late: its turn (at 240 ms) has passed
        let out = run(&mut jb, t0, &packets, 40 * 20 + 20);
        assert_eq!(out[10].kind, FrameKind::Concealed);
        assert_eq!(out[11].seq, Some(11));
        let s = jb.stats();
        assert_eq!((s.late, s.lost, s.concealed), (1, 1, 1), "{s:?}");
    }

    #[test]
    fn jitter_raises_the_target_and_keeps_late_packets_rare() {
        let (mut jb, t0) = new_jb();
        let mut rng = 0x1234_5678_9ABC_DEF0u64;
        let mut packets = stream(1500, 0, 0, 20.0);
        for p in &mut packets {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            p.at_us += (rng % 30_000) as i64; // 0-30 ms of network delay, uniform
        }
        let out = run(&mut jb, t0, &packets, 1500 * 20 + 300);
        let s = jb.stats();
        assert!(s.jitter_ms > 5.0 && s.jitter_ms < 15.0, "{s:?}");
        assert!(s.target_ms > 40.0 && s.target_ms <= 200.0, "{s:?}");
        assert!(s.late < 30, "late {} of 1500: {s:?}", s.late);
        // Only late packets are missing (one that comes before the very first is late, not lost).
        assert!(s.lost <= s.late, "{s:?}");
        assert_cadence(&out);
        assert!(s.reordered > 40, "{s:?}");
    }

    #[test]
    fn ssrc_change_with_marker_resyncs_without_a_flood() {
        let (mut jb, t0) = new_jb();
        let mut packets = stream(50, 100, 10_000, 20.0);
        let mut second = stream(50, 40_000, 3_000_000_000, 20.0);
        for p in &mut second {
            p.at_us += 50 * 20_000;
            p.ssrc = 0x9999;
        }
        second[0].marker = true;
        packets.extend(second);
        let out = run(&mut jb, t0, &packets, 100 * 20 + 20);
        assert_cadence(&out);
        assert_ts_continuous(&out[..50]);
        assert_eq!(count(&out, FrameKind::Audio), 100);
        assert_eq!(
            count(&out, FrameKind::Concealed) + count(&out, FrameKind::Comfort),
            0
        );
        let first_new = out.iter().position(|o| o.seq == Some(40_000)).expect("new");
        assert_eq!(
            &seqs(&out[first_new..])[..50],
            &(40_000..40_050).collect::<Vec<u16>>()[..]
        );
        let s = jb.stats();
        assert_eq!(
            (s.resyncs, s.lost, s.late, s.discarded),
            (1, 0, 0, 0),
            "{s:?}"
        );
        assert_eq!(jb.ssrc(), Some(0x9999));
    }

    #[test]
    fn ssrc_change_without_marker_needs_two_packets() {
        let (mut jb, t0) = new_jb();
        let mut packets = stream(30, 100, 10_000, 20.0);
        // One stray packet of another SSRC in the middle: dropped, no resync.
        let mut stray = pkt(205.0, 5, 5);
        stray.ssrc = 0x5555;
        packets.push(stray);
        let mut second = stream(30, 9, 77, 20.0);
        for p in &mut second {
            p.at_us += 30 * 20_000;
            p.ssrc = 0x7777;
        }
        packets.extend(second);
        let out = run(&mut jb, t0, &packets, 60 * 20 + 20);
        assert_cadence(&out);
        let s = jb.stats();
        assert_eq!(s.resyncs, 1, "{s:?}");
        assert_eq!(s.discarded, 1, "the stray: {s:?}");
        // Every packet of both streams plays, back to back, the held first packet included.
        assert_eq!(count(&out, FrameKind::Audio), 60, "{out:?}");
        assert_eq!(out[30].seq, Some(9));
        assert_eq!(out.len(), 60);
    }

    #[test]
    fn timestamp_jump_resyncs_without_a_flood() {
        for marker in [false, true] {
            for jump in [8_000_000u32, 0u32.wrapping_sub(8_000_000)] {
                let (mut jb, t0) = new_jb();
                let mut packets = stream(100, 500, 1_000, 20.0);
                for p in &mut packets[50..] {
                    p.ts = p.ts.wrapping_add(jump);
                }
                packets[50].marker = marker;
                let out = run(&mut jb, t0, &packets, 100 * 20 + 20);
                assert_cadence(&out);
                let s = jb.stats();
                assert_eq!(s.resyncs, 1, "marker {marker} jump {jump}: {s:?}");
                assert_eq!(out.len(), 100, "{s:?}");
                assert_eq!(seqs(&out), (500..600).collect::<Vec<u16>>());
                assert_eq!(
                    out[50].ts, packets[50].ts,
                    "frames carry the packets' timestamps"
                );
                assert_eq!(s.lost + s.late + s.concealed + s.discarded, 0, "{s:?}");
            }
        }
    }

    #[test]
    fn sequence_jump_resyncs() {
        let (mut jb, t0) = new_jb();
        let mut packets = stream(100, 0, 0, 20.0);
        for p in &mut packets[50..] {
            p.seq = p.seq.wrapping_add(20_000);
        }
        let out = run(&mut jb, t0, &packets, 100 * 20 + 20);
        let s = jb.stats();
        assert_eq!(s.resyncs, 1, "{s:?}");
        assert_eq!(count(&out, FrameKind::Audio), 100);
        assert_eq!(out.len(), 100);
        assert_eq!(s.lost + s.concealed, 0);
    }

    #[test]
    fn sequence_and_timestamp_wrap_around() {
        let (mut jb, t0) = new_jb();
        let mut packets = stream(200, 65_436, u32::MAX - 15_999, 20.0);
        // A loss and a swap right around the wrap of both.
        packets.retain(|p| p.seq != 65_535);
        let i = packets.iter().position(|p| p.seq == 1).expect("seq 1");
        let (a, b) = (packets[i].at_us, packets[i + 1].at_us);
        packets[i].at_us = b;
        packets[i + 1].at_us = a;
        let out = run(&mut jb, t0, &packets, 200 * 20 + 20);
        assert_eq!(out.len(), 200);
        assert_cadence(&out);
        assert_ts_continuous(&out);
        assert_eq!(out[99].kind, FrameKind::Concealed);
        assert_eq!(out[99].ts, u32::MAX - 159);
        assert_eq!(out[100].seq, Some(0));
        assert_eq!(out[100].ts, 0);
        let s = jb.stats();
        assert_eq!(
            (s.lost, s.reordered, s.late, s.resyncs),
            (1, 1, 0, 0),
            "{s:?}"
        );
    }

    /// A sender whose clock runs `ppm` parts per million fast (+) or slow (−) for 120 s. Gives
    /// the frames up to the last one played, and the stats.
    fn drift(ppm: f64) -> (Vec<Out>, JitterStats) {
        let (mut jb, t0) = new_jb();
        let n = 6000;
        let period = 20.0 * (1.0 - ppm / 1e6);
        let packets = stream(n, 0, 0, period);
        let span = (n as f64 * period) as i64;
        let mut out = run(&mut jb, t0, &packets, span + 200);
        let last = out
            .iter()
            .rposition(|o| o.seq == Some(5999))
            .expect("all played");
        out.truncate(last + 1);
        let mut s = jb.stats();
        s.concealed = count(&out, FrameKind::Concealed) as u64;
        (out, s)
    }

    #[test]
    fn fast_sender_clock_is_absorbed_by_skipping_frames() {
        let (out, s) = drift(5000.0); // +0.5 %: 30 extra packets over 120 s
        assert_cadence(&out);
        assert_eq!((s.lost, s.late, s.concealed), (0, 0, 0), "{s:?}");
        assert!((20..=32).contains(&s.discarded), "{s:?}");
        assert!(s.delay_ms < 80.0 && s.depth_ms < 100.0, "{s:?}");
        assert_eq!(s.played + s.discarded, 6000);
    }

    #[test]
    fn slow_sender_clock_is_absorbed_by_inserting_frames() {
        let (out, s) = drift(-5000.0); // −0.5 %: 30 packets short over 120 s
        assert_cadence(&out);
        assert_eq!((s.lost, s.late, s.discarded), (0, 0, 0), "{s:?}");
        assert!((25..=35).contains(&s.concealed), "{s:?}");
        assert!(s.delay_ms > 0.0 && s.delay_ms < 60.0, "{s:?}");
        assert_eq!(s.played, 6000);
    }

    #[test]
    fn comfort_noise_yields_silence_frames_not_loss() {
        let (mut jb, t0) = new_jb();
        let mut packets = stream(20, 0, 0, 20.0);
        let mut cn = pkt(400.0, 20, 3200);
        cn.pt = COMFORT_NOISE_PT;
        packets.push(cn);
        // One second of silence, then a talkspurt (marker) with the next sequence number.
        let mut talk = stream(20, 21, 3200 + 8000, 20.0);
        for p in &mut talk {
            p.at_us += 1_400_000;
        }
        talk[0].marker = true;
        packets.extend(talk);
        let out = run(&mut jb, t0, &packets, 1_400 + 20 * 20 + 20);
        assert_cadence(&out);
        let s = jb.stats();
        assert_eq!((s.lost, s.concealed, s.late), (0, 0, 0), "{s:?}");
        assert_eq!(count(&out, FrameKind::Audio), 40);
        assert!(count(&out, FrameKind::Comfort) >= 49, "{s:?}");
        assert_eq!(out[20].kind, FrameKind::Comfort);
        assert_eq!(
            out[20].payload,
            20u16.to_be_bytes(),
            "the CN packet's own payload"
        );
        let talk_start = out
            .iter()
            .position(|o| o.seq == Some(21))
            .expect("talkspurt");
        assert_eq!(
            out[talk_start].at_us,
            1_400_000 + 40_000,
            "re-anchored at the target"
        );
    }

    #[test]
    fn silence_suppression_without_cn_is_not_loss() {
        let (mut jb, t0) = new_jb();
        let mut packets = stream(20, 0, 0, 20.0);
        let mut talk = stream(20, 20, 3200 + 8000, 20.0);
        for p in &mut talk {
            p.at_us += 1_400_000;
        }
        talk[0].marker = true;
        packets.extend(talk);
        let out = run(&mut jb, t0, &packets, 1_400 + 20 * 20 + 20);
        assert_cadence(&out);
        let s = jb.stats();
        assert_eq!((s.lost, s.late, s.resyncs), (0, 0, 0), "{s:?}");
        assert_eq!(count(&out, FrameKind::Audio), 40);
    }

    #[test]
    fn telephone_events_do_not_read_as_loss() {
        let (mut jb, t0) = new_jb();
        let t = t0;
        let mut out = Vec::new();
        for k in 0..50u16 {
            let at = t + Duration::from_millis(20 * u64::from(k));
            while let Some(f) = jb.pop(at) {
                out.push((f.kind, f.sequence));
            }
            let payload = [0xFFu8; 160];
            let p = RtpPacket {
                marker: false,
                payload_type: if (20..25).contains(&k) { 101 } else { 0 },
                sequence: k,
                timestamp: 160 * u32::from(k),
                ssrc: 1,
                payload: &payload,
            };
            if p.payload_type == 101 {
                jb.note_foreign(&p);
            } else {
                jb.push(&p, at);
            }
        }
        let s = jb.stats();
        assert_eq!(s.lost, 0, "{s:?}");
        // The event's turns have no audio: concealed until the next audio packet shows that
        // nothing is missing, silence from then on.
        assert_eq!((s.concealed, s.comfort), (4, 1), "{s:?}");
        assert_eq!(
            out.iter().filter(|(k, _)| *k == FrameKind::Audio).count(),
            45 - 2
        );
    }

    #[test]
    fn a_stalled_caller_skips_ahead() {
        let (mut jb, t0) = new_jb();
        let payload = [0u8; 160];
        for k in 0..5u16 {
            let p = RtpPacket {
                marker: false,
                payload_type: 0,
                sequence: k,
                timestamp: 160 * u32::from(k),
                ssrc: 1,
                payload: &payload,
            };
            jb.push(&p, t0 + 20 * MS * u32::from(k));
        }
        let mut frames = 0;
        while jb.pop(t0 + Duration::from_secs(5)).is_some() {
            frames += 1;
        }
        assert!(frames <= 2, "{frames} frames after a 5 s stall");
        assert_eq!(jb.stats().resyncs, 1);
        assert!(jb.next_due().expect("due") > t0 + Duration::from_secs(5));
    }

    #[test]
    fn ptime_of_30_ms_is_learned() {
        let (mut jb, t0) = new_jb();
        let packets: Vec<Pkt> = (0..100u16)
            .map(|k| pkt(30.0 * f64::from(k), k, 240 * u32::from(k)))
            .collect();
        let out = run(&mut jb, t0, &packets, 100 * 30 + 60);
        let s = jb.stats();
        assert_eq!(s.played, 100, "{s:?}");
        assert!(s.concealed <= 3 && s.lost == 0 && s.late == 0, "{s:?}");
        let tail = &out[10..];
        for w in tail.windows(2) {
            assert_eq!(w[1].at_us - w[0].at_us, 30_000);
        }
    }

    #[test]
    fn config_is_sanitized() {
        let jb = JitterBuffer::new(JitterConfig {
            clock_rate: 0,
            ptime: 5,
            min_delay: Duration::from_millis(300),
            max_delay: Duration::from_millis(100),
            initial_delay: Duration::from_millis(10),
        });
        let c = jb.config();
        assert_eq!(c.clock_rate, 8000);
        assert_eq!(c.ptime, 80);
        assert!(c.min_delay <= c.max_delay);
        assert!(c.initial_delay >= c.min_delay && c.initial_delay <= c.max_delay);
        let c = JitterConfig::from_ms(60, 120, 80);
        assert_eq!(c.min_delay, 60 * MS);
        assert_eq!(c.initial_delay, 80 * MS);
    }

    #[test]
    fn min_delay_is_honoured() {
        let mut jb = JitterBuffer::new(JitterConfig::from_ms(80, 200, 40));
        let t0 = Instant::now();
        let out = run(&mut jb, t0, &stream(100, 0, 0, 20.0), 100 * 20 + 100);
        assert_eq!(out[0].at_us, 80_000);
        let s = jb.stats();
        assert!((s.target_ms - 80.0).abs() < 0.1, "{s:?}");
        assert_eq!(s.played, 100);
    }

    #[test]
    fn arbitrary_input_never_panics() {
        let (mut jb, t0) = new_jb();
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut now = t0;
        let payload = vec![0u8; 2000];
        let (mut seq, mut ts) = (0u16, 0u32);
        for _ in 0..50_000 {
            let r = next();
            now += Duration::from_micros(r % 25_000);
            match r % 8 {
                0 => seq = next() as u16,
                1 => ts = next() as u32,
                _ => {
                    seq = seq.wrapping_add((r >> 8) as u16 % 4);
                    ts = ts.wrapping_add(160 * ((r >> 16) as u32 % 3));
                }
            }
            let p = RtpPacket {
                marker: r % 17 == 0,
                payload_type: [0, 8, 13, 101][(r >> 24) as usize % 4],
                sequence: seq,
                timestamp: ts,
                ssrc: if r % 97 == 0 { next() as u32 } else { 1 },
                payload: &payload[..(r >> 32) as usize % payload.len()],
            };
            if p.payload_type == 101 {
                jb.note_foreign(&p);
            } else {
                jb.push(&p, now);
            }
            let mut n = 0;
            while let Some(f) = jb.pop(now) {
                assert!(f.payload.len() < 2000);
                n += 1;
                assert!(n < 100, "one call cannot drain a flood");
            }
            assert!(jb.buffered() <= SLOTS);
        }
        let s = jb.stats();
        assert!(s.received > 0 && s.depth_ms >= 0.0);
    }

    #[test]
    fn concealer_fades_then_falls_silent() {
        let mut c = Concealer::new();
        let mut out = Vec::new();
        c.conceal(&mut out, 160);
        assert_eq!(out, vec![0; 160], "nothing to repeat yet");
        c.observe(&[10_000; 160]);
        let mut levels = Vec::new();
        for _ in 0..5 {
            c.conceal(&mut out, 160);
            assert_eq!(out.len(), 160);
            levels.push(out[0]);
        }
        assert_eq!(levels, vec![7070, 3548, 1778, 0, 0]);
        c.observe(&[-100; 80]);
        c.conceal(&mut out, 160);
        assert_eq!(out.len(), 160);
        assert!(out.iter().all(|&s| s == -71));
        c.reset();
        c.conceal(&mut out, 160);
        assert!(out.iter().all(|&s| s == 0));
    }

    #[test]
    fn seq_window_tracks_the_last_256() {
        let mut w = SeqWindow::default();
        assert_eq!(w.contains(5), Some(false));
        w.insert(10);
        w.insert(12);
        assert_eq!(w.contains(10), Some(true));
        assert_eq!(w.contains(11), Some(false));
        assert_eq!(w.unseen_between(9, 13), 1);
        w.insert(300);
        assert_eq!(w.contains(12), None, "too old to know");
        assert_eq!(w.contains(299), Some(false));
        w.insert(12); // too old: ignored
        assert_eq!(w.contains(300), Some(true));
        w.insert(10_000);
        assert_eq!(w.contains(300), None);
        assert_eq!(w.contains(9_999), Some(false));
        w.insert(-5);
        assert_eq!(w.contains(10_000), Some(true));
    }

    #[test]
    fn netem_like_link_plays_nearly_every_delivered_packet() {
        // 3 % loss, 40 ms ± 20 ms delay, 5 % reordered by another 40 ms: the netem line.
        let mut seed = 0x1234_5678_9abc_def0u64;
        let mut rnd = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed >> 11) as f64 / (1u64 << 53) as f64
        };
        let mut packets = Vec::new();
        for p in stream(1500, 100, 1000, 20.0) {
            if rnd() < 0.03 {
                continue;
            }
            let mut delay = 40.0 + (rnd() * 2.0 - 1.0) * 20.0;
            if rnd() < 0.05 {
                delay += 40.0;
            }
            let mut p = p;
            p.at_us += (delay * 1000.0) as i64;
            packets.push(p);
        }
        let delivered = packets.len();
        let mut jb = JitterBuffer::new(JitterConfig::default());
        let t0 = Instant::now();
        let out = run(&mut jb, t0, &packets, 1500 * 20 + 1000);
        let played = out.iter().filter(|o| o.kind == FrameKind::Audio).count();
        let stats = jb.stats();
        assert!(
            played * 100 >= delivered * 97,
            "played {played} of {delivered} delivered packets; stats {stats:?}"
        );
    }
}
