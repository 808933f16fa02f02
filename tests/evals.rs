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
    // Every case says what a right answer does, from its cause — never an empty expectation.
    for c in &cases {
        let rubric: Vec<&str> = c["expected"]["rubric"].as_array().unwrap().iter().map(|r| r.as_str().unwrap()).collect();
        assert!(!rubric.is_empty() && rubric.iter().all(|r| !r.contains("Does not fail in the way")), "{c:#}");
        assert_eq!(c["input"]["parameters"]["temperature"], 0.2, "the request's parameters travel with the case");
        if c["provenance"]["pattern_id"] == seed::TRUNC {
            // The answer was cut at the request's limit: the limit travels, so the failure reproduces.
            assert_eq!(c["input"]["parameters"]["max_tokens"], 512, "{c:#}");
        }
    }
    for c in cases.iter().filter(|c| c["provenance"]["pattern_id"] == seed::TRUNC) {
        assert!(c["expected"]["rubric"][0].as_str().unwrap().contains("complete answer"), "{c:#}");
    }
    let unedited = refund.iter().find(|c| c["expected"]["source"].is_null()).unwrap();
    let rubric = unedited["expected"]["rubric"].to_string();
    assert!(
        rubric.contains(seed::REFUND_LABEL) && rubric.contains("system instructions"),
        "a rejected answer's rubric names the cause: {rubric}"
    );
    assert!(
        rubric.contains("Keeps to this rule of the system instructions: \\\"Follow the refund policy: 30 days from delivery\\\""),
        "the rule the answer broke, not every rule: {rubric}"
    );
    assert!(edited[0]["expected"]["rubric"].to_string().contains(seed::EDIT_TEXT.trim_end_matches('.')), "the correction is the reference");

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
    // `ideal` is a reference answer (the correction) or empty, never rubric prose; the rubric and
    // the tools travel beside it.
    let ideal: Vec<&Value> = samples.iter().filter(|s| s["ideal"] != "").collect();
    assert_eq!(ideal.len(), 1);
    assert_eq!(ideal[0]["ideal"], seed::EDIT_TEXT);
    assert_eq!(ideal[0]["input"][0]["role"], "system");
    assert_eq!(ideal[0]["tools"][0]["function"]["name"], "lookup_order", "tools in OpenAI's chat shape");
    assert!(samples.iter().all(|s| s["rubric"].as_str().is_some_and(|r| !r.is_empty())));
    assert!(samples.iter().all(|s| s["metadata"]["rubric"].as_array().is_some_and(|r| !r.is_empty())));
    assert!(samples.iter().any(|s| s["input"].as_array().unwrap().iter().any(|m| m["tool_calls"].is_array())));

    // promptfoo: the real package validates and runs it.
    let pf = dir.join("promptfoo").join("tests.yaml");
    export(&db, &["--all-open", "--max-per-pattern", "3", "--format", "promptfoo", "--out", pf.to_str().unwrap()]);
    let results = promptfoo_check(&pf, 6);
    let types: HashSet<String> = results
        .iter()
        .flat_map(|r| r["gradingResult"]["componentResults"].as_array().unwrap().clone())
        .map(|c| c["assertion"]["type"].as_str().unwrap().to_string())
        .collect();
    assert!(!types.iter().any(|t| t.starts_with("not-")), "no assertion forbids text a correct answer may contain: {types:?}");

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
    let rubric_col = headers.iter().position(|h| h == "rubric").unwrap();
    assert!(rows.iter().all(|r| !r[rubric_col].is_empty()));

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

    // Operations patterns make no behaviour eval: left out unless asked for, then as
    // availability checks. A triaged (fixed) pattern is not open, but can be exported by id.
    let path = dir.join("ratelimit.jsonl");
    let out = db.flywheel(&["export", "evals", "--pattern", seed::RATELIMIT, "--out", path.to_str().unwrap()]);
    assert!(
        !out.status.success() && stderr(&out).contains("operations failure") && stderr(&out).contains("--include-ops"),
        "{}",
        stderr(&out)
    );
    assert_eq!(stderr(&out).trim().lines().count(), 1, "{}", stderr(&out));
    let out = export(&db, &["--pattern", seed::RATELIMIT, "--include-ops", "--out", path.to_str().unwrap()]);
    assert!(out.contains("3 eval cases from 1 pattern"), "{out}");
    let cases = lines(&path);
    assert!(cases.iter().all(|c| c["output"]["error"] == "RateLimitError: 429 Too Many Requests" && c["output"]["text"] == ""));
    for c in &cases {
        assert_eq!(c["expected"]["checks"], serde_json::json!([{"kind": "non_empty"}]), "{c:#}");
        assert!(c["expected"]["rubric"][0].as_str().unwrap().contains("rate limited"), "{c:#}");
    }
    let all = dir.join("all.jsonl");
    export(&db, &["--all-open", "--include-ops", "--out", all.to_str().unwrap()]);
    assert!(lines(&all).iter().all(|c| c["provenance"]["pattern_id"] != seed::RATELIMIT), "fixed is not open");
    // Reopened, the operations pattern is open — and still left out of `--all-open` unless asked for.
    let out = db.flywheel(&["triage", seed::RATELIMIT, "regressed", "--note", "429s again"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let open = dir.join("open.jsonl");
    let out = export(&db, &["--all-open", "--again", "--out", open.to_str().unwrap()]);
    let behaviour = lines(&open).len();
    let ids: HashSet<String> = lines(&open).iter().map(|c| c["provenance"]["pattern_id"].as_str().unwrap().to_string()).collect();
    assert!(!ids.is_empty() && !ids.contains(seed::RATELIMIT), "an open operations pattern is no behaviour eval: {ids:?} {out}");
    let out = export(&db, &["--all-open", "--again", "--include-ops", "--out", open.to_str().unwrap()]);
    let with_ops: Vec<Value> = lines(&open);
    let ops: Vec<&Value> = with_ops.iter().filter(|c| c["provenance"]["pattern_id"] == seed::RATELIMIT).collect();
    assert_eq!(ops.len(), 3, "--include-ops adds it, as availability checks: {out}");
    assert!(ops.iter().all(|c| c["expected"]["checks"] == serde_json::json!([{"kind": "non_empty"}])));
    assert_eq!(with_ops.len(), behaviour + 3, "the behaviour cases are the same, the ops cases beside them");

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

/// The issue's loop: the simulator's traffic through the real collector, `flywheel analyze`,
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

/// A pattern of answers that break the JSON contract their instructions and schema ask for,
/// beside the shared seed: three calls, one of them with its schema on the span.
async fn seed_format_pattern(store: &flywheel_schemas::Store, now: OffsetDateTime) {
    const SYSTEM: &str = "Classify the customer's message. Reply with JSON only: {\"intent\": one of refund, delivery, other; \"priority\": one of low, high}.";
    let schema = r#"{"type":"object","properties":{"intent":{"type":"string","enum":["refund","delivery","other"]},"priority":{"type":"string","enum":["low","high"]}},"required":["intent","priority"]}"#;
    let mut s = seed::Seed { now: Some(now), ..Default::default() };
    let messages = ["My parcel never came, order 77", "Refund me now for order 78", "Where is the invoice for order 79"];
    let outputs = ["Sure! This looks like a delivery issue.", r#"{"intent": "refund"}"#, r#"{"intent": "other", "priority": "urgent"}"#];
    let mut spans = Vec::new();
    for i in 0..3u32 {
        let at = now - time::Duration::hours(3) + time::Duration::minutes(i as i64);
        let (t, sp) = s.call(seed::Call {
            tag: 0xf6,
            i,
            at,
            feature: "triage",
            model: "gpt-4o-mini",
            user: format!("user-t{i}"),
            session: format!("sess-t{i}"),
            input: seed::text_messages(&[("user", messages[i as usize])]),
            output: outputs[i as usize],
            finish: "stop",
            error: None,
            system: Some(SYSTEM),
            tools: None,
        });
        let details = serde_json::json!({
            "request": messages[i as usize], "output": outputs[i as usize],
            "evidence": {"format_violation": "the answer misses required key `priority`"},
            "format": {"required": ["intent", "priority"], "allowed": {"intent": ["refund", "delivery", "other"], "priority": ["low", "high"]}}
        });
        s.failure(&t, &sp, &["format_violation"], details, Some(("p-format", 0.1 * i as f32)));
        if i == 0 {
            // The model call's span, as the benchmark's sample has it, with the schema it asked for.
            spans.push(flywheel_schemas::rows::SpanRow {
                project_id: seed::PROJECT.into(),
                trace_id: t.clone(),
                span_id: sp.clone(),
                start_time: at,
                end_time: at + time::Duration::seconds(1),
                attributes: [("gen_ai.request.structured_output_schema".to_string(), schema.to_string())].into(),
                ..flywheel_schemas::bench::sample_span(0, now)
            });
        }
    }
    s.pattern("p-format", "triage answers that are not the JSON asked for", "new", "triage", "gpt-4o-mini", &["json"], 3, 0);
    store.insert("spans", &spans).await.unwrap();
    store.insert("llm_calls", &s.calls).await.unwrap();
    store.insert("contents", &s.contents).await.unwrap();
    store.insert("failures", &s.failures).await.unwrap();
    store.insert("patterns", &s.patterns).await.unwrap();
    store.insert("pattern_members", &s.members).await.unwrap();
}

/// Runs the promptfoo tests file with the echo provider answering `answers[question]` (a JS
/// prompt function looks the answer up by the case's question), and returns, per question, the
/// deterministic assertions' results (type, pass) — everything but the rubric, which needs a
/// grading model.
fn promptfoo_answering(tests: &Path, answers: &[(String, String)]) -> Vec<(String, Vec<(String, bool)>)> {
    let dir = tests.parent().unwrap();
    let table: serde_json::Map<String, Value> = answers.iter().map(|(q, a)| (q.clone(), Value::String(a.clone()))).collect();
    std::fs::write(
        dir.join("answer.js"),
        format!("const answers = {};\nmodule.exports = ({{ vars }}) => answers[vars.question] ?? '';\n", Value::Object(table)),
    )
    .unwrap();
    std::fs::write(
        dir.join("reference.yaml"),
        format!(
            "description: flywheel reference answers\nprompts:\n  - file://answer.js\nproviders:\n  - echo\ntests: file://{}\n",
            tests.file_name().unwrap().to_str().unwrap()
        ),
    )
    .unwrap();
    let out = promptfoo_cmd(dir)
        .args(["eval", "-c", "reference.yaml", "--no-cache", "--no-progress-bar", "--no-write", "--grader", "echo", "-o", "reference.json"])
        .output()
        .unwrap();
    assert!(matches!(out.status.code(), Some(0) | Some(100)), "promptfoo eval: {}{}", stdout(&out), stderr(&out));
    let results: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("reference.json")).unwrap()).unwrap();
    results["results"]["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            // promptfoo re-indents a prompt that is JSON: compare without whitespace.
            let squeeze = |s: &str| s.split_whitespace().collect::<String>();
            let given = &answers.iter().find(|(q, _)| *q == r["vars"]["question"]).unwrap().1;
            assert_eq!(squeeze(r["response"]["output"].as_str().unwrap()), squeeze(given), "the echo provider answers the reference");
            let checks = r["gradingResult"]["componentResults"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|c| c["assertion"]["type"] != "llm-rubric")
                .map(|c| (c["assertion"]["type"].as_str().unwrap().to_string(), c["pass"].as_bool().unwrap()))
                .collect();
            (r["vars"]["question"].as_str().unwrap().to_string(), checks)
        })
        .collect()
}

