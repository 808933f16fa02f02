//! Real producers end to end (issue 20): the bodies in `tests/fixtures/producers/`, captured
//! from LangChain, the OpenAI Agents SDK, pydantic-ai, two instrumentations at once, a tool loop
//! split over traces, content capture off and OTLP metrics (see its README and `generate.py`),
//! are sent to `flywheel serve` over the transport they were captured with; the rows are
//! checked against what the fake provider served and what the application saw.
//!
//! The rule checked for every scenario: one `llm_calls` row per model call the provider served,
//! with its tokens — never two rows for one request, whatever the instrumentations.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use clickhouse::Row;
use common::{Collector, TestDb};
use flywheel_schemas::messages::{Message, Part};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use prost::Message as _;
use serde::Deserialize;
use serde_json::{Value, json};

fn producers() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/producers")
}

#[derive(Debug, Deserialize)]
struct Manifest {
    files: Vec<Entry>,
    scenarios: BTreeMap<String, Value>,
}

#[derive(Debug, Deserialize)]
struct Entry {
    file: String,
    transport: String,
    signal: String,
    headers: BTreeMap<String, String>,
}

fn manifest(set: &str) -> Manifest {
    serde_json::from_slice(&std::fs::read(producers().join(set).join("manifest.json")).unwrap()).unwrap()
}

fn scenario(file: &str) -> &str {
    file.split('.').next().unwrap()
}

/// `pb` or `json`: each encoding goes to its own project, so both are checked alike.
fn encoding(file: &str) -> &'static str {
    if file.ends_with(".json") { "json" } else { "pb" }
}

#[derive(Debug, Clone, Row, Deserialize)]
struct Call {
    span_id: String,
    response_id: String,
    session_id: String,
    user_id: String,
    input_messages: String,
    output_messages: String,
    output_text: String,
    tool_names: Vec<String>,
    input_tokens: u64,
    output_tokens: u64,
    status: String,
    error_type: String,
    error_message: String,
    error_class: String,
    http_status: u16,
    time_to_first_token_ns: Option<u64>,
}

impl Call {
    fn input(&self) -> Vec<Message> {
        serde_json::from_str(&self.input_messages).unwrap()
    }
    fn output(&self) -> Vec<Message> {
        serde_json::from_str(&self.output_messages).unwrap()
    }
}

async fn calls(store: &flywheel_schemas::Store, project: &str, traces: &[String]) -> Vec<Call> {
    store
        .query(
            "SELECT span_id, response_id, session_id, user_id, input_messages, output_messages, output_text, tool_names, \
             input_tokens, output_tokens, status, error_type, error_message, error_class, http_status, time_to_first_token_ns \
             FROM llm_calls FINAL WHERE project_id = ? AND has(?, trace_id) ORDER BY start_time, span_id",
        )
        .bind(project)
        .bind(traces)
        .fetch_all()
        .await
        .unwrap()
}

fn decode_traces(path: &Path) -> ExportTraceServiceRequest {
    let bytes = std::fs::read(path).unwrap();
    if path.to_string_lossy().ends_with(".json") {
        serde_json::from_slice(&bytes).unwrap()
    } else {
        ExportTraceServiceRequest::decode(bytes.as_slice()).unwrap()
    }
}

fn trace_ids(request: &ExportTraceServiceRequest) -> Vec<String> {
    let mut ids: Vec<String> = request
        .resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| &s.spans)
        .map(|s| s.trace_id.iter().map(|b| format!("{b:02x}")).collect())
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

