//! Answering-machine detection (AMD): tells a person from a machine on an answered call's
//! received audio, and finds where a machine's greeting ends so a message can follow the beep.
//!
//! Everything here is sans-IO: a detector takes 20 ms frames of 8 kHz mono PCM (160 samples) with
//! the audio time of each frame's first sample, and returns events. No clock, socket or thread.
//! The live call and `outdial amd-eval` drive the same [`Amd`] the same way, one frame at a time.
//!
//! * [`Amd`] (in [`session`]) runs one verdict detector (the mode), the media layer's tone
//!   detectors (beep, fax) and the end-of-greeting tracker, and keeps the [`AmdResult`].
//! * Modes: [`heuristic`] (Asterisk app_amd's word/silence state machine, speech from energy or
//!   from the Silero VAD), [`ml`] (a small streaming ONNX classifier trained here on log-mel
//!   [`features`]), `auto` (see [`session`]). Text mode's decision logic ([`text`]) takes
//!   transcripts from any [`Transcriber`](crate::asr::Transcriber) — in process, Whisper tiny.en
//!   ([`crate::asr`]); ONNX Runtime and the models come from [`crate::onnx`].
//! * [`eval`] reads a labeled corpus for `outdial amd-eval`.
//!
//! Results are reported both Twilio-style ([`AnsweredBy`]) and Asterisk-style
//! ([`AsteriskStatus`] + [`Cause`]).

pub mod auto;
pub mod energy;
pub mod eval;
pub mod features;
pub mod heuristic;
pub mod ml;
pub mod session;
pub mod text;
pub mod vad;

pub use session::{Amd, AmdConfig};

use serde::{Deserialize, Serialize};

/// Audio time of one frame, in milliseconds.
pub const FRAME_MS: u64 = crate::media::FRAME_MS;
/// Samples in one frame.
pub const FRAME_SAMPLES: usize = crate::media::FRAME_SAMPLES;

/// Which detector decides human or machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AmdMode {
    Heuristic,
    Text,
    Ml,
    Auto,
}

impl AmdMode {
    pub fn name(self) -> &'static str {
        match self {
            AmdMode::Heuristic => "heuristic",
            AmdMode::Text => "text",
            AmdMode::Ml => "ml",
            AmdMode::Auto => "auto",
        }
    }

    pub fn from_name(name: &str) -> Option<AmdMode> {
        match name.trim().to_ascii_lowercase().as_str() {
            "heuristic" => Some(AmdMode::Heuristic),
            "text" => Some(AmdMode::Text),
            "ml" => Some(AmdMode::Ml),
            "auto" => Some(AmdMode::Auto),
            _ => None,
        }
    }
}

impl std::fmt::Display for AmdMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Who answered, as a verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Human,
    Machine,
    Unknown,
}

impl Verdict {
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Human => "human",
            Verdict::Machine => "machine",
            Verdict::Unknown => "unknown",
        }
    }
}

/// Twilio's AnsweredBy values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnsweredBy {
    Human,
    MachineStart,
    MachineEndBeep,
    MachineEndSilence,
    MachineEndOther,
    Fax,
    Unknown,
}

impl AnsweredBy {
    pub fn name(self) -> &'static str {
        match self {
            AnsweredBy::Human => "human",
            AnsweredBy::MachineStart => "machine_start",
            AnsweredBy::MachineEndBeep => "machine_end_beep",
            AnsweredBy::MachineEndSilence => "machine_end_silence",
            AnsweredBy::MachineEndOther => "machine_end_other",
            AnsweredBy::Fax => "fax",
            AnsweredBy::Unknown => "unknown",
        }
    }
}

/// Asterisk AMD's `AMDSTATUS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum AsteriskStatus {
    Machine,
    Human,
    Notsure,
    Hangup,
}

impl AsteriskStatus {
    pub fn name(self) -> &'static str {
        match self {
            AsteriskStatus::Machine => "MACHINE",
            AsteriskStatus::Human => "HUMAN",
            AsteriskStatus::Notsure => "NOTSURE",
            AsteriskStatus::Hangup => "HANGUP",
        }
    }
}

