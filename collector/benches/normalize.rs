//! Normalisation cost per span: an OTLP request body as captured from each instrumentation
//! library → decoded request → raw `spans` rows + one `llm_calls` row per model call. No I/O:
//! what the collector spends per span before the writer.
//!
//!     cargo bench -p flywheel-collector --bench normalize

use std::hint::black_box;
use std::path::Path;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use flywheel_collector::normalize::{self, span::decode_spans};
use flywheel_collector::otlp::{self, Encoding};

/// The batch fixtures carry every kind of call of one convention in one request.
const BODIES: [(&str, &str); 5] = [
    ("otel_genai", "batch/otel-v2/batch_all.pb"),
    ("openinference", "batch/oi/batch_all.pb"),
    ("openllmetry", "batch/tl/batch_all.pb"),
    ("otel_genai_json", "batch/otel-v2/batch_all.json"),
    ("otel_genai_js_legacy", "js-otel/tool_call.pb"),
];

fn body(relative: &str) -> (Vec<u8>, Encoding) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/otlp").join(relative);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (bytes, if relative.ends_with(".json") { Encoding::Json } else { Encoding::Protobuf })
}

/// What the pipeline does per request before redaction, pricing and the writer.
fn normalise(body: &[u8], encoding: Encoding) -> (usize, usize) {
    let now = time::OffsetDateTime::now_utc();
    let request = otlp::decode_traces(body, encoding, &mut |_| true).expect("fixture decodes").request;
    let (spans, _) = decode_spans(request);
    let rows: Vec<_> = spans.iter().map(|s| s.row("bench", now)).collect();
    let calls: Vec<_> = spans
        .iter()
        .filter_map(|s| normalize::read_call(&s.view()).map(|d| normalize::to_row("bench", &s.ids, &d, s.status == "error", now)))
        .collect();
    (black_box(rows).len(), black_box(calls).len())
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("normalise_per_span");
    for (name, file) in BODIES {
        let (bytes, encoding) = body(file);
        let (spans, calls) = normalise(&bytes, encoding);
        assert!(calls > 0, "{file}: no model call normalised");
        group.throughput(Throughput::Elements(spans as u64));
        group.bench_function(name, |b| b.iter(|| normalise(black_box(&bytes), encoding)));
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
