//! ML mode: a small classifier (ONNX, trained here; models/amd/) that reads how the first
//! seconds of the answered call are shaped in time and spectrum, and decides as soon as it is
//! confident.
//!
//! Every 20 ms frame updates a [`Tracker`]: speech or silence from the adaptive energy detector,
//! the run and pause structure (segments, pauses, the silence now running), level against the
//! noise floor, and spectral shape from the log-mel front end ([`super::features`]). From 300 ms
//! after speech starts, every 100 ms the tracker's [`N_FEATURES`] numbers go through the model,
//! which returns P(machine). The verdict comes when P(machine) ≥ `machine_threshold` or
//! P(human) ≥ `human_threshold`; by `max_decision_ms` after speech began it goes to the likelier
//! side. No speech at all within `no_speech_ms` is [`super::Cause::Initialsilence`].
//!
//! `outdial amd-features` writes these same vectors for a corpus: the training data is made by
//! this code, so the live call and training can never compute features differently.

use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::energy::{level_db, AdaptiveEnergy};
use super::features::{LogMel, MEL_BANDS};
use super::{Cause, Decision, Detector, SpeechSource, Verdict, FRAME_MS};

/// Numbers per feature vector.
pub const N_FEATURES: usize = 20;
/// Names of the features, in order (the CSV header of `amd-features`).
pub const FEATURE_NAMES: [&str; N_FEATURES] = [
    "since_onset_s",
    "speech_s",
    "speech_ratio",
    "segments",
    "first_segment_s",
    "longest_segment_s",
    "current_segment_s",
    "current_silence_s",
    "longest_pause_s",
    "pauses",
    "lead_s",
    "snr_db",
    "level_std_db",
    "tilt_mean",
    "tilt_std",
    "flux_mean",
    "peak_rate",
    "recent_level_rel_db",
    "recent_speech_s",
    "segment_rate",
];
/// A silence at least this long separates two segments.
const PAUSE_MS: u64 = 200;
/// Speech must last this long to mark the onset.
const ONSET_MS: u64 = 60;
/// First model run after the onset, and the spacing of runs.
pub const FIRST_STEP_MS: u64 = 300;
pub const STEP_MS: u64 = 100;

/// The decision rule's parameters (shipped beside the model, chosen on the validation split).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MlConfig {
    pub machine_threshold: f32,
    pub human_threshold: f32,
    /// Earliest verdict, after speech began.
    pub min_decision_ms: u64,
    /// By then the likelier side wins.
    pub max_decision_ms: u64,
    /// No speech within this time from the start: no-speech verdict.
    pub no_speech_ms: u64,
}

/// The model and its decision rule, as committed under models/amd/.
const MODEL_BYTES: &[u8] = include_bytes!("../../models/amd/amd_classifier.onnx");
const MODEL_CONFIG: &str = include_str!("../../models/amd/amd_classifier.json");

#[derive(Debug, Clone, Deserialize)]
struct ModelCard {
    features: Vec<String>,
    decision: MlConfig,
}

/// The shipped decision rule.
pub fn shipped_config() -> Result<MlConfig, String> {
    let card: ModelCard = serde_json::from_str(MODEL_CONFIG)
        .map_err(|e| format!("models/amd/amd_classifier.json: {e}"))?;
    if card.features != FEATURE_NAMES {
        return Err(format!(
            "models/amd/amd_classifier.json was trained on features {:?}, this build computes {:?}",
            card.features, FEATURE_NAMES
        ));
    }
    Ok(card.decision)
}

static SESSION: OnceLock<Result<Arc<Mutex<ort::session::Session>>, String>> = OnceLock::new();

fn shared_session() -> Result<Arc<Mutex<ort::session::Session>>, String> {
    SESSION
        .get_or_init(|| {
            crate::onnx::session_from_memory(MODEL_BYTES, "the AMD classifier")
                .map(|s| Arc::new(Mutex::new(s)))
        })
        .clone()
}

/// The classifier, shared by every call of the process.
#[derive(Clone)]
pub struct Classifier {
    session: Arc<Mutex<ort::session::Session>>,
}

impl Classifier {
    /// Loads ONNX Runtime and the built-in model (once per process).
    pub fn load() -> Result<Self, String> {
        Ok(Classifier {
            session: shared_session()?,
        })
    }

