//! Text mode's decision: what was said, and when. Transcripts come through the [`Transcriber`]
//! trait (an in-process ASR, an AI agent or a streaming speech-to-text service can implement
//! it); [`TextDetector`] turns them, with the timing of speech and silence, into a verdict.
//!
//! Rules, in order, from the moment speech starts:
//! * a voicemail phrase hint ([`PhraseHints`], one file per language under models/amd/hints/)
//!   in any transcript → machine (cause TRANSCRIPT);
//! * an utterance has ended (`end_silence_ms` of silence) after at most `human_max_words`
//!   words, or after at most `human_max_speech_ms` of speech when no transcript has come: a
//!   person (short utterances are where ASR is weakest, so timing decides them); also a person
//!   when what was said holds a person's answering phrase (en-human.txt: "how can I help",
//!   "who is this", "speaking", …) however long it was. When transcripts have come but none
//!   covers the utterance's end yet, this waits for one (at most `transcript_wait_ms`);
//! * `machine_min_words` words, or `machine_speech_ms` of speech, without a person's phrase →
//!   machine;
//! * `human_wait_ms` of silence after speech, with no voicemail phrase and fewer than
//!   `machine_min_words` words: a person waiting for the caller to speak (a recorder that
//!   does not beep said none of its phrases);
//! * nothing by `max_ms` after speech began → unknown (TOOLONG).
//!
//! The in-process transcriber is [`crate::asr::stream::WhisperStream`]; any other
//! [`Transcriber`] (an AI agent's or a streaming STT service's) can drive this detector.

use super::energy::AdaptiveEnergy;
use super::{Cause, Decision, Detector, SpeechSource, Verdict, FRAME_MS};

pub use crate::asr::{Transcriber, Transcript};

/// One hint: each word is a set of alternatives (`None` = any word).
#[derive(Debug, Clone, PartialEq)]
struct Hint(Vec<Option<Vec<String>>>);

/// Voicemail phrase hints of one language.
#[derive(Debug, Clone, PartialEq)]
pub struct PhraseHints {
    hints: Vec<Hint>,
}

/// Lower-case words, punctuation dropped (apostrophes kept inside words).
pub fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !(c.is_alphanumeric() || c == '\''))
        .map(|w| w.trim_matches('\'').to_lowercase())
        .filter(|w| !w.is_empty())
        .collect()
}

impl PhraseHints {
    /// Parses a hints file (see models/amd/hints/en.txt).
    pub fn parse(text: &str) -> PhraseHints {
        let hints = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|line| {
                Hint(
                    line.split_whitespace()
                        .map(|w| {
                            (w != "*").then(|| w.split('|').map(|a| a.to_lowercase()).collect())
                        })
                        .collect(),
                )
            })
            .filter(|h| !h.0.is_empty())
            .collect();
        PhraseHints { hints }
    }

    /// The built-in English voicemail hints.
    pub fn english() -> PhraseHints {
        Self::parse(include_str!("../../models/amd/hints/en.txt"))
    }

    /// The built-in English answering phrases of a person.
    pub fn english_human() -> PhraseHints {
        Self::parse(include_str!("../../models/amd/hints/en-human.txt"))
    }

    pub fn len(&self) -> usize {
        self.hints.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hints.is_empty()
    }

    /// The first hint found in the words, as written in the file's first alternatives.
    pub fn find(&self, text: &[String]) -> Option<String> {
        self.hints.iter().find_map(|hint| {
            let n = hint.0.len();
            (0..text.len().saturating_sub(n - 1))
                .any(|i| {
                    hint.0.iter().zip(&text[i..i + n]).all(|(alts, w)| {
                        alts.as_ref().is_none_or(|alts| alts.iter().any(|a| a == w))
                    })
                })
                .then(|| {
                    hint.0
                        .iter()
                        .map(|a| a.as_ref().map_or("*", |a| a[0].as_str()))
                        .collect::<Vec<_>>()
                        .join(" ")
                })
        })
    }
}

