//! One analyzer run: detect → features → represent → cluster → label → track → impact, then
//! write `failures`, `pattern_members`, `patterns` and `analysis_runs`. Deterministic: the
//! same rows in ClickHouse give the same patterns, ids included.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use flywheel_schemas::Store;
use flywheel_schemas::failure::FailureDetails;
use flywheel_schemas::queries;
use flywheel_schemas::rows::{AnalysisRunRow, FailureRow, PatternRow, PatternTriageRow};
use serde_json::json;
use time::OffsetDateTime;

use crate::cause::{self, Lane};
use crate::cluster::Params;
use crate::detect;
use crate::error::AnalyzerError;
use crate::features::{self, TextViews};
use crate::represent::{self, LEXICAL};
use crate::rules::Rules;
use crate::track::{self, Candidate, Previous};
use crate::{group, impact, label, lifecycle, pattern};

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
    /// Patterns this run reopened: fixed, and failing again.
    pub reopened: Vec<String>,
}

/// Members of each behaviour cause represented by their text, to tell whether users-only
/// failures resemble them ([`group`]); a sample says what the group's texts are like.
const CAUSE_SAMPLE: usize = 100;
/// Calls that did not fail, represented to measure how often users flag traffic like a text
/// cluster anyway.
const HEALTHY_SAMPLE: usize = 1000;

