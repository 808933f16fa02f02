//! Repairs of bodies the typed decoders would refuse whole for one bad value.
//!
//! prost refuses a protobuf message when one string field is not valid UTF-8, and serde refuses
//! a JSON body for one unpaired surrogate escape or one `"doubleValue": "NaN"`. Each is one
//! value in a request of hundreds of good spans, and real clients send them: OTel JS truncates
//! attribute values with `substring` (which can split a surrogate pair, and `JSON.stringify`
//! then writes `"\ud83d"`), C++ and hand-rolled exporters cut strings at a byte limit in the
//! middle of a character, and protobuf's JSON mapping writes non-finite doubles as the strings
//! `"NaN"`, `"Infinity"`, `"-Infinity"`. The OpenTelemetry Collector accepts such requests;
//! refusing them lost the good spans beside the bad value.
//!
//! The repairs run only after a decode failed (or, for JSON, when proto field names are
//! present), so well-formed requests pay nothing. Each keeps the value, marked: invalid bytes
//! and unpaired surrogates become U+FFFD (as `String::from_utf8_lossy` does), a non-finite
//! double its name as a string (what [`super::any_to_json`] stores for one received in
//! protobuf). The reply says how many values were repaired (an OTLP partial success with
//! nothing rejected is a warning), and `flywheel_values_repaired_total` counts them.

/// How many values a repair changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Repairs {
    /// Strings with invalid UTF-8 (or, in JSON, unpaired surrogate escapes).
    pub strings: usize,
    /// JSON doubles sent as strings (`"NaN"`, `"Infinity"`, `"1.5"`).
    pub numbers: usize,
    /// Values nested deeper than the decoders read ([`MAX_VALUE_DEPTH`]), cut.
    pub deep: usize,
    /// The attribute (or log body) that held the first deep value, to name in the reply.
    pub deep_attribute: Option<String>,
}

/// How deeply attribute values (`kvlistValue` / `arrayValue`) may nest before the rest is cut:
/// below both decoders' recursion limits (prost's 100 messages, serde_json's 128 brackets) with
/// the request's own levels on top. No instrumentation nests this deep; a value that does is a
/// serialised object graph, and refusing the request for it lost every span beside it.
pub const MAX_VALUE_DEPTH: usize = 24;

/// What a cut value is stored as.
pub const CUT_MARKER: &str = "[flywheel: value nested deeper than 24 levels, cut]";

impl Repairs {
    pub fn any(&self) -> bool {
        self.strings + self.numbers + self.deep > 0
    }

    /// Notes a deep value cut under `attribute`.
    fn cut(&mut self, attribute: &str) {
        self.deep += 1;
        if self.deep_attribute.is_none() {
            self.deep_attribute = Some(if attribute.is_empty() { "(log body)".to_string() } else { attribute.to_string() });
        }
    }

    /// The warning for the reply, `None` when nothing was repaired.
    pub fn message(&self) -> Option<String> {
        let mut parts = Vec::new();
        if self.strings > 0 {
            parts.push(format!(
                "{} string value(s) were not valid UTF-8 (or held unpaired surrogates) and were stored with U+FFFD in place of the bad bytes",
                self.strings
            ));
        }
        if self.numbers > 0 {
            parts.push(format!(
                "{} doubleValue(s) were sent as strings; non-finite ones (NaN, Infinity) were stored as strings",
                self.numbers
            ));
        }
        if self.deep > 0 {
            parts.push(format!(
                "{} attribute value(s) nested more than {MAX_VALUE_DEPTH} levels deep (the first in `{}`) were cut and stored as \"{CUT_MARKER}\"; send deep structures as a JSON string value",
                self.deep,
                self.deep_attribute.as_deref().unwrap_or("?")
            ));
        }
        (!parts.is_empty()).then(|| parts.join("; "))
    }
}

/// Which OTLP request a protobuf body holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Root {
    Traces,
    Logs,
    Metrics,
}

/// The OTLP messages that hold strings, directly or below them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Msg {
    TraceRequest,
    ResourceSpans,
    ScopeSpans,
    Span,
    Event,
    Link,
    Status,
    LogsRequest,
    ResourceLogs,
    ScopeLogs,
    LogRecord,
    MetricsRequest,
    ResourceMetrics,
    ScopeMetrics,
    Metric,
    /// Gauge and Sum: their points are `NumberDataPoint`s.
    NumberPoints,
    HistogramPoints,
    ExponentialPoints,
    SummaryPoints,
    NumberPoint,
    HistogramPoint,
    ExponentialPoint,
    SummaryPoint,
    Exemplar,
    Resource,
    EntityRef,
    Scope,
    KeyValue,
    AnyValue,
    ArrayValue,
    KeyValueList,
}

