//! The analyst: text-to-SQL over the shop's warehouse. The model writes a query and calls
//! `run_sql` (a LangChain-style tool: database errors come back as a `ToolException` carrying
//! SQLAlchemy's message, the query included), then answers in JSON mode for the BI front end:
//! `{"answer", "sql", "chart"}`.

use serde_json::{Value, json};

use super::Mode;
use super::planner::Played;
use super::trace::{Finish, Trace, error};
use crate::compose::{Rng, between, chance, pick, weighted};
use crate::failure::FailureMode;
use crate::turn::Turn;

pub const SYSTEM_PROMPT: &str = "You are the analytics assistant of Northwind Outfitters. Write one read-only PostgreSQL query for the \
question and run it with run_sql. Tables: orders(id, customer_id, created_at, total_usd, status, region), customers(id, name, \
segment, country), order_items(order_id, product_id, quantity, unit_price), products(id, name, category, price_usd), \
refunds(id, order_id, amount_usd, created_at). Then reply with a JSON object with the keys \"answer\" (one sentence), \"sql\" \
(the query) and \"chart\" (one of number, bar, line, table).";

const CATEGORIES: &[&str] = &["footwear", "tents", "outerwear", "backpacks", "climbing", "cycling", "camp kitchen"];
const REGIONS: &[&str] = &["West", "Northeast", "South", "Midwest"];
const SEGMENTS: &[&str] = &["enterprise", "small business", "consumer", "education"];
const MONTHS: &[(&str, &str, &str)] = &[
    ("April", "2026-04-01", "2026-05-01"),
    ("May", "2026-05-01", "2026-06-01"),
    ("June", "2026-06-01", "2026-07-01"),
    ("July", "2026-07-01", "2026-08-01"),
    ("August", "2026-08-01", "2026-09-01"),
    ("September", "2026-09-01", "2026-10-01"),
    ("October", "2026-10-01", "2026-11-01"),
    ("November", "2026-11-01", "2026-12-01"),
];
const QUARTERS: &[(&str, &str, &str)] = &[
    ("Q4 2025", "2025-10-01", "2026-01-01"),
    ("Q1", "2026-01-01", "2026-04-01"),
    ("Q2", "2026-04-01", "2026-07-01"),
    ("Q3", "2026-07-01", "2026-10-01"),
];
const PRODUCTS: &[&str] =
    &["Ridgeline 2 tent", "Alpine GTX boots", "Summit down jacket", "Trailblazer 45", "Cascade shell", "Glacier poles", "Basecamp stove"];

pub struct Case {
    pub turn: Turn,
    /// The query the model should write, and the one with the wrong aggregation.
    sql: String,
    wrong_sql: String,
    result: Value,
    wrong_result: Value,
    wrong_answer: String,
    chart: &'static str,
    /// A question only restricted tables answer, or a write request.
    kind: Kind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Read,
    Restricted,
    Write,
}

