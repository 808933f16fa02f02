//! Linking a signal to the call it judges, and the edit distance of an `edit` against that
//! call's output.
//!
//! A signal names its target by trace id, span id, session id or the application's message id
//! (`gen_ai.response.id`, or a configured span attribute). Span and message ids are resolved to
//! their trace through `llm_calls` (and `spans` for the configured attribute), in one query per
//! batch. A target not found yet stays `pending` (its spans may arrive later) and is retried by
//! [`resolve_pending`]; after the link timeout it becomes `unlinked`, still queryable.

use std::collections::HashMap;

use clickhouse::Row;
use flywheel_schemas::rows::SignalRow;
use flywheel_schemas::{Store, StoreError};
use serde::Deserialize;
use time::OffsetDateTime;

/// `link_status` values.
pub const LINKED: &str = "linked";
pub const SESSION: &str = "session";
pub const PENDING: &str = "pending";
pub const UNLINKED: &str = "unlinked";

/// Longest texts compared for an edit distance (Levenshtein is quadratic).
const MAX_EDIT_CHARS: usize = 4000;

#[derive(Debug, Clone, Row, Deserialize)]
struct CallRef {
    trace_id: String,
    span_id: String,
    response_id: String,
    session_id: String,
    user_id: String,
    feature: String,
    output_text: String,
    #[serde(with = "clickhouse::serde::time::datetime64::nanos")]
    start_time: OffsetDateTime,
}

/// Resolves the targets of `rows` in place (trace id, link status, user/session/feature when
/// missing, edit distance). One query for the whole batch.
pub async fn link(store: &Store, project: &str, rows: &mut [SignalRow], message_attribute: Option<&str>) -> Result<(), StoreError> {
    let mut traces: Vec<String> = rows.iter().map(|r| r.trace_id.clone()).filter(|t| !t.is_empty()).collect();
    let spans: Vec<String> = rows.iter().map(|r| r.span_id.clone()).filter(|s| !s.is_empty()).collect();
    let messages: Vec<String> = rows.iter().map(|r| r.message_id.clone()).filter(|m| !m.is_empty()).collect();
    if traces.is_empty() && spans.is_empty() && messages.is_empty() {
        for r in rows.iter_mut() {
            r.link_status = SESSION.into();
        }
        return Ok(());
    }
    // The configured message-id attribute lives on spans (any span of the trace).
    let mut message_traces: HashMap<String, String> = HashMap::new();
    if let Some(attr) = message_attribute.filter(|_| !messages.is_empty()) {
        let found: Vec<(String, String)> = store
            .query("SELECT attributes[?] AS m, any(trace_id) FROM spans WHERE project_id = ? AND has(?, attributes[?]) GROUP BY m")
            .bind(attr)
            .bind(project)
            .bind(&messages)
            .bind(attr)
            .fetch_all()
            .await?;
        for (m, t) in found {
            traces.push(t.clone());
            message_traces.insert(m, t);
        }
    }
    traces.sort();
    traces.dedup();
    let calls: Vec<CallRef> = store
        .query(
            "SELECT trace_id, span_id, response_id, session_id, user_id, feature, output_text, start_time FROM llm_calls FINAL \
             WHERE project_id = ? AND (has(?, trace_id) OR has(?, span_id) OR has(?, response_id)) ORDER BY start_time",
        )
        .bind(project)
        .bind(&traces)
        .bind(&spans)
        .bind(&messages)
        .fetch_all()
        .await?;
    let spans_seen: Vec<(String, String)> = if spans.is_empty() {
        Vec::new()
    } else {
        // Signals may target any span (a tool, an agent), not only model calls.
        store
            .query("SELECT DISTINCT span_id, trace_id FROM spans WHERE project_id = ? AND has(?, span_id)")
            .bind(project)
            .bind(&spans)
            .fetch_all()
            .await?
    };
    let mut edits = Vec::new();
    for (index, row) in rows.iter_mut().enumerate() {
        let (call, exact) = match row_target(row, &calls, &message_traces) {
            Some((c, exact)) => (Some(c), exact),
            None => (None, false),
        };
        // A signal that named one call (by its message id) judges that call: it gets the
        // call's span, or every call of the trace would match it and the analyzer would pin it
        // on the last one.
        if let Some(c) = call.filter(|_| exact && row.span_id.is_empty()) {
            row.span_id = c.span_id.clone();
        }
        if row.trace_id.is_empty() {
            if let Some(c) = call {
                row.trace_id = c.trace_id.clone();
            } else if let Some((_, t)) = spans_seen.iter().find(|(s, _)| *s == row.span_id) {
                row.trace_id = t.clone();
            } else if let Some(t) = message_traces.get(&row.message_id) {
                row.trace_id = t.clone();
            }
        }
        let trace_known = !row.trace_id.is_empty()
            && (calls.iter().any(|c| c.trace_id == row.trace_id) || spans_seen.iter().any(|(_, t)| *t == row.trace_id));
        // A span the signal names must be in its trace: found only by its trace, the signal
        // would be reported linked while judging a call it did not name. Its span may still
        // arrive (spans of one trace come in several batches): pending until then.
        let span_known = row.span_id.is_empty()
            || calls.iter().any(|c| c.span_id == row.span_id && c.trace_id == row.trace_id)
            || spans_seen.iter().any(|(s, t)| *s == row.span_id && *t == row.trace_id);
        row.link_status = if trace_known && span_known {
            LINKED
        } else if row.trace_id.is_empty() && row.span_id.is_empty() && row.message_id.is_empty() {
            SESSION
        } else {
            PENDING
        }
        .into();
        if let Some(c) = call {
            if row.session_id.is_empty() {
                row.session_id = c.session_id.clone();
            }
            if row.user_id.is_empty() {
                row.user_id = c.user_id.clone();
            }
            if row.feature.is_empty() {
                row.feature = c.feature.clone();
            }
            if row.kind == "edit" && row.edit_distance.is_none() {
                edits.push((index, c.output_text.clone(), row.text.clone()));
            }
        }
    }
    // Edit distances are quadratic: up to MAX_EDIT_CHARS² steps each, hundreds of them in one
    // request. They run on the blocking pool, never on the runtime that serves `/healthz` and
    // ingestion.
    if !edits.is_empty() {
        let distances = tokio::task::spawn_blocking(move || {
            edits.into_iter().map(|(index, original, edited)| (index, edit_distance(&original, &edited))).collect::<Vec<_>>()
        })
        .await
        .unwrap_or_default();
        for (index, (distance, ratio)) in distances {
            rows[index].edit_distance = Some(distance);
            rows[index].edit_ratio = Some(ratio);
        }
    }
    Ok(())
}