/// Text mode's thresholds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TextConfig {
    pub end_silence_ms: u64,
    pub human_max_words: usize,
    pub human_max_speech_ms: u64,
    pub machine_min_words: usize,
    pub machine_speech_ms: u64,
    pub max_ms: u64,
    pub no_speech_ms: u64,
    pub human_wait_ms: u64,
    pub transcript_wait_ms: u64,
}

impl Default for TextConfig {
    fn default() -> Self {
        TextConfig {
            end_silence_ms: 800,
            human_max_words: 6,
            human_max_speech_ms: 1800,
            machine_min_words: 18,
            machine_speech_ms: 8000,
            max_ms: 15_000,
            no_speech_ms: 5000,
            human_wait_ms: 2000,
            transcript_wait_ms: 1000,
        }
    }
}

/// The text-mode detector over any transcriber.
pub struct TextDetector<T: Transcriber> {
    transcriber: T,
    hints: PhraseHints,
    human_hints: PhraseHints,
    cfg: TextConfig,
    speech: AdaptiveEnergy,
    now_ms: u64,
    onset_ms: Option<u64>,
    /// End of the last speech frame.
    last_speech_ms: u64,
    /// Audio time up to which the latest transcript reaches.
    covered_ms: u64,
    transcripts: u32,
    speech_ms: u64,
    silence_run_ms: u64,
    words: Vec<String>,
    /// Interim text of the utterance in progress (replaced by each interim, cleared by a final).
    interim: Vec<String>,
    decided: bool,
}

impl<T: Transcriber> TextDetector<T> {
    /// `hints`: voicemail phrases; `human_hints`: a person's answering phrases.
    pub fn new(
        transcriber: T,
        hints: PhraseHints,
        human_hints: PhraseHints,
        cfg: TextConfig,
    ) -> Self {
        TextDetector {
            transcriber,
            hints,
            human_hints,
            cfg,
            speech: AdaptiveEnergy::default(),
            now_ms: 0,
            onset_ms: None,
            last_speech_ms: 0,
            covered_ms: 0,
            transcripts: 0,
            speech_ms: 0,
            silence_run_ms: 0,
            words: Vec::new(),
            interim: Vec::new(),
            decided: false,
        }
    }

    fn decide(&mut self, verdict: Verdict, cause: Cause, confidence: f32) -> Option<Decision> {
        self.decided = true;
        Some(Decision {
            verdict,
            cause,
            confidence,
            at_ms: self.now_ms,
        })
    }

    fn heard(&self) -> Vec<String> {
        let mut all = self.words.clone();
        all.extend(self.interim.iter().cloned());
        all
    }
}

impl<T: Transcriber> Detector for TextDetector<T> {
    fn push(&mut self, frame: &[i16], at_ms: u64) -> Option<Decision> {
        if self.decided {
            return None;
        }
        self.now_ms = at_ms + FRAME_MS;
        let speech = self.speech.is_speech(frame);
        self.transcriber.push(frame, at_ms, speech);
        while let Some(t) = self.transcriber.poll() {
            self.transcripts += 1;
            self.covered_ms = self.covered_ms.max(t.end_ms);
            let w = words(&t.text);
            if t.is_final {
                self.words.extend(w);
                self.interim.clear();
            } else {
                self.interim = w;
            }
        }
        if speech {
            self.onset_ms.get_or_insert(at_ms);
            self.speech_ms += FRAME_MS;
            self.silence_run_ms = 0;
            self.last_speech_ms = self.now_ms;
        } else {
            self.silence_run_ms += FRAME_MS;
        }
        let heard = self.heard();
        if self.hints.find(&heard).is_some() {
            return self.decide(Verdict::Machine, Cause::Transcript, 0.9);
        }
        let Some(onset) = self.onset_ms else {
            if self.now_ms >= self.cfg.no_speech_ms {
                return self.decide(Verdict::Unknown, Cause::Initialsilence, 0.9);
            }
            return None;
        };
        let waiting_for_text = self.transcripts > 0
            && self.covered_ms < self.last_speech_ms
            && self.silence_run_ms < self.cfg.end_silence_ms + self.cfg.transcript_wait_ms;
        if self.silence_run_ms >= self.cfg.end_silence_ms && !waiting_for_text {
            let short = if heard.is_empty() {
                self.speech_ms <= self.cfg.human_max_speech_ms
            } else {
                heard.len() <= self.cfg.human_max_words
            };
            if short || self.human_hints.find(&heard).is_some() {
                return self.decide(Verdict::Human, Cause::Human, 0.8);
            }
            if self.silence_run_ms >= self.cfg.human_wait_ms
                && heard.len() < self.cfg.machine_min_words
            {
                return self.decide(Verdict::Human, Cause::Human, 0.6);
            }
        }
        let long = heard.len() >= self.cfg.machine_min_words
            || self.speech_ms >= self.cfg.machine_speech_ms;
        if long && self.human_hints.find(&heard).is_none() {
            return self.decide(Verdict::Machine, Cause::Longgreeting, 0.7);
        }
        if self.now_ms.saturating_sub(onset) >= self.cfg.max_ms {
            return self.decide(Verdict::Unknown, Cause::Toolong, 0.0);
        }
        None
    }

