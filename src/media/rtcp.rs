//! RTCP (RFC 3550 §6), sans-IO: parse compound packets, write SR/RR/SDES/BYE, and keep one
//! call's reception and transmission statistics in [`RtcpState`].
//!
//! * **Parsing**: [`parse_compound`] checks the whole datagram before anything is read from it
//!   (version 2 on every packet, each length inside the datagram, report and source counts inside
//!   their packet, SDES items and BYE reasons inside theirs, padding only on the last packet and
//!   never longer than it). A datagram that fails any check is an [`RtcpError`]; one that passes
//!   is read through borrowed views ([`RtcpPacket`]) that cannot fail or allocate. SR, RR, SDES
//!   (CNAME) and BYE are understood; other packet types are passed over.
//! * **Statistics** follow appendix A: sequence tracking with wraparound and restarts (A.1),
//!   expected/lost and fraction lost per interval (A.3), interarrival jitter (A.8), and
//!   round-trip time from a report block's LSR/DLSR (§6.4.1).
//! * **Timing**: a report is due every interval (5 s by default) scaled by a random factor in
//!   0.5-1.5, the first one after half that (§6.2, without the bandwidth-based rules that
//!   two-party audio does not need). The caller passes `now` (and the wall clock once, to
//!   anchor NTP time); nothing here reads a clock, sleeps or touches a socket.
//!
//! Nothing from the network may make this panic; writers append to a caller's `Vec`.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// RTCP packet types (RFC 3550 §12.1).
pub const PT_SR: u8 = 200;
pub const PT_RR: u8 = 201;
pub const PT_SDES: u8 = 202;
pub const PT_BYE: u8 = 203;
/// SDES item type of the canonical name.
const SDES_CNAME: u8 = 1;
/// Seconds from 1900 (NTP era 0) to 1970 (Unix epoch).
const NTP_UNIX_OFFSET: u64 = 2_208_988_800;
const RTP_SEQ_MOD: u32 = 1 << 16;
const MAX_DROPOUT: u32 = 3000;
const MAX_MISORDER: u32 = 100;
/// Report blocks one SR/RR can carry (5-bit count).
const MAX_BLOCKS: usize = 31;
/// Default report interval (RFC 3550's minimum).
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);

/// Why a datagram is not valid RTCP. Cheap to build (no allocation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RtcpError {
    #[error("empty RTCP datagram")]
    Empty,
    #[error("{len} bytes left in the RTCP datagram is shorter than a 4-byte header")]
    TooShort { len: usize },
    #[error("RTCP version is {0}, expected 2")]
    Version(u8),
    #[error("RTCP packet type {packet_type} declares {declared} bytes but {available} remain")]
    LengthOverrun {
        packet_type: u8,
        declared: usize,
        available: usize,
    },
    #[error("RTCP padding of {padding} bytes does not fit a {len}-byte packet")]
    BadPadding { padding: u8, len: usize },
    #[error("RTCP padding on a packet that is not the last of its compound")]
    PaddingNotLast,
    #[error("RTCP packet type {packet_type} with count {count} does not fit its {len}-byte body")]
    CountOverrun {
        packet_type: u8,
        count: u8,
        len: usize,
    },
    #[error("RTCP SDES chunk runs past the end of its packet")]
    SdesOverrun,
    #[error("RTCP BYE reason runs past the end of its packet")]
    ByeOverrun,
}

/// The sender-info part of an SR.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SenderInfo {
    /// NTP timestamp (seconds since 1900 in the high 32 bits, fraction in the low 32).
    pub ntp: u64,
    /// The same instant on the sender's RTP clock.
    pub rtp_timestamp: u32,
    pub packet_count: u32,
    pub octet_count: u32,
}

/// One reception report block (RFC 3550 §6.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReportBlock {
    /// The source this block reports on.
    pub ssrc: u32,
    /// Lost fraction since the previous report, in 1/256.
    pub fraction_lost: u8,
    /// Cumulative packets lost (24-bit signed: duplicates can make it negative).
    pub cumulative_lost: i32,
    /// Extended highest sequence number received (cycles in the high 16 bits).
    pub highest_seq: u32,
    /// Interarrival jitter, in timestamp units.
    pub jitter: u32,
    /// Middle 32 bits of the NTP timestamp of the last SR from that source (0: none).
    pub lsr: u32,
    /// Delay since that SR, in 1/65536 s.
    pub dlsr: u32,
}

const BLOCK_LEN: usize = 24;

impl ReportBlock {
    fn read(b: &[u8; BLOCK_LEN]) -> Self {
        let word = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        // Sign-extend the 24-bit cumulative count.
        let lost = (word(4) << 8) as i32 >> 8;
        ReportBlock {
            ssrc: word(0),
            fraction_lost: b[4],
            cumulative_lost: lost,
            highest_seq: word(8),
            jitter: word(12),
            lsr: word(16),
            dlsr: word(20),
        }
    }

    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.ssrc.to_be_bytes());
        let lost = self.cumulative_lost.clamp(-0x80_0000, 0x7F_FFFF) as u32 & 0x00FF_FFFF;
        out.extend_from_slice(&((u32::from(self.fraction_lost) << 24) | lost).to_be_bytes());
        out.extend_from_slice(&self.highest_seq.to_be_bytes());
        out.extend_from_slice(&self.jitter.to_be_bytes());
        out.extend_from_slice(&self.lsr.to_be_bytes());
        out.extend_from_slice(&self.dlsr.to_be_bytes());
    }
}

/// The report blocks of an SR or RR, read on demand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportBlocks<'a> {
    bytes: &'a [u8],
}

impl<'a> ReportBlocks<'a> {
    pub fn len(&self) -> usize {
        self.bytes.len() / BLOCK_LEN
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn iter(&self) -> impl Iterator<Item = ReportBlock> + 'a {
        self.bytes
            .chunks_exact(BLOCK_LEN)
            .filter_map(|c| c.first_chunk::<BLOCK_LEN>().map(ReportBlock::read))
    }
}

/// One SDES chunk: a source and its CNAME, if it gave one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SdesChunk<'a> {
    pub ssrc: u32,
    pub cname: Option<&'a [u8]>,
}

/// The chunks of an SDES packet, read on demand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SdesChunks<'a> {
    body: &'a [u8],
    count: u8,
}

impl<'a> SdesChunks<'a> {
    pub fn iter(&self) -> impl Iterator<Item = SdesChunk<'a>> + 'a {
        let body = self.body;
        let mut pos = 0;
        (0..self.count).map_while(move |_| read_chunk(body, &mut pos).ok())
    }
}

/// The SSRCs a BYE lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ssrcs<'a> {
    bytes: &'a [u8],
}

impl<'a> Ssrcs<'a> {
    pub fn iter(&self) -> impl Iterator<Item = u32> + 'a {
        self.bytes
            .chunks_exact(4)
            .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
    }
}

/// One packet of a validated compound; everything borrows from the datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RtcpPacket<'a> {
    SenderReport {
        ssrc: u32,
        info: SenderInfo,
        reports: ReportBlocks<'a>,
    },
    ReceiverReport {
        ssrc: u32,
        reports: ReportBlocks<'a>,
    },
    SourceDescription(SdesChunks<'a>),
    Goodbye {
        sources: Ssrcs<'a>,
        reason: Option<&'a [u8]>,
    },
    /// A type this module does not read (APP, feedback, XR...).
    Other {
        packet_type: u8,
        count: u8,
        body: &'a [u8],
    },
}

