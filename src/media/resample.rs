//! Streaming resampling of mono audio between the rates a call may meet: 8, 16, 24 and 48 kHz.
//!
//! [`Resampler`] wraps rubato's synchronous FFT resampler with both sides fixed to 20 ms: every
//! whole 20 ms of input gives exactly 20 ms of output, delayed by a fixed
//! [`Resampler::delay_samples`] (about 10 ms, at the start of the output). Input that is not a
//! whole number of 20 ms frames is kept until the rest arrives. Equal rates pass audio through
//! untouched, with no delay.
//!
//! Sans-IO: no clock, no tasks, no sockets. All buffers are sized in [`Resampler::new`]; `process`
//! allocates nothing of its own (the caller's `out` grows only if it lacks room). Nothing here
//! panics on an input length or value; rates other than the supported four are refused in `new`.

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Resampler as _};

use super::MediaError;

/// Sample rates [`Resampler`] converts between, in Hz.
pub const SUPPORTED_RATES: [u32; 4] = [8000, 16_000, 24_000, 48_000];

/// Frames per second: the resampler works in 20 ms chunks.
const CHUNKS_PER_SECOND: u32 = 50;

fn resample_error(reason: String) -> MediaError {
    MediaError::Resample(reason)
}

/// Converts a mono stream from one sample rate to another, 20 ms at a time.
pub struct Resampler {
    from_hz: u32,
    to_hz: u32,
    /// `None` when the rates are equal (pass-through).
    inner: Option<Inner>,
}

struct Inner {
    fft: Fft<f32>,
    chunk_in: usize,
    chunk_out: usize,
    /// Input waiting for a whole chunk; never holds more than `chunk_in` samples.
    pending: Vec<f32>,
    /// One chunk of output.
    output: Vec<f32>,
}

impl std::fmt::Debug for Resampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resampler")
            .field("from_hz", &self.from_hz)
            .field("to_hz", &self.to_hz)
            .field("delay_samples", &self.delay_samples())
            .finish()
    }
}

impl Resampler {
    /// A resampler from `from_hz` to `to_hz`; both must be one of [`SUPPORTED_RATES`].
    pub fn new(from_hz: u32, to_hz: u32) -> Result<Self, MediaError> {
        for rate in [from_hz, to_hz] {
            if !SUPPORTED_RATES.contains(&rate) {
                return Err(resample_error(format!(
                    "cannot resample from {from_hz} Hz to {to_hz} Hz: {rate} Hz is not \
                     supported (8000, 16000, 24000 or 48000 Hz only)"
                )));
            }
        }
        if from_hz == to_hz {
            return Ok(Resampler {
                from_hz,
                to_hz,
                inner: None,
            });
        }
        let chunk_in = (from_hz / CHUNKS_PER_SECOND) as usize;
        let chunk_out = (to_hz / CHUNKS_PER_SECOND) as usize;
        let fft = Fft::<f32>::new(
            from_hz as usize,
            to_hz as usize,
            chunk_in,
            1,
            FixedSync::Both,
        )
        .map_err(|e| {
            resample_error(format!(
                "cannot resample from {from_hz} Hz to {to_hz} Hz: {e}"
            ))
        })?;
        if fft.input_frames_next() != chunk_in || fft.output_frames_next() != chunk_out {
            return Err(resample_error(format!(
                "cannot resample from {from_hz} Hz to {to_hz} Hz in 20 ms chunks \
                 (rubato offers {} in, {} out)",
                fft.input_frames_next(),
                fft.output_frames_next()
            )));
        }
        Ok(Resampler {
            from_hz,
            to_hz,
            inner: Some(Inner {
                fft,
                chunk_in,
                chunk_out,
                pending: Vec::with_capacity(chunk_in),
                output: vec![0.0; chunk_out],
            }),
        })
    }

    pub fn from_hz(&self) -> u32 {
        self.from_hz
    }

    pub fn to_hz(&self) -> u32 {
        self.to_hz
    }

    /// Samples of input that make one 20 ms frame.
    pub fn input_frame_len(&self) -> usize {
        (self.from_hz / CHUNKS_PER_SECOND) as usize
    }

    /// Samples of output per 20 ms frame of input.
    pub fn output_frame_len(&self) -> usize {
        (self.to_hz / CHUNKS_PER_SECOND) as usize
    }

    /// The delay the resampler adds, in output samples (0 when passing through).
    pub fn delay_samples(&self) -> usize {
        self.inner
            .as_ref()
            .map_or(0, |inner| inner.fft.output_delay())
    }

    /// Resamples 16-bit samples, appending the result to `out`.
    ///
    /// Each whole 20 ms of input (counting what earlier calls left over) appends exactly 20 ms
    /// of output; a partial frame is kept for the next call.
    pub fn process(&mut self, frame_in: &[i16], out: &mut Vec<i16>) -> Result<(), MediaError> {
        self.feed(
            frame_in,
            |&s| f32::from(s) / 32768.0,
            out,
            |x| (x * 32768.0).round().clamp(-32768.0, 32767.0) as i16,
        )
    }

