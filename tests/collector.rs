//! The collector end to end: every captured OTLP payload in `tests/fixtures/otlp/` is sent to a
//! running `flywheel serve` over the transport it was captured with (protobuf, JSON, gzip,
//! chunked, gRPC; logs to `/v1/logs`), then the rows in ClickHouse are checked against the
//! canned values of the fixtures' README, and twins of one scenario must give identical rows.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use clickhouse::Row;
use common::{Collector, TestDb};
use flywheel_schemas::messages::{Message, Part};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use prost::Message as _;
use serde::Deserialize;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/otlp")
}

#[derive(Debug, Deserialize)]
struct Entry {
    file: String,
    signal: String,
    transport: String,
    headers: BTreeMap<String, String>,
}

/// The transport variant of a file: each goes to its own project so that twins can be compared.
fn variant(file: &str) -> &'static str {
    if file.ends_with(".grpc.pb") {
        "grpc"
    } else if file.ends_with(".pb.gz") {
        "gz"
    } else if file.ends_with(".json") {
        "json"
    } else {
        "pb"
    }
}

fn scenario(file: &str) -> &str {
    file.split('.').next().unwrap()
}

async fn send(client: &reqwest::Client, collector: &Collector, key: &str, dir: &Path, e: &Entry) {
    let bytes = std::fs::read(dir.join(&e.file)).unwrap();
    if e.transport == "grpc" {
        let mut meta = tonic::metadata::MetadataMap::new();
        meta.insert("authorization", format!("Bearer {key}").parse().unwrap());
        if e.signal == "traces" {
            let req = ExportTraceServiceRequest::decode(bytes.as_slice()).unwrap();
            let mut client =
                TraceServiceClient::connect(collector.grpc.clone()).await.unwrap().send_compressed(tonic::codec::CompressionEncoding::Gzip);
            let reply = client
                .export(tonic::Request::from_parts(meta, Default::default(), req))
                .await
                .unwrap_or_else(|s| panic!("{}: {s}", e.file));
            assert_eq!(reply.into_inner().partial_success, None, "{}", e.file);
        } else {
            let req = ExportLogsServiceRequest::decode(bytes.as_slice()).unwrap();
            let mut client = LogsServiceClient::connect(collector.grpc.clone()).await.unwrap();
            let reply = client
                .export(tonic::Request::from_parts(meta, Default::default(), req))
                .await
                .unwrap_or_else(|s| panic!("{}: {s}", e.file));
            assert_eq!(reply.into_inner().partial_success, None, "{}", e.file);
        }
        return;
    }
    let url = format!("{}/v1/{}", collector.http, e.signal);
    let mut req = client.post(url).bearer_auth(key).header("content-type", &e.headers["content-type"]);
    if let Some(enc) = e.headers.get("content-encoding") {
        req = req.header("content-encoding", enc);
    }
    // JavaScript exporters send chunked bodies with no Content-Length: do the same.
    let body = if e.headers.get("transfer-encoding").map(String::as_str) == Some("chunked") {
        let chunks: Vec<Result<Vec<u8>, std::io::Error>> = bytes.chunks(300).map(|c| Ok(c.to_vec())).collect();
        reqwest::Body::wrap_stream(futures_util::stream::iter(chunks))
    } else {
        reqwest::Body::from(bytes)
    };
    let resp = req.body(body).send().await.unwrap();
    let status = resp.status();
    let content_type = resp.headers().get("content-type").map(|v| v.to_str().unwrap().to_string());
    let text = resp.bytes().await.unwrap();
    assert_eq!(status, 200, "{}: {}", e.file, String::from_utf8_lossy(&text));
    assert_eq!(content_type.as_deref(), Some(e.headers["content-type"].as_str()), "the reply has the request's content type");
    if e.headers["content-type"] == "application/json" {
        assert_eq!(&text[..], b"{}", "no partial success for {}", e.file);
    } else {
        assert!(text.is_empty(), "no partial success for {}", e.file);
    }
}

