//! The weekly report end to end, through the real `flywheel report` on a seeded analyzer state
//! (tests/seed): the Markdown has the headline numbers, the patterns with their decisions and
//! examples; the HTML is self-contained and renders in headless Chromium (Debian `chromium`),
//! whose rendered text has the expected labels and numbers, and a screenshot is kept at
//! `$CARGO_TARGET_TMPDIR/report-screenshot.png`.

mod common;
mod seed;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{TestDb, scratch_dir, stderr, stdout};
use time::OffsetDateTime;

const CHROMIUM: &str = "/usr/bin/chromium";

fn chromium(profile: &Path) -> Command {
    assert!(Path::new(CHROMIUM).exists(), "{CHROMIUM} is missing: run ./setup.sh (it installs Debian's chromium)");
    let mut cmd = Command::new(CHROMIUM);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--enable-logging=stderr",
        "--v=0",
    ])
    .arg(format!("--user-data-dir={}", profile.display()));
    cmd
}

fn report(db: &TestDb, args: &[&str]) -> String {
    let mut all = vec!["report"];
    all.extend_from_slice(args);
    let out = db.flywheel(&all);
    assert!(out.status.success(), "flywheel {all:?}: {}", stderr(&out));
    stdout(&out)
}

#[tokio::test(flavor = "multi_thread")]
async fn markdown_report_has_the_review() {
    let db = TestDb::new("report_md");
    let store = db.migrated().await;
    seed::Seed::build(OffsetDateTime::now_utc()).insert(&store).await;
    let dir = scratch_dir("report-md");
    let path = dir.join("week.md");
    let summary = report(&db, &["--since", "7d", "--out", path.to_str().unwrap()]);
    assert!(summary.contains(&format!("{} calls, {} failing", seed::CURRENT_CALLS, seed::CURRENT_FAILING)), "{summary}");
    let md = std::fs::read_to_string(&path).unwrap();
    // Headline against the previous period.
    assert!(md.contains(&format!("| LLM calls | {} | {} |", seed::CURRENT_CALLS, seed::PREVIOUS_CALLS)), "{md}");
    let rate = format!("{:.1}%", 100.0 * seed::CURRENT_FAILING as f64 / seed::CURRENT_CALLS as f64);
    assert!(md.contains(&format!("| **failure rate** | **{rate}** |")), "{md}");
    assert!(md.contains("| `thumbs_down` rate (of traces) |"), "{md}");
    // Patterns by impact, with trend, triage and decision.
    let refund_row = md.lines().find(|l| l.contains(seed::REFUND_LABEL) && l.starts_with("| 1 |")).expect("the refund pattern ranks first");
    assert!(refund_row.contains("▲ growing") && refund_row.contains("**systemic**") && refund_row.contains("support (9)"), "{refund_row}");
    assert!(refund_row.contains("| +5 (4 → 9) |") && refund_row.contains("new (not triaged)"), "week over week, triage: {refund_row}");
    let trunc_row = md.lines().find(|l| l.contains(seed::TRUNC_LABEL) && l.starts_with("| ")).unwrap();
    assert!(trunc_row.contains("★ new") && trunc_row.contains("**one-off**"), "{trunc_row}");
    // Triage: the decision, who made it and the note. Rate limits are operations: their advice
    // is capacity and retries, never the prompt.
    let limit_row = md.lines().find(|l| l.contains("rate limited by the provider")).unwrap();
    assert!(limit_row.contains("fixed by test — raised the quota"), "{limit_row}");
    let operations = md.split("## Operations").nth(1).unwrap().split("\n## ").next().unwrap();
    assert!(operations.contains("rate limited by the provider"), "{operations}");
    // High severity gets examples whatever the lane; a cluster only users flagged gets advice.
    assert!(md.contains(". rate limited by the provider\n"), "the rate limits' section");
    let limit_section = md.split(". rate limited by the provider\n").nth(1).unwrap().split("\n### ").next().unwrap();
    assert!(limit_section.contains("Raise the provider tier or spread the load"), "{limit_section}");
    assert!(!limit_section.to_lowercase().contains("prompt"), "a rate limit is not fixed at the prompt: {limit_section}");
    let refund_advice = md.lines().find(|l| l.starts_with("- **suggested decision: systemic**")).unwrap();
    assert!(refund_advice.contains("Only users flagged these answers"), "{refund_advice}");
    // Top pattern sections with 3 examples, redacted text and trace ids.
    assert!(md.contains(&format!("### 1. {}", seed::REFUND_LABEL)));
    assert!(md.contains("- **suggested decision: systemic**"));
    let refund_section = md.split("### 1.").nth(1).unwrap().split("### 2.").next().unwrap();
    assert_eq!(refund_section.matches("**Example ").count(), 3, "{refund_section}");
    assert!(refund_section.contains("trace `000000a1"));
    assert!(refund_section.contains(&format!("**corrected by the user:** {}", seed::EDIT_TEXT)));
    assert_eq!(refund_section.matches("Open it: `flywheel tui --project shop --trace 000000a1").count(), 3, "{refund_section}");
    // Code stays code: the truncated answers are fenced blocks with their lines.
    let trunc_section = md.split(&format!(". {}", seed::TRUNC_LABEL)).nth(1).unwrap().split("\n## ").next().unwrap();
    assert!(trunc_section.contains("> ```\n> fn parse_week(s: &str) -> Option<(i32, u8)> {\n>     let (y, w)"), "{trunc_section}");
    for entity in ["&lt;", "&gt;", "&amp;", "&#39;", "&quot;"] {
        assert!(!md.contains(entity), "no HTML entity in Markdown: {entity}");
    }
    // Signal rates per feature, cost per pattern, resolved patterns.
    assert!(md.contains("## Signal rates per feature") && md.contains("| coding |") && md.contains("| support |"));
    assert!(md.contains("## Cost per pattern") && md.contains("$0.0225"), "9 calls × $0.0025");
    assert!(md.contains("## Resolved") && md.contains(seed::LANG_LABEL));
    assert!(!md.contains("<div") && !md.contains("<table"), "Markdown without raw HTML");

    // An ISO week, to standard output.
    let week = time::OffsetDateTime::now_utc().date().to_iso_week_date();
    let out = db.flywheel(&["report", "--week", &format!("{}-W{:02}", week.0, week.1), "--out", "-"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).starts_with(&format!("# Error analysis — shop — {}-W{:02}", week.0, week.1)), "{}", stdout(&out));
    let out = db.flywheel(&["report", "--week", "2026-47"]);
    assert!(!out.status.success() && stderr(&out).contains("2026-W47"), "{}", stderr(&out));

    // A previous period without calls is "no data", not 0 %: the last 130 minutes hold one
    // healthy call, the 130 before none.
    let out = db.flywheel(&["report", "--since", "130m", "--out", "-"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let md = stdout(&out);
    assert!(md.contains("| LLM calls | 1 | no data | — |") && md.contains("previous period has no calls"), "{md}");

    // A failure that fits no pattern has its own section, with its example as written.
    let mut extra = seed::Seed { now: Some(OffsetDateTime::now_utc()), ..Default::default() };
    let (t, sp) = (seed::trace_id(0xe5, 0), seed::span_id(0xe5, 0));
    extra.calls = seed::Seed::build(OffsetDateTime::now_utc()).calls.into_iter().filter(|c| c.trace_id == t).collect();
    extra.failure(
        &t,
        &sp,
        &["refusal"],
        serde_json::json!({"request": "Show me <b>bold</b> & more", "output": "I can't help with <that> & *this*."}),
        None,
    );
    store.insert("failures", &extra.failures).await.unwrap();
    let out = db.flywheel(&["report", "--since", "7d", "--out", "-"]);
    let md = stdout(&out);
    let section = md.split("## Failures in no pattern").nth(1).expect("the section").split("\n## ").next().unwrap();
    assert!(section.contains("1 failing call of this period fit no pattern") && section.contains("`refusal` 1"), "{section}");
    assert!(section.contains(r"I can't help with \<that\> & \*this\*."), "escaped, not entities: {section}");
    assert!(section.contains(&format!("flywheel tui --project shop --trace {t}")), "{section}");
}

#[tokio::test(flavor = "multi_thread")]
async fn html_report_renders_in_chromium() {
    let db = TestDb::new("report_html");
    let store = db.migrated().await;
    seed::Seed::build(OffsetDateTime::now_utc()).insert(&store).await;
    let dir = scratch_dir("report-html");
    let path = dir.join("week.html");
    report(&db, &["--since", "7d", "--format", "html", "--out", path.to_str().unwrap()]);
    let html = std::fs::read_to_string(&path).unwrap();
    let without_namespace = html.replace("xmlns=\"http://www.w3.org/2000/svg\"", "");
    for external in ["<script", "<link", "src=", "@import", "url(", "http://", "https://"] {
        assert!(!without_namespace.contains(external), "self-contained: found `{external}`");
    }
    assert!(html.matches("<svg").count() >= 3, "inline SVG charts");

    // The rendered text.
    let out = chromium(&dir.join("profile-dom")).arg("--dump-dom").arg(format!("file://{}", path.display())).output().unwrap();
    assert!(out.status.success(), "chromium --dump-dom: {}", stderr(&out));
    let dom = stdout(&out);
    let log = stderr(&out);
    for bad in ["Failed to load resource", "Uncaught", "CONSOLE(", "ERR_FILE_NOT_FOUND"] {
        assert!(!log.contains(bad), "chromium reported `{bad}`: {log}");
    }
    for expected in
        [seed::REFUND_LABEL, seed::TRUNC_LABEL, seed::LANG_LABEL, "Suggested decision", "systemic", "one-off", "failure rate per day"]
    {
        assert!(dom.contains(&html_escape(expected)), "rendered page lacks `{expected}`");
    }
    assert!(dom.contains(&format!("<div class=\"value\">{}</div>", seed::CURRENT_CALLS)), "calls headline");
    let rate = format!("{:.1}%", 100.0 * seed::CURRENT_FAILING as f64 / seed::CURRENT_CALLS as f64);
    assert!(dom.contains(&format!("<div class=\"value\">{rate}</div>")), "failure rate headline {rate}");
    assert!(dom.contains(seed::EDIT_TEXT));
    // The headline keeps the tiles a review acts on: rate, failing calls, calls, cost and at
    // most three negative signals.
    let tiles = dom.matches("<div class=\"kpi\">").count();
    assert!((4..=7).contains(&tiles), "{tiles} headline tiles");
    for expected in
        ["open it: ", "flywheel tui --project shop --trace 000000a1", "fixed by test — raised the quota", "+5 (4 → 9)", "week over week"]
    {
        assert!(dom.contains(expected), "rendered page lacks `{expected}`");
    }
    assert!(dom.contains("<pre><code>fn parse_week"), "code as code");
    // Rate limits sit in the operations lane, and their advice is capacity and retries.
    let operations = dom.split("<h2>Operations</h2>").nth(1).expect("the operations lane").split("<h2>").next().unwrap();
    assert!(operations.contains("rate limited by the provider"), "{operations}");
    assert!(dom.contains("Raise the provider tier or spread the load"), "the rate limit's advice follows its cause");

    // A period after one without calls, and a failure that fits no pattern: the headline and the
    // chart say "no data" (never 0 %), and the failure has its own section.
    let mut extra = seed::Seed { now: Some(OffsetDateTime::now_utc()), ..Default::default() };
    let (t, sp) = (seed::trace_id(0xe5, 0), seed::span_id(0xe5, 0));
    extra.calls = seed::Seed::build(OffsetDateTime::now_utc()).calls.into_iter().filter(|c| c.trace_id == t).collect();
    extra.failure(&t, &sp, &["refusal"], serde_json::json!({"request": "Show me", "output": "I can't help with that."}), None);
    store.insert("failures", &extra.failures).await.unwrap();
    let recent = dir.join("recent.html");
    report(&db, &["--since", "130m", "--format", "html", "--out", recent.to_str().unwrap()]);
    let out = chromium(&dir.join("profile-recent")).arg("--dump-dom").arg(format!("file://{}", recent.display())).output().unwrap();
    assert!(out.status.success(), "chromium --dump-dom: {}", stderr(&out));
    let dom = stdout(&out);
    assert!(dom.contains("previous period: no data"), "the chart draws no previous line at 0 %");
    assert!(!dom.contains("<div class=\"value\">0.0%</div>"), "no 0 % headline for a period without calls");
    let unclustered = dom.split("<h2>Failures in no pattern</h2>").nth(1).expect("the no-pattern section").split("<h2>").next().unwrap();
    assert!(
        unclustered.contains("1 failing call of this period fit no pattern") && unclustered.contains("<code>refusal</code> 1"),
        "{unclustered}"
    );
    assert!(
        unclustered.contains("I can't help with that.") && unclustered.contains(&format!("flywheel tui --project shop --trace {t}")),
        "{unclustered}"
    );

    // The screenshot, kept for people to look at.
    let shot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("report-screenshot.png");
    let _ = std::fs::remove_file(&shot);
    let out = chromium(&dir.join("profile-shot"))
        .arg(format!("--screenshot={}", shot.display()))
        .arg("--window-size=1280,2000")
        .arg("--hide-scrollbars")
        .arg(format!("file://{}", path.display()))
        .output()
        .unwrap();
    assert!(out.status.success(), "chromium --screenshot: {}", stderr(&out));
    let png = std::fs::read(&shot).unwrap_or_else(|e| panic!("no screenshot at {}: {e}; {}", shot.display(), stderr(&out)));
    assert!(png.starts_with(b"\x89PNG") && png.len() > 50_000, "a real page screenshot ({} bytes)", png.len());
    eprintln!("report screenshot: {}", shot.display());
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}
