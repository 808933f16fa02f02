//! The log's on-disk contract, against real files: torn tails, format versions, undecodable
//! records, LSNs after a crash right after a rotation, oversize records. ClickHouse is
//! unreachable in these tests (an outage): everything stays in the log, where it is checked.

use std::io::Write;

use flywheel_schemas::rows::SignalRow;

use super::segment::{self, Format, Item, segment_path};
use super::*;

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

/// Appends one record in the layout shared by versions 1 and 2 (no segment header: a
/// version-1 file when it is the first thing written).
fn write_raw(path: &Path, lsn: u64, payload: &[u8]) -> usize {
    let mut rec = Vec::new();
    segment::encode(lsn, payload, &mut rec);
    OpenOptions::new().append(true).create(true).open(path).unwrap().write_all(&rec).unwrap();
    rec.len()
}

fn read_all(path: &Path) -> (Vec<Item>, segment::Scan) {
    let mut out = Vec::new();
    let read = segment::read(path, 0, segment::Limit::NONE, &mut out).unwrap();
    (out, read)
}

fn lsns(items: &[Item]) -> Vec<u64> {
    items.iter().map(Item::lsn).collect()
}

/// A store on a port nothing listens on: ClickHouse is down for the whole test.
fn unreachable_store() -> Store {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    Store::new(&format!("http://127.0.0.1:{port}"), &Default::default()).unwrap()
}

#[test]
fn records_round_trip_and_a_torn_or_corrupt_tail_ends_the_log() {
    let dir = tempfile::tempdir().unwrap();
    drop(segment::create(dir.path(), 1).unwrap());
    let path = segment_path(dir.path(), 1);
    assert_eq!(segment::format(&path).unwrap(), Format::Versioned(segment::FORMAT_VERSION));
    for i in 1..=3 {
        write_raw(&path, i, &record::Record::encode(&batch(i as usize), false).unwrap());
    }
    let good_len = std::fs::metadata(&path).unwrap().len();
    let (items, read) = read_all(&path);
    assert_eq!((read.end, read.len), (good_len, good_len));
    assert_eq!(lsns(&items), vec![1, 2, 3]);
    let Item::Record { record, .. } = &items[1] else { panic!("decodable") };
    assert_eq!((record.rows(), record.projects()), (batch(2).rows(), &["p".to_string()][..]));

    // A record cut in the middle (crash during the write).
    let n = write_raw(&path, 4, &record::Record::encode(&batch(4), false).unwrap());
    OpenOptions::new().write(true).open(&path).unwrap().set_len(good_len + n as u64 / 2).unwrap();
    let (items, read) = read_all(&path);
    assert_eq!((read.end, read.len > good_len, items.len()), (good_len, true, 3));

    // A flipped byte in the last record: its checksum fails, it is not replayed as garbage.
    OpenOptions::new().write(true).open(&path).unwrap().set_len(good_len).unwrap();
    write_raw(&path, 4, &record::Record::encode(&batch(4), false).unwrap());
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 3;
    bytes[last] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();
    let (items, read) = read_all(&path);
    assert_eq!((read.end, read.len > good_len, items.len()), (good_len, true, 3));
}

#[test]
fn a_record_with_a_valid_checksum_that_does_not_decode_is_kept_not_cut() {
    let dir = tempfile::tempdir().unwrap();
    drop(segment::create(dir.path(), 1).unwrap());
    let path = segment_path(dir.path(), 1);
    write_raw(&path, 1, &record::Record::encode(&batch(1), false).unwrap());
    // What a build with another row layout might have written: intact, but not a `Batch` here.
    write_raw(&path, 2, &[0xff; 40]);
    write_raw(&path, 3, &record::Record::encode(&batch(3), false).unwrap());
    let (items, read) = read_all(&path);
    assert_eq!(read.end, read.len, "an undecodable record is not a torn tail");
    assert_eq!(lsns(&items), vec![1, 2, 3], "the records after it are read too");
    assert!(matches!(&items[1], Item::Undecodable { lsn: 2, raw, .. } if raw.len() == 16 + 40));
}

#[test]
fn a_segment_of_the_previous_format_without_header_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = segment_path(dir.path(), 5);
    for lsn in 5..=6 {
        write_raw(&path, lsn, &postcard::to_stdvec(&batch(lsn as usize)).unwrap());
    }
    assert_eq!(segment::format(&path).unwrap(), Format::V1);
    let (items, read) = read_all(&path);
    assert_eq!((lsns(&items), read.end), (vec![5, 6], read.len));
    assert!(items.iter().all(|i| matches!(i, Item::Record { .. })), "decoded, read as today's records");
}

