//! OTLP wire formats: body decoding (protobuf, JSON, gzip/deflate) with errors that name what
//! is malformed, and the conversion of OTLP `AnyValue`s into JSON values and flat strings.
//!
//! The protocol types come from `opentelemetry-proto` (prost + serde for OTLP/JSON, which
//! accepts hex ids and integers as strings or numbers, as the spec and real SDKs send them).

pub mod repair;

use std::collections::BTreeMap;
use std::io::Read;

use base64::Engine as _;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use serde_json::Value;
use thiserror::Error;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Protobuf,
    Json,
}

impl Encoding {
    pub fn content_type(self) -> &'static str {
        match self {
            Encoding::Protobuf => "application/x-protobuf",
            Encoding::Json => "application/json",
        }
    }
}

#[derive(Debug, Error, PartialEq)]
pub enum DecodeError {
    #[error("unsupported content type `{0}`: send application/x-protobuf or application/json")]
    UnsupportedMediaType(String),
    #[error("unsupported content encoding `{0}`: send gzip, deflate or no encoding")]
    UnsupportedEncoding(String),
    #[error("the request body is larger than the limit of {limit} bytes{}", if *.decompressed { " once decompressed" } else { "" })]
    TooLarge { limit: usize, decompressed: bool },
    #[error("the body is not valid {encoding} data: {detail}")]
    BadCompression { encoding: &'static str, detail: String },
    #[error("malformed OTLP {what}: {detail}")]
    Malformed { what: &'static str, detail: String },
    /// The memory budget of bodies in flight cannot take a repaired copy of the body.
    #[error("the collector is at its memory budget for request bodies in flight; retry later")]
    Busy,
}

/// The encoding of a request from its `Content-Type` (parameters such as `charset` ignored).
pub fn encoding_of(content_type: Option<&str>) -> Result<Encoding, DecodeError> {
    let raw = content_type.unwrap_or("");
    let mime = raw.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    match mime.as_str() {
        "application/x-protobuf" | "application/protobuf" => Ok(Encoding::Protobuf),
        "application/json" => Ok(Encoding::Json),
        _ => Err(DecodeError::UnsupportedMediaType(if raw.is_empty() { "(none)".into() } else { raw.into() })),
    }
}

/// [`decompress`] for a body the receiver holds: an uncompressed one is returned as it is, not
/// copied (a request's bytes are in memory once).
pub fn decompress_body(body: bytes::Bytes, content_encoding: Option<&str>, limit: usize) -> Result<bytes::Bytes, DecodeError> {
    match content_encoding.map(|e| e.trim().to_ascii_lowercase()) {
        Some(e) if !e.is_empty() && e != "identity" => decompress(&body, Some(&e), limit).map(bytes::Bytes::from),
        _ if body.len() > limit => Err(DecodeError::TooLarge { limit, decompressed: false }),
        _ => Ok(body),
    }
}

/// Undoes `Content-Encoding`, refusing to inflate beyond `limit` bytes (a gzip bomb must not
/// exhaust memory).
pub fn decompress(body: &[u8], content_encoding: Option<&str>, limit: usize) -> Result<Vec<u8>, DecodeError> {
    let encoding = content_encoding.unwrap_or("").trim().to_ascii_lowercase();
    let reader: Box<dyn Read + '_> = match encoding.as_str() {
        "" | "identity" => {
            if body.len() > limit {
                return Err(DecodeError::TooLarge { limit, decompressed: false });
            }
            return Ok(body.to_vec());
        }
        // Every member: a body of several gzip members (concatenated streams, as some proxies
        // and `cat a.gz b.gz` make) is one body; a single-member decoder dropped the rest.
        "gzip" | "x-gzip" => Box::new(flate2::read::MultiGzDecoder::new(body)),
        "deflate" => Box::new(flate2::read::ZlibDecoder::new(body)),
        other => return Err(DecodeError::UnsupportedEncoding(other.to_string())),
    };
    let mut out = Vec::with_capacity(body.len() * 4);
    let name = if encoding == "deflate" { "deflate" } else { "gzip" };
    reader
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| DecodeError::BadCompression { encoding: name, detail: e.to_string() })?;
    if out.len() > limit {
        return Err(DecodeError::TooLarge { limit, decompressed: true });
    }
    Ok(out)
}

/// A decoded request and the values repaired to decode it ([`repair`]).
#[derive(Debug)]
pub struct Decoded<T> {
    pub request: T,
    pub repairs: repair::Repairs,
}

/// Asked for more bytes of the memory budget when a repair copies the body; `false` refuses.
pub type Reserve<'a> = &'a mut dyn FnMut(u64) -> bool;

