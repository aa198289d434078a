//! Spend not yet in the store, and spend promised to requests still
//! running: what budget checks add to a record's stored `spend`, so a
//! budget holds under concurrency without a database write per request.
//!
//! Admission reserves each request's estimated cost
//! ([`SpendLedger::try_reserve`]) in the same locked step that checks the
//! budget, so N concurrent requests cannot all pass a budget that has room
//! for one: each sees the others' reservations. Settlement swaps the
//! reservation for the actual cost ([`SpendLedger::settle`]), which stays
//! here as unflushed spend until the spend writer has stored it
//! ([`SpendLedger::written`]).
//!
//! A request is admitted while an owner's committed spend (stored +
//! unflushed + reserved) is below its budget, so the last request admitted
//! may take the committed spend past the budget by at most its own
//! reservation; when answers cost no more than they reserved, stored spend
//! never exceeds the budget by more than one request's reserved cost.

use std::collections::HashMap;
use std::sync::Mutex;

/// USD below which spend and budget count as equal: sums of float costs
/// land a hair under an exact budget (10 x 0.001 = 0.00999...98).
pub const BUDGET_EPSILON: f64 = 1e-12;

/// One budget to check at admission.
#[derive(Debug, Clone)]
pub struct BudgetCheck {
    /// Ledger owner (`key:..`, `team:..`, `user:..`).
    pub owner: String,
    /// Spend already in the store for this budget period.
    pub stored: f64,
    /// The budget.
    pub max_budget: f64,
}

/// A budget that has no room left.
#[derive(Debug, Clone, PartialEq)]
pub struct Refused {
    /// Its owner.
    pub owner: String,
    /// Its committed spend: stored + unflushed + reserved.
    pub committed: f64,
    /// The budget.
    pub max_budget: f64,
}

/// Unflushed and reserved spend per owner (`key:<token>`, `team:<id>`,
/// `user:<id>`).
#[derive(Debug, Default)]
pub struct SpendLedger {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Settled, not yet written to the store.
    pending: HashMap<String, f64>,
    /// Promised to admitted requests not yet settled.
    reserved: HashMap<String, f64>,
}

fn add(map: &mut HashMap<String, f64>, owners: &[String], amount: f64) {
    if amount == 0.0 {
        return;
    }
    for owner in owners {
        let v = map.entry(owner.clone()).or_insert(0.0);
        *v += amount;
        if v.abs() < BUDGET_EPSILON {
            map.remove(owner);
        }
    }
}

fn get(map: &HashMap<String, f64>, owner: &str) -> f64 {
    map.get(owner).copied().unwrap_or(0.0)
}

impl SpendLedger {
    /// Checks every budget and, if all have room, reserves `amount` for
    /// each of `owners`, atomically. A budget has room while its committed
    /// spend (stored + unflushed + reserved) is below `max_budget`.
    pub fn try_reserve(
        &self,
        checks: &[BudgetCheck],
        owners: &[String],
        amount: f64,
    ) -> Result<(), Refused> {
        let mut state = self.lock();
        for check in checks {
            let committed = check.stored
                + get(&state.pending, &check.owner)
                + get(&state.reserved, &check.owner);
            if committed + BUDGET_EPSILON >= check.max_budget {
                return Err(Refused {
                    owner: check.owner.clone(),
                    committed,
                    max_budget: check.max_budget,
                });
            }
        }
        add(&mut state.reserved, owners, amount);
        Ok(())
    }

    /// Gives a reservation back unused (the request never ran).
    pub fn release(&self, owners: &[String], reserved: f64) {
        add(&mut self.lock().reserved, owners, -reserved);
    }

    /// Swaps a request's reservation for its actual `cost`, which stays
    /// unflushed until [`Self::written`]; one step, so the owner's
    /// committed spend never dips in between.
    pub fn settle(&self, owners: &[String], reserved: f64, cost: f64) {
        let mut state = self.lock();
        add(&mut state.reserved, owners, -reserved);
        add(&mut state.pending, owners, cost);
    }

    /// Removes `cost` from each owner's unflushed spend once it is written
    /// to the store.
    pub fn written(&self, owners: &[String], cost: f64) {
        add(&mut self.lock().pending, owners, -cost);
    }

    /// The unflushed spend of `owner`.
    pub fn pending(&self, owner: &str) -> f64 {
        get(&self.lock().pending, owner)
    }

    /// The spend reserved by `owner`'s running requests.
    pub fn reserved(&self, owner: &str) -> f64 {
        get(&self.lock().reserved, owner)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A poisoned lock only means another thread panicked mid-update of
        // plain numbers; the maps are still usable.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn check(owner: &str, stored: f64, max_budget: f64) -> BudgetCheck {
        BudgetCheck {
            owner: owner.to_owned(),
            stored,
            max_budget,
        }
    }

    #[test]
    fn settle_then_written() {
        let l = SpendLedger::default();
        let owners = vec!["key:a".to_owned(), "team:t".to_owned()];
        l.settle(&owners, 0.0, 0.5);
        l.settle(&owners[..1], 0.0, 0.25);
        assert_eq!(l.pending("key:a"), 0.75);
        assert_eq!(l.pending("team:t"), 0.5);
        l.written(&owners, 0.5);
        assert_eq!(l.pending("key:a"), 0.25);
        assert_eq!(l.pending("team:t"), 0.0);
    }

    #[test]
    fn reservations_count_until_settled() {
        let l = SpendLedger::default();
        let owners = vec!["key:a".to_owned()];
        let budget = [check("key:a", 0.5, 1.0)];
        l.try_reserve(&budget, &owners, 0.3).unwrap();
        l.try_reserve(&budget, &owners, 0.3).unwrap();
        // 0.5 stored + 0.6 reserved: no room.
        let refused = l.try_reserve(&budget, &owners, 0.01).unwrap_err();
        assert_eq!(refused.owner, "key:a");
        assert!((refused.committed - 1.1).abs() < 1e-9);
        // One finishes cheaper than reserved, one never runs.
        l.settle(&owners, 0.3, 0.1);
        l.release(&owners, 0.3);
        assert!((l.pending("key:a") - 0.1).abs() < 1e-12);
        assert_eq!(l.reserved("key:a"), 0.0);
        l.try_reserve(&budget, &owners, 0.3).unwrap();
    }

    #[test]
    fn every_budget_must_have_room() {
        let l = SpendLedger::default();
        let owners = vec!["key:a".to_owned(), "team:t".to_owned()];
        let checks = [check("key:a", 0.0, 10.0), check("team:t", 1.0, 1.0)];
        assert_eq!(
            l.try_reserve(&checks, &owners, 0.1).unwrap_err().owner,
            "team:t"
        );
        // Nothing was reserved for the key either.
        assert_eq!(l.reserved("key:a"), 0.0);
    }
}
