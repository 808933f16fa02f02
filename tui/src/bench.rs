//! `flywheel bench tui`: how long the UI takes to show its screens on a large database.
//!
//! The data is generated inside the engine (`INSERT … SELECT … FROM numbers(N)`, nothing
//! travels) into a database of its own, once: a later run reuses it when it already holds the
//! requested number of spans. Shape: `calls` traces over the last 7 days, each with one LLM call
//! and `spans / calls - 1` other spans (an agent root, tools, retrievals); sessions of 5 turns;
//! 20,000 users; every 10th call failing, the failures spread over 40 patterns; thumbs-down,
//! edit and regenerate signals on some traces.
//!
//! Each step is measured as a user sees it: the queries, building the view model, and
//! rendering the screen (120×40, on a `TestBackend`). Steps: opening the patterns view, then
//! moving to a pattern, a member's trace, its session and the overview.

use std::fmt::Write as _;
use std::time::Instant;

use flywheel_schemas::migrate::{self, MigrateOptions};
use flywheel_schemas::rows::PatternRow;
use flywheel_schemas::{Store, StoreError};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use time::OffsetDateTime;

use crate::app::{App, Settings, View};
use crate::model::{Impact, Window};
use crate::query::{self as data, Payload, Request};
use crate::theme::Theme;

pub const PROJECT: &str = "bench";
const PATTERNS: u64 = 40;
const WIDTH: u16 = 120;
const HEIGHT: u16 = 40;

#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub spans: u64,
    pub calls: u64,
    pub repeat: usize,
    pub database: String,
}

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Invalid(String),
}

/// One measured step: milliseconds of each repetition.
struct Step {
    name: &'static str,
    target_ms: Option<f64>,
    ms: Vec<f64>,
}

impl Step {
    fn p50(&self) -> f64 {
        let mut v = self.ms.clone();
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(0.0)
    }

    fn max(&self) -> f64 {
        self.ms.iter().cloned().fold(0.0, f64::max)
    }
}

pub async fn run(store: &Store, opts: &BenchOptions) -> Result<String, BenchError> {
    if opts.calls == 0 || opts.spans < opts.calls {
        return Err(BenchError::Invalid("--spans must be at least --calls, and --calls positive".into()));
    }
    if !opts.database.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(BenchError::Invalid(format!("--database {}: letters, digits and _ only", opts.database)));
    }
    store.execute(&format!("CREATE DATABASE IF NOT EXISTS {}", opts.database)).await?;
    let db = store.with_database(&opts.database);
    migrate::migrate(&db, &MigrateOptions::default()).await?;
    let mut out = String::new();
    let existing: u64 = db.query("SELECT count() FROM spans WHERE project_id = ?").bind(PROJECT).fetch_one().await?;
    let calls_now: u64 = db.query("SELECT count() FROM llm_calls WHERE project_id = ?").bind(PROJECT).fetch_one().await?;
    if existing == opts.spans && calls_now == opts.calls {
        writeln!(out, "reusing the data of database `{}`", opts.database).ok();
    } else {
        let started = Instant::now();
        generate(&db, opts).await?;
        writeln!(out, "generated in {:.1} s (in the engine: INSERT … SELECT FROM numbers)", started.elapsed().as_secs_f64()).ok();
    }
    let counts = describe(&db).await?;
    writeln!(out, "database `{}` on {}: {counts}", opts.database, db.url()).ok();
    let load_before = load_average();
    let steps = measure(&db, opts.repeat.max(1)).await?;
    writeln!(out, "load average (1 min) before/after: {load_before} / {} on {} cores", load_average(), cores()).ok();
    writeln!(out, "{} repetitions per step; each = queries + view model + render at {WIDTH}×{HEIGHT}", opts.repeat.max(1)).ok();
    writeln!(out, "{:<28} {:>8} {:>8}  target", "step", "p50 ms", "max ms").ok();
    for s in &steps {
        let verdict = match s.target_ms {
            Some(t) if s.max() < t => format!("< {t:.0} ms ok"),
            Some(t) if s.p50() < t => format!("< {t:.0} ms (p50 ok, max over)"),
            Some(t) => format!("< {t:.0} ms MISSED"),
            None => "-".into(),
        };
        writeln!(out, "{:<28} {:>8.1} {:>8.1}  {verdict}", s.name, s.p50(), s.max()).ok();
    }
    Ok(out)
}

