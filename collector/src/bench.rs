//! `flywheel bench ingest`: collector throughput over OTLP/HTTP protobuf and OTLP/gRPC with
//! realistic GenAI traffic, with the ClickHouse writer off, behind the write-ahead log and
//! inserting directly; then acknowledgement latency at fixed loads. Prints tables; asserts
//! nothing.
//!
//! The load generator runs in the same process as the collector (it shares the machine's
//! cores, as a real sidecar SDK would); its CPU is included in the CPU-per-span figure. Then
//! the collector as users run it, in its own process ([`served`]): spans stored end to end, the
//! CPU of the collector and of the engine apart, resident memory; or a soak at a fixed rate.

use std::fmt::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use flywheel_schemas::Store;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, span, status};
use prost::Message as _;

pub mod served;
mod traffic;

use crate::auth::AuthMode;
use crate::config::CollectorConfig;
use crate::server;

#[derive(Debug, Clone)]
pub struct IngestBench {
    pub requests: usize,
    pub spans_per_request: usize,
    pub concurrency: usize,
    /// Fixed loads (requests per second) for the latency table.
    pub rates: Vec<f64>,
    /// Request sizes (spans) of the served runs, and the spans each sends.
    pub served_sizes: Vec<usize>,
    pub served_spans: u64,
    /// Only a soak of this many seconds at `soak_rate` spans per second, in requests of
    /// `spans_per_request`.
    pub soak_seconds: Option<u64>,
    pub soak_rate: u64,
    /// Only one request of this many small spans, the collector's memory measured.
    pub large_request: Option<usize>,
}

fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue { key: key.into(), value: Some(AnyValue { value: Some(value) }), ..Default::default() }
}

fn s(v: impl Into<String>) -> any_value::Value {
    any_value::Value::StringValue(v.into())
}

/// One request of `n` spans: traces of an agent span and two chat calls (OTel GenAI 1.37 with
/// message content, ~1.5 KB per call), as a support assistant would export them.
pub fn sample_request(seed: u64, n: usize) -> ExportTraceServiceRequest {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos() as u64;
    let mut spans = Vec::with_capacity(n);
    for i in 0..n as u64 {
        let trace = seed * 1_000_003 + i / 3;
        let mut trace_id = [0u8; 16];
        trace_id[..8].copy_from_slice(&trace.to_be_bytes());
        trace_id[8..].copy_from_slice(&(trace ^ 0x5bd1_e995).to_be_bytes());
        let span_id = (seed << 20 | i).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        let root = span_id & !0xff | 0x01;
        let start = now - (n as u64 - i) * 1_000_000;
        let (name, attrs, parent) = if i % 3 == 0 {
            (
                "invoke_agent support_agent",
                vec![kv("gen_ai.operation.name", s("invoke_agent")), kv("gen_ai.agent.name", s("support_agent"))],
                vec![],
            )
        } else {
            let question = format!(
                "Order #{} arrived damaged and I was charged twice. Can I get a refund to my card ending {}?",
                seed * 31 + i,
                1000 + i % 9000
            );
            (
                "chat gpt-4o-mini",
                vec![
                    kv("gen_ai.operation.name", s("chat")),
                    kv("gen_ai.provider.name", s("openai")),
                    kv("gen_ai.request.model", s("gpt-4o-mini")),
                    kv("gen_ai.response.model", s("gpt-4o-mini-2024-07-18")),
                    kv("gen_ai.response.id", s(format!("chatcmpl-{seed}-{i}"))),
                    kv("gen_ai.request.temperature", any_value::Value::DoubleValue(0.2)),
                    kv("gen_ai.usage.input_tokens", any_value::Value::IntValue(900 + (i % 300) as i64)),
                    kv("gen_ai.usage.output_tokens", any_value::Value::IntValue(80 + (i % 90) as i64)),
                    kv("gen_ai.usage.cache_read.input_tokens", any_value::Value::IntValue(512)),
                    kv(
                        "gen_ai.response.finish_reasons",
                        any_value::Value::ArrayValue(opentelemetry_proto::tonic::common::v1::ArrayValue {
                            values: vec![AnyValue { value: Some(s("stop")) }],
                        }),
                    ),
                    kv("gen_ai.conversation.id", s(format!("sess-{}", trace % 5000))),
                    kv("user.id", s(format!("user-{}", trace % 2000))),
                    kv(
                        "gen_ai.system_instructions",
                        s(
                            r#"[{"type":"text","content":"You are the support assistant of Acme. Be concise, polite, and follow the refund policy: refunds within 30 days, to the original payment method, never in cash."}]"#,
                        ),
                    ),
                    kv("gen_ai.input.messages", s(format!(r#"[{{"role":"user","parts":[{{"type":"text","content":"{question}"}}]}}]"#))),
                    kv(
                        "gen_ai.output.messages",
                        s(
                            r#"[{"role":"assistant","parts":[{"type":"text","content":"I'm sorry about the damaged parcel and the double charge. I have opened a refund of the duplicate payment to your card; it takes 5 to 7 business days. Would you like a replacement for the damaged item as well?"}],"finish_reason":"stop"}]"#,
                        ),
                    ),
                ],
                root.to_be_bytes().to_vec(),
            )
        };
        spans.push(Span {
            trace_id: trace_id.to_vec(),
            span_id: if i % 3 == 0 { root.to_be_bytes().to_vec() } else { span_id.to_be_bytes().to_vec() },
            parent_span_id: parent,
            name: name.into(),
            kind: span::SpanKind::Client as i32,
            start_time_unix_nano: start,
            end_time_unix_nano: start + 850_000_000,
            attributes: attrs,
            status: Some(Status { code: status::StatusCode::Unset as i32, message: String::new() }),
            ..Default::default()
        });
    }
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv("service.name", s("support-bot")), kv("telemetry.sdk.language", s("python"))],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "opentelemetry.util.genai.handler".into(),
                    version: "1.0b0".into(),
                    ..Default::default()
                }),
                spans,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

struct Run {
    spans: u64,
    bytes: u64,
    seconds: f64,
    latencies: Vec<Duration>,
    cpu_seconds: f64,
}

impl Run {
    /// The latency at quantile `p` in milliseconds.
    fn ms(&self, p: f64) -> f64 {
        let i = ((self.latencies.len() as f64 * p) as usize).min(self.latencies.len().saturating_sub(1));
        self.latencies.get(i).map_or(0.0, |d| d.as_secs_f64() * 1e3)
    }
}

/// CPU seconds of this process (collector and load generator).
fn cpu_seconds() -> f64 {
    served::cpu_seconds(std::process::id())
}

/// How the collector under test stores what it receives.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    Discard,
    Wal,
    Direct,
}