/// The issue's bar for eval cases: every case has an expected behaviour from its cause, and no
/// assertion fails a correct answer — run by promptfoo itself with reference answers as the
/// model's output (the user's correction, a complete version of a truncated answer, JSON that
/// keeps the contract, in a code fence once), while the checks still catch the bad answers.
#[tokio::test(flavor = "multi_thread")]
async fn expected_behaviour_passes_a_correct_answer_and_catches_the_bad_one() {
    let db = TestDb::new("evals_expected");
    let store = db.migrated().await;
    let now = OffsetDateTime::now_utc();
    seed::Seed::build(now).insert(&store).await;
    seed_format_pattern(&store, now).await;
    let dir = scratch_dir("evals-expected");

    let jsonl = dir.join("cases.jsonl");
    export(&db, &["--all-open", "--max-per-pattern", "9", "--out", jsonl.to_str().unwrap()]);
    let cases = lines(&jsonl);
    let validator = schema();
    for c in &cases {
        let errors: Vec<String> = validator.iter_errors(c).map(|e| format!("{} at {}", e, e.instance_path())).collect();
        assert!(errors.is_empty(), "{errors:?}\n{c:#}");
    }
    let format: Vec<&Value> = cases.iter().filter(|c| c["provenance"]["pattern_id"] == "p-format").collect();
    assert_eq!(format.len(), 3);
    for c in &format {
        assert_eq!(c["expected"]["checks"][0]["kind"], "json", "{c:#}");
        assert_eq!(c["expected"]["checks"][0]["required"], serde_json::json!(["intent", "priority"]));
        let rubric = c["expected"]["rubric"][0].as_str().unwrap();
        assert!(rubric.contains("JSON only") && rubric.contains("`priority` is one of low, high"), "{rubric}");
    }
    let with_schema = format.iter().find(|c| !c["input"]["parameters"]["response_format"].is_null()).expect("the span's schema");
    assert_eq!(with_schema["input"]["parameters"]["response_format"]["type"], "json_schema");
    assert_eq!(with_schema["input"]["parameters"]["response_format"]["json_schema"]["schema"]["required"][1], "priority");

    let pf = dir.join("promptfoo").join("tests.yaml");
    export(&db, &["--all-open", "--max-per-pattern", "9", "--format", "promptfoo", "--out", pf.to_str().unwrap()]);
    promptfoo_check(&pf, cases.len());

    // Reference answers: what a right answer looks like for each case.
    let reference = |c: &Value| -> String {
        let bad = c["output"]["text"].as_str().unwrap();
        match c["provenance"]["pattern_id"].as_str().unwrap() {
            seed::REFUND => seed::EDIT_TEXT.to_string(),
            // A complete version starts as the truncated one did.
            seed::TRUNC => format!("{bad} ...)\n}}\n\nThis completes the function."),
            "p-format" if c["input"]["messages"][0]["parts"][0]["content"].as_str().unwrap().contains("77") => {
                "```json\n{\"intent\": \"delivery\", \"priority\": \"high\"}\n```".into()
            }
            "p-format" => "{\"intent\": \"refund\", \"priority\": \"low\"}".into(),
            other => panic!("unexpected pattern {other}"),
        }
    };
    let good: Vec<(String, String)> = cases.iter().map(|c| (question(c), reference(c))).collect();
    let results = promptfoo_answering(&pf, &good);
    assert_eq!(results.len(), cases.len());
    let checked: usize = results.iter().map(|(_, checks)| checks.len()).sum();
    assert!(checked >= 3, "the format cases carry deterministic checks: {results:?}");
    for (question, checks) in &results {
        assert!(checks.iter().all(|(_, pass)| *pass), "a correct answer to {question:?} fails {checks:?}");
    }

    // The bad answers themselves fail the format checks.
    let bad: Vec<(String, String)> = cases.iter().map(|c| (question(c), c["output"]["text"].as_str().unwrap().to_string())).collect();
    let results = promptfoo_answering(&pf, &bad);
    let format_questions: HashSet<String> = format.iter().map(|c| question(c)).collect();
    for (question, checks) in results.iter().filter(|(q, _)| format_questions.contains(q)) {
        assert!(checks.iter().any(|(t, pass)| t == "javascript" && !pass), "the broken JSON of {question:?} passes: {checks:?}");
    }
}

/// The last user message of a JSONL case (what promptfoo's `vars.question` holds).
fn question(c: &Value) -> String {
    c["input"]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .find(|m| m["role"] == "user")
        .map(|m| m["parts"].as_array().unwrap().iter().filter_map(|p| p["content"].as_str()).collect::<Vec<_>>().join("\n"))
        .unwrap_or_default()
}
