//! Content of the coding assistant: questions about Rust, Python and SQL as developers ask
//! them in an IDE (often with a snippet), the documentation search it may run, and correct
//! answers with code. Identifiers, tables and error messages are drawn per turn, so code and
//! prose vary from one interaction to the next.

use serde_json::json;

use crate::compose::{Rng, between, chance, fill, pick, sentence, with_opener};
use crate::turn::{ToolUse, Turn};

pub const SYSTEM_PROMPT: &str = "You are a senior software engineer helping a developer inside their IDE. Answer precisely, \
prefer idiomatic code, show a short code block when it helps, and explain trade-offs in one or two sentences. If you are unsure \
about an API, search the documentation first.";

pub const TOPICS: [&str; 3] = ["rust", "python", "sql"];

const NOUNS: &[&str] =
    &["user", "order", "invoice", "event", "session", "metric", "customer", "ticket", "payment", "record", "job", "message", "device"];
const FIELDS: &[&str] = &["id", "name", "email", "created_at", "status", "amount", "score", "region", "updated_at", "priority"];
const OPENERS: &[&str] = &["", "", "", "Quick question:", "Hey,", "Stuck on something.", "Can you help?", "Noob question:"];
const FOLLOW_UPS: &[&str] =
    &["Thanks! Follow-up:", "That worked. Now", "OK, and", "Related:", "One more:", "Makes sense. What about this:"];

fn ident(rng: &mut Rng) -> (&'static str, &'static str) {
    (pick(rng, NOUNS), pick(rng, FIELDS))
}

fn camel(noun: &str) -> String {
    let mut c = noun.chars();
    c.next().map(|f| f.to_uppercase().chain(c).collect()).unwrap_or_default()
}

pub fn turn(rng: &mut Rng, topic: Option<&'static str>, follow_up: bool) -> Turn {
    let topic = topic.unwrap_or_else(|| pick(rng, &TOPICS));
    let mut turn = match topic {
        "rust" => rust(rng),
        "python" => python(rng),
        _ => sql(rng),
    };
    let opener = if follow_up { pick(rng, FOLLOW_UPS) } else { pick(rng, OPENERS) };
    turn.request = with_opener(opener, &turn.request);
    if chance(rng, 0.3) {
        turn.tool = Some(search_docs(rng, topic, &turn.subject));
    }
    turn
}

pub fn search_docs(rng: &mut Rng, language: &str, subject: &str) -> ToolUse {
    let hits = between(rng, 1, 4);
    ToolUse {
        name: "search_docs",
        arguments: json!({"query": subject, "language": language, "max_results": hits}),
        result: json!({"results": (0..hits).map(|i| json!({"title": format!("{subject} — reference ({})", i + 1), "url": format!("https://docs.example/{language}/{}", subject.replace(' ', "-"))})).collect::<Vec<_>>()}),
    }
}