/// Marks `rows` as not linked yet, without reading ClickHouse: `pending` when they name a
/// trace, span or message (the link job resolves them later), `session` otherwise.
pub fn defer(rows: &mut [SignalRow]) {
    for row in rows {
        row.link_status =
            if row.trace_id.is_empty() && row.span_id.is_empty() && row.message_id.is_empty() { SESSION } else { PENDING }.into();
    }
}

/// The call a signal judges: its span, else its message, else the last call of its trace;
/// with whether the signal named that very call (its span or its response id) rather than
/// only its trace.
///
/// When the signal names its trace, a span or message of another trace is not its target: a
/// signal (or a feedback token scoped to one trace) cannot reach another trace's call by naming
/// that call's span or message id.
fn row_target<'a>(row: &SignalRow, calls: &'a [CallRef], message_traces: &HashMap<String, String>) -> Option<(&'a CallRef, bool)> {
    let in_trace = |c: &&CallRef| row.trace_id.is_empty() || c.trace_id == row.trace_id;
    if !row.span_id.is_empty()
        && let Some(c) = calls.iter().filter(in_trace).find(|c| c.span_id == row.span_id)
    {
        return Some((c, true));
    }
    if !row.message_id.is_empty() {
        if let Some(c) = calls.iter().filter(in_trace).find(|c| c.response_id == row.message_id) {
            return Some((c, true));
        }
        if let Some(t) = message_traces.get(&row.message_id).filter(|t| row.trace_id.is_empty() || **t == row.trace_id) {
            return calls.iter().rev().find(|c| &c.trace_id == t).map(|c| (c, false));
        }
    }
    if !row.trace_id.is_empty() {
        return calls
            .iter()
            .rev()
            .find(|c| c.trace_id == row.trace_id && c.start_time <= row.timestamp)
            .or_else(|| calls.iter().rev().find(|c| c.trace_id == row.trace_id))
            .map(|c| (c, false));
    }
    None
}

/// Character-level Levenshtein distance between the output and the user's final text, and
/// the ratio of it to the longer text (0 = unchanged, 1 = rewritten entirely).
pub fn edit_distance(original: &str, edited: &str) -> (u64, f64) {
    let a: String = original.chars().take(MAX_EDIT_CHARS).collect();
    let b: String = edited.chars().take(MAX_EDIT_CHARS).collect();
    let distance = strsim::levenshtein(&a, &b);
    let longest = a.chars().count().max(b.chars().count());
    let ratio = if longest == 0 { 0.0 } else { distance as f64 / longest as f64 };
    (distance as u64, ratio)
}

/// Retries the pending signals of the last `horizon`; those still unresolved after `timeout`
/// become `unlinked`. Returns the rows rewritten (newer `ingested_at` replaces the older row).
pub async fn resolve_pending(
    store: &Store,
    message_attribute: Option<&str>,
    timeout: time::Duration,
    horizon: time::Duration,
) -> Result<Vec<SignalRow>, StoreError> {
    let now = OffsetDateTime::now_utc();
    let pending: Vec<SignalRow> = store
        // By arrival, not by the signal's own time: a signal about last week's answer, received now, is retried too.
        .query("SELECT ?fields FROM signals FINAL WHERE link_status = ? AND ingested_at >= fromUnixTimestamp64Nano(?)")
        .bind(PENDING)
        .bind(((now - horizon).unix_timestamp_nanos()) as i64)
        .fetch_all()
        .await?;
    let mut by_project: HashMap<String, Vec<SignalRow>> = HashMap::new();
    for row in pending {
        by_project.entry(row.project_id.clone()).or_default().push(row);
    }
    let mut changed = Vec::new();
    for (project, mut rows) in by_project {
        link(store, &project, &mut rows, message_attribute).await?;
        for mut row in rows {
            if row.link_status == PENDING && now - row.ingested_at < timeout {
                continue;
            }
            if row.link_status == PENDING {
                row.link_status = UNLINKED.into();
            }
            row.ingested_at = now;
            changed.push(row);
        }
    }
    if !changed.is_empty() {
        store.insert("signals", &changed).await?;
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance_counts_characters_and_normalises() {
        assert_eq!(edit_distance("kitten", "sitting"), (3, 3.0 / 7.0));
        assert_eq!(edit_distance("", ""), (0, 0.0));
        assert_eq!(edit_distance("héllo", "hello"), (1, 0.2), "characters, not bytes");
        let (_, ratio) = edit_distance("The refund takes 5 days.", "Refunds go back to your card within 30 days.");
        assert!(ratio > 0.5);
    }
}
