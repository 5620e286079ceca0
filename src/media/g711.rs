//! G.711 µ-law (PCMU, payload type 0) and A-law (PCMA, payload type 8), sans-IO; and, with the
//! `g722` feature, the name of G.722 (payload type 9), which [`super::codec`] codes.
//!
//! Encoding follows the ITU-T G.191 reference implementation of G.711 bit for bit (negative
//! samples use the one's complement, as the reference does); decoding reads 256-entry tables
//! built at compile time from the same reference. Silence encodes as 0xFF (PCMU) and 0xD5 (PCMA).
//! This module only converts buffers: it never allocates beyond growing the caller's `Vec`, and
//! every input byte or sample is valid, so nothing here can fail or panic.
//!
//! G.722 keeps state from one frame to the next (ADPCM predictors, band-split filters, and the
//! 16 ↔ 8 kHz resampling around it), so the stateless conversions here do not apply to it: a
//! stream's audio goes through [`super::codec::FrameEncoder`] / [`super::codec::FrameDecoder`],
//! which use these for G.711. Called on [`Codec::G722`] directly, they give silence.

/// A G.711 variant, as negotiated in SDP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// µ-law, static payload type 0 (North America, Japan).
    Pcmu,
    /// A-law, static payload type 8 (most of the rest of the world).
    Pcma,
    /// G.722 at 64 kbit/s, static payload type 9: 16 kHz audio on an 8 kHz RTP clock
    /// (RFC 3551). Stateful: see the module documentation.
    #[cfg(feature = "g722")]
    G722,
}

impl Codec {
    /// The static RTP payload type (RFC 3551).
    pub fn payload_type(self) -> u8 {
        match self {
            Codec::Pcmu => 0,
            Codec::Pcma => 8,
            #[cfg(feature = "g722")]
            Codec::G722 => 9,
        }
    }

    /// G.711 (stateless: [`Codec::encode`] and [`Codec::decode`] apply).
    pub fn is_g711(self) -> bool {
        matches!(self, Codec::Pcmu | Codec::Pcma)
    }

