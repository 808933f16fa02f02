//! Feedback signals: explicit and implicit user reactions, linked to the calls they judge.
//!
//! Three ways in, one way to storage: `POST /v1/signals` (JSON, see [`wire`]), OTLP log records
//! and span events named `flywheel.signal` (same fields as attributes). Each signal is
//! validated, deduplicated by idempotency key, linked ([`link`]) and written to `signals`.
//! Browsers submit with a signed [`token`] instead of an API key. Implicit signals that the
//! application never sends are derived from the traffic itself ([`derive`]).

pub mod derive;
pub mod link;
pub mod token;
pub mod wire;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use flywheel_schemas::Store;
use flywheel_schemas::rows::SignalRow;
use time::OffsetDateTime;

use crate::normalize::content_hash;
use token::Claims;
use wire::{Invalid, Signal};

/// Where a signal came from (`signals.source`).
pub const SOURCE_API: &str = "api";
pub const SOURCE_OTLP_LOG: &str = "otlp_log";
pub const SOURCE_SPAN_EVENT: &str = "span_event";
pub const SOURCE_DERIVED: &str = "derived";

/// What became of one signal of a request.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Accepted {
    pub index: usize,
    pub signal_id: String,
    pub link_status: String,
    /// Already stored under the same idempotency key: not stored again.
    pub duplicate: bool,
}

/// The rows to write for a request, and the answer for each of its signals.
#[derive(Debug, Default)]
pub struct Prepared {
    pub rows: Vec<SignalRow>,
    pub accepted: Vec<Accepted>,
    pub rejected: Vec<Invalid>,
    keys: Vec<(String, String)>,
}

pub struct SignalService {
    store: Store,
    message_attribute: Option<String>,
    /// Idempotency keys stored recently: a resend is answered without a query.
    recent: Mutex<HashMap<(String, String), Instant>>,
}

/// The id of a signal: stable for an idempotency key (a resent signal gets the same id and is
/// stored once), unique otherwise.
pub fn signal_id(project: &str, idempotency_key: &str) -> String {
    if idempotency_key.is_empty() {
        let nonce: u128 = rand::random();
        format!("s_{nonce:032x}")
    } else {
        format!("k_{}", content_hash(&format!("{project}\u{0}{idempotency_key}")))
    }
}

impl SignalService {
    pub fn new(store: Store, message_attribute: Option<String>) -> SignalService {
        SignalService { store, message_attribute, recent: Mutex::new(HashMap::new()) }
    }

    pub fn message_attribute(&self) -> Option<&str> {
        self.message_attribute.as_deref()
    }

    /// Validated signals → rows ready to write (deduplicated, linked). A token, when the request
    /// came with one, restricts targets to its scope (see [`token_defaults`] for the fill-in).
    ///
    /// Deduplication and linking read ClickHouse; when it does not answer, the signals are
    /// still prepared — not linked yet (`pending`, or `session` when a session is their only
    /// target) — so that they go to the write-ahead log like spans and are acknowledged once
    /// durable. The link job ([`link::resolve_pending`]) links them once ClickHouse is back; a
    /// keyed signal resent meanwhile has the same `signal_id` and collapses with it in storage.
    #[tracing::instrument(name = "prepare signals", skip_all, fields(project = %project, source = %source))]
    pub async fn prepare(&self, project: &str, items: Vec<Result<Signal, Invalid>>, source: &str, token: Option<&Claims>) -> Prepared {
        let now = OffsetDateTime::now_utc();
        let mut out = Prepared::default();
        let mut candidates: Vec<(usize, SignalRow)> = Vec::new();
        for (index, item) in items.into_iter().enumerate() {
            let s = match item {
                Ok(s) => s,
                Err(invalid) => {
                    out.rejected.push(invalid);
                    continue;
                }
            };
            let mut row = row(project, s, source, now);
            if let Some(claims) = token {
                if let Err(e) = claims.allows(&row.trace_id, &row.span_id, &row.message_id, &row.session_id) {
                    let field = out_of_scope_field(claims, &row);
                    out.rejected.push(Invalid { index, field: field.into(), error: e.to_string() });
                    continue;
                }
                // A browser's idempotency keys live in its token's scope: a token holder
                // cannot take the keys of the back end (or of another token) and so make their
                // signals count as duplicates.
                if !row.idempotency_key.is_empty() {
                    row.signal_id = signal_id(
                        project,
                        &format!("token\u{0}{}\u{0}{}\u{0}{}\u{0}{}", claims.t, claims.m, claims.s, row.idempotency_key),
                    );
                }
            }
            candidates.push((index, row));
        }
        // Idempotency: a key seen recently or already stored is acknowledged, not stored again.
        let keyed: Vec<String> =
            candidates.iter().filter(|(_, r)| !r.idempotency_key.is_empty()).map(|(_, r)| r.signal_id.clone()).collect();
        let stored: Vec<String> = if keyed.is_empty() {
            Vec::new()
        } else {
            let query = self.store.query("SELECT DISTINCT signal_id FROM signals WHERE project_id = ? AND has(?, signal_id)");
            crate::deadline::within(&self.store, crate::deadline::QUERY, query.bind(project).bind(&keyed).fetch_all()).await.unwrap_or_else(
                |e| {
                    tracing::warn!(error = %e, "idempotency lookup failed; deduplication is left to storage (same signal_id)");
                    Vec::new()
                },
            )
        };
        let mut fresh = Vec::new();
        {
            let recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
            let mut in_request = std::collections::HashSet::new();
            for (index, r) in candidates {
                let key = (project.to_string(), r.signal_id.clone());
                let duplicate = !r.idempotency_key.is_empty()
                    && (stored.contains(&r.signal_id) || recent.contains_key(&key) || !in_request.insert(r.signal_id.clone()));
                if duplicate {
                    out.accepted.push(Accepted { index, signal_id: r.signal_id.clone(), link_status: String::new(), duplicate: true });
                } else {
                    fresh.push((index, r));
                }
            }
        }
        let mut rows: Vec<SignalRow> = fresh.iter().map(|(_, r)| r.clone()).collect();
        let linking = link::link(&self.store, project, &mut rows, self.message_attribute.as_deref());
        if let Err(e) = crate::deadline::within(&self.store, crate::deadline::QUERY, linking).await {
            tracing::warn!(error = %e, signals = rows.len(), "cannot link signals now; stored as pending, linked when ClickHouse answers");
            link::defer(&mut rows);
        }
        for ((index, _), r) in fresh.iter().zip(&rows) {
            out.accepted.push(Accepted {
                index: *index,
                signal_id: r.signal_id.clone(),
                link_status: r.link_status.clone(),
                duplicate: false,
            });
            if !r.idempotency_key.is_empty() {
                out.keys.push((project.to_string(), r.signal_id.clone()));
            }
        }
        out.accepted.sort_by_key(|a| a.index);
        out.rows = rows;
        out
    }