#[test]
fn a_segment_of_a_newer_format_stops_the_start_up_instead_of_being_cut() {
    let dir = tempfile::tempdir().unwrap();
    let path = segment_path(dir.path(), 1);
    let mut header = segment::MAGIC.to_vec();
    header.extend_from_slice(&(segment::FORMAT_VERSION + 1).to_le_bytes());
    header.extend_from_slice(&[0; 4]);
    std::fs::write(&path, &header).unwrap();
    write_raw(&path, 1, b"a future encoding");
    let err = segment::format(&path).unwrap_err().to_string();
    assert!(err.contains("newer flywheel"), "{err}");
    let len = std::fs::metadata(&path).unwrap().len();
    let metrics = Arc::new(Metrics::default());
    assert!(recover(dir.path(), 0, &metrics).is_err());
    assert_eq!(std::fs::metadata(&path).unwrap().len(), len, "nothing is cut");
}

#[test]
fn checkpoints_survive_and_segments_sort_by_lsn() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(segment::read_checkpoint(dir.path()), 0);
    segment::write_checkpoint(dir.path(), 42).unwrap();
    assert_eq!(segment::read_checkpoint(dir.path()), 42);
    for lsn in [100u64, 7, 12] {
        File::create(segment_path(dir.path(), lsn)).unwrap();
    }
    let lsns: Vec<u64> = segment::segments(dir.path()).unwrap().into_iter().map(|(l, _)| l).collect();
    assert_eq!(lsns, vec![7, 12, 100]);
}

/// Issue 15, item 1: a crash right after a rotation leaves an empty last segment. The next
/// record must take the LSN that segment's name announces, not one after the checkpoint:
/// reusing LSNs of records still waiting would make the drain skip them as stored.
#[tokio::test]
async fn after_a_crash_right_after_a_rotation_new_records_never_reuse_waiting_lsns() {
    let dir = tempfile::tempdir().unwrap();
    // Records 1..=10 waiting in the first segment (ClickHouse down: checkpoint at 0), then the
    // next segment created, and the crash before any record is durable in it.
    let first = segment_path(dir.path(), 1);
    for lsn in 1..=10 {
        write_raw(&first, lsn, &postcard::to_stdvec(&batch(lsn as usize)).unwrap());
    }
    drop(segment::create(dir.path(), 11).unwrap());

    let metrics = Arc::new(Metrics::default());
    let (wal, drain) = Wal::open(WalConfig::new(dir.path()), unreachable_store(), metrics).unwrap();
    wal.append(&batch(11)).await.unwrap();
    assert_eq!(wal.status().pending_records, 11, "ten waiting records and the new one");
    drain.abort();
    drop(wal);

    let mut all = Vec::new();
    for (_, path) in segment::segments(dir.path()).unwrap() {
        let (items, _) = read_all(&path);
        all.extend(lsns(&items));
    }
    assert_eq!(all, (1..=11).collect::<Vec<_>>(), "every LSN once, in order");
}

/// The same crash when the torn first record of the new segment was cut: an empty file, or
/// a header without records, in the previous format or this one.
#[test]
fn an_empty_or_header_only_last_segment_still_announces_its_lsn() {
    for content in [&b""[..], &segment::MAGIC[..5]] {
        let dir = tempfile::tempdir().unwrap();
        let first = segment_path(dir.path(), 1);
        for lsn in 1..=4 {
            write_raw(&first, lsn, &postcard::to_stdvec(&batch(lsn as usize)).unwrap());
        }
        std::fs::write(segment_path(dir.path(), 5), content).unwrap();
        let metrics = Metrics::default();
        assert_eq!(recover(dir.path(), 0, &metrics).unwrap(), 4);
        // Only the empty segment goes (it is re-created by `open`); the waiting records stay.
        assert_eq!(segment::segments(dir.path()).unwrap().len(), 1);
    }
}

/// Issue 15, item 2: a batch larger than a record may be is refused, never acknowledged (read
/// back, it would look like a torn tail and be cut).
#[tokio::test]
async fn an_oversize_batch_is_refused_before_it_is_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = WalConfig { max_record_bytes: 1000, ..WalConfig::new(dir.path()) };
    let metrics = Arc::new(Metrics::default());
    let (wal, drain) = Wal::open(cfg, unreachable_store(), metrics.clone()).unwrap();
    let mut big = batch(1);
    big.signals[0].comment = "x".repeat(2000);
    let err = wal.append(&big).await.unwrap_err();
    assert!(matches!(err, WriteError::TooLarge { limit: 1000, .. }), "{err:?}");
    assert!(err.to_string().contains("send fewer"), "{err}");
    assert_eq!(metrics.rejected("wal", "record_too_large"), 1);
    wal.append(&batch(2)).await.unwrap();
    assert_eq!(wal.status().pending_records, 1, "only the record that fits was written");
    drain.abort();
}

