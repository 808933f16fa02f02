//! How users react to what the assistant did: per failure mode, a probability for each
//! reaction (most failures get no feedback at all, as in production), and rare noise on
//! healthy answers. A reaction may be reported to the signals API or stay implicit: a user who
//! regenerates shows up as a second, near-identical request even when the app sends nothing.

use std::time::Duration;

use serde::Serialize;

use crate::catalog::Feature;
use crate::compose::{Rng, between, between_f, chance, fill, pick, sentence, weighted};
use crate::failure::FailureMode;
use crate::turn::Turn;
use crate::wording::language_name;

/// Signal kinds of the public signals API that the simulated users produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    ThumbsUp,
    ThumbsDown,
    Rating,
    Regenerate,
    Edit,
    Copy,
    FeatureDisabled,
    Abandon,
    Escalate,
    Retry,
    Comment,
}

impl Kind {
    pub fn id(self) -> &'static str {
        match self {
            Kind::ThumbsUp => "thumbs_up",
            Kind::ThumbsDown => "thumbs_down",
            Kind::Rating => "rating",
            Kind::Regenerate => "regenerate",
            Kind::Edit => "edit",
            Kind::Copy => "copy",
            Kind::FeatureDisabled => "feature_disabled",
            Kind::Abandon => "abandon",
            Kind::Escalate => "escalate",
            Kind::Retry => "retry",
            Kind::Comment => "comment",
        }
    }

    /// The user asks again: the session gets a second interaction with the same request.
    pub fn repeats_request(self) -> bool {
        matches!(self, Kind::Regenerate | Kind::Retry)
    }

    /// The user leaves the conversation (or hands it to a human).
    pub fn ends_session(self) -> bool {
        matches!(self, Kind::Abandon | Kind::FeatureDisabled | Kind::Escalate)
    }
}

/// How the application ties a signal to the interaction. Apps rarely know the trace id where
/// the thumbs-down happens, so some link by the response id or only by the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    Trace,
    Message,
    Session,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Reaction {
    pub kind: Kind,
    /// After the end of the interaction.
    pub delay: Duration,
    /// Reported to the signals API; otherwise visible only through its effect on the traffic.
    pub sent: bool,
    pub link: Link,
    pub value: Option<f64>,
    pub comment: Option<String>,
    /// The final text of an `edit`.
    pub text: Option<String>,
}

/// What the user saw, for reactions that quote or correct it.
pub struct Shown<'a> {
    pub feature: Feature,
    pub turn: &'a Turn,
    /// The language code of a wrong-language answer.
    pub language: Option<&'static str>,
    pub has_response_id: bool,
}

/// Who reacts: the language the user writes comments in, and how much noise (thumbs-down,
/// regenerate) good answers get from them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Audience {
    /// ISO 639-1 code of the user's language.
    pub language: &'static str,
    /// Multiplier of the rate of thumbs-downs and regenerations on healthy answers.
    pub noise: f64,
}

impl Default for Audience {
    fn default() -> Self {
        Audience { language: "en", noise: 1.0 }
    }
}

/// The reactions of a user to one interaction.
pub fn react(rng: &mut Rng, failure: Option<FailureMode>, shown: &Shown<'_>) -> Vec<Reaction> {
    react_as(rng, failure, shown, &Audience::default())
}

