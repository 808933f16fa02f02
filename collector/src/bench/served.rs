//! The collector as users run it: `flywheel serve` in a process of its own (write-ahead log on,
//! the bench's ClickHouse), loaded over OTLP/HTTP protobuf from this process. What it measures
//! apart: spans **stored** end to end (acknowledged, then drained from the log into ClickHouse),
//! the CPU of the collector, of the ClickHouse engine and of the load generator, each per span,
//! and the collector's resident memory — at saturation for a request size, and in a soak of
//! mixed traffic at a fixed rate, sampled every second.

use std::fmt::Write as _;
use std::io::BufRead;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

use super::traffic::{self, Traffic};

/// A `flywheel serve` child.
struct Served {
    child: Child,
    http: String,
    wal_dir: PathBuf,
}

impl Served {
    fn start(database: &str, tag: &str) -> Result<Served, String> {
        let exe = std::env::current_exe().map_err(|e| format!("finding the flywheel binary: {e}"))?;
        let wal_dir = std::env::temp_dir().join(format!("flywheel-bench-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&wal_dir);
        let mut child = Command::new(exe)
            .args(["serve", "--no-auth", "--project", "bench", "--http", "127.0.0.1:0", "--grpc", "127.0.0.1:0"])
            .env("FLYWHEEL_CLICKHOUSE_DATABASE", database)
            .env("FLYWHEEL_WAL_DIR", &wal_dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("starting `flywheel serve`: {e}"))?;
        let mut lines = std::io::BufReader::new(child.stdout.take().expect("stdout is piped")).lines();
        let http = loop {
            match lines.next() {
                Some(Ok(line)) => {
                    if let Some(addr) = line.strip_prefix("OTLP/HTTP listening on ") {
                        break addr.to_string();
                    }
                }
                _ => return Err(format!("`flywheel serve` exited before listening: {:?}", child.try_wait())),
            }
        };
        std::thread::spawn(move || for _ in lines {});
        Ok(Served { child, http, wal_dir })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Acknowledged records not yet in ClickHouse (the collector's `/metrics`).
    async fn pending(&self, client: &reqwest::Client) -> Result<u64, String> {
        self.metric(client, "flywheel_wal_pending_records").await
    }

    /// One unlabelled value of the collector's `/metrics`.
    async fn metric(&self, client: &reqwest::Client, name: &str) -> Result<u64, String> {
        let text = client
            .get(format!("{}/metrics", self.http))
            .send()
            .await
            .map_err(|e| e.to_string())?
            .text()
            .await
            .map_err(|e| e.to_string())?;
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| format!("no {name} in /metrics"))
    }

    async fn drained(&self, client: &reqwest::Client) -> Result<(), String> {
        while self.pending(client).await? > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        // Measured and drained: nothing of the run is left in its log.
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.wal_dir);
    }
}

/// CPU seconds (user + system, every thread) of a process, from `/proc/<pid>/stat`.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    let ticks: f64 = fields.get(11..13).map(|f| f.iter().filter_map(|v| v.parse::<f64>().ok()).sum()).unwrap_or(0.0);
    ticks / 100.0
}

/// Resident memory now and at its peak (`VmRSS`, `VmHWM`), in MB.
fn rss_mb(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status.lines().find_map(|l| l.strip_prefix(name)).and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok()).unwrap_or(0.0)
            / 1024.0
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// The process listening on `port` on this machine (the ClickHouse engine), when it is ours to
/// read: its socket's inode in `/proc/net/tcp*`, then the process holding it.
fn listener(port: u16) -> Option<u32> {
    let inode = ["/proc/net/tcp", "/proc/net/tcp6"].iter().find_map(|path| {
        std::fs::read_to_string(path).ok()?.lines().skip(1).find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let local_port = u16::from_str_radix(f.get(1)?.rsplit(':').next()?, 16).ok()?;
            (local_port == port && f.get(3) == Some(&"0A")).then(|| f.get(9).map(|i| i.to_string()))?
        })
    })?;
    let socket = format!("socket:[{inode}]");
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|p| {
        let pid: u32 = p.file_name().to_str()?.parse().ok()?;
        std::fs::read_dir(p.path().join("fd"))
            .ok()?
            .flatten()
            .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|l| l.to_str() == Some(&socket)))
            .then_some(pid)
    })
}

fn engine_pid(url: &str) -> Option<u32> {
    let authority = url.split("://").nth(1)?.split('/').next()?;
    let host_port = authority.rsplit('@').next()?;
    let port: u16 = host_port.rsplit(':').next()?.parse().ok()?;
    listener(port)
}

