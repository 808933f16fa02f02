//! Traces in: every span kept raw (redacted), every model call normalised into an
//! `llm_calls` row (identity inherited from its ancestors, priced, wrapper spans folded into
//! the call they wrap), joined with GenAI log events already seen, and the signals and
//! evaluations sent as span events (or evaluation spans) stored once their spans are.

use std::collections::{HashMap, HashSet};

use flywheel_schemas::rows::LlmCallRow;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use time::OffsetDateTime;

use super::*;

impl Pipeline {
    #[tracing::instrument(name = "ingest traces", skip_all, fields(project = %project))]
    pub async fn traces(&self, project: &str, request: &ExportTraceServiceRequest) -> Result<Outcome, WriteError> {
        use prost::Message as _;
        self.check_expansion(project, "spans", crate::expansion::traces(request), request.encoded_len())?;
        let now = OffsetDateTime::now_utc();
        let (mut spans, mut rejected) = decode_spans(request);
        spans.retain(|s| match self.expired(s.ids.start, now) {
            Some(reason) => {
                rejected.push(Rejected { span_name: s.name.clone(), reason, cause: "expired" });
                false
            }
            None => true,
        });
        let received = (spans.len() + rejected.len()) as u64;
        self.metrics.spans_received.fetch_add(received, std::sync::atomic::Ordering::Relaxed);
        for r in &rejected {
            tracing::warn!(project, span = %r.span_name, reason = %r.reason, "span rejected");
        }
        count_rejected(&self.metrics, "spans", &rejected);
        for span in &mut spans {
            self.redact_span(span);
        }

        let mut batch = Batch { spans: spans.iter().map(|s| s.row(project, now)).collect(), ..Default::default() };
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
            let key_of = |span: &DecodedSpan| (project.to_string(), span.ids.trace_id.clone(), span.ids.span_id.clone());
            let mut joins = self.joins.lock().unwrap_or_else(|e| e.into_inner());
            let mut written: Vec<(String, String, String)> = Vec::new();
            let mut absorbed = Vec::new();
            for (i, (span, draft)) in calls.iter().enumerate() {
                let key = key_of(span);
                if let Some(&child) = wrapped.get(&i) {
                    absorbed.push((key, draft.clone(), key_of(calls[child].0)));
                    continue;
                }
                // The wrapper of a call that came in an earlier request.
                if !parents.contains(&(span.ids.trace_id.as_str(), span.ids.span_id.as_str()))
                    && let Some(child) = joins.child_of(&key).filter(|child| child.2 != span.ids.parent_span_id)
                {
                    absorbed.push((key, draft.clone(), child));
                    continue;
                }
                joins.add_call(key.clone(), span.ids.clone(), draft.clone(), span.status == "error");
                written.push(key);
            }
            for (wrapper, draft, child) in absorbed {
                self.metrics.duplicate_calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if joins.absorb(wrapper, draft, &child).is_some() && !written.contains(&child) {
                    written.push(child);
                }
            }
            for key in &written {
                if let Some((ids, draft, is_error)) = joins.merged(key) {
                    batch.calls.push(self.call_row(project, &ids, &draft, is_error, now, &mut batch.contents));
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
        self.store_signals(project, events, SOURCE_SPAN_EVENT).await?;
        Ok(outcome(spans.len() as u64, &rejected, "spans"))
    }
}

/// One model call recorded twice: two instrumentations active at once (OpenInference's and
/// OTel's `openai-v2`, a framework's and its provider client's) each make a span for the same
/// request, the outer one the parent of the inner. A model-call span whose one model-call child
/// is in the request is that child's wrapper: its fields fill the child's gaps and it gets no
/// row of its own (its span stays in `spans`), so tokens and cost count once and no false
/// regeneration is derived from the repeat.
///
/// Returns wrapper index → child index, and the parents (trace, span) of every call of the
/// request (a span with several model-call children is an aggregate, not a wrapper).
fn wrappers<'a>(calls: &'a [(&'a DecodedSpan, Draft)]) -> (HashMap<usize, usize>, HashSet<(&'a str, &'a str)>) {
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
    let acyclic = wrapped.iter().filter(|(p, _)| !in_cycle(**p)).map(|(p, c)| (*p, *c)).collect();
    (acyclic, parents)
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
