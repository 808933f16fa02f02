//! A log record as the drain sends it (format version 4): each table's rows already encoded
//! in ClickHouse's `RowBinary`, in blocks of one partition (day) each.
//!
//! Why: a record used to be `postcard(Batch)`, which the drain decoded into rows, re-encoded as
//! RowBinary and dropped — a fifth of the collector's CPU per span stored at 60 spans per
//! request, most of it allocating and freeing strings (docs/performance.md). Now the receiver
//! encodes the rows once, the way the insert sends them, and the drain concatenates bytes.
//!
//! Payload: `[blocks' bytes, one after the other][postcard(Header)][header length: u32 LE]`
//! (the header last, so that the blocks are encoded where they stay).
//! The header names each block's table, day and row count, the projects the record holds (for
//! the quarantine's messages) and the spans the storage join must look at once the record is
//! stored ([`Reported`]). A payload whose blocks do not add up to its length does not decode:
//! the drain quarantines it as undecodable, never sends a part of it.

use std::collections::BTreeMap;

use flywheel_schemas::rowbinary;
use flywheel_schemas::rows::{ContentRow, LlmCallRow, LogRecordRow, SignalRow, SpanRow};
use flywheel_schemas::{Store, StoreError};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::deadline::{INSERT, within};
use crate::pipeline::Reported;
use crate::writer::{Batch, InsertError, MAX_PARTITIONS_PER_INSERT, day};

/// The tables a record holds rows of, in the order they are inserted: content first and calls
/// after, so that a reader that sees a call can always resolve its hashes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Table {
    Contents,
    Spans,
    Calls,
    Logs,
    Signals,
}

impl Table {
    const ALL: [Table; 5] = [Table::Contents, Table::Spans, Table::Calls, Table::Logs, Table::Signals];

    fn name(self) -> &'static str {
        match self {
            Table::Contents => "contents",
            Table::Spans => "spans",
            Table::Calls => "llm_calls",
            Table::Logs => "log_records",
            Table::Signals => "signals",
        }
    }

    async fn insert(self, store: &Store, parts: &[&[u8]]) -> Result<(), StoreError> {
        let table = self.name();
        match self {
            Table::Contents => store.insert_row_binary::<ContentRow>(table, parts).await,
            Table::Spans => store.insert_row_binary::<SpanRow>(table, parts).await,
            Table::Calls => store.insert_row_binary::<LlmCallRow>(table, parts).await,
            Table::Logs => store.insert_row_binary::<LogRecordRow>(table, parts).await,
            Table::Signals => store.insert_row_binary::<SignalRow>(table, parts).await,
        }
    }
}

/// Rows of one table and one day, `len` bytes of the payload's data.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub(crate) struct Block {
    table: Table,
    day: i64,
    rows: u32,
    len: u32,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub(super) struct Header {
    blocks: Vec<Block>,
    projects: Vec<String>,
    reports: Vec<Reported>,
}

/// One decoded record: its header, and its payload holding the blocks.
#[derive(Debug)]
pub(crate) struct Record {
    header: Header,
    payload: Vec<u8>,
}

/// Appends encoded rows (`(day, bytes)`, in order) to `data` in blocks of one day each (rows of
/// a day keep their order).
fn blocks<'a>(table: Table, rows: &[(i64, &'a [u8])], blocks: &mut Vec<Block>, data: &mut Vec<u8>) -> Result<(), String> {
    let Some(&(first_day, _)) = rows.first() else { return Ok(()) };
    let mut block = |rows: &mut dyn Iterator<Item = &'a [u8]>, day: i64, data: &mut Vec<u8>| -> Result<(), String> {
        let (start, mut n) = (data.len(), 0u32);
        for row in rows {
            data.extend_from_slice(row);
            n += 1;
        }
        let len = u32::try_from(data.len() - start).map_err(|_| format!("{} rows of one day exceed 4 GB", table.name()))?;
        blocks.push(Block { table, day, rows: n, len });
        Ok(())
    };
    if rows.iter().all(|(d, _)| *d == first_day) {
        return block(&mut rows.iter().map(|r| r.1), first_day, data);
    }
    // A backfill: rows of many days, one block per day (ClickHouse refuses an insert block of
    // more than 100 partitions; the drain groups blocks by day).
    let mut by_day: BTreeMap<i64, Vec<&[u8]>> = BTreeMap::new();
    for &(d, row) in rows {
        by_day.entry(d).or_default().push(row);
    }
    for (d, rows) in by_day {
        block(&mut rows.into_iter(), d, data)?;
    }
    Ok(())
}

