//! Questions the support assistant's customers ask again and again (`--repeated-questions`):
//! policy questions whose right answer is the same for everyone, said in many ways (number words
//! or digits, "30-day" or "30 days", with or without a second fact), and personal questions
//! whose answers differ from user to user because a tool returns that user's data. The
//! `inconsistent_answer` failure mode answers a policy question with facts that contradict the
//! policy — the shape the analyzer's `inconsistent` rule must find, while the paraphrases and
//! the personal answers are the confusers it must leave alone.

use serde_json::json;

use crate::compose::{Rng, between, digits, fill, pick};
use crate::turn::{ToolUse, Turn};

/// A policy question: its phrasings, right answers, and answers that contradict the policy.
struct Faq {
    id: &'static str,
    questions: &'static [&'static str],
    answers: &'static [&'static str],
    contradictions: &'static [&'static str],
}

/// Every right answer agrees with the support assistant's system prompt.
const FAQS: &[Faq] = &[
    Faq {
        id: "return_window",
        questions: &[
            "How long do I have to return an item?",
            "What is your return window?",
            "How many days do I have to send something back?",
        ],
        answers: &[
            "You can return unused items within 30 days of delivery for a refund to your original payment method.",
            "Our return window is thirty days from delivery, as long as the item is unused.",
            "Unused items can be sent back up to 30 days after they arrive; refunds then post within 5-10 business days.",
            "You have a 30-day window from delivery to return anything unused.",
        ],
        contradictions: &[
            "You can return unused items within 14 days of delivery.",
            "Our return window is 60 days from purchase, as long as the item is unused.",
            "Items can be returned up to 90 days after delivery, no questions asked.",
        ],
    },
    Faq {
        id: "refund_time",
        questions: &["How long does a refund take?", "When will I get my money back after a return?"],
        answers: &[
            "Once we receive the return, refunds post within 5-10 business days.",
            "Expect the money back on your original payment method within five to ten business days of our receiving the item.",
            "Refunds usually take 5 to 10 business days to show up after the return arrives.",
        ],
        contradictions: &[
            "Refunds post within 24 hours of the return reaching us.",
            "Refunds take 2-3 business days once the item is back.",
            "It takes 3 to 4 weeks for a refund to be processed.",
        ],
    },
    Faq {
        id: "gift_cards",
        questions: &["Are gift cards refundable?", "Can I get a refund on a gift card?"],
        answers: &[
            "No, gift cards are not refundable.",
            "No — gift cards can't be refunded, but they never expire.",
            "No. Gift cards are final and cannot be returned for cash.",
        ],
        contradictions: &[
            "Yes, gift cards can be refunded like any other item.",
            "Yes, you can return an unused gift card for a full refund.",
        ],
    },
    Faq {
        id: "sale_items",
        questions: &["Can I return sale items?", "Are sale items refundable?"],
        answers: &[
            "Yes, sale items are refundable under the same policy as everything else.",
            "Yes — sale items can be returned like any other unused item.",
            "Yes, as long as they're unused and within the return window.",
        ],
        contradictions: &["No, sale items are final sale and cannot be returned.", "No, we don't accept returns on discounted items."],
    },
    Faq {
        id: "refund_method",
        questions: &["Will my refund go back to my card?", "Do refunds go to the original payment method?"],
        answers: &[
            "Yes, refunds go back to the original payment method.",
            "Yes — we always refund to the card or account you paid with.",
            "Yes, the refund is issued to your original form of payment.",
        ],
        contradictions: &["No, refunds are issued as store credit.", "No, we refund by mailed check instead."],
    },
];

const PERSONAL_QUESTIONS: &[&str] = &[
    "What's the status of my last order?",
    "Where is my most recent order?",
    "How much store credit do I have?",
    "What is my store credit balance?",
    "When does my membership renew?",
    "What date does my membership renew on?",
];
const ETAS: &[&str] = &["on Thursday", "by Friday", "early next week", "within two business days", "tomorrow", "on Monday"];
const CARRIERS: &[&str] = &["UPS", "FedEx", "DHL Express", "USPS"];
const MONTHS: &[&str] = &["January", "February", "March", "April", "May", "June", "July", "August", "September", "October"];
const TIERS: &[&str] = &["Trailblazer", "Summit", "Basecamp"];

