//! One call's detection: the chosen mode's verdict detector, the media tone detectors (beep,
//! fax) and the end-of-greeting tracker, fed the same 20 ms frames.
//!
//! Order of things, per frame:
//! 1. Tones first. A fax tone before any verdict ends detection as `fax`. A beep counts once
//!    [`BEEP_QUIET_MS`] after its end have passed without speech (a recorder waits in silence
//!    after its beep; a steady vowel of a synthetic or sung greeting that the tone detector took
//!    for a beep is followed by more speech, and is dropped). A beep before any verdict is then
//!    a machine (cause BEEP) whose greeting just ended; a beep after a machine verdict ends the
//!    greeting (`machine_end_beep`). The beep detector keeps running after every verdict, so a
//!    late beep is still reported (as a [`AmdEvent::Beep`]).
//! 2. Until a verdict, the mode's detector. `auto` is the ML detector with the beep and fax
//!    rules above; the transcript will join it when text mode exists.
//! 3. After a machine verdict, the greeting ends at `greeting_end_silence_ms` of silence
//!    (`machine_end_silence`) or, failing that, `max_greeting_ms` after the verdict
//!    (`machine_end_other`).
//!
//! [`Amd::finish`] closes an undecided detection (the call or the file ended).

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::auto::AutoDetector;
use super::energy::AdaptiveEnergy;
use super::heuristic::{Heuristic, HeuristicConfig};
use super::ml::MlDetector;
use super::text::{PhraseHints, TextConfig, TextDetector};
use super::vad::SileroVad;
use super::{
    AmdEvent, AmdMode, AmdResult, AnsweredBy, AsteriskStatus, Cause, Decision, Detector,
    GreetingEnd, SpeechSource, Verdict, FRAME_MS,
};
use crate::asr::stream::{Exec, WhisperStream, Workers};
use crate::media::tones::{ToneDetectors, ToneEvent};

/// Silence needed after a beep's end for it to count (the detector reports it about 120 ms
/// after its end already).
pub const BEEP_QUIET_MS: u64 = 400;

/// A beep the tone detector reported, waiting for the silence that confirms it.
#[derive(Debug, Clone, Copy)]
struct PendingBeep {
    onset_ms: u64,
    frequency_hz: f32,
    end_ms: u64,
}

/// Everything a campaign or the CLI can set for one call's detection.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AmdConfig {
    pub mode: AmdMode,
    /// app_amd's parameters (heuristic mode).
    pub heuristic: HeuristicConfig,
    /// Heuristic mode takes speech and silence from the Silero VAD instead of the level.
    pub heuristic_vad: bool,
    /// Silence that ends a machine's greeting when no beep comes.
    pub greeting_end_silence_ms: u64,
    /// After a machine verdict, the greeting is taken as ended by this time at the latest.
    pub max_greeting_ms: u64,
    /// Transcription (text, auto) runs on the caller's thread, its result held back by its CPU
    /// time in audio time (amd-eval, benchmarks), instead of on the ASR worker threads.
    #[serde(skip)]
    pub offline: bool,
}

impl Default for AmdConfig {
    fn default() -> Self {
        AmdConfig {
            mode: AmdMode::Heuristic,
            heuristic: HeuristicConfig::default(),
            heuristic_vad: false,
            greeting_end_silence_ms: 2000,
            max_greeting_ms: 30_000,
            offline: false,
        }
    }
}

impl AmdConfig {
    pub fn with_mode(mode: AmdMode) -> Self {
        AmdConfig {
            mode,
            ..AmdConfig::default()
        }
    }

    /// Checks each value; the error names the field.
    pub fn validate(&self) -> Result<(), String> {
        self.heuristic.validate()?;
        if !(200..=10_000).contains(&self.greeting_end_silence_ms) {
            return Err(format!(
                "amd.greeting_end_silence_ms = {}: expected 200 to 10000",
                self.greeting_end_silence_ms
            ));
        }
        if !(1000..=120_000).contains(&self.max_greeting_ms) {
            return Err(format!(
                "amd.max_greeting_ms = {}: expected 1000 to 120000",
                self.max_greeting_ms
            ));
        }
        Ok(())
    }
}

