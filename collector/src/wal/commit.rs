//! Group commit: the one thread that writes the log. Queued appends are written together and
//! fsynced once; only then is each of them acknowledged.

use std::fs::File;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use tokio::sync::mpsc;

use super::segment;
use super::{Append, Shared};
use crate::writer::WriteError;

/// Writes queued appends into `file` (the segment of `segment_lsn`), one fsync per group,
/// rotating to a new segment when the current one is full.
pub(super) fn run(mut rx: mpsc::Receiver<Append>, shared: Arc<Shared>, mut file: File) {
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
            // The new segment is named after the LSN of its first record. Its creation is
            // durable (header, rename, directory) before any record goes in: a crash right
            // after leaves an empty segment whose name still says which LSN comes next.
            match segment::create(&shared.cfg.dir, lsn + 1) {
                Ok(f) => {
                    file = f;
                    segment_len = segment::SEGMENT_HEADER;
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
        match file.write_all(&buf).and_then(|_| file.sync_data()) {
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