/// Every `len / max`-th index, at most `max` of them.
fn strided(len: usize, max: usize) -> impl Iterator<Item = usize> {
    (0..len).step_by(len.div_ceil(max.max(1)).max(1))
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
    let causes = cause::causes(&opts.rules, &failures);
    progress.advance(inputs.calls.len() as u64);
    lap("detect", &mut timings);

    let views: Vec<TextViews> = failures.iter().map(TextViews::of).collect();
    let texts: Vec<String> = views.iter().map(TextViews::failure_text).collect();
    let frame = features::frame(&failures, &causes)?;
    lap("features", &mut timings);

    // Represent: lexical for every failure (cheap; labels and the centroids of named causes);
    // a text vector (the embedding model, else lexical) for the failures only users flagged, a
    // sample of each named behaviour's, and a sample of the answers that did not fail.
    let lexical = represent::lexical(&texts);
    let mut chosen: Vec<usize> = (0..failures.len()).filter(|&i| causes[i].key.is_empty()).collect();
    let mut behaviours: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, c) in causes.iter().enumerate() {
        if c.open && c.lane == Lane::Behaviour {
            behaviours.entry(&c.key).or_default().push(i);
        }
    }
    for members in behaviours.values() {
        chosen.extend(strided(members.len(), CAUSE_SAMPLE).map(|k| members[k]));
    }
    chosen.sort_unstable();
    let failing: BTreeSet<&str> = failures.iter().map(|f| f.call.trace_id.as_str()).collect();
    // The answer each healthy interaction ended with (calls come ordered by trace and time).
    let mut healthy: Vec<&detect::Call> = Vec::new();
    for c in inputs.calls.iter().filter(|c| !failing.contains(c.trace_id.as_str())) {
        match healthy.last_mut() {
            Some(last) if last.trace_id == c.trace_id => *last = c,
            _ => healthy.push(c),
        }
    }
    let healthy_texts: Vec<String> = strided(healthy.len(), HEALTHY_SAMPLE)
        .map(|k| {
            let c = healthy[k];
            let text = if c.output_text.trim().is_empty() { &c.input_text } else { &c.output_text };
            detect::excerpt(text, 600)
        })
        .collect();
    let mut to_represent: Vec<String> = chosen.iter().map(|&i| texts[i].clone()).collect();
    to_represent.extend(healthy_texts.iter().cloned());
    let (representation, mut vectors) = match opts.embedder {
        Some(embedder) if !to_represent.is_empty() => {
            progress.stage("embedding failure texts", to_represent.len() as u64);
            let vectors = crate::embed::embed_cached(store, project, embedder, &to_represent, &|done, _| progress.advance(done as u64))
                .await
                .map_err(|e| AnalyzerError::Embedding(e.to_string()))?;
            (embedder.model_name().to_string(), vectors)
        }
        Some(embedder) => (embedder.model_name().to_string(), vec![]),
        None => (LEXICAL.to_string(), represent::lexical(&to_represent).iter().map(represent::Sparse::dense).collect()),
    };
    let healthy_vectors = vectors.split_off(chosen.len());
    let mut represented: Vec<Option<Vec<f32>>> = vec![None; failures.len()];
    for (&i, v) in chosen.iter().zip(vectors) {
        represented[i] = Some(v);
    }
    let rep = group::Represented {
        failures: represented,
        healthy: healthy_vectors,
        healthy_total: healthy.len(),
        merge: merge_threshold(&representation),
    };
    lap("represent", &mut timings);

    progress.stage("grouping by cause", failures.len() as u64);
    let min_size = opts.min_pattern_size.unwrap_or_else(|| Params::for_size(failures.len()).min_cluster_size);
    let (groups, grouping) = group::by_cause(&causes, &rep, min_size);
    let mut assignment: Vec<Option<usize>> = vec![None; failures.len()];
    for (gi, g) in groups.iter().enumerate() {
        for &i in &g.members {
            assignment[i] = Some(gi);
        }
    }
    // Centroids: named causes in the lexical space (every member has a vector there), text
    // clusters in their representation.
    let centroids: Vec<(Vec<f32>, String)> = groups
        .iter()
        .map(|g| {
            if g.key.is_empty() {
                let vs: Vec<Vec<f32>> = g.members.iter().filter_map(|&i| rep.failures[i].clone()).collect();
                (represent::centroid(&vs, &(0..vs.len()).collect::<Vec<_>>()), representation.clone())
            } else {
                (represent::sparse_centroid(&lexical, &g.members), LEXICAL.to_string())
            }
        })
        .collect();
    progress.advance(failures.len() as u64);
    lap("cluster", &mut timings);

    // Labels.
    let terms = label::distinctive_terms(&texts, &assignment, groups.len(), 3);
    let impacts = impact::impacts(&frame, &assignment, groups.len())?;

    // Tracking.
    let (previous, previous_rows) = load_previous(store, project).await?;
    let previous_calls = last_run_calls(store, project).await?;
    let candidates: Vec<Candidate> = groups
        .iter()
        .zip(&centroids)
        .map(|(g, (centroid, rep))| Candidate {
            signature: g.key.clone(),
            members: g.members.iter().map(|&i| failures[i].key()).collect(),
            centroid: centroid.clone(),
            representation: rep.clone(),
        })
        .collect();
    let matches = track::match_patterns(&candidates, &previous);
    lap("label+track", &mut timings);

    let now = OffsetDateTime::now_utc();
    let triage = queries::triage_states(store, project).await?;
    let names = queries::pattern_names(store, project).await?;
    let mut patterns = Vec::new();
    let mut members_rows = Vec::new();
    let mut by_failure: BTreeMap<(String, String), String> = BTreeMap::new();
    let mut reopened: Vec<PatternTriageRow> = Vec::new();
    for (gi, g) in groups.iter().enumerate() {
        let prev = matches[gi].map(|pi| &previous[pi]);
        let pattern_id = prev.map_or_else(|| track::new_id(project, &candidates[gi]), |p| p.pattern_id.clone());
        let (centroid, rep_name) = &centroids[gi];
        let calls_now = inputs.calls.len() as u64;
        let mut row = pattern::row(pattern::Parts {
            project,
            pattern_id: pattern_id.clone(),
            key: &g.key,
            members: &g.members,
            failures: &failures,
            terms: &terms[gi],
            impact: &impacts[gi],
            representation: rep_name,
            centroid: centroid.clone(),
            joined: g.joined,
            previous: prev,
            trend: track::trend(prev, g.members.len() as u64, calls_now, previous_calls),
            status: triage.get(&pattern_id).map_or_else(|| "new".to_string(), |t| t.status.clone()),
            run_id: &run_id,
            now,
        });
        // A name an LLM gave this pattern once (`--llm-names`) is kept; the rule label stays.
        if let Some(named) = names.get(&pattern_id) {
            crate::name::apply(&mut row, named);
        }
        let times: Vec<OffsetDateTime> = g.members.iter().map(|&i| failures[i].call.start_time).collect();
        let prev_row = matches[gi].map(|pi| &previous_rows[pi]);
        let life = lifecycle::follow(prev_row, triage.get(&pattern_id), &times);
        row.fixed_at = life.fixed_at;
        row.regressed_at = life.regressed_at;
        // The release of a regression carried over; none once a new fix cleared it.
        row.regressed_in = prev_row.filter(|p| p.regressed_at == life.regressed_at).map(|p| p.regressed_in.clone()).unwrap_or_default();
        if life.reopened {
            // The release the returning failures ran: the most common one among them.
            let back: Vec<String> = g
                .members
                .iter()
                .filter(|&&i| failures[i].call.start_time >= life.regressed_at)
                .map(|&i| failures[i].call.trace_id.clone())
                .collect();
            row.regressed_in = queries::releases_of(store, project, &back).await?.into_iter().next().map(|(r, _)| r).unwrap_or_default();
            row.status = "regressed".into();
            row.trend = "regressed".into();
            reopened.push(PatternTriageRow {
                project_id: project.into(),
                pattern_id: pattern_id.clone(),
                status: "regressed".into(),
                note: lifecycle::note(&life, &row.regressed_in),
                updated_by: "flywheel analyze".into(),
                updated_at: now,
            });
        }
        patterns.push(row);
        let distance = |i: usize| -> f32 {
            if g.key.is_empty() {
                rep.failures[i].as_ref().map_or(1.0, |v| 1.0 - represent::cosine(v, centroid))
            } else {
                1.0 - lexical[i].dot(centroid)
            }
        };
        members_rows.extend(pattern::member_rows(project, &pattern_id, &run_id, &g.members, &failures, &distance, now));
        for &i in &g.members {
            by_failure.insert(failures[i].key(), pattern_id.clone());
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
    pattern::sort(&mut patterns);

    // Write.
    progress.stage("writing failures and patterns", (failures.len() + patterns.len()) as u64);
    let failure_rows: Vec<FailureRow> = failures
        .iter()
        .zip(&views)
        .zip(&texts)
        .zip(&causes)
        .map(|(((f, v), text), c)| FailureRow {
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
            details: FailureDetails {
                text_hash: crate::embed::text_hash(text),
                request: v.request.clone(),
                output: v.output.clone(),
                error: v.error.clone(),
                tools: f.call.tool_names.clone(),
                edit_text: f.edit_text.clone(),
                signals: f.signals.clone(),
                evidence: f.evidence.clone(),
                latency_ms: Some(f.call.duration_ns as f64 / 1e6),
                cost_usd: f.call.cost_usd,
                signature: c.key.clone(),
                lane: c.lane,
                languages: f.languages.clone(),
                format: f.format.clone(),
                contrast: f.contrast.clone(),
            }
            .to_json(),
            run_id: run_id.clone(),
            detected_at: now,
        })
        .collect();
    store.insert_batched("failures", &failure_rows, 10_000, None).await?;
    store.insert_batched("pattern_members", &members_rows, 10_000, None).await?;
    store.insert("patterns", &patterns).await?;
    if !reopened.is_empty() {
        store.insert("pattern_triage", &reopened).await?;
    }
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
        patterns: groups.len() as u64,
        representation: representation.clone(),
        details: json!({
            "timings_s": timings.iter().map(|(k, v)| (k.to_string(), *v)).collect::<BTreeMap<_, _>>(),
            "min_pattern_size": min_size,
            "grouping": {
                "text_clusters": grouping.text_clusters,
                "dropped_as_noise": grouping.dropped_as_noise,
                "joined_clusters": grouping.joined_clusters,
                "joined_failures": grouping.joined_failures,
                "merged_causes": grouping.merged_causes,
                "trimmed_as_noise": grouping.trimmed_as_noise,
            },
        })
        .to_string(),
    };
    store.insert("analysis_runs", std::slice::from_ref(&run)).await?;
    let reopened = reopened.into_iter().map(|t| t.pattern_id).collect();
    Ok(Outcome { run, patterns, assignment: by_failure, failures: failures.len(), timings, reopened })
}

/// Centroid cosine above which two text clusters are one failure: the same wording of one
/// failure found as several dense sub-groups. Sentence embeddings of one topic sit closer
/// together than sparse TF-IDF vectors.
fn merge_threshold(representation: &str) -> f32 {
    if representation == LEXICAL { 0.6 } else { 0.85 }
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
