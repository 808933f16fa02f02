-- The analyzer's own state beside failures, patterns and pattern_members.

-- Sentence embeddings cached by the hash of the embedded text, so that a re-run embeds only
-- texts it has not seen. Keyed per project (isolation, retention) and per model (a new model
-- never reuses another's vectors).
CREATE TABLE IF NOT EXISTS embeddings
(
    project_id             LowCardinality(String),
    model                  LowCardinality(String),
    text_hash              String,
    vector                 Array(Float32) CODEC(ZSTD(1)),
    created_at             DateTime64(9, 'UTC')
)
ENGINE = ReplacingMergeTree(created_at)
ORDER BY (project_id, model, text_hash)
TTL toDateTime(created_at) + toIntervalDay({{retention:failures}})
SETTINGS ttl_only_drop_parts = 1;

-- Triage decisions (new, acknowledged, fixed, wont_fix), kept apart from the analyzer's rows
-- so that a run writing patterns can never overwrite a decision taken meanwhile.
CREATE TABLE IF NOT EXISTS pattern_triage
(
    project_id             LowCardinality(String),
    pattern_id             String,
    status                 LowCardinality(String),
    note                   String,
    updated_by             String,
    updated_at             DateTime64(9, 'UTC')
)
ENGINE = ReplacingMergeTree(updated_at)
ORDER BY (project_id, pattern_id);

-- One row per analyzer run: its window, what it found and how (embedding model or lexical).
CREATE TABLE IF NOT EXISTS analysis_runs
(
    project_id             LowCardinality(String),
    run_id                 String,
    started_at             DateTime64(9, 'UTC'),
    finished_at            DateTime64(9, 'UTC'),
    window_start           DateTime64(9, 'UTC'),
    window_end             DateTime64(9, 'UTC'),
    calls                  UInt64,
    failures               UInt64,
    clustered              UInt64,
    patterns               UInt64,
    representation         LowCardinality(String),
    details                String CODEC(ZSTD(3))
)
ENGINE = ReplacingMergeTree(finished_at)
ORDER BY (project_id, started_at, run_id);
