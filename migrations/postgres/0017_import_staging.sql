-- The import staging table is UNLOGGED: staged rows are written once, not also to the WAL
-- (a crash empties the table, which loses only imports that were not committed — they are
-- all or nothing anyway). Its keys compare bytes (COLLATE "C": phones and import ids are
-- ASCII, and a locale's comparison costs several times as much on every staged row). Its
-- created_at index goes: the daily purge of abandoned imports scans the table instead (it
-- is empty between imports), and every staged row writes one index less.
DROP INDEX IF EXISTS contact_imports_created;
ALTER TABLE contact_imports ALTER COLUMN import_id TYPE TEXT COLLATE "C";
ALTER TABLE contact_imports ALTER COLUMN phone TYPE TEXT COLLATE "C";
ALTER TABLE contact_imports SET UNLOGGED;