/// How the load generator reaches the collector.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Transport {
    HttpProtobuf,
    Grpc,
}

impl Transport {
    fn name(self) -> &'static str {
        match self {
            Transport::HttpProtobuf => "HTTP protobuf",
            Transport::Grpc => "gRPC",
        }
    }
}

/// Closed loop (`concurrency` clients, each sending as soon as its last request is answered:
/// throughput at saturation) or open loop (requests started at a fixed rate whatever the
/// answers, latency counted from the scheduled start so that a slow answer cannot hide the
/// requests queued behind it).
#[derive(Debug, Clone, Copy)]
enum Load {
    Saturate,
    Rate(f64),
}

/// One client of either transport; both send the same pre-built requests.
#[derive(Clone)]
enum Client {
    Http { client: reqwest::Client, url: String },
    Grpc(TraceServiceClient<tonic::transport::Channel>),
}

impl Client {
    async fn connect(transport: Transport, http: std::net::SocketAddr, grpc: std::net::SocketAddr) -> Result<Client, String> {
        Ok(match transport {
            Transport::HttpProtobuf => Client::Http { client: reqwest::Client::new(), url: format!("http://{http}/v1/traces") },
            Transport::Grpc => Client::Grpc(
                TraceServiceClient::connect(format!("http://{grpc}"))
                    .await
                    .map_err(|e| format!("connecting to the gRPC receiver: {e}"))?
                    .max_decoding_message_size(64 << 20)
                    .max_encoding_message_size(64 << 20),
            ),
        })
    }

    async fn send(&mut self, body: &[u8], request: &ExportTraceServiceRequest) -> Result<(), String> {
        match self {
            Client::Http { client, url } => {
                let resp = client
                    .post(url.as_str())
                    .header("content-type", "application/x-protobuf")
                    .body(body.to_vec())
                    .send()
                    .await
                    .map_err(|e| e.to_string())?;
                if !resp.status().is_success() {
                    return Err(format!("the collector answered {}", resp.status()));
                }
            }
            Client::Grpc(client) => {
                client.export(request.clone()).await.map_err(|e| format!("the collector answered {e}"))?;
            }
        }
        Ok(())
    }
}

