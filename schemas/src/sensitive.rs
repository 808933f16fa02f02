//! What personal data and secrets look like in text: one definition for the collector, which
//! redacts them before storage, and the analyzer, which flags answers that disclose them.
//!
//! The patterns are RE2-compatible (ClickHouse's `match` runs [`ANY`] to find candidate rows)
//! and Rust-`regex`-compatible. [`find`] validates what the patterns only suggest: a card
//! number passes the Luhn check and starts like a card network's, a phone number is written
//! the way phone numbers are (a `+`, or separators between digit groups), never a bare run of
//! digits, which in LLM traffic is far more often an order, tracking or ticket number.

use std::sync::LazyLock;

use regex::Regex;
use serde::{Deserialize, Serialize};

/// API keys, tokens and private keys of the common providers (the formats gitleaks' default
/// rules know by their prefix).
pub const SECRETS: &[&str] = &[
    r"\bsk-(?:ant-|proj-|live-|test-)?[A-Za-z0-9_\-]{20,}",
    r"\bfwk_[A-Za-z0-9]{20,}",
    r"\bAKIA[0-9A-Z]{16}\b",
    r"\bgh[pousr]_[A-Za-z0-9]{36,}\b",
    r"\bgithub_pat_[A-Za-z0-9_]{40,}\b",
    r"\bxox[abprs]-[A-Za-z0-9\-]{10,}",
    r"\bAIza[0-9A-Za-z_\-]{35}\b",
    r"\beyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}",
    r"(?i)\bbearer\s+[A-Za-z0-9._~+/\-]{20,}=*",
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----",
    r"\b[rs]k_(?:live|test)_[A-Za-z0-9]{20,}",
    r"\bSG\.[A-Za-z0-9_\-]{22}\.[A-Za-z0-9_\-]{43}\b",
    r"https://hooks\.slack\.com/services/T[A-Z0-9]+/B[A-Z0-9]+/[A-Za-z0-9]+",
    r"\bnpm_[A-Za-z0-9]{36}\b",
    r"\bglpat-[A-Za-z0-9_\-]{20,}",
    r"\bhf_[A-Za-z0-9]{30,}\b",
    r"\bya29\.[A-Za-z0-9_\-]{20,}",
    r"\bSK[0-9a-f]{32}\b",
    r"\bshp(?:at|ca|pa|ss)_[a-fA-F0-9]{32}\b",
];
pub const EMAIL: &str = r"\b[A-Za-z0-9._%+\-]+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}\b";
pub const PHONE: &str = r"(?:\+|\b)\(?\d[\d \-.()]{6,}\d\b";
pub const CARD: &str = r"\b(?:\d[ \-]?){12,18}\d\b";

/// What the collector's redaction leaves in place of a match.
pub const REDACTED: &str = r"\[REDACTED:[a-z_]+\]";

/// Any of the above: a cheap first pass (ClickHouse `match`) before [`find`] decides.
pub const ANY: &str = r"@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}|\d[\d \-.()]{7,}\d|\bsk-[A-Za-z0-9_\-]{20,}|\bAKIA[0-9A-Z]{16}|\bgh[pousr]_[A-Za-z0-9]{30,}|\bgithub_pat_|\bxox[abprs]-|\bAIza[0-9A-Za-z_\-]{30,}|\beyJ[A-Za-z0-9_\-]{8,}\.eyJ|(?i:bearer\s+[A-Za-z0-9._~+/\-]{20,})|PRIVATE KEY-----|\bfwk_[A-Za-z0-9]{20,}|\[REDACTED:|\b[rs]k_(?:live|test)_|\bSG\.[A-Za-z0-9_\-]{22}\.|hooks\.slack\.com/services/|\bnpm_[A-Za-z0-9]{36}|\bglpat-|\bhf_[A-Za-z0-9]{30,}|\bya29\.|\bSK[0-9a-f]{32}|\bshp(?:at|ca|pa|ss)_";

/// The kinds of sensitive data, most serious first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Secret,
    Card,
    Email,
    Phone,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Secret => "secret",
            Kind::Card => "card",
            Kind::Email => "email",
            Kind::Phone => "phone",
        }
    }

    /// What a reviewer calls it.
    pub fn noun(self) -> &'static str {
        match self {
            Kind::Secret => "secrets (API keys, tokens)",
            Kind::Card => "card numbers",
            Kind::Email => "e-mail addresses",
            Kind::Phone => "phone numbers",
        }
    }

    /// Credentials are a different problem from customers' personal data.
    pub fn is_credential(self) -> bool {
        self == Kind::Secret
    }

    fn of_redaction(rule: &str) -> Option<Kind> {
        match rule {
            "secret" => Some(Kind::Secret),
            "card" => Some(Kind::Card),
            "email" => Some(Kind::Email),
            "phone" => Some(Kind::Phone),
            _ => None,
        }
    }
}

