//! `PNCounter`: a counter that goes up and down, as two grow-only counters (increments and
//! decrements); the value is their difference.

use serde::{Deserialize, Serialize};

use crate::{Error, GCounter};

/// A counter with increments and decrements.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PNCounter {
    increments: GCounter,
    decrements: GCounter,
}

impl PNCounter {
    /// The delta that adds `amount`.
    pub fn increment(&self, replica: &str, amount: u64) -> Result<PNCounter, Error> {
        Ok(PNCounter {
            increments: self.increments.increment(replica, amount)?,
            decrements: GCounter::default(),
        })
    }

    /// The delta that subtracts `amount`.
    pub fn decrement(&self, replica: &str, amount: u64) -> Result<PNCounter, Error> {
        Ok(PNCounter {
            increments: GCounter::default(),
            decrements: self.decrements.increment(replica, amount)?,
        })
    }

    /// Joins `other` (a state or a delta).
    pub fn merge(&mut self, other: &PNCounter) {
        self.increments.merge(&other.increments);
        self.decrements.merge(&other.decrements);
    }

    /// Increments minus decrements.
    pub fn value(&self) -> i128 {
        // Each side is a sum of u64s over replicas: far below i128::MAX for any real count.
        let up = i128::try_from(self.increments.value()).unwrap_or(i128::MAX);
        let down = i128::try_from(self.decrements.value()).unwrap_or(i128::MAX);
        up - down
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn goes_up_and_down() {
        let mut a = PNCounter::default();
        a.merge(&a.increment("a", 5).unwrap());
        let mut b = PNCounter::default();
        b.merge(&b.decrement("b", 7).unwrap());
        a.merge(&b);
        assert_eq!(a.value(), -2);
        a.merge(&a.decrement("a", 1).unwrap());
        assert_eq!(a.value(), -3);
    }
}