pub fn decode_traces(body: &[u8], encoding: Encoding, reserve: Reserve) -> Result<Decoded<ExportTraceServiceRequest>, DecodeError> {
    decode(body, encoding, repair::Root::Traces, "ExportTraceServiceRequest", reserve)
}

pub fn decode_logs(body: &[u8], encoding: Encoding, reserve: Reserve) -> Result<Decoded<ExportLogsServiceRequest>, DecodeError> {
    decode(body, encoding, repair::Root::Logs, "ExportLogsServiceRequest", reserve)
}

pub fn decode_metrics(
    body: &[u8],
    encoding: Encoding,
    reserve: Reserve,
) -> Result<Decoded<opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest>, DecodeError> {
    decode(body, encoding, repair::Root::Metrics, "ExportMetricsServiceRequest", reserve)
}

/// Why a protobuf body was not decoded.
#[derive(Debug)]
pub enum ProtobufFailure {
    Malformed(prost::DecodeError),
    /// The memory budget cannot take the repaired copy.
    Busy,
}

/// Decodes a protobuf message, repairing string fields that are not UTF-8 when that is what
/// prost refused (see [`repair`]).
pub fn decode_protobuf<T: prost::Message + Default>(
    body: &[u8],
    root: repair::Root,
    reserve: Reserve,
) -> Result<Decoded<T>, ProtobufFailure> {
    match T::decode(body) {
        Ok(request) => Ok(Decoded { request, repairs: repair::Repairs::default() }),
        // Strings that are not UTF-8, and values nested past prost's recursion limit.
        Err(e) if e.to_string().contains("UTF-8") || e.to_string().contains("recursion limit") => {
            let Some((fixed, repairs)) = repair::protobuf(body, root) else { return Err(ProtobufFailure::Malformed(e)) };
            if !reserve(fixed.len() as u64) {
                return Err(ProtobufFailure::Busy);
            }
            T::decode(fixed.as_slice()).map(|request| Decoded { request, repairs }).map_err(ProtobufFailure::Malformed)
        }
        Err(e) => Err(ProtobufFailure::Malformed(e)),
    }
}

fn decode<T: prost::Message + Default + serde::de::DeserializeOwned>(
    body: &[u8],
    encoding: Encoding,
    root: repair::Root,
    what: &'static str,
    reserve: Reserve,
) -> Result<Decoded<T>, DecodeError> {
    let malformed = |e: serde_json::Error| {
        let mut detail = format!("JSON: {e}");
        // The hex decoder's words for an id sent in base64 (protobuf's JSON mapping for bytes,
        // which OTLP/JSON overrides for ids).
        if detail.contains("nvalid character") || detail.contains("Odd number of digits") || detail.contains("nvalid string length") {
            detail.push_str(" (OTLP/JSON ids — traceId, spanId, parentSpanId — are hex strings, not base64)");
        }
        DecodeError::Malformed { what, detail }
    };
    match encoding {
        Encoding::Protobuf => decode_protobuf(body, root, reserve).map_err(|e| match e {
            ProtobufFailure::Malformed(e) => DecodeError::Malformed { what, detail: format!("protobuf: {e}") },
            ProtobufFailure::Busy => DecodeError::Busy,
        }),
        Encoding::Json => {
            // Field names of the proto (`resource_spans`, `trace_id`), which protobuf's JSON
            // mapping accepts beside lowerCamelCase and some clients send: the generated
            // deserialiser knows only the camelCase ones and would ignore the rest — a request
            // acknowledged and dropped. Such bodies go through the repair first.
            let first = if PROTO_FIELD_NAMES.is_match(body) {
                None
            } else {
                match serde_json::from_slice(body) {
                    Ok(request) => return Ok(Decoded { request, repairs: repair::Repairs::default() }),
                    Err(e) => Some(e),
                }
            };
            if !reserve(body.len() as u64) {
                return Err(DecodeError::Busy);
            }
            let (fixed, repairs) = repair::json(body);
            if let Some(e) = first
                && fixed == body
            {
                return Err(malformed(e));
            }
            if !reserve(fixed.len().saturating_sub(body.len()) as u64) {
                return Err(DecodeError::Busy);
            }
            serde_json::from_slice(&fixed).map(|request| Decoded { request, repairs }).map_err(malformed)
        }
    }
}

/// A key of the OTLP protos in its proto spelling (snake_case), as a JSON object key.
static PROTO_FIELD_NAMES: std::sync::LazyLock<regex::bytes::Regex> = std::sync::LazyLock::new(|| {
    regex::bytes::Regex::new(
        r#""(?:resource_(?:spans|logs|metrics)|scope_(?:spans|logs|metrics)|log_records|(?:parent_)?span_id|trace_id|[a-z_]+_unix_nano|(?:string|bool|int|double|array|kvlist|bytes)_value|schema_url|trace_state|dropped_[a-z_]+_count|severity_(?:number|text)|event_name|data_points|observed_time_unix_nano)"\s*:"#,
    )
    .expect("valid regex")
});

