//! Traces in: every span kept raw (redacted), every model call normalised into an
//! `llm_calls` row (identity inherited from its ancestors, priced, wrapper spans folded into
//! the call they wrap), joined with GenAI log events already seen, and the signals and
//! evaluations sent as span events (or evaluation spans) stored once their spans are.

use std::collections::{HashMap, HashSet};

use flywheel_schemas::rows::LlmCallRow;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use time::OffsetDateTime;

use crate::writer::EncodedSpans;

use super::*;

impl Pipeline {
    #[tracing::instrument(name = "ingest traces", skip_all, fields(project = %project))]
    pub async fn traces(&self, project: &str, mut request: ExportTraceServiceRequest) -> Result<Outcome, WriteError> {
        use prost::Message as _;
        self.check_expansion(project, "spans", crate::expansion::traces(&request), || request.encoded_len())?;
        let now = OffsetDateTime::now_utc();
        // A large request is decoded and logged in slices of whole traces, each durable before
        // the next is decoded: its spans and rows are never all in memory at once. The request
        // is acknowledged when every slice is; a retry after a slice failed rewrites the same
        // rows (same ids), which storage collapses.
        let (slice_of, slices) = slices(&request, SLICE);
        let (mut accepted, mut rejected) = (0, Vec::new());
        for n in 0..slices {
            let (mut spans, refused) = decode_spans_where(&mut request, |s| slices == 1 || slice_of.get(s.trace_id.as_slice()) == Some(&n));
            let first_refused = rejected.len();
            rejected.extend(refused);
            spans.retain(|s| match self.expired(s.ids.start, now) {
                Some(reason) => {
                    rejected.push(Rejected { span_name: s.name.clone(), reason, cause: "expired" });
                    false
                }
                None => true,
            });
            let refused = &rejected[first_refused..];
            self.metrics.spans_received.fetch_add((spans.len() + refused.len()) as u64, std::sync::atomic::Ordering::Relaxed);
            for r in refused {
                tracing::warn!(project, span = %r.span_name, reason = %r.reason, "span rejected");
            }
            count_rejected(&self.metrics, "spans", refused);
            for span in &mut spans {
                self.redact_span(span);
            }
            accepted += spans.len() as u64;
            self.trace_slice(project, spans, now).await?;
        }
        Ok(outcome(accepted, &rejected, "spans"))
    }

