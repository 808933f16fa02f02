//! Fault tests of the durability contract, each bounded in time and on loopback: the collector
//! killed with SIGKILL under load, and at the instants the load never reaches (right after a
//! segment rotation, during a checkpoint); the write-ahead log filling up while ClickHouse is
//! down; a poison record beside another project's traffic; a log written by the previous
//! format. After each, every acknowledged span is in ClickHouse exactly once. Each test prints
//! its counts (sent, acknowledged, stored, duplicates, lost).

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Collector, TestDb};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message as _;

/// A small OTel GenAI request whose spans all carry trace id `n`.
fn request(n: u64) -> (Vec<u8>, u64) {
    let req: ExportTraceServiceRequest = flywheel_collector::bench::sample_request(n + 1, 6);
    let spans = req.resource_spans.iter().flat_map(|r| &r.scope_spans).map(|s| s.spans.len() as u64).sum();
    (req.encode_to_vec(), spans)
}

fn trace_ids(body: &[u8]) -> Vec<String> {
    let req = ExportTraceServiceRequest::decode(body).unwrap();
    let mut ids: Vec<String> = req
        .resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| &s.spans)
        .map(|s| s.trace_id.iter().map(|b| format!("{b:02x}")).collect())
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

async fn post(client: &reqwest::Client, http: &str, key: &str, body: &[u8]) -> reqwest::Result<reqwest::Response> {
    client
        .post(format!("{http}/v1/traces"))
        .bearer_auth(key)
        .header("content-type", "application/x-protobuf")
        .body(body.to_vec())
        .send()
        .await
}

struct Counts {
    sent: u64,
    acknowledged: u64,
    acknowledged_spans: u64,
    traces: Vec<String>,
}

