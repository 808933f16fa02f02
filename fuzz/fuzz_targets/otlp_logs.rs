//! OTLP log requests, protobuf and JSON (first byte chooses), and gzip bodies.
#![no_main]

use flywheel_collector::otlp::{self, Encoding};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let encoding = if data.first().is_some_and(|b| *b == b'{') { Encoding::Json } else { Encoding::Protobuf };
    let _ = otlp::decode_logs(data, encoding, &mut |_| true);
    if let Ok(inflated) = otlp::decompress(data, Some("gzip"), 1 << 22) {
        let _ = otlp::decode_logs(&inflated, Encoding::Protobuf, &mut |_| true);
    }
});
