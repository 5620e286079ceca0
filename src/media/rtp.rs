//! RTP packets (RFC 3550), sans-IO: parse a received datagram, write one to send.
//!
//! [`RtpPacket::parse`] borrows the payload from the caller's buffer and checks every length
//! (version, CSRC list, header extension, padding) before it slices, so no datagram, however
//! malformed, can make it panic. [`RtpSender`] keeps the outgoing SSRC, sequence number and
//! timestamp. Nothing here touches a socket or a clock, and nothing allocates: writers fill a
//! `Vec` the caller reuses packet after packet.

use super::MediaError;

/// Length of the fixed RTP header.
pub const RTP_HEADER_LEN: usize = 12;

/// Why a datagram is not a valid RTP packet. Cheap to build (no allocation), for the receive path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RtpParseError {
    #[error("{len} bytes is shorter than the 12-byte RTP header")]
    TooShort { len: usize },
    #[error("RTP version is {0}, expected 2")]
    Version(u8),
    #[error("CSRC list of {count} entries runs past the end of a {len}-byte packet")]
    CsrcOverrun { count: u8, len: usize },
    #[error("header extension runs past the end of a {len}-byte packet")]
    ExtensionOverrun { len: usize },
    #[error("padding length {padding} does not fit a {len}-byte packet")]
    BadPadding { padding: u8, len: usize },
}

impl From<RtpParseError> for MediaError {
    fn from(e: RtpParseError) -> Self {
        MediaError::Rtp(e.to_string())
    }
}

/// One parsed RTP packet; `payload` borrows from the received buffer (padding removed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpPacket<'a> {
    pub marker: bool,
    pub payload_type: u8,
    pub sequence: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    pub payload: &'a [u8],
}

impl<'a> RtpPacket<'a> {
    /// Parses one datagram; the error names what is wrong with it.
    pub fn parse(buf: &'a [u8]) -> Result<Self, MediaError> {
        Ok(Self::try_parse(buf)?)
    }

    /// Like [`RtpPacket::parse`] with an error that does not allocate: for the receive loop.
    pub fn try_parse(buf: &'a [u8]) -> Result<Self, RtpParseError> {
        let len = buf.len();
        let header: &[u8; RTP_HEADER_LEN] = match buf.first_chunk() {
            Some(h) => h,
            None => return Err(RtpParseError::TooShort { len }),
        };
        let version = header[0] >> 6;
        if version != 2 {
            return Err(RtpParseError::Version(version));
        }
        let has_padding = header[0] & 0x20 != 0;
        let has_extension = header[0] & 0x10 != 0;
        let csrc_count = header[0] & 0x0F;
        let marker = header[1] & 0x80 != 0;
        let payload_type = header[1] & 0x7F;
        let sequence = u16::from_be_bytes([header[2], header[3]]);
        let timestamp = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
        let ssrc = u32::from_be_bytes([header[8], header[9], header[10], header[11]]);

        let mut offset = RTP_HEADER_LEN + 4 * csrc_count as usize;
        if offset > len {
            return Err(RtpParseError::CsrcOverrun {
                count: csrc_count,
                len,
            });
        }
        if has_extension {
            // 16-bit profile id, 16-bit length in 32-bit words, then the words.
            let words = match buf.get(offset + 2..offset + 4) {
                Some(w) => u16::from_be_bytes([w[0], w[1]]) as usize,
                None => return Err(RtpParseError::ExtensionOverrun { len }),
            };
            offset += 4 + 4 * words;
            if offset > len {
                return Err(RtpParseError::ExtensionOverrun { len });
            }
        }
        let mut end = len;
        if has_padding {
            // The last byte counts the padding bytes, itself included.
            let padding = buf[len - 1];
            if padding == 0 || padding as usize > end - offset {
                return Err(RtpParseError::BadPadding { padding, len });
            }
            end -= padding as usize;
        }
        Ok(RtpPacket {
            marker,
            payload_type,
            sequence,
            timestamp,
            ssrc,
            payload: &buf[offset..end],
        })
    }
}

/// Clears `out` and writes one RTP packet into it (no CSRC, no extension, no padding).
pub fn write_rtp(
    out: &mut Vec<u8>,
    marker: bool,
    payload_type: u8,
    sequence: u16,
    timestamp: u32,
    ssrc: u32,
    payload: &[u8],
) {
    out.clear();
    out.reserve(RTP_HEADER_LEN + payload.len());
    out.push(0x80); // version 2
    out.push(((marker as u8) << 7) | (payload_type & 0x7F));
    out.extend_from_slice(&sequence.to_be_bytes());
    out.extend_from_slice(&timestamp.to_be_bytes());
    out.extend_from_slice(&ssrc.to_be_bytes());
    out.extend_from_slice(payload);
}

