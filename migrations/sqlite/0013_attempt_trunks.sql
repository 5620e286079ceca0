-- Which trunk of its profile each attempt ended on, the trunks it failed over from (a JSON
-- list of {trunk, code, reason}; empty when none), the Special Information Tone heard in early
-- media that ended it (VC, IC, RO, NC, IO, unknown), and the RTP source checks' figures.
ALTER TABLE call_attempts ADD COLUMN trunk TEXT;
ALTER TABLE call_attempts ADD COLUMN failover TEXT NOT NULL DEFAULT '';
ALTER TABLE call_attempts ADD COLUMN sit TEXT;
ALTER TABLE call_attempts ADD COLUMN rtp_rejected_source BIGINT NOT NULL DEFAULT 0;
ALTER TABLE call_attempts ADD COLUMN rtp_latched_to TEXT;
