//! From an OTLP trace request to owned spans: ids checked, attributes typed, raw rows built.
//!
//! A span whose ids have the wrong length, or whose times storage cannot hold
//! ([`super::time_range`]), is rejected (counted and reported as OTLP partial success); every
//! other span is kept, whatever its attributes.

use std::sync::Arc;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::{Span, span, status};
use time::OffsetDateTime;

use flywheel_schemas::rowbinary;
use flywheel_schemas::rows::SpanRow;

use super::{Attrs, Event, SpanIds, SpanView};
use crate::otlp::{attributes, flat, flat_map, hex_id, into_attributes, to_hex};

/// One decoded span with everything the normaliser and the raw `spans` row need.
#[derive(Debug, Clone)]
pub struct DecodedSpan {
    pub ids: SpanIds,
    pub name: String,
    pub kind: &'static str,
    pub trace_state: String,
    pub scope_name: String,
    pub scope_version: String,
    /// Shared by the spans of a resource (scope): never copied per span in memory.
    pub scope_attrs: Arc<Attrs>,
    pub resource: Arc<Attrs>,
    pub attrs: Attrs,
    pub events: Vec<Event>,
    pub links: Vec<(String, String, Attrs)>,
    pub status: &'static str,
    pub status_message: String,
    pub dropped: (u32, u32, u32),
}

impl DecodedSpan {
    pub fn view(&self) -> SpanView<'_> {
        SpanView {
            name: &self.name,
            scope_name: &self.scope_name,
            resource: &self.resource,
            attrs: &self.attrs,
            events: &self.events,
            is_error: self.status == "error",
            status_message: &self.status_message,
        }
    }

    /// The raw row: every attribute, event and link as received (values flattened to strings).
    pub fn row(&self, project: &str, now: OffsetDateTime) -> SpanRow {
        SpanRow {
            project_id: project.to_string(),
            trace_id: self.ids.trace_id.clone(),
            span_id: self.ids.span_id.clone(),
            parent_span_id: self.ids.parent_span_id.clone(),
            trace_state: self.trace_state.clone(),
            name: self.name.clone(),
            kind: self.kind.to_string(),
            start_time: self.ids.start,
            end_time: self.ids.end,
            duration_ns: (self.ids.end - self.ids.start).whole_nanoseconds().max(0) as u64,
            status_code: self.status.to_string(),
            status_message: self.status_message.clone(),
            service_name: self.ids.service_name.clone(),
            scope_name: self.scope_name.clone(),
            scope_version: self.scope_version.clone(),
            resource_attributes: flat_map(&self.resource.0),
            scope_attributes: flat_map(&self.scope_attrs.0),
            attributes: flat_map(&self.attrs.0),
            dropped_attributes_count: self.dropped.0,
            event_times: self.events.iter().map(|e| e.time).collect(),
            event_names: self.events.iter().map(|e| e.name.clone()).collect(),
            event_attributes: self.events.iter().map(|e| flat_map(&e.attrs.0)).collect(),
            dropped_events_count: self.dropped.1,
            link_trace_ids: self.links.iter().map(|l| l.0.clone()).collect(),
            link_span_ids: self.links.iter().map(|l| l.1.clone()).collect(),
            link_attributes: self.links.iter().map(|l| flat_map(&l.2.0)).collect(),
            dropped_links_count: self.dropped.2,
            ingested_at: now,
        }
    }

    /// [`DecodedSpan::row`] encoded straight into RowBinary, field for field in the columns'
    /// order, without building the row: no attribute copied into a string of its own
    /// (`a_span_encodes_as_its_row_does` holds it to the row type's encoding).
    pub fn encode_row(&self, project: &str, now: OffsetDateTime, out: &mut Vec<u8>) -> Result<(), rowbinary::EncodeError> {
        use rowbinary::{put_len, put_str, put_time, put_u32, put_u64};
        for s in [project, &self.ids.trace_id, &self.ids.span_id, &self.ids.parent_span_id, &self.trace_state, &self.name, self.kind] {
            put_str(out, s);
        }
        put_time(out, self.ids.start)?;
        put_time(out, self.ids.end)?;
        put_u64(out, (self.ids.end - self.ids.start).whole_nanoseconds().max(0) as u64);
        for s in [self.status, &self.status_message, &self.ids.service_name, &self.scope_name, &self.scope_version] {
            put_str(out, s);
        }
        put_flat(out, &self.resource.0);
        put_flat(out, &self.scope_attrs.0);
        put_flat(out, &self.attrs.0);
        put_u32(out, self.dropped.0);
        put_len(out, self.events.len());
        for e in &self.events {
            put_time(out, e.time)?;
        }
        put_len(out, self.events.len());
        for e in &self.events {
            put_str(out, &e.name);
        }
        put_len(out, self.events.len());
        for e in &self.events {
            put_flat(out, &e.attrs.0);
        }
        put_u32(out, self.dropped.1);
        put_len(out, self.links.len());
        for l in &self.links {
            put_str(out, &l.0);
        }
        put_len(out, self.links.len());
        for l in &self.links {
            put_str(out, &l.1);
        }
        put_len(out, self.links.len());
        for l in &self.links {
            put_flat(out, &l.2.0);
        }
        put_u32(out, self.dropped.2);
        put_time(out, now)
    }
}

