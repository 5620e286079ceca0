-- One word for who or what ended an answered call: ended_by (callee | agent | system |
-- max_duration | transferred) now holds it for every answered attempt, not only bridged
-- ones. The callee leg's hangup column (local | remote | max_duration | transferred) is
-- folded into it where the bridge left ended_by empty, then dropped.
UPDATE call_attempts
SET ended_by = CASE hangup
    WHEN 'remote' THEN 'callee'
    WHEN 'local' THEN 'system'
    WHEN 'max_duration' THEN 'max_duration'
    WHEN 'transferred' THEN 'transferred'
END
WHERE ended_by IS NULL AND hangup IS NOT NULL;

ALTER TABLE call_attempts DROP COLUMN hangup;
