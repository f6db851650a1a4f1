//! `GCounter`: a grow-only counter. Each replica owns one entry, its own total; merging takes
//! the larger total per replica, and the value is the sum. A delta is the one entry changed.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::Error;

/// A grow-only counter: replica → that replica's total.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GCounter {
    totals: BTreeMap<String, u64>,
}

impl GCounter {
    /// The delta that adds `amount` to `replica`'s total.
    pub fn increment(&self, replica: &str, amount: u64) -> Result<GCounter, Error> {
        let total = self
            .total_of(replica)
            .checked_add(amount)
            .ok_or_else(|| Error::Overflow {
                replica: replica.to_string(),
            })?;
        Ok(GCounter {
            totals: BTreeMap::from([(replica.to_string(), total)]),
        })
    }

    /// Joins `other` (a state or a delta): the larger total per replica.
    pub fn merge(&mut self, other: &GCounter) {
        for (replica, &total) in &other.totals {
            let entry = self.totals.entry(replica.clone()).or_insert(0);
            *entry = (*entry).max(total);
        }
    }

    /// The sum of every replica's total (wide enough not to overflow).
    pub fn value(&self) -> u128 {
        self.totals.values().map(|&t| u128::from(t)).sum()
    }

    /// `replica`'s own total.
    pub fn total_of(&self, replica: &str) -> u64 {
        self.totals.get(replica).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn increments_sum_across_replicas() {
        let mut a = GCounter::default();
        a.merge(&a.increment("a", 2).unwrap());
        let mut b = GCounter::default();
        b.merge(&b.increment("b", 3).unwrap());
        let delta = a.increment("a", 1).unwrap();
        assert_eq!(delta.total_of("a"), 3);
        a.merge(&delta);
        a.merge(&b);
        b.merge(&a);
        assert_eq!(a.value(), 6);
        assert_eq!(a, b);
    }

    #[test]
    fn overflow_is_an_error() {
        let mut a = GCounter::default();
        a.merge(&a.increment("a", u64::MAX).unwrap());
        assert!(matches!(a.increment("a", 1), Err(Error::Overflow { .. })));
    }
}
