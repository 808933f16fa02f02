//! Plans a catalogue run: users (each with an application and a language), sessions, and for
//! every interaction its case (what the user asks and the right answer), its failure, its steps
//! and the user's reactions. The result is the same [`Plan`] the default scenario makes, so the
//! spans, signals and truth file are rendered by the same code.

use std::collections::BTreeSet;
use std::time::Duration;

use time::OffsetDateTime;

use super::trace::Trace;
use super::{App, Mode, agent, dev, help_center, sql, triage};
use crate::catalog::{Feature, Model};
use crate::compose::{self, Rng, between, chance, hex, pick, weighted};
use crate::failure::FailureMode;
use crate::message::Msg;
use crate::options::{SimulateOptions, Volume};
use crate::plan::{self, Budget, CallContext, Interaction, Plan, TraceId};
use crate::reactions::{self, Audience, Shown};
use crate::turn::Turn;

/// Mixed into the seed so that the catalogue's stream differs from the default scenario's.
const SALT: u64 = 0xca7a_1095_e5ee_d5a1;
/// Good answers get this many times the default scenario's rate of thumbs-downs and
/// regenerations (2.5 % each).
const NOISE: f64 = 2.5;

/// What a user asks and what the right answer is, per application.
pub enum Case {
    Help(help_center::Case),
    Sql(sql::Case),
    Agent(agent::Case),
    Dev(dev::Case),
    Triage(triage::Case),
}

/// What playing a case produced.
pub struct Played {
    /// The text the user finally saw (empty after an error).
    pub answer: String,
    /// Index of the call the failure and the reactions belong to.
    pub target: usize,
    /// The language of the answer when it is not the user's.
    pub language: Option<&'static str>,
}

impl Case {
    fn new(rng: &mut Rng, app: App, lang: &'static str, mode: Option<Mode>, follow_up: bool) -> Case {
        match app {
            App::HelpCenter => Case::Help(help_center::case(rng, lang, mode, follow_up)),
            App::SqlAnalyst => Case::Sql(sql::case(rng, mode)),
            App::TripAgent => Case::Agent(agent::case(rng, mode)),
            App::DevAssistant => Case::Dev(dev::case(rng, mode, follow_up)),
            App::TicketTriage => Case::Triage(triage::case(rng, lang)),
        }
    }

    pub fn turn(&self) -> &Turn {
        match self {
            Case::Help(c) => &c.turn,
            Case::Sql(c) => &c.turn,
            Case::Agent(c) => &c.turn,
            Case::Dev(c) => &c.turn,
            Case::Triage(c) => &c.turn,
        }
    }

    /// Whether `mode` can happen to this case when the user asks it again.
    fn fits(&self, mode: Mode) -> bool {
        match self {
            Case::Help(c) => help_center::fits(c, mode),
            Case::Sql(c) => sql::fits(c, mode),
            Case::Agent(c) => agent::fits(c, mode),
            Case::Dev(c) => dev::fits(c, mode),
            Case::Triage(_) => true,
        }
    }

    fn play(&self, t: &mut Trace<'_>, request: &str, mode: Option<Mode>) -> Played {
        match self {
            Case::Help(c) => help_center::play(c, t, request, mode),
            Case::Sql(c) => sql::play(c, t, request, mode),
            Case::Agent(c) => agent::play(c, t, request, mode),
            Case::Dev(c) => dev::play(c, t, request, mode),
            Case::Triage(c) => triage::play(c, t, request, mode),
        }
    }
}

struct User {
    id: String,
    app: App,
    lang: &'static str,
}

struct Planner<'a> {
    rng: Rng,
    opts: &'a SimulateOptions,
    base: OffsetDateTime,
    users: Vec<User>,
    out: Vec<Interaction>,
    /// Total weight of the catalogue's modes in the mix.
    total_weight: f64,
}

