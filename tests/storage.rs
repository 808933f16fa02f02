//! The storage contract against the real local ClickHouse engine: the schema the migrations
//! create, their idempotency, exact round trips of every row type, and clear errors.

mod common;

use std::collections::BTreeMap;

use clickhouse::Row;
use common::{TestDb, stderr, stdout};
use flywheel_schemas::StoreError;
use flywheel_schemas::migrate::{self, MigrateOptions};
use flywheel_schemas::rows::*;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

#[derive(Debug, Row, Deserialize, PartialEq)]
struct Column {
    table: String,
    name: String,
    r#type: String,
}

#[derive(Debug, Row, Deserialize, PartialEq)]
struct Table {
    name: String,
    engine: String,
    sorting_key: String,
    partition_key: String,
    create_table_query: String,
}

async fn columns(store: &flywheel_schemas::Store) -> Vec<Column> {
    store
        .query("SELECT table, name, type FROM system.columns WHERE database = currentDatabase() ORDER BY table, position")
        .fetch_all()
        .await
        .unwrap()
}

async fn tables(store: &flywheel_schemas::Store) -> Vec<Table> {
    store
        .query(
            "SELECT name, engine, sorting_key, partition_key, create_table_query FROM system.tables \
             WHERE database = currentDatabase() ORDER BY name",
        )
        .fetch_all()
        .await
        .unwrap()
}

fn type_of<'a>(cols: &'a [Column], table: &str, column: &str) -> &'a str {
    cols.iter()
        .find(|c| c.table == table && c.name == column)
        .map(|c| c.r#type.as_str())
        .unwrap_or_else(|| panic!("{table}.{column} missing"))
}

