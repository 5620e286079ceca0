//! AI voice agents as records (itellico's "Agent": which AI agent makes the calls): what an
//! admin sets on one ([`AiAgentSpec`]), its validation with errors naming the field, and
//! [`AiAgentSpec::resolve_env`], which turns it into the plain [`AiAgentTarget`] a bridge
//! connects to, with the auth header's value read from the environment at call time.
//!
//! A campaign names its agent by `ai_agent_id`; its `ai_agent_url` is a shortcut meaning a
//! `twilio_ws` agent with that URL ([`AiAgentSpec::from_url`]). `Store::campaign_ai_agent`
//! gives the campaign's spec either way.
//!
//! What it must not do: open connections (the bridges in `src/bridge/` do), store or show
//! the auth header's value (only the name of the environment variable holding it is kept;
//! [`AiAgentTarget`]'s `Debug` hides the value), or read the clock.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::agents::{check_name, ConnectTarget};
use super::model::{word_enum, ModelError};

fn invalid(field: &'static str, reason: impl Into<String>) -> ModelError {
    ModelError::Invalid {
        field,
        reason: reason.into(),
    }
}

/// The most custom parameters an agent may carry.
pub const MAX_CUSTOM_PARAMETERS: usize = 64;
/// The longest custom parameter name and value.
pub const MAX_PARAMETER_NAME: usize = 128;
pub const MAX_PARAMETER_VALUE: usize = 1024;
/// The longest agent URL.
pub const MAX_URL: usize = 2048;
/// The L16 sample rates jambonz's `listen` speaks.
pub const L16_SAMPLE_RATES: [u32; 3] = [8000, 16000, 24000];
/// The L16 rate when none is set.
pub const DEFAULT_L16_SAMPLE_RATE: u32 = 8000;

word_enum! {
    /// How outdial talks to the agent.
    AiAgentKind {
        /// Twilio Media Streams over a WebSocket (JSON text frames, µ-law 8 kHz).
        TwilioWs = "twilio_ws" | "twilio",
        /// jambonz `listen`-style WebSocket: binary little-endian 16-bit PCM.
        L16Ws = "l16_ws" | "l16",
        /// WebRTC, offer/answer with pipecat's SmallWebRTC request handler.
        WebrtcSmallwebrtc = "webrtc_smallwebrtc" | "smallwebrtc",
        /// WebRTC, offer/answer with WHIP (RFC 9725).
        WebrtcWhip = "webrtc_whip" | "whip",
    }
}

impl AiAgentKind {
    /// A WebSocket kind (ws:// or wss:// URL); else WebRTC (http:// or https://).
    pub fn is_websocket(self) -> bool {
        matches!(self, AiAgentKind::TwilioWs | AiAgentKind::L16Ws)
    }

    /// The URL schemes this kind accepts.
    pub fn schemes(self) -> [&'static str; 2] {
        if self.is_websocket() {
            ["ws://", "wss://"]
        } else {
            ["http://", "https://"]
        }
    }
}

word_enum! {
    /// What happens to the call when the agent ends its side (closes the socket or the
    /// peer connection).
    OnAgentClose {
        /// The call is hung up.
        Hangup = "hangup" | "hang_up",
        /// The person is handed to `handoff_target` (a SIP target or an agent pool).
        Connect = "connect",
    }
}

/// What an admin sets on an AI agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AiAgentSpec {
    pub name: String,
    pub kind: AiAgentKind,
    /// ws:// or wss:// for the WebSocket kinds, http:// or https:// for WebRTC.
    pub url: String,
    /// Sent to the agent as they are (Twilio `customParameters`, the L16 metadata frame,
    /// SmallWebRTC `request_data`), beside the call's own (campaign, contact, numbers).
    pub custom_parameters: BTreeMap<String, String>,
    /// The header the agent authenticates with (`Authorization`, `X-Api-Key`).
    pub auth_header_name: Option<String>,
    /// The environment variable holding that header's value (read at call time).
    pub auth_header_env: Option<String>,
    /// L16 only: 8000, 16000 or 24000 (default 8000).
    pub sample_rate: Option<u32>,
    pub on_agent_close: OnAgentClose,
    /// Where the person goes when the agent closes and `on_agent_close` is `connect`: a
    /// SIP URI, a number or an agent pool name (as a campaign's `connect_to`).
    pub handoff_target: Option<String>,
}

