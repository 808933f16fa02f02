//! The bounds that keep a collector standing whatever a client or ClickHouse does (issue 15,
//! docs/reliability.md), each checked on the real binary against the real engine, with the
//! metric that shows it: request headers that never end, floods of unknown keys and token key
//! ids, a ClickHouse that accepts connections and never answers, and log records and signals
//! dated where storage cannot keep them.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{Collector, TestDb};
use flywheel_collector::signals::token::{self, Claims};
use opentelemetry_proto::tonic::collector::logs::v1::{ExportLogsServiceRequest, ExportLogsServiceResponse};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use prost::Message as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn fixture(path: &str) -> Vec<u8> {
    std::fs::read(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/otlp").join(path)).unwrap()
}

/// A client that sends a header line now and then never completes its request: the header
/// timeout closes the connection although bytes keep arriving (the idle timeout alone would
/// not), nothing is acknowledged, and the close is counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_headers_that_never_end_are_cut_at_the_header_timeout() {
    let c = Collector::start(TestDb::new("headers"), "[collector]\nheader_timeout_secs = 1\nidle_timeout_secs = 60\n");
    let addr = c.http.trim_start_matches("http://").to_string();
    let stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    let reader = tokio::spawn(async move {
        let mut reply = Vec::new();
        let _ = read.read_to_end(&mut reply).await;
        reply
    });
    let started = Instant::now();
    write.write_all(b"POST /v1/traces HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    // One header every 200 ms, for up to 20 s: far more often than the idle timeout.
    while !reader.is_finished() && started.elapsed() < Duration::from_secs(20) {
        if write.write_all(b"X-Slow: a\r\n").await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let reply = tokio::time::timeout(Duration::from_secs(5), reader).await.expect("the collector closed the connection").unwrap();
    let took = started.elapsed();
    assert!(took < Duration::from_secs(10), "closed after {took:?}, with a 1 s header timeout");
    let reply = String::from_utf8_lossy(&reply);
    assert!(!reply.contains(" 200 "), "a request whose headers never ended was answered: {reply}");
    assert!(c.metric(r#"flywheel_connections_timed_out_total{reason="headers"}"#).await >= 1.0);
    println!("headers trickled every 200 ms: connection closed after {took:?} (header timeout 1 s)");
}

/// Unknown keys cannot load the database: a key refused once is refused from memory, a flood of
/// distinct unknown keys costs one small lookup each and never a re-read of the key table, and
/// the same holds for the key id of feedback tokens. A key created meanwhile works at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_keys_and_token_key_ids_are_refused_without_loading_the_database() {
    let c = Collector::start(TestDb::new("badkeys"), "[collector]\nkey_refresh_secs = 3600\n");
    let good = c.key("p");
    let body = fixture("otel-v2/chat_plain.pb");
    assert_eq!(c.post_traces(&good, body.clone()).await.status(), 200);
    let (one, table) = (r#"flywheel_key_lookups_total{kind="one"}"#, r#"flywheel_key_lookups_total{kind="table"}"#);
    let (one_before, table_before) = (c.metric(one).await, c.metric(table).await);

    // The same bad key, 300 times.
    for _ in 0..300 {
        assert_eq!(c.post_traces("fwk_the_same_bad_key", body.clone()).await.status(), 401);
    }
    let same = c.metric(one).await - one_before;
    assert!(same <= 1.0, "one bad key, 300 requests: {same} lookups");

    // 100 distinct bad keys: one lookup each, no re-read of the table.
    for i in 0..100 {
        assert_eq!(c.post_traces(&format!("fwk_random_{i:04}"), body.clone()).await.status(), 401);
    }
    // 200 tokens naming a key id that does not exist.
    let claims = Claims { k: "k_nobody".into(), p: "p".into(), exp: i64::MAX / 2, t: "ab".repeat(16), m: String::new(), s: String::new() };
    let forged = token::mint("fwk_whatever", &claims);
    let http = reqwest::Client::new();
    for _ in 0..200 {
        let r = http
            .post(format!("{}/v1/signals", c.http))
            .bearer_auth(&forged)
            .json(&serde_json::json!({"kind": "copy"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
    }
    let lookups = c.metric(one).await - one_before;
    let reads = c.metric(table).await - table_before;
    println!(
        "600 refused requests (300 with one bad key, 100 distinct keys, 200 tokens of an unknown key id): {lookups} one-key lookups, {reads} reads of the key table"
    );
    assert!(lookups <= (1 + 100 + 1) as f64, "{lookups} lookups");
    assert_eq!(reads, 0.0, "refused keys never re-read the whole key table");

    // A key created now authenticates at once.
    let fresh = c.key("q");
    assert_eq!(c.post_traces(&fresh, body).await.status(), 200);
}

/// A TCP relay to the engine that can turn into a black hole: it accepts connections and reads
/// what arrives, but never answers, as a ClickHouse with a stuck disk or behind a dropped route
/// does.
struct Relay {
    addr: std::net::SocketAddr,
    black_hole: Arc<AtomicBool>,
    /// Bumped at every switch: each connection ends when it no longer matches.
    generation: Arc<tokio::sync::watch::Sender<u64>>,
}

impl Relay {
    async fn start(upstream: std::net::SocketAddr) -> Relay {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let black_hole = Arc::new(AtomicBool::new(false));
        let generation = Arc::new(tokio::sync::watch::channel(0u64).0);
        let (hole, gen_tx) = (black_hole.clone(), generation.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else { continue };
                let hole = hole.load(Ordering::SeqCst);
                let mut switched = gen_tx.subscribe();
                tokio::spawn(async move {
                    let relay = async {
                        if hole {
                            let mut sink = vec![0u8; 65536];
                            while inbound.read(&mut sink).await.is_ok_and(|n| n > 0) {}
                            std::future::pending::<()>().await;
                        } else if let Ok(mut outbound) = tokio::net::TcpStream::connect(upstream).await {
                            let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        }
                    };
                    tokio::select! {
                        _ = relay => {}
                        _ = switched.changed() => {} // dropped: the connection is cut
                    }
                });
            }
        });
        Relay { addr, black_hole, generation }
    }

    /// Every connection open now is cut, and the next ones are relayed (false) or swallowed.
    fn set_black_hole(&self, on: bool) {
        self.black_hole.store(on, Ordering::SeqCst);
        self.generation.send_modify(|g| *g += 1);
    }
}

/// A ClickHouse that accepts connections and never answers holds nothing forever: `/readyz`
/// answers within its 2 s ping deadline and names the problem, a request whose key is known is
/// acknowledged from the write-ahead log, the passed deadlines are counted by call, and once
/// ClickHouse answers again everything acknowledged is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clickhouse_that_never_answers_hangs_nothing() {
    let db = TestDb::new("blackhole");
    let mut url = reqwest::Url::parse(&db.url).unwrap();
    let upstream = std::net::SocketAddr::new(url.host_str().unwrap().parse().unwrap(), url.port().unwrap());
    let relay = Relay::start(upstream).await;
    url.set_port(Some(relay.addr.port())).unwrap();
    let c = Collector::start(TestDb { url: url.to_string(), database: db.database.clone() }, "");
    let key = c.key("p");
    let body = fixture("otel-v2/chat_plain.pb");
    assert_eq!(c.post_traces(&key, body.clone()).await.status(), 200);
    c.wait_stored().await;

    relay.set_black_hole(true);
    let started = Instant::now();
    let ready = tokio::time::timeout(Duration::from_secs(10), reqwest::get(format!("{}/readyz", c.http)))
        .await
        .expect("/readyz answers while ClickHouse never does")
        .unwrap();
    let took = started.elapsed();
    let text = ready.text().await.unwrap();
    assert!(took < Duration::from_secs(5), "/readyz took {took:?}");
    assert!(text.contains("ClickHouse") && text.contains("no answer within"), "{text}");

    let started = Instant::now();
    let r = tokio::time::timeout(Duration::from_secs(10), c.post_traces(&key, fixture("oi/agent.pb"))).await.expect("acknowledged");
    assert_eq!(r.status(), 200, "the write-ahead log takes the data while ClickHouse is silent");
    println!("ClickHouse silent: /readyz answered in {took:?}; a request was acknowledged in {:?}", started.elapsed());
    assert!(c.metric(r#"flywheel_clickhouse_timeouts_total{call="ping"}"#).await >= 1.0);

    relay.set_black_hole(false);
    for _ in 0..40 {
        if c.metric("flywheel_wal_pending_records").await == 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(c.metric("flywheel_wal_pending_records").await, 0.0, "the log drained once ClickHouse answered again");
    let traces: u64 = db.store().query("SELECT uniqExact(trace_id) FROM spans WHERE project_id = 'p'").fetch_one().await.unwrap();
    assert_eq!(traces, 2, "both acknowledged traces are stored");
}

/// Log records and signals dated where storage cannot keep them (past 2051, or past what a
/// timestamp holds) are refused one by one with a reason; the valid ones beside them are stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_records_and_signals_dated_out_of_range_are_refused_alone() {
    use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value};
    let c = Collector::start(TestDb::new("logclock"), "");
    let key = c.key("p");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
    let record = |time: u64, text: &str| LogRecord {
        time_unix_nano: time,
        observed_time_unix_nano: now,
        event_name: "app.note".into(),
        body: Some(AnyValue { value: Some(any_value::Value::StringValue(text.into())) }),
        ..Default::default()
    };
    let req = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: vec![
                    record(now, "today"),
                    record(now + 274 * 365 * 86_400 * 1_000_000_000, "in 2300"),
                    record(u64::MAX, "the end"),
                ],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let r = reqwest::Client::new()
        .post(format!("{}/v1/logs", c.http))
        .bearer_auth(&key)
        .header("content-type", "application/x-protobuf")
        .body(req.encode_to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let partial = ExportLogsServiceResponse::decode(r.bytes().await.unwrap()).unwrap().partial_success.expect("partial success");
    assert_eq!(partial.rejected_log_records, 2, "{}", partial.error_message);
    assert!(partial.error_message.contains("time"), "{}", partial.error_message);
    c.wait_stored().await;
    let stored: u64 = c.db.store().query("SELECT count() FROM log_records WHERE project_id = 'p'").fetch_one().await.unwrap();
    assert_eq!(stored, 1, "the record dated today is stored");
    assert_eq!(c.metric(r#"flywheel_rejected_total{signal="logs",reason="time_out_of_range"}"#).await, 2.0);

    let r = reqwest::Client::new()
        .post(format!("{}/v1/signals", c.http))
        .bearer_auth(&key)
        .json(&serde_json::json!([
            {"kind": "copy", "session_id": "s1", "timestamp": "2300-01-01T00:00:00Z"},
            {"kind": "copy", "session_id": "s2"}
        ]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["accepted"], 1, "{body}");
    assert_eq!(body["rejected"][0]["field"], "timestamp", "{body}");
}

/// Edit distances are quadratic: four 1 MB `edit` signals at once once stalled `/healthz` and
/// ingestion for 8–15 s. A signal's text is now at most 64 KB, the compared length is capped
/// (4,000 characters) and the work runs off the runtime: the collector keeps answering while
/// eight edits of the largest size are linked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_edits_do_not_stall_the_collector() {
    let c = Collector::start(TestDb::new("edits"), "");
    let key = c.key("p");
    assert_eq!(c.post_traces(&key, fixture("otel-v2/chat_plain.pb")).await.status(), 200);
    c.wait_stored().await;
    let req =
        opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest::decode(fixture("otel-v2/chat_plain.pb").as_slice())
            .unwrap();
    let trace = hex::encode(&req.resource_spans[0].scope_spans[0].spans[0].trace_id);
    let edits: Vec<_> = (0..8)
        .map(|i| {
            let (url, key, trace) = (format!("{}/v1/signals", c.http), key.clone(), trace.clone());
            let text: String = (0..60_000).map(|j| char::from(b'a' + ((j * 7 + i) % 26) as u8)).collect();
            tokio::spawn(async move {
                reqwest::Client::new()
                    .post(url)
                    .bearer_auth(key)
                    .json(&serde_json::json!({"kind": "edit", "trace_id": trace, "text": text, "idempotency_key": format!("e{i}")}))
                    .send()
                    .await
                    .unwrap()
                    .status()
            })
        })
        .collect();
    let mut slowest = Duration::ZERO;
    while edits.iter().any(|e| !e.is_finished()) {
        let started = Instant::now();
        let health = reqwest::get(format!("{}/healthz", c.http)).await.unwrap();
        assert_eq!(health.status(), 200);
        slowest = slowest.max(started.elapsed());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for e in edits {
        assert_eq!(e.await.unwrap(), 200);
    }
    println!("eight 60 KB edit signals at once: slowest /healthz answer {slowest:?}");
    assert!(slowest < Duration::from_secs(2), "/healthz waited {slowest:?} behind edit distances");
    c.wait_stored().await;
    let distances: Vec<u64> =
        c.db.store()
            .query("SELECT assumeNotNull(edit_distance) FROM signals FINAL WHERE project_id = 'p' AND kind = 'edit'")
            .fetch_all()
            .await
            .unwrap();
    assert_eq!(distances.len(), 8);
    assert!(distances.iter().all(|d| (1..=4000).contains(d)), "{distances:?}");
}

/// gRPC bodies count in the memory budget as they arrive, not once tonic has buffered and
/// decoded them: an export that stalls halfway holds its bytes in the budget, the next export
/// is refused with RESOURCE_EXHAUSTED carrying RetryInfo (without it, OTLP exporters drop the
/// data instead of retrying), and the budget comes back when the stalled stream ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_bodies_count_in_the_memory_budget_as_they_arrive() {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
    use tonic_types::StatusExt;
    let c = Collector::start(TestDb::new("grpcbudget"), "[collector]\nmax_inflight_body_bytes = 1000000\n");
    let key = c.key("p");
    let addr = c.grpc.trim_start_matches("http://").to_string();
    let tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let (h2, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(connection);
    let mut h2 = h2.ready().await.unwrap();
    let head = grpc_export_head(&addr, &key);
    let (_response, mut stalled) = h2.send_request(head, false).unwrap();
    // A message announced as 4 MB, of which 400 KB arrive, then nothing.
    let mut prefix = vec![0u8];
    prefix.extend_from_slice(&4_000_000u32.to_be_bytes());
    stalled.send_data(bytes::Bytes::from(prefix), false).unwrap();
    for _ in 0..25 {
        stalled.send_data(bytes::Bytes::from(vec![0x0au8; 16_000]), false).unwrap();
    }
    let mut held = 0.0;
    for _ in 0..100 {
        held = c.metric("flywheel_inflight_body_bytes").await;
        if held >= 800_000.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(held >= 800_000.0, "a stalled gRPC body of 400 KB holds {held} bytes of the budget");

    let export = ExportTraceServiceRequest::decode(fixture("otel-v2/chat_plain.pb").as_slice()).unwrap();
    let mut padded = export.clone();
    padded.resource_spans[0].scope_spans[0].spans[0].attributes.push(opentelemetry_proto::tonic::common::v1::KeyValue {
        key: "pad".into(),
        value: Some(opentelemetry_proto::tonic::common::v1::AnyValue {
            value: Some(opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue("x".repeat(100_000))),
        }),
        ..Default::default()
    });
    let mut client = TraceServiceClient::connect(c.grpc.clone()).await.unwrap();
    let with_key = |req: ExportTraceServiceRequest| {
        let mut r = tonic::Request::new(req);
        r.metadata_mut().insert("authorization", format!("Bearer {key}").parse().unwrap());
        r
    };
    let refused = client.export(with_key(padded.clone())).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::ResourceExhausted, "{refused:?}");
    let retry = refused.get_details_retry_info().expect("RetryInfo on a busy refusal");
    assert_eq!(retry.retry_delay, Some(Duration::from_secs(1)));
    assert!(c.metric(r#"flywheel_rejected_total{signal="grpc",reason="memory_budget"}"#).await >= 1.0);

    stalled.send_reset(h2::Reason::CANCEL);
    let mut accepted = false;
    for _ in 0..100 {
        if client.export(with_key(padded.clone())).await.is_ok() {
            accepted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(accepted, "the budget is released when the stalled stream ends");
    assert_eq!(c.metric("flywheel_inflight_body_bytes").await, 0.0);
}

/// A gRPC export is authenticated from its headers before its body is read: stalled exports
/// with made-up keys hold nothing of the memory budget (each made-up key used to get a share
/// of its own, and twenty of them held the whole budget), each is refused UNAUTHENTICATED at
/// once, and a real key's export goes through beside them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn made_up_keys_hold_nothing_of_the_grpc_memory_budget() {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
    let c = Collector::start(
        TestDb::new("grpcmadeup"),
        "[collector]\nmax_inflight_body_bytes = 1000000\nmax_inflight_body_bytes_per_key = 400000\n",
    );
    let key = c.key("p");
    let addr = c.grpc.trim_start_matches("http://").to_string();
    let tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let (h2, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(connection);
    let mut replies = Vec::new();
    let mut streams = Vec::new();
    for i in 0..20 {
        let mut h2 = h2.clone().ready().await.unwrap();
        let (reply, mut stream) = h2.send_request(grpc_export_head(&addr, &format!("fw_made_up_{i}")), false).unwrap();
        // A message announced as 4 MB, of which 48 KB arrive, then nothing.
        let mut prefix = vec![0u8];
        prefix.extend_from_slice(&4_000_000u32.to_be_bytes());
        let _ = stream.send_data(bytes::Bytes::from(prefix), false);
        for _ in 0..3 {
            let _ = stream.send_data(bytes::Bytes::from(vec![0x0au8; 16_000]), false);
        }
        replies.push(reply);
        streams.push(stream);
    }
    for reply in replies {
        let reply = tokio::time::timeout(Duration::from_secs(10), reply).await.expect("refused without waiting for the body").unwrap();
        let status = reply.headers().get("grpc-status").and_then(|v| v.to_str().ok()).map(str::to_string);
        assert_eq!(status.as_deref(), Some("16"), "UNAUTHENTICATED: {:?}", reply.headers());
    }
    assert_eq!(c.metric("flywheel_inflight_body_bytes").await, 0.0, "made-up keys hold nothing of the budget");
    assert!(c.metric(r#"flywheel_rejected_total{signal="grpc",reason="auth"}"#).await >= 20.0);

    let mut client = TraceServiceClient::connect(c.grpc.clone()).await.unwrap();
    let mut request = tonic::Request::new(ExportTraceServiceRequest::decode(fixture("otel-v2/chat_plain.pb").as_slice()).unwrap());
    request.metadata_mut().insert("authorization", format!("Bearer {key}").parse().unwrap());
    client.export(request).await.expect("a real key's export goes through");
    drop(streams);
}

/// The headers of a gRPC trace export, for a raw HTTP/2 stream.
fn grpc_export_head(addr: &str, key: &str) -> http::Request<()> {
    http::Request::builder()
        .method("POST")
        .uri(format!("http://{addr}/opentelemetry.proto.collector.trace.v1.TraceService/Export"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("authorization", format!("Bearer {key}"))
        .body(())
        .unwrap()
}

/// One client cannot take the memory budget of all the others: with a 1 MB budget and a
/// 400 KB share per key, a client that stalls eleven 90 KB uploads holds at most its share
/// (before the share, it held the whole budget and every other project got 429), its next
/// uploads are refused with 429 and the reason, and another project's request goes through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_key_holds_at_most_its_share_of_the_memory_budget() {
    let c = Collector::start(
        TestDb::new("keyshare"),
        "[collector]\nmax_inflight_body_bytes = 1000000\nmax_inflight_body_bytes_per_key = 400000\nmax_body_bytes = 100000\nidle_timeout_secs = 30\n",
    );
    let flood = c.key("flood");
    let quiet = c.key("quiet");
    let addr = c.http.trim_start_matches("http://").to_string();
    let mut stalled = Vec::new();
    for _ in 0..11 {
        let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let head = format!(
            "POST /v1/traces HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {flood}\r\nContent-Type: application/x-protobuf\r\nContent-Length: 99000\r\n\r\n"
        );
        s.write_all(head.as_bytes()).await.unwrap();
        let _ = s.write_all(&vec![0u8; 90_000]).await;
        stalled.push(s);
    }
    // Wait until the collector has read what the stalled uploads sent (or refused them).
    let mut held = 0.0;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = c.metric("flywheel_inflight_body_bytes").await;
        if now == held && now > 0.0 {
            break;
        }
        held = now;
    }
    assert!(held <= 400_000.0 + 4096.0, "the flooding key holds {held} bytes, over its 400 KB share");
    assert!(c.metric(r#"flywheel_rejected_total{signal="spans",reason="key_share"}"#).await >= 6.0);

    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
    let mut request =
        opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest::decode(fixture("otel-v2/chat_plain.pb").as_slice())
            .unwrap();
    for span in request.resource_spans.iter_mut().flat_map(|r| r.scope_spans.iter_mut()).flat_map(|s| s.spans.iter_mut()) {
        span.start_time_unix_nano = now;
        span.end_time_unix_nano = now + 1_000_000;
        span.attributes.push(opentelemetry_proto::tonic::common::v1::KeyValue {
            key: "pad".into(),
            value: Some(opentelemetry_proto::tonic::common::v1::AnyValue {
                value: Some(opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue("x".repeat(60_000))),
            }),
            ..Default::default()
        });
    }
    let reply = c.post_traces(&quiet, request.encode_to_vec()).await;
    assert_eq!(reply.status(), 200, "another project still gets in: {}", reply.text().await.unwrap());

    // The flooding key's next request is told why, and when to retry.
    let reply = c.post_traces(&flood, request.encode_to_vec()).await;
    assert_eq!(reply.status(), 429);
    assert_eq!(reply.headers().get("retry-after").and_then(|v| v.to_str().ok()), Some("1"));
    let message = String::from_utf8_lossy(&reply.bytes().await.unwrap()).to_string();
    assert!(message.contains("holds its share"), "{message}");
    drop(stalled);
}