/// Plans a catalogue run. Pure: the same options and base time give the same plan.
pub fn plan(opts: &SimulateOptions, base_time: OffsetDateTime) -> Plan {
    let total_weight = opts.mix.modes().filter(|(m, _)| matches!(m, FailureMode::Catalogue(_))).map(|(_, w)| w).sum();
    let mut p = Planner { rng: compose::rng(opts.seed ^ SALT), opts, base: base_time, users: Vec::new(), out: Vec::new(), total_weight };
    let user_count = match opts.volume {
        Volume::Sessions(n) => (n * 2 / 5).max(8),
        Volume::Interactions(n) => (n / 5).max(8),
    };
    for _ in 0..user_count {
        let id = format!("u_{}", hex(&mut p.rng, 5));
        let app = weighted(&mut p.rng, &App::ALL.map(|a| (a, a.traffic_share())));
        let lang = weighted(&mut p.rng, app.languages());
        p.users.push(User { id, app, lang });
    }
    let mut budget = Budget::of(opts.volume);
    let mut sessions = 0;
    let mut used = BTreeSet::new();
    while !budget.exhausted() {
        let user = between(&mut p.rng, 0, p.users.len() as u64 - 1) as usize;
        used.insert(user);
        p.session(user, &mut budget);
        sessions += 1;
    }
    p.out.sort_by_key(|i| i.start);
    Plan { seed: opts.seed, base_time, window: opts.window, interactions: p.out, sessions, users: used.len() }
}

/// A request asked again after a regenerate or retry.
struct Repeat {
    request: String,
    of: TraceId,
    at: OffsetDateTime,
    chain: usize,
    failure: Option<Mode>,
}