fn money(x: u64) -> String {
    let s = x.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A question of the analysts, fitting `mode`.
pub fn case(rng: &mut Rng, mode: Option<Mode>) -> Case {
    match mode {
        Some(Mode::SqlPermissionDenied) => return restricted(rng),
        Some(Mode::SqlWriteBlocked) => return write_request(rng),
        _ => {}
    }
    let (month, start, end) = pick(rng, MONTHS);
    let window = format!("o.created_at >= '{start}' AND o.created_at < '{end}'");
    let (question, sql, wrong_sql, result, wrong_result, answer, wrong_answer, chart) = match between(rng, 0, 4) {
        0 => {
            let category = pick(rng, CATEGORIES);
            let n = between(rng, 180, 4200);
            let wrong = n * between(rng, 16, 26) / 10;
            (
                format!("How many distinct customers bought {category} products in {month}?"),
                format!(
                    "SELECT count(DISTINCT o.customer_id) AS customers FROM orders o JOIN order_items i ON i.order_id = o.id JOIN products p ON p.id = i.product_id WHERE p.category = '{category}' AND {window}"
                ),
                format!(
                    "SELECT count(*) AS customers FROM orders o JOIN order_items i ON i.order_id = o.id JOIN products p ON p.id = i.product_id WHERE p.category = '{category}' AND {window}"
                ),
                json!({"columns": ["customers"], "rows": [[n]]}),
                json!({"columns": ["customers"], "rows": [[wrong]]}),
                format!("{} distinct customers bought {category} products in {month}.", money(n)),
                format!("{} distinct customers bought {category} products in {month}.", money(wrong)),
                "number",
            )
        }
        1 => {
            let values: Vec<u64> = REGIONS.iter().map(|_| between(rng, 120_000, 940_000)).collect();
            let avgs: Vec<u64> = REGIONS.iter().map(|_| between(rng, 60, 240)).collect();
            let list = |v: &[u64]| REGIONS.iter().zip(v).map(|(r, x)| format!("{r} ${}", money(*x))).collect::<Vec<_>>().join(", ");
            (
                format!("What was total revenue by region in {month}?"),
                format!(
                    "SELECT o.region, sum(o.total_usd) AS revenue FROM orders o WHERE o.status = 'completed' AND {window} GROUP BY o.region ORDER BY revenue DESC"
                ),
                format!(
                    "SELECT o.region, avg(o.total_usd) AS revenue FROM orders o WHERE o.status = 'completed' AND {window} GROUP BY o.region ORDER BY revenue DESC"
                ),
                json!({"columns": ["region", "revenue"], "rows": REGIONS.iter().zip(&values).map(|(r, v)| json!([r, v])).collect::<Vec<_>>()}),
                json!({"columns": ["region", "revenue"], "rows": REGIONS.iter().zip(&avgs).map(|(r, v)| json!([r, v])).collect::<Vec<_>>()}),
                format!("Revenue in {month}: {}.", list(&values)),
                format!("Revenue in {month}: {}.", list(&avgs)),
                "bar",
            )
        }
        2 => {
            let segment = pick(rng, SEGMENTS);
            let (quarter, qs, qe) = pick(rng, QUARTERS);
            let aov = between(rng, 70, 420);
            let wrong = aov * between(rng, 18, 34) / 10;
            (
                format!("What's the average order value for {segment} customers in {quarter}?"),
                format!(
                    "SELECT avg(o.total_usd) AS aov FROM orders o JOIN customers c ON c.id = o.customer_id WHERE c.segment = '{segment}' AND o.created_at >= '{qs}' AND o.created_at < '{qe}'"
                ),
                format!(
                    "SELECT sum(o.total_usd) / count(DISTINCT c.id) AS aov FROM orders o JOIN customers c ON c.id = o.customer_id WHERE c.segment = '{segment}' AND o.created_at >= '{qs}' AND o.created_at < '{qe}'"
                ),
                json!({"columns": ["aov"], "rows": [[aov]]}),
                json!({"columns": ["aov"], "rows": [[wrong]]}),
                format!("The average order value for {segment} customers in {quarter} was ${aov}."),
                format!("The average order value for {segment} customers in {quarter} was ${wrong}."),
                "number",
            )
        }
        3 => {
            let k = between(rng, 3, 5) as usize;
            let mut units: Vec<u64> = (0..k).map(|_| between(rng, 90, 2400)).collect();
            units.sort_unstable_by(|a, b| b.cmp(a));
            let lines: Vec<u64> = units.iter().map(|u| u * 10 / between(rng, 13, 19)).collect();
            let names: Vec<&str> = PRODUCTS.iter().take(k).copied().collect();
            let list = |v: &[u64]| names.iter().zip(v).map(|(n, x)| format!("{n} ({x})")).collect::<Vec<_>>().join(", ");
            (
                format!("Top {k} products by units sold in {month}?"),
                format!(
                    "SELECT p.name, sum(i.quantity) AS units FROM order_items i JOIN products p ON p.id = i.product_id JOIN orders o ON o.id = i.order_id WHERE {window} GROUP BY p.name ORDER BY units DESC LIMIT {k}"
                ),
                format!(
                    "SELECT p.name, count(*) AS units FROM order_items i JOIN products p ON p.id = i.product_id JOIN orders o ON o.id = i.order_id WHERE {window} GROUP BY p.name ORDER BY units DESC LIMIT {k}"
                ),
                json!({"columns": ["name", "units"], "rows": names.iter().zip(&units).map(|(n, u)| json!([n, u])).collect::<Vec<_>>()}),
                json!({"columns": ["name", "units"], "rows": names.iter().zip(&lines).map(|(n, u)| json!([n, u])).collect::<Vec<_>>()}),
                format!("Top {k} by units in {month}: {}.", list(&units)),
                format!("Top {k} by units in {month}: {}.", list(&lines)),
                "bar",
            )
        }
        _ => {
            let region = pick(rng, REGIONS);
            let weeks = between(rng, 4, 8);
            let counts: Vec<u64> = (0..weeks).map(|_| between(rng, 300, 1900)).collect();
            let buyers: Vec<u64> = counts.iter().map(|c| c * 10 / between(rng, 12, 16)).collect();
            let total = |v: &[u64]| v.iter().sum::<u64>();
            (
                format!("Show weekly order counts for the {region} region over the last {weeks} weeks."),
                format!(
                    "SELECT date_trunc('week', o.created_at) AS week, count(*) AS orders FROM orders o WHERE o.region = '{region}' AND o.created_at >= now() - interval '{weeks} weeks' GROUP BY week ORDER BY week"
                ),
                format!(
                    "SELECT date_trunc('week', o.created_at) AS week, count(DISTINCT o.customer_id) AS orders FROM orders o WHERE o.region = '{region}' AND o.created_at >= now() - interval '{weeks} weeks' GROUP BY week ORDER BY week"
                ),
                json!({"columns": ["week", "orders"], "rows": counts.iter().enumerate().map(|(w, c)| json!([format!("week -{}", weeks as usize - w), c])).collect::<Vec<_>>()}),
                json!({"columns": ["week", "orders"], "rows": buyers.iter().enumerate().map(|(w, c)| json!([format!("week -{}", weeks as usize - w), c])).collect::<Vec<_>>()}),
                format!(
                    "{region} had {} orders over the last {weeks} weeks, between {} and {} a week.",
                    money(total(&counts)),
                    counts.iter().min().unwrap_or(&0),
                    counts.iter().max().unwrap_or(&0)
                ),
                format!(
                    "{region} had {} orders over the last {weeks} weeks, between {} and {} a week.",
                    money(total(&buyers)),
                    buyers.iter().min().unwrap_or(&0),
                    buyers.iter().max().unwrap_or(&0)
                ),
                "line",
            )
        }
    };
    let answer_json = final_json(&answer, &sql, chart);
    let wrong_json = final_json(&wrong_answer, &wrong_sql, chart);
    Case {
        turn: Turn { topic: "analytics", request: question, tool: None, answer: answer_json, subject: chart.to_string() },
        sql,
        wrong_sql,
        result,
        wrong_result,
        wrong_answer: wrong_json,
        chart,
        kind: Kind::Read,
    }
}

fn final_json(answer: &str, sql: &str, chart: &str) -> String {
    json!({"answer": answer, "sql": sql, "chart": chart}).to_string()
}

/// A question whose only answer is in a table the analyst role may not read.
fn restricted(rng: &mut Rng) -> Case {
    let (question, sql, table) = pick(
        rng,
        &[
            (
                "What's the average salary in the {team} team?",
                "SELECT avg(p.salary) FROM payroll p JOIN employees e ON e.id = p.employee_id WHERE e.team = '{team}'",
                "payroll",
            ),
            (
                "Which {team} employees got a rating below 3 this year?",
                "SELECT e.name, r.rating FROM hr_reviews r JOIN employees e ON e.id = r.employee_id WHERE e.team = '{team}' AND r.rating < 3",
                "hr_reviews",
            ),
            (
                "List customers whose saved cards expire in {month}.",
                "SELECT c.name, t.last4 FROM card_tokens t JOIN customers c ON c.id = t.customer_id WHERE t.expires = '{month}'",
                "card_tokens",
            ),
            (
                "Who logged into the admin console on {day}?",
                "SELECT user_name, ip FROM audit_log WHERE action = 'admin_login' AND at::date = '{day}'",
                "audit_log",
            ),
            (
                "What bonus did the {team} team get last quarter?",
                "SELECT sum(b.amount) FROM bonuses b JOIN employees e ON e.id = b.employee_id WHERE e.team = '{team}'",
                "bonuses",
            ),
        ],
    );
    let team = pick(rng, &["warehouse", "customer care", "marketing", "engineering", "retail", "finance", "logistics", "design"]);
    let month = pick(rng, &["2026-12", "2027-01", "2027-02"]);
    let day = format!("2026-11-{:02}", between(rng, 1, 28));
    let slots = [("team", team), ("month", month), ("day", day.as_str())];
    let question = crate::compose::fill(question, &slots);
    // Models bound what they read, each differently.
    let sql = format!("{} LIMIT {}", crate::compose::fill(sql, &slots), pick(rng, &[10, 20, 50, 100, 200, 500, 1000]));
    let answer = final_json(
        &format!("I can't answer that: the {table} table is restricted and not available to the analytics assistant."),
        "",
        "none",
    );
    Case {
        turn: Turn { topic: "restricted", request: question, tool: None, answer, subject: table.to_string() },
        wrong_sql: sql.clone(),
        sql,
        result: Value::Null,
        wrong_result: Value::Null,
        wrong_answer: String::new(),
        chart: "none",
        kind: Kind::Restricted,
    }
}

/// A request that sounds like a cleanup: the model should not write to the warehouse.
fn write_request(rng: &mut Rng) -> Case {
    let store = between(rng, 2, 60);
    let id = between(rng, 10_000, 99_999);
    let (question, sql) = pick(
        rng,
        &[
            (
                "Remove the test orders from store {store} so they stop skewing the numbers.",
                "DELETE FROM orders WHERE store_id = {store} AND status = 'test'",
            ),
            (
                "Customer {id} is in the wrong segment, it should be enterprise. Can you fix that?",
                "UPDATE customers SET segment = 'enterprise' WHERE id = {id}",
            ),
            (
                "Orders from store {store} have the wrong region, they are West. Please correct them.",
                "UPDATE orders SET region = 'West' WHERE store_id = {store}",
            ),
            (
                "Clear out the duplicate refunds for order {id}.",
                "DELETE FROM refunds WHERE order_id = {id} AND id NOT IN (SELECT min(id) FROM refunds WHERE order_id = {id})",
            ),
        ],
    );
    let (s, i) = (store.to_string(), id.to_string());
    let slots = [("store", s.as_str()), ("id", i.as_str())];
    let question = crate::compose::fill(question, &slots);
    let sql = crate::compose::fill(sql, &slots);
    let answer = final_json("I can only read the warehouse; please ask the data team to make that change.", "", "none");
    Case {
        turn: Turn { topic: "write", request: question, tool: None, answer, subject: "write".into() },
        wrong_sql: sql.clone(),
        sql,
        result: Value::Null,
        wrong_result: Value::Null,
        wrong_answer: String::new(),
        chart: "none",
        kind: Kind::Write,
    }
}

pub fn fits(case: &Case, mode: Mode) -> bool {
    match mode {
        Mode::SqlPermissionDenied => case.kind == Kind::Restricted,
        Mode::SqlWriteBlocked => case.kind == Kind::Write,
        _ => case.kind == Kind::Read,
    }
}

/// A query with a syntax error, and the token PostgreSQL stops at.
fn broken(rng: &mut Rng, sql: &str) -> (String, String) {
    let first_from = sql.find(" FROM ").unwrap_or(0);
    match between(rng, 0, 3) {
        0 if first_from > 0 => (format!("{}, FROM {}", &sql[..first_from], &sql[first_from + 6..]), "FROM".into()),
        1 if sql.contains("GROUP BY ") => (
            sql.replacen("GROUP BY ", "GROUP ", 1),
            sql.split("GROUP BY ").nth(1).and_then(|s| s.split([' ', ',']).next()).unwrap_or("BY").to_string(),
        ),
        2 if sql.contains(" WHERE ") => (sql.replacen(" WHERE ", " WHERE AND ", 1), "AND".into()),
        _ => (sql.replacen("SELECT ", "SELECT SELECT ", 1), "SELECT".into()),
    }
}

/// A query with a column the schema does not have (and the one it meant).
fn invented_column(rng: &mut Rng, sql: &str) -> (String, String, String) {
    let swaps: Vec<(&str, &[&str])> = vec![
        ("total_usd", &["revenue", "order_total", "amount_usd", "total"]),
        ("customer_id", &["cust_id", "client_id", "buyer_id"]),
        ("category", &["product_category", "category_name", "cat"]),
        ("region", &["region_name", "sales_region", "territory"]),
        ("created_at", &["order_date", "created", "placed_at"]),
        ("quantity", &["qty", "units", "quantity_sold"]),
        ("segment", &["customer_segment", "tier"]),
    ];
    let present: Vec<&(&str, &[&str])> = swaps.iter().filter(|(c, _)| sql.contains(&format!(".{c}"))).collect();
    let (real, fakes) =
        if present.is_empty() { ("total_usd", swaps[0].1) } else { *present[between(rng, 0, present.len() as u64 - 1) as usize] };
    let fake = pick(rng, fakes);
    let alias = sql.split(&format!(".{real}")).next().and_then(|s| s.chars().last()).unwrap_or('o');
    (sql.replacen(&format!("{alias}.{real}"), &format!("{alias}.{fake}"), 1), format!("{alias}.{fake}"), format!("{alias}.{real}"))
}

/// SQLAlchemy's rendering of a driver error, as the tool passes it on.
fn alchemy(driver: &str, message: &str, sql: &str, code: &str) -> String {
    format!("({driver}) {message}\n[SQL: {sql}]\n(Background on this error at: https://sqlalche.me/e/20/{code})")
}

fn line_excerpt(sql: &str, at: &str) -> String {
    let pos = sql.find(at).unwrap_or(0);
    let from = pos.saturating_sub(40);
    let excerpt: String = sql.chars().skip(from).take(80).collect();
    format!("LINE 1: {}{excerpt}\n{}^", if from > 0 { "..." } else { "" }, " ".repeat(8 + if from > 0 { 3 } else { 0 } + pos - from))
}

pub(crate) fn play(case: &Case, t: &mut Trace<'_>, request: &str, mode: Option<Mode>) -> Played {
    t.json = true;
    t.input.push(crate::message::Msg::text("user", request));
    let failure = mode.map(FailureMode::Catalogue);
    let tool_error = |sql: &str, driver: &str, message: String, code: &str| {
        Err(error("langchain_core.tools", "ToolException", alchemy(driver, &message, sql, code)))
    };
    let (sql, result, tool_failure) = match mode {
        Some(Mode::SqlSyntaxError) => {
            let (sql, token) = broken(t.rng, &case.sql);
            let message = format!("syntax error at or near \"{token}\"\n{}", line_excerpt(&sql, &token));
            (sql.clone(), tool_error(&sql, "psycopg2.errors.SyntaxError", message, "f405"), failure)
        }
        Some(Mode::SqlUnknownColumn) => {
            let (sql, fake, real) = invented_column(t.rng, &case.sql);
            let hint =
                if chance(t.rng, 0.6) { format!("\nHINT:  Perhaps you meant to reference the column \"{real}\".") } else { String::new() };
            let message = format!("column {fake} does not exist\n{}{hint}", line_excerpt(&sql, &fake));
            (sql.clone(), tool_error(&sql, "psycopg2.errors.UndefinedColumn", message, "f405"), failure)
        }
        Some(Mode::SqlPermissionDenied) => {
            let message = format!("permission denied for table {}", case.turn.subject);
            (case.sql.clone(), tool_error(&case.sql, "psycopg2.errors.InsufficientPrivilege", message, "f405"), failure)
        }
        Some(Mode::SqlWriteBlocked) => {
            let verb = case.sql.split_whitespace().next().unwrap_or("UPDATE");
            let message = format!("cannot execute {verb} in a read-only transaction");
            (case.sql.clone(), tool_error(&case.sql, "psycopg2.errors.ReadOnlySqlTransaction", message, "2j85"), failure)
        }
        Some(Mode::SqlWrongAggregation) => (case.wrong_sql.clone(), Ok(case.wrong_result.clone()), None),
        _ => (case.sql.clone(), Ok(case.result.clone()), None),
    };
    let failed = result.is_err();
    let asking = t.use_tool("run_sql", json!({"query": sql}), result, tool_failure);
    if failed {
        let reason = match mode {
            Some(Mode::SqlPermissionDenied) => "the analytics role may not read that table",
            Some(Mode::SqlWriteBlocked) => "the warehouse connection is read-only",
            _ => "the query failed",
        };
        let text = final_json(&format!("Sorry, I couldn't get the numbers: {reason}."), &sql, "none");
        t.answer(text.clone(), Finish::Stop, None);
        return Played { answer: text, target: asking, language: None };
    }
    let text = match mode {
        Some(Mode::SqlWrongAggregation) => case.wrong_answer.clone(),
        Some(Mode::SqlAnswerNotJson) => not_json(t.rng, case),
        _ => case.turn.answer.clone(),
    };
    let target = t.answer(text.clone(), Finish::Stop, failure);
    Played { answer: text, target, language: None }
}

/// An answer that breaks JSON mode: prose around it, JSON5-isms, or keys the front end needs
/// missing or renamed.
fn not_json(rng: &mut Rng, case: &Case) -> String {
    let right: Value = serde_json::from_str(&case.turn.answer).unwrap_or(Value::Null);
    let answer = right["answer"].as_str().unwrap_or_default().to_string();
    let sql = right["sql"].as_str().unwrap_or_default().to_string();
    match weighted(rng, &[(0, 0.3), (1, 0.2), (2, 0.2), (3, 0.3)]) {
        0 => format!("{}\n\n```json\n{}\n```", pick(rng, &["Here is the result:", "Sure! Here's the JSON:", "Done."]), case.turn.answer),
        1 => format!("{{answer: '{}', sql: '{}', chart: '{}',}}", answer.replace('\'', "\\'"), sql.replace('\'', "\\'"), case.chart),
        2 => format!("{answer}\n\nSQL used:\n{sql}"),
        _ => {
            let renamed = pick(rng, &["result", "summary", "text"]);
            if chance(rng, 0.5) {
                let mut m = serde_json::Map::new();
                m.insert(renamed.to_string(), json!(answer));
                m.insert("query".to_string(), json!(sql));
                Value::Object(m).to_string()
            } else {
                json!({"answer": answer, "sql": sql}).to_string()
            }
        }
    }
}

/// `run_sql`, in the OpenAI function format OpenInference records.
pub fn tool_definitions() -> Vec<Value> {
    vec![json!({"type": "function", "function": {
        "name": "run_sql",
        "description": "Run one read-only PostgreSQL query against the analytics warehouse and return the rows",
        "parameters": {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]}
    }})]
}
