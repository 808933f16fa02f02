//! Features of each failure: the text views a human would read (request, answer, error, tools,
//! the user's correction) and the structured facets (feature, model, provider, error type,
//! finish reason, signal kinds, tools, latency and token buckets), in a polars frame.
//!
//! The *signature* column is the failure's cause key ([`crate::cause`]): when the system itself
//! names the failure, that name is the pattern's backbone and text only describes it. Failures
//! with user signals only have no signature; their text has to speak.

use std::collections::BTreeSet;

use polars::prelude::*;

use crate::cause::Cause;
use crate::detect::{Call, Failure, excerpt};
use crate::error::AnalyzerError;

/// The readable views of one failure.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TextViews {
    pub request: String,
    pub output: String,
    pub error: String,
    pub tools: String,
    pub edit: String,
}

impl TextViews {
    pub fn of(f: &Failure) -> TextViews {
        let c = &f.call;
        let mut error: Vec<String> = Vec::new();
        if !c.error_message.is_empty() {
            error.push(excerpt(&c.error_message, 300));
        }
        error.extend(f.tool_errors.iter().cloned());
        let mut tools: Vec<String> = c.tool_names.clone();
        if !c.tool_calls.is_empty() {
            tools.push(tool_arguments(c));
        }
        TextViews {
            request: excerpt(&c.input_text, 400),
            output: excerpt(&c.output_text, 600),
            error: error.join(" | "),
            tools: tools.into_iter().filter(|t| !t.is_empty()).collect::<Vec<_>>().join(" "),
            edit: excerpt(&f.edit_text, 600),
        }
    }

    /// The text that says what went wrong: the error when there is one, else the answer.
    pub fn failure_text(&self) -> String {
        let mut parts = Vec::new();
        if !self.error.is_empty() {
            parts.push(self.error.as_str());
        }
        if !self.output.is_empty() {
            parts.push(self.output.as_str());
        } else if !self.tools.is_empty() {
            parts.push(self.tools.as_str());
        }
        if parts.is_empty() {
            parts.push(self.request.as_str());
        }
        parts.join("\n")
    }
}

/// Tool call names and arguments from canonical output messages JSON, flattened to words.
fn tool_arguments(call: &Call) -> String {
    call.requested_tools().iter().map(|(name, arguments)| format!("{name}({})", excerpt(arguments, 200))).collect::<Vec<_>>().join(" ")
}

/// One row per failure with its facets; the row index is the failure's index.
pub fn frame(failures: &[Failure], causes: &[Cause]) -> Result<DataFrame, AnalyzerError> {
    let col_str = |name: &str, f: &dyn Fn(&Failure) -> String| Column::new(name.into(), failures.iter().map(f).collect::<Vec<String>>());
    let joined = |v: BTreeSet<String>| v.into_iter().collect::<Vec<_>>().join(",");
    let columns = vec![
        Column::new("idx".into(), (0..failures.len() as u32).collect::<Vec<u32>>()),
        col_str("trace_id", &|f| f.call.trace_id.clone()),
        col_str("session_id", &|f| f.call.session_id.clone()),
        col_str("user_id", &|f| f.call.user_id.clone()),
        col_str("feature", &|f| f.call.feature.clone()),
        col_str("model", &|f| f.call.model.clone()),
        col_str("provider", &|f| f.call.provider.clone()),
        col_str("error_type", &|f| f.call.error_type.clone()),
        col_str("finish_reason", &|f| f.call.finish_reasons.first().cloned().unwrap_or_default()),
        col_str("signals", &|f| joined(f.signals.iter().map(|s| s.kind.clone()).collect())),
        col_str("tools", &|f| joined(f.call.tool_names.iter().cloned().collect())),
        col_str("reasons", &|f| f.reasons.join(",")),
        Column::new("signature".into(), causes.iter().map(|c| c.key.clone()).collect::<Vec<String>>()),
        Column::new("lane".into(), causes.iter().map(|c| c.lane.as_str()).collect::<Vec<&str>>()),
        Column::new("severity".into(), failures.iter().map(|f| f.severity).collect::<Vec<f32>>()),
        Column::new("latency_ms".into(), failures.iter().map(|f| f.call.duration_ns as f64 / 1e6).collect::<Vec<f64>>()),
        Column::new("cost_usd".into(), failures.iter().map(|f| f.call.cost_usd).collect::<Vec<Option<f64>>>()),
        Column::new("tokens".into(), failures.iter().map(|f| f.call.input_tokens + f.call.output_tokens).collect::<Vec<u64>>()),
        Column::new("time_ns".into(), failures.iter().map(|f| f.call.start_time.unix_timestamp_nanos() as i64).collect::<Vec<i64>>()),
    ];
    let df = DataFrame::new(failures.len(), columns).map_err(AnalyzerError::frame("build the failure frame"))?;
    df.lazy()
        .with_columns([
            when(col("latency_ms").lt(lit(1_000.0)))
                .then(lit("<1s"))
                .when(col("latency_ms").lt(lit(5_000.0)))
                .then(lit("1-5s"))
                .when(col("latency_ms").lt(lit(20_000.0)))
                .then(lit("5-20s"))
                .otherwise(lit(">20s"))
                .alias("latency_bucket"),
            when(col("tokens").lt(lit(500u64)))
                .then(lit("<500"))
                .when(col("tokens").lt(lit(2_000u64)))
                .then(lit("500-2k"))
                .when(col("tokens").lt(lit(8_000u64)))
                .then(lit("2k-8k"))
                .otherwise(lit(">8k"))
                .alias("token_bucket"),
        ])
        .collect()
        .map_err(AnalyzerError::frame("bucket latency and tokens"))
}