async fn post(collector: &Collector, key: &str, signal: &str, content_type: &str, encoding: Option<&str>, body: Vec<u8>) -> u16 {
    let mut request = reqwest::Client::new()
        .post(format!("{}/v1/{signal}", collector.http))
        .bearer_auth(key)
        .header("content-type", content_type)
        .body(body);
    if let Some(e) = encoding {
        request = request.header("content-encoding", e);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    assert!(status == 200, "{signal}: {status} {text}");
    status
}

async fn send(collector: &Collector, key: &str, dir: &Path, e: &Entry) {
    let bytes = std::fs::read(dir.join(&e.file)).unwrap();
    if e.transport == "grpc" {
        assert_eq!(e.signal, "metrics", "only metrics were captured over gRPC");
        let mut meta = tonic::metadata::MetadataMap::new();
        meta.insert("authorization", format!("Bearer {key}").parse().unwrap());
        let request = ExportMetricsServiceRequest::decode(bytes.as_slice()).unwrap();
        let mut client = MetricsServiceClient::connect(collector.grpc.clone()).await.unwrap();
        let reply = client.export(tonic::Request::from_parts(meta, Default::default(), request)).await;
        assert!(reply.is_ok(), "{}: {reply:?}", e.file);
        return;
    }
    post(collector, key, &e.signal, &e.headers["content-type"], e.headers.get("content-encoding").map(String::as_str), bytes).await;
}

/// The model calls the fake provider answered (status 200) in a scenario.
fn served(m: &Manifest, sc: &str) -> Vec<Value> {
    m.scenarios[sc]["served_by_fake_openai"].as_array().unwrap().clone()
}

fn tool_results(messages: &[Message]) -> Vec<Value> {
    messages
        .iter()
        .flat_map(|m| &m.parts)
        .filter_map(|p| match p {
            Part::ToolCallResponse { response, .. } => Some(response.clone()),
            _ => None,
        })
        .collect()
}

/// Python sets (`generate.py`), then Node ones (`js/generate.mjs`).
const SETS: &[&str] = &[
    "lc-oi",
    "agents-oi",
    "pydantic-ai",
    "double",
    "otel-v2-split",
    "otel-v2-metrics",
    "otel-v2-nocontent",
    "oi-openai",
    "vercel-ai",
    "js-double",
    "js-split",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_producers_give_one_faithful_row_per_model_call() {
    let collector = Collector::start(TestDb::new("producers"), "");
    let keys: BTreeMap<&str, String> = ["pb", "json"].into_iter().map(|e| (e, collector.key(&format!("prod-{e}")))).collect();
    let mut metric_bodies = 0;
    for set in SETS {
        let dir = producers().join(set);
        let m = manifest(set);
        for e in &m.files {
            send(&collector, &keys[encoding(&e.file)], &dir, e).await;
            metric_bodies += usize::from(e.signal == "metrics");
        }
    }
    collector.wait_stored().await;
    let store = collector.db.store();

    for set in SETS {
        let m = manifest(set);
        let dir = producers().join(set);
        for sc in m.scenarios.keys() {
            let served = served(&m, sc);
            let answered: Vec<&Value> = served.iter().filter(|s| s["status"] == 200).collect();
            for e in m.files.iter().filter(|e| e.signal == "traces" && scenario(&e.file) == sc) {
                let ctx = format!("{set}/{}", e.file);
                let traces = trace_ids(&decode_traces(&dir.join(&e.file)));
                let rows = calls(&store, &format!("prod-{}", encoding(&e.file)), &traces).await;
                // One row per model call: a second instrumentation or a framework span around
                // the provider call is merged, not counted again.
                assert_eq!(rows.len(), served.len(), "{ctx}: {rows:#?}");
                let ok: Vec<&Call> = rows.iter().filter(|r| r.status == "ok").collect();
                assert_eq!(ok.len(), answered.len(), "{ctx}");
                let prompt: u64 = answered.iter().map(|s| s["prompt_tokens"].as_u64().unwrap()).sum();
                let completion: u64 = answered.iter().map(|s| s["completion_tokens"].as_u64().unwrap()).sum();
                assert_eq!(ok.iter().map(|r| r.input_tokens).sum::<u64>(), prompt, "{ctx}: input tokens count once");
                assert_eq!(ok.iter().map(|r| r.output_tokens).sum::<u64>(), completion, "{ctx}: output tokens count once");
                for (row, s) in ok.iter().zip(&answered) {
                    let content = *set != "otel-v2-nocontent";
                    if let Some(text) = s["text"].as_str().filter(|_| content) {
                        // Exactly the answer: not twice over ("X\nX") when a producer sends it
                        // under two keys.
                        assert_eq!(row.output_text, text, "{ctx}");
                    }
                    if let Some(tool) = s["tool_call"].as_object().filter(|_| content) {
                        assert_eq!(row.tool_names, vec![tool["name"].as_str().unwrap().to_string()], "{ctx}");
                    }
                }
                // Every call after a tool ran carries the tool's result, never `null`.
                if served.iter().any(|s| s["kind"] == "tool_call") && *set != "otel-v2-nocontent" {
                    let last = ok.last().unwrap();
                    let results = tool_results(&last.input());
                    assert!(!results.is_empty(), "{ctx}: the tool result reaches the next call: {}", last.input_messages);
                    assert!(results.iter().all(|r| !r.is_null()), "{ctx}: tool result stored as null: {}", last.input_messages);
                    assert!(results.iter().any(|r| r.to_string().contains("18")), "{ctx}: {results:?}");
                }
                // Rate limits, however each library spells them, are one class, stored at ingest
                // with the request's status; the raw type and message stay as sent.
                // The Vercel AI SDK records no HTTP status: none is made up.
                let status = if *set == "vercel-ai" { 0 } else { 429 };
                for row in rows.iter().filter(|r| r.status == "error") {
                    assert_eq!(
                        (row.error_class.as_str(), row.http_status),
                        ("rate_limit", status),
                        "{ctx}: {} / {}",
                        row.error_type,
                        row.error_message
                    );
                    assert!(!row.error_type.is_empty(), "{ctx}");
                }
                for row in rows.iter().filter(|r| r.status != "error") {
                    assert_eq!((row.error_class.as_str(), row.http_status), ("", 0), "{ctx}");
                }
                // The provider's response id, wherever the producer keeps it, so that a signal
                // sent with the id the application holds links to its call.
                let ids: Vec<&str> = ok.iter().map(|r| r.response_id.as_str()).collect();
                match *set {
                    "lc-oi" | "double" | "pydantic-ai" | "otel-v2-split" | "otel-v2-nocontent" | "otel-v2-metrics" | "vercel-ai"
                    | "js-double" | "js-split" => {
                        let want: Vec<&str> = answered.iter().map(|s| s["response_id"].as_str().unwrap()).collect();
                        assert_eq!(ids, want, "{ctx}");
                    }
                    _ => {}
                }
            }
        }
    }

    // Specific to one producer each.
    let lc = calls(&store, "prod-pb", &trace_ids(&decode_traces(&producers().join("lc-oi/chat_plain.pb")))).await;
    let seen = &manifest("lc-oi").scenarios["chat_plain"]["seen_by_app"];
    assert_eq!(lc[0].response_id, seen["response_metadata_id"].as_str().unwrap(), "the id LangChain hands the app");

    let stream = calls(&store, "prod-pb", &trace_ids(&decode_traces(&producers().join("pydantic-ai/chat_stream.pb")))).await;
    assert!(stream[0].time_to_first_token_ns.is_some_and(|t| t > 0), "pydantic-ai's time to first chunk: {stream:?}");

    let nocontent = calls(&store, "prod-pb", &trace_ids(&decode_traces(&producers().join("otel-v2-nocontent/chat_no_content.pb")))).await;
    assert_eq!((nocontent[0].output_messages.as_str(), nocontent[0].output_tokens), ("[]", 9), "no content captured, tokens kept");

    // The Vercel AI SDK: session and user from `ai.telemetry.metadata.*`, on every call; the
    // wrapper span (`ai.generateText`, the steps' sum of tokens) is no call of its own.
    for sc in ["chat_plain", "tool_call", "chat_stream", "error_429"] {
        for e in ["pb", "json"] {
            let rows =
                calls(&store, &format!("prod-{e}"), &trace_ids(&decode_traces(&producers().join(format!("vercel-ai/{sc}.pb"))))).await;
            assert!(!rows.is_empty(), "vercel-ai/{sc}.{e}");
            for r in &rows {
                assert_eq!((r.session_id.as_str(), r.user_id.as_str()), ("sess-fixture-js-01", "user-fixture-js-01"), "vercel-ai/{sc}.{e}");
            }
        }
    }

    let double = calls(&store, "prod-pb", &trace_ids(&decode_traces(&producers().join("double/double_instrumented.pb")))).await;
    assert_eq!(double[0].output()[0].parts.len(), 1, "{:?}", double[0].output());
    let js = calls(&store, "prod-pb", &trace_ids(&decode_traces(&producers().join("js-double/double_instrumented.pb")))).await;
    assert_eq!(js[0].output()[0].parts.len(), 1, "Traceloop and OpenInference on one Node client: {:?}", js[0].output());
    assert!(collector.metric("flywheel_duplicate_calls_total").await >= 4.0, "the second recording of a call is counted");

    // OTLP metrics: accepted (200 / OK above) and counted per metric.
    assert!(metric_bodies >= 9);
    let text = reqwest::get(format!("{}/metrics", collector.http)).await.unwrap().text().await.unwrap();
    let points = |name: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("flywheel_metric_points_received_total{{metric=\"{name}\"}} ")))
            .map(|v| v.trim().parse().unwrap())
            .unwrap_or(0.0)
    };
    assert!(points("gen_ai.client.token.usage") > 0.0, "{text}");
    assert!(points("gen_ai.client.operation.duration") > 0.0, "{text}");
}

