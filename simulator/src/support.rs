//! Content of the support assistant of "Northwind Outfitters", an outdoor-gear shop: customer
//! requests about orders, refunds, shipping, accounts and billing, the tools the assistant
//! calls, and correct answers. Each text is composed from templates and slot values, so a run
//! of thousands of interactions has thousands of distinct texts.

use serde_json::json;

use crate::compose::{Rng, between, capitalize, chance, digits, fill, pick, sentence, with_opener};
use crate::turn::{ToolUse, Turn};

pub const SYSTEM_PROMPT: &str = "You are the customer support assistant of Northwind Outfitters. Answer in the customer's language, \
briefly and politely. Use the tools to look up orders, shipments, invoices and accounts; never guess order details. Refund policy: \
unused items can be returned within 30 days of delivery for a refund to the original payment method; refunds post within 5-10 \
business days; sale items are refundable, gift cards are not. Escalate to a human agent when the customer asks for one.";

pub const TOPICS: [&str; 5] = ["order_status", "refund", "shipping", "account", "billing"];

const ITEMS: &[&str] = &[
    "trail running shoes",
    "2-person tent",
    "down jacket",
    "hiking backpack",
    "rain shell",
    "sleeping bag",
    "camp stove",
    "trekking poles",
    "merino base layer",
    "headlamp",
    "water filter",
    "climbing harness",
    "insulated bottle",
    "fleece hoodie",
    "hiking boots",
    "camping hammock",
    "ski gloves",
    "bike helmet",
    "wool socks (3-pack)",
    "solar charger",
    "kayak paddle",
    "duffel bag",
    "softshell pants",
    "folding chair",
];
const CARRIERS: &[&str] = &["UPS", "FedEx", "DHL Express", "USPS"];
const WHEN_ORDERED: &[&str] = &[
    "yesterday",
    "two days ago",
    "last Monday",
    "last week",
    "about ten days ago",
    "two weeks ago",
    "on Friday",
    "at the start of the month",
];
const ETAS: &[&str] = &["on Thursday", "by Friday", "early next week", "within two business days", "tomorrow", "on Monday"];
const COUNTRIES: &[&str] = &["Canada", "Mexico", "the UK", "Germany", "Australia", "Japan", "Norway", "Ireland"];
const CITIES: &[&str] = &["Denver", "Seattle", "Austin", "Boston", "Portland", "Chicago", "Phoenix", "Atlanta", "Minneapolis"];
const NAMES: &[&str] = &["jane.doe", "mike.r", "sara_k", "tom.h", "priya.s", "alex.m", "chen.wei", "lucia.g", "omar.b", "nina.p"];
const DOMAINS: &[&str] = &["gmail.com", "outlook.com", "yahoo.com", "proton.me", "icloud.com"];
const DEFECTS: &[&str] = &[
    "arrived with a torn seam",
    "doesn't fit",
    "is the wrong color",
    "stopped working after a week",
    "was not what I expected",
    "arrived damaged",
    "is missing a part",
];
const OPENERS: &[&str] = &["", "", "Hi,", "Hello!", "Hey there.", "Good morning.", "Hi team,", "Hello, quick question."];
const CLOSERS: &[&str] = &["", "", "Thanks!", "Thank you.", "Can you help?", "Appreciate it.", "Thanks in advance.", "Please advise."];
const FOLLOW_UPS: &[&str] = &["Also,", "One more thing:", "Thanks. And", "OK. Another question:", "Got it. Also", "Great, thanks. Next,"];

struct Slots {
    order: String,
    item: &'static str,
    carrier: &'static str,
    tracking: String,
    email: String,
    amount: String,
    last4: String,
}

fn slots(rng: &mut Rng) -> Slots {
    let carrier = pick(rng, CARRIERS);
    let tracking = match carrier {
        "UPS" => format!("1Z{}", crate::compose::alnum(rng, 16).to_uppercase()),
        "USPS" => format!("9400{}", digits(rng, 18)),
        _ => digits(rng, 12),
    };
    Slots {
        order: format!("NW-{}", digits(rng, 6)),
        item: pick(rng, ITEMS),
        carrier,
        tracking,
        email: format!("{}{}@{}", pick(rng, NAMES), between(rng, 1, 99), pick(rng, DOMAINS)),
        amount: format!("${}.{}", between(rng, 19, 480), digits(rng, 2)),
        last4: digits(rng, 4),
    }
}

