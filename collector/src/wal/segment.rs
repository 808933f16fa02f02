//! The log's files on disk: segments, their records, the checkpoint.
//!
//! A segment `<first-lsn>.wal` starts with a header — [`MAGIC`], the format version (u32 LE),
//! 4 reserved bytes — then holds records `[len: u32 LE][crc32: u32 LE][lsn: u64 LE][payload]`,
//! the checksum covering the LSN and the payload. A record header of zeros (LSNs start at 1)
//! ends the data: the active segment is written with zeros ahead of its records (the runway,
//! see [`super::commit`]), cut when the segment is done. The version names the payload's encoding
//! (version 4: the rows as RowBinary blocks, see [`super::record`]; version 3: `postcard(Batch)`
//! with `error_class`; version 2: the same without, see `v2`); a build that changes the rows
//! bumps it and keeps a decoder for the versions before, so an upgrade replays what the old
//! build acknowledged.
//!
//! Version 1 (builds before the header) wrote records from the first byte. It is recognised
//! because a version-1 file starts with a record length, at most [`MAX_RECORD`], while the
//! magic read as a length is far above it; its payload is encoded as in version 2.
//!
//! Files are created so that a crash leaves either nothing or a complete header: written under
//! a temporary name, fsynced, renamed, and the directory fsynced (a rename or a creation is
//! durable only once its directory is).

use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::record::Record;
use super::{WalError, io};
use crate::writer::Batch;

/// `"flywal\0\0"`: its first four bytes, read as a version-1 record length, are 0x77796c66,
/// far above [`MAX_RECORD`], so the two formats cannot be confused.
pub(super) const MAGIC: [u8; 8] = *b"flywal\0\0";
/// The format this build writes.
pub const FORMAT_VERSION: u32 = 4;
/// Length of the segment header (magic, version, reserved).
pub(super) const SEGMENT_HEADER: u64 = 16;
/// Length of a record header (length, checksum, LSN).
pub(super) const RECORD_HEADER: u64 = 16;
/// Largest record payload; `append` refuses a larger batch before anything is acknowledged.
pub const MAX_RECORD: u32 = 256 << 20;

/// The format of one segment file.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Format {
    /// No header: written by a build before the header existed.
    V1,
    /// The header of `version`, records after it.
    Versioned(u32),
    /// Shorter than a header: a creation cut by a crash (no record in it).
    Empty,
}

impl Format {
    /// Where records start.
    pub(super) fn data_start(self) -> u64 {
        match self {
            Format::V1 | Format::Empty => 0,
            Format::Versioned(_) => SEGMENT_HEADER,
        }
    }
}

pub(super) fn segment_path(dir: &Path, first_lsn: u64) -> PathBuf {
    dir.join(format!("{first_lsn:020}.wal"))
}

