//! DTMF, sans-IO: RFC 4733 telephone-events in and out, SIP INFO bodies in, in-band tones in.
//!
//! * [`Rfc4733Receiver`] turns received telephone-event payloads into one [`DtmfDigit`] per key
//!   press, whatever the network did to the packets (loss, duplication, reordering, the three
//!   redundant end packets); [`Rfc4733Receiver::poll`] ends an event whose end packets were lost.
//! * [`Rfc4733Sender`] turns queued digits into the telephone-event payload to send at each 20 ms
//!   tick; the media session owns the RTP header (timestamp, sequence number, payload type).
//! * [`parse_info_body`] reads the digit of a SIP INFO (`application/dtmf-relay`,
//!   `application/dtmf`).
//! * [`InbandDtmfDetector`] finds DTMF tones in received 8 kHz audio (Goertzel filters), for peers
//!   that send digits as sound.
//!
//! Everything here takes bytes or samples plus the time in, and gives digits or payloads out: it
//! never reads a clock, sleeps, spawns or touches a socket, and nothing a peer sends can make it
//! panic (malformed input is counted and dropped). Digits are the `char`s `0-9 * # A-D`.

use std::collections::VecDeque;

/// The digits DTMF can carry, in RFC 4733 event-code order (event 0 is `'0'`, 10 is `'*'`, …).
pub const DTMF_DIGITS: [char; 16] = [
    '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', '*', '#', 'A', 'B', 'C', 'D',
];

/// RTP clock rate of telephone-events as we negotiate them (`telephone-event/8000`).
const EVENT_CLOCK_PER_MS: u32 = 8;

/// Where a digit came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DtmfSource {
    /// RTP telephone-event packets (RFC 4733, formerly RFC 2833).
    Rfc4733,
    /// A SIP INFO request (`application/dtmf-relay` or `application/dtmf`).
    SipInfo,
    /// Tones detected in the received audio.
    Inband,
}

/// One key press, reported once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct DtmfDigit {
    /// One of `0-9 * # A-D` (always upper case).
    pub digit: char,
    /// How long the key was held, in milliseconds (as reported by the peer, or measured).
    pub duration_ms: u32,
    /// Level in dBm0 (`-10` = −10 dBm0), when the source says: the RFC 4733 volume field, or the
    /// measured level of the louder tone for in-band digits; `None` for SIP INFO.
    pub volume_dbm0: Option<i8>,
    /// Which path carried it.
    pub source: DtmfSource,
}

/// Mistakes a caller can make when asking us to send DTMF.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DtmfError {
    /// The character is not a DTMF digit.
    #[error("invalid DTMF digit {0:?}: expected one of 0-9, *, #, A-D")]
    InvalidDigit(char),
}

/// The RFC 4733 event code of a digit (`'0'` → 0, `'*'` → 10, `'#'` → 11, `'A'` → 12 …).
/// Lower-case `a`-`d` are accepted.
pub fn event_code(digit: char) -> Option<u8> {
    let upper = digit.to_ascii_uppercase();
    DTMF_DIGITS
        .iter()
        .position(|&d| d == upper)
        .and_then(|i| u8::try_from(i).ok())
}

/// The digit of an RFC 4733 event code, if it is a DTMF event (0–15).
pub fn digit_for_event(code: u8) -> Option<char> {
    DTMF_DIGITS.get(usize::from(code)).copied()
}

// ---------------------------------------------------------------------------------------------
// RFC 4733 payload
// ---------------------------------------------------------------------------------------------

/// The four bytes of a telephone-event payload (RFC 4733 §2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct EventPayload {
    event: u8,
    end: bool,
    volume: u8,
    duration: u16,
}

impl EventPayload {
    /// Reads the first four bytes; `None` when there are fewer.
    fn parse(payload: &[u8]) -> Option<EventPayload> {
        let bytes: [u8; 4] = payload.get(..4)?.try_into().ok()?;
        Some(EventPayload {
            event: bytes[0],
            end: bytes[1] & 0x80 != 0,
            // bytes[1] & 0x40 is the reserved R bit: ignored on receipt (RFC 4733 §2.3).
            volume: bytes[1] & 0x3f,
            duration: u16::from_be_bytes([bytes[2], bytes[3]]),
        })
    }

    fn to_bytes(self) -> [u8; 4] {
        let [d0, d1] = self.duration.to_be_bytes();
        let e = if self.end { 0x80 } else { 0 };
        [self.event, e | (self.volume & 0x3f), d0, d1]
    }
}

// ---------------------------------------------------------------------------------------------
// RFC 4733 receive
// ---------------------------------------------------------------------------------------------

/// How long after an event's last packet the receiver assumes its end packets were all lost.
pub const DEFAULT_EVENT_TIMEOUT_MS: u64 = 200;

/// Duration field value at which a sender splits a long event into segments (RFC 4733 §2.5.2.3).
const MAX_SEGMENT: u16 = u16::MAX;

/// One telephone-event, identified by its RTP timestamp.
#[derive(Debug, Clone)]
struct RxEvent {
    timestamp: u32,
    code: u8,
    digit: char,
    /// Largest duration seen in the current segment, in timestamp units.
    duration: u16,
    /// Duration of earlier segments of a long event, in timestamp units.
    carried: u32,
    volume: u8,
    last_update_ms: u64,
    /// Reported (end packet seen, superseded or timed out): later packets of it are ignored.
    done: bool,
}

/// Turns received RFC 4733 telephone-event packets into one [`DtmfDigit`] per key press.
///
/// Feed it every packet whose payload type is the negotiated telephone-event type, with its RTP
/// sequence number, timestamp and marker bit; call [`poll`](Self::poll) on a timer (every 20–50 ms)
/// so a press whose end packets were all lost is still reported. An event is identified by its
/// RTP timestamp: a digit is reported on the first end packet of its event (or when a later event
/// starts, or on timeout), exactly once; redundant end packets, duplicates, late packets and
/// updates after the end are dropped. A packet older (by sequence number) than the newest one seen
/// that belongs to another event is a late straggler and is dropped too. Call
/// [`reset`](Self::reset) when the sender's SSRC changes.
#[derive(Debug)]
pub struct Rfc4733Receiver {
    timeout_ms: u64,
    current: Option<RxEvent>,
    highest_seq: Option<u16>,
    pending: VecDeque<DtmfDigit>,
    rejected: u64,
    ignored: u64,
}

impl Default for Rfc4733Receiver {
    fn default() -> Self {
        Self::new()
    }
}

impl Rfc4733Receiver {
    /// A receiver ending unterminated events [`DEFAULT_EVENT_TIMEOUT_MS`] after their last packet.
    pub fn new() -> Self {
        Self::with_timeout_ms(DEFAULT_EVENT_TIMEOUT_MS)
    }

    /// A receiver ending unterminated events `timeout_ms` after their last packet.
    pub fn with_timeout_ms(timeout_ms: u64) -> Self {
        Rfc4733Receiver {
            timeout_ms,
            current: None,
            highest_seq: None,
            pending: VecDeque::new(),
            rejected: 0,
            ignored: 0,
        }
    }

    /// Takes one telephone-event packet; returns a digit when this packet completes one.
    ///
    /// When one packet completes two digits (a new event supersedes one whose end was lost, and
    /// is itself an end packet) the second comes out of the next call or of [`poll`](Self::poll).
    pub fn on_packet(
        &mut self,
        seq: u16,
        timestamp: u32,
        marker: bool,
        payload: &[u8],
        now_ms: u64,
    ) -> Option<DtmfDigit> {
        self.handle_packet(seq, timestamp, marker, payload, now_ms);
        self.pending.pop_front()
    }

    /// Ends an event that has had no packet for the timeout, and hands out any digit still queued.
    pub fn poll(&mut self, now_ms: u64) -> Option<DtmfDigit> {
        if let Some(cur) = self.current.as_mut() {
            if !cur.done && now_ms.saturating_sub(cur.last_update_ms) >= self.timeout_ms {
                let digit = Self::finish(cur);
                self.pending.push_back(digit);
            }
        }
        self.pending.pop_front()
    }

    /// The digit whose key is down now (event started, not yet ended): the start of a press.
    pub fn active(&self) -> Option<char> {
        self.current
            .as_ref()
            .filter(|cur| !cur.done)
            .map(|cur| cur.digit)
    }

    /// Packets dropped as malformed (payload shorter than 4 bytes).
    pub fn rejected(&self) -> u64 {
        self.rejected
    }

    /// Well-formed packets of events that are not DTMF digits (codes above 15), dropped.
    pub fn ignored(&self) -> u64 {
        self.ignored
    }

    /// Forgets the event in progress and the sequence history (new SSRC); keeps the counters.
    /// Digits already completed stay queued for [`poll`](Self::poll).
    pub fn reset(&mut self) {
        self.current = None;
        self.highest_seq = None;
    }