fn rust(rng: &mut Rng) -> Turn {
    let (noun, field) = ident(rng);
    let ty = camel(noun);
    let var = format!("{noun}s");
    let n = between(rng, 2, 64).to_string();
    let slots = [("noun", noun), ("field", field), ("ty", ty.as_str()), ("var", var.as_str()), ("n", n.as_str())];
    let cases: &[(&str, &str, &str)] = &[
        (
            "How do I read a file of {noun} records line by line in Rust?",
            "Use a `BufReader` and its `lines()` iterator; it streams the file instead of loading it whole.",
            "```rust\nuse std::io::{BufRead, BufReader};\n\nlet file = std::fs::File::open(\"{var}.txt\")?;\nfor line in BufReader::new(file).lines() {\n    let line = line?;\n    let {noun}: {ty} = line.parse()?;\n}\n```",
        ),
        (
            "Why does the borrow checker say `cannot borrow `{var}` as mutable because it is also borrowed as immutable` here?\n```rust\nlet first = &{var}[0];\n{var}.push({ty}::default());\nprintln!(\"{}\", first.{field});\n```",
            "`first` keeps an immutable borrow of `{var}` alive until the `println!`, and `push` may reallocate the vector, which would leave `first` dangling.",
            "```rust\nlet first_{field} = {var}[0].{field}.clone();\n{var}.push({ty}::default());\nprintln!(\"{}\", first_{field});\n```",
        ),
        (
            "How can I parse JSON into a `{ty}` struct with serde, when `{field}` is sometimes missing?",
            "Derive `Deserialize` and mark the field `#[serde(default)]` (or make it an `Option`) so a missing key is not an error.",
            "```rust\n#[derive(Debug, serde::Deserialize)]\nstruct {ty} {\n    id: u64,\n    #[serde(default)]\n    {field}: Option<String>,\n}\n\nlet {noun}: {ty} = serde_json::from_str(&body)?;\n```",
        ),
        (
            "Convert this loop to iterators:\n```rust\nlet mut out = Vec::new();\nfor {noun} in &{var} {\n    if {noun}.{field}_count > {n} {\n        out.push({noun}.id);\n    }\n}\n```",
            "`filter` then `map`, collected into a `Vec`, says the same thing without the mutable accumulator.",
            "```rust\nlet out: Vec<_> = {var}\n    .iter()\n    .filter(|{noun}| {noun}.{field}_count > {n})\n    .map(|{noun}| {noun}.id)\n    .collect();\n```",
        ),
        (
            "What's the idiomatic way to share a `HashMap<u64, {ty}>` between tokio tasks?",
            "Wrap it in `Arc<Mutex<_>>` (or `RwLock` if reads dominate) and clone the `Arc` into each task; keep the lock scope short and never hold it across an `.await`.",
            "```rust\nlet {var} = Arc::new(Mutex::new(HashMap::<u64, {ty}>::new()));\nlet shared = Arc::clone(&{var});\ntokio::spawn(async move {\n    shared.lock().unwrap().insert(1, {ty}::default());\n});\n```",
        ),
        (
            "How do I return an error from `fn load_{noun}(id: u64) -> Result<{ty}, ???>` with thiserror?",
            "Define an enum error type with `thiserror::Error` and convert the underlying errors with `#[from]`, so `?` works throughout.",
            "```rust\n#[derive(Debug, thiserror::Error)]\nenum Load{ty}Error {\n    #[error(\"{noun} {0} not found\")]\n    NotFound(u64),\n    #[error(transparent)]\n    Io(#[from] std::io::Error),\n}\n\nfn load_{noun}(id: u64) -> Result<{ty}, Load{ty}Error> { todo!() }\n```",
        ),
        (
            "How do I kill a child process in Rust if it runs longer than {n} seconds?",
            "Spawn it with `std::process::Command`, wait with a timeout, and call `kill()` on the `Child` when the deadline passes.",
            "```rust\nlet mut child = Command::new(\"worker\").spawn()?;\nlet deadline = Instant::now() + Duration::from_secs({n});\nwhile child.try_wait()?.is_none() {\n    if Instant::now() > deadline {\n        child.kill()?;\n        break;\n    }\n    std::thread::sleep(Duration::from_millis(100));\n}\n```",
        ),
    ];
    let (q, a, code) = pick(rng, cases);
    let request = fill(q, &slots);
    let answer = format!("{}\n\n{}\n\n{}", fill(a, &slots), fill(code, &slots), rust_tip(rng));
    Turn { topic: "rust", request, tool: None, answer, subject: format!("rust {noun} {field}") }
}

fn rust_tip(rng: &mut Rng) -> &'static str {
    pick(
        rng,
        &[
            "Run `cargo clippy` afterwards; it catches most of the remaining non-idiomatic bits.",
            "If this is on a hot path, benchmark it with `criterion` before optimising further.",
            "The compiler's error index (`rustc --explain`) has a longer explanation of this pattern.",
            "This compiles on stable Rust; no nightly features needed.",
        ],
    )
}

