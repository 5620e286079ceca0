//! Call outcomes: how a final SIP response (or its absence) reads to a dialer.
//!
//! Pure mapping, no I/O. The names are the ones campaigns, reports and the CLI's
//! JSON use; the SIP code and reason phrase are always kept next to the outcome.

use serde::Serialize;

/// What became of one call attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// 2xx: the callee (or its voicemail, or a PBX) answered.
    Answered,
    /// 486 Busy Here, 600 Busy Everywhere.
    Busy,
    /// 603 Decline: the callee refused the call.
    Rejected,
    /// No answer before the ring timeout (we sent CANCEL), or 408.
    NoAnswer,
    /// 480 Temporarily Unavailable.
    Unavailable,
    /// 404, 484, 410, 604: the number does not exist.
    InvalidNumber,
    /// Everything else: other 4xx, 5xx, 6xx, auth failure, no response at all.
    Failed,
}

impl Outcome {
    /// Maps a final (non-1xx) response code to an outcome.
    pub fn from_final_code(code: u16) -> Outcome {
        match code {
            200..=299 => Outcome::Answered,
            486 | 600 => Outcome::Busy,
            603 => Outcome::Rejected,
            404 | 410 | 484 | 604 => Outcome::InvalidNumber,
            480 => Outcome::Unavailable,
            408 => Outcome::NoAnswer,
            _ => Outcome::Failed,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Answered => "answered",
            Outcome::Busy => "busy",
            Outcome::Rejected => "rejected",
            Outcome::NoAnswer => "no_answer",
            Outcome::Unavailable => "unavailable",
            Outcome::InvalidNumber => "invalid_number",
            Outcome::Failed => "failed",
        }
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_the_codes_a_carrier_sends() {
        let cases = [
            (200, Outcome::Answered),
            (202, Outcome::Answered),
            (486, Outcome::Busy),
            (600, Outcome::Busy),
            (603, Outcome::Rejected),
            (404, Outcome::InvalidNumber),
            (484, Outcome::InvalidNumber),
            (410, Outcome::InvalidNumber),
            (604, Outcome::InvalidNumber),
            (480, Outcome::Unavailable),
            (408, Outcome::NoAnswer),
            (403, Outcome::Failed),
            (407, Outcome::Failed),
            (487, Outcome::Failed),
            (500, Outcome::Failed),
            (503, Outcome::Failed),
            (606, Outcome::Failed),
        ];
        for (code, want) in cases {
            assert_eq!(Outcome::from_final_code(code), want, "code {code}");
        }
    }

    #[test]
    fn serializes_as_snake_case() {
        assert_eq!(
            serde_json::to_string(&Outcome::InvalidNumber).unwrap(),
            "\"invalid_number\""
        );
        assert_eq!(Outcome::NoAnswer.to_string(), "no_answer");
    }
}
