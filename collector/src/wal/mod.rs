//! The write-ahead log: what the collector has acknowledged but ClickHouse may not have yet.
//!
//! Contract: [`Wal::append`] returns once the batch is on disk, fsynced; only then may a
//! receiver acknowledge. Concurrent appends share one fsync ([`commit`], group commit). A drain
//! task ([`drain`]) reads the log in order, inserts into ClickHouse in large batches, and
//! records a checkpoint; on restart, and whenever ClickHouse comes back, it replays what is past
//! the checkpoint. Rows replayed twice collapse on their ReplacingMergeTree keys, so nothing is
//! counted twice.
//!
//! On disk ([`segment`]): versioned segment files `<first-lsn>.wal` (rotated at
//! `segment_bytes`), a `checkpoint` file (the last LSN stored in ClickHouse), and `quarantine/`
//! ([`quarantine`]) for what cannot be stored, listed and replayed by [`replay`]. A crash at any instant loses nothing
//! acknowledged: a torn tail — a record cut by a crash during its write, never acknowledged —
//! is cut (and kept in quarantine); the next LSN is derived from every segment's name and
//! records, never from the checkpoint alone, so a crash right after a rotation (an empty last
//! segment) cannot make new records reuse the LSNs of records still waiting. A record whose
//! checksum holds but that this build cannot decode is quarantined and reported, never cut.
//! The log is bounded (`max_bytes`): when full, `append` fails with `Busy`, and a batch larger
//! than a record may be fails with `TooLarge`: nothing is acknowledged that is not stored.

mod commit;
mod drain;
mod quarantine;
pub(crate) mod record;
pub mod replay;
pub mod segment;
pub mod v2;

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use flywheel_schemas::Store;
use tokio::sync::{Notify, mpsc, oneshot};

use crate::metrics::Metrics;
use crate::writer::{Batch, WriteError};
use segment::{Item, MAX_RECORD};

/// See [`WalConfig::insert_linger`]. ClickHouse asks for inserts about once a second at most;
/// half a second took the local engine's CPU per span as low as a second did, with half the
/// wait (docs/performance.md).
pub const DEFAULT_INSERT_LINGER: Duration = Duration::from_millis(500);

#[derive(Debug, thiserror::Error)]
pub enum WalError {
    #[error("write-ahead log {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> WalError + '_ {
    move |source| WalError::Io { path: path.display().to_string(), source }
}

#[derive(Debug, Clone)]
pub struct WalConfig {
    pub dir: PathBuf,
    /// Bound on the log's size on disk; beyond it appends are refused (429).
    pub max_bytes: u64,
    pub segment_bytes: u64,
    /// Rows per ClickHouse insert when draining, and encoded bytes: a chunk of the log is held
    /// in memory, encoded as read, while it is inserted.
    pub drain_rows: usize,
    pub drain_bytes: u64,
    /// How long the drain reads on, while its chunk is not full, before it inserts: fewer,
    /// larger inserts (see `drain::gather`). The longest a record waits to be queryable beyond
    /// the insert itself.
    pub insert_linger: Duration,
    /// Largest record (one request's rows, encoded), at most [`MAX_RECORD`].
    pub max_record_bytes: u32,
    /// Told of every batch stored, for the storage join (`pipeline::rejoin`).
    pub stored: Option<crate::pipeline::Stored>,
}

impl WalConfig {
    pub fn new(dir: impl Into<PathBuf>) -> WalConfig {
        WalConfig {
            dir: dir.into(),
            max_bytes: 1 << 30,
            segment_bytes: 64 << 20,
            drain_rows: 50_000,
            drain_bytes: 16 << 20,
            insert_linger: DEFAULT_INSERT_LINGER,
            max_record_bytes: MAX_RECORD,
            stored: None,
        }
    }
}

struct Append {
    payload: Vec<u8>,
    done: oneshot::Sender<Result<(), WriteError>>,
}

