//! The drain: from the log to ClickHouse, in LSN order, forever.
//!
//! Contract: the checkpoint moves past a record only once the record is stored, or kept in
//! `quarantine/` and reported (see [`super::quarantine`]). A chunk that fails because
//! ClickHouse is away, slow or overloaded stays in memory and is retried with backoff. A chunk
//! that ClickHouse refuses for its data is split record by record, so that one poison record
//! (one project's) neither blocks nor takes down the records beside it (other projects'): the
//! others are stored, and the record that still fails alone — while ClickHouse answers — is
//! quarantined.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use flywheel_schemas::Store;

use super::record::{self, Record};
use super::segment::{self, Item};
use super::{Shared, WalError, quarantine};
use crate::writer::InsertError;

/// Attempts of a record alone, refused for its data each time, before it is quarantined.
const POISON_ATTEMPTS: u32 = 3;
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Where the drain has read up to: a segment (by its first LSN) and a byte offset in it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Cursor {
    segment: u64,
    offset: u64,
}

impl Cursor {
    pub(super) const START: Cursor = Cursor { segment: 0, offset: 0 };
}

pub(super) async fn run(store: Store, shared: Arc<Shared>) {
    let dir = shared.cfg.dir.clone();
    let mut cursor = Cursor::START;
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
        let from = cursor;
        let Some((items, next)) = gather(&shared, from, stored).await else {
            tokio::time::sleep(backoff).await;
            continue;
        };
        let Some(last) = items.last().map(Item::lsn) else {
            // Durable but not readable yet from this cursor (rotation in progress): look again.
            cursor = next;
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        };
        let mut records = Vec::with_capacity(items.len());
        for item in items {
            match item {
                Item::Record { lsn, record } => records.push((lsn, record)),
                Item::Undecodable { lsn, raw, error } => quarantine_undecodable(&shared, lsn, &raw, &error),
            }
        }
        if !store_chunk(&store, &shared, records, &mut backoff).await {
            // Refused for its data: read the chunk again (it is still in the log) to find the
            // record at fault. Undecodable records were quarantined on the first read.
            let again = read_again(&shared, from, stored, last, backoff).await;
            let records: Vec<(u64, Record)> = again
                .into_iter()
                .filter_map(|item| match item {
                    Item::Record { lsn, record } if lsn <= last => Some((lsn, record)),
                    _ => None,
                })
                .collect();
            store_one_by_one(&store, &shared, records, &mut backoff).await;
        }
        cursor = next;
        shared.stored.store(last, Ordering::Release);
        if let Err(e) = segment::write_checkpoint(&dir, last) {
            tracing::warn!(error = %e, "cannot record the write-ahead log checkpoint; a restart will replay more (deduplicated)");
        }
        *shared.oldest_unstored.lock().unwrap_or_else(|e| e.into_inner()) =
            (shared.durable.load(Ordering::Acquire) > last).then(Instant::now);
        remove_stored_segments(&shared, last);
    }
}

/// How often a lingering drain looks for records appended since its last read.
const LINGER_TICK: Duration = Duration::from_millis(50);

/// A chunk to insert: what the log holds from `from`, read on for as long as the chunk is not
/// full and its first record has waited less than `insert_linger` (unless the collector is
/// stopping or the log is a quarter full).
///
/// Why linger: ClickHouse's cost is per insert and per part more than per row — every insert
/// writes a part per table and day that merges rewrite later — so it asks for inserts of
/// thousands of rows at most about once a second. Replaying one run's chunks into the local
/// engine, 6 chunks per insert cost a third of the CPU of one chunk per insert
/// (docs/performance.md). A full chunk (`drain_rows`, `drain_bytes`) goes at once, so the
/// linger never caps what the drain stores; it only bounds how long a record waits to become
/// queryable when traffic is light.
async fn gather(shared: &Arc<Shared>, from: Cursor, stored: u64) -> Option<(Vec<Item>, Cursor)> {
    let limit = segment::Limit { rows: shared.cfg.drain_rows, bytes: shared.cfg.drain_bytes };
    let (mut items, mut next, mut full) = read_off_thread(shared, from, stored, limit).await?;
    let started = Instant::now();
    if !items.is_empty() {
        // Waiting from now on, at the latest (`flywheel_wal_oldest_pending_seconds`).
        shared.oldest_unstored.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert(started);
    }
    // Never linger while the log fills: a request refused for a full log (429) costs more than
    // a small insert.
    let filling = || shared.bytes.load(Ordering::Relaxed) >= shared.cfg.max_bytes / 4;
    while !full && !items.is_empty() && !shared.closing.load(Ordering::Acquire) && !filling() {
        let Some(left) = shared.cfg.insert_linger.checked_sub(started.elapsed()).filter(|d| !d.is_zero()) else { break };
        tokio::time::sleep(left.min(LINGER_TICK)).await;
        let last = items.last().map(Item::lsn).unwrap_or(stored);
        if shared.durable.load(Ordering::Acquire) <= last {
            continue;
        }
        let rows: usize = items.iter().map(Item::rows).sum();
        let bytes: u64 = items.iter().map(Item::bytes).sum();
        let rest = segment::Limit { rows: limit.rows.saturating_sub(rows), bytes: limit.bytes.saturating_sub(bytes) };
        // Read on from where the last read stopped: nothing is read twice. A failed read ends
        // the gathering; what was read goes as it is.
        let Some((more, after, limited)) = read_off_thread(shared, next, last, rest).await else { break };
        items.extend(more);
        (next, full) = (after, limited);
    }
    Some((items, next))
}

