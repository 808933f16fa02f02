-- Every OTLP log record as received. GenAI content events (1.28–1.36 per-message events,
-- the 1.37 operation-details event) are also joined into llm_calls; signals sent as log
-- records are also turned into signals. Nothing a client sent is dropped.
CREATE TABLE IF NOT EXISTS log_records
(
    project_id             LowCardinality(String),
    record_id              String,
    timestamp              DateTime64(9, 'UTC') CODEC(Delta(8), ZSTD(1)),
    observed_timestamp     DateTime64(9, 'UTC') CODEC(Delta(8), ZSTD(1)),
    trace_id               String CODEC(ZSTD(1)),
    span_id                String CODEC(ZSTD(1)),
    severity_number        UInt8,
    severity_text          LowCardinality(String),
    event_name             LowCardinality(String),
    body                   String CODEC(ZSTD(3)),
    service_name           LowCardinality(String),
    scope_name             LowCardinality(String),
    resource_attributes    Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    attributes             Map(LowCardinality(String), String) CODEC(ZSTD(3)),
    ingested_at            DateTime64(9, 'UTC') CODEC(Delta(8), ZSTD(1)),
    INDEX idx_trace trace_id TYPE bloom_filter(0.001) GRANULARITY 1,
    INDEX idx_attr_keys mapKeys(attributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_attr_values mapValues(attributes) TYPE bloom_filter(0.01) GRANULARITY 1
)
ENGINE = ReplacingMergeTree(ingested_at)
PARTITION BY toDate(timestamp)
ORDER BY (project_id, trace_id, span_id, record_id)
TTL toDateTime(timestamp) + toIntervalDay({{retention:spans}})
SETTINGS ttl_only_drop_parts = 1;
