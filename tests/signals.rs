//! Feedback signals end to end, over the real `flywheel serve`: every kind stored once per
//! idempotency key, linked by trace id, span id, session id and response id (also when the
//! signal arrives before its trace), edit distances, OTLP log records and span events, browser
//! feedback tokens, bad input, and derived regenerations.

mod common;

use std::time::Duration;

use clickhouse::Row;
use common::{Collector, TestDb};
use flywheel_collector::signals::token::{self, Claims};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::trace::v1::span::Event;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message as _;
use serde::Deserialize;
use serde_json::{Value, json};

const KINDS: &[&str] = &[
    "thumbs_up",
    "thumbs_down",
    "rating",
    "regenerate",
    "edit",
    "copy",
    "feature_disabled",
    "feature_enabled",
    "abandon",
    "escalate",
    "retry",
    "comment",
    "custom",
];

fn fixture(path: &str) -> Vec<u8> {
    std::fs::read(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/otlp").join(path)).unwrap()
}

fn first_span(path: &str) -> (String, String) {
    let req = ExportTraceServiceRequest::decode(fixture(path).as_slice()).unwrap();
    let s = &req.resource_spans[0].scope_spans[0].spans[0];
    (hex(&s.trace_id), hex(&s.span_id))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue { key: key.into(), value: Some(AnyValue { value: Some(any_value::Value::StringValue(value.into())) }), ..Default::default() }
}

struct Client<'a> {
    c: &'a Collector,
    http: reqwest::Client,
}

