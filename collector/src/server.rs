//! `flywheel serve`: wires configuration, storage, auth, pipeline, writer and receivers.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use flywheel_schemas::Store;

use crate::auth::{AuthMode, Authenticator};
use crate::config::CollectorConfig;
use crate::metrics::Metrics;
use crate::pipeline::Pipeline;
use crate::price::PriceTable;
use crate::receiver::{self, Receiver};
use crate::redact::Redactor;
use crate::writer::{Writer, WriterConfig};

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Prices(#[from] crate::price::PriceError),
    #[error(transparent)]
    Redaction(#[from] crate::redact::PatternError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Runs the collector until `shutdown` completes; `on_bound` receives the HTTP and gRPC
/// addresses once both listen. In-flight requests finish before it returns.
pub async fn run(
    store: Store,
    cfg: CollectorConfig,
    auth: AuthMode,
    shutdown: impl Future<Output = ()> + Send + 'static,
    on_bound: impl FnOnce(SocketAddr, SocketAddr),
) -> Result<(), ServeError> {
    run_with(store, cfg, auth, true, shutdown, on_bound).await
}

/// [`run`], with the option of a writer that stores nothing (`store_rows = false`), for the
/// ingest benchmark only.
pub async fn run_with(
    store: Store,
    cfg: CollectorConfig,
    auth: AuthMode,
    store_rows: bool,
    shutdown: impl Future<Output = ()> + Send + 'static,
    on_bound: impl FnOnce(SocketAddr, SocketAddr),
) -> Result<(), ServeError> {
    let prices = match &cfg.prices {
        Some(path) => PriceTable::load(path)?,
        None => PriceTable::builtin(),
    };
    let redactor = Redactor::new(&cfg.redaction)?;
    let metrics = Arc::new(Metrics::default());
    let (writer, writer_task) = if store_rows {
        Writer::start(store.clone(), WriterConfig { queue: cfg.write_queue, ..Default::default() }, metrics.clone())
    } else {
        Writer::discarding()
    };
    let pipeline =
        Pipeline::new(writer, metrics, prices, redactor, cfg.feature_attribute.clone(), Duration::from_secs(cfg.join_window_secs));
    let receiver = Arc::new(Receiver {
        pipeline,
        auth: Authenticator::new(auth, store, Duration::from_secs(cfg.key_refresh_secs)),
        max_body_bytes: cfg.max_body_bytes,
    });
    receiver::serve(receiver, &cfg.http, &cfg.grpc, shutdown, on_bound).await?;
    // The receivers are gone, and with them every sender of the writer: it drains and stops.
    let _ = tokio::time::timeout(Duration::from_secs(30), writer_task).await;
    Ok(())
}