/// The records of a chunk read again, from `from` up to `last`: one read may stop at the end
/// of a segment or at the limit where the gathering read on, so this reads until `last`.
pub(super) async fn read_again(shared: &Arc<Shared>, from: Cursor, stored: u64, last: u64, backoff: Duration) -> Vec<Item> {
    let limit = segment::Limit { rows: shared.cfg.drain_rows, bytes: shared.cfg.drain_bytes };
    let (mut items, mut cursor, mut after) = (Vec::new(), from, stored);
    while after < last {
        let Some((more, next, _)) = read_off_thread(shared, cursor, after, limit).await else {
            tokio::time::sleep(backoff).await;
            continue;
        };
        match more.last().map(Item::lsn) {
            Some(lsn) => after = lsn,
            // Nothing more to read although `last` was read before: the segments moved under
            // us (cannot happen while the drain owns the checkpoint); never spin on it.
            None if cursor == next => {
                tracing::error!(
                    from = after,
                    to = last,
                    "write-ahead log records read before cannot be read again; the chunk is stored without them"
                );
                break;
            }
            None => {}
        }
        items.extend(more);
        cursor = next;
    }
    items
}

/// [`read_chunk`] on the blocking pool, within `limit`; `None` (logged) when the log cannot be
/// read now. The flag: the read stopped at the limit.
async fn read_off_thread(shared: &Arc<Shared>, from: Cursor, stored: u64, limit: segment::Limit) -> Option<(Vec<Item>, Cursor, bool)> {
    let (dir, metrics) = (shared.cfg.dir.clone(), shared.metrics.clone());
    match tokio::task::spawn_blocking(move || read_chunk(&dir, from, stored, limit, &metrics)).await {
        Ok(Ok(read)) => Some(read),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "cannot read the write-ahead log; retrying");
            None
        }
        Err(e) => {
            tracing::error!(error = %e, "write-ahead log reader failed; retrying");
            None
        }
    }
}

