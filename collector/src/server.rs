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
use crate::signals::{SignalService, derive, link};
use crate::wal::{Wal, WalConfig};
use crate::writer::{Writer, WriterConfig};

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Prices(#[from] crate::price::PriceError),
    #[error(transparent)]
    Redaction(#[from] crate::redact::PatternError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Wal(#[from] crate::wal::WalError),
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
    let signals = SignalService::new(store.clone(), cfg.message_id_attribute.clone());
    let metrics = Arc::new(Metrics::default());
    let store_for_ready = store.clone();
    let store_for_rejoin = store.clone();
    // What the writer stores is reported to the storage join (`pipeline::rejoin`).
    let (stored, reports) = crate::pipeline::Stored::channel(metrics.clone());
    let stored = cfg.join_in_storage.then_some(stored);
    let (writer, writer_task) = if store_rows && cfg.wal {
        let dir = cfg.wal_dir_for(store.database());
        let wal_cfg = WalConfig {
            max_bytes: cfg.wal_max_bytes,
            insert_linger: Duration::from_millis(cfg.insert_linger_ms),
            stored,
            ..WalConfig::new(&dir)
        };
        let (wal, drain) = Wal::open(wal_cfg, store.clone(), metrics.clone())?;
        tracing::info!(dir = %dir.display(), "write-ahead log open");
        (Writer::with_wal(wal), drain)
    } else if store_rows {
        Writer::start(store.clone(), WriterConfig { queue: cfg.write_queue, stored, ..Default::default() }, metrics.clone())
    } else {
        Writer::discarding()
    };
    let pipeline =
        Pipeline::new(writer, metrics, signals, prices, redactor, cfg.feature_attribute.clone(), Duration::from_secs(cfg.join_window_secs))
            .with_retention(cfg.spans_retention_days)
            .with_max_rows_bytes(cfg.max_request_rows_bytes)
            .with_join_cache_bytes(cfg.join_cache_max_bytes);
    let background = background_jobs(store.clone(), &cfg);
    let receiver = Arc::new(Receiver {
        pipeline,
        auth: Authenticator::new(auth, store, Duration::from_secs(cfg.key_refresh_secs)),
        max_body_bytes: cfg.max_body_bytes,
        body_budget: crate::receiver::budget::BodyBudget::with_share(
            cfg.max_inflight_body_bytes,
            // One request of the largest size must fit a client's share, or it would be refused
            // with 429 forever.
            cfg.max_inflight_body_bytes_per_key.unwrap_or(cfg.max_inflight_body_bytes / 2).max(3 * cfg.max_body_bytes as u64),
        ),
        connections: crate::receiver::connections::ConnectionLimits::new(
            cfg.max_connections,
            Duration::from_secs(cfg.idle_timeout_secs.max(1)),
            Duration::from_secs(cfg.header_timeout_secs.max(1)),
        ),
        cors_origins: cfg.cors_origins.clone(),
        store: store_for_ready,
    });
    let keys = {
        let receiver = receiver.clone();
        tokio::spawn(async move { receiver.auth.refresh_forever().await })
    };
    let rejoin = {
        let receiver = receiver.clone();
        tokio::spawn(async move { receiver.pipeline.rejoin_forever(store_for_rejoin, reports).await })
    };
    let wal = receiver.pipeline.writer.wal().cloned();
    receiver::serve(receiver, &cfg.http, &cfg.grpc, shutdown, on_bound).await?;
    background.abort();
    rejoin.abort();
    keys.abort();
    match wal {
        // Acknowledged data is safe in the log whatever happens now; give the drain a moment
        // to empty it so that a stopped collector leaves ClickHouse complete when it can.
        Some(wal) => {
            wal.closing();
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            while wal.status().pending_records > 0 && std::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            writer_task.abort();
        }
        // The receivers are gone, and with them every sender of the writer: it drains and stops.
        None => {
            let _ = tokio::time::timeout(Duration::from_secs(30), writer_task).await;
        }
    }
    Ok(())
}

/// Periodic work of a collector: retry the links of pending signals, derive implicit signals.
/// Each run reads ClickHouse, so several collectors may run them: ids are deterministic and a
/// rewrite of the same row is harmless (ReplacingMergeTree).
fn background_jobs(store: Store, cfg: &CollectorConfig) -> tokio::task::JoinHandle<()> {
    let link_every = Duration::from_secs(cfg.signal_link_interval_secs.max(1));
    let link_timeout = time::Duration::seconds(cfg.signal_link_timeout_secs as i64);
    let derive_cfg = cfg.derive.clone();
    let message_attribute = cfg.message_id_attribute.clone();
    tokio::spawn(async move {
        let mut link_tick = tokio::time::interval(link_every);
        let mut derive_tick = tokio::time::interval(Duration::from_secs(derive_cfg.interval_secs.max(1)));
        loop {
            tokio::select! {
                _ = link_tick.tick() => {
                    let horizon = link_timeout + time::Duration::days(1);
                    let job = link::resolve_pending(&store, message_attribute.as_deref(), link_timeout, horizon);
                    match crate::deadline::within(&store, crate::deadline::JOB, job).await {
                        Ok(rows) if !rows.is_empty() => tracing::info!(rows = rows.len(), "pending signals linked or given up"),
                        Ok(_) => {}
                        Err(e) => tracing::warn!(error = %e, "linking pending signals failed; retrying later"),
                    }
                }
                _ = derive_tick.tick(), if derive_cfg.interval_secs > 0 => {
                    match crate::deadline::within(&store, crate::deadline::JOB, derive::run(&store, &derive_cfg)).await {
                        Ok(rows) if !rows.is_empty() => tracing::info!(rows = rows.len(), "derived implicit signals"),
                        Ok(_) => {}
                        Err(e) => tracing::warn!(error = %e, "deriving implicit signals failed; retrying later"),
                    }
                }
            }
        }
    })
}
