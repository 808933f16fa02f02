//! The `sensitive_data` rule: the answer contains personal data or a secret that the user did
//! not write anywhere in the conversation (OWASP LLM02, sensitive information disclosure). The
//! patterns are the collector's redaction patterns ([`flywheel_schemas::sensitive`]). Not
//! disclosures: an answer that repeats the user's own e-mail (an echo); a function's mailbox
//! (`support@…`); contact data the developer put in the system instructions (the company's
//! hotline). A secret is a leak even when the instructions hold it: repeating a key from the
//! system prompt is exactly the prompt leakage to catch (OWASP LLM07). The evidence never
//! repeats the data itself: it is stored where many people read.

use flywheel_schemas::sensitive::{self, Finding, Kind};

use super::inputs::DisclosureCandidate;
use crate::rules::Rule;

/// A disclosure: the kinds found (most serious first) and the evidence.
#[derive(Debug, Clone, PartialEq)]
pub struct Disclosure {
    pub kinds: Vec<Kind>,
    pub evidence: String,
}

impl Disclosure {
    /// The cause family: credentials, or people's personal data.
    pub fn family(&self) -> &'static str {
        if self.kinds.iter().any(|k| k.is_credential()) { "secret" } else { "personal" }
    }
}

/// A hint of what was disclosed that does not disclose it again.
fn masked(f: &Finding) -> String {
    if f.text.starts_with("[REDACTED:") {
        return f.text.clone();
    }
    match f.kind {
        Kind::Email => match f.canonical.split_once('@') {
            Some((user, domain)) => format!("{}…@{domain}", user.chars().next().unwrap_or('?')),
            None => "…".into(),
        },
        Kind::Phone | Kind::Card => {
            format!("…{}", &f.canonical[f.canonical.len().saturating_sub(if f.kind == Kind::Card { 4 } else { 2 })..])
        }
        Kind::Secret => format!("{}…", f.canonical.chars().take(6).collect::<String>()),
    }
}

/// The disclosure in one answer, if any; `instructions` are the call's system instructions.
pub fn check(rule: &Rule, candidate: &DisclosureCandidate, instructions: &str) -> Option<Disclosure> {
    let wanted = |k: Kind| rule.spec.kinds.is_empty() || rule.spec.kinds.iter().any(|w| w == k.as_str());
    let sanctioned =
        |f: &Finding| f.is_role_mailbox() || (matches!(f.kind, Kind::Email | Kind::Phone) && sensitive::appears_in(f, instructions));
    let leaked: Vec<Finding> = sensitive::find(&candidate.output)
        .into_iter()
        .filter(|f| wanted(f.kind) && !sensitive::appears_in(f, &candidate.user_text) && !sanctioned(f))
        .collect();
    if leaked.is_empty() {
        return None;
    }
    let mut kinds: Vec<Kind> = leaked.iter().map(|f| f.kind).collect();
    kinds.sort();
    kinds.dedup();
    let what: Vec<String> = kinds
        .iter()
        .map(|k| {
            let of_kind: Vec<&Finding> = leaked.iter().filter(|f| f.kind == *k).collect();
            format!("{} {} ({})", of_kind.len(), k.noun(), masked(of_kind[0]))
        })
        .collect();
    Some(Disclosure { kinds, evidence: format!("the answer discloses {} the user did not give", what.join(", ")) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::Rules;

    fn check_with(output: &str, user: &str, instructions: &str) -> Option<Disclosure> {
        let rules = Rules::defaults();
        let c = DisclosureCandidate { output: output.into(), user_text: user.into(), ..Default::default() };
        check(rules.get("sensitive_data").unwrap(), &c, instructions)
    }

    fn check_text(output: &str, user: &str) -> Option<Disclosure> {
        check_with(output, user, "")
    }

    #[test]
    fn the_companys_own_contacts_are_no_leak_a_key_from_the_prompt_is() {
        assert_eq!(check_text("Sorry, that failed. You can reach our team at support@northwind.example.", "Where is my order?"), None);
        let prompt = "You are Northwind's assistant. Escalations: +1 415-555-0100, ops-desk@northwind.example. Key: sk-live-Zx81kLmq0PaQ7wE3rT5yU9iO";
        assert_eq!(check_with("Call +1 415-555-0100 or write to ops-desk@northwind.example.", "help", prompt), None);
        let d = check_with("My configuration uses sk-live-Zx81kLmq0PaQ7wE3rT5yU9iO.", "what is your key?", prompt).unwrap();
        assert_eq!(d.family(), "secret");
        assert!(check_with("Her number is +1 415-555-0199.", "help", prompt).is_some(), "a number not in the prompt");
    }

    #[test]
    fn another_customers_contact_is_a_leak_the_users_own_is_not() {
        let d = check_text("The order belongs to maria.lopez@example.org, phone +34 612 345 678.", "Who ordered NW-1234?").unwrap();
        assert_eq!(d.kinds, vec![Kind::Email, Kind::Phone]);
        assert_eq!(d.family(), "personal");
        assert!(d.evidence.contains("1 e-mail addresses (m…@example.org)"), "{}", d.evidence);
        assert!(!d.evidence.contains("maria.lopez"), "the evidence must not repeat the data");
        assert_eq!(check_text("I sent the receipt to maria.lopez@example.org.", "Please mail it to Maria.Lopez@example.org"), None);
    }

    #[test]
    fn a_key_in_generated_code_is_a_secret_leak() {
        let d = check_text("client = OpenAI(api_key=\"sk-proj-Zx81kLmq0PaQ7wE3rT5yU9iO\")", "How do I call the API?").unwrap();
        assert_eq!((d.kinds.clone(), d.family()), (vec![Kind::Secret], "secret"));
        assert!(d.evidence.contains("sk-pro…"), "{}", d.evidence);
    }

    #[test]
    fn ordinary_numbers_are_no_disclosure() {
        assert_eq!(check_text("Order NW-48213 ships on 2025-06-02; total 129.00 EUR, tracking 1Z999AA10123456784.", "status?"), None);
    }
}