    /// The spans of whole traces: their rows, their calls normalised and joined, stored; then
    /// the signals and evaluations they carry.
    async fn trace_slice(&self, project: &str, spans: Vec<DecodedSpan>, now: OffsetDateTime) -> Result<(), WriteError> {
        let mut encoded = EncodedSpans {
            project: project.to_string(),
            data: Vec::with_capacity(spans.len() * 1024),
            rows: Vec::with_capacity(spans.len()),
        };
        for span in &spans {
            span.encode_row(project, now, &mut encoded.data).map_err(|e| WriteError::Storage(e.to_string()))?;
            encoded.rows.push((crate::writer::day(span.ids.start), encoded.data.len()));
        }
        let mut batch = Batch { encoded_spans: vec![encoded], ..Default::default() };
        let by_id: HashMap<(&str, &str), &DecodedSpan> =
            spans.iter().map(|s| ((s.ids.trace_id.as_str(), s.ids.span_id.as_str()), s)).collect();
        {
            let calls: Vec<(&DecodedSpan, Draft)> = spans
                .iter()
                .filter_map(|span| {
                    let mut draft = normalize::read_call(&span.view())?;
                    self.inherit(span, &by_id, &mut draft);
                    Some((span, draft))
                })
                .collect();
            let (wrapped, parents) = wrappers(&calls);
            let call_spans: Vec<&DecodedSpan> = calls.iter().map(|(span, _)| *span).collect();
            let key_of = |span: &DecodedSpan| (project.to_string(), span.ids.trace_id.clone(), span.ids.span_id.clone());
            let mut joins = self.joins.lock().unwrap_or_else(|e| e.into_inner());
            let mut written: Vec<(String, String, String)> = Vec::new();
            let mut absorbed = Vec::new();
            // The drafts move into the join cache, which builds the rows from them.
            for (i, (span, draft)) in calls.into_iter().enumerate() {
                let key = key_of(span);
                if let Some(&child) = wrapped.get(&i) {
                    absorbed.push((key, draft, key_of(call_spans[child])));
                    continue;
                }
                // The wrapper of a call that came in an earlier request.
                if !parents.contains(&(span.ids.trace_id.as_str(), span.ids.span_id.as_str()))
                    && let Some(child) = joins.child_of(&key).filter(|child| child.2 != span.ids.parent_span_id)
                {
                    absorbed.push((key, draft, child));
                    continue;
                }
                joins.add_call(key.clone(), span.ids.clone(), draft, span.status == "error");
                written.push(key);
            }
            for (wrapper, draft, child) in absorbed {
                self.metrics.duplicate_calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if let Some(call) = joins.absorb(wrapper, draft, &child)
                    && !written.contains(&call)
                {
                    written.push(call);
                }
            }
            for key in &written {
                if let Some(row) =
                    joins.with_merged(key, |ids, draft, is_error| self.call_row(project, ids, draft, is_error, now, &mut batch.contents))
                {
                    batch.calls.push(row);
                }
            }
        }
        // Who and where, from the request's own calls: a signal sent as a span event gets the
        // session, user and feature of the call it judges, as one sent as a log record does,
        // without waiting for that call to reach storage.
        let is_signal = |name: &str| name == SIGNAL_EVENT || name == wire::EVALUATION_EVENT;
        // An evaluation sent as a span of its own (a point-in-time span under the call it
        // judges, as some SDKs emit events): its parent is the evaluated call.
        let evaluation_spans: Vec<&DecodedSpan> =
            spans.iter().filter(|s| s.attrs.0.contains_key("gen_ai.evaluation.name") && !s.ids.parent_span_id.is_empty()).collect();
        let has_events = !evaluation_spans.is_empty() || spans.iter().any(|s| s.events.iter().any(|e| is_signal(&e.name)));
        let contexts: Vec<CallContext> = if has_events { batch.calls.iter().map(CallContext::of).collect() } else { Vec::new() };
        self.store(batch).await?;
        self.metrics.spans_accepted.fetch_add(spans.len() as u64, std::sync::atomic::Ordering::Relaxed);
        // Signals sent as span events, once their span is stored (so that they link at once).
        let mut events: Vec<_> = spans
            .iter()
            .flat_map(|s| s.events.iter().filter(|e| is_signal(&e.name)).map(move |e| (s, e)))
            .enumerate()
            .map(|(i, (s, e))| {
                let read = if e.name == SIGNAL_EVENT { wire::from_attributes } else { wire::from_evaluation };
                read(i, &e.attrs.0, &s.ids.trace_id, &s.ids.span_id).map(|mut sig| {
                    sig.timestamp = sig.timestamp.or(Some(e.time));
                    CallContext::fill(&contexts, &mut sig);
                    sig
                })
            })
            .collect();
        for s in evaluation_spans {
            let sig = wire::from_evaluation(events.len(), &s.attrs.0, &s.ids.trace_id, &s.ids.parent_span_id).map(|mut sig| {
                sig.timestamp = Some(s.ids.end);
                CallContext::fill(&contexts, &mut sig);
                sig
            });
            events.push(sig);
        }
        self.store_signals(project, events, SOURCE_SPAN_EVENT).await
    }
}

/// The slice of each trace of `request` (by its raw id), and how many slices: whole traces of
/// about `max` spans, in the order traces first appear (a trace is never cut: its spans inherit
/// identity from their ancestors, and a wrapper meets the call it wraps, within it). One slice:
/// no map.
fn slices(request: &ExportTraceServiceRequest, max: usize) -> (HashMap<Vec<u8>, usize>, usize) {
    let spans = request.resource_spans.iter().flat_map(|r| &r.scope_spans).flat_map(|s| &s.spans);
    if spans.clone().count() <= max {
        return (HashMap::new(), 1);
    }
    let mut sizes: Vec<(&[u8], usize)> = Vec::new();
    let mut index: HashMap<&[u8], usize> = HashMap::new();
    for span in spans {
        let i = *index.entry(span.trace_id.as_slice()).or_insert_with(|| {
            sizes.push((span.trace_id.as_slice(), 0));
            sizes.len() - 1
        });
        sizes[i].1 += 1;
    }
    let (mut slice_of, mut slice, mut filled) = (HashMap::with_capacity(sizes.len()), 0, 0);
    for (trace, size) in sizes {
        if filled > 0 && filled + size > max {
            slice += 1;
            filled = 0;
        }
        filled += size;
        slice_of.insert(trace.to_vec(), slice);
    }
    (slice_of, slice + 1)
}