/// A new turn on a random topic (or `topic`), as the first message of a session or, with
/// `follow_up`, a later one.
pub fn turn(rng: &mut Rng, topic: Option<&'static str>, follow_up: bool) -> Turn {
    let topic = topic.unwrap_or_else(|| pick(rng, &TOPICS));
    let s = slots(rng);
    let mut turn = match topic {
        "order_status" => order_status(rng, &s),
        "refund" => refund(rng, &s),
        "shipping" | "shipping_info" => shipping(rng, &s),
        "account" => account(rng, &s),
        "faq" => crate::repeated::policy_question(rng),
        "faq_personal" => crate::repeated::personal_question(rng),
        _ => billing(rng, &s),
    };
    let opener = if follow_up { pick(rng, FOLLOW_UPS) } else { pick(rng, OPENERS) };
    turn.request = sentence(&[&with_opener(opener, &turn.request), pick(rng, CLOSERS)]);
    turn
}

fn order_status(rng: &mut Rng, s: &Slots) -> Turn {
    let request = fill(
        pick(
            rng,
            &[
                "Where is my order {order}? I ordered the {item} {when} and it still hasn't arrived.",
                "Can you check the status of order {order}?",
                "My {item} was supposed to be here by now. Order number is {order}.",
                "Has order {order} shipped yet?",
                "I haven't received any shipping update for {order} (the {item}). What's going on?",
                "order {order} - is it still processing? I need the {item} for a trip this weekend.",
                "I placed order {order} {when}. When will it be delivered?",
                "Could you tell me when my {item} (order {order}) will arrive?",
                "Is there a delay with order {order}? The {item} was a gift.",
            ],
        ),
        &[("order", &s.order), ("item", s.item), ("when", pick(rng, WHEN_ORDERED))],
    );
    let eta = pick(rng, ETAS);
    let status = pick(rng, &["shipped", "shipped", "in_transit", "processing"]);
    let answer = if status == "processing" {
        fill(
            pick(
                rng,
                &[
                    "Your order {order} ({item}) is still being prepared at our warehouse. It should ship within 24 hours, and you'll get a tracking email as soon as it leaves.",
                    "I checked order {order}: the {item} is packed and waiting for pickup. Expect a shipping confirmation by email today or tomorrow.",
                    "Order {order} hasn't shipped yet; it's in the final quality check. Once {carrier} picks it up, delivery usually takes 2-4 business days.",
                ],
            ),
            &[("order", &s.order), ("item", s.item), ("carrier", s.carrier)],
        )
    } else {
        fill(
            pick(
                rng,
                &[
                    "Good news: your order {order} ({item}) shipped with {carrier} and is expected to arrive {eta}. Tracking number: {tracking}.",
                    "Order {order} is on its way. {carrier} has it in transit and the estimated delivery is {eta}. You can follow it with tracking number {tracking}.",
                    "I found order {order}. The {item} left our warehouse and {carrier} shows delivery {eta}. Here's your tracking number: {tracking}.",
                    "Your {item} is in transit with {carrier} (tracking {tracking}). The carrier currently estimates delivery {eta}.",
                ],
            ),
            &[("order", &s.order), ("item", s.item), ("carrier", s.carrier), ("eta", eta), ("tracking", &s.tracking)],
        )
    };
    Turn {
        topic: "order_status",
        request,
        tool: Some(ToolUse {
            name: "lookup_order",
            arguments: json!({"order_id": s.order}),
            result: json!({"order_id": s.order, "status": status, "items": [s.item], "carrier": s.carrier, "tracking_number": s.tracking, "estimated_delivery": eta}),
        }),
        answer,
        subject: format!("{} ({})", s.order, s.item),
    }
}

/// The correct policy, said in one of several ways.
pub fn policy_statement(rng: &mut Rng) -> &'static str {
    pick(
        rng,
        &[
            "Unused items can be returned within 30 days of delivery, and the refund goes back to your original payment method.",
            "Our policy allows returns of unused items within 30 days of delivery; refunds are issued to the original payment method.",
            "You have 30 days from delivery to return an item in unused condition, and we refund it to the card or account you paid with.",
            "Returns are accepted within 30 days of delivery for unused items, refunded to the original form of payment.",
        ],
    )
}

