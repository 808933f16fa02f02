//! The canonical class of an error — the closed set every reader shares (the collector stores
//! it in `llm_calls.error_class` at ingest, the analyzer groups on it, exports and the TUI name
//! it). One rate limit arrives as `openai.RateLimitError`, `RateLimitError`,
//! `OpenAIRateLimitError`, `ModelRateLimitError`, `AI_APICallError` with status 429, "Error
//! code: 429" or `RESOURCE_EXHAUSTED`: read from the type, the message and the HTTP status, they
//! are all [`ErrorClass::RateLimit`]. The raw type and message are kept beside it.

use crate::failure::Lane;

/// A canonical error class, read from an error's type and message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ErrorClass {
    RateLimit,
    ContextLength,
    Timeout,
    ContentFilter,
    Auth,
    UnknownTool,
    InvalidArguments,
    Syntax,
    NotFound,
    /// A request the provider refused as malformed (HTTP 400/422 with nothing more specific).
    InvalidRequest,
    Unavailable,
    Other,
}

/// Words that name each class, checked in this order (the more specific first: "tool not
/// found" is an unknown tool before it is a not-found). Matched against the lower-cased type
/// and message, and against the same without separators (`RateLimitError` → `ratelimit`).
const CLASSES: &[(ErrorClass, &[&str])] = &[
    (
        ErrorClass::RateLimit,
        &[
            "ratelimit",
            "rate limit",
            "too many requests",
            "error code: 429",
            "status 429",
            "http 429",
            " 429 ",
            "quota",
            "resource_exhausted",
            "resourceexhausted",
            "per minute",
            "throttl",
        ],
    ),
    (
        ErrorClass::ContextLength,
        &[
            "context length",
            "context_length",
            "contextlength",
            "context window",
            "contextwindow",
            "maximum context",
            "too many tokens",
            "prompt is too long",
            "input is too long",
            "token limit",
        ],
    ),
    (ErrorClass::Timeout, &["timeout", "timed out", "deadline exceeded", "deadline_exceeded", "deadlineexceeded", " 504", "took too long"]),
    (
        ErrorClass::ContentFilter,
        &["content filter", "content_filter", "contentfilter", "content policy", "content_policy", "moderation", "safety system"],
    ),
    (
        ErrorClass::Auth,
        &[
            "unauthorized",
            "unauthorised",
            "forbidden",
            "permission denied",
            "permissiondenied",
            "access denied",
            "accessdenied",
            "authentication",
            "not authorized",
            "insufficient privilege",
            "invalid api key",
            "incorrect api key",
            " 401",
            " 403",
        ],
    ),
    (
        ErrorClass::UnknownTool,
        &[
            "no tool named",
            "tool not found",
            "toolnotfound",
            "unknown tool",
            "no such tool",
            "not a valid tool",
            "unknown function",
            "function not found",
            "is not a tool",
        ],
    ),
    (
        ErrorClass::InvalidArguments,
        &[
            "validation",
            "invalid argument",
            "invalid_argument",
            "invalidargument",
            "invalid arguments",
            "required property",
            "field required",
            "missing required",
            "missing 1 required",
            "unexpected keyword",
            "is not of type",
            "should be a valid",
            "jsondecode",
            "could not parse the arguments",
            "invalid value",
            "argumenterror",
            "typeerror",
            "valueerror",
            "invalid type",
            "wrong type",
        ],
    ),
    (ErrorClass::Syntax, &["syntax error", "syntaxerror", "syntax_error", "parse error", "parseerror", "unexpected token", "malformed"]),
    (
        ErrorClass::NotFound,
        &[
            "not found",
            "notfound",
            " 404",
            "does not exist",
            "doesn't exist",
            "no such",
            "unknown column",
            "unknown table",
            "undefinedcolumn",
            "undefinedtable",
            "undefined column",
            "undefined table",
        ],
    ),
    (
        ErrorClass::Unavailable,
        &[
            "unavailable",
            "overloaded",
            "connection refused",
            "connection reset",
            "connectionerror",
            "connecterror",
            "apiconnection",
            "internal server error",
            "internalservererror",
            "internal error",
            "bad gateway",
            "econnrefused",
            "server error",
            " 502",
            " 503",
            "temporarily",
        ],
    ),
];

impl ErrorClass {
    /// The class of an error from its type, message and — when the producer recorded one — the
    /// HTTP status of the failed request. Words decide first (a 400 that says "context length"
    /// is a context-length error); the status decides when they do not.
    pub fn classify(error_type: &str, message: &str, http_status: u16) -> ErrorClass {
        match ErrorClass::of(error_type, message) {
            ErrorClass::Other => ErrorClass::of_status(http_status).unwrap_or(ErrorClass::Other),
            class => class,
        }
    }

    /// The class an HTTP status alone says, if any.
    pub fn of_status(status: u16) -> Option<ErrorClass> {
        Some(match status {
            429 => ErrorClass::RateLimit,
            408 | 504 | 524 => ErrorClass::Timeout,
            401 | 403 | 407 => ErrorClass::Auth,
            404 => ErrorClass::NotFound,
            413 => ErrorClass::ContextLength,
            400 | 422 => ErrorClass::InvalidRequest,
            500..=599 => ErrorClass::Unavailable,
            _ => return None,
        })
    }

    pub fn of(error_type: &str, message: &str) -> ErrorClass {
        let hay = format!(" {} {} ", error_type.to_lowercase(), message.to_lowercase());
        let squashed: String = hay.chars().filter(|c| !matches!(c, ' ' | '_' | '-' | '.')).collect();
        for (class, words) in CLASSES {
            if words.iter().any(|w| hay.contains(w) || (!w.starts_with(' ') && !w.contains(' ') && squashed.contains(w))) {
                return *class;
            }
        }
        ErrorClass::Other
    }

