//! OTLP/gRPC: `TraceService/Export`, `LogsService/Export` and `MetricsService/Export`
//! (counted, not stored), gzip accepted and sent.
//! Errors map to gRPC codes the OTLP exporters know how to handle: `UNAUTHENTICATED`,
//! `PERMISSION_DENIED`, `INVALID_ARGUMENT`, `RESOURCE_EXHAUSTED` and `UNAVAILABLE` (retried).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{LogsService, LogsServiceServer};
use opentelemetry_proto::tonic::collector::logs::v1::{ExportLogsServiceRequest, ExportLogsServiceResponse};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{MetricsService, MetricsServiceServer};
use opentelemetry_proto::tonic::collector::metrics::v1::{ExportMetricsServiceRequest, ExportMetricsServiceResponse};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use prost::Message as _;
use tonic::codec::CompressionEncoding;
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status};

use super::Receiver;
use super::grpc_budget::{BudgetLayer, busy, over_budget};
use crate::auth::{AuthError, key_from_headers};
use crate::writer::WriteError;

#[derive(Clone)]
struct Service(Arc<Receiver>);

impl Service {
    /// Reserves a decoded message's memory (its encoded size, about three times: tonic's
    /// buffer, the decoded message, the rows being built) in the budget of bodies in flight.
    fn reserve(&self, size: usize, signal: &str) -> Result<super::budget::Reservation, Status> {
        let budget = &self.0.body_budget;
        let mut reservation = budget.empty();
        if budget.grow(&mut reservation, 3 * size as u64) {
            return Ok(reservation);
        }
        self.0.pipeline.metrics.reject(signal, "memory_budget", 1);
        Err(over_budget())
    }

    async fn project(&self, metadata: &MetadataMap, signal: &str, size: usize) -> Result<String, Status> {
        let r = &self.0;
        r.pipeline.metrics.requests.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        r.pipeline.metrics.bytes_received.fetch_add(size as u64, std::sync::atomic::Ordering::Relaxed);
        let get = |name: &str| metadata.get(name).and_then(|v| v.to_str().ok());
        let key = key_from_headers(get("authorization"), get("x-flywheel-key"));
        r.auth.project(key.as_deref()).await.map_err(|e| {
            r.pipeline.metrics.reject(signal, "auth", 1);
            match e {
                AuthError::Missing | AuthError::Unknown | AuthError::Token(_) => Status::unauthenticated(e.to_string()),
                AuthError::Revoked => Status::permission_denied(e.to_string()),
                AuthError::Unavailable(_) => Status::unavailable(e.to_string()),
            }
        })
    }
}

fn write_status(e: WriteError) -> Status {
    match e {
        // With RetryInfo, as the HTTP answer has Retry-After: exporters retry, nothing is dropped.
        WriteError::Busy => busy(&e.to_string(), Duration::from_secs(1)),
        // Without RetryInfo, OTLP exporters do not retry RESOURCE_EXHAUSTED: the request must
        // be split, not resent.
        WriteError::TooLarge { .. } => Status::resource_exhausted(e.to_string()),
        WriteError::Storage(_) | WriteError::Stopped => Status::unavailable(e.to_string()),
    }
}

#[tonic::async_trait]
impl TraceService for Service {
    async fn export(&self, request: Request<ExportTraceServiceRequest>) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let size = request.get_ref().encoded_len();
        let _reservation = self.reserve(size, "spans")?;
        let project = self.project(request.metadata(), "spans", size).await?;
        let outcome = self.0.pipeline.traces(&project, request.get_ref()).await.map_err(write_status)?;
        let partial_success = outcome.trace_partial();
        Ok(Response::new(ExportTraceServiceResponse { partial_success }))
    }
}

#[tonic::async_trait]
impl LogsService for Service {
    async fn export(&self, request: Request<ExportLogsServiceRequest>) -> Result<Response<ExportLogsServiceResponse>, Status> {
        let size = request.get_ref().encoded_len();
        let _reservation = self.reserve(size, "logs")?;
        let project = self.project(request.metadata(), "logs", size).await?;
        let outcome = self.0.pipeline.logs(&project, request.get_ref()).await.map_err(write_status)?;
        let partial_success = outcome.logs_partial();
        Ok(Response::new(ExportLogsServiceResponse { partial_success }))
    }
}

#[tonic::async_trait]
impl MetricsService for Service {
    async fn export(&self, request: Request<ExportMetricsServiceRequest>) -> Result<Response<ExportMetricsServiceResponse>, Status> {
        let size = request.get_ref().encoded_len();
        let _reservation = self.reserve(size, "metrics")?;
        self.project(request.metadata(), "metrics", size).await?;
        self.0.pipeline.metrics.metric_points(crate::client_metrics::points(request.get_ref()));
        Ok(Response::new(ExportMetricsServiceResponse { partial_success: None }))
    }
}

/// tonic refuses some requests before the service sees them, with codes the OTLP exporters and
/// the README do not expect: a message over the size limit gets OUT_OF_RANGE, and one that does
/// not decode (nesting past prost's recursion limit, bad wire data) INTERNAL — which an exporter
/// may retry forever. They become RESOURCE_EXHAUSTED (the 413 of gRPC) and INVALID_ARGUMENT
/// (the 400), and are counted like every other refusal.
fn otlp_status<B>(metrics: &crate::metrics::Metrics, mut response: axum::http::Response<B>) -> axum::http::Response<B> {
    let headers = response.headers_mut();
    let message = headers.get("grpc-message").and_then(|v| v.to_str().ok()).unwrap_or_default().to_ascii_lowercase();
    let (code, reason) = match headers.get("grpc-status").and_then(|v| v.to_str().ok()) {
        Some("11") => ("8", "too_large"),
        // tonic's INTERNAL for what the client sent: a message that does not decode, a frame
        // cut short, a compressed flag without `grpc-encoding`, a body that does not inflate.
        Some("13")
            if ["decod", "compress", "unexpected eof", "protocol error", "grpc-encoding", "frame"].iter().any(|w| message.contains(w)) =>
        {
            ("3", "malformed")
        }
        _ => return response,
    };
    metrics.reject("grpc", reason, 1);
    tracing::info!(reason, message = %message, "gRPC request refused before decoding");
    headers.insert("grpc-status", axum::http::HeaderValue::from_static(code));
    response
}

pub async fn serve(
    receiver: Arc<Receiver>,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    let limit = receiver.max_body_bytes;
    let metrics = receiver.pipeline.metrics.clone();
    let service_limits = receiver.connections.clone();
    let budget = BudgetLayer { budget: receiver.body_budget.clone(), metrics: metrics.clone() };
    let service = Service(receiver);
    let traces = TraceServiceServer::new(service.clone())
        .accept_compressed(CompressionEncoding::Gzip)
        .send_compressed(CompressionEncoding::Gzip)
        .max_decoding_message_size(limit);
    let logs = LogsServiceServer::new(service.clone())
        .accept_compressed(CompressionEncoding::Gzip)
        .send_compressed(CompressionEncoding::Gzip)
        .max_decoding_message_size(limit);
    let metrics_service = MetricsServiceServer::new(service)
        .accept_compressed(CompressionEncoding::Gzip)
        .send_compressed(CompressionEncoding::Gzip)
        .max_decoding_message_size(limit);
    let incoming = super::connections::incoming(listener, service_limits);
    tonic::transport::Server::builder()
        .layer(tower::util::MapResponseLayer::new(move |response| otlp_status(&metrics, response)))
        .layer(budget)
        .add_service(traces)
        .add_service(logs)
        .add_service(metrics_service)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
}
