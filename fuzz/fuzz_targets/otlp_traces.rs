//! OTLP trace requests, protobuf and JSON (first byte chooses), decoded and normalised as the
//! receivers do. Seed corpus: `tests/fixtures/otlp` (see fuzz/README.md).
#![no_main]

use flywheel_collector::normalize::{self, span::decode_spans};
use flywheel_collector::otlp::{self, Encoding};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let encoding = if data.first().is_some_and(|b| *b == b'{') { Encoding::Json } else { Encoding::Protobuf };
    let Ok(decoded) = otlp::decode_traces(data, encoding, &mut |_| true) else { return };
    let (spans, _) = decode_spans(decoded.request);
    let now = time::OffsetDateTime::now_utc();
    for s in &spans {
        let _ = s.row("p", now);
        if let Some(draft) = normalize::read_call(&s.view()) {
            let _ = normalize::to_row("p", &s.ids, &draft, s.status == "error", now);
        }
    }
});
