//! Every failure of the command line is one line that says what to do (issue 17): a non-zero
//! exit, `error: …` alone on stderr, no panic and no backtrace — on a fresh database, with an
//! unknown project, bad durations, a missing target, no terminal, a busy port, a log directory
//! that does not exist, and a reader that closes the pipe.

mod common;

use std::process::Output;

use common::{Collector, TestDb, stderr};

/// The one line of a failure, after checking that it is one.
fn one_line_failure(what: &str, out: &Output) -> String {
    let err = stderr(out);
    assert!(!out.status.success(), "{what}: exit status {:?}, stderr {err}", out.status);
    assert!(!err.contains("panicked") && !err.contains("backtrace"), "{what}: {err}");
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{what}: one line, got {err}");
    assert!(lines[0].starts_with("error:"), "{what}: {err}");
    lines[0].to_string()
}

#[test]
fn failures_are_one_line_that_says_what_to_do() {
    let db = TestDb::new("cli");

    // A database nothing was sent to: "no data yet", not ClickHouse's UNKNOWN_DATABASE.
    for args in [&["patterns"][..], &["analyze", "--lexical"], &["report", "--out", "-"], &["export", "evals", "--all-open"]] {
        let line = one_line_failure(&format!("{args:?}"), &db.flywheel(args));
        assert!(line.contains("no project has LLM calls yet") && line.contains("flywheel serve"), "{args:?}: {line}");
        assert!(!line.contains("invalid configuration"), "{args:?}: {line}");
    }

    // One parser of durations, one message, for every command; no panic far out of range.
    for since in ["abc", "-3d", "7", "0d"] {
        let analyze = one_line_failure(since, &db.flywheel(&["analyze", "--lexical", "--since", since]));
        let report = one_line_failure(since, &db.flywheel(&["report", "--since", since, "--out", "-"]));
        let reason = format!("`{since}` is not a duration");
        assert!(analyze.contains(&reason) && report.contains(&reason), "{analyze} / {report}");
        assert!(analyze.contains("1d12h") && report.contains("1d12h"));
    }
    for since in ["100000000000d", "1000000000000000d"] {
        let analyze = one_line_failure(since, &db.flywheel(&["analyze", "--lexical", "--since", since]));
        let report = one_line_failure(since, &db.flywheel(&["report", "--since", since, "--out", "-"]));
        for line in [analyze, report] {
            assert!(line.contains("at most 20000d") || line.contains("too long"), "{line}");
        }
    }

    // Both targets of an export are named.
    let line = one_line_failure("export evals", &db.flywheel(&["export", "evals"]));
    assert!(line.contains("--pattern") && line.contains("--all-open"), "{line}");
    // Any command line that does not parse: one line too, that says where help is.
    for args in [&["analyze", "--no-such-flag"][..], &["triage"], &["report", "--since"]] {
        let line = one_line_failure(&args.join(" "), &db.flywheel(args));
        assert!(line.contains("(see --help)") && !line.contains("For more information"), "{line}");
    }

    // No terminal: said on stderr before anything starts.
    let line = one_line_failure("tui", &db.flywheel(&["tui"]));
    assert!(line.contains("needs a terminal") && line.contains("flywheel patterns"), "{line}");

    // A log directory that does not exist is not an empty log.
    let line = one_line_failure("wal", &db.flywheel(&["wal", "quarantine", "--dir", "/nonexistent/flywheel-wal"]));
    assert!(line.contains("no write-ahead log at /nonexistent/flywheel-wal"), "{line}");

    // A busy port: named once, with the flag that chooses another.
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    let line = one_line_failure("serve", &db.flywheel(&["serve", "--http", &addr, "--grpc", "127.0.0.1:0"]));
    assert_eq!(line.matches(&addr).count(), 1, "{line}");
    assert!(line.contains("--http") && line.contains("another process"), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_project_is_named_with_the_known_ones_and_a_closed_pipe_ends_quietly() {
    let c = Collector::start(TestDb::new("cliproject"), "");
    let key = c.key("shop");
    let body = std::fs::read(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/otlp/otel-v2/chat_plain.pb")).unwrap();
    assert_eq!(c.post_traces(&key, body).await.status(), 200);
    c.wait_stored().await;

    for args in [
        &["patterns", "--project", "shpo"][..],
        &["analyze", "--lexical", "--project", "shpo"],
        &["report", "--project", "shpo", "--out", "-"],
    ] {
        let line = one_line_failure(&format!("{args:?}"), &c.db.flywheel(args));
        assert!(line.contains("project `shpo` has no LLM calls") && line.contains("projects with calls: shop"), "{line}");
    }

    // `| true` closes the pipe at once: the command ends without a panic on stdout.
    let script = format!("'{}' analyze --lexical --project shop | true", env!("CARGO_BIN_EXE_flywheel"));
    let out = flywheel_cmd_env(&c, std::process::Command::new("sh").args(["-c", &script]));
    let err = stderr(&out);
    assert!(!err.contains("panicked") && !err.contains("Broken pipe"), "{err}");

    // A long-running command keeps SIGPIPE ignored (its sockets and children must not kill it),
    // and still ends quietly when its reader went away before it printed its summary.
    let script = format!(
        "'{}' simulate --endpoint {} --key {} --interactions 40 --duration 1h | true",
        env!("CARGO_BIN_EXE_flywheel"),
        c.http,
        c.key("shop")
    );
    let out = flywheel_cmd_env(&c, std::process::Command::new("sh").args(["-c", &script]));
    let err = stderr(&out);
    assert!(!err.contains("panicked") && !err.contains("Broken pipe") && !err.contains("backtrace"), "{err}");
}

/// Runs `cmd` with the collector's database configured.
fn flywheel_cmd_env(c: &Collector, cmd: &mut std::process::Command) -> Output {
    cmd.env("FLYWHEEL_CLICKHOUSE_URL", &c.db.url).env("FLYWHEEL_CLICKHOUSE_DATABASE", &c.db.database).output().unwrap()
}

/// `FLYWHEEL_DATA_DIR` moves the data (the local engine's databases, the write-ahead log) away
/// from the install in `FLYWHEEL_HOME`, and nothing else.
#[test]
fn the_data_directory_moves_apart_from_the_install() {
    let dir = common::scratch_dir("data-dir");
    let (home, data) = (dir.join("install"), dir.join("data"));
    let run = |args: &[&str]| {
        common::flywheel_cmd()
            .args(args)
            .env("FLYWHEEL_HOME", &home)
            .env("FLYWHEEL_DATA_DIR", &data)
            .env("FLYWHEEL_CLICKHOUSE_DATABASE", "flywheel")
            .output()
            .unwrap()
    };
    let out = run(&["clickhouse", "status"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(common::stdout(&out).contains(&format!("data {})", data.join("clickhouse").display())), "{}", common::stdout(&out));
    let out = run(&["wal", "quarantine"]);
    let text = common::stdout(&out);
    assert!(out.status.success() && text.contains(&data.join("wal").join("flywheel").display().to_string()), "{text}");
    assert!(!home.exists(), "nothing written to the install directory");
}

/// `flywheel demo` on a fresh data directory: the whole loop, its scoreboard of injected modes
/// against found patterns, the files it writes, no trace of its temporary truth file, and — in
/// its last line — that the engine it started keeps running and how to stop it.
#[test]
fn the_demo_runs_the_loop_and_ends_with_how_to_stop_its_engine() {
    let dir = common::scratch_dir("demo");
    let data = dir.join("data");
    let out = common::flywheel_cmd().args(["demo", "--no-tui"]).env("FLYWHEEL_DATA_DIR", &data).current_dir(&dir).output().unwrap();
    // The engine the demo started is stopped whatever the assertions say.
    let engine = data.join("clickhouse");
    let stopped = common::flywheel_cmd().args(["clickhouse", "stop", "--data"]).arg(&engine).output().unwrap();
    let text = common::stdout(&out);
    assert!(out.status.success(), "{text}{}", stderr(&out));
    assert!(stopped.status.success(), "{}", stderr(&stopped));
    assert!(text.contains("top patterns:") && text.contains("injected modes"), "the scoreboard: {text}");
    assert!(!text.contains("truth:") && !text.contains("--truth"), "no file the demo deletes, no flag it lacks: {text}");
    for file in ["evals.jsonl", "report.html", "report.md"] {
        assert!(dir.join("flywheel-demo").join(file).exists(), "{file}: {text}");
    }
    let last = text.trim_end().lines().last().unwrap();
    assert!(
        last.contains("keeps running") && last.contains("flywheel clickhouse stop") && last.contains(&engine.display().to_string()),
        "{text}"
    );
}
