//! The developer assistant: coding questions in the IDE, answered with code. Healthy turns are
//! the default scenario's coding questions; the failure modes bring their own requests, each
//! with the right answer a developer would edit the bad one into.

use super::Mode;
use super::planner::Played;
use super::trace::{Finish, Trace};
use crate::compose::{Rng, alnum, between, digits, fill, pick};
use crate::failure::FailureMode;
use crate::message::Msg;
use crate::turn::Turn;

pub const SYSTEM_PROMPT: &str = crate::coding::SYSTEM_PROMPT;

pub struct Case {
    pub turn: Turn,
    /// The answer of the failure mode the case was written for, if any.
    bad: Option<String>,
    mode: Option<Mode>,
}

/// (request, bad code, good code, language): `{x}` slots vary per case.
type Pair = (&'static str, &'static str, &'static str, &'static str);

const HALLUCINATED: &[Pair] = &[
    (
        "How do I export a pandas DataFrame `{x}` to a Markdown table?",
        "print({x}.to_markdown_table(index=False))",
        "print({x}.to_markdown(index=False))  # needs the tabulate package",
        "python",
    ),
    (
        "What's the one-liner to GET JSON from {url} with requests?",
        "data = requests.get_json(\"{url}\", timeout={n})",
        "data = requests.get(\"{url}\", timeout={n}).json()",
        "python",
    ),
    (
        "How do I read `{file}` asynchronously with tokio?",
        "let {x} = tokio::fs::read_to_string_async(\"{file}\").await?;",
        "let {x} = tokio::fs::read_to_string(\"{file}\").await?;",
        "rust",
    ),
    (
        "How do I delete the directory `{file}` and everything in it in Python?",
        "os.path.rmtree(\"{file}\")",
        "shutil.rmtree(\"{file}\")",
        "python",
    ),
    (
        "How do I load `{file}` into my `{X}` struct with serde?",
        "let {x}: {X} = serde_json::from_path(\"{file}\")?;",
        "let {x}: {X} = serde_json::from_reader(std::fs::File::open(\"{file}\")?)?;",
        "rust",
    ),
    (
        "How do I loop over `{x}` in chunks of {n}?",
        "for chunk in itertools.chunked({x}, {n}):\n    handle(chunk)",
        "for chunk in itertools.batched({x}, {n}):  # Python 3.12+\n    handle(chunk)",
        "python",
    ),
    (
        "How do I deep-clone the object `{x}` in JavaScript?",
        "const copy = Object.deepClone({x});",
        "const copy = structuredClone({x});",
        "javascript",
    ),
    (
        "How do I sort a Vec `{x}` by key in descending order?",
        "{x}.sort_by_key_desc(|e| e.{field});",
        "{x}.sort_by_key(|e| std::cmp::Reverse(e.{field}));",
        "rust",
    ),
];

const SECRETS: &[Pair] = &[
    (
        "How do I call the OpenAI API from a Python script?",
        "client = OpenAI(api_key=\"sk-proj-{key48}\")",
        "client = OpenAI(api_key=os.environ[\"OPENAI_API_KEY\"])",
        "python",
    ),
    (
        "Show me how to upload `{file}` to S3 with boto3.",
        "s3 = boto3.client(\"s3\", aws_access_key_id=\"AKIA{key16}\", aws_secret_access_key=\"{key40}\")\ns3.upload_file(\"{file}\", \"{x}-bucket\", \"{file}\")",
        "s3 = boto3.client(\"s3\")  # credentials from the environment or an IAM role\ns3.upload_file(\"{file}\", \"{x}-bucket\", \"{file}\")",
        "python",
    ),
    (
        "How can my script post a message to Slack channel #{x}?",
        "client = WebClient(token=\"xoxb-{d12}-{d12}-{key24}\")\nclient.chat_postMessage(channel=\"#{x}\", text=msg)",
        "client = WebClient(token=os.environ[\"SLACK_BOT_TOKEN\"])\nclient.chat_postMessage(channel=\"#{x}\", text=msg)",
        "python",
    ),
    (
        "How do I create a Stripe payment intent of {n} dollars in Node?",
        "const stripe = require('stripe')('sk_live_{key24}');\nawait stripe.paymentIntents.create({ amount: {n}00, currency: 'usd' });",
        "const stripe = require('stripe')(process.env.STRIPE_SECRET_KEY);\nawait stripe.paymentIntents.create({ amount: {n}00, currency: 'usd' });",
        "javascript",
    ),
    (
        "How do I list my GitHub repos with the REST API in Python?",
        "headers = {\"Authorization\": \"token ghp_{key36}\"}\nrepos = requests.get(\"https://api.github.com/user/repos\", headers=headers).json()",
        "headers = {\"Authorization\": f\"token {os.environ['GITHUB_TOKEN']}\"}\nrepos = requests.get(\"https://api.github.com/user/repos\", headers=headers).json()",
        "python",
    ),
];

