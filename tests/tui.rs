//! `flywheel tui` end to end: the real binary runs in a tmux session against a local
//! ClickHouse seeded by the real collector and simulator, plus failure patterns written the way
//! the analyzer writes them (on the real trace ids of seeded calls). Keys are sent with
//! `tmux send-keys`; each step polls `tmux capture-pane` until the expected text is on screen
//! (a timeout fails the test with the last screen), never a fixed sleep.
//!
//! Needs `tmux` on the PATH (`apt-get install tmux`).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use clickhouse::Row;
use common::{Collector, TestDb, scratch_dir, stderr, stdout};
use flywheel_schemas::rows::{FailureRow, PatternMemberRow, PatternRow, PatternTriageRow};
use serde::Deserialize;
use time::OffsetDateTime;

#[derive(Debug, Row, Deserialize)]
struct Call {
    trace_id: String,
    span_id: String,
    session_id: String,
    user_id: String,
    feature: String,
    response_model: String,
    #[serde(with = "clickhouse::serde::time::datetime64::nanos")]
    start_time: OffsetDateTime,
}

/// A tmux server of this test alone, killed on drop (also when an assertion fails).
struct Tmux {
    socket: String,
}

impl Tmux {
    fn cmd(&self, args: &[&str]) -> std::process::Output {
        Command::new("tmux").arg("-u").arg("-L").arg(&self.socket).arg("-f").arg("/dev/null").args(args).output().expect("tmux runs")
    }

    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "tui"];
        args.extend_from_slice(keys);
        let out = self.cmd(&args);
        assert!(out.status.success(), "send-keys: {}", stderr(&out));
    }

    fn text(&self, text: &str) {
        let out = self.cmd(&["send-keys", "-t", "tui", "-l", text]);
        assert!(out.status.success(), "send-keys: {}", stderr(&out));
    }

    fn screen(&self) -> String {
        stdout(&self.cmd(&["capture-pane", "-p", "-t", "tui"]))
    }

    /// Polls the screen until every needle is on it; returns that screen.
    fn wait_for(&self, step: &str, needles: &[&str]) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let screen = self.screen();
            if needles.iter().all(|n| screen.contains(n)) {
                eprintln!("--- {step}\n{screen}");
                return screen;
            }
            if Instant::now() > deadline {
                let missing: Vec<_> = needles.iter().filter(|n| !screen.contains(*n)).collect();
                panic!("step `{step}`: {missing:?} not on screen after 30 s:\n{screen}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd(&["kill-server"]);
    }
}

