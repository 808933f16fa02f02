//! Issue 18, continuous analysis and alerts, end to end: simulated days through the real
//! collector (a baseline, then a last day where one failure mode grows and one appears), then
//! `flywheel watch --once` posting to a local HTTP receiver, once in the generic JSON format
//! and once in Slack's. The new and the growing pattern alert; a mode whose share did not
//! change does not; a receiver that fails the first delivery gets it again after a backoff; a
//! second tick sends nothing twice.

mod common;

use std::sync::{Arc, Mutex};

use common::{Collector, Day, TestDb, stderr, stdout};
use serde_json::Value;
use time::OffsetDateTime;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A request the receiver got: path, `Idempotency-Key`, body.
type Received = Arc<Mutex<Vec<(String, String, Value)>>>;

/// A minimal HTTP/1.1 receiver: answers 503 to the first request of `/flaky`, 200 otherwise.
async fn receiver() -> (String, Received) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let received: Received = Arc::default();
    let seen = received.clone();
    let flaky_failed = Arc::new(Mutex::new(false));
    tokio::spawn(async move {
        loop {
            let (mut socket, _) = listener.accept().await.unwrap();
            let (seen, flaky_failed) = (seen.clone(), flaky_failed.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    // One request: headers, then Content-Length bytes of body.
                    let end = loop {
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i + 4;
                        }
                        let mut chunk = [0u8; 4096];
                        match socket.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..end]).to_string();
                    let header = |name: &str| {
                        head.lines()
                            .find_map(|l| {
                                l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.trim().to_string())
                            })
                            .unwrap_or_default()
                    };
                    let length: usize = header("content-length").parse().unwrap_or(0);
                    while buf.len() < end + length {
                        let mut chunk = [0u8; 4096];
                        match socket.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let path = head.split_whitespace().nth(1).unwrap_or("").to_string();
                    let body: Value = serde_json::from_slice(&buf[end..end + length]).unwrap_or(Value::Null);
                    buf.drain(..end + length);
                    let fail = path == "/flaky" && !std::mem::replace(&mut *flaky_failed.lock().unwrap(), true);
                    let reply: &[u8] = if fail {
                        b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 4\r\nretry-after: 0\r\n\r\nbusy"
                    } else {
                        seen.lock().unwrap().push((path, header("idempotency-key"), body));
                        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
                    };
                    if socket.write_all(reply).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (url, received)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tick_alerts_what_changed_once_per_destination_and_retries_a_failed_delivery() {
    let c = Collector::start(TestDb::new("watch"), "[collector]\nsignal_link_interval_secs = 1\n");
    let now = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
    // Baseline: truncation rare, no refusals. Last day: truncation ten times as likely, and
    // refusals appear. Wrong-language answers keep their weight throughout.
    let baseline = "truncated_answer=0.3,refusal=0";
    for (days_ago, seed, modes) in [(5, 51, baseline), (3, 52, baseline), (0, 53, "truncated_answer=3,refusal=1")] {
        c.simulate_day("app", now, Day { days_ago, interactions: 900, seed, release: "1.0.0", modes, truth: None }).await;
    }
    let (url, received) = receiver().await;
    let (json_hook, slack_hook) = (format!("{url}/flaky"), format!("{url}/slack"));
    let config = common::scratch_dir("watch-config").join("flywheel.toml");
    std::fs::write(&config, "[watch]\nretry_base_ms = 50\n[watch.alerts]\nnew_pattern_min_users = 3\n").unwrap();
    let env = [("FLYWHEEL_CONFIG", config.to_string_lossy().to_string())];
    let tick = || {
        c.db.flywheel_with(
            &[
                "watch",
                "--once",
                "--project",
                "app",
                "--lexical",
                "--window",
                "7d",
                "--recent",
                "24h",
                "--webhook",
                &json_hook,
                "--slack-webhook",
                &slack_hook,
            ],
            &env,
        )
    };

    let out = tick();
    eprintln!("{}{}", stdout(&out), stderr(&out));
    assert!(out.status.success(), "watch failed: {}{}", stdout(&out), stderr(&out));
    let first: Vec<(String, String, Value)> = received.lock().unwrap().clone();
    let generic: Vec<&Value> = first.iter().filter(|(p, _, _)| p == "/flaky").map(|(_, _, b)| b).collect();
    let slack: Vec<&Value> = first.iter().filter(|(p, _, _)| p == "/slack").map(|(_, _, b)| b).collect();
    assert!(!generic.is_empty(), "no alert delivered: {}", stdout(&out));
    assert_eq!(generic.len(), slack.len(), "each alert goes to each webhook");

    // The generic body follows its published schema; the idempotency key is the alert's id.
    let schema: Value = serde_json::from_str(flywheel_schemas::api::ALERT_SCHEMA).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    for (_, key, body) in first.iter().filter(|(p, _, _)| p == "/flaky") {
        assert!(validator.is_valid(body), "{body}");
        assert_eq!(body["id"].as_str().unwrap(), key);
    }
    let of_kind = |kind: &str| generic.iter().filter(|b| b["kind"] == kind).copied().collect::<Vec<_>>();
    let new = of_kind("new_pattern");
    assert!(
        new.iter().any(|b| b["title"].as_str().unwrap().to_lowercase().contains("refus")),
        "no new-pattern alert for the refusals: {generic:#?}"
    );
    let growing = of_kind("pattern_growing");
    let truncation = growing
        .iter()
        .find(|b| b["title"].as_str().unwrap().contains("cut off"))
        .unwrap_or_else(|| panic!("no growing alert for the truncations: {generic:#?}"));
    assert!(truncation["metrics"]["p_value"].as_f64().unwrap() < 0.01, "{truncation}");
    assert!(truncation["metrics"]["observed"].as_f64().unwrap() > 2.0 * truncation["metrics"]["baseline"].as_f64().unwrap());
    assert!(truncation["text"].as_str().unwrap().contains("Two-proportion"), "{truncation}");
    // The mode whose share did not change does not page.
    assert!(
        !growing.iter().any(|b| b["title"].as_str().unwrap().to_lowercase().contains("language")),
        "a steady mode alerted as growing: {growing:#?}"
    );
    // Slack's body: a text and blocks that carry the command.
    assert!(slack.iter().all(|b| b["text"].as_str().unwrap().starts_with("flywheel: ")));
    assert!(slack.iter().any(|b| b["blocks"].to_string().contains("flywheel tui --pattern")), "{slack:#?}");

    // A second tick: the same events, nothing sent again.
    let out = tick();
    assert!(out.status.success(), "second tick: {}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains(" 0 sent"), "{}", stdout(&out));
    let second = received.lock().unwrap().len();
    assert_eq!(second, first.len(), "alerts sent twice: {}", stdout(&out));

    // A webhook that refuses every request: the tick says so and exits non-zero, and the
    // alert stays unrecorded for the next tick.
    let out = c.db.flywheel_with(
        &["watch", "--once", "--project", "app", "--lexical", "--webhook", "http://127.0.0.1:9/closed"],
        &[("FLYWHEEL_CONFIG", config.to_string_lossy().to_string())],
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("not delivered to 127.0.0.1"), "{}", stderr(&out));
}