/// A compound RTCP datagram that passed every check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Compound<'a> {
    buf: &'a [u8],
}

impl<'a> Compound<'a> {
    pub fn packets(&self) -> impl Iterator<Item = RtcpPacket<'a>> + 'a {
        let mut rest = self.buf;
        std::iter::from_fn(move || {
            if rest.is_empty() {
                return None;
            }
            // Validated already: an error here cannot happen, and would just end the walk.
            let (packet, after) = parse_one(rest).ok()?;
            rest = after;
            Some(packet)
        })
    }
}

/// Checks a whole compound datagram; see the module documentation for what is checked.
pub fn parse_compound(buf: &[u8]) -> Result<Compound<'_>, RtcpError> {
    if buf.is_empty() {
        return Err(RtcpError::Empty);
    }
    let mut rest = buf;
    while !rest.is_empty() {
        let (_, after) = parse_one(rest)?;
        rest = after;
    }
    Ok(Compound { buf })
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    let w = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes([w[0], w[1], w[2], w[3]]))
}

/// Parses the first packet of `buf`, returning it and the bytes after it.
fn parse_one(buf: &[u8]) -> Result<(RtcpPacket<'_>, &[u8]), RtcpError> {
    let Some(header) = buf.first_chunk::<4>() else {
        return Err(RtcpError::TooShort { len: buf.len() });
    };
    let version = header[0] >> 6;
    if version != 2 {
        return Err(RtcpError::Version(version));
    }
    let padded = header[0] & 0x20 != 0;
    let count = header[0] & 0x1F;
    let packet_type = header[1];
    let declared = (usize::from(u16::from_be_bytes([header[2], header[3]])) + 1) * 4;
    let Some(packet) = buf.get(..declared) else {
        return Err(RtcpError::LengthOverrun {
            packet_type,
            declared,
            available: buf.len(),
        });
    };
    let after = &buf[declared..];
    let mut body = &packet[4..];
    if padded {
        if !after.is_empty() {
            return Err(RtcpError::PaddingNotLast);
        }
        let padding = packet[declared - 1];
        if padding == 0 || usize::from(padding) > body.len() {
            return Err(RtcpError::BadPadding {
                padding,
                len: declared,
            });
        }
        body = &body[..body.len() - usize::from(padding)];
    }
    let overrun = || RtcpError::CountOverrun {
        packet_type,
        count,
        len: body.len(),
    };
    let blocks_at = |offset: usize| -> Result<ReportBlocks<'_>, RtcpError> {
        let end = offset + BLOCK_LEN * usize::from(count);
        body.get(offset..end)
            .map(|bytes| ReportBlocks { bytes })
            .ok_or_else(overrun)
    };
    let packet = match packet_type {
        PT_SR => {
            let (Some(ssrc), Some(hi), Some(lo), Some(ts), Some(pc), Some(oc)) = (
                be32(body, 0),
                be32(body, 4),
                be32(body, 8),
                be32(body, 12),
                be32(body, 16),
                be32(body, 20),
            ) else {
                return Err(overrun());
            };
            RtcpPacket::SenderReport {
                ssrc,
                info: SenderInfo {
                    ntp: (u64::from(hi) << 32) | u64::from(lo),
                    rtp_timestamp: ts,
                    packet_count: pc,
                    octet_count: oc,
                },
                reports: blocks_at(24)?,
            }
        }
        PT_RR => {
            let Some(ssrc) = be32(body, 0) else {
                return Err(overrun());
            };
            RtcpPacket::ReceiverReport {
                ssrc,
                reports: blocks_at(4)?,
            }
        }
        PT_SDES => {
            let mut pos = 0;
            for _ in 0..count {
                read_chunk(body, &mut pos)?;
            }
            RtcpPacket::SourceDescription(SdesChunks { body, count })
        }
        PT_BYE => {
            let list = 4 * usize::from(count);
            let Some(bytes) = body.get(..list) else {
                return Err(overrun());
            };
            let reason = match body.get(list) {
                None => None,
                Some(&len) => {
                    let start = list + 1;
                    Some(
                        body.get(start..start + usize::from(len))
                            .ok_or(RtcpError::ByeOverrun)?,
                    )
                }
            };
            RtcpPacket::Goodbye {
                sources: Ssrcs { bytes },
                reason,
            }
        }
        _ => RtcpPacket::Other {
            packet_type,
            count,
            body,
        },
    };
    Ok((packet, after))
}

/// Reads the SDES chunk at `*pos` of `body` and moves `*pos` past it (and its padding).
fn read_chunk<'a>(body: &'a [u8], pos: &mut usize) -> Result<SdesChunk<'a>, RtcpError> {
    let ssrc = be32(body, *pos).ok_or(RtcpError::SdesOverrun)?;
    let mut at = *pos + 4;
    let mut cname = None;
    loop {
        let kind = *body.get(at).ok_or(RtcpError::SdesOverrun)?;
        if kind == 0 {
            // The null item ends the list; the chunk is padded to a 32-bit boundary.
            at = (at + 4) & !3;
            if at > body.len() {
                return Err(RtcpError::SdesOverrun);
            }
            break;
        }
        let len = usize::from(*body.get(at + 1).ok_or(RtcpError::SdesOverrun)?);
        let text = body
            .get(at + 2..at + 2 + len)
            .ok_or(RtcpError::SdesOverrun)?;
        if kind == SDES_CNAME {
            cname = Some(text);
        }
        at += 2 + len;
    }
    *pos = at;
    Ok(SdesChunk { ssrc, cname })
}

/// Appends a packet header; `words` is the length after the header in 32-bit words.
fn write_header(out: &mut Vec<u8>, count: usize, packet_type: u8, words: usize) {
    out.push(0x80 | (count.min(MAX_BLOCKS) as u8));
    out.push(packet_type);
    out.extend_from_slice(&(words as u16).to_be_bytes());
}

/// Appends an SR (at most 31 report blocks are written).
pub fn write_sr(out: &mut Vec<u8>, ssrc: u32, info: &SenderInfo, blocks: &[ReportBlock]) {
    let blocks = &blocks[..blocks.len().min(MAX_BLOCKS)];
    write_header(out, blocks.len(), PT_SR, 6 + 6 * blocks.len());
    out.extend_from_slice(&ssrc.to_be_bytes());
    out.extend_from_slice(&info.ntp.to_be_bytes());
    out.extend_from_slice(&info.rtp_timestamp.to_be_bytes());
    out.extend_from_slice(&info.packet_count.to_be_bytes());
    out.extend_from_slice(&info.octet_count.to_be_bytes());
    for b in blocks {
        b.write(out);
    }
}

/// Appends an RR (at most 31 report blocks are written).
pub fn write_rr(out: &mut Vec<u8>, ssrc: u32, blocks: &[ReportBlock]) {
    let blocks = &blocks[..blocks.len().min(MAX_BLOCKS)];
    write_header(out, blocks.len(), PT_RR, 1 + 6 * blocks.len());
    out.extend_from_slice(&ssrc.to_be_bytes());
    for b in blocks {
        b.write(out);
    }
}

