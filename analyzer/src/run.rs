//! One analyzer run: detect → features → represent → cluster → label → track → impact, then
//! write `failures`, `pattern_members`, `patterns` and `analysis_runs`. Deterministic: the
//! same rows in ClickHouse give the same patterns, ids included.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use flywheel_schemas::Store;
use flywheel_schemas::queries;
use flywheel_schemas::rows::{AnalysisRunRow, FailureRow, PatternMemberRow, PatternRow};
use serde_json::json;
use time::OffsetDateTime;

use crate::cluster::{self, Params};
use crate::detect::{self, Failure};
use crate::error::AnalyzerError;
use crate::features::{self, TextViews};
use crate::impact;
use crate::label;
use crate::represent::{self, LEXICAL};
use crate::rules::Rules;
use crate::track::{self, Candidate, Previous};

/// Reports progress; the CLI drives a progress bar with it.
pub trait Progress: Send + Sync {
    fn stage(&self, name: &str, total: u64);
    fn advance(&self, done: u64);
}

/// A progress sink for tests and library callers.
pub struct Silent;

impl Progress for Silent {
    fn stage(&self, _: &str, _: u64) {}
    fn advance(&self, _: u64) {}
}

pub struct Options<'a> {
    pub project: String,
    pub since: OffsetDateTime,
    pub until: OffsetDateTime,
    pub rules: Rules,
    /// The sentence-embedding model; None = the lexical representation.
    pub embedder: Option<&'a crate::embed::Embedder>,
    /// Smallest pattern (None: 3, or 1 % of the failures up to 50).
    pub min_pattern_size: Option<usize>,
}

/// What a run found.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub run: AnalysisRunRow,
    /// This run's patterns, most impactful first (resolved ones last).
    pub patterns: Vec<PatternRow>,
    /// Per failure (anchor trace id, span id) → pattern id, for scoring.
    pub assignment: BTreeMap<(String, String), String>,
    pub failures: usize,
    pub timings: Vec<(&'static str, f64)>,
}