/// Why a verdict was reached: Asterisk's `AMDCAUSE` words, plus outdial's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Cause {
    /// Nothing decided within the analysis time.
    Toolong,
    /// No speech at all within the initial-silence time.
    Initialsilence,
    /// Speech followed by the after-greeting silence (a person waiting).
    Human,
    /// Speech for longer than the greeting time.
    Longgreeting,
    /// One word longer than the maximum word length.
    Maxwordlength,
    /// The maximum number of words reached.
    Maxwords,
    /// The ML classifier was confident.
    Model,
    /// A voicemail beep was heard before any other verdict.
    Beep,
    /// A voicemail phrase in the transcript.
    Transcript,
    /// A fax tone.
    Fax,
    /// The call ended before a verdict.
    Hangup,
}

impl Cause {
    pub fn name(self) -> &'static str {
        match self {
            Cause::Toolong => "TOOLONG",
            Cause::Initialsilence => "INITIALSILENCE",
            Cause::Human => "HUMAN",
            Cause::Longgreeting => "LONGGREETING",
            Cause::Maxwordlength => "MAXWORDLENGTH",
            Cause::Maxwords => "MAXWORDS",
            Cause::Model => "MODEL",
            Cause::Beep => "BEEP",
            Cause::Transcript => "TRANSCRIPT",
            Cause::Fax => "FAX",
            Cause::Hangup => "HANGUP",
        }
    }
}

/// How a machine's greeting was seen to end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GreetingEnd {
    Beep,
    Silence,
    Other,
}

/// A verdict detector's answer; `at_ms` is the audio time at which it was reached.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Decision {
    pub verdict: Verdict,
    pub cause: Cause,
    pub confidence: f32,
    pub at_ms: u64,
}

/// What [`Amd`] reports, in order, as it happens. `at_ms` is audio time (of the frame that
/// made the decision, at its end), `confidence` 0..1.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum AmdEvent {
    HumanDetected {
        cause: Cause,
        confidence: f32,
        at_ms: u64,
    },
    MachineDetected {
        cause: Cause,
        confidence: f32,
        at_ms: u64,
    },
    MachineGreetingEnded {
        how: GreetingEnd,
        confidence: f32,
        at_ms: u64,
    },
    Beep {
        onset_ms: u64,
        frequency_hz: f32,
        confidence: f32,
        at_ms: u64,
    },
    Fax {
        confidence: f32,
        at_ms: u64,
    },
    NoSpeech {
        confidence: f32,
        at_ms: u64,
    },
    Timeout {
        confidence: f32,
        at_ms: u64,
    },
}

/// A speech/silence verdict source for one 20 ms frame.
pub trait SpeechSource: Send {
    /// True when the frame holds speech.
    fn is_speech(&mut self, frame: &[i16]) -> bool;
}

/// A human/machine verdict detector (one per mode), fed every frame until it decides.
pub trait Detector: Send {
    /// One 20 ms frame whose first sample is at `at_ms`; returns the verdict once reached.
    fn push(&mut self, frame: &[i16], at_ms: u64) -> Option<Decision>;
    /// What was heard, for detectors that transcribe.
    fn transcript(&self) -> Option<String> {
        None
    }
}

/// The outcome of one call's detection, as stored on the attempt and printed by the CLI.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct AmdResult {
    pub mode: AmdMode,
    pub verdict: Verdict,
    pub answered_by: AnsweredBy,
    pub status: AsteriskStatus,
    pub cause: Cause,
    pub confidence: f32,
    /// Audio time of the verdict, from the start of the analysed audio.
    pub decision_ms: Option<u64>,
    /// Onset of the voicemail beep, when one was heard.
    pub beep_ms: Option<u64>,
    pub beep_hz: Option<f32>,
    /// When the machine's greeting was seen to end (beep end, silence, or other).
    pub greeting_end_ms: Option<u64>,
}

/// espeak-ng (en-us) saying `text`, as 8 kHz samples. For unit tests; needs espeak-ng.
#[cfg(test)]
pub(crate) fn espeak_8k(text: &str) -> Vec<i16> {
    let dir = tempfile::tempdir().expect("tmp");
    let wav = dir.path().join("speech.wav");
    let ok = std::process::Command::new("espeak-ng")
        .args(["-v", "en-us", "-w"])
        .arg(&wav)
        .arg(text)
        .status()
        .expect("espeak-ng");
    assert!(ok.success(), "espeak-ng failed");
    crate::media::load_wav_8k_mono(&wav).expect("espeak-ng wav")
}
