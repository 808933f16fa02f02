-- A pattern's lifecycle: when it was last fixed (triaged `fixed`, or resolved by a run that
-- found no member), and when and in which release (`service.version`) it came back. A pattern
-- that comes back after a fix is reopened as `regressed` (analyzer/src/lifecycle.rs). Rows
-- written before this migration read the epoch ("never") and ''.
ALTER TABLE patterns ADD COLUMN IF NOT EXISTS fixed_at DateTime64(9, 'UTC') DEFAULT 0 AFTER last_seen;
ALTER TABLE patterns ADD COLUMN IF NOT EXISTS regressed_at DateTime64(9, 'UTC') DEFAULT 0 AFTER fixed_at;
ALTER TABLE patterns ADD COLUMN IF NOT EXISTS regressed_in String DEFAULT '' AFTER regressed_at;