/// Builds the verdict detector of a mode; a mode whose runtime or model is missing fails with
/// one line saying what and where.
fn detector_for(cfg: &AmdConfig) -> Result<Box<dyn Detector>, String> {
    match cfg.mode {
        AmdMode::Heuristic if cfg.heuristic_vad => {
            let vad: Box<dyn SpeechSource> = Box::new(SileroVad::new()?);
            Ok(Box::new(Heuristic::with_speech(cfg.heuristic, vad)))
        }
        AmdMode::Heuristic => Ok(Box::new(Heuristic::new(cfg.heuristic))),
        AmdMode::Ml => Ok(Box::new(MlDetector::new()?)),
        AmdMode::Text => Ok(Box::new(text_detector(cfg)?)),
        AmdMode::Auto => Ok(Box::new(AutoDetector::new(
            MlDetector::new()?,
            text_detector(cfg)?,
        ))),
    }
}

fn text_detector(cfg: &AmdConfig) -> Result<TextDetector<WhisperStream>, String> {
    Ok(TextDetector::new(
        WhisperStream::new(transcription(cfg)?),
        PhraseHints::english(),
        PhraseHints::english_human(),
        TextConfig::default(),
    ))
}

/// Where a call's transcription runs (see [`AmdConfig::offline`]); fails in one line when the
/// runtime or the Whisper model is missing.
fn transcription(cfg: &AmdConfig) -> Result<Exec, String> {
    let workers = Workers::shared().map_err(|e| format!("AMD text mode: {e}"))?;
    Ok(if cfg.offline {
        Exec::Inline(Arc::clone(&workers.pool))
    } else {
        Exec::Background(workers)
    })
}

/// One call's answering-machine detection.
pub struct Amd {
    cfg: AmdConfig,
    detector: Box<dyn Detector>,
    tones: ToneDetectors,
    after: AdaptiveEnergy,
    result: AmdResult,
    decided: bool,
    greeting_ended: bool,
    silence_run_ms: u64,
    now_ms: u64,
    frames: u64,
    pending_beep: Option<PendingBeep>,
    /// Tones heard since [`Amd::take_tones`] last emptied it.
    heard: Vec<ToneEvent>,
}

impl Amd {
    pub fn new(cfg: AmdConfig) -> Result<Self, String> {
        cfg.validate()?;
        let detector = detector_for(&cfg)?;
        Ok(Self::with_detector(cfg, detector))
    }

    /// With a given verdict detector (tests, or a detector built elsewhere).
    pub fn with_detector(cfg: AmdConfig, detector: Box<dyn Detector>) -> Self {
        Amd {
            cfg,
            detector,
            tones: ToneDetectors::new(),
            after: AdaptiveEnergy::default(),
            result: AmdResult {
                mode: cfg.mode,
                verdict: Verdict::Unknown,
                answered_by: AnsweredBy::Unknown,
                status: AsteriskStatus::Notsure,
                cause: Cause::Toolong,
                confidence: 0.0,
                decision_ms: None,
                beep_ms: None,
                beep_hz: None,
                greeting_end_ms: None,
            },
            decided: false,
            greeting_ended: false,
            silence_run_ms: 0,
            now_ms: 0,
            frames: 0,
            pending_beep: None,
            heard: Vec::new(),
        }
    }

    /// The result so far (final once [`Amd::is_done`]).
    pub fn result(&self) -> AmdResult {
        self.result
    }

    /// What the verdict detector heard (text mode), as lower-case words.
    pub fn transcript(&self) -> Option<String> {
        self.detector.transcript()
    }

    /// The beeps, SITs and fax tones heard since the last call (times in this detector's audio
    /// time), for whoever reports a call's tones; empty (and unallocated) on most frames.
    pub fn take_tones(&mut self) -> Vec<ToneEvent> {
        std::mem::take(&mut self.heard)
    }

    /// A verdict has been reached.
    pub fn is_decided(&self) -> bool {
        self.decided
    }

    /// Nothing more to learn: a human, fax or unknown verdict, or a machine whose greeting ended.
    pub fn is_done(&self) -> bool {
        self.decided && (self.result.verdict != Verdict::Machine || self.greeting_ended)
    }

    /// Frames analysed so far.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// Takes one 20 ms frame whose first sample is at `at_ms` (audio time); appends what
    /// happened to `events`.
    pub fn push(&mut self, frame: &[i16], at_ms: u64, events: &mut Vec<AmdEvent>) {
        self.frames += 1;
        self.now_ms = at_ms + FRAME_MS;
        // The level detector follows the whole call, so its noise floor is known by the time a
        // greeting's end is looked for.
        let speech = self.after.is_speech(frame);
        for tone in self.tones.process(frame, at_ms) {
            self.on_tone(tone, events);
        }
        if let Some(beep) = self.pending_beep {
            if speech {
                self.pending_beep = None;
            } else if self.now_ms >= beep.end_ms + BEEP_QUIET_MS {
                self.pending_beep = None;
                self.on_beep(beep, events);
            }
        }
        if !self.decided {
            if let Some(d) = self.detector.push(frame, at_ms) {
                self.on_decision(d, events);
            }
        } else if self.result.verdict == Verdict::Machine && !self.greeting_ended {
            self.track_greeting(speech, events);
        }
    }

