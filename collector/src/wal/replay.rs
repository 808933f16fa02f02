//! Quarantined records, listed and replayed by an operator (`flywheel wal quarantine`,
//! `flywheel wal replay`).
//!
//! A record lands in `quarantine/` when ClickHouse refused its data while storing the rest
//! (`poison`), when this build could not decode it (`undecodable`), or when its bytes were cut
//! from a segment (`torn`). Once the cause is gone — a migration applied, a newer build, a
//! server setting raised — [`replay`] stores what can be stored now, through the drain's own
//! insert path (split by day, deduplicated by the tables' keys, so a replay twice counts once),
//! and moves each file it stored to `quarantine/replayed/`. A file that still fails stays where
//! it is, with the reason; nothing is deleted.

use std::path::{Path, PathBuf};

use flywheel_schemas::Store;

use super::record::{self, Record};
use super::segment::{self, Format, RECORD_HEADER};
use super::{WalError, io, quarantine};

/// Why a file is in quarantine, from its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Poison,
    Undecodable,
    Torn,
    Other,
}

impl Kind {
    fn of(name: &str) -> Kind {
        match name.split('-').next() {
            Some("poison") => Kind::Poison,
            Some("undecodable") => Kind::Undecodable,
            Some("torn") => Kind::Torn,
            _ => Kind::Other,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Poison => "poison",
            Kind::Undecodable => "undecodable",
            Kind::Torn => "torn",
            Kind::Other => "other",
        }
    }
}

/// One quarantined file and what this build reads in it.
#[derive(Debug)]
pub struct Entry {
    pub path: PathBuf,
    pub kind: Kind,
    pub bytes: u64,
    /// Whole records (checksum valid) found in the file.
    pub records: usize,
    /// Rows of the records this build decodes, and their projects.
    pub rows: usize,
    pub projects: Vec<String>,
    /// Why (part of) the file cannot be replayed by this build; `None` when all of it can.
    pub problem: Option<String>,
    contents: Vec<Record>,
}

impl Entry {
    /// Something in the file can be stored.
    pub fn replayable(&self) -> bool {
        self.rows > 0
    }
}

/// The outcome of replaying one file.
#[derive(Debug)]
pub struct Replayed {
    pub entry: Entry,
    /// `Ok(rows stored)` (the file moved to `replayed/`), or why it stays.
    pub result: Result<usize, String>,
}

/// The quarantined files of the log in `wal_dir`, oldest name first; an empty list when there
/// is no quarantine.
pub fn list(wal_dir: &Path) -> Result<Vec<Entry>, WalError> {
    let dir = quarantine::dir(wal_dir);
    if !dir.exists() {
        return Ok(Vec::new());
    }
    let mut paths = Vec::new();
    for entry in std::fs::read_dir(&dir).map_err(io(&dir))? {
        let path = entry.map_err(io(&dir))?.path();
        if path.is_file() && path.extension().is_some_and(|e| e == "bin") {
            paths.push(path);
        }
    }
    paths.sort();
    paths.into_iter().map(|p| read_entry(&p)).collect()
}

fn read_entry(path: &Path) -> Result<Entry, WalError> {
    let bytes = std::fs::read(path).map_err(io(path))?;
    let name = path.file_stem().and_then(|n| n.to_str()).unwrap_or_default();
    let kind = Kind::of(name);
    // A poison file names the format its payload was written in (`-v2`); the others were
    // written by builds whose payloads all decode as the current format does.
    let format = name
        .rsplit('-')
        .next()
        .and_then(|v| v.strip_prefix('v'))
        .and_then(|v| v.parse().ok())
        .map(Format::Versioned)
        .unwrap_or(Format::Versioned(segment::FORMAT_VERSION));
    let (records, rest) = parse_records(&bytes);
    let mut contents = Vec::new();
    let mut problems = Vec::new();
    for (lsn, payload) in &records {
        match segment::decode(format, payload.to_vec()) {
            Ok(r) => contents.push(r),
            Err((e, _)) => {
                problems.push(format!("record {lsn} does not decode with this build ({e}); a build that reads it can replay it"))
            }
        }
    }
    if rest > 0 {
        problems.push(format!(
            "{rest} bytes hold no whole record (cut from a segment: a write cut by a crash, never acknowledged, or corruption); they are kept for inspection"
        ));
    }
    let mut projects: Vec<String> = contents.iter().flat_map(|r| r.projects().iter().cloned()).collect();
    projects.sort();
    projects.dedup();
    Ok(Entry {
        path: path.to_path_buf(),
        kind,
        bytes: bytes.len() as u64,
        records: records.len(),
        rows: contents.iter().map(Record::rows).sum(),
        projects,
        problem: (!problems.is_empty()).then(|| problems.join("; ")),
        contents,
    })
}

/// The whole records at the start of `bytes` (LSN, payload) and how many bytes follow them.
fn parse_records(bytes: &[u8]) -> (Vec<(u64, &[u8])>, usize) {
    let mut records = Vec::new();
    let mut pos = 0usize;
    let header = RECORD_HEADER as usize;
    while pos + header <= bytes.len() {
        let word = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
        let (size, crc) = (word(pos) as usize, word(pos + 4));
        let lsn = u64::from_le_bytes(bytes[pos + 8..pos + 16].try_into().expect("8 bytes"));
        let Some(payload) = bytes.get(pos + header..pos + header + size) else { break };
        if segment::checksum(lsn, payload) != crc {
            break;
        }
        records.push((lsn, payload));
        pos += header + size;
    }
    (records, bytes.len() - pos)
}

/// Stores every replayable quarantined file of `wal_dir` (all of them, or those whose file
/// names contain one of `only`). With `dry_run` nothing is stored or moved.
pub async fn replay(wal_dir: &Path, store: &Store, only: &[String], dry_run: bool) -> Result<Vec<Replayed>, WalError> {
    let mut out = Vec::new();
    for entry in list(wal_dir)? {
        let name = entry.path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
        if !only.is_empty() && !only.iter().any(|o| name.contains(o.as_str())) {
            continue;
        }
        let result = if !entry.replayable() {
            Err(entry.problem.clone().unwrap_or_else(|| "no rows in it".into()))
        } else if dry_run {
            Ok(entry.rows)
        } else {
            match record::insert(store, &entry.contents).await {
                Err(e) => Err(format!("ClickHouse still refuses it: {e}")),
                // A file partly unreadable stays whole for inspection: its readable part is
                // stored (a second replay stores it again, deduplicated), the file is not moved.
                Ok(()) if entry.problem.is_some() => Ok(entry.rows),
                Ok(()) => move_replayed(wal_dir, &entry.path).map(|()| entry.rows).map_err(|e| e.to_string()),
            }
        };
        out.push(Replayed { entry, result });
    }
    Ok(out)
}

fn move_replayed(wal_dir: &Path, path: &Path) -> Result<(), WalError> {
    let dir = quarantine::dir(wal_dir).join("replayed");
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    let to = dir.join(path.file_name().unwrap_or_default());
    std::fs::rename(path, &to).map_err(io(path))?;
    segment::sync_dir(&dir)?;
    segment::sync_dir(&quarantine::dir(wal_dir))
}
