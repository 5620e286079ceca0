-- The import staging table's created_at index goes: the daily purge of abandoned imports
-- scans the table instead (it is empty between imports), and every staged row no longer
-- writes a third index. (SQLite compares text bytewise already.)
DROP INDEX IF EXISTS contact_imports_created;