/// Shared state between appenders, the fsync task and the drain task.
struct Shared {
    cfg: WalConfig,
    /// Bytes of the log on disk (all segments).
    bytes: AtomicU64,
    /// Last LSN durable on disk, and last stored in ClickHouse.
    durable: AtomicU64,
    stored: AtomicU64,
    appended: Notify,
    /// The collector is stopping: the drain inserts what it has without lingering.
    closing: AtomicBool,
    oldest_unstored: Mutex<Option<Instant>>,
    metrics: Arc<Metrics>,
}

#[derive(Clone)]
pub struct Wal {
    tx: mpsc::Sender<Append>,
    shared: Arc<Shared>,
    /// Held for the life of the log: one collector per directory.
    _lock: Arc<File>,
}

/// Lag figures for `/metrics` and `/readyz`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WalStatus {
    pub bytes: u64,
    pub max_bytes: u64,
    pub pending_records: u64,
    pub oldest_pending: Option<Duration>,
}

/// The state of a log directory at start-up: the last LSN written, after cutting a torn tail.
fn recover(dir: &Path, checkpoint: u64, metrics: &Metrics) -> Result<u64, WalError> {
    // Leftovers of a segment or checkpoint creation cut by a crash: never renamed, never used.
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let path = entry.map_err(io(dir))?.path();
        if path.extension().is_some_and(|e| e == "tmp") {
            let _ = std::fs::remove_file(&path);
        }
    }
    let segs = segment::segments(dir)?;
    // A segment is named after the LSN its first record gets: every LSN before it is taken,
    // whether or not the segment holds a record yet.
    let mut last_lsn = segs.iter().map(|(first, _)| first.saturating_sub(1)).fold(checkpoint, u64::max);
    for (i, (first, path)) in segs.iter().enumerate() {
        segment::format(path)?; // a segment of an unknown (newer) format stops the start-up
        let is_last = i + 1 == segs.len();
        // Only the last segment may end with a torn record or the zeros laid ahead of records:
        // every earlier one was cut to its last record before the next was created. One that
        // still ends in zeros (a log left so by other means) is cut too: its zeros would count
        // against the log's bound until it is deleted.
        if !is_last && !segment::ends_in_zeros(path)? {
            continue;
        }
        let mut items = Vec::new();
        let read = segment::read(path, 0, segment::Limit::NONE, &mut items)?;
        if let Some(lsn) = items.iter().map(Item::lsn).max() {
            last_lsn = last_lsn.max(lsn);
        }
        if read.end < read.len {
            // Past the last whole record: the zeros laid ahead of the records (the segment was
            // the active one), and before them, if a crash cut a write, what it left of it.
            if let Some((kept, bytes)) = quarantine::keep_tail(dir, *first, path, read.end)? {
                tracing::warn!(segment = %path.display(), valid_bytes = read.end, cut_bytes = bytes, kept = %kept.display(), "write-ahead log: torn tail cut (a crash during a write, never acknowledged)");
                metrics.reject("wal", "torn_tail", 1);
            }
            // Durably: the next segment is created below, and a segment followed by another
            // must end at its last record.
            OpenOptions::new().write(true).open(path).and_then(|f| f.set_len(read.end).and_then(|_| f.sync_all())).map_err(io(path))?;
        }
        if is_last && items.is_empty() {
            // Nothing durable in it (a crash right after its creation): it is re-created below
            // with the same name, in this build's format.
            std::fs::remove_file(path).map_err(io(path))?;
            segment::sync_dir(dir)?;
        }
    }
    Ok(last_lsn)
}

