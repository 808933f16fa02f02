-- Names an LLM gave to patterns (`flywheel analyze --llm-names`, off by default). Kept apart
-- from the analyzer's rows, like triage: a pattern is named once, and every later run shows
-- that name instead of asking again (names stay stable; the rule-built label stays in facets).
CREATE TABLE IF NOT EXISTS pattern_names
(
    project_id             LowCardinality(String),
    pattern_id             String,
    name                   String,
    model                  String,
    rule_label             String,
    named_at               DateTime64(9, 'UTC')
)
ENGINE = ReplacingMergeTree(named_at)
ORDER BY (project_id, pattern_id);
