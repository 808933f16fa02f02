//! Logs in: every record kept in `log_records`; GenAI content events joined to their call
//! (either arrival order, [`super::JoinCache`]); records named `flywheel.signal` or
//! `gen_ai.evaluation.result` stored as signals.

use flywheel_schemas::rows::LogRecordRow;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use serde_json::Value;
use time::OffsetDateTime;

use super::*;

impl Pipeline {
    #[tracing::instrument(name = "ingest logs", skip_all, fields(project = %project))]
    pub async fn logs(&self, project: &str, mut request: ExportLogsServiceRequest) -> Result<Outcome, WriteError> {
        use prost::Message as _;
        self.check_expansion(project, "logs", crate::expansion::logs(&request), || request.encoded_len())?;
        let now = OffsetDateTime::now_utc();
        let mut batch = Batch::default();
        let mut rejected = Vec::new();
        let mut contents = Vec::new();
        let mut log_signals = Vec::new();
        let mut accepted = 0u64;
        // The place of each record in the request, part of its identity.
        let mut position = 0u64;
        for rl in &mut request.resource_logs {
            let resource = rl.resource.as_ref().map(|r| attributes(&r.attributes)).unwrap_or_default();
            let service = resource.get("service.name").map(flat).unwrap_or_default();
            let resource_key = normalize::content_hash(&format!("{resource:?}"));
            for sl in &mut rl.scope_logs {
                let scope = sl.scope.as_ref().map(|s| s.name.clone()).unwrap_or_default();
                for record in &mut sl.log_records {
                    position += 1;
                    let ids = (ids_or_empty(&record.trace_id, 16), ids_or_empty(&record.span_id, 8));
                    let (Some(trace_id), Some(span_id)) = ids else {
                        rejected.push(Rejected {
                            span_name: record.event_name.clone(),
                            reason: "trace_id/span_id of a wrong length".into(),
                            cause: "invalid_id",
                        });
                        continue;
                    };
                    // Moved out of the request, not copied: a record is read once.
                    let mut attrs = into_attributes(std::mem::take(&mut record.attributes));
                    let mut body = record.body.take().map(into_json).unwrap_or(Value::Null);
                    for v in attrs.values_mut() {
                        self.redactor.redact_value(v);
                    }
                    self.redactor.redact_value(&mut body);
                    let attrs = Attrs::new(attrs);
                    let event_name = if record.event_name.is_empty() {
                        attrs.string("event.name").unwrap_or_default()
                    } else {
                        record.event_name.clone()
                    };
                    // A record with no time at all is dated on receipt: dated 1970 it would be
                    // expired by the table's TTL the moment it is written.
                    let received = now.unix_timestamp_nanos() as u64;
                    let time =
                        [record.time_unix_nano, record.observed_time_unix_nano, received].into_iter().find(|t| *t > 0).unwrap_or(received);
                    if let Err(reason) = crate::normalize::time_range::check_nanos("time", time)
                        .and_then(|_| crate::normalize::time_range::check_nanos("observed time", record.observed_time_unix_nano))
                    {
                        rejected.push(Rejected { span_name: record.event_name.clone(), reason, cause: "time_out_of_range" });
                        continue;
                    }
                    if let Some(reason) = self.expired(nanos(time), now) {
                        rejected.push(Rejected { span_name: record.event_name.clone(), reason, cause: "expired" });
                        continue;
                    }
                    if event_name == SIGNAL_EVENT || event_name == wire::EVALUATION_EVENT {
                        let read = if event_name == SIGNAL_EVENT { wire::from_attributes } else { wire::from_evaluation };
                        let mut sig = read(log_signals.len(), &attrs.0, &trace_id, &span_id);
                        if let Ok(s) = &mut sig {
                            s.timestamp = s.timestamp.or(Some(nanos(time)));
                        }
                        log_signals.push(sig);
                    }
                    if !trace_id.is_empty()
                        && !span_id.is_empty()
                        && let Some(content) = read_log_event(&event_name, &attrs, &body)
                    {
                        contents.push(((project.to_string(), trace_id.clone(), span_id.clone()), content));
                    }
                    batch.logs.push(LogRecordRow {
                        project_id: project.to_string(),
                        // Its place in the request (8 hex digits: records of one request sort in the
                        // order they were sent, which per-message GenAI events need — they often
                        // share one timestamp), then everything that tells two records apart, so
                        // that only a record sent again (a retry, a replay of the log) collapses:
                        // its resource and scope, its severity and times (identical records logged
                        // twice are two records).
                        record_id: format!(
                            "{position:08x}{}",
                            normalize::content_hash(&format!(
                                "{resource_key}/{scope}/{position}/{trace_id}/{span_id}/{time}/{}/{}/{}/{event_name}/{body}/{:?}",
                                record.observed_time_unix_nano, record.severity_number, record.severity_text, attrs.0
                            ))
                        ),
                        timestamp: nanos(time),
                        observed_timestamp: nanos(record.observed_time_unix_nano.max(time)),
                        trace_id,
                        span_id,
                        severity_number: record.severity_number.clamp(0, 255) as u8,
                        severity_text: std::mem::take(&mut record.severity_text),
                        event_name,
                        body: into_flat(body),
                        service_name: service.clone(),
                        scope_name: scope.clone(),
                        resource_attributes: flat_map(&resource),
                        attributes: into_flat_map(attrs.0),
                        ingested_at: now,
                    });
                    // A large request is logged in slices, each durable before the next is
                    // built (acknowledged when all are; a retry collapses on the record ids).
                    if batch.logs.len() >= SLICE {
                        accepted += batch.logs.len() as u64;
                        let slice = (std::mem::take(&mut batch), std::mem::take(&mut contents), std::mem::take(&mut log_signals));
                        self.log_slice(project, slice, now).await?;
                    }
                }
            }
        }
        accepted += batch.logs.len() as u64;
        self.metrics.log_records_received.fetch_add(rejected.len() as u64, std::sync::atomic::Ordering::Relaxed);
        count_rejected(&self.metrics, "logs", &rejected);
        self.log_slice(project, (batch, contents, log_signals), now).await?;
        Ok(outcome(accepted, &rejected, "log records"))
    }

