//! Eval export end to end, through the real `flywheel export evals` on a seeded analyzer state
//! (tests/seed): all four formats are valid for their tools (our JSON Schema, the OpenAI evals
//! sample keys, promptfoo's own `validate` and an offline `eval` with the real npm package, a
//! CSV reader), representatives are diverse, a re-export writes nothing new, `--again` does,
//! `--append-to` merges without duplicates, and the triage/trend selection of `--all-open`.

mod common;
mod seed;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use clickhouse::Row;
use common::{TestDb, scratch_dir, stderr, stdout};
use serde::Deserialize;
use serde_json::Value;
use time::OffsetDateTime;

fn schema() -> jsonschema::Validator {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/api/eval_case.schema.json")).unwrap();
    jsonschema::validator_for(&serde_json::from_str(&text).unwrap()).expect("the eval case schema is a valid JSON Schema")
}

fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn export(db: &TestDb, args: &[&str]) -> String {
    let mut all = vec!["export", "evals"];
    all.extend_from_slice(args);
    let out = db.flywheel(&all);
    assert!(out.status.success(), "flywheel {all:?}: {}", stderr(&out));
    stdout(&out)
}

/// The promptfoo CLI installed by ./setup.sh; a missing one fails the test (never skipped).
pub fn promptfoo() -> PathBuf {
    let home = std::env::var("FLYWHEEL_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(std::env::var("HOME").unwrap()).join(".local/share/flywheel"));
    let bin = home.join("node/node_modules/.bin/promptfoo");
    assert!(bin.exists(), "promptfoo is not installed at {}: run ./setup.sh", bin.display());
    bin
}

fn promptfoo_cmd(dir: &Path) -> Command {
    let mut cmd = Command::new(promptfoo());
    cmd.current_dir(dir)
        .env("PROMPTFOO_CONFIG_DIR", dir.join(".promptfoo"))
        .env("PROMPTFOO_DISABLE_TELEMETRY", "1")
        .env("PROMPTFOO_DISABLE_UPDATE", "1")
        .env("PROMPTFOO_DISABLE_SHARING", "1")
        .env("PROMPTFOO_DISABLE_REMOTE_GENERATION", "1")
        .env("NO_COLOR", "1");
    cmd
}

/// Loads the tests file the way a promptfoo user does (`tests: file://…`), validates the config
/// against promptfoo's schema, then runs every case offline (echo provider and echo grader) so
/// that every assertion is parsed and executed by promptfoo itself. Returns the results.
fn promptfoo_check(tests: &Path, expected_cases: usize) -> Vec<Value> {
    let dir = tests.parent().unwrap();
    let config = dir.join("promptfooconfig.yaml");
    std::fs::write(
        &config,
        format!(
            "description: flywheel export check\nprompts:\n  - \"{{{{ messages | dump }}}}\"\nproviders:\n  - echo\ntests: file://{}\n",
            tests.file_name().unwrap().to_str().unwrap()
        ),
    )
    .unwrap();
    let out = promptfoo_cmd(dir).args(["validate", "-c", "promptfooconfig.yaml"]).output().unwrap();
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert!(out.status.success() && text.contains("Configuration is valid"), "promptfoo validate: {text}");

    let out = promptfoo_cmd(dir)
        .args([
            "eval",
            "-c",
            "promptfooconfig.yaml",
            "--no-cache",
            "--no-progress-bar",
            "--no-write",
            "--grader",
            "echo",
            "-o",
            "results.json",
        ])
        .output()
        .unwrap();
    // Exit status 100 means "some assertions failed", which is expected of an echo model.
    assert!(matches!(out.status.code(), Some(0) | Some(100)), "promptfoo eval: {}{}", stdout(&out), stderr(&out));
    let results: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("results.json")).unwrap()).unwrap();
    let results = results["results"]["results"].as_array().unwrap().clone();
    assert_eq!(results.len(), expected_cases, "one promptfoo result per case");
    for r in &results {
        assert!(
            r["error"].is_null() || r["error"].as_str().is_some_and(|e| !e.contains("Unknown assertion")),
            "promptfoo error: {}",
            r["error"]
        );
        let types: Vec<&str> =
            r["gradingResult"]["componentResults"].as_array().unwrap().iter().map(|c| c["assertion"]["type"].as_str().unwrap()).collect();
        assert!(types.contains(&"llm-rubric"), "every case has a rubric: {types:?}");
    }
    results
}

#[derive(Row, Deserialize)]
struct Exported {
    format: String,
    n: u64,
}