fn at(nanos: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(nanos.into()).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

pub async fn analyze(store: &Store, opts: &Options<'_>, progress: &dyn Progress) -> Result<Outcome, AnalyzerError> {
    let started = OffsetDateTime::now_utc();
    let run_id = format!("run_{}", started.unix_timestamp_nanos());
    let project = opts.project.as_str();
    let mut timings = Vec::new();
    let mut clock = Instant::now();
    let mut lap = |name: &'static str, timings: &mut Vec<(&'static str, f64)>| {
        timings.push((name, clock.elapsed().as_secs_f64()));
        clock = Instant::now();
    };

    progress.stage("reading calls, spans and signals", 0);
    let inputs = detect::fetch(store, project, opts.since, opts.until).await?;
    lap("fetch", &mut timings);
    progress.stage("detecting failures", inputs.calls.len() as u64);
    let failures = detect::evaluate(&opts.rules, &inputs);
    progress.advance(inputs.calls.len() as u64);
    lap("detect", &mut timings);

    let views: Vec<TextViews> = failures.iter().map(TextViews::of).collect();
    let texts: Vec<String> = views.iter().map(TextViews::failure_text).collect();
    let frame = features::frame(&opts.rules, &failures)?;
    let groups = features::signature_groups(&frame)?;
    lap("features", &mut timings);

    // Represent: lexical for every failure (cheap; labels and signature-group centroids),
    // the embedding model for the failures whose text has to speak.
    let lexical = represent::lexical(&texts);
    let text_only: Vec<usize> = groups.iter().find(|(s, _)| s.is_empty()).map(|(_, m)| m.clone()).unwrap_or_default();
    let (representation, text_vectors) = match opts.embedder {
        Some(embedder) if !text_only.is_empty() => {
            progress.stage("embedding failure texts", text_only.len() as u64);
            let subset: Vec<String> = text_only.iter().map(|&i| texts[i].clone()).collect();
            let vectors = crate::embed::embed_cached(store, project, embedder, &subset, &|done, _| progress.advance(done as u64))
                .await
                .map_err(|e| AnalyzerError::Embedding(e.to_string()))?;
            (embedder.model_name().to_string(), vectors)
        }
        Some(embedder) => (embedder.model_name().to_string(), vec![]),
        None => (LEXICAL.to_string(), text_only.iter().map(|&i| lexical[i].dense()).collect()),
    };
    lap("represent", &mut timings);

    progress.stage("clustering", failures.len() as u64);
    let min_size = opts.min_pattern_size.unwrap_or_else(|| Params::for_size(failures.len()).min_cluster_size);
    let mut clusters: Vec<(String, Vec<usize>, Vec<f32>, String)> = Vec::new();
    for (signature, members) in &groups {
        if signature.is_empty() {
            let params = Params { min_cluster_size: min_size, ..Params::for_size(members.len()) };
            let labels = cluster::hdbscan(&text_vectors, params);
            // Facets of a text cluster: its main feature and the reactions most of its users had.
            let facets = |local: &[usize]| {
                let feature = label::dominant(local.iter().map(|&i| failures[members[i]].call.feature.as_str())).map(|(f, _)| f);
                let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
                for &i in local {
                    for kind in failures[members[i]].signals.iter().map(|s| s.kind.as_str()).collect::<BTreeSet<_>>() {
                        *kinds.entry(kind).or_default() += 1;
                    }
                }
                (feature, kinds.into_iter().filter(|(_, n)| 2 * n >= local.len()).map(|(k, _)| k).collect::<Vec<_>>())
            };
            let (strict, loose) = merge_thresholds(&representation);
            for local in cluster::merge_similar(&text_vectors, cluster::members(&labels), strict, loose, &facets) {
                let global: Vec<usize> = local.iter().map(|&i| members[i]).collect();
                clusters.push((String::new(), global, represent::centroid(&text_vectors, &local), representation.clone()));
            }
        } else if members.len() >= min_size {
            clusters.push((signature.clone(), members.clone(), represent::sparse_centroid(&lexical, members), LEXICAL.to_string()));
        }
    }
    let mut assignment: Vec<Option<usize>> = vec![None; failures.len()];
    for (ci, (_, members, _, _)) in clusters.iter().enumerate() {
        for &i in members {
            assignment[i] = Some(ci);
        }
    }
    progress.advance(failures.len() as u64);
    lap("cluster", &mut timings);

    // Labels.
    let terms = label::distinctive_terms(&texts, &assignment, clusters.len(), 3);
    let impacts = impact::impacts(&frame, &assignment, clusters.len())?;

    // Tracking.
    let (previous, previous_rows) = load_previous(store, project).await?;
    let previous_calls = last_run_calls(store, project).await?;
    let candidates: Vec<Candidate> = clusters
        .iter()
        .map(|(signature, members, centroid, rep)| Candidate {
            signature: signature.clone(),
            members: members.iter().map(|&i| failures[i].key()).collect(),
            centroid: centroid.clone(),
            representation: rep.clone(),
        })
        .collect();
    let matches = track::match_patterns(&candidates, &previous);
    lap("label+track", &mut timings);

    let now = OffsetDateTime::now_utc();
    // Failure index → row of `text_vectors`, for member distances.
    let text_index: std::collections::HashMap<usize, usize> = text_only.iter().enumerate().map(|(k, &i)| (i, k)).collect();
    let triage = queries::triage_states(store, project).await?;
    let names = queries::pattern_names(store, project).await?;
    let mut patterns = Vec::new();
    let mut members_rows = Vec::new();
    let mut by_failure: BTreeMap<(String, String), String> = BTreeMap::new();
    for (ci, (signature, members, centroid, rep)) in clusters.iter().enumerate() {
        let prev = matches[ci].map(|pi| &previous[pi]);
        let pattern_id = prev.map_or_else(|| track::new_id(project, &candidates[ci]), |p| p.pattern_id.clone());
        let imp = &impacts[ci];
        let mut signal_mix: BTreeMap<String, u64> = BTreeMap::new();
        let mut reason_counts: BTreeMap<String, u64> = BTreeMap::new();
        let mut languages: BTreeMap<String, usize> = BTreeMap::new();
        for &i in members {
            for s in failures[i].signals.iter().map(|s| s.kind.clone()).collect::<BTreeSet<_>>() {
                *signal_mix.entry(s).or_default() += 1;
            }
            for r in &failures[i].reasons {
                *reason_counts.entry(r.clone()).or_default() += 1;
            }
            if let Some((_, answer)) = &failures[i].languages {
                *languages.entry(answer.clone()).or_default() += 1;
            }
        }
        // Languages that make up a tenth of the pattern, not a stray misdetection.
        let languages: Vec<String> = languages.iter().filter(|(_, n)| **n * 10 >= members.len()).map(|(l, _)| l.clone()).collect();
        let evidence =
            if signature.is_empty() { label::signal_phrase(&signal_mix) } else { label::signature_phrase(signature, &languages) };
        let feature = imp.features.first().cloned();
        let label = label::label(&evidence, &terms[ci], feature.as_ref());
        let mut facets: BTreeMap<String, String> = BTreeMap::new();
        facets.insert("signature".into(), signature.clone());
        facets.insert("representation".into(), rep.clone());
        let shares = |v: &[(String, f64)]| v.iter().take(4).map(|(k, s)| format!("{k} {:.0}%", s * 100.0)).collect::<Vec<_>>().join(", ");
        if let Some((f, _)) = imp.features.first() {
            facets.insert("feature".into(), f.clone());
            facets.insert("features".into(), shares(&imp.features));
        }
        if let Some((m, _)) = imp.models.first() {
            facets.insert("model".into(), m.clone());
            facets.insert("models".into(), shares(&imp.models));
        }
        let pick = |f: &dyn Fn(&Failure) -> String| {
            label::dominant(members.iter().map(|&i| f(&failures[i])).collect::<Vec<_>>().iter().map(String::as_str))
        };
        let error_type = |f: &Failure| {
            if !f.call.error_type.is_empty() {
                return f.call.error_type.clone();
            }
            // "tool: Type: message" → Type, when it reads as a type name.
            f.tool_errors
                .first()
                .and_then(|e| e.split(": ").nth(1))
                .filter(|t| !t.contains(' ') && t.len() <= 80)
                .unwrap_or_default()
                .to_string()
        };
        if let Some((e, _)) = pick(&error_type) {
            facets.insert("error_type".into(), e);
        }
        if let Some((r, _)) = pick(&|f| f.call.finish_reasons.first().cloned().unwrap_or_default()) {
            facets.insert("finish_reason".into(), r);
        }
        if let Some((s, _)) = signal_mix.iter().max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0))) {
            facets.insert("signal".into(), s.clone());
        }
        if !languages.is_empty() {
            facets.insert("languages".into(), languages.join(", "));
        }
        let mut reasons: Vec<(String, u64)> = reason_counts.into_iter().collect();
        reasons.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        facets.insert("reasons".into(), reasons.iter().map(|(r, n)| format!("{r} {n}")).collect::<Vec<_>>().join(", "));
        let description = describe(imp, &reasons, &signal_mix, &terms[ci]);
        let calls_now = inputs.calls.len() as u64;
        let trend = track::trend(prev, members.len() as u64, calls_now, previous_calls);
        let status = triage.get(&pattern_id).map_or_else(|| "new".to_string(), |t| t.status.clone());
        let mut row = PatternRow {
            project_id: project.into(),
            pattern_id: pattern_id.clone(),
            label,
            description,
            terms: terms[ci].clone(),
            facets,
            status,
            trend: trend.into(),
            size: members.len() as u64,
            previous_size: prev.map_or(0, |p| p.size),
            calls: imp.calls,
            traces: imp.traces,
            sessions: imp.sessions,
            users: imp.users,
            severity: imp.severity,
            cost_usd: imp.cost_usd,
            mean_latency_ms: imp.mean_latency_ms,
            signal_mix,
            centroid: centroid.clone(),
            first_seen: at(imp.first_seen_ns),
            last_seen: at(imp.last_seen_ns),
            run_id: run_id.clone(),
            updated_at: now,
        };
        // A name an LLM gave this pattern once (`--llm-names`) is kept; the rule label stays.
        if let Some(named) = names.get(&pattern_id) {
            crate::name::apply(&mut row, named);
        }
        patterns.push(row);
        let vectors = if signature.is_empty() { None } else { Some(&lexical) };
        for &i in members {
            let f = &failures[i];
            let distance = match vectors {
                Some(v) => 1.0 - v[i].dot(centroid),
                None => text_index.get(&i).map_or(1.0, |&k| 1.0 - represent::cosine(&text_vectors[k], centroid)),
            };
            members_rows.push(PatternMemberRow {
                project_id: project.into(),
                pattern_id: pattern_id.clone(),
                run_id: run_id.clone(),
                trace_id: f.call.trace_id.clone(),
                span_id: f.call.span_id.clone(),
                call_time: f.call.start_time,
                distance,
                added_at: now,
            });
            by_failure.insert(f.key(), pattern_id.clone());
        }
    }
    // Patterns of earlier runs that nobody continued are resolved (once).
    let continued: BTreeSet<usize> = matches.iter().flatten().copied().collect();
    for (pi, p) in previous.iter().enumerate() {
        if continued.contains(&pi) || p.resolved {
            continue;
        }
        let mut row = previous_rows[pi].clone();
        row.previous_size = row.size;
        row.size = 0;
        row.calls = 0;
        row.trend = "resolved".into();
        row.run_id = run_id.clone();
        row.updated_at = now;
        if let Some(t) = triage.get(&row.pattern_id) {
            row.status = t.status.clone();
        }
        patterns.push(row);
    }
    patterns.sort_by(|a, b| {
        (b.size > 0)
            .cmp(&(a.size > 0))
            .then((b.users as f32 * b.severity).total_cmp(&(a.users as f32 * a.severity)))
            .then(b.size.cmp(&a.size))
            .then(a.pattern_id.cmp(&b.pattern_id))
    });

    // Write.
    progress.stage("writing failures and patterns", (failures.len() + patterns.len()) as u64);
    let failure_rows: Vec<FailureRow> = failures
        .iter()
        .zip(&views)
        .zip(&texts)
        .map(|((f, v), text)| FailureRow {
            project_id: project.into(),
            trace_id: f.call.trace_id.clone(),
            span_id: f.call.span_id.clone(),
            session_id: f.call.session_id.clone(),
            user_id: f.call.user_id.clone(),
            feature: f.call.feature.clone(),
            model: f.call.model.clone(),
            call_time: f.call.start_time,
            reasons: f.reasons.clone(),
            categories: f.categories.clone(),
            severity: f.severity,
            details: json!({
                "text_hash": crate::embed::text_hash(text),
                "request": v.request,
                "output": v.output,
                "error": v.error,
                "tools": f.call.tool_names,
                "edit_text": f.edit_text,
                "signals": f.signals,
                "evidence": f.evidence,
                "latency_ms": f.call.duration_ns as f64 / 1e6,
                "cost_usd": f.call.cost_usd,
                "signature": features::signature(&opts.rules, f),
                "languages": f.languages,
            })
            .to_string(),
            run_id: run_id.clone(),
            detected_at: now,
        })
        .collect();
    store.insert_batched("failures", &failure_rows, 10_000, None).await?;
    store.insert_batched("pattern_members", &members_rows, 10_000, None).await?;
    store.insert("patterns", &patterns).await?;
    progress.advance((failures.len() + patterns.len()) as u64);
    lap("write", &mut timings);

    let clustered = assignment.iter().filter(|a| a.is_some()).count() as u64;
    let run = AnalysisRunRow {
        project_id: project.into(),
        run_id: run_id.clone(),
        started_at: started,
        finished_at: OffsetDateTime::now_utc(),
        window_start: opts.since,
        window_end: opts.until,
        calls: inputs.calls.len() as u64,
        failures: failures.len() as u64,
        clustered,
        patterns: clusters.len() as u64,
        representation: representation.clone(),
        details:
            json!({"timings_s": timings.iter().map(|(k, v)| (k.to_string(), *v)).collect::<BTreeMap<_, _>>(), "min_pattern_size": min_size})
                .to_string(),
    };
    store.insert("analysis_runs", std::slice::from_ref(&run)).await?;
    Ok(Outcome { run, patterns, assignment: by_failure, failures: failures.len(), timings })
}

