-- Inbound calls (callbacks) are recorded with the attempts: `direction` says which way the
-- call went. Dialing statistics (answer rate, abandon rate, pacing, heat map, call counts)
-- read outbound attempts only; a contact's history shows both.
ALTER TABLE call_attempts ADD COLUMN direction TEXT NOT NULL DEFAULT 'outbound';
-- A callback finds the last call to its caller's number quickly.
CREATE INDEX call_attempts_destination ON call_attempts(destination, started_at);