/// Posts requests as fast as the collector takes them, for `run_for`, from `workers` clients.
async fn load(http: String, key: String, run_for: Duration, workers: usize, counter: Arc<Mutex<Counts>>, first: u64) {
    let next = Arc::new(std::sync::atomic::AtomicU64::new(first));
    let deadline = Instant::now() + run_for;
    let mut tasks = Vec::new();
    for _ in 0..workers {
        let (http, key, counter, next) = (http.clone(), key.clone(), counter.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            while Instant::now() < deadline {
                let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let (body, spans) = request(n);
                counter.lock().unwrap().sent += 1;
                if post(&client, &http, &key, &body).await.is_ok_and(|r| r.status() == 200) {
                    let mut c = counter.lock().unwrap();
                    c.acknowledged += 1;
                    c.acknowledged_spans += spans;
                    c.traces.extend(trace_ids(&body));
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
}

async fn verify(c: &Collector, project: &str, counts: &Counts, name: &str) {
    verify_in(&c.db.store(), project, counts, name).await;
}

/// [`verify`] against the collector's database once the collector is gone.
async fn verify_in(store: &flywheel_schemas::Store, project: &str, counts: &Counts, name: &str) {
    let (stored, distinct): (u64, u64) = store
        .query("SELECT count(), uniqExact(trace_id, span_id) FROM spans FINAL WHERE project_id = ? AND has(?, trace_id)")
        .bind(project)
        .bind(&counts.traces)
        .fetch_one()
        .await
        .unwrap();
    let duplicates = stored - distinct;
    let lost = counts.acknowledged_spans.saturating_sub(distinct);
    println!(
        "{name}: sent {} requests, acknowledged {} ({} spans), stored {distinct} distinct spans, duplicates {duplicates}, lost {lost}",
        counts.sent, counts.acknowledged, counts.acknowledged_spans
    );
    assert_eq!(lost, 0, "every acknowledged span is stored");
    assert_eq!(duplicates, 0, "no span is counted twice");
    assert!(counts.acknowledged > 0, "the load was acknowledged at all");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_under_load_loses_nothing_acknowledged() {
    let mut c = Collector::start(TestDb::new("sigkill"), "");
    let key = c.key("p");
    let counts = Arc::new(Mutex::new(Counts { sent: 0, acknowledged: 0, acknowledged_spans: 0, traces: Vec::new() }));
    // Three kills at different moments of a steady load.
    for round in 0..3u64 {
        let load_task = tokio::spawn(load(c.http.clone(), key.clone(), Duration::from_millis(1500), 4, counts.clone(), round * 1_000_000));
        tokio::time::sleep(Duration::from_millis(400 + round * 300)).await;
        c = c.crash_and_restart("");
        let _ = load_task.await;
    }
    c.wait_stored().await;
    let counts = Arc::try_unwrap(counts).ok().unwrap().into_inner().unwrap();
    verify(&c, "p", &counts, "sigkill").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_log_refuses_with_429_and_keeps_everything_it_acknowledged() {
    let _ = common::scratch_dir("walfull");
    let engine = common::dedicated_engine("walfull", 0);
    let port = engine.state.port;
    let c = Collector::start(TestDb { url: engine.url().to_string(), database: "walfull".into() }, "[collector]\nwal_max_bytes = 200000\n");
    let key = c.key("p");
    let client = reqwest::Client::new();
    let mut counts = Counts { sent: 0, acknowledged: 0, acknowledged_spans: 0, traces: Vec::new() };
    // One request while ClickHouse is up, so that the collector knows the key.
    let (body, spans) = request(10_000);
    assert_eq!(post(&client, &c.http, &key, &body).await.unwrap().status(), 200);
    (counts.sent, counts.acknowledged, counts.acknowledged_spans) = (1, 1, spans);
    counts.traces.extend(trace_ids(&body));
    c.wait_stored().await;
    engine.stop().unwrap();

    let mut refused = None;
    for n in 0..500 {
        let (body, spans) = request(n);
        counts.sent += 1;
        let r = post(&client, &c.http, &key, &body).await.unwrap();
        if r.status() == 200 {
            counts.acknowledged += 1;
            counts.acknowledged_spans += spans;
            counts.traces.extend(trace_ids(&body));
        } else {
            refused = Some((r.status().as_u16(), r.headers().get("retry-after").is_some()));
            break;
        }
    }
    assert_eq!(refused, Some((429, true)), "a full log answers 429 with Retry-After");
    let ready = reqwest::get(format!("{}/readyz", c.http)).await.unwrap();
    assert_eq!(ready.status(), 503, "a full log is not ready");
    let metrics = reqwest::get(format!("{}/metrics", c.http)).await.unwrap().text().await.unwrap();
    assert!(metrics.contains(r#"flywheel_rejected_total{signal="wal",reason="full"} 1"#), "{metrics}");

    let _engine = common::dedicated_engine("walfull", port);
    c.wait_stored().await;
    verify(&c, "p", &counts, "wal full").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_clickhouse_is_absorbed_and_nothing_is_lost() {
    let _ = common::scratch_dir("slow");
    // Every insert takes 400 ms: ClickHouse under pressure.
    let engine = common::dedicated_engine_with("slow", 0, &[("FLYWHEEL_ENGINE_INSERT_DELAY_MS", "400")]);
    let c = Collector::start(TestDb { url: engine.url().to_string(), database: "slow".into() }, "");
    let key = c.key("p");
    let counts = Arc::new(Mutex::new(Counts { sent: 0, acknowledged: 0, acknowledged_spans: 0, traces: Vec::new() }));
    let started = Instant::now();
    load(c.http.clone(), key.clone(), Duration::from_millis(2000), 4, counts.clone(), 0).await;
    let loaded = started.elapsed();
    let metrics = reqwest::get(format!("{}/metrics", c.http)).await.unwrap().text().await.unwrap();
    let pending = metrics.lines().find_map(|l| l.strip_prefix("flywheel_wal_pending_records ")).unwrap_or("?").to_string();
    c.wait_stored().await;
    let counts = Arc::try_unwrap(counts).ok().unwrap().into_inner().unwrap();
    println!(
        "slow clickhouse: {} requests acknowledged in {loaded:?} with 400 ms inserts; {pending} records were waiting in the log when the load stopped",
        counts.acknowledged
    );
    verify(&c, "p", &counts, "slow clickhouse").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_log_keeps_taking_traffic_as_stored_segments_are_deleted() {
    // 1 MB of log for ~4 MB of traffic: only deleting stored segments keeps it open.
    let c = Collector::start(TestDb::new("smallwal"), "[collector]\nwal_max_bytes = 1000000\n");
    let key = c.key("p");
    let client = reqwest::Client::new();
    let mut counts = Counts { sent: 0, acknowledged: 0, acknowledged_spans: 0, traces: Vec::new() };
    let mut throttled = 0;
    for n in 0..400 {
        let (body, spans) = request(n);
        loop {
            counts.sent += 1;
            let status = post(&client, &c.http, &key, &body).await.unwrap().status();
            if status == 200 {
                counts.acknowledged += 1;
                counts.acknowledged_spans += spans;
                counts.traces.extend(trace_ids(&body));
                break;
            }
            // Full for a moment: retry as an OTLP exporter does on 429.
            assert_eq!(status, 429);
            throttled += 1;
            assert!(throttled < 200, "the log stays full: stored data is not leaving it");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    c.wait_stored().await;
    let metrics = reqwest::get(format!("{}/metrics", c.http)).await.unwrap().text().await.unwrap();
    let bytes: u64 = metrics.lines().find_map(|l| l.strip_prefix("flywheel_wal_bytes ")).unwrap().trim().parse().unwrap();
    println!("small log: 400 requests acknowledged ({throttled} 429s on the way), log at {bytes} bytes after the drain");
    assert!(bytes <= 1_000_000, "stored segments are deleted: {bytes}");
    verify(&c, "p", &counts, "small log").await;
}

/// The segments of a write-ahead log directory and the LSNs of their records, read with the
/// on-disk layout itself (optional 16-byte header `flywal\0\0` + version, then records
/// `[len u32][crc32 u32][lsn u64][payload]` up to a record header of zeros or the end of the
/// file), independently of the collector's reader.
fn wal_lsns(dir: &std::path::Path) -> Vec<(u64, Vec<u64>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let Some(first) = path.file_name().unwrap().to_str().unwrap().strip_suffix(".wal").and_then(|n| n.parse::<u64>().ok()) else {
            continue;
        };
        let bytes = std::fs::read(&path).unwrap();
        let mut pos = if bytes.starts_with(b"flywal") { 16 } else { 0 };
        let mut lsns = Vec::new();
        while pos + 16 <= bytes.len() {
            let len = u32::from_le_bytes(bytes[pos..pos + 4].try_into().unwrap()) as usize;
            if bytes[pos..pos + 16] == [0; 16] || pos + 16 + len > bytes.len() {
                break;
            }
            lsns.push(u64::from_le_bytes(bytes[pos + 8..pos + 16].try_into().unwrap()));
            pos += 16 + len;
        }
        out.push((first, lsns));
    }
    out.sort();
    out
}

fn last_lsn(dir: &std::path::Path) -> u64 {
    wal_lsns(dir).iter().flat_map(|(first, lsns)| lsns.iter().copied().chain([first - 1])).max().unwrap_or(0)
}

/// One record in the layout of format versions 1 and 2.
fn record(lsn: u64, payload: &[u8]) -> Vec<u8> {
    let mut h = crc32fast::Hasher::new();
    h.update(&lsn.to_le_bytes());
    h.update(payload);
    let mut rec = Vec::new();
    rec.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    rec.extend_from_slice(&h.finalize().to_le_bytes());
    rec.extend_from_slice(&lsn.to_le_bytes());
    rec.extend_from_slice(payload);
    rec
}

/// The rows the collector logs for trace request `n` of `project`, as a log record payload.
fn payload(project: &str, n: u64) -> (Vec<u8>, Vec<String>, u64) {
    let req = flywheel_collector::bench::sample_request(n + 1, 6);
    let (spans, rejected) = flywheel_collector::normalize::span::decode_spans(req.clone());
    assert!(rejected.is_empty());
    let now = time::OffsetDateTime::now_utc();
    let batch = flywheel_collector::writer::Batch { spans: spans.iter().map(|s| s.row(project, now)).collect(), ..Default::default() };
    let body = req.encode_to_vec();
    (postcard::to_stdvec(&batch).unwrap(), trace_ids(&body), spans.len() as u64)
}

/// Issue 15, item 1: killed right after a rotation (the next segment created, no record durable
/// in it yet), restarted while ClickHouse is still down. New records must not reuse the LSNs of
/// the records waiting in the previous segment, or the drain skips them as already stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_right_after_a_rotation_loses_nothing() {
    let _ = common::scratch_dir("rotation");
    let engine = common::dedicated_engine("rotation", 0);
    let port = engine.state.port;
    // A 1 MB log: 256 KB segments, so a few hundred requests rotate several times.
    let config = "[collector]\nwal_max_bytes = 1000000\n";
    let c = Collector::start(TestDb { url: engine.url().to_string(), database: "rotation".into() }, config);
    let key = c.key("p");
    let client = reqwest::Client::new();
    let mut counts = Counts { sent: 0, acknowledged: 0, acknowledged_spans: 0, traces: Vec::new() };
    let send = async |counts: &mut Counts, http: &str, n: u64| {
        let (body, spans) = request(n);
        counts.sent += 1;
        let status = post(&client, http, &key, &body).await.unwrap().status();
        if status == 200 {
            counts.acknowledged += 1;
            counts.acknowledged_spans += spans;
            counts.traces.extend(trace_ids(&body));
        }
        status
    };
    assert_eq!(send(&mut counts, &c.http, 0).await, 200, "known key while ClickHouse is up");
    c.wait_stored().await;
    engine.stop().unwrap();
    let mut n = 1;
    while wal_lsns(&c.wal_dir()).len() < 3 {
        assert_eq!(send(&mut counts, &c.http, n).await, 200);
        n += 1;
    }
    let before = counts.acknowledged;
    let mut engine = None;
    let c = c.crash_and_restart_with(config, |wal| {
        // What the crash leaves: the next segment, named after the LSN it will hold first, and
        // nothing durable in it. ClickHouse comes back before the restart (`serve` needs it to
        // start); the records waiting in the log are then replayed while new ones arrive.
        let next = last_lsn(wal) + 1;
        std::fs::write(wal.join(format!("{next:020}.wal")), b"").unwrap();
        engine = Some(common::dedicated_engine("rotation", port));
    });
    for _ in 0..20 {
        assert_eq!(send(&mut counts, &c.http, n).await, 200, "the restarted collector acknowledges");
        n += 1;
    }
    let mut lsns: Vec<u64> = wal_lsns(&c.wal_dir()).into_iter().flat_map(|(_, l)| l).collect();
    let all = lsns.len();
    lsns.sort();
    lsns.dedup();
    assert_eq!(lsns.len(), all, "no LSN is used twice among the segments not yet deleted");
    println!("rotation crash: {before} requests acknowledged before the crash, {} after", counts.acknowledged - before);
    c.wait_stored().await;
    verify(&c, "p", &counts, "crash after rotation").await;
    drop(engine);
}

/// Killed while the checkpoint is being replaced: a half-written temporary file, and a
/// checkpoint emptied (a rename that reached the disk before the data did). The log replays
/// from its oldest segment; replays are deduplicated, nothing acknowledged is missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_during_a_checkpoint_loses_nothing_and_counts_nothing_twice() {
    let _ = common::scratch_dir("checkpoint");
    let engine = common::dedicated_engine("checkpoint", 0);
    let port = engine.state.port;
    let config = "[collector]\nwal_max_bytes = 2000000\n";
    let c = Collector::start(TestDb { url: engine.url().to_string(), database: "checkpoint".into() }, config);
    let key = c.key("p");
    let client = reqwest::Client::new();
    let mut counts = Counts { sent: 0, acknowledged: 0, acknowledged_spans: 0, traces: Vec::new() };
    let mut engine = Some(engine);
    for n in 0..200 {
        let (body, spans) = request(n);
        counts.sent += 1;
        if n == 120 {
            engine.take().unwrap().stop().unwrap(); // the rest waits in the log
        }
        assert_eq!(post(&client, &c.http, &key, &body).await.unwrap().status(), 200);
        counts.acknowledged += 1;
        counts.acknowledged_spans += spans;
        counts.traces.extend(trace_ids(&body));
    }
    let mut restarted = None;
    let c = c.crash_and_restart_with(config, |wal| {
        std::fs::write(wal.join("checkpoint.tmp"), b"12").unwrap();
        std::fs::write(wal.join("checkpoint"), b"").unwrap();
        // And the crash came right after a rotation too.
        let next = last_lsn(wal) + 1;
        std::fs::write(wal.join(format!("{next:020}.wal")), b"").unwrap();
        restarted = Some(common::dedicated_engine("checkpoint", port));
    });
    for n in 200..220 {
        let (body, spans) = request(n);
        counts.sent += 1;
        assert_eq!(post(&client, &c.http, &key, &body).await.unwrap().status(), 200);
        counts.acknowledged += 1;
        counts.acknowledged_spans += spans;
        counts.traces.extend(trace_ids(&body));
    }
    c.wait_stored().await;
    verify(&c, "p", &counts, "crash during checkpoint").await;
    drop(restarted);
}

/// Issue 15, item 3: during an outage, one project sends a request with spans on 150 distinct
/// days (more than ClickHouse takes in one insert block), between another project's requests.
/// When ClickHouse returns, both projects' spans are all stored: the drain splits inserts by
/// partition, and no batch holds back or takes down the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_over_100_days_during_an_outage_does_not_hold_back_another_project() {
    let _ = common::scratch_dir("manydays");
    let engine = common::dedicated_engine("manydays", 0);
    let port = engine.state.port;
    let c = Collector::start(TestDb { url: engine.url().to_string(), database: "manydays".into() }, "");
    let (key_a, key_b) = (c.key("a"), c.key("b"));
    let client = reqwest::Client::new();
    let mut counts = Counts { sent: 0, acknowledged: 0, acknowledged_spans: 0, traces: Vec::new() };
    let send = async |counts: &mut Counts, n: u64| {
        let (body, spans) = request(n);
        counts.sent += 1;
        assert_eq!(post(&client, &c.http, &key_a, &body).await.unwrap().status(), 200);
        counts.acknowledged += 1;
        counts.acknowledged_spans += spans;
        counts.traces.extend(trace_ids(&body));
    };
    send(&mut counts, 0).await;
    let b_first = post(&client, &c.http, &key_b, &request(900).0).await.unwrap().status();
    assert_eq!(b_first, 200, "both keys known while ClickHouse is up");
    c.wait_stored().await;
    engine.stop().unwrap();
    for n in 1..=10 {
        send(&mut counts, n).await;
    }
    // Project B: 150 spans, one per day over the next 150 days (ahead, not behind: the test
    // database's retention TTL must not expire any of them; the partitions are the same).
    let mut many = flywheel_collector::bench::sample_request(777, 150);
    let day = 86_400 * 1_000_000_000u64;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
    for (i, span) in many.resource_spans.iter_mut().flat_map(|r| &mut r.scope_spans).flat_map(|s| &mut s.spans).enumerate() {
        span.start_time_unix_nano = now + (i as u64 + 1) * day;
        span.end_time_unix_nano = span.start_time_unix_nano + 1_000_000;
    }
    let many_traces = trace_ids(&many.encode_to_vec());
    assert_eq!(post(&client, &c.http, &key_b, &many.encode_to_vec()).await.unwrap().status(), 200);
    for n in 11..=20 {
        send(&mut counts, n).await;
    }
    let _engine = common::dedicated_engine("manydays", port);
    c.wait_stored().await;
    verify(&c, "a", &counts, "150 days beside another project").await;
    let (spans, days): (u64, u64) =
        c.db.store()
            .query("SELECT count(), uniqExact(toDate(start_time)) FROM spans FINAL WHERE project_id = 'b' AND has(?, trace_id)")
            .bind(&many_traces)
            .fetch_one()
            .await
            .unwrap();
    assert_eq!((spans, days), (150, 150), "project B's spans, on all their days");
}

/// Issue 15, item 6: an upgrade finds a log written by the previous build (format version 1: no
/// segment header), including a record this build cannot decode although its checksum holds.
/// Every decodable record is replayed; the undecodable one is quarantined and reported, and the
/// records after it are not cut as a torn tail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_written_by_the_previous_format_version_is_replayed_after_an_upgrade() {
    let c = Collector::start(TestDb::new("upgrade"), "");
    let _key = c.key("p");
    let mut counts = Counts { sent: 0, acknowledged: 0, acknowledged_spans: 0, traces: Vec::new() };
    let c = c.crash_and_restart_with("", |wal| {
        for entry in std::fs::read_dir(wal).unwrap() {
            let path = entry.unwrap().path();
            if path.is_file() && path.file_name().unwrap() != "lock" {
                std::fs::remove_file(path).unwrap();
            }
        }
        let mut file = Vec::new();
        for lsn in 1..=6u64 {
            if lsn == 3 {
                // Intact bytes in an encoding this build does not know.
                file.extend(record(lsn, &[0xff; 64]));
                continue;
            }
            let (payload, traces, spans) = payload("p", 500 + lsn);
            file.extend(record(lsn, &payload));
            counts.acknowledged += 1;
            counts.acknowledged_spans += spans;
            counts.traces.extend(traces);
        }
        std::fs::write(wal.join(format!("{:020}.wal", 1)), file).unwrap();
    });
    c.wait_stored().await;
    verify(&c, "p", &counts, "previous format").await;
    let metrics = reqwest::get(format!("{}/metrics", c.http)).await.unwrap().text().await.unwrap();
    assert!(metrics.contains(r#"flywheel_rejected_total{signal="wal",reason="undecodable"} 1"#), "{metrics}");
    assert!(!metrics.contains(r#"reason="torn_tail""#), "nothing is cut: {metrics}");
    assert!(c.wal_dir().join("quarantine").join(format!("undecodable-lsn{:020}.bin", 3)).exists());
}

/// Issue 15: what the drain quarantined is listed, and replayed by the operator once the cause
/// is gone — here a table constraint that refused project `p`'s rows, then dropped. A file still
/// refused, a record this build cannot decode and bytes cut from a segment stay, with the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quarantined_records_are_listed_and_replayed_once_the_cause_is_fixed() {
    let db = TestDb::new("replay");
    let store = db.migrated().await;
    let wal = common::scratch_dir("replay-wal");
    let quarantine = wal.join("quarantine");
    std::fs::create_dir_all(&quarantine).unwrap();
    let (poison, traces, spans) = payload("p", 4242);
    std::fs::write(quarantine.join(format!("poison-lsn{:020}-v2.bin", 42)), record(42, &poison)).unwrap();
    std::fs::write(quarantine.join(format!("undecodable-lsn{:020}.bin", 3)), record(3, &[0xff; 64])).unwrap();
    std::fs::write(quarantine.join(format!("torn-{:020}-{}.bin", 1, 4096)), [7u8; 40]).unwrap();
    let dir = wal.to_str().unwrap().to_string();
    let stored = || async {
        let n: u64 = db
            .store()
            .query("SELECT count() FROM spans FINAL WHERE project_id = 'p' AND has(?, trace_id)")
            .bind(&traces)
            .fetch_one()
            .await
            .unwrap();
        n
    };

    let out = db.flywheel(&["wal", "quarantine", "--dir", &dir]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    let listing = common::stdout(&out);
    assert!(listing.contains("poison") && listing.contains("undecodable") && listing.contains("torn"), "{listing}");
    assert!(listing.contains("does not decode with this build"), "{listing}");
    assert!(listing.contains("hold no whole record"), "{listing}");
    assert!(listing.contains("3 file(s), 1 replayable"), "{listing}");

    let out = db.flywheel(&["wal", "replay", "--dir", &dir, "--dry-run"]);
    assert!(common::stdout(&out).contains(&format!("would store {spans} rows")), "{}", common::stdout(&out));
    assert_eq!(stored().await, 0, "a dry run stores nothing");

    // The cause still there: the file stays, with ClickHouse's reason.
    store.execute("ALTER TABLE spans ADD CONSTRAINT not_p CHECK project_id != 'p'").await.unwrap();
    let out = db.flywheel(&["wal", "replay", "--dir", &dir, "poison"]);
    assert_eq!(out.status.code(), Some(1), "{}", common::stdout(&out));
    let text = common::stdout(&out);
    assert!(text.contains("still refuses it") && text.contains("not_p"), "{text}");
    assert!(quarantine.join(format!("poison-lsn{:020}-v2.bin", 42)).exists());
    assert_eq!(stored().await, 0);

    // Fixed: stored, and moved aside; the other two stay, saying why.
    store.execute("ALTER TABLE spans DROP CONSTRAINT not_p").await.unwrap();
    let out = db.flywheel(&["wal", "replay", "--dir", &dir]);
    assert_eq!(out.status.code(), Some(1), "the undecodable and torn files are not replayable");
    let text = common::stdout(&out);
    assert!(text.contains(&format!("stored {spans} rows from poison-lsn")), "{text}");
    assert!(text.contains("kept undecodable-lsn") && text.contains("kept torn-"), "{text}");
    assert_eq!(stored().await, spans);
    assert!(!quarantine.join(format!("poison-lsn{:020}-v2.bin", 42)).exists());
    assert!(quarantine.join("replayed").join(format!("poison-lsn{:020}-v2.bin", 42)).exists());
    assert!(quarantine.join(format!("undecodable-lsn{:020}.bin", 3)).exists(), "never deleted");

    // A second replay finds nothing more to store.
    let out = db.flywheel(&["wal", "replay", "--dir", &dir, "poison"]);
    assert!(out.status.success());
    assert!(common::stdout(&out).contains("nothing to replay"), "{}", common::stdout(&out));
}

/// Issue 15, item 3, the drain's own isolation: ClickHouse refuses one project's rows (a table
/// constraint) while it takes the other's, whose requests are interleaved with them. The other
/// project's traces are all stored, each refused record is quarantined (never retried forever,
/// never holding the log back) and counted; once the constraint is gone, `flywheel wal replay`
/// stores them, while the collector runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_clickhouse_refuses_is_quarantined_beside_another_project_and_replayed() {
    let c = Collector::start(TestDb::new("poison"), "");
    let (key_a, key_b) = (c.key("a"), c.key("b"));
    let store = c.db.store();
    store.execute("ALTER TABLE spans ADD CONSTRAINT no_b CHECK project_id != 'b'").await.unwrap();
    let client = reqwest::Client::new();
    let mut counts = Counts { sent: 0, acknowledged: 0, acknowledged_spans: 0, traces: Vec::new() };
    let mut b_traces = Vec::new();
    let mut b_spans = 0;
    for n in 0..12u64 {
        let (body, spans) = request(3000 + n);
        let key = if n % 3 == 1 { &key_b } else { &key_a };
        assert_eq!(post(&client, &c.http, key, &body).await.unwrap().status(), 200);
        if n % 3 == 1 {
            b_traces.extend(trace_ids(&body));
            b_spans += spans;
        } else {
            counts.sent += 1;
            counts.acknowledged += 1;
            counts.acknowledged_spans += spans;
            counts.traces.extend(trace_ids(&body));
        }
    }
    c.wait_stored().await;
    verify(&c, "a", &counts, "beside a refused project").await;
    let b_stored = |store: flywheel_schemas::Store, traces: Vec<String>| async move {
        let n: u64 = store
            .query("SELECT count() FROM spans FINAL WHERE project_id = 'b' AND has(?, trace_id)")
            .bind(&traces)
            .fetch_one()
            .await
            .unwrap();
        n
    };
    assert_eq!(b_stored(c.db.store(), b_traces.clone()).await, 0);
    let metrics = reqwest::get(format!("{}/metrics", c.http)).await.unwrap().text().await.unwrap();
    assert!(metrics.contains(r#"flywheel_rejected_total{signal="wal",reason="poison"} 4"#), "{metrics}");

    let dir = c.wal_dir().to_str().unwrap().to_string();
    let out = c.db.flywheel(&["wal", "quarantine", "--dir", &dir]);
    let listing = common::stdout(&out);
    assert!(listing.contains("4 file(s), 4 replayable"), "{listing}");
    assert_eq!(listing.lines().filter(|l| l.starts_with("poison") && l.contains(" b ")).count(), 4, "{listing}");

    store.execute("ALTER TABLE spans DROP CONSTRAINT no_b").await.unwrap();
    let out = c.db.flywheel(&["wal", "replay", "--dir", &dir]);
    assert!(out.status.success(), "{}{}", common::stdout(&out), common::stderr(&out));
    assert_eq!(b_stored(c.db.store(), b_traces).await, b_spans, "project b's spans, replayed");
    let out = c.db.flywheel(&["wal", "quarantine", "--dir", &dir]);
    assert!(common::stdout(&out).contains("nothing in quarantine"), "{}", common::stdout(&out));
}

/// Issue 16, the engine's cost per span: ClickHouse's cost is per insert and per part more than
/// per row, so the drain gathers what is acknowledged within its linger into one insert per
/// table instead of one per request. A collector that stops does not wait the linger out: it
/// inserts what it has and exits, its log drained.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_acknowledged_within_the_linger_are_stored_in_one_insert_and_a_stop_does_not_wait_it_out() {
    let c = Collector::start(TestDb::new("linger"), "[collector]\ninsert_linger_ms = 5000\n");
    let key = c.key("a");
    let client = reqwest::Client::new();
    let mut counts = Counts { sent: 0, acknowledged: 0, acknowledged_spans: 0, traces: Vec::new() };
    let started = Instant::now();
    for n in 0..8u64 {
        let (body, spans) = request(5000 + n);
        assert_eq!(post(&client, &c.http, &key, &body).await.unwrap().status(), 200);
        counts.sent += 1;
        counts.acknowledged += 1;
        counts.acknowledged_spans += spans;
        counts.traces.extend(trace_ids(&body));
    }
    // Else the requests were not all acknowledged within one linger and the count below says
    // nothing about gathering.
    assert!(started.elapsed() < Duration::from_secs(4), "8 requests took {:?}", started.elapsed());
    c.wait_stored().await;
    verify(&c, "a", &counts, "gathered").await;
    assert_eq!(c.metric("flywheel_clickhouse_inserts_total").await, 1.0, "8 requests, one chunk: one insert");

    // One more request, then a stop long before the linger ends: stored on the way out.
    let (body, spans) = request(5100);
    assert_eq!(post(&client, &c.http, &key, &body).await.unwrap().status(), 200);
    counts.sent += 1;
    counts.acknowledged += 1;
    counts.acknowledged_spans += spans;
    counts.traces.extend(trace_ids(&body));
    let store = c.db.store();
    let took = c.stop();
    assert!(took < Duration::from_secs(4), "the stop waited {took:?}");
    verify_in(&store, "a", &counts, "stored by the time the collector exited").await;
}

/// Issue 16: a request larger than a slice is logged slice by slice, each durable before the
/// next is decoded, and acknowledged once all are. Killed between two slices, the collector has
/// logged part of the request and acknowledged none of it; the client's retry rewrites the
/// slices already logged, and storage collapses them: every span once, none lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_between_two_slices_of_one_request_the_retry_stores_everything_once() {
    let mut c = Collector::start(TestDb::new("slicekill"), "");
    let key = c.key("p");
    // 3,000 requests' worth of GenAI spans with content in one request: several slices of whole
    // traces. Each attempt sends new traces.
    let make = |attempt: u64| {
        let mut request = ExportTraceServiceRequest::default();
        for t in 0..3000u64 {
            request.resource_spans.extend(flywheel_collector::bench::sample_request(700_000 + attempt * 10_000 + t, 6).resource_spans);
        }
        let total: u64 = request.resource_spans.iter().flat_map(|r| &r.scope_spans).map(|s| s.spans.len() as u64).sum();
        let body = request.encode_to_vec();
        (trace_ids(&body), body, total)
    };
    let client = reqwest::Client::new();
    // The instant is a fraction of a second wide (the slices after the first): on a loaded
    // machine the kill may come after the last, so up to three attempts, until one lands
    // between two slices.
    let mut caught = None;
    for attempt in 0..3u64 {
        let (traces, body, total) = make(attempt);
        assert!(total > 4 * 4096, "five slices at least: {total} spans");
        let before = last_lsn(&c.wal_dir());
        let (http, k, b) = (c.http.clone(), key.clone(), body.clone());
        let sent = tokio::spawn(async move { post(&reqwest::Client::new(), &http, &k, &b).await.map(|r| r.status().as_u16()) });
        // The instant: a first slice is durable in the log, the request not answered yet.
        let wal = c.wal_dir();
        let deadline = Instant::now() + Duration::from_secs(30);
        while last_lsn(&wal) == before {
            if sent.is_finished() {
                panic!("no slice logged before the request ended: {:?} ({} bytes)", sent.await.unwrap(), body.len());
            }
            assert!(Instant::now() < deadline, "no slice logged in 30 s");
            tokio::time::sleep(Duration::from_micros(500)).await;
        }
        c = c.crash_and_restart("");
        let answer = sent.await.unwrap();
        if answer.is_err() {
            caught = Some((traces, body, total, before));
            break;
        }
        println!("slicekill: attempt {attempt}: acknowledged ({answer:?}) before the kill landed; again with new traces");
    }
    let (traces, body, total, before) = caught.expect("in three attempts, a kill between two slices of the request");
    let logged = last_lsn(&c.wal_dir()) - before;
    c.wait_stored().await;
    let store = c.db.store();
    let count = |table: &'static str| {
        let store = store.clone();
        let traces = traces.clone();
        async move {
            let (rows, distinct): (u64, u64) = store
                .query(&format!(
                    "SELECT count(), uniqExact(trace_id, span_id) FROM {table} FINAL WHERE project_id = 'p' AND has(?, trace_id)"
                ))
                .bind(&traces)
                .fetch_one()
                .await
                .unwrap();
            (rows, distinct)
        }
    };
    let (_, partial) = count("spans").await;
    println!("slicekill: {logged} slice(s) logged before the kill, {partial} of {total} spans stored before the retry");
    assert!(partial > 0 && partial < total, "a part of the request, whole slices: {partial} of {total}");

    // The client retries, as OTLP exporters do when a request is not acknowledged.
    let status = post(&client, &c.http, &key, &body).await.unwrap().status();
    assert_eq!(status, 200);
    c.wait_stored().await;
    let (rows, distinct) = count("spans").await;
    assert_eq!((rows, distinct), (total, total), "every span once");
    let (calls, distinct_calls) = count("llm_calls").await;
    assert_eq!(calls, distinct_calls, "no model call twice");
    assert!(calls >= traces.len() as u64, "every trace's model calls: {calls}");
}
