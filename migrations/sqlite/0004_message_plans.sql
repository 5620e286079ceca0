-- Message plans: a campaign's ordered steps (JSON; NULL: play_message, then hang up), and
-- what an attempt's plan gathered: the digits pressed (in order) and the recording's file.
ALTER TABLE campaigns ADD COLUMN steps TEXT;
ALTER TABLE call_attempts ADD COLUMN digits TEXT NOT NULL DEFAULT '';
ALTER TABLE call_attempts ADD COLUMN recording TEXT;
