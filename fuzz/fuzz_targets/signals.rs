//! The signals JSON contract: body shapes and per-signal validation.
#![no_main]

use flywheel_collector::signals::wire;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(items) = wire::parse_body(data) {
        for (i, item) in items.iter().enumerate() {
            let _ = wire::validate(i, item);
        }
    }
});
