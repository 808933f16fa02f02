//! The memory budget of request bodies in flight.
//!
//! Each request reserves the bytes of its body as they arrive, and of its decompressed form
//! and decoded request once known; the reservation is released when the request is answered.
//! When the budget is spent, a new request is refused at once with 429 / RESOURCE_EXHAUSTED and
//! `Retry-After` — without the bound, 500 concurrent 10 MB uploads held 8 GB. Counted as
//! `flywheel_rejected_total{reason="memory_budget"}`; the bytes reserved now are
//! `flywheel_inflight_body_bytes`.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Reservations are counted in KiB so that a budget of terabytes still fits the semaphore.
const UNIT: u64 = 1024;

#[derive(Clone)]
pub struct BodyBudget {
    units: Arc<Semaphore>,
    bytes: u64,
}

/// Bytes reserved by one request, released when it is dropped. Units are taken for the bytes
/// counted so far, not per call: a body trickled one byte per frame holds one unit per KiB it
/// sent, not one per frame.
pub struct Reservation {
    permit: Option<OwnedSemaphorePermit>,
    bytes: u64,
}

impl BodyBudget {
    pub fn new(bytes: u64) -> BodyBudget {
        let units = (bytes / UNIT).clamp(1, u32::MAX as u64) as usize;
        BodyBudget { units: Arc::new(Semaphore::new(units)), bytes }
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

    pub fn empty(&self) -> Reservation {
        Reservation { permit: None, bytes: 0 }
    }

    /// Adds `bytes` to `reservation`; `false` (nothing added) when the budget cannot take them.
    pub fn grow(&self, reservation: &mut Reservation, bytes: u64) -> bool {
        let total = reservation.bytes.saturating_add(bytes);
        let held = reservation.permit.as_ref().map_or(0, |p| p.num_permits() as u64);
        let units = total.div_ceil(UNIT).saturating_sub(held).min(u32::MAX as u64) as u32;
        if units == 0 {
            reservation.bytes = total;
            return true;
        }
        match self.units.clone().try_acquire_many_owned(units) {
            Ok(permit) => {
                match &mut reservation.permit {
                    Some(held) => held.merge(permit),
                    None => reservation.permit = Some(permit),
                }
                reservation.bytes = total;
                true
            }
            Err(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_are_bounded_and_released_on_drop() {
        let budget = BodyBudget::new(10 * UNIT);
        let mut a = budget.empty();
        assert!(budget.grow(&mut a, 6 * UNIT));
        let mut b = budget.empty();
        assert!(!budget.grow(&mut b, 5 * UNIT), "over the budget");
        assert!(budget.grow(&mut b, 4 * UNIT));
        assert_eq!(budget.in_use(), 10 * UNIT);
        drop(a);
        assert_eq!(budget.in_use(), 4 * UNIT);
        assert!(budget.grow(&mut b, 1), "a partial unit counts as one");
        assert_eq!(budget.in_use(), 5 * UNIT);
    }

    #[test]
    fn a_body_trickled_byte_by_byte_holds_what_it_sent() {
        let budget = BodyBudget::new(100 * UNIT);
        let mut r = budget.empty();
        for _ in 0..3000 {
            assert!(budget.grow(&mut r, 1));
        }
        assert_eq!(budget.in_use(), 3 * UNIT, "3000 bytes in 3000 frames hold 3 KiB, not 3000 units");
    }
}
