//! The join in storage: a model call and its GenAI log events that reached different
//! collectors (behind a load balancer), or one collector after its [`super::JoinCache`] let
//! them go, are joined by whichever side is stored second.
//!
//! After every insert (from the write-ahead log, or straight), the writer reports the spans it
//! stored that may lack their other side ([`Stored::report`]): GenAI content events, and calls
//! stored without input or output messages. The task below reads, for those spans, the
//! current `llm_calls` row and the content events from ClickHouse; where the events complete
//! the row (it would change), it writes the call again, completed as the cache would have
//! completed it — `llm_calls` is a ReplacingMergeTree, readers read it `FINAL`.
//!
//! Each side reads the other only once its own rows are stored: whatever the order, the second
//! to be stored sees the first (two that both do write the same row). Deterministic and
//! idempotent, so any number of collectors run it against one ClickHouse without coordinating.
//! Its memory is a bounded queue of span ids; reports past it are dropped and counted
//! (`flywheel_rejoin_spans_total{outcome="dropped"}`): those calls stay as first stored, with
//! their events in `log_records`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use flywheel_schemas::queries::{self, SpanKey};
use flywheel_schemas::rows::{LlmCallRow, LogRecordRow};
use flywheel_schemas::{Store, StoreError};
use time::OffsetDateTime;
use tokio::sync::mpsc;

use super::join::LogParts;
use super::*;
use crate::normalize::genai::{LOG_EVENTS, read_stored_event};

/// Reports (one per insert) waiting to be checked; past it they are dropped and counted.
const QUEUE: usize = 1024;
/// Spans read per query.
const CHUNK: usize = 500;
/// Attempts at one round while ClickHouse fails, a second apart and more.
const ATTEMPTS: u32 = 5;

/// A stored span that may lack its other side: a call, or a call's content event.
#[derive(Debug, Clone, PartialEq)]
pub struct Reported {
    project: String,
    span: SpanKey,
    /// When it happened (the call's start, the event's time): bounds the partitions read.
    at: OffsetDateTime,
}

/// Where the writer reports what it stored ([`Stored::channel`]).
#[derive(Clone)]
pub struct Stored {
    tx: mpsc::Sender<Vec<Reported>>,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Stored {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stored").field("waiting", &(QUEUE - self.tx.capacity())).finish()
    }
}

/// The reports, for [`Pipeline::rejoin_forever`].
pub struct Reports(mpsc::Receiver<Vec<Reported>>);

impl Stored {
    pub fn channel(metrics: Arc<Metrics>) -> (Stored, Reports) {
        let (tx, rx) = mpsc::channel(QUEUE);
        (Stored { tx, metrics }, Reports(rx))
    }

    /// Reports the spans of `batch`, just stored, that may lack their other side.
    pub fn report(&self, batch: &Batch) {
        let spans = reported(batch);
        if spans.is_empty() {
            return;
        }
        let n = spans.len() as u64;
        match self.tx.try_send(spans) {
            Ok(()) => {
                self.metrics.rejoin_reported.fetch_add(n, Relaxed);
            }
            Err(_) => {
                self.metrics.rejoin_dropped.fetch_add(n, Relaxed);
                tracing::warn!(spans = n, "the storage join is behind: these calls stay as first stored (their log events are kept)");
            }
        }
    }
}

/// Content events, and calls stored without their messages (their content may come as events).
fn reported(batch: &Batch) -> Vec<Reported> {
    let empty = |json: &str| json.is_empty() || json == "[]";
    let events = batch
        .logs
        .iter()
        .filter(|l| !l.trace_id.is_empty() && !l.span_id.is_empty() && LOG_EVENTS.contains(&l.event_name.as_str()))
        .map(|l| Reported { project: l.project_id.clone(), span: (l.trace_id.clone(), l.span_id.clone()), at: l.timestamp });
    let calls = batch.calls.iter().filter(|c| empty(&c.input_messages) || empty(&c.output_messages)).map(|c| Reported {
        project: c.project_id.clone(),
        span: (c.trace_id.clone(), c.span_id.clone()),
        at: c.start_time,
    });
    let mut spans: Vec<Reported> = events.chain(calls).collect();
    spans.sort_by(|a, b| (&a.project, &a.span).cmp(&(&b.project, &b.span)));
    spans.dedup_by(|a, b| a.project == b.project && a.span == b.span);
    spans
}

