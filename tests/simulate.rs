//! `flywheel simulate` end to end: the real binary plays its application against a running
//! `flywheel serve`, and every LLM call of the truth file must be in `llm_calls` as the
//! simulator described it (ids, feature, model, convention, failure symptoms). Reruns with the
//! same seed and base time write the same truth file; another seed does not.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use clickhouse::Row;
use common::{Collector, TestDb, scratch_dir, stderr, stdout};
use flywheel_simulator::truth::TruthCall;
use serde::Deserialize;
use time::format_description::well_known::Rfc3339;

#[derive(Debug, Row, Deserialize)]
struct Stored {
    trace_id: String,
    span_id: String,
    session_id: String,
    user_id: String,
    feature: String,
    request_model: String,
    provider: String,
    response_id: String,
    finish_reasons: Vec<String>,
    status: String,
    error_type: String,
    output_tokens: u64,
    max_tokens: Option<u64>,
    input_messages: String,
    convention: String,
}

fn read_truth(path: &Path) -> (Vec<TruthCall>, serde_json::Value) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    let summary: serde_json::Value = serde_json::from_str(lines.pop().expect("a summary line")).unwrap();
    (lines.iter().map(|l| serde_json::from_str(l).unwrap()).collect(), summary["summary"].clone())
}

fn simulate(collector: &Collector, key: &str, seed: &str, base_time: &str, truth: &Path) -> std::process::Output {
    let endpoint = collector.http.clone();
    let out = collector.db.flywheel(&[
        "simulate",
        "--endpoint",
        &endpoint,
        "--key",
        key,
        "--interactions",
        "200",
        "--seed",
        seed,
        "--base-time",
        base_time,
        "--truth",
        truth.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "simulate failed: {}{}", stdout(&out), stderr(&out));
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_simulated_call_lands_in_llm_calls_as_the_truth_file_says() {
    let collector = Collector::start(TestDb::new("simulate"), "[collector]\nsignal_link_interval_secs = 1\n");
    let key = collector.key("sim");
    let dir = scratch_dir("simulate");
    // Recent enough for the tables' TTLs, pinned so that reruns are comparable.
    let base_time = (time::OffsetDateTime::now_utc().replace_nanosecond(0).unwrap()).format(&Rfc3339).unwrap();

    let out = simulate(&collector, &key, "7", &base_time, &dir.join("a.jsonl"));
    let printed = stdout(&out);
    assert!(printed.contains("simulated 200 interactions"), "{printed}");
    assert!(printed.contains("truth: "), "{printed}");
    let (truth, summary) = read_truth(&dir.join("a.jsonl"));
    assert_eq!(summary["interactions"], 200);
    assert_eq!(summary["calls"], truth.len());

    let store = collector.db.store();
    let mut rows: Vec<Stored> = Vec::new();
    for _ in 0..40 {
        rows = store
            .query(
                "SELECT trace_id, span_id, session_id, user_id, feature, request_model, provider, response_id, finish_reasons, status, \
                 error_type, output_tokens, max_tokens, input_messages, convention FROM llm_calls FINAL WHERE project_id = ?",
            )
            .bind("sim")
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

    for call in &truth {
        let row = stored.get(&(call.trace_id.as_str(), call.span_id.as_str())).unwrap_or_else(|| panic!("call not stored: {call:?}"));
        assert_eq!(row.feature, call.feature, "{call:?}");
        assert_eq!(row.convention, call.convention, "{call:?}");
        assert_eq!(row.request_model, call.model);
        assert_eq!(row.provider, call.provider);
        assert_eq!(row.session_id, call.session_id);
        assert_eq!(row.user_id, call.user_id);
        assert_eq!(row.response_id, call.response_id.clone().unwrap_or_default());
        assert!(row.input_messages.len() > 2, "input messages are stored");
        match call.failure_mode.as_deref() {
            Some("truncated_answer") => {
                assert_eq!(row.finish_reasons, ["length"], "{call:?}");
                assert_eq!(Some(row.output_tokens), row.max_tokens, "a truncated answer uses its whole budget");
            }
            Some("rate_limit_error") => {
                assert_eq!(row.status, "error", "{call:?}");
                assert_eq!(row.error_type, "RateLimitError");
            }
            _ => assert_eq!(row.status, "ok", "{call:?}"),
        }
    }
    let conventions: std::collections::BTreeSet<&str> = rows.iter().map(|r| r.convention.as_str()).collect();
    assert!(conventions.contains("otel_genai_1.37") && conventions.contains("openinference"), "{conventions:?}");
    for mode in ["truncated_answer", "rate_limit_error"] {
        assert!(truth.iter().any(|c| c.failure_mode.as_deref() == Some(mode)), "seed 7 injects {mode}");
    }

    // The user reactions went through the real signals API and link to the calls they judge.
    collector.wait_stored().await;
    let sent: u64 = summary["signals"].as_object().unwrap().values().map(|v| v.as_u64().unwrap()).sum();
    assert!(sent > 10, "seed 7 sends reactions: {summary}");
    assert!(printed.contains(" 0 not sent"), "{printed}");
    // Signals often beat their traces into ClickHouse: pending ones are linked within seconds.
    let mut counts = (0u64, 0u64);
    for _ in 0..40 {
        counts = store
            .query("SELECT countIf(source = 'api'), countIf(source = 'api' AND link_status IN ('linked', 'session')) FROM signals FINAL WHERE project_id = 'sim'")
            .fetch_one()
            .await
            .unwrap();
        if counts.0 == counts.1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let (api, linked) = counts;
    assert_eq!(api, sent, "every signal sent is stored once");
    assert_eq!(linked, api, "every simulated signal resolves to its call or session");

    // Same seed and base time: the same truth, byte for byte. Another seed: another run.
    let other_key = collector.key("sim-rerun");
    simulate(&collector, &other_key, "7", &base_time, &dir.join("b.jsonl"));
    simulate(&collector, &other_key, "8", &base_time, &dir.join("c.jsonl"));
    let read = |name: &str| std::fs::read(dir.join(name)).unwrap();
    assert_eq!(read("a.jsonl"), read("b.jsonl"));
    assert_ne!(read("a.jsonl"), read("c.jsonl"));
}

#[test]
fn a_collector_that_is_not_there_is_a_one_line_error() {
    let out = common::flywheel_cmd().args(["simulate", "--endpoint", "http://127.0.0.1:9", "--interactions", "5"]).output().unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("127.0.0.1:9") && err.contains("flywheel serve"), "{err}");
}
