//! The review as one self-contained HTML file: inline CSS, inline SVG charts, no script, no
//! font or image fetched from anywhere, readable in light mode and printable.

use flywheel_schemas::failure::Lane;
use std::fmt::Write;

use super::charts;
use super::data::{Example, PatternView, Review};
use super::{baseline_note, before, change, change_pts, counts, headline_signals, int, pct, trend, usd, versus};

pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const CSS: &str = r#"
:root { --ink:#1e293b; --muted:#64748b; --line:#e2e8f0; --accent:#2563eb; --bad:#dc2626; --good:#16a34a; --bg:#f8fafc; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; color: var(--ink); background: var(--bg); }
main { max-width: 1180px; margin: 0 auto; padding: 28px 32px 64px; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 19px; margin: 36px 0 12px; padding-bottom: 6px; border-bottom: 1px solid var(--line); }
h3 { font-size: 16px; margin: 0 0 6px; }
.sub { color: var(--muted); margin: 0 0 20px; }
.kpis { display: grid; grid-template-columns: repeat(auto-fill, minmax(170px, 1fr)); gap: 12px; }
.kpi { background: #fff; border: 1px solid var(--line); border-radius: 10px; padding: 12px 14px; }
.kpi .name { color: var(--muted); font-size: 13px; }
.kpi .value { font-size: 24px; font-weight: 650; }
.kpi .delta { font-size: 13px; color: var(--muted); }
.up { color: var(--bad); } .down { color: var(--good); }
table { border-collapse: collapse; width: 100%; background: #fff; border: 1px solid var(--line); border-radius: 10px; overflow: hidden; font-size: 14px; }
th, td { padding: 7px 10px; border-bottom: 1px solid var(--line); text-align: left; vertical-align: top; }
th { background: #f1f5f9; font-weight: 600; font-size: 13px; color: #334155; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr:last-child td { border-bottom: none; }
code, .id { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 12.5px; }
.chart { background: #fff; border: 1px solid var(--line); border-radius: 10px; padding: 8px; margin: 12px 0; }
.card { background: #fff; border: 1px solid var(--line); border-radius: 10px; padding: 16px 18px; margin: 14px 0; }
.meta { color: var(--muted); font-size: 13px; }
.tag { display: inline-block; white-space: nowrap; padding: 1px 8px; border-radius: 999px; font-size: 12px; font-weight: 600; background: #e2e8f0; }
.tag.systemic { background: #fee2e2; color: #991b1b; } .tag.one-off { background: #dcfce7; color: #166534; } .tag.watch { background: #fef9c3; color: #854d0e; }
.tag.new, .tag.growing { background: #fee2e2; color: #991b1b; } .tag.shrinking, .tag.resolved { background: #dcfce7; color: #166534; }
.terms code { background: #f1f5f9; padding: 1px 6px; border-radius: 5px; margin-right: 4px; }
.example { border-left: 3px solid var(--line); padding: 6px 12px; margin: 10px 0; }
.example p { margin: 3px 0; }
.example .who { font-weight: 600; color: #334155; }
.example pre { background: #f1f5f9; border-radius: 6px; padding: 8px 10px; margin: 3px 0; overflow-x: auto; font-size: 12.5px; }
.example .open code { background: #f1f5f9; padding: 1px 6px; border-radius: 5px; }
footer { color: var(--muted); font-size: 12px; margin-top: 40px; }
@media print { body { background: #fff; } main { padding: 0; } }
"#;

fn tag(class: &str, text: &str) -> String {
    format!("<span class=\"tag {}\">{}</span>", esc(class), esc(text))
}

/// A change, coloured red when it is worse (higher failure or signal rate, higher cost).
fn delta(text: String, worse_when_up: bool) -> String {
    let class = match text.chars().next() {
        Some('+') if worse_when_up => "up",
        Some('−') if worse_when_up => "down",
        _ => "",
    };
    format!("<span class=\"{class}\">{}</span>", esc(&text))
}

/// One labelled text of an example: a paragraph, or a code block when it is code.
fn example_text(h: &mut String, who: &str, text: &str) {
    if Example::is_code(text) {
        let _ = writeln!(h, "<p><span class=\"who\">{}:</span></p><pre><code>{}</code></pre>", esc(who), esc(text));
    } else {
        let _ = writeln!(h, "<p><span class=\"who\">{}:</span> {}</p>", esc(who), esc(text));
    }
}

fn example(h: &mut String, e: &Example) {
    h.push_str("<div class=\"example\">\n");
    let _ = writeln!(
        h,
        "<p class=\"meta\">trace <span class=\"id\">{}</span> · {} · {} · {} · {}</p>",
        esc(&e.trace_id),
        esc(if e.feature.is_empty() { "(no feature)" } else { &e.feature }),
        esc(&e.model),
        esc(&e.time),
        esc(&e.reasons.join(", "))
    );
    example_text(h, "user", &e.request);
    example_text(h, "answer", &e.output);
    if let Some(x) = &e.expected {
        example_text(h, "corrected by the user", x);
    }
    let _ = writeln!(h, "<p class=\"meta open\">open it: <code>{}</code></p>", esc(&e.open));
    h.push_str("</div>\n");
}

/// One table row per pattern, most impactful first.
fn pattern_table(h: &mut String, patterns: &[&PatternView]) {
    h.push_str("<table>\n<tr><th class=\"num\">#</th><th>pattern</th><th>trend</th><th>change</th><th>triage</th><th class=\"num\">calls</th><th class=\"num\">users (share)</th><th>features</th><th>models</th><th class=\"num\">cost</th><th>decision</th></tr>\n");
    for (i, v) in patterns.iter().enumerate() {
        let p = &v.pattern;
        let _ = writeln!(
            h,
            "<tr><td class=\"num\">{}</td><td><strong>{}</strong><br><span class=\"id\">{}</span></td><td>{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{} ({})</td><td>{}</td><td>{}</td><td class=\"num\">{}</td><td>{}</td></tr>",
            i + 1,
            esc(&p.label),
            esc(&p.pattern_id),
            tag(&p.trend, &trend(&p.trend)),
            esc(&v.change()),
            esc(&v.triage_line()),
            int(p.calls.max(p.size)),
            int(p.users),
            pct(v.share_of_users),
            esc(&counts(&v.spread.features)),
            esc(&counts(&v.spread.models)),
            usd(p.cost_usd),
            tag(v.decision.name(), v.decision.name())
        );
    }
    h.push_str("</table>\n");
}

pub fn render(r: &Review) -> String {
    let mut h = String::new();
    let (c, p) = (&r.current, &r.previous);
    let title = format!("Error analysis — {} — {}", r.project, r.period.label);
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>{}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<main>\n",
        esc(&title)
    );
    let _ = writeln!(h, "<h1>{}</h1>", esc(&title));
    let _ = writeln!(
        h,
        "<p class=\"sub\">{} → {} (UTC), compared with the {} days before · generated by flywheel on {}</p>",
        r.period.start.date(),
        r.period.end.date(),
        r.period.len().whole_days().max(1),
        r.generated_at.date()
    );

    h.push_str("<h2>Headline</h2>\n<div class=\"kpis\">\n");
    let kpi = |h: &mut String, name: &str, value: String, before: String, d: String| {
        let _ = writeln!(
            h,
            "<div class=\"kpi\"><div class=\"name\">{}</div><div class=\"value\">{}</div><div class=\"delta\">{} · before {}</div></div>",
            esc(name),
            esc(&value),
            d,
            esc(&before)
        );
    };
    // The tiles a review acts on: the failure rate and what it is made of, the cost, and the
    // users' own verdict (the negative signals that moved); the rest is in the tables below.
    let rate_now = if c.has_data() { pct(c.failure_rate()) } else { "no data".into() };
    kpi(
        &mut h,
        "failure rate",
        rate_now,
        before(r, pct(p.failure_rate())),
        delta(versus(r, change_pts(c.failure_rate(), p.failure_rate())), true),
    );
    kpi(
        &mut h,
        "failing calls",
        int(c.failing_calls),
        before(r, int(p.failing_calls)),
        delta(versus(r, change(c.failing_calls as f64, p.failing_calls as f64)), true),
    );
    kpi(&mut h, "LLM calls", int(c.calls), before(r, int(p.calls)), delta(versus(r, change(c.calls as f64, p.calls as f64)), false));
    kpi(&mut h, "cost", usd(c.cost_usd), before(r, usd(p.cost_usd)), delta(versus(r, change(c.cost_usd, p.cost_usd)), true));
    for kind in headline_signals(r) {
        let (now, then) = (c.signal_rates.get(&kind).copied().unwrap_or(0.0), p.signal_rates.get(&kind).copied().unwrap_or(0.0));
        kpi(&mut h, &format!("{kind} rate"), pct(now), before(r, pct(then)), delta(versus(r, change_pts(now, then)), true));
    }
    h.push_str("</div>\n");
    if let Some(note) = baseline_note(r) {
        let _ = writeln!(h, "<p class=\"meta\">{}</p>", esc(&note));
    }
    let _ = writeln!(h, "<div class=\"chart\">{}</div>", charts::daily_failure_rate(&r.daily));

    let live = |lane: Lane| -> Vec<&PatternView> {
        r.patterns.iter().filter(|v| v.pattern.trend != "resolved" && Lane::of(&v.pattern) == lane).collect()
    };
    let (active, operations) = (live(Lane::Behaviour), live(Lane::Operations));
    let resolved: Vec<&PatternView> = r.patterns.iter().filter(|v| v.pattern.trend == "resolved").collect();
    let back = super::regressions(r);
    if !back.is_empty() {
        h.push_str("<h2>Came back after a fix</h2>\n<ul>\n");
        for v in back {
            let p = &v.pattern;
            h.push_str(&format!(
                "<li><strong>{}</strong> <code>{}</code> — {}; {} failing calls, {} users</li>\n",
                esc(&p.label),
                esc(&p.pattern_id),
                esc(&p.lifecycle()),
                p.size,
                p.users
            ));
        }
        h.push_str("</ul>\n");
    }
    h.push_str("<h2>Patterns by impact</h2>\n");
    if active.is_empty() {
        h.push_str("<p>No active failure pattern of the AI's behaviour. Run <code>flywheel analyze</code> if this is unexpected.</p>\n");
    } else {
        let bars: Vec<(String, f64, String)> = active
            .iter()
            .take(12)
            .map(|v| {
                (
                    v.pattern.label.clone(),
                    v.pattern.users as f64,
                    format!(
                        "{} user{} · {} calls",
                        v.pattern.users,
                        if v.pattern.users == 1 { "" } else { "s" },
                        v.pattern.calls.max(v.pattern.size)
                    ),
                )
            })
            .collect();
        let _ = writeln!(h, "<div class=\"chart\">{}</div>", charts::bars("users affected per pattern", &bars));
        pattern_table(&mut h, &active);
    }

    if !operations.is_empty() {
        h.push_str("<h2>Operations</h2>\n<p>Rate limits, timeouts, unavailable services, latency and cost outliers: infrastructure, fixed by configuration rather than prompts, and not exported as behaviour evals.</p>\n");
        pattern_table(&mut h, &operations);
    }

    let top: Vec<&&PatternView> = active.iter().chain(operations.iter()).filter(|v| !v.examples.is_empty()).collect();
    if !top.is_empty() {
        h.push_str("<h2>Top and high-severity patterns</h2>\n");
    }
    for (i, v) in top.iter().enumerate() {
        let p = &v.pattern;
        h.push_str("<div class=\"card\">\n");
        let _ = writeln!(h, "<h3>{}. {} {}</h3>", i + 1, esc(&p.label), tag(&p.trend, &trend(&p.trend)));
        let _ = writeln!(
            h,
            "<p class=\"meta\"><span class=\"id\">{}</span> · triage: {} · week over week: {} · severity {:.2} · cost {} · mean latency {:.0} ms</p>",
            esc(&p.pattern_id),
            esc(&v.triage_line()),
            esc(&v.change()),
            p.severity,
            usd(p.cost_usd),
            p.mean_latency_ms
        );
        if !p.description.is_empty() {
            let _ = writeln!(h, "<p>{}</p>", esc(&p.description));
        }
        if !p.terms.is_empty() {
            let terms: String = p.terms.iter().map(|t| format!("<code>{}</code>", esc(t))).collect();
            let _ = writeln!(h, "<p class=\"terms\">{terms}</p>");
        }
        let _ = writeln!(
            h,
            "<p>{} users ({} of the period's users) · features: {} · models: {}</p>",
            int(p.users),
            pct(v.share_of_users),
            esc(&counts(&v.spread.features)),
            esc(&counts(&v.spread.models))
        );
        let _ = writeln!(
            h,
            "<p><strong>Suggested decision:</strong> {} {}</p>",
            tag(v.decision.name(), v.decision.name()),
            esc(v.decision.why())
        );
        for e in &v.examples {
            example(&mut h, e);
        }
        h.push_str("</div>\n");
    }

    let u = &r.unclustered;
    if u.failing_calls > 0 {
        h.push_str("<h2>Failures in no pattern</h2>\n<div class=\"card\">\n");
        let reasons: Vec<String> = u.reasons.iter().take(8).map(|(k, n)| format!("<code>{}</code> {n}", esc(k))).collect();
        let _ = writeln!(
            h,
            "<p>{} failing call{} of this period fit no pattern (one-offs, or causes too rare to group yet). Reasons: {}.</p>",
            int(u.failing_calls),
            if u.failing_calls == 1 { "" } else { "s" },
            reasons.join(", ")
        );
        for e in &u.examples {
            example(&mut h, e);
        }
        h.push_str("</div>\n");
    }

    if !r.readiness.is_empty() {
        h.push_str("<h2>Agency readiness</h2>\n<p class=\"meta\">How much autonomy each feature's last two weeks support — suggest (people rewrite a lot), draft (light edits), act (accepted as is, stable) — from 8 weeks of traffic; <code>flywheel readiness</code> gives the weekly figures.</p>\n");
        h.push_str("<table><tr><th>feature</th><th>level</th><th>traces</th><th>regenerate</th><th>negative</th><th>failure</th><th>why</th></tr>\n");
        for f in &r.readiness {
            let feature = if f.feature.is_empty() { "(no feature)" } else { f.feature.as_str() };
            h.push_str(&format!(
                "<tr><td>{}</td><td class=\"level\"><b>{}</b></td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td></tr>\n",
                esc(feature),
                f.level.as_str(),
                f.traces,
                pct(f.regenerate.value),
                pct(f.negative.value),
                pct(f.failure.value),
                esc(&f.reasons.join("; "))
            ));
        }
        h.push_str("</table>\n");
    }

    if !r.inconsistencies.is_empty() {
        h.push_str("<h2>Inconsistent answers</h2>\n<p class=\"meta\">Questions users asked again and again whose answers disagree on the facts (the answer users accepted, else the most frequent, in bold).</p>\n");
        h.push_str("<table><tr><th>question</th><th>asked</th><th>answers</th></tr>\n");
        for c in &r.inconsistencies {
            let answers: Vec<String> = c
                .answers
                .iter()
                .map(|s| {
                    let facts = esc(&if s.facts.is_empty() { "(no fact)".to_string() } else { s.facts.join(", ") });
                    let facts = if s.reference { format!("<b>{facts}</b>") } else { facts };
                    format!("{facts} ({}) <span class=\"meta\">{}</span>", s.calls, esc(&s.text))
                })
                .collect();
            h.push_str(&format!(
                "<tr><td>“{}”</td><td class=\"num\">{} in {} sessions</td><td>{}</td></tr>\n",
                esc(&c.question),
                c.asked,
                c.sessions,
                answers.join("<br>")
            ));
        }
        h.push_str("</table>\n");
    }

    if let Some(cmp) = &r.releases {
        h.push_str("<h2>Releases</h2>\n<table><tr><th>release</th><th>calls</th><th>failure rate</th></tr>\n");
        for g in &cmp.groups {
            h.push_str(&format!(
                "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>\n",
                esc(&g.value),
                g.calls,
                pct(g.failing_calls as f64 / g.calls.max(1) as f64)
            ));
        }
        h.push_str("</table>\n");
        let differences = cmp.differences();
        if differences.is_empty() {
            h.push_str("<p>No rate differs significantly between releases.</p>\n");
        } else {
            h.push_str("<ul>\n");
            for d in differences {
                h.push_str(&format!("<li>{}</li>\n", esc(&d)));
            }
            h.push_str("</ul>\n");
        }
        h.push_str(&format!(
            "<p class=\"meta\">Method: {}. <code>flywheel compare --by service.version</code> gives the whole table.</p>\n",
            esc(&cmp.method)
        ));
    }
    h.push_str("<h2>Signal rates per feature</h2>\n");
    if r.features.is_empty() {
        h.push_str("<p>No calls in this period.</p>\n");
    } else {
        h.push_str("<table>\n<tr><th>feature</th><th class=\"num\">calls</th><th class=\"num\">failure rate</th>");
        for k in &r.signal_kinds {
            let _ = write!(h, "<th class=\"num\">{}</th>", esc(k));
        }
        h.push_str("</tr>\n");
        for f in &r.features {
            let rate = if f.calls == 0 { 0.0 } else { f.failing_calls as f64 / f.calls as f64 };
            let _ = write!(
                h,
                "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>",
                esc(if f.feature.is_empty() { "(none)" } else { &f.feature }),
                int(f.calls),
                pct(rate)
            );
            for k in &r.signal_kinds {
                let _ = write!(h, "<td class=\"num\">{}</td>", pct(f.rates.rate(k)));
            }
            h.push_str("</tr>\n");
        }
        h.push_str("</table>\n");
    }

    if !active.is_empty() || !operations.is_empty() {
        h.push_str("<h2>Cost per pattern</h2>\n");
        let mut by_cost: Vec<&PatternView> = active.iter().chain(operations.iter()).copied().collect();
        by_cost.sort_by(|a, b| b.pattern.cost_usd.total_cmp(&a.pattern.cost_usd));
        let bars: Vec<(String, f64, String)> =
            by_cost.iter().take(12).map(|v| (v.pattern.label.clone(), v.pattern.cost_usd, usd(v.pattern.cost_usd))).collect();
        let _ = writeln!(h, "<div class=\"chart\">{}</div>", charts::bars("cost per pattern (USD)", &bars));
        h.push_str("<table>\n<tr><th>pattern</th><th class=\"num\">calls</th><th class=\"num\">cost</th><th class=\"num\">cost per call</th><th class=\"num\">mean latency</th></tr>\n");
        for v in by_cost {
            let p = &v.pattern;
            let calls = p.calls.max(p.size);
            let _ = writeln!(
                h,
                "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{:.0} ms</td></tr>",
                esc(&p.label),
                int(calls),
                usd(p.cost_usd),
                usd(p.cost_usd / calls.max(1) as f64),
                p.mean_latency_ms
            );
        }
        h.push_str("</table>\n");
    }

    if !resolved.is_empty() {
        h.push_str("<h2>Resolved</h2>\n<ul>\n");
        for v in resolved {
            let _ = writeln!(
                h,
                "<li>{} <span class=\"id\">{}</span> (last seen {})</li>",
                esc(&v.pattern.label),
                esc(&v.pattern.pattern_id),
                v.pattern.last_seen.date()
            );
        }
        h.push_str("</ul>\n");
    }
    let _ = writeln!(h, "<footer>flywheel · project {} · {}</footer>\n</main>\n</body>\n</html>", esc(&r.project), esc(&r.period.label));
    h
}
