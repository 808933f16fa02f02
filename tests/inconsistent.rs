//! Issue 19, inconsistent answers, end to end: simulated support traffic in which sessions open
//! with questions customers ask again and again — policy questions answered in many wordings,
//! account questions whose answers rightly differ per user — and in which some policy answers
//! contradict the rest, through the real collector and `flywheel analyze`. The contradictions
//! must be found (precision ≥ 0.9, recall ≥ 0.7 on every seed), the paraphrases and personal
//! answers left alone, and the evidence must reach the pattern, its details and its eval cases.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use clickhouse::Row;
use common::{Collector, TestDb, scratch_dir, stderr, stdout};
use flywheel_schemas::failure::FailureDetails;
use flywheel_simulator::truth::TruthCall;
use serde::Deserialize;
use serde_json::Value;
use time::format_description::well_known::Rfc3339;

#[derive(Row, Deserialize)]
struct Flagged {
    trace_id: String,
    details: String,
    request: String,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contradictions_are_found_and_paraphrases_and_personal_answers_are_not() {
    let c = Collector::start(TestDb::new("inconsistent"), "[collector]\nsignal_link_interval_secs = 1\n");
    let dir = scratch_dir("inconsistent");
    let base = time::OffsetDateTime::now_utc().replace_nanosecond(0).unwrap().format(&Rfc3339).unwrap();
    let store = c.db.store();
    let mut flagged_31 = 0;
    for seed in ["31", "32"] {
        let project = format!("seed{seed}");
        let truth_path = dir.join(format!("truth-{seed}.jsonl"));
        let args = [
            "--interactions",
            "3000",
            "--seed",
            seed,
            "--duration",
            "3d",
            "--base-time",
            &base,
            "--repeated-questions",
            "0.5",
            "--modes",
            "inconsistent_answer=8",
            "--truth",
            truth_path.to_str().unwrap(),
        ];
        c.simulate(&project, &args).await;
        let out = c.db.flywheel(&["analyze", "--project", &project, "--since", "4d", "--lexical"]);
        assert!(out.status.success(), "analyze: {}{}", stdout(&out), stderr(&out));

        let truth: Vec<TruthCall> = std::fs::read_to_string(&truth_path)
            .unwrap()
            .lines()
            .filter(|l| !l.starts_with("{\"summary\""))
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let mode: BTreeMap<&str, Option<&str>> = truth.iter().map(|t| (t.trace_id.as_str(), t.trace_failure_mode.as_deref())).collect();
        let injected: BTreeSet<&str> = mode.iter().filter(|(_, m)| **m == Some("inconsistent_answer")).map(|(t, _)| *t).collect();
        let flagged: Vec<Flagged> = store
            .query(
                "SELECT f.trace_id AS trace_id, f.details AS details, c.input_text AS request FROM failures AS f FINAL \
                 LEFT JOIN (SELECT trace_id, span_id, any(input_text) AS input_text FROM llm_calls WHERE project_id = ? \
                            GROUP BY trace_id, span_id) AS c ON c.trace_id = f.trace_id AND c.span_id = f.span_id \
                 WHERE f.project_id = ? AND has(f.reasons, 'inconsistent') ORDER BY trace_id",
            )
            .bind(&project)
            .bind(&project)
            .fetch_all()
            .await
            .unwrap();
        let found: BTreeSet<&str> = flagged.iter().map(|f| f.trace_id.as_str()).collect();
        if seed == "31" {
            flagged_31 = found.len();
        }
        let hits = found.intersection(&injected).count();
        let precision = hits as f64 / found.len().max(1) as f64;
        let recall = hits as f64 / injected.len().max(1) as f64;
        // The confusion table: what the flagged traces that are not contradictions were.
        let mut wrong: BTreeMap<String, usize> = BTreeMap::new();
        for f in flagged.iter().filter(|f| !injected.contains(f.trace_id.as_str())) {
            eprintln!(
                "WRONG {} | {} | {}",
                f.request,
                FailureDetails::parse(&f.details).output,
                FailureDetails::parse(&f.details).evidence.get("inconsistent").cloned().unwrap_or_default()
            );
            *wrong.entry(mode.get(f.trace_id.as_str()).copied().flatten().unwrap_or("healthy").to_string()).or_default() += 1;
        }
        let missed: Vec<String> = injected.iter().filter(|t| !found.contains(*t)).map(|t| t.to_string()).collect();
        let rows: Vec<(String, String)> = store
            .query("SELECT input_text, output_text FROM llm_calls FINAL WHERE project_id = ? AND has(?, trace_id) AND output_text != ''")
            .bind(&project)
            .bind(&missed)
            .fetch_all()
            .await
            .unwrap();
        for r in rows {
            eprintln!("MISSED {r:?}");
        }
        eprintln!(
            "seed {seed}: {} contradictions injected, {} flagged, {hits} right: precision {precision:.3}, recall {recall:.3}; \
             flagged otherwise: {wrong:?}",
            injected.len(),
            found.len()
        );
        assert!(injected.len() >= 30, "seed {seed}: too few contradictions to measure ({})", injected.len());
        assert!(precision >= 0.9, "seed {seed}: precision {precision:.3}; {wrong:?}");
        assert!(recall >= 0.7, "seed {seed}: recall {recall:.3}");
        // Personal answers differ by user from a tool's result: never an inconsistency.
        let personal: Vec<&Flagged> = flagged.iter().filter(|f| flywheel_simulator::repeated::is_personal_question(&f.request)).collect();
        assert!(
            personal.is_empty(),
            "seed {seed}: personal answers flagged: {:?}",
            personal.iter().map(|f| &f.request).collect::<Vec<_>>()
        );

        // The evidence: the answers side by side, the reference the most frequent right one.
        for f in &flagged {
            let d = FailureDetails::parse(&f.details);
            let contrast = d.contrast.unwrap_or_else(|| panic!("no contrast in {}", f.details));
            assert!(contrast.answers.len() >= 2 && contrast.answers.iter().filter(|s| s.this).count() == 1, "{contrast:?}");
            assert!(contrast.asked >= 3 && contrast.sessions >= 2, "{contrast:?}");
            assert!(d.evidence["inconsistent"].starts_with(&format!("asked {} times", contrast.asked)), "{:?}", d.evidence);
        }
    }

    // One pattern (the feature's facts are not pinned down), labelled with its questions and
    // the facts in dispute.
    let out = c.db.flywheel(&["patterns", "--project", "seed31", "--json"]);
    let patterns: Vec<Value> = stdout(&out).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let inconsistent: Vec<&Value> = patterns.iter().filter(|p| p["label"].as_str().unwrap().starts_with("answers to")).collect();
    assert_eq!(inconsistent.len(), 1, "{patterns:#?}");
    let pattern = inconsistent[0];
    eprintln!("{}", pattern["label"]);
    assert!(pattern["label"].as_str().unwrap().contains(" vs "), "{pattern}");
    assert!(pattern["size"].as_u64().unwrap() as f64 >= 0.8 * flagged_31 as f64, "{pattern} of {flagged_31} flagged");

    // The weekly review lists the questions with their answers, the reference in bold.
    let out = c.db.flywheel(&["report", "--project", "seed31", "--since", "4d", "--out", "-"]);
    assert!(out.status.success(), "report: {}", stderr(&out));
    let md = stdout(&out);
    let section = md.split("## Inconsistent answers").nth(1).unwrap_or_else(|| panic!("no inconsistency section:\n{md}"));
    let section = section.split("\n## ").next().unwrap();
    assert!(section.contains("**30 days**") && section.contains(" in ") && section.contains("sessions"), "{section}");
    eprintln!("{section}");

    // Its eval cases ask for the consistent answer.
    let file = dir.join("cases.jsonl");
    let out = c.db.flywheel(&[
        "export",
        "evals",
        "--project",
        "seed31",
        "--pattern",
        pattern["id"].as_str().unwrap(),
        "--out",
        file.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "export: {}{}", stdout(&out), stderr(&out));
    let cases: Vec<Value> = std::fs::read_to_string(&file).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(!cases.is_empty());
    for case in &cases {
        let rubric = case["expected"]["rubric"].to_string();
        assert!(rubric.contains("consistently with") && rubric.contains("(the original said"), "{case:#}");
    }
    eprintln!("{}", cases[0]["expected"]["rubric"]);
}