impl Default for AiAgentSpec {
    fn default() -> Self {
        AiAgentSpec {
            name: String::new(),
            kind: AiAgentKind::TwilioWs,
            url: String::new(),
            custom_parameters: BTreeMap::new(),
            auth_header_name: None,
            auth_header_env: None,
            sample_rate: None,
            on_agent_close: OnAgentClose::Hangup,
            handoff_target: None,
        }
    }
}

/// Why an agent cannot be used for a call now.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AiAgentError {
    /// The environment variable named by `auth_header_env` is not set (or not UTF-8).
    #[error("AI agent {agent:?}: environment variable {variable} (auth_header_env) is not set")]
    MissingEnv { agent: String, variable: String },
    /// The environment variable holds something no HTTP header may carry.
    #[error("AI agent {agent:?}: environment variable {variable} (auth_header_env) holds a line break or a control character")]
    BadEnvValue { agent: String, variable: String },
}

/// An AI agent resolved for one call: everything a bridge needs, the auth header's value
/// included. Its `Debug` never shows that value.
#[derive(Clone, PartialEq, Eq)]
pub struct AiAgentTarget {
    pub name: String,
    pub kind: AiAgentKind,
    pub url: String,
    /// (header name, value from the environment).
    pub auth_header: Option<(String, String)>,
    pub custom_parameters: BTreeMap<String, String>,
    /// The audio rate on the agent side: the L16 rate, else 8000 (µ-law / PCMU).
    pub sample_rate: u32,
    pub on_agent_close: OnAgentClose,
    pub handoff_target: Option<String>,
}

impl std::fmt::Debug for AiAgentTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AiAgentTarget")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("url", &self.url)
            .field(
                "auth_header",
                &self.auth_header.as_ref().map(|(name, _)| (name, "***")),
            )
            .field("custom_parameters", &self.custom_parameters)
            .field("sample_rate", &self.sample_rate)
            .field("on_agent_close", &self.on_agent_close)
            .field("handoff_target", &self.handoff_target)
            .finish()
    }
}

/// An HTTP header name: RFC 9110 token characters.
fn is_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// An environment variable name: a letter or `_`, then letters, digits or `_`.
fn is_env_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

impl AiAgentSpec {
    /// The agent a campaign's `ai_agent_url` stands for: Twilio Media Streams at `url`,
    /// no auth header, hang up when it closes.
    pub fn from_url(url: &str) -> AiAgentSpec {
        AiAgentSpec {
            name: "ai_agent_url".into(),
            kind: AiAgentKind::TwilioWs,
            url: url.trim().to_string(),
            ..AiAgentSpec::default()
        }
    }

