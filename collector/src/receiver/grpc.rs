//! OTLP/gRPC: `TraceService/Export`, `LogsService/Export` and `MetricsService/Export`
//! (counted, not stored), gzip accepted and sent.
//! Errors map to gRPC codes the OTLP exporters know how to handle: `UNAUTHENTICATED`,
//! `PERMISSION_DENIED`, `INVALID_ARGUMENT`, `RESOURCE_EXHAUSTED` and `UNAVAILABLE` (retried).

use std::future::Future;
use std::sync::Arc;

use opentelemetry_proto::tonic::collector::logs::v1::{ExportLogsServiceRequest, ExportLogsServiceResponse};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status};

use super::Receiver;
use super::grpc_budget::{Admitted, BudgetLayer, over_budget, presented_key};
use super::grpc_export::{Export, ExportServer};
use super::reply::Refusal;
use crate::auth::key_from_headers;
use crate::otlp::Decoded;
use crate::otlp::repair::Root;
use crate::writer::WriteError;

#[derive(Clone)]
pub struct Service(Arc<Receiver>);

impl Service {
    /// Reserves a decoded message's memory (its encoded size, about three times: tonic's
    /// buffer, the decoded message, the rows being built) in the budget of bodies in flight.
    fn reserve(&self, size: usize, signal: &str, metadata: &MetadataMap) -> Result<super::budget::Reservation, Status> {
        let budget = &self.0.body_budget;
        let presented = presented_key(&metadata.clone().into_headers());
        let mut reservation = budget.empty(self.0.auth.budget_key(presented.as_deref()));
        budget.grow(&mut reservation, 3 * size as u64).map_err(|spent| {
            self.0.pipeline.metrics.reject(signal, spent.reason(), 1);
            over_budget(spent)
        })?;
        Ok(reservation)
    }

    /// What every Export method does before its own work: reserve the message's memory,
    /// authenticate, count what was repaired to decode it. The project, and the reservation to
    /// keep until the reply.
    async fn admit<M: prost::Message>(
        &self,
        request: &Request<Decoded<M>>,
        signal: &'static str,
    ) -> Result<(String, super::budget::Reservation), Status> {
        let decoded = request.get_ref();
        let size = decoded.request.encoded_len();
        let reservation = self.reserve(size, signal, request.metadata())?;
        let project = self.project(request, signal, size).await?;
        super::note_repairs(signal, &decoded.repairs);
        Ok((project, reservation))
    }

    /// The project the budget layer authenticated the request for; authenticated here only if
    /// the request did not come through the layer.
    async fn project<T>(&self, request: &Request<T>, signal: &str, size: usize) -> Result<String, Status> {
        let r = &self.0;
        r.pipeline.metrics.requests.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        r.pipeline.metrics.bytes_received.fetch_add(size as u64, std::sync::atomic::Ordering::Relaxed);
        if let Some(Admitted(project)) = request.extensions().get::<Admitted>() {
            return Ok(project.clone());
        }
        let metadata = request.metadata();
        let get = |name: &str| metadata.get(name).and_then(|v| v.to_str().ok());
        let key = key_from_headers(get("authorization"), get("x-flywheel-key"));
        r.auth.project(key.as_deref()).await.map_err(|e| {
            r.pipeline.metrics.reject(signal, "auth", 1);
            Refusal::of_auth(&e).grpc(e.to_string())
        })
    }
}

fn write_status(e: WriteError) -> Status {
    Refusal::of_write(&e).grpc(e.to_string())
}

/// `TraceService/Export`.
pub struct Traces;
/// `LogsService/Export`.
pub struct Logs;
/// `MetricsService/Export`: counted, not stored.
pub struct Metrics;

impl Export for Traces {
    const SERVICE: &'static str = "opentelemetry.proto.collector.trace.v1.TraceService";
    const PATH: &'static str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";
    const ROOT: Root = Root::Traces;
    const WHAT: &'static str = "ExportTraceServiceRequest";
    type Request = ExportTraceServiceRequest;
    type Response = ExportTraceServiceResponse;
    type Handler = Service;