/// Appends an SDES packet with one chunk holding a CNAME (cut to 255 bytes).
pub fn write_sdes_cname(out: &mut Vec<u8>, ssrc: u32, cname: &str) {
    let name = &cname.as_bytes()[..cname.len().min(255)];
    // SSRC, type, length, text, then at least one null octet, padded to 32 bits.
    let chunk = (4 + 2 + name.len() + 1 + 3) & !3;
    write_header(out, 1, PT_SDES, chunk / 4);
    let start = out.len();
    out.extend_from_slice(&ssrc.to_be_bytes());
    out.push(SDES_CNAME);
    out.push(name.len() as u8);
    out.extend_from_slice(name);
    out.resize(start + chunk, 0);
}

/// Appends a BYE for `ssrcs` (at most 31) with an optional reason (cut to 255 bytes).
pub fn write_bye(out: &mut Vec<u8>, ssrcs: &[u32], reason: Option<&str>) {
    let ssrcs = &ssrcs[..ssrcs.len().min(MAX_BLOCKS)];
    let reason = reason.map(|r| &r.as_bytes()[..r.len().min(255)]);
    let reason_len = reason.map_or(0, |r| (1 + r.len() + 3) & !3);
    write_header(out, ssrcs.len(), PT_BYE, ssrcs.len() + reason_len / 4);
    for s in ssrcs {
        out.extend_from_slice(&s.to_be_bytes());
    }
    if let Some(r) = reason {
        let start = out.len();
        out.push(r.len() as u8);
        out.extend_from_slice(r);
        out.resize(start + reason_len, 0);
    }
}

/// NTP time of a wall-clock instant.
pub fn ntp_from_system(t: SystemTime) -> u64 {
    let since_unix = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    ((since_unix.as_secs() + NTP_UNIX_OFFSET) << 32)
        .wrapping_add(ntp_duration(since_unix) & 0xFFFF_FFFF)
}

/// A duration in NTP units (1/2^32 s).
fn ntp_duration(d: Duration) -> u64 {
    (d.as_secs() << 32).wrapping_add((u64::from(d.subsec_nanos()) << 32) / 1_000_000_000)
}

/// The middle 32 bits of an NTP timestamp (the LSR/DLSR unit: 1/65536 s).
pub fn ntp_middle(ntp: u64) -> u32 {
    (ntp >> 16) as u32
}

/// Per-call RTCP settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtcpConfig {
    /// Our SSRC (the one our RTP carries).
    pub ssrc: u32,
    /// Our canonical name, sent in every report.
    pub cname: String,
    /// RTP clock rate of the stream, in Hz.
    pub clock_rate: u32,
    /// Mean time between reports.
    pub interval: Duration,
    /// Seeds the randomization of the interval.
    pub seed: u64,
}

impl RtcpConfig {
    /// 8 kHz, reports every 5 s on average.
    pub fn new(ssrc: u32, cname: impl Into<String>) -> Self {
        RtcpConfig {
            ssrc,
            cname: cname.into(),
            clock_rate: 8000,
            interval: DEFAULT_INTERVAL,
            seed: u64::from(ssrc) | 1,
        }
    }
}

/// One call's RTCP figures, for the attempt record.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct RtcpStats {
    /// RTP packets expected from the far end (from its sequence numbers).
    pub packets_expected: u64,
    /// Cumulative packets lost from the far end: expected − received (RFC 3550 A.3; duplicates
    /// can make it negative).
    pub packets_lost: i64,
    /// Fraction of the far end's packets lost over the last report interval (0-1).
    pub fraction_lost: f64,
    /// Interarrival jitter of the far end's packets, in ms (RFC 3550 A.8).
    pub jitter_ms: f64,
    /// Round-trip time from the far end's last report about us, in ms.
    pub rtt_ms: Option<f64>,
    /// What the far end reports about our stream: cumulative lost...
    pub remote_packets_lost: Option<i64>,
    /// ...fraction lost (0-1)...
    pub remote_fraction_lost: Option<f64>,
    /// ...and jitter, in ms.
    pub remote_jitter_ms: Option<f64>,
    /// Packets the far end says it sent (from its last SR).
    pub remote_packets_sent: Option<u32>,
    /// Reports we built (SR or RR).
    pub reports_sent: u64,
    /// Valid RTCP datagrams received.
    pub reports_received: u64,
    /// RTCP datagrams that failed to parse.
    pub invalid: u64,
    /// The far end said BYE.
    pub bye_received: bool,
}

/// Reception state of the far end's RTP source (RFC 3550 A.1, A.3, A.8).
#[derive(Debug, Clone)]
struct Source {
    ssrc: u32,
    max_seq: u16,
    cycles: u32,
    base_seq: u32,
    bad_seq: u32,
    received: u32,
    expected_prior: u32,
    received_prior: u32,
    /// Previous relative transit in ticks, for the jitter.
    transit: Option<u32>,
    /// Jitter × 16, in ticks (the A.8 integer form).
    jitter: u32,
}

impl Source {
    fn new(ssrc: u32, seq: u16) -> Self {
        let mut s = Source {
            ssrc,
            max_seq: seq,
            cycles: 0,
            base_seq: u32::from(seq),
            bad_seq: RTP_SEQ_MOD + 1,
            received: 0,
            expected_prior: 0,
            received_prior: 0,
            transit: None,
            jitter: 0,
        };
        s.init_seq(seq);
        s.received = 1;
        s
    }

    fn init_seq(&mut self, seq: u16) {
        self.base_seq = u32::from(seq);
        self.max_seq = seq;
        self.bad_seq = RTP_SEQ_MOD + 1;
        self.cycles = 0;
        self.received = 0;
        self.received_prior = 0;
        self.expected_prior = 0;
    }

    /// RFC 3550 A.1 `update_seq`: false when the packet is dropped as a likely stray after a
    /// large jump (two sequential packets after the jump restart the count).
    fn update_seq(&mut self, seq: u16) -> bool {
        let udelta = u32::from(seq.wrapping_sub(self.max_seq));
        if udelta < MAX_DROPOUT {
            if seq < self.max_seq {
                self.cycles = self.cycles.wrapping_add(RTP_SEQ_MOD);
            }
            self.max_seq = seq;
        } else if udelta <= RTP_SEQ_MOD - MAX_MISORDER {
            if u32::from(seq) == self.bad_seq {
                self.init_seq(seq);
            } else {
                self.bad_seq = (u32::from(seq) + 1) & (RTP_SEQ_MOD - 1);
                return false;
            }
        }
        // else: duplicate or reordered packet.
        self.received = self.received.wrapping_add(1);
        true
    }

    fn extended_max(&self) -> u32 {
        self.cycles.wrapping_add(u32::from(self.max_seq))
    }

    fn expected(&self) -> u32 {
        self.extended_max()
            .wrapping_sub(self.base_seq)
            .wrapping_add(1)
    }

    fn lost(&self) -> i64 {
        i64::from(self.expected()) - i64::from(self.received)
    }
}

/// The far end's last SR: what our next report echoes back (LSR, DLSR).
#[derive(Debug, Clone, Copy)]
struct LastSr {
    ssrc: u32,
    lsr: u32,
    at: Instant,
}