/// The segments of `dir`, by first LSN.
pub(super) fn segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, WalError> {
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

/// Makes the directory entry changes of `dir` (created, renamed, removed files) durable.
pub(super) fn sync_dir(dir: &Path) -> Result<(), WalError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

/// Creates the segment of `first_lsn` with its header, durably (file and directory entry),
/// and opens it for writing at given offsets (the group commit writes records over the zeros
/// it laid ahead of them).
pub(super) fn create(dir: &Path, first_lsn: u64) -> Result<File, WalError> {
    let path = segment_path(dir, first_lsn);
    let tmp = path.with_extension("wal.tmp");
    let mut header = Vec::with_capacity(SEGMENT_HEADER as usize);
    header.extend_from_slice(&MAGIC);
    header.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    header.extend_from_slice(&[0; 4]);
    let mut file = File::create(&tmp).map_err(io(&tmp))?;
    file.write_all(&header).and_then(|_| file.sync_all()).map_err(io(&tmp))?;
    drop(file);
    std::fs::rename(&tmp, &path).map_err(io(&path))?;
    sync_dir(dir)?;
    OpenOptions::new().write(true).open(&path).map_err(io(&path))
}

/// The format of the segment at `path`. A version newer than this build's is an error: its
/// records cannot be read, and must not be cut as garbage either.
pub(super) fn format(path: &Path) -> Result<Format, WalError> {
    let mut file = File::open(path).map_err(io(path))?;
    let mut head = [0u8; SEGMENT_HEADER as usize];
    let mut got = 0;
    while got < head.len() {
        match file.read(&mut head[got..]).map_err(io(path))? {
            0 => break,
            n => got += n,
        }
    }
    if got < head.len() {
        // Shorter than any record: a creation or a first write cut by a crash (the rename of a
        // new segment is durable only after its header is), or a file created by hand.
        return Ok(Format::Empty);
    }
    if u32::from_le_bytes(head[0..4].try_into().expect("4 bytes")) <= MAX_RECORD {
        return Ok(Format::V1);
    }
    if head[..8] != MAGIC {
        return Err(unreadable(path, "it starts with neither a record nor the segment header"));
    }
    let version = u32::from_le_bytes(head[8..12].try_into().expect("4 bytes"));
    if version > FORMAT_VERSION {
        return Err(unreadable(
            path,
            &format!(
                "it was written in format version {version} by a newer flywheel (this build reads up to {FORMAT_VERSION}); \
                 run that version until the log is drained, or move the directory away"
            ),
        ));
    }
    Ok(Format::Versioned(version))
}

fn unreadable(path: &Path, why: &str) -> WalError {
    WalError::Io { path: path.display().to_string(), source: std::io::Error::other(format!("cannot read this log segment: {why}")) }
}

/// Decodes a payload written in `format`; what does not decode is given back with the reason.
pub(super) fn decode(format: Format, payload: Vec<u8>) -> Result<Record, (String, Vec<u8>)> {
    let batch = match format {
        Format::Versioned(4) | Format::Empty => {
            return match Record::parse(&payload) {
                Ok(parsed) => Ok(Record::from_parsed(parsed, payload)),
                Err(e) => Err((e, payload)),
            };
        }
        // Versions 1 and 2 share the payload encoding, with the call rows of before
        // `error_class` (see `v2`); version 3 is `postcard(Batch)`. Their rows are encoded as
        // this version's blocks when read.
        Format::V1 | Format::Versioned(1..=2) => postcard::from_bytes::<super::v2::BatchV2>(&payload).map(Batch::from),
        Format::Versioned(3) => postcard::from_bytes::<Batch>(&payload),
        Format::Versioned(v) => return Err((format!("no decoder for format version {v}"), payload)),
    };
    match batch.map_err(|e| e.to_string()).and_then(|b| Record::from_batch(&b)) {
        Ok(record) => Ok(record),
        Err(e) => Err((e, payload)),
    }
}

/// One record of a segment: its rows, or — checksum valid, payload not decodable — its raw
/// bytes, which are kept aside (quarantine), never cut as a torn tail.
#[derive(Debug)]
pub(super) enum Item {
    Record { lsn: u64, record: Record },
    Undecodable { lsn: u64, raw: Vec<u8>, error: String },
}

impl Item {
    pub(super) fn lsn(&self) -> u64 {
        match self {
            Item::Record { lsn, .. } | Item::Undecodable { lsn, .. } => *lsn,
        }
    }

    /// Encoded bytes, as a read's [`Limit`] counts them.
    pub(super) fn bytes(&self) -> u64 {
        match self {
            Item::Record { record, .. } => record.payload().len() as u64,
            // `raw` keeps the record's header before its payload.
            Item::Undecodable { raw, .. } => (raw.len() as u64).saturating_sub(RECORD_HEADER),
        }
    }

    pub(super) fn rows(&self) -> usize {
        match self {
            Item::Record { record, .. } => record.rows(),
            Item::Undecodable { .. } => 1,
        }
    }
}

/// What a read of a segment found.
#[derive(Debug)]
pub(super) struct Scan {
    /// Where the last whole record ends.
    pub end: u64,
    /// The read stopped at its limit: records may follow `end` in this segment.
    pub limited: bool,
    /// The file's length when read. Past `end`, unless the read stopped at its limit: a record
    /// cut short or failing its checksum (a torn tail in the active segment, damage in any
    /// other), or zeros laid ahead of records (see [`super::commit`]).
    pub len: u64,
}

/// How much one read takes: records until either bound is reached (the record that crosses it
/// included).
#[derive(Debug, Clone, Copy)]
pub(super) struct Limit {
    pub rows: usize,
    /// Encoded bytes of the records' payloads.
    pub bytes: u64,
}

impl Limit {
    pub const NONE: Limit = Limit { rows: usize::MAX, bytes: u64::MAX };
}

/// Reads the records of the segment at `path` from `offset` (0: its first record), up to
/// `limit`, into `out`.
pub(super) fn read(path: &Path, offset: u64, limit: Limit, out: &mut Vec<Item>) -> Result<Scan, WalError> {
    let format = format(path)?;
    let mut file = File::open(path).map_err(io(path))?;
    let len = file.metadata().map_err(io(path))?.len();
    let mut pos = offset.max(format.data_start());
    if format == Format::Empty {
        return Ok(Scan { end: len, limited: false, len });
    }
    file.seek(SeekFrom::Start(pos)).map_err(io(path))?;
    let mut reader = BufReader::new(file);
    let (mut rows, mut bytes) = (0, 0u64);
    let open = |rows: usize, bytes: u64| rows < limit.rows && bytes < limit.bytes;
    while pos + RECORD_HEADER <= len && open(rows, bytes) {
        let mut header = [0u8; RECORD_HEADER as usize];
        if reader.read_exact(&mut header).is_err() {
            return Ok(Scan { end: pos, limited: false, len });
        }
        if header == [0; RECORD_HEADER as usize] {
            // The end of the data: zeros laid ahead of records not written yet.
            return Ok(Scan { end: pos, limited: false, len });
        }
        let size = u32::from_le_bytes(header[0..4].try_into().expect("4 bytes"));
        let crc = u32::from_le_bytes(header[4..8].try_into().expect("4 bytes"));
        let lsn = u64::from_le_bytes(header[8..16].try_into().expect("8 bytes"));
        if size > MAX_RECORD || pos + RECORD_HEADER + size as u64 > len {
            return Ok(Scan { end: pos, limited: false, len });
        }
        let mut payload = vec![0u8; size as usize];
        if reader.read_exact(&mut payload).is_err() {
            return Ok(Scan { end: pos, limited: false, len });
        }
        if checksum(lsn, &payload) != crc {
            return Ok(Scan { end: pos, limited: false, len });
        }
        let item = match decode(format, payload) {
            Ok(record) => Item::Record { lsn, record },
            Err((error, payload)) => {
                let mut raw = header.to_vec();
                raw.extend_from_slice(&payload);
                Item::Undecodable { lsn, raw, error }
            }
        };
        rows += item.rows();
        bytes += size as u64;
        out.push(item);
        pos += RECORD_HEADER + size as u64;
    }
    // Fewer bytes left than a record header: a tail cut in the header itself.
    Ok(Scan { end: pos, limited: !open(rows, bytes), len })
}

/// Whether the file at `path` ends with a record header's length of zeros (past a header):
/// the zeros laid ahead of records, or a record whose payload ends so (then a scan finds no
/// tail). One read of 16 bytes.
pub(super) fn ends_in_zeros(path: &Path) -> Result<bool, WalError> {
    use std::os::unix::fs::FileExt;
    let file = File::open(path).map_err(io(path))?;
    let len = file.metadata().map_err(io(path))?.len();
    if len < SEGMENT_HEADER + RECORD_HEADER {
        return Ok(false);
    }
    let mut tail = [0u8; RECORD_HEADER as usize];
    file.read_exact_at(&mut tail, len - RECORD_HEADER).map_err(io(path))?;
    Ok(tail == [0; RECORD_HEADER as usize])
}

pub(super) fn checksum(lsn: u64, payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&lsn.to_le_bytes());
    hasher.update(payload);
    hasher.finalize()
}