/// True when a datagram on the RTP port is RTCP multiplexed onto it (RFC 5761 §4): version 2
/// and a second byte in 192..=223, which covers SR/RR/SDES/BYE/APP (200-204) and the feedback
/// and XR types (205-207) that RTP payload types may not use when multiplexing.
pub fn is_rtcp(buf: &[u8]) -> bool {
    match buf {
        [first, second, ..] => first >> 6 == 2 && (192..=223).contains(second),
        _ => false,
    }
}

/// The sending side of one RTP stream: SSRC, next sequence number and next timestamp.
#[derive(Debug, Clone)]
pub struct RtpSender {
    ssrc: u32,
    sequence: u16,
    timestamp: u32,
}

impl RtpSender {
    /// A stream starting at the given sequence number and timestamp (pick them at random).
    pub fn new(ssrc: u32, initial_seq: u16, initial_ts: u32) -> Self {
        RtpSender {
            ssrc,
            sequence: initial_seq,
            timestamp: initial_ts,
        }
    }

    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// Sequence number the next packet will carry.
    pub fn next_sequence(&self) -> u16 {
        self.sequence
    }

    /// Timestamp the next packet will carry.
    pub fn next_timestamp(&self) -> u32 {
        self.timestamp
    }

    /// Writes the next packet into `out` (cleared first), then advances the sequence number by
    /// one and the timestamp by `samples` (the payload's duration in clock ticks).
    pub fn packet(
        &mut self,
        out: &mut Vec<u8>,
        payload_type: u8,
        payload: &[u8],
        samples: u32,
        marker: bool,
    ) {
        write_rtp(
            out,
            marker,
            payload_type,
            self.sequence,
            self.timestamp,
            self.ssrc,
            payload,
        );
        self.sequence = self.sequence.wrapping_add(1);
        self.timestamp = self.timestamp.wrapping_add(samples);
    }

    /// Moves the stream on to `sequence` and `timestamp` for the next packet (a relay wrote the
    /// packets in between itself).
    pub fn set_next(&mut self, sequence: u16, timestamp: u32) {
        self.sequence = sequence;
        self.timestamp = timestamp;
    }

