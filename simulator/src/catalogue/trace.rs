//! Builds the steps of one catalogue interaction — model calls and tool runs, in order, with
//! the conversation the model sees growing as they go — on top of the plan's call and tool
//! constructors, so that catalogue traces are rendered and scored like the default ones.

use std::time::Duration;

use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::compose::{Rng, between};
use crate::failure::FailureMode;
use crate::message::{Msg, Part};
use crate::plan::{CallContext, ErrorInfo, Step, tool_call_id, tool_run};
use crate::turn::ToolUse;

/// How a model call ends.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Finish {
    Stop,
    /// A correct answer this many times slower than usual.
    Slow(f64),
    /// Stopped by `max_tokens`: the provider reports exactly this budget.
    Length(u64),
    /// The provider's content filter stopped it.
    ContentFilter,
}

pub(crate) struct Trace<'r> {
    pub rng: &'r mut Rng,
    pub ctx: CallContext,
    pub at: OffsetDateTime,
    /// The messages the next call sends (history, the user's turn, tool calls and results).
    pub input: Vec<Msg>,
    pub steps: Vec<Step>,
    /// The app asks for JSON output on its answers.
    pub json: bool,
}

impl<'r> Trace<'r> {
    pub fn new(rng: &'r mut Rng, ctx: CallContext, at: OffsetDateTime, input: Vec<Msg>) -> Trace<'r> {
        Trace { rng, ctx, at, input, steps: Vec::new(), json: false }
    }

    /// Number of model calls so far.
    pub fn calls(&self) -> usize {
        self.steps.iter().filter(|s| matches!(s, Step::Call(_))).count()
    }

    fn pause(&mut self, low: u64, high: u64) {
        self.at += Duration::from_millis(between(self.rng, low, high));
    }

    /// Whether the model's provider carries tool results in `user` messages (Anthropic's
    /// layout) rather than in `tool` messages (OpenAI's).
    pub fn anthropic(&self) -> bool {
        self.ctx.model.provider == "anthropic"
    }

    /// The model answers with `text`; returns the call's index.
    pub fn answer(&mut self, text: String, finish: Finish, failure: Option<FailureMode>) -> usize {
        let (reason, budget, slowdown) = match finish {
            Finish::Stop => ("stop", None, 1.0),
            Finish::Slow(by) => ("stop", None, by),
            Finish::Length(budget) => ("length", Some(budget), 1.0),
            Finish::ContentFilter => ("content_filter", None, 1.0),
        };
        let mut call =
            self.ctx.call(self.rng, self.at, self.input.clone(), Msg::text("assistant", text), reason, budget, slowdown, failure);
        if self.json {
            call.output_type = Some("json");
        }
        self.at = call.end;
        self.pause(1, 6);
        self.steps.push(Step::Call(call));
        self.calls() - 1
    }

    /// The model calls tool `name` with `arguments` and the tool returns `result` (or fails);
    /// both go into the conversation for the next call. Returns the index of the asking call.
    pub fn use_tool(
        &mut self,
        name: &'static str,
        arguments: Value,
        result: Result<Value, ErrorInfo>,
        failure: Option<FailureMode>,
    ) -> usize {
        let call_id = tool_call_id(self.rng, self.ctx.model);
        let ask = Msg { role: "assistant", parts: vec![Part::ToolCall { id: call_id.clone(), name, arguments: arguments.clone() }] };
        let mut call = self.ctx.call(self.rng, self.at, self.input.clone(), ask.clone(), "tool_calls", None, 1.0, failure);
        if self.json {
            call.output_type = Some("json");
        }
        self.at = call.end;
        self.pause(1, 6);
        self.steps.push(Step::Call(call));
        let index = self.calls() - 1;
        let tool = ToolUse { name, arguments: arguments.clone(), result: Value::Null };
        let run = tool_run(self.rng, self.at, &tool, &call_id, arguments, result);
        self.at = run.end;
        self.pause(1, 6);
        let response = match &run.result {
            Ok(v) => v.clone(),
            Err(e) => json!({"error": format!("{}: {}", e.error_type, e.message)}),
        };
        self.steps.push(Step::Tool(run));
        self.input.push(ask);
        // Anthropic's Messages API carries a tool result as a part of a `user` message.
        let role = if self.anthropic() { "user" } else { "tool" };
        self.input.push(Msg { role, parts: vec![Part::ToolResult { id: call_id, response }] });
        index
    }

    /// The call fails after `ms` milliseconds with `error`; returns its index.
    pub fn error(&mut self, error: ErrorInfo, ms: u64, failure: FailureMode) -> usize {
        let call = self.ctx.errored_call(self.rng, self.at, self.input.clone(), error, ms, failure);
        self.at = call.end;
        self.steps.push(Step::Call(call));
        self.calls() - 1
    }
}

/// An error as a Python client library raises it: `module.Type` on the exception event, `Type`
/// as `error.type`.
pub fn error(module: &str, error_type: &str, message: String) -> ErrorInfo {
    ErrorInfo { exception_type: format!("{module}.{error_type}"), error_type: error_type.to_string(), message }
}