    /// Records of a request: GenAI content events joined to their calls, the records stored,
    /// then the signals among them.
    async fn log_slice(&self, project: &str, slice: LogSlice, now: OffsetDateTime) -> Result<(), WriteError> {
        let (mut batch, contents, log_signals) = slice;
        let mut touched: Vec<(String, String, String)> = Vec::new();
        {
            let mut joins = self.joins.lock().unwrap_or_else(|e| e.into_inner());
            for (key, content) in contents {
                if let Some(call) = joins.add_log(key, content)
                    && !touched.contains(&call)
                {
                    touched.push(call);
                }
            }
            // A call already stored gets a complete row again: ReplacingMergeTree keeps the newest.
            for key in &touched {
                if let Some(row) =
                    joins.with_merged(key, |ids, draft, is_error| self.call_row(&key.0, ids, draft, is_error, now, &mut batch.contents))
                {
                    batch.calls.push(row);
                }
            }
        }
        let records = batch.logs.len() as u64;
        self.metrics.log_records_received.fetch_add(records, std::sync::atomic::Ordering::Relaxed);
        self.store(batch).await?;
        self.metrics.log_records_accepted.fetch_add(records, std::sync::atomic::Ordering::Relaxed);
        self.store_signals(project, log_signals, SOURCE_OTLP_LOG).await
    }
}

/// A slice of a request's records: their rows, the GenAI content events among them (keyed by
/// call), the signals among them.
type LogSlice = (Batch, Vec<((String, String, String), crate::normalize::genai::LogContent)>, Vec<Result<wire::Signal, wire::Invalid>>);