/// One piece of sensitive data found in a text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub kind: Kind,
    /// As written in the text.
    pub text: String,
    /// The form to compare with another text: lower-case for e-mails, digits only for numbers.
    pub canonical: String,
}

struct Patterns {
    secrets: Vec<Regex>,
    email: Regex,
    phone: Regex,
    card: Regex,
    redacted: Regex,
    date: Regex,
}

static PATTERNS: LazyLock<Patterns> = LazyLock::new(|| Patterns {
    secrets: SECRETS.iter().map(|p| Regex::new(p).expect("valid secret pattern")).collect(),
    email: Regex::new(EMAIL).expect("valid pattern"),
    phone: Regex::new(PHONE).expect("valid pattern"),
    card: Regex::new(CARD).expect("valid pattern"),
    redacted: Regex::new(r"\[REDACTED:([a-z_]+)\]").expect("valid pattern"),
    date: Regex::new(r"^\d{4}[\-./]\d{1,2}[\-./]\d{1,2}$|^\d{1,2}[\-./]\d{1,2}[\-./]\d{2,4}$").expect("valid pattern"),
});

fn digits(s: &str) -> String {
    s.chars().filter(char::is_ascii_digit).collect()
}

/// The Luhn checksum every payment card number satisfies.
pub fn luhn(number: &str) -> bool {
    let d: Vec<u32> = number.chars().filter_map(|c| c.to_digit(10)).collect();
    if d.len() < 12 {
        return false;
    }
    let sum: u32 = d
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &x)| {
            if i % 2 == 1 {
                let y = x * 2;
                if y > 9 { y - 9 } else { y }
            } else {
                x
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// Card-shaped: 13 to 19 digits, a major network's first digit (Amex 3, Visa 4, Mastercard 2
/// and 5, Discover 6), and the Luhn checksum.
fn is_card(text: &str) -> bool {
    let d = digits(text);
    (13..=19).contains(&d.len()) && matches!(d.as_bytes()[0], b'2'..=b'6') && luhn(&d)
}

/// Phone-shaped: 8 to 15 digits written with a leading `+` or with separators between groups
/// (`415-555-0132`, `(020) 7946 0958`), and not a date.
fn is_phone(text: &str) -> bool {
    let t = text.trim();
    let d = digits(t);
    let grouped = t.chars().any(|c| " -.()".contains(c));
    (8..=15).contains(&d.len()) && (t.starts_with('+') || grouped) && !PATTERNS.date.is_match(t)
}

/// Every piece of personal data or secret in `text`, in order of appearance, each once.
pub fn find(text: &str) -> Vec<Finding> {
    let p = &*PATTERNS;
    let mut out: Vec<(usize, Finding)> = Vec::new();
    let mut push = |at: usize, kind: Kind, text: &str, canonical: String| {
        if !out.iter().any(|(_, f)| f.kind == kind && f.canonical == canonical) {
            out.push((at, Finding { kind, text: text.to_string(), canonical }));
        }
    };
    for re in &p.secrets {
        for m in re.find_iter(text) {
            push(m.start(), Kind::Secret, m.as_str(), m.as_str().to_string());
        }
    }
    for m in p.email.find_iter(text) {
        push(m.start(), Kind::Email, m.as_str(), m.as_str().to_lowercase());
    }
    for m in p.card.find_iter(text) {
        if is_card(m.as_str()) {
            push(m.start(), Kind::Card, m.as_str(), digits(m.as_str()));
        }
    }
    for m in p.phone.find_iter(text) {
        if is_phone(m.as_str()) && !is_card(m.as_str()) {
            push(m.start(), Kind::Phone, m.as_str(), digits(m.as_str()));
        }
    }
    for c in p.redacted.captures_iter(text) {
        let whole = c.get(0).expect("a match");
        if let Some(kind) = Kind::of_redaction(&c[1]) {
            push(whole.start(), kind, whole.as_str(), whole.as_str().to_string());
        }
    }
    out.sort_by_key(|(at, _)| *at);
    out.into_iter().map(|(_, f)| f).collect()
}

/// Mailboxes of a function, not a person (RFC 2142 and common practice): `support@`,
/// `billing@`, `noreply@`… An assistant giving its company's support address discloses no
/// one's personal data.
const ROLE_MAILBOXES: &[&str] = &[
    "abuse",
    "accounts",
    "admin",
    "billing",
    "care",
    "careers",
    "contact",
    "customercare",
    "customerservice",
    "customer-service",
    "donotreply",
    "do-not-reply",
    "enquiries",
    "feedback",
    "hello",
    "help",
    "helpdesk",
    "hostmaster",
    "info",
    "inquiries",
    "jobs",
    "legal",
    "marketing",
    "media",
    "no-reply",
    "noreply",
    "office",
    "orders",
    "partners",
    "postmaster",
    "press",
    "privacy",
    "returns",
    "sales",
    "security",
    "service",
    "support",
    "team",
    "webmaster",
];

impl Finding {
    /// An e-mail address of a function (`support@…`, `privacy@…`), not of a person.
    pub fn is_role_mailbox(&self) -> bool {
        self.kind == Kind::Email
            && self.canonical.split_once('@').is_some_and(|(local, _)| {
                let local = local.split('+').next().unwrap_or(local);
                ROLE_MAILBOXES.contains(&local)
            })
    }
}

/// Whether `finding` appears in `other` (the user's own words): a disclosure is only what the
/// user did not give.
pub fn appears_in(finding: &Finding, other: &str) -> bool {
    match finding.kind {
        Kind::Email => other.to_lowercase().contains(&finding.canonical),
        Kind::Phone | Kind::Card => {
            let d = digits(other);
            // A phone number given with a country code and repeated without (or the reverse).
            let tail = &finding.canonical[finding.canonical.len().saturating_sub(9)..];
            d.contains(&finding.canonical) || (finding.kind == Kind::Phone && d.contains(tail))
        }
        Kind::Secret => other.contains(&finding.canonical),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(text: &str) -> Vec<(Kind, String)> {
        find(text).into_iter().map(|f| (f.kind, f.canonical)).collect()
    }

    #[test]
    fn finds_each_kind_and_validates_numbers() {
        assert_eq!(
            kinds("Write to jane.doe@example.com or call +1 415-555-0132."),
            vec![(Kind::Email, "jane.doe@example.com".into()), (Kind::Phone, "14155550132".into())]
        );
        assert_eq!(kinds("Card on file: 4111 1111 1111 1111"), vec![(Kind::Card, "4111111111111111".into())]);
        assert_eq!(
            kinds("export OPENAI_API_KEY=sk-proj-abcdefghijklmnopqrstuvwx1234"),
            vec![(Kind::Secret, "sk-proj-abcdefghijklmnopqrstuvwx1234".into())]
        );
        assert_eq!(kinds("The customer's e-mail is [REDACTED:email]."), vec![(Kind::Email, "[REDACTED:email]".into())]);
    }

    /// The provider formats beyond OpenAI's: each is a secret, in the analyzer's `ANY`
    /// prefilter too (what ClickHouse's `match` lets through is what the analyzer sees).
    #[test]
    fn provider_tokens_by_their_prefix() {
        let any = Regex::new(ANY).unwrap();
        for token in [
            "sk_live_4eC39HqLyjWDarjtT1zdp7dc",
            "rk_test_51H8abcdefghijklmnopqrstu",
            "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",
            "https://hooks.slack.com/services/T0123ABCD/B0456EFGH/abcdefghijklmnop1234",
            "npm_abcdefghijklmnopqrstuvwxyz0123456789",
            "glpat-abcdefghij0123456789",
            "hf_abcdefghijklmnopqrstuvwxyz012345",
            "xoxb-123456789012-123456789012-abcdefghijklmnopqrstuvwx",
        ] {
            let text = format!("const client = init('{token}');");
            assert_eq!(kinds(&text).first().map(|k| k.0), Some(Kind::Secret), "{token}");
            assert!(any.is_match(&text), "{token}");
        }
        assert!(find("Set STRIPE_SECRET_KEY in the environment; never paste sk_live keys here.").is_empty());
    }

    #[test]
    fn ids_dates_and_prices_are_not_personal_data() {
        for text in [
            "Your order 48213312907 shipped on 2025-06-02 and costs 1299.00 dollars.",
            "Tracking number 1Z999AA10123456784, ticket 4111111111111112.",
            "Delivery between 12.06.2025 and 14.06.2025.",
            "SELECT count(*) FROM orders WHERE id > 1000000",
        ] {
            assert!(find(text).is_empty(), "{text}: {:?}", find(text));
        }
    }

    #[test]
    fn what_the_user_gave_is_an_echo_not_a_leak() {
        let f = &find("I updated the address for JANE@example.com, and the phone 415 555 0132.")[..];
        assert!(appears_in(&f[0], "my email is jane@example.com"));
        assert!(appears_in(&f[1], "call me at +1 (415) 555-0132"));
        assert!(!appears_in(&f[0], "my email is john@example.com"));
    }

    #[test]
    fn a_functions_mailbox_is_not_a_persons() {
        let f = find("Write to support@northwind.example, Privacy+eu@shop.example or jane.support@example.com.");
        let role: Vec<bool> = f.iter().map(Finding::is_role_mailbox).collect();
        assert_eq!(role, vec![true, true, false]);
    }
}
