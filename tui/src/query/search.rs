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
    Ok(SearchResults {
        query: q.to_string(),
        hits: hits
            .into_iter()
            .map(|h| SearchHit {
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