    fn handle_packet(&mut self, seq: u16, timestamp: u32, marker: bool, payload: &[u8], now: u64) {
        let Some(p) = EventPayload::parse(payload) else {
            self.rejected += 1;
            return;
        };
        // Is this packet newer than every packet seen so far (RFC 3550 serial arithmetic)?
        let newest = match self.highest_seq {
            None => true,
            Some(h) => (seq.wrapping_sub(h) as i16) > 0,
        };
        if newest {
            self.highest_seq = Some(seq);
        }
        let Some(digit) = digit_for_event(p.event) else {
            self.ignored += 1;
            return;
        };

        if let Some(cur) = self.current.as_mut() {
            if cur.timestamp == timestamp {
                // Same event: an update, a duplicate, a reordered or a redundant end packet.
                if cur.done {
                    return;
                }
                cur.duration = cur.duration.max(p.duration);
                if let Some(d) = Self::refresh(cur, &p, now) {
                    self.pending.push_back(d);
                }
                return;
            }
            if !newest {
                // A straggler from an event that is over (or never seen): reporting it now would
                // repeat a digit or put digits out of order.
                return;
            }
            if !cur.done
                && cur.code == p.event
                && cur.duration == MAX_SEGMENT
                && !marker
                && timestamp
                    .wrapping_sub(cur.timestamp)
                    .abs_diff(u32::from(MAX_SEGMENT))
                    <= 800
            {
                // Next segment of an event longer than the duration field can hold (§2.5.2.3).
                cur.carried = cur.carried.saturating_add(u32::from(MAX_SEGMENT));
                cur.timestamp = timestamp;
                cur.duration = p.duration;
                if let Some(d) = Self::refresh(cur, &p, now) {
                    self.pending.push_back(d);
                }
                return;
            }
            if !cur.done {
                // A new event started before this one's end arrived: its end packets were lost.
                let d = Self::finish(cur);
                self.pending.push_back(d);
            }
        }

        let mut event = RxEvent {
            timestamp,
            code: p.event,
            digit,
            duration: p.duration,
            carried: 0,
            volume: p.volume,
            last_update_ms: now,
            done: false,
        };
        if p.end {
            let d = Self::finish(&mut event);
            self.pending.push_back(d);
        }
        self.current = Some(event);
    }

    /// Takes a packet's volume and time into the current event; its end bit ends the event.
    fn refresh(event: &mut RxEvent, p: &EventPayload, now: u64) -> Option<DtmfDigit> {
        event.volume = p.volume;
        event.last_update_ms = now;
        p.end.then(|| Self::finish(event))
    }