/// A policy question in one of its phrasings, with a right answer in one of its wordings.
pub fn policy_question(rng: &mut Rng) -> Turn {
    let faq = &FAQS[between(rng, 0, FAQS.len() as u64 - 1) as usize];
    Turn {
        topic: "faq",
        request: pick(rng, faq.questions).to_string(),
        tool: None,
        answer: pick(rng, faq.answers).to_string(),
        subject: faq.id.into(),
    }
}

/// Whether a request asks one of the policy questions (in any opener or closer).
pub fn is_policy_question(request: &str) -> bool {
    let request = request.to_lowercase();
    FAQS.iter().flat_map(|f| f.questions).any(|q| request.contains(&q.to_lowercase()))
}

/// Whether a request asks about the user's own account (answers rightly differ by user).
pub fn is_personal_question(request: &str) -> bool {
    let request = request.to_lowercase();
    PERSONAL_QUESTIONS.iter().any(|q| request.contains(&q.to_lowercase()))
}

/// An answer to `turn`'s policy question that contradicts the policy.
pub fn contradiction(rng: &mut Rng, turn: &Turn) -> String {
    let faq = FAQS.iter().find(|f| f.id == turn.subject).unwrap_or(&FAQS[0]);
    pick(rng, faq.contradictions).to_string()
}

/// A question about the user's own account, answered from a tool's result: the facts differ
/// from user to user, and rightly so.
pub fn personal_question(rng: &mut Rng) -> Turn {
    let order = format!("NW-{}", digits(rng, 6));
    let customer = format!("cus_{}", digits(rng, 8));
    let (request, result, answer) = match between(rng, 0, 2) {
        0 => {
            let (carrier, eta) = (pick(rng, CARRIERS), pick(rng, ETAS));
            (
                pick(rng, &PERSONAL_QUESTIONS[..2]),
                json!({"last_order": {"order_id": order, "status": "shipped", "carrier": carrier, "estimated_delivery": eta}}),
                fill(
                    pick(
                        rng,
                        &[
                            "Your last order, {order}, shipped with {carrier} and should arrive {eta}.",
                            "Order {order} is with {carrier}; delivery is expected {eta}.",
                        ],
                    ),
                    &[("order", &order), ("carrier", carrier), ("eta", eta)],
                ),
            )
        }
        1 => {
            let credit = format!("${}.{}", between(rng, 5, 180), digits(rng, 2));
            (
                pick(rng, &PERSONAL_QUESTIONS[2..4]),
                json!({"store_credit": credit, "last_order": {"order_id": order}}),
                fill(
                    pick(
                        rng,
                        &[
                            "You have {credit} in store credit.",
                            "Your store credit balance is {credit}; it applies at checkout automatically.",
                        ],
                    ),
                    &[("credit", &credit)],
                ),
            )
        }
        _ => {
            let renews = format!("{} {}", pick(rng, MONTHS), between(rng, 1, 28));
            let tier = pick(rng, TIERS);
            (
                pick(rng, &PERSONAL_QUESTIONS[4..]),
                json!({"membership": {"tier": tier, "renews_on": renews}, "last_order": {"order_id": order}}),
                fill(
                    pick(rng, &["Your {tier} membership renews on {renews}.", "It renews on {renews} ({tier} tier)."]),
                    &[("tier", tier), ("renews", &renews)],
                ),
            )
        }
    };
    Turn {
        topic: "faq_personal",
        request: request.to_string(),
        tool: Some(ToolUse { name: "get_account_summary", arguments: json!({"customer_id": customer}), result }),
        answer,
        subject: order,
    }
}