/// One model call recorded twice: two instrumentations active at once (OpenInference's and
/// OTel's `openai-v2`, a framework's and its provider client's) each make a span for the same
/// request, the outer one the parent of the inner. A model-call span whose one model-call child
/// is in the request is that child's wrapper: its fields fill the child's gaps and it gets no
/// row of its own (its span stays in `spans`), so tokens and cost count once and no false
/// regeneration is derived from the repeat.
///
/// Returns wrapper index → the index of the call it folds into (its child; through a chain of
/// wrappers — three instrumentations — the innermost call), and the parents (trace, span) of
/// every call of the request (a span with several model-call children is an aggregate, not a
/// wrapper).
fn wrappers<'s>(calls: &[(&'s DecodedSpan, Draft)]) -> (HashMap<usize, usize>, HashSet<(&'s str, &'s str)>) {
    let index: HashMap<(&str, &str), usize> =
        calls.iter().enumerate().map(|(i, (s, _))| ((s.ids.trace_id.as_str(), s.ids.span_id.as_str()), i)).collect();
    let mut children: HashMap<usize, Vec<usize>> = HashMap::new();
    let mut parents = HashSet::new();
    for (i, (span, _)) in calls.iter().enumerate() {
        let parent = (span.ids.trace_id.as_str(), span.ids.parent_span_id.as_str());
        parents.insert(parent);
        // A span that names itself as its parent is nobody's wrapper (nor its own).
        if let Some(&p) = index.get(&parent).filter(|&&p| p != i) {
            children.entry(p).or_default().push(i);
        }
    }
    let wrapped: HashMap<usize, usize> = children.into_iter().filter(|(_, c)| c.len() == 1).map(|(p, c)| (p, c[0])).collect();
    // Spans whose parents form a cycle (A under B under A) wrap nothing: followed from any of
    // them, the chain comes back, and absorbing along it would leave no row at all.
    let in_cycle = |start: usize| {
        let mut at = start;
        for _ in 0..wrapped.len() {
            match wrapped.get(&at) {
                Some(&next) if next == start => return true,
                Some(&next) => at = next,
                None => return false,
            }
        }
        false
    };
    let acyclic: HashMap<usize, usize> = wrapped.iter().filter(|(p, _)| !in_cycle(**p)).map(|(p, c)| (*p, *c)).collect();
    // Folded into a wrapper that is folded itself, a span would find no call to join: each goes
    // to the end of its chain (a chain ends: a cycle's spans were dropped above).
    let innermost = |mut at: usize| {
        for _ in 0..acyclic.len() {
            match acyclic.get(&at) {
                Some(&next) => at = next,
                None => break,
            }
        }
        at
    };
    let folded = acyclic.iter().map(|(&p, &c)| (p, innermost(c))).collect();
    (folded, parents)
}

/// The identity of one call of a request, for the signals sent beside it.
struct CallContext {
    trace_id: String,
    span_id: String,
    start: OffsetDateTime,
    session_id: String,
    user_id: String,
    feature: String,
}

impl CallContext {
    fn of(c: &LlmCallRow) -> CallContext {
        CallContext {
            trace_id: c.trace_id.clone(),
            span_id: c.span_id.clone(),
            start: c.start_time,
            session_id: c.session_id.clone(),
            user_id: c.user_id.clone(),
            feature: c.feature.clone(),
        }
    }