/// Encodes a response message in the request's encoding (OTLP: "the response body has the
/// request's content type").
pub fn encode<T: prost::Message + serde::Serialize>(message: &T, encoding: Encoding) -> Vec<u8> {
    match encoding {
        Encoding::Protobuf => message.encode_to_vec(),
        // Serialising a generated message cannot fail (no maps with non-string keys, no I/O).
        // Unset fields are left out rather than sent as `null`, as other OTLP servers do.
        Encoding::Json => match serde_json::to_value(message) {
            Ok(serde_json::Value::Object(mut map)) => {
                map.retain(|_, v| !v.is_null());
                serde_json::to_vec(&map).unwrap_or_else(|_| b"{}".to_vec())
            }
            _ => b"{}".to_vec(),
        },
    }
}

/// An OTLP value as JSON. Bytes become base64, non-finite doubles their names as strings
/// (`NaN`, `Infinity`, `-Infinity`).
pub fn any_to_json(value: &AnyValue) -> Value {
    into_json(value.clone())
}

/// [`any_to_json`] of a value the caller gives up: its strings move into the JSON, not copied
/// (a request's attributes are decoded once, then dropped).
pub fn into_json(value: AnyValue) -> Value {
    match value.value {
        None => Value::Null,
        Some(any_value::Value::StringValue(s)) => Value::String(s),
        Some(any_value::Value::BoolValue(b)) => Value::Bool(b),
        Some(any_value::Value::IntValue(i)) => Value::from(i),
        Some(any_value::Value::DoubleValue(d)) => {
            // Non-finite: the names protobuf's JSON mapping gives them (what JSON clients send).
            serde_json::Number::from_f64(d).map(Value::Number).unwrap_or_else(|| {
                Value::String(
                    if d.is_nan() {
                        "NaN"
                    } else if d > 0.0 {
                        "Infinity"
                    } else {
                        "-Infinity"
                    }
                    .into(),
                )
            })
        }
        Some(any_value::Value::ArrayValue(a)) => Value::Array(a.values.into_iter().map(into_json).collect()),
        Some(any_value::Value::KvlistValue(kv)) => {
            Value::Object(kv.values.into_iter().map(|k| (k.key, k.value.map(into_json).unwrap_or(Value::Null))).collect())
        }
        Some(any_value::Value::BytesValue(b)) => Value::String(base64::engine::general_purpose::STANDARD.encode(b)),
        // Only meaningful inside OTLP profiles (an index into their string table).
        Some(any_value::Value::StringValueStrindex(_)) => Value::Null,
    }
}

/// Attributes as typed JSON values; a repeated key keeps its last value.
pub fn attributes(kvs: &[KeyValue]) -> BTreeMap<String, Value> {
    into_attributes(kvs.to_vec())
}

/// [`attributes`] of attributes the caller gives up (moved, not copied).
pub fn into_attributes(kvs: Vec<KeyValue>) -> BTreeMap<String, Value> {
    kvs.into_iter().map(|kv| (kv.key, kv.value.map(into_json).unwrap_or(Value::Null))).collect()
}