fn with_session(request: &mut ExportTraceServiceRequest, session: &str) {
    for span in request.resource_spans.iter_mut().flat_map(|r| &mut r.scope_spans).flat_map(|s| &mut s.spans) {
        span.attributes.push(KeyValue {
            key: "session.id".into(),
            value: Some(AnyValue { value: Some(any_value::Value::StringValue(session.into())) }),
            ..Default::default()
        });
    }
}

/// A tool loop whose follow-up request lands in a new trace repeats the user's message, and two
/// instrumentations at once record one request twice: neither is the user asking again. A
/// message-id signal names one call of a two-call trace: it is stored on that call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeats_that_are_not_the_user_asking_again_derive_no_regeneration() {
    let collector = Collector::start(TestDb::new("producer_repeats"), "[collector.derive]\ninterval_secs = 0\n");
    let key = collector.key("loops");
    for (set, file, logs) in [
        ("otel-v2-split", "tool_loop_split_traces.pb", Some("tool_loop_split_traces.logs.pb")),
        ("double", "double_instrumented.pb", Some("double_instrumented.logs.pb")),
        ("lc-oi", "tool_call.pb", None),
        // Node: the same split loop (Traceloop), a double recording, a tool loop in one trace.
        ("js-split", "tool_loop_split_traces.pb", None),
        ("js-double", "double_instrumented.pb", None),
        ("vercel-ai", "tool_call.pb", None),
    ] {
        let mut request = decode_traces(&producers().join(set).join(file));
        with_session(&mut request, &format!("sess-{set}"));
        post(&collector, &key, "traces", "application/x-protobuf", None, request.encode_to_vec()).await;
        if let Some(logs) = logs {
            post(&collector, &key, "logs", "application/x-protobuf", None, std::fs::read(producers().join(set).join(logs)).unwrap()).await;
        }
    }
    collector.wait_stored().await;
    let store = collector.db.store();
    let cfg = flywheel_collector::signals::derive::DeriveConfig::default();
    let derived = flywheel_collector::signals::derive::run(&store, &cfg).await.unwrap();
    let regenerations: Vec<_> = derived.iter().filter(|s| s.kind == "regenerate" || s.kind == "retry").collect();
    assert!(regenerations.is_empty(), "{regenerations:#?}");

    // The first of two calls, named by the id LangChain hands the application.
    let traces = trace_ids(&decode_traces(&producers().join("lc-oi/tool_call.pb")));
    let rows = calls(&store, "loops", &traces).await;
    let first = rows.iter().find(|r| r.response_id == "chatcmpl-lc-0002").expect("the first call's id");
    let response = reqwest::Client::new()
        .post(format!("{}/v1/signals", collector.http))
        .bearer_auth(&key)
        .json(&json!({"kind": "thumbs_down", "message_id": "chatcmpl-lc-0002"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    collector.wait_stored().await;
    let (span, status): (String, String) = store
        .query("SELECT span_id, link_status FROM signals FINAL WHERE project_id = 'loops' AND message_id = 'chatcmpl-lc-0002'")
        .fetch_one()
        .await
        .unwrap();
    assert_eq!((span.as_str(), status.as_str()), (first.span_id.as_str(), "linked"));
    assert_eq!(first.session_id, "sess-lc-oi");
}

/// Issue 20 with issue 16: one call recorded twice (two instrumentations at once: a wrapper span
/// and the span it wraps) whose two spans reach two collectors behind a load balancer — in
/// either order, its log events to either — is one `llm_calls` row: the row one collector
/// makes of both (but for the feature, read from ancestors in the same request), merged in
/// storage (the wrapper's row deleted).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_recorded_twice_and_sent_to_two_collectors_is_one_row() {
    use flywheel_schemas::rows::LlmCallRow;
    let a = Collector::start(TestDb::new("double_two"), "");
    let b = a.beside("");
    let dir = producers().join("double");
    let request = decode_traces(&dir.join("double_instrumented.pb"));
    let logs = std::fs::read(dir.join("double_instrumented.logs.pb")).unwrap();
    let traces = trace_ids(&request);
    // One request per span: the wrapper (the root) and the span it wraps.
    let only = |root: bool| {
        let mut r = request.clone();
        for scope in r.resource_spans.iter_mut().flat_map(|rs| &mut rs.scope_spans) {
            scope.spans.retain(|s| s.parent_span_id.is_empty() == root);
        }
        r.resource_spans.iter_mut().for_each(|rs| rs.scope_spans.retain(|s| !s.spans.is_empty()));
        r.encode_to_vec()
    };
    let (outer, inner) = (only(true), only(false));
    assert!(!outer.is_empty() && !inner.is_empty());
    let post_logs = |c: &Collector, key: String| {
        let (url, body) = (format!("{}/v1/logs", c.http), logs.clone());
        async move {
            let r = reqwest::Client::new()
                .post(url)
                .bearer_auth(key)
                .header("content-type", "application/x-protobuf")
                .body(body)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
        }
    };
    let (whole, ab, ba) = (a.key("whole"), a.key("ab"), a.key("ba"));
    assert_eq!(a.post_traces(&whole, request.encode_to_vec()).await.status(), 200);
    post_logs(&a, whole.clone()).await;
    // The wrapped span first, to one collector; the wrapper later, to the other.
    assert_eq!(a.post_traces(&ab, inner.clone()).await.status(), 200);
    a.wait_stored().await;
    assert_eq!(b.post_traces(&ab, outer.clone()).await.status(), 200);
    post_logs(&a, ab.clone()).await;
    // The wrapper first.
    assert_eq!(b.post_traces(&ba, outer).await.status(), 200);
    b.wait_stored().await;
    assert_eq!(a.post_traces(&ba, inner).await.status(), 200);
    post_logs(&b, ba.clone()).await;
    a.wait_stored().await;
    b.wait_stored().await;

    let store = a.db.store();
    let rows = |project: &'static str| {
        let (store, traces) = (store.clone(), traces.clone());
        async move {
            let rows: Vec<LlmCallRow> = store
                .query("SELECT ?fields FROM llm_calls FINAL WHERE project_id = ? AND has(?, trace_id) ORDER BY span_id")
                .bind(project)
                .bind(&traces)
                .fetch_all()
                .await
                .unwrap();
            // The feature is left out: a call takes it from its ancestors in the same request
            // (here the wrapper, a root, lends its span name), else from its service — sent
            // alone, the wrapped span has no ancestor to read.
            rows.into_iter()
                .map(|r| LlmCallRow {
                    project_id: String::new(),
                    feature: String::new(),
                    ingested_at: time::OffsetDateTime::UNIX_EPOCH,
                    ..r
                })
                .collect::<Vec<_>>()
        }
    };
    let reference = rows("whole").await;
    assert_eq!(reference.len(), 1, "one collector makes one row of the two recordings");
    for project in ["ab", "ba"] {
        let mut got = Vec::new();
        for _ in 0..100 {
            got = rows(project).await;
            if got == reference {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        assert_eq!(got, reference, "{project}: the call's two recordings sent to two collectors");
    }
}
