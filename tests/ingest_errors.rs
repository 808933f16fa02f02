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