/// An attribute map as [`crate::otlp::flat_map`] stores it, written without copying it.
fn put_flat(out: &mut Vec<u8>, attrs: &std::collections::BTreeMap<String, serde_json::Value>) {
    rowbinary::put_len(out, attrs.len());
    for (k, v) in attrs {
        rowbinary::put_str(out, k);
        match v {
            serde_json::Value::String(s) => rowbinary::put_str(out, s),
            other => rowbinary::put_str(out, &crate::otlp::flat(other)),
        }
    }
}

/// A span refused for a reason the client must hear about (OTLP partial success).
#[derive(Debug, Clone, PartialEq)]
pub struct Rejected {
    pub span_name: String,
    pub reason: String,
    /// The `reason` label of `flywheel_rejected_total`.
    pub cause: &'static str,
}

pub fn nanos(ts: u64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(ts as i128).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

fn kind_name(kind: i32) -> &'static str {
    match span::SpanKind::try_from(kind) {
        Ok(span::SpanKind::Internal) => "internal",
        Ok(span::SpanKind::Server) => "server",
        Ok(span::SpanKind::Client) => "client",
        Ok(span::SpanKind::Producer) => "producer",
        Ok(span::SpanKind::Consumer) => "consumer",
        _ => "unspecified",
    }
}

/// Every span of a request, in order, and the ones refused.
pub fn decode_spans(mut request: ExportTraceServiceRequest) -> (Vec<DecodedSpan>, Vec<Rejected>) {
    decode_spans_where(&mut request, |_| true)
}

/// The spans of a request that `keep` selects, in order, and the ones of them refused.
///
/// The text of a kept span moves out of the request into the decoded span (a span is decoded
/// once: the slices of a large request are disjoint); its resource and scope stay, shared by
/// the slices. Copying it cost ~10 % of the collector's CPU at 60 spans per request.
pub fn decode_spans_where(request: &mut ExportTraceServiceRequest, keep: impl Fn(&Span) -> bool) -> (Vec<DecodedSpan>, Vec<Rejected>) {
    let mut spans = Vec::new();
    let mut rejected = Vec::new();
    for rs in &mut request.resource_spans {
        let resource = Arc::new(Attrs::new(rs.resource.as_ref().map(|r| attributes(&r.attributes)).unwrap_or_default()));
        let service_name = resource.get("service.name").map(flat).unwrap_or_default();
        for ss in &mut rs.scope_spans {
            let (scope_name, scope_version, scope_attrs) = match &ss.scope {
                Some(s) => (s.name.clone(), s.version.clone(), Arc::new(Attrs::new(attributes(&s.attributes)))),
                None => Default::default(),
            };
            for s in ss.spans.iter_mut().filter(|s| keep(s)) {
                match decode_span(s, &resource, &service_name, &scope_name, &scope_version, &scope_attrs) {
                    Ok(span) => spans.push(span),
                    Err((cause, reason)) => rejected.push(Rejected { span_name: s.name.clone(), reason, cause }),
                }
            }
        }
    }
    (spans, rejected)
}

