//! The join in storage: a model call and its GenAI log events that reached different
//! collectors (behind a load balancer), or one collector after its [`super::JoinCache`] let
//! them go, are joined by whichever side is stored second.
//!
//! The same round merges one call recorded twice (a wrapper span and the span it wraps, see
//! `traces::wrappers`) whose two spans were stored apart: see [`Pipeline::rejoin`].
//!
//! After every insert (from the write-ahead log, or straight), the writer reports the spans it
//! stored that may lack their other side ([`Stored::report`]): GenAI content events, calls
//! stored without input or output messages, and — for the merge — every call. The task below reads, for those spans, the
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
use std::sync::atomic::AtomicUsize;
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
/// Calls whose traces one query lists for the merge of calls recorded twice. The query reads
/// three columns of the traces' calls, and its cost is mostly the granules it opens, which
/// a longer list barely changes: every stored call is checked, so this sets how many such
/// queries a busy collector sends (~70 KB of trace ids, under ClickHouse's 256 KiB
/// `max_query_size`).
const LINKS_CHUNK: usize = 2000;
/// How long a round waits for more reports before it reads.
const GATHER: Duration = Duration::from_millis(250);
/// Attempts at one round while ClickHouse fails, a second apart and more.
const ATTEMPTS: u32 = 5;

/// A stored span that may lack its other side: a call, or a call's content event.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Reported {
    project: String,
    span: SpanKey,
    /// When it happened (the call's start, the event's time): bounds the partitions read.
    #[serde(with = "flywheel_schemas::rows::ts::nanos")]
    at: OffsetDateTime,
    /// A content event, or a call stored without its messages: its content may be elsewhere.
    content: bool,
    /// A model call: it may be the wrapper, or the wrapped, of a call recorded twice whose
    /// other recording another collector stored.
    call: bool,
}

/// Spans waiting to be checked, at most (~150 bytes each: ~15 MB). Every stored call is
/// reported, so inserts of many calls while ClickHouse is slow would otherwise queue 1,024
/// inserts' worth of keys whatever their size.
const MAX_WAITING: usize = 100_000;

/// Where the writer reports what it stored ([`Stored::channel`]).
#[derive(Clone)]
pub struct Stored {
    tx: mpsc::Sender<Vec<Reported>>,
    metrics: Arc<Metrics>,
    /// Spans in the queue.
    waiting: Arc<AtomicUsize>,
}

impl std::fmt::Debug for Stored {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stored").field("reports", &(QUEUE - self.tx.capacity())).field("spans", &self.waiting.load(Relaxed)).finish()
    }
}

/// The reports, for [`Pipeline::rejoin_forever`].
pub struct Reports(mpsc::Receiver<Vec<Reported>>, Arc<AtomicUsize>);

impl Reports {
    fn taken(&self, spans: &[Reported]) {
        self.1.fetch_sub(spans.len(), Relaxed);
    }
}

impl Stored {
    pub fn channel(metrics: Arc<Metrics>) -> (Stored, Reports) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let waiting = Arc::new(AtomicUsize::new(0));
        (Stored { tx, metrics, waiting: waiting.clone() }, Reports(rx, waiting))
    }

    /// Reports the spans of `batch`, just stored, that may lack their other side.
    pub fn report(&self, batch: &Batch) {
        self.report_spans(reported(batch));
    }

    /// Reports `spans`, listed by [`reported`] when their rows were at hand (the write-ahead
    /// log lists them in each record: its drain never decodes the rows).
    pub fn report_spans(&self, spans: Vec<Reported>) {
        if spans.is_empty() {
            return;
        }
        let n = spans.len() as u64;
        let queued = self.waiting.fetch_add(spans.len(), Relaxed);
        let sent = if queued + spans.len() > MAX_WAITING { Err(()) } else { self.tx.try_send(spans).map_err(|_| ()) };
        match sent {
            Ok(()) => {
                self.metrics.rejoin_reported.fetch_add(n, Relaxed);
            }
            Err(()) => {
                self.waiting.fetch_sub(n as usize, Relaxed);
                self.metrics.rejoin_dropped.fetch_add(n, Relaxed);
                if self.tx.is_closed() {
                    // The collector is stopping (the join's task is gone) while the log drains.
                    tracing::info!(spans = n, "stopping: these calls are not checked against the storage join (their log events are kept)");
                } else {
                    tracing::warn!(spans = n, "the storage join is behind: these calls stay as first stored (their log events are kept)");
                }
            }
        }
    }
}