/// [`react`] for a given audience.
pub fn react_as(rng: &mut Rng, failure: Option<FailureMode>, shown: &Shown<'_>, audience: &Audience) -> Vec<Reaction> {
    use Kind::*;
    let support = shown.feature == Feature::SupportAssistant;
    // The main action, exclusive; `None` is the silent majority.
    let choices: Vec<(Option<Kind>, f64)> = match failure {
        Some(FailureMode::HallucinatedRefundPolicy) => {
            vec![(Some(Escalate), 0.30), (Some(ThumbsDown), 0.35), (Some(Edit), 0.10), (None, 0.25)]
        }
        Some(FailureMode::WrongLanguage) => vec![(Some(ThumbsDown), 0.35), (Some(Edit), 0.25), (Some(Regenerate), 0.25), (None, 0.15)],
        Some(FailureMode::TruncatedAnswer) => vec![(Some(Regenerate), 0.55), (Some(ThumbsDown), 0.15), (Some(Edit), 0.10), (None, 0.20)],
        Some(FailureMode::InvalidToolArguments) => vec![
            (Some(Regenerate), 0.25),
            (Some(ThumbsDown), 0.25),
            (Some(if support { Escalate } else { Abandon }), 0.15),
            (Some(Abandon), 0.10),
            (None, 0.25),
        ],
        Some(FailureMode::RateLimitError) => vec![(Some(Retry), 0.65), (Some(Abandon), 0.15), (None, 0.20)],
        Some(FailureMode::Refusal) => {
            vec![(Some(Regenerate), 0.40), (Some(ThumbsDown), 0.25), (Some(Abandon), 0.15), (Some(FeatureDisabled), 0.05), (None, 0.15)]
        }
        Some(FailureMode::SlowAnswer) => {
            vec![(Some(Abandon), 0.40), (Some(Regenerate), 0.15), (Some(ThumbsDown), 0.10), (Some(FeatureDisabled), 0.05), (None, 0.30)]
        }
        // One answer read alone looks fine: only customers who knew better react.
        Some(FailureMode::InconsistentAnswer) => {
            vec![(Some(ThumbsDown), 0.15), (Some(Escalate), 0.10), (Some(Comment), 0.05), (None, 0.70)]
        }
        Some(FailureMode::Catalogue(mode)) => mode.reactions(),
        None => vec![
            (Some(ThumbsUp), 0.05),
            (Some(Copy), if support { 0.03 } else { 0.20 }),
            (Some(Rating), 0.02),
            (Some(ThumbsDown), 0.01 * audience.noise),
            (Some(Edit), 0.01),
            (Some(Regenerate), 0.01 * audience.noise),
            (Some(Comment), 0.005),
            (None, 1.0),
        ],
    };
    let Some(main) = weighted(rng, &choices) else { return Vec::new() };
    let mut out = vec![reaction(rng, main, failure, shown, audience)];
    // An annoyed user sometimes also leaves a thumbs-down before regenerating or escalating.
    let down_first = match failure {
        Some(FailureMode::Catalogue(mode)) => mode.thumbs_down_first(),
        _ => 0.2,
    };
    if failure.is_some() && matches!(main, Regenerate | Escalate | Edit) && chance(rng, down_first) {
        let mut down = reaction(rng, ThumbsDown, failure, shown, audience);
        down.delay = out[0].delay.saturating_sub(Duration::from_secs(1)).max(Duration::from_secs(1));
        out.insert(0, down);
    }
    out
}

fn reaction(rng: &mut Rng, kind: Kind, failure: Option<FailureMode>, shown: &Shown<'_>, audience: &Audience) -> Reaction {
    use Kind::*;
    let secs = |rng: &mut Rng, lo: f64, hi: f64| Duration::from_secs_f64(between_f(rng, lo, hi));
    let delay = match kind {
        ThumbsUp | ThumbsDown => secs(rng, 3.0, 45.0),
        Rating | Comment => secs(rng, 5.0, 60.0),
        Edit => secs(rng, 20.0, 180.0),
        Regenerate => secs(rng, 2.0, 12.0),
        Retry => secs(rng, 1.0, 8.0),
        Escalate => secs(rng, 10.0, 90.0),
        Abandon if failure == Some(FailureMode::SlowAnswer) => secs(rng, 1.0, 10.0),
        Abandon if matches!(failure, Some(FailureMode::Catalogue(m)) if m.is_slow()) => secs(rng, 1.0, 10.0),
        Abandon => secs(rng, 30.0, 300.0),
        FeatureDisabled => secs(rng, 5.0, 60.0),
        Copy => secs(rng, 2.0, 30.0),
    };
    let sent = match kind {
        // Many apps don't report the regenerate button; abandonment is detected only sometimes.
        Regenerate => chance(rng, 0.7),
        Abandon => chance(rng, 0.6),
        _ => true,
    };
    let link = match kind {
        Abandon | FeatureDisabled if chance(rng, 0.5) => Link::Session,
        _ => weighted(rng, &[(Link::Trace, 0.70), (Link::Message, if shown.has_response_id { 0.15 } else { 0.0 }), (Link::Session, 0.15)]),
    };
    let mut r = Reaction { kind, delay, sent, link, value: None, comment: None, text: None };
    match kind {
        ThumbsDown if failure.is_none() || chance(rng, 0.5) => r.comment = Some(comment(rng, failure, shown, audience)),
        Comment => r.comment = Some(comment(rng, failure, shown, audience)),
        Escalate if chance(rng, 0.6) => r.comment = Some(comment(rng, failure, shown, audience)),
        Rating => r.value = Some(if failure.is_some() { between(rng, 1, 2) } else { between(rng, 3, 5) } as f64),
        Edit => r.text = Some(edited_text(rng, failure, shown, audience)),
        _ => {}
    }
    r
}

