//! Records the drain cannot store, kept aside instead of destroyed.
//!
//! Three kinds land in `<wal_dir>/quarantine/`: a record whose checksum is valid but whose
//! payload this build cannot decode (`undecodable`), a record ClickHouse refuses for its data
//! while it stores everything else (`poison`), and bytes cut from the log because they cannot
//! be read as records (`torn`: a tail cut by a crash — never acknowledged — or corruption; the
//! zeros laid ahead of the records are not kept).
//! Each file is the raw bytes, named `<kind>-<lsn or segment>-<offset>.bin`, so that an
//! operator can inspect or replay them; each one is counted in `/metrics`
//! (`flywheel_rejected_total{signal="wal",reason=KIND}`) and logged as an error.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::segment::sync_dir;
use super::{WalError, io};

pub(super) fn dir(wal_dir: &Path) -> PathBuf {
    wal_dir.join("quarantine")
}

/// Writes `bytes` durably as `quarantine/<name>.bin` and returns its path.
pub(super) fn keep(wal_dir: &Path, name: &str, bytes: &[u8]) -> Result<PathBuf, WalError> {
    let dir = dir(wal_dir);
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    let path = dir.join(format!("{name}.bin"));
    let mut file = std::fs::File::create(&path).map_err(io(&path))?;
    file.write_all(bytes).and_then(|_| file.sync_all()).map_err(io(&path))?;
    sync_dir(&dir)?;
    Ok(path)
}

/// Keeps what follows the last whole record (`end`) of the segment `path` (first LSN `first`)
/// as `torn-<first>-<end>`, without the zeros laid ahead of the records: the path and the bytes
/// kept, or `None` when only zeros follow.
pub(super) fn keep_tail(wal_dir: &Path, first: u64, path: &Path, end: u64) -> Result<Option<(PathBuf, usize)>, WalError> {
    let bytes = std::fs::read(path).map_err(io(path))?;
    let tail = bytes.get(end as usize..).unwrap_or_default();
    let tail = &tail[..tail.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1)];
    if tail.is_empty() {
        return Ok(None);
    }
    Ok(Some((keep(wal_dir, &format!("torn-{first:020}-{end}"), tail)?, tail.len())))
}