fn refund(rng: &mut Rng, s: &Slots) -> Turn {
    let with_order = chance(rng, 0.6);
    let policy = policy_statement(rng);
    let timing = pick(
        rng,
        &[
            "Refunds usually post within 5-10 business days after we receive the return.",
            "Once the return arrives, the refund takes 5 to 10 business days to show up.",
            "After we receive the item, please allow 5-10 business days for the refund to appear.",
        ],
    );
    if with_order {
        let request = fill(
            pick(
                rng,
                &[
                    "I'd like a refund for the {item} from order {order}, it {defect}.",
                    "Can I return the {item} I bought {when}? It {defect}. Order {order}.",
                    "How do I get my money back for order {order}? The {item} {defect}.",
                    "I want to return the {item} (order {order}). What's the process?",
                    "The {item} in order {order} {defect}. Can I get a refund?",
                ],
            ),
            &[("order", &s.order), ("item", s.item), ("defect", pick(rng, DEFECTS)), ("when", pick(rng, WHEN_ORDERED))],
        );
        let return_id = format!("R-{}", digits(rng, 5));
        let next = fill(
            pick(
                rng,
                &[
                    "I've started a return for order {order}; a prepaid {carrier} label is on its way to your email.",
                    "I opened return request {return_id} for the {item} in order {order}. You'll receive a return label by email shortly.",
                    "Your return for the {item} (order {order}) is registered; just drop the parcel at any {carrier} location with the label we emailed you.",
                ],
            ),
            &[("order", &s.order), ("item", s.item), ("carrier", s.carrier), ("return_id", &return_id)],
        );
        return Turn {
            topic: "refund",
            request,
            tool: Some(ToolUse {
                name: "create_return",
                arguments: json!({"order_id": s.order, "reason": pick(rng, &["damaged", "wrong_size", "not_as_described", "changed_mind"])}),
                result: json!({"return_id": return_id, "label_sent_to": s.email, "refund_method": "original_payment"}),
            }),
            answer: sentence(&[&next, policy, timing]),
            subject: s.order.clone(),
        };
    }
    // Each general question with the first sentence that answers it.
    let (question, first): (&str, &str) = pick(
        rng,
        &[
            ("What's your refund policy?", ""),
            ("How long do I have to return a {item}?", "You have 30 days from delivery to return the {item} if it's unused."),
            ("Do you refund items bought on sale? I'm looking at a {item}.", "Yes, sale items are refundable under the same terms."),
            ("If I return something, how long until the money is back on my card?", "{timing}"),
            (
                "Can I get a refund in cash if I return a {item} to a store?",
                "Refunds always go back to the original payment method, so a card purchase is refunded to the card, not in cash.",
            ),
            ("Is there a restocking fee for returning a {item}?", "There's no restocking fee for unused items."),
            ("Are gift cards refundable?", "Gift cards can't be refunded, but they never expire."),
        ],
    );
    let slots = [("item", s.item), ("timing", timing)];
    let first = fill(first, &slots);
    let answer = if first == timing { sentence(&[&first, policy]) } else { sentence(&[&first, policy, timing]) };
    Turn { topic: "refund", request: fill(question, &slots), tool: None, answer, subject: s.item.to_string() }
}