#[derive(Debug, Clone, Row, Deserialize, PartialEq)]
struct Call {
    project_id: String,
    trace_id: String,
    span_id: String,
    session_id: String,
    user_id: String,
    feature: String,
    operation: String,
    provider: String,
    request_model: String,
    response_model: String,
    response_id: String,
    input_messages: String,
    output_messages: String,
    system: String,
    input_text: String,
    output_text: String,
    tool_names: Vec<String>,
    finish_reasons: Vec<String>,
    input_tokens: u64,
    output_tokens: u64,
    cache_read_tokens: u64,
    cost_usd: Option<f64>,
    cost_source: String,
    status: String,
    error_type: String,
    error_class: String,
    http_status: u16,
    temperature: Option<f64>,
    top_p: Option<f64>,
    max_tokens: Option<u64>,
    seed: Option<i64>,
    convention: String,
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
            "SELECT c.project_id, c.trace_id, c.span_id, c.session_id, c.user_id, c.feature, c.operation, c.provider, c.request_model, \
             c.response_model, c.response_id, c.input_messages, c.output_messages, ifNull(t.content, '') AS system, c.input_text, \
             c.output_text, c.tool_names, c.finish_reasons, c.input_tokens, c.output_tokens, c.cache_read_tokens, c.cost_usd, \
             c.cost_source, c.status, c.error_type, c.error_class, c.http_status, c.temperature, c.top_p, c.max_tokens, c.seed, c.convention \
             FROM llm_calls AS c FINAL \
             LEFT JOIN (SELECT project_id, hash, any(content) AS content FROM contents GROUP BY project_id, hash) AS t \
               ON t.project_id = c.project_id AND t.hash = c.system_instructions_hash \
             WHERE c.project_id = ? AND has(?, c.trace_id) ORDER BY c.start_time, c.span_id",
        )
        .bind(project)
        .bind(traces)
        .fetch_all()
        .await
        .unwrap()
}

fn walk(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path.to_string_lossy().to_string());
        }
    }
    out
}

fn trace_ids(path: &Path) -> Vec<String> {
    let bytes = std::fs::read(path).unwrap();
    let req = if path.to_string_lossy().ends_with(".json") {
        serde_json::from_slice::<ExportTraceServiceRequest>(&bytes).unwrap()
    } else {
        ExportTraceServiceRequest::decode(bytes.as_slice()).unwrap()
    };
    let mut ids: Vec<String> = req
        .resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| &s.spans)
        .map(|s| s.trace_id.iter().map(|b| format!("{b:02x}")).collect::<String>())
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

/// Sets whose spans carry no message content (by design of the capture).
fn has_content(set: &str) -> bool {
    set != "otel-v2-nocontent"
}

fn tool_call(call: &Call) -> (Option<String>, String, serde_json::Value) {
    let out = call.output();
    let (id, name, args) = out.iter().flat_map(|m| m.tool_calls()).next().unwrap_or_else(|| panic!("no tool call in {call:#?}"));
    (id.clone(), name.to_string(), args.clone())
}

