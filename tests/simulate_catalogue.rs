//! `flywheel simulate --scenario catalogue` end to end: the real binary plays the catalogue's five
//! applications against a running `flywheel serve`, and the stored calls and spans must show
//! what the truth file says was injected — the evidence of each confuser group where the
//! conventions carry it.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use clickhouse::Row;
use common::{Collector, TestDb, scratch_dir, stdout};
use flywheel_simulator::truth::TruthCall;
use serde::Deserialize;
use time::format_description::well_known::Rfc3339;

#[derive(Debug, Row, Deserialize)]
struct Stored {
    trace_id: String,
    span_id: String,
    feature: String,
    request_model: String,
    provider: String,
    convention: String,
    status: String,
    error_type: String,
    finish_reasons: Vec<String>,
    output_tokens: u64,
    max_tokens: Option<u64>,
    output_text: String,
}

#[derive(Debug, Row, Deserialize)]
struct ToolSpan {
    trace_id: String,
    name: String,
    status_code: String,
    exception: String,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_catalogue_lands_in_storage_as_its_truth_file_says() {
    let collector = Collector::start(TestDb::new("simulate_catalogue"), "[collector]\nsignal_link_interval_secs = 1\n");
    let dir = scratch_dir("simulate_catalogue");
    let truth_path = dir.join("truth.jsonl");
    let base_time = time::OffsetDateTime::now_utc().replace_nanosecond(0).unwrap().format(&Rfc3339).unwrap();
    let out = collector
        .simulate(
            "cat",
            &[
                "--scenario",
                "catalogue",
                "--interactions",
                "600",
                "--failure-rate",
                "0.5",
                // Catalogue ids work in --modes; more refusals make every kind of evidence show.
                "--modes",
                "over_refusal=4",
                "--seed",
                "3",
                "--base-time",
                &base_time,
                "--truth",
                truth_path.to_str().unwrap(),
            ],
        )
        .await;
    let printed = stdout(&out);
    assert!(printed.contains("simulated 600 interactions"), "{printed}");
    for app in ["help_center", "sql_analyst", "trip_agent", "dev_assistant", "ticket_triage"] {
        assert!(printed.contains(app), "{app} missing from: {printed}");
    }

    let text = std::fs::read_to_string(&truth_path).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    let summary: serde_json::Value = serde_json::from_str(lines.pop().unwrap()).unwrap();
    let truth: Vec<TruthCall> = lines.iter().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(summary["summary"]["calls"], truth.len());
    assert_eq!(summary["summary"]["failing_interactions"].as_object().unwrap().len(), 26, "every catalogue mode is listed");

    let store = collector.db.store();
    let mut rows: Vec<Stored> = Vec::new();
    for _ in 0..40 {
        rows = store
            .query(
                "SELECT trace_id, span_id, feature, request_model, provider, convention, status, error_type, finish_reasons, \
                 output_tokens, max_tokens, output_text FROM llm_calls FINAL WHERE project_id = 'cat'",
            )
            .fetch_all()
            .await
            .unwrap();
        if rows.len() >= truth.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(rows.len(), truth.len(), "one llm_calls row per simulated call");
    let stored: BTreeMap<(&str, &str), &Stored> = rows.iter().map(|r| ((r.trace_id.as_str(), r.span_id.as_str()), r)).collect();

    let mut seen_modes = BTreeSet::new();
    let mut content_filtered = 0;
    for call in &truth {
        let row = stored.get(&(call.trace_id.as_str(), call.span_id.as_str())).unwrap_or_else(|| panic!("not stored: {call:?}"));
        assert_eq!(row.feature, call.feature, "{call:?}");
        assert_eq!(row.convention, call.convention, "{call:?}");
        assert_eq!(row.request_model, call.model);
        assert_eq!(row.provider, call.provider);
        if let Some(mode) = &call.trace_failure_mode {
            seen_modes.insert(mode.clone());
        }
        match call.failure_mode.as_deref() {
            Some("provider_rate_limit") => assert_eq!((row.status.as_str(), row.error_type.as_str()), ("error", "RateLimitError")),
            Some("context_window_exceeded") => assert_eq!((row.status.as_str(), row.error_type.as_str()), ("error", "BadRequestError")),
            Some("provider_timeout") => assert_eq!((row.status.as_str(), row.error_type.as_str()), ("error", "APITimeoutError")),
            Some("truncated_code") => {
                assert_eq!(row.finish_reasons, ["length"]);
                assert_eq!(Some(row.output_tokens), row.max_tokens);
            }
            Some("over_refusal") if row.finish_reasons == ["content_filter"] => content_filtered += 1,
            Some("leaked_customer_contact") => assert!(row.output_text.contains('@'), "{}", row.output_text),
            _ => assert_eq!(row.status, "ok", "{call:?}"),
        }
    }
    assert!(seen_modes.len() >= 23, "most modes at this volume: {seen_modes:?}");
    assert!(content_filtered > 0, "some refusals come back as content_filter");
    // Help-centre users write in other languages over English articles (raw span attributes).
    let foreign: u64 = store
        .query(
            "SELECT count() FROM spans WHERE project_id = 'cat' AND position(attributes['gen_ai.input.messages'], 'Help-centre articles') > 0 \
             AND multiSearchAny(attributes['gen_ai.input.messages'], ['Combien', 'Livrez', 'Vous louez', 'Puis-je', 'Que couvre', 'Mon '])",
        )
        .fetch_one()
        .await
        .unwrap();
    assert!(foreign > 0, "French questions over English articles");

    // The run_sql failures: one exception type, four causes, on the tool span.
    let modes_of: BTreeMap<&str, &str> =
        truth.iter().filter_map(|c| c.trace_failure_mode.as_deref().map(|m| (c.trace_id.as_str(), m))).collect();
    let tools: Vec<ToolSpan> = store
        .query(
            "SELECT trace_id, name, status_code, arrayStringConcat(arrayMap(a -> a['exception.type'], event_attributes), ',') AS exception \
             FROM spans WHERE project_id = 'cat' AND name IN ('run_sql', 'execute_tool search_flights', 'execute_tool cancel_booking')",
        )
        .fetch_all()
        .await
        .unwrap();
    let mut sql_failures: BTreeSet<&str> = BTreeSet::new();
    let mut searches: BTreeMap<&str, usize> = BTreeMap::new();
    for span in &tools {
        let mode = modes_of.get(span.trace_id.as_str()).copied();
        if span.name == "run_sql" && span.status_code.to_lowercase().contains("error") {
            assert_eq!(span.exception, "langchain_core.tools.ToolException");
            sql_failures.insert(mode.expect("a failing run_sql belongs to a failing trace"));
        }
        if span.name == "execute_tool search_flights" {
            *searches.entry(span.trace_id.as_str()).or_default() += 1;
        }
        if span.name == "execute_tool cancel_booking" {
            assert_eq!(mode, Some("unrequested_cancellation"));
        }
    }
    assert_eq!(sql_failures, BTreeSet::from(["sql_permission_denied", "sql_syntax_error", "sql_unknown_column", "sql_write_blocked"]));
    for (trace, n) in searches {
        assert_eq!(n >= 5, modes_of.get(trace) == Some(&"agent_search_loop"), "{trace}: {n} searches");
    }
    // JSON mode, as each convention records it.
    let json_mode: u64 = store
        .query("SELECT count() FROM spans WHERE project_id = 'cat' AND attributes['llm.invocation_parameters'] LIKE '%json_object%'")
        .fetch_one()
        .await
        .unwrap();
    assert!(json_mode > 0);
    let json_output: u64 = store
        .query("SELECT count() FROM spans WHERE project_id = 'cat' AND attributes['gen_ai.output.type'] = 'json'")
        .fetch_one()
        .await
        .unwrap();
    assert!(json_output > 0);
}
