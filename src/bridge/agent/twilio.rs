//! Twilio Media Streams, sans-IO: the JSON text frames outdial sends an agent (`connected`,
//! `start`, `media`, `dtmf`, `mark`, `stop`) exactly as Twilio writes them — counters as
//! strings, one sequence number per message from `start` on — and the agent's frames read
//! back (`media` payloads of any size, `mark`, `clear`).
//!
//! SIDs are Twilio-shaped: two letters and 32 lowercase hex digits. The call and stream SIDs
//! are drawn per call; the account SID is derived from the outdial account, so an agent's
//! REST call-control requests (Basic auth with that SID) can be checked against it.
//!
//! It must not touch a socket, a clock or audio samples: the driver does.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::Digest;

/// A Twilio-shaped SID: `prefix` + 32 lowercase hex digits.
pub fn random_sid(prefix: &str) -> String {
    let bytes: [u8; 16] = rand::random();
    let mut s = String::with_capacity(34);
    s.push_str(prefix);
    for b in bytes {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// The account SID (`AC…`) of an outdial account: stable, derived from its id.
pub fn account_sid(account_id: i64) -> String {
    let digest = sha2::Sha256::digest(format!("outdial-account:{account_id}").as_bytes());
    let mut s = String::with_capacity(34);
    s.push_str("AC");
    for b in digest.iter().take(16) {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// Whether `s` looks like a SID with this prefix (two letters and 32 hex digits).
pub fn is_sid(s: &str, prefix: &str) -> bool {
    s.len() == 34 && s.starts_with(prefix) && s[2..].bytes().all(|b| b.is_ascii_hexdigit())
}

/// The identity of one stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamIds {
    pub account_sid: String,
    pub call_sid: String,
    pub stream_sid: String,
}

/// Writes the frames outdial sends; see the module documentation.
#[derive(Debug)]
pub struct Encoder {
    ids: StreamIds,
    /// The next `sequenceNumber` (starts at 1 with `start`).
    sequence: u64,
    /// The next `media.chunk` (starts at 1).
    chunk: u64,
}

impl Encoder {
    pub fn new(ids: StreamIds) -> Encoder {
        Encoder {
            ids,
            sequence: 1,
            chunk: 1,
        }
    }

    pub fn ids(&self) -> &StreamIds {
        &self.ids
    }

    fn next_sequence(&mut self) -> String {
        let s = self.sequence.to_string();
        self.sequence += 1;
        s
    }

    /// The first frame, sent as soon as the socket is open.
    pub fn connected(&self) -> String {
        json!({"event": "connected", "protocol": "Call", "version": "1.0.0"}).to_string()
    }

    /// The stream starts (a person is on the line).
    pub fn start(&mut self, custom_parameters: &BTreeMap<String, String>) -> String {
        let seq = self.next_sequence();
        json!({
            "event": "start",
            "sequenceNumber": seq,
            "start": {
                "accountSid": self.ids.account_sid,
                "streamSid": self.ids.stream_sid,
                "callSid": self.ids.call_sid,
                "tracks": ["inbound"],
                "customParameters": custom_parameters,
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
            },
            "streamSid": self.ids.stream_sid,
        })
        .to_string()
    }

    /// 20 ms of the callee's audio (µ-law), `timestamp_ms` after the stream started.
    pub fn media(&mut self, ulaw: &[u8], timestamp_ms: u64) -> String {
        let seq = self.next_sequence();
        let chunk = self.chunk.to_string();
        self.chunk += 1;
        let payload = base64::engine::general_purpose::STANDARD.encode(ulaw);
        json!({
            "event": "media",
            "sequenceNumber": seq,
            "media": {
                "track": "inbound",
                "chunk": chunk,
                "timestamp": timestamp_ms.to_string(),
                "payload": payload,
            },
            "streamSid": self.ids.stream_sid,
        })
        .to_string()
    }

    /// A key the callee pressed.
    pub fn dtmf(&mut self, digit: char) -> String {
        let seq = self.next_sequence();
        json!({
            "event": "dtmf",
            "streamSid": self.ids.stream_sid,
            "sequenceNumber": seq,
            "dtmf": {"track": "inbound_track", "digit": digit.to_string()},
        })
        .to_string()
    }

    /// A mark's echo: its audio has been played (or cleared).
    pub fn mark(&mut self, name: &str) -> String {
        let seq = self.next_sequence();
        json!({
            "event": "mark",
            "sequenceNumber": seq,
            "streamSid": self.ids.stream_sid,
            "mark": {"name": name},
        })
        .to_string()
    }

    /// The last frame: the call is over.
    pub fn stop(&mut self) -> String {
        let seq = self.next_sequence();
        json!({
            "event": "stop",
            "sequenceNumber": seq,
            "streamSid": self.ids.stream_sid,
            "stop": {"accountSid": self.ids.account_sid, "callSid": self.ids.call_sid},
        })
        .to_string()
    }
}

/// What an agent's frame asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FromAgent {
    /// µ-law audio, any length.
    Media(Vec<u8>),
    Mark(String),
    Clear,
    /// A frame this bridge has nothing to do with (its event name).
    Other(String),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProtocolError {
    #[error("not a JSON object: {0}")]
    Json(String),
    #[error("`{event}` frame without `{field}`")]
    Missing { event: String, field: &'static str },
    #[error("`media.payload` is not base64: {0}")]
    Base64(String),
}

#[derive(Deserialize)]
struct Frame {
    event: Option<String>,
    media: Option<Value>,
    mark: Option<Value>,
}

/// Reads one text frame from the agent.
pub fn parse(text: &str) -> Result<FromAgent, ProtocolError> {
    let frame: Frame =
        serde_json::from_str(text).map_err(|e| ProtocolError::Json(e.to_string()))?;
    let event = frame.event.unwrap_or_default();
    match event.as_str() {
        "media" => {
            let payload = frame
                .media
                .as_ref()
                .and_then(|m| m.get("payload"))
                .and_then(Value::as_str)
                .ok_or(ProtocolError::Missing {
                    event: event.clone(),
                    field: "media.payload",
                })?;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(payload.trim())
                .map_err(|e| ProtocolError::Base64(e.to_string()))?;
            Ok(FromAgent::Media(bytes))
        }
        "mark" => {
            let name = frame
                .mark
                .as_ref()
                .and_then(|m| m.get("name"))
                .and_then(Value::as_str)
                .ok_or(ProtocolError::Missing {
                    event: event.clone(),
                    field: "mark.name",
                })?;
            Ok(FromAgent::Mark(name.to_string()))
        }
        "clear" => Ok(FromAgent::Clear),
        _ => Ok(FromAgent::Other(event)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> StreamIds {
        StreamIds {
            account_sid: account_sid(1),
            call_sid: random_sid("CA"),
            stream_sid: random_sid("MZ"),
        }
    }

    #[test]
    fn sids_have_twilios_shape() {
        let ids = ids();
        assert!(is_sid(&ids.account_sid, "AC"), "{}", ids.account_sid);
        assert!(is_sid(&ids.call_sid, "CA"));
        assert!(is_sid(&ids.stream_sid, "MZ"));
        assert_eq!(account_sid(1), account_sid(1));
        assert_ne!(account_sid(1), account_sid(2));
        assert!(!is_sid("CA123", "CA"));
    }

    #[test]
    fn frames_are_written_as_twilio_writes_them() {
        let ids = ids();
        let mut enc = Encoder::new(ids.clone());
        let c: Value = serde_json::from_str(&enc.connected()).expect("json");
        assert_eq!(c["event"], "connected");
        assert_eq!(c["protocol"], "Call");
        let mut custom = BTreeMap::new();
        custom.insert("AnsweredBy".to_string(), "human".to_string());
        let s: Value = serde_json::from_str(&enc.start(&custom)).expect("json");
        assert_eq!(s["sequenceNumber"], "1");
        assert_eq!(s["streamSid"], ids.stream_sid.as_str());
        assert_eq!(s["start"]["callSid"], ids.call_sid.as_str());
        assert_eq!(s["start"]["customParameters"]["AnsweredBy"], "human");
        assert_eq!(s["start"]["mediaFormat"]["encoding"], "audio/x-mulaw");
        assert_eq!(s["start"]["mediaFormat"]["sampleRate"], 8000);
        let m: Value = serde_json::from_str(&enc.media(&[0xff; 160], 20)).expect("json");
        assert_eq!(m["sequenceNumber"], "2");
        assert_eq!(m["media"]["chunk"], "1");
        assert_eq!(m["media"]["timestamp"], "20");
        assert_eq!(m["media"]["track"], "inbound");
        let d: Value = serde_json::from_str(&enc.dtmf('5')).expect("json");
        assert_eq!(d["sequenceNumber"], "3");
        assert_eq!(d["dtmf"]["digit"], "5");
        assert_eq!(d["dtmf"]["track"], "inbound_track");
        let k: Value = serde_json::from_str(&enc.mark("x")).expect("json");
        assert_eq!(k["mark"]["name"], "x");
        let e: Value = serde_json::from_str(&enc.stop()).expect("json");
        assert_eq!(e["sequenceNumber"], "5");
        assert_eq!(e["stop"]["callSid"], ids.call_sid.as_str());
    }

    #[test]
    fn agent_frames_are_read() {
        let media = r#"{"event":"media","streamSid":"MZ1","media":{"payload":"//8A"}}"#;
        assert_eq!(parse(media), Ok(FromAgent::Media(vec![0xff, 0xff, 0x00])));
        let mark = r#"{"event":"mark","streamSid":"MZ1","mark":{"name":"greeting"}}"#;
        assert_eq!(parse(mark), Ok(FromAgent::Mark("greeting".into())));
        assert_eq!(
            parse(r#"{"event":"clear","streamSid":"MZ1"}"#),
            Ok(FromAgent::Clear)
        );
        assert_eq!(
            parse(r#"{"event":"sendDigits"}"#),
            Ok(FromAgent::Other("sendDigits".into()))
        );
    }

    #[test]
    fn bad_agent_frames_are_errors_not_panics() {
        assert!(matches!(parse("nope"), Err(ProtocolError::Json(_))));
        assert!(matches!(parse("[1,2]"), Err(ProtocolError::Json(_))));
        assert!(matches!(
            parse(r#"{"event":"media"}"#),
            Err(ProtocolError::Missing { .. })
        ));
        assert!(matches!(
            parse(r#"{"event":"media","media":{"payload":"!!"}}"#),
            Err(ProtocolError::Base64(_))
        ));
        assert!(matches!(
            parse(r#"{"event":"mark","mark":{}}"#),
            Err(ProtocolError::Missing { .. })
        ));
    }
}