fn python(rng: &mut Rng) -> Turn {
    let (noun, field) = ident(rng);
    let var = format!("{noun}s");
    let n = between(rng, 2, 50).to_string();
    let slots = [("noun", noun), ("field", field), ("var", var.as_str()), ("n", n.as_str())];
    let cases: &[(&str, &str, &str)] = &[
        (
            "How do I remove duplicate {var} from a list but keep the original order?",
            "A dict keeps insertion order, so `dict.fromkeys` dedupes in one pass; for unhashable items key them by `{field}`.",
            "```python\nunique = list(dict.fromkeys({var}))\n# by field\nseen = {}\nfor {noun} in {var}:\n    seen.setdefault({noun}[\"{field}\"], {noun})\nunique_{var} = list(seen.values())\n```",
        ),
        (
            "This raises `KeyError: '{field}'`, why?\n```python\nfor {noun} in {var}:\n    total += {noun}['{field}']\n```",
            "Some of your {var} don't have a `{field}` key. Use `.get` with a default, or filter them out first if a missing `{field}` is a data bug.",
            "```python\ntotal = sum({noun}.get(\"{field}\", 0) for {noun} in {var})\n```",
        ),
        (
            "What's the fastest way to group {var} by `{field}` in plain Python?",
            "`collections.defaultdict(list)` groups in one pass; `itertools.groupby` only works on input already sorted by the key.",
            "```python\nfrom collections import defaultdict\n\nby_{field} = defaultdict(list)\nfor {noun} in {var}:\n    by_{field}[{noun}[\"{field}\"]].append({noun})\n```",
        ),
        (
            "How do I fetch {n} URLs concurrently with httpx and asyncio?",
            "Create one `AsyncClient`, build the coroutines and `gather` them; a semaphore keeps the concurrency bounded.",
            "```python\nimport asyncio, httpx\n\nasync def fetch_all(urls):\n    sem = asyncio.Semaphore({n})\n    async with httpx.AsyncClient(timeout=10) as client:\n        async def one(url):\n            async with sem:\n                return (await client.get(url)).json()\n        return await asyncio.gather(*(one(u) for u in urls))\n```",
        ),
        (
            "Write a dataclass for a {noun} with `{field}` and validate it's not empty.",
            "Use `__post_init__` for validation; it runs after the generated `__init__`.",
            "```python\nfrom dataclasses import dataclass\n\n@dataclass\nclass {noun_cap}:\n    id: int\n    {field}: str\n\n    def __post_init__(self):\n        if not self.{field}:\n            raise ValueError(\"{field} must not be empty\")\n```",
        ),
        (
            "Why is `pandas` so slow when I loop over {var} with `iterrows()`?",
            "`iterrows` builds a Series per row. Vectorise the operation on whole columns, or use `itertuples()` when you really need a loop.",
            "```python\ndf[\"{field}_norm\"] = (df[\"{field}\"] - df[\"{field}\"].mean()) / df[\"{field}\"].std()\n```",
        ),
    ];
    let (q, a, code) = pick(rng, cases);
    let noun_cap = camel(noun);
    let mut all = slots.to_vec();
    all.push(("noun_cap", noun_cap.as_str()));
    let request = fill(q, &all);
    let tip = pick(
        rng,
        &[
            "Type hints (`list[dict[str, str]]`) make this easier to check with mypy.",
            "Add a small pytest case for the edge cases (empty input, missing keys).",
            "This works on Python 3.9 and newer.",
            "",
        ],
    );
    let answer = format!("{}\n\n{}\n\n{tip}", fill(a, &all), fill(code, &all)).trim_end().to_string();
    Turn { topic: "python", request, tool: None, answer, subject: format!("python {noun} {field}") }
}

