//! What the collector answers to bad input and bad credentials, over the real binary: the OTLP
//! status codes, a message naming the problem, partial success that keeps the good spans of a
//! batch, and projects that never see each other's data.

mod common;

use std::io::Write;

use common::{Collector, TestDb, flywheel_cmd, stderr};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use prost::Message as _;

fn fixture(path: &str) -> Vec<u8> {
    std::fs::read(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/otlp").join(path)).unwrap()
}

struct Reply {
    status: u16,
    content_type: String,
    body: Vec<u8>,
    retry_after: Option<String>,
}

impl Reply {
    /// The `google.rpc.Status` message of an error reply, in JSON or protobuf.
    fn message(&self) -> String {
        if self.content_type == "application/json" {
            let v: serde_json::Value = serde_json::from_slice(&self.body).unwrap();
            v["message"].as_str().unwrap().to_string()
        } else {
            // field 2 of google.rpc.Status: a length-delimited string after the code.
            String::from_utf8_lossy(&self.body).to_string()
        }
    }
}

async fn post(c: &Collector, path: &str, key: Option<&str>, content_type: &str, encoding: Option<&str>, body: Vec<u8>) -> Reply {
    let mut req = reqwest::Client::new().post(format!("{}{path}", c.http)).header("content-type", content_type);
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    if let Some(e) = encoding {
        req = req.header("content-encoding", e);
    }
    let resp = req.body(body).send().await.unwrap();
    c.wait_stored().await;
    let status = resp.status().as_u16();
    let content_type = resp.headers().get("content-type").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
    let retry_after = resp.headers().get("retry-after").map(|v| v.to_str().unwrap().to_string());
    Reply { status, content_type, body: resp.bytes().await.unwrap().to_vec(), retry_after }
}

async fn count(store: &flywheel_schemas::Store, table: &str, project: &str) -> u64 {
    store.query(&format!("SELECT count() FROM {table} FINAL WHERE project_id = ?")).bind(project).fetch_one().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_input_gets_the_right_status_and_a_readable_message() {
    let c = Collector::start(TestDb::new("malformed"), "[collector]\nmax_body_bytes = 20000\n");
    let key = c.key("p");
    let good = fixture("otel-v2/chat_plain.pb");

    // Truncated protobuf.
    let r = post(&c, "/v1/traces", Some(&key), "application/x-protobuf", None, good[..good.len() / 2].to_vec()).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.content_type, "application/x-protobuf", "errors come in the request's encoding");
    assert!(r.message().contains("malformed OTLP ExportTraceServiceRequest: protobuf"), "{}", r.message());

    // Invalid JSON names the position.
    let r = post(&c, "/v1/traces", Some(&key), "application/json", None, b"{\"resourceSpans\": [".to_vec()).await;
    assert_eq!(r.status, 400);
    assert!(r.message().contains("JSON") && r.message().contains("line 1"), "{}", r.message());

    // Wrong content type.
    let r = post(&c, "/v1/traces", Some(&key), "text/plain", None, good.clone()).await;
    assert_eq!(r.status, 415);
    assert!(r.message().contains("application/x-protobuf or application/json"), "{}", r.message());

    // Bad gzip, unknown encoding.
    let r = post(&c, "/v1/traces", Some(&key), "application/x-protobuf", Some("gzip"), good.clone()).await;
    assert_eq!(r.status, 400);
    assert!(r.message().contains("gzip"), "{}", r.message());
    let r = post(&c, "/v1/traces", Some(&key), "application/x-protobuf", Some("br"), good.clone()).await;
    assert_eq!(r.status, 415);

    // Oversize, plain and once decompressed (a small gzip body that inflates past the limit).
    let r = post(&c, "/v1/traces", Some(&key), "application/x-protobuf", None, vec![0u8; 30_000]).await;
    assert_eq!(r.status, 413);
    assert!(r.message().contains("20000 bytes"), "{}", r.message());
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&vec![b'a'; 100_000]).unwrap();
    let r = post(&c, "/v1/traces", Some(&key), "application/x-protobuf", Some("gzip"), gz.finish().unwrap()).await;
    assert_eq!(r.status, 413);
    assert!(r.message().contains("once decompressed"), "{}", r.message());

    // Ids of the wrong length: that span is refused (partial success), the good ones are kept.
    let mut req = ExportTraceServiceRequest::decode(fixture("tl/tool_call.pb").as_slice()).unwrap();
    let spans = &mut req.resource_spans[0].scope_spans[0].spans;
    let total = spans.len();
    assert!(total >= 2);
    spans[0].trace_id.truncate(15);
    let r = post(&c, "/v1/traces", Some(&key), "application/x-protobuf", None, req.encode_to_vec()).await;
    assert_eq!(r.status, 200);
    let reply = ExportTraceServiceResponse::decode(r.body.as_slice()).unwrap();
    let partial = reply.partial_success.expect("partial success");
    assert_eq!(partial.rejected_spans, 1);
    assert!(partial.error_message.contains("trace_id must be 16"), "{}", partial.error_message);
    let store = c.db.store();
    assert_eq!(count(&store, "spans", "p").await, (total - 1) as u64);

    // Every refusal is counted by reason.
    let metrics = reqwest::get(format!("{}/metrics", c.http)).await.unwrap().text().await.unwrap();
    for line in [
        r#"flywheel_rejected_total{signal="spans",reason="malformed"} 2"#,
        r#"flywheel_rejected_total{signal="spans",reason="content_type"} 1"#,
        r#"flywheel_rejected_total{signal="spans",reason="too_large"} 2"#,
        r#"flywheel_rejected_total{signal="spans",reason="invalid_id"} 1"#,
    ] {
        assert!(metrics.contains(line), "missing `{line}` in\n{metrics}");
    }

    // A path or method that is not served says what is.
    let r = post(&c, "/v1/trace", Some(&key), "application/x-protobuf", None, vec![]).await;
    assert_eq!(r.status, 404);
    assert!(String::from_utf8_lossy(&r.body).contains("/v1/traces"), "{}", String::from_utf8_lossy(&r.body));
    let r = reqwest::get(format!("{}/v1/traces", c.http)).await.unwrap();
    assert_eq!(r.status(), 405);
    assert!(r.text().await.unwrap().contains("GET is not served at /v1/traces"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_scope_every_row_to_one_project_and_revocation_is_enforced() {
    let c = Collector::start(TestDb::new("auth"), "[collector]\nkey_refresh_secs = 0\n");
    let key_a = c.key("project-a");
    let _key_b = c.key("project-b");
    let body = fixture("oi/agent.pb");

    let r = post(&c, "/v1/traces", None, "application/x-protobuf", None, body.clone()).await;
    assert_eq!(r.status, 401);
    assert!(r.message().contains("missing API key"), "{}", r.message());
    let r = post(&c, "/v1/traces", Some("fwk_not_a_key"), "application/x-protobuf", None, body.clone()).await;
    assert_eq!(r.status, 401);
    assert!(r.message().contains("unknown API key"), "{}", r.message());

    let r = post(&c, "/v1/traces", Some(&key_a), "application/x-protobuf", None, body.clone()).await;
    assert_eq!(r.status, 200);
    let store = c.db.store();
    assert!(count(&store, "spans", "project-a").await > 0);
    assert!(count(&store, "llm_calls", "project-a").await > 0);
    assert_eq!(count(&store, "spans", "project-b").await, 0, "project B never sees project A's spans");
    assert_eq!(count(&store, "llm_calls", "project-b").await, 0);

    // gRPC uses the same keys.
    let mut client = TraceServiceClient::connect(c.grpc.clone()).await.unwrap();
    let req = ExportTraceServiceRequest::decode(body.as_slice()).unwrap();
    let status = client.export(req.clone()).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated);
    let mut ok = tonic::Request::new(req.clone());
    ok.metadata_mut().insert("x-flywheel-key", key_a.parse().unwrap());
    client.export(ok).await.unwrap();

    // Revocation: the key is refused from then on, over both transports.
    let key_id = {
        let out = c.db.flywheel(&["keys", "create", "--project", "project-c"]);
        let text = common::stdout(&out);
        let key = text.lines().last().unwrap().to_string();
        let id = text.split_whitespace().nth(2).unwrap().to_string();
        (id, key)
    };
    let r = post(&c, "/v1/traces", Some(&key_id.1), "application/x-protobuf", None, body.clone()).await;
    assert_eq!(r.status, 200);
    let out = flywheel_cmd()
        .args(["keys", "revoke", &key_id.0])
        .env("FLYWHEEL_CLICKHOUSE_URL", &c.db.url)
        .env("FLYWHEEL_CLICKHOUSE_DATABASE", &c.db.database)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let r = post(&c, "/v1/traces", Some(&key_id.1), "application/x-protobuf", None, body.clone()).await;
    assert_eq!(r.status, 403);
    assert!(r.message().contains("revoked"), "{}", r.message());
    let mut revoked = tonic::Request::new(req);
    revoked.metadata_mut().insert("authorization", format!("Bearer {}", key_id.1).parse().unwrap());
    assert_eq!(client.export(revoked).await.unwrap_err().code(), tonic::Code::PermissionDenied);
    assert!(r.retry_after.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_are_redacted_before_storage() {
    let c = Collector::start(TestDb::new("redact"), "");
    let key = c.key("p");
    let secret = "sk-proj-abcdefghijklmnopqrstuvwxyz0123456789";
    let body = String::from_utf8(fixture("otel-v2/chat_plain.json"))
        .unwrap()
        .replace("What is the capital of France?", &format!("my key is {secret}, what is the capital of France?"));
    let r = post(&c, "/v1/traces", Some(&key), "application/json", None, body.into_bytes()).await;
    assert_eq!(r.status, 200, "{}", r.message());
    let store = c.db.store();
    let (raw, text): (String, String) = store
        .query("SELECT s.attributes['gen_ai.input.messages'], c.input_text FROM spans AS s FINAL JOIN llm_calls AS c FINAL USING (project_id, trace_id, span_id) WHERE project_id = 'p'")
        .fetch_one()
        .await
        .unwrap();
    for stored in [&raw, &text] {
        assert!(!stored.contains(secret), "{stored}");
        assert!(stored.contains("[REDACTED:secret]"), "{stored}");
    }
    assert!(text.ends_with("what is the capital of France?"), "the rest of the text is kept: {text}");
}

fn span_count(r: &ExportTraceServiceRequest) -> u64 {
    r.resource_spans.iter().flat_map(|r| &r.scope_spans).map(|s| s.spans.len() as u64).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clickhouse_down_is_absorbed_by_the_write_ahead_log_and_replayed_when_it_returns() {
    let _ = common::scratch_dir("outage");
    let engine = common::dedicated_engine("outage", 0);
    let port = engine.state.port;
    let db = TestDb { url: engine.url().to_string(), database: "outage".into() };
    let c = Collector::start(db, "");
    let key = c.key("p");
    let files = ["oi/chat_plain.pb", "oi/tool_call.pb", "tl/agent.pb", "otel-v2/agent.pb"];
    let mut expected = 0;
    let first = fixture(files[0]);
    expected += span_count(&ExportTraceServiceRequest::decode(first.as_slice()).unwrap());
    assert_eq!(post(&c, "/v1/traces", Some(&key), "application/x-protobuf", None, first).await.status, 200);

    engine.stop().unwrap();
    for f in &files[1..] {
        let body = fixture(f);
        expected += span_count(&ExportTraceServiceRequest::decode(body.as_slice()).unwrap());
        let mut req =
            reqwest::Client::new().post(format!("{}/v1/traces", c.http)).bearer_auth(&key).header("content-type", "application/x-protobuf");
        req = req.body(body);
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 200, "acknowledged: fsynced in the write-ahead log while ClickHouse is down");
    }
    let metrics = reqwest::get(format!("{}/metrics", c.http)).await.unwrap().text().await.unwrap();
    let pending: u64 = metrics.lines().find_map(|l| l.strip_prefix("flywheel_wal_pending_records ")).unwrap().trim().parse().unwrap();
    assert_eq!(pending, 3, "{metrics}");
    let ready = reqwest::get(format!("{}/readyz", c.http)).await.unwrap();
    assert_eq!(ready.status(), 200, "the log has room: degraded, still ready");
    assert!(ready.text().await.unwrap().contains("ClickHouse"));

    // ClickHouse comes back on the same data and port: the log replays into it.
    let _engine = common::dedicated_engine("outage", port);
    c.wait_stored().await;
    let store = c.db.store();
    assert_eq!(count(&store, "spans", "p").await, expected, "every acknowledged span, exactly once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_log_storage_down_is_503_with_retry_after() {
    let _ = common::scratch_dir("down");
    let engine = common::dedicated_engine("down", 0);
    let db = TestDb { url: engine.url().to_string(), database: "down".into() };
    let c = Collector::start(db, "[collector]\nwal = false\n");
    let key = c.key("p");
    let body = fixture("otel-v2/chat_plain.pb");
    assert_eq!(post(&c, "/v1/traces", Some(&key), "application/x-protobuf", None, body.clone()).await.status, 200);

    engine.stop().unwrap();
    let resp = reqwest::Client::new()
        .post(format!("{}/v1/traces", c.http))
        .bearer_auth(&key)
        .header("content-type", "application/x-protobuf")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    assert!(resp.headers().get("retry-after").is_some(), "Retry-After tells the exporter when to retry");
    let mut client = TraceServiceClient::connect(c.grpc.clone()).await.unwrap();
    let mut req = tonic::Request::new(ExportTraceServiceRequest::decode(body.as_slice()).unwrap());
    req.metadata_mut().insert("x-flywheel-key", key.parse().unwrap());
    assert_eq!(client.export(req).await.unwrap_err().code(), tonic::Code::Unavailable, "gRPC exporters retry UNAVAILABLE");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_can_export_its_own_traces_to_another_flywheel() {
    let sink = Collector::start(TestDb::new("selfsink"), "");
    let sink_key = sink.key("flywheel-itself");
    let c = Collector::start_with_env(
        TestDb::new("selftraced"),
        "",
        &[("FLYWHEEL_SELF_TRACES", sink.http.as_str()), ("FLYWHEEL_SELF_TRACES_KEY", sink_key.as_str())],
    );
    let key = c.key("p");
    assert_eq!(post(&c, "/v1/traces", Some(&key), "application/x-protobuf", None, fixture("oi/chat_plain.pb")).await.status, 200);
    let store = sink.db.store();
    let mut names: Vec<String> = Vec::new();
    for _ in 0..80 {
        sink.wait_stored().await;
        names =
            store.query("SELECT DISTINCT name FROM spans WHERE project_id = 'flywheel-itself' ORDER BY name").fetch_all().await.unwrap();
        if names.iter().any(|n| n == "ingest traces") && names.iter().any(|n| n == "clickhouse insert") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    assert!(names.iter().any(|n| n == "ingest traces"), "the collector's own spans arrive: {names:?}");
    assert!(names.iter().any(|n| n == "clickhouse insert"), "{names:?}");
    let service: String =
        store.query("SELECT any(service_name) FROM spans WHERE project_id = 'flywheel-itself'").fetch_one().await.unwrap();
    assert_eq!(service, "flywheel");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_older_than_the_retention_are_refused_not_silently_expired() {
    let c = Collector::start(TestDb::new("expired"), "[retention]\nspans = 30\nllm_calls = 90\n");
    let key = c.key("p");
    let mut req = ExportTraceServiceRequest::decode(fixture("tl/tool_call.pb").as_slice()).unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
    let spans = &mut req.resource_spans[0].scope_spans[0].spans;
    let total = spans.len() as u64;
    for (i, s) in spans.iter_mut().enumerate() {
        let age = if i == 0 { 40 * 86_400 * 1_000_000_000u64 } else { 1_000_000_000 };
        let len = s.end_time_unix_nano - s.start_time_unix_nano;
        s.start_time_unix_nano = now - age;
        s.end_time_unix_nano = now - age + len;
    }
    let r = post(&c, "/v1/traces", Some(&key), "application/x-protobuf", None, req.encode_to_vec()).await;
    assert_eq!(r.status, 200);
    let partial = ExportTraceServiceResponse::decode(r.body.as_slice()).unwrap().partial_success.expect("partial success");
    assert_eq!(partial.rejected_spans, 1);
    assert!(partial.error_message.contains("older than the 30-day retention"), "{}", partial.error_message);
    assert_eq!(count(&c.db.store(), "spans", "p").await, total - 1, "the recent spans are kept");
    let metrics = reqwest::get(format!("{}/metrics", c.http)).await.unwrap().text().await.unwrap();
    assert!(metrics.contains(r#"flywheel_rejected_total{signal="spans",reason="expired"} 1"#), "{metrics}");
}

fn string_kv(key: &str, value: String) -> opentelemetry_proto::tonic::common::v1::KeyValue {
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
    KeyValue { key: key.into(), value: Some(AnyValue { value: Some(any_value::Value::StringValue(value)) }), ..Default::default() }
}

/// `n` spans of one trace under one resource; `start(i)` dates span `i` (nanoseconds).
fn spans_request(
    resource: Vec<opentelemetry_proto::tonic::common::v1::KeyValue>,
    n: u64,
    start: impl Fn(u64) -> u64,
) -> ExportTraceServiceRequest {
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
    let spans = (0..n)
        .map(|i| Span {
            trace_id: [7u8; 16].to_vec(),
            span_id: (i + 1).to_be_bytes().to_vec(),
            name: format!("step {i}"),
            start_time_unix_nano: start(i),
            end_time_unix_nano: start(i) + 1_000_000,
            ..Default::default()
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource { attributes: resource, ..Default::default() }),
            scope_spans: vec![ScopeSpans { spans, ..Default::default() }],
            ..Default::default()
        }],
    }
}

fn now_nanos() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
}

/// Issue 15, item 2: a 350 KB request whose 300 KB resource attribute is copied into each of
/// its 1,000 span rows (300 MB of rows) is refused with 413 and a reason before anything is
/// built or acknowledged; the collector goes on serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_whose_rows_multiply_a_large_resource_is_refused_with_413() {
    let c = Collector::start(TestDb::new("expansion"), "");
    let key = c.key("p");
    let now = now_nanos();
    let big = spans_request(vec![string_kv("k8s.manifest", "x".repeat(300_000))], 1000, |i| now - i * 1_000_000);
    let body = big.encode_to_vec();
    assert!(body.len() < 400_000, "{}", body.len());
    let r = post(&c, "/v1/traces", Some(&key), "application/x-protobuf", None, body).await;
    assert_eq!(r.status, 413, "{}", r.message());
    assert!(r.message().contains("resource attributes") && r.message().contains("send fewer spans"), "{}", r.message());
    assert!(r.retry_after.is_none(), "resending the same request cannot help");
    let mut client = TraceServiceClient::connect(c.grpc.clone()).await.unwrap();
    let mut req = tonic::Request::new(big);
    req.metadata_mut().insert("x-flywheel-key", key.parse().unwrap());
    let status = client.export(req).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    let metrics = reqwest::get(format!("{}/metrics", c.http)).await.unwrap().text().await.unwrap();
    assert!(metrics.contains(r#"flywheel_rejected_total{signal="spans",reason="too_large_rows"} 2"#), "{metrics}");
    assert_eq!(count(&c.db.store(), "spans", "p").await, 0, "nothing of it acknowledged, nothing stored");

    // The same shape with a small resource is an ordinary request.
    let small = spans_request(vec![string_kv("service.name", "shop".into())], 1000, |i| now - i * 1_000_000);
    let r = post(&c, "/v1/traces", Some(&key), "application/x-protobuf", None, small.encode_to_vec()).await;
    assert_eq!(r.status, 200);
    assert_eq!(count(&c.db.store(), "spans", "p").await, 1000);
}

/// Issue 15, item 3: one request with spans on 150 distinct days (a backfill) is stored whole:
/// inserts are split so that no block touches more than 100 daily partitions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_on_more_than_100_days_in_one_request_are_all_stored() {
    let c = Collector::start(TestDb::new("partitions"), "");
    let key = c.key("p");
    let now = now_nanos();
    let day = 86_400 * 1_000_000_000u64;
    // Days ahead, not behind: the test database's retention TTL must not expire any of them.
    let req = spans_request(vec![string_kv("service.name", "backfill".into())], 150, |i| now + (i + 1) * day);
    let r = post(&c, "/v1/traces", Some(&key), "application/x-protobuf", None, req.encode_to_vec()).await;
    assert_eq!(r.status, 200);
    let partial = ExportTraceServiceResponse::decode(r.body.as_slice()).unwrap().partial_success;
    assert_eq!(partial, None, "nothing refused");
    let store = c.db.store();
    let (spans, days): (u64, u64) =
        store.query("SELECT count(), uniqExact(toDate(start_time)) FROM spans FINAL WHERE project_id = 'p'").fetch_one().await.unwrap();
    assert_eq!((spans, days), (150, 150), "every acknowledged span is stored");
}

/// Issue 15, item 4: spans dated where storage cannot keep them (after 2106 the retention TTL
/// wraps around and ClickHouse drops the row at once; after 2262 the row cannot be encoded and
/// the whole insert fails) are refused with OTLP partial success; the valid spans beside them
/// are stored, and the request is not answered 503 (which exporters would retry forever).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_dated_past_what_storage_holds_are_refused_and_the_rest_is_stored() {
    let c = Collector::start(TestDb::new("farfuture"), "");
    let key = c.key("p");
    let now = now_nanos();
    let year = 365 * 86_400 * 1_000_000_000u64;
    // 2150, 2300 (past DateTime64's end), and now.
    let dates = [now + 124 * year, now + 274 * year, now];
    let req = spans_request(vec![string_kv("service.name", "clock".into())], 3, |i| dates[i as usize]);
    let r = post(&c, "/v1/traces", Some(&key), "application/x-protobuf", None, req.encode_to_vec()).await;
    assert_eq!(r.status, 200);
    let partial = ExportTraceServiceResponse::decode(r.body.as_slice()).unwrap().partial_success.expect("partial success");
    assert_eq!(partial.rejected_spans, 2);
    assert!(partial.error_message.contains("start_time") && partial.error_message.contains("clock"), "{}", partial.error_message);
    assert_eq!(count(&c.db.store(), "spans", "p").await, 1, "the valid span is stored");
    let metrics = reqwest::get(format!("{}/metrics", c.http)).await.unwrap().text().await.unwrap();
    assert!(metrics.contains(r#"flywheel_rejected_total{signal="spans",reason="time_out_of_range"} 2"#), "{metrics}");

    // A span whose event is dated past 2262: same answer, same reason.
    let mut req = spans_request(vec![], 1, |_| now);
    req.resource_spans[0].scope_spans[0].spans[0].span_id = 99u64.to_be_bytes().to_vec();
    req.resource_spans[0].scope_spans[0].spans[0].events =
        vec![opentelemetry_proto::tonic::trace::v1::span::Event { name: "late".into(), time_unix_nano: u64::MAX, ..Default::default() }];
    let r = post(&c, "/v1/traces", Some(&key), "application/x-protobuf", None, req.encode_to_vec()).await;
    assert_eq!(r.status, 200);
    let partial = ExportTraceServiceResponse::decode(r.body.as_slice()).unwrap().partial_success.expect("partial success");
    assert!(partial.error_message.contains("event `late`"), "{}", partial.error_message);
}

/// gRPC refusals that tonic makes before the service runs carry the codes the README promises:
/// RESOURCE_EXHAUSTED for an oversize message (not OUT_OF_RANGE), INVALID_ARGUMENT for one that
/// does not decode, such as nesting past the decoder's recursion limit (not INTERNAL, which an
/// exporter may retry forever). Both are counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_refusals_carry_the_documented_status_codes() {
    use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue, any_value};
    let c = Collector::start(TestDb::new("grpccodes"), "[collector]\nmax_body_bytes = 100000\n");
    let key = c.key("p");
    let mut client = TraceServiceClient::connect(c.grpc.clone()).await.unwrap();
    let export = |req: ExportTraceServiceRequest| {
        let mut req = tonic::Request::new(req);
        req.metadata_mut().insert("x-flywheel-key", key.parse().unwrap());
        req
    };
    let big = spans_request(vec![string_kv("blob", "x".repeat(200_000))], 1, |_| now_nanos());
    let status = client.export(export(big)).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");

    let mut deep = AnyValue { value: Some(any_value::Value::StringValue("bottom".into())) };
    for _ in 0..200 {
        deep = AnyValue { value: Some(any_value::Value::ArrayValue(ArrayValue { values: vec![deep] })) };
    }
    let mut nested = spans_request(vec![], 1, |_| now_nanos());
    nested.resource_spans[0].scope_spans[0].spans[0].attributes =
        vec![opentelemetry_proto::tonic::common::v1::KeyValue { key: "deep".into(), value: Some(deep), ..Default::default() }];
    // Nesting past prost's recursion limit is no longer a refusal: the value is cut, the span
    // kept, and the reply names the attribute.
    let reply = client.export(export(nested)).await.expect("a deep value is cut, not refused").into_inner();
    let warning = reply.partial_success.expect("a warning").error_message;
    assert!(warning.contains("`deep`") && warning.contains("nested more than"), "{warning}");

    let metrics = reqwest::get(format!("{}/metrics", c.http)).await.unwrap().text().await.unwrap();
    assert!(metrics.contains(r#"flywheel_rejected_total{signal="grpc",reason="too_large"} 1"#), "{metrics}");
}

/// A value nested past the decoders' recursion limits (a serialised object graph sent as
/// nested `kvlistValue`s / `arrayValue`s) used to refuse the whole request, losing every good
/// span beside it. Over OTLP/JSON and protobuf it is cut at a documented depth and stored as a
/// marker; the span, its other attributes and the request's other spans are stored, and the
/// reply's partial success names the attribute.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_nested_past_the_decoders_limits_is_cut_and_its_span_kept() {
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, KeyValueList, any_value};
    let c = Collector::start(TestDb::new("deepvalue"), "");
    let key = c.key("p");
    let store = c.db.store();
    let now = now_nanos();

    // Protobuf: 300 levels of kvlist in `tool.payload`, beside a plain attribute and a second span.
    let mut deep = AnyValue { value: Some(any_value::Value::StringValue("bottom".into())) };
    for _ in 0..300 {
        deep = AnyValue {
            value: Some(any_value::Value::KvlistValue(KeyValueList {
                values: vec![KeyValue { key: "next".into(), value: Some(deep), ..Default::default() }],
            })),
        };
    }
    let mut req = spans_request(vec![], 2, |_| now);
    req.resource_spans[0].scope_spans[0].spans[0].name = "deep-proto".into();
    req.resource_spans[0].scope_spans[0].spans[0].attributes =
        vec![string_kv("kept", "yes".into()), KeyValue { key: "tool.payload".into(), value: Some(deep), ..Default::default() }];
    let r = post(&c, "/v1/traces", Some(&key), "application/x-protobuf", None, req.encode_to_vec()).await;
    assert_eq!(r.status, 200, "{}", r.message());
    let partial = ExportTraceServiceResponse::decode(r.body.as_slice()).unwrap().partial_success.expect("a warning");
    assert_eq!(partial.rejected_spans, 0);
    assert!(partial.error_message.contains("`tool.payload`"), "{}", partial.error_message);

    // JSON: 200 levels of arrayValue in `payload`.
    let mut value = r#"{"stringValue":"bottom"}"#.to_string();
    for _ in 0..200 {
        value = format!(r#"{{"arrayValue":{{"values":[{value}]}}}}"#);
    }
    let json = format!(
        r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{{"traceId":"{}","spanId":"00000000000000bb","name":"deep-json","startTimeUnixNano":"{now}","endTimeUnixNano":"{now}","attributes":[{{"key":"payload","value":{value}}},{{"key":"kept","value":{{"stringValue":"yes"}}}}]}}]}}]}}]}}"#,
        "0a".repeat(16)
    );
    let r = post(&c, "/v1/traces", Some(&key), "application/json", None, json.into_bytes()).await;
    assert_eq!(r.status, 200, "{}", r.message());
    let reply: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    let warning = reply["partialSuccess"]["errorMessage"].as_str().unwrap_or_default().to_string();
    assert!(warning.contains("`payload`") && warning.contains("JSON string"), "{reply}");

    c.wait_stored().await;
    let stored: Vec<(String, String, String)> = store
        .query("SELECT name, attributes['kept'], arrayStringConcat(mapValues(attributes), ' ') FROM spans WHERE project_id = 'p' ORDER BY name")
        .fetch_all()
        .await
        .unwrap();
    assert_eq!(stored.len(), 3, "both spans of the protobuf request and the JSON one: {stored:?}");
    for (name, kept, all) in stored.iter().filter(|(n, ..)| n.starts_with("deep-")) {
        assert_eq!(kept, "yes", "{name}");
        assert!(all.contains("nested deeper than 24 levels, cut") && !all.contains("bottom"), "{name}: {all}");
    }
    let metrics = reqwest::get(format!("{}/metrics", c.http)).await.unwrap().text().await.unwrap();
    assert!(metrics.contains(r#"flywheel_values_repaired_total{what="deep"} 2"#), "{metrics}");
}

/// Issue 15, memory and time bounds: an upload that stalls holds its memory only until the
/// idle timeout closes its connection; meanwhile the memory budget of bodies in flight refuses
/// new bodies with 429 and Retry-After instead of growing; once the stalled connection is
/// closed its reservation is released and the same request is accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_upload_is_cut_and_a_spent_memory_budget_answers_429() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let c = Collector::start(
        TestDb::new("budget"),
        "[collector]\nmax_inflight_body_bytes = 400000\nidle_timeout_secs = 1\nmax_body_bytes = 16777216\n",
    );
    let key = c.key("p");
    let addr = c.http.trim_start_matches("http://").to_string();
    let mut stalled = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /v1/traces HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\nContent-Type: application/x-protobuf\r\nContent-Length: 16000000\r\n\r\n"
    );
    stalled.write_all(head.as_bytes()).await.unwrap();
    stalled.write_all(&vec![0u8; 150_000]).await.unwrap();

    // A second body of 100 KB reserves about 300 KB (its bytes, then its decompressed copy and
    // decoded request): it fits the 400 KB budget alone, not beside the stalled 150 KB.
    let body = spans_request(vec![string_kv("pad", "x".repeat(100_000))], 1, |_| now_nanos()).encode_to_vec();
    let mut refused = None;
    // Up to 5 s: beside other tests on two cores, the collector may read the stalled bytes late.
    for _ in 0..250 {
        let r = post(&c, "/v1/traces", Some(&key), "application/x-protobuf", None, body.clone()).await;
        if r.status == 429 {
            refused = Some(r);
            break;
        }
        // The stalled bytes may not all be read yet: the reservation grows as they arrive.
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let refused = refused.expect("the budget refuses while the stalled upload holds it");
    assert_eq!(refused.retry_after.as_deref(), Some("1"));
    assert!(refused.message().contains("memory budget"), "{}", refused.message());

    // The idle timeout ends the stalled request (its body read fails: 400, never a 200) and
    // closes the connection.
    let mut reply = Vec::new();
    let closed =
        tokio::time::timeout(std::time::Duration::from_secs(30), stalled.read_to_end(&mut reply)).await.expect("closed by the collector");
    let reply = String::from_utf8_lossy(&reply);
    assert!(closed.is_err() || !reply.starts_with("HTTP/1.1 200"), "{reply}");
    let mut accepted = false;
    for _ in 0..100 {
        if post(&c, "/v1/traces", Some(&key), "application/x-protobuf", None, body.clone()).await.status == 200 {
            accepted = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(accepted, "the stalled upload's reservation is released with its connection");
    let metrics = reqwest::get(format!("{}/metrics", c.http)).await.unwrap().text().await.unwrap();
    assert!(metrics.contains(r#"reason="memory_budget"}"#), "{metrics}");
}

/// Issue 15: idle connections cannot exhaust the collector. With every connection slot taken by
/// idle clients, `/healthz` still gets an answer: idle connections are closed after the idle
/// timeout and the waiting connection is accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_bounded_and_reclaimed() {
    let c = Collector::start(TestDb::new("idle"), "[collector]\nmax_connections = 50\nidle_timeout_secs = 1\n");
    let addr = c.http.trim_start_matches("http://").to_string();
    let mut idle = Vec::new();
    for _ in 0..80 {
        idle.push(tokio::net::TcpStream::connect(&addr).await.unwrap());
    }
    let health = tokio::time::timeout(std::time::Duration::from_secs(30), reqwest::get(format!("{}/healthz", c.http)))
        .await
        .expect("answered once idle connections are reclaimed")
        .unwrap();
    assert_eq!(health.status(), 200);
    let metrics = reqwest::get(format!("{}/metrics", c.http)).await.unwrap().text().await.unwrap();
    let max: u64 = metrics.lines().find_map(|l| l.strip_prefix("flywheel_connections_max ")).unwrap().trim().parse().unwrap();
    assert_eq!(max, 50);
    drop(idle);
}

/// Inputs a careless or hostile client sends, each acknowledged before and then partly lost:
/// a gzip body of several members (only the first was read), OTLP/JSON with the proto's field
/// names (`resource_spans`: read as an empty request), log records that differ only by severity
/// or resource, or not at all (collapsed into one row), a model-call span that is its own
/// parent or one of a cycle (absorbed as its own "wrapper": no call row), and a browser token
/// reusing the back end's idempotency key (the back end's signal dropped as a duplicate).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_careless_client_sends_is_stored_whole() {
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value};
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    let c = Collector::start(TestDb::new("careless"), "");
    let key = c.key("p");
    let store = c.db.store();

    // Two gzip members, a span each.
    let gz = |req: &ExportTraceServiceRequest| {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(&req.encode_to_vec()).unwrap();
        enc.finish().unwrap()
    };
    let now = now_nanos();
    let first = spans_request(vec![string_kv("service.name", "gz".into())], 1, |_| now);
    let mut second = spans_request(vec![string_kv("service.name", "gz".into())], 1, |_| now);
    second.resource_spans[0].scope_spans[0].spans[0].trace_id = [8u8; 16].to_vec();
    // Two members of one protobuf stream: concatenated messages are one message with both
    // spans (repeated fields append).
    let body = [gz(&first), gz(&second)].concat();
    let r = post(&c, "/v1/traces", Some(&key), "application/x-protobuf", Some("gzip"), body).await;
    assert_eq!(r.status, 200, "{}", r.message());
    c.wait_stored().await;
    let traces: u64 = store.query("SELECT uniqExact(trace_id) FROM spans WHERE project_id = 'p'").fetch_one().await.unwrap();
    assert_eq!(traces, 2, "both gzip members are read");

    // The proto's field names in JSON.
    let snake = format!(
        r#"{{"resource_spans":[{{"scope_spans":[{{"spans":[{{"trace_id":"{}","span_id":"00000000000000aa","name":"snake","start_time_unix_nano":"{now}","end_time_unix_nano":"{now}"}}]}}]}}]}}"#,
        "09".repeat(16)
    );
    let r = post(&c, "/v1/traces", Some(&key), "application/json", None, snake.into_bytes()).await;
    assert_eq!(r.status, 200, "{}", r.message());
    c.wait_stored().await;
    let snake: u64 = store.query("SELECT count() FROM spans WHERE project_id = 'p' AND name = 'snake'").fetch_one().await.unwrap();
    assert_eq!(snake, 1, "a request with snake_case field names is stored");

    // Log records told apart by severity, by resource, and identical ones logged twice.
    let record = |severity: &str| LogRecord {
        time_unix_nano: now,
        severity_text: severity.into(),
        body: Some(AnyValue { value: Some(any_value::Value::StringValue("disk almost full".into())) }),
        ..Default::default()
    };
    let resource = |service: &str| Resource { attributes: vec![string_kv("service.name", service.into())], ..Default::default() };
    let logs = ExportLogsServiceRequest {
        resource_logs: ["api", "worker"]
            .into_iter()
            .map(|service| ResourceLogs {
                resource: Some(resource(service)),
                scope_logs: vec![ScopeLogs { log_records: vec![record("INFO"), record("ERROR"), record("ERROR")], ..Default::default() }],
                ..Default::default()
            })
            .collect(),
    };
    let r = post(&c, "/v1/logs", Some(&key), "application/x-protobuf", None, logs.encode_to_vec()).await;
    assert_eq!(r.status, 200, "{}", r.message());
    // The same request again (an exporter's retry) adds nothing.
    let r = post(&c, "/v1/logs", Some(&key), "application/x-protobuf", None, logs.encode_to_vec()).await;
    assert_eq!(r.status, 200);
    c.wait_stored().await;
    let records: u64 = store.query("SELECT count() FROM log_records FINAL WHERE project_id = 'p'").fetch_one().await.unwrap();
    assert_eq!(records, 6, "2 services × (INFO, ERROR, ERROR), once each");

    // A model-call span that is its own parent, and two that are each other's.
    let mut own = ExportTraceServiceRequest::decode(fixture("otel-v2/chat_plain.pb").as_slice()).unwrap();
    let span = &mut own.resource_spans[0].scope_spans[0].spans[0];
    span.trace_id = [0x31; 16].to_vec();
    span.parent_span_id = span.span_id.clone();
    let mut cycle = ExportTraceServiceRequest::decode(fixture("otel-v2/chat_plain.pb").as_slice()).unwrap();
    let mut a = cycle.resource_spans[0].scope_spans[0].spans[0].clone();
    a.trace_id = [0x32; 16].to_vec();
    let mut b = a.clone();
    b.span_id = vec![0xbb; 8];
    a.parent_span_id = b.span_id.clone();
    b.parent_span_id = a.span_id.clone();
    cycle.resource_spans[0].scope_spans[0].spans = vec![a, b];
    for req in [own, cycle] {
        let r = post(&c, "/v1/traces", Some(&key), "application/x-protobuf", None, req.encode_to_vec()).await;
        assert_eq!(r.status, 200, "{}", r.message());
    }
    c.wait_stored().await;
    let calls: Vec<(String, u64)> = store
        .query(
            "SELECT trace_id, count() FROM llm_calls FINAL WHERE project_id = 'p' AND trace_id IN (?, ?) GROUP BY trace_id ORDER BY trace_id",
        )
        .bind("31".repeat(16))
        .bind("32".repeat(16))
        .fetch_all()
        .await
        .unwrap();
    assert_eq!(calls, vec![("31".repeat(16), 1), ("32".repeat(16), 2)], "every model call keeps its row");

    // A browser token cannot take the back end's idempotency keys.
    let trace = "31".repeat(16);
    let http = reqwest::Client::new();
    let minted: serde_json::Value = http
        .post(format!("{}/v1/feedback-tokens", c.http))
        .bearer_auth(&key)
        .json(&serde_json::json!({"trace_id": trace}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = minted["token"].as_str().unwrap();
    let by_browser = serde_json::json!({"kind": "thumbs_up", "idempotency_key": "fb-1"});
    let r: serde_json::Value =
        http.post(format!("{}/v1/signals", c.http)).bearer_auth(token).json(&by_browser).send().await.unwrap().json().await.unwrap();
    assert_eq!(r["accepted"], 1, "{r}");
    let by_backend = serde_json::json!({"kind": "thumbs_down", "trace_id": trace, "idempotency_key": "fb-1", "comment": "wrong"});
    let r: serde_json::Value =
        http.post(format!("{}/v1/signals", c.http)).bearer_auth(&key).json(&by_backend).send().await.unwrap().json().await.unwrap();
    assert_eq!(r["signals"][0]["duplicate"], false, "the back end's signal is its own: {r}");
    c.wait_stored().await;
    let kinds: Vec<String> = store.query("SELECT kind FROM signals FINAL WHERE project_id = 'p' ORDER BY kind").fetch_all().await.unwrap();
    assert_eq!(kinds, vec!["thumbs_down".to_string(), "thumbs_up".to_string()]);
}

/// An OTLP/HTTP exporter pointed at the gRPC port by mistake is told which port to use, instead
/// of a connection closed without a word.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_on_the_grpc_port_is_told_where_to_go() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let c = Collector::start(TestDb::new("http1grpc"), "");
    let addr = c.grpc.trim_start_matches("http://").to_string();
    let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
    s.write_all(b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\nContent-Length: 0\r\n\r\n").await.unwrap();
    let mut reply = String::new();
    tokio::time::timeout(std::time::Duration::from_secs(10), s.read_to_string(&mut reply)).await.unwrap().unwrap();
    assert!(reply.starts_with("HTTP/1.1 400"), "{reply}");
    assert!(reply.contains("OTLP/gRPC (HTTP/2 only)") && reply.contains("4318"), "{reply}");
    // gRPC on the same port still works.
    let mut client = TraceServiceClient::connect(c.grpc.clone()).await.unwrap();
    let mut req = tonic::Request::new(ExportTraceServiceRequest::default());
    req.metadata_mut().insert("x-flywheel-key", c.key("p").parse().unwrap());
    client.export(req).await.unwrap();
    assert_eq!(c.metric(r#"flywheel_grpc_port_http1_requests_total{answer="400"}"#).await, 1.0);
}