enum Field {
    Text,
    Message(Msg),
    /// Bytes, or a message with no string below it: copied as received.
    Other,
}

/// The kind of length-delimited field `number` of `msg`, from the OTLP protos (v1.x).
fn field(msg: Msg, number: u64) -> Field {
    use Field::{Message as M, Other, Text};
    use Msg::*;
    match (msg, number) {
        (TraceRequest, 1) => M(ResourceSpans),
        (LogsRequest, 1) => M(ResourceLogs),
        (MetricsRequest, 1) => M(ResourceMetrics),
        (ResourceSpans | ResourceLogs | ResourceMetrics, 1) => M(Resource),
        (ResourceSpans, 2) => M(ScopeSpans),
        (ResourceLogs, 2) => M(ScopeLogs),
        (ResourceMetrics, 2) => M(ScopeMetrics),
        (ResourceSpans | ResourceLogs | ResourceMetrics | ScopeSpans | ScopeLogs | ScopeMetrics, 3) => Text,
        (ScopeSpans | ScopeLogs | ScopeMetrics, 1) => M(Scope),
        (ScopeSpans, 2) => M(Span),
        (ScopeLogs, 2) => M(LogRecord),
        (ScopeMetrics, 2) => M(Metric),
        (Span, 3 | 5) => Text,
        (Span, 9) => M(KeyValue),
        (Span, 11) => M(Event),
        (Span, 13) => M(Link),
        (Span, 15) => M(Status),
        (Event, 2) | (Link, 3) | (Status, 2) => Text,
        (Event, 3) | (Link, 4) => M(KeyValue),
        (LogRecord, 3 | 12) => Text,
        (LogRecord, 5) => M(AnyValue),
        (LogRecord, 6) => M(KeyValue),
        (Metric, 1..=3) => Text,
        (Metric, 12) => M(KeyValue),
        (Metric, 5 | 7) => M(NumberPoints),
        (Metric, 9) => M(HistogramPoints),
        (Metric, 10) => M(ExponentialPoints),
        (Metric, 11) => M(SummaryPoints),
        (NumberPoints, 1) => M(NumberPoint),
        (HistogramPoints, 1) => M(HistogramPoint),
        (ExponentialPoints, 1) => M(ExponentialPoint),
        (SummaryPoints, 1) => M(SummaryPoint),
        (NumberPoint, 7) | (HistogramPoint, 9) | (ExponentialPoint, 1) | (SummaryPoint, 7) | (Exemplar, 7) => M(KeyValue),
        (NumberPoint, 5) | (HistogramPoint, 8) | (ExponentialPoint, 11) => M(Exemplar),
        (Resource, 1) | (Scope, 3) | (KeyValueList, 1) => M(KeyValue),
        (Resource, 3) => M(EntityRef),
        (EntityRef, 1..=4) | (Scope, 1 | 2) | (KeyValue, 1) | (AnyValue, 1) => Text,
        (KeyValue, 2) | (ArrayValue, 1) => M(AnyValue),
        (AnyValue, 5) => M(ArrayValue),
        (AnyValue, 6) => M(KeyValueList),
        _ => Other,
    }
}

/// The next `n` bytes of `input`, consumed.
fn take<'a>(input: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    let (head, rest) = (input.get(..n)?, input.get(n..)?);
    *input = rest;
    Some(head)
}

/// prost's recursion limit: deeper bodies are refused by the decoder anyway.
const MAX_DEPTH: usize = 100;

/// `body` with every string field that is not valid UTF-8 replaced by its lossy form, and how
/// many were; `None` when the wire data is malformed otherwise (the decoder's error stands).
pub fn protobuf(body: &[u8], root: Root) -> Option<(Vec<u8>, Repairs)> {
    let msg = match root {
        Root::Traces => Msg::TraceRequest,
        Root::Logs => Msg::LogsRequest,
        Root::Metrics => Msg::MetricsRequest,
    };
    let mut out = Vec::with_capacity(body.len() + 64);
    let mut walk = Walk::default();
    rewrite(body, msg, 0, &mut out, &mut walk)?;
    Some((out, walk.repairs))
}

