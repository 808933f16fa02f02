//! The travel agent: a tool-using agent that looks up, searches, changes and cancels flight
//! bookings for the company's staff. Several model calls per trace, one per step; with Claude
//! models the tool results travel in `user` messages (Anthropic's layout).

use serde_json::{Value, json};

use super::Mode;
use super::planner::Played;
use super::trace::{Finish, Trace, error};
use crate::compose::{Rng, alnum, between, between_f, chance, hex, pick};
use crate::failure::FailureMode;
use crate::message::Msg;
use crate::turn::Turn;

pub const SYSTEM_PROMPT: &str = "You are the travel agent of Northwind Outfitters' staff travel desk. Use the tools to look up bookings, \
search flights, change and cancel bookings. Only change or cancel a booking when the traveller explicitly asks for it, and confirm \
what you did from the tool results. Report times, prices and allowances exactly as the tools return them.";

const AIRPORTS: &[&str] = &["SFO", "JFK", "ORD", "SEA", "BOS", "DEN", "AUS", "LHR", "FRA", "CDG", "YVR", "MEX"];
const AIRLINES: &[&str] = &["UA", "DL", "AA", "AS", "B6", "LH", "BA", "AF"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Task {
    /// Move a booking to another date (get → search → change).
    Change,
    /// Find flights (search).
    Search,
    /// Departure time and bags of a booking (get).
    Status,
    /// What cancelling would cost, without cancelling (get).
    Options,
}

pub struct Case {
    pub turn: Turn,
    task: Task,
    booking: Value,
    flights: Vec<Value>,
    date: String,
}

fn flight(rng: &mut Rng) -> Value {
    let dep_h = between(rng, 6, 20);
    json!({
        "flight": format!("{} {}", pick(rng, AIRLINES), between(rng, 100, 2999)),
        "departure": format!("{:02}:{:02}", dep_h, pick(rng, &[0, 5, 15, 25, 35, 45, 55])),
        "arrival": format!("{:02}:{:02}", (dep_h + between(rng, 2, 5)) % 24, pick(rng, &[10, 20, 30, 40, 50])),
        "price_usd": between(rng, 140, 890),
        "seats_left": between(rng, 1, 9),
    })
}

/// A traveller's request, fitting `mode`.
pub fn case(rng: &mut Rng, mode: Option<Mode>) -> Case {
    let task = match mode {
        Some(Mode::AgentSearchLoop) => pick(rng, &[Task::Change, Task::Search]),
        Some(Mode::PrematureCompletion) => Task::Change,
        Some(Mode::UnrequestedCancellation) => Task::Options,
        Some(Mode::ToolResultMisread) => pick(rng, &[Task::Status, Task::Search]),
        _ => pick(rng, &[Task::Change, Task::Search, Task::Status, Task::Options]),
    };
    let origin = pick(rng, AIRPORTS);
    let destination = loop {
        let d = pick(rng, AIRPORTS);
        if d != origin {
            break d;
        }
    };
    let date = format!("2026-12-{:02}", between(rng, 1, 28));
    let reference = alnum(rng, 6).to_uppercase();
    let current = flight(rng);
    let fare = pick(rng, &["Basic", "Standard", "Flex"]);
    let booking = json!({
        "booking_ref": reference,
        "passenger": format!("{} {}", pick(rng, &["A.", "J.", "M.", "R.", "S."]), pick(rng, &["Chen", "Okafor", "Meyer", "Garcia", "Novak", "Smith"])),
        "flight": current["flight"],
        "origin": origin,
        "destination": destination,
        "date": format!("2026-12-{:02}", between(rng, 1, 28)),
        "departure": current["departure"],
        "fare": fare,
        "checked_bags": if fare == "Basic" { 0 } else { between(rng, 1, 2) },
        "refund_if_cancelled_usd": if fare == "Flex" { between(rng, 200, 800) } else { 0 },
    });
    let flights: Vec<Value> = (0..between(rng, 2, 4)).map(|_| flight(rng)).collect();
    let (request, answer) = match task {
        Task::Change => (
            format!(
                "{} my flight {reference} to {date}{}",
                pick(rng, &["Please move", "Can you change", "I need to rebook"]),
                pick(rng, &[".", ", morning if possible.", " - any time works."])
            ),
            format!(
                "Done: booking {reference} is now on {} departing {origin} on {date} at {}. {}",
                flights[0]["flight"].as_str().unwrap_or_default(),
                flights[0]["departure"].as_str().unwrap_or_default(),
                if fare == "Flex" { "No change fee applied." } else { "The fare difference was charged to the travel card." }
            ),
        ),
        Task::Search => (
            format!(
                "{} flights from {origin} to {destination} on {date}{}",
                pick(rng, &["Find me", "What are the", "Can you look up"]),
                pick(rng, &["?", ".", " please."])
            ),
            format!(
                "I found {} flights from {origin} to {destination} on {date}: {}.",
                flights.len(),
                flights
                    .iter()
                    .map(|f| format!(
                        "{} at {} (${})",
                        f["flight"].as_str().unwrap_or_default(),
                        f["departure"].as_str().unwrap_or_default(),
                        f["price_usd"]
                    ))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ),
        Task::Status => (
            format!(
                "{} {reference}{}",
                pick(
                    rng,
                    &[
                        "What time does my flight leave? Booking",
                        "How many bags can I check on",
                        "Departure time and bag allowance for booking"
                    ]
                ),
                pick(rng, &["?", "", " please"])
            ),
            format!(
                "Flight {} leaves {origin} at {} on {}; your {fare} fare includes {} checked bag(s).",
                booking["flight"].as_str().unwrap_or_default(),
                booking["departure"].as_str().unwrap_or_default(),
                booking["date"].as_str().unwrap_or_default(),
                booking["checked_bags"]
            ),
        ),
        Task::Options => (
            format!(
                "{} {reference}{}",
                pick(
                    rng,
                    &[
                        "What happens if I cancel booking",
                        "Would I get a refund if I cancelled",
                        "What are my options if I can't make the trip on booking"
                    ]
                ),
                pick(rng, &["?", "? Don't cancel yet.", "? Just asking for now."])
            ),
            format!(
                "Booking {reference} is a {fare} fare: cancelling would refund ${}. I haven't changed anything; tell me if you want me to cancel it.",
                booking["refund_if_cancelled_usd"]
            ),
        ),
    };
    Case { turn: Turn { topic: "travel", request, tool: None, answer, subject: reference }, task, booking, flights, date }
}

pub fn fits(case: &Case, mode: Mode) -> bool {
    match mode {
        Mode::AgentSearchLoop => matches!(case.task, Task::Change | Task::Search),
        Mode::PrematureCompletion => case.task == Task::Change,
        Mode::UnrequestedCancellation => case.task == Task::Options,
        Mode::ToolResultMisread => matches!(case.task, Task::Status | Task::Search),
        _ => true,
    }
}

/// A step the agent takes: a tool call with its result.
struct Step {
    tool: &'static str,
    arguments: Value,
    result: Value,
}

fn steps(case: &Case) -> Vec<Step> {
    let reference = case.booking["booking_ref"].clone();
    let get = Step { tool: "get_booking", arguments: json!({"booking_ref": reference}), result: case.booking.clone() };
    let search = Step {
        tool: "search_flights",
        arguments: json!({"origin": case.booking["origin"], "destination": case.booking["destination"], "date": case.date}),
        result: json!({"flights": case.flights}),
    };
    match case.task {
        Task::Change => {
            let change = Step {
                tool: "change_booking",
                arguments: json!({"booking_ref": reference, "flight": case.flights[0]["flight"], "date": case.date}),
                result: json!({"status": "confirmed", "booking_ref": reference, "new_flight": case.flights[0]["flight"], "change_fee_usd": 0}),
            };
            vec![get, search, change]
        }
        Task::Search => vec![search],
        Task::Status | Task::Options => vec![get],
    }
}

pub(crate) fn play(case: &Case, t: &mut Trace<'_>, request: &str, mode: Option<Mode>) -> Played {
    t.input.push(Msg::text("user", request));
    let failure = mode.map(FailureMode::Catalogue);
    let mut plan = steps(case);
    match mode {
        Some(Mode::PrematureCompletion) => {
            plan.pop();
        }
        Some(Mode::UnrequestedCancellation) => {
            let refund = case.booking["refund_if_cancelled_usd"].clone();
            plan.push(Step {
                tool: "cancel_booking",
                arguments: json!({"booking_ref": case.booking["booking_ref"]}),
                result: json!({"status": "cancelled", "booking_ref": case.booking["booking_ref"], "refund_usd": refund}),
            });
        }
        Some(Mode::AgentSearchLoop) => {
            // The agent searches again and again with the same or nearly the same arguments.
            let at = plan.iter().position(|s| s.tool == "search_flights").unwrap_or(0);
            let first = &plan[at];
            let empty = chance(t.rng, 0.5);
            let mut repeats = Vec::new();
            for _ in 0..between(t.rng, 5, 9) {
                let mut arguments = first.arguments.clone();
                match between(t.rng, 0, 3) {
                    0 => arguments["time_window"] = json!(pick(t.rng, &["morning", "any", "06:00-12:00"])),
                    1 => arguments["cabin"] = json!("economy"),
                    _ => {}
                }
                let result = if empty { json!({"flights": []}) } else { first.result.clone() };
                repeats.push(Step { tool: "search_flights", arguments, result });
            }
            plan.splice(at..=at, repeats);
            plan.retain(|s| s.tool != "change_booking");
        }
        _ => {}
    }
    // A provider error strikes one of the calls; the trace ends there.
    let fail_at = match mode {
        Some(Mode::ProviderRateLimit | Mode::ProviderTimeout) => Some(between(t.rng, 0, plan.len() as u64) as usize),
        // The call after the last (long) tool result overflows the window.
        Some(Mode::ContextWindowExceeded) => Some(plan.len()),
        _ => None,
    };
    for (n, step) in plan.into_iter().enumerate() {
        if fail_at == Some(n) {
            return provider_error(t, mode, failure);
        }
        let mut result = step.result;
        if mode == Some(Mode::ContextWindowExceeded) {
            // The tools return every fare with its full rules: the conversation overflows.
            result["fare_rules"] = json!("Fare rules: changes permitted before departure subject to fare difference... ".repeat(40));
        }
        t.use_tool(step.tool, step.arguments, Ok(result), None);
    }
    if fail_at.is_some() {
        return provider_error(t, mode, failure);
    }
    let mut finish = Finish::Stop;
    let text = match mode {
        Some(Mode::AgentSearchLoop) => pick(
            t.rng,
            &[
                "I'm still checking availability. Let me search once more for the best option.",
                "I wasn't able to find a suitable flight right now. Please try again later.",
                "The search keeps returning the same results; I couldn't complete your request.",
            ],
        )
        .to_string(),
        Some(Mode::UnrequestedCancellation) => format!(
            "I've cancelled booking {} for you. A refund of ${} will reach the travel card within 5-7 business days.",
            case.turn.subject, case.booking["refund_if_cancelled_usd"]
        ),
        Some(Mode::ToolResultMisread) => misread(t.rng, case),
        Some(Mode::LatencySpike) => {
            finish = Finish::Slow(between_f(t.rng, 15.0, 40.0));
            case.turn.answer.clone()
        }
        // Premature completion: the answer claims the change that never happened.
        _ => case.turn.answer.clone(),
    };
    let target = t.answer(text.clone(), finish, failure);
    Played { answer: text, target, language: None }
}

/// An answer that contradicts the tool result it reports.
fn misread(rng: &mut Rng, case: &Case) -> String {
    match case.task {
        Task::Status => {
            let departure = case.booking["departure"].as_str().unwrap_or("07:45");
            let hour: u64 = departure[..2].parse().unwrap_or(7);
            let wrong = format!("{:02}{}", (hour + pick(rng, &[10, 12, 2])) % 24, &departure[2..]);
            let bags = case.booking["checked_bags"].as_u64().unwrap_or(0) + 1;
            format!(
                "Flight {} leaves {} at {wrong} on {}; your {} fare includes {bags} checked bag(s).",
                case.booking["flight"].as_str().unwrap_or_default(),
                case.booking["origin"].as_str().unwrap_or_default(),
                case.booking["date"].as_str().unwrap_or_default(),
                case.booking["fare"].as_str().unwrap_or_default()
            )
        }
        _ => {
            let f = &case.flights[0];
            format!(
                "There is only one flight from {} to {} on {}: {} at {}, and it is sold out.",
                case.booking["origin"].as_str().unwrap_or_default(),
                case.booking["destination"].as_str().unwrap_or_default(),
                case.date,
                f["flight"].as_str().unwrap_or_default(),
                f["departure"].as_str().unwrap_or_default()
            )
        }
    }
}

/// The call fails with the mode's provider error, and the user sees an error page.
fn provider_error(t: &mut Trace<'_>, mode: Option<Mode>, failure: Option<FailureMode>) -> Played {
    let failure = failure.expect("a provider error is a failure");
    let model = t.ctx.model;
    let (err, ms) = match mode {
        Some(Mode::ProviderRateLimit) => {
            let (exception, message) = crate::wording::rate_limit(t.rng, model);
            let error_type = exception.rsplit('.').next().unwrap_or("RateLimitError").to_string();
            (crate::plan::ErrorInfo { exception_type: exception, error_type, message }, between(t.rng, 150, 900))
        }
        Some(Mode::ContextWindowExceeded) => {
            let limit = 128_000;
            let used = limit + between(t.rng, 400, 30_000);
            let functions = between(t.rng, 900, 1600);
            let message = format!(
                "Error code: 400 - {{'error': {{'message': \"This model's maximum context length is {limit} tokens. However, your messages resulted in {used} tokens ({} in the messages, {functions} in the functions). Please reduce the length of the messages or functions.\", 'type': 'invalid_request_error', 'param': 'messages', 'code': 'context_length_exceeded'}}}}",
                used - functions
            );
            (error("openai", "BadRequestError", message), between(t.rng, 300, 1500))
        }
        _ => {
            let secs = pick(t.rng, &[60, 120, 600]);
            let message = format!("Request timed out after {secs}s (request id: req_{})", hex(t.rng, 12));
            (error("openai", "APITimeoutError", message), secs * 1000 + between(t.rng, 5, 900))
        }
    };
    let target = t.error(err, ms, failure);
    Played { answer: String::new(), target, language: None }
}

/// The agent's tools, in the GenAI definitions format.
pub fn tool_definitions() -> Vec<Value> {
    let reference = json!({"type": "object", "properties": {"booking_ref": {"type": "string"}}, "required": ["booking_ref"]});
    vec![
        json!({"type": "function", "name": "get_booking", "description": "Look up a booking", "parameters": reference}),
        json!({"type": "function", "name": "search_flights", "description": "Search flights", "parameters": {"type": "object", "properties": {"origin": {"type": "string"}, "destination": {"type": "string"}, "date": {"type": "string", "format": "date"}, "time_window": {"type": "string"}, "cabin": {"type": "string"}}, "required": ["origin", "destination", "date"]}}),
        json!({"type": "function", "name": "change_booking", "description": "Move a booking to another flight", "parameters": {"type": "object", "properties": {"booking_ref": {"type": "string"}, "flight": {"type": "string"}, "date": {"type": "string"}}, "required": ["booking_ref", "flight", "date"]}}),
        json!({"type": "function", "name": "cancel_booking", "description": "Cancel a booking", "parameters": reference}),
    ]
}