    async fn export(
        service: Service,
        request: Request<Decoded<ExportTraceServiceRequest>>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let (project, _reservation) = service.admit(&request, "spans").await?;
        let Decoded { request, repairs } = request.into_inner();
        let mut outcome = service.0.pipeline.traces(&project, request).await.map_err(write_status)?;
        outcome.warn(&repairs);
        Ok(Response::new(ExportTraceServiceResponse { partial_success: outcome.trace_partial() }))
    }
}

impl Export for Logs {
    const SERVICE: &'static str = "opentelemetry.proto.collector.logs.v1.LogsService";
    const PATH: &'static str = "/opentelemetry.proto.collector.logs.v1.LogsService/Export";
    const ROOT: Root = Root::Logs;
    const WHAT: &'static str = "ExportLogsServiceRequest";
    type Request = ExportLogsServiceRequest;
    type Response = ExportLogsServiceResponse;
    type Handler = Service;

    async fn export(
        service: Service,
        request: Request<Decoded<ExportLogsServiceRequest>>,
    ) -> Result<Response<ExportLogsServiceResponse>, Status> {
        let (project, _reservation) = service.admit(&request, "logs").await?;
        let Decoded { request, repairs } = request.into_inner();
        let mut outcome = service.0.pipeline.logs(&project, request).await.map_err(write_status)?;
        outcome.warn(&repairs);
        Ok(Response::new(ExportLogsServiceResponse { partial_success: outcome.logs_partial() }))
    }
}

impl Export for Metrics {
    const SERVICE: &'static str = "opentelemetry.proto.collector.metrics.v1.MetricsService";
    const PATH: &'static str = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export";
    const ROOT: Root = Root::Metrics;
    const WHAT: &'static str = "ExportMetricsServiceRequest";
    type Request = ExportMetricsServiceRequest;
    type Response = ExportMetricsServiceResponse;
    type Handler = Service;

    async fn export(
        service: Service,
        request: Request<Decoded<ExportMetricsServiceRequest>>,
    ) -> Result<Response<ExportMetricsServiceResponse>, Status> {
        let _admitted = service.admit(&request, "metrics").await?;
        let decoded = request.get_ref();
        service.0.pipeline.metrics.metric_points(crate::client_metrics::points(&decoded.request));
        let partial_success =
            decoded.repairs.message().map(|error_message| ExportMetricsPartialSuccess { rejected_data_points: 0, error_message });
        Ok(Response::new(ExportMetricsServiceResponse { partial_success }))
    }
}

/// tonic refuses some requests before the service sees them, with codes the OTLP exporters and
/// the README do not expect: a message over the size limit gets OUT_OF_RANGE, and one that does
/// not decode (nesting past prost's recursion limit, bad wire data) INTERNAL — which an exporter
/// may retry forever. They become RESOURCE_EXHAUSTED (the 413 of gRPC) and INVALID_ARGUMENT
/// (the 400), and are counted like every other refusal.
fn otlp_status<B>(metrics: &crate::metrics::Metrics, mut response: axum::http::Response<B>) -> axum::http::Response<B> {
    let headers = response.headers_mut();
    // `grpc-message` is percent-encoded on the wire: read through tonic.
    let message = tonic::Status::from_header_map(headers).map(|s| s.message().to_ascii_lowercase()).unwrap_or_default();
    let (code, reason) = match headers.get("grpc-status").and_then(|v| v.to_str().ok()) {
        Some("11") => ("8", "too_large"),
        // Our decoder's refusal (`grpc_export`): already INVALID_ARGUMENT, counted here.
        Some("3") if message.starts_with("malformed otlp") => ("3", "malformed"),
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
    let budget = BudgetLayer { receiver: receiver.clone() };
    let budget_of_repairs = receiver.body_budget.clone();
    let service = Service(receiver);
    let traces = ExportServer::<Traces>::new(service.clone(), budget_of_repairs.clone(), limit);
    let logs = ExportServer::<Logs>::new(service.clone(), budget_of_repairs.clone(), limit);
    let metrics_service = ExportServer::<Metrics>::new(service, budget_of_repairs, limit);
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