/// Failure indices per signature, largest group first (ties by name), computed in the frame.
pub fn signature_groups(df: &DataFrame) -> Result<Vec<(String, Vec<usize>)>, AnalyzerError> {
    let grouped = df
        .clone()
        .lazy()
        .group_by([col("signature")])
        .agg([col("idx"), len().alias("n")])
        .sort_by_exprs([col("n"), col("signature")], SortMultipleOptions::default().with_order_descending_multi([true, false]))
        .collect()
        .map_err(AnalyzerError::frame("group failures by signature"))?;
    let names = grouped.column("signature").and_then(|c| c.str().cloned()).map_err(AnalyzerError::frame("read signatures"))?;
    let lists = grouped.column("idx").and_then(|c| c.list().cloned()).map_err(AnalyzerError::frame("read signature members"))?;
    let mut out = Vec::new();
    for (row, name) in names.iter().enumerate() {
        let mut idx: Vec<usize> = match lists.get_as_series(row) {
            Some(s) => s.u32().map_err(AnalyzerError::frame("read member indices"))?.iter().flatten().map(|i| i as usize).collect(),
            None => vec![],
        };
        idx.sort_unstable();
        out.push((name.unwrap_or_default().to_string(), idx));
    }
    Ok(out)
}

#[cfg(test)]
pub(crate) mod tests_support {
    use crate::detect::{Call, Failure, SignalBrief};

    pub(crate) fn failure(trace: &str, reasons: &[&str]) -> Failure {
        Failure {
            call: Call {
                trace_id: trace.into(),
                span_id: "s".into(),
                user_id: "u".into(),
                feature: "support".into(),
                model: "gpt-4o-mini".into(),
                input_text: "Can I return my boots?".into(),
                output_text: "Yes, within 90 days, in cash.".into(),
                duration_ns: 2_500_000_000,
                input_tokens: 300,
                output_tokens: 40,
                finish_reasons: vec!["stop".into()],
                ..Default::default()
            },
            reasons: reasons.iter().map(|r| r.to_string()).collect(),
            categories: vec![],
            severity: 0.6,
            evidence: Default::default(),
            signals: vec![SignalBrief { kind: "thumbs_down".into(), value: None, comment: String::new() }],
            edit_text: String::new(),
            tool_errors: vec![],
            languages: None,
            format: None,
            qualifiers: Default::default(),
            contrast: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::tests_support::failure;
    use super::*;

    #[test]
    fn views_say_what_went_wrong() {
        let mut rate = failure("t1", &["error_status", "thumbs_down"]);
        rate.call.error_type = "RateLimitError".into();
        rate.call.error_message = "Rate limit reached".into();
        rate.call.output_text.clear();
        assert_eq!(TextViews::of(&rate).failure_text(), "Rate limit reached");
        let mut tool = failure("t2", &["tool_error"]);
        tool.tool_errors = vec!["lookup_order: ValidationError: order_id: field required".into()];
        tool.call.tool_calls =
            r#"[{"role":"assistant","parts":[{"type":"tool_call","id":"c1","name":"lookup_order","arguments":{"order":12}}]}]"#.into();
        tool.call.tool_names = vec!["lookup_order".into()];
        let views = TextViews::of(&tool);
        assert_eq!(views.tools, r#"lookup_order lookup_order({"order":12})"#);
        assert_eq!(views.error, "lookup_order: ValidationError: order_id: field required");
    }

    #[test]
    fn the_frame_has_facets_buckets_and_signature_groups() {
        let rules = crate::rules::Rules::defaults();
        let fs = vec![failure("t1", &["thumbs_down"]), failure("t2", &["refusal"]), failure("t3", &["thumbs_down"])];
        let df = frame(&fs, &crate::cause::causes(&rules, &fs)).unwrap();
        assert_eq!(df.height(), 3);
        let bucket = df.column("latency_bucket").unwrap().str().unwrap().get(0).map(str::to_string);
        assert_eq!(bucket.as_deref(), Some("1-5s"));
        assert_eq!(df.column("token_bucket").unwrap().str().unwrap().get(0), Some("<500"));
        assert_eq!(df.column("signals").unwrap().str().unwrap().get(0), Some("thumbs_down"));
        let groups = signature_groups(&df).unwrap();
        assert_eq!(groups, vec![(String::new(), vec![0, 2]), ("refusal".to_string(), vec![1])]);
    }
}
