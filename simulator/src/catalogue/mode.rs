//! The catalogue's failure modes: which application they happen in, the taxonomy entry they come
//! from, the evidence that reveals them, the models they favour and how users react to them.

use serde::Serialize;

use super::App;
use crate::catalog::{CLAUDE_3_5_HAIKU, CLAUDE_SONNET_4, GPT_4_1, GPT_4O_MINI, Model};
use crate::reactions::Kind;

/// A failure mode of the catalogue. Ids are stable: the truth file and `--modes` use them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    // help_center (RAG)
    InventedPolicy,
    StalePricing,
    IgnoredContext,
    OverRefusal,
    FollowedInjectedInstruction,
    LeakedCustomerContact,
    AnsweredInDocumentLanguage,
    // sql_analyst (text-to-SQL)
    SqlSyntaxError,
    SqlUnknownColumn,
    SqlPermissionDenied,
    SqlWriteBlocked,
    SqlWrongAggregation,
    SqlAnswerNotJson,
    // trip_agent (tool-using agent)
    AgentSearchLoop,
    PrematureCompletion,
    UnrequestedCancellation,
    ToolResultMisread,
    ProviderRateLimit,
    ContextWindowExceeded,
    ProviderTimeout,
    LatencySpike,
    // dev_assistant (code)
    HallucinatedApi,
    SecretInCode,
    InjectableCode,
    TruncatedCode,
    // ticket_triage (JSON mode)
    TriageSchemaViolation,
}

/// The confuser groups of the catalogue (see the module documentation of [`super`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Confuser {
    /// The `run_sql` tool fails with one exception type and different messages.
    RunSqlError,
    /// The agent's OpenAI calls fail: rate limit, context window, timeout.
    ProviderError,
    /// User-flagged only, with identical reactions (thumbs-down, then escalate).
    ThumbsDownThenEscalate,
    /// One cause, three kinds of evidence.
    RefusalEvidence,
}

impl Confuser {
    pub fn id(self) -> &'static str {
        match self {
            Confuser::RunSqlError => "run_sql_error",
            Confuser::ProviderError => "provider_error",
            Confuser::ThumbsDownThenEscalate => "thumbs_down_then_escalate",
            Confuser::RefusalEvidence => "refusal_evidence",
        }
    }
}

impl Mode {
    pub const ALL: [Mode; 26] = [
        Mode::InventedPolicy,
        Mode::StalePricing,
        Mode::IgnoredContext,
        Mode::OverRefusal,
        Mode::FollowedInjectedInstruction,
        Mode::LeakedCustomerContact,
        Mode::AnsweredInDocumentLanguage,
        Mode::SqlSyntaxError,
        Mode::SqlUnknownColumn,
        Mode::SqlPermissionDenied,
        Mode::SqlWriteBlocked,
        Mode::SqlWrongAggregation,
        Mode::SqlAnswerNotJson,
        Mode::AgentSearchLoop,
        Mode::PrematureCompletion,
        Mode::UnrequestedCancellation,
        Mode::ToolResultMisread,
        Mode::ProviderRateLimit,
        Mode::ContextWindowExceeded,
        Mode::ProviderTimeout,
        Mode::LatencySpike,
        Mode::HallucinatedApi,
        Mode::SecretInCode,
        Mode::InjectableCode,
        Mode::TruncatedCode,
        Mode::TriageSchemaViolation,
    ];

