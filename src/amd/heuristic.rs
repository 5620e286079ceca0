//! Heuristic mode: Asterisk app_amd's state machine, step for step, with its parameters and
//! defaults (design.md). Words are runs of speech frames of at least `min_word_length` after at
//! least `between_words_silence` of silence; the verdict comes from initial silence, the length
//! of the greeting, the number and length of words, and the silence after the greeting.
//!
//! Faithful to Asterisk also where Asterisk is weak: the call starts "in a word", so speech
//! with no silence before it is not counted as a word until a pause; `maximum_number_of_words`
//! fires on *reaching* the count. Speech and silence come from a [`SpeechSource`]: by default
//! Asterisk's fixed level threshold, or the Silero VAD.

use serde::{Deserialize, Serialize};

use super::energy::FixedThreshold;
use super::{Cause, Decision, Detector, SpeechSource, Verdict, FRAME_MS};

/// app_amd's parameters, in milliseconds except the word count and the threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HeuristicConfig {
    pub initial_silence: u32,
    pub greeting: u32,
    pub after_greeting_silence: u32,
    pub total_analysis_time: u32,
    pub min_word_length: u32,
    pub between_words_silence: u32,
    pub maximum_number_of_words: u32,
    pub maximum_word_length: u32,
    /// Mean absolute sample value under which a frame is silence (0–32767).
    pub silence_threshold: u32,
}

impl Default for HeuristicConfig {
    /// Asterisk's defaults.
    fn default() -> Self {
        HeuristicConfig {
            initial_silence: 2500,
            greeting: 1500,
            after_greeting_silence: 800,
            total_analysis_time: 5000,
            min_word_length: 100,
            between_words_silence: 50,
            maximum_number_of_words: 2,
            maximum_word_length: 5000,
            silence_threshold: 256,
        }
    }
}

