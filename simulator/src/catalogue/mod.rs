//! The `catalogue` scenario: a benchmark for the analyzer that cannot be passed by tuning to one
//! scenario. Five applications of one company, each a kind that production teams run — a RAG
//! help centre, a text-to-SQL analyst, a tool-using travel agent, a developer assistant and a
//! ticket triage in JSON mode — with 26 failure modes drawn from the published taxonomies (MAST, TRAIL, OWASP LLM Top 10),
//! not from what any analyzer does well.
//!
//! Deliberate confusers ([`Confuser`]):
//! * **one signature, several causes**: the `run_sql` tool fails four ways (syntax error, unknown
//!   column, permission denied, a write blocked by the read-only transaction), all raised as the
//!   same `ToolException`; the travel agent's OpenAI calls fail three ways (rate limit, context
//!   window exceeded, timeout). Every message varies (numbers, ids, names, quoted values).
//! * **one reaction, several causes**: three help-centre modes that only users notice (an
//!   invented policy, stale prices, an answer that ignores the retrieved article) get the very
//!   same reactions — a thumbs-down, then an escalation — from the same pool of comments.
//! * **one cause, several kinds of evidence**: the help centre refuses allowed questions with
//!   plain refusal wording, with a polite deflection no regex would catch (users flag it), or
//!   with finish reason `content_filter`.
//! * **multilingual healthy traffic**: help-centre users write in English, French, Spanish,
//!   German and Portuguese and get correct answers in their language from English articles
//!   (in the input messages, or as a tool result — in a `user`-role message for Anthropic
//!   models); the triage answers French e-mails with English JSON, as it should; and good
//!   answers get some noise (thumbs-downs, regenerations).

pub mod agent;
pub mod dev;
pub mod help_center;
pub mod lang;
pub mod mode;
pub mod planner;
pub mod sql;
pub(crate) mod trace;
pub mod triage;

use serde::Serialize;

use crate::catalog::{CLAUDE_3_5_HAIKU, CLAUDE_SONNET_4, GPT_4_1, GPT_4O_MINI, Instrumentation, Model};

pub use mode::{Confuser, Mode};

/// An application of the catalogue scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum App {
    /// RAG support assistant of the shop's help centre: retrieved English articles, users in five
    /// languages. OTel GenAI 1.37.
    HelpCenter,
    /// Text-to-SQL for the shop's analysts: the model calls `run_sql`, then answers in JSON mode
    /// for the BI front end. OpenInference.
    SqlAnalyst,
    /// Tool-using agent that changes, searches and cancels flight bookings for staff travel.
    /// OTel GenAI 1.37, with an `invoke_agent` span.
    TripAgent,
    /// Developer assistant in the IDE: Python, Rust, SQL, with code. OpenInference.
    DevAssistant,
    /// Classifies customer e-mails (five languages) into JSON for the support queue, in JSON
    /// mode. OTel GenAI 1.37.
    TicketTriage,
}

impl App {
    pub const ALL: [App; 5] = [App::HelpCenter, App::SqlAnalyst, App::TripAgent, App::DevAssistant, App::TicketTriage];