/// Per encoded row, its day and where its bytes end.
type Ends = Vec<(i64, usize)>;

/// Rows encoded one by one: their bytes in one buffer, and each row's day and end.
fn encode_rows<T: Serialize>(table: Table, rows: &[T], day_of: impl Fn(&T) -> OffsetDateTime) -> Result<(Vec<u8>, Ends), String> {
    let mut data = Vec::new();
    let mut ends = Vec::with_capacity(rows.len());
    for row in rows {
        rowbinary::encode(row, &mut data).map_err(|e| format!("{} row: {e}", table.name()))?;
        ends.push((day(day_of(row)), data.len()));
    }
    Ok((data, ends))
}

fn slices<'a>(data: &'a [u8], ends: &[(i64, usize)]) -> Vec<(i64, &'a [u8])> {
    let mut start = 0;
    ends.iter()
        .map(|&(d, end)| {
            let row = &data[start..end];
            start = end;
            (d, row)
        })
        .collect()
}

/// Appends the rows of one table to `data`, in blocks of one day each.
fn encode_table<T: Serialize>(
    table: Table,
    rows: &[T],
    day_of: impl Fn(&T) -> OffsetDateTime,
    out: &mut Vec<Block>,
    data: &mut Vec<u8>,
) -> Result<(), String> {
    let Some(first) = rows.first() else { return Ok(()) };
    let first_day = day(day_of(first));
    if rows.iter().any(|r| day(day_of(r)) != first_day) {
        let (encoded, ends) = encode_rows(table, rows, day_of)?;
        return blocks(table, &slices(&encoded, &ends), out, data);
    }
    // One day (nearly always): encoded in place, one block.
    let start = data.len();
    for row in rows {
        rowbinary::encode(row, data).map_err(|e| format!("{} row: {e}", table.name()))?;
    }
    let len = u32::try_from(data.len() - start).map_err(|_| format!("{} rows of one day exceed 4 GB", table.name()))?;
    out.push(Block { table, day: first_day, rows: rows.len() as u32, len });
    Ok(())
}

impl Record {
    /// The payload of `batch` as a record; `reports`: the spans the storage join is told of
    /// once the record is stored (see `pipeline::rejoin`), computed now.
    pub(crate) fn encode(batch: &Batch, reports: bool) -> Result<Vec<u8>, String> {
        let mut data = Vec::with_capacity(4096);
        let mut blocks = Vec::new();
        encode_table(Table::Contents, &batch.contents, |r| r.last_seen, &mut blocks, &mut data)?;
        let (typed, ends) = encode_rows(Table::Spans, &batch.spans, |r| r.start_time)?;
        let mut spans = slices(&typed, &ends);
        spans.extend(batch.encoded_spans.iter().flat_map(crate::writer::EncodedSpans::rows));
        self::blocks(Table::Spans, &spans, &mut blocks, &mut data)?;
        encode_table(Table::Calls, &batch.calls, |r| r.start_time, &mut blocks, &mut data)?;
        encode_table(Table::Logs, &batch.logs, |r| r.timestamp, &mut blocks, &mut data)?;
        encode_table(Table::Signals, &batch.signals, |r| r.timestamp, &mut blocks, &mut data)?;
        let data_len = data.len();
        let header = Header {
            blocks,
            projects: batch.projects().into_iter().map(str::to_string).collect(),
            reports: if reports { crate::pipeline::reported(batch) } else { Vec::new() },
        };
        // The header after the blocks: the blocks are written where they stay.
        let mut payload = postcard::to_extend(&header, data).map_err(|e| e.to_string())?;
        let head_len = (payload.len() - data_len) as u32;
        payload.extend_from_slice(&head_len.to_le_bytes());
        Ok(payload)
    }

    /// A record of the rows of an older format's record (decoded as a [`Batch`]).
    pub(crate) fn from_batch(batch: &Batch) -> Result<Record, String> {
        Record::decode(Record::encode(batch, true)?)
    }

    pub(crate) fn decode(payload: Vec<u8>) -> Result<Record, String> {
        let parsed = Record::parse(&payload)?;
        Ok(Record::from_parsed(parsed, payload))
    }

