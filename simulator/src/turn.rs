//! One exchange of a session as the content generators write it, before any failure is
//! injected: the user's request, the tool the assistant would use, and the correct answer.

use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
pub struct Turn {
    /// A short topic id (`order_status`, `rust`, …): lets follow-up turns stay on topic.
    pub topic: &'static str,
    pub request: String,
    pub tool: Option<ToolUse>,
    /// The correct English answer.
    pub answer: String,
    /// What the turn is about in a few words (an order number, a crate…), for failure texts
    /// that must mention it in another language.
    pub subject: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ToolUse {
    pub name: &'static str,
    pub arguments: Value,
    pub result: Value,
}
