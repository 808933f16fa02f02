//! The writer: rows to ClickHouse, with group commit.
//!
//! Receivers hand a [`Batch`] to [`Writer::write`] and wait: the call returns only once the rows
//! are stored, which is when a receiver may acknowledge its request (durability contract).
//! Concurrent requests are committed together: while one insert runs, the next requests queue
//! up and go out in the following insert, so throughput grows with load instead of paying one
//! ClickHouse part per request. The queue is bounded; when it is full, `write` fails at once
//! with [`WriteError::Busy`] and the receiver answers 429/503 with `Retry-After`.

use std::sync::Arc;
use std::time::Instant;

use flywheel_schemas::Store;
use flywheel_schemas::rows::{ContentRow, LlmCallRow, LogRecordRow, SignalRow, SpanRow};
use tokio::sync::{mpsc, oneshot};

use crate::metrics::Metrics;

/// Rows of one request, for every table the collector writes.
#[derive(Debug, Default, Clone, serde::Serialize, serde::Deserialize)]
pub struct Batch {
    pub spans: Vec<SpanRow>,
    pub calls: Vec<LlmCallRow>,
    pub contents: Vec<ContentRow>,
    pub logs: Vec<LogRecordRow>,
    pub signals: Vec<SignalRow>,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.rows() == 0
    }

    pub fn rows(&self) -> usize {
        self.spans.len() + self.calls.len() + self.contents.len() + self.logs.len() + self.signals.len()
    }

    pub(crate) fn append(&mut self, other: Batch) {
        self.spans.extend(other.spans);
        self.calls.extend(other.calls);
        self.contents.extend(other.contents);
        self.logs.extend(other.logs);
        self.signals.extend(other.signals);
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WriteError {
    #[error("the collector is at capacity (write queue full); retry later")]
    Busy,
    #[error("storage is unavailable: {0}")]
    Storage(String),
    #[error("the writer has stopped")]
    Stopped,
}

struct Job {
    batch: Batch,
    done: oneshot::Sender<Result<(), WriteError>>,
}

#[derive(Debug, Clone)]
pub struct WriterConfig {
    /// Requests waiting for an insert; beyond it `write` answers `Busy`.
    pub queue: usize,
    /// Rows per group commit; more waits for the next insert.
    pub max_rows: usize,
}

impl Default for WriterConfig {
    fn default() -> Self {
        WriterConfig { queue: 1024, max_rows: 50_000 }
    }
}

#[derive(Clone)]
pub struct Writer {
    tx: Option<mpsc::Sender<Job>>,
    wal: Option<crate::wal::Wal>,
}

impl Writer {
    pub fn start(store: Store, cfg: WriterConfig, metrics: Arc<Metrics>) -> (Writer, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(cfg.queue.max(1));
        let task = tokio::spawn(run(store, cfg, rx, metrics));
        (Writer { tx: Some(tx), wal: None }, task)
    }

    /// A writer that acknowledges without storing anything. Only `flywheel bench ingest` uses
    /// it, to measure the receivers and normalisation apart from ClickHouse.
    pub fn discarding() -> (Writer, tokio::task::JoinHandle<()>) {
        let (tx, mut rx) = mpsc::channel::<Job>(1024);
        let task = tokio::spawn(async move {
            while let Some(job) = rx.recv().await {
                let _ = job.done.send(Ok(()));
            }
        });
        (Writer { tx: Some(tx), wal: None }, task)
    }

    /// Stores `batch`; returns once it is in ClickHouse.
    /// A writer through the write-ahead log: `write` returns once the batch is fsynced; the
    /// log's drain task stores it in ClickHouse.
    pub fn with_wal(wal: crate::wal::Wal) -> Writer {
        Writer { tx: None, wal: Some(wal) }
    }

    pub fn wal(&self) -> Option<&crate::wal::Wal> {
        self.wal.as_ref()
    }

    /// Stores `batch` durably: fsynced in the write-ahead log, or inserted into ClickHouse
    /// when the log is off. Only then may the request be acknowledged.
    pub async fn write(&self, batch: Batch) -> Result<(), WriteError> {
        if batch.is_empty() {
            return Ok(());
        }
        if let Some(wal) = &self.wal {
            return wal.append(&batch).await;
        }
        let Some(tx) = &self.tx else { return Err(WriteError::Stopped) };
        let (done, wait) = oneshot::channel();
        tx.try_send(Job { batch, done }).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => WriteError::Busy,
            mpsc::error::TrySendError::Closed(_) => WriteError::Stopped,
        })?;
        wait.await.map_err(|_| WriteError::Stopped)?
    }
}

async fn run(store: Store, cfg: WriterConfig, mut rx: mpsc::Receiver<Job>, metrics: Arc<Metrics>) {
    while let Some(first) = rx.recv().await {
        let mut batch = first.batch;
        let mut waiting = vec![first.done];
        while batch.rows() < cfg.max_rows {
            match rx.try_recv() {
                Ok(job) => {
                    batch.append(job.batch);
                    waiting.push(job.done);
                }
                Err(_) => break,
            }
        }
        let started = Instant::now();
        let rows = batch.rows();
        let result = insert(&store, &batch).await;
        metrics.record_insert(rows, started.elapsed(), result.is_ok());
        if let Err(e) = &result {
            tracing::error!(error = %e, rows, requests = waiting.len(), "insert failed; the requests are refused so that clients retry");
        }
        for done in waiting {
            let _ = done.send(result.clone());
        }
    }
}

#[tracing::instrument(name = "clickhouse insert", skip_all, fields(rows = b.rows()))]
pub(crate) async fn insert(store: &Store, b: &Batch) -> Result<(), WriteError> {
    let err = |e: flywheel_schemas::StoreError| WriteError::Storage(e.to_string());
    // Content first, calls after: a reader that sees a call can always resolve its hashes.
    if !b.contents.is_empty() {
        store.insert("contents", &b.contents).await.map_err(err)?;
    }
    if !b.spans.is_empty() {
        store.insert("spans", &b.spans).await.map_err(err)?;
    }
    if !b.calls.is_empty() {
        store.insert("llm_calls", &b.calls).await.map_err(err)?;
    }
    if !b.logs.is_empty() {
        store.insert("log_records", &b.logs).await.map_err(err)?;
    }
    if !b.signals.is_empty() {
        store.insert("signals", &b.signals).await.map_err(err)?;
    }
    Ok(())
}