/// The state of a protobuf rewrite: what it repaired, the attribute being read and how many
/// values deep it is.
#[derive(Default)]
struct Walk {
    repairs: Repairs,
    attribute: String,
    values: usize,
}

fn rewrite(mut input: &[u8], msg: Msg, depth: usize, out: &mut Vec<u8>, walk: &mut Walk) -> Option<()> {
    use prost::encoding::{decode_varint, encode_varint};
    if depth > MAX_DEPTH {
        return None;
    }
    while !input.is_empty() {
        let key = decode_varint(&mut input).ok()?;
        encode_varint(key, out);
        match key & 7 {
            0 => encode_varint(decode_varint(&mut input).ok()?, out),
            1 => out.extend_from_slice(take(&mut input, 8)?),
            5 => out.extend_from_slice(take(&mut input, 4)?),
            2 => {
                let len = usize::try_from(decode_varint(&mut input).ok()?).ok()?;
                let data = take(&mut input, len)?;
                match field(msg, key >> 3) {
                    Field::Text if std::str::from_utf8(data).is_err() => {
                        let text = String::from_utf8_lossy(data);
                        encode_varint(text.len() as u64, out);
                        out.extend_from_slice(text.as_bytes());
                        walk.repairs.strings += 1;
                        if msg == Msg::KeyValue && walk.values == 0 {
                            walk.attribute = text.into_owned();
                        }
                    }
                    // An attribute's name, remembered to name it if its value is cut.
                    Field::Text if msg == Msg::KeyValue && walk.values == 0 => {
                        walk.attribute = String::from_utf8_lossy(data).into_owned();
                        encode_varint(len as u64, out);
                        out.extend_from_slice(data);
                    }
                    Field::Message(Msg::AnyValue) if walk.values >= MAX_VALUE_DEPTH => {
                        // AnyValue.string_value (field 1, length-delimited) holding the marker.
                        let mut sub = Vec::with_capacity(CUT_MARKER.len() + 2);
                        encode_varint((1 << 3) | 2, &mut sub);
                        encode_varint(CUT_MARKER.len() as u64, &mut sub);
                        sub.extend_from_slice(CUT_MARKER.as_bytes());
                        encode_varint(sub.len() as u64, out);
                        out.extend_from_slice(&sub);
                        let attribute = std::mem::take(&mut walk.attribute);
                        walk.repairs.cut(&attribute);
                        walk.attribute = attribute;
                    }
                    Field::Message(inner) => {
                        let mut sub = Vec::with_capacity(data.len());
                        let value = inner == Msg::AnyValue;
                        walk.values += usize::from(value);
                        rewrite(data, inner, depth + 1, &mut sub, walk)?;
                        walk.values -= usize::from(value);
                        encode_varint(sub.len() as u64, out);
                        out.extend_from_slice(&sub);
                    }
                    Field::Text | Field::Other => {
                        encode_varint(len as u64, out);
                        out.extend_from_slice(data);
                    }
                }
            }
            // Groups (long deprecated, never in OTLP) and invalid wire types.
            _ => return None,
        }
    }
    Some(())
}

