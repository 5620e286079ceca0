-- What kind of bridge an attempt had (sip, refer, twilio_ws, l16_ws, webrtc), its target, the
-- call SID an AI agent saw, and the AI agent's stream: time from the stream's start to the
-- agent's first audio, marks it placed, clears (barge-ins) it sent.
ALTER TABLE call_attempts ADD COLUMN bridge_kind TEXT;
ALTER TABLE call_attempts ADD COLUMN bridge_target TEXT;
ALTER TABLE call_attempts ADD COLUMN call_sid TEXT;
ALTER TABLE call_attempts ADD COLUMN agent_first_audio_ms INTEGER;
ALTER TABLE call_attempts ADD COLUMN agent_marks INTEGER;
ALTER TABLE call_attempts ADD COLUMN agent_clears INTEGER;
CREATE INDEX IF NOT EXISTS call_attempts_call_sid ON call_attempts (call_sid);