impl Wal {
    /// Opens (or creates) the log in `cfg.dir`, cuts a torn tail, and starts the fsync and drain
    /// tasks. Whatever is past the checkpoint is replayed to ClickHouse by the drain task.
    /// Appends always go to a segment created now, in this build's format.
    pub fn open(mut cfg: WalConfig, store: Store, metrics: Arc<Metrics>) -> Result<(Wal, tokio::task::JoinHandle<()>), WalError> {
        // Stored data leaves the log only with its segment, and the active segment is never
        // deleted: segments must be small beside the bound, or a log of stored data could fill
        // it and refuse everything.
        cfg.segment_bytes = cfg.segment_bytes.min((cfg.max_bytes / 4).max(64 << 10));
        std::fs::create_dir_all(&cfg.dir).map_err(io(&cfg.dir))?;
        let lock_path = cfg.dir.join("lock");
        let lock = File::create(&lock_path).map_err(io(&lock_path))?;
        if lock.try_lock().is_err() {
            return Err(WalError::Io {
                path: cfg.dir.display().to_string(),
                source: std::io::Error::other(
                    "another collector uses this write-ahead log; give each collector its own `[collector] wal_dir`",
                ),
            });
        }
        let checkpoint = segment::read_checkpoint(&cfg.dir);
        let last_lsn = recover(&cfg.dir, checkpoint, &metrics)?;
        let active = segment::create(&cfg.dir, last_lsn + 1)?;
        let segs = segment::segments(&cfg.dir)?;
        let bytes: u64 = segs.iter().filter_map(|(_, p)| std::fs::metadata(p).ok()).map(|m| m.len()).sum();
        let shared = Arc::new(Shared {
            cfg: cfg.clone(),
            bytes: AtomicU64::new(bytes),
            durable: AtomicU64::new(last_lsn),
            stored: AtomicU64::new(checkpoint.min(last_lsn)),
            appended: Notify::new(),
            closing: AtomicBool::new(false),
            oldest_unstored: Mutex::new((last_lsn > checkpoint).then(Instant::now)),
            metrics,
        });
        let (tx, rx) = mpsc::channel::<Append>(4096);
        let sync_shared = shared.clone();
        std::thread::Builder::new().name("wal-fsync".into()).spawn(move || commit::run(rx, sync_shared, active)).map_err(io(&cfg.dir))?;
        let drain = tokio::spawn(drain::run(store, shared.clone()));
        Ok((Wal { tx, shared, _lock: Arc::new(lock) }, drain))
    }

    /// Appends `batch`; returns once it is on disk and fsynced.
    #[tracing::instrument(name = "write-ahead log append", skip_all, fields(rows = batch.rows()))]
    pub async fn append(&self, batch: &Batch) -> Result<(), WriteError> {
        // Encoded as the drain will send it (RowBinary, see `record`); the spans the storage
        // join checks after the insert are listed now, while the rows are at hand.
        let payload = record::Record::encode(batch, self.shared.cfg.stored.is_some())
            .map_err(|e| WriteError::Storage(format!("cannot encode a batch for the write-ahead log: {e}")))?;
        let limit = self.shared.cfg.max_record_bytes.min(MAX_RECORD) as u64;
        if payload.len() as u64 > limit {
            // A record the log cannot hold would be read back as a torn tail: refuse it now.
            self.shared.metrics.reject("wal", "record_too_large", 1);
            tracing::warn!(bytes = payload.len(), limit, "request refused: its rows exceed a write-ahead log record");
            return Err(WriteError::TooLarge { bytes: payload.len() as u64, limit });
        }
        if self.shared.bytes.load(Ordering::Relaxed) + payload.len() as u64 > self.shared.cfg.max_bytes {
            self.shared.metrics.reject("wal", "full", 1);
            return Err(WriteError::Busy);
        }
        let (done, wait) = oneshot::channel();
        self.tx.try_send(Append { payload, done }).map_err(|_| WriteError::Busy)?;
        wait.await.map_err(|_| WriteError::Stopped)?
    }

    /// The collector is stopping: from now on the drain inserts what it reads at once.
    pub fn closing(&self) {
        self.shared.closing.store(true, Ordering::Release);
    }

    pub fn status(&self) -> WalStatus {
        let s = &self.shared;
        WalStatus {
            bytes: s.bytes.load(Ordering::Relaxed),
            max_bytes: s.cfg.max_bytes,
            pending_records: s.durable.load(Ordering::Relaxed).saturating_sub(s.stored.load(Ordering::Relaxed)),
            oldest_pending: s.oldest_unstored.lock().ok().and_then(|o| o.map(|t| t.elapsed())),
        }
    }
}

#[cfg(test)]
mod tests;
