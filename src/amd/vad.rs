//! Silero VAD (v6, ONNX, through ONNX Runtime) as a [`SpeechSource`] for 20 ms frames.
//!
//! At 8 kHz the model takes 256 new samples (32 ms) plus the previous 32 as context, a recurrent
//! state `[2, 1, 128]` and the rate, and returns the speech probability. Frames are buffered until
//! 256 samples are there; each 20 ms frame reads the latest probability with hysteresis (speech
//! from 0.5, silence again below 0.35). One model session serves the whole process (behind a
//! mutex: a run takes ≈ 60 µs); the state is per call.

use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;

use super::SpeechSource;
use crate::onnx as runtime;

const WINDOW: usize = 256;
const CONTEXT: usize = 32;
const STATE: usize = 2 * 128;
const ON: f32 = 0.5;
const OFF: f32 = 0.35;

static SESSION: OnceLock<Result<Arc<Mutex<ort::session::Session>>, String>> = OnceLock::new();

fn shared_session() -> Result<Arc<Mutex<ort::session::Session>>, String> {
    SESSION
        .get_or_init(|| {
            runtime::session_from_file(&runtime::silero_model(), "Silero VAD model")
                .map(|s| Arc::new(Mutex::new(s)))
        })
        .clone()
}

/// Checks that the runtime and the model load (for a clear error before any call).
pub fn check_available() -> Result<(), String> {
    shared_session().map(|_| ())
}

/// One call's VAD.
pub struct SileroVad {
    session: Arc<Mutex<ort::session::Session>>,
    /// Context (32) followed by new samples, scaled to ±1.
    input: Vec<f32>,
    state: Vec<f32>,
    probability: f32,
    speaking: bool,
}

impl SileroVad {
    pub fn new() -> Result<Self, String> {
        Ok(SileroVad {
            session: shared_session()?,
            input: vec![0.0; CONTEXT],
            state: vec![0.0; STATE],
            probability: 0.0,
            speaking: false,
        })
    }

    /// The latest speech probability.
    pub fn probability(&self) -> f32 {
        self.probability
    }

    /// Adds samples; runs the model for every full 32 ms window. Returns the latest probability.
    pub fn feed(&mut self, frame: &[i16]) -> f32 {
        self.input.extend(frame.iter().map(|&s| s as f32 / 32768.0));
        while self.input.len() >= CONTEXT + WINDOW {
            match self.run_window() {
                Ok(p) => self.probability = p,
                Err(e) => {
                    tracing::warn!("silero VAD run failed: {e}");
                    self.probability = 0.0;
                }
            }
            self.input.drain(..WINDOW);
        }
        self.probability
    }

    fn run_window(&mut self) -> Result<f32, String> {
        use ort::value::TensorRef;
        let err = |e: ort::Error| e.to_string();
        let input = TensorRef::from_array_view((
            [1usize, CONTEXT + WINDOW],
            &self.input[..CONTEXT + WINDOW],
        ))
        .map_err(err)?;
        let state = TensorRef::from_array_view(([2usize, 1, 128], &self.state[..])).map_err(err)?;
        let sr = [8000i64];
        let sr = TensorRef::from_array_view(((), &sr[..])).map_err(err)?;
        let mut session = self.session.lock();
        let outputs = session
            .run(ort::inputs!["input" => input, "state" => state, "sr" => sr])
            .map_err(err)?;
        let (_, prob) = outputs["output"].try_extract_tensor::<f32>().map_err(err)?;
        let p = prob.first().copied().unwrap_or(0.0);
        let (_, new_state) = outputs["stateN"].try_extract_tensor::<f32>().map_err(err)?;
        if new_state.len() == STATE {
            self.state.copy_from_slice(new_state);
        }
        Ok(p)
    }
}

impl SpeechSource for SileroVad {
    fn is_speech(&mut self, frame: &[i16]) -> bool {
        let p = self.feed(frame);
        self.speaking = if self.speaking { p >= OFF } else { p >= ON };
        self.speaking
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::load_wav_8k_mono;
    use std::process::Command;

    fn speech_fraction(samples: &[i16]) -> f32 {
        let mut vad = SileroVad::new().expect("ONNX Runtime and the Silero model (make setup)");
        let frames: Vec<bool> = samples
            .chunks_exact(160)
            .map(|f| vad.is_speech(f))
            .collect();
        frames.iter().filter(|&&s| s).count() as f32 / frames.len().max(1) as f32
    }

    /// Needs `make setup` (the runtime and model in the cache), espeak-ng and sox.
    #[test]
    fn speech_is_speech_and_pink_noise_is_not() {
        let dir = tempfile::tempdir().expect("tmp");
        let speech = crate::amd::espeak_8k(
            "Hello, you have reached the voicemail of John Smith. Please leave a message.",
        );
        let noise = dir.path().join("noise.wav");
        let ok = Command::new("sox")
            .args(["-n", "-r", "8000", "-b", "16", "-c", "1"])
            .arg(&noise)
            .args(["synth", "3", "pinknoise", "vol", "0.2"])
            .status()
            .expect("sox");
        assert!(ok.success());
        let s = speech_fraction(&speech);
        let n = speech_fraction(&load_wav_8k_mono(&noise).expect("noise wav"));
        assert!(s > 0.5, "speech heard as speech in {s} of frames");
        assert!(n < 0.05, "pink noise heard as speech in {n} of frames");
    }
}