fn decode_span(
    s: &mut Span,
    resource: &Arc<Attrs>,
    service: &str,
    scope: &str,
    version: &str,
    scope_attrs: &Arc<Attrs>,
) -> Result<DecodedSpan, (&'static str, String)> {
    let id = |reason: String| ("invalid_id", reason);
    let when = |reason: String| ("time_out_of_range", reason);
    let trace_id = hex_id(&s.trace_id, 16).ok_or_else(|| id(format!("trace_id must be 16 non-zero bytes, got {}", s.trace_id.len())))?;
    let span_id = hex_id(&s.span_id, 8).ok_or_else(|| id(format!("span_id must be 8 non-zero bytes, got {}", s.span_id.len())))?;
    let parent_span_id = if s.parent_span_id.is_empty() {
        String::new()
    } else {
        hex_id(&s.parent_span_id, 8)
            .ok_or_else(|| id(format!("parent_span_id must be empty or 8 bytes, got {}", s.parent_span_id.len())))?
    };
    // A span without times (a buggy exporter) is dated on receipt: dated 1970 it would be
    // expired by the table's TTL the moment it is written, silently.
    let received = time::OffsetDateTime::now_utc().unix_timestamp_nanos() as u64;
    let start_ns = [s.start_time_unix_nano, s.end_time_unix_nano, received].into_iter().find(|t| *t > 0).unwrap_or(received);
    let start = nanos(start_ns);
    let end = if s.end_time_unix_nano >= start_ns { nanos(s.end_time_unix_nano) } else { start };
    super::time_range::check("start_time", start).map_err(when)?;
    super::time_range::check("end_time", end).map_err(when)?;
    for e in &s.events {
        super::time_range::check_nanos(&format!("time of event `{}`", e.name), e.time_unix_nano).map_err(when)?;
    }
    let (status, status_message) = match &mut s.status {
        Some(st) => (
            match status::StatusCode::try_from(st.code) {
                Ok(status::StatusCode::Error) => "error",
                Ok(status::StatusCode::Ok) => "ok",
                _ => "unset",
            },
            std::mem::take(&mut st.message),
        ),
        None => ("unset", String::new()),
    };
    Ok(DecodedSpan {
        ids: SpanIds { trace_id, span_id, parent_span_id, start, end, service_name: service.to_string() },
        name: std::mem::take(&mut s.name),
        kind: kind_name(s.kind),
        trace_state: std::mem::take(&mut s.trace_state),
        scope_name: scope.to_string(),
        scope_version: version.to_string(),
        scope_attrs: scope_attrs.clone(),
        resource: resource.clone(),
        attrs: Attrs::new(into_attributes(std::mem::take(&mut s.attributes))),
        events: std::mem::take(&mut s.events)
            .into_iter()
            .map(|e| Event { name: e.name, time: nanos(e.time_unix_nano), attrs: Attrs::new(into_attributes(e.attributes)) })
            .collect(),
        links: std::mem::take(&mut s.links)
            .into_iter()
            .map(|l| (to_hex(&l.trace_id), to_hex(&l.span_id), Attrs::new(into_attributes(l.attributes))))
            .collect(),
        status,
        status_message,
        dropped: (s.dropped_attributes_count, s.dropped_events_count, s.dropped_links_count),
    })
}

/// Test support: the spans of a fixture file (`tests/fixtures/otlp/...`), decoded by extension.
#[cfg(test)]
pub fn fixture_spans(relative: &str) -> Vec<DecodedSpan> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/otlp").join(relative);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let (body, encoding) = if relative.ends_with(".json") {
        (bytes, crate::otlp::Encoding::Json)
    } else if relative.ends_with(".gz") {
        (crate::otlp::decompress(&bytes, Some("gzip"), 1 << 26).unwrap(), crate::otlp::Encoding::Protobuf)
    } else {
        (bytes, crate::otlp::Encoding::Protobuf)
    };
    let request = crate::otlp::decode_traces(&body, encoding, &mut |_| true).unwrap().request;
    let (spans, rejected) = decode_spans(request);
    assert!(rejected.is_empty(), "{rejected:?}");
    spans
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The span's row written field by field is byte for byte the row type's encoding — the
    /// schema — for every captured producer: events, links, nested and non-string values.
    #[test]
    fn a_span_encodes_as_its_row_does() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/otlp");
        let now = OffsetDateTime::now_utc();
        let mut checked = 0;
        for dir in std::fs::read_dir(&root).unwrap() {
            let dir = dir.unwrap().path();
            if !dir.is_dir() {
                continue;
            }
            for file in std::fs::read_dir(&dir).unwrap() {
                let name = file.unwrap().file_name().into_string().unwrap();
                if !(name.ends_with(".json") || name.ends_with(".pb")) {
                    continue;
                }
                let relative = format!("{}/{name}", dir.file_name().unwrap().to_str().unwrap());
                let body = std::fs::read(root.join(&relative)).unwrap();
                let encoding = if name.ends_with(".json") { crate::otlp::Encoding::Json } else { crate::otlp::Encoding::Protobuf };
                // Log and metric captures sit beside the traces.
                let Ok(decoded) = crate::otlp::decode_traces(&body, encoding, &mut |_| true) else { continue };
                for span in decode_spans(decoded.request).0 {
                    let (mut direct, mut via_row) = (Vec::new(), Vec::new());
                    span.encode_row("p", now, &mut direct).unwrap();
                    rowbinary::encode(&span.row("p", now), &mut via_row).unwrap();
                    assert!(direct == via_row, "{relative}: span `{}` encodes differently", span.name);
                    checked += 1;
                }
            }
        }
        assert!(checked > 100, "{checked} spans checked");
    }
}
