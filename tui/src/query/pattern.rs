//! The pattern screen: a pattern's members joined to their calls and failures (nearest
//! first), its facets and its timeline.

use super::*;

#[derive(Row, Deserialize)]
struct MemberCall {
    trace_id: String,
    span_id: String,
    session_id: String,
    user_id: String,
    feature: String,
    model: String,
    status: String,
    error_type: String,
    finish_reasons: Vec<String>,
    input_text: String,
    output_text: String,
}

/// A member's row in `failures`: who, where, why, and the analyzer's excerpts (`details`).
#[derive(Row, Deserialize)]
struct MemberFailure {
    trace_id: String,
    span_id: String,
    session_id: String,
    user_id: String,
    feature: String,
    model: String,
    reasons: Vec<String>,
    details: String,
}

/// `(toStartOfHour(start_time), trace_id) IN (…)`: the leading keys of `llm_calls` after the
/// project, so that each member costs one primary-key range instead of a time-range scan.
fn hour_trace_list(keys: &[(OffsetDateTime, &str)]) -> String {
    let tuples: Vec<String> = keys
        .iter()
        .map(|(t, trace)| {
            let hour = t.unix_timestamp().div_euclid(3600) * 3600;
            format!("(toDateTime({hour}, 'UTC'), {})", sql_list(&[trace]).trim_start_matches('(').trim_end_matches(')'))
        })
        .collect();
    format!("({})", tuples.join(","))
}

/// A pattern's header, facets, timeline and nearest members.
///
/// Members come from `queries::pattern_members`; what the table shows of each comes from its
/// `failures` row (keyed by trace id: a handful of primary-key ranges), whose `details` carry
/// the analyzer's excerpts of the request and output. Only members without them are joined to
/// `llm_calls`, by (hour, trace id) so that the calls table is read range by range.
pub async fn pattern_detail(store: &Store, project: &str, item: PatternItem) -> Result<PatternDetail, StoreError> {
    let all = queries::pattern_members(store, project, item.id()).await?;
    let mut per_day: BTreeMap<time::Date, u64> = BTreeMap::new();
    for m in &all {
        *per_day.entry(m.call_time.date()).or_default() += 1;
    }
    let timeline = per_day.into_iter().map(|(d, n)| (format!("{:02}-{:02}", u8::from(d.month()), d.day()), n)).collect();
    let shown = &all[..all.len().min(MEMBERS_SHOWN)];
    let mut failures: HashMap<(String, String), MemberFailure> = HashMap::new();
    let mut calls: HashMap<(String, String), MemberCall> = HashMap::new();
    if let (Some(lo), Some(hi)) = (shown.iter().map(|m| m.call_time).min(), shown.iter().map(|m| m.call_time).max()) {
        let (lo, hi) = (nanos(lo - time::Duration::hours(1)), nanos(hi + time::Duration::hours(1)));
        let traces: Vec<&str> = shown.iter().map(|m| m.trace_id.as_str()).collect::<HashSet<_>>().into_iter().collect();
        let rows: Vec<MemberFailure> = read(store, &format!(
                "SELECT trace_id, span_id, session_id, user_id, feature, model, reasons, details FROM failures FINAL \
                 WHERE project_id = ? AND trace_id IN {} AND call_time >= fromUnixTimestamp64Nano(?) AND call_time <= fromUnixTimestamp64Nano(?)",
                sql_list(&traces)
            ))
            .bind(project)
            .bind(lo)
            .bind(hi)
            .fetch_all()
            .await?;
        failures = rows.into_iter().map(|r| ((r.trace_id.clone(), r.span_id.clone()), r)).collect();
        let missing: Vec<(OffsetDateTime, &str)> = shown
            .iter()
            .filter(|m| {
                failures.get(&(m.trace_id.clone(), m.span_id.clone())).is_none_or(|f| FailureDetails::parse(&f.details).request.is_empty())
            })
            .map(|m| (m.call_time, m.trace_id.as_str()))
            .collect();
        if !missing.is_empty() {
            let rows: Vec<MemberCall> = read(
                store,
                &format!(
                    "SELECT trace_id, span_id, session_id, user_id, feature, \
                     if(response_model != '', response_model, request_model) AS model, status, error_type, finish_reasons, \
                     substring(input_text, 1, {EXCERPT_CHARS}) AS input_text, substring(output_text, 1, {EXCERPT_CHARS}) AS output_text \
                     FROM llm_calls FINAL WHERE project_id = ? AND (toStartOfHour(start_time), trace_id) IN {}",
                    hour_trace_list(&missing)
                ),
            )
            .bind(project)
            .fetch_all()
            .await?;
            calls = rows.into_iter().map(|r| ((r.trace_id.clone(), r.span_id.clone()), r)).collect();
        }
    }
    let members: Vec<Member> = shown
        .iter()
        .map(|m| {
            let key = (m.trace_id.clone(), m.span_id.clone());
            let f = failures.remove(&key);
            let c = calls.remove(&key);
            let d = f.as_ref().map(|f| FailureDetails::parse(&f.details)).unwrap_or_default();
            let reasons = f.as_ref().map(|f| f.reasons.clone()).unwrap_or_default();
            // The failure reasons say what the call row would: an error status, a finish reason.
            let derived_finish: Vec<String> = reasons.iter().filter_map(|r| r.strip_prefix("finish_reason:")).map(String::from).collect();
            let pick = |from_failure: Option<&String>, from_call: Option<&String>| {
                from_failure.filter(|v| !v.is_empty()).or(from_call).cloned().unwrap_or_default()
            };
            Member {
                trace_id: m.trace_id.clone(),
                span_id: m.span_id.clone(),
                call_time: m.call_time,
                distance: m.distance,
                session_id: pick(f.as_ref().map(|f| &f.session_id), c.as_ref().map(|c| &c.session_id)),
                user_id: pick(f.as_ref().map(|f| &f.user_id), c.as_ref().map(|c| &c.user_id)),
                feature: pick(f.as_ref().map(|f| &f.feature), c.as_ref().map(|c| &c.feature)),
                model: pick(f.as_ref().map(|f| &f.model), c.as_ref().map(|c| &c.model)),
                status: match &c {
                    Some(c) => c.status.clone(),
                    None if reasons.iter().any(|r| r == "error_status") => "error".into(),
                    None => String::new(),
                },
                error_type: c.as_ref().map(|c| c.error_type.clone()).unwrap_or_default(),
                finish_reasons: c.as_ref().map(|c| c.finish_reasons.clone()).unwrap_or(derived_finish),
                input_text: Some(d.request.clone())
                    .filter(|r| !r.is_empty())
                    .or_else(|| c.as_ref().map(|c| c.input_text.clone()))
                    .unwrap_or_default(),
                output_text: Some(d.output.clone())
                    .filter(|o| !o.is_empty())
                    .or_else(|| c.as_ref().map(|c| c.output_text.clone()))
                    .unwrap_or_default(),
                reasons,
                contrast: d.contrast,
            }
        })
        .collect();
    let facets = facets_of(&item, &members);
    Ok(PatternDetail { item, facets, timeline, member_count: all.len(), members })
}

