//! A model call's row: spans redacted before anything reads them, identity and feature
//! inherited from ancestors in the same request, then the `llm_calls` row itself (priced, its
//! shared contents stored once).

use std::collections::HashMap;

use flywheel_schemas::rows::{ContentRow, LlmCallRow};
use serde_json::Value;
use time::OffsetDateTime;

use super::*;

impl Pipeline {
    pub(super) fn redact_span(&self, span: &mut DecodedSpan) {
        if self.redactor.is_empty() {
            return;
        }
        for v in span.attrs.0.values_mut() {
            self.redactor.redact_value(v);
        }
        for e in &mut span.events {
            for v in e.attrs.0.values_mut() {
                self.redactor.redact_value(v);
            }
        }
        span.status_message = self.redactor.redact(&span.status_message).into_owned();
    }

    /// Session, user and feature from the span's ancestors present in the same request, and
    /// the configured feature attribute, which wins over everything.
    pub(super) fn inherit(&self, span: &DecodedSpan, by_id: &HashMap<(&str, &str), &DecodedSpan>, draft: &mut Draft) {
        let mut ancestors = Vec::new();
        let mut parent = span.ids.parent_span_id.as_str();
        while !parent.is_empty() && ancestors.len() < 64 {
            let Some(p) = by_id.get(&(span.ids.trace_id.as_str(), parent)) else { break };
            ancestors.push(*p);
            parent = p.ids.parent_span_id.as_str();
        }
        for a in &ancestors {
            let (session, user) = normalize::identity_of(&a.view());
            fill!(draft.session_id, session);
            fill!(draft.user_id, user);
        }
        if let Some(attr) = &self.feature_attribute
            && let Some(value) = std::iter::once(span)
                .chain(ancestors.iter().copied())
                .find_map(|s| s.attrs.string(attr).or_else(|| s.resource.string(attr)))
        {
            draft.feature = Some(value);
        }
        fill!(draft.feature, ancestors.iter().find_map(|a| normalize::feature_hint(&a.view())));
        if draft.feature.is_none()
            && let Some(root) = ancestors.last().filter(|r| r.ids.parent_span_id.is_empty())
        {
            draft.feature = Some(root.name.clone());
        }
        fill!(draft.feature, (!span.ids.service_name.is_empty()).then(|| span.ids.service_name.clone()));
    }

    pub(super) fn call_row(
        &self,
        project: &str,
        ids: &SpanIds,
        draft: &Draft,
        is_error: bool,
        now: OffsetDateTime,
        contents: &mut Vec<ContentRow>,
    ) -> LlmCallRow {
        let mut row = normalize::to_row(project, ids, draft, is_error, now);
        if row.cost_usd.is_none() {
            let usage = Usage {
                input: row.input_tokens,
                output: row.output_tokens,
                cache_read: row.cache_read_tokens,
                cache_write: row.cache_write_tokens,
                reasoning: row.reasoning_tokens,
            };
            if let Some(cost) = self.prices.cost(&row.provider, &row.response_model, usage) {
                row.cost_usd = Some(cost);
                row.cost_source = format!("price_table:{}", self.prices.version);
            }
        }
        let mut content = |kind: &str, hash: &str, text: String| {
            if !hash.is_empty() {
                contents.push(ContentRow {
                    project_id: project.to_string(),
                    hash: hash.to_string(),
                    kind: kind.to_string(),
                    content: text,
                    last_seen: now,
                });
            }
        };
        content("system_instructions", &row.system_instructions_hash, draft.system.clone().unwrap_or_default());
        content("tool_definitions", &row.tool_definitions_hash, draft.tool_definitions.as_ref().map(Value::to_string).unwrap_or_default());
        row
    }
}
