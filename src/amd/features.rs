//! Log-mel features of 8 kHz audio, streamed: every 10 ms, the log energies of [`MEL_BANDS`]
//! triangular mel bands (100–3800 Hz, HTK mel scale) of a Hann-windowed 32 ms spectrum.
//!
//! The ML classifier is trained on exactly these numbers: `outdial amd-features` writes them for
//! a corpus with this code, so training and the live call can never disagree on the front end.

use std::sync::Arc;

use realfft::{RealFftPlanner, RealToComplex};

/// Samples per analysis window (32 ms).
pub const WINDOW: usize = 256;
/// Samples between feature frames (10 ms).
pub const HOP: usize = 80;
/// Mel bands per feature frame.
pub const MEL_BANDS: usize = 32;
/// Feature frames per 20 ms audio frame.
pub const FRAMES_PER_AUDIO_FRAME: usize = 2;
const LOW_HZ: f32 = 100.0;
const HIGH_HZ: f32 = 3800.0;
const RATE: f32 = 8000.0;
/// Added to band energies before the log: about -100 dB relative to a full-scale sine.
const FLOOR: f32 = 1e-10;

fn hz_to_mel(hz: f32) -> f32 {
    2595.0 * (1.0 + hz / 700.0).log10()
}

fn mel_to_hz(mel: f32) -> f32 {
    700.0 * (10f32.powf(mel / 2595.0) - 1.0)
}

/// Triangular filters as (first bin, weights).
fn mel_filters() -> Vec<(usize, Vec<f32>)> {
    let bins = WINDOW / 2 + 1;
    let bin_hz = RATE / WINDOW as f32;
    let (lo, hi) = (hz_to_mel(LOW_HZ), hz_to_mel(HIGH_HZ));
    let edges: Vec<f32> = (0..MEL_BANDS + 2)
        .map(|i| mel_to_hz(lo + (hi - lo) * i as f32 / (MEL_BANDS + 1) as f32))
        .collect();
    (0..MEL_BANDS)
        .map(|b| {
            let (left, centre, right) = (edges[b], edges[b + 1], edges[b + 2]);
            let mut first = None;
            let mut weights = Vec::new();
            for k in 0..bins {
                let f = k as f32 * bin_hz;
                let w = if f > left && f < centre {
                    (f - left) / (centre - left)
                } else if f >= centre && f < right {
                    (right - f) / (right - centre)
                } else {
                    0.0
                };
                if w > 0.0 {
                    first.get_or_insert(k);
                    weights.push(w);
                } else if first.is_some() {
                    break;
                }
            }
            (first.unwrap_or(0), weights)
        })
        .collect()
}

/// Streaming log-mel front end of one call.
pub struct LogMel {
    fft: Arc<dyn RealToComplex<f32>>,
    window: Vec<f32>,
    filters: Vec<(usize, Vec<f32>)>,
    /// The last [`WINDOW`] samples (scaled to ±1), a ring whose oldest sample is at `pos`.
    history: Vec<f32>,
    pos: usize,
    since_hop: usize,
    scratch_in: Vec<f32>,
    spectrum: Vec<realfft::num_complex::Complex<f32>>,
    scratch: Vec<realfft::num_complex::Complex<f32>>,
    power: Vec<f32>,
}

impl Default for LogMel {
    fn default() -> Self {
        Self::new()
    }
}

impl LogMel {
    pub fn new() -> Self {
        let mut planner = RealFftPlanner::<f32>::new();
        let fft = planner.plan_fft_forward(WINDOW);
        let spectrum = fft.make_output_vec();
        let scratch = fft.make_scratch_vec();
        let window = (0..WINDOW)
            .map(|i| {
                let x = std::f32::consts::PI * 2.0 * i as f32 / WINDOW as f32;
                0.5 - 0.5 * x.cos()
            })
            .collect();
        LogMel {
            fft,
            window,
            filters: mel_filters(),
            history: vec![0.0; WINDOW],
            pos: 0,
            since_hop: 0,
            scratch_in: vec![0.0; WINDOW],
            spectrum,
            scratch,
            power: vec![0.0; WINDOW / 2 + 1],
        }
    }

    /// Adds samples; appends one [`MEL_BANDS`]-long feature frame to `out` per 10 ms completed.
    pub fn push(&mut self, samples: &[i16], out: &mut Vec<f32>) {
        for &s in samples {
            self.history[self.pos] = s as f32 / 32768.0;
            self.pos = (self.pos + 1) % WINDOW;
            self.since_hop += 1;
            if self.since_hop == HOP {
                self.since_hop = 0;
                self.analyse(out);
            }
        }
    }

    fn analyse(&mut self, out: &mut Vec<f32>) {
        let (newer, older) = self.history.split_at(self.pos);
        for ((dst, &x), &w) in self
            .scratch_in
            .iter_mut()
            .zip(older.iter().chain(newer))
            .zip(&self.window)
        {
            *dst = x * w;
        }
        if self
            .fft
            .process_with_scratch(&mut self.scratch_in, &mut self.spectrum, &mut self.scratch)
            .is_err()
        {
            out.extend(std::iter::repeat_n(FLOOR.ln(), MEL_BANDS));
            return;
        }
        for (p, c) in self.power.iter_mut().zip(&self.spectrum) {
            *p = c.norm_sqr() / WINDOW as f32;
        }
        for (first, weights) in &self.filters {
            let e: f32 = weights
                .iter()
                .zip(&self.power[*first..])
                .map(|(w, p)| w * p)
                .sum();
            out.push((e + FLOOR).ln());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_band_has_weights_and_they_rise_in_frequency() {
        let f = mel_filters();
        assert_eq!(f.len(), MEL_BANDS);
        let mut last = 0;
        for (first, w) in &f {
            assert!(!w.is_empty());
            assert!(*first >= last);
            last = *first;
        }
    }

    #[test]
    fn two_frames_per_20_ms_and_a_tone_lights_its_band() {
        let mut m = LogMel::new();
        let mut out = Vec::new();
        let tone: Vec<i16> = (0..1600)
            .map(|i| {
                (8000.0 * (2.0 * std::f64::consts::PI * 1000.0 * i as f64 / 8000.0).sin()) as i16
            })
            .collect();
        for chunk in tone.chunks(160) {
            m.push(chunk, &mut out);
        }
        assert_eq!(out.len(), 20 * MEL_BANDS);
        let last = &out[19 * MEL_BANDS..];
        let (best, _) =
            last.iter()
                .enumerate()
                .fold((0, f32::MIN), |b, (i, &v)| if v > b.1 { (i, v) } else { b });
        let centre_hz = |b: usize| {
            let (lo, hi) = (hz_to_mel(LOW_HZ), hz_to_mel(HIGH_HZ));
            mel_to_hz(lo + (hi - lo) * (b + 1) as f32 / (MEL_BANDS + 1) as f32)
        };
        assert!((centre_hz(best) - 1000.0).abs() < 120.0, "band {best}");
        // Silence is at the floor.
        let mut quiet = Vec::new();
        let mut m = LogMel::new();
        m.push(&[0; 480], &mut quiet);
        assert!(quiet.iter().all(|&v| (v - FLOOR.ln()).abs() < 1e-3));
    }
}