    /// Fills what the signal left empty from the call it judges: the call of its span, else
    /// the trace's last call started before it (the link's own rule), else the trace's last.
    fn fill(contexts: &[CallContext], sig: &mut wire::Signal) {
        let in_trace = |c: &&CallContext| c.trace_id == sig.trace_id;
        let call = contexts
            .iter()
            .filter(in_trace)
            .find(|c| c.span_id == sig.span_id)
            .or_else(|| contexts.iter().filter(in_trace).filter(|c| sig.timestamp.is_none_or(|t| c.start <= t)).max_by_key(|c| c.start))
            .or_else(|| contexts.iter().filter(in_trace).max_by_key(|c| c.start));
        let Some(c) = call else { return };
        for (field, value) in [(&mut sig.session_id, &c.session_id), (&mut sig.user_id, &c.user_id), (&mut sig.feature, &c.feature)] {
            if field.is_empty() {
                field.clone_from(value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

    use super::{slices, wrappers};
    use crate::normalize::span::{decode_spans, decode_spans_where};

    /// Three instrumentations around one request (a framework's span, a provider client's, an
    /// HTTP client's, each the parent of the next): both outer ones fold into the innermost
    /// call, whatever the order of the spans; a cycle folds nothing.
    #[test]
    fn a_wrapper_of_a_wrapper_folds_into_the_innermost_call() {
        let now = time::OffsetDateTime::now_utc().unix_timestamp_nanos() as u64;
        let span = |id: u8, parent: u8| Span {
            trace_id: vec![1; 16],
            span_id: vec![id; 8],
            parent_span_id: if parent == 0 { vec![] } else { vec![parent; 8] },
            name: format!("s{id}"),
            start_time_unix_nano: now,
            end_time_unix_nano: now + 1,
            ..Default::default()
        };
        let folded = |spans: Vec<Span>| {
            let request = ExportTraceServiceRequest {
                resource_spans: vec![ResourceSpans { scope_spans: vec![ScopeSpans { spans, ..Default::default() }], ..Default::default() }],
            };
            let decoded = decode_spans(request).0;
            let calls: Vec<_> = decoded.iter().map(|s| (s, crate::normalize::Draft::default())).collect();
            let mut pairs: Vec<(String, String)> =
                wrappers(&calls).0.into_iter().map(|(w, c)| (decoded[w].name.clone(), decoded[c].name.clone())).collect();
            pairs.sort();
            pairs
        };
        let expected = vec![("s1".to_string(), "s3".to_string()), ("s2".to_string(), "s3".to_string())];
        assert_eq!(folded(vec![span(1, 0), span(2, 1), span(3, 2)]), expected);
        assert_eq!(folded(vec![span(3, 2), span(1, 0), span(2, 1)]), expected);
        assert_eq!(folded(vec![span(1, 2), span(2, 1)]), vec![], "a cycle wraps nothing");
    }

    /// Slices hold whole traces, in the order traces first appear (spans in the order of the
    /// request), and a trace larger than a slice stays whole.
    #[test]
    fn a_large_request_is_sliced_along_traces() {
        let now = time::OffsetDateTime::now_utc().unix_timestamp_nanos() as u64;
        // Traces 1 and 2 interleaved (3 spans each), then trace 3 of 6 spans.
        let spans: Vec<Span> = [1u8, 2, 1, 2, 1, 2, 3, 3, 3, 3, 3, 3]
            .iter()
            .enumerate()
            .map(|(i, &t)| Span {
                trace_id: vec![t; 16],
                span_id: vec![i as u8 + 1; 8],
                name: format!("s{i}"),
                start_time_unix_nano: now,
                end_time_unix_nano: now + 1,
                ..Default::default()
            })
            .collect();
        let request = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans { scope_spans: vec![ScopeSpans { spans, ..Default::default() }], ..Default::default() }],
        };
        let names = |max| -> Vec<Vec<String>> {
            let mut request = request.clone();
            let (slice_of, n) = slices(&request, max);
            (0..n)
                .map(|k| {
                    let (spans, rejected) = decode_spans_where(&mut request, |s| n == 1 || slice_of[s.trace_id.as_slice()] == k);
                    assert!(rejected.is_empty());
                    spans.iter().map(|s| s.name.clone()).collect()
                })
                .collect()
        };
        assert_eq!(names(4), vec![vec!["s0", "s2", "s4"], vec!["s1", "s3", "s5"], vec!["s6", "s7", "s8", "s9", "s10", "s11"]]);
        assert_eq!(names(6), vec![vec!["s0", "s1", "s2", "s3", "s4", "s5"], vec!["s6", "s7", "s8", "s9", "s10", "s11"]]);
        assert_eq!(names(12).len(), 1, "a request within a slice stays as it came");
    }
}
