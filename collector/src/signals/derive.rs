//! Derived implicit signals (`source = derived`): reactions that the application never sends
//! but that the traffic shows.
//!
//! * `regenerate`: the same user asks again, in the same session, within minutes, with a
//!   near-identical request (an implicit regeneration even when the app has no button for it).
//! * `retry`: a failed call followed by a near-identical request (the user or the app retried).
//! * `abandon`: a session whose last turn was an error or a refusal, then silence.
//!
//! A turn is the first model call of a trace (the user's request). Derivation reads recent
//! calls from ClickHouse, so it works across collectors and restarts; ids are deterministic
//! (rule + call), so running it again never duplicates a signal.

use std::collections::{BTreeMap, HashSet};

use clickhouse::Row;
use flywheel_schemas::rows::SignalRow;
use flywheel_schemas::{Store, StoreError};
use serde::Deserialize;
use time::OffsetDateTime;

use crate::normalize::content_hash;

#[derive(Debug, Clone, serde::Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct DeriveConfig {
    /// How often the collector derives signals (0 = never; `flywheel analyze` derives anyway).
    pub interval_secs: u64,
    /// How far back each run looks.
    pub lookback_secs: u64,
    /// Two requests within this delay can be a regeneration / retry.
    pub repeat_window_secs: u64,
    /// Similarity (0–1) above which two requests are "the same question again".
    pub repeat_similarity: f64,
    /// Silence after which a session that ended on an error or a refusal counts as abandoned.
    pub abandon_after_secs: u64,
}

impl Default for DeriveConfig {
    fn default() -> Self {
        DeriveConfig {
            interval_secs: 60,
            // Abandonment needs `abandon_after_secs` of silence, and a run that came late.
            lookback_secs: 3600,
            repeat_window_secs: 300,
            repeat_similarity: 0.8,
            abandon_after_secs: 1800,
        }
    }
}

/// Phrases of a refusal (lowercase). The analyzer's rules are richer; this is what a session
/// ending on a refusal needs.
const REFUSALS: &[&str] = &[
    "i'm sorry, but i can't",
    "i am sorry, but i can't",
    "i'm sorry, but i cannot",
    "i can't help with",
    "i cannot help with",
    "i can't assist with",
    "i cannot assist with",
    "i'm unable to help",
    "i am unable to help",
    "i'm not able to help",
    "i won't be able to help",
];

pub fn is_refusal(output: &str) -> bool {
    let lower = output.to_lowercase();
    REFUSALS.iter().any(|p| lower.contains(p))
}

#[derive(Debug, Clone, Row, Deserialize)]
pub struct Turn {
    pub project_id: String,
    pub session_id: String,
    pub trace_id: String,
    pub span_id: String,
    pub user_id: String,
    pub feature: String,
    #[serde(with = "clickhouse::serde::time::datetime64::nanos")]
    pub start_time: OffsetDateTime,
    pub input_text: String,
    pub output_text: String,
    pub status: String,
    /// The request ends with a tool result: the application continuing a tool loop (in a
    /// trace of its own when nothing groups the calls), not the user asking.
    pub continues: bool,
}

/// How alike two requests are: the better of word-set overlap (robust to reordering) and
/// normalised edit similarity (robust to typos), on lowercase text.
pub fn similarity(a: &str, b: &str) -> f64 {
    let (a, b) = (a.trim().to_lowercase(), b.trim().to_lowercase());
    if a.is_empty() || b.is_empty() {
        return 0.0;
    }
    let words =
        |s: &str| -> HashSet<String> { s.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).map(str::to_string).collect() };
    let (wa, wb) = (words(&a), words(&b));
    let jaccard = if wa.is_empty() && wb.is_empty() { 0.0 } else { wa.intersection(&wb).count() as f64 / wa.union(&wb).count() as f64 };
    let (sa, sb): (String, String) = (a.chars().take(1000).collect(), b.chars().take(1000).collect());
    jaccard.max(strsim::normalized_levenshtein(&sa, &sb))
}

fn derived(t: &Turn, kind: &str, rule: &str, at: OffsetDateTime, attributes: BTreeMap<String, String>, now: OffsetDateTime) -> SignalRow {
    SignalRow {
        project_id: t.project_id.clone(),
        signal_id: format!("d_{}", content_hash(&format!("{}/{rule}/{}/{}", t.project_id, t.trace_id, t.span_id))),
        idempotency_key: String::new(),
        kind: kind.into(),
        name: rule.into(),
        source: super::SOURCE_DERIVED.into(),
        timestamp: at,
        trace_id: t.trace_id.clone(),
        span_id: t.span_id.clone(),
        session_id: t.session_id.clone(),
        message_id: String::new(),
        user_id: t.user_id.clone(),
        feature: t.feature.clone(),
        value: None,
        scale: None,
        comment: String::new(),
        text: String::new(),
        edit_distance: None,
        edit_ratio: None,
        link_status: super::link::LINKED.into(),
        attributes,
        ingested_at: now,
    }
}