#[derive(Debug, thiserror::Error)]
pub enum RejoinError {
    #[error("reading calls and their log events: {0}")]
    Read(#[from] StoreError),
    #[error("writing the joined calls: {0}")]
    Write(#[from] WriteError),
}

impl Pipeline {
    /// Joins reported spans with their other side, round after round, until the writer stops.
    pub async fn rejoin_forever(&self, store: Store, mut reports: Reports) {
        while let Some(first) = reports.0.recv().await {
            let mut spans = first;
            while spans.len() < 4 * CHUNK
                && let Ok(more) = reports.0.try_recv()
            {
                spans.extend(more);
            }
            let mut wait = Duration::from_secs(1);
            for attempt in 1..=ATTEMPTS {
                match self.rejoin(&store, &spans).await {
                    Ok(n) => {
                        if n > 0 {
                            tracing::debug!(calls = n, "calls joined with their log events in storage");
                        }
                        break;
                    }
                    Err(e) if attempt == ATTEMPTS => {
                        self.metrics.rejoin_failed.fetch_add(spans.len() as u64, Relaxed);
                        tracing::warn!(error = %e, spans = spans.len(), "the storage join failed; these calls stay as first stored (their log events are kept)");
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, attempt, "the storage join failed; retrying");
                        tokio::time::sleep(wait).await;
                        wait *= 2;
                    }
                }
            }
        }
    }

    /// One round: the calls of `spans` whose events were stored after them, written again
    /// completed. Returns how many.
    pub async fn rejoin(&self, store: &Store, spans: &[Reported]) -> Result<u64, RejoinError> {
        let mut by_project: BTreeMap<&str, Vec<&Reported>> = BTreeMap::new();
        for s in spans {
            by_project.entry(&s.project).or_default().push(s);
        }
        let mut joined = 0;
        for (project, spans) in by_project {
            for chunk in spans.chunks(CHUNK) {
                let keys: Vec<SpanKey> = chunk.iter().map(|s| s.span.clone()).collect();
                // Events are dated by their producer, near their call: a day either side.
                let lo = chunk.iter().map(|s| s.at).min().expect("a chunk is not empty") - time::Duration::days(1);
                let hi = chunk.iter().map(|s| s.at).max().expect("a chunk is not empty") + time::Duration::days(1);
                let reads = async {
                    tokio::try_join!(
                        queries::calls_of_spans(store, project, &keys, lo, hi),
                        queries::log_events_of_spans(store, project, &keys, LOG_EVENTS)
                    )
                };
                let (calls, events) = crate::deadline::within(store, crate::deadline::QUERY, reads).await?;
                let batch = self.completed(store, project, calls, events).await?;
                let n = batch.calls.len() as u64;
                if n > 0 {
                    self.store(batch).await?;
                    self.metrics.rejoined.fetch_add(n, Relaxed);
                    joined += n;
                }
            }
        }
        Ok(joined)
    }

    /// The rows of the calls that their events complete, completed. A row the events leave as
    /// it is (joined already, by a cache or an earlier round) is not written again: the test is
    /// on content, not on the clocks of the collectors that stored each side.
    async fn completed(
        &self,
        store: &Store,
        project: &str,
        calls: Vec<LlmCallRow>,
        events: Vec<LogRecordRow>,
    ) -> Result<Batch, StoreError> {
        let mut by_span: HashMap<SpanKey, Vec<LogRecordRow>> = HashMap::new();
        for e in events {
            by_span.entry((e.trace_id.clone(), e.span_id.clone())).or_default().push(e);
        }
        let met: Vec<(LlmCallRow, Vec<LogRecordRow>)> = calls
            .into_iter()
            .filter_map(|c| {
                let events = by_span.remove(&(c.trace_id.clone(), c.span_id.clone()))?;
                Some((c, events))
            })
            .collect();
        let mut batch = Batch::default();
        if met.is_empty() {
            return Ok(batch);
        }
        let hashes = met.iter().flat_map(|(c, _)| [&c.system_instructions_hash, &c.tool_definitions_hash]);
        let contents = flywheel_schemas::read::contents(store, project, hashes).await?;
        let now = OffsetDateTime::now_utc();
        for (call, events) in met {
            let system = contents.get(&call.system_instructions_hash).cloned();
            let tools = contents.get(&call.tool_definitions_hash).and_then(|t| serde_json::from_str(t).ok());
            let (ids, mut draft, is_error) = normalize::from_row(&call, system, tools);
            let mut logs = LogParts::default();
            for content in events.iter().filter_map(read_stored_event) {
                logs.add(content);
            }
            draft.merge(logs.draft());
            draft.finalize();
            // Newer than the row it replaces, whatever the clock of the collector that wrote it.
            let at = now.max(call.ingested_at + time::Duration::nanoseconds(1));
            let mut contents = Vec::new();
            let row = self.call_row(project, &ids, &draft, is_error, at, &mut contents);
            let unchanged = LlmCallRow { ingested_at: call.ingested_at, ..row.clone() } == call;
            if !unchanged {
                batch.calls.push(row);
                batch.contents.extend(contents);
            }
        }
        Ok(batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(input: &str, output: &str) -> LlmCallRow {
        let ids = SpanIds {
            trace_id: "t".into(),
            span_id: "s".into(),
            parent_span_id: String::new(),
            start: OffsetDateTime::UNIX_EPOCH,
            end: OffsetDateTime::UNIX_EPOCH,
            service_name: String::new(),
        };
        let mut row = normalize::to_row("p", &ids, &Draft::default(), false, OffsetDateTime::now_utc());
        row.input_messages = input.into();
        row.output_messages = output.into();
        row
    }

    /// Only what may lack its other side is checked: content events, calls without messages.
    #[test]
    fn reported_spans_are_content_events_and_calls_without_messages() {
        let full = call(r#"[{"role":"user","parts":[]}]"#, r#"[{"role":"assistant","parts":[]}]"#);
        let no_output = LlmCallRow { span_id: "s2".into(), ..call(r#"[{"role":"user","parts":[]}]"#, "[]") };
        let event = |name: &str, span: &str| LogRecordRow {
            project_id: "p".into(),
            record_id: name.into(),
            timestamp: OffsetDateTime::UNIX_EPOCH,
            observed_timestamp: OffsetDateTime::UNIX_EPOCH,
            trace_id: "t".into(),
            span_id: span.into(),
            severity_number: 0,
            severity_text: String::new(),
            event_name: name.into(),
            body: String::new(),
            service_name: String::new(),
            scope_name: String::new(),
            resource_attributes: Default::default(),
            attributes: Default::default(),
            ingested_at: OffsetDateTime::UNIX_EPOCH,
        };
        let batch = Batch {
            calls: vec![full, no_output],
            logs: vec![event("gen_ai.choice", "s3"), event("gen_ai.user.message", "s3"), event("app.log", "s4")],
            ..Default::default()
        };
        let spans: Vec<String> = reported(&batch).into_iter().map(|r| r.span.1).collect();
        assert_eq!(spans, ["s2", "s3"]);
    }
}
