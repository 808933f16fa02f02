//! The memory budget of request bodies in flight.
//!
//! Each request reserves the bytes of its body as they arrive, and of its decompressed form
//! and decoded request once known; the reservation is released when the request is answered.
//! When the budget is spent, a new request is refused at once with 429 / RESOURCE_EXHAUSTED and
//! `Retry-After` — without the bound, 500 concurrent 10 MB uploads held 8 GB. Counted as
//! `flywheel_rejected_total{reason="memory_budget"}`; the bytes reserved now are
//! `flywheel_inflight_body_bytes`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Reservations are counted in KiB so that a budget of terabytes still fits the semaphore.
const UNIT: u64 = 1024;

/// Bytes held now, per key: one client must not take the budget of all the others.
type Holders = Arc<Mutex<HashMap<u64, u64>>>;

#[derive(Clone)]
pub struct BodyBudget {
    units: Arc<Semaphore>,
    bytes: u64,
    /// What one key may hold at once ([`BodyBudget::with_share`]).
    per_key: u64,
    holders: Holders,
}

/// Why a reservation could not grow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spent {
    /// The whole budget is taken.
    Budget,
    /// The request's key already holds its share of the budget.
    KeyShare,
}

impl Spent {
    /// The refusal's reason in `flywheel_rejected_total`.
    pub fn reason(self) -> &'static str {
        match self {
            Spent::Budget => "memory_budget",
            Spent::KeyShare => "key_share",
        }
    }

    /// What the client is told (with Retry-After / RetryInfo).
    pub fn message(self) -> &'static str {
        match self {
            Spent::Budget => super::BUSY_MESSAGE,
            Spent::KeyShare => {
                "this API key holds its share of the collector's memory budget for request bodies in flight (other clients keep the rest); retry later, or send fewer requests at once"
            }
        }
    }
}

/// Bytes reserved by one request, released when it is dropped. Units are taken for the bytes
/// counted so far, not per call: a body trickled one byte per frame holds one unit per KiB it
/// sent, not one per frame.
pub struct Reservation {
    permit: Option<OwnedSemaphorePermit>,
    bytes: u64,
    /// The key the bytes count against, and the table they are counted in.
    holder: Option<(Holders, u64)>,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if let Some((holders, key)) = &self.holder {
            let mut holders = holders.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(held) = holders.get_mut(key) {
                *held = held.saturating_sub(self.bytes);
                if *held == 0 {
                    holders.remove(key);
                }
            }
        }
    }
}

impl BodyBudget {
    /// A budget of `bytes`, of which one key may hold all.
    pub fn new(bytes: u64) -> BodyBudget {
        BodyBudget::with_share(bytes, bytes)
    }

    /// A budget of `bytes`, of which one key may hold `per_key`.
    pub fn with_share(bytes: u64, per_key: u64) -> BodyBudget {
        let units = (bytes / UNIT).clamp(1, u32::MAX as u64) as usize;
        BodyBudget { units: Arc::new(Semaphore::new(units)), bytes, per_key, holders: Arc::default() }
    }

    /// The budget, in bytes.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Bytes reserved now.
    pub fn in_use(&self) -> u64 {
        let total = (self.bytes / UNIT).clamp(1, u32::MAX as u64);
        (total - self.units.available_permits() as u64) * UNIT
    }

    /// A reservation of nothing yet, counted against `key` (the credential the request
    /// presents — an API key or a feedback token; `None` when it presents none, which all such
    /// requests share).
    pub fn empty(&self, key: Option<&str>) -> Reservation {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        key.hash(&mut hasher);
        Reservation { permit: None, bytes: 0, holder: Some((self.holders.clone(), hasher.finish())) }
    }

    /// A reservation counted against no key: the short-lived copies a request makes once its
    /// own reservation is settled (a repaired body being decoded).
    pub fn unattributed(&self) -> Reservation {
        Reservation { permit: None, bytes: 0, holder: None }
    }

    /// Adds `bytes` to `reservation`; refused (nothing added) when the budget, or the share of
    /// the reservation's key, cannot take them.
    pub fn grow(&self, reservation: &mut Reservation, bytes: u64) -> Result<(), Spent> {
        let total = reservation.bytes.saturating_add(bytes);
        let held = reservation.permit.as_ref().map_or(0, |p| p.num_permits() as u64);
        let units = total.div_ceil(UNIT).saturating_sub(held).min(u32::MAX as u64) as u32;
        // The key's share first, under its lock, so that two requests of one key cannot both
        // pass it.
        let mut holders = reservation.holder.as_ref().map(|(holders, _)| holders.lock().unwrap_or_else(|e| e.into_inner()));
        if let (Some(holders), Some((_, key))) = (&holders, &reservation.holder)
            && holders.get(key).copied().unwrap_or(0).saturating_add(bytes) > self.per_key
        {
            return Err(Spent::KeyShare);
        }
        if units > 0 {
            let permit = self.units.clone().try_acquire_many_owned(units).map_err(|_| Spent::Budget)?;
            match &mut reservation.permit {
                Some(held) => held.merge(permit),
                None => reservation.permit = Some(permit),
            }
        }
        if let (Some(holders), Some((_, key))) = (&mut holders, &reservation.holder) {
            *holders.entry(*key).or_default() += bytes;
        }
        reservation.bytes = total;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_are_bounded_and_released_on_drop() {
        let budget = BodyBudget::new(10 * UNIT);
        let mut a = budget.empty(None);
        assert_eq!(budget.grow(&mut a, 6 * UNIT), Ok(()));
        let mut b = budget.empty(Some("other"));
        assert_eq!(budget.grow(&mut b, 5 * UNIT), Err(Spent::Budget), "over the budget");
        assert_eq!(budget.grow(&mut b, 4 * UNIT), Ok(()));
        assert_eq!(budget.in_use(), 10 * UNIT);
        drop(a);
        assert_eq!(budget.in_use(), 4 * UNIT);
        assert_eq!(budget.grow(&mut b, 1), Ok(()), "a partial unit counts as one");
        assert_eq!(budget.in_use(), 5 * UNIT);
    }

    #[test]
    fn a_body_trickled_byte_by_byte_holds_what_it_sent() {
        let budget = BodyBudget::new(100 * UNIT);
        let mut r = budget.empty(None);
        for _ in 0..3000 {
            assert_eq!(budget.grow(&mut r, 1), Ok(()));
        }
        assert_eq!(budget.in_use(), 3 * UNIT, "3000 bytes in 3000 frames hold 3 KiB, not 3000 units");
    }

    #[test]
    fn one_key_holds_at_most_its_share() {
        let budget = BodyBudget::with_share(10 * UNIT, 4 * UNIT);
        let mut first = budget.empty(Some("flood"));
        let mut second = budget.empty(Some("flood"));
        assert_eq!(budget.grow(&mut first, 3 * UNIT), Ok(()));
        assert_eq!(budget.grow(&mut second, 2 * UNIT), Err(Spent::KeyShare), "3 + 2 KiB over the 4 KiB share");
        assert_eq!(budget.grow(&mut second, UNIT), Ok(()));
        let mut other = budget.empty(Some("quiet"));
        assert_eq!(budget.grow(&mut other, 4 * UNIT), Ok(()), "another key still has room");
        drop(first);
        assert_eq!(budget.grow(&mut second, 3 * UNIT), Ok(()), "released with its request");
        drop((second, other));
        assert!(budget.holders.lock().unwrap().is_empty(), "no entry left for keys with nothing in flight");
        assert_eq!(budget.in_use(), 0);
    }
}
