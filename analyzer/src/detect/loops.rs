//! The `agent_loop` rule: an agent that runs one tool again and again with the same or
//! near-same arguments (MAST's "step repetition", TRAIL's "resource abuse"). Read from the tool
//! spans of the trace when the producer records them, else from the tool calls the model asked
//! for in its answers; tools interleaved with others still count (search, read, search, read…).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;
use time::OffsetDateTime;

use super::inputs::{Call, ToolRun};
use crate::rules::Rule;

/// A loop found in one trace.
#[derive(Debug, Clone, PartialEq)]
pub struct Loop {
    pub tool: String,
    /// Runs of the tool with the looping arguments.
    pub runs: usize,
    /// Whether the arguments were identical (else near-identical).
    pub identical: bool,
    /// The arguments of the first run (excerpt).
    pub arguments: String,
    /// When the last run of the loop started.
    pub last: OffsetDateTime,
}

impl Loop {
    pub fn evidence(&self) -> String {
        let same = if self.identical { "the same arguments" } else { "near-identical arguments" };
        format!("`{}` run {} times with {same} ({})", self.tool, self.runs, super::excerpt(&self.arguments, 120))
    }
}

/// One invocation of a tool: its name, canonical arguments and start.
struct Invocation<'a> {
    tool: &'a str,
    arguments: String,
    at: OffsetDateTime,
}

/// Arguments compared as values: JSON re-serialised (keys sorted), anything else trimmed.
fn canonical(arguments: &str) -> String {
    match serde_json::from_str::<Value>(arguments) {
        Ok(v) => v.to_string(),
        Err(_) => arguments.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase(),
    }
}

fn tokens(s: &str) -> BTreeSet<String> {
    s.split(|c: char| !c.is_alphanumeric()).filter(|t| !t.is_empty()).map(str::to_lowercase).collect()
}

fn jaccard(a: &BTreeSet<String>, b: &BTreeSet<String>) -> f64 {
    if a.is_empty() && b.is_empty() {
        return 1.0;
    }
    a.intersection(b).count() as f64 / a.union(b).count() as f64
}

/// The longest loop among `invocations` under the rule's thresholds.
fn longest(rule: &Rule, invocations: &[Invocation]) -> Option<Loop> {
    let min_repeats = rule.spec.min_repeats.unwrap_or(3);
    let min_near = rule.spec.min_near_repeats.unwrap_or(min_repeats + 1);
    let min_similarity = rule.spec.min_similarity.unwrap_or(0.7);
    let mut best: Option<Loop> = None;
    let mut by_tool: BTreeMap<&str, Vec<&Invocation>> = BTreeMap::new();
    for inv in invocations {
        by_tool.entry(inv.tool).or_default().push(inv);
    }
    for (tool, runs) in by_tool {
        // Greedy groups of near-same arguments, each compared with its first run.
        let mut groups: Vec<(BTreeSet<String>, Vec<&Invocation>)> = Vec::new();
        for inv in runs {
            let t = tokens(&inv.arguments);
            match groups.iter_mut().find(|(first, _)| jaccard(first, &t) >= min_similarity) {
                Some((_, members)) => members.push(inv),
                None => groups.push((t, vec![inv])),
            }
        }
        for (_, members) in groups {
            let identical = members.iter().all(|m| m.arguments == members[0].arguments);
            // Only numbers change, never twice the same: paging, offsets, successive ids.
            let distinct: BTreeSet<&str> = members.iter().map(|m| m.arguments.as_str()).collect();
            let skeletons: BTreeSet<String> = members.iter().map(|m| m.arguments.replace(|c: char| c.is_ascii_digit(), "0")).collect();
            if !identical && distinct.len() == members.len() && skeletons.len() == 1 {
                continue;
            }
            let enough = if identical { members.len() >= min_repeats } else { members.len() >= min_near };
            if enough && best.as_ref().is_none_or(|b| members.len() > b.runs) {
                best = Some(Loop {
                    tool: tool.to_string(),
                    runs: members.len(),
                    identical,
                    arguments: members[0].arguments.clone(),
                    last: members.iter().map(|m| m.at).max().expect("a group has members"),
                });
            }
        }
    }
    best
}

