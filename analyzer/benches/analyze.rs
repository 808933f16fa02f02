//! The analyzer's hot functions without the engine or the model: rules over calls and
//! signals (`detect::evaluate`), hashed TF-IDF (`represent::lexical`), class-based TF-IDF
//! labels (`label::distinctive_terms`) and PCA + HDBSCAN (`cluster::hdbscan`) on vectors of the
//! embedding model's dimension. Inputs are synthetic and seeded.
//!
//!     cargo bench -p flywheel-analyzer --bench analyze

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use flywheel_analyzer::cluster::{self, Params};
use flywheel_analyzer::detect::{self, Call, Inputs, Norm, Signal};
use flywheel_analyzer::rules::Rules;
use flywheel_analyzer::{label, represent};
use time::OffsetDateTime;

/// A small seeded generator: the benches must not depend on a random crate's stream.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.next() as usize % items.len()]
    }
    fn unit(&mut self) -> f32 {
        self.next() as f32 / (1u64 << 31) as f32 - 0.5
    }
}

const QUESTIONS: [&str; 6] = [
    "Where is my order {} and when will it arrive?",
    "Can I get a refund for order {} after 40 days?",
    "Write a function that parses the log line {} into fields.",
    "Why does my build fail with error E{} on the CI?",
    "Wie kann ich die Bestellung {} stornieren?",
    "Explain the difference between a mutex and a channel, case {}.",
];
const ANSWERS: [&str; 6] = [
    "Your order shipped yesterday and should arrive on Friday.",
    "Refunds are available within 90 days in cash at any store.",
    "I'm sorry, but I can't help with that request.",
    "Here is a function: fn parse(line: &str) -> Fields { todo!() }",
    "The build fails because the dependency was yanked; pin the previous version and",
    "A mutex guards shared state; a channel moves ownership between threads.",
];

/// `n` calls of a support and a coding feature: a tenth in error, some cut at `length`, some
/// refusals, some answers in another language, and thumbs-down/regenerate signals on a fifth.
fn inputs(n: usize) -> Inputs {
    let mut rng = Lcg(42);
    let start = OffsetDateTime::from_unix_timestamp(1_763_700_000).unwrap();
    let mut calls = Vec::with_capacity(n);
    let mut signals = Vec::new();
    for i in 0..n {
        let trace = format!("{i:032x}");
        let feature = if i % 2 == 0 { "support" } else { "coding" };
        let error = rng.next().is_multiple_of(10);
        let answer = rng.pick(&ANSWERS);
        calls.push(Call {
            trace_id: trace.clone(),
            span_id: format!("{:016x}", i),
            session_id: format!("s{}", i / 4),
            user_id: format!("u{}", i % 500),
            feature: feature.into(),
            model: "gpt-4o-mini".into(),
            provider: "openai".into(),
            start_time: start + time::Duration::seconds(i as i64),
            duration_ns: 500_000_000 + rng.next() % 4_000_000_000,
            cost_usd: Some(0.0004),
            input_tokens: 120,
            output_tokens: 80,
            status: if error { "error" } else { "ok" }.into(),
            error_type: if error { "RateLimitError".into() } else { String::new() },
            error_message: if error { "Error code: 429 - rate limit reached".into() } else { String::new() },
            finish_reasons: vec![if answer.ends_with("and") { "length" } else { "stop" }.into()],
            input_text: rng.pick(&QUESTIONS).replace("{}", &i.to_string()),
            output_text: if error { String::new() } else { answer.into() },
            ..Default::default()
        });
        if rng.next().is_multiple_of(5) {
            signals.push(Signal {
                kind: rng.pick(&["thumbs_down", "regenerate", "copy"]).into(),
                source: "api".into(),
                timestamp: start + time::Duration::seconds(i as i64 + 30),
                trace_id: trace,
                ..Default::default()
            });
        }
    }
    let norms = ["support", "coding"]
        .iter()
        .map(|f| Norm {
            feature: f.to_string(),
            model: "gpt-4o-mini".into(),
            calls: n as u64,
            median_duration_ns: 2e9,
            median_cost_usd: 0.0004,
        })
        .collect();
    Inputs { calls, error_spans: vec![], signals, norms, ..Default::default() }
}

/// `n` failure texts drawn from a few themes with varied wording.
fn texts(n: usize) -> Vec<String> {
    let mut rng = Lcg(7);
    (0..n).map(|i| format!("{} || {} || order {i}", rng.pick(&QUESTIONS).replace("{}", &i.to_string()), rng.pick(&ANSWERS))).collect()
}

/// `n` unit vectors of 384 dimensions around `k` centres, a tenth of them scattered.
fn vectors(n: usize, k: usize) -> Vec<Vec<f32>> {
    let mut rng = Lcg(11);
    let centres: Vec<Vec<f32>> = (0..k).map(|_| (0..384).map(|_| rng.unit()).collect()).collect();
    (0..n)
        .map(|i| {
            let mut v: Vec<f32> = if i % 10 == 9 {
                (0..384).map(|_| rng.unit()).collect()
            } else {
                centres[i % k].iter().map(|c| c + 0.15 * rng.unit()).collect()
            };
            represent::normalize(&mut v);
            v
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let rules = Rules::defaults();
    let mut group = c.benchmark_group("detect");
    group.sample_size(10).measurement_time(Duration::from_secs(10));
    let n = 10_000;
    let inputs = inputs(n);
    assert!(!detect::evaluate(&rules, &inputs).is_empty());
    group.throughput(Throughput::Elements(n as u64));
    group.bench_with_input(BenchmarkId::new("evaluate_calls", n), &inputs, |b, inputs| {
        b.iter(|| detect::evaluate(&rules, black_box(inputs)))
    });
    group.finish();

    let mut group = c.benchmark_group("represent");
    let docs = texts(10_000);
    group.throughput(Throughput::Elements(docs.len() as u64));
    group.sample_size(10).measurement_time(Duration::from_secs(10));
    group.bench_function("lexical_texts/10000", |b| b.iter(|| represent::lexical(black_box(&docs))));
    let classes: Vec<Option<usize>> = (0..docs.len()).map(|i| (i % 7 != 6).then_some(i % 6)).collect();
    group.bench_function("distinctive_terms_texts/10000", |b| b.iter(|| label::distinctive_terms(black_box(&docs), &classes, 6, 3)));
    group.finish();

    let mut group = c.benchmark_group("cluster");
    group.sample_size(10).measurement_time(Duration::from_secs(20));
    for n in [2_000, 10_000] {
        let v = vectors(n, 8);
        let params = Params::for_size(n);
        assert!(cluster::members(&cluster::hdbscan(&v, params)).len() >= 2, "the synthetic blobs should cluster");
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::new("pca_hdbscan_384d", n), &v, |b, v| b.iter(|| cluster::hdbscan(black_box(v), params)));
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