/// A user's comment on what went wrong, in their own words.
fn comment(rng: &mut Rng, failure: Option<FailureMode>, shown: &Shown<'_>, audience: &Audience) -> String {
    let language = shown.language.map(language_name).unwrap_or("another language");
    let days = pick(rng, &["30", "thirty"]).to_string();
    let lines: &[&str] = match failure {
        Some(FailureMode::HallucinatedRefundPolicy) => &[
            "That's not your refund policy, it's {days} days.",
            "Your website says {days} days and refunds to the card, not cash.",
            "Cash refunds? Are you sure? The store refused.",
            "This contradicts the terms on your site.",
            "Wrong policy info.",
            "The assistant promised me something the store won't honor.",
        ],
        Some(FailureMode::WrongLanguage) => &[
            "Why is it answering in {language}?",
            "I asked in English.",
            "Please answer in English.",
            "The answer came back in {language}.",
            "wrong language??",
        ],
        Some(FailureMode::TruncatedAnswer) => {
            &["The answer got cut off.", "Incomplete answer.", "It stopped mid-sentence.", "cut off again", "The answer ends abruptly."]
        }
        Some(FailureMode::InvalidToolArguments) => &[
            "It couldn't find my order even though the number is right.",
            "The lookup failed.",
            "It says it can't look it up.",
            "Tool error, no real answer.",
        ],
        Some(FailureMode::RateLimitError) => &["Error again.", "It just shows an error.", "Service unavailable?"],
        Some(FailureMode::Refusal) => &[
            "Why can't you help with this? It's a normal question.",
            "It refused a simple request.",
            "This is not a sensitive request!",
            "Useless refusal.",
        ],
        Some(FailureMode::SlowAnswer) => &["Way too slow.", "Took forever to answer.", "I waited almost a minute.", "So slow."],
        Some(FailureMode::InconsistentAnswer) => &[
            "That's not what your website says.",
            "Another agent told me something different yesterday.",
            "Your policy page says otherwise.",
            "This doesn't match what I was told before.",
        ],
        Some(FailureMode::Catalogue(mode)) => mode.comments(audience.language),
        None if audience.language != "en" => crate::catalogue::lang::noise_comments(audience.language),
        None => &["Not helpful.", "Too long.", "Not what I asked.", "Great, thanks!", "Helpful, but a bit verbose."],
    };
    if audience.language != "en" {
        // Users writing in their own language do not append English asides.
        return fill(pick(rng, lines), &[("language", language), ("days", &days)]);
    }
    let base = fill(pick(rng, lines), &[("language", language), ("days", &days)]);
    sentence(&[&base, pick(rng, &["", "", "", "Please fix.", "Disappointing.", "Second time today.", "Not great."])])
}

/// The text a user ends up with after editing the answer.
fn edited_text(rng: &mut Rng, failure: Option<FailureMode>, shown: &Shown<'_>, audience: &Audience) -> String {
    match failure {
        // The user rewrites it with what it should have said.
        Some(_) => shown.turn.answer.clone(),
        None if audience.language != "en" => sentence(&[&shown.turn.answer, pick(rng, crate::catalogue::lang::closers(audience.language))]),
        // A small touch-up of a good answer.
        None => sentence(&[
            &shown.turn.answer,
            pick(rng, &["Let me know if that helps.", "Hope this helps!", "Thanks for your patience.", "Cheers."]),
        ]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compose::rng;

    fn shown(turn: &Turn) -> Shown<'_> {
        Shown { feature: Feature::SupportAssistant, turn, language: Some("fr"), has_response_id: true }
    }

    #[test]
    fn failures_draw_more_reactions_than_healthy_answers() {
        let mut rng = rng(3);
        let turn = crate::support::turn(&mut rng, Some("refund"), false);
        let count = |rng: &mut Rng, failure| (0..2000).filter(|_| !react(rng, failure, &shown(&turn)).is_empty()).count();
        let healthy = count(&mut rng, None);
        let truncated = count(&mut rng, Some(FailureMode::TruncatedAnswer));
        assert!(healthy < 400, "{healthy}");
        assert!(truncated > 1400, "{truncated}");
    }

    #[test]
    fn edits_carry_the_corrected_text() {
        let mut rng = rng(4);
        let turn = crate::support::turn(&mut rng, Some("refund"), false);
        let edit = (0..500)
            .flat_map(|_| react(&mut rng, Some(FailureMode::WrongLanguage), &shown(&turn)))
            .find(|r| r.kind == Kind::Edit)
            .expect("some wrong-language answers get edited");
        assert_eq!(edit.text.as_deref(), Some(turn.answer.as_str()));
    }
}
