//! The instants storage can hold, checked when a request is decoded.
//!
//! Every time column is `DateTime64(9, 'UTC')` (1900 to 2262-04-11), but the tables expire
//! rows with `TTL toDateTime(t) + retention`, and `DateTime` ends on 2106-02-07: a later
//! instant wraps around into the past, and ClickHouse drops the row at once, silently. Past
//! 2262 the rows cannot even be encoded, and the whole insert fails. So an item dated where
//! the retention arithmetic would overflow — with the longest retention allowed, whatever the
//! configuration, since the retention of another table can be longer — is refused with a
//! reason (OTLP partial success, or the signal's error), and the rest of its request is stored.
//! Nanosecond timestamps of OTLP cannot be before 1970; RFC 3339 ones (signals) can, and
//! `toDateTime` cannot represent them either.

use flywheel_schemas::config::MAX_RETENTION_DAYS;
use time::OffsetDateTime;

/// The last second of ClickHouse's `DateTime` (2^32 - 1 seconds after 1970).
const DATETIME_MAX_SECONDS: i64 = u32::MAX as i64;

/// The latest instant stored: `DateTime`'s end less the longest retention.
pub fn latest() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(DATETIME_MAX_SECONDS - MAX_RETENTION_DAYS as i64 * 86_400).expect("in range")
}

/// `Ok` when `at` can be stored; otherwise what is wrong, naming `field`, and what to do.
pub fn check(field: &str, at: OffsetDateTime) -> Result<(), String> {
    let latest = latest();
    if at > latest {
        return Err(format!(
            "{field} {at} is later than {latest}, the latest instant flywheel stores (ClickHouse's DateTime, used by the retention TTL, ends in 2106); check the sender's clock and time unit (nanoseconds)"
        ));
    }
    if at < OffsetDateTime::UNIX_EPOCH {
        return Err(format!("{field} {at} is before 1970-01-01, the earliest instant flywheel stores"));
    }
    Ok(())
}

/// [`check`] for an OTLP time in nanoseconds since 1970.
pub fn check_nanos(field: &str, nanos: u64) -> Result<(), String> {
    check(field, crate::normalize::span::nanos(nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bound_keeps_every_ttl_inside_datetime() {
        let latest = latest();
        assert_eq!(latest.year(), 2051);
        let ttl_end = latest.unix_timestamp() + MAX_RETENTION_DAYS as i64 * 86_400;
        assert!(ttl_end <= u32::MAX as i64);
        assert!(check("start_time", OffsetDateTime::now_utc()).is_ok());
        let err = check_nanos("start_time", u64::MAX).unwrap_err();
        assert!(err.contains("start_time 2554") && err.contains("clock"), "{err}");
        let err = check("timestamp", OffsetDateTime::UNIX_EPOCH - time::Duration::days(1)).unwrap_err();
        assert!(err.contains("before 1970"), "{err}");
    }
}