    pub fn id(self) -> &'static str {
        match self {
            ErrorClass::RateLimit => "rate_limit",
            ErrorClass::ContextLength => "context_length",
            ErrorClass::Timeout => "timeout",
            ErrorClass::ContentFilter => "content_filter",
            ErrorClass::Auth => "auth",
            ErrorClass::UnknownTool => "unknown_tool",
            ErrorClass::InvalidArguments => "invalid_arguments",
            ErrorClass::Syntax => "syntax",
            ErrorClass::NotFound => "not_found",
            ErrorClass::InvalidRequest => "invalid_request",
            ErrorClass::Unavailable => "unavailable",
            ErrorClass::Other => "other",
        }
    }

    pub fn from_id(id: &str) -> Option<ErrorClass> {
        CLASSES.iter().map(|(c, _)| *c).chain([ErrorClass::InvalidRequest, ErrorClass::Other]).find(|c| c.id() == id)
    }

    /// What a reviewer calls it.
    pub fn phrase(self) -> &'static str {
        match self {
            ErrorClass::RateLimit => "rate limited",
            ErrorClass::ContextLength => "context window exceeded",
            ErrorClass::Timeout => "timed out",
            ErrorClass::ContentFilter => "blocked by a content filter",
            ErrorClass::Auth => "permission denied",
            ErrorClass::UnknownTool => "calls to tools that do not exist",
            ErrorClass::InvalidArguments => "arguments rejected",
            ErrorClass::Syntax => "syntax errors",
            ErrorClass::NotFound => "not found",
            ErrorClass::InvalidRequest => "requests refused as invalid",
            ErrorClass::Unavailable => "service unavailable",
            ErrorClass::Other => "errors",
        }
    }

    pub fn lane(self) -> Lane {
        match self {
            ErrorClass::RateLimit | ErrorClass::Timeout | ErrorClass::Unavailable | ErrorClass::Auth => Lane::Operations,
            _ => Lane::Behaviour,
        }
    }
}

/// The class of an error and its request's HTTP status: `recorded` when the producer set a
/// status attribute, else the status its type or message states (`Error code: 429`, an
/// `error.type` of `429`), else 0.
pub fn read(error_type: &str, message: &str, recorded: Option<u16>) -> (ErrorClass, u16) {
    let status = recorded.unwrap_or_else(|| [error_type, message].into_iter().map(http_status_in).find(|s| *s > 0).unwrap_or(0));
    (ErrorClass::classify(error_type, message, status), status)
}

/// The HTTP status a producer recorded for a failed request: the attribute of the OTel HTTP
/// conventions (current and older), else a status written in the message the way SDKs write it
/// (`Error code: 429`, `status_code: 429`, `HTTP 503`, `status 401`). 0 when none.
pub fn http_status_in(message: &str) -> u16 {
    // "429 Rate limit reached…" (the OTel JS instrumentation's status message) or a bare "429".
    let t = message.trim_start();
    if t.len() >= 3 && t.as_bytes()[..3].iter().all(u8::is_ascii_digit) && t.as_bytes().get(3).is_none_or(|b| *b == b' ') {
        let code: u16 = t[..3].parse().unwrap_or(0);
        if (400..600).contains(&code) {
            return code;
        }
    }
    static STATUS: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r"(?i)\b(?:error code|status[ _]?code|statuscode|http(?: status)?|status)\s*[:=]?\s*\(?([1-5][0-9]{2})\b")
            .expect("valid regex")
    });
    STATUS.captures(message).and_then(|c| c[1].parse().ok()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_decides_when_the_words_do_not() {
        assert_eq!(ErrorClass::classify("AI_APICallError", "Failed after 3 attempts", 429), ErrorClass::RateLimit);
        assert_eq!(ErrorClass::classify("error", "", 503), ErrorClass::Unavailable);
        assert_eq!(ErrorClass::classify("BadRequestError", "Invalid value for 'temperature'", 400), ErrorClass::InvalidArguments);
        assert_eq!(
            ErrorClass::classify("BadRequestError", "This model's maximum context length is 8192 tokens", 400),
            ErrorClass::ContextLength
        );
        assert_eq!(ErrorClass::classify("BadRequestError", "unsupported parameter: logprobs", 400), ErrorClass::InvalidRequest);
        assert_eq!(ErrorClass::classify("Weird", "something odd", 0), ErrorClass::Other);
        assert_eq!(ErrorClass::classify("Weird", "something odd", 302), ErrorClass::Other);
    }

    #[test]
    fn statuses_are_read_from_messages_as_sdks_write_them() {
        assert_eq!(http_status_in("Error code: 429 - {'error': ...}"), 429);
        assert_eq!(http_status_in("status_code: 429, model_name: gpt-4o-mini"), 429);
        assert_eq!(http_status_in("HTTP 503 Service Unavailable"), 503);
        assert_eq!(http_status_in("request failed with status 401"), 401);
        assert_eq!(http_status_in("Limit 200000, Used 200000, Requested 64"), 0);
        assert_eq!(http_status_in("took 429 ms"), 0);
        assert_eq!(http_status_in("429 Rate limit reached for gpt-4o-mini"), 429);
        assert_eq!(http_status_in("503"), 503);
        assert_eq!(http_status_in("200 tokens"), 0);
    }

    #[test]
    fn ids_round_trip() {
        for class in [ErrorClass::RateLimit, ErrorClass::InvalidRequest, ErrorClass::Unavailable, ErrorClass::Other] {
            assert_eq!(ErrorClass::from_id(class.id()), Some(class));
        }
    }
}