/// Facet distributions over the members shown; signals from the pattern's own signal mix
/// (which covers every member).
pub fn facets_of(item: &PatternItem, members: &[Member]) -> Vec<Facet> {
    fn count<'a>(name: &str, values: impl Iterator<Item = &'a str>) -> Facet {
        let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
        for v in values.filter(|v| !v.is_empty()) {
            *counts.entry(v).or_default() += 1;
        }
        let mut values: Vec<(String, u64)> = counts.into_iter().map(|(k, n)| (k.to_string(), n)).collect();
        values.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        Facet { name: name.into(), values }
    }
    let mut signals: Vec<(String, u64)> = item.row.signal_mix.iter().filter(|(_, n)| **n > 0).map(|(k, n)| (k.clone(), *n)).collect();
    signals.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let mut facets = vec![
        count("features", members.iter().map(|m| m.feature.as_str())),
        count("models", members.iter().map(|m| m.model.as_str())),
        count("error types", members.iter().map(|m| m.error_type.as_str())),
        count("reasons", members.iter().flat_map(|m| m.reasons.iter().map(String::as_str))),
        Facet { name: "signals".into(), values: signals },
    ];
    // Before the members load (or when none joined), the analyzer's dominant values still say
    // something.
    for (facet, key) in [(0, "feature"), (1, "model"), (2, "error_type")] {
        let v = item.facet(key);
        if facets[facet].values.is_empty() && !v.is_empty() {
            facets[facet].values.push((v.to_string(), item.row.size));
        }
    }
    facets
}
