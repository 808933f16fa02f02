//! The write-ahead log: what the collector has acknowledged but ClickHouse may not have yet.
//!
//! Contract: [`Wal::append`] returns once the batch is on disk, fsynced; only then may a
//! receiver acknowledge. Concurrent appends share one fsync (group commit). A drain task reads
//! the log in order, inserts into ClickHouse in large batches, and records a checkpoint; on
//! restart, and whenever ClickHouse comes back, it replays what is past the checkpoint. Rows
//! replayed twice collapse on their ReplacingMergeTree keys, so nothing is counted twice.
//!
//! On disk: segment files `<first-lsn>.wal` (rotated at `segment_bytes`), each a sequence of
//! records `[len: u32 LE][crc32: u32 LE][lsn: u64 LE][payload: postcard(Batch)]`, and a
//! `checkpoint` file (the last LSN stored in ClickHouse). A torn tail — a record cut by a crash,
//! or whose checksum does not match — ends the log: it is truncated away, never replayed.
//! The log is bounded (`max_bytes`): when full, `append` fails with `Full` and nothing is
//! acknowledged that is not stored.

use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use flywheel_schemas::Store;
use tokio::sync::{Notify, mpsc, oneshot};

use crate::metrics::Metrics;
use crate::writer::{Batch, WriteError, insert};

const HEADER: usize = 16;
const MAX_RECORD: u32 = 256 << 20;

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
    /// Rows per ClickHouse insert when draining.
    pub drain_rows: usize,
}

impl WalConfig {
    pub fn new(dir: impl Into<PathBuf>) -> WalConfig {
        WalConfig { dir: dir.into(), max_bytes: 1 << 30, segment_bytes: 64 << 20, drain_rows: 50_000 }
    }
}

/// One record read back from the log.
#[derive(Debug)]
struct Record {
    lsn: u64,
    batch: Batch,
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

fn segment_path(dir: &Path, first_lsn: u64) -> PathBuf {
    dir.join(format!("{first_lsn:020}.wal"))
}

fn segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, WalError> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let path = entry.map_err(io(dir))?.path();
        if let Some(lsn) =
            path.file_name().and_then(|n| n.to_str()).and_then(|n| n.strip_suffix(".wal")).and_then(|n| n.parse::<u64>().ok())
        {
            out.push((lsn, path));
        }
    }
    out.sort();
    Ok(out)
}

fn read_checkpoint(dir: &Path) -> u64 {
    std::fs::read_to_string(dir.join("checkpoint")).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(0)
}

fn write_checkpoint(dir: &Path, lsn: u64) -> Result<(), WalError> {
    let tmp = dir.join("checkpoint.tmp");
    std::fs::write(&tmp, lsn.to_string()).map_err(io(&tmp))?;
    std::fs::rename(&tmp, dir.join("checkpoint")).map_err(io(dir))
}

/// Reads the records of a segment from `offset`; stops at the end or at a torn record, and
/// returns where the valid data ends.
fn read_records(path: &Path, offset: u64, limit_rows: usize, out: &mut Vec<Record>) -> Result<(u64, bool), WalError> {
    let mut file = File::open(path).map_err(io(path))?;
    let len = file.metadata().map_err(io(path))?.len();
    file.seek(SeekFrom::Start(offset)).map_err(io(path))?;
    let mut reader = BufReader::new(file);
    let mut pos = offset;
    let mut rows = 0;
    while pos + HEADER as u64 <= len && rows < limit_rows {
        let mut header = [0u8; HEADER];
        if reader.read_exact(&mut header).is_err() {
            return Ok((pos, true));
        }
        let size = u32::from_le_bytes(header[0..4].try_into().unwrap());
        let crc = u32::from_le_bytes(header[4..8].try_into().unwrap());
        let lsn = u64::from_le_bytes(header[8..16].try_into().unwrap());
        if size > MAX_RECORD || pos + HEADER as u64 + size as u64 > len {
            return Ok((pos, true));
        }
        let mut payload = vec![0u8; size as usize];
        if reader.read_exact(&mut payload).is_err() {
            return Ok((pos, true));
        }
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(&header[8..16]);
        hasher.update(&payload);
        if hasher.finalize() != crc {
            return Ok((pos, true));
        }
        let Ok(batch) = postcard::from_bytes::<Batch>(&payload) else { return Ok((pos, true)) };
        rows += batch.rows();
        out.push(Record { lsn, batch });
        pos += HEADER as u64 + size as u64;
    }
    Ok((pos, pos + HEADER as u64 > len && pos != len))
}

