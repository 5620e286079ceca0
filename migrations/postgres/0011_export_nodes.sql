-- The node an export job runs on: a node failing its own interrupted jobs at start, or the
-- jobs of a node found dead, leaves the jobs other live nodes are writing alone. Jobs made
-- before this migration name no node.
ALTER TABLE export_jobs ADD COLUMN node TEXT;