#[tokio::test]
async fn migrations_create_every_table_with_the_intended_types() {
    let db = TestDb::new("schema");
    let store = db.migrated().await;
    let cols = columns(&store).await;
    let tables = tables(&store).await;

    let names: Vec<&str> = tables.iter().map(|t| t.name.as_str()).collect();
    for table in TABLES.iter().chain(&["schema_migrations"]) {
        assert!(names.contains(table), "table {table} missing from {names:?}");
    }

    for t in tables.iter().filter(|t| t.name != "schema_migrations") {
        assert!(t.sorting_key.starts_with("project_id"), "{}: ORDER BY {}", t.name, t.sorting_key);
        assert_eq!(t.engine, "ReplacingMergeTree", "{}", t.name);
        if t.create_table_query.contains("TTL") {
            assert!(t.create_table_query.contains("ttl_only_drop_parts = 1"), "{}: {}", t.name, t.create_table_query);
        }
    }
    // Event tables: daily partitions and a TTL that drops whole parts.
    for (table, time_col) in [
        ("spans", "start_time"),
        ("llm_calls", "start_time"),
        ("signals", "timestamp"),
        ("failures", "call_time"),
        ("pattern_members", "call_time"),
        ("contents", "last_seen"),
    ] {
        let t = tables.iter().find(|t| t.name == table).unwrap();
        assert_eq!(t.partition_key, format!("toDate({time_col})"), "{table}");
        assert!(
            t.create_table_query.contains(&format!("TTL toDateTime({time_col}) + toIntervalDay(")),
            "{table}: {}",
            t.create_table_query
        );
        assert!(t.create_table_query.contains("ttl_only_drop_parts = 1"), "{table}");
    }

    // Every timestamp has nanosecond precision in UTC; every attribute map has LowCardinality keys.
    for c in &cols {
        if c.r#type.contains("DateTime") {
            assert!(c.r#type.contains("DateTime64(9, 'UTC')"), "{}.{} is {}", c.table, c.name, c.r#type);
        }
        if c.r#type.starts_with("Map(") || c.r#type.starts_with("Array(Map(") {
            assert!(c.r#type.contains("Map(LowCardinality(String), "), "{}.{} is {}", c.table, c.name, c.r#type);
        }
        if c.name == "project_id" {
            assert_eq!(c.r#type, "LowCardinality(String)", "{}", c.table);
        }
    }

    let expected = [
        ("spans", "attributes", "Map(LowCardinality(String), String)"),
        ("spans", "resource_attributes", "Map(LowCardinality(String), String)"),
        ("spans", "event_times", "Array(DateTime64(9, 'UTC'))"),
        ("spans", "event_attributes", "Array(Map(LowCardinality(String), String))"),
        ("spans", "kind", "LowCardinality(String)"),
        ("spans", "status_code", "LowCardinality(String)"),
        ("spans", "duration_ns", "UInt64"),
        ("llm_calls", "provider", "LowCardinality(String)"),
        ("llm_calls", "request_model", "LowCardinality(String)"),
        ("llm_calls", "response_model", "LowCardinality(String)"),
        ("llm_calls", "status", "LowCardinality(String)"),
        ("llm_calls", "finish_reasons", "Array(LowCardinality(String))"),
        ("llm_calls", "cache_read_tokens", "UInt64"),
        ("llm_calls", "reasoning_tokens", "UInt64"),
        ("llm_calls", "cost_usd", "Nullable(Float64)"),
        ("llm_calls", "time_to_first_token_ns", "Nullable(UInt64)"),
        ("llm_calls", "seed", "Nullable(Int64)"),
        ("llm_calls", "is_stream", "Bool"),
        ("signals", "kind", "LowCardinality(String)"),
        ("signals", "edit_ratio", "Nullable(Float64)"),
        ("patterns", "centroid", "Array(Float32)"),
        ("patterns", "signal_mix", "Map(LowCardinality(String), UInt64)"),
        ("api_keys", "revoked_at", "Nullable(DateTime64(9, 'UTC'))"),
    ];
    for (table, column, ty) in expected {
        assert_eq!(type_of(&cols, table, column), ty, "{table}.{column}");
    }

    // Bloom-filter skip indexes on the raw attribute maps.
    let indexes: Vec<(String, String, String)> = store
        .query("SELECT table, expr, type FROM system.data_skipping_indices WHERE database = currentDatabase() ORDER BY table, name")
        .fetch_all()
        .await
        .unwrap();
    for (table, expr) in [
        ("spans", "mapKeys(attributes)"),
        ("spans", "mapValues(attributes)"),
        ("signals", "mapKeys(attributes)"),
        ("llm_calls", "mapKeys(metadata)"),
    ] {
        assert!(
            indexes.iter().any(|(t, e, ty)| t == table && e == expr && ty == "bloom_filter"),
            "no bloom filter on {table}.{expr}: {indexes:?}"
        );
    }
}

#[tokio::test]
async fn applying_the_migrations_twice_changes_nothing() {
    let db = TestDb::new("twice");
    let store = db.store();
    let first = migrate::migrate(&store, &MigrateOptions::default()).await.unwrap();
    assert_eq!(first.applied.len(), migrate::MIGRATIONS.len());
    let (cols, ddl) = (columns(&store).await, tables(&store).await);

    let second = migrate::migrate(&store, &MigrateOptions::default()).await.unwrap();
    assert!(second.applied.is_empty(), "{second:?}");
    assert_eq!(second.already_applied, migrate::MIGRATIONS.len());
    assert!(second.retention_changes.is_empty());
    assert_eq!(columns(&store).await, cols);
    assert_eq!(tables(&store).await, ddl);
    let ledger: u64 = store.query("SELECT count() FROM schema_migrations").fetch_one().await.unwrap();
    assert_eq!(ledger, migrate::MIGRATIONS.len() as u64);

    // Through the CLI as well, as scripts run it.
    for _ in 0..2 {
        let out = db.flywheel(&["migrate"]);
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(stdout(&out).contains("schema up to date"), "{}", stdout(&out));
    }
    assert_eq!(tables(&store).await, ddl);
}

#[tokio::test]
async fn retention_is_configurable_per_table_and_changed_in_place() {
    let db = TestDb::new("retention");
    let store = db.store();
    migrate::migrate(&store, &MigrateOptions::default()).await.unwrap();
    let retention = flywheel_schemas::Retention { spans: 7, signals: 400, ..Default::default() };
    // Another command migrating with other settings (a shell without the configuration file)
    // creates what is missing and changes no retention: only `flywheel migrate` does.
    let quiet = migrate::migrate(&store, &MigrateOptions { retention: retention.clone(), ..Default::default() }).await.unwrap();
    assert!(quiet.retention_changes.is_empty(), "{:?}", quiet.retention_changes);
    let spans = tables(&store).await.into_iter().find(|t| t.name == "spans").unwrap();
    assert!(spans.create_table_query.contains("toIntervalDay(30)"), "{}", spans.create_table_query);
    let report = migrate::migrate(&store, &MigrateOptions { retention, change_retention: true, ..Default::default() }).await.unwrap();
    let mut changes = report.retention_changes.clone();
    changes.sort();
    // log_records follows the spans' retention.
    assert_eq!(changes, vec![("log_records".to_string(), 30, 7), ("signals".to_string(), 365, 400), ("spans".to_string(), 30, 7)]);
    let spans = tables(&store).await.into_iter().find(|t| t.name == "spans").unwrap();
    assert!(spans.create_table_query.contains("toIntervalDay(7)"), "{}", spans.create_table_query);
}

/// A recent instant (rows older than a table's retention are dropped by its TTL at insert),
/// shifted by `1_763_700_000_000_000_000 - nanos` so that callers keep their nanosecond digits.
fn ts(nanos: i128) -> OffsetDateTime {
    let base = OffsetDateTime::now_utc().replace_time(time::Time::MIDNIGHT) - time::Duration::days(1);
    base + time::Duration::nanoseconds((nanos - 1_763_700_000_000_000_000) as i64)
}

fn attrs(pairs: &[(&str, &str)]) -> Attributes {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn span(i: u32) -> SpanRow {
    // Nanosecond digits that a microsecond or millisecond column would lose.
    let start = ts(1_763_700_000_123_456_789 + i as i128);
    SpanRow {
        project_id: "proj-ü".into(),
        trace_id: format!("{:032x}", 0xabcdef_u128 + i as u128),
        span_id: format!("{:016x}", 0x1234_u64 + i as u64),
        parent_span_id: if i == 0 { String::new() } else { format!("{:016x}", 0x1234) },
        trace_state: "rojo=00f067aa0ba902b7".into(),
        name: "chat gpt-4o-mini".into(),
        kind: "client".into(),
        start_time: start,
        end_time: start + time::Duration::nanoseconds(987_654_321),
        duration_ns: 987_654_321,
        status_code: if i.is_multiple_of(2) { "error".into() } else { "ok".into() },
        status_message: "RateLimitError: 429 – «trop de requêtes» 🚦".into(),
        service_name: "support-bot".into(),
        scope_name: "openinference.instrumentation.openai".into(),
        scope_version: "0.1.42".into(),
        resource_attributes: attrs(&[("service.name", "support-bot"), ("deployment.environment", "prod")]),
        scope_attributes: BTreeMap::new(),
        attributes: attrs(&[
            ("gen_ai.input.messages", r#"[{"role":"user","parts":[{"type":"text","content":"こんにちは\n\t\"quoted\""}]}]"#),
            ("gen_ai.usage.input_tokens", "42"),
            ("unknown.vendor.attribute", "kept as is"),
            ("", "empty key"),
        ]),
        dropped_attributes_count: 3,
        event_times: vec![start, start + time::Duration::nanoseconds(1)],
        event_names: vec!["exception".into(), "gen_ai.choice".into()],
        event_attributes: vec![attrs(&[("exception.type", "openai.RateLimitError")]), BTreeMap::new()],
        dropped_events_count: 0,
        link_trace_ids: vec![format!("{:032x}", 7)],
        link_span_ids: vec![format!("{:016x}", 8)],
        link_attributes: vec![attrs(&[("link.kind", "follows")])],
        dropped_links_count: 1,
        ingested_at: ts(1_763_700_001_000_000_001),
    }
}

fn llm_call(i: u32) -> LlmCallRow {
    let start = ts(1_763_700_000_000_000_007 + i as i128 * 1_000);
    LlmCallRow {
        project_id: "p1".into(),
        trace_id: format!("{:032x}", i),
        span_id: format!("{:016x}", i),
        parent_span_id: String::new(),
        session_id: "sess-1".into(),
        user_id: "user-ω".into(),
        feature: "support".into(),
        service_name: "support-bot".into(),
        operation: "chat".into(),
        provider: "openai".into(),
        request_model: "gpt-4o-mini".into(),
        response_model: "gpt-4o-mini-2024-07-18".into(),
        response_id: format!("chatcmpl-{i}"),
        start_time: start,
        end_time: start + time::Duration::milliseconds(812),
        duration_ns: 812_000_000,
        time_to_first_token_ns: if i.is_multiple_of(2) { Some(120_000_001) } else { None },
        input_messages: r#"[{"role":"user","parts":[{"type":"text","content":"Rückerstattung?"}]}]"#.into(),
        output_messages: r#"[{"role":"assistant","parts":[{"type":"tool_call","name":"lookup","arguments":{"id":1}}]}]"#.into(),
        system_instructions_hash: "9f86d081884c7d65".into(),
        tool_definitions_hash: String::new(),
        input_text: "Rückerstattung?".into(),
        output_text: String::new(),
        tool_names: vec!["lookup".into()],
        finish_reasons: vec!["tool_calls".into()],
        input_tokens: 1_234,
        output_tokens: 56,
        cache_read_tokens: 1_024,
        cache_write_tokens: 0,
        reasoning_tokens: 7,
        cost_usd: if i.is_multiple_of(2) { Some(0.000_123_45) } else { None },
        cost_source: "price_table:2026-11".into(),
        status: "ok".into(),
        error_type: String::new(),
        error_message: String::new(),
        error_class: String::new(),
        http_status: 0,
        temperature: Some(0.2),
        top_p: None,
        max_tokens: Some(512),
        seed: Some(-42),
        is_stream: i % 2 == 1,
        prompt_template_id: "support-v2".into(),
        prompt_template_version: "3".into(),
        convention: "otel_genai_1.37".into(),
        input_hash: "e3b0c44298fc1c14".into(),
        metadata: attrs(&[("tag", "beta")]),
        ingested_at: start,
    }
}

fn signal(i: u32) -> SignalRow {
    SignalRow {
        project_id: "p1".into(),
        signal_id: format!("sig-{i}"),
        idempotency_key: format!("idem-{i}"),
        kind: "edit".into(),
        name: String::new(),
        source: "api".into(),
        timestamp: ts(1_763_700_000_999_999_999 - i as i128),
        trace_id: format!("{:032x}", i),
        span_id: String::new(),
        session_id: "sess-1".into(),
        message_id: "chatcmpl-1".into(),
        user_id: "u".into(),
        feature: "support".into(),
        value: None,
        scale: Some(5.0),
        comment: "ça ne marche pas 😤".into(),
        text: "The corrected answer.\nLine two.".into(),
        edit_distance: Some(17),
        edit_ratio: Some(0.425),
        link_status: "linked".into(),
        attributes: attrs(&[("browser", "firefox")]),
        ingested_at: ts(1_763_700_001_000_000_000),
    }
}

async fn round_trip<T>(store: &flywheel_schemas::Store, table: &str, order_by: &str, rows: Vec<T>)
where
    T: clickhouse::RowOwned + clickhouse::RowRead + clickhouse::RowWrite + Serialize + PartialEq + std::fmt::Debug,
{
    store.insert(table, &rows).await.unwrap_or_else(|e| panic!("insert into {table}: {e}"));
    let back: Vec<T> = store.query(&format!("SELECT ?fields FROM {table} FINAL ORDER BY {order_by}")).fetch_all().await.unwrap();
    assert_eq!(back, rows, "{table} did not round-trip");

    // The same rows encoded ahead of the insert (the write-ahead log's records), sent in parts
    // the way the drain sends several records: read back the same.
    store.execute(&format!("TRUNCATE TABLE {table}")).await.unwrap();
    let encoded: Vec<Vec<u8>> = rows
        .iter()
        .map(|r| {
            let mut out = Vec::new();
            flywheel_schemas::rowbinary::encode(r, &mut out).unwrap();
            out
        })
        .collect();
    let parts: Vec<&[u8]> = encoded.iter().map(Vec::as_slice).collect();
    store.insert_row_binary::<T>(table, &parts).await.unwrap_or_else(|e| panic!("RowBinary insert into {table}: {e}"));
    let back: Vec<T> = store.query(&format!("SELECT ?fields FROM {table} FINAL ORDER BY {order_by}")).fetch_all().await.unwrap();
    assert_eq!(back, rows, "{table} did not round-trip as encoded RowBinary");
}

#[tokio::test]
async fn a_batch_of_each_table_round_trips_exactly() {
    let db = TestDb::new("roundtrip");
    let store = db.migrated().await;
    let at = ts(1_763_700_000_123_456_789);

    round_trip(&store, "spans", "trace_id", (0..5).map(span).collect()).await;
    round_trip(&store, "llm_calls", "trace_id", (0..5).map(llm_call).collect()).await;
    round_trip(&store, "signals", "signal_id", (0..5).map(signal).collect()).await;
    round_trip(
        &store,
        "contents",
        "hash",
        vec![ContentRow {
            project_id: "p1".into(),
            hash: "9f86d081884c7d65".into(),
            kind: "system".into(),
            content: "You are a helpful assistant. Réponds en français.".into(),
            last_seen: at,
        }],
    )
    .await;
    round_trip(
        &store,
        "failures",
        "trace_id",
        (0..3)
            .map(|i| FailureRow {
                project_id: "p1".into(),
                trace_id: format!("{i:032x}"),
                span_id: format!("{i:016x}"),
                session_id: "s".into(),
                user_id: "u".into(),
                feature: "support".into(),
                model: "gpt-4o-mini".into(),
                call_time: at,
                reasons: vec!["finish_reason:length".into(), "signal:thumbs_down".into()],
                categories: vec!["explicit".into(), "implicit".into()],
                severity: 0.75,
                details: r#"{"edit_ratio":0.6}"#.into(),
                run_id: "run-1".into(),
                detected_at: at,
            })
            .collect(),
    )
    .await;
    round_trip(
        &store,
        "patterns",
        "pattern_id",
        vec![PatternRow {
            project_id: "p1".into(),
            pattern_id: "pat-0001".into(),
            label: "`length` finish · answers cut mid-sentence · support".into(),
            description: "Answers stop mid-sentence.".into(),
            terms: vec!["cut".into(), "truncated".into()],
            facets: attrs(&[("feature", "support"), ("model", "gpt-4o-mini")]),
            status: "new".into(),
            trend: "growing".into(),
            size: 42,
            previous_size: 10,
            calls: 42,
            traces: 40,
            sessions: 30,
            users: 25,
            severity: 0.5,
            cost_usd: 1.25,
            mean_latency_ms: 812.5,
            signal_mix: BTreeMap::from([("thumbs_down".to_string(), 12), ("regenerate".to_string(), 3)]),
            centroid: vec![0.1, -0.25, 1e-7],
            first_seen: at,
            last_seen: at + time::Duration::nanoseconds(1),
            fixed_at: time::OffsetDateTime::UNIX_EPOCH,
            regressed_at: time::OffsetDateTime::UNIX_EPOCH,
            regressed_in: String::new(),
            run_id: "run-1".into(),
            updated_at: at,
        }],
    )
    .await;
    round_trip(
        &store,
        "pattern_members",
        "trace_id",
        (0..3)
            .map(|i| PatternMemberRow {
                project_id: "p1".into(),
                pattern_id: "pat-0001".into(),
                run_id: "run-1".into(),
                trace_id: format!("{i:032x}"),
                span_id: format!("{i:016x}"),
                call_time: at,
                distance: 0.125 * i as f32,
                added_at: at,
            })
            .collect(),
    )
    .await;
    round_trip(
        &store,
        "eval_exports",
        "case_hash",
        vec![EvalExportRow {
            project_id: "p1".into(),
            case_hash: "abc".into(),
            format: "promptfoo".into(),
            pattern_id: "pat-0001".into(),
            trace_id: format!("{:032x}", 1),
            span_id: format!("{:016x}", 1),
            path: "/tmp/évals.yaml".into(),
            exported_at: at,
        }],
    )
    .await;
    round_trip(
        &store,
        "log_records",
        "record_id",
        vec![LogRecordRow {
            project_id: "p1".into(),
            record_id: "r1".into(),
            timestamp: at,
            observed_timestamp: at + time::Duration::nanoseconds(3),
            trace_id: format!("{:032x}", 1),
            span_id: format!("{:016x}", 1),
            severity_number: 9,
            severity_text: "INFO".into(),
            event_name: "gen_ai.choice".into(),
            body: r#"{"index":0,"message":{"content":"Grüße"}}"#.into(),
            service_name: "svc".into(),
            scope_name: "scope".into(),
            resource_attributes: attrs(&[("service.name", "svc")]),
            attributes: attrs(&[("gen_ai.system", "openai")]),
            ingested_at: at,
        }],
    )
    .await;
    round_trip(
        &store,
        "embeddings",
        "text_hash",
        vec![EmbeddingRow {
            project_id: "p1".into(),
            model: "all-MiniLM-L6-v2".into(),
            text_hash: "ab".repeat(32),
            vector: vec![0.5, -0.125, f32::MIN_POSITIVE],
            created_at: at,
        }],
    )
    .await;
    round_trip(
        &store,
        "analysis_runs",
        "run_id",
        vec![AnalysisRunRow {
            project_id: "p1".into(),
            run_id: "run-1".into(),
            started_at: at,
            finished_at: at + time::Duration::seconds(3),
            window_start: at - time::Duration::days(7),
            window_end: at,
            calls: 1000,
            failures: 150,
            clustered: 120,
            patterns: 7,
            representation: "all-MiniLM-L6-v2".into(),
            details: "{}".into(),
        }],
    )
    .await;
    round_trip(
        &store,
        "api_keys",
        "key_id",
        vec![
            ApiKeyRow {
                project_id: "p1".into(),
                key_id: "k1".into(),
                key_hash: "h1".into(),
                name: "ci".into(),
                created_at: at,
                revoked_at: None,
                updated_at: at,
            },
            ApiKeyRow {
                project_id: "p1".into(),
                key_id: "k2".into(),
                key_hash: "h2".into(),
                name: "old".into(),
                created_at: at,
                revoked_at: Some(at),
                updated_at: at,
            },
        ],
    )
    .await;
}

#[tokio::test]
async fn a_replayed_batch_is_counted_once() {
    let db = TestDb::new("replay");
    let store = db.migrated().await;
    let rows: Vec<SpanRow> = (0..10).map(span).collect();
    store.insert("spans", &rows).await.unwrap();
    store.insert("spans", &rows).await.unwrap(); // a WAL replay writes the same rows again
    let distinct: u64 = store.query("SELECT count() FROM spans FINAL").fetch_one().await.unwrap();
    assert_eq!(distinct, 10);
}

#[tokio::test]
async fn large_results_stream_across_many_chunks_intact() {
    // ~25 MB of rows: the engine streams them in ~1 MB chunks, each repeating the
    // RowBinaryWithNamesAndTypes header that the server must strip.
    let db = TestDb::new("large");
    let store = db.migrated().await;
    let now = OffsetDateTime::now_utc();
    let rows: Vec<SpanRow> = (0..20_000).map(|i| flywheel_schemas::bench::sample_span(i, now)).collect();
    store.insert_batched("spans", &rows, 5_000, None).await.unwrap();
    let mut back: Vec<SpanRow> = store.query("SELECT ?fields FROM spans").fetch_all().await.unwrap();
    assert_eq!(back.len(), rows.len());
    back.sort_by(|a, b| (&a.trace_id, &a.span_id).cmp(&(&b.trace_id, &b.span_id)));
    let mut expected = rows;
    expected.sort_by(|a, b| (&a.trace_id, &a.span_id).cmp(&(&b.trace_id, &b.span_id)));
    assert!(back == expected, "rows differ after a streamed read");
}

#[tokio::test]
async fn empty_results_and_server_side_parameters_work() {
    let db = TestDb::new("empty");
    let store = db.migrated().await;
    let none: Vec<SpanRow> = store.query("SELECT ?fields FROM spans WHERE project_id = ?").bind("nobody").fetch_all().await.unwrap();
    assert!(none.is_empty());
    let n: u64 = store.query("SELECT {n:UInt64} * 2").param("n", 21u64).fetch_one().await.unwrap();
    assert_eq!(n, 42);
    let s: String = store.query("SELECT {s:String}").param("s", "a'b\"c ü").fetch_one().await.unwrap();
    assert_eq!(s, "a'b\"c ü");
}

#[tokio::test]
async fn query_errors_are_clear_rust_errors() {
    let db = TestDb::new("errors");
    let store = db.migrated().await;

    let err = store.query("SELECT * FROM no_such_table").fetch_all::<u8>().await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, StoreError::Query { .. }), "{err:?}");
    assert!(text.contains("UNKNOWN_TABLE") && text.contains("no_such_table"), "{text}");

    let err = store.execute("SELEKT 1").await.unwrap_err();
    assert!(err.to_string().contains("SYNTAX_ERROR"), "{err}");

    // A row type that does not match the table is refused before any data is written.
    #[derive(Row, Serialize)]
    struct Wrong {
        project_id: String,
        trace_id: u64,
    }
    let err = store.insert("spans", &[Wrong { project_id: "p".into(), trace_id: 1 }]).await.unwrap_err();
    assert!(matches!(err, StoreError::Schema { .. }), "{err:?}");
    assert!(err.to_string().contains("trace_id"), "{err}");

    // Nothing listens on port 9: the error says how to get a server.
    let cfg = flywheel_schemas::ClickHouseConfig::default();
    let err = flywheel_schemas::Store::new("http://127.0.0.1:9", &cfg).unwrap().ping().await.unwrap_err();
    assert!(matches!(err, StoreError::Unreachable { .. }), "{err:?}");
    assert!(err.to_string().contains("flywheel clickhouse start"), "{err}");
}

#[tokio::test]
async fn triage_decisions_override_the_analyzers_status_and_the_latest_wins() {
    use flywheel_schemas::queries;
    let db = TestDb::new("triage");
    let store = db.migrated().await;
    let at = ts(1);
    let pattern = |id: &str, users: u64| PatternRow {
        project_id: "p1".into(),
        pattern_id: id.into(),
        label: format!("label {id}"),
        description: String::new(),
        terms: vec![],
        facets: BTreeMap::new(),
        status: "new".into(),
        trend: "new".into(),
        size: 10,
        previous_size: 0,
        calls: 10,
        traces: 10,
        sessions: 5,
        users,
        severity: 1.0,
        cost_usd: 0.0,
        mean_latency_ms: 0.0,
        signal_mix: BTreeMap::new(),
        centroid: vec![],
        first_seen: at,
        last_seen: at,
        fixed_at: time::OffsetDateTime::UNIX_EPOCH,
        regressed_at: time::OffsetDateTime::UNIX_EPOCH,
        regressed_in: String::new(),
        run_id: "run-1".into(),
        updated_at: at,
    };
    store.insert("patterns", &[pattern("pat-a", 2), pattern("pat-b", 9)]).await.unwrap();
    queries::set_triage(&store, "p1", "pat-a", "acknowledged", "", "test").await.unwrap();
    queries::set_triage(&store, "p1", "pat-a", "fixed", "deployed v2", "test").await.unwrap();
    let err = queries::set_triage(&store, "p1", "pat-a", "done", "", "test").await.unwrap_err();
    assert!(err.to_string().contains("acknowledged, fixed, wont_fix"), "{err}");

    let current = queries::current_patterns(&store, "p1").await.unwrap();
    let ids: Vec<(&str, &str)> = current.iter().map(|p| (p.pattern_id.as_str(), p.status.as_str())).collect();
    assert_eq!(ids, vec![("pat-b", "new"), ("pat-a", "fixed")], "most users first, triage applied");
    assert!(queries::current_patterns(&store, "other").await.unwrap().is_empty());
}

/// Issue 15, item 5: an insert the engine fails is an error on the wire, as a ClickHouse server
/// answers it — here one touching more than `max_partitions_per_insert_block` (100) daily
/// partitions, which chDB's streaming inserter used to report as written while storing nothing.
#[tokio::test]
async fn an_insert_the_engine_refuses_is_an_error_never_a_silent_success() {
    let db = TestDb::new("refused");
    let store = db.migrated().await;
    // 150 days ahead rather than behind: the retention TTL must not expire any of them.
    let now = OffsetDateTime::now_utc();
    let rows: Vec<ContentRow> = (0..150)
        .map(|i| ContentRow {
            project_id: "p".into(),
            hash: format!("h{i}"),
            kind: "system_instructions".into(),
            content: "c".into(),
            last_seen: now + time::Duration::days(i),
        })
        .collect();
    let err = store.insert("contents", &rows).await.unwrap_err();
    assert!(err.to_string().contains("TOO_MANY_PARTS") && err.to_string().contains("partitions"), "{err}");
    let stored: u64 = store.query("SELECT count() FROM contents").fetch_one().await.unwrap();
    assert_eq!(stored, 0);
    // Within the limit, the same rows go in.
    store.insert("contents", &rows[..100]).await.unwrap();
    let stored: u64 = store.query("SELECT count() FROM contents").fetch_one().await.unwrap();
    assert_eq!(stored, 100);
}