/// A torn tail is cut at start-up, and its bytes are kept in quarantine rather than destroyed.
#[test]
fn a_torn_tail_is_cut_at_start_up_and_kept_in_quarantine() {
    let dir = tempfile::tempdir().unwrap();
    drop(segment::create(dir.path(), 1).unwrap());
    let path = segment_path(dir.path(), 1);
    write_raw(&path, 1, &record::Record::encode(&batch(1), false).unwrap());
    let good = std::fs::metadata(&path).unwrap().len();
    let n = write_raw(&path, 2, &record::Record::encode(&batch(2), false).unwrap());
    OpenOptions::new().write(true).open(&path).unwrap().set_len(good + n as u64 - 5).unwrap();
    let metrics = Metrics::default();
    assert_eq!(recover(dir.path(), 0, &metrics).unwrap(), 1);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), good);
    assert_eq!(metrics.rejected("wal", "torn_tail"), 1);
    let kept: Vec<_> = std::fs::read_dir(quarantine::dir(dir.path())).unwrap().collect();
    assert_eq!(kept.len(), 1);
}

/// A record written before `error_class` existed (format 2) decodes into today's rows, and its
/// calls get the class their type, message and status say — as ingest would read them now.
#[test]
fn records_of_format_2_decode_with_their_error_class() {
    use crate::normalize::{Draft, SpanIds, to_row};
    let now = time::OffsetDateTime::now_utc();
    let ids = SpanIds {
        trace_id: "ab".repeat(16),
        span_id: "cd".repeat(8),
        parent_span_id: String::new(),
        start: now,
        end: now,
        service_name: "app".into(),
    };
    let draft = Draft {
        error_type: Some("AI_APICallError".into()),
        error_message: Some("Error code: 429 - slow down".into()),
        ..Default::default()
    };
    let today = to_row("p", &ids, &draft, true, now);
    assert_eq!((today.error_class.as_str(), today.http_status), ("rate_limit", 429));
    let old: super::v2::LlmCallRowV2 = serde_json::from_value(serde_json::to_value(&today).unwrap()).unwrap();
    let old_batch = super::v2::BatchV2 { calls: vec![old], ..Default::default() };
    let payload = postcard::to_stdvec(&old_batch).unwrap();
    // Read as today's record: the rows encoded as RowBinary blocks, the join's reports listed.
    let expected = record::Record::encode(&Batch { calls: vec![today.clone()], ..Default::default() }, true).unwrap();
    for format in [Format::V1, Format::Versioned(2)] {
        let decoded = segment::decode(format, payload.clone()).unwrap();
        assert_eq!(decoded.payload(), expected, "{format:?}");
    }
    // Version 3 is today's rows in postcard, and is not read as version 2.
    let v3 = postcard::to_stdvec(&Batch { calls: vec![today.clone()], ..Default::default() }).unwrap();
    assert_eq!(segment::decode(Format::Versioned(3), v3).unwrap().payload(), expected);
    assert_eq!(segment::FORMAT_VERSION, 4);
}

/// The drain gathers a chunk over several reads, which may cross a segment; a chunk that
/// ClickHouse refuses is read again record by record, and that second read must reach the
/// chunk's last record across the same segments, or the records past the first segment's end
/// would be checkpointed as stored without being sent.
#[tokio::test]
async fn a_refused_chunk_read_again_reaches_its_last_record_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    // Every record in a segment of its own.
    let cfg = WalConfig { segment_bytes: 1, ..WalConfig::new(dir.path()) };
    let metrics = Arc::new(Metrics::default());
    let (wal, drain) = Wal::open(cfg, unreachable_store(), metrics).unwrap();
    drain.abort();
    for i in 1..=5 {
        wal.append(&batch(i)).await.unwrap();
    }
    assert!(segment::segments(dir.path()).unwrap().len() >= 5);
    let items = drain::read_again(&wal.shared, drain::Cursor::START, 0, 5, Duration::from_millis(1)).await;
    assert_eq!(lsns(&items), vec![1, 2, 3, 4, 5]);
    // From a later record, as after a checkpoint.
    let items = drain::read_again(&wal.shared, drain::Cursor::START, 2, 4, Duration::from_millis(1)).await;
    assert_eq!(lsns(&items), vec![3, 4]);
}

