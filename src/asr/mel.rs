//! Whisper's log-mel front end, exactly as the model was trained (models/whisper/verify.py's
//! `log_mel` is the reference): 16 kHz audio, 25 ms periodic-Hann frames (400 samples) every
//! 10 ms (160), power spectrum, 80 Slaney mel filters over 0–8 kHz with Slaney area
//! normalisation, log10, floored at the window's maximum − 8, then `(x + 4) / 4`.
//!
//! The window may be shorter than Whisper's 30 s: `frames` columns (100 per second) are
//! returned, mel bin major (`[80, frames]`, the encoder's `[1, 80, N]`), the audio being
//! zero-padded or cut to `frames × 160` samples and reflect-padded by 200 on both sides
//! (`torch.stft(center=True)`); the last STFT frame is dropped as Whisper does.

use std::sync::Arc;

use realfft::{RealFftPlanner, RealToComplex};

pub const SAMPLE_RATE: u32 = 16_000;
pub const N_FFT: usize = 400;
pub const HOP: usize = 160;
pub const N_MELS: usize = 80;
const N_BINS: usize = N_FFT / 2 + 1;

/// Slaney mel scale (librosa `htk=False`).
fn hz_to_mel(f: f64) -> f64 {
    let (f_sp, min_log_hz) = (200.0 / 3.0, 1000.0);
    let (min_log_mel, logstep) = (min_log_hz / f_sp, 6.4f64.ln() / 27.0);
    if f >= min_log_hz {
        min_log_mel + (f / min_log_hz).ln() / logstep
    } else {
        f / f_sp
    }
}

fn mel_to_hz(m: f64) -> f64 {
    let (f_sp, min_log_hz) = (200.0 / 3.0, 1000.0);
    let (min_log_mel, logstep) = (min_log_hz / f_sp, 6.4f64.ln() / 27.0);
    if m >= min_log_mel {
        min_log_hz * (logstep * (m - min_log_mel)).exp()
    } else {
        f_sp * m
    }
}

/// librosa `filters.mel(sr=16000, n_fft=400, n_mels=80)` (Slaney norm): `[80][201]`.
fn mel_filters() -> Vec<[f32; N_BINS]> {
    let sr = f64::from(SAMPLE_RATE);
    let fft_freqs: Vec<f64> = (0..N_BINS)
        .map(|i| i as f64 * (sr / 2.0) / (N_BINS - 1) as f64)
        .collect();
    let (lo, hi) = (hz_to_mel(0.0), hz_to_mel(sr / 2.0));
    let mel_f: Vec<f64> = (0..N_MELS + 2)
        .map(|i| mel_to_hz(lo + (hi - lo) * i as f64 / (N_MELS + 1) as f64))
        .collect();
    (0..N_MELS)
        .map(|m| {
            let mut row = [0f32; N_BINS];
            let enorm = 2.0 / (mel_f[m + 2] - mel_f[m]);
            for (k, &f) in fft_freqs.iter().enumerate() {
                let lower = (f - mel_f[m]) / (mel_f[m + 1] - mel_f[m]);
                let upper = (mel_f[m + 2] - f) / (mel_f[m + 2] - mel_f[m + 1]);
                row[k] = (lower.min(upper).max(0.0) * enorm) as f32;
            }
            row
        })
        .collect()
}

/// A reusable log-mel computer (the FFT plan, window and filters are built once).
pub struct LogMel {
    fft: Arc<dyn RealToComplex<f32>>,
    window: Vec<f32>,
    filters: Vec<[f32; N_BINS]>,
    /// First and one-past-last non-zero bin of each filter.
    spans: Vec<(usize, usize)>,
}

impl Default for LogMel {
    fn default() -> Self {
        Self::new()
    }
}

impl LogMel {
    pub fn new() -> Self {
        let fft = RealFftPlanner::<f32>::new().plan_fft_forward(N_FFT);
        let window = (0..N_FFT)
            .map(|n| {
                (0.5 - 0.5 * (2.0 * std::f64::consts::PI * n as f64 / N_FFT as f64).cos()) as f32
            })
            .collect();
        let filters = mel_filters();
        let spans = filters
            .iter()
            .map(|row| {
                let first = row.iter().position(|&w| w > 0.0).unwrap_or(0);
                let last = row.iter().rposition(|&w| w > 0.0).map_or(0, |i| i + 1);
                (first, last.max(first))
            })
            .collect();
        LogMel {
            fft,
            window,
            filters,
            spans,
        }
    }