    fn transcript(&self) -> Option<String> {
        Some(self.heard().join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The transcriber here says given things at given audio times: the detector's rules are
    /// the unit under test, not speech recognition. Feeds `speech` (start, end) ms as loud frames over a quiet line, and each transcript at
    /// its end time; returns the decision.
    fn run(speech: &[(u64, u64)], said: &[(&str, u64, bool)], total_ms: u64) -> Option<Decision> {
        struct Timed {
            said: Vec<Transcript>,
            now: u64,
        }
        impl Transcriber for Timed {
            fn push(&mut self, _frame: &[i16], at_ms: u64, _speech: bool) {
                self.now = at_ms + FRAME_MS;
            }
            fn poll(&mut self) -> Option<Transcript> {
                let i = self.said.iter().position(|t| t.end_ms <= self.now)?;
                Some(self.said.remove(i))
            }
        }
        let said = said
            .iter()
            .map(|&(text, end_ms, is_final)| Transcript {
                text: text.into(),
                start_ms: 0,
                end_ms,
                is_final,
            })
            .collect();
        let mut d = TextDetector::new(
            Timed { said, now: 0 },
            PhraseHints::english(),
            PhraseHints::english_human(),
            TextConfig::default(),
        );
        let loud: Vec<i16> = (0..160)
            .map(|i| if i % 2 == 0 { 6000 } else { -6000 })
            .collect();
        // Speech has dips between syllables (a steady level would read as the noise floor).
        let dip: Vec<i16> = loud.iter().map(|s| s / 10).collect();
        let quiet: Vec<i16> = (0..160)
            .map(|i| if i % 2 == 0 { 20 } else { -20 })
            .collect();
        let mut t = 0;
        while t < total_ms {
            let talking = speech.iter().any(|&(a, b)| t >= a && t < b);
            let frame = match (talking, (t / FRAME_MS) % 5 == 4) {
                (true, false) => &loud,
                (true, true) => &dip,
                (false, _) => &quiet,
            };
            if let Some(dec) = d.push(frame, t) {
                return Some(dec);
            }
            t += FRAME_MS;
        }
        None
    }

    #[test]
    fn hints_match_through_asr_mishearings() {
        let h = PhraseHints::english();
        assert!(h.len() > 10);
        for machine in [
            "Hi you've reached Jim, leave the message after the beat.",
            "Please record your message.",
            "The person you are trying to reach is not available.",
            "sorry I can't come to the phone right now",
        ] {
            assert!(h.find(&words(machine)).is_some(), "{machine}");
        }
        for person in [
            "Hello?",
            "You've reached Riverside Motors, this is Jim.",
            "Good morning, Riverside Motors, Jim speaking, how can I help you?",
            "Yes, who is this please?",
        ] {
            assert_eq!(h.find(&words(person)), None, "{person}");
        }
    }

    #[test]
    fn a_hint_decides_machine_as_soon_as_it_is_heard() {
        let d = run(
            &[(500, 6000)],
            &[
                ("hi you have reached the voicemail", 1500, false),
                (
                    "hi you have reached the voicemail of Mary please leave a message",
                    3000,
                    true,
                ),
            ],
            8000,
        )
        .expect("decision");
        assert_eq!((d.verdict, d.cause), (Verdict::Machine, Cause::Transcript));
        assert_eq!(d.at_ms, 1500);
    }

    #[test]
    fn a_short_greeting_then_silence_is_a_person_by_timing() {
        // No transcript at all (ASR is weakest on one word): timing decides.
        let d = run(&[(400, 900)], &[], 5000).expect("decision");
        assert_eq!(d.verdict, Verdict::Human);
        assert!(d.at_ms >= 900 + 800 && d.at_ms <= 900 + 900, "{d:?}");
        // A receptionist's long greeting without a hint, then waiting: a person.
        let d = run(
            &[(300, 3300)],
            &[("good morning riverside motors jim speaking", 3400, true)],
            6000,
        );
        assert_eq!(d.map(|d| d.verdict), Some(Verdict::Human));
    }

    #[test]
    fn a_persons_phrase_outweighs_length_and_silence_after_a_middling_greeting_is_a_person() {
        // 14 words would be a machine, but "how can I help you" is a person's.
        let d = run(
            &[(300, 4300)],
            &[(
                "thank you for calling riverside motors this is jim how can i help you",
                4400,
                true,
            )],
            9000,
        )
        .expect("decision");
        assert_eq!(d.verdict, Verdict::Human, "{d:?}");
        assert!(d.at_ms >= 4300 + 800 && d.at_ms < 4300 + 1000, "{d:?}");
        // 8 words, no phrase of either kind: a person once 2 s of silence follow.
        let d = run(
            &[(300, 3300)],
            &[("good evening maple dental this is laura smith", 3500, true)],
            9000,
        )
        .expect("decision");
        assert_eq!(d.verdict, Verdict::Human, "{d:?}");
        assert!(d.at_ms >= 3300 + 2000 && d.at_ms < 3300 + 2200, "{d:?}");
        // the same with a voicemail phrase is a machine
        let d = run(
            &[(300, 3300)],
            &[("this is laura smith please leave a message", 3500, true)],
            9000,
        )
        .expect("decision");
        assert_eq!((d.verdict, d.cause), (Verdict::Machine, Cause::Transcript));
    }

    #[test]
    fn a_verdict_waits_for_the_transcript_of_the_utterance_that_just_ended() {
        // An early transcript of 2 words, then speech goes on to 2500 ms; the transcript of
        // all of it comes late (3600 ms) and holds a voicemail phrase: no human verdict at
        // 2500 + 800 from the stale 2 words.
        let d = run(
            &[(300, 2500)],
            &[
                ("hi it's", 1000, false),
                ("hi it's john leave a message", 3600, false),
            ],
            8000,
        )
        .expect("decision");
        assert_eq!(
            (d.verdict, d.cause),
            (Verdict::Machine, Cause::Transcript),
            "{d:?}"
        );
    }

    #[test]
    fn many_words_without_a_hint_are_a_machine_and_silence_is_unknown() {
        let d = run(
            &[(300, 9000)],
            &[("thanks for calling we are open monday to friday from nine to five and on saturdays from ten", 4000, true)],
            10_000,
        )
        .expect("decision");
        assert_eq!(
            (d.verdict, d.cause),
            (Verdict::Machine, Cause::Longgreeting)
        );
        let d = run(&[], &[], 6000).expect("decision");
        assert_eq!(
            (d.verdict, d.cause),
            (Verdict::Unknown, Cause::Initialsilence)
        );
    }
}