/// The flat string form stored in ClickHouse maps: strings as they are, everything else as
/// compact JSON (so `["stop"]`, `42`, `true`).
pub fn flat(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

pub fn flat_map(attrs: &BTreeMap<String, Value>) -> BTreeMap<String, String> {
    attrs.iter().map(|(k, v)| (k.clone(), flat(v))).collect()
}

/// [`flat`] of a value the caller gives up: a string moves, not copied.
pub fn into_flat(value: Value) -> String {
    match value {
        Value::String(s) => s,
        other => flat(&other),
    }
}

/// [`flat_map`] of attributes the caller gives up.
pub fn into_flat_map(attrs: BTreeMap<String, Value>) -> BTreeMap<String, String> {
    attrs.into_iter().map(|(k, v)| (k, into_flat(v))).collect()
}

/// Lowercase hex of an id; `None` when its length is not the one OTLP requires.
pub fn hex_id(bytes: &[u8], len: usize) -> Option<String> {
    (bytes.len() == len && bytes.iter().any(|b| *b != 0)).then(|| to_hex(bytes))
}

/// Lowercase hex of bytes. `hex::encode` builds its string a `char` at a time: 2 % of the
/// collector's CPU at 60 spans per request, for the ids alone.
pub fn to_hex(bytes: &[u8]) -> String {
    let mut out = vec![0; bytes.len() * 2];
    hex::encode_to_slice(bytes, &mut out).expect("the output is twice the input");
    String::from_utf8(out).expect("hex digits are ASCII")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_lowercase_hex_as_the_hex_crate_writes_them() {
        let bytes: Vec<u8> = (0..=255).collect();
        assert_eq!(to_hex(&bytes), hex::encode(&bytes));
        assert_eq!(to_hex(&[]), "");
        assert_eq!(hex_id(&[0xab; 8], 8).as_deref(), Some("abababababababab"));
        assert_eq!(hex_id(&[0; 8], 8), None, "an all-zero id is invalid");
    }

    #[test]
    fn content_types_are_matched_without_parameters() {
        assert_eq!(encoding_of(Some("application/x-protobuf")), Ok(Encoding::Protobuf));
        assert_eq!(encoding_of(Some("application/json; charset=utf-8")), Ok(Encoding::Json));
        assert!(matches!(encoding_of(Some("text/plain")), Err(DecodeError::UnsupportedMediaType(_))));
        assert!(matches!(encoding_of(None), Err(DecodeError::UnsupportedMediaType(_))));
    }

    #[test]
    fn gzip_bombs_and_garbage_are_refused() {
        use std::io::Write;
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        enc.write_all(&vec![0u8; 1 << 20]).unwrap();
        let bomb = enc.finish().unwrap();
        assert_eq!(decompress(&bomb, Some("gzip"), 1000), Err(DecodeError::TooLarge { limit: 1000, decompressed: true }));
        assert_eq!(decompress(&bomb, Some("gzip"), 2 << 20).unwrap().len(), 1 << 20);
        assert!(matches!(decompress(b"not gzip", Some("gzip"), 1000), Err(DecodeError::BadCompression { .. })));
        assert!(matches!(decompress(b"x", Some("br"), 1000), Err(DecodeError::UnsupportedEncoding(_))));
    }

    #[test]
    fn a_base64_id_in_json_is_refused_with_what_ids_must_be() {
        let body = br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"W47/95gDgQPSabYzgT/GDA==","spanId":"7uGbfsPBsXQ=","name":"x"}]}]}]}"#;
        let err = decode_traces(body, Encoding::Json, &mut |_| true).unwrap_err().to_string();
        assert!(err.contains("hex strings, not base64"), "{err}");
    }

    #[test]
    fn every_member_of_a_multi_member_gzip_body_is_read() {
        use std::io::Write;
        let member = |text: &[u8]| {
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            enc.write_all(text).unwrap();
            enc.finish().unwrap()
        };
        let body = [member(b"first half, "), member(b"second half")].concat();
        assert_eq!(decompress(&body, Some("gzip"), 1000).unwrap(), b"first half, second half");
    }

    #[test]
    fn proto_field_names_in_json_are_read_like_camel_case() {
        let snake = br#"{"resource_spans":[{"resource":{"attributes":[{"key":"service.name","value":{"string_value":"api"}}]},
            "scope_spans":[{"spans":[{"trace_id":"5b8efff798038103d269b633813fc60c","span_id":"eee19b7ec3c1b174",
            "name":"chat","start_time_unix_nano":"1700000000000000000","end_time_unix_nano":"1700000001000000000",
            "attributes":[{"key":"note","value":{"string_value":"keys like \"trace_id\": stay text"}}]}]}]}]}"#;
        let req = decode_traces(snake, Encoding::Json, &mut |_| true).unwrap().request;
        let span = &req.resource_spans[0].scope_spans[0].spans[0];
        assert_eq!(hex::encode(&span.trace_id), "5b8efff798038103d269b633813fc60c");
        assert_eq!(span.start_time_unix_nano, 1_700_000_000_000_000_000);
        let value = format!("{:?}", span.attributes[0].value);
        assert!(value.contains(r#"keys like \"trace_id\": stay text"#), "{value}");
    }

    #[test]
    fn empty_lists_left_out_of_json_are_accepted() {
        let body = br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","name":"x","attributes":[{"key":"llm.request.reasoning_effort","value":{"arrayValue":{}}},{"key":"k","value":{"kvlistValue":{}}}]}]}]}]}"#;
        let req = decode_traces(body, Encoding::Json, &mut |_| true).unwrap().request;
        let attrs = attributes(&req.resource_spans[0].scope_spans[0].spans[0].attributes);
        assert_eq!(attrs["llm.request.reasoning_effort"], Value::Array(vec![]));
        assert_eq!(attrs["k"], Value::Object(Default::default()));
    }

    #[test]
    fn ids_must_have_the_spec_length() {
        assert_eq!(hex_id(&[1; 16], 16).as_deref(), Some("01010101010101010101010101010101"));
        assert_eq!(hex_id(&[1; 15], 16), None);
        assert_eq!(hex_id(&[0; 8], 8), None, "an all-zero id is invalid");
    }
}
