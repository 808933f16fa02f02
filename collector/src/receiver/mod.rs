//! The receivers: OTLP/HTTP ([`http`]) and OTLP/gRPC ([`grpc`]), sharing one [`Receiver`]
//! (authentication, limits and the ingestion pipeline), and the read API ([`api`]) on the HTTP
//! port. [`serve`] runs both until a shutdown
//! signal, then stops accepting and lets in-flight requests finish.

pub mod api;
pub mod budget;
pub mod connections;
pub mod grpc;
mod grpc_budget;
mod grpc_export;
pub mod http;
pub mod reply;
pub mod signals;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::auth::Authenticator;
use crate::pipeline::Pipeline;

pub struct Receiver {
    pub pipeline: Pipeline,
    pub auth: Authenticator,
    pub max_body_bytes: usize,
    /// Bytes of request bodies in flight (see [`budget`]).
    pub body_budget: budget::BodyBudget,
    /// Connections, idle and header timeouts, for both listeners (see [`connections`]).
    pub connections: connections::ConnectionLimits,
    /// Origins allowed to post signals from a browser (`*` for any).
    pub cors_origins: Vec<String>,
    pub store: flywheel_schemas::Store,
}

/// Counts and logs the values repaired to decode a request.
pub(crate) fn note_repairs(signal: &str, repairs: &crate::otlp::repair::Repairs) {
    use crate::metrics::{Event, count_n};
    if repairs.any() {
        count_n(Event::StringRepaired, repairs.strings as u64);
        count_n(Event::NumberRepaired, repairs.numbers as u64);
        count_n(Event::DeepValueCut, repairs.deep as u64);
        tracing::info!(
            signal,
            strings = repairs.strings,
            numbers = repairs.numbers,
            deep = repairs.deep,
            attribute = repairs.deep_attribute.as_deref().unwrap_or(""),
            "values repaired to decode a request"
        );
    }
}

pub(crate) fn header<'a>(headers: &'a axum::http::HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Why a request body could not be read.
#[derive(Debug)]
pub enum BodyError {
    TooLarge,
    /// The memory budget of bodies in flight, or the key's share of it, is spent: retry later
    /// (429).
    Busy(budget::Spent),
    Read(String),
}

/// The answer to a spent memory budget.
pub(crate) const BUSY_MESSAGE: &str = "the collector is at its memory budget for request bodies in flight; retry later";

/// Reads a body up to `limit` bytes, reserving its bytes in `budget` as they arrive (the
/// reservation is returned with the body and lasts as long as the caller keeps it). Past the
/// limit, the rest is read and discarded (up to a bound) before answering: a client still
/// sending would otherwise see a reset connection instead of the 413 that tells it what to do.
pub async fn read_body(
    body: axum::body::Body,
    limit: usize,
    budget: &budget::BodyBudget,
    key: Option<&str>,
) -> Result<(bytes::Bytes, budget::Reservation), BodyError> {
    use http_body_util::BodyExt;
    let mut body = body;
    let mut buf = bytes::BytesMut::new();
    let mut reservation = budget.empty(key);
    let mut seen = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| BodyError::Read(e.to_string()))?;
        if let Ok(data) = frame.into_data() {
            seen += data.len();
            if seen <= limit {
                budget.grow(&mut reservation, data.len() as u64).map_err(BodyError::Busy)?;
                buf.extend_from_slice(&data);
            } else if seen > limit.saturating_mul(8).max(64 << 20) {
                break;
            }
        }
    }
    if seen > limit { Err(BodyError::TooLarge) } else { Ok((buf.freeze(), reservation)) }
}

/// `google.rpc.Status`, the body of OTLP/HTTP error replies.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct RpcStatus {
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(string, tag = "2")]
    pub message: String,
    #[prost(message, repeated, tag = "3")]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<prost_types_any::Any>,
}

/// `google.protobuf.Any`, only so that `RpcStatus` has the wire shape of the real message.
pub mod prost_types_any {
    #[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
    pub struct Any {
        #[prost(string, tag = "1")]
        pub type_url: String,
        #[prost(bytes = "vec", tag = "2")]
        pub value: Vec<u8>,
    }
}

/// Binds both listeners, then serves until `shutdown` completes. Returns the bound addresses
/// through `on_bound` (useful with port 0).
pub async fn serve(
    receiver: Arc<Receiver>,
    http_addr: &str,
    grpc_addr: &str,
    shutdown: impl Future<Output = ()> + Send + 'static,
    on_bound: impl FnOnce(SocketAddr, SocketAddr),
) -> std::io::Result<()> {
    let cannot_listen = |what: &str, addr: &str, flag: &str, key: &str, e: std::io::Error| {
        let hint = match e.kind() {
            std::io::ErrorKind::AddrInUse => {
                format!("; another process listens there: stop it, or choose another address with {flag} (or `{key}` of [collector])")
            }
            std::io::ErrorKind::PermissionDenied => format!("; ports below 1024 need privileges: choose another with {flag}"),
            _ => String::new(),
        };
        std::io::Error::new(e.kind(), format!("cannot listen for {what} on {addr}: {e}{hint}"))
    };
    let http_listener =
        tokio::net::TcpListener::bind(http_addr).await.map_err(|e| cannot_listen("OTLP/HTTP", http_addr, "--http", "http", e))?;
    let grpc_listener =
        tokio::net::TcpListener::bind(grpc_addr).await.map_err(|e| cannot_listen("OTLP/gRPC", grpc_addr, "--grpc", "grpc", e))?;
    on_bound(http_listener.local_addr()?, grpc_listener.local_addr()?);

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let mut http_stop = stop_rx.clone();
    let mut grpc_stop = stop_rx;
    let limits = receiver.connections.clone();
    let http = connections::serve_http(http_listener, http::router(receiver.clone()), limits, async move {
        let _ = http_stop.wait_for(|s| *s).await;
    });
    let grpc = grpc::serve(receiver, grpc_listener, async move {
        let _ = grpc_stop.wait_for(|s| *s).await;
    });
    let (h, g) = tokio::join!(http, grpc);
    h?;
    g.map_err(|e| std::io::Error::other(format!("OTLP/gRPC server: {e}")))
}