/// One call's RTCP: fed our sent packets, the far end's RTP and RTCP, it says when the next
/// report is due, writes it, and keeps [`RtcpStats`].
#[derive(Debug, Clone)]
pub struct RtcpState {
    cfg: RtcpConfig,
    epoch: Instant,
    epoch_ntp: u64,
    rng: u64,
    next_report: Instant,
    sent_packets: u32,
    sent_octets: u32,
    last_sent: Option<(u32, Instant)>,
    /// Packets sent when the last two reports were built (SR if we sent since the older).
    sent_at_reports: [u32; 2],
    source: Option<Source>,
    /// A new SSRC seen once: it replaces the source when its next packet follows (A.1).
    candidate: Option<(u32, u16)>,
    /// Lost and expected counts of sources replaced during the call.
    retired_lost: i64,
    retired_expected: u64,
    last_sr: Option<LastSr>,
    stats: RtcpStats,
}

impl RtcpState {
    /// `now` and `wall` are the same moment on the monotonic and the wall clock.
    pub fn new(cfg: RtcpConfig, now: Instant, wall: SystemTime) -> Self {
        let mut cfg = cfg;
        if cfg.clock_rate == 0 {
            cfg.clock_rate = 8000;
        }
        cfg.interval = cfg.interval.max(Duration::from_millis(10));
        let mut state = RtcpState {
            rng: cfg.seed | 1,
            epoch: now,
            epoch_ntp: ntp_from_system(wall),
            next_report: now,
            sent_packets: 0,
            sent_octets: 0,
            last_sent: None,
            sent_at_reports: [0; 2],
            source: None,
            candidate: None,
            retired_lost: 0,
            retired_expected: 0,
            last_sr: None,
            stats: RtcpStats::default(),
            cfg,
        };
        // The first report comes after half an interval (RFC 3550 §6.2).
        state.next_report = now + state.randomized_interval() / 2;
        state
    }

    pub fn ssrc(&self) -> u32 {
        self.cfg.ssrc
    }

    /// NTP time of a monotonic instant.
    pub fn ntp(&self, now: Instant) -> u64 {
        if now >= self.epoch {
            self.epoch_ntp.wrapping_add(ntp_duration(now - self.epoch))
        } else {
            self.epoch_ntp.wrapping_sub(ntp_duration(self.epoch - now))
        }
    }

    /// The interval scaled by a random factor in [0.5, 1.5).
    fn randomized_interval(&mut self) -> Duration {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let factor = 0.5 + (self.rng >> 11) as f64 / (1u64 << 53) as f64;
        self.cfg.interval.mul_f64(factor)
    }

    /// One RTP packet of ours went out: its timestamp and payload size.
    pub fn on_rtp_sent(&mut self, rtp_timestamp: u32, payload_len: usize, now: Instant) {
        self.sent_packets = self.sent_packets.wrapping_add(1);
        self.sent_octets = self
            .sent_octets
            .wrapping_add(u32::try_from(payload_len).unwrap_or(u32::MAX));
        self.last_sent = Some((rtp_timestamp, now));
    }

    /// Our sending totals, for a driver whose sender runs elsewhere: packets and payload octets
    /// sent so far, and the timestamp of the last packet with when it went out.
    pub fn set_sent_totals(&mut self, packets: u64, octets: u64, last: Option<(u32, Instant)>) {
        self.sent_packets = packets as u32;
        self.sent_octets = octets as u32;
        if last.is_some() {
            self.last_sent = last;
        }
    }

    /// One RTP packet from the far end (any payload type), with its arrival time.
    pub fn on_rtp_received(&mut self, ssrc: u32, seq: u16, timestamp: u32, arrival: Instant) {
        match self.source.as_mut() {
            Some(s) if s.ssrc == ssrc => {
                if !s.update_seq(seq) {
                    return;
                }
            }
            Some(_) => {
                // Another SSRC: it takes over once two of its packets follow each other.
                match self.candidate {
                    Some((c, prev)) if c == ssrc && seq == prev.wrapping_add(1) => {
                        if let Some(old) = self.source.take() {
                            self.retired_lost += old.lost();
                            self.retired_expected += u64::from(old.expected());
                        }
                        let mut s = Source::new(ssrc, prev);
                        s.update_seq(seq);
                        self.source = Some(s);
                        self.candidate = None;
                    }
                    _ => {
                        self.candidate = Some((ssrc, seq));
                        return;
                    }
                }
            }
            None => self.source = Some(Source::new(ssrc, seq)),
        }
        let rate = u128::from(self.cfg.clock_rate);
        let elapsed = arrival.saturating_duration_since(self.epoch).as_nanos();
        let arrival_ticks = (elapsed * rate / 1_000_000_000) as u32;
        let Some(s) = self.source.as_mut() else {
            return;
        };
        let transit = arrival_ticks.wrapping_sub(timestamp);
        if let Some(prev) = s.transit {
            let d = (transit.wrapping_sub(prev) as i32).unsigned_abs();
            // A jump of more than a second is a discontinuity (new talkspurt clock), not jitter.
            if d <= self.cfg.clock_rate {
                let j = i64::from(s.jitter) + i64::from(d) - ((i64::from(s.jitter) + 8) >> 4);
                s.jitter = j.clamp(0, i64::from(u32::MAX)) as u32;
            }
        }
        s.transit = Some(transit);
    }

    /// One RTCP datagram from the far end. Invalid ones are counted and returned as errors.
    pub fn on_rtcp_received(&mut self, datagram: &[u8], now: Instant) -> Result<(), RtcpError> {
        let compound = match parse_compound(datagram) {
            Ok(c) => c,
            Err(e) => {
                self.stats.invalid += 1;
                return Err(e);
            }
        };
        self.stats.reports_received += 1;
        for packet in compound.packets() {
            match packet {
                RtcpPacket::SenderReport {
                    ssrc,
                    info,
                    reports,
                } => {
                    self.last_sr = Some(LastSr {
                        ssrc,
                        lsr: ntp_middle(info.ntp),
                        at: now,
                    });
                    self.stats.remote_packets_sent = Some(info.packet_count);
                    self.on_blocks(reports, now);
                }
                RtcpPacket::ReceiverReport { reports, .. } => self.on_blocks(reports, now),
                RtcpPacket::Goodbye { .. } => self.stats.bye_received = true,
                RtcpPacket::SourceDescription(_) | RtcpPacket::Other { .. } => {}
            }
        }
        Ok(())
    }

    /// Takes the report blocks about our SSRC: the far end's view of our stream, and the RTT.
    fn on_blocks(&mut self, reports: ReportBlocks<'_>, now: Instant) {
        let rate = f64::from(self.cfg.clock_rate);
        for b in reports.iter().filter(|b| b.ssrc == self.cfg.ssrc) {
            self.stats.remote_fraction_lost = Some(f64::from(b.fraction_lost) / 256.0);
            self.stats.remote_packets_lost = Some(i64::from(b.cumulative_lost));
            self.stats.remote_jitter_ms = Some(f64::from(b.jitter) * 1000.0 / rate);
            if let Some(rtt) = rtt(ntp_middle(self.ntp(now)), b.lsr, b.dlsr) {
                self.stats.rtt_ms = Some(rtt.as_secs_f64() * 1000.0);
            }
        }
    }