    /// The header of `payload`, and where its blocks end, if they add up to that length.
    pub(super) fn parse(payload: &[u8]) -> Result<(Header, usize), String> {
        let at = payload.len().checked_sub(4).ok_or("no header length")?;
        let head_len = u32::from_le_bytes(payload[at..].try_into().expect("4 bytes")) as usize;
        let data_end = at.checked_sub(head_len).ok_or("header cut short")?;
        let header: Header = postcard::from_bytes(&payload[data_end..at]).map_err(|e| format!("header: {e}"))?;
        let blocks: u64 = header.blocks.iter().map(|b| b.len as u64).sum();
        if blocks != data_end as u64 {
            return Err(format!("blocks of {blocks} bytes in {data_end} bytes of data"));
        }
        Ok((header, data_end))
    }

    pub(super) fn from_parsed((header, _): (Header, usize), payload: Vec<u8>) -> Record {
        Record { header, payload }
    }

    pub(crate) fn rows(&self) -> usize {
        self.header.blocks.iter().map(|b| b.rows as usize).sum()
    }

    pub(crate) fn projects(&self) -> &[String] {
        &self.header.projects
    }

    /// The encoded record, as it was read from the log (for the quarantine).
    pub(crate) fn payload(&self) -> &[u8] {
        &self.payload
    }

    pub(crate) fn take_reports(&mut self) -> Vec<Reported> {
        std::mem::take(&mut self.header.reports)
    }

    fn blocks(&self) -> impl Iterator<Item = (&Block, &[u8])> {
        let mut at = 0;
        self.header.blocks.iter().map(move |b| {
            let bytes = &self.payload[at..at + b.len as usize];
            at += b.len as usize;
            (b, bytes)
        })
    }
}

/// Inserts the rows of `records` — table by table, in groups of at most
/// [`MAX_PARTITIONS_PER_INSERT`] days — one INSERT per table and group whatever the number of
/// records: the blocks are sent as they lie in the records, never decoded.
#[tracing::instrument(name = "clickhouse insert", skip_all, fields(records = records.len(), rows = records.iter().map(Record::rows).sum::<usize>()))]
pub(crate) async fn insert(store: &Store, records: &[Record]) -> Result<(), InsertError> {
    for table in Table::ALL {
        let mut days: BTreeMap<i64, Vec<&[u8]>> = BTreeMap::new();
        for record in records {
            for (block, bytes) in record.blocks().filter(|(b, _)| b.table == table) {
                days.entry(block.day).or_default().push(bytes);
            }
        }
        insert_days(store, table, days).await?;
    }
    Ok(())
}

/// Inserts encoded rows of `table`, grouped by day, in INSERTs of at most
/// [`MAX_PARTITIONS_PER_INSERT`] days each.
pub(crate) async fn insert_days(store: &Store, table: Table, days: BTreeMap<i64, Vec<&[u8]>>) -> Result<(), InsertError> {
    let days: Vec<Vec<&[u8]>> = days.into_values().collect();
    for group in days.chunks(MAX_PARTITIONS_PER_INSERT) {
        let parts: Vec<&[u8]> = group.iter().flatten().copied().collect();
        within(store, INSERT, table.insert(store, &parts)).await.map_err(InsertError)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(trace: &str, start: OffsetDateTime) -> SpanRow {
        let mut row = crate::normalize::span::fixture_spans("otel-v2/agent.json")[0].row("p", start);
        row.trace_id = trace.into();
        row.start_time = start;
        row.end_time = start;
        row
    }

    /// A record's blocks are the rows as RowBinary, one block per table and day, and what does
    /// not add up is refused.
    #[test]
    fn rows_of_many_days_are_blocks_of_one_day_each() {
        let day0 = time::macros::datetime!(2026-12-01 12:00 UTC);
        let batch =
            Batch { spans: vec![span("a", day0), span("b", day0 + time::Duration::days(2)), span("c", day0)], ..Default::default() };
        let record = Record::decode(Record::encode(&batch, true).unwrap()).unwrap();
        assert_eq!(record.rows(), 3);
        assert_eq!(record.projects(), ["p"]);
        let blocks: Vec<(i64, u32)> = record.blocks().map(|(b, _)| (b.day, b.rows)).collect();
        assert_eq!(blocks, [(day(day0), 2), (day(day0) + 2, 1)]);
        let mut expected = Vec::new();
        for row in [&batch.spans[0], &batch.spans[2]] {
            rowbinary::encode(row, &mut expected).unwrap();
        }
        assert_eq!(record.blocks().next().unwrap().1, expected, "the block is the rows as the insert sends them");

        let mut cut = Record::encode(&batch, false).unwrap();
        cut.remove(0);
        assert!(Record::decode(cut).unwrap_err().contains("bytes of data"));
    }
}