async fn post(client: &reqwest::Client, url: &str, body: &[u8]) -> Result<(), String> {
    let resp =
        client.post(url).header("content-type", "application/x-protobuf").body(body.to_vec()).send().await.map_err(|e| e.to_string())?;
    if resp.status().is_success() { Ok(()) } else { Err(format!("the collector answered {}", resp.status())) }
}

/// One size of request at saturation: `concurrency` clients in a closed loop.
pub struct Saturation {
    pub spans_per_request: usize,
    pub spans: u64,
    pub concurrency: usize,
}

/// The table of [`Saturation`] runs, one row per request size.
pub async fn saturation(database: &str, url: &str, runs: &[Saturation]) -> Result<String, String> {
    let mut out = String::new();
    let engine = engine_pid(url);
    let _ = writeln!(
        out,
        "the collector in its own process (`flywheel serve`, write-ahead log on), mixed traffic (content on spans, content in log events, agents with {} tools), OTLP/HTTP protobuf; engine process: {}",
        20,
        engine.map_or("not found on this machine (its CPU is not counted)".to_string(), |p| format!("pid {p}"))
    );
    let _ = writeln!(
        out,
        "{:>9} {:>9} {:>8} {:>12} {:>12} {:>9} {:>14} {:>12} {:>13} {:>12} {:>10}",
        "spans/req",
        "requests",
        "records",
        "acked sp/s",
        "stored sp/s",
        "p99 ms",
        "collector us",
        "engine us",
        "load gen us",
        "peak RSS MB",
        "req/fsync"
    );
    for (i, run) in runs.iter().enumerate() {
        let traffic = traffic::mixed(1000 + i as u64, run.spans, run.spans_per_request);
        let served = Served::start(database, &format!("sat{i}"))?;
        let client = reqwest::Client::new();
        let cpu = |pid: Option<u32>| pid.map_or(0.0, cpu_seconds);
        let (c0, e0, l0) = (cpu_seconds(served.pid()), cpu(engine), cpu_seconds(std::process::id()));
        let started = Instant::now();
        let latencies = closed_loop(&client, &served.http, &traffic, run.concurrency).await?;
        let acked = started.elapsed().as_secs_f64();
        served.drained(&client).await?;
        let stored = started.elapsed().as_secs_f64();
        let (c1, e1, l1) = (cpu_seconds(served.pid()), cpu(engine), cpu_seconds(std::process::id()));
        let per_span = |seconds: f64| seconds / traffic.spans as f64 * 1e6;
        let appends = served.metric(&client, "flywheel_wal_appends_total").await?;
        let fsyncs = served.metric(&client, "flywheel_wal_fsyncs_total").await?;
        let _ = writeln!(
            out,
            "{:>9} {:>9} {:>8} {:>12.0} {:>12.0} {:>9.1} {:>14.1} {:>12.1} {:>13.1} {:>12.0} {:>10.1}",
            run.spans_per_request,
            traffic.traces.len() + traffic.logs.len(),
            traffic.records,
            traffic.spans as f64 / acked,
            traffic.spans as f64 / stored,
            percentile(&latencies, 0.99),
            per_span(c1 - c0),
            per_span(e1 - e0),
            per_span(l1 - l0),
            rss_mb(served.pid()).1,
            appends as f64 / fsyncs.max(1) as f64
        );
    }
    let _ = writeln!(
        out,
        "(CPU per span stored, from the first request until the log is drained; the log records of the mix are sent too but not counted as spans; req/fsync: appends per group commit)"
    );
    Ok(out)
}

/// One request of `spans` small spans — traces of ten (a server span and nine children, one
/// attribute each, no content), OTLP/HTTP protobuf — to a fresh collector: its resident memory
/// before, at the peak and after, how long the acknowledgement and the drain took, and the
/// spans stored.
pub async fn large_request(store: &flywheel_schemas::Store, spans: usize) -> Result<String, String> {
    use prost::Message as _;
    let served = Served::start(store.database(), "large")?;
    let client = reqwest::Client::new();
    let body = small_spans(spans).encode_to_vec();
    let (before, _) = rss_mb(served.pid());
    let started = Instant::now();
    post(&client, &format!("{}/v1/traces", served.http), &body).await?;
    let acked = started.elapsed().as_secs_f64();
    served.drained(&client).await?;
    let drained = started.elapsed().as_secs_f64();
    let (after, peak) = rss_mb(served.pid());
    let stored: u64 = store
        .query("SELECT count() FROM spans WHERE name LIKE 'large-%'")
        .fetch_one()
        .await
        .map_err(|e| format!("counting the stored spans: {e}"))?;
    Ok(format!(
        "one request of {spans} small spans ({:.1} MB of OTLP protobuf) to a fresh collector: acknowledged in {acked:.1} s, stored in {drained:.1} s ({stored} spans in ClickHouse); collector RSS {before:.0} MB before, peak {peak:.0} MB, {after:.0} MB after\n",
        body.len() as f64 / 1e6
    ))
}