    /// When the next report is due.
    pub fn next_report_at(&self) -> Instant {
        self.next_report
    }

    /// If a report is due at `now`, appends it to `out`, schedules the next and returns true.
    pub fn poll_report(&mut self, now: Instant, out: &mut Vec<u8>) -> bool {
        if now < self.next_report {
            return false;
        }
        self.write_report(now, out);
        self.next_report = now + self.randomized_interval();
        true
    }

    /// Appends a compound report: SR (if we sent RTP since the report before last) or RR, with
    /// one report block about the far end once it has sent RTP, then SDES with our CNAME.
    pub fn write_report(&mut self, now: Instant, out: &mut Vec<u8>) {
        let block = self.report_block(now);
        let blocks = block.as_slice();
        let we_sent = self.sent_packets != self.sent_at_reports[0];
        match self.last_sent {
            Some((ts, at)) if we_sent => {
                let ahead = now.saturating_duration_since(at).as_nanos()
                    * u128::from(self.cfg.clock_rate)
                    / 1_000_000_000;
                let info = SenderInfo {
                    ntp: self.ntp(now),
                    rtp_timestamp: ts.wrapping_add(ahead as u32),
                    packet_count: self.sent_packets,
                    octet_count: self.sent_octets,
                };
                write_sr(out, self.cfg.ssrc, &info, blocks);
            }
            _ => write_rr(out, self.cfg.ssrc, blocks),
        }
        write_sdes_cname(out, self.cfg.ssrc, &self.cfg.cname);
        self.sent_at_reports = [self.sent_at_reports[1], self.sent_packets];
        self.stats.reports_sent += 1;
    }

    /// Appends a final report followed by a BYE for our SSRC (the session is ending).
    pub fn write_bye(&mut self, now: Instant, out: &mut Vec<u8>) {
        self.write_report(now, out);
        write_bye(out, &[self.cfg.ssrc], None);
    }

    /// The report block about the far end (A.3), advancing the per-interval counters.
    fn report_block(&mut self, now: Instant) -> Option<ReportBlock> {
        let s = self.source.as_mut()?;
        let expected = s.expected();
        let expected_interval = expected.wrapping_sub(s.expected_prior);
        s.expected_prior = expected;
        let received_interval = s.received.wrapping_sub(s.received_prior);
        s.received_prior = s.received;
        let lost_interval = i64::from(expected_interval) - i64::from(received_interval);
        let fraction = if expected_interval == 0 || lost_interval <= 0 {
            0
        } else {
            ((lost_interval << 8) / i64::from(expected_interval)).min(255) as u8
        };
        self.stats.fraction_lost = f64::from(fraction) / 256.0;
        let (lsr, dlsr) = match self.last_sr {
            Some(sr) if sr.ssrc == s.ssrc => {
                let delay = ntp_duration(now.saturating_duration_since(sr.at)) >> 16;
                (sr.lsr, u32::try_from(delay).unwrap_or(u32::MAX))
            }
            _ => (0, 0),
        };
        Some(ReportBlock {
            ssrc: s.ssrc,
            fraction_lost: fraction,
            cumulative_lost: s.lost().clamp(-0x80_0000, 0x7F_FFFF) as i32,
            highest_seq: s.extended_max(),
            jitter: s.jitter >> 4,
            lsr,
            dlsr,
        })
    }

    pub fn stats(&self) -> RtcpStats {
        let mut stats = self.stats;
        stats.packets_lost = self.retired_lost;
        stats.packets_expected = self.retired_expected;
        if let Some(s) = self.source.as_ref() {
            stats.packets_lost += s.lost();
            stats.packets_expected += u64::from(s.expected());
            stats.jitter_ms = f64::from(s.jitter) / 16.0 * 1000.0 / f64::from(self.cfg.clock_rate);
        }
        stats
    }
}