impl HeuristicConfig {
    /// Checks each value; the error names the field.
    pub fn validate(&self) -> Result<(), String> {
        let ms = [
            ("initial_silence", self.initial_silence),
            ("greeting", self.greeting),
            ("after_greeting_silence", self.after_greeting_silence),
            ("total_analysis_time", self.total_analysis_time),
            ("min_word_length", self.min_word_length),
            ("between_words_silence", self.between_words_silence),
            ("maximum_word_length", self.maximum_word_length),
        ];
        for (name, v) in ms {
            if !(1..=60_000).contains(&v) {
                return Err(format!("amd.{name} = {v}: expected 1 to 60000 ms"));
            }
        }
        if !(1..=100).contains(&self.maximum_number_of_words) {
            return Err(format!(
                "amd.maximum_number_of_words = {}: expected 1 to 100",
                self.maximum_number_of_words
            ));
        }
        if self.silence_threshold > 32767 {
            return Err(format!(
                "amd.silence_threshold = {}: expected 0 to 32767",
                self.silence_threshold
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WordState {
    InWord,
    InSilence,
}

/// app_amd as a sans-IO detector.
pub struct Heuristic {
    cfg: HeuristicConfig,
    speech: Box<dyn SpeechSource>,
    /// Continuous silence so far (Asterisk's `dspsilence`).
    dsp_silence: u32,
    in_initial_silence: bool,
    in_greeting: bool,
    voice_duration: u32,
    silence_duration: u32,
    total_time: u32,
    words: u32,
    state: WordState,
    consecutive_voice: u32,
    decided: bool,
}

impl Heuristic {
    /// Speech from Asterisk's level threshold.
    pub fn new(cfg: HeuristicConfig) -> Self {
        let speech = Box::new(FixedThreshold::new(cfg.silence_threshold));
        Self::with_speech(cfg, speech)
    }

    /// Speech from any source (e.g. the Silero VAD).
    pub fn with_speech(cfg: HeuristicConfig, speech: Box<dyn SpeechSource>) -> Self {
        Heuristic {
            cfg,
            speech,
            dsp_silence: 0,
            in_initial_silence: true,
            in_greeting: false,
            voice_duration: 0,
            silence_duration: 0,
            total_time: 0,
            words: 0,
            state: WordState::InWord,
            consecutive_voice: 0,
            decided: false,
        }
    }

    /// Words counted so far.
    pub fn words(&self) -> u32 {
        self.words
    }

    fn decide(&mut self, verdict: Verdict, cause: Cause, at_ms: u64) -> Option<Decision> {
        self.decided = true;
        let confidence = match cause {
            Cause::Toolong => 0.0,
            _ => 0.7,
        };
        Some(Decision {
            verdict,
            cause,
            confidence,
            at_ms,
        })
    }
}

impl Detector for Heuristic {
    fn push(&mut self, frame: &[i16], at_ms: u64) -> Option<Decision> {
        if self.decided {
            return None;
        }
        let len = FRAME_MS as u32;
        let end = at_ms + FRAME_MS;
        let c = self.cfg;
        self.total_time += len;
        if self.total_time >= c.total_analysis_time {
            return self.decide(Verdict::Unknown, Cause::Toolong, end);
        }
        if self.speech.is_speech(frame) {
            self.dsp_silence = 0;
            self.consecutive_voice += len;
            self.voice_duration += len;
            if self.consecutive_voice >= c.min_word_length && self.state == WordState::InSilence {
                self.words += 1;
                self.state = WordState::InWord;
            }
            if self.consecutive_voice >= c.maximum_word_length {
                return self.decide(Verdict::Machine, Cause::Maxwordlength, end);
            }
            if self.words >= c.maximum_number_of_words {
                return self.decide(Verdict::Machine, Cause::Maxwords, end);
            }
            if self.in_greeting && self.voice_duration >= c.greeting {
                return self.decide(Verdict::Machine, Cause::Longgreeting, end);
            }
            if self.voice_duration >= c.min_word_length {
                self.silence_duration = 0;
            }
            if self.consecutive_voice >= c.min_word_length && !self.in_greeting {
                self.in_initial_silence = false;
                self.in_greeting = true;
            }
        } else {
            self.dsp_silence += len;
            self.silence_duration = self.dsp_silence;
            if self.silence_duration >= c.between_words_silence {
                self.state = WordState::InSilence;
                self.consecutive_voice = 0;
            }
            if self.in_initial_silence && self.silence_duration >= c.initial_silence {
                return self.decide(Verdict::Machine, Cause::Initialsilence, end);
            }
            if self.silence_duration >= c.after_greeting_silence && self.in_greeting {
                return self.decide(Verdict::Human, Cause::Human, end);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOUD: [i16; 160] = [2000; 160];
    const QUIET: [i16; 160] = [0; 160];

    /// Feeds (speech?, ms) runs; returns the first decision.
    fn run(cfg: HeuristicConfig, runs: &[(bool, u64)]) -> Option<Decision> {
        let mut h = Heuristic::new(cfg);
        let mut t = 0;
        for &(speech, ms) in runs {
            for _ in 0..ms / FRAME_MS {
                let f = if speech { &LOUD } else { &QUIET };
                if let Some(d) = h.push(f, t) {
                    return Some(d);
                }
                t += FRAME_MS;
            }
        }
        None
    }

    #[test]
    fn hello_then_silence_is_human_after_the_greeting_silence() {
        let d = run(
            HeuristicConfig::default(),
            &[(false, 500), (true, 400), (false, 2000)],
        )
        .expect("decision");
        assert_eq!((d.verdict, d.cause), (Verdict::Human, Cause::Human));
        // 500 + 400 + 800 ms of silence.
        assert_eq!(d.at_ms, 1700);
    }

    #[test]
    fn silence_only_is_initial_silence() {
        let d = run(HeuristicConfig::default(), &[(false, 4000)]).expect("decision");
        assert_eq!(
            (d.verdict, d.cause, d.at_ms),
            (Verdict::Machine, Cause::Initialsilence, 2500)
        );
    }

    #[test]
    fn two_words_reach_the_word_limit() {
        // Asterisk's known weakness: "good afternoon" is two words, and two is the limit.
        let d = run(
            HeuristicConfig::default(),
            &[
                (false, 300),
                (true, 300),
                (false, 200),
                (true, 300),
                (false, 2000),
            ],
        )
        .expect("decision");
        assert_eq!((d.verdict, d.cause), (Verdict::Machine, Cause::Maxwords));
        assert_eq!(d.at_ms, 300 + 300 + 200 + 100);
    }

    #[test]
    fn a_long_greeting_is_a_machine() {
        let cfg = HeuristicConfig {
            maximum_number_of_words: 100,
            ..HeuristicConfig::default()
        };
        let d = run(cfg, &[(false, 300), (true, 3000)]).expect("decision");
        assert_eq!(
            (d.verdict, d.cause),
            (Verdict::Machine, Cause::Longgreeting)
        );
        assert_eq!(d.at_ms, 300 + 1500);
    }

    #[test]
    fn one_endless_word_is_max_word_length() {
        let cfg = HeuristicConfig {
            greeting: 20_000,
            total_analysis_time: 20_000,
            maximum_word_length: 3000,
            ..HeuristicConfig::default()
        };
        let d = run(cfg, &[(false, 100), (true, 5000)]).expect("decision");
        assert_eq!(
            (d.verdict, d.cause, d.at_ms),
            (Verdict::Machine, Cause::Maxwordlength, 3100)
        );
    }

    #[test]
    fn undecided_until_the_analysis_time_is_toolong() {
        let cfg = HeuristicConfig {
            initial_silence: 10_000,
            ..HeuristicConfig::default()
        };
        let d = run(cfg, &[(false, 6000)]).expect("decision");
        assert_eq!(
            (d.verdict, d.cause, d.at_ms),
            (Verdict::Unknown, Cause::Toolong, 5000)
        );
    }

    #[test]
    fn defaults_validate_and_bad_values_name_the_field() {
        assert!(HeuristicConfig::default().validate().is_ok());
        let bad = HeuristicConfig {
            greeting: 0,
            ..HeuristicConfig::default()
        };
        assert!(bad.validate().unwrap_err().contains("amd.greeting"));
        let bad = HeuristicConfig {
            silence_threshold: 40_000,
            ..HeuristicConfig::default()
        };
        assert!(bad.validate().unwrap_err().contains("silence_threshold"));
    }
}
