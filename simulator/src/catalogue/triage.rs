//! Ticket triage: every e-mail to customer care, in the customer's language, is classified by
//! one call in JSON mode (`gen_ai.output.type = "json"`) into a category, a priority, the
//! language and a one-line English summary for the support team. A healthy answer is English
//! JSON about a French e-mail: correct by design, and a trap for language checks.

use serde_json::json;

use super::Mode;
use super::help_center::texts::{TOPICS, index};
use super::help_center::{filled, slots};
use super::planner::Played;
use super::trace::{Finish, Trace};
use crate::compose::{Rng, between, pick, sentence, weighted};
use crate::failure::FailureMode;
use crate::message::Msg;
use crate::turn::Turn;

pub const SYSTEM_PROMPT: &str = "Classify the customer e-mail for Northwind Outfitters' support queue. Reply with a JSON object only: \
{\"category\": one of billing, warranty_claim, rentals, pricing, shipping; \"priority\": one of low, normal, high; \"language\": the \
e-mail's ISO 639-1 code; \"summary\": one English sentence for the support team}.";

const CATEGORIES: [(&str, &str); 5] = [
    ("membership", "billing"),
    ("warranty", "warranty_claim"),
    ("rentals", "rentals"),
    ("price_match", "pricing"),
    ("shipping_abroad", "shipping"),
];

pub struct Case {
    pub turn: Turn,
    category: &'static str,
    priority: &'static str,
    summary: String,
    lang: &'static str,
}

/// An inbound e-mail in `lang`.
pub fn case(rng: &mut Rng, lang: &'static str) -> Case {
    let li = index(lang);
    let topic = &TOPICS[between(rng, 0, TOPICS.len() as u64 - 1) as usize];
    let slots = slots(rng, li);
    let question = filled(pick(rng, topic.questions[li]), &slots);
    let (greeting, urgent, sign_off) = [
        ("Hello,", "I need an answer today, please.", "Best regards,"),
        ("Bonjour,", "J'ai besoin d'une réponse aujourd'hui, merci.", "Cordialement,"),
        ("Hola:", "Necesito una respuesta hoy, por favor.", "Saludos,"),
        ("Guten Tag,", "Ich brauche bitte heute noch eine Antwort.", "Mit freundlichen Grüßen,"),
        ("Olá,", "Preciso de uma resposta hoje, por favor.", "Atenciosamente,"),
    ][li];
    let is_urgent = between(rng, 0, 3) == 0;
    let name = pick(
        rng,
        &["Marie Laurent", "Diego Ortiz", "Anna Schmidt", "João Costa", "Emma Wilson", "Lukas Weber", "Camille Petit", "Lucía Romero"],
    );
    let request = format!("{greeting}\n\n{}\n\n{sign_off}\n{name}", sentence(&[&question, if is_urgent { urgent } else { "" }]));
    let category = CATEGORIES.iter().find(|(t, _)| *t == topic.id).map_or("billing", |(_, c)| *c);
    let priority = if is_urgent { "high" } else { pick(rng, &["low", "normal", "normal"]) };
    let summary = format!("Customer asks: {}", filled(pick(rng, topic.questions[0]), &slots));
    let answer = json!({"category": category, "priority": priority, "language": lang, "summary": summary}).to_string();
    Case { turn: Turn { topic: topic.id, request, tool: None, answer, subject: category.to_string() }, category, priority, summary, lang }
}

pub(crate) fn play(case: &Case, t: &mut Trace<'_>, request: &str, mode: Option<Mode>) -> Played {
    t.json = true;
    t.input.push(Msg::text("user", request));
    let failure = mode.map(FailureMode::Catalogue);
    let text = match mode {
        Some(Mode::TriageSchemaViolation) => violation(t.rng, case),
        _ => case.turn.answer.clone(),
    };
    let target = t.answer(text.clone(), Finish::Stop, failure);
    Played { answer: text, target, language: None }
}

/// JSON that the queue cannot file: a required key missing, a value outside its enum, plain
/// text, or an object cut short.
fn violation(rng: &mut Rng, case: &Case) -> String {
    let Case { category, priority, summary, lang, .. } = case;
    match weighted(rng, &[(0, 0.3), (1, 0.25), (2, 0.25), (3, 0.2)]) {
        0 => json!({"category": category, "language": lang, "summary": summary}).to_string(),
        1 => {
            let odd = pick(rng, &["Warranty Claim", "general inquiry", "other", "customer_question", "urgent"]);
            json!({"category": odd, "priority": priority, "language": lang, "summary": summary}).to_string()
        }
        2 => format!("Category: {category}\nPriority: {priority}\nLanguage: {lang}\nSummary: {summary}"),
        _ => {
            let full = json!({"category": category, "priority": priority, "language": lang, "summary": summary}).to_string();
            full.chars().take(full.len() * 2 / 3).collect()
        }
    }
}
