//! Issue 18, outside evaluations, end to end: simulated healthy traffic through the real
//! collector, then evaluation results on some of its calls through every way a producer sends
//! them — OTel GenAI `gen_ai.evaluation.result` log records (parented, or by
//! `gen_ai.response.id`), evaluation spans under the judged call, Phoenix-shaped span
//! annotations and `evaluation` signals — failing ones and passing ones. The failing ones become
//! failures grouped by evaluator, the passing ones do not, and the exported eval cases carry the
//! evaluator's explanation.

mod common;

use std::collections::BTreeSet;

use clickhouse::Row;
use common::{Collector, TestDb, scratch_dir, stderr, stdout};
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Row, Deserialize, Clone)]
struct CallRef {
    trace_id: String,
    #[serde(rename = "first_span")]
    span_id: String,
    #[serde(rename = "first_response")]
    response_id: String,
}

const WHY: &str = "The answer promises a 90-day refund window; the retrieved policy says 30 days.";

fn attr(key: &str, value: Value) -> Value {
    let v = match value {
        Value::String(s) => json!({ "stringValue": s }),
        Value::Number(n) if n.is_f64() => json!({ "doubleValue": n }),
        Value::Number(n) => json!({ "intValue": n.to_string() }),
        other => json!({ "stringValue": other.to_string() }),
    };
    json!({ "key": key, "value": v })
}

fn evaluation_attrs(label: &str, score: f64) -> Vec<Value> {
    vec![
        attr("gen_ai.evaluation.name", json!("faithfulness")),
        attr("gen_ai.evaluation.score.value", json!(score)),
        attr("gen_ai.evaluation.score.label", json!(label)),
        attr("gen_ai.evaluation.explanation", json!(WHY)),
    ]
}

