//! How far back a command looks (`analyze --since`, `report --since`, the TUI's window): one
//! parser, so that every command accepts the same spellings and refuses the same way.

use time::Duration;

/// The longest lookback: the longest retention flywheel stores (20,000 days). Beyond, a date
/// computed from it would leave the storage types' range (and once made `analyze` panic).
pub const MAX_DAYS: i64 = 20_000;

/// A positive duration written as numbers with units — `s`, `m`, `h`, `d`, `w` — alone or
/// chained: `30m`, `36h`, `7d`, `2w`, `1d12h`.
pub fn parse(spec: &str) -> Result<Duration, String> {
    let bad = |why: &str| format!("`{spec}` is not a duration{why}: write it like 30m, 36h, 7d, 2w or 1d12h");
    let text = spec.trim();
    if text.is_empty() {
        return Err(bad(""));
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        if digits == 0 {
            return Err(bad(""));
        }
        let n: i64 = rest[..digits].parse().map_err(|_| bad(" (a number too large)"))?;
        let unit_len = rest[digits..].find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len() - digits);
        let seconds_per = match &rest[digits..digits + unit_len] {
            "s" => 1,
            "m" => 60,
            "h" => 3_600,
            "d" => 86_400,
            "w" => 604_800,
            "" => return Err(bad(" (a number needs its unit)")),
            _ => return Err(bad("")),
        };
        let part = n.checked_mul(seconds_per).ok_or_else(|| bad(" (too long)"))?;
        total = total.checked_add(Duration::seconds(part)).ok_or_else(|| bad(" (too long)"))?;
        rest = &rest[digits + unit_len..];
    }
    if total <= Duration::ZERO {
        return Err(bad(" (it must be longer than zero)"));
    }
    if total > Duration::days(MAX_DAYS) {
        return Err(format!("`{spec}` is longer than flywheel keeps anything ({MAX_DAYS}d): write at most {MAX_DAYS}d"));
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_and_refusals() {
        assert_eq!(parse("7d"), Ok(Duration::days(7)));
        assert_eq!(parse("36h"), Ok(Duration::hours(36)));
        assert_eq!(parse("90m"), Ok(Duration::minutes(90)));
        assert_eq!(parse("2w"), Ok(Duration::weeks(2)));
        assert_eq!(parse("1d12h"), Ok(Duration::hours(36)));
        assert_eq!(parse("45s"), Ok(Duration::seconds(45)));
        for bad in ["", "abc", "7", "7x", "-3d", "0d", "d", "1.5h", "7 d"] {
            let e = parse(bad).unwrap_err();
            assert!(e.contains("is not a duration") && e.contains("30m, 36h, 7d"), "{bad}: {e}");
        }
        assert!(parse("1000000000000000d").unwrap_err().contains("is not a duration (too long)"));
        assert!(parse("99999999999999999999d").unwrap_err().contains("too large"));
        assert!(parse("20001d").unwrap_err().contains("at most 20000d"));
    }
}
