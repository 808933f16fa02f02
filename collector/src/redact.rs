//! PII and secret redaction, applied to every string value before anything is stored.
//!
//! Secrets (API keys, tokens, private keys) are redacted by default: a prompt that quotes a key
//! must not put it in a database many people can read. E-mail addresses, phone numbers and card
//! numbers are opt-in because they are often the very content being debugged. Custom patterns
//! come from the configuration. A match becomes `[REDACTED:<rule>]`.

use std::borrow::Cow;

use regex::{Regex, RegexSet};
use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RedactionConfig {
    pub secrets: bool,
    pub emails: bool,
    pub phones: bool,
    pub cards: bool,
    /// Extra patterns: `name = "regex"`.
    pub custom: std::collections::BTreeMap<String, String>,
}

impl Default for RedactionConfig {
    fn default() -> Self {
        RedactionConfig { secrets: true, emails: false, phones: false, cards: false, custom: Default::default() }
    }
}

// The patterns are shared with the analyzer, which flags answers that disclose them.
use flywheel_schemas::sensitive::{CARD, EMAIL, PHONE, SECRETS};

#[derive(Debug, Clone)]
pub struct Redactor {
    rules: Vec<(String, Regex)>,
    any: RegexSet,
}

#[derive(Debug, thiserror::Error)]
#[error("invalid redaction pattern `{name}`: {source}")]
pub struct PatternError {
    name: String,
    #[source]
    source: regex::Error,
}

impl Redactor {
    pub fn new(cfg: &RedactionConfig) -> Result<Redactor, PatternError> {
        let mut patterns: Vec<(String, String)> = Vec::new();
        if cfg.secrets {
            patterns.extend(SECRETS.iter().map(|p| ("secret".to_string(), p.to_string())));
        }
        if cfg.emails {
            patterns.push(("email".into(), EMAIL.into()));
        }
        if cfg.cards {
            patterns.push(("card".into(), CARD.into()));
        }
        if cfg.phones {
            patterns.push(("phone".into(), PHONE.into()));
        }
        patterns.extend(cfg.custom.iter().map(|(k, v)| (k.clone(), v.clone())));
        let rules = patterns
            .iter()
            .map(|(name, p)| Regex::new(p).map(|r| (name.clone(), r)).map_err(|source| PatternError { name: name.clone(), source }))
            .collect::<Result<Vec<_>, _>>()?;
        let any = RegexSet::new(patterns.iter().map(|(_, p)| p)).map_err(|source| PatternError { name: "(set)".into(), source })?;
        Ok(Redactor { rules, any })
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    pub fn redact<'a>(&self, text: &'a str) -> Cow<'a, str> {
        if self.rules.is_empty() || !self.any.is_match(text) {
            return Cow::Borrowed(text);
        }
        let mut out = text.to_string();
        for (name, rule) in &self.rules {
            if name == "phone" {
                out = rule
                    .replace_all(&out, |c: &regex::Captures| if phone(&c[0]) { "[REDACTED:phone]".to_string() } else { c[0].to_string() })
                    .into_owned();
            } else if name == "card" {
                // Only digit runs that pass the Luhn check: order numbers and timestamps stay.
                out = rule
                    .replace_all(&out, |c: &regex::Captures| if luhn(&c[0]) { "[REDACTED:card]".to_string() } else { c[0].to_string() })
                    .into_owned();
            } else {
                out = rule.replace_all(&out, format!("[REDACTED:{name}]").as_str()).into_owned();
            }
        }
        Cow::Owned(out)
    }

    /// Redacts every string inside a JSON value, in place.
    pub fn redact_value(&self, value: &mut Value) {
        match value {
            Value::String(s) => {
                if let Cow::Owned(new) = self.redact(s) {
                    *s = new;
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|v| self.redact_value(v)),
            Value::Object(map) => map.values_mut().for_each(|v| self.redact_value(v)),
            _ => {}
        }
    }
}

/// 8 to 15 digits (E.164) written as a phone number: with a leading `+` or separators, so that
/// plain long numbers (ids, amounts) are left alone.
fn phone(candidate: &str) -> bool {
    let digits = candidate.chars().filter(char::is_ascii_digit).count();
    (8..=15).contains(&digits) && (candidate.starts_with('+') || candidate.chars().any(|c| matches!(c, ' ' | '-' | '.' | '(')))
}

fn luhn(candidate: &str) -> bool {
    let digits: Vec<u32> = candidate.chars().filter_map(|c| c.to_digit(10)).collect();
    if !(13..=19).contains(&digits.len()) {
        return false;
    }
    let sum: u32 =
        digits.iter().rev().enumerate().map(|(i, &d)| if i % 2 == 1 { if d * 2 > 9 { d * 2 - 9 } else { d * 2 } } else { d }).sum();
    sum.is_multiple_of(10)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted_by_default_and_the_rest_is_kept() {
        let r = Redactor::new(&RedactionConfig::default()).unwrap();
        let text = "use sk-proj-abcdefghijklmnopqrstuvwxyz123456 and AKIAABCDEFGHIJKLMNOP, mail bob@example.com";
        assert_eq!(r.redact(text), "use [REDACTED:secret] and [REDACTED:secret], mail bob@example.com");
        assert!(matches!(r.redact("nothing to see"), Cow::Borrowed(_)));
    }

    #[test]
    fn opt_in_rules_and_custom_patterns() {
        let cfg = RedactionConfig {
            emails: true,
            cards: true,
            phones: true,
            custom: [("ticket".to_string(), r"TICKET-\d+".to_string())].into(),
            ..Default::default()
        };
        let r = Redactor::new(&cfg).unwrap();
        assert_eq!(r.redact("bob@example.com"), "[REDACTED:email]");
        assert_eq!(r.redact("card 4111 1111 1111 1111 ok"), "card [REDACTED:card] ok");
        assert_eq!(r.redact("order 1234567890123"), "order 1234567890123", "not a Luhn number");
        assert_eq!(r.redact("call +33 6 12 34 56 78"), "call [REDACTED:phone]");
        assert_eq!(r.redact("see TICKET-42"), "see [REDACTED:ticket]");
    }

    #[test]
    fn a_bad_custom_pattern_is_named() {
        let cfg = RedactionConfig { custom: [("oops".to_string(), "(".to_string())].into(), ..Default::default() };
        assert!(Redactor::new(&cfg).unwrap_err().to_string().contains("oops"));
    }
}