/// Derives signals from turns given one at a time, sorted by project, session and time: it
/// holds only the previous turn and what it derived, so a run's memory does not grow with the
/// traffic it reads.
pub struct Deriver<'a> {
    cfg: &'a DeriveConfig,
    now: OffsetDateTime,
    previous: Option<Turn>,
    pub derived: Vec<SignalRow>,
}

impl<'a> Deriver<'a> {
    pub fn new(cfg: &'a DeriveConfig, now: OffsetDateTime) -> Self {
        Deriver { cfg, now, previous: None, derived: Vec::new() }
    }

    pub fn push(&mut self, b: Turn) {
        if let Some(a) = self.previous.take() {
            if a.project_id != b.project_id || a.session_id != b.session_id {
                self.abandoned(&a);
            } else {
                self.repeated(&a, &b);
            }
        }
        self.previous = Some(b);
    }

    pub fn finish(mut self) -> Vec<SignalRow> {
        if let Some(last) = self.previous.take() {
            self.abandoned(&last);
        }
        self.derived
    }

    /// `b` asks again what `a` asked: a regeneration, or a retry after a failure.
    fn repeated(&mut self, a: &Turn, b: &Turn) {
        let window = time::Duration::seconds(self.cfg.repeat_window_secs as i64);
        // A tool loop's follow-up repeats the user's last message with the tool's answer after
        // it: the same words, but no one asked again.
        if a.user_id != b.user_id || b.start_time - a.start_time > window || b.continues {
            return;
        }
        let score = similarity(&a.input_text, &b.input_text);
        if score < self.cfg.repeat_similarity {
            return;
        }
        let attrs = BTreeMap::from([("next_trace_id".to_string(), b.trace_id.clone()), ("similarity".to_string(), format!("{score:.2}"))]);
        let (kind, rule) = if a.status == "error" { ("retry", "repeated_failed_request") } else { ("regenerate", "repeated_request") };
        self.derived.push(derived(a, kind, rule, b.start_time, attrs, self.now));
    }

    /// `t` is the last turn of its session: abandoned when it failed and silence followed.
    fn abandoned(&mut self, t: &Turn) {
        let quiet = time::Duration::seconds(self.cfg.abandon_after_secs as i64);
        if self.now - t.start_time < quiet {
            return;
        }
        let reason = if t.status == "error" {
            "error"
        } else if is_refusal(&t.output_text) {
            "refusal"
        } else {
            return;
        };
        let attrs = BTreeMap::from([("after".to_string(), reason.to_string())]);
        self.derived.push(derived(t, "abandon", "session_ended_after_failure", t.start_time + quiet, attrs, self.now));
    }
}

/// The derived signals of a list of turns (sorted by project, session, time).
pub fn derive_from(turns: &[Turn], cfg: &DeriveConfig, now: OffsetDateTime) -> Vec<SignalRow> {
    let mut deriver = Deriver::new(cfg, now);
    for t in turns {
        deriver.push(t.clone());
    }
    deriver.finish()
}

