//! Embedding throughput (texts/s) of the real model at batch 1 and 32, on ~30-token texts like
//! the analyzer's failure summaries. Needs the model: `./setup.sh --only model`.
//!
//!     cargo bench -p flywheel-analyzer --bench embed

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use flywheel_analyzer::embed::{Embedder, model_dir};

/// Distinct texts of ~30 tokens each, so that no two iterations embed quite the same thing.
fn texts(n: usize) -> Vec<String> {
    let tools = ["get_order_status", "issue_refund", "search_catalog", "update_address", "cancel_subscription"];
    let errors = ["timed out after 30 seconds", "returned 404 order not found", "refused: missing required argument", "rate limited (429)"];
    (0..n)
        .map(|i| {
            format!(
                "The assistant called {} for customer #{i} but the tool {}; the model then answered without the data and the user complained.",
                tools[i % tools.len()],
                errors[i % errors.len()]
            )
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let dir =
        Embedder::locate().unwrap_or_else(|| panic!("the embedding model is not installed in {}: run ./setup.sh", model_dir().display()));
    let embedder = Embedder::load(&dir).unwrap();
    let texts = texts(320);
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();

    let mut group = c.benchmark_group("embed");
    // A batch of 32 takes ~0.2 s: fewer, longer samples than criterion's defaults.
    group.sample_size(10).warm_up_time(Duration::from_secs(3)).measurement_time(Duration::from_secs(20));
    for batch in [1, 32] {
        group.throughput(Throughput::Elements(batch as u64));
        let mut chunks = refs.chunks(batch).cycle();
        group.bench_function(format!("batch_{batch}"), |b| b.iter(|| black_box(embedder.embed(chunks.next().unwrap()).unwrap())));
    }
    group.finish();

    // What a CLI run pays once before its first embedding.
    let mut group = c.benchmark_group("load");
    group.sample_size(10).measurement_time(Duration::from_secs(10));
    group.bench_function("model", |b| b.iter(|| black_box(Embedder::load(&dir).unwrap())));
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