    /// Advances the timestamp without sending (a stall, hold or silence suppression), so the
    /// far end sees the gap in time rather than audio that is late.
    pub fn skip(&mut self, samples: u32) {
        self.timestamp = self.timestamp.wrapping_add(samples);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_then_parse_round_trip() {
        let mut out = vec![1, 2, 3];
        let payload = [0xFFu8; 160];
        write_rtp(&mut out, true, 8, 0xFFFE, 0xDEADBEEF, 0x1234_5678, &payload);
        assert_eq!(out.len(), 172);
        assert_eq!(out[0], 0x80);
        assert_eq!(out[1], 0x88);
        let p = RtpPacket::parse(&out).expect("valid packet");
        assert!(p.marker);
        assert_eq!(p.payload_type, 8);
        assert_eq!(p.sequence, 0xFFFE);
        assert_eq!(p.timestamp, 0xDEADBEEF);
        assert_eq!(p.ssrc, 0x1234_5678);
        assert_eq!(p.payload, &payload[..]);
        assert!(!is_rtcp(&out));
    }

    #[test]
    fn sender_advances_and_wraps() {
        let mut s = RtpSender::new(42, 0xFFFF, u32::MAX - 100);
        let mut out = Vec::new();
        s.packet(&mut out, 0, &[0xFF; 160], 160, true);
        let p = RtpPacket::parse(&out).expect("valid");
        assert_eq!(
            (p.sequence, p.timestamp, p.ssrc, p.marker),
            (0xFFFF, u32::MAX - 100, 42, true)
        );
        s.packet(&mut out, 0, &[0xFF; 160], 160, false);
        let p = RtpPacket::parse(&out).expect("valid");
        assert_eq!((p.sequence, p.timestamp, p.marker), (0, 59, false));
        s.skip(320);
        s.packet(&mut out, 0, &[0xFF; 160], 160, false);
        let p = RtpPacket::parse(&out).expect("valid");
        assert_eq!((p.sequence, p.timestamp), (1, 59 + 160 + 320));
        assert_eq!(s.ssrc(), 42);
        assert_eq!(s.next_sequence(), 2);
    }

    #[test]
    fn parses_csrc_extension_and_padding() {
        let mut buf = vec![0xB2, 0x00, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3]; // P, X, CC=2
        buf.extend_from_slice(&[0xAA; 8]); // two CSRCs
        buf.extend_from_slice(&[0xBE, 0xDE, 0x00, 0x01, 1, 2, 3, 4]); // one-word extension
        buf.extend_from_slice(&[9, 8, 7]); // payload
        buf.extend_from_slice(&[0, 0, 3]); // three bytes of padding
        let p = RtpPacket::parse(&buf).expect("valid");
        assert_eq!(p.payload, &[9, 8, 7]);
        assert_eq!(p.sequence, 1);
        assert_eq!(p.timestamp, 2);
        assert_eq!(p.ssrc, 3);
    }

    #[test]
    fn rejects_malformed_packets_with_clear_errors() {
        let err = RtpPacket::parse(&[0x80, 0, 1]).unwrap_err().to_string();
        assert_eq!(
            err,
            "invalid RTP packet: 3 bytes is shorter than the 12-byte RTP header"
        );
        let mut v1 = [0u8; 12];
        v1[0] = 0x40;
        assert_eq!(RtpPacket::try_parse(&v1), Err(RtpParseError::Version(1)));
        let mut cc = [0u8; 16];
        cc[0] = 0x82;
        assert!(matches!(
            RtpPacket::try_parse(&cc),
            Err(RtpParseError::CsrcOverrun { count: 2, .. })
        ));
        let mut ext = vec![0x90, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xBE, 0xDE, 0, 5];
        ext.extend_from_slice(&[0; 8]);
        assert!(matches!(
            RtpPacket::try_parse(&ext),
            Err(RtpParseError::ExtensionOverrun { .. })
        ));
        let mut pad = [0u8; 14];
        pad[0] = 0xA0;
        pad[13] = 3; // 3 bytes of padding but only 2 bytes after the header
        assert!(matches!(
            RtpPacket::try_parse(&pad),
            Err(RtpParseError::BadPadding { padding: 3, .. })
        ));
        pad[13] = 0;
        assert!(RtpPacket::try_parse(&pad).is_err());
        pad[13] = 2;
        assert_eq!(RtpPacket::try_parse(&pad).map(|p| p.payload.len()), Ok(0));
    }

    #[test]
    fn recognises_rtcp() {
        assert!(is_rtcp(&[0x80, 200, 0, 6]));
        assert!(is_rtcp(&[0x81, 201, 0, 1]));
        assert!(is_rtcp(&[0x81, 205, 0, 1]));
        assert!(!is_rtcp(&[0x80, 0]));
        assert!(!is_rtcp(&[0x80, 0x80 | 8]));
        assert!(!is_rtcp(&[0x80, 101]));
        assert!(!is_rtcp(&[0x00, 200]));
        assert!(!is_rtcp(&[0x80]));
        assert!(!is_rtcp(&[]));
    }

    /// Random and truncated datagrams never panic, and whatever parses stays inside the buffer.
    #[test]
    fn never_panics_on_arbitrary_input() {
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut buf = Vec::new();
        for round in 0..20_000 {
            let len = (next() % 80) as usize;
            buf.clear();
            buf.extend((0..len).map(|_| next() as u8));
            if round % 2 == 0 && !buf.is_empty() {
                buf[0] = 0x80 | (buf[0] & 0x3F); // version 2 so the deeper checks run
            }
            if let Ok(p) = RtpPacket::try_parse(&buf) {
                assert!(p.payload.len() + RTP_HEADER_LEN <= buf.len());
            }
            let _ = is_rtcp(&buf);
        }
        // Every truncation of a valid packet with all the optional parts.
        let mut full = vec![0xB1, 0x00, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4];
        full.extend_from_slice(&[0xBE, 0xDE, 0x00, 0x02, 1, 2, 3, 4, 5, 6, 7, 8]);
        full.extend_from_slice(&[1, 2, 3, 4, 0, 2]);
        assert_eq!(
            RtpPacket::parse(&full).map(|p| p.payload.len()).ok(),
            Some(4)
        );
        for cut in 0..full.len() {
            let _ = RtpPacket::parse(&full[..cut]);
        }
    }
}
