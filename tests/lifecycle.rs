//! Issue 18, pattern lifecycle, end to end over simulated traffic through the real collector:
//! three analysis runs over three weeks. A failure mode the team marked fixed disappears in
//! the second week (its pattern is resolved) and comes back in the third, in a new release:
//! the third run reopens its pattern as `regressed`, says when it was fixed, when it came back
//! and in which release, and lists it first. A pattern marked fixed whose failures all date
//! from before the fix stays fixed.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::{Collector, Day, TestDb, scratch_dir, stderr, stdout};
use flywheel_simulator::truth::TruthCall;
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};

fn patterns(db: &TestDb) -> Vec<serde_json::Value> {
    let out = db.flywheel(&["patterns", "--project", "app", "--json", "--members"]);
    assert!(out.status.success(), "patterns failed: {}", stderr(&out));
    stdout(&out).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn analyze(db: &TestDb, since: &str) -> String {
    let out = db.flywheel(&["analyze", "--project", "app", "--since", since, "--lexical"]);
    assert!(out.status.success(), "analyze failed: {}{}", stdout(&out), stderr(&out));
    stdout(&out)
}

/// The pattern holding most of `mode`'s failing traces.
fn pattern_of_mode(truth: &Path, patterns: &[serde_json::Value], mode: &str) -> String {
    let text = std::fs::read_to_string(truth).unwrap();
    let traces: Vec<String> = text
        .lines()
        .filter(|l| !l.starts_with("{\"summary\""))
        .map(|l| serde_json::from_str::<TruthCall>(l).unwrap())
        .filter(|c| c.trace_failure_mode.as_deref() == Some(mode))
        .map(|c| c.trace_id)
        .collect();
    let mut votes: BTreeMap<String, usize> = BTreeMap::new();
    for p in patterns {
        let n = p["members"].as_array().unwrap().iter().filter(|t| traces.iter().any(|x| x == t.as_str().unwrap())).count();
        votes.insert(p["id"].as_str().unwrap().to_string(), n);
    }
    let (id, n) = votes.into_iter().max_by_key(|(_, n)| *n).expect("patterns");
    assert!(n > 0, "no pattern holds {mode}: {patterns:?}");
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fixed_pattern_that_comes_back_is_reopened_as_regressed() {
    let c = Collector::start(TestDb::new("lifecycle"), "[collector]\nsignal_link_interval_secs = 1\n");
    let dir = scratch_dir("lifecycle");
    let now = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
    // Week 1: every mode, release 2.14.0. The team then fixes truncation and tool arguments.
    let truth1 = dir.join("week1.jsonl");
    let day = Day { days_ago: 20, interactions: 900, seed: 31, release: "2.14.0", modes: "slow_answer=1", truth: Some(&truth1) };
    c.simulate_day("app", now, day).await;
    analyze(&c.db, "21d");
    let first = patterns(&c.db);
    let truncated = pattern_of_mode(&truth1, &first, "truncated_answer");
    let tools = pattern_of_mode(&truth1, &first, "invalid_tool_arguments");
    assert_ne!(truncated, tools);
    for id in [&truncated, &tools] {
        let out = c.db.flywheel(&["triage", id, "fixed", "--note", "deployed the fix", "--project", "app"]);
        assert!(out.status.success(), "triage failed: {}", stderr(&out));
        assert!(stdout(&out).contains("is now fixed"), "{}", stdout(&out));
    }
    let out = c.db.flywheel(&["triage", &truncated, "solved", "--project", "app"]);
    // Refused as the command line is parsed, with the states there are.
    assert!(
        !out.status.success() && stderr(&out).contains("invalid value 'solved'") && stderr(&out).contains("fixed, wont_fix"),
        "{}",
        stderr(&out)
    );

    // Week 2: truncation is gone; tool-argument failures still happen (dated before the fix
    // was recorded, as this traffic is simulated in the past).
    let truth2 = dir.join("week2.jsonl");
    let day = Day { days_ago: 11, interactions: 900, seed: 32, release: "2.14.0", modes: "truncated_answer=0", truth: Some(&truth2) };
    c.simulate_day("app", now, day).await;
    analyze(&c.db, "12d");
    let second = patterns(&c.db);
    let row = |ps: &[serde_json::Value], id: &str| ps.iter().find(|p| p["id"] == id).cloned().unwrap_or_else(|| panic!("{id} in {ps:?}"));
    assert_eq!(row(&second, &truncated)["trend"], "resolved", "{second:?}");
    assert_eq!(row(&second, &truncated)["status"], "fixed");
    assert!(row(&second, &truncated)["regressed_at"].is_null());

    // Week 3: truncation is back, in release 2.15.0.
    let truth3 = dir.join("week3.jsonl");
    let day = Day { days_ago: 2, interactions: 900, seed: 33, release: "2.15.0", modes: "slow_answer=1", truth: Some(&truth3) };
    c.simulate_day("app", now, day).await;
    let summary = analyze(&c.db, "3d");
    assert!(summary.contains("reopened as regressed") && summary.contains(&truncated), "{summary}");
    let third = patterns(&c.db);
    let back = row(&third, &truncated);
    assert_eq!(back["status"], "regressed", "{back}");
    assert_eq!(back["trend"], "regressed", "{back}");
    assert_eq!(back["regressed_in"], "2.15.0", "{back}");
    let regressed_at = OffsetDateTime::parse(back["regressed_at"].as_str().unwrap(), &Rfc3339).unwrap();
    assert!(regressed_at > now - Duration::days(3), "it came back in week 3: {back}");
    assert!(!back["fixed_at"].is_null(), "{back}");
    assert_eq!(pattern_of_mode(&truth3, &third, "truncated_answer"), truncated, "the same pattern, not a new one");
    assert_eq!(third[0]["status"], "regressed", "a regression comes first: {third:?}");
    // Only what was resolved or fixed can regress: a pattern that kept failing is not reopened.
    for p in third.iter().filter(|p| p["status"] == "regressed") {
        let before = second.iter().find(|q| q["id"] == p["id"]).expect("a regressed pattern existed before");
        assert!(before["trend"] == "resolved" || before["status"] == "fixed", "{p} was {before}");
    }
    // Failures from before the fix do not reopen a fixed pattern.
    let tools_now = row(&third, &tools);
    assert_eq!(tools_now["status"], "fixed", "{tools_now}");
    assert!(tools_now["regressed_at"].is_null(), "{tools_now}");

    // The text listing says when and where it came back; the team's next decision replaces it.
    let out = c.db.flywheel(&["patterns", "--project", "app"]);
    let listing = stdout(&out);
    assert!(listing.contains("regressed") && listing.contains("in 2.15.0"), "{listing}");
    let out = c.db.flywheel(&["report", "--project", "app", "--since", "3d", "--out", "-"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report = stdout(&out);
    let section = report.split("## Came back after a fix").nth(1).unwrap_or_else(|| panic!("no regression section: {report}"));
    let section = section.split("\n## ").next().unwrap();
    assert!(section.contains(&truncated) && section.contains("in 2.15.0"), "{section}");
    assert!(report.contains("regressed by flywheel analyze — came back"), "the triage line says why: {report}");

    let out = c.db.flywheel(&["triage", &truncated, "acknowledged", "--project", "app"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let after = patterns(&c.db);
    assert_eq!(row(&after, &truncated)["status"], "acknowledged");
    assert_eq!(row(&after, &truncated)["regressed_in"], "2.15.0", "the history stays");
}