    fn finish(event: &mut RxEvent) -> DtmfDigit {
        event.done = true;
        let units = event.carried.saturating_add(u32::from(event.duration));
        DtmfDigit {
            digit: event.digit,
            duration_ms: units / EVENT_CLOCK_PER_MS,
            // The volume field is 6 bits (0..=63), so the negation always fits.
            volume_dbm0: Some(-(event.volume.min(63) as i8)),
            source: DtmfSource::Rfc4733,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// RFC 4733 send
// ---------------------------------------------------------------------------------------------

/// Timestamp units per 20 ms packet at 8 kHz.
const UNITS_PER_TICK: u32 = 160;
/// Times the end packet is sent (RFC 4733 §2.5.1.4 recommends three).
const END_PACKETS: u8 = 3;
/// Pause from the end of one sent digit to the start of the next, in 20 ms ticks. The two end
/// retransmissions take two of them (40 ms), then one tick of audio: 60 ms in all.
const GAP_TICKS_AFTER_ENDS: u32 = 1;
/// Shortest and longest digit we send, in milliseconds. 8000 ms = 64000 units still fits the
/// 16-bit duration field, so we never need long-event segments.
const MIN_SEND_MS: u32 = 40;
const MAX_SEND_MS: u32 = 8000;
/// Volume sent when none is set: −10 dBm0, what most equipment sends.
pub const DEFAULT_SEND_VOLUME: u8 = 10;

/// What to send at one 20 ms tick while a digit plays (see [`Rfc4733Sender`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DtmfPacket {
    /// The telephone-event payload: event, E bit, volume, duration.
    pub payload: [u8; 4],
    /// Set the RTP marker bit: true on the first packet of each event only.
    pub marker: bool,
    /// How far this tick is past the event's start, in RTP timestamp units (0 on the first
    /// packet, then 160, 320, …). The packet's RTP timestamp is the event's:
    /// `tick_timestamp.wrapping_sub(timestamp_offset)`, where `tick_timestamp` is the timestamp
    /// an audio packet sent at this tick would have carried.
    pub timestamp_offset: u32,
    /// This is an end packet (E bit set); it is sent three times.
    pub end: bool,
    /// The digit being sent.
    pub digit: char,
}

#[derive(Debug, Clone, Copy)]
struct TxEvent {
    code: u8,
    digit: char,
    /// Total duration in timestamp units.
    units: u32,
    /// Packets sent so far for this event.
    ticks: u32,
    ends_sent: u8,
}

/// Turns queued digits into RFC 4733 packets, one per 20 ms tick.
///
/// How the media session uses it (20 ms ptime, 8 kHz telephone-event clock):
/// * at every 20 ms send tick, call [`next_packet`](Self::next_packet) first. `None`: send audio
///   as usual. `Some(packet)`: send **this instead of audio** (audio is suppressed while an event
///   plays), with the negotiated telephone-event payload type, the marker bit from
///   `packet.marker`, the next sequence number of the stream (sequence numbers keep increasing
///   across audio and events), and the RTP timestamp
///   `tick_timestamp.wrapping_sub(packet.timestamp_offset)`: every packet of an event carries the
///   timestamp of the event's first tick, while the session's timestamp clock keeps advancing
///   160 per tick as if audio were sent.
/// * Each event: a first packet (marker, duration 160), then durations growing by 160 per packet,
///   then the end packet (E bit, final duration) sent three times, then 60 ms (counted from the
///   end) before the next queued digit.
#[derive(Debug)]
pub struct Rfc4733Sender {
    queue: VecDeque<(u8, char, u32)>,
    playing: Option<TxEvent>,
    gap_left: u32,
    volume: u8,
}

impl Default for Rfc4733Sender {
    fn default() -> Self {
        Self::new()
    }
}

impl Rfc4733Sender {
    /// A sender at the default volume (−10 dBm0).
    pub fn new() -> Self {
        Self::with_volume(DEFAULT_SEND_VOLUME)
    }

    /// A sender announcing `volume` (−dBm0, 0..=63; larger values are clamped to 63).
    pub fn with_volume(volume: u8) -> Self {
        Rfc4733Sender {
            queue: VecDeque::new(),
            playing: None,
            gap_left: 0,
            volume: volume.min(63),
        }
    }

    /// Queues one digit to be held for `duration_ms` (clamped to 40–8000 ms, rounded to whole
    /// 20 ms packets for the packets' count; the end packet carries the exact duration).
    pub fn queue(&mut self, digit: char, duration_ms: u32) -> Result<(), DtmfError> {
        let code = event_code(digit).ok_or(DtmfError::InvalidDigit(digit))?;
        let ms = duration_ms.clamp(MIN_SEND_MS, MAX_SEND_MS);
        self.queue
            .push_back((code, digit.to_ascii_uppercase(), ms * EVENT_CLOCK_PER_MS));
        Ok(())
    }

    /// Queues every digit of `digits`, each held `duration_ms`; nothing is queued if one is
    /// invalid.
    pub fn queue_str(&mut self, digits: &str, duration_ms: u32) -> Result<(), DtmfError> {
        if let Some(bad) = digits.chars().find(|&c| event_code(c).is_none()) {
            return Err(DtmfError::InvalidDigit(bad));
        }
        for c in digits.chars() {
            self.queue(c, duration_ms)?;
        }
        Ok(())
    }

    /// Drops the digits not yet started; the one playing finishes normally (with its end packets).
    pub fn clear_queue(&mut self) {
        self.queue.clear();
    }

    /// True while a digit plays or waits, or the inter-digit pause runs.
    pub fn is_busy(&self) -> bool {
        self.playing.is_some() || !self.queue.is_empty() || self.gap_left > 0
    }

    /// The packet to send at this 20 ms tick instead of audio, or `None` to send audio.
    pub fn next_packet(&mut self) -> Option<DtmfPacket> {
        if self.playing.is_none() {
            if self.gap_left > 0 {
                self.gap_left -= 1;
                return None;
            }
            let (code, digit, units) = self.queue.pop_front()?;
            self.playing = Some(TxEvent {
                code,
                digit,
                units,
                ticks: 0,
                ends_sent: 0,
            });
        }
        let tx = self.playing.as_mut()?;
        let offset = tx.ticks.saturating_mul(UNITS_PER_TICK);
        let progress = offset.saturating_add(UNITS_PER_TICK);
        let end = progress >= tx.units;
        let duration = if end { tx.units } else { progress };
        let packet = DtmfPacket {
            payload: EventPayload {
                event: tx.code,
                end,
                volume: self.volume,
                // `units` ≤ 8000 ms × 8 = 64000, so it fits in 16 bits.
                duration: u16::try_from(duration).unwrap_or(u16::MAX),
            }
            .to_bytes(),
            marker: tx.ticks == 0,
            timestamp_offset: offset,
            end,
            digit: tx.digit,
        };
        tx.ticks += 1;
        if end {
            tx.ends_sent += 1;
            if tx.ends_sent >= END_PACKETS {
                self.playing = None;
                self.gap_left = GAP_TICKS_AFTER_ENDS;
            }
        }
        Some(packet)
    }
}

// ---------------------------------------------------------------------------------------------
// SIP INFO
// ---------------------------------------------------------------------------------------------

/// Duration reported for a SIP INFO digit whose body gives none (`application/dtmf` never does).
pub const INFO_DEFAULT_DURATION_MS: u32 = 100;
/// Bodies larger than this are not DTMF bodies.
const INFO_MAX_BODY: usize = 1024;
/// Longest duration believed from an INFO body; larger values are clamped.
const INFO_MAX_DURATION_MS: u32 = 60_000;

/// Reads the digit of a SIP INFO request body.
///
/// * `application/dtmf-relay`: lines `Signal=5` and `Duration=160` (milliseconds); keys are
///   case-insensitive, `=` or `:` separate, spaces, CRLF, LF or CR line ends and unknown lines
///   are tolerated.
/// * `application/dtmf`: the body is the digit alone.
///
/// The signal may be a digit `0-9 * # A-D` (any case), an RFC 4733 event code `10`–`15` (sent for
/// `*`, `#`, `A`–`D` by some equipment), or `star`/`pound`/`hash`. Anything else (flash `!` or
/// `16`, other content types, unreadable bodies) gives `None`.
pub fn parse_info_body(content_type: &str, body: &[u8]) -> Option<DtmfDigit> {
    let media_type = content_type.split(';').next().unwrap_or("").trim();
    if body.len() > INFO_MAX_BODY {
        return None;
    }
    let text = std::str::from_utf8(body).ok()?;
    let (digit, duration_ms) = if media_type.eq_ignore_ascii_case("application/dtmf-relay") {
        let mut signal = None;
        let mut duration = None;
        for line in text.split(['\r', '\n']) {
            let Some((key, value)) = line.split_once(['=', ':']) else {
                continue;
            };
            let key = key.trim();
            if key.eq_ignore_ascii_case("signal") {
                signal = Some(parse_signal(value)?);
            } else if key.eq_ignore_ascii_case("duration") {
                duration = value.trim().parse::<u32>().ok();
            }
        }
        (signal?, duration)
    } else if media_type.eq_ignore_ascii_case("application/dtmf") {
        (parse_signal(text)?, None)
    } else {
        return None;
    };
    Some(DtmfDigit {
        digit,
        duration_ms: duration_ms
            .unwrap_or(INFO_DEFAULT_DURATION_MS)
            .min(INFO_MAX_DURATION_MS),
        volume_dbm0: None,
        source: DtmfSource::SipInfo,
    })
}

/// A digit, an event code 0–15, or a spelled-out `star`/`pound`/`hash`.
fn parse_signal(value: &str) -> Option<char> {
    let value = value.trim();
    let mut chars = value.chars();
    if let (Some(c), None) = (chars.next(), chars.next()) {
        return event_code(c).and_then(digit_for_event);
    }
    if value.eq_ignore_ascii_case("star") {
        return Some('*');
    }
    if value.eq_ignore_ascii_case("pound") || value.eq_ignore_ascii_case("hash") {
        return Some('#');
    }
    if value.len() <= 3 && value.bytes().all(|b| b.is_ascii_digit()) {
        return value.parse::<u8>().ok().and_then(digit_for_event);
    }
    None
}

// ---------------------------------------------------------------------------------------------
// In-band detection
// ---------------------------------------------------------------------------------------------

/// DTMF row (low group) and column (high group) frequencies, in Hz.
const ROW_HZ: [f64; 4] = [697.0, 770.0, 852.0, 941.0];
const COL_HZ: [f64; 4] = [1209.0, 1336.0, 1477.0, 1633.0];
/// Keypad layout: `KEYPAD[row][col]`.
const KEYPAD: [[char; 4]; 4] = [
    ['1', '2', '3', 'A'],
    ['4', '5', '6', 'B'],
    ['7', '8', '9', 'C'],
    ['*', '0', '#', 'D'],
];

/// Samples per analysis window: 102 at 8 kHz (12.75 ms) puts neighbouring row tones near the
/// filter's first null while tolerating the ±1.5 % frequency error senders are allowed.
const BLOCK: usize = 102;
/// Samples between two windows (5 ms): windows overlap, which measures tone length to ~5 ms.
const HOP: usize = 40;
/// Samples per millisecond at 8 kHz.
const SAMPLES_PER_MS: u64 = 8;
/// Amplitude of a 0 dBm0 sine in 16-bit linear PCM (G.711 µ-law: full scale is +3.17 dBm0).
const DBM0_AMPLITUDE: f64 = 22_301.0;
/// Quietest tone accepted, per frequency, in dBm0.
const MIN_TONE_DBM0: f64 = -32.0;
/// Each of the pair must be this many times stronger than every other tone of its group (8 dB).
const RELATIVE_PEAK: f64 = 6.31;
/// Normal twist: the row tone may be up to 8 dB above the column tone (line loss falls harder on
/// the high group).
const NORMAL_TWIST: f64 = 6.31;
/// Reverse twist: the column tone may be up to 4 dB above the row tone.
const REVERSE_TWIST: f64 = 2.51;
/// The pair must hold at least this share of the window's energy: speech and noise spread it.
const MIN_PAIR_SHARE: f64 = 0.70;
/// The second harmonics of the pair must stay 10 dB below the pair (speech is rich in harmonics).
const MAX_HARMONIC_RATIO: f64 = 0.1;
/// A row harmonic closer than this to the column tone is not checked (see `analyse`).
const HARMONIC_GUARD_HZ: f64 = 120.0;
/// Consecutive windows agreeing on a digit before it counts as pressed: 6 windows span 25 ms of
/// window ends, i.e. a tone of ≈ 35 ms or more; 30 ms tones give at most 5.
const MIN_WINDOWS: u32 = 6;
/// Consecutive windows without the pressed digit that end the press (≈ 20–25 ms without it):
/// dropouts of 10 ms are bridged, a 40 ms pause always separates two presses.
const PAUSE_WINDOWS: u32 = 5;

/// What one analysis window saw.
#[derive(Debug, Clone, Copy)]
struct WindowHit {
    digit: char,
    level_dbm0: f64,
}

/// A run of consecutive windows detecting the same digit.
#[derive(Debug, Clone, Copy)]
struct Run {
    digit: char,
    /// Sample position (absolute, 8 kHz) of the end of the run's first and last window.
    first_end: u64,
    last_end: u64,
    count: u32,
    level_sum: f64,
}

impl Run {
    fn new(hit: WindowHit, end: u64) -> Self {
        Run {
            digit: hit.digit,
            first_end: end,
            last_end: end,
            count: 1,
            level_sum: hit.level_dbm0,
        }
    }

    fn add(&mut self, hit: WindowHit, end: u64) {
        self.last_end = end;
        self.count += 1;
        self.level_sum += hit.level_dbm0;
    }

    fn to_digit(self) -> DtmfDigit {
        let span = self.last_end.saturating_sub(self.first_end);
        // Window ends run from ~0.7 window after the tone starts to ~0.3 window after it ends;
        // add half a window and half a hop to turn the span into the tone's length.
        let samples = span + (BLOCK + HOP) as u64 / 2;
        let level = self.level_sum / f64::from(self.count.max(1));
        DtmfDigit {
            digit: self.digit,
            duration_ms: u32::try_from(samples / SAMPLES_PER_MS).unwrap_or(u32::MAX),
            volume_dbm0: Some(level.round().clamp(-63.0, 0.0) as i8),
            source: DtmfSource::Inband,
        }
    }
}

/// Detects DTMF key presses in received audio (8 kHz, 16-bit linear, mono).
///
/// Feed it every received frame in order with the time of its first sample; it runs Goertzel
/// filters on the 8 DTMF frequencies over 102-sample windows every 5 ms, and a window counts for a
/// digit when: each tone is above −32 dBm0; one row and one column tone each dominate their group
/// by 8 dB; the twist is within +8 dB (row louder) / +4 dB (column louder); the pair holds 70 % of
/// the window's energy; their second harmonics are 10 dB below them (the row's is not checked
/// where it falls next to the column tone, which leaks into it). A digit is pressed after
/// ≈ 35 ms of agreeing windows and reported once, when it is released (after ≈ 20 ms without it),
/// with its measured length; [`pressed`](Self::pressed) tells the digit held now. Gaps in the
/// frame times count as silence. Call [`finish`](Self::finish) at the end of the stream.
#[derive(Debug)]
pub struct InbandDtmfDetector {
    /// The last samples received, newest last (at most a window plus a frame).
    history: Vec<f64>,
    /// New samples since the last analysed window.
    since_window: usize,
    /// Absolute position (8 kHz samples) of the next expected sample, once started.
    next_sample: Option<u64>,
    run: Option<Run>,
    pressed: Option<Run>,
    misses: u32,
    pending: VecDeque<DtmfDigit>,
    row_coeffs: [f64; 4],
    col_coeffs: [f64; 4],
}

impl Default for InbandDtmfDetector {
    fn default() -> Self {
        Self::new()
    }
}

impl InbandDtmfDetector {
    /// A detector with the thresholds described on the type.
    pub fn new() -> Self {
        InbandDtmfDetector {
            history: Vec::with_capacity(BLOCK + 2 * super::FRAME_SAMPLES),
            since_window: 0,
            next_sample: None,
            run: None,
            pressed: None,
            misses: 0,
            pending: VecDeque::new(),
            row_coeffs: ROW_HZ.map(goertzel_coeff),
            col_coeffs: COL_HZ.map(goertzel_coeff),
        }
    }

    /// Takes the next received frame (normally 160 samples = 20 ms) starting at `frame_start_ms`;
    /// returns a digit when a key press ends in it.
    pub fn push(&mut self, frame: &[i16], frame_start_ms: u64) -> Option<DtmfDigit> {
        let start = frame_start_ms.saturating_mul(SAMPLES_PER_MS);
        match self.next_sample {
            // Continuous (within a millisecond of rounding): keep our own sample count.
            Some(expected) if expected.abs_diff(start) <= SAMPLES_PER_MS => {}
            Some(expected) => {
                // A gap (lost frames) or a jump back: never analyse across it. A gap counts as
                // windows without any digit.
                self.history.clear();
                self.since_window = 0;
                if start > expected {
                    let missed = (start - expected) / HOP as u64;
                    let missed = u32::try_from(missed).unwrap_or(u32::MAX).min(PAUSE_WINDOWS);
                    for i in 0..missed {
                        self.step(None, expected + (u64::from(i) + 1) * HOP as u64);
                    }
                }
                self.next_sample = Some(start);
            }
            None => self.next_sample = Some(start),
        }
        let mut position = self.next_sample.unwrap_or(start);
        for &s in frame {
            self.history.push(f64::from(s));
            self.since_window += 1;
            position += 1;
            if self.history.len() >= BLOCK && self.since_window >= HOP {
                self.since_window = 0;
                let window_start = self.history.len() - BLOCK;
                let hit = self.analyse(window_start);
                self.step(hit, position);
            }
        }
        self.next_sample = Some(position);
        if self.history.len() > BLOCK {
            let excess = self.history.len() - BLOCK;
            self.history.drain(..excess);
        }
        self.pending.pop_front()
    }

    /// Another digit completed by the same [`push`](Self::push) (only possible with frames longer
    /// than ~50 ms or across a gap).
    pub fn next_digit(&mut self) -> Option<DtmfDigit> {
        self.pending.pop_front()
    }

    /// The digit held right now (confirmed, not yet released): the start of a press.
    pub fn pressed(&self) -> Option<char> {
        self.pressed.map(|p| p.digit)
    }

    /// Ends the stream: reports a digit still held, and forgets the audio seen.
    pub fn finish(&mut self) -> Option<DtmfDigit> {
        if let Some(p) = self.pressed.take() {
            self.pending.push_back(p.to_digit());
        }
        self.run = None;
        self.misses = 0;
        self.history.clear();
        self.since_window = 0;
        self.next_sample = None;
        self.pending.pop_front()
    }

    /// Advances the press state machine by one window result.
    fn step(&mut self, hit: Option<WindowHit>, end: u64) {
        // Track the run of identical detections.
        match (hit, self.run.as_mut()) {
            (Some(h), Some(run)) if run.digit == h.digit => run.add(h, end),
            (Some(h), _) => self.run = Some(Run::new(h, end)),
            (None, _) => self.run = None,
        }
        if let Some(p) = self.pressed.as_mut() {
            match hit {
                Some(h) if h.digit == p.digit => {
                    p.add(h, end);
                    self.misses = 0;
                    // The press owns these windows; a new run of it starts only after release.
                    self.run = None;
                }
                _ => {
                    self.misses += 1;
                    if self.misses >= PAUSE_WINDOWS {
                        let done = p.to_digit();
                        self.pending.push_back(done);
                        self.pressed = None;
                        self.misses = 0;
                    }
                }
            }
        }
        if self.pressed.is_none() {
            if let Some(run) = self.run {
                if run.count >= MIN_WINDOWS {
                    self.pressed = Some(run);
                    self.run = None;
                    self.misses = 0;
                }
            }
        }
    }

    /// Checks the window `history[start..start + BLOCK]` for one DTMF digit.
    fn analyse(&self, start: usize) -> Option<WindowHit> {
        let window = self.history.get(start..start + BLOCK)?;
        let n = BLOCK as f64;
        let energy: f64 = window.iter().map(|x| x * x).sum();
        // |X|² of a sine of amplitude A over the window is (N·A/2)².
        let min_amp = DBM0_AMPLITUDE * 10f64.powf(MIN_TONE_DBM0 / 20.0);
        let min_power = (n * min_amp / 2.0).powi(2);
        // A sine's energy over the window is N·A²/2 = 2|X|²/N.
        if energy < 2.0 * min_power / n {
            return None;
        }
        let rows = self.row_coeffs.map(|c| goertzel_power(window, c));
        let cols = self.col_coeffs.map(|c| goertzel_power(window, c));
        let (r, pr) = strongest(&rows);
        let (c, pc) = strongest(&cols);
        if pr < min_power || pc < min_power {
            return None;
        }
        if pr > pc * NORMAL_TWIST || pc > pr * REVERSE_TWIST {
            return None;
        }
        let dominant = |powers: &[f64; 4], best: usize, p: f64| {
            powers
                .iter()
                .enumerate()
                .all(|(i, &q)| i == best || p >= q * RELATIVE_PEAK)
        };
        if !dominant(&rows, r, pr) || !dominant(&cols, c, pc) {
            return None;
        }
        if 2.0 * (pr + pc) / n < MIN_PAIR_SHARE * energy {
            return None;
        }
        // The row's second harmonic (1394–1882 Hz) is skipped when it lies next to the column
        // tone (digits 2, 3, 6, B, C): that tone itself leaks into the filter there.
        let row_harmonic = 2.0 * ROW_HZ[r];
        let mut harmonics = goertzel_power(window, goertzel_coeff(2.0 * COL_HZ[c]));
        if (row_harmonic - COL_HZ[c]).abs() > HARMONIC_GUARD_HZ {
            harmonics += goertzel_power(window, goertzel_coeff(row_harmonic));
        }
        if harmonics > MAX_HARMONIC_RATIO * (pr + pc) {
            return None;
        }
        // Level of the louder tone: mean power 2|X|²/N² against a 0 dBm0 sine's A²/2.
        let mean_power = 2.0 * pr.max(pc) / (n * n);
        let level_dbm0 = 10.0 * (mean_power / (DBM0_AMPLITUDE * DBM0_AMPLITUDE / 2.0)).log10();
        Some(WindowHit {
            digit: KEYPAD[r][c],
            level_dbm0,
        })
    }
}

fn goertzel_coeff(freq_hz: f64) -> f64 {
    2.0 * (2.0 * std::f64::consts::PI * freq_hz / f64::from(super::SAMPLE_RATE)).cos()
}

/// |X(f)|² of `samples` at the frequency whose coefficient is `coeff`.
fn goertzel_power(samples: &[f64], coeff: f64) -> f64 {
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &x in samples {
        let s = x + coeff * s1 - s2;
        s2 = s1;
        s1 = s;
    }
    (s1 * s1 + s2 * s2 - coeff * s1 * s2).max(0.0)
}

fn strongest(powers: &[f64; 4]) -> (usize, f64) {
    let mut best = (0, powers[0]);
    for (i, &p) in powers.iter().enumerate().skip(1) {
        if p > best.1 {
            best = (i, p);
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::g711::Codec;

    // ---- RFC 4733 receive -------------------------------------------------------------------

    fn ev(code: u8, end: bool, volume: u8, duration: u16) -> [u8; 4] {
        EventPayload {
            event: code,
            end,
            volume,
            duration,
        }
        .to_bytes()
    }

    /// The packets a well-behaved sender emits for one event: (seq, ts, marker, payload).
    fn event_packets(
        code: u8,
        ts: u32,
        first_seq: u16,
        duration: u16,
    ) -> Vec<(u16, u32, bool, [u8; 4])> {
        let mut out = Vec::new();
        let mut seq = first_seq;
        let mut d = 160u16;
        while d < duration {
            out.push((seq, ts, d == 160, ev(code, false, 10, d)));
            seq = seq.wrapping_add(1);
            d += 160;
        }
        for _ in 0..3 {
            out.push((seq, ts, false, ev(code, true, 10, duration)));
            seq = seq.wrapping_add(1);
        }
        out
    }

    fn feed(
        rx: &mut Rfc4733Receiver,
        packets: &[(u16, u32, bool, [u8; 4])],
        t0: u64,
    ) -> Vec<DtmfDigit> {
        let mut got = Vec::new();
        for (i, (seq, ts, m, p)) in packets.iter().enumerate() {
            let now = t0 + 20 * i as u64;
            got.extend(rx.on_packet(*seq, *ts, *m, p, now));
            got.extend(rx.poll(now));
        }
        got
    }

    #[test]
    fn rfc4733_normal_event_reported_once_on_first_end() {
        let mut rx = Rfc4733Receiver::new();
        let packets = event_packets(5, 1000, 100, 800);
        let mut reported_at = None;
        for (i, (seq, ts, m, p)) in packets.iter().enumerate() {
            if i == 1 {
                assert_eq!(rx.active(), Some('5'));
            }
            if let Some(d) = rx.on_packet(*seq, *ts, *m, p, 20 * i as u64) {
                assert!(reported_at.is_none(), "reported twice");
                reported_at = Some(i);
                assert_eq!(
                    d,
                    DtmfDigit {
                        digit: '5',
                        duration_ms: 100,
                        volume_dbm0: Some(-10),
                        source: DtmfSource::Rfc4733
                    }
                );
            }
        }
        // 4 updates (160..640) then the first of 3 end packets.
        assert_eq!(reported_at, Some(4));
        assert_eq!(rx.active(), None);
        assert_eq!(rx.poll(10_000), None);
    }

    #[test]
    fn rfc4733_lost_end_packets_reported_once_by_timeout() {
        let mut rx = Rfc4733Receiver::new();
        let packets: Vec<_> = event_packets(9, 5000, 7, 800)
            .into_iter()
            .filter(|p| ev_end(&p.3) == Some(false))
            .collect();
        assert_eq!(packets.len(), 4);
        for (i, (seq, ts, m, p)) in packets.iter().enumerate() {
            assert_eq!(rx.on_packet(*seq, *ts, *m, p, 20 * i as u64), None);
        }
        let last = 60;
        assert_eq!(rx.poll(last + 199), None);
        let d = rx.poll(last + 200).expect("timed out digit");
        assert_eq!(d.digit, '9');
        assert_eq!(d.duration_ms, 80); // 640 units, the last duration seen
        assert_eq!(rx.poll(last + 400), None);
        // A very late end packet of the same event must not report it again.
        assert_eq!(
            rx.on_packet(12, 5000, false, &ev(9, true, 10, 800), 900),
            None
        );
        assert_eq!(rx.poll(2000), None);
    }

    fn ev_end(p: &[u8; 4]) -> Option<bool> {
        EventPayload::parse(p).map(|e| e.end)
    }

    #[test]
    fn rfc4733_duplicated_and_reordered_packets() {
        let mut rx = Rfc4733Receiver::new();
        let mut packets = event_packets(1, 42, 65530, 960); // sequence numbers wrap too
                                                            // Duplicate everything, move the first packet last, and swap an end before an update.
        let dup = packets.clone();
        packets.extend(dup);
        let first = packets.remove(0);
        packets.push(first);
        packets.swap(2, 6);
        let got = feed(&mut rx, &packets, 0);
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].digit, '1');
        assert_eq!(got[0].duration_ms, 120);
        assert_eq!(rx.poll(100_000), None);
    }

    #[test]
    fn rfc4733_same_digit_twice_is_two_presses() {
        let mut rx = Rfc4733Receiver::new();
        let mut packets = event_packets(1, 8000, 10, 640);
        packets.extend(event_packets(1, 8000 + 1600, 20, 640));
        let got = feed(&mut rx, &packets, 0);
        assert_eq!(got.iter().map(|d| d.digit).collect::<String>(), "11");
    }

    #[test]
    fn rfc4733_new_event_ends_one_whose_end_was_lost() {
        let mut rx = Rfc4733Receiver::new();
        let mut packets: Vec<_> = event_packets(3, 100, 1, 800)
            .into_iter()
            .filter(|p| ev_end(&p.3) == Some(false))
            .collect();
        // Only the end packets of the next event arrive, right away.
        packets.extend(
            event_packets(4, 100 + 1200, 20, 480)
                .into_iter()
                .filter(|p| ev_end(&p.3) == Some(true)),
        );
        let mut got = Vec::new();
        for (i, (seq, ts, m, p)) in packets.iter().enumerate() {
            got.extend(rx.on_packet(*seq, *ts, *m, p, i as u64));
        }
        // Both digits complete on one packet: the second comes from poll.
        got.extend(rx.poll(10));
        assert_eq!(got.iter().map(|d| d.digit).collect::<String>(), "34");
        assert_eq!(rx.poll(1000), None);
    }

    #[test]
    fn rfc4733_straggler_from_finished_event_is_dropped() {
        let mut rx = Rfc4733Receiver::new();
        let a = event_packets(7, 1000, 100, 480);
        let b = event_packets(8, 3000, 110, 480);
        let mut packets = a.clone();
        // The last end packet of A arrives after B has started.
        let straggler = packets.pop().unwrap();
        packets.push(b[0]);
        packets.push(straggler);
        packets.extend_from_slice(&b[1..]);
        // And A's first packet again, very late.
        packets.push(a[0]);
        let got = feed(&mut rx, &packets, 0);
        assert_eq!(got.iter().map(|d| d.digit).collect::<String>(), "78");
    }

    #[test]
    fn rfc4733_timestamp_wrap() {
        let mut rx = Rfc4733Receiver::new();
        let ts1 = u32::MAX - 100;
        let ts2 = ts1.wrapping_add(1600);
        let mut packets = event_packets(2, ts1, 500, 800);
        packets.extend(event_packets(0, ts2, 510, 800));
        let got = feed(&mut rx, &packets, 0);
        assert_eq!(got.iter().map(|d| d.digit).collect::<String>(), "20");
    }

    #[test]
    fn rfc4733_sender_restart_with_older_timestamp_is_new_event() {
        let mut rx = Rfc4733Receiver::new();
        let mut packets = event_packets(2, 90_000, 500, 800);
        packets.extend(event_packets(3, 10, 510, 800));
        let got = feed(&mut rx, &packets, 0);
        assert_eq!(got.iter().map(|d| d.digit).collect::<String>(), "23");
    }

    #[test]
    fn rfc4733_long_event_segments_are_one_digit() {
        let mut rx = Rfc4733Receiver::new();
        let ts = 1_000u32;
        assert_eq!(rx.on_packet(1, ts, true, &ev(6, false, 10, 160), 0), None);
        assert_eq!(
            rx.on_packet(2, ts, false, &ev(6, false, 10, 65535), 20),
            None
        );
        let ts2 = ts.wrapping_add(65535);
        assert_eq!(
            rx.on_packet(3, ts2, false, &ev(6, false, 10, 160), 40),
            None
        );
        let d = rx.on_packet(4, ts2, false, &ev(6, true, 10, 800), 60);
        let d = d.expect("digit");
        assert_eq!(d.digit, '6');
        assert_eq!(d.duration_ms, (65535 + 800) / 8);
        assert_eq!(rx.poll(10_000), None);
    }

    #[test]
    fn rfc4733_garbage_never_panics_and_is_counted() {
        let mut rx = Rfc4733Receiver::new();
        assert_eq!(rx.on_packet(1, 0, true, &[], 0), None);
        assert_eq!(rx.on_packet(2, 0, true, &[5], 0), None);
        assert_eq!(rx.on_packet(3, 0, true, &[5, 0x8a, 0x03], 0), None);
        assert_eq!(rx.rejected(), 3);
        // Non-DTMF events (flash, tones) are ignored, not reported.
        assert_eq!(rx.on_packet(4, 10, true, &ev(16, true, 10, 800), 0), None);
        assert_eq!(rx.on_packet(5, 20, true, &ev(200, true, 10, 800), 0), None);
        assert_eq!(rx.ignored(), 2);
        assert_eq!(rx.poll(10_000), None);
        // Random bytes of random lengths: no panic, every digit reported is a DTMF digit.
        let mut rng = XorShift(0x1234_5678);
        let mut n_rejected = rx.rejected();
        for i in 0..20_000u64 {
            let len = (rng.next() % 9) as usize;
            let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            let seq = rng.next() as u16;
            let ts = rng.next() as u32;
            if len < 4 {
                n_rejected += 1;
            }
            for d in rx
                .on_packet(seq, ts, rng.next() & 1 == 1, &bytes, i)
                .into_iter()
                .chain(rx.poll(i))
            {
                assert!(DTMF_DIGITS.contains(&d.digit));
                assert!(d.volume_dbm0.unwrap() <= 0 && d.volume_dbm0.unwrap() >= -63);
            }
        }
        assert_eq!(rx.rejected(), n_rejected);
    }

    // ---- RFC 4733 send ----------------------------------------------------------------------

    #[test]
    fn sender_packet_sequence() {
        let mut tx = Rfc4733Sender::new();
        tx.queue('#', 100).unwrap();
        tx.queue('1', 50).unwrap();
        let mut ticks = Vec::new();
        for _ in 0..20 {
            ticks.push(tx.next_packet());
        }
        let p: Vec<_> = ticks.iter().take(7).map(|t| t.unwrap()).collect();
        let durations: Vec<u16> = p
            .iter()
            .map(|p| u16::from_be_bytes([p.payload[2], p.payload[3]]))
            .collect();
        assert_eq!(durations, [160, 320, 480, 640, 800, 800, 800]);
        assert_eq!(
            p.iter().map(|p| p.marker).collect::<Vec<_>>(),
            [true, false, false, false, false, false, false]
        );
        assert_eq!(
            p.iter().map(|p| p.end).collect::<Vec<_>>(),
            [false, false, false, false, true, true, true]
        );
        assert_eq!(
            p.iter().map(|p| p.timestamp_offset).collect::<Vec<_>>(),
            [0, 160, 320, 480, 640, 800, 960]
        );
        assert!(p.iter().all(|p| p.payload[0] == 11 && p.digit == '#'));
        assert_eq!(p[0].payload[1], 10); // volume 10, E clear
        assert_eq!(p[4].payload[1], 0x80 | 10);
        // One tick of audio, then the next digit (60 ms after the first one's end).
        assert_eq!(ticks[7], None);
        let second = ticks[8].unwrap();
        assert!(second.marker && second.payload[0] == 1 && second.timestamp_offset == 0);
        // 50 ms = 400 units: 160, 320, then end 400 ×3.
        let rest: Vec<_> = ticks[8..13].iter().map(|t| t.unwrap()).collect();
        assert_eq!(
            rest.iter()
                .map(|p| u16::from_be_bytes([p.payload[2], p.payload[3]]))
                .collect::<Vec<_>>(),
            [160, 320, 400, 400, 400]
        );
        assert!(ticks[13..].iter().all(Option::is_none));
        assert!(!tx.is_busy());
    }

    #[test]
    fn sender_rejects_invalid_digits() {
        let mut tx = Rfc4733Sender::new();
        assert_eq!(tx.queue('x', 100), Err(DtmfError::InvalidDigit('x')));
        assert_eq!(tx.queue_str("12E4", 100), Err(DtmfError::InvalidDigit('E')));
        assert!(!tx.is_busy(), "nothing queued on error");
        assert!(tx.queue('b', 100).is_ok());
        assert_eq!(tx.next_packet().unwrap().digit, 'B');
        assert_eq!(
            DtmfError::InvalidDigit('x').to_string(),
            "invalid DTMF digit 'x': expected one of 0-9, *, #, A-D"
        );
    }

    /// A session-like loop: audio timestamps advance 160 per tick, events keep theirs.
    fn send_through(tx: &mut Rfc4733Sender, rx: &mut Rfc4733Receiver, ts0: u32) -> Vec<DtmfDigit> {
        let mut got = Vec::new();
        let mut seq = 65_000u16;
        for tick in 0..2000u32 {
            let now = u64::from(tick) * 20;
            let tick_ts = ts0.wrapping_add(tick * 160);
            if let Some(p) = tx.next_packet() {
                let ts = tick_ts.wrapping_sub(p.timestamp_offset);
                got.extend(rx.on_packet(seq, ts, p.marker, &p.payload, now));
            }
            seq = seq.wrapping_add(1);
            got.extend(rx.poll(now));
        }
        got
    }

    #[test]
    fn sender_to_receiver_round_trip() {
        let mut tx = Rfc4733Sender::with_volume(7);
        tx.queue_str("0123456789*#ABCD", 100).unwrap();
        tx.queue('5', 250).unwrap();
        tx.queue('5', 40).unwrap();
        let mut rx = Rfc4733Receiver::new();
        let got = send_through(&mut tx, &mut rx, u32::MAX - 3000);
        let digits: String = got.iter().map(|d| d.digit).collect();
        assert_eq!(digits, "0123456789*#ABCD55");
        assert!(got[..16].iter().all(|d| d.duration_ms == 100));
        assert_eq!(got[16].duration_ms, 250);
        assert_eq!(got[17].duration_ms, 40);
        assert!(got.iter().all(|d| d.volume_dbm0 == Some(-7)));
    }

    // ---- SIP INFO ---------------------------------------------------------------------------

    #[test]
    fn info_dtmf_relay_bodies() {
        let relay = "application/dtmf-relay";
        let d = parse_info_body(relay, b"Signal=5\r\nDuration=160\r\n").unwrap();
        assert_eq!(
            d,
            DtmfDigit {
                digit: '5',
                duration_ms: 160,
                volume_dbm0: None,
                source: DtmfSource::SipInfo
            }
        );
        let digit = |ct: &str, body: &str| parse_info_body(ct, body.as_bytes()).map(|d| d.digit);
        assert_eq!(digit(relay, "signal= * \nduration = 250"), Some('*'));
        assert_eq!(digit(relay, "SIGNAL=#"), Some('#'));
        assert_eq!(digit(relay, "Signal=10\r\nDuration=100"), Some('*'));
        assert_eq!(digit(relay, "Signal=11\r\n"), Some('#'));
        assert_eq!(digit(relay, "Signal=12"), Some('A'));
        assert_eq!(digit(relay, "Signal=d\r\n"), Some('D'));
        assert_eq!(digit(relay, "Signal: 7\nDuration: 200\n"), Some('7'));
        assert_eq!(digit(relay, "Duration=200\r\nSignal=0"), Some('0'));
        assert_eq!(digit(relay, "Signal=star"), Some('*'));
        assert_eq!(
            digit("Application/DTMF-Relay; charset=utf-8", "Signal=9"),
            Some('9')
        );
        let d = parse_info_body(relay, b"Signal=3\r\nDuration=abc").unwrap();
        assert_eq!(d.duration_ms, INFO_DEFAULT_DURATION_MS);
        let d = parse_info_body(relay, b"Signal=3\r\nDuration=999999999").unwrap();
        assert_eq!(d.duration_ms, 60_000);
        // Not digits.
        assert_eq!(digit(relay, "Signal=!"), None); // flash hook
        assert_eq!(digit(relay, "Signal=16"), None);
        assert_eq!(digit(relay, "Signal=X"), None);
        assert_eq!(digit(relay, "Signal="), None);
        assert_eq!(digit(relay, "Duration=160"), None);
        assert_eq!(digit(relay, ""), None);
        assert_eq!(digit(relay, "Signal=99999999999"), None);
        assert_eq!(digit("application/sdp", "Signal=5"), None);
        assert_eq!(digit("", "Signal=5"), None);
        assert_eq!(parse_info_body(relay, &[0xff, 0xfe, b'=', 0x80]), None);
        assert_eq!(parse_info_body(relay, &vec![b'1'; 5000]), None);
    }

    #[test]
    fn info_dtmf_bodies() {
        let digit = |body: &str| {
            parse_info_body("application/dtmf", body.as_bytes()).map(|d| {
                assert_eq!(d.source, DtmfSource::SipInfo);
                d.digit
            })
        };
        assert_eq!(digit("5"), Some('5'));
        assert_eq!(digit("5\r\n"), Some('5'));
        assert_eq!(digit(" # "), Some('#'));
        assert_eq!(digit("10"), Some('*'));
        assert_eq!(digit("11"), Some('#'));
        assert_eq!(digit("15"), Some('D'));
        assert_eq!(digit("c"), Some('C'));
        assert_eq!(digit("16"), None);
        assert_eq!(digit("12 3"), None);
        assert_eq!(digit(""), None);
        assert_eq!(digit("Signal=5"), None);
    }

    // ---- In-band ----------------------------------------------------------------------------

    /// Deterministic noise and randomness for the tests.
    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn uniform(&mut self) -> f64 {
            (self.next() >> 11) as f64 / (1u64 << 53) as f64
        }

        /// Standard normal (Box–Muller).
        fn gauss(&mut self) -> f64 {
            let u1 = self.uniform().max(1e-12);
            let u2 = self.uniform();
            (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
        }
    }

    fn amplitude(dbm0: f64) -> f64 {
        DBM0_AMPLITUDE * 10f64.powf(dbm0 / 20.0)
    }

    fn freqs(digit: char) -> (f64, f64) {
        for (r, row) in KEYPAD.iter().enumerate() {
            for (c, &d) in row.iter().enumerate() {
                if d == digit {
                    return (ROW_HZ[r], COL_HZ[c]);
                }
            }
        }
        panic!("not a digit: {digit}");
    }

    /// Builds a test signal: segments of tones and silence, then noise, then µ-law round trip.
    struct Signal {
        samples: Vec<f64>,
        rng: XorShift,
    }

    impl Signal {
        fn new(seed: u64) -> Self {
            Signal {
                samples: Vec::new(),
                rng: XorShift(seed),
            }
        }

        fn silence(&mut self, ms: f64) -> &mut Self {
            let n = (ms * 8.0).round() as usize;
            self.samples.extend(std::iter::repeat_n(0.0, n));
            self
        }

        /// Two tones at `row_dbm0` / `col_dbm0`, frequencies scaled by `scale`.
        fn tone(&mut self, digit: char, ms: f64, row_dbm0: f64, col_dbm0: f64) -> &mut Self {
            self.tone_scaled(digit, ms, row_dbm0, col_dbm0, 1.0)
        }

        fn tone_scaled(
            &mut self,
            digit: char,
            ms: f64,
            row_dbm0: f64,
            col_dbm0: f64,
            scale: f64,
        ) -> &mut Self {
            let (fr, fc) = freqs(digit);
            let (ar, ac) = (amplitude(row_dbm0), amplitude(col_dbm0));
            let phase_r = self.rng.uniform() * std::f64::consts::TAU;
            let phase_c = self.rng.uniform() * std::f64::consts::TAU;
            let n = (ms * 8.0).round() as usize;
            for i in 0..n {
                let t = i as f64 / 8000.0;
                let w = std::f64::consts::TAU * t * scale;
                self.samples
                    .push(ar * (w * fr + phase_r).sin() + ac * (w * fc + phase_c).sin());
            }
            self
        }

        /// Adds white noise `snr_db` below a tone pair at `tone_dbm0` per tone, then G.711 µ-law.
        fn render(&mut self, tone_dbm0: f64, snr_db: f64) -> Vec<i16> {
            let tone_power = 2.0 * amplitude(tone_dbm0).powi(2) / 2.0;
            let sigma = (tone_power / 10f64.powf(snr_db / 10.0)).sqrt();
            let pcm: Vec<i16> = self
                .samples
                .iter()
                .map(|&x| {
                    (x + sigma * self.rng.gauss())
                        .round()
                        .clamp(-32768.0, 32767.0) as i16
                })
                .collect();
            ulaw_round_trip(&pcm)
        }
    }

    fn ulaw_round_trip(pcm: &[i16]) -> Vec<i16> {
        let mut bytes = Vec::new();
        Codec::Pcmu.encode(pcm, &mut bytes);
        let mut out = Vec::new();
        Codec::Pcmu.decode(&bytes, &mut out);
        out
    }

    /// Feeds audio in 160-sample frames from `t0_ms`, then 200 ms of silence, then `finish`.
    fn detect(audio: &[i16], t0_ms: u64) -> Vec<DtmfDigit> {
        let mut det = InbandDtmfDetector::new();
        let mut got = Vec::new();
        let mut t = t0_ms;
        let silence = [0i16; 160];
        let frames = audio
            .chunks(160)
            .chain(std::iter::repeat_n(&silence[..], 10));
        for frame in frames {
            got.extend(det.push(frame, t));
            got.extend(det.next_digit());
            t += 20;
        }
        got.extend(det.finish());
        got
    }

    /// Windows that pass the per-window checks, and the longest run of one digit among them.
    fn window_hits(audio: &[i16]) -> (usize, u32) {
        let mut det = InbandDtmfDetector::new();
        let (mut hits, mut longest, mut run) = (0, 0, (' ', 0u32));
        for (i, &s) in audio.iter().enumerate() {
            det.history.push(f64::from(s));
            if det.history.len() > BLOCK {
                det.history.remove(0);
            }
            if i % HOP != 0 || det.history.len() < BLOCK {
                continue;
            }
            match det.analyse(0) {
                Some(hit) => {
                    hits += 1;
                    run = if run.0 == hit.digit {
                        (run.0, run.1 + 1)
                    } else {
                        (hit.digit, 1)
                    };
                    longest = longest.max(run.1);
                }
                None => run = (' ', 0),
            }
        }
        (hits, longest)
    }

    fn digits(got: &[DtmfDigit]) -> String {
        got.iter().map(|d| d.digit).collect()
    }

    #[test]
    fn inband_all_digits_levels_durations_noise() {
        let all = "0123456789*#ABCD";
        let mut seed = 1u64;
        for level in [-10.0, -25.0] {
            for ms in [50.0, 100.0] {
                for snr in [15.0, 20.0] {
                    seed += 1;
                    let mut sig = Signal::new(seed * 7919);
                    sig.silence(37.0 + seed as f64 * 3.0);
                    for (i, d) in all.chars().enumerate() {
                        // Uneven pauses (40–67 ms) keep tones off any frame or window grid.
                        sig.tone(d, ms, level, level)
                            .silence(40.0 + (i * 7 % 28) as f64);
                    }
                    sig.silence(100.0);
                    let audio = sig.render(level, snr);
                    let got = detect(&audio, 1_000_000);
                    let what = format!("{level} dBm0, {ms} ms, SNR {snr} dB");
                    assert_eq!(digits(&got), all, "{what}: {got:?}");
                    for d in &got {
                        assert_eq!(d.source, DtmfSource::Inband);
                        let err = f64::from(d.duration_ms) - ms;
                        assert!(err.abs() <= 10.0, "{what}: duration {d:?}");
                        let v = f64::from(d.volume_dbm0.unwrap());
                        assert!((v - level).abs() <= 2.0, "{what}: level {d:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn inband_30ms_tones_rejected_40ms_accepted() {
        for level in [-10.0, -25.0] {
            for offset in 0..20 {
                let mut sig = Signal::new(100 + offset);
                sig.silence(offset as f64 * 1.3);
                for d in "159#D*".chars() {
                    sig.tone(d, 30.0, level, level).silence(80.0);
                }
                let got = detect(&sig.render(level, 20.0), 0);
                assert!(got.is_empty(), "30 ms at {level}, offset {offset}: {got:?}");

                let mut sig = Signal::new(200 + offset);
                sig.silence(offset as f64 * 1.3);
                for d in "159#D*".chars() {
                    sig.tone(d, 40.0, level, level).silence(80.0);
                }
                let got = detect(&sig.render(level, 20.0), 0);
                assert_eq!(digits(&got), "159#D*", "40 ms at {level}, offset {offset}");
            }
        }
    }

    #[test]
    fn inband_twist_limits() {
        // Row louder by 6 dB (normal twist ≤ 8) and column louder by 3 dB (reverse ≤ 4): accepted.
        let mut sig = Signal::new(5);
        sig.silence(30.0)
            .tone('5', 80.0, -10.0, -16.0)
            .silence(60.0)
            .tone('9', 80.0, -13.0, -10.0)
            .silence(60.0);
        assert_eq!(digits(&detect(&sig.render(-13.0, 20.0), 0)), "59");
        // Row louder by 10 dB, column louder by 6 dB: rejected.
        let mut sig = Signal::new(6);
        sig.silence(30.0)
            .tone('5', 80.0, -10.0, -20.0)
            .silence(60.0)
            .tone('9', 80.0, -16.0, -10.0)
            .silence(60.0);
        let got = detect(&sig.render(-15.0, 20.0), 0);
        assert!(got.is_empty(), "{got:?}");
    }

    #[test]
    fn inband_frequency_tolerance_and_single_tones() {
        // ±1.5 % off-frequency (allowed to senders) is still detected.
        for scale in [0.985, 1.015] {
            let mut sig = Signal::new(8);
            sig.silence(20.0);
            for d in "147*2580369#ABCD".chars() {
                sig.tone_scaled(d, 60.0, -12.0, -12.0, scale).silence(60.0);
            }
            let got = detect(&sig.render(-12.0, 20.0), 0);
            assert_eq!(digits(&got), "147*2580369#ABCD", "scale {scale}");
        }
        // One tone alone is not a digit.
        let mut sig = Signal::new(9);
        sig.tone('5', 200.0, -10.0, -80.0)
            .silence(50.0)
            .tone('5', 200.0, -80.0, -10.0);
        let got = detect(&sig.render(-10.0, 30.0), 0);
        assert!(got.is_empty(), "{got:?}");
    }

    #[test]
    fn inband_presses_pauses_and_dropouts() {
        // Same digit twice with a 40 ms pause: two presses.
        let mut sig = Signal::new(10);
        sig.tone('7', 80.0, -12.0, -12.0)
            .silence(40.0)
            .tone('7', 80.0, -12.0, -12.0);
        assert_eq!(digits(&detect(&sig.render(-12.0, 20.0), 0)), "77");
        // A 10 ms dropout inside one long press: one press, with the whole length.
        let mut sig = Signal::new(11);
        sig.tone('7', 300.0, -12.0, -12.0)
            .silence(10.0)
            .tone('7', 300.0, -12.0, -12.0);
        let got = detect(&sig.render(-12.0, 20.0), 0);
        assert_eq!(digits(&got), "7");
        assert!((got[0].duration_ms as i64 - 610).abs() <= 10, "{got:?}");
        // A held key is reported once, when released; `pressed` shows it while held.
        let mut sig = Signal::new(12);
        sig.tone('#', 1000.0, -12.0, -12.0);
        let audio = sig.render(-12.0, 20.0);
        let mut det = InbandDtmfDetector::new();
        for (i, frame) in audio.chunks(160).enumerate() {
            assert_eq!(det.push(frame, 20 * i as u64), None);
            if i >= 3 {
                assert_eq!(det.pressed(), Some('#'));
            }
        }
        // Frames stop (a gap in time): the press ends.
        let d = det.push(&[0; 160], 5000).expect("released by the gap");
        assert_eq!(d.digit, '#');
        assert!((d.duration_ms as i64 - 1000).abs() <= 10, "{d:?}");
        assert_eq!(det.finish(), None);
    }

    #[test]
    fn inband_loud_noise_and_odd_frames_do_not_panic_or_detect() {
        let mut rng = XorShift(99);
        let mut det = InbandDtmfDetector::new();
        let mut t = 0;
        for i in 0..500 {
            let len = [0usize, 1, 80, 160, 161, 320, 7][i % 7];
            let frame: Vec<i16> = (0..len)
                .map(|_| (rng.gauss() * 8000.0).clamp(-32768.0, 32767.0) as i16)
                .collect();
            assert_eq!(det.push(&frame, t), None);
            t += (len as u64) / 8;
        }
        // Full-scale square-ish clipping and DC.
        assert_eq!(det.push(&[i16::MAX; 160], t), None);
        assert_eq!(det.push(&[i16::MIN; 160], t + 20), None);
        assert_eq!(det.finish(), None);
    }

    /// espeak-ng speech through µ-law must never look like DTMF.
    #[test]
    fn inband_no_digits_in_speech() {
        let texts: [(&str, &[&str], &str); 8] = [
            (
                "en-us",
                &[],
                "Thank you for calling the customer service center. Please listen carefully, \
                 as our menu options have changed. For billing questions, press one. To report \
                 an outage, press two. For all other inquiries, please stay on the line and the \
                 next available representative will be with you shortly.",
            ),
            (
                "en-gb",
                &["-p", "70", "-s", "190"],
                "Hello, you have reached the voicemail of Sarah Thompson. I am not available to \
                 take your call right now. Please leave your name, your number and a short \
                 message after the tone, and I will get back to you as soon as I can. Goodbye.",
            ),
            (
                "en-us",
                &["-p", "20", "-s", "140"],
                "Zero one two three four five six seven eight nine. Star, pound, hash. My phone \
                 number is five five five, eight six seven, five three zero nine. Oh, and the \
                 extension is four four one two, if you want to reach me directly.",
            ),
            (
                "de",
                &[],
                "Guten Tag, Sie sind verbunden mit dem Kundendienst. Leider sind im Moment alle \
                 Mitarbeiter im Gespräch. Bitte haben Sie noch etwas Geduld, Sie werden mit dem \
                 nächsten freien Mitarbeiter verbunden. Vielen Dank für Ihr Verständnis.",
            ),
            (
                "fr",
                &["-p", "80"],
                "Bonjour, vous êtes bien sur le répondeur de Marie. Je ne suis pas disponible \
                 pour le moment. Laissez-moi un message après le bip sonore et je vous \
                 rappellerai dès que possible. Merci et à bientôt.",
            ),
            (
                "en-gb",
                &["-p", "95", "-s", "220"],
                "Weeeee! Oooh, aaah, eeeeee. La la la la laaa. Hmmmmm, mmm hmm. Yes, yes, \
                 absolutely, I would love to hear more about the offer, but could you call \
                 back on Thursday afternoon, perhaps around three o'clock?",
            ),
            (
                "de",
                &["-p", "10", "-s", "120"],
                "Eins, zwei, drei, vier, fünf, sechs, sieben, acht, neun, null. Die Nummer lautet \
                 null acht neun, eins zwei drei, vier fünf sechs. Auf Wiederhören.",
            ),
            (
                "fr",
                &["-p", "45", "-s", "160"],
                "Un, deux, trois, quatre, cinq, six, sept, huit, neuf, zéro, étoile, dièse. \
                 Pour le service commercial, tapez un. Pour le service technique, tapez deux. \
                 Sinon, restez en ligne, un conseiller va vous répondre.",
            ),
        ];
        let dir = tempfile::tempdir().expect("temp dir");
        let mut total_samples = 0usize;
        let mut false_digits = Vec::new();
        let (mut total_hits, mut longest_run) = (0, 0);
        for (i, (voice, extra, text)) in texts.iter().enumerate() {
            let path = dir.path().join(format!("speech{i}.wav"));
            let status = std::process::Command::new("espeak-ng")
                .arg("-v")
                .arg(voice)
                .args(*extra)
                .arg("-w")
                .arg(&path)
                .arg(text)
                .status();
            let status = match status {
                Ok(s) => s,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    println!("espeak-ng not installed: skipping the speech false-positive test");
                    return;
                }
                Err(e) => panic!("espeak-ng: {e}"),
            };
            assert!(status.success(), "espeak-ng failed for voice {voice}");
            let speech = crate::media::wav::load_wav_8k_mono(&path).expect("load speech");
            // As received: loud and quiet copies, with a little noise, through µ-law.
            for (gain, seed) in [(1.0, 1u64), (3.0, 2), (0.3, 3)] {
                let mut rng = XorShift(seed + 17 * i as u64);
                let pcm: Vec<i16> = speech
                    .iter()
                    .map(|&s| {
                        (f64::from(s) * gain + 30.0 * rng.gauss()).clamp(-32768.0, 32767.0) as i16
                    })
                    .collect();
                let audio = ulaw_round_trip(&pcm);
                total_samples += audio.len();
                let (hits, longest) = window_hits(&audio);
                total_hits += hits;
                longest_run = longest_run.max(longest);
                let got = detect(&audio, 0);
                if !got.is_empty() {
                    false_digits.push((voice, gain, got));
                }
            }
        }
        let seconds = total_samples as f64 / 8000.0;
        println!(
            "speech analysed: {seconds:.1} s; windows passing every check: {total_hits}, \
             longest run {longest_run} (a press needs {MIN_WINDOWS})"
        );
        assert!(seconds >= 60.0, "only {seconds:.1} s of speech");
        assert!(
            false_digits.is_empty(),
            "digits in speech: {false_digits:?}"
        );
    }
}

/// A digit as audio (the two DTMF sines, each at −10 dBm0), for peers that did not negotiate
/// telephone-event; `duration_ms` of tone then `gap_ms` of silence, 8 kHz.
pub fn inband_samples(digit: char, duration_ms: u32, gap_ms: u32) -> Result<Vec<i16>, DtmfError> {
    const ROWS: [f32; 4] = [697.0, 770.0, 852.0, 941.0];
    const COLS: [f32; 4] = [1209.0, 1336.0, 1477.0, 1633.0];
    let (row, col) = tone_pair(digit)?;
    let amplitude = inband_amplitude();
    let tone = (duration_ms.clamp(40, MAX_SEND_MS) * 8) as usize;
    let gap = (gap_ms.min(2000) * 8) as usize;
    let mut out = Vec::with_capacity(tone + gap);
    for n in 0..tone {
        let t = n as f32 / 8000.0;
        let v = amplitude
            * ((2.0 * std::f32::consts::PI * ROWS[row] * t).sin()
                + (2.0 * std::f32::consts::PI * COLS[col] * t).sin());
        out.push(v.clamp(-32768.0, 32767.0) as i16);
    }
    out.resize(tone + gap, 0);
    Ok(out)
}

/// Row and column (0-3 each) of a digit on the DTMF keypad.
fn tone_pair(digit: char) -> Result<(usize, usize), DtmfError> {
    let code = event_code(digit).ok_or(DtmfError::InvalidDigit(digit))?;
    Ok(match code {
        0 => (3, 1),
        1..=9 => (((code - 1) / 3) as usize, ((code - 1) % 3) as usize),
        10 => (3, 0),
        11 => (3, 2),
        _ => ((code - 12) as usize, 3),
    })
}

/// Peak of each of the two tones: −10 dBm0 per tone (a full-scale µ-law sine is +3.17 dBm0).
fn inband_amplitude() -> f32 {
    const FULL_SCALE_DBM0: f32 = 3.17;
    32767.0 * 10f32.powf((-10.0 - FULL_SCALE_DBM0) / 20.0)
}

/// A DTMF tone generated a frame at a time, its phase continuous from frame to frame (a relay
/// turning telephone-events into audio as the event's packets arrive). No allocation.
#[derive(Debug, Clone, Default)]
pub struct ToneGenerator {
    /// The two frequencies (Hz) and how many samples have been generated.
    playing: Option<(f32, f32, u64)>,
}

impl ToneGenerator {
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts `digit`'s tone (again from phase 0 when it is another digit than the one playing).
    pub fn start(&mut self, digit: char) -> Result<(), DtmfError> {
        const ROWS: [f32; 4] = [697.0, 770.0, 852.0, 941.0];
        const COLS: [f32; 4] = [1209.0, 1336.0, 1477.0, 1633.0];
        let (row, col) = tone_pair(digit)?;
        let (low, high) = (ROWS[row], COLS[col]);
        if !matches!(self.playing, Some((l, h, _)) if l == low && h == high) {
            self.playing = Some((low, high, 0));
        }
        Ok(())
    }

    pub fn stop(&mut self) {
        self.playing = None;
    }

    pub fn is_playing(&self) -> bool {
        self.playing.is_some()
    }

    /// Fills `out` with the next samples of the tone, or silence when none plays.
    pub fn fill(&mut self, out: &mut [i16]) {
        let Some((low, high, n)) = self.playing.as_mut() else {
            out.fill(0);
            return;
        };
        let amplitude = inband_amplitude();
        for s in out.iter_mut() {
            // The sample index wraps every 2^20 samples (131 s): far past any key press.
            let t = (*n % (1 << 20)) as f32 / 8000.0;
            let v = amplitude
                * ((2.0 * std::f32::consts::PI * *low * t).sin()
                    + (2.0 * std::f32::consts::PI * *high * t).sin());
            *s = v.clamp(-32768.0, 32767.0) as i16;
            *n += 1;
        }
    }
}

#[cfg(test)]
mod inband_generation_tests {
    use super::*;

    #[test]
    fn generated_digits_are_detected_by_our_own_detector() {
        let mut det = InbandDtmfDetector::new();
        let mut got = String::new();
        let mut audio = Vec::new();
        for d in "159#*0AD".chars() {
            audio.extend(inband_samples(d, 100, 100).unwrap());
        }
        audio.resize(audio.len() + 1600, 0);
        for (i, frame) in audio.chunks(160).enumerate() {
            if let Some(digit) = det.push(frame, i as u64 * 20) {
                got.push(digit.digit);
            }
            while let Some(digit) = det.next_digit() {
                got.push(digit.digit);
            }
        }
        assert_eq!(got, "159#*0AD");
        assert_eq!(
            inband_samples('x', 100, 0),
            Err(DtmfError::InvalidDigit('x'))
        );
    }
}
