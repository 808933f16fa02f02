-- The canonical class of a failed call's error and the HTTP status of its request, read at
-- ingest from the error's type, message and status attributes (schemas/src/error_class.rs):
-- one rate limit reads `rate_limit` whatever the library called it. The raw `error_type` and
-- `error_message` stay as sent. Rows written before this migration read '' and 0.
ALTER TABLE llm_calls ADD COLUMN IF NOT EXISTS error_class LowCardinality(String) DEFAULT '' AFTER error_message;
ALTER TABLE llm_calls ADD COLUMN IF NOT EXISTS http_status UInt16 DEFAULT 0 AFTER error_class;
