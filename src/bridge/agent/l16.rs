//! jambonz `listen`-style streams, sans-IO: a first text frame with the call's metadata, then
//! binary little-endian 16-bit PCM at 8, 16 or 24 kHz both ways; the agent's text frames
//! `{"type":"killAudio"}` (drop queued audio), `{"type":"disconnect"}` (hang up) and
//! `{"type":"mark","data":{"name":…}}`; the callee's keys as
//! `{"event":"dtmf","dtmf":"2","duration":"…"}`.
//!
//! [`Audio`] converts between the call's 8 kHz frames and the stream's rate (rubato, through
//! [`Resampler`]) and keeps whatever part of a sample or a 20 ms chunk the agent's binary frames
//! split.
//!
//! It must not touch a socket or a clock: the driver does.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{json, Value};

use crate::media::resample::Resampler;
use crate::media::MediaError;

/// The WebSocket subprotocol jambonz's `listen` asks for.
pub const SUBPROTOCOL: &str = "audio.jambonz.org";

/// Rates a stream may use.
pub const RATES: [u32; 3] = [8000, 16_000, 24_000];

/// What the first frame says about the call.
#[derive(Debug, Clone)]
pub struct Metadata {
    pub call_sid: String,
    pub from: String,
    pub to: String,
    pub sample_rate: u32,
    pub custom: BTreeMap<String, String>,
}

/// The first text frame.
pub fn metadata_frame(m: &Metadata) -> String {
    json!({
        "callSid": m.call_sid,
        "from": m.from,
        "to": m.to,
        "direction": "outbound",
        "sampleRate": m.sample_rate,
        "mixType": "mono",
        "bidirectionalAudio": {"enabled": true, "streaming": true, "sampleRate": m.sample_rate},
        "metadata": m.custom,
    })
    .to_string()
}

/// A key the callee pressed.
pub fn dtmf_frame(digit: char, duration_ms: u32) -> String {
    json!({"event": "dtmf", "dtmf": digit.to_string(), "duration": duration_ms.to_string()})
        .to_string()
}

/// A mark's echo (its audio has been played, or cleared).
pub fn mark_frame(name: &str) -> String {
    json!({"type": "mark", "data": {"name": name, "event": "playout"}}).to_string()
}

/// What an agent's text frame asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    KillAudio,
    Disconnect,
    Mark(String),
    /// Anything else (its `type`).
    Other(String),
}

#[derive(Deserialize)]
struct TextFrame {
    #[serde(rename = "type")]
    kind: Option<String>,
    data: Option<Value>,
}

/// Reads one text frame from the agent.
pub fn parse_text(text: &str) -> Result<Command, String> {
    let frame: TextFrame = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let kind = frame.kind.unwrap_or_default();
    Ok(match kind.as_str() {
        "killAudio" => Command::KillAudio,
        "disconnect" => Command::Disconnect,
        "mark" => match frame
            .data
            .as_ref()
            .and_then(|d| d.get("name"))
            .and_then(Value::as_str)
        {
            Some(name) => Command::Mark(name.to_string()),
            None => return Err("`mark` frame without `data.name`".into()),
        },
        _ => Command::Other(kind),
    })
}

/// The audio both ways at the stream's rate.
pub struct Audio {
    rate: u32,
    /// 8 kHz → stream rate (the callee's audio).
    up: Resampler,
    /// Stream rate → 8 kHz (the agent's audio).
    down: Resampler,
    /// A byte left over from an odd-length binary frame.
    odd: Option<u8>,
    pcm_in: Vec<i16>,
    pcm_out: Vec<i16>,
}

impl Audio {
    pub fn new(rate: u32) -> Result<Audio, MediaError> {
        if !RATES.contains(&rate) {
            return Err(MediaError::Resample(format!(
                "an L16 stream runs at 8000, 16000 or 24000 Hz, not {rate}"
            )));
        }
        Ok(Audio {
            rate,
            up: Resampler::new(crate::media::SAMPLE_RATE, rate)?,
            down: Resampler::new(rate, crate::media::SAMPLE_RATE)?,
            odd: None,
            pcm_in: Vec::new(),
            pcm_out: Vec::new(),
        })
    }

    pub fn rate(&self) -> u32 {
        self.rate
    }

