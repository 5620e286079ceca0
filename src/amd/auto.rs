//! `auto` mode: the ML detector and the transcript together (the beep and fax rules of
//! [`super::session`] apply on top, as in every mode).
//!
//! * A confident ML machine verdict decides at once (it is rarely wrong: ≈ 1 % of people).
//! * Otherwise the text detector's verdict stands (voicemail phrase, greeting length, an
//!   utterance followed by silence, a person's answering phrase, …; see [`super::text`]).
//! * ML's human verdict is not taken: on the validation split it called 7–10 % of machines
//!   people even when confirmed by 400–600 ms of silence (a greeting's first sentence,
//!   "It's Chris.", then a pause), for 0.1–0.2 s of speed. People are told by the
//!   transcript and the silence after it.

use super::ml::MlDetector;
use super::text::{TextDetector, Transcriber};
use super::{Decision, Detector, Verdict};

pub struct AutoDetector<T: Transcriber> {
    ml: MlDetector,
    text: TextDetector<T>,
    ml_done: bool,
}

impl<T: Transcriber> AutoDetector<T> {
    pub fn new(ml: MlDetector, text: TextDetector<T>) -> Self {
        AutoDetector {
            ml,
            text,
            ml_done: false,
        }
    }
}

impl<T: Transcriber> Detector for AutoDetector<T> {
    fn push(&mut self, frame: &[i16], at_ms: u64) -> Option<Decision> {
        if !self.ml_done {
            if let Some(d) = self.ml.push(frame, at_ms) {
                self.ml_done = true;
                if d.verdict == Verdict::Machine {
                    return Some(d);
                }
            }
        }
        self.text.push(frame, at_ms)
    }

    fn transcript(&self) -> Option<String> {
        self.text.transcript()
    }
}