impl Wal {
    /// Opens (or creates) the log in `cfg.dir`, cuts a torn tail, and starts the fsync and drain
    /// tasks. Whatever is past the checkpoint is replayed to ClickHouse by the drain task.
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
        let checkpoint = read_checkpoint(&cfg.dir);
        let mut segs = segments(&cfg.dir)?;
        // Find the last valid LSN; truncate a torn tail of the last segment.
        let mut last_lsn = checkpoint;
        if let Some((_, path)) = segs.last() {
            let mut records = Vec::new();
            let (end, torn) = read_records(path, 0, usize::MAX, &mut records)?;
            if let Some(r) = records.last() {
                last_lsn = last_lsn.max(r.lsn);
            }
            let len = std::fs::metadata(path).map_err(io(path))?.len();
            if torn || end < len {
                tracing::warn!(segment = %path.display(), valid_bytes = end, dropped_bytes = len - end, "write-ahead log: torn tail cut (a crash during a write); it was never acknowledged");
                metrics.reject("wal", "torn_tail", 1);
                OpenOptions::new().write(true).open(path).and_then(|f| f.set_len(end)).map_err(io(path))?;
            }
        }
        if segs.is_empty() {
            let path = segment_path(&cfg.dir, last_lsn + 1);
            File::create(&path).map_err(io(&path))?;
            segs.push((last_lsn + 1, path));
        }
        let bytes: u64 = segs.iter().filter_map(|(_, p)| std::fs::metadata(p).ok()).map(|m| m.len()).sum();
        let shared = Arc::new(Shared {
            cfg: cfg.clone(),
            bytes: AtomicU64::new(bytes),
            durable: AtomicU64::new(last_lsn),
            stored: AtomicU64::new(checkpoint),
            appended: Notify::new(),
            oldest_unstored: Mutex::new((last_lsn > checkpoint).then(Instant::now)),
            metrics,
        });
        let (tx, rx) = mpsc::channel::<Append>(4096);
        let (active_lsn, active_path) = segs.last().cloned().expect("a segment exists");
        let sync_shared = shared.clone();
        std::thread::Builder::new()
            .name("wal-fsync".into())
            .spawn(move || fsync_loop(rx, sync_shared, active_lsn, active_path))
            .map_err(io(&cfg.dir))?;
        let drain = tokio::spawn(drain_loop(store, shared.clone()));
        Ok((Wal { tx, shared, _lock: Arc::new(lock) }, drain))
    }

    /// Appends `batch`; returns once it is on disk and fsynced.
    #[tracing::instrument(name = "write-ahead log append", skip_all, fields(rows = batch.rows()))]
    pub async fn append(&self, batch: &Batch) -> Result<(), WriteError> {
        let payload =
            postcard::to_stdvec(batch).map_err(|e| WriteError::Storage(format!("cannot encode a batch for the write-ahead log: {e}")))?;
        if self.shared.bytes.load(Ordering::Relaxed) + payload.len() as u64 > self.shared.cfg.max_bytes {
            self.shared.metrics.reject("wal", "full", 1);
            return Err(WriteError::Busy);
        }
        let (done, wait) = oneshot::channel();
        self.tx.try_send(Append { payload, done }).map_err(|_| WriteError::Busy)?;
        wait.await.map_err(|_| WriteError::Stopped)?
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

/// Writes queued appends, one fsync per group, then acknowledges the group.
fn fsync_loop(mut rx: mpsc::Receiver<Append>, shared: Arc<Shared>, mut segment_lsn: u64, mut path: PathBuf) {
    let open = |p: &Path| OpenOptions::new().append(true).create(true).open(p);
    let mut file = match open(&path) {
        Ok(f) => f,
        Err(e) => {
            tracing::error!(error = %e, path = %path.display(), "cannot open the write-ahead log");
            return;
        }
    };
    let mut segment_len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let mut lsn = shared.durable.load(Ordering::Relaxed);
    while let Some(first) = rx.blocking_recv() {
        let mut group = vec![first];
        while let Ok(more) = rx.try_recv() {
            group.push(more);
            if group.len() >= 1024 {
                break;
            }
        }
        if segment_len >= shared.cfg.segment_bytes {
            segment_lsn = lsn + 1;
            path = segment_path(&shared.cfg.dir, segment_lsn);
            match open(&path) {
                Ok(f) => {
                    file = f;
                    segment_len = 0;
                }
                Err(e) => {
                    fail(group, format!("cannot rotate the write-ahead log to {}: {e}", path.display()));
                    continue;
                }
            }
        }
        let mut buf = Vec::new();
        for a in &group {
            lsn += 1;
            let mut hasher = crc32fast::Hasher::new();
            hasher.update(&lsn.to_le_bytes());
            hasher.update(&a.payload);
            buf.extend_from_slice(&(a.payload.len() as u32).to_le_bytes());
            buf.extend_from_slice(&hasher.finalize().to_le_bytes());
            buf.extend_from_slice(&lsn.to_le_bytes());
            buf.extend_from_slice(&a.payload);
        }
        let result = file.write_all(&buf).and_then(|_| file.sync_data());
        match result {
            Ok(()) => {
                segment_len += buf.len() as u64;
                shared.bytes.fetch_add(buf.len() as u64, Ordering::Relaxed);
                shared.durable.store(lsn, Ordering::Release);
                {
                    let mut oldest = shared.oldest_unstored.lock().unwrap_or_else(|e| e.into_inner());
                    oldest.get_or_insert_with(Instant::now);
                }
                shared.appended.notify_one();
                for a in group {
                    let _ = a.done.send(Ok(()));
                }
            }
            Err(e) => {
                // A partial write is a torn tail: cut it so the next group starts clean.
                let _ = file.set_len(segment_len);
                lsn -= group.len() as u64;
                fail(group, format!("cannot write the write-ahead log {}: {e}", path.display()));
            }
        }
    }
    let _ = segment_lsn;
}

fn fail(group: Vec<Append>, message: String) {
    tracing::error!(%message, "write-ahead log append failed; the requests are refused");
    for a in group {
        let _ = a.done.send(Err(WriteError::Storage(message.clone())));
    }
}

/// Where the drain has read up to: a segment (by its first LSN) and a byte offset in it.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Cursor {
    segment: u64,
    offset: u64,
}