    /// One 20 ms frame of the callee's 8 kHz audio as the binary frame to send (may be empty
    /// while the resampler fills).
    pub fn to_agent(&mut self, frame_8k: &[i16]) -> Result<Vec<u8>, MediaError> {
        self.pcm_out.clear();
        self.up.process(frame_8k, &mut self.pcm_out)?;
        let mut bytes = Vec::with_capacity(self.pcm_out.len() * 2);
        for s in &self.pcm_out {
            bytes.extend_from_slice(&s.to_le_bytes());
        }
        Ok(bytes)
    }

    /// A binary frame from the agent, as 8 kHz samples for the callee (whole 20 ms chunks;
    /// the rest waits for the next frame).
    pub fn from_agent(&mut self, bytes: &[u8]) -> Result<Vec<i16>, MediaError> {
        self.pcm_in.clear();
        let mut rest = bytes;
        if let Some(lo) = self.odd.take() {
            if let Some((&hi, tail)) = rest.split_first() {
                self.pcm_in.push(i16::from_le_bytes([lo, hi]));
                rest = tail;
            } else {
                self.odd = Some(lo);
            }
        }
        let mut pairs = rest.chunks_exact(2);
        for p in &mut pairs {
            self.pcm_in.push(i16::from_le_bytes([p[0], p[1]]));
        }
        if let [last] = pairs.remainder() {
            self.odd = Some(*last);
        }
        let mut out = Vec::new();
        self.down.process(&self.pcm_in, &mut out)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_names_the_call_and_rate() {
        let m = Metadata {
            call_sid: "CAx".into(),
            from: "+15550001".into(),
            to: "+15550002".into(),
            sample_rate: 16_000,
            custom: BTreeMap::new(),
        };
        let v: Value = serde_json::from_str(&metadata_frame(&m)).expect("json");
        assert_eq!(v["callSid"], "CAx");
        assert_eq!(v["sampleRate"], 16_000);
        assert_eq!(v["mixType"], "mono");
        assert_eq!(v["direction"], "outbound");
        let d: Value = serde_json::from_str(&dtmf_frame('2', 250)).expect("json");
        assert_eq!(d["event"], "dtmf");
        assert_eq!(d["dtmf"], "2");
        assert_eq!(d["duration"], "250");
    }

    #[test]
    fn agent_text_frames_are_read() {
        assert_eq!(
            parse_text(r#"{"type":"killAudio"}"#),
            Ok(Command::KillAudio)
        );
        assert_eq!(
            parse_text(r#"{"type":"disconnect"}"#),
            Ok(Command::Disconnect)
        );
        assert_eq!(
            parse_text(r#"{"type":"mark","data":{"name":"m1"}}"#),
            Ok(Command::Mark("m1".into()))
        );
        assert!(parse_text(r#"{"type":"mark"}"#).is_err());
        assert!(parse_text("{").is_err());
        assert_eq!(
            parse_text(r#"{"type":"playAudio"}"#),
            Ok(Command::Other("playAudio".into()))
        );
    }

    #[test]
    fn rates_other_than_8_16_24_khz_are_refused() {
        assert!(Audio::new(44_100).is_err());
        assert!(Audio::new(48_000).is_err());
        assert!(Audio::new(16_000).is_ok());
    }

    #[test]
    fn audio_round_trips_through_16_khz_with_odd_splits() {
        let mut a = Audio::new(16_000).expect("rate");
        // 200 ms of a 400 Hz tone at 8 kHz, to the agent.
        let tone: Vec<i16> = (0..1600)
            .map(|n| {
                (8000.0 * (2.0 * std::f32::consts::PI * 400.0 * n as f32 / 8000.0).sin()) as i16
            })
            .collect();
        let mut wire = Vec::new();
        for f in tone.chunks(160) {
            wire.extend(a.to_agent(f).expect("resample"));
        }
        assert_eq!(wire.len(), 1600 * 2 * 2, "16 kHz, 2 bytes a sample");
        // Back from the agent in frames of odd byte counts.
        let mut back = Vec::new();
        for piece in wire.chunks(333) {
            back.extend(a.from_agent(piece).expect("resample"));
        }
        assert_eq!(back.len(), 1600, "every whole 20 ms comes back at 8 kHz");
        let energy: f64 = back[400..]
            .iter()
            .map(|&s| f64::from(s).powi(2))
            .sum::<f64>()
            / 1200.0;
        assert!(
            energy.sqrt() > 3000.0,
            "the tone survived: rms {}",
            energy.sqrt()
        );
    }
}