    /// Resamples float samples (full scale ±1.0), appending the result to `out`; same rules as
    /// [`Resampler::process`]. Non-finite input samples are taken as silence.
    pub fn process_f32(&mut self, frame_in: &[f32], out: &mut Vec<f32>) -> Result<(), MediaError> {
        self.feed(
            frame_in,
            |&x| if x.is_finite() { x } else { 0.0 },
            out,
            |x| x,
        )
    }

    /// Buffers input (converted to f32) and resamples each whole 20 ms chunk into `out`.
    fn feed<I: Copy, O: Copy>(
        &mut self,
        frame_in: &[I],
        to_f32: impl Fn(&I) -> f32,
        out: &mut Vec<O>,
        from_f32: impl Fn(f32) -> O,
    ) -> Result<(), MediaError> {
        let Some(inner) = self.inner.as_mut() else {
            // Equal rates: f32 round trips are exact for both sample types.
            out.extend(frame_in.iter().map(|x| from_f32(to_f32(x))));
            return Ok(());
        };
        let mut rest = frame_in;
        while !rest.is_empty() {
            let take = (inner.chunk_in - inner.pending.len()).min(rest.len());
            let (now, later) = rest.split_at(take);
            inner.pending.extend(now.iter().map(&to_f32));
            rest = later;
            if inner.pending.len() == inner.chunk_in {
                inner.run_chunk(self.from_hz, self.to_hz)?;
                out.extend(inner.output.iter().map(|&x| from_f32(x)));
            }
        }
        Ok(())
    }

    /// Forgets buffered input and the filter's history, as for a new stream.
    pub fn reset(&mut self) {
        if let Some(inner) = self.inner.as_mut() {
            inner.pending.clear();
            inner.fft.reset();
        }
    }
}

