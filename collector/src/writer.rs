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

use crate::deadline::{INSERT, within};
use crate::metrics::Metrics;

/// Rows of one request, for every table the collector writes.
#[derive(Debug, Default, Clone, serde::Serialize, serde::Deserialize)]
pub struct Batch {
    pub spans: Vec<SpanRow>,
    pub calls: Vec<LlmCallRow>,
    pub contents: Vec<ContentRow>,
    pub logs: Vec<LogRecordRow>,
    pub signals: Vec<SignalRow>,
    /// `spans` rows the receiver encoded as RowBinary straight from the request (a span's raw
    /// row is only ever stored: building it as a [`SpanRow`] would copy every attribute twice).
    /// Never in a log record of format 3 or before, which hold rows (hence `skip`).
    #[serde(skip)]
    pub encoded_spans: Vec<EncodedSpans>,
}

/// `spans` rows of one project, encoded ([`crate::normalize::span::DecodedSpan::encode_row`]).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct EncodedSpans {
    pub project: String,
    pub data: Vec<u8>,
    /// Per row, the day its partition key falls on and where its bytes end in `data`.
    pub rows: Vec<(i64, usize)>,
}

impl EncodedSpans {
    /// Each row's day and bytes, in order.
    pub fn rows(&self) -> impl Iterator<Item = (i64, &[u8])> {
        let mut start = 0;
        self.rows.iter().map(move |&(day, end)| {
            let bytes = &self.data[start..end];
            start = end;
            (day, bytes)
        })
    }
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.rows() == 0
    }

    /// The projects whose rows the batch holds, sorted, each once.
    pub fn projects(&self) -> Vec<&str> {
        let mut projects: Vec<&str> = self
            .spans
            .iter()
            .map(|r| r.project_id.as_str())
            .chain(self.calls.iter().map(|r| r.project_id.as_str()))
            .chain(self.logs.iter().map(|r| r.project_id.as_str()))
            .chain(self.signals.iter().map(|r| r.project_id.as_str()))
            .chain(self.contents.iter().map(|r| r.project_id.as_str()))
            .chain(self.encoded_spans.iter().filter(|e| !e.rows.is_empty()).map(|e| e.project.as_str()))
            .collect();
        projects.sort_unstable();
        projects.dedup();
        projects
    }

    pub fn rows(&self) -> usize {
        let encoded: usize = self.encoded_spans.iter().map(|e| e.rows.len()).sum();
        self.spans.len() + encoded + self.calls.len() + self.contents.len() + self.logs.len() + self.signals.len()
    }

    pub(crate) fn append(&mut self, other: Batch) {
        self.spans.extend(other.spans);
        self.calls.extend(other.calls);
        self.contents.extend(other.contents);
        self.logs.extend(other.logs);
        self.signals.extend(other.signals);
        self.encoded_spans.extend(other.encoded_spans);
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WriteError {
    #[error("the collector is at capacity (write queue full); retry later")]
    Busy,
    /// The rows of one request are more than one write-ahead log record may hold: retrying
    /// cannot help, the request must be smaller.
    #[error(
        "the rows of this request take about {bytes} bytes once stored (resource and scope attributes are stored with every span and log record), over the limit of {limit} bytes per request; send fewer spans or log records per request, or smaller resource attributes"
    )]
    TooLarge { bytes: u64, limit: u64 },
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
    /// Told of every batch stored, for the storage join (`pipeline::rejoin`).
    pub stored: Option<crate::pipeline::Stored>,
}

impl Default for WriterConfig {
    fn default() -> Self {
        WriterConfig { queue: 1024, max_rows: 50_000, stored: None }
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
        let result = insert(&store, &mut batch).await.map_err(|e| WriteError::Storage(e.to_string()));
        metrics.record_insert(rows, started.elapsed(), result.is_ok());
        if let (Ok(()), Some(stored)) = (&result, &cfg.stored) {
            stored.report(&batch);
        }
        if let Err(e) = &result {
            tracing::error!(error = %e, rows, requests = waiting.len(), "insert failed; the requests are refused so that clients retry");
        }
        for done in waiting {
            let _ = done.send(result.clone());
        }
    }
}

/// Why an insert failed, with what the drain needs to decide: retry, or isolate the data.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct InsertError(pub flywheel_schemas::StoreError);

/// ClickHouse exception codes that say the server is busy, short of resources or shutting down,
/// not that the rows are wrong: the same rows go in later.
const TRANSIENT_CODES: &[u32] = &[
    3,    // UNEXPECTED_END_OF_FILE (connection cut)
    159,  // TIMEOUT_EXCEEDED
    160,  // TOO_SLOW
    164,  // READONLY
    202,  // TOO_MANY_SIMULTANEOUS_QUERIES
    203,  // NO_FREE_CONNECTION
    209,  // SOCKET_TIMEOUT
    210,  // NETWORK_ERROR
    236,  // ABORTED
    241,  // MEMORY_LIMIT_EXCEEDED
    242,  // TABLE_IS_READ_ONLY
    243,  // NOT_ENOUGH_SPACE
    252,  // TOO_MANY_PARTS (merges behind); inserts are split by partition, see `insert`
    285,  // TOO_FEW_LIVE_REPLICAS
    319,  // UNKNOWN_STATUS_OF_INSERT
    394,  // QUERY_WAS_CANCELLED
    425,  // SYSTEM_ERROR
    999,  // KEEPER_EXCEPTION
    1000, // POCO_EXCEPTION
];

