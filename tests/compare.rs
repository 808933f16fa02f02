//! Issue 18, releases compared, end to end: simulated traffic through the real collector in two
//! releases, a failure mode injected only in the second. `flywheel compare --by
//! service.version` marks that mode's pattern as significantly higher in the second release,
//! and does not mark the modes both releases share; the weekly review over both releases says so.

mod common;

use common::{Collector, Day, TestDb, stderr, stdout};
use time::OffsetDateTime;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mode_injected_in_one_release_is_marked_and_shared_ones_are_not() {
    let c = Collector::start(TestDb::new("compare"), "[collector]\nsignal_link_interval_secs = 1\n");
    let now = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
    for (days_ago, release, seed, modes) in [(6, "2.14.0", 41, "truncated_answer=0"), (2, "2.15.0", 42, "truncated_answer=3")] {
        c.simulate_day("app", now, Day { days_ago, interactions: 1200, seed, release, modes, truth: None }).await;
    }
    let out = c.db.flywheel(&["analyze", "--project", "app", "--since", "8d", "--lexical"]);
    assert!(out.status.success(), "analyze failed: {}{}", stdout(&out), stderr(&out));

    let out = c.db.flywheel(&["compare", "--project", "app", "--by", "service.version", "--since", "8d", "--json"]);
    assert!(out.status.success(), "compare failed: {}", stderr(&out));
    let cmp: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    let values: Vec<&str> = cmp["groups"].as_array().unwrap().iter().map(|g| g["value"].as_str().unwrap()).collect();
    assert_eq!(values.len(), 2, "{values:?}");
    assert!(values.contains(&"2.14.0") && values.contains(&"2.15.0"), "{values:?}");

    // The truncation pattern: the one whose label names the token limit.
    let patterns = cmp["patterns"].as_object().unwrap();
    let (truncated, _) = patterns
        .iter()
        .find(|(_, label)| label.as_str().unwrap().contains("max_tokens") || label.as_str().unwrap().contains("cut"))
        .unwrap_or_else(|| panic!("no truncation pattern in {patterns:?}"));
    let tests = cmp["tests"].as_array().unwrap();
    let test = |metric: &str, value: &str| {
        tests.iter().find(|t| t["metric"] == metric && t["value"] == value).cloned().unwrap_or_else(|| panic!("{metric} {value}"))
    };
    let up = test(&format!("pattern {truncated}"), "2.15.0");
    assert_eq!(up["significant"], true, "{up}");
    assert!(up["rate"].as_f64().unwrap() > up["rest_rate"].as_f64().unwrap(), "{up}");
    assert_eq!(test(&format!("pattern {truncated}"), "2.14.0")["rate"], 0.0);

    // Modes both releases share are not marked: at most one chance finding among them.
    let shared_marked: Vec<&serde_json::Value> = tests
        .iter()
        .filter(|t| {
            t["significant"] == true
                && t["metric"].as_str().unwrap().starts_with("pattern ")
                && t["metric"] != format!("pattern {truncated}")
        })
        .collect();
    assert!(shared_marked.len() <= 2, "shared modes marked as release differences: {shared_marked:?}");

    // The text table names the method and marks the difference.
    let out = c.db.flywheel(&["compare", "--project", "app", "--by", "release", "--since", "8d"]);
    let table = stdout(&out);
    eprintln!("{table}");
    assert!(table.contains("2.15.0") && table.contains("▲") && table.contains("Bonferroni"), "{table}");

    // The weekly review spans both releases: it says what changed between them.
    let out = c.db.flywheel(&["report", "--project", "app", "--since", "8d", "--out", "-"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report = stdout(&out);
    let section = report.split("## Releases").nth(1).unwrap_or_else(|| panic!("no releases section: {report}"));
    let section = section.split("\n## ").next().unwrap();
    let label = patterns[truncated].as_str().unwrap();
    assert!(section.contains(&format!("- 2.15.0: pattern “{label}”")), "{section}");
    assert!(section.matches("- 2.14.0: pattern “").count() <= 1, "the shared modes are not release differences: {section}");

    // Any attribute works; one the calls do not carry gives a single `(none)` group.
    let out = c.db.flywheel(&["compare", "--project", "app", "--by", "no.such.attribute", "--since", "8d", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let none: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(none["groups"].as_array().unwrap().len(), 1);
    assert_eq!(none["groups"][0]["value"], "(none)");
    assert_eq!(none["tests_run"], 0);
}