/// Centroid cosines above which two text clusters are one failure, whatever their facets and
/// when their facets agree (see [`cluster::merge_similar`]). Sentence embeddings of one topic
/// sit closer together than sparse TF-IDF vectors; measured on the simulator's truth at 2.5k
/// and 100k failures (docs/analyzer.md).
fn merge_thresholds(representation: &str) -> (f32, f32) {
    if representation == LEXICAL { (0.6, 0.15) } else { (0.85, 0.45) }
}

/// One paragraph a reviewer can read aloud.
fn describe(imp: &impact::Impact, reasons: &[(String, u64)], signals: &BTreeMap<String, u64>, terms: &[String]) -> String {
    let day = |ns: i64| at(ns).date().to_string();
    let mut s = format!(
        "{} failing calls in {} interactions of {} users ({} sessions), {} to {}.",
        imp.calls,
        imp.traces,
        imp.users,
        imp.sessions,
        day(imp.first_seen_ns),
        day(imp.last_seen_ns)
    );
    let top: Vec<String> = reasons.iter().take(3).map(|(r, n)| format!("{r} ({n})")).collect();
    if !top.is_empty() {
        s.push_str(&format!(" Evidence: {}.", top.join(", ")));
    }
    if let Some((f, share)) = imp.features.first() {
        s.push_str(&format!(" Mostly in {f} ({:.0}%)", share * 100.0));
        if let Some((m, ms)) = imp.models.first() {
            s.push_str(&format!(", on {m} ({:.0}%)", ms * 100.0));
        }
        s.push('.');
    }
    if !signals.is_empty() {
        let kinds: Vec<String> = signals.iter().map(|(k, n)| format!("{k} {n}")).collect();
        s.push_str(&format!(" User signals: {}.", kinds.join(", ")));
    }
    if !terms.is_empty() {
        s.push_str(&format!(" Distinctive words: {}.", terms.join(", ")));
    }
    s
}