fn shipping(rng: &mut Rng, s: &Slots) -> Turn {
    let country = pick(rng, COUNTRIES);
    let city = pick(rng, CITIES);
    let days = between(rng, 3, 9).to_string();
    let eta = pick(rng, ETAS);
    let slots = [
        ("tracking", s.tracking.as_str()),
        ("days", &days),
        ("carrier", s.carrier),
        ("city", city),
        ("eta", eta),
        ("country", country),
        ("item", s.item),
    ];
    if chance(rng, 0.5) {
        let in_transit: &[&str] = &[
            "I checked {tracking}: {carrier} shows the parcel at their {city} hub, and it's scheduled for delivery {eta}. Scans can pause for a few days on long legs.",
            "The last scan for {tracking} is at the {carrier} facility in {city}. If nothing moves in 48 hours, reply here and I'll open a carrier trace.",
            "{carrier} reports {tracking} as in transit via {city}, with delivery expected {eta}. I've added a note to watch it closely.",
        ];
        let (request, answer, status) = match between(rng, 0, 3) {
            0 => ("The tracking for {tracking} hasn't updated in {days} days.", pick(rng, in_transit), "in_transit"),
            1 => ("My package with tracking number {tracking} is stuck. Can you check?", pick(rng, in_transit), "in_transit"),
            2 => ("Can you tell me where parcel {tracking} is right now?", pick(rng, in_transit), "in_transit"),
            _ => (
                "{carrier} says my parcel {tracking} was delivered but I never got it.",
                "{carrier} marked {tracking} as delivered near {city}. Please check with neighbours and your mailbox; if it hasn't turned up within 24 hours, reply here and I'll open a claim and send a replacement.",
                "delivered",
            ),
        };
        return Turn {
            topic: "shipping",
            request: fill(request, &slots),
            tool: Some(ToolUse {
                name: "track_shipment",
                arguments: json!({"tracking_number": s.tracking, "carrier": s.carrier}),
                result: json!({"tracking_number": s.tracking, "status": status, "last_scan": city, "carrier": s.carrier}),
            }),
            answer: fill(answer, &slots),
            subject: s.tracking.clone(),
        };
    }
    // General questions: each with its own answer; the subject is the destination.
    let (request, answer, to_country): (&str, &str, bool) = pick(
        rng,
        &[
            (
                "Do you ship to {country}?",
                "Yes, we ship to {country}: delivery takes 7-12 business days and any customs fees are shown before you pay.",
                true,
            ),
            (
                "How much is express shipping to {city}?",
                "Express shipping to {city} is $14.95 and takes 1-2 business days; standard shipping is free over $75 and takes 3-5 days.",
                false,
            ),
            (
                "How long does standard shipping to {city} take?",
                "Standard shipping to {city} takes 3-5 business days, and it's free for orders over $75.",
                false,
            ),
            (
                "Can I pick up my order in your {city} store instead of having it shipped?",
                "Yes: choose in-store pickup in {city} at checkout. Orders are usually ready within 4 hours and we'll text you when yours is.",
                false,
            ),
            (
                "Do you offer free shipping to {city}?",
                "Standard shipping to {city} is free for orders over $75; below that it's $6.95.",
                false,
            ),
            (
                "Can you ship a {item} to {country}, and are there customs fees?",
                "Yes, we can ship the {item} to {country}. Duties and taxes are calculated at checkout, so there are no surprises on delivery.",
                true,
            ),
        ],
    );
    Turn {
        topic: "shipping_info",
        request: fill(request, &slots),
        tool: None,
        answer: fill(answer, &slots),
        subject: if to_country { country.to_string() } else { city.to_string() },
    }
}

fn account(rng: &mut Rng, s: &Slots) -> Turn {
    // (request, answer, purpose of the account link; none when no link is needed)
    let (request, answer, purpose): (&str, &str, Option<&str>) = pick(
        rng,
        &[
            (
                "I can't log in, the password reset email never arrives. My email is {email}.",
                "I've sent a new password reset link to {email}. It's valid for 30 minutes; please check your spam folder if it doesn't show up within a few minutes.",
                Some("password_reset"),
            ),
            (
                "How do I change the email address on my account ({email})?",
                "A verification link has been sent to {email}. Once you confirm it, you can enter the new address under Account > Profile and the change takes effect immediately.",
                Some("verify_email"),
            ),
            (
                "Please delete my account and my data. It's registered to {email}.",
                "I've sent a confirmation link to {email}. Once you confirm, your account and personal data are deleted within 30 days, as our privacy policy states.",
                Some("confirm_deletion"),
            ),
            (
                "I think someone else logged into my account ({email}). What should I do?",
                "I've triggered a password reset for {email} and signed out all active sessions. Please choose a new password and turn on two-step verification.",
                Some("password_reset"),
            ),
            (
                "Can you unsubscribe {email} from your marketing emails?",
                "Done: {email} is unsubscribed from marketing emails. It can take up to 48 hours for messages already scheduled to stop; order emails will still arrive.",
                None,
            ),
            (
                "My account {email} is locked after too many attempts. Can you unlock it?",
                "I've sent an unlock link to {email}. After you follow it, you can sign in again straight away; if you've forgotten the password, use the reset link on the sign-in page.",
                Some("unlock"),
            ),
        ],
    );
    let slots = [("email", s.email.as_str())];
    Turn {
        topic: "account",
        request: fill(request, &slots),
        tool: purpose.map(|purpose| ToolUse {
            name: "send_account_link",
            arguments: json!({"email": s.email, "purpose": purpose}),
            result: json!({"sent": true, "expires_in_minutes": 30}),
        }),
        answer: fill(answer, &slots),
        subject: s.email.clone(),
    }
}

