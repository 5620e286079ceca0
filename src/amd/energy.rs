//! Speech or silence from a frame's level: Asterisk's fixed threshold, and an adaptive one that
//! follows the line's noise floor.

use super::SpeechSource;

/// Asterisk's rule (`ast_dsp_silence`): a frame is silence when its mean absolute sample value
/// is below `threshold` (0–32767; app_amd's default is 256).
#[derive(Debug, Clone)]
pub struct FixedThreshold {
    pub threshold: u32,
}

impl FixedThreshold {
    pub fn new(threshold: u32) -> Self {
        FixedThreshold { threshold }
    }
}

/// Mean absolute sample value of a frame.
pub fn mean_abs(frame: &[i16]) -> u32 {
    if frame.is_empty() {
        return 0;
    }
    let sum: u64 = frame
        .iter()
        .map(|&s| (s as i32).unsigned_abs() as u64)
        .sum();
    (sum / frame.len() as u64) as u32
}

/// Frame level in dB relative to a full-scale square wave (mean square), floored at -100.
pub fn level_db(frame: &[i16]) -> f32 {
    if frame.is_empty() {
        return -100.0;
    }
    let ms: f64 = frame
        .iter()
        .map(|&s| {
            let x = s as f64 / 32768.0;
            x * x
        })
        .sum::<f64>()
        / frame.len() as f64;
    (10.0 * (ms + 1e-10).log10()).max(-100.0) as f32
}

impl SpeechSource for FixedThreshold {
    fn is_speech(&mut self, frame: &[i16]) -> bool {
        mean_abs(frame) >= self.threshold
    }
}

/// Frames quieter than this (about one LSB of noise) are digital silence.
const DIGITAL_SILENCE_DB: f32 = -85.0;

/// Speech when a frame stands clear of the line's noise floor: `margin_db` above the quietest
/// frame of the last [`FLOOR_WINDOW`] frames (1.5 s; minimum statistics: pauses between words
/// keep it at the noise), and above `min_db` in any case. Digital silence is ignored for the
/// floor. Hangover keeps short gaps inside words as speech.
#[derive(Debug, Clone)]
pub struct AdaptiveEnergy {
    levels: [f32; FLOOR_WINDOW],
    filled: usize,
    pos: usize,
    pub margin_db: f32,
    pub min_db: f32,
    hangover: u32,
    pub hangover_frames: u32,
}

/// Frames in the noise-floor window.
pub const FLOOR_WINDOW: usize = 75;

impl Default for AdaptiveEnergy {
    fn default() -> Self {
        AdaptiveEnergy {
            levels: [0.0; FLOOR_WINDOW],
            filled: 0,
            pos: 0,
            margin_db: 10.0,
            min_db: -52.0,
            hangover: 0,
            hangover_frames: 2,
        }
    }
}

impl AdaptiveEnergy {
    /// The current noise floor estimate, in dB.
    pub fn floor_db(&self) -> Option<f32> {
        self.levels[..self.filled].iter().copied().reduce(f32::min)
    }
}

impl SpeechSource for AdaptiveEnergy {
    fn is_speech(&mut self, frame: &[i16]) -> bool {
        let db = level_db(frame);
        // Digital silence (a lost or concealed packet, a muted line) says nothing about the
        // line's noise: it would drop the floor to nothing and make the noise itself read as
        // speech for as long as the window remembers it.
        if db < DIGITAL_SILENCE_DB {
            self.hangover = 0;
            return false;
        }
        self.levels[self.pos] = db;
        self.pos = (self.pos + 1) % FLOOR_WINDOW;
        self.filled = (self.filled + 1).min(FLOOR_WINDOW);
        let floor = self.floor_db().unwrap_or(db);
        let loud = db >= self.min_db && db >= floor + self.margin_db;
        if loud {
            self.hangover = self.hangover_frames;
            true
        } else if self.hangover > 0 {
            self.hangover -= 1;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(amp: f64, n: usize) -> Vec<i16> {
        (0..n)
            .map(|i| (amp * (i as f64 * 0.3).sin()) as i16)
            .collect()
    }

    #[test]
    fn fixed_threshold_is_the_mean_absolute_value() {
        let mut f = FixedThreshold::new(256);
        assert!(!f.is_speech(&[0; 160]));
        assert!(!f.is_speech(&[255; 160]));
        assert!(f.is_speech(&[256; 160]));
        assert!(f.is_speech(&[-300; 160]));
        assert!(f.is_speech(&tone(1000.0, 160)));
        assert_eq!(mean_abs(&[i16::MIN; 4]), 32768);
        assert_eq!(mean_abs(&[]), 0);
    }

    #[test]
    fn adaptive_follows_a_loud_noise_floor() {
        let mut a = AdaptiveEnergy::default();
        // Steady noise at about -35 dB: not speech once the floor is learned.
        let noise = tone(800.0, 160);
        let early: Vec<bool> = (0..100).map(|_| a.is_speech(&noise)).collect();
        assert!(early.iter().all(|s| !s), "{early:?}");
        // Speech 20 dB above it is, for as long as the window still holds a quieter frame.
        for _ in 0..FLOOR_WINDOW - 1 {
            assert!(a.is_speech(&tone(8000.0, 160)));
        }
        // Digital silence (a lost packet) changes nothing.
        assert!(!a.is_speech(&[0; 160]));
        assert!(a.floor_db().is_some_and(|f| f < -30.0));
    }

    #[test]
    fn quiet_frames_are_never_speech() {
        let mut a = AdaptiveEnergy::default();
        for _ in 0..10 {
            assert!(!a.is_speech(&[0; 160]));
        }
        // -60 dB is below min_db even against digital silence.
        assert!(!a.is_speech(&tone(45.0, 160)));
    }
}