/// The canned values of tests/fixtures/otlp/README.md, per scenario.
fn check(set: &str, scenario: &str, calls: &[Call]) {
    let ctx = format!("{set}/{scenario}");
    let model_calls: Vec<&Call> = calls.iter().collect();
    let content = has_content(set);
    for c in &model_calls {
        assert_eq!(c.provider, "openai", "{ctx}");
        assert!(!c.convention.is_empty() && c.convention != "unknown", "{ctx}: {}", c.convention);
    }
    match scenario {
        "chat_plain" | "chat_stream" => {
            assert_eq!(model_calls.len(), 1, "{ctx}: {calls:#?}");
            let c = model_calls[0];
            assert_eq!(c.request_model, "gpt-4o-mini", "{ctx}");
            // JS OpenInference streamed spans name only the requested model and carry no usage.
            let no_usage = scenario == "chat_stream" && (set == "js-oi" || set == "js-tl");
            if !(set == "js-oi" && scenario == "chat_stream") {
                assert_eq!(c.response_model, "gpt-4o-mini-2024-07-18", "{ctx}");
            }
            assert_eq!(c.operation, "chat", "{ctx}");
            assert_eq!(c.status, "ok", "{ctx}");
            assert_eq!(c.temperature, Some(0.2), "{ctx}");
            // JS OpenLLMetry and JS OpenInference record no usage on streamed spans (README, Problems 5).
            if !no_usage {
                assert_eq!((c.input_tokens, c.output_tokens), (27, 8), "{ctx}");
                let cost = c.cost_usd.unwrap_or_else(|| panic!("{ctx}: no cost"));
                assert!((cost - (27.0 * 0.15 + 8.0 * 0.60) / 1e6).abs() < 1e-12, "{ctx}: {cost}");
                assert_eq!(c.cost_source, "price_table:2026-11-01", "{ctx}");
            }
            // util-genai puts no finish_reasons attribute on streamed spans, but the output
            // messages carry it (README, Problems 8): either way the row has it.
            if content || scenario == "chat_plain" {
                assert_eq!(c.finish_reasons, vec!["stop"], "{ctx}");
            }
            if scenario == "chat_plain" {
                assert_eq!(c.top_p, Some(0.9), "{ctx}");
                assert_eq!(c.max_tokens, Some(100), "{ctx}");
                // Only these emit the seed (Traceloop and the JS OTel instrumentation do not).
                if ["otel-v2", "otel-v2-nocontent", "otel-v2-legacy", "oi", "js-oi"].contains(&set) {
                    assert_eq!(c.seed, Some(42), "{ctx}");
                }
                if set.starts_with("tl") {
                    assert_eq!(c.user_id, "user-FIXTURE-42", "{ctx}");
                }
            }
            if content {
                assert_eq!(c.input_text, "What is the capital of France?", "{ctx}");
                assert_eq!(c.output_text, "The capital of France is Paris.", "{ctx}");
                assert_eq!(c.system, "You are a concise assistant.", "{ctx}");
                assert!(c.input().iter().all(|m| m.role != "system"), "{ctx}: system messages are stored apart");
            }
        }
        "tool_call" | "tool_call_stream" => {
            let expected = if scenario == "tool_call" { 2 } else { 1 };
            assert_eq!(model_calls.len(), expected, "{ctx}: two calls in two traces");
            let first = model_calls
                .iter()
                .find(|c| c.input_tokens == 1152 || c.finish_reasons.iter().any(|f| f.starts_with("tool_call")))
                .unwrap_or_else(|| panic!("{ctx}: {calls:#?}"));
            if !(set == "js-tl" && scenario == "tool_call_stream") {
                assert_eq!((first.input_tokens, first.output_tokens, first.cache_read_tokens), (1152, 19, 0), "{ctx}");
            }
            // util-genai's streamed spans carry finish reasons only inside the output messages.
            if content || scenario == "tool_call" {
                assert!(
                    matches!(first.finish_reasons.as_slice(), [f] if f == "tool_calls" || f == "tool_call"),
                    "{ctx}: {:?}",
                    first.finish_reasons
                );
            }
            if content {
                let (id, name, args) = tool_call(first);
                assert_eq!(name, "get_weather", "{ctx}");
                assert_eq!(id.as_deref(), Some("call_FIXTUREweather01"), "{ctx}");
                assert_eq!(
                    args,
                    serde_json::json!({"location": "Paris, FR", "unit": "celsius"}),
                    "{ctx}: arguments are parsed into an object"
                );
                assert_eq!(first.tool_names, vec!["get_weather"], "{ctx}");
                assert_eq!(first.input_text, "What's the weather like in Paris today?", "{ctx}");
            }
            if scenario == "tool_call" {
                let second = model_calls.iter().find(|c| c.span_id != first.span_id).unwrap();
                assert_eq!((second.input_tokens, second.output_tokens), (1187, 14), "{ctx}");
                assert_eq!(second.finish_reasons, vec!["stop"], "{ctx}");
                // Only these instrumentations report cached tokens (grep 1024 in DECODED.txt);
                // util-genai 1.0b0, the JS OTel and JS OpenLLMetry ones do not.
                if ["oi", "js-oi", "tl", "tl-legacy"].contains(&set) {
                    assert_eq!(second.cache_read_tokens, 1024, "{ctx}");
                    let cost = second.cost_usd.unwrap();
                    let expected = (163.0 * 0.15 + 1024.0 * 0.075 + 14.0 * 0.60) / 1e6;
                    assert!((cost - expected).abs() < 1e-12, "{ctx}: cached tokens priced at the cache price: {cost} vs {expected}");
                }
                if content {
                    assert_eq!(second.output_text, "It is 18°C and partly cloudy in Paris right now.", "{ctx}");
                    let input = second.input();
                    let result = input.iter().flat_map(|m| &m.parts).find_map(|p| match p {
                        Part::ToolCallResponse { id, response } => Some((id.clone(), response.clone())),
                        _ => None,
                    });
                    let (id, response) = result.unwrap_or_else(|| panic!("{ctx}: no tool result in {input:#?}"));
                    assert_eq!(id.as_deref(), Some("call_FIXTUREweather01"), "{ctx}");
                    assert!(response.to_string().contains("partly cloudy"), "{ctx}: {response}");
                }
            }
        }
        "error_429" | "error_500" => {
            assert_eq!(model_calls.len(), 1, "{ctx}");
            let c = model_calls[0];
            assert_eq!(c.status, "error", "{ctx}");
            let expected = if scenario == "error_429" { "RateLimitError" } else { "InternalServerError" };
            // JS instrumentation of OTel reports no error.type and no exception event class.
            if !set.starts_with("js-") {
                assert_eq!(c.error_type, expected, "{ctx}");
            } else {
                assert!(!c.error_type.is_empty(), "{ctx}");
            }
            // One class and status whatever the convention: read from the type, the message
            // or the status attribute at ingest.
            let class = if scenario == "error_429" { "rate_limit" } else { "unavailable" };
            let status = if scenario == "error_429" { 429 } else { 500 };
            assert_eq!(c.error_class, class, "{ctx}: {} ", c.error_type);
            assert_eq!(c.http_status, status, "{ctx}: {}", c.error_type);
        }
        "embeddings" => {
            assert_eq!(model_calls.len(), 1, "{ctx}");
            assert_eq!(model_calls[0].operation, "embeddings", "{ctx}");
            assert_eq!(model_calls[0].input_tokens, 12, "{ctx}");
        }
        "responses" => {
            assert_eq!(model_calls.len(), 1, "{ctx}");
            assert_eq!((model_calls[0].input_tokens, model_calls[0].output_tokens), (31, 9), "{ctx}");
            assert_eq!(model_calls[0].output_text, "Paris is the capital of France.", "{ctx}");
        }
        "agent" => {
            assert_eq!(model_calls.len(), 2, "{ctx}: the agent's two chat calls, not its chain/agent/tool spans");
            for c in &model_calls {
                if ["oi", "tl", "js-oi"].contains(&set) {
                    assert_eq!(c.session_id, "sess-FIXTURE-0001", "{ctx}");
                    assert_eq!(c.user_id, "user-FIXTURE-42", "{ctx}");
                }
                // The feature is the agent/workflow, not the service.
                assert_ne!(c.feature, "", "{ctx}");
            }
        }
        other => panic!("unknown scenario {other}"),
    }
}

