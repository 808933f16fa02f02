//! One bad value costs nothing beside it (issue 15, "drops good data beside it"): a string that
//! is not UTF-8 in protobuf (OTLP/HTTP and gRPC), an unpaired surrogate or invalid bytes in
//! JSON, a `doubleValue` of `"NaN"` — each once refused the whole request. Now the request is
//! stored whole, the bad value repaired and marked, the reply says so (a partial success with
//! nothing rejected) and `/metrics` counts it. Real binary, real engine.

mod common;

use common::{Collector, TestDb};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message as _;

fn now_nanos() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
}

/// Two spans of trace `trace`; the second carries `note = "é…"` (the marker the test corrupts).
fn request(trace: u8) -> ExportTraceServiceRequest {
    let now = now_nanos();
    let span = |i: u8, attributes: Vec<KeyValue>| Span {
        trace_id: vec![trace; 16],
        span_id: vec![i + 1; 8],
        name: format!("step {i}"),
        start_time_unix_nano: now,
        end_time_unix_nano: now + 1_000_000,
        attributes,
        ..Default::default()
    };
    let note = KeyValue {
        key: "note".into(),
        value: Some(AnyValue { value: Some(any_value::Value::StringValue("caf\u{e9} cr\u{e8}me".into())) }),
        ..Default::default()
    };
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![KeyValue {
                    key: "service.name".into(),
                    value: Some(AnyValue { value: Some(any_value::Value::StringValue("shop".into())) }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans { spans: vec![span(0, vec![]), span(1, vec![note])], ..Default::default() }],
            ..Default::default()
        }],
    }
}

/// The request encoded, with `é` (C3 A9) cut to a lone lead byte followed by `X`: not UTF-8,
/// as a C++ exporter that truncates at a byte limit sends it.
fn corrupted(request: &ExportTraceServiceRequest) -> Vec<u8> {
    let mut body = request.encode_to_vec();
    let at = body.windows(2).position(|w| w == [0xC3, 0xA9]).expect("marker");
    body[at + 1] = b'X';
    assert!(ExportTraceServiceRequest::decode(body.as_slice()).is_err(), "prost refuses it as it is");
    body
}

async fn stored(c: &Collector, trace: u8) -> Vec<(String, String)> {
    c.wait_stored().await;
    c.db.store()
        .query("SELECT name, attributes['note'] FROM spans WHERE project_id = 'p' AND trace_id = ? ORDER BY name")
        .bind(hex::encode([trace; 16]))
        .fetch_all()
        .await
        .unwrap()
}