    /// P(machine) for each row of `rows` (each [`N_FEATURES`] long).
    pub fn predict(&self, rows: &[f32]) -> Result<Vec<f32>, String> {
        use ort::value::TensorRef;
        let n = rows.len() / N_FEATURES;
        if n == 0 || rows.len() != n * N_FEATURES {
            return Err(format!(
                "feature rows must be a multiple of {N_FEATURES} long"
            ));
        }
        let err = |e: ort::Error| e.to_string();
        let input = TensorRef::from_array_view(([n, N_FEATURES], rows)).map_err(err)?;
        let mut session = self.session.lock();
        let outputs = session
            .run(ort::inputs!["features" => input])
            .map_err(err)?;
        let (_, probs) = outputs["probabilities"]
            .try_extract_tensor::<f32>()
            .map_err(err)?;
        if probs.len() != n * 2 {
            return Err(format!(
                "the AMD classifier returned {} probabilities for {n} rows",
                probs.len()
            ));
        }
        Ok(probs.chunks(2).map(|p| p[1]).collect())
    }
}

/// Running mean and variance (Welford).
#[derive(Debug, Clone, Copy, Default)]
struct Stat {
    n: u64,
    mean: f64,
    m2: f64,
}

impl Stat {
    fn add(&mut self, x: f64) {
        self.n += 1;
        let d = x - self.mean;
        self.mean += d / self.n as f64;
        self.m2 += d * (x - self.mean);
    }

    fn mean(&self) -> f32 {
        self.mean as f32
    }

    fn std(&self) -> f32 {
        if self.n < 2 {
            0.0
        } else {
            (self.m2 / (self.n - 1) as f64).sqrt() as f32
        }
    }
}

/// The time and spectral shape of the call so far, one 20 ms frame at a time.
pub struct Tracker {
    speech: AdaptiveEnergy,
    mel: LogMel,
    mel_out: Vec<f32>,
    prev_mel: Option<Vec<f32>>,
    /// Audio time at the end of the last frame.
    now_ms: u64,
    /// Speech frames in a row (before the onset is set).
    candidate_ms: u64,
    onset_ms: Option<u64>,
    speech_ms: u64,
    in_speech: bool,
    run_ms: u64,
    segments: u32,
    first_segment_ms: Option<u64>,
    longest_segment_ms: u64,
    current_segment_ms: u64,
    longest_pause_ms: u64,
    pauses: u32,
    level: Stat,
    tilt: Stat,
    flux: Stat,
    peaks: u32,
    /// Levels of the last two speech frames, for peak picking.
    last_levels: [f32; 2],
    /// Speech flags and levels of the last second (50 frames), a ring.
    recent: [(bool, f32); 50],
    recent_pos: usize,
}

impl Default for Tracker {
    fn default() -> Self {
        Self::new()
    }
}

impl Tracker {
    pub fn new() -> Self {
        Tracker {
            speech: AdaptiveEnergy::default(),
            mel: LogMel::new(),
            mel_out: Vec::with_capacity(2 * MEL_BANDS),
            prev_mel: None,
            now_ms: 0,
            candidate_ms: 0,
            onset_ms: None,
            speech_ms: 0,
            in_speech: false,
            run_ms: 0,
            segments: 0,
            first_segment_ms: None,
            longest_segment_ms: 0,
            current_segment_ms: 0,
            longest_pause_ms: 0,
            pauses: 0,
            level: Stat::default(),
            tilt: Stat::default(),
            flux: Stat::default(),
            peaks: 0,
            last_levels: [-100.0; 2],
            recent: [(false, -100.0); 50],
            recent_pos: 0,
        }
    }

    /// When speech began (audio time), once it has.
    pub fn onset_ms(&self) -> Option<u64> {
        self.onset_ms
    }

    /// Audio time at the end of the frames seen.
    pub fn now_ms(&self) -> u64 {
        self.now_ms
    }

    /// Takes the next frame, which starts at `at_ms`.
    pub fn push(&mut self, frame: &[i16], at_ms: u64) {
        self.now_ms = at_ms + FRAME_MS;
        let speech = self.speech.is_speech(frame);
        let db = level_db(frame);
        self.mel_out.clear();
        self.mel.push(frame, &mut self.mel_out);
        self.recent[self.recent_pos] = (speech, db);
        self.recent_pos = (self.recent_pos + 1) % self.recent.len();

        if self.onset_ms.is_none() {
            if speech {
                self.candidate_ms += FRAME_MS;
                if self.candidate_ms >= ONSET_MS {
                    self.onset_ms = Some(self.now_ms - self.candidate_ms);
                    self.in_speech = true;
                    self.run_ms = self.candidate_ms;
                    self.speech_ms = self.candidate_ms;
                    self.segments = 1;
                    self.current_segment_ms = self.candidate_ms;
                }
            } else {
                self.candidate_ms = 0;
            }
            return;
        }

        if speech {
            self.speech_ms += FRAME_MS;
            if self.in_speech {
                self.run_ms += FRAME_MS;
                self.current_segment_ms += FRAME_MS;
            } else {
                // A gap shorter than a pause belongs to the segment it interrupts.
                if self.run_ms >= PAUSE_MS {
                    self.pauses += 1;
                    self.longest_pause_ms = self.longest_pause_ms.max(self.run_ms);
                    self.segments += 1;
                    self.current_segment_ms = FRAME_MS;
                } else {
                    self.current_segment_ms += self.run_ms + FRAME_MS;
                }
                self.in_speech = true;
                self.run_ms = FRAME_MS;
            }
            self.longest_segment_ms = self.longest_segment_ms.max(self.current_segment_ms);
            self.speech_frame_stats(db);
        } else if self.in_speech {
            self.in_speech = false;
            self.run_ms = FRAME_MS;
        } else {
            self.run_ms += FRAME_MS;
            if self.run_ms == PAUSE_MS && self.first_segment_ms.is_none() {
                self.first_segment_ms = Some(self.current_segment_ms);
            }
        }
    }