#[tokio::test(flavor = "multi_thread")]
async fn exports_are_valid_for_their_tools_and_never_duplicated() {
    let db = TestDb::new("evals_formats");
    let store = db.migrated().await;
    seed::Seed::build(OffsetDateTime::now_utc()).insert(&store).await;
    let dir = scratch_dir("evals-formats");

    // flywheel JSONL: valid against the schema, diverse, the edit as the expected behaviour.
    let jsonl = dir.join("cases.jsonl");
    let summary = export(&db, &["--all-open", "--max-per-pattern", "3", "--out", jsonl.to_str().unwrap()]);
    assert!(summary.contains("6 eval cases from 2 patterns"), "{summary}");
    assert!(summary.contains("lexical similarity for 1 pattern"), "p-trunc has no embeddings: {summary}");
    let cases = lines(&jsonl);
    assert_eq!(cases.len(), 6);
    let validator = schema();
    for c in &cases {
        let errors: Vec<String> = validator.iter_errors(c).map(|e| format!("{} at {}", e, e.instance_path())).collect();
        assert!(errors.is_empty(), "case does not match eval_case.schema.json: {errors:?}\n{c:#}");
    }
    let patterns: HashSet<&str> = cases.iter().map(|c| c["provenance"]["pattern_id"].as_str().unwrap()).collect();
    assert_eq!(patterns, HashSet::from([seed::REFUND, seed::TRUNC]), "only open patterns (not resolved, not fixed)");
    let refund: Vec<&Value> = cases.iter().filter(|c| c["provenance"]["pattern_id"] == seed::REFUND).collect();
    let groups: HashSet<u32> = refund.iter().map(|c| seed::refund_group(c["provenance"]["trace_id"].as_str().unwrap()).unwrap()).collect();
    assert_eq!(groups.len(), 3, "farthest-point sampling takes one member per embedding group, not the first three rows");
    let edited: Vec<&&Value> = refund.iter().filter(|c| c["expected"]["source"] == "edit").collect();
    assert_eq!(edited.len(), 1);
    assert_eq!(edited[0]["expected"]["text"], seed::EDIT_TEXT);
    assert_eq!(edited[0]["input"]["system"], seed::SYSTEM);
    assert_eq!(edited[0]["input"]["tools"][0]["name"], "lookup_order");
    assert_eq!(edited[0]["provenance"]["pattern_label"], seed::REFUND_LABEL);
    assert!(edited[0]["failure"]["reasons"].as_array().unwrap().iter().any(|r| r == "edit"));
    assert!(refund.iter().any(|c| c["input"]["messages"].as_array().unwrap().len() == 3), "the multi-turn member keeps its tool call");

    // OpenAI evals: {"input": [chat messages], "ideal": …}.
    let openai = dir.join("cases.openai.jsonl");
    export(&db, &["--all-open", "--max-per-pattern", "3", "--format", "openai-evals", "--out", openai.to_str().unwrap()]);
    let samples = lines(&openai);
    assert_eq!(samples.len(), 6);
    for s in &samples {
        let input = s["input"].as_array().expect("input is a list of messages");
        assert!(!input.is_empty());
        for m in input {
            assert!(m["role"].is_string() && m["content"].is_string(), "chat message: {m}");
        }
        assert!(s["ideal"].is_string());
    }
    let ideal: Vec<&Value> = samples.iter().filter(|s| s["ideal"] != "").collect();
    assert_eq!(ideal.len(), 1);
    assert_eq!(ideal[0]["ideal"], seed::EDIT_TEXT);
    assert_eq!(ideal[0]["input"][0]["role"], "system");
    assert!(samples.iter().any(|s| s["input"].as_array().unwrap().iter().any(|m| m["tool_calls"].is_array())));

    // promptfoo: the real package validates and runs it.
    let pf = dir.join("promptfoo").join("tests.yaml");
    export(&db, &["--all-open", "--max-per-pattern", "3", "--format", "promptfoo", "--out", pf.to_str().unwrap()]);
    let results = promptfoo_check(&pf, 6);
    let not_contains = results
        .iter()
        .flat_map(|r| r["gradingResult"]["componentResults"].as_array().unwrap().clone())
        .filter(|c| c["assertion"]["type"] == "not-icontains")
        .count();
    assert!(not_contains >= 3, "rejected answers become not-icontains guards");

    // CSV: one row per case.
    let csv_path = dir.join("cases.csv");
    export(&db, &["--all-open", "--max-per-pattern", "3", "--format", "csv", "--out", csv_path.to_str().unwrap()]);
    let mut reader = csv::Reader::from_path(&csv_path).unwrap();
    let headers = reader.headers().unwrap().clone();
    assert_eq!(&headers[0], "case_id");
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 6);
    let expected_col = headers.iter().position(|h| h == "expected").unwrap();
    assert_eq!(rows.iter().filter(|r| &r[expected_col] == seed::EDIT_TEXT).count(), 1);

    // Every case is recorded per format.
    let recorded: Vec<Exported> = store
        .query(
            "SELECT toString(format) AS format, count() AS n FROM eval_exports FINAL WHERE project_id = ? GROUP BY format ORDER BY format",
        )
        .bind(seed::PROJECT)
        .fetch_all()
        .await
        .unwrap();
    assert_eq!(
        recorded.iter().map(|r| (r.format.as_str(), r.n)).collect::<Vec<_>>(),
        [("csv", 6), ("jsonl", 6), ("openai-evals", 6), ("promptfoo", 6)]
    );

    // A re-export writes nothing new and leaves the file alone; --again exports again.
    let before = std::fs::read_to_string(&jsonl).unwrap();
    let again = export(&db, &["--all-open", "--max-per-pattern", "3", "--out", jsonl.to_str().unwrap()]);
    assert!(again.contains("no new eval cases") && again.contains("6 already exported, use --again"), "{again}");
    assert_eq!(std::fs::read_to_string(&jsonl).unwrap(), before);
    let forced = export(&db, &["--all-open", "--max-per-pattern", "3", "--again", "--out", jsonl.to_str().unwrap()]);
    assert!(forced.contains("6 eval cases from 2 patterns"), "{forced}");
    assert_eq!(lines(&jsonl), cases, "the same data gives the same cases");

    // --append-to merges without duplicates: two cases already there, and one foreign line.
    let merged = dir.join("team-evals.jsonl");
    let kept: Vec<&str> = before.lines().take(2).collect();
    std::fs::write(&merged, format!("{}\n{}\n{{\"input\": \"a case written by hand\"}}\n", kept[0], kept[1])).unwrap();
    let appended = export(&db, &["--all-open", "--max-per-pattern", "3", "--again", "--append-to", merged.to_str().unwrap()]);
    assert!(appended.contains("4 eval cases") && appended.contains("2 already in the file"), "{appended}");
    let merged_lines = lines(&merged);
    assert_eq!(merged_lines.len(), 7);
    assert_eq!(merged_lines[2]["input"], "a case written by hand", "existing lines are kept as they were");
    let ids: Vec<&str> = merged_lines.iter().filter_map(|c| c["id"].as_str()).collect();
    assert_eq!(ids.len(), ids.iter().collect::<HashSet<_>>().len(), "no duplicate case");
    let again = export(&db, &["--all-open", "--max-per-pattern", "3", "--again", "--append-to", merged.to_str().unwrap()]);
    assert!(again.contains("no new eval cases") && again.contains("6 already in the file"), "{again}");

    // Appending to promptfoo and CSV files keeps them valid for their tools.
    let pf_team = dir.join("promptfoo-team").join("tests.yaml");
    std::fs::create_dir_all(pf_team.parent().unwrap()).unwrap();
    std::fs::write(&pf_team, "# our hand-written tests\n- description: greets politely\n  vars:\n    messages: [{role: user, content: hi}]\n    question: hi\n  assert:\n    - type: llm-rubric\n      value: Greets the user\n").unwrap();
    let out = export(&db, &["--pattern", seed::TRUNC, "--format", "promptfoo", "--again", "--append-to", pf_team.to_str().unwrap()]);
    assert!(out.contains("4 eval cases from 1 pattern"), "{out}");
    assert!(std::fs::read_to_string(&pf_team).unwrap().starts_with("# our hand-written tests"));
    promptfoo_check(&pf_team, 5);
    let out = export(&db, &["--pattern", seed::TRUNC, "--format", "csv", "--again", "--append-to", csv_path.to_str().unwrap()]);
    assert!(out.contains("1 eval case from 1 pattern") && out.contains("3 already in the file"), "max 3 were there, 4 members: {out}");
    assert_eq!(csv::Reader::from_path(&csv_path).unwrap().records().count(), 7);
}