    /// The audio ended (hang-up or end of file) at `at_ms`: an undecided detection becomes
    /// `unknown` (HANGUP when the far end hung up, TOOLONG otherwise); a machine's greeting that
    /// had not ended ends as `machine_end_other`.
    pub fn finish(&mut self, at_ms: u64, hung_up: bool, events: &mut Vec<AmdEvent>) {
        if !self.decided {
            let cause = if hung_up {
                Cause::Hangup
            } else {
                Cause::Toolong
            };
            self.decided = true;
            self.result.verdict = Verdict::Unknown;
            self.result.answered_by = AnsweredBy::Unknown;
            self.result.status = if hung_up {
                AsteriskStatus::Hangup
            } else {
                AsteriskStatus::Notsure
            };
            self.result.cause = cause;
            self.result.decision_ms = Some(at_ms);
            events.push(AmdEvent::Timeout {
                confidence: 0.0,
                at_ms,
            });
        } else if self.result.verdict == Verdict::Machine && !self.greeting_ended {
            self.end_greeting(GreetingEnd::Other, at_ms, at_ms, 0.3, events);
        }
    }

    fn on_tone(&mut self, tone: ToneEvent, events: &mut Vec<AmdEvent>) {
        self.heard.push(tone);
        let now = self.now_ms;
        match tone {
            ToneEvent::Beep {
                onset_ms,
                frequency_hz,
                duration_ms,
            } => {
                self.pending_beep = Some(PendingBeep {
                    onset_ms,
                    frequency_hz,
                    end_ms: onset_ms + duration_ms as u64,
                });
            }
            ToneEvent::Fax { onset_ms, .. } => {
                if !self.decided {
                    self.decided = true;
                    self.greeting_ended = true;
                    self.result.verdict = Verdict::Machine;
                    self.result.answered_by = AnsweredBy::Fax;
                    self.result.status = AsteriskStatus::Machine;
                    self.result.cause = Cause::Fax;
                    self.result.confidence = 0.95;
                    self.result.decision_ms = Some(now);
                    let _ = onset_ms;
                    events.push(AmdEvent::Fax {
                        confidence: 0.95,
                        at_ms: now,
                    });
                }
            }
            ToneEvent::Sit { .. } => {}
        }
    }

    /// A beep confirmed by the silence after it.
    fn on_beep(&mut self, beep: PendingBeep, events: &mut Vec<AmdEvent>) {
        let now = self.now_ms;
        events.push(AmdEvent::Beep {
            onset_ms: beep.onset_ms,
            frequency_hz: beep.frequency_hz,
            confidence: 0.95,
            at_ms: now,
        });
        if self.result.beep_ms.is_none() {
            self.result.beep_ms = Some(beep.onset_ms);
            self.result.beep_hz = Some(beep.frequency_hz);
        }
        if !self.decided {
            self.on_decision(
                Decision {
                    verdict: Verdict::Machine,
                    cause: Cause::Beep,
                    confidence: 0.95,
                    at_ms: now,
                },
                events,
            );
        }
        if self.result.verdict == Verdict::Machine && !self.greeting_ended {
            self.end_greeting(GreetingEnd::Beep, beep.end_ms, now, 0.95, events);
        }
    }

    fn on_decision(&mut self, d: Decision, events: &mut Vec<AmdEvent>) {
        self.decided = true;
        self.result.verdict = d.verdict;
        self.result.cause = d.cause;
        self.result.confidence = d.confidence;
        self.result.decision_ms = Some(d.at_ms);
        match d.verdict {
            Verdict::Human => {
                self.result.answered_by = AnsweredBy::Human;
                self.result.status = AsteriskStatus::Human;
                events.push(AmdEvent::HumanDetected {
                    cause: d.cause,
                    confidence: d.confidence,
                    at_ms: d.at_ms,
                });
            }
            Verdict::Machine => {
                self.result.answered_by = AnsweredBy::MachineStart;
                self.result.status = AsteriskStatus::Machine;
                events.push(AmdEvent::MachineDetected {
                    cause: d.cause,
                    confidence: d.confidence,
                    at_ms: d.at_ms,
                });
            }
            Verdict::Unknown => {
                self.result.answered_by = AnsweredBy::Unknown;
                self.result.status = AsteriskStatus::Notsure;
                events.push(if d.cause == Cause::Initialsilence {
                    AmdEvent::NoSpeech {
                        confidence: d.confidence,
                        at_ms: d.at_ms,
                    }
                } else {
                    AmdEvent::Timeout {
                        confidence: d.confidence,
                        at_ms: d.at_ms,
                    }
                });
            }
        }
    }