async fn run_once(store: &Store, bench: &IngestBench, mode: Mode, transport: Transport, load: Load) -> Result<Run, String> {
    let requests: Arc<Vec<ExportTraceServiceRequest>> =
        Arc::new((0..bench.requests as u64).map(|i| sample_request(i + 1, bench.spans_per_request)).collect());
    let bodies: Arc<Vec<Vec<u8>>> = Arc::new(requests.iter().map(|r| r.encode_to_vec()).collect());
    let wal_dir = std::env::temp_dir().join(format!("flywheel-bench-wal-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&wal_dir);
    let cfg = CollectorConfig {
        http: "127.0.0.1:0".into(),
        grpc: "127.0.0.1:0".into(),
        wal: mode == Mode::Wal,
        wal_dir: Some(wal_dir.clone()),
        ..Default::default()
    };
    let store_rows = mode != Mode::Discard;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (addr_tx, addr_rx) = tokio::sync::oneshot::channel();
    let store = store.clone();
    let server = tokio::spawn(async move {
        server::run_with(
            store,
            cfg,
            AuthMode::Open { project: "bench".into() },
            store_rows,
            async {
                let _ = stop_rx.await;
            },
            |http, grpc| {
                let _ = addr_tx.send((http, grpc));
            },
        )
        .await
    });
    let (http, grpc) = addr_rx.await.map_err(|_| "the collector did not start".to_string())?;
    let client = Client::connect(transport, http, grpc).await?;
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let cpu0 = cpu_seconds();
    let started = Instant::now();
    let mut workers = Vec::new();
    match load {
        Load::Saturate => {
            for _ in 0..bench.concurrency {
                let (mut client, requests, bodies, next) = (client.clone(), requests.clone(), bodies.clone(), next.clone());
                workers.push(tokio::spawn(async move {
                    let mut latencies = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if i >= bodies.len() {
                            return Ok::<_, String>(latencies);
                        }
                        let t = Instant::now();
                        client.send(&bodies[i], &requests[i]).await?;
                        latencies.push(t.elapsed());
                    }
                }));
            }
        }
        Load::Rate(per_second) => {
            for i in 0..bench.requests {
                let scheduled = started + Duration::from_secs_f64(i as f64 / per_second);
                tokio::time::sleep_until(scheduled.into()).await;
                let (mut client, requests, bodies) = (client.clone(), requests.clone(), bodies.clone());
                workers.push(tokio::spawn(async move {
                    client.send(&bodies[i], &requests[i]).await?;
                    Ok::<_, String>(vec![scheduled.elapsed()])
                }));
            }
        }
    }
    let mut latencies = Vec::new();
    for w in workers {
        latencies.extend(w.await.map_err(|e| e.to_string())??);
    }
    let seconds = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    // With the log, acknowledged is not yet stored: wait for the drain before stopping, so
    // that the next run starts from a quiet engine (not counted in the figures above).
    while mode == Mode::Wal
        && std::fs::read_to_string(wal_dir.join("checkpoint")).ok().and_then(|c| c.trim().parse::<u64>().ok()).unwrap_or(0)
            < bench.requests as u64
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = stop_tx.send(());
    server.await.map_err(|e| e.to_string())?.map_err(|e| e.to_string())?;
    let _ = std::fs::remove_dir_all(&wal_dir);
    latencies.sort();
    Ok(Run {
        spans: (bench.requests * bench.spans_per_request) as u64,
        bytes: bodies.iter().map(|b| b.len() as u64).sum(),
        seconds,
        latencies,
        cpu_seconds: cpu,
    })
}

/// Runs the benchmark into a scratch database and prints two tables: throughput at saturation
/// per transport and writer mode, then acknowledgement latency at fixed loads (default writer).
pub async fn ingest(store: &Store, bench: &IngestBench) -> Result<String, String> {
    let scratch = store.with_database(&format!("{}_bench_ingest", store.database()));
    scratch
        .with_database("default")
        .execute(&format!("DROP DATABASE IF EXISTS `{}`", scratch.database()))
        .await
        .map_err(|e| e.to_string())?;
    flywheel_schemas::migrate::migrate(&scratch, &Default::default()).await.map_err(|e| e.to_string())?;
    if let Some(spans) = bench.large_request {
        let out = served::large_request(&scratch, spans).await;
        scratch.with_database("default").execute(&format!("DROP DATABASE `{}`", scratch.database())).await.map_err(|e| e.to_string())?;
        return out;
    }
    if let Some(seconds) = bench.soak_seconds {
        let out = served::soak(scratch.database(), store.url(), seconds, bench.soak_rate, bench.spans_per_request).await?;
        scratch.with_database("default").execute(&format!("DROP DATABASE `{}`", scratch.database())).await.map_err(|e| e.to_string())?;
        return Ok(out);
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} requests x {} GenAI spans ({:.0} KB per request), {} concurrent clients at saturation, ClickHouse at {}",
        bench.requests,
        bench.spans_per_request,
        sample_request(1, bench.spans_per_request).encoded_len() as f64 / 1e3,
        bench.concurrency,
        store.url()
    );
    let _ = writeln!(
        out,
        "{:<14} {:<36} {:>9} {:>7} {:>8} {:>8} {:>12}",
        "transport", "writer (acknowledged when…)", "spans/s", "MB/s", "p50 ms", "p99 ms", "CPU us/span"
    );
    let mut runs = 0;
    for transport in [Transport::HttpProtobuf, Transport::Grpc] {
        for (label, mode) in [
            ("off (decoded+normalised, discarded)", Mode::Discard),
            ("write-ahead log (fsynced)", Mode::Wal),
            ("no log (inserted in ClickHouse)", Mode::Direct),
        ] {
            let r = run_once(&scratch, bench, mode, transport, Load::Saturate).await?;
            runs += (mode != Mode::Discard) as usize;
            let _ = writeln!(
                out,
                "{:<14} {:<36} {:>9.0} {:>7.1} {:>8.1} {:>8.1} {:>12.1}",
                transport.name(),
                label,
                r.spans as f64 / r.seconds,
                r.bytes as f64 / r.seconds / 1e6,
                r.ms(0.5),
                r.ms(0.99),
                r.cpu_seconds / r.spans as f64 * 1e6
            );
        }
    }
    let _ = writeln!(out, "\nacknowledgement latency at fixed loads (open loop, write-ahead log on)");
    let _ = writeln!(
        out,
        "{:<14} {:>10} {:>9} {:>8} {:>8} {:>8} {:>12}",
        "transport", "requests/s", "spans/s", "p50 ms", "p99 ms", "max ms", "CPU us/span"
    );
    for transport in [Transport::HttpProtobuf, Transport::Grpc] {
        for &rate in &bench.rates {
            let r = run_once(&scratch, bench, Mode::Wal, transport, Load::Rate(rate)).await?;
            runs += 1;
            let _ = writeln!(
                out,
                "{:<14} {:>10.0} {:>9.0} {:>8.1} {:>8.1} {:>8.1} {:>12.1}",
                transport.name(),
                rate,
                rate * bench.spans_per_request as f64,
                r.ms(0.5),
                r.ms(0.99),
                r.ms(1.0),
                r.cpu_seconds / r.spans as f64 * 1e6
            );
        }
    }
    let stored: u64 = scratch.query("SELECT count() FROM spans FINAL").fetch_one().await.map_err(|e| e.to_string())?;
    let _ = writeln!(
        out,
        "\ndistinct spans stored after the {runs} storing runs: {stored} (expected {}: every run sends the same spans)",
        bench.requests * bench.spans_per_request
    );
    let runs: Vec<served::Saturation> = bench
        .served_sizes
        .iter()
        .map(|&n| served::Saturation { spans_per_request: n, spans: bench.served_spans, concurrency: bench.concurrency })
        .collect();
    let _ = writeln!(out, "\n{}", served::saturation(scratch.database(), store.url(), &runs).await?);
    let peak = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM")).map(|l| l.split_whitespace().nth(1).unwrap_or("0").to_string()));
    let _ = writeln!(
        out,
        "peak resident memory of the process (collector + load generator): {} MB",
        peak.and_then(|k| k.parse::<u64>().ok()).unwrap_or(0) / 1024
    );
    scratch.with_database("default").execute(&format!("DROP DATABASE `{}`", scratch.database())).await.map_err(|e| e.to_string())?;
    Ok(out)
}