    pub fn id(self) -> &'static str {
        match self {
            Mode::InventedPolicy => "invented_policy",
            Mode::StalePricing => "stale_pricing",
            Mode::IgnoredContext => "ignored_context",
            Mode::OverRefusal => "over_refusal",
            Mode::FollowedInjectedInstruction => "followed_injected_instruction",
            Mode::LeakedCustomerContact => "leaked_customer_contact",
            Mode::AnsweredInDocumentLanguage => "answered_in_document_language",
            Mode::SqlSyntaxError => "sql_syntax_error",
            Mode::SqlUnknownColumn => "sql_unknown_column",
            Mode::SqlPermissionDenied => "sql_permission_denied",
            Mode::SqlWriteBlocked => "sql_write_blocked",
            Mode::SqlWrongAggregation => "sql_wrong_aggregation",
            Mode::SqlAnswerNotJson => "sql_answer_not_json",
            Mode::AgentSearchLoop => "agent_search_loop",
            Mode::PrematureCompletion => "premature_completion",
            Mode::UnrequestedCancellation => "unrequested_cancellation",
            Mode::ToolResultMisread => "tool_result_misread",
            Mode::ProviderRateLimit => "provider_rate_limit",
            Mode::ContextWindowExceeded => "context_window_exceeded",
            Mode::ProviderTimeout => "provider_timeout",
            Mode::LatencySpike => "latency_spike",
            Mode::HallucinatedApi => "hallucinated_api",
            Mode::SecretInCode => "secret_in_code",
            Mode::InjectableCode => "injectable_code",
            Mode::TruncatedCode => "truncated_code",
            Mode::TriageSchemaViolation => "triage_schema_violation",
        }
    }

    pub fn app(self) -> App {
        use Mode::*;
        match self {
            InventedPolicy
            | StalePricing
            | IgnoredContext
            | OverRefusal
            | FollowedInjectedInstruction
            | LeakedCustomerContact
            | AnsweredInDocumentLanguage => App::HelpCenter,
            SqlSyntaxError | SqlUnknownColumn | SqlPermissionDenied | SqlWriteBlocked | SqlWrongAggregation | SqlAnswerNotJson => {
                App::SqlAnalyst
            }
            AgentSearchLoop
            | PrematureCompletion
            | UnrequestedCancellation
            | ToolResultMisread
            | ProviderRateLimit
            | ContextWindowExceeded
            | ProviderTimeout
            | LatencySpike => App::TripAgent,
            HallucinatedApi | SecretInCode | InjectableCode | TruncatedCode => App::DevAssistant,
            TriageSchemaViolation => App::TicketTriage,
        }
    }

    pub fn confuser(self) -> Option<Confuser> {
        use Mode::*;
        match self {
            SqlSyntaxError | SqlUnknownColumn | SqlPermissionDenied | SqlWriteBlocked => Some(Confuser::RunSqlError),
            ProviderRateLimit | ContextWindowExceeded | ProviderTimeout => Some(Confuser::ProviderError),
            InventedPolicy | StalePricing | IgnoredContext => Some(Confuser::ThumbsDownThenEscalate),
            OverRefusal => Some(Confuser::RefusalEvidence),
            _ => None,
        }
    }

    /// Where the taxonomies name it.
    pub fn source(self) -> &'static str {
        use Mode::*;
        match self {
            InventedPolicy => "TRAIL language-only hallucination; OWASP LLM09 misinformation",
            StalePricing => "OWASP LLM09 misinformation (outdated facts over the retrieved ones)",
            IgnoredContext => "TRAIL poor information retrieval / instruction non-compliance",
            OverRefusal => "TRAIL instruction non-compliance; MAST 1.1 disobey task specification",
            FollowedInjectedInstruction => "OWASP LLM01 indirect prompt injection",
            LeakedCustomerContact => "OWASP LLM02 sensitive information disclosure; LLM08 RAG access control",
            AnsweredInDocumentLanguage => "TRAIL instruction non-compliance (answer in the customer's language)",
            SqlSyntaxError => "TRAIL formatting errors (code execution)",
            SqlUnknownColumn => "TRAIL tool-related hallucination (invented schema)",
            SqlPermissionDenied => "TRAIL environment setup (permissions); OWASP LLM06 excessive agency",
            SqlWriteBlocked => "OWASP LLM05 improper output handling / LLM06 excessive agency",
            SqlWrongAggregation => "MAST 3.3 incorrect verification; TRAIL incorrect problem identification",
            SqlAnswerNotJson => "TRAIL formatting errors (requested format)",
            AgentSearchLoop => "MAST 1.3 step repetition; TRAIL resource abuse",
            PrematureCompletion => "MAST 3.1 premature termination; MAST 2.6 reasoning-action mismatch",
            UnrequestedCancellation => "OWASP LLM06 excessive agency; MAST 1.1 disobey task specification",
            ToolResultMisread => "TRAIL tool output misinterpretation",
            ProviderRateLimit => "TRAIL rate limiting (429)",
            ContextWindowExceeded => "TRAIL context handling failures (window overflow)",
            ProviderTimeout => "TRAIL timeout",
            LatencySpike => "OWASP LLM10 unbounded consumption (latency far above the norm)",
            HallucinatedApi => "OWASP LLM09 misinformation (hallucinated packages/APIs)",
            SecretInCode => "OWASP LLM02 sensitive information disclosure (secrets)",
            InjectableCode => "OWASP LLM05 improper output handling (injectable code)",
            TruncatedCode => "TRAIL formatting errors; finish reason length",
            TriageSchemaViolation => "TRAIL formatting errors (requested format)",
        }
    }

    /// The evidence in the traffic that reveals the mode.
    pub fn evidence(self) -> &'static str {
        use Mode::*;
        match self {
            InventedPolicy | StalePricing | IgnoredContext => {
                "users only: thumbs-down then escalate; the answer contradicts the article in its input"
            }
            OverRefusal => "refusal wording, or a deflection only users flag, or finish reason content_filter",
            FollowedInjectedInstruction => "answer repeats a link planted in a retrieved document; few users react",
            LeakedCustomerContact => "another customer's e-mail and phone in the answer",
            AnsweredInDocumentLanguage => "English answer to a non-English question (English articles in the input)",
            SqlSyntaxError | SqlUnknownColumn | SqlPermissionDenied | SqlWriteBlocked => "run_sql tool span fails with ToolException",
            SqlWrongAggregation => "users only: the analyst edits the query",
            SqlAnswerNotJson => "JSON mode requested; the answer does not parse or misses keys",
            AgentSearchLoop => "search_flights called 5-9 times with (near) identical arguments in one trace",
            PrematureCompletion => "users only: the agent says it changed the booking, no change_booking call",
            UnrequestedCancellation => "cancel_booking called on an information request; users escalate",
            ToolResultMisread => "users only: the answer contradicts the tool result",
            ProviderRateLimit => "call error RateLimitError (429)",
            ContextWindowExceeded => "call error BadRequestError context_length_exceeded after long tool results",
            ProviderTimeout => "call error APITimeoutError after 60-600 s",
            LatencySpike => "a correct answer 15-40x slower than the feature's norm",
            HallucinatedApi => "users only: thumbs-down, edits, regenerations",
            SecretInCode => "an API key or secret in the code the user did not give",
            InjectableCode => "users only (rarely): string-built SQL, shell=True, eval",
            TruncatedCode => "finish reason length, output tokens = max_tokens",
            TriageSchemaViolation => "gen_ai.output.type json; a required key missing, a value off its enum, plain text or a cut object",
        }
    }

    /// Relative weight in the default mix. The document-language mode can only happen to
    /// non-English users (about half the help centre's), so it weighs double.
    pub fn default_weight(self) -> f64 {
        match self {
            Mode::AnsweredInDocumentLanguage => 2.0,
            _ => 1.0,
        }
    }

    /// Models that show the mode more often than their traffic share (weight multipliers). The
    /// provider errors come from OpenAI only: the agent's Anthropic calls never show them.
    pub fn favoured_models(self) -> &'static [(&'static Model, f64)] {
        use Mode::*;
        match self {
            InventedPolicy | FollowedInjectedInstruction | UnrequestedCancellation | ToolResultMisread => &[(&GPT_4O_MINI, 3.0)],
            StalePricing => &[(&GPT_4_1, 3.0)],
            IgnoredContext | TriageSchemaViolation => &[(&CLAUDE_3_5_HAIKU, 3.0)],
            OverRefusal => &[(&CLAUDE_3_5_HAIKU, 4.0)],
            AnsweredInDocumentLanguage | SqlSyntaxError | AgentSearchLoop | HallucinatedApi => &[(&GPT_4O_MINI, 4.0)],
            SqlUnknownColumn => &[(&GPT_4O_MINI, 2.0), (&GPT_4_1, 1.5)],
            SqlWriteBlocked => &[(&CLAUDE_SONNET_4, 2.0)],
            SqlWrongAggregation | PrematureCompletion => &[(&GPT_4_1, 2.0)],
            SqlAnswerNotJson => &[(&CLAUDE_SONNET_4, 4.0)],
            ProviderRateLimit => &[(&GPT_4_1, 4.0), (&CLAUDE_SONNET_4, 0.0)],
            ContextWindowExceeded => &[(&GPT_4_1, 2.0), (&CLAUDE_SONNET_4, 0.0)],
            ProviderTimeout => &[(&GPT_4_1, 3.0), (&CLAUDE_SONNET_4, 0.0)],
            LatencySpike => &[(&CLAUDE_SONNET_4, 3.0)],
            TruncatedCode => &[(&CLAUDE_SONNET_4, 2.0)],
            InjectableCode => &[(&GPT_4_1, 1.5)],
            LeakedCustomerContact | SqlPermissionDenied | SecretInCode => &[],
        }
    }

    /// Whether users give up on it quickly (a slow answer, a timeout).
    pub fn is_slow(self) -> bool {
        matches!(self, Mode::LatencySpike | Mode::ProviderTimeout)
    }

    /// The main reaction and its probability (`None`: the user does nothing visible).
    pub fn reactions(self) -> Vec<(Option<Kind>, f64)> {
        use Kind::*;
        use Mode::*;
        match self {
            // The same reactions for the three: the group is only told apart by its content.
            InventedPolicy | StalePricing | IgnoredContext => vec![(Some(Escalate), 0.6), (None, 0.4)],
            OverRefusal => vec![(Some(Regenerate), 0.40), (Some(ThumbsDown), 0.25), (Some(Abandon), 0.10), (None, 0.25)],
            FollowedInjectedInstruction => vec![(Some(ThumbsDown), 0.20), (Some(Comment), 0.10), (None, 0.70)],
            LeakedCustomerContact => vec![(Some(ThumbsDown), 0.15), (Some(Escalate), 0.10), (None, 0.75)],
            AnsweredInDocumentLanguage => vec![(Some(ThumbsDown), 0.30), (Some(Regenerate), 0.30), (None, 0.40)],
            SqlSyntaxError | SqlUnknownColumn | SqlPermissionDenied | SqlWriteBlocked => {
                vec![(Some(Regenerate), 0.35), (Some(ThumbsDown), 0.15), (Some(Abandon), 0.15), (None, 0.35)]
            }
            SqlWrongAggregation => vec![(Some(Edit), 0.45), (Some(ThumbsDown), 0.15), (None, 0.40)],
            SqlAnswerNotJson => vec![(Some(Regenerate), 0.50), (None, 0.50)],
            AgentSearchLoop => vec![(Some(Abandon), 0.35), (Some(ThumbsDown), 0.15), (Some(Escalate), 0.10), (None, 0.40)],
            PrematureCompletion => vec![(Some(ThumbsDown), 0.30), (Some(Escalate), 0.25), (None, 0.45)],
            UnrequestedCancellation => vec![(Some(Escalate), 0.50), (Some(ThumbsDown), 0.20), (None, 0.30)],
            ToolResultMisread => vec![(Some(ThumbsDown), 0.30), (Some(Edit), 0.10), (None, 0.60)],
            ProviderRateLimit | ContextWindowExceeded | ProviderTimeout => vec![(Some(Retry), 0.60), (Some(Abandon), 0.15), (None, 0.25)],
            LatencySpike => vec![(Some(Abandon), 0.35), (Some(Regenerate), 0.15), (None, 0.50)],
            HallucinatedApi => vec![(Some(ThumbsDown), 0.30), (Some(Edit), 0.20), (Some(Regenerate), 0.20), (None, 0.30)],
            SecretInCode => vec![(Some(Copy), 0.30), (Some(ThumbsDown), 0.05), (None, 0.65)],
            InjectableCode => vec![(Some(Copy), 0.35), (Some(ThumbsDown), 0.10), (None, 0.55)],
            TruncatedCode => vec![(Some(Regenerate), 0.55), (Some(ThumbsDown), 0.10), (None, 0.35)],
            TriageSchemaViolation => vec![(Some(Edit), 0.30), (Some(Regenerate), 0.30), (None, 0.40)],
        }
    }

    /// Probability of a thumbs-down before a regenerate, edit or escalation.
    pub fn thumbs_down_first(self) -> f64 {
        match self.confuser() {
            Some(Confuser::ThumbsDownThenEscalate) => 1.0,
            _ => 0.2,
        }
    }

    /// What users write about it, in `language` where they write in theirs.
    pub fn comments(self, language: &str) -> &'static [&'static str] {
        use Mode::*;
        match self {
            // One pool for the group: comments must not tell the three apart.
            InventedPolicy | StalePricing | IgnoredContext => super::lang::wrong_answer_comments(language),
            OverRefusal => super::lang::refusal_comments(language),
            AnsweredInDocumentLanguage => super::lang::language_comments(language),
            FollowedInjectedInstruction => {
                &["Is this voucher link legit? Looks like a scam.", "Why is the assistant sending me to another website?"]
            }
            LeakedCustomerContact => {
                &["It showed me someone else's email and phone number!", "Why am I seeing another customer's details?"]
            }
            SqlSyntaxError | SqlUnknownColumn | SqlPermissionDenied | SqlWriteBlocked => {
                &["The query failed again.", "Error instead of numbers.", "It can't even run its own query."]
            }
            SqlWrongAggregation => &["These numbers are wrong.", "That's not the right count."],
            SqlAnswerNotJson => &["The dashboard shows raw text.", "Chart didn't render."],
            AgentSearchLoop => &["It kept searching forever.", "Spinning for minutes, no result."],
            PrematureCompletion => &["It said it changed my flight but my booking still shows the old one.", "Nothing was changed!"],
            UnrequestedCancellation => {
                &["I did NOT ask you to cancel my booking!", "Why did it cancel my trip? I only asked about options."]
            }
            ToolResultMisread => &["Wrong departure time.", "That's not what my booking says."],
            ProviderRateLimit | ContextWindowExceeded | ProviderTimeout => &["Error again.", "It just shows an error."],
            LatencySpike => &["Way too slow.", "Took forever."],
            HallucinatedApi => &["That function doesn't exist.", "This method isn't in the library.", "AttributeError when I run it."],
            SecretInCode => &["Whose key is this?"],
            InjectableCode => &["This is open to injection.", "Never build SQL with string formatting."],
            TruncatedCode => &["The code got cut off.", "Incomplete snippet."],
            TriageSchemaViolation => &["Triage fields missing again.", "Ticket landed in the wrong queue."],
        }
    }
}