    /// Log-mel of `audio` (16 kHz, ±1.0) in a window of `frames` columns: `[80 × frames]`,
    /// mel bin major.
    pub fn compute(&self, audio: &[f32], frames: usize) -> Vec<f32> {
        let n_samples = frames * HOP;
        let pad = N_FFT / 2;
        // zero-pad/cut to n_samples, then reflect-pad (numpy "reflect": the edge not repeated)
        let at = |i: usize| -> f32 {
            if i < n_samples {
                audio
                    .get(i)
                    .copied()
                    .filter(|x| x.is_finite())
                    .unwrap_or(0.0)
            } else {
                0.0
            }
        };
        let padded: Vec<f32> = (0..n_samples + 2 * pad)
            .map(|j| {
                let i = j as isize - pad as isize;
                let idx = if i < 0 {
                    (-i) as usize
                } else if i as usize >= n_samples {
                    (2 * (n_samples as isize - 1) - i).max(0) as usize
                } else {
                    i as usize
                };
                at(idx)
            })
            .collect();
        let mut out = vec![0f32; N_MELS * frames];
        let mut input = self.fft.make_input_vec();
        let mut spectrum = self.fft.make_output_vec();
        let mut scratch = self.fft.make_scratch_vec();
        let mut power = [0f32; N_BINS];
        for t in 0..frames {
            let start = t * HOP;
            for (k, x) in input.iter_mut().enumerate() {
                *x = padded[start + k] * self.window[k];
            }
            if self
                .fft
                .process_with_scratch(&mut input, &mut spectrum, &mut scratch)
                .is_err()
            {
                continue;
            }
            for (p, c) in power.iter_mut().zip(&spectrum) {
                *p = c.re * c.re + c.im * c.im;
            }
            for (m, (row, &(a, b))) in self.filters.iter().zip(&self.spans).enumerate() {
                let e: f32 = row[a..b].iter().zip(&power[a..b]).map(|(w, p)| w * p).sum();
                out[m * frames + t] = e.max(1e-10).log10();
            }
        }
        let max = out.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        for x in &mut out {
            *x = (x.max(max - 8.0) + 4.0) / 4.0;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_match_librosa_slaney_values() {
        // verify.py mel_filters() (librosa filters.mel(sr=16000, n_fft=400, n_mels=80), Slaney):
        // the first filter peaks at bin 1
        // with 0.02486259 (Slaney area normalisation), the last filter ends at bin 200.
        let f = mel_filters();
        assert!((f[0][1] - 0.024_862_59).abs() < 1e-6, "{}", f[0][1]);
        assert_eq!(f[0][0], 0.0);
        assert!(f[79][199] > 0.0 && f[79][200] == 0.0);
    }

    /// Values of models/whisper/verify.py's numpy `log_mel` (the reference the ONNX model was
    /// checked with) on a 0.75 s sweep plus a weak 3.1 kHz tone, 100-frame window.
    #[test]
    fn matches_the_numpy_reference() {
        let audio: Vec<f32> = (0..12_000)
            .map(|i| {
                let i = i as f64;
                let sweep =
                    0.3 * (2.0 * std::f64::consts::PI * (300.0 + i * 0.02) * i / 16_000.0).sin();
                let tone = 0.05 * (2.0 * std::f64::consts::PI * 3100.0 * i / 16_000.0).sin();
                (sweep + tone) as f32
            })
            .collect();
        let frames = 100;
        let mel = LogMel::new().compute(&audio, frames);
        let reference = [
            (6, 0, 1.211_318_4),
            (50, 0, 0.199_947_83),
            (70, 0, 0.040_064_335),
            (9, 10, 1.313_533),
            (13, 37, 1.316_620_5),
            (17, 60, 1.316_359_8),
            (20, 74, 1.297_091_2),
            (50, 74, -0.612_339_5),
            (70, 75, -0.023_227_692),
            (50, 90, -0.658_956_5),
        ];
        for (m, t, want) in reference {
            let got = mel[m * frames + t];
            assert!(
                (got - want).abs() < 2e-3,
                "mel[{m}][{t}] = {got}, numpy {want}"
            );
        }
    }

    #[test]
    fn a_tone_lights_its_mel_bin_and_silence_is_the_floor() {
        let audio: Vec<f32> = (0..16_000)
            .map(|i| 0.5 * (2.0 * std::f32::consts::PI * 1000.0 * i as f32 / 16_000.0).sin())
            .collect();
        let frames = 200;
        let mel = LogMel::new().compute(&audio, frames);
        assert_eq!(mel.len(), N_MELS * frames);
        // frame 50 (inside the tone): the loudest bin is the one covering 1 kHz (26)
        let mel = &mel;
        let col = |t: usize| (0..N_MELS).map(move |m| mel[m * frames + t]);
        let loudest = col(50)
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(m, _)| m);
        assert_eq!(loudest, Some(26));
        // frame 150 (zero padding): everything at the floor, max − 8 → (max − 8 + 4) / 4
        let max = mel.iter().copied().fold(f32::MIN, f32::max);
        assert!(col(150).all(|x| (x - (max - 2.0)).abs() < 1e-5));
    }
}
