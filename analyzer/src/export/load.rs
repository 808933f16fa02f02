//! Reads what the export and the report need about failing calls, in a few batched queries per
//! pattern: the failures rows, their LLM calls, the shared system instructions and tool
//! definitions (`contents`, by hash), the signals on them and their cached embeddings.

use std::collections::{BTreeMap, HashMap, HashSet};

use flywheel_schemas::Store;
use flywheel_schemas::StoreError;
use flywheel_schemas::rows::{ContentRow, EmbeddingRow, FailureRow, LlmCallRow, PatternMemberRow, SignalRow};
use serde_json::Value;

use super::case::FailingCall;

/// The failing calls of `members`, in the members' order; members whose failure row is gone
/// (retention) are left out.
pub async fn failing_calls(store: &Store, project: &str, members: &[PatternMemberRow]) -> Result<Vec<FailingCall>, StoreError> {
    if members.is_empty() {
        return Ok(Vec::new());
    }
    let traces: Vec<String> = members.iter().map(|m| m.trace_id.clone()).collect::<HashSet<_>>().into_iter().collect();
    let failures: Vec<FailureRow> = store
        .query("SELECT ?fields FROM failures FINAL WHERE project_id = ? AND has(?, trace_id)")
        .bind(project)
        .bind(&traces)
        .fetch_all()
        .await?;
    let mut failures: HashMap<(String, String), FailureRow> =
        failures.into_iter().map(|f| ((f.trace_id.clone(), f.span_id.clone()), f)).collect();
    let calls: Vec<LlmCallRow> = store
        .query("SELECT ?fields FROM llm_calls FINAL WHERE project_id = ? AND has(?, trace_id)")
        .bind(project)
        .bind(&traces)
        .fetch_all()
        .await?;
    let mut calls: HashMap<(String, String), LlmCallRow> =
        calls.into_iter().map(|c| ((c.trace_id.clone(), c.span_id.clone()), c)).collect();
    let signals: Vec<SignalRow> = store
        .query("SELECT ?fields FROM signals FINAL WHERE project_id = ? AND has(?, trace_id) ORDER BY timestamp")
        .bind(project)
        .bind(&traces)
        .fetch_all()
        .await?;
    let hashes: Vec<String> = calls
        .values()
        .flat_map(|c| [c.system_instructions_hash.clone(), c.tool_definitions_hash.clone()])
        .filter(|h| !h.is_empty())
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let contents: HashMap<String, String> = if hashes.is_empty() {
        HashMap::new()
    } else {
        let rows: Vec<ContentRow> = store
            .query("SELECT ?fields FROM contents FINAL WHERE project_id = ? AND has(?, hash)")
            .bind(project)
            .bind(&hashes)
            .fetch_all()
            .await?;
        rows.into_iter().map(|r| (r.hash, r.content)).collect()
    };
    // The structured output asked for lives in span attributes, read by meaning as the
    // format rule reads it.
    let formats: Vec<Spec> = store
        .query(&format!(
            "SELECT trace_id, span_id, {} AS spec FROM spans WHERE project_id = ? AND has(?, trace_id) AND spec != ''",
            crate::detect::FORMAT_SPEC_SQL
        ))
        .bind(crate::detect::RESPONSE_FORMAT_RE)
        .bind(project)
        .bind(&traces)
        .fetch_all()
        .await?;
    let formats: HashMap<(String, String), String> = formats.into_iter().map(|s| ((s.trace_id, s.span_id), s.spec)).collect();
    let mut out = Vec::new();
    for m in members {
        let key = (m.trace_id.clone(), m.span_id.clone());
        let Some(failure) = failures.remove(&key) else { continue };
        let call = calls.remove(&key);
        let system = call.as_ref().and_then(|c| contents.get(&c.system_instructions_hash)).filter(|s| !s.is_empty()).cloned();
        let tools = call
            .as_ref()
            .and_then(|c| contents.get(&c.tool_definitions_hash))
            .and_then(|t| serde_json::from_str::<Value>(t).ok())
            .filter(|v| !v.is_null());
        let signals =
            signals.iter().filter(|s| s.trace_id == m.trace_id && (s.span_id == m.span_id || s.span_id.is_empty())).cloned().collect();
        let response_format = formats.get(&key).and_then(|spec| crate::detect::format::response_format(spec));
        out.push(FailingCall { failure, call, system, tools, response_format, signals });
    }
    Ok(out)
}

#[derive(clickhouse::Row, serde::Deserialize)]
struct Spec {
    trace_id: String,
    span_id: String,
    spec: String,
}

/// The vectors of `calls` (by `failures.details.text_hash`) under the model that covers most of
/// them, when it covers all of them; `None` otherwise (the caller falls back to lexical).
pub async fn embeddings(store: &Store, project: &str, calls: &[FailingCall]) -> Result<Option<(String, Vec<Vec<f32>>)>, StoreError> {
    let hashes: Vec<Option<String>> = calls.iter().map(|c| Some(c.details().text_hash).filter(|h| !h.is_empty())).collect();
    if calls.is_empty() || hashes.iter().any(Option::is_none) {
        return Ok(None);
    }
    let wanted: Vec<String> = hashes.iter().flatten().cloned().collect::<HashSet<_>>().into_iter().collect();
    let rows: Vec<EmbeddingRow> = store
        .query("SELECT ?fields FROM embeddings FINAL WHERE project_id = ? AND has(?, text_hash)")
        .bind(project)
        .bind(&wanted)
        .fetch_all()
        .await?;
    let mut by_model: BTreeMap<String, HashMap<String, Vec<f32>>> = BTreeMap::new();
    for r in rows {
        by_model.entry(r.model).or_default().insert(r.text_hash, r.vector);
    }
    let best = by_model.into_iter().max_by(|a, b| a.1.len().cmp(&b.1.len()).then_with(|| b.0.cmp(&a.0)));
    let Some((model, vectors)) = best else { return Ok(None) };
    let ordered: Option<Vec<Vec<f32>>> = hashes.iter().map(|h| h.as_ref().and_then(|h| vectors.get(h)).cloned()).collect();
    Ok(ordered.map(|v| (model, v)))
}