impl InsertError {
    /// ClickHouse (or the client encoding the rows) refused these rows themselves: the same
    /// rows would be refused again, while other rows go in. Unreachable servers, schema
    /// mismatches (every row is refused: run `flywheel migrate`) and transient server errors
    /// are not data errors.
    pub fn is_data_error(&self) -> bool {
        use flywheel_schemas::StoreError;
        match &self.0 {
            StoreError::Query { message, .. } => match exception_code(message) {
                // TOO_MANY_PARTS also names a block over `max_partitions_per_insert_block`: the
                // rows, not the server's state (inserts are split below the default, so only a
                // server configured lower refuses them).
                Some(252) => message.contains("Too many partitions"),
                Some(code) => !TRANSIENT_CODES.contains(&code),
                // No server exception: the client could not encode the rows (a value out of
                // the column type's range).
                None => !message.contains("timed out") && !message.contains("connection"),
            },
            _ => false,
        }
    }
}

fn exception_code(message: &str) -> Option<u32> {
    let rest = &message[message.find("Code: ")? + 6..];
    rest[..rest.find(|c: char| !c.is_ascii_digit())?].parse().ok()
}

/// ClickHouse refuses an insert block that touches more partitions than this
/// (`max_partitions_per_insert_block`, 100 by default); the tables are partitioned by day.
pub const MAX_PARTITIONS_PER_INSERT: usize = 100;

/// The day (a `Date`: days since 1970-01-01, UTC) a row's partition key falls on.
pub(crate) fn day(t: time::OffsetDateTime) -> i64 {
    t.unix_timestamp().div_euclid(86_400)
}

/// Inserts `rows` into `table` in blocks of at most [`MAX_PARTITIONS_PER_INSERT`] days: one
/// request may legitimately carry spans of many days (a backfill), which ClickHouse refuses as
/// one block. Rows are sorted by day in place (the order of rows in a table is its ORDER BY's).
async fn insert_by_day<T>(store: &Store, table: &str, rows: &mut [T], key: impl Fn(&T) -> i64) -> Result<(), InsertError>
where
    T: clickhouse::RowOwned + clickhouse::RowWrite + serde::Serialize,
{
    if rows.is_empty() {
        return Ok(());
    }
    let first = key(&rows[0]);
    if rows.iter().all(|r| key(r) == first) {
        return within(store, INSERT, store.insert(table, rows)).await.map_err(InsertError);
    }
    rows.sort_by_key(|r| key(r));
    let mut start = 0;
    while start < rows.len() {
        let (mut end, mut days, mut current) = (start, 0, None);
        while end < rows.len() {
            let d = key(&rows[end]);
            if current != Some(d) {
                if days == MAX_PARTITIONS_PER_INSERT {
                    break;
                }
                days += 1;
                current = Some(d);
            }
            end += 1;
        }
        within(store, INSERT, store.insert(table, &rows[start..end])).await.map_err(InsertError)?;
        start = end;
    }
    Ok(())
}

#[tracing::instrument(name = "clickhouse insert", skip_all, fields(rows = b.rows()))]
pub(crate) async fn insert(store: &Store, b: &mut Batch) -> Result<(), InsertError> {
    // Content first, calls after: a reader that sees a call can always resolve its hashes.
    insert_by_day(store, "contents", &mut b.contents, |r| day(r.last_seen)).await?;
    insert_by_day(store, "spans", &mut b.spans, |r| day(r.start_time)).await?;
    let mut days: std::collections::BTreeMap<i64, Vec<&[u8]>> = Default::default();
    for (d, row) in b.encoded_spans.iter().flat_map(EncodedSpans::rows) {
        days.entry(d).or_default().push(row);
    }
    crate::wal::record::insert_days(store, crate::wal::record::Table::Spans, days).await?;
    insert_by_day(store, "llm_calls", &mut b.calls, |r| day(r.start_time)).await?;
    insert_by_day(store, "log_records", &mut b.logs, |r| day(r.timestamp)).await?;
    insert_by_day(store, "signals", &mut b.signals, |r| day(r.timestamp)).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use flywheel_schemas::StoreError;

    fn query(message: &str) -> InsertError {
        InsertError(StoreError::Query { context: "INSERT INTO spans".into(), message: message.into() })
    }

    /// The drain isolates and quarantines only what the rows themselves cause; an overloaded or
    /// absent server is waited for.
    #[test]
    fn data_errors_are_told_from_a_server_in_trouble() {
        assert!(query("Code: 27. DB::Exception: Cannot parse input. (CANNOT_PARSE_INPUT_ASSERTION_FAILED)").is_data_error());
        assert!(query("2300-01-01 0:00:00.0 +00:00:00 cannot be represented as DateTime64").is_data_error());
        assert!(query("Code: 252. DB::Exception: Too many partitions for single INSERT block (more than 100).").is_data_error());
        assert!(
            !query("Code: 252. DB::Exception: Too many parts (300). Merges are processing significantly slower than inserts")
                .is_data_error()
        );
        assert!(!query("Code: 241. DB::Exception: Memory limit (total) exceeded. (MEMORY_LIMIT_EXCEEDED)").is_data_error());
        assert!(!InsertError(StoreError::Schema { table: "spans".into(), message: "no column".into() }).is_data_error());
    }

    #[test]
    fn days_are_utc_dates() {
        assert_eq!(day(time::macros::datetime!(1970-01-01 23:59 UTC)), 0);
        assert_eq!(day(time::macros::datetime!(2026-12-03 0:00 UTC)) - day(time::macros::datetime!(2026-12-02 23:59 UTC)), 1);
    }
}