/// The request of [`large_request`]: every span dated now, ids unique per call.
fn small_spans(spans: usize) -> opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest {
    use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    let salt = now & 0xffff_ffff;
    let kv = |key: &str, value: any_value::Value| KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    };
    let id = |trace: u64, span: u64| [salt.to_be_bytes(), (trace << 32 | span).to_be_bytes()].concat();
    let spans = (0..spans as u64)
        .map(|i| {
            // Ids from 1: an all-zero id is invalid.
            let (trace, within) = (i / 10 + 1, i % 10);
            Span {
                trace_id: id(trace, 0),
                span_id: id(trace, i + 1)[8..].to_vec(),
                parent_span_id: if within == 0 { vec![] } else { id(trace, i + 1 - within)[8..].to_vec() },
                name: format!("large-{within}"),
                kind: if within == 0 { 2 } else { 1 },
                start_time_unix_nano: now + i,
                end_time_unix_nano: now + i + 1_000_000,
                attributes: vec![kv("n", any_value::Value::IntValue(within as i64))],
                ..Default::default()
            }
        })
        .collect();
    opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv("service.name", any_value::Value::StringValue("large".into()))],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope { name: "bench".into(), ..Default::default() }),
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 * p) as usize).min(sorted.len().saturating_sub(1));
    sorted.get(i).map_or(0.0, |d| d.as_secs_f64() * 1e3)
}

/// Sends every request of `traffic` (spans and log records interleaved) with `concurrency`
/// clients; returns the acknowledgement latencies, sorted.
async fn closed_loop(client: &reqwest::Client, http: &str, traffic: &Traffic, concurrency: usize) -> Result<Vec<Duration>, String> {
    let bodies: Arc<Vec<(String, Vec<u8>)>> = Arc::new(interleave(http, traffic));
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..concurrency.max(1) {
        let (client, bodies, next) = (client.clone(), bodies.clone(), next.clone());
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, Relaxed);
                let Some((url, body)) = bodies.get(i) else { return Ok::<_, String>(latencies) };
                let t = Instant::now();
                post(&client, url, body).await?;
                latencies.push(t.elapsed());
            }
        }));
    }
    let mut latencies = Vec::new();
    for w in workers {
        latencies.extend(w.await.map_err(|e| e.to_string())??);
    }
    latencies.sort();
    Ok(latencies)
}

/// Trace and log requests in one sequence, the log requests spread evenly among the others.
fn interleave(http: &str, traffic: &Traffic) -> Vec<(String, Vec<u8>)> {
    let (traces, logs) = (format!("{http}/v1/traces"), format!("{http}/v1/logs"));
    let every = (traffic.traces.len() / traffic.logs.len().max(1)).max(1);
    let mut logs_iter = traffic.logs.iter();
    let mut out = Vec::with_capacity(traffic.traces.len() + traffic.logs.len());
    for (i, body) in traffic.traces.iter().enumerate() {
        out.push((traces.clone(), body.clone()));
        if (i + 1) % every == 0
            && let Some(l) = logs_iter.next()
        {
            out.push((logs.clone(), l.clone()));
        }
    }
    out.extend(logs_iter.map(|l| (logs.clone(), l.clone())));
    out
}