    /// Remembers the idempotency keys of rows now stored.
    pub fn stored(&self, prepared: &Prepared) {
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if recent.len() > 100_000 {
            recent.retain(|_, at| now.duration_since(*at) < Duration::from_secs(600));
        }
        for key in &prepared.keys {
            recent.insert(key.clone(), now);
        }
    }
}

/// The field of a signal that falls outside its token's scope, for the refusal.
fn out_of_scope_field(claims: &Claims, row: &SignalRow) -> &'static str {
    let outside = |named: &str, scope: &str| !named.is_empty() && named != scope;
    if outside(&row.trace_id, &claims.t) {
        "trace_id"
    } else if outside(&row.message_id, &claims.m) {
        "message_id"
    } else if outside(&row.session_id, &claims.s) {
        "session_id"
    } else {
        "span_id"
    }
}

/// A browser posting with a token may leave the target out: the token's scope is the target.
pub fn token_defaults(item: &mut serde_json::Value, claims: &Claims) {
    let serde_json::Value::Object(map) = item else { return };
    let named = |map: &serde_json::Map<String, serde_json::Value>, k: &str| map.get(k).is_some_and(|v| !v.is_null());
    // A span of the token's trace: the trace is implied.
    if named(map, "span_id") && !named(map, "trace_id") && !claims.t.is_empty() {
        map.insert("trace_id".into(), serde_json::Value::String(claims.t.clone()));
    }
    if ["trace_id", "span_id", "session_id", "message_id"].iter().any(|k| named(map, k)) {
        return;
    }
    for (field, value) in [("trace_id", &claims.t), ("message_id", &claims.m), ("session_id", &claims.s)] {
        if !value.is_empty() {
            map.insert(field.into(), serde_json::Value::String(value.clone()));
        }
    }
}

fn row(project: &str, s: Signal, source: &str, now: OffsetDateTime) -> SignalRow {
    SignalRow {
        project_id: project.to_string(),
        signal_id: signal_id(project, &s.idempotency_key),
        idempotency_key: s.idempotency_key,
        kind: s.kind,
        name: s.name,
        source: source.to_string(),
        timestamp: s.timestamp.unwrap_or(now),
        trace_id: s.trace_id,
        span_id: s.span_id,
        session_id: s.session_id,
        message_id: s.message_id,
        user_id: s.user_id,
        feature: s.feature,
        value: s.value,
        scale: s.scale,
        comment: s.comment,
        text: s.text.unwrap_or_default(),
        edit_distance: None,
        edit_ratio: None,
        link_status: String::new(),
        attributes: s.attributes,
        ingested_at: now,
    }
}