fn pattern(id: &str, label: &str, trend: &str, members: &[&Call], severity: f32, facets: &[(&str, &str)]) -> PatternRow {
    let now = OffsetDateTime::now_utc();
    let users: std::collections::BTreeSet<&str> = members.iter().map(|c| c.user_id.as_str()).collect();
    PatternRow {
        project_id: "shop".into(),
        pattern_id: id.into(),
        label: label.into(),
        description: String::new(),
        terms: label.split_whitespace().map(String::from).collect(),
        facets: facets.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        status: "new".into(),
        trend: trend.into(),
        size: members.len() as u64,
        previous_size: 0,
        calls: members.len() as u64,
        traces: members.len() as u64,
        sessions: members.len() as u64,
        users: users.len() as u64,
        severity,
        cost_usd: 0.0,
        mean_latency_ms: 0.0,
        signal_mix: Default::default(),
        centroid: vec![],
        first_seen: members.iter().map(|c| c.start_time).min().unwrap_or(now),
        last_seen: members.iter().map(|c| c.start_time).max().unwrap_or(now),
        fixed_at: time::OffsetDateTime::UNIX_EPOCH,
        regressed_at: time::OffsetDateTime::UNIX_EPOCH,
        regressed_in: String::new(),
        run_id: "run-e2e".into(),
        updated_at: now,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drive_the_tui_in_tmux_open_drill_down_filter_triage_export() {
    assert!(
        Command::new("tmux").arg("-V").output().is_ok_and(|o| o.status.success()),
        "this test needs tmux on the PATH (apt-get install tmux)"
    );
    let collector = Collector::start(TestDb::new("tui"), "[collector]\nsignal_link_interval_secs = 1\n");
    let args = [
        "--interactions",
        "200",
        "--seed",
        "7",
        "--duration",
        "2d",
        "--failure-rate",
        "0.3",
        "--modes",
        "truncated_answer=3,rate_limit_error=3",
    ];
    collector.simulate("shop", &args).await;
    let store = collector.db.store();

    // Two patterns on real seeded calls: the rate-limited ones and the truncated ones.
    let fetch = |condition: &str| {
        store
            .query(&format!(
                "SELECT ?fields FROM llm_calls FINAL WHERE project_id = 'shop' AND {condition} ORDER BY start_time, trace_id LIMIT 12"
            ))
            .fetch_all::<Call>()
    };
    let limited = fetch("status = 'error'").await.unwrap();
    let truncated = fetch("has(finish_reasons, 'length') AND status != 'error'").await.unwrap();
    assert!(limited.len() >= 2 && truncated.len() >= 2, "seeded failures: {} rate-limited, {} truncated", limited.len(), truncated.len());
    let now = OffsetDateTime::now_utc();
    let mut failures = vec![];
    let mut members = vec![];
    for (pattern_id, calls, reason) in [("pat-ratelimit", &limited, "error_status"), ("pat-truncated", &truncated, "finish_reason:length")]
    {
        for (i, c) in calls.iter().enumerate() {
            failures.push(FailureRow {
                project_id: "shop".into(),
                trace_id: c.trace_id.clone(),
                span_id: c.span_id.clone(),
                session_id: c.session_id.clone(),
                user_id: c.user_id.clone(),
                feature: c.feature.clone(),
                model: c.response_model.clone(),
                call_time: c.start_time,
                reasons: vec![reason.into()],
                categories: vec!["explicit".into()],
                severity: 0.7,
                details: "{}".into(),
                run_id: "run-e2e".into(),
                detected_at: now,
            });
            members.push(PatternMemberRow {
                project_id: "shop".into(),
                pattern_id: pattern_id.into(),
                run_id: "run-e2e".into(),
                trace_id: c.trace_id.clone(),
                span_id: c.span_id.clone(),
                call_time: c.start_time,
                distance: i as f32 / 100.0,
                added_at: now,
            });
        }
    }
    let limited_refs: Vec<&Call> = limited.iter().collect();
    let truncated_refs: Vec<&Call> = truncated.iter().collect();
    let patterns = vec![
        pattern("pat-ratelimit", "rate limited by the provider", "growing", &limited_refs, 0.9, &[("error_type", "RateLimitError")]),
        pattern(
            "pat-truncated",
            "answers cut at max tokens before the code is complete",
            "new",
            &truncated_refs,
            0.1,
            &[("finish_reason", "length")],
        ),
    ];
    store.insert("failures", &failures).await.unwrap();
    store.insert("pattern_members", &members).await.unwrap();
    store.insert("patterns", &patterns).await.unwrap();

    let tmux = Tmux { socket: format!("flywheel-tui-e2e-{}", std::process::id()) };
    // After quitting, the shell prints the exit status and keeps the pane, so that the test can
    // see the terminal restored and the exit code.
    // Exports land in the working directory: a scratch one.
    let workdir = scratch_dir("tui-export");
    let command = format!(
        "cd {} && env FLYWHEEL_CLICKHOUSE_URL={} FLYWHEEL_CLICKHOUSE_DATABASE={} FLYWHEEL_CONFIG= USER=e2e {} tui --project shop; echo TUI-EXITED-$?; sleep 120",
        workdir.display(),
        collector.db.url,
        collector.db.database,
        env!("CARGO_BIN_EXE_flywheel")
    );
    let out = tmux.cmd(&["new-session", "-d", "-s", "tui", "-x", "120", "-y", "40", &command]);
    assert!(out.status.success(), "tmux new-session: {}", stderr(&out));
    // Escape reaches the app at once instead of after tmux's default 500 ms.
    tmux.cmd(&["set-option", "-s", "escape-time", "0"]);

    // 1. Open: the patterns table, by impact.
    let screen = tmux.wait_for("open", &["project shop", "patterns (2)", "rate limited by the provider", "answers cut at max tokens"]);
    assert!(screen.find("rate limited").unwrap() < screen.find("answers cut").unwrap(), "impact order:\n{screen}");

    // 2. Move to the second pattern and open it.
    tmux.keys(&["j"]);
    tmux.keys(&["Enter"]);
    let first = &truncated[0];
    tmux.wait_for("open pattern", &["answers cut at max tokens", "pat-truncated", "members:", "finish_reason:length", &first.feature]);

    // 3. Open the nearest member's trace: the waterfall and the conversation.
    tmux.keys(&["Enter"]);
    // The request as it was made: its parameters and the system instructions before the user.
    tmux.wait_for(
        "open trace",
        &[&format!("trace {}", first.trace_id), "tokens in", "params temperature", "max_tokens", "▌system", "▌user", "finish length"],
    );
    // The tools the model was offered, by name and description.
    let tool = if first.feature == "coding_assistant" { "◇ search_docs — " } else { "◇ lookup_order — Look up an order by id" };
    tmux.wait_for("tools offered", &["tools offered (", tool]);
    // `tab` to the conversation, then far past its end: the last lines stay in view.
    tmux.keys(&["Tab", "G", "NPage", "NPage", "NPage", "j", "j"]);
    tmux.wait_for("scroll bound after tab", &["▌assistant  finish length"]);
    tmux.keys(&["g", "Tab"]);
    tmux.wait_for("back to the top of the trace", &["tools offered (", "▌system"]);

    // The trace is the evidence: the span's attributes on `a`; `f` puts the failing call's
    // answer at the top of the pane; scrolling far past the end keeps the last lines in view.
    tmux.keys(&["a"]);
    tmux.wait_for("all attributes", &["attributes (", "a: hide"]);
    tmux.keys(&["a"]);
    tmux.keys(&["f"]);
    tmux.wait_for("the failing answer", &["the failing call's answer", "▌assistant  finish length"]);
    tmux.keys(&["G", "NPage", "NPage", "NPage", "j", "j"]);
    tmux.wait_for("scroll bound", &["▌assistant  finish length"]);

    // The call's session: its turns in order.
    tmux.keys(&["s"]);
    // It opens on the turn of the call we came from: the truncated answer is the one shown.
    tmux.wait_for("open session", &[&format!("session {}", first.session_id), "turns", "user said", "failing: finish_reason:length"]);
    tmux.keys(&["Escape"]);
    tmux.wait_for("back to the trace", &[&format!("trace {}", first.trace_id)]);

    // 4. Back to the pattern, then to the table.
    tmux.keys(&["Escape"]);
    tmux.wait_for("back to the pattern", &["members:", "pat-truncated"]);
    tmux.keys(&["Escape"]);
    tmux.wait_for("back to the table", &["patterns (2)"]);

    // 5. Filter.
    tmux.keys(&["/"]);
    tmux.text("truncat");
    tmux.keys(&["Enter"]);
    let screen = tmux.wait_for("filter", &["patterns (1 of 2)", "answers cut at max tokens", "filter /truncat"]);
    assert!(!screen.contains("rate limited by the provider"), "{screen}");

    // 6. Triage: acknowledged, shown and persisted in ClickHouse.
    tmux.keys(&["a"]);
    tmux.wait_for("triage", &["marked acknowledged: answers cut at max tokens"]);
    let triage: Vec<PatternTriageRow> = store
        .query("SELECT ?fields FROM pattern_triage FINAL WHERE project_id = 'shop' AND pattern_id = 'pat-truncated'")
        .fetch_all()
        .await
        .unwrap();
    assert_eq!(triage.len(), 1);
    assert_eq!((triage[0].status.as_str(), triage[0].updated_by.as_str()), ("acknowledged", "e2e"));

    // 7. Export: the same code path as `flywheel export evals --pattern ID`; the status line
    // says where the file went.
    tmux.keys(&["e"]);
    tmux.wait_for("export prompt", &["export eval cases as", "j jsonl", "p promptfoo", "again (off)"]);
    tmux.keys(&["j"]);
    tmux.wait_for("export", &["eval case", "→"]);
    let written: Vec<_> = walk(&workdir).into_iter().filter(|p| p.extension().is_some_and(|e| e == "jsonl")).collect();
    assert_eq!(written.len(), 1, "one eval file in {}: {written:?}", workdir.display());
    assert!(!std::fs::read_to_string(&written[0]).unwrap().is_empty());

    // 8. Search by user id, then the overview.
    // The search lists a user's calls newest first, a screenful of them: search for the user of
    // the latest truncated call, whose trace is then on the first screen whatever that user's
    // history (the earliest member's user can have more calls than fit).
    let latest = truncated.iter().max_by_key(|c| (c.start_time, c.trace_id.clone())).expect("truncated calls");
    tmux.keys(&[":"]);
    tmux.text(&latest.user_id);
    tmux.keys(&["Enter"]);
    // Failing calls are marked with why.
    tmux.wait_for("search", &[&format!("search `{}`", latest.user_id), &latest.trace_id[..8], "failing", "✘ finish"]);
    tmux.keys(&["1"]);
    tmux.wait_for("overview", &["last 7d per hour", "failure rate", "top patterns by impact"]);

    // Narrow terminals: at 80×24 the label keeps 40 characters and the help hint its corner;
    // at 50×15 the compact layout.
    tmux.keys(&["2"]);
    tmux.cmd(&["resize-window", "-t", "tui", "-x", "80", "-y", "24"]);
    tmux.wait_for("80x24", &["impact▼", "answers cut at max tokens before the code", "? help", "ack"]);
    tmux.cmd(&["resize-window", "-t", "tui", "-x", "50", "-y", "15"]);
    let screen = tmux.wait_for("50x15", &["impact▼", "users", "? help"]);
    assert!(!screen.contains("triage"), "compact layout:\n{screen}");
    tmux.cmd(&["resize-window", "-t", "tui", "-x", "120", "-y", "40"]);

    // 9. Help, then quit: the terminal is restored and the exit status is 0.
    tmux.keys(&["?"]);
    tmux.wait_for("help", &["keys (esc closes)", "copy the trace id (OSC 52)"]);
    tmux.keys(&["Escape"]);
    tmux.keys(&["q"]);
    let screen = tmux.wait_for("quit", &["TUI-EXITED-0"]);
    assert!(!screen.contains("patterns (1 of 2)"), "the alternate screen is left on quit:\n{screen}");
}

/// Every file under `dir`.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() { out.extend(walk(&path)) } else { out.push(path) }
    }
    out
}