/// Mixed traffic at `rate` spans per second for `seconds`, in requests of `spans_per_request`
/// (open loop: requests leave on schedule whatever the answers; with 512 in flight, a request
/// due is not sent and counted — the machine cannot take the rate); the collector's memory
/// sampled every second, a line every ten.
pub async fn soak(database: &str, url: &str, seconds: u64, rate: u64, spans_per_request: usize) -> Result<String, String> {
    let mut out = String::new();
    let engine = engine_pid(url);
    let served = Served::start(database, "soak")?;
    let client = reqwest::Client::new();
    // A fresh batch of traces per 10 s (new ids), generated ahead.
    let per_window = rate * 10;
    let _ = writeln!(
        out,
        "soak: {rate} spans/s of mixed traffic in requests of {spans_per_request} spans for {seconds} s, the collector in its own process (pid {})",
        served.pid()
    );
    let _ = writeln!(
        out,
        "{:>6} {:>12} {:>10} {:>10} {:>12} {:>9} {:>9} {:>14}",
        "t s", "spans sent", "refused", "not sent", "log pending", "RSS MB", "peak MB", "collector CPU"
    );
    let in_flight = Arc::new(AtomicUsize::new(0));
    let (refused, behind) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    // Why the first refused request was refused: a count alone says nothing of the cause.
    let first_refusal: Arc<std::sync::Mutex<Option<String>>> = Arc::default();
    let started = Instant::now();
    let c0 = cpu_seconds(served.pid());
    let e0 = engine.map_or(0.0, cpu_seconds);
    let mut sent_spans = 0u64;
    let mut rss_samples = Vec::new();
    for window in 0..seconds.div_ceil(10) {
        let traffic = traffic::mixed(5000 + window, per_window, spans_per_request);
        let bodies = interleave(&served.http, &traffic);
        let spans_per_body = traffic.spans as f64 / traffic.traces.len().max(1) as f64;
        let window_start = started + Duration::from_secs(window * 10);
        let window_len = Duration::from_secs(10.min(seconds - window * 10));
        let n = ((bodies.len() as f64) * window_len.as_secs_f64() / 10.0) as usize;
        let mut next_sample = Instant::now();
        for (i, (url, body)) in bodies.into_iter().take(n).enumerate() {
            let due = window_start + window_len.mul_f64(i as f64 / n.max(1) as f64);
            tokio::time::sleep_until(due.into()).await;
            if Instant::now() >= next_sample {
                rss_samples.push(rss_mb(served.pid()).0);
                next_sample += Duration::from_secs(1);
            }
            if in_flight.load(Relaxed) >= 512 {
                behind.fetch_add(1, Relaxed);
                continue;
            }
            if url.ends_with("/v1/traces") {
                sent_spans += spans_per_body as u64;
            }
            in_flight.fetch_add(1, Relaxed);
            let (client, in_flight, refused, first_refusal) = (client.clone(), in_flight.clone(), refused.clone(), first_refusal.clone());
            tokio::spawn(async move {
                if let Err(e) = post(&client, &url, &body).await {
                    refused.fetch_add(1, Relaxed);
                    first_refusal.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert(format!("{url}: {e}"));
                }
                in_flight.fetch_sub(1, Relaxed);
            });
        }
        tokio::time::sleep_until((window_start + window_len).into()).await;
        let (now, peak) = rss_mb(served.pid());
        let _ = writeln!(
            out,
            "{:>6} {:>12} {:>10} {:>10} {:>12} {:>9.0} {:>9.0} {:>13.0}%",
            started.elapsed().as_secs(),
            sent_spans,
            refused.load(Relaxed),
            behind.load(Relaxed),
            served.pending(&client).await.unwrap_or(0),
            now,
            peak,
            (cpu_seconds(served.pid()) - c0) / started.elapsed().as_secs_f64() * 100.0
        );
    }
    while in_flight.load(Relaxed) > 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let drain_started = Instant::now();
    served.drained(&client).await?;
    let (c1, e1) = (cpu_seconds(served.pid()), engine.map_or(0.0, cpu_seconds));
    let (_, peak) = rss_mb(served.pid());
    let third = rss_samples.len() / 3;
    let mean = |s: &[f64]| s.iter().sum::<f64>() / s.len().max(1) as f64;
    let appends = served.metric(&client, "flywheel_wal_appends_total").await?;
    let fsyncs = served.metric(&client, "flywheel_wal_fsyncs_total").await?;
    let _ = writeln!(
        out,
        "log drained {:.1} s after the load stopped; collector {:.1} us/span, engine {:.1} us/span; {:.1} requests per fsync; RSS mean first third {:.0} MB, last third {:.0} MB, peak {:.0} MB",
        drain_started.elapsed().as_secs_f64(),
        (c1 - c0) / sent_spans.max(1) as f64 * 1e6,
        (e1 - e0) / sent_spans.max(1) as f64 * 1e6,
        appends as f64 / fsyncs.max(1) as f64,
        mean(&rss_samples[..third]),
        mean(&rss_samples[rss_samples.len() - third..]),
        peak
    );
    if let Some(why) = first_refusal.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
        let _ = writeln!(out, "{} requests refused; the first: {why}", refused.load(Relaxed));
    }
    Ok(out)
}
