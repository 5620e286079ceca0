-- Call events: every event belongs to an account (the events API filters by it), and a
-- call's events to one attempt: the contact's attempt number and the call's SIP Call-ID.
ALTER TABLE events ADD COLUMN account_id BIGINT;
ALTER TABLE events ADD COLUMN attempt INTEGER;
ALTER TABLE events ADD COLUMN call_id TEXT;
UPDATE events SET account_id = (SELECT c.account_id FROM campaigns c WHERE c.id = events.campaign_id)
 WHERE account_id IS NULL AND campaign_id IS NOT NULL;
CREATE INDEX events_account ON events(account_id, id);
