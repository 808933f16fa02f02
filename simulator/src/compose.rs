//! Composition of texts from parts with the seeded generator: templates with `{slot}`
//! placeholders, random picks, weighted choices and identifiers. Everything random in the
//! simulator goes through a [`Rng`] so that one seed gives one run.

use rand::Rng as _;
use rand_chacha::ChaCha8Rng;

/// The simulator's only source of randomness (ChaCha8: its stream is stable across platforms
/// and crate versions, which the determinism promise depends on).
pub type Rng = ChaCha8Rng;

pub fn rng(seed: u64) -> Rng {
    use rand::SeedableRng;
    ChaCha8Rng::seed_from_u64(seed)
}

/// One element of a non-empty slice.
pub fn pick<T: Copy>(rng: &mut Rng, items: &[T]) -> T {
    items[rng.random_range(0..items.len())]
}

/// One element by weight; weights need not sum to one. The last element when all are zero.
pub fn weighted<T: Copy>(rng: &mut Rng, items: &[(T, f64)]) -> T {
    let total: f64 = items.iter().map(|(_, w)| w.max(0.0)).sum();
    let mut x = rng.random::<f64>() * total;
    for (item, w) in items {
        x -= w.max(0.0);
        if x < 0.0 {
            return *item;
        }
    }
    items.last().expect("weighted choice over an empty list").0
}

pub fn chance(rng: &mut Rng, p: f64) -> bool {
    rng.random::<f64>() < p
}

pub fn between(rng: &mut Rng, low: u64, high: u64) -> u64 {
    rng.random_range(low..=high)
}

pub fn between_f(rng: &mut Rng, low: f64, high: f64) -> f64 {
    low + rng.random::<f64>() * (high - low)
}

/// Replaces every `{name}` of `template` by its value in `slots`; unknown slots stay visible
/// so that a typo shows in the output instead of vanishing.
pub fn fill(template: &str, slots: &[(&str, &str)]) -> String {
    let mut out = template.to_string();
    for (name, value) in slots {
        out = out.replace(&format!("{{{name}}}"), value);
    }
    out
}

pub fn hex(rng: &mut Rng, bytes: usize) -> String {
    (0..bytes).map(|_| format!("{:02x}", rng.random::<u8>())).collect()
}

pub fn alnum(rng: &mut Rng, len: usize) -> String {
    const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    (0..len).map(|_| CHARS[rng.random_range(0..CHARS.len())] as char).collect()
}

pub fn digits(rng: &mut Rng, len: usize) -> String {
    (0..len).map(|_| char::from(b'0' + rng.random_range(0..10u8))).collect()
}

/// Joins non-empty pieces with single spaces.
pub fn sentence(pieces: &[&str]) -> String {
    pieces.iter().map(|p| p.trim()).filter(|p| !p.is_empty()).collect::<Vec<_>>().join(" ")
}

/// `opener` then `text`, lowering the first letter of `text` when the opener runs into it
/// ("Thanks. And how…", "OK, and what…") but not after a full stop or colon.
pub fn with_opener(opener: &str, text: &str) -> String {
    let runs_on = opener.ends_with(',') || opener.chars().last().is_some_and(char::is_alphabetic);
    let mut chars = text.chars();
    let body = match (runs_on, chars.next(), text.chars().nth(1)) {
        // "I" and acronyms keep their capital.
        (true, Some(first), Some(second)) if first != 'I' && second.is_lowercase() => first.to_lowercase().chain(chars).collect(),
        _ => text.to_string(),
    };
    sentence(&[opener, &body])
}

pub fn capitalize(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// Cuts `text` at a word boundary around `fraction` of its length, never at the end of a
/// sentence, the way a `max_tokens` limit does.
pub fn cut_mid_sentence(text: &str, fraction: f64) -> String {
    let chars: Vec<char> = text.chars().collect();
    let target = ((chars.len() as f64) * fraction.clamp(0.2, 0.9)) as usize;
    let mut end = (target..chars.len()).find(|&i| chars[i] == ' ').unwrap_or(chars.len().saturating_sub(1));
    // Back off punctuation so the cut cannot look like a finished sentence.
    while end > 1 && matches!(chars[end - 1], '.' | '!' | '?' | ':' | '\n' | ' ') {
        end -= 1;
    }
    chars[..end].iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_replaces_known_slots_and_keeps_unknown_ones() {
        assert_eq!(fill("order {order} for {who}", &[("order", "NW-1"), ("x", "y")]), "order NW-1 for {who}");
    }

    #[test]
    fn openers_run_into_the_text_only_when_they_should() {
        assert_eq!(with_opener("OK, and", "How do I?"), "OK, and how do I?");
        assert_eq!(with_opener("Also,", "I need help"), "Also, I need help");
        assert_eq!(with_opener("One more:", "Why is it slow?"), "One more: Why is it slow?");
        assert_eq!(with_opener("", "Why?"), "Why?");
    }

    #[test]
    fn weighted_follows_the_weights() {
        let mut rng = rng(1);
        let hits = (0..10_000).filter(|_| weighted(&mut rng, &[("a", 3.0), ("b", 1.0), ("c", 0.0)]) == "a").count();
        assert!((7_200..7_800).contains(&hits), "{hits}");
    }

    #[test]
    fn cuts_are_mid_sentence() {
        let text = "First sentence is complete. Second sentence goes on and on about shipping times and returns.";
        for f in [0.2, 0.35, 0.5, 0.75, 0.9] {
            let cut = cut_mid_sentence(text, f);
            assert!(cut.len() < text.len() && text.starts_with(&cut), "{cut}");
            assert!(!cut.ends_with('.') && !cut.ends_with(' '), "{cut}");
        }
    }
}