impl Inner {
    /// Resamples the full `pending` chunk into `output` and empties `pending`.
    fn run_chunk(&mut self, from_hz: u32, to_hz: u32) -> Result<(), MediaError> {
        let failed = |e: String| {
            resample_error(format!(
                "resampling from {from_hz} Hz to {to_hz} Hz failed: {e}"
            ))
        };
        let input = InterleavedSlice::new(&self.pending[..], 1, self.chunk_in)
            .map_err(|e| failed(e.to_string()))?;
        let mut output = InterleavedSlice::new_mut(&mut self.output[..], 1, self.chunk_out)
            .map_err(|e| failed(e.to_string()))?;
        let (_, written) = self
            .fft
            .process_into_buffer(&input, &mut output, None)
            .map_err(|e| failed(e.to_string()))?;
        self.pending.clear();
        if written != self.chunk_out {
            return Err(failed(format!(
                "{written} samples out instead of {}",
                self.chunk_out
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::f64::consts::PI;

    const TEST_HZ: f64 = 1000.0;
    const AMPLITUDE: f64 = 0.5;

    fn sine(rate: u32, samples: usize, delay: usize) -> Vec<f64> {
        (0..samples)
            .map(|n| {
                let t = n as f64 - delay as f64;
                if t < 0.0 {
                    0.0
                } else {
                    AMPLITUDE * (2.0 * PI * TEST_HZ * t / rate as f64).sin()
                }
            })
            .collect()
    }

    /// Amplitude and frequency of the best-fitting sine near `TEST_HZ` (least squares on a grid).
    fn fit(x: &[f64], rate: u32) -> (f64, f64) {
        let mut best = (0.0, 0.0);
        let mut f = TEST_HZ - 5.0;
        while f <= TEST_HZ + 5.0 {
            let w = 2.0 * PI * f / rate as f64;
            let (mut c, mut s) = (0.0, 0.0);
            for (n, &v) in x.iter().enumerate() {
                c += v * (w * n as f64).cos();
                s += v * (w * n as f64).sin();
            }
            let amp = 2.0 * (c * c + s * s).sqrt() / x.len() as f64;
            if amp > best.0 {
                best = (amp, f);
            }
            f += 0.05;
        }
        best
    }

    #[test]
    fn sine_survives_every_pair_of_rates() {
        for &from in &SUPPORTED_RATES {
            for &to in &SUPPORTED_RATES {
                let mut r = Resampler::new(from, to).expect("supported pair");
                let frame_in = (from / 50) as usize;
                let frame_out = (to / 50) as usize;
                assert_eq!(r.input_frame_len(), frame_in);
                assert_eq!(r.output_frame_len(), frame_out);
                let input: Vec<i16> = sine(from, from as usize, 0)
                    .iter()
                    .map(|&x| (x * 32768.0).round() as i16)
                    .collect();
                let mut out = Vec::new();
                for (i, frame) in input.chunks(frame_in).enumerate() {
                    r.process(frame, &mut out).expect("process");
                    assert_eq!(out.len(), (i + 1) * frame_out, "{from}->{to} frame {i}");
                }
                let delay = r.delay_samples();
                let delay_ms = delay as f64 * 1000.0 / to as f64;
                if from == to {
                    assert_eq!(delay, 0);
                    assert_eq!(out, input);
                    continue;
                }
                assert!(
                    (1.0..=25.0).contains(&delay_ms),
                    "{from}->{to}: delay {delay_ms} ms"
                );
                // Compare with the ideal sine, shifted by the reported delay; skip the start-up
                // and the last frame.
                let ideal = sine(to, out.len(), delay);
                let skip = delay + 2 * frame_out;
                let end = out.len() - frame_out;
                let (mut signal, mut error) = (0.0, 0.0);
                for n in skip..end {
                    let y = out[n] as f64 / 32768.0;
                    signal += ideal[n] * ideal[n];
                    error += (y - ideal[n]).powi(2);
                }
                let snr = 10.0 * (signal / error.max(1e-30)).log10();
                let steady: Vec<f64> = out[skip..end].iter().map(|&s| s as f64 / 32768.0).collect();
                let (amp, freq) = fit(&steady, to);
                println!(
                    "{from:>5} -> {to:>5}: delay {delay} samples ({delay_ms:.2} ms), SNR {snr:.1} dB, \
                     {freq:.2} Hz at amplitude {amp:.4}"
                );
                assert!(snr > 40.0, "{from}->{to}: SNR {snr:.1} dB");
                assert!((freq - TEST_HZ).abs() <= 0.2, "{from}->{to}: {freq} Hz");
                assert!(
                    (amp - AMPLITUDE).abs() < 0.01,
                    "{from}->{to}: amplitude {amp}"
                );
            }
        }
    }

    #[test]
    fn partial_frames_are_kept_until_whole() {
        let mut r = Resampler::new(8000, 48_000).expect("new");
        let mut out = Vec::new();
        r.process(&[], &mut out).expect("empty input");
        assert!(out.is_empty());
        r.process(&[100; 100], &mut out).expect("part");
        assert!(out.is_empty(), "no output before a whole frame");
        r.process(&[100; 100], &mut out).expect("rest");
        assert_eq!(out.len(), 960);
        // 10 frames given in odd pieces still give exactly 10 frames out.
        let mut out = Vec::new();
        let mut r = Resampler::new(48_000, 16_000).expect("new");
        let input = vec![0i16; 9600];
        for piece in input.chunks(777) {
            r.process(piece, &mut out).expect("process");
        }
        assert_eq!(out.len(), 3200);
    }

    #[test]
    fn float_path_matches_integer_path() {
        let mut a = Resampler::new(16_000, 8000).expect("new");
        let mut b = Resampler::new(16_000, 8000).expect("new");
        let x = sine(16_000, 3200, 0);
        let ints: Vec<i16> = x.iter().map(|&v| (v * 32768.0).round() as i16).collect();
        let floats: Vec<f32> = ints.iter().map(|&v| v as f32 / 32768.0).collect();
        let (mut oi, mut of) = (Vec::new(), Vec::new());
        a.process(&ints, &mut oi).expect("i16");
        b.process_f32(&floats, &mut of).expect("f32");
        assert_eq!(oi.len(), of.len());
        for (i, f) in oi.iter().zip(&of) {
            assert!((*i as f32 - f * 32768.0).abs() <= 1.0);
        }
        // Non-finite input is silence, not a panic or NaN output.
        let mut out = Vec::new();
        b.process_f32(&[f32::NAN; 320], &mut out).expect("nan");
        assert!(out.iter().all(|v| v.is_finite()));
    }

    #[test]
    fn unsupported_rates_are_refused_clearly() {
        let err = Resampler::new(11_025, 8000).expect_err("11025").to_string();
        assert!(err.contains("11025 Hz is not supported"), "{err}");
        assert!(err.contains("8000, 16000, 24000 or 48000"), "{err}");
        assert!(!err.contains('\n'));
        let err = Resampler::new(8000, 44_100).expect_err("44100").to_string();
        assert!(err.contains("44100 Hz is not supported"), "{err}");
        assert!(Resampler::new(0, 8000).is_err());
    }

    #[test]
    fn reset_starts_a_fresh_stream() {
        let mut r = Resampler::new(8000, 16_000).expect("new");
        let mut first = Vec::new();
        let x: Vec<i16> = (0..1600).map(|i| ((i * 37) % 2000) as i16).collect();
        r.process(&x, &mut first).expect("first");
        r.process(&x[..50], &mut Vec::new()).expect("partial");
        r.reset();
        let mut second = Vec::new();
        r.process(&x, &mut second).expect("second");
        assert_eq!(first, second);
    }
}
