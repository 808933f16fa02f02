//! `flywheel bench storage`: insert and read throughput of the storage boundary ([`Store`]) with
//! realistic span rows (maps of GenAI attributes, events, nanosecond timestamps).
//!
//! It writes into a scratch database `<database>_bench`, dropped at the end, so it never
//! touches real data. Figures are printed, never asserted.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::Instant;

use time::OffsetDateTime;

use crate::error::StoreError;
use crate::migrate::{MIGRATIONS, render};
use crate::rows::SpanRow;
use crate::store::Store;

/// A realistic LLM-call span: ~25 attributes, one event, a few hundred bytes of content.
pub fn sample_span(i: usize, now: OffsetDateTime) -> SpanRow {
    let start = now - time::Duration::milliseconds((i % 86_400_000) as i64);
    let models = ["gpt-4o-mini", "claude-sonnet-4", "gpt-4.1", "gemini-2.5-flash"];
    let model = models[i % models.len()];
    let mut attributes: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in [
        ("gen_ai.operation.name", "chat".to_string()),
        ("gen_ai.provider.name", "openai".to_string()),
        ("gen_ai.request.model", model.to_string()),
        ("gen_ai.response.model", format!("{model}-2025-01-01")),
        ("gen_ai.usage.input_tokens", (100 + i % 900).to_string()),
        ("gen_ai.usage.output_tokens", (20 + i % 300).to_string()),
        ("gen_ai.response.finish_reasons", "[\"stop\"]".to_string()),
        ("gen_ai.response.id", format!("chatcmpl-{i:012}")),
        ("gen_ai.conversation.id", format!("session-{}", i / 7)),
        ("user.id", format!("user-{}", i % 5000)),
        ("gen_ai.request.temperature", "0.2".to_string()),
        ("server.address", "api.openai.com".to_string()),
        (
            "gen_ai.input.messages",
            format!(
                "[{{\"role\":\"user\",\"parts\":[{{\"type\":\"text\",\"content\":\"How do I get a refund for order {i}? I was charged twice.\"}}]}}]"
            ),
        ),
        (
            "gen_ai.output.messages",
            "[{\"role\":\"assistant\",\"parts\":[{\"type\":\"text\",\"content\":\"I'm sorry about the double charge. Refunds are processed within 5 business days.\"}],\"finish_reason\":\"stop\"}]".to_string(),
        ),
    ] {
        attributes.insert(k.to_string(), v);
    }
    SpanRow {
        project_id: format!("project-{}", i % 3),
        trace_id: format!("{:032x}", (i as u128).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835)),
        span_id: format!("{:016x}", (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)),
        parent_span_id: String::new(),
        trace_state: String::new(),
        name: format!("chat {model}"),
        kind: "client".into(),
        start_time: start,
        end_time: start + time::Duration::milliseconds(800 + (i % 2000) as i64),
        duration_ns: 800_000_000 + (i % 2000) as u64 * 1_000_000,
        status_code: if i.is_multiple_of(20) { "error".into() } else { "unset".into() },
        status_message: String::new(),
        service_name: "support-bot".into(),
        scope_name: "opentelemetry.instrumentation.openai_v2".into(),
        scope_version: "2.4b0".into(),
        resource_attributes: BTreeMap::from([
            ("service.name".to_string(), "support-bot".to_string()),
            ("telemetry.sdk.language".to_string(), "python".to_string()),
        ]),
        scope_attributes: BTreeMap::new(),
        attributes,
        dropped_attributes_count: 0,
        event_times: vec![start],
        event_names: vec!["gen_ai.content.prompt".into()],
        event_attributes: vec![BTreeMap::from([("gen_ai.prompt".to_string(), "hello".to_string())])],
        dropped_events_count: 0,
        link_trace_ids: vec![],
        link_span_ids: vec![],
        link_attributes: vec![],
        dropped_links_count: 0,
        ingested_at: now,
    }
}

/// Inserts `rows` spans once per batch size, then reads them back and aggregates them.
pub async fn storage(store: &Store, rows: usize, batch_sizes: &[usize]) -> Result<String, StoreError> {
    let scratch = store.with_database(&format!("{}_bench", store.database()));
    scratch.with_database("default").execute(&format!("DROP DATABASE IF EXISTS `{}`", scratch.database())).await?;
    scratch.with_database("default").execute(&format!("CREATE DATABASE `{}`", scratch.database())).await?;
    let ddl = render(&MIGRATIONS[0], scratch.database(), None, &Default::default())?;
    let spans_ddl = ddl.iter().find(|s| s.contains("EXISTS spans")).expect("the first migration creates spans");

    let now = OffsetDateTime::now_utc();
    let data: Vec<SpanRow> = (0..rows).map(|i| sample_span(i, now)).collect();
    let mut out = String::new();
    let _ = writeln!(out, "storage boundary on {} — {rows} span rows (~25 attributes each)", store.url());
    let _ = writeln!(out, "{:<28} {:>10} {:>12} {:>10}", "operation", "batch", "rows/s", "seconds");
    for &batch in batch_sizes {
        scratch.execute("DROP TABLE IF EXISTS spans").await?;
        scratch.execute(spans_ddl).await?;
        let t = Instant::now();
        scratch.insert_batched("spans", &data, batch, None).await?;
        let secs = t.elapsed().as_secs_f64();
        let _ = writeln!(out, "{:<28} {:>10} {:>12.0} {:>10.2}", "insert", batch, rows as f64 / secs, secs);
    }
    let t = Instant::now();
    let read = scratch.query("SELECT ?fields FROM spans").for_each(|_: SpanRow| {}).await?;
    let secs = t.elapsed().as_secs_f64();
    let _ = writeln!(out, "{:<28} {:>10} {:>12.0} {:>10.2}", "fetch (typed, all columns)", "-", read as f64 / secs, secs);
    let t = Instant::now();
    let groups: Vec<(String, u64, f64)> = scratch
        .query("SELECT attributes['gen_ai.request.model'] AS m, count(), avg(duration_ns) FROM spans GROUP BY m ORDER BY m")
        .fetch_all()
        .await?;
    let secs = t.elapsed().as_secs_f64();
    let _ = writeln!(out, "{:<28} {:>10} {:>12.0} {:>10.2}", "aggregate by map key", "-", rows as f64 / secs, secs);
    debug_assert_eq!(groups.iter().map(|g| g.1).sum::<u64>(), rows as u64);
    scratch.with_database("default").execute(&format!("DROP DATABASE `{}`", scratch.database())).await?;
    Ok(out)
}