fn billing(rng: &mut Rng, s: &Slots) -> Turn {
    let (request, answer): (&str, &str) = pick(
        rng,
        &[
            (
                "I was charged twice for order {order}.",
                "I checked order {order}: there's one charge of {amount}; the second line is a temporary authorization that your bank will release within 3-5 business days.",
            ),
            (
                "Why was my card ending in {last4} charged {amount} for order {order}?",
                "The {amount} charged to your card ending in {last4} is the total of order {order}, shipping and sales tax included. I've emailed you the invoice with the breakdown.",
            ),
            (
                "Can I get an invoice with my company's VAT number for order {order}?",
                "The invoice for order {order} ({amount}) is in your account under Orders > Invoices. Add your VAT number there and click Regenerate; I've also emailed you the current PDF.",
            ),
            (
                "The total for order {order} is {amount} but the cart said less. Why?",
                "The cart shows the subtotal; the {amount} for order {order} adds shipping and sales tax. The invoice I just emailed you lists each line.",
            ),
            (
                "I need a receipt for order {order} for my expense report.",
                "I've emailed you a PDF receipt for order {order} ({amount}). You can also download it any time under Orders > Invoices.",
            ),
            (
                "There's a pending charge of {amount} on my card but I cancelled order {order}.",
                "I see a pending authorization of {amount} for the cancelled order {order}. It was never captured and will disappear from your statement within a few days.",
            ),
        ],
    );
    let slots = [("order", s.order.as_str()), ("last4", &s.last4), ("amount", &s.amount)];
    Turn {
        topic: "billing",
        request: fill(request, &slots),
        tool: Some(ToolUse {
            name: "get_invoice",
            arguments: json!({"order_id": s.order}),
            result: json!({"order_id": s.order, "total": s.amount, "charges": 1, "card_last4": s.last4}),
        }),
        answer: fill(answer, &slots),
        subject: s.order.clone(),
    }
}

/// The answer to a request the assistant could not complete because its tool failed.
pub fn tool_failure_answer(rng: &mut Rng) -> String {
    capitalize(&sentence(&[
        pick(
            rng,
            &[
                "I'm sorry, I wasn't able to look that up right now.",
                "Apologies, something went wrong while checking our system.",
                "I couldn't retrieve those details at the moment.",
                "Sorry, my lookup didn't go through.",
            ],
        ),
        pick(
            rng,
            &[
                "Could you double-check the order number and try again?",
                "Please try again in a few minutes.",
                "You can also reach our team at support@northwind.example.",
                "Would you like me to connect you with a human agent?",
            ],
        ),
    ]))
}

/// Tool definitions in the OpenAI function format (`gen_ai.tool.definitions`).
pub fn tool_definitions() -> serde_json::Value {
    json!([
        {"type": "function", "name": "lookup_order", "description": "Look up an order by id", "parameters": {"type": "object", "properties": {"order_id": {"type": "string", "pattern": "^NW-\\d{6}$"}}, "required": ["order_id"]}},
        {"type": "function", "name": "create_return", "description": "Open a return for an order", "parameters": {"type": "object", "properties": {"order_id": {"type": "string"}, "reason": {"type": "string", "enum": ["damaged", "wrong_size", "not_as_described", "changed_mind"]}}, "required": ["order_id", "reason"]}},
        {"type": "function", "name": "track_shipment", "description": "Track a parcel", "parameters": {"type": "object", "properties": {"tracking_number": {"type": "string"}, "carrier": {"type": "string"}}, "required": ["tracking_number"]}},
        {"type": "function", "name": "send_account_link", "description": "Send a password reset, verification, unlock or deletion-confirmation link", "parameters": {"type": "object", "properties": {"email": {"type": "string", "format": "email"}, "purpose": {"type": "string", "enum": ["password_reset", "verify_email", "unlock", "confirm_deletion"]}}, "required": ["email", "purpose"]}},
        {"type": "function", "name": "get_account_summary", "description": "The signed-in customer's last order, store credit and membership", "parameters": {"type": "object", "properties": {"customer_id": {"type": "string"}}, "required": ["customer_id"]}},
        {"type": "function", "name": "get_invoice", "description": "Fetch the invoice of an order", "parameters": {"type": "object", "properties": {"order_id": {"type": "string"}}, "required": ["order_id"]}}
    ])
}
