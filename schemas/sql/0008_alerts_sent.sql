-- Alerts `flywheel watch` delivered: one row per alert and destination, written once the
-- webhook accepted it (2xx). A tick reads these before sending, so that an event is never sent
-- twice to the same place, however often the watch runs or restarts; an alert whose delivery
-- failed has no row and is tried again at the next tick. Kept like the analysis (no TTL):
-- a handful of rows a day.
CREATE TABLE IF NOT EXISTS alerts_sent
(
    project_id             LowCardinality(String),
    alert_id               String,
    destination            String,
    kind                   LowCardinality(String),
    title                  String,
    body                   String CODEC(ZSTD(3)),
    sent_at                DateTime64(9, 'UTC')
)
ENGINE = ReplacingMergeTree(sent_at)
ORDER BY (project_id, alert_id, destination);