    /// Checks every field; the first problem names it.
    pub fn validate(&self) -> Result<(), ModelError> {
        check_name("name", &self.name)?;
        let url = self.url.trim();
        if url.is_empty() {
            return Err(invalid("url", "must not be empty"));
        }
        let schemes = self.kind.schemes();
        let lower = url.to_ascii_lowercase();
        let Some(rest) = schemes.iter().find_map(|scheme| lower.strip_prefix(scheme)) else {
            return Err(invalid(
                "url",
                format!(
                    "{url:?} is not a {} or {} URL (kind {})",
                    schemes[0], schemes[1], self.kind
                ),
            ));
        };
        let host = rest.split(['/', '?', '#']).next().unwrap_or("");
        if host.is_empty() || url.contains(char::is_whitespace) || url.len() > MAX_URL {
            return Err(invalid("url", format!("{url:?} is not a usable URL")));
        }
        if self.custom_parameters.len() > MAX_CUSTOM_PARAMETERS {
            return Err(invalid(
                "custom_parameters",
                format!("more than {MAX_CUSTOM_PARAMETERS} parameters"),
            ));
        }
        for (name, value) in &self.custom_parameters {
            if name.trim().is_empty() || name.chars().count() > MAX_PARAMETER_NAME {
                return Err(invalid(
                    "custom_parameters",
                    format!("name {name:?} must be 1-{MAX_PARAMETER_NAME} characters"),
                ));
            }
            if value.chars().count() > MAX_PARAMETER_VALUE {
                return Err(invalid(
                    "custom_parameters",
                    format!("{name:?} is longer than {MAX_PARAMETER_VALUE} characters"),
                ));
            }
        }
        match (&self.auth_header_name, &self.auth_header_env) {
            (Some(name), Some(env)) => {
                if !is_header_name(name) {
                    return Err(invalid(
                        "auth_header_name",
                        format!("{name:?} is not an HTTP header name"),
                    ));
                }
                if !is_env_name(env) {
                    return Err(invalid(
                        "auth_header_env",
                        format!("{env:?} is not an environment variable name (letters, digits, _)"),
                    ));
                }
            }
            (Some(_), None) => {
                return Err(invalid(
                    "auth_header_env",
                    "is required with auth_header_name (the variable that holds the value)",
                ))
            }
            (None, Some(_)) => {
                return Err(invalid(
                    "auth_header_name",
                    "is required with auth_header_env",
                ))
            }
            (None, None) => {}
        }
        match (self.kind, self.sample_rate) {
            (AiAgentKind::L16Ws, Some(rate)) if !L16_SAMPLE_RATES.contains(&rate) => {
                return Err(invalid(
                    "sample_rate",
                    format!("{rate} is not 8000, 16000 or 24000"),
                ))
            }
            (AiAgentKind::L16Ws, _) | (_, None) => {}
            (kind, Some(_)) => {
                return Err(invalid(
                    "sample_rate",
                    format!("is for l16_ws agents only (this one is {kind})"),
                ))
            }
        }
        let handoff = self.handoff_target.as_deref().map(str::trim).unwrap_or("");
        if self.on_agent_close == OnAgentClose::Connect && handoff.is_empty() {
            return Err(invalid(
                "handoff_target",
                "is required when on_agent_close is connect",
            ));
        }
        if !handoff.is_empty() {
            if let ConnectTarget::Sip(uri) = ConnectTarget::parse(handoff) {
                let rest = uri.split_once(':').map_or("", |(_, r)| r);
                if rest.is_empty() || rest.contains(char::is_whitespace) {
                    return Err(invalid(
                        "handoff_target",
                        format!("{uri:?} is not a SIP URI"),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The agent pool `handoff_target` names, if it names one.
    pub fn handoff_pool(&self) -> Option<String> {
        let target = self.handoff_target.as_deref()?;
        ConnectTarget::parse(target).pool().map(str::to_string)
    }

    /// The agent for one call, the auth header's value read from the process environment
    /// now. Fails naming the variable when it is not set.
    pub fn resolve_env(&self) -> Result<AiAgentTarget, AiAgentError> {
        self.resolve_with(|name| std::env::var(name).ok())
    }

    /// [`AiAgentSpec::resolve_env`] with the environment given as a lookup.
    pub fn resolve_with(
        &self,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<AiAgentTarget, AiAgentError> {
        let auth_header = match (&self.auth_header_name, &self.auth_header_env) {
            (Some(name), Some(variable)) => {
                let value = lookup(variable).ok_or_else(|| AiAgentError::MissingEnv {
                    agent: self.name.clone(),
                    variable: variable.clone(),
                })?;
                if value.chars().any(|c| c.is_control() && c != '\t') {
                    return Err(AiAgentError::BadEnvValue {
                        agent: self.name.clone(),
                        variable: variable.clone(),
                    });
                }
                Some((name.clone(), value))
            }
            _ => None,
        };
        let sample_rate = match self.kind {
            AiAgentKind::L16Ws => self.sample_rate.unwrap_or(DEFAULT_L16_SAMPLE_RATE),
            _ => 8000,
        };
        Ok(AiAgentTarget {
            name: self.name.clone(),
            kind: self.kind,
            url: self.url.trim().to_string(),
            auth_header,
            custom_parameters: self.custom_parameters.clone(),
            sample_rate,
            on_agent_close: self.on_agent_close,
            handoff_target: self
                .handoff_target
                .as_deref()
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(str::to_string),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent() -> AiAgentSpec {
        AiAgentSpec {
            name: "Sales bot".into(),
            url: "wss://agent.example/stream".into(),
            ..AiAgentSpec::default()
        }
    }

    fn field(spec: AiAgentSpec) -> &'static str {
        match spec.validate() {
            Err(ModelError::Invalid { field, .. }) => field,
            other => panic!("expected an error, got {other:?}"),
        }
    }

    #[test]
    fn urls_follow_the_kind() {
        assert_eq!(agent().validate(), Ok(()));
        assert_eq!(
            field(AiAgentSpec {
                url: "https://agent.example/offer".into(),
                ..agent()
            }),
            "url"
        );
        let webrtc = AiAgentSpec {
            kind: AiAgentKind::WebrtcSmallwebrtc,
            url: "http://127.0.0.1:7860/api/offer".into(),
            ..agent()
        };
        assert_eq!(webrtc.validate(), Ok(()));
        assert_eq!(
            field(AiAgentSpec {
                url: "ws://127.0.0.1:7860/ws".into(),
                ..webrtc
            }),
            "url"
        );
        assert_eq!(
            field(AiAgentSpec {
                url: "wss:///nohost".into(),
                ..agent()
            }),
            "url"
        );
    }

    #[test]
    fn sample_rate_is_for_l16_only() {
        let l16 = AiAgentSpec {
            kind: AiAgentKind::L16Ws,
            sample_rate: Some(16000),
            ..agent()
        };
        assert_eq!(l16.validate(), Ok(()));
        assert_eq!(
            field(AiAgentSpec {
                sample_rate: Some(44100),
                ..l16.clone()
            }),
            "sample_rate"
        );
        assert_eq!(
            field(AiAgentSpec {
                sample_rate: Some(8000),
                ..agent()
            }),
            "sample_rate"
        );
        let resolved = AiAgentSpec {
            sample_rate: None,
            ..l16
        }
        .resolve_with(|_| None)
        .unwrap();
        assert_eq!(resolved.sample_rate, 8000);
    }

    #[test]
    fn header_value_comes_from_the_environment_and_is_never_shown() {
        let spec = AiAgentSpec {
            auth_header_name: Some("Authorization".into()),
            auth_header_env: Some("SALES_BOT_TOKEN".into()),
            custom_parameters: BTreeMap::from([("tier".into(), "gold".into())]),
            ..agent()
        };
        assert_eq!(spec.validate(), Ok(()));
        let target = spec
            .resolve_with(|name| (name == "SALES_BOT_TOKEN").then(|| "Bearer s3cret".into()))
            .unwrap();
        assert_eq!(
            target.auth_header,
            Some(("Authorization".into(), "Bearer s3cret".into()))
        );
        assert_eq!(target.custom_parameters["tier"], "gold");
        assert!(!format!("{target:?}").contains("s3cret"));
        let err = spec.resolve_with(|_| None).unwrap_err();
        assert!(err.to_string().contains("SALES_BOT_TOKEN"), "{err}");
        let err = spec
            .resolve_with(|_| Some("a\r\nInjected: 1".into()))
            .unwrap_err();
        assert!(matches!(err, AiAgentError::BadEnvValue { .. }), "{err}");
        assert_eq!(
            field(AiAgentSpec {
                auth_header_env: None,
                ..spec.clone()
            }),
            "auth_header_env"
        );
        assert_eq!(
            field(AiAgentSpec {
                auth_header_env: Some("1BAD-NAME".into()),
                ..spec.clone()
            }),
            "auth_header_env"
        );
        assert_eq!(
            field(AiAgentSpec {
                auth_header_name: Some("Bad Header".into()),
                ..spec
            }),
            "auth_header_name"
        );
    }

    #[test]
    fn connect_on_close_needs_a_target() {
        let spec = AiAgentSpec {
            on_agent_close: OnAgentClose::Connect,
            ..agent()
        };
        assert_eq!(field(spec.clone()), "handoff_target");
        let to_pool = AiAgentSpec {
            handoff_target: Some("sales".into()),
            ..spec.clone()
        };
        assert_eq!(to_pool.validate(), Ok(()));
        assert_eq!(to_pool.handoff_pool().as_deref(), Some("sales"));
        let to_uri = AiAgentSpec {
            handoff_target: Some("sip:desk@127.0.0.1:5070".into()),
            ..spec
        };
        assert_eq!(to_uri.validate(), Ok(()));
        assert_eq!(to_uri.handoff_pool(), None);
    }

    #[test]
    fn a_url_shortcut_is_a_twilio_agent() {
        let spec = AiAgentSpec::from_url(" ws://127.0.0.1:9000/media ");
        assert_eq!(spec.kind, AiAgentKind::TwilioWs);
        assert_eq!(spec.validate(), Ok(()));
        let target = spec.resolve_env().unwrap();
        assert_eq!(target.url, "ws://127.0.0.1:9000/media");
        assert_eq!(target.on_agent_close, OnAgentClose::Hangup);
        assert_eq!(target.auth_header, None);
    }
}