fn sql(rng: &mut Rng) -> Turn {
    let (noun, field) = ident(rng);
    let table = format!("{noun}s");
    let n = between(rng, 3, 25).to_string();
    let days = pick(rng, &["7", "30", "90", "365"]).to_string();
    let slots = [("noun", noun), ("field", field), ("table", table.as_str()), ("n", n.as_str()), ("days", days.as_str())];
    let cases: &[(&str, &str, &str)] = &[
        (
            "Write a query for the top {n} customers by revenue over the last {days} days, from `{table}(customer_id, amount, created_at)`.",
            "Filter on the date first so the index on `created_at` is used, then aggregate and sort.",
            "```sql\nSELECT customer_id, sum(amount) AS revenue\nFROM {table}\nWHERE created_at >= now() - INTERVAL {days} DAY\nGROUP BY customer_id\nORDER BY revenue DESC\nLIMIT {n};\n```",
        ),
        (
            "Why is this slow? `SELECT * FROM {table} WHERE lower({field}) = 'x'`",
            "Wrapping the column in `lower()` prevents the index on `{field}` from being used. Index the expression, or store a normalised column.",
            "```sql\nCREATE INDEX {table}_{field}_lower_idx ON {table} (lower({field}));\n```",
        ),
        (
            "How do I delete duplicate rows in `{table}` keeping the newest per `{field}`?",
            "Number the rows per `{field}` by recency with a window function and delete everything after the first.",
            "```sql\nDELETE FROM {table}\nWHERE id IN (\n  SELECT id FROM (\n    SELECT id, row_number() OVER (PARTITION BY {field} ORDER BY updated_at DESC) AS rn\n    FROM {table}\n  ) t WHERE rn > 1\n);\n```",
        ),
        (
            "In ClickHouse, how should I deduplicate `{table}` rows that get inserted twice?",
            "Use a `ReplacingMergeTree` with a version column, and read with `FINAL` (or `argMax`) when you need exact results before merges happen.",
            "```sql\nCREATE TABLE {table}\n(\n  id UInt64,\n  {field} String,\n  version DateTime\n)\nENGINE = ReplacingMergeTree(version)\nORDER BY id;\n\nSELECT count() FROM {table} FINAL;\n```",
        ),
        (
            "Running total of `amount` per day for `{table}` in Postgres?",
            "A window `sum` over the daily aggregate ordered by day gives the running total.",
            "```sql\nSELECT day, sum(daily) OVER (ORDER BY day) AS running_total\nFROM (\n  SELECT date_trunc('day', created_at) AS day, sum(amount) AS daily\n  FROM {table} GROUP BY 1\n) d\nORDER BY day;\n```",
        ),
        (
            "What's the difference between `LEFT JOIN` and `NOT EXISTS` for finding {table} without a matching {field}?",
            "Both work; `NOT EXISTS` states the intent directly and is never tripped up by NULLs, while `LEFT JOIN ... IS NULL` can be faster on some planners.",
            "```sql\nSELECT o.*\nFROM {table} o\nWHERE NOT EXISTS (SELECT 1 FROM {noun}_{field}_history f WHERE f.{noun}_id = o.id);\n```",
        ),
    ];
    let (q, a, code) = pick(rng, cases);
    let request = fill(q, &slots);
    let tip = pick(
        rng,
        &["Check the plan with `EXPLAIN` before and after.", "Test it on a copy of the table first.", "Works on PostgreSQL 13+.", ""],
    );
    let answer = format!("{}\n\n{}\n\n{tip}", fill(a, &slots), fill(code, &slots)).trim_end().to_string();
    Turn { topic: "sql", request, tool: None, answer, subject: format!("sql {table} {field}") }
}

/// The answer when the documentation search failed on bad arguments.
pub fn tool_failure_answer(rng: &mut Rng) -> String {
    sentence(&[
        pick(
            rng,
            &[
                "I couldn't search the documentation just now,",
                "The docs lookup failed,",
                "My documentation search returned an error,",
                "I wasn't able to query the docs,",
            ],
        ),
        pick(
            rng,
            &[
                "so I can't confirm the exact API. Please try again.",
                "so please double-check the signature in the official reference.",
                "so I'd rather not guess. Can you retry?",
                "so I can't verify this right now.",
            ],
        ),
    ])
}

/// Tool definitions as OpenInference records them (`llm.tools.N.tool.json_schema`).
pub fn tool_definitions() -> Vec<serde_json::Value> {
    vec![
        json!({"type": "function", "function": {"name": "search_docs", "description": "Search language and library documentation", "parameters": {"type": "object", "properties": {"query": {"type": "string"}, "language": {"type": "string", "enum": ["rust", "python", "sql"]}, "max_results": {"type": "integer", "minimum": 1, "maximum": 10}}, "required": ["query", "language"]}}}),
    ]
}