    fn speech_frame_stats(&mut self, db: f32) {
        self.level.add(db as f64);
        let bands = MEL_BANDS;
        for f in self.mel_out.chunks(bands) {
            let low: f32 = f[..bands / 4].iter().sum::<f32>() / (bands / 4) as f32;
            let high: f32 = f[3 * bands / 4..].iter().sum::<f32>() / (bands / 4) as f32;
            self.tilt.add((high - low) as f64);
            if let Some(prev) = &self.prev_mel {
                let d: f32 =
                    f.iter().zip(prev).map(|(a, b)| (a - b).abs()).sum::<f32>() / bands as f32;
                self.flux.add(d as f64);
            }
            match &mut self.prev_mel {
                Some(p) => p.copy_from_slice(f),
                None => self.prev_mel = Some(f.to_vec()),
            }
        }
        // A level peak: the middle of three speech frames, 3 dB over both neighbours.
        let [before, middle] = self.last_levels;
        if middle > before + 3.0 && middle > db + 3.0 {
            self.peaks += 1;
        }
        self.last_levels = [middle, db];
    }

    /// The feature vector now (see [`FEATURE_NAMES`]).
    pub fn features(&self) -> [f32; N_FEATURES] {
        let s = |ms: u64| ms as f32 / 1000.0;
        let onset = self.onset_ms.unwrap_or(self.now_ms);
        let since = self.now_ms.saturating_sub(onset);
        let current_silence = if self.in_speech || self.onset_ms.is_none() {
            0
        } else {
            self.run_ms
        };
        let floor = self.speech.floor_db().unwrap_or(-100.0);
        let (recent_speech, recent_level) = {
            let n = (self.now_ms / FRAME_MS).min(self.recent.len() as u64) as usize;
            let mut speech = 0u64;
            let mut level = 0.0f32;
            for k in 0..n {
                let idx = (self.recent_pos + self.recent.len() - 1 - k) % self.recent.len();
                let (sp, db) = self.recent[idx];
                if sp {
                    speech += FRAME_MS;
                }
                if k < 5 {
                    level += db / 5.0;
                }
            }
            (speech, level)
        };
        let speech_s = s(self.speech_ms).max(0.02);
        [
            s(since),
            s(self.speech_ms),
            if since > 0 {
                self.speech_ms as f32 / since as f32
            } else {
                0.0
            },
            self.segments as f32,
            s(self.first_segment_ms.unwrap_or(self.current_segment_ms)),
            s(self.longest_segment_ms),
            s(if self.in_speech || current_silence < PAUSE_MS {
                self.current_segment_ms
            } else {
                0
            }),
            s(current_silence),
            s(self.longest_pause_ms.max(if current_silence >= PAUSE_MS {
                current_silence
            } else {
                0
            })),
            self.pauses as f32,
            s(onset),
            self.level.mean() - floor,
            self.level.std(),
            self.tilt.mean(),
            self.tilt.std(),
            self.flux.mean(),
            self.peaks as f32 / speech_s,
            recent_level - self.level.mean(),
            s(recent_speech),
            self.segments as f32 / s(since).max(0.3),
        ]
    }
}

/// The ML detector of one call.
pub struct MlDetector {
    classifier: Classifier,
    config: MlConfig,
    tracker: Tracker,
    next_step_ms: Option<u64>,
    last_p: Option<f32>,
    decided: bool,
}

impl MlDetector {
    /// With the shipped model and decision rule.
    pub fn new() -> Result<Self, String> {
        Ok(Self::with(Classifier::load()?, shipped_config()?))
    }

    pub fn with(classifier: Classifier, config: MlConfig) -> Self {
        MlDetector {
            classifier,
            config,
            tracker: Tracker::new(),
            next_step_ms: None,
            last_p: None,
            decided: false,
        }
    }

    /// The model's last P(machine).
    pub fn last_probability(&self) -> Option<f32> {
        self.last_p
    }

