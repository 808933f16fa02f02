//! OTLP/HTTP: `POST /v1/traces`, `POST /v1/logs` and `POST /v1/metrics` (counted, not
//! stored), protobuf or JSON, gzip/deflate or plain, sized or chunked bodies; plus `/healthz`
//! and `/metrics`.
//!
//! Replies follow the OTLP/HTTP spec: the body has the request's content type; success carries
//! partial success when items were refused; errors carry a `google.rpc.Status` with a message
//! that says what is wrong; 429/503 carry `Retry-After`.

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceResponse;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;

use super::budget::Spent;
use super::{Receiver, RpcStatus, api, header, signals};
use crate::auth::{AuthError, key_from_headers};
use crate::otlp::{self, DecodeError, Encoding};
use crate::writer::WriteError;

pub fn router(receiver: Arc<Receiver>) -> Router {
    // Browsers post signals from the application's origin: CORS on that route only.
    let signals_route = Router::new().route("/v1/signals", post(signals::submit)).layer(cors(&receiver.cors_origins));
    Router::new()
        .merge(signals_route)
        .route("/v1/feedback-tokens", post(signals::mint_token))
        .route("/v1/span_annotations", post(signals::span_annotations))
        .route("/openapi.json", get(signals::openapi))
        .route("/v1/traces", post(traces))
        .route("/v1/logs", post(logs))
        .route("/v1/metrics", post(otlp_metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
        .route("/v1/patterns", get(api::patterns))
        .route("/v1/patterns/{id}", get(api::pattern))
        .route("/v1/traces/{id}", get(api::trace))
        .route("/v1/failures", get(api::failures))
        .route("/v1/search", get(api::search))
        .fallback(unknown_path)
        // Not `method_not_allowed_fallback`: it would answer the CORS preflight of the signals
        // route before its CORS layer does.
        .layer(axum::middleware::from_fn(explain_wrong_method))
        // The body limit is enforced by `read_body` (after decompression too), with OTLP errors.
        .layer(DefaultBodyLimit::disable())
        .with_state(receiver)
}

/// The endpoints, for the answer to a path or method that is not one of them.
const ENDPOINTS: &str = "POST /v1/traces, /v1/logs, /v1/metrics (OTLP/HTTP), POST /v1/signals, /v1/span_annotations, /v1/feedback-tokens; GET /v1/patterns, /v1/patterns/{id}, /v1/traces/{id}, /v1/failures, /v1/search (read API); GET /healthz, /readyz, /metrics, /openapi.json";

async fn unknown_path(uri: axum::http::Uri) -> Response {
    (StatusCode::NOT_FOUND, format!("no endpoint at {}: this collector serves {ENDPOINTS}\n", uri.path())).into_response()
}

/// A 405 says which methods and paths are served (axum's has no body).
async fn explain_wrong_method(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let (method, path) = (request.method().clone(), request.uri().path().to_string());
    let response = next.run(request).await;
    if response.status() != StatusCode::METHOD_NOT_ALLOWED {
        return response;
    }
    let allow = response.headers().get(header::ALLOW).cloned();
    let mut explained =
        (StatusCode::METHOD_NOT_ALLOWED, format!("{method} is not served at {path}: this collector serves {ENDPOINTS}\n")).into_response();
    if let Some(allow) = allow {
        explained.headers_mut().insert(header::ALLOW, allow);
    }
    explained
}

fn cors(origins: &[String]) -> tower_http::cors::CorsLayer {
    use tower_http::cors::{AllowOrigin, CorsLayer};
    let layer = CorsLayer::new()
        .allow_methods([axum::http::Method::POST, axum::http::Method::OPTIONS])
        .allow_headers([header::CONTENT_TYPE, header::AUTHORIZATION, axum::http::HeaderName::from_static("x-flywheel-token")])
        .max_age(std::time::Duration::from_secs(3600));
    if origins.iter().any(|o| o == "*") {
        layer.allow_origin(AllowOrigin::any())
    } else {
        layer.allow_origin(AllowOrigin::list(origins.iter().filter_map(|o| o.parse().ok())))
    }
}

/// Ready to take traffic: ClickHouse answers, or the write-ahead log can absorb it (not full).
async fn ready(State(r): State<Arc<Receiver>>) -> Response {
    let wal = r.pipeline.writer.wal().map(|w| w.status());
    let clickhouse = crate::deadline::within(&r.store, crate::deadline::PING, r.store.ping()).await;
    let wal_full = wal.is_some_and(|w| w.bytes * 10 >= w.max_bytes * 9);
    let mut problems = Vec::new();
    if let Err(e) = &clickhouse {
        problems.push(format!("ClickHouse: {e}"));
    }
    if wal_full {
        problems.push("the write-ahead log is over 90% full".to_string());
    }
    // With a log that has room, an unreachable ClickHouse is degraded, not unready.
    let ready = !wal_full && (clickhouse.is_ok() || wal.is_some());
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let body = if problems.is_empty() { "ready\n".to_string() } else { format!("{}\n", problems.join("; ")) };
    (status, body).into_response()
}

async fn metrics(State(r): State<Arc<Receiver>>) -> impl IntoResponse {
    let mut text = r.pipeline.metrics.render(r.pipeline.writer.wal().map(|w| w.status()));
    let gauge = |text: &mut String, name: &str, help: &str, value: u64| {
        text.push_str(&format!("# HELP flywheel_{name} {help}\n# TYPE flywheel_{name} gauge\nflywheel_{name} {value}\n"));
    };
    gauge(&mut text, "inflight_body_bytes", "Bytes of request bodies reserved in the memory budget now.", r.body_budget.in_use());
    gauge(&mut text, "inflight_body_max_bytes", "The memory budget of request bodies in flight.", r.body_budget.bytes());
    let (join_bytes, join_evicted) = r.pipeline.join_stats();
    gauge(&mut text, "join_cache_bytes", "Estimated bytes held by the call/log-event join cache.", join_bytes as u64);
    text.push_str(&format!(
        "# HELP flywheel_join_evicted_total Join cache entries evicted to stay within its byte bound.\n# TYPE flywheel_join_evicted_total counter\nflywheel_join_evicted_total {join_evicted}\n"
    ));
    gauge(&mut text, "connections_open", "Connections open over both listeners.", r.connections.open() as u64);
    gauge(&mut text, "connections_max", "Bound on open connections.", r.connections.max_connections as u64);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
}

/// An error reply in the encoding of the request (JSON when the encoding is unknown).
struct Reply {
    status: StatusCode,
    message: String,
    encoding: Encoding,
    retry_after: Option<u64>,
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        let code = super::reply::rpc_code(self.status);
        let body = otlp::encode(&RpcStatus { code, message: self.message, details: vec![] }, self.encoding);
        let mut response = (self.status, [(header::CONTENT_TYPE, self.encoding.content_type())], body).into_response();
        if let Some(secs) = self.retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

fn decode_reply(e: DecodeError, encoding: Encoding) -> Reply {
    let (status, retry_after) = super::reply::Refusal::of_decode(&e).http();
    Reply { status, message: e.to_string(), encoding, retry_after }
}

fn auth_reply(e: AuthError, encoding: Encoding) -> Reply {
    let (status, retry_after) = super::reply::Refusal::of_auth(&e).http();
    Reply { status, message: e.to_string(), encoding, retry_after }
}

fn write_reply(e: WriteError, encoding: Encoding) -> Reply {
    let (status, retry_after) = super::reply::Refusal::of_write(&e).http();
    Reply { status, message: e.to_string(), encoding, retry_after }
}

/// Checks content type, authenticates, reads and decodes the body: everything both endpoints do
/// before their signal-specific work.
/// The body comes with its reservation in the memory budget, to keep until the request is
/// answered.
async fn prepare(
    r: &Receiver,
    headers: &HeaderMap,
    body: Body,
    signal: &'static str,
) -> Result<(String, Encoding, Bytes, super::budget::Reservation), Reply> {
    r.pipeline.metrics.requests.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let reject = |reply: Reply, reason: &str| {
        r.pipeline.metrics.reject(signal, reason, 1);
        tracing::info!(signal, reason, message = %reply.message, "request refused");
        reply
    };
    let encoding =
        otlp::encoding_of(header(headers, "content-type")).map_err(|e| reject(decode_reply(e, Encoding::Json), "content_type"))?;
    let key = key_from_headers(header(headers, "authorization"), header(headers, "x-flywheel-key"));
    let project = r.auth.project(key.as_deref()).await.map_err(|e| reject(auth_reply(e, encoding), "auth"))?;
    let limit = r.max_body_bytes;
    let busy =
        |spent: Spent| Reply { status: StatusCode::TOO_MANY_REQUESTS, message: spent.message().into(), encoding, retry_after: Some(1) };
    let (raw, mut reservation): (Bytes, _) =
        super::read_body(body, limit, &r.body_budget, r.auth.budget_key(key.as_deref())).await.map_err(|e| match e {
            super::BodyError::TooLarge => reject(decode_reply(DecodeError::TooLarge { limit, decompressed: false }, encoding), "too_large"),
            super::BodyError::Busy(spent) => reject(busy(spent), spent.reason()),
            super::BodyError::Read(e) => reject(
                Reply {
                    status: StatusCode::BAD_REQUEST,
                    message: format!("cannot read the request body: {e}"),
                    encoding,
                    retry_after: None,
                },
                "body",
            ),
        })?;
    r.pipeline.metrics.bytes_received.fetch_add(raw.len() as u64, std::sync::atomic::Ordering::Relaxed);
    let body = otlp::decompress_body(raw, header(headers, "content-encoding"), limit).map_err(|e| {
        let reason = if matches!(e, DecodeError::TooLarge { .. }) { "too_large" } else { "compression" };
        reject(decode_reply(e, encoding), reason)
    })?;
    // The decompressed copy, and the decoded request, about as large again.
    if let Err(spent) = r.body_budget.grow(&mut reservation, 2 * body.len() as u64) {
        return Err(reject(busy(spent), spent.reason()));
    }
    Ok((project, encoding, body, reservation))
}

async fn traces(State(r): State<Arc<Receiver>>, headers: HeaderMap, body: Body) -> Response {
    let (project, encoding, body, mut reservation) = match prepare(&r, &headers, body, "spans").await {
        Ok(p) => p,
        Err(reply) => return reply.into_response(),
    };
    let decoded = match otlp::decode_traces(&body, encoding, &mut |bytes| r.body_budget.grow(&mut reservation, bytes).is_ok()) {
        Ok(decoded) => decoded,
        Err(e) => return decode_refusal(&r, "spans", e, encoding),
    };
    super::note_repairs("spans", &decoded.repairs);
    match r.pipeline.traces(&project, decoded.request).await {
        Ok(mut outcome) => {
            outcome.warn(&decoded.repairs);
            let partial_success = outcome.trace_partial();
            ok(encoding, &ExportTraceServiceResponse { partial_success })
        }
        Err(e) => write_reply(e, encoding).into_response(),
    }
}

async fn logs(State(r): State<Arc<Receiver>>, headers: HeaderMap, body: Body) -> Response {
    let (project, encoding, body, mut reservation) = match prepare(&r, &headers, body, "logs").await {
        Ok(p) => p,
        Err(reply) => return reply.into_response(),
    };
    let decoded = match otlp::decode_logs(&body, encoding, &mut |bytes| r.body_budget.grow(&mut reservation, bytes).is_ok()) {
        Ok(decoded) => decoded,
        Err(e) => return decode_refusal(&r, "logs", e, encoding),
    };
    super::note_repairs("logs", &decoded.repairs);
    match r.pipeline.logs(&project, decoded.request).await {
        Ok(mut outcome) => {
            outcome.warn(&decoded.repairs);
            let partial_success = outcome.logs_partial();
            ok(encoding, &ExportLogsServiceResponse { partial_success })
        }
        Err(e) => write_reply(e, encoding).into_response(),
    }
}

/// OTLP metrics: decoded and counted ([`crate::client_metrics`]), not stored.
async fn otlp_metrics(State(r): State<Arc<Receiver>>, headers: HeaderMap, body: Body) -> Response {
    let (_project, encoding, body, mut reservation) = match prepare(&r, &headers, body, "metrics").await {
        Ok(p) => p,
        Err(reply) => return reply.into_response(),
    };
    match otlp::decode_metrics(&body, encoding, &mut |bytes| r.body_budget.grow(&mut reservation, bytes).is_ok()) {
        Ok(decoded) => {
            super::note_repairs("metrics", &decoded.repairs);
            r.pipeline.metrics.metric_points(crate::client_metrics::points(&decoded.request));
            let partial_success = decoded.repairs.message().map(|error_message| {
                opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsPartialSuccess { rejected_data_points: 0, error_message }
            });
            ok(encoding, &ExportMetricsServiceResponse { partial_success })
        }
        Err(e) => decode_refusal(&r, "metrics", e, encoding),
    }
}

/// The answer to a body that does not decode (or whose repair the memory budget cannot take).
fn decode_refusal(r: &Receiver, signal: &str, e: DecodeError, encoding: Encoding) -> Response {
    let reason = if e == DecodeError::Busy { "memory_budget" } else { "malformed" };
    r.pipeline.metrics.reject(signal, reason, 1);
    decode_reply(e, encoding).into_response()
}

fn ok<T: prost::Message + serde::Serialize>(encoding: Encoding, message: &T) -> Response {
    (StatusCode::OK, [(header::CONTENT_TYPE, encoding.content_type())], otlp::encode(message, encoding)).into_response()
}
