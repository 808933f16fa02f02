//! Group commit: the one thread that writes the log. Queued appends are written together and
//! fsynced once; only then is each of them acknowledged.
//!
//! The runway: the active segment is kept written with zeros ahead of its records, so that a
//! group is written over blocks the file already has and its fsync writes the data alone.
//! Appended at the end of the file instead, every fsync also wrote the file's new size and
//! block allocation — on ext4 without a journal a second synchronous write and wait per group,
//! on a journalled file system a journal commit — which made the fsync the collector's largest
//! single cost at small requests (docs/performance.md). The zeros read as the end of the data
//! (a record header of zeros, see [`super::segment`]) and are cut, durably, when the segment is
//! done, before the next one is created: only the active segment carries them, at most
//! [`RUNWAY`] bytes beyond what the log counts against its bound.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use tokio::sync::mpsc;

use super::segment;
use super::{Append, Shared};
use crate::writer::WriteError;

/// Zeros laid at a time, when fewer than [`RUNWAY_LOW`] are left ahead of the records: one
/// write and fsync of 8 MiB stands in for the size updates of a few hundred groups.
pub(super) const RUNWAY: u64 = 8 << 20;
const RUNWAY_LOW: u64 = 2 << 20;

/// The active segment: its file, where its records end, where its zeros end.
struct Active {
    file: File,
    len: u64,
    zeroed: u64,
}

impl Active {
    fn new(file: File) -> Active {
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        Active { file, len, zeroed: len }
    }

    /// Lays zeros ahead of the records when the runway is short, up to the segment's size. A
    /// failure (a full disk) is not an error: the records are then appended at the end of the
    /// file, as durable, at the cost of the size update in each fsync.
    fn lay_runway(&mut self, segment_bytes: u64) {
        if self.zeroed >= self.len + RUNWAY_LOW || self.len >= segment_bytes {
            return;
        }
        let target = (self.len + RUNWAY).min(segment_bytes);
        if target <= self.zeroed {
            return;
        }
        static ZEROS: [u8; 1 << 16] = [0; 1 << 16];
        let mut at = self.zeroed;
        let laid = (|| {
            while at < target {
                let n = (target - at).min(ZEROS.len() as u64);
                self.file.write_all_at(&ZEROS[..n as usize], at)?;
                at += n;
            }
            self.file.sync_data()
        })();
        match laid {
            Ok(()) => self.zeroed = target,
            Err(e) => {
                tracing::warn!(error = %e, "cannot lay zeros ahead of the write-ahead log's records; appending at the end of the file instead");
                // Some zeros may be there, not durably: the next records are written after the
                // last ones all the same, and their fsync makes whatever size the file has
                // durable with them, as for any append.
                self.zeroed = self.zeroed.max(self.len);
            }
        }
    }

    /// Cuts the zeros after the last record, durably: a segment followed by another ends at its
    /// last record.
    fn cut_runway(&mut self) -> std::io::Result<()> {
        if self.zeroed > self.len {
            self.file.set_len(self.len)?;
            self.file.sync_all()?;
            self.zeroed = self.len;
        }
        Ok(())
    }
}

/// Writes queued appends into `file` (the segment of `segment_lsn`), one fsync per group,
/// rotating to a new segment when the current one is full.
pub(super) fn run(mut rx: mpsc::Receiver<Append>, shared: Arc<Shared>, file: File) {
    let segment_bytes = shared.cfg.segment_bytes;
    let mut active = Active::new(file);
    let mut lsn = shared.durable.load(Ordering::Relaxed);
    while let Some(first) = rx.blocking_recv() {
        let mut group = vec![first];
        while let Ok(more) = rx.try_recv() {
            group.push(more);
            if group.len() >= 1024 {
                break;
            }
        }
        if active.len >= segment_bytes {
            if let Err(e) = active.cut_runway() {
                // The drain skips zeros at the end of a segment (`read_chunk`); the log's byte
                // count, which never counted them, drops by them too when the segment is
                // deleted: an undercount of at most one runway.
                tracing::warn!(error = %e, "cannot cut the zeros after the last record of a full write-ahead log segment");
            }
            // The new segment is named after the LSN of its first record. Its creation is
            // durable (header, rename, directory) before any record goes in: a crash right
            // after leaves an empty segment whose name still says which LSN comes next.
            match segment::create(&shared.cfg.dir, lsn + 1) {
                Ok(f) => {
                    active = Active::new(f);
                    shared.bytes.fetch_add(segment::SEGMENT_HEADER, Ordering::Relaxed);
                }
                Err(e) => {
                    fail(group, format!("cannot rotate the write-ahead log: {e}"));
                    continue;
                }
            }
        }
        let mut buf = Vec::new();
        for a in &group {
            lsn += 1;
            segment::encode(lsn, &a.payload, &mut buf);
        }
        match active.file.write_all_at(&buf, active.len).and_then(|_| active.file.sync_data()) {
            Ok(()) => {
                active.len += buf.len() as u64;
                active.zeroed = active.zeroed.max(active.len);
                shared.bytes.fetch_add(buf.len() as u64, Ordering::Relaxed);
                shared.durable.store(lsn, Ordering::Release);
                {
                    let mut oldest = shared.oldest_unstored.lock().unwrap_or_else(|e| e.into_inner());
                    oldest.get_or_insert_with(Instant::now);
                }
                shared.appended.notify_one();
                shared.metrics.wal_fsyncs.fetch_add(1, Ordering::Relaxed);
                shared.metrics.wal_appends.fetch_add(group.len() as u64, Ordering::Relaxed);
                for a in group {
                    let _ = a.done.send(Ok(()));
                }
                // After the acknowledgements: the appends queued meanwhile wait for it, once
                // per few hundred groups.
                active.lay_runway(segment_bytes);
            }
            Err(e) => {
                // A partial write is a torn tail: cut it (and the zeros after it) so the next
                // group starts clean.
                let _ = active.file.set_len(active.len);
                active.zeroed = active.len;
                lsn -= group.len() as u64;
                fail(group, format!("cannot write the write-ahead log in {}: {e}", shared.cfg.dir.display()));
            }
        }
    }
}

fn fail(group: Vec<Append>, message: String) {
    tracing::error!(%message, "write-ahead log append failed; the requests are refused");
    for a in group {
        let _ = a.done.send(Err(WriteError::Storage(message.clone())));
    }
}
