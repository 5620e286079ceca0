//! The `twilio` webhook format: Twilio's status-callback form fields, for receivers built for
//! Twilio (`CallSid`, `AccountSid`, `CallStatus`, `AnsweredBy`, `CallDuration`, `From`, `To`,
//! `Direction`, `Timestamp`, `SequenceNumber`, `MachineDetectionDuration`), plus
//! `OutdialEvent` (the event's kind), `CampaignId`, `ContactId` and `CallId` (SIP).
//!
//! `CallSid` is `CA` and 32 hex digits made from the SIP Call-ID (the same for every event of
//! a call), `AccountSid` `AC` and the account's id. `CallStatus` follows Twilio's words:
//! `initiated`, `ringing`, `in-progress` from the answer on, and at the end `completed`,
//! `busy` (busy or declined), `no-answer` or `failed` (everything else).
//!
//! Must not: invent a value it does not have (a field without one is left out).

use sha2::{Digest, Sha256};

use crate::store::events::Event;

/// The body, form-encoded.
pub fn body(event: &Event) -> String {
    let d = &event.detail;
    let text = |k: &str| d.get(k).and_then(|v| v.as_str()).map(str::to_string);
    let num = |k: &str| d.get(k).and_then(|v| v.as_i64());
    let mut fields: Vec<(&str, String)> = Vec::new();
    if let Some(call) = &event.call_id {
        fields.push(("CallSid", call_sid(call)));
        fields.push(("CallId", call.clone()));
    }
    if let Some(account) = event.account_id {
        fields.push(("AccountSid", format!("AC{account:032x}")));
    }
    let status = match event.kind.as_str() {
        "initiated" => Some("initiated"),
        "ringing" | "early_media" => Some("ringing"),
        "completed" => Some(match text("outcome").as_deref() {
            Some("answered") => "completed",
            Some("busy") | Some("rejected") => "busy",
            Some("no_answer") => "no-answer",
            _ => "failed",
        }),
        _ => Some("in-progress"),
    };
    if let Some(s) = status {
        fields.push(("CallStatus", s.to_string()));
    }
    if let Some(by) = text("answered_by") {
        fields.push(("AnsweredBy", by));
    }
    if event.kind == "amd" {
        if let Some(ms) = num("decision_ms") {
            fields.push(("MachineDetectionDuration", ms.to_string()));
        }
    }
    if event.kind == "completed" {
        if let Some(ms) = num("duration_ms") {
            fields.push(("CallDuration", ((ms + 500) / 1000).to_string()));
        }
        if let Some(code) = num("sip_code") {
            fields.push(("SipResponseCode", code.to_string()));
        }
    }
    if let Some(to) = text("to") {
        fields.push(("To", to));
    }
    if let Some(from) = text("from") {
        fields.push(("From", from));
    }
    if let Some(dir) = text("direction") {
        let dir = if dir == "inbound" {
            "inbound"
        } else {
            "outbound-api"
        };
        fields.push(("Direction", dir.to_string()));
    }
    if let Some(digit) = text("digit") {
        fields.push(("Digits", digit));
    }
    fields.push(("OutdialEvent", event.kind.clone()));
    if let Some(c) = event.campaign_id {
        fields.push(("CampaignId", c.to_string()));
    }
    if let Some(c) = event.contact_id {
        fields.push(("ContactId", c.to_string()));
    }
    fields.push(("SequenceNumber", event.id.to_string()));
    if let Some(t) = chrono::DateTime::from_timestamp_millis(event.at) {
        fields.push(("Timestamp", t.to_rfc2822()));
    }
    form(&fields)
}

/// `CA` and 32 hex digits from the SIP Call-ID.
pub fn call_sid(call_id: &str) -> String {
    let digest = Sha256::digest(call_id.as_bytes());
    let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
    format!("CA{hex}")
}

/// `application/x-www-form-urlencoded`.
fn form(fields: &[(&str, String)]) -> String {
    fields
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'*' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(kind: &str, detail: serde_json::Value) -> Event {
        Event {
            id: 42,
            account_id: Some(3),
            campaign_id: Some(5),
            contact_id: Some(9),
            attempt: Some(1),
            call_id: Some("abc@outdial".into()),
            kind: kind.into(),
            detail,
            at: 1_700_000_000_000,
        }
    }

    fn field(body: &str, name: &str) -> Option<String> {
        body.split('&').find_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            (k == name).then(|| v.to_string())
        })
    }

    #[test]
    fn twilio_fields_for_the_start_the_verdict_and_the_end() {
        let start = body(&event(
            "initiated",
            json!({"direction": "outbound", "to": "+15551234567", "from": "+12025550100"}),
        ));
        assert_eq!(field(&start, "CallStatus").as_deref(), Some("initiated"));
        assert_eq!(field(&start, "To").as_deref(), Some("%2B15551234567"));
        assert_eq!(field(&start, "Direction").as_deref(), Some("outbound-api"));
        let sid = field(&start, "CallSid").unwrap();
        assert!(sid.starts_with("CA") && sid.len() == 34, "{sid}");
        let amd = body(&event(
            "amd",
            json!({"answered_by": "machine_start", "decision_ms": 1800}),
        ));
        assert_eq!(
            field(&amd, "CallSid"),
            Some(sid.clone()),
            "one SID per call"
        );
        assert_eq!(field(&amd, "AnsweredBy").as_deref(), Some("machine_start"));
        assert_eq!(
            field(&amd, "MachineDetectionDuration").as_deref(),
            Some("1800")
        );
        let end = body(&event(
            "completed",
            json!({"outcome": "answered", "duration_ms": 12_600, "sip_code": 200}),
        ));
        assert_eq!(field(&end, "CallStatus").as_deref(), Some("completed"));
        assert_eq!(field(&end, "CallDuration").as_deref(), Some("13"));
        assert_eq!(
            field(&end, "AccountSid").as_deref(),
            Some("AC00000000000000000000000000000003")
        );
        assert_eq!(field(&end, "SequenceNumber").as_deref(), Some("42"));
        let busy = body(&event("completed", json!({"outcome": "busy"})));
        assert_eq!(field(&busy, "CallStatus").as_deref(), Some("busy"));
        assert_eq!(encode("a b&c=d/é"), "a+b%26c%3Dd%2F%C3%A9");
    }
}
