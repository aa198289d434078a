//! Spend not yet in the store: what budget checks add to a record's
//! stored `spend` between batch writes, so a budget holds under concurrency
//! without a database write per request.
//!
//! Every settled request adds its cost here (synchronously, before the
//! response is finished) and to the spend writer's queue; when a batch is
//! written, its costs move from here to the store's rows.

use std::collections::HashMap;
use std::sync::Mutex;

/// Unflushed spend per owner (`key:<token>`, `team:<id>`, `user:<id>`).
#[derive(Debug, Default)]
pub struct SpendLedger {
    pending: Mutex<HashMap<String, f64>>,
}

impl SpendLedger {
    /// Adds `cost` to each owner's unflushed spend.
    pub fn add(&self, owners: &[String], cost: f64) {
        if cost == 0.0 {
            return;
        }
        let mut pending = self.lock();
        for owner in owners {
            *pending.entry(owner.clone()).or_insert(0.0) += cost;
        }
    }

    /// Removes `cost` from each owner once it is written to the store.
    pub fn settle(&self, owners: &[String], cost: f64) {
        if cost == 0.0 {
            return;
        }
        let mut pending = self.lock();
        for owner in owners {
            if let Some(v) = pending.get_mut(owner) {
                *v -= cost;
                if v.abs() < 1e-12 {
                    pending.remove(owner);
                }
            }
        }
    }

    /// The unflushed spend of `owner`.
    pub fn pending(&self, owner: &str) -> f64 {
        self.lock().get(owner).copied().unwrap_or(0.0)
    }

    /// Forgets `owner`'s unflushed spend (its budget was reset).
    pub fn clear(&self, owner: &str) {
        self.lock().remove(owner);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, f64>> {
        // A poisoned lock only means another thread panicked mid-update of
        // plain numbers; the map is still usable.
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn add_then_settle() {
        let l = SpendLedger::default();
        let owners = vec!["key:a".to_owned(), "team:t".to_owned()];
        l.add(&owners, 0.5);
        l.add(&owners[..1], 0.25);
        assert_eq!(l.pending("key:a"), 0.75);
        assert_eq!(l.pending("team:t"), 0.5);
        l.settle(&owners, 0.5);
        assert_eq!(l.pending("key:a"), 0.25);
        assert_eq!(l.pending("team:t"), 0.0);
        l.clear("key:a");
        assert_eq!(l.pending("key:a"), 0.0);
    }
}