/// The machine's 1-minute load average: figures on a busy machine are not comparable.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg").ok().and_then(|l| l.split_whitespace().next().map(String::from)).unwrap_or_else(|| "?".into())
}

fn cores() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

async fn describe(db: &Store) -> Result<String, StoreError> {
    let mut parts = vec![];
    for table in ["spans", "llm_calls", "signals", "failures", "patterns", "pattern_members"] {
        let n: u64 = db.query(&format!("SELECT count() FROM {table} WHERE project_id = ?")).bind(PROJECT).fetch_one().await?;
        parts.push(format!("{n} {table}"));
    }
    Ok(parts.join(", "))
}

/// SQL expressions of the generated ids, shared by every table so that they join.
fn trace_of(n: &str) -> String {
    format!("lower(hex(MD5(toString({n}))))")
}

fn span_of(n: &str, k: &str) -> String {
    format!("substring(lower(hex(MD5(concat('s', toString({n}), '-', toString({k}))))), 1, 16)")
}

async fn generate(db: &Store, opts: &BenchOptions) -> Result<(), StoreError> {
    for table in ["spans", "llm_calls", "signals", "failures", "patterns", "pattern_members", "pattern_triage"] {
        db.execute(&format!("TRUNCATE TABLE IF EXISTS {table}")).await?;
    }
    let now = OffsetDateTime::now_utc();
    let base = (now - time::Duration::days(7)).unix_timestamp_nanos() as i64;
    let per_trace = opts.spans / opts.calls;
    // Nanoseconds between two traces: the calls fill the last 7 days.
    let step = (7 * 86_400 * 1_000_000_000i64) / opts.calls as i64;
    let start = |n: &str, k: &str| format!("fromUnixTimestamp64Nano(toInt64({base} + {n} * {step} + {k} * 1000000))");
    let texts = "['Can I get a refund after 60 days on order ', 'Write a function that parses ISO dates for ticket ', \
                 'Why was my card charged twice for invoice ', 'Translate the release notes into German, batch ', \
                 'Summarise the incident report number ']";
    let chunk = 1_000_000u64;
    // llm_calls, one per trace: span k = 1 of the trace.
    let mut from = 0;
    while from < opts.calls {
        let n = chunk.min(opts.calls - from);
        db.execute(&format!(
            "INSERT INTO llm_calls (project_id, trace_id, span_id, parent_span_id, session_id, user_id, feature, service_name, operation, \
             provider, request_model, response_model, start_time, end_time, duration_ns, input_messages, output_messages, input_text, \
             output_text, finish_reasons, input_tokens, output_tokens, cost_usd, cost_source, status, error_type, error_message, convention, ingested_at) \
             SELECT 'bench', {trace}, {span1}, {span0}, concat('sess-', toString(intDiv(number, 5))), concat('user-', toString(intDiv(number, 5) % 20000)), \
             ['support', 'coding', 'search'][number % 3 + 1], 'bench-app', 'chat', 'openai', \
             ['gpt-4o-mini', 'gpt-4o', 'claude-sonnet'][number % 3 + 1] AS model, model, {start1} AS st, \
             st + toIntervalMillisecond(dur_ms) AS et, dur_ms * 1000000, \
             concat('[{{\"role\":\"system\",\"parts\":[{{\"type\":\"text\",\"content\":\"You are the assistant of Shop.\"}}]}},\
{{\"role\":\"user\",\"parts\":[{{\"type\":\"text\",\"content\":\"', q, '\"}}]}}]'), \
             concat('[{{\"role\":\"assistant\",\"parts\":[{{\"type\":\"text\",\"content\":\"', a, '\"}}],\"finish_reason\":\"stop\"}}]'), \
             q, a, [if(number % 10 = 0 AND number % 30 = 0, 'length', 'stop')], 200 + number % 800, 50 + number % 400, \
             (200 + number % 800) * 0.00000015 + (50 + number % 400) * 0.0000006, 'prices', \
             if(number % 10 = 0 AND number % 20 = 0, 'error', 'ok'), if(number % 10 = 0 AND number % 20 = 0, 'RateLimitError', ''), \
             if(number % 10 = 0 AND number % 20 = 0, '429 Too Many Requests', ''), 'otel_genai', now64(9) \
             FROM (SELECT number, 300 + number % 2700 AS dur_ms, concat({texts}[number % 5 + 1], toString(number)) AS q, \
                   concat('Answer number ', toString(number), ': yes, refunds are possible up to 90 days.') AS a \
                   FROM numbers({from}, {n}))",
            trace = trace_of("number"),
            span1 = span_of("number", "1"),
            span0 = span_of("number", "0"),
            start1 = start("number", "1"),
        ))
        .await?;
        from += n;
    }
    // spans: per_trace per trace; k = 0 is the root, k = 1 the LLM call, the rest tools.
    let mut from = 0;
    while from < opts.spans {
        let n = chunk.min(opts.spans - from);
        db.execute(&format!(
            "INSERT INTO spans (project_id, trace_id, span_id, parent_span_id, name, kind, start_time, end_time, duration_ns, status_code, \
             service_name, scope_name, ingested_at) \
             SELECT 'bench', {trace}, {span}, if(k = 0, '', {root}), \
             multiIf(k = 0, 'agent.run', k = 1, 'chat gpt-4o-mini', k % 2 = 0, 'tool lookup_policy', 'retrieve documents'), \
             if(k = 0, 'server', 'internal'), {st} AS s, s + toIntervalMillisecond(d), d * 1000000, \
             if(k = 1 AND t % 10 = 0 AND t % 20 = 0, 'ERROR', 'OK'), 'bench-app', 'bench', now64(9) \
             FROM (SELECT intDiv(number, {per_trace}) AS t, number % {per_trace} AS k, \
                   if(k = 0, 3000 + t % 2700, if(k = 1, 300 + t % 2700, 5 + k * 3)) AS d FROM numbers({from}, {n}))",
            trace = trace_of("t"),
            span = span_of("t", "k"),
            root = span_of("t", "0"),
            st = start("t", "k"),
        ))
        .await?;
        from += n;
    }
    // Failures: every 10th call, in PATTERNS patterns.
    let failing = "number % 10 = 0";
    let pattern = format!("concat('bench-p', leftPad(toString(intDiv(number, 10) % {PATTERNS}), 2, '0'))");
    db.execute(&format!(
        "INSERT INTO failures (project_id, trace_id, span_id, session_id, user_id, feature, model, call_time, reasons, categories, severity, \
         details, run_id, detected_at) \
         SELECT 'bench', {trace}, {span1}, concat('sess-', toString(intDiv(number, 5))), concat('user-', toString(intDiv(number, 5) % 20000)), \
         ['support', 'coding', 'search'][number % 3 + 1], ['gpt-4o-mini', 'gpt-4o', 'claude-sonnet'][number % 3 + 1], {start1}, \
         multiIf(number % 20 = 0, ['error_status'], number % 30 = 0, ['finish_reason:length'], ['thumbs_down', 'edit']), \
         multiIf(number % 20 = 0, ['explicit'], number % 30 = 0, ['explicit'], ['implicit']), 0.5 + (number % 5) / 10, \
         toJSONString(map('request', concat({texts}[number % 5 + 1], toString(number)), \
                          'output', concat('Answer number ', toString(number), ': yes, refunds are possible up to 90 days.'))), \
         'bench-run', now64(9) \
         FROM numbers({calls}) WHERE {failing}",
        trace = trace_of("number"),
        span1 = span_of("number", "1"),
        start1 = start("number", "1"),
        calls = opts.calls,
    ))
    .await?;
    db.execute(&format!(
        "INSERT INTO pattern_members (project_id, pattern_id, run_id, trace_id, span_id, call_time, distance, added_at) \
         SELECT 'bench', {pattern}, 'bench-run', {trace}, {span1}, {start1}, (number % 997) / 997, now64(9) \
         FROM numbers({calls}) WHERE {failing}",
        trace = trace_of("number"),
        span1 = span_of("number", "1"),
        start1 = start("number", "1"),
        calls = opts.calls,
    ))
    .await?;
    db.execute(&format!(
        "INSERT INTO signals (project_id, signal_id, kind, source, timestamp, trace_id, session_id, user_id, feature, text, edit_ratio, \
         link_status, ingested_at) \
         SELECT 'bench', concat('sig-', toString(number)), multiIf(number % 20 = 0, 'thumbs_down', number % 50 = 0, 'edit', 'regenerate'), \
         'api', {start1} + toIntervalSecond(30), {trace}, concat('sess-', toString(intDiv(number, 5))), \
         concat('user-', toString(intDiv(number, 5) % 20000)), ['support', 'coding', 'search'][number % 3 + 1], \
         if(number % 50 = 0 AND number % 20 != 0, 'No, refunds are possible up to 30 days.', ''), \
         if(number % 50 = 0 AND number % 20 != 0, 0.4, NULL), 'linked', now64(9) \
         FROM numbers({calls}) WHERE number % 20 = 0 OR number % 50 = 0 OR number % 33 = 0",
        trace = trace_of("number"),
        start1 = start("number", "1"),
        calls = opts.calls,
    ))
    .await?;
    let trends = ["new", "growing", "stable", "shrinking", "resolved"];
    let members = opts.calls / 10 / PATTERNS;
    let patterns: Vec<PatternRow> = (0..PATTERNS)
        .map(|i| PatternRow {
            project_id: PROJECT.into(),
            pattern_id: format!("bench-p{i:02}"),
            label: format!("bench failure pattern {i}"),
            description: "generated by flywheel bench tui".into(),
            terms: vec!["refund".into(), "policy".into(), format!("term{i}")],
            facets: [("feature", ["support", "coding", "search"][i as usize % 3]), ("model", "gpt-4o-mini")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            status: "new".into(),
            trend: trends[i as usize % trends.len()].into(),
            size: members,
            previous_size: members / 2,
            calls: members,
            traces: members,
            sessions: members,
            users: members / (1 + i % 7),
            severity: 0.5 + (i % 5) as f32 / 10.0,
            cost_usd: members as f64 * 0.0004,
            mean_latency_ms: 1700.0,
            signal_mix: [("thumbs_down".to_string(), members / 2), ("edit".to_string(), members / 5)].into_iter().collect(),
            centroid: vec![],
            first_seen: now - time::Duration::days(7),
            last_seen: now,
            fixed_at: time::OffsetDateTime::UNIX_EPOCH,
            regressed_at: time::OffsetDateTime::UNIX_EPOCH,
            regressed_in: String::new(),
            run_id: "bench-run".into(),
            updated_at: now,
        })
        .collect();
    db.insert("patterns", &patterns).await?;
    // Bring each table to few parts, as a long-running server would have, before measuring.
    for table in ["spans", "llm_calls", "signals", "failures", "pattern_members"] {
        db.execute(&format!("OPTIMIZE TABLE {table}")).await.ok();
    }
    Ok(())
}

fn render(app: &App) -> usize {
    let mut terminal = Terminal::new(TestBackend::new(WIDTH, HEIGHT)).expect("a test backend never fails");
    terminal
        .draw(|f| {
            crate::views::render(f, app, &Theme::new(true));
        })
        .expect("a test backend never fails");
    terminal.backend().buffer().content().len()
}

async fn measure(db: &Store, repeat: usize) -> Result<Vec<Step>, StoreError> {
    let settings = Settings {
        project: Some(PROJECT.into()),
        window: Window::Week,
        impact: Impact::Users,
        user: "bench".into(),
        trace: None,
        pattern: None,
    };
    let mut steps: Vec<Step> = [
        ("patterns view (open)", Some(300.0)),
        ("→ pattern detail", Some(100.0)),
        ("→ trace", Some(100.0)),
        ("→ session", Some(100.0)),
        ("→ overview (7d, hourly)", Some(100.0)),
        ("→ overview, prefetched", Some(100.0)),
        ("search by user id (7d)", None),
    ]
    .into_iter()
    .map(|(name, target_ms)| Step { name, target_ms, ms: vec![] })
    .collect();
    for rep in 0..repeat {
        let mut app = App::new(settings.clone());
        let t = Instant::now();
        let Payload::Patterns { items, .. } = data::execute(db, Request::Patterns { project: Some(PROJECT.into()) }).await? else {
            unreachable!()
        };
        app.patterns = Some(items);
        render(&app);
        steps[0].ms.push(t.elapsed().as_secs_f64() * 1e3);

        let visible = app.visible_patterns();
        let item = visible[rep % visible.len()].clone();
        let t = Instant::now();
        let Payload::Pattern(detail) = data::execute(db, Request::Pattern { project: PROJECT.into(), item: Box::new(item) }).await? else {
            unreachable!()
        };
        app.pattern = Some(*detail);
        app.stack.push(View::Pattern);
        render(&app);
        steps[1].ms.push(t.elapsed().as_secs_f64() * 1e3);

        let member = app.pattern.as_ref().and_then(|d| d.members.get(rep % d.members.len().max(1))).cloned();
        let Some(member) = member else { continue };
        let t = Instant::now();
        let request = Request::Trace { project: PROJECT.into(), trace_id: member.trace_id.clone(), around: Some(member.call_time) };
        let Payload::Trace(trace) = data::execute(db, request).await? else { unreachable!() };
        app.cursors.entry("trace").or_default().selected = trace.focus_index();
        app.trace = Some(*trace);
        app.stack.push(View::Trace);
        render(&app);
        steps[2].ms.push(t.elapsed().as_secs_f64() * 1e3);

        let t = Instant::now();
        let request = Request::Session { project: PROJECT.into(), session_id: member.session_id.clone(), around: Some(member.call_time) };
        let Payload::Session(session) = data::execute(db, request).await? else { unreachable!() };
        app.session = Some(*session);
        app.stack.push(View::Session);
        render(&app);
        steps[3].ms.push(t.elapsed().as_secs_f64() * 1e3);

        let t = Instant::now();
        let request = Request::Overview { project: Some(PROJECT.into()), window: Window::Week };
        let Payload::Overview(overview) = data::execute(db, request).await? else { unreachable!() };
        app.overview = Some(overview);
        app.stack = vec![View::Overview];
        render(&app);
        steps[4].ms.push(t.elapsed().as_secs_f64() * 1e3);

        // The UI loads the overview in the background once the patterns are in: switching to
        // it then only renders.
        app.stack = vec![View::Patterns];
        render(&app);
        let t = Instant::now();
        app.stack = vec![View::Overview];
        render(&app);
        steps[5].ms.push(t.elapsed().as_secs_f64() * 1e3);

        let t = Instant::now();
        let request = Request::Search { project: PROJECT.into(), query: member.user_id.clone(), window: Window::Week };
        let Payload::Search(results) = data::execute(db, request).await? else { unreachable!() };
        app.search = Some(results);
        app.stack = vec![View::Search];
        render(&app);
        steps[6].ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    Ok(steps)
}