async fn post(c: &Collector, key: &str, content_type: &str, body: Vec<u8>) -> (u16, Vec<u8>) {
    let resp = reqwest::Client::new()
        .post(format!("{}/v1/traces", c.http))
        .header("content-type", content_type)
        .bearer_auth(key)
        .body(body)
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.bytes().await.unwrap().to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_bad_value_does_not_cost_the_request_around_it() {
    let c = Collector::start(TestDb::new("badvalues"), "");
    let key = c.key("p");

    // Protobuf over HTTP: 200, a warning, both spans stored, the bad byte marked.
    let (status, body) = post(&c, &key, "application/x-protobuf", corrupted(&request(1))).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let reply = ExportTraceServiceResponse::decode(body.as_slice()).unwrap();
    let partial = reply.partial_success.expect("a warning");
    assert_eq!(partial.rejected_spans, 0);
    assert!(partial.error_message.contains("1 string value(s) were not valid UTF-8"), "{}", partial.error_message);
    assert_eq!(
        stored(&c, 1).await,
        vec![("step 0".into(), "".into()), ("step 1".into(), "caf\u{FFFD}X cr\u{e8}me".into())],
        "both spans stored; only the bad byte replaced"
    );

    // gRPC: the same.
    let mut client = TraceServiceClient::connect(c.grpc.clone()).await.unwrap();
    // The client encodes a message it holds: send the corrupted bytes through a message whose
    // string field is declared `bytes` on our side, as a hand-rolled exporter would.
    #[derive(Clone, PartialEq, prost::Message)]
    struct Raw {
        #[prost(bytes = "vec", repeated, tag = "1")]
        resource_spans: Vec<Vec<u8>>,
    }
    let raw = Raw::decode(corrupted(&request(2)).as_slice()).unwrap();
    let mut grpc = tonic::client::Grpc::new(tonic::transport::Channel::from_shared(c.grpc.clone()).unwrap().connect().await.unwrap());
    grpc.ready().await.unwrap();
    let mut req = tonic::Request::new(raw);
    req.metadata_mut().insert("x-flywheel-key", key.parse().unwrap());
    let path = http::uri::PathAndQuery::from_static("/opentelemetry.proto.collector.trace.v1.TraceService/Export");
    let codec = tonic_prost::ProstCodec::<Raw, ExportTraceServiceResponse>::default();
    let reply = grpc.unary(req, path, codec).await.expect("accepted").into_inner();
    assert_eq!(reply.partial_success.map(|p| p.rejected_spans), Some(0));
    assert_eq!(stored(&c, 2).await.len(), 2, "both spans stored over gRPC");
    // A well-formed request over the same server: no warning.
    let reply = client
        .export({
            let mut r = tonic::Request::new(request(3));
            r.metadata_mut().insert("x-flywheel-key", key.parse().unwrap());
            r
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.partial_success, None, "nothing repaired, nothing said");

    // JSON: an unpaired surrogate (OTel JS truncating with `substring`), raw invalid bytes,
    // and doubles as protobuf's JSON mapping writes them.
    let now = now_nanos();
    let span = |id: &str, attributes: &str| {
        format!(
            r#"{{"traceId":"{}","spanId":"{id}","name":"s{id}","startTimeUnixNano":"{now}","endTimeUnixNano":"{now}","attributes":[{attributes}]}}"#,
            "04".repeat(16)
        )
    };
    let mut body = format!(
        r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{},{},{}]}}]}}]}}"#,
        span("00000000000000a1", r#"{"key":"note","value":{"stringValue":"emoji cut \ud83d"}}"#),
        span("00000000000000a2", r#"{"key":"note","value":{"doubleValue":"NaN"}},{"key":"score","value":{"doubleValue":"0.5"}}"#),
        span("00000000000000a3", r#"{"key":"note","value":{"stringValue":"RAW"}}"#),
    )
    .into_bytes();
    let at = body.windows(3).position(|w| w == b"RAW").unwrap();
    body.splice(at..at + 3, [b'r', 0xFF, b'w']);
    let (status, reply) = post(&c, &key, "application/json", body).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&reply));
    let reply: serde_json::Value = serde_json::from_slice(&reply).unwrap();
    let message = reply["partialSuccess"]["errorMessage"].as_str().unwrap_or_default();
    assert!(message.contains("2 string value(s)") && message.contains("2 doubleValue(s)"), "{reply}");
    let rows = stored(&c, 4).await;
    assert_eq!(
        rows,
        vec![
            ("s00000000000000a1".into(), "emoji cut \u{FFFD}".into()),
            ("s00000000000000a2".into(), "NaN".into()),
            ("s00000000000000a3".into(), "r\u{FFFD}w".into())
        ]
    );
    let score: String =
        c.db.store()
            .query("SELECT attributes['score'] FROM spans WHERE project_id = 'p' AND span_id = '00000000000000a2'")
            .fetch_one()
            .await
            .unwrap();
    assert_eq!(score, "0.5");

    assert_eq!(c.metric(r#"flywheel_values_repaired_total{what="utf8"}"#).await, 4.0);
    assert_eq!(c.metric(r#"flywheel_values_repaired_total{what="number"}"#).await, 2.0);
    assert_eq!(c.metric(r#"flywheel_rejected_total{signal="spans",reason="malformed"}"#).await, 0.0);
}