/// Appends the encoding of one record to `buf`.
pub(super) fn encode(lsn: u64, payload: &[u8], buf: &mut Vec<u8>) {
    buf.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    buf.extend_from_slice(&checksum(lsn, payload).to_le_bytes());
    buf.extend_from_slice(&lsn.to_le_bytes());
    buf.extend_from_slice(payload);
}

/// The last LSN stored in ClickHouse, 0 when none is recorded. An unreadable checkpoint (a
/// crash while it was written, on a file system that does not order data before renames) is
/// treated as none: the drain replays from the oldest segment, and the replay is deduplicated.
pub(super) fn read_checkpoint(dir: &Path) -> u64 {
    let path = dir.join("checkpoint");
    match std::fs::read_to_string(&path) {
        Ok(s) => s.trim().parse().unwrap_or_else(|_| {
            tracing::warn!(path = %path.display(), "write-ahead log checkpoint unreadable; replaying the whole log (deduplicated)");
            0
        }),
        Err(_) => 0,
    }
}

/// Records `lsn` as stored: written and fsynced under a temporary name, renamed over the
/// checkpoint, directory fsynced, so that a crash at any instant leaves the old or the new one.
pub(super) fn write_checkpoint(dir: &Path, lsn: u64) -> Result<(), WalError> {
    let tmp = dir.join("checkpoint.tmp");
    let mut file = File::create(&tmp).map_err(io(&tmp))?;
    file.write_all(lsn.to_string().as_bytes()).and_then(|_| file.sync_all()).map_err(io(&tmp))?;
    drop(file);
    std::fs::rename(&tmp, dir.join("checkpoint")).map_err(io(dir))?;
    sync_dir(dir)
}