/// Behind a load balancer, a call's span and its GenAI log events reach different collectors:
/// they are joined in storage, in either order, into the row one collector makes of both
/// (issue 16) — checked on every capture whose library sends log events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_and_its_log_events_sent_to_two_collectors_make_the_row_one_collector_makes() {
    let a = Collector::start(TestDb::new("two_collectors"), "");
    let b = a.beside("");
    let client = reqwest::Client::new();
    let (whole, ab, ba) = (a.key("whole"), a.key("ab"), a.key("ba"));
    let sets = ["otel-v2-legacy", "otel-v2", "js-otel"];
    let mut traces = BTreeMap::new();
    for set in sets {
        let dir = fixtures().join(set);
        let manifest: Vec<Entry> = serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
        let of = |signal: &'static str| manifest.iter().filter(move |e| e.signal == signal && variant(&e.file) == "pb");
        for e in of("traces").chain(of("logs")) {
            send(&client, &a, &whole, &dir, e).await;
        }
        // Spans first to one collector, their events later to the other…
        for e in of("traces") {
            send(&client, &a, &ab, &dir, e).await;
        }
        a.wait_stored().await;
        for e in of("logs") {
            send(&client, &b, &ab, &dir, e).await;
        }
        // …and events first.
        for e in of("logs") {
            send(&client, &b, &ba, &dir, e).await;
        }
        b.wait_stored().await;
        for e in of("traces") {
            send(&client, &a, &ba, &dir, e).await;
        }
        let scenarios: Vec<(String, Vec<String>)> =
            of("traces").map(|e| (scenario(&e.file).to_string(), trace_ids(&dir.join(&e.file)))).collect();
        traces.insert(set, scenarios);
    }
    a.wait_stored().await;
    b.wait_stored().await;
    let store = a.db.store();
    let unproject = |rows: Vec<Call>| rows.into_iter().map(|c| Call { project_id: String::new(), ..c }).collect::<Vec<_>>();
    for (set, scenarios) in &traces {
        for (sc, ids) in scenarios {
            let reference = calls(&store, "whole", ids).await;
            check(set, sc, &reference);
            let reference = unproject(reference);
            for project in ["ab", "ba"] {
                // The join runs after each side is stored: give it a moment.
                let mut rows = Vec::new();
                for _ in 0..100 {
                    rows = unproject(calls(&store, project, ids).await);
                    if rows == reference {
                        break;
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
                assert_eq!(rows, reference, "{set}/{sc}: the call sent to two collectors ({project})");
            }
        }
    }
    let rejoined = a.metric("flywheel_rejoined_calls_total").await + b.metric("flywheel_rejoined_calls_total").await;
    assert!(rejoined >= 10.0, "calls completed in storage: {rejoined}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fixture_is_ingested_over_its_transport_with_the_canned_values() {
    let collector = Collector::start(TestDb::new("fixtures"), "");
    let client = reqwest::Client::new();
    let mut keys = BTreeMap::new();
    for v in ["pb", "json", "grpc", "gz"] {
        keys.insert(v, collector.key(&format!("fx-{v}")));
    }
    let sets = ["otel-v2", "otel-v2-nocontent", "otel-v2-legacy", "oi", "tl", "tl-legacy", "js-otel", "js-oi", "js-tl"];
    let mut sent = 0;
    for set in sets.iter().map(|s| s.to_string()).chain(["batch/oi", "batch/otel-v2", "batch/tl"].map(String::from)) {
        let dir = fixtures().join(&set);
        let manifest: Vec<Entry> = serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
        for e in &manifest {
            let project_variant = variant(&e.file);
            send(&client, &collector, &keys[project_variant], &dir, e).await;
            sent += 1;
        }
    }
    let on_disk = walk(&fixtures())
        .into_iter()
        .filter(|p| !p.ends_with("manifest.json") && !p.ends_with("DECODED.txt") && !p.ends_with("README.md"))
        .count();
    assert_eq!(sent, on_disk, "every fixture file is listed in a manifest and sent");
    collector.wait_stored().await;

    let store = collector.db.store();
    for set in sets {
        let dir = fixtures().join(set);
        let manifest: Vec<Entry> = serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
        let mut scenarios: Vec<&str> = manifest.iter().filter(|e| e.signal == "traces").map(|e| scenario(&e.file)).collect();
        scenarios.dedup();
        for sc in scenarios {
            let variants: Vec<&str> =
                manifest.iter().filter(|e| e.signal == "traces" && scenario(&e.file) == sc).map(|e| variant(&e.file)).collect();
            let traces = trace_ids(&dir.join(&manifest.iter().find(|e| e.signal == "traces" && scenario(&e.file) == sc).unwrap().file));
            let mut reference: Option<Vec<Call>> = None;
            for v in variants {
                let rows = calls(&store, &format!("fx-{v}"), &traces).await;
                check(set, sc, &rows);
                // Twins of a scenario (protobuf, JSON, gRPC, gzip) give identical rows.
                let comparable: Vec<Call> = rows.into_iter().map(|c| Call { project_id: String::new(), ..c }).collect();
                match &reference {
                    None => reference = Some(comparable),
                    Some(r) => assert_eq!(&comparable, r, "{set}/{sc}: the {v} twin differs"),
                }
            }
        }
    }

    // Every span is stored raw, whatever its convention or kind: agent, tool and chain spans too.
    let spans: u64 = store.query("SELECT count() FROM spans FINAL WHERE project_id = 'fx-pb'").fetch_one().await.unwrap();
    let expected: usize = sets
        .iter()
        .chain(&["batch/oi", "batch/otel-v2", "batch/tl"])
        .flat_map(|set| {
            let dir = fixtures().join(set);
            let manifest: Vec<Entry> = serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
            manifest.into_iter().filter(|e| e.signal == "traces" && variant(&e.file) == "pb").map(move |e| dir.join(e.file))
        })
        .map(|p| {
            let req = ExportTraceServiceRequest::decode(std::fs::read(p).unwrap().as_slice()).unwrap();
            req.resource_spans.iter().flat_map(|r| &r.scope_spans).map(|s| s.spans.len()).sum::<usize>()
        })
        .sum();
    assert_eq!(spans, expected as u64);
    let logs: u64 = store.query("SELECT count() FROM log_records FINAL WHERE project_id = 'fx-pb'").fetch_one().await.unwrap();
    assert!(logs > 30, "log records are stored raw too ({logs})");
}

/// A request larger than one slice of the pipeline (4,096 spans) is stored as one request would
/// be: 12,000 spans in 6,000 traces, every root span first and every model call after it, so
/// that a trace's two spans lie thousands of spans apart. Each call still inherits the user,
/// session and feature of its root (slices hold whole traces), and 6,000 log records, with one
/// GenAI content event per call, complete every call's input.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_larger_than_a_slice_is_stored_as_one_request() {
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
    let c = Collector::start(TestDb::new("slices"), "");
    let key = c.key("p");
    let kv = |k: &str, v: &str| KeyValue {
        key: k.into(),
        value: Some(AnyValue { value: Some(any_value::Value::StringValue(v.into())) }),
        ..Default::default()
    };
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
    let traces = 6000u64;
    let trace_id = |t: u64| [0xabu64.to_be_bytes(), (t + 1).to_be_bytes()].concat();
    let span_id = |t: u64, child: bool| ((t + 1) * 2 + child as u64).to_be_bytes().to_vec();
    let mut spans: Vec<Span> = (0..traces)
        .map(|t| Span {
            trace_id: trace_id(t),
            span_id: span_id(t, false),
            name: format!("answer-{}", t % 3),
            kind: 2,
            start_time_unix_nano: now,
            end_time_unix_nano: now + 2_000_000,
            attributes: vec![kv("user.id", &format!("user-{t}")), kv("session.id", &format!("sess-{t}"))],
            ..Default::default()
        })
        .collect();
    spans.extend((0..traces).map(|t| Span {
        trace_id: trace_id(t),
        span_id: span_id(t, true),
        parent_span_id: span_id(t, false),
        name: "chat gpt-4o".into(),
        kind: 3,
        start_time_unix_nano: now + 1_000,
        end_time_unix_nano: now + 1_000_000,
        attributes: vec![kv("gen_ai.operation.name", "chat"), kv("gen_ai.provider.name", "openai"), kv("gen_ai.request.model", "gpt-4o")],
        ..Default::default()
    }));
    let request = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(opentelemetry_proto::tonic::resource::v1::Resource {
                attributes: vec![kv("service.name", "slices")],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans { spans, ..Default::default() }],
            ..Default::default()
        }],
    };
    let reply = c.post_traces(&key, request.encode_to_vec()).await;
    assert_eq!(reply.status(), 200, "{}", reply.text().await.unwrap());
    let logs = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: (0..traces)
                    .map(|t| LogRecord {
                        time_unix_nano: now + 2_000,
                        trace_id: trace_id(t),
                        span_id: span_id(t, true),
                        event_name: "gen_ai.user.message".into(),
                        body: Some(AnyValue {
                            value: Some(any_value::Value::KvlistValue(opentelemetry_proto::tonic::common::v1::KeyValueList {
                                values: vec![kv("content", &format!("question {t}"))],
                            })),
                        }),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let reply = reqwest::Client::new()
        .post(format!("{}/v1/logs", c.http))
        .bearer_auth(&key)
        .header("content-type", "application/x-protobuf")
        .body(logs.encode_to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 200, "{}", reply.text().await.unwrap());
    c.wait_stored().await;

    #[derive(Row, Deserialize, Debug)]
    struct Counts {
        spans: u64,
        calls: u64,
        inherited: u64,
        answered: u64,
    }
    let store = c.db.store();
    let mut counts = Counts { spans: 0, calls: 0, inherited: 0, answered: 0 };
    for _ in 0..100 {
        counts = store
            .query(
                "SELECT assumeNotNull((SELECT count() FROM spans FINAL WHERE project_id = 'p')) AS spans, count() AS calls, \
                 countIf(user_id = concat('user-', toString(reinterpretAsUInt64(reverse(unhex(substring(trace_id, 17, 16)))) - 1)) \
                   AND session_id = concat('sess-', toString(reinterpretAsUInt64(reverse(unhex(substring(trace_id, 17, 16)))) - 1)) \
                   AND feature LIKE 'answer-%') AS inherited, \
                 countIf(position(toString(input_messages), 'question ') > 0) AS answered \
                 FROM llm_calls FINAL WHERE project_id = 'p'",
            )
            .fetch_one()
            .await
            .unwrap();
        if counts.answered == traces {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!((counts.spans, counts.calls, counts.inherited, counts.answered), (2 * traces, traces, traces, traces), "{counts:?}");
}