    /// The SDP encoding name (`a=rtpmap:0 PCMU/8000`).
    pub fn name(self) -> &'static str {
        match self {
            Codec::Pcmu => "PCMU",
            Codec::Pcma => "PCMA",
            #[cfg(feature = "g722")]
            Codec::G722 => "G722",
        }
    }

    /// The codec for a static payload type, if it is one of ours.
    pub fn from_payload_type(pt: u8) -> Option<Codec> {
        match pt {
            0 => Some(Codec::Pcmu),
            8 => Some(Codec::Pcma),
            #[cfg(feature = "g722")]
            9 => Some(Codec::G722),
            _ => None,
        }
    }

    /// The codec for an SDP encoding name, ignoring case (`pcmu`, `PCMA`).
    pub fn from_name(name: &str) -> Option<Codec> {
        if name.eq_ignore_ascii_case("PCMU") {
            Some(Codec::Pcmu)
        } else if name.eq_ignore_ascii_case("PCMA") {
            Some(Codec::Pcma)
        } else {
            #[cfg(feature = "g722")]
            if name.eq_ignore_ascii_case("G722") {
                return Some(Codec::G722);
            }
            None
        }
    }

    /// The byte that decodes to (near) zero: what a silent frame is filled with (G.711; G.722
    /// has no such byte, and gets µ-law's).
    pub fn silence_byte(self) -> u8 {
        match self {
            Codec::Pcma => 0xD5,
            _ => 0xFF,
        }
    }

    /// Encodes one sample (G.711; G.722 gives [`Codec::silence_byte`]).
    #[inline]
    pub fn encode_sample(self, sample: i16) -> u8 {
        match self {
            Codec::Pcmu => LINEAR_TO_ULAW[ulaw_index(sample)],
            Codec::Pcma => LINEAR_TO_ALAW[alaw_index(sample)],
            #[cfg(feature = "g722")]
            Codec::G722 => self.silence_byte(),
        }
    }

    /// Decodes one byte (G.711; G.722 gives silence).
    #[inline]
    pub fn decode_sample(self, byte: u8) -> i16 {
        match self {
            Codec::Pcmu => ULAW_TO_LINEAR[byte as usize],
            Codec::Pcma => ALAW_TO_LINEAR[byte as usize],
            #[cfg(feature = "g722")]
            Codec::G722 => 0,
        }
    }

    /// Appends one encoded byte per sample of `pcm` to `out` (G.711; for G.722, which needs
    /// its [`super::codec::FrameEncoder`], nothing).
    pub fn encode(self, pcm: &[i16], out: &mut Vec<u8>) {
        out.reserve(pcm.len());
        match self {
            Codec::Pcmu => out.extend(pcm.iter().map(|&s| LINEAR_TO_ULAW[ulaw_index(s)])),
            Codec::Pcma => out.extend(pcm.iter().map(|&s| LINEAR_TO_ALAW[alaw_index(s)])),
            #[cfg(feature = "g722")]
            Codec::G722 => {}
        }
    }

    /// Appends one decoded sample per byte of `payload` to `out` (G.711; for G.722, which
    /// needs its [`super::codec::FrameDecoder`], as many samples of silence: the 8 kHz length
    /// of a 64 kbit/s payload).
    pub fn decode(self, payload: &[u8], out: &mut Vec<i16>) {
        let table = match self {
            Codec::Pcmu => &ULAW_TO_LINEAR,
            Codec::Pcma => &ALAW_TO_LINEAR,
            #[cfg(feature = "g722")]
            Codec::G722 => {
                out.resize(out.len() + payload.len(), 0);
                return;
            }
        };
        out.reserve(payload.len());
        out.extend(payload.iter().map(|&b| table[b as usize]));
    }
}

/// Encodes one 16-bit linear sample as µ-law (ITU-T G.191 `ulaw_compress`).
#[inline]
pub const fn linear_to_ulaw(sample: i16) -> u8 {
    // Magnitude on 14 bits, one's complement for negatives, plus the µ-law bias of 33.
    let mut absno: i32 = if sample < 0 {
        ((!sample) as i32 >> 2) + 33
    } else {
        (sample as i32 >> 2) + 33
    };
    if absno > 0x1FFF {
        absno = 0x1FFF;
    }
    // Segment number: position of the leading one above bit 5.
    let mut i = absno >> 6;
    let mut segno: i32 = 1;
    while i != 0 {
        segno += 1;
        i >>= 1;
    }
    let high_nibble = 0x08 - segno;
    let low_nibble = 0x0F - ((absno >> segno) & 0x0F);
    let mut out = (high_nibble << 4) | low_nibble;
    if sample >= 0 {
        out |= 0x80;
    }
    out as u8
}

/// Decodes one µ-law byte (ITU-T G.191 `ulaw_expand`).
pub const fn ulaw_to_linear(byte: u8) -> i16 {
    ULAW_TO_LINEAR[byte as usize]
}

/// Encodes one 16-bit linear sample as A-law (ITU-T G.191 `alaw_compress`).
#[inline]
pub const fn linear_to_alaw(sample: i16) -> u8 {
    // Magnitude on 12 bits, one's complement for negatives.
    let mut ix: i32 = if sample < 0 {
        (!sample) as i32 >> 4
    } else {
        sample as i32 >> 4
    };
    if ix > 15 {
        let mut iexp: i32 = 1;
        while ix > 16 + 15 {
            ix >>= 1;
            iexp += 1;
        }
        ix -= 16;
        ix += iexp << 4;
    }
    if sample >= 0 {
        ix |= 0x80;
    }
    (ix ^ 0x55) as u8
}

