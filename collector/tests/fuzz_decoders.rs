//! Property tests of every decoder that untrusted bytes reach: OTLP protobuf and JSON (traces
//! and logs), gzip, the signals JSON, and normalisation of whatever decodes. Random bytes and
//! real captured payloads with random mutations must give an error or a result — never a
//! panic. (A long run: `PROPTEST_CASES=200000 cargo test -p flywheel-collector --test fuzz_decoders --release`.)

use std::path::PathBuf;

use flywheel_collector::normalize::{self, span::decode_spans};
use flywheel_collector::otlp::{self, Encoding};
use flywheel_collector::signals::wire;
use proptest::prelude::*;

/// Every captured payload, read once.
fn fixtures() -> &'static [(PathBuf, Vec<u8>)] {
    static ALL: std::sync::OnceLock<Vec<(PathBuf, Vec<u8>)>> = std::sync::OnceLock::new();
    ALL.get_or_init(read_fixtures)
}

fn read_fixtures() -> Vec<(PathBuf, Vec<u8>)> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/otlp");
    let mut out = Vec::new();
    let mut dirs = vec![root];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "pb" || e == "json" || e == "gz") && !path.ends_with("manifest.json") {
                let bytes = std::fs::read(&path).unwrap();
                out.push((path, bytes));
            }
        }
    }
    out.sort();
    out
}

/// Decodes as the receivers do, then normalises every span and log record that decodes.
fn ingest(bytes: &[u8], json: bool, gz: bool) {
    let body = if gz {
        match otlp::decompress(bytes, Some("gzip"), 1 << 22) {
            Ok(b) => b,
            Err(_) => return,
        }
    } else {
        bytes.to_vec()
    };
    let encoding = if json { Encoding::Json } else { Encoding::Protobuf };
    if let Ok(decoded) = otlp::decode_traces(&body, encoding, &mut |_| true) {
        let (spans, _rejected) = decode_spans(decoded.request);
        let now = time::OffsetDateTime::now_utc();
        for s in &spans {
            let _ = s.row("p", now);
            if let Some(draft) = normalize::read_call(&s.view()) {
                let row = normalize::to_row("p", &s.ids, &draft, s.status == "error", now);
                // What is stored must be valid JSON for the readers.
                serde_json::from_str::<serde_json::Value>(&row.input_messages).unwrap();
                serde_json::from_str::<serde_json::Value>(&row.output_messages).unwrap();
            }
        }
    }
    let _ = otlp::decode_logs(&body, encoding, &mut |_| true);
}

proptest! {
    // 3000 cases per test by default; PROPTEST_CASES sets a longer run.
    #![proptest_config(ProptestConfig { cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(3000), ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        ingest(&bytes, false, false);
        ingest(&bytes, true, false);
        ingest(&bytes, false, true);
        let _ = wire::parse_body(&bytes);
    }

    #[test]
    fn mutated_captures_never_panic(pick in any::<prop::sample::Index>(), flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..12), cut in any::<prop::sample::Index>(), truncate in any::<bool>()) {
        let all = fixtures();
        let (path, original) = &all[pick.index(all.len())];
        let mut bytes = original.clone();
        for (at, value) in &flips {
            let i = at.index(bytes.len());
            bytes[i] = *value;
        }
        if truncate {
            bytes.truncate(cut.index(bytes.len() + 1));
        }
        let name = path.to_string_lossy();
        ingest(&bytes, name.ends_with(".json"), name.ends_with(".gz"));
    }

    #[test]
    fn arbitrary_json_signals_never_panic(value in arb_json()) {
        let body = serde_json::to_vec(&value).unwrap();
        if let Ok(items) = wire::parse_body(&body) {
            for (i, item) in items.iter().enumerate() {
                let _ = wire::validate(i, item);
            }
        }
    }
}

fn arb_json() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::Bool),
        any::<i64>().prop_map(|n| serde_json::json!(n)),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| serde_json::json!(f)),
        prop_oneof![
            Just("kind".to_string()),
            Just("thumbs_down".to_string()),
            Just("edit".to_string()),
            Just("0af7651916cd43dd8448eb211c80319c".to_string()),
            ".{0,40}"
        ]
        .prop_map(serde_json::Value::String),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::Array),
            proptest::collection::btree_map(
                prop_oneof![
                    Just("kind".to_string()),
                    Just("trace_id".to_string()),
                    Just("text".to_string()),
                    Just("value".to_string()),
                    Just("attributes".to_string()),
                    Just("signals".to_string()),
                    Just("timestamp".to_string()),
                    "[a-z_]{1,10}"
                ],
                inner,
                0..6
            )
            .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}