/// Stores `records` (in LSN order) in one insert per table, retried while ClickHouse is away;
/// `false` when ClickHouse refuses the rows themselves ([`store_one_by_one`] then finds the
/// record at fault). The records' bytes are sent as read: a chunk is held once, encoded.
async fn store_chunk(store: &Store, shared: &Shared, records: Vec<(u64, Record)>, backoff: &mut Duration) -> bool {
    let Some((first_lsn, last_lsn)) = records.first().zip(records.last()).map(|(f, l)| (f.0, l.0)) else { return true };
    let mut records: Vec<Record> = records.into_iter().map(|(_, r)| r).collect();
    let rows: usize = records.iter().map(Record::rows).sum();
    tracing::debug!(first_lsn, last_lsn, rows, "draining the write-ahead log");
    loop {
        match timed_insert(store, shared, &mut records).await {
            Ok(()) => {
                *backoff = Duration::from_millis(200);
                return true;
            }
            Err(e) if e.is_data_error() => {
                tracing::warn!(error = %e, first_lsn, last_lsn, "ClickHouse refused the data of a write-ahead log chunk; storing its records one by one to find the one at fault");
                return false;
            }
            Err(e) => {
                tracing::warn!(error = %e, rows, retry_in = ?backoff, "ClickHouse insert from the write-ahead log failed; the data stays in the log");
                tokio::time::sleep(*backoff).await;
                *backoff = (*backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// Stores `records` one insert each; a record ClickHouse keeps refusing alone is quarantined.
async fn store_one_by_one(store: &Store, shared: &Shared, records: Vec<(u64, Record)>, backoff: &mut Duration) {
    for (lsn, record) in records {
        let mut one = [record];
        let mut refused = 0;
        loop {
            match timed_insert(store, shared, &mut one).await {
                Ok(()) => {
                    *backoff = Duration::from_millis(200);
                    break;
                }
                Err(e) if e.is_data_error() => {
                    refused += 1;
                    // Poison only when ClickHouse otherwise answers: a refusal during trouble
                    // on the server is retried like any outage.
                    if refused >= POISON_ATTEMPTS && crate::deadline::within(store, crate::deadline::PING, store.ping()).await.is_ok() {
                        quarantine_poison(shared, lsn, &one[0], &e);
                        break;
                    }
                    tokio::time::sleep(*backoff).await;
                    *backoff = (*backoff * 2).min(MAX_BACKOFF);
                }
                Err(e) => {
                    tracing::warn!(error = %e, lsn, retry_in = ?backoff, "ClickHouse insert from the write-ahead log failed; the data stays in the log");
                    tokio::time::sleep(*backoff).await;
                    *backoff = (*backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }
}

/// Inserts `records`; once stored, the storage join is told of their spans (each record's
/// reports are taken then, so a retry after a success never reports twice).
async fn timed_insert(store: &Store, shared: &Shared, records: &mut [Record]) -> Result<(), InsertError> {
    let started = Instant::now();
    let rows = records.iter().map(Record::rows).sum();
    let result = record::insert(store, records).await;
    shared.metrics.record_insert(rows, started.elapsed(), result.is_ok());
    if let (Ok(()), Some(stored)) = (&result, &shared.cfg.stored) {
        stored.report_spans(records.iter_mut().flat_map(Record::take_reports).collect());
    }
    result
}

fn quarantine_undecodable(shared: &Shared, lsn: u64, raw: &[u8], error: &str) {
    shared.metrics.reject("wal", "undecodable", 1);
    match quarantine::keep(&shared.cfg.dir, &format!("undecodable-lsn{lsn:020}"), raw) {
        Ok(path) => {
            tracing::error!(lsn, %error, kept = %path.display(), "write-ahead log record has a valid checksum but cannot be decoded by this build; kept in quarantine, not stored")
        }
        Err(e) => {
            tracing::error!(lsn, %error, quarantine_error = %e, "write-ahead log record cannot be decoded and cannot be kept in quarantine either")
        }
    }
}

fn quarantine_poison(shared: &Shared, lsn: u64, record: &Record, error: &InsertError) {
    shared.metrics.reject("wal", "poison", 1);
    let projects = record.projects();
    let mut raw = Vec::new();
    segment::encode(lsn, record.payload(), &mut raw);
    let name = format!("poison-lsn{lsn:020}-v{}", segment::FORMAT_VERSION);
    match quarantine::keep(&shared.cfg.dir, &name, &raw) {
        Ok(path) => {
            tracing::error!(lsn, projects = ?projects, rows = record.rows(), %error, kept = %path.display(), "ClickHouse refuses this write-ahead log record while it stores the others; kept in quarantine, not stored")
        }
        Err(e) => {
            tracing::error!(lsn, projects = ?projects, %error, quarantine_error = %e, "poison write-ahead log record cannot be kept in quarantine")
        }
    }
}

/// The next records after `stored` from `cursor`, up to about `limit` rows, and the cursor
/// after them. Moves to the next segment only when the current one is read to its end; bytes
/// that cannot be read as records in a segment that is no longer written (corruption) are
/// quarantined, never skipped silently.
fn read_chunk(
    dir: &Path,
    cursor: Cursor,
    stored: u64,
    limit: segment::Limit,
    metrics: &crate::metrics::Metrics,
) -> Result<(Vec<Item>, Cursor, bool), WalError> {
    let segs = segment::segments(dir)?;
    let mut cursor = cursor;
    // Start (or restart after deletions) at the segment that holds `stored + 1`.
    if !segs.iter().any(|(l, _)| *l == cursor.segment) {
        let at = segs.iter().rposition(|(l, _)| *l <= stored + 1).unwrap_or(0);
        cursor = Cursor { segment: segs.get(at).map(|(l, _)| *l).unwrap_or(0), offset: 0 };
    }
    let Some(i) = segs.iter().position(|(l, _)| *l == cursor.segment) else { return Ok((Vec::new(), cursor, false)) };
    let (mut out, mut limited) = (Vec::new(), false);
    for (k, (first, path)) in segs.iter().enumerate().skip(i) {
        let offset = if *first == cursor.segment { cursor.offset } else { 0 };
        let mut items = Vec::new();
        let read = segment::read(path, offset, limit, &mut items)?;
        cursor = Cursor { segment: *first, offset: read.end };
        limited = read.limited;
        out.extend(items.into_iter().filter(|r| r.lsn() > stored));
        let is_last = k + 1 == segs.len();
        if !is_last && !read.limited && read.end < read.len {
            // A later segment exists, so this one is complete and ends at its last record (its
            // zeros are cut before the next segment is created): what does not read is damage.
            // Zeros alone are a cut that did not happen (a failed truncation), not data.
            match quarantine::keep_tail(dir, *first, path, read.end)? {
                Some((kept, bytes)) => {
                    metrics.reject("wal", "torn", 1);
                    tracing::error!(segment = %path.display(), offset = read.end, bytes, kept = %kept.display(), "write-ahead log segment damaged: unreadable bytes kept in quarantine");
                }
                None => {
                    tracing::info!(segment = %path.display(), offset = read.end, "write-ahead log segment ends with zeros laid ahead of records; skipped")
                }
            }
            cursor = Cursor { segment: *first, offset: read.len };
        }
        // Stopped at the limit inside this segment: its next records come first, whether or
        // not this read found any not stored yet (after a restart, a segment's head often holds
        // only stored ones) — moving on would skip the rest of the segment.
        if !out.is_empty() || read.limited || read.end < read.len && is_last {
            break;
        }
    }
    Ok((out, cursor, limited))
}

/// Deletes segments whose records are all stored (never the active one).
fn remove_stored_segments(shared: &Shared, stored: u64) {
    let Ok(segs) = segment::segments(&shared.cfg.dir) else { return };
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