/// Round-trip time from a report block (RFC 3550 §6.4.1): arrival − LSR − DLSR, all in
/// 1/65536 s. `None` without an SR to refer to, or when the result is negative.
pub fn rtt(arrival_middle: u32, lsr: u32, dlsr: u32) -> Option<Duration> {
    if lsr == 0 {
        return None;
    }
    let since_sr = arrival_middle.wrapping_sub(lsr);
    if since_sr >= 0x8000_0000 || since_sr < dlsr {
        return None;
    }
    let units = u64::from(since_sr - dlsr);
    Some(Duration::from_nanos(units * 1_000_000_000 / 65_536))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An SR from SSRC 0x11223344 with one report block about 0xAABBCCDD, an SDES with CNAME
    /// "alice@example.com" and a BYE with a reason: every field written out by hand.
    fn handmade_compound() -> Vec<u8> {
        let mut v = vec![
            0x81, 200, 0x00, 0x0C, // V=2, RC=1, SR, length 12 (52 bytes)
            0x11, 0x22, 0x33, 0x44, // SSRC
            0xE8, 0x00, 0x00, 0x01, // NTP seconds
            0x80, 0x00, 0x00, 0x00, // NTP fraction (0.5 s)
            0x00, 0x01, 0xE2, 0x40, // RTP timestamp 123456
            0x00, 0x00, 0x03, 0xE8, // packet count 1000
            0x00, 0x02, 0x71, 0x00, // octet count 160000
            0xAA, 0xBB, 0xCC, 0xDD, // report block: SSRC
            0x40, 0xFF, 0xFF, 0xFE, // fraction 64/256, cumulative lost −2
            0x00, 0x01, 0x00, 0x05, // extended highest seq: 1 cycle, seq 5
            0x00, 0x00, 0x00, 0x50, // jitter 80
            0x12, 0x34, 0x56, 0x78, // LSR
            0x00, 0x01, 0x00, 0x00, // DLSR 1 s
        ];
        v.extend_from_slice(&[0x81, 202, 0x00, 0x06, 0x11, 0x22, 0x33, 0x44, 1, 17]);
        v.extend_from_slice(b"alice@example.com");
        v.push(0); // the null item ends the chunk at 24 bytes, already 32-bit aligned
        v.extend_from_slice(&[0x81, 203, 0x00, 0x03, 0x11, 0x22, 0x33, 0x44, 5]);
        v.extend_from_slice(b"hang!");
        v.extend_from_slice(&[0, 0]);
        v
    }

    #[test]
    fn parses_a_handmade_compound() {
        let buf = handmade_compound();
        let c = parse_compound(&buf).expect("valid");
        let packets: Vec<RtcpPacket<'_>> = c.packets().collect();
        assert_eq!(packets.len(), 3);
        let RtcpPacket::SenderReport {
            ssrc,
            info,
            reports,
        } = packets[0]
        else {
            panic!("SR first: {:?}", packets[0]);
        };
        assert_eq!(ssrc, 0x1122_3344);
        assert_eq!(
            info,
            SenderInfo {
                ntp: (0xE800_0001u64 << 32) | 0x8000_0000,
                rtp_timestamp: 123_456,
                packet_count: 1000,
                octet_count: 160_000,
            }
        );
        let blocks: Vec<ReportBlock> = reports.iter().collect();
        assert_eq!(
            blocks,
            vec![ReportBlock {
                ssrc: 0xAABB_CCDD,
                fraction_lost: 64,
                cumulative_lost: -2,
                highest_seq: 0x0001_0005,
                jitter: 80,
                lsr: 0x1234_5678,
                dlsr: 0x0001_0000,
            }]
        );
        let RtcpPacket::SourceDescription(chunks) = packets[1] else {
            panic!("SDES second");
        };
        let chunks: Vec<SdesChunk<'_>> = chunks.iter().collect();
        assert_eq!(chunks.len(), 1);
        assert_eq!(chunks[0].ssrc, 0x1122_3344);
        assert_eq!(chunks[0].cname, Some(&b"alice@example.com"[..]));
        let RtcpPacket::Goodbye { sources, reason } = packets[2] else {
            panic!("BYE third");
        };
        assert_eq!(sources.iter().collect::<Vec<u32>>(), vec![0x1122_3344]);
        assert_eq!(reason, Some(&b"hang!"[..]));
    }

    #[test]
    fn writers_produce_the_handmade_bytes() {
        let mut out = Vec::new();
        let info = SenderInfo {
            ntp: (0xE800_0001u64 << 32) | 0x8000_0000,
            rtp_timestamp: 123_456,
            packet_count: 1000,
            octet_count: 160_000,
        };
        let block = ReportBlock {
            ssrc: 0xAABB_CCDD,
            fraction_lost: 64,
            cumulative_lost: -2,
            highest_seq: 0x0001_0005,
            jitter: 80,
            lsr: 0x1234_5678,
            dlsr: 0x0001_0000,
        };
        write_sr(&mut out, 0x1122_3344, &info, &[block]);
        write_sdes_cname(&mut out, 0x1122_3344, "alice@example.com");
        write_bye(&mut out, &[0x1122_3344], Some("hang!"));
        assert_eq!(out, handmade_compound());
        // An RR with no blocks is just the header and SSRC.
        out.clear();
        write_rr(&mut out, 7, &[]);
        assert_eq!(out, vec![0x80, 201, 0, 1, 0, 0, 0, 7]);
    }

    #[test]
    fn other_types_are_passed_over_and_padding_is_honoured() {
        // APP packet (204), then an RR with 4 bytes of padding (P bit, last byte 4).
        let mut buf = vec![0x80, 204, 0, 2, 1, 2, 3, 4, b'n', b'a', b'm', b'e'];
        buf.extend_from_slice(&[0xA0, 201, 0, 2, 0, 0, 0, 9, 0, 0, 0, 4]);
        let c = parse_compound(&buf).expect("valid");
        let packets: Vec<RtcpPacket<'_>> = c.packets().collect();
        assert!(matches!(
            packets[0],
            RtcpPacket::Other {
                packet_type: 204,
                ..
            }
        ));
        assert!(matches!(
            packets[1],
            RtcpPacket::ReceiverReport { ssrc: 9, reports } if reports.is_empty()
        ));
    }

    #[test]
    fn rejects_malformed_packets_with_clear_errors() {
        assert_eq!(parse_compound(&[]), Err(RtcpError::Empty));
        assert_eq!(
            parse_compound(&[0x80, 201]),
            Err(RtcpError::TooShort { len: 2 })
        );
        assert_eq!(
            parse_compound(&[0x40, 201, 0, 1, 0, 0, 0, 1]),
            Err(RtcpError::Version(1))
        );
        // Length says 8 bytes, 6 present.
        assert_eq!(
            parse_compound(&[0x80, 201, 0, 1, 0, 0]),
            Err(RtcpError::LengthOverrun {
                packet_type: 201,
                declared: 8,
                available: 6
            })
        );
        // RC = 31 blocks in an 8-byte RR.
        assert_eq!(
            parse_compound(&[0x9F, 201, 0, 1, 0, 0, 0, 1]),
            Err(RtcpError::CountOverrun {
                packet_type: 201,
                count: 31,
                len: 4
            })
        );
        // SR too short for its sender info.
        assert!(matches!(
            parse_compound(&[0x80, 200, 0, 1, 0, 0, 0, 1]),
            Err(RtcpError::CountOverrun { .. })
        ));
        // Padding longer than the packet, zero padding, padding not last.
        assert_eq!(
            parse_compound(&[0xA0, 201, 0, 1, 0, 0, 0, 9]),
            Err(RtcpError::BadPadding { padding: 9, len: 8 })
        );
        assert!(matches!(
            parse_compound(&[0xA0, 201, 0, 1, 0, 0, 0, 0]),
            Err(RtcpError::BadPadding { padding: 0, .. })
        ));
        assert_eq!(
            parse_compound(&[0xA0, 201, 0, 1, 0, 0, 0, 4, 0x80, 201, 0, 1, 0, 0, 0, 1]),
            Err(RtcpError::PaddingNotLast)
        );
        // SDES item longer than its packet; SDES without a terminating null item.
        assert_eq!(
            parse_compound(&[0x81, 202, 0, 2, 0, 0, 0, 1, 1, 200, b'x', 0]),
            Err(RtcpError::SdesOverrun)
        );
        assert_eq!(
            parse_compound(&[0x81, 202, 0, 2, 0, 0, 0, 1, 1, 2, b'x', b'y']),
            Err(RtcpError::SdesOverrun)
        );
        // BYE listing 2 sources in room for 1; BYE reason past the end.
        assert!(matches!(
            parse_compound(&[0x82, 203, 0, 1, 0, 0, 0, 1]),
            Err(RtcpError::CountOverrun { .. })
        ));
        assert_eq!(
            parse_compound(&[0x81, 203, 0, 2, 0, 0, 0, 1, 9, b'a', b'b', b'c']),
            Err(RtcpError::ByeOverrun)
        );
        // A good packet followed by garbage is rejected as a whole.
        assert_eq!(
            parse_compound(&[0x80, 201, 0, 1, 0, 0, 0, 1, 0x80]),
            Err(RtcpError::TooShort { len: 1 })
        );
        assert_eq!(
            RtcpError::Version(3).to_string(),
            "RTCP version is 3, expected 2"
        );
    }

    #[test]
    fn rtt_follows_rfc_3550_example() {
        // §6.4.1's example: A = 0xb710:8000 (46864.500 s), LSR = 0xb705:2000 (46853.125 s),
        // DLSR = 0x0005:4000 (5.250 s) → RTT 6.125 s.
        let rtt = rtt(0xB710_8000, 0xB705_2000, 0x0005_4000).expect("rtt");
        assert_eq!(rtt, Duration::from_millis(6125));
        assert_eq!(super::rtt(0xB710_8000, 0, 0), None, "no SR: no RTT");
        assert_eq!(
            super::rtt(0xB705_2000, 0xB710_8000, 0),
            None,
            "arrival before the SR: negative"
        );
        assert_eq!(super::rtt(0xB710_8000, 0xB705_2000, 0x00FF_0000), None);
    }

    #[test]
    fn ntp_conversions() {
        let t = UNIX_EPOCH + Duration::from_millis(1_500);
        let ntp = ntp_from_system(t);
        assert_eq!(ntp >> 32, NTP_UNIX_OFFSET + 1);
        assert_eq!(ntp & 0xFFFF_FFFF, 0x8000_0000);
        assert_eq!(
            ntp_middle(ntp),
            (((NTP_UNIX_OFFSET + 1) as u32) << 16) | 0x8000
        );
    }

    fn state(ssrc: u32, now: Instant) -> RtcpState {
        let mut cfg = RtcpConfig::new(ssrc, "test@outdial");
        cfg.interval = Duration::from_secs(5);
        RtcpState::new(cfg, now, UNIX_EPOCH + Duration::from_secs(1_700_000_000))
    }

    fn only_block(buf: &[u8]) -> (u8, Option<SenderInfo>, Option<ReportBlock>) {
        let c = parse_compound(buf).expect("our report parses");
        let mut packets = c.packets();
        let first = packets.next().expect("a report");
        let sdes = packets.next().expect("an SDES");
        assert!(matches!(sdes, RtcpPacket::SourceDescription(_)));
        match first {
            RtcpPacket::SenderReport { info, reports, .. } => {
                (PT_SR, Some(info), reports.iter().next())
            }
            RtcpPacket::ReceiverReport { reports, .. } => (PT_RR, None, reports.iter().next()),
            other => panic!("report first: {other:?}"),
        }
    }

    #[test]
    fn loss_and_fraction_per_rfc_appendix_a3() {
        let t0 = Instant::now();
        let mut st = state(1, t0);
        // 100 packets with seq 65500.. (wrapping), 10 of them lost, one duplicated.
        let mut n = 0;
        for k in 0..100u32 {
            if (40..50).contains(&k) {
                continue;
            }
            let seq = 65_500u16.wrapping_add(k as u16);
            let at = t0 + Duration::from_millis(20 * u64::from(k));
            st.on_rtp_received(0xFEED, seq, 160 * k, at);
            n += 1;
            if k == 60 {
                st.on_rtp_received(0xFEED, seq, 160 * k, at);
            }
        }
        assert_eq!(n, 90);
        let mut out = Vec::new();
        st.write_report(t0 + Duration::from_secs(2), &mut out);
        let (kind, info, block) = only_block(&out);
        assert_eq!((kind, info), (PT_RR, None), "nothing sent: RR");
        let b = block.expect("a block about the far end");
        assert_eq!(b.ssrc, 0xFEED);
        assert_eq!(
            b.cumulative_lost,
            10 - 1,
            "expected 100, received 91 (a duplicate)"
        );
        assert_eq!(b.fraction_lost, (9 * 256 / 100) as u8);
        assert_eq!(
            b.highest_seq,
            (1 << 16) | u32::from(65_500u16.wrapping_add(99))
        );
        assert_eq!(b.jitter, 0, "perfectly paced");
        assert_eq!((b.lsr, b.dlsr), (0, 0), "no SR received");
        let s = st.stats();
        assert_eq!((s.packets_lost, s.packets_expected), (9, 100));
        assert_eq!(
            s.fraction_lost,
            23.0 / 256.0,
            "9 lost of 100 expected: 23/256"
        );
        // The next interval: 50 more, none lost → fraction 0, cumulative unchanged.
        for k in 100..150u32 {
            let seq = 65_500u16.wrapping_add(k as u16);
            st.on_rtp_received(
                0xFEED,
                seq,
                160 * k,
                t0 + Duration::from_millis(20 * u64::from(k)),
            );
        }
        out.clear();
        st.write_report(t0 + Duration::from_secs(4), &mut out);
        let b = only_block(&out).2.expect("block");
        assert_eq!((b.fraction_lost, b.cumulative_lost), (0, 9));
        assert_eq!(st.stats().fraction_lost, 0.0);
    }

    #[test]
    fn jitter_per_rfc_appendix_a8() {
        let t0 = Instant::now();
        let mut st = state(1, t0);
        // Every other packet arrives 10 ms (80 ticks) late: |D| = 80 every time.
        for k in 0..400u32 {
            let late = if k % 2 == 1 { 10 } else { 0 };
            let at = t0 + Duration::from_millis(20 * u64::from(k) + late);
            st.on_rtp_received(9, k as u16, 160 * k, at);
        }
        let s = st.stats();
        // J converges to 80 ticks = 10 ms.
        assert!((s.jitter_ms - 10.0).abs() < 0.2, "{s:?}");
        let mut out = Vec::new();
        st.write_report(t0 + Duration::from_secs(9), &mut out);
        let b = only_block(&out).2.expect("block");
        assert!((78..=80).contains(&b.jitter), "{b:?}");
    }

    #[test]
    fn sequence_restart_needs_two_sequential_packets() {
        let t0 = Instant::now();
        let mut st = state(1, t0);
        for k in 0..10u16 {
            st.on_rtp_received(9, 1000 + k, 160 * u32::from(k), t0);
        }
        // A stray far-off sequence number: not counted, no restart.
        st.on_rtp_received(9, 30_000, 0, t0);
        assert_eq!(st.stats().packets_expected, 10);
        // Two in a row: the counting restarts there.
        st.on_rtp_received(9, 40_000, 0, t0);
        st.on_rtp_received(9, 40_001, 160, t0);
        let s = st.stats();
        assert_eq!((s.packets_expected, s.packets_lost), (1, 0), "{s:?}");
    }

    #[test]
    fn ssrc_change_keeps_the_call_totals() {
        let t0 = Instant::now();
        let mut st = state(1, t0);
        for k in (0..10u16).filter(|k| *k != 3) {
            st.on_rtp_received(5, k, 160 * u32::from(k), t0);
        }
        st.on_rtp_received(6, 500, 0, t0); // one packet of a new SSRC: not yet
        assert_eq!(st.stats().packets_expected, 10);
        st.on_rtp_received(5, 10, 1600, t0);
        st.on_rtp_received(6, 700, 0, t0);
        st.on_rtp_received(6, 701, 160, t0); // two in a row: the new source takes over
        st.on_rtp_received(6, 703, 480, t0);
        let s = st.stats();
        assert_eq!(s.packets_expected, 11 + 4, "{s:?}");
        assert_eq!(s.packets_lost, 1 + 1, "{s:?}");
    }

    #[test]
    fn two_states_exchange_reports_and_measure_rtt() {
        let t0 = Instant::now();
        let mut a = state(0xA, t0);
        // b's wall clock is off by an hour: RTT does not depend on it.
        let mut b = RtcpState::new(
            RtcpConfig::new(0xB, "b@outdial"),
            t0,
            UNIX_EPOCH + Duration::from_secs(1_700_003_600),
        );
        let one_way = Duration::from_millis(30);
        for k in 0..100u32 {
            let at = t0 + Duration::from_millis(20 * u64::from(k));
            a.on_rtp_sent(160 * k, 160, at);
            b.on_rtp_received(0xA, k as u16, 160 * k, at + one_way);
            b.on_rtp_sent(5000 + 160 * k, 160, at);
            a.on_rtp_received(0xB, k as u16, 5000 + 160 * k, at + one_way);
        }
        let t1 = t0 + Duration::from_secs(2);
        let mut sr = Vec::new();
        a.write_report(t1, &mut sr);
        let (kind, info, block) = only_block(&sr);
        assert_eq!(kind, PT_SR);
        let info = info.expect("sender info");
        assert_eq!((info.packet_count, info.octet_count), (100, 16_000));
        // RTP timestamp extrapolated from the last packet (sent at 1.98 s) to 2 s.
        assert_eq!(info.rtp_timestamp, 160 * 99 + 160);
        assert_eq!(block.expect("block").ssrc, 0xB);

        b.on_rtcp_received(&sr, t1 + one_way).expect("valid");
        assert_eq!(b.stats().remote_packets_sent, Some(100));
        // b answers 500 ms later; its block echoes a's SR.
        let t2 = t1 + one_way + Duration::from_millis(500);
        let mut rr = Vec::new();
        b.write_report(t2, &mut rr);
        let b_block = only_block(&rr).2.expect("block about a");
        assert_eq!(b_block.lsr, ntp_middle(info.ntp));
        assert_eq!(b_block.dlsr, 0x8000, "0.5 s in 1/65536 s");
        a.on_rtcp_received(&rr, t2 + one_way).expect("valid");
        let s = a.stats();
        let rtt = s.rtt_ms.expect("rtt");
        assert!((rtt - 60.0).abs() < 0.1, "{s:?}");
        assert_eq!(s.remote_packets_lost, Some(0));
        assert_eq!(s.remote_fraction_lost, Some(0.0));
        assert_eq!(s.remote_jitter_ms, Some(0.0));
        assert_eq!(s.reports_received, 1);
        assert_eq!(b.stats().reports_sent, 1);
    }

    #[test]
    fn reports_are_due_at_randomized_intervals() {
        let t0 = Instant::now();
        let mut st = state(3, t0);
        let first = st.next_report_at() - t0;
        assert!(first >= Duration::from_millis(1250) && first < Duration::from_millis(3750));
        let mut out = Vec::new();
        assert!(!st.poll_report(t0, &mut out));
        assert!(out.is_empty());
        let mut now = st.next_report_at();
        let mut gaps = Vec::new();
        for _ in 0..200 {
            assert!(st.poll_report(now, &mut out));
            let gap = st.next_report_at() - now;
            assert!(gap >= Duration::from_millis(2500) && gap < Duration::from_millis(7500));
            gaps.push(gap.as_secs_f64());
            now = st.next_report_at();
        }
        let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
        assert!((mean - 5.0).abs() < 0.3, "mean interval {mean}");
        assert!(gaps.windows(2).any(|w| w[0] != w[1]), "randomized");
        assert_eq!(st.stats().reports_sent, 200);
        // Every report parses: RR (nothing sent, nothing received) + SDES, back to back.
        let c = parse_compound(&out).expect("valid");
        assert_eq!(c.packets().count(), 400);
    }

    #[test]
    fn bye_is_sent_and_noticed() {
        let t0 = Instant::now();
        let mut a = state(0xA, t0);
        let mut b = state(0xB, t0);
        let mut out = Vec::new();
        a.write_bye(t0, &mut out);
        let c = parse_compound(&out).expect("valid");
        assert!(c
            .packets()
            .any(|p| matches!(p, RtcpPacket::Goodbye { sources, .. } if sources.iter().eq([0xA]))));
        b.on_rtcp_received(&out, t0).expect("valid");
        assert!(b.stats().bye_received);
        assert_eq!(
            b.on_rtcp_received(&[0x80], t0),
            Err(RtcpError::TooShort { len: 1 })
        );
        assert_eq!(b.stats().invalid, 1);
    }

    #[test]
    fn sdes_cname_is_cut_and_padded() {
        let long = "x".repeat(300);
        let mut out = Vec::new();
        write_sdes_cname(&mut out, 1, &long);
        assert_eq!(out.len() % 4, 0);
        let c = parse_compound(&out).expect("valid");
        let Some(RtcpPacket::SourceDescription(chunks)) = c.packets().next() else {
            panic!("SDES");
        };
        assert_eq!(
            chunks.iter().next().and_then(|c| c.cname).map(<[u8]>::len),
            Some(255)
        );
        for n in 0..8 {
            out.clear();
            write_sdes_cname(&mut out, 1, &"y".repeat(n));
            assert_eq!(out.len() % 4, 0);
            let c = parse_compound(&out).expect("valid");
            let Some(RtcpPacket::SourceDescription(chunks)) = c.packets().next() else {
                panic!("SDES");
            };
            assert_eq!(
                chunks.iter().next().and_then(|c| c.cname).map(<[u8]>::len),
                Some(n)
            );
        }
    }

    /// Random and truncated datagrams never panic, are counted, and whatever parses can be read.
    #[test]
    fn never_panics_on_arbitrary_input() {
        let mut state_rng: u64 = 0x2545_F491_4F6C_DD1D;
        let mut next = move || {
            state_rng ^= state_rng << 13;
            state_rng ^= state_rng >> 7;
            state_rng ^= state_rng << 17;
            state_rng
        };
        let t0 = Instant::now();
        let mut st = state(1, t0);
        let valid = handmade_compound();
        let mut buf = Vec::new();
        let mut ok = 0;
        for round in 0..20_000 {
            buf.clear();
            match round % 4 {
                // Pure noise.
                0 => buf.extend((0..next() % 120).map(|_| next() as u8)),
                // A valid compound with a few bytes flipped.
                1 => {
                    buf.extend_from_slice(&valid);
                    for _ in 0..1 + next() % 3 {
                        let i = (next() as usize) % buf.len();
                        buf[i] = next() as u8;
                    }
                }
                // A valid compound cut short.
                2 => buf.extend_from_slice(&valid[..(next() as usize) % valid.len()]),
                // Plausible headers with random counts and lengths.
                _ => {
                    for _ in 0..1 + next() % 3 {
                        let r = next();
                        buf.push(0x80 | (r as u8 & 0x3F));
                        buf.push(200 + (r >> 8) as u8 % 6);
                        buf.extend_from_slice(&((r >> 16) as u16 % 16).to_be_bytes());
                        buf.extend((0..(r >> 32) % 64).map(|_| next() as u8));
                    }
                }
            }
            if let Ok(c) = parse_compound(&buf) {
                ok += 1;
                for p in c.packets() {
                    match p {
                        RtcpPacket::SenderReport { reports, .. }
                        | RtcpPacket::ReceiverReport { reports, .. } => {
                            assert!(reports.iter().count() <= 31);
                        }
                        RtcpPacket::SourceDescription(chunks) => {
                            let _ = chunks.iter().count();
                        }
                        RtcpPacket::Goodbye { sources, reason } => {
                            let _ = sources.iter().count();
                            assert!(reason.is_none_or(|r| r.len() < 256));
                        }
                        RtcpPacket::Other { body, .. } => assert!(body.len() <= buf.len()),
                    }
                }
            }
            let _ = st.on_rtcp_received(&buf, t0);
        }
        // A cut is an error unless it falls between two packets (SR | SDES | BYE).
        for cut in 0..valid.len() {
            let between = cut == 52 || cut == 52 + 24 + 4;
            assert_eq!(
                parse_compound(&valid[..cut]).is_ok(),
                between,
                "cut at {cut}"
            );
        }
        let s = st.stats();
        assert_eq!(s.reports_received + s.invalid, 20_000);
        assert_eq!(s.reports_received, ok);
        assert!(ok > 100 && s.invalid > 10_000, "{s:?}");
    }
}