impl Planner<'_> {
    fn session(&mut self, user: usize, budget: &mut Budget) {
        let rng = &mut self.rng;
        // Most users stick to their application; some try another one (in English).
        let (app, lang) = if chance(rng, 0.9) { (self.users[user].app, self.users[user].lang) } else { (pick(rng, &App::ALL), "en") };
        let user_id = self.users[user].id.clone();
        let session_id = plan::session_id(rng, Feature::Catalogue(app));
        let planned = weighted(rng, &[(1, 0.35), (2, 0.3), (3, 0.2), (4, 0.15)]);
        let mut t = plan::session_start(rng, self.opts.window, self.base);
        let mut history: Vec<Msg> = Vec::new();
        let mut items: Vec<Interaction> = Vec::new();
        let mut case: Option<Case> = None;
        let mut repeat: Option<Repeat> = None;
        let mut done = 0;
        while done < planned && budget.allows_interaction() {
            let (request, follow_up_of, chain, failure) = match repeat.take() {
                Some(r) => {
                    t = r.at;
                    (r.request, Some(r.of), r.chain, r.failure)
                }
                None => {
                    let failure = self.draw(app, lang, t);
                    let c = Case::new(&mut self.rng, app, lang, failure, done > 0);
                    let request = c.turn().request.clone();
                    case = Some(c);
                    (request, None, 0, failure)
                }
            };
            let c = case.as_ref().expect("a case is planned before it is played");
            let ix = self.interaction(app, lang, &user_id, &session_id, &history, c, &request, failure, t, follow_up_of);
            budget.interaction();
            let last_reaction = ix.reactions.iter().map(|r| ix.end + r.delay).max().unwrap_or(ix.end);
            let ends = ix.reactions.iter().any(|r| r.kind.ends_session());
            if let Some(r) = ix.reactions.iter().find(|r| r.kind.repeats_request()).filter(|_| chain < 3) {
                let at = ix.end + r.delay + Duration::from_millis(between(&mut self.rng, 300, 2_000));
                let again = plan::near_identical(&mut self.rng, &request, None);
                // The cause often persists when the user asks again; otherwise the answer is good.
                let failure = failure.filter(|m| chance(&mut self.rng, 0.4) && c.fits(*m));
                repeat = Some(Repeat { request: again, of: ix.trace_id, at, chain: chain + 1, failure });
            } else {
                if app.keeps_history() {
                    history.push(Msg::text("user", request.clone()));
                }
                if app.keeps_history() && !ix.answer.is_empty() {
                    history.push(Msg::text("assistant", ix.answer.clone()));
                }
                done += 1;
                t = last_reaction + Duration::from_secs(between(&mut self.rng, 15, 240));
            }
            items.push(ix);
            if ends {
                break;
            }
        }
        budget.session();
        let limit = self.base - Duration::from_secs(1);
        if let Some(last) = items.iter().map(Interaction::last_instant).max()
            && last > limit
        {
            let by = last - limit;
            for ix in &mut items {
                ix.shift_back(by);
            }
        }
        self.out.extend(items);
    }

    /// Whether this interaction fails, and how. Each app fails at the rate that gives every
    /// mode about the same number of failures whatever the app's share of the traffic.
    fn draw(&mut self, app: App, lang: &str, at: OffsetDateTime) -> Option<Mode> {
        let feature = Feature::Catalogue(app);
        let modes = self.opts.mix.for_feature(feature);
        let app_weight: f64 = modes.iter().map(|(_, w)| w).sum();
        if app_weight <= 0.0 || self.total_weight <= 0.0 {
            return None;
        }
        let rate = (self.opts.failure_rate_at(at, self.base) * app_weight / self.total_weight / app.traffic_share()).min(0.95);
        if !chance(&mut self.rng, rate) {
            return None;
        }
        let fitting: Vec<(Mode, f64)> = modes
            .into_iter()
            .filter_map(|(m, w)| match m {
                FailureMode::Catalogue(m) if m != Mode::AnsweredInDocumentLanguage || lang != "en" => Some((m, w)),
                _ => None,
            })
            .collect();
        (!fitting.is_empty()).then(|| weighted(&mut self.rng, &fitting))
    }

    #[allow(clippy::too_many_arguments)]
    fn interaction(
        &mut self,
        app: App,
        lang: &'static str,
        user_id: &str,
        session_id: &str,
        history: &[Msg],
        case: &Case,
        request: &str,
        mode: Option<Mode>,
        start: OffsetDateTime,
        follow_up_of: Option<TraceId>,
    ) -> Interaction {
        let feature = Feature::Catalogue(app);
        let failure = mode.map(FailureMode::Catalogue);
        let rng = &mut self.rng;
        let trace_id = plan::trace_id(rng);
        let root_span_id = plan::span_id(rng);
        let agent_span_id = app.is_agent().then(|| plan::span_id(rng));
        let models: Vec<(&'static Model, f64)> =
            app.models().iter().map(|(m, w)| (*m, w * failure.map_or(1.0, |f| f.model_affinity(m)))).collect();
        let model = weighted(rng, &models);
        let ctx = CallContext {
            model,
            system: app.system_prompt(),
            tool_tokens: app.tool_tokens(),
            max_tokens: app.max_tokens(),
            temperature: app.temperature(),
        };
        let at = start + Duration::from_millis(between(rng, 3, 12));
        let mut trace = Trace::new(rng, ctx, at, history.to_vec());
        let played = case.play(&mut trace, request, mode);
        let steps = trace.steps;
        let end = trace.at + Duration::from_millis(between(&mut self.rng, 2, 15));
        let mut ix = Interaction {
            feature,
            trace_id,
            root_span_id,
            agent_span_id,
            session_id: session_id.to_string(),
            user_id: user_id.to_string(),
            request: request.to_string(),
            answer: played.answer,
            start,
            end,
            steps,
            failure,
            target_call: played.target,
            reactions: Vec::new(),
            signals: Vec::new(),
            follow_up_of,
        };
        let has_response_id = ix.calls().nth(played.target).and_then(|c| c.response_id.as_ref()).is_some();
        let shown = Shown { feature, turn: case.turn(), language: played.language, has_response_id };
        ix.reactions = reactions::react_as(&mut self.rng, failure, &shown, &Audience { language: lang, noise: NOISE });
        ix.signals = plan::signals_of(&mut self.rng, &ix);
        ix
    }
}
