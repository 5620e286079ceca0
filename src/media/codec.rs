//! Per-stream audio coding: one [`FrameEncoder`] for what a session sends and one
//! [`FrameDecoder`] for what it plays out, between 8 kHz 16-bit frames and RTP payloads.
//!
//! G.711 is stateless and goes straight through [`Codec::encode`] / [`Codec::decode`]. G.722
//! (the `g722` feature) is not: it is 16 kHz audio coded by sub-band ADPCM whose predictors
//! carry over from frame to frame, sent on an 8 kHz RTP clock (RFC 3551), 64 kbit/s, 160 bytes
//! per 20 ms. Its decoder turns a payload into 16 kHz samples and resamples them to 8 kHz
//! ([`Resampler`], about 10 ms of delay); its encoder does the reverse. The codec itself is the
//! SpanDSP G.722 as translated to Rust by the `ezk-g722` crate (its `libg722` module), used in
//! its 64 kbit/s, unpacked, 16 kHz mode only: that crate's 8 kHz ("eight_k") encoding and its
//! packed output are broken in 0.1.2 (the encoder writes a constant code in 8 kHz mode and
//! never emits packed bytes), and neither is needed here.
//!
//! Sans-IO: no clock, no sockets. G.711 allocates nothing; G.722 allocates one small buffer per
//! frame inside `ezk-g722`. A frame of any length in, any bytes from the network: nothing here
//! panics (an odd sample count for the G.722 encoder is padded, never passed on).

use super::g711::Codec;
#[cfg(feature = "g722")]
use super::resample::Resampler;

/// Encodes a stream's 8 kHz frames; keeps the state of the codec it last encoded with.
#[derive(Default)]
pub struct FrameEncoder {
    #[cfg(feature = "g722")]
    g722: Option<g722::Encoder>,
}

impl std::fmt::Debug for FrameEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameEncoder").finish_non_exhaustive()
    }
}

impl FrameEncoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends to `out` the payload of `pcm` (8 kHz) in `codec`. For G.722 the first call
    /// sets the codec up; a stream keeps one encoder for its whole life.
    pub fn encode(&mut self, codec: Codec, pcm: &[i16], out: &mut Vec<u8>) {
        match codec {
            #[cfg(feature = "g722")]
            Codec::G722 => self
                .g722
                .get_or_insert_with(g722::Encoder::new)
                .encode(pcm, out),
            c => c.encode(pcm, out),
        }
    }
}

/// Decodes a stream's payloads into 8 kHz samples; keeps the state of the codec it decodes.
#[derive(Default)]
pub struct FrameDecoder {
    #[cfg(feature = "g722")]
    g722: Option<g722::Decoder>,
}

impl std::fmt::Debug for FrameDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameDecoder").finish_non_exhaustive()
    }
}

impl FrameDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends to `out` the 8 kHz samples of one `codec` payload (for G.722, 20 ms of payload
    /// gives 20 ms of samples, delayed by the resampler).
    pub fn decode(&mut self, codec: Codec, payload: &[u8], out: &mut Vec<i16>) {
        match codec {
            #[cfg(feature = "g722")]
            Codec::G722 => self
                .g722
                .get_or_insert_with(g722::Decoder::new)
                .decode(payload, out),
            c => c.decode(payload, out),
        }
    }
}

#[cfg(feature = "g722")]
mod g722 {
    use ezk_g722::libg722::{decoder, encoder, Bitrate};

    use super::Resampler;

    /// 8 kHz in, 16 kHz through the G.722 encoder.
    pub(super) struct Encoder {
        up: Option<Resampler>,
        wide: Vec<i16>,
        codec: encoder::Encoder,
    }

    impl Encoder {
        pub(super) fn new() -> Self {
            Encoder {
                // 8 → 16 kHz is always offered; `None` only if rubato refused, then the
                // samples are repeated instead (still 16 kHz, just without the filter).
                up: Resampler::new(8000, 16_000).ok(),
                wide: Vec::with_capacity(640),
                codec: encoder::Encoder::new(Bitrate::Mode1_64000, false, false),
            }
        }

        pub(super) fn encode(&mut self, pcm: &[i16], out: &mut Vec<u8>) {
            self.wide.clear();
            let resampled = match self.up.as_mut() {
                Some(up) => up.process(pcm, &mut self.wide).is_ok(),
                None => false,
            };
            if !resampled {
                self.wide.clear();
                self.wide.extend(pcm.iter().flat_map(|&s| [s, s]));
            }
            // The encoder works on pairs of 16 kHz samples (it asserts an even count).
            if self.wide.len() % 2 == 1 {
                self.wide.push(0);
            }
            out.extend_from_slice(&self.codec.encode(&self.wide));
        }
    }

    /// G.722 out to 16 kHz, then down to 8 kHz.
    pub(super) struct Decoder {
        down: Option<Resampler>,
        codec: decoder::Decoder,
    }

