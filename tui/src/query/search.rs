//! The search screen: calls by trace id, session id, user id or text, newest first.

use super::*;

#[derive(Row, Deserialize)]
struct HitRow {
    trace_id: String,
    span_id: String,
    session_id: String,
    user_id: String,
    feature: String,
    model: String,
    #[serde(with = "clickhouse::serde::time::datetime64::nanos")]
    start_time: OffsetDateTime,
    status: String,
    snippet: String,
}

/// Calls whose trace, session or user id is `query`, or whose input or output text contains
/// it (case-insensitive), newest first, in the window.
pub async fn search(store: &Store, project: &str, query: &str, window: Window) -> Result<SearchResults, StoreError> {
    let q = query.trim();
    let since = OffsetDateTime::now_utc() - window.duration();
    let hits: Vec<HitRow> = read(store, &format!(
            "SELECT trace_id, span_id, session_id, user_id, feature, \
             if(response_model != '', response_model, request_model) AS model, start_time, status, \
             substring(if(positionCaseInsensitiveUTF8(output_text, ?) > 0 AND positionCaseInsensitiveUTF8(input_text, ?) = 0, output_text, input_text), 1, 200) AS snippet \
             FROM llm_calls FINAL WHERE project_id = ? AND start_time >= fromUnixTimestamp64Nano(?) \
             AND (trace_id = ? OR session_id = ? OR user_id = ? OR positionCaseInsensitiveUTF8(input_text, ?) > 0 \
             OR positionCaseInsensitiveUTF8(output_text, ?) > 0) ORDER BY start_time DESC LIMIT {SEARCH_HITS}"
        ))
        .bind(q)
        .bind(q)
        .bind(project)
        .bind(nanos(since))
        .bind(q)
        .bind(q)
        .bind(q)
        .bind(q)
        .bind(q)
        .fetch_all()
        .await?;
    // Which of them failed, and why: the marks of the result list.
    let traces: Vec<&str> = hits.iter().map(|h| h.trace_id.as_str()).collect::<HashSet<_>>().into_iter().collect();
    let mut reasons = if traces.is_empty() {
        HashMap::new()
    } else {
        let lo = hits.iter().map(|h| h.start_time).min().unwrap_or(since) - time::Duration::hours(1);
        let hi = hits.iter().map(|h| h.start_time).max().unwrap_or(since) + time::Duration::hours(1);
        super::trace::failure_reasons(store, project, &traces, lo, hi).await?
    };
    Ok(SearchResults {
        query: q.to_string(),
        limit: SEARCH_HITS,
        hits: hits
            .into_iter()
            .map(|h| SearchHit {
                reasons: reasons.remove(&(h.trace_id.clone(), h.span_id.clone())).unwrap_or_default(),
                trace_id: h.trace_id,
                span_id: h.span_id,
                session_id: h.session_id,
                user_id: h.user_id,
                feature: h.feature,
                model: h.model,
                start: h.start_time,
                status: h.status,
                snippet: h.snippet,
            })
            .collect(),
    })
}