/// Content events, and every call (those stored without their messages also for their
/// content, which may come as events). Those the join cache completes meanwhile are skipped
/// when the round reads ([`JoinCache::has_messages`](super::join::JoinCache::has_messages)).
pub(crate) fn reported(batch: &Batch) -> Vec<Reported> {
    let empty = |json: &str| json.is_empty() || json == "[]";
    let events =
        batch.logs.iter().filter(|l| !l.trace_id.is_empty() && !l.span_id.is_empty() && LOG_EVENTS.contains(&l.event_name.as_str())).map(
            |l| Reported {
                project: l.project_id.clone(),
                span: (l.trace_id.clone(), l.span_id.clone()),
                at: l.timestamp,
                content: true,
                call: false,
            },
        );
    let calls = batch.calls.iter().map(|c| Reported {
        project: c.project_id.clone(),
        span: (c.trace_id.clone(), c.span_id.clone()),
        at: c.start_time,
        content: empty(&c.input_messages) || empty(&c.output_messages),
        call: true,
    });
    let mut spans: Vec<Reported> = events.chain(calls).collect();
    spans.sort_by(|a, b| (&a.project, &a.span).cmp(&(&b.project, &b.span)));
    // One report per span, with what each of its reports said.
    spans.dedup_by(|later, kept| {
        let same = later.project == kept.project && later.span == kept.span;
        if same {
            kept.content |= later.content;
            kept.call |= later.call;
        }
        same
    });
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
            // A round reads ClickHouse once per project and chunk whatever its size: let the
            // reports of a quarter second gather (each insert sends one), so that a busy
            // collector checks many inserts per query.
            tokio::time::sleep(GATHER).await;
            reports.taken(&first);
            let mut spans = first;
            while spans.len() < LINKS_CHUNK
                && let Ok(more) = reports.0.try_recv()
            {
                reports.taken(&more);
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
            let calls: Vec<&Reported> = spans.iter().copied().filter(|s| s.call).collect();
            for chunk in calls.chunks(LINKS_CHUNK) {
                joined += self.merge_recorded_twice(store, project, chunk).await?;
            }
            // A call this collector holds with its messages — its events met it here since it
            // was reported, or it met them — was written complete: nothing to read for it.
            let spans: Vec<&Reported> = {
                let joins = self.joins.lock().unwrap_or_else(|e| e.into_inner());
                let held = |s: &Reported| joins.has_messages(&(s.project.clone(), s.span.0.clone(), s.span.1.clone()));
                spans.into_iter().filter(|s| s.content && !held(s)).collect()
            };
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

    /// A call recorded twice (two instrumentations: a wrapper span and the span it wraps, see
    /// `traces::wrappers`) whose two recordings reached two collectors, or one collector
    /// farther apart than its cache keeps them: the wrapped call's row is written again with
    /// the wrapper's fields filling its gaps (and the wrapper's log events), then the wrapper's
    /// row is deleted — the row one collector makes of both. Deterministic and idempotent:
    /// collectors that find the same pair write the same row and delete the same one. Reads
    /// one list of the traces' call ids when no pair is found (the common case). Returns the
    /// calls merged.
    async fn merge_recorded_twice(&self, store: &Store, project: &str, reported: &[&Reported]) -> Result<u64, RejoinError> {
        let Some(lo) = reported.iter().map(|s| s.at).min() else { return Ok(0) };
        let hi = reported.iter().map(|s| s.at).max().unwrap_or(lo) + time::Duration::days(1);
        let lo = lo - time::Duration::days(1);
        let mut traces: Vec<String> = reported.iter().map(|s| s.span.0.clone()).collect();
        traces.sort();
        traces.dedup();
        let links =
            crate::deadline::within(store, crate::deadline::QUERY, queries::call_links_of_traces(store, project, &traces, lo, hi)).await?;
        let fresh: std::collections::HashSet<&SpanKey> = reported.iter().map(|s| &s.span).collect();
        // Each call with the wrappers folded into it, nearest first (a chain of three
        // instrumentations folds both outer spans into the innermost call, in one row).
        let mut groups: BTreeMap<SpanKey, Vec<SpanKey>> = BTreeMap::new();
        for (wrapper, wrapped) in recorded_twice(&links) {
            groups.entry(wrapped).or_default().push(wrapper);
        }
        groups.retain(|call, wrappers| fresh.contains(call) || wrappers.iter().any(|w| fresh.contains(w)));
        if groups.is_empty() {
            return Ok(0);
        }
        let keys: Vec<SpanKey> = groups.iter().flat_map(|(c, ws)| std::iter::once(c.clone()).chain(ws.iter().cloned())).collect();
        let reads = async {
            tokio::try_join!(
                queries::calls_of_spans(store, project, &keys, lo, hi),
                queries::log_events_of_spans(store, project, &keys, LOG_EVENTS)
            )
        };
        let (rows, events) = crate::deadline::within(store, crate::deadline::QUERY, reads).await?;
        let rows: HashMap<SpanKey, LlmCallRow> = rows.into_iter().map(|r| ((r.trace_id.clone(), r.span_id.clone()), r)).collect();
        let events_of = by_span(events);
        let hashes = rows.values().flat_map(|c| [&c.system_instructions_hash, &c.tool_definitions_hash]);
        let contents = flywheel_schemas::read::contents(store, project, hashes).await?;
        let now = OffsetDateTime::now_utc();
        let mut batch = Batch::default();
        let mut wrappers = Vec::new();
        for (wrapped, outer) in groups {
            let Some(c) = rows.get(&wrapped) else { continue };
            let outer: Vec<(&SpanKey, &LlmCallRow)> = outer.iter().filter_map(|w| rows.get(w).map(|row| (w, row))).collect();
            if outer.is_empty() {
                continue;
            }
            let (ids, mut draft, is_error) = stored_draft(c, &contents);
            for (_, w) in &outer {
                draft.merge(stored_draft(w, &contents).1);
            }
            complete(&mut draft, std::iter::once(&wrapped).chain(outer.iter().map(|(k, _)| *k)).flat_map(|k| events_of.get(k)).flatten());
            // Newer than every row, whatever the clocks of the collectors that wrote them.
            let newest = outer.iter().map(|(_, w)| w.ingested_at).fold(c.ingested_at, |a, b| a.max(b));
            let at = now.max(newest + time::Duration::nanoseconds(1));
            batch.calls.push(self.call_row(project, &ids, &draft, is_error, at, &mut batch.contents));
            wrappers.extend(outer.into_iter().map(|(k, _)| k.clone()));
        }
        let n = wrappers.len() as u64;
        if n > 0 {
            // The merged row is durable (logged or stored) before the wrapper's row goes.
            self.store(batch).await?;
            crate::deadline::within(store, crate::deadline::QUERY, queries::delete_calls(store, project, &wrappers)).await?;
            self.metrics.duplicate_calls.fetch_add(n, Relaxed);
            tracing::debug!(calls = n, "calls recorded twice, by two collectors, merged in storage");
        }
        Ok(n)
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
        let mut by_span = by_span(events);
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
            let (ids, mut draft, is_error) = stored_draft(&call, &contents);
            complete(&mut draft, &events);
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

/// Log records by their span.
fn by_span(events: Vec<LogRecordRow>) -> HashMap<SpanKey, Vec<LogRecordRow>> {
    let mut out: HashMap<SpanKey, Vec<LogRecordRow>> = HashMap::new();
    for e in events {
        out.entry((e.trace_id.clone(), e.span_id.clone())).or_default().push(e);
    }
    out
}

/// A stored call back to the draft it was written from, with its shared contents (system
/// instructions, tool definitions) read by hash.
fn stored_draft(row: &LlmCallRow, contents: &HashMap<String, String>) -> (SpanIds, Draft, bool) {
    let system = contents.get(&row.system_instructions_hash).cloned();
    let tools = contents.get(&row.tool_definitions_hash).and_then(|t| serde_json::from_str(t).ok());
    normalize::from_row(row, system, tools)
}

/// `draft` completed by its stored GenAI content events, then finalised.
fn complete<'a>(draft: &mut Draft, events: impl IntoIterator<Item = &'a LogRecordRow>) {
    let mut logs = LogParts::default();
    for content in events.into_iter().filter_map(read_stored_event) {
        logs.add(content);
    }
    draft.merge(logs.draft());
    draft.finalize();
}

/// The (wrapper, wrapped) pairs among a trace's calls, as `traces::wrappers` finds them in
/// one request: a call with exactly one call child wraps it, and folds into the innermost call
/// of a chain of wrappers; a span whose chain comes back to it (a cycle) or never ends wraps
/// nothing. Ordered by wrapped call, nearest wrapper first.
fn recorded_twice(links: &[queries::CallLink]) -> Vec<(SpanKey, SpanKey)> {
    let calls: std::collections::HashSet<(&str, &str)> = links.iter().map(|l| (l.trace_id.as_str(), l.span_id.as_str())).collect();
    let mut children: BTreeMap<(&str, &str), Vec<&str>> = BTreeMap::new();
    for l in links {
        let parent = (l.trace_id.as_str(), l.parent_span_id.as_str());
        if l.parent_span_id != l.span_id && calls.contains(&parent) {
            children.entry(parent).or_default().push(l.span_id.as_str());
        }
    }
    for kids in children.values_mut() {
        kids.sort();
        kids.dedup();
    }
    let only = |k: (&str, &str)| children.get(&k).filter(|c| c.len() == 1).map(|c| c[0]);
    let mut pairs: Vec<(SpanKey, SpanKey, usize)> = children
        .keys()
        .filter_map(|&(trace, wrapper)| {
            let mut wrapped = only((trace, wrapper))?;
            let mut depth = 1;
            while let Some(next) = only((trace, wrapped)) {
                // Back to the wrapper (A and B each the other's only child), or round a cycle
                // further down: nobody's wrapper.
                if next == wrapper || depth > children.len() {
                    return None;
                }
                (wrapped, depth) = (next, depth + 1);
            }
            Some(((trace.to_string(), wrapper.to_string()), (trace.to_string(), wrapped.to_string()), depth))
        })
        .collect();
    pairs.sort_by(|a, b| (&a.1, a.2).cmp(&(&b.1, b.2)));
    pairs.into_iter().map(|(w, c, _)| (w, c)).collect()
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

    /// Content events and calls without messages are checked for their content; every call for
    /// a second recording.
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
        let spans: Vec<(String, bool, bool)> = reported(&batch).into_iter().map(|r| (r.span.1, r.content, r.call)).collect();
        assert_eq!(
            spans,
            [("s".into(), false, true), ("s2".into(), true, true), ("s3".into(), true, false)],
            "every call is checked for a second recording; only calls without messages and content events for content"
        );
    }

    #[test]
    fn a_call_with_one_call_child_wraps_it() {
        let link =
            |span: &str, parent: &str| queries::CallLink { trace_id: "t".into(), span_id: span.into(), parent_span_id: parent.into() };
        let key = |s: &str| ("t".to_string(), s.to_string());
        // w wraps c; an agent span (not a call) above both; a call with two call children is an
        // aggregate; a and b each other's parent wrap nothing.
        let links = [
            link("w", "agent"),
            link("c", "w"),
            link("g", ""),
            link("g1", "g"),
            link("g2", "g"),
            link("a", "b"),
            link("b", "a"),
            link("self", "self"),
        ];
        assert_eq!(recorded_twice(&links), vec![(key("w"), key("c"))]);
        // Three instrumentations: both outer spans fold into the innermost call, nearest first.
        // A chain that runs into a cycle (`f` stored twice, under `e` and under its own child
        // `g`) folds nothing: it never ends.
        let chain = [
            link("x", "agent"),
            link("y", "x"),
            link("z", "y"),
            link("d", ""),
            link("e", "d"),
            link("f", "e"),
            link("g", "f"),
            link("f", "g"),
        ];
        assert_eq!(recorded_twice(&chain), vec![(key("y"), key("z")), (key("x"), key("z"))]);
    }
}