/// Decodes one A-law byte (ITU-T G.191 `alaw_expand`).
pub const fn alaw_to_linear(byte: u8) -> i16 {
    ALAW_TO_LINEAR[byte as usize]
}

/// Converts a µ-law byte to the A-law byte whose value is nearest (same sign).
pub fn ulaw_to_alaw(byte: u8) -> u8 {
    ULAW_TO_ALAW[byte as usize]
}

/// Converts an A-law byte to the µ-law byte whose value is nearest (same sign).
pub fn alaw_to_ulaw(byte: u8) -> u8 {
    ALAW_TO_ULAW[byte as usize]
}

const fn ulaw_expand(byte: u8) -> i16 {
    let sign: i32 = if byte < 0x80 { -1 } else { 1 };
    let mantissa_all = (!byte) as i32;
    let exponent = (mantissa_all >> 4) & 0x07;
    let segment = exponent + 1;
    let mantissa = mantissa_all & 0x0F;
    let step = 4 << segment;
    (sign * ((0x80 << exponent) + step * mantissa + step / 2 - 4 * 33)) as i16
}

const fn alaw_expand(byte: u8) -> i16 {
    let ix = ((byte ^ 0x55) & 0x7F) as i32;
    let iexp = ix >> 4;
    let mut mant = ix & 0x0F;
    if iexp > 0 {
        mant += 16;
    }
    mant = (mant << 4) + 0x08;
    if iexp > 1 {
        mant <<= iexp - 1;
    }
    if byte > 127 {
        mant as i16
    } else {
        -mant as i16
    }
}

const fn build_decode_table(alaw: bool) -> [i16; 256] {
    let mut table = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = if alaw {
            alaw_expand(i as u8)
        } else {
            ulaw_expand(i as u8)
        };
        i += 1;
    }
    table
}

/// For each code of one law, the code of the other law with the same sign bit whose decoded
/// value is nearest; on a tie the larger magnitude wins.
const fn build_transcode_table(from: &[i16; 256], to: &[i16; 256]) -> [u8; 256] {
    let mut table = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let value = from[i] as i32;
        let sign = i & 0x80;
        let mut best = 0usize;
        let mut best_diff = i32::MAX;
        let mut j = 0;
        while j < 256 {
            if j & 0x80 == sign {
                let candidate = to[j] as i32;
                let diff = (candidate - value).abs();
                let tie_wins = diff == best_diff && candidate.abs() > (to[best] as i32).abs();
                if diff < best_diff || tie_wins {
                    best = j;
                    best_diff = diff;
                }
            }
            j += 1;
        }
        table[i] = best as u8;
        i += 1;
    }
    table
}

/// µ-law's output depends only on the top 14 bits of the sample (`sample >> 2`), A-law's on
/// the top 12 (`sample >> 4`): encoding is one lookup in a 16 KiB / 4 KiB table built at
/// compile time from the reference functions above.
#[inline]
fn ulaw_index(sample: i16) -> usize {
    ((sample >> 2) as i32 + 8192) as usize
}

#[inline]
fn alaw_index(sample: i16) -> usize {
    ((sample >> 4) as i32 + 2048) as usize
}

const fn build_ulaw_encode_table() -> [u8; 16384] {
    let mut t = [0u8; 16384];
    let mut i = 0;
    while i < 16384 {
        t[i] = linear_to_ulaw(((i as i32 - 8192) << 2) as i16);
        i += 1;
    }
    t
}

const fn build_alaw_encode_table() -> [u8; 4096] {
    let mut t = [0u8; 4096];
    let mut i = 0;
    while i < 4096 {
        t[i] = linear_to_alaw(((i as i32 - 2048) << 4) as i16);
        i += 1;
    }
    t
}