async fn post(c: &Collector, key: &str, path: &str, body: &Value) -> Value {
    let r = reqwest::Client::new()
        .post(format!("{}{path}", c.http))
        .bearer_auth(key)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = r.status();
    let text = r.text().await.unwrap();
    assert!(status.is_success(), "{path}: {status} {text}");
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evaluations_from_every_producer_become_failures_and_carry_their_explanation() {
    let c = Collector::start(TestDb::new("evaluations"), "[collector]\nsignal_link_interval_secs = 1\n");
    c.simulate("app", &["--interactions", "200", "--seed", "3", "--duration", "1d", "--failure-rate", "0"]).await;
    let store = c.db.store();
    let calls: Vec<CallRef> = store
        // One call per trace: a failure is an interaction (a trace), whichever of its calls failed.
        .query(
            "SELECT trace_id, argMin(span_id, start_time) AS first_span, argMin(response_id, start_time) AS first_response FROM llm_calls FINAL \
             WHERE project_id = 'app' AND response_id != '' GROUP BY trace_id ORDER BY trace_id LIMIT 30",
        )
        .fetch_all()
        .await
        .unwrap();
    assert_eq!(calls.len(), 30);
    let count_calls =
        || async { store.query("SELECT count() FROM llm_calls FINAL WHERE project_id = 'app'").fetch_one::<u64>().await.unwrap() };
    let calls_before = count_calls().await;
    let key = c.key("app");
    let now_ns = time::OffsetDateTime::now_utc().unix_timestamp_nanos().to_string();

    // 1. OTel log records, parented to the call (0..5), and one by the response id alone (5).
    let mut records: Vec<Value> = calls[..5]
        .iter()
        .map(|k| {
            json!({ "timeUnixNano": now_ns, "eventName": "gen_ai.evaluation.result", "traceId": k.trace_id, "spanId": k.span_id,
                    "attributes": evaluation_attrs("unfaithful", 0.1) })
        })
        .collect();
    let mut by_response = evaluation_attrs("unfaithful", 0.0);
    by_response.push(attr("gen_ai.response.id", json!(calls[5].response_id)));
    records.push(json!({ "timeUnixNano": now_ns, "eventName": "gen_ai.evaluation.result", "attributes": by_response }));
    let logs = json!({ "resourceLogs": [{ "resource": { "attributes": [attr("service.name", json!("judge"))] },
        "scopeLogs": [{ "scope": { "name": "evals" }, "logRecords": records }] }] });
    post(&c, &key, "/v1/logs", &logs).await;

    // 2. Evaluation spans under the judged call (6..9), as SDKs that emit events as spans do.
    let spans: Vec<Value> = calls[6..9]
        .iter()
        .enumerate()
        .map(|(i, k)| {
            json!({ "traceId": k.trace_id, "spanId": format!("e0a1b2c3d4e5f6{i:02x}"), "parentSpanId": k.span_id,
                    "name": "gen_ai.evaluation.result", "kind": 1, "startTimeUnixNano": now_ns, "endTimeUnixNano": now_ns,
                    "attributes": evaluation_attrs("hallucinated", 0.0) })
        })
        .collect();
    let traces = json!({ "resourceSpans": [{ "resource": { "attributes": [attr("service.name", json!("judge"))] },
        "scopeSpans": [{ "scope": { "name": "evals" }, "spans": spans }] }] });
    post(&c, &key, "/v1/traces", &traces).await;

    // 3. Phoenix span annotations, by people (9..12).
    let annotations: Vec<Value> = calls[9..12]
        .iter()
        .map(|k| {
            json!({ "span_id": k.span_id, "name": "faithfulness", "annotator_kind": "HUMAN",
                    "result": { "label": "incorrect", "score": 0, "explanation": WHY }, "metadata": { "reviewer": "ana" }, "identifier": "review-1" })
        })
        .collect();
    let reply = post(&c, &key, "/v1/span_annotations", &json!({ "data": annotations })).await;
    assert_eq!(reply["accepted"], 3, "{reply}");
    // Sent again (an upsert in Phoenix): still three.
    post(&c, &key, "/v1/span_annotations", &json!({ "data": annotations })).await;

    // 4. `evaluation` signals by a program (12..15, scored 0 of 1), and passing ones (15..19).
    let mut signals: Vec<Value> = calls[12..15]
        .iter()
        .map(|k| {
            json!({ "kind": "evaluation", "name": "faithfulness", "trace_id": k.trace_id, "span_id": k.span_id,
                          "value": 0, "scale": 1, "annotator": "code", "explanation": WHY })
        })
        .collect();
    signals.extend(calls[15..19].iter().map(|k| {
        json!({ "kind": "evaluation", "name": "faithfulness", "trace_id": k.trace_id, "span_id": k.span_id,
                "value": 0.95, "label": "faithful", "annotator": "llm", "explanation": "Every figure is in the sources." })
    }));
    let reply = post(&c, &key, "/v1/signals", &json!(signals)).await;
    assert_eq!(reply["accepted"], 7, "{reply}");
    c.wait_stored().await;
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;

    // Stored as evaluations, each with its evaluator and who judged; the evaluation spans are
    // not model calls.
    #[derive(Row, Deserialize)]
    struct Eval {
        name: String,
        annotator: String,
        n: u64,
        linked: u64,
    }
    let stored: Vec<Eval> = store
        .query(
            "SELECT name, attributes['evaluation.annotator'] AS annotator, count() AS n, countIf(trace_id != '' AND span_id != '') AS linked \
             FROM signals FINAL WHERE project_id = 'app' AND kind = 'evaluation' GROUP BY name, annotator ORDER BY annotator",
        )
        .fetch_all()
        .await
        .unwrap();
    let summary: Vec<(String, String, u64, u64)> = stored.into_iter().map(|e| (e.name, e.annotator, e.n, e.linked)).collect();
    assert_eq!(
        summary,
        vec![
            ("faithfulness".to_string(), String::new(), 9, 9),
            ("faithfulness".to_string(), "code".to_string(), 3, 3),
            ("faithfulness".to_string(), "human".to_string(), 3, 3),
            ("faithfulness".to_string(), "llm".to_string(), 4, 4),
        ],
        "(evaluator, annotator, evaluations, linked to their call)"
    );
    assert_eq!(count_calls().await, calls_before, "an evaluation span became a model call");

    let analyzed = c.db.flywheel(&["analyze", "--project", "app", "--since", "2d", "--lexical"]);
    assert!(analyzed.status.success(), "analyze: {}{}", stdout(&analyzed), stderr(&analyzed));
    #[derive(Row, Deserialize)]
    struct Failed {
        trace_id: String,
        evidence: String,
    }
    let failed: Vec<Failed> = store
        .query(
            "SELECT trace_id, JSONExtractString(details, 'evidence', 'failed_evaluation') AS evidence FROM failures FINAL \
             WHERE project_id = 'app' AND has(reasons, 'failed_evaluation')",
        )
        .fetch_all()
        .await
        .unwrap();
    let failed_traces: BTreeSet<&str> = failed.iter().map(|f| f.trace_id.as_str()).collect();
    let expected: BTreeSet<&str> = calls[..15].iter().map(|k| k.trace_id.as_str()).collect();
    assert_eq!(failed_traces, expected, "the failing evaluations, and only they");
    assert!(failed.iter().all(|f| f.evidence.contains("90-day")), "the explanation is the evidence");
    assert!(failed.iter().any(|f| f.evidence.contains("(human): incorrect")), "who judged is in the evidence");

    // One pattern: what the evaluator checks.
    let out = c.db.flywheel(&["patterns", "--project", "app", "--json"]);
    let patterns: Vec<Value> = stdout(&out).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let pattern = patterns
        .iter()
        .find(|p| p["label"].as_str().unwrap().contains("`faithfulness` evaluation"))
        .unwrap_or_else(|| panic!("no evaluation pattern: {patterns:#?}"));
    assert_eq!(pattern["size"], 15, "{pattern}");

    // Its eval cases say what the evaluator checked and why the original failed.
    let file = scratch_dir("evaluations").join("cases.jsonl");
    let out = c.db.flywheel(&[
        "export",
        "evals",
        "--project",
        "app",
        "--pattern",
        pattern["id"].as_str().unwrap(),
        "--max-per-pattern",
        "5",
        "--out",
        file.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "export: {}{}", stdout(&out), stderr(&out));
    let cases: Vec<Value> = std::fs::read_to_string(&file).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(cases.len(), 5);
    for case in &cases {
        let rubric = case["expected"]["rubric"].to_string();
        assert!(rubric.contains("Passes the `faithfulness` evaluation") && rubric.contains("90-day refund window"), "{case:#}");
        assert!(!rubric.contains("user complained"), "an evaluator is not a user: {case:#}");
    }
}