#[tokio::test(flavor = "multi_thread")]
async fn one_pattern_and_errors() {
    let db = TestDb::new("evals_pattern");
    let store = db.migrated().await;
    seed::Seed::build(OffsetDateTime::now_utc()).insert(&store).await;
    let dir = scratch_dir("evals-pattern");

    // A triaged (fixed) pattern is not open, but can be exported by id.
    let path = dir.join("ratelimit.jsonl");
    let out = export(&db, &["--pattern", seed::RATELIMIT, "--out", path.to_str().unwrap()]);
    assert!(out.contains("3 eval cases from 1 pattern"), "{out}");
    let cases = lines(&path);
    assert!(cases.iter().all(|c| c["output"]["error"] == "RateLimitError: 429 Too Many Requests" && c["output"]["text"] == ""));

    // Default output path, relative to the working directory.
    let out = common::flywheel_cmd()
        .args(["export", "evals", "--pattern", seed::TRUNC, "--format", "csv"])
        .env("FLYWHEEL_CLICKHOUSE_URL", &db.url)
        .env("FLYWHEEL_CLICKHOUSE_DATABASE", &db.database)
        .current_dir(&dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("evals/flywheel-evals.csv"), "{}", stdout(&out));
    assert!(dir.join("evals/flywheel-evals.csv").exists());

    // Failures say what to do.
    let out = db.flywheel(&["export", "evals", "--pattern", "p-nope"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("no pattern `p-nope` in project `shop`") && stderr(&out).contains("flywheel patterns"),
        "{}",
        stderr(&out)
    );
    let out = db.flywheel(&["export", "evals", "--all-open", "--max-per-pattern", "0"]);
    assert!(!out.status.success() && stderr(&out).contains("--max-per-pattern"), "{}", stderr(&out));
    let bad = dir.join("bad.yaml");
    std::fs::write(&bad, "tests:\n  - vars: {}\n").unwrap();
    let out = db.flywheel(&["export", "evals", "--all-open", "--format", "promptfoo", "--append-to", bad.to_str().unwrap()]);
    assert!(!out.status.success() && stderr(&out).contains("not a promptfoo tests file"), "{}", stderr(&out));
}

/// The loop: the simulator's traffic through the real collector, `flywheel analyze`,
/// then every format from the patterns it found — each valid for its tool, none twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulated_traffic_analyzed_then_exported_in_every_format() {
    let collector = common::Collector::start(TestDb::new("evals_loop"), "[collector]\nsignal_link_interval_secs = 1\n");
    collector.simulate("loop", &["--interactions", "600", "--seed", "7", "--duration", "2d"]).await;
    let out = collector.db.flywheel(&["analyze", "--project", "loop", "--since", "3d"]);
    assert!(out.status.success(), "analyze: {}{}", stdout(&out), stderr(&out));
    let db = &collector.db;
    let dir = scratch_dir("evals-loop");

    let jsonl = dir.join("loop.jsonl");
    let summary = export(db, &["--project", "loop", "--all-open", "--out", jsonl.to_str().unwrap()]);
    let cases = lines(&jsonl);
    assert!(cases.len() >= 10, "{summary}");
    let validator = schema();
    for c in &cases {
        let errors: Vec<String> = validator.iter_errors(c).map(|e| format!("{} at {}", e, e.instance_path())).collect();
        assert!(errors.is_empty(), "{errors:?}\n{c:#}");
        assert!(!c["input"]["messages"].as_array().unwrap().is_empty(), "{c:#}");
        assert_eq!(c["provenance"]["trace_id"].as_str().unwrap().len(), 32);
    }

    let openai = dir.join("loop.openai.jsonl");
    export(db, &["--project", "loop", "--all-open", "--format", "openai-evals", "--out", openai.to_str().unwrap()]);
    for c in lines(&openai) {
        assert!(c["input"].as_array().is_some_and(|m| !m.is_empty()) && c.get("ideal").is_some(), "{c}");
    }

    let promptfoo_file = dir.join("loop.promptfoo.yaml");
    export(db, &["--project", "loop", "--all-open", "--format", "promptfoo", "--out", promptfoo_file.to_str().unwrap()]);
    promptfoo_check(&promptfoo_file, cases.len());

    let csv_file = dir.join("loop.csv");
    export(db, &["--project", "loop", "--all-open", "--format", "csv", "--out", csv_file.to_str().unwrap()]);
    assert_eq!(csv::Reader::from_path(&csv_file).unwrap().records().count(), cases.len());

    // Nothing new the second time; everything again with --again.
    let again_path = dir.join("loop-2.jsonl");
    let summary = export(db, &["--project", "loop", "--all-open", "--out", again_path.to_str().unwrap()]);
    assert!(summary.contains("no new eval cases") && summary.contains("already exported, use --again"), "{summary}");
    export(db, &["--project", "loop", "--all-open", "--again", "--out", again_path.to_str().unwrap()]);
    assert_eq!(lines(&again_path).len(), cases.len());
}