    pub fn id(self) -> &'static str {
        match self {
            App::HelpCenter => "help_center",
            App::SqlAnalyst => "sql_analyst",
            App::TripAgent => "trip_agent",
            App::DevAssistant => "dev_assistant",
            App::TicketTriage => "ticket_triage",
        }
    }

    pub fn instrumentation(self) -> Instrumentation {
        match self {
            App::HelpCenter | App::TripAgent | App::TicketTriage => Instrumentation::GenAi,
            App::SqlAnalyst | App::DevAssistant => Instrumentation::OpenInference,
        }
    }

    /// Share of sessions. The apps with more failure modes get more traffic, so that every mode
    /// has about the same number of failures at one failure rate.
    pub fn traffic_share(self) -> f64 {
        match self {
            App::HelpCenter => 0.31,
            App::SqlAnalyst => 0.19,
            App::TripAgent => 0.25,
            App::DevAssistant => 0.15,
            App::TicketTriage => 0.10,
        }
    }

    pub fn models(self) -> &'static [(&'static Model, f64)] {
        match self {
            App::HelpCenter => &[(&GPT_4O_MINI, 0.50), (&CLAUDE_3_5_HAIKU, 0.30), (&GPT_4_1, 0.20)],
            App::SqlAnalyst => &[(&GPT_4_1, 0.45), (&CLAUDE_SONNET_4, 0.35), (&GPT_4O_MINI, 0.20)],
            App::TripAgent => &[(&CLAUDE_SONNET_4, 0.45), (&GPT_4_1, 0.35), (&GPT_4O_MINI, 0.20)],
            App::DevAssistant => &[(&CLAUDE_SONNET_4, 0.50), (&GPT_4_1, 0.30), (&GPT_4O_MINI, 0.20)],
            App::TicketTriage => &[(&GPT_4O_MINI, 0.60), (&CLAUDE_3_5_HAIKU, 0.40)],
        }
    }

    pub fn max_tokens(self) -> u64 {
        match self {
            App::HelpCenter => 500,
            App::SqlAnalyst => 800,
            App::TripAgent => 600,
            App::DevAssistant => 1500,
            App::TicketTriage => 300,
        }
    }

    pub fn temperature(self) -> f64 {
        match self {
            App::HelpCenter => 0.2,
            App::SqlAnalyst => 0.0,
            App::TripAgent => 0.3,
            App::DevAssistant => 0.2,
            App::TicketTriage => 0.0,
        }
    }

    pub fn route(self) -> &'static str {
        match self {
            App::HelpCenter => "/api/help/answer",
            App::SqlAnalyst => "/api/analyst/ask",
            App::TripAgent => "/api/travel/agent",
            App::DevAssistant => "/api/dev/complete",
            App::TicketTriage => "/api/support/triage",
        }
    }

    /// Whether the app runs as an agent (an `invoke_agent` span between the root and the calls).
    pub fn is_agent(self) -> bool {
        self == App::TripAgent
    }

    pub fn system_prompt(self) -> &'static str {
        match self {
            App::HelpCenter => help_center::SYSTEM_PROMPT,
            App::SqlAnalyst => sql::SYSTEM_PROMPT,
            App::TripAgent => agent::SYSTEM_PROMPT,
            App::DevAssistant => dev::SYSTEM_PROMPT,
            App::TicketTriage => triage::SYSTEM_PROMPT,
        }
    }

    /// Tokens the tool definitions add to every call.
    pub fn tool_tokens(self) -> u64 {
        match self {
            App::HelpCenter => 70,
            App::SqlAnalyst => 180,
            App::TripAgent => 320,
            App::DevAssistant => 90,
            App::TicketTriage => 0,
        }
    }

    pub fn tool_definitions(self) -> Vec<serde_json::Value> {
        match self {
            App::HelpCenter => help_center::tool_definitions(),
            App::SqlAnalyst => sql::tool_definitions(),
            App::TripAgent => agent::tool_definitions(),
            App::DevAssistant => crate::coding::tool_definitions(),
            App::TicketTriage => Vec::new(),
        }
    }

    /// Whether a session is a conversation (earlier turns go into the input) rather than a run
    /// of independent requests.
    pub fn keeps_history(self) -> bool {
        self != App::TicketTriage
    }

    /// The languages the app's users write in, with their shares.
    pub fn languages(self) -> &'static [(&'static str, f64)] {
        match self {
            App::HelpCenter | App::TicketTriage => &[("en", 0.45), ("fr", 0.15), ("es", 0.15), ("de", 0.13), ("pt", 0.12)],
            _ => &[("en", 1.0)],
        }
    }
}

#[cfg(test)]
mod tests;