static LINEAR_TO_ULAW: [u8; 16384] = build_ulaw_encode_table();
static LINEAR_TO_ALAW: [u8; 4096] = build_alaw_encode_table();
static ULAW_TO_LINEAR: [i16; 256] = build_decode_table(false);
static ALAW_TO_LINEAR: [i16; 256] = build_decode_table(true);
static ULAW_TO_ALAW: [u8; 256] = build_transcode_table(&ULAW_TO_LINEAR, &ALAW_TO_LINEAR);
static ALAW_TO_ULAW: [u8; 256] = build_transcode_table(&ALAW_TO_LINEAR, &ULAW_TO_LINEAR);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_types_and_names() {
        assert_eq!(Codec::Pcmu.payload_type(), 0);
        assert_eq!(Codec::Pcma.payload_type(), 8);
        assert_eq!(Codec::from_payload_type(0), Some(Codec::Pcmu));
        assert_eq!(Codec::from_payload_type(8), Some(Codec::Pcma));
        assert_eq!(Codec::from_payload_type(101), None);
        assert_eq!(Codec::from_name("pcmu"), Some(Codec::Pcmu));
        assert_eq!(Codec::from_name("PcMa"), Some(Codec::Pcma));
        assert_eq!(Codec::from_name("opus"), None);
        assert_eq!(Codec::Pcmu.name(), "PCMU");
        assert_eq!(Codec::Pcma.name(), "PCMA");
    }

    #[test]
    fn known_values() {
        assert_eq!(ulaw_to_linear(0xFF), 0);
        assert_eq!(ulaw_to_linear(0x7F), 0);
        assert_eq!(ulaw_to_linear(0x80), 32124);
        assert_eq!(ulaw_to_linear(0x00), -32124);
        assert_eq!(alaw_to_linear(0xD5), 8);
        assert_eq!(alaw_to_linear(0x55), -8);
        assert_eq!(alaw_to_linear(0xAA), 32256);
        assert_eq!(alaw_to_linear(0x2A), -32256);
        assert_eq!(linear_to_ulaw(0), 0xFF);
        assert_eq!(linear_to_alaw(0), 0xD5);
        assert_eq!(linear_to_ulaw(i16::MAX), 0x80);
        assert_eq!(linear_to_ulaw(i16::MIN), 0x00);
        assert_eq!(linear_to_alaw(i16::MAX), 0xAA);
        assert_eq!(linear_to_alaw(i16::MIN), 0x2A);
        assert_eq!(Codec::Pcmu.silence_byte(), linear_to_ulaw(0));
        assert_eq!(Codec::Pcma.silence_byte(), linear_to_alaw(0));
    }

    #[test]
    fn every_code_survives_decode_then_encode() {
        // Re-encoding a decoded value must give the same code back (µ-law's two zeros aside).
        for b in 0..=255u8 {
            let u = linear_to_ulaw(ulaw_to_linear(b));
            if b == 0x7F {
                assert_eq!(u, 0xFF, "µ-law negative zero");
            } else {
                assert_eq!(u, b, "µ-law code {b:#04x}");
            }
            assert_eq!(linear_to_alaw(alaw_to_linear(b)), b, "A-law code {b:#04x}");
        }
    }

    /// Quantisation error stays within half a step of the segment the sample falls in.
    #[test]
    fn round_trip_error_bounds() {
        for s in i16::MIN..=i16::MAX {
            let x = s as i32;
            let mag = x.unsigned_abs() as i32;
            let u = ulaw_to_linear(linear_to_ulaw(s)) as i32;
            let a = alaw_to_linear(linear_to_alaw(s)) as i32;
            // µ-law: step 8 in the first segment, doubling per segment; clip at 32124.
            let u_bound = if mag > 32124 {
                mag - 32124 + 512
            } else {
                ulaw_step(mag)
            };
            assert!((u - x).abs() <= u_bound, "µ-law {s} -> {u}");
            // A-law: step 16 in the first two segments, doubling after; clip at 32256.
            let a_bound = if mag > 32256 {
                mag - 32256 + 512
            } else {
                alaw_step(mag)
            };
            assert!((a - x).abs() <= a_bound, "A-law {s} -> {a}");
        }
    }

    fn ulaw_step(mag: i32) -> i32 {
        let mut step = 8;
        let mut end = 0x3F * 4; // biased segment ends, scaled to 16 bits
        while mag + 132 > end && step < 1024 {
            step *= 2;
            end = end * 2 + 4;
        }
        step
    }

    fn alaw_step(mag: i32) -> i32 {
        let mut step = 16;
        let mut end = 512;
        while mag >= end && step < 1024 {
            step *= 2;
            end *= 2;
        }
        step
    }

    #[test]
    fn encode_and_decode_are_monotonic() {
        let mut prev_u = i32::MIN;
        let mut prev_a = i32::MIN;
        for s in i16::MIN..=i16::MAX {
            let u = ulaw_to_linear(linear_to_ulaw(s)) as i32;
            let a = alaw_to_linear(linear_to_alaw(s)) as i32;
            assert!(u >= prev_u, "µ-law not monotonic at {s}");
            assert!(a >= prev_a, "A-law not monotonic at {s}");
            prev_u = u;
            prev_a = a;
        }
    }

    #[test]
    fn buffer_encode_decode_appends() {
        let pcm: Vec<i16> = (0..160).map(|i| ((i - 80) * 400) as i16).collect();
        for codec in [Codec::Pcmu, Codec::Pcma] {
            let mut bytes = vec![0xAB];
            codec.encode(&pcm, &mut bytes);
            assert_eq!(bytes.len(), 161);
            assert_eq!(bytes[0], 0xAB);
            let mut back = vec![7];
            codec.decode(&bytes[1..], &mut back);
            assert_eq!(back.len(), 161);
            assert_eq!(back[0], 7);
            for (orig, dec) in pcm.iter().zip(&back[1..]) {
                let err = (*orig as i32 - *dec as i32).abs();
                assert!(
                    err <= 8 + (*orig as i32).abs() / 16,
                    "{codec:?} {orig} -> {dec}"
                );
            }
        }
    }

    #[test]
    fn transcoding_keeps_sign_and_is_close() {
        for b in 0..=255u8 {
            let a = ulaw_to_alaw(b);
            assert_eq!(a & 0x80, b & 0x80);
            let (from, to) = (ulaw_to_linear(b) as i32, alaw_to_linear(a) as i32);
            assert!(
                (from - to).abs() <= 1024 / 2 + 8,
                "µ {b:#04x} {from} -> A {a:#04x} {to}"
            );
            let u = alaw_to_ulaw(b);
            assert_eq!(u & 0x80, b & 0x80);
            let (from, to) = (alaw_to_linear(b) as i32, ulaw_to_linear(u) as i32);
            assert!(
                (from - to).abs() <= 1024 / 2 + 8,
                "A {b:#04x} {from} -> µ {u:#04x} {to}"
            );
        }
        assert_eq!(ulaw_to_alaw(0xFF), 0xD5);
        assert_eq!(alaw_to_ulaw(0xD5), 0xFE);
        assert_eq!(ulaw_to_alaw(0x80), 0xAA);
        assert_eq!(alaw_to_ulaw(0xAA), 0x80);
    }

    #[test]
    fn table_encoding_equals_the_reference_for_every_sample() {
        for s in i16::MIN..=i16::MAX {
            assert_eq!(Codec::Pcmu.encode_sample(s), linear_to_ulaw(s), "µ-law {s}");
            assert_eq!(Codec::Pcma.encode_sample(s), linear_to_alaw(s), "A-law {s}");
        }
        let pcm: Vec<i16> = (-200..200).map(|k| k * 163).collect();
        let mut out = Vec::new();
        Codec::Pcmu.encode(&pcm, &mut out);
        let reference: Vec<u8> = pcm.iter().map(|&s| linear_to_ulaw(s)).collect();
        assert_eq!(out, reference);
    }
}