    impl Decoder {
        pub(super) fn new() -> Self {
            Decoder {
                down: Resampler::new(16_000, 8000).ok(),
                codec: decoder::Decoder::new(Bitrate::Mode1_64000, false, false),
            }
        }

        pub(super) fn decode(&mut self, payload: &[u8], out: &mut Vec<i16>) {
            let wide = self.codec.decode(payload);
            match self.down.as_mut() {
                Some(down) => {
                    let before = out.len();
                    if down.process(&wide, out).is_err() {
                        out.truncate(before);
                        out.extend(wide.iter().step_by(2));
                    }
                }
                None => out.extend(wide.iter().step_by(2)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` samples of a `hz` tone at 8 kHz.
    fn tone(hz: f64, n: usize, amplitude: f64) -> Vec<i16> {
        (0..n)
            .map(|i| {
                let t = i as f64 / 8000.0;
                (amplitude * (2.0 * std::f64::consts::PI * hz * t).sin()) as i16
            })
            .collect()
    }

    /// Normalized cross-correlation of `a` against `b` shifted by `lag` (b[i + lag] ~ a[i]).
    #[cfg(feature = "g722")]
    fn correlation(a: &[i16], b: &[i16], lag: usize) -> f64 {
        let n = a.len().min(b.len().saturating_sub(lag));
        let (mut ab, mut aa, mut bb) = (0.0, 0.0, 0.0);
        for i in 0..n {
            let (x, y) = (f64::from(a[i]), f64::from(b[i + lag]));
            ab += x * y;
            aa += x * x;
            bb += y * y;
        }
        if aa == 0.0 || bb == 0.0 {
            return 0.0;
        }
        ab / (aa * bb).sqrt()
    }

    #[test]
    fn g711_goes_through_the_stateless_tables() {
        let pcm = tone(1000.0, 160, 8000.0);
        let (mut enc, mut dec) = (FrameEncoder::new(), FrameDecoder::new());
        for codec in [Codec::Pcmu, Codec::Pcma] {
            let (mut a, mut b) = (Vec::new(), Vec::new());
            enc.encode(codec, &pcm, &mut a);
            codec.encode(&pcm, &mut b);
            assert_eq!(a, b);
            let (mut x, mut y) = (Vec::new(), Vec::new());
            dec.decode(codec, &a, &mut x);
            codec.decode(&b, &mut y);
            assert_eq!(x, y);
        }
    }

    #[cfg(feature = "g722")]
    #[test]
    fn g722_codes_a_1khz_tone_and_back() {
        // One second of a 1 kHz tone, 20 ms at a time, through the encoder (8 → 16 kHz, G.722
        // 64 kbit/s) and the decoder (G.722 → 16 → 8 kHz), as a call's two ends would.
        let pcm = tone(1000.0, 8000, 10_000.0);
        let (mut enc, mut dec) = (FrameEncoder::new(), FrameDecoder::new());
        let mut decoded = Vec::new();
        for frame in pcm.chunks(160) {
            let mut payload = Vec::new();
            enc.encode(Codec::G722, frame, &mut payload);
            assert_eq!(payload.len(), 160, "64 kbit/s: 160 bytes per 20 ms");
            let before = decoded.len();
            dec.decode(Codec::G722, &payload, &mut decoded);
            assert_eq!(decoded.len() - before, 160, "20 ms in, 20 ms out");
        }
        // Both resamplers and the codec's band-split filters delay the tone; compare at the
        // best lag, past the first 100 ms (the ADPCM settles).
        let skip = 800;
        let (lag, corr) = (0..400)
            .map(|lag| (lag, correlation(&pcm[skip..7000], &decoded[skip..], lag)))
            .fold((0, f64::MIN), |best, c| if c.1 > best.1 { c } else { best });
        assert!(corr > 0.98, "correlation {corr:.4} at lag {lag}");
        let rms = |x: &[i16]| {
            (x.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / x.len() as f64).sqrt()
        };
        let ratio = rms(&decoded[skip..7000]) / rms(&pcm[skip..7000]);
        eprintln!("G.722 round trip: correlation {corr:.4} at lag {lag}, level ratio {ratio:.3}");
        assert!((0.8..1.2).contains(&ratio), "level ratio {ratio:.3}");
    }

    #[cfg(feature = "g722")]
    #[test]
    fn g722_takes_any_bytes_and_odd_frames() {
        let (mut enc, mut dec) = (FrameEncoder::new(), FrameDecoder::new());
        let mut out = Vec::new();
        let noise: Vec<u8> = (0..4000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        for chunk in noise.chunks(173) {
            dec.decode(Codec::G722, chunk, &mut out);
        }
        assert!(!out.is_empty());
        let mut payload = Vec::new();
        enc.encode(Codec::G722, &[1000; 7], &mut payload);
        enc.encode(Codec::G722, &[i16::MIN; 333], &mut payload);
        enc.encode(Codec::G722, &[], &mut payload);
        assert!(payload.len() <= 340 + 2, "{}", payload.len());
    }
}
