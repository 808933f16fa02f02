//! OTLP/gRPC: `TraceService/Export` and `LogsService/Export`, gzip accepted and sent.
//! Errors map to gRPC codes the OTLP exporters know how to handle: `UNAUTHENTICATED`,
//! `PERMISSION_DENIED`, `INVALID_ARGUMENT`, `RESOURCE_EXHAUSTED` and `UNAVAILABLE` (retried).

use std::future::Future;
use std::sync::Arc;

use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{LogsService, LogsServiceServer};
use opentelemetry_proto::tonic::collector::logs::v1::{ExportLogsServiceRequest, ExportLogsServiceResponse};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use prost::Message as _;
use tonic::codec::CompressionEncoding;
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status};

use super::Receiver;
use crate::auth::{AuthError, key_from_headers};
use crate::writer::WriteError;

#[derive(Clone)]
struct Service(Arc<Receiver>);

impl Service {
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
        WriteError::Busy => Status::resource_exhausted(e.to_string()),
        WriteError::Storage(_) | WriteError::Stopped => Status::unavailable(e.to_string()),
    }
}

#[tonic::async_trait]
impl TraceService for Service {
    async fn export(&self, request: Request<ExportTraceServiceRequest>) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let size = request.get_ref().encoded_len();
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
        let project = self.project(request.metadata(), "logs", size).await?;
        let outcome = self.0.pipeline.logs(&project, request.get_ref()).await.map_err(write_status)?;
        let partial_success = outcome.logs_partial();
        Ok(Response::new(ExportLogsServiceResponse { partial_success }))
    }
}

pub async fn serve(
    receiver: Arc<Receiver>,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    let limit = receiver.max_body_bytes;
    let service = Service(receiver);
    let traces = TraceServiceServer::new(service.clone())
        .accept_compressed(CompressionEncoding::Gzip)
        .send_compressed(CompressionEncoding::Gzip)
        .max_decoding_message_size(limit);
    let logs = LogsServiceServer::new(service)
        .accept_compressed(CompressionEncoding::Gzip)
        .send_compressed(CompressionEncoding::Gzip)
        .max_decoding_message_size(limit);
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    tonic::transport::Server::builder().add_service(traces).add_service(logs).serve_with_incoming_shutdown(incoming, shutdown).await
}