/// The project's patterns as tracking sees them, with the rows they came from.
async fn load_previous(store: &Store, project: &str) -> Result<(Vec<Previous>, Vec<PatternRow>), AnalyzerError> {
    let rows: Vec<PatternRow> =
        store.query("SELECT ?fields FROM patterns FINAL WHERE project_id = ? ORDER BY pattern_id").bind(project).fetch_all().await?;
    let mut previous = Vec::new();
    for row in &rows {
        let members = queries::pattern_members(store, project, &row.pattern_id).await?;
        previous.push(Previous {
            pattern_id: row.pattern_id.clone(),
            signature: row.facets.get("signature").cloned().unwrap_or_default(),
            members: members.into_iter().map(|m| (m.trace_id, m.span_id)).collect(),
            centroid: row.centroid.clone(),
            representation: row.facets.get("representation").cloned().unwrap_or_default(),
            size: row.size,
            resolved: row.trend == "resolved",
        });
    }
    Ok((previous, rows))
}

async fn last_run_calls(store: &Store, project: &str) -> Result<u64, AnalyzerError> {
    #[derive(clickhouse::Row, serde::Deserialize)]
    struct Calls {
        calls: u64,
    }
    let rows: Vec<Calls> = store
        .query("SELECT calls FROM analysis_runs FINAL WHERE project_id = ? ORDER BY started_at DESC LIMIT 1")
        .bind(project)
        .fetch_all()
        .await?;
    Ok(rows.first().map_or(0, |r| r.calls))
}