    fn decide(&mut self, verdict: Verdict, cause: Cause, confidence: f32) -> Option<Decision> {
        self.decided = true;
        Some(Decision {
            verdict,
            cause,
            confidence,
            at_ms: self.tracker.now_ms(),
        })
    }
}

impl Detector for MlDetector {
    fn push(&mut self, frame: &[i16], at_ms: u64) -> Option<Decision> {
        if self.decided {
            return None;
        }
        self.tracker.push(frame, at_ms);
        let now = self.tracker.now_ms();
        let Some(onset) = self.tracker.onset_ms() else {
            if now >= self.config.no_speech_ms {
                return self.decide(Verdict::Unknown, Cause::Initialsilence, 0.9);
            }
            return None;
        };
        let due = *self.next_step_ms.get_or_insert(onset + FIRST_STEP_MS);
        if now < due {
            return None;
        }
        self.next_step_ms = Some(due + STEP_MS);
        let p = match self.classifier.predict(&self.tracker.features()) {
            Ok(p) => p.first().copied().unwrap_or(0.5),
            Err(e) => {
                tracing::warn!("AMD classifier failed: {e}");
                return self.decide(Verdict::Unknown, Cause::Toolong, 0.0);
            }
        };
        self.last_p = Some(p);
        let since = now - onset;
        if since >= self.config.min_decision_ms {
            if p >= self.config.machine_threshold {
                return self.decide(Verdict::Machine, Cause::Model, p);
            }
            if 1.0 - p >= self.config.human_threshold {
                return self.decide(Verdict::Human, Cause::Model, 1.0 - p);
            }
        }
        if since >= self.config.max_decision_ms {
            return if p >= 0.5 {
                self.decide(Verdict::Machine, Cause::Model, p)
            } else {
                self.decide(Verdict::Human, Cause::Model, 1.0 - p)
            };
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn speech_like(n: usize, seed: u64) -> Vec<i16> {
        // Amplitude-modulated noise: syllables at 4 Hz.
        let mut x = seed | 1;
        (0..n)
            .map(|i| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let noise = (x % 20000) as f64 - 10000.0;
                let env =
                    0.55 + 0.45 * (2.0 * std::f64::consts::PI * 4.0 * i as f64 / 8000.0).sin();
                (noise * env) as i16
            })
            .collect()
    }

    /// A quiet line: noise about 60 dB below full scale.
    fn hiss(n: usize) -> Vec<i16> {
        speech_like(n, 99).iter().map(|s| s / 300).collect()
    }

    fn feed(t: &mut Tracker, samples: &[i16], clock: &mut u64) {
        for f in samples.chunks(160) {
            t.push(f, *clock);
            *clock += FRAME_MS;
        }
    }

    #[test]
    fn tracker_measures_segments_pauses_and_the_running_silence() {
        let mut t = Tracker::new();
        let mut clock = 0;
        feed(&mut t, &hiss(4000), &mut clock); // 500 ms lead
        feed(&mut t, &speech_like(4800, 7), &mut clock); // 600 ms
        feed(&mut t, &hiss(4000), &mut clock); // 500 ms pause
        feed(&mut t, &speech_like(3200, 9), &mut clock); // 400 ms
        feed(&mut t, &hiss(8000), &mut clock); // 1 s silence
        let f = t.features();
        let get = |name: &str| f[FEATURE_NAMES.iter().position(|n| *n == name).unwrap()];
        assert_eq!(t.onset_ms(), Some(500));
        assert!((get("lead_s") - 0.5).abs() < 0.03, "{f:?}");
        assert_eq!(get("segments"), 2.0, "{f:?}");
        assert_eq!(get("pauses"), 1.0, "{f:?}");
        assert!((get("current_silence_s") - 1.0).abs() < 0.07, "{f:?}");
        assert!((get("first_segment_s") - 0.6).abs() < 0.07, "{f:?}");
        assert!((get("speech_s") - 1.0).abs() < 0.1, "{f:?}");
        assert!((get("since_onset_s") - 2.5).abs() < 0.03, "{f:?}");
        assert!(get("snr_db") > 20.0, "{f:?}");
        assert!(f.iter().all(|v| v.is_finite()));
    }

    #[test]
    fn silence_only_gives_finite_zero_features() {
        let mut t = Tracker::new();
        let mut clock = 0;
        feed(&mut t, &[0; 16000], &mut clock);
        assert_eq!(t.onset_ms(), None);
        assert!(t.features().iter().all(|v| v.is_finite()));
    }

    #[test]
    fn the_shipped_card_matches_this_build() {
        let c = shipped_config().expect("card");
        assert!(c.machine_threshold > 0.5 && c.machine_threshold <= 1.0);
        assert!(c.human_threshold > 0.5 && c.human_threshold <= 1.0);
        assert!(c.min_decision_ms <= c.max_decision_ms);
    }
}