/// Reads the log past the checkpoint and stores it in ClickHouse, forever. A chunk that fails
/// to insert stays in memory and is retried with backoff (ClickHouse down or slow) until it
/// goes in; only then does the checkpoint move.
async fn drain_loop(store: Store, shared: Arc<Shared>) {
    let dir = shared.cfg.dir.clone();
    let mut cursor = Cursor { segment: 0, offset: 0 };
    let mut backoff = Duration::from_millis(200);
    loop {
        let stored = shared.stored.load(Ordering::Acquire);
        if stored >= shared.durable.load(Ordering::Acquire) {
            *shared.oldest_unstored.lock().unwrap_or_else(|e| e.into_inner()) = None;
            let notified = shared.appended.notified();
            if shared.durable.load(Ordering::Acquire) <= stored {
                notified.await;
            }
            continue;
        }
        let (dir2, limit, from) = (dir.clone(), shared.cfg.drain_rows, cursor);
        let read = tokio::task::spawn_blocking(move || read_chunk(&dir2, from, stored, limit)).await;
        let (records, next) = match read {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                tracing::error!(error = %e, "cannot read the write-ahead log; retrying");
                tokio::time::sleep(backoff).await;
                continue;
            }
            Err(e) => {
                tracing::error!(error = %e, "write-ahead log reader failed; retrying");
                tokio::time::sleep(backoff).await;
                continue;
            }
        };
        let Some(last) = records.last().map(|r| r.lsn) else {
            // Durable but not readable yet from this cursor (rotation in progress): look again.
            cursor = next;
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        };
        let first_lsn = records.first().map(|r| r.lsn).unwrap_or(0);
        let mut batch = Batch::default();
        for r in records {
            batch.append(r.batch);
        }
        let rows = batch.rows();
        tracing::debug!(first_lsn, last_lsn = last, rows, spans = batch.spans.len(), "draining the write-ahead log");
        loop {
            let started = Instant::now();
            match insert(&store, &batch).await {
                Ok(()) => {
                    shared.metrics.record_insert(rows, started.elapsed(), true);
                    backoff = Duration::from_millis(200);
                    break;
                }
                Err(e) => {
                    shared.metrics.record_insert(rows, started.elapsed(), false);
                    tracing::warn!(error = %e, rows, retry_in = ?backoff, "ClickHouse insert from the write-ahead log failed; the data stays in the log");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
        cursor = next;
        shared.stored.store(last, Ordering::Release);
        if let Err(e) = write_checkpoint(&dir, last) {
            tracing::warn!(error = %e, "cannot record the write-ahead log checkpoint; a restart will replay more (deduplicated)");
        }
        *shared.oldest_unstored.lock().unwrap_or_else(|e| e.into_inner()) =
            (shared.durable.load(Ordering::Acquire) > last).then(Instant::now);
        remove_stored_segments(&shared, last);
    }
}

/// The next records after `stored` from `cursor`, up to about `limit` rows, and the cursor
/// after them. Moves to the next segment when the current one is exhausted.
fn read_chunk(dir: &Path, cursor: Cursor, stored: u64, limit: usize) -> Result<(Vec<Record>, Cursor), WalError> {
    let segs = segments(dir)?;
    let mut cursor = cursor;
    // Start (or restart after deletions) at the segment that holds `stored + 1`.
    if !segs.iter().any(|(l, _)| *l == cursor.segment) {
        let at = segs.iter().rposition(|(l, _)| *l <= stored + 1).unwrap_or(0);
        cursor = Cursor { segment: segs.get(at).map(|(l, _)| *l).unwrap_or(0), offset: 0 };
    }
    let Some(i) = segs.iter().position(|(l, _)| *l == cursor.segment) else { return Ok((Vec::new(), cursor)) };
    let mut out = Vec::new();
    for (first, path) in &segs[i..] {
        let offset = if *first == cursor.segment { cursor.offset } else { 0 };
        let mut records = Vec::new();
        let (end, _) = read_records(path, offset, limit, &mut records)?;
        cursor = Cursor { segment: *first, offset: end };
        out.extend(records.into_iter().filter(|r| r.lsn > stored));
        if out.iter().map(|r| r.batch.rows()).sum::<usize>() >= limit || !out.is_empty() {
            break;
        }
    }
    Ok((out, cursor))
}

/// Deletes segments whose records are all stored (never the active one).
fn remove_stored_segments(shared: &Shared, stored: u64) {
    let Ok(segs) = segments(&shared.cfg.dir) else { return };
    for pair in segs.windows(2) {
        let ((_, path), (next_first, _)) = (&pair[0], &pair[1]);
        if *next_first <= stored + 1 {
            let len = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
            if std::fs::remove_file(path).is_ok() {
                shared.bytes.fetch_sub(len.min(shared.bytes.load(Ordering::Relaxed)), Ordering::Relaxed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flywheel_schemas::rows::SignalRow;

    fn batch(i: usize) -> Batch {
        let now = time::OffsetDateTime::now_utc();
        Batch {
            signals: vec![SignalRow {
                project_id: "p".into(),
                signal_id: format!("s{i}"),
                idempotency_key: String::new(),
                kind: "copy".into(),
                name: String::new(),
                source: "api".into(),
                timestamp: now,
                trace_id: String::new(),
                span_id: String::new(),
                session_id: "s".into(),
                message_id: String::new(),
                user_id: String::new(),
                feature: String::new(),
                value: Some(1.5),
                scale: None,
                comment: "é".into(),
                text: String::new(),
                edit_distance: None,
                edit_ratio: None,
                link_status: "session".into(),
                attributes: Default::default(),
                ingested_at: now,
            }],
            ..Default::default()
        }
    }

    fn write_raw(path: &Path, lsn: u64, b: &Batch) -> usize {
        let payload = postcard::to_stdvec(b).unwrap();
        let mut h = crc32fast::Hasher::new();
        h.update(&lsn.to_le_bytes());
        h.update(&payload);
        let mut f = OpenOptions::new().append(true).create(true).open(path).unwrap();
        let mut rec = Vec::new();
        rec.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        rec.extend_from_slice(&h.finalize().to_le_bytes());
        rec.extend_from_slice(&lsn.to_le_bytes());
        rec.extend_from_slice(&payload);
        f.write_all(&rec).unwrap();
        rec.len()
    }

    #[test]
    fn records_round_trip_and_a_torn_or_corrupt_tail_ends_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let path = segment_path(dir.path(), 1);
        for i in 1..=3 {
            write_raw(&path, i, &batch(i as usize));
        }
        let good_len = std::fs::metadata(&path).unwrap().len();
        let mut out = Vec::new();
        assert_eq!(read_records(&path, 0, usize::MAX, &mut out).unwrap(), (good_len, false));
        assert_eq!(out.iter().map(|r| r.lsn).collect::<Vec<_>>(), vec![1, 2, 3]);
        assert_eq!(out[1].batch.signals[0].signal_id, "s2");
        assert_eq!(out[1].batch.signals[0].comment, "é");

        // A record cut in the middle (crash during the write).
        let n = write_raw(&path, 4, &batch(4));
        OpenOptions::new().write(true).open(&path).unwrap().set_len(good_len + n as u64 / 2).unwrap();
        let mut out = Vec::new();
        let (end, torn) = read_records(&path, 0, usize::MAX, &mut out).unwrap();
        assert_eq!((end, torn, out.len()), (good_len, true, 3));

        // A flipped byte in the last record: its checksum fails, it is not replayed as garbage.
        OpenOptions::new().write(true).open(&path).unwrap().set_len(good_len).unwrap();
        write_raw(&path, 4, &batch(4));
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 3;
        bytes[last] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        let mut out = Vec::new();
        let (end, _) = read_records(&path, 0, usize::MAX, &mut out).unwrap();
        assert_eq!((end, out.len()), (good_len, 3));
    }

    #[test]
    fn checkpoints_survive_and_segments_sort_by_lsn() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_checkpoint(dir.path()), 0);
        write_checkpoint(dir.path(), 42).unwrap();
        assert_eq!(read_checkpoint(dir.path()), 42);
        for lsn in [100u64, 7, 12] {
            File::create(segment_path(dir.path(), lsn)).unwrap();
        }
        let lsns: Vec<u64> = segments(dir.path()).unwrap().into_iter().map(|(l, _)| l).collect();
        assert_eq!(lsns, vec![7, 12, 100]);
    }
}