/// A read of `path` once the zeros after its records are laid up to `len` (the group commit
/// lays them after it acknowledges, a block at a time).
async fn laid(path: &Path, len: impl Fn(u64) -> u64) -> (Vec<Item>, segment::Scan) {
    for _ in 0..500 {
        let (items, read) = read_all(path);
        if read.len == len(read.end) {
            return (items, read);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the zeros after the records of {} are not laid", path.display());
}

/// The runway (`commit`): records are written over zeros laid ahead of them. The zeros read as
/// the end of the data, never as a torn tail; they are cut when a segment is done, before the
/// next one exists, and at start-up; what a crash left of a record written over them is kept in
/// quarantine without them.
#[tokio::test]
async fn zeros_laid_ahead_of_the_records_end_the_data_and_are_cut_when_the_segment_is_done() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = WalConfig { segment_bytes: 256 << 10, ..WalConfig::new(dir.path()) };
    let metrics = Arc::new(Metrics::default());
    let (wal, drain) = Wal::open(cfg, unreachable_store(), metrics.clone()).unwrap();
    drain.abort();
    let mut big = batch(1);
    big.signals[0].comment = "x".repeat(20_000);
    wal.append(&big).await.unwrap();
    let first = segment_path(dir.path(), 1);
    // Up to the segment's size.
    let (items, read) = laid(&first, |_| 256 << 10).await;
    assert_eq!(lsns(&items), vec![1]);
    assert!(read.end < read.len);
    // Past the segment's size: a new segment, and the first ends at its last record.
    let mut appended = 1;
    while segment::segments(dir.path()).unwrap().len() < 2 {
        wal.append(&big).await.unwrap();
        appended += 1;
    }
    let (items, read) = read_all(&first);
    assert_eq!(items.len(), appended - 1, "the last append went to the new segment");
    assert_eq!(read.end, read.len, "the zeros of a done segment are cut");
    let (_, active) = segment::segments(dir.path()).unwrap().pop().unwrap();
    let (items, read) = laid(&active, |_| 256 << 10).await;
    assert_eq!(lsns(&items), vec![appended as u64]);

    // A crash while a record was written over the zeros: half of it there.
    let mut torn = Vec::new();
    segment::encode(appended as u64 + 1, &record::Record::encode(&big, false).unwrap(), &mut torn);
    torn.truncate(torn.len() / 2);
    drop(wal);
    std::os::unix::fs::FileExt::write_all_at(&OpenOptions::new().write(true).open(&active).unwrap(), &torn, read.end).unwrap();
    let metrics = Metrics::default();
    assert_eq!(recover(dir.path(), 0, &metrics).unwrap(), appended as u64);
    assert_eq!(std::fs::metadata(&active).unwrap().len(), read.end, "cut after the last record");
    assert_eq!(metrics.rejected("wal", "torn_tail"), 1);
    let kept: Vec<_> = std::fs::read_dir(quarantine::dir(dir.path())).unwrap().map(|e| std::fs::read(e.unwrap().path()).unwrap()).collect();
    assert_eq!(kept, vec![torn], "the torn record kept, without the zeros after it");

    // A done segment that still ends in zeros, another after it: cut at start-up too, so that
    // its zeros do not count against the log's bound.
    let (_, read) = read_all(&first);
    let zeros = OpenOptions::new().write(true).open(&first).unwrap();
    zeros.set_len(read.end + (1 << 20)).unwrap();
    drop(zeros);
    assert_eq!(recover(dir.path(), 0, &Metrics::default()).unwrap(), appended as u64);
    assert_eq!(std::fs::metadata(&first).unwrap().len(), read.end, "the earlier segment's zeros cut");

    // Zeros alone after the last record (a crash with nothing in flight): cut, nothing kept.
    let dir = tempfile::tempdir().unwrap();
    let (wal, drain) = Wal::open(WalConfig::new(dir.path()), unreachable_store(), Arc::new(Metrics::default())).unwrap();
    drain.abort();
    wal.append(&batch(1)).await.unwrap();
    drop(wal);
    let path = segment_path(dir.path(), 1);
    let (_, read) = laid(&path, |end| end + commit::RUNWAY).await;
    let metrics = Metrics::default();
    assert_eq!(recover(dir.path(), 0, &metrics).unwrap(), 1);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), read.end);
    assert_eq!(metrics.rejected("wal", "torn_tail"), 0);
    assert!(!quarantine::dir(dir.path()).exists() || std::fs::read_dir(quarantine::dir(dir.path())).unwrap().next().is_none());
}
