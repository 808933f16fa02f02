-- flywheel storage, version 1.
--
-- Placeholders rendered by `flywheel migrate` (schemas/src/migrate.rs):
--   {{retention:TABLE}}  retention in days for TABLE (configurable, see docs/configuration.md)
-- With `--cluster NAME` every table below becomes a Replicated* table named TABLE_local on the
-- cluster, and TABLE becomes a Distributed table over it, so queries never change.
--
-- Principles (DESIGN.md, Storage): project_id first in every ORDER BY; event tables partitioned
-- by day and expired with TTL ... ttl_only_drop_parts (whole parts dropped, never mutations);
-- ReplacingMergeTree wherever a retry or a WAL replay may write a row twice; raw attributes kept
-- as Map(LowCardinality(String), String) with bloom-filter skip indexes; LowCardinality for
-- enumerations. State tables (patterns, eval_exports, api_keys) are not time-partitioned
-- because a replacement row must land in the same partition as the row it replaces.

-- Every span as received, whatever its instrumentation: nothing is dropped or reinterpreted.
CREATE TABLE IF NOT EXISTS spans
(
    project_id             LowCardinality(String),
    trace_id               String CODEC(ZSTD(1)),
    span_id                String CODEC(ZSTD(1)),
    parent_span_id         String CODEC(ZSTD(1)),
    trace_state            String CODEC(ZSTD(1)),
    name                   LowCardinality(String),
    kind                   LowCardinality(String),
    start_time             DateTime64(9, 'UTC') CODEC(Delta(8), ZSTD(1)),
    end_time               DateTime64(9, 'UTC') CODEC(Delta(8), ZSTD(1)),
    duration_ns            UInt64 CODEC(T64, ZSTD(1)),
    status_code            LowCardinality(String),
    status_message         String CODEC(ZSTD(1)),
    service_name           LowCardinality(String),
    scope_name             LowCardinality(String),
    scope_version          LowCardinality(String),
    resource_attributes    Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    scope_attributes       Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    attributes             Map(LowCardinality(String), String) CODEC(ZSTD(3)),
    dropped_attributes_count UInt32,
    event_times            Array(DateTime64(9, 'UTC')) CODEC(ZSTD(1)),
    event_names            Array(LowCardinality(String)) CODEC(ZSTD(1)),
    event_attributes       Array(Map(LowCardinality(String), String)) CODEC(ZSTD(3)),
    dropped_events_count   UInt32,
    link_trace_ids         Array(String) CODEC(ZSTD(1)),
    link_span_ids          Array(String) CODEC(ZSTD(1)),
    link_attributes        Array(Map(LowCardinality(String), String)) CODEC(ZSTD(1)),
    dropped_links_count    UInt32,
    ingested_at            DateTime64(9, 'UTC') CODEC(Delta(8), ZSTD(1)),
    INDEX idx_attr_keys mapKeys(attributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_attr_values mapValues(attributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_res_keys mapKeys(resource_attributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_res_values mapValues(resource_attributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_start start_time TYPE minmax GRANULARITY 1
)
ENGINE = ReplacingMergeTree(ingested_at)
PARTITION BY toDate(start_time)
ORDER BY (project_id, trace_id, span_id)
TTL toDateTime(start_time) + toIntervalDay({{retention:spans}})
SETTINGS ttl_only_drop_parts = 1;

-- One normalised row per model call, whatever convention the span used.
CREATE TABLE IF NOT EXISTS llm_calls
(
    project_id             LowCardinality(String),
    trace_id               String CODEC(ZSTD(1)),
    span_id                String CODEC(ZSTD(1)),
    parent_span_id         String CODEC(ZSTD(1)),
    session_id             String CODEC(ZSTD(1)),
    user_id                String CODEC(ZSTD(1)),
    feature                LowCardinality(String),
    service_name           LowCardinality(String),
    operation              LowCardinality(String),
    provider               LowCardinality(String),
    request_model          LowCardinality(String),
    response_model         LowCardinality(String),
    response_id            String CODEC(ZSTD(1)),
    start_time             DateTime64(9, 'UTC') CODEC(Delta(8), ZSTD(1)),
    end_time               DateTime64(9, 'UTC') CODEC(Delta(8), ZSTD(1)),
    duration_ns            UInt64 CODEC(T64, ZSTD(1)),
    time_to_first_token_ns Nullable(UInt64),
    -- Canonical message model as JSON: [{role, parts:[{type:text|tool_call|tool_result|..., ...}]}]
    input_messages         String CODEC(ZSTD(3)),
    output_messages        String CODEC(ZSTD(3)),
    -- Large and repeated on every call: stored once in `contents`, referenced by hash.
    system_instructions_hash String,
    tool_definitions_hash  String,
    input_text             String CODEC(ZSTD(3)),
    output_text            String CODEC(ZSTD(3)),
    tool_names             Array(LowCardinality(String)),
    finish_reasons         Array(LowCardinality(String)),
    input_tokens           UInt64,
    output_tokens          UInt64,
    cache_read_tokens      UInt64,
    cache_write_tokens     UInt64,
    reasoning_tokens       UInt64,
    cost_usd               Nullable(Float64),
    cost_source            LowCardinality(String),
    status                 LowCardinality(String),
    error_type             LowCardinality(String),
    error_message          String CODEC(ZSTD(1)),
    temperature            Nullable(Float64),
    top_p                  Nullable(Float64),
    max_tokens             Nullable(UInt64),
    seed                   Nullable(Int64),
    is_stream              Bool,
    prompt_template_id     LowCardinality(String),
    prompt_template_version LowCardinality(String),
    convention             LowCardinality(String),
    input_hash             String,
    metadata               Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    ingested_at            DateTime64(9, 'UTC') CODEC(Delta(8), ZSTD(1)),
    INDEX idx_trace trace_id TYPE bloom_filter(0.001) GRANULARITY 1,
    INDEX idx_session session_id TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_user user_id TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_response response_id TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_meta_keys mapKeys(metadata) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_meta_values mapValues(metadata) TYPE bloom_filter(0.01) GRANULARITY 1
)
ENGINE = ReplacingMergeTree(ingested_at)
PARTITION BY toDate(start_time)
ORDER BY (project_id, toStartOfHour(start_time), trace_id, span_id)
TTL toDateTime(start_time) + toIntervalDay({{retention:llm_calls}})
SETTINGS ttl_only_drop_parts = 1;

-- Prompt content that repeats across calls (system instructions, tool definitions), by hash.
-- Written at most once per day per hash: content still in use keeps reappearing in recent
-- partitions, so whole old partitions can expire like every other event table.
CREATE TABLE IF NOT EXISTS contents
(
    project_id             LowCardinality(String),
    hash                   String,
    kind                   LowCardinality(String),
    content                String CODEC(ZSTD(3)),
    last_seen              DateTime64(9, 'UTC')
)
ENGINE = ReplacingMergeTree(last_seen)
PARTITION BY toDate(last_seen)
ORDER BY (project_id, hash)
TTL toDateTime(last_seen) + toIntervalDay({{retention:llm_calls}})
SETTINGS ttl_only_drop_parts = 1;

-- Explicit and implicit user feedback, attached to a trace, span, session or message id.
CREATE TABLE IF NOT EXISTS signals
(
    project_id             LowCardinality(String),
    signal_id              String,
    idempotency_key        String,
    kind                   LowCardinality(String),
    name                   LowCardinality(String),
    source                 LowCardinality(String),
    timestamp              DateTime64(9, 'UTC') CODEC(Delta(8), ZSTD(1)),
    trace_id               String,
    span_id                String,
    session_id             String,
    message_id             String,
    user_id                String,
    feature                LowCardinality(String),
    value                  Nullable(Float64),
    scale                  Nullable(Float64),
    comment                String CODEC(ZSTD(3)),
    text                   String CODEC(ZSTD(3)),
    edit_distance          Nullable(UInt64),
    edit_ratio             Nullable(Float64),
    link_status            LowCardinality(String),
    attributes             Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    ingested_at            DateTime64(9, 'UTC') CODEC(Delta(8), ZSTD(1)),
    INDEX idx_trace trace_id TYPE bloom_filter(0.001) GRANULARITY 1,
    INDEX idx_session session_id TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_message message_id TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_attr_keys mapKeys(attributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_attr_values mapValues(attributes) TYPE bloom_filter(0.01) GRANULARITY 1
)
ENGINE = ReplacingMergeTree(ingested_at)
PARTITION BY toDate(timestamp)
ORDER BY (project_id, signal_id)
TTL toDateTime(timestamp) + toIntervalDay({{retention:signals}})
SETTINGS ttl_only_drop_parts = 1;

-- One row per failing LLM call (or trace) found by an analyzer run, with its reasons.
CREATE TABLE IF NOT EXISTS failures
(
    project_id             LowCardinality(String),
    trace_id               String,
    span_id                String,
    session_id             String,
    user_id                String,
    feature                LowCardinality(String),
    model                  LowCardinality(String),
    call_time              DateTime64(9, 'UTC'),
    reasons                Array(LowCardinality(String)),
    categories             Array(LowCardinality(String)),
    severity               Float32,
    details                String CODEC(ZSTD(3)),
    run_id                 String,
    detected_at            DateTime64(9, 'UTC'),
    INDEX idx_trace trace_id TYPE bloom_filter(0.001) GRANULARITY 1
)
ENGINE = ReplacingMergeTree(detected_at)
PARTITION BY toDate(call_time)
ORDER BY (project_id, trace_id, span_id)
TTL toDateTime(call_time) + toIntervalDay({{retention:failures}})
SETTINGS ttl_only_drop_parts = 1;

-- The current state of each failure pattern; a new row with a later updated_at replaces it.
CREATE TABLE IF NOT EXISTS patterns
(
    project_id             LowCardinality(String),
    pattern_id             String,
    label                  String,
    description            String,
    terms                  Array(String),
    facets                 Map(LowCardinality(String), String),
    status                 LowCardinality(String),
    trend                  LowCardinality(String),
    size                   UInt64,
    previous_size          UInt64,
    calls                  UInt64,
    traces                 UInt64,
    sessions               UInt64,
    users                  UInt64,
    severity               Float32,
    cost_usd               Float64,
    mean_latency_ms        Float64,
    signal_mix             Map(LowCardinality(String), UInt64),
    centroid               Array(Float32),
    first_seen             DateTime64(9, 'UTC'),
    last_seen              DateTime64(9, 'UTC'),
    run_id                 String,
    updated_at             DateTime64(9, 'UTC')
)
ENGINE = ReplacingMergeTree(updated_at)
ORDER BY (project_id, pattern_id);

-- Which failing calls belong to which pattern, per analyzer run.
CREATE TABLE IF NOT EXISTS pattern_members
(
    project_id             LowCardinality(String),
    pattern_id             String,
    run_id                 String,
    trace_id               String,
    span_id                String,
    call_time              DateTime64(9, 'UTC'),
    distance               Float32,
    added_at               DateTime64(9, 'UTC')
)
ENGINE = ReplacingMergeTree(added_at)
PARTITION BY toDate(call_time)
ORDER BY (project_id, pattern_id, trace_id, span_id)
TTL toDateTime(call_time) + toIntervalDay({{retention:failures}})
SETTINGS ttl_only_drop_parts = 1;

-- Every eval case exported, so that the same case is never exported twice.
CREATE TABLE IF NOT EXISTS eval_exports
(
    project_id             LowCardinality(String),
    case_hash              String,
    format                 LowCardinality(String),
    pattern_id             String,
    trace_id               String,
    span_id                String,
    path                   String,
    exported_at            DateTime64(9, 'UTC')
)
ENGINE = ReplacingMergeTree(exported_at)
ORDER BY (project_id, case_hash, format);

-- Project API keys, stored as SHA-256 hashes; revocation writes a newer row.
CREATE TABLE IF NOT EXISTS api_keys
(
    project_id             LowCardinality(String),
    key_id                 String,
    key_hash               String,
    name                   String,
    created_at             DateTime64(9, 'UTC'),
    revoked_at             Nullable(DateTime64(9, 'UTC')),
    updated_at             DateTime64(9, 'UTC')
)
ENGINE = ReplacingMergeTree(updated_at)
ORDER BY (project_id, key_id);