    fn track_greeting(&mut self, speech: bool, events: &mut Vec<AmdEvent>) {
        if speech {
            self.silence_run_ms = 0;
        } else {
            self.silence_run_ms += FRAME_MS;
        }
        let now = self.now_ms;
        let since_verdict = now.saturating_sub(self.result.decision_ms.unwrap_or(now));
        if self.silence_run_ms >= self.cfg.greeting_end_silence_ms {
            let end = now - self.silence_run_ms;
            self.end_greeting(GreetingEnd::Silence, end, now, 0.8, events);
        } else if since_verdict >= self.cfg.max_greeting_ms {
            self.end_greeting(GreetingEnd::Other, now, now, 0.3, events);
        }
    }

    fn end_greeting(
        &mut self,
        how: GreetingEnd,
        end_ms: u64,
        now: u64,
        confidence: f32,
        events: &mut Vec<AmdEvent>,
    ) {
        self.greeting_ended = true;
        self.result.greeting_end_ms = Some(end_ms);
        self.result.answered_by = match how {
            GreetingEnd::Beep => AnsweredBy::MachineEndBeep,
            GreetingEnd::Silence => AnsweredBy::MachineEndSilence,
            GreetingEnd::Other => AnsweredBy::MachineEndOther,
        };
        events.push(AmdEvent::MachineGreetingEnded {
            how,
            confidence,
            at_ms: now,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(freq: f64, ms: u64, amp: f64) -> Vec<i16> {
        let n = (ms * 8) as usize;
        (0..n)
            .map(|i| (amp * (2.0 * std::f64::consts::PI * freq * i as f64 / 8000.0).sin()) as i16)
            .collect()
    }

    /// Noise bursts shaped like syllables.
    fn babble(ms: u64, seed: u64) -> Vec<i16> {
        let mut x = seed | 1;
        (0..(ms * 8) as usize)
            .map(|i| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let env = 0.5 + 0.5 * (2.0 * std::f64::consts::PI * 5.0 * i as f64 / 8000.0).sin();
                (((x % 16000) as f64 - 8000.0) * env) as i16
            })
            .collect()
    }

    fn run(amd: &mut Amd, audio: &[i16]) -> Vec<AmdEvent> {
        let mut events = Vec::new();
        let mut t = 0;
        for f in audio.chunks(160) {
            amd.push(f, t, &mut events);
            t += FRAME_MS;
        }
        amd.finish(t, false, &mut events);
        events
    }

    #[test]
    fn a_long_greeting_then_a_beep_is_machine_end_beep() {
        let mut audio = vec![0i16; 4000];
        for k in 0..6 {
            audio.extend(babble(400, k + 1));
            audio.extend(vec![0; 400]);
        }
        let beep_at = audio.len() as u64 / 8;
        audio.extend(vec![0; 4000]);
        let beep_at = beep_at + 500;
        audio.extend(tone(1000.0, 400, 8000.0));
        audio.extend(vec![0; 8000]);
        let mut amd = Amd::new(AmdConfig::default()).expect("heuristic needs no runtime");
        let events = run(&mut amd, &audio);
        let r = amd.result();
        assert_eq!(r.verdict, Verdict::Machine, "{events:?}");
        assert_eq!(r.answered_by, AnsweredBy::MachineEndBeep, "{events:?}");
        let onset = r.beep_ms.expect("beep");
        assert!(
            onset.abs_diff(beep_at) <= 20,
            "beep at {onset}, expected {beep_at}"
        );
        assert!(
            matches!(
                events.last(),
                Some(AmdEvent::MachineGreetingEnded {
                    how: GreetingEnd::Beep,
                    ..
                })
            ),
            "{events:?}"
        );
        assert!(amd.is_done());
    }

    #[test]
    fn hello_then_waiting_is_human() {
        let mut audio = vec![0i16; 4000];
        audio.extend(babble(500, 3));
        audio.extend(vec![0; 24000]);
        let mut amd = Amd::new(AmdConfig::default()).expect("heuristic");
        let events = run(&mut amd, &audio);
        let r = amd.result();
        assert_eq!(
            (r.verdict, r.answered_by, r.status),
            (Verdict::Human, AnsweredBy::Human, AsteriskStatus::Human),
            "{events:?}"
        );
        assert_eq!(r.decision_ms, Some(500 + 500 + 800));
        assert!(matches!(events[0], AmdEvent::HumanDetected { .. }));
    }

    #[test]
    fn a_machine_without_beep_ends_on_silence() {
        let cfg = AmdConfig {
            heuristic: HeuristicConfig {
                maximum_number_of_words: 100,
                ..HeuristicConfig::default()
            },
            ..AmdConfig::default()
        };
        let mut audio = vec![0i16; 2400];
        audio.extend(babble(3000, 5));
        audio.extend(vec![0; 32000]);
        let mut amd = Amd::new(cfg).expect("heuristic");
        let events = run(&mut amd, &audio);
        let r = amd.result();
        assert_eq!(
            (r.verdict, r.cause),
            (Verdict::Machine, Cause::Longgreeting),
            "{events:?}"
        );
        assert_eq!(r.answered_by, AnsweredBy::MachineEndSilence, "{events:?}");
        let end = r.greeting_end_ms.expect("greeting end");
        assert!(end.abs_diff(3300) <= 60, "greeting ended at {end}");
    }

    #[test]
    fn a_fax_tone_is_fax() {
        let mut audio = vec![0i16; 800];
        for _ in 0..3 {
            audio.extend(tone(1100.0, 500, 8000.0));
            audio.extend(vec![0; 24000]);
        }
        let cfg = AmdConfig {
            heuristic: HeuristicConfig {
                initial_silence: 10_000,
                total_analysis_time: 20_000,
                ..HeuristicConfig::default()
            },
            ..AmdConfig::default()
        };
        let mut amd = Amd::new(cfg).expect("heuristic");
        let events = run(&mut amd, &audio);
        assert_eq!(amd.result().answered_by, AnsweredBy::Fax, "{events:?}");
    }

    #[test]
    fn the_end_of_audio_before_a_verdict_is_unknown() {
        let mut amd = Amd::new(AmdConfig::default()).expect("heuristic");
        let mut events = Vec::new();
        amd.push(&[0; 160], 0, &mut events);
        amd.finish(20, true, &mut events);
        let r = amd.result();
        assert_eq!(
            (r.verdict, r.status, r.cause),
            (Verdict::Unknown, AsteriskStatus::Hangup, Cause::Hangup)
        );
    }

    /// espeak-ng speech at 8 kHz, after `lead_ms` of silence and followed by `tail_ms`.
    fn spoken(text: &str, lead_ms: usize, tail_ms: usize) -> Vec<i16> {
        let speech = crate::amd::espeak_8k(text);
        let mut audio = vec![0i16; lead_ms * 8];
        audio.extend(speech);
        audio.extend(vec![0i16; tail_ms * 8]);
        audio
    }

    fn offline(mode: AmdMode) -> AmdConfig {
        AmdConfig {
            offline: true,
            ..AmdConfig::with_mode(mode)
        }
    }

    /// Needs `make setup` (ONNX Runtime and the converted Whisper model), espeak-ng.
    #[test]
    fn text_mode_hears_a_voicemail_phrase_and_a_person() {
        let greeting = spoken(
            "Hi, you have reached Olivia. I can't take your call right now.",
            500,
            3000,
        );
        let mut amd = Amd::new(offline(AmdMode::Text)).expect("text mode (make setup)");
        let events = run(&mut amd, &greeting);
        let r = amd.result();
        assert_eq!(
            (r.verdict, r.cause),
            (Verdict::Machine, Cause::Transcript),
            "{events:?}"
        );
        let heard = amd.transcript().unwrap_or_default();
        assert!(heard.contains("take your call"), "{heard}");
        // decided while the greeting was still being spoken
        assert!(
            r.decision_ms
                .zip(r.greeting_end_ms)
                .is_some_and(|(d, end)| d < end),
            "{r:?}"
        );

        let hello = spoken("Hello?", 400, 4000);
        let mut amd = Amd::new(offline(AmdMode::Text)).expect("text mode");
        let events = run(&mut amd, &hello);
        assert_eq!(amd.result().verdict, Verdict::Human, "{events:?}");

        // auto: the same verdicts
        let mut amd = Amd::new(offline(AmdMode::Auto)).expect("auto mode");
        run(&mut amd, &greeting);
        assert_eq!(amd.result().verdict, Verdict::Machine);
    }
}