/// A JSON body made acceptable to the typed OTLP/JSON decoder: proto field names
/// (`resource_spans`) renamed to lowerCamelCase as protobuf's JSON mapping allows, empty
/// repeated fields left out (`"arrayValue": {}`, sent by Traceloop) filled in, invalid UTF-8
/// and unpaired surrogate escapes in strings replaced by U+FFFD, `doubleValue`s sent as strings
/// made numbers (or, for non-finite ones, string values), and a leading byte-order mark
/// dropped. One pass over the text: the result is never more than three times the body (a
/// string of invalid bytes, each becoming a 3-byte U+FFFD), and no JSON tree is built.
pub fn json(body: &[u8]) -> (Vec<u8>, Repairs) {
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    let mut out = Vec::with_capacity(body.len() + body.len() / 8);
    let mut repairs = Repairs::default();
    // The key whose value comes next, when it is one the repairs care about, and where that
    // key starts in `out` (to rewrite the pair).
    let mut pending: Option<(Pending, usize)> = None;
    // The open objects and arrays, to find attribute values and cut those nested too deep.
    let mut nest = Nesting::default();
    let mut i = 0;
    while i < body.len() {
        let b = body[i];
        match b {
            b'"' => {
                let start = out.len();
                i = copy_string(body, i, &mut out, &mut repairs);
                let after = skip_space(body, i);
                if body.get(after) == Some(&b':') {
                    pending = rename_key(&mut out, start).map(|p| (p, start));
                    nest.key = Key::of(copied(&out, start));
                } else {
                    if let Some((Pending::Double, key_start)) = pending {
                        double_from_string(&mut out, start, key_start, &mut repairs);
                    }
                    if nest.key == Key::Name && nest.values == 0 {
                        nest.attribute = String::from_utf8_lossy(copied(&out, start)).into_owned();
                    }
                    pending = None;
                    nest.key = Key::None;
                }
            }
            b'{' | b'[' => {
                if nest.open(b) {
                    // Too deep: this value is replaced by the marker.
                    i = skip_value(body, i);
                    out.extend_from_slice(br#"{"stringValue":""#);
                    out.extend_from_slice(CUT_MARKER.as_bytes());
                    out.extend_from_slice(br#""}"#);
                    repairs.cut(&nest.attribute);
                    pending = None;
                    continue;
                }
                if b == b'{' && matches!(pending, Some((Pending::List, _))) {
                    let next = skip_space(body, i + 1);
                    if body.get(next) == Some(&b'}') {
                        out.extend_from_slice(br#"{"values":[]}"#);
                        nest.close();
                        i = next + 1;
                        pending = None;
                        continue;
                    }
                }
                out.push(b);
                i += 1;
                pending = None;
            }
            b'}' | b']' => {
                nest.close();
                out.push(b);
                i += 1;
                pending = None;
            }
            _ => {
                out.push(b);
                if !matches!(b, b':' | b' ' | b'\t' | b'\n' | b'\r') {
                    pending = None;
                }
                i += 1;
            }
        }
    }
    (out, repairs)
}

/// The text of the string just copied to `out[start..]`, without its quotes; empty when the
/// body ended inside it or a repair rewrote it (a `doubleValue` made a number).
fn copied(out: &[u8], start: usize) -> &[u8] {
    out.get(start + 1..out.len().saturating_sub(1)).unwrap_or_default()
}

/// The open objects and arrays of a JSON body, as the repair walks it.
#[derive(Default)]
struct Nesting {
    /// The innermost [`MAX_FRAMES`] open objects and arrays; deeper ones are only counted
    /// (serde refuses them anyway), so a body of brackets costs no memory per bracket.
    frames: Vec<Frame>,
    untracked: usize,
    /// How many of `frames` are `AnyValue`s.
    values: usize,
    /// The key just read, whose value comes next.
    key: Key,
    /// The top-level attribute being read (its `"key"`).
    attribute: String,
}

const MAX_FRAMES: usize = 256;

/// The keys the walk cares about.
#[derive(Default, Clone, Copy, PartialEq, Eq)]
enum Key {
    /// None: an array element.
    #[default]
    None,
    /// `value` (of a KeyValue) or `body` (of a log record): an `AnyValue` follows.
    Value,
    Values,
    ArrayValue,
    /// `key` of a KeyValue: the attribute's name follows.
    Name,
    Other,
}

impl Key {
    fn of(name: &[u8]) -> Key {
        match name {
            b"value" | b"body" => Key::Value,
            b"values" => Key::Values,
            b"arrayValue" => Key::ArrayValue,
            b"key" => Key::Name,
            _ => Key::Other,
        }
    }
}

struct Frame {
    /// An `AnyValue` object: an attribute's value, a log body, an element of an `arrayValue`.
    value: bool,
    /// The key this object or array is the value of.
    key: Key,
}

impl Nesting {
    /// Opens an object or array; true when that nests values more than [`MAX_VALUE_DEPTH`]
    /// deep: the caller cuts it.
    fn open(&mut self, bracket: u8) -> bool {
        let key = std::mem::take(&mut self.key);
        if self.untracked > 0 || self.frames.len() >= MAX_FRAMES {
            self.untracked += 1;
            return false;
        }
        let n = self.frames.len();
        let value = bracket == b'{'
            && match key {
                Key::Value => true,
                // An element of `arrayValue.values`.
                Key::None => n >= 2 && self.frames[n - 1].key == Key::Values && self.frames[n - 2].key == Key::ArrayValue,
                _ => false,
            };
        if value && self.values >= MAX_VALUE_DEPTH {
            return true;
        }
        self.values += usize::from(value);
        self.frames.push(Frame { value, key });
        false
    }

    fn close(&mut self) {
        self.key = Key::None;
        if self.untracked > 0 {
            self.untracked -= 1;
        } else if let Some(frame) = self.frames.pop() {
            self.values -= usize::from(frame.value);
        }
    }
}

/// Skips, from `body[start]` (an opening bracket), to after the bracket that closes it
/// (strings skipped whole); the end of the body if it never closes.
fn skip_value(body: &[u8], start: usize) -> usize {
    let mut level = 1usize;
    let mut i = start + 1;
    while i < body.len() {
        match body[i] {
            b'"' => {
                i += 1;
                while i < body.len() && body[i] != b'"' {
                    i += if body[i] == b'\\' { 2 } else { 1 };
                }
            }
            b'{' | b'[' => level += 1,
            b'}' | b']' => {
                level -= 1;
                if level == 0 {
                    return i + 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    body.len()
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Pending {
    /// `arrayValue` / `kvlistValue`: an empty object needs its `values`.
    List,
    /// `doubleValue`: a string needs to become a number.
    Double,
}

fn skip_space(body: &[u8], mut i: usize) -> usize {
    while body.get(i).is_some_and(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r')) {
        i += 1;
    }
    i
}

/// Copies the string starting at `body[start]` (a `"`) to `out`, repaired; returns the index
/// after its closing quote (or the end of the body, for an unterminated string: the decoder
/// will say so).
fn copy_string(body: &[u8], start: usize, out: &mut Vec<u8>, repairs: &mut Repairs) -> usize {
    out.push(b'"');
    let mut i = start + 1;
    let mut repaired = false;
    while i < body.len() {
        match body[i] {
            b'"' => {
                out.push(b'"');
                i += 1;
                break;
            }
            b'\\' => match (body.get(i + 1), hex4(body, i + 2)) {
                (Some(b'u'), Some(unit)) if (0xD800..0xDC00).contains(&unit) => {
                    let low = (body.get(i + 6) == Some(&b'\\') && body.get(i + 7) == Some(&b'u')).then(|| hex4(body, i + 8)).flatten();
                    if low.is_some_and(|l| (0xDC00..0xE000).contains(&l)) {
                        out.extend_from_slice(&body[i..i + 12]);
                        i += 12;
                    } else {
                        out.extend_from_slice(br"\ufffd");
                        repaired = true;
                        i += 6;
                    }
                }
                (Some(b'u'), Some(unit)) if (0xDC00..0xE000).contains(&unit) => {
                    out.extend_from_slice(br"\ufffd");
                    repaired = true;
                    i += 6;
                }
                _ => {
                    let end = (i + 2).min(body.len());
                    out.extend_from_slice(&body[i..end]);
                    i = end;
                }
            },
            _ => {
                // A run of plain bytes: no `"` or `\` can be inside a multi-byte character.
                let run_end = body[i..].iter().position(|b| matches!(b, b'"' | b'\\')).map_or(body.len(), |p| i + p);
                let run = &body[i..run_end];
                if run.is_ascii() || std::str::from_utf8(run).is_ok() {
                    out.extend_from_slice(run);
                } else {
                    out.extend_from_slice(String::from_utf8_lossy(run).as_bytes());
                    repaired = true;
                }
                i = run_end;
            }
        }
    }
    repairs.strings += usize::from(repaired);
    i
}

fn hex4(body: &[u8], at: usize) -> Option<u32> {
    let digits = std::str::from_utf8(body.get(at..at + 4)?).ok()?;
    u32::from_str_radix(digits, 16).ok()
}

/// Renames the key just copied to `out[start..]` from snake_case to lowerCamelCase (in OTLP
/// JSON, object keys are field names: user data — attribute keys, bodies — is never a key), and
/// says whether its value needs a repair.
fn rename_key(out: &mut Vec<u8>, start: usize) -> Option<Pending> {
    let key = &out[start + 1..out.len().saturating_sub(1)];
    if key.contains(&b'_') && key.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'_') {
        let mut camel = Vec::with_capacity(key.len());
        let mut upper = false;
        for &b in key {
            if b == b'_' {
                upper = true;
            } else {
                camel.push(if upper { b.to_ascii_uppercase() } else { b });
                upper = false;
            }
        }
        out.truncate(start + 1);
        out.extend_from_slice(&camel);
        out.push(b'"');
    }
    match &out[start + 1..out.len() - 1] {
        b"arrayValue" | b"kvlistValue" => Some(Pending::List),
        b"doubleValue" => Some(Pending::Double),
        _ => None,
    }
}

/// The string just copied to `out[start..]` is the value of a `doubleValue` key starting at
/// `key_start`: a finite number becomes a JSON number, `NaN`/`Infinity`/`-Infinity` a string
/// value; anything else is left for the decoder to refuse.
fn double_from_string(out: &mut Vec<u8>, start: usize, key_start: usize, repairs: &mut Repairs) {
    let text = String::from_utf8_lossy(&out[start + 1..out.len() - 1]).into_owned();
    match text.as_str() {
        "NaN" | "Infinity" | "-Infinity" => {
            out.truncate(key_start);
            out.extend_from_slice(br#""stringValue":""#);
            out.extend_from_slice(text.as_bytes());
            out.push(b'"');
        }
        _ => match text.trim().parse::<f64>() {
            Ok(number) if number.is_finite() => {
                out.truncate(start);
                out.extend_from_slice(serde_json::Number::from_f64(number).map_or_else(|| "0".to_string(), |n| n.to_string()).as_bytes());
            }
            _ => return,
        },
    }
    repairs.numbers += 1;
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{
        AnyValue, ArrayValue, EntityRef, InstrumentationScope, KeyValue, KeyValueList, any_value::Value,
    };
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    use opentelemetry_proto::tonic::metrics::v1 as m;
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, span};
    use prost::Message;

    /// Every string of a request is `é` (C3 A9); the test turns each into C3 28, which is not
    /// UTF-8 and which the lossy repair makes U+FFFD followed by `(`. A string field the table
    /// misses leaves the body undecodable; a bytes field wrongly taken for text would change.
    const BAD_TEXT: &str = "\u{FFFD}(";

    fn corrupt(bytes: &[u8]) -> (Vec<u8>, usize) {
        let mut out = bytes.to_vec();
        let mut n = 0;
        for i in 0..out.len().saturating_sub(1) {
            if out[i] == 0xC3 && out[i + 1] == 0xA9 {
                out[i + 1] = 0x28;
                n += 1;
            }
        }
        (out, n)
    }

    fn attributes(t: &str) -> Vec<KeyValue> {
        let string = |s: &str| AnyValue { value: Some(Value::StringValue(s.into())) };
        let list = KeyValueList { values: vec![KeyValue { key: t.into(), value: Some(string(t)), key_strindex: 0 }] };
        let array = ArrayValue { values: vec![string(t), AnyValue { value: Some(Value::KvlistValue(list)) }] };
        vec![
            KeyValue { key: t.into(), value: Some(string(t)), key_strindex: 0 },
            KeyValue { key: t.into(), value: Some(AnyValue { value: Some(Value::ArrayValue(array)) }), key_strindex: 0 },
            // Bytes that are not UTF-8 are bytes: left as they are.
            KeyValue {
                key: "raw".into(),
                value: Some(AnyValue { value: Some(Value::BytesValue(vec![0xC3, 0x28, 0xFF])) }),
                key_strindex: 0,
            },
        ]
    }

    fn scope(t: &str) -> Option<InstrumentationScope> {
        Some(InstrumentationScope { name: t.into(), version: t.into(), attributes: attributes(t), dropped_attributes_count: 0 })
    }

    fn resource(t: &str) -> Option<Resource> {
        let entity = EntityRef { schema_url: t.into(), r#type: t.into(), id_keys: vec![t.into()], description_keys: vec![t.into()] };
        Some(Resource { attributes: attributes(t), dropped_attributes_count: 0, entity_refs: vec![entity] })
    }

    fn traces(t: &str) -> ExportTraceServiceRequest {
        let span = Span {
            trace_id: vec![1; 16],
            span_id: vec![2; 8],
            trace_state: t.into(),
            name: t.into(),
            attributes: attributes(t),
            events: vec![span::Event { name: t.into(), attributes: attributes(t), ..Default::default() }],
            links: vec![span::Link { trace_state: t.into(), attributes: attributes(t), ..Default::default() }],
            status: Some(Status { message: t.into(), code: 2 }),
            ..Default::default()
        };
        let scope_spans = ScopeSpans { scope: scope(t), spans: vec![span], schema_url: t.into() };
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans { resource: resource(t), scope_spans: vec![scope_spans], schema_url: t.into() }],
        }
    }

    fn logs(t: &str) -> ExportLogsServiceRequest {
        let record = LogRecord {
            severity_text: t.into(),
            body: Some(AnyValue { value: Some(Value::StringValue(t.into())) }),
            attributes: attributes(t),
            event_name: t.into(),
            ..Default::default()
        };
        let scope_logs = ScopeLogs { scope: scope(t), log_records: vec![record], schema_url: t.into() };
        ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs { resource: resource(t), scope_logs: vec![scope_logs], schema_url: t.into() }],
        }
    }

    fn metrics(t: &str) -> ExportMetricsServiceRequest {
        let exemplars = || vec![m::Exemplar { filtered_attributes: attributes(t), ..Default::default() }];
        let number = || m::NumberDataPoint { attributes: attributes(t), exemplars: exemplars(), ..Default::default() };
        let metric = |data: m::metric::Data| m::Metric {
            name: t.into(),
            description: t.into(),
            unit: t.into(),
            metadata: attributes(t),
            data: Some(data),
        };
        let metrics = vec![
            metric(m::metric::Data::Gauge(m::Gauge { data_points: vec![number()] })),
            metric(m::metric::Data::Sum(m::Sum { data_points: vec![number()], ..Default::default() })),
            metric(m::metric::Data::Histogram(m::Histogram {
                data_points: vec![m::HistogramDataPoint { attributes: attributes(t), exemplars: exemplars(), ..Default::default() }],
                ..Default::default()
            })),
            metric(m::metric::Data::ExponentialHistogram(m::ExponentialHistogram {
                data_points: vec![m::ExponentialHistogramDataPoint {
                    attributes: attributes(t),
                    exemplars: exemplars(),
                    ..Default::default()
                }],
                ..Default::default()
            })),
            metric(m::metric::Data::Summary(m::Summary {
                data_points: vec![m::SummaryDataPoint { attributes: attributes(t), ..Default::default() }],
            })),
        ];
        let scope_metrics = m::ScopeMetrics { scope: scope(t), metrics, schema_url: t.into() };
        ExportMetricsServiceRequest {
            resource_metrics: vec![m::ResourceMetrics { resource: resource(t), scope_metrics: vec![scope_metrics], schema_url: t.into() }],
        }
    }

    fn round_trip<T: Message + Default + PartialEq + std::fmt::Debug>(build: fn(&str) -> T, root: Root) {
        let (bad, planted) = corrupt(&build("é").encode_to_vec());
        assert!(planted > 10, "markers planted: {planted}");
        assert!(T::decode(bad.as_slice()).is_err(), "prost refuses the corrupted body");
        let (fixed, repairs) = protobuf(&bad, root).expect("repairable");
        assert_eq!(repairs, Repairs { strings: planted, ..Repairs::default() });
        assert_eq!(T::decode(fixed.as_slice()).expect("decodes once repaired"), build(BAD_TEXT));
    }

    #[test]
    fn every_string_field_of_traces_logs_and_metrics_is_repaired() {
        round_trip(traces, Root::Traces);
        round_trip(logs, Root::Logs);
        round_trip(metrics, Root::Metrics);
    }

    #[test]
    fn malformed_wire_data_is_left_to_the_decoder() {
        let good = traces("x").encode_to_vec();
        assert!(protobuf(&good[..good.len() - 3], Root::Traces).is_none(), "cut short");
        assert!(protobuf(&[0x0B], Root::Traces).is_none(), "a group");
        assert_eq!(protobuf(&good, Root::Traces).unwrap(), (good, Repairs::default()), "valid bodies unchanged");
    }

    fn repaired(body: &str) -> (String, Repairs) {
        let (out, repairs) = json(body.as_bytes());
        (String::from_utf8(out).expect("valid UTF-8 out"), repairs)
    }

    #[test]
    fn json_strings_lose_only_their_bad_units() {
        let (out, r) = repaired(r#"{"stringValue":"cut \ud83d","k":"\udc00 low","ok":"\ud83d\ude00 pair","esc":"\\ud83d stays"}"#);
        assert_eq!(out, r#"{"stringValue":"cut \ufffd","k":"\ufffd low","ok":"\ud83d\ude00 pair","esc":"\\ud83d stays"}"#);
        assert_eq!(r.strings, 2);
        let mut raw = br#"{"stringValue":"caf"#.to_vec();
        raw.extend_from_slice(&[0xC3, b'"', b'}']);
        let (out, r) = json(&raw);
        assert_eq!(String::from_utf8(out).unwrap(), "{\"stringValue\":\"caf\u{FFFD}\"}");
        assert_eq!(r.strings, 1);
    }

    #[test]
    fn json_doubles_sent_as_strings_become_values() {
        let (out, r) = repaired(
            r#"[{"doubleValue":"NaN"},{"doubleValue" : "-Infinity"},{"doubleValue":"1.5"},{"doubleValue":"x"},{"stringValue":"NaN"}]"#,
        );
        assert_eq!(
            out,
            r#"[{"stringValue":"NaN"},{"stringValue":"-Infinity"},{"doubleValue":1.5},{"doubleValue":"x"},{"stringValue":"NaN"}]"#
        );
        assert_eq!(r.numbers, 3);
    }

    #[test]
    fn json_proto_names_and_empty_lists() {
        let (out, r) = repaired(
            "\u{FEFF}{\"resource_spans\":[{\"arrayValue\": { } ,\"kvlist_value\":{},\"a\":{\"b_c\":1}}],\"note\":\"trace_id: x\"}",
        );
        assert_eq!(
            out,
            r#"{"resourceSpans":[{"arrayValue": {"values":[]} ,"kvlistValue":{"values":[]},"a":{"bC":1}}],"note":"trace_id: x"}"#
        );
        assert!(!r.any());
    }

    /// A value nested past the bound is cut to the marker at the same place in both encodings,
    /// the attribute named; the request then decodes, everything beside it intact. A body of
    /// nothing but brackets (no values) is walked without a frame per bracket.
    #[test]
    fn values_nested_too_deep_are_cut_and_named() {
        let mut value = r#"{"stringValue":"bottom"}"#.to_string();
        for _ in 0..60 {
            value = format!(r#"{{"kvlistValue":{{"values":[{{"key":"k","value":{value}}}]}}}}"#);
        }
        let body = format!(
            r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{{"traceId":"{}","spanId":"00000000000000aa","name":"s","attributes":[{{"key":"shallow","value":{{"intValue":"1"}}}},{{"key":"graph","value":{value}}}]}}]}}]}}]}}"#,
            "ab".repeat(16)
        );
        assert!(serde_json::from_str::<ExportTraceServiceRequest>(&body).is_err(), "past serde's recursion limit");
        let (fixed, r) = json(body.as_bytes());
        assert_eq!((r.deep, r.deep_attribute.as_deref()), (1, Some("graph")));
        let req: ExportTraceServiceRequest = serde_json::from_slice(&fixed).expect("decodes once cut");
        let span = &req.resource_spans[0].scope_spans[0].spans[0];
        assert_eq!(span.attributes.len(), 2);
        let mut depth = 0;
        let mut v = span.attributes[1].value.clone();
        while let Some(AnyValue { value: Some(Value::KvlistValue(list)) }) = v {
            depth += 1;
            v = list.values[0].value.clone();
        }
        assert_eq!(depth, MAX_VALUE_DEPTH, "24 levels kept, the 25th is the marker");
        assert_eq!(v, Some(AnyValue { value: Some(Value::StringValue(CUT_MARKER.into())) }));
        let message = r.message().unwrap();
        assert!(message.contains("`graph`") && message.contains("JSON string"), "{message}");

        // Protobuf: the same cut at the same depth.
        let proto = req.encode_to_vec();
        let mut deep = ExportTraceServiceRequest::decode(proto.as_slice()).unwrap();
        let mut bottom = AnyValue { value: Some(Value::StringValue("bottom".into())) };
        for _ in 0..60 {
            bottom = AnyValue {
                value: Some(Value::KvlistValue(KeyValueList {
                    values: vec![KeyValue { key: "k".into(), value: Some(bottom), ..Default::default() }],
                })),
            };
        }
        deep.resource_spans[0].scope_spans[0].spans[0].attributes[1].value = Some(bottom);
        let bytes = deep.encode_to_vec();
        assert!(ExportTraceServiceRequest::decode(bytes.as_slice()).is_err(), "past prost's recursion limit");
        let (fixed, r) = protobuf(&bytes, Root::Traces).expect("rewritten");
        assert_eq!((r.deep, r.deep_attribute.as_deref()), (1, Some("graph")));
        assert_eq!(ExportTraceServiceRequest::decode(fixed.as_slice()).unwrap(), req);

        // Every prefix of the body (a request cut anywhere, inside a key, a name or a value) is
        // walked without a panic.
        for end in 0..body.len() {
            let _ = json(&body.as_bytes()[..end]);
        }

        let brackets = "[".repeat(2_000_000);
        let (out, r) = json(brackets.as_bytes());
        assert_eq!((out.len(), r.deep), (brackets.len(), 0));
    }
}