impl Client<'_> {
    async fn post(&self, path: &str, auth: Option<&str>, content_type: &str, body: Vec<u8>) -> (u16, Value) {
        let mut req = self.http.post(format!("{}{path}", self.c.http)).header("content-type", content_type).body(body);
        if let Some(a) = auth {
            req = req.header("authorization", format!("Bearer {a}"));
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.unwrap();
        // Acknowledged means in the write-ahead log: wait until it is in ClickHouse too.
        self.c.wait_stored().await;
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    async fn signals(&self, auth: Option<&str>, body: Value) -> (u16, Value) {
        self.post("/v1/signals", auth, "application/json", serde_json::to_vec(&body).unwrap()).await
    }

    async fn traces(&self, key: &str, body: Vec<u8>) {
        let (status, _) = self.post("/v1/traces", Some(key), "application/x-protobuf", body).await;
        assert_eq!(status, 200);
    }
}

#[derive(Debug, Row, Deserialize)]
struct Stored {
    signal_id: String,
    kind: String,
    source: String,
    trace_id: String,
    span_id: String,
    session_id: String,
    message_id: String,
    user_id: String,
    feature: String,
    link_status: String,
    edit_distance: Option<u64>,
    edit_ratio: Option<f64>,
    attributes: std::collections::BTreeMap<String, String>,
}

async fn stored(store: &flywheel_schemas::Store, project: &str, filter: &str) -> Vec<Stored> {
    store
        .query(&format!(
            "SELECT signal_id, kind, source, trace_id, span_id, session_id, message_id, user_id, feature, link_status, edit_distance, edit_ratio, attributes \
             FROM signals FINAL WHERE project_id = ? AND {filter} ORDER BY timestamp, signal_id"
        ))
        .bind(project)
        .fetch_all()
        .await
        .unwrap()
}

/// Waits for background work (pending links, derivation) to show in ClickHouse.
async fn eventually<T, F: std::future::Future<Output = Option<T>>>(what: &str, mut f: impl FnMut() -> F) -> T {
    for _ in 0..60 {
        if let Some(v) = f().await {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("timed out waiting for {what}");
}

fn collector() -> Collector {
    Collector::start(
        TestDb::new("signals"),
        "[collector]\nsignal_link_interval_secs = 1\nmessage_id_attribute = \"app.message_id\"\ncors_origins = [\"https://app.example.com\"]\n\
         [collector.derive]\ninterval_secs = 1\nlookback_secs = 86400\n",
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signals_are_stored_once_and_linked_by_every_kind_of_target() {
    let c = collector();
    let key = c.key("shop");
    let client = Client { c: &c, http: reqwest::Client::new() };
    client.traces(&key, fixture("otel-v2/chat_plain.pb")).await;
    let (trace, span) = first_span("otel-v2/chat_plain.pb");

    // Every kind, each with an idempotency key, twice: stored once.
    let batch: Vec<Value> = KINDS
        .iter()
        .map(|k| {
            let mut s = json!({"kind": k, "trace_id": trace, "idempotency_key": format!("idem-{k}")});
            match *k {
                "rating" => s["value"] = json!(2),
                "edit" => s["text"] = json!("The capital of France is Paris!"),
                "custom" => s["name"] = json!("bookmark"),
                "evaluation" => {
                    s["name"] = json!("relevance");
                    s["label"] = json!("relevant");
                }
                _ => {}
            }
            s
        })
        .collect();
    let (status, reply) = client.signals(Some(&key), json!({ "signals": batch })).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["accepted"], KINDS.len());
    assert!(reply["signals"].as_array().unwrap().iter().all(|s| s["link_status"] == "linked"), "{reply}");
    let (status, again) = client.signals(Some(&key), Value::Array(batch.clone())).await;
    assert_eq!(status, 200);
    assert_eq!((again["accepted"].as_u64(), again["duplicates"].as_u64()), (Some(0), Some(KINDS.len() as u64)), "{again}");
    // A span that is not (yet) in the trace: pending, not linked to the trace's last call.
    let (status, r) = client.signals(Some(&key), json!({"kind": "thumbs_down", "trace_id": trace, "span_id": "00000000000000ff"})).await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["signals"][0]["link_status"], "pending", "{r}");
    let store = c.db.store();
    let rows = stored(&store, "shop", "idempotency_key LIKE 'idem-%'").await;
    assert_eq!(rows.len(), KINDS.len(), "one row per kind despite the resend");
    let mut kinds: Vec<&str> = rows.iter().map(|r| r.kind.as_str()).collect();
    kinds.sort();
    let mut expected = KINDS.to_vec();
    expected.sort();
    assert_eq!(kinds, expected);

    // The edit distance is computed against the output it judges ("…Paris." → "…Paris!").
    let edit = rows.iter().find(|r| r.kind == "edit").unwrap();
    assert_eq!(edit.edit_distance, Some(1));
    assert!((edit.edit_ratio.unwrap() - 1.0 / 31.0).abs() < 1e-9, "{:?}", edit.edit_ratio);
    assert_eq!(edit.span_id, "", "targeted by trace only");

    // By span id only, by response id only, by session id only.
    let (_, r) = client.signals(Some(&key), json!({"kind": "thumbs_down", "span_id": span, "idempotency_key": "by-span"})).await;
    assert_eq!(r["signals"][0]["link_status"], "linked", "{r}");
    let (_, r) = client
        .signals(Some(&key), json!({"kind": "thumbs_up", "message_id": "chatcmpl-FIXTUREA0001", "idempotency_key": "by-message"}))
        .await;
    assert_eq!(r["signals"][0]["link_status"], "linked", "{r}");
    let (_, r) = client.signals(Some(&key), json!({"kind": "abandon", "session_id": "sess-42", "idempotency_key": "by-session"})).await;
    assert_eq!(r["signals"][0]["link_status"], "session", "{r}");
    for (idem, want_trace) in [("by-span", &trace), ("by-message", &trace)] {
        let row = &stored(&store, "shop", &format!("idempotency_key = '{idem}'")).await[0];
        assert_eq!(&row.trace_id, want_trace, "{idem} resolved to its trace");
        // A message id names one call: the signal is stored on that call's span, not on the
        // trace (where every call would match it).
        assert_eq!(row.span_id, span, "{idem} resolved to its call");
    }

    // A signal that arrives before its trace: pending, then linked once the trace is in.
    let (late_trace, _) = first_span("otel-v2/chat_stream.pb");
    let (_, r) =
        client.signals(Some(&key), json!({"kind": "regenerate", "message_id": "chatcmpl-FIXTUREA0002", "idempotency_key": "early"})).await;
    assert_eq!(r["signals"][0]["link_status"], "pending", "{r}");
    client.traces(&key, fixture("otel-v2/chat_stream.pb")).await;
    let row = eventually("the early signal to link", || async {
        stored(&store, "shop", "idempotency_key = 'early'").await.into_iter().find(|r| r.link_status == "linked")
    })
    .await;
    assert_eq!(row.trace_id, late_trace);

    // The configured message-id attribute of the application.
    let mut req = ExportTraceServiceRequest::decode(fixture("otel-v2/chat_plain.pb").as_slice()).unwrap();
    let s = &mut req.resource_spans[0].scope_spans[0].spans[0];
    s.trace_id = vec![7; 16];
    s.attributes.push(kv("app.message_id", "msg-123"));
    client.traces(&key, req.encode_to_vec()).await;
    let (_, r) = client.signals(Some(&key), json!({"kind": "copy", "message_id": "msg-123", "idempotency_key": "app-message"})).await;
    assert_eq!(r["signals"][0]["link_status"], "linked", "{r}");
    assert_eq!(stored(&store, "shop", "idempotency_key = 'app-message'").await[0].trace_id, "07".repeat(16));

    // Signals of another project are not visible here, and the reverse.
    assert!(stored(&store, "other", "1").await.is_empty());

    // The shared queries: signals of a trace, of a call, and rates per model.
    use flywheel_schemas::queries;
    let of_trace = queries::signals_for_trace(&store, "shop", &trace).await.unwrap();
    assert!(of_trace.len() >= KINDS.len() + 2, "{}", of_trace.len());
    let of_call = queries::signals_for_call(&store, "shop", &trace, &span).await.unwrap();
    assert!(of_call.iter().any(|s| s.idempotency_key == "by-span"));
    let far = time::Duration::days(36500);
    let now = time::OffsetDateTime::now_utc();
    let rates = queries::signal_rates(&store, "shop", now - far, now + far, queries::Grouping::Model).await.unwrap();
    let mini = rates.iter().find(|r| r.key == "gpt-4o-mini-2024-07-18").expect("a group per model");
    assert_eq!(mini.traces, 3, "three traces with a call of that model: {rates:?}");
    assert_eq!(mini.with_signal["thumbs_down"], 1);
    assert!((mini.rate("thumbs_down") - 1.0 / 3.0).abs() < 1e-9);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signals_through_opentelemetry_logs_and_span_events() {
    let c = collector();
    let key = c.key("otel");
    let client = Client { c: &c, http: reqwest::Client::new() };
    let mut req = ExportTraceServiceRequest::decode(fixture("otel-v2/chat_plain.pb").as_slice()).unwrap();
    let span = &mut req.resource_spans[0].scope_spans[0].spans[0];
    let (trace, span_id) = (hex(&span.trace_id), hex(&span.span_id));
    span.attributes.extend([kv("session.id", "sess-events"), kv("gen_ai.agent.name", "trip_planner")]);
    span.events.push(Event {
        time_unix_nano: span.end_time_unix_nano,
        name: "flywheel.signal".into(),
        attributes: vec![kv("kind", "copy"), kv("user_id", "u-7")],
        ..Default::default()
    });
    let (span_trace, span_span, span_end) = (span.trace_id.clone(), span.span_id.clone(), span.end_time_unix_nano);
    client.traces(&key, req.encode_to_vec()).await;

    let logs = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: vec![
                    LogRecord {
                        time_unix_nano: span_end + 1_000_000,
                        event_name: "flywheel.signal".into(),
                        trace_id: span_trace,
                        span_id: span_span,
                        attributes: vec![kv("kind", "rating"), kv("value", "4"), kv("scale", "5"), kv("idempotency_key", "log-1")],
                        ..Default::default()
                    },
                    // The event name as an attribute, as JavaScript SDKs send it; no trace context.
                    LogRecord {
                        attributes: vec![
                            kv("event.name", "flywheel.signal"),
                            kv("kind", "thumbs_down"),
                            kv("message_id", "chatcmpl-FIXTUREA0001"),
                        ],
                        ..Default::default()
                    },
                ],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let (status, _) = client.post("/v1/logs", Some(&key), "application/x-protobuf", logs.encode_to_vec()).await;
    assert_eq!(status, 200);
    let store = c.db.store();
    let rows = stored(&store, "otel", "1").await;
    let by_source = |source: &str| rows.iter().filter(|r| r.source == source).collect::<Vec<_>>();
    let events = by_source("span_event");
    assert_eq!(events.len(), 1);
    assert_eq!(
        (events[0].kind.as_str(), events[0].trace_id.as_str(), events[0].span_id.as_str()),
        ("copy", trace.as_str(), span_id.as_str())
    );
    assert_eq!(events[0].user_id, "u-7", "the signal's own user wins");
    // What the signal leaves out comes from the call it judges, as for a log record.
    assert_eq!((events[0].session_id.as_str(), events[0].feature.as_str()), ("sess-events", "trip_planner"));
    let logged = by_source("otlp_log");
    assert_eq!(logged.len(), 2, "{rows:#?}");
    assert!(logged.iter().all(|r| r.trace_id == trace && r.link_status == "linked"), "{logged:#?}");
    // The raw log records are kept too.
    let raw: u64 = store
        .query("SELECT count() FROM log_records WHERE project_id = 'otel' AND event_name = 'flywheel.signal'")
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(raw, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_tokens_are_scoped_signed_and_short_lived() {
    let c = collector();
    let key = c.key("web");
    let other_key = c.key("elsewhere");
    let client = Client { c: &c, http: reqwest::Client::new() };
    client.traces(&key, fixture("otel-v2/chat_plain.pb")).await;
    let (trace, _) = first_span("otel-v2/chat_plain.pb");

    let (status, minted) = client
        .post(
            "/v1/feedback-tokens",
            Some(&key),
            "application/json",
            serde_json::to_vec(&json!({"trace_id": trace, "ttl_seconds": 600})).unwrap(),
        )
        .await;
    assert_eq!(status, 200, "{minted}");
    let tok = minted["token"].as_str().unwrap().to_string();
    assert!(tok.starts_with("fwt_"));

    // The browser posts with the token only; the target defaults to the token's scope.
    let (status, r) = client.signals(Some(&tok), json!({"kind": "thumbs_down", "comment": "wrong"})).await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["signals"][0]["link_status"], "linked");
    let store = c.db.store();
    assert_eq!(stored(&store, "web", "kind = 'thumbs_down'").await[0].trace_id, trace);

    // Another target than the token's scope is refused.
    let (status, r) = client.signals(Some(&tok), json!({"kind": "thumbs_down", "trace_id": "ab".repeat(16)})).await;
    assert_eq!(status, 400, "{r}");
    assert!(r["rejected"][0]["error"].as_str().unwrap().contains("scoped to trace"), "{r}");

    // A scope or lifetime that is not what it must be is refused, never read as absent.
    for (body, says) in [
        (json!({"trace_id": "not-a-trace"}), "`trace_id` must be 32 hexadecimal"),
        (json!({"trace_id": 42}), "`trace_id` must be a string"),
        (json!({"trace_id": trace, "ttl_seconds": 60.5}), "whole number of seconds"),
        (json!({"trace_id": trace, "ttl_seconds": "600"}), "whole number of seconds"),
    ] {
        let (status, r) = client.post("/v1/feedback-tokens", Some(&key), "application/json", serde_json::to_vec(&body).unwrap()).await;
        assert_eq!(status, 400, "{body}: {r}");
        assert!(r["error"].as_str().unwrap_or_default().contains(says), "{body}: {r}");
    }

    // A token minted elsewhere with the trace id in capitals reaches the (lowercase) trace.
    let upper = token::mint(&key, &Claims { t: trace.to_ascii_uppercase(), ..token::peek(&tok).unwrap().0 });
    let (status, r) = client.signals(Some(&upper), json!({"kind": "thumbs_up"})).await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["signals"][0]["link_status"], "linked", "{r}");

    // Expired, forged and wrong-project tokens are refused.
    let key_id = {
        let out = c.db.flywheel(&["keys", "create", "--project", "web"]);
        common::stdout(&out).split_whitespace().nth(2).unwrap().to_string()
    };
    let _ = key_id;
    let claims = token::peek(&tok).unwrap().0;
    let expired = token::mint(&key, &Claims { exp: 1, ..claims.clone() });
    let (status, r) = client.signals(Some(&expired), json!({"kind": "copy"})).await;
    assert_eq!(status, 401);
    assert!(r["error"].as_str().unwrap().contains("expired"), "{r}");
    let forged = token::mint("fwk_guessed", &claims);
    let (status, r) = client.signals(Some(&forged), json!({"kind": "copy"})).await;
    assert_eq!(status, 401);
    assert!(r["error"].as_str().unwrap().contains("signature"), "{r}");
    let wrong_project = token::mint(&other_key, &Claims { p: "web".into(), ..claims.clone() });
    let (status, _) = client.signals(Some(&wrong_project), json!({"kind": "copy"})).await;
    assert_eq!(status, 401, "a token signed with a key of another project");
    assert!(stored(&store, "web", "kind = 'copy'").await.is_empty());

    // What the database holds signs nothing: a token signed with the stored key hash (the
    // first scheme's signing key) is refused.
    let (key_hash, key_id): (String, String) = store
        .query("SELECT key_hash, key_id FROM api_keys FINAL WHERE project_id = 'web' ORDER BY created_at LIMIT 1")
        .fetch_one()
        .await
        .unwrap();
    let from_table = token::mint(&key_hash, &Claims { k: key_id, ..claims.clone() });
    let (status, r) = client.signals(Some(&from_table), json!({"kind": "copy"})).await;
    assert_eq!(status, 401, "{r}");

    // A key from before Ed25519 tokens (no public key registered): its offline tokens are
    // refused with a reason, until one request authenticated with the key registers it.
    let legacy_key = "fwk_legacyLEGACYlegacyLEGACYlegacyLEGACYabcd";
    let now = time::OffsetDateTime::now_utc();
    let row = flywheel_schemas::rows::ApiKeyRow {
        project_id: "web".into(),
        key_id: "k_legacy".into(),
        key_hash: flywheel_collector::auth::hash_key(legacy_key),
        name: "before the upgrade".into(),
        created_at: now,
        revoked_at: None,
        updated_at: now,
    };
    store.insert("api_keys", std::slice::from_ref(&row)).await.unwrap();
    let legacy_token = token::mint(legacy_key, &Claims { k: "k_legacy".into(), ..claims.clone() });
    let (status, r) = client.signals(Some(&legacy_token), json!({"kind": "copy"})).await;
    assert_eq!(status, 401, "{r}");
    assert!(r["error"].as_str().unwrap().contains("no registered public key"), "{r}");
    client.traces(legacy_key, fixture("otel-v2/chat_plain.pb")).await;
    let (status, r) = client.signals(Some(&legacy_token), json!({"kind": "copy"})).await;
    assert_eq!(status, 200, "registered by the key's first request: {r}");

    // CORS: the configured origin may post from a browser, others get no grant.
    let preflight = |origin: &'static str| {
        client
            .http
            .request(reqwest::Method::OPTIONS, format!("{}/v1/signals", c.http))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type,authorization")
            .send()
    };
    let ok = preflight("https://app.example.com").await.unwrap();
    assert_eq!(ok.headers().get("access-control-allow-origin").unwrap(), "https://app.example.com");
    let no = preflight("https://evil.example").await.unwrap();
    assert!(no.headers().get("access-control-allow-origin").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_signals_get_a_400_naming_the_field_and_good_ones_beside_them_are_kept() {
    let c = collector();
    let key = c.key("bad");
    let client = Client { c: &c, http: reqwest::Client::new() };
    let cases = [
        (json!({"kind": "love", "session_id": "s"}), "kind"),
        (json!({"session_id": "s"}), "kind"),
        (json!({"kind": "copy"}), "trace_id"),
        (json!({"kind": "rating", "session_id": "s", "value": "five"}), "value"),
        (json!({"kind": "copy", "trace_id": "123"}), "trace_id"),
        (json!({"kind": "rating", "session_id": "s", "value": 1, "scale": 0}), "scale"),
    ];
    for (body, field) in cases {
        let (status, r) = client.signals(Some(&key), body.clone()).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(r["rejected"][0]["field"], field, "{body}: {r}");
        assert!(r["error"].as_str().unwrap().contains(field), "{r}");
    }
    let (status, r) = client.post("/v1/signals", Some(&key), "application/json", b"{not json".to_vec()).await;
    assert_eq!(status, 400);
    assert!(r["error"].as_str().unwrap().contains("not valid JSON"), "{r}");
    let (status, _) = client.post("/v1/signals", Some(&key), "text/plain", b"{}".to_vec()).await;
    assert_eq!(status, 415);
    let (status, r) = client.post("/v1/signals", Some(&key), "application/json", vec![b' '; 2 << 20]).await;
    assert_eq!(status, 413, "{r}");
    let (status, _) = client.signals(None, json!({"kind": "copy", "session_id": "s"})).await;
    assert_eq!(status, 401);

    // One bad signal in a batch: reported by index, the others stored.
    let (status, r) = client
        .signals(
            Some(&key),
            json!([{"kind": "copy", "session_id": "s1"}, {"kind": "nope", "session_id": "s2"}, {"kind": "thumbs_up", "session_id": "s3"}]),
        )
        .await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["accepted"], 2);
    assert_eq!(r["rejected"][0]["index"], 1);
    assert_eq!(r["rejected"][0]["field"], "kind");
    let store = c.db.store();
    assert_eq!(stored(&store, "bad", "1").await.len(), 2);
}

fn chat_span(trace: u8, session: &str, user: &str, secs_ago: u64, question: &str) -> Span {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
    let start = now - secs_ago * 1_000_000_000;
    Span {
        trace_id: vec![trace; 16],
        span_id: vec![trace; 8],
        name: "chat gpt-4o-mini".into(),
        kind: 3,
        start_time_unix_nano: start,
        end_time_unix_nano: start + 500_000_000,
        attributes: vec![
            kv("gen_ai.operation.name", "chat"),
            kv("gen_ai.provider.name", "openai"),
            kv("gen_ai.request.model", "gpt-4o-mini"),
            kv("gen_ai.conversation.id", session),
            kv("user.id", user),
            kv("gen_ai.input.messages", &json!([{"role": "user", "parts": [{"type": "text", "content": question}]}]).to_string()),
            kv(
                "gen_ai.output.messages",
                &json!([{"role": "assistant", "parts": [{"type": "text", "content": "Here is how."}]}]).to_string(),
            ),
        ],
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asking_again_in_a_session_is_a_derived_regeneration() {
    let c = collector();
    let key = c.key("derive");
    let client = Client { c: &c, http: reqwest::Client::new() };
    let spans = vec![
        chat_span(1, "sess-a", "u1", 120, "How do I reset my password?"),
        chat_span(2, "sess-a", "u1", 80, "how do I reset my password"),
        chat_span(3, "sess-a", "u1", 40, "And how do I change my e-mail address?"),
        chat_span(4, "sess-b", "u2", 100, "How do I reset my password?"),
    ];
    let req = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans { scope_spans: vec![ScopeSpans { spans, ..Default::default() }], ..Default::default() }],
    };
    client.traces(&key, req.encode_to_vec()).await;
    let store = c.db.store();
    let derived = eventually("derived signals", || async {
        let rows = stored(&store, "derive", "source = 'derived'").await;
        (!rows.is_empty()).then_some(rows)
    })
    .await;
    // Give the job another round: it must not add anything nor duplicate.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let again = stored(&store, "derive", "source = 'derived'").await;
    assert_eq!(again.len(), derived.len(), "derivation is idempotent");
    assert_eq!(derived.len(), 1, "{derived:#?}");
    let d = &derived[0];
    assert_eq!((d.kind.as_str(), d.trace_id.as_str()), ("regenerate", "01".repeat(16).as_str()));
    assert_eq!(d.attributes["next_trace_id"], "02".repeat(16));
    assert_eq!((d.session_id.as_str(), d.user_id.as_str()), ("sess-a", "u1"));
    let _ = (d.signal_id.len(), d.message_id.len());
}

/// Issue 15, item 7: while ClickHouse is down, signals are logged like spans and acknowledged
/// once durable — by `/v1/signals`, and on a trace carrying `flywheel.signal` span events —
/// then linked to their calls once ClickHouse is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signals_during_an_outage_are_acknowledged_and_linked_when_clickhouse_returns() {
    let _ = common::scratch_dir("signal-outage");
    let engine = common::dedicated_engine("signal-outage", 0);
    let port = engine.state.port;
    let c = Collector::start(
        TestDb { url: engine.url().to_string(), database: "signal_outage".into() },
        "[collector]\nsignal_link_interval_secs = 1\n",
    );
    let key = c.key("p");
    let http = reqwest::Client::new();
    // One request while ClickHouse is up: the collector knows the key from then on.
    let warm = http.post(format!("{}/v1/signals", c.http)).bearer_auth(&key).json(&json!({"kind": "copy", "session_id": "s0"}));
    assert_eq!(warm.send().await.unwrap().status(), 200);
    c.wait_stored().await;
    engine.stop().unwrap();

    let mut req = ExportTraceServiceRequest::decode(fixture("otel-v2/chat_plain.pb").as_slice()).unwrap();
    let span = &mut req.resource_spans[0].scope_spans[0].spans[0];
    let trace = hex(&span.trace_id);
    span.events.push(Event {
        time_unix_nano: span.end_time_unix_nano,
        name: "flywheel.signal".into(),
        attributes: vec![kv("kind", "thumbs_down")],
        ..Default::default()
    });
    let resp = http
        .post(format!("{}/v1/traces", c.http))
        .bearer_auth(&key)
        .header("content-type", "application/x-protobuf")
        .body(req.encode_to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "spans and their signal event are durable in the log");
    let resp = http
        .post(format!("{}/v1/signals", c.http))
        .bearer_auth(&key)
        .json(&json!({"kind": "rating", "value": 2, "scale": 5, "trace_id": trace, "idempotency_key": "outage-1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let reply: Value = resp.json().await.unwrap();
    assert_eq!(reply["signals"][0]["link_status"], "pending", "{reply}");

    let _engine = common::dedicated_engine("signal-outage", port);
    c.wait_stored().await;
    let store = c.db.store();
    let rows = eventually("the signals to link", || {
        let store = store.clone();
        let trace = trace.clone();
        async move {
            let rows = stored(&store, "p", &format!("trace_id = '{trace}'")).await;
            (rows.len() == 2 && rows.iter().all(|r| r.link_status == "linked")).then_some(rows)
        }
    })
    .await;
    let mut kinds: Vec<&str> = rows.iter().map(|r| r.kind.as_str()).collect();
    kinds.sort();
    assert_eq!(kinds, ["rating", "thumbs_down"]);
}

/// Issue 15, security: a feedback token's signal lands only on what the token names — a
/// session-scoped token cannot name another trace, a trace-scoped one cannot reach another
/// trace's call through a span id — and a revoked key's tokens stop working within
/// `key_refresh_secs` although no request authenticated with the key comes to refresh the cache.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_reaches_only_what_it_names_and_stops_with_its_key() {
    let c = Collector::start(TestDb::new("tokscope"), "[collector]\nkey_refresh_secs = 1\nsignal_link_interval_secs = 1\n");
    let key = c.key("web");
    let client = Client { c: &c, http: reqwest::Client::new() };
    client.traces(&key, fixture("otel-v2/chat_plain.pb")).await;
    client.traces(&key, fixture("oi/agent.pb")).await;
    let (own_trace, _) = first_span("otel-v2/chat_plain.pb");
    let (victim_trace, victim_span) = first_span("oi/agent.pb");
    let mint = |scope: Value| {
        let client = &client;
        let key = key.clone();
        async move {
            let (status, minted) =
                client.post("/v1/feedback-tokens", Some(&key), "application/json", serde_json::to_vec(&scope).unwrap()).await;
            assert_eq!(status, 200, "{minted}");
            minted["token"].as_str().unwrap().to_string()
        }
    };

    // A session-scoped token naming another trace beside its own session.
    let session_token = mint(json!({"session_id": "s-own", "ttl_seconds": 600})).await;
    let (status, r) =
        client.signals(Some(&session_token), json!({"kind": "thumbs_down", "session_id": "s-own", "trace_id": victim_trace})).await;
    assert_eq!(status, 400, "{r}");
    assert!(r["rejected"][0]["error"].as_str().unwrap().contains("scoped to session s-own"), "{r}");
    let (status, r) = client.signals(Some(&session_token), json!({"kind": "thumbs_down", "session_id": "s-own"})).await;
    assert_eq!(status, 200, "its own session: {r}");

    // A trace-scoped token naming another trace's span: the signal stays on the token's trace
    // (readers join signals to calls by trace and span), never on the victim's.
    let trace_token = mint(json!({"trace_id": own_trace, "ttl_seconds": 600})).await;
    let (status, r) = client.signals(Some(&trace_token), json!({"kind": "thumbs_up", "span_id": victim_span})).await;
    let store = c.db.store();
    let on_victim = stored(&store, "web", &format!("trace_id = '{victim_trace}'")).await;
    assert!(on_victim.is_empty(), "a token of trace {own_trace} reached the victim's trace ({status} {r}): {on_victim:?}");
    let (status, r) =
        client.signals(Some(&trace_token), json!({"kind": "thumbs_down", "trace_id": own_trace, "span_id": victim_span})).await;
    let on_victim = stored(&store, "web", &format!("trace_id = '{victim_trace}'")).await;
    assert!(on_victim.is_empty(), "{status} {r}: {on_victim:?}");

    // Revocation reaches tokens on the refresh timer, with no key-authenticated request.
    let (status, r) = client.signals(Some(&trace_token), json!({"kind": "copy"})).await;
    assert_eq!(status, 200, "{r}");
    let key_id: String = store.query("SELECT key_id FROM api_keys FINAL WHERE project_id = 'web' LIMIT 1").fetch_one().await.unwrap();
    let out = c.db.flywheel(&["keys", "revoke", &key_id]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    let revoked_at = std::time::Instant::now();
    let refused = eventually("the revoked key's token to be refused", || {
        let client = &client;
        let token = trace_token.clone();
        async move {
            let (status, r) = client.signals(Some(&token), json!({"kind": "copy"})).await;
            (status != 200).then_some((status, r))
        }
    })
    .await;
    println!("a revoked key's token refused {:?} after `keys revoke` (key_refresh_secs = 1)", revoked_at.elapsed());
    assert!(refused.0 == 401 || refused.0 == 403, "{refused:?}");
    assert!(refused.1.to_string().contains("revoked"), "{refused:?}");
}