/// Reads the recent turns of every project as a stream, derives signals and stores those not
/// stored yet.
pub async fn run(store: &Store, cfg: &DeriveConfig) -> Result<Vec<SignalRow>, StoreError> {
    let now = OffsetDateTime::now_utc();
    let since = now - time::Duration::seconds(cfg.lookback_secs as i64);
    let mut deriver = Deriver::new(cfg, now);
    store
        .query(
            // Aggregates are computed under other names, then renamed, because an alias equal to
            // a column name would shadow the column inside the other aggregates.
            "SELECT project_id, session_id, trace_id, s AS span_id, u AS user_id, f AS feature, t AS start_time, i AS input_text, \
             o AS output_text, st AS status, c AS continues FROM ( \
               SELECT project_id, session_id, trace_id, argMin(span_id, start_time) AS s, argMin(user_id, start_time) AS u, \
                 argMin(feature, start_time) AS f, min(start_time) AS t, argMin(input_text, start_time) AS i, \
                 argMax(output_text, start_time) AS o, if(countIf(status = 'error') > 0, 'error', 'ok') AS st, \
                 argMin(JSONExtractString(input_messages, -1, 'role') IN ('tool', 'function') \
                   OR position(JSONExtractRaw(input_messages, -1), '\"tool_call_response\"') > 0, start_time) AS c \
               FROM llm_calls FINAL WHERE start_time >= fromUnixTimestamp64Nano(?) AND session_id != '' AND operation != 'embeddings' \
               GROUP BY project_id, session_id, trace_id) ORDER BY project_id, session_id, start_time",
        )
        .bind(since.unix_timestamp_nanos() as i64)
        .for_each(|turn: Turn| deriver.push(turn))
        .await?;
    let candidates = deriver.finish();
    let mut existing = HashSet::new();
    for chunk in candidates.chunks(1000) {
        let ids: Vec<&String> = chunk.iter().map(|s| &s.signal_id).collect();
        let found: Vec<String> = store
            .query("SELECT DISTINCT signal_id FROM signals WHERE source = ? AND timestamp >= fromUnixTimestamp64Nano(?) AND signal_id IN ?")
            .bind(super::SOURCE_DERIVED)
            .bind(since.unix_timestamp_nanos() as i64)
            .bind(ids)
            .fetch_all()
            .await?;
        existing.extend(found);
    }
    let fresh: Vec<SignalRow> = candidates.into_iter().filter(|s| !existing.contains(&s.signal_id)).collect();
    if !fresh.is_empty() {
        store.insert("signals", &fresh).await?;
    }
    Ok(fresh)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn turn(session: &str, trace: &str, secs: i64, input: &str, output: &str, status: &str) -> Turn {
        Turn {
            project_id: "p".into(),
            session_id: session.into(),
            trace_id: trace.into(),
            span_id: format!("{trace}-span"),
            user_id: "u".into(),
            feature: "support".into(),
            start_time: OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(1_000_000 + secs),
            input_text: input.into(),
            output_text: output.into(),
            status: status.into(),
            continues: false,
        }
    }

    #[test]
    fn a_tool_loop_continued_in_a_new_trace_is_no_regeneration() {
        let cfg = DeriveConfig::default();
        let now = OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(1_000_100);
        let question = "What's the weather in Paris?";
        let mut follow_up = turn("s", "t2", 2, question, "It is 18°C in Paris.", "ok");
        follow_up.continues = true;
        let turns = vec![turn("s", "t1", 0, question, "", "ok"), follow_up, turn("s", "t3", 30, question, "Still 18°C.", "ok")];
        let signals = derive_from(&turns, &cfg, now);
        let pairs: Vec<(&str, &str)> = signals.iter().map(|s| (s.trace_id.as_str(), s.attributes["next_trace_id"].as_str())).collect();
        assert_eq!(pairs, vec![("t2", "t3")], "the user asking again after the answer is one; the tool loop's follow-up is not");
    }

    #[test]
    fn asking_again_is_a_regeneration_and_unrelated_requests_are_not() {
        let cfg = DeriveConfig::default();
        let now = OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(1_000_100);
        let turns = vec![
            turn("s1", "t1", 0, "How do I get a refund for order 123?", "Refunds take 90 days in cash.", "ok"),
            turn("s1", "t2", 40, "how do i get a refund for order 123", "Refunds go back to your card.", "ok"),
            turn("s1", "t3", 90, "Can you change my delivery address?", "Sure.", "ok"),
            turn("s2", "t4", 95, "Can you change my delivery address?", "Sure.", "ok"),
        ];
        let signals = derive_from(&turns, &cfg, now);
        assert_eq!(signals.len(), 1, "{signals:#?}");
        assert_eq!(signals[0].kind, "regenerate");
        assert_eq!(signals[0].trace_id, "t1");
        assert_eq!(signals[0].attributes["next_trace_id"], "t2");
        assert_eq!(signals[0].source, "derived");
        assert_eq!(derive_from(&turns, &cfg, now)[0].signal_id, signals[0].signal_id, "deterministic ids");
    }

    #[test]
    fn too_late_is_not_a_regeneration_and_failed_repeats_are_retries() {
        let cfg = DeriveConfig::default();
        let now = OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(1_000_000);
        let late = vec![turn("s", "a", 0, "reset my password", "ok", "ok"), turn("s", "b", 3600, "reset my password", "ok", "ok")];
        assert!(derive_from(&late, &cfg, now).is_empty());
        let retry = vec![turn("s", "a", 0, "reset my password", "", "error"), turn("s", "b", 5, "reset my password", "done", "ok")];
        assert_eq!(derive_from(&retry, &cfg, now)[0].kind, "retry");
    }

    #[test]
    fn a_session_ending_on_a_refusal_or_an_error_is_abandoned() {
        let cfg = DeriveConfig::default();
        let now = OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(1_000_000 + 7200);
        let turns = vec![
            turn("s1", "a", 0, "write a SQL query for sales", "I'm sorry, but I can't help with that.", "ok"),
            turn("s2", "b", 0, "hello", "", "error"),
            turn("s3", "c", 0, "hello", "Hi! How can I help?", "ok"),
            turn("s4", "d", 7000, "hello", "", "error"),
        ];
        let signals = derive_from(&turns, &cfg, now);
        let abandoned: Vec<&str> = signals.iter().filter(|s| s.kind == "abandon").map(|s| s.session_id.as_str()).collect();
        assert_eq!(abandoned, vec!["s1", "s2"], "s3 ended well, s4 is too recent to call");
    }

    #[test]
    fn similarity_is_robust_to_case_order_and_typos() {
        assert!(similarity("Refund for order 123?", "refund for order 123") > 0.9);
        assert!(similarity("my order never arrived, where is it", "where is my order, it never arrived") > 0.8);
        assert!(similarity("reset my pasword", "reset my password") > 0.9);
        assert!(similarity("reset my password", "what is your refund policy") < 0.3);
    }
}
