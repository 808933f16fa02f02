//! Issue 19, agency readiness, end to end: simulated weeks through the real collector for a
//! project whose answers get better (failures 50 % → 2 %), one whose answers get worse
//! (2 % → 50 %) and one with little traffic, analysed; `flywheel readiness` puts each feature
//! at the level its recent weeks support, with the trend in the right direction, and says so
//! when there is too little traffic.

mod common;

use common::{Collector, TestDb, stderr, stdout};
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

async fn day(c: &Collector, project: &str, now: OffsetDateTime, days_ago: i64, interactions: u32, seed: u32, failure_rate: &str) {
    let base = (now - time::Duration::days(days_ago)).format(&Rfc3339).unwrap();
    let (interactions, seed) = (interactions.to_string(), seed.to_string());
    c.simulate(
        project,
        &["--interactions", &interactions, "--seed", &seed, "--duration", "1d", "--base-time", &base, "--failure-rate", failure_rate],
    )
    .await;
}

fn readiness(c: &Collector, project: &str) -> Vec<Value> {
    let out = c.db.flywheel(&["readiness", "--project", project, "--since", "4w", "--json"]);
    assert!(out.status.success(), "readiness {project}: {}{}", stdout(&out), stderr(&out));
    let text = c.db.flywheel(&["readiness", "--project", project, "--since", "4w"]);
    eprintln!("{}", stdout(&text));
    serde_json::from_str::<Value>(stdout(&out).trim()).unwrap().as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn levels_follow_the_recent_evidence_and_trends_point_the_right_way() {
    let c = Collector::start(TestDb::new("readiness"), "[collector]\nsignal_link_interval_secs = 1\n");
    let now = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
    for (days_ago, seed, better, worse) in
        [(24, 61, "0.5", "0.02"), (17, 62, "0.5", "0.02"), (10, 63, "0.02", "0.5"), (3, 64, "0.02", "0.5")]
    {
        day(&c, "better", now, days_ago, 500, seed, better).await;
        day(&c, "worse", now, days_ago, 500, seed + 100, worse).await;
    }
    day(&c, "quiet", now, 2, 40, 70, "0.1").await;
    for project in ["better", "worse", "quiet"] {
        let out = c.db.flywheel(&["analyze", "--project", project, "--since", "30d", "--lexical"]);
        assert!(out.status.success(), "analyze {project}: {}{}", stdout(&out), stderr(&out));
    }

    let trend = |r: &Value, measure: &str| {
        r["trends"].as_array().unwrap().iter().find(|t| t["measure"] == measure).map(|t| t["direction"].as_str().unwrap().to_string())
    };
    let better = readiness(&c, "better");
    assert!(!better.is_empty());
    for r in &better {
        assert!(matches!(r["level"].as_str().unwrap(), "draft" | "act"), "{r:#}");
        assert_eq!(trend(r, "failure").as_deref(), Some("down"), "{r:#}");
        assert!(r["reasons"].as_array().unwrap().iter().any(|s| s.as_str().unwrap().contains("failure rate fell")), "{r:#}");
        let f = &r["failure"];
        assert!(f["low"].as_f64().unwrap() <= f["value"].as_f64().unwrap() && f["value"].as_f64().unwrap() <= f["high"].as_f64().unwrap());
    }
    let worse = readiness(&c, "worse");
    assert!(!worse.is_empty());
    for r in &worse {
        assert_eq!(r["level"], "suggest", "{r:#}");
        assert_eq!(trend(r, "failure").as_deref(), Some("up"), "{r:#}");
        assert!(r["reasons"].as_array().unwrap()[0].as_str().unwrap().starts_with("held at `suggest` by"), "{r:#}");
    }
    for r in readiness(&c, "quiet") {
        assert_eq!(r["level"], "not_enough_data", "{r:#}");
        assert!(r["reasons"][0].as_str().unwrap().contains("too little traffic"), "{r:#}");
    }
    // The weekly review shows the levels and why.
    let out = c.db.flywheel(&["report", "--project", "worse", "--since", "7d", "--out", "-"]);
    assert!(out.status.success(), "report: {}", stderr(&out));
    let md = stdout(&out);
    let section = md.split("## Agency readiness").nth(1).unwrap_or_else(|| panic!("no readiness section:\n{md}"));
    assert!(section.contains("| **suggest** |") && section.contains("held at `suggest` by"), "{section}");

    // A feature that does not exist is named, not an empty table.
    let out = c.db.flywheel(&["readiness", "--project", "better", "--feature", "nope"]);
    assert!(!out.status.success() && stderr(&out).contains("no traffic of feature `nope`"), "{}", stderr(&out));
}