/// Loops per trace, each with the index (in `calls`) of the call that asked for its last run.
pub fn find(rule: &Rule, tool_runs: &[ToolRun], calls: &[Call], by_trace: &BTreeMap<&str, Vec<usize>>) -> Vec<(usize, Loop)> {
    let mut runs_of: BTreeMap<&str, Vec<Invocation>> = BTreeMap::new();
    for r in tool_runs {
        runs_of.entry(&r.trace_id).or_default().push(Invocation { tool: &r.tool, arguments: canonical(&r.arguments), at: r.start_time });
    }
    let mut asked: Vec<(String, String, OffsetDateTime)> = Vec::new();
    let mut out = Vec::new();
    for (trace, idx) in by_trace {
        let found = match runs_of.get(trace) {
            Some(invocations) => longest(rule, invocations),
            None => {
                asked.clear();
                for &i in idx {
                    asked.extend(calls[i].requested_tools().into_iter().map(|(t, a)| (t, canonical(&a), calls[i].start_time)));
                }
                if asked.len() < rule.spec.min_repeats.unwrap_or(3) {
                    continue;
                }
                let invocations: Vec<Invocation> =
                    asked.iter().map(|(t, a, at)| Invocation { tool: t, arguments: a.clone(), at: *at }).collect();
                longest(rule, &invocations)
            }
        };
        if let Some(l) = found {
            let asker = idx.iter().rev().find(|&&i| calls[i].start_time <= l.last).or(idx.last()).copied();
            if let Some(ci) = asker {
                out.push((ci, l));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::Rules;

    fn at(s: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_763_700_000 + s).unwrap()
    }

    fn run(tool: &str, args: &str, s: i64) -> ToolRun {
        ToolRun { trace_id: "t".into(), span_id: format!("s{s}"), start_time: at(s), tool: tool.into(), arguments: args.into() }
    }

    fn call(s: i64) -> Call {
        Call { trace_id: "t".into(), span_id: format!("c{s}"), start_time: at(s), ..Default::default() }
    }

    fn loops(runs: &[ToolRun], calls: &[Call]) -> Vec<(usize, Loop)> {
        let rules = Rules::defaults();
        let rule = rules.get("agent_loop").unwrap();
        let mut by_trace = BTreeMap::new();
        by_trace.insert("t", (0..calls.len()).collect());
        find(rule, runs, calls, &by_trace)
    }

    #[test]
    fn the_same_search_three_times_is_a_loop_even_between_other_tools() {
        let runs = [
            run("search_docs", r#"{"query": "refund policy", "k": 5}"#, 1),
            run("read_page", r#"{"url": "https://x/1"}"#, 2),
            run("search_docs", r#"{"k": 5, "query": "refund policy"}"#, 3),
            run("read_page", r#"{"url": "https://x/2"}"#, 4),
            run("search_docs", r#"{"query":"refund policy","k":5}"#, 5),
        ];
        let found = loops(&runs, &[call(0), call(2), call(4)]);
        assert_eq!(found.len(), 1);
        let (ci, l) = &found[0];
        assert_eq!((*ci, l.tool.as_str(), l.runs, l.identical), (2, "search_docs", 3, true));
        assert!(l.evidence().starts_with("`search_docs` run 3 times with the same arguments"), "{}", l.evidence());
    }

    #[test]
    fn rephrased_queries_loop_only_when_there_are_more_of_them() {
        let q = ["refund policy for shoes", "refund policy for shoes 2025", "shoes refund policy for", "refund policy for the shoes"];
        let runs: Vec<ToolRun> = q.iter().enumerate().map(|(i, q)| run("search", &format!(r#"{{"query":"{q}"}}"#), i as i64)).collect();
        assert!(loops(&runs[..3], &[call(0)]).is_empty(), "three near-same runs are a retry, not yet a loop");
        let found = loops(&runs, &[call(0)]);
        assert_eq!((found[0].1.runs, found[0].1.identical), (4, false));
    }

    #[test]
    fn paging_and_different_lookups_are_work_not_loops() {
        let pages: Vec<ToolRun> =
            (1..=5).map(|p| run("list_orders", &format!(r#"{{"customer":"c_1","page":{p},"status":"open"}}"#), p)).collect();
        assert!(loops(&pages, &[call(0)]).is_empty(), "paging");
        let lookups: Vec<ToolRun> = (1..=5).map(|i| run("lookup_order", &format!(r#"{{"order_id":"NW-{}"}}"#, 1000 + i), i)).collect();
        assert!(loops(&lookups, &[call(0)]).is_empty());
    }

    #[test]
    fn without_tool_spans_the_models_requests_count() {
        let asking = |s: i64| Call {
            tool_calls:
                r#"[{"role":"assistant","parts":[{"type":"tool_call","id":"x","name":"get_weather","arguments":{"city":"Paris"}}]}]"#.into(),
            ..call(s)
        };
        let found = loops(&[], &[asking(0), asking(1), asking(2)]);
        assert_eq!((found[0].0, found[0].1.tool.as_str(), found[0].1.runs), (2, "get_weather", 3));
    }
}