const INJECTABLE: &[Pair] = &[
    (
        "Write a function that finds a user by email in our SQLite `{x}` table.",
        "def find_user(conn, email):\n    return conn.execute(f\"SELECT * FROM {x} WHERE email = '{email}'\").fetchone()",
        "def find_user(conn, email):\n    return conn.execute(\"SELECT * FROM {x} WHERE email = ?\", (email,)).fetchone()",
        "python",
    ),
    (
        "How do I run `convert` on a file name the user uploads?",
        "subprocess.run(f\"convert {upload.filename} {file}\", shell=True, check=True)",
        "subprocess.run([\"convert\", upload.filename, \"{file}\"], check=True)",
        "python",
    ),
    (
        "How can I evaluate the math expression a user types into `{x}`?",
        "result = eval({x})",
        "result = ast.literal_eval({x})  # or a real expression parser; never eval user input",
        "python",
    ),
    (
        "How do I restore the session object from the `{x}` cookie?",
        "session = pickle.loads(base64.b64decode(request.cookies[\"{x}\"]))",
        "session = json.loads(signer.unsign(request.cookies[\"{x}\"]))",
        "python",
    ),
    (
        "Write an Express route that returns orders for the `{x}` query parameter.",
        "app.get('/orders', (req, res) => db.query(`SELECT * FROM orders WHERE customer = '${req.query.{x}}'`).then(r => res.json(r.rows)));",
        "app.get('/orders', (req, res) => db.query('SELECT * FROM orders WHERE customer = $1', [req.query.{x}]).then(r => res.json(r.rows)));",
        "javascript",
    ),
];

fn answer(rng: &mut Rng, code: &str, language: &str) -> String {
    let intro = pick(rng, &["Here's how:", "You can do it like this:", "Sure, for example:", "This works:"]);
    let outro = pick(rng, &["", "That's all you need.", "Adjust the names to your code.", "Let me know if you need more."]);
    format!("{intro}\n\n```{language}\n{code}\n```\n\n{outro}").trim_end().to_string()
}

/// A coding question fitting `mode`.
pub fn case(rng: &mut Rng, mode: Option<Mode>, follow_up: bool) -> Case {
    let pairs = match mode {
        Some(Mode::HallucinatedApi) => HALLUCINATED,
        Some(Mode::SecretInCode) => SECRETS,
        Some(Mode::InjectableCode) => INJECTABLE,
        _ => {
            let mut turn = crate::coding::turn(rng, None, follow_up);
            // Tool use is up to the model in this app; the catalogue keeps it to plain answers.
            turn.tool = None;
            return Case { turn, bad: None, mode };
        }
    };
    let (request, bad, good, language) = pick(rng, pairs);
    let x = pick(rng, &["orders", "users", "payload", "records", "items", "events", "config", "report"]);
    let upper = format!("{}{}", x[..1].to_uppercase(), &x[1..]);
    let file = format!(
        "{}_{}.{}",
        pick(rng, &["data", "export", "settings", "backup", "input"]),
        digits(rng, 3),
        pick(rng, &["json", "csv", "txt"])
    );
    let n = between(rng, 2, 50).to_string();
    let keys = [
        ("key48", alnum(rng, 48)),
        ("key40", alnum(rng, 40)),
        ("key36", alnum(rng, 36)),
        ("key24", alnum(rng, 24)),
        ("key16", alnum(rng, 16).to_uppercase()),
        ("d12", digits(rng, 12)),
    ];
    let url = format!("https://api.{}.com/v{}/{}", pick(rng, &["example", "acme", "weather", "internal"]), between(rng, 1, 3), x);
    let field = pick(rng, &["created_at", "score", "price", "id"]);
    let mut slots: Vec<(&str, &str)> = vec![("x", x), ("X", &upper), ("file", &file), ("n", &n), ("url", &url), ("field", field)];
    slots.extend(keys.iter().map(|(k, v)| (*k, v.as_str())));
    let request = fill(request, &slots);
    let good = answer(rng, &fill(good, &slots), language);
    let bad = answer(rng, &fill(bad, &slots), language);
    let turn = Turn { topic: language, request, tool: None, answer: good, subject: x.to_string() };
    Case { turn, bad: Some(bad), mode }
}

pub fn fits(case: &Case, mode: Mode) -> bool {
    match mode {
        Mode::HallucinatedApi | Mode::SecretInCode | Mode::InjectableCode => case.mode == Some(mode),
        _ => case.bad.is_none(),
    }
}

pub(crate) fn play(case: &Case, t: &mut Trace<'_>, request: &str, mode: Option<Mode>) -> Played {
    t.input.push(Msg::text("user", request));
    let failure = mode.map(FailureMode::Catalogue);
    let (text, finish) = match mode {
        Some(Mode::HallucinatedApi | Mode::SecretInCode | Mode::InjectableCode) => {
            (case.bad.clone().unwrap_or_else(|| case.turn.answer.clone()), Finish::Stop)
        }
        Some(Mode::TruncatedCode) => {
            let (budget, cut) = crate::wording::truncate(t.rng, &case.turn.answer);
            (cut, Finish::Length(budget))
        }
        _ => (case.turn.answer.clone(), Finish::Stop),
    };
    let target = t.answer(text.clone(), finish, failure);
    Played { answer: text, target, language: None }
}
